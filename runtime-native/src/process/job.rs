//! [`Job`]: one process per execution.

use std::process::Stdio;
use std::time::Duration;

use runtime_core::{ExecutionContext, ExecutionError, ExecutionHandler, Outcome};
use serde::Deserialize;
use tokio::io::AsyncWriteExt;

use super::{Ladder, Pipe, Program, in_backend_span, settle, stream_text, supervise};

/// How a job receives the cell's source.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Input {
    /// On stdin, which is then closed.
    #[default]
    Stdin,
    /// As one more argument, after the configured ones (never through a shell).
    Argument,
}

/// Runs one process per execution: the source goes to stdin or as the last argument,
/// stdout and stderr stream into the cell as they arrive (a partial line after 20 ms of
/// quiet), and the exit code decides the status (non-zero is an error naming it).
///
/// `max_runtime` ends a job as `timed_out`; cancel and timeout stop its process group
/// with the [`Ladder`].
///
/// ```
/// use std::time::Duration;
/// use runtime_native::process::{Input, Job, Program};
///
/// // `bash -c '<source>' cell`: the source is bash's script, never spliced into a string.
/// let job = Job::new(Program::new("bash").args(["-c"]))
///     .input(Input::Argument)
///     .max_runtime(Duration::from_secs(60));
/// # fn takes(_: impl runtime_core::ExecutionHandler) {}
/// # takes(job);
/// ```
#[derive(Debug, Clone)]
pub struct Job {
    program: Program,
    input: Input,
    max_runtime: Option<Duration>,
    ladder: Ladder,
    name: String,
}

impl Job {
    /// A job running `program`, the source on stdin, no runtime limit.
    pub fn new(program: Program) -> Self {
        Job {
            program,
            input: Input::Stdin,
            max_runtime: None,
            ladder: Ladder::default(),
            name: "job".to_owned(),
        }
    }

    /// How the source is passed.
    pub fn input(mut self, input: Input) -> Self {
        self.input = input;
        self
    }

    /// The longest an execution may run before it is stopped and ends `timed_out`.
    pub fn max_runtime(mut self, max_runtime: Duration) -> Self {
        self.max_runtime = Some(max_runtime);
        self
    }

    /// How its process group is stopped.
    pub fn ladder(mut self, ladder: Ladder) -> Self {
        self.ladder = ladder;
        self
    }

    /// Its program, to change before it starts (a gateway's worktree).
    pub(crate) fn program_mut(&mut self) -> &mut Program {
        &mut self.program
    }

    /// The name logs and the completion's `backend` metadata use (default `job`).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }
}

#[async_trait::async_trait]
impl ExecutionHandler for Job {
    async fn execute(&self, ctx: ExecutionContext) -> Result<Outcome, ExecutionError> {
        in_backend_span(&ctx, "job", &self.name, async {
            let stdin = match self.input {
                Input::Stdin => Stdio::piped(),
                Input::Argument => Stdio::null(),
            };
            let mut command = self.program.command(stdin);
            if self.input == Input::Argument {
                command.arg(ctx.source());
            }
            let mut group = self.program.spawn(&mut command)?;
            tracing::debug!(pgid = group.id(), "started");
            let child = group.child();
            let (stdin, stdout, stderr) =
                (child.stdin.take(), child.stdout.take(), child.stderr.take());
            let source = ctx.source().as_bytes();
            let output = async {
                let feed = async {
                    if let Some(mut stdin) = stdin {
                        // A job that exits without reading its input is not an error.
                        let _ = stdin.write_all(source).await;
                    }
                };
                let out = async {
                    if let Some(stdout) = stdout {
                        stream_text(Pipe::new(stdout), &ctx, |ctx, text| ctx.stdout(text)).await;
                    }
                };
                let err = async {
                    if let Some(stderr) = stderr {
                        stream_text(Pipe::new(stderr), &ctx, |ctx, text| ctx.stderr(text)).await;
                    }
                };
                tokio::join!(feed, out, err);
            };
            let ended = supervise(
                &mut group,
                &ctx,
                self.ladder,
                self.max_runtime,
                output,
                std::future::pending(),
            )
            .await;
            tracing::debug!(?ended, "ended");
            settle(&ctx, ended)
        })
        .await
    }
}
