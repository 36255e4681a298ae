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
            .stdin(Stdio::null());
        command
    }

    /// Starts the hub on `listen`; returns it and its WebSocket URL.
    fn hub(&self, listen: &str) -> (Child, String) {
        let mut hub = self
            .command(Path::new(env!("CARGO_BIN_EXE_runtime-hub")))
            .args(["--listen", listen, "--tokens"])
            .arg(self.tokens())
            .arg("--store")
            .arg(self.dir.path().join("hub.db"))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
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

/// 1,000 cells through a hub while the agent is killed with SIGKILL and restarted every
/// few hundred milliseconds, its connection is cut at random by a proxy, and the hub itself
/// is killed with SIGKILL and restarted mid-run. Afterwards, over the whole log: every cell
/// was requested once and ended, none started twice, every one that succeeded has its one
/// output, and nothing is left running.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_cells_survive_agent_kills_hub_kills_and_cut_connections() {
    use runtime_core::sync::BearerToken;
    use runtime_core::*;
    use runtime_native::hub::{self, HubOptions};

    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    eprintln!("seed {seed}");
    let home = Home::new();
    let (mut hub, url) = home.hub("127.0.0.1:0");
    let address = url.trim_start_matches("ws://").to_owned();
    let proxy = cutting_proxy(address.clone(), seed).await;
    let agent_url = format!("ws://127.0.0.1:{proxy}");
    let spawn_agent = || {
        home.command(&example("echo-agent"))
            .args([
                "--store",
                &agent_url,
                "--auth-token",
                AGENT,
                "--client-id",
                "agent-1",
            ])
            .args(["--lease-secs", "2", "--renew-secs", "0.5"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    };
    let mut agent = spawn_agent();
    let options = HubOptions {
        client: runtime_core::sync::HubOptions {
            backoff_base: Duration::from_millis(10),
            backoff_cap: Duration::from_millis(200),
            ..Default::default()
        },
        ca_file: None,
    };
    let store = hub::connect(&url, BearerToken::new(ALICE), "default", options).unwrap();
    let client = NotebookClient::new(store.clone(), "alice");
    let cell = client.create_cell(CellType::Code, "0").await.unwrap();
    let mut queued = Vec::new();
    let started = Instant::now();
    // 40 cells at a time, each batch followed by a SIGKILL and restart of the agent
    // (300-1200 ms apart, 25 in all), and of the hub at the 12th: every phase of the run
    // meets the faults, however fast the machine. Then the last agent serves the rest.
    let mut watcher = NotebookWatcher::new(&store);
    let mut random = seed | 1;
    let mut next_kill = tokio::time::Instant::now();
    let mut kills = 0;
    let waited = tokio::time::timeout(Duration::from_secs(300), async {
        loop {
            let done = queued
                .iter()
                .filter(|id| watcher.state().entry(id).is_some_and(|e| e.is_completed()))
                .count();
            if kills == 25 && done == queued.len() {
                return;
            }
            tokio::select! {
                next = watcher.next() => { next.unwrap(); }
                () = tokio::time::sleep_until(next_kill), if kills < 25 => {
                    for _ in 0..40 {
                        if queued.len() < 1000 {
                            let source = format!("cell {}", queued.len());
                            queued.push(client.execute(&cell, CellType::Code, &source).await.unwrap());
                        }
                    }
                    if kills > 0 {
                        agent.kill().unwrap();
                        agent.wait().unwrap();
                        if kills == 12 {
                            hub.kill().unwrap();
                            hub.wait().unwrap();
                            hub = home.hub(&address).0;
                        }
                        agent = spawn_agent();
                    }
                    kills += 1;
                    random = random.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                    next_kill = tokio::time::Instant::now() + Duration::from_millis(300 + (random >> 33) % 900);
                }
            }
        }
    })
    .await;
    assert!(waited.is_ok(), "not every cell ended (seed {seed})");
    assert_eq!(queued.len(), 1000);
    agent.kill().unwrap();
    agent.wait().unwrap();
    hub.kill().unwrap();
    hub.wait().unwrap();

    // The whole log, from the hub's file.
    let file =
        runtime_native::SqliteStore::open(home.dir.path().join("hub.db"), "default").unwrap();
    let head = file.head().unwrap();
    let mut log = file.subscribe(1);
    let mut state = NotebookState::new();
    let mut starts = std::collections::HashMap::<QueueId, usize>::new();
    let mut requests = 0;
    while state.last_seq() < head {
        let entry = futures::StreamExt::next(&mut log).await.unwrap().unwrap();
        let applied = state.apply_entry(&entry);
        match &*entry.event {
            Event::ExecutionStarted(start) if applied == Applied::Applied => {
                *starts.entry(start.queue_id.clone()).or_default() += 1;
            }
            Event::ExecutionRequested(_) => requests += 1,
            _ => {}
        }
    }
    assert_eq!(requests, 1000, "each cell requested once (seed {seed})");
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
        "nothing left running (seed {seed})"
    );
    eprintln!(
        "1000 cells in {:.1} s with 24 agent kills and a hub kill; statuses {statuses:?}; \
         log of {head} events",
        started.elapsed().as_secs_f64()
    );
}
