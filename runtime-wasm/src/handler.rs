//! The JS handler bridge: `onExecution(async ctx => ...)`.

use std::cell::RefCell;
use std::rc::Rc;

use futures::{FutureExt, select_biased};
use js_sys::{Function, Promise, Reflect};
use runtime_core::{ExecutionContext, ExecutionError, ExecutionHandler, MediaBundle, Outcome};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;
use web_sys::AbortController;

use crate::context::JsExecutionContext;
use crate::error::js_message;

/// Calls the app's `onExecution` handler with a JS `ExecutionContext`. A handler that throws
/// or rejects ends the execution as an error carrying the JS name, message and stack; on
/// cancel, `ctx.signal` aborts and the `onCancellation` callbacks run.
pub(crate) struct JsHandler {
    pub(crate) on_execution: Function,
    pub(crate) on_cancellation: Rc<RefCell<Vec<Function>>>,
}

#[async_trait::async_trait(?Send)]
impl ExecutionHandler for JsHandler {
    async fn execute(&self, ctx: ExecutionContext) -> Result<Outcome, ExecutionError> {
        let controller = AbortController::new().map_err(|e| thrown_error(&e))?;
        let js_ctx: JsValue = JsExecutionContext::new(ctx.clone(), controller.signal()).into();
        let returned = self
            .on_execution
            .call1(&JsValue::NULL, &js_ctx)
            .map_err(|e| thrown_error(&e))?;
        let promise = match returned.dyn_into::<Promise>() {
            Ok(promise) => promise,
            Err(value) => Promise::resolve(&value),
        };
        let mut settled = JsFuture::from(promise).fuse();
        let mut cancelled = ctx.cancelled().fuse();
        let value = loop {
            select_biased! {
                value = settled => break value,
                _ = cancelled => {
                    controller.abort();
                    for callback in self.on_cancellation.borrow().iter() {
                        if let Err(thrown) = callback.call1(&JsValue::NULL, &js_ctx) {
                            tracing::warn!(error = %js_message(&thrown), "an onCancellation callback threw");
                        }
                    }
                }
            }
        };
        outcome(value.map_err(|e| thrown_error(&e))?)
    }
}

/// What the handler resolved to: `undefined`, or `{ result?: MediaBundle }`.
fn outcome(value: JsValue) -> Result<Outcome, ExecutionError> {
    if value.is_undefined() || value.is_null() {
        return Ok(Outcome::default());
    }
    let text = js_sys::JSON::stringify(&value)
        .ok()
        .and_then(|t| t.as_string())
        .unwrap_or_default();
    let shape_error = || {
        ExecutionError::new(
            "TypeError",
            format!(
                "onExecution must resolve to undefined or {{ result: {{\"text/plain\": ...}} }}, got {text}"
            ),
        )
    };
    let Ok(serde_json::Value::Object(mut fields)) = serde_json::from_str(&text) else {
        return Err(shape_error());
    };
    let result = fields.remove("result");
    if !fields.is_empty() {
        return Err(shape_error());
    }
    match result {
        None | Some(serde_json::Value::Null) => Ok(Outcome::default()),
        Some(serde_json::Value::Object(bundle)) => Ok(MediaBundle::from(bundle).into()),
        Some(_) => Err(shape_error()),
    }
}

/// The JS error's name, message and stack as an execution error.
fn thrown_error(thrown: &JsValue) -> ExecutionError {
    let field = |name: &str| {
        Reflect::get(thrown, &name.into())
            .ok()
            .and_then(|v| v.as_string())
    };
    let ename = field("name")
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "Error".to_owned());
    let traceback = field("stack")
        .map(|stack| stack.lines().map(str::to_owned).collect())
        .unwrap_or_default();
    ExecutionError::Failed {
        ename,
        evalue: js_message(thrown),
        traceback,
    }
}
