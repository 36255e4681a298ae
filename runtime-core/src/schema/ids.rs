//! Identifiers: opaque strings on the wire, distinct types in Rust.
//!
//! Ids made by this library are uuid v4, but any non-empty string from another client is
//! accepted, so apps can keep their own id schemes.
//!
//! Making an id costs no system call: each process draws one random 128-bit seed from the
//! operating system (or the browser's `crypto`), and each id mixes that seed with a counter
//! (SplitMix64). Ids of one process never repeat; ids of two processes collide only if
//! their seeds do. Ids are names, not secrets: nothing may rely on them being unguessable.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use serde::{Deserialize, Serialize};

/// Reads an id's text straight into its shared form: one allocation, none for a borrowed
/// string's intermediate copy.
struct IdVisitor;

impl serde::de::Visitor<'_> for IdVisitor {
    type Value = Arc<str>;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("an id (a string)")
    }

    fn visit_str<E: serde::de::Error>(self, id: &str) -> Result<Arc<str>, E> {
        Ok(recently_decoded(id))
    }
}

/// How many recently decoded ids each thread remembers, and the longest it remembers.
const RECENT_IDS: usize = 8;
const RECENT_ID_MAX_LEN: usize = 64;

std::thread_local! {
    /// Ids this thread decoded lately. Consecutive events repeat them (a session's, an
    /// execution's, an output's), so a decoded id shares the text of an equal recent one
    /// instead of allocating its own: a log decodes with a third of the allocations.
    static RECENT: std::cell::RefCell<([Option<Arc<str>>; RECENT_IDS], usize)> =
        const { std::cell::RefCell::new(([const { None }; RECENT_IDS], 0)) };
}

/// `id` as shared text: an equal recently decoded id's, or a new one it remembers.
fn recently_decoded(id: &str) -> Arc<str> {
    if id.len() > RECENT_ID_MAX_LEN {
        return id.into();
    }
    let remembered = RECENT.try_with(|recent| {
        let Ok(mut recent) = recent.try_borrow_mut() else {
            return id.into();
        };
        let (ids, next) = &mut *recent;
        if let Some(known) = ids.iter().flatten().find(|known| ***known == *id) {
            return known.clone();
        }
        let fresh: Arc<str> = id.into();
        ids[*next] = Some(fresh.clone());
        *next = (*next + 1) % RECENT_IDS;
        fresh
    });
    remembered.unwrap_or_else(|_| id.into())
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        ///
        /// A clone shares the text (ids are copied into indices and states often).
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
        #[serde(transparent)]
        pub struct $name(Arc<str>);

        /// Decoding refuses an empty id, so an event carrying one becomes malformed.
        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let id = deserializer.deserialize_str(IdVisitor)?;
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

        /// A non-empty string, inlined where it is used.
        #[cfg(feature = "json-schema")]
        impl schemars::JsonSchema for $name {
            fn schema_name() -> std::borrow::Cow<'static, str> {
                stringify!($name).into()
            }

            fn inline_schema() -> bool {
                true
            }

            fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
                schemars::json_schema!({ "type": "string", "minLength": 1 })
            }
        }

        impl $name {
            /// A fresh id, never made before in this process (uuid v4 form, from a per-process
            /// random seed and a counter: no system call per id; ids are names, not secrets).
            pub fn random() -> Self {
                Self(fresh_uuid().into())
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
                Self(id.into())
            }
        }

        impl From<&str> for $name {
            fn from(id: &str) -> Self {
                Self(id.into())
            }
        }

        /// Looks an id up by its text (it hashes and compares as its text).
        impl std::borrow::Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
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
    /// Names one input request of a running execution, so its reply can name it.
    InputId
);
id_type!(
    /// Names one committed batch, so a store recognises a retry of a batch it already
    /// committed and does not commit it twice.
    BatchId
);

impl BatchId {
    /// A fresh batch id that sorts after every earlier one of this process: the process's
    /// random seed, then a counter (`<32 hex digits>-<16 hex digits>`). Stores that index
    /// batch ids then insert one writer's ids side by side instead of all over the index.
    pub fn next() -> Self {
        let (high, low) = seed();
        let n = BATCH_COUNTER.fetch_add(1, Ordering::Relaxed);
        Self(format!("{high:016x}{low:016x}-{n:016x}").into())
    }
}

static BATCH_COUNTER: AtomicU64 = AtomicU64::new(0);

/// This process's random seed, drawn once.
fn seed() -> (u64, u64) {
    static SEED: OnceLock<(u64, u64)> = OnceLock::new();
    *SEED.get_or_init(|| uuid::Uuid::new_v4().as_u64_pair())
}

/// The next id of this process, in uuid v4 form.
fn fresh_uuid() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let (high, low) = seed();
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    // SplitMix64 is a bijection: distinct counters give distinct first halves.
    let first = splitmix64(high ^ n);
    let second = splitmix64(low.wrapping_add(n.wrapping_mul(0x9E37_79B9_7F4A_7C15)));
    let mut bytes = [0_u8; 16];
    bytes[..8].copy_from_slice(&first.to_le_bytes());
    bytes[8..].copy_from_slice(&second.to_le_bytes());
    let uuid = uuid::Builder::from_random_bytes(bytes).into_uuid();
    let mut text = [0_u8; uuid::fmt::Hyphenated::LENGTH];
    uuid.hyphenated().encode_lower(&mut text).to_owned()
}

fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
    #[test]
    fn decoded_ids_share_the_text_of_equal_recent_ones_and_stay_their_own_values() {
        let decode = |json: &str| serde_json::from_str::<QueueId>(json).unwrap();
        let (first, again) = (decode(r#""q-1""#), decode(r#""q-1""#));
        assert!(Arc::ptr_eq(&first.0, &again.0), "one allocation for both");
        let other = decode(r#""q-2""#);
        assert_eq!((first.as_str(), other.as_str()), ("q-1", "q-2"));
        let long = "x".repeat(RECENT_ID_MAX_LEN + 1);
        let (a, b) = (decode(&format!("{long:?}")), decode(&format!("{long:?}")));
        assert_eq!(a, b);
        assert!(!Arc::ptr_eq(&a.0, &b.0), "long ids are not remembered");
        for n in 0..100 {
            assert_eq!(decode(&format!(r#""id-{n}""#)).as_str(), format!("id-{n}"));
        }
        assert_eq!(decode(r#""q-1""#), first);
    }

    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
    #[test]
    fn fresh_ids_are_uuid_v4_and_never_repeat() {
        let ids: std::collections::HashSet<Arc<str>> =
            (0..100_000).map(|_| QueueId::random().0).collect();
        assert_eq!(ids.len(), 100_000);
        for id in ids.iter().take(100) {
            let parsed = uuid::Uuid::parse_str(id).unwrap();
            assert_eq!(parsed.get_version_num(), 4, "{id}");
        }
    }
}
