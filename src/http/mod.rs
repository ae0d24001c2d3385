//! The HTTP surface (actix-web): routes per resource, the auth extractor, and the mapping of
//! every error to the documented error body.
//!
//! Paths are registered without their trailing slash; `NormalizePath` (in `startup`) trims
//! it from requests, so `/api/v1/x/` and `/api/v1/x` are the same route without a redirect.

pub mod auth;
pub mod business_accounts;
pub mod error;
pub mod health;

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
        .service(
            resource("/api/v1/business-accounts").route(web::get().to(business_accounts::list)),
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
