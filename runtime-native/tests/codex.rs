//! The codex backend against a fake `codex` (`tests/fixtures/codex.py`) that emits the
//! real `exec --json` event format: the mapping, per-cell resume, the stale-thread retry,
//! turn ends, lingering and cancel.
#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use runtime_core::CompletionStatus;
use runtime_native::process::{Codex, Program};
use serde_json::json;
use support::{describe, ended, group_exists, quick_ladder, serve};

/// A codex backend on the fake, with its thread store in `dir`.
fn fake_codex(dir: &tempfile::TempDir) -> Codex {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/codex.py");
    let program = Program::new("python3").args(["-u", script]).env(
        "FAKE_CODEX_STATE",
        dir.path().join("threads").to_string_lossy(),
    );
    Codex::new()
        .program(program)
        .ladder(quick_ladder())
        .exit_grace(Duration::from_millis(300))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_map_to_outputs_and_the_next_run_of_a_cell_resumes_its_thread() {
    let dir = tempfile::tempdir().unwrap();
    let served = serve(fake_codex(&dir));
    let (cell, first) = served.request_cell("hello").await;
    let entry = served.completion(&first).await;
    assert_eq!(ended(&entry).0, CompletionStatus::Success);
    assert_eq!(
        describe(&entry.outputs),
        [
            "Stdout:$ bash -lc ls\nREADME.md\nsrc\n[exit code 0]\n",
            "display:update src/lib.rs\nadd NOTES.md",
            "md:- [x] read the code\n- [ ] write tests",
            "md:Done (new thread).",
        ]
    );
    let per_turn = json!({"input_tokens": 120, "cached_input_tokens": 20, "output_tokens": 35});
    assert_eq!(
        entry.metadata["usage"],
        json!({"thisRun": per_turn, "threadTotal": per_turn})
    );
    assert_eq!(entry.metadata["backend"], "codex");
    let thread = entry.metadata["threadId"].as_str().unwrap().to_owned();

    let again = served
        .completion(&served.request_in(&cell, "hello").await)
        .await;
    assert_eq!(
        describe(&again.outputs).last().unwrap(),
        &format!("md:Done (resumed {thread}).")
    );
    // codex reports the thread's running total; the metadata says which is which.
    assert_eq!(
        again.metadata["usage"],
        json!({"thisRun": per_turn,
               "threadTotal": {"input_tokens": 240, "cached_input_tokens": 40, "output_tokens": 70}})
    );
    // Another cell has its own thread.
    let other = served.run("hello").await;
    assert_eq!(
        describe(&other.outputs).last().unwrap(),
        "md:Done (new thread)."
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_thread_is_retried_once_on_a_fresh_thread() {
    let dir = tempfile::tempdir().unwrap();
    let served = serve(fake_codex(&dir));
    // The fake forgets this thread at once, as codex does when its rollout is gone.
    let (cell, first) = served.request_cell("stale").await;
    let stale = served.completion(&first).await.metadata["threadId"].clone();
    let entry = served
        .completion(&served.request_in(&cell, "hello").await)
        .await;
    assert_eq!(ended(&entry).0, CompletionStatus::Success);
    assert_eq!(entry.metadata["staleThreadRetried"], true);
    assert_ne!(entry.metadata["threadId"], stale);
    assert_eq!(
        describe(&entry.outputs).last().unwrap(),
        "md:Done (new thread)."
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_turn_and_a_fatal_error_are_errors_with_their_message() {
    let dir = tempfile::tempdir().unwrap();
    let served = serve(fake_codex(&dir));
    let failed = served.run("fail").await;
    assert_eq!(
        ended(&failed),
        (
            CompletionStatus::Error,
            "CodexTurnFailed: model overloaded".into()
        )
    );
    let fatal = served.run("fatal").await;
    assert_eq!(
        ended(&fatal),
        (
            CompletionStatus::Error,
            "CodexError: codex exited with code 1 before its turn ended: stream disconnected before completion".into()
        )
    );
    // Each failure is shown once: not as stderr and again as the error.
    for (entry, message) in [
        (&failed, "model overloaded"),
        (&fatal, "stream disconnected"),
    ] {
        let shown = describe(&entry.outputs);
        let times = shown.iter().filter(|o| o.contains(message)).count();
        assert_eq!(times, 1, "{shown:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reconnect_notice_in_a_turn_that_succeeds_is_not_an_error_in_the_cell() {
    let dir = tempfile::tempdir().unwrap();
    let served = serve(fake_codex(&dir));
    let entry = served.run("flaky").await;
    assert_eq!(ended(&entry).0, CompletionStatus::Success);
    let shown = describe(&entry.outputs);
    assert!(
        !shown.iter().any(|o| o.contains("Reconnecting")),
        "{shown:?}"
    );
    assert_eq!(
        entry.metadata["notices"],
        json!(["Reconnecting... 1/5 (stream disconnected before completion)"])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_tool_call_shows_its_error_and_a_command_shows_when_it_starts() {
    let dir = tempfile::tempdir().unwrap();
    let served = serve(fake_codex(&dir));
    let entry = served.run("mcp").await;
    assert_eq!(
        describe(&entry.outputs),
        ["Stdout:[tool files.read: failed: tool crashed: ENOENT]\n"]
    );
    let queue_id = served.request("slowcmd").await;
    // Visible while it runs (until the test lets it finish), not only once it finished.
    served
        .wait_for_output(&queue_id, |text| {
            text.contains("$ bash -lc 'sleep 1; echo slept'")
        })
        .await;
    let running = served.completion_or_running(&queue_id);
    assert!(
        !running.is_completed(),
        "the command showed before the turn ended"
    );
    std::fs::write(dir.path().join("threads.go"), "").unwrap();
    let entry = served.completion(&queue_id).await;
    assert_eq!(
        describe(&entry.outputs),
        ["Stdout:$ bash -lc 'sleep 1; echo slept'\nslept\n[exit code 0]\n"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_turn_ends_on_turn_completed_and_a_lingering_process_is_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let served = serve(fake_codex(&dir));
    let entry = served.run("linger").await;
    assert_eq!(ended(&entry).0, CompletionStatus::Success);
    // It ignored SIGINT after its turn; SIGTERM ended it after the exit grace.
    assert_eq!(entry.metadata["stoppedBy"], "SIGTERM");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_stops_the_turn_with_the_ladder_even_when_signals_are_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let served = serve(fake_codex(&dir));
    let queue_id = served.request("slow").await;
    served.wait_for_output_kind(&queue_id).await;
    served.cancel(&queue_id).await;
    let entry = served.completion(&queue_id).await;
    assert_eq!(ended(&entry).0, CompletionStatus::Cancelled);
    assert_eq!(entry.metadata["stoppedBy"], "SIGINT");

    let queue_id = served.request("deaf").await;
    served.wait_for_output_kind(&queue_id).await;
    served.cancel(&queue_id).await;
    let entry = served.completion(&queue_id).await;
    assert_eq!(ended(&entry).0, CompletionStatus::Cancelled);
    assert_eq!(entry.metadata["stoppedBy"], "SIGKILL");
    let shown = describe(&entry.outputs);
    let pid: i32 = shown[0]
        .trim_start_matches("md:thinking (pid ")
        .trim_end_matches(')')
        .parse()
        .unwrap();
    assert!(!group_exists(pid));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_codex_binary_is_unavailable() {
    let served = serve(Codex::new().binary("/nonexistent/codex"));
    let entry = served.run("hello").await;
    assert!(
        ended(&entry).1.starts_with("unavailable: could not start"),
        "{:?}",
        ended(&entry)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn global_args_go_before_exec_and_exec_args_after_it_before_resume() {
    let dir = tempfile::tempdir().unwrap();
    let argv = dir.path().join("argv");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/codex.py");
    let program = Program::new("python3")
        .args(["-u", script])
        .env(
            "FAKE_CODEX_STATE",
            dir.path().join("threads").to_string_lossy(),
        )
        .env("FAKE_CODEX_ARGV", argv.to_string_lossy());
    let codex = Codex::new()
        .program(program)
        .args(["-c", "model=stub"])
        .exec_args(["--skip-git-repo-check"])
        .ladder(quick_ladder())
        .exit_grace(Duration::from_millis(300));
    let served = serve(codex);
    let (cell, first) = served.request_cell("hello").await;
    let entry = served.completion(&first).await;
    let thread = entry.metadata["threadId"].as_str().unwrap().to_owned();
    served
        .completion(&served.request_in(&cell, "hello").await)
        .await;
    let runs: Vec<Vec<String>> = std::fs::read_to_string(&argv)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(
        runs,
        [
            vec![
                "-c",
                "model=stub",
                "exec",
                "--json",
                "--skip-git-repo-check"
            ],
            vec![
                "-c",
                "model=stub",
                "exec",
                "--json",
                "--skip-git-repo-check",
                "resume",
                &thread
            ],
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_turn_past_max_runtime_ends_timed_out_stopped_by_the_ladder() {
    let dir = tempfile::tempdir().unwrap();
    let served = serve(fake_codex(&dir).max_runtime(Duration::from_millis(500)));
    let entry = served.run("slow").await;
    assert_eq!(ended(&entry).0, CompletionStatus::TimedOut);
    assert!(
        entry.metadata.get("stoppedBy").is_some(),
        "{:?}",
        entry.metadata
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_with_megabytes_of_output_shows_with_its_exit_code_truncated_and_marked() {
    let dir = tempfile::tempdir().unwrap();
    let served = serve(fake_codex(&dir));
    let entry = served.run("bigcmd").await;
    assert_eq!(ended(&entry).0, CompletionStatus::Success);
    let shown = support::text_of(&entry.outputs);
    assert!(
        shown.starts_with("$ bash -lc 'yes | head -c 2100000'\ny\ny\n"),
        "{}",
        &shown[..80]
    );
    assert!(
        shown.ends_with(
            "\n[output truncated: 2100000 bytes, the first 1048576 shown]\n[exit code 0]\n"
        ),
        "{}",
        &shown[shown.len() - 120..]
    );
    assert!(shown.len() < 1_100_000);
}
