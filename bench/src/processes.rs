//! Scenarios with real processes and SQLite files.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures::StreamExt;
use runtime_core::{
    Capabilities, CellCreated, CellDeleted, CellType, CompletionStatus, Event, ExecutionAssigned,
    ExecutionCompleted, ExecutionRequested, ExecutionStarted, NotebookClient, NotebookState,
    NotebookWatcher, RuntimeSessionStarted, Store, StreamName, StreamOutputAdded, Timestamp,
};
use runtime_native::SqliteStore;
use serde_json::Value;

use crate::stats::Summary;

fn spawn_echo_agent(binary: &Path, store: &Path) -> Child {
    Command::new(binary)
        .args(["--client-id", "bench", "--notebook", "nb", "--store"])
        .arg(store)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .expect("the echo-agent binary starts")
}

fn stop(mut child: Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
}

/// B2: request → completion observed, with the echo agent in another process on SQLite.
pub async fn cross_process_round_trips(binary: &Path, dir: &Path, samples: usize) -> Summary {
    let path = dir.join("round-trips.db");
    let store = SqliteStore::open(&path, "nb").expect("open");
    let agent = spawn_echo_agent(binary, &path);
    let took = round_trips(store, samples).await;
    stop(agent);
    took
}

const HUB_AGENT: &str = "bench-agent-token-0123456789";
const HUB_CLIENT: &str = "bench-client-token-0123456789";

/// Starts the `runtime-hub` binary on 127.0.0.1 with a SQLite file in `dir`; returns it
/// and its URL.
fn start_hub(hub: &Path, dir: &Path) -> (Child, String) {
    start_hub_on(hub, dir, dir.join("hub.db").as_os_str())
}

/// Starts the `runtime-hub` binary on 127.0.0.1 serving `store` (a SQLite file or a
/// PostgreSQL URL), with its tokens file in `dir`; returns it and its URL.
fn start_hub_on(hub: &Path, dir: &Path, store: &std::ffi::OsStr) -> (Child, String) {
    use std::io::BufRead;
    use std::os::unix::fs::PermissionsExt;
    let tokens = dir.join("hub-tokens.toml");
    std::fs::write(
        &tokens,
        format!(
            "[[tokens]]\ntoken = \"{HUB_AGENT}\"\nidentity = \"bench\"\nrole = \"agent\"\n\
             [[tokens]]\ntoken = \"{HUB_CLIENT}\"\nidentity = \"bench\"\nrole = \"user\"\n"
        ),
    )
    .unwrap();
    std::fs::set_permissions(&tokens, std::fs::Permissions::from_mode(0o600)).unwrap();
    let mut hub = Command::new(hub)
        .args(["--listen", "127.0.0.1:0", "--log", "warn", "--tokens"])
        .arg(&tokens)
        .arg("--store")
        .arg(store)
        .stdout(Stdio::piped())
        .spawn()
        .expect("the runtime-hub binary starts");
    let mut line = String::new();
    std::io::BufReader::new(hub.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line
        .split_whitespace()
        .find(|word| word.starts_with("ws://"))
        .expect("the hub prints its URL")
        .to_owned();
    (hub, url)
}

fn hub_store(url: &str, token: &str, notebook: &str) -> runtime_native::hub::HubStore {
    runtime_native::hub::connect(
        url,
        runtime_core::sync::BearerToken::new(token),
        notebook,
        runtime_native::hub::HubOptions::default(),
    )
    .expect("a hub URL")
}

/// B15: the same round trip through a hub on loopback: the hub (the `runtime-hub` binary
/// on a SQLite file), the echo agent and this client in three processes.
pub async fn hub_round_trips(hub: &Path, echo_agent: &Path, dir: &Path, samples: usize) -> Summary {
    hub_round_trips_on(
        hub,
        echo_agent,
        dir,
        dir.join("hub.db").as_os_str(),
        samples,
    )
    .await
}

/// [`hub_round_trips`] with the hub serving `store`.
async fn hub_round_trips_on(
    hub: &Path,
    echo_agent: &Path,
    dir: &Path,
    store: &std::ffi::OsStr,
    samples: usize,
) -> Summary {
    let (hub, url) = start_hub_on(hub, dir, store);
    let agent = Command::new(echo_agent)
        .args([
            "--client-id",
            "bench",
            "--notebook",
            "nb",
            "--auth-token",
            HUB_AGENT,
            "--store",
            &url,
        ])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .expect("the echo-agent binary starts");
    let took = round_trips(hub_store(&url, HUB_CLIENT, "nb"), samples).await;
    stop(agent);
    stop(hub);
    took
}

/// B16: `agents` agents in this process, each on its own notebook and its own connection to
/// one hub process: the hub's resident memory per connection, and round trips under that
/// load. Returns (KiB per connection, round trips).
pub async fn hub_under_many_agents(
    hub: &Path,
    dir: &Path,
    agents: usize,
    samples: usize,
) -> (f64, Summary) {
    let (hub, url) = start_hub(hub, dir);
    let rss = |pid: u32| -> u64 {
        std::fs::read_to_string(format!("/proc/{pid}/status"))
            .unwrap_or_default()
            .lines()
            .find(|line| line.starts_with("VmRSS:"))
            .and_then(|line| line.split_whitespace().nth(1))
            .and_then(|kib| kib.parse().ok())
            .unwrap_or(0)
    };
    // One connection first, so the hub's own start-up is not counted per connection.
    let mut notebooks = Vec::with_capacity(agents);
    let first = hub_store(&url, HUB_AGENT, "nb-0");
    notebooks.push(crate::scenarios::Notebook::start(first.clone(), &first).await);
    let before = rss(hub.id());
    for n in 1..agents {
        let store = hub_store(&url, HUB_AGENT, &format!("nb-{n}"));
        notebooks.push(crate::scenarios::Notebook::start(store.clone(), &store).await);
    }
    let after = rss(hub.id());
    let per_connection = after.saturating_sub(before) as f64 / (agents - 1).max(1) as f64;
    let took = crate::scenarios::round_trips(&mut notebooks, samples).await;
    for notebook in notebooks {
        notebook.stop().await;
    }
    stop(hub);
    (per_connection, took)
}

/// The CPU time (user + system) a process has used, from `/proc/<pid>/stat`.
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    // utime and stime are fields 14 and 15 of the whole line: 12 and 13 after the name.
    let ticks: u64 = [11, 12]
        .iter()
        .filter_map(|&n| fields.get(n).and_then(|t| t.parse::<u64>().ok()))
        .sum();
    // Linux reports them in clock ticks of 1/100 s.
    Duration::from_millis(ticks * 10)
}

/// B18: `subscribers` clients follow one notebook on a hub process while `events` are
/// committed one by one: the hub's CPU time per committed event, and how long until every
/// subscriber saw the last one. Returns (µs of hub CPU per event, total time).
pub async fn hub_fan_out(
    hub: &Path,
    dir: &Path,
    subscribers: usize,
    events: usize,
) -> (f64, Duration) {
    let (hub, url) = start_hub(hub, dir);
    let writer = hub_store(&url, HUB_CLIENT, "fan-out");
    writer.commit(vec![cell_event(0)]).await.expect("commit");
    let mut readers = Vec::with_capacity(subscribers);
    for _ in 0..subscribers {
        let store = hub_store(&url, HUB_CLIENT, "fan-out");
        let mut log = store.subscribe(1);
        log.next()
            .await
            .expect("the first event")
            .expect("readable");
        readers.push(tokio::spawn(async move {
            let mut seen = 1;
            while seen < events + 1 {
                log.next().await.expect("more").expect("readable");
                seen += 1;
            }
            drop(store);
        }));
    }
    let cpu_before = cpu_time(hub.id());
    let started = Instant::now();
    for n in 1..=events {
        writer.commit(vec![cell_event(n)]).await.expect("commit");
    }
    for reader in readers {
        reader.await.expect("the reader saw every event");
    }
    let took = started.elapsed();
    let cpu = cpu_time(hub.id()).saturating_sub(cpu_before);
    stop(hub);
    (cpu.as_secs_f64() * 1e6 / events as f64, took)
}

fn cell_event(n: usize) -> Event {
    runtime_core::CellDeleted {
        cell_id: format!("fan-out-{n}").into(),
    }
    .into()
}

/// Requests → completions observed through `store`, once an agent serves it; the first
/// tenth is warm-up.
async fn round_trips(store: impl Store + Clone + 'static, samples: usize) -> Summary {
    let mut watcher = NotebookWatcher::new(&store);
    watcher
        .wait_until(|s| s.active_session().is_some())
        .await
        .expect("the agent starts");
    let client = NotebookClient::new(store.clone(), "bench");
    let cell = client
        .create_cell(CellType::Code, "1")
        .await
        .expect("commit");
    let mut took = Vec::with_capacity(samples);
    for i in 0..samples + samples / 10 {
        let started = Instant::now();
        let queue_id = client
            .execute(&cell, CellType::Code, "1")
            .await
            .expect("commit");
        let entry = watcher
            .wait_for_completion(&queue_id)
            .await
            .expect("completes");
        let elapsed = started.elapsed();
        assert_eq!(entry.state.status(), Some(CompletionStatus::Success));
        if i >= samples / 10 {
            took.push(elapsed);
        }
    }
    Summary::of(&took)
}

/// B6: echo-agent process spawned → its session start observed in the store.
pub async fn process_starts(binary: &Path, dir: &Path, samples: usize) -> Summary {
    let mut took = Vec::with_capacity(samples);
    for n in 0..samples {
        let path = dir.join(format!("start-{n}.db"));
        let store = SqliteStore::open(&path, "nb").expect("open");
        let mut log = store.subscribe(1);
        let started = Instant::now();
        let agent = spawn_echo_agent(binary, &path);
        a_session_starts(&mut log).await;
        took.push(started.elapsed());
        stop(agent);
    }
    Summary::of(&took)
}

/// A process that keeps one core busy until dropped: a loaded machine's other work (B2L).
pub struct Spinner(std::process::Child);

impl Spinner {
    pub fn start() -> Self {
        let child = Command::new("sh")
            .args(["-c", "while :; do :; done"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .expect("sh runs");
        Spinner(child)
    }
}

impl Drop for Spinner {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// B7 and the commit latency: `native-bench` measures them; its JSON is returned.
pub fn native_bench(binary: &Path, args: &[&str]) -> Value {
    let output = Command::new(binary)
        .args(args)
        .output()
        .expect("native-bench runs");
    assert!(
        output.status.success(),
        "native-bench {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("native-bench prints JSON")
}

/// A realistic log: a session, then executions of 10 events each (request, claim, start,
/// six stream outputs, completion).
fn realistic_batch(first_entry: usize, entries: usize) -> Vec<Event> {
    let mut events = Vec::with_capacity(entries * 10);
    for n in first_entry..first_entry + entries {
        let queue_id = format!("q{n}");
        let session_id = "s1";
        if n < 50 {
            events.push(
                CellCreated {
                    cell_id: format!("c{n}").into(),
                    cell_type: CellType::Code,
                    source: String::new(),
                }
                .into(),
            );
        }
        events.push(
            ExecutionRequested {
                queue_id: queue_id.as_str().into(),
                cell_id: format!("c{}", n % 50).into(),
                cell_type: CellType::Code,
                source: "print('hello')".into(),
                requested_by: "bench".into(),
            }
            .into(),
        );
        events.push(
            ExecutionAssigned {
                queue_id: queue_id.as_str().into(),
                session_id: session_id.into(),
            }
            .into(),
        );
        events.push(
            ExecutionStarted {
                queue_id: queue_id.as_str().into(),
                session_id: session_id.into(),
                at: Timestamp(n as u64),
            }
            .into(),
        );
        for line in 0..6 {
            events.push(
                StreamOutputAdded {
                    queue_id: queue_id.as_str().into(),
                    session_id: session_id.into(),
                    output_id: format!("o{n}-{line}").into(),
                    name: StreamName::Stdout,
                    text: "a line of output of about forty bytes..\n".into(),
                }
                .into(),
            );
        }
        events.push(
            ExecutionCompleted {
                queue_id: queue_id.as_str().into(),
                session_id: session_id.into(),
                status: CompletionStatus::Success,
                error: None,
                duration_ms: 1,
                abort_pending: false,
                metadata: Default::default(),
            }
            .into(),
        );
    }
    events
}

fn session_start() -> Event {
    RuntimeSessionStarted {
        session_id: "s1".into(),
        runtime_id: "r".into(),
        runtime_type: "bench".into(),
        client_id: "bench".into(),
        capabilities: Capabilities::code(),
        at: Timestamp(0),
        valid_for_ms: u64::MAX / 2,
    }
    .into()
}

/// B9: batched appends (1,000 events per commit); returns events per second.
pub async fn sqlite_append(dir: &Path, events: usize) -> f64 {
    let store = SqliteStore::open(dir.join("append.db"), "nb").expect("open");
    store.commit(vec![session_start()]).await.expect("commit");
    let batches: Vec<Vec<Event>> = (0..events / 1_000)
        .map(|b| realistic_batch(b * 100, 100))
        .collect();
    let started = Instant::now();
    for batch in batches {
        store.commit(batch).await.expect("commit");
    }
    events as f64 / started.elapsed().as_secs_f64()
}

/// A SQLite file at `path` whose notebook `nb` holds a session start and then `events`
/// realistic events (a tenth of them requests), 1,000 executions per commit.
async fn long_notebook(path: &Path, events: usize) -> SqliteStore {
    let store = SqliteStore::open(path, "nb").expect("open");
    store.commit(vec![session_start()]).await.expect("commit");
    for b in 0..events / 10_000 {
        store
            .commit(realistic_batch(b * 1_000, 1_000))
            .await
            .expect("commit");
    }
    store
}

/// What B22 measured on one notebook length.
pub struct LengthFigures {
    pub events: usize,
    /// echo-agent process spawned → its session start in the log, from the snapshot the
    /// first agent left.
    pub start: Duration,
    /// That agent's resident memory, idle, a second after it started.
    pub idle_rss_kib: u64,
    /// `notebook status`, the whole command, after the agent left its snapshot.
    pub status: Duration,
}

/// B22: on a notebook of `events` events (a tenth of them executions), an echo-agent
/// process's start and idle memory, and `notebook status`. A first agent folds it all and
/// leaves the snapshot the measured one starts from, as on any notebook in use.
pub async fn start_and_memory_by_length(
    echo_agent: &Path,
    notebook: &Path,
    dir: &Path,
    events: usize,
) -> LengthFigures {
    let path = dir.join(format!("length-{events}.db"));
    let store = SqliteStore::open(&path, "nb").expect("open");
    store.commit(vec![session_start()]).await.expect("commit");
    let mut first = 0;
    while first * 10 < events {
        let executions = (events / 10 - first).min(1_000);
        store
            .commit(realistic_batch(first, executions))
            .await
            .expect("commit");
        first += executions;
    }
    let mut log = store.subscribe(store.head().expect("head") + 1);
    let warming = spawn_echo_agent(echo_agent, &path);
    a_session_starts(&mut log).await;
    stop(warming);
    let mut log = store.subscribe(store.head().expect("head") + 1);
    let started = Instant::now();
    let agent = spawn_echo_agent(echo_agent, &path);
    a_session_starts(&mut log).await;
    let start = started.elapsed();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle_rss_kib = crate::scenarios::rss_kib(&agent.id().to_string());
    stop(agent);
    let started = Instant::now();
    let status = Command::new(notebook)
        .args(["--client-id", "bench", "--notebook", "nb", "--store"])
        .arg(&path)
        .arg("status")
        .env("RUST_LOG", "warn")
        .output()
        .expect("notebook runs");
    let status_took = started.elapsed();
    assert!(status.status.success(), "notebook status failed");
    LengthFigures {
        events,
        start,
        idle_rss_kib,
        status: status_took,
    }
}

/// What B23 measured with one number of agents on one file.
pub struct FileSharing {
    pub agents: usize,
    /// Round trips on one of the notebooks, the others idle.
    pub round_trips: Summary,
    /// The agents' CPU while all are idle (renewing their leases), in percent of one core.
    pub idle_cpu_percent: f64,
    /// Agents that exited on their own during the run.
    pub lost: usize,
}

/// B23: `agents` echo-agent processes on one SQLite file, each serving its own notebook:
/// their CPU while idle over `idle` (lease renewals included: they come every 15 s), then
/// round trips on the first notebook while the others stay idle.
pub async fn agents_sharing_a_file(
    echo_agent: &Path,
    dir: &Path,
    agents: usize,
    idle: Duration,
    samples: usize,
) -> FileSharing {
    let path = dir.join(format!("sharing-{agents}.db"));
    let mut children: Vec<Child> = Vec::with_capacity(agents);
    for n in 0..agents {
        let notebook = format!("nb{n}");
        let child = Command::new(echo_agent)
            .args(["--client-id", "bench", "--notebook", &notebook, "--store"])
            .arg(&path)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .expect("the echo-agent binary starts");
        children.push(child);
    }
    for n in 0..agents {
        let store = SqliteStore::open(&path, &format!("nb{n}")).expect("open");
        NotebookWatcher::new(&store)
            .wait_until(|state| state.active_session().is_some())
            .await
            .expect("the agent starts");
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let cpu =
        |children: &[Child]| -> Duration { children.iter().map(|c| time_on_cpu(c.id())).sum() };
    let before = cpu(&children);
    tokio::time::sleep(idle).await;
    let used = cpu(&children).saturating_sub(before);
    let idle_cpu_percent = used.as_secs_f64() / idle.as_secs_f64() * 100.0;
    let round_trips = round_trips(SqliteStore::open(&path, "nb0").expect("open"), samples).await;
    let lost = children
        .iter_mut()
        .map(Child::try_wait)
        .filter(|exited| !matches!(exited, Ok(None)))
        .count();
    for child in children {
        stop(child);
    }
    FileSharing {
        agents,
        round_trips,
        idle_cpu_percent,
        lost,
    }
}

/// B24: subscriber processes following one notebook of a SQLite file while this process
/// commits to it.
pub struct Fanout {
    pub subscribers: usize,
    /// Commit → the last subscriber saw it.
    pub all_saw: Summary,
    /// Commit → a subscriber saw it (every subscriber, every commit).
    pub each_saw: Summary,
    /// The subscribers' CPU per commit, all of them together, in µs.
    pub cpu_us_per_commit: f64,
    /// The slowest single wake-up, in µs (a missed one waits for the safety re-read).
    pub slowest_us: f64,
}

/// B24: `subscribers` processes (`native-bench follower`) follow one notebook while this
/// process commits `commits` events to it, one at a time, each from idle (5 ms apart).
pub async fn subscribers_of_one_notebook(
    native_bench: &Path,
    dir: &Path,
    subscribers: usize,
    commits: usize,
) -> Fanout {
    use std::io::{BufRead, BufReader};
    let path = dir.join(format!("fanout-{subscribers}.db"));
    let store = SqliteStore::open(&path, "nb").expect("open");
    let deleted = |cell_id: String| -> Vec<Event> {
        vec![
            CellDeleted {
                cell_id: cell_id.into(),
            }
            .into(),
        ]
    };
    store.commit(deleted("start".into())).await.expect("commit");
    let mut children: Vec<Child> = (0..subscribers)
        .map(|_| {
            Command::new(native_bench)
                .args(["follower", "--notebook", "nb", "--count"])
                .arg(commits.to_string())
                .arg("--store")
                .arg(&path)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .expect("native-bench starts")
        })
        .collect();
    let mut reports: Vec<BufReader<std::process::ChildStdout>> = children
        .iter_mut()
        .map(|child| BufReader::new(child.stdout.take().expect("piped")))
        .collect();
    let read_line = |report: &mut BufReader<_>| {
        let mut line = String::new();
        report.read_line(&mut line).expect("the follower reports");
        line
    };
    for report in &mut reports {
        assert_eq!(read_line(report).trim(), "ready");
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let cpu =
        |children: &[Child]| -> Duration { children.iter().map(|c| time_on_cpu(c.id())).sum() };
    let before = cpu(&children);
    for _ in 0..commits {
        tokio::time::sleep(Duration::from_millis(5)).await;
        let sent = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("after 1970")
            .as_nanos();
        store
            .commit(deleted(format!("t:{sent}")))
            .await
            .expect("commit");
    }
    let latencies: Vec<Vec<f64>> = reports
        .iter_mut()
        .map(|report| {
            let line: Value = serde_json::from_str(&read_line(report)).expect("JSON");
            let micros = line["micros"].as_array().expect("latencies");
            micros
                .iter()
                .map(|m| m.as_f64().expect("a number"))
                .collect()
        })
        .collect();
    let used = cpu(&children).saturating_sub(before);
    for mut child in children {
        drop(child.stdin.take());
        let _ = child.wait();
    }
    let micros = |us: f64| Duration::from_secs_f64(us / 1e6);
    let all_saw: Vec<Duration> = (0..commits)
        .map(|n| micros(latencies.iter().map(|each| each[n]).fold(0.0, f64::max)))
        .collect();
    let each_saw: Vec<Duration> = latencies.iter().flatten().map(|&us| micros(us)).collect();
    Fanout {
        subscribers,
        all_saw: Summary::of(&all_saw),
        each_saw: Summary::of(&each_saw),
        cpu_us_per_commit: used.as_secs_f64() * 1e6 / commits as f64,
        slowest_us: latencies.iter().flatten().copied().fold(0.0, f64::max),
    }
}

/// The time all of process `pid`'s threads have run, from each one's
/// `/proc/<pid>/task/<tid>/schedstat` (nanoseconds): precise where `/proc/<pid>/stat` counts ticks of 10 ms, which
/// a hundred mostly idle processes each stay under.
fn time_on_cpu(pid: u32) -> Duration {
    let task_dir = format!("/proc/{pid}/task");
    let threads = std::fs::read_dir(&task_dir).into_iter().flatten().flatten();
    threads
        .filter_map(|thread| std::fs::read_to_string(thread.path().join("schedstat")).ok())
        .filter_map(|stat| stat.split_whitespace().next()?.parse::<u64>().ok())
        .map(Duration::from_nanos)
        .sum()
}

/// Waits for the next session start in `log`.
async fn a_session_starts(log: &mut runtime_core::Subscription) {
    loop {
        let entry = log.next().await.expect("log").expect("entry");
        if matches!(&*entry.event, Event::RuntimeSessionStarted(_)) {
            return;
        }
    }
}

/// B9: reopen a file of `events` events and fold them all into a state.
pub async fn sqlite_fold(dir: &Path, events: usize) -> Duration {
    let path = dir.join("fold.db");
    drop(long_notebook(&path, events).await);
    let started = Instant::now();
    let store = SqliteStore::open(&path, "nb").expect("reopen");
    let head = store.head().expect("head");
    let mut state = NotebookState::new();
    let mut log = store.subscribe(1);
    while state.last_seq() < head {
        let entry = log.next().await.expect("log").expect("entry");
        state.apply_entry(&entry);
    }
    let took = started.elapsed();
    assert_eq!(state.entries().len(), events / 10);
    took
}

/// A store that hides its snapshots: an agent on it folds the whole log, as before
/// snapshots existed.
struct WithoutSnapshots(SqliteStore);

#[async_trait::async_trait]
impl Store for WithoutSnapshots {
    async fn commit_batch(
        &self,
        batch: &runtime_core::Batch,
    ) -> Result<u64, runtime_core::StoreError> {
        self.0.commit_batch(batch).await
    }

    fn subscribe(&self, from: u64) -> runtime_core::Subscription {
        self.0.subscribe(from)
    }
}

/// How long an echo agent takes from its start to ready (session active, queue known).
async fn agent_start(store: impl Store + 'static) -> Duration {
    use runtime_core::{AgentOptions, RuntimeAgent};
    let started = Instant::now();
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let ready_tx = std::sync::Mutex::new(Some(ready_tx));
    let agent = RuntimeAgent::new(
        store,
        runtime_native::TokioClock,
        Capabilities::code(),
        AgentOptions::new("bench"),
    )
    .expect("valid options")
    .on_execution(runtime_core::handler::Echo::new(runtime_native::TokioClock))
    .on_ready(move |_| {
        if let Some(ready) = ready_tx.lock().expect("not poisoned").take() {
            let _ = ready.send(Instant::now());
        }
    });
    let handle = agent.handle();
    let task = tokio::spawn(agent.run());
    let ready = ready_rx.await.expect("the agent became ready");
    handle.shutdown();
    let _ = task.await;
    ready.duration_since(started)
}

/// What B17 measured: agent start on a long notebook, folding it all and from a snapshot.
pub struct StartFigures {
    pub full_fold: Summary,
    pub from_snapshot: Summary,
    pub snapshot_bytes: usize,
}

/// B17: an echo agent starts on a notebook of `events` events in a SQLite file: folding
/// the whole log, then from the lean snapshot a first agent left.
pub async fn agent_start_on_a_long_notebook(
    dir: &Path,
    events: usize,
    runs: usize,
) -> StartFigures {
    let path = dir.join("start.db");
    let store = long_notebook(&path, events).await;
    let mut full_fold = Vec::with_capacity(runs);
    for _ in 0..runs {
        let store = SqliteStore::open(&path, "nb").expect("reopen");
        full_fold.push(agent_start(WithoutSnapshots(store)).await);
    }
    // This agent folds it all too, and leaves a snapshot at the head.
    agent_start(SqliteStore::open(&path, "nb").expect("reopen")).await;
    let snapshot = store
        .latest_snapshot(runtime_core::SnapshotKind::Lean)
        .await
        .expect("read")
        .expect("the agent left a snapshot");
    let mut from_snapshot = Vec::with_capacity(runs);
    for _ in 0..runs {
        let store = SqliteStore::open(&path, "nb").expect("reopen");
        from_snapshot.push(agent_start(store).await);
    }
    StartFigures {
        full_fold: Summary::of(&full_fold),
        from_snapshot: Summary::of(&from_snapshot),
        snapshot_bytes: snapshot.state.len(),
    }
}

/// B20: `hubs` hub processes on the PostgreSQL database `database`, `notebooks` writers
/// (each its own connection, spread across the hubs, on its own notebook) committing
/// batches of `batch` events as fast as they can for `duration`. Returns committed batches
/// per second.
pub async fn hubs_throughput(
    hub: &Path,
    dir: &Path,
    database: &str,
    hubs: usize,
    notebooks: usize,
    batch: usize,
    duration: Duration,
) -> f64 {
    let started: Vec<_> = (0..hubs)
        .map(|_| start_hub_on(hub, dir, std::ffi::OsStr::new(database)))
        .collect();
    let writers: Vec<_> = (0..notebooks)
        .map(|n| {
            let url = &started[n % hubs].1;
            hub_store(url, HUB_CLIENT, &format!("throughput-{n}"))
        })
        .collect();
    // Connected and warm before the clock starts.
    for writer in &writers {
        writer.commit(vec![cell_event(0)]).await.expect("commit");
    }
    let deadline = Instant::now() + duration;
    let started_at = Instant::now();
    let counts = futures::future::join_all(writers.iter().map(|writer| async move {
        let mut committed = 0_usize;
        while Instant::now() < deadline {
            let events = (0..batch).map(cell_event).collect();
            writer.commit(events).await.expect("commit");
            committed += 1;
        }
        committed
    }))
    .await;
    let elapsed = started_at.elapsed().as_secs_f64();
    for (hub, _) in started {
        stop(hub);
    }
    counts.iter().sum::<usize>() as f64 / elapsed
}

/// B21: round trips through a hub on the PostgreSQL database `database` whose other
/// `others` notebooks each hold `history` events: the cost of one execution as the
/// database grows.
pub async fn round_trips_among_notebooks(
    hub: &Path,
    echo_agent: &Path,
    dir: &Path,
    database: &str,
    others: usize,
    history: usize,
    samples: usize,
) -> Summary {
    let store = runtime_native::PostgresStore::connect(database, "fill")
        .await
        .expect("the database");
    for n in 0..others {
        let events = (0..history).map(cell_event).collect();
        store
            .notebook(&format!("other-{n}"))
            .commit(events)
            .await
            .expect("commit");
    }
    hub_round_trips_on(
        hub,
        echo_agent,
        dir,
        std::ffi::OsStr::new(database),
        samples,
    )
    .await
}
