//! Meta webhook notifications (`POST /webhooks/meta/`, META.md §5), parsed leniently into a flat
//! list of [`Event`]s.
//!
//! Meta retries a notification for days when we do not answer 200, changes field types between API
//! versions (`timestamp` as string or number, tiers as `"TIER_2K"` or `2000`) and adds fields and
//! values at will. So [`parse`] fails only when the body is not JSON (including nesting deeper than
//! serde_json's recursion limit of 128) or not the `{"object", "entry": [...]}` envelope. Inside:
//! - unknown fields are ignored; unknown `field` values become [`Event::Unknown`];
//! - unknown status and event strings are kept as `Other(String)`;
//! - numbers that may arrive as strings (timestamps, codes, ids) are read either way, and ids given
//!   as numbers become strings;
//! - an item that cannot be used at all (not an object, a status without `id`, an inbound message
//!   without `from`/`id`, a template update without `event`, a change without `field`) is dropped
//!   and counted in [`Notification::skipped`], so the rest of the batch still applies.
//!
//! Signature verification happens on the raw bytes before this (see the HTTP layer); this module
//! only reads. `mod.rs` holds the event types and what each one means to a send; `parse.rs` reads
//! a body into them.

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::domain::message::WebhookStatus;
use crate::domain::tier::{ThroughputLevel, Tier};
use crate::meta::error::{lenient_i64, lenient_string, MetaError, ASYNC_HTTP_STATUS, NO_META_CODE};

mod parse;

pub use parse::parse;

/// Why a webhook body could not be read at all.
#[derive(Debug, thiserror::Error)]
pub enum WebhookParseError {
    /// Not JSON, or nested deeper than serde_json's recursion limit.
    #[error("the webhook body is not valid JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// JSON, but not Meta's `{"object", "entry": [...]}` envelope.
    #[error("the webhook body is not a Meta notification: {0}")]
    Shape(&'static str),
}

/// One webhook POST, flattened.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Notification {
    /// The top-level `object` (`whatsapp_business_account` for WhatsApp), when present.
    pub object: Option<String>,
    /// Every usable update of every entry and change, in body order.
    pub events: Vec<Event>,
    /// How many items were dropped as unusable (for metrics; see the module doc).
    pub skipped: usize,
}

/// One update from a notification.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Event {
    /// A message status (`field: messages`, `value.statuses[]`).
    Status(StatusUpdate),
    /// A message a user sent us (`field: messages`, `value.messages[]`).
    Inbound(InboundMessage),
    /// A marketing opt-out/opt-in (`value.user_preferences[]`).
    UserPreference(UserPreferenceUpdate),
    /// Errors not tied to a status (`field: messages`, `value.errors[]`).
    Errors(ChangeErrors),
    /// A template changed status (`field: message_template_status_update`).
    TemplateStatus(TemplateStatusUpdate),
    /// A phone number's limit, throughput or quality changed (`field: phone_number_quality_update`).
    PhoneQuality(PhoneQualityUpdate),
    /// The portfolio's messaging limit changed (`field: business_capability_update`).
    Capability(CapabilityUpdate),
    /// An account-level policy event (`field: account_update`).
    Account(AccountUpdate),
    /// A change whose `field` this version does not handle (e.g. `template_category_update`).
    Unknown {
        /// `entry[].id`: the WABA id.
        waba_id: Option<String>,
        /// The change's `field`.
        field: String,
    },
}

/// Defines a string enum that keeps unknown values: known values match case-insensitively and
/// serialise in Meta's spelling; anything else is `Other(original)`.
macro_rules! lenient_enum {
    (
        $(#[$meta:meta])*
        $name:ident { $( $(#[$vmeta:meta])* $variant:ident => $text:literal, )+ }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(from = "String", into = "String")]
        pub enum $name {
            $( $(#[$vmeta])* $variant, )+
            /// A value this version does not know, kept verbatim.
            Other(String),
        }

        impl $name {
            /// Meta's spelling (the original text for `Other`).
            pub fn as_str(&self) -> &str {
                match self {
                    $( $name::$variant => $text, )+
                    $name::Other(text) => text,
                }
            }
        }

        impl From<&str> for $name {
            fn from(text: &str) -> Self {
                let trimmed = text.trim();
                $( if trimmed.eq_ignore_ascii_case($text) { return $name::$variant; } )+
                $name::Other(text.to_owned())
            }
        }

        impl From<String> for $name {
            fn from(text: String) -> Self {
                $name::from(text.as_str())
            }
        }

        impl From<$name> for String {
            fn from(value: $name) -> String {
                value.as_str().to_owned()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

lenient_enum! {
    /// A message status as Meta reports it.
    DeliveryStatus {
        /// Sent by Meta.
        Sent => "sent",
        /// Delivered to the phone.
        Delivered => "delivered",
        /// Read by the user.
        Read => "read",
        /// Failed; see the update's errors.
        Failed => "failed",
        /// A voice message was played (not used for templates).
        Played => "played",
    }
}

impl DeliveryStatus {
    /// The status for the message state machine; `None` for statuses it ignores (`played`,
    /// unknown values).
    pub fn to_webhook_status(&self) -> Option<WebhookStatus> {
        match self {
            DeliveryStatus::Sent => Some(WebhookStatus::Sent),
            DeliveryStatus::Delivered => Some(WebhookStatus::Delivered),
            DeliveryStatus::Read => Some(WebhookStatus::Read),
            DeliveryStatus::Failed => Some(WebhookStatus::Failed),
            DeliveryStatus::Played | DeliveryStatus::Other(_) => None,
        }
    }
}

lenient_enum! {
    /// The `event` of a `message_template_status_update`.
    TemplateEvent {
        /// Approved (also after an unpause).
        Approved => "APPROVED",
        /// Rejected at review.
        Rejected => "REJECTED",
        /// Under review (e.g. after an edit).
        Pending => "PENDING",
        /// Paused for low quality.
        Paused => "PAUSED",
        /// Permanently disabled.
        Disabled => "DISABLED",
        /// Flagged for quality; still sendable.
        Flagged => "FLAGGED",
        /// Reinstated after a pause or flag.
        Reinstated => "REINSTATED",
        /// A rejection under appeal.
        InAppeal => "IN_APPEAL",
        /// Template limit exceeded.
        LimitExceeded => "LIMIT_EXCEEDED",
        /// Locked for edits.
        Locked => "LOCKED",
        /// Archived after 12 months unused.
        Archived => "ARCHIVED",
        /// Taken out of the archive.
        Unarchived => "UNARCHIVED",
        /// Deleted.
        Deleted => "DELETED",
        /// Deletion pending (undelivered messages are still retried).
        PendingDeletion => "PENDING_DELETION",
    }
}

/// What a template status change means for the bulk sends using that template.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TemplateEffect {
    /// The template can be sent again: resume sends paused because of it.
    Resume,
    /// Temporarily unusable (paused, back under review): pause the sends using it.
    Pause,
    /// Unusable for good (disabled, rejected, deleted, archived): stop the sends (fatal, `FAILED`).
    Stop,
    /// No effect on sending (flagged, in appeal, unknown events, …); send errors still catch any
    /// real problem.
    Informational,
}

impl TemplateEvent {
    /// The effect of this event on the sends using the template.
    pub fn effect(&self) -> TemplateEffect {
        match self {
            TemplateEvent::Approved | TemplateEvent::Reinstated => TemplateEffect::Resume,
            TemplateEvent::Paused | TemplateEvent::Pending => TemplateEffect::Pause,
            TemplateEvent::Disabled
            | TemplateEvent::Rejected
            | TemplateEvent::Deleted
            | TemplateEvent::PendingDeletion
            | TemplateEvent::Archived => TemplateEffect::Stop,
            TemplateEvent::Flagged
            | TemplateEvent::InAppeal
            | TemplateEvent::LimitExceeded
            | TemplateEvent::Locked
            | TemplateEvent::Unarchived
            | TemplateEvent::Other(_) => TemplateEffect::Informational,
        }
    }

    /// The template status to store after this event (Meta's status names), or `None` when the
    /// event leaves the status as it was (a flag, a lock, an unknown event: the next sync reads
    /// the exact status).
    pub fn stored_status(&self) -> Option<&'static str> {
        match self {
            TemplateEvent::Approved | TemplateEvent::Reinstated => Some("APPROVED"),
            TemplateEvent::Rejected => Some("REJECTED"),
            TemplateEvent::Pending => Some("PENDING"),
            TemplateEvent::Paused => Some("PAUSED"),
            TemplateEvent::Disabled => Some("DISABLED"),
            TemplateEvent::InAppeal => Some("IN_APPEAL"),
            TemplateEvent::LimitExceeded => Some("LIMIT_EXCEEDED"),
            TemplateEvent::Archived => Some("ARCHIVED"),
            TemplateEvent::Deleted => Some("DELETED"),
            TemplateEvent::PendingDeletion => Some("PENDING_DELETION"),
            TemplateEvent::Flagged
            | TemplateEvent::Locked
            | TemplateEvent::Unarchived
            | TemplateEvent::Other(_) => None,
        }
    }
}

lenient_enum! {
    /// The `event` of a `phone_number_quality_update`.
    PhoneQualityEvent {
        /// The number was onboarded.
        Onboarding => "ONBOARDING",
        /// The number moved to the 1 000 mps throughput level.
        ThroughputUpgrade => "THROUGHPUT_UPGRADE",
        /// Legacy (before Oct 2025): quality flagged.
        Flagged => "FLAGGED",
        /// Legacy: flag lifted.
        Unflagged => "UNFLAGGED",
        /// Legacy: limit raised.
        Upgrade => "UPGRADE",
        /// Legacy: limit lowered.
        Downgrade => "DOWNGRADE",
    }
}

lenient_enum! {
    /// The `event` of an `account_update`.
    AccountEvent {
        /// A policy violation was recorded.
        AccountViolation => "ACCOUNT_VIOLATION",
        /// The account was disabled or reinstated (see `ban_info`).
        DisabledUpdate => "DISABLED_UPDATE",
        /// Restrictions were applied or lifted (see `restriction_info`).
        AccountRestriction => "ACCOUNT_RESTRICTION",
        /// The account was deleted.
        AccountDeleted => "ACCOUNT_DELETED",
        /// The account was offboarded.
        AccountOffboarded => "ACCOUNT_OFFBOARDED",
        /// A partner was added.
        PartnerAdded => "PARTNER_ADDED",
        /// A partner was removed.
        PartnerRemoved => "PARTNER_REMOVED",
        /// The business was verified.
        VerifiedAccount => "VERIFIED_ACCOUNT",
    }
}

/// An error inside a status update or `value.errors`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusError {
    /// Meta's error code, or [`NO_META_CODE`] when missing.
    pub code: i64,
    /// Meta's title (to be deprecated by Meta).
    pub title: Option<String>,
    /// Meta's message.
    pub message: Option<String>,
    /// `error_data.details`.
    pub details: Option<String>,
}

impl StatusError {
    /// The error as a [`MetaError`] (HTTP status [`ASYNC_HTTP_STATUS`]) for classification and
    /// storage.
    pub fn to_meta_error(&self) -> MetaError {
        MetaError {
            code: self.code,
            subcode: None,
            message: self
                .message
                .clone()
                .or_else(|| self.title.clone())
                .unwrap_or_default(),
            details: self.details.clone(),
            fbtrace_id: None,
            http_status: ASYNC_HTTP_STATUS,
        }
    }
}

/// A message status update.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusUpdate {
    /// `entry[].id`: the WABA id.
    pub waba_id: Option<String>,
    /// `value.metadata.phone_number_id`: the sender number.
    pub phone_number_id: Option<String>,
    /// The message's wamid.
    pub wamid: String,
    /// The reported status.
    pub status: DeliveryStatus,
    /// When it happened, unix seconds.
    pub timestamp: Option<i64>,
    /// The recipient's WhatsApp id.
    pub recipient_id: Option<String>,
    /// Echo of what we sent in `biz_opaque_callback_data`: our own message id.
    pub biz_opaque_callback_data: Option<String>,
    /// Errors, on `failed`.
    pub errors: Vec<StatusError>,
}

/// A message from a user.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InboundMessage {
    /// `entry[].id`: the WABA id.
    pub waba_id: Option<String>,
    /// `value.metadata.phone_number_id`: our number that received it.
    pub phone_number_id: Option<String>,
    /// The sender's WhatsApp id (phone digits).
    pub from: String,
    /// The inbound message's wamid.
    pub id: String,
    /// When it was sent, unix seconds.
    pub timestamp: Option<i64>,
    /// `type`: `text`, `button`, `interactive`, …
    pub message_type: Option<String>,
    /// `text.body` for text messages (keyword opt-outs are ordinary text).
    pub text: Option<String>,
    /// `button.payload` for a quick-reply tap.
    pub button_payload: Option<String>,
    /// `context.id`: the wamid of our message this replies to.
    pub context_id: Option<String>,
    /// The sender's profile name from `value.contacts`, when given.
    pub profile_name: Option<String>,
}

/// A user's marketing preference change.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserPreferenceUpdate {
    /// `entry[].id`: the WABA id.
    pub waba_id: Option<String>,
    /// `value.metadata.phone_number_id`.
    pub phone_number_id: Option<String>,
    /// The user's WhatsApp id.
    pub wa_id: String,
    /// `category`, e.g. `marketing_messages`.
    pub category: Option<String>,
    /// `value`: `stop` or `resume`.
    pub value: Option<String>,
    /// `detail`: Meta's human text.
    pub detail: Option<String>,
    /// When, unix seconds.
    pub timestamp: Option<i64>,
}

impl UserPreferenceUpdate {
    /// Whether the user stopped marketing messages (later marketing sends fail with 131050).
    pub fn is_marketing_stop(&self) -> bool {
        self.category.as_deref() == Some("marketing_messages")
            && self
                .value
                .as_deref()
                .is_some_and(|v| v.eq_ignore_ascii_case("stop"))
    }
}

/// `value.errors[]` of a `messages` change: errors not attached to a message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeErrors {
    /// `entry[].id`: the WABA id.
    pub waba_id: Option<String>,
    /// `value.metadata.phone_number_id`.
    pub phone_number_id: Option<String>,
    /// The errors.
    pub errors: Vec<StatusError>,
}

/// A template status change.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TemplateStatusUpdate {
    /// `entry[].id`: the WABA id.
    pub waba_id: Option<String>,
    /// `entry[].time`, unix seconds.
    pub time: Option<i64>,
    /// The new status event.
    pub event: TemplateEvent,
    /// Meta's template id (sent as a number, kept as a string like the Graph API's `id`).
    pub message_template_id: Option<String>,
    /// `message_template_name`.
    pub name: Option<String>,
    /// `message_template_language`.
    pub language: Option<String>,
    /// `reason` (often the string `NONE`).
    pub reason: Option<String>,
    /// `message_template_category`.
    pub category: Option<String>,
    /// `other_info.title`: FIRST_PAUSE, SECOND_PAUSE, RATE_LIMITING_PAUSE, UNPAUSE, DISABLED.
    pub other_info_title: Option<String>,
    /// `other_info.description`.
    pub other_info_description: Option<String>,
}

/// A phone number quality / limit / throughput update. It names the number by its display number
/// only (no phone_number_id).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PhoneQualityUpdate {
    /// `entry[].id`: the WABA id.
    pub waba_id: Option<String>,
    /// `entry[].time`, unix seconds.
    pub time: Option<i64>,
    /// The number, as displayed (e.g. `15550783881`).
    pub display_phone_number: Option<String>,
    /// The event, when present.
    pub event: Option<PhoneQualityEvent>,
    /// `current_limit` (≤ Feb 2026), as a tier.
    pub current_limit: Option<Tier>,
    /// `old_limit`, as a tier.
    pub old_limit: Option<Tier>,
    /// `max_daily_conversations_per_business` (v24+), as a tier.
    pub max_daily_conversations_per_business: Option<Tier>,
}

impl PhoneQualityUpdate {
    /// The portfolio limit this update reports: the v24+ field, else `current_limit`.
    pub fn limit(&self) -> Option<Tier> {
        self.max_daily_conversations_per_business
            .or(self.current_limit)
    }
}

impl PhoneQualityUpdate {
    /// The throughput level this update announces: `HIGH` (1 000 mps) on `THROUGHPUT_UPGRADE`.
    /// Meta announces no downgrade.
    pub fn throughput(&self) -> Option<ThroughputLevel> {
        match self.event {
            Some(PhoneQualityEvent::ThroughputUpgrade) => Some(ThroughputLevel::High),
            _ => None,
        }
    }

    /// The quality rating implied by a legacy `FLAGGED` (`RED`) or `UNFLAGGED` (at least
    /// `YELLOW`; the exact rating comes with the next sync) event.
    pub fn quality_rating(&self) -> Option<&'static str> {
        match self.event {
            Some(PhoneQualityEvent::Flagged) => Some("RED"),
            Some(PhoneQualityEvent::Unflagged) => Some("YELLOW"),
            _ => None,
        }
    }
}

/// A business capability update: the portfolio's messaging limit.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CapabilityUpdate {
    /// `entry[].id`: the WABA id.
    pub waba_id: Option<String>,
    /// `entry[].time`, unix seconds.
    pub time: Option<i64>,
    /// `max_daily_conversations_per_business` (v24+), as a tier.
    pub max_daily_conversations_per_business: Option<Tier>,
    /// `max_daily_conversation_per_phone` (≤ v23), as a tier.
    pub max_daily_conversation_per_phone: Option<Tier>,
    /// `max_phone_numbers_per_business` (only at the 250 limit).
    pub max_phone_numbers_per_business: Option<i64>,
    /// `max_phone_numbers_per_waba`.
    pub max_phone_numbers_per_waba: Option<i64>,
}

impl CapabilityUpdate {
    /// The portfolio limit this update reports: the v24+ field, else the per-phone one.
    pub fn limit(&self) -> Option<Tier> {
        self.max_daily_conversations_per_business
            .or(self.max_daily_conversation_per_phone)
    }
}

/// An account-level update (violations, restrictions, bans). Details are kept raw.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AccountUpdate {
    /// `entry[].id`: the WABA id.
    pub waba_id: Option<String>,
    /// `entry[].time`, unix seconds.
    pub time: Option<i64>,
    /// The event, when present.
    pub event: Option<AccountEvent>,
    /// `phone_number`, when the update concerns one number.
    pub phone_number: Option<String>,
    /// `ban_info`, raw.
    pub ban_info: Option<Value>,
    /// `restriction_info`, raw.
    pub restriction_info: Option<Value>,
    /// `violation_info`, raw.
    pub violation_info: Option<Value>,
}

/// What an [`AccountUpdate`] means for sending from the account's numbers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AccountEffect {
    /// The account (or one number) can no longer send business-initiated messages: pause its
    /// numbers with this reason.
    Pause { reason: String },
    /// A ban was lifted: resume the numbers an earlier account update paused.
    Resume,
    /// Nothing to do for sending (a recorded violation, a partner change, a ban scheduled for
    /// later, an unknown event).
    Informational,
}

/// The prefix of every number `pause_reason` set because of an `account_update`, so that a
/// reinstatement resumes those and never a number the operator paused.
pub const ACCOUNT_PAUSE_PREFIX: &str = "account_update:";

impl AccountUpdate {
    /// The effect on sending:
    /// - `DISABLED_UPDATE`: `ban_info.waba_ban_state` `DISABLE` (or no readable state) pauses,
    ///   `REINSTATE` resumes, `SCHEDULE_FOR_DISABLE` is informational (sending still works
    ///   until the date; it is logged);
    /// - `ACCOUNT_RESTRICTION` pauses unless `restriction_info` lists only restrictions that do
    ///   not concern business-initiated messages (e.g. `RESTRICTED_ADD_PHONE_NUMBER_ACTION`);
    /// - `ACCOUNT_DELETED` and `ACCOUNT_OFFBOARDED` pause;
    /// - anything else is informational.
    pub fn effect(&self) -> AccountEffect {
        let Some(event) = &self.event else {
            return AccountEffect::Informational;
        };
        let pause = |detail: String| AccountEffect::Pause {
            reason: format!("{ACCOUNT_PAUSE_PREFIX} {event}{detail}"),
        };
        match event {
            AccountEvent::DisabledUpdate => {
                let state = self
                    .ban_info
                    .as_ref()
                    .and_then(|b| b.get("waba_ban_state"))
                    .and_then(Value::as_str)
                    .map(|s| s.trim().to_ascii_uppercase());
                match state.as_deref() {
                    Some("REINSTATE") => AccountEffect::Resume,
                    Some("SCHEDULE_FOR_DISABLE") => AccountEffect::Informational,
                    Some(state) => pause(format!(" ({state})")),
                    None => pause(String::new()),
                }
            }
            AccountEvent::AccountRestriction => {
                let types: Option<Vec<String>> = self
                    .restriction_info
                    .as_ref()
                    .and_then(Value::as_array)
                    .map(|items| {
                        items
                            .iter()
                            .filter_map(|i| i.get("restriction_type").and_then(Value::as_str))
                            .map(|t| t.trim().to_ascii_uppercase())
                            .collect()
                    });
                match types {
                    Some(types) if !types.is_empty() => {
                        let harmless = |t: &String| {
                            matches!(
                                t.as_str(),
                                "RESTRICTED_ADD_PHONE_NUMBER_ACTION"
                                    | "RESTRICTED_CUSTOMER_INITIATED_MESSAGING"
                            )
                        };
                        if types.iter().all(harmless) {
                            AccountEffect::Informational
                        } else {
                            pause(format!(" ({})", types.join(", ")))
                        }
                    }
                    _ => pause(String::new()),
                }
            }
            AccountEvent::AccountDeleted | AccountEvent::AccountOffboarded => pause(String::new()),
            AccountEvent::AccountViolation
            | AccountEvent::PartnerAdded
            | AccountEvent::PartnerRemoved
            | AccountEvent::VerifiedAccount
            | AccountEvent::Other(_) => AccountEffect::Informational,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meta::error::{classify, ErrorAction, StopSendReason};
    use serde_json::json;

    fn parse_json(v: Value) -> Notification {
        parse(v.to_string().as_bytes()).expect("valid notification")
    }

    fn envelope(field: &str, value: Value) -> Value {
        json!({"object": "whatsapp_business_account", "entry": [{
            "id": "102290129340398", "time": 1750030100,
            "changes": [{"field": field, "value": value}]}]})
    }

    fn statuses(list: Value) -> Value {
        envelope(
            "messages",
            json!({"messaging_product": "whatsapp",
                   "metadata": {"display_phone_number": "15550783881",
                                "phone_number_id": "106540352242922"},
                   "statuses": list}),
        )
    }

    fn status_events(n: &Notification) -> Vec<&StatusUpdate> {
        n.events
            .iter()
            .filter_map(|e| match e {
                Event::Status(s) => Some(s),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_batch_of_statuses() {
        let n = parse_json(statuses(json!([
            {"id": "wamid.A", "status": "sent", "timestamp": "1750030073",
             "recipient_id": "16505551234", "biz_opaque_callback_data": "msg-1",
             "conversation": {"id": "c1", "expiration_timestamp": "1750116473",
                              "origin": {"type": "marketing"}},
             "pricing": {"billable": true, "pricing_model": "PMP", "category": "marketing"}},
            {"id": "wamid.B", "status": "delivered", "timestamp": 1750030080,
             "recipient_id": "16505551235", "biz_opaque_callback_data": "msg-2"},
            {"id": "wamid.C", "status": "read", "timestamp": "1750030090",
             "recipient_id": "16505551236"}
        ])));
        assert_eq!(n.object.as_deref(), Some("whatsapp_business_account"));
        assert_eq!(n.skipped, 0);
        let s = status_events(&n);
        assert_eq!(s.len(), 3);
        assert_eq!(s[0].wamid, "wamid.A");
        assert_eq!(s[0].status, DeliveryStatus::Sent);
        assert_eq!(s[0].timestamp, Some(1750030073));
        assert_eq!(s[0].recipient_id.as_deref(), Some("16505551234"));
        assert_eq!(s[0].biz_opaque_callback_data.as_deref(), Some("msg-1"));
        assert_eq!(s[0].phone_number_id.as_deref(), Some("106540352242922"));
        assert_eq!(s[0].waba_id.as_deref(), Some("102290129340398"));
        assert_eq!(s[1].status, DeliveryStatus::Delivered);
        assert_eq!(s[1].timestamp, Some(1750030080), "numeric timestamp");
        assert_eq!(s[2].status.to_webhook_status(), Some(WebhookStatus::Read));
        assert_eq!(s[2].biz_opaque_callback_data, None);
    }

    #[test]
    fn a_failed_status_with_errors() {
        let n = parse_json(statuses(json!([
            {"id": "wamid.F", "status": "failed", "timestamp": "1750030073",
             "recipient_id": "16505551234",
             "errors": [{"code": 131049, "title": "This message was not delivered to maintain healthy ecosystem engagement.",
                         "message": "This message was not delivered to maintain healthy ecosystem engagement.",
                         "error_data": {"details": "In order to maintain a healthy ecosystem engagement, the message failed to be delivered."},
                         "href": "https://developers.facebook.com/docs/whatsapp/cloud-api/support/error-codes/"}]},
            {"id": "wamid.G", "status": "failed", "errors": [{"code": "132015", "title": "Template paused"}, "junk"]}
        ])));
        let s = status_events(&n);
        assert_eq!(s[0].status, DeliveryStatus::Failed);
        assert_eq!(s[0].errors.len(), 1);
        let e = &s[0].errors[0];
        assert_eq!(e.code, 131049);
        assert!(e.details.as_deref().unwrap_or("").starts_with("In order"));
        let meta = e.to_meta_error();
        assert_eq!(meta.http_status, ASYNC_HTTP_STATUS);
        assert_eq!(classify(&meta), ErrorAction::FailMessage);

        assert_eq!(s[1].errors.len(), 1, "non-object errors are ignored");
        let paused = s[1].errors[0].to_meta_error();
        assert_eq!(paused.code, 132015);
        assert_eq!(paused.message, "Template paused");
        assert_eq!(
            classify(&paused),
            ErrorAction::StopSend {
                reason: StopSendReason::TemplatePaused
            }
        );
    }

    #[test]
    fn unknown_status_values_and_extra_fields_are_kept_or_ignored() {
        let n = parse_json(statuses(json!([
            {"id": "wamid.X", "status": "deleted", "timestamp": "soon", "new_field": {"a": 1},
             "recipient_type": "group", "recipient_participant_id": "123"},
            {"id": "wamid.Y", "status": "PLAYED", "timestamp": 1.75e9},
            {"status": "sent"},
            {"id": "", "status": "sent"},
            {"id": "wamid.Z"},
            "not an object",
            {"id": 12345, "status": "Sent"}
        ])));
        let s = status_events(&n);
        assert_eq!(s.len(), 3);
        assert_eq!(s[0].status, DeliveryStatus::Other("deleted".into()));
        assert_eq!(s[0].status.to_webhook_status(), None);
        assert_eq!(s[0].timestamp, None, "unreadable timestamp");
        assert_eq!(s[1].status, DeliveryStatus::Played);
        assert_eq!(s[1].status.to_webhook_status(), None);
        assert_eq!(s[1].timestamp, Some(1_750_000_000));
        assert_eq!(s[2].wamid, "12345");
        assert_eq!(s[2].status, DeliveryStatus::Sent);
        assert_eq!(n.skipped, 4);
    }

    #[test]
    fn extra_top_level_and_entry_fields_are_ignored() {
        let n = parse_json(json!({
            "object": "whatsapp_business_account", "surprise": [1, 2, 3],
            "entry": [{"id": 102290129340398u64, "time": "1750030100", "uid": "x",
                       "changes": [{"field": "messages", "value": {"statuses": [
                           {"id": "wamid.A", "status": "sent"}]}, "extra": true}]}]}));
        let s = status_events(&n);
        assert_eq!(s[0].waba_id.as_deref(), Some("102290129340398"));
        assert_eq!(s[0].phone_number_id, None);
    }

    #[test]
    fn unknown_fields_become_unknown_events() {
        let n = parse_json(envelope(
            "template_category_update",
            json!({"message_template_id": 1, "new_category": "MARKETING"}),
        ));
        assert_eq!(
            n.events,
            vec![Event::Unknown {
                waba_id: Some("102290129340398".into()),
                field: "template_category_update".into()
            }]
        );
        let n = parse_json(
            json!({"entry": [{"changes": [{"field": "brand_new", "value": 3},
                                                         {"value": {}}, 7]}]}),
        );
        assert_eq!(n.events.len(), 1);
        assert_eq!(n.skipped, 2);
        assert_eq!(n.object, None);
    }

    #[test]
    fn template_paused_event() {
        let n = parse_json(envelope(
            "message_template_status_update",
            json!({"event": "PAUSED", "message_template_id": 1387372356726668u64,
                   "message_template_name": "welcome_message",
                   "message_template_language": "es", "reason": "NONE",
                   "message_template_category": "MARKETING",
                   "other_info": {"title": "FIRST_PAUSE",
                                  "description": "Your template has been paused for 3 hours."}}),
        ));
        let Some(Event::TemplateStatus(t)) = n.events.first() else {
            panic!("expected a template status, got {:?}", n.events);
        };
        assert_eq!(t.event, TemplateEvent::Paused);
        assert_eq!(t.event.effect(), TemplateEffect::Pause);
        assert_eq!(t.message_template_id.as_deref(), Some("1387372356726668"));
        assert_eq!(t.name.as_deref(), Some("welcome_message"));
        assert_eq!(t.language.as_deref(), Some("es"));
        assert_eq!(t.reason.as_deref(), Some("NONE"));
        assert_eq!(t.other_info_title.as_deref(), Some("FIRST_PAUSE"));
        assert_eq!(t.time, Some(1750030100));
    }

    #[test]
    fn template_events_and_effects() {
        let cases = [
            ("APPROVED", TemplateEffect::Resume),
            ("REINSTATED", TemplateEffect::Resume),
            ("PENDING", TemplateEffect::Pause),
            ("DISABLED", TemplateEffect::Stop),
            ("REJECTED", TemplateEffect::Stop),
            ("DELETED", TemplateEffect::Stop),
            ("PENDING_DELETION", TemplateEffect::Stop),
            ("ARCHIVED", TemplateEffect::Stop),
            ("FLAGGED", TemplateEffect::Informational),
            ("SOMETHING_NEW", TemplateEffect::Informational),
        ];
        for (name, effect) in cases {
            let event = TemplateEvent::from(name);
            assert_eq!(event.effect(), effect, "{name}");
            assert_eq!(event.as_str(), name);
        }
        assert_eq!(TemplateEvent::from("paused"), TemplateEvent::Paused);
        let n = parse_json(envelope(
            "message_template_status_update",
            json!({"message_template_id": "9"}),
        ));
        assert!(n.events.is_empty(), "no event, nothing to do");
        assert_eq!(n.skipped, 1);
    }

    #[test]
    fn capability_update_with_integer_string_and_unlimited() {
        let cap = |value: Value| match parse_json(envelope("business_capability_update", value))
            .events
            .first()
        {
            Some(Event::Capability(c)) => c.clone(),
            other => panic!("expected a capability update, got {other:?}"),
        };
        let c = cap(json!({"max_daily_conversation_per_phone": 2000,
                           "max_phone_numbers_per_business": 2}));
        assert_eq!(c.limit(), Some(Tier::T2000));
        assert_eq!(c.max_phone_numbers_per_business, Some(2));
        let c = cap(json!({"max_daily_conversations_per_business": "TIER_2K"}));
        assert_eq!(c.limit(), Some(Tier::T2000));
        let c = cap(json!({"max_daily_conversation_per_phone": -1}));
        assert_eq!(c.limit(), Some(Tier::Unlimited));
        let c = cap(json!({"max_daily_conversations_per_business": "UNLIMITED",
                           "max_daily_conversation_per_phone": 250}));
        assert_eq!(c.limit(), Some(Tier::Unlimited), "the v24 field wins");
        let c = cap(json!({"max_daily_conversations_per_business": "10000",
                           "max_phone_numbers_per_waba": "25"}));
        assert_eq!(c.limit(), Some(Tier::T10000));
        assert_eq!(c.max_phone_numbers_per_waba, Some(25));
        let c = cap(json!({"max_daily_conversations_per_business": "TIER_5K"}));
        assert_eq!(c.limit(), None, "unknown limits are not guessed");
    }

    #[test]
    fn phone_quality_update() {
        let n = parse_json(envelope(
            "phone_number_quality_update",
            json!({"display_phone_number": "15550783881", "event": "THROUGHPUT_UPGRADE",
                   "current_limit": "TIER_10K", "old_limit": "TIER_2K",
                   "max_daily_conversations_per_business": 100000}),
        ));
        let Some(Event::PhoneQuality(p)) = n.events.first() else {
            panic!("expected a phone quality update, got {:?}", n.events);
        };
        assert_eq!(p.event, Some(PhoneQualityEvent::ThroughputUpgrade));
        assert_eq!(p.current_limit, Some(Tier::T10000));
        assert_eq!(p.old_limit, Some(Tier::T2000));
        assert_eq!(p.limit(), Some(Tier::T100000));
        assert_eq!(p.display_phone_number.as_deref(), Some("15550783881"));

        let n = parse_json(envelope(
            "phone_number_quality_update",
            json!({"display_phone_number": 15550783881u64, "event": "FLAGGED",
                   "current_limit": "TIER_1K"}),
        ));
        let Some(Event::PhoneQuality(p)) = n.events.first() else {
            panic!("expected a phone quality update");
        };
        assert_eq!(p.event, Some(PhoneQualityEvent::Flagged));
        assert_eq!(p.limit(), Some(Tier::T1000));
        assert_eq!(p.display_phone_number.as_deref(), Some("15550783881"));
    }

    #[test]
    fn account_update_keeps_raw_details() {
        let n = parse_json(envelope(
            "account_update",
            json!({"phone_number": "15550783881", "event": "DISABLED_UPDATE",
                   "ban_info": {"waba_ban_state": "DISABLE", "waba_ban_date": "2025-11-16"}}),
        ));
        let Some(Event::Account(a)) = n.events.first() else {
            panic!("expected an account update");
        };
        assert_eq!(a.event, Some(AccountEvent::DisabledUpdate));
        assert_eq!(
            a.ban_info,
            Some(json!({"waba_ban_state": "DISABLE", "waba_ban_date": "2025-11-16"}))
        );
        assert_eq!(a.restriction_info, None);
        let n = parse_json(envelope("account_update", json!({"event": "MYSTERY"})));
        let Some(Event::Account(a)) = n.events.first() else {
            panic!("expected an account update");
        };
        assert_eq!(a.event, Some(AccountEvent::Other("MYSTERY".into())));
    }

    #[test]
    fn account_update_effects() {
        let effect =
            |value: Value| match parse_json(envelope("account_update", value)).events.first() {
                Some(Event::Account(a)) => a.effect(),
                other => panic!("expected an account update, got {other:?}"),
            };
        assert_eq!(
            effect(json!({"event": "DISABLED_UPDATE",
                          "ban_info": {"waba_ban_state": "DISABLE", "waba_ban_date": "2025-11-16"}})),
            AccountEffect::Pause {
                reason: "account_update: DISABLED_UPDATE (DISABLE)".into()
            }
        );
        assert_eq!(
            effect(
                json!({"event": "DISABLED_UPDATE", "ban_info": {"waba_ban_state": "reinstate"}})
            ),
            AccountEffect::Resume
        );
        assert_eq!(
            effect(json!({"event": "DISABLED_UPDATE",
                          "ban_info": {"waba_ban_state": "SCHEDULE_FOR_DISABLE"}})),
            AccountEffect::Informational
        );
        assert!(matches!(
            effect(json!({"event": "DISABLED_UPDATE"})),
            AccountEffect::Pause { .. }
        ));
        assert_eq!(
            effect(json!({"event": "ACCOUNT_RESTRICTION", "restriction_info": [
                {"restriction_type": "RESTRICTED_BIZ_INITIATED_MESSAGING", "expiration": 1731705721}]})),
            AccountEffect::Pause {
                reason: "account_update: ACCOUNT_RESTRICTION (RESTRICTED_BIZ_INITIATED_MESSAGING)"
                    .into()
            }
        );
        assert_eq!(
            effect(json!({"event": "ACCOUNT_RESTRICTION", "restriction_info": [
                {"restriction_type": "RESTRICTED_ADD_PHONE_NUMBER_ACTION"}]})),
            AccountEffect::Informational
        );
        assert!(matches!(
            effect(json!({"event": "ACCOUNT_RESTRICTION"})),
            AccountEffect::Pause { .. }
        ));
        assert!(matches!(
            effect(json!({"event": "ACCOUNT_OFFBOARDED"})),
            AccountEffect::Pause { .. }
        ));
        for informational in ["ACCOUNT_VIOLATION", "PARTNER_ADDED", "SOMETHING_NEW"] {
            assert_eq!(
                effect(json!({"event": informational})),
                AccountEffect::Informational,
                "{informational}"
            );
        }
        assert_eq!(effect(json!({})), AccountEffect::Informational);
    }

    #[test]
    fn template_events_and_stored_statuses() {
        assert_eq!(TemplateEvent::Reinstated.stored_status(), Some("APPROVED"));
        assert_eq!(TemplateEvent::Paused.stored_status(), Some("PAUSED"));
        assert_eq!(TemplateEvent::Disabled.stored_status(), Some("DISABLED"));
        assert_eq!(TemplateEvent::Flagged.stored_status(), None);
        assert_eq!(TemplateEvent::from("NEW_THING").stored_status(), None);
    }

    #[test]
    fn phone_quality_throughput_and_quality() {
        let update = |event: &str| PhoneQualityUpdate {
            waba_id: None,
            time: None,
            display_phone_number: None,
            event: Some(PhoneQualityEvent::from(event)),
            current_limit: None,
            old_limit: None,
            max_daily_conversations_per_business: None,
        };
        assert_eq!(
            update("THROUGHPUT_UPGRADE").throughput(),
            Some(ThroughputLevel::High)
        );
        assert_eq!(update("ONBOARDING").throughput(), None);
        assert_eq!(update("FLAGGED").quality_rating(), Some("RED"));
        assert_eq!(update("UNFLAGGED").quality_rating(), Some("YELLOW"));
        assert_eq!(update("UPGRADE").quality_rating(), None);
    }

    #[test]
    fn inbound_messages_and_user_preferences() {
        let n = parse_json(envelope(
            "messages",
            json!({"metadata": {"phone_number_id": "106540352242922"},
            "contacts": [{"profile": {"name": "Juan"}, "wa_id": "5491112345678"}],
            "messages": [
                {"from": "5491112345678", "id": "wamid.IN1", "timestamp": "1749416383",
                 "type": "text", "text": {"body": "STOP"}},
                {"from": "5491112345678", "id": "wamid.IN2", "timestamp": 1749416390,
                 "type": "button", "button": {"payload": "TRACK", "text": "Track"},
                 "context": {"from": "15550783881", "id": "wamid.OUT"}},
                {"id": "wamid.IN3", "type": "text"}
            ]}),
        ));
        let inbound: Vec<&InboundMessage> = n
            .events
            .iter()
            .filter_map(|e| match e {
                Event::Inbound(m) => Some(m),
                _ => None,
            })
            .collect();
        assert_eq!(inbound.len(), 2);
        assert_eq!(inbound[0].text.as_deref(), Some("STOP"));
        assert_eq!(inbound[0].profile_name.as_deref(), Some("Juan"));
        assert_eq!(inbound[0].timestamp, Some(1749416383));
        assert_eq!(inbound[1].message_type.as_deref(), Some("button"));
        assert_eq!(inbound[1].button_payload.as_deref(), Some("TRACK"));
        assert_eq!(inbound[1].context_id.as_deref(), Some("wamid.OUT"));
        assert_eq!(n.skipped, 1, "inbound without `from`");

        let n = parse_json(envelope(
            "user_preferences",
            json!({"metadata": {"phone_number_id": "106540352242922"},
                   "user_preferences": [{"wa_id": "5491112345678", "detail": "User requested to stop marketing messages",
                                         "category": "marketing_messages", "value": "stop",
                                         "timestamp": 1731705721}]}),
        ));
        let Some(Event::UserPreference(p)) = n.events.first() else {
            panic!("expected a user preference");
        };
        assert!(p.is_marketing_stop());
        assert_eq!(p.phone_number_id.as_deref(), Some("106540352242922"));
    }

    #[test]
    fn loose_errors_in_a_messages_change() {
        let n = parse_json(envelope(
            "messages",
            json!({"metadata": {"phone_number_id": "1"},
                   "errors": [{"code": 131000, "title": "Something went wrong"}]}),
        ));
        let Some(Event::Errors(e)) = n.events.first() else {
            panic!("expected errors");
        };
        assert_eq!(e.errors[0].code, 131000);
        assert_eq!(e.phone_number_id.as_deref(), Some("1"));
    }

    #[test]
    fn several_entries_and_changes_keep_order() {
        let n = parse_json(json!({"object": "whatsapp_business_account", "entry": [
            {"id": "W1", "changes": [
                {"field": "messages", "value": {"statuses": [{"id": "a", "status": "sent"}]}},
                {"field": "account_update", "value": {"event": "ACCOUNT_VIOLATION"}}]},
            {"id": "W2", "changes": [
                {"field": "messages", "value": {"statuses": [{"id": "b", "status": "read"}]}}]}
        ]}));
        assert_eq!(n.events.len(), 3);
        assert!(matches!(&n.events[0], Event::Status(s) if s.wamid == "a"));
        assert!(matches!(&n.events[1], Event::Account(a) if a.waba_id.as_deref() == Some("W1")));
        assert!(matches!(&n.events[2], Event::Status(s) if s.waba_id.as_deref() == Some("W2")));
    }

    #[test]
    fn empty_entry_list_is_fine() {
        let n = parse_json(json!({"object": "whatsapp_business_account", "entry": []}));
        assert!(n.events.is_empty());
        assert_eq!(n.skipped, 0);
        let n = parse_json(json!({"entry": [{"id": "W"}, {"id": "W", "changes": "nope"}]}));
        assert!(n.events.is_empty());
    }

    #[test]
    fn malformed_bodies_are_errors() {
        for body in [&b""[..], b"not json", b"{\"entry\": [", b"\xff\xfe"] {
            assert!(
                matches!(parse(body), Err(WebhookParseError::Json(_))),
                "{body:?}"
            );
        }
        for body in [
            &b"[]"[..],
            b"42",
            b"\"x\"",
            b"null",
            b"{}",
            b"{\"entry\": {}}",
            b"{\"entry\": null}",
        ] {
            assert!(
                matches!(parse(body), Err(WebhookParseError::Shape(_))),
                "{body:?}"
            );
        }
    }

    #[test]
    fn deeply_nested_body_errors_instead_of_overflowing_the_stack() {
        let depth = 100_000;
        let body = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
        assert!(matches!(
            parse(body.as_bytes()),
            Err(WebhookParseError::Json(_))
        ));
        let nested_value = format!(
            r#"{{"entry":[{{"changes":[{{"field":"messages","value":{}1{}}}]}}]}}"#,
            r#"{"a":"#.repeat(depth),
            "}".repeat(depth)
        );
        assert!(matches!(
            parse(nested_value.as_bytes()),
            Err(WebhookParseError::Json(_))
        ));
    }

    #[test]
    fn events_round_trip_through_serde() {
        let n = parse_json(statuses(json!([
            {"id": "wamid.A", "status": "sent", "timestamp": "1750030073"},
            {"id": "wamid.B", "status": "weird"}
        ])));
        let text = serde_json::to_string(&n).unwrap();
        let back: Notification = serde_json::from_str(&text).unwrap();
        assert_eq!(back, n);
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["events"][0]["kind"], "status");
        assert_eq!(v["events"][1]["status"], "weird");
    }
}
