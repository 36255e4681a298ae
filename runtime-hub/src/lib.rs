//! The hub: serves notebook logs from any store to agents and UIs on other machines, over
//! WebSocket (`docs/sync-protocol.md`), with token identities.
//!
//! The hub holds no notebook logic. It authenticates each connection, refuses a batch whose
//! self-declared identity is not the connection's, and moves log entries between a
//! [`Catalog`] and its clients, one page at a time (a slow client reads at its own pace;
//! nothing queues for it without bound).
//!
//! Mount it in your own axum app, or run the `runtime-hub` binary:
//!
//! ```no_run
//! use std::sync::Arc;
//! use runtime_hub::{Hub, TokensFile};
//!
//! # async fn serve() -> Result<(), Box<dyn std::error::Error>> {
//! let store = runtime_native::SqliteStore::open("notebooks.db", "default")?;
//! let tokens = TokensFile::load("hub-tokens.toml".as_ref())?;
//! let app = Hub::new(Arc::new(store), Arc::new(tokens)).router();
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:7878").await?;
//! // Without TCP_NODELAY, small frames wait for the peer's delayed ack (tens of ms).
//! let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
//!     let _ = tcp.set_nodelay(true);
//! });
//! axum::serve(listener, app).await?;
//! # Ok(()) }
//! ```
// docs.rs labels feature-gated items with the feature that enables them.
#![cfg_attr(docsrs, feature(doc_cfg))]

mod connection;
mod feeds;
mod identity;
mod rest;
mod snapshots;
pub mod ui;

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::extract::ws::WebSocketUpgrade;
use axum::response::Response;
use axum::routing::get;
use runtime_core::sync::ErrorCode;
use runtime_core::{Batch, BatchId, Catalog, Clock, Event, Seq, Stamp};

pub use identity::{
    Authenticator, Identity, MIN_TOKEN_LEN, NotebookAccess, TokensError, TokensFile,
};
pub use rest::MAX_EVENTS_PER_READ;

/// The largest frame a client may send (a batch of events).
pub const MAX_FRAME: usize = 64 * 1024 * 1024;

/// A hub over a catalog of notebooks, admitting the identities an authenticator knows.
#[derive(Clone)]
pub struct Hub {
    shared: Arc<Shared>,
}

struct Shared {
    catalog: Arc<dyn Catalog>,
    authenticator: Arc<dyn Authenticator>,
    /// The authority's clock: every committed batch is stamped with its time.
    clock: Arc<dyn Clock>,
    /// Snapshots being made now.
    making: snapshots::Making,
    /// One live reader per followed notebook.
    feeds: feeds::Feeds,
}

impl Shared {
    /// Commits `events` to `notebook` for `identity`: checks the names they declare against
    /// it, then stamps the batch with the hub's time and the identity, so the log says who
    /// wrote each entry and when, by one clock.
    async fn commit(
        &self,
        identity: &Identity,
        notebook: &str,
        id: BatchId,
        events: Vec<Arc<Event>>,
    ) -> Result<Seq, (ErrorCode, String)> {
        if events.is_empty() {
            return Err(ErrorCode::split(&runtime_core::StoreError::EmptyBatch));
        }
        identity
            .may_use(notebook)
            .map_err(|why| (ErrorCode::Forbidden, why))?;
        if let Err(why) = identity::check_batch(identity, &events) {
            tracing::warn!(%why, "refused a commit");
            return Err((ErrorCode::Forbidden, why));
        }
        let store = self
            .catalog
            .open(notebook)
            .map_err(|why| ErrorCode::split(&why))?;
        let stamp = Stamp::new(self.clock.now(), identity.id.as_str());
        let batch = Batch {
            id,
            events,
            stamp: Some(stamp),
        };
        store
            .commit_batch(&batch)
            .await
            .map_err(|why| ErrorCode::split(&why))
    }

    /// Creates notebook `notebook` (a new random id if none) titled `title` for
    /// `identity`, as [`Catalog::create`] does, but stamped and checked like any commit;
    /// returns its id.
    async fn create(
        &self,
        identity: &Identity,
        notebook: Option<String>,
        title: String,
    ) -> Result<String, (ErrorCode, String)> {
        let fail = |why: runtime_core::StoreError| ErrorCode::split(&why);
        let notebook = notebook.unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        identity
            .may_use(&notebook)
            .map_err(|why| (ErrorCode::Forbidden, why))?;
        let store = self.catalog.open(&notebook).map_err(fail)?;
        let needed = runtime_core::store::needs_creation(&*store, &notebook, &title)
            .await
            .map_err(fail)?;
        if needed {
            let creation = runtime_core::store::creation(&title);
            self.commit(identity, &notebook, creation.id, creation.events)
                .await?;
        }
        Ok(notebook)
    }
}

impl Hub {
    /// A hub serving `catalog`'s notebooks to the identities `authenticator` admits,
    /// stamping commits by the system clock.
    pub fn new(catalog: Arc<dyn Catalog>, authenticator: Arc<dyn Authenticator>) -> Self {
        Hub {
            shared: Arc::new(Shared {
                catalog,
                authenticator,
                clock: Arc::new(runtime_native::TokioClock),
                making: snapshots::Making::default(),
                feeds: feeds::Feeds::default(),
            }),
        }
    }

    /// This hub, stamping commits by `clock` instead of the system clock (a test's
    /// [`ManualClock`](runtime_core::ManualClock), say). Call it before serving.
    pub fn with_clock(self, clock: impl Clock + 'static) -> Self {
        let shared = &self.shared;
        Hub {
            shared: Arc::new(Shared {
                catalog: shared.catalog.clone(),
                authenticator: shared.authenticator.clone(),
                clock: Arc::new(clock),
                making: snapshots::Making::default(),
                feeds: feeds::Feeds::default(),
            }),
        }
    }

    /// The routes: `GET /sync` (the WebSocket), `GET /health`, and REST for simple
    /// clients: `GET /notebooks`, `GET /notebooks/{id}/cells`,
    /// `GET /notebooks/{id}/events?from=&limit=`, `POST /notebooks/{id}/events`,
    /// `GET /notebooks/{id}/stream?from=` (server-sent events).
    pub fn router(&self) -> Router {
        Router::new()
            .route("/sync", get(sync))
            .route("/health", get(|| async { "ok\n" }))
            .route("/notebooks", get(rest::notebooks).post(rest::create))
            .route("/notebooks/{id}/cells", get(rest::cells))
            .route(
                "/notebooks/{id}/events",
                get(rest::events).post(rest::commit),
            )
            .route("/notebooks/{id}/stream", get(rest::stream))
            .with_state(self.shared.clone())
    }
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub").finish_non_exhaustive()
    }
}

async fn sync(upgrade: WebSocketUpgrade, State(shared): State<Arc<Shared>>) -> Response {
    // Small socket buffers: a quiet connection (most of them) then costs a few KiB, and a
    // busy one grows its buffers as it needs.
    upgrade
        .read_buffer_size(4 * 1024)
        .write_buffer_size(4 * 1024)
        .max_message_size(MAX_FRAME)
        .max_frame_size(MAX_FRAME)
        .on_upgrade(move |socket| connection::serve(shared, socket))
}
