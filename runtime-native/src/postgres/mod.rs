//! [`PostgresStore`]: notebooks in a PostgreSQL database, shared by processes on any number
//! of machines (several hubs behind a load balancer, agents that connect directly).
//!
//! - A commit is one statement: it bumps the notebook's row (whose lock serialises the
//!   committers of that notebook, and only of it), inserts the batch's events after the
//!   old head, and sends a notification. Sequence numbers are gapless per notebook, with
//!   any number of writers. A batch id committed before is found by a unique index and
//!   its first sequence number returned, so a retry never lands twice.
//! - The database is the clock: every entry is stamped with the server's time when it
//!   committed (and the author of the batch's stamp, or the store's own), so hubs and
//!   agents on different machines never compare their clocks.
//! - Readers read with pooled connections at their own pace; one connection per open store
//!   `LISTEN`s, and a notification wakes the readers of its notebook. It is only a
//!   wake-up: after a lost connection every reader reads again, and an idle reader re-reads
//!   every 500 ms in any case.
//! - A lost connection, a server restarting, a failover to a read-only standby or a lost
//!   serialization race are retriable ([`StoreError::Unavailable`]); the agent's retries
//!   take them. A wrong password or a newer schema is not.
//! - The tables live in the PostgreSQL schema `runtime_agents`, created and upgraded by
//!   the store ([`SCHEMA_VERSION`]); docs/deployment.md describes them.
//!
//! Connections are unencrypted: reach a remote server over a private network or a tunnel.

mod errors;
mod listen;
mod pool;
mod schema;

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use runtime_core::store::{check_notebook_id, check_snapshot, runtime_request_after, title_after};
use runtime_core::{
    Batch, Catalog, Event, LogEntry, NotebookInfo, Seq, Snapshot, SnapshotKind, Stamp, Store,
    StoreError, Subscription, Timestamp,
};

use crate::DEFAULT_AUTHOR;

pub use errors::PostgresError;
pub use schema::SCHEMA_VERSION;

use errors::{describe, is_duplicate_batch, store_error};
use listen::{Listener, Wakes};
use pool::{Connection, Pool};

/// How a [`PostgresStore`] connects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PostgresOptions {
    /// Connections for commits and reads, besides the one that listens.
    pub pool_size: usize,
    /// How long connecting may take before it fails (unless the connection string sets
    /// `connect_timeout`).
    pub connect_timeout: Duration,
    /// How often an idle reader reads again in case a notification was missed (one is
    /// only lost if the listening connection is, and then every reader reads again anyway).
    pub safety_poll: Duration,
}

impl Default for PostgresOptions {
    fn default() -> Self {
        Self {
            pool_size: 8,
            connect_timeout: Duration::from_secs(5),
            safety_poll: Duration::from_millis(500),
        }
    }
}

/// Rows a reader reads per query, and the most bytes of events it takes in one (at least
/// one row, however large).
const READ_ROWS: i64 = 512;
const READ_BYTES: i64 = 4 << 20;
/// tokio-postgres's keepalive idle time when the connection string sets none.
const DEFAULT_KEEPALIVES_IDLE: Duration = Duration::from_secs(2 * 60 * 60);

/// One notebook's log in a PostgreSQL database. Clones, and the other notebooks opened
/// from it ([`notebook`](Self::notebook)), share its connections.
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use runtime_core::{CellDeleted, Store};
/// use runtime_native::PostgresStore;
///
/// let store = PostgresStore::connect("postgres://agents@db.internal/notebooks", "my-notebook").await?;
/// store.commit(vec![CellDeleted { cell_id: "c1".into() }.into()]).await?;
/// let other = store.notebook("another-notebook"); // same database, its own log
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct PostgresStore {
    shared: Arc<Shared>,
    notebook: Arc<str>,
    /// Who this handle's unstamped commits are stamped as.
    author: Arc<str>,
}

struct Shared {
    /// The server and database, for messages (never the password).
    target: String,
    pool: Pool,
    wakes: Arc<Wakes>,
    /// [`PostgresOptions::safety_poll`].
    safety_poll: Duration,
    _listener: Listener,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("target", &self.shared.target)
            .field("notebook", &self.notebook)
            .field("author", &self.author)
            .finish()
    }
}

impl PostgresStore {
    /// Connects to the database at `url` (`postgres://user:password@host:port/database`,
    /// or `host=… user=…`), creating or upgrading its tables, and serves `notebook` from it.
    pub async fn connect(url: &str, notebook: &str) -> Result<Self, PostgresError> {
        Self::connect_with(url, notebook, PostgresOptions::default()).await
    }

    /// [`connect`](Self::connect) with options.
    pub async fn connect_with(
        url: &str,
        notebook: &str,
        options: PostgresOptions,
    ) -> Result<Self, PostgresError> {
        let mut config: tokio_postgres::Config = url
            .parse()
            .map_err(|error: tokio_postgres::Error| PostgresError::Url(error.to_string()))?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(options.connect_timeout);
        }
        // A peer that vanished without closing (a dropped network, a frozen server) is
        // noticed in about 45 s instead of the system's two hours.
        if config.get_keepalives_idle() == DEFAULT_KEEPALIVES_IDLE {
            config.keepalives_idle(Duration::from_secs(30));
            config.keepalives_interval(Duration::from_secs(5));
            config.keepalives_retries(3);
        }
        if config.get_application_name().is_none() {
            config.application_name("runtime-agents");
        }
        let target = describe_target(&config);
        let failed = |error: tokio_postgres::Error| PostgresError::Server {
            target: target.clone(),
            message: describe(&error),
            retriable: errors::is_retriable(&error),
        };
        let mut first = Connection::open(&config).await.map_err(failed)?;
        schema::prepare(&mut first, &target).await?;
        let pool = Pool::new(config.clone(), options.pool_size);
        pool.keep(first); // the pool's first connection, not one more handshake
        let wakes = Arc::new(Wakes::default());
        let listener = Listener::start(config, wakes.clone())
            .await
            .map_err(failed)?;
        Ok(Self {
            shared: Arc::new(Shared {
                target,
                pool,
                wakes,
                safety_poll: options.safety_poll,
                _listener: listener,
            }),
            notebook: notebook.into(),
            author: DEFAULT_AUTHOR.into(),
        })
    }

    /// This store, stamping the batches it commits without a stamp as `author` (instead
    /// of [`DEFAULT_AUTHOR`]).
    pub fn stamping_as(self, author: impl Into<Arc<str>>) -> Self {
        Self {
            author: author.into(),
            ..self
        }
    }

    /// Another notebook in the same database, sharing this store's connections.
    pub fn notebook(&self, notebook: &str) -> PostgresStore {
        PostgresStore {
            shared: self.shared.clone(),
            notebook: notebook.into(),
            author: self.author.clone(),
        }
    }

    /// The server and database it connects to, `host:port/database`, without credentials.
    pub fn target(&self) -> &str {
        &self.shared.target
    }

    /// The notebook this store serves.
    pub fn notebook_id(&self) -> &str {
        &self.notebook
    }

    /// Every notebook in the database that has events: its id, title, head and the time
    /// of its last entry.
    pub async fn notebooks(&self) -> Result<Vec<NotebookInfo>, StoreError> {
        let mut connection = self.shared.pool.get().await?;
        let statement = connection
            .statement(
                "SELECT id, head, title, last_at, runtime FROM runtime_agents.notebooks \
                 WHERE head > 0 ORDER BY id",
            )
            .await?;
        let rows = connection
            .client()
            .query(&statement, &[])
            .await
            .map_err(store_error)?;
        rows.iter()
            .map(|row| {
                Ok(NotebookInfo {
                    id: row.try_get(0).map_err(store_error)?,
                    head: seq_of(row.try_get(1).map_err(store_error)?),
                    title: row.try_get(2).map_err(store_error)?,
                    // Written by a commit from a decoded event: it decodes.
                    runtime: row
                        .try_get::<_, Option<&str>>(4)
                        .map_err(store_error)?
                        .and_then(|request| serde_json::from_str(request).ok()),
                    last_activity: row
                        .try_get::<_, Option<i64>>(3)
                        .map_err(store_error)?
                        .map(timestamp_of),
                })
            })
            .collect()
    }
}

/// `host:port/database` of a connection config, for messages.
fn describe_target(config: &tokio_postgres::Config) -> String {
    let host = config
        .get_hosts()
        .first()
        .map_or_else(String::new, |host| match host {
            tokio_postgres::config::Host::Tcp(name) => name.clone(),
            #[cfg(unix)]
            tokio_postgres::config::Host::Unix(path) => path.display().to_string(),
        });
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let database = config.get_dbname().unwrap_or_default();
    format!("{host}:{port}/{database}")
}

fn seq_of(value: i64) -> Seq {
    u64::try_from(value).unwrap_or(0)
}

fn timestamp_of(millis: i64) -> Timestamp {
    Timestamp(u64::try_from(millis).unwrap_or(0))
}

/// One statement: bump the notebook's head under its row lock (the clock is read after
/// the lock is taken, so stamps follow the log's order), insert the events after the old
/// head (the first row carries the batch id, whose unique index refuses a batch committed
/// before), notify the readers, and return the first sequence number.
const COMMIT: &str = "\
WITH bumped AS (
    INSERT INTO runtime_agents.notebooks AS n (id, head, title, last_at, runtime)
    VALUES ($1, $2, CASE WHEN $5 THEN NULLIF($6, '') END,
            (extract(epoch FROM clock_timestamp()) * 1000)::bigint,
            CASE WHEN $8 THEN $9 END)
    ON CONFLICT (id) DO UPDATE SET
        head = n.head + excluded.head,
        title = CASE WHEN $5 THEN NULLIF($6, '') ELSE n.title END,
        runtime = CASE WHEN $8 THEN $9 ELSE n.runtime END,
        last_at = (extract(epoch FROM clock_timestamp()) * 1000)::bigint
    RETURNING head, last_at
), inserted AS (
    INSERT INTO runtime_agents.events (notebook, seq, event, batch, at, author)
    SELECT $1, b.head - $2 + e.ord, e.body, CASE WHEN e.ord = 1 THEN $3 END, b.last_at, $4
    FROM bumped b, unnest($7::text[]) WITH ORDINALITY AS e(body, ord)
)
SELECT b.head - $2 + 1, pg_notify('runtime_agents', $1) FROM bumped b";

/// Where an already committed batch starts.
const LANDED_AT: &str = "SELECT seq FROM runtime_agents.events WHERE notebook = $1 AND batch = $2";

const HEAD: &str = "SELECT head FROM runtime_agents.notebooks WHERE id = $1";

/// Up to [`READ_ROWS`] entries from `$2` on, stopping after the row that reaches
/// [`READ_BYTES`] (the sizes come from the rows' headers; nothing past the limit is
/// loaded).
const READ: &str = "\
SELECT seq, event, at, author FROM (
    SELECT seq, event, at, author,
           sum(octet_length(event)) OVER (ORDER BY seq) - octet_length(event) AS before
    FROM (
        SELECT seq, event, at, author FROM runtime_agents.events
        WHERE notebook = $1 AND seq >= $2
        ORDER BY seq LIMIT $3
    ) next
) sized WHERE before < $4 ORDER BY seq";

const LATEST_SNAPSHOT: &str =
    "SELECT seq, state FROM runtime_agents.snapshots WHERE notebook = $1 AND kind = $2";

/// Keeps a snapshot unless it is past the head or older than the one kept.
const SAVE_SNAPSHOT: &str = "\
INSERT INTO runtime_agents.snapshots (notebook, kind, seq, state)
SELECT $1, $2, $3, $4
WHERE $3 <= (SELECT COALESCE(max(head), 0) FROM runtime_agents.notebooks WHERE id = $1)
ON CONFLICT (notebook, kind) DO UPDATE SET seq = excluded.seq, state = excluded.state
WHERE excluded.seq > runtime_agents.snapshots.seq";

#[async_trait::async_trait]
impl Store for PostgresStore {
    async fn commit_batch(&self, batch: &Batch) -> Result<Seq, StoreError> {
        if batch.events.is_empty() {
            return Err(StoreError::EmptyBatch);
        }
        let author: &str = batch
            .stamp
            .as_ref()
            .map_or(&*self.author, |stamp| &*stamp.author);
        let events: Vec<String> = batch
            .events
            .iter()
            .map(|event| event.to_json_string())
            .collect();
        let title = title_after(&batch.events);
        let (has_title, title) = (title.is_some(), title.flatten().unwrap_or(""));
        let runtime = runtime_request_after(&batch.events);
        let has_runtime = runtime.is_some();
        let runtime: Option<String> = runtime
            .flatten()
            .and_then(|request| serde_json::to_string(request).ok());
        let count = events.len() as i64;
        let id = batch.id.to_string();
        let mut connection = self.shared.pool.get().await?;
        let commit = connection.statement(COMMIT).await?;
        let committed = connection
            .client()
            .query_one(
                &commit,
                &[
                    &&*self.notebook,
                    &count,
                    &id,
                    &author,
                    &has_title,
                    &title,
                    &events,
                    &has_runtime,
                    &runtime,
                ],
            )
            .await;
        let first = match committed {
            Ok(row) => seq_of(row.try_get(0).map_err(store_error)?),
            // The batch's id is there already: a retry of a batch that landed.
            Err(error) if is_duplicate_batch(&error) => {
                let landed = connection.statement(LANDED_AT).await?;
                let row = connection
                    .client()
                    .query_one(&landed, &[&&*self.notebook, &id])
                    .await
                    .map_err(store_error)?;
                seq_of(row.try_get(0).map_err(store_error)?)
            }
            Err(error) => return Err(store_error(error)),
        };
        tracing::trace!(notebook = %self.notebook, batch = %id, first, "committed");
        // Readers in this process at once; others when the notification arrives.
        self.shared.wakes.wake(&self.notebook);
        Ok(first)
    }

    async fn head(&self) -> Result<Seq, StoreError> {
        let mut connection = self.shared.pool.get().await?;
        let head = connection.statement(HEAD).await?;
        let row = connection
            .client()
            .query_opt(&head, &[&&*self.notebook])
            .await
            .map_err(store_error)?;
        match row {
            Some(row) => Ok(seq_of(row.try_get(0).map_err(store_error)?)),
            None => Ok(0),
        }
    }

    async fn latest_snapshot(&self, kind: SnapshotKind) -> Result<Option<Snapshot>, StoreError> {
        let mut connection = self.shared.pool.get().await?;
        let latest = connection.statement(LATEST_SNAPSHOT).await?;
        let row = connection
            .client()
            .query_opt(&latest, &[&&*self.notebook, &kind.as_str()])
            .await
            .map_err(store_error)?;
        let Some(row) = row else { return Ok(None) };
        Ok(Some(Snapshot {
            seq: seq_of(row.try_get(0).map_err(store_error)?),
            kind,
            state: row.try_get::<_, String>(1).map_err(store_error)?.into(),
        }))
    }

    fn keeps_snapshots(&self) -> bool {
        true
    }

    async fn save_snapshot(&self, snapshot: &Snapshot) -> Result<(), StoreError> {
        let seq = i64::try_from(snapshot.seq).unwrap_or(i64::MAX);
        let saved = {
            let mut connection = self.shared.pool.get().await?;
            let save = connection.statement(SAVE_SNAPSHOT).await?;
            connection
                .client()
                .execute(
                    &save,
                    &[
                        &&*self.notebook,
                        &snapshot.kind.as_str(),
                        &seq,
                        &&*snapshot.state,
                    ],
                )
                .await
                .map_err(store_error)?
        };
        if saved == 0 {
            // Older than the one kept (fine), or past the head (refused).
            check_snapshot(snapshot, Store::head(self).await?)?;
        }
        Ok(())
    }

    fn subscribe(&self, from: Seq) -> Subscription {
        let reader = Reader {
            shared: self.shared.clone(),
            wake: self.shared.wakes.of(&self.notebook),
            notebook: self.notebook.clone(),
            next: from.max(1),
            buffer: VecDeque::new(),
        };
        Box::pin(futures::stream::unfold(reader, |mut reader| async move {
            let item = reader.next_entry().await;
            Some((item, reader))
        }))
    }
}

/// The notebooks of the database: a hub serves them all through one `PostgresStore`.
#[async_trait::async_trait]
impl Catalog for PostgresStore {
    async fn notebooks(&self) -> Result<Vec<NotebookInfo>, StoreError> {
        PostgresStore::notebooks(self).await
    }

    fn open(&self, id: &str) -> Result<Arc<dyn Store>, StoreError> {
        check_notebook_id(id)?;
        Ok(Arc::new(self.notebook(id)))
    }
}

/// One subscription: its cursor and what it read but has not yet yielded.
struct Reader {
    shared: Arc<Shared>,
    wake: Arc<tokio::sync::Notify>,
    notebook: Arc<str>,
    next: Seq,
    buffer: VecDeque<LogEntry>,
}

impl Reader {
    async fn next_entry(&mut self) -> Result<LogEntry, StoreError> {
        loop {
            if let Some(entry) = self.buffer.pop_front() {
                return Ok(entry);
            }
            // Register for the wake-up before reading, so a commit between the read and
            // the wait is never missed.
            let wake = self.wake.clone();
            let notified = wake.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.read().await? > 0 {
                continue;
            }
            tokio::select! {
                () = notified => {}
                () = tokio::time::sleep(self.shared.safety_poll) => {}
            }
        }
    }

    /// Reads the next rows into the buffer; returns how many.
    async fn read(&mut self) -> Result<usize, StoreError> {
        let rows = {
            let mut connection = self.shared.pool.get().await?;
            let read = connection.statement(READ).await?;
            connection
                .client()
                .query(
                    &read,
                    &[
                        &&*self.notebook,
                        &(self.next as i64),
                        &READ_ROWS,
                        &READ_BYTES,
                    ],
                )
                .await
                .map_err(store_error)?
        };
        let mut count = 0;
        for row in rows {
            let seq = seq_of(row.try_get(0).map_err(store_error)?);
            if seq != self.next {
                if count > 0 {
                    break; // deliver what comes before the gap; the next read reports it
                }
                return Err(StoreError::Backend(format!(
                    "notebook {} has a gap in its log: event {} is missing (the next one is \
                     {seq}); rows were deleted from the database, so no reader can go past it",
                    self.notebook, self.next
                )));
            }
            let event: &str = row.try_get(1).map_err(store_error)?;
            let stamp = match (
                row.try_get::<_, Option<i64>>(2).ok().flatten(),
                row.try_get::<_, Option<String>>(3).ok().flatten(),
            ) {
                (Some(at), Some(author)) => Some(Stamp::new(timestamp_of(at), author)),
                _ => None,
            };
            self.buffer.push_back(LogEntry {
                seq,
                event: Arc::new(Event::from_json_str(event)),
                stamp,
            });
            self.next += 1;
            count += 1;
        }
        Ok(count)
    }
}
