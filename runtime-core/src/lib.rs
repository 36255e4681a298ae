//! runtime-core
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod clock;
pub mod maybe_send;
pub mod schema;

pub use clock::{Clock, ManualClock, Timestamp};
pub use maybe_send::{BoxFuture, BoxStream, MaybeSend, MaybeSync};
pub use schema::*;
pub mod state;
pub use state::*;
