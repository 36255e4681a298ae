//! [`JsStore`]: a `Store` over a store object the JavaScript app owns.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use futures::Stream;
use js_sys::{Array, Function, JSON, Promise};
use runtime_core::{Batch, Event, LogEntry, MalformedEvent, Seq, Store, StoreError, Subscription};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;

use crate::error::js_message;

/// The event vocabulary's and the notebook view's types, generated from runtime-core's
/// schema (a test keeps them equal).
#[wasm_bindgen(typescript_custom_section)]
const SCHEMA_TYPES: &str = include_str!("schema.d.ts");

#[wasm_bindgen(typescript_custom_section)]
const STORE_TYPES: &str = r#"
/**
 * A store the app owns: one notebook's append-only, totally ordered event log.
 * `MemoryStore` is one; any object with these two methods works.
 */
export interface RuntimeStore {
  /**
   * Appends `events` atomically, in order; returns (or resolves to) the first's sequence number (the log starts at 1).
   * `batchId` names the batch: a store that can fail transiently should remember it and, when the same id comes again
   * (a retry after an error that hid a success), return the first commit's sequence number instead of appending twice.
   * Throw `{ retriable: true, message }` (or an Error with `retriable = true`) for a failure worth retrying.
   */
  commit(events: RuntimeEvent[], batchId?: string): number | Promise<number>;
  /**
   * Calls `onEvents` with every event from `fromSeq` on, in order and without gaps, then with
   * live ones as they are committed; `firstSeq` is the sequence number of `events[0]`.
   * Returns a function that stops the calls.
   */
  subscribe(fromSeq: number, onEvents: (events: RuntimeEvent[], firstSeq: number) => void): () => void;
}
"#;

#[wasm_bindgen]
extern "C" {
    /// A JS object with `commit` and `subscribe` (see the `RuntimeStore` TypeScript type).
    #[wasm_bindgen(typescript_type = "RuntimeStore")]
    #[derive(Clone, Debug)]
    pub type RuntimeStore;

    #[wasm_bindgen(method, catch, js_name = commit)]
    fn js_commit(this: &RuntimeStore, events: &Array, batch_id: &str) -> Result<JsValue, JsValue>;

    #[wasm_bindgen(method, catch, js_name = subscribe)]
    fn js_subscribe(
        this: &RuntimeStore,
        from_seq: f64,
        on_events: &Function,
    ) -> Result<JsValue, JsValue>;
}

/// A [`Store`] over a JS store object. Events cross the boundary as plain JSON objects; one
/// that does not decode becomes [`Event::Malformed`] (skipped and counted by the reducer,
/// never fatal). A store that throws, returns something other than a sequence number, or
/// skips sequence numbers is reported as a [`StoreError`] naming what it did.
#[derive(Clone, Debug)]
pub struct JsStore {
    js: RuntimeStore,
}

impl JsStore {
    /// Wraps the app's store object.
    pub fn new(js: RuntimeStore) -> Self {
        JsStore { js }
    }

    /// The JS object.
    pub fn js(&self) -> &RuntimeStore {
        &self.js
    }

    /// Calls the JS `commit` without waiting for a returned promise: for page unload, when
    /// nothing can be awaited any more.
    pub(crate) fn commit_without_waiting(&self, events: Vec<Event>) -> Result<(), StoreError> {
        let batch = Batch::new(events);
        let array = to_js_array(&batch.events)?;
        self.js
            .js_commit(&array, batch.id.as_str())
            .map(drop)
            .map_err(|thrown| store_threw("commit", &thrown))
    }
}

/// What the app's store threw: retriable if it says so (`retriable: true`).
fn store_threw(method: &str, thrown: &JsValue) -> StoreError {
    let message = format!("the app's store threw in {method}: {}", js_message(thrown));
    let retriable = js_sys::Reflect::get(thrown, &JsValue::from_str("retriable"))
        .ok()
        .and_then(|flag| flag.as_bool())
        .unwrap_or(false);
    if retriable {
        StoreError::Unavailable(message)
    } else {
        StoreError::Backend(message)
    }
}

fn to_js_array(events: &[Arc<Event>]) -> Result<Array, StoreError> {
    let array = Array::new();
    for event in events {
        let object = JSON::parse(&event.to_json_string()).map_err(|error| {
            StoreError::Backend(format!(
                "cannot hand an event to JS: {}",
                js_message(&error)
            ))
        })?;
        array.push(&object);
    }
    Ok(array)
}

/// Decodes one event from JS; never fails (see [`Event::Malformed`]).
pub(crate) fn event_from_js(value: &JsValue) -> Event {
    match JSON::stringify(value)
        .ok()
        .and_then(|text| text.as_string())
    {
        Some(text) => Event::from_json_str(&text),
        None => Event::Malformed(MalformedEvent {
            raw: serde_json::Value::Null,
            error: format!("not a JSON object: {}", js_message(value)),
        }),
    }
}

#[async_trait::async_trait(?Send)]
impl Store for JsStore {
    async fn commit_batch(&self, batch: &Batch) -> Result<Seq, StoreError> {
        if batch.events.is_empty() {
            return Err(StoreError::EmptyBatch);
        }
        let array = to_js_array(&batch.events)?;
        let returned = self
            .js
            .js_commit(&array, batch.id.as_str())
            .map_err(|thrown| store_threw("commit", &thrown))?;
        let value = match returned.dyn_into::<Promise>() {
            Ok(promise) => JsFuture::from(promise)
                .await
                .map_err(|thrown| store_threw("commit", &thrown))?,
            Err(value) => value,
        };
        match value.as_f64() {
            Some(seq) if seq >= 1.0 && seq.fract() == 0.0 => Ok(seq as Seq),
            _ => Err(StoreError::Backend(format!(
                "the app's store commit returned {}, not the first event's sequence number",
                js_message(&value)
            ))),
        }
    }

    fn subscribe(&self, from: Seq) -> Subscription {
        let from = from.max(1);
        let feed = Rc::new(RefCell::new(Feed {
            entries: VecDeque::new(),
            next: from,
            waker: None,
        }));
        let writer = feed.clone();
        let on_events =
            Closure::<dyn FnMut(JsValue, JsValue)>::new(move |events: JsValue, first: JsValue| {
                writer.borrow_mut().receive(&events, &first);
            });
        let unsubscribe = match self
            .js
            .js_subscribe(from as f64, on_events.as_ref().unchecked_ref())
        {
            Ok(unsubscribe) => unsubscribe.dyn_into::<Function>().ok(),
            Err(thrown) => {
                feed.borrow_mut()
                    .entries
                    .push_back(Err(store_threw("subscribe", &thrown)));
                None
            }
        };
        Box::pin(JsSubscription {
            feed,
            _on_events: on_events,
            unsubscribe,
        })
    }
}

/// What the JS store pushed and the reader has not taken yet. The JS side pushes, so the
/// bridge must hold what it is given; the agent reading it runs on the same thread and
/// drains it as soon as it is woken.
struct Feed {
    entries: VecDeque<Result<LogEntry, StoreError>>,
    next: Seq,
    waker: Option<Waker>,
}

impl Feed {
    fn receive(&mut self, events: &JsValue, first: &JsValue) {
        let (Some(events), Some(first)) = (events.dyn_ref::<Array>(), first.as_f64()) else {
            self.fail(format!(
                "the app's store called onEvents({}, {}); expected (an array of events, the first's sequence number)",
                js_message(events),
                js_message(first)
            ));
            return;
        };
        for (offset, value) in events.iter().enumerate() {
            let seq = first as Seq + offset as Seq;
            if seq < self.next {
                continue; // delivered before: harmless
            }
            if seq > self.next {
                self.fail(format!(
                    "the app's store skipped from sequence number {} to {seq}",
                    self.next
                ));
                return;
            }
            self.entries.push_back(Ok(LogEntry {
                seq,
                event: Arc::new(event_from_js(&value)),
                // The app's own store is unstamped: everyone on it shares one page.
                stamp: None,
            }));
            self.next += 1;
        }
        if let Some(waker) = self.waker.take() {
            waker.wake();
        }
    }

    fn fail(&mut self, message: String) {
        self.entries.push_back(Err(StoreError::Backend(message)));
        if let Some(waker) = self.waker.take() {
            waker.wake();
        }
    }
}

struct JsSubscription {
    feed: Rc<RefCell<Feed>>,
    _on_events: Closure<dyn FnMut(JsValue, JsValue)>,
    unsubscribe: Option<Function>,
}

impl Stream for JsSubscription {
    type Item = Result<LogEntry, StoreError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let mut feed = self.feed.borrow_mut();
        match feed.entries.pop_front() {
            Some(entry) => Poll::Ready(Some(entry)),
            None => {
                feed.waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

impl Drop for JsSubscription {
    fn drop(&mut self) {
        if let Some(unsubscribe) = &self.unsubscribe
            && let Err(thrown) = unsubscribe.call0(&JsValue::NULL)
        {
            tracing::warn!(error = %js_message(&thrown), "the app's store unsubscribe threw");
        }
    }
}

/// Calls `on_events(events, firstSeq)` with what `log` yields, batching what is already
/// there, until the returned function is called. An error ends the calls (and is logged).
pub(crate) fn deliver_to_js(mut log: Subscription, on_events: Function) -> Function {
    use futures::future::{AbortHandle, Abortable};
    use futures::{FutureExt, StreamExt};
    let (abort, registration) = AbortHandle::new_pair();
    let deliver = async move {
        // What the last batch met after its end: the next entry's fate, already taken.
        let mut met = None;
        loop {
            let next = match met.take() {
                Some(next) => next,
                None => log.next().await,
            };
            let first = match next {
                Some(Ok(first)) => first,
                Some(Err(error)) => {
                    tracing::warn!(%error, "a subscription ended");
                    return;
                }
                None => return,
            };
            let first_seq = first.seq;
            let batch = Array::new();
            let mut entry = Some(first);
            while let Some(current) = entry.take() {
                match JSON::parse(&current.event.to_json_string()) {
                    Ok(object) => batch.push(&object),
                    Err(error) => {
                        tracing::warn!(error = %js_message(&error), "cannot hand an event to JS");
                        batch.push(&JsValue::NULL)
                    }
                };
                match log.next().now_or_never() {
                    Some(Some(Ok(next))) => entry = Some(next),
                    Some(end) => met = Some(end),
                    None => {}
                }
            }
            if let Err(thrown) = on_events.call2(&JsValue::NULL, &batch, &(first_seq as f64).into())
            {
                tracing::warn!(error = %js_message(&thrown), "a subscriber threw");
            }
        }
    };
    wasm_bindgen_futures::spawn_local(Abortable::new(deliver, registration).map(drop));
    Closure::once_into_js(move || abort.abort()).unchecked_into()
}
