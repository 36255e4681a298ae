//! Turning JS exceptions into messages, and messages into JS errors.

use wasm_bindgen::{JsCast, JsValue};

/// A readable message for a thrown JS value: an `Error`'s message, else its string form.
pub(crate) fn js_message(value: &JsValue) -> String {
    if let Some(error) = value.dyn_ref::<js_sys::Error>() {
        return String::from(error.message());
    }
    value.as_string().unwrap_or_else(|| format!("{value:?}"))
}

/// A JS `Error` with `message`.
pub(crate) fn js_error(message: impl AsRef<str>) -> JsValue {
    js_sys::Error::new(message.as_ref()).into()
}
