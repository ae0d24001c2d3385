//! The bulk-send reads and controls: status, list, messages (paged and as CSV), cancel,
//! pause, resume. Every one sees only the caller's tenant: another tenant's send is as
//! unknown as a missing one (404).
//!
//! Counters come from the send's row, which the engine updates in the same transaction as
//! the messages it counts, so a status read reflects every outcome and every webhook that
//! was already answered.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use super::auth::Authenticated;
use super::error::{ApiError, ErrorBody, ErrorCode};
use super::openapi::{ControlErrors, FilterErrors, KeyErrors, UnknownSendErrors};
use super::state::AppState;
use crate::clock::format_api_time;
use crate::domain::message::BulkStatus;
use crate::engine::bulk_send::{ControlAction, ControlOutcome};
use crate::engine::EngineError;
use crate::storage::sends::{self, ListFilter, MessageRow, SendDetail};
use crate::storage::status_object::{status_body, StatusBody};

/// Largest page size.
const MAX_PAGE_SIZE: i64 = 1_000;
/// Largest page number.
const MAX_PAGE: i64 = 10_000_000;
/// Rows read per database round trip while exporting.
const EXPORT_CHUNK: i64 = 5_000;

/// The `{bulk_send_id}` path parameter. Ours are UUIDs: anything else is unknown (404)
/// without a query, so that no text the database cannot hold (a NUL, for PostgreSQL)
/// reaches it.
#[derive(Debug, IntoParams)]
#[into_params(names("bulk_send_id"), parameter_in = Path)]
pub struct BulkSendId(
    /// The send's id (a UUID).
    pub(crate) String,
);

impl<'de> Deserialize<'de> for BulkSendId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<BulkSendId, D::Error> {
        let text = String::deserialize(d)?;
        uuid::Uuid::try_parse(&text)
            .map(|id| BulkSendId(id.to_string()))
            .map_err(serde::de::Error::custom)
    }
}

async fn load_detail(state: &AppState, tenant_id: i64, id: String) -> Result<SendDetail, ApiError> {
    state
        .db
        .run(move |conn| sends::load_detail(conn, tenant_id, &id))
        .await?
        .ok_or_else(|| ApiError::not_found("no bulk send with this id"))
}

/// `GET …/bulk-sends/{id}/`.
#[utoipa::path(
    get,
    path = "/api/v1/meta-templates/bulk-sends/{bulk_send_id}/",
    tag = "bulk sends",
    operation_id = "bulk_send_status",
    params(BulkSendId),
    responses(
        (status = 200, description = "The send's status object.", body = StatusBody),
        KeyErrors,
        (status = 404, description = "`not_found`: unknown id, or another tenant's.", body = ErrorBody),
    ),
    security(("api_key" = [])),
)]
pub async fn status(
    Authenticated(principal): Authenticated,
    state: web::Data<AppState>,
    path: web::Path<BulkSendId>,
) -> Result<HttpResponse, ApiError> {
    let detail = load_detail(&state, principal.tenant_id, path.into_inner().0).await?;
    Ok(HttpResponse::Ok().json(status_body(detail, true)))
}

/// Validated paging.
pub(crate) struct Paging {
    pub(crate) page: i64,
    pub(crate) size: i64,
}

impl Paging {
    pub(crate) fn parse(page: Option<&str>, size: Option<&str>) -> Result<Paging, ApiError> {
        let page = match page {
            None => 1,
            Some(p) => p
                .parse::<i64>()
                .ok()
                .filter(|p| (1..=MAX_PAGE).contains(p))
                .ok_or_else(|| ApiError::validation("page must be a whole number from 1"))?,
        };
        let size = match size {
            None => 20,
            Some(s) => s
                .parse::<i64>()
                .ok()
                .filter(|s| (1..=MAX_PAGE_SIZE).contains(s))
                .ok_or_else(|| {
                    ApiError::validation(format!(
                        "page_size must be a whole number from 1 to {MAX_PAGE_SIZE}"
                    ))
                })?,
        };
        Ok(Paging { page, size })
    }

    pub(crate) fn offset(&self) -> i64 {
        (self.page - 1).saturating_mul(self.size)
    }

    /// The paging envelope with absolute `next`/`previous` URLs.
    pub(crate) fn envelope<T>(
        &self,
        req: &HttpRequest,
        path: &str,
        count: i64,
        results: Vec<T>,
    ) -> Page<T> {
        let link = |page: i64| page_url(req, path, page);
        let next = (self.page.saturating_mul(self.size) < count).then(|| link(self.page + 1));
        let previous = (self.page > 1).then(|| link(self.page - 1));
        Page {
            count,
            next,
            previous,
            results,
        }
    }
}

/// A page of results.
#[derive(Serialize, ToSchema)]
pub(crate) struct Page<T> {
    /// Rows matching, on every page.
    count: i64,
    /// The next page's absolute URL.
    #[schema(required)]
    next: Option<String>,
    /// The previous page's absolute URL.
    #[schema(required)]
    previous: Option<String>,
    results: Vec<T>,
}

/// The request's own URL (canonical path) with `page` replaced.
fn page_url(req: &HttpRequest, path: &str, page: i64) -> String {
    let info = req.connection_info();
    let Ok(mut url) = url::Url::parse(&format!("{}://{}{}", info.scheme(), info.host(), path))
        .or_else(|_| url::Url::parse(&format!("http://localhost{path}")))
    else {
        // A path that makes no URL even on localhost: the link is the path itself.
        return format!("{path}?page={page}");
    };
    {
        let mut pairs = url.query_pairs_mut();
        for (k, v) in url::form_urlencoded::parse(req.query_string().as_bytes()) {
            if k != "page" {
                pairs.append_pair(&k, &v);
            }
        }
        pairs.append_pair("page", &page.to_string());
    }
    url.to_string()
}

/// A message's status as the messages filter takes it.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
enum MessageStatusFilter {
    Pending,
    Sent,
    Delivered,
    Read,
    Failed,
    Cancelled,
    Suppressed,
}

/// `value` as a variant of the filter enum `T`: exactly the names its schema lists.
fn filter_value<T: serde::de::DeserializeOwned>(value: &str) -> Option<T> {
    use serde::de::value::{Error, StrDeserializer};
    T::deserialize(StrDeserializer::<Error>::new(value)).ok()
}

/// `GET …/bulk-sends/` query. Read as text and checked by hand (so that a bad value gets a
/// message naming it); the schema states the same rules.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// The send's status (exact).
    #[param(value_type = Option<BulkStatus>, inline)]
    status: Option<String>,
    /// An internal template id.
    #[param(value_type = Option<i64>)]
    template: Option<String>,
    /// A template name.
    #[param(pattern = r"^[^\x00-\x1f\x7f-\x9f]*$")]
    template_name: Option<String>,
    /// `YYYY-MM-DD` (UTC), inclusive.
    #[param(format = Date)]
    created_after: Option<String>,
    /// `YYYY-MM-DD` (UTC), inclusive.
    #[param(format = Date)]
    created_before: Option<String>,
    /// The page, from 1 (default 1).
    #[param(value_type = Option<i64>, minimum = 1, maximum = 10_000_000)]
    page: Option<String>,
    /// Rows per page (default 20).
    #[param(value_type = Option<i64>, minimum = 1, maximum = 1_000)]
    page_size: Option<String>,
}

/// `GET …/bulk-sends/`: newest first.
#[utoipa::path(
    get,
    path = "/api/v1/meta-templates/bulk-sends/",
    tag = "bulk sends",
    operation_id = "list_bulk_sends",
    params(ListQuery),
    responses(
        (status = 200, description = "The tenant's sends, newest first; items leave out `estimated_time_minutes`, `started_at` and `created_by`.", body = Page<StatusBody>),
        KeyErrors,
        FilterErrors,
    ),
    security(("api_key" = [])),
)]
pub async fn list(
    Authenticated(principal): Authenticated,
    state: web::Data<AppState>,
    req: HttpRequest,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    let q = query.into_inner();
    let paging = Paging::parse(q.page.as_deref(), q.page_size.as_deref())?;
    let filter = ListFilter {
        status: match q.status {
            None => None,
            Some(s) => Some(
                filter_value::<BulkStatus>(&s)
                    .map(|_| s)
                    .ok_or_else(|| {
                        ApiError::validation(
                            "status must be one of QUEUED, PROCESSING, COMPLETED, PARTIAL, FAILED, CANCELLED",
                        )
                    })?,
            ),
        },
        template_id: match q.template {
            None => None,
            Some(t) => Some(
                t.parse()
                    .map_err(|_| ApiError::validation("template must be a template id (a whole number)"))?,
            ),
        },
        template_name: match q.template_name {
            Some(name) if name.contains(char::is_control) => {
                return Err(ApiError::validation(
                    "template_name must not contain control characters",
                ))
            }
            other => other,
        },
        created_from: q
            .created_after
            .as_deref()
            .map(|d| day_start(d, "created_after"))
            .transpose()?,
        created_until: q
            .created_before
            .as_deref()
            .map(|d| day_start(d, "created_before").map(|t| t + 24 * 60 * 60 * 1000))
            .transpose()?,
    };
    let tenant_id = principal.tenant_id;
    let (offset, size) = (paging.offset(), paging.size);
    let (count, rows) = state
        .db
        .run(move |conn| sends::list_sends(conn, tenant_id, &filter, offset, size))
        .await?;
    let results = rows.into_iter().map(|d| status_body(d, false)).collect();
    Ok(HttpResponse::Ok().json(paging.envelope(
        &req,
        "/api/v1/meta-templates/bulk-sends/",
        count,
        results,
    )))
}

/// `YYYY-MM-DD` → unix ms of that day's start (UTC).
fn day_start(value: &str, field: &str) -> Result<i64, ApiError> {
    chrono::NaiveDate::parse_from_str(value, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc().timestamp_millis())
        .ok_or_else(|| ApiError::validation(format!("{field} must be a date as YYYY-MM-DD")))
}

/// One message as the API shows it.
#[derive(Serialize, ToSchema)]
struct MessageBody {
    id: i64,
    /// E.164.
    recipient_phone: String,
    /// pending, sent, delivered, read, failed, cancelled or suppressed (the recipient opted
    /// out; `error_message` says how).
    status: &'static str,
    /// Meta's message id (wamid).
    #[schema(required)]
    meta_message_id: Option<String>,
    /// The variables the message was sent with.
    variables_used: Value,
    #[schema(required)]
    sent_at: Option<String>,
    #[schema(required)]
    delivered_at: Option<String>,
    #[schema(required)]
    read_at: Option<String>,
    #[schema(required)]
    error_message: Option<String>,
    /// Meta's numeric error code.
    #[schema(required)]
    error_code: Option<i64>,
    #[schema(required)]
    failed_at: Option<String>,
    attempts: i32,
}

fn message_body(m: MessageRow) -> MessageBody {
    let status = m
        .state
        .parse::<crate::domain::message::MessageState>()
        .map(|s| s.api_status())
        .unwrap_or("pending");
    MessageBody {
        id: m.id,
        recipient_phone: m.recipient,
        status,
        meta_message_id: m.wamid,
        variables_used: serde_json::from_str(&m.variables).unwrap_or(Value::Null),
        sent_at: m.sent_at.map(format_api_time),
        delivered_at: m.delivered_at.map(format_api_time),
        read_at: m.read_at.map(format_api_time),
        error_message: m.error_message,
        error_code: m.error_code,
        failed_at: m.failed_at.map(format_api_time),
        attempts: m.attempts,
    }
}

/// `GET …/messages/` query.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct MessagesQuery {
    /// The message's status (exact).
    #[param(value_type = Option<MessageStatusFilter>, inline)]
    status: Option<String>,
    /// The page, from 1 (default 1).
    #[param(value_type = Option<i64>, minimum = 1, maximum = 10_000_000)]
    page: Option<String>,
    /// Rows per page (default 20).
    #[param(value_type = Option<i64>, minimum = 1, maximum = 1_000)]
    page_size: Option<String>,
}

/// `GET …/bulk-sends/{id}/messages/`: in recipient order.
#[utoipa::path(
    get,
    path = "/api/v1/meta-templates/bulk-sends/{bulk_send_id}/messages/",
    tag = "bulk sends",
    operation_id = "bulk_send_messages",
    params(BulkSendId, MessagesQuery),
    responses(
        (status = 200, description = "A page of the send's messages, in recipient order.", body = Page<MessageBody>),
        KeyErrors,
        FilterErrors,
        UnknownSendErrors,
    ),
    security(("api_key" = [])),
)]
pub async fn messages(
    Authenticated(principal): Authenticated,
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<BulkSendId>,
    query: web::Query<MessagesQuery>,
) -> Result<HttpResponse, ApiError> {
    let id = path.into_inner().0;
    let q = query.into_inner();
    let paging = Paging::parse(q.page.as_deref(), q.page_size.as_deref())?;
    let states = match q.status.as_deref() {
        None => None,
        Some(s) => Some(
            filter_value::<MessageStatusFilter>(s)
                .and_then(|_| sends::states_for_filter(s))
                .ok_or_else(|| {
                    ApiError::validation(
                        "status must be one of pending, sent, delivered, read, failed, cancelled, suppressed",
                    )
                })?,
        ),
    };
    let detail = load_detail(&state, principal.tenant_id, id.clone()).await?;
    let (offset, size) = (paging.offset(), paging.size);
    let send_id = detail.send.id.clone();
    let (count, rows) = state
        .db
        .run(move |conn| sends::messages_page(conn, &send_id, states, offset, size))
        .await?;
    let results = rows.into_iter().map(message_body).collect::<Vec<_>>();
    let path = format!("/api/v1/meta-templates/bulk-sends/{id}/messages/");
    Ok(HttpResponse::Ok().json(paging.envelope(&req, &path, count, results)))
}

/// `GET …/bulk-sends/{id}/messages/export/`: every message as CSV, streamed in chunks.
#[utoipa::path(
    get,
    path = "/api/v1/meta-templates/bulk-sends/{bulk_send_id}/messages/export/",
    tag = "bulk sends",
    operation_id = "export_bulk_send_messages",
    params(BulkSendId),
    responses(
        (status = 200, description = "Every message as CSV (a header row, then the message fields in recipient order).", content_type = "text/csv", body = String),
        KeyErrors,
        UnknownSendErrors,
    ),
    security(("api_key" = [])),
)]
pub async fn export(
    Authenticated(principal): Authenticated,
    state: web::Data<AppState>,
    path: web::Path<BulkSendId>,
) -> Result<HttpResponse, ApiError> {
    let detail = load_detail(&state, principal.tenant_id, path.into_inner().0).await?;
    let send_id = detail.send.id;
    let db = state.db.clone();
    let header = csv_line(&[
        "id",
        "recipient_phone",
        "status",
        "meta_message_id",
        "variables_used",
        "sent_at",
        "delivered_at",
        "read_at",
        "error_message",
        "error_code",
        "failed_at",
        "attempts",
    ]);
    let first =
        futures_util::stream::once(
            async move { Ok::<_, actix_web::Error>(web::Bytes::from(header)) },
        );
    let rows = futures_util::stream::unfold(Some(-1), move |after| {
        let db = db.clone();
        let send_id = send_id.clone();
        async move {
            let after = after?;
            let chunk = db
                .run(move |conn| sends::messages_after(conn, &send_id, after, EXPORT_CHUNK))
                .await;
            match chunk {
                Ok(rows) if rows.is_empty() => None,
                Ok(rows) => {
                    let next = rows.last().map(|m| m.seq);
                    let mut out = Vec::with_capacity(rows.len() * 128);
                    for m in rows {
                        out.extend_from_slice(&csv_row(m));
                    }
                    Some((Ok(web::Bytes::from(out)), next))
                }
                Err(err) => {
                    tracing::warn!(error = %err, "A CSV export stopped early.");
                    Some((Err(actix_web::error::ErrorServiceUnavailable(err)), None))
                }
            }
        }
    });
    use futures_util::StreamExt;
    Ok(HttpResponse::Ok()
        .content_type("text/csv; charset=utf-8")
        .insert_header((
            "Content-Disposition",
            format!(
                "attachment; filename=\"bulk-send-{}.csv\"",
                detail.send.task_id
            ),
        ))
        .streaming(first.chain(rows)))
}

fn csv_row(m: MessageRow) -> Vec<u8> {
    let b = message_body(m);
    let opt = |v: &Option<String>| v.clone().unwrap_or_default();
    csv_line(&[
        &b.id.to_string(),
        &b.recipient_phone,
        b.status,
        &opt(&b.meta_message_id),
        &b.variables_used.to_string(),
        &opt(&b.sent_at),
        &opt(&b.delivered_at),
        &opt(&b.read_at),
        &opt(&b.error_message),
        &b.error_code.map(|c| c.to_string()).unwrap_or_default(),
        &opt(&b.failed_at),
        &b.attempts.to_string(),
    ])
}

fn csv_line(fields: &[&str]) -> Vec<u8> {
    let mut writer = csv::WriterBuilder::new().from_writer(Vec::new());
    let _ = writer.write_record(fields);
    writer.into_inner().unwrap_or_default()
}

/// `POST …/bulk-sends/{id}/cancel/`.
#[utoipa::path(
    post,
    path = "/api/v1/meta-templates/bulk-sends/{bulk_send_id}/cancel/",
    tag = "bulk sends",
    operation_id = "cancel_bulk_send",
    params(BulkSendId),
    responses(
        (status = 200, description = "Cancels the send: pending messages become `cancelled`; none is dispatched after the 200. The status object after it.", body = StatusBody),
        ControlErrors,
    ),
    security(("api_key" = [])),
)]
pub async fn cancel(
    auth: Authenticated,
    state: web::Data<AppState>,
    path: web::Path<BulkSendId>,
) -> Result<HttpResponse, ApiError> {
    control(auth, state, path.into_inner().0, ControlAction::Cancel).await
}

/// `POST …/bulk-sends/{id}/pause/`.
#[utoipa::path(
    post,
    path = "/api/v1/meta-templates/bulk-sends/{bulk_send_id}/pause/",
    tag = "bulk sends",
    operation_id = "pause_bulk_send",
    params(BulkSendId),
    responses(
        (status = 200, description = "Pauses the send: nothing is dispatched until a resume. The status object after it.", body = StatusBody),
        ControlErrors,
    ),
    security(("api_key" = [])),
)]
pub async fn pause(
    auth: Authenticated,
    state: web::Data<AppState>,
    path: web::Path<BulkSendId>,
) -> Result<HttpResponse, ApiError> {
    control(auth, state, path.into_inner().0, ControlAction::Pause).await
}

/// `POST …/bulk-sends/{id}/resume/`.
#[utoipa::path(
    post,
    path = "/api/v1/meta-templates/bulk-sends/{bulk_send_id}/resume/",
    tag = "bulk sends",
    operation_id = "resume_bulk_send",
    params(BulkSendId),
    responses(
        (status = 200, description = "Resumes a paused send. The status object after it.", body = StatusBody),
        ControlErrors,
    ),
    security(("api_key" = [])),
)]
pub async fn resume(
    auth: Authenticated,
    state: web::Data<AppState>,
    path: web::Path<BulkSendId>,
) -> Result<HttpResponse, ApiError> {
    control(auth, state, path.into_inner().0, ControlAction::Resume).await
}

async fn control(
    Authenticated(principal): Authenticated,
    state: web::Data<AppState>,
    id: String,
    action: ControlAction,
) -> Result<HttpResponse, ApiError> {
    super::auth::require_send(&principal)?;
    let detail = load_detail(&state, principal.tenant_id, id.clone()).await?;
    let already_finished = || {
        ApiError::new(
            StatusCode::CONFLICT,
            ErrorCode::AlreadyFinished,
            format!("the bulk send is already {}", detail.send.status),
        )
    };
    if detail.send.status().is_finished() {
        return Err(already_finished());
    }
    match state.engine.control(id.clone(), action).await {
        Ok(ControlOutcome::Done) => {}
        Ok(ControlOutcome::AlreadyFinished) => return Err(already_finished()),
        Err(EngineError::Stopped) => return Err(ApiError::unavailable()),
        Err(EngineError::Storage(err)) => return Err(ApiError::from(err)),
    }
    let detail = load_detail(&state, principal.tenant_id, id).await?;
    Ok(HttpResponse::Ok().json(status_body(detail, true)))
}

impl From<EngineError> for ApiError {
    fn from(err: EngineError) -> Self {
        match err {
            EngineError::Stopped => ApiError::unavailable(),
            EngineError::Storage(e) => ApiError::from(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use utoipa::PartialSchema;

    /// The names a filter's schema lists.
    fn documented<T: PartialSchema>() -> Vec<String> {
        let schema = serde_json::to_value(T::schema()).unwrap();
        serde_json::from_value(schema["enum"].clone()).unwrap()
    }

    #[test]
    fn the_list_filter_takes_exactly_the_send_statuses() {
        let names = documented::<BulkStatus>();
        let statuses: Vec<&str> = BulkStatus::ALL.iter().map(|s| s.as_str()).collect();
        assert_eq!(names, statuses);
        for name in &names {
            assert!(filter_value::<BulkStatus>(name).is_some(), "{name}");
            assert!(filter_value::<BulkStatus>(&name.to_lowercase()).is_none());
        }
        assert!(filter_value::<BulkStatus>("DONE").is_none());
    }

    #[test]
    fn the_messages_filter_takes_exactly_what_storage_can_filter() {
        let names = documented::<MessageStatusFilter>();
        assert_eq!(names.len(), 7);
        for name in &names {
            assert!(
                filter_value::<MessageStatusFilter>(name).is_some(),
                "{name}"
            );
            assert!(sends::states_for_filter(name).is_some(), "{name}");
            assert!(filter_value::<MessageStatusFilter>(&name.to_uppercase()).is_none());
        }
        assert!(filter_value::<MessageStatusFilter>("dispatching").is_none());
    }
}
