//! The suppression list of the caller's tenant (*ext*): `GET /api/v1/suppressions/` (paged,
//! `phone` filter), `POST /api/v1/suppressions/` (add up to [`MAX_PHONES`] phones with a
//! reason), `DELETE /api/v1/suppressions/{phone}/` (lift). Phones are normalised as
//! recipients are (E.164). Adding and lifting need a send key; a read key may list.
//!
//! A phone added here is suppressed for MARKETING templates, or for every category with
//! `suppress_all_categories`; queued messages of running sends it covers become
//! `suppressed` in the same write. A later opt-in from the user (an opt-in keyword, a
//! `user_preferences` resume) still lifts it: see `domain::suppression`.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::auth::{require_send, Authenticated};
use super::bulk_sends::{Page, Paging};
use super::error::{ApiError, ErrorBody, ErrorCode, ErrorItem, MAX_ERRORS};
use super::openapi::{FilterErrors, KeyErrors, SendKeyErrors};
use super::state::AppState;
use crate::clock::format_api_time;
use crate::domain::phone::E164;
use crate::domain::recipients::parse_phones;
use crate::domain::suppression::{Signal, SuppressionScope, SuppressionSource};
use crate::storage::suppressions::{self, SuppressionRow, SuppressionSignal};

/// Phones one `POST` may add.
pub const MAX_PHONES: usize = 10_000;
/// The longest reason kept (longer ones are refused).
const MAX_REASON_CHARS: usize = 500;
/// The canonical path of the list.
const LIST_PATH: &str = "/api/v1/suppressions/";

/// One suppressed phone.
#[derive(Serialize, ToSchema)]
pub struct SuppressionBody {
    /// E.164.
    phone: String,
    reason: String,
    /// `inbound_keyword`, `user_preferences`, `error_131050`, `api` or `import`.
    source: String,
    /// When the phone was suppressed.
    created_at: String,
    /// Whether UTILITY and AUTHENTICATION sends skip the phone too (else only MARKETING ones).
    suppress_all_categories: bool,
}

impl From<SuppressionRow> for SuppressionBody {
    fn from(row: SuppressionRow) -> Self {
        SuppressionBody {
            suppress_all_categories: SuppressionScope::parse_stored(&row.scope)
                == SuppressionScope::All,
            phone: row.phone,
            reason: row.reason,
            source: row.source,
            created_at: format_api_time(row.created_at),
        }
    }
}

/// `GET /api/v1/suppressions/` query.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// One phone (normalised like recipients; `+` as `%2B`).
    phone: Option<String>,
    /// The page, from 1 (default 1).
    #[param(value_type = Option<i64>, minimum = 1, maximum = 10_000_000)]
    page: Option<String>,
    /// Rows per page (default 20).
    #[param(value_type = Option<i64>, minimum = 1, maximum = 1_000)]
    page_size: Option<String>,
}

/// `GET /api/v1/suppressions/`: the tenant's suppressed phones, newest first.
#[utoipa::path(
    get,
    path = "/api/v1/suppressions/",
    tag = "suppressions",
    operation_id = "list_suppressions",
    params(ListQuery),
    responses(
        (status = 200, description = "The tenant's suppressed phones, newest first.", body = Page<SuppressionBody>),
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
    let phone = match q.phone.as_deref() {
        None => None,
        Some(raw) => Some(
            E164::parse(raw)
                .map_err(|e| ApiError::validation(format!("phone: {}", e.reason())))?
                .into_string(),
        ),
    };
    let tenant_id = principal.tenant_id;
    let (offset, size) = (paging.offset(), paging.size);
    let (count, rows) = state
        .db
        .run(move |conn| suppressions::list(conn, tenant_id, phone.as_deref(), offset, size))
        .await?;
    let results: Vec<SuppressionBody> = rows.into_iter().map(SuppressionBody::from).collect();
    Ok(HttpResponse::Ok().json(paging.envelope(&req, LIST_PATH, count, results)))
}

/// `POST /api/v1/suppressions/` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddRequest {
    /// 1 to 10 000 phones in international format (normalised like recipients).
    phones: Vec<String>,
    /// Why (shown in the list and in the `error_message` of messages it stops); default
    /// `added through the API`.
    #[serde(default)]
    reason: Option<String>,
    /// Suppress for every template category, not only MARKETING (default false).
    #[serde(default)]
    suppress_all_categories: bool,
}

/// What an add did.
#[derive(Serialize, ToSchema)]
pub struct AddResponse {
    /// Distinct phones in the request.
    received: usize,
    /// Phones newly suppressed (or widened to every category).
    added: usize,
    /// Phones that were suppressed already.
    already_suppressed: usize,
    /// Queued messages of running sends that became `suppressed`.
    messages_suppressed: usize,
}

/// `POST /api/v1/suppressions/`: suppresses phones by hand.
#[utoipa::path(
    post,
    path = "/api/v1/suppressions/",
    tag = "suppressions",
    operation_id = "add_suppressions",
    request_body = AddRequest,
    responses(
        (status = 200, description = "The phones are suppressed.", body = AddResponse),
        (status = 400, description = "`validation_error` (with `errors` naming each bad phone by its index).", body = ErrorBody),
        SendKeyErrors,
        (status = 413, description = "`payload_too_large`.", body = ErrorBody),
    ),
    security(("api_key" = [])),
)]
pub async fn add(
    Authenticated(principal): Authenticated,
    state: web::Data<AppState>,
    body: web::Json<AddRequest>,
) -> Result<HttpResponse, ApiError> {
    require_send(&principal)?;
    let request = body.into_inner();
    let reason = check_reason(request.reason.as_deref())?;
    let scope = if request.suppress_all_categories {
        SuppressionScope::All
    } else {
        SuppressionScope::Marketing
    };
    let now = state.clock.now_ms();
    let signals = web::block(move || {
        signals_for(&request.phones, scope, SuppressionSource::Api, &reason, now)
    })
    .await
    .map_err(|_| ApiError::internal())??;
    let received = signals.len();
    let tenant_id = principal.tenant_id;
    let outcome = state
        .db
        .write(move |conn| suppressions::apply_signals(conn, tenant_id, &signals, now))
        .await?;
    Ok(HttpResponse::Ok().json(AddResponse {
        received,
        added: outcome.suppressed,
        already_suppressed: outcome.already,
        messages_suppressed: outcome.messages_suppressed,
    }))
}

/// The reason given, checked, or the default.
pub fn check_reason(reason: Option<&str>) -> Result<String, ApiError> {
    match reason.map(str::trim) {
        None | Some("") => Ok("added through the API".to_owned()),
        Some(r) if r.chars().count() > MAX_REASON_CHARS => Err(ApiError::validation(format!(
            "reason must be at most {MAX_REASON_CHARS} characters"
        ))),
        Some(r) if r.contains(char::is_control) => Err(ApiError::validation(
            "reason must not contain control characters",
        )),
        Some(r) => Ok(r.to_owned()),
    }
}

/// One stop per distinct phone (normalised, in order, the first occurrence kept); a bad
/// phone refuses the whole request with every problem listed.
fn signals_for(
    phones: &[String],
    scope: SuppressionScope,
    source: SuppressionSource,
    reason: &str,
    now: i64,
) -> Result<Vec<SuppressionSignal>, ApiError> {
    if phones.is_empty() || phones.len() > MAX_PHONES {
        return Err(ApiError::validation(format!(
            "phones must list 1 to {MAX_PHONES} phones (got {})",
            phones.len()
        )));
    }
    let parsed = parse_phones(phones, |p: &String| Some(p.as_str()));
    let mut errors = Vec::new();
    let mut invalid = 0usize;
    let mut seen = std::collections::HashSet::with_capacity(phones.len());
    let mut signals = Vec::with_capacity(phones.len());
    for (index, (raw, result)) in phones.iter().zip(parsed).enumerate() {
        match result {
            Ok(phone) => {
                if seen.insert(phone.as_str().to_owned()) {
                    signals.push(SuppressionSignal {
                        phone: phone.into_string(),
                        signal: Signal::Stop,
                        scope,
                        source,
                        reason: reason.to_owned(),
                        at_ms: now,
                    });
                }
            }
            Err(e) => {
                invalid += 1;
                // One more than is shown, so that the body says `errors_truncated` (and the
                // error, which is logged, stays small).
                if errors.len() <= MAX_ERRORS {
                    errors.push(ErrorItem {
                        index: Some(index),
                        field: "phones".into(),
                        value: Some(raw.chars().take(64).collect()),
                        reason: e.reason(),
                    });
                }
            }
        }
    }
    if invalid > 0 {
        return Err(ApiError::validation(format!(
            "{invalid} of {} phones are invalid; nothing was added",
            phones.len()
        ))
        .with_errors(errors));
    }
    Ok(signals)
}

/// The `{phone}` path parameter.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(names("phone"), parameter_in = Path)]
pub struct PhonePath(
    /// E.164 (the `+` as is or as `%2B`), normalised like recipients.
    pub String,
);

/// `DELETE /api/v1/suppressions/{phone}/`: lifts a phone's suppression.
#[utoipa::path(
    delete,
    path = "/api/v1/suppressions/{phone}/",
    tag = "suppressions",
    operation_id = "delete_suppression",
    params(PhonePath),
    responses(
        (status = 204, description = "Lifted: later sends reach the phone again (until it opts out again)."),
        (status = 400, description = "`validation_error`: not a phone number.", body = ErrorBody),
        SendKeyErrors,
        (status = 404, description = "`not_found`: the phone is not suppressed.", body = ErrorBody),
    ),
    security(("api_key" = [])),
)]
pub async fn delete(
    Authenticated(principal): Authenticated,
    state: web::Data<AppState>,
    path: web::Path<PhonePath>,
) -> Result<HttpResponse, ApiError> {
    require_send(&principal)?;
    let raw = path.into_inner().0;
    // The router leaves `%2B` encoded in paths (a `+` in a path is not a space).
    let raw = raw.replace("%2B", "+").replace("%2b", "+");
    let phone = E164::parse(&raw)
        .map_err(|e| ApiError::validation(format!("phone: {}", e.reason())))?
        .into_string();
    let tenant_id = principal.tenant_id;
    let now = state.clock.now_ms();
    let lifted = state
        .db
        .write(move |conn| suppressions::lift(conn, tenant_id, &phone, now))
        .await?;
    if lifted {
        Ok(HttpResponse::NoContent().finish())
    } else {
        Err(ApiError::new(
            StatusCode::NOT_FOUND,
            ErrorCode::NotFound,
            "this phone is not suppressed",
        ))
    }
}

/// Reads an import file's phones for [`signals_for`] (the CLI's `suppressions import`).
pub fn import_signals(
    phones: &[String],
    reason: &str,
    all_categories: bool,
    now: i64,
) -> Result<Vec<SuppressionSignal>, ApiError> {
    let scope = if all_categories {
        SuppressionScope::All
    } else {
        SuppressionScope::Marketing
    };
    signals_for(phones, scope, SuppressionSource::Import, reason, now)
}
