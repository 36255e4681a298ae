//! The platform-agnostic core of embeddable runtime agents.
//!
//! A runtime agent takes execution requests (notebook cells, prompts for AI coding agents,
//! shell jobs) from a shared, ordered event log, runs them through a pluggable handler, and
//! writes every output back into the same log, where UIs see it live. The application owns
//! the [`Store`] and passes it in; this crate compiles for `wasm32-unknown-unknown` and the
//! host alike, never spawns, and never reads the system clock (a [`Clock`] is injected).
//!
//! # Example: an echo agent on the in-memory store
//!
//! ```
//! use runtime_core::*;
//!
//! # futures::executor::block_on(async {
//! let store = MemoryStore::new();
//! let agent = RuntimeAgent::new(store.clone(), ManualClock::default(), Capabilities::code(), AgentOptions::new("alice"))?
//!     .on_execution(|ctx: ExecutionContext| async move {
//!         ctx.stdout("thinking...\n")?;
//!         Ok(MediaBundle::plain(format!("Echo: {}", ctx.source())))
//!     });
//! let handle = agent.handle();
//! let client = async {
//!     let (_cell, queue_id) = NotebookClient::new(store.clone(), "alice").run_cell(CellType::Code, "1 + 1").await?;
//!     let mut watcher = NotebookWatcher::new(&store);
//!     let entry = watcher.wait_for_completion(&queue_id).await?.clone();
//!     handle.shutdown();
//!     Ok::<_, AgentError>(entry)
//! };
//! let (ended, entry) = futures::join!(agent.run(), client);
//! assert_eq!(ended?, TerminationReason::Shutdown);
//! let entry = entry?;
//! assert_eq!(entry.state.status(), Some(CompletionStatus::Success));
//! assert_eq!(entry.outputs.len(), 2); // the stdout stream, then the result
//! # Ok::<(), AgentError>(())
//! # }).unwrap();
//! ```
//!
//! # Modules
//!
//! - [`schema`]: the event vocabulary (JSON on the wire), ids, media bundles.
//! - [`state`]: the reducer, [`NotebookState::apply`], which enforces the rules that make
//!   sharing one log safe: one active session, claims decided by log order, fencing, leases,
//!   no orphans, truthful terminal states, idempotent requests.
//! - [`store`]: the [`Store`] contract and [`MemoryStore`].
//! - [`agent`]: [`RuntimeAgent`] and its loop.
//! - [`context`]: [`ExecutionContext`], the handler's window on its execution.
//! - [`handler`]: [`ExecutionHandler`], implemented by async closures too.
//! - [`client`]: [`NotebookClient`] and [`NotebookWatcher`], the other side of the log.
//! - [`clock`]: [`Clock`], [`ManualClock`], [`Timestamp`].
// docs.rs labels feature-gated items with the feature that enables them.
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod agent;
pub mod client;
pub mod clock;
pub mod context;
pub mod handler;
pub mod ipynb;
pub mod maybe_send;
pub mod schema;
mod sealed;
pub mod state;
pub mod store;
pub mod sync;

pub use agent::{
    AgentError, AgentHandle, AgentOptions, AgentStatus, ExecutionFailure, RunningExecution,
    RuntimeAgent, SNAPSHOT_EVERY,
};
pub use client::{InputReplyError, NotebookClient, NotebookWatcher};
pub use clock::{Clock, ManualClock, Timestamp};
pub use context::{
    CancelReason, Cancelled, Display, ExecutionContext, InputError, OutputError, OutputLayer,
    OutputType,
};
pub use handler::{ExecutionError, ExecutionHandler, Outcome};
pub use maybe_send::{BoxFuture, BoxStream, MaybeSend, MaybeSync};
pub use schema::*;
pub use sealed::SealError;
pub use state::*;
pub use store::{
    Batch, Catalog, LogEntry, MemoryCatalog, MemoryStore, NotebookInfo, RetryPolicy, Retrying,
    Stamp, Store, StoreError, Subscription,
};
