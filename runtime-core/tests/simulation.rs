//! Deterministic simulation: 2 to 8 agents share one log under a virtual clock, with seeded
//! random scheduling, commit delays, crashes (the agent future dropped without goodbye),
//! restarts, graceful shutdowns, cancels and client requests. After each run the whole log
//! is checked for the invariants that matter to users:
//!
//! - no entry is started twice, and no handler runs twice for one entry;
//! - no output is accepted from a session that does not own the entry;
//! - every completion comes after all of its accepted outputs;
//! - once agents stop (and a last agent drains the queue), no entry is left pending,
//!   assigned or running.
//!
//! `SIM_SEEDS=N` runs N seeds (default 1000; 100 on wasm32), `SIM_SEED=S` replays one. A
//! failure names its seed; `SIM_DUMP=1` with `SIM_SEED` prints the whole log.
#![allow(clippy::unwrap_used)]

mod support;

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use futures::StreamExt;
use runtime_core::*;
use support::{Output, Rng, Sim, TaskId, options};

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

/// A MemoryStore whose commits take a random number of scheduler turns, so agents act on
/// stale views and race for claims, and which fails now and then as a network store
/// would: a commit refused, a commit that landed but reported failure, a subscription that
/// breaks. Agents must retry and resume without losing or duplicating anything.
#[derive(Clone)]
struct DelayedStore {
    inner: MemoryStore,
    rng: Arc<Mutex<Rng>>,
}

fn flaky() -> StoreError {
    StoreError::Unavailable("simulated outage".into())
}

#[cfg_attr(not(target_arch = "wasm32"), async_trait::async_trait)]
#[cfg_attr(target_arch = "wasm32", async_trait::async_trait(?Send))]
impl Store for DelayedStore {
    async fn commit_batch(&self, batch: &Batch) -> Result<Seq, StoreError> {
        let (turns, refuse, hide_success) = {
            let mut rng = self.rng.lock().unwrap();
            (rng.below(4), rng.chance(3), rng.chance(3))
        };
        for _ in 0..turns {
            YieldNow(false).await;
        }
        if refuse {
            return Err(flaky());
        }
        let first = self.inner.commit_batch_now(batch)?;
        if hide_success {
            Err(flaky())
        } else {
            Ok(first)
        }
    }

    fn subscribe(&self, from: Seq) -> Subscription {
        let rng = self.rng.clone();
        Box::pin(self.inner.subscribe(from).map(move |entry| {
            if rng.lock().unwrap().chance(1) {
                Err(flaky())
            } else {
                entry
            }
        }))
    }
}

struct YieldNow(bool);

impl Future for YieldNow {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0 {
            Poll::Ready(())
        } else {
            self.0 = true;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    }
}

/// How many times each entry's handler was entered.
type Runs = Arc<Mutex<HashMap<QueueId, u32>>>;

/// Behaviour comes from the source: `<kind> <writes> <millis>`.
fn handler(clock: ManualClock, runs: Runs) -> impl ExecutionHandler {
    move |ctx: ExecutionContext| {
        *runs
            .lock()
            .unwrap()
            .entry(ctx.queue_id().clone())
            .or_default() += 1;
        let clock = clock.clone();
        async move {
            let mut words = ctx.source().split(' ');
            let kind = words.next().unwrap_or("ok").to_owned();
            let writes: u64 = words.next().and_then(|w| w.parse().ok()).unwrap_or(1);
            let millis: u64 = words.next().and_then(|w| w.parse().ok()).unwrap_or(1);
            for n in 0..writes {
                // Writes after a cancel or displacement are allowed to fail.
                let _ = ctx.stdout(format!("line {n}\n"));
                let sleep = clock.sleep(Duration::from_millis(millis));
                if kind == "stubborn" {
                    sleep.await;
                } else {
                    futures::select_biased! {
                        _ = futures::FutureExt::fuse(ctx.cancelled()) => return Err(ExecutionError::Cancelled),
                        () = futures::FutureExt::fuse(sleep) => {}
                    }
                }
            }
            match kind.as_str() {
                "err" => Err(ExecutionError::msg("planned failure")),
                _ => Ok(MediaBundle::plain("done")),
            }
        }
    }
}

struct LiveAgent {
    task: TaskId,
    handle: AgentHandle,
    ended: Output<Result<TerminationReason, AgentError>>,
}

struct World {
    sim: Sim,
    store: DelayedStore,
    runs: Runs,
    agents: Vec<LiveAgent>,
    requests: Vec<QueueId>,
    /// Client commits in flight.
    commits: Vec<Output<Seq>>,
    stop_on_error: bool,
}

impl World {
    fn start_agent(&mut self) {
        let agent = RuntimeAgent::new(
            self.store.clone(),
            self.sim.clock.clone(),
            Capabilities::code(),
            AgentOptions {
                stop_on_error: self.stop_on_error,
                ..options("sim")
            },
        )
        .unwrap()
        .on_execution(handler(self.sim.clock.clone(), self.runs.clone()));
        let handle = agent.handle();
        let (task, ended) = self.sim.spawn(agent.run());
        self.agents.push(LiveAgent {
            task,
            handle,
            ended,
        });
    }

    fn commit(&mut self, events: Vec<Event>) {
        // Clients ride out the store's outages the way agents do.
        let store = Retrying::new(
            self.store.clone(),
            self.sim.clock.clone(),
            RetryPolicy::giving_up_after(Duration::from_secs(3600)),
        );
        let (_, committed) = self
            .sim
            .spawn(async move { store.commit(events).await.unwrap() });
        self.commits.push(committed);
    }

    fn request(&mut self) {
        let rng = &mut self.sim.rng;
        let kind = ["ok", "ok", "ok", "err", "stubborn"][rng.below(5) as usize];
        let source = format!("{kind} {} {}", rng.below(4), 1 + rng.below(80));
        let queue_id = QueueId::random();
        self.requests.push(queue_id.clone());
        let cell_id = CellId::random();
        let cell = CellCreated {
            cell_id: cell_id.clone(),
            cell_type: CellType::Code,
            source: source.clone(),
        };
        let request = ExecutionRequested {
            queue_id,
            cell_id,
            cell_type: CellType::Code,
            source,
            requested_by: "client".into(),
        };
        self.commit(vec![cell.into(), request.into()]);
    }

    fn cancel(&mut self) {
        let target = if self.requests.is_empty() || self.sim.rng.chance(10) {
            CancelTarget::All
        } else {
            let n = self.sim.rng.below(self.requests.len() as u64) as usize;
            CancelTarget::Entry {
                queue_id: self.requests[n].clone(),
            }
        };
        self.commit(vec![
            ExecutionCancelRequested {
                target,
                requested_by: "client".into(),
            }
            .into(),
        ]);
    }

    /// Writes what a buggy or crashed peer implementation might: claims, starts, outputs
    /// and completions from sessions that crashed (possibly still active) or never existed.
    fn forge(&mut self) {
        if self.requests.is_empty() {
            return;
        }
        let state = support::fold(&self.store.inner);
        let held: Vec<(QueueId, SessionId)> = state
            .in_progress()
            .filter_map(|e| Some((e.queue_id.clone(), e.state.session_id()?.clone())))
            .collect();
        let crashed: Vec<SessionId> = self
            .agents
            .iter()
            .filter(|a| !self.sim.is_alive(a.task) && !a.ended.is_ready())
            .map(|a| a.handle.session_id().clone())
            .collect();
        let rng = &mut self.sim.rng;
        let forge_claim = rng.below(3) == 0;
        let (queue_id, session_id) = if !held.is_empty() && rng.chance(50) {
            // An entry someone holds; a claim even reuses the holder's own session id.
            let (queue_id, holder) = held[rng.below(held.len() as u64) as usize].clone();
            (
                queue_id,
                if forge_claim {
                    holder
                } else {
                    SessionId::from("ghost")
                },
            )
        } else {
            let queue_id = self.requests[rng.below(self.requests.len() as u64) as usize].clone();
            let session_id = if crashed.is_empty() || rng.chance(30) {
                SessionId::from("ghost")
            } else {
                crashed[rng.below(crashed.len() as u64) as usize].clone()
            };
            (queue_id, session_id)
        };
        let at = self.sim.clock.now();
        let kind = if forge_claim {
            0
        } else {
            1 + self.sim.rng.below(2)
        };
        let event: Vec<Event> = match kind {
            0 => vec![
                ExecutionAssigned {
                    queue_id: queue_id.clone(),
                    session_id: session_id.clone(),
                }
                .into(),
                ExecutionStarted {
                    queue_id,
                    session_id,
                    at,
                }
                .into(),
            ],
            1 => vec![
                StreamOutputAdded {
                    queue_id,
                    session_id,
                    output_id: OutputId::random(),
                    name: StreamName::Stdout,
                    text: "forged\n".into(),
                }
                .into(),
            ],
            _ => vec![
                ExecutionCompleted {
                    queue_id,
                    session_id,
                    status: CompletionStatus::Success,
                    error: None,
                    duration_ms: 0,
                    abort_pending: false,
                    metadata: Default::default(),
                }
                .into(),
            ],
        };
        self.commit(event);
    }

    fn live(&self) -> Vec<usize> {
        (0..self.agents.len())
            .filter(|&n| self.sim.is_alive(self.agents[n].task) && !self.agents[n].ended.is_ready())
            .collect()
    }

    fn pick_live(&mut self) -> Option<usize> {
        let live = self.live();
        (!live.is_empty()).then(|| live[self.sim.rng.below(live.len() as u64) as usize])
    }
}

fn simulate(seed: u64) -> Result<(), String> {
    let mut sim = Sim::new(seed);
    let store = DelayedStore {
        inner: MemoryStore::new(),
        rng: Arc::new(Mutex::new(Rng::new(seed ^ 0xA5A5))),
    };
    let max_agents = 2 + sim.rng.below(7) as usize;
    let stop_on_error = sim.rng.chance(30);
    let mut world = World {
        sim,
        store,
        runs: Runs::default(),
        agents: Vec::new(),
        requests: Vec::new(),
        commits: Vec::new(),
        stop_on_error,
    };
    world.start_agent();

    for _ in 0..40 {
        let roll = world.sim.rng.below(100);
        match roll {
            0..=39 => world.request(),
            40..=49 => world.cancel(),
            50..=59 => {
                if let Some(n) = world.pick_live() {
                    world.sim.kill(world.agents[n].task);
                }
            }
            60..=79 => {
                if world.live().len() < max_agents {
                    world.start_agent();
                }
            }
            80..=84 => {
                if let Some(n) = world.pick_live() {
                    world.agents[n].handle.shutdown();
                }
            }
            85..=91 => world.forge(),
            _ => {
                let millis = world.sim.rng.below(400);
                world.sim.clock.advance(Duration::from_millis(millis));
            }
        }
        let steps = 1 + world.sim.rng.below(300);
        for _ in 0..steps {
            if !world.sim.step() {
                break;
            }
        }
    }

    // Every client request lands; then everyone stops: graceful shutdowns finish, crashed
    // sessions' leases run out.
    let commits = std::mem::take(&mut world.commits);
    world.sim.run_until(|| commits.iter().all(Output::is_ready));
    for agent in &world.agents {
        agent.handle.shutdown();
    }
    let tasks: Vec<TaskId> = world.agents.iter().map(|a| a.task).collect();
    for task in tasks {
        let mut guard = 0;
        while world.sim.is_alive(task) && guard < 1_000_000 {
            if !world.sim.step() {
                break;
            }
            guard += 1;
        }
        if world.sim.is_alive(task) {
            return Err("an agent did not stop after shutdown".into());
        }
    }
    for agent in &world.agents {
        match agent.ended.take() {
            // An outage that outlasts the lease (the clock jumps) ends an agent: allowed.
            Some(Err(AgentError::Store(error))) if error.is_retriable() => {}
            Some(Err(error)) => return Err(format!("an agent failed: {error}")),
            _ => {}
        }
    }
    world.sim.clock.advance(Duration::from_secs(10));

    // A last agent expires what crashed and drains the queue; then it stops too.
    world.start_agent();
    let last = world.agents.len() - 1;
    let inner = world.store.inner.clone();
    let mut watcher = NotebookWatcher::new(&inner);
    let last_session = world.agents[last].handle.session_id().clone();
    let (_, drained) = world.sim.spawn(async move {
        // Its session starts after every request landed: once it is active, all are folded.
        let idle = |s: &NotebookState| {
            s.active_session()
                .is_some_and(|a| a.session_id == last_session)
                && s.pending().count() == 0
                && s.in_progress().count() == 0
        };
        watcher.wait_until(idle).await.map(drop)
    });
    world.sim.run_until(|| drained.is_ready());
    world.agents[last].handle.shutdown();
    let ended = &world.agents[last].ended;
    world.sim.run_until(|| ended.is_ready());

    check_log(
        &world.store.inner,
        &world.runs.lock().unwrap(),
        &world.requests,
    )
}

/// Checks the invariants over the whole log, replaying it independently.
fn check_log(
    store: &MemoryStore,
    runs: &HashMap<QueueId, u32>,
    requests: &[QueueId],
) -> Result<(), String> {
    let mut state = NotebookState::new();
    let mut starts: HashMap<QueueId, u32> = HashMap::new();
    let mut owner: HashMap<QueueId, SessionId> = HashMap::new();
    for entry in store.entries() {
        let event = &*entry.event;
        let queue_id = event.queue_id().cloned();
        let was_completed = queue_id
            .as_ref()
            .and_then(|q| state.entry(q))
            .is_some_and(QueueEntry::is_completed);
        let applied = state.apply(entry.seq, event) == Applied::Applied;
        if !applied {
            continue;
        }
        if let Event::ExecutionStarted(e) = event {
            *starts.entry(e.queue_id.clone()).or_default() += 1;
            owner.insert(e.queue_id.clone(), e.session_id.clone());
        }
        if event.is_output() {
            let queue_id = queue_id.unwrap();
            let session = event.session_id().unwrap();
            if owner.get(&queue_id) != Some(session) {
                return Err(format!(
                    "seq {}: output for {queue_id} accepted from non-owner {session}",
                    entry.seq
                ));
            }
            if was_completed {
                return Err(format!(
                    "seq {}: output for {queue_id} accepted after its completion",
                    entry.seq
                ));
            }
        }
    }
    if let Some((queue_id, n)) = starts.iter().find(|(_, n)| **n > 1) {
        return Err(format!("{queue_id} started {n} times"));
    }
    if let Some((queue_id, n)) = runs.iter().find(|(_, n)| **n > 1) {
        return Err(format!("the handler ran {n} times for {queue_id}"));
    }
    if let Some((queue_id, _)) = runs.iter().find(|(q, _)| !starts.contains_key(*q)) {
        return Err(format!(
            "the handler ran for {queue_id}, which never started in the log"
        ));
    }
    if std::env::var("SIM_DUMP").is_ok() {
        #[allow(clippy::print_stderr)]
        for entry in store.entries() {
            eprintln!(
                "{} {}",
                entry.seq,
                serde_json::to_string(&*entry.event).unwrap()
            );
        }
    }
    if let Some(entry) = state.entries().find(|e| !e.is_completed()) {
        return Err(format!(
            "{} left {:?} after every agent stopped",
            entry.queue_id, entry.state
        ));
    }
    if let Some(lost) = requests.iter().find(|q| state.entry(q).is_none()) {
        return Err(format!("the request {lost} never reached the log"));
    }
    // A successful execution shows every line it wrote, once, in order, then its result.
    for entry in state.entries() {
        if entry.state.status() != Some(CompletionStatus::Success) {
            continue;
        }
        let writes: usize = entry.source.split(' ').nth(1).unwrap().parse().unwrap();
        let expected: String = (0..writes).map(|n| format!("line {n}\n")).collect();
        let shown: String = entry
            .outputs
            .iter()
            .filter_map(|o| match &o.kind {
                OutputKind::Stream { text, .. } => Some(text.as_str()),
                _ => None,
            })
            .collect();
        if shown != expected {
            return Err(format!(
                "{} succeeded showing {shown:?}, not {expected:?}",
                entry.queue_id
            ));
        }
    }
    Ok(())
}

fn env_number(name: &str) -> Option<u64> {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
}

#[test]
fn simulated_agents_never_duplicate_lose_or_orphan_work() {
    let default_seeds = if cfg!(target_arch = "wasm32") {
        100
    } else {
        1_000
    };
    let seeds: Vec<u64> = match env_number("SIM_SEED") {
        Some(seed) => vec![seed],
        None => (0..env_number("SIM_SEEDS").unwrap_or(default_seeds)).collect(),
    };
    for &seed in &seeds {
        if let Err(failure) = simulate(seed) {
            panic!(
                "simulation seed {seed} failed: {failure}\nreplay: SIM_SEED={seed} cargo test -p runtime-agents-core --test simulation"
            );
        }
    }
}
