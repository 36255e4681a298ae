//! The JSON-lines adapter backend against a real python3 adapter
//! (`tests/fixtures/adapter.py`): outputs, `done` ending turns (never silence),
//! malformed, stale and huge lines, cancel answered or not, crash and restart.
#![allow(clippy::unwrap_used)]

mod support;

use runtime_core::CompletionStatus;
use runtime_native::process::{Adapter, Program};
use support::{describe, ended, group_exists, quick_ladder, serve, text_of};

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
    let served = serve(adapter());
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
    assert_eq!(entry.metadata["stoppedBy"], "SIGINT");
    assert!(
        reason.contains("did not answer the cancel request"),
        "{reason}"
    );
    let text = text_of(&entry.outputs);
    let pid: i32 = text
        .lines()
        .find_map(|line| line.strip_prefix("pid "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(!group_exists(pid));
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
