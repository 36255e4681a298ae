//! `MemoryStore` for JavaScript: a ready store for apps without one of their own.

use js_sys::{Array, Function, JSON};
use runtime_core::{Batch, Store};
use wasm_bindgen::prelude::*;

use crate::js_store::event_from_js;

/// An in-memory event log with the `RuntimeStore` interface: hand it to
/// `createBrowserRuntimeAgent` and render your UI from its `subscribe`.
#[wasm_bindgen(js_name = MemoryStore)]
#[derive(Clone, Default)]
pub struct JsMemoryStore {
    inner: runtime_core::MemoryStore,
}

#[wasm_bindgen(js_class = MemoryStore)]
impl JsMemoryStore {
    /// An empty log.
    #[wasm_bindgen(constructor)]
    pub fn new() -> JsMemoryStore {
        JsMemoryStore::default()
    }

    /// Appends `events` atomically; returns the first's sequence number. An event that does
    /// not decode is kept as malformed (agents skip and count it), never refused. A batch id
    /// committed before is not appended again: its first sequence number is returned.
    pub fn commit(
        &self,
        #[wasm_bindgen(unchecked_param_type = "RuntimeEvent[]")] events: JsValue,
        #[wasm_bindgen(js_name = batchId)] batch_id: Option<String>,
    ) -> Result<f64, JsError> {
        let Some(events) = events.dyn_ref::<Array>() else {
            return Err(JsError::new("MemoryStore.commit takes an array of events"));
        };
        let events = events.iter().map(|value| event_from_js(&value)).collect();
        let mut batch = Batch::new(events);
        if let Some(id) = batch_id.filter(|id| !id.is_empty()) {
            batch.id = id.into();
        }
        let first = self
            .inner
            .commit_batch_now(&batch)
            .map_err(|error| JsError::new(&error.to_string()))?;
        Ok(first as f64)
    }

    /// Calls `onEvents(events, firstSeq)` with every event from `fromSeq` on, then with live
    /// ones (asynchronously, batched); returns a function that stops it.
    #[wasm_bindgen(
        unchecked_return_type = "() => void",
        js_name = subscribe
    )]
    pub fn subscribe(
        &self,
        #[wasm_bindgen(js_name = fromSeq)] from_seq: f64,
        #[wasm_bindgen(
            js_name = onEvents,
            unchecked_param_type = "(events: RuntimeEvent[], firstSeq: number) => void"
        )]
        on_events: Function,
    ) -> Function {
        crate::js_store::deliver_to_js(self.inner.subscribe(from_seq.max(1.0) as u64), on_events)
    }

    /// Every event so far, in order.
    #[wasm_bindgen(unchecked_return_type = "RuntimeEvent[]")]
    pub fn events(&self) -> Array {
        self.inner
            .entries()
            .iter()
            .filter_map(|entry| JSON::parse(&entry.event.to_json_string()).ok())
            .collect()
    }

    /// How many events the log holds.
    #[wasm_bindgen(getter)]
    pub fn length(&self) -> f64 {
        self.inner.len() as f64
    }
}
