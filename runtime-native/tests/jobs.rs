//! The job backend with real bash and python3 processes: streaming, exit codes, limits,
//! redaction, and the stop ladder on process groups that leaves nothing behind.
#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use runtime_core::handler::{HandlerExt, Redactor};
use runtime_core::{CompletionStatus, EntryState};
use runtime_native::process::{Input, Job, Program};
use support::{describe, ended, group_exists, quick_ladder, serve, text_of};

fn bash() -> Job {
    Job::new(Program::new("bash").args(["-c"]))
        .input(Input::Argument)
        .ladder(quick_ladder())
}

/// Runs `source` as a bash job, cancels it once it printed its first line (its traps are
/// set by then), and returns the completed entry.
async fn cancelled_once_running(source: &str) -> runtime_core::QueueEntry {
    let served = serve(bash());
    let queue_id = served.request(source).await;
    served
        .wait_for_output(&queue_id, |text| text.contains('\n'))
        .await;
    served.cancel(&queue_id).await;
    served.completion(&queue_id).await
}

/// The pid the script printed first (its own, so its process group's id).
fn printed_pid(text: &str) -> i32 {
    text.lines().next().unwrap().trim().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outputs_stream_in_order_while_the_job_runs() {
    let served = serve(bash());
    let queue_id = served
        .request("echo one; sleep 0.1; echo two >&2; sleep 0.1; echo three; sleep 30")
        .await;
    // Seen while the job still runs: streaming, not collected at exit.
    served
        .wait_for_output(&queue_id, |text| text.contains("three"))
        .await;
    let entry = served.completion_or_running(&queue_id);
    assert!(
        matches!(entry.state, EntryState::Executing { .. }),
        "{entry:?}"
    );
    served.cancel(&queue_id).await;
    let entry = served.completion(&queue_id).await;
    assert_eq!(
        describe(&entry.outputs),
        ["Stdout:one\n", "Stderr:two\n", "Stdout:three\n"]
    );
    assert_eq!(ended(&entry).0, CompletionStatus::Cancelled);
    assert_eq!(entry.metadata["stoppedBy"], "SIGINT");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_exit_code_decides_the_status_and_is_recorded() {
    let served = serve(bash());
    let ok = served.run("echo fine").await;
    assert_eq!(ended(&ok).0, CompletionStatus::Success);
    assert_eq!(ok.metadata["exitCode"], 0);
    assert_eq!(ok.metadata["backend"], "job");

    let failed = served.run("echo oops >&2; exit 3").await;
    assert_eq!(
        ended(&failed),
        (
            CompletionStatus::Error,
            "ExitCode: the process exited with code 3".into()
        )
    );
    assert_eq!(failed.metadata["exitCode"], 3);
    assert_eq!(
        describe(&failed.outputs),
        [
            "Stderr:oops\n",
            "error:ExitCode:the process exited with code 3"
        ]
    );

    let killed = served.run("kill -SEGV $$").await;
    assert_eq!(ended(&killed).0, CompletionStatus::Error);
    assert_eq!(killed.metadata["exitSignal"], 11);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_source_goes_to_stdin_or_as_one_argument_never_through_a_shell() {
    let tricky = "print('a'); print(\"$(rm -rf /) `x` ; | & 'quoted'\")";
    let served = serve(Job::new(Program::new("python3").args(["-"])));
    let entry = served.run(tricky).await;
    assert_eq!(
        text_of(&entry.outputs),
        "a\n$(rm -rf /) `x` ; | & 'quoted'\n"
    );

    let served = serve(
        Job::new(
            Program::new("python3")
                .args(["-c", "import sys, json; print(json.dumps(sys.argv[1:]))"]),
        )
        .input(Input::Argument),
    );
    let entry = served.run("one arg; $HOME 'q'").await;
    assert_eq!(text_of(&entry.outputs), "[\"one arg; $HOME 'q'\"]\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn env_and_working_directory_are_applied() {
    let dir = tempfile::tempdir().unwrap();
    let program = Program::new("bash")
        .args(["-c"])
        .env("GREETING", "hello there")
        .cwd(dir.path());
    let served = serve(Job::new(program).input(Input::Argument));
    let entry = served.run("echo \"$GREETING\"; pwd").await;
    let expected = format!(
        "hello there\n{}\n",
        dir.path().canonicalize().unwrap().display()
    );
    assert_eq!(text_of(&entry.outputs), expected);
    let debug = format!("{:?}", Program::new("x").env("TOKEN", "s3cret"));
    assert!(
        debug.contains("TOKEN") && !debug.contains("s3cret"),
        "{debug}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_program_that_does_not_exist_is_unavailable() {
    let served = serve(Job::new(Program::new("/nonexistent/program")));
    let entry = served.run("x").await;
    let (status, reason) = ended(&entry);
    assert_eq!(status, CompletionStatus::Error);
    assert!(
        reason.starts_with("unavailable: could not start \"/nonexistent/program\""),
        "{reason}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_runtime_ends_the_job_timed_out() {
    let served = serve(bash().max_runtime(Duration::from_millis(300)));
    let entry = served.run("echo $$; sleep 30").await;
    let (status, reason) = ended(&entry);
    assert_eq!(status, CompletionStatus::TimedOut);
    assert!(
        reason.starts_with("timed out after 300 ms; the process group stopped after SIGINT"),
        "{reason}"
    );
    assert!(!group_exists(printed_pid(&text_of(&entry.outputs))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_escalates_to_sigterm_when_sigint_is_ignored() {
    let entry = cancelled_once_running("trap '' INT; echo $$; sleep 30 & wait").await;
    let (status, reason) = ended(&entry);
    assert_eq!(status, CompletionStatus::Cancelled);
    assert!(
        reason.contains("ignored SIGINT and stopped after SIGTERM"),
        "{reason}"
    );
    assert_eq!(entry.metadata["stoppedBy"], "SIGTERM");
    assert!(!group_exists(printed_pid(&text_of(&entry.outputs))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_reaches_sigkill_and_leaves_no_process_or_zombie_in_the_group() {
    // Two background children and the shell itself ignore SIGINT and SIGTERM.
    let entry =
        cancelled_once_running("trap '' INT TERM; echo $$; sleep 30 & sleep 30 & wait").await;
    assert_eq!(ended(&entry).0, CompletionStatus::Cancelled);
    assert_eq!(entry.metadata["stoppedBy"], "SIGKILL");
    assert!(
        ended(&entry).1.contains("killed with SIGKILL"),
        "{:?}",
        ended(&entry)
    );
    assert!(!group_exists(printed_pid(&text_of(&entry.outputs))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn background_work_left_by_a_finished_job_is_killed_not_orphaned() {
    let served = serve(bash());
    let entry = served.run("echo $$; sleep 30 & echo started").await;
    assert_eq!(ended(&entry).0, CompletionStatus::Success);
    assert!(!group_exists(printed_pid(&text_of(&entry.outputs))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn output_limit_and_redaction_hold_for_a_job() {
    let served = serve(
        bash()
            .redact(Redactor::new().literal("hunter2"))
            .limit_output(1000),
    );
    let entry = served
        .run("echo 'pw hunter2 key sk-abcdefghijklmnopqrstuvwxyz0123'; yes | head -c 100000")
        .await;
    assert_eq!(ended(&entry).0, CompletionStatus::Success);
    let shown = describe(&entry.outputs);
    assert!(
        shown[0].starts_with("Stdout:pw [redacted] key [redacted]\ny\ny"),
        "{shown:?}"
    );
    assert_eq!(text_of(&entry.outputs[..1]).len(), 1000);
    assert!(
        shown.last().unwrap().contains("output limit of 1000 bytes"),
        "{shown:?}"
    );
}

/// A real program writes a token in two pieces 100 ms apart, and another inside a line
/// longer than the pipe's 64 KiB piece so the cut falls in the token: both are masked
/// whole, and no piece of either reaches an output.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_split_across_writes_or_cut_lines_never_reach_the_store() {
    let served = serve(bash().redact(Redactor::new().literal("hunter2-literal")));
    let script = "printf 'key sk-proj-0123456789ab'; sleep 0.1; printf 'cdefghijklmnop and hunter2-'; \
                  sleep 0.1; printf 'literal\\n'; \
                  python3 -c \"import sys; sys.stdout.write('x' * 65530 + ' ghp_' + 'A' * 36 + ' end\\n')\"";
    let entry = served.run(script).await;
    assert_eq!(ended(&entry).0, CompletionStatus::Success);
    let text = text_of(&entry.outputs);
    assert!(
        text.starts_with("key [redacted] and [redacted]\nxxx"),
        "{}",
        &text[..80]
    );
    assert!(
        text.ends_with("x [redacted] end\n"),
        "{}",
        &text[text.len() - 80..]
    );
    // The source holds the secrets; no output may.
    let outputs = format!("{:?}", entry.outputs);
    for piece in [
        "0123456789ab",
        "cdefghijklmnop",
        "hunter2",
        "literal",
        "AAAAAAAAAA",
    ] {
        assert!(!outputs.contains(piece), "{piece} reached the store");
    }
}

/// An agent started ignoring SIGINT (a script's `cmd &` does that, and an ignored signal
/// stays ignored in every program started after) still interrupts its programs: the test
/// above, run again in a process that ignores SIGINT, still sees its job stopped by SIGINT.
#[test]
fn programs_stay_interruptible_when_the_agent_was_started_ignoring_sigint() {
    let output = std::process::Command::new("bash")
        .args(["-c", "trap '' INT; exec \"$0\" \"$@\""])
        .arg(std::env::current_exe().unwrap())
        .args(["--exact", "outputs_stream_in_order_while_the_job_runs"])
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{said}");
    assert!(said.contains("1 passed"), "{said}");
}
