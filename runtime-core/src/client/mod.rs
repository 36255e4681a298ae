//! The other side of the store: what a UI or CLI does with a notebook.
//!
//! [`NotebookClient`] commits cells, execution requests and cancels;
//! [`NotebookWatcher`] folds the log and waits until the state says something; with
//! [`NotebookWatcher::enforcing_leases`] it also ends a session whose lease ran out, so a
//! client waiting on a crashed agent's cell sees it end `runtime_lost` instead of waiting
//! forever.

mod leases;

use std::sync::Arc;

use futures::{FutureExt, StreamExt, select_biased};

pub use leases::EXPIRY_MARGIN;

use crate::clock::Clock;
use crate::schema::*;
use crate::sealed::SealError;
use crate::state::{
    InputRequest, NotebookState, QueueEntry, QueueStatus, Seq, Snapshot, SnapshotKind,
};
use crate::store::{Store, StoreError, Subscription};
use leases::LeaseEnforcer;

/// Why [`NotebookClient::reply_input`] did not answer.
#[derive(Debug, thiserror::Error)]
pub enum InputReplyError {
    /// A password request whose key is missing or malformed, or no randomness to seal.
    #[error(transparent)]
    Seal(#[from] SealError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Commits what a notebook client asks for, in the client's name.
///
/// # Example
///
/// ```
/// use runtime_core::{CellType, MemoryStore, NotebookClient, NotebookWatcher};
///
/// # futures::executor::block_on(async {
/// let store = MemoryStore::new();
/// let client = NotebookClient::new(store.clone(), "alice");
/// let (cell_id, queue_id) = client.run_cell(CellType::Code, "1 + 1").await?;
/// let mut watcher = NotebookWatcher::new(&store);
/// let state = watcher.wait_until(|state| state.entry(&queue_id).is_some()).await?;
/// assert_eq!(state.cell(&cell_id).unwrap().source, "1 + 1");
/// # Ok::<(), runtime_core::StoreError>(())
/// # }).unwrap();
/// ```
#[derive(Clone)]
pub struct NotebookClient {
    store: Arc<dyn Store>,
    client_id: String,
}

impl NotebookClient {
    /// A client acting as `client_id` on `store`.
    pub fn new(store: impl Store + 'static, client_id: impl Into<String>) -> Self {
        Self {
            store: Arc::new(store),
            client_id: client_id.into(),
        }
    }

    /// Adds a cell; returns its id.
    pub async fn create_cell(
        &self,
        cell_type: CellType,
        source: &str,
    ) -> Result<CellId, StoreError> {
        let cell_id = CellId::random();
        let created = CellCreated {
            cell_id: cell_id.clone(),
            cell_type,
            source: source.into(),
        };
        self.commit(vec![created.into()]).await?;
        Ok(cell_id)
    }

    /// Titles the notebook (an empty title leaves it untitled); catalogs list it by this.
    ///
    /// ```
    /// # futures::executor::block_on(async {
    /// use runtime_core::{Catalog, MemoryCatalog, NotebookClient};
    ///
    /// let catalog = MemoryCatalog::new();
    /// let client = NotebookClient::new(catalog.store("report"), "alice");
    /// client.set_title("Weekly report").await?;
    /// assert_eq!(catalog.notebooks().await?[0].title.as_deref(), Some("Weekly report"));
    /// # Ok::<(), runtime_core::StoreError>(())
    /// # }).unwrap();
    /// ```
    pub async fn set_title(&self, title: &str) -> Result<(), StoreError> {
        let changed = crate::NotebookTitleChanged {
            title: title.to_owned(),
        };
        self.commit(vec![changed.into()]).await.map(drop)
    }

    /// Asks for a runtime of type `runtime_type` to serve the notebook (a gateway serving
    /// that type attaches to it), working in a git worktree of its own if `worktree` says
    /// so; an empty type withdraws the request.
    pub async fn request_runtime(
        &self,
        runtime_type: &str,
        worktree: Option<crate::WorktreeRequest>,
    ) -> Result<(), StoreError> {
        let request = crate::NotebookRuntimeRequested {
            runtime_type: runtime_type.to_owned(),
            worktree,
        };
        self.commit(vec![request.into()]).await.map(drop)
    }

    /// Asks for `source` of a cell to run; returns the queue id.
    pub async fn execute(
        &self,
        cell_id: &CellId,
        cell_type: CellType,
        source: &str,
    ) -> Result<QueueId, StoreError> {
        let (request, queue_id) = self.request(cell_id.clone(), cell_type, source);
        self.commit(vec![request]).await?;
        Ok(queue_id)
    }

    /// Adds a cell and asks for it to run, in one commit.
    pub async fn run_cell(
        &self,
        cell_type: CellType,
        source: &str,
    ) -> Result<(CellId, QueueId), StoreError> {
        let cell_id = CellId::random();
        let created = CellCreated {
            cell_id: cell_id.clone(),
            cell_type,
            source: source.into(),
        };
        let (request, queue_id) = self.request(cell_id.clone(), cell_type, source);
        self.commit(vec![created.into(), request]).await?;
        Ok((cell_id, queue_id))
    }

    /// Asks to cancel one execution.
    pub async fn cancel(&self, queue_id: &QueueId) -> Result<(), StoreError> {
        self.cancel_target(CancelTarget::Entry {
            queue_id: queue_id.clone(),
        })
        .await
    }

    /// Asks to cancel every execution that has not finished.
    pub async fn cancel_all(&self) -> Result<(), StoreError> {
        self.cancel_target(CancelTarget::All).await
    }

    /// Answers `request`, the input request of the running entry `queue_id` (as
    /// [`QueueEntry::input`] shows it). A password reply is sealed to the request's key
    /// before it is written, so the log never holds it in clear. The first reply to a
    /// request wins; later ones are ignored.
    ///
    /// ```
    /// # use runtime_core::*;
    /// # async fn answer(client: &NotebookClient, watcher: &mut NotebookWatcher, queue_id: &QueueId) -> Result<(), Box<dyn std::error::Error>> {
    /// let state = watcher
    ///     .wait_until(|state| state.entry(queue_id).is_some_and(|e| e.input.as_ref().is_some_and(|i| i.is_waiting())))
    ///     .await?;
    /// let request = state.entry(queue_id).and_then(|e| e.input.clone()).unwrap();
    /// client.reply_input(queue_id, &request, "Ada").await?;
    /// # Ok(()) }
    /// ```
    pub async fn reply_input(
        &self,
        queue_id: &QueueId,
        request: &InputRequest,
        value: &str,
    ) -> Result<(), InputReplyError> {
        let reply = request.answer(queue_id, value, &self.client_id)?;
        self.commit(vec![reply.into()]).await?;
        Ok(())
    }

    async fn cancel_target(&self, target: CancelTarget) -> Result<(), StoreError> {
        let cancel = ExecutionCancelRequested {
            target,
            requested_by: self.client_id.clone(),
        };
        self.commit(vec![cancel.into()]).await.map(drop)
    }

    /// Commits `events` unless one is invalid (an empty id: the log would skip it, so the
    /// caller hears it now instead).
    async fn commit(&self, events: Vec<Event>) -> Result<Seq, StoreError> {
        if let Some(invalid) = events.iter().find(|event| event.has_empty_id()) {
            return Err(StoreError::Invalid(format!(
                "{} carries an empty id; ids are non-empty strings",
                invalid.type_name()
            )));
        }
        self.store.commit(events).await
    }

    fn request(&self, cell_id: CellId, cell_type: CellType, source: &str) -> (Event, QueueId) {
        let queue_id = QueueId::random();
        let request = ExecutionRequested {
            queue_id: queue_id.clone(),
            cell_id,
            cell_type,
            source: source.into(),
            requested_by: self.client_id.clone(),
        };
        (request.into(), queue_id)
    }
}

/// Folds a notebook's log as it grows and waits for conditions on the state.
pub struct NotebookWatcher {
    log: Subscription,
    state: NotebookState,
    leases: Option<LeaseEnforcer>,
}

impl NotebookWatcher {
    /// Watches `store` from the start of its log.
    pub fn new<S: Store + ?Sized>(store: &S) -> Self {
        Self::from_snapshot(store, None)
    }

    /// Watches `store` from its latest full snapshot, folding only what follows it: what a
    /// UI joining a long notebook does. Without a usable snapshot, from the start.
    ///
    /// ```
    /// use runtime_core::{CellDeleted, MemoryStore, NotebookState, NotebookWatcher, Store};
    ///
    /// # futures::executor::block_on(async {
    /// let store = MemoryStore::new();
    /// store.commit(vec![CellDeleted { cell_id: "c".into() }.into()]).await?;
    /// let mut folded = NotebookState::new();
    /// folded.apply(1, &CellDeleted { cell_id: "c".into() }.into());
    /// store.save_snapshot(&folded.snapshot()).await?;
    /// let watcher = NotebookWatcher::resume(&store).await;
    /// assert_eq!(watcher.state().last_seq(), 1);
    /// # Ok::<(), runtime_core::StoreError>(())
    /// # }).unwrap();
    /// ```
    pub async fn resume<S: Store + ?Sized>(store: &S) -> Self {
        Self::resuming(store, SnapshotKind::Full).await
    }

    /// Watches `store` with a lean state ([`NotebookState::lean`]: sessions, the queue and
    /// states, no output bodies), from its latest lean snapshot: for a client that shows
    /// what runs and what waits, not outputs. Agents leave lean snapshots as they go.
    pub async fn resume_lean<S: Store + ?Sized>(store: &S) -> Self {
        Self::resuming(store, SnapshotKind::Lean).await
    }

    async fn resuming<S: Store + ?Sized>(store: &S, kind: SnapshotKind) -> Self {
        let snapshot = match store.latest_snapshot(kind).await {
            Ok(snapshot) => snapshot,
            Err(error) => {
                tracing::debug!(%error, "no snapshot to start from; folding the log");
                None
            }
        };
        Self::from_state(store, Self::state_from(snapshot.as_ref(), kind))
    }

    /// Watches `store` from `snapshot` (a full one), or from the start without one or if
    /// it cannot be used.
    pub fn from_snapshot<S: Store + ?Sized>(store: &S, snapshot: Option<&Snapshot>) -> Self {
        Self::from_state(store, Self::state_from(snapshot, SnapshotKind::Full))
    }

    /// The state `snapshot` holds, or an empty one of `kind`.
    fn state_from(snapshot: Option<&Snapshot>, kind: SnapshotKind) -> NotebookState {
        let restored = snapshot.and_then(|snapshot| {
            NotebookState::from_snapshot(snapshot, kind)
                .map_err(|error| {
                    tracing::warn!(%error, "cannot use the snapshot; folding the log");
                })
                .ok()
        });
        restored.unwrap_or_else(|| match kind {
            SnapshotKind::Lean => NotebookState::lean(),
            SnapshotKind::Full => NotebookState::new(),
        })
    }

    fn from_state<S: Store + ?Sized>(store: &S, state: NotebookState) -> Self {
        Self {
            log: store.subscribe(state.last_seq() + 1),
            state,
            leases: None,
        }
    }

    /// This watcher, also acting as an observer of leases: while it waits, when the
    /// active session's lease has run out (plus [`EXPIRY_MARGIN`]), it commits
    /// `RuntimeSessionTerminated { reason: Expired }` to `store` in the name of `by`. The
    /// log decides (an expiry applies only if the lease had run out at its time), so a
    /// late renewal wins and many observers do no harm.
    ///
    /// In a stamped log, leases run by the authority's clock, which the watcher estimates
    /// from the stamps it folds: a clock that runs ahead costs at most an expiry or two the
    /// log refuses (each teaches the watcher by how much), and one that runs behind still
    /// expires a dead runtime within a lease of the last entry it saw.
    ///
    /// ```
    /// use runtime_core::{MemoryStore, ManualClock, NotebookWatcher};
    ///
    /// let store = MemoryStore::new();
    /// let watcher = NotebookWatcher::new(&store).enforcing_leases(store.clone(), ManualClock::default(), "alice");
    /// ```
    pub fn enforcing_leases(
        mut self,
        store: impl Store + 'static,
        clock: impl Clock + 'static,
        by: impl Into<String>,
    ) -> Self {
        self.leases = Some(LeaseEnforcer::new(
            Arc::new(store),
            Arc::new(clock),
            by.into(),
        ));
        self
    }

    /// The state as folded so far.
    pub fn state(&self) -> &NotebookState {
        &self.state
    }

    /// The state folded so far, without a copy: for a client done watching.
    ///
    /// ```
    /// use runtime_core::{MemoryStore, NotebookWatcher};
    ///
    /// let watcher = NotebookWatcher::new(&MemoryStore::new());
    /// assert_eq!(watcher.into_state().last_seq(), 0);
    /// ```
    pub fn into_state(self) -> NotebookState {
        self.state
    }

    /// Waits for the next event, folds it in and returns it: for clients that show events
    /// as they arrive.
    ///
    /// ```
    /// use runtime_core::{CellDeleted, Event, MemoryStore, NotebookWatcher};
    ///
    /// # futures::executor::block_on(async {
    /// let store = MemoryStore::new();
    /// store.commit_now(vec![CellDeleted { cell_id: "c".into() }.into()])?;
    /// let mut watcher = NotebookWatcher::new(&store);
    /// let event = watcher.next().await?;
    /// assert!(matches!(&*event, Event::CellDeleted(_)));
    /// assert_eq!(watcher.state().last_seq(), 1);
    /// # Ok::<(), runtime_core::StoreError>(())
    /// # }).unwrap();
    /// ```
    pub async fn next(&mut self) -> Result<Arc<Event>, StoreError> {
        loop {
            let entry = match &self.leases {
                Some(leases) => match leases.wait_for(&self.state) {
                    Some(wait) => {
                        let expired = leases.clock().sleep(wait).fuse();
                        let next = self.log.next().fuse();
                        futures::pin_mut!(expired, next);
                        select_biased! {
                            entry = next => entry,
                            () = expired => {
                                if let Some(leases) = &mut self.leases {
                                    leases.expire(&self.state).await?;
                                }
                                continue;
                            }
                        }
                    }
                    None => self.log.next().await,
                },
                None => self.log.next().await,
            };
            let entry = entry.ok_or(StoreError::Closed)??;
            let applied = self.state.apply_entry(&entry);
            if let Some(leases) = &mut self.leases {
                leases.observe(&entry, applied);
            }
            return Ok(entry.event);
        }
    }

    /// Folds the log until `done` holds for the state; returns the state.
    pub async fn wait_until(
        &mut self,
        mut done: impl FnMut(&NotebookState) -> bool,
    ) -> Result<&NotebookState, StoreError> {
        while !done(&self.state) {
            self.next().await?;
        }
        Ok(&self.state)
    }

    /// Folds the log until `queue_id` has completed; returns its entry with its outputs.
    /// A lean watcher keeps no completed entry: it answers
    /// [`StoreError::Invalid`] once the entry has completed (wait with
    /// [`wait_until`](Self::wait_until) and [`NotebookState::queue_status`] there).
    pub async fn wait_for_completion(
        &mut self,
        queue_id: &QueueId,
    ) -> Result<&QueueEntry, StoreError> {
        let completed = |state: &NotebookState| {
            state
                .queue_status(queue_id)
                .is_some_and(QueueStatus::is_completed)
        };
        let state = self.wait_until(completed).await?;
        state.entry(queue_id).ok_or_else(|| {
            StoreError::Invalid("a lean watcher keeps no completed entry to return".into())
        })
    }
}
