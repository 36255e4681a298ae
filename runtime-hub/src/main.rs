//! `runtime-hub`: serves the notebooks of a SQLite file or a PostgreSQL database to agents
//! and UIs over WebSocket.
//!
//! ```text
//! runtime-hub --listen 127.0.0.1:7878 --tokens hub-tokens.toml
//! runtime-hub --store postgres://hub@db.internal/notebooks   # several hubs, one database
//! ```
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use runtime_core::Catalog;
use runtime_hub::{Hub, TokensFile};
use runtime_native::{PostgresStore, SqliteStore};

/// Serves notebooks to runtime agents and UIs on other machines.
#[derive(Parser)]
#[command(
    name = "runtime-hub",
    version,
    after_help = "docs/sync-protocol.md describes the protocol; the tokens file lists [[tokens]] with token, identity and role."
)]
struct Cli {
    /// Where to listen
    #[arg(long, env = "RUNTIME_HUB_LISTEN", default_value = "127.0.0.1:7878")]
    listen: SocketAddr,
    /// The SQLite file holding the notebooks, or a PostgreSQL database (postgres://…) that several hubs may share [default: runtime-agents/notebooks.db in the user data directory]
    #[arg(long, env = "RUNTIME_STORE", value_name = "PATH|URL")]
    store: Option<PathBuf>,
    /// The tokens file (private: chmod 600) [default: runtime-agents/hub-tokens.toml in the user config directory]
    #[arg(long, env = "RUNTIME_HUB_TOKENS", value_name = "PATH")]
    tokens: Option<PathBuf>,
    /// Log filter (RUST_LOG syntax)
    #[arg(long, env = "RUNTIME_LOG", default_value = "info")]
    log: String,
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = match runtime_native::config::parse_cli::<Cli>() {
        Ok(cli) => cli,
        Err(error) => {
            error.print();
            return ExitCode::from(u8::try_from(error.exit_code()).unwrap_or(2));
        }
    };
    let fail = |message: String| {
        eprintln!("error: {message}");
        ExitCode::from(2)
    };
    if let Err(error) = runtime_native::config::init_logging(&cli.log) {
        return fail(error.to_string());
    }
    let Some(store_path) = cli
        .store
        .or_else(runtime_native::config::default_store_path)
    else {
        return fail("no store: pass --store PATH".to_owned());
    };
    let Some(tokens_path) = cli.tokens.or_else(|| {
        dirs::config_dir().map(|dir| dir.join("runtime-agents").join("hub-tokens.toml"))
    }) else {
        return fail("no tokens file: pass --tokens PATH".to_owned());
    };
    let tokens = match TokensFile::load(&tokens_path) {
        Ok(tokens) => tokens,
        Err(error) => return fail(error.to_string()),
    };
    let (catalog, serving): (Arc<dyn Catalog>, String) = match postgres_url(&store_path) {
        Some(url) => match connect_postgres(url).await {
            Ok(store) => {
                let serving = format!("PostgreSQL at {}", store.target());
                (Arc::new(store), serving)
            }
            Err(error) => return fail(error.to_string()),
        },
        None => {
            if let Some(dir) = store_path.parent() {
                let _ = std::fs::create_dir_all(dir);
            }
            match SqliteStore::open(&store_path, "default") {
                Ok(store) => (Arc::new(store), store_path.display().to_string()),
                Err(error) => return fail(error.to_string()),
            }
        }
    };
    let listener = match tokio::net::TcpListener::bind(cli.listen).await {
        Ok(listener) => listener,
        Err(error) => return fail(format!("cannot listen on {}: {error}", cli.listen)),
    };
    let address = listener.local_addr().map_or(cli.listen, |address| address);
    println!(
        "hub serving {serving} on ws://{address}/sync ({} tokens from {})",
        tokens.len(),
        tokens_path.display()
    );
    let app = Hub::new(catalog, Arc::new(tokens))
        .router()
        .merge(runtime_hub::ui::router());
    // Small frames go out at once, not after the peer's delayed ack.
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        let _ = tcp.set_nodelay(true);
    });
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    match axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
    {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => fail(error.to_string()),
    }
}

/// The PostgreSQL connection string `--store` names, if it names one.
fn postgres_url(store: &std::path::Path) -> Option<&str> {
    store
        .to_str()
        .filter(|store| store.starts_with("postgres://") || store.starts_with("postgresql://"))
}

/// Connects to PostgreSQL, waiting up to a minute for a server that is down or starting
/// (a hub started with its database, or during a failover); a wrong password or a newer
/// schema fails at once.
async fn connect_postgres(url: &str) -> Result<PostgresStore, runtime_native::PostgresError> {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
    let mut pause = std::time::Duration::from_millis(200);
    loop {
        match PostgresStore::connect(url, "default").await {
            Err(error) if error.is_retriable() && tokio::time::Instant::now() < deadline => {
                tracing::warn!(%error, "waiting for PostgreSQL");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(std::time::Duration::from_secs(5));
            }
            other => return other,
        }
    }
}
