//! Gateway mode: one process serves every notebook of a catalog that asks for its runtime
//! type ([`NotebookRuntimeRequested`]), each with
//! an agent and a backend instance of its own, and only ever connects outbound.
//!
//! The gateway watches the catalog (a hub's, or a local store's). A notebook that asks for
//! its type gets an agent (one active runtime per notebook, as always), up to
//! [`GatewayOptions::max_sessions`] at once; others wait for a free slot. An agent with
//! nothing to do for [`GatewayOptions::idle_timeout`] is stopped (its session's end says
//! so); a request that comes later, or came while it stopped, attaches one again. A
//! notebook that withdraws its request, or asks for another type, is detached. A notebook
//! served by another runtime (the gateway's agent was displaced) is left to it until that
//! runtime's session ends.
//!
//! A notebook that asks for a worktree gets one ([`crate::worktree`]) and its backend runs
//! there; one that cannot have it (a repository outside the allowed directories, a branch
//! that does not exist) is still served, and each of its cells fails saying why.
//!
//! ```no_run
//! use std::sync::Arc;
//! use runtime_core::{AgentOptions, Capabilities};
//! use runtime_native::backends::BackendsConfig;
//! use runtime_native::gateway::{Gateway, GatewayOptions};
//! use runtime_native::SqliteStore;
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let catalog = SqliteStore::open("notebooks.db", "any")?;
//! let text = std::fs::read_to_string("backends.toml")?;
//! let gateway = Gateway::new(
//!     Arc::new(catalog),
//!     GatewayOptions::new("shell"),
//!     AgentOptions::new("alice"),
//!     Capabilities::code(),
//!     Arc::new(move |dir: Option<&std::path::Path>| {
//!         let config = BackendsConfig::parse(&text, "backends.toml").map_err(|e| e.to_string())?;
//!         Ok(match dir { Some(dir) => config.working_dir(dir), None => config }.build(None))
//!     }),
//! );
//! gateway.run(async { tokio::signal::ctrl_c().await.ok(); }).await;
//! # Ok(()) }
//! ```

use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use futures::StreamExt;
use runtime_core::{
    AgentHandle, AgentOptions, Capabilities, Catalog, Event, ExecutionContext, ExecutionError,
    NotebookInfo, NotebookRuntimeRequested, Outcome, RuntimeAgent, Seq, SessionId, Store,
    TerminationReason,
};
use tokio::task::JoinSet;

use crate::TokioClock;
use crate::backends::Backends;
use crate::worktree::{Closed, Worktree, Worktrees};

/// Builds the backends of one notebook: a fresh instance each time (its own session
/// processes, kernel, codex threads), working in the directory given (its worktree), if
/// any. An error is shown on the notebook's cells.
pub type BackendsFactory =
    Arc<dyn Fn(Option<&Path>) -> Result<Backends, String> + Send + Sync + 'static>;

/// How a gateway serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayOptions {
    /// The runtime type it serves: notebooks asking for it get an agent.
    pub runtime_type: String,
    /// Most notebooks served at once; others wait. Default 8.
    pub max_sessions: usize,
    /// How long an agent may have nothing to do before it is stopped. Default 10 min.
    pub idle_timeout: Duration,
    /// How often the catalog is read. Default 1 s.
    pub poll_interval: Duration,
}

impl GatewayOptions {
    /// Defaults for serving `runtime_type`.
    pub fn new(runtime_type: impl Into<String>) -> Self {
        GatewayOptions {
            runtime_type: runtime_type.into(),
            max_sessions: 8,
            idle_timeout: Duration::from_secs(600),
            poll_interval: Duration::from_secs(1),
        }
    }
}

/// What the gateway is doing with one notebook, as [`GatewayStatus::notebooks`] lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotebookStatus {
    /// The notebook.
    pub notebook: String,
    /// What is happening.
    pub state: ServingState,
    /// Its worktree, if it has one.
    pub worktree: Option<PathBuf>,
}

/// One notebook's state in a gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServingState {
    /// It asks for this runtime but every session slot is taken.
    Waiting,
    /// Its worktree and backends are being made, and its agent is starting.
    Attaching,
    /// An agent serves it in this session, active in the notebook's log.
    Serving(SessionId),
    /// The gateway served it and stopped, saying why ("idle for 10 min", "displaced by
    /// another runtime", "worktree kept: it has uncommitted changes").
    Detached(String),
}

/// A live view of what a gateway does, per notebook. Cheap to clone.
#[derive(Clone, Default)]
pub struct GatewayStatus {
    notebooks: Arc<Mutex<BTreeMap<String, NotebookStatus>>>,
    changed: Arc<tokio::sync::Notify>,
}

impl GatewayStatus {
    /// Every notebook the gateway waits for, serves or has served, by id.
    pub fn notebooks(&self) -> Vec<NotebookStatus> {
        self.lock().values().cloned().collect()
    }

    /// What it does with `notebook`, if anything.
    pub fn notebook(&self, notebook: &str) -> Option<NotebookStatus> {
        self.lock().get(notebook).cloned()
    }

    /// Waits for the next change (compare [`notebooks`](Self::notebooks) before and
    /// after: several changes may come together).
    pub async fn changed(&self) {
        self.changed.notified().await;
    }

    fn retain(&self, keep: impl Fn(&NotebookStatus) -> bool) {
        let mut notebooks = self.lock();
        let before = notebooks.len();
        notebooks.retain(|_, status| keep(status));
        let changed = notebooks.len() != before;
        drop(notebooks);
        if changed {
            self.changed.notify_waiters();
        }
    }

    fn set(&self, notebook: &str, state: ServingState, worktree: Option<PathBuf>) {
        tracing::info!(notebook, state = ?state, "gateway");
        let mut notebooks = self.lock();
        let worktree = worktree.or_else(|| {
            notebooks
                .get(notebook)
                .and_then(|status| status.worktree.clone())
        });
        notebooks.insert(
            notebook.to_owned(),
            NotebookStatus {
                notebook: notebook.to_owned(),
                state,
                worktree,
            },
        );
        drop(notebooks);
        self.changed.notify_waiters();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, NotebookStatus>> {
        self.notebooks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// Serves many notebooks of one catalog; see the [module docs](self).
pub struct Gateway {
    catalog: Arc<dyn Catalog>,
    options: GatewayOptions,
    agent_options: AgentOptions,
    capabilities: Capabilities,
    backends: BackendsFactory,
    worktrees: Option<Arc<Worktrees>>,
    status: GatewayStatus,
}

/// An attached notebook, as the gateway's loop keeps it.
struct Attached {
    control: Arc<Control>,
    /// When the agent was first seen quiet, with its count of executions then.
    quiet_since: Option<(Instant, u64)>,
}

/// Between the loop and one notebook's task: its agent's handle once there is one, and
/// why it should stop once asked. One lock, so a stop asked while the agent is being made
/// is never missed.
#[derive(Default)]
struct Control(Mutex<ControlState>);

#[derive(Default)]
struct ControlState {
    handle: Option<AgentHandle>,
    stop: Option<Stop>,
}

/// Why a notebook's agent is stopped.
#[derive(Clone)]
struct Stop {
    why: String,
    /// Idle: where the agent last found nothing to do, to read the log again from.
    idle_through: Option<Seq>,
}

impl Control {
    fn state(&self) -> std::sync::MutexGuard<'_, ControlState> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn handle(&self) -> Option<AgentHandle> {
        self.state().handle.clone()
    }

    /// Asks the agent to stop saying `why` (the first reason wins).
    fn stop(&self, why: String, idle: bool) {
        let mut state = self.state();
        if state.stop.is_some() {
            return;
        }
        let idle_through = state
            .handle
            .as_ref()
            .and_then(AgentHandle::quiet_through)
            .filter(|_| idle);
        if let Some(handle) = &state.handle {
            handle.shutdown_saying(why.clone());
        }
        state.stop = Some(Stop { why, idle_through });
    }

    /// Gives the task's agent handle, stopping it at once if a stop was asked already.
    fn attach(&self, handle: AgentHandle) {
        let mut state = self.state();
        if let Some(stop) = &state.stop {
            handle.shutdown_saying(stop.why.clone());
        }
        state.handle = Some(handle);
    }

    fn idle_through(&self) -> Option<Seq> {
        self.state()
            .stop
            .as_ref()
            .and_then(|stop| stop.idle_through)
    }
}

/// A notebook the gateway served and stopped serving, watched for a reason to come back.
struct Resting {
    /// The log is read through here.
    checked_through: Seq,
    /// A request came after the agent last looked.
    requested: bool,
    /// Another runtime serves it.
    served_elsewhere: Option<Elsewhere>,
}

/// The runtime serving a notebook the gateway's agent was displaced from.
#[derive(PartialEq)]
enum Elsewhere {
    /// Not read yet: the next session end is taken for its.
    Unknown,
    /// This session.
    Session(SessionId),
}

/// How a notebook's task ended.
struct Ended {
    notebook: String,
    reason: Result<TerminationReason, String>,
    /// Where to read its log again from, to come back: after an idle stop, where the
    /// agent last found nothing to do; after a displacement, the head then.
    rest_from: Option<Seq>,
    /// What became of its worktree.
    worktree: Option<String>,
}

impl Gateway {
    /// A gateway serving `catalog`'s notebooks that ask for `options.runtime_type`, with
    /// agents configured like `agent_options` (their runtime type is the gateway's) and
    /// backends from `backends`.
    pub fn new(
        catalog: Arc<dyn Catalog>,
        options: GatewayOptions,
        agent_options: AgentOptions,
        capabilities: Capabilities,
        backends: BackendsFactory,
    ) -> Self {
        Gateway {
            catalog,
            options,
            agent_options,
            capabilities,
            backends,
            worktrees: None,
            status: GatewayStatus::default(),
        }
    }

    /// Gives notebooks that ask for one a worktree; without this, such a notebook's cells
    /// fail saying the gateway makes no worktrees.
    pub fn worktrees(mut self, worktrees: Worktrees) -> Self {
        self.worktrees = Some(Arc::new(worktrees));
        self
    }

    /// A live view of what the gateway does.
    pub fn status(&self) -> GatewayStatus {
        self.status.clone()
    }

    /// Serves until `stop` completes, then stops every agent (each finishes what it runs
    /// as cancelled and ends its session), closes the worktrees and returns. Catalog
    /// errors are logged and the catalog is read again at the next tick. Dropping the
    /// future instead stops nothing gracefully: backends' processes are killed.
    pub async fn run(self, stop: impl Future<Output = ()>) {
        let mut stop = std::pin::pin!(stop);
        let mut tasks: JoinSet<Ended> = JoinSet::new();
        // Which notebook each task serves: a task that panicked still frees its slot.
        let mut serving: HashMap<tokio::task::Id, String> = HashMap::new();
        let mut attached: HashMap<String, Attached> = HashMap::new();
        let mut resting: HashMap<String, Resting> = HashMap::new();
        let mut tick = tokio::time::interval(self.options.poll_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = &mut stop => break,
                Some(ended) = tasks.join_next_with_id(), if !tasks.is_empty() => {
                    let ended = ended_or_panicked(ended, &mut serving);
                    self.detached(ended, &mut attached, &mut resting);
                    continue;
                }
                _ = tick.tick() => {}
            }
            let notebooks = match self.catalog.notebooks().await {
                Ok(notebooks) => notebooks,
                Err(error) => {
                    tracing::warn!(%error, "cannot read the catalog; trying again");
                    continue;
                }
            };
            self.stop_unwanted(&notebooks, &attached);
            self.forget_unwanted(&notebooks, &attached, &mut resting);
            self.stop_idle(&mut attached);
            self.attach_wanted(
                &notebooks,
                &mut attached,
                &mut resting,
                &mut tasks,
                &mut serving,
            )
            .await;
        }
        for attached in attached.values() {
            attached.control.stop("the gateway stopped".into(), false);
        }
        while let Some(ended) = tasks.join_next_with_id().await {
            let ended = ended_or_panicked(ended, &mut serving);
            self.detached(ended, &mut attached, &mut resting);
        }
    }

    /// Whether `info` asks for this gateway's runtime.
    fn wants_us(&self, info: &NotebookInfo) -> bool {
        info.runtime
            .as_ref()
            .is_some_and(|runtime| runtime.runtime_type == self.options.runtime_type)
    }

    /// Stops the agents of notebooks gone from the catalog or no longer asking for us.
    fn stop_unwanted(&self, notebooks: &[NotebookInfo], attached: &HashMap<String, Attached>) {
        if attached.is_empty() {
            return;
        }
        let listed: HashMap<&str, &NotebookInfo> = notebooks
            .iter()
            .map(|info| (info.id.as_str(), info))
            .collect();
        for (id, attached) in attached {
            let why = match listed.get(id.as_str()) {
                None => "the notebook is gone from the catalog".to_owned(),
                Some(info) if !self.wants_us(info) => format!(
                    "the notebook no longer asks for a `{}` runtime",
                    self.options.runtime_type
                ),
                Some(_) => continue,
            };
            attached.control.stop(why, false);
        }
    }

    /// Forgets what it knew of notebooks it does not serve that are gone from the
    /// catalog or no longer ask for it (so neither its memory nor its status grows with
    /// every notebook it ever saw), and the waiting of those no longer asking.
    fn forget_unwanted(
        &self,
        notebooks: &[NotebookInfo],
        attached: &HashMap<String, Attached>,
        resting: &mut HashMap<String, Resting>,
    ) {
        let listed: HashSet<&str> = notebooks.iter().map(|info| info.id.as_str()).collect();
        let wanted: HashSet<&str> = notebooks
            .iter()
            .filter(|info| self.wants_us(info))
            .map(|info| info.id.as_str())
            .collect();
        resting.retain(|id, _| wanted.contains(id.as_str()));
        self.status.retain(|status| {
            let id = status.notebook.as_str();
            attached.contains_key(id)
                || wanted.contains(id)
                || matches!(status.state, ServingState::Detached(_)) && listed.contains(id)
        });
    }

    /// Stops agents that had nothing to do for the idle timeout.
    fn stop_idle(&self, attached: &mut HashMap<String, Attached>) {
        let now = Instant::now();
        for attached in attached.values_mut() {
            let Some(handle) = attached.control.handle() else {
                continue;
            };
            let started = handle.executions_started();
            attached.quiet_since = match (handle.quiet_through(), attached.quiet_since) {
                (None, _) => None,
                (Some(_), Some((since, then))) if then == started => Some((since, then)),
                (Some(_), _) => Some((now, started)),
            };
            if let Some((since, _)) = attached.quiet_since
                && now.duration_since(since) >= self.options.idle_timeout
            {
                let why = format!(
                    "idle for {}",
                    crate::config::format_duration(self.options.idle_timeout)
                );
                attached.control.stop(why, true);
            }
        }
    }

    /// Attaches agents to notebooks that ask for us and need one, while slots are free.
    async fn attach_wanted(
        &self,
        notebooks: &[NotebookInfo],
        attached: &mut HashMap<String, Attached>,
        resting: &mut HashMap<String, Resting>,
        tasks: &mut JoinSet<Ended>,
        serving: &mut HashMap<tokio::task::Id, String>,
    ) {
        let mut candidates: Vec<&NotebookInfo> = Vec::new();
        for info in notebooks.iter().filter(|info| self.wants_us(info)) {
            if attached.contains_key(&info.id) {
                continue;
            }
            if let Some(rest) = resting.get_mut(&info.id) {
                if info.head > rest.checked_through
                    && let Err(error) = self.look_again(&info.id, info.head, rest).await
                {
                    tracing::warn!(notebook = %info.id, %error, "cannot read the notebook");
                    continue;
                }
                if !rest.requested || rest.served_elsewhere.is_some() {
                    continue;
                }
            }
            candidates.push(info);
        }
        // The most recently active first.
        candidates.sort_by_key(|info| std::cmp::Reverse(info.last_activity));
        for info in candidates {
            if attached.len() >= self.options.max_sessions {
                if !matches!(
                    self.status.notebook(&info.id).map(|status| status.state),
                    Some(ServingState::Waiting)
                ) {
                    self.status.set(&info.id, ServingState::Waiting, None);
                }
                continue;
            }
            let Some(request) = info.runtime.clone() else {
                continue;
            };
            resting.remove(&info.id);
            let control = Arc::new(Control::default());
            self.status.set(&info.id, ServingState::Attaching, None);
            let task = tasks.spawn(serve(self.attachment(&info.id, request, control.clone())));
            serving.insert(task.id(), info.id.clone());
            attached.insert(
                info.id.clone(),
                Attached {
                    control,
                    quiet_since: None,
                },
            );
        }
    }

    /// Reads a resting notebook's log from where it was read to `head`: a request, or the
    /// end of the runtime that displaced ours, makes it a candidate again.
    async fn look_again(
        &self,
        notebook: &str,
        head: Seq,
        rest: &mut Resting,
    ) -> Result<(), runtime_core::StoreError> {
        let store = self.catalog.open(notebook)?;
        let mut log = store.subscribe(rest.checked_through + 1);
        while rest.checked_through < head {
            let Some(entry) = log.next().await else {
                break;
            };
            let entry = entry?;
            rest.checked_through = entry.seq;
            match &*entry.event {
                Event::ExecutionRequested(_) => rest.requested = true,
                Event::RuntimeSessionStarted(started) if rest.served_elsewhere.is_some() => {
                    rest.served_elsewhere = Some(Elsewhere::Session(started.session_id.clone()));
                }
                Event::RuntimeSessionTerminated(ended)
                    if rest.served_elsewhere == Some(Elsewhere::Unknown)
                        || rest.served_elsewhere
                            == Some(Elsewhere::Session(ended.session_id.clone())) =>
                {
                    rest.served_elsewhere = None;
                    // What it left pending is for us now.
                    rest.requested = true;
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Everything one notebook's task needs.
    fn attachment(
        &self,
        notebook: &str,
        request: NotebookRuntimeRequested,
        control: Arc<Control>,
    ) -> Attachment {
        let mut options = self.agent_options.clone();
        options.runtime_type.clone_from(&self.options.runtime_type);
        options.runtime_id = options
            .runtime_id
            .map(|runtime_id| format!("{runtime_id}/{notebook}"));
        Attachment {
            notebook: notebook.to_owned(),
            request,
            store: self.catalog.open(notebook),
            options,
            capabilities: self.capabilities.clone(),
            backends: self.backends.clone(),
            worktrees: self.worktrees.clone(),
            status: self.status.clone(),
            control,
        }
    }

    /// A notebook's task ended: note why, and watch it for a reason to come back.
    fn detached(
        &self,
        ended: Ended,
        attached: &mut HashMap<String, Attached>,
        resting: &mut HashMap<String, Resting>,
    ) {
        attached.remove(&ended.notebook);
        let displaced = matches!(ended.reason, Ok(TerminationReason::Displaced));
        let mut why = match &ended.reason {
            Ok(TerminationReason::Displaced) => "displaced by another runtime".to_owned(),
            Ok(reason) => reason.as_str().to_owned(),
            Err(error) => format!("stopped: {error}"),
        };
        if let Some(worktree) = &ended.worktree {
            why = format!("{why}; {worktree}");
        }
        self.status
            .set(&ended.notebook, ServingState::Detached(why), None);
        // Stopped as idle or displaced: watch the log for a reason to come back (a
        // request, even one that came while the agent stopped; the end of the other
        // runtime). Otherwise (no longer asked for, an error) it is a candidate as any.
        if let Some(checked_through) = ended.rest_from {
            resting.insert(
                ended.notebook,
                Resting {
                    checked_through,
                    requested: false,
                    served_elsewhere: displaced.then_some(Elsewhere::Unknown),
                },
            );
        }
    }
}

/// How a notebook's task ended, even if it panicked (a handler's bug): its slot is freed
/// and its status says so.
fn ended_or_panicked(
    ended: Result<(tokio::task::Id, Ended), tokio::task::JoinError>,
    serving: &mut HashMap<tokio::task::Id, String>,
) -> Ended {
    match ended {
        Ok((id, ended)) => {
            serving.remove(&id);
            ended
        }
        Err(error) => {
            let notebook = serving.remove(&error.id()).unwrap_or_default();
            tracing::error!(%notebook, %error, "a notebook's agent task failed");
            Ended {
                notebook,
                reason: Err(format!("its agent task failed: {error}")),
                rest_from: None,
                worktree: None,
            }
        }
    }
}

/// Everything one notebook's task needs.
struct Attachment {
    notebook: String,
    request: NotebookRuntimeRequested,
    store: Result<Arc<dyn Store>, runtime_core::StoreError>,
    options: AgentOptions,
    capabilities: Capabilities,
    backends: BackendsFactory,
    worktrees: Option<Arc<Worktrees>>,
    status: GatewayStatus,
    control: Arc<Control>,
}

/// Serves one notebook until its agent stops: makes its worktree and backends, runs the
/// agent, shuts the backends down and closes the worktree.
async fn serve(attachment: Attachment) -> Ended {
    let Attachment {
        notebook,
        request,
        store,
        options,
        capabilities,
        backends,
        worktrees,
        status,
        control,
    } = attachment;
    let ended = |reason, rest_from, worktree| Ended {
        notebook: notebook.clone(),
        reason,
        rest_from,
        worktree,
    };
    let store = match store {
        Ok(store) => store,
        Err(error) => return ended(Err(error.to_string()), None, None),
    };
    let worktree: Result<Option<Worktree>, String> = match (&request.worktree, &worktrees) {
        (None, _) => Ok(None),
        (Some(_), None) => {
            Err("this gateway makes no worktrees (it has no worktree directory)".into())
        }
        (Some(asked), Some(worktrees)) => worktrees
            .open(&notebook, asked)
            .await
            .map(Some)
            .map_err(|error| format!("no worktree: {error}")),
    };
    let dir = worktree
        .as_ref()
        .ok()
        .and_then(|worktree| worktree.as_ref());
    let built = match &worktree {
        Err(error) => Err(error.clone()),
        Ok(_) => backends(dir.map(Worktree::path)),
    };
    let (handler, backends) = match built {
        Ok(backends) => (backends.handler(), Some(backends)),
        Err(error) => {
            tracing::warn!(notebook, %error, "serving the notebook with every cell failing");
            (failing(error), None)
        }
    };
    let mut options = options;
    if let Some(backends) = &backends {
        options.cancel_grace = options.cancel_grace.max(backends.cancel_grace());
    }
    let agent_store = store.clone();
    // Serving once its session is active in the log, not before: until then another
    // runtime starting is displaced by it, not the other way round.
    let ready = {
        let (status, notebook) = (status.clone(), notebook.clone());
        let worktree = dir.map(|worktree| worktree.path().to_path_buf());
        move |session: &runtime_core::SessionId| {
            status.set(
                &notebook,
                ServingState::Serving(session.clone()),
                worktree.clone(),
            );
        }
    };
    let agent = match RuntimeAgent::new(store, TokioClock, capabilities, options) {
        Ok(agent) => agent.on_execution(handler).on_ready(ready),
        Err(error) => return ended(Err(error.to_string()), None, None),
    };
    control.attach(agent.handle());
    let reason = match &backends {
        Some(backends) => backends.warm_up_while(agent.run()).await,
        None => agent.run().await,
    };
    if let Some(backends) = &backends {
        backends.shutdown().await;
    }
    let closed = match (&worktrees, dir) {
        (Some(worktrees), Some(worktree)) => Some(match worktrees.close(worktree).await {
            Ok(Closed::Kept { why }) => format!(
                "worktree {} (branch {}) kept: {why}",
                worktree.path().display(),
                worktree.branch()
            ),
            Ok(Closed::Removed { branch_kept: true }) => format!(
                "worktree removed; branch {} kept: it has commits",
                worktree.branch()
            ),
            Ok(Closed::Removed { branch_kept: false }) => "worktree removed".to_owned(),
            Err(error) => format!("worktree {} left: {error}", worktree.path().display()),
        }),
        _ => None,
    };
    let rest_from = match &reason {
        Ok(TerminationReason::Displaced) => agent_store.head().await.ok(),
        _ => control.idle_through(),
    };
    ended(reason.map_err(|error| error.to_string()), rest_from, closed)
}

/// A handler whose every execution fails with `why`: a notebook that cannot have its
/// backends learns why at its first cell.
fn failing(why: String) -> Arc<dyn runtime_core::ExecutionHandler> {
    Arc::new(move |_ctx: ExecutionContext| {
        let why = why.clone();
        async move { Err::<Outcome, _>(ExecutionError::Unavailable(why)) }
    })
}
