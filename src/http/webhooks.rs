//! Meta's webhooks: the verification handshake, and notifications.
//!
//! `POST /webhooks/meta/` takes bodies up to [`BODY_LIMIT`] (413 beyond), checks
//! `X-Hub-Signature-256` over the raw bytes, in constant time, before anything is parsed; a
//! missing or wrong signature is 401 and nothing is applied. The notification is parsed
//! leniently and everything it changes (statuses, templates, numbers, inbound contacts; see
//! `engine::ingest`) is made durable in one write before the 200: Meta retries anything else
//! for days, so duplicates are normal and applying them again is a no-op. A database failure
//! answers 5xx, so Meta retries.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use hmac::{Hmac, Mac};
use secrecy::ExposeSecret;
use serde::Deserialize;
use sha2::Sha256;
use subtle::ConstantTimeEq;
use utoipa::IntoParams;

use super::error::{ApiError, ErrorBody, ErrorCode};
use super::state::AppState;
use crate::engine::ingest::WebhookChanges;
use crate::meta::webhook;

/// The signature header.
pub const SIGNATURE_HEADER: &str = "X-Hub-Signature-256";

/// The handshake's query.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct VerifyQuery {
    /// `subscribe`.
    #[serde(rename = "hub.mode")]
    mode: Option<String>,
    /// Must equal the configured verify token (`MINDO_VERIFY_TOKEN`).
    #[serde(rename = "hub.verify_token")]
    verify_token: Option<String>,
    /// Echoed back as the body.
    #[serde(rename = "hub.challenge")]
    challenge: Option<String>,
}

/// `GET /webhooks/meta/`: 200 with the bare challenge when the token matches, else 403.
#[utoipa::path(
    get,
    path = "/webhooks/meta/",
    tag = "meta webhooks",
    operation_id = "verify_webhook",
    params(VerifyQuery),
    responses(
        (status = 200, description = "The token matches: the bare challenge.", content_type = "text/plain", body = String),
        (status = 403, description = "`forbidden`: the token does not match.", body = ErrorBody),
    ),
)]
pub async fn verify(state: web::Data<AppState>, query: web::Query<VerifyQuery>) -> HttpResponse {
    let q = query.into_inner();
    let expected = state.config.verify_token.as_ref();
    let matches = match (expected, q.verify_token.as_deref()) {
        (Some(expected), Some(given)) => {
            bool::from(expected.expose_secret().as_bytes().ct_eq(given.as_bytes()))
        }
        _ => false,
    };
    if matches && q.mode.as_deref() == Some("subscribe") {
        HttpResponse::Ok()
            .content_type("text/plain")
            .body(q.challenge.unwrap_or_default())
    } else {
        ApiError::new(
            StatusCode::FORBIDDEN,
            ErrorCode::Forbidden,
            "the verify token does not match",
        )
        .error_response_owned()
    }
}

/// Whether `signature` (`sha256=<hex>`) is the HMAC-SHA256 of `body` keyed with `secret`.
pub fn signature_valid(secret: &[u8], body: &[u8], signature: &str) -> bool {
    let Some(hex_sig) = signature.trim().strip_prefix("sha256=") else {
        return false;
    };
    let Ok(given) = hex::decode(hex_sig) else {
        return false;
    };
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret) else {
        return false;
    };
    mac.update(body);
    mac.verify_slice(&given).is_ok()
}

/// The largest notification body accepted (413 beyond). Meta sends at most 3 MB (1 000
/// updates) per POST; the rest is headroom. Set on this route only, whatever the API's limit.
pub const BODY_LIMIT: usize = 4 * 1024 * 1024;

/// How much of a body over [`BODY_LIMIT`] is read (and dropped) before the 413, so that a
/// sender still writing it reads the answer instead of a reset connection. Beyond this the
/// answer goes at once.
const DRAIN_LIMIT: usize = 4 * BODY_LIMIT;

/// The request body, up to [`BODY_LIMIT`]; a larger one is a 413.
async fn read_body(mut payload: web::Payload) -> Result<web::Bytes, ApiError> {
    use futures_util::StreamExt;
    let mut body = web::BytesMut::new();
    let mut seen = 0usize;
    while let Some(chunk) = payload.next().await {
        let chunk =
            chunk.map_err(|e| ApiError::validation(format!("the body could not be read: {e}")))?;
        seen = seen.saturating_add(chunk.len());
        if seen > DRAIN_LIMIT {
            break;
        }
        if seen <= BODY_LIMIT {
            body.extend_from_slice(&chunk);
        }
    }
    if seen > BODY_LIMIT {
        return Err(ApiError::payload_too_large(BODY_LIMIT));
    }
    Ok(body.freeze())
}

/// `POST /webhooks/meta/`: answers 200 once everything the notification changes is durable.
#[utoipa::path(
    post,
    path = "/webhooks/meta/",
    tag = "meta webhooks",
    operation_id = "receive_webhook",
    params(
        ("X-Hub-Signature-256" = String, Header,
         description = "`sha256=` + the hex HMAC-SHA256 of the raw body, keyed with the app secret."),
    ),
    request_body(content = Object, description = "A WhatsApp Business Account notification (`object`, `entry[].changes[]`)."),
    responses(
        (status = 200, description = "Everything the notification changes is durable (empty body)."),
        (status = 400, description = "`validation_error`: not a webhook notification.", body = ErrorBody),
        (status = 401, description = "`invalid_signature`: missing or wrong signature; nothing was applied.", body = ErrorBody),
        (status = 413, description = "`payload_too_large`.", body = ErrorBody),
        (status = 503, description = "`service_unavailable`: Meta retries.", body = ErrorBody),
    ),
)]
pub async fn receive(
    state: web::Data<AppState>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let body = read_body(payload).await?;
    let counters = state.engine.ingest_counters();
    let Some(secret) = state.config.app_secret.as_ref() else {
        tracing::warn!(
            "A webhook arrived but no app secret is configured (MINDO_APP_SECRET); refused."
        );
        counters.refused_signature();
        return Err(unsigned());
    };
    let signed = req
        .headers()
        .get(SIGNATURE_HEADER)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|signature| {
            signature_valid(secret.expose_secret().as_bytes(), &body, signature)
        });
    if !signed {
        counters.refused_signature();
        tracing::warn!("A webhook with a missing or wrong signature was refused.");
        return Err(unsigned());
    }
    let now = state.clock.now_ms();
    let keywords = state.keywords.clone();
    let changes = web::block(move || {
        webhook::parse(&body).map(|n| {
            (
                n.skipped,
                WebhookChanges::from_notification(&n, &keywords, now),
            )
        })
    })
    .await
    .map_err(|_| ApiError::internal())?
    .map_err(|e| ApiError::validation(format!("not a webhook notification: {e}")))?;
    let (skipped, changes) = changes;
    if skipped > 0 {
        counters.skipped(skipped);
        tracing::debug!(skipped, "Unusable items of a webhook were dropped.");
    }
    if !changes.is_empty() {
        let outcome = state.engine.apply_webhook(changes).await?;
        tracing::debug!(
            applied = outcome.statuses.applied,
            duplicates = outcome.statuses.duplicates,
            unknown = outcome.statuses.unknown,
            sends_changed = outcome.sends.len(),
            numbers_changed = outcome.numbers.len(),
            inbound = outcome.inbound,
            "Applied a webhook notification."
        );
    }
    Ok(HttpResponse::Ok().finish())
}

fn unsigned() -> ApiError {
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        ErrorCode::InvalidSignature,
        "the X-Hub-Signature-256 header is missing or does not match the body",
    )
}
