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
use crate::domain::message::{BulkStatus, Counters};
use crate::storage::schema::{api_keys, bulk_sends, messages, phone_numbers, templates};

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
    pub suppressed_count: i32,
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
            suppressed: n(self.suppressed_count),
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
#[derive(Debug, Clone, Queryable)]
pub struct SendDetail {
    pub send: BulkSendRow,
    pub template: TemplateSummary,
    pub phone: NumberSummary,
    pub api_key: KeySummary,
}

/// What a status object shows of a send's template.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = templates)]
pub struct TemplateSummary {
    pub id: i64,
    pub name: String,
    pub language: String,
    pub status: String,
}

/// What a status object shows of a send's number.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = phone_numbers)]
pub struct NumberSummary {
    pub id: i64,
    pub display_phone_number: String,
    pub verified_name: String,
}

/// What a status object shows of the key that created a send.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = api_keys)]
pub struct KeySummary {
    pub id: i64,
    pub name: String,
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
    /// `Some(why)` when the recipient is suppressed: stored as `suppressed` with `why` as its
    /// `error_message`, never sent.
    pub suppressed: Option<String>,
}

pub use crate::domain::message::CounterDelta;

/// How a dispatch attempt ended (decided in `domain::dispatch`).
pub use crate::domain::dispatch::Outcome;

/// The messages of the send `send_id`. They name their send by its `send_key`, read here by
/// the send's id in a scalar subquery that the database evaluates once, so the indexes that
/// begin with the key (`messages_due`, `messages_send_seq`) serve the rest of the query.
#[diesel::dsl::auto_type]
pub fn of_send<'a>(send_id: &'a str) -> _ {
    messages::send_key.nullable().eq(bulk_sends::table
        .filter(bulk_sends::id.eq(send_id))
        .select(bulk_sends::send_key)
        .single_value())
}

/// One message, if it is still in `state` (every engine update names the state it expects).
#[diesel::dsl::auto_type]
pub(super) fn message_in_state(id: i64, state: &'static str) -> _ {
    messages::table
        .filter(messages::id.eq(id))
        .filter(messages::state.eq(state))
}
