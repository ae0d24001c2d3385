//! Client callbacks (API.md, "Client events"): the events, their envelope, the signature,
//! the progress rate and the retry schedule. Pure: time comes in as unix milliseconds.
//!
//! - Every event is `{"event", "bulk_send_id", "occurred_at", "data"}`; `data` is the send's
//!   status object when the event occurred. The body is rendered once, stored, and the same
//!   bytes are posted (and signed) on every attempt.
//! - The signature is `sha256=` + hex HMAC-SHA256 of those bytes, keyed with the tenant's
//!   webhook secret exactly as `tenant create` prints it (`whsec_…`, as UTF-8 bytes).
//! - A failed attempt is retried after 1 s, 2 s, 4 s … (doubling, at most 10 min apart),
//!   for 24 h after the event occurred; then the event is given up.

use std::fmt;
use std::str::FromStr;

use hmac::{Hmac, Mac};
use serde::Serialize;
use sha2::Sha256;

use crate::clock::format_api_time;

/// The header carrying the signature.
pub const SIGNATURE_HEADER: &str = "X-Mindo-Signature";
/// The header carrying the event's id (the same on every attempt: receivers deduplicate by
/// it, since an attempt cut short by a restart is made again).
pub const EVENT_ID_HEADER: &str = "X-Mindo-Event-Id";
/// Progress events of one send are at least this far apart.
pub const PROGRESS_INTERVAL_MS: i64 = 5_000;
/// How long after it occurred an event is still attempted.
pub const RETRY_WINDOW_MS: i64 = 24 * 60 * 60 * 1000;
/// The first retry's delay.
const FIRST_BACKOFF_MS: i64 = 1_000;
/// The longest delay between two attempts.
const MAX_BACKOFF_MS: i64 = 10 * 60 * 1000;

/// What an event reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// `bulk_send.status_changed`: the send's status changed (to the one in `data`).
    StatusChanged,
    /// `bulk_send.progress`: the counters moved while the send is processing.
    Progress,
}

impl EventKind {
    /// The `event` field.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::StatusChanged => "bulk_send.status_changed",
            EventKind::Progress => "bulk_send.progress",
        }
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error for an event name that is not one of [`EventKind::as_str`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown callback event: {0:?}")]
pub struct UnknownEventKind(pub String);

impl FromStr for EventKind {
    type Err = UnknownEventKind;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [EventKind::StatusChanged, EventKind::Progress]
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| UnknownEventKind(s.to_owned()))
    }
}

#[derive(Serialize)]
struct Envelope<'a, T: Serialize> {
    event: &'static str,
    bulk_send_id: &'a str,
    occurred_at: String,
    data: &'a T,
}

/// The body of an event, as posted.
pub fn event_body<T: Serialize>(
    kind: EventKind,
    bulk_send_id: &str,
    occurred_at_ms: i64,
    data: &T,
) -> String {
    serde_json::to_string(&Envelope {
        event: kind.as_str(),
        bulk_send_id,
        occurred_at: format_api_time(occurred_at_ms),
        data,
    })
    // A status object always serializes; an empty object is still a valid body.
    .unwrap_or_else(|_| String::from("{}"))
}

/// The `X-Mindo-Signature` value of `body`: `sha256=<hex HMAC-SHA256(body, secret)>`.
pub fn signature(secret: &str, body: &[u8]) -> String {
    sha256_signature(secret.as_bytes(), body)
}

/// `sha256=<lowercase hex HMAC-SHA256(body, secret)>`, the form of both Meta's
/// `X-Hub-Signature-256` and our `X-Mindo-Signature`.
pub fn sha256_signature(secret: &[u8], body: &[u8]) -> String {
    // HMAC takes keys of any length, so this never fails; were it to, an empty signature
    // would be refused by the receiver rather than the daemon panicking.
    Hmac::<Sha256>::new_from_slice(secret)
        .map(|mut mac| {
            mac.update(body);
            format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
        })
        .unwrap_or_default()
}

/// The delay before the next attempt, after `attempts` failed ones (1 s, 2 s, 4 s, …,
/// at most 10 min).
pub fn backoff_ms(attempts: i32) -> i64 {
    let doublings = u32::try_from(attempts.saturating_sub(1))
        .unwrap_or(0)
        .min(30);
    FIRST_BACKOFF_MS
        .saturating_mul(1_i64 << doublings)
        .min(MAX_BACKOFF_MS)
}

/// What follows a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterFailure {
    /// Try again at this time (unix ms).
    RetryAt(i64),
    /// The retry window is over: give the event up.
    GiveUp,
}

/// Decides what follows a failed attempt, `attempts` counting it: a retry after the
/// backoff, never later than the end of the event's retry window (one last attempt is
/// made right at its end), or giving up once that end has passed.
pub fn after_failure(attempts: i32, occurred_at_ms: i64, now_ms: i64) -> AfterFailure {
    let deadline = occurred_at_ms.saturating_add(RETRY_WINDOW_MS);
    if now_ms >= deadline {
        return AfterFailure::GiveUp;
    }
    AfterFailure::RetryAt(now_ms.saturating_add(backoff_ms(attempts)).min(deadline))
}

/// Whether a progress event may follow a send's latest event (of either kind), which
/// occurred at `last_event_at`.
pub fn progress_allowed(last_event_at: Option<i64>, now_ms: i64) -> bool {
    last_event_at.is_none_or(|at| now_ms.saturating_sub(at) >= PROGRESS_INTERVAL_MS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_names_round_trip() {
        for kind in [EventKind::StatusChanged, EventKind::Progress] {
            assert_eq!(kind.as_str().parse::<EventKind>(), Ok(kind));
        }
        assert!("bulk_send.other".parse::<EventKind>().is_err());
    }

    #[test]
    fn the_body_is_the_envelope_with_the_data() {
        let body = event_body(
            EventKind::StatusChanged,
            "a3f2",
            1_763_328_600_123,
            &serde_json::json!({"status": "COMPLETED"}),
        );
        assert_eq!(
            body,
            r#"{"event":"bulk_send.status_changed","bulk_send_id":"a3f2","occurred_at":"2025-11-16T21:30:00Z","data":{"status":"COMPLETED"}}"#
        );
    }

    #[test]
    fn the_signature_is_hex_hmac_sha256_with_a_prefix() {
        // RFC 4231, test case 2.
        assert_eq!(
            signature("Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn backoff_doubles_from_a_second_up_to_ten_minutes() {
        let delays: Vec<i64> = (1..=12).map(backoff_ms).collect();
        assert_eq!(
            delays,
            [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 600, 600].map(|s| s * 1_000)
        );
        assert_eq!(backoff_ms(0), 1_000);
        assert_eq!(backoff_ms(i32::MAX), 600_000);
    }

    #[test]
    fn retries_end_24_hours_after_the_event() {
        let t0 = 1_000_000;
        assert_eq!(after_failure(1, t0, t0), AfterFailure::RetryAt(t0 + 1_000));
        assert_eq!(
            after_failure(3, t0, t0 + 10_000),
            AfterFailure::RetryAt(t0 + 14_000)
        );
        // The last attempt is made at the end of the window, not after it.
        let late = t0 + RETRY_WINDOW_MS - 1_000;
        assert_eq!(
            after_failure(40, t0, late),
            AfterFailure::RetryAt(t0 + RETRY_WINDOW_MS)
        );
        assert_eq!(
            after_failure(41, t0, t0 + RETRY_WINDOW_MS),
            AfterFailure::GiveUp
        );
    }

    #[test]
    fn progress_waits_five_seconds_after_the_latest_event() {
        assert!(progress_allowed(None, 0));
        assert!(!progress_allowed(Some(10_000), 14_999));
        assert!(progress_allowed(Some(10_000), 15_000));
    }
}
