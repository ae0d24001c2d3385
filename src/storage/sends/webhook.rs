//! Meta's status webhooks applied to messages, monotonic and duplicate-proof.

use diesel::prelude::*;

use super::*;
use crate::domain::message::{apply_webhook, FailureSource, MessageState, WebhookStatus};
use crate::storage::schema::messages;
use crate::storage::{status, DbConnection, StorageError};

/// A status update from a Meta webhook, resolved to our message where possible.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusUpdate {
    /// Our message id from `biz_opaque_callback_data`, when present.
    pub message_id: Option<i64>,
    pub wamid: String,
    pub status: WebhookStatus,
    /// When Meta says it happened (unix ms).
    pub at_ms: i64,
    /// Meta's error on `failed`.
    pub error: Option<(i64, String)>,
}

/// What applying webhook updates did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AppliedUpdates {
    pub applied: usize,
    pub duplicates: usize,
    pub unknown: usize,
    /// Sends whose counters changed.
    pub touched_sends: Vec<String>,
}

/// Applies webhook status updates monotonically (see `domain::message::apply_webhook`),
/// adjusting each touched send's counters once.
pub fn apply_status_updates(
    conn: &mut DbConnection,
    updates: &[StatusUpdate],
    now_ms: i64,
) -> Result<AppliedUpdates, StorageError> {
    let mut result = AppliedUpdates::default();
    let mut deltas: Vec<(String, CounterDelta)> = Vec::new();
    for update in updates {
        type Current = (
            i64,
            String,
            String,
            Option<String>,
            Option<i64>,
            Option<i64>,
            Option<i64>,
        );
        let by_id: Option<Current> = match update.message_id {
            Some(id) => messages::table
                .find(id)
                .select(CURRENT_COLUMNS)
                .first(conn)
                .optional()?
                .filter(|row: &Current| row.3.as_deref().is_none_or(|w| w == update.wamid)),
            None => None,
        };
        let found = match by_id {
            Some(row) => Some(row),
            None => messages::table
                .filter(messages::wamid.eq(&update.wamid))
                .select(CURRENT_COLUMNS)
                .first(conn)
                .optional()?,
        };
        let Some((id, send_id, state, wamid, error_code, sent_at, delivered_at)) = found else {
            result.unknown += 1;
            continue;
        };
        let Ok(current) = state.parse::<MessageState>() else {
            result.unknown += 1;
            continue;
        };
        let Some(next) = apply_webhook(
            current,
            update.status,
            FailureSource::from_meta_code(error_code),
        ) else {
            result.duplicates += 1;
            continue;
        };
        let row = WebhookTarget {
            id,
            from: current,
            to: next,
            wamid: wamid.unwrap_or_else(|| update.wamid.clone()),
            sent_at,
            delivered_at,
        };
        if !row.apply(conn, update)? {
            result.duplicates += 1;
            continue;
        }
        result.applied += 1;
        match deltas.iter_mut().find(|(s, _)| *s == send_id) {
            Some((_, d)) => d.moved(current, next),
            None => {
                let mut d = CounterDelta::default();
                d.moved(current, next);
                deltas.push((send_id, d));
            }
        }
    }
    for (send_id, delta) in &deltas {
        status::adjust_counters(conn, send_id, delta, now_ms)?;
    }
    result.touched_sends = deltas.into_iter().map(|(s, _)| s).collect();
    Ok(result)
}

/// The columns read before applying a webhook to a message.
const CURRENT_COLUMNS: (
    messages::id,
    messages::bulk_send_id,
    messages::state,
    messages::wamid,
    messages::error_code,
    messages::sent_at,
    messages::delivered_at,
) = (
    messages::id,
    messages::bulk_send_id,
    messages::state,
    messages::wamid,
    messages::error_code,
    messages::sent_at,
    messages::delivered_at,
);

/// One message about to move because of a webhook, with the times it already has.
struct WebhookTarget {
    id: i64,
    from: MessageState,
    to: MessageState,
    wamid: String,
    sent_at: Option<i64>,
    delivered_at: Option<i64>,
}

impl WebhookTarget {
    /// Moves the message if it is still in `from`, filling the funnel's times: a `read`
    /// implies delivered and sent, a `delivered` implies sent. Returns whether it moved.
    fn apply(&self, conn: &mut DbConnection, update: &StatusUpdate) -> Result<bool, StorageError> {
        let at = update.at_ms;
        let target = message_in_state(self.id, self.from.as_str());
        let state = messages::state.eq(self.to.as_str());
        let wamid = messages::wamid.eq(&self.wamid);
        let sent_at = messages::sent_at.eq(self.sent_at.unwrap_or(at));
        let changed = match self.to {
            MessageState::Sent => diesel::update(target)
                .set((state, wamid, sent_at))
                .execute(conn)?,
            MessageState::Delivered => diesel::update(target)
                .set((state, wamid, sent_at, messages::delivered_at.eq(at)))
                .execute(conn)?,
            MessageState::Read => diesel::update(target)
                .set((
                    state,
                    wamid,
                    sent_at,
                    messages::delivered_at.eq(self.delivered_at.unwrap_or(at)),
                    messages::read_at.eq(at),
                ))
                .execute(conn)?,
            MessageState::Failed => {
                let (code, message) = match &update.error {
                    Some((code, message)) => (Some(*code), Some(message.as_str())),
                    None => (None, Some("failed (Meta gave no error)")),
                };
                diesel::update(target)
                    .set((
                        state,
                        wamid,
                        messages::failed_at.eq(at),
                        messages::error_code.eq(code),
                        messages::error_message.eq(message),
                    ))
                    .execute(conn)?
            }
            MessageState::Pending | MessageState::Dispatching | MessageState::Cancelled => 0,
        };
        if changed == 1 && self.from == MessageState::Failed {
            // Meta's word overrides a failure we decided on our own (unknown outcome).
            diesel::update(messages::table.find(self.id))
                .set((
                    messages::failed_at.eq(None::<i64>),
                    messages::error_code.eq(None::<i64>),
                    messages::error_message.eq(None::<String>),
                ))
                .execute(conn)?;
        }
        Ok(changed == 1)
    }
}
