//! [`Session`]: one long-lived interactive process, one turn at a time.

use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use runtime_core::{ExecutionContext, ExecutionError, ExecutionHandler, Outcome};
use tokio::sync::Mutex;
use tokio::time::sleep_until;

use super::live::Live;
use super::{Ladder, Program, StopCause, StopStep, in_backend_span, recorded, stop_detail};

/// How long output may pause before a partial line is passed on.
const FLUSH: Duration = Duration::from_millis(20);

/// How a [`Session`] knows a turn is over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TurnEnd {
    /// The process prints a line equal to `marker` (preferred: exact, and a silent long
    /// command is not cut short). `send`, if set, is written after the source to make it
    /// print the marker, e.g. `print("<<done>>")` for Python or `echo '<<done>>'` for a
    /// shell. The marker line itself is not shown.
    ///
    /// `{nonce}` in `marker`, `error_marker` and `send` is replaced by a fresh random
    /// string each turn, so output that merely contains a marker (a program printing it,
    /// a late line of an earlier turn) cannot end a turn. Use it: without it a program
    /// can fake the end of its turn.
    ///
    /// When the process prints `error_marker` instead, the turn ended with an error (the
    /// REPL saw an exception): the execution ends `error`.
    Marker {
        /// The line that ends a turn that went well.
        marker: String,
        /// What to write after the source so that a marker gets printed.
        send: Option<String>,
        /// The line that ends a turn that failed.
        error_marker: Option<String>,
    },
    /// The turn ends once the process has been silent this long. Simple, but a command
    /// that is silent for longer is cut short: prefer a marker.
    Quiet(Duration),
}

/// Drives one long-lived interactive process (a REPL, a shell, a CLI agent): each
/// execution writes its source to the process's stdin and streams what it prints until
/// the end of the turn ([`TurnEnd`]). One turn runs at a time.
///
/// - The process starts with the first turn and keeps its state between turns.
/// - In marker mode, a turn with no output for `inactivity_timeout` (default 10 minutes)
///   ends `timed_out`.
/// - Cancel (and the inactivity timeout) send SIGINT to the process group: a REPL that
///   survives it and prints the marker keeps its state (`sessionKept: true` in the
///   completion's metadata); otherwise the [`Ladder`] goes on to SIGTERM and SIGKILL.
/// - A process that dies during a turn fails that turn; the next turn starts a new one
///   (`restarted: true` in the metadata).
///
/// ```
/// use runtime_native::process::{Program, Session, TurnEnd};
///
/// let python = Program::new("python3").args(["-i", "-q", "-u", "-c", "import sys; sys.ps1 = sys.ps2 = ''"]);
/// let session = Session::new(python, TurnEnd::Marker {
///     marker: "<<done {nonce}>>".into(),
///     send: Some("print('<<failed {nonce}>>' if getattr(sys, 'last_value', None) else '<<done {nonce}>>'); sys.last_value = None".into()),
///     error_marker: Some("<<failed {nonce}>>".into()),
/// });
/// # fn takes(_: impl runtime_core::ExecutionHandler) {}
/// # takes(session);
/// ```
pub struct Session {
    program: Program,
    turn_end: TurnEnd,
    inactivity_timeout: Duration,
    ladder: Ladder,
    name: String,
    live: Mutex<Option<Live>>,
    /// A process has been started before (the next start is a restart).
    started_once: std::sync::atomic::AtomicBool,
}

impl Session {
    /// A session of `program`, ending turns as `turn_end` says.
    pub fn new(program: Program, turn_end: TurnEnd) -> Self {
        Session {
            program,
            turn_end,
            inactivity_timeout: Duration::from_secs(600),
            ladder: Ladder::default(),
            name: "session".to_owned(),
            live: Mutex::new(None),
            started_once: Default::default(),
        }
    }

    /// In marker mode, how long a turn may go without output before it ends `timed_out`.
    pub fn inactivity_timeout(mut self, timeout: Duration) -> Self {
        self.inactivity_timeout = timeout;
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

    /// The name logs and the completion's `backend` metadata use (default `session`).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Ends a running process: closes its input (a REPL exits on end of file), waits the
    /// ladder's first grace, then runs the ladder. Dropping a `Session` kills its process
    /// group instead.
    pub async fn shutdown(&self) {
        let Some(mut live) = self.live.lock().await.take() else {
            return;
        };
        live.close_input();
        match tokio::time::timeout(self.ladder.interrupt_grace, live.group.wait()).await {
            Ok(_) => live.group.finish().await,
            Err(_) => {
                let _ = live.group.stop(self.ladder).await;
            }
        }
    }
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("program", &self.program)
            .field("turn_end", &self.turn_end)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// The markers of one turn, with its nonce filled in.
struct Markers {
    done: String,
    failed: Option<String>,
}

impl Markers {
    /// The markers of `turn_end` for a new turn, and the line to send after the source.
    fn for_turn(turn_end: &TurnEnd) -> Option<(Markers, Option<String>)> {
        let TurnEnd::Marker {
            marker,
            send,
            error_marker,
        } = turn_end
        else {
            return None;
        };
        let nonce = runtime_core::OutputId::random().as_str().replace('-', "");
        let fill = |text: &str| text.replace("{nonce}", &nonce);
        let markers = Markers {
            done: fill(marker),
            failed: error_marker.as_deref().map(fill),
        };
        Some((markers, send.as_deref().map(fill)))
    }

    fn all(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.done.as_str()).chain(self.failed.as_deref())
    }
}

/// How a turn ended.
enum TurnResult {
    /// The end of turn was seen; `failed` if it was the error marker.
    Done { failed: bool },
    /// Stopped on cancel or inactivity; `kept` if the process survived SIGINT.
    Stopped {
        cause: StopCause,
        step: StopStep,
        took: Duration,
        kept: bool,
    },
    /// The process died during the turn.
    Crashed(String),
}

#[async_trait::async_trait]
impl ExecutionHandler for Session {
    async fn execute(&self, ctx: ExecutionContext) -> Result<Outcome, ExecutionError> {
        in_backend_span(&ctx, "session", &self.name, async {
            let mut slot = self.live.lock().await;
            // The process is out of its slot for the turn: if this future is dropped (a
            // grace ran out, a timeout), it is dropped too, which kills its group, and the
            // next turn starts a new session instead of waiting behind a busy one.
            let mut live = match slot.take() {
                Some(live) => live,
                None => {
                    let live = Live::start(&self.program)?;
                    if self
                        .started_once
                        .swap(true, std::sync::atomic::Ordering::Relaxed)
                    {
                        ctx.annotate("restarted", true);
                    }
                    live
                }
            };
            let mut input = ctx.source().to_owned();
            if !input.ends_with('\n') {
                input.push('\n');
            }
            let (markers, send) = Markers::for_turn(&self.turn_end).unzip();
            if let Some(send) = send.flatten() {
                input.push_str(&send);
                input.push('\n');
            }
            let result = if live.write(&input).await {
                let result = self.turn(&mut live, &ctx, markers.as_ref()).await;
                if let TurnResult::Done { .. } | TurnResult::Stopped { kept: true, .. } = result {
                    live.drain_stderr(&ctx).await;
                    *slot = Some(live);
                }
                result
            } else {
                TurnResult::Crashed(live.end(self.ladder).await)
            };
            match result {
                TurnResult::Done { failed: false } => Ok(Outcome::default()),
                TurnResult::Done { failed: true } => Err(ExecutionError::new(
                    "TurnFailed",
                    "the session reported that the turn raised an error (its output shows it)",
                )),
                TurnResult::Stopped {
                    cause,
                    step,
                    took,
                    kept,
                } => {
                    ctx.annotate("stoppedBy", step.signal_name());
                    ctx.annotate("sessionKept", kept);
                    let detail = if kept {
                        "SIGINT interrupted the turn; the session kept its state".to_owned()
                    } else {
                        format!(
                            "{}; the session restarts for the next turn",
                            stop_detail(step, took)
                        )
                    };
                    ctx.annotate("detail", detail);
                    match cause {
                        StopCause::TimedOut(after) => Err(ExecutionError::TimedOut(after)),
                        StopCause::Cancelled | StopCause::Lingered => {
                            Err(ExecutionError::Cancelled)
                        }
                    }
                }
                TurnResult::Crashed(how) => Err(ExecutionError::new(
                    "SessionCrashed",
                    format!(
                        "the session process {how} during the turn; the next turn starts a new one"
                    ),
                )),
            }
        })
        .await
    }
}

impl Session {
    /// Streams the turn's output until its end, the process's death, or a stop.
    async fn turn(
        &self,
        live: &mut Live,
        ctx: &ExecutionContext,
        markers: Option<&Markers>,
    ) -> TurnResult {
        let mut last_output = Instant::now();
        // Set once SIGINT was sent: why, and when.
        let mut stopping: Option<(StopCause, Instant)> = None;
        let mut stderr_open = true;
        // A partial line that may be the start of the marker.
        let mut held = String::new();
        let far = || Instant::now() + Duration::from_secs(86_400 * 365);
        loop {
            let quiet_deadline = match &self.turn_end {
                TurnEnd::Quiet(quiet) => last_output + *quiet,
                TurnEnd::Marker { .. } => far(),
            };
            let inactivity_deadline = match (&self.turn_end, stopping) {
                (TurnEnd::Marker { .. }, None) => last_output + self.inactivity_timeout,
                _ => far(),
            };
            let escalate_at = stopping.map_or_else(far, |(_, at)| at + self.ladder.interrupt_grace);
            let end_now = |stopping: Option<(StopCause, Instant)>, failed| match stopping {
                None => TurnResult::Done { failed },
                Some((cause, at)) => TurnResult::Stopped {
                    cause,
                    step: StopStep::Interrupt,
                    took: at.elapsed(),
                    kept: true,
                },
            };
            tokio::select! {
                text = live.stdout.next_text(FLUSH) => {
                    let Some(text) = text else {
                        return self.after_exit(live, ctx, stopping).await;
                    };
                    last_output = Instant::now();
                    held.push_str(&text);
                    let piece = std::mem::take(&mut held);
                    match markers {
                        Some(markers) => {
                            let (shown, ended, rest) = split_at_marker(&piece, markers);
                            write(ctx, shown, false);
                            if let Some(failed) = ended {
                                return end_now(stopping, failed);
                            }
                            held = rest.to_owned();
                        }
                        None => write(ctx, &piece, false),
                    }
                }
                text = live.stderr.next_text(FLUSH), if stderr_open => match text {
                    Some(text) => {
                        last_output = Instant::now();
                        write(ctx, &text, true);
                    }
                    None => stderr_open = false,
                },
                _ = ctx.cancelled(), if stopping.is_none() => {
                    live.group.signal(Signal::SIGINT);
                    stopping = Some((StopCause::Cancelled, Instant::now()));
                }
                () = sleep_until(inactivity_deadline.into()) => {
                    tracing::info!(timeout = ?self.inactivity_timeout, "no output; stopping the turn");
                    live.group.signal(Signal::SIGINT);
                    stopping = Some((StopCause::TimedOut(self.inactivity_timeout), Instant::now()));
                }
                () = sleep_until(escalate_at.into()) => {
                    let Some((cause, at)) = stopping else { continue };
                    let (step, _) = live.group.stop_from(StopStep::Terminate, self.ladder).await;
                    return TurnResult::Stopped { cause, step, took: at.elapsed(), kept: false };
                }
                () = sleep_until(quiet_deadline.into()) => {
                    write(ctx, &std::mem::take(&mut held), false);
                    return end_now(stopping, false);
                }
            }
        }
    }

    /// Its stdout closed: the process is ending. Reads what is left of stderr briefly,
    /// reaps it and says how the turn ended.
    async fn after_exit(
        &self,
        live: &mut Live,
        ctx: &ExecutionContext,
        stopping: Option<(StopCause, Instant)>,
    ) -> TurnResult {
        let drain = async {
            while let Some(text) = live.stderr.next_text(FLUSH).await {
                write(ctx, &text, true);
            }
        };
        let _ = tokio::time::timeout(Duration::from_millis(200), drain).await;
        let how = live.end(self.ladder).await;
        match stopping {
            Some((cause, at)) => TurnResult::Stopped {
                cause,
                step: StopStep::Interrupt,
                took: at.elapsed(),
                kept: false,
            },
            None => TurnResult::Crashed(how),
        }
    }
}

/// Splits `text` at a line equal to one of the turn's markers: (text before it, whether
/// one was found and if so whether it was the error marker, a trailing partial line that
/// may still become a marker).
fn split_at_marker<'t>(text: &'t str, markers: &Markers) -> (&'t str, Option<bool>, &'t str) {
    let mut start = 0;
    for line in text.split_inclusive('\n') {
        let end = start + line.len();
        if line.ends_with('\n') {
            let line = line.trim_end_matches(['\n', '\r']);
            if line == markers.done {
                return (&text[..start], Some(false), "");
            }
            if markers.failed.as_deref() == Some(line) {
                return (&text[..start], Some(true), "");
            }
        } else if markers.all().any(|marker| marker.starts_with(line)) {
            return (&text[..start], None, line);
        }
        start = end;
    }
    (text, None, "")
}

fn write(ctx: &ExecutionContext, text: &str, stderr: bool) {
    if !text.is_empty() {
        recorded(if stderr {
            ctx.stderr(text)
        } else {
            ctx.stdout(text)
        });
    }
}

#[cfg(test)]
mod tests {
    use super::{Markers, split_at_marker};

    #[test]
    fn a_marker_line_ends_the_turn_and_a_partial_one_is_held() {
        let markers = Markers {
            done: "<<done>>".into(),
            failed: Some("<<failed>>".into()),
        };
        let split = |text| split_at_marker(text, &markers);
        assert_eq!(split("a\n<<done>>\n"), ("a\n", Some(false), ""));
        assert_eq!(split("a\n<<failed>>\n"), ("a\n", Some(true), ""));
        assert_eq!(split("a\n<<do"), ("a\n", None, "<<do"));
        assert_eq!(split("a\n<<fa"), ("a\n", None, "<<fa"));
        assert_eq!(split("a <<done>>\n"), ("a <<done>>\n", None, ""));
        assert_eq!(split("x\r\n<<done>>\r\n"), ("x\r\n", Some(false), ""));
    }
}
