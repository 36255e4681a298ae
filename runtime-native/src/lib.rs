//! The tokio adapter for runtime agents: what turns `runtime-core` into something a person
//! runs from a terminal and an app embeds on a server.
//!
//! - [`TokioClock`]: wall-clock time and tokio sleeps.
//! - [`SqliteStore`]: the durable store; several processes share a notebook through one file.
//! - [`config`]: clap arguments with environment, configuration-file and default fallbacks.
//! - [`auth`]: the client id and a secret token from a flag, the environment or a private
//!   credentials file.
//! - [`run_until_signal`]: graceful shutdown on SIGINT/SIGTERM.
//! - [`process`], [`http`], [`jupyter`] and [`backends`]: handlers that run programs, post
//!   to web services, drive codex or run cells on Jupyter kernels (Unix: process groups and
//!   signals).
//!
//! # Example
//!
//! ```no_run
//! use runtime_core::{Capabilities, RuntimeAgent, handler::Echo};
//! use runtime_native::{SqliteStore, TokioClock, config::{AgentArgs, parse_cli}};
//!
//! #[derive(clap::Parser)]
//! struct Cli {
//!     #[command(flatten)]
//!     agent: AgentArgs,
//! }
//!
//! #[tokio::main(flavor = "current_thread")]
//! async fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     let config = parse_cli::<Cli>()?.agent.resolve("echo")?;
//!     let store = SqliteStore::open(&config.common.store, &config.common.notebook)?;
//!     let agent = RuntimeAgent::new(store, TokioClock, Capabilities::code(), config.options)?
//!         .on_execution(Echo::new(TokioClock));
//!     runtime_native::run_until_signal(agent).await?;
//!     Ok(())
//! }
//! ```
// docs.rs labels feature-gated items with the feature that enables them.
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod auth;
#[cfg(unix)]
pub mod backends;
mod clock;
pub mod config;
pub mod files;
// One process serving many notebooks, each with its own backends (and git worktree).
#[cfg(unix)]
pub mod gateway;
// The backends run programs in process groups and stop them with signals: Unix only, as
// is the signal handling.
#[cfg(unix)]
pub mod http;
pub mod hub;
// Reading and writing .ipynb files, and running them on a kernel.
#[cfg(unix)]
pub mod ipynb;
#[cfg(unix)]
pub mod jupyter;
#[cfg(unix)]
mod net;
#[cfg(feature = "postgres")]
#[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
pub mod postgres;
#[cfg(unix)]
pub mod process;
// Installs the agent CLIs backends run (codex), verified against their registry's digest.
#[cfg(unix)]
pub mod runtimes;
#[cfg(unix)]
mod signals;
pub mod sqlite;
pub mod tls;
// Git worktrees of their own for notebooks a gateway serves.
#[cfg(unix)]
pub mod worktree;

pub use auth::AuthToken;
pub use clock::TokioClock;
#[cfg(feature = "postgres")]
#[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
pub use postgres::{PostgresError, PostgresOptions, PostgresStore};
#[cfg(unix)]
pub use signals::{FORCED_EXIT_CODE, RunError, run_until_signal};
pub use sqlite::{
    DEFAULT_AUTHOR, Durability, GAP_FILLER_TYPE, SqliteError, SqliteOptions, SqliteStore,
};
