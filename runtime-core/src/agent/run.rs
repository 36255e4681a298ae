//! The agent loop: fold the log, react, wait, repeat.

use std::collections::BTreeSet;
use std::future::poll_fn;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::Poll;

use futures::{FutureExt, StreamExt, future, select_biased};

use super::execution::{ExecutionReport, ExecutionSetup, run_execution};
use super::{AgentError, AgentStatus, ExecutionFailure, RunningExecution, RuntimeAgent, Shared};
use crate::clock::{Clock, millis};
use crate::context::{
    CancelReason, CancelSignal, ExecutionContext, ExecutionInfo, InputMailbox, OutputSink,
};
use crate::handler::ExecutionHandler;
use crate::maybe_send::BoxFuture;
use crate::schema::*;
use crate::state::{Applied, EntryState, Ignored, NotebookState, Seq, SessionState, SnapshotKind};
use crate::store::{LogEntry, Store, StoreError, Subscription};

/// How many entries the agent folds before it lets other tasks run.
const CATCH_UP_SLICE: usize = 1024;
/// The agent saves a lean snapshot once it has folded this many entries past the latest
/// one, so the next agent to start on the notebook folds at most about this many.
pub const SNAPSHOT_EVERY: Seq = 10_000;

/// Returns `Pending` once (after asking to be polled again), so other tasks run.
async fn yield_now() {
    let mut yielded = false;
    poll_fn(|cx| {
        if yielded {
            Poll::Ready(())
        } else {
            yielded = true;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    })
    .await;
}

/// The execution the agent is running.
struct Running {
    queue_id: QueueId,
    cell_id: CellId,
    cancel: CancelSignal,
    inputs: Arc<InputMailbox>,
    future: BoxFuture<'static, ExecutionReport>,
}

/// A claim committed but not yet folded: once the log reaches `decided_at`, the state
/// says whether it won.
struct Claim {
    queue_id: QueueId,
    decided_at: Seq,
}

/// What woke the loop.
enum Wake {
    Shutdown,
    Finished(ExecutionReport),
    Log(Option<Result<LogEntry, StoreError>>),
    Renew,
}

struct Runner {
    agent: RuntimeAgent,
    handler: Arc<dyn ExecutionHandler>,
    shared: Arc<Shared>,
    session_id: SessionId,
    state: NotebookState,
    log: Subscription,
    running: Option<Running>,
    claim: Option<Claim>,
    /// The status last committed for the session.
    reported: SessionStatus,
    /// Where the announcement landed, and whether the log accepted it.
    announced_seq: Seq,
    announce_applied: bool,
    /// Ignore reasons already logged at warn level.
    warned: BTreeSet<Ignored>,
    /// The agent saves a snapshot once it has folded this far.
    next_snapshot_at: Seq,
    /// Nothing but what runs waits to be claimed (see `ExecutionSetup::nothing_queued`).
    nothing_queued: Arc<AtomicBool>,
}

pub(super) async fn run(agent: RuntimeAgent) -> Result<TerminationReason, AgentError> {
    let shared = agent.shared.clone();
    let Some(handler) = agent.handler.clone() else {
        shared.set_status(AgentStatus::Stopped);
        return Err(AgentError::NoHandler);
    };
    let span = tracing::info_span!("runtime_agent", session_id = %shared.session_id);
    // Before the announcement nothing needs ending: a shutdown (a signal while the store
    // is unreachable, say) stops the agent at once instead of after the store's retries.
    let starting = tracing::Instrument::instrument(starting_state(&*agent.store), span.clone());
    let Some((state, next_snapshot_at)) = unless_shut_down(&shared, starting).await else {
        tracing::info!(parent: &span, "shut down before the session started");
        if let Some(hook) = &agent.hooks.shutdown {
            hook(&TerminationReason::Shutdown);
        }
        shared.set_status(AgentStatus::Stopped);
        return Ok(TerminationReason::Shutdown);
    };
    let mut runner = Runner {
        log: agent.store.subscribe(state.last_seq() + 1),
        next_snapshot_at,
        nothing_queued: Arc::default(),
        handler,
        session_id: shared.session_id.clone(),
        shared: shared.clone(),
        agent,
        state,
        running: None,
        claim: None,
        reported: SessionStatus::Ready,
        announced_seq: 0,
        announce_applied: false,
        warned: BTreeSet::new(),
    };
    let ended = tracing::Instrument::instrument(runner.run(), span.clone()).await;
    match &ended {
        Ok(reason) => {
            if let Some(hook) = &runner.agent.hooks.shutdown {
                hook(reason);
            }
        }
        Err(error) => {
            tracing::error!(parent: &span, %error, "runtime agent stopped with an error");
            tracing::Instrument::instrument(runner.abandon(error), span).await;
        }
    }
    shared.set_status(AgentStatus::Stopped);
    ended
}

/// `work`'s result, or `None` if a shutdown is requested first.
async fn unless_shut_down<T>(shared: &Shared, work: impl Future<Output = T>) -> Option<T> {
    let shutdown = poll_fn(|cx| {
        shared.wake.register(cx.waker());
        if shared.shutdown_requested() {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    })
    .fuse();
    let work = work.fuse();
    futures::pin_mut!(shutdown, work);
    select_biased! {
        () = shutdown => None,
        done = work => Some(done),
    }
}

/// The state an agent starts from: the store's latest lean snapshot, or an empty lean state
/// (an agent needs ids and states, never output bodies); and how far it folds before it
/// saves a snapshot. A snapshot that cannot be read or used costs only time: the agent
/// folds the log from the start, and replaces an unusable one (written by another version,
/// say) as soon as it has folded past it, so the next agent does not fold it all again.
async fn starting_state(store: &dyn Store) -> (NotebookState, Seq) {
    match store.latest_snapshot(SnapshotKind::Lean).await {
        Ok(Some(snapshot)) => match NotebookState::from_snapshot(&snapshot, SnapshotKind::Lean) {
            Ok(state) => {
                tracing::debug!(seq = snapshot.seq, "starting from the store's snapshot");
                return (state, snapshot.seq.saturating_add(SNAPSHOT_EVERY));
            }
            Err(error) => {
                tracing::warn!(
                    %error,
                    seq = snapshot.seq,
                    "cannot use the store's snapshot; folding the log from the start"
                );
                return (NotebookState::lean(), snapshot.seq.saturating_add(1));
            }
        },
        Ok(None) => {}
        Err(error) => {
            tracing::warn!(%error, "cannot read a snapshot; folding the log from the start");
        }
    }
    (NotebookState::lean(), SNAPSHOT_EVERY)
}

impl Runner {
    async fn run(&mut self) -> Result<TerminationReason, AgentError> {
        if self.shared.shutdown_requested() {
            return Ok(TerminationReason::Shutdown);
        }
        self.catch_up().await?;
        // A shutdown while the announcement is in flight stops here: if it landed, its
        // lease runs out as a killed agent's would.
        let shared = self.shared.clone();
        match unless_shut_down(&shared, self.announce()).await {
            Some(announced) => announced?,
            None => return Ok(TerminationReason::Shutdown),
        }
        while self.state.last_seq() < self.announced_seq {
            self.read_one().await?;
        }
        if !self.announce_applied {
            return Err(AgentError::SessionIdReused(self.session_id.clone()));
        }
        self.shared.set_status(AgentStatus::Idle);
        if let Some(hook) = &self.agent.hooks.ready {
            hook(&self.session_id);
        }
        tracing::info!(runtime_id = %self.agent.runtime_id, "runtime session active");

        let mut renew = self.agent.clock.sleep(self.agent.options.renew_interval);
        loop {
            if let Some(reason) = self.session_ended() {
                return Ok(self.stop_after_session_end(reason).await);
            }
            if self.shared.shutdown_requested() {
                return self.shut_down().await;
            }
            self.forward_cancel();
            self.forward_input();
            self.start_claimed();
            if self.running.is_none() && self.claim.is_none() {
                self.claim_next().await?;
            }
            let nothing_queued = self
                .state
                .next_pending_for(&self.agent.capabilities)
                .is_none();
            self.nothing_queued.store(nothing_queued, Ordering::SeqCst);
            let quiet = self.running.is_none() && self.claim.is_none() && nothing_queued;
            self.shared
                .set_quiet_through(quiet.then(|| self.state.last_seq()));
            let shared = &self.shared;
            let running = &mut self.running;
            let log = &mut self.log;
            let wake = select_biased! {
                () = poll_fn(|cx| {
                    shared.wake.register(cx.waker());
                    if shared.shutdown_requested() { Poll::Ready(()) } else { Poll::Pending }
                }).fuse() => Wake::Shutdown,
                report = async {
                    match running.as_mut() {
                        Some(running) => running.future.as_mut().await,
                        None => future::pending().await,
                    }
                }.fuse() => Wake::Finished(report),
                entry = log.next().fuse() => Wake::Log(entry),
                () = (&mut renew).fuse() => Wake::Renew,
            };
            match wake {
                Wake::Shutdown => {}
                Wake::Finished(report) => self.finished(report)?,
                Wake::Log(entry) => {
                    self.apply(entry)?;
                    self.catch_up().await?;
                }
                Wake::Renew => {
                    renew = self.agent.clock.sleep(self.agent.options.renew_interval);
                    self.renew().await?;
                }
            }
        }
    }

    /// Folds every entry the subscription has ready, without waiting for more, but
    /// letting other tasks run every [`CATCH_UP_SLICE`] entries: folding a long log must not
    /// stall the executor (or another agent's renewals on it).
    async fn catch_up(&mut self) -> Result<(), AgentError> {
        let mut folded = 0_usize;
        while let Some(entry) = self.log.next().now_or_never() {
            self.apply(entry)?;
            folded += 1;
            if folded.is_multiple_of(CATCH_UP_SLICE) {
                yield_now().await;
            }
        }
        self.save_snapshot_when_due().await;
        Ok(())
    }

    /// Saves a lean snapshot once the agent has folded as far as `next_snapshot_at`
    /// ([`SNAPSHOT_EVERY`] entries past the latest). A failure is only logged: a snapshot
    /// is a cache.
    async fn save_snapshot_when_due(&mut self) {
        if self.state.last_seq() < self.next_snapshot_at || !self.agent.store.keeps_snapshots() {
            return;
        }
        let snapshot = self.state.snapshot();
        // Whatever happens, the next try comes SNAPSHOT_EVERY entries later.
        self.next_snapshot_at = snapshot.seq.saturating_add(SNAPSHOT_EVERY);
        match self.agent.store.save_snapshot(&snapshot).await {
            Ok(()) => tracing::debug!(seq = snapshot.seq, "saved a snapshot"),
            Err(error) => tracing::debug!(%error, seq = snapshot.seq, "could not save a snapshot"),
        }
    }

    /// Waits for at least one entry, then folds all that are ready.
    async fn read_one(&mut self) -> Result<(), AgentError> {
        let entry = self.log.next().await;
        self.apply(entry)?;
        self.catch_up().await
    }

    fn apply(&mut self, entry: Option<Result<LogEntry, StoreError>>) -> Result<(), AgentError> {
        let entry = entry.ok_or(AgentError::SubscriptionEnded)??;
        let applied = self.state.apply_entry(&entry);
        if entry.seq == self.announced_seq {
            self.announce_applied = applied == Applied::Applied;
        }
        if let Applied::Ignored(reason) = applied {
            let first = self.warned.insert(reason);
            let event = entry.event.type_name();
            if first && matches!(reason, Ignored::Malformed | Ignored::Unknown) {
                tracing::warn!(
                    seq = entry.seq,
                    ?reason,
                    event,
                    "skipped an event; later ones like it are counted and logged at debug level"
                );
            } else {
                tracing::debug!(seq = entry.seq, ?reason, event, "ignored an event");
            }
        }
        Ok(())
    }

    /// Commits the session start, first expiring an active session whose lease ran out.
    async fn announce(&mut self) -> Result<(), AgentError> {
        let now = self.agent.clock.now();
        let mut batch: Vec<Event> = Vec::with_capacity(2);
        if let Some(expired) = self.state.expired_session(now) {
            tracing::info!(expired = %expired.session_id, "expiring a session whose lease ran out");
            batch.push(
                RuntimeSessionTerminated {
                    session_id: expired.session_id.clone(),
                    reason: TerminationReason::Expired,
                    by: self.session_id.to_string(),
                    at: now,
                    detail: Some("its lease ran out without renewal".into()),
                }
                .into(),
            );
        }
        let options = &self.agent.options;
        batch.push(
            RuntimeSessionStarted {
                session_id: self.session_id.clone(),
                runtime_id: self.agent.runtime_id.clone(),
                runtime_type: options.runtime_type.clone(),
                client_id: options.client_id.clone(),
                capabilities: self.agent.capabilities.clone(),
                at: now,
                valid_for_ms: millis(options.lease_duration),
            }
            .into(),
        );
        self.announced_seq = self.commit(batch).await?;
        if let Some(hook) = &self.agent.hooks.startup {
            hook(&self.session_id);
        }
        Ok(())
    }

    /// Commits a batch; returns the sequence number of its last event.
    /// (`&mut self`, not `&self`: a shared borrow held across the await would make the
    /// agent's future need `Runner: Sync`, and so not `Send`.)
    async fn commit(&mut self, batch: Vec<Event>) -> Result<Seq, AgentError> {
        let count = batch.len() as Seq;
        let first = self.agent.store.commit(batch).await?;
        Ok(first + count - 1)
    }

    fn session_ended(&self) -> Option<TerminationReason> {
        match self.state.session(&self.session_id)?.state {
            SessionState::Ended(reason) => Some(reason),
            SessionState::Active => None,
        }
    }

    /// Hands a reply the log holds for the running execution's input request to it.
    fn forward_input(&self) {
        let Some(running) = &self.running else { return };
        let reply = self.state.entry(&running.queue_id).and_then(|entry| {
            let input = entry.input.as_ref()?;
            Some((&input.input_id, input.reply.as_deref()?))
        });
        if let Some((input_id, value)) = reply {
            running.inputs.deliver(input_id, value);
        }
    }

    fn forward_cancel(&self) {
        let Some(running) = &self.running else { return };
        let requested = self
            .state
            .entry(&running.queue_id)
            .is_some_and(|e| e.cancel_requested);
        if requested && running.cancel.reason().is_none() {
            tracing::info!(queue_id = %running.queue_id, "cancel requested");
            running.cancel.cancel(CancelReason::Requested);
        }
    }

    /// Takes the claim if the log has decided it; returns the entry if it is ours to run.
    fn decided_claim(&mut self) -> Option<QueueId> {
        let last_seq = self.state.last_seq();
        let claim = self.claim.take_if(|claim| last_seq >= claim.decided_at)?;
        let entry = self.state.entry(&claim.queue_id)?;
        match &entry.state {
            EntryState::Executing { session_id, .. } if session_id == &self.session_id => {
                Some(claim.queue_id)
            }
            _ => {
                tracing::debug!(queue_id = %claim.queue_id, "claim lost");
                None
            }
        }
    }

    /// Starts the execution once the log shows this session running it.
    fn start_claimed(&mut self) {
        let Some(queue_id) = self.decided_claim() else {
            return;
        };
        let Some(entry) = self.state.entry(&queue_id) else {
            return;
        };
        let EntryState::Executing { started_at, .. } = entry.state else {
            return;
        };
        let options = &self.agent.options;
        let execution_count = entry.execution_count.unwrap_or_default();
        let sink = OutputSink::new(
            queue_id.clone(),
            self.session_id.clone(),
            execution_count,
            options.max_output_bytes,
        );
        let cancel = CancelSignal::default();
        let info = ExecutionInfo {
            queue_id: queue_id.clone(),
            cell_id: entry.cell_id.clone(),
            cell_type: entry.cell_type,
            source: entry.source.clone(),
            execution_count,
            session_id: self.session_id.clone(),
        };
        let cell_id = entry.cell_id.clone();
        let context = ExecutionContext::new(info, sink.clone(), cancel.clone());
        let inputs = context.inputs();
        let future = run_execution(ExecutionSetup {
            handler: self.handler.clone(),
            store: self.agent.store.clone(),
            clock: self.agent.clock.clone(),
            context,
            sink,
            cancel: cancel.clone(),
            cancel_grace: options.cancel_grace,
            stop_on_error: options.stop_on_error,
            started_at,
            nothing_queued: self.nothing_queued.clone(),
        });
        self.shared.set_running(Some(RunningExecution {
            queue_id: queue_id.clone(),
            started_at,
        }));
        self.running = Some(Running {
            queue_id,
            cell_id,
            cancel,
            inputs,
            future,
        });
        self.shared.started_one();
        self.shared.set_status(AgentStatus::Busy);
    }

    /// Claims and starts the oldest pending entry in one atomic batch: `Started` applies
    /// only if `Assigned` did, so the handler runs only once the log says it won.
    async fn claim_next(&mut self) -> Result<(), AgentError> {
        let Some(entry) = self.state.next_pending_for(&self.agent.capabilities) else {
            return self.report(SessionStatus::Idle).await;
        };
        let queue_id = entry.queue_id.clone();
        let session_id = self.session_id.clone();
        let mut batch: Vec<Event> = vec![
            ExecutionAssigned {
                queue_id: queue_id.clone(),
                session_id: session_id.clone(),
            }
            .into(),
            ExecutionStarted {
                queue_id: queue_id.clone(),
                session_id: session_id.clone(),
                at: self.agent.clock.now(),
            }
            .into(),
        ];
        if self.reported != SessionStatus::Busy {
            self.reported = SessionStatus::Busy;
            batch.push(
                RuntimeSessionStatusChanged {
                    session_id,
                    status: SessionStatus::Busy,
                }
                .into(),
            );
        }
        let decided_at = self.commit(batch).await?;
        self.claim = Some(Claim {
            queue_id,
            decided_at,
        });
        Ok(())
    }

    /// Commits the session's status when it changes ("ready" already means idle).
    async fn report(&mut self, status: SessionStatus) -> Result<(), AgentError> {
        let unchanged = self.reported == status
            || (self.reported == SessionStatus::Ready && status == SessionStatus::Idle);
        if unchanged {
            return Ok(());
        }
        self.reported = status;
        let event = RuntimeSessionStatusChanged {
            session_id: self.session_id.clone(),
            status,
        };
        self.commit(vec![event.into()]).await.map(drop)
    }

    fn finished(&mut self, report: ExecutionReport) -> Result<(), AgentError> {
        let Some(running) = self.running.take() else {
            return Ok(());
        };
        self.shared.set_running(None);
        self.shared.set_status(AgentStatus::Idle);
        if let Some(error) = report.store_error {
            return Err(error.into());
        }
        if report.said_idle {
            self.reported = SessionStatus::Idle;
        }
        if report.status != CompletionStatus::Success
            && let Some(hook) = &self.agent.hooks.execution_error
        {
            hook(&ExecutionFailure {
                queue_id: running.queue_id,
                cell_id: running.cell_id,
                status: report.status,
                error: report.error,
            });
        }
        Ok(())
    }

    async fn renew(&mut self) -> Result<(), AgentError> {
        let renewed = RuntimeSessionRenewed {
            session_id: self.session_id.clone(),
            at: self.agent.clock.now(),
            valid_for_ms: millis(self.agent.options.lease_duration),
        };
        self.commit(vec![renewed.into()]).await.map(drop)
    }

    /// Graceful stop: settle a claim in flight, cancel what runs (it completes as
    /// cancelled within the grace period), end the session.
    async fn shut_down(&mut self) -> Result<TerminationReason, AgentError> {
        self.shared.set_status(AgentStatus::Stopping);
        tracing::info!("shutting down");
        while self.claim.is_some() {
            if let Some(queue_id) = self.decided_claim() {
                let never_started = ExecutionCompleted {
                    queue_id,
                    session_id: self.session_id.clone(),
                    status: CompletionStatus::Cancelled,
                    error: Some("cancelled: the runtime shut down before it started".into()),
                    duration_ms: 0,
                    abort_pending: false,
                    metadata: Default::default(),
                };
                self.commit(vec![never_started.into()]).await?;
            } else if self.claim.is_some() {
                self.read_one().await?;
            }
        }
        if let Some(mut running) = self.running.take() {
            running.cancel.cancel(CancelReason::Shutdown);
            let report = running.future.as_mut().await;
            if let Some(error) = report.store_error {
                return Err(error.into());
            }
        }
        // Someone may have ended the session already (a page closing commits that itself).
        self.catch_up().await?;
        if let Some(reason) = self.session_ended() {
            return Ok(reason);
        }
        let terminated = RuntimeSessionTerminated {
            session_id: self.session_id.clone(),
            reason: TerminationReason::Shutdown,
            by: self.session_id.to_string(),
            at: self.agent.clock.now(),
            detail: self.shared.shutdown_detail(),
        };
        self.commit(vec![terminated.into()]).await?;
        Ok(TerminationReason::Shutdown)
    }

    /// The agent cannot go on (the store failed for good): drop what runs, and try once to
    /// end the session in the log, so its running entry ends `runtime_lost` now and no one
    /// waits for the lease to run out.
    async fn abandon(&mut self, error: &AgentError) {
        self.running = None;
        let store_failed = matches!(error, AgentError::Store(_) | AgentError::SubscriptionEnded);
        if !store_failed || !self.announce_applied || self.session_ended().is_some() {
            return;
        }
        let terminated = RuntimeSessionTerminated {
            session_id: self.session_id.clone(),
            reason: TerminationReason::Error,
            by: self.session_id.to_string(),
            at: self.agent.clock.now(),
            detail: Some(format!("the runtime agent stopped: {error}")),
        };
        match self
            .agent
            .store
            .inner()
            .commit(vec![terminated.into()])
            .await
        {
            Ok(_) => tracing::info!("ended the session in the log"),
            Err(error) => tracing::warn!(%error, "could not end the session in the log"),
        }
    }

    /// The log ended this session (displaced, expired, terminated): stop what runs. Its
    /// late outputs are fenced off by the log, and the entry already ended `runtime_lost`.
    async fn stop_after_session_end(&mut self, reason: TerminationReason) -> TerminationReason {
        self.shared.set_status(AgentStatus::Stopping);
        tracing::info!(?reason, "runtime session ended; stopping");
        if let Some(mut running) = self.running.take() {
            running.cancel.cancel(CancelReason::SessionEnded);
            running.future.as_mut().await;
        }
        reason
    }
}
