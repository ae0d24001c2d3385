//! The portfolio's quota ledger: who was messaged when, for the moving 24 h window.

use diesel::prelude::*;
use diesel::upsert::excluded;

use super::schema::quota_ledger;
use super::{DbConnection, StorageError};
use crate::with_backend;

/// Records that a portfolio messaged `recipients` at `now_ms`: one upsert per chunk.
pub(crate) fn record_quota(
    conn: &mut DbConnection,
    portfolio_id: &str,
    recipients: &[&str],
    now_ms: i64,
) -> Result<(), StorageError> {
    // One row per recipient in a statement (PostgreSQL refuses an upsert that touches a row
    // twice).
    let mut unique: Vec<&str> = recipients.to_vec();
    unique.sort_unstable();
    unique.dedup();
    for chunk in unique.chunks(super::sends::INSERT_CHUNK) {
        let rows: Vec<_> = chunk
            .iter()
            .map(|recipient| {
                (
                    quota_ledger::portfolio_id.eq(portfolio_id),
                    quota_ledger::recipient.eq(*recipient),
                    quota_ledger::last_sent_at.eq(now_ms),
                )
            })
            .collect();
        let insert = diesel::insert_into(quota_ledger::table)
            .values(&rows)
            .on_conflict((quota_ledger::portfolio_id, quota_ledger::recipient))
            .do_update()
            .set(quota_ledger::last_sent_at.eq(excluded(quota_ledger::last_sent_at)));
        with_backend!(conn, |c| insert.execute(c))?;
    }
    Ok(())
}

/// Which of `recipients` a portfolio messaged since `since_ms` (they cost no quota).
pub fn recipients_in_window(
    conn: &mut DbConnection,
    portfolio_id: &str,
    recipients: &[String],
    since_ms: i64,
) -> Result<std::collections::HashSet<String>, StorageError> {
    let mut found = std::collections::HashSet::new();
    // PostgreSQL binds the list as one array; SQLite binds each value (its limit is 32 766).
    let chunk_len = match conn {
        DbConnection::Postgres(_) => 20_000,
        DbConnection::Sqlite(_) => 1_000,
    };
    for chunk in recipients.chunks(chunk_len) {
        let rows: Vec<String> = quota_ledger::table
            .filter(quota_ledger::portfolio_id.eq(portfolio_id))
            .filter(quota_ledger::last_sent_at.gt(since_ms))
            .filter(quota_ledger::recipient.eq_any(chunk))
            .select(quota_ledger::recipient)
            .load(conn)?;
        found.extend(rows);
    }
    Ok(found)
}

/// When each recipient counted in a portfolio's window leaves it (last send + 24 h),
/// ascending.
pub fn window_expiries(
    conn: &mut DbConnection,
    portfolio_id: &str,
    since_ms: i64,
) -> Result<Vec<i64>, StorageError> {
    let sent: Vec<i64> = quota_ledger::table
        .filter(quota_ledger::portfolio_id.eq(portfolio_id))
        .filter(quota_ledger::last_sent_at.gt(since_ms))
        .order(quota_ledger::last_sent_at)
        .select(quota_ledger::last_sent_at)
        .load(conn)?;
    Ok(sent
        .into_iter()
        .map(|t| t + crate::domain::eta::WINDOW_MS)
        .collect())
}

/// The ledger entries of a portfolio inside the window (recipient, last sent), for the
/// limiter to rebuild its quota after a restart.
pub fn quota_window(
    conn: &mut DbConnection,
    portfolio_id: &str,
    since_ms: i64,
) -> Result<Vec<(String, i64)>, StorageError> {
    Ok(quota_ledger::table
        .filter(quota_ledger::portfolio_id.eq(portfolio_id))
        .filter(quota_ledger::last_sent_at.gt(since_ms))
        .select((quota_ledger::recipient, quota_ledger::last_sent_at))
        .load(conn)?)
}
