//! The operator endpoints: `GET /metrics` (Prometheus text) and `GET /openapi.json`, and the
//! middleware that times every HTTP answer.
//!
//! Neither endpoint asks for an API key: they are for operators and monitoring, and should be
//! reachable only from inside the firewall (bind the daemon to a private address, or filter
//! `/metrics` and `/openapi.json` at the reverse proxy).

use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{web, HttpResponse};

use super::openapi::document;
use super::state::AppState;
use crate::telemetry;

/// The content type of Prometheus' text exposition format.
pub const PROMETHEUS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// `GET /metrics`.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "operations",
    responses((status = 200, description = "Every metric in Prometheus' text format (0.0.4); names start with `mindo_`.",
        content_type = "text/plain; version=0.0.4", body = String)),
)]
pub async fn metrics() -> HttpResponse {
    HttpResponse::Ok()
        .content_type(PROMETHEUS_CONTENT_TYPE)
        .body(telemetry::render_metrics())
}

/// `GET /openapi.json`.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "operations",
    responses((status = 200, description = "This document (OpenAPI 3.1).", content_type = "application/json", body = Object)),
)]
pub async fn openapi(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok().json(document(state.config.max_recipients))
}

/// Middleware (`actix_web::middleware::from_fn`): records `mindo_http_request_duration_seconds`
/// by method, route *pattern* (never the raw path, which carries ids) and status class.
pub async fn record_request(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = Instant::now();
    let method = req.method().clone();
    let result = next.call(req).await;
    let (route, status) = match &result {
        Ok(res) => (res.request().match_pattern(), res.status().as_u16()),
        Err(err) => (None, err.as_response_error().status_code().as_u16()),
    };
    telemetry::http_request(
        method.as_str(),
        route.as_deref().unwrap_or("unmatched"),
        status,
        started.elapsed(),
    );
    result
}
