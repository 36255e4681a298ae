//! PostgresStore against a real PostgreSQL server (`DATABASE_URL`; `scripts/postgres run
//! cargo test` starts a throwaway one): the store conformance suite, live wake-ups between
//! separate connections, writers in separate processes, killed connections, bad rows, and
//! errors that say what is wrong without the password.
#![cfg(feature = "postgres")]
#![allow(clippy::unwrap_used)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures::StreamExt;
use runtime_core::{Batch, CellDeleted, Event, Stamp, Store, Timestamp};
use runtime_native::{PostgresError, PostgresOptions, PostgresStore};

fn event(n: usize) -> Event {
    CellDeleted {
        cell_id: format!("cell-{n}").into(),
    }
    .into()
}

/// A fresh database's URL and a store on it.
async fn fresh(notebook: &str) -> (String, PostgresStore) {
    let url = tests::postgres::fresh_database().await;
    let store = PostgresStore::connect(&url, notebook).await.unwrap();
    (url, store)
}

/// Options whose readers never re-read on their own within a test: only a notification
/// (or the listening connection coming back) wakes them, so a broken wake-up fails the
/// test instead of hiding behind the safety re-read.
fn woken_only_by_notifications() -> PostgresOptions {
    PostgresOptions {
        safety_poll: Duration::from_secs(3600),
        ..PostgresOptions::default()
    }
}

/// Runs SQL on the database at `url`.
async fn sql(url: &str, statements: &str) {
    tests::postgres::execute(url, statements).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_store_passes_the_store_conformance_suite() {
    let (_, store) = fresh("default").await;
    let count = AtomicUsize::new(0);
    let make = || {
        store.notebook(&format!(
            "notebook-{}",
            count.fetch_add(1, Ordering::SeqCst)
        ))
    };
    runtime_core::store::conformance::run_all(&make).await;
    runtime_core::store::conformance::a_batch_author_is_kept(&make()).await;
    let (_, catalog) = fresh("default").await;
    runtime_core::store::conformance::run_catalog(&catalog).await;
}

/// The database is the clock: an entry's time is the server's when it committed, even
/// for a batch a hub stamped by its own clock; the author is the batch's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_carry_the_databases_time_and_the_batchs_author() {
    let (url, store) = fresh("n").await;
    let server_now = || async {
        let text = tests::postgres::query_one(
            &url,
            "SELECT (extract(epoch FROM clock_timestamp()) * 1000)::bigint::text",
        )
        .await;
        text.parse::<u64>().unwrap()
    };
    let before = server_now().await;
    let skewed = Stamp::new(Timestamp(1_000), "alice@hub-b");
    store
        .commit_batch(&Batch::new(vec![event(1)]).stamped(skewed))
        .await
        .unwrap();
    store.commit(vec![event(2)]).await.unwrap();
    let after = server_now().await;
    let entries: Vec<_> = store.subscribe(1).take(2).collect().await;
    let stamps: Vec<Stamp> = entries
        .into_iter()
        .map(|entry| entry.unwrap().stamp.unwrap())
        .collect();
    assert_eq!(&*stamps[0].author, "alice@hub-b");
    assert_eq!(&*stamps[1].author, runtime_native::DEFAULT_AUTHOR);
    for stamp in &stamps {
        assert!(
            (before..=after).contains(&stamp.at.as_millis()),
            "{stamp:?} is not within the server's {before}..={after}"
        );
    }
    assert!(stamps[0].at <= stamps[1].at, "stamps follow the log");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_through_one_connection_wakes_a_reader_of_another() {
    let (url, writer_side) = fresh("nb").await;
    // Two separate connects: separate pools and listening connections, as two hubs have.
    let reader_side = PostgresStore::connect_with(&url, "nb", woken_only_by_notifications())
        .await
        .unwrap();
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
        writer_side.commit(vec![event(n)]).await.unwrap();
        // Only the notification can wake the waiting reader within the bound.
        let entry = tokio::time::timeout(Duration::from_secs(5), arrived.recv())
            .await
            .expect("the other connection's commit arrives")
            .unwrap()
            .unwrap();
        assert_eq!(entry.seq, n as u64 + 1);
        assert_eq!(*entry.event, event(n));
    }
}

/// Connections killed by the server (`pg_terminate_backend`, as a restart or a failover
/// does): the commit in flight fails retriably, the next ones succeed on new connections,
/// and a reader whose listening connection was killed is woken again once it is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_connections_are_retriable_and_come_back() {
    let (url, store) = fresh("nb").await;
    let other = PostgresStore::connect_with(&url, "nb", woken_only_by_notifications())
        .await
        .unwrap();
    store.commit(vec![event(0)]).await.unwrap();
    let mut subscription = other.subscribe(1);
    assert_eq!(subscription.next().await.unwrap().unwrap().seq, 1);
    let kill_all = || {
        sql(
            &url,
            // This test's database only: the other tests run beside it on the same server.
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE application_name = 'runtime-agents' AND datname = current_database() \
             AND pid <> pg_backend_pid()",
        )
    };
    kill_all().await;
    let mut committed = 1;
    for n in 1..=5 {
        // A dead pooled connection is noticed by the first statement on it.
        match store.commit(vec![event(n)]).await {
            Ok(_) => committed += 1,
            Err(error) => assert!(error.is_retriable(), "{error}"),
        }
    }
    assert!(committed >= 4, "the pool opens new connections");
    // The reader: its pooled connection died too (a retriable error, once at most), and
    // its listening connection comes back on its own.
    let mut seen = 1;
    while seen < committed {
        match tokio::time::timeout(Duration::from_secs(10), subscription.next())
            .await
            .expect("the reader catches up")
            .unwrap()
        {
            Ok(entry) => {
                seen += 1;
                assert_eq!(entry.seq, seen);
            }
            Err(error) => assert!(error.is_retriable(), "{error}"),
        }
    }
    // Live again: once the reader waits, a commit wakes it through the listening
    // connection that came back (its readers never re-read on their own here).
    let waiting = tokio::spawn(async move { subscription.next().await });
    tokio::time::sleep(Duration::from_millis(50)).await;
    store.commit(vec![event(99)]).await.unwrap();
    let entry = tokio::time::timeout(Duration::from_secs(10), waiting)
        .await
        .expect("the notification wakes the reader")
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(*entry.event, event(99));
}

/// Rows another program wrote: text that is not JSON is a malformed event, skipped and
/// counted by readers, never fatal; a deleted row is a gap readers stop at with a message
/// that says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_rows_read_as_malformed_events_and_a_gap_is_a_clear_error() {
    let (url, store) = fresh("nb").await;
    store
        .commit(vec![event(1), event(2), event(3)])
        .await
        .unwrap();
    sql(
        &url,
        "UPDATE runtime_agents.events SET event = 'not json {', at = NULL WHERE seq = 2",
    )
    .await;
    let read: Vec<_> = store.subscribe(1).take(3).collect().await;
    let read: Vec<_> = read.into_iter().map(Result::unwrap).collect();
    assert!(matches!(&*read[1].event, Event::Malformed(_)), "{read:?}");
    assert_eq!(read[1].stamp, None, "a row without its time has no stamp");
    assert_eq!(*read[2].event, event(3));

    sql(&url, "DELETE FROM runtime_agents.events WHERE seq = 2").await;
    let mut log = store.subscribe(1);
    assert_eq!(log.next().await.unwrap().unwrap().seq, 1);
    let error = log.next().await.unwrap().unwrap_err();
    assert!(!error.is_retriable());
    assert!(error.to_string().contains("event 2 is missing"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newer_schema_and_a_missing_database_are_clear_permanent_errors() {
    let (url, _store) = fresh("nb").await;
    sql(
        &url,
        "UPDATE runtime_agents.meta SET value = '99' WHERE key = 'schema_version'",
    )
    .await;
    let error = PostgresStore::connect(&url, "nb").await.unwrap_err();
    assert!(
        matches!(error, PostgresError::NewerSchema { found: 99, .. }),
        "{error}"
    );
    assert!(
        error.to_string().contains("upgrade runtime-agents"),
        "{error}"
    );

    let (base, _) = url.rsplit_once('/').unwrap();
    let with_password = base.replacen("postgres@", "postgres:hunter2-secret@", 1);
    let missing = format!("{with_password}/no_such_database");
    let error = PostgresStore::connect(&missing, "nb").await.unwrap_err();
    assert!(!error.is_retriable(), "{error}");
    assert!(error.to_string().contains("no_such_database"), "{error}");
    assert!(!error.to_string().contains("hunter2"), "{error}");
    assert!(!format!("{error:?}").contains("hunter2"), "{error:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_is_not_there_is_retriable_and_the_password_stays_out() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port(); // free once the listener is dropped: nothing answers there
    let url = format!("postgres://someone:hunter2-secret@127.0.0.1:{port}/db");
    let error = PostgresStore::connect(&url, "nb").await.unwrap_err();
    assert!(error.is_retriable(), "{error}");
    assert!(!error.to_string().contains("hunter2"), "{error}");
    // A connection string that does not parse is refused without echoing it.
    for malformed in [
        "postgres://someone:hunter2-secret@127.0.0.1:not-a-port/db",
        "postgres://someone:hunter2-secret@127.0.0.1/db?sslmode=hunter2-secret",
        "host=127.0.0.1 password=hunter2-secret port=not-a-port",
    ] {
        let error = PostgresStore::connect(malformed, "nb").await.unwrap_err();
        assert!(matches!(error, PostgresError::Url(_)), "{error}");
        assert!(!error.is_retriable());
        assert!(!error.to_string().contains("hunter2"), "{error}");
    }
    let (_, store) = fresh("nb").await;
    assert!(!format!("{store:?}").contains("hunter2"));
}

/// Opens racing on a new database create the tables once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_opens_of_a_new_database_all_succeed() {
    let url = tests::postgres::fresh_database().await;
    let opens = (0..6).map(|_| PostgresStore::connect(&url, "nb"));
    for opened in futures::future::join_all(opens).await {
        opened.unwrap();
    }
}

/// Writers in separate processes race on one notebook at full speed: the log is gapless,
/// no batch is split, and a reader sees 1..N in order. Each writer is this test binary
/// run again (the ignored test below) with the database in its environment.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writers_in_separate_processes_get_gapless_unsplit_batches() {
    let (url, store) = fresh("race").await;
    let seconds = std::env::var("RUNTIME_PG_RACE_SECS").unwrap_or_else(|_| "10".to_owned());
    let writers: Vec<_> = (0..2)
        .map(|writer| {
            std::process::Command::new(std::env::current_exe().unwrap())
                .args(["--exact", "racing_writer", "--ignored", "--nocapture"])
                .env("RUNTIME_PG_RACE_URL", &url)
                .env("RUNTIME_PG_RACE_WRITER", writer.to_string())
                .env("RUNTIME_PG_RACE_SECS", &seconds)
                .stdout(std::process::Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    // A live reader follows the race as it happens, until it has the final head.
    let (final_head, mut head_known) = tokio::sync::watch::channel(None::<u64>);
    let reader = tokio::spawn({
        let store = store.clone();
        async move {
            let mut log = store.subscribe(1);
            let mut entries = Vec::new();
            loop {
                let head = *head_known.borrow_and_update();
                if head.is_some_and(|head| entries.len() as u64 >= head) {
                    return entries;
                }
                tokio::select! {
                    entry = log.next() => entries.push(entry.unwrap().unwrap()),
                    _ = head_known.changed() => {}
                }
            }
        }
    });
    for mut writer in writers {
        assert!(writer.wait().unwrap().success(), "a writer failed");
    }
    let head = store.head().await.unwrap();
    final_head.send(Some(head)).unwrap();
    let live = tokio::time::timeout(Duration::from_secs(60), reader)
        .await
        .expect("the live reader reaches the head")
        .unwrap();
    assert_eq!(live.len() as u64, head, "the live reader saw every entry");
    let mut batches = std::collections::HashMap::<String, Vec<u64>>::new();
    for (n, entry) in live.iter().enumerate() {
        assert_eq!(entry.seq, n as u64 + 1, "in order, no gaps");
        let Event::CellDeleted(deleted) = &*entry.event else {
            panic!("{entry:?}")
        };
        // "w<writer>-b<batch>-e<event>"
        let (batch, _) = deleted.cell_id.as_str().rsplit_once("-e").unwrap();
        batches.entry(batch.to_owned()).or_default().push(entry.seq);
    }
    for (batch, seqs) in &batches {
        assert_eq!(seqs.len(), 3, "{batch}");
        assert!(
            seqs.windows(2).all(|w| w[1] == w[0] + 1),
            "{batch} split: {seqs:?}"
        );
    }
    let per_writer = |w: &str| batches.keys().filter(|b| b.starts_with(w)).count();
    assert!(
        per_writer("w0-") > 0 && per_writer("w1-") > 0,
        "both writers wrote"
    );
    eprintln!(
        "{head} events in {} batches from 2 processes in {seconds} s",
        batches.len()
    );
}

/// One writer of the race above; run by it, not on its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a child process of writers_in_separate_processes_get_gapless_unsplit_batches"]
async fn racing_writer() {
    let url = std::env::var("RUNTIME_PG_RACE_URL").unwrap();
    let writer = std::env::var("RUNTIME_PG_RACE_WRITER").unwrap();
    let seconds: f64 = std::env::var("RUNTIME_PG_RACE_SECS")
        .unwrap()
        .parse()
        .unwrap();
    let store = PostgresStore::connect(&url, "race").await.unwrap();
    let until = std::time::Instant::now() + Duration::from_secs_f64(seconds);
    let mut batch = 0;
    while std::time::Instant::now() < until {
        let events = (0..3)
            .map(|e| {
                CellDeleted {
                    cell_id: format!("w{writer}-b{batch}-e{e}").into(),
                }
                .into()
            })
            .collect();
        let batch_to_commit = Batch::new(events);
        // A retriable failure may hide a success: the same batch again lands once.
        loop {
            match store.commit_batch(&batch_to_commit).await {
                Ok(_) => break,
                Err(error) if error.is_retriable() => continue,
                Err(error) => panic!("{error}"),
            }
        }
        batch += 1;
    }
}
