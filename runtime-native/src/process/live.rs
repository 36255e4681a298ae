//! A long-lived process shared by the turns of [`Session`](super::Session) and
//! [`Adapter`](super::Adapter): started on first use, restarted after it dies.

use std::process::Stdio;

use runtime_core::ExecutionError;
use tokio::io::AsyncWriteExt;
use tokio::process::{ChildStderr, ChildStdin, ChildStdout};

use super::{Group, Pipe, Program};

/// The running process and its pipes.
pub(crate) struct Live {
    pub(crate) group: Group,
    stdin: Option<ChildStdin>,
    pub(crate) stdout: Pipe<ChildStdout>,
    pub(crate) stderr: Pipe<ChildStderr>,
}

impl Live {
    /// Starts `program` with all three pipes.
    pub(crate) fn start(program: &Program) -> Result<Live, ExecutionError> {
        let mut command = program.command(Stdio::piped());
        let mut group = program.spawn(&mut command)?;
        let child = group.child();
        let (Some(stdin), Some(stdout), Some(stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            return Err(ExecutionError::Unavailable(
                "the process has no pipes".to_owned(),
            ));
        };
        tracing::info!(pgid = group.id(), program = %program.program, "started a long-lived process");
        Ok(Live {
            group,
            stdin: Some(stdin),
            stdout: Pipe::new(stdout),
            stderr: Pipe::new(stderr),
        })
    }

    /// Shows what its stderr already holds, at the end of a turn: text a process wrote
    /// before its end-of-turn signal may still sit in the other pipe. Stops after 20 ms
    /// without more (and after 200 ms in all).
    pub(crate) async fn drain_stderr(&mut self, ctx: &runtime_core::ExecutionContext) {
        let quiet = std::time::Duration::from_millis(20);
        let drain = async {
            while let Ok(Some(text)) =
                tokio::time::timeout(quiet, self.stderr.next_text(quiet)).await
            {
                super::recorded(ctx.stderr(text));
            }
        };
        let _ = tokio::time::timeout(std::time::Duration::from_millis(200), drain).await;
    }

    /// After its stdout closed or it stopped reading: waits the ladder's first grace for it
    /// to exit, then stops it from SIGTERM on (a process that closed its output may still
    /// run); says how it ended.
    pub(crate) async fn end(&mut self, ladder: super::Ladder) -> String {
        match tokio::time::timeout(ladder.interrupt_grace, self.group.wait()).await {
            Ok(status) => {
                self.group.finish().await;
                exit_description(&status)
            }
            Err(_) => {
                let (step, _) = self
                    .group
                    .stop_from(super::StopStep::Terminate, ladder)
                    .await;
                format!(
                    "closed its output but kept running, and was stopped with {}",
                    step.signal_name()
                )
            }
        }
    }

    /// Closes its stdin.
    pub(crate) fn close_input(&mut self) {
        self.stdin = None;
    }

    /// Writes `text` to its stdin; `false` if it no longer reads (it died).
    pub(crate) async fn write(&mut self, text: &str) -> bool {
        let Some(stdin) = &mut self.stdin else {
            return false;
        };
        let written = async {
            stdin.write_all(text.as_bytes()).await?;
            stdin.flush().await
        };
        match written.await {
            Ok(()) => true,
            Err(error) => {
                tracing::warn!(%error, "the process no longer reads its input");
                self.stdin = None;
                false
            }
        }
    }
}

/// Describes how a long-lived process ended, for the failed turn.
pub(crate) fn exit_description(status: &std::io::Result<std::process::ExitStatus>) -> String {
    use std::os::unix::process::ExitStatusExt;
    match status {
        Ok(status) => match (status.code(), status.signal()) {
            (Some(code), _) => format!("exited with code {code}"),
            (None, Some(signal)) => format!("was killed by signal {signal}"),
            (None, None) => "exited".to_owned(),
        },
        Err(error) => format!("could not be waited for: {error}"),
    }
}
