//! Liveness and readiness.

use actix_web::{web, HttpResponse};
use serde::Serialize;
use utoipa::ToSchema;

use super::error::{ApiError, ErrorBody, ErrorCode};
use super::state::AppState;

/// `{"status": "ok"}` or `{"status": "ready"}`.
#[derive(Serialize, ToSchema)]
pub(crate) struct HealthBody {
    status: &'static str,
}

/// `GET /healthz`: the process is up and serving HTTP.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "operations",
    responses((status = 200, description = "The process is up: `{\"status\": \"ok\"}`.", body = HealthBody)),
)]
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(HealthBody { status: "ok" })
}

/// `GET /readyz`: the database answers and the engine has resumed every unfinished send.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "operations",
    responses(
        (status = 200, description = "Ready: `{\"status\": \"ready\"}`.", body = HealthBody),
        (status = 503, description = "`not_ready`: the engine is resuming or the database does not answer.", body = ErrorBody),
    ),
)]
pub async fn readyz(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    if !state.engine.is_resumed().await {
        return Err(ApiError::new(
            actix_web::http::StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::NotReady,
            "the engine is still resuming unfinished sends",
        ));
    }
    match state.db.ping().await {
        Ok(()) => Ok(HttpResponse::Ok().json(HealthBody { status: "ready" })),
        Err(err) => {
            tracing::warn!(error = %err, "Readiness check failed: the database does not answer.");
            Err(ApiError::new(
                actix_web::http::StatusCode::SERVICE_UNAVAILABLE,
                ErrorCode::NotReady,
                "the database is not reachable",
            ))
        }
    }
}
