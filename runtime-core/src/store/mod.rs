//! The store contract: one notebook's append-only, totally ordered event log.
//!
//! The application owns the store and passes it in; agents and UIs share it.
//!
//! - [`Store::commit`] appends a batch atomically and returns the sequence number of its
//!   first event. Sequence numbers start at 1 and have no gaps.
//! - [`Store::subscribe`] yields every committed event with `seq >= from`, in order, then
//!   live ones as they are committed. It never skips, reorders or drops, however slow the
//!   reader: a reader reads the log at its own pace, with no unbounded queue per reader.
//!
//! [`MemoryStore`] is the embedded default. `store::conformance` (feature `conformance`) is the
//! test suite every store must pass.

mod memory;

#[cfg(any(test, feature = "conformance"))]
pub mod conformance;

use std::sync::Arc;

pub use memory::MemoryStore;

use crate::maybe_send::{BoxStream, MaybeSend, MaybeSync};
use crate::schema::Event;
use crate::state::Seq;

/// Why a store operation failed. Messages never contain secrets.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// `commit` was given no events.
    #[error("a commit needs at least one event")]
    EmptyBatch,
    /// The store was closed; nothing more can be committed or read.
    #[error("the store is closed")]
    Closed,
    /// The backend failed; the message says how.
    #[error("store backend failed: {0}")]
    Backend(String),
}

/// One committed event and its place in the log.
#[derive(Debug, Clone, PartialEq)]
pub struct LogEntry {
    /// Its sequence number.
    pub seq: Seq,
    /// The event, shared by every reader.
    pub event: Arc<Event>,
}

/// What a subscription yields.
pub type Subscription = BoxStream<'static, Result<LogEntry, StoreError>>;

/// One notebook's event log. See the [module docs](self) for the contract.
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
    /// Appends `events` atomically, in order; returns the sequence number of the first.
    async fn commit(&self, events: Vec<Event>) -> Result<Seq, StoreError>;

    /// Every committed event with `seq >= from`, in order, then live ones.
    fn subscribe(&self, from: Seq) -> Subscription;
}

#[cfg_attr(not(target_arch = "wasm32"), async_trait::async_trait)]
#[cfg_attr(target_arch = "wasm32", async_trait::async_trait(?Send))]
impl<S: Store + ?Sized> Store for Arc<S> {
    async fn commit(&self, events: Vec<Event>) -> Result<Seq, StoreError> {
        (**self).commit(events).await
    }

    fn subscribe(&self, from: Seq) -> Subscription {
        (**self).subscribe(from)
    }
}
