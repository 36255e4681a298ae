//! The interactive session backend with a real python3 REPL: marker and quiet-period
//! turns, state kept between turns, cancel that keeps or restarts the session, crash and
//! restart, the inactivity timeout.
#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use runtime_core::CompletionStatus;
use runtime_native::process::{Program, Session, TurnEnd};
use support::{
    describe, ended, group_exists, group_gone, printed_pid_line, quick_ladder, serve,
    serve_with_grace, text_of,
};

const MARKER: &str = "<<turn done>>";

fn python() -> Program {
    // No prompts: `-i` after `-c` keeps reading stdin as a REPL.
    Program::new("python3").args(["-i", "-q", "-u", "-c", "import sys; sys.ps1 = sys.ps2 = ''"])
}

fn marker_session() -> Session {
    Session::new(
        python(),
        TurnEnd::Marker {
            marker: MARKER.into(),
            send: Some(format!("print({MARKER:?})")),
            error_marker: None,
        },
    )
    .ladder(quick_ladder())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn marker_turns_share_one_process_and_its_state() {
    let served = serve(marker_session());
    let first = served.run("x = 41\nprint('set')").await;
    assert_eq!(ended(&first).0, CompletionStatus::Success);
    assert_eq!(describe(&first.outputs), ["Stdout:set\n"]);
    // A turn silent for longer than any quiet period still ends only on the marker.
    let second = served
        .run("import time; time.sleep(0.5); print(x + 1)")
        .await;
    assert_eq!(describe(&second.outputs), ["Stdout:42\n"]);
    assert_eq!(second.metadata["backend"], "session");
    assert!(second.metadata.get("restarted").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quiet_period_turns_end_after_silence() {
    let served = serve(Session::new(
        python(),
        // Quiet mode is a timer by nature: the quiet period must outlast a loaded
        // machine's delay between input and output, or a turn ends before its output.
        TurnEnd::Quiet(Duration::from_secs(2)),
    ));
    let entry = served.run("print('hi')").await;
    assert_eq!(ended(&entry).0, CompletionStatus::Success);
    assert_eq!(text_of(&entry.outputs), "hi\n");
    let entry = served.run("print('again')").await;
    assert_eq!(text_of(&entry.outputs), "again\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_interrupts_the_turn_and_keeps_a_repl_that_survives_sigint() {
    let served = serve(marker_session());
    served.run("kept = 'yes'").await;
    let queue_id = served
        .request("import time; print('sleeping'); time.sleep(30)")
        .await;
    served
        .wait_for_output(&queue_id, |text| text.contains("sleeping"))
        .await;
    served.cancel(&queue_id).await;
    let entry = served.completion(&queue_id).await;
    assert_eq!(ended(&entry).0, CompletionStatus::Cancelled);
    assert_eq!(entry.metadata["stoppedBy"], "SIGINT");
    assert_eq!(entry.metadata["sessionKept"], true);
    assert!(text_of(&entry.outputs).contains("KeyboardInterrupt"));
    let after = served.run("print(kept)").await;
    assert_eq!(text_of(&after.outputs), "yes\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_escalates_when_the_repl_ignores_sigint_and_the_next_turn_restarts() {
    let served = serve(marker_session());
    let queue_id = served
        .request("import signal, time; signal.signal(signal.SIGINT, signal.SIG_IGN); print('deaf'); time.sleep(30)")
        .await;
    served
        .wait_for_output(&queue_id, |text| text.contains("deaf"))
        .await;
    served.cancel(&queue_id).await;
    let entry = served.completion(&queue_id).await;
    let (status, reason) = ended(&entry);
    assert_eq!(status, CompletionStatus::Cancelled);
    assert_eq!(entry.metadata["stoppedBy"], "SIGTERM");
    assert_eq!(entry.metadata["sessionKept"], false);
    assert!(reason.contains("restarts for the next turn"), "{reason}");
    let next = served.run("print('fresh')").await;
    assert_eq!(text_of(&next.outputs), "fresh\n");
    assert_eq!(next.metadata["restarted"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_fails_the_running_turn_and_the_next_one_restarts() {
    let served = serve(marker_session());
    served.run("state = 1").await;
    let crashed = served
        .run("import os, sys; print('bye'); sys.stderr.write('dying\\n'); os._exit(3)")
        .await;
    let (status, reason) = ended(&crashed);
    assert_eq!(status, CompletionStatus::Error);
    assert!(
        reason.starts_with("SessionCrashed: the session process exited with code 3"),
        "{reason}"
    );
    assert!(text_of(&crashed.outputs).contains("bye\n"));
    assert!(text_of(&crashed.outputs).contains("dying\n"));
    let next = served.run("print('state' in globals())").await;
    assert_eq!(text_of(&next.outputs), "False\n");
    assert_eq!(next.metadata["restarted"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_turn_past_the_inactivity_timeout_ends_timed_out() {
    let served = serve(marker_session().inactivity_timeout(Duration::from_millis(300)));
    // Started first, so the SIGINT reaches a REPL, not an interpreter still starting.
    served.run("print('up')").await;
    let entry = served.run("import time; time.sleep(30)").await;
    assert_eq!(ended(&entry).0, CompletionStatus::TimedOut);
    // Python survives SIGINT, prints the marker, and keeps its state.
    assert_eq!(entry.metadata["sessionKept"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_program_that_cannot_start_is_unavailable() {
    let served = serve(Session::new(
        Program::new("/nonexistent/repl"),
        TurnEnd::Quiet(Duration::from_millis(100)),
    ));
    let entry = served.run("1").await;
    assert!(
        ended(&entry).1.starts_with("unavailable:"),
        "{:?}",
        ended(&entry)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_ends_the_session_process_and_its_group() {
    let session = std::sync::Arc::new(marker_session());
    let served = serve(session.clone());
    let entry = served.run("import os; print(os.getpid())").await;
    let pid: i32 = text_of(&entry.outputs).trim().parse().unwrap();
    assert!(support::group_exists(pid));
    session.shutdown().await;
    assert!(!support::group_exists(pid));
    // Nothing running: a second shutdown does nothing.
    session.shutdown().await;
}

/// The Python session exactly as `examples/backends.toml` ships it.
fn shipped_python() -> runtime_native::backends::Backends {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/backends.toml");
    runtime_native::backends::BackendsConfig::load(path)
        .unwrap()
        .select("python")
        .unwrap()
        .build(None)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn output_that_looks_like_the_marker_cannot_end_a_turn() {
    let backends = shipped_python();
    let served = serve(backends.handler());
    // The marker without this turn's nonce, then more output of the same turn.
    let first = served
        .run("import time\nprint('<<turn done>>')\nprint('<<turn done 0123>>')\ntime.sleep(0.3)\nprint('late')")
        .await;
    assert_eq!(ended(&first).0, CompletionStatus::Success);
    assert_eq!(
        text_of(&first.outputs),
        "<<turn done>>\n<<turn done 0123>>\nlate\n"
    );
    let second = served.run("print('second')").await;
    assert_eq!(
        text_of(&second.outputs),
        "second\n",
        "nothing of the first turn"
    );
    backends.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_python_exception_ends_the_cell_error_and_the_session_goes_on() {
    let backends = shipped_python();
    let served = serve(backends.handler());
    let failed = served.run("x = 1\n1/0").await;
    assert_eq!(ended(&failed).0, CompletionStatus::Error);
    assert!(
        text_of(&failed.outputs).contains("ZeroDivisionError"),
        "{:?}",
        failed.outputs
    );
    let next = served.run("print(x + 1)").await;
    assert_eq!(
        ended(&next).0,
        CompletionStatus::Success,
        "the error is not carried over"
    );
    assert_eq!(text_of(&next.outputs), "2\n");
    backends.shutdown().await;
}

/// A `sh` session whose turns end on the marker.
fn shell_session(ladder: runtime_native::process::Ladder) -> Session {
    Session::new(
        Program::new("sh"),
        TurnEnd::Marker {
            marker: MARKER.into(),
            send: Some(format!("echo '{MARKER}'")),
            error_marker: None,
        },
    )
    .ladder(ladder)
}

/// A shell session whose turn closes stdout and keeps running cannot hang: it gets the first
/// grace, then the rest of the ladder.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_that_closes_stdout_and_keeps_running_is_stopped() {
    let session = shell_session(quick_ladder());
    let served = serve(session);
    let entry = served
        .run("echo \"pid $$\" >&2; exec >&-; exec sleep 600")
        .await;
    let (status, reason) = ended(&entry);
    assert_eq!(status, CompletionStatus::Error);
    assert!(
        reason.contains("closed its output but kept running, and was stopped with SIGTERM"),
        "{reason}"
    );
    let pid = printed_pid_line(&entry.outputs);
    assert!(!group_exists(pid));
    // The next turn gets a new shell.
    assert_eq!(text_of(&served.run("echo again").await.outputs), "again\n");
}

/// A turn the agent drops (its cancel grace is shorter than the ladder) kills the session
/// process; the next turn starts a new one instead of waiting behind it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_turn_kills_the_session_and_the_next_turn_gets_a_new_one() {
    let session = shell_session(runtime_native::process::Ladder {
        interrupt_grace: Duration::from_secs(20),
        terminate_grace: Duration::from_secs(20),
    });
    let served = serve_with_grace(session, Duration::from_millis(200));
    let queue_id = served
        .request("trap '' INT TERM; echo \"pid $$\"; sleep 600")
        .await;
    served
        .wait_for_output(&queue_id, |t| t.contains("pid "))
        .await;
    served.cancel(&queue_id).await;
    let entry = served.completion(&queue_id).await;
    assert_eq!(ended(&entry).0, CompletionStatus::Cancelled);
    let pid = printed_pid_line(&entry.outputs);
    assert!(
        group_gone(pid).await,
        "the session outlived its dropped turn"
    );
    assert_eq!(text_of(&served.run("echo fresh").await.outputs), "fresh\n");
}
