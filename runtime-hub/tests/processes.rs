//! The `runtime-hub` binary with real agent and client processes (the workspace's
//! `echo-agent` and `notebook` examples) on 127.0.0.1: cells run through the hub, the
//! agent rides out a `kill -9` and restart of the hub, and a tokens file others can read
//! is refused.
#![allow(clippy::unwrap_used)]

mod support;

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const ALICE: &str = "alice-secret-token-0123456789";
const AGENT: &str = "agent-secret-token-0123456789";

/// An example binary, built by `cargo test --workspace` (or `cargo build --examples`).
fn example(name: &str) -> PathBuf {
    let hub = PathBuf::from(env!("CARGO_BIN_EXE_runtime-hub"));
    let path = hub.parent().unwrap().join("examples").join(name);
    assert!(
        path.exists(),
        "{} is missing: run through `cargo test --workspace` (or `cargo build --examples` first)",
        path.display()
    );
    path
}

struct Home {
    dir: tempfile::TempDir,
}

impl Home {
    fn new() -> Self {
        let home = Home {
            dir: tempfile::tempdir().unwrap(),
        };
        let tokens = format!(
            "[[tokens]]\ntoken = \"{ALICE}\"\nidentity = \"alice\"\nrole = \"user\"\n\n\
             [[tokens]]\ntoken = \"{AGENT}\"\nidentity = \"agent-1\"\nrole = \"agent\"\n"
        );
        std::fs::write(home.tokens(), tokens).unwrap();
        std::fs::set_permissions(home.tokens(), std::fs::Permissions::from_mode(0o600)).unwrap();
        home
    }

    fn tokens(&self) -> PathBuf {
        self.dir.path().join("hub-tokens.toml")
    }

    fn command(&self, program: &Path) -> Command {
        let mut command = Command::new(program);
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("RUNTIME_") {
                command.env_remove(&key);
            }
        }
        command
            .env("XDG_CONFIG_HOME", self.dir.path().join("config"))
            .env("XDG_DATA_HOME", self.dir.path().join("data"))
            .env("RUST_LOG", "info")
            // The processes' log filter, to see what a failed run's processes said (with
            // RUNTIME_TEST_LOG_DIR).
            .env(
                "RUNTIME_LOG",
                std::env::var("RUNTIME_TEST_LOG").unwrap_or_else(|_| "info".to_owned()),
            )
            .stdin(Stdio::null());
        command
    }

    /// The SQLite file the hubs serve unless given a database.
    fn file(&self) -> PathBuf {
        self.dir.path().join("hub.db")
    }

    /// Starts a hub on `listen` serving the home's file; returns it and its WebSocket URL.
    fn hub(&self, listen: &str) -> (Child, String) {
        self.hub_on(listen, self.file().as_os_str())
    }

    /// Starts a hub on `listen` serving `store` (a file or a PostgreSQL URL).
    fn hub_on(&self, listen: &str, store: &std::ffi::OsStr) -> (Child, String) {
        let mut hub = self
            .command(Path::new(env!("CARGO_BIN_EXE_runtime-hub")))
            .args(["--listen", listen, "--tokens"])
            .arg(self.tokens())
            .arg("--store")
            .arg(store)
            .stdout(Stdio::piped())
            .stderr(log_sink("hub"))
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(hub.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let url = line
            .split_whitespace()
            .find(|word| word.starts_with("ws://"))
            .unwrap_or_else(|| panic!("no URL in {line:?}"))
            .trim_end_matches("/sync")
            .to_owned();
        (hub, url)
    }

    fn notebook(&self, url: &str, args: &[&str]) -> Output {
        self.command(&example("notebook"))
            .args([
                "--store",
                url,
                "--auth-token",
                ALICE,
                "--client-id",
                "alice",
            ])
            .args(args)
            .output()
            .unwrap()
    }
}

/// A child process killed (SIGKILL) when dropped, so a failing test leaves none behind.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl std::ops::Deref for Reaped {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for Reaped {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

/// Where a hub's or agent's log goes: nowhere, or a new file in `RUNTIME_TEST_LOG_DIR`
/// when set (to see what the processes of a failed run said).
fn log_sink(name: &str) -> Stdio {
    let Some(dir) = std::env::var_os("RUNTIME_TEST_LOG_DIR") else {
        return Stdio::null();
    };
    static COUNT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = COUNT.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let path = Path::new(&dir).join(format!("{name}-{}-{n}.log", std::process::id()));
    std::fs::File::create(path).unwrap().into()
}

fn ran(output: &Output) -> String {
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn cells_run_through_the_hub_and_the_agent_rides_out_a_hub_restart() {
    let home = Home::new();
    let (mut hub, url) = home.hub("127.0.0.1:0");
    let mut agent = home
        .command(&example("echo-agent"))
        .args([
            "--store",
            &url,
            "--auth-token",
            AGENT,
            "--client-id",
            "agent-1",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    assert_eq!(
        ran(&home.notebook(&url, &["run", "1 + 1"])),
        "Echo: 1 + 1\n"
    );

    // The hub dies without a goodbye and comes back on the same address.
    hub.kill().unwrap();
    hub.wait().unwrap();
    let (mut hub, _) = home.hub(url.trim_start_matches("ws://"));
    assert_eq!(
        ran(&home.notebook(&url, &["run", "after the restart"])),
        "Echo: after the restart\n"
    );
    let shown = ran(&home.notebook(&url, &["show"]));
    assert!(
        shown.contains("Echo: 1 + 1") && shown.contains("Echo: after the restart"),
        "{shown}"
    );

    // A user token cannot pretend to be someone else.
    let impostor = home
        .command(&example("notebook"))
        .args([
            "--store",
            &url,
            "--auth-token",
            ALICE,
            "--client-id",
            "mallory",
            "run",
            "x",
        ])
        .output()
        .unwrap();
    assert!(!impostor.status.success());
    let said = String::from_utf8_lossy(&impostor.stderr);
    assert!(said.contains("authenticated as \"alice\""), "{said}");
    assert!(!said.contains(ALICE), "{said}");

    agent.kill().unwrap();
    agent.wait().unwrap();
    hub.kill().unwrap();
    hub.wait().unwrap();
}

/// The command-line clients reach a `wss://` hub with a private CA through `--ca-file`
/// (or `RUNTIME_CA_FILE`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_trusts_a_private_ca_given_with_ca_file() {
    let home = Home::new();
    let (mut hub, url) = home.hub("127.0.0.1:0");
    let (port, ca_file, _dir) =
        support::tls_proxy(url.trim_start_matches("ws://").to_owned()).await;
    let secure = format!("wss://localhost:{port}");
    let mut queue = home.command(&example("notebook"));
    queue
        .args([
            "--store",
            &secure,
            "--auth-token",
            ALICE,
            "--client-id",
            "alice",
        ])
        .arg("--ca-file")
        .arg(&ca_file)
        .args(["run", "--no-wait", "over tls"]);
    let mut show = home.command(&example("notebook"));
    show.args([
        "--store",
        &secure,
        "--auth-token",
        ALICE,
        "--client-id",
        "alice",
        "show",
    ])
    .env("RUNTIME_CA_FILE", &ca_file);
    let (queued, shown) =
        tokio::task::spawn_blocking(move || (queue.output().unwrap(), show.output().unwrap()))
            .await
            .unwrap();
    ran(&queued);
    assert!(ran(&shown).contains("over tls"), "{}", ran(&shown));
    hub.kill().unwrap();
    hub.wait().unwrap();
}

/// A one-shot command does not wait forever for a hub that is not there, or whose
/// certificate it cannot check: it says so and exits 1 (agents, by contrast, ride it out).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_says_when_it_cannot_reach_the_hub_and_exits() {
    let home = Home::new();
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let nobody = format!("ws://{}", closed.local_addr().unwrap());
    drop(closed);
    let (mut hub, url) = home.hub("127.0.0.1:0");
    let (port, _ca_file, _dir) =
        support::tls_proxy(url.trim_start_matches("ws://").to_owned()).await;
    let untrusted = format!("wss://localhost:{port}");
    let mut attempts: Vec<Command> = [nobody, untrusted]
        .iter()
        .map(|store| {
            let mut command = home.command(&example("notebook"));
            command.args([
                "--store",
                store,
                "--auth-token",
                ALICE,
                "--client-id",
                "alice",
                "status",
            ]);
            command
        })
        .collect();
    let outputs = tokio::task::spawn_blocking(move || {
        let children: Vec<Child> = attempts
            .iter_mut()
            .map(|command| {
                command
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        children
            .into_iter()
            .map(|child| child.wait_with_output().unwrap())
            .collect::<Vec<Output>>()
    })
    .await
    .unwrap();
    for (output, why) in outputs.iter().zip(["connect", "certificate"]) {
        assert_eq!(output.status.code(), Some(1));
        let said = String::from_utf8_lossy(&output.stderr);
        assert!(said.contains("cannot reach the hub"), "{said}");
        assert!(said.to_lowercase().contains(why), "{said}");
        assert!(!said.contains(ALICE), "{said}");
    }
    hub.kill().unwrap();
    hub.wait().unwrap();
}

/// A hub given a PostgreSQL database that does not exist says which and exits, without
/// the password; it does not wait as it does for a server that is down.
#[test]
fn a_hub_on_a_missing_database_says_so_without_the_password() {
    let home = Home::new();
    let server = tests::postgres::server_url();
    let missing = tests::postgres::with_database(&server, "no_such_database").replacen(
        "://postgres@",
        "://postgres:hunter2-secret@",
        1,
    );
    let output = home
        .command(Path::new(env!("CARGO_BIN_EXE_runtime-hub")))
        .args(["--listen", "127.0.0.1:0", "--tokens"])
        .arg(home.tokens())
        .args(["--store", &missing])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let said = String::from_utf8_lossy(&output.stderr);
    assert!(said.contains("no_such_database"), "{said}");
    assert!(!said.contains("hunter2"), "{said}");
}

#[test]
fn a_tokens_file_others_can_read_is_refused() {
    let home = Home::new();
    std::fs::set_permissions(home.tokens(), std::fs::Permissions::from_mode(0o644)).unwrap();
    let started = Instant::now();
    let output = home
        .command(Path::new(env!("CARGO_BIN_EXE_runtime-hub")))
        .args(["--listen", "127.0.0.1:0", "--tokens"])
        .arg(home.tokens())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let said = String::from_utf8_lossy(&output.stderr);
    assert!(said.contains("chmod 600"), "{said}");
    assert!(!said.contains(ALICE), "{said}");
    assert!(started.elapsed() < Duration::from_secs(60));
}

/// A proxy to `target` that cuts every connection every 300-1000 ms; returns its port.
async fn cutting_proxy(target: String, seed: u64) -> u16 {
    let proxy = support::proxy(target).await;
    let cut = proxy.cut;
    tokio::spawn(async move {
        let mut random = seed;
        loop {
            random = random
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            tokio::time::sleep(Duration::from_millis(300 + (random >> 33) % 700)).await;
            cut.send_modify(|n| *n += 1);
        }
    });
    proxy.address.rsplit_once(':').unwrap().1.parse().unwrap()
}

/// 1,000 cells through a hub on a SQLite file while the agent is killed with SIGKILL and
/// restarted every few hundred milliseconds, its connection is cut at random by a proxy,
/// and the hub itself is killed with SIGKILL and restarted mid-run, twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_cells_survive_agent_kills_hub_kills_and_cut_connections() {
    survive_faults(FaultRun {
        hubs: 1,
        postgres: None,
        cells: 1000,
    })
    .await;
}

/// Three hubs on one PostgreSQL database, the agent on each in turn and clients on all:
/// 5,000 cells while the agent is killed and restarted, its connections cut, hubs killed
/// with SIGKILL and restarted, and PostgreSQL itself restarted (`pg_ctl restart -m fast`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_thousand_cells_on_three_hubs_survive_kills_and_a_postgres_restart() {
    survive_faults(FaultRun {
        hubs: 3,
        postgres: Some(tests::postgres::fresh_database().await),
        cells: 5000,
    })
    .await;
}

/// A fault run: `cells` cells through `hubs` hubs serving one store.
struct FaultRun {
    hubs: usize,
    /// The PostgreSQL database the hubs serve, restarted at [`RESTART_POSTGRES_AT`]; a
    /// SQLite file if none.
    postgres: Option<String>,
    cells: usize,
}

/// The run's phases: the agent is killed and restarted after each but the first.
const PHASES: usize = 25;
/// The phases after which a hub is killed and restarted (hub `phase % hubs`).
const HUB_KILLS_AT: [usize; 2] = [8, 16];
/// The phase after which PostgreSQL restarts, in a run on it.
const RESTART_POSTGRES_AT: usize = 12;

/// Runs `run`: cells are requested `cells / PHASES` at a time through the hubs in turn;
/// each phase ends (300-1200 ms later) with a SIGKILL and restart of the agent, on the next
/// hub, and some with a hub's or PostgreSQL's restart, so every phase meets the faults
/// however fast the machine. Then the last agent serves the rest. Afterwards, over the
/// whole log: every cell was requested once and ended, none started twice, every one that
/// succeeded has its one output, and nothing is left running.
#[allow(clippy::print_stderr)] // the seed and the run's figures, for a failed run's report
async fn survive_faults(run: FaultRun) {
    use runtime_core::sync::BearerToken;
    use runtime_core::*;
    use runtime_native::hub::{self, HubOptions};

    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    eprintln!("seed {seed}");
    let home = Home::new();
    let store_arg: std::ffi::OsString = match &run.postgres {
        Some(url) => url.into(),
        None => home.file().into(),
    };
    let mut hubs = Vec::new();
    let mut addresses = Vec::new();
    let mut agent_urls = Vec::new();
    for n in 0..run.hubs {
        let (hub, url) = home.hub_on("127.0.0.1:0", &store_arg);
        let address = url.trim_start_matches("ws://").to_owned();
        let proxy = cutting_proxy(address.clone(), seed + n as u64).await;
        agent_urls.push(format!("ws://127.0.0.1:{proxy}"));
        addresses.push(address);
        hubs.push(Reaped(hub));
    }
    let spawn_agent = |on: usize| {
        let agent = home
            .command(&example("echo-agent"))
            .args([
                "--store",
                &agent_urls[on % run.hubs],
                "--auth-token",
                AGENT,
                "--client-id",
                "agent-1",
            ])
            .args(["--lease-secs", "2", "--renew-secs", "0.5"])
            .stdout(Stdio::null())
            .stderr(log_sink("agent"))
            .spawn()
            .unwrap();
        Reaped(agent)
    };
    let mut agent = spawn_agent(0);
    let options = HubOptions {
        client: runtime_core::sync::HubOptions {
            backoff_base: Duration::from_millis(10),
            backoff_cap: Duration::from_millis(200),
            ..Default::default()
        },
        ca_file: None,
    };
    let clients: Vec<_> = addresses
        .iter()
        .map(|address| {
            let url = format!("ws://{address}");
            let store = hub::connect(&url, BearerToken::new(ALICE), "default", options.clone());
            let store = store.unwrap();
            (NotebookClient::new(store.clone(), "alice"), store)
        })
        .collect();
    let cell = clients[0].0.create_cell(CellType::Code, "0").await.unwrap();
    let per_phase = run.cells.div_ceil(PHASES);
    let mut queued = Vec::new();
    let started = Instant::now();
    let mut watcher = NotebookWatcher::new(&clients[0].1);
    let mut random = seed | 1;
    let mut next_kill = tokio::time::Instant::now();
    let mut kills = 0;
    let waited = tokio::time::timeout(Duration::from_secs(600), async {
        loop {
            let done = queued
                .iter()
                .filter(|id| watcher.state().entry(id).is_some_and(|e| e.is_completed()))
                .count();
            if kills == PHASES && done == queued.len() {
                return;
            }
            tokio::select! {
                next = watcher.next() => { next.unwrap(); }
                () = tokio::time::sleep_until(next_kill), if kills < PHASES => {
                    for _ in 0..per_phase {
                        if queued.len() < run.cells {
                            let source = format!("cell {}", queued.len());
                            let (client, _) = &clients[queued.len() % run.hubs];
                            queued.push(client.execute(&cell, CellType::Code, &source).await.unwrap());
                        }
                    }
                    if kills > 0 {
                        agent.kill().unwrap();
                        agent.wait().unwrap();
                        if HUB_KILLS_AT.contains(&kills) {
                            let n = kills % run.hubs;
                            hubs[n].kill().unwrap();
                            hubs[n].wait().unwrap();
                            hubs[n] = Reaped(home.hub_on(&addresses[n], &store_arg).0);
                        }
                        if kills == RESTART_POSTGRES_AT && run.postgres.is_some() {
                            restart_postgres();
                        }
                        agent = spawn_agent(kills);
                    }
                    kills += 1;
                    random = random.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                    next_kill = tokio::time::Instant::now() + Duration::from_millis(300 + (random >> 33) % 900);
                }
            }
        }
    })
    .await;
    if waited.is_err() {
        let state = watcher.state();
        let ended = queued
            .iter()
            .filter(|id| state.entry(id).is_some_and(|e| e.is_completed()))
            .count();
        panic!(
            "not every cell ended (seed {seed}): {ended} of {} ended, {} pending, {} in \
             progress, {kills} phases; the active session: {:?}",
            queued.len(),
            state.pending().count(),
            state.in_progress().count(),
            state.active_session().map(|session| &session.session_id),
        );
    }
    assert_eq!(queued.len(), run.cells);
    agent.kill().unwrap();
    agent.wait().unwrap();
    for hub in &mut hubs {
        hub.kill().unwrap();
        hub.wait().unwrap();
    }

    // The whole log, from the store itself.
    let file: Box<dyn Store> = match &run.postgres {
        Some(url) => Box::new(
            runtime_native::PostgresStore::connect(url, "default")
                .await
                .unwrap(),
        ),
        None => Box::new(runtime_native::SqliteStore::open(home.file(), "default").unwrap()),
    };
    let head = file.head().await.unwrap();
    let mut log = file.subscribe(1);
    let mut state = NotebookState::new();
    let mut starts = std::collections::HashMap::<QueueId, usize>::new();
    let mut requests = 0;
    while state.last_seq() < head {
        let entry = futures::StreamExt::next(&mut log).await.unwrap().unwrap();
        assert_eq!(entry.seq, state.last_seq() + 1, "gapless (seed {seed})");
        let applied = state.apply_entry(&entry);
        match &*entry.event {
            Event::ExecutionStarted(start) if applied == Applied::Applied => {
                *starts.entry(start.queue_id.clone()).or_default() += 1;
            }
            Event::ExecutionRequested(_) => requests += 1,
            _ => {}
        }
    }
    assert_eq!(
        requests, run.cells,
        "each cell requested once (seed {seed})"
    );
    let mut statuses = std::collections::BTreeMap::<String, usize>::new();
    for (n, queue_id) in queued.iter().enumerate() {
        let entry = state.entry(queue_id).unwrap();
        assert!(entry.is_completed(), "cell {n} did not end (seed {seed})");
        assert!(
            starts.get(queue_id).copied().unwrap_or(0) <= 1,
            "cell {n} started twice (seed {seed})"
        );
        let status = entry.state.status().unwrap();
        *statuses.entry(format!("{status:?}")).or_default() += 1;
        if status == CompletionStatus::Success {
            assert_eq!(
                entry.outputs.len(),
                1,
                "cell {n}: {:?} (seed {seed})",
                entry.outputs
            );
            match &entry.outputs[0].kind {
                OutputKind::Result { data, .. } => {
                    assert_eq!(
                        data.text(),
                        Some(format!("Echo: cell {n}").as_str()),
                        "seed {seed}"
                    )
                }
                other => panic!("cell {n}: {other:?} (seed {seed})"),
            }
        }
    }
    assert!(
        state.in_progress().next().is_none(),
        "nothing left running or claimed (seed {seed})"
    );
    eprintln!(
        "{} cells on {} hub(s) in {:.1} s with {} agent kills, {} hub kills{}; statuses \
         {statuses:?}; log of {head} events",
        run.cells,
        run.hubs,
        started.elapsed().as_secs_f64(),
        PHASES - 1,
        HUB_KILLS_AT.len(),
        if run.postgres.is_some() {
            " and a PostgreSQL restart"
        } else {
            ""
        },
    );
}

/// Restarts the test's PostgreSQL cluster (`scripts/postgres` names it), as its operator
/// would: `pg_ctl restart -m fast` ends every connection.
fn restart_postgres() {
    let (Ok(data), Ok(bin)) = (
        std::env::var("RUNTIME_PG_DATA"),
        std::env::var("RUNTIME_PG_BIN"),
    ) else {
        panic!("this test restarts PostgreSQL: run it on a cluster of scripts/postgres");
    };
    let pg_ctl = format!("{bin}/pg_ctl");
    let args = ["-D", &data, "-m", "fast", "-w", "-t", "60", "restart"];
    let root = Command::new("id").arg("-u").output().unwrap().stdout == b"0\n";
    let mut command = if root {
        let mut command = Command::new("runuser");
        command.args(["-u", "postgres", "--", &pg_ctl]);
        command
    } else {
        Command::new(&pg_ctl)
    };
    let status = command
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "pg_ctl restart failed");
}
