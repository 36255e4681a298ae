//! Gateway mode against a real SQLite catalog and real bash sessions: one process serves
//! every notebook that asks for its runtime type, each with a bash of its own; capacity,
//! idle stops and returns, requests that come while an agent stops, withdrawn requests,
//! displacement, and git worktrees (made, reused, kept when dirty, removed when clean,
//! refused outside the allowed directories).
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use runtime_core::{
    AgentOptions, Batch, Capabilities, Catalog, CellType, CompletionStatus, Event, NotebookClient,
    NotebookWatcher, OutputKind, QueueEntry, QueueId, RuntimeAgent, Store, WorktreeRequest,
};
use runtime_native::backends::BackendsConfig;
use runtime_native::gateway::{Gateway, GatewayOptions, GatewayStatus, ServingState};
use runtime_native::worktree::Worktrees;
use runtime_native::{SqliteStore, TokioClock};

/// A bash per notebook: state (variables, the working directory) lasts between cells.
const BACKENDS: &str = r#"
[backends.shell]
kind = "session"
program = "bash"
args = ["--norc", "--noprofile"]
marker = "<<done {nonce}>>"
send_after = "echo '<<done {nonce}>>'"
"#;

/// How long anything may take before a test calls it hung (not a speed assertion).
const PATIENCE: Duration = Duration::from_secs(120);

struct Running {
    catalog: SqliteStore,
    status: GatewayStatus,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    gateway: tokio::task::JoinHandle<()>,
    _dir: tempfile::TempDir,
}

impl Running {
    fn client(&self, notebook: &str) -> NotebookClient {
        NotebookClient::new(self.catalog.notebook(notebook), "alice")
    }

    async fn stop(mut self) -> GatewayStatus {
        let _ = self.stop.take().unwrap().send(());
        tokio::time::timeout(PATIENCE, &mut self.gateway)
            .await
            .expect("the gateway stops")
            .unwrap();
        self.status
    }

    async fn until(&self, what: &str, done: impl Fn(&GatewayStatus) -> bool) {
        let waited = tokio::time::timeout(PATIENCE, async {
            while !done(&self.status) {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
        assert!(
            waited.is_ok(),
            "{what}: never happened; status {:?}",
            self.status.notebooks()
        );
    }
}

fn start(options: GatewayOptions, worktrees: Option<Worktrees>) -> Running {
    start_through(options, worktrees, |catalog| Arc::new(catalog))
}

/// A gateway whose view of the catalog `through` makes.
fn start_through(
    options: GatewayOptions,
    worktrees: Option<Worktrees>,
    through: impl FnOnce(SqliteStore) -> Arc<dyn Catalog>,
) -> Running {
    let dir = tempfile::tempdir().unwrap();
    let catalog = SqliteStore::open(dir.path().join("notebooks.db"), "unused").unwrap();
    let backends = Arc::new(|dir: Option<&Path>| {
        let config = BackendsConfig::parse(BACKENDS, "backends.toml").map_err(|e| e.to_string())?;
        let config = match dir {
            Some(dir) => config.working_dir(dir),
            None => config,
        };
        Ok(config.build(None))
    });
    let mut gateway = Gateway::new(
        through(catalog.clone()),
        options,
        AgentOptions::new("gateway"),
        Capabilities::code(),
        backends,
    );
    if let Some(worktrees) = worktrees {
        gateway = gateway.worktrees(worktrees);
    }
    let status = gateway.status();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let gateway = tokio::spawn(gateway.run(async {
        let _ = stopped.await;
    }));
    Running {
        catalog,
        status,
        stop: Some(stop),
        gateway,
        _dir: dir,
    }
}

fn quick(runtime_type: &str) -> GatewayOptions {
    GatewayOptions {
        poll_interval: Duration::from_millis(50),
        ..GatewayOptions::new(runtime_type)
    }
}

async fn run(client: &NotebookClient, store: &SqliteStore, source: &str) -> QueueEntry {
    let (_, queue_id) = client.run_cell(CellType::Code, source).await.unwrap();
    completion(store, &queue_id).await
}

async fn completion(store: &SqliteStore, queue_id: &QueueId) -> QueueEntry {
    let mut watcher = NotebookWatcher::new(store);
    tokio::time::timeout(PATIENCE, watcher.wait_for_completion(queue_id))
        .await
        .expect("the cell ends")
        .unwrap()
        .clone()
}

fn text(entry: &QueueEntry) -> String {
    entry
        .outputs
        .iter()
        .filter_map(|output| match &output.kind {
            OutputKind::Stream { text, .. } => Some(text.as_str()),
            _ => None,
        })
        .collect()
}

fn error(entry: &QueueEntry) -> String {
    match &entry.state {
        runtime_core::EntryState::Completed { error, .. } => error.clone().unwrap_or_default(),
        other => panic!("not completed: {other:?}"),
    }
}

fn serving(status: &GatewayStatus, notebook: &str) -> bool {
    matches!(
        status.notebook(notebook).map(|status| status.state),
        Some(ServingState::Serving(_))
    )
}

fn detached(status: &GatewayStatus, notebook: &str) -> Option<String> {
    match status.notebook(notebook)?.state {
        ServingState::Detached(why) => Some(why),
        _ => None,
    }
}

/// The notebook's state, folded to its head.
async fn fold(store: &SqliteStore) -> NotebookWatcher {
    let head = Store::head(store).await.unwrap();
    let mut watcher = NotebookWatcher::new(store);
    watcher
        .wait_until(|state| state.last_seq() >= head)
        .await
        .unwrap();
    watcher
}

/// Every runtime session's start in `notebook`'s log, with its runtime type.
async fn sessions(store: &SqliteStore) -> Vec<String> {
    fold(store)
        .await
        .state()
        .sessions()
        .iter()
        .map(|session| session.runtime_type.clone())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_gateway_serves_each_notebook_that_asks_with_a_backend_of_its_own() {
    let gateway = start(quick("shell"), None);
    for (notebook, runtime) in [("a", "shell"), ("b", "shell"), ("c", "python")] {
        gateway
            .client(notebook)
            .request_runtime(runtime, None)
            .await
            .unwrap();
    }
    gateway
        .client("d")
        .set_title("asks for nothing")
        .await
        .unwrap();
    let (a, b) = (gateway.catalog.notebook("a"), gateway.catalog.notebook("b"));
    let set = run(&gateway.client("a"), &a, "x=from-a; echo \"a: $x $$\"").await;
    assert_eq!(
        set.state.status(),
        Some(CompletionStatus::Success),
        "{set:?}"
    );
    let other = run(&gateway.client("b"), &b, "echo \"b: [$x] $$\"").await;
    let again = run(&gateway.client("a"), &a, "echo \"a: $x $$\"").await;
    let pid = |entry: &QueueEntry| text(entry).split_whitespace().last().unwrap().to_owned();
    assert!(
        text(&other).starts_with("b: []"),
        "b has a bash of its own: {other:?}"
    );
    assert_eq!(text(&again), text(&set), "a keeps its bash and its state");
    assert_ne!(pid(&set), pid(&other), "two bash processes");
    assert!(serving(&gateway.status, "a") && serving(&gateway.status, "b"));
    assert_eq!(gateway.status.notebook("c"), None, "not asking for shell");
    assert_eq!(gateway.status.notebook("d"), None, "asking for nothing");
    assert_eq!(
        sessions(&a).await,
        ["shell"],
        "the log says a shell runtime serves"
    );
    let c = gateway.catalog.notebook("c");
    assert!(sessions(&c).await.is_empty());

    let status = gateway.stop().await;
    for notebook in ["a", "b"] {
        assert_eq!(
            detached(&status, notebook).as_deref(),
            Some("shutdown"),
            "{:?}",
            status.notebooks()
        );
    }
    let state = fold(&a).await;
    assert!(
        state.state().active_session().is_none(),
        "its session ended in the log"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_most_max_sessions_serve_and_idle_ones_make_room_and_come_back() {
    let options = GatewayOptions {
        max_sessions: 1,
        idle_timeout: Duration::from_millis(500),
        ..quick("shell")
    };
    let gateway = start(options, None);
    let (a, b) = (gateway.catalog.notebook("a"), gateway.catalog.notebook("b"));
    gateway
        .client("a")
        .request_runtime("shell", None)
        .await
        .unwrap();
    gateway
        .until("a is served", |status| serving(status, "a"))
        .await;
    gateway
        .client("b")
        .request_runtime("shell", None)
        .await
        .unwrap();
    // b's cell waits, visibly queued, for a's slot.
    let (_, queued) = gateway
        .client("b")
        .run_cell(CellType::Code, "echo b ran")
        .await
        .unwrap();
    gateway
        .until("b waits for a free session", |status| {
            matches!(
                status.notebook("b").map(|status| status.state),
                Some(ServingState::Waiting)
            )
        })
        .await;
    let done = completion(&b, &queued).await;
    assert_eq!(text(&done), "b ran\n");
    let why = detached(&gateway.status, "a").unwrap();
    assert_eq!(why, "shutdown", "a was stopped as idle to make room");
    let ended = last_termination(&a).await;
    assert_eq!(ended.detail.as_deref(), Some("idle for 500 ms"));

    // A request to a notebook whose agent stopped as idle brings one back.
    let back = run(&gateway.client("a"), &a, "echo a is back").await;
    assert_eq!(text(&back), "a is back\n");
    assert_eq!(sessions(&a).await.len(), 2, "a second session for a");
    gateway.stop().await;
}

async fn last_termination(store: &SqliteStore) -> runtime_core::RuntimeSessionTerminated {
    use futures::StreamExt;
    let head = Store::head(store).await.unwrap();
    let log: Vec<_> = store.subscribe(1).take(head as usize).collect().await;
    log.into_iter()
        .rev()
        .find_map(|entry| match &*entry.unwrap().event {
            Event::RuntimeSessionTerminated(ended) => Some(ended.clone()),
            _ => None,
        })
        .expect("a session ended")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_made_while_agents_stop_for_idleness_all_run_once() {
    // The idle timeout is about as long as the gaps between requests, so agents stop
    // while requests come: none may be lost or run twice.
    let options = GatewayOptions {
        idle_timeout: Duration::from_millis(150),
        poll_interval: Duration::from_millis(10),
        ..GatewayOptions::new("shell")
    };
    let gateway = start(options, None);
    let store = gateway.catalog.notebook("busy");
    let client = gateway.client("busy");
    client.request_runtime("shell", None).await.unwrap();
    let mut queued = Vec::new();
    for round in 0..24_u64 {
        let (_, queue_id) = client
            .run_cell(CellType::Code, &format!("echo {round}"))
            .await
            .unwrap();
        queued.push(queue_id);
        tokio::time::sleep(Duration::from_millis(40 * (round % 7))).await;
    }
    for (round, queue_id) in queued.iter().enumerate() {
        let done = completion(&store, queue_id).await;
        assert_eq!(done.state.status(), Some(CompletionStatus::Success));
        assert_eq!(text(&done), format!("{round}\n"));
    }
    let state = fold(&store).await;
    let state = state.state();
    let mut counts: Vec<u64> = state
        .entries()
        .filter_map(|entry| entry.execution_count)
        .collect();
    counts.sort_unstable();
    assert_eq!(counts, (1..=24).collect::<Vec<_>>(), "each ran once");
    gateway.stop().await;
}

/// A catalog whose notebooks get a cell run just before an agent's session ends as idle:
/// the request lands after the agent last looked and before its end.
struct RequestBeforeIdleEnd(SqliteStore);

struct Interleaving {
    store: SqliteStore,
    injected: std::sync::atomic::AtomicBool,
}

#[async_trait::async_trait]
impl Catalog for RequestBeforeIdleEnd {
    async fn notebooks(&self) -> Result<Vec<runtime_core::NotebookInfo>, runtime_core::StoreError> {
        Catalog::notebooks(&self.0).await
    }

    fn open(&self, id: &str) -> Result<Arc<dyn Store>, runtime_core::StoreError> {
        Ok(Arc::new(Interleaving {
            store: self.0.notebook(id),
            injected: Default::default(),
        }))
    }
}

#[async_trait::async_trait]
impl Store for Interleaving {
    async fn commit_batch(
        &self,
        batch: &Batch,
    ) -> Result<runtime_core::Seq, runtime_core::StoreError> {
        let idle_end = batch.events.iter().any(|event| {
            matches!(&**event, Event::RuntimeSessionTerminated(ended)
                if ended.detail.as_deref().is_some_and(|detail| detail.starts_with("idle")))
        });
        if idle_end
            && !self
                .injected
                .swap(true, std::sync::atomic::Ordering::SeqCst)
        {
            NotebookClient::new(self.store.clone(), "alice")
                .run_cell(CellType::Code, "echo just in time")
                .await?;
        }
        self.store.commit_batch(batch).await
    }

    fn subscribe(&self, from: runtime_core::Seq) -> runtime_core::Subscription {
        self.store.subscribe(from)
    }

    async fn head(&self) -> Result<runtime_core::Seq, runtime_core::StoreError> {
        Store::head(&self.store).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_that_lands_as_an_idle_agent_ends_brings_one_back() {
    let options = GatewayOptions {
        idle_timeout: Duration::from_millis(200),
        ..quick("shell")
    };
    let gateway = start_through(options, None, |catalog| {
        Arc::new(RequestBeforeIdleEnd(catalog))
    });
    let store = gateway.catalog.notebook("n");
    gateway
        .client("n")
        .request_runtime("shell", None)
        .await
        .unwrap();
    gateway
        .until("n goes idle", |status| detached(status, "n").is_some())
        .await;
    let state = fold(&store).await;
    let (queue_id, entry) = state
        .state()
        .entries()
        .map(|entry| (entry.queue_id.clone(), entry.clone()))
        .next()
        .expect("the request landed");
    assert!(!entry.is_completed(), "it landed before the session's end");
    let done = completion(&store, &queue_id).await;
    assert_eq!(text(&done), "just in time\n");
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_withdrawn_request_detaches_and_a_displacing_runtime_is_left_alone_until_it_ends() {
    let gateway = start(quick("shell"), None);
    let store = gateway.catalog.notebook("n");
    let client = gateway.client("n");
    client.request_runtime("shell", None).await.unwrap();
    gateway
        .until("n is served", |status| serving(status, "n"))
        .await;
    client.request_runtime("", None).await.unwrap();
    gateway
        .until("n is detached", |status| detached(status, "n").is_some())
        .await;
    assert_eq!(
        last_termination(&store).await.detail.as_deref(),
        Some("the notebook no longer asks for a `shell` runtime")
    );

    // Asked again, then another runtime displaces the gateway's agent.
    client.request_runtime("shell", None).await.unwrap();
    gateway
        .until("n is served again", |status| serving(status, "n"))
        .await;
    let other = RuntimeAgent::new(
        store.clone(),
        TokioClock,
        Capabilities::code(),
        AgentOptions::new("bob"),
    )
    .unwrap()
    .on_execution(|ctx: runtime_core::ExecutionContext| async move {
        Ok(runtime_core::MediaBundle::plain(format!(
            "bob ran {}",
            ctx.source()
        )))
    });
    let bob = other.handle();
    let bob_runs = tokio::spawn(other.run());
    gateway
        .until("the gateway's agent is displaced", |status| {
            detached(status, "n").is_some_and(|why| why.starts_with("displaced"))
        })
        .await;
    let served_by_bob = run(&client, &store, "echo hi").await;
    assert!(
        format!("{:?}", served_by_bob.outputs).contains("bob ran echo hi"),
        "{served_by_bob:?}"
    );
    assert!(
        detached(&gateway.status, "n").is_some(),
        "the gateway leaves n to bob"
    );
    bob.shutdown();
    bob_runs.await.unwrap().unwrap();
    let back = run(&client, &store, "echo the gateway is back").await;
    assert_eq!(text(&back), "the gateway is back\n");
    gateway.stop().await;
}

// ---- worktrees ----

fn git(dir: &Path, args: &[&str]) -> String {
    let output = std::process::Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@example.invalid")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@example.invalid")
        .output()
        .unwrap();
    assert!(output.status.success(), "git {args:?}: {output:?}");
    String::from_utf8(output.stdout).unwrap()
}

/// A repository with one commit on `main`, under `root/src/app`.
fn repository(root: &Path) -> PathBuf {
    let repo = root.join("src").join("app");
    std::fs::create_dir_all(&repo).unwrap();
    git(&repo, &["init", "-q", "-b", "main"]);
    std::fs::write(repo.join("README"), "app\n").unwrap();
    git(&repo, &["add", "README"]);
    git(&repo, &["commit", "-q", "-m", "first"]);
    repo
}

fn worktree_request(repo: &Path, branch: Option<&str>) -> Option<WorktreeRequest> {
    Some(WorktreeRequest {
        repository: repo.display().to_string(),
        branch: branch.map(str::to_owned),
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_notebook_works_in_its_own_worktree_kept_while_dirty_removed_when_clean() {
    let root = tempfile::tempdir().unwrap();
    let repo = repository(root.path());
    let worktrees_dir = root.path().join("worktrees");
    let options = GatewayOptions {
        idle_timeout: Duration::from_millis(300),
        ..quick("shell")
    };
    let worktrees = Worktrees::new(&worktrees_dir)
        .allow(root.path().join("src"))
        .branch_prefix("agents");
    let gateway = start(options, Some(worktrees));
    let store = gateway.catalog.notebook("fix login");
    let client = gateway.client("fix login");
    client
        .request_runtime("shell", worktree_request(&repo, Some("main")))
        .await
        .unwrap();
    let here = run(&client, &store, "pwd; git branch --show-current; ls").await;
    let printed = text(&here);
    let mut lines = printed.lines();
    let path = PathBuf::from(lines.next().unwrap());
    assert!(path.starts_with(&worktrees_dir), "{printed}");
    let branch = lines.next().unwrap().to_owned();
    assert!(branch.starts_with("agents/fix-login-"), "{printed}");
    assert_eq!(lines.next(), Some("README"));
    // Uncommitted work: the worktree is kept when the notebook goes idle, and says so.
    run(&client, &store, "echo draft > notes.txt").await;
    gateway
        .until("kept as dirty", |status| {
            detached(status, "fix login").is_some_and(|why| why.contains("kept"))
        })
        .await;
    let why = detached(&gateway.status, "fix login").unwrap();
    assert!(why.contains("it has uncommitted changes"), "{why}");
    assert!(path.join("notes.txt").exists());

    // Back again: the same worktree, the work still there; committed, it goes clean.
    let back = run(&client, &store, "pwd; cat notes.txt").await;
    assert_eq!(text(&back), format!("{}\ndraft\n", path.display()));
    run(
        &client,
        &store,
        "git add notes.txt && git -c user.name=t -c user.email=t@example.invalid commit -q -m notes && git status --porcelain",
    )
    .await;
    gateway
        .until("removed as clean", |status| {
            detached(status, "fix login").is_some_and(|why| why.contains("removed"))
        })
        .await;
    let why = detached(&gateway.status, "fix login").unwrap();
    assert!(
        why.contains(&format!("branch {branch} kept: it has commits")),
        "{why}"
    );
    assert!(!path.exists(), "the worktree's directory is gone");
    let log = git(&repo, &["log", "--format=%s", &branch]);
    assert_eq!(log, "notes\nfirst\n", "the work is on its branch");
    assert_eq!(git(&repo, &["branch", "--show-current"]), "main\n");
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untouched_worktree_goes_with_its_branch_and_bad_requests_fail_their_cells() {
    let root = tempfile::tempdir().unwrap();
    let repo = repository(root.path());
    let outside = tempfile::tempdir().unwrap();
    let elsewhere = repository(outside.path());
    let worktrees = Worktrees::new(root.path().join("worktrees")).allow(root.path().join("src"));
    let gateway = start(quick("shell"), Some(worktrees));

    let clean = gateway.client("clean");
    let clean_store = gateway.catalog.notebook("clean");
    clean
        .request_runtime("shell", worktree_request(&repo, None))
        .await
        .unwrap();
    let here = run(&clean, &clean_store, "git branch --show-current").await;
    assert_eq!(text(&here), "notebook/clean\n");

    for (notebook, request, says) in [
        (
            "outside",
            worktree_request(&elsewhere, None),
            "is not under a directory this gateway allows",
        ),
        (
            "no-branch",
            worktree_request(&repo, Some("no-such-branch")),
            "has no branch or commit `no-such-branch`",
        ),
        (
            "option",
            worktree_request(&repo, Some("--orphan")),
            "has no branch or commit `--orphan`",
        ),
        (
            "relative",
            Some(WorktreeRequest {
                repository: "src/app".into(),
                branch: None,
            }),
            "the path must be absolute",
        ),
    ] {
        let client = gateway.client(notebook);
        client.request_runtime("shell", request).await.unwrap();
        let failed = run(&client, &gateway.catalog.notebook(notebook), "echo never").await;
        assert_eq!(
            failed.state.status(),
            Some(CompletionStatus::Error),
            "{failed:?}"
        );
        assert!(
            error(&failed).contains(says),
            "{notebook}: {}",
            error(&failed)
        );
        assert!(text(&failed).is_empty(), "nothing ran");
    }
    assert!(
        !elsewhere.join("../../worktrees").exists(),
        "nothing made for the refused repository"
    );

    let status = gateway.stop().await;
    let why = detached(&status, "clean").unwrap();
    assert_eq!(why, "shutdown; worktree removed", "{why}");
    assert_eq!(
        git(&repo, &["branch", "--list", "notebook/*"]),
        "",
        "its untouched branch is gone too"
    );
    assert_eq!(
        git(&repo, &["worktree", "list", "--porcelain"])
            .matches("worktree ")
            .count(),
        1,
        "only the main worktree is left"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worktree_whose_directory_was_deleted_is_made_again() {
    let root = tempfile::tempdir().unwrap();
    let repo = repository(root.path());
    let worktrees = Worktrees::new(root.path().join("worktrees")).allow(root.path());
    let request = worktree_request(&repo, None).unwrap();
    let first = worktrees.open("n", &request).await.unwrap();
    std::fs::remove_dir_all(first.path()).unwrap();
    let again = worktrees.open("n", &request).await.unwrap();
    assert_eq!(again.path(), first.path());
    assert!(again.path().join("README").exists(), "checked out again");
    assert_eq!(
        git(again.path(), &["branch", "--show-current"]),
        "notebook/n\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_notebook_whose_task_panicked_is_served_again() {
    let dir = tempfile::tempdir().unwrap();
    let catalog = SqliteStore::open(dir.path().join("notebooks.db"), "unused").unwrap();
    let first = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let backends = Arc::new(move |_: Option<&Path>| {
        // The embedder's factory has a bug the first time.
        assert!(
            !first.swap(false, std::sync::atomic::Ordering::SeqCst),
            "a bug in the factory"
        );
        Ok(BackendsConfig::parse(BACKENDS, "backends.toml")
            .map_err(|e| e.to_string())?
            .build(None))
    });
    let gateway = Gateway::new(
        Arc::new(catalog.clone()),
        quick("shell"),
        AgentOptions::new("gateway"),
        Capabilities::code(),
        backends,
    );
    let status = gateway.status();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(gateway.run(async {
        let _ = stopped.await;
    }));
    let client = NotebookClient::new(catalog.notebook("n"), "alice");
    client.request_runtime("shell", None).await.unwrap();
    let done = run(&client, &catalog.notebook("n"), "echo served").await;
    assert_eq!(text(&done), "served\n");
    assert!(serving(&status, "n"), "{:?}", status.notebooks());
    let _ = stop.send(());
    tokio::time::timeout(PATIENCE, running)
        .await
        .unwrap()
        .unwrap();
}
