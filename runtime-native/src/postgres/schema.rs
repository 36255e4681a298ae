//! The store's tables, in the PostgreSQL schema `runtime_agents`, created and upgraded by
//! the store itself (docs/deployment.md describes them).

use super::PostgresError;
use super::errors::describe;
use super::pool::Connection;

/// The schema version this build writes and reads. Older databases are upgraded in place.
pub const SCHEMA_VERSION: i32 = 2;

/// Each version's changes, in order: entry `n` takes a database from version `n` to `n + 1`.
const MIGRATIONS: [&str; SCHEMA_VERSION as usize] = [
    // Version 1. A notebook's row holds its head (bumped by every commit, under the row's
    // lock: committers of one notebook queue there, of different notebooks never meet),
    // its title and the time of its last entry. An event's row holds its JSON text, its
    // batch's id on the batch's first row, and its stamp.
    "CREATE TABLE runtime_agents.notebooks (
         id text PRIMARY KEY,
         head bigint NOT NULL,
         title text,
         last_at bigint
     );
     CREATE TABLE runtime_agents.events (
         notebook text NOT NULL,
         seq bigint NOT NULL,
         event text NOT NULL,
         batch text,
         at bigint,
         author text,
         PRIMARY KEY (notebook, seq)
     );
     CREATE UNIQUE INDEX events_batch ON runtime_agents.events (notebook, batch)
         WHERE batch IS NOT NULL;
     CREATE TABLE runtime_agents.snapshots (
         notebook text NOT NULL,
         kind text NOT NULL,
         seq bigint NOT NULL,
         state text NOT NULL,
         PRIMARY KEY (notebook, kind)
     );",
    // Version 2. The runtime a notebook asks for (a `NotebookRuntimeRequested` payload as
    // JSON text), as its log leaves it.
    "ALTER TABLE runtime_agents.notebooks ADD COLUMN runtime text;",
];

/// A key of ours for `pg_advisory_xact_lock`: stores opening one new database at once
/// create its tables one after the other ("RTAg").
const MIGRATION_LOCK: i64 = 0x5254_4167;

/// Creates or upgrades the tables unless they are current. A database at this version is
/// only read (no lock, no DDL privilege needed); otherwise the upgrade runs in one
/// transaction under an advisory lock, so racing opens take turns.
pub(super) async fn prepare(
    connection: &mut Connection,
    target: &str,
) -> Result<(), PostgresError> {
    let failed = |error: tokio_postgres::Error| PostgresError::Server {
        target: target.to_owned(),
        message: describe(&error),
        retriable: super::errors::is_retriable(&error),
    };
    if version(connection).await.map_err(failed)? == SCHEMA_VERSION {
        return Ok(());
    }
    let client = connection.client();
    client.batch_execute("BEGIN").await.map_err(failed)?;
    let upgraded = async {
        client
            .execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
            .await?;
        client
            .batch_execute(
                "CREATE SCHEMA IF NOT EXISTS runtime_agents;
                 CREATE TABLE IF NOT EXISTS runtime_agents.meta (
                     key text PRIMARY KEY,
                     value text NOT NULL
                 );",
            )
            .await?;
        let found = stored_version(client).await?;
        if found > SCHEMA_VERSION {
            return Ok(Err(found));
        }
        for (from, migration) in MIGRATIONS.iter().enumerate().skip(found.max(0) as usize) {
            tracing::info!(from, to = from + 1, "upgrading the PostgreSQL store schema");
            client.batch_execute(migration).await?;
        }
        client
            .execute(
                "INSERT INTO runtime_agents.meta (key, value) VALUES ('schema_version', $1)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                &[&SCHEMA_VERSION.to_string()],
            )
            .await?;
        Ok(Ok(()))
    }
    .await;
    match upgraded {
        Ok(Ok(())) => client.batch_execute("COMMIT").await.map_err(failed),
        Ok(Err(found)) => {
            let _ = client.batch_execute("ROLLBACK").await;
            Err(PostgresError::NewerSchema {
                target: target.to_owned(),
                found,
                supported: SCHEMA_VERSION,
            })
        }
        Err(error) => {
            let _ = client.batch_execute("ROLLBACK").await;
            Err(failed(error))
        }
    }
}

/// The database's schema version, 0 if it has none of our tables; a newer one is an error
/// only after the upgrade's lock ([`prepare`]) reads it again.
async fn version(connection: &Connection) -> Result<i32, tokio_postgres::Error> {
    let client = connection.client();
    let exists = client
        .query_one("SELECT to_regclass('runtime_agents.meta') IS NOT NULL", &[])
        .await?
        .try_get::<_, bool>(0)?;
    if !exists {
        return Ok(0);
    }
    stored_version(client).await
}

async fn stored_version(client: &tokio_postgres::Client) -> Result<i32, tokio_postgres::Error> {
    let row = client
        .query_opt(
            "SELECT value FROM runtime_agents.meta WHERE key = 'schema_version'",
            &[],
        )
        .await?;
    Ok(row
        .and_then(|row| row.try_get::<_, String>(0).ok()?.parse().ok())
        .unwrap_or(0))
}
