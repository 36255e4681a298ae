//! Media bundles: one output in several representations, keyed by MIME type.
//!
//! A bundle keeps its entries in insertion order (the order a frontend should prefer them
//! in) and keeps MIME types it does not know, unchanged. [`MediaBundle::validated`] checks
//! what a user would expect to be checked and normalises what is harmless to normalise.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// `text/plain`
pub const TEXT_PLAIN: &str = "text/plain";
/// `text/markdown`
pub const TEXT_MARKDOWN: &str = "text/markdown";
/// `text/html`
pub const TEXT_HTML: &str = "text/html";
/// `application/json`
pub const APPLICATION_JSON: &str = "application/json";
/// `image/png`
pub const IMAGE_PNG: &str = "image/png";
/// `image/svg+xml` (text, not base64)
pub const IMAGE_SVG: &str = "image/svg+xml";

/// Why a bundle was refused. The message names the MIME type and what was expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MediaError {
    /// The bundle has no representation at all.
    #[error("a media bundle needs at least one MIME type")]
    Empty,
    /// The key does not look like `type/subtype`.
    #[error("{0:?} is not a MIME type (expected `type/subtype`, e.g. `text/plain`)")]
    InvalidMimeType(String),
    /// A text type whose value is not a string.
    #[error("{mime} must be a string (or a list of strings), got {got}")]
    NotText {
        /// The MIME type.
        mime: String,
        /// The JSON type that was given.
        got: &'static str,
    },
    /// A JSON type given as a string that does not parse.
    #[error("{mime} was given as a string that is not valid JSON: {reason}")]
    InvalidJson {
        /// The MIME type.
        mime: String,
        /// The parser's complaint.
        reason: String,
    },
    /// A binary type that is not a base64 string.
    #[error("{mime} must be a base64 string: {reason}")]
    NotBase64 {
        /// The MIME type.
        mime: String,
        /// What is wrong with it.
        reason: String,
    },
}

/// `true` for MIME types whose value is text: `text/*`, `image/svg+xml` and
/// `application/javascript`.
pub fn is_text_mime(mime: &str) -> bool {
    mime.starts_with("text/") || mime == IMAGE_SVG || mime == "application/javascript"
}

/// `true` for `application/json` and every `+json` type (`application/vnd.plotly.v1+json`).
pub fn is_json_mime(mime: &str) -> bool {
    mime == APPLICATION_JSON || mime.ends_with("+json")
}

/// `true` for binary types carried as base64 strings: images other than SVG, audio, video.
pub fn is_binary_mime(mime: &str) -> bool {
    (mime.starts_with("image/") && mime != IMAGE_SVG)
        || mime.starts_with("audio/")
        || mime.starts_with("video/")
}

/// `true` if `mime` has the shape `type/subtype` with no spaces.
pub fn is_valid_mime(mime: &str) -> bool {
    match mime.split_once('/') {
        Some((kind, sub)) => {
            !kind.is_empty()
                && !sub.is_empty()
                && !sub.contains('/')
                && !mime.chars().any(|c| c.is_whitespace() || c.is_control())
        }
        None => false,
    }
}

/// One output in several representations: an ordered map from MIME type to a JSON value.
///
/// # Example
///
/// ```
/// use runtime_core::{MediaBundle, TEXT_PLAIN};
/// use serde_json::json;
///
/// let bundle = MediaBundle::new()
///     .with("text/html", json!("<b>hi</b>"))
///     .with("application/json", json!("{\"n\": 1}"))
///     .validated()?;
/// assert_eq!(bundle.get("application/json"), Some(&json!({"n": 1}))); // parsed
/// assert_eq!(bundle.with_text_fallback().text(), Some("hi")); // derived from the HTML
/// # Ok::<(), runtime_core::MediaError>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct MediaBundle(Map<String, Value>);

/// An object keyed by MIME type; the common types are named with the JSON type their value
/// has (text and base64 strings; `application/json` any JSON), any other key is allowed.
#[cfg(feature = "json-schema")]
impl schemars::JsonSchema for MediaBundle {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "MediaBundle".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        let text = serde_json::json!({ "type": "string" });
        schemars::json_schema!({
            "description": "One output in several representations, keyed by MIME type, in the order a frontend should prefer them.",
            "type": "object",
            "properties": {
                TEXT_PLAIN: text,
                TEXT_MARKDOWN: text,
                TEXT_HTML: text,
                IMAGE_SVG: text,
                IMAGE_PNG: { "type": "string", "description": "base64" },
                "image/jpeg": { "type": "string", "description": "base64" },
                APPLICATION_JSON: true,
            },
            "additionalProperties": true,
        })
    }
}

impl MediaBundle {
    /// An empty bundle.
    pub fn new() -> Self {
        Self::default()
    }

    /// A bundle with only `text/plain`.
    pub fn plain(text: impl Into<String>) -> Self {
        Self::new().with(TEXT_PLAIN, Value::String(text.into()))
    }

    /// A bundle with only `text/markdown`.
    pub fn markdown(markdown: impl Into<String>) -> Self {
        Self::new().with(TEXT_MARKDOWN, Value::String(markdown.into()))
    }

    /// This bundle with `mime` set to `value` (replacing, keeping its first position).
    pub fn with(mut self, mime: impl Into<String>, value: impl Into<Value>) -> Self {
        self.insert(mime, value);
        self
    }

    /// Sets `mime` to `value`.
    pub fn insert(&mut self, mime: impl Into<String>, value: impl Into<Value>) {
        self.0.insert(mime.into(), value.into());
    }

    /// The value for `mime`.
    pub fn get(&self, mime: &str) -> Option<&Value> {
        self.0.get(mime)
    }

    /// The `text/plain` representation, if it is a string.
    pub fn text(&self) -> Option<&str> {
        self.get(TEXT_PLAIN).and_then(Value::as_str)
    }

    /// MIME types in order.
    pub fn mime_types(&self) -> impl Iterator<Item = &str> {
        self.0.keys().map(String::as_str)
    }

    /// Number of representations.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// `true` if there is no representation.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The entries in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.0.iter().map(|(mime, value)| (mime.as_str(), value))
    }

    /// Checks the bundle and returns its normalised form:
    ///
    /// - every key must be a `type/subtype` MIME type, and there must be at least one;
    /// - text types must be strings; a list of strings (nbformat's multi-line form) is joined;
    /// - JSON types accept any JSON value; a string is parsed as JSON;
    /// - binary types (images but SVG, audio, video) must be base64 strings; a `data:` URL
    ///   prefix is stripped;
    /// - every other type is kept exactly as given.
    pub fn validated(self) -> Result<MediaBundle, MediaError> {
        if self.0.is_empty() {
            return Err(MediaError::Empty);
        }
        let mut out = Map::with_capacity(self.0.len());
        for (mime, value) in self.0 {
            let value = validate_entry(&mime, value)?;
            out.insert(mime, value);
        }
        Ok(MediaBundle(out))
    }

    /// This bundle with a `text/plain` representation added when it has none, derived from
    /// markdown, HTML (tags stripped), JSON (pretty-printed) or else the list of MIME types,
    /// so every frontend can show something.
    pub fn with_text_fallback(mut self) -> Self {
        if self.0.contains_key(TEXT_PLAIN) {
            return self;
        }
        let text = self.fallback_text();
        self.0.insert(TEXT_PLAIN.to_owned(), Value::String(text));
        self
    }

    fn fallback_text(&self) -> String {
        if let Some(markdown) = self.get(TEXT_MARKDOWN).and_then(Value::as_str) {
            return markdown.to_owned();
        }
        if let Some(html) = self.get(TEXT_HTML).and_then(Value::as_str) {
            return strip_tags(html);
        }
        if let Some((_, json)) = self.iter().find(|(mime, _)| is_json_mime(mime)) {
            return serde_json::to_string_pretty(json).unwrap_or_default();
        }
        let kinds: Vec<&str> = self.mime_types().collect();
        format!("<{}>", kinds.join(", "))
    }
}

impl From<Map<String, Value>> for MediaBundle {
    fn from(map: Map<String, Value>) -> Self {
        Self(map)
    }
}

fn validate_entry(mime: &str, value: Value) -> Result<Value, MediaError> {
    if !is_valid_mime(mime) {
        return Err(MediaError::InvalidMimeType(mime.to_owned()));
    }
    if is_json_mime(mime) {
        return match value {
            Value::String(text) => {
                serde_json::from_str(&text).map_err(|error| MediaError::InvalidJson {
                    mime: mime.to_owned(),
                    reason: error.to_string(),
                })
            }
            other => Ok(other),
        };
    }
    if is_text_mime(mime) {
        return text_value(mime, value).map(Value::String);
    }
    if is_binary_mime(mime) {
        let text = match value {
            Value::String(text) => text,
            other => {
                return Err(MediaError::NotBase64 {
                    mime: mime.to_owned(),
                    reason: format!("got {}", json_kind(&other)),
                });
            }
        };
        let payload = strip_data_url(&text);
        check_base64(payload).map_err(|reason| MediaError::NotBase64 {
            mime: mime.to_owned(),
            reason,
        })?;
        return Ok(Value::String(payload.to_owned()));
    }
    Ok(value)
}

fn text_value(mime: &str, value: Value) -> Result<String, MediaError> {
    let not_text = |got| MediaError::NotText {
        mime: mime.to_owned(),
        got,
    };
    match value {
        Value::String(text) => Ok(text),
        Value::Array(lines) => lines.into_iter().try_fold(String::new(), |mut text, line| {
            match line {
                Value::String(line) => text.push_str(&line),
                other => return Err(not_text(json_kind(&other))),
            }
            Ok(text)
        }),
        other => Err(not_text(json_kind(&other))),
    }
}

fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn strip_data_url(text: &str) -> &str {
    match text.strip_prefix("data:") {
        Some(rest) => rest
            .split_once(";base64,")
            .map_or(text, |(_, payload)| payload),
        None => text,
    }
}

/// Checks standard base64 (with padding; line breaks allowed, as nbformat writes them).
fn check_base64(text: &str) -> Result<(), String> {
    let mut digits = 0usize;
    let mut padding = 0usize;
    for (at, c) in text.char_indices() {
        match c {
            'A'..='Z' | 'a'..='z' | '0'..='9' | '+' | '/' if padding == 0 => digits += 1,
            '=' => padding += 1,
            '\n' | '\r' => {}
            _ => return Err(format!("unexpected character {c:?} at byte {at}")),
        }
    }
    if digits == 0 {
        return Err("it is empty".to_owned());
    }
    if padding > 2 || !(digits + padding).is_multiple_of(4) {
        return Err(format!(
            "its length ({}) is not a multiple of 4",
            digits + padding
        ));
    }
    Ok(())
}

fn strip_tags(html: &str) -> String {
    let mut text = String::with_capacity(html.len());
    let mut in_tag = false;
    for c in html.chars() {
        match c {
            '<' => in_tag = true,
            '>' if in_tag => in_tag = false,
            c if !in_tag => text.push(c),
            _ => {}
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn one(mime: &str, value: Value) -> Result<MediaBundle, MediaError> {
        MediaBundle::new().with(mime, value).validated()
    }

    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
    #[test]
    fn text_types_must_be_strings_and_lists_of_lines_are_joined() {
        assert_eq!(one("text/plain", json!("hi")).unwrap().text(), Some("hi"));
        let joined = one("text/html", json!(["<p>", "hi</p>"])).unwrap();
        assert_eq!(joined.get("text/html"), Some(&json!("<p>hi</p>")));
        let error = one("text/plain", json!(42)).unwrap_err();
        assert_eq!(
            error,
            MediaError::NotText {
                mime: "text/plain".into(),
                got: "a number"
            }
        );
        assert!(error.to_string().contains("text/plain must be a string"));
        assert!(one("image/svg+xml", json!({"svg": 1})).is_err());
        assert!(one("text/plain", json!(["a", 1])).is_err());
    }

    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
    #[test]
    fn json_types_accept_json_and_parse_json_strings() {
        let plotly = "application/vnd.plotly.v1+json";
        assert_eq!(
            one(plotly, json!({"a": [1]})).unwrap().get(plotly),
            Some(&json!({"a": [1]}))
        );
        let parsed = one("application/json", json!("[1, 2]")).unwrap();
        assert_eq!(parsed.get("application/json"), Some(&json!([1, 2])));
        let error = one("application/json", json!("{nope")).unwrap_err();
        assert!(matches!(error, MediaError::InvalidJson { .. }), "{error}");
    }

    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
    #[test]
    fn images_must_be_base64_strings() {
        assert!(one("image/png", json!("iVBORw0KGgo=")).is_ok());
        assert!(one("image/png", json!("iVBO\nRw0KGgo=")).is_ok());
        let stripped = one("image/png", json!("data:image/png;base64,iVBORw0KGgo=")).unwrap();
        assert_eq!(stripped.get("image/png"), Some(&json!("iVBORw0KGgo=")));
        for bad in [
            json!("not base64!"),
            json!("abc"),
            json!(""),
            json!("a=bc"),
            json!([1]),
        ] {
            let error = one("image/jpeg", bad.clone()).unwrap_err();
            assert!(
                matches!(error, MediaError::NotBase64 { .. }),
                "{bad} gave {error}"
            );
        }
    }

    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
    #[test]
    fn unknown_types_are_kept_losslessly_and_order_is_preserved() {
        let value = json!({"deep": [1, {"x": null}], "n": 1.5});
        let bundle = MediaBundle::new()
            .with("application/x-custom", value.clone())
            .with("text/plain", json!("t"))
            .with("application/vnd.foo", json!(7))
            .validated()
            .unwrap();
        assert_eq!(bundle.get("application/x-custom"), Some(&value));
        let order: Vec<&str> = bundle.mime_types().collect();
        assert_eq!(
            order,
            ["application/x-custom", "text/plain", "application/vnd.foo"]
        );
        let wire = serde_json::to_string(&bundle).unwrap();
        assert_eq!(serde_json::from_str::<MediaBundle>(&wire).unwrap(), bundle);
    }

    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
    #[test]
    fn bad_keys_and_empty_bundles_are_refused() {
        assert_eq!(MediaBundle::new().validated(), Err(MediaError::Empty));
        for bad in ["plain", "text/", "/x", "text/pl ain", "a/b/c"] {
            assert_eq!(
                one(bad, json!("x")),
                Err(MediaError::InvalidMimeType(bad.into()))
            );
        }
    }

    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
    #[test]
    fn mime_guards_classify_types() {
        assert!(is_text_mime("text/csv") && is_text_mime(IMAGE_SVG));
        assert!(!is_text_mime("image/png") && is_binary_mime("image/png"));
        assert!(is_json_mime("application/geo+json") && !is_json_mime("application/jsonx"));
        assert!(is_binary_mime("audio/wav") && !is_binary_mime(IMAGE_SVG));
    }

    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
    #[test]
    fn text_fallback_is_derived_from_the_richest_readable_form() {
        let from_md = MediaBundle::markdown("# T").with_text_fallback();
        assert_eq!(from_md.text(), Some("# T"));
        let from_json = MediaBundle::new().with("application/json", json!({"a": 1}));
        assert_eq!(
            from_json.with_text_fallback().text(),
            Some("{\n  \"a\": 1\n}")
        );
        let opaque = MediaBundle::new()
            .with("image/png", json!("AAAA"))
            .with_text_fallback();
        assert_eq!(opaque.text(), Some("<image/png>"));
        let kept = MediaBundle::plain("mine").with("text/html", json!("<i>x</i>"));
        assert_eq!(kept.with_text_fallback().text(), Some("mine"));
    }
}
