//! Backends from a TOML file: errors that name the file, the key and the expectation; the
//! handler it builds, with fallback, limits and redaction of the agent's own token.
#![allow(clippy::unwrap_used)]

mod support;

use runtime_core::CompletionStatus;
use runtime_native::AuthToken;
use runtime_native::backends::BackendsConfig;
use serde_json::json;
use support::{describe, ended, serve, text_of};

fn error_of(text: &str) -> String {
    BackendsConfig::parse(text, "agents.toml")
        .unwrap_err()
        .to_string()
}

#[test]
fn bad_configuration_names_the_file_the_key_and_what_was_expected() {
    let cases = [
        (
            "[backends.shell]\nkind = \"job\"\nprogram = \"bash\"\nmax_runtime = \"30 seconds\"\n",
            "agents.toml: backends.shell.max_runtime: expected a duration like \"30s\", \"500ms\", \"2m\" or \"1h\", more than zero and at most 365 days; got a string of 10 characters",
        ),
        (
            // It used to overflow adding to the current time, and panic.
            "[backends.shell]\nkind = \"job\"\nprogram = \"bash\"\nmax_runtime = \"3000000000000000h\"\n",
            "agents.toml: backends.shell.max_runtime: expected a duration like \"30s\", \"500ms\", \"2m\" or \"1h\", more than zero and at most 365 days; got a string of 17 characters",
        ),
        (
            "[backends.repl]\nkind = \"session\"\nprogram = \"python3\"\nquiet_period = \"9000d\"\n",
            "agents.toml: backends.repl.quiet_period: expected a duration",
        ),
        (
            "[backends.shell]\nkind = \"job\"\nprogram = \"bash\"\nmax_runtim = \"30s\"\n",
            "agents.toml: backends.shell.max_runtim: expected one of the known keys here:",
        ),
        (
            "[backends.shell]\nkind = \"cron\"\n",
            "agents.toml: backends.shell.kind: expected one of job, session, adapter, http, codex, jupyter; got a string of 4 characters",
        ),
        (
            "[backends.py]\nkind = \"jupyter\"\nkernal = \"python3\"\n",
            "agents.toml: backends.py.kernal: expected one of the known keys here:",
        ),
        (
            "[backends.shell]\nkind = \"job\"\n",
            "agents.toml: backends.shell.program: expected the program to run: a name on PATH or a path (or `runtime`, a managed one); it is missing",
        ),
        (
            "use = \"python\"\n[backends.shell]\nkind = \"job\"\nprogram = \"bash\"\n",
            "agents.toml: use: expected one of the backends: shell; got a string of 6 characters",
        ),
        (
            "[backends.api]\nkind = \"http\"\nurl = \"https://user:hunter2@example.test/\"\n",
            "agents.toml: backends.api.url: expected an http:// or https:// URL; the URL holds credentials (user:password@); send them in a header instead",
        ),
        (
            // A CR/LF in a header value would inject a header: refused, the value unsaid.
            "[backends.api]\nkind = \"http\"\nurl = \"http://h/\"\nheaders = { X-Token = \"sk-SECRET\\r\\nX-Injected: 1\" }\n",
            "agents.toml: backends.api.headers: expected header names and values; the value of header \"X-Token\" is not valid (it holds a control character such as CR or LF)",
        ),
        (
            "[backends.repl]\nkind = \"session\"\nprogram = \"python3\"\n",
            "agents.toml: backends.repl.marker: expected a marker line (preferred) or a quiet_period; neither is set",
        ),
        (
            "[backends.shell]\nkind = \"job\"\nprogram = \"bash\"\nargs = [\"-c\", 3]\n",
            "agents.toml: backends.shell.args: expected a list of strings; one item is got the number 3",
        ),
        (
            "mode = \"sdk\"\n[backends.shell]\nkind = \"job\"\nprogram = \"bash\"\n",
            "agents.toml: mode: expected auto, primary-only or secondary-only; got a string of 3 characters",
        ),
        (
            "use = \"x\"\n",
            "agents.toml: backends: expected a [backends.<name>] table",
        ),
        ("[backends.shell\n", "agents.toml: not valid TOML:"),
    ];
    for (text, expected) in cases {
        let error = error_of(text);
        assert!(
            error.starts_with(expected),
            "\n{error}\ndoes not start with\n{expected}"
        );
    }
    let missing = BackendsConfig::load("/nonexistent/agents.toml")
        .unwrap_err()
        .to_string();
    assert!(
        missing.starts_with("backends file: cannot read /nonexistent/agents.toml"),
        "{missing}"
    );
}

const CONFIG: &str = r#"
use = "broken"
fallback = "shell"

[redact]
literals = ["hunter2"]

[backends.broken]
kind = "job"
program = "/nonexistent/interpreter"

[backends.shell]
kind = "job"
program = "bash"
args = ["-c"]
input = "argument"
max_runtime = "10s"
max_output_bytes = 200
interrupt_grace = "500ms"
env = { GREETING = "hello" }
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_built_handler_falls_back_limits_and_redacts_the_agents_token() {
    let config = BackendsConfig::parse(CONFIG, "agents.toml").unwrap();
    assert_eq!(config.names().collect::<Vec<_>>(), ["broken", "shell"]);
    let token: AuthToken = "tok-0123456789abcdef".parse().unwrap();
    let backends = config.build(Some(&token));
    assert_eq!(backends.name, "broken");
    let served = serve(backends.handler());
    let entry = served
        .run("echo $GREETING hunter2 tok-0123456789abcdef; yes | head -c 1000")
        .await;
    assert_eq!(ended(&entry).0, CompletionStatus::Success);
    assert_eq!(entry.metadata["fallback"]["ran"], "shell");
    assert_eq!(entry.metadata["fallback"]["fellBack"], true);
    let shown = describe(&entry.outputs);
    assert!(
        shown[0].starts_with("Stdout:hello [redacted] [redacted]\ny\n"),
        "{shown:?}"
    );
    assert_eq!(text_of(&entry.outputs[..1]).len(), 200);
    assert!(shown[1].contains("output limit of 200 bytes"), "{shown:?}");

    // Pinned to the primary, nothing falls back.
    let pinned = BackendsConfig::parse(
        &CONFIG.replace(
            "fallback = \"shell\"",
            "fallback = \"shell\"\nmode = \"primary-only\"",
        ),
        "agents.toml",
    )
    .unwrap()
    .build(None);
    let entry = serve(pinned.handler()).run("echo hi").await;
    assert_eq!(ended(&entry).0, CompletionStatus::Error);
    assert_eq!(
        entry.metadata["fallback"],
        json!({"ran": "broken", "fellBack": false})
    );
    backends.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn select_overrides_use_and_long_lived_backends_get_max_runtime() {
    let text = r#"
use = "shell"
[backends.shell]
kind = "job"
program = "bash"
[backends.repl]
kind = "session"
program = "python3"
args = ["-i", "-q", "-u", "-c", "import sys; sys.ps1 = sys.ps2 = ''"]
marker = "<<done>>"
send_after = "print('<<done>>')"
max_runtime = "5s"
"#;
    let config = BackendsConfig::parse(text, "agents.toml").unwrap();
    let error = BackendsConfig::parse(text, "agents.toml")
        .unwrap()
        .select("nope")
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "agents.toml: use: expected one of the backends: repl, shell; --backend asked for \"nope\""
    );
    let backends = config.select("repl").unwrap().build(None);
    let served = serve(backends.handler());
    let entry = served.run("print(1 + 1)").await;
    assert_eq!(text_of(&entry.outputs), "2\n");
    let entry = served.run("import time; time.sleep(30)").await;
    assert_eq!(ended(&entry).0, CompletionStatus::TimedOut);
    backends.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_primary_that_ran_and_failed_silently_falls_back_only_when_the_file_says_so() {
    let text = |opt_in: bool| {
        format!(
            "use = \"charge\"\nfallback = \"shell\"\nfall_back_after_silent_failure = {opt_in}\n\
             [backends.charge]\nkind = \"job\"\nprogram = \"bash\"\nargs = [\"-c\"]\ninput = \"argument\"\n\
             [backends.shell]\nkind = \"job\"\nprogram = \"bash\"\nargs = [\"-c\"]\ninput = \"argument\"\n"
        )
    };
    let dir = tempfile::tempdir().unwrap();
    let ledger = dir.path().join("charges");
    // Charges once per run, then fails before printing anything.
    let source = format!("echo charged >> {}; exit 3", ledger.display());
    // The secondary runs the same source, so falling back charges again: 1, then 1 + 2.
    for (opt_in, charges) in [(false, 1), (true, 3)] {
        let backends = BackendsConfig::parse(&text(opt_in), "agents.toml")
            .unwrap()
            .build(None);
        let entry = serve(backends.handler()).run(&source).await;
        let lines = std::fs::read_to_string(&ledger)
            .unwrap_or_default()
            .lines()
            .count();
        assert_eq!(ended(&entry).0, CompletionStatus::Error);
        assert_eq!(lines, charges, "opt in: {opt_in}");
        assert_eq!(entry.metadata["fallback"]["fellBack"], opt_in);
        backends.shutdown().await;
    }
}

/// A kernel waits `interrupt_grace` for idle after its interrupt before the ladder starts:
/// the agent's cancel grace covers both, so it never drops a kernel that is still stopping.
#[test]
fn a_jupyter_backend_needs_its_interrupt_grace_and_then_its_ladder() {
    let config = "use = \"kernel\"\n[backends.kernel]\nkind = \"jupyter\"\n\
                  interrupt_grace = \"3s\"\nterminate_grace = \"2s\"\n";
    let backends = BackendsConfig::parse(config, "backends.toml")
        .unwrap()
        .build(None);
    // 3 s waiting for idle, then the ladder (3 s after SIGINT, 2 s after SIGTERM, 1 s for
    // SIGKILL to settle), then the 1 s margin.
    assert_eq!(backends.cancel_grace(), std::time::Duration::from_secs(10));
}

/// An executable script in `dir`.
fn script(dir: &std::path::Path, name: &str, body: &str) -> String {
    use std::os::unix::fs::PermissionsExt as _;
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path.display().to_string()
}

#[tokio::test]
async fn a_missing_or_broken_program_is_an_error_at_start_not_at_the_first_cell() {
    let dir = tempfile::tempdir().unwrap();
    let check = |text: String| async move {
        BackendsConfig::parse(&text, "agents.toml")
            .unwrap()
            .check_programs()
            .await
            .map_err(|error| error.to_string())
    };
    // A name that is on no PATH (this one's own PATH is empty).
    let missing = check(
        "[backends.shell]\nkind = \"job\"\nprogram = \"bash\"\nenv = { PATH = \"/nonexistent\" }\n"
            .to_owned(),
    )
    .await
    .unwrap_err();
    assert_eq!(
        missing,
        "agents.toml: backends.shell.program: expected a program this machine has: a name on PATH or a path; \"bash\" is not on PATH"
    );
    // A path to a file that cannot run.
    let plain = dir.path().join("not-executable");
    std::fs::write(&plain, "data").unwrap();
    let error = check(format!(
        "[backends.shell]\nkind = \"job\"\nprogram = \"{}\"\n",
        plain.display()
    ))
    .await
    .unwrap_err();
    assert!(error.ends_with("is not an executable file"), "{error}");
    // An agent CLI that does not answer --version.
    let broken = script(
        dir.path(),
        "codex-broken",
        "echo 'missing libssl' >&2; exit 1",
    );
    let error = check(format!(
        "[backends.codex]\nkind = \"codex\"\nprogram = \"{broken}\"\n"
    ))
    .await
    .unwrap_err();
    assert!(
        error.contains("--version` failed (exit status: 1): missing libssl"),
        "{error}"
    );
    // One that does, and an ordinary program on PATH: fine. Backends not in use are not
    // checked.
    let working = script(dir.path(), "codex", "echo codex-cli 1.0.0");
    check(format!(
        "use = \"codex\"\n[backends.codex]\nkind = \"codex\"\nprogram = \"{working}\"\n\
         [backends.unused]\nkind = \"job\"\nprogram = \"no-such-program\"\n"
    ))
    .await
    .unwrap();
    check("[backends.shell]\nkind = \"job\"\nprogram = \"sh\"\n".to_owned())
        .await
        .unwrap();
}

#[test]
fn a_codex_backend_names_a_managed_runtime_or_a_program_not_both() {
    assert!(
        error_of("[backends.codex]\nkind = \"codex\"\nruntime = \"codex\"\nprogram = \"codex\"\n")
            .contains("backends.codex.runtime: expected either `runtime` or `program`, not both")
    );
}
