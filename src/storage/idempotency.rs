//! `Idempotency-Key` records: same key + same body within 24 h replays the first answer;
//! same key + another body is refused; a request still in progress makes a twin wait (409).
//!
//! A key is claimed in its own short transaction before the work starts, and completed in
//! the same transaction that stores the send, so a crash can never leave a send without its
//! record or a record pointing at nothing. A claim whose request died before completing
//! (a crash mid-request) is taken over once it is older than the staleness limit.

use diesel::prelude::*;

use super::schema::idempotency_keys;
use super::{DbConnection, StorageError};

/// How long a key is remembered.
pub const KEY_TTL_MS: i64 = 24 * 60 * 60 * 1000;
/// After this long an unfinished claim is considered abandoned.
pub const STALE_CLAIM_MS: i64 = 5 * 60 * 1000;

/// What claiming a key found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// The key is ours: do the work, then [`complete`] it (or [`release`] it on refusal).
    Claimed,
    /// The same request was answered before: answer this again.
    Replay { status: u16, body: String },
    /// The same request is being processed right now.
    InProgress,
    /// The key was used for a different request.
    Reused,
}

/// Claims `key` for a request whose body hashes to `request_hash` (call in a write
/// transaction).
pub fn claim(
    conn: &mut DbConnection,
    tenant_id: i64,
    key: &str,
    request_hash: &str,
    now_ms: i64,
) -> Result<Claim, StorageError> {
    let target = idempotency_keys::table
        .filter(idempotency_keys::tenant_id.eq(tenant_id))
        .filter(idempotency_keys::idempotency_key.eq(key));
    let existing: Option<(String, Option<i32>, Option<String>, i64)> = target
        .select((
            idempotency_keys::request_hash,
            idempotency_keys::response_status,
            idempotency_keys::response_body,
            idempotency_keys::created_at,
        ))
        .first(conn)
        .optional()?;
    let take = match existing {
        None => false,
        Some((_, _, _, created)) if created <= now_ms - KEY_TTL_MS => true,
        Some((hash, _, _, _)) if hash != request_hash => return Ok(Claim::Reused),
        Some((_, Some(status), Some(body), _)) => {
            return Ok(Claim::Replay {
                status: u16::try_from(status).unwrap_or(500),
                body,
            })
        }
        Some((_, _, _, created)) if created > now_ms - STALE_CLAIM_MS => {
            return Ok(Claim::InProgress)
        }
        Some(_) => true,
    };
    if take {
        diesel::update(target)
            .set((
                idempotency_keys::request_hash.eq(request_hash),
                idempotency_keys::response_status.eq(None::<i32>),
                idempotency_keys::response_body.eq(None::<String>),
                idempotency_keys::created_at.eq(now_ms),
            ))
            .execute(conn)?;
    } else {
        diesel::insert_into(idempotency_keys::table)
            .values((
                idempotency_keys::tenant_id.eq(tenant_id),
                idempotency_keys::idempotency_key.eq(key),
                idempotency_keys::request_hash.eq(request_hash),
                idempotency_keys::created_at.eq(now_ms),
            ))
            .execute(conn)?;
    }
    Ok(Claim::Claimed)
}

/// Stores the answer of a claimed key.
pub fn complete(
    conn: &mut DbConnection,
    tenant_id: i64,
    key: &str,
    status: u16,
    body: &str,
) -> Result<(), StorageError> {
    diesel::update(
        idempotency_keys::table
            .filter(idempotency_keys::tenant_id.eq(tenant_id))
            .filter(idempotency_keys::idempotency_key.eq(key)),
    )
    .set((
        idempotency_keys::response_status.eq(Some(i32::from(status))),
        idempotency_keys::response_body.eq(Some(body)),
    ))
    .execute(conn)?;
    Ok(())
}

/// Forgets a claim whose request was refused (nothing was created; the key may be used
/// again).
pub fn release(conn: &mut DbConnection, tenant_id: i64, key: &str) -> Result<(), StorageError> {
    diesel::delete(
        idempotency_keys::table
            .filter(idempotency_keys::tenant_id.eq(tenant_id))
            .filter(idempotency_keys::idempotency_key.eq(key))
            .filter(idempotency_keys::response_status.is_null()),
    )
    .execute(conn)?;
    Ok(())
}
