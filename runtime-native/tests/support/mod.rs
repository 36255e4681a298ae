//! A real agent on a MemoryStore serving one handler, for the backend tests.
#![allow(dead_code, clippy::unwrap_used)]

use std::time::Duration;

use runtime_core::*;
use runtime_native::TokioClock;

/// An agent serving `handler`, and a client for it.
pub(crate) struct Served {
    pub(crate) store: MemoryStore,
    pub(crate) handle: AgentHandle,
    pub(crate) client: NotebookClient,
}

pub(crate) fn serve(handler: impl ExecutionHandler + 'static) -> Served {
    serve_with_grace(handler, Duration::from_secs(10))
}

/// An agent that waits only `cancel_grace` for a cancelled execution before dropping it.
pub(crate) fn serve_with_grace(
    handler: impl ExecutionHandler + 'static,
    cancel_grace: Duration,
) -> Served {
    let store = MemoryStore::new();
    let options = AgentOptions {
        cancel_grace,
        ..AgentOptions::new("tester")
    };
    let agent = RuntimeAgent::new(store.clone(), TokioClock, Capabilities::code(), options)
        .unwrap()
        .on_execution(handler);
    let handle = agent.handle();
    tokio::spawn(agent.run());
    Served {
        client: NotebookClient::new(store.clone(), "tester"),
        store,
        handle,
    }
}

impl Served {
    /// Requests `source` in a new cell; returns its queue id.
    pub(crate) async fn request(&self, source: &str) -> QueueId {
        self.client
            .run_cell(CellType::Code, source)
            .await
            .unwrap()
            .1
    }

    /// Requests `source` in a new cell; returns the cell and queue ids.
    pub(crate) async fn request_cell(&self, source: &str) -> (CellId, QueueId) {
        self.client.run_cell(CellType::Code, source).await.unwrap()
    }

    /// Requests `source` in an existing cell.
    pub(crate) async fn request_in(&self, cell: &CellId, source: &str) -> QueueId {
        self.client
            .execute(cell, CellType::Code, source)
            .await
            .unwrap()
    }

    /// Waits (at most 30 s) for the entry to complete.
    pub(crate) async fn completion(&self, queue_id: &QueueId) -> QueueEntry {
        let mut watcher = NotebookWatcher::new(&self.store);
        tokio::time::timeout(
            Duration::from_secs(30),
            watcher.wait_for_completion(queue_id),
        )
        .await
        .expect("completes within 30 s")
        .unwrap()
        .clone()
    }

    /// Runs `source` and waits for it.
    pub(crate) async fn run(&self, source: &str) -> QueueEntry {
        let queue_id = self.request(source).await;
        self.completion(&queue_id).await
    }

    /// Waits until the entry's outputs satisfy `ready`.
    pub(crate) async fn wait_for_output(&self, queue_id: &QueueId, ready: impl Fn(&str) -> bool) {
        let mut watcher = NotebookWatcher::new(&self.store);
        let seen = watcher.wait_until(|state| {
            state
                .entry(queue_id)
                .is_some_and(|entry| ready(&text_of(&entry.outputs)))
        });
        tokio::time::timeout(Duration::from_secs(30), seen)
            .await
            .expect("the output arrives within 30 s")
            .unwrap();
    }

    /// Waits until the entry has any output.
    pub(crate) async fn wait_for_output_kind(&self, queue_id: &QueueId) {
        let mut watcher = NotebookWatcher::new(&self.store);
        let seen = watcher.wait_until(|state| {
            state
                .entry(queue_id)
                .is_some_and(|entry| !entry.outputs.is_empty())
        });
        tokio::time::timeout(Duration::from_secs(30), seen)
            .await
            .expect("an output arrives within 30 s")
            .unwrap();
    }

    /// The entry as the log has it now.
    pub(crate) fn completion_or_running(&self, queue_id: &QueueId) -> QueueEntry {
        let mut state = NotebookState::new();
        for entry in self.store.entries() {
            state.apply(entry.seq, &entry.event);
        }
        state.entry(queue_id).unwrap().clone()
    }

    /// Waits (at most 60 s) until the entry asks for input with a request other than
    /// `after`; returns it.
    pub(crate) async fn asked(&self, queue_id: &QueueId, after: Option<&InputId>) -> InputRequest {
        let mut watcher = NotebookWatcher::new(&self.store);
        let asked = watcher.wait_until(|state| {
            state
                .entry(queue_id)
                .and_then(|entry| entry.input.as_ref())
                .is_some_and(|input| input.is_waiting() && Some(&input.input_id) != after)
        });
        let state = tokio::time::timeout(Duration::from_secs(60), asked)
            .await
            .expect("the entry asks for input within 60 s")
            .unwrap();
        state.entry(queue_id).unwrap().input.clone().unwrap()
    }

    /// Answers the entry's input request.
    pub(crate) async fn reply(&self, queue_id: &QueueId, request: &InputRequest, value: &str) {
        self.client
            .reply_input(queue_id, request, value)
            .await
            .unwrap();
    }

    /// The whole log as JSON lines.
    pub(crate) fn log_text(&self) -> String {
        let lines: Vec<String> = self
            .store
            .entries()
            .iter()
            .map(|entry| entry.event.to_json_string())
            .collect();
        lines.join("\n")
    }

    pub(crate) async fn cancel(&self, queue_id: &QueueId) {
        self.client.cancel(queue_id).await.unwrap();
    }
}

/// How an entry ended: status and reason.
pub(crate) fn ended(entry: &QueueEntry) -> (CompletionStatus, String) {
    match &entry.state {
        EntryState::Completed { status, error } => (*status, error.clone().unwrap_or_default()),
        other => panic!("not completed: {other:?}"),
    }
}

/// Every output as `kind:text`.
pub(crate) fn describe(outputs: &[Output]) -> Vec<String> {
    outputs
        .iter()
        .map(|output| match &output.kind {
            OutputKind::Stream { name, text } => format!("{name:?}:{text}"),
            OutputKind::Markdown { text } => format!("md:{text}"),
            OutputKind::Display { data, .. } => format!("display:{}", data.text().unwrap_or("")),
            OutputKind::Result { data, .. } => format!("result:{}", data.text().unwrap_or("")),
            OutputKind::Error { ename, evalue, .. } => format!("error:{ename}:{evalue}"),
        })
        .collect()
}

/// The pid a test program printed as `pid N` on a line of its own.
pub(crate) fn printed_pid_line(outputs: &[Output]) -> i32 {
    text_of(outputs)
        .lines()
        .find_map(|line| line.strip_prefix("pid "))
        .unwrap()
        .parse()
        .unwrap()
}

/// All stream text, concatenated.
pub(crate) fn text_of(outputs: &[Output]) -> String {
    outputs
        .iter()
        .filter_map(|output| match &output.kind {
            OutputKind::Stream { text, .. } => Some(text.as_str()),
            _ => None,
        })
        .collect()
}

/// `true` while a live process of group `pgid` exists, or a zombie this process should
/// have reaped (one of its own children). A zombie re-parented to init is dead and init's.
pub(crate) fn group_exists(pgid: i32) -> bool {
    let me = std::process::id() as i32;
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<i32>().ok())
        .any(|pid| {
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                return false;
            };
            let Some((_, fields)) = stat.rsplit_once(')') else {
                return false;
            };
            let fields: Vec<&str> = fields.split_whitespace().collect();
            let (state, ppid, pgrp) = (fields[0], fields[1], fields[2]);
            pgrp == pgid.to_string() && (state != "Z" || ppid == me.to_string())
        })
}

/// Waits (at most 10 s) for group `pgid` to be gone; `false` if it is still there.
pub(crate) async fn group_gone(pgid: i32) -> bool {
    for _ in 0..1000 {
        if !group_exists(pgid) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    false
}

/// A short ladder for tests.
pub(crate) fn quick_ladder() -> runtime_native::process::Ladder {
    runtime_native::process::Ladder {
        interrupt_grace: Duration::from_millis(300),
        terminate_grace: Duration::from_millis(300),
    }
}
