//! The in-memory store: the embedded default, and the one tests and simulations use.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, VecDeque};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use futures::Stream;

use super::{Batch, LogEntry, Stamp, Store, StoreError, Subscription, check_snapshot};
use crate::clock::Clock;
use crate::schema::{BatchId, Event};
use crate::state::{Seq, Snapshot, SnapshotKind};

/// How many entries a subscription takes per lock: bounds the per-reader buffer.
const READ_CHUNK: usize = 256;
/// How many recent batch ids the store remembers (at least) to recognise a retry. Commits
/// to memory never fail, so a batch comes again only from a caller that commits it twice on
/// purpose, right away; remembering every id ever would grow without bound.
const REMEMBERED_BATCHES: usize = 4096;

/// An in-memory event log. Clones share the same log.
///
/// Commits complete immediately; subscribers read through their own cursor into the shared
/// log, so a slow reader costs no memory and loses nothing. It recognises a retried batch
/// among the last 4,096 committed (commits to memory never fail, so a retry comes at once).
///
/// [`MemoryStore::new`] stamps nothing (everyone on it shares one process, one clock and
/// one identity); [`MemoryStore::stamping`] stamps each batch from a clock and an identity,
/// as a durable store does.
#[derive(Clone, Default)]
pub struct MemoryStore {
    inner: Arc<Mutex<Inner>>,
    authority: Option<Arc<Authority>>,
}

/// What a stamping store stamps unstamped batches with.
struct Authority {
    clock: Arc<dyn Clock>,
    author: Arc<str>,
}

#[derive(Default)]
struct Inner {
    log: Vec<Arc<Event>>,
    /// The first sequence number and stamp of every batch, in order (the stamp of an entry
    /// is its batch's: one per batch, not one per event).
    batches_by_seq: Vec<(Seq, Option<Stamp>)>,
    /// The first sequence number of recent batches, by id: the newest ones, and the
    /// generation before them (two maps that are swapped, never pruned one by one).
    batches: HashMap<BatchId, Seq, IdHash>,
    older_batches: HashMap<BatchId, Seq, IdHash>,
    next_reader: u64,
    /// Readers that caught up and wait for the next commit.
    waiting: HashMap<u64, Waker>,
    /// The latest snapshot of each kind.
    snapshots: HashMap<SnapshotKind, Snapshot>,
    /// The notebook's title, as the log leaves it.
    title: Option<String>,
    /// The runtime the notebook asks for, as the log leaves it.
    runtime_request: Option<crate::NotebookRuntimeRequested>,
}

impl MemoryStore {
    /// An empty log that stamps nothing.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty log that stamps each batch committed without a [`Stamp`] with `clock`'s
    /// time and `author`, as a durable store stamps with its clock and configured identity.
    ///
    /// ```
    /// use futures::StreamExt;
    /// use runtime_core::{CellDeleted, ManualClock, MemoryStore, Stamp, Store, Timestamp};
    ///
    /// # futures::executor::block_on(async {
    /// let clock = ManualClock::new(Timestamp(5_000));
    /// let store = MemoryStore::stamping(clock, "local");
    /// store.commit(vec![CellDeleted { cell_id: "c".into() }.into()]).await?;
    /// let entry = store.subscribe(1).next().await.unwrap()?;
    /// assert_eq!(entry.stamp, Some(Stamp::new(Timestamp(5_000), "local")));
    /// # Ok::<(), runtime_core::StoreError>(())
    /// # }).unwrap();
    /// ```
    pub fn stamping(clock: impl Clock + 'static, author: impl Into<Arc<str>>) -> Self {
        // Send and Sync natively; on wasm32 nothing is, and nothing needs to be.
        #[allow(clippy::arc_with_non_send_sync)]
        Self {
            inner: Arc::default(),
            authority: Some(Arc::new(Authority {
                clock: Arc::new(clock),
                author: author.into(),
            })),
        }
    }

    /// Number of events committed.
    pub fn len(&self) -> usize {
        self.lock().log.len()
    }

    /// `true` if nothing was committed yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The notebook's title, as the log leaves it.
    pub(crate) fn title(&self) -> Option<String> {
        self.lock().title.clone()
    }

    /// The runtime the notebook asks for, as the log leaves it.
    pub(crate) fn runtime_request(&self) -> Option<crate::NotebookRuntimeRequested> {
        self.lock().runtime_request.clone()
    }

    /// The stamp of the last batch, if it has one.
    pub(crate) fn last_stamp(&self) -> Option<Stamp> {
        self.lock()
            .batches_by_seq
            .last()
            .and_then(|(_, stamp)| stamp.clone())
    }

    /// A copy of the whole log, for inspection.
    pub fn entries(&self) -> Vec<LogEntry> {
        self.lock().read(1, usize::MAX)
    }

    /// Appends without waiting; what [`Store::commit`] does.
    pub fn commit_now(&self, events: Vec<Event>) -> Result<Seq, StoreError> {
        self.commit_batch_now(&Batch::new(events))
    }

    /// Appends a batch without waiting; what [`Store::commit_batch`] does.
    pub fn commit_batch_now(&self, batch: &Batch) -> Result<Seq, StoreError> {
        if batch.events.is_empty() {
            return Err(StoreError::EmptyBatch);
        }
        let (first, waiting) = {
            let mut inner = self.lock();
            if let Some(&first) = inner.older_batches.get(&batch.id) {
                return Ok(first);
            }
            let first = inner.log.len() as Seq + 1;
            match inner.batches.entry(batch.id.clone()) {
                Entry::Occupied(landed) => return Ok(*landed.get()),
                Entry::Vacant(new) => new.insert(first),
            };
            let stamp = batch.stamp.clone().or_else(|| {
                let authority = self.authority.as_deref()?;
                Some(Stamp::new(authority.clock.now(), authority.author.clone()))
            });
            inner.batches_by_seq.push((first, stamp));
            inner.log.extend(batch.events.iter().cloned());
            if let Some(title) = super::catalog::title_after(&batch.events) {
                inner.title = title.map(str::to_owned);
            }
            if let Some(request) = super::catalog::runtime_request_after(&batch.events) {
                inner.runtime_request = request.cloned();
            }
            if inner.batches.len() == REMEMBERED_BATCHES {
                inner.older_batches = std::mem::take(&mut inner.batches);
            }
            let waiting: Vec<Waker> = inner.waiting.drain().map(|(_, waker)| waker).collect();
            (first, waiting)
        };
        waiting.into_iter().for_each(Waker::wake);
        Ok(first)
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Every critical section leaves the log consistent, so a poisoned lock is usable.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A word-at-a-time multiply-rotate hash (as rustc's FxHash): batch ids are random and the
/// maps are small and bounded, so a fast hash does; a caller that crafts colliding ids slows
/// only its own lookups, at most [`REMEMBERED_BATCHES`] compares each.
#[derive(Default)]
struct FastHash(u64);

impl FastHash {
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

impl std::hash::Hasher for FastHash {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut words = bytes.chunks_exact(8);
        for word in &mut words {
            let mut eight = [0_u8; 8];
            eight.copy_from_slice(word);
            self.add(u64::from_le_bytes(eight));
        }
        let mut rest = [0_u8; 8];
        rest[..words.remainder().len()].copy_from_slice(words.remainder());
        self.add(u64::from_le_bytes(rest) ^ bytes.len() as u64);
    }
}

type IdHash = std::hash::BuildHasherDefault<FastHash>;

impl Inner {
    /// Up to `limit` entries from `from` on, with their batches' stamps.
    fn read(&self, from: Seq, limit: usize) -> Vec<LogEntry> {
        let start = usize::try_from(from.max(1) - 1).unwrap_or(usize::MAX);
        if start >= self.log.len() {
            return Vec::new();
        }
        let end = self.log.len().min(start.saturating_add(limit));
        // The batch holding `from`: the last one that starts at or before it.
        let mut batch = self
            .batches_by_seq
            .partition_point(|(first, _)| *first <= from)
            .saturating_sub(1);
        (start..end)
            .map(|index| {
                let seq = index as Seq + 1;
                while self
                    .batches_by_seq
                    .get(batch + 1)
                    .is_some_and(|(first, _)| *first <= seq)
                {
                    batch += 1;
                }
                LogEntry {
                    seq,
                    event: self.log[index].clone(),
                    stamp: self.batches_by_seq[batch].1.clone(),
                }
            })
            .collect()
    }
}

#[cfg_attr(not(target_arch = "wasm32"), async_trait::async_trait)]
#[cfg_attr(target_arch = "wasm32", async_trait::async_trait(?Send))]
impl Store for MemoryStore {
    async fn commit_batch(&self, batch: &Batch) -> Result<Seq, StoreError> {
        self.commit_batch_now(batch)
    }

    async fn head(&self) -> Result<Seq, StoreError> {
        Ok(self.len() as Seq)
    }

    async fn latest_snapshot(&self, kind: SnapshotKind) -> Result<Option<Snapshot>, StoreError> {
        Ok(self.lock().snapshots.get(&kind).cloned())
    }

    fn keeps_snapshots(&self) -> bool {
        true
    }

    async fn save_snapshot(&self, snapshot: &Snapshot) -> Result<(), StoreError> {
        let mut inner = self.lock();
        check_snapshot(snapshot, inner.log.len() as Seq)?;
        let kept = inner.snapshots.entry(snapshot.kind);
        match kept {
            Entry::Occupied(mut kept) if kept.get().seq < snapshot.seq => {
                kept.insert(snapshot.clone());
            }
            Entry::Occupied(_) => {}
            Entry::Vacant(none) => {
                none.insert(snapshot.clone());
            }
        }
        Ok(())
    }

    fn subscribe(&self, from: Seq) -> Subscription {
        let reader = {
            let mut inner = self.lock();
            inner.next_reader += 1;
            inner.next_reader
        };
        Box::pin(MemorySubscription {
            store: self.clone(),
            reader,
            next: from.max(1),
            buffer: VecDeque::new(),
        })
    }
}

struct MemorySubscription {
    store: MemoryStore,
    reader: u64,
    /// The sequence number of the next entry to read from the log.
    next: Seq,
    buffer: VecDeque<LogEntry>,
}

impl Stream for MemorySubscription {
    type Item = Result<LogEntry, StoreError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if let Some(entry) = self.buffer.pop_front() {
            return Poll::Ready(Some(Ok(entry)));
        }
        let this = &mut *self;
        let mut inner = this.store.lock();
        let entries = inner.read(this.next, READ_CHUNK);
        if entries.is_empty() {
            inner.waiting.insert(this.reader, cx.waker().clone());
            return Poll::Pending;
        }
        drop(inner);
        this.next += entries.len() as Seq;
        this.buffer.extend(entries);
        Poll::Ready(this.buffer.pop_front().map(Ok))
    }
}

impl Drop for MemorySubscription {
    fn drop(&mut self) {
        self.store.lock().waiting.remove(&self.reader);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
    #[test]
    fn memory_store_passes_the_store_conformance_suite() {
        futures::executor::block_on(crate::store::conformance::run_all(MemoryStore::new));
    }

    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
    #[test]
    fn a_stamping_memory_store_passes_the_store_conformance_suite_and_keeps_given_stamps() {
        use crate::store::conformance::{a_batch_stamp_is_kept, run_all};
        let stamping = || MemoryStore::stamping(crate::ManualClock::default(), "local");
        futures::executor::block_on(async {
            run_all(stamping).await;
            a_batch_stamp_is_kept(&stamping()).await;
            a_batch_stamp_is_kept(&MemoryStore::new()).await;
        });
    }
}
