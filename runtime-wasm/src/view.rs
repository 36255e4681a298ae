//! `NotebookView` for JavaScript: the core's reducer folding a notebook's log into what a
//! UI shows, so a page renders by the agents' own rules (fencing included) and keeps no
//! second fold of its own.

use js_sys::{Array, JSON, Reflect};
use runtime_core::{Event, NotebookState, QueueId, Seq};
use wasm_bindgen::prelude::*;

use crate::error::{js_message, number_text};
use crate::js_store::event_from_js;

#[wasm_bindgen(typescript_custom_section)]
const VIEW_TYPES: &str = r#"
/** Options of `new NotebookView(options)`. Every field is optional. */
export interface NotebookViewOptions {
  /**
   * Fold as agents do: the runtime, the queue and statuses, but no outputs and nothing of
   * an execution once it has finished, so memory stays small however long the log.
   * Default false.
   */
  lean?: boolean;
}
"#;

/// Folds a notebook's log, as a store's `subscribe` delivers it, with the reducer the
/// agents use; `state()` is what a UI shows.
///
/// ```js
/// const view = new NotebookView();
/// store.subscribe(1, (events, firstSeq) => {
///   view.apply(events, firstSeq);
///   render(view.state());
/// });
/// ```
#[wasm_bindgen(js_name = NotebookView)]
pub struct JsNotebookView {
    state: NotebookState,
}

#[wasm_bindgen(js_class = NotebookView)]
impl JsNotebookView {
    /// An empty notebook. With `{ lean: true }` the view folds as agents do: the same
    /// runtime, queue and statuses, but no outputs and nothing of an execution once it has
    /// finished, so memory stays small however long the log (what a dashboard of many
    /// notebooks needs).
    #[wasm_bindgen(constructor)]
    pub fn new(
        #[wasm_bindgen(unchecked_optional_param_type = "NotebookViewOptions")] options: Option<
            JsValue,
        >,
    ) -> JsNotebookView {
        let lean = options
            .filter(|options| options.is_object())
            .and_then(|options| Reflect::get(&options, &"lean".into()).ok())
            .and_then(|lean| lean.as_bool())
            .unwrap_or(false);
        JsNotebookView {
            state: if lean {
                NotebookState::lean()
            } else {
                NotebookState::new()
            },
        }
    }

    /// Folds in `events`, the first of which has sequence number `firstSeq` (as
    /// `subscribe` calls back). Events folded before are skipped, so a repeated delivery is
    /// harmless; a gap (`firstSeq` past `lastSeq + 1`) throws and folds nothing.
    pub fn apply(
        &mut self,
        #[wasm_bindgen(unchecked_param_type = "RuntimeEvent[]")] events: JsValue,
        #[wasm_bindgen(js_name = firstSeq)] first_seq: f64,
    ) -> Result<(), JsError> {
        let Some(events) = events.dyn_ref::<Array>() else {
            return Err(JsError::new("NotebookView.apply takes an array of events"));
        };
        // Number.MAX_SAFE_INTEGER: beyond it a JS number is not a whole sequence number.
        if !(1.0..=9_007_199_254_740_991.0).contains(&first_seq) || first_seq.fract() != 0.0 {
            return Err(JsError::new(&format!(
                "firstSeq must be a sequence number (1, 2, ...), got {}",
                number_text(first_seq)
            )));
        }
        let first = first_seq as Seq;
        let next = self.state.last_seq() + 1;
        if first > next {
            return Err(JsError::new(&format!(
                "events from {first} on cannot follow {}: the events from {next} are missing",
                next - 1
            )));
        }
        for (offset, value) in events.iter().enumerate() {
            let seq = first + offset as Seq;
            if seq >= next {
                self.state.apply(seq, &event_from_js(&value));
            }
        }
        Ok(())
    }

    /// The sequence number of the last event folded in (0 before any).
    #[wasm_bindgen(getter, js_name = lastSeq)]
    pub fn last_seq(&self) -> f64 {
        self.state.last_seq() as f64
    }

    /// The notebook as a UI shows it now: cells in order with their latest execution and
    /// the outputs they show, the queue, the runtime serving it.
    #[wasm_bindgen(unchecked_return_type = "NotebookViewState")]
    pub fn state(&self) -> Result<JsValue, JsError> {
        let text = serde_json::to_string(&self.state.view())
            .map_err(|error| JsError::new(&error.to_string()))?;
        JSON::parse(&text).map_err(|error| JsError::new(&js_message(&error)))
    }

    /// The `v1.InputReplied` event answering the question execution `queueId` waits on
    /// (sealed for a password), to commit to the store; throws if it waits on none.
    pub fn answer(
        &self,
        #[wasm_bindgen(js_name = queueId)] queue_id: &str,
        value: &str,
        #[wasm_bindgen(js_name = repliedBy)] replied_by: &str,
    ) -> Result<JsValue, JsError> {
        let queue_id = QueueId::from(queue_id);
        let Some(request) = self
            .state
            .entry(&queue_id)
            .and_then(|entry| entry.input.as_ref())
            .filter(|input| input.is_waiting())
        else {
            return Err(JsError::new(&format!(
                "execution {queue_id} is not waiting for an answer"
            )));
        };
        let reply = request
            .answer(&queue_id, value, replied_by)
            .map_err(|error| JsError::new(&error.to_string()))?;
        JSON::parse(&Event::from(reply).to_json_string())
            .map_err(|error| JsError::new(&js_message(&error)))
    }
}
