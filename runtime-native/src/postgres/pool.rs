//! A small pool of connections for commits and reads, each with its prepared statements.

use std::collections::HashMap;
use std::sync::Mutex;

use runtime_core::StoreError;
use tokio::sync::{Semaphore, SemaphorePermit};
use tokio_postgres::{Client, NoTls, Statement};

use super::errors::store_error;

/// Up to `size` connections, opened when first needed; a broken one is dropped, not reused.
pub(super) struct Pool {
    config: tokio_postgres::Config,
    idle: Mutex<Vec<Connection>>,
    permits: Semaphore,
}

/// One connection and the statements prepared on it.
pub(super) struct Connection {
    client: Client,
    statements: HashMap<&'static str, Statement>,
}

impl Connection {
    /// Opens a connection; its I/O runs on a task of its own until the client is dropped.
    pub(super) async fn open(
        config: &tokio_postgres::Config,
    ) -> Result<Self, tokio_postgres::Error> {
        let (client, connection) = config.connect(NoTls).await?;
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, "a PostgreSQL connection ended");
            }
        });
        Ok(Self {
            client,
            statements: HashMap::new(),
        })
    }

    /// The connection's client, for statements run once.
    pub(super) fn client(&self) -> &Client {
        &self.client
    }

    /// `sql`, prepared on this connection the first time it is asked for.
    pub(super) async fn statement(&mut self, sql: &'static str) -> Result<Statement, StoreError> {
        if let Some(statement) = self.statements.get(sql) {
            return Ok(statement.clone());
        }
        let statement = self.client.prepare(sql).await.map_err(store_error)?;
        self.statements.insert(sql, statement.clone());
        Ok(statement)
    }
}

impl Pool {
    pub(super) fn new(config: tokio_postgres::Config, size: usize) -> Self {
        Self {
            config,
            idle: Mutex::new(Vec::new()),
            permits: Semaphore::new(size.max(1)),
        }
    }

    /// Keeps `connection` for the next [`get`](Self::get), unless it is closed.
    pub(super) fn keep(&self, connection: Connection) {
        if !connection.client.is_closed() {
            self.idle
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .push(connection);
        }
    }

    /// A connection, idle or new; it returns to the pool when dropped.
    pub(super) async fn get(&self) -> Result<Pooled<'_>, StoreError> {
        let permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| StoreError::Closed)?;
        let idle = loop {
            let next = self
                .idle
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .pop();
            match next {
                Some(connection) if connection.client.is_closed() => continue,
                other => break other,
            }
        };
        let connection = match idle {
            Some(connection) => connection,
            None => Connection::open(&self.config).await.map_err(store_error)?,
        };
        Ok(Pooled {
            connection: Some(connection),
            pool: self,
            _permit: permit,
        })
    }
}

/// A connection taken from the [`Pool`].
pub(super) struct Pooled<'a> {
    connection: Option<Connection>,
    pool: &'a Pool,
    _permit: SemaphorePermit<'a>,
}

impl std::ops::Deref for Pooled<'_> {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        self.connection.as_ref().expect("present until dropped")
    }
}

impl std::ops::DerefMut for Pooled<'_> {
    fn deref_mut(&mut self) -> &mut Connection {
        self.connection.as_mut().expect("present until dropped")
    }
}

impl Drop for Pooled<'_> {
    fn drop(&mut self) {
        if let Some(connection) = self.connection.take() {
            self.pool.keep(connection);
        }
    }
}
