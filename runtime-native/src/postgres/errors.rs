//! PostgreSQL errors as store errors: what may pass is retriable, the rest is not.

use runtime_core::StoreError;
use tokio_postgres::error::SqlState;

/// Why a PostgreSQL store could not be opened. Messages never hold the password.
#[derive(Debug, thiserror::Error)]
pub enum PostgresError {
    /// The connection string does not parse.
    #[error("the PostgreSQL connection string is not valid: {0}")]
    Url(String),
    /// The server could not be reached, refused us, or failed.
    #[error("PostgreSQL at {target}: {message}")]
    Server {
        /// The server and database, without the password.
        target: String,
        /// What went wrong.
        message: String,
        /// Whether trying again later may succeed (the server is down or restarting)
        /// rather than not (a wrong password, a missing database).
        retriable: bool,
    },
    /// The database holds a newer schema than this build reads.
    #[error(
        "PostgreSQL at {target} has store schema version {found}, newer than this build \
         supports ({supported}); upgrade runtime-agents"
    )]
    NewerSchema {
        /// The server and database.
        target: String,
        /// The version found.
        found: i32,
        /// The newest this build reads.
        supported: i32,
    },
}

impl PostgresError {
    /// `true` if opening again later may succeed: the server was unreachable or
    /// restarting, not misconfigured.
    pub fn is_retriable(&self) -> bool {
        matches!(
            self,
            PostgresError::Server {
                retriable: true,
                ..
            }
        )
    }
}

/// Whether `error` may pass: the connection was lost or refused, the server is shutting
/// down or starting, a failover left us on a read-only standby, or the transaction lost a
/// race (serialization failure, deadlock).
pub(super) fn is_retriable(error: &tokio_postgres::Error) -> bool {
    let Some(db) = error.as_db_error() else {
        // No answer from the server: retriable if the connection closed, failed or timed
        // out; not if we sent or read something the other side could not take.
        let mut source = std::error::Error::source(error);
        while let Some(cause) = source {
            if cause.is::<std::io::Error>() {
                return true;
            }
            source = cause.source();
        }
        return error.is_closed() || error.to_string().contains("timeout");
    };
    let code = db.code();
    let class = &code.code()[..2];
    // 08: connection exception; 53: insufficient resources (too many connections);
    // 57P: operator intervention (admin or crash shutdown, cannot connect now).
    matches!(class, "08" | "53")
        || code.code().starts_with("57P")
        || [
            SqlState::T_R_SERIALIZATION_FAILURE,
            SqlState::T_R_DEADLOCK_DETECTED,
            SqlState::LOCK_NOT_AVAILABLE,
            SqlState::READ_ONLY_SQL_TRANSACTION,
        ]
        .contains(code)
}

/// A PostgreSQL error as a store error, retriable or not ([`is_retriable`]).
pub(super) fn store_error(error: tokio_postgres::Error) -> StoreError {
    let message = describe(&error);
    if is_retriable(&error) {
        StoreError::Unavailable(format!("postgres: {message}"))
    } else {
        StoreError::Backend(format!("postgres: {message}"))
    }
}

/// What went wrong, in the server's words when it answered.
pub(super) fn describe(error: &tokio_postgres::Error) -> String {
    match error.as_db_error() {
        Some(db) => format!("{} ({})", db.message(), db.code().code()),
        None => {
            // tokio-postgres says "error connecting to server" and keeps the cause below.
            let mut message = error.to_string();
            let mut source = std::error::Error::source(error);
            while let Some(cause) = source {
                message = format!("{message}: {cause}");
                source = cause.source();
            }
            message
        }
    }
}

/// A unique violation of the batch-id index: the batch is in the log already.
pub(super) fn is_duplicate_batch(error: &tokio_postgres::Error) -> bool {
    error.as_db_error().is_some_and(|db| {
        *db.code() == SqlState::UNIQUE_VIOLATION && db.constraint() == Some("events_batch")
    })
}
