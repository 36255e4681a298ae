//! Our side of each scenario. Agents and clients share one current-thread tokio runtime, so
//! in-process figures are the library's own cost, not thread hand-offs.

use std::path::Path;
use std::time::{Duration, Instant};

use futures::channel::oneshot;
use runtime_core::{
    AgentHandle, AgentOptions, Capabilities, CellId, CellType, CompletionStatus, EntryState,
    ExecutionContext, ExecutionError, MediaBundle, MemoryStore, NotebookClient, NotebookState,
    NotebookWatcher, Outcome, OutputKind, QueueEntry, QueueId, RuntimeAgent, Store,
};
use runtime_native::{SqliteStore, TokioClock};

use crate::stats::Summary;

/// The benchmark handler: the cell's source says what to do.
/// `1` echoes; `flood N` writes N stdout lines yielding after each; `flood-tight N` writes
/// them without yielding; `wait` waits for cancel.
async fn handler(ctx: ExecutionContext) -> Result<Outcome, ExecutionError> {
    let mut words = ctx.source().split_whitespace();
    match (
        words.next(),
        words.next().and_then(|n| n.parse::<usize>().ok()),
    ) {
        (Some(kind @ ("flood" | "flood-tight")), Some(lines)) => {
            for line in 0..lines {
                ctx.stdout(format!("line {line}\n"))?;
                if kind == "flood" {
                    tokio::task::yield_now().await;
                }
            }
            Ok(Outcome::default())
        }
        (Some("wait"), _) => {
            ctx.cancelled().await;
            Err(ExecutionError::Cancelled)
        }
        _ => Ok(MediaBundle::plain(format!("Echo: {}", ctx.source())).into()),
    }
}

/// One notebook with an agent serving it and a client watching it.
pub struct Notebook {
    pub client: NotebookClient,
    pub watcher: NotebookWatcher,
    pub handle: AgentHandle,
    pub cell: CellId,
    agent: tokio::task::JoinHandle<()>,
}

impl Notebook {
    /// Starts an agent on `store` and waits until it is ready; `watch` is the client's view
    /// (the same store, or another open of the same file).
    pub async fn start(store: impl Store + Clone + 'static, watch: &impl Store) -> Notebook {
        Self::serving(store, watch, handler).await
    }

    /// Like [`start`](Self::start), with `handler` serving it.
    pub async fn serving(
        store: impl Store + Clone + 'static,
        watch: &impl Store,
        handler: impl runtime_core::ExecutionHandler + 'static,
    ) -> Notebook {
        let (ready_tx, ready_rx) = oneshot::channel();
        let ready_tx = std::sync::Mutex::new(Some(ready_tx));
        let agent = RuntimeAgent::new(
            store.clone(),
            TokioClock,
            Capabilities::code(),
            AgentOptions::new("bench"),
        )
        .expect("valid options")
        .on_execution(handler)
        .on_ready(move |_| {
            if let Some(ready) = ready_tx.lock().expect("not poisoned").take() {
                let _ = ready.send(());
            }
        });
        let handle = agent.handle();
        let agent = tokio::spawn(async move {
            agent.run().await.expect("the bench agent runs");
        });
        ready_rx.await.expect("the agent became ready");
        let client = NotebookClient::new(store, "bench");
        let cell = client
            .create_cell(CellType::Code, "1")
            .await
            .expect("commit");
        Notebook {
            client,
            watcher: NotebookWatcher::new(watch),
            handle,
            cell,
            agent,
        }
    }

    /// Requests `source` and waits until it completed with all its outputs.
    pub async fn run(&mut self, source: &str) -> QueueEntry {
        let queue_id = self
            .client
            .execute(&self.cell, CellType::Code, source)
            .await
            .expect("commit");
        self.watcher
            .wait_for_completion(&queue_id)
            .await
            .expect("completes")
            .clone()
    }

    pub async fn stop(self) {
        self.handle.shutdown();
        let _ = self.agent.await;
    }
}

fn stdout_lines(entry: &QueueEntry) -> usize {
    entry
        .outputs
        .iter()
        .map(|o| match &o.kind {
            OutputKind::Stream { text, .. } => text.matches('\n').count(),
            _ => 0,
        })
        .sum()
}

pub async fn memory_notebooks(count: usize) -> Vec<Notebook> {
    let mut notebooks = Vec::with_capacity(count);
    for _ in 0..count {
        let store = MemoryStore::new();
        notebooks.push(Notebook::start(store.clone(), &store).await);
    }
    notebooks
}

/// B1 / B10: request → completion observed, round-robin over the notebooks.
pub async fn round_trips(notebooks: &mut [Notebook], samples: usize) -> Summary {
    let mut took = Vec::with_capacity(samples);
    for i in 0..samples + samples / 10 {
        let count = notebooks.len();
        let notebook = &mut notebooks[i % count];
        let started = Instant::now();
        let entry = notebook.run("1").await;
        let elapsed = started.elapsed();
        assert_eq!(entry.state.status(), Some(CompletionStatus::Success));
        if i >= samples / 10 {
            took.push(elapsed);
        }
    }
    Summary::of(&took)
}

/// B3 / B10: `total` stdout lines split across the notebooks, written concurrently; returns
/// the time until every client observed every line.
pub async fn flood(notebooks: &mut [Notebook], total: usize, kind: &str) -> Duration {
    let each = total / notebooks.len();
    let started = Instant::now();
    let mut requested: Vec<QueueId> = Vec::new();
    for notebook in notebooks.iter() {
        let source = format!("{kind} {each}");
        requested.push(
            notebook
                .client
                .execute(&notebook.cell, CellType::Code, &source)
                .await
                .expect("commit"),
        );
    }
    for (notebook, queue_id) in notebooks.iter_mut().zip(&requested) {
        let entry = notebook
            .watcher
            .wait_for_completion(queue_id)
            .await
            .expect("completes");
        assert_eq!(stdout_lines(entry), each, "every line arrived");
    }
    started.elapsed()
}

/// B5: cancel requested → the client observes `cancelled`.
pub async fn cancels(notebook: &mut Notebook, samples: usize) -> Summary {
    let running = |entry: &QueueEntry| matches!(entry.state, EntryState::Executing { .. });
    cancels_once(notebook, "wait", running, Duration::ZERO, samples).await
}

/// Runs `source` `samples` times, cancelling each once `ready` holds for its entry and
/// `settle` more has passed; measures cancel committed → cancelled observed.
pub async fn cancels_once(
    notebook: &mut Notebook,
    source: &str,
    ready: impl Fn(&QueueEntry) -> bool,
    settle: Duration,
    samples: usize,
) -> Summary {
    let mut took = Vec::with_capacity(samples);
    for _ in 0..samples {
        let queue_id = notebook
            .client
            .execute(&notebook.cell, CellType::Code, source)
            .await
            .expect("commit");
        let is_ready = |s: &NotebookState| s.entry(&queue_id).is_some_and(&ready);
        notebook.watcher.wait_until(is_ready).await.expect("runs");
        tokio::time::sleep(settle).await;
        let started = Instant::now();
        notebook.client.cancel(&queue_id).await.expect("commit");
        let entry = notebook
            .watcher
            .wait_for_completion(&queue_id)
            .await
            .expect("completes");
        took.push(started.elapsed());
        assert_eq!(entry.state.status(), Some(CompletionStatus::Cancelled));
    }
    Summary::of(&took)
}

/// B11: cancel a bash job that printed `ready` → cancelled observed, through the
/// process backend's ladder (SIGINT, then SIGTERM, then SIGKILL, `grace` apart).
/// `source` decides which step ends it.
pub async fn process_cancels(source: &str, grace: Duration, samples: usize) -> Summary {
    use runtime_native::process::{Input, Job, Ladder, Program};
    let job = Job::new(Program::new("bash").args(["-c"]))
        .input(Input::Argument)
        .ladder(Ladder {
            interrupt_grace: grace,
            terminate_grace: grace,
        });
    let store = MemoryStore::new();
    let mut notebook = Notebook::serving(store.clone(), &store, job).await;
    let printed = |entry: &QueueEntry| !entry.outputs.is_empty();
    let summary = cancels_once(&mut notebook, source, printed, Duration::ZERO, samples).await;
    notebook.stop().await;
    summary
}

/// B6 (in process): agent constructed → ready observed.
pub async fn starts(samples: usize) -> Summary {
    let mut took = Vec::with_capacity(samples);
    for _ in 0..samples {
        let store = MemoryStore::new();
        let started = Instant::now();
        let notebook = Notebook::start(store.clone(), &store).await;
        took.push(started.elapsed());
        notebook.stop().await;
    }
    Summary::of(&took)
}

/// B4: a client that reads only after completion still receives every line.
pub async fn slow_consumer(dir: &Path, lines: usize) -> (usize, usize) {
    let path = dir.join("slow-consumer.db");
    let store = SqliteStore::open(&path, "nb").expect("open");
    let notebook = Notebook::start(store.clone(), &store).await;
    let queue_id = notebook
        .client
        .execute(&notebook.cell, CellType::Code, &format!("flood {lines}"))
        .await
        .expect("commit");
    // Read none of its outputs while it runs: watch only the log's length until it has
    // stopped growing for 200 ms and the agent is not busy.
    let (mut last, mut quiet) = (store.head().expect("head"), 0);
    while quiet < 10 || notebook.handle.status() == runtime_core::AgentStatus::Busy {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let head = store.head().expect("head");
        quiet = if head == last { quiet + 1 } else { 0 };
        last = head;
    }
    let late_reader = SqliteStore::open(&path, "nb").expect("open");
    let mut watcher = NotebookWatcher::new(&late_reader);
    let received = stdout_lines(
        watcher
            .wait_for_completion(&queue_id)
            .await
            .expect("completes"),
    );
    notebook.stop().await;
    (lines, received)
}

/// B7: resident memory of this process, in KiB.
pub fn own_rss_kib() -> u64 {
    rss_kib("self")
}

/// Resident memory of `process` (a pid, or `self`), in KiB, from `/proc`.
pub fn rss_kib(process: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{process}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}
