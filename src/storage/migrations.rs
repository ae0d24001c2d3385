//! The migration trees, embedded in the binary. `migrations/sqlite` and
//! `migrations/postgres` carry identical version names; each backend runs its own tree.

use diesel::connection::SimpleConnection;
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};

use super::DbConnection;

/// The SQLite tree.
pub const SQLITE: EmbeddedMigrations = embed_migrations!("migrations/sqlite");
/// The PostgreSQL tree.
pub const POSTGRES: EmbeddedMigrations = embed_migrations!("migrations/postgres");

/// An arbitrary constant naming our advisory lock on PostgreSQL, so two processes starting
/// at once (a daemon and a CLI command) do not migrate concurrently.
const PG_MIGRATION_LOCK: i64 = 0x6d696e646f; // "mindo"

/// Applies every pending migration of the connection's backend.
pub fn run_pending(conn: &mut DbConnection) -> anyhow::Result<Vec<String>> {
    let applied = match conn {
        DbConnection::Sqlite(c) => c
            .run_pending_migrations(SQLITE)
            .map_err(|e| anyhow::anyhow!("migrating the SQLite database failed: {e}"))?
            .iter()
            .map(|v| v.to_string())
            .collect(),
        DbConnection::Postgres(c) => {
            c.batch_execute(&format!("SELECT pg_advisory_lock({PG_MIGRATION_LOCK})"))?;
            let result = c
                .run_pending_migrations(POSTGRES)
                .map(|versions| versions.iter().map(|v| v.to_string()).collect());
            c.batch_execute(&format!("SELECT pg_advisory_unlock({PG_MIGRATION_LOCK})"))?;
            result.map_err(|e| anyhow::anyhow!("migrating the PostgreSQL database failed: {e}"))?
        }
    };
    Ok(applied)
}
