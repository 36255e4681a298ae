//! [`HubStore`]: a notebook's log on a hub, over WebSocket (`docs/sync-protocol.md`), for
//! every platform. The adapters give it a [`Transport`] (tokio-tungstenite natively, the
//! page's `WebSocket` in a browser) and a [`Clock`], and drive the [`ConnectionTask`] it
//! returns; the protocol is all here.
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
mod transport;
mod watch;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures::SinkExt;
use futures::channel::{mpsc, oneshot};

use crate::clock::Clock;
use crate::maybe_send::BoxFuture;
use crate::state::{Seq, Snapshot, SnapshotKind};
use crate::store::{
    Batch, Catalog, NotebookInfo, Store, StoreError, Subscription, check_notebook_id,
};
use crate::sync::BearerToken;
use command::{Command, Query};
use connection::Connection;
use reader::Reader;

pub use transport::{Socket, Transport};
pub use watch::{ConnectionState, ConnectionWatch, StatePublisher};

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
}

impl Default for HubOptions {
    fn default() -> Self {
        HubOptions {
            backoff_base: Duration::from_millis(100),
            backoff_cap: Duration::from_secs(5),
            commit_buffer: 1024,
            heartbeat: Duration::from_secs(10),
        }
    }
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
    /// A bad notebook id.
    #[error(transparent)]
    Notebook(#[from] StoreError),
}

/// A hub URL, checked: `ws://` or `wss://`, no credentials, `/sync` when it has no path.
///
/// ```
/// use runtime_core::sync::{HubUrlError, hub_url};
/// assert_eq!(hub_url("ws://127.0.0.1:7878").unwrap(), "ws://127.0.0.1:7878/sync");
/// assert!(matches!(hub_url("ws://me:secret@hub"), Err(HubUrlError::CredentialsInUrl)));
/// ```
pub fn hub_url(url: &str) -> Result<String, HubUrlError> {
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
    Ok(format!("{scheme}://{authority}{path}"))
}

/// The future that runs a [`HubStore`]'s connection: the adapter spawns it (on tokio, or
/// with `spawn_local` in a browser). It ends once every store made from it is dropped.
pub type ConnectionTask = BoxFuture<'static, ()>;

/// A notebook on a hub, as a [`Store`] (and the hub's notebooks, as a [`Catalog`]).
///
/// Made by [`HubStore::connect`] with a platform's transport; the native adapter's
/// `runtime_native::hub::connect` and the browser adapter's `HubStore` class do that for
/// you.
#[derive(Clone)]
pub struct HubStore {
    client: Arc<Client>,
    notebook: String,
}

struct Client {
    commands: mpsc::Sender<Command>,
    state: ConnectionWatch,
    next_sub: AtomicU64,
    url: String,
}

impl HubStore {
    /// Notebook `notebook` on the hub at `url` (see [`hub_url`]), connected through
    /// `transport`, with `clock` for its backoff and heartbeats. Nothing happens until the
    /// returned task runs; calls made before the connection is up wait for it.
    pub fn connect(
        url: &str,
        token: BearerToken,
        notebook: &str,
        options: HubOptions,
        transport: impl Transport,
        clock: impl Clock + 'static,
    ) -> Result<(HubStore, ConnectionTask), HubUrlError> {
        check_notebook_id(notebook)?;
        let url = hub_url(url)?;
        let (commands, inbox) = mpsc::channel(64);
        let (publisher, state) = ConnectionWatch::channel();
        let connection = Connection::new(
            url.clone(),
            Box::new(transport),
            Arc::new(clock),
            token,
            options,
            publisher,
        );
        let store = HubStore {
            client: Arc::new(Client {
                commands,
                state,
                next_sub: AtomicU64::new(1),
                url,
            }),
            notebook: notebook.to_owned(),
        };
        Ok((store, Box::pin(connection.run(inbox))))
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

    /// The hub's URL, as connected to.
    pub fn url(&self) -> &str {
        &self.client.url
    }

    /// The connection's state, to watch.
    pub fn connection_state(&self) -> ConnectionWatch {
        self.client.state.clone()
    }

    /// Asks the connection task without waiting: for a page that is closing, when nothing
    /// can be awaited any more. The batch is sent if the task runs again before the end.
    pub fn commit_without_waiting(&self, batch: Batch) -> Result<(), StoreError> {
        let (reply, _) = oneshot::channel();
        self.client
            .commands
            .clone()
            .try_send(Command::Commit {
                notebook: self.notebook.clone(),
                batch,
                reply,
            })
            .map_err(|_| StoreError::Unavailable("the hub connection is busy".to_owned()))
    }

    async fn ask<T>(
        &self,
        command: impl FnOnce(oneshot::Sender<Result<T, StoreError>>) -> Command,
    ) -> Result<T, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.client
            .commands
            .clone()
            .send(command(reply))
            .await
            .map_err(|_| StoreError::Closed)?;
        answer.await.map_err(|_| StoreError::Closed)?
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

#[cfg_attr(not(target_arch = "wasm32"), async_trait::async_trait)]
#[cfg_attr(target_arch = "wasm32", async_trait::async_trait(?Send))]
impl Store for HubStore {
    async fn commit_batch(&self, batch: &Batch) -> Result<Seq, StoreError> {
        if batch.events.is_empty() {
            return Err(StoreError::EmptyBatch);
        }
        let notebook = self.notebook.clone();
        self.ask(|reply| Command::Commit {
            notebook,
            batch: batch.clone(),
            reply,
        })
        .await
    }

    async fn head(&self) -> Result<Seq, StoreError> {
        let notebook = self.notebook.clone();
        self.ask(|reply| Command::Query(Query::Head { notebook, reply }))
            .await
    }

    /// The hub's latest snapshot, which the hub makes itself. (Saving one is not asked of
    /// the hub: clients cannot store snapshots, so [`Store::save_snapshot`] keeps nothing.)
    async fn latest_snapshot(&self, kind: SnapshotKind) -> Result<Option<Snapshot>, StoreError> {
        let notebook = self.notebook.clone();
        self.ask(|reply| {
            Command::Query(Query::Snapshot {
                notebook,
                kind,
                reply,
            })
        })
        .await
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

#[cfg_attr(not(target_arch = "wasm32"), async_trait::async_trait)]
#[cfg_attr(target_arch = "wasm32", async_trait::async_trait(?Send))]
impl Catalog for HubStore {
    async fn notebooks(&self) -> Result<Vec<NotebookInfo>, StoreError> {
        self.ask(|reply| Command::Query(Query::List(reply))).await
    }

    fn open(&self, id: &str) -> Result<Arc<dyn Store>, StoreError> {
        Ok(Arc::new(self.notebook(id)?))
    }

    /// Asks the hub, which stamps the creation. The id is made here when none is given, so
    /// a creation sent again after a disconnect names the same notebook, and the hub
    /// answers it as done (the notebook's log begins with this creation).
    async fn create(&self, id: Option<&str>, title: &str) -> Result<String, StoreError> {
        let id = id.map_or_else(|| uuid::Uuid::new_v4().to_string(), str::to_owned);
        check_notebook_id(&id)?;
        let (notebook, title) = (Some(id), title.to_owned());
        self.ask(|reply| {
            Command::Query(Query::Create {
                notebook,
                title,
                reply,
            })
        })
        .await
    }
}
