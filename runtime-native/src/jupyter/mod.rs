//! Jupyter kernels as a backend: [`Jupyter`] runs each cell on a real kernel (Python, R,
//! Julia: any installed [`kernelspec`]) over Jupyter's messaging protocol.
//!
//! - **One kernel per backend instance**, in its own process group, with a start-up timeout:
//!   started by [`Jupyter::warm_up`] when the agent starts serving (the backends file's
//!   [`Backends::warm_up_while`](crate::backends::Backends::warm_up_while) does this), or
//!   else at the first cell. [`Jupyter::shutdown`] sends `shutdown_request` and then runs
//!   the ladder. Dropping the backend kills the kernel's group.
//! - **Outputs map one to one:** `stream` → stdout/stderr, `display_data` (with
//!   `transient.display_id`) → a display, `update_display_data` → an update by id,
//!   `execute_result` → the result (the kernel's own `execution_count` is kept in its
//!   metadata as `kernel_execution_count`; the notebook's count stays the log's), `error` →
//!   an error output with its traceback, `clear_output(wait)` → a clear. The status comes
//!   from `execute_reply` (`ok`, `error`, `aborted`), never from the text.
//! - **Interrupt** on cancel, by the kernelspec's `interrupt_mode` (SIGINT to the kernel's
//!   process group, or `interrupt_request` on the control channel). A kernel that does not
//!   come back to idle within the interrupt grace is stopped with the ladder; the cell says
//!   so, and the next cell starts a fresh kernel with a note that state was lost.
//! - **A kernel that dies** mid-cell ends the cell `error` with the kernel's last words on
//!   stderr; the next cell gets a fresh kernel, with the same note. So does one that stops
//!   answering its heartbeat while a cell runs (frozen: it is killed).
//!
//! The connection file is written mode 0600 (it holds the random signing key) and removed
//! when the kernel stops; ports are held until the kernel is spawned.

mod kernel;
pub mod kernelspec;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use jupyter_protocol::{
    ExecuteRequest, ExecutionState, InputReply, InterruptRequest, JupyterMessage,
    JupyterMessageContent, Media, ReplyError, ReplyStatus, Stdio,
};
use runtime_core::{
    Display, ExecutionContext, ExecutionError, ExecutionHandler, InputError, MediaBundle, Outcome,
    OutputError,
};
use serde_json::Value;
use tokio::sync::Mutex;

use crate::process::{Ladder, in_backend_span, signal_group};
use kernel::{Kernel, Launch, parent_id};
pub use kernelspec::{InterruptMode, KernelSpec, KernelSpecError};

/// A backend that runs cells on a Jupyter kernel.
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use runtime_native::jupyter::{Jupyter, kernelspec};
///
/// let spec = kernelspec::find("python3", &kernelspec::search_path())?;
/// let python = Jupyter::new(spec);
/// # fn takes(_: &impl runtime_core::ExecutionHandler) {}
/// # takes(&python);
/// python.shutdown().await;
/// # Ok(()) }
/// ```
pub struct Jupyter {
    kernel_name: String,
    /// The spec, or `None` to look the name up at each start (so a backends file can name
    /// a kernel that is installed later, or only where that backend is used).
    spec: Option<KernelSpec>,
    cwd: Option<PathBuf>,
    env: Vec<(String, String)>,
    startup_timeout: Duration,
    interrupt_grace: Duration,
    heartbeat_every: Duration,
    heartbeat_timeout: Duration,
    ladder: Ladder,
    /// Boxed: a kernel's channels are large, and this sits inside a backends enum.
    kernel: Mutex<Option<Box<Kernel>>>,
    /// A kernel was started before: a later start means that state was lost.
    started_once: AtomicBool,
    /// A kernel replaced an earlier one: the next cell says that state was lost.
    lost_state_note_due: AtomicBool,
    /// Cells may ask for input (`input()`); without, the kernel refuses at once.
    allow_stdin: bool,
}

/// Why a kernel did not start: not installed, failed to launch, or not ready in time
/// (with its last words on stderr).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct KernelStartError(String);

impl Jupyter {
    /// A backend for the kernel `spec` describes.
    pub fn new(spec: KernelSpec) -> Self {
        Self::with(spec.name.clone(), Some(spec))
    }

    /// A backend for the kernel named `name`, found (the way Jupyter finds kernelspecs)
    /// each time a kernel starts; if there is none, the cell fails listing those installed.
    pub fn named(name: impl Into<String>) -> Self {
        Self::with(name.into(), None)
    }

    fn with(kernel_name: String, spec: Option<KernelSpec>) -> Self {
        Jupyter {
            kernel_name,
            spec,
            cwd: None,
            env: Vec::new(),
            startup_timeout: Duration::from_secs(60),
            interrupt_grace: Duration::from_secs(5),
            heartbeat_every: Duration::from_secs(2),
            heartbeat_timeout: Duration::from_secs(20),
            ladder: Ladder::default(),
            kernel: Mutex::new(None),
            started_once: AtomicBool::new(false),
            lost_state_note_due: AtomicBool::new(false),
            allow_stdin: true,
        }
    }

    /// The kernel's working directory (default: this process's).
    pub fn cwd(mut self, cwd: impl Into<PathBuf>) -> Self {
        self.cwd = Some(cwd.into());
        self
    }

    /// Its working directory, to change before it starts (a gateway's worktree).
    pub(crate) fn cwd_mut(&mut self) -> &mut Option<PathBuf> {
        &mut self.cwd
    }

    /// An environment variable for the kernel, besides the kernelspec's own.
    pub fn env(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.push((name.into(), value.into()));
        self
    }

    /// How long the kernel may take to answer after it is started (default 60 s).
    pub fn startup_timeout(mut self, timeout: Duration) -> Self {
        self.startup_timeout = timeout;
        self
    }

    /// How long an interrupted kernel may take to come back to idle before it is stopped
    /// and replaced (default 5 s).
    pub fn interrupt_grace(mut self, grace: Duration) -> Self {
        self.interrupt_grace = grace;
        self
    }

    /// While a cell runs, the kernel's heartbeat is checked every `every`; a kernel that has
    /// not answered for `timeout` is taken for dead and killed (defaults 2 s and 20 s: a
    /// loaded machine must not kill a live kernel).
    pub fn heartbeat(mut self, every: Duration, timeout: Duration) -> Self {
        self.heartbeat_every = every;
        self.heartbeat_timeout = timeout;
        self
    }

    /// Whether cells may ask for input (default yes: `input()` becomes the notebook's input
    /// request). Without, the kernel refuses at once (ipykernel raises
    /// `StdinNotImplementedError`), as in a headless run where nobody could answer.
    pub fn allow_stdin(mut self, allow: bool) -> Self {
        self.allow_stdin = allow;
        self
    }

    /// How the kernel's process group is stopped when it must be.
    pub fn ladder(mut self, ladder: Ladder) -> Self {
        self.ladder = ladder;
        self
    }

    /// The name of the kernel it runs.
    pub fn kernel_name(&self) -> &str {
        &self.kernel_name
    }

    /// Shuts the kernel down, if one runs: `shutdown_request`, then the ladder.
    pub async fn shutdown(&self) {
        if let Some(kernel) = self.kernel.lock().await.take() {
            kernel.shutdown(self.ladder).await;
        }
    }

    /// Starts the kernel now, if none runs, so that the first cell does not wait for it.
    /// A cell that comes meanwhile waits for this start. If it fails, the next cell tries
    /// again (and fails with the same reason, where a user sees it).
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// use runtime_native::jupyter::Jupyter;
    ///
    /// let python = Jupyter::named("python3");
    /// python.warm_up().await?;
    /// # Ok(()) }
    /// ```
    pub async fn warm_up(&self) -> Result<(), KernelStartError> {
        let mut slot = self.kernel.lock().await;
        if slot.is_none() {
            *slot = Some(Box::new(self.start().await?));
        }
        Ok(())
    }

    async fn start(&self) -> Result<Kernel, KernelStartError> {
        let found;
        let spec = match &self.spec {
            Some(spec) => spec,
            None => {
                found = kernelspec::find(&self.kernel_name, &kernelspec::search_path())
                    .map_err(|error| KernelStartError(error.to_string()))?;
                &found
            }
        };
        let kernel = Kernel::start(Launch {
            spec,
            cwd: self.cwd.as_deref(),
            env: &self.env,
            startup_timeout: self.startup_timeout,
        })
        .await
        .map_err(KernelStartError)?;
        if self.started_once.swap(true, Ordering::Relaxed) {
            self.lost_state_note_due.store(true, Ordering::Relaxed);
        }
        Ok(kernel)
    }
}

impl std::fmt::Debug for Jupyter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Jupyter")
            .field("kernel", &self.kernel_name)
            .field("cwd", &self.cwd)
            .finish_non_exhaustive()
    }
}

/// How a cell's run on the kernel ended.
enum Ended {
    /// `execute_reply` came and the kernel went idle; the reply's error, if it failed.
    Replied(ReplyStatus, Option<Box<ReplyError>>),
    /// Cancelled: interrupted, and the kernel came back (`kept`) or was stopped.
    Interrupted { kept: bool },
    /// The kernel died; its last words.
    Died(String),
    /// The kernel stopped answering its heartbeat.
    Unresponsive,
}

#[async_trait::async_trait]
impl ExecutionHandler for Jupyter {
    async fn execute(&self, ctx: ExecutionContext) -> Result<Outcome, ExecutionError> {
        in_backend_span(&ctx, "jupyter", &self.kernel_name, async {
            let mut slot = self.kernel.lock().await;
            // Out of its slot for the cell: if this future is dropped, so is the kernel,
            // which kills its group; the next cell starts a fresh one.
            let mut kernel = match slot.take() {
                Some(kernel) => kernel,
                None => Box::new(
                    self.start()
                        .await
                        .map_err(|error| ExecutionError::Unavailable(error.0))?,
                ),
            };
            if self.lost_state_note_due.swap(false, Ordering::Relaxed) {
                // Not `?`: the kernel, out of its slot, would go with an early return.
                let _ = ctx.stderr(format!(
                    "[a new {} kernel was started: variables and imports of earlier cells are gone]\n",
                    self.kernel_name
                ));
            }
            ctx.annotate("kernel", self.kernel_name.clone());
            let ended = run_cell(&mut kernel, &ctx, self).await;
            match ended {
                Ok(Ended::Replied(status, error)) => {
                    *slot = Some(kernel);
                    match status {
                        ReplyStatus::Ok => Ok(Outcome::default()),
                        // The kernel published the error output itself; this is the reason.
                        ReplyStatus::Error => Err(match error {
                            Some(error) => ExecutionError::Failed {
                                ename: error.ename,
                                evalue: error.evalue,
                                traceback: error.traceback,
                            },
                            None => ExecutionError::new("Error", "the kernel reported an error"),
                        }),
                        ReplyStatus::Aborted => Err(ExecutionError::new(
                            "Aborted",
                            "the kernel aborted the execution (an earlier one failed)",
                        )),
                    }
                }
                Ok(Ended::Interrupted { kept }) => {
                    if kept {
                        *slot = Some(kernel);
                        ctx.annotate("interrupted", "kernel kept its state");
                    } else {
                        ctx.annotate(
                            "detail",
                            "the kernel did not stop on interrupt and was stopped; its state is lost",
                        );
                        let _ = kernel.group.stop(self.ladder).await;
                    }
                    Err(ExecutionError::Cancelled)
                }
                Ok(Ended::Died(last_words)) => {
                    kernel.group.finish().await;
                    Err(ExecutionError::new(
                        "KernelDied",
                        format!(
                            "the {} kernel died; the next cell starts a new one{last_words}",
                            self.kernel_name
                        ),
                    ))
                }
                Ok(Ended::Unresponsive) => {
                    // Frozen processes act on no signal but SIGKILL.
                    kernel.group.signal(nix::sys::signal::Signal::SIGKILL);
                    kernel.group.finish().await;
                    Err(ExecutionError::new(
                        "KernelDied",
                        format!(
                            "the {} kernel stopped answering its heartbeat for {:?} and was killed; \
                             the next cell starts a new one",
                            self.kernel_name, self.heartbeat_timeout
                        ),
                    ))
                }
                Err(error) => {
                    let _ = kernel.group.stop(self.ladder).await;
                    Err(ExecutionError::Unavailable(format!(
                        "lost the connection to the {} kernel: {error}",
                        self.kernel_name
                    )))
                }
            }
        })
        .await
    }
}

/// Sends the cell and shows what the kernel publishes for it until its reply and idle.
async fn run_cell(
    kernel: &mut Kernel,
    ctx: &ExecutionContext,
    backend: &Jupyter,
) -> Result<Ended, String> {
    let request: JupyterMessage = ExecuteRequest {
        code: ctx.source().to_owned(),
        silent: false,
        store_history: true,
        user_expressions: None,
        allow_stdin: backend.allow_stdin,
        stop_on_error: true,
    }
    .into();
    let id = request.header.msg_id.clone();
    let pgid = kernel.group.id();
    let last_words = kernel.last_words.clone();
    let Kernel {
        group,
        shell,
        iopub,
        control,
        stdin,
        interrupt_mode,
        info,
        ..
    } = kernel;
    shell
        .send(request)
        .await
        .map_err(|error| format!("shell: {error}"))?;
    // Made once, not at every message: waiting on a child polls for its exit status.
    let died = group.wait();
    let cancelled = ctx.cancelled();
    let unresponsive =
        kernel::heartbeat_lost(info, backend.heartbeat_every, backend.heartbeat_timeout);
    tokio::pin!(died, cancelled, unresponsive);
    let mut reply: Option<(ReplyStatus, Option<Box<ReplyError>>)> = None;
    let mut idle = false;
    let mut interrupted: Option<tokio::time::Instant> = None;
    // The kernel's pending input request, and the question put to the notebook for it.
    let mut asking: Option<(JupyterMessage, Asking<'_>)> = None;
    loop {
        if idle && let Some((status, error)) = reply.take() {
            return Ok(match interrupted {
                Some(_) => Ended::Interrupted { kept: true },
                None => Ended::Replied(status, error),
            });
        }
        let deadline = interrupted.map(|at| at + backend.interrupt_grace);
        tokio::select! {
            message = iopub.read() => {
                let message = message.map_err(|error| format!("iopub: {error}"))?;
                if parent_id(&message) != Some(id.as_str()) {
                    continue;
                }
                if let JupyterMessageContent::Status(status) = &message.content {
                    idle |= status.execution_state == ExecutionState::Idle;
                    continue;
                }
                if let Err(error) = show(ctx, message.content) {
                    tracing::debug!(%error, "an output of the kernel was not recorded");
                }
            }
            message = shell.read(), if reply.is_none() => {
                let message = message.map_err(|error| format!("shell: {error}"))?;
                if parent_id(&message) == Some(id.as_str())
                    && let JupyterMessageContent::ExecuteReply(answer) = message.content
                {
                    reply = Some((answer.status, answer.error));
                }
            }
            message = stdin.read() => {
                let message = message.map_err(|error| format!("stdin: {error}"))?;
                if let JupyterMessageContent::InputRequest(request) = &message.content {
                    let question = ask(ctx, request.prompt.clone(), request.password);
                    asking = Some((message, question));
                }
            }
            answer = answered(&mut asking), if asking.is_some() => {
                let Some((request, _)) = asking.take() else { continue };
                let value = match answer {
                    Ok(value) => value,
                    // The cancel interrupts the kernel, which stops waiting for input.
                    Err(InputError::Cancelled) => continue,
                    Err(error) => {
                        tracing::warn!(%error, "the kernel's input request got no answer");
                        String::new()
                    }
                };
                let reply = InputReply { value, ..InputReply::default() }.as_child_of(&request);
                stdin.send(reply).await.map_err(|error| format!("stdin: {error}"))?;
            }
            _ = &mut died => {
                return Ok(Ended::Died(kernel::said(&last_words)));
            }
            () = &mut unresponsive => {
                return Ok(Ended::Unresponsive);
            }
            _ = &mut cancelled, if interrupted.is_none() => {
                interrupted = Some(tokio::time::Instant::now());
                match interrupt_mode {
                    InterruptMode::Signal => signal_group(pgid, nix::sys::signal::Signal::SIGINT),
                    InterruptMode::Message => {
                        let request: JupyterMessage = InterruptRequest {}.into();
                        if let Err(error) = control.send(request).await {
                            tracing::warn!(%error, "could not send interrupt_request");
                        }
                    }
                }
            }
            () = sleep_until(deadline), if deadline.is_some() => {
                return Ok(Ended::Interrupted { kept: false });
            }
        }
    }
}

/// A question put to the notebook for the kernel's `input()`.
type Asking<'a> = std::pin::Pin<Box<dyn Future<Output = Result<String, InputError>> + Send + 'a>>;

fn ask(ctx: &ExecutionContext, prompt: String, password: bool) -> Asking<'_> {
    Box::pin(async move {
        match password {
            true => ctx.password(&prompt).await,
            false => ctx.input(&prompt).await,
        }
    })
}

/// The answer to the pending question (only polled while there is one).
async fn answered(asking: &mut Option<(JupyterMessage, Asking<'_>)>) -> Result<String, InputError> {
    match asking {
        Some((_, question)) => question.await,
        None => std::future::pending().await,
    }
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// Records one iopub message of the cell as an output.
fn show(ctx: &ExecutionContext, content: JupyterMessageContent) -> Result<(), OutputError> {
    match content {
        JupyterMessageContent::StreamContent(stream) => match stream.name {
            Stdio::Stdout => ctx.stdout(&stream.text),
            Stdio::Stderr => ctx.stderr(&stream.text),
        },
        JupyterMessageContent::DisplayData(display) => {
            let mut shown = Display::new(bundle(&display.data)).metadata(display.metadata);
            if let Some(id) = display.transient.and_then(|t| t.display_id) {
                shown = shown.id(id);
            }
            ctx.display(shown).map(drop)
        }
        JupyterMessageContent::UpdateDisplayData(update) => match update.transient.display_id {
            Some(id) => ctx.update_display_with(id, bundle(&update.data), update.metadata),
            None => Ok(()),
        },
        JupyterMessageContent::ExecuteResult(result) => {
            let mut metadata = result.metadata;
            metadata.insert(
                "kernel_execution_count".to_owned(),
                Value::from(result.execution_count.value()),
            );
            let mut shown = Display::new(bundle(&result.data)).metadata(metadata);
            if let Some(id) = result.transient.and_then(|t| t.display_id) {
                shown = shown.id(id);
            }
            ctx.result_with(shown)
        }
        JupyterMessageContent::ErrorOutput(error) => {
            ctx.error(&error.ename, &error.evalue, error.traceback)
        }
        JupyterMessageContent::ClearOutput(clear) => ctx.clear(clear.wait),
        _ => Ok(()),
    }
}

/// A kernel's media bundle as ours: mime type → value, as on the wire, in mime type order
/// (the client crate keeps no order of its own).
fn bundle(media: &Media) -> MediaBundle {
    let mut bundle = MediaBundle::new();
    if let Ok(Value::Object(map)) = serde_json::to_value(media) {
        let sorted: std::collections::BTreeMap<String, Value> = map.into_iter().collect();
        for (mime, value) in sorted {
            bundle.insert(mime, value);
        }
    }
    bundle
}
