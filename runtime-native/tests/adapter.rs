//! The JSON-lines adapter backend against a real python3 adapter
//! (`tests/fixtures/adapter.py`): outputs, `done` ending turns (never silence),
//! malformed, stale and huge lines, cancel answered or not, crash and restart.
#![allow(clippy::unwrap_used)]

mod support;

use runtime_core::CompletionStatus;
use runtime_native::process::{Adapter, Program};
use std::time::Duration;

use runtime_native::backends::BackendsConfig;
use support::{
    describe, ended, group_exists, group_gone, printed_pid_line, quick_ladder, serve,
    serve_with_grace, text_of,
};

fn adapter_script() -> &'static str {
    concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/adapter.py")
}

/// The pid the `deaf` command printed to stderr.
fn deaf_pid(entry: &runtime_core::QueueEntry) -> i32 {
    printed_pid_line(&entry.outputs)
}

fn adapter() -> Adapter {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/adapter.py");
    Adapter::new(Program::new("python3").args(["-u", script])).ladder(quick_ladder())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outputs_of_every_kind_and_done_statuses() {
    let served = serve(adapter());
    let entry = served.run("echo hello").await;
    assert_eq!(ended(&entry).0, CompletionStatus::Success);
    assert_eq!(describe(&entry.outputs), ["Stdout:hello\n"]);
    assert_eq!(entry.metadata["backend"], "adapter");

    let rich = served.run("rich").await;
    assert_eq!(
        describe(&rich.outputs),
        ["md:**bold**", "display:a table", "result:42"]
    );

    let failed = served.run("fail").await;
    assert_eq!(
        ended(&failed),
        (
            CompletionStatus::Error,
            "AdapterError: ValueError: bad".into()
        )
    );
    assert_eq!(describe(&failed.outputs), ["error:ValueError:bad"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silence_does_not_end_a_turn_done_does() {
    let served = serve(adapter());
    let entry = served.run("quiet 1.0").await;
    assert_eq!(ended(&entry).0, CompletionStatus::Success);
    assert_eq!(text_of(&entry.outputs), "spoke at last\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_stale_and_huge_lines_are_skipped_counted_and_not_fatal() {
    let served = serve(adapter());
    let entry = served.run("garbage").await;
    assert_eq!(ended(&entry).0, CompletionStatus::Success);
    assert_eq!(describe(&entry.outputs), ["Stdout:still fine\n"]);
    assert_eq!(entry.metadata["malformedLines"], 3);
    assert_eq!(entry.metadata["staleLines"], 1);

    let entry = served.run("huge").await;
    assert_eq!(ended(&entry).0, CompletionStatus::Success);
    let shown = describe(&entry.outputs);
    assert!(
        shown[0].starts_with("Stderr:[adapter: skipped a protocol line of 2097"),
        "{shown:?}"
    );
    assert_eq!(shown[1], "Stdout:after\n");
    assert_eq!(entry.metadata["overlongLines"], 1);
    // The adapter is still the same process and still answers.
    assert_eq!(text_of(&served.run("echo alive").await.outputs), "alive\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_is_sent_as_a_request_and_answered() {
    // The default ladder: the adapter has 2 s to answer, however loaded the machine.
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/adapter.py");
    let served = serve(Adapter::new(Program::new("python3").args(["-u", script])));
    let queue_id = served.request("slow").await;
    served
        .wait_for_output(&queue_id, |t| t.contains("working"))
        .await;
    served.cancel(&queue_id).await;
    let entry = served.completion(&queue_id).await;
    assert_eq!(ended(&entry).0, CompletionStatus::Cancelled);
    assert_eq!(entry.metadata["stoppedBy"], "cancel request");
    assert!(text_of(&entry.outputs).contains("stopping on request"));
    assert_eq!(
        text_of(&served.run("echo same process").await.outputs),
        "same process\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_adapter_that_ignores_cancel_is_stopped_and_restarted() {
    let served = serve(adapter());
    let queue_id = served.request("deaf").await;
    served
        .wait_for_output(&queue_id, |t| t.contains("not listening"))
        .await;
    served.cancel(&queue_id).await;
    let entry = served.completion(&queue_id).await;
    let (status, reason) = ended(&entry);
    assert_eq!(status, CompletionStatus::Cancelled);
    // The cancel request stands for SIGINT; SIGTERM is the next step.
    assert_eq!(entry.metadata["stoppedBy"], "SIGTERM");
    assert!(
        reason.contains("did not answer the cancel request"),
        "{reason}"
    );
    assert!(!group_exists(deaf_pid(&entry)));
    assert_eq!(
        text_of(&served.run("echo restarted").await.outputs),
        "restarted\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_adapter_that_exits_mid_turn_fails_it_and_the_next_turn_restarts_it() {
    let served = serve(adapter());
    let entry = served.run("exit").await;
    let (status, reason) = ended(&entry);
    assert_eq!(status, CompletionStatus::Error);
    assert!(
        reason.starts_with("AdapterCrashed: the adapter exited with code 4"),
        "{reason}"
    );
    assert_eq!(text_of(&entry.outputs), "leaving\n");
    assert_eq!(text_of(&served.run("echo back").await.outputs), "back\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_asks_the_adapter_to_exit() {
    let adapter = std::sync::Arc::new(adapter());
    let served = serve(adapter.clone());
    let pid: i32 = text_of(&served.run("pid").await.outputs)
        .trim()
        .parse()
        .unwrap();
    served.handle.shutdown();
    adapter.shutdown().await;
    assert!(!group_exists(pid));
    // A second shutdown, with nothing running, is fine.
    adapter.shutdown().await;
}

/// Every message example in docs/adapter-protocol.md, replayed by a real adapter, is
/// understood: shown as an output, never counted malformed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_message_example_in_the_protocol_doc_is_understood() {
    let doc = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../docs/adapter-protocol.md"
    ))
    .unwrap();
    let mut examples = Vec::new();
    let mut in_json = false;
    for line in doc.lines() {
        match line.trim() {
            "```json" => in_json = true,
            "```" => in_json = false,
            text if in_json => {
                examples.push(serde_json::from_str::<serde_json::Value>(text).unwrap())
            }
            _ => {}
        }
    }
    let messages: Vec<_> = examples
        .into_iter()
        .filter(|example| {
            !["execute", "cancel", "shutdown", "done"].contains(&example["type"].as_str().unwrap())
        })
        .collect();
    assert_eq!(
        messages.len(),
        6,
        "stdout, stderr, display, markdown, result, error"
    );
    let dir = tempfile::tempdir().unwrap();
    let lines = dir.path().join("lines.jsonl");
    let text: String = messages.iter().map(|m| format!("{m}\n")).collect();
    std::fs::write(&lines, text).unwrap();
    // Replays the doc's lines with the request's id, then says done.
    let replay = "import json, sys\n\
        lines = [json.loads(l) for l in open(sys.argv[1])]\n\
        for request in map(json.loads, sys.stdin):\n\
        \x20   if request['type'] != 'execute': break\n\
        \x20   for m in lines:\n\
        \x20       m['id'] = request['id']; print(json.dumps(m), flush=True)\n\
        \x20   print(json.dumps({'type': 'done', 'id': request['id'], 'status': 'ok'}), flush=True)\n";
    let served = serve(Adapter::new(Program::new("python3").args([
        "-u",
        "-c",
        replay,
        &lines.to_string_lossy(),
    ])));
    let entry = served.run("anything").await;
    assert_eq!(ended(&entry).0, CompletionStatus::Success);
    assert!(
        entry.metadata.get("malformedLines").is_none(),
        "{:?}",
        entry.metadata
    );
    assert_eq!(
        describe(&entry.outputs),
        [
            "Stdout:1\n",
            "Stderr:warning: slow\n",
            "display:a table",
            "md:**Done.** Two files changed.",
            "result:42",
            "error:ValueError:bad value",
        ]
    );
}

/// An agent that gives up on a cancelled turn before the adapter's ladder is through drops
/// the turn: that kills the adapter's process group, and the next turn starts a new one
/// instead of waiting behind a busy adapter.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_turn_kills_the_adapter_and_the_next_turn_gets_a_new_one() {
    let long_ladder = runtime_native::process::Ladder {
        interrupt_grace: Duration::from_secs(20),
        terminate_grace: Duration::from_secs(20),
    };
    let adapter =
        Adapter::new(Program::new("python3").args(["-u", adapter_script()])).ladder(long_ladder);
    let served = serve_with_grace(adapter, Duration::from_millis(200));
    let queue_id = served.request("deaf").await;
    served
        .wait_for_output(&queue_id, |t| t.contains("not listening"))
        .await;
    served.cancel(&queue_id).await;
    let entry = served.completion(&queue_id).await;
    assert_eq!(ended(&entry).0, CompletionStatus::Cancelled);
    assert!(
        group_gone(deaf_pid(&entry)).await,
        "the adapter outlived its dropped turn"
    );
    assert_eq!(
        text_of(&served.run("echo a new adapter").await.outputs),
        "a new adapter\n"
    );
}

/// `max_runtime` on an adapter that ignores everything: the timeout's grace is derived
/// from the ladder, so the ladder runs to its end (`stoppedBy`), and the next cell works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_runtime_stops_a_hung_adapter_and_the_next_cell_runs() {
    let config = format!(
        "use = \"deaf\"\n[backends.deaf]\nkind = \"adapter\"\nprogram = \"python3\"\n\
         args = [\"-u\", {:?}]\nmax_runtime = \"1s\"\n",
        adapter_script()
    );
    let backends = BackendsConfig::parse(&config, "backends.toml")
        .unwrap()
        .build(None);
    assert_eq!(backends.cancel_grace(), Duration::from_secs(6));
    let served = serve(backends.handler());
    let entry = served.run("deaf").await;
    assert_eq!(
        ended(&entry).0,
        CompletionStatus::TimedOut,
        "{:?}",
        ended(&entry)
    );
    assert_eq!(entry.metadata["stoppedBy"], "SIGTERM");
    assert!(!group_exists(deaf_pid(&entry)));
    let next = served.run("echo next").await;
    assert_eq!(
        ended(&next).0,
        CompletionStatus::Success,
        "{:?}",
        ended(&next)
    );
    assert_eq!(text_of(&next.outputs), "next\n");
}

/// An adapter that closes its stdout but keeps running cannot hang the turn: it gets the
/// first grace to exit, then the rest of the ladder.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_adapter_that_closes_stdout_and_keeps_running_is_stopped() {
    let script = "echo \"pid $$\" >&2; read request; exec >&-; exec sleep 600";
    let served =
        serve(Adapter::new(Program::new("sh").args(["-c", script])).ladder(quick_ladder()));
    let entry = served.run("anything").await;
    let (status, reason) = ended(&entry);
    assert_eq!(status, CompletionStatus::Error);
    assert!(
        reason.contains("closed its output but kept running, and was stopped with SIGTERM"),
        "{reason}"
    );
    assert!(!group_exists(deaf_pid(&entry)));
}

/// A malformed protocol line is skipped and logged without its content: serde's message
/// would quote an unknown `type`, which may be anything the adapter printed.
#[tokio::test(flavor = "current_thread")]
async fn a_malformed_line_is_logged_without_what_it_held() {
    #[derive(Clone, Default)]
    struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);
    impl std::io::Write for Captured {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let script = "import json, sys\n\
        for request in map(json.loads, sys.stdin):\n\
        \x20   print(json.dumps({'type': 'sk-live-SECRET0123456789', 'id': request['id']}), flush=True)\n\
        \x20   print(json.dumps({'type': 'done', 'id': request['id'], 'status': 'ok'}), flush=True)\n";
    let served = serve(Adapter::new(
        Program::new("python3").args(["-u", "-c", script]),
    ));
    let entry = served.run("anything").await;
    assert_eq!(ended(&entry).0, CompletionStatus::Success);
    assert_eq!(entry.metadata["malformedLines"], 1);
    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(logs.contains("skipped a malformed protocol line"), "{logs}");
    assert!(!logs.contains("SECRET"), "{logs}");
}
