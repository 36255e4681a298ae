//! `ExecutionContext` for JavaScript handlers: the Rust context in camelCase.

use js_sys::{JSON, Promise};
use runtime_core::{Display, Event, ExecutionContext, InputRequest, MediaBundle, OutputId};
use serde_json::{Map, Value};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::future_to_promise;
use web_sys::AbortSignal;

use crate::error::js_message;

/// One execution as a JavaScript handler sees it. Output methods enqueue and return at
/// once; they throw an `Error` saying what is wrong with a bad argument.
#[wasm_bindgen(js_name = ExecutionContext)]
pub struct JsExecutionContext {
    ctx: ExecutionContext,
    signal: AbortSignal,
}

impl JsExecutionContext {
    pub(crate) fn new(ctx: ExecutionContext, signal: AbortSignal) -> Self {
        JsExecutionContext { ctx, signal }
    }
}

fn failed(error: impl std::fmt::Display) -> JsError {
    JsError::new(&error.to_string())
}

/// A JSON object from JS: a media bundle or metadata.
fn json_object(value: &JsValue, what: &str) -> Result<Map<String, Value>, JsError> {
    let text = JSON::stringify(value)
        .ok()
        .and_then(|text| text.as_string())
        .ok_or_else(|| {
            JsError::new(&format!(
                "{what} must be a plain object, got {}",
                js_message(value)
            ))
        })?;
    match serde_json::from_str(&text) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(JsError::new(&format!(
            "{what} must be an object like {{\"text/plain\": \"hi\"}}, got {text}"
        ))),
    }
}

fn bundle(value: &JsValue) -> Result<MediaBundle, JsError> {
    json_object(value, "a media bundle").map(MediaBundle::from)
}

#[wasm_bindgen(js_class = ExecutionContext)]
impl JsExecutionContext {
    /// The queue entry being executed.
    #[wasm_bindgen(getter, js_name = queueId)]
    pub fn queue_id(&self) -> String {
        self.ctx.queue_id().to_string()
    }

    /// The cell it came from.
    #[wasm_bindgen(getter, js_name = cellId)]
    pub fn cell_id(&self) -> String {
        self.ctx.cell_id().to_string()
    }

    /// The cell's kind: `code`, `markdown`, `sql`, `ai` or `raw`.
    #[wasm_bindgen(getter, js_name = cellType, unchecked_return_type = "CellType")]
    pub fn cell_type(&self) -> String {
        self.ctx.cell_type().as_str().to_owned()
    }

    /// The source to run.
    #[wasm_bindgen(getter)]
    pub fn source(&self) -> String {
        self.ctx.source().to_owned()
    }

    /// The execution count the log assigned.
    #[wasm_bindgen(getter, js_name = executionCount)]
    pub fn execution_count(&self) -> f64 {
        self.ctx.execution_count() as f64
    }

    /// The runtime session running it.
    #[wasm_bindgen(getter, js_name = sessionId)]
    pub fn session_id(&self) -> String {
        self.ctx.session_id().to_string()
    }

    /// Aborted when the execution is cancelled: pass it to `fetch` and friends.
    #[wasm_bindgen(getter)]
    pub fn signal(&self) -> AbortSignal {
        self.signal.clone()
    }

    /// `true` once the execution is being cancelled.
    #[wasm_bindgen(js_name = isCancelled)]
    pub fn is_cancelled(&self) -> bool {
        self.ctx.is_cancelled()
    }

    /// Writes text to stdout; consecutive writes coalesce.
    pub fn stdout(&self, text: &str) -> Result<(), JsError> {
        self.ctx.stdout(text).map_err(failed)
    }

    /// Writes text to stderr; consecutive writes coalesce.
    pub fn stderr(&self, text: &str) -> Result<(), JsError> {
        self.ctx.stderr(text).map_err(failed)
    }

    /// Shows a rich display; returns its output id. Give a `displayId` to update it later.
    pub fn display(
        &self,
        #[wasm_bindgen(unchecked_param_type = "MediaBundle")] data: JsValue,
        #[wasm_bindgen(unchecked_optional_param_type = "Record<string, unknown> | null")]
        metadata: Option<JsValue>,
        #[wasm_bindgen(js_name = displayId, unchecked_optional_param_type = "string | null")]
        display_id: Option<String>,
    ) -> Result<String, JsError> {
        let mut display = Display::new(bundle(&data)?);
        if let Some(metadata) = metadata.filter(|m| !m.is_undefined() && !m.is_null()) {
            display = display.metadata(json_object(&metadata, "metadata")?);
        }
        if let Some(display_id) = display_id {
            display = display.id(display_id);
        }
        self.ctx
            .display(display)
            .map(|id| id.to_string())
            .map_err(failed)
    }

    /// Replaces every display shown with `displayId`, in any cell.
    #[wasm_bindgen(js_name = updateDisplay)]
    pub fn update_display(
        &self,
        #[wasm_bindgen(js_name = displayId)] display_id: &str,
        #[wasm_bindgen(unchecked_param_type = "MediaBundle")] data: JsValue,
    ) -> Result<(), JsError> {
        self.ctx
            .update_display(display_id, bundle(&data)?)
            .map_err(failed)
    }

    /// Sets the execution's result (at most one).
    pub fn result(
        &self,
        #[wasm_bindgen(unchecked_param_type = "MediaBundle")] data: JsValue,
    ) -> Result<(), JsError> {
        self.ctx.result(bundle(&data)?).map_err(failed)
    }

    /// Shows an error: name, message, traceback lines.
    pub fn error(
        &self,
        ename: &str,
        evalue: &str,
        traceback: Option<Vec<String>>,
    ) -> Result<(), JsError> {
        self.ctx
            .error(ename, evalue, traceback.unwrap_or_default())
            .map_err(failed)
    }

    /// Starts a markdown output; returns its id for `appendMarkdown`.
    pub fn markdown(&self, text: &str) -> Result<String, JsError> {
        self.ctx
            .markdown(text)
            .map(|id| id.to_string())
            .map_err(failed)
    }

    /// Appends to a markdown output this execution started.
    #[wasm_bindgen(js_name = appendMarkdown)]
    pub fn append_markdown(
        &self,
        #[wasm_bindgen(js_name = outputId)] output_id: &str,
        text: &str,
    ) -> Result<(), JsError> {
        self.ctx
            .append_markdown(&OutputId::from(output_id), text)
            .map_err(failed)
    }

    /// Clears this execution's outputs: now, or with `wait`, when the next output arrives.
    pub fn clear(&self, wait: Option<bool>) -> Result<(), JsError> {
        self.ctx.clear(wait.unwrap_or(false)).map_err(failed)
    }

    /// Asks whoever watches the notebook for a line of input and resolves with it: UIs
    /// show `prompt` until a client answers (a `v1.InputReplied`, made by `inputReply`).
    /// The answer is echoed after the prompt on stdout. Rejects when the execution is
    /// cancelled meanwhile.
    #[wasm_bindgen(unchecked_return_type = "Promise<string>")]
    pub fn input(&self, prompt: String) -> Promise {
        let ctx = self.ctx.clone();
        future_to_promise(async move {
            let answer = ctx.input(&prompt).await.map_err(failed)?;
            Ok(JsValue::from(answer))
        })
    }

    /// Asks for a password: like `input`, but UIs hide what is typed and the reply is
    /// sealed to a one-time key of this execution, so the log never holds it in clear.
    #[wasm_bindgen(unchecked_return_type = "Promise<string>")]
    pub fn password(&self, prompt: String) -> Promise {
        let ctx = self.ctx.clone();
        future_to_promise(async move {
            let answer = ctx.password(&prompt).await.map_err(failed)?;
            Ok(JsValue::from(answer))
        })
    }
}

/// The `v1.InputReplied` event that answers `request` (a `v1.InputRequested` event, as the
/// log has it) with `value`, in the name of `repliedBy`; commit it to the notebook's store.
/// For a password request, `value` is sealed to the request's key first, so the log never
/// holds it in clear.
///
/// ```js
/// if (event.type === "v1.InputRequested") {
///   const value = prompt(event.prompt);
///   store.commit([inputReply(event, value, user.sub)]);
/// }
/// ```
#[wasm_bindgen(js_name = inputReply, unchecked_return_type = "InputRepliedEvent")]
pub fn input_reply(
    #[wasm_bindgen(unchecked_param_type = "InputRequestedEvent")] request: JsValue,
    value: &str,
    #[wasm_bindgen(js_name = repliedBy)] replied_by: &str,
) -> Result<JsValue, JsError> {
    let text = JSON::stringify(&request)
        .ok()
        .and_then(|text| text.as_string())
        .unwrap_or_default();
    let Event::InputRequested(asked) = Event::from_json_str(&text) else {
        return Err(JsError::new(&format!(
            "inputReply needs a v1.InputRequested event, got {}",
            js_message(&request)
        )));
    };
    let reply = InputRequest::from(&asked)
        .answer(&asked.queue_id, value, replied_by)
        .map_err(failed)?;
    JSON::parse(&Event::from(reply).to_json_string())
        .map_err(|error| JsError::new(&js_message(&error)))
}
