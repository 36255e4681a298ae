//! [`Codex`]: drives `codex exec --json`, one process per turn, one thread per cell.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Mutex;
use std::time::Duration;

use runtime_core::{
    CellId, Display, ExecutionContext, ExecutionError, ExecutionHandler, MediaBundle, Outcome,
};
use serde_json::{Map, Value, json};
use tokio::io::AsyncWriteExt;
use tokio::sync::Notify;

use super::{
    Ended, Ladder, Line, Pipe, Program, StopCause, in_backend_span, recorded, settle, supervise,
};

/// What codex prints when asked to resume a thread it no longer has.
const STALE_THREAD: &str = "no rollout found for thread id";
/// The most of codex's stderr kept for an error message.
const STDERR_TAIL: usize = 4096;

/// Runs an AI coding agent turn per execution with `codex exec --json` (the binary is
/// configurable) and maps its events into the cell:
///
/// | codex event | in the cell |
/// | --- | --- |
/// | `agent_message` item | markdown |
/// | `command_execution` item | stdout: `$ command` when it starts (`item.started`), then its output (past 1 MiB, cut with a marker saying how much there was) and `[exit code N]` |
/// | `file_change` item | a display: the changed paths as text, the changes as JSON |
/// | `todo_list` item | markdown checklist |
/// | `mcp_tool_call`, `web_search` items | a stdout line (a failed tool call with its error) |
/// | `error` item | stderr |
/// | `error` event | held: stderr if the turn then fails (once: not the failure's own message), the completion metadata's `notices` if it succeeds |
/// | `error` event `Reconnecting...` | at once, a display saying codex waits for the model server (updated with each retry, and to "reached the model server again" when codex gets through); also held as above |
/// | `turn.completed` `usage` | completion metadata `usage`: `thisRun` and `threadTotal` (codex reports the thread's running total) |
/// | `turn.failed` | status `error` with its message |
///
/// The prompt (the cell's source) goes on stdin. The thread id from `thread.started` is
/// kept per cell, so the cell's next execution resumes it (`exec --json resume <id>`); a
/// stale thread (`no rollout found for thread id`) is retried once on a fresh thread,
/// which is safe because that attempt never started a turn. The turn ends on
/// `turn.completed` or `turn.failed`, never on silence; codex then has `exit_grace`
/// (5 s unless set) to exit before the [`Ladder`] stops it. Cancel and `max_runtime` stop
/// the process group with the ladder too (an interrupted turn emits no `turn.*` event).
///
/// Codex's own stderr is not shown in the cell; its tail explains a failed run.
///
/// ```
/// use runtime_native::process::Codex;
///
/// let codex = Codex::new().binary("/usr/local/bin/codex").args(["--sandbox", "read-only"]);
/// # fn takes(_: impl runtime_core::ExecutionHandler) {}
/// # takes(codex);
/// ```
pub struct Codex {
    program: Program,
    exit_grace: Duration,
    max_runtime: Option<Duration>,
    ladder: Ladder,
    name: String,
    exec_args: Vec<String>,
    threads: Mutex<HashMap<CellId, String>>,
    /// The last usage total codex reported for each thread.
    usage_totals: Mutex<HashMap<String, Map<String, Value>>>,
}

/// The longest codex event line read: a command's whole output travels in one line.
const MAX_EVENT_LINE: usize = 32 * 1024 * 1024;
/// The most of one command's output shown in the cell; the rest is counted and marked.
const MAX_COMMAND_OUTPUT: usize = 1024 * 1024;

/// A turn's longest run unless configured: an unreachable model server otherwise makes
/// codex wait (and retry) forever.
const DEFAULT_MAX_RUNTIME: Duration = Duration::from_secs(30 * 60);

impl Default for Codex {
    fn default() -> Self {
        Self::new()
    }
}

impl Codex {
    /// `codex` from `PATH`, no extra arguments.
    pub fn new() -> Self {
        Codex {
            program: Program::new("codex"),
            exit_grace: Duration::from_secs(5),
            max_runtime: Some(DEFAULT_MAX_RUNTIME),
            ladder: Ladder::default(),
            name: "codex".to_owned(),
            exec_args: Vec::new(),
            threads: Mutex::default(),
            usage_totals: Mutex::default(),
        }
    }

    /// The program to run instead of `codex` from `PATH`.
    pub fn binary(mut self, binary: impl Into<PathBuf>) -> Self {
        self.program.program = binary.into().to_string_lossy().into_owned();
        self
    }

    /// Arguments before `exec`: codex's global options (`-c key=value`, `--profile`,
    /// `--sandbox`, `--model`...).
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.program = self.program.args(args);
        self
    }

    /// Arguments after `exec --json` and before `resume`: options only `exec` takes, such
    /// as `--skip-git-repo-check` (without it codex refuses to run outside a git work tree).
    pub fn exec_args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.exec_args.extend(args.into_iter().map(Into::into));
        self
    }

    /// The program, environment and working directory (the repository codex works in);
    /// its arguments come before `exec`.
    pub fn program(mut self, program: Program) -> Self {
        self.program = program;
        self
    }

    /// How long codex may take to exit after its turn ended.
    pub fn exit_grace(mut self, grace: Duration) -> Self {
        self.exit_grace = grace;
        self
    }

    /// The longest a turn may run before it is stopped and ends `timed_out` (30 minutes
    /// unless set: codex waits for an unreachable model server without end).
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

    /// The name logs and the completion's `backend` metadata use (default `codex`).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// `{"thisRun": ..., "threadTotal": ...}`: codex reports the thread's running total, so
    /// this run's share is what grew since the thread's previous total.
    fn usage_of_this_run(&self, thread_id: &str, total: &Map<String, Value>) -> Value {
        let mut totals = self
            .usage_totals
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let previous = totals.insert(thread_id.to_owned(), total.clone());
        let this_run: Map<String, Value> = total
            .iter()
            .map(|(key, value)| {
                let before = previous
                    .as_ref()
                    .and_then(|previous| previous.get(key))
                    .and_then(Value::as_u64);
                let value = match (value.as_u64(), before) {
                    (Some(now), Some(before)) => Value::from(now.saturating_sub(before)),
                    _ => value.clone(),
                };
                (key.clone(), value)
            })
            .collect();
        json!({"thisRun": this_run, "threadTotal": total})
    }

    fn thread_of(&self, cell: &CellId) -> Option<String> {
        self.lock_threads().get(cell).cloned()
    }

    fn lock_threads(&self) -> std::sync::MutexGuard<'_, HashMap<CellId, String>> {
        self.threads
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl std::fmt::Debug for Codex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Codex")
            .field("program", &self.program)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// What one codex run showed.
#[derive(Default)]
struct Run {
    thread_id: Option<String>,
    turn_started: bool,
    /// `Ok(())` after `turn.completed`, the message after `turn.failed`.
    turn_ended: Option<Result<(), String>>,
    fatal: Option<String>,
    /// The `usage` of `turn.completed`: the thread's running total.
    usage: Option<Map<String, Value>>,
    /// Messages of codex's `error` events, shown once the turn's end says whether they
    /// mattered (a turn that succeeded after "Reconnecting... 1/5" did not fail).
    errors: Vec<String>,
    /// Whether the cell shows codex waiting for the model server (a display that says so,
    /// updated once codex gets through).
    waiting_shown: bool,
    /// Command items already shown when they started.
    started_commands: std::collections::HashSet<String>,
    stale: bool,
    stderr_tail: String,
}

impl Run {
    /// Shows the `error` events that say something the turn's end does not: none when the
    /// turn succeeded (they are kept in the metadata as `notices`), and not the one that
    /// is the turn's own failure message.
    fn show_errors(&self, ctx: &ExecutionContext, failure: Option<&str>) {
        if failure.is_none() {
            if !self.errors.is_empty() {
                ctx.annotate("notices", self.errors.clone());
            }
            return;
        }
        // Reconnect notices were shown as they came (the waiting display).
        let said = |m: &&String| Some(m.as_str()) == failure || m.starts_with(RECONNECTING);
        for message in self.errors.iter().filter(|m| !said(m)) {
            recorded(ctx.stderr(format!("{message}\n")));
        }
    }
}

#[async_trait::async_trait]
impl ExecutionHandler for Codex {
    async fn execute(&self, ctx: ExecutionContext) -> Result<Outcome, ExecutionError> {
        in_backend_span(&ctx, "codex", &self.name, async {
            let resume = self.thread_of(ctx.cell_id());
            let (ended, run) = self.run(&ctx, resume.as_deref()).await?;
            let (ended, run) = if resume.is_some() && run.stale && !run.turn_started {
                tracing::warn!("the cell's codex thread is gone; retrying once on a fresh thread");
                self.lock_threads().remove(ctx.cell_id());
                ctx.annotate("staleThreadRetried", true);
                self.run(&ctx, None).await?
            } else {
                (ended, run)
            };
            if let Some(thread_id) = &run.thread_id {
                self.lock_threads()
                    .insert(ctx.cell_id().clone(), thread_id.clone());
                ctx.annotate("threadId", thread_id.as_str());
                if let Some(total) = &run.usage {
                    ctx.annotate("usage", self.usage_of_this_run(thread_id, total));
                }
            }
            let why_exited = run
                .fatal
                .clone()
                .or_else(|| error_line(&run.stderr_tail))
                .unwrap_or_else(|| "no turn.completed or turn.failed event".to_owned());
            match &run.turn_ended {
                Some(Ok(())) => run.show_errors(&ctx, None),
                Some(Err(message)) => run.show_errors(&ctx, Some(message)),
                None => run.show_errors(&ctx, Some(&why_exited)),
            }
            match (run.turn_ended, ended) {
                // Stopped before its turn ended: cancelled or timed out.
                (None, ended @ Ended::Stopped { .. }) => settle(&ctx, ended),
                (Some(Ok(())), ended) => {
                    if let Ended::Stopped { .. } = ended {
                        // It lingered after its turn and was stopped; the turn stands.
                        let _ = settle(&ctx, ended);
                    }
                    Ok(Outcome::default())
                }
                (Some(Err(message)), _) => Err(ExecutionError::new("CodexTurnFailed", message)),
                (None, Ended::Exited(status)) => {
                    let why = why_exited;
                    let how = match status {
                        Ok(status) => status.code().map_or_else(
                            || "was killed".to_owned(),
                            |code| format!("exited with code {code}"),
                        ),
                        Err(error) => format!("could not be waited for ({error})"),
                    };
                    Err(ExecutionError::new(
                        "CodexError",
                        format!("codex {how} before its turn ended: {why}"),
                    ))
                }
            }
        })
        .await
    }
}

impl Codex {
    /// One `codex exec --json` process for this turn, until it is gone.
    async fn run(
        &self,
        ctx: &ExecutionContext,
        resume: Option<&str>,
    ) -> Result<(Ended, Run), ExecutionError> {
        let mut command = self.program.command(Stdio::piped());
        command.args(["exec", "--json"]);
        command.args(&self.exec_args);
        if let Some(thread_id) = resume {
            command.args(["resume", thread_id]);
        }
        let mut group = self.program.spawn(&mut command)?;
        let child = group.child();
        let (stdin, stdout, stderr) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take());
        let mut run = Run::default();
        let turn_over = Notify::new();
        let output = async {
            let feed = async {
                if let Some(mut stdin) = stdin {
                    let _ = stdin.write_all(ctx.source().as_bytes()).await;
                }
            };
            let events = async {
                let Some(stdout) = stdout else { return };
                let mut pipe = Pipe::new(stdout);
                while let Some(line) = pipe.next_line(MAX_EVENT_LINE).await {
                    let line = match line {
                        Line::Text(line) => line,
                        Line::Overlong(bytes) => {
                            tracing::warn!(bytes, "skipped a codex event line over the limit");
                            recorded(ctx.stderr(format!(
                                "[codex sent an event of {bytes} bytes, over the \
                                 {MAX_EVENT_LINE}-byte limit; it is not shown]\n"
                            )));
                            continue;
                        }
                    };
                    let ended_before = run.turn_ended.is_some();
                    on_event(ctx, &mut run, &line);
                    if !ended_before && run.turn_ended.is_some() {
                        turn_over.notify_one();
                    }
                }
            };
            let errors = async {
                let Some(stderr) = stderr else {
                    return String::new();
                };
                let mut pipe = Pipe::new(stderr);
                let mut tail = String::new();
                while let Some(text) = pipe.next_text(Duration::from_millis(20)).await {
                    tracing::debug!(bytes = text.len(), "codex stderr");
                    tail.push_str(&text);
                    if tail.len() > STDERR_TAIL {
                        let cut = tail.len() - STDERR_TAIL;
                        let cut = (cut..tail.len())
                            .find(|&i| tail.is_char_boundary(i))
                            .unwrap_or(0);
                        tail.drain(..cut);
                    }
                }
                tail
            };
            let ((), (), tail) = tokio::join!(feed, events, errors);
            tail
        };
        let exit_grace = self.exit_grace;
        let linger = async {
            turn_over.notified().await;
            tokio::time::sleep(exit_grace).await;
        };
        let mut tail = String::new();
        let output = async { tail = output.await };
        let ended = supervise(
            &mut group,
            ctx,
            self.ladder,
            self.max_runtime,
            output,
            linger,
        )
        .await;
        if let Ended::Stopped {
            cause: StopCause::Lingered,
            ..
        } = ended
        {
            tracing::info!(grace = ?exit_grace, "codex did not exit after its turn; stopped it");
        }
        run.stale |= tail.contains(STALE_THREAD);
        run.stderr_tail = tail;
        Ok((ended, run))
    }
}

/// How codex's `error` events begin while it cannot reach the model server.
const RECONNECTING: &str = "Reconnecting...";

/// The id of the display that shows codex waiting for the model server.
fn waiting_display(ctx: &ExecutionContext) -> String {
    format!("codex-waiting-{}", ctx.queue_id().as_str())
}

/// Applies one codex event line.
fn on_event(ctx: &ExecutionContext, run: &mut Run, line: &str) {
    let Ok(event) = serde_json::from_str::<Value>(line) else {
        tracing::warn!(
            bytes = line.len(),
            "skipped a line that is not a codex event"
        );
        return;
    };
    let text = |key: &str, value: &Value| {
        value
            .get(key)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    let kind = event
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if run.waiting_shown && kind != "error" {
        // Codex got through to the model server.
        run.waiting_shown = false;
        recorded(ctx.update_display(
            waiting_display(ctx),
            MediaBundle::plain("codex reached the model server again"),
        ));
    }
    match kind {
        "thread.started" => {
            run.thread_id = event
                .get("thread_id")
                .and_then(Value::as_str)
                .map(str::to_owned)
        }
        "turn.started" => run.turn_started = true,
        "turn.completed" => {
            run.usage = event.get("usage").and_then(Value::as_object).cloned();
            run.turn_ended = Some(Ok(()));
        }
        "turn.failed" => {
            let message = event
                .get("error")
                .map(|error| text("message", error))
                .unwrap_or_default();
            run.turn_ended = Some(Err(message));
        }
        "error" if text("message", &event).starts_with(RECONNECTING) => {
            // Codex waits for the model server, maybe for ever: the cell says so at once.
            let message = text("message", &event);
            let status =
                MediaBundle::plain(format!("codex is waiting for the model server: {message}"));
            let written = match run.waiting_shown {
                true => ctx.update_display(waiting_display(ctx), status),
                false => ctx
                    .display(Display::new(status).id(waiting_display(ctx)))
                    .map(drop),
            };
            recorded(written);
            run.waiting_shown = true;
            run.errors.push(message);
        }
        "error" => {
            let message = text("message", &event);
            run.stale |= message.contains(STALE_THREAD);
            run.errors.push(message.clone());
            run.fatal = Some(message);
        }
        "item.started" => {
            // A command shows as soon as it starts, not only once it finished.
            if let Some(item) = event.get("item")
                && item.get("type").and_then(Value::as_str) == Some("command_execution")
            {
                run.started_commands.insert(text("id", item));
                recorded(ctx.stdout(format!("$ {}\n", text("command", item))));
            }
        }
        "item.completed" => {
            if let Some(item) = event.get("item") {
                let announced = run.started_commands.remove(&text("id", item));
                show_item(ctx, item, announced);
            }
        }
        other => tracing::trace!(event = other, "codex event"),
    }
}

/// Shows a completed item in the cell; `announced` if its start was shown already.
fn show_item(ctx: &ExecutionContext, item: &Value, announced: bool) {
    let text = |key: &str| item.get(key).and_then(Value::as_str).unwrap_or_default();
    let written = match text("type") {
        "agent_message" => ctx.markdown(text("text")).map(drop),
        "command_execution" => {
            let output = text("aggregated_output");
            let mut shown = if announced {
                String::new()
            } else {
                format!("$ {}\n", text("command"))
            };
            if output.len() > MAX_COMMAND_OUTPUT {
                let mut cut = MAX_COMMAND_OUTPUT;
                while !output.is_char_boundary(cut) {
                    cut -= 1;
                }
                shown.push_str(&output[..cut]);
                shown.push_str(&format!(
                    "\n[output truncated: {} bytes, the first {cut} shown]\n",
                    output.len()
                ));
            } else {
                shown.push_str(output);
            }
            if !shown.ends_with('\n') {
                shown.push('\n');
            }
            match item.get("exit_code").and_then(Value::as_i64) {
                Some(code) => shown.push_str(&format!("[exit code {code}]\n")),
                None => shown.push_str(&format!("[{}]\n", text("status"))),
            }
            ctx.stdout(shown)
        }
        "file_change" => {
            let changes = item
                .get("changes")
                .cloned()
                .unwrap_or(Value::Array(Vec::new()));
            let listed: Vec<String> = changes
                .as_array()
                .into_iter()
                .flatten()
                .map(|change| {
                    let field = |key| change.get(key).and_then(Value::as_str).unwrap_or("?");
                    format!("{} {}", field("kind"), field("path"))
                })
                .collect();
            let data = MediaBundle::plain(listed.join("\n")).with(
                "application/json",
                json!({"changes": changes, "status": item.get("status")}),
            );
            ctx.display(Display::new(data)).map(drop)
        }
        "todo_list" => {
            let items: Vec<String> = item
                .get("items")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .map(|todo| {
                    let done = todo
                        .get("completed")
                        .and_then(Value::as_bool)
                        .unwrap_or(false);
                    let what = todo.get("text").and_then(Value::as_str).unwrap_or_default();
                    format!("- [{}] {what}", if done { "x" } else { " " })
                })
                .collect();
            ctx.markdown(items.join("\n")).map(drop)
        }
        "mcp_tool_call" => {
            let error = item
                .get("error")
                .and_then(|error| error.get("message").or(Some(error)))
                .and_then(Value::as_str)
                .map(|message| format!(": {message}"))
                .unwrap_or_default();
            ctx.stdout(format!(
                "[tool {}.{}: {}{error}]\n",
                text("server"),
                text("tool"),
                text("status")
            ))
        }
        "web_search" => ctx.stdout(format!("[web search: {}]\n", text("query"))),
        "error" => ctx.stderr(format!("{}\n", text("message"))),
        other => {
            tracing::trace!(item = other, "codex item not shown");
            Ok(())
        }
    };
    recorded(written);
}

/// The line of codex's stderr that says what went wrong: the last one that starts with
/// `error` (any case), else the last line that is neither a hint (`For more information,
/// try '--help'.`, `tip: ...`, `Usage: ...`) nor part of a backtrace.
fn error_line(text: &str) -> Option<String> {
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .collect();
    let is_error = |line: &&str| line.to_ascii_lowercase().starts_with("error");
    let is_noise = |line: &&str| {
        let lower = line.to_ascii_lowercase();
        lower.starts_with("for more information")
            || lower.starts_with("tip:")
            || lower.starts_with("usage:")
            || lower.starts_with("stack backtrace")
            || lower.starts_with("at ")
            || lower.starts_with("note: run with `rust_backtrace")
            || line
                .split_once(':')
                .is_some_and(|(n, _)| n.parse::<u32>().is_ok())
    };
    lines
        .iter()
        .rev()
        .find(|line| is_error(line))
        .or_else(|| lines.iter().rev().find(|line| !is_noise(line)))
        .map(|line| (*line).to_owned())
}

#[cfg(test)]
mod tests {
    use super::error_line;

    #[test]
    fn the_reason_is_the_line_with_the_error_not_the_last_one() {
        let usage = "error: unexpected argument '--skip-git-repo-check' found\n\n  tip: to pass \
                     it as a value, use '-- --skip-git-repo-check'\n\nUsage: codex [OPTIONS] \
                     [PROMPT]\n\nFor more information, try '--help'.\n";
        assert_eq!(
            error_line(usage).unwrap(),
            "error: unexpected argument '--skip-git-repo-check' found"
        );
        let backtrace = "Error: thread/resume failed: no rollout found\nStack backtrace:\n   0: \
                         anyhow::error::new\n             at /rustc/src/lib.rs:1:2\n   1: \
                         codex::main\n";
        assert_eq!(
            error_line(backtrace).unwrap(),
            "Error: thread/resume failed: no rollout found"
        );
        assert_eq!(
            error_line("starting\nmodel unreachable\n").unwrap(),
            "model unreachable"
        );
        assert_eq!(error_line("\n\n"), None);
    }
}
