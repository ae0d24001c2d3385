//! The per-message state machine, the bulk-send counters and the bulk-send status.
//!
//! # Message states
//! ```text
//!            ┌──────── retryable error ────────┐
//!            ▼                                 │
//!  pending ──► dispatching ──► sent ──► delivered ──► read
//!    │  │          │  (accepted)  (webhooks, monotonic)
//!    │  │          └─► failed   (permanent error / failed webhook / unknown outcome + policy "fail")
//!    │  └─► failed              (send stopped, failed webhook)
//!    ├─► cancelled              (cancel; only messages not in flight)
//!    └─► suppressed             (the recipient opted out: at creation, or while queued)
//! ```
//! Engine-driven steps are the [`EngineStep`]s (storage guards each update with the step's source
//! state); Meta's status webhooks go through [`apply_webhook`]. Both return `Some(new_state)` when
//! the message moves and `None` when the event does not apply to the current state (a duplicate, a
//! late webhook, a race): a no-op, never an error, because webhooks are retried and reordered by
//! Meta.
//!
//! # Webhook rules (decisions)
//! - Monotonic: `sent < delivered < read`; a lower or equal status than the current one is a no-op.
//!   `read` may arrive without `delivered` (Meta skips it) and implies it.
//! - `failed` wins over `sent` and `delivered` (ARCHITECTURE.md) but **not over `read`**: a message
//!   the user has read cannot have failed, so failed-after-read is a no-op.
//! - A webhook for a `dispatching` message (crash or timeout reconciliation) resolves it, to any
//!   status, including `failed`. So does one for a `pending` message (an earlier attempt whose outcome
//!   was unknown went through after all).
//! - `failed` is final **when Meta said so** ([`FailureSource::Meta`]: an error response or a failed
//!   webhook). When the engine failed the message on its own ([`FailureSource::Local`]: unknown
//!   outcome with policy `fail`, attempts exhausted, send stopped), a later `sent`/`delivered`/`read`
//!   webhook is Meta's word that it *was* sent and moves it to that state. For the same reason a
//!   `cancelled` message (only ever cancelled while pending, i.e. possibly after an unknown-outcome
//!   attempt) moves to `sent`/`delivered`/`read` on such a webhook, and so does a `suppressed` one
//!   (suppressed while pending, for the same reason). A `failed` webhook for a cancelled,
//!   suppressed or already failed message is a no-op (the engine may still record Meta's error).
//! - [`Counters::apply`] moves the message between buckets either way, so the counters keep adding up.
//!
//! # Bulk-send status
//! [`derive_status`] recomputes the status from the counters and three flags every time something
//! changes, so a late failure after the send finished moves `COMPLETED` to `PARTIAL` (or `FAILED`)
//! without special cases.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The state of one message (one unique recipient of a bulk send).
///
/// Stored in the database as [`MessageState::as_str`]; shown in the API as
/// [`MessageState::api_status`], which hides `dispatching` behind `pending`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MessageState {
    /// Not yet accepted by Meta: queued, or waiting for a retry (`next_attempt_at`).
    Pending,
    /// Durably marked just before the HTTP call; until the answer (or a webhook) the outcome is
    /// unknown. Shown as `pending` in the API.
    Dispatching,
    /// Accepted by Meta (HTTP 200 with a wamid, or a `sent` webhook).
    Sent,
    /// Meta reported it delivered to the phone.
    Delivered,
    /// Meta reported it read (implies delivered).
    Read,
    /// Permanently failed: rejected by Meta, failed by webhook, or given up by the engine.
    Failed,
    /// Cancelled before it was dispatched.
    Cancelled,
    /// Never sent because the recipient opted out (a suppression of the send's tenant that
    /// covers the template's category), found at creation or while the message was queued.
    Suppressed,
}

/// The error for a state string that is not one of [`MessageState::as_str`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown message state: {0:?}")]
pub struct UnknownMessageState(pub String);

impl MessageState {
    /// Every state, in pipeline order.
    pub const ALL: [MessageState; 8] = [
        MessageState::Pending,
        MessageState::Dispatching,
        MessageState::Sent,
        MessageState::Delivered,
        MessageState::Read,
        MessageState::Failed,
        MessageState::Cancelled,
        MessageState::Suppressed,
    ];

    /// The lowercase name stored in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            MessageState::Pending => "pending",
            MessageState::Dispatching => "dispatching",
            MessageState::Sent => "sent",
            MessageState::Delivered => "delivered",
            MessageState::Read => "read",
            MessageState::Failed => "failed",
            MessageState::Cancelled => "cancelled",
            MessageState::Suppressed => "suppressed",
        }
    }

    /// The name shown in the API (`dispatching` is an internal detail and shows as `pending`).
    pub fn api_status(self) -> &'static str {
        match self {
            MessageState::Dispatching => MessageState::Pending.as_str(),
            other => other.as_str(),
        }
    }

    /// Position in the delivery funnel, for monotonic webhooks: pending/dispatching 0, sent 1,
    /// delivered 2, read 3; `None` for failed, cancelled and suppressed.
    fn funnel_rank(self) -> Option<u8> {
        match self {
            MessageState::Pending | MessageState::Dispatching => Some(0),
            MessageState::Sent => Some(1),
            MessageState::Delivered => Some(2),
            MessageState::Read => Some(3),
            MessageState::Failed | MessageState::Cancelled | MessageState::Suppressed => None,
        }
    }
}

impl FromStr for MessageState {
    type Err = UnknownMessageState;

    /// Parses the stored name exactly (lowercase), as written by [`MessageState::as_str`].
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        MessageState::ALL
            .into_iter()
            .find(|state| state.as_str() == s)
            .ok_or_else(|| UnknownMessageState(s.to_owned()))
    }
}

impl fmt::Display for MessageState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A delivery status reported by a Meta status webhook, as far as the state machine cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WebhookStatus {
    /// Meta accepted and sent the message.
    Sent,
    /// Delivered to the recipient's phone.
    Delivered,
    /// Read by the recipient (implies delivered).
    Read,
    /// Meta failed the message (with error codes in the webhook).
    Failed,
}

impl WebhookStatus {
    /// The message state this status asks for.
    pub fn target(self) -> MessageState {
        match self {
            WebhookStatus::Sent => MessageState::Sent,
            WebhookStatus::Delivered => MessageState::Delivered,
            WebhookStatus::Read => MessageState::Read,
            WebhookStatus::Failed => MessageState::Failed,
        }
    }
}

/// Who decided that a `failed` message failed; matters only for late success webhooks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FailureSource {
    /// Meta said so (an error response or a `failed` webhook): final.
    Meta,
    /// The engine decided without Meta's word (unknown outcome with policy `fail`, attempts
    /// exhausted, send stopped): a later success webhook from Meta overrides it.
    Local,
}

impl FailureSource {
    /// The source for a stored failure: `Meta` when a Meta error code was recorded, `Local` otherwise
    /// (the engine's own codes such as `unknown_outcome` are not Meta codes).
    pub fn from_meta_code(meta_error_code: Option<i64>) -> FailureSource {
        match meta_error_code {
            Some(_) => FailureSource::Meta,
            None => FailureSource::Local,
        }
    }
}

/// What to do with a message still `dispatching` after the reconcile grace period passed with no
/// webhook naming it (`MINDO_RECONCILE_POLICY`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReconcilePolicy {
    /// Send it again (at-least-once). The default.
    #[default]
    Resend,
    /// Fail it with `unknown_outcome` (at-most-once).
    Fail,
}

/// The error for a reconcile policy string other than `resend` or `fail`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown reconcile policy {0:?} (expected \"resend\" or \"fail\")")]
pub struct UnknownReconcilePolicy(pub String);

impl ReconcilePolicy {
    /// The configuration name: `resend` or `fail`.
    pub fn as_str(self) -> &'static str {
        match self {
            ReconcilePolicy::Resend => "resend",
            ReconcilePolicy::Fail => "fail",
        }
    }
}

impl FromStr for ReconcilePolicy {
    type Err = UnknownReconcilePolicy;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "resend" => Ok(ReconcilePolicy::Resend),
            "fail" => Ok(ReconcilePolicy::Fail),
            _ => Err(UnknownReconcilePolicy(s.to_owned())),
        }
    }
}

/// A change the engine makes to a message (Meta's webhooks go through [`apply_webhook`]).
/// Storage applies each one as an update guarded by [`EngineStep::from`] (`WHERE state IN …`), so a
/// step that no longer applies (a duplicate, a race with a webhook) changes nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EngineStep {
    /// The engine is about to call Meta: `pending → dispatching`. A message that is no longer
    /// pending (cancelled meanwhile) must not be sent.
    StartDispatch,
    /// Meta answered 200 with a wamid: `dispatching → sent`. A no-op when a webhook already
    /// moved the message further (webhooks can beat the HTTP answer).
    Accepted,
    /// Meta did not take the message and it may be retried (a retryable error, a paused number
    /// or template), or its outcome stayed unknown and the policy resends: `dispatching →
    /// pending`, with `next_attempt_at` set by the engine.
    BackToPending,
    /// A permanent failure decided by the engine or Meta's answer (a rejected request, attempts
    /// exhausted, an unknown outcome with policy `fail`): `dispatching → failed`.
    DispatchFailed,
    /// The send stopped on a fatal error: its `pending` messages fail.
    StopPending,
    /// The send was cancelled: `pending → cancelled`. A `dispatching` message is in flight and is
    /// left to finish.
    CancelPending,
    /// A message in flight of a cancelled send was not sent: `dispatching → cancelled`.
    CancelDispatched,
    /// Its recipient opted out while it was queued: `pending → suppressed`. A `dispatching`
    /// message is in flight and is left to finish.
    SuppressPending,
}

impl EngineStep {
    /// The states the step applies to.
    pub fn from(self) -> MessageState {
        match self {
            EngineStep::StartDispatch
            | EngineStep::StopPending
            | EngineStep::CancelPending
            | EngineStep::SuppressPending => MessageState::Pending,
            EngineStep::Accepted
            | EngineStep::BackToPending
            | EngineStep::DispatchFailed
            | EngineStep::CancelDispatched => MessageState::Dispatching,
        }
    }

    /// The state the step moves a message to.
    pub fn to(self) -> MessageState {
        match self {
            EngineStep::StartDispatch => MessageState::Dispatching,
            EngineStep::Accepted => MessageState::Sent,
            EngineStep::BackToPending => MessageState::Pending,
            EngineStep::DispatchFailed | EngineStep::StopPending => MessageState::Failed,
            EngineStep::CancelPending | EngineStep::CancelDispatched => MessageState::Cancelled,
            EngineStep::SuppressPending => MessageState::Suppressed,
        }
    }

    /// The state a message in `current` moves to, or `None` when the step does not apply.
    pub fn apply(self, current: MessageState) -> Option<MessageState> {
        (current == self.from()).then_some(self.to())
    }
}

/// Applies a Meta status webhook to a message, following the rules of the module doc.
///
/// `failure_source` says who failed the message when `current` is `Failed`; it is ignored otherwise.
pub fn apply_webhook(
    current: MessageState,
    status: WebhookStatus,
    failure_source: FailureSource,
) -> Option<MessageState> {
    let target = status.target();
    match current {
        MessageState::Failed => match (failure_source, status) {
            (FailureSource::Local, WebhookStatus::Sent)
            | (FailureSource::Local, WebhookStatus::Delivered)
            | (FailureSource::Local, WebhookStatus::Read) => Some(target),
            _ => None,
        },
        MessageState::Cancelled | MessageState::Suppressed => match status {
            WebhookStatus::Failed => None,
            _ => Some(target),
        },
        MessageState::Read => None,
        _ => {
            if status == WebhookStatus::Failed {
                return Some(MessageState::Failed);
            }
            let now = current.funnel_rank()?;
            let next = target.funnel_rank()?;
            (next > now).then_some(target)
        }
    }
}

/// One value per counter bucket of a bulk send: the per-state counts ([`Counters`]) and the
/// changes applied to them ([`CounterDelta`]).
///
/// Buckets are exclusive (each message is in exactly one); `dispatching` messages count as
/// `pending`. [`Buckets::slot`] is the one place a message state maps to its bucket.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Buckets<T> {
    /// Messages pending or dispatching.
    pub pending: T,
    /// Messages whose furthest state is `sent`.
    pub sent: T,
    /// Messages whose furthest state is `delivered`.
    pub delivered: T,
    /// Messages that were read.
    pub read: T,
    /// Failed messages.
    pub failed: T,
    /// Cancelled messages.
    pub cancelled: T,
    /// Suppressed messages (the recipient opted out).
    pub suppressed: T,
}

impl<T> Buckets<T> {
    /// The bucket a message in `state` counts in.
    pub fn slot(&self, state: MessageState) -> &T {
        match state {
            MessageState::Pending | MessageState::Dispatching => &self.pending,
            MessageState::Sent => &self.sent,
            MessageState::Delivered => &self.delivered,
            MessageState::Read => &self.read,
            MessageState::Failed => &self.failed,
            MessageState::Cancelled => &self.cancelled,
            MessageState::Suppressed => &self.suppressed,
        }
    }

    /// The bucket a message in `state` counts in, to change it.
    pub fn slot_mut(&mut self, state: MessageState) -> &mut T {
        match state {
            MessageState::Pending | MessageState::Dispatching => &mut self.pending,
            MessageState::Sent => &mut self.sent,
            MessageState::Delivered => &mut self.delivered,
            MessageState::Read => &mut self.read,
            MessageState::Failed => &mut self.failed,
            MessageState::Cancelled => &mut self.cancelled,
            MessageState::Suppressed => &mut self.suppressed,
        }
    }
}

/// Per-state message counts of one bulk send, kept live by the engine. The API's funnel
/// counters are views: [`Counters::sent_count`] etc.
pub type Counters = Buckets<u64>;

/// Counter changes of one send, applied as relative increments.
pub type CounterDelta = Buckets<i32>;

impl CounterDelta {
    /// One message moved from `from` to `to`.
    pub fn moved(&mut self, from: MessageState, to: MessageState) {
        *self.slot_mut(from) -= 1;
        *self.slot_mut(to) += 1;
    }

    /// `n` messages took `step`.
    pub fn moved_many(step: EngineStep, n: usize) -> CounterDelta {
        let n = i32::try_from(n).unwrap_or(i32::MAX);
        let mut delta = CounterDelta::default();
        *delta.slot_mut(step.from()) -= n;
        *delta.slot_mut(step.to()) += n;
        delta
    }

    /// Whether nothing changes.
    pub fn is_zero(&self) -> bool {
        *self == CounterDelta::default()
    }
}

impl Counters {
    /// Counts one more message in `state` (a new recipient starts as `pending`).
    pub fn add(&mut self, state: MessageState) {
        let slot = self.slot_mut(state);
        *slot = slot.saturating_add(1);
    }

    /// Moves one message from `from` to `to`. Returns `false`, changing nothing, when the `from`
    /// bucket is empty (a bookkeeping bug upstream): the counters never stop adding up.
    /// Moving between `pending` and `dispatching` changes nothing and returns `true`.
    pub fn apply(&mut self, from: MessageState, to: MessageState) -> bool {
        let source = self.slot_mut(from);
        if *source == 0 {
            return false;
        }
        *source -= 1;
        let target = self.slot_mut(to);
        *target = target.saturating_add(1);
        true
    }

    /// The number of messages in exactly `state`'s bucket (`dispatching` reads the pending bucket).
    pub fn bucket(&self, state: MessageState) -> u64 {
        *self.slot(state)
    }

    /// API `sent_count`: messages Meta accepted = sent + delivered + read.
    pub fn sent_count(&self) -> u64 {
        self.sent
            .saturating_add(self.delivered)
            .saturating_add(self.read)
    }

    /// API `delivered_count`: delivered + read.
    pub fn delivered_count(&self) -> u64 {
        self.delivered.saturating_add(self.read)
    }

    /// API `read_count`.
    pub fn read_count(&self) -> u64 {
        self.read
    }

    /// API `failed_count`.
    pub fn failed_count(&self) -> u64 {
        self.failed
    }

    /// API `pending_count` (includes dispatching).
    pub fn pending_count(&self) -> u64 {
        self.pending
    }

    /// API `cancelled_count`.
    pub fn cancelled_count(&self) -> u64 {
        self.cancelled
    }

    /// API `suppressed_count`.
    pub fn suppressed_count(&self) -> u64 {
        self.suppressed
    }

    /// All messages: sent_count + failed + pending + cancelled + suppressed.
    pub fn total(&self) -> u64 {
        self.sent_count()
            .saturating_add(self.failed)
            .saturating_add(self.pending)
            .saturating_add(self.cancelled)
            .saturating_add(self.suppressed)
    }

    /// API `progress_percentage`: (total − pending) / total × 100, rounded to 2 decimals.
    /// An empty send reports 100.0: there is nothing left to do.
    pub fn progress_percentage(&self) -> f64 {
        let total = self.total();
        if total == 0 {
            return 100.0;
        }
        let done = total.saturating_sub(self.pending) as f64;
        let pct = done / total as f64 * 100.0;
        ((pct * 100.0).round() / 100.0).clamp(0.0, 100.0)
    }
}

/// The status of a bulk send. UPPERCASE in the API, except the create response's `"queued"`.
/// Its schema is the list filter's (`GET …/bulk-sends/?status=`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum BulkStatus {
    /// Created; nothing dispatched yet (also while waiting for `scheduled_at`).
    Queued,
    /// At least one dispatch happened and messages are still pending (also while paused).
    Processing,
    /// Finished with no failures.
    Completed,
    /// Finished with some (not all) messages failed.
    Partial,
    /// Finished with every message failed, or stopped by a fatal error.
    Failed,
    /// Cancelled by the client.
    Cancelled,
}

/// The error for a bulk status string that is not one of [`BulkStatus::as_str`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown bulk send status: {0:?}")]
pub struct UnknownBulkStatus(pub String);

impl BulkStatus {
    /// Every status.
    pub const ALL: [BulkStatus; 6] = [
        BulkStatus::Queued,
        BulkStatus::Processing,
        BulkStatus::Completed,
        BulkStatus::Partial,
        BulkStatus::Failed,
        BulkStatus::Cancelled,
    ];

    /// The UPPERCASE API and database name.
    pub fn as_str(self) -> &'static str {
        match self {
            BulkStatus::Queued => "QUEUED",
            BulkStatus::Processing => "PROCESSING",
            BulkStatus::Completed => "COMPLETED",
            BulkStatus::Partial => "PARTIAL",
            BulkStatus::Failed => "FAILED",
            BulkStatus::Cancelled => "CANCELLED",
        }
    }

    /// Whether the send is over: nothing more will be dispatched (late webhooks may still move it
    /// between `COMPLETED`, `PARTIAL` and `FAILED`).
    pub fn is_finished(self) -> bool {
        matches!(
            self,
            BulkStatus::Completed
                | BulkStatus::Partial
                | BulkStatus::Failed
                | BulkStatus::Cancelled
        )
    }
}

impl FromStr for BulkStatus {
    type Err = UnknownBulkStatus;

    /// Case-insensitive (query parameters are UPPERCASE, the create response lowercase).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        BulkStatus::ALL
            .into_iter()
            .find(|status| status.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| UnknownBulkStatus(s.to_owned()))
    }
}

impl fmt::Display for BulkStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Derives a bulk send's status (API.md), in this order:
/// 1. `cancelled` (the client cancelled it) → `CANCELLED`, whatever happens to in-flight messages;
/// 2. `fatal` (a disabled template, revoked token, … stopped it) → `FAILED`;
/// 3. nothing to send (no messages, or none pending before the first dispatch: every
///    recipient was suppressed) → `COMPLETED`;
/// 4. not `started` (no dispatch yet) → `QUEUED`;
/// 5. anything pending (incl. dispatching) → `PROCESSING`;
/// 6. no failures → `COMPLETED`; every message neither cancelled nor suppressed failed →
///    `FAILED`; else `PARTIAL`.
pub fn derive_status(
    counters: &Counters,
    started: bool,
    cancelled: bool,
    fatal: bool,
) -> BulkStatus {
    if cancelled {
        return BulkStatus::Cancelled;
    }
    if fatal {
        return BulkStatus::Failed;
    }
    let total = counters.total();
    if total == 0 || (!started && counters.pending == 0 && counters.failed == 0) {
        return BulkStatus::Completed;
    }
    if !started {
        return BulkStatus::Queued;
    }
    if counters.pending > 0 {
        return BulkStatus::Processing;
    }
    if counters.failed == 0 {
        BulkStatus::Completed
    } else if counters.failed
        >= total
            .saturating_sub(counters.cancelled)
            .saturating_sub(counters.suppressed)
    {
        BulkStatus::Failed
    } else {
        BulkStatus::Partial
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use MessageState::*;

    /// Counters for a set of messages.
    fn from_states<I: IntoIterator<Item = MessageState>>(states: I) -> Counters {
        let mut counters = Counters::default();
        for state in states {
            counters.add(state);
        }
        counters
    }

    const ALL_WEBHOOKS: [WebhookStatus; 4] = [
        WebhookStatus::Sent,
        WebhookStatus::Delivered,
        WebhookStatus::Read,
        WebhookStatus::Failed,
    ];

    #[test]
    fn state_names_round_trip() {
        for state in MessageState::ALL {
            assert_eq!(state.as_str().parse(), Ok(state));
            assert_eq!(
                serde_json::to_value(state).unwrap(),
                serde_json::json!(state.as_str())
            );
        }
        assert!("PENDING".parse::<MessageState>().is_err());
        assert!("".parse::<MessageState>().is_err());
    }

    #[test]
    fn api_status_hides_dispatching() {
        assert_eq!(Dispatching.api_status(), "pending");
        assert_eq!(Pending.api_status(), "pending");
        assert_eq!(Read.api_status(), "read");
        assert_eq!(Cancelled.api_status(), "cancelled");
    }

    #[test]
    fn engine_steps_apply_only_to_their_source_state() {
        use EngineStep::*;
        let table = [
            (StartDispatch, Pending, Dispatching),
            (Accepted, Dispatching, Sent),
            (BackToPending, Dispatching, Pending),
            (DispatchFailed, Dispatching, Failed),
            (StopPending, Pending, Failed),
            (CancelPending, Pending, Cancelled),
            (CancelDispatched, Dispatching, Cancelled),
            (SuppressPending, Pending, Suppressed),
        ];
        for (step, from, to) in table {
            assert_eq!(step.apply(from), Some(to), "{step:?}");
            for s in MessageState::ALL.into_iter().filter(|s| *s != from) {
                assert_eq!(step.apply(s), None, "{step:?} from {s}");
            }
        }
    }

    #[test]
    fn reconcile_policy_parses() {
        assert_eq!(ReconcilePolicy::default(), ReconcilePolicy::Resend);
        assert_eq!("FAIL".parse(), Ok(ReconcilePolicy::Fail));
        assert_eq!(" resend ".parse(), Ok(ReconcilePolicy::Resend));
        assert!("maybe".parse::<ReconcilePolicy>().is_err());
    }

    fn hook(current: MessageState, status: WebhookStatus) -> Option<MessageState> {
        apply_webhook(current, status, FailureSource::Meta)
    }

    #[test]
    fn webhooks_are_monotonic() {
        use WebhookStatus as W;
        assert_eq!(hook(Sent, W::Delivered), Some(Delivered));
        assert_eq!(hook(Delivered, W::Read), Some(Read));
        assert_eq!(hook(Sent, W::Read), Some(Read), "read implies delivered");
        assert_eq!(hook(Sent, W::Sent), None, "duplicate");
        assert_eq!(hook(Delivered, W::Sent), None, "late sent never downgrades");
        assert_eq!(hook(Delivered, W::Delivered), None);
        assert_eq!(hook(Read, W::Delivered), None);
        assert_eq!(hook(Read, W::Sent), None);
        assert_eq!(hook(Read, W::Read), None);
    }

    #[test]
    fn failed_wins_over_sent_and_delivered_but_not_read() {
        use WebhookStatus as W;
        assert_eq!(hook(Sent, W::Failed), Some(Failed));
        assert_eq!(hook(Delivered, W::Failed), Some(Failed));
        assert_eq!(hook(Read, W::Failed), None);
        assert_eq!(hook(Failed, W::Failed), None);
    }

    #[test]
    fn webhook_resolves_in_flight_and_pending_messages() {
        use WebhookStatus as W;
        for from in [Dispatching, Pending] {
            assert_eq!(hook(from, W::Sent), Some(Sent));
            assert_eq!(hook(from, W::Delivered), Some(Delivered));
            assert_eq!(hook(from, W::Read), Some(Read));
            assert_eq!(hook(from, W::Failed), Some(Failed));
        }
    }

    #[test]
    fn meta_failure_is_final_but_local_failure_yields_to_meta() {
        for status in ALL_WEBHOOKS {
            assert_eq!(apply_webhook(Failed, status, FailureSource::Meta), None);
        }
        use WebhookStatus as W;
        let local = FailureSource::Local;
        assert_eq!(apply_webhook(Failed, W::Sent, local), Some(Sent));
        assert_eq!(apply_webhook(Failed, W::Delivered, local), Some(Delivered));
        assert_eq!(apply_webhook(Failed, W::Read, local), Some(Read));
        assert_eq!(apply_webhook(Failed, W::Failed, local), None);
    }

    #[test]
    fn cancelled_moves_only_on_success_webhooks() {
        use WebhookStatus as W;
        assert_eq!(hook(Cancelled, W::Sent), Some(Sent));
        assert_eq!(hook(Cancelled, W::Read), Some(Read));
        assert_eq!(hook(Cancelled, W::Failed), None);
    }

    #[test]
    fn failure_source_from_code() {
        assert_eq!(
            FailureSource::from_meta_code(Some(131026)),
            FailureSource::Meta
        );
        assert_eq!(FailureSource::from_meta_code(None), FailureSource::Local);
    }

    #[test]
    fn webhook_transitions_never_leave_the_funnel_backwards() {
        for current in MessageState::ALL {
            for status in ALL_WEBHOOKS {
                for source in [FailureSource::Meta, FailureSource::Local] {
                    if let Some(next) = apply_webhook(current, status, source) {
                        assert_ne!(next, current, "a move must change the state");
                        assert!(
                            !matches!(next, MessageState::Pending | MessageState::Dispatching),
                            "webhooks never make a message pending"
                        );
                        if let (Some(a), Some(b)) = (current.funnel_rank(), next.funnel_rank()) {
                            assert!(b > a, "{current} -> {next}");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn counters_views() {
        let c = Counters {
            pending: 1,
            sent: 2,
            delivered: 3,
            read: 4,
            failed: 5,
            cancelled: 6,
            suppressed: 7,
        };
        assert_eq!(c.sent_count(), 9);
        assert_eq!(c.delivered_count(), 7);
        assert_eq!(c.read_count(), 4);
        assert_eq!(c.failed_count(), 5);
        assert_eq!(c.pending_count(), 1);
        assert_eq!(c.cancelled_count(), 6);
        assert_eq!(c.suppressed_count(), 7);
        assert_eq!(c.total(), 28);
        assert_eq!(c.progress_percentage(), 96.43);
    }

    #[test]
    fn progress_rounding_and_edges() {
        assert_eq!(Counters::default().progress_percentage(), 100.0);
        let mut c = from_states([Pending, Pending, Sent]);
        assert_eq!(c.progress_percentage(), 33.33);
        c.apply(Pending, Sent);
        assert_eq!(c.progress_percentage(), 66.67);
        c.apply(Pending, Failed);
        assert_eq!(c.progress_percentage(), 100.0);
        let all_pending = from_states([Pending, Dispatching]);
        assert_eq!(all_pending.progress_percentage(), 0.0);
    }

    #[test]
    fn apply_refuses_to_move_from_an_empty_bucket() {
        let mut c = from_states([Pending]);
        assert!(!c.apply(Sent, Delivered));
        assert_eq!(c, from_states([Pending]));
        assert!(c.apply(Pending, Dispatching), "same bucket");
        assert_eq!(c.pending, 1);
    }

    /// Drives many messages through every event in a fixed pseudo-random order, applying each
    /// transition to the counters, and checks after every step that the counters match the states
    /// and add up.
    #[test]
    fn counters_always_add_up() {
        let n = 40usize;
        let mut states = vec![Pending; n];
        let mut counters = from_states(states.iter().copied());
        let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
        for _ in 0..20_000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let idx = (seed % n as u64) as usize;
            let Some(current) = states.get(idx).copied() else {
                continue;
            };
            let source = if seed.is_multiple_of(3) {
                FailureSource::Local
            } else {
                FailureSource::Meta
            };
            let next = match (seed >> 8) % 10 {
                0 => EngineStep::StartDispatch.apply(current),
                1 => EngineStep::Accepted.apply(current),
                2 => EngineStep::BackToPending.apply(current),
                3 => EngineStep::DispatchFailed.apply(current),
                4 => EngineStep::CancelPending.apply(current),
                5 => EngineStep::StopPending.apply(current),
                6 => apply_webhook(current, WebhookStatus::Delivered, source),
                7 => apply_webhook(current, WebhookStatus::Read, source),
                8 => apply_webhook(current, WebhookStatus::Failed, source),
                _ => apply_webhook(current, WebhookStatus::Sent, source),
            };
            if let Some(next) = next {
                assert!(counters.apply(current, next));
                if let Some(slot) = states.get_mut(idx) {
                    *slot = next;
                }
            }
            assert_eq!(counters, from_states(states.iter().copied()));
            assert_eq!(
                counters.sent_count()
                    + counters.failed_count()
                    + counters.pending_count()
                    + counters.cancelled_count(),
                n as u64
            );
            assert_eq!(counters.total(), n as u64);
        }
    }

    #[test]
    fn bulk_status_names() {
        for s in BulkStatus::ALL {
            assert_eq!(s.as_str().parse(), Ok(s));
            assert_eq!(s.as_str().to_ascii_lowercase().parse(), Ok(s));
            assert_eq!(
                serde_json::to_value(s).unwrap(),
                serde_json::json!(s.as_str())
            );
        }
        assert!("DONE".parse::<BulkStatus>().is_err());
        assert!(!BulkStatus::Queued.is_finished());
        assert!(!BulkStatus::Processing.is_finished());
        assert!(BulkStatus::Completed.is_finished());
        assert!(BulkStatus::Partial.is_finished());
        assert!(BulkStatus::Failed.is_finished());
        assert!(BulkStatus::Cancelled.is_finished());
    }

    #[test]
    fn derive_status_lifecycle() {
        let mut c = from_states([Pending, Pending, Pending]);
        assert_eq!(derive_status(&c, false, false, false), BulkStatus::Queued);
        assert_eq!(
            derive_status(&c, true, false, false),
            BulkStatus::Processing
        );
        c.apply(Pending, Sent);
        c.apply(Pending, Delivered);
        assert_eq!(
            derive_status(&c, true, false, false),
            BulkStatus::Processing
        );
        c.apply(Pending, Read);
        assert_eq!(derive_status(&c, true, false, false), BulkStatus::Completed);
        // A late failure webhook after the send finished.
        c.apply(Sent, Failed);
        assert_eq!(derive_status(&c, true, false, false), BulkStatus::Partial);
        c.apply(Delivered, Failed);
        assert_eq!(derive_status(&c, true, false, false), BulkStatus::Partial);
        // Read cannot fail, so this send can never become FAILED; build one that can.
        let all_failed = from_states([Failed, Failed]);
        assert_eq!(
            derive_status(&all_failed, true, false, false),
            BulkStatus::Failed
        );
    }

    #[test]
    fn derive_status_flags() {
        let c = from_states([Pending, Sent, Failed]);
        assert_eq!(derive_status(&c, true, true, false), BulkStatus::Cancelled);
        assert_eq!(derive_status(&c, true, true, true), BulkStatus::Cancelled);
        assert_eq!(derive_status(&c, true, false, true), BulkStatus::Failed);
        assert_eq!(derive_status(&c, false, false, true), BulkStatus::Failed);
        let done = from_states([Sent, Sent]);
        assert_eq!(derive_status(&done, true, false, true), BulkStatus::Failed);
        // Nothing to send at all.
        assert_eq!(
            derive_status(&Counters::default(), false, false, false),
            BulkStatus::Completed
        );
        // Dispatching counts as pending.
        let in_flight = from_states([Dispatching, Sent]);
        assert_eq!(
            derive_status(&in_flight, true, false, false),
            BulkStatus::Processing
        );
    }

    #[test]
    fn suppressed_messages_count_apart_and_finish_a_send_with_nothing_to_send() {
        let all_suppressed = from_states([Suppressed, Suppressed]);
        assert_eq!(all_suppressed.total(), 2);
        assert_eq!(all_suppressed.suppressed_count(), 2);
        assert_eq!(all_suppressed.progress_percentage(), 100.0);
        assert_eq!(
            derive_status(&all_suppressed, false, false, false),
            BulkStatus::Completed
        );
        let mut c = from_states([Pending, Suppressed]);
        assert_eq!(derive_status(&c, false, false, false), BulkStatus::Queued);
        c.apply(Pending, Failed);
        assert_eq!(
            derive_status(&c, true, false, false),
            BulkStatus::Failed,
            "every message that could be sent failed"
        );
        let c = from_states([Sent, Suppressed]);
        assert_eq!(derive_status(&c, true, false, false), BulkStatus::Completed);
    }

    #[test]
    fn suppressed_moves_only_on_success_webhooks() {
        use WebhookStatus as W;
        assert_eq!(hook(Suppressed, W::Delivered), Some(Delivered));
        assert_eq!(hook(Suppressed, W::Failed), None);
    }

    #[test]
    fn derive_status_ignores_cancelled_when_judging_all_failed() {
        let c = from_states([Failed, Cancelled]);
        assert_eq!(derive_status(&c, true, false, false), BulkStatus::Failed);
        let c = from_states([Failed, Sent, Cancelled]);
        assert_eq!(derive_status(&c, true, false, false), BulkStatus::Partial);
    }
}
