//! The hub and the native network store on real sockets on 127.0.0.1: the store contract
//! through the hub, token identities, an agent serving a client across the hub, and a
//! proxy that cuts every connection again and again while commits and reads go on.
#![allow(clippy::unwrap_used)]

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures::StreamExt;
use runtime_core::sync::BearerToken;
use runtime_core::sync::HubOptions as ClientOptions;
use runtime_core::*;
use runtime_native::hub::{self, ConnectionState, HubOptions, HubStore};
use support::{AGENT, ALICE, BOB};

/// A hub on 127.0.0.1 over `catalog`; returns its URL.
async fn hub(catalog: Arc<dyn Catalog>) -> String {
    format!("ws://{}", support::hub(catalog).await)
}

fn quick() -> HubOptions {
    HubOptions {
        client: ClientOptions {
            backoff_base: Duration::from_millis(5),
            backoff_cap: Duration::from_millis(50),
            ..ClientOptions::default()
        },
        ca_file: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_contract_holds_through_the_hub() {
    let url = hub(Arc::new(MemoryCatalog::new())).await;
    let store = hub::connect(&url, BearerToken::new(ALICE), "first", quick()).unwrap();
    let count = AtomicUsize::new(0);
    let make = || {
        let n = count.fetch_add(1, Ordering::SeqCst);
        store.notebook(&format!("notebook-{n}")).unwrap()
    };
    runtime_core::store::conformance::run_all(make).await;
    runtime_core::store::conformance::run_catalog(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identities_are_checked_and_a_bad_token_fails_for_good() {
    let url = hub(Arc::new(MemoryCatalog::new())).await;
    let wrong = hub::connect(&url, BearerToken::new("not-a-token-at-all"), "n", quick()).unwrap();
    let error = wrong.commit(vec![cell("c1")]).await.unwrap_err();
    assert!(matches!(error, StoreError::Backend(_)), "{error:?}");
    assert!(!error.to_string().contains("not-a-token"), "{error}");
    assert!(matches!(
        wrong.connection_state().get(),
        ConnectionState::Failed(_)
    ));
    assert!(!format!("{wrong:?}").contains("not-a-token"));

    let alice = hub::connect(&url, BearerToken::new(ALICE), "n", quick()).unwrap();
    alice.commit(vec![cell("c1")]).await.unwrap();
    // Impersonation: a request in someone else's name.
    let error = alice
        .commit(vec![request("c1", "q1", "mallory")])
        .await
        .unwrap_err();
    assert!(
        error.to_string().contains("authenticated as \"alice\""),
        "{error}"
    );
    alice
        .commit(vec![request("c1", "q1", "alice")])
        .await
        .unwrap();
    // A user token cannot start a runtime session.
    let agent = RuntimeAgent::new(
        alice.clone(),
        runtime_native::TokioClock,
        Capabilities::code(),
        AgentOptions::new("alice"),
    )
    .unwrap()
    .on_execution(handler::Echo::new(runtime_native::TokioClock));
    // Not support::echo_agent: this one's refusal is what is tested.
    let stopped = tokio::time::timeout(Duration::from_secs(30), agent.run())
        .await
        .unwrap();
    let error = stopped.unwrap_err().to_string();
    assert!(error.contains("only an agent token"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_serves_a_client_across_the_hub() {
    let dir = tempfile::tempdir().unwrap();
    let catalog = runtime_native::SqliteStore::open(dir.path().join("hub.db"), "default").unwrap();
    let url = hub(Arc::new(catalog)).await;
    let agent_store = hub::connect(&url, BearerToken::new(AGENT), "shared", quick()).unwrap();
    let handle = support::echo_agent(agent_store, "agent-1");
    let client_store = hub::connect(&url, BearerToken::new(ALICE), "shared", quick()).unwrap();
    let client = NotebookClient::new(client_store.clone(), "alice");
    for n in 0..5 {
        run_to_success(&client, &client_store, &format!("print({n})")).await;
    }
    handle.shutdown();
}

/// Two hubs on one PostgreSQL database, each with its own connections (as two processes
/// have): an agent on one serves a client on the other, live, and the catalog of either
/// lists what the other created.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hubs_sharing_a_postgres_database_serve_one_notebook_live() {
    let database = tests::postgres::fresh_database().await;
    let open = || async {
        let store = runtime_native::PostgresStore::connect(&database, "default")
            .await
            .unwrap();
        hub(Arc::new(store)).await
    };
    let (hub_a, hub_b) = (open().await, open().await);
    let agent_store = hub::connect(&hub_a, BearerToken::new(AGENT), "shared", quick()).unwrap();
    let handle = support::echo_agent(agent_store, "agent-1");
    let client_store = hub::connect(&hub_b, BearerToken::new(ALICE), "shared", quick()).unwrap();
    let client = NotebookClient::new(client_store.clone(), "alice");
    for n in 0..5 {
        run_to_success(&client, &client_store, &format!("print({n})")).await;
    }
    handle.shutdown();
    let created = client_store
        .create(Some("made-on-b"), "Plan")
        .await
        .unwrap();
    let through_a = hub::connect(&hub_a, BearerToken::new(ALICE), "x", quick()).unwrap();
    let listed = through_a.notebooks().await.unwrap();
    assert!(
        listed
            .iter()
            .any(|info| info.id == created && info.title.as_deref() == Some("Plan")),
        "{listed:?}"
    );
}

/// The hub stamps every entry with the identity its token authenticated and the hub's
/// time, and the log ignores a user who writes in the name of a runtime's session: Alice
/// copies the agent's session id from the log and ends the session, reports it idle and
/// completes a cell in its name. None of it applies; the agent keeps serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hub_stamps_authors_and_nobody_acts_for_a_runtime_they_are_not() {
    let url = hub(Arc::new(MemoryCatalog::new())).await;
    let agent_store = hub::connect(&url, BearerToken::new(AGENT), "shared", quick()).unwrap();
    let handle = support::echo_agent(agent_store, "agent-1");
    let alice_store = hub::connect(&url, BearerToken::new(ALICE), "shared", quick()).unwrap();
    let client = NotebookClient::new(alice_store.clone(), "alice");
    run_to_success(&client, &alice_store, "before").await;

    let mut watcher = NotebookWatcher::new(&alice_store);
    let state = watcher
        .wait_until(|s| s.active_session().is_some())
        .await
        .unwrap();
    let session = state.active_session().unwrap().clone();
    assert_eq!(session.author.as_deref(), Some("agent-1"));
    let (cell_id, queue_id) = ("forged-cell".to_owned(), "forged-queue".to_owned());
    let forged: Vec<Event> = vec![
        cell(&cell_id),
        request(&cell_id, &queue_id, "alice"),
        ExecutionAssigned {
            queue_id: queue_id.as_str().into(),
            session_id: session.session_id.clone(),
        }
        .into(),
        RuntimeSessionStatusChanged {
            session_id: session.session_id.clone(),
            status: SessionStatus::Idle,
        }
        .into(),
        RuntimeSessionTerminated {
            session_id: session.session_id.clone(),
            reason: TerminationReason::Shutdown,
            by: session.session_id.to_string(),
            at: Timestamp(0),
            detail: None,
        }
        .into(),
    ];
    let forged_len = forged.len() as u64;
    let first_forged = alice_store.commit(forged).await.unwrap();
    let forged_seqs = first_forged..first_forged + forged_len;
    // The forged claim did not take the entry: the agent claims and runs it.
    let entry = tokio::time::timeout(
        Duration::from_secs(30),
        watcher.wait_for_completion(&queue_id.as_str().into()),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(entry.state.status(), Some(CompletionStatus::Success));
    run_to_success(&client, &alice_store, "after").await;
    let state = watcher.state();
    assert!(state.session(&session.session_id).unwrap().is_active());
    assert_eq!(state.stats().ignored(Ignored::WrongAuthor), 3);

    // Every entry is stamped by who wrote it, whatever it claims.
    let head = alice_store.head().await.unwrap() as usize;
    let entries: Vec<LogEntry> = alice_store
        .subscribe(1)
        .take(head)
        .map(|entry| entry.unwrap())
        .collect()
        .await;
    for entry in &entries {
        let author = &*entry.stamp.as_ref().expect("every entry is stamped").author;
        let expected = match &*entry.event {
            _ if forged_seqs.contains(&entry.seq) => "alice",
            Event::CellCreated(_) | Event::ExecutionRequested(_) => "alice",
            _ => "agent-1",
        };
        assert_eq!(author, expected, "{:?}", entry.event);
    }
    handle.shutdown();
}

/// A per-notebook access list: Bob may use the notebooks `bob-*` and no other; he does
/// not see the others listed, and cannot read, write, or ask the head or a snapshot of one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_identity_uses_only_the_notebooks_on_its_access_list() {
    let url = hub(Arc::new(MemoryCatalog::new())).await;
    let alice = hub::connect(&url, BearerToken::new(ALICE), "shared", quick()).unwrap();
    alice.commit(vec![cell("alices")]).await.unwrap();
    let bob = hub::connect(&url, BearerToken::new(BOB), "bob-1", quick()).unwrap();
    bob.commit(vec![cell("bobs")]).await.unwrap();
    assert_eq!(bob.head().await.unwrap(), 1);

    let trespass = bob.notebook("shared").unwrap();
    let forbidden = |error: StoreError| {
        let message = error.to_string();
        assert!(
            message.contains("may not use notebook \"shared\""),
            "{message}"
        );
        assert!(!message.contains(BOB), "{message}");
    };
    forbidden(trespass.commit(vec![cell("intruder")]).await.unwrap_err());
    forbidden(trespass.head().await.unwrap_err());
    forbidden(
        trespass
            .latest_snapshot(SnapshotKind::Lean)
            .await
            .unwrap_err(),
    );
    let read = tokio::time::timeout(Duration::from_secs(30), trespass.subscribe(1).next())
        .await
        .unwrap()
        .unwrap();
    forbidden(read.unwrap_err());
    let listed: Vec<String> = bob
        .notebooks()
        .await
        .unwrap()
        .into_iter()
        .map(|notebook| notebook.id)
        .collect();
    assert_eq!(listed, ["bob-1"]);
    assert_eq!(
        alice.head().await.unwrap(),
        1,
        "nothing of Bob's landed in shared"
    );
    let everyone: Vec<String> = alice
        .notebooks()
        .await
        .unwrap()
        .into_iter()
        .map(|notebook| notebook.id)
        .collect();
    assert_eq!(everyone, ["bob-1", "shared"]);
}

/// A catalog whose stores' subscriptions fail retriably once every `every` entries, as a
/// database restarting does.
struct Hiccups {
    inner: MemoryCatalog,
    every: usize,
}

#[async_trait::async_trait]
impl Catalog for Hiccups {
    async fn notebooks(&self) -> Result<Vec<NotebookInfo>, StoreError> {
        self.inner.notebooks().await
    }

    fn open(&self, id: &str) -> Result<Arc<dyn Store>, StoreError> {
        Ok(Arc::new(HiccupStore {
            inner: self.inner.store(id),
            every: self.every,
        }))
    }
}

struct HiccupStore {
    inner: MemoryStore,
    every: usize,
}

#[async_trait::async_trait]
impl Store for HiccupStore {
    async fn commit_batch(&self, batch: &Batch) -> Result<u64, StoreError> {
        self.inner.commit_batch(batch).await
    }

    async fn head(&self) -> Result<Seq, StoreError> {
        self.inner.head().await
    }

    fn subscribe(&self, from: u64) -> Subscription {
        let every = self.every;
        let entries = self.inner.subscribe(from);
        // (entries, polled so far, failed): a failed subscription ends, and the reader
        // opens another.
        Box::pin(futures::stream::unfold(
            (entries, 0_usize, false),
            move |(mut entries, polled, failed)| async move {
                if failed {
                    return None;
                }
                if (polled + 1) % every == 0 {
                    let error = StoreError::Unavailable("the database is restarting".into());
                    return Some((Err(error), (entries, polled + 1, true)));
                }
                let entry = entries.next().await?;
                Some((entry, (entries, polled + 1, false)))
            },
        ))
    }
}

/// The hub's reads ride out a store that fails for a moment: a client following a
/// notebook (live, and reading history) sees every entry once, in order, and no error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_that_fails_for_a_moment_does_not_end_a_subscription() {
    let catalog = Hiccups {
        inner: MemoryCatalog::new(),
        every: 7,
    };
    let url = hub(Arc::new(catalog)).await;
    let alice = hub::connect(&url, BearerToken::new(ALICE), "n", quick()).unwrap();
    for n in 0..20 {
        alice
            .commit(vec![cell(&format!("before-{n}"))])
            .await
            .unwrap();
    }
    let mut following = alice.subscribe(1);
    for n in 0..20 {
        alice
            .commit(vec![cell(&format!("after-{n}"))])
            .await
            .unwrap();
    }
    for seq in 1..=40 {
        let entry = tokio::time::timeout(Duration::from_secs(30), following.next())
            .await
            .expect("every entry arrives")
            .unwrap()
            .unwrap_or_else(|error| panic!("entry {seq}: {error}"));
        assert_eq!(entry.seq, seq);
    }
}

/// A store that counts the entries its subscriptions deliver.
#[derive(Clone)]
struct Counting {
    inner: HubStore,
    delivered: Arc<AtomicUsize>,
}

#[async_trait::async_trait]
impl Store for Counting {
    async fn commit_batch(&self, batch: &Batch) -> Result<u64, StoreError> {
        self.inner.commit_batch(batch).await
    }

    fn subscribe(&self, from: u64) -> Subscription {
        let delivered = self.delivered.clone();
        Box::pin(self.inner.subscribe(from).inspect(move |_| {
            delivered.fetch_add(1, Ordering::SeqCst);
        }))
    }

    async fn latest_snapshot(&self, kind: SnapshotKind) -> Result<Option<Snapshot>, StoreError> {
        self.inner.latest_snapshot(kind).await
    }
}

/// On a long notebook, the hub makes a snapshot from the log (clients cannot store one),
/// and an agent joining through the hub receives it and the tail, not the log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_joining_a_long_notebook_gets_the_hubs_snapshot_and_the_tail() {
    let catalog = MemoryCatalog::new();
    let url = hub(Arc::new(catalog.clone())).await;
    let alice = hub::connect(&url, BearerToken::new(ALICE), "long", quick()).unwrap();
    let filler = SNAPSHOT_EVERY as usize + 1_000;
    for chunk in 0..filler / 1_000 {
        let events = (0..1_000)
            .map(|n| {
                CellDeleted {
                    cell_id: format!("gone-{chunk}-{n}").into(),
                }
                .into()
            })
            .collect();
        alice.commit(events).await.unwrap();
    }
    // A client's snapshot is not kept: the hub makes its own.
    let forged = Snapshot {
        seq: 5,
        kind: SnapshotKind::Lean,
        state: "{}".into(),
    };
    alice.save_snapshot(&forged).await.unwrap();
    let backing = catalog.store("long");
    assert_eq!(
        backing.latest_snapshot(SnapshotKind::Lean).await.unwrap(),
        None
    );

    let head = alice.head().await.unwrap();
    let snapshot = alice
        .latest_snapshot(SnapshotKind::Lean)
        .await
        .unwrap()
        .expect("the hub made a snapshot of a long notebook");
    assert_eq!(snapshot.seq, head);
    assert_eq!(
        backing.latest_snapshot(SnapshotKind::Lean).await.unwrap(),
        Some(snapshot.clone()),
        "and kept it"
    );
    let full = alice
        .latest_snapshot(SnapshotKind::Full)
        .await
        .unwrap()
        .unwrap();
    assert!(NotebookState::from_snapshot(&full, SnapshotKind::Full).is_ok());

    let client = NotebookClient::new(alice.clone(), "alice");
    let (_, queue_id) = client.run_cell(CellType::Code, "after").await.unwrap();
    let agent_store = Counting {
        inner: hub::connect(&url, BearerToken::new(AGENT), "long", quick()).unwrap(),
        delivered: Arc::default(),
    };
    let handle = support::echo_agent(agent_store.clone(), "agent-1");
    let mut watcher = NotebookWatcher::new(&alice);
    let entry = tokio::time::timeout(
        Duration::from_secs(30),
        watcher.wait_for_completion(&queue_id),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(entry.state.status(), Some(CompletionStatus::Success));
    handle.shutdown();
    let delivered = agent_store.delivered.load(Ordering::SeqCst);
    assert!(
        delivered < 100,
        "the agent received {delivered} entries of a {head}-entry log"
    );
}

/// A proxy between clients and the hub that cuts every connection at random moments
/// while 300 batches are committed one after another and a reader follows the log: the
/// log holds each batch once, in order, and the reader saw exactly the log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cut_connections_lose_nothing_and_duplicate_nothing() {
    let catalog = MemoryCatalog::new();
    let url = hub(Arc::new(catalog.clone())).await;
    let support::Proxy {
        address,
        cut,
        accepted,
        ..
    } = support::proxy(url.trim_start_matches("ws://").to_owned()).await;
    let proxy_url = format!("ws://{address}");
    let writer = hub::connect(&proxy_url, BearerToken::new(ALICE), "cuts", quick()).unwrap();
    let reader = hub::connect(&proxy_url, BearerToken::new(ALICE), "cuts", quick()).unwrap();
    // The reader follows until the writer's last batch, however many it wrote.
    let read = tokio::spawn(async move {
        let mut seen = Vec::new();
        let mut log = reader.subscribe(1);
        while let Some(entry) = log.next().await {
            let entry = entry.unwrap();
            let last = *entry.event == cell("the-end");
            seen.push(entry);
            if last {
                break;
            }
        }
        seen
    });
    let cutter = tokio::spawn(async move {
        for n in 0u64.. {
            tokio::time::sleep(Duration::from_millis(3 + n % 17)).await;
            cut.send_modify(|cuts| *cuts += 1);
        }
    });
    // At least 300 batches, and on through at least 25 connections whatever the machine's
    // speed (a fast one could commit 300 between two cuts).
    let mut written = 0;
    while written < 300 || accepted.load(Ordering::SeqCst) < 25 {
        let seq = writer.commit(vec![cell(&format!("cell-{written}"))]).await;
        // A commit answered on a connection that was then cut is still answered once.
        assert!(seq.is_ok(), "commit {written}: {seq:?}");
        written += 1;
    }
    writer.commit(vec![cell("the-end")]).await.unwrap();
    let seen = tokio::time::timeout(Duration::from_secs(60), read)
        .await
        .unwrap()
        .unwrap();
    cutter.abort();
    let log = catalog.store("cuts").entries();
    assert_eq!(log.len(), written + 1, "each batch landed exactly once");
    for (n, entry) in log.iter().take(written).enumerate() {
        assert_eq!(entry.seq, n as u64 + 1);
        assert_eq!(
            *entry.event,
            cell(&format!("cell-{n}")),
            "in the order committed"
        );
    }
    assert_eq!(seen, log, "the reader saw the log exactly");
    let connections = accepted.load(Ordering::SeqCst);
    assert!(connections >= 25, "{connections} connections");
}

/// An agent whose connection to the hub is cut again and again keeps its session (its
/// lease outlives each cut) and serves every cell once: no cell runs twice, none is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_keeps_its_session_across_cut_connections() {
    let catalog = MemoryCatalog::new();
    let url = hub(Arc::new(catalog.clone())).await;
    let support::Proxy {
        address,
        cut,
        accepted,
        ..
    } = support::proxy(url.trim_start_matches("ws://").to_owned()).await;
    let proxy_url = format!("ws://{address}");
    let agent_store = hub::connect(&proxy_url, BearerToken::new(AGENT), "kept", quick()).unwrap();
    let handle = support::echo_agent(agent_store, "agent-1");
    let session = handle.session_id().clone();
    let cutter = tokio::spawn(async move {
        for n in 0u64.. {
            tokio::time::sleep(Duration::from_millis(20 + n % 30)).await;
            cut.send_modify(|cuts| *cuts += 1);
        }
    });
    let client_store = hub::connect(&url, BearerToken::new(ALICE), "kept", quick()).unwrap();
    let client = NotebookClient::new(client_store.clone(), "alice");
    // At least 20 cells, and on through at least 6 connections of the agent's.
    let mut cells = 0;
    while cells < 20 || accepted.load(Ordering::SeqCst) < 6 {
        run_to_success(&client, &client_store, &format!("{cells}")).await;
        cells += 1;
    }
    cutter.abort();
    let mut state = NotebookState::new();
    for entry in catalog.store("kept").entries() {
        state.apply_entry(&entry);
    }
    assert_eq!(state.sessions().len(), 1, "one session throughout");
    assert_eq!(&state.sessions()[0].session_id, &session);
    assert_eq!(state.entries().len(), cells);
    let mut counts = Vec::new();
    for entry in state.entries() {
        assert_eq!(
            entry.outputs.len(),
            1,
            "each cell's one output, once: {:?}",
            entry.outputs
        );
        counts.push(entry.execution_count.unwrap());
    }
    counts.sort_unstable();
    assert_eq!(
        counts,
        (1..=20).collect::<Vec<u64>>(),
        "each cell started once"
    );
    let connections = accepted.load(Ordering::SeqCst);
    assert!(
        connections > 3,
        "only {connections} connections: the proxy did not cut"
    );
    handle.shutdown();
}

/// An agent cut off from the hub for longer than its lease, in the middle of a cell: a
/// client enforcing leases ends the session, and the cell ends `runtime_lost`, not
/// `success` and never re-run; when the agent is back it stops, and nothing it writes for
/// the lost cell applies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_cut_off_past_its_lease_loses_its_cell_truthfully() {
    let catalog = MemoryCatalog::new();
    let url = hub(Arc::new(catalog.clone())).await;
    let proxy = support::proxy(url.trim_start_matches("ws://").to_owned()).await;
    let agent_store = hub::connect(
        &format!("ws://{}", proxy.address),
        BearerToken::new(AGENT),
        "cut-off",
        quick(),
    )
    .unwrap();
    let options = AgentOptions {
        lease_duration: Duration::from_secs(1),
        renew_interval: Duration::from_millis(300),
        ..AgentOptions::new("agent-1")
    };
    let agent = RuntimeAgent::new(
        agent_store,
        runtime_native::TokioClock,
        Capabilities::code(),
        options,
    )
    .unwrap()
    .on_execution(handler::Echo::new(runtime_native::TokioClock));
    let handle = agent.handle();
    let session = handle.session_id().clone();
    let ran = tokio::spawn(agent.run());

    let client_store = hub::connect(&url, BearerToken::new(ALICE), "cut-off", quick()).unwrap();
    let client = NotebookClient::new(client_store.clone(), "alice");
    let (_, queue_id) = client.run_cell(CellType::Code, "%sleep 60").await.unwrap();
    let mut watcher = NotebookWatcher::new(&client_store).enforcing_leases(
        client_store.clone(),
        runtime_native::TokioClock,
        "alice",
    );
    let running = |state: &NotebookState| {
        state
            .entry(&queue_id)
            .is_some_and(|entry| matches!(entry.state, EntryState::Executing { .. }))
    };
    tokio::time::timeout(Duration::from_secs(30), watcher.wait_until(running))
        .await
        .unwrap()
        .unwrap();

    // The agent's way to the hub goes down, past its lease.
    proxy.offline.store(true, Ordering::SeqCst);
    proxy.cut.send_modify(|cuts| *cuts += 1);
    let entry = tokio::time::timeout(
        Duration::from_secs(60),
        watcher.wait_for_completion(&queue_id),
    )
    .await
    .unwrap()
    .unwrap()
    .clone();
    assert_eq!(
        entry.state.status(),
        Some(CompletionStatus::RuntimeLost),
        "{:?}",
        entry.state
    );

    // Back: the agent learns its session ended and stops.
    proxy.offline.store(false, Ordering::SeqCst);
    let ended = tokio::time::timeout(Duration::from_secs(60), ran)
        .await
        .expect("the agent stops")
        .unwrap();
    assert!(matches!(ended, Ok(TerminationReason::Expired)), "{ended:?}");
    // Whatever the agent wrote for the cell once its session had ended is ignored.
    let mut state = NotebookState::new();
    let mut ended_at = None;
    for entry in catalog.store("cut-off").entries() {
        let applied = state.apply_entry(&entry);
        if ended_at.is_none() && state.session(&session).is_some_and(|s| !s.is_active()) {
            ended_at = Some(entry.seq);
        } else if ended_at.is_some() && entry.event.queue_id() == Some(&queue_id) {
            assert!(
                matches!(applied, Applied::Ignored(_)),
                "applied after the session ended: {:?}",
                entry.event
            );
        }
    }
    let lost = state.entry(&queue_id).unwrap();
    assert_eq!(lost.state.status(), Some(CompletionStatus::RuntimeLost));
    assert_eq!(
        state.session(&session).unwrap().state,
        SessionState::Ended(TerminationReason::Expired)
    );
    assert_eq!(state.entries().len(), 1, "the cell was not run again");
}

/// A hub behind TLS (a terminating proxy with a self-signed certificate for `localhost`):
/// `wss://` works with the certificate as `ca_file`; without it the certificate check
/// refuses the connection (and the client keeps retrying, as for any lost connection).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wss_works_with_a_private_ca_and_refuses_an_unknown_certificate() {
    let url = hub(Arc::new(MemoryCatalog::new())).await;
    let (port, ca_file, _dir) =
        support::tls_proxy(url.trim_start_matches("ws://").to_owned()).await;
    let secure = format!("wss://localhost:{port}");
    let store = hub::connect(
        &secure,
        BearerToken::new(ALICE),
        "tls",
        HubOptions {
            ca_file: Some(ca_file),
            ..quick()
        },
    )
    .unwrap();
    store.commit(vec![cell("over-tls")]).await.unwrap();
    let first = store.subscribe(1).next().await.unwrap().unwrap();
    assert_eq!(*first.event, cell("over-tls"));

    let untrusting = hub::connect(&secure, BearerToken::new(ALICE), "tls", quick()).unwrap();
    let state = untrusting.connection_state();
    let refused = tokio::time::timeout(
        Duration::from_secs(30),
        state.wait_for(|state| matches!(state, ConnectionState::Reconnecting { .. })),
    )
    .await
    .unwrap()
    .unwrap();
    let ConnectionState::Reconnecting { error, .. } = refused else {
        unreachable!()
    };
    assert!(error.to_lowercase().contains("certificate"), "{error}");
}

fn cell(id: &str) -> Event {
    CellCreated {
        cell_id: id.into(),
        cell_type: CellType::Code,
        source: String::new(),
    }
    .into()
}

fn request(cell: &str, queue: &str, by: &str) -> Event {
    ExecutionRequested {
        queue_id: queue.into(),
        cell_id: cell.into(),
        cell_type: CellType::Code,
        source: "x".into(),
        requested_by: by.into(),
    }
    .into()
}

/// Runs `source` in a new cell and waits (at most 30 s) for it to succeed.
async fn run_to_success(client: &NotebookClient, store: &HubStore, source: &str) {
    let (_, queue_id) = client.run_cell(CellType::Code, source).await.unwrap();
    let mut watcher = NotebookWatcher::new(store);
    let entry = tokio::time::timeout(
        Duration::from_secs(30),
        watcher.wait_for_completion(&queue_id),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(
        entry.state.status(),
        Some(CompletionStatus::Success),
        "{source}: {:?}",
        entry.state
    );
}
