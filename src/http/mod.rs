//! The HTTP surface (actix-web): routes per resource, the auth extractor, and the mapping of
//! every error to the documented error body.
//!
//! Paths are registered without their trailing slash; `NormalizePath` (in `startup`) trims
//! it from requests, so `/api/v1/x/` and `/api/v1/x` are the same route without a redirect.

pub mod auth;
pub mod bulk_sends;
pub mod business_accounts;
pub mod create_gate;
pub mod dashboard;
pub mod error;
pub mod events;
pub mod health;
pub mod limits;
pub mod openapi;
pub mod operations;
pub mod recipients;
pub mod send_bulk;
pub mod state;
pub mod suppressions;
pub mod webhooks;

use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpResponse};

use error::{ApiError, ErrorCode};

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
        .service(endpoint("/healthz").get(health::healthz).build())
        .service(endpoint("/readyz").get(health::readyz).build())
        .service(endpoint("/metrics").get(operations::metrics).build())
        .service(endpoint("/openapi.json").get(operations::openapi).build())
        .service(
            endpoint("/api/v1/business-accounts")
                .get(business_accounts::list)
                .build(),
        )
        .service(
            endpoint("/api/v1/meta-templates/send-bulk")
                .post(send_bulk::create)
                .build(),
        )
        .service(
            endpoint("/api/v1/meta-templates/bulk-sends")
                .get(bulk_sends::list)
                .build(),
        )
        .service(
            endpoint("/api/v1/meta-templates/bulk-sends/{id}")
                .get(bulk_sends::status)
                .build(),
        )
        .service(
            endpoint("/api/v1/meta-templates/bulk-sends/{id}/messages")
                .get(bulk_sends::messages)
                .build(),
        )
        .service(
            endpoint("/api/v1/meta-templates/bulk-sends/{id}/messages/export")
                .get(bulk_sends::export)
                .build(),
        )
        .service(
            endpoint("/api/v1/meta-templates/bulk-sends/{id}/cancel")
                .post(bulk_sends::cancel)
                .build(),
        )
        .service(
            endpoint("/api/v1/meta-templates/bulk-sends/{id}/pause")
                .post(bulk_sends::pause)
                .build(),
        )
        .service(
            endpoint("/api/v1/meta-templates/bulk-sends/{id}/resume")
                .post(bulk_sends::resume)
                .build(),
        )
        .service(
            endpoint("/api/v1/meta-templates/bulk-sends/{id}/events")
                .get(events::send_events)
                .build(),
        )
        .service(
            endpoint("/api/v1/events")
                .get(events::tenant_events)
                .build(),
        )
        .service(
            endpoint("/api/v1/dashboard-token")
                .post(events::create_token)
                .build(),
        )
        .service(
            endpoint("/api/v1/suppressions")
                .get(suppressions::list)
                .post(suppressions::add)
                .build(),
        )
        .service(
            endpoint("/api/v1/suppressions/{phone}")
                .delete(suppressions::delete)
                .build(),
        )
        .service(endpoint("/").get(dashboard::page).build())
        .service(endpoint("/dashboard/{asset}").get(dashboard::asset).build())
        .service(
            endpoint("/webhooks/meta")
                .get(webhooks::verify)
                .post(webhooks::receive)
                .build(),
        )
        .default_service(web::to(not_found));
    }
}

/// A resource under construction: its routes, and the methods they answer, which its 405
/// lists in `Allow` (RFC 9110 requires it).
struct Endpoint {
    resource: actix_web::Resource,
    methods: Vec<&'static str>,
}

fn endpoint(path: &str) -> Endpoint {
    Endpoint {
        resource: web::resource(path),
        methods: Vec::new(),
    }
}

impl Endpoint {
    fn get<F, Args>(self, handler: F) -> Self
    where
        F: actix_web::Handler<Args>,
        Args: actix_web::FromRequest + 'static,
        F::Output: actix_web::Responder + 'static,
    {
        self.route("GET", web::get().to(handler))
    }

    fn post<F, Args>(self, handler: F) -> Self
    where
        F: actix_web::Handler<Args>,
        Args: actix_web::FromRequest + 'static,
        F::Output: actix_web::Responder + 'static,
    {
        self.route("POST", web::post().to(handler))
    }

    fn delete<F, Args>(self, handler: F) -> Self
    where
        F: actix_web::Handler<Args>,
        Args: actix_web::FromRequest + 'static,
        F::Output: actix_web::Responder + 'static,
    {
        self.route("DELETE", web::delete().to(handler))
    }

    fn route(mut self, method: &'static str, route: actix_web::Route) -> Self {
        self.resource = self.resource.route(route);
        self.methods.push(method);
        self
    }

    /// The resource; any other method gets a JSON 405 with `Allow`.
    fn build(self) -> actix_web::Resource {
        let allow = self.methods.join(", ");
        self.resource
            .default_service(web::to(move || method_not_allowed(allow.clone())))
    }
}

async fn not_found() -> ApiError {
    ApiError::not_found("no such endpoint")
}

async fn method_not_allowed(allow: String) -> HttpResponse {
    let error = ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        ErrorCode::MethodNotAllowed,
        format!("this endpoint answers {allow} only"),
    );
    HttpResponse::MethodNotAllowed()
        .insert_header((header::ALLOW, allow))
        .content_type("application/json")
        .body(error.body())
}

impl actix_web::Responder for ApiError {
    type Body = actix_web::body::BoxBody;

    fn respond_to(self, _req: &actix_web::HttpRequest) -> HttpResponse<Self::Body> {
        actix_web::ResponseError::error_response(&self)
    }
}
