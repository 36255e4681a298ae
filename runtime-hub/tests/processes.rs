//! The `runtime-hub` binary with real agent and client processes (the workspace's
//! `echo-agent` and `notebook` examples) on 127.0.0.1: cells run through the hub, the
//! agent rides out a `kill -9` and restart of the hub, and a tokens file others can read
//! is refused.
#![allow(clippy::unwrap_used)]

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
