//! The codex backend against the real Codex CLI (`@openai/codex`, pinned in scripts/check)
//! talking to a local stand-in of the streaming Responses API on 127.0.0.1: a prompt that
//! runs a command, the cell's thread resumed, usage per run and per thread, a failed model
//! call shown once with its reason, a server that never answers stopped by `max_runtime`,
//! and no zombie left behind.
//!
//! `RUNTIME_CODEX_BIN` names the binary; without it the test says so and does nothing,
//! unless `RUNTIME_REQUIRE_CODEX` is set (scripts/check sets both), when it fails.
#![allow(clippy::unwrap_used, clippy::print_stderr)]

mod support;

use std::path::Path;
use std::time::Duration;

use runtime_core::CompletionStatus;
use runtime_native::process::{Codex, Program, adopt_orphans};
use serde_json::{Value, json};
use support::{describe, ended, serve};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// The stand-in's answer to one `POST /v1/responses`, chosen by the prompt.
fn answer(request: &Value) -> Option<Vec<Value>> {
    let input = request["input"].as_array().cloned().unwrap_or_default();
    let text = serde_json::to_string(&input).unwrap();
    let user_texts = input.iter().filter(|item| item["role"] == "user").count();
    let answered = input
        .iter()
        .any(|item| item["type"] == "function_call_output");
    let created = json!({"type": "response.created", "response": {"id": "resp"}});
    let item = if text.contains("never answer") {
        return None;
    } else if text.contains("fail in the stream") {
        return Some(vec![
            created,
            json!({"type": "response.failed", "response": {"id": "resp",
                "error": {"code": "server_error", "message": "the model broke down"}}}),
        ]);
    } else if text.contains("run a command") && !answered {
        json!({"type": "function_call", "id": "fc", "call_id": "call-1", "name": "exec_command",
               "arguments": json!({"cmd": "echo hi from the command"}).to_string()})
    } else {
        json!({"type": "message", "role": "assistant", "id": "msg", "content": [
            {"type": "output_text", "text": format!("Hello after {user_texts} user messages.")}]})
    };
    Some(vec![
        created,
        json!({"type": "response.output_item.done", "item": item}),
        json!({"type": "response.completed", "response": {"id": "resp", "usage": {
            "input_tokens": 100, "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": 7, "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": 107}}}),
    ])
}

/// Serves the stand-in on 127.0.0.1; returns its port.
async fn stand_in() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(exchange(stream));
        }
    });
    port
}

async fn exchange(stream: TcpStream) {
    let mut reader = BufReader::new(stream);
    let mut length = 0;
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line).await.unwrap_or(0) == 0 {
            return;
        }
        if line == "\r\n" {
            break;
        }
        if let Some(value) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            length = value.trim().parse().unwrap_or(0);
        }
    }
    let mut body = vec![0; length];
    if reader.read_exact(&mut body).await.is_err() {
        return;
    }
    let request: Value = serde_json::from_slice(&body).unwrap_or_default();
    let mut stream = reader.into_inner();
    let Some(events) = answer(&request) else {
        // Accepts, then never answers.
        tokio::time::sleep(Duration::from_secs(600)).await;
        return;
    };
    let sse: String = events
        .iter()
        .map(|event| {
            format!(
                "event: {}\ndata: {event}\n\n",
                event["type"].as_str().unwrap()
            )
        })
        .collect();
    let head = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        sse.len()
    );
    let _ = stream.write_all(head.as_bytes()).await;
    let _ = stream.write_all(sse.as_bytes()).await;
    let _ = stream.shutdown().await;
}

/// A codex home pointing at the stand-in, and a work directory that is not a git tree.
fn codex(binary: &str, port: u16, dir: &Path) -> Codex {
    codex_with(
        binary,
        port,
        dir,
        "request_max_retries = 0\nstream_max_retries = 0\n",
    )
}

/// The same, with `retries` as the provider's retry settings (codex's defaults if empty).
fn codex_with(binary: &str, port: u16, dir: &Path, retries: &str) -> Codex {
    let home = dir.join(format!("codex-home-{port}"));
    let work = dir.join("work");
    std::fs::create_dir_all(&home).unwrap();
    std::fs::create_dir_all(&work).unwrap();
    std::fs::write(
        home.join("config.toml"),
        format!(
            "model = \"gpt-5.5\"\nmodel_provider = \"stub\"\napproval_policy = \"never\"\n\
             sandbox_mode = \"danger-full-access\"\n[model_providers.stub]\nname = \"stub\"\n\
             base_url = \"http://127.0.0.1:{port}/v1\"\nenv_key = \"STUB_API_KEY\"\n\
             wire_api = \"responses\"\n{retries}"
        ),
    )
    .unwrap();
    Codex::new()
        .program(
            Program::new(binary)
                .env("CODEX_HOME", home.to_string_lossy())
                .env("STUB_API_KEY", "stub-key")
                .cwd(work),
        )
        // An exec-only flag: it must come after `exec` (issue 11, item 13).
        .exec_args(["--skip-git-repo-check"])
}

/// This process's children that exited and were never reaped.
fn zombie_children() -> Vec<i32> {
    let mut zombies = Vec::new();
    for task in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
        let children = std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
        for pid in children
            .split_whitespace()
            .filter_map(|pid| pid.parse::<i32>().ok())
        {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            if stat
                .rsplit_once(')')
                .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'))
            {
                zombies.push(pid);
            }
        }
    }
    zombies
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_real_codex_cli_runs_resumes_fails_and_stops_cleanly() {
    let Ok(binary) = std::env::var("RUNTIME_CODEX_BIN") else {
        assert!(
            std::env::var_os("RUNTIME_REQUIRE_CODEX").is_none(),
            "RUNTIME_REQUIRE_CODEX is set but RUNTIME_CODEX_BIN is not"
        );
        eprintln!("skipped: set RUNTIME_CODEX_BIN to the Codex CLI (scripts/check does)");
        return;
    };
    adopt_orphans().unwrap();
    let port = stand_in().await;
    let dir = tempfile::tempdir().unwrap();
    let served = serve(codex(&binary, port, dir.path()));

    // A prompt that runs a command: the command shows, then codex's answer.
    let (cell, first) = served.request_cell("run a command, please").await;
    let entry = served.completion(&first).await;
    assert_eq!(
        ended(&entry).0,
        CompletionStatus::Success,
        "{:?}",
        ended(&entry)
    );
    let shown = describe(&entry.outputs);
    assert_eq!(shown.len(), 2, "{shown:?}");
    assert!(
        shown[0].starts_with("Stdout:$ ")
            && shown[0].contains("echo hi from the command")
            && shown[0].ends_with("\nhi from the command\n[exit code 0]\n"),
        "{shown:?}"
    );
    assert!(shown[1].starts_with("md:Hello after "), "{shown:?}");
    let thread = entry.metadata["threadId"].as_str().unwrap().to_owned();
    let first_usage = entry.metadata["usage"].clone();
    assert_eq!(
        first_usage["thisRun"], first_usage["threadTotal"],
        "{first_usage}"
    );
    assert_eq!(
        first_usage["thisRun"]["output_tokens"], 14,
        "two model calls: {first_usage}"
    );

    // The cell's next run resumes its thread: the model sees the earlier turn.
    let again = served
        .completion(&served.request_in(&cell, "and now just answer").await)
        .await;
    assert_eq!(
        ended(&again).0,
        CompletionStatus::Success,
        "{:?}",
        ended(&again)
    );
    assert_eq!(again.metadata["threadId"], thread.as_str());
    let count = |entry: &runtime_core::QueueEntry| -> usize {
        let text = describe(&entry.outputs).last().unwrap().clone();
        text.trim_start_matches("md:Hello after ")
            .trim_end_matches(" user messages.")
            .parse()
            .unwrap()
    };
    assert!(
        count(&again) > count(&entry),
        "the resumed turn saw no history"
    );
    let usage = &again.metadata["usage"];
    assert_eq!(usage["thisRun"]["output_tokens"], 7, "{usage}");
    assert_eq!(usage["threadTotal"]["output_tokens"], 21, "{usage}");

    // A model call that fails: shown once, and the reason is codex's error, not a
    // usage hint or a backtrace line.
    let failed = served.run("fail in the stream").await;
    let (status, reason) = ended(&failed);
    assert_eq!(status, CompletionStatus::Error);
    assert!(reason.contains("the model broke down"), "{reason}");
    let shown = describe(&failed.outputs);
    let mentions = shown
        .iter()
        .filter(|output| output.contains("the model broke down"))
        .count();
    assert!(mentions <= 1, "shown more than once: {shown:?}");

    // A model server that never answers: max_runtime stops codex and its group.
    let hung = serve(codex(&binary, port, dir.path()).max_runtime(Duration::from_secs(3)));
    let entry = hung.run("never answer").await;
    assert_eq!(
        ended(&entry).0,
        CompletionStatus::TimedOut,
        "{:?}",
        ended(&entry)
    );
    assert!(
        entry.metadata.get("stoppedBy").is_some(),
        "{:?} {:?}",
        entry.metadata,
        describe(&entry.outputs)
    );

    // No model server at all: with codex's own retries it waits for ever; the cell shows
    // that it is waiting for the network, and cancel stops it.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let offline = serve(codex_with(&binary, closed, dir.path(), ""));
    let queue_id = offline.request("hello?").await;
    let mut waiting = Vec::new();
    for _ in 0..600 {
        waiting = describe(&offline.completion_or_running(&queue_id).outputs);
        if !waiting.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        waiting.len() == 1
            && waiting[0]
                .starts_with("display:codex is waiting for the model server: Reconnecting..."),
        "{waiting:?}"
    );
    offline.cancel(&queue_id).await;
    let entry = offline.completion(&queue_id).await;
    assert_eq!(
        ended(&entry).0,
        CompletionStatus::Cancelled,
        "{:?}",
        ended(&entry)
    );

    // Whatever codex's helpers left behind was reaped.
    let mut zombies = zombie_children();
    for _ in 0..500 {
        if zombies.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
        zombies = zombie_children();
    }
    assert!(zombies.is_empty(), "zombie children: {zombies:?}");
}
