//! The PostgreSQL server the tests use: the one `DATABASE_URL` names (`scripts/postgres`
//! starts a throwaway one; the test command always does), with a fresh database per test.
#![allow(clippy::unwrap_used)]

use std::sync::atomic::{AtomicUsize, Ordering};

use tokio_postgres::NoTls;

/// The server's URL. Panics, saying how to get one, when `DATABASE_URL` is unset: no test
/// is skipped for want of a server.
pub fn server_url() -> String {
    std::env::var("DATABASE_URL").unwrap_or_else(|_| {
        panic!(
            "DATABASE_URL is unset: these tests need a PostgreSQL server. Run them through \
             `scripts/postgres run cargo test ...` (a throwaway cluster), or scripts/check"
        )
    })
}

/// `url` with its database replaced by `database`.
pub fn with_database(url: &str, database: &str) -> String {
    let (url, query) = url
        .split_once('?')
        .map_or((url, None), |(u, q)| (u, Some(q)));
    let (scheme, rest) = url.split_once("://").unwrap();
    let host = rest.split_once('/').map_or(rest, |(host, _)| host);
    match query {
        Some(query) => format!("{scheme}://{host}/{database}?{query}"),
        None => format!("{scheme}://{host}/{database}"),
    }
}

/// A new, empty database on the server; returns its URL.
pub async fn fresh_database() -> String {
    static COUNT: AtomicUsize = AtomicUsize::new(0);
    let server = server_url();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let name = format!(
        "runtime_agents_test_{}_{}_{nanos}",
        std::process::id(),
        COUNT.fetch_add(1, Ordering::SeqCst)
    );
    execute(&server, &format!("CREATE DATABASE {name}")).await;
    with_database(&server, &name)
}

/// Runs `statements` on the database at `url`.
pub async fn execute(url: &str, statements: &str) {
    let client = connect(url).await;
    client.batch_execute(statements).await.unwrap();
}

/// The first column of the first row `query` returns, as text.
pub async fn query_one(url: &str, query: &str) -> String {
    let client = connect(url).await;
    client.query_one(query, &[]).await.unwrap().get(0)
}

async fn connect(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, NoTls)
        .await
        .unwrap_or_else(|error| panic!("cannot reach PostgreSQL at DATABASE_URL: {error}"));
    tokio::spawn(connection);
    client
}
