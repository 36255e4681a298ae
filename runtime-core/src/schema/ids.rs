//! Identifiers: opaque strings on the wire, distinct types in Rust.
//!
//! Ids made by this library are uuid v4, but any non-empty string from another client is
//! accepted, so apps can keep their own id schemes.

use std::fmt;

use serde::{Deserialize, Serialize};

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        /// Decoding refuses an empty id, so an event carrying one becomes malformed.
        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let id = String::deserialize(deserializer)?;
                if id.is_empty() {
                    return Err(serde::de::Error::custom(concat!(
                        "an empty ",
                        stringify!($name),
                        " (ids are non-empty strings)"
                    )));
                }
                Ok(Self(id))
            }
        }

        impl $name {
            /// A fresh random id (uuid v4).
            pub fn random() -> Self {
                Self(uuid::Uuid::new_v4().to_string())
            }

            /// The id as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl From<String> for $name {
            fn from(id: String) -> Self {
                Self(id)
            }
        }

        impl From<&str> for $name {
            fn from(id: &str) -> Self {
                Self(id.to_owned())
            }
        }
    };
}

id_type!(
    /// Names a cell of the notebook.
    CellId
);
id_type!(
    /// Names one execution request (one entry of the execution queue).
    QueueId
);
id_type!(
    /// Names one runtime session: one run of one agent, from start to end.
    SessionId
);
id_type!(
    /// Names one output, so later events can append to it.
    OutputId
);
id_type!(
    /// Names a display that later `DisplayUpdated` events replace, wherever it is shown.
    DisplayId
);
id_type!(
    /// Names one committed batch, so a store recognises a retry of a batch it already
    /// committed and does not commit it twice.
    BatchId
);
