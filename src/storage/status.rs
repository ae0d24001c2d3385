//! A send's status transition: its counters move, its status is derived again from them, and
//! a change of status puts the client's `bulk_send.status_changed` event in the outbox, all in
//! the caller's transaction; and the `bulk_send.progress` events a processing send owes.
//!
//! The layers, so that nothing imports back: `sends` rows and reads, the outbox
//! (`callbacks`) and the status object (`status_object`) know nothing of this module; this
//! module uses them; the message transitions (`sends::{create, dispatch, webhook, control}`)
//! and the engine use this module.
//!
//! - `bulk_send.status_changed` is inserted by [`enqueue_status_change`], from
//!   [`refresh_status`] (every counter change ends there) and from `sends::cancel_send`
//!   (which sets `CANCELLED` itself): a status change is never committed without its event,
//!   nor an event without its change.
//! - `bulk_send.progress` is inserted by [`enqueue_progress`] for a processing send when its
//!   latest event is at least 5 s old, none of its events is waiting for delivery, and its
//!   status object changed since that latest event. So a receiver that is down gets one
//!   up-to-date progress event when it comes back, not a backlog of stale ones, and a send
//!   waiting a day for its quota window does not post the same numbers every 5 s.
//! - The event's body, `data` included, is rendered when the event is inserted, inside that
//!   transaction: `data` is the status object as it was at that moment (for a status change,
//!   with the new status), and every attempt posts the same bytes.

use diesel::prelude::*;
use serde_json::Value;

use super::callbacks;
use super::schema::bulk_sends;
use super::sends::{self, BulkSendRow, CounterDelta};
use super::status_object::status_body;
use super::{DbConnection, StorageError};
use crate::domain::callback::{self, EventKind};
use crate::domain::message::{derive_status, BulkStatus};

/// Applies counter changes to a send and re-derives its status; returns the new status.
pub fn adjust_counters(
    conn: &mut DbConnection,
    send_id: &str,
    delta: &CounterDelta,
    now_ms: i64,
) -> Result<Option<BulkStatus>, StorageError> {
    if !delta.is_zero() {
        diesel::update(bulk_sends::table.find(send_id))
            .set((
                bulk_sends::pending_count.eq(bulk_sends::pending_count + delta.pending),
                bulk_sends::sent_count.eq(bulk_sends::sent_count + delta.sent),
                bulk_sends::delivered_count.eq(bulk_sends::delivered_count + delta.delivered),
                bulk_sends::read_count.eq(bulk_sends::read_count + delta.read),
                bulk_sends::failed_count.eq(bulk_sends::failed_count + delta.failed),
                bulk_sends::cancelled_count.eq(bulk_sends::cancelled_count + delta.cancelled),
                bulk_sends::suppressed_count.eq(bulk_sends::suppressed_count + delta.suppressed),
            ))
            .execute(conn)?;
    }
    refresh_status(conn, send_id, now_ms)
}

/// Re-derives a send's status from its counters and flags; sets `completed_at` the first
/// time it settles. A change of status enqueues the client's `bulk_send.status_changed`
/// event in the same transaction (for sends with a `callback_url`, see `callbacks`).
pub fn refresh_status(
    conn: &mut DbConnection,
    send_id: &str,
    now_ms: i64,
) -> Result<Option<BulkStatus>, StorageError> {
    let Some(row) = sends::load_send(conn, send_id)? else {
        return Ok(None);
    };
    let current = row.status();
    let status = derive_status(
        &row.counters(),
        row.started_at.is_some(),
        current == BulkStatus::Cancelled,
        row.failure_reason.is_some(),
    );
    let completed_at = match row.completed_at {
        None if row.is_settled() && status.is_finished() => Some(now_ms),
        other => other,
    };
    if status != current || completed_at != row.completed_at {
        diesel::update(bulk_sends::table.find(send_id))
            .set((
                bulk_sends::status.eq(status.as_str()),
                bulk_sends::completed_at.eq(completed_at),
            ))
            .execute(conn)?;
    }
    if status != current {
        // The client's event commits (or not) with the change it reports.
        enqueue_status_change(conn, &row, now_ms)?;
    }
    Ok(Some(status))
}

/// Inserts a `bulk_send.status_changed` event for `send` (read before the change) if it has
/// a `callback_url`; `data` is its status object as the current transaction sees it, so
/// call this after writing the new status. Returns whether an event was inserted.
pub fn enqueue_status_change(
    conn: &mut DbConnection,
    send: &BulkSendRow,
    now_ms: i64,
) -> Result<bool, StorageError> {
    if send.callback_url.is_none() {
        return Ok(false);
    }
    let Some(data) = status_data(conn, send)? else {
        return Ok(false);
    };
    let payload = callback::event_body(EventKind::StatusChanged, &send.id, now_ms, &data);
    callbacks::insert(
        conn,
        &send.id,
        send.tenant_id,
        EventKind::StatusChanged,
        now_ms,
        &payload,
    )?;
    Ok(true)
}

/// Processing sends with a `callback_url` that owe a progress event now (see the module
/// doc). A read: [`enqueue_progress`] checks again in the write that inserts.
pub fn progress_due(conn: &mut DbConnection, now_ms: i64) -> Result<Vec<String>, StorageError> {
    let candidates: Vec<String> = bulk_sends::table
        .filter(bulk_sends::status.eq(BulkStatus::Processing.as_str()))
        .filter(bulk_sends::callback_url.is_not_null())
        .order(bulk_sends::created_at)
        .select(bulk_sends::id)
        .load(conn)?;
    let mut due = Vec::new();
    for id in candidates {
        if progress_payload(conn, &id, now_ms)?.is_some() {
            due.push(id);
        }
    }
    Ok(due)
}

/// Inserts a `bulk_send.progress` event for a send if it owes one now (see the module doc).
/// Returns whether an event was inserted.
pub fn enqueue_progress(
    conn: &mut DbConnection,
    send_id: &str,
    now_ms: i64,
) -> Result<bool, StorageError> {
    let Some((send, payload)) = progress_payload(conn, send_id, now_ms)? else {
        return Ok(false);
    };
    callbacks::insert(
        conn,
        &send.id,
        send.tenant_id,
        EventKind::Progress,
        now_ms,
        &payload,
    )?;
    Ok(true)
}

/// The body of the progress event a send owes now, if it owes one.
fn progress_payload(
    conn: &mut DbConnection,
    send_id: &str,
    now_ms: i64,
) -> Result<Option<(BulkSendRow, String)>, StorageError> {
    let Some(send) = sends::load_send(conn, send_id)? else {
        return Ok(None);
    };
    if send.status() != BulkStatus::Processing || send.callback_url.is_none() {
        return Ok(None);
    }
    if callbacks::has_undelivered(conn, send_id)? {
        return Ok(None);
    }
    let latest = callbacks::latest_event(conn, send_id)?;
    if !callback::progress_allowed(latest.as_ref().map(|(at, _)| *at), now_ms) {
        return Ok(None);
    }
    let Some(data) = status_data(conn, &send)? else {
        return Ok(None);
    };
    if let Some((_, payload)) = &latest {
        let previous: Option<Value> = serde_json::from_str::<Value>(payload)
            .ok()
            .and_then(|mut body| body.get_mut("data").map(Value::take));
        if previous.as_ref() == Some(&data) {
            return Ok(None);
        }
    }
    let payload = callback::event_body(EventKind::Progress, send_id, now_ms, &data);
    Ok(Some((send, payload)))
}

/// The send's status object as JSON.
fn status_data(conn: &mut DbConnection, send: &BulkSendRow) -> Result<Option<Value>, StorageError> {
    let Some(detail) = sends::load_detail(conn, send.tenant_id, &send.id)? else {
        return Ok(None);
    };
    Ok(serde_json::to_value(status_body(detail, true)).ok())
}
