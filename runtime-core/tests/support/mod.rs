//! A deterministic executor for agent tests and simulations: one thread, a seeded random
//! choice among woken tasks, and a virtual clock that jumps to the next deadline when every
//! task is waiting. The same seed replays the same run.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::Context;
use std::time::Duration;

use futures::task::{ArcWake, waker};
use runtime_core::*;

/// xorshift64*: small, fast, good enough to pick interleavings.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    /// `true` with probability `percent` / 100.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

struct Flag(AtomicBool);

impl ArcWake for Flag {
    fn wake_by_ref(arc_self: &Arc<Self>) {
        arc_self.0.store(true, Ordering::SeqCst);
    }
}

struct Task {
    future: Pin<Box<dyn Future<Output = ()>>>,
    woken: Arc<Flag>,
}

/// Identifies a spawned task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TaskId(usize);

/// The value a task produced, once it has.
pub struct Output<T>(Rc<RefCell<Option<T>>>);

impl<T> Output<T> {
    pub fn take(&self) -> Option<T> {
        self.0.borrow_mut().take()
    }

    pub fn is_ready(&self) -> bool {
        self.0.borrow().is_some()
    }
}

pub struct Sim {
    pub clock: ManualClock,
    pub rng: Rng,
    tasks: Vec<Option<Task>>,
}

impl Sim {
    pub fn new(seed: u64) -> Self {
        Sim {
            clock: ManualClock::new(Timestamp(1_000_000)),
            rng: Rng::new(seed),
            tasks: Vec::new(),
        }
    }

    /// Starts `future`; its value is in the returned [`Output`] once it completes.
    pub fn spawn<T: 'static>(
        &mut self,
        future: impl Future<Output = T> + 'static,
    ) -> (TaskId, Output<T>) {
        let slot = Rc::new(RefCell::new(None));
        let output = slot.clone();
        let task = Task {
            future: Box::pin(async move {
                let value = future.await;
                *slot.borrow_mut() = Some(value);
            }),
            woken: Arc::new(Flag(AtomicBool::new(true))),
        };
        self.tasks.push(Some(task));
        (TaskId(self.tasks.len() - 1), Output(output))
    }

    /// Drops a task without letting it finish: a crash.
    pub fn kill(&mut self, id: TaskId) {
        self.tasks[id.0] = None;
    }

    pub fn is_alive(&self, id: TaskId) -> bool {
        self.tasks[id.0].is_some()
    }

    /// Polls one woken task, chosen at random; if none is woken, moves the clock to the
    /// next deadline. Returns `false` when nothing can make progress.
    pub fn step(&mut self) -> bool {
        let woken: Vec<usize> = (0..self.tasks.len())
            .filter(|&i| {
                self.tasks[i]
                    .as_ref()
                    .is_some_and(|t| t.woken.0.load(Ordering::SeqCst))
            })
            .collect();
        if woken.is_empty() {
            return match self.clock.next_deadline() {
                Some(deadline) => {
                    self.clock.set(deadline);
                    true
                }
                None => false,
            };
        }
        let index = woken[self.rng.below(woken.len() as u64) as usize];
        let task = self.tasks[index].as_mut().unwrap();
        task.woken.0.store(false, Ordering::SeqCst);
        let waker = waker(task.woken.clone());
        if task
            .future
            .as_mut()
            .poll(&mut Context::from_waker(&waker))
            .is_ready()
        {
            self.tasks[index] = None;
        }
        true
    }

    /// Steps until `done` holds; panics if nothing can progress first or after `limit`
    /// steps (a hang in a test is a failure, not a timeout).
    #[track_caller]
    pub fn run_until(&mut self, mut done: impl FnMut() -> bool) {
        let limit = 2_000_000;
        for _ in 0..limit {
            if done() {
                return;
            }
            if !self.step() {
                assert!(done(), "stalled: every task waits and no timer is set");
                return;
            }
        }
        panic!("no result after {limit} steps");
    }

    /// Steps until `output` is ready and returns it.
    #[track_caller]
    pub fn run_to<T>(&mut self, output: &Output<T>) -> T {
        self.run_until(|| output.is_ready());
        output.take().unwrap()
    }

    /// Steps until no task is woken and no timer is due within `horizon`.
    pub fn settle(&mut self, horizon: Duration) {
        let until = self.clock.now().saturating_add(horizon);
        loop {
            let woken = self
                .tasks
                .iter()
                .flatten()
                .any(|t| t.woken.0.load(Ordering::SeqCst));
            if woken {
                self.step();
                continue;
            }
            match self.clock.next_deadline() {
                Some(deadline) if deadline <= until => self.clock.set(deadline),
                _ => return,
            }
        }
    }
}

/// Options for test agents: short lease, short grace.
pub fn options(client: &str) -> AgentOptions {
    AgentOptions {
        runtime_type: "test".into(),
        renew_interval: Duration::from_millis(100),
        lease_duration: Duration::from_millis(300),
        cancel_grace: Duration::from_millis(50),
        ..AgentOptions::new(client)
    }
}

/// `clock` read `offset_ms` ahead (behind, if negative): a machine whose clock is off.
#[derive(Clone)]
pub struct Skewed {
    pub clock: ManualClock,
    pub offset_ms: i64,
}

impl Clock for Skewed {
    fn now(&self) -> Timestamp {
        Timestamp(
            self.clock
                .now()
                .as_millis()
                .saturating_add_signed(self.offset_ms),
        )
    }

    fn sleep(&self, duration: Duration) -> BoxFuture<'static, ()> {
        self.clock.sleep(duration)
    }
}

/// Folds the whole log of `store` as it is now.
pub fn fold(store: &MemoryStore) -> NotebookState {
    let mut state = NotebookState::new();
    for entry in store.entries() {
        state.apply_entry(&entry);
    }
    state
}

/// The text of stream and markdown outputs and a short tag for the others.
pub fn describe(outputs: &[runtime_core::Output]) -> Vec<String> {
    outputs
        .iter()
        .map(|output| match &output.kind {
            OutputKind::Stream { name, text } => format!("{name:?}:{text}"),
            OutputKind::Markdown { text } => format!("md:{text}"),
            OutputKind::Display {
                data, display_id, ..
            } => {
                format!(
                    "display({}):{}",
                    display_id.as_ref().map_or("", |d| d.as_str()),
                    data.text().unwrap_or("")
                )
            }
            OutputKind::Result {
                data,
                execution_count,
                ..
            } => {
                format!("result[{execution_count}]:{}", data.text().unwrap_or(""))
            }
            OutputKind::Error { ename, evalue, .. } => format!("error:{ename}:{evalue}"),
        })
        .collect()
}

/// Commits a cell run request and returns its queue id once committed.
pub fn request(sim: &mut Sim, store: &MemoryStore, source: &str) -> QueueId {
    let client = NotebookClient::new(store.clone(), "alice");
    let source = source.to_owned();
    let (_, requested) =
        sim.spawn(async move { client.run_cell(CellType::Code, &source).await.unwrap().1 });
    sim.run_to(&requested)
}

pub fn wait_for(sim: &mut Sim, store: &MemoryStore, queue_id: &QueueId) -> QueueEntry {
    let mut watcher = NotebookWatcher::new(store);
    let queue_id = queue_id.clone();
    let (_, done) = sim.spawn(async move {
        watcher
            .wait_for_completion(&queue_id)
            .await
            .unwrap()
            .clone()
    });
    sim.run_to(&done)
}
