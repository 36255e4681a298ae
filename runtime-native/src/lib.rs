//! The tokio adapter for runtime agents.
pub mod sqlite;
pub use sqlite::{Durability, SqliteError, SqliteOptions, SqliteStore};
