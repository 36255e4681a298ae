//! The example binaries as real processes on real SQLite files, with real signals.
//!
//! `cargo test -p examples` builds the examples first; the tests find them next to the test
//! binary's directory.
#![allow(clippy::unwrap_used, clippy::print_stderr)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use runtime_core::{
    CellType, CompletionStatus, EntryState, Event, LogEntry, NotebookClient, NotebookState,
    NotebookWatcher, QueueId, SessionState, Store, TerminationReason,
};
use runtime_native::SqliteStore;

fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().and_then(Path::parent).unwrap();
    let path = profile_dir.join("examples").join(name);
    assert!(
        path.exists(),
        "{} is missing: run through `cargo test -p examples`",
        path.display()
    );
    path
}

/// A private home for one test: config and data directories, and the store file.
struct Home {
    dir: tempfile::TempDir,
}

impl Home {
    fn new() -> Self {
        Home {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn store_path(&self) -> PathBuf {
        self.dir.path().join("data").join("notebooks.db")
    }

    fn config_dir(&self) -> PathBuf {
        self.dir.path().join("config").join("runtime-agents")
    }

    /// A command for an example binary with nothing inherited that could change it.
    fn command(&self, name: &str) -> Command {
        self.isolated(Command::new(binary(name)))
    }

    /// `command` with nothing inherited that could change what an example binary does.
    fn isolated(&self, mut command: Command) -> Command {
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("RUNTIME_") {
                command.env_remove(&key);
            }
        }
        command
            .env("XDG_CONFIG_HOME", self.dir.path().join("config"))
            .env("XDG_DATA_HOME", self.dir.path().join("data-home"))
            .env("RUNTIME_STORE", self.store_path())
            .env("RUST_LOG", "info")
            .stdin(Stdio::null());
        command
    }

    /// An echo agent for alice whose cancelled executions get `grace_secs` to stop.
    fn agent(&self, grace_secs: &str) -> Child {
        self.command("echo-agent")
            .args(["--client-id", "alice", "--cancel-grace-secs", grace_secs])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }

    fn store(&self) -> SqliteStore {
        SqliteStore::open(self.store_path(), "default").unwrap()
    }

    fn notebook(&self, args: &[&str]) -> Output {
        self.command("notebook")
            .args(["--client-id", "bob"])
            .args(args)
            .output()
            .unwrap()
    }
}

/// Sends a real signal (`TERM`, `INT`, `HUP`) with the system's `kill`.
fn signal(child: &Child, name: &str) {
    let sent = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(sent.success(), "could not send SIG{name} to {}", child.id());
}

fn wait_with_timeout(child: &mut Child, limit: Duration) -> ExitStatus {
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            panic!("process did not exit within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn stderr_of(child: &mut Child) -> String {
    let mut text = String::new();
    if let Some(stderr) = child.stderr.take() {
        for line in BufReader::new(stderr).lines() {
            text.push_str(&line.unwrap_or_default());
            text.push('\n');
        }
    }
    text
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Folds the store until `done` holds, failing after `limit` instead of hanging.
fn wait_for_state(
    store: &SqliteStore,
    limit: Duration,
    mut done: impl FnMut(&NotebookState) -> bool,
) -> NotebookState {
    runtime().block_on(async {
        let mut watcher = NotebookWatcher::new(store);
        tokio::time::timeout(limit, watcher.wait_until(&mut done))
            .await
            .unwrap_or_else(|_| panic!("state not reached within {limit:?}"))
            .unwrap();
        watcher.state().clone()
    })
}

fn current_state(store: &SqliteStore) -> NotebookState {
    let head = store.head().unwrap();
    wait_for_state(store, Duration::from_secs(10), |state| {
        state.last_seq() >= head
    })
}

fn submit(store: &SqliteStore, source: &str) -> QueueId {
    let client = NotebookClient::new(store.clone(), "bob");
    runtime()
        .block_on(client.run_cell(CellType::Code, source))
        .unwrap()
        .1
}

/// An entry's outputs as text, in order.
fn outputs_text(entry: &runtime_core::QueueEntry) -> String {
    entry
        .outputs
        .iter()
        .map(|output| examples::stored_output_text(&output.kind))
        .collect()
}

fn running(state: &NotebookState, queue_id: &QueueId) -> bool {
    state
        .entry(queue_id)
        .is_some_and(|e| matches!(e.state, EntryState::Executing { .. }))
}

fn completed(state: &NotebookState, queue_id: &QueueId) -> bool {
    state.entry(queue_id).is_some_and(|e| e.is_completed())
}

#[test]
fn sigterm_during_a_long_execution_cancels_it_ends_the_session_and_exits_zero() {
    let home = Home::new();
    let mut agent = home.agent("2");
    let store = home.store();
    let long = submit(&store, "%sleep 60");
    wait_for_state(&store, Duration::from_secs(20), |s| running(s, &long));
    let signalled = Instant::now();
    signal(&agent, "TERM");
    let status = wait_with_timeout(&mut agent, Duration::from_secs(10));
    assert!(
        status.success(),
        "exit status {status}: {}",
        stderr_of(&mut agent)
    );
    assert!(
        signalled.elapsed() < Duration::from_secs(2),
        "within the 2 s grace"
    );
    let state = current_state(&store);
    let entry = state.entry(&long).unwrap();
    assert_eq!(entry.state.status(), Some(CompletionStatus::Cancelled));
    let session = &state.sessions()[0];
    assert_eq!(
        session.state,
        SessionState::Ended(TerminationReason::Shutdown)
    );
}

#[test]
fn a_handler_that_ignores_cancel_is_dropped_after_the_grace_and_a_second_signal_exits_at_once() {
    let home = Home::new();
    let store = home.store();
    // Graceful: the stubborn cell is dropped after the 2 s grace, and the process exits 0.
    let mut agent = home.agent("2");
    let stubborn = submit(&store, "%block 60");
    wait_for_state(&store, Duration::from_secs(20), |s| running(s, &stubborn));
    let signalled = Instant::now();
    signal(&agent, "INT");
    let status = wait_with_timeout(&mut agent, Duration::from_secs(10));
    assert!(status.success(), "exit status {status}");
    let waited = signalled.elapsed();
    assert!(
        waited >= Duration::from_millis(1900),
        "it waited for the grace: {waited:?}"
    );
    let state = current_state(&store);
    let EntryState::Completed { status, error } = &state.entry(&stubborn).unwrap().state else {
        panic!()
    };
    assert_eq!(*status, CompletionStatus::Cancelled);
    assert!(
        error
            .as_deref()
            .unwrap_or_default()
            .contains("did not stop within"),
        "{error:?}"
    );

    // Impatient: a second signal during that wait exits at once, non-zero.
    let mut agent = home.agent("60");
    let stubborn = submit(&store, "%block 60");
    wait_for_state(&store, Duration::from_secs(20), |s| running(s, &stubborn));
    signal(&agent, "TERM");
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        agent.try_wait().unwrap().is_none(),
        "still finishing after the first signal"
    );
    signal(&agent, "TERM");
    let status = wait_with_timeout(&mut agent, Duration::from_secs(5));
    assert_eq!(status.code(), Some(runtime_native::FORCED_EXIT_CODE));
}

#[test]
fn sighup_is_not_fatal() {
    let home = Home::new();
    let mut agent = home.agent("2");
    let store = home.store();
    wait_for_state(&store, Duration::from_secs(20), |s| {
        s.active_session().is_some()
    });
    signal(&agent, "HUP");
    let cell = submit(&store, "still here?");
    let state = wait_for_state(&store, Duration::from_secs(20), |s| completed(s, &cell));
    assert_eq!(
        state.entry(&cell).unwrap().state.status(),
        Some(CompletionStatus::Success)
    );
    assert!(agent.try_wait().unwrap().is_none());
    signal(&agent, "TERM");
    assert!(wait_with_timeout(&mut agent, Duration::from_secs(10)).success());
}

#[test]
fn after_kill_9_the_next_agent_ends_the_lost_execution_and_serves_the_queue() {
    let home = Home::new();
    let mut first = home.agent("2");
    let store = home.store();
    let lost = submit(&store, "%sleep 60");
    let queued = submit(&store, "after the crash");
    wait_for_state(&store, Duration::from_secs(20), |s| running(s, &lost));
    first.kill().unwrap(); // SIGKILL: no goodbye
    first.wait().unwrap();

    let mut second = home.agent("2");
    let state = wait_for_state(&store, Duration::from_secs(20), |s| {
        completed(s, &lost) && completed(s, &queued)
    });
    assert_eq!(
        state.entry(&lost).unwrap().state.status(),
        Some(CompletionStatus::RuntimeLost)
    );
    assert_eq!(
        state.entry(&queued).unwrap().state.status(),
        Some(CompletionStatus::Success)
    );
    let starts = state.sessions().len();
    assert_eq!(starts, 2);
    signal(&second, "TERM");
    assert!(wait_with_timeout(&mut second, Duration::from_secs(10)).success());
}

#[test]
fn two_agents_started_together_never_both_run_an_entry() {
    for round in 0..5 {
        let home = Home::new();
        let store = home.store();
        let cells: Vec<QueueId> = (0..8)
            .map(|n| submit(&store, &format!("cell {n}")))
            .collect();
        let mut agents = [home.agent("2"), home.agent("2")];
        wait_for_state(&store, Duration::from_secs(30), |s| {
            cells.iter().all(|q| completed(s, q))
        });
        for agent in &mut agents {
            if agent.try_wait().unwrap().is_none() {
                signal(agent, "TERM");
                wait_with_timeout(agent, Duration::from_secs(10));
            }
        }
        let state = current_state(&store);
        let mut results: HashMap<QueueId, usize> = HashMap::new();
        let mut starts: HashMap<QueueId, usize> = HashMap::new();
        let mut replay = NotebookState::new();
        for entry in runtime().block_on(read_all(&store)) {
            let applied = replay.apply_entry(&entry) == runtime_core::Applied::Applied;
            match &*entry.event {
                // Every result written, applied or fenced: one means one handler run.
                Event::ExecuteResultAdded(e) => {
                    *results.entry(e.queue_id.clone()).or_default() += 1
                }
                Event::ExecutionStarted(e) if applied => {
                    *starts.entry(e.queue_id.clone()).or_default() += 1
                }
                _ => {}
            }
        }
        for queue_id in &cells {
            let ran = results.get(queue_id).copied().unwrap_or(0);
            assert!(ran <= 1, "round {round}: {queue_id} ran {ran} times");
            assert!(
                starts.get(queue_id).copied().unwrap_or(0) <= 1,
                "round {round}: started twice"
            );
            // The loser of the race may have started an entry and been displaced: it is then
            // runtime_lost, never re-run; everything else succeeded exactly once.
            match state.entry(queue_id).unwrap().state.status() {
                Some(CompletionStatus::Success) => assert_eq!(ran, 1),
                Some(CompletionStatus::RuntimeLost) => {}
                other => panic!("round {round}: {queue_id} ended {other:?}"),
            }
        }
    }
}

async fn read_all(store: &SqliteStore) -> Vec<LogEntry> {
    use futures::StreamExt;
    let head = store.head().unwrap() as usize;
    store
        .subscribe(1)
        .take(head)
        .map(|e| e.unwrap())
        .collect()
        .await
}

#[test]
fn a_credentials_file_others_can_read_is_refused_and_a_private_one_is_used() {
    use std::os::unix::fs::PermissionsExt;
    let home = Home::new();
    std::fs::create_dir_all(home.config_dir()).unwrap();
    let credentials = home.config_dir().join("credentials.toml");
    std::fs::write(&credentials, "client_id = \"carol\"\ntoken = \"hunter2\"\n").unwrap();
    std::fs::set_permissions(&credentials, std::fs::Permissions::from_mode(0o644)).unwrap();
    let refused = home.command("notebook").args(["status"]).output().unwrap();
    assert_eq!(refused.status.code(), Some(2));
    let message = String::from_utf8_lossy(&refused.stderr);
    assert!(
        message.contains("readable by other users") && message.contains("chmod 600"),
        "{message}"
    );
    assert!(!message.contains("hunter2"), "the secret never shows");

    std::fs::set_permissions(&credentials, std::fs::Permissions::from_mode(0o600)).unwrap();
    let queued = home
        .command("notebook")
        .args(["run", "--no-wait", "x"])
        .output()
        .unwrap();
    assert!(
        queued.status.success(),
        "{}",
        String::from_utf8_lossy(&queued.stderr)
    );
    let state = current_state(&home.store());
    assert_eq!(
        state.entries().next().expect("an entry").requested_by,
        "carol",
        "the client id came from the file"
    );
}

#[test]
fn no_client_id_exits_2_listing_the_three_ways_to_give_one() {
    let home = Home::new();
    for binary in ["notebook", "echo-agent"] {
        let mut command = home.command(binary);
        if binary == "notebook" {
            command.arg("status");
        }
        let output = command.output().unwrap();
        assert_eq!(output.status.code(), Some(2), "{binary}");
        let message = String::from_utf8_lossy(&output.stderr);
        for way in [
            "--client-id",
            "RUNTIME_CLIENT_ID",
            "client_id = ",
            "credentials.toml",
        ] {
            assert!(
                message.contains(way),
                "{binary}: {way} missing from: {message}"
            );
        }
    }
}

#[test]
fn bad_values_exit_2_naming_the_flag_and_the_environment_variable() {
    let home = Home::new();
    let from_flag = home
        .command("echo-agent")
        .args(["--client-id", "a", "--lease-secs", "soon"])
        .output()
        .unwrap();
    let from_env = home
        .command("echo-agent")
        .args(["--client-id", "a"])
        .env("RUNTIME_LEASE_SECS", "-3")
        .output()
        .unwrap();
    for output in [from_flag, from_env] {
        assert_eq!(output.status.code(), Some(2));
        let message = String::from_utf8_lossy(&output.stderr);
        assert!(
            message.contains("--lease-secs") && message.contains("RUNTIME_LEASE_SECS"),
            "{message}"
        );
    }
    let contradictory = home
        .command("echo-agent")
        .args([
            "--client-id",
            "a",
            "--lease-secs",
            "5",
            "--renew-secs",
            "10",
        ])
        .output()
        .unwrap();
    assert_eq!(contradictory.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&contradictory.stderr)
            .contains("--renew-secs / RUNTIME_RENEW_SECS")
    );
    std::fs::create_dir_all(home.config_dir()).unwrap();
    std::fs::write(
        home.config_dir().join("config.toml"),
        "lease_secs = \"long\"\n",
    )
    .unwrap();
    let bad_file = home
        .command("echo-agent")
        .args(["--client-id", "a"])
        .output()
        .unwrap();
    assert_eq!(bad_file.status.code(), Some(2));
    let message = String::from_utf8_lossy(&bad_file.stderr);
    assert!(
        message.contains("config.toml") && message.contains("lease_secs"),
        "{message}"
    );
}

#[test]
fn settings_come_from_the_flag_then_the_environment_then_the_file() {
    let home = Home::new();
    std::fs::create_dir_all(home.config_dir()).unwrap();
    std::fs::write(
        home.config_dir().join("config.toml"),
        "notebook = \"from-file\"\n",
    )
    .unwrap();
    let queue = |command: &mut Command| {
        let output = command
            .args(["--client-id", "bob", "run", "--no-wait", "x"])
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
    };
    queue(&mut home.command("notebook"));
    queue(home.command("notebook").env("RUNTIME_NOTEBOOK", "from-env"));
    queue(
        home.command("notebook")
            .env("RUNTIME_NOTEBOOK", "from-env")
            .args(["--notebook", "from-flag"]),
    );
    let notebooks: Vec<String> = home
        .store()
        .notebooks()
        .unwrap()
        .into_iter()
        .map(|info| info.id)
        .collect();
    assert_eq!(notebooks, ["from-env", "from-file", "from-flag"]);
}

#[test]
fn the_notebook_client_runs_cancels_and_shows_cells_served_by_an_agent_in_another_process() {
    let home = Home::new();
    let mut agent = home.agent("2");
    let ran = home.notebook(&["run", "1 + 1"]);
    assert!(
        ran.status.success(),
        "{}",
        String::from_utf8_lossy(&ran.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&ran.stdout), "Echo: 1 + 1\n");
    let said = String::from_utf8_lossy(&ran.stderr);
    assert!(
        said.starts_with("[queued ") && said.ends_with("[success]\n"),
        "{said}"
    );

    // The source from stdin, as it is.
    let mut piped = home
        .command("notebook")
        .args(["--client-id", "bob", "run", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut piped.stdin.take().unwrap(), b"x = 1\ny = 2").unwrap();
    let piped = piped.wait_with_output().unwrap();
    assert!(piped.status.success());
    assert_eq!(
        String::from_utf8_lossy(&piped.stdout),
        "Echo: x = 1\ny = 2\n"
    );

    let json = home.notebook(&["--json", "run", "--type", "ai", "stream this answer to me"]);
    assert!(json.status.success());
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&json.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(
        lines
            .iter()
            .any(|l| l["type"] == "v1.MarkdownOutputAppended"),
        "streamed: {lines:?}"
    );
    assert_eq!(lines.last().unwrap()["status"], "success");

    let failed = home.notebook(&["run", "%sleep never"]);
    assert_eq!(failed.status.code(), Some(1), "a failed cell exits 1");
    assert!(failed.stdout.is_empty(), "a cell's error goes to stderr");
    let said = String::from_utf8_lossy(&failed.stderr);
    assert!(
        said.contains("]\nUsageError: %sleep takes seconds"),
        "{said}"
    );

    let slow = home.notebook(&["run", "--no-wait", "%sleep 60"]);
    let queue_id = String::from_utf8_lossy(&slow.stdout).trim().to_owned();
    let store = home.store();
    wait_for_state(&store, Duration::from_secs(20), |s| {
        running(s, &QueueId::from(queue_id.as_str()))
    });
    let status = home.notebook(&["--json", "status"]);
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(status["queue"][0]["state"], "running");
    assert_eq!(status["sessions"][0]["active"], true);
    assert!(home.notebook(&["cancel", &queue_id]).status.success());
    let queue_id = QueueId::from(queue_id.as_str());
    let state = wait_for_state(&store, Duration::from_secs(20), |s| completed(s, &queue_id));
    assert_eq!(
        state.entry(&queue_id).unwrap().state.status(),
        Some(CompletionStatus::Cancelled)
    );

    // Cancelling what ended, or what never was, is an error, not "cancel requested".
    let again = home.notebook(&["cancel", queue_id.as_str()]);
    assert_eq!(again.status.code(), Some(1));
    let said = String::from_utf8_lossy(&again.stderr);
    assert!(said.contains("already ended: cancelled"), "{said}");
    let unknown = home.notebook(&["cancel", "no-such-id"]);
    assert_eq!(unknown.status.code(), Some(1));
    let said = String::from_utf8_lossy(&unknown.stderr);
    assert!(said.contains("no execution no-such-id"), "{said}");

    assert!(home.notebook(&["title", "Arithmetic"]).status.success());
    let shown = String::from_utf8_lossy(&home.notebook(&["show"]).stdout).into_owned();
    assert!(shown.starts_with("# Arithmetic\n"), "{shown}");
    assert!(
        shown.contains("[1] code: 1 + 1\n    Echo: 1 + 1"),
        "{shown}"
    );
    let listed = store.notebooks().unwrap();
    assert_eq!(listed[0].title.as_deref(), Some("Arithmetic"));
    signal(&agent, "TERM");
    assert!(wait_with_timeout(&mut agent, Duration::from_secs(10)).success());
}

/// `notebook run` in the background; its cell's queue id once the agent runs it.
fn running_cell(home: &Home, source: &str) -> (Child, QueueId) {
    let child = home
        .command("notebook")
        .args(["--client-id", "bob", "run", source])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The watcher checks every state it folds through: look for this cell, not any.
    let executing = |s: &NotebookState| {
        s.in_progress()
            .find(|e| e.source == source && matches!(e.state, EntryState::Executing { .. }))
            .map(|e| e.queue_id.clone())
    };
    let state = wait_for_state(&home.store(), Duration::from_secs(20), |s| {
        executing(s).is_some()
    });
    let queue_id = executing(&state).unwrap();
    (child, queue_id)
}

/// Ctrl-C during `notebook run` cancels the cell and waits for its truthful end; the exit
/// code says it was cancelled. A second Ctrl-C leaves a cell that ignores the cancel.
#[test]
fn ctrl_c_during_run_cancels_the_cell_and_a_second_one_leaves() {
    let home = Home::new();
    let mut agent = home.agent("30");
    let (mut run, queue_id) = running_cell(&home, "%sleep 60");
    signal(&run, "INT");
    assert_eq!(
        wait_with_timeout(&mut run, Duration::from_secs(20)).code(),
        Some(3)
    );
    let mut said = String::new();
    std::io::Read::read_to_string(run.stderr.as_mut().unwrap(), &mut said).unwrap();
    assert!(
        said.contains("cancelling") && said.contains("[cancelled"),
        "{said}"
    );
    let state = wait_for_state(&home.store(), Duration::from_secs(5), |s| {
        completed(s, &queue_id)
    });
    assert_eq!(
        state.entry(&queue_id).unwrap().state.status(),
        Some(CompletionStatus::Cancelled)
    );

    // A cell that ignores cancel (the agent grants it 30 s): the second Ctrl-C leaves.
    let (mut run, queue_id) = running_cell(&home, "%block 30");
    signal(&run, "INT");
    wait_for_state(&home.store(), Duration::from_secs(20), |s| {
        s.entry(&queue_id).is_some_and(|e| e.cancel_requested)
    });
    signal(&run, "INT");
    let left = wait_with_timeout(&mut run, Duration::from_secs(20));
    let mut said = String::new();
    std::io::Read::read_to_string(run.stderr.as_mut().unwrap(), &mut said).unwrap();
    assert_eq!(left.code(), Some(130), "{left:?} {said}");
    assert!(said.contains("left"), "{said}");
    signal(&agent, "KILL");
    let _ = agent.wait();
}

/// Commands that read a store never make one: a mistyped `--store` is an error, and the
/// file is not created. Output into a pipe that is already closed ends the command quietly
/// (as `notebook show | head -1` does), not with a panic.
#[test]
fn the_notebook_client_makes_no_store_to_read_and_ends_quietly_on_a_closed_pipe() {
    let home = Home::new();
    let missing = home.dir.path().join("typo.db");
    for args in [
        &["status"][..],
        &["show"],
        &["cancel", "--all"],
        &["repair"],
    ] {
        let refused = home
            .command("notebook")
            .args(["--client-id", "bob", "--store"])
            .arg(&missing)
            .args(args)
            .output()
            .unwrap();
        assert_eq!(refused.status.code(), Some(1), "{args:?}");
        let said = String::from_utf8_lossy(&refused.stderr);
        assert!(said.contains("no store at"), "{args:?}: {said}");
        assert!(!missing.exists(), "{args:?} made a store");
    }

    for name in ["notebook", "echo-agent", "process-agent"] {
        let version = home.command(name).arg("--version").output().unwrap();
        let said = String::from_utf8_lossy(&version.stdout);
        assert_eq!(said.trim(), format!("{name} {}", env!("CARGO_PKG_VERSION")));
    }

    assert!(home.notebook(&["title", "Piped"]).status.success());
    assert!(home.notebook(&["run", "--no-wait", "x"]).status.success());
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader); // every write to the pipe now fails with EPIPE
    let shown = home
        .command("notebook")
        .args(["--client-id", "bob", "show"])
        .stdout(writer)
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&shown.stderr);
    assert_eq!(shown.status.code(), Some(0), "{said}");
    assert!(!said.contains("panicked"), "{said}");
}

/// On a long notebook, a `notebook` command leaves a full snapshot at what it folded, and
/// the next one starts from it and shows the same cells plus what came since.
#[test]
fn the_notebook_client_leaves_a_snapshot_and_the_next_command_shows_the_same() {
    use runtime_core::{CellCreated, CellDeleted, SNAPSHOT_EVERY, SnapshotKind};
    let home = Home::new();
    let store = home.store();
    let cell = |id: &str| -> Event {
        CellCreated {
            cell_id: id.into(),
            cell_type: CellType::Code,
            source: format!("print('{id}')"),
        }
        .into()
    };
    runtime().block_on(async {
        store.commit(vec![cell("first")]).await.unwrap();
        for chunk in 0..=SNAPSHOT_EVERY / 1_000 {
            let events = (0..1_000)
                .map(|n| {
                    CellDeleted {
                        cell_id: format!("gone-{chunk}-{n}").into(),
                    }
                    .into()
                })
                .collect();
            store.commit(events).await.unwrap();
        }
    });
    let shown = home.notebook(&["show"]);
    assert!(
        shown.status.success(),
        "{}",
        String::from_utf8_lossy(&shown.stderr)
    );
    let first = String::from_utf8_lossy(&shown.stdout).into_owned();
    assert!(first.contains("print('first')"), "{first}");
    let snapshot = runtime()
        .block_on(store.latest_snapshot(SnapshotKind::Full))
        .unwrap()
        .expect("the command left a full snapshot");
    assert_eq!(snapshot.seq, store.head().unwrap());

    // status folds lean (sessions and the queue, no outputs) and leaves a lean one.
    assert!(home.notebook(&["status"]).status.success());
    let lean = runtime()
        .block_on(store.latest_snapshot(SnapshotKind::Lean))
        .unwrap()
        .expect("status left a lean snapshot");
    assert_eq!(lean.seq, snapshot.seq);

    runtime()
        .block_on(store.commit(vec![cell("second")]))
        .unwrap();
    let again = String::from_utf8_lossy(&home.notebook(&["show"]).stdout).into_owned();
    assert!(again.starts_with(first.trim_end()), "{again}");
    assert!(again.contains("print('second')"), "{again}");
}

#[test]
fn every_acknowledged_commit_survives_kill_9_of_the_writer() {
    let home = Home::new();
    drop(home.store()); // create the file
    let mut writer = home
        .command("notebook")
        .args(["--client-id", "bob", "flood", "--count", "1000000"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut acknowledged = 0u64;
    let mut lines = BufReader::new(writer.stdout.take().unwrap()).lines();
    while acknowledged < 3_000 {
        acknowledged = lines.next().unwrap().unwrap().trim().parse().unwrap();
    }
    writer.kill().unwrap();
    writer.wait().unwrap();
    // Lines printed before the kill are acknowledged commits too.
    for line in lines.map_while(Result::ok) {
        if let Ok(seq) = line.trim().parse::<u64>() {
            acknowledged = acknowledged.max(seq);
        }
    }
    let store = home.store();
    let head = store.head().unwrap();
    assert!(
        head >= acknowledged,
        "{acknowledged} acknowledged, {head} in the file"
    );
    let events = runtime().block_on(read_all(&store));
    assert_eq!(events.len() as u64, head);
    assert!(
        events
            .iter()
            .enumerate()
            .all(|(n, entry)| entry.seq == n as u64 + 1),
        "no gaps"
    );
}

#[test]
fn the_native_bench_runs_and_reports_json() {
    let bench = binary("native-bench");
    let latency = Command::new(&bench)
        .args(["latency", "--count", "5", "--interval-ms", "1"])
        .output()
        .unwrap();
    assert!(
        latency.status.success(),
        "{}",
        String::from_utf8_lossy(&latency.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&latency.stdout).unwrap();
    assert_eq!(report["n"], 5);
    assert!(report["median_us"].as_f64().unwrap() > 0.0);
    let idle = Command::new(&bench)
        .args(["idle", "--seconds", "1"])
        .output()
        .unwrap();
    assert!(
        idle.status.success(),
        "{}",
        String::from_utf8_lossy(&idle.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&idle.stdout).unwrap();
    assert!(report["rss_kib"].as_u64().unwrap() > 0);
}

#[test]
fn the_readme_first_command_runs_a_notebook_end_to_end_on_the_default_store() {
    let home = Home::new();
    let output = home
        .command("echo-agent")
        .arg("--demo")
        .env_remove("RUNTIME_STORE") // the default: the user's data directory
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let shown = String::from_utf8_lossy(&output.stdout);
    let default_store = home
        .dir
        .path()
        .join("data-home")
        .join("runtime-agents")
        .join("notebooks.db");
    assert!(
        shown.contains(&default_store.display().to_string()),
        "prints the store's path: {shown}"
    );
    assert!(shown.contains("Echo: print('hello, notebook')"), "{shown}");
    assert!(
        shown.contains("**Echo:** What does a runtime agent do with my prompt?"),
        "{shown}"
    );
    assert_eq!(shown.matches("-> success").count(), 3, "{shown}");
    assert!(shown.contains("agent stopped (shutdown)"));
    assert!(default_store.exists());
    assert!(
        !String::from_utf8_lossy(&output.stderr).contains("INFO"),
        "the demo keeps logs quiet"
    );
}

/// A backends file in the test's home: a bash job with short ladder graces.
fn backends_file(home: &Home) -> PathBuf {
    let path = home.dir.path().join("backends.toml");
    std::fs::write(
        &path,
        "use = \"shell\"\n\
         [backends.shell]\n\
         kind = \"job\"\n\
         program = \"bash\"\n\
         args = [\"-c\"]\n\
         input = \"argument\"\n\
         interrupt_grace = \"300ms\"\n\
         terminate_grace = \"300ms\"\n",
    )
    .unwrap();
    path
}

#[test]
fn the_process_agent_runs_cells_as_jobs_and_stops_them_with_the_ladder() {
    let home = Home::new();
    let mut agent = home
        .command("process-agent")
        .args(["--client-id", "alice", "--backends"])
        .arg(backends_file(&home))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let store = home.store();
    let ok = submit(&store, "echo \"hello from $0\"; exit 3");
    let state = wait_for_state(&store, Duration::from_secs(20), |s| completed(s, &ok));
    let entry = state.entry(&ok).unwrap();
    assert_eq!(entry.state.status(), Some(CompletionStatus::Error));
    assert_eq!(entry.metadata["exitCode"], 3);
    let text = outputs_text(entry);
    assert!(text.starts_with("hello from bash\n"), "{text}");

    let stubborn = submit(&store, "trap '' INT; echo ready; sleep 60");
    // Cancel once the trap is set, that is once it said so.
    wait_for_state(&store, Duration::from_secs(20), |s| {
        running(s, &stubborn) && !s.entry(&stubborn).unwrap().outputs.is_empty()
    });
    runtime()
        .block_on(NotebookClient::new(store.clone(), "bob").cancel(&stubborn))
        .unwrap();
    let state = wait_for_state(&store, Duration::from_secs(20), |s| completed(s, &stubborn));
    let entry = state.entry(&stubborn).unwrap();
    assert_eq!(entry.state.status(), Some(CompletionStatus::Cancelled));
    assert_eq!(entry.metadata["stoppedBy"], "SIGTERM");

    signal(&agent, "TERM");
    let status = wait_with_timeout(&mut agent, Duration::from_secs(10));
    assert!(
        status.success(),
        "exit status {status}: {}",
        stderr_of(&mut agent)
    );
}

#[test]
fn a_bad_backends_file_exits_2_naming_the_file_and_the_key() {
    let home = Home::new();
    let path = home.dir.path().join("backends.toml");
    std::fs::write(
        &path,
        "[backends.shell]\nkind = \"job\"\nprogram = \"bash\"\nmax_runtime = \"soon\"\n",
    )
    .unwrap();
    let output = home
        .command("process-agent")
        .args(["--client-id", "alice", "--backends"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&format!(
            "{}: backends.shell.max_runtime: expected a duration",
            path.display()
        )),
        "{stderr}"
    );
}

/// Runs `statements` (Python, with `c` a connection in autocommit mode) against the store
/// file from another process, as another program writing to it would.
fn from_another_process(home: &Home, statements: &str) {
    let script = format!(
        "import sqlite3\nc = sqlite3.connect({path:?}, isolation_level=None)\n{statements}",
        path = home.store_path().to_str().unwrap()
    );
    let status = Command::new("python3")
        .args(["-c", &script])
        .status()
        .unwrap();
    assert!(status.success(), "{statements}");
}

/// Appends a raw row (`value_sql` is its SQL value) to the default notebook.
fn insert_raw_row(home: &Home, value_sql: &str) {
    from_another_process(
        home,
        &format!(
            "c.execute('begin immediate')\n\
             m = c.execute(\"select max(seq) from events where notebook = 'default'\").fetchone()[0]\n\
             c.execute(\"insert into events (notebook, seq, event) values ('default', ?, {value_sql})\", (m + 1,))\n\
             c.execute('commit')\n"
        ),
    );
}

#[test]
fn a_row_that_is_not_utf8_text_is_skipped_by_running_agents_and_every_later_client() {
    let home = Home::new();
    let mut agent = home.agent("2");
    let store = home.store();
    let first = submit(&store, "before the bad rows");
    wait_for_state(&store, Duration::from_secs(20), |s| completed(s, &first));
    insert_raw_row(&home, "X'ff'"); // a BLOB
    insert_raw_row(&home, "CAST(X'c328' AS TEXT)"); // text that is not UTF-8

    let after = submit(&store, "after the bad rows");
    let state = wait_for_state(&store, Duration::from_secs(20), |s| completed(s, &after));
    assert_eq!(
        state.entry(&after).unwrap().state.status(),
        Some(CompletionStatus::Success),
        "the running agent read past the rows"
    );
    assert_eq!(state.stats().ignored(runtime_core::Ignored::Malformed), 2);
    let status = home.notebook(&["status"]);
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    let run = home.notebook(&["run", "a later client"]);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(
        agent.try_wait().unwrap().is_none(),
        "the agent is still serving"
    );
    signal(&agent, "TERM");
    assert!(wait_with_timeout(&mut agent, Duration::from_secs(10)).success());
}

#[test]
fn a_deleted_row_is_refused_with_a_repair_command_that_works() {
    let home = Home::new();
    let store = home.store();
    for n in 0..3 {
        submit(&store, &format!("cell {n}"));
    }
    delete_row(&home, 3);
    let status = home.notebook(&["status"]);
    assert!(!status.status.success());
    let message = String::from_utf8_lossy(&status.stderr);
    assert!(message.contains("event 3 is missing"), "{message}");
    assert!(message.contains("notebook repair --store"), "{message}");
    let repair = home.notebook(&["repair"]);
    assert!(
        repair.status.success(),
        "{}",
        String::from_utf8_lossy(&repair.stderr)
    );
    assert!(String::from_utf8_lossy(&repair.stdout).contains("filled 1 missing event"));
    let status = home.notebook(&["status"]);
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
}

fn delete_row(home: &Home, seq: i64) {
    from_another_process(
        home,
        &format!("c.execute(\"delete from events where notebook = 'default' and seq = {seq}\")\n"),
    );
}

#[test]
fn a_client_waiting_on_a_killed_agent_sees_the_cell_end_runtime_lost() {
    let home = Home::new();
    let mut agent = home
        .command("echo-agent")
        .args([
            "--client-id",
            "alice",
            "--lease-secs",
            "1",
            "--renew-secs",
            "0.3",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let store = home.store();
    let mut run = home
        .command("notebook")
        .args(["--client-id", "bob", "run", "%sleep 600"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for_state(&store, Duration::from_secs(20), |s| {
        s.in_progress()
            .any(|e| matches!(e.state, EntryState::Executing { .. }))
    });
    agent.kill().unwrap(); // SIGKILL: nothing more is committed, and no agent comes back
    agent.wait().unwrap();
    // The lease is 1 s; the waiting client itself commits the expiry.
    let exited = wait_with_timeout(&mut run, Duration::from_secs(60));
    assert!(!exited.success());
    let said = stderr_of(&mut run);
    assert!(said.contains("runtime lost"), "{said}");
    let state = current_state(&store);
    assert_eq!(
        state.sessions()[0].state,
        SessionState::Ended(TerminationReason::Expired)
    );
}

/// Starts an echo agent with `args` that must refuse them: its exit code and what it said.
/// Waits with a bound, so an agent that starts serving after all fails the test instead of
/// hanging it.
fn refused_agent(args: &[&str]) -> (Option<i32>, String) {
    let home = Home::new();
    let mut agent = home
        .command("echo-agent")
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let status = wait_with_timeout(&mut agent, Duration::from_secs(20));
    (status.code(), stderr_of(&mut agent))
}

#[test]
fn a_lease_below_the_minimum_exits_2_naming_the_flag() {
    let (code, message) = refused_agent(&[
        "--client-id",
        "a",
        "--lease-secs",
        "0.0004",
        "--renew-secs",
        "0.0001",
    ]);
    assert_eq!(code, Some(2));
    assert!(
        message.contains("--lease-secs") && message.contains("at least 100 ms"),
        "{message}"
    );
}

#[test]
fn a_duration_past_a_year_exits_2_instead_of_overflowing() {
    let (code, message) = refused_agent(&["--client-id", "a", "--cancel-grace-secs", "1e15"]);
    assert_eq!(code, Some(2));
    assert!(
        message.contains("--cancel-grace-secs") && message.contains("at most 365 days"),
        "{message}"
    );
}

/// The processes of group `pgid` that are alive (not zombies), from /proc: on this kind of
/// machine nothing may reap an orphan, so a killed process can linger as a zombie.
fn live_members(pgid: i32) -> Vec<i32> {
    let mut alive = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // pid (comm) state ppid pgrp ...: comm may hold spaces, so split after its ')'.
        let Some((head, rest)) = stat.rsplit_once(") ") else {
            continue;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let pid: i32 = head.split(' ').next().unwrap_or("0").parse().unwrap_or(0);
        if fields.len() > 2 && fields[2] == pgid.to_string() && fields[0] != "Z" {
            alive.push(pid);
        }
    }
    alive
}

#[test]
fn a_second_signal_stops_the_process_agent_at_once_and_leaves_no_process_behind() {
    let home = Home::new();
    let mut agent = home
        .command("process-agent")
        .args([
            "--client-id",
            "alice",
            "--cancel-grace-secs",
            "30",
            "--backends",
        ])
        .arg(backends_file(&home))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let store = home.store();
    // Ignores SIGINT and SIGTERM, with a child: only SIGKILL to the group ends it.
    let stubborn = submit(&store, "trap '' INT TERM; echo pid $$; sleep 600 & wait");
    let state = wait_for_state(&store, Duration::from_secs(20), |s| {
        running(s, &stubborn) && !s.entry(&stubborn).unwrap().outputs.is_empty()
    });
    let said = outputs_text(state.entry(&stubborn).unwrap());
    let pgid: i32 = said.trim().trim_start_matches("pid ").parse().unwrap();
    assert!(!live_members(pgid).is_empty());

    signal(&agent, "INT");
    std::thread::sleep(Duration::from_millis(50));
    signal(&agent, "INT");
    let status = wait_with_timeout(&mut agent, Duration::from_secs(20));
    assert_eq!(status.code(), Some(runtime_native::FORCED_EXIT_CODE));
    let started = Instant::now();
    while !live_members(pgid).is_empty() && started.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        live_members(pgid),
        Vec::<i32>::new(),
        "the job's group outlived the agent"
    );
}

/// `true` if a python3 kernelspec is installed; otherwise says so, and fails when
/// `RUNTIME_REQUIRE_JUPYTER` is set (scripts/check sets it).
fn python_kernel_installed() -> bool {
    use runtime_native::jupyter::kernelspec;
    match kernelspec::find("python3", &kernelspec::search_path()) {
        Ok(_) => true,
        Err(error) => {
            assert!(
                std::env::var_os("RUNTIME_REQUIRE_JUPYTER").is_none(),
                "RUNTIME_REQUIRE_JUPYTER is set but: {error}"
            );
            eprintln!("skipped: {error} (scripts/check installs ipykernel)");
            false
        }
    }
}

/// `notebook input QUEUE_ID` with `answer` on stdin.
fn answer_input(home: &Home, queue_id: &QueueId, answer: &str) -> Output {
    let mut child = home
        .command("notebook")
        .args(["--client-id", "bob", "input", queue_id.as_str()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), answer.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

fn waiting_for_input(state: &NotebookState, queue_id: &QueueId) -> bool {
    state
        .entry(queue_id)
        .and_then(|e| e.input.as_ref())
        .is_some_and(|input| input.is_waiting())
}

fn stdout_of(state: &NotebookState, queue_id: &QueueId) -> String {
    state.entry(queue_id).map(outputs_text).unwrap()
}

/// The README's command (`--kernel python3`) serves real Python; the notebook client
/// answers the cells' `input()` and `getpass` from stdin, the password never reaches the
/// store file in clear, and stopping the agent stops its kernel. An unknown kernel name is
/// a usage error listing those installed.
#[test]
fn the_readme_kernel_command_serves_python_whose_input_the_client_answers() {
    if !python_kernel_installed() {
        return;
    }
    let home = Home::new();
    let unknown = home
        .command("process-agent")
        .args(["--kernel", "no-such-kernel", "--client-id", "alice"])
        .output()
        .unwrap();
    assert_eq!(unknown.status.code(), Some(2));
    let said = String::from_utf8_lossy(&unknown.stderr);
    assert!(
        said.contains("no Jupyter kernel named \"no-such-kernel\"") && said.contains("python3"),
        "{said}"
    );
    let mut agent = home
        .command("process-agent")
        .args(["--kernel", "python3", "--client-id", "alice"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let store = home.store();
    let ask = |source: &str| {
        let queued = home.notebook(&["run", "--no-wait", source]);
        assert!(
            queued.status.success(),
            "{}",
            String::from_utf8_lossy(&queued.stderr)
        );
        let queue_id = QueueId::from(String::from_utf8_lossy(&queued.stdout).trim());
        wait_for_state(&store, Duration::from_secs(120), |s| {
            waiting_for_input(s, &queue_id)
        });
        queue_id
    };

    let queue_id = ask("name = input('Name? ')\nprint('hello', name)");
    let status = String::from_utf8_lossy(&home.notebook(&["status"]).stdout).into_owned();
    assert!(status.contains("waiting for input: \"Name? \""), "{status}");
    let answered = answer_input(&home, &queue_id, "Ada\n");
    assert!(
        answered.status.success(),
        "{}",
        String::from_utf8_lossy(&answered.stderr)
    );
    let state = wait_for_state(&store, Duration::from_secs(60), |s| completed(s, &queue_id));
    assert_eq!(stdout_of(&state, &queue_id), "Name? Ada\nhello Ada\n");

    let queue_id =
        ask("import getpass\nsecret = getpass.getpass('Password: ')\nprint(len(secret))");
    let answered = answer_input(&home, &queue_id, "correct horse battery\n");
    assert!(
        answered.status.success(),
        "{}",
        String::from_utf8_lossy(&answered.stderr)
    );
    let state = wait_for_state(&store, Duration::from_secs(60), |s| completed(s, &queue_id));
    assert_eq!(stdout_of(&state, &queue_id), "Password: \n21\n");
    // Nothing asks any more: answering again is an error.
    let again = answer_input(&home, &queue_id, "again\n");
    assert_eq!(again.status.code(), Some(1));
    let said = String::from_utf8_lossy(&again.stderr);
    assert!(
        said.contains("has ended") || said.contains("not waiting"),
        "{said}"
    );

    // Rich output, and the kernel's pid for the end.
    let ran = home.notebook(&["run", "import os\nprint(os.getpid())\n6 * 7"]);
    assert!(
        ran.status.success(),
        "{}",
        String::from_utf8_lossy(&ran.stderr)
    );
    let printed = String::from_utf8_lossy(&ran.stdout).into_owned();
    let mut lines = printed.lines();
    let kernel_pid: u32 = lines.next().unwrap().parse().unwrap();
    assert_eq!(lines.next(), Some("42"), "{printed}");

    signal(&agent, "TERM");
    assert!(wait_with_timeout(&mut agent, Duration::from_secs(30)).success());
    assert!(
        !Path::new(&format!("/proc/{kernel_pid}")).exists(),
        "the kernel stops with the agent"
    );
    let mut files = vec![home.store_path()];
    files.push(home.store_path().with_extension("db-wal"));
    for file in files {
        if let Ok(bytes) = std::fs::read(&file) {
            let text = String::from_utf8_lossy(&bytes);
            assert!(
                !text.contains("correct horse"),
                "{} holds the password",
                file.display()
            );
        }
    }
}

/// `notebook run-file` runs a notebook headless: papermill's parameters land after the
/// cell tagged `parameters`, progress goes to stderr, the executed notebook to the file,
/// and a failing cell stops the run with exit 1 unless `--allow-errors`.
#[test]
fn run_file_runs_a_notebook_with_parameters_and_stops_at_the_first_error() {
    if !python_kernel_installed() {
        return;
    }
    let home = Home::new();
    let notebook = serde_json::json!({
        "cells": [
            {"cell_type": "markdown", "id": "intro", "metadata": {}, "source": ["# Report"]},
            {"cell_type": "code", "execution_count": null, "id": "params",
             "metadata": {"tags": ["parameters"]}, "outputs": [], "source": ["x = 1\n", "name = 'nobody'"]},
            {"cell_type": "code", "execution_count": null, "id": "use", "metadata": {},
             "outputs": [], "source": ["print(name, x * 2)"]},
            {"cell_type": "code", "execution_count": null, "id": "fail", "metadata": {},
             "outputs": [], "source": ["1 / 0"]},
            {"cell_type": "code", "execution_count": null, "id": "after", "metadata": {},
             "outputs": [], "source": ["print('after')"]}
        ],
        "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
        "nbformat": 4, "nbformat_minor": 5
    });
    let input = home.dir.path().join("report.ipynb");
    std::fs::write(&input, notebook.to_string()).unwrap();
    let output = home.dir.path().join("out.ipynb");
    let run = |extra: &[&str]| {
        home.command("notebook")
            .arg("run-file")
            .arg(&input)
            .arg("-o")
            .arg(&output)
            .args(["-p", "x", "21", "-p", "name", "Ada"])
            .args(extra)
            .output()
            .unwrap()
    };
    let ran = run(&[]);
    let said = String::from_utf8_lossy(&ran.stderr);
    assert_eq!(ran.status.code(), Some(1), "{said}");
    assert!(said.contains("[cell 3 of 5: success]"), "{said}");
    assert!(
        said.contains("[cell 4 of 5: error: ZeroDivisionError: division by zero]"),
        "{said}"
    );
    assert!(
        !said.contains("cell 5 of 5"),
        "the run stops at the error: {said}"
    );
    let written: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&output).unwrap()).unwrap();
    let cells = written["cells"].as_array().unwrap();
    assert_eq!(cells.len(), 6, "one injected cell");
    assert_eq!(cells[2]["metadata"]["tags"][0], "injected-parameters");
    assert_eq!(concat(&cells[2]["source"]), "x = 21\nname = \"Ada\"\n");
    assert_eq!(cells[3]["outputs"][0]["text"][0], "Ada 42\n");
    assert_eq!(cells[4]["outputs"][0]["ename"], "ZeroDivisionError");
    assert_eq!(
        cells[5]["execution_count"],
        serde_json::Value::Null,
        "not run"
    );

    let ran = run(&["--allow-errors"]);
    assert!(
        ran.status.success(),
        "{}",
        String::from_utf8_lossy(&ran.stderr)
    );
    let written: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&output).unwrap()).unwrap();
    assert_eq!(written["cells"][5]["outputs"][0]["text"][0], "after\n");

    let missing = home
        .command("notebook")
        .args(["run-file", "no-such.ipynb"])
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no-such.ipynb"));
}

/// A list of strings (nbformat's multiline text), joined.
fn concat(value: &serde_json::Value) -> String {
    value
        .as_array()
        .map(|parts| parts.iter().filter_map(serde_json::Value::as_str).collect())
        .unwrap_or_default()
}

/// `notebook follow QUEUE_ID` shows what an execution showed so far and then its outputs
/// live, from another process than the one that ran it, and exits as the cell ended; every
/// `--json` line carries a `type`.
#[test]
fn follow_tails_an_execution_from_another_process_and_exits_as_it_ended() {
    let home = Home::new();
    let mut agent = home.agent("2");
    let ran = home.notebook(&["run", "1 + 1"]);
    assert!(ran.status.success());
    let store = home.store();
    let state = current_state(&store);
    let done = state.entries().next().unwrap().queue_id.clone();
    let followed = home.notebook(&["follow", done.as_str()]);
    assert!(followed.status.success());
    assert_eq!(String::from_utf8_lossy(&followed.stdout), "Echo: 1 + 1\n");
    let followed = home.notebook(&["--json", "follow", done.as_str()]);
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&followed.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(lines[0]["type"], "output");
    assert_eq!(lines.last().unwrap()["type"], "ended");
    assert_eq!(lines.last().unwrap()["status"], "success");

    // A running cell: follow shows its output so far, then its end when another
    // command cancels it.
    let slow = home.notebook(&["--json", "run", "--no-wait", "%sleep 60"]);
    let queued: serde_json::Value = serde_json::from_slice(&slow.stdout).unwrap();
    assert_eq!(queued["type"], "queued");
    let queue_id = QueueId::from(queued["queueId"].as_str().unwrap());
    wait_for_state(&store, Duration::from_secs(20), |s| running(s, &queue_id));
    let mut follower = home
        .command("notebook")
        .args(["--client-id", "carol", "follow", queue_id.as_str()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut said = BufReader::new(follower.stderr.take().unwrap()).lines();
    let first = said.next().unwrap().unwrap();
    assert_eq!(first, format!("[following {queue_id}: executing]"));
    // It is following the running cell now; the cancel comes from another process.
    assert!(
        home.notebook(&["cancel", queue_id.as_str()])
            .status
            .success()
    );
    let rest: Vec<String> = said.map(Result::unwrap).collect();
    assert_eq!(rest, ["[cancelled: cancelled on request]"]);
    let followed = follower.wait_with_output().unwrap();
    assert_eq!(followed.status.code(), Some(3), "cancelled");
    assert_eq!(String::from_utf8_lossy(&followed.stdout), "sleeping 60 s\n");

    let unknown = home.notebook(&["follow", "no-such-id"]);
    assert_eq!(unknown.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("no execution no-such-id"));
    for command in [&["--json", "status"][..], &["--json", "show"]] {
        let out = home.notebook(command);
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let value: serde_json::Value = serde_json::from_str(line).unwrap();
            assert!(value["type"].is_string(), "{command:?}: {line}");
        }
    }
    signal(&agent, "TERM");
    assert!(wait_with_timeout(&mut agent, Duration::from_secs(10)).success());
}

/// At a terminal (a pseudo-terminal made by util-linux's `script`), `notebook run` says how
/// long a silent cell has been running and colours how it ended; piped (every other test),
/// it writes neither.
#[test]
fn at_a_terminal_run_shows_progress_and_colours_the_end() {
    let home = Home::new();
    let mut agent = home.agent("2");
    let run = format!(
        "{} --client-id bob run '%sleep 6'",
        binary("notebook").display()
    );
    let mut script = Command::new("script");
    script
        .args(["-qec", &run, "/dev/null"])
        .env_remove("NO_COLOR");
    let transcript = home.isolated(script).output().unwrap();
    let text = String::from_utf8_lossy(&transcript.stdout);
    assert!(transcript.status.success(), "{text}");
    assert!(text.contains("sleeping 6 s"), "{text}");
    assert!(text.contains("[running "), "a progress line: {text}");
    assert!(
        text.contains("\x1b[32msuccess\x1b[0m"),
        "a green success: {text}"
    );
    signal(&agent, "TERM");
    assert!(wait_with_timeout(&mut agent, Duration::from_secs(10)).success());
}

/// At a terminal, `notebook run` asks a cell's `input()` itself: the prompt stays as it is
/// while the answer is typed (no progress line over it), and the agent's echo of the answer
/// is not printed a second time.
#[test]
fn at_a_terminal_run_asks_a_cells_input_itself() {
    if !python_kernel_installed() {
        return;
    }
    let home = Home::new();
    let mut agent = home
        .command("process-agent")
        .args(["--kernel", "python3", "--client-id", "alice"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let run = format!(
        "{} --client-id bob run \"name = input('Name? '); print('hi', name)\"",
        binary("notebook").display()
    );
    let mut script = Command::new("script");
    script.args(["-qec", &run, "/dev/null"]);
    let mut script = home.isolated(script);
    let mut terminal = script
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut keyboard = terminal.stdin.take().unwrap();
    // Typed once the question shows, and after a progress tick would have come.
    let store = home.store();
    wait_for_state(&store, Duration::from_secs(120), |s| {
        s.entries()
            .any(|e| e.input.as_ref().is_some_and(|i| i.is_waiting()))
    });
    std::thread::sleep(Duration::from_secs(3));
    std::io::Write::write_all(&mut keyboard, b"Ada\n").unwrap();
    let transcript = terminal.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&transcript.stdout);
    assert!(transcript.status.success(), "{text}");
    assert!(
        text.contains("Name? Ada\r\n"),
        "the prompt, then what was typed: {text:?}"
    );
    assert!(text.contains("hi Ada"), "{text:?}");
    assert_eq!(
        text.matches("Name? ").count(),
        1,
        "no second echo: {text:?}"
    );
    signal(&agent, "TERM");
    assert!(wait_with_timeout(&mut agent, Duration::from_secs(30)).success());
}

#[test]
fn the_process_agent_will_not_start_without_its_agent_cli_and_finds_a_managed_one() {
    use std::os::unix::fs::PermissionsExt as _;
    let home = Home::new();
    let runtimes = home.dir.path().join("runtimes");
    let backends = home.dir.path().join("codex.toml");
    std::fs::write(
        &backends,
        "[backends.codex]\nkind = \"codex\"\nruntime = \"codex\"\n",
    )
    .unwrap();
    let agent = || {
        let mut command = home.command("process-agent");
        command
            .args(["--client-id", "alice", "--backends"])
            .arg(&backends)
            .env("RUNTIME_AGENTS_RUNTIMES", &runtimes);
        command
    };
    let refused = agent().output().unwrap();
    assert_eq!(refused.status.code(), Some(2));
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(
        said.contains(
            "backends.codex.runtime: expected an installed runtime; \"codex\" is not installed in"
        ) && said.contains("run `runtimes setup codex`"),
        "{said}"
    );

    // Installed as the runtime manager records it, but broken: refused at start too.
    std::fs::create_dir_all(&runtimes).unwrap();
    let program = runtimes.join("codex-program");
    let install = |body: &str| {
        std::fs::write(&program, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o755)).unwrap();
        let lock = serde_json::json!([{
            "name": "codex", "package": "@openai/codex@1.0.0-test", "version": "1.0.0",
            "integrity": "sha512-AAAA", "program": program,
        }]);
        std::fs::write(runtimes.join("runtimes.lock"), lock.to_string()).unwrap();
    };
    install("exit 1");
    let refused = agent().output().unwrap();
    assert_eq!(refused.status.code(), Some(2));
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(said.contains("--version` failed"), "{said}");

    // Working: the agent starts and serves.
    install("echo codex-cli 1.0.0");
    let mut serving = agent()
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let store = home.store();
    wait_for_state(&store, Duration::from_secs(20), |state| {
        state.active_session().is_some()
    });
    signal(&serving, "TERM");
    let status = wait_with_timeout(&mut serving, Duration::from_secs(20));
    assert!(status.success(), "{}", stderr_of(&mut serving));
}

#[test]
fn the_process_agent_as_a_gateway_serves_the_notebooks_that_ask_and_stops_them_on_sigint() {
    let home = Home::new();
    let mut gateway = home
        .command("process-agent")
        .args(["--client-id", "alice", "--gateway", "--backends"])
        .arg(backends_file(&home))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let in_notebook = |notebook: &str, args: &[&str]| {
        let mut all = vec!["--notebook", notebook];
        all.extend_from_slice(args);
        home.notebook(&all)
    };
    for notebook in ["one", "two"] {
        let asked = in_notebook(notebook, &["runtime", "shell"]);
        assert!(asked.status.success(), "{asked:?}");
    }
    let asked = in_notebook("three", &["runtime", "python"]);
    assert!(asked.status.success(), "{asked:?}");
    // What a notebook asks for is in its status, whoever serves it (a lean fold keeps no
    // notebook metadata: it comes from the catalog).
    let shown = in_notebook("three", &["status"]);
    let printed = String::from_utf8_lossy(&shown.stdout);
    assert!(printed.contains("asks for a python runtime"), "{printed}");
    let shown = in_notebook("three", &["--json", "status"]);
    let line: serde_json::Value = serde_json::from_slice(&shown.stdout).unwrap();
    assert_eq!(line["runtimeRequested"]["runtimeType"], "python", "{line}");
    // A cell run there waits, and `run` says for what (no gateway here serves python).
    let mut waiting = home
        .command("notebook")
        .args([
            "--client-id",
            "bob",
            "--notebook",
            "three",
            "run",
            "print(1)",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let said = BufReader::new(waiting.stderr.take().unwrap());
    let (lines, hint) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in said.lines().map_while(Result::ok) {
            let _ = lines.send(line);
        }
    });
    let mut heard = Vec::new();
    while let Ok(line) = hint.recv_timeout(Duration::from_secs(60)) {
        heard.push(line);
        if heard
            .last()
            .unwrap()
            .contains("`python` runtime it asks for")
        {
            break;
        }
    }
    waiting.kill().unwrap();
    let _ = waiting.wait();
    assert!(
        heard
            .iter()
            .any(|line| line.contains("`python` runtime it asks for")
                && line.contains("process-agent --gateway --backend python")),
        "{heard:?}"
    );
    for notebook in ["one", "two"] {
        let ran = in_notebook(notebook, &["run", &format!("echo {notebook} ran in $0")]);
        assert!(ran.status.success(), "{ran:?}");
        let printed = String::from_utf8_lossy(&ran.stdout);
        assert!(
            printed.contains(&format!("{notebook} ran in bash")),
            "{printed}"
        );
    }
    let queued = in_notebook("two", &["run", "--no-wait", "echo started; sleep 60"]);
    assert!(queued.status.success(), "{queued:?}");
    let queue_id = String::from_utf8_lossy(&queued.stdout).trim().to_owned();
    let two = SqliteStore::open(home.store_path(), "two").unwrap();
    let queue_id = QueueId::from(queue_id.as_str());
    wait_for_state(&two, Duration::from_secs(60), |s| {
        running(s, &queue_id) && !s.entry(&queue_id).unwrap().outputs.is_empty()
    });

    signal(&gateway, "INT");
    let status = wait_with_timeout(&mut gateway, Duration::from_secs(30));
    let mut printed = String::new();
    gateway
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut printed)
        .unwrap();
    assert!(status.success(), "{status}: {}", stderr_of(&mut gateway));
    let state = current_state(&two);
    assert_eq!(
        state.entry(&queue_id).unwrap().state.status(),
        Some(CompletionStatus::Cancelled),
        "the running cell ends cancelled"
    );
    assert!(state.active_session().is_none(), "two's session ended");
    for line in [
        "one: serving (session ",
        "two: serving (session ",
        "one: detached (shutdown)",
        "two: detached (shutdown)",
        "gateway stopped",
    ] {
        assert!(printed.contains(line), "{line:?} missing from:\n{printed}");
    }
    assert!(
        !printed.contains("three:"),
        "three asks for python:\n{printed}"
    );
}

#[test]
fn a_job_backend_runs_a_managed_runtime_named_in_the_backends_file() {
    use std::os::unix::fs::PermissionsExt as _;
    let home = Home::new();
    let runtimes = home.dir.path().join("runtimes");
    std::fs::create_dir_all(&runtimes).unwrap();
    // As the runtime manager records llm: its program in its own environment.
    let program = runtimes.join("llm-program");
    std::fs::write(
        &program,
        "#!/bin/sh\n[ \"$1\" = --version ] && { echo 'llm, version 0.36'; exit 0; }\necho \"llm answers: $1\"\n",
    )
    .unwrap();
    std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o755)).unwrap();
    let lock = serde_json::json!([{
        "name": "llm", "package": "llm==0.36", "version": "0.36",
        "integrity": "sha256:00", "program": program,
    }]);
    std::fs::write(runtimes.join("runtimes.lock"), lock.to_string()).unwrap();
    let backends = home.dir.path().join("llm.toml");
    std::fs::write(
        &backends,
        "[backends.ask]\nkind = \"job\"\nruntime = \"llm\"\ninput = \"argument\"\n",
    )
    .unwrap();
    let mut agent = home
        .command("process-agent")
        .args(["--client-id", "alice", "--backends"])
        .arg(&backends)
        .env("RUNTIME_AGENTS_RUNTIMES", &runtimes)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let store = home.store();
    let asked = submit(&store, "what is a notebook?");
    let state = wait_for_state(&store, Duration::from_secs(30), |s| completed(s, &asked));
    let entry = state.entry(&asked).unwrap();
    let text = outputs_text(entry);
    assert_eq!(
        entry.state.status(),
        Some(CompletionStatus::Success),
        "{text}"
    );
    assert_eq!(text, "llm answers: what is a notebook?\n");
    signal(&agent, "TERM");
    let status = wait_with_timeout(&mut agent, Duration::from_secs(20));
    assert!(status.success(), "{}", stderr_of(&mut agent));
}
