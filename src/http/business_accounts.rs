//! `GET /api/v1/business-accounts/`: the tenant's WhatsApp Business Accounts, their numbers
//! and approved templates (camelCase, as the hosted API answers).

use actix_web::{web, HttpResponse};
use serde_json::json;

use super::auth::Authenticated;
use super::error::ApiError;
use crate::startup::AppState;

pub async fn list(
    Authenticated(principal): Authenticated,
    _state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(json!({
        "companyName": principal.tenant_name,
        "apiKeyName": principal.api_key_name,
        "businessAccounts": [],
    })))
}
