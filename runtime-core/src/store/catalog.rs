//! [`Catalog`]: the notebooks a store holds, next to each notebook's [`Store`].

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

use serde::{Deserialize, Serialize};

use super::{MemoryStore, Store, StoreError};
use crate::clock::Timestamp;
use crate::state::Seq;

/// A notebook as a catalog lists it. On the wire:
/// `{"id": "demo", "title": "Weekly report", "head": 2, "lastActivity": 1700000000000}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NotebookInfo {
    /// Its id.
    pub id: String,
    /// Its title: the last [`NotebookTitleChanged`](crate::NotebookTitleChanged) of its
    /// log, none if there is none or it was empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// The runtime it asks for: the last
    /// [`NotebookRuntimeRequested`](crate::NotebookRuntimeRequested) of its log, none if
    /// there is none or it withdrew the request. A gateway attaches to notebooks by it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime: Option<crate::NotebookRuntimeRequested>,
    /// The sequence number of its last event (0 if it has none).
    pub head: Seq,
    /// When its last event was committed, by that entry's [`Stamp`](crate::Stamp); none
    /// for an unstamped one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_activity: Option<Timestamp>,
}

/// The notebooks of one store: list them, and open one (an empty notebook is created by
/// its first commit). A hub serves notebooks through it.
///
/// ```
/// use runtime_core::{Catalog, MemoryCatalog};
///
/// # futures::executor::block_on(async {
/// let catalog = MemoryCatalog::new();
/// let store = catalog.open("demo")?;
/// store.commit(vec![runtime_core::Event::from(runtime_core::CellCreated {
///     cell_id: "c1".into(),
///     cell_type: runtime_core::CellType::Code,
///     source: String::new(),
/// })]).await?;
/// let listed = catalog.notebooks().await?;
/// assert_eq!((listed[0].id.as_str(), listed[0].head), ("demo", 1));
/// # Ok::<(), runtime_core::StoreError>(())
/// # }).unwrap();
/// ```
#[cfg_attr(not(target_arch = "wasm32"), async_trait::async_trait)]
#[cfg_attr(target_arch = "wasm32", async_trait::async_trait(?Send))]
pub trait Catalog: crate::maybe_send::MaybeSend + crate::maybe_send::MaybeSync {
    /// Every notebook that has events, by id.
    async fn notebooks(&self) -> Result<Vec<NotebookInfo>, StoreError>;

    /// The store of notebook `id`. An id must be non-empty, at most 256 bytes, without
    /// control characters ([`check_notebook_id`]).
    fn open(&self, id: &str) -> Result<Arc<dyn Store>, StoreError>;

    /// Creates a notebook titled `title` (empty: untitled), with id `id` or a new random
    /// one; returns its id. Its first batch is the title, under the batch id
    /// [`CREATION_BATCH`]. An id that already has events is refused
    /// ([`StoreError::Invalid`]) unless its log begins with this very creation (the same
    /// title): a creation sent again is done, not refused.
    async fn create(&self, id: Option<&str>, title: &str) -> Result<String, StoreError> {
        let id = id.map_or_else(|| uuid::Uuid::new_v4().to_string(), str::to_owned);
        let store = self.open(&id)?;
        if needs_creation(&*store, &id, title).await? {
            store.commit_batch(&creation(title)).await?;
        }
        Ok(id)
    }
}

/// Whether notebook `id` (in `store`) still needs its creation as `title`: `true` while it
/// is empty, `false` if its log begins with that very creation (a creation sent again is
/// done), and [`StoreError::Invalid`] if it holds anything else.
pub async fn needs_creation(store: &dyn Store, id: &str, title: &str) -> Result<bool, StoreError> {
    use futures::StreamExt;
    if store.head().await? == 0 {
        return Ok(true);
    }
    let first = store
        .subscribe(1)
        .next()
        .await
        .ok_or(StoreError::Closed)??;
    if *first.event == *creation(title).events[0] {
        return Ok(false);
    }
    Err(StoreError::Invalid(format!("notebook {id} already exists")))
}

/// The batch id of a notebook's first batch when a catalog creates it.
pub const CREATION_BATCH: &str = "create";

/// The first batch of a notebook a catalog creates: its title.
pub fn creation(title: &str) -> super::Batch {
    let mut batch = super::Batch::new(vec![
        crate::NotebookTitleChanged {
            title: title.to_owned(),
        }
        .into(),
    ]);
    batch.id = CREATION_BATCH.into();
    batch
}

/// What a batch does to its notebook's title: `None` if it holds no
/// [`NotebookTitleChanged`](crate::NotebookTitleChanged), else the title its last one
/// leaves (`Some(None)`: untitled). For stores that keep titles beside the log.
pub fn title_after(events: &[Arc<crate::Event>]) -> Option<Option<&str>> {
    events.iter().rev().find_map(|event| match &**event {
        crate::Event::NotebookTitleChanged(changed) => {
            Some(Some(changed.title.as_str()).filter(|title| !title.is_empty()))
        }
        _ => None,
    })
}

/// What a batch does to the runtime its notebook asks for: `None` if it holds no
/// [`NotebookRuntimeRequested`](crate::NotebookRuntimeRequested), else the request its last
/// one leaves (`Some(None)`: withdrawn). For stores that keep it beside the log.
pub fn runtime_request_after(
    events: &[Arc<crate::Event>],
) -> Option<Option<&crate::NotebookRuntimeRequested>> {
    events.iter().rev().find_map(|event| match &**event {
        crate::Event::NotebookRuntimeRequested(request) => {
            Some(Some(request).filter(|request| !request.runtime_type.is_empty()))
        }
        _ => None,
    })
}

/// The longest notebook id accepted.
pub const MAX_NOTEBOOK_ID: usize = 256;

/// Refuses a notebook id that is empty, longer than [`MAX_NOTEBOOK_ID`] bytes or holds a
/// control character.
pub fn check_notebook_id(id: &str) -> Result<(), StoreError> {
    if id.is_empty() || id.len() > MAX_NOTEBOOK_ID || id.chars().any(char::is_control) {
        return Err(StoreError::Invalid(format!(
            "a notebook id is 1 to {MAX_NOTEBOOK_ID} bytes without control characters"
        )));
    }
    Ok(())
}

/// A catalog of [`MemoryStore`]s, in this process.
#[derive(Clone, Default)]
pub struct MemoryCatalog {
    notebooks: Arc<Mutex<BTreeMap<String, MemoryStore>>>,
}

impl MemoryCatalog {
    /// An empty catalog.
    pub fn new() -> Self {
        Self::default()
    }

    /// Notebook `id`'s store, made if new.
    pub fn store(&self, id: &str) -> MemoryStore {
        self.notebooks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(id.to_owned())
            .or_default()
            .clone()
    }
}

#[cfg_attr(not(target_arch = "wasm32"), async_trait::async_trait)]
#[cfg_attr(target_arch = "wasm32", async_trait::async_trait(?Send))]
impl Catalog for MemoryCatalog {
    async fn notebooks(&self) -> Result<Vec<NotebookInfo>, StoreError> {
        let notebooks = self
            .notebooks
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        Ok(notebooks
            .iter()
            .filter(|(_, store)| !store.is_empty())
            .map(|(id, store)| NotebookInfo {
                id: id.clone(),
                title: store.title(),
                runtime: store.runtime_request(),
                head: store.len() as Seq,
                last_activity: store.last_stamp().map(|stamp| stamp.at),
            })
            .collect())
    }

    fn open(&self, id: &str) -> Result<Arc<dyn Store>, StoreError> {
        check_notebook_id(id)?;
        // Send and Sync natively; on wasm32 nothing is, and nothing needs to be.
        #[allow(clippy::arc_with_non_send_sync)]
        Ok(Arc::new(self.store(id)))
    }
}

#[cfg(test)]
mod tests {
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
    #[test]
    fn memory_catalog_passes_the_catalog_conformance_check() {
        futures::executor::block_on(crate::store::conformance::run_catalog(
            &super::MemoryCatalog::new(),
        ));
    }
}
