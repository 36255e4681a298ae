//! What the example binaries share: opening the store, exit codes, following a notebook's
//! log and printing outputs as they arrive.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::process::ExitCode;

use runtime_core::TerminationReason;
use runtime_native::config::CommonConfig;
use runtime_native::{RunError, SqliteStore};

use runtime_core::{
    CompletionStatus, Event, NotebookWatcher, OutputKind, QueueEntry, QueueId, StoreError,
};

/// Opens the configured notebook's store, or says why not (and exits 1).
pub fn open_store(common: &CommonConfig) -> Result<SqliteStore, ExitCode> {
    SqliteStore::open(&common.store, &common.notebook).map_err(|error| {
        eprintln!("error: {error}");
        ExitCode::FAILURE
    })
}

/// Parses the command line, or prints why not (or the help) and gives the exit code.
pub fn parse_args<T: clap::Parser>() -> Result<T, ExitCode> {
    runtime_native::config::parse_cli::<T>().map_err(|error| {
        error.print();
        ExitCode::from(u8::try_from(error.exit_code()).unwrap_or(2))
    })
}

/// The exit code for how an agent's run ended, said on the terminal.
pub fn exit_code(ended: Result<TerminationReason, RunError>) -> ExitCode {
    match ended {
        Ok(reason) => {
            println!("agent stopped ({reason:?})");
            ExitCode::SUCCESS
        }
        Err(RunError::Forced) => {
            eprintln!("stopped at once by a second signal");
            ExitCode::from(runtime_native::FORCED_EXIT_CODE as u8)
        }
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

/// The text a person should see for an output event of an execution, as it arrives.
pub fn output_text(event: &Event) -> Option<String> {
    Some(match event {
        Event::StreamOutputAdded(e) => e.text.clone(),
        Event::StreamOutputAppended(e) => e.text.clone(),
        Event::MarkdownOutputAdded(e) => e.text.clone(),
        Event::MarkdownOutputAppended(e) => e.text.clone(),
        Event::ExecuteResultAdded(e) => format!("{}\n", bundle_text(&e.data)),
        Event::DisplayOutputAdded(e) => format!("{}\n", bundle_text(&e.data)),
        Event::DisplayOutputUpdated(e) => format!("(update) {}\n", bundle_text(&e.data)),
        Event::ErrorOutputAdded(e) => format!("{}: {}\n", e.ename, e.evalue),
        Event::OutputsCleared(_) => "(cleared)\n".to_owned(),
        _ => return None,
    })
}

/// The text of a stored output.
pub fn stored_output_text(kind: &OutputKind) -> String {
    match kind {
        OutputKind::Stream { text, .. } | OutputKind::Markdown { text } => text.clone(),
        OutputKind::Display { data, .. } | OutputKind::Result { data, .. } => bundle_text(data),
        OutputKind::Error { ename, evalue, .. } => format!("{ename}: {evalue}"),
    }
}

fn bundle_text(data: &runtime_core::MediaBundle) -> String {
    data.clone()
        .with_text_fallback()
        .text()
        .unwrap_or_default()
        .to_owned()
}

/// Calls `on_event` with each event about `queue_id` as the watcher folds it, until the
/// entry completes; returns its final entry.
pub async fn follow(
    watcher: &mut NotebookWatcher,
    queue_id: &QueueId,
    mut on_event: impl FnMut(&Event),
) -> Result<QueueEntry, StoreError> {
    loop {
        if let Some(entry) = watcher.state().entry(queue_id).filter(|e| e.is_completed()) {
            return Ok(entry.clone());
        }
        let event = watcher.next().await?;
        if event.queue_id() == Some(queue_id) {
            on_event(&event);
        }
    }
}

/// A short word for how an entry ended.
pub fn status_word(entry: &QueueEntry) -> &'static str {
    match entry.state.status() {
        Some(CompletionStatus::Success) => "success",
        Some(CompletionStatus::Error) => "error",
        Some(CompletionStatus::Cancelled) => "cancelled",
        Some(CompletionStatus::TimedOut) => "timed out",
        Some(CompletionStatus::RuntimeLost) => "runtime lost",
        None => "unfinished",
    }
}
