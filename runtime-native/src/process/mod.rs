//! Process backends: handlers that run real programs, with limits that hold.
//!
//! - [`Job`]: one process per execution.
//! - [`Session`]: one long-lived interactive process, one turn at a time.
//! - [`Adapter`]: a long-lived adapter speaking the JSON-lines protocol of
//!   `docs/adapter-protocol.md`.
//! - [`Codex`]: drives `codex exec --json`.
//! - [`Http`](crate::http::Http) (in [`crate::http`]) posts to a web service.
//!
//! Every process runs in its own **process group**. Cancel and timeouts stop the group
//! with a [`Ladder`] (SIGINT, grace, SIGTERM, grace, SIGKILL), and the completion's
//! metadata says which step ended it (`stoppedBy`); when the leader exits, whatever is
//! left of its group is killed and reaped, so no process or zombie outlives an execution.
//! Helpers that leave their group and outlive their parent are not this process's children
//! unless the application opts in with [`adopt_orphans`] (the shipped agents do).
//!
//! Output limits and redaction are the core combinators
//! ([`HandlerExt::limit_output`](runtime_core::handler::HandlerExt::limit_output),
//! [`HandlerExt::redact`](runtime_core::handler::HandlerExt::redact)); the
//! [`backends`](crate::backends) configuration applies them to every backend.

mod adapter;
mod codex;
mod group;
mod interrupt;
mod job;
mod live;
mod orphans;
mod pipe;
mod session;

use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;
use std::process::ExitStatus;
use std::time::{Duration, Instant};

use futures::FutureExt;
use runtime_core::{ExecutionContext, ExecutionError, Outcome};
use serde::Deserialize;
use tokio::process::Command;

pub use adapter::Adapter;
pub use codex::Codex;
pub use group::{KILL_SETTLE, Ladder, StopStep};
pub use job::{Input, Job};
pub use orphans::adopt_orphans;
pub use session::{Session, TurnEnd};

pub(crate) use group::{Group, signal_group};
pub(crate) use pipe::{Line, Pipe};

/// How long output may keep arriving after the process group is gone (a pipe held open
/// by a process that left the group).
const DRAIN: Duration = Duration::from_secs(1);

/// A program to run: path or name on `PATH`, arguments, environment, working directory.
/// Nothing passes through a shell.
///
/// Its `Debug` output lists the environment's names, never their values.
///
/// ```
/// use runtime_native::process::Program;
///
/// let program = Program::new("python3").args(["-c", "print('hi')"]).env("LANG", "C.UTF-8");
/// assert_eq!(program.program, "python3");
/// ```
#[derive(Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Program {
    /// The program: a path, or a name looked up on `PATH`.
    pub program: String,
    /// Its arguments.
    #[serde(default)]
    pub args: Vec<String>,
    /// Environment variables to set (on top of the agent's own environment).
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Its working directory (the agent's when unset).
    #[serde(default)]
    pub cwd: Option<PathBuf>,
}

impl Program {
    /// `program` with no arguments.
    pub fn new(program: impl Into<String>) -> Self {
        Program {
            program: program.into(),
            ..Program::default()
        }
    }

    /// With these arguments added.
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// With an environment variable set.
    pub fn env(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.insert(name.into(), value.into());
        self
    }

    /// In this working directory.
    pub fn cwd(mut self, cwd: impl Into<PathBuf>) -> Self {
        self.cwd = Some(cwd.into());
        self
    }

    /// A command for it, with piped stdout and stderr and `stdin` as given.
    pub(crate) fn command(&self, stdin: std::process::Stdio) -> Command {
        let mut command = Command::new(&self.program);
        command
            .args(&self.args)
            .envs(&self.env)
            .stdin(stdin)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        if let Some(cwd) = &self.cwd {
            command.current_dir(cwd);
        }
        command
    }

    /// Spawns it in its own process group; a failure to start is
    /// [`ExecutionError::Unavailable`]: nothing ran.
    pub(crate) fn spawn(&self, command: &mut Command) -> Result<Group, ExecutionError> {
        Group::spawn(command).map_err(|error| {
            ExecutionError::Unavailable(format!("could not start {:?}: {error}", self.program))
        })
    }
}

impl std::fmt::Debug for Program {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Program")
            .field("program", &self.program)
            .field("args", &self.args)
            .field("env", &self.env.keys().collect::<Vec<_>>())
            .field("cwd", &self.cwd)
            .finish()
    }
}

/// Why a process was stopped before it exited on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StopCause {
    /// The execution was cancelled.
    Cancelled,
    /// It ran past its maximum runtime.
    TimedOut(Duration),
    /// Its work was over but it did not exit in time (codex after its turn ended).
    Lingered,
}

/// How a supervised process ended.
#[derive(Debug)]
pub(crate) enum Ended {
    /// The leader exited on its own.
    Exited(std::io::Result<ExitStatus>),
    /// The ladder stopped it.
    Stopped {
        cause: StopCause,
        step: StopStep,
        took: Duration,
    },
}

/// Runs `group` until it ends, while `output` consumes its pipes: stops it with the ladder
/// when the execution is cancelled, when `max_runtime` passes, or when `linger` completes.
/// Returns once the group is gone and its output is read (or after a bounded drain).
pub(crate) async fn supervise(
    group: &mut Group,
    ctx: &ExecutionContext,
    ladder: Ladder,
    max_runtime: Option<Duration>,
    output: impl Future<Output = ()>,
    linger: impl Future<Output = ()>,
) -> Ended {
    let control = async {
        let deadline = async {
            match max_runtime {
                Some(after) => tokio::time::sleep(after).await,
                None => std::future::pending().await,
            }
        };
        let cause = tokio::select! {
            status = group.wait() => {
                group.finish().await;
                return Ended::Exited(status);
            }
            _ = ctx.cancelled() => StopCause::Cancelled,
            () = deadline => StopCause::TimedOut(max_runtime.unwrap_or_default()),
            () = linger => StopCause::Lingered,
        };
        let began = Instant::now();
        tracing::info!(pgid = group.id(), ?cause, "stopping the process group");
        let (step, _status) = group.stop(ladder).await;
        Ended::Stopped {
            cause,
            step,
            took: began.elapsed(),
        }
    };
    let output = output.fuse();
    futures::pin_mut!(output, control);
    let mut drained = false;
    // The output is read while the group runs...
    let ended = loop {
        tokio::select! {
            ended = &mut control => break ended,
            () = &mut output, if !drained => drained = true,
        }
    };
    // ...and for a bounded time after it is gone.
    if !drained && tokio::time::timeout(DRAIN, output).await.is_err() {
        tracing::warn!("output is still open after the process group ended; leaving it");
    }
    ended
}

/// Turns how a process ended into the execution's result, annotating the completion with
/// the exit code or the ladder step (`stoppedBy`) and a `detail` line.
pub(crate) fn settle(ctx: &ExecutionContext, ended: Ended) -> Result<Outcome, ExecutionError> {
    match ended {
        Ended::Exited(Ok(status)) => exit_result(ctx, status),
        Ended::Exited(Err(error)) => Err(ExecutionError::new(
            "ProcessError",
            format!("could not wait for the process: {error}"),
        )),
        Ended::Stopped { cause, step, took } => {
            ctx.annotate("stoppedBy", step.signal_name());
            ctx.annotate(
                "stopMs",
                u64::try_from(took.as_millis()).unwrap_or(u64::MAX),
            );
            ctx.annotate("detail", stop_detail(step, took));
            match cause {
                StopCause::Cancelled => Err(ExecutionError::Cancelled),
                StopCause::TimedOut(after) => Err(ExecutionError::TimedOut(after)),
                StopCause::Lingered => Ok(Outcome::default()),
            }
        }
    }
}

/// The exit status as a result: 0 succeeds, anything else is an error naming it.
pub(crate) fn exit_result(
    ctx: &ExecutionContext,
    status: ExitStatus,
) -> Result<Outcome, ExecutionError> {
    use std::os::unix::process::ExitStatusExt;
    if let Some(code) = status.code() {
        ctx.annotate("exitCode", code);
        if code == 0 {
            return Ok(Outcome::default());
        }
        return Err(ExecutionError::new(
            "ExitCode",
            format!("the process exited with code {code}"),
        ));
    }
    let signal = status.signal().unwrap_or_default();
    ctx.annotate("exitSignal", signal);
    Err(ExecutionError::new(
        "Signal",
        format!("the process was killed by signal {signal}"),
    ))
}

/// A line saying how the ladder ended a process group.
pub(crate) fn stop_detail(step: StopStep, took: Duration) -> String {
    let took = format!("{:.1} ms", took.as_secs_f64() * 1000.0);
    match step {
        StopStep::Interrupt => format!("the process group stopped after SIGINT ({took})"),
        StopStep::Terminate => {
            format!("the process group ignored SIGINT and stopped after SIGTERM ({took})")
        }
        StopStep::Kill => {
            format!(
                "the process group ignored SIGINT and SIGTERM and was killed with SIGKILL ({took})"
            )
        }
    }
}

/// Runs one execution of a backend inside its tracing span (`backend{kind, name}`), with
/// the completion's `backend` metadata set to its name.
pub(crate) async fn in_backend_span<F: Future>(
    ctx: &ExecutionContext,
    kind: &'static str,
    name: &str,
    work: F,
) -> F::Output {
    use tracing::Instrument;
    ctx.annotate("backend", name);
    work.instrument(tracing::info_span!("backend", kind, name = %name))
        .await
}

/// Logs an output the execution refused (it finished, or the store failed): a backend
/// keeps draining its process either way.
pub(crate) fn recorded(written: Result<(), runtime_core::OutputError>) {
    if let Err(error) = written {
        tracing::debug!(%error, "output not recorded");
    }
}

/// Writes every piece of text from `pipe` to the context with `write`, until end of file.
pub(crate) async fn stream_text<R>(
    mut pipe: Pipe<R>,
    ctx: &ExecutionContext,
    write: fn(&ExecutionContext, &str) -> Result<(), runtime_core::OutputError>,
) where
    R: tokio::io::AsyncRead + Unpin,
{
    while let Some(text) = pipe.next_text(Duration::from_millis(20)).await {
        recorded(write(ctx, &text));
    }
}
