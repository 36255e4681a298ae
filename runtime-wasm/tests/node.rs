//! The JS API under Node: the store bridge, the agent, bad events, throwing handlers.
#![cfg(target_arch = "wasm32")]
#![allow(clippy::unwrap_used)]

use futures::StreamExt;
use js_sys::{Array, JSON, Promise, Reflect};
use runtime_core::{
    CompletionStatus, Ignored, NotebookWatcher, OutputKind, QueueEntry, QueueId, Store,
};
use runtime_wasm::{JsMemoryStore, JsStore, RuntimeStore, create_browser_runtime_agent};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;
use wasm_bindgen_test::wasm_bindgen_test;

#[wasm_bindgen(module = "/tests/support.js")]
extern "C" {
    #[wasm_bindgen(js_name = plainStore)]
    fn plain_store() -> RuntimeStore;
    fn request(store: &RuntimeStore, queue_id: &str, source: &str);
}

#[wasm_bindgen(inline_js = r##"
export function asyncStore(inner) {
  return {
    events: inner.events,
    commit(batch) { return new Promise((resolve) => setTimeout(() => resolve(inner.commit(batch)), 1)); },
    subscribe(fromSeq, onEvents) { return inner.subscribe(fromSeq, onEvents); },
  };
}
export function throwingStore() {
  return { commit() { throw new Error("disk full"); }, subscribe() { return () => {}; } };
}
export function gappyStore() {
  return {
    commit() { return 1; },
    subscribe(fromSeq, onEvents) { onEvents([{ type: "v1.CellDeleted", cellId: "x" }], fromSeq + 4); return () => {}; },
  };
}
export function commitRaw(store, events) { return store.commit(events); }
export function echoHandler() {
  return async (ctx) => {
    ctx.stdout("hi\n");
    return { result: { "text/plain": "Echo: " + ctx.source } };
  };
}
export function throwingHandler() {
  return async (ctx) => {
    if (ctx.source === "boom") throw new RangeError("out of range");
    if (ctx.source === "bad shape") return { success: true };
    return undefined;
  };
}
export function cancellableHandler(log) {
  return (ctx) => new Promise((resolve, reject) => {
    ctx.stdout("waiting\n");
    ctx.signal.addEventListener("abort", () => { log.push("aborted"); reject(new Error("stopped")); });
  });
}
export function everyOutputHandler(log) {
  return async (ctx) => {
    log.push(`${ctx.cellType} ${ctx.executionCount} ${ctx.queueId} ${typeof ctx.sessionId}`);
    ctx.stdout("a"); ctx.stdout("b\n"); ctx.stderr("warn\n");
    ctx.display({ "text/plain": "0%" }, { "text/plain": { note: 1 } }, "progress");
    ctx.updateDisplay("progress", { "text/plain": "100%" });
    const answer = ctx.markdown("# A"); ctx.appendMarkdown(answer, "nswer");
    ctx.error("Warning", "careful", ["line 1"]);
    try { ctx.display({ "image/png": "not base64!" }); } catch (e) { log.push(e.message); }
    try { ctx.result("just a string"); } catch (e) { log.push(e.message); }
    ctx.result({ "text/plain": "42" });
    try { ctx.result({ "text/plain": "43" }); } catch (e) { log.push(e.message); }
    return undefined;
  };
}
export function capabilities() { return { canExecuteCode: true, canExecuteAi: true }; }
export function askingHandler() {
  return async (ctx) => {
    const name = await ctx.input("Name? ");
    const pin = await ctx.password("PIN: ");
    return { result: { "text/plain": `${name} ${pin.length}` } };
  };
}
export function lastOfType(store, type) {
  return store.events.filter((e) => e.type === type).pop();
}
export function logText(store) { return JSON.stringify(store.events); }
"##)]
extern "C" {
    #[wasm_bindgen(js_name = asyncStore)]
    fn async_store(inner: &RuntimeStore) -> RuntimeStore;
    #[wasm_bindgen(js_name = throwingStore)]
    fn throwing_store() -> RuntimeStore;
    #[wasm_bindgen(js_name = gappyStore)]
    fn gappy_store() -> RuntimeStore;
    #[wasm_bindgen(js_name = commitRaw)]
    fn commit_raw(store: &RuntimeStore, events: JsValue) -> JsValue;
    #[wasm_bindgen(js_name = echoHandler)]
    fn echo_handler() -> js_sys::Function;
    #[wasm_bindgen(js_name = throwingHandler)]
    fn throwing_handler() -> js_sys::Function;
    #[wasm_bindgen(js_name = cancellableHandler)]
    fn cancellable_handler(log: &Array) -> js_sys::Function;
    #[wasm_bindgen(js_name = everyOutputHandler)]
    fn every_output_handler(log: &Array) -> js_sys::Function;
    fn capabilities() -> JsValue;
    #[wasm_bindgen(js_name = askingHandler)]
    fn asking_handler() -> js_sys::Function;
    #[wasm_bindgen(js_name = lastOfType)]
    fn last_of_type(store: &RuntimeStore, type_name: &str) -> JsValue;
    #[wasm_bindgen(js_name = logText)]
    fn log_text(store: &RuntimeStore) -> String;
}

/// An agent for a test client serving `store` with `handler`, started.
async fn serving(
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

async fn settle(promise: Promise) -> Result<JsValue, String> {
    JsFuture::from(promise).await.map_err(|error| {
        Reflect::get(&error, &"message".into())
            .ok()
            .and_then(|m| m.as_string())
            .unwrap_or_default()
    })
}

async fn completed(store: &RuntimeStore, queue_id: &str) -> QueueEntry {
    let store = JsStore::new(store.clone());
    let mut watcher = NotebookWatcher::new(&store);
    watcher
        .wait_for_completion(&QueueId::from(queue_id))
        .await
        .unwrap()
        .clone()
}

fn texts(entry: &QueueEntry) -> Vec<String> {
    entry
        .outputs
        .iter()
        .map(|output| match &output.kind {
            OutputKind::Stream { text, .. } | OutputKind::Markdown { text } => text.clone(),
            OutputKind::Result { data, .. } | OutputKind::Display { data, .. } => {
                data.text().unwrap_or_default().to_owned()
            }
            OutputKind::Error { ename, evalue, .. } => format!("{ename}: {evalue}"),
        })
        .collect()
}

fn error_message(error: JsError) -> String {
    let value: JsValue = error.into();
    Reflect::get(&value, &"message".into())
        .unwrap()
        .as_string()
        .unwrap()
}

#[wasm_bindgen_test]
async fn an_echo_agent_serves_a_plain_js_store_end_to_end() {
    let store = plain_store();
    let agent = create_browser_runtime_agent(
        store.clone(),
        capabilities(),
        options(r#"{"clientId": "alice"}"#),
    )
    .unwrap();
    assert_eq!(agent.status(), "created");
    agent.on_execution(echo_handler());
    settle(agent.start()).await.unwrap();
    assert_eq!(agent.status(), "idle");
    request(&store, "q1", "1 + 1");
    let entry = completed(&store, "q1").await;
    assert_eq!(entry.state.status(), Some(CompletionStatus::Success));
    assert_eq!(texts(&entry), ["hi\n", "Echo: 1 + 1"]);
    settle(agent.shutdown()).await.unwrap();
    assert_eq!(agent.status(), "stopped");
    settle(agent.shutdown()).await.unwrap(); // idempotent
    let events = Reflect::get(&store, &"events".into()).unwrap();
    let last = Array::from(&events).pop();
    assert_eq!(
        Reflect::get(&last, &"type".into()).unwrap(),
        "v1.RuntimeSessionTerminated"
    );
    assert_eq!(Reflect::get(&last, &"reason".into()).unwrap(), "shutdown");
}

#[wasm_bindgen_test]
async fn a_store_whose_commit_returns_a_promise_works_too() {
    let store = async_store(&plain_store());
    let agent = serving(&store, echo_handler()).await;
    request(&store, "q1", "async");
    assert_eq!(
        texts(&completed(&store, "q1").await),
        ["hi\n", "Echo: async"]
    );
    settle(agent.shutdown()).await.unwrap();
}

#[wasm_bindgen_test]
fn a_missing_client_id_is_a_helpful_error() {
    for given in [r#"{}"#, r#"{"clientId": ""}"#, r#"{"clientId": 7}"#] {
        let error = create_browser_runtime_agent(plain_store(), capabilities(), options(given))
            .err()
            .unwrap();
        let message = error_message(error);
        assert!(
            message.contains("options.clientId") && message.contains("authenticated user"),
            "{message}"
        );
    }
    let bad = create_browser_runtime_agent(
        plain_store(),
        capabilities(),
        options(r#"{"clientId": "a", "leaseMs": -1}"#),
    );
    assert!(
        error_message(bad.err().unwrap()).contains("options.leaseMs must be a positive number")
    );
}

#[wasm_bindgen_test]
async fn start_needs_a_handler_and_happens_once() {
    let agent = create_browser_runtime_agent(
        plain_store(),
        capabilities(),
        options(r#"{"clientId": "a"}"#),
    )
    .unwrap();
    assert_eq!(
        settle(agent.start()).await.unwrap_err(),
        "call onExecution(handler) before start()"
    );
    agent.on_execution(echo_handler());
    settle(agent.start()).await.unwrap();
    assert!(
        settle(agent.start())
            .await
            .unwrap_err()
            .contains("already started")
    );
    settle(agent.shutdown()).await.unwrap();
}

#[wasm_bindgen_test]
async fn a_store_that_throws_gives_the_app_a_clear_error() {
    let agent = create_browser_runtime_agent(
        throwing_store(),
        capabilities(),
        options(r#"{"clientId": "a"}"#),
    )
    .unwrap();
    agent.on_execution(echo_handler());
    let message = settle(agent.start()).await.unwrap_err();
    assert!(
        message.contains("the app's store threw in commit: disk full"),
        "{message}"
    );
    assert_eq!(agent.status(), "stopped");
}

#[wasm_bindgen_test]
async fn a_store_that_skips_sequence_numbers_is_a_clear_error() {
    let agent = create_browser_runtime_agent(
        gappy_store(),
        capabilities(),
        options(r#"{"clientId": "a"}"#),
    )
    .unwrap();
    agent.on_execution(echo_handler());
    let message = settle(agent.start()).await.unwrap_err();
    assert!(
        message.contains("skipped from sequence number 1 to 5"),
        "{message}"
    );
}

#[wasm_bindgen_test]
async fn malformed_events_from_js_are_skipped_and_counted() {
    let store = plain_store();
    commit_raw(
        &store,
        JSON::parse(r#"[{"type": "v1.ExecutionRequested", "queueId": 5}, {"no": "type"}, "text"]"#)
            .unwrap(),
    );
    let agent = serving(&store, echo_handler()).await;
    request(&store, "q1", "fine");
    assert_eq!(
        completed(&store, "q1").await.state.status(),
        Some(CompletionStatus::Success)
    );
    let bridge = JsStore::new(store.clone());
    let mut watcher = NotebookWatcher::new(&bridge);
    let state = watcher
        .wait_until(|s| s.entry(&QueueId::from("q1")).is_some())
        .await
        .unwrap();
    assert_eq!(state.stats().ignored(Ignored::Malformed), 3);
    settle(agent.shutdown()).await.unwrap();
}

#[wasm_bindgen_test]
async fn a_throwing_handler_ends_that_execution_as_an_error_and_the_agent_lives_on() {
    let store = plain_store();
    let agent = serving(&store, throwing_handler()).await;
    request(&store, "q1", "boom");
    let failed = completed(&store, "q1").await;
    assert_eq!(failed.state.status(), Some(CompletionStatus::Error));
    let OutputKind::Error {
        ename,
        evalue,
        traceback,
    } = &failed.outputs[0].kind
    else {
        panic!()
    };
    assert_eq!(
        (ename.as_str(), evalue.as_str()),
        ("RangeError", "out of range")
    );
    assert!(
        traceback.iter().any(|line| line.contains("out of range")),
        "the JS stack: {traceback:?}"
    );
    request(&store, "q2", "bad shape");
    let wrong = completed(&store, "q2").await;
    assert!(
        texts(&wrong)[0]
            .starts_with("TypeError: onExecution must resolve to undefined or { result"),
        "{:?}",
        texts(&wrong)
    );
    request(&store, "q3", "fine");
    assert_eq!(
        completed(&store, "q3").await.state.status(),
        Some(CompletionStatus::Success)
    );
    settle(agent.shutdown()).await.unwrap();
}

#[wasm_bindgen_test]
async fn cancel_aborts_the_signal_and_runs_the_cancellation_callbacks() {
    let store = plain_store();
    let log = Array::new();
    let agent = create_browser_runtime_agent(
        store.clone(),
        capabilities(),
        options(r#"{"clientId": "a"}"#),
    )
    .unwrap();
    agent.on_execution(cancellable_handler(&log));
    let on_cancel = log.clone();
    agent.on_cancellation(
        Closure::<dyn Fn(JsValue)>::new(move |_| {
            on_cancel.push(&"onCancellation".into());
        })
        .into_js_value()
        .unchecked_into(),
    );
    settle(agent.start()).await.unwrap();
    request(&store, "q1", "wait for me");
    let bridge = JsStore::new(store.clone());
    let mut watcher = NotebookWatcher::new(&bridge);
    watcher
        .wait_until(|s| {
            s.entry(&QueueId::from("q1"))
                .is_some_and(|e| e.execution_count.is_some())
        })
        .await
        .unwrap();
    commit_raw(&store, JSON::parse(r#"[{"type": "v1.ExecutionCancelRequested", "target": {"scope": "all"}, "requestedBy": "t"}]"#).unwrap());
    let entry = completed(&store, "q1").await;
    assert_eq!(entry.state.status(), Some(CompletionStatus::Cancelled));
    let logged: Vec<String> = log.iter().filter_map(|v| v.as_string()).collect();
    assert_eq!(logged, ["aborted", "onCancellation"]);
    settle(agent.shutdown()).await.unwrap();
}

#[wasm_bindgen_test]
async fn the_context_mirrors_the_rust_one_and_bad_arguments_throw() {
    let store = plain_store();
    let log = Array::new();
    let agent = serving(&store, every_output_handler(&log)).await;
    request(&store, "q1", "all of it");
    let entry = completed(&store, "q1").await;
    assert_eq!(
        texts(&entry),
        [
            "ab\n",
            "warn\n",
            "100%",
            "# Answer",
            "Warning: careful",
            "42"
        ]
    );
    let logged: Vec<String> = log.iter().filter_map(|v| v.as_string()).collect();
    assert_eq!(logged[0], "code 1 q1 string");
    assert!(
        logged[1].contains("image/png must be a base64 string"),
        "{}",
        logged[1]
    );
    assert!(
        logged[2].contains("must be an object like"),
        "{}",
        logged[2]
    );
    assert_eq!(
        logged[3],
        "this execution already has a result; an execution has at most one"
    );
    settle(agent.shutdown()).await.unwrap();
}

#[wasm_bindgen_test]
async fn the_memory_store_has_the_store_interface() {
    let store = JsMemoryStore::new();
    let events = JSON::parse(
        r#"[{"type": "v1.CellDeleted", "cellId": "a"}, {"type": "v1.CellDeleted", "cellId": "b"}]"#,
    )
    .unwrap();
    assert_eq!(store.commit(events.clone(), None).unwrap(), 1.0);
    assert!(store.commit(JsValue::from("nope"), None).is_err());
    assert_eq!(store.length(), 2.0);
    // A retried batch id lands once, through the bridge as through JS.
    let retried = Some("batch-1".to_owned());
    assert_eq!(store.commit(events.clone(), retried.clone()).unwrap(), 3.0);
    assert_eq!(store.commit(events, retried).unwrap(), 3.0);
    assert_eq!(store.length(), 4.0);
    let as_js: JsValue = store.clone().into();
    let bridge = JsStore::new(as_js.unchecked_into());
    let seen: Vec<u64> = bridge
        .subscribe(2)
        .take(1)
        .map(|e| e.unwrap().seq)
        .collect()
        .await;
    assert_eq!(seen, [2]);
    let store_js: RuntimeStore = JsValue::from(store.clone()).unchecked_into();
    let agent = serving(&store_js, echo_handler()).await;
    request(&store_js, "q1", "on a MemoryStore");
    assert_eq!(
        texts(&completed(&store_js, "q1").await),
        ["hi\n", "Echo: on a MemoryStore"]
    );
    settle(agent.shutdown()).await.unwrap();
    assert!(store.events().length() > 5);
}

/// Waits until `queue_id` asks for input with a request other than `seen`; returns the
/// request event as the log has it.
async fn asked(store: &RuntimeStore, queue_id: &str, seen: &[String]) -> JsValue {
    let js_store = JsStore::new(store.clone());
    let mut watcher = NotebookWatcher::new(&js_store);
    let queue_id = QueueId::from(queue_id);
    watcher
        .wait_until(|state| {
            state
                .entry(&queue_id)
                .and_then(|e| e.input.as_ref())
                .is_some_and(|i| i.is_waiting() && !seen.contains(&i.input_id.to_string()))
        })
        .await
        .unwrap();
    last_of_type(store, "v1.InputRequested")
}

#[wasm_bindgen_test]
async fn a_js_handler_asks_for_input_and_a_page_answers_with_input_reply() {
    let store = plain_store();
    let _agent = serving(&store, asking_handler()).await;
    request(&store, "q1", "ask");
    let name = asked(&store, "q1", &[]).await;
    let reply = runtime_wasm::input_reply(name.clone(), "Ada", "bob").unwrap();
    commit_raw(&store, Array::of1(&reply).into());
    let name_id = Reflect::get(&name, &"inputId".into())
        .unwrap()
        .as_string()
        .unwrap();
    let pin = asked(&store, "q1", &[name_id]).await;
    assert_eq!(
        Reflect::get(&pin, &"password".into()).unwrap(),
        JsValue::TRUE
    );
    let reply = runtime_wasm::input_reply(pin, "12345", "bob").unwrap();
    commit_raw(&store, Array::of1(&reply).into());
    let entry = completed(&store, "q1").await;
    assert_eq!(entry.state.status(), Some(CompletionStatus::Success));
    assert_eq!(texts(&entry), ["Name? Ada\nPIN: \n", "Ada 5"]);
    assert!(
        !log_text(&store).contains("12345"),
        "the PIN is sealed in the log"
    );

    // Anything but an input request is refused with a clear error.
    let refused = runtime_wasm::input_reply(
        JSON::parse("{\"type\": \"v1.CellDeleted\", \"cellId\": \"c\"}").unwrap(),
        "x",
        "bob",
    );
    let message = js_sys::Error::from(JsValue::from(refused.unwrap_err())).message();
    assert!(String::from(message).contains("needs a v1.InputRequested event"));
}
