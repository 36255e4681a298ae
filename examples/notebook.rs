//! A small notebook client that shares the store with agents in other processes.
//!
//! ```text
//! cargo run --example notebook -- run "print(1)"      # add a cell, run it, stream its outputs
//! cargo run --example notebook -- run --type ai "hi"  # an AI cell
//! cargo run --example notebook -- status              # sessions and the queue
//! cargo run --example notebook -- show                # every cell with its outputs
//! cargo run --example notebook -- follow QUEUE_ID     # its outputs, live, from anywhere
//! cargo run --example notebook -- cancel --all        # cancel what has not finished
//! cargo run --example notebook -- input QUEUE_ID      # answer a cell's input() from stdin
//! cargo run --example notebook -- import report.ipynb # a Jupyter notebook into the log
//! cargo run --example notebook -- export -o out.ipynb # the notebook as a Jupyter notebook
//! cargo run --example notebook -- run-file in.ipynb -o out.ipynb  # run one on a kernel
//! cargo run --example notebook -- repair              # fill gaps in a damaged store file
//! ```
//!
//! Every command takes `--json` for scripts: one JSON object per line, each with a `type`.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use examples::AnyStore;
use examples::answer::Question;
use examples::{follow, output_text, status_word, stored_output_text};
use runtime_core::{
    Catalog, CellDeleted, CellType, CompletionStatus, EntryState, Event, InputReplyError,
    InputRequest, NotebookClient, NotebookRuntimeRequested, NotebookState, NotebookWatcher,
    OutputId, OutputKind, QueueEntry, QueueId, QueueStatus, SessionState, Store, StoreError,
    StreamName,
};
use runtime_native::TokioClock;
use runtime_native::config::{CommonArgs, ConfigError, init_logging};
use runtime_native::ipynb::{self, RunOptions};
use serde_json::json;

/// A notebook client: runs cells, cancels them and shows the notebook, sharing the store with
/// the agents serving it.
/// Writes a line to stdout. When stdout is closed early (`notebook show | head -1`) the
/// program ends quietly, as a pipeline expects, instead of panicking; any other failure to
/// write is an error.
macro_rules! out {
    ($($arg:tt)*) => {
        emit(format_args!("{}\n", format_args!($($arg)*)))
    };
}

/// Writes `text` to stdout and flushes it: see [`out!`].
fn emit(text: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    if let Err(error) = stdout.write_fmt(text).and_then(|()| stdout.flush()) {
        if error.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("error: cannot write to stdout: {error}");
        std::process::exit(1);
    }
}

#[derive(Parser)]
#[command(name = "notebook", version)]
struct Cli {
    #[command(flatten)]
    common: CommonArgs,
    /// Print JSON lines instead of text
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Add a cell, run it and print its outputs as they arrive; the exit code says how it
    /// ended (0 success, 1 error, 3 cancelled, 4 timed out, 5 runtime lost)
    Run {
        /// The cell's source, or `-` to read it from stdin
        source: String,
        /// The cell's kind
        #[arg(long = "type", value_enum, default_value = "code")]
        cell_type: Kind,
        /// Only queue it: print the queue id and exit
        #[arg(long)]
        no_wait: bool,
    },
    /// Show an execution's outputs so far, then as they arrive until it ends, like a log
    /// tail (from another terminal than the one that ran it); the exit code says how it
    /// ended, as for `run`
    Follow {
        /// The execution's queue id (`run` prints it)
        queue_id: String,
    },
    /// Cancel one execution, or everything unfinished
    Cancel {
        /// The execution's queue id
        #[arg(required_unless_present = "all")]
        queue_id: Option<String>,
        /// Cancel every execution that has not finished
        #[arg(long, conflicts_with = "queue_id")]
        all: bool,
    },
    /// Answer a running cell's input request (Python's `input()` or `getpass`)
    Input {
        /// The execution's queue id
        queue_id: String,
        /// The answer; without it, one line is read from stdin (not echoed for a password
        /// typed at a terminal). Pass passwords on stdin: arguments show in `ps` and in
        /// shell history
        value: Option<String>,
    },
    /// Import a Jupyter notebook (.ipynb, nbformat 4) into this notebook, which must have
    /// no cells yet
    Import {
        /// The .ipynb file
        file: PathBuf,
    },
    /// Write this notebook as a Jupyter notebook (.ipynb, nbformat 4.5): its cells with the
    /// outputs of their latest runs, or those they were imported with
    Export {
        /// The file to write (replaced whole, never half-written); stdout without it
        #[arg(short, long)]
        output: Option<PathBuf>,
    },
    /// Run every code cell of a Jupyter notebook in order on a fresh kernel and write the
    /// executed notebook, as `jupyter nbconvert --execute` does (no store needed). Exits 1
    /// at the first cell that fails, unless --allow-errors
    RunFile {
        /// The .ipynb file to run
        input: PathBuf,
        /// Where to write the executed notebook (replaced whole); stdout without it
        #[arg(short, long)]
        output: Option<PathBuf>,
        /// The kernel (default: the notebook's kernelspec, else python3)
        #[arg(long)]
        kernel: Option<String>,
        /// Run every cell even after one fails; exit 0
        #[arg(long)]
        allow_errors: bool,
        /// Each cell's time limit, in seconds
        #[arg(long, value_name = "SECS")]
        timeout: Option<u64>,
        /// A parameter, papermill's way: a cell setting it is inserted after the cell
        /// tagged `parameters` (numbers, True, False and None as they are, anything else a
        /// string); repeat for more
        #[arg(short = 'p', long = "parameter", num_args = 2, value_names = ["NAME", "VALUE"])]
        parameters: Vec<String>,
    },
    /// Show the runtime sessions and the queue
    Status,
    /// Show every cell with its latest outputs (and the notebook's title, if it has one)
    Show,
    /// Title the notebook (an empty title leaves it untitled); catalogs list it by this
    Title {
        /// The whole new title
        title: String,
    },
    /// Ask for a runtime of type TYPE to serve the notebook: a gateway serving that type
    /// (`process-agent --gateway`) attaches to it; an empty TYPE withdraws the request
    Runtime {
        /// The runtime type (a gateway's backend name: shell, codex, ...)
        runtime_type: String,
        /// Work in a git worktree of this repository (a path on the gateway's machine)
        #[arg(long, value_name = "PATH")]
        repository: Option<String>,
        /// The worktree's branch starts from this branch or commit [default: the
        /// repository's HEAD]
        #[arg(long, value_name = "BRANCH", requires = "repository")]
        branch: Option<String>,
    },
    /// Repair a store file with missing events (rows deleted by hand or lost to damage):
    /// fill each gap with a placeholder event every reader skips
    Repair,
    /// Commit COUNT events one by one, printing each acknowledged sequence number (a load
    /// and durability tool)
    #[command(hide = true)]
    Flood {
        /// How many events
        #[arg(long, default_value_t = 1000)]
        count: usize,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum Kind {
    Code,
    Markdown,
    Sql,
    Ai,
    Raw,
}

impl From<Kind> for CellType {
    fn from(kind: Kind) -> Self {
        match kind {
            Kind::Code => CellType::Code,
            Kind::Markdown => CellType::Markdown,
            Kind::Sql => CellType::Sql,
            Kind::Ai => CellType::Ai,
            Kind::Raw => CellType::Raw,
        }
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = match examples::parse_args::<Cli>() {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    // A headless run needs no store and no identity.
    if let Command::RunFile {
        input,
        output,
        kernel,
        allow_errors,
        timeout,
        parameters,
    } = cli.command
    {
        if let Err(error) = init_logging(cli.common.log.as_deref().unwrap_or("warn")) {
            eprintln!("error: {error}");
            return ExitCode::from(ConfigError::EXIT_CODE as u8);
        }
        let options = RunOptions {
            kernel,
            timeout: timeout.map(std::time::Duration::from_secs),
            allow_errors,
            parameters: parameters
                .chunks_exact(2)
                .map(|pair| (pair[0].clone(), pair[1].clone()))
                .collect(),
            // The kernel runs where the notebook is, as nbconvert runs it.
            cwd: input
                .parent()
                .filter(|dir| !dir.as_os_str().is_empty())
                .map(Path::to_path_buf),
            ..RunOptions::default()
        };
        return run_file(&input, output.as_deref(), options).await;
    }
    let config = match cli
        .common
        .resolve()
        .and_then(|c| init_logging(&c.log).map(|()| c))
    {
        Ok(config) => config,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::from(ConfigError::EXIT_CODE as u8);
        }
    };
    let opening = match cli.command {
        Command::Status
        | Command::Show
        | Command::Cancel { .. }
        | Command::Follow { .. }
        | Command::Input { .. }
        | Command::Export { .. }
        | Command::Repair => examples::Opening::MustExist,
        Command::Run { .. }
        | Command::Title { .. }
        | Command::Runtime { .. }
        | Command::Import { .. }
        | Command::Flood { .. } => examples::Opening::CreateIfMissing,
        Command::RunFile { .. } => unreachable!("handled above"),
    };
    let store = match examples::open_store_with(&config, opening) {
        Ok(store) => store,
        Err(code) => return code,
    };
    if let Err(error) = store.reachable(examples::REACH_HUB_WITHIN).await {
        eprintln!("error: {error}");
        return ExitCode::FAILURE;
    }
    let client = NotebookClient::new(store.clone(), config.client_id.clone());
    let outcome = match cli.command {
        Command::Run {
            source,
            cell_type,
            no_wait,
        } => {
            let source = match source.as_str() {
                "-" => match std::io::read_to_string(std::io::stdin()) {
                    Ok(source) => source,
                    Err(error) => {
                        eprintln!("error: cannot read the source from stdin: {error}");
                        return ExitCode::FAILURE;
                    }
                },
                _ => source,
            };
            run(
                &store,
                &client,
                &config.client_id,
                &source,
                cell_type.into(),
                no_wait,
                cli.json,
            )
            .await
        }
        Command::Cancel { queue_id, all } => cancel(&store, &client, queue_id, all, cli.json).await,
        Command::Follow { queue_id } => {
            follow_execution(&store, &config.client_id, queue_id.into(), cli.json).await
        }
        Command::Input { queue_id, value } => {
            answer(&store, &client, queue_id.into(), value, cli.json).await
        }
        // Status needs sessions and the queue, not outputs: a lean fold.
        Command::Status => {
            match current(NotebookWatcher::resume_lean(&store).await, &store).await {
                // A lean fold keeps no notebook metadata: the runtime asked for is the catalog's.
                Ok(state) => {
                    let asked = asked_runtime(&store, &config.notebook).await;
                    Ok(status(&state, asked.as_ref(), cli.json))
                }
                Err(error) => Err(error),
            }
        }
        Command::Show => current(NotebookWatcher::resume(&store).await, &store)
            .await
            .map(|state| show(&state, cli.json)),
        Command::Title { title } => client.set_title(&title).await.map(|()| ExitCode::SUCCESS),
        Command::Runtime {
            runtime_type,
            repository,
            branch,
        } => {
            let worktree =
                repository.map(|repository| runtime_core::WorktreeRequest { repository, branch });
            client
                .request_runtime(&runtime_type, worktree)
                .await
                .map(|()| ExitCode::SUCCESS)
        }
        Command::Import { file } => import(&store, &file, cli.json).await,
        Command::Export { output } => current(NotebookWatcher::resume(&store).await, &store)
            .await
            .map(|state| export(&state, output.as_deref())),
        Command::RunFile { .. } => unreachable!("handled above"),
        Command::Flood { count } => flood(&store, count).await,
        Command::Repair => repair(&store, cli.json),
    };
    match outcome {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn run(
    store: &AnyStore,
    client: &NotebookClient,
    client_id: &str,
    source: &str,
    cell_type: CellType,
    no_wait: bool,
    json: bool,
) -> Result<ExitCode, StoreError> {
    let mut watcher = watching(store, client_id).await;
    let resumed_at = watcher.state().last_seq();
    // The log as it was before the request: everything after it is this run's to show (an
    // agent may answer before a head read after the request would return).
    let head = store.head().await?;
    // Listening for Ctrl-C before the request is committed: once the cell is in the log,
    // an interrupt cancels it rather than killing this command.
    let mut interrupts = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
        .map_err(|error| StoreError::Backend(format!("cannot listen for Ctrl-C: {error}")))?;
    let (cell_id, queue_id) = client.run_cell(cell_type, source).await?;
    if json {
        out!(
            "{}",
            json!({"type": "queued", "queued": queue_id, "queueId": queue_id, "cellId": cell_id})
        );
    } else if no_wait {
        out!("{queue_id}");
    } else {
        eprintln!("[queued {queue_id}]");
    }
    if no_wait {
        return Ok(ExitCode::SUCCESS);
    }
    let state = watcher.wait_until(|s| s.last_seq() >= head).await?;
    leave_snapshot(store, state, resumed_at).await;
    if !json {
        match state.active_session() {
            None => match state.runtime_request() {
                Some(asked) => eprintln!(
                    "(no runtime is serving this notebook yet: the cell waits in the queue for the \
                     `{}` runtime it asks for, which a gateway serving that type attaches to \
                     (`process-agent --gateway --backend {}` on this store))",
                    asked.runtime_type, asked.runtime_type
                ),
                None => eprintln!(
                    "(no runtime is serving this notebook yet: the cell waits in the queue; start one \
                     with `cargo run --example echo-agent`, or ask a gateway for one with \
                     `notebook runtime TYPE`)"
                ),
            },
            Some(session) if !session.capabilities.covers(cell_type) => eprintln!(
                "(the cell waits in the queue: no runtime here runs {} cells (the active runtime, {}, does not))",
                cell_type.as_str(),
                session.runtime_type
            ),
            Some(_) => {}
        }
    }
    // At a terminal, the cell's input requests are asked here and answered from stdin.
    let interactive = !json && std::io::IsTerminal::is_terminal(&std::io::stdin());
    let (asks, mut asked) = tokio::sync::watch::channel::<Option<InputRequest>>(None);
    let printer = std::cell::RefCell::new(Printer::new(json));
    // At a terminal, a cell that shows nothing for a while says how long it has waited.
    let mut ticks = tokio::time::interval(PROGRESS_EVERY);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let show_progress = !json && std::io::IsTerminal::is_terminal(&std::io::stderr());
    let following = follow(&mut watcher, &queue_id, |event| {
        if let Event::InputRequested(request) = event {
            asks.send_replace(Some(InputRequest::from(request)));
        }
        printer.borrow_mut().event(event);
    });
    tokio::pin!(following);
    // Ctrl-C cancels the cell and waits for its truthful end; a second one leaves it.
    let mut interrupted = false;
    let mut question: Option<(InputRequest, Question)> = None;
    let entry = loop {
        tokio::select! {
            entry = &mut following => break entry?,
            // Not while a question waits for its answer: the prompt stays as it is.
            _ = ticks.tick(), if show_progress && question.is_none() => printer.borrow_mut().progress(),
            changed = asked.changed(), if interactive => {
                let request = asked.borrow_and_update().clone();
                if let (Ok(()), Some(request)) = (changed, request) {
                    printer.borrow_mut().clear_progress();
                    eprint!("{}", request.prompt);
                    let reading = Question::ask(request.password);
                    question = Some((request, reading));
                }
            }
            answer = async { question.as_mut().map(|(_, q)| q)?.answer().await.ok() }, if question.is_some() => {
                // Dropping the question turns the terminal's echo back on.
                let Some((request, _)) = question.take() else { continue };
                let Some(value) = answer else {
                    eprintln!("(no answer read; answer with `notebook input {queue_id}`)");
                    continue;
                };
                let shown = if request.password { "" } else { value.as_str() };
                printer.borrow_mut().echo_to_skip = Some(format!("{}{shown}\n", request.prompt));
                reply(client, &queue_id, &request, &value).await?;
            }
            signal = interrupts.recv() => {
                if signal.is_none() || interrupted {
                    eprintln!("(left {queue_id}: it goes on, or ends, without this command)");
                    return Ok(ExitCode::from(EXIT_LEFT));
                }
                interrupted = true;
                client.cancel(&queue_id).await?;
                eprintln!("(cancelling {queue_id}: waiting for it to end; Ctrl-C again to leave)");
            }
        }
    };
    printer.borrow_mut().clear_progress();
    Ok(ended(&entry, json))
}

/// How often `run` at a terminal updates its progress line, and how long a cell must have
/// been silent to get one.
const PROGRESS_EVERY: std::time::Duration = std::time::Duration::from_secs(1);
const PROGRESS_AFTER: std::time::Duration = std::time::Duration::from_secs(2);

/// Says how an execution ended; its exit code.
fn ended(entry: &QueueEntry, json: bool) -> ExitCode {
    let error = match &entry.state {
        EntryState::Completed { error, .. } => error.clone(),
        _ => None,
    };
    if json {
        out!(
            "{}",
            json!({"type": "ended", "queueId": entry.queue_id, "status": entry.state.status(), "error": error})
        );
    } else {
        let why = error.map(|e| format!(": {e}")).unwrap_or_default();
        eprintln!(
            "[{}{why}]",
            coloured(entry.state.status(), status_word(entry))
        );
    }
    ExitCode::from(exit_code(entry.state.status()))
}

/// `word` in the colour of `status` when stderr is a terminal and `NO_COLOR` is unset; as
/// it is otherwise (a file or a pipe gets no escape codes).
fn coloured(status: Option<CompletionStatus>, word: &str) -> String {
    let terminal = std::io::IsTerminal::is_terminal(&std::io::stderr());
    if !terminal || std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty()) {
        return word.to_owned();
    }
    let colour = match status {
        Some(CompletionStatus::Success) => "32",
        Some(CompletionStatus::Cancelled | CompletionStatus::TimedOut) => "33",
        _ => "31",
    };
    format!("\x1b[{colour}m{word}\x1b[0m")
}

/// Prints an execution's outputs as they arrive: the cell's stderr and its errors to
/// stderr, the rest to stdout; with `--json`, the events themselves.
struct Printer {
    json: bool,
    stderr_streams: std::collections::HashSet<OutputId>,
    /// The echo of an answer this command typed: the terminal shows it already.
    echo_to_skip: Option<String>,
    /// When the last output was printed (or the wait began).
    last_output: std::time::Instant,
    /// When the execution started, once it has.
    started: Option<std::time::Instant>,
    /// A progress line is on the terminal, to be erased before anything else is written.
    progress_shown: bool,
}

impl Printer {
    fn new(json: bool) -> Self {
        Printer {
            json,
            stderr_streams: Default::default(),
            echo_to_skip: None,
            last_output: std::time::Instant::now(),
            started: None,
            progress_shown: false,
        }
    }

    /// At a terminal: after a while without output, how long the cell has waited or run.
    fn progress(&mut self) {
        if self.last_output.elapsed() < PROGRESS_AFTER {
            return;
        }
        let line = match self.started {
            Some(started) => format!("[running {} s]", started.elapsed().as_secs()),
            None => format!("[queued {} s]", self.last_output.elapsed().as_secs()),
        };
        eprint!("\r\x1b[K{line}");
        self.progress_shown = true;
    }

    /// Erases the progress line, if one shows.
    fn clear_progress(&mut self) {
        if std::mem::take(&mut self.progress_shown) {
            eprint!("\r\x1b[K");
        }
    }

    /// One event of the execution, as it is folded.
    fn event(&mut self, event: &Event) {
        if let Event::ExecutionStarted(_) = event {
            self.started = Some(std::time::Instant::now());
        }
        if self.json {
            out!("{}", event.to_json());
            return;
        }
        let Some(mut text) = output_text(event) else {
            return;
        };
        if let Event::StreamOutputAdded(_) | Event::StreamOutputAppended(_) = event
            && let Some(echo) = self.echo_to_skip.take()
            && let Some(rest) = text.strip_prefix(&echo)
        {
            text = rest.to_owned();
        }
        let to_stderr = match event {
            Event::StreamOutputAdded(e) if e.name == StreamName::Stderr => {
                self.stderr_streams.insert(e.output_id.clone());
                true
            }
            Event::StreamOutputAppended(e) => self.stderr_streams.contains(&e.output_id),
            Event::ErrorOutputAdded(_) => true,
            _ => false,
        };
        self.print(&text, to_stderr);
    }

    /// What an execution shows already, for `follow` of one under way or done.
    fn shown(&mut self, entry: &QueueEntry) {
        for output in &entry.outputs {
            if self.json {
                out!(
                    "{}",
                    json!({"type": "output", "queueId": entry.queue_id, "output": output})
                );
                continue;
            }
            let to_stderr = match &output.kind {
                OutputKind::Stream { name, .. } if *name == StreamName::Stderr => {
                    self.stderr_streams.insert(output.output_id.clone());
                    true
                }
                OutputKind::Error { .. } => true,
                _ => false,
            };
            // As they print when they arrive: rich outputs on a line of their own.
            let mut text = stored_output_text(&output.kind);
            if !matches!(
                output.kind,
                OutputKind::Stream { .. } | OutputKind::Markdown { .. }
            ) {
                text.push('\n');
            }
            self.print(&text, to_stderr);
        }
    }

    fn print(&mut self, text: &str, to_stderr: bool) {
        self.clear_progress();
        self.last_output = std::time::Instant::now();
        if to_stderr {
            eprint!("{text}");
        } else {
            emit(format_args!("{text}"));
        }
    }
}

/// A watcher for a command that waits on a cell, resumed from the latest snapshot. While it
/// waits it also ends a session whose lease ran out (a runtime killed mid-cell), so the cell
/// ends `runtime_lost` instead of leaving the command waiting forever.
async fn watching(store: &AnyStore, client_id: &str) -> NotebookWatcher {
    NotebookWatcher::resume(store)
        .await
        .enforcing_leases(store.clone(), TokioClock, client_id)
}

/// `notebook follow`: what the execution has shown, then its outputs as they arrive, until
/// it ends.
async fn follow_execution(
    store: &AnyStore,
    client_id: &str,
    queue_id: QueueId,
    json: bool,
) -> Result<ExitCode, StoreError> {
    let mut watcher = watching(store, client_id).await;
    let head = store.head().await?;
    let state = watcher.wait_until(|s| s.last_seq() >= head).await?;
    let Some(entry) = state.entry(&queue_id) else {
        eprintln!("error: no execution {queue_id} in this notebook");
        return Ok(ExitCode::FAILURE);
    };
    let mut printer = Printer::new(json);
    printer.shown(entry);
    if !json && !entry.is_completed() {
        eprintln!("[following {queue_id}: {}]", entry.queue_status().as_str());
    }
    let entry = follow(&mut watcher, &queue_id, |event| printer.event(event)).await?;
    Ok(ended(&entry, json))
}

/// `notebook run`'s exit code for how the cell ended (documented in docs/native.md).
fn exit_code(status: Option<CompletionStatus>) -> u8 {
    match status {
        Some(CompletionStatus::Success) => 0,
        Some(CompletionStatus::Error) | None => 1,
        Some(CompletionStatus::Cancelled) => 3,
        Some(CompletionStatus::TimedOut) => 4,
        Some(CompletionStatus::RuntimeLost) => 5,
    }
}

/// `notebook run` left by a second Ctrl-C, the cell not yet ended (128 + SIGINT, as shells
/// report an interrupted command).
const EXIT_LEFT: u8 = 130;

/// Asks to cancel one execution (which must exist and not have ended) or every one.
async fn cancel(
    store: &AnyStore,
    client: &NotebookClient,
    queue_id: Option<String>,
    all: bool,
    json: bool,
) -> Result<ExitCode, StoreError> {
    match queue_id {
        Some(queue_id) if !all => {
            let queue_id = QueueId::from(queue_id);
            let state = current(NotebookWatcher::resume_lean(store).await, store).await?;
            match state.queue_status(&queue_id) {
                None => {
                    eprintln!("error: no execution {queue_id} in this notebook");
                    return Ok(ExitCode::FAILURE);
                }
                Some(status @ QueueStatus::Completed { .. }) => {
                    eprintln!(
                        "error: execution {queue_id} already ended: {}",
                        status.as_str()
                    );
                    return Ok(ExitCode::FAILURE);
                }
                Some(_) => client.cancel(&queue_id).await?,
            }
        }
        _ => client.cancel_all().await?,
    }
    if json {
        out!(
            "{}",
            json!({"type": "cancel_requested", "cancelRequested": true})
        );
    } else {
        out!("cancel requested");
    }
    Ok(ExitCode::SUCCESS)
}

/// Answers the input request of a running execution, with `value` or a line of stdin.
async fn answer(
    store: &AnyStore,
    client: &NotebookClient,
    queue_id: QueueId,
    value: Option<String>,
    json: bool,
) -> Result<ExitCode, StoreError> {
    let state = current(NotebookWatcher::resume_lean(store).await, store).await?;
    let request = match state.entry(&queue_id) {
        None if state.queue_status(&queue_id).is_some() => {
            eprintln!("error: execution {queue_id} has ended: it asks for nothing");
            return Ok(ExitCode::FAILURE);
        }
        None => {
            eprintln!("error: no execution {queue_id} in this notebook");
            return Ok(ExitCode::FAILURE);
        }
        Some(entry) => match entry.input.clone().filter(InputRequest::is_waiting) {
            Some(request) => request,
            None => {
                eprintln!(
                    "error: execution {queue_id} is not waiting for input (it is {})",
                    entry.queue_status().as_str()
                );
                return Ok(ExitCode::FAILURE);
            }
        },
    };
    let value = match value {
        Some(value) => value,
        None => {
            if std::io::IsTerminal::is_terminal(&std::io::stdin()) {
                eprint!("{}", request.prompt);
            }
            match Question::ask(request.password).answer().await {
                Ok(value) => value,
                Err(error) => {
                    eprintln!("error: no answer read from stdin: {error}");
                    return Ok(ExitCode::FAILURE);
                }
            }
        }
    };
    reply(client, &queue_id, &request, &value).await?;
    if json {
        out!(
            "{}",
            json!({"type": "answered", "answered": request.input_id, "queueId": queue_id})
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Writes the reply (sealed, for a password).
async fn reply(
    client: &NotebookClient,
    queue_id: &QueueId,
    request: &InputRequest,
    value: &str,
) -> Result<(), StoreError> {
    client
        .reply_input(queue_id, request, value)
        .await
        .map_err(|error| match error {
            InputReplyError::Store(error) => error,
            InputReplyError::Seal(error) => StoreError::Invalid(error.to_string()),
        })
}

/// Imports an .ipynb file into a notebook that has no cells yet.
async fn import(store: &AnyStore, file: &Path, json: bool) -> Result<ExitCode, StoreError> {
    let events = match ipynb::read(file) {
        Ok(events) => events,
        Err(error) => {
            eprintln!("error: {error}");
            return Ok(ExitCode::FAILURE);
        }
    };
    let state = current(NotebookWatcher::resume_lean(store).await, store).await?;
    let cells = state.cells().count();
    if cells > 0 {
        eprintln!(
            "error: this notebook already has {cells} cell(s); import into a new one with --notebook NAME"
        );
        return Ok(ExitCode::FAILURE);
    }
    let imported = events
        .iter()
        .filter(|event| matches!(event, Event::CellCreated(_)))
        .count();
    store.commit(events).await?;
    if json {
        out!(
            "{}",
            json!({"type": "imported", "imported": file, "cells": imported})
        );
    } else {
        out!("imported {imported} cell(s) from {}", file.display());
    }
    Ok(ExitCode::SUCCESS)
}

/// Writes the notebook as an .ipynb file, or to stdout.
fn export(state: &NotebookState, output: Option<&Path>) -> ExitCode {
    match output {
        None => emit(format_args!("{}", runtime_core::ipynb::to_string(state))),
        Some(path) => {
            if let Err(error) = ipynb::write(path, state) {
                eprintln!("error: {error}");
                return ExitCode::FAILURE;
            }
        }
    }
    ExitCode::SUCCESS
}

/// `notebook run-file`: runs a notebook file on a fresh kernel, saying how each cell ends.
async fn run_file(input: &Path, output: Option<&Path>, options: RunOptions) -> ExitCode {
    let events = match ipynb::read(input) {
        Ok(events) => events,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::FAILURE;
        }
    };
    let allow_errors = options.allow_errors;
    let report = ipynb::run(events, options, |cell| {
        let why = cell
            .error
            .as_deref()
            .map(|e| format!(": {e}"))
            .unwrap_or_default();
        eprintln!(
            "[cell {} of {}: {}{why}]",
            cell.number,
            cell.of,
            cell.status.as_str()
        );
    })
    .await;
    let report = match report {
        Ok(report) => report,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::FAILURE;
        }
    };
    let written = export(&report.state, output);
    if written != ExitCode::SUCCESS {
        return written;
    }
    match report.first_failure() {
        Some(cell) if !allow_errors => {
            eprintln!(
                "error: cell {} of {} ended {}; the notebook was written as far as it ran",
                cell.number,
                cell.of,
                cell.status.as_str()
            );
            ExitCode::FAILURE
        }
        _ => ExitCode::SUCCESS,
    }
}

fn repair(store: &AnyStore, json: bool) -> Result<ExitCode, StoreError> {
    let filled = store
        .sqlite()
        .ok_or_else(|| {
            StoreError::Invalid("repair works on a SQLite file, not through a hub".into())
        })?
        .repair()?;
    if json {
        out!("{}", json!({"type": "repaired", "filled": filled}));
    } else if filled == 0 {
        out!("no gaps: nothing to repair");
    } else {
        out!("filled {filled} missing event(s) with placeholders that readers skip");
    }
    Ok(ExitCode::SUCCESS)
}

/// The notebook as it is now, folded on by `watcher` (resumed from a snapshot).
async fn current(
    mut watcher: NotebookWatcher,
    store: &AnyStore,
) -> Result<NotebookState, StoreError> {
    let head = store.head().await?;
    let resumed_at = watcher.state().last_seq();
    let state = watcher.wait_until(|s| s.last_seq() >= head).await?;
    leave_snapshot(store, state, resumed_at).await;
    Ok(watcher.into_state())
}

/// Saves a snapshot of `state` (full or lean, as it is) when it holds `SNAPSHOT_EVERY` entries or more past
/// the snapshot it resumed from (at `resumed_at`), so the next command folds less. A
/// failure only costs the next command time. (A hub makes its own; saving to one keeps
/// nothing.)
async fn leave_snapshot(store: &AnyStore, state: &NotebookState, resumed_at: u64) {
    if state.last_seq() < resumed_at.saturating_add(runtime_core::SNAPSHOT_EVERY) {
        return;
    }
    // A snapshot is a cache: a store that cannot keep one now loses nothing.
    let _ = store.save_snapshot(&state.snapshot()).await;
}

/// The runtime `notebook` asks for, as the store's catalog lists it.
async fn asked_runtime(store: &AnyStore, notebook: &str) -> Option<NotebookRuntimeRequested> {
    let listed = store.notebooks().await.ok()?;
    listed.into_iter().find(|info| info.id == notebook)?.runtime
}

fn status(state: &NotebookState, asked: Option<&NotebookRuntimeRequested>, json: bool) -> ExitCode {
    let now = runtime_core::Clock::now(&TokioClock);
    if json {
        let sessions: Vec<_> = state
            .sessions()
            .iter()
            .map(|s| {
                json!({"sessionId": s.session_id, "runtimeType": s.runtime_type, "clientId": s.client_id,
                       "active": s.is_active(), "status": s.status, "leaseUntil": s.lease_until,
                       "ended": match s.state { SessionState::Ended(reason) => Some(reason), SessionState::Active => None }})
            })
            .collect();
        let queue: Vec<_> = state
            .entries()
            .filter(|e| !e.is_completed())
            .map(|e| json!({"queueId": e.queue_id, "cellId": e.cell_id, "state": entry_word(&e.state), "session": e.state.session_id(),
                            "waitingForInput": waiting_prompt(e)}))
            .collect();
        out!(
            "{}",
            json!({"type": "status", "runtimeRequested": asked, "sessions": sessions, "queue": queue})
        );
        return ExitCode::SUCCESS;
    }
    match state.active_session() {
        Some(session) => {
            let lease = if session.lease_until > now {
                format!(
                    "lease valid for {:.1} s",
                    session.lease_until.saturating_since(now).as_secs_f64()
                )
            } else {
                "lease expired: the runtime is probably gone".to_owned()
            };
            out!(
                "active runtime: {} ({}) for {}, {}, {lease}",
                session.session_id,
                session.runtime_type,
                session.client_id,
                session.status.as_str()
            );
        }
        None => out!("no active runtime"),
    }
    if let Some(asked) = asked {
        let worktree = asked.worktree.as_ref().map_or(String::new(), |w| {
            let branch = w
                .branch
                .as_deref()
                .map_or(String::new(), |b| format!(" at {b}"));
            format!(", in a worktree of {}{branch}", w.repository)
        });
        out!(
            "asks for a {} runtime{worktree} (a gateway serving that type attaches to it)",
            asked.runtime_type
        );
    }
    let ended = state.sessions().iter().filter(|s| !s.is_active()).count();
    out!("{ended} ended session(s)");
    let unfinished: Vec<_> = state.entries().filter(|e| !e.is_completed()).collect();
    out!(
        "queue: {} unfinished, {} done",
        unfinished.len(),
        state.requested_count() - unfinished.len()
    );
    for entry in unfinished {
        out!(
            "  {} {} {}",
            entry.queue_id,
            entry_word(&entry.state),
            entry.source.lines().next().unwrap_or("")
        );
        if let Some(prompt) = waiting_prompt(entry) {
            out!(
                "    waiting for input: {prompt:?} (answer with `notebook input {}`)",
                entry.queue_id
            );
        }
    }
    ExitCode::SUCCESS
}

/// The prompt of the entry's unanswered input request, if it waits for one.
fn waiting_prompt(entry: &runtime_core::QueueEntry) -> Option<&str> {
    let input = entry.input.as_ref().filter(|input| input.is_waiting())?;
    Some(&input.prompt)
}

fn entry_word(state: &EntryState) -> &'static str {
    match state {
        EntryState::Pending => "pending",
        EntryState::Assigned { .. } => "assigned",
        EntryState::Executing { .. } => "running",
        EntryState::Completed { .. } => "completed",
    }
}

fn show(state: &NotebookState, json: bool) -> ExitCode {
    if let (Some(title), false) = (state.title(), json) {
        out!("# {title}\n");
    }
    for cell in state.cells() {
        let outputs: Vec<String> = state
            .cell_outputs(&cell.id)
            .iter()
            .map(|o| stored_output_text(&o.kind))
            .collect();
        let execution = cell.shown_execution.as_ref().and_then(|q| state.entry(q));
        if json {
            out!(
                "{}",
                json!({"type": "cell", "cellId": cell.id, "cellType": cell.cell_type, "source": cell.source,
                       "executionCount": execution.and_then(|e| e.execution_count),
                       "status": execution.and_then(|e| e.state.status()), "outputs": outputs,
                       "waitingForInput": execution.and_then(waiting_prompt)})
            );
            continue;
        }
        let count = execution
            .and_then(|e| e.execution_count)
            .map_or(" ".to_owned(), |n| n.to_string());
        out!(
            "[{count}] {}: {}",
            cell.cell_type.as_str(),
            cell.source.replace('\n', "\n    ")
        );
        for output in outputs {
            out!("    {}", output.trim_end().replace('\n', "\n    "));
        }
        if let Some(prompt) = execution.and_then(waiting_prompt) {
            out!("    (waiting for input: {prompt:?})");
        }
    }
    ExitCode::SUCCESS
}

async fn flood(store: &AnyStore, count: usize) -> Result<ExitCode, StoreError> {
    let mut stdout = std::io::stdout().lock();
    for n in 0..count {
        let seq = store
            .commit(vec![
                CellDeleted {
                    cell_id: format!("flood-{n}").into(),
                }
                .into(),
            ])
            .await?;
        // Printed only once the commit is acknowledged.
        let _ = writeln!(stdout, "{seq}");
        let _ = stdout.flush();
    }
    Ok(ExitCode::SUCCESS)
}
