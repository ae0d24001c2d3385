//! The outbox of client callback events (API.md, "Client events"), for sends with a
//! `callback_url`: the events as stored, and their delivery's bookkeeping. Which events are
//! inserted, and when, is `super::status`'s (in the transaction of the change they report).
//!
//! - Nothing is rendered at delivery time except the signature (the secret is read then, so a
//!   rotated secret applies to events still waiting).
//! - The delivery actor (`engine::callbacks`) takes each send's oldest undelivered event
//!   only ([`due_events`]) and [`claim`]s it before posting: a send's events reach the
//!   receiver in order, a later one never before an earlier one was delivered or given up,
//!   and no event has two attempts under way (even with several daemons on one database).

use diesel::prelude::*;

use super::schema::{bulk_sends, callback_events, tenants};
use super::{DbConnection, StorageError};
use crate::domain::callback::EventKind;

/// Longest `last_error` kept.
const MAX_ERROR_LEN: usize = 500;

/// An event as stored.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = callback_events)]
pub struct CallbackEventRow {
    pub id: i64,
    pub bulk_send_id: String,
    pub tenant_id: i64,
    pub event: String,
    pub occurred_at: i64,
    pub payload: String,
    pub attempts: i32,
    pub next_attempt_at: i64,
    pub delivered_at: Option<i64>,
    pub failed_at: Option<i64>,
    pub last_error: Option<String>,
}

/// An event due for an attempt, with where it goes and what signs it. (Fields in the order
/// [`due_events`] selects them.)
#[derive(Debug, Clone, Queryable)]
pub struct DueEvent {
    pub id: i64,
    pub bulk_send_id: String,
    pub event: String,
    pub occurred_at: i64,
    /// The body to post.
    pub payload: String,
    /// Attempts made so far.
    pub attempts: i32,
    /// When it became due (what [`claim`] expects to find).
    pub next_attempt_at: i64,
    /// The send's `callback_url`.
    pub callback_url: Option<String>,
    /// The tenant's webhook secret, encrypted (`storage::secrets::open_webhook_secret`).
    pub webhook_secret: String,
    /// The id of the key that encrypted it.
    pub webhook_secret_key_id: Option<String>,
}

/// Whether any event of the send waits for delivery.
pub(super) fn has_undelivered(
    conn: &mut DbConnection,
    send_id: &str,
) -> Result<bool, StorageError> {
    let waiting: i64 = callback_events::table
        .filter(callback_events::bulk_send_id.eq(send_id))
        .filter(callback_events::delivered_at.is_null())
        .filter(callback_events::failed_at.is_null())
        .count()
        .get_result(conn)?;
    Ok(waiting > 0)
}

/// Inserts an event (its body rendered by `super::status`).
pub(super) fn insert(
    conn: &mut DbConnection,
    send_id: &str,
    tenant_id: i64,
    kind: EventKind,
    now_ms: i64,
    payload: &str,
) -> Result<(), StorageError> {
    diesel::insert_into(callback_events::table)
        .values((
            callback_events::bulk_send_id.eq(send_id),
            callback_events::tenant_id.eq(tenant_id),
            callback_events::event.eq(kind.as_str()),
            callback_events::occurred_at.eq(now_ms),
            callback_events::payload.eq(payload),
            callback_events::next_attempt_at.eq(now_ms),
        ))
        .execute(conn)?;
    Ok(())
}

/// Up to `limit` events due by `now_ms`, each the oldest undelivered event of its send,
/// soonest due first.
pub fn due_events(
    conn: &mut DbConnection,
    now_ms: i64,
    limit: i64,
) -> Result<Vec<DueEvent>, StorageError> {
    let waiting = diesel::alias!(callback_events as waiting);
    let heads = waiting
        .filter(waiting.field(callback_events::delivered_at).is_null())
        .filter(waiting.field(callback_events::failed_at).is_null())
        .group_by(waiting.field(callback_events::bulk_send_id))
        .select(diesel::dsl::min(waiting.field(callback_events::id)));
    Ok(callback_events::table
        .inner_join(bulk_sends::table)
        .inner_join(tenants::table)
        .filter(callback_events::id.nullable().eq_any(heads))
        .filter(callback_events::next_attempt_at.le(now_ms))
        .order((callback_events::next_attempt_at, callback_events::id))
        .limit(limit)
        .select((
            callback_events::id,
            callback_events::bulk_send_id,
            callback_events::event,
            callback_events::occurred_at,
            callback_events::payload,
            callback_events::attempts,
            callback_events::next_attempt_at,
            bulk_sends::callback_url,
            tenants::webhook_secret,
            tenants::webhook_secret_key_id,
        ))
        .load(conn)?)
}

/// Claims a due event for one attempt: its due time moves to `lease_until`, so that
/// neither a read made before the previous attempt's outcome was written nor another daemon
/// on the same database starts a second attempt meanwhile. The attempt's outcome sets the
/// real next due time; an attempt cut short by a stop is made again once the lease ends.
/// Returns `false` when the event is no longer as it was read, due at `seen_due_at`
/// (delivered, given up, rescheduled or claimed since).
pub fn claim(
    conn: &mut DbConnection,
    id: i64,
    seen_due_at: i64,
    lease_until: i64,
) -> Result<bool, StorageError> {
    let claimed = diesel::update(
        undelivered(id)
            .filter(callback_events::failed_at.is_null())
            .filter(callback_events::next_attempt_at.eq(seen_due_at)),
    )
    .set(callback_events::next_attempt_at.eq(lease_until))
    .execute(conn)?;
    Ok(claimed == 1)
}

/// One event, if it is not delivered yet (an attempt's outcome is written only then).
#[diesel::dsl::auto_type]
fn undelivered(id: i64) -> _ {
    callback_events::table
        .find(id)
        .filter(callback_events::delivered_at.is_null())
}

/// The event was delivered (a 2xx answer) at `now_ms`.
pub fn mark_delivered(conn: &mut DbConnection, id: i64, now_ms: i64) -> Result<(), StorageError> {
    diesel::update(undelivered(id))
        .set((
            callback_events::attempts.eq(callback_events::attempts + 1),
            callback_events::delivered_at.eq(now_ms),
        ))
        .execute(conn)?;
    Ok(())
}

/// An attempt failed with `error`; the next one is due at `next_attempt_at`.
pub fn mark_retry(
    conn: &mut DbConnection,
    id: i64,
    next_attempt_at: i64,
    error: &str,
) -> Result<(), StorageError> {
    diesel::update(undelivered(id))
        .set((
            callback_events::attempts.eq(callback_events::attempts + 1),
            callback_events::next_attempt_at.eq(next_attempt_at),
            callback_events::last_error.eq(clip(error)),
        ))
        .execute(conn)?;
    Ok(())
}

/// An attempt failed with `error` and the event's retry window is over: it is given up.
pub fn mark_given_up(
    conn: &mut DbConnection,
    id: i64,
    now_ms: i64,
    error: &str,
) -> Result<(), StorageError> {
    diesel::update(undelivered(id))
        .set((
            callback_events::attempts.eq(callback_events::attempts + 1),
            callback_events::failed_at.eq(now_ms),
            callback_events::last_error.eq(clip(error)),
        ))
        .execute(conn)?;
    Ok(())
}

/// Deletes events delivered or given up before `before_ms`, except each send's latest
/// event (the progress rate and the "did anything change" check read it). Returns how many
/// went.
pub fn purge_settled(conn: &mut DbConnection, before_ms: i64) -> Result<usize, StorageError> {
    let each = diesel::alias!(callback_events as each);
    let latest = each
        .group_by(each.field(callback_events::bulk_send_id))
        .select(diesel::dsl::max(each.field(callback_events::id)));
    let settled_before = callback_events::delivered_at
        .lt(before_ms)
        .or(callback_events::failed_at.lt(before_ms));
    let gone = diesel::delete(
        callback_events::table
            .filter(settled_before)
            .filter(callback_events::id.nullable().ne_all(latest)),
    )
    .execute(conn)?;
    Ok(gone)
}

/// When the send's latest event occurred, and its body.
pub(super) fn latest_event(
    conn: &mut DbConnection,
    send_id: &str,
) -> Result<Option<(i64, String)>, StorageError> {
    Ok(callback_events::table
        .filter(callback_events::bulk_send_id.eq(send_id))
        .order(callback_events::id.desc())
        .select((callback_events::occurred_at, callback_events::payload))
        .first(conn)
        .optional()?)
}

/// Every event of a send, oldest first.
pub fn events_of_send(
    conn: &mut DbConnection,
    send_id: &str,
) -> Result<Vec<CallbackEventRow>, StorageError> {
    Ok(callback_events::table
        .filter(callback_events::bulk_send_id.eq(send_id))
        .order(callback_events::id)
        .select(CallbackEventRow::as_select())
        .load(conn)?)
}

fn clip(error: &str) -> String {
    match error.char_indices().nth(MAX_ERROR_LEN) {
        Some((end, _)) => format!("{}…", &error[..end]),
        None => error.to_owned(),
    }
}
