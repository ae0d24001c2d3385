//! The HTTP surface (actix-web): routes per resource, the auth extractor, and the mapping of
//! every error to the documented error body.
//!
//! Paths are registered without their trailing slash; `NormalizePath` (in `startup`) trims
//! it from requests, so `/api/v1/x/` and `/api/v1/x` are the same route without a redirect.

pub mod auth;
pub mod bulk_sends;
pub mod business_accounts;
pub mod error;
pub mod health;
pub mod limits;
pub mod openapi;
pub mod operations;
pub mod send_bulk;
pub mod webhooks;

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};

use error::ApiError;

/// Registers every route and the extractor error handlers.
pub fn configure(body_limit: usize) -> impl FnOnce(&mut web::ServiceConfig) {
    move |cfg: &mut web::ServiceConfig| {
        cfg.app_data(
            web::JsonConfig::default()
                .limit(body_limit)
                .content_type_required(false)
                .error_handler(error::json_error),
        )
        .app_data(web::PayloadConfig::default().limit(body_limit))
        .app_data(web::QueryConfig::default().error_handler(error::query_error))
        .app_data(web::PathConfig::default().error_handler(error::path_error))
        .service(resource("/healthz").route(web::get().to(health::healthz)))
        .service(resource("/readyz").route(web::get().to(health::readyz)))
        .service(resource("/metrics").route(web::get().to(operations::metrics)))
        .service(resource("/openapi.json").route(web::get().to(operations::openapi)))
        .service(
            resource("/api/v1/business-accounts").route(web::get().to(business_accounts::list)),
        )
        .service(
            resource("/api/v1/meta-templates/send-bulk").route(web::post().to(send_bulk::create)),
        )
        .service(
            resource("/api/v1/meta-templates/bulk-sends").route(web::get().to(bulk_sends::list)),
        )
        .service(
            resource("/api/v1/meta-templates/bulk-sends/{id}")
                .route(web::get().to(bulk_sends::status)),
        )
        .service(
            resource("/api/v1/meta-templates/bulk-sends/{id}/messages")
                .route(web::get().to(bulk_sends::messages)),
        )
        .service(
            resource("/api/v1/meta-templates/bulk-sends/{id}/messages/export")
                .route(web::get().to(bulk_sends::export)),
        )
        .service(
            resource("/api/v1/meta-templates/bulk-sends/{id}/cancel")
                .route(web::post().to(bulk_sends::cancel)),
        )
        .service(
            resource("/api/v1/meta-templates/bulk-sends/{id}/pause")
                .route(web::post().to(bulk_sends::pause)),
        )
        .service(
            resource("/api/v1/meta-templates/bulk-sends/{id}/resume")
                .route(web::post().to(bulk_sends::resume)),
        )
        .service(
            resource("/webhooks/meta")
                .route(web::get().to(webhooks::verify))
                .route(web::post().to(webhooks::receive)),
        )
        .default_service(web::to(not_found));
    }
}

/// A resource whose unsupported methods get a JSON 405.
fn resource(path: &str) -> actix_web::Resource {
    web::resource(path).default_service(web::to(method_not_allowed))
}

async fn not_found() -> ApiError {
    ApiError::not_found("no such endpoint")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this endpoint does not support that method",
    )
}

impl actix_web::Responder for ApiError {
    type Body = actix_web::body::BoxBody;

    fn respond_to(self, _req: &actix_web::HttpRequest) -> HttpResponse<Self::Body> {
        actix_web::ResponseError::error_response(&self)
    }
}
