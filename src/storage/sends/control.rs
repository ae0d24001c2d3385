//! Cancel, pause, resume and stop: a send's lifecycle changes.

use diesel::prelude::*;

use super::*;
use crate::domain::message::{BulkStatus, EngineStep};
use crate::storage::schema::{bulk_sends, messages};
use crate::storage::{status, DbConnection, StorageError};

/// Cancels a send: every pending message becomes `cancelled` (in-flight ones finish), the
/// status becomes `CANCELLED`. Returns `false` when the send had already finished.
pub fn cancel_send(
    conn: &mut DbConnection,
    send_id: &str,
    now_ms: i64,
) -> Result<bool, StorageError> {
    let Some(row) = load_send(conn, send_id)? else {
        return Ok(false);
    };
    if row.status().is_finished() {
        return Ok(false);
    }
    let step = EngineStep::CancelPending;
    let n = diesel::update(
        messages::table
            .filter(of_send(send_id))
            .filter(messages::state.eq(step.from().as_str())),
    )
    .set(messages::state.eq(step.to().as_str()))
    .execute(conn)?;
    diesel::update(bulk_sends::table.find(send_id))
        .set((
            bulk_sends::status.eq(BulkStatus::Cancelled.as_str()),
            bulk_sends::paused.eq(false),
        ))
        .execute(conn)?;
    status::adjust_counters(conn, send_id, &CounterDelta::moved_many(step, n), now_ms)?;
    // The status was set above, not derived, so `refresh_status` saw no change to report.
    status::enqueue_status_change(conn, &row, now_ms)?;
    Ok(true)
}

/// Stops a send for good after a fatal error: pending messages fail with `reason`, the
/// status becomes `FAILED` with the reason recorded.
pub fn stop_send(
    conn: &mut DbConnection,
    send_id: &str,
    reason: &str,
    now_ms: i64,
) -> Result<(), StorageError> {
    let step = EngineStep::StopPending;
    let n = diesel::update(
        messages::table
            .filter(of_send(send_id))
            .filter(messages::state.eq(step.from().as_str())),
    )
    .set((
        messages::state.eq(step.to().as_str()),
        messages::failed_at.eq(now_ms),
        messages::error_message.eq(reason),
    ))
    .execute(conn)?;
    diesel::update(bulk_sends::table.find(send_id))
        .set((
            bulk_sends::failure_reason.eq(reason),
            bulk_sends::paused.eq(false),
        ))
        .execute(conn)?;
    status::adjust_counters(conn, send_id, &CounterDelta::moved_many(step, n), now_ms)?;
    Ok(())
}

/// Pauses or resumes a send (`reason` shown as `pause_reason`).
pub fn set_paused(
    conn: &mut DbConnection,
    send_id: &str,
    paused: bool,
    reason: Option<&str>,
) -> Result<(), StorageError> {
    diesel::update(bulk_sends::table.find(send_id))
        .set((
            bulk_sends::paused.eq(paused),
            bulk_sends::pause_reason.eq(if paused { reason } else { None }),
        ))
        .execute(conn)?;
    Ok(())
}

/// Sends on a template that are not finished: something still pending, not cancelled, not
/// stopped by a fatal error.
pub fn unfinished_sends_on_template(
    conn: &mut DbConnection,
    template_id: i64,
) -> Result<Vec<BulkSendRow>, StorageError> {
    Ok(bulk_sends::table
        .filter(bulk_sends::template_id.eq(template_id))
        .filter(bulk_sends::pending_count.gt(0))
        .filter(bulk_sends::failure_reason.is_null())
        .filter(bulk_sends::status.ne(BulkStatus::Cancelled.as_str()))
        .order(bulk_sends::created_at)
        .select(BulkSendRow::as_select())
        .load(conn)?)
}

/// Pauses a send with `reason` unless it is already paused (a client's pause keeps its
/// reason, so a later "template approved" does not resume it). Returns whether it changed.
pub fn pause_unless_paused(
    conn: &mut DbConnection,
    send_id: &str,
    reason: &str,
) -> Result<bool, StorageError> {
    let changed = diesel::update(
        bulk_sends::table
            .find(send_id)
            .filter(bulk_sends::paused.eq(false)),
    )
    .set((
        bulk_sends::paused.eq(true),
        bulk_sends::pause_reason.eq(reason),
    ))
    .execute(conn)?;
    Ok(changed > 0)
}

/// Resumes a send if it is paused with exactly `reason`. Returns whether it changed.
pub fn resume_if_paused_with(
    conn: &mut DbConnection,
    send_id: &str,
    reason: &str,
) -> Result<bool, StorageError> {
    let changed = diesel::update(
        bulk_sends::table
            .find(send_id)
            .filter(bulk_sends::paused.eq(true))
            .filter(bulk_sends::pause_reason.eq(reason)),
    )
    .set((
        bulk_sends::paused.eq(false),
        bulk_sends::pause_reason.eq(None::<String>),
    ))
    .execute(conn)?;
    Ok(changed > 0)
}
