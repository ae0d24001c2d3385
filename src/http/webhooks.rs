//! Meta's webhooks: the verification handshake, and status notifications.
//!
//! `POST /webhooks/meta/` checks `X-Hub-Signature-256` over the raw bytes, in constant time,
//! before anything is parsed; a missing or wrong signature is 401 and nothing is applied.
//! Status updates are applied durably before the 200: Meta retries anything else, so
//! duplicates are normal and applying them is a no-op.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use hmac::{Hmac, Mac};
use secrecy::ExposeSecret;
use serde::Deserialize;
use sha2::Sha256;
use subtle::ConstantTimeEq;

use super::error::ApiError;
use crate::meta::webhook::{self, Event};
use crate::startup::AppState;
use crate::storage::sends::StatusUpdate;

/// The signature header.
pub const SIGNATURE_HEADER: &str = "X-Hub-Signature-256";

/// The handshake's query.
#[derive(Debug, Deserialize)]
pub struct VerifyQuery {
    #[serde(rename = "hub.mode")]
    mode: Option<String>,
    #[serde(rename = "hub.verify_token")]
    verify_token: Option<String>,
    #[serde(rename = "hub.challenge")]
    challenge: Option<String>,
}

/// `GET /webhooks/meta/`: 200 with the bare challenge when the token matches, else 403.
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
            "forbidden",
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

/// `POST /webhooks/meta/`.
pub async fn receive(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let Some(secret) = state.config.app_secret.as_ref() else {
        tracing::warn!(
            "A webhook arrived but no app secret is configured (MINDO_APP_SECRET); refused."
        );
        return Err(unsigned());
    };
    let signature = req
        .headers()
        .get(SIGNATURE_HEADER)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(unsigned)?;
    if !signature_valid(secret.expose_secret().as_bytes(), &body, signature) {
        return Err(unsigned());
    }
    let notification = web::block(move || webhook::parse(&body))
        .await
        .map_err(|_| ApiError::internal())?
        .map_err(|e| ApiError::validation(format!("not a webhook notification: {e}")))?;
    let now = state.clock.now_ms();
    let updates: Vec<StatusUpdate> = notification
        .events
        .iter()
        .filter_map(|event| match event {
            Event::Status(s) => status_update(s, now),
            _ => None,
        })
        .collect();
    if !updates.is_empty() {
        let applied = state.engine.apply_statuses(updates).await?;
        tracing::debug!(
            applied = applied.applied,
            duplicates = applied.duplicates,
            unknown = applied.unknown,
            "Applied webhook status updates."
        );
    }
    Ok(HttpResponse::Ok().finish())
}

fn unsigned() -> ApiError {
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        "invalid_signature",
        "the X-Hub-Signature-256 header is missing or does not match the body",
    )
}

/// A parsed status as the storage applies it; `None` for statuses that change nothing
/// (`played`, unknown values).
fn status_update(s: &webhook::StatusUpdate, now: i64) -> Option<StatusUpdate> {
    let status = s.status.to_webhook_status()?;
    let message_id = s
        .biz_opaque_callback_data
        .as_deref()
        .and_then(|data| data.rsplit_once('/'))
        .and_then(|(_, id)| id.parse().ok());
    Some(StatusUpdate {
        message_id,
        wamid: s.wamid.clone(),
        status,
        at_ms: s.timestamp.and_then(|t| t.checked_mul(1000)).unwrap_or(now),
        error: s.errors.first().map(|e| {
            let meta = e.to_meta_error();
            (meta.code, meta.to_string())
        }),
    })
}

impl ApiError {
    /// The error as a response value (for handlers that answer with a plain response).
    pub fn error_response_owned(&self) -> HttpResponse {
        actix_web::ResponseError::error_response(self)
    }
}
