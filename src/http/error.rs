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
    pub code: ErrorCode,
    pub detail: String,
    /// Per-item problems (at most [`MAX_ERRORS`] are shown).
    pub errors: Vec<ErrorItem>,
    /// Seconds for a `Retry-After` header (429).
    pub retry_after: Option<u64>,
}

/// Every machine code an error answer can carry: what a client may match on. An answer
/// cannot carry a code that is not listed here, and `/openapi.json` lists them all (the
/// `code` of `ErrorBody`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// 401: no `X-API-Key`.
    MissingApiKey,
    /// 401: an unknown, expired or revoked key.
    InvalidApiKey,
    /// 403: the key may not do this (a read key), or Meta's verify token does not match.
    Forbidden,
    /// 404: no such resource, endpoint, or a resource of another tenant.
    NotFound,
    /// 404: the request's `phone_number_id` is not one of the tenant's numbers.
    PhoneNumberNotFound,
    /// 404: no such template in that language for the number's account.
    TemplateNotFound,
    /// 400: malformed JSON, wrong types, bad field values.
    ValidationError,
    /// 400: recipients with a bad phone or values (listed in `errors`).
    InvalidRecipients,
    /// 400: the template is not `APPROVED`.
    TemplateNotApproved,
    /// 400: the template has a shape this service cannot send.
    TemplateNotSupported,
    /// 401: a Meta webhook without a valid `X-Hub-Signature-256`.
    InvalidSignature,
    /// 405: the path does not answer this method (`Allow` lists those it does).
    MethodNotAllowed,
    /// 408: the request was not received in time.
    RequestTimeout,
    /// 409: the bulk send has already finished.
    AlreadyFinished,
    /// 409: a request with this `Idempotency-Key` is still being processed.
    IdempotencyInProgress,
    /// 413: the body is over the limit.
    PayloadTooLarge,
    /// 415: a body of a media type the endpoint does not take.
    UnsupportedMediaType,
    /// 422: this `Idempotency-Key` came with another body.
    IdempotencyKeyReused,
    /// 429: the tenant is over its request budget (`Retry-After`).
    RateLimited,
    /// 500: an internal error (logged, never detailed).
    InternalError,
    /// 503: the database is unavailable.
    ServiceUnavailable,
    /// 503: too many sends are being created at once (`Retry-After`).
    TooManyCreates,
    /// 503: the daemon is stopping.
    ShuttingDown,
    /// 503: not ready (`/readyz`).
    NotReady,
    /// Any other client error status that no handler described.
    #[serde(rename = "error")]
    Other,
}

impl ErrorCode {
    /// Every code, in the order the schema lists them.
    pub const ALL: [ErrorCode; 25] = [
        ErrorCode::MissingApiKey,
        ErrorCode::InvalidApiKey,
        ErrorCode::Forbidden,
        ErrorCode::NotFound,
        ErrorCode::PhoneNumberNotFound,
        ErrorCode::TemplateNotFound,
        ErrorCode::ValidationError,
        ErrorCode::InvalidRecipients,
        ErrorCode::TemplateNotApproved,
        ErrorCode::TemplateNotSupported,
        ErrorCode::InvalidSignature,
        ErrorCode::MethodNotAllowed,
        ErrorCode::RequestTimeout,
        ErrorCode::AlreadyFinished,
        ErrorCode::IdempotencyInProgress,
        ErrorCode::PayloadTooLarge,
        ErrorCode::UnsupportedMediaType,
        ErrorCode::IdempotencyKeyReused,
        ErrorCode::RateLimited,
        ErrorCode::InternalError,
        ErrorCode::ServiceUnavailable,
        ErrorCode::TooManyCreates,
        ErrorCode::ShuttingDown,
        ErrorCode::NotReady,
        ErrorCode::Other,
    ];

    /// The code for an error status that no handler described.
    fn for_status(status: StatusCode) -> ErrorCode {
        match status.as_u16() {
            400 => ErrorCode::ValidationError,
            401 => ErrorCode::InvalidApiKey,
            403 => ErrorCode::Forbidden,
            404 => ErrorCode::NotFound,
            405 => ErrorCode::MethodNotAllowed,
            408 => ErrorCode::RequestTimeout,
            413 => ErrorCode::PayloadTooLarge,
            415 => ErrorCode::UnsupportedMediaType,
            429 => ErrorCode::RateLimited,
            503 => ErrorCode::ServiceUnavailable,
            s if s >= 500 => ErrorCode::InternalError,
            _ => ErrorCode::Other,
        }
    }
}

impl std::fmt::Display for ErrorCode {
    /// The code as answered (its serde name).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match serde_json::to_value(self) {
            Ok(Value::String(code)) => f.write_str(&code),
            _ => Err(std::fmt::Error),
        }
    }
}

/// The error body of every error answer.
#[derive(Serialize, ToSchema)]
pub(crate) struct ErrorBody<'a> {
    /// A human message.
    detail: &'a str,
    /// A machine code.
    code: ErrorCode,
    /// Per-item problems, at most 100.
    #[serde(skip_serializing_if = "Option::is_none")]
    errors: Option<&'a [ErrorItem]>,
    /// Present (true) when there were more than 100 problems.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    errors_truncated: bool,
}

/// One per-item problem of an error body: which item and field, and what is wrong.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, ToSchema)]
pub struct ErrorItem {
    /// The recipient's index in the request, for recipient problems.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub index: Option<usize>,
    /// The field (`phone`, `variables.name`, `scheduled_at`, …).
    pub field: String,
    /// The offending value, truncated.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// What is wrong.
    pub reason: String,
}

impl ErrorItem {
    /// A problem of `field`.
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> ErrorItem {
        ErrorItem {
            index: None,
            field: field.into(),
            value: None,
            reason: reason.into(),
        }
    }

    /// The same problem, of the recipient at `index`.
    pub fn at(mut self, index: usize) -> ErrorItem {
        self.index = Some(index);
        self
    }

    /// The same problem, echoing the offending value.
    pub fn with_value(mut self, value: impl Into<String>) -> ErrorItem {
        self.value = Some(value.into());
        self
    }
}

impl ApiError {
    pub fn new(status: StatusCode, code: ErrorCode, detail: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            detail: detail.into(),
            errors: Vec::new(),
            retry_after: None,
        }
    }

    /// Adds per-item problems.
    pub fn with_errors(mut self, errors: Vec<ErrorItem>) -> Self {
        self.errors = errors;
        self
    }

    pub fn missing_api_key() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            ErrorCode::MissingApiKey,
            MISSING_API_KEY_DETAIL,
        )
    }

    pub fn invalid_api_key() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            ErrorCode::InvalidApiKey,
            INVALID_API_KEY_DETAIL,
        )
    }

    pub fn forbidden() -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            ErrorCode::Forbidden,
            FORBIDDEN_DETAIL,
        )
    }

    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, ErrorCode::NotFound, detail)
    }

    pub fn validation(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, ErrorCode::ValidationError, detail)
    }

    pub fn payload_too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::PayloadTooLarge,
            format!("the request body is larger than the limit of {limit} bytes"),
        )
    }

    /// 429 `rate_limited`: the tenant is over its request budget; `Retry-After` says when
    /// the next request will be accepted.
    pub fn rate_limited(retry_after_secs: u64) -> Self {
        let mut err = Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::RateLimited,
            format!("too many requests for this tenant; retry after {retry_after_secs} s"),
        );
        err.retry_after = Some(retry_after_secs);
        err
    }

    pub fn unavailable() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::ServiceUnavailable,
            "the database is unavailable; try again shortly",
        )
    }

    pub fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::InternalError,
            "an internal error occurred; it has been logged",
        )
    }

    /// The error as a response value (for handlers that answer with a plain response).
    pub fn error_response_owned(&self) -> HttpResponse {
        ResponseError::error_response(self)
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
    let body = ApiError::new(status, ErrorCode::for_status(status), detail).body();
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
    use utoipa::PartialSchema;

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
        let errors = (0..150)
            .map(|i| ErrorItem::new("phone", "is empty").at(i))
            .collect();
        let err = ApiError::validation("bad").with_errors(errors);
        let body: Value = serde_json::from_slice(&err.body()).unwrap();
        let shown = body["errors"].as_array().unwrap();
        assert_eq!(shown.len(), 100);
        assert_eq!(shown[99]["index"], 99);
        assert_eq!(body["errors_truncated"], true);
    }

    #[test]
    fn an_item_leaves_out_what_it_does_not_have() {
        let item = |i: ErrorItem| serde_json::to_value(i).unwrap();
        assert_eq!(
            item(ErrorItem::new(
                "recipients",
                "must list at least one recipient"
            )),
            serde_json::json!({"field": "recipients", "reason": "must list at least one recipient"})
        );
        assert_eq!(
            item(
                ErrorItem::new("phone", "is too long")
                    .at(17)
                    .with_value("+12")
            ),
            serde_json::json!({"index": 17, "field": "phone", "value": "+12", "reason": "is too long"})
        );
    }

    /// The codes as API.md and README.md name them: a renamed variant changes the wire.
    const DOCUMENTED: [&str; 25] = [
        "missing_api_key",
        "invalid_api_key",
        "forbidden",
        "not_found",
        "phone_number_not_found",
        "template_not_found",
        "validation_error",
        "invalid_recipients",
        "template_not_approved",
        "template_not_supported",
        "invalid_signature",
        "method_not_allowed",
        "request_timeout",
        "already_finished",
        "idempotency_in_progress",
        "payload_too_large",
        "unsupported_media_type",
        "idempotency_key_reused",
        "rate_limited",
        "internal_error",
        "service_unavailable",
        "too_many_creates",
        "shutting_down",
        "not_ready",
        "error",
    ];

    #[test]
    fn every_code_is_answered_as_documented() {
        let answered: Vec<String> = ErrorCode::ALL.iter().map(ToString::to_string).collect();
        assert_eq!(answered, DOCUMENTED);
        for code in ErrorCode::ALL {
            let body: Value =
                serde_json::from_slice(&ApiError::new(StatusCode::BAD_REQUEST, code, "x").body())
                    .unwrap();
            assert_eq!(body["code"], code.to_string());
        }
    }

    #[test]
    fn the_schema_lists_every_code_and_no_other() {
        let schema = serde_json::to_value(ErrorCode::schema()).unwrap();
        assert_eq!(schema["type"], "string");
        assert_eq!(schema["enum"], serde_json::json!(DOCUMENTED));
    }

    #[test]
    fn a_status_no_handler_described_gets_its_code() {
        for (status, code) in [
            (400, "validation_error"),
            (404, "not_found"),
            (405, "method_not_allowed"),
            (413, "payload_too_large"),
            (418, "error"),
            (500, "internal_error"),
            (502, "internal_error"),
            (503, "service_unavailable"),
        ] {
            let status = StatusCode::from_u16(status).unwrap();
            assert_eq!(ErrorCode::for_status(status).to_string(), code, "{status}");
        }
    }
}
