//! SqliteStore: the store conformance suite every store passes, plus what only a durable,
//! shared file has.
#![allow(clippy::unwrap_used)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures::StreamExt;
use runtime_core::{CellDeleted, Event, Store, StoreError};
use runtime_native::{SqliteError, SqliteOptions, SqliteStore};

fn event(n: usize) -> Event {
    CellDeleted {
        cell_id: format!("cell-{n}").into(),
    }
    .into()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_store_passes_the_store_conformance_suite() {
    let dir = tempfile::tempdir().unwrap();
    let count = AtomicUsize::new(0);
    let make = || {
        let n = count.fetch_add(1, Ordering::SeqCst);
        SqliteStore::open(dir.path().join(format!("store-{n}.db")), "notebook").unwrap()
    };
    runtime_core::store::conformance::run_all(make).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_through_one_open_reaches_a_subscriber_of_another() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shared.db");
    // Two independent opens: separate connections and file watches, as two processes have.
    let reader_side = SqliteStore::open(&path, "nb").unwrap();
    let writer_side = SqliteStore::open(&path, "nb").unwrap();
    let mut subscription = reader_side.subscribe(1);
    for n in 0..20 {
        writer_side.commit(vec![event(n)]).await.unwrap();
        // A bound so a broken wake-up fails the test instead of hanging it.
        let entry = tokio::time::timeout(Duration::from_secs(5), subscription.next())
            .await
            .expect("the other open's commit arrives")
            .unwrap()
            .unwrap();
        assert_eq!(entry.seq, n as u64 + 1);
        assert_eq!(*entry.event, event(n));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_file_holds_many_notebooks_each_with_its_own_log() {
    let dir = tempfile::tempdir().unwrap();
    let first = SqliteStore::open(dir.path().join("many.db"), "first").unwrap();
    let second = first.notebook("second");
    assert_eq!(first.commit(vec![event(1), event(2)]).await.unwrap(), 1);
    assert_eq!(
        second.commit(vec![event(3)]).await.unwrap(),
        1,
        "sequence numbers are per notebook"
    );
    assert_eq!(first.commit(vec![event(4)]).await.unwrap(), 3);
    let seen: Vec<Event> = second
        .subscribe(1)
        .take(1)
        .map(|e| (*e.unwrap().event).clone())
        .collect()
        .await;
    assert_eq!(seen, [event(3)]);
    assert_eq!(
        first.notebooks().unwrap(),
        [("first".to_owned(), 3), ("second".to_owned(), 1)]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_survive_reopening_and_malformed_rows_are_kept_not_fatal() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("reopen.db");
    {
        let store = SqliteStore::open(&path, "nb").unwrap();
        store.commit(vec![event(1)]).await.unwrap();
    }
    let raw = rusqlite::Connection::open(&path).unwrap();
    raw.execute(
        "INSERT INTO events (notebook, seq, event) VALUES ('nb', 2, '{not json')",
        [],
    )
    .unwrap();
    drop(raw);
    let store = SqliteStore::open(&path, "nb").unwrap();
    let entries: Vec<_> = store
        .subscribe(1)
        .take(2)
        .map(|e| e.unwrap())
        .collect()
        .await;
    assert_eq!(*entries[0].event, event(1));
    assert!(matches!(&*entries[1].event, Event::Malformed(_)));
    assert_eq!(store.commit(vec![event(3)]).await.unwrap(), 3);
}

#[test]
fn a_file_that_is_not_ours_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let text = dir.path().join("notes.txt");
    let notes = "these are my notes, not a database, and they are long enough";
    std::fs::write(&text, notes).unwrap();
    let error = SqliteStore::open(&text, "nb").err().unwrap();
    assert!(matches!(error, SqliteError::NotOurs { .. }), "{error}");
    assert!(error.to_string().contains("is not a runtime-agents store"));
    assert_eq!(
        std::fs::read_to_string(&text).unwrap(),
        notes,
        "left untouched"
    );

    let other = dir.path().join("other.db");
    rusqlite::Connection::open(&other)
        .unwrap()
        .execute("CREATE TABLE accounts (id INTEGER)", [])
        .unwrap();
    let error = SqliteStore::open(&other, "nb").err().unwrap();
    assert!(matches!(error, SqliteError::NotOurs { .. }), "{error}");
}

#[test]
fn a_newer_schema_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("future.db");
    drop(SqliteStore::open(&path, "nb").unwrap());
    rusqlite::Connection::open(&path)
        .unwrap()
        .pragma_update(None, "user_version", 99)
        .unwrap();
    let error = SqliteStore::open(&path, "nb").err().unwrap();
    assert!(
        matches!(
            error,
            SqliteError::NewerSchema {
                found: 99,
                supported: 1,
                ..
            }
        ),
        "{error}"
    );
    assert!(error.to_string().contains("upgrade"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_locked_file_is_retried_then_reported() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("locked.db");
    let options = SqliteOptions {
        busy_timeout: Duration::from_millis(200),
        ..SqliteOptions::default()
    };
    let store = SqliteStore::open_with(&path, "nb", options).unwrap();
    let holder = rusqlite::Connection::open(&path).unwrap();
    holder.execute_batch("BEGIN EXCLUSIVE").unwrap();
    let started = std::time::Instant::now();
    let error = store.commit(vec![event(1)]).await.unwrap_err();
    assert!(
        started.elapsed() >= Duration::from_millis(150),
        "it waited before giving up"
    );
    assert!(
        matches!(&error, StoreError::Backend(message) if message.contains("locked")),
        "{error}"
    );
    holder.execute_batch("COMMIT").unwrap();
    assert_eq!(
        store.commit(vec![event(1)]).await.unwrap(),
        1,
        "works once the lock is gone"
    );
}

#[test]
fn processes_creating_one_new_file_at_once_all_succeed() {
    for round in 0..20 {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("new.db");
        let opens: Vec<_> = (0..4)
            .map(|_| {
                let path = path.clone();
                std::thread::spawn(move || SqliteStore::open(&path, "nb").map(drop))
            })
            .collect();
        for open in opens {
            let opened = open.join().unwrap();
            assert!(opened.is_ok(), "round {round}: {}", opened.unwrap_err());
        }
    }
}
