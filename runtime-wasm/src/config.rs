//! Options for a browser agent: the app's options win, then URL parameters, then
//! localStorage (keys prefixed `runtimeAgent.`), then defaults. The client id comes only
//! from the app: never from the URL, which anyone can craft.

use std::time::Duration;

use js_sys::Reflect;
use runtime_core::{AgentOptions, SessionId};
use tracing::Level;
use wasm_bindgen::JsValue;

use crate::error::number_text;

/// The prefix of localStorage keys.
pub(crate) const STORAGE_PREFIX: &str = "runtimeAgent.";

/// What the options resolve to.
pub(crate) struct BrowserConfig {
    pub(crate) options: AgentOptions,
    pub(crate) log_level: Level,
}

/// A setting and where it came from, for error messages.
struct Setting {
    value: String,
    source: String,
}

fn from_app(options: &JsValue, key: &str) -> Option<JsValue> {
    Reflect::get(options, &key.into())
        .ok()
        .filter(|v| !v.is_undefined() && !v.is_null())
}

fn from_page(key: &str) -> Option<Setting> {
    let window = web_sys::window()?;
    let search = window.location().search().ok()?;
    let params = web_sys::UrlSearchParams::new_with_str(&search).ok()?;
    if let Some(value) = params.get(key) {
        return Some(Setting {
            value,
            source: format!("URL parameter `{key}`"),
        });
    }
    let storage = window.local_storage().ok()??;
    let storage_key = format!("{STORAGE_PREFIX}{key}");
    let value = storage.get_item(&storage_key).ok()??;
    Some(Setting {
        value,
        source: format!("localStorage `{storage_key}`"),
    })
}

/// The setting for `key`: the app's option, else the page's.
fn setting(options: &JsValue, key: &str) -> Option<Setting> {
    match from_app(options, key) {
        Some(value) => Some(Setting {
            value: value
                .as_string()
                .unwrap_or_else(|| value.as_f64().map(number_text).unwrap_or_default()),
            source: format!("options.{key}"),
        }),
        None => from_page(key),
    }
}

fn millis(options: &JsValue, key: &str) -> Result<Option<Duration>, String> {
    let Some(setting) = setting(options, key) else {
        return Ok(None);
    };
    // JavaScript's own number parsing and printing: Rust's would add their code to the
    // module. `Number("")` is 0 and `Number("12px")` NaN, both refused below.
    let ms = js_sys::Number::from(JsValue::from_str(setting.value.trim())).value_of();
    match ms {
        ms if ms > 0.0 && ms.is_finite() => Ok(Some(Duration::from_millis(ms as u64))),
        _ => Err(format!(
            "{} must be a positive number of milliseconds, got {:?}",
            setting.source, setting.value
        )),
    }
}

/// Resolves the app's options object.
pub(crate) fn resolve(options: &JsValue) -> Result<BrowserConfig, String> {
    let client_id = from_app(options, "clientId")
        .and_then(|v| v.as_string())
        .filter(|id| !id.trim().is_empty());
    let Some(client_id) = client_id else {
        return Err(
            "createBrowserRuntimeAgent needs options.clientId: the authenticated user's id \
                    (e.g. user.sub from your auth provider). It is never read from the URL."
                .to_owned(),
        );
    };
    let defaults = AgentOptions::new(client_id);
    let log_level = match setting(options, "logLevel") {
        None => Level::WARN,
        Some(setting) => crate::logging::parse_level(&setting.value).ok_or_else(|| {
            format!(
                "{} must be error, warn, info, debug or trace, got {:?}",
                setting.source, setting.value
            )
        })?,
    };
    let options_out = AgentOptions {
        runtime_id: setting(options, "runtimeId").map(|s| s.value),
        runtime_type: setting(options, "runtimeType")
            .map_or(defaults.runtime_type.clone(), |s| s.value),
        session_id: from_app(options, "sessionId")
            .and_then(|v| v.as_string())
            .map(SessionId::from),
        lease_duration: millis(options, "leaseMs")?.unwrap_or(defaults.lease_duration),
        renew_interval: millis(options, "renewIntervalMs")?.unwrap_or(defaults.renew_interval),
        cancel_grace: millis(options, "cancelGraceMs")?.unwrap_or(defaults.cancel_grace),
        stop_on_error: from_app(options, "stopOnError")
            .and_then(|v| v.as_bool())
            .unwrap_or(false),
        max_output_bytes: from_app(options, "maxOutputBytes")
            .and_then(|v| v.as_f64())
            .map(|n| n as u64)
            .or(defaults.max_output_bytes),
        ..defaults
    };
    Ok(BrowserConfig {
        options: options_out,
        log_level,
    })
}
