//! Authentication: the `X-API-Key` header, resolved to the key's tenant.

use std::future::Future;
use std::pin::Pin;

use actix_web::dev::Payload;
use actix_web::{web, FromRequest, HttpRequest};

use super::error::ApiError;
use super::state::AppState;
use crate::storage::tenants::{self, Principal};

/// The header that carries the key.
pub const API_KEY_HEADER: &str = "X-API-Key";

/// An extractor for handlers that need an authenticated caller. Missing, unknown, malformed,
/// revoked and expired keys are refused with the documented 401 bodies before the handler
/// runs, and a tenant over its request budget with 429 (`http::limits`).
#[derive(Debug, Clone)]
pub struct Authenticated(pub Principal);

impl FromRequest for Authenticated {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(req: &HttpRequest, _payload: &mut Payload) -> Self::Future {
        let presented = req
            .headers()
            .get(API_KEY_HEADER)
            .map(|v| v.to_str().map(|s| s.trim().to_owned()));
        let state = req.app_data::<web::Data<AppState>>().cloned();
        Box::pin(async move {
            let presented = match presented {
                None => return Err(ApiError::missing_api_key()),
                Some(Err(_)) => return Err(ApiError::invalid_api_key()),
                Some(Ok(key)) if key.is_empty() => return Err(ApiError::missing_api_key()),
                Some(Ok(key)) => key,
            };
            let state = state.ok_or_else(ApiError::internal)?;
            let now = state.clock.now_ms();
            let principal = state
                .db
                .run(move |conn| tenants::authenticate(conn, &presented, now))
                .await?
                .ok_or_else(ApiError::invalid_api_key)?;
            if let Err(retry_after) = state.tenant_limits.check(principal.tenant_id) {
                return Err(ApiError::rate_limited(retry_after));
            }
            Ok(Authenticated(principal))
        })
    }
}

/// Refuses a key that may only read (403 `forbidden`, the hosted API's message) where a
/// handler creates or controls sends.
pub fn require_send(principal: &Principal) -> Result<(), ApiError> {
    if principal.scope.can_send() {
        Ok(())
    } else {
        Err(ApiError::forbidden())
    }
}
