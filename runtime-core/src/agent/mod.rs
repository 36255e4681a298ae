//! [`RuntimeAgent`]: takes execution requests from the store, runs them through the
//! handler, and writes every output back.
//!
//! The agent is store-first: the application passes the store it already owns. It is a
//! future the caller drives ([`RuntimeAgent::run`]) plus a handle ([`AgentHandle`]); the
//! core spawns nothing itself.

mod execution;
mod run;

pub use run::SNAPSHOT_EVERY;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::task::AtomicWaker;

use crate::clock::{Clock, Timestamp, format_duration};
use crate::handler::ExecutionHandler;
use crate::maybe_send::{MaybeSend, MaybeSync};
use crate::schema::{
    Capabilities, CellId, CompletionStatus, QueueId, SessionId, TerminationReason,
};
use crate::state::Seq;
use crate::store::{RetryPolicy, Retrying, Store, StoreError};

/// How an agent is configured. Only the client id is required.
///
/// ```
/// use std::time::Duration;
/// use runtime_core::AgentOptions;
///
/// let options = AgentOptions {
///     runtime_type: "python".into(),
///     max_output_bytes: Some(1 << 20),
///     ..AgentOptions::new("alice")
/// };
/// assert_eq!(options.lease_duration, Duration::from_secs(30));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentOptions {
    /// Names the runtime across restarts; a uuid is generated when absent.
    pub runtime_id: Option<String>,
    /// The runtime's kind, e.g. `echo` or `python`.
    pub runtime_type: String,
    /// The authenticated user the agent runs for. Required.
    pub client_id: String,
    /// The session id; a fresh uuid v4 when absent. Must never repeat.
    pub session_id: Option<SessionId>,
    /// How often the agent renews its lease.
    pub renew_interval: Duration,
    /// How long a lease lasts without renewal; longer than `renew_interval`.
    pub lease_duration: Duration,
    /// How long a cancelled handler may take to stop before it is dropped.
    pub cancel_grace: Duration,
    /// After an execution fails with an error, cancel every entry still queued
    /// (Jupyter's `stop_on_error`). Off by default: in a shared notebook, one user's
    /// error should not cancel another user's request unless asked.
    pub stop_on_error: bool,
    /// Most bytes of output one execution may write (text, bundles, metadata, updates);
    /// the rest is dropped with a visible marker. Defaults to
    /// [`DEFAULT_MAX_OUTPUT_BYTES`](Self::DEFAULT_MAX_OUTPUT_BYTES); `None`: no limit.
    pub max_output_bytes: Option<u64>,
    /// How long the agent keeps retrying a store that fails transiently (a busy lock, a
    /// dropped connection) before it gives up and stops. `None`: as long as the lease,
    /// after which another agent may take over anyway.
    pub store_retry_limit: Option<Duration>,
}

impl AgentOptions {
    /// The default limit on one execution's output: 16 MiB. A runaway cell ends with a
    /// visible truncation marker instead of filling the log and every reader's memory.
    pub const DEFAULT_MAX_OUTPUT_BYTES: u64 = 16 << 20;
    /// The shortest lease an agent accepts: shorter ones would make it renew many times a
    /// second and expire at the first hiccup.
    pub const MIN_LEASE: Duration = Duration::from_millis(100);
    /// The shortest renewal interval an agent accepts.
    pub const MIN_RENEW_INTERVAL: Duration = Duration::from_millis(50);

    /// Defaults for a runtime serving `client_id`: renew every 15 s, lease 30 s, cancel
    /// grace 5 s, outputs limited to 16 MiB per execution.
    pub fn new(client_id: impl Into<String>) -> Self {
        Self {
            runtime_id: None,
            runtime_type: "custom".into(),
            client_id: client_id.into(),
            session_id: None,
            renew_interval: Duration::from_secs(15),
            lease_duration: Duration::from_secs(30),
            cancel_grace: Duration::from_secs(5),
            stop_on_error: false,
            max_output_bytes: Some(Self::DEFAULT_MAX_OUTPUT_BYTES),
            store_retry_limit: None,
        }
    }

    /// Checks the options: a client id, a lease and renewal interval no shorter than
    /// [`MIN_LEASE`](Self::MIN_LEASE) and [`MIN_RENEW_INTERVAL`](Self::MIN_RENEW_INTERVAL),
    /// and renewals more often than the lease lasts. [`RuntimeAgent::new`] calls it.
    ///
    /// ```
    /// use std::time::Duration;
    /// use runtime_core::AgentOptions;
    ///
    /// let hasty = AgentOptions { lease_duration: Duration::from_micros(400), ..AgentOptions::new("alice") };
    /// assert!(hasty.validate().unwrap_err().to_string().contains("at least 100 ms"));
    /// ```
    pub fn validate(&self) -> Result<(), AgentError> {
        if self.client_id.trim().is_empty() {
            return Err(AgentError::MissingClientId);
        }
        if self.lease_duration < Self::MIN_LEASE || self.renew_interval < Self::MIN_RENEW_INTERVAL {
            return Err(AgentError::InvalidOptions(format!(
                "the lease ({}) must last at least {} and renewals ({}) come at least {} apart",
                format_duration(self.lease_duration),
                format_duration(Self::MIN_LEASE),
                format_duration(self.renew_interval),
                format_duration(Self::MIN_RENEW_INTERVAL)
            )));
        }
        if self.renew_interval.is_zero() || self.lease_duration <= self.renew_interval {
            return Err(AgentError::InvalidOptions(format!(
                "lease_duration ({}) must be longer than renew_interval ({}), which must be \
                 more than zero",
                format_duration(self.lease_duration),
                format_duration(self.renew_interval)
            )));
        }
        Ok(())
    }
}

/// Why an agent could not start or had to stop.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AgentError {
    /// No client id was given.
    #[error(
        "a client id is required: pass the authenticated user's id, e.g. \
         AgentOptions::new(user_id)"
    )]
    MissingClientId,
    /// The options contradict each other.
    #[error("invalid agent options: {0}")]
    InvalidOptions(String),
    /// `run` was called before `on_execution`.
    #[error("no execution handler: call on_execution before run")]
    NoHandler,
    /// The session id already appears in the log.
    #[error("session id {0} was used before; every run needs a fresh session id")]
    SessionIdReused(SessionId),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The store's subscription ended although the agent was still running.
    #[error("the store's subscription ended while the agent was running")]
    SubscriptionEnded,
}

/// What the agent is doing, as its handle reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AgentStatus {
    /// Catching up with the log and announcing itself.
    Starting,
    /// Active, waiting for work.
    Idle,
    /// Running an execution.
    Busy,
    /// Finishing its work before it stops.
    Stopping,
    /// Stopped; `run` has returned or is returning.
    Stopped,
}

/// An execution that did not succeed, as the `on_execution_error` hook sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct ExecutionFailure {
    /// The entry.
    pub queue_id: QueueId,
    /// Its cell.
    pub cell_id: CellId,
    /// How it ended.
    pub status: CompletionStatus,
    /// Why.
    pub error: Option<String>,
}

/// A lifecycle callback; `Send + Sync` on native targets only.
#[cfg(not(target_arch = "wasm32"))]
type Hook<T> = Arc<dyn Fn(&T) + Send + Sync>;
/// A lifecycle callback; `Send + Sync` on native targets only.
#[cfg(target_arch = "wasm32")]
type Hook<T> = Arc<dyn Fn(&T)>;

#[derive(Clone, Default)]
struct Hooks {
    startup: Option<Hook<SessionId>>,
    ready: Option<Hook<SessionId>>,
    shutdown: Option<Hook<TerminationReason>>,
    execution_error: Option<Hook<ExecutionFailure>>,
}

/// Controls a running agent from outside its future. Cheap to clone.
#[derive(Clone)]
pub struct AgentHandle {
    shared: Arc<Shared>,
}

struct Shared {
    session_id: SessionId,
    status: Mutex<AgentStatus>,
    running: Mutex<Option<RunningExecution>>,
    /// The log position through which the agent found nothing to run, while it waits;
    /// [`NOT_QUIET`] otherwise. An atomic: the agent writes it at every turn of its loop.
    quiet_through: AtomicU64,
    /// How many executions it has started.
    started: AtomicU64,
    shutdown: AtomicBool,
    /// Why it was asked to stop, for its session's end in the log.
    shutdown_detail: Mutex<Option<String>>,
    wake: AtomicWaker,
}

impl AgentHandle {
    /// Asks the agent to stop: it cancels what it runs (completing it as cancelled within
    /// the cancel grace), ends its session and returns from `run`. Idempotent.
    pub fn shutdown(&self) {
        self.shared.shutdown.store(true, Ordering::SeqCst);
        self.shared.wake.wake();
    }

    /// [`shutdown`](Self::shutdown), saying why: the session's end in the log carries
    /// `detail` ([`RuntimeSessionTerminated::detail`](crate::RuntimeSessionTerminated)),
    /// for people watching the notebook ("idle for 10 min"). The first reason given wins.
    ///
    /// ```
    /// # use runtime_core::*;
    /// let store = MemoryStore::new();
    /// let agent = RuntimeAgent::new(store, ManualClock::new(Timestamp(0)), Capabilities::code(), AgentOptions::new("alice"))?;
    /// agent.handle().shutdown_saying("idle for 10 min");
    /// # Ok::<(), AgentError>(())
    /// ```
    pub fn shutdown_saying(&self, detail: impl Into<String>) {
        lock(&self.shared.shutdown_detail).get_or_insert_with(|| detail.into());
        self.shutdown();
    }

    /// `Some(seq)` while the agent waits with nothing to run: it has folded the log through
    /// `seq` and found no entry it could claim there. `None` while it starts, runs or
    /// stops. What a supervisor reads to stop an idle agent without losing a request: one
    /// committed after `seq` is not the agent's to have seen.
    pub fn quiet_through(&self) -> Option<Seq> {
        Some(self.shared.quiet_through.load(Ordering::SeqCst)).filter(|&seq| seq != NOT_QUIET)
    }

    /// How many executions the agent has started: a supervisor that saw it quiet twice
    /// knows by this whether it ran anything in between.
    pub fn executions_started(&self) -> u64 {
        self.shared.started.load(Ordering::SeqCst)
    }

    /// What the agent is doing now.
    pub fn status(&self) -> AgentStatus {
        *self
            .shared
            .status
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The agent's session id.
    pub fn session_id(&self) -> &SessionId {
        &self.shared.session_id
    }

    /// The execution the agent runs now, if any: what a page that is closing must record
    /// as ended, since it cannot wait for the agent to do so.
    pub fn running(&self) -> Option<RunningExecution> {
        self.shared
            .running
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }
}

/// The execution an agent runs, as its handle reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunningExecution {
    /// Its queue entry.
    pub queue_id: QueueId,
    /// When it started, as the log says.
    pub started_at: Timestamp,
}

/// `Shared::quiet_through` while the agent is not quiet (no log reaches it).
const NOT_QUIET: Seq = Seq::MAX;

/// The value behind `mutex`, even if a panic poisoned it.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Shared {
    fn set_quiet_through(&self, seq: Option<Seq>) {
        self.quiet_through
            .store(seq.unwrap_or(NOT_QUIET), Ordering::SeqCst);
    }

    fn started_one(&self) {
        self.started.fetch_add(1, Ordering::SeqCst);
    }

    fn shutdown_detail(&self) -> Option<String> {
        lock(&self.shutdown_detail).clone()
    }

    fn set_status(&self, status: AgentStatus) {
        if status != AgentStatus::Idle {
            self.set_quiet_through(None);
        }
        *self
            .status
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = status;
    }

    fn set_running(&self, running: Option<RunningExecution>) {
        *self
            .running
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = running;
    }

    fn shutdown_requested(&self) -> bool {
        self.shutdown.load(Ordering::SeqCst)
    }
}

/// A runtime agent bound to one notebook's store.
///
/// # Example
///
/// ```
/// use runtime_core::*;
///
/// let store = MemoryStore::new();
/// let clock = ManualClock::new(Timestamp(0));
/// let agent = RuntimeAgent::new(store.clone(), clock, Capabilities::code(), AgentOptions::new("alice"))?
///     .on_execution(|ctx: ExecutionContext| async move {
///         Ok(MediaBundle::plain(format!("Echo: {}", ctx.source())))
///     });
/// let handle = agent.handle();
/// handle.shutdown(); // ask it to stop before it even starts
/// let ended = futures::executor::block_on(agent.run())?;
/// assert_eq!(ended, TerminationReason::Shutdown);
/// # Ok::<(), AgentError>(())
/// ```
pub struct RuntimeAgent {
    store: Arc<Retrying>,
    clock: Arc<dyn Clock>,
    capabilities: Capabilities,
    options: AgentOptions,
    runtime_id: String,
    handler: Option<Arc<dyn ExecutionHandler>>,
    hooks: Hooks,
    shared: Arc<Shared>,
}

impl RuntimeAgent {
    /// An agent for the notebook in `store`. Fails if the client id is missing or the
    /// options contradict each other.
    pub fn new(
        store: impl Store + 'static,
        clock: impl Clock + 'static,
        capabilities: Capabilities,
        options: AgentOptions,
    ) -> Result<Self, AgentError> {
        options.validate()?;
        let session_id = options.session_id.clone().unwrap_or_else(SessionId::random);
        let runtime_id = options
            .runtime_id
            .clone()
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        let clock: Arc<dyn Clock> = Arc::new(clock);
        let retry = RetryPolicy::giving_up_after(
            options.store_retry_limit.unwrap_or(options.lease_duration),
        );
        // Send and Sync natively; on wasm32 nothing is, and nothing needs to be.
        #[allow(clippy::arc_with_non_send_sync)]
        let store = Arc::new(Retrying::new(store, clock.clone(), retry));
        Ok(Self {
            store,
            clock,
            capabilities,
            options,
            runtime_id,
            handler: None,
            hooks: Hooks::default(),
            shared: Arc::new(Shared {
                session_id,
                status: Mutex::new(AgentStatus::Starting),
                running: Mutex::new(None),
                quiet_through: AtomicU64::new(NOT_QUIET),
                started: AtomicU64::new(0),
                shutdown: AtomicBool::new(false),
                shutdown_detail: Mutex::new(None),
                wake: AtomicWaker::new(),
            }),
        })
    }

    /// Sets the handler that runs executions (replacing any earlier one).
    pub fn on_execution(mut self, handler: impl ExecutionHandler + 'static) -> Self {
        self.handler = Some(Arc::new(handler));
        self
    }

    /// Called once the session is announced, with its id.
    pub fn on_startup(
        mut self,
        hook: impl Fn(&SessionId) + MaybeSend + MaybeSync + 'static,
    ) -> Self {
        self.hooks.startup = Some(Arc::new(hook));
        self
    }

    /// Called once the agent has observed its session active and takes work.
    pub fn on_ready(mut self, hook: impl Fn(&SessionId) + MaybeSend + MaybeSync + 'static) -> Self {
        self.hooks.ready = Some(Arc::new(hook));
        self
    }

    /// Called when the agent stops, with why its session ended.
    pub fn on_shutdown(
        mut self,
        hook: impl Fn(&TerminationReason) + MaybeSend + MaybeSync + 'static,
    ) -> Self {
        self.hooks.shutdown = Some(Arc::new(hook));
        self
    }

    /// Called for every execution that ends in anything but success.
    pub fn on_execution_error(
        mut self,
        hook: impl Fn(&ExecutionFailure) + MaybeSend + MaybeSync + 'static,
    ) -> Self {
        self.hooks.execution_error = Some(Arc::new(hook));
        self
    }

    /// A handle to stop the agent and watch its status.
    pub fn handle(&self) -> AgentHandle {
        AgentHandle {
            shared: self.shared.clone(),
        }
    }

    /// The session id this agent will announce.
    pub fn session_id(&self) -> &SessionId {
        &self.shared.session_id
    }

    /// The runtime id (given, or generated).
    pub fn runtime_id(&self) -> &str {
        &self.runtime_id
    }

    /// Runs the agent until it is shut down or its session ends; returns why it ended.
    /// Dropping this future is a crash: nothing is committed, and the session's lease
    /// runs out.
    pub async fn run(self) -> Result<TerminationReason, AgentError> {
        run::run(self).await
    }
}
