//! `HubStore` for JavaScript: a notebook on a hub, over the page's `WebSocket`, with the
//! `RuntimeStore` interface. The protocol is the core's (`runtime_core::sync::HubStore`),
//! the same one native agents speak.

use std::cell::RefCell;
use std::collections::HashMap;
use std::time::Duration;

use js_sys::{Array, Function, Object, Promise, Reflect};
use runtime_core::sync::{BearerToken, ConnectionState, HubOptions, HubStore};
use runtime_core::{Batch, Catalog, Store};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::future_to_promise;

use crate::clock::BrowserClock;
use crate::error::js_error;
use crate::js_store::{deliver_to_js, event_from_js};
use crate::websocket::PageWebSocket;

#[wasm_bindgen(typescript_custom_section)]
const HUB_TYPES: &str = r#"
/** How a `HubStore` reconnects. Every field is optional. */
export interface HubStoreOptions {
  /** The first reconnect delay's cap (doubled each attempt, full jitter). Default 100. */
  backoffBaseMs?: number;
  /** The longest delay between attempts. Default 5000. */
  backoffCapMs?: number;
  /** The most commits waiting for the hub; beyond it a commit fails (retriable). Default 1024. */
  commitBuffer?: number;
  /** The ping interval; three without a frame from the hub drop the connection. Default 10000. */
  heartbeatMs?: number;
}

/** A hub connection's state, for a UI to show. */
export type HubConnectionState =
  | { state: "connecting" }
  | { state: "connected"; identity: string }
  | { state: "reconnecting"; attempt: number; retryInMs: number; error: string }
  | { state: "failed"; error: string };

/** A notebook of a hub's catalog. */
export interface NotebookInfo { id: string; title?: string; runtime?: NotebookRuntimeRequested; head: number; lastActivity?: number }
"#;

thread_local! {
    /// The hub stores JavaScript holds, by key, so `createBrowserRuntimeAgent` can use
    /// one directly (stamps and all) rather than through the JS interface.
    static HUB_STORES: RefCell<HashMap<u32, HubStore>> = RefCell::new(HashMap::new());
    static NEXT_KEY: RefCell<u32> = const { RefCell::new(1) };
}

/// The hub store behind a JS value, if it is a `HubStore`.
pub(crate) fn hub_store_of(value: &JsValue) -> Option<HubStore> {
    let key = Reflect::get(value, &JsValue::from_str("__runtimeHubStore"))
        .ok()?
        .as_f64()?;
    HUB_STORES.with(|stores| stores.borrow().get(&(key as u32)).cloned())
}

/// A notebook on a hub. It connects in the background and reconnects on its own; commits
/// made while it is down wait (up to `commitBuffer`) and are sent with their batch ids, so
/// none lands twice, and subscriptions resume where they were.
#[wasm_bindgen(js_name = HubStore)]
pub struct JsHubStore {
    store: HubStore,
    key: u32,
}

#[wasm_bindgen(js_class = HubStore)]
impl JsHubStore {
    /// Notebook `notebook` on the hub at `url` (`ws://host:port` or `wss://…`), with a
    /// token (never put it in a URL). Throws on a bad URL or notebook id.
    #[wasm_bindgen(constructor)]
    pub fn new(
        url: &str,
        token: &str,
        notebook: &str,
        #[wasm_bindgen(unchecked_optional_param_type = "HubStoreOptions")] options: Option<JsValue>,
    ) -> Result<JsHubStore, JsError> {
        let options = hub_options(&options.unwrap_or(JsValue::UNDEFINED))?;
        let (store, task) = HubStore::connect(
            url,
            BearerToken::new(token),
            notebook,
            options,
            PageWebSocket,
            BrowserClock,
        )
        .map_err(|error| JsError::new(&error.to_string()))?;
        wasm_bindgen_futures::spawn_local(task);
        Ok(JsHubStore::register(store))
    }

    /// Another notebook on the same hub, over the same connection.
    pub fn notebook(&self, id: &str) -> Result<JsHubStore, JsError> {
        let store = self
            .store
            .notebook(id)
            .map_err(|error| JsError::new(&error.to_string()))?;
        Ok(JsHubStore::register(store))
    }

    /// The notebook this store serves.
    #[wasm_bindgen(getter, js_name = notebookId)]
    pub fn notebook_id(&self) -> String {
        self.store.notebook_id().to_owned()
    }

    /// Appends `events` atomically; resolves to the first's sequence number. A batch id
    /// committed before is not appended again.
    #[wasm_bindgen(unchecked_return_type = "Promise<number>")]
    pub fn commit(
        &self,
        #[wasm_bindgen(unchecked_param_type = "RuntimeEvent[]")] events: JsValue,
        #[wasm_bindgen(js_name = batchId)] batch_id: Option<String>,
    ) -> Promise {
        let Some(events) = events.dyn_ref::<Array>() else {
            return Promise::reject(&js_error("HubStore.commit takes an array of events"));
        };
        let mut batch = Batch::new(events.iter().map(|value| event_from_js(&value)).collect());
        if let Some(id) = batch_id.filter(|id| !id.is_empty()) {
            batch.id = id.into();
        }
        let store = self.store.clone();
        future_to_promise(async move {
            match store.commit_batch(&batch).await {
                Ok(seq) => Ok(JsValue::from_f64(seq as f64)),
                Err(error) => Err(store_error(&error)),
            }
        })
    }

    /// Calls `onEvents(events, firstSeq)` with every event from `fromSeq` on, then with
    /// live ones; returns a function that stops it.
    #[wasm_bindgen(unchecked_return_type = "() => void")]
    pub fn subscribe(
        &self,
        #[wasm_bindgen(js_name = fromSeq)] from_seq: f64,
        #[wasm_bindgen(
            unchecked_param_type = "(events: RuntimeEvent[], firstSeq: number) => void",
            js_name = onEvents
        )]
        on_events: Function,
    ) -> Function {
        deliver_to_js(self.store.subscribe(from_seq.max(1.0) as u64), on_events)
    }

    /// The hub's notebooks (those this token may use).
    #[wasm_bindgen(unchecked_return_type = "Promise<NotebookInfo[]>")]
    pub fn notebooks(&self) -> Promise {
        let store = self.store.clone();
        future_to_promise(async move {
            let notebooks = store
                .notebooks()
                .await
                .map_err(|error| store_error(&error))?;
            let text =
                serde_json::to_string(&notebooks).map_err(|error| js_error(error.to_string()))?;
            js_sys::JSON::parse(&text)
        })
    }

    /// Creates a notebook titled `title` (empty: untitled), with id `notebook` or a new
    /// random one; resolves to its id. An id that already has events is refused. Open it
    /// with `notebook(id)`.
    #[wasm_bindgen(unchecked_return_type = "Promise<string>")]
    pub fn create(&self, title: Option<String>, notebook: Option<String>) -> Promise {
        let store = self.store.clone();
        future_to_promise(async move {
            let title = title.unwrap_or_default();
            match store.create(notebook.as_deref(), &title).await {
                Ok(id) => Ok(JsValue::from_str(&id)),
                Err(error) => Err(store_error(&error)),
            }
        })
    }

    /// The connection's state now.
    #[wasm_bindgen(getter, js_name = connectionState, unchecked_return_type = "HubConnectionState")]
    pub fn connection_state(&self) -> JsValue {
        state_to_js(&self.store.connection_state().get())
    }

    /// Calls `onChange(state)` with the state now and at every change; returns a function
    /// that stops it.
    #[wasm_bindgen(js_name = onConnectionState, unchecked_return_type = "() => void")]
    pub fn on_connection_state(
        &self,
        #[wasm_bindgen(unchecked_param_type = "(state: HubConnectionState) => void", js_name = onChange)]
        on_change: Function,
    ) -> Function {
        use futures::FutureExt;
        use futures::future::{AbortHandle, Abortable};
        let mut watch = self.store.connection_state();
        let (abort, registration) = AbortHandle::new_pair();
        let report = async move {
            while let Some(state) = watch.changed().await {
                if let Err(thrown) = on_change.call1(&JsValue::NULL, &state_to_js(&state)) {
                    tracing::warn!(error = %crate::error::js_message(&thrown), "onConnectionState threw");
                }
            }
        };
        wasm_bindgen_futures::spawn_local(Abortable::new(report, registration).map(drop));
        Closure::once_into_js(move || abort.abort()).unchecked_into()
    }

    /// Lets `createBrowserRuntimeAgent` find this store; not for apps.
    #[wasm_bindgen(getter, js_name = __runtimeHubStore, skip_typescript)]
    pub fn key(&self) -> u32 {
        self.key
    }
}

impl JsHubStore {
    fn register(store: HubStore) -> JsHubStore {
        let key = NEXT_KEY.with(|next| {
            let mut next = next.borrow_mut();
            let key = *next;
            *next = next.wrapping_add(1).max(1);
            key
        });
        HUB_STORES.with(|stores| stores.borrow_mut().insert(key, store.clone()));
        JsHubStore { store, key }
    }
}

impl Drop for JsHubStore {
    fn drop(&mut self) {
        HUB_STORES.with(|stores| stores.borrow_mut().remove(&self.key));
    }
}

/// A store error for JS: an `Error` with `retriable` set as the store contract says.
fn store_error(error: &runtime_core::StoreError) -> JsValue {
    let thrown = js_error(error.to_string());
    let retriable = matches!(error, runtime_core::StoreError::Unavailable(_));
    let _ = Reflect::set(&thrown, &"retriable".into(), &retriable.into());
    thrown
}

fn hub_options(options: &JsValue) -> Result<HubOptions, JsError> {
    let mut out = HubOptions::default();
    if options.is_undefined() || options.is_null() {
        return Ok(out);
    }
    let number = |key: &str| -> Result<Option<f64>, JsError> {
        let value = Reflect::get(options, &key.into()).unwrap_or(JsValue::UNDEFINED);
        if value.is_undefined() || value.is_null() {
            return Ok(None);
        }
        match value.as_f64() {
            Some(n) if n > 0.0 && n.is_finite() => Ok(Some(n)),
            _ => Err(JsError::new(&format!(
                "HubStore option {key} must be a positive number"
            ))),
        }
    };
    let millis = |n: f64| Duration::from_millis(n as u64);
    if let Some(n) = number("backoffBaseMs")? {
        out.backoff_base = millis(n);
    }
    if let Some(n) = number("backoffCapMs")? {
        out.backoff_cap = millis(n);
    }
    if let Some(n) = number("commitBuffer")? {
        out.commit_buffer = n as usize;
    }
    if let Some(n) = number("heartbeatMs")? {
        out.heartbeat = millis(n);
    }
    Ok(out)
}

fn state_to_js(state: &ConnectionState) -> JsValue {
    let object = Object::new();
    let set = |key: &str, value: JsValue| {
        let _ = Reflect::set(&object, &key.into(), &value);
    };
    match state {
        ConnectionState::Connecting => set("state", "connecting".into()),
        ConnectionState::Connected { identity } => {
            set("state", "connected".into());
            set("identity", identity.as_str().into());
        }
        ConnectionState::Reconnecting {
            attempt,
            retry_in,
            error,
        } => {
            set("state", "reconnecting".into());
            set("attempt", (*attempt).into());
            set("retryInMs", (retry_in.as_millis() as f64).into());
            set("error", error.as_str().into());
        }
        ConnectionState::Failed(error) => {
            set("state", "failed".into());
            set("error", error.as_str().into());
        }
    }
    object.into()
}
