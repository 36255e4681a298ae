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
    runtime_core::store::conformance::run_all(&make).await;
    runtime_core::store::conformance::a_batch_stamp_is_kept(&make()).await;
    let catalog = SqliteStore::open(dir.path().join("catalog.db"), "default").unwrap();
    runtime_core::store::conformance::run_catalog(&catalog).await;
}

/// A commit through one open wakes a subscriber waiting in another (as in another
/// process), through the notebook's signal file; a commit to another notebook of the file
/// does not, and the subscriber sees its own notebook only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_through_one_open_reaches_a_subscriber_of_another() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shared.db");
    // Two independent opens: separate connections and file watches, as two processes have.
    // The reader's safety re-read is an hour, so only the wake-up can bring each commit.
    let options = SqliteOptions {
        safety_poll: Duration::from_secs(3600),
        ..SqliteOptions::default()
    };
    let reader_side = SqliteStore::open_with(&path, "nb", options).unwrap();
    let writer_side = SqliteStore::open(&path, "nb").unwrap();
    let elsewhere = writer_side.notebook("another notebook/with any name");
    // The reader runs on its own, so it is waiting, not reading, when the next commit
    // lands (the pause makes that near certain; it is not needed for the test to pass).
    let (delivered, mut arrived) = tokio::sync::mpsc::unbounded_channel();
    let mut subscription = reader_side.subscribe(1);
    tokio::spawn(async move {
        while let Some(entry) = subscription.next().await {
            if delivered.send(entry).is_err() {
                return;
            }
        }
    });
    for n in 0..20 {
        tokio::time::sleep(Duration::from_millis(20)).await;
        elsewhere.commit(vec![event(100 + n)]).await.unwrap();
        writer_side.commit(vec![event(n)]).await.unwrap();
        // A bound so a broken wake-up fails the test instead of hanging it.
        let entry = tokio::time::timeout(Duration::from_secs(5), arrived.recv())
            .await
            .expect("the other open's commit arrives")
            .unwrap()
            .unwrap();
        assert_eq!(entry.seq, n as u64 + 1);
        assert_eq!(*entry.event, event(n));
    }
}

/// Subscribing to notebooks while another open's commits keep this open's watch busy: adding
/// a watch waits for the watcher's thread, which must never be waiting for the subscriber
/// (it once could: a lock held across the two froze both).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribing_while_signals_arrive_never_freezes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("busy.db");
    let reader_side = SqliteStore::open(&path, "nb0").unwrap();
    let writer_side = SqliteStore::open(&path, "nb0").unwrap();
    let _watching = reader_side.subscribe(1);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let committing = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                writer_side.commit(vec![event(n)]).await.unwrap();
                n += 1;
            }
            n
        })
    };
    // A thread of its own, so a freeze fails the test rather than hanging it.
    let (done, subscribing) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut subscriptions = Vec::new();
        for n in 1..300 {
            subscriptions.push(reader_side.notebook(&format!("nb{n}")).subscribe(1));
        }
        let _ = done.send(subscriptions.len());
    });
    let subscribed =
        tokio::task::spawn_blocking(move || subscribing.recv_timeout(Duration::from_secs(60)))
            .await
            .unwrap()
            .expect("subscribing finishes: nothing froze");
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    assert_eq!(subscribed, 299);
    assert!(committing.await.unwrap() > 0);
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
    let listed: Vec<(String, u64)> = first
        .notebooks()
        .unwrap()
        .into_iter()
        .map(|info| (info.id, info.head))
        .collect();
    assert_eq!(listed, [("first".to_owned(), 3), ("second".to_owned(), 1)]);
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
                supported: runtime_native::sqlite::SCHEMA_VERSION,
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
        matches!(&error, StoreError::Unavailable(message) if message.contains("locked")),
        "{error}"
    );
    assert!(error.is_retriable());
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

/// Inserts a raw row as another program (or a bug, or a damaged disk) might.
fn insert_raw(path: &std::path::Path, seq: i64, value: rusqlite::types::Value) {
    let raw = rusqlite::Connection::open(path).unwrap();
    raw.execute(
        "INSERT INTO events (notebook, seq, event) VALUES ('nb', ?1, ?2)",
        rusqlite::params![seq, value],
    )
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_that_are_not_utf8_text_read_as_malformed_events_and_readers_go_on() {
    use rusqlite::types::Value;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bytes.db");
    let store = SqliteStore::open(&path, "nb").unwrap();
    let mut live = store.subscribe(1);
    store.commit(vec![event(1)]).await.unwrap();
    insert_raw(&path, 2, Value::Blob(vec![0xff]));
    insert_raw(&path, 3, Value::Text(String::new()));
    {
        // Text that is not UTF-8, as another program can write it.
        let raw = rusqlite::Connection::open(&path).unwrap();
        raw.execute(
            "INSERT INTO events (notebook, seq, event) VALUES ('nb', 4, CAST(X'C328' AS TEXT))",
            [],
        )
        .unwrap();
    }
    insert_raw(&path, 5, Value::Integer(7));
    assert_eq!(store.commit(vec![event(6)]).await.unwrap(), 6);
    for (expected, reason) in [
        (2, "BLOB"),
        (3, "EOF"),
        (4, "not UTF-8"),
        (5, "JSON object"), // TEXT affinity stored the number as text
    ] {
        let entry = if expected == 2 {
            live.next().await.unwrap().unwrap(); // event 1
            live.next().await.unwrap().unwrap()
        } else {
            live.next().await.unwrap().unwrap()
        };
        assert_eq!(entry.seq, expected);
        let Event::Malformed(malformed) = &*entry.event else {
            panic!("seq {expected}: {:?}", entry.event)
        };
        assert!(malformed.error.contains(reason), "{}", malformed.error);
    }
    let last = live.next().await.unwrap().unwrap();
    assert_eq!((last.seq, (*last.event).clone()), (6, event(6)));
    // A fresh reader folds the whole log, skipping and counting the bad rows.
    let mut state = runtime_core::NotebookState::new();
    let mut fresh = store.subscribe(1);
    for _ in 0..6 {
        let entry = fresh.next().await.unwrap().unwrap();
        state.apply(entry.seq, &entry.event);
    }
    assert_eq!(state.stats().ignored(runtime_core::Ignored::Malformed), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gap_in_the_log_is_refused_with_a_repair_and_repair_lets_readers_go_on() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gap.db");
    let store = SqliteStore::open(&path, "nb").unwrap();
    store.commit((1..=5).map(event).collect()).await.unwrap();
    store
        .notebook("other")
        .commit(vec![event(1)])
        .await
        .unwrap();
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute(
            "DELETE FROM events WHERE notebook = 'nb' AND seq IN (2, 3)",
            [],
        )
        .unwrap();
    let mut reader = store.subscribe(1);
    assert_eq!(reader.next().await.unwrap().unwrap().seq, 1);
    let error = reader.next().await.unwrap().unwrap_err();
    assert!(
        !error.is_retriable(),
        "a broken log does not heal by waiting"
    );
    let message = error.to_string();
    assert!(message.contains("event 2 is missing"), "{message}");
    assert!(message.contains("notebook repair --store"), "{message}");

    assert_eq!(store.repair().unwrap(), 2);
    assert_eq!(store.repair().unwrap(), 0, "nothing left to repair");
    let seqs: Vec<u64> = store
        .subscribe(1)
        .take(5)
        .map(|e| e.unwrap().seq)
        .collect()
        .await;
    assert_eq!(seqs, [1, 2, 3, 4, 5]);
    let filler = store.subscribe(2).next().await.unwrap().unwrap();
    assert!(
        matches!(&*filler.event, Event::Unknown(u) if u.type_name() == runtime_native::GAP_FILLER_TYPE)
    );
    assert_eq!(store.commit(vec![event(6)]).await.unwrap(), 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_1_file_is_upgraded_and_keeps_its_events() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v1.db");
    {
        let raw = rusqlite::Connection::open(&path).unwrap();
        raw.execute_batch(
            "CREATE TABLE events (notebook TEXT NOT NULL, seq INTEGER NOT NULL, \
                 event TEXT NOT NULL, PRIMARY KEY (notebook, seq)) WITHOUT ROWID;
             PRAGMA application_id = 1381253479;
             PRAGMA user_version = 1;",
        )
        .unwrap();
        raw.execute(
            "INSERT INTO events VALUES ('nb', 1, ?1)",
            [event(1).to_json_string()],
        )
        .unwrap();
    }
    {
        // A title a newer writer left, as it lies in an old file: upgrading finds it.
        let raw = rusqlite::Connection::open(&path).unwrap();
        for (seq, title) in [(2, "Old title"), (3, "Kept title")] {
            raw.execute(
                "INSERT INTO events VALUES ('titled', ?1, ?2)",
                rusqlite::params![
                    seq,
                    format!(r#"{{"type": "v1.NotebookTitleChanged", "title": "{title}"}}"#)
                ],
            )
            .unwrap();
        }
        raw.execute(
            "INSERT INTO events VALUES ('titled', 1, 'not json at all')",
            [],
        )
        .unwrap();
    }
    let store = SqliteStore::open(&path, "nb").unwrap();
    let titled = store.notebooks().unwrap();
    let titled = titled.iter().find(|info| info.id == "titled").unwrap();
    assert_eq!(titled.title.as_deref(), Some("Kept title"));
    let batch = runtime_core::Batch::new(vec![event(2)]);
    assert_eq!(store.commit_batch(&batch).await.unwrap(), 2);
    assert_eq!(store.commit_batch(&batch).await.unwrap(), 2, "deduplicated");
    let entries: Vec<_> = store
        .subscribe(1)
        .take(2)
        .map(|e| e.unwrap())
        .collect()
        .await;
    assert_eq!(*entries[0].event, event(1));
    assert_eq!(*entries[1].event, event(2));
    assert_eq!(entries[0].stamp, None, "a row from before stamps has none");
    let stamp = entries[1].stamp.as_ref().expect("a new row is stamped");
    assert_eq!(&*stamp.author, runtime_native::DEFAULT_AUTHOR);
    assert_eq!(store.head().unwrap(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commits_are_stamped_with_the_clock_and_the_configured_author() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("stamps.db"), "nb")
        .unwrap()
        .stamping_as("build-runner");
    let before = runtime_core::Clock::now(&runtime_native::TokioClock);
    store.commit(vec![event(1)]).await.unwrap();
    let after = runtime_core::Clock::now(&runtime_native::TokioClock);
    let other = store.notebook("other");
    other.commit(vec![event(2)]).await.unwrap();
    let entry = store.subscribe(1).next().await.unwrap().unwrap();
    let stamp = entry.stamp.unwrap();
    assert_eq!(&*stamp.author, "build-runner");
    assert!(before <= stamp.at && stamp.at <= after, "{stamp:?}");
    let entry = other.subscribe(1).next().await.unwrap().unwrap();
    assert_eq!(
        &*entry.stamp.unwrap().author,
        "build-runner",
        "notebook() keeps the author"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn head_and_notebooks_answer_while_another_commit_waits_for_the_lock() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("busy.db");
    let store = SqliteStore::open(&path, "nb").unwrap();
    store.commit(vec![event(1)]).await.unwrap();
    let holder = rusqlite::Connection::open(&path).unwrap();
    holder.execute_batch("BEGIN IMMEDIATE").unwrap();
    let waiting = tokio::spawn({
        let store = store.clone();
        async move { store.commit(vec![event(2)]).await }
    });
    tokio::time::sleep(Duration::from_millis(100)).await; // the commit now waits on the lock
    assert_eq!(
        store.head().unwrap(),
        1,
        "head does not queue behind the commit"
    );
    let listed = store.notebooks().unwrap();
    assert_eq!((listed[0].id.as_str(), listed[0].head), ("nb", 1));
    holder.execute_batch("COMMIT").unwrap();
    assert_eq!(waiting.await.unwrap().unwrap(), 2);
}

/// The issue's repro: another process holds the write lock past the busy timeout while a
/// cell writes. The agent must retry, not exit, and every line must reach the log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_rides_out_a_write_lock_held_past_the_busy_timeout() {
    use runtime_core::{
        AgentOptions, AgentStatus, Capabilities, CellType, CompletionStatus, ExecutionContext,
        NotebookClient, NotebookWatcher, OutputKind, RuntimeAgent,
    };
    use std::io::BufRead;
    use std::sync::Arc;
    use tokio::sync::Notify;

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("held.db");
    let options = SqliteOptions {
        busy_timeout: Duration::from_millis(200),
        ..SqliteOptions::default()
    };
    let store = SqliteStore::open_with(&path, "nb", options).unwrap();
    let (running, locked) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
    let handler = {
        let (running, locked) = (running.clone(), locked.clone());
        move |ctx: ExecutionContext| {
            let (running, locked) = (running.clone(), locked.clone());
            async move {
                ctx.stdout("line 0\n")?;
                running.notify_one();
                locked.notified().await;
                for n in 1..=80 {
                    ctx.stdout(format!("line {n}\n"))?;
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                Ok(())
            }
        }
    };
    let agent = RuntimeAgent::new(
        store.clone(),
        runtime_native::TokioClock,
        Capabilities::code(),
        AgentOptions::new("tester"),
    )
    .unwrap()
    .on_execution(handler);
    let handle = agent.handle();
    let served = tokio::spawn(agent.run());
    let client = NotebookClient::new(store.clone(), "tester");
    let (_, queue_id) = client.run_cell(CellType::Code, "x").await.unwrap();
    running.notified().await;

    // Another process takes the write lock and keeps it well past the busy timeout.
    let script = format!(
        "import sqlite3, sys, time\n\
         c = sqlite3.connect({path:?}, isolation_level=None)\n\
         c.execute('begin immediate')\n\
         print('locked', flush=True)\n\
         time.sleep(1.5)\n\
         c.execute('commit')\n",
        path = path.to_str().unwrap()
    );
    let mut holder = std::process::Command::new("python3")
        .args(["-c", &script])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(holder.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "locked");
    locked.notify_one();

    let mut watcher = NotebookWatcher::new(&store);
    let entry = tokio::time::timeout(
        Duration::from_secs(60),
        watcher.wait_for_completion(&queue_id),
    )
    .await
    .expect("the cell completes once the lock is released")
    .unwrap()
    .clone();
    assert!(holder.wait().unwrap().success());
    assert_eq!(entry.state.status(), Some(CompletionStatus::Success));
    let text: String = entry
        .outputs
        .iter()
        .map(|o| match &o.kind {
            OutputKind::Stream { text, .. } => text.clone(),
            _ => String::new(),
        })
        .collect();
    let expected: String = (0..=80).map(|n| format!("line {n}\n")).collect();
    assert_eq!(text, expected, "every line, once, in order");
    assert_ne!(
        handle.status(),
        AgentStatus::Stopped,
        "the agent is still serving"
    );
    handle.shutdown();
    served.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_reader_gets_large_and_small_rows_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("sizes.db"), "nb").unwrap();
    let mut live = store.subscribe(1);
    let big = |n: usize| -> Event {
        CellDeleted {
            cell_id: format!("{n}-{}", "x".repeat(200_000)).into(),
        }
        .into()
    };
    let mut sent = Vec::new();
    for n in 0..40 {
        let event = if n % 7 == 3 { big(n) } else { event(n) };
        sent.push(event.clone());
        store.commit(vec![event]).await.unwrap();
        if n % 5 == 0 {
            // Read some as they come, so most reads follow the live tail.
            let entry = live.next().await.unwrap().unwrap();
            assert_eq!(*entry.event, sent[entry.seq as usize - 1]);
        }
    }
    let mut seen = 0;
    while seen < 40 {
        let entry = tokio::time::timeout(Duration::from_secs(10), live.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(*entry.event, sent[entry.seq as usize - 1]);
        seen = entry.seq;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_listing_gives_every_notebook_once_in_order_with_its_last_entry() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("listing.db"), "b").unwrap();
    assert!(
        store.notebooks().unwrap().is_empty(),
        "an empty file lists nothing"
    );
    // Ids next to each other in SQLite's order (a prefix, a space, a byte past ASCII), with
    // different lengths, so stepping from one id to the next can skip or repeat none.
    let ids = ["b", "a", "a b", "ab", "a\u{e9}", "", "zz"];
    for (count, id) in ids.iter().enumerate() {
        let notebook = store.notebook(id);
        for n in 0..=count {
            notebook.commit(vec![event(n + 1)]).await.unwrap();
        }
    }
    let listed = store.notebooks().unwrap();
    let mut expected: Vec<&str> = ids.to_vec();
    expected.sort_unstable();
    let got: Vec<&str> = listed.iter().map(|info| info.id.as_str()).collect();
    assert_eq!(got, expected);
    for info in &listed {
        let position = ids.iter().position(|id| *id == info.id).unwrap();
        assert_eq!(info.head, position as u64 + 1, "{:?}", info.id);
        let notebook = store.notebook(&info.id);
        let last = notebook.subscribe(info.head).next().await.unwrap().unwrap();
        assert_eq!(
            info.last_activity,
            last.stamp.map(|stamp| stamp.at),
            "the last entry's time, {:?}",
            info.id
        );
    }
}
