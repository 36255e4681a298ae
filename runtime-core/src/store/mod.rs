//! The store contract: one notebook's append-only, totally ordered event log.
//!
//! The application owns the store and passes it in; agents and UIs share it.
//!
//! - [`Store::commit_batch`] appends a [`Batch`] atomically and returns the sequence number
//!   of its first event. Sequence numbers start at 1 and have no gaps. A batch id the store
//!   has committed before is not committed again: the store returns the first sequence
//!   number it got then, so a retry after an error that hid a success never lands twice. A
//!   store must remember an id at least as long as a writer may retry it ([`SqliteStore`]
//!   in runtime-native keeps them all; [`MemoryStore`], whose commits never fail, the last
//!   4,096).
//!
//! [`SqliteStore`]: https://docs.rs/runtime-native
//! - [`Store::subscribe`] yields every committed event with `seq >= from`, in order, then
//!   live ones as they are committed. It never skips, reorders or drops, however slow the
//!   reader: a reader reads the log at its own pace, with no unbounded queue per reader.
//! - A store may keep [`Snapshot`]s of the folded state ([`Store::save_snapshot`],
//!   [`Store::latest_snapshot`]) so readers start from the latest one and fold only what
//!   follows it. A snapshot is a cache: a store may drop it, and a reader that cannot use
//!   one folds the log from the start.
//! - Errors are [retriable](StoreError::is_retriable) (a busy lock, a dropped connection:
//!   try again, with the same batch id) or permanent.
//!
//! [`MemoryStore`] is the embedded default. [`Retrying`] wraps any store with retries and
//! resumed subscriptions, as agents use it. `store::conformance` (feature `conformance`) is
//! the test suite every store must pass.

mod catalog;
mod memory;
mod retry;

#[cfg(any(test, feature = "conformance"))]
pub mod conformance;

use std::sync::Arc;

pub use catalog::{
    CREATION_BATCH, Catalog, MAX_NOTEBOOK_ID, MemoryCatalog, NotebookInfo, check_notebook_id,
    creation, needs_creation, runtime_request_after, title_after,
};
pub use memory::MemoryStore;
pub use retry::{RetryPolicy, Retrying};

use crate::clock::Timestamp;
use crate::maybe_send::{BoxStream, MaybeSend, MaybeSync};
use crate::schema::{BatchId, Event};
use crate::state::{Seq, Snapshot, SnapshotKind};

/// Refuses a snapshot past the notebook's head: it would claim entries the log lacks.
pub fn check_snapshot(snapshot: &Snapshot, head: Seq) -> Result<(), StoreError> {
    if snapshot.seq > head {
        return Err(StoreError::Invalid(format!(
            "a snapshot at sequence number {} is past the notebook's last event ({head})",
            snapshot.seq
        )));
    }
    Ok(())
}

/// Why a store operation failed. Messages never contain secrets.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// `commit` was given no events.
    #[error("a commit needs at least one event")]
    EmptyBatch,
    /// The store was closed; nothing more can be committed or read.
    #[error("the store is closed")]
    Closed,
    /// The backend failed for now (a lock held too long, a dropped connection); the same
    /// call may succeed later. A commit that failed this way may still have landed: retry
    /// it with the same batch id.
    #[error("store temporarily unavailable: {0}")]
    Unavailable(String),
    /// The backend failed for good; the message says how.
    #[error("store backend failed: {0}")]
    Backend(String),
    /// Refused before it reached the store: an event in the batch is invalid.
    #[error("refused an invalid event: {0}")]
    Invalid(String),
}

impl StoreError {
    /// `true` if the same call may succeed later ([`StoreError::Unavailable`]).
    pub fn is_retriable(&self) -> bool {
        matches!(self, StoreError::Unavailable(_))
    }
}

/// Events to commit together, under an id that makes a retry harmless.
///
/// ```
/// use runtime_core::{Batch, CellDeleted, Store, MemoryStore};
///
/// # futures::executor::block_on(async {
/// let store = MemoryStore::new();
/// let batch = Batch::new(vec![CellDeleted { cell_id: "c".into() }.into()]);
/// assert_eq!(store.commit_batch(&batch).await?, 1);
/// assert_eq!(store.commit_batch(&batch).await?, 1, "a retry lands once");
/// assert_eq!(store.len(), 1);
/// # Ok::<(), runtime_core::StoreError>(())
/// # }).unwrap();
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    /// The batch's id: [`BatchId::next`] from [`Batch::new`].
    pub id: BatchId,
    /// The events, in order.
    pub events: Vec<Arc<Event>>,
    /// The authority's stamp, set by the code that authenticated the writer (a hub, for
    /// a client it serves) and kept by the store. `None` from [`Batch::new`]: a store with
    /// an authority of its own stamps the batch as it commits it.
    pub stamp: Option<Stamp>,
}

impl Batch {
    /// A batch of `events` with a fresh id and no stamp.
    pub fn new(events: Vec<Event>) -> Self {
        Self {
            id: BatchId::next(),
            events: events.into_iter().map(Arc::new).collect(),
            stamp: None,
        }
    }

    /// This batch, committed under `stamp`: what a hub does with a batch it received from
    /// an authenticated client.
    pub fn stamped(self, stamp: Stamp) -> Self {
        Self {
            stamp: Some(stamp),
            ..self
        }
    }
}

/// Who committed an entry and when, as the authority that accepted it says: a hub stamps
/// the identity a token authenticated and the time by its own clock; a local store its
/// configured identity and its clock. Every event of a batch carries its batch's stamp.
///
/// The reducer decides leases by stamps' times and who may act for a runtime session by
/// stamps' authors ([`NotebookState::apply_entry`](crate::NotebookState::apply_entry)),
/// never by the times and names events carry: clocks of different machines are never
/// compared, and no writer can act as another.
///
/// ```
/// use runtime_core::{Stamp, Timestamp};
///
/// let stamp = Stamp::new(Timestamp(1_700_000_000_000), "alice");
/// assert_eq!(serde_json::to_string(&stamp)?, r#"{"at":1700000000000,"author":"alice"}"#);
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct Stamp {
    /// When the authority committed it, by the authority's clock.
    pub at: Timestamp,
    /// The identity that wrote it, as the authority authenticated it.
    pub author: Arc<str>,
}

impl Stamp {
    /// A stamp of `author` at `at`.
    pub fn new(at: Timestamp, author: impl Into<Arc<str>>) -> Self {
        Self {
            at,
            author: author.into(),
        }
    }
}

/// One committed event, its place in the log and its [`Stamp`]. On the wire (the sync
/// protocol): `{"seq": 1, "event": {...}, "stamp": {"at": 1700000000000, "author": "alice"}}`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LogEntry {
    /// Its sequence number.
    pub seq: Seq,
    /// The event, shared by every reader.
    pub event: Arc<Event>,
    /// Who committed it and when. `None` in a store without an authority (a
    /// [`MemoryStore::new`], a store the application bridges in without stamps) and for
    /// entries written before stores stamped: the reducer then goes by the event's own
    /// fields, as every writer shares one clock and one identity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stamp: Option<Stamp>,
}

/// What a subscription yields.
pub type Subscription = BoxStream<'static, Result<LogEntry, StoreError>>;

/// One notebook's event log. See the [module docs](self) for the contract.
///
/// A store that wraps another (to count, log, or choose between backends) forwards every
/// method it does not change, the provided ones too: a wrapper that leaves out
/// [`latest_snapshot`](Store::latest_snapshot) and [`save_snapshot`](Store::save_snapshot)
/// still works, but every reader behind it folds the whole log.
///
/// # Example
///
/// ```
/// use futures::StreamExt;
/// use runtime_core::{CellDeleted, Event, MemoryStore, Store};
///
/// # futures::executor::block_on(async {
/// let store = MemoryStore::new();
/// let seq = store.commit(vec![CellDeleted { cell_id: "c".into() }.into()]).await?;
/// assert_eq!(seq, 1);
/// let first = store.subscribe(1).next().await.unwrap()?;
/// assert_eq!(first.seq, 1);
/// # Ok::<(), runtime_core::StoreError>(())
/// # }).unwrap();
/// ```
#[cfg_attr(not(target_arch = "wasm32"), async_trait::async_trait)]
#[cfg_attr(target_arch = "wasm32", async_trait::async_trait(?Send))]
pub trait Store: MaybeSend + MaybeSync {
    /// Appends the batch's events atomically, in order; returns the sequence number of the
    /// first. A batch whose id was committed before is not appended again: the call returns
    /// the sequence number it got the first time.
    async fn commit_batch(&self, batch: &Batch) -> Result<Seq, StoreError>;

    /// Every committed event with `seq >= from`, in order, then live ones.
    fn subscribe(&self, from: Seq) -> Subscription;

    /// Commits `events` as a new [`Batch`].
    async fn commit(&self, events: Vec<Event>) -> Result<Seq, StoreError> {
        if events.is_empty() {
            return Err(StoreError::EmptyBatch);
        }
        self.commit_batch(&Batch::new(events)).await
    }

    /// The sequence number of the notebook's last event (0 if it has none): read up to it
    /// to see the notebook as it is now.
    ///
    /// The provided version reads what the log delivers without waiting, which is right
    /// for a store whose committed events are all delivered at once (like
    /// [`MemoryStore`]) but reads the whole log: stores override it.
    async fn head(&self) -> Result<Seq, StoreError> {
        use futures::{FutureExt, StreamExt};
        let mut log = self.subscribe(1);
        let mut head = 0;
        while let Some(Some(entry)) = log.next().now_or_never() {
            head = entry?.seq;
        }
        Ok(head)
    }

    /// The latest snapshot of `kind` the store keeps, if any. The provided version keeps
    /// none.
    async fn latest_snapshot(&self, kind: SnapshotKind) -> Result<Option<Snapshot>, StoreError> {
        let _ = kind;
        Ok(None)
    }

    /// Keeps `snapshot` as the latest of its kind, unless the store has a later one. One
    /// past the notebook's head is refused ([`StoreError::Invalid`]). The provided version
    /// keeps nothing; so does a store whose snapshots its own authority makes (a hub's).
    async fn save_snapshot(&self, snapshot: &Snapshot) -> Result<(), StoreError> {
        let _ = snapshot;
        Ok(())
    }

    /// Whether [`save_snapshot`](Store::save_snapshot) keeps anything: a reader that
    /// makes snapshots asks first, so it does not encode its state for nothing. The
    /// provided version says no, as the provided `save_snapshot` keeps nothing.
    fn keeps_snapshots(&self) -> bool {
        false
    }
}

#[cfg_attr(not(target_arch = "wasm32"), async_trait::async_trait)]
#[cfg_attr(target_arch = "wasm32", async_trait::async_trait(?Send))]
impl<S: Store + ?Sized> Store for Arc<S> {
    async fn commit_batch(&self, batch: &Batch) -> Result<Seq, StoreError> {
        (**self).commit_batch(batch).await
    }

    fn subscribe(&self, from: Seq) -> Subscription {
        (**self).subscribe(from)
    }

    async fn head(&self) -> Result<Seq, StoreError> {
        (**self).head().await
    }

    async fn latest_snapshot(&self, kind: SnapshotKind) -> Result<Option<Snapshot>, StoreError> {
        (**self).latest_snapshot(kind).await
    }

    async fn save_snapshot(&self, snapshot: &Snapshot) -> Result<(), StoreError> {
        (**self).save_snapshot(snapshot).await
    }

    fn keeps_snapshots(&self) -> bool {
        (**self).keeps_snapshots()
    }
}
