//! Connections: one diesel connection type over both backends, the r2d2 pool, and the
//! write-transaction helper.
//!
//! `DbConnection` is a `#[derive(diesel::MultiConnection)]` enum, so ordinary queries are
//! written once. Where the backends differ (`RETURNING`, upserts, batch inserts), code
//! matches on the variant with [`with_backend!`](crate::with_backend) and the same query
//! text is type-checked once per backend.
//!
//! SQLite specifics, all decided here and nowhere else:
//! - the journal is switched to WAL once, when the pool is built (the mode is stored in the
//!   file, so every later connection inherits it);
//! - every pooled connection sets `busy_timeout` first (so even the next PRAGMA waits for a
//!   lock instead of failing), then `foreign_keys` and `synchronous = NORMAL` (durable at
//!   every checkpoint under WAL, and the usual pairing with it) and a 16 MiB page cache (the
//!   default 2 MiB makes creating a large send thrash on its index pages);
//! - write transactions begin with `BEGIN IMMEDIATE`: they take the write lock up front and
//!   wait for it under `busy_timeout`. A deferred transaction that reads and then writes can
//!   fail with `SQLITE_BUSY` at once, without waiting, when another writer got in between.

use std::path::PathBuf;
use std::time::Duration;

use diesel::connection::{AnsiTransactionManager, SimpleConnection, TransactionManager};
use diesel::prelude::*;
use diesel::r2d2::R2D2Connection;

/// A connection to either supported database.
#[derive(diesel::MultiConnection)]
pub enum DbConnection {
    /// The server backend, the one that scales out.
    Postgres(diesel::PgConnection),
    /// The embedded default.
    Sqlite(diesel::SqliteConnection),
}

/// Runs `$body` with `$c` bound to the concrete connection inside a [`DbConnection`].
///
/// The body is compiled once per backend, so it may use anything both backends support
/// even where the multi-backend type does not (e.g. `RETURNING`, `ON CONFLICT`).
#[macro_export]
macro_rules! with_backend {
    ($conn:expr, |$c:ident| $body:expr) => {
        match $conn {
            $crate::storage::DbConnection::Postgres($c) => $body,
            $crate::storage::DbConnection::Sqlite($c) => $body,
        }
    };
}

/// How long a PostgreSQL session may sit inside a transaction without sending anything before
/// the server ends it (less than a lease's lifetime: see `engine::leases`).
const PG_IDLE_IN_TRANSACTION_MS: u32 = 5_000;

/// How long an SQLite connection waits for a lock before giving up.
const SQLITE_BUSY_TIMEOUT_MS: u32 = 15_000;

/// Which database a URL names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatabaseUrl {
    /// A file path (`sqlite://PATH`; `sqlite:///abs/path` for an absolute one).
    Sqlite(PathBuf),
    /// A libpq connection URL (`postgres://…` or `postgresql://…`), passed through as is.
    Postgres(String),
}

impl DatabaseUrl {
    /// Chooses the backend from the URL scheme.
    pub fn parse(url: &str) -> Result<DatabaseUrl, String> {
        if let Some(path) = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
        {
            if path.is_empty() || path.starts_with(":memory:") {
                return Err(
                    "an SQLite database URL needs a file path, e.g. sqlite://mindo.db".into(),
                );
            }
            return Ok(DatabaseUrl::Sqlite(PathBuf::from(path)));
        }
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Ok(DatabaseUrl::Postgres(url.to_owned()));
        }
        Err(
            "unsupported database URL: it must start with sqlite:// or postgres:// (see MINDO_DATABASE_URL)"
                .into(),
        )
    }

    /// Whether this is the embedded backend.
    pub fn is_sqlite(&self) -> bool {
        matches!(self, DatabaseUrl::Sqlite(_))
    }
}

/// An r2d2 connection manager that picks the backend from the URL scheme and prepares
/// every SQLite connection it opens.
#[derive(Debug, Clone)]
pub struct DbConnectionManager {
    url: DatabaseUrl,
}

impl DbConnectionManager {
    pub fn new(url: DatabaseUrl) -> Self {
        DbConnectionManager { url }
    }

    /// A connection of its own, outside any pool, set up as the pool's are.
    pub fn open(&self) -> Result<DbConnection, diesel::r2d2::Error> {
        match &self.url {
            DatabaseUrl::Postgres(url) => {
                let mut conn = diesel::PgConnection::establish(url)
                    .map_err(diesel::r2d2::Error::ConnectionError)?;
                // A daemon frozen or cut off mid-transaction (SIGSTOP, a partition, power
                // loss) would hold its row locks for as long as its session lives, and a lease
                // row it locked could never be taken over. The server ends such a transaction
                // after a while; no transaction of ours waits on its client that long.
                conn.batch_execute(&format!(
                    "SET idle_in_transaction_session_timeout = {PG_IDLE_IN_TRANSACTION_MS}"
                ))
                .map_err(diesel::r2d2::Error::QueryError)?;
                Ok(DbConnection::Postgres(conn))
            }
            DatabaseUrl::Sqlite(path) => {
                let path = path.to_string_lossy();
                let mut conn = diesel::SqliteConnection::establish(&path)
                    .map_err(diesel::r2d2::Error::ConnectionError)?;
                conn.batch_execute(&format!(
                    "PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS};
                     PRAGMA foreign_keys = ON;
                     PRAGMA synchronous = NORMAL;
                     PRAGMA cache_size = -16384;"
                ))
                .map_err(diesel::r2d2::Error::QueryError)?;
                Ok(DbConnection::Sqlite(conn))
            }
        }
    }
}

impl diesel::r2d2::ManageConnection for DbConnectionManager {
    type Connection = DbConnection;
    type Error = diesel::r2d2::Error;

    fn connect(&self) -> Result<DbConnection, Self::Error> {
        self.open()
    }

    fn is_valid(&self, conn: &mut DbConnection) -> Result<(), Self::Error> {
        conn.ping().map_err(diesel::r2d2::Error::QueryError)
    }

    fn has_broken(&self, conn: &mut DbConnection) -> bool {
        std::thread::panicking() || conn.is_broken()
    }
}

/// The connection pool.
pub type DbPool = r2d2::Pool<DbConnectionManager>;

/// A connection checked out of the pool.
pub type PooledConnection = r2d2::PooledConnection<DbConnectionManager>;

/// Builds the pool for `url`. For SQLite, creates the file's directory if needed and
/// switches the database to WAL (once; the mode persists in the file).
///
/// `min_idle` connections are kept open (and re-opened) by r2d2's background threads; a
/// short-lived process passes 0, so that no thread is opening a connection while the
/// process exits (libpq does not survive that).
pub fn build_pool(url: &DatabaseUrl, max_size: u32, min_idle: u32) -> anyhow::Result<DbPool> {
    if let DatabaseUrl::Sqlite(path) = url {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| {
                anyhow::anyhow!(
                    "cannot create the database directory {}: {e}",
                    dir.display()
                )
            })?;
        }
    }
    let manager = DbConnectionManager::new(url.clone());
    let pool = r2d2::Pool::builder()
        .max_size(max_size)
        .min_idle(Some(min_idle.min(max_size)))
        .connection_timeout(Duration::from_secs(10))
        .error_handler(Box::new(r2d2::LoggingErrorHandler))
        .build(manager)
        .map_err(|e| anyhow::anyhow!("cannot connect to the database: {e}"))?;
    let mut conn = pool.get()?;
    if let DbConnection::Sqlite(c) = &mut *conn {
        c.batch_execute("PRAGMA journal_mode = WAL;")?;
    }
    Ok(pool)
}

/// Begins a write transaction: `BEGIN IMMEDIATE` on SQLite (the write lock is taken up
/// front, waiting under `busy_timeout`), an ordinary `BEGIN` on PostgreSQL.
pub fn begin_write(conn: &mut DbConnection) -> diesel::QueryResult<()> {
    match conn {
        DbConnection::Sqlite(c) => {
            AnsiTransactionManager::begin_transaction_sql(c, "BEGIN IMMEDIATE")
        }
        DbConnection::Postgres(c) => AnsiTransactionManager::begin_transaction(c),
    }
}

/// Commits the transaction opened by [`begin_write`].
pub fn commit(conn: &mut DbConnection) -> diesel::QueryResult<()> {
    <DbConnection as Connection>::TransactionManager::commit_transaction(conn)
}

/// Rolls back the transaction opened by [`begin_write`]. A failed rollback leaves the
/// connection broken, and r2d2 drops broken connections, so its error is not reported.
pub fn rollback(conn: &mut DbConnection) {
    let _ = <DbConnection as Connection>::TransactionManager::rollback_transaction(conn);
}

/// Runs `f` in a write transaction (see [`begin_write`]): commits when `f` returns `Ok`,
/// rolls back otherwise.
pub fn write_transaction<T, E, F>(conn: &mut DbConnection, f: F) -> Result<T, E>
where
    F: FnOnce(&mut DbConnection) -> Result<T, E>,
    E: From<diesel::result::Error>,
{
    begin_write(conn)?;
    match f(conn) {
        Ok(value) => {
            commit(conn)?;
            Ok(value)
        }
        Err(err) => {
            rollback(conn);
            Err(err)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_scheme_chooses_the_backend() {
        assert_eq!(
            DatabaseUrl::parse("sqlite://mindo.db"),
            Ok(DatabaseUrl::Sqlite(PathBuf::from("mindo.db")))
        );
        assert_eq!(
            DatabaseUrl::parse("sqlite:///var/lib/mindo/mindo.db"),
            Ok(DatabaseUrl::Sqlite(PathBuf::from(
                "/var/lib/mindo/mindo.db"
            )))
        );
        assert!(matches!(
            DatabaseUrl::parse("postgres://postgres@127.0.0.1/x"),
            Ok(DatabaseUrl::Postgres(_))
        ));
        assert!(matches!(
            DatabaseUrl::parse("postgresql://postgres@127.0.0.1/x"),
            Ok(DatabaseUrl::Postgres(_))
        ));
        assert!(DatabaseUrl::parse("mysql://x").is_err());
        assert!(DatabaseUrl::parse("sqlite://").is_err());
        assert!(DatabaseUrl::parse("sqlite::memory:").is_err());
        assert!(DatabaseUrl::parse("mindo.db").is_err());
    }
}
