//! The hub's snapshots: made by the hub from the log, never taken from a client, so a
//! client that joins a long notebook receives a snapshot and the tail, not the whole log,
//! and no client can hand other clients a state the log does not say.

use std::collections::HashSet;
use std::sync::Mutex;

use futures::StreamExt;
use runtime_core::sync::MAX_SNAPSHOT_BYTES;
use runtime_core::{NotebookState, SNAPSHOT_EVERY, Snapshot, SnapshotKind, Store, StoreError};

/// Which snapshots are being made now, so two clients joining one notebook at once make it
/// once (the second gets the stored one).
#[derive(Default)]
pub(crate) struct Making(Mutex<HashSet<(String, SnapshotKind)>>);

/// Marks a snapshot as being made until dropped.
struct MakingGuard<'a> {
    making: &'a Making,
    key: (String, SnapshotKind),
}

impl Drop for MakingGuard<'_> {
    fn drop(&mut self) {
        self.making.lock().remove(&self.key);
    }
}

impl Making {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashSet<(String, SnapshotKind)>> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Marks the snapshot as being made, unless it is already: `None` then.
    fn start(&self, notebook: &str, kind: SnapshotKind) -> Option<MakingGuard<'_>> {
        let key = (notebook.to_owned(), kind);
        // The lock is released before a guard exists: a guard dropped under it (as an
        // eager `then_some` did, for the second of two makers) would lock it again and
        // deadlock the thread.
        let started = self.lock().insert(key.clone());
        started.then(|| MakingGuard { making: self, key })
    }
}

/// The snapshot of `kind` to send for `notebook`: the store's latest, or, when
/// [`SNAPSHOT_EVERY`] entries or more follow it, a new one folded from it (and kept). None
/// for a notebook shorter than that, or a snapshot too large to send.
pub(crate) async fn latest(
    store: &dyn Store,
    notebook: &str,
    kind: SnapshotKind,
    making: &Making,
) -> Result<Option<Snapshot>, StoreError> {
    // One in another format (an older version's) is replaced now, not sent.
    let stored = store
        .latest_snapshot(kind)
        .await?
        .filter(Snapshot::in_current_format);
    let head = store.head().await?;
    let folded = stored.as_ref().map_or(0, |snapshot| snapshot.seq);
    let snapshot = match making.start(notebook, kind) {
        Some(_guard) if head.saturating_sub(folded) >= SNAPSHOT_EVERY => {
            let snapshot = fold_from(store, stored, kind, head).await?;
            if let Err(error) = store.save_snapshot(&snapshot).await {
                tracing::warn!(%error, notebook, "could not keep a snapshot");
            }
            Some(snapshot)
        }
        _ => stored,
    };
    Ok(snapshot.filter(|snapshot| {
        let fits = snapshot.state.len() <= MAX_SNAPSHOT_BYTES;
        if !fits {
            tracing::warn!(
                notebook,
                bytes = snapshot.state.len(),
                "a snapshot is too large to send; the client folds the log"
            );
        }
        fits
    }))
}

/// Folds `store` from `stored` (or from the start) up to `head`.
async fn fold_from(
    store: &dyn Store,
    stored: Option<Snapshot>,
    kind: SnapshotKind,
    head: u64,
) -> Result<Snapshot, StoreError> {
    let usable = stored.and_then(|snapshot| {
        NotebookState::from_snapshot(&snapshot, kind)
            .map_err(|error| tracing::warn!(%error, "the stored snapshot is unusable"))
            .ok()
    });
    let mut state = usable.unwrap_or_else(|| match kind {
        SnapshotKind::Lean => NotebookState::lean(),
        SnapshotKind::Full => NotebookState::new(),
    });
    let mut log = store.subscribe(state.last_seq() + 1);
    while state.last_seq() < head {
        let entry = log.next().await.ok_or(StoreError::Closed)??;
        state.apply_entry(&entry);
    }
    Ok(state.snapshot())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stored snapshot in another format (an older version's) is never sent: the hub
    /// folds a new one from the log when the notebook is long, and sends none otherwise.
    #[test]
    fn a_snapshot_in_another_format_is_replaced_not_sent() {
        futures::executor::block_on(async {
            let store = runtime_core::MemoryStore::new();
            let gone = |n: u64| runtime_core::CellDeleted {
                cell_id: format!("gone-{n}").into(),
            };
            let events = (0..SNAPSHOT_EVERY + 10).map(|n| gone(n).into()).collect();
            store.commit_now(events).unwrap();
            let old = Snapshot {
                seq: 20,
                kind: SnapshotKind::Lean,
                state: r#"{"format":2,"lean":true}"#.into(),
            };
            store.save_snapshot(&old).await.unwrap();
            let making = Making::default();
            let sent = latest(&store, "nb", SnapshotKind::Lean, &making)
                .await
                .unwrap();
            let sent = sent.expect("a new snapshot");
            assert_eq!(sent.seq, SNAPSHOT_EVERY + 10);
            NotebookState::from_snapshot(&sent, SnapshotKind::Lean).expect("usable");
            let kept = store.latest_snapshot(SnapshotKind::Lean).await.unwrap();
            assert_eq!(kept, Some(sent), "and kept");

            let short = runtime_core::MemoryStore::new();
            short.commit_now(vec![gone(0).into(); 30]).unwrap();
            short.save_snapshot(&old).await.unwrap();
            let sent = latest(&short, "nb", SnapshotKind::Lean, &making)
                .await
                .unwrap();
            assert_eq!(sent, None, "a short notebook is folded from the start");
        });
    }

    /// Two clients join one notebook at once: the second does not make the snapshot again,
    /// does not deadlock (it once did: the hub froze), and does not unmark the first's.
    #[test]
    fn a_second_maker_of_one_snapshot_steps_aside_without_deadlock() {
        let (done, finished) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let making = Making::default();
            let first = making.start("nb", SnapshotKind::Lean);
            assert!(first.is_some());
            assert!(making.start("nb", SnapshotKind::Lean).is_none());
            assert!(
                making.start("nb", SnapshotKind::Lean).is_none(),
                "still marked as being made"
            );
            assert!(making.start("nb", SnapshotKind::Full).is_some());
            drop(first);
            assert!(making.start("nb", SnapshotKind::Lean).is_some());
            done.send(()).unwrap();
        });
        finished
            .recv_timeout(std::time::Duration::from_secs(30))
            .expect("the makers finish: no deadlock");
    }
}
