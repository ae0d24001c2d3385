//! The documented error body, `{"detail", "code", "errors"?}`, for every error the HTTP
//! layer can produce: handler errors ([`ApiError`]), extractor errors (JSON, path, query)
//! and anything actix itself answers (unknown routes, wrong methods, oversized payloads),
//! which [`json_error_bodies`] rewrites. No response ever carries actix's default text.

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::ServiceResponse;
use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::middleware::ErrorHandlerResponse;
use actix_web::{HttpRequest, HttpResponse, ResponseError};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use crate::storage::StorageError;

/// Most per-item problems listed in one error body.
pub const MAX_ERRORS: usize = 100;

/// The hosted API's own texts, byte for byte.
pub const MISSING_API_KEY_DETAIL: &str =
    "Este endpoint requiere autenticacion con API Key (header X-API-Key)";
pub const INVALID_API_KEY_DETAIL: &str = "API Key expirada";
pub const FORBIDDEN_DETAIL: &str = "API Key no tiene acceso a este recurso";

/// An error answered to an API client.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub detail: String,
    /// Per-item problems (at most [`MAX_ERRORS`] are shown).
    pub errors: Vec<Value>,
    /// Seconds for a `Retry-After` header (429).
    pub retry_after: Option<u64>,
}

/// The error body of every error answer.
#[derive(Serialize, ToSchema)]
pub(crate) struct ErrorBody<'a> {
    /// A human message.
    detail: &'a str,
    /// A machine code (`not_found`, `validation_error`, `invalid_recipients`, …).
    code: &'a str,
    /// Per-item problems, at most 100.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<ErrorItem>>)]
    errors: Option<&'a [Value]>,
    /// Present (true) when there were more than 100 problems.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    errors_truncated: bool,
}

/// One per-item problem of an error body (documentation only: built as JSON where found).
#[derive(ToSchema)]
#[allow(dead_code)]
pub(crate) struct ErrorItem {
    /// The recipient's index in the request, for recipient problems.
    index: Option<u64>,
    /// The field (`phone`, `variables.name`, `scheduled_at`, …).
    field: Option<String>,
    /// The offending value, truncated.
    value: Option<String>,
    /// What is wrong.
    reason: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, detail: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            detail: detail.into(),
            errors: Vec::new(),
            retry_after: None,
        }
    }

    /// Adds per-item problems.
    pub fn with_errors(mut self, errors: Vec<Value>) -> Self {
        self.errors = errors;
        self
    }

    pub fn missing_api_key() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "missing_api_key",
            MISSING_API_KEY_DETAIL,
        )
    }

    pub fn invalid_api_key() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "invalid_api_key",
            INVALID_API_KEY_DETAIL,
        )
    }

    pub fn forbidden() -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", FORBIDDEN_DETAIL)
    }

    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", detail)
    }

    pub fn validation(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "validation_error", detail)
    }

    pub fn payload_too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("the request body is larger than the limit of {limit} bytes"),
        )
    }

    /// 429 `rate_limited`: the tenant is over its request budget; `Retry-After` says when
    /// the next request will be accepted.
    pub fn rate_limited(retry_after_secs: u64) -> Self {
        let mut err = Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            format!("too many requests for this tenant; retry after {retry_after_secs} s"),
        );
        err.retry_after = Some(retry_after_secs);
        err
    }

    pub fn unavailable() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "service_unavailable",
            "the database is unavailable; try again shortly",
        )
    }

    pub fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "an internal error occurred; it has been logged",
        )
    }

    /// The JSON body.
    pub fn body(&self) -> Vec<u8> {
        let shown = &self.errors[..self.errors.len().min(MAX_ERRORS)];
        let body = ErrorBody {
            detail: &self.detail,
            code: self.code,
            errors: (!self.errors.is_empty()).then_some(shown),
            errors_truncated: self.errors.len() > MAX_ERRORS,
        };
        serde_json::to_vec(&body).unwrap_or_else(|_| b"{}".to_vec())
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.detail, self.code)
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse<BoxBody> {
        let mut response = HttpResponse::build(self.status);
        if let Some(seconds) = self.retry_after {
            response.insert_header((header::RETRY_AFTER, seconds.to_string()));
        }
        response.content_type("application/json").body(self.body())
    }
}

impl From<StorageError> for ApiError {
    fn from(err: StorageError) -> Self {
        if err.is_unavailable() {
            tracing::warn!(error = %err, "The database is unavailable.");
            ApiError::unavailable()
        } else {
            tracing::error!(error = %err, "A database query failed.");
            ApiError::internal()
        }
    }
}

/// JSON body errors: 413 past the limit, 400 for anything malformed.
pub fn json_error(err: actix_web::error::JsonPayloadError, _req: &HttpRequest) -> actix_web::Error {
    use actix_web::error::JsonPayloadError as E;
    match err {
        E::OverflowKnownLength { limit, .. } | E::Overflow { limit } => {
            ApiError::payload_too_large(limit).into()
        }
        E::Deserialize(e) => ApiError::validation(format!("invalid JSON body: {e}")).into(),
        other => ApiError::validation(format!("invalid JSON body: {other}")).into(),
    }
}

/// Query string errors.
pub fn query_error(
    err: actix_web::error::QueryPayloadError,
    _req: &HttpRequest,
) -> actix_web::Error {
    ApiError::validation(format!("invalid query string: {err}")).into()
}

/// Path errors (an id of the wrong shape is as unknown as a missing one).
pub fn path_error(_err: actix_web::error::PathError, _req: &HttpRequest) -> actix_web::Error {
    ApiError::not_found("no such resource").into()
}

/// The code for an error status that no handler described.
fn code_for(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "validation_error",
        401 => "invalid_api_key",
        403 => "forbidden",
        404 => "not_found",
        405 => "method_not_allowed",
        408 => "request_timeout",
        413 => "payload_too_large",
        415 => "unsupported_media_type",
        429 => "rate_limited",
        503 => "service_unavailable",
        s if s >= 500 => "internal_error",
        _ => "error",
    }
}

/// Middleware hook (for `ErrorHandlers::default_handler`): gives every 4xx/5xx response
/// that is not already JSON the documented error body. Client errors keep actix's message
/// as `detail`; server errors get a generic one, so internals never leak.
pub fn json_error_bodies<B: MessageBody + 'static>(
    res: ServiceResponse<B>,
) -> actix_web::Result<ErrorHandlerResponse<B>> {
    let is_json = res
        .response()
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if is_json {
        return Ok(ErrorHandlerResponse::Response(res.map_into_left_body()));
    }
    let status = res.status();
    let detail = match (status.is_server_error(), res.response().error()) {
        (true, _) => ApiError::internal().detail,
        (false, Some(err)) => err.to_string(),
        (false, None) => status
            .canonical_reason()
            .unwrap_or("request refused")
            .to_lowercase(),
    };
    let body = ApiError::new(status, code_for(status), detail).body();
    let (req, mut response) = res.into_parts();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    let response = response.set_body(body).map_into_boxed_body();
    Ok(ErrorHandlerResponse::Response(
        ServiceResponse::new(req, response).map_into_right_body(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_has_detail_and_code_and_only_nonempty_errors() {
        let body: Value = serde_json::from_slice(&ApiError::not_found("gone").body()).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"detail": "gone", "code": "not_found"})
        );
    }

    #[test]
    fn errors_are_capped_at_one_hundred_and_flagged() {
        let errors = (0..150).map(|i| serde_json::json!({"index": i})).collect();
        let err = ApiError::validation("bad").with_errors(errors);
        let body: Value = serde_json::from_slice(&err.body()).unwrap();
        assert_eq!(body["errors"].as_array().unwrap().len(), 100);
        assert_eq!(body["errors_truncated"], true);
    }
}
