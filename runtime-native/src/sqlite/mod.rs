//! [`SqliteStore`]: the durable store. Several processes on one machine share a notebook
//! through one file.
//!
//! - One file holds many notebooks; each is its own log (`notebook`, `seq`) → event JSON,
//!   plus the batch id on a batch's first row, so a retried batch is found, not re-added.
//! - `commit` is one `BEGIN IMMEDIATE` transaction; sequence numbers are contiguous per
//!   notebook even with several writer processes. A lock held past the busy timeout is a
//!   retriable error ([`StoreError::Unavailable`]), as are I/O failures and a full disk.
//! - Catching up, reads and decoding run on tokio's blocking threads in chunks; following
//!   the live tail, a read of at most 32 rows and 64 KiB runs inline (microseconds, and
//!   WAL readers never wait on a lock). A row
//!   that is not JSON text (a BLOB, bytes that are not UTF-8) reads as a malformed event:
//!   skipped and counted by every reader, never fatal. A missing row (a gap in `seq`) stops
//!   readers with an error that says how to repair the file ([`SqliteStore::repair`]).
//! - Every row carries its batch's [`Stamp`]: the time by this
//!   process's clock (every process on the file shares the machine's clock) and the
//!   store's author ([`SqliteStore::stamping_as`], `local` by default), or the stamp a
//!   hub gave the batch. Rows written before version 3 of the schema have none.
//! - Snapshots: the latest of each kind per notebook, in a table of their own; a newer one
//!   replaces it, an older one or one past the head does not.
//! - WAL mode with `synchronous = NORMAL`: an acknowledged commit is in the WAL before
//!   `commit` returns, so it survives the writer being killed (`kill -9`); a power loss may
//!   lose the last commits ([`Durability::Full`] closes that gap at one fsync per commit).
//! - Subscribers read with their own connection at their own pace. A commit in this process
//!   wakes them directly; a commit in another process wakes them through their notebook's
//!   signal file (see `watch`), so only the processes reading that notebook wake. An idle
//!   subscriber does no work but for a safety re-read ([`SqliteOptions::safety_poll`]) in
//!   case a wake-up is ever missed.

mod watch;

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use runtime_core::store::{check_notebook_id, check_snapshot, runtime_request_after, title_after};
use runtime_core::{
    Batch, Catalog, Clock, Event, LogEntry, MalformedEvent, NotebookInfo, Seq, Snapshot,
    SnapshotKind, Stamp, Store, StoreError, Subscription, Timestamp,
};
use rusqlite::types::ValueRef;
use rusqlite::{Connection, ErrorCode, OpenFlags, OptionalExtension, params};
use tokio::sync::Notify;

use crate::TokioClock;

/// `PRAGMA application_id` of our files ("RTAg").
const APPLICATION_ID: i32 = 0x5254_4167;
/// The schema version this build writes and reads. Older files are upgraded in place.
pub const SCHEMA_VERSION: i32 = 5;
/// The author a store stamps its commits with unless told otherwise
/// ([`SqliteStore::stamping_as`]).
pub const DEFAULT_AUTHOR: &str = "local";
/// The type of the placeholder event [`SqliteStore::repair`] writes into a gap: unknown
/// to every reader, so skipped and counted.
pub const GAP_FILLER_TYPE: &str = "repair.MissingEvent";
/// A commit this long after the previous one ended goes inline (see `commit_uncontended`).
const QUIET: Duration = Duration::from_micros(500);
/// Rows a subscription reads per query on a blocking thread (catching up).
const READ_CHUNK: usize = 1024;
/// What a subscription may read on the async thread (following the live tail): at most
/// this many rows of at most this many bytes each. A read that small takes microseconds and
/// never waits on a lock (WAL readers do not); anything more goes to a blocking thread.
const INLINE_ROWS: usize = 16;
const INLINE_ROW_BYTES: i64 = 16 * 1024;

/// Why a SQLite store could not be opened or used.
#[derive(Debug, thiserror::Error)]
pub enum SqliteError {
    /// The file exists but is not a store of ours (another SQLite database, or not SQLite).
    #[error(
        "{path} is not a runtime-agents store (it is another file or database); choose another path"
    )]
    NotOurs {
        /// The file.
        path: PathBuf,
    },
    /// The file was written by a newer version.
    #[error(
        "{path} has store schema version {found}, newer than this build supports ({supported}); \
         upgrade runtime-agents"
    )]
    NewerSchema {
        /// The file.
        path: PathBuf,
        /// Its schema version.
        found: i32,
        /// The newest this build reads.
        supported: i32,
    },
    /// The directory for the file could not be created.
    #[error("cannot create the directory for {path}: {source}")]
    CreateDir {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// SQLite failed.
    #[error("{path}: {source}")]
    Sqlite {
        /// The file.
        path: PathBuf,
        /// Why.
        source: rusqlite::Error,
    },
}

/// How hard a commit works to survive a crash.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// Survives the process being killed; a power loss may lose the last commits.
    #[default]
    Process,
    /// Survives a power loss too: one fsync per commit.
    Full,
}

/// How a store is opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SqliteOptions {
    /// How long a commit waits for another process's write lock before it fails.
    pub busy_timeout: Duration,
    /// See [`Durability`].
    pub durability: Durability,
    /// How often an idle subscriber re-reads in case a wake-up was missed: a process of an
    /// older version commits without signalling. Where the platform refused to watch a
    /// notebook's signal file, its subscribers re-read every 500 ms, or at this interval if
    /// shorter. Each re-read of each idle subscriber costs a query: with a hundred agents on
    /// one file, 500 ms cost 1-2 % of a core, 5 s a tenth of that (B23).
    pub safety_poll: Duration,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        Self {
            busy_timeout: Duration::from_secs(5),
            durability: Durability::Process,
            safety_poll: Duration::from_secs(5),
        }
    }
}

/// One notebook's log in a SQLite file. Clones share the connection and the file watch.
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use runtime_core::{CellDeleted, Store};
/// use runtime_native::SqliteStore;
///
/// let store = SqliteStore::open("notebooks.db", "my-notebook")?;
/// store.commit(vec![CellDeleted { cell_id: "c1".into() }.into()]).await?;
/// let other = store.notebook("another-notebook"); // same file, its own log
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct SqliteStore {
    shared: Arc<Shared>,
    notebook: Arc<str>,
    /// Who this handle's unstamped commits are stamped as.
    author: Arc<str>,
}

struct Shared {
    path: PathBuf,
    options: SqliteOptions,
    /// Shared with the file watch, which asks it whether another connection committed.
    writer: Arc<Mutex<Connection>>,
    /// For `head` and `notebooks`, so they never wait for a commit.
    reader: Mutex<Option<Connection>>,
    /// Read connections between subscriptions' reads: a subscription holds one only while
    /// it reads, so thousands of subscriptions share a few.
    idle_readers: Mutex<Vec<Connection>>,
    /// When the last commit through this open ended.
    last_commit: Mutex<Option<std::time::Instant>>,
    /// Wakes the subscriptions of one notebook: a commit through this open, or another
    /// process's through its signal file.
    notebook_wakes: Arc<watch::NotebookWakes>,
    signals: watch::Signals,
}

impl SqliteStore {
    /// Opens (creating if needed) the store at `path` and serves `notebook` from it.
    pub fn open(path: impl AsRef<Path>, notebook: &str) -> Result<Self, SqliteError> {
        Self::open_with(path, notebook, SqliteOptions::default())
    }

    /// [`open`](Self::open) with options.
    pub fn open_with(
        path: impl AsRef<Path>,
        notebook: &str,
        options: SqliteOptions,
    ) -> Result<Self, SqliteError> {
        let path = path.as_ref().to_path_buf();
        if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| SqliteError::CreateDir {
                path: path.clone(),
                source,
            })?;
        }
        let mut writer = connect(&path, &options, OpenFlags::default())?;
        // SQLite does not always wait on its busy handler (switching to WAL, lock upgrades
        // that could deadlock), so a racing open may be refused at once: retry it.
        let started = std::time::Instant::now();
        loop {
            match initialise(&mut writer, &path) {
                Err(SqliteError::Sqlite { source, .. })
                    if is_busy(&source) && started.elapsed() < options.busy_timeout =>
                {
                    std::thread::sleep(Duration::from_millis(5));
                }
                other => break other?,
            }
        }
        // The writer never waits inside SQLite: commits wait for the lock in short steps of
        // their own (`waiting_for_the_lock`).
        writer
            .busy_timeout(Duration::ZERO)
            .map_err(|source| SqliteError::Sqlite {
                path: path.clone(),
                source,
            })?;
        let writer = Arc::new(Mutex::new(writer));
        let notebook_wakes = Arc::new(Mutex::new(HashMap::new()));
        let signals = watch::Signals::start(&path, notebook_wakes.clone(), writer.clone());
        Ok(Self {
            shared: Arc::new(Shared {
                path,
                options,
                writer,
                reader: Mutex::new(None),
                idle_readers: Mutex::new(Vec::new()),
                last_commit: Mutex::new(None),
                notebook_wakes,
                signals,
            }),
            notebook: notebook.into(),
            author: DEFAULT_AUTHOR.into(),
        })
    }

    /// This store, stamping the batches it commits without a stamp as `author` (instead
    /// of [`DEFAULT_AUTHOR`]): the identity of everyone writing through this handle.
    pub fn stamping_as(self, author: impl Into<Arc<str>>) -> Self {
        Self {
            author: author.into(),
            ..self
        }
    }

    /// Another notebook in the same file, sharing this store's connection and watch.
    pub fn notebook(&self, notebook: &str) -> SqliteStore {
        SqliteStore {
            shared: self.shared.clone(),
            notebook: notebook.into(),
            author: self.author.clone(),
        }
    }

    /// The notebook this store serves.
    pub fn notebook_id(&self) -> &str {
        &self.notebook
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.shared.path
    }

    /// The sequence number of the notebook's last event (0 if it has none): read up to it
    /// to see the notebook as it is now.
    pub fn head(&self) -> Result<Seq, StoreError> {
        self.shared.read(|connection| {
            let last: i64 = connection
                .query_row(
                    "SELECT COALESCE(MAX(seq), 0) FROM events WHERE notebook = ?1",
                    [&*self.notebook],
                    |row| row.get(0),
                )
                .map_err(backend)?;
            Ok(last as Seq)
        })
    }

    /// Every notebook in the file: its id, title, head and the time of its last entry.
    pub fn notebooks(&self) -> Result<Vec<NotebookInfo>, StoreError> {
        self.shared.read(|connection| {
            // One index seek per notebook, not a scan of every event (`GROUP BY notebook`
            // read all of them: 157 ms for a file with a million, 0.8 ms this way): the
            // recursive part steps from one notebook id to the next, then each notebook's
            // last entry gives its head and the time of its last activity.
            let mut statement = connection
                .prepare_cached(
                    "WITH RECURSIVE listed(notebook) AS ( \
                         SELECT MIN(notebook) FROM events \
                         UNION ALL \
                         SELECT (SELECT MIN(notebook) FROM events WHERE notebook > listed.notebook) \
                         FROM listed WHERE listed.notebook IS NOT NULL) \
                     SELECT l.notebook, last.seq, last.at, \
                        (SELECT title FROM titles t WHERE t.notebook = l.notebook), \
                        (SELECT request FROM runtime_requests r WHERE r.notebook = l.notebook) \
                     FROM listed l JOIN events last ON last.notebook = l.notebook \
                        AND last.seq = (SELECT MAX(seq) FROM events m WHERE m.notebook = l.notebook) \
                     WHERE l.notebook IS NOT NULL ORDER BY l.notebook",
                )
                .map_err(backend)?;
            let rows = statement
                .query_map([], |row| {
                    Ok(NotebookInfo {
                        id: row.get::<_, String>(0)?,
                        title: row.get::<_, Option<String>>(3).ok().flatten(),
                        // Written by `append` from a decoded event: it decodes.
                        runtime: row
                            .get::<_, Option<String>>(4)
                            .ok()
                            .flatten()
                            .and_then(|request| serde_json::from_str(&request).ok()),
                        head: row.get::<_, i64>(1)?.max(0) as Seq,
                        last_activity: row
                            .get::<_, Option<i64>>(2)
                            .ok()
                            .flatten()
                            .map(|at| Timestamp(u64::try_from(at).unwrap_or(0))),
                    })
                })
                .map_err(backend)?;
            rows.map(|row| row.map_err(backend)).collect()
        })
    }

    /// Repairs a log with missing rows (deleted by hand, or lost to a damaged disk): fills
    /// each gap in every notebook of the file with placeholder events of type
    /// [`GAP_FILLER_TYPE`], which every reader skips and counts, so readers can move past
    /// it. Returns how many rows it added. What the missing events said is lost; the
    /// notebook's state is what the remaining events make of it.
    ///
    /// ```no_run
    /// # fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// let store = runtime_native::SqliteStore::open("notebooks.db", "default")?;
    /// let filled = store.repair()?;
    /// println!("filled {filled} missing events");
    /// # Ok(()) }
    /// ```
    pub fn repair(&self) -> Result<u64, StoreError> {
        let mut writer = self.shared.lock_writer();
        let timeout = self.shared.options.busy_timeout;
        waiting_for_the_lock(timeout, || fill_gaps(&mut writer)).map_err(backend)
    }
}

/// Fills every gap of every notebook with placeholder events, in one transaction; returns
/// how many it added.
fn fill_gaps(writer: &mut Connection) -> Result<u64, rusqlite::Error> {
    let transaction = writer.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    // Each row whose predecessor is missing starts after a gap.
    let gaps: Vec<(String, i64, i64)> = {
        let mut statement = transaction.prepare(
            "SELECT e.notebook, \
                COALESCE((SELECT MAX(p.seq) FROM events p \
                          WHERE p.notebook = e.notebook AND p.seq < e.seq), 0) + 1, \
                e.seq - 1 \
             FROM events e \
             WHERE e.seq > 1 AND NOT EXISTS \
                (SELECT 1 FROM events q WHERE q.notebook = e.notebook AND q.seq = e.seq - 1)",
        )?;
        let rows = statement.query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))?;
        rows.collect::<Result<_, _>>()?
    };
    let filler = serde_json::json!({
        "type": GAP_FILLER_TYPE,
        "note": "this event was missing from the file; `repair` put this in its place",
    })
    .to_string();
    let mut filled = 0;
    {
        let mut insert =
            transaction.prepare("INSERT INTO events (notebook, seq, event) VALUES (?1, ?2, ?3)")?;
        for (notebook, first, last) in gaps {
            for seq in first..=last {
                insert.execute(params![notebook, seq, filler])?;
                filled += 1;
            }
            tracing::warn!(%notebook, first, last, "filled a gap in the log");
        }
    }
    transaction.commit()?;
    Ok(filled)
}

impl Shared {
    fn lock_writer(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.writer
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Runs `query` on this open's read connection, opening it on first use.
    fn read<T>(
        &self,
        query: impl FnOnce(&Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut reader = self
            .reader
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if reader.is_none() {
            *reader = Some(self.open_reader()?);
        }
        match reader.as_ref() {
            Some(connection) => query(connection),
            None => Err(StoreError::Closed),
        }
    }

    /// What wakes the subscriptions of `notebook` after a commit through this open.
    fn wake_of(&self, notebook: &Arc<str>) -> Arc<Notify> {
        self.notebook_wakes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .entry(notebook.clone())
            .or_default()
            .clone()
    }

    /// An idle read connection, or a new one.
    fn take_reader(&self) -> Result<Connection, StoreError> {
        let idle = self
            .idle_readers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .pop();
        match idle {
            Some(connection) => Ok(connection),
            None => self.open_reader(),
        }
    }

    /// Keeps a read connection for the next read (up to [`IDLE_READERS`]).
    fn return_reader(&self, connection: Connection) {
        let mut idle = self
            .idle_readers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if idle.len() < IDLE_READERS {
            idle.push(connection);
        }
    }

    fn open_reader(&self) -> Result<Connection, StoreError> {
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        connect(&self.path, &self.options, flags).map_err(|error| match error {
            SqliteError::Sqlite { source, .. } => backend(source),
            other => StoreError::Backend(other.to_string()),
        })
    }
}

/// A SQLite error while opening `path`: "not a database" means the file is not ours.
fn open_error(path: &Path) -> impl Fn(rusqlite::Error) -> SqliteError + '_ {
    move |source| match source.sqlite_error_code() {
        Some(ErrorCode::NotADatabase) => SqliteError::NotOurs {
            path: path.to_path_buf(),
        },
        _ => SqliteError::Sqlite {
            path: path.to_path_buf(),
            source,
        },
    }
}

fn connect(
    path: &Path,
    options: &SqliteOptions,
    flags: OpenFlags,
) -> Result<Connection, SqliteError> {
    let sqlite = open_error(path);
    let connection = Connection::open_with_flags(path, flags).map_err(&sqlite)?;
    connection
        .busy_timeout(options.busy_timeout)
        .map_err(&sqlite)?;
    // Our statements' plans never depend on the values bound to them. Without this,
    // SQLite re-plans a statement whose parameters it marked as possibly plan-changing
    // (the bundled build has STAT4, and batch ids have a partial index) at its first step
    // after every new binding: perf showed re-parsing under each read.
    connection
        .set_db_config(
            rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG,
            true,
        )
        .map_err(&sqlite)?;
    let synchronous = match options.durability {
        Durability::Process => "NORMAL",
        Durability::Full => "FULL",
    };
    connection
        .pragma_update(None, "synchronous", synchronous)
        .map_err(sqlite)?;
    Ok(connection)
}

/// Checks the file is ours (or empty) and at a version we read, and creates the schema,
/// all under the write lock: two processes creating one new file at once cannot see each
/// other half-done.
fn initialise(connection: &mut Connection, path: &Path) -> Result<(), SqliteError> {
    let sqlite = open_error(path);
    let transaction = connection
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .map_err(&sqlite)?;
    let application_id: i32 = transaction
        .pragma_query_value(None, "application_id", |row| row.get(0))
        .map_err(&sqlite)?;
    let tables: i64 = transaction
        .query_row("SELECT count(*) FROM sqlite_master", [], |row| row.get(0))
        .map_err(&sqlite)?;
    if application_id != APPLICATION_ID && (application_id != 0 || tables > 0) {
        return Err(SqliteError::NotOurs {
            path: path.to_path_buf(),
        });
    }
    let version: i32 = transaction
        .pragma_query_value(None, "user_version", |row| row.get(0))
        .map_err(&sqlite)?;
    if version > SCHEMA_VERSION {
        return Err(SqliteError::NewerSchema {
            path: path.to_path_buf(),
            found: version,
            supported: SCHEMA_VERSION,
        });
    }
    transaction
        .execute_batch(
            "CREATE TABLE IF NOT EXISTS events (
                 notebook TEXT NOT NULL,
                 seq INTEGER NOT NULL,
                 event TEXT NOT NULL,
                 PRIMARY KEY (notebook, seq)
             ) WITHOUT ROWID;
             CREATE TABLE IF NOT EXISTS snapshots (
                 notebook TEXT NOT NULL,
                 kind TEXT NOT NULL,
                 seq INTEGER NOT NULL,
                 state TEXT NOT NULL,
                 PRIMARY KEY (notebook, kind)
             );",
        )
        .map_err(&sqlite)?;
    if version < 2 {
        // Version 2: the batch id on a batch's first row, unique per notebook.
        transaction
            .execute_batch(
                "ALTER TABLE events ADD COLUMN batch TEXT;
                 CREATE UNIQUE INDEX events_batch ON events (notebook, batch)
                     WHERE batch IS NOT NULL;",
            )
            .map_err(&sqlite)?;
    }
    if version < 3 {
        // Version 3: each row's stamp, the authority's time (ms) and author.
        transaction
            .execute_batch(
                "ALTER TABLE events ADD COLUMN at INTEGER;
                 ALTER TABLE events ADD COLUMN author TEXT;",
            )
            .map_err(&sqlite)?;
    }
    if version < 4 {
        // Version 4: each notebook's title, as its log leaves it (kept by `append`).
        transaction
            .execute_batch(
                "CREATE TABLE titles (notebook TEXT PRIMARY KEY, title TEXT NOT NULL);
                 INSERT INTO titles (notebook, title)
                     SELECT notebook, json_extract(event, '$.title') FROM events
                     WHERE json_valid(event)
                       AND json_extract(event, '$.type') = 'v1.NotebookTitleChanged'
                       AND json_type(event, '$.title') = 'text'
                     ORDER BY notebook, seq
                     ON CONFLICT (notebook) DO UPDATE SET title = excluded.title;
                 DELETE FROM titles WHERE title = '';",
            )
            .map_err(&sqlite)?;
    }
    if version < 5 {
        // Version 5: the runtime each notebook asks for, as its log leaves it (kept by
        // `append`; no older version wrote one).
        transaction
            .execute_batch(
                "CREATE TABLE runtime_requests (notebook TEXT PRIMARY KEY, request TEXT NOT NULL);",
            )
            .map_err(&sqlite)?;
    }
    transaction
        .execute_batch(&format!(
            "PRAGMA application_id = {APPLICATION_ID};
             PRAGMA user_version = {SCHEMA_VERSION};"
        ))
        .map_err(&sqlite)?;
    transaction.commit().map_err(&sqlite)?;
    let mode: String = connection
        .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
        .map_err(&sqlite)?;
    if !mode.eq_ignore_ascii_case("wal") {
        tracing::warn!(%mode, "the store could not switch to WAL mode; readers may wait for writers");
    }
    Ok(())
}

/// Runs `work` on tokio's blocking threads: reads and writes that may take a while.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(failed_task)?
}

fn failed_task(error: tokio::task::JoinError) -> StoreError {
    StoreError::Backend(format!("a store task failed: {error}"))
}

fn is_busy(error: &rusqlite::Error) -> bool {
    matches!(
        error.sqlite_error_code(),
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked)
    )
}

/// A SQLite error as a store error: a lock held too long, an I/O failure or a full disk
/// may pass ([`StoreError::Unavailable`]); anything else will not.
fn backend(error: rusqlite::Error) -> StoreError {
    if is_busy(&error) {
        return StoreError::Unavailable(
            "the store file is locked by another writer and stayed locked past the busy timeout"
                .to_owned(),
        );
    }
    match error.sqlite_error_code() {
        Some(
            ErrorCode::SystemIoFailure
            | ErrorCode::DiskFull
            | ErrorCode::CannotOpen
            | ErrorCode::OutOfMemory,
        ) => StoreError::Unavailable(format!("sqlite: {error}")),
        _ => StoreError::Backend(format!("sqlite: {error}")),
    }
}

impl SqliteStore {
    /// The fast path for a commit after a quiet spell: when no one holds the write lock,
    /// commit right here (tens of microseconds) instead of hopping to a blocking thread and
    /// back. With the busy timeout at zero it never waits; `None` means "commit elsewhere".
    ///
    /// Under load (the previous commit ended less than [`QUIET`] ago) it declines: a commit
    /// on a blocking thread lets the writer's producers run meanwhile, so the next batch
    /// grows (group commit), where back-to-back inline commits would each carry one output.
    fn commit_uncontended(&self, batch: &Encoded) -> Option<Result<Seq, StoreError>> {
        if self.shared.options.durability == Durability::Full {
            return None; // an fsync has no place on the executor
        }
        let mut writer = self.shared.writer.try_lock().ok()?;
        let last = *self
            .shared
            .last_commit
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if last.is_some_and(|ended| ended.elapsed() < QUIET) {
            return None;
        }
        // The writer's busy timeout is zero: `append` never waits here.
        match append(&mut writer, &self.notebook, batch) {
            Err(error) if is_busy(&error) => None,
            other => Some(other.map_err(backend)),
        }
    }
}

/// Runs `write` until it gets the write lock or `timeout` has passed, pausing in short,
/// growing steps (20 us doubling to 1 ms). SQLite's own busy handler sleeps 1 ms at its
/// first step, which made a commit that met another process's commit wait far longer than
/// that commit held the lock. Only the writer connection calls this; its SQLite busy
/// timeout is zero.
fn waiting_for_the_lock<T>(
    timeout: Duration,
    mut write: impl FnMut() -> Result<T, rusqlite::Error>,
) -> Result<T, rusqlite::Error> {
    let started = std::time::Instant::now();
    let mut pause = Duration::from_micros(20);
    loop {
        match write() {
            Err(error) if is_busy(&error) && started.elapsed() < timeout => {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(1));
            }
            other => return other,
        }
    }
}

/// A batch ready for SQL: its id, its stamp, its events as JSON text, and what it does to
/// the notebook's title ([`title_after`]) and to the runtime it asks for
/// ([`runtime_request_after`], as JSON text).
struct Encoded {
    id: String,
    stamp: Stamp,
    events: Vec<String>,
    title: Option<Option<String>>,
    runtime_request: Option<Option<String>>,
}

/// Appends a batch to `notebook` in one transaction, unless its id is there already;
/// returns the batch's first sequence number.
fn append(
    connection: &mut Connection,
    notebook: &str,
    batch: &Encoded,
) -> Result<Seq, rusqlite::Error> {
    let transaction =
        connection.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let last: i64 = transaction
        .prepare_cached("SELECT COALESCE(MAX(seq), 0) FROM events WHERE notebook = ?1")?
        .query_row([notebook], |row| row.get(0))?;
    {
        let mut insert = transaction.prepare_cached(
            "INSERT INTO events (notebook, seq, event, batch, at, author) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )?;
        let at = i64::try_from(batch.stamp.at.as_millis()).unwrap_or(i64::MAX);
        let author: &str = &batch.stamp.author;
        for (offset, event) in (1..).zip(&batch.events) {
            let id = (offset == 1).then_some(batch.id.as_str());
            match insert.execute(params![notebook, last + offset, event, id, at, author]) {
                // The batch's id is there already: a retry of a batch that landed.
                Err(error) if offset == 1 && is_duplicate_batch(&error) => {
                    drop(insert);
                    return landed_at(&transaction, notebook, &batch.id);
                }
                other => other?,
            };
        }
    }
    keep_beside(&transaction, Beside::Title, notebook, &batch.title)?;
    keep_beside(
        &transaction,
        Beside::RuntimeRequest,
        notebook,
        &batch.runtime_request,
    )?;
    transaction.commit()?;
    Ok(last as Seq + 1)
}

/// What a notebook's table beside its log keeps: its title, the runtime it asks for.
#[derive(Clone, Copy)]
enum Beside {
    Title,
    RuntimeRequest,
}

impl Beside {
    /// Its upsert and its delete.
    fn statements(self) -> (&'static str, &'static str) {
        match self {
            Beside::Title => (
                "INSERT INTO titles (notebook, title) VALUES (?1, ?2) \
                 ON CONFLICT (notebook) DO UPDATE SET title = excluded.title",
                "DELETE FROM titles WHERE notebook = ?1",
            ),
            Beside::RuntimeRequest => (
                "INSERT INTO runtime_requests (notebook, request) VALUES (?1, ?2) \
                 ON CONFLICT (notebook) DO UPDATE SET request = excluded.request",
                "DELETE FROM runtime_requests WHERE notebook = ?1",
            ),
        }
    }
}

/// Applies what a batch does to a value kept beside `notebook`'s log: sets it
/// (`Some(Some)`), removes it (`Some(None)`) or leaves it (`None`).
fn keep_beside(
    transaction: &rusqlite::Transaction<'_>,
    what: Beside,
    notebook: &str,
    change: &Option<Option<String>>,
) -> Result<(), rusqlite::Error> {
    let (set, remove) = what.statements();
    match change {
        Some(Some(value)) => transaction
            .prepare_cached(set)?
            .execute(params![notebook, value])?,
        Some(None) => transaction.prepare_cached(remove)?.execute([notebook])?,
        None => 0,
    };
    Ok(())
}

/// Where an already committed batch starts.
fn landed_at(connection: &Connection, notebook: &str, batch: &str) -> Result<Seq, rusqlite::Error> {
    connection
        .prepare_cached("SELECT seq FROM events WHERE notebook = ?1 AND batch = ?2")?
        .query_row(params![notebook, batch], |row| row.get::<_, i64>(0))
        .map(|seq| seq as Seq)
}

/// `true` for the unique index on batch ids refusing a row (the write lock makes any other
/// uniqueness failure, on `seq`, impossible).
fn is_duplicate_batch(error: &rusqlite::Error) -> bool {
    matches!(
        error,
        rusqlite::Error::SqliteFailure(failure, _)
            if failure.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
    )
}

/// The notebooks of the file: a hub serves them all through one `SqliteStore`.
#[async_trait::async_trait]
impl Catalog for SqliteStore {
    async fn notebooks(&self) -> Result<Vec<NotebookInfo>, StoreError> {
        SqliteStore::notebooks(self)
    }

    fn open(&self, id: &str) -> Result<Arc<dyn Store>, StoreError> {
        check_notebook_id(id)?;
        Ok(Arc::new(self.notebook(id)))
    }
}

#[async_trait::async_trait]
impl Store for SqliteStore {
    async fn commit_batch(&self, batch: &Batch) -> Result<Seq, StoreError> {
        if batch.events.is_empty() {
            return Err(StoreError::EmptyBatch);
        }
        let stamp = batch
            .stamp
            .clone()
            .unwrap_or_else(|| Stamp::new(TokioClock.now(), self.author.clone()));
        let encoded = Encoded {
            id: batch.id.to_string(),
            stamp,
            events: batch
                .events
                .iter()
                .map(|event| event.to_json_string())
                .collect(),
            title: title_after(&batch.events).map(|title| title.map(str::to_owned)),
            runtime_request: runtime_request_after(&batch.events)
                .map(|request| request.and_then(|request| serde_json::to_string(request).ok())),
        };
        let first = match self.commit_uncontended(&encoded) {
            Some(result) => result?,
            None => {
                // Another writer holds the lock: wait for it on a blocking thread.
                let shared = self.shared.clone();
                let notebook = self.notebook.clone();
                blocking(move || {
                    let mut writer = shared.lock_writer();
                    let timeout = shared.options.busy_timeout;
                    waiting_for_the_lock(timeout, || append(&mut writer, &notebook, &encoded))
                        .map_err(backend)
                })
                .await?
            }
        };
        *self
            .shared
            .last_commit
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(std::time::Instant::now());
        // Only this notebook's subscriptions, here and in other processes: a busy file with
        // many notebooks does not wake them all for every commit.
        self.shared.wake_of(&self.notebook).notify_waiters();
        self.shared.signals.signal(&self.notebook);
        Ok(first)
    }

    async fn head(&self) -> Result<Seq, StoreError> {
        SqliteStore::head(self)
    }

    async fn latest_snapshot(&self, kind: SnapshotKind) -> Result<Option<Snapshot>, StoreError> {
        // A snapshot can be megabytes: read it off the async threads, with a connection of
        // its own from the pool.
        let shared = self.shared.clone();
        let notebook = self.notebook.clone();
        blocking(move || {
            let connection = shared.take_reader()?;
            let found = connection
                .prepare_cached(
                    "SELECT seq, state FROM snapshots WHERE notebook = ?1 AND kind = ?2",
                )
                .and_then(|mut statement| {
                    statement
                        .query_row(params![&*notebook, kind.as_str()], |row| {
                            Ok((row.get::<_, i64>(0)?, row.get::<_, String>(1)?))
                        })
                        .optional()
                })
                .map_err(backend);
            shared.return_reader(connection);
            Ok(found?.map(|(seq, state)| Snapshot {
                seq: u64::try_from(seq).unwrap_or(0),
                kind,
                state: state.into(),
            }))
        })
        .await
    }

    fn keeps_snapshots(&self) -> bool {
        true
    }

    async fn save_snapshot(&self, snapshot: &Snapshot) -> Result<(), StoreError> {
        let shared = self.shared.clone();
        let notebook = self.notebook.clone();
        let snapshot = snapshot.clone();
        blocking(move || {
            let mut writer = shared.lock_writer();
            let timeout = shared.options.busy_timeout;
            waiting_for_the_lock(timeout, || {
                let transaction = writer
                    .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
                let head: i64 = transaction
                    .prepare_cached("SELECT COALESCE(MAX(seq), 0) FROM events WHERE notebook = ?1")?
                    .query_row([&*notebook], |row| row.get(0))?;
                let seq = i64::try_from(snapshot.seq).unwrap_or(i64::MAX);
                if seq > head {
                    return Ok(Err(head));
                }
                transaction
                    .prepare_cached(
                        "INSERT INTO snapshots (notebook, kind, seq, state) VALUES (?1, ?2, ?3, ?4) \
                         ON CONFLICT (notebook, kind) DO UPDATE \
                         SET seq = excluded.seq, state = excluded.state \
                         WHERE excluded.seq > snapshots.seq",
                    )?
                    .execute(params![&*notebook, snapshot.kind.as_str(), seq, &*snapshot.state])?;
                transaction.commit()?;
                Ok(Ok(()))
            })
            .map_err(backend)?
            .or_else(|head| check_snapshot(&snapshot, head as Seq))
        })
        .await
    }

    fn subscribe(&self, from: Seq) -> Subscription {
        let safety_poll = match self.shared.signals.watch(&self.notebook) {
            true => self.shared.options.safety_poll,
            false => self.shared.options.safety_poll.min(UNWATCHED_POLL),
        };
        let reader = Reader {
            safety_poll,
            shared: self.shared.clone(),
            wake: self.shared.wake_of(&self.notebook),
            notebook: self.notebook.clone(),
            next: from.max(1),
            buffer: VecDeque::new(),
            catching_up: true,
            prefetch: None,
        };
        Box::pin(futures::stream::unfold(reader, |mut reader| async move {
            let item = reader.next_entry().await;
            Some((item, reader))
        }))
    }
}

/// Read connections kept idle for the subscriptions of one open file.
const IDLE_READERS: usize = 8;
/// How often an idle subscriber whose notebook cannot be watched looks again.
const UNWATCHED_POLL: Duration = Duration::from_millis(500);

/// Entries read at once, and whether more follow.
type Chunk = Result<(Vec<LogEntry>, bool), StoreError>;

/// One subscription: its cursor (it borrows a pooled read connection for each read).
struct Reader {
    shared: Arc<Shared>,
    /// Its notebook's wake-up: a commit through this open, or another process's signal.
    wake: Arc<Notify>,
    notebook: Arc<str>,
    next: Seq,
    buffer: VecDeque<LogEntry>,
    /// Behind by more than an inline read: read in chunks on a blocking thread.
    catching_up: bool,
    /// Catching up, the next chunk is read while the reader's consumer takes this one.
    prefetch: Option<tokio::task::JoinHandle<Chunk>>,
    /// How long it waits, idle, before it looks again anyway.
    safety_poll: Duration,
}

impl Reader {
    async fn next_entry(&mut self) -> Result<LogEntry, StoreError> {
        loop {
            if let Some(entry) = self.buffer.pop_front() {
                return Ok(entry);
            }
            // Register for the wake-up before reading, so a commit between the read and the
            // wait is never missed.
            let own = self.wake.clone();
            let committed_here = own.notified();
            tokio::pin!(committed_here);
            committed_here.as_mut().enable();
            if self.read_chunk().await? > 0 {
                continue;
            }
            tokio::select! {
                () = committed_here => {}
                () = tokio::time::sleep(self.safety_poll) => {}
            }
        }
    }

    /// Reads and decodes the next rows; returns how many it buffered. Following the live
    /// tail, a small read runs right here; catching up (or meeting a large row), reads run
    /// in chunks on a blocking thread.
    async fn read_chunk(&mut self) -> Result<usize, StoreError> {
        if !self.catching_up {
            let connection = self.shared.take_reader()?;
            let read = read_rows(
                &connection,
                &self.notebook,
                self.next,
                INLINE_ROWS,
                INLINE_ROW_BYTES,
            );
            self.shared.return_reader(connection);
            let (entries, more) = read?;
            self.catching_up = more;
            if !entries.is_empty() || !more {
                return Ok(self.buffered(entries));
            }
        }
        let read = match self.prefetch.take() {
            Some(prefetched) => prefetched.await.map_err(failed_task)?,
            None => self.read_blocking().await,
        };
        let (entries, more) = read?;
        self.catching_up = more;
        let count = self.buffered(entries);
        if more {
            self.prefetch = Some(self.start_read_blocking());
        }
        Ok(count)
    }

    fn buffered(&mut self, entries: Vec<LogEntry>) -> usize {
        self.next += entries.len() as Seq;
        let count = entries.len();
        self.buffer.extend(entries);
        count
    }

    /// Up to [`READ_CHUNK`] entries, read and decoded on a blocking thread, and whether more
    /// follow.
    async fn read_blocking(&mut self) -> Chunk {
        self.start_read_blocking().await.map_err(failed_task)?
    }

    /// Starts reading the chunk at the cursor on a blocking thread.
    fn start_read_blocking(&self) -> tokio::task::JoinHandle<Chunk> {
        let shared = self.shared.clone();
        let notebook = self.notebook.clone();
        let next = self.next;
        tokio::task::spawn_blocking(move || {
            let connection = shared.take_reader()?;
            let read = read_rows(&connection, &notebook, next, READ_CHUNK, i64::MAX);
            shared.return_reader(connection);
            read
        })
    }
}

/// Up to `limit` entries of `notebook` from `next` on, decoded, stopping before a row
/// larger than `max_row_bytes` (SQLite checks the size from the record header, without
/// loading the text); and whether more rows follow. A row that is not JSON text becomes a
/// malformed event; a missing row is an error that says how to repair.
fn read_rows(
    connection: &Connection,
    notebook: &str,
    next: Seq,
    limit: usize,
    max_row_bytes: i64,
) -> Result<(Vec<LogEntry>, bool), StoreError> {
    let mut statement = connection
        .prepare_cached(
            "SELECT seq, CASE WHEN octet_length(event) <= ?3 THEN event END, at, author \
             FROM events \
             WHERE notebook = ?1 AND seq >= ?2 ORDER BY seq LIMIT ?4",
        )
        .map_err(backend)?;
    let mut rows = statement
        .query(params![
            notebook,
            next as i64,
            max_row_bytes,
            limit as i64 + 1
        ])
        .map_err(backend)?;
    let mut entries = Vec::with_capacity(limit.min(READ_CHUNK));
    let mut expected = next;
    // Consecutive rows mostly share their author: they share its text too.
    let mut last_author: Option<Arc<str>> = None;
    while let Some(row) = rows.next().map_err(backend)? {
        let seq = row.get::<_, i64>(0).map_err(backend)? as Seq;
        if seq != expected && !entries.is_empty() {
            break; // deliver what comes before the gap; the next read reports it
        }
        if seq != expected {
            return Err(StoreError::Backend(format!(
                "notebook {notebook} has a gap in its log: event {expected} is missing (the \
                 next one is {seq}); rows were deleted from the file or lost to damage, so no \
                 reader can go past it. Repair the file with `notebook repair --store FILE` \
                 (SqliteStore::repair), which fills the gap with placeholder events every \
                 reader skips"
            )));
        }
        let value = row.get_ref(1).map_err(backend)?;
        if entries.len() == limit || value == ValueRef::Null {
            return Ok((entries, true)); // more rows, or one too large to read here
        }
        entries.push(LogEntry {
            seq,
            event: Arc::new(decode_row(value)),
            stamp: stamp_of(row, &mut last_author),
        });
        expected += 1;
    }
    Ok((entries, false))
}

/// A row's stamp (columns 2 and 3): none for a row written before stamps, or a row
/// another program wrote without one or with one of the wrong type. An author equal to
/// `last` shares its text; `last` becomes this row's author.
fn stamp_of(row: &rusqlite::Row<'_>, last: &mut Option<Arc<str>>) -> Option<Stamp> {
    let at = row.get::<_, Option<i64>>(2).ok().flatten()?;
    let ValueRef::Text(author) = row.get_ref(3).ok()? else {
        return None;
    };
    let author = std::str::from_utf8(author).ok()?;
    let author = match last.as_deref() {
        Some(known) if known == author => last.clone()?,
        _ => last.insert(author.into()).clone(),
    };
    Some(Stamp::new(
        Timestamp(u64::try_from(at).unwrap_or(0)),
        author,
    ))
}

/// The event in a row's `event` column, whatever another program put there.
fn decode_row(value: ValueRef<'_>) -> Event {
    let malformed = |raw: serde_json::Value, error: &str| {
        Event::Malformed(MalformedEvent {
            raw,
            error: error.to_owned(),
        })
    };
    match value {
        ValueRef::Text(bytes) => match std::str::from_utf8(bytes) {
            Ok(text) => Event::from_json_str(text),
            Err(_) => malformed(
                String::from_utf8_lossy(bytes).into_owned().into(),
                "the stored event is not UTF-8 text",
            ),
        },
        ValueRef::Blob(bytes) => malformed(
            format!("<{} bytes of binary data>", bytes.len()).into(),
            "the stored event is a BLOB, not JSON text",
        ),
        ValueRef::Null => malformed(serde_json::Value::Null, "the stored event is NULL"),
        ValueRef::Integer(n) => malformed(n.into(), "the stored event is a number"),
        ValueRef::Real(n) => malformed(n.into(), "the stored event is a number"),
    }
}
