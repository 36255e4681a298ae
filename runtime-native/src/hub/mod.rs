//! [`HubStore`]: a notebook's log on a hub, over WebSocket (`docs/sync-protocol.md`).
//!
//! One connection task per [`HubStore::connect`] serves every notebook opened through it.
//! It connects outbound only, and reconnects on its own with exponential backoff and full
//! jitter: subscriptions resume after the last entry they delivered, and commits that had
//! no answer are sent again with their batch ids (the hub's store returns the original
//! sequence number for a batch it already holds). So across any number of disconnects no
//! entry is lost, duplicated or reordered, and no batch lands twice.

mod command;
mod connection;
mod reader;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use runtime_core::store::check_notebook_id;
use runtime_core::sync::BearerToken;
use runtime_core::{
    Batch, Catalog, NotebookInfo, Seq, Snapshot, SnapshotKind, Store, StoreError, Subscription,
};
use tokio::sync::{mpsc, oneshot, watch};

use command::{Command, Query};
use connection::Connection;
use reader::Reader;

/// How a [`HubStore`] connects and retries.
#[derive(Debug, Clone)]
pub struct HubOptions {
    /// The first reconnect delay's cap; each attempt doubles it, up to `backoff_cap`. The
    /// delay is drawn uniformly below the cap (full jitter), so clients cut off together do
    /// not come back together.
    pub backoff_base: Duration,
    /// The longest delay between attempts.
    pub backoff_cap: Duration,
    /// The most batches waiting for an answer (or for the connection); a commit beyond
    /// that fails with a retriable [`StoreError::Unavailable`].
    pub commit_buffer: usize,
    /// How often the connection is checked with a ping; with no frame from the hub for
    /// three of these, it is taken as dead and made again.
    pub heartbeat: Duration,
    /// For `wss://`: a PEM file of certificates to trust beside Mozilla's roots (a
    /// private CA, a self-signed hub).
    pub ca_file: Option<std::path::PathBuf>,
}

impl Default for HubOptions {
    fn default() -> Self {
        HubOptions {
            backoff_base: Duration::from_millis(100),
            backoff_cap: Duration::from_secs(5),
            commit_buffer: 1024,
            heartbeat: Duration::from_secs(10),
            ca_file: None,
        }
    }
}

/// The state of a [`HubStore`]'s connection, for a UI to show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectionState {
    /// The first attempt is under way.
    Connecting,
    /// Connected and authenticated.
    Connected {
        /// Who the hub says the token belongs to.
        identity: String,
    },
    /// The connection was lost (or not made); the next attempt comes after `retry_in`.
    Reconnecting {
        /// Attempts since the last success.
        attempt: u32,
        /// The delay before the next one.
        retry_in: Duration,
        /// What went wrong.
        error: String,
    },
    /// The hub refused the token: nothing is retried; every call fails.
    Failed(String),
}

/// A notebook on a hub, as a [`Store`] (and the hub's notebooks, as a [`Catalog`]).
///
/// ```no_run
/// use runtime_core::{Store, sync::BearerToken};
/// use runtime_native::hub::{HubOptions, HubStore};
///
/// # async fn f() -> Result<(), Box<dyn std::error::Error>> {
/// let store = HubStore::connect(
///     "ws://127.0.0.1:7878",
///     BearerToken::new("a-long-random-secret"),
///     "demo",
///     HubOptions::default(),
/// )?;
/// let mut state = store.connection_state();
/// state.wait_for(|state| matches!(state, runtime_native::hub::ConnectionState::Connected { .. })).await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct HubStore {
    client: Arc<Client>,
    notebook: String,
}

struct Client {
    commands: mpsc::Sender<Command>,
    state: watch::Receiver<ConnectionState>,
    next_sub: AtomicU64,
    url: String,
}

/// Why [`HubStore::connect`] refused its arguments.
#[derive(Debug, thiserror::Error)]
pub enum HubUrlError {
    /// Not `ws://host:port[/path]` or `wss://…`.
    #[error("expected a hub URL like ws://host:7878 or wss://hub.example")]
    Invalid,
    /// A URL with `user:password@` in it: it would reach logs and `Debug` output. The
    /// token goes in `hello`, never in the URL.
    #[error("the hub URL holds credentials (user:password@); pass the token separately")]
    CredentialsInUrl,
    /// The TLS settings for `wss://` could not be made.
    #[error("TLS settings: {0}")]
    Tls(String),
    /// Not inside a tokio runtime.
    #[error("HubStore::connect must be called inside a tokio runtime")]
    NoRuntime,
    /// A bad notebook id.
    #[error(transparent)]
    Notebook(#[from] StoreError),
}

impl HubStore {
    /// Notebook `notebook` on the hub at `url` (`ws://host:port`; `/sync` is added when the
    /// URL has no path). Connects in the background, inside the current tokio runtime;
    /// calls made before the connection is up wait for it.
    pub fn connect(
        url: &str,
        token: BearerToken,
        notebook: &str,
        options: HubOptions,
    ) -> Result<HubStore, HubUrlError> {
        check_notebook_id(notebook)?;
        let (scheme, rest) = match (url.strip_prefix("ws://"), url.strip_prefix("wss://")) {
            (Some(rest), _) => ("ws", rest),
            (_, Some(rest)) => ("wss", rest),
            _ => return Err(HubUrlError::Invalid),
        };
        let (authority, path) = match rest.find('/') {
            Some(slash) => (&rest[..slash], &rest[slash..]),
            None => (rest, ""),
        };
        if authority.is_empty() || authority.contains(char::is_whitespace) {
            return Err(HubUrlError::Invalid);
        }
        if authority.contains('@') {
            return Err(HubUrlError::CredentialsInUrl);
        }
        let path = if path.is_empty() || path == "/" {
            "/sync"
        } else {
            path
        };
        let url = format!("{scheme}://{authority}{path}");
        let tls = match scheme {
            "wss" => {
                let roots = match &options.ca_file {
                    Some(path) => crate::tls::read_certificates(path)
                        .map_err(|error| HubUrlError::Tls(error.to_string()))?,
                    None => Vec::new(),
                };
                Some(crate::tls::client_config(&roots, &[]).map_err(HubUrlError::Tls)?)
            }
            _ => None,
        };
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| HubUrlError::NoRuntime)?;
        let (commands, inbox) = mpsc::channel(64);
        let (state_tx, state) = watch::channel(ConnectionState::Connecting);
        let task = Connection::new(url.clone(), tls, token, options, state_tx);
        runtime.spawn(task.run(inbox));
        Ok(HubStore {
            client: Arc::new(Client {
                commands,
                state,
                next_sub: AtomicU64::new(1),
                url,
            }),
            notebook: notebook.to_owned(),
        })
    }

    /// Another notebook on the same hub, over the same connection.
    pub fn notebook(&self, notebook: &str) -> Result<HubStore, StoreError> {
        check_notebook_id(notebook)?;
        Ok(HubStore {
            client: self.client.clone(),
            notebook: notebook.to_owned(),
        })
    }

    /// The notebook this store serves.
    pub fn notebook_id(&self) -> &str {
        &self.notebook
    }

    /// The connection's state, to watch.
    pub fn connection_state(&self) -> watch::Receiver<ConnectionState> {
        self.client.state.clone()
    }

    async fn send(&self, command: Command) -> Result<(), StoreError> {
        self.client
            .commands
            .send(command)
            .await
            .map_err(|_| StoreError::Closed)
    }
}

impl std::fmt::Debug for HubStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HubStore")
            .field("url", &self.client.url)
            .field("notebook", &self.notebook)
            .finish()
    }
}

#[async_trait::async_trait]
impl Store for HubStore {
    async fn commit_batch(&self, batch: &Batch) -> Result<Seq, StoreError> {
        if batch.events.is_empty() {
            return Err(StoreError::EmptyBatch);
        }
        let (reply, answer) = oneshot::channel();
        self.send(Command::Commit {
            notebook: self.notebook.clone(),
            batch: batch.clone(),
            reply,
        })
        .await?;
        answer.await.map_err(|_| StoreError::Closed)?
    }

    async fn head(&self) -> Result<Seq, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::Query(Query::Head {
            notebook: self.notebook.clone(),
            reply,
        }))
        .await?;
        answer.await.map_err(|_| StoreError::Closed)?
    }

    /// The hub's latest snapshot, which the hub makes itself. (Saving one is not asked of
    /// the hub: clients cannot store snapshots, so [`Store::save_snapshot`] keeps nothing.)
    async fn latest_snapshot(&self, kind: SnapshotKind) -> Result<Option<Snapshot>, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::Query(Query::Snapshot {
            notebook: self.notebook.clone(),
            kind,
            reply,
        }))
        .await?;
        answer.await.map_err(|_| StoreError::Closed)?
    }

    fn subscribe(&self, from: Seq) -> Subscription {
        let sub = self.client.next_sub.fetch_add(1, Ordering::Relaxed);
        // The hub sends at most two pages ahead of this reader's `more`s; after a
        // reconnect, two more may come before the old connection's pages are read.
        let (pages, received) = mpsc::channel(4);
        let subscribe = Command::Subscribe {
            sub,
            notebook: self.notebook.clone(),
            from: from.max(1),
            pages,
        };
        let reader = Reader::new(sub, self.client.commands.clone(), received, subscribe);
        Box::pin(futures::stream::unfold(reader, Reader::next))
    }
}

#[async_trait::async_trait]
impl Catalog for HubStore {
    async fn notebooks(&self) -> Result<Vec<NotebookInfo>, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::Query(Query::List(reply))).await?;
        answer.await.map_err(|_| StoreError::Closed)?
    }

    fn open(&self, id: &str) -> Result<Arc<dyn Store>, StoreError> {
        Ok(Arc::new(self.notebook(id)?))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hub_urls_are_checked_and_never_carry_credentials() {
        let connect =
            |url: &str| HubStore::connect(url, BearerToken::new("t"), "nb", HubOptions::default());
        assert!(matches!(connect("http://h:1"), Err(HubUrlError::Invalid)));
        assert!(matches!(connect("ws://"), Err(HubUrlError::Invalid)));
        let refused = connect("ws://agent:hunter2@hub:7878").unwrap_err();
        assert!(matches!(refused, HubUrlError::CredentialsInUrl));
        assert!(!refused.to_string().contains("hunter2"), "{refused}");
        let store = connect("ws://127.0.0.1:9").unwrap();
        assert_eq!(store.client.url, "ws://127.0.0.1:9/sync");
        assert!(!format!("{store:?}").contains("BearerToken"));
    }
}
