//! `createBrowserRuntimeAgent`: the agent inside a web page.

use std::cell::RefCell;
use std::rc::Rc;

use futures::FutureExt;
use futures::channel::oneshot;
use futures::future::{Either, Shared, select};
use js_sys::{Function, JSON, Promise};
use runtime_core::{
    AgentError, AgentHandle, AgentStatus, Capabilities, RuntimeAgent, RuntimeSessionTerminated,
    TerminationReason,
};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::future_to_promise;

use crate::clock::BrowserClock;
use crate::error::js_error;
use crate::handler::JsHandler;
use crate::js_store::{JsStore, RuntimeStore};
use crate::lifecycle::PageLifecycle;

#[wasm_bindgen(typescript_custom_section)]
const AGENT_TYPES: &str = r#"
/** What the runtime can execute: it claims only cells of these types. */
export type RuntimeCapabilities = Capabilities;

/**
 * Options for `createBrowserRuntimeAgent`. Only `clientId` is required. `runtimeId`,
 * `runtimeType`, `leaseMs`, `renewIntervalMs`, `cancelGraceMs` and `logLevel` may also come
 * from URL parameters or localStorage (`runtimeAgent.<name>`); options given here win.
 */
export interface RuntimeAgentOptions {
  /** The authenticated user's id. Required; never read from the URL. */
  clientId: string;
  runtimeId?: string;
  runtimeType?: string;
  sessionId?: string;
  leaseMs?: number;
  renewIntervalMs?: number;
  cancelGraceMs?: number;
  stopOnError?: boolean;
  maxOutputBytes?: number;
  logLevel?: "error" | "warn" | "info" | "debug" | "trace";
}

/** What an `onExecution` handler may resolve to. */
export type ExecutionOutcome = void | undefined | { result?: MediaBundle };
"#;

/// The store an agent serves: the app's own, or a hub's (used directly, stamps and all).
#[derive(Clone)]
enum PageStore {
    App(JsStore),
    Hub(runtime_core::sync::HubStore),
}

impl PageStore {
    /// Commits without waiting: for page unload, when nothing can be awaited any more.
    fn commit_without_waiting(
        &self,
        events: Vec<runtime_core::Event>,
    ) -> Result<(), runtime_core::StoreError> {
        match self {
            PageStore::App(store) => store.commit_without_waiting(events),
            PageStore::Hub(store) => store.commit_without_waiting(runtime_core::Batch::new(events)),
        }
    }
}

struct Inner {
    store: PageStore,
    agent: Option<RuntimeAgent>,
    handle: AgentHandle,
    runtime_id: String,
    on_execution: Option<Function>,
    on_cancellation: Rc<RefCell<Vec<Function>>>,
    log_level: tracing::Level,
    stopped: Option<Shared<oneshot::Receiver<Result<TerminationReason, AgentError>>>>,
}

/// A runtime agent running inside the page, serving the app's store.
#[wasm_bindgen]
pub struct BrowserRuntimeAgent {
    inner: Rc<RefCell<Inner>>,
}

/// Creates an agent for `store` (any object with `commit` and `subscribe`, a
/// `MemoryStore`, or a `HubStore`, which the agent then uses directly). Throws an `Error` when `options.clientId` is missing or an option is
/// invalid.
#[wasm_bindgen(js_name = createBrowserRuntimeAgent)]
pub fn create_browser_runtime_agent(
    store: RuntimeStore,
    #[wasm_bindgen(unchecked_param_type = "RuntimeCapabilities")] capabilities: JsValue,
    #[wasm_bindgen(unchecked_param_type = "RuntimeAgentOptions")] options: JsValue,
) -> Result<BrowserRuntimeAgent, JsError> {
    let config = crate::config::resolve(&options).map_err(|message| JsError::new(&message))?;
    crate::logging::install(config.log_level);
    let capabilities: Capabilities = JSON::stringify(&capabilities)
        .ok()
        .and_then(|text| text.as_string())
        .and_then(|text| serde_json::from_str(&text).ok())
        .ok_or_else(|| {
            JsError::new("capabilities must be an object like { canExecuteCode: true }")
        })?;
    let store = match crate::hub_store::hub_store_of(&store) {
        Some(hub) => PageStore::Hub(hub),
        None => PageStore::App(JsStore::new(store)),
    };
    let agent = match &store {
        PageStore::App(app) => {
            RuntimeAgent::new(app.clone(), BrowserClock, capabilities, config.options)
        }
        PageStore::Hub(hub) => {
            RuntimeAgent::new(hub.clone(), BrowserClock, capabilities, config.options)
        }
    }
    .map_err(|error| JsError::new(&error.to_string()))?;
    let inner = Inner {
        store,
        handle: agent.handle(),
        runtime_id: agent.runtime_id().to_owned(),
        agent: Some(agent),
        on_execution: None,
        on_cancellation: Rc::default(),
        log_level: config.log_level,
        stopped: None,
    };
    Ok(BrowserRuntimeAgent {
        inner: Rc::new(RefCell::new(inner)),
    })
}

#[wasm_bindgen]
impl BrowserRuntimeAgent {
    /// Sets the handler: `async ctx => { ...; return { result } }`. Call before `start()`.
    #[wasm_bindgen(js_name = onExecution)]
    pub fn on_execution(
        &self,
        #[wasm_bindgen(
            unchecked_param_type = "(ctx: ExecutionContext) => ExecutionOutcome | Promise<ExecutionOutcome>"
        )]
        handler: Function,
    ) {
        self.inner.borrow_mut().on_execution = Some(handler);
    }

    /// Adds a callback run when an execution is cancelled (after `ctx.signal` aborts).
    #[wasm_bindgen(js_name = onCancellation)]
    pub fn on_cancellation(
        &self,
        #[wasm_bindgen(unchecked_param_type = "(ctx: ExecutionContext) => void")]
        callback: Function,
    ) {
        self.inner
            .borrow()
            .on_cancellation
            .borrow_mut()
            .push(callback);
    }

    /// Starts serving; resolves once the agent's session is active, rejects if it cannot
    /// start (no handler, the store throws, ...).
    #[wasm_bindgen(unchecked_return_type = "Promise<void>")]
    pub fn start(&self) -> Promise {
        match self.launch() {
            Ok(ready) => future_to_promise(ready),
            Err(message) => Promise::reject(&js_error(message)),
        }
    }

    /// Stops: the running execution is cancelled and completed as cancelled, the session
    /// ends. Resolves once stopped. Safe to call more than once.
    #[wasm_bindgen(unchecked_return_type = "Promise<void>")]
    pub fn shutdown(&self) -> Promise {
        let inner = self.inner.borrow();
        inner.handle.shutdown();
        let stopped = inner.stopped.clone();
        future_to_promise(async move {
            if let Some(stopped) = stopped {
                finished(stopped.await)?;
            }
            Ok(JsValue::UNDEFINED)
        })
    }

    /// The session id this agent announces.
    #[wasm_bindgen(getter, js_name = sessionId)]
    pub fn session_id(&self) -> String {
        self.inner.borrow().handle.session_id().to_string()
    }

    /// The runtime id (given, or generated).
    #[wasm_bindgen(getter, js_name = runtimeId)]
    pub fn runtime_id(&self) -> String {
        self.inner.borrow().runtime_id.clone()
    }

    /// `created`, `starting`, `idle`, `busy`, `stopping` or `stopped`.
    #[wasm_bindgen(
        getter,
        unchecked_return_type = "\"created\" | \"starting\" | \"idle\" | \"busy\" | \"stopping\" | \"stopped\""
    )]
    pub fn status(&self) -> String {
        let inner = self.inner.borrow();
        if inner.agent.is_some() {
            return "created".into();
        }
        match inner.handle.status() {
            AgentStatus::Starting => "starting",
            AgentStatus::Idle => "idle",
            AgentStatus::Busy => "busy",
            AgentStatus::Stopping => "stopping",
            AgentStatus::Stopped => "stopped",
        }
        .into()
    }
}

impl BrowserRuntimeAgent {
    /// Spawns the agent; returns a future that resolves when it is ready.
    fn launch(
        &self,
    ) -> Result<impl std::future::Future<Output = Result<JsValue, JsValue>> + use<>, String> {
        let mut inner = self.inner.borrow_mut();
        let Some(on_execution) = inner.on_execution.clone() else {
            return Err("call onExecution(handler) before start()".into());
        };
        let Some(agent) = inner.agent.take() else {
            return Err("this agent was already started; create a new one to start again".into());
        };
        let (ready_tx, ready_rx) = oneshot::channel::<()>();
        let ready_tx = RefCell::new(Some(ready_tx));
        let agent = agent
            .on_execution(JsHandler {
                on_execution,
                on_cancellation: inner.on_cancellation.clone(),
            })
            .on_ready(move |_| {
                if let Some(ready) = ready_tx.borrow_mut().take() {
                    let _ = ready.send(());
                }
            });
        let (stopped_tx, stopped_rx) = oneshot::channel();
        let stopped = stopped_rx.shared();
        inner.stopped = Some(stopped.clone());
        let lifecycle = PageLifecycle::attach({
            let (store, handle) = (inner.store.clone(), inner.handle.clone());
            move || leave_page(&store, &handle)
        });
        tracing::debug!(level = ?inner.log_level, "starting the browser runtime agent");
        wasm_bindgen_futures::spawn_local(async move {
            let ended = agent.run().await;
            drop(lifecycle); // listeners go with the agent
            let _ = stopped_tx.send(ended);
        });
        Ok(async move {
            match select(ready_rx, stopped).await {
                Either::Left((Ok(()), _)) => Ok(JsValue::UNDEFINED),
                Either::Left((Err(_), stopped)) => {
                    finished(stopped.await).map(|()| JsValue::UNDEFINED)
                }
                Either::Right((ended, _)) => {
                    finished(ended)?;
                    Err(js_error("the agent stopped before it became ready"))
                }
            }
        })
    }
}

fn finished(
    ended: Result<Result<TerminationReason, AgentError>, oneshot::Canceled>,
) -> Result<(), JsValue> {
    match ended {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(error)) => Err(js_error(format!("the runtime agent failed: {error}"))),
        Err(oneshot::Canceled) => Err(js_error("the runtime agent was dropped")),
    }
}

/// The page is going away: nothing can be awaited any more, so end what runs (cancelled,
/// saying why) and the session with one synchronous commit, then ask the agent to stop.
/// The completion comes first: after the session's end, the log would call the running
/// execution lost.
fn leave_page(store: &PageStore, handle: &AgentHandle) {
    let now = runtime_core::Clock::now(&BrowserClock);
    let session_id = handle.session_id().clone();
    let mut events: Vec<runtime_core::Event> = Vec::new();
    if let Some(running) = handle.running() {
        events.push(
            runtime_core::ExecutionCompleted {
                queue_id: running.queue_id,
                session_id: session_id.clone(),
                status: runtime_core::CompletionStatus::Cancelled,
                error: Some("cancelled: the page was closed".into()),
                duration_ms: now.saturating_since(running.started_at).as_millis() as u64,
                abort_pending: false,
                metadata: Default::default(),
            }
            .into(),
        );
    }
    events.push(
        RuntimeSessionTerminated {
            session_id: session_id.clone(),
            reason: TerminationReason::Shutdown,
            by: session_id.to_string(),
            at: now,
            detail: Some("the page was closed".into()),
        }
        .into(),
    );
    if let Err(error) = store.commit_without_waiting(events) {
        tracing::warn!(error = %error, "could not record the session's end as the page closed");
    }
    handle.shutdown();
}
