//! [`Adapter`]: a long-lived adapter speaking the JSON-lines protocol of
//! `docs/adapter-protocol.md`.

use std::time::{Duration, Instant};

use runtime_core::{
    Display, ExecutionContext, ExecutionError, ExecutionHandler, MediaBundle, Outcome,
};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tokio::sync::Mutex;
use tokio::time::sleep_until;

use super::live::Live;
use super::{Ladder, Line, Program, in_backend_span, recorded, stop_detail};

/// The longest protocol line read; a longer one is skipped and counted.
const MAX_LINE: usize = 1024 * 1024;

/// A request to the adapter, one JSON object per line on its stdin.
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "camelCase")]
enum Request<'a> {
    #[serde(rename_all = "camelCase")]
    Execute {
        id: &'a str,
        cell_id: &'a str,
        cell_type: runtime_core::CellType,
        source: &'a str,
        execution_count: u64,
    },
    Cancel {
        id: &'a str,
    },
    Shutdown,
}

/// A message from the adapter, one JSON object per line on its stdout.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase")]
enum Message {
    Stdout {
        id: String,
        text: String,
    },
    Stderr {
        id: String,
        text: String,
    },
    #[serde(rename_all = "camelCase")]
    Display {
        id: String,
        data: Map<String, Value>,
        #[serde(default)]
        metadata: Map<String, Value>,
        #[serde(default)]
        display_id: Option<String>,
    },
    Markdown {
        id: String,
        text: String,
    },
    Result {
        id: String,
        data: Map<String, Value>,
    },
    Error {
        id: String,
        ename: String,
        evalue: String,
        #[serde(default)]
        traceback: Vec<String>,
    },
    Done {
        id: String,
        status: DoneStatus,
        #[serde(default)]
        message: Option<String>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
enum DoneStatus {
    Ok,
    Error,
    Cancelled,
}

impl Message {
    fn id(&self) -> &str {
        match self {
            Message::Stdout { id, .. }
            | Message::Stderr { id, .. }
            | Message::Display { id, .. }
            | Message::Markdown { id, .. }
            | Message::Result { id, .. }
            | Message::Error { id, .. }
            | Message::Done { id, .. } => id,
        }
    }
}

/// Runs a long-lived adapter program, written in any language, that speaks the
/// JSON-lines protocol in `docs/adapter-protocol.md`: one `execute` request per
/// execution, its outputs streamed back, and an explicit `done` that ends the turn.
/// Silence never ends a turn.
///
/// - A line that is not a protocol message is skipped, logged and counted
///   (`malformedLines` in the completion's metadata); a line over 1 MiB is skipped
///   without being held in memory, and the cell's stderr says so.
/// - Cancel sends a `cancel` request in place of SIGINT; an adapter that does not answer
///   `done` within the ladder's first grace gets SIGTERM, then SIGKILL, and is restarted
///   for the next turn. The whole stop takes at most [`Ladder::longest_stop`].
/// - An adapter that exits during a turn fails it; the next turn starts a new one. One that
///   closes its stdout but keeps running is given the first grace to exit, then stopped.
/// - A turn whose future is dropped (a grace ran out) kills the adapter's process group.
///
/// ```
/// use runtime_native::process::{Adapter, Program};
///
/// let adapter = Adapter::new(Program::new("python3").args(["my_adapter.py"]));
/// # fn takes(_: impl runtime_core::ExecutionHandler) {}
/// # takes(adapter);
/// ```
pub struct Adapter {
    program: Program,
    ladder: Ladder,
    name: String,
    live: Mutex<Option<Live>>,
}

impl Adapter {
    /// An adapter running `program`, started on the first execution.
    pub fn new(program: Program) -> Self {
        Adapter {
            program,
            ladder: Ladder::default(),
            name: "adapter".to_owned(),
            live: Mutex::new(None),
        }
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

    /// The name logs and the completion's `backend` metadata use (default `adapter`).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Asks a running adapter to shut down and waits for it (then the ladder). Dropping
    /// an `Adapter` kills its process group instead.
    pub async fn shutdown(&self) {
        let Some(mut live) = self.live.lock().await.take() else {
            return;
        };
        live.write(&line(&Request::Shutdown)).await;
        let exited = tokio::time::timeout(self.ladder.interrupt_grace, live.group.wait()).await;
        match exited {
            Ok(_) => live.group.finish().await,
            Err(_) => {
                let _ = live.group.stop(self.ladder).await;
            }
        }
    }
}

impl std::fmt::Debug for Adapter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Adapter")
            .field("program", &self.program)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

fn line(request: &Request<'_>) -> String {
    let mut text = serde_json::to_string(request).unwrap_or_default();
    text.push('\n');
    text
}

/// How a turn ended.
enum TurnResult {
    Done(DoneStatus, Option<String>),
    /// Cancelled and not answered in time: stopped, to be restarted.
    Stopped(super::StopStep, Duration),
    Crashed(String),
}

#[derive(Default)]
struct Counts {
    malformed: u64,
    overlong: u64,
    stale: u64,
}

#[async_trait::async_trait]
impl ExecutionHandler for Adapter {
    async fn execute(&self, ctx: ExecutionContext) -> Result<Outcome, ExecutionError> {
        in_backend_span(&ctx, "adapter", &self.name, async {
            let mut slot = self.live.lock().await;
            // The process is out of its slot for the turn: if this future is dropped (a
            // grace ran out, a timeout), it is dropped too, which kills its group, and the
            // next turn starts a new one instead of talking to a busy one.
            let mut live = match slot.take() {
                Some(live) => live,
                None => Live::start(&self.program)?,
            };
            let id = ctx.queue_id().as_str();
            let request = Request::Execute {
                id,
                cell_id: ctx.cell_id().as_str(),
                cell_type: ctx.cell_type(),
                source: ctx.source(),
                execution_count: ctx.execution_count(),
            };
            let mut counts = Counts::default();
            let result = if live.write(&line(&request)).await {
                let result = self.turn(&mut live, &ctx, &mut counts).await;
                if let TurnResult::Done(..) = result {
                    live.drain_stderr(&ctx).await;
                    *slot = Some(live);
                }
                result
            } else {
                TurnResult::Crashed(live.end(self.ladder).await)
            };
            if counts.malformed > 0 {
                ctx.annotate("malformedLines", counts.malformed);
            }
            if counts.overlong > 0 {
                ctx.annotate("overlongLines", counts.overlong);
            }
            if counts.stale > 0 {
                ctx.annotate("staleLines", counts.stale);
            }
            match result {
                TurnResult::Done(DoneStatus::Ok, _) => Ok(Outcome::default()),
                TurnResult::Done(DoneStatus::Error, message) => Err(ExecutionError::new(
                    "AdapterError",
                    message.unwrap_or_else(|| "the adapter reported an error".to_owned()),
                )),
                TurnResult::Done(DoneStatus::Cancelled, _) => {
                    ctx.annotate("stoppedBy", "cancel request");
                    Err(ExecutionError::Cancelled)
                }
                TurnResult::Stopped(step, took) => {
                    ctx.annotate("stoppedBy", step.signal_name());
                    ctx.annotate(
                        "detail",
                        format!(
                            "the adapter did not answer the cancel request; {}",
                            stop_detail(step, took)
                        ),
                    );
                    Err(ExecutionError::Cancelled)
                }
                TurnResult::Crashed(how) => Err(ExecutionError::new(
                    "AdapterCrashed",
                    format!("the adapter {how} during the turn; the next turn starts a new one"),
                )),
            }
        })
        .await
    }
}

impl Adapter {
    async fn turn(
        &self,
        live: &mut Live,
        ctx: &ExecutionContext,
        counts: &mut Counts,
    ) -> TurnResult {
        let id = ctx.queue_id().as_str();
        let mut cancelled_at: Option<Instant> = None;
        let mut stderr_open = true;
        loop {
            let escalate_at = cancelled_at.map_or_else(
                || Instant::now() + Duration::from_secs(86_400 * 365),
                |at| at + self.ladder.interrupt_grace,
            );
            tokio::select! {
                next = live.stdout.next_line(MAX_LINE) => match next {
                    None => {
                        // What it wrote to stderr before it went may explain why.
                        live.drain_stderr(ctx).await;
                        return TurnResult::Crashed(live.end(self.ladder).await);
                    }
                    Some(Line::Overlong(bytes)) => {
                        counts.overlong += 1;
                        tracing::warn!(bytes, "skipped a protocol line over 1 MiB");
                        recorded(ctx.stderr(format!(
                            "[adapter: skipped a protocol line of {bytes} bytes, over the 1 MiB limit]\n"
                        )));
                    }
                    Some(Line::Text(text)) if text.trim().is_empty() => {}
                    Some(Line::Text(text)) => match serde_json::from_str::<Message>(&text) {
                        Err(error) => {
                            counts.malformed += 1;
                            // Neither the line nor serde's message (which quotes parts of it,
                            // an unknown `type` say) is logged: it may hold a secret.
                            tracing::warn!(
                                kind = ?error.classify(),
                                column = error.column(),
                                bytes = text.len(),
                                "skipped a malformed protocol line"
                            );
                        }
                        Ok(message) if message.id() != id => {
                            counts.stale += 1;
                            tracing::debug!("skipped a message for another execution");
                        }
                        Ok(Message::Done { status, message, .. }) => {
                            return TurnResult::Done(status, message);
                        }
                        Ok(message) => apply(ctx, message),
                    },
                },
                text = live.stderr.next_text(Duration::from_millis(20)), if stderr_open => match text {
                    Some(text) => recorded(ctx.stderr(text)),
                    None => stderr_open = false,
                },
                _ = ctx.cancelled(), if cancelled_at.is_none() => {
                    cancelled_at = Some(Instant::now());
                    if !live.write(&line(&Request::Cancel { id })).await {
                        tracing::debug!("the adapter is gone; waiting for its exit");
                    }
                }
                () = sleep_until(escalate_at.into()) => {
                    // The unanswered cancel request was the first step; SIGTERM is next.
                    let at = cancelled_at.unwrap_or_else(Instant::now);
                    let (step, _) = live.group.stop_from(super::StopStep::Terminate, self.ladder).await;
                    return TurnResult::Stopped(step, at.elapsed());
                }
            }
        }
    }
}

/// Shows one output message in the cell.
fn apply(ctx: &ExecutionContext, message: Message) {
    let written = match message {
        Message::Stdout { text, .. } => ctx.stdout(text),
        Message::Stderr { text, .. } => ctx.stderr(text),
        Message::Markdown { text, .. } => ctx.markdown(text).map(drop),
        Message::Display {
            data,
            metadata,
            display_id,
            ..
        } => {
            let mut display = Display::new(MediaBundle::from(data)).metadata(metadata);
            if let Some(display_id) = display_id {
                display = display.id(display_id);
            }
            ctx.display(display).map(drop)
        }
        Message::Result { data, .. } => ctx.result(MediaBundle::from(data)),
        Message::Error {
            ename,
            evalue,
            traceback,
            ..
        } => ctx.error(ename, evalue, traceback),
        Message::Done { .. } => Ok(()),
    };
    recorded(written);
}
