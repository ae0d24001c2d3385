//! The send-bulk request: its body (read only once the request holds a create slot), its
//! `Idempotency-Key`, and the checks of its own fields. Recipients are checked against the
//! template later (`http::recipients`).

use actix_web::{web, HttpRequest};
use serde::Deserialize;
use utoipa::ToSchema;

use super::super::error::{ApiError, ErrorItem};
use super::super::recipients::{RawRecipient, Recipient};
use crate::domain::egress::{CallbackPolicy, TargetRefused};

/// How far ahead a send may be scheduled.
const MAX_SCHEDULE_AHEAD_MS: i64 = 30 * 24 * 60 * 60 * 1000;
/// Longest `Idempotency-Key` accepted.
const MAX_IDEMPOTENCY_KEY_LEN: usize = 255;

/// Longest text field, in characters.
const MAX_TEXT_FIELD_CHARS: usize = 512;

// The schema below states every rule that `check_fields` enforces; of `parse_schedule` and
// `check_callback_url`, the shape (a timestamp, an http(s) URL), not the moment (within 30
// days) nor the address policy (public hosts), which depend on the clock and the operator.
/// The send-bulk request body. Text fields are 1 to 512 characters, not only whitespace,
/// without control characters. Recipients' phones and variables are checked against the
/// numbering plan and the template (400 `invalid_recipients`).
#[derive(Debug, Deserialize, ToSchema)]
pub(super) struct SendBulkRequest {
    /// Meta's phone-number id of one of the tenant's numbers.
    #[schema(
        min_length = 1,
        max_length = 512,
        pattern = r"^[^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f][^\x00-\x1f\x7f-\x9f]*$"
    )]
    pub phone_number_id: String,
    /// An APPROVED template of that number's WABA.
    #[schema(
        min_length = 1,
        max_length = 512,
        pattern = r"^[^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f][^\x00-\x1f\x7f-\x9f]*$"
    )]
    pub template_name: String,
    /// Meta's exact locale (`es`, `en`, `pt_BR`, …).
    #[serde(default = "default_language")]
    #[schema(
        default = "es",
        min_length = 1,
        max_length = 512,
        pattern = r"^[^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f][^\x00-\x1f\x7f-\x9f]*$"
    )]
    pub language: String,
    /// 1 … `max_recipients` (default 100 000) recipients (`maxItems` is the daemon's setting).
    #[schema(value_type = Vec<Recipient>, min_items = 1)]
    pub recipients: Vec<RawRecipient>,
    /// Drop invalid recipients (reported in `invalid_recipients`) instead of refusing the request.
    #[serde(default)]
    pub skip_invalid: bool,
    /// ISO 8601 with a time zone; start no earlier than this (in the future, within 30 days).
    #[serde(default)]
    #[schema(format = DateTime, pattern = r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")]
    pub scheduled_at: Option<String>,
    /// An https URL on the public internet that receives the client events of this send
    /// (loopback, private, link-local, CGNAT, multicast and other internal addresses are
    /// refused unless the operator allows them).
    #[serde(default)]
    #[schema(format = "uri", max_length = 2048, pattern = r"^https?://")]
    pub callback_url: Option<String>,
    /// Validate only: nothing is stored, the answer is 200 with a `preview`.
    #[serde(default)]
    pub dry_run: bool,
}

fn default_language() -> String {
    "es".into()
}

/// Reads and drops the body, at most `limit` bytes of it.
pub(super) async fn discard_body(mut payload: web::Payload, limit: usize) {
    use futures_util::StreamExt;
    let mut read = 0;
    while let Some(Ok(chunk)) = payload.next().await {
        read += chunk.len();
        if read > limit {
            break;
        }
    }
}

/// The whole body, refused with 413 past `limit` (by its `Content-Length` before reading).
pub(super) async fn read_body(
    payload: web::Payload,
    req: &HttpRequest,
    limit: usize,
) -> Result<web::Bytes, ApiError> {
    let announced = req
        .headers()
        .get(actix_web::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<usize>().ok());
    if announced.is_some_and(|n| n > limit) {
        return Err(ApiError::payload_too_large(limit));
    }
    match payload.to_bytes_limited(limit).await {
        Ok(Ok(body)) => Ok(body),
        Ok(Err(err)) => Err(ApiError::validation(format!(
            "the request body could not be read: {err}"
        ))),
        Err(_) => Err(ApiError::payload_too_large(limit)),
    }
}

pub(super) fn idempotency_key(req: &HttpRequest) -> Result<Option<String>, ApiError> {
    let Some(value) = req.headers().get("Idempotency-Key") else {
        return Ok(None);
    };
    let key = value
        .to_str()
        .ok()
        .map(str::trim)
        .filter(|k| !k.is_empty() && k.len() <= MAX_IDEMPOTENCY_KEY_LEN)
        .ok_or_else(|| {
            ApiError::validation(format!(
                "Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY_LEN} visible ASCII characters"
            ))
        })?;
    Ok(Some(key.to_owned()))
}

pub(super) fn too_many_recipients(n: usize, max_recipients: u32) -> ErrorItem {
    ErrorItem::new(
        "recipients",
        format!("lists {n} recipients; at most {max_recipients} are allowed per request"),
    )
}

/// How many items the body's `recipients` array has, counted without building them; `None`
/// when the body is not an object with such an array (the full parse reports that).
pub(super) fn count_recipients(body: &[u8]) -> Option<usize> {
    struct Count(usize);
    impl<'de> Deserialize<'de> for Count {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Count, D::Error> {
            struct Items;
            impl<'de> serde::de::Visitor<'de> for Items {
                type Value = Count;
                fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                    f.write_str("an array")
                }
                fn visit_seq<A: serde::de::SeqAccess<'de>>(
                    self,
                    mut seq: A,
                ) -> Result<Count, A::Error> {
                    let mut n = 0;
                    while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {
                        n += 1;
                    }
                    Ok(Count(n))
                }
            }
            d.deserialize_seq(Items)
        }
    }
    #[derive(Deserialize)]
    struct Counted {
        recipients: Count,
    }
    serde_json::from_slice::<Counted>(body)
        .ok()
        .map(|c| c.recipients.0)
}

pub(super) fn check_fields(request: &SendBulkRequest, max_recipients: u32) -> Result<(), ApiError> {
    let mut errors = Vec::new();
    for (field, value) in [
        ("phone_number_id", &request.phone_number_id),
        ("template_name", &request.template_name),
        ("language", &request.language),
    ] {
        if value.trim().is_empty() {
            errors.push(ErrorItem::new(field, "must not be empty"));
        } else if value.chars().count() > MAX_TEXT_FIELD_CHARS {
            errors.push(ErrorItem::new(
                field,
                format!("is longer than {MAX_TEXT_FIELD_CHARS} characters"),
            ));
        } else if value.contains(char::is_control) {
            // Meta's ids, names and locales have none; PostgreSQL cannot even compare a NUL.
            errors.push(ErrorItem::new(field, "must not contain control characters"));
        }
    }
    let n = request.recipients.len();
    if n == 0 {
        errors.push(ErrorItem::new(
            "recipients",
            "must list at least one recipient",
        ));
    } else if n > max_recipients as usize {
        errors.push(too_many_recipients(n, max_recipients));
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ApiError::validation("the request has invalid fields").with_errors(errors))
    }
}

pub(super) fn parse_schedule(value: Option<&str>, now: i64) -> Result<Option<i64>, ApiError> {
    let Some(value) = value else {
        return Ok(None);
    };
    let at = chrono::DateTime::parse_from_rfc3339(value)
        .map_err(|_| {
            ApiError::validation("scheduled_at must be an ISO 8601 timestamp with a time zone")
                .with_errors(vec![ErrorItem::new(
                    "scheduled_at",
                    "not an ISO 8601 timestamp (e.g. 2025-11-16T21:30:00Z)",
                )
                .with_value(value)])
        })?
        .timestamp_millis();
    if at <= now {
        return Err(
            ApiError::validation("scheduled_at must be in the future").with_errors(vec![
                ErrorItem::new("scheduled_at", "is not in the future").with_value(value),
            ]),
        );
    }
    if at > now + MAX_SCHEDULE_AHEAD_MS {
        return Err(
            ApiError::validation("scheduled_at must be within 30 days").with_errors(vec![
                ErrorItem::new("scheduled_at", "is more than 30 days ahead").with_value(value),
            ]),
        );
    }
    Ok(Some(at))
}

/// `callback_url` must reach the public internet (see `domain::egress`): https, a host that
/// is not an internal name, an address that is not loopback, private, link-local, … (unless
/// the operator allowed it). Plain http is allowed only to an allowed loopback receiver.
pub(super) fn check_callback_url(value: &str, policy: &CallbackPolicy) -> Result<String, ApiError> {
    policy
        .check_url(value)
        .map(|(url, _)| url.to_string())
        .map_err(|refused| {
            let detail = match refused {
                TargetRefused::NotUrl | TargetRefused::NotHttps | TargetRefused::NoHost => {
                    "callback_url must be an https URL"
                }
                _ => "callback_url must be a public https URL",
            };
            let shown: String = value.chars().take(200).collect();
            ApiError::validation(detail).with_errors(vec![ErrorItem::new(
                "callback_url",
                refused.to_string(),
            )
            .with_value(shown)])
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recipients_are_counted_without_being_built() {
        let body =
            br#"{"template_name": "x", "recipients": [{"phone": "+1"}, 5, null, [[]]], "z": {}}"#;
        assert_eq!(count_recipients(body), Some(4));
        assert_eq!(count_recipients(br#"{"recipients": []}"#), Some(0));
        for not_counted in [
            &br#"{"recipients": "x"}"#[..],
            br#"{"recipients": [1,]}"#,
            br#"{"phone_number_id": "1"}"#,
            br#"[1, 2]"#,
            b"",
        ] {
            assert_eq!(count_recipients(not_counted), None);
        }
    }
}
