//! Bulk sends and their messages: creation, the reads behind the API, and every state
//! change the engine and the webhook ingestion make.
//!
//! Counters live on the `bulk_sends` row, one column per exact state (`pending_count`
//! includes `dispatching`), and change in the same transaction as the messages they count,
//! always by relative increments; the status is re-derived from them right after
//! ([`crate::domain::message::derive_status`]). Every message update names the state it
//! expects (`WHERE id = ? AND state = ?`) and counts only if a row changed, so two writers
//! racing on one message (an HTTP answer and a webhook) can never count it twice.
//!
//! - `create`: the send row and its messages.
//! - `read`: the reads behind the API.
//! - `dispatch`: the engine's path: due messages, the `dispatching` mark, outcomes.
//! - `webhook`: Meta's statuses, monotonic and duplicate-proof.
//! - `control`: cancel, pause, resume, stop.
//!
//! This file holds the rows and what they share: counters and the status derived from them.
//! The quota ledger is `storage::quota`.

use diesel::prelude::*;

use crate::domain::lifecycle::StoredPhase;
use crate::domain::message::{derive_status, BulkStatus, Counters};
use crate::storage::schema::{bulk_sends, messages};
use crate::storage::{DbConnection, StorageError};

mod control;
mod create;
mod dispatch;
mod read;
mod webhook;

pub use control::*;
pub use create::*;
pub use dispatch::*;
pub use read::*;
pub use webhook::*;

/// A bulk send as stored.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = bulk_sends)]
pub struct BulkSendRow {
    pub id: String,
    pub tenant_id: i64,
    pub api_key_id: i64,
    pub phone_number_id: i64,
    pub template_id: i64,
    pub task_id: String,
    pub status: String,
    pub total_submitted: i32,
    pub unique_recipients: i32,
    pub invalid_recipients: i32,
    pub pending_count: i32,
    pub sent_count: i32,
    pub delivered_count: i32,
    pub read_count: i32,
    pub failed_count: i32,
    pub cancelled_count: i32,
    pub estimated_time_minutes: f64,
    pub paused: bool,
    pub pause_reason: Option<String>,
    pub failure_reason: Option<String>,
    pub callback_url: Option<String>,
    pub scheduled_at: Option<i64>,
    pub created_at: i64,
    pub started_at: Option<i64>,
    pub completed_at: Option<i64>,
}

impl BulkSendRow {
    /// The send's lifecycle as stored (its actor's phase follows it).
    pub fn stored_phase(&self) -> StoredPhase {
        StoredPhase {
            paused: self.paused,
            cancelled: self.status() == BulkStatus::Cancelled,
            failure_reason: self.failure_reason.clone(),
        }
    }

    /// The per-state counts.
    pub fn counters(&self) -> Counters {
        let n = |v: i32| u64::try_from(v).unwrap_or(0);
        Counters {
            pending: n(self.pending_count),
            sent: n(self.sent_count),
            delivered: n(self.delivered_count),
            read: n(self.read_count),
            failed: n(self.failed_count),
            cancelled: n(self.cancelled_count),
        }
    }

    /// The stored status.
    pub fn status(&self) -> BulkStatus {
        self.status.parse().unwrap_or(BulkStatus::Processing)
    }

    /// Whether nothing is left to send or reconcile.
    pub fn is_settled(&self) -> bool {
        self.pending_count == 0
    }
}

/// A send with what its status object shows of its template, number and creating key.
#[derive(Debug, Clone)]
pub struct SendDetail {
    pub send: BulkSendRow,
    pub template: (i64, String, String, String),
    pub phone: (i64, String, String),
    pub api_key: (i64, String),
}

/// A message as the API lists it.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = messages)]
pub struct MessageRow {
    pub id: i64,
    pub seq: i32,
    pub recipient: String,
    pub variables: String,
    pub state: String,
    pub attempts: i32,
    pub wamid: Option<String>,
    pub sent_at: Option<i64>,
    pub delivered_at: Option<i64>,
    pub read_at: Option<i64>,
    pub failed_at: Option<i64>,
    pub error_code: Option<i64>,
    pub error_message: Option<String>,
}

/// A pending message as the engine loads it to dispatch.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = messages)]
pub struct PendingMessage {
    pub id: i64,
    pub recipient: String,
    pub variables: String,
    pub button_variables: String,
    pub attempts: i32,
    pub next_attempt_at: i64,
}

/// A message whose dispatch outcome is unknown.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = messages)]
pub struct DispatchingMessage {
    pub id: i64,
    pub recipient: String,
    pub dispatched_at: Option<i64>,
}

/// What a new send stores.
#[derive(Debug, Clone)]
pub struct NewSend {
    pub id: String,
    pub tenant_id: i64,
    pub api_key_id: i64,
    pub phone_number_id: i64,
    pub template_id: i64,
    pub task_id: String,
    pub total_submitted: i32,
    pub invalid_recipients: i32,
    pub estimated_time_minutes: f64,
    pub callback_url: Option<String>,
    pub scheduled_at: Option<i64>,
    pub created_at: i64,
}

/// One recipient of a new send.
#[derive(Debug, Clone)]
pub struct NewMessage {
    pub recipient: String,
    /// JSON object of the template variables.
    pub variables: String,
    /// JSON object of the button variables.
    pub button_variables: String,
}

pub use crate::domain::message::CounterDelta;

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
    let Some(row) = load_send(conn, send_id)? else {
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
        crate::storage::callbacks::enqueue_status_change(conn, &row, now_ms)?;
    }
    Ok(Some(status))
}

/// How a dispatch attempt ended (decided in `domain::dispatch`).
pub use crate::domain::dispatch::Outcome;

/// One message, if it is still in `state` (every engine update names the state it expects).
#[diesel::dsl::auto_type]
pub(super) fn message_in_state(id: i64, state: &'static str) -> _ {
    messages::table
        .filter(messages::id.eq(id))
        .filter(messages::state.eq(state))
}
