//! Meta's error body, and what the engine does about each error (META.md §4).
//!
//! [`MetaError::from_response`] reads Meta's error body leniently; [`classify`] /
//! [`classify_attempt`] turn it into an [`ErrorAction`]. Meta asks clients to branch on `code` (plus
//! `error_data.details`), never on the title, the subcode or the HTTP status, so the HTTP status is
//! only used when there is no Meta code at all (a proxy's 502, an empty body, HTML).
//!
//! # Classification table
//! | codes | action |
//! |---|---|
//! | 131000, 131016, 1, 2 | [`ErrorAction::RetryLater`], exponential backoff ([`retry_backoff`]) |
//! | 131057 (maintenance during a throughput upgrade, ≤ 1 min) | [`ErrorAction::RetryLater`] after [`MAINTENANCE_BACKOFF`] |
//! | 130429 (throughput reached) | [`ErrorAction::Throttled`] ([`throttle_backoff`]) |
//! | 131056 (pair rate limit) | [`ErrorAction::PairRateLimited`] after 4^X s ([`pair_rate_backoff`]) |
//! | 4, 80007 (app / WABA management-call limit) | [`ErrorAction::AppRateLimited`] ([`app_rate_backoff`]) |
//! | 131048 (spam rate limit) | [`ErrorAction::PauseNumber`] |
//! | 132001, 132015, 132016, 131064 | [`ErrorAction::StopSend`] (template missing/unapproved, paused, disabled, limit cut) |
//! | 0, 190 · 131031 · 368 · 131042 · 133010 · 10, 200–299, 131005 | [`ErrorAction::StopAccount`] (token · locked · blocked · payment · number not registered · permissions) |
//! | 131026, 131047, 131021, 131049, 131050, 132000, 132005, 132007, 132012, 100, 131008, 131009, 130497, 131063, 130472, 130403 | [`ErrorAction::FailMessage`] |
//! | anything else, or no Meta code | by HTTP status: 429 → `Throttled`; 408 and 5xx → `RetryLater`; other 4xx → `FailMessage`; 0 (an asynchronous error from a webhook) → `FailMessage`; any other status → `RetryLater` |
//!
//! Notes on the choices:
//! - 131049 (per-user marketing cap) may only be retried after ≥ 24 h and early retries can lock the
//!   user out, so it fails the message rather than holding a bulk send for a day.
//! - 131064 is a template-classification sanction: it stops the send, not the account.
//! - Backoffs are deterministic; the engine may add jitter and bounds the number of attempts.
//!
//! # Asynchronous errors
//! Errors also arrive in `failed` status webhooks (`statuses[].errors`). There the message has
//! already failed (Meta's word, final); only the side effects of the action still apply (pause the
//! number, stop the send or account). [`MetaError`]s built from webhooks carry
//! [`ASYNC_HTTP_STATUS`] (0).
//!
//! # Transport failures
//! [`SendFailure`] adds the failures without a Meta answer and says whether the message was
//! **definitely not sent** (retry freely) or has an **unknown outcome** (it may have been accepted;
//! keep it `dispatching` and reconcile via webhooks, see ARCHITECTURE.md).

use std::fmt;
use std::time::Duration;

use serde::Serialize;
use serde_json::{Map, Value};

/// The `code` of a [`MetaError`] that carries no Meta error code: the body was empty, not JSON, or
/// had no readable `error.code`. Such errors are classified by HTTP status.
pub const NO_META_CODE: i64 = -1;

/// The `http_status` of a [`MetaError`] that came asynchronously (a `failed` status webhook or
/// `value.errors`) rather than as an HTTP answer.
pub const ASYNC_HTTP_STATUS: u16 = 0;

/// Wait before retrying after 131057 (a throughput upgrade's maintenance mode lasts ≤ 1 min).
pub const MAINTENANCE_BACKOFF: Duration = Duration::from_secs(60);

/// Longest wait for [`retry_backoff`].
pub const MAX_RETRY_BACKOFF: Duration = Duration::from_secs(5 * 60);
/// Longest wait for [`throttle_backoff`].
pub const MAX_THROTTLE_BACKOFF: Duration = Duration::from_secs(60);
/// Longest wait for [`pair_rate_backoff`].
pub const MAX_PAIR_RATE_BACKOFF: Duration = Duration::from_secs(15 * 60);
/// Longest wait for [`app_rate_backoff`] (Meta's management limits use a rolling hour).
pub const MAX_APP_RATE_BACKOFF: Duration = Duration::from_secs(60 * 60);

/// Longest `message` kept from a body that is not a Meta error (characters).
const BODY_EXCERPT_CHARS: usize = 200;

/// An error reported by Meta's Graph API (or, with [`NO_META_CODE`], an HTTP error without Meta's
/// error body).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct MetaError {
    /// Meta's `error.code`, or [`NO_META_CODE`].
    pub code: i64,
    /// Meta's `error.error_subcode`, when present (documented as gone since v16, still seen).
    pub subcode: Option<i64>,
    /// Meta's `error.message` (the title, e.g. `(#130429) Rate limit hit`); else the details, an
    /// excerpt (≤ 200 characters) of a non-Meta body, or a note that there was no message.
    pub message: String,
    /// Meta's `error.error_data.details`: the explanation Meta wants clients to branch on.
    pub details: Option<String>,
    /// Meta's `error.fbtrace_id`, for support requests.
    pub fbtrace_id: Option<String>,
    /// The HTTP status of the answer; [`ASYNC_HTTP_STATUS`] for errors from webhooks.
    pub http_status: u16,
}

impl MetaError {
    /// An error with just a code, a status and a message (for tests, the simulator and webhooks).
    pub fn new(http_status: u16, code: i64, message: impl Into<String>) -> MetaError {
        MetaError {
            code,
            subcode: None,
            message: message.into(),
            details: None,
            fbtrace_id: None,
            http_status,
        }
    }

    /// Reads an error answer of the Graph API. Never fails: any body yields a `MetaError`.
    ///
    /// Expects `{"error":{"message","type","code","error_data":{"details"},"error_subcode",
    /// "fbtrace_id"}}`; `code` and `error_subcode` may be numbers or numeric strings, every piece may
    /// be missing, unknown fields are ignored. Without a readable `error.code` the result has
    /// [`NO_META_CODE`] and is classified by `http_status`.
    pub fn from_response(http_status: u16, body: &[u8]) -> MetaError {
        let parsed: Option<Value> = serde_json::from_slice(body).ok();
        match parsed.as_ref().and_then(|v| v.get("error")) {
            Some(Value::Object(error)) => Self::from_error_object(http_status, error),
            Some(Value::String(message)) if !message.trim().is_empty() => {
                MetaError::new(http_status, NO_META_CODE, message.trim())
            }
            _ => MetaError::new(http_status, NO_META_CODE, body_excerpt(http_status, body)),
        }
    }

    fn from_error_object(http_status: u16, error: &Map<String, Value>) -> MetaError {
        let code = error
            .get("code")
            .and_then(lenient_i64)
            .unwrap_or(NO_META_CODE);
        let details = match error.get("error_data") {
            Some(Value::Object(data)) => data.get("details").and_then(lenient_string),
            Some(other) => lenient_string(other),
            None => None,
        };
        let message = error
            .get("message")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .or_else(|| details.clone())
            .unwrap_or_else(|| format!("HTTP {http_status} error without a message"));
        MetaError {
            code,
            subcode: error.get("error_subcode").and_then(lenient_i64),
            message,
            details,
            fbtrace_id: error.get("fbtrace_id").and_then(lenient_string),
            http_status,
        }
    }

    /// Whether the error carries a Meta error code (false for bodies that are not Meta's).
    pub fn has_meta_code(&self) -> bool {
        self.code != NO_META_CODE
    }

    /// Whether this is a transport-level failure rather than a Meta verdict: an HTTP error without
    /// Meta's error body (a proxy, a load balancer, an outage page).
    pub fn is_transport_level(&self) -> bool {
        !self.has_meta_code() && self.http_status != ASYNC_HTTP_STATUS
    }
}

impl fmt::Display for MetaError {
    /// `(#code) message`; Meta's message usually starts with `(#code)` already and is then shown as
    /// is. Without a Meta code: `(HTTP status) message`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.has_meta_code() {
            return write!(f, "(HTTP {}) {}", self.http_status, self.message);
        }
        let prefix = format!("(#{})", self.code);
        if self.message.starts_with(&prefix) {
            f.write_str(&self.message)
        } else {
            write!(f, "{prefix} {}", self.message)
        }
    }
}

impl std::error::Error for MetaError {}

/// A number from a JSON number (integral) or a numeric string; `None` otherwise.
pub(crate) fn lenient_i64(value: &Value) -> Option<i64> {
    match value {
        Value::Number(n) => n.as_i64().or_else(|| {
            n.as_f64()
                .filter(|f| f.fract() == 0.0 && f.abs() < 9.0e15)
                .map(|f| f as i64)
        }),
        Value::String(s) => {
            let s = s.trim();
            s.parse::<i64>().ok().or_else(|| {
                s.parse::<f64>()
                    .ok()
                    .filter(|f| f.is_finite() && f.fract() == 0.0 && f.abs() < 9.0e15)
                    .map(|f| f as i64)
            })
        }
        _ => None,
    }
}

/// A string from a JSON string or number (ids arrive as both); `None` otherwise.
pub(crate) fn lenient_string(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn body_excerpt(http_status: u16, body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() {
        format!("HTTP {http_status} without a Meta error body")
    } else {
        text.chars().take(BODY_EXCERPT_CHARS).collect()
    }
}

/// Why a whole bulk send stops (a template problem). Machine names for `pause_reason`/errors.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StopSendReason {
    /// 132001: the template does not exist in that language or is not approved.
    TemplateNotApproved,
    /// 132015: the template is paused (quality).
    TemplatePaused,
    /// 132016: the template is permanently disabled.
    TemplateDisabled,
    /// 131064: sending limit cut for template-classification violations.
    TemplateLimitCut,
}

impl StopSendReason {
    /// Whether the template can come back by itself (a pause): pause the sends, do not fail them.
    pub fn is_temporary(self) -> bool {
        matches!(self, StopSendReason::TemplatePaused)
    }

    /// The snake_case machine name.
    pub fn as_str(self) -> &'static str {
        match self {
            StopSendReason::TemplateNotApproved => "template_not_approved",
            StopSendReason::TemplatePaused => "template_paused",
            StopSendReason::TemplateDisabled => "template_disabled",
            StopSendReason::TemplateLimitCut => "template_limit_cut",
        }
    }
}

/// Why every send of an account or number stops. Machine names for `pause_reason`/errors.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StopAccountReason {
    /// 0 / 190: the access token is invalid, expired or revoked.
    TokenInvalid,
    /// 131031: the business account is locked.
    AccountLocked,
    /// 368: temporarily blocked for policy violations.
    AccountBlocked,
    /// 131042: payment or billing problem.
    PaymentIssue,
    /// 133010: the sender phone number is not registered on the Cloud API.
    NumberNotRegistered,
    /// 10, 200–299, 131005: the token lacks a permission.
    PermissionDenied,
}

impl StopAccountReason {
    /// The snake_case machine name.
    pub fn as_str(self) -> &'static str {
        match self {
            StopAccountReason::TokenInvalid => "token_invalid",
            StopAccountReason::AccountLocked => "account_locked",
            StopAccountReason::AccountBlocked => "account_blocked",
            StopAccountReason::PaymentIssue => "payment_issue",
            StopAccountReason::NumberNotRegistered => "number_not_registered",
            StopAccountReason::PermissionDenied => "permission_denied",
        }
    }
}

/// What the engine does after Meta rejected a request. Every variant applies to the message that
/// got the error; the stop/pause variants also affect other messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorAction {
    /// A transient Meta problem: put the message back to `pending` and retry it after `after`.
    /// The engine bounds the attempts and fails the message when they run out.
    RetryLater {
        /// How long to wait before the next attempt.
        after: Duration,
    },
    /// 130429, the number's throughput was exceeded: slow this number's pacing down and retry the
    /// message after `after`.
    Throttled {
        /// How long to wait before retrying this message.
        after: Duration,
    },
    /// 131056, too many messages to this recipient from this number: retry this recipient only,
    /// after `after` (4^X s); other recipients go on.
    PairRateLimited {
        /// How long to wait before retrying this recipient.
        after: Duration,
    },
    /// 4 / 80007, a management-API call limit (rolling hour): retry the call slowly.
    AppRateLimited {
        /// How long to wait before retrying the call.
        after: Duration,
    },
    /// Permanent for this recipient: fail this message, the send goes on.
    FailMessage,
    /// 131048, spam rate limit: stop dispatching from this sender number until an operator or a
    /// quality signal resumes it. The message goes back to `pending` (it was not sent).
    PauseNumber,
    /// A template problem: every send using this template stops dispatching.
    /// - Permanent reasons (not approved, disabled, limit cut): the message fails, and so do the
    ///   sends' remaining messages (the sends end `FAILED`, a fatal error).
    /// - [`StopSendReason::TemplatePaused`] is temporary ([`StopSendReason::is_temporary`]): the
    ///   sends pause until a template webhook says `APPROVED`/`REINSTATED`, and a message rejected
    ///   synchronously goes back to `pending` (one that failed by webhook stays failed).
    StopSend {
        /// Which template problem.
        reason: StopSendReason,
    },
    /// A token or account problem: stop every send on that account/number. The message fails with
    /// the stopped sends (fatal) until an operator fixes the account.
    StopAccount {
        /// Which account problem.
        reason: StopAccountReason,
    },
}

impl ErrorAction {
    /// The wait before the next attempt, for the retrying variants.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            ErrorAction::RetryLater { after }
            | ErrorAction::Throttled { after }
            | ErrorAction::PairRateLimited { after }
            | ErrorAction::AppRateLimited { after } => Some(*after),
            _ => None,
        }
    }

    /// Whether a message rejected synchronously goes back to `pending` (a retry, a paused number,
    /// a paused template) rather than failing.
    pub fn keeps_message_pending(&self) -> bool {
        match self {
            ErrorAction::PauseNumber => true,
            ErrorAction::StopSend { reason } => reason.is_temporary(),
            other => other.retry_after().is_some(),
        }
    }
}

/// `base × 2^attempt`, capped; `attempt` 0 is the first retry.
fn exponential(base: Duration, attempt: u32, cap: Duration) -> Duration {
    let factor = 1u32.checked_shl(attempt.min(31)).unwrap_or(u32::MAX);
    base.checked_mul(factor).map_or(cap, |d| d.min(cap))
}

/// Backoff for transient errors: 2 s × 2^attempt, capped at [`MAX_RETRY_BACKOFF`].
pub fn retry_backoff(attempt: u32) -> Duration {
    exponential(Duration::from_secs(2), attempt, MAX_RETRY_BACKOFF)
}

/// Backoff after 130429: 1 s × 2^attempt, capped at [`MAX_THROTTLE_BACKOFF`].
pub fn throttle_backoff(attempt: u32) -> Duration {
    exponential(Duration::from_secs(1), attempt, MAX_THROTTLE_BACKOFF)
}

/// Meta's pair-rate backoff after 131056: 4^attempt seconds (1, 4, 16, 64, 256, …), capped at
/// [`MAX_PAIR_RATE_BACKOFF`] (15 min).
pub fn pair_rate_backoff(attempt: u32) -> Duration {
    4u64.checked_pow(attempt)
        .map_or(MAX_PAIR_RATE_BACKOFF, |secs| {
            Duration::from_secs(secs).min(MAX_PAIR_RATE_BACKOFF)
        })
}

/// Backoff after 4 / 80007: 60 s × 2^attempt, capped at [`MAX_APP_RATE_BACKOFF`] (1 h).
pub fn app_rate_backoff(attempt: u32) -> Duration {
    exponential(Duration::from_secs(60), attempt, MAX_APP_RATE_BACKOFF)
}

/// Classifies an error for a first failure (`attempt` 0). See [`classify_attempt`].
pub fn classify(err: &MetaError) -> ErrorAction {
    classify_attempt(err, 0)
}

/// Classifies an error per the table of the module doc. `attempt` is how many times this message
/// already failed this way (0 the first time) and only scales the backoff.
pub fn classify_attempt(err: &MetaError, attempt: u32) -> ErrorAction {
    use ErrorAction::*;
    match err.code {
        131000 | 131016 | 1 | 2 => RetryLater {
            after: retry_backoff(attempt),
        },
        131057 => RetryLater {
            after: MAINTENANCE_BACKOFF,
        },
        130429 => Throttled {
            after: throttle_backoff(attempt),
        },
        131056 => PairRateLimited {
            after: pair_rate_backoff(attempt),
        },
        4 | 80007 => AppRateLimited {
            after: app_rate_backoff(attempt),
        },
        131048 => PauseNumber,
        132001 => StopSend {
            reason: StopSendReason::TemplateNotApproved,
        },
        132015 => StopSend {
            reason: StopSendReason::TemplatePaused,
        },
        132016 => StopSend {
            reason: StopSendReason::TemplateDisabled,
        },
        131064 => StopSend {
            reason: StopSendReason::TemplateLimitCut,
        },
        0 | 190 => StopAccount {
            reason: StopAccountReason::TokenInvalid,
        },
        131031 => StopAccount {
            reason: StopAccountReason::AccountLocked,
        },
        368 => StopAccount {
            reason: StopAccountReason::AccountBlocked,
        },
        131042 => StopAccount {
            reason: StopAccountReason::PaymentIssue,
        },
        133010 => StopAccount {
            reason: StopAccountReason::NumberNotRegistered,
        },
        10 | 200..=299 | 131005 => StopAccount {
            reason: StopAccountReason::PermissionDenied,
        },
        131026 | 131047 | 131021 | 131049 | 131050 | 132000 | 132005 | 132007 | 132012 | 100
        | 131008 | 131009 | 130497 | 131063 | 130472 | 130403 => FailMessage,
        _ => classify_by_http_status(err.http_status, attempt),
    }
}

/// The fallback for unknown codes and bodies without a Meta code.
fn classify_by_http_status(http_status: u16, attempt: u32) -> ErrorAction {
    match http_status {
        ASYNC_HTTP_STATUS => ErrorAction::FailMessage,
        429 => ErrorAction::Throttled {
            after: throttle_backoff(attempt),
        },
        408 | 500..=599 => ErrorAction::RetryLater {
            after: retry_backoff(attempt),
        },
        400..=499 => ErrorAction::FailMessage,
        _ => ErrorAction::RetryLater {
            after: retry_backoff(attempt),
        },
    }
}

/// Whether a failed send attempt may have reached Meta.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SendOutcome {
    /// Meta did not take the message: it may be retried without risk of a double send.
    NotSent,
    /// Meta may have accepted it: keep it `dispatching` and wait for a webhook naming it (the
    /// reconcile grace period), then apply the reconcile policy.
    Unknown,
}

/// Why one send request (`POST /{phone_number_id}/messages`) did not return a wamid.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SendFailure {
    /// Meta answered with an error (or a non-2xx without Meta's body). **Definitely not sent**,
    /// except a bare 504 without a Meta code: a gateway timed out waiting for Meta, which may have
    /// accepted the request (**unknown outcome**).
    #[error("{0}")]
    Meta(MetaError),
    /// No connection: DNS failure, connection refused, TLS handshake failure — the request was never
    /// written. **Definitely not sent.**
    #[error("could not connect to the Graph API: {0}")]
    Connect(String),
    /// The request was written but no answer came in time. **Unknown outcome.**
    #[error("the Graph API did not answer in time")]
    Timeout,
    /// The connection broke after the request was written, or a 2xx answer could not be read (no
    /// wamid). **Unknown outcome.**
    #[error("the Graph API exchange broke off: {0}")]
    Interrupted(String),
}

impl SendFailure {
    /// Whether the message may have been accepted by Meta.
    pub fn outcome(&self) -> SendOutcome {
        match self {
            SendFailure::Meta(err) if !err.has_meta_code() && err.http_status == 504 => {
                SendOutcome::Unknown
            }
            SendFailure::Meta(_) | SendFailure::Connect(_) => SendOutcome::NotSent,
            SendFailure::Timeout | SendFailure::Interrupted(_) => SendOutcome::Unknown,
        }
    }

    /// What to do about the message; `None` when the outcome is unknown (the message stays
    /// `dispatching` for reconciliation). `attempt` scales the backoff as in [`classify_attempt`].
    pub fn action(&self, attempt: u32) -> Option<ErrorAction> {
        if self.outcome() == SendOutcome::Unknown {
            return None;
        }
        match self {
            SendFailure::Meta(err) => Some(classify_attempt(err, attempt)),
            SendFailure::Connect(_) => Some(ErrorAction::RetryLater {
                after: retry_backoff(attempt),
            }),
            SendFailure::Timeout | SendFailure::Interrupted(_) => None,
        }
    }
}

impl From<MetaError> for SendFailure {
    fn from(err: MetaError) -> Self {
        SendFailure::Meta(err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ErrorAction::*;

    fn action(code: i64) -> ErrorAction {
        classify(&MetaError::new(400, code, "test"))
    }

    fn meta_body(code: serde_json::Value) -> Vec<u8> {
        serde_json::json!({"error": {
            "message": "(#130429) Rate limit hit",
            "type": "OAuthException",
            "code": code,
            "error_data": {"messaging_product": "whatsapp",
                           "details": "Cloud API message throughput has been reached."},
            "error_subcode": 2494055,
            "fbtrace_id": "Az8or2yhqkZfEZ-_4Qn_Bam"
        }})
        .to_string()
        .into_bytes()
    }

    #[test]
    fn parses_metas_example_body() {
        let err = MetaError::from_response(400, &meta_body(serde_json::json!(130429)));
        assert_eq!(err.code, 130429);
        assert_eq!(err.subcode, Some(2494055));
        assert_eq!(err.message, "(#130429) Rate limit hit");
        assert_eq!(
            err.details.as_deref(),
            Some("Cloud API message throughput has been reached.")
        );
        assert_eq!(err.fbtrace_id.as_deref(), Some("Az8or2yhqkZfEZ-_4Qn_Bam"));
        assert_eq!(err.http_status, 400);
        assert!(err.has_meta_code());
        assert!(!err.is_transport_level());
        assert_eq!(err.to_string(), "(#130429) Rate limit hit");
    }

    #[test]
    fn code_may_be_a_numeric_string() {
        let err = MetaError::from_response(400, &meta_body(serde_json::json!(" 131056 ")));
        assert_eq!(err.code, 131056);
        let err = MetaError::from_response(400, &meta_body(serde_json::json!("abc")));
        assert_eq!(err.code, NO_META_CODE);
        let err = MetaError::from_response(400, &meta_body(serde_json::json!(1.5)));
        assert_eq!(err.code, NO_META_CODE);
    }

    #[test]
    fn missing_pieces_are_tolerated() {
        let err = MetaError::from_response(401, br#"{"error":{"code":190}}"#);
        assert_eq!(err.code, 190);
        assert_eq!(err.subcode, None);
        assert_eq!(err.details, None);
        assert_eq!(err.fbtrace_id, None);
        assert_eq!(err.to_string(), "(#190) HTTP 401 error without a message");

        let err =
            MetaError::from_response(400, br#"{"error":{"message":"boom","error_data":"raw"}}"#);
        assert_eq!(err.code, NO_META_CODE);
        assert_eq!(err.details.as_deref(), Some("raw"));
        assert_eq!(err.to_string(), "(HTTP 400) boom");
    }

    #[test]
    fn display_adds_the_code_when_missing_from_the_message() {
        let err = MetaError::new(400, 131026, "Message undeliverable");
        assert_eq!(err.to_string(), "(#131026) Message undeliverable");
    }

    #[test]
    fn non_meta_bodies_use_the_sentinel() {
        for body in [
            &b""[..],
            b"   ",
            b"<html>Bad Gateway</html>",
            b"[1,2]",
            b"{\"error\":null}",
            b"\xff\xfe",
        ] {
            let err = MetaError::from_response(502, body);
            assert_eq!(err.code, NO_META_CODE, "{body:?}");
            assert!(err.is_transport_level());
            assert!(!err.message.is_empty());
        }
        let err = MetaError::from_response(503, b"");
        assert_eq!(err.message, "HTTP 503 without a Meta error body");
        let err = MetaError::from_response(400, br#"{"error":"bad thing"}"#);
        assert_eq!(err.message, "bad thing");
        let long = "x".repeat(10_000);
        let err = MetaError::from_response(500, long.as_bytes());
        assert_eq!(err.message.chars().count(), 200);
    }

    #[test]
    fn deeply_nested_body_does_not_crash() {
        let body = "[".repeat(100_000);
        let err = MetaError::from_response(500, body.as_bytes());
        assert_eq!(err.code, NO_META_CODE);
        assert_eq!(
            classify(&err),
            RetryLater {
                after: retry_backoff(0)
            }
        );
    }

    #[test]
    fn transient_codes_retry_with_backoff() {
        for code in [131000, 131016, 1, 2] {
            assert_eq!(
                action(code),
                RetryLater {
                    after: Duration::from_secs(2)
                },
                "{code}"
            );
        }
        assert_eq!(
            action(131057),
            RetryLater {
                after: MAINTENANCE_BACKOFF
            }
        );
        let err = MetaError::new(500, 131000, "x");
        assert_eq!(
            classify_attempt(&err, 3),
            RetryLater {
                after: Duration::from_secs(16)
            }
        );
    }

    #[test]
    fn throughput_and_pair_rate() {
        assert_eq!(
            action(130429),
            Throttled {
                after: Duration::from_secs(1)
            }
        );
        assert_eq!(
            action(131056),
            PairRateLimited {
                after: Duration::from_secs(1)
            }
        );
        let err = MetaError::new(400, 131056, "pair");
        assert_eq!(
            classify_attempt(&err, 2),
            PairRateLimited {
                after: Duration::from_secs(16)
            }
        );
        assert_eq!(
            action(4),
            AppRateLimited {
                after: Duration::from_secs(60)
            }
        );
        assert_eq!(
            action(80007),
            AppRateLimited {
                after: Duration::from_secs(60)
            }
        );
    }

    #[test]
    fn spam_rate_limit_pauses_the_number() {
        assert_eq!(action(131048), PauseNumber);
        assert!(PauseNumber.keeps_message_pending());
        assert_eq!(PauseNumber.retry_after(), None);
    }

    #[test]
    fn template_problems_stop_the_send() {
        let cases = [
            (132001, StopSendReason::TemplateNotApproved),
            (132015, StopSendReason::TemplatePaused),
            (132016, StopSendReason::TemplateDisabled),
            (131064, StopSendReason::TemplateLimitCut),
        ];
        for (code, reason) in cases {
            assert_eq!(action(code), StopSend { reason }, "{code}");
        }
        assert_eq!(StopSendReason::TemplatePaused.as_str(), "template_paused");
        assert!(
            action(132015).keeps_message_pending(),
            "a paused template pauses the send"
        );
        assert!(!action(132016).keeps_message_pending());
        assert!(!action(132001).keeps_message_pending());
        assert!(!action(190).keeps_message_pending());
        assert!(action(130429).keeps_message_pending());
    }

    #[test]
    fn account_problems_stop_the_account() {
        use StopAccountReason as R;
        let cases = [
            (0, R::TokenInvalid),
            (190, R::TokenInvalid),
            (131031, R::AccountLocked),
            (368, R::AccountBlocked),
            (131042, R::PaymentIssue),
            (133010, R::NumberNotRegistered),
            (10, R::PermissionDenied),
            (200, R::PermissionDenied),
            (250, R::PermissionDenied),
            (299, R::PermissionDenied),
            (131005, R::PermissionDenied),
        ];
        for (code, reason) in cases {
            assert_eq!(action(code), StopAccount { reason }, "{code}");
        }
        assert_eq!(R::TokenInvalid.as_str(), "token_invalid");
    }

    #[test]
    fn permanent_recipient_errors_fail_the_message() {
        for code in [
            131026, 131047, 131021, 131049, 131050, 132000, 132005, 132007, 132012, 100, 131008,
            131009, 130497, 131063, 130472, 130403,
        ] {
            assert_eq!(action(code), FailMessage, "{code}");
            // Also when Meta answers with an unexpected status: the code decides.
            assert_eq!(
                classify(&MetaError::new(500, code, "x")),
                FailMessage,
                "{code}"
            );
        }
        assert!(!FailMessage.keeps_message_pending());
    }

    #[test]
    fn unknown_codes_fall_back_to_http_status() {
        let at = |status| classify(&MetaError::new(status, 999_999, "x"));
        assert_eq!(at(400), FailMessage);
        assert_eq!(at(403), FailMessage);
        assert_eq!(at(404), FailMessage);
        assert_eq!(
            at(429),
            Throttled {
                after: Duration::from_secs(1)
            }
        );
        assert_eq!(
            at(408),
            RetryLater {
                after: Duration::from_secs(2)
            }
        );
        assert_eq!(
            at(500),
            RetryLater {
                after: Duration::from_secs(2)
            }
        );
        assert_eq!(
            at(503),
            RetryLater {
                after: Duration::from_secs(2)
            }
        );
        assert_eq!(
            at(200),
            RetryLater {
                after: Duration::from_secs(2)
            }
        );
        assert_eq!(at(ASYNC_HTTP_STATUS), FailMessage);
        // 131030 is not on Meta's list.
        assert_eq!(action(131030), FailMessage);
        assert_eq!(
            classify(&MetaError::from_response(502, b"")),
            RetryLater {
                after: Duration::from_secs(2)
            }
        );
        assert_eq!(
            classify(&MetaError::from_response(400, b"nope")),
            FailMessage
        );
    }

    #[test]
    fn backoffs_grow_and_are_capped() {
        let pair: Vec<u64> = (0..7).map(|a| pair_rate_backoff(a).as_secs()).collect();
        assert_eq!(pair, [1, 4, 16, 64, 256, 900, 900]);
        assert_eq!(pair_rate_backoff(u32::MAX), MAX_PAIR_RATE_BACKOFF);
        assert_eq!(retry_backoff(0), Duration::from_secs(2));
        assert_eq!(retry_backoff(7), Duration::from_secs(256));
        assert_eq!(retry_backoff(8), MAX_RETRY_BACKOFF);
        assert_eq!(retry_backoff(u32::MAX), MAX_RETRY_BACKOFF);
        assert_eq!(throttle_backoff(5), Duration::from_secs(32));
        assert_eq!(throttle_backoff(6), MAX_THROTTLE_BACKOFF);
        assert_eq!(throttle_backoff(40), MAX_THROTTLE_BACKOFF);
        assert_eq!(app_rate_backoff(5), Duration::from_secs(1920));
        assert_eq!(app_rate_backoff(6), MAX_APP_RATE_BACKOFF);
    }

    #[test]
    fn send_failures_say_whether_the_message_may_have_been_sent() {
        let meta = SendFailure::from(MetaError::new(400, 131026, "undeliverable"));
        assert_eq!(meta.outcome(), SendOutcome::NotSent);
        assert_eq!(meta.action(0), Some(FailMessage));

        let connect = SendFailure::Connect("connection refused".into());
        assert_eq!(connect.outcome(), SendOutcome::NotSent);
        assert_eq!(
            connect.action(1),
            Some(RetryLater {
                after: Duration::from_secs(4)
            })
        );

        assert_eq!(SendFailure::Timeout.outcome(), SendOutcome::Unknown);
        assert_eq!(SendFailure::Timeout.action(0), None);
        let broken = SendFailure::Interrupted("reset by peer".into());
        assert_eq!(broken.outcome(), SendOutcome::Unknown);
        assert_eq!(broken.action(0), None);

        let gateway_timeout = SendFailure::Meta(MetaError::from_response(504, b"Gateway Timeout"));
        assert_eq!(gateway_timeout.outcome(), SendOutcome::Unknown);
        assert_eq!(gateway_timeout.action(0), None);
        let bad_gateway = SendFailure::Meta(MetaError::from_response(502, b""));
        assert_eq!(bad_gateway.outcome(), SendOutcome::NotSent);
        let meta_504 = SendFailure::Meta(MetaError::new(504, 131016, "unavailable"));
        assert_eq!(meta_504.outcome(), SendOutcome::NotSent);

        assert_eq!(
            SendFailure::Timeout.to_string(),
            "the Graph API did not answer in time"
        );
        assert_eq!(meta.to_string(), "(#131026) undeliverable");
    }

    #[test]
    fn serializes_for_logs_and_storage() {
        let err = MetaError::new(400, 100, "Invalid parameter");
        let v = serde_json::to_value(&err).unwrap();
        assert_eq!(v["code"], 100);
        assert_eq!(v["http_status"], 400);
        assert_eq!(v["subcode"], serde_json::Value::Null);
    }
}
