//! Durable state: diesel 2 over SQLite (embedded default) or PostgreSQL, chosen by URL.
//!
//! - `conn`: the multi-backend connection, the r2d2 pool, write transactions.
//! - `schema`: the tables.
//! - `node_lock`: SQLite is one node: the daemon's lock on the database file.
//! - `migrations`: the embedded migration trees, one per backend.
//! - `tenants`: tenants and their API keys.
//! - `sends`: bulk sends and messages: creation, reads, dispatch, webhooks, controls (one file each).
//! - `quota`: the portfolio quota ledger (who was messaged when, for the moving 24 h window).
//! - `idempotency`: `Idempotency-Key` claims and stored answers.
//! - `accounts`: WABAs, phone numbers, templates; operator overrides; quota usage; the
//!   template and number changes Meta's webhooks report.
//! - `inbound`: when each user last wrote to each number (the customer-service window).
//! - `cluster`: several daemons on one PostgreSQL: heartbeats, portfolio leases, fenced
//!   claims, the change feed.
//! - `callbacks`: the outbox of client callback events (enqueued with the status change
//!   they report, delivered by `engine::callbacks`).
//! - `secrets`: the secrets stored encrypted: key checks, sealing plain rows, rotation.
//! - `suppressions`: the suppression list (opt-outs): signals applied in order, the create
//!   path's lookup, queued messages of opted-out recipients stopped.
//! - `status_object`: the status object of a send, for HTTP answers and callback events.
//!
//! Diesel is blocking. Async code reaches the database through [`Db::run`] and
//! [`Db::write`], which move the work onto the blocking thread pool.

pub mod accounts;
pub mod callbacks;
pub mod cluster;
pub mod conn;
pub mod idempotency;
pub mod inbound;
pub mod migrations;
pub mod node_lock;
pub mod quota;
pub mod schema;
pub mod secrets;
pub mod sends;
pub mod status;
pub mod status_object;
pub mod suppressions;
pub mod tenants;

pub use conn::{
    begin_write, build_pool, commit, rollback, write_transaction, DatabaseUrl, DbConnection,
    DbPool, PooledConnection,
};

/// What can go wrong talking to the database.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// No connection could be had: the database is down or the pool is exhausted.
    #[error("the database is unavailable: {0}")]
    Unavailable(#[from] r2d2::Error),
    /// A query failed.
    #[error("database query failed: {0}")]
    Query(#[from] diesel::result::Error),
    /// The blocking task running the query was lost (the runtime is shutting down).
    #[error("the database task was cancelled")]
    Cancelled,
    /// The transaction a write was grouped into could not be committed.
    #[error("the database could not commit: {0}")]
    CommitFailed(String),
    /// Another live daemon process holds this node's name (`MINDO_NODE_NAME`).
    #[error("another live daemon is named {0}: each daemon on one database needs its own MINDO_NODE_NAME")]
    NameTaken(String),
}

impl StorageError {
    /// Whether the database undid this write to resolve a conflict with another transaction
    /// (a deadlock or a serialization failure): the same write may simply be made again.
    pub fn is_conflict(&self) -> bool {
        use diesel::result::{DatabaseErrorKind, Error};
        match self {
            StorageError::Query(Error::DatabaseError(
                DatabaseErrorKind::SerializationFailure,
                _,
            )) => true,
            StorageError::Query(Error::DatabaseError(_, info)) => {
                info.message().contains("deadlock detected")
            }
            _ => false,
        }
    }

    /// Whether this is "the database cannot be reached" rather than a failing query.
    pub fn is_unavailable(&self) -> bool {
        match self {
            StorageError::Unavailable(_)
            | StorageError::Cancelled
            | StorageError::CommitFailed(_) => true,
            StorageError::Query(diesel::result::Error::DatabaseError(
                diesel::result::DatabaseErrorKind::ClosedConnection
                | diesel::result::DatabaseErrorKind::UnableToSendCommand,
                _,
            )) => true,
            StorageError::Query(_) | StorageError::NameTaken(_) => false,
        }
    }
}

/// The database handle shared by the daemon: a pool plus the helpers to use it from async
/// code.
#[derive(Clone)]
pub struct Db {
    pool: DbPool,
    url: DatabaseUrl,
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may carry a password: show the backend only.
        let backend = if self.url.is_sqlite() {
            "sqlite"
        } else {
            "postgres"
        };
        f.debug_struct("Db").field("backend", &backend).finish()
    }
}

impl Db {
    /// Opens a pool of up to `pool_size` connections on `url` (`sqlite://…` or
    /// `postgres://…`) for the daemon: one connection is kept open.
    pub fn connect(url: &str, pool_size: u32) -> anyhow::Result<Db> {
        Self::connect_with_idle(url, pool_size, 1)
    }

    /// Opens a single-connection pool that keeps nothing open in the background, for
    /// short-lived processes such as CLI commands.
    pub fn connect_for_command(url: &str) -> anyhow::Result<Db> {
        Self::connect_with_idle(url, 1, 0)
    }

    fn connect_with_idle(url: &str, pool_size: u32, min_idle: u32) -> anyhow::Result<Db> {
        let url = DatabaseUrl::parse(url).map_err(anyhow::Error::msg)?;
        let pool = build_pool(&url, pool_size, min_idle)?;
        Ok(Db { pool, url })
    }

    /// A connection of its own, outside the pool, for a task that must never wait for one
    /// (the lease keeper).
    pub fn dedicated_connection(&self) -> Result<DbConnection, StorageError> {
        conn::DbConnectionManager::new(self.url.clone())
            .open()
            .map_err(|e| StorageError::CommitFailed(format!("cannot connect: {e}")))
    }

    /// Whether the backend is SQLite.
    pub fn is_sqlite(&self) -> bool {
        self.url.is_sqlite()
    }

    /// Checks a connection out of the pool (blocking).
    pub fn get(&self) -> Result<PooledConnection, StorageError> {
        Ok(self.pool.get()?)
    }

    /// Applies pending migrations; returns the versions applied.
    pub fn migrate(&self) -> anyhow::Result<Vec<String>> {
        let mut conn = self.get()?;
        migrations::run_pending(&mut conn)
    }

    /// Runs `f` with a pooled connection on the blocking thread pool. `f` may use any error
    /// type that a [`StorageError`] converts into.
    ///
    /// The returned future owns what it needs (it does not borrow `self`), so actors can
    /// hand it to their context.
    pub fn run<T, E, F>(&self, f: F) -> impl std::future::Future<Output = Result<T, E>> + 'static
    where
        T: Send + 'static,
        E: From<StorageError> + Send + 'static,
        F: FnOnce(&mut DbConnection) -> Result<T, E> + Send + 'static,
    {
        let pool = self.pool.clone();
        async move {
            tokio::task::spawn_blocking(move || {
                let mut conn = pool.get().map_err(StorageError::from)?;
                f(&mut conn)
            })
            .await
            .map_err(|_| E::from(StorageError::Cancelled))?
        }
    }

    /// Runs `f` in a write transaction (see [`write_transaction`]) on the blocking pool.
    pub fn write<T, E, F>(&self, f: F) -> impl std::future::Future<Output = Result<T, E>> + 'static
    where
        T: Send + 'static,
        E: From<StorageError> + From<diesel::result::Error> + Send + 'static,
        F: FnOnce(&mut DbConnection) -> Result<T, E> + Send + 'static,
    {
        self.run(move |conn| write_transaction(conn, f))
    }

    /// `SELECT 1`: whether the database answers.
    pub async fn ping(&self) -> Result<(), StorageError> {
        self.run(|conn| {
            use diesel::connection::SimpleConnection;
            conn.batch_execute("SELECT 1").map_err(StorageError::from)
        })
        .await
    }
}
