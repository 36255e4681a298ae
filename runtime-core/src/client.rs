//! The other side of the store: what a UI or CLI does with a notebook.
//!
//! [`NotebookClient`] commits cells, execution requests and cancels;
//! [`NotebookWatcher`] folds the log and waits until the state says something.

use std::sync::Arc;

use futures::StreamExt;

use crate::schema::*;
use crate::state::{NotebookState, QueueEntry};
use crate::store::{Store, StoreError, Subscription};

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
        self.store.commit(vec![created.into()]).await?;
        Ok(cell_id)
    }

    /// Asks for `source` of a cell to run; returns the queue id.
    pub async fn execute(
        &self,
        cell_id: &CellId,
        cell_type: CellType,
        source: &str,
    ) -> Result<QueueId, StoreError> {
        let (request, queue_id) = self.request(cell_id.clone(), cell_type, source);
        self.store.commit(vec![request]).await?;
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
        self.store.commit(vec![created.into(), request]).await?;
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

    async fn cancel_target(&self, target: CancelTarget) -> Result<(), StoreError> {
        let cancel = ExecutionCancelRequested {
            target,
            requested_by: self.client_id.clone(),
        };
        self.store.commit(vec![cancel.into()]).await.map(drop)
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
}

impl NotebookWatcher {
    /// Watches `store` from the start of its log.
    pub fn new<S: Store + ?Sized>(store: &S) -> Self {
        Self {
            log: store.subscribe(1),
            state: NotebookState::new(),
        }
    }

    /// The state as folded so far.
    pub fn state(&self) -> &NotebookState {
        &self.state
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
        let entry = self.log.next().await.ok_or(StoreError::Closed)??;
        self.state.apply(entry.seq, &entry.event);
        Ok(entry.event)
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
    pub async fn wait_for_completion(
        &mut self,
        queue_id: &QueueId,
    ) -> Result<&QueueEntry, StoreError> {
        let completed =
            |state: &NotebookState| state.entry(queue_id).is_some_and(QueueEntry::is_completed);
        let state = self.wait_until(completed).await?;
        state.entry(queue_id).ok_or(StoreError::Closed)
    }
}
