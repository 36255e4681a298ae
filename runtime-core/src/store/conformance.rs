//! The test suite every [`Store`] must pass, so all backends keep the same contract.
//!
//! Call [`run_all`] with a function that makes a fresh, empty store; it panics with a
//! message naming the broken rule. It needs no particular executor.
//!
//! ```
//! futures::executor::block_on(runtime_core::store::conformance::run_all(
//!     runtime_core::MemoryStore::new,
//! ));
//! ```
#![allow(clippy::unwrap_used, clippy::missing_panics_doc)]

use futures::{StreamExt, future};

use super::{Batch, Stamp, Store, StoreError};
use crate::clock::Timestamp;
use crate::schema::{CellDeleted, Event, UnknownEvent};
use crate::state::{Seq, Snapshot, SnapshotKind};

fn event(n: usize) -> Event {
    CellDeleted {
        cell_id: format!("cell-{n}").into(),
    }
    .into()
}

async fn read<S: Store + ?Sized>(store: &S, from: Seq, count: usize) -> Vec<(Seq, Event)> {
    store
        .subscribe(from)
        .take(count)
        .map(|entry| {
            let entry = entry.expect("subscription yields entries, not errors");
            (entry.seq, (*entry.event).clone())
        })
        .collect()
        .await
}

/// Runs every conformance check, each on a fresh store from `make`.
pub async fn run_all<S: Store, F: Fn() -> S>(make: F) {
    commits_get_contiguous_sequence_numbers(&make()).await;
    subscribe_replays_from_any_point_in_order(&make()).await;
    subscribers_see_live_commits(&make()).await;
    a_slow_reader_loses_nothing(&make()).await;
    concurrent_commits_are_totally_ordered_for_every_reader(&make()).await;
    events_round_trip_unchanged(&make()).await;
    empty_batches_are_refused(&make()).await;
    a_retried_batch_lands_once(&make()).await;
    racing_retries_of_one_batch_land_once(&make()).await;
    head_is_the_last_sequence_number(&make()).await;
    every_event_of_a_batch_carries_its_stamp(&make()).await;
    the_latest_snapshot_is_kept(&make()).await;
}

/// A store that keeps snapshots keeps the latest of each kind as it was given, never goes
/// back to an older one, and refuses one past the head. (A store that keeps none returns
/// none.) [`Store::keeps_snapshots`] tells the truth either way.
pub async fn the_latest_snapshot_is_kept<S: Store>(store: &S) {
    store
        .commit(vec![event(1), event(2), event(3)])
        .await
        .unwrap();
    let at = |seq: Seq| Snapshot {
        seq,
        kind: SnapshotKind::Lean,
        state: format!("{{\"opaque\": {seq}}}").into(),
    };
    store.save_snapshot(&at(2)).await.unwrap();
    let Some(kept) = store.latest_snapshot(SnapshotKind::Lean).await.unwrap() else {
        assert!(
            !store.keeps_snapshots(),
            "a store that says it keeps snapshots kept none"
        );
        return; // a store without snapshots
    };
    assert!(
        store.keeps_snapshots(),
        "a store that keeps snapshots says so, or no reader gives it one"
    );
    assert_eq!(kept, at(2), "the snapshot is kept as it was given");
    store.save_snapshot(&at(1)).await.unwrap();
    let latest = store.latest_snapshot(SnapshotKind::Lean).await.unwrap();
    assert_eq!(
        latest,
        Some(at(2)),
        "an older snapshot does not replace a newer one"
    );
    store.save_snapshot(&at(3)).await.unwrap();
    let latest = store.latest_snapshot(SnapshotKind::Lean).await.unwrap();
    assert_eq!(latest, Some(at(3)), "a newer one does");
    let full = store.latest_snapshot(SnapshotKind::Full).await.unwrap();
    assert_eq!(full, None, "kinds are kept apart");
    let past_head = store.save_snapshot(&at(4)).await;
    assert!(
        matches!(past_head, Err(StoreError::Invalid(_))),
        "a snapshot past the head is refused: {past_head:?}"
    );
    let latest = store.latest_snapshot(SnapshotKind::Lean).await.unwrap();
    assert_eq!(latest, Some(at(3)));
}

/// Every event of a batch carries the same stamp (or none, in a store that does not
/// stamp), and reading again gives the same stamps.
pub async fn every_event_of_a_batch_carries_its_stamp<S: Store>(store: &S) {
    store
        .commit(vec![event(1), event(2), event(3)])
        .await
        .unwrap();
    store.commit(vec![event(4), event(5)]).await.unwrap();
    let stamps = |from: Seq, count: usize| {
        store.subscribe(from).take(count).map(|entry| {
            let entry = entry.expect("subscription yields entries, not errors");
            (entry.seq, entry.stamp)
        })
    };
    let all: Vec<_> = stamps(1, 5).collect().await;
    assert_eq!(all[0].1, all[1].1, "one batch, one stamp");
    assert_eq!(all[0].1, all[2].1, "one batch, one stamp");
    assert_eq!(all[3].1, all[4].1, "one batch, one stamp");
    let again: Vec<_> = stamps(2, 4).collect().await;
    assert_eq!(
        again,
        all[1..],
        "a stamp reads the same every time, from any point"
    );
}

/// A batch committed with a stamp (by a hub, for the client it authenticated) is read back
/// with that stamp, not the store's own. Every store a hub serves from must pass this.
pub async fn a_batch_stamp_is_kept<S: Store>(store: &S) {
    let stamp = Stamp::new(Timestamp(1_234_567), "alice@hub");
    let batch = Batch::new(vec![event(1), event(2)]).stamped(stamp.clone());
    store.commit_batch(&batch).await.unwrap();
    let read: Vec<_> = store
        .subscribe(1)
        .take(2)
        .map(|entry| entry.unwrap().stamp)
        .collect()
        .await;
    assert_eq!(
        read,
        [Some(stamp.clone()), Some(stamp)],
        "the batch's stamp is kept"
    );
}

/// A batch committed with a stamp is read back with its author, the identity a hub
/// authenticated. A store that is itself the clock of record (a database several hubs
/// share, which stamps every entry with its own time so no two hubs' clocks are compared)
/// passes this instead of [`a_batch_stamp_is_kept`].
pub async fn a_batch_author_is_kept<S: Store>(store: &S) {
    let stamp = Stamp::new(Timestamp(1_234_567), "alice@hub");
    let batch = Batch::new(vec![event(1), event(2)]).stamped(stamp);
    store.commit_batch(&batch).await.unwrap();
    let authors: Vec<_> = store
        .subscribe(1)
        .take(2)
        .map(|entry| entry.unwrap().stamp.map(|stamp| stamp.author))
        .collect()
        .await;
    assert_eq!(
        authors,
        [Some("alice@hub".into()), Some("alice@hub".into())],
        "the batch's author is kept"
    );
}

/// `head` is 0 for an empty notebook, then the sequence number of the last event.
pub async fn head_is_the_last_sequence_number<S: Store>(store: &S) {
    assert_eq!(store.head().await, Ok(0), "an empty notebook's head is 0");
    store.commit(vec![event(1), event(2)]).await.unwrap();
    store.commit(vec![event(3)]).await.unwrap();
    assert_eq!(
        store.head().await,
        Ok(3),
        "the head is the last event's sequence number"
    );
}

/// A batch committed again (a retry after an error that hid its success) is not appended
/// twice: the store returns the sequence number it got the first time.
pub async fn a_retried_batch_lands_once<S: Store>(store: &S) {
    let first = Batch::new(vec![event(0), event(1)]);
    assert_eq!(store.commit_batch(&first).await.unwrap(), 1);
    store.commit(vec![event(2)]).await.unwrap();
    assert_eq!(
        store.commit_batch(&first).await.unwrap(),
        1,
        "a retry returns the original sequence number"
    );
    let other = Batch::new(vec![event(0), event(1)]);
    assert_eq!(
        store.commit_batch(&other).await.unwrap(),
        4,
        "equal events under another id are another batch"
    );
    store.commit(vec![event(9)]).await.unwrap();
    let seqs: Vec<Seq> = read(store, 1, 6)
        .await
        .iter()
        .map(|(seq, _)| *seq)
        .collect();
    assert_eq!(seqs, (1..=6).collect::<Vec<_>>(), "nothing landed twice");
    let all = read(store, 1, 6).await;
    assert_eq!(all[5].1, event(9), "the log holds each batch once");
}

/// Retries of one batch racing each other land once, and all get its sequence number.
pub async fn racing_retries_of_one_batch_land_once<S: Store>(store: &S) {
    let batch = Batch::new(vec![event(0), event(1), event(2)]);
    let seqs = future::join_all((0..4).map(|_| store.commit_batch(&batch))).await;
    for seq in seqs {
        assert_eq!(seq.unwrap(), 1);
    }
    assert_eq!(store.commit(vec![event(3)]).await.unwrap(), 4);
}

/// Batches get consecutive sequence numbers starting at 1.
pub async fn commits_get_contiguous_sequence_numbers<S: Store>(store: &S) {
    assert_eq!(
        store.commit(vec![event(0)]).await.unwrap(),
        1,
        "the first event is seq 1"
    );
    let batch = vec![event(1), event(2), event(3)];
    assert_eq!(
        store.commit(batch).await.unwrap(),
        2,
        "a batch returns its first seq"
    );
    assert_eq!(
        store.commit(vec![event(4)]).await.unwrap(),
        5,
        "no gaps after a batch"
    );
}

/// `subscribe(from)` starts exactly at `from` and keeps commit order.
pub async fn subscribe_replays_from_any_point_in_order<S: Store>(store: &S) {
    store.commit((0..10).map(event).collect()).await.unwrap();
    let all = read(store, 1, 10).await;
    assert_eq!(
        all.iter().map(|(seq, _)| *seq).collect::<Vec<_>>(),
        (1..=10).collect::<Vec<_>>()
    );
    assert_eq!(
        all.iter().map(|(_, e)| e.clone()).collect::<Vec<_>>(),
        (0..10).map(event).collect::<Vec<_>>()
    );
    let tail = read(store, 7, 4).await;
    assert_eq!(
        tail.first().map(|(seq, _)| *seq),
        Some(7),
        "starts at `from`"
    );
    assert_eq!(tail.len(), 4, "then continues with live events");
    let from_zero = read(store, 0, 1).await;
    assert_eq!(from_zero[0].0, 1, "from 0 means from the start");
}

/// A caught-up reader gets events committed after it subscribed.
pub async fn subscribers_see_live_commits<S: Store>(store: &S) {
    let readers = future::join_all((0..3).map(|_| read(store, 1, 6)));
    let writer = async {
        for n in 0..3 {
            store
                .commit(vec![event(2 * n), event(2 * n + 1)])
                .await
                .unwrap();
        }
    };
    let (seen, ()) = future::join(readers, writer).await;
    for reader in seen {
        let seqs: Vec<Seq> = reader.iter().map(|(seq, _)| *seq).collect();
        assert_eq!(
            seqs,
            (1..=6).collect::<Vec<_>>(),
            "every reader sees every event in order"
        );
    }
}

/// A reader that subscribes and then does not read while much is committed loses nothing.
pub async fn a_slow_reader_loses_nothing<S: Store>(store: &S) {
    let mut slow = store.subscribe(1);
    for chunk in 0..20 {
        store
            .commit((0..500).map(|n| event(chunk * 500 + n)).collect())
            .await
            .unwrap();
    }
    for expected in 1..=10_000 {
        let entry = slow.next().await.expect("not ended").expect("no error");
        assert_eq!(
            entry.seq, expected,
            "a slow reader gets every event, in order"
        );
    }
}

/// Commits racing from several writers end in one order that every reader sees.
pub async fn concurrent_commits_are_totally_ordered_for_every_reader<S: Store>(store: &S) {
    let writers = (0..4).map(|writer| async move {
        for n in 0..25 {
            let batch = vec![
                event(writer * 1_000 + n * 2),
                event(writer * 1_000 + n * 2 + 1),
            ];
            let first = store.commit(batch).await.unwrap();
            assert!(first >= 1);
        }
    });
    future::join_all(writers).await;
    let (a, b) = future::join(read(store, 1, 200), read(store, 1, 200)).await;
    assert_eq!(a, b, "two readers see the same order");
    for pair in a.chunks(2) {
        let (Event::CellDeleted(x), Event::CellDeleted(y)) = (&pair[0].1, &pair[1].1) else {
            panic!("unexpected event");
        };
        let n = |id: &str| id.trim_start_matches("cell-").parse::<usize>().unwrap();
        assert_eq!(
            n(y.cell_id.as_str()),
            n(x.cell_id.as_str()) + 1,
            "batches are not interleaved"
        );
    }
}

/// Events come back exactly as committed, unknown ones included.
pub async fn events_round_trip_unchanged<S: Store>(store: &S) {
    let unknown = Event::Unknown(UnknownEvent {
        raw: serde_json::json!({"type": "v9.Later", "nested": {"a": [1, "b"]}}),
    });
    let sent = vec![event(1), unknown];
    store.commit(sent.clone()).await.unwrap();
    let got: Vec<Event> = read(store, 1, 2)
        .await
        .into_iter()
        .map(|(_, e)| e)
        .collect();
    assert_eq!(got, sent);
}

/// An empty batch is an error, not a silent no-op.
pub async fn empty_batches_are_refused<S: Store>(store: &S) {
    assert_eq!(store.commit(Vec::new()).await, Err(StoreError::EmptyBatch));
}

/// A catalog lists every notebook that has events, with its head, and opens each one to
/// the same log; an id it cannot hold is refused, not truncated.
pub async fn catalog_lists_and_opens_notebooks<C: crate::Catalog + ?Sized>(catalog: &C) {
    let first = catalog.open("conformance-a").unwrap();
    let second = catalog.open("conformance-b").unwrap();
    first.commit(vec![event(1), event(2)]).await.unwrap();
    second.commit(vec![event(3)]).await.unwrap();
    let listed: Vec<(String, Seq)> = catalog
        .notebooks()
        .await
        .unwrap()
        .into_iter()
        .filter(|info| info.id.starts_with("conformance-"))
        .map(|info| (info.id, info.head))
        .collect();
    assert_eq!(
        listed,
        [
            ("conformance-a".to_owned(), 2),
            ("conformance-b".to_owned(), 1)
        ],
        "the catalog lists each notebook with its head"
    );
    // Its last activity is its last entry's stamp time, where entries are stamped.
    let last = first.subscribe(2).next().await.unwrap().unwrap();
    let info = catalog.notebooks().await.unwrap();
    let info = info.iter().find(|info| info.id == "conformance-a").unwrap();
    assert_eq!(
        info.last_activity,
        last.stamp.map(|stamp| stamp.at),
        "the last activity is the last entry's stamp"
    );
    let again = catalog.open("conformance-a").unwrap();
    assert_eq!(
        read(&*again, 1, 2).await.len(),
        2,
        "opened again, the same log"
    );
    // Its title is the one its log leaves: the last title change, none if empty.
    let title = |text: &str| -> Event {
        crate::NotebookTitleChanged {
            title: text.to_owned(),
        }
        .into()
    };
    let titles = || async {
        let listed = catalog.notebooks().await.unwrap();
        let of = |id: &str| {
            listed
                .iter()
                .find(|info| info.id == id)
                .and_then(|info| info.title.clone())
        };
        (of("conformance-a"), of("conformance-b"))
    };
    assert_eq!(titles().await, (None, None), "untitled at first");
    first
        .commit(vec![title("Draft"), event(4), title("Weekly report")])
        .await
        .unwrap();
    let retried = crate::Batch::new(vec![title("Renamed")]);
    first.commit_batch(&retried).await.unwrap();
    first.commit(vec![title("")]).await.unwrap();
    first.commit_batch(&retried).await.unwrap(); // a retry changes nothing
    second
        .commit(vec![title("Budget \"2027\" ünïcödé")])
        .await
        .unwrap();
    assert_eq!(
        titles().await,
        (None, Some("Budget \"2027\" ünïcödé".to_owned())),
        "an empty title leaves a notebook untitled; a retried batch is not applied again"
    );
    first.commit(vec![title("Weekly report")]).await.unwrap();
    assert_eq!(titles().await.0.as_deref(), Some("Weekly report"));
    // The runtime it asks for is the one its log leaves: the last request, none if
    // withdrawn.
    let request = |runtime_type: &str, repository: Option<&str>| crate::NotebookRuntimeRequested {
        runtime_type: runtime_type.to_owned(),
        worktree: repository.map(|repository| crate::WorktreeRequest {
            repository: repository.to_owned(),
            branch: Some("main".into()),
        }),
    };
    let requests = || async {
        let listed = catalog.notebooks().await.unwrap();
        let of = |id: &str| {
            listed
                .iter()
                .find(|info| info.id == id)
                .and_then(|info| info.runtime.clone())
        };
        (of("conformance-a"), of("conformance-b"))
    };
    assert_eq!(
        requests().await,
        (None, None),
        "no runtime asked for at first"
    );
    first
        .commit(vec![
            request("codex", None).into(),
            title("Agent work"),
            request("codex", Some("/src/app")).into(),
        ])
        .await
        .unwrap();
    second
        .commit(vec![request("shell", None).into()])
        .await
        .unwrap();
    assert_eq!(
        requests().await,
        (
            Some(request("codex", Some("/src/app"))),
            Some(request("shell", None))
        ),
        "the last request of a batch is the one listed, with its worktree"
    );
    second.commit(vec![request("", None).into()]).await.unwrap();
    assert_eq!(
        requests().await,
        (Some(request("codex", Some("/src/app"))), None),
        "an empty runtime type withdraws the request"
    );
    assert_eq!(titles().await.0.as_deref(), Some("Agent work"));
    for bad in ["", "a\nb", &"x".repeat(crate::store::MAX_NOTEBOOK_ID + 1)] {
        assert!(
            matches!(catalog.open(bad), Err(StoreError::Invalid(_))),
            "the notebook id {bad:?} is refused"
        );
    }
}

/// Every check of a catalog, in turn, on one catalog.
pub async fn run_catalog<C: crate::Catalog + ?Sized>(catalog: &C) {
    catalog_lists_and_opens_notebooks(catalog).await;
    catalog_creates_notebooks(catalog).await;
}

/// A catalog creates a notebook with its title (or untitled, with a new id), answers a
/// creation sent again as done, and refuses an id whose log holds anything else.
pub async fn catalog_creates_notebooks<C: crate::Catalog + ?Sized>(catalog: &C) {
    let listed = |id: String| async move {
        catalog
            .notebooks()
            .await
            .unwrap()
            .into_iter()
            .find(|info| info.id == id)
    };
    let id = catalog
        .create(Some("conformance-created"), "Plan")
        .await
        .unwrap();
    assert_eq!(id, "conformance-created");
    let info = listed(id.clone())
        .await
        .expect("a created notebook is listed");
    assert_eq!((info.title.as_deref(), info.head), (Some("Plan"), 1));
    assert_eq!(
        catalog
            .create(Some("conformance-created"), "Plan")
            .await
            .unwrap(),
        id,
        "a creation sent again is done"
    );
    assert_eq!(listed(id.clone()).await.unwrap().head, 1, "and lands once");
    let taken = catalog.create(Some("conformance-created"), "Other").await;
    assert!(matches!(taken, Err(StoreError::Invalid(_))), "{taken:?}");
    catalog
        .open("conformance-busy")
        .unwrap()
        .commit(vec![event(1)])
        .await
        .unwrap();
    let busy = catalog.create(Some("conformance-busy"), "Plan").await;
    assert!(matches!(busy, Err(StoreError::Invalid(_))), "{busy:?}");

    let fresh = catalog.create(None, "").await.unwrap();
    let info = listed(fresh.clone()).await.expect("listed");
    assert_eq!((info.title, info.head), (None, 1), "untitled");
    assert_ne!(
        catalog.create(None, "").await.unwrap(),
        fresh,
        "a new id each time"
    );
    for bad in ["", "a\nb"] {
        let refused = catalog.create(Some(bad), "x").await;
        assert!(
            matches!(refused, Err(StoreError::Invalid(_))),
            "{refused:?}"
        );
    }
}
