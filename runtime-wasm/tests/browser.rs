//! Page behaviour in headless Chromium: lifecycle events, URL parameters, localStorage.
#![cfg(target_arch = "wasm32")]
#![allow(clippy::unwrap_used)]

use js_sys::{Array, JSON, Promise, Reflect};
use runtime_core::{CompletionStatus, NotebookWatcher, QueueId};
use runtime_wasm::{JsStore, RuntimeStore, create_browser_runtime_agent};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;
use wasm_bindgen_test::{wasm_bindgen_test, wasm_bindgen_test_configure};

wasm_bindgen_test_configure!(run_in_browser);

#[wasm_bindgen(module = "/tests/support.js")]
extern "C" {
    #[wasm_bindgen(js_name = plainStore)]
    fn plain_store() -> RuntimeStore;
    fn request(store: &RuntimeStore, queue_id: &str, source: &str);
}

#[wasm_bindgen(inline_js = r##"
export function echoHandler() {
  return async (ctx) => ({ result: { "text/plain": "Echo: " + ctx.source } });
}
export function terminations(store) {
  return store.events.filter((e) => e.type === "v1.RuntimeSessionTerminated");
}
export function started(store) {
  return store.events.find((e) => e.type === "v1.RuntimeSessionStarted");
}
export function slowHandler() {
  return (ctx) => new Promise((resolve) => ctx.signal.addEventListener("abort", () => resolve()));
}
export function types(store) { return store.events.map((e) => e.type); }
export function lastEvent(store, type) { return store.events.findLast((e) => e.type === type); }
export function dispatch(name) { window.dispatchEvent(new Event(name)); }
export function hideTab() {
  Object.defineProperty(document, "visibilityState", { value: "hidden", configurable: true });
  document.dispatchEvent(new Event("visibilitychange"));
}
export function setSearch(search) { history.replaceState(null, "", location.pathname + search); }
"##)]
extern "C" {
    #[wasm_bindgen(js_name = echoHandler)]
    fn echo_handler() -> js_sys::Function;
    fn terminations(store: &RuntimeStore) -> Array;
    #[wasm_bindgen(js_name = slowHandler)]
    fn slow_handler() -> js_sys::Function;
    fn types(store: &RuntimeStore) -> Vec<String>;
    #[wasm_bindgen(js_name = lastEvent)]
    fn last_event(store: &RuntimeStore, event_type: &str) -> JsValue;
    fn started(store: &RuntimeStore) -> JsValue;
    fn dispatch(name: &str);
    #[wasm_bindgen(js_name = hideTab)]
    fn hide_tab();
    #[wasm_bindgen(js_name = setSearch)]
    fn set_search(search: &str);
}

/// An echo agent for a test client serving `store`, started.
async fn serving(store: &RuntimeStore) -> runtime_wasm::BrowserRuntimeAgent {
    serving_with(store, echo_handler()).await
}

/// An agent for a test client serving `store` with `handler`, started.
async fn serving_with(
    store: &RuntimeStore,
    handler: js_sys::Function,
) -> runtime_wasm::BrowserRuntimeAgent {
    let agent = create_browser_runtime_agent(
        store.clone(),
        capabilities(),
        options(r#"{"clientId": "a"}"#),
    )
    .unwrap();
    agent.on_execution(handler);
    settle(agent.start()).await.unwrap();
    agent
}

fn options(json: &str) -> JsValue {
    JSON::parse(json).unwrap()
}

fn capabilities() -> JsValue {
    JSON::parse(r#"{"canExecuteCode": true}"#).unwrap()
}

async fn settle(promise: Promise) -> Result<JsValue, JsValue> {
    JsFuture::from(promise).await
}

/// How execution `queue_id` ends, as the log says once it has.
async fn status_when_done(store: &RuntimeStore, queue_id: &str) -> Option<CompletionStatus> {
    let bridge = JsStore::new(store.clone());
    let mut watcher = NotebookWatcher::new(&bridge);
    let done = watcher
        .wait_for_completion(&QueueId::from(queue_id))
        .await
        .unwrap();
    done.state.status()
}

fn field(value: &JsValue, name: &str) -> JsValue {
    Reflect::get(value, &name.into()).unwrap()
}

#[wasm_bindgen_test]
async fn leaving_the_page_while_a_cell_runs_records_it_cancelled_before_the_session_ends() {
    let store = plain_store();
    let agent = serving_with(&store, slow_handler()).await;
    request(&store, "q1", "runs until cancelled");
    for _ in 0..2_000 {
        if agent.status() == "busy" {
            break;
        }
        gloo_timers::future::TimeoutFuture::new(5).await;
    }
    assert_eq!(agent.status(), "busy");

    dispatch("pagehide");
    // Synchronously: the cell's end, then the session's, in that order.
    let tail: Vec<String> = types(&store).into_iter().rev().take(2).collect();
    assert_eq!(
        tail,
        ["v1.RuntimeSessionTerminated", "v1.ExecutionCompleted"],
        "the completion must come before the session's end"
    );
    let completed = last_event(&store, "v1.ExecutionCompleted");
    assert_eq!(field(&completed, "status"), "cancelled");
    assert_eq!(field(&completed, "error"), "cancelled: the page was closed");
    assert_eq!(
        status_when_done(&store, "q1").await,
        Some(CompletionStatus::Cancelled),
        "the log says cancelled, not runtime_lost"
    );
    settle(agent.shutdown()).await.unwrap();
}

#[wasm_bindgen_test]
async fn leaving_the_page_ends_the_session_at_once_and_a_hidden_tab_does_not() {
    let store = plain_store();
    let agent = serving(&store).await;

    hide_tab();
    assert_eq!(
        terminations(&store).length(),
        0,
        "a hidden tab keeps its session"
    );
    request(&store, "q1", "still serving");
    assert_eq!(
        status_when_done(&store, "q1").await,
        Some(CompletionStatus::Success)
    );

    dispatch("pagehide");
    // Synchronously, before anything could be awaited.
    let ended = terminations(&store);
    assert_eq!(ended.length(), 1);
    assert_eq!(field(&ended.get(0), "reason"), "shutdown");
    assert_eq!(field(&ended.get(0), "detail"), "the page was closed");
    settle(agent.shutdown()).await.unwrap();
    assert_eq!(agent.status(), "stopped");

    // The listeners left with the agent.
    dispatch("beforeunload");
    dispatch("pagehide");
    assert_eq!(terminations(&store).length(), 1);
}

#[wasm_bindgen_test]
async fn beforeunload_ends_the_session_too() {
    let store = plain_store();
    let agent = serving(&store).await;
    dispatch("beforeunload");
    assert_eq!(terminations(&store).length(), 1);
    settle(agent.shutdown()).await.unwrap();
}

#[wasm_bindgen_test]
async fn settings_come_from_the_app_then_the_url_then_local_storage() {
    let storage = web_sys::window().unwrap().local_storage().unwrap().unwrap();
    storage
        .set_item("runtimeAgent.runtimeId", "from-storage")
        .unwrap();
    storage
        .set_item("runtimeAgent.runtimeType", "storage-type")
        .unwrap();
    set_search("?runtimeType=url-type&leaseMs=60000&clientId=mallory");
    let store = plain_store();
    let agent = create_browser_runtime_agent(
        store.clone(),
        capabilities(),
        options(r#"{"clientId": "alice"}"#),
    )
    .unwrap();
    agent.on_execution(echo_handler());
    settle(agent.start()).await.unwrap();
    let announced = started(&store);
    assert_eq!(
        field(&announced, "runtimeType"),
        "url-type",
        "the URL beats localStorage"
    );
    assert_eq!(
        field(&announced, "runtimeId"),
        "from-storage",
        "localStorage when the URL is silent"
    );
    assert_eq!(field(&announced, "validForMs").as_f64(), Some(60_000.0));
    assert_eq!(
        field(&announced, "clientId"),
        "alice",
        "the client id never comes from the URL"
    );
    settle(agent.shutdown()).await.unwrap();

    let store = plain_store();
    let app_wins = options(r#"{"clientId": "alice", "runtimeType": "app-type"}"#);
    let agent = create_browser_runtime_agent(store.clone(), capabilities(), app_wins).unwrap();
    agent.on_execution(echo_handler());
    settle(agent.start()).await.unwrap();
    assert_eq!(
        field(&started(&store), "runtimeType"),
        "app-type",
        "the app's options win"
    );
    settle(agent.shutdown()).await.unwrap();

    set_search("?leaseMs=soon");
    let refused = create_browser_runtime_agent(
        plain_store(),
        capabilities(),
        options(r#"{"clientId": "alice"}"#),
    );
    let error: JsValue = refused.err().unwrap().into();
    let message = field(&error, "message").as_string().unwrap();
    assert!(message.contains("URL parameter `leaseMs`"), "{message}");
    set_search("");
    storage.clear().unwrap();
}

/// A hub that cannot be reached: the page's WebSocket is refused, the store says so and
/// keeps retrying, commits wait up to the buffer, and the one past it fails as retriable.
#[wasm_bindgen_test]
async fn a_hub_store_reports_an_unreachable_hub_and_bounds_what_waits() {
    use runtime_wasm::JsHubStore;

    let secret = "hunter2-never-shown";
    let refused = JsHubStore::new(&format!("ws://me:{secret}@127.0.0.1:9"), "t", "nb", None)
        .err()
        .map(JsValue::from)
        .unwrap();
    let message = runtime_wasm_message(&refused);
    assert!(message.contains("credentials"), "{message}");
    assert!(!message.contains(secret), "{message}");

    // Port 9 on loopback: nothing listens, so every attempt is refused.
    let store = JsHubStore::new(
        "ws://127.0.0.1:9",
        "a-token-0123456789",
        "nb",
        Some(options(
            r#"{"backoffBaseMs": 10, "backoffCapMs": 50, "commitBuffer": 1}"#,
        )),
    )
    .unwrap();
    let mut state = store.connection_state();
    for _ in 0..200 {
        if field(&state, "state").as_string().as_deref() == Some("reconnecting") {
            break;
        }
        gloo_timers::future::TimeoutFuture::new(20).await;
        state = store.connection_state();
    }
    assert_eq!(
        field(&state, "state").as_string().as_deref(),
        Some("reconnecting")
    );
    assert!(field(&state, "attempt").as_f64().unwrap() >= 1.0);
    assert!(!field(&state, "error").as_string().unwrap().is_empty());

    let event = || {
        JSON::parse(
            r#"[{"type": "v1.CellCreated", "cellId": "c", "cellType": "code", "source": ""}]"#,
        )
        .unwrap()
    };
    let waiting = store.commit(event(), None); // held for the hub, not answered
    gloo_timers::future::TimeoutFuture::new(50).await;
    let beyond = settle(store.commit(event(), None)).await.unwrap_err();
    assert_eq!(field(&beyond, "retriable").as_bool(), Some(true));
    assert!(runtime_wasm_message(&beyond).contains("commit buffer is full"));
    drop(waiting);
}

fn runtime_wasm_message(error: &JsValue) -> String {
    error
        .dyn_ref::<js_sys::Error>()
        .map(|error| String::from(error.message()))
        .unwrap_or_default()
}
