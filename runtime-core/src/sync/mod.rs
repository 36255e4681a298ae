//! The sync protocol's frames: what a client (an agent, a UI) and a hub say to each other
//! over a WebSocket, one JSON object per text frame. `docs/sync-protocol.md` describes the
//! conversation; every example there decodes into these types (a test checks).

mod client;

use std::sync::Arc;

pub use client::{
    ConnectionState, ConnectionTask, ConnectionWatch, HubOptions, HubStore, HubUrlError, Socket,
    StatePublisher, Transport, hub_url,
};
use serde::{Deserialize, Serialize};

use crate::schema::{BatchId, Event};
use crate::state::{Seq, Snapshot, SnapshotKind};
use crate::store::{LogEntry, NotebookInfo, StoreError};

/// The protocol version this library speaks.
pub const PROTOCOL: u32 = 1;

/// The most entries a hub sends in one page. A hub keeps at most two pages of a
/// subscription on their way; the client asks for another with [`ClientFrame::More`]
/// each time it took one.
pub const PAGE_ENTRIES: usize = 256;

/// The largest snapshot a hub sends (its encoded state, in bytes), well inside a
/// WebSocket client's default frame limit; a larger one is not sent and the client folds the
/// log instead.
pub const MAX_SNAPSHOT_BYTES: usize = 8 * 1024 * 1024;

/// A bearer token. `Debug` never shows it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct BearerToken(String);

impl BearerToken {
    /// A token.
    pub fn new(token: impl Into<String>) -> Self {
        Self(token.into())
    }

    /// The secret itself, for the one place that checks or sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BearerToken(***)")
    }
}

/// What an authenticated identity may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Role {
    /// A runtime agent: may start runtime sessions, and do what a user does.
    Agent,
    /// A person or a UI: edits cells, requests and cancels executions.
    User,
}

/// A frame from a client to a hub.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(
    tag = "type",
    rename_all = "camelCase",
    rename_all_fields = "camelCase"
)]
pub enum ClientFrame {
    /// The first frame: who the client is. Nothing else is answered before it.
    Hello {
        /// The client's bearer token.
        token: BearerToken,
        /// The protocol version the client speaks.
        protocol: u32,
    },
    /// Start receiving notebook `notebook`'s entries from sequence number `from` on.
    Subscribe {
        /// The client's number for this subscription.
        sub: u64,
        /// The notebook.
        notebook: String,
        /// The first sequence number wanted.
        from: Seq,
    },
    /// The client took the last page of `sub`: send the next one.
    More {
        /// The subscription.
        sub: u64,
    },
    /// Stop a subscription.
    Unsubscribe {
        /// The subscription.
        sub: u64,
    },
    /// Append a batch to a notebook. A batch id the notebook already holds gets the
    /// original sequence number back, never a second copy.
    Commit {
        /// The client's number for this request.
        req: u64,
        /// The notebook.
        notebook: String,
        /// The batch's id.
        batch: BatchId,
        /// Its events.
        events: Vec<Arc<Event>>,
    },
    /// Ask for a notebook's head: the sequence number of its last event.
    Head {
        /// The client's number for this request.
        req: u64,
        /// The notebook.
        notebook: String,
    },
    /// List the notebooks.
    List {
        /// The client's number for this request.
        req: u64,
    },
    /// Create a notebook titled `title`, with id `notebook` or one the hub makes up. An id
    /// that already has events is refused.
    Create {
        /// The client's number for this request.
        req: u64,
        /// The new notebook's id; none for a new random one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        notebook: Option<String>,
        /// Its title (empty: untitled).
        #[serde(default)]
        title: String,
    },
    /// Ask for the latest snapshot of a notebook's state, to subscribe after it instead
    /// of from sequence 1. The hub makes snapshots itself; clients cannot store them.
    Snapshot {
        /// The client's number for this request.
        req: u64,
        /// The notebook.
        notebook: String,
        /// Lean (an agent's) or full (a UI's).
        kind: SnapshotKind,
    },
    /// A heartbeat; the hub answers [`HubFrame::Pong`].
    Ping {
        /// The client's number for this request.
        req: u64,
    },
}

/// A frame from a hub to a client.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(
    tag = "type",
    rename_all = "camelCase",
    rename_all_fields = "camelCase"
)]
pub enum HubFrame {
    /// The answer to `hello`: the authenticated identity.
    Welcome {
        /// Who the token belongs to.
        identity: String,
        /// What it may do.
        role: Role,
        /// The protocol version the hub speaks.
        protocol: u32,
    },
    /// Up to [`PAGE_ENTRIES`] entries of a subscription, in order.
    Entries {
        /// The subscription.
        sub: u64,
        /// The entries.
        entries: Vec<LogEntry>,
    },
    /// A commit's sequence number.
    Committed {
        /// The request.
        req: u64,
        /// The batch's first sequence number.
        seq: Seq,
    },
    /// The answer to `head`.
    Head {
        /// The request.
        req: u64,
        /// The sequence number of the notebook's last event (0 if it has none).
        seq: Seq,
    },
    /// The answer to `create`: the new notebook's id.
    Created {
        /// The request.
        req: u64,
        /// The notebook.
        notebook: String,
    },
    /// The answer to `list`.
    Notebooks {
        /// The request.
        req: u64,
        /// The notebooks.
        notebooks: Vec<NotebookInfo>,
    },
    /// The answer to `snapshot`: none when the notebook is short (fold it all) or the
    /// snapshot would be larger than [`MAX_SNAPSHOT_BYTES`].
    Snapshot {
        /// The request.
        req: u64,
        /// The snapshot.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        snapshot: Option<Snapshot>,
    },
    /// The answer to `ping`.
    Pong {
        /// The request.
        req: u64,
    },
    /// A request, a subscription or the connection failed.
    Error {
        /// The request that failed, if one did.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        req: Option<u64>,
        /// The subscription that ended, if one did.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        sub: Option<u64>,
        /// What kind of failure.
        code: ErrorCode,
        /// What happened, for people. Never holds a token.
        message: String,
    },
}

/// What kind of failure a [`HubFrame::Error`] reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// No valid `hello` (a wrong or revoked token): the hub closes the connection.
    Unauthorized,
    /// The identity may not do this (impersonation, a user starting a runtime session).
    Forbidden,
    /// A frame that is not a valid client frame; the connection goes on.
    BadFrame,
    /// The store refused the batch as invalid.
    Invalid,
    /// The store is unavailable for now: retry.
    Unavailable,
    /// The store failed for good.
    Backend,
    /// The store is closed.
    Closed,
}

impl ErrorCode {
    /// The code for a store's error.
    pub fn of(error: &StoreError) -> Self {
        match error {
            StoreError::EmptyBatch | StoreError::Invalid(_) => ErrorCode::Invalid,
            StoreError::Unavailable(_) => ErrorCode::Unavailable,
            StoreError::Backend(_) => ErrorCode::Backend,
            StoreError::Closed => ErrorCode::Closed,
        }
    }

    /// The code and message a hub sends for a store's error: the message is the error's
    /// own words, without the prefix its `Display` adds, so the client's
    /// [`into_store_error`](Self::into_store_error) makes the same error again (an empty
    /// batch comes back as [`StoreError::Invalid`] saying so).
    ///
    /// ```
    /// use runtime_core::StoreError;
    /// use runtime_core::sync::ErrorCode;
    ///
    /// let sent = StoreError::Unavailable("the database is restarting".into());
    /// let (code, message) = ErrorCode::split(&sent);
    /// assert_eq!(code.into_store_error(message), sent);
    /// ```
    pub fn split(error: &StoreError) -> (Self, String) {
        let message = match error {
            StoreError::Invalid(message)
            | StoreError::Unavailable(message)
            | StoreError::Backend(message) => message.clone(),
            StoreError::EmptyBatch | StoreError::Closed => error.to_string(),
        };
        (Self::of(error), message)
    }

    /// The store error a client reports for this code and message.
    pub fn into_store_error(self, message: String) -> StoreError {
        match self {
            ErrorCode::Unavailable => StoreError::Unavailable(message),
            ErrorCode::Closed => StoreError::Closed,
            ErrorCode::Invalid | ErrorCode::BadFrame => StoreError::Invalid(message),
            ErrorCode::Unauthorized | ErrorCode::Forbidden | ErrorCode::Backend => {
                StoreError::Backend(message)
            }
        }
    }
}
