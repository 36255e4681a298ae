//! The event vocabulary, ids and media bundles: everything that goes on the wire.

mod events;
mod ids;
mod media;

pub use events::*;
pub use ids::{BatchId, CellId, DisplayId, InputId, OutputId, QueueId, SessionId};
pub use media::{
    APPLICATION_JSON, IMAGE_PNG, IMAGE_SVG, MediaBundle, MediaError, TEXT_HTML, TEXT_MARKDOWN,
    TEXT_PLAIN, is_binary_mime, is_json_mime, is_text_mime, is_valid_mime,
};
