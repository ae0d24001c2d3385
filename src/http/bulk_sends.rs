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

use super::auth::Authenticated;
use super::error::ApiError;
use crate::clock::format_api_time;
use crate::domain::message::BulkStatus;
use crate::engine::bulk_send::{ControlAction, ControlOutcome};
use crate::engine::EngineError;
use crate::startup::AppState;
use crate::storage::sends::{self, ListFilter, MessageRow, SendDetail};

/// Largest page.
const MAX_PAGE_SIZE: i64 = 1_000;
/// Rows read per database round trip while exporting.
const EXPORT_CHUNK: i64 = 5_000;

#[derive(Serialize)]
struct TemplateRef {
    id: i64,
    template_name: String,
    language: String,
    status: String,
}

#[derive(Serialize)]
struct NumberRef {
    id: i64,
    display_phone_number: String,
    verified_name: String,
}

#[derive(Serialize)]
struct KeyRef {
    id: i64,
    name: String,
}

/// The status object (API.md). List items leave out the three optional fields.
#[derive(Serialize)]
struct StatusBody {
    id: String,
    status: &'static str,
    template: TemplateRef,
    phone_number: NumberRef,
    total_recipients: u64,
    sent_count: u64,
    delivered_count: u64,
    read_count: u64,
    failed_count: u64,
    pending_count: u64,
    progress_percentage: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    estimated_time_minutes: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    started_at: Option<Option<String>>,
    completed_at: Option<String>,
    created_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    created_by: Option<KeyRef>,
    task_id: String,
    unique_recipients: u64,
    cancelled_count: u64,
    paused: bool,
    pause_reason: Option<String>,
    scheduled_at: Option<String>,
}

fn status_body(detail: SendDetail, full: bool) -> StatusBody {
    let send = detail.send;
    let counters = send.counters();
    let status = send.status();
    let (template_id, template_name, language, template_status) = detail.template;
    let (phone_id, display_phone_number, verified_name) = detail.phone;
    let (key_id, key_name) = detail.api_key;
    StatusBody {
        id: send.id,
        status: status.as_str(),
        template: TemplateRef {
            id: template_id,
            template_name,
            language,
            status: template_status,
        },
        phone_number: NumberRef {
            id: phone_id,
            display_phone_number,
            verified_name,
        },
        total_recipients: counters.total(),
        sent_count: counters.sent_count(),
        delivered_count: counters.delivered_count(),
        read_count: counters.read_count(),
        failed_count: counters.failed_count(),
        pending_count: counters.pending_count(),
        progress_percentage: counters.progress_percentage(),
        estimated_time_minutes: full.then_some(send.estimated_time_minutes),
        started_at: full.then(|| send.started_at.map(format_api_time)),
        completed_at: send.completed_at.map(format_api_time),
        created_at: format_api_time(send.created_at),
        created_by: full.then_some(KeyRef {
            id: key_id,
            name: key_name,
        }),
        task_id: send.task_id,
        unique_recipients: u64::try_from(send.unique_recipients).unwrap_or(0),
        cancelled_count: counters.cancelled_count(),
        paused: send.paused,
        pause_reason: send.pause_reason,
        scheduled_at: send.scheduled_at.map(format_api_time),
    }
}

/// A bulk-send id from the path. Ours are UUIDs: anything else is unknown (404) without a
/// query, so that no text the database cannot hold (a NUL, for PostgreSQL) reaches it.
#[derive(Debug)]
pub struct SendId(String);

impl<'de> Deserialize<'de> for SendId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<SendId, D::Error> {
        let text = String::deserialize(d)?;
        uuid::Uuid::try_parse(&text)
            .map(|id| SendId(id.to_string()))
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
pub async fn status(
    Authenticated(principal): Authenticated,
    state: web::Data<AppState>,
    path: web::Path<SendId>,
) -> Result<HttpResponse, ApiError> {
    let detail = load_detail(&state, principal.tenant_id, path.into_inner().0).await?;
    Ok(HttpResponse::Ok().json(status_body(detail, true)))
}

/// Validated paging.
struct Paging {
    page: i64,
    size: i64,
}

impl Paging {
    fn parse(page: Option<&str>, size: Option<&str>) -> Result<Paging, ApiError> {
        let page = match page {
            None => 1,
            Some(p) => p
                .parse::<i64>()
                .ok()
                .filter(|p| *p >= 1 && *p <= 10_000_000)
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

    fn offset(&self) -> i64 {
        (self.page - 1).saturating_mul(self.size)
    }

    /// The paging envelope with absolute `next`/`previous` URLs.
    fn envelope(&self, req: &HttpRequest, path: &str, count: i64, results: Vec<Value>) -> Value {
        let link = |page: i64| page_url(req, path, page);
        let next = (self.page.saturating_mul(self.size) < count).then(|| link(self.page + 1));
        let previous = (self.page > 1).then(|| link(self.page - 1));
        serde_json::json!({"count": count, "next": next, "previous": previous, "results": results})
    }
}

/// The request's own URL (canonical path) with `page` replaced.
fn page_url(req: &HttpRequest, path: &str, page: i64) -> String {
    let info = req.connection_info();
    let mut url = url::Url::parse(&format!("{}://{}{}", info.scheme(), info.host(), path))
        .unwrap_or_else(|_| url::Url::parse("http://localhost/").expect("a static URL parses"));
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

/// `GET …/bulk-sends/` query.
#[derive(Debug, Deserialize)]
pub struct ListQuery {
    status: Option<String>,
    template: Option<String>,
    template_name: Option<String>,
    created_after: Option<String>,
    created_before: Option<String>,
    page: Option<String>,
    page_size: Option<String>,
}

/// `GET …/bulk-sends/`: newest first.
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
                s.parse::<BulkStatus>()
                    .ok()
                    .filter(|st| st.as_str() == s)
                    .map(|st| st.as_str().to_owned())
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
    let results = rows
        .into_iter()
        .map(|d| serde_json::to_value(status_body(d, false)).unwrap_or(Value::Null))
        .collect();
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
#[derive(Serialize)]
struct MessageBody {
    id: i64,
    recipient_phone: String,
    status: &'static str,
    meta_message_id: Option<String>,
    variables_used: Value,
    sent_at: Option<String>,
    delivered_at: Option<String>,
    read_at: Option<String>,
    error_message: Option<String>,
    error_code: Option<i64>,
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
#[derive(Debug, Deserialize)]
pub struct MessagesQuery {
    status: Option<String>,
    page: Option<String>,
    page_size: Option<String>,
}

/// `GET …/bulk-sends/{id}/messages/`: in recipient order.
pub async fn messages(
    Authenticated(principal): Authenticated,
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<SendId>,
    query: web::Query<MessagesQuery>,
) -> Result<HttpResponse, ApiError> {
    let id = path.into_inner().0;
    let q = query.into_inner();
    let paging = Paging::parse(q.page.as_deref(), q.page_size.as_deref())?;
    let states = match q.status.as_deref() {
        None => None,
        Some(s) => Some(sends::states_for_filter(s).ok_or_else(|| {
            ApiError::validation(
                "status must be one of pending, sent, delivered, read, failed, cancelled",
            )
        })?),
    };
    let detail = load_detail(&state, principal.tenant_id, id.clone()).await?;
    let (offset, size) = (paging.offset(), paging.size);
    let send_id = detail.send.id.clone();
    let (count, rows) = state
        .db
        .run(move |conn| sends::messages_page(conn, &send_id, states, offset, size))
        .await?;
    let results = rows
        .into_iter()
        .map(|m| serde_json::to_value(message_body(m)).unwrap_or(Value::Null))
        .collect();
    let path = format!("/api/v1/meta-templates/bulk-sends/{id}/messages/");
    Ok(HttpResponse::Ok().json(paging.envelope(&req, &path, count, results)))
}

/// `GET …/bulk-sends/{id}/messages/export/`: every message as CSV, streamed in chunks.
pub async fn export(
    Authenticated(principal): Authenticated,
    state: web::Data<AppState>,
    path: web::Path<SendId>,
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
pub async fn cancel(
    auth: Authenticated,
    state: web::Data<AppState>,
    path: web::Path<SendId>,
) -> Result<HttpResponse, ApiError> {
    control(auth, state, path.into_inner().0, ControlAction::Cancel).await
}

/// `POST …/bulk-sends/{id}/pause/`.
pub async fn pause(
    auth: Authenticated,
    state: web::Data<AppState>,
    path: web::Path<SendId>,
) -> Result<HttpResponse, ApiError> {
    control(auth, state, path.into_inner().0, ControlAction::Pause).await
}

/// `POST …/bulk-sends/{id}/resume/`.
pub async fn resume(
    auth: Authenticated,
    state: web::Data<AppState>,
    path: web::Path<SendId>,
) -> Result<HttpResponse, ApiError> {
    control(auth, state, path.into_inner().0, ControlAction::Resume).await
}

async fn control(
    Authenticated(principal): Authenticated,
    state: web::Data<AppState>,
    id: String,
    action: ControlAction,
) -> Result<HttpResponse, ApiError> {
    let detail = load_detail(&state, principal.tenant_id, id.clone()).await?;
    let already_finished = || {
        ApiError::new(
            StatusCode::CONFLICT,
            "already_finished",
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
