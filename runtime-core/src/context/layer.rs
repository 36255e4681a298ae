//! Output layers: what a handler combinator sees of the outputs passing through it.

use serde_json::Value;

use crate::maybe_send::{MaybeSend, MaybeSync};
use crate::schema::{MediaBundle, StreamName, is_binary_mime};

/// The kind of an output on its way to the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputType {
    /// Text on stdout.
    Stdout,
    /// Text on stderr.
    Stderr,
    /// A rich display.
    Display,
    /// An update of an earlier display.
    UpdateDisplay,
    /// The execution's result.
    Result,
    /// An error output.
    Error,
    /// A new markdown output.
    Markdown,
    /// Text appended to a markdown output.
    AppendMarkdown,
    /// A clear of the execution's outputs.
    Clear,
}

/// Watches, and may rewrite the text of, every output a handler writes through a context
/// made with [`ExecutionContext::with_layer`](crate::ExecutionContext::with_layer).
///
/// Combinators use it: [`Fallback`](crate::handler::Fallback) notes whether its primary
/// wrote anything, [`Redact`](crate::handler::Redact) masks secrets.
///
/// ```
/// use std::sync::atomic::{AtomicUsize, Ordering};
/// use runtime_core::{OutputType, OutputLayer};
///
/// /// Counts outputs and shouts.
/// #[derive(Default)]
/// struct Loud(AtomicUsize);
///
/// impl OutputLayer for Loud {
///     fn on_output(&self, _kind: OutputType) {
///         self.0.fetch_add(1, Ordering::Relaxed);
///     }
///     fn rewrite(&self, text: &mut String) {
///         *text = text.to_uppercase();
///     }
/// }
/// ```
pub trait OutputLayer: MaybeSend + MaybeSync {
    /// Called once per output, before any of its text is rewritten.
    fn on_output(&self, kind: OutputType) {
        let _ = kind;
    }

    /// May rewrite one piece of an output's text: stream text, markdown, an error's name,
    /// message and traceback lines, every string and object key inside the text and JSON
    /// entries of a media bundle (binary entries such as images are left alone) and their
    /// MIME types, display metadata and display ids, and what the handler
    /// [annotates](crate::ExecutionContext::annotate).
    fn rewrite(&self, text: &mut String) {
        let _ = text;
    }

    /// Rewrites a piece of stream text. A layer may keep the end of it back (a secret could
    /// be split across writes), and give it back through [`release`](Self::release). By
    /// default the piece is [rewritten](Self::rewrite) whole.
    fn rewrite_stream(&self, stream: StreamName, text: &mut String) {
        let _ = stream;
        self.rewrite(text);
    }

    /// Gives back, rewritten, the stream text this layer kept back. The context calls it
    /// before any output that is not stream text, and
    /// [`ExecutionContext::release_held`](crate::ExecutionContext::release_held) when the
    /// handler returns.
    fn release(&self, stream: StreamName) -> Option<String> {
        let _ = stream;
        None
    }
}

/// Applies `rewrite` to every string of a bundle's text and JSON entries.
pub(crate) fn rewrite_bundle(bundle: MediaBundle, rewrite: &dyn Fn(&mut String)) -> MediaBundle {
    let mut rewritten = MediaBundle::new();
    for (mime, value) in bundle.iter() {
        let mut value = value.clone();
        if !is_binary_mime(mime) {
            rewrite_json(&mut value, rewrite);
        }
        let mut mime = mime.to_owned();
        rewrite(&mut mime);
        rewritten.insert(mime, value);
    }
    rewritten
}

/// Applies `rewrite` to every key and string of a JSON object.
pub(crate) fn rewrite_map(
    map: serde_json::Map<String, Value>,
    rewrite: &dyn Fn(&mut String),
) -> serde_json::Map<String, Value> {
    let mut value = Value::Object(map);
    rewrite_json(&mut value, rewrite);
    match value {
        Value::Object(map) => map,
        _ => serde_json::Map::new(),
    }
}

pub(crate) fn rewrite_json(value: &mut Value, rewrite: &dyn Fn(&mut String)) {
    match value {
        Value::String(text) => rewrite(text),
        Value::Array(items) => items
            .iter_mut()
            .for_each(|item| rewrite_json(item, rewrite)),
        Value::Object(map) => {
            // Keys can hold secrets too; rebuilding keeps the order (preserve_order).
            for (mut key, mut item) in std::mem::take(map) {
                rewrite(&mut key);
                rewrite_json(&mut item, rewrite);
                map.insert(key, item);
            }
        }
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}
