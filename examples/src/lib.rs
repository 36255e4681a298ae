//! What the example binaries share: opening the store, exit codes, following a notebook's
//! log and printing outputs as they arrive.
#![allow(clippy::print_stdout, clippy::print_stderr)]

pub mod answer;

use std::process::ExitCode;

use runtime_core::sync::BearerToken;
use runtime_core::{Batch, Seq, Snapshot, SnapshotKind, Store, Subscription, TerminationReason};
use runtime_native::config::CommonConfig;
use runtime_native::hub::{self, HubOptions, HubStore};
use runtime_native::{RunError, SqliteStore};

use runtime_core::{
    CompletionStatus, Event, NotebookWatcher, OutputKind, QueueEntry, QueueId, StoreError,
};

/// The store an example uses: a SQLite file, or a notebook on a hub.
#[derive(Clone)]
pub enum AnyStore {
    /// `PATH` or `sqlite:PATH`.
    Sqlite(SqliteStore),
    /// `ws://HOST:PORT`, with the configured token.
    Hub(HubStore),
}

impl AnyStore {
    /// Where the notebook is, for people.
    pub fn describe(&self) -> String {
        match self {
            AnyStore::Sqlite(store) => store.path().display().to_string(),
            AnyStore::Hub(store) => format!("{store:?}"),
        }
    }

    /// Where the store's notebooks are, for people: the file, or the hub's URL.
    pub fn describe_catalog(&self) -> String {
        match self {
            AnyStore::Sqlite(store) => store.path().display().to_string(),
            AnyStore::Hub(store) => format!("the hub at {}", store.url()),
        }
    }

    /// The SQLite store, for what only a file can do (repair).
    pub fn sqlite(&self) -> Option<&SqliteStore> {
        match self {
            AnyStore::Sqlite(store) => Some(store),
            AnyStore::Hub(_) => None,
        }
    }
}

#[async_trait::async_trait]
impl Store for AnyStore {
    async fn commit_batch(&self, batch: &Batch) -> Result<Seq, StoreError> {
        match self {
            AnyStore::Sqlite(store) => store.commit_batch(batch).await,
            AnyStore::Hub(store) => store.commit_batch(batch).await,
        }
    }

    fn subscribe(&self, from: Seq) -> Subscription {
        match self {
            AnyStore::Sqlite(store) => store.subscribe(from),
            AnyStore::Hub(store) => store.subscribe(from),
        }
    }

    async fn head(&self) -> Result<Seq, StoreError> {
        match self {
            AnyStore::Sqlite(store) => Store::head(store).await,
            AnyStore::Hub(store) => store.head().await,
        }
    }

    async fn latest_snapshot(&self, kind: SnapshotKind) -> Result<Option<Snapshot>, StoreError> {
        match self {
            AnyStore::Sqlite(store) => store.latest_snapshot(kind).await,
            AnyStore::Hub(store) => store.latest_snapshot(kind).await,
        }
    }

    async fn save_snapshot(&self, snapshot: &Snapshot) -> Result<(), StoreError> {
        match self {
            AnyStore::Sqlite(store) => store.save_snapshot(snapshot).await,
            AnyStore::Hub(store) => store.save_snapshot(snapshot).await,
        }
    }

    fn keeps_snapshots(&self) -> bool {
        match self {
            AnyStore::Sqlite(store) => store.keeps_snapshots(),
            AnyStore::Hub(store) => store.keeps_snapshots(),
        }
    }
}

/// The store's catalog: every notebook of the SQLite file, or of the hub.
#[async_trait::async_trait]
impl runtime_core::Catalog for AnyStore {
    async fn notebooks(&self) -> Result<Vec<runtime_core::NotebookInfo>, StoreError> {
        match self {
            AnyStore::Sqlite(store) => runtime_core::Catalog::notebooks(store).await,
            AnyStore::Hub(store) => store.notebooks().await,
        }
    }

    fn open(&self, id: &str) -> Result<std::sync::Arc<dyn Store>, StoreError> {
        match self {
            AnyStore::Sqlite(store) => runtime_core::Catalog::open(store, id),
            AnyStore::Hub(store) => runtime_core::Catalog::open(store, id),
        }
    }
}

/// How long a one-shot command waits for a hub before it gives up.
pub const REACH_HUB_WITHIN: std::time::Duration = std::time::Duration::from_secs(10);

impl AnyStore {
    /// Waits until a hub store is connected, at most `within`; a file store is always
    /// there. For one-shot commands: an agent rides out a hub that is down, but a person
    /// at a prompt wants to hear that it is, not wait forever.
    pub async fn reachable(&self, within: std::time::Duration) -> Result<(), String> {
        use runtime_native::hub::ConnectionState;
        let AnyStore::Hub(store) = self else {
            return Ok(());
        };
        let state = store.connection_state();
        let settled = state.wait_for(|state| {
            matches!(
                state,
                ConnectionState::Connected { .. } | ConnectionState::Failed(_)
            )
        });
        let last_error = |state: &ConnectionState| match state {
            ConnectionState::Reconnecting { error, .. } | ConnectionState::Failed(error) => {
                format!(": {error}")
            }
            _ => String::new(),
        };
        match tokio::time::timeout(within, settled).await {
            Ok(Ok(state)) => match &state {
                ConnectionState::Failed(error) => Err(format!("the hub refused us: {error}")),
                _ => Ok(()),
            },
            Ok(Err(_)) => Err("the hub connection closed".to_owned()),
            Err(_) => Err(format!(
                "cannot reach the hub within {} s{}",
                within.as_secs(),
                last_error(&store.connection_state().get())
            )),
        }
    }
}

/// Whether a new store may be made, or only one that is there opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opening {
    /// Make the file when it is missing: agents, and commands that write.
    CreateIfMissing,
    /// Only a file that is there: a mistyped `--store` must not make an empty store for a
    /// command that reads it (`status`, `show`) or acts on what it holds (`cancel`).
    MustExist,
}

/// Opens the configured notebook's store (`PATH`, `sqlite:PATH` or `ws://HOST:PORT`), or
/// says why not (and exits 1).
pub fn open_store(common: &CommonConfig) -> Result<AnyStore, ExitCode> {
    open_store_with(common, Opening::CreateIfMissing)
}

/// [`open_store`], choosing whether a missing file may be made.
pub fn open_store_with(common: &CommonConfig, opening: Opening) -> Result<AnyStore, ExitCode> {
    let fail = |message: String| {
        eprintln!("error: {message}");
        ExitCode::FAILURE
    };
    let location = common.store.to_string_lossy();
    if location.starts_with("ws://") || location.starts_with("wss://") {
        let Some(token) = &common.auth_token else {
            return Err(fail(
                "a hub needs a token: --auth-token, RUNTIME_AUTH_TOKEN or the credentials file"
                    .to_owned(),
            ));
        };
        let token = BearerToken::new(token.expose());
        let options = HubOptions {
            ca_file: common.ca_file.clone(),
            ..HubOptions::default()
        };
        return hub::connect(&location, token, &common.notebook, options)
            .map(AnyStore::Hub)
            .map_err(|error| fail(error.to_string()));
    }
    let path = location.strip_prefix("sqlite:").unwrap_or(&location);
    if opening == Opening::MustExist && !std::path::Path::new(path).exists() {
        return Err(fail(format!(
            "no store at {path}: nothing has run there yet (check --store)"
        )));
    }
    SqliteStore::open(path, &common.notebook)
        .map(AnyStore::Sqlite)
        .map_err(|error| fail(error.to_string()))
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
            println!("agent stopped ({})", reason.as_str());
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
