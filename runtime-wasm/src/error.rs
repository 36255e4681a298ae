//! Turning JS exceptions into messages, and messages into JS errors.

use wasm_bindgen::{JsCast, JsValue};

/// A readable message for a thrown JS value: an `Error`'s message, else its string form.
pub(crate) fn js_message(value: &JsValue) -> String {
    if let Some(error) = value.dyn_ref::<js_sys::Error>() {
        return String::from(error.message());
    }
    value.as_string().unwrap_or_else(|| format!("{value:?}"))
}

/// A number as JavaScript prints it (`String(n)`): Rust's float formatting would add its
/// code to the module for a few error messages.
pub(crate) fn number_text(n: f64) -> String {
    js_sys::Number::from(n)
        .to_string_with_radix(10)
        .map(String::from)
        .unwrap_or_default()
}

/// A JS `Error` with `message`.
pub(crate) fn js_error(message: impl AsRef<str>) -> JsValue {
    js_sys::Error::new(message.as_ref()).into()
}
