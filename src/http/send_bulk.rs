//! `POST /api/v1/meta-templates/send-bulk/`: validate everything, store the send and all its
//! messages in one transaction, answer 202 at once; the engine takes it from there.
//!
//! Order of work: the `Idempotency-Key` is claimed first (a replay answers before anything
//! else is looked at), then the body is parsed and every recipient validated off the async
//! executor (phone parsing is CPU work), then the send is stored together with the key's
//! answer. A refused request releases its key: nothing was created, the key may be reused.

use std::collections::{BTreeMap, HashSet};

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use utoipa::ToSchema;

use super::auth::Authenticated;
use super::error::{ApiError, ErrorBody, MAX_ERRORS};
use super::recipients::{RawRecipient, Strings, Text};
use crate::clock::format_api_time;
use crate::domain::egress::{CallbackPolicy, TargetRefused};
use crate::domain::eta::{estimate_minutes, QuotaInfo, QuotaWindow, WINDOW_MS};
use crate::domain::phone::{PhoneError, E164};
use crate::domain::template::TemplateSpec;
use crate::domain::tier::Tier;
use crate::startup::AppState;
use crate::storage::accounts::{self, BusinessAccount, PhoneNumber, Template};
use crate::storage::idempotency::{self, Claim};
use crate::storage::sends::{self, NewMessage, NewSend};
use crate::storage::StorageError;

/// How far ahead a send may be scheduled.
const MAX_SCHEDULE_AHEAD_MS: i64 = 30 * 24 * 60 * 60 * 1000;
/// Recipients shown in a dry run's preview.
const PREVIEW_RECIPIENTS: usize = 5;
/// Longest `Idempotency-Key` accepted.
const MAX_IDEMPOTENCY_KEY_LEN: usize = 255;

/// Longest text field, in characters.
const MAX_TEXT_FIELD_CHARS: usize = 512;

// The schema below states every rule that `check_fields` enforces; of `parse_schedule` and
// `check_callback_url`, the shape (a timestamp, an http(s) URL), not the moment (within 30
// days) nor the address policy (public hosts), which depend on the clock and the operator.
/// The send-bulk request body. Text fields are 1 to 512 characters, not only whitespace,
/// without control characters. Recipients' phones and variables are checked against the
/// numbering plan and the template (400 `invalid_recipients`).
#[derive(Debug, Deserialize, ToSchema)]
struct SendBulkRequest {
    /// Meta's phone-number id of one of the tenant's numbers.
    #[schema(
        min_length = 1,
        max_length = 512,
        pattern = r"^[^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f][^\x00-\x1f\x7f-\x9f]*$"
    )]
    phone_number_id: String,
    /// An APPROVED template of that number's WABA.
    #[schema(
        min_length = 1,
        max_length = 512,
        pattern = r"^[^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f][^\x00-\x1f\x7f-\x9f]*$"
    )]
    template_name: String,
    /// Meta's exact locale (`es`, `en`, `pt_BR`, …).
    #[serde(default = "default_language")]
    #[schema(
        default = "es",
        min_length = 1,
        max_length = 512,
        pattern = r"^[^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f][^\x00-\x1f\x7f-\x9f]*$"
    )]
    language: String,
    /// 1 … `max_recipients` (default 100 000) recipients (`maxItems` is the daemon's setting).
    #[schema(value_type = Vec<RecipientSchema>, min_items = 1)]
    recipients: Vec<RawRecipient>,
    /// Drop invalid recipients (reported in `invalid_recipients`) instead of refusing the request.
    #[serde(default)]
    skip_invalid: bool,
    /// ISO 8601 with a time zone; start no earlier than this (in the future, within 30 days).
    #[serde(default)]
    #[schema(format = DateTime, pattern = r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")]
    scheduled_at: Option<String>,
    /// An https URL on the public internet that receives the client events of this send
    /// (loopback, private, link-local, CGNAT, multicast and other internal addresses are
    /// refused unless the operator allows them).
    #[serde(default)]
    #[schema(format = "uri", max_length = 2048, pattern = r"^https?://")]
    callback_url: Option<String>,
    /// Validate only: nothing is stored, the answer is 200 with a `preview`.
    #[serde(default)]
    dry_run: bool,
}

/// One recipient of the send-bulk request (documentation only: recipients are read leniently,
/// so that every problem of every recipient can be reported).
#[derive(ToSchema)]
#[allow(dead_code)]
struct RecipientSchema {
    /// International format; normalised to E.164.
    phone: String,
    /// The template's parameter names (NAMED) or `"1"`, `"2"`, … (POSITIONAL) → values.
    variables: Option<BTreeMap<String, String>>,
    /// `button_0`, `button_1`, … (0-based button index) → values, for dynamic buttons.
    button_variables: Option<BTreeMap<String, String>>,
}

fn default_language() -> String {
    "es".into()
}

/// A recipient that passed validation, its values already in the JSON they are stored as.
struct ValidRecipient {
    phone: E164,
    variables: String,
    button_variables: String,
}

/// The outcome of validating every recipient.
struct Validated {
    unique: Vec<ValidRecipient>,
    /// Indexes that failed validation.
    invalid: usize,
    /// The first problems found (one more than shown, to flag truncation).
    errors: Vec<Value>,
}

/// The answer to a created send (202), or to a dry run (200, with `preview`).
#[derive(Serialize, ToSchema)]
struct CreateResponse {
    bulk_send_id: String,
    task_id: String,
    /// Always `queued`.
    #[schema(value_type = CreatedStatus)]
    status: &'static str,
    template_name: String,
    total_recipients: usize,
    unique_recipients: usize,
    estimated_time_minutes: f64,
    created_at: String,
    whatsapp_phone_number: NumberSummary,
    quota_info: QuotaInfo,
    invalid_recipients: usize,
    #[schema(required)]
    scheduled_at: Option<String>,
    /// Dry runs only: the rendered Meta `template.components` of the first 5 unique recipients.
    #[serde(skip_serializing_if = "Option::is_none")]
    preview: Option<Vec<Value>>,
}

/// The status of a send just created (documentation only).
#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
#[allow(dead_code)]
enum CreatedStatus {
    Queued,
}

#[derive(Serialize, ToSchema)]
struct NumberSummary {
    id: i64,
    phone_number_id: String,
    display_phone_number: String,
    verified_name: String,
    quality_rating: String,
    #[schema(value_type = Tier)]
    messaging_limit_tier: &'static str,
}

/// `POST /api/v1/meta-templates/send-bulk/`.
#[utoipa::path(
    post,
    path = "/api/v1/meta-templates/send-bulk/",
    tag = "bulk sends",
    operation_id = "send_bulk",
    request_body = SendBulkRequest,
    params(
        ("Idempotency-Key" = Option<String>, Header,
         description = "Same key and body within 24 h: the original answer again; another body: 422.",
         min_length = 1, max_length = 255, pattern = r"^[\t\x20-\x7e]*[\x21-\x7e][\t\x20-\x7e]*$"),
    ),
    responses(
        (status = 202, description = "The send is stored and queued.", body = CreateResponse, links(
            ("status" = (operation_id = "bulk_send_status", description = "The send's status object.",
                parameters(("bulk_send_id" = "$response.body#/bulk_send_id")))),
            ("messages" = (operation_id = "bulk_send_messages", description = "The send's messages.",
                parameters(("bulk_send_id" = "$response.body#/bulk_send_id")))),
            ("export" = (operation_id = "export_bulk_send_messages", description = "The send's messages as CSV.",
                parameters(("bulk_send_id" = "$response.body#/bulk_send_id")))),
            ("cancel" = (operation_id = "cancel_bulk_send", description = "Cancel the send.",
                parameters(("bulk_send_id" = "$response.body#/bulk_send_id")))),
            ("pause" = (operation_id = "pause_bulk_send", description = "Pause the send.",
                parameters(("bulk_send_id" = "$response.body#/bulk_send_id")))),
            ("resume" = (operation_id = "resume_bulk_send", description = "Resume the send.",
                parameters(("bulk_send_id" = "$response.body#/bulk_send_id")))),
        )),
        (status = 200, description = "A dry run: validated, nothing stored.", body = CreateResponse),
        (status = 400, description = "`validation_error`, `invalid_recipients` (with `errors`), `template_not_approved`, `template_not_supported`.", body = ErrorBody),
        (status = 401, description = "`missing_api_key` or `invalid_api_key`.", body = ErrorBody),
        (status = 403, description = "`forbidden`: the key may only read.", body = ErrorBody),
        (status = 429, description = "`rate_limited`: the tenant is over its request budget; `Retry-After` says when to come back.", body = ErrorBody),
        (status = 404, description = "`phone_number_not_found` or `template_not_found`.", body = ErrorBody),
        (status = 409, description = "`idempotency_in_progress`.", body = ErrorBody),
        (status = 413, description = "`payload_too_large`.", body = ErrorBody),
        (status = 422, description = "`idempotency_key_reused`.", body = ErrorBody),
        (status = 503, description = "`too_many_creates` (with `Retry-After`: too many sends are being created at once), `shutting_down` or `service_unavailable`.", body = ErrorBody),
    ),
    security(("api_key" = [])),
)]
pub async fn create(
    Authenticated(principal): Authenticated,
    state: web::Data<AppState>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    if state.draining.load(std::sync::atomic::Ordering::SeqCst) {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "shutting_down",
            "the service is stopping; submit the send again shortly",
        ));
    }
    super::auth::require_send(&principal)?;
    let key = idempotency_key(&req)?;
    // The body is read only once this request holds a create slot: waiting requests keep
    // theirs in the socket, not in memory.
    let _slot = match state.create_gate.enter().await {
        Ok(slot) => slot,
        Err(busy) => {
            // Read to the end and dropped, chunk by chunk: a client still sending its body
            // then reads the 503 on a clean connection instead of a reset.
            discard_body(payload, state.config.body_limit_bytes).await;
            return Ok(busy.response());
        }
    };
    let body = read_body(payload, &req, state.config.body_limit_bytes).await?;
    let tenant_id = principal.tenant_id;
    if let Some(key) = key.clone() {
        let hash = hex::encode(Sha256::digest(&body));
        let now = state.clock.now_ms();
        let claim = state
            .db
            .write(move |conn| idempotency::claim(conn, tenant_id, &key, &hash, now))
            .await?;
        match claim {
            Claim::Claimed => {}
            Claim::Replay { status, body } => {
                let status = StatusCode::from_u16(status).unwrap_or(StatusCode::ACCEPTED);
                return Ok(HttpResponse::build(status)
                    .content_type("application/json")
                    .body(body));
            }
            Claim::InProgress => {
                return Err(ApiError::new(
                    StatusCode::CONFLICT,
                    "idempotency_in_progress",
                    "a request with this Idempotency-Key is still being processed",
                ))
            }
            Claim::Reused => {
                return Err(ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "idempotency_key_reused",
                    "this Idempotency-Key was used with a different request body",
                ))
            }
        }
    }
    let result = create_send(
        &state,
        principal.tenant_id,
        principal.api_key_id,
        key.clone(),
        body,
    )
    .await;
    if let (Err(_), Some(key)) = (&result, key) {
        let released = state
            .db
            .write(move |conn| idempotency::release(conn, tenant_id, &key))
            .await;
        if let Err(err) = released {
            tracing::warn!(error = %err, "Could not release an Idempotency-Key after a refused request.");
        }
    }
    result
}

/// Reads and drops the body, at most `limit` bytes of it.
async fn discard_body(mut payload: web::Payload, limit: usize) {
    use futures_util::StreamExt;
    let mut read = 0;
    while let Some(Ok(chunk)) = payload.next().await {
        read += chunk.len();
        if read > limit {
            break;
        }
    }
}

/// The whole body, refused with 413 past `limit` (by its `Content-Length` before reading).
async fn read_body(
    payload: web::Payload,
    req: &HttpRequest,
    limit: usize,
) -> Result<web::Bytes, ApiError> {
    let announced = req
        .headers()
        .get(actix_web::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<usize>().ok());
    if announced.is_some_and(|n| n > limit) {
        return Err(ApiError::payload_too_large(limit));
    }
    match payload.to_bytes_limited(limit).await {
        Ok(Ok(body)) => Ok(body),
        Ok(Err(err)) => Err(ApiError::validation(format!(
            "the request body could not be read: {err}"
        ))),
        Err(_) => Err(ApiError::payload_too_large(limit)),
    }
}

fn idempotency_key(req: &HttpRequest) -> Result<Option<String>, ApiError> {
    let Some(value) = req.headers().get("Idempotency-Key") else {
        return Ok(None);
    };
    let key = value
        .to_str()
        .ok()
        .map(str::trim)
        .filter(|k| !k.is_empty() && k.len() <= MAX_IDEMPOTENCY_KEY_LEN)
        .ok_or_else(|| {
            ApiError::validation(format!(
                "Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY_LEN} visible ASCII characters"
            ))
        })?;
    Ok(Some(key.to_owned()))
}

async fn create_send(
    state: &web::Data<AppState>,
    tenant_id: i64,
    api_key_id: i64,
    idempotency_key: Option<String>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let max_recipients = state.config.max_recipients;
    let mut request: SendBulkRequest = web::block(move || {
        // Too many recipients is refused before any of them is built: a body within the
        // size limit can list millions, each costing more as a record than as text.
        if let Some(n) = count_recipients(&body) {
            if n > max_recipients as usize {
                return Err(ApiError::validation("the request has invalid fields")
                    .with_errors(vec![too_many_recipients(n, max_recipients)]));
            }
        }
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::validation(format!("invalid JSON body: {e}")))
    })
    .await
    .map_err(|_| ApiError::internal())??;
    let now = state.clock.now_ms();
    check_fields(&request, max_recipients)?;

    let phone_number_id = request.phone_number_id.clone();
    let (number, account, template) = {
        let (name, language) = (request.template_name.clone(), request.language.clone());
        state
            .db
            .run(move |conn| {
                let Some((number, account)) =
                    accounts::tenant_number(conn, tenant_id, &phone_number_id)?
                else {
                    return Ok(Err(ApiError::new(
                        StatusCode::NOT_FOUND,
                        "phone_number_not_found",
                        format!(
                            "phone number {phone_number_id} is not one of this account's numbers"
                        ),
                    )));
                };
                let template = accounts::find_template(conn, account.id, &name, &language)?;
                Ok::<_, StorageError>(Ok((number, account, template)))
            })
            .await??
    };
    let template = check_template(template, &request)?;
    // After the number and the template: of the request's own rules, only these two depend
    // on the moment (the schedule) and on the operator's address policy (the callback), so
    // the OpenAPI document cannot state them; an unknown number is 404 whatever they hold.
    let scheduled_at = parse_schedule(request.scheduled_at.as_deref(), now)?;
    let callback_url = match request.callback_url.as_deref() {
        Some(url) => Some(check_callback_url(url, &state.config.callback_policy())?),
        None => None,
    };
    let spec = TemplateSpec::from_meta(
        Some(&template.parameter_format),
        &serde_json::from_str(&template.components).unwrap_or(Value::Null),
    )
    .map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "template_not_supported",
            format!(
                "template {} cannot be sent by this service: {e}",
                template.name
            ),
        )
    })?;

    let total = request.recipients.len();
    let skip_invalid = request.skip_invalid;
    let recipients = std::mem::take(&mut request.recipients);
    let (validated, spec) = web::block(move || {
        let validated = validate_recipients(recipients, &spec);
        (validated, spec)
    })
    .await
    .map_err(|_| ApiError::internal())?;
    if validated.invalid > 0 && !skip_invalid {
        return Err(invalid_recipients(
            format!(
                "{} of {total} recipients are invalid; nothing was sent (set skip_invalid to drop them)",
                validated.invalid
            ),
            validated.errors,
        ));
    }
    if validated.unique.is_empty() {
        return Err(invalid_recipients(
            "no valid recipient remains".into(),
            validated.errors,
        ));
    }

    let quota = quota_for(state, &account, &number, &validated.unique, now).await?;
    let bulk_send_id = uuid::Uuid::new_v4().to_string();
    let task_id = uuid::Uuid::new_v4().to_string();
    let preview = request.dry_run.then(|| {
        validated
            .unique
            .iter()
            .take(PREVIEW_RECIPIENTS)
            .map(|r| {
                let values = |json: &str| -> BTreeMap<String, String> {
                    serde_json::from_str(json).unwrap_or_default()
                };
                json!({
                    "phone": r.phone.as_str(),
                    "components": spec.render(&values(&r.variables), &values(&r.button_variables)),
                })
            })
            .collect()
    });
    let response = CreateResponse {
        bulk_send_id: bulk_send_id.clone(),
        task_id: task_id.clone(),
        status: "queued",
        template_name: template.name.clone(),
        total_recipients: total,
        unique_recipients: validated.unique.len(),
        estimated_time_minutes: quota.estimate,
        created_at: format_api_time(now),
        whatsapp_phone_number: NumberSummary {
            id: number.id,
            phone_number_id: number.phone_number_id.clone(),
            display_phone_number: number.display_phone_number.clone(),
            verified_name: number.verified_name.clone(),
            quality_rating: number.quality_rating.clone(),
            messaging_limit_tier: number.tier().as_api_str(),
        },
        quota_info: quota.info,
        invalid_recipients: validated.invalid,
        scheduled_at: scheduled_at.map(format_api_time),
        preview,
    };
    let response_body = serde_json::to_string(&response).map_err(|_| ApiError::internal())?;
    if request.dry_run {
        // A dry run stores nothing, its key included (released by the caller on the way out
        // would be wrong: it is not an error), so release it here.
        if let Some(key) = idempotency_key {
            state
                .db
                .write(move |conn| idempotency::release(conn, tenant_id, &key))
                .await?;
        }
        return Ok(HttpResponse::Ok()
            .content_type("application/json")
            .body(response_body));
    }

    let send = NewSend {
        id: bulk_send_id.clone(),
        tenant_id,
        api_key_id,
        phone_number_id: number.id,
        template_id: template.id,
        task_id,
        total_submitted: i32::try_from(total).unwrap_or(i32::MAX),
        invalid_recipients: i32::try_from(validated.invalid).unwrap_or(i32::MAX),
        estimated_time_minutes: quota.estimate,
        callback_url,
        scheduled_at,
        created_at: now,
    };
    let messages: Vec<NewMessage> = validated
        .unique
        .into_iter()
        .map(|r| NewMessage {
            recipient: r.phone.into_string(),
            variables: r.variables,
            button_variables: r.button_variables,
        })
        .collect();
    let due_at = scheduled_at.unwrap_or(now);
    let stored_body = response_body.clone();
    state
        .db
        .write(move |conn| {
            sends::insert_send(conn, &send, messages, due_at)?;
            if let Some(key) = idempotency_key {
                idempotency::complete(conn, tenant_id, &key, 202, &stored_body)?;
            }
            Ok::<_, StorageError>(())
        })
        .await?;
    state.engine.send_created(bulk_send_id);
    Ok(HttpResponse::Accepted()
        .content_type("application/json")
        .body(response_body))
}

fn too_many_recipients(n: usize, max_recipients: u32) -> Value {
    json!({
        "field": "recipients",
        "reason": format!("lists {n} recipients; at most {max_recipients} are allowed per request"),
    })
}

/// How many items the body's `recipients` array has, counted without building them; `None`
/// when the body is not an object with such an array (the full parse reports that).
fn count_recipients(body: &[u8]) -> Option<usize> {
    struct Count(usize);
    impl<'de> Deserialize<'de> for Count {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Count, D::Error> {
            struct Items;
            impl<'de> serde::de::Visitor<'de> for Items {
                type Value = Count;
                fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                    f.write_str("an array")
                }
                fn visit_seq<A: serde::de::SeqAccess<'de>>(
                    self,
                    mut seq: A,
                ) -> Result<Count, A::Error> {
                    let mut n = 0;
                    while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {
                        n += 1;
                    }
                    Ok(Count(n))
                }
            }
            d.deserialize_seq(Items)
        }
    }
    #[derive(Deserialize)]
    struct Counted {
        recipients: Count,
    }
    serde_json::from_slice::<Counted>(body)
        .ok()
        .map(|c| c.recipients.0)
}

fn check_fields(request: &SendBulkRequest, max_recipients: u32) -> Result<(), ApiError> {
    let mut errors = Vec::new();
    for (field, value) in [
        ("phone_number_id", &request.phone_number_id),
        ("template_name", &request.template_name),
        ("language", &request.language),
    ] {
        if value.trim().is_empty() {
            errors.push(json!({"field": field, "reason": "must not be empty"}));
        } else if value.chars().count() > MAX_TEXT_FIELD_CHARS {
            errors.push(json!({"field": field,
                "reason": format!("is longer than {MAX_TEXT_FIELD_CHARS} characters")}));
        } else if value.contains(char::is_control) {
            // Meta's ids, names and locales have none; PostgreSQL cannot even compare a NUL.
            errors.push(json!({"field": field, "reason": "must not contain control characters"}));
        }
    }
    let n = request.recipients.len();
    if n == 0 {
        errors.push(json!({"field": "recipients", "reason": "must list at least one recipient"}));
    } else if n > max_recipients as usize {
        errors.push(too_many_recipients(n, max_recipients));
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ApiError::validation("the request has invalid fields").with_errors(errors))
    }
}

fn parse_schedule(value: Option<&str>, now: i64) -> Result<Option<i64>, ApiError> {
    let Some(value) = value else {
        return Ok(None);
    };
    let at = chrono::DateTime::parse_from_rfc3339(value)
        .map_err(|_| {
            ApiError::validation("scheduled_at must be an ISO 8601 timestamp with a time zone")
                .with_errors(vec![json!({"field": "scheduled_at", "value": value,
                    "reason": "not an ISO 8601 timestamp (e.g. 2025-11-16T21:30:00Z)"})])
        })?
        .timestamp_millis();
    if at <= now {
        return Err(
            ApiError::validation("scheduled_at must be in the future").with_errors(vec![
                json!({"field": "scheduled_at", "value": value, "reason": "is not in the future"}),
            ]),
        );
    }
    if at > now + MAX_SCHEDULE_AHEAD_MS {
        return Err(ApiError::validation("scheduled_at must be within 30 days")
            .with_errors(vec![json!({"field": "scheduled_at", "value": value, "reason": "is more than 30 days ahead"})]));
    }
    Ok(Some(at))
}

/// `callback_url` must reach the public internet (see `domain::egress`): https, a host that
/// is not an internal name, an address that is not loopback, private, link-local, … (unless
/// the operator allowed it). Plain http is allowed only to an allowed loopback receiver.
fn check_callback_url(value: &str, policy: &CallbackPolicy) -> Result<String, ApiError> {
    policy
        .check_url(value)
        .map(|(url, _)| url.to_string())
        .map_err(|refused| {
            let detail = match refused {
                TargetRefused::NotUrl | TargetRefused::NotHttps | TargetRefused::NoHost => {
                    "callback_url must be an https URL"
                }
                _ => "callback_url must be a public https URL",
            };
            let shown: String = value.chars().take(200).collect();
            ApiError::validation(detail).with_errors(vec![json!({
                "field": "callback_url", "value": shown, "reason": refused.to_string(),
            })])
        })
}

fn check_template(
    template: Option<Template>,
    request: &SendBulkRequest,
) -> Result<Template, ApiError> {
    let Some(template) = template else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "template_not_found",
            format!(
                "template {} does not exist in language {} for this number's account",
                request.template_name, request.language
            ),
        ));
    };
    if template.status != "APPROVED" {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "template_not_approved",
            format!(
                "template {} ({}) is {}, not APPROVED",
                template.name, template.language, template.status
            ),
        ));
    }
    Ok(template)
}

fn invalid_recipients(detail: String, errors: Vec<Value>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "invalid_recipients", detail).with_errors(errors)
}

/// Validates every recipient: phone normalised to E.164, variables and button variables
/// exactly as the template needs. Duplicates (after normalisation) are dropped, the first
/// occurrence winning. Each recipient is let go once checked.
fn validate_recipients(recipients: Vec<RawRecipient>, spec: &TemplateSpec) -> Validated {
    let parsed_phones = parse_phones(&recipients);
    let mut seen = HashSet::with_capacity(recipients.len());
    let mut unique = Vec::with_capacity(recipients.len());
    let mut invalid = 0;
    let mut errors = Vec::new();
    let report = |errors: &mut Vec<Value>, problem: Value| {
        if errors.len() <= MAX_ERRORS {
            errors.push(problem);
        }
    };
    for ((index, recipient), parsed) in recipients.into_iter().enumerate().zip(parsed_phones) {
        let mut failed = false;
        let RawRecipient::Object {
            phone,
            variables,
            button_variables,
        } = recipient
        else {
            report(
                &mut errors,
                json!({"index": index, "field": "recipient", "reason": "must be an object with a phone"}),
            );
            invalid += 1;
            continue;
        };
        let phone = match (phone, parsed) {
            (Text::Is(_), Ok(phone)) => Some(phone),
            (Text::Is(raw), Err(e)) => {
                report(
                    &mut errors,
                    json!({"index": index, "field": "phone", "value": truncate(&raw), "reason": e.reason()}),
                );
                None
            }
            (Text::Not(kind), _) => {
                report(
                    &mut errors,
                    json!({"index": index, "field": "phone", "reason": format!("must be a string, not {}", kind.name())}),
                );
                None
            }
            (Text::Missing, _) => {
                report(
                    &mut errors,
                    json!({"index": index, "field": "phone", "reason": "is required"}),
                );
                None
            }
        };
        let variables = string_map(variables, "variables", index, &mut |p| {
            failed = true;
            report(&mut errors, p)
        });
        let buttons = string_map(button_variables, "button_variables", index, &mut |p| {
            failed = true;
            report(&mut errors, p)
        });
        if let (Some(variables), Some(buttons)) = (&variables, &buttons) {
            if let Err(problems) = spec.validate(variables, buttons) {
                failed = true;
                for p in problems {
                    report(
                        &mut errors,
                        json!({"index": index, "field": p.field, "reason": p.reason}),
                    );
                }
            }
        }
        match (phone, variables, buttons) {
            (Some(phone), Some(variables), Some(button_variables)) if !failed => {
                if seen.insert(phone.clone()) {
                    let stored = |values: &BTreeMap<String, String>| {
                        serde_json::to_string(values).unwrap_or_else(|_| "{}".into())
                    };
                    unique.push(ValidRecipient {
                        phone,
                        variables: stored(&variables),
                        button_variables: stored(&button_variables),
                    });
                }
            }
            _ => invalid += 1,
        }
    }
    Validated {
        unique,
        invalid,
        errors,
    }
}

/// Every recipient's phone, parsed on all cores (the numbering-plan check is the costly part
/// of validating a large send). Entries without a string phone get `Empty`, unused.
fn parse_phones(recipients: &[RawRecipient]) -> Vec<Result<E164, PhoneError>> {
    let parse = |chunk: &[RawRecipient]| -> Vec<Result<E164, PhoneError>> {
        chunk
            .iter()
            .map(|r| r.phone().map_or(Err(PhoneError::Empty), E164::parse))
            .collect()
    };
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .min(8);
    if threads < 2 || recipients.len() < 2_000 {
        return parse(recipients);
    }
    let size = recipients.len().div_ceil(threads);
    std::thread::scope(|scope| {
        let handles: Vec<_> = recipients
            .chunks(size)
            .map(|chunk| (chunk, scope.spawn(move || parse(chunk))))
            .collect();
        handles
            .into_iter()
            // A parser thread cannot panic (E164::parse never does); if one did, its share is
            // parsed here again so every index keeps its answer.
            .flat_map(|(chunk, h)| h.join().unwrap_or_else(|_| parse(chunk)))
            .collect()
    })
}

/// Reads an optional object of strings (in key order, as a JSON object reader would give
/// them); reports each problem through `report`.
fn string_map(
    value: Strings,
    field: &str,
    index: usize,
    report: &mut dyn FnMut(Value),
) -> Option<BTreeMap<String, String>> {
    let entries = match value {
        Strings::None => return Some(BTreeMap::new()),
        Strings::Not(kind) => {
            report(json!({"index": index, "field": field,
                "reason": format!("must be an object of strings, not {}", kind.name())}));
            return None;
        }
        Strings::Entries(entries) => entries,
    };
    let mut out = BTreeMap::new();
    let mut wrong = BTreeMap::new();
    for (key, value) in entries {
        match value {
            Ok(text) => {
                out.insert(key, text);
            }
            Err(kind) => {
                wrong.insert(key, kind);
            }
        }
    }
    for (key, kind) in &wrong {
        report(
            json!({"index": index, "field": format!("{field}.{}", truncate(key)),
            "reason": format!("must be a string, not {}", kind.name())}),
        );
    }
    wrong.is_empty().then_some(out)
}

/// At most 64 characters of user input echoed back in an error.
fn truncate(s: &str) -> String {
    s.chars().take(64).collect()
}

/// Quota and ETA of a new send.
struct QuotaEstimate {
    info: QuotaInfo,
    estimate: f64,
}

async fn quota_for(
    state: &web::Data<AppState>,
    account: &BusinessAccount,
    number: &PhoneNumber,
    unique: &[ValidRecipient],
    now: i64,
) -> Result<QuotaEstimate, ApiError> {
    let tier = number.tier();
    let portfolio = account.portfolio_id.clone();
    let recipients: Vec<String> = unique.iter().map(|r| r.phone.as_str().to_owned()).collect();
    let since = now - WINDOW_MS;
    let count = recipients.len();
    let (in_window, expiries) = state
        .db
        .run(move |conn| {
            let in_window = if tier == Tier::Unlimited {
                0
            } else {
                crate::storage::quota::recipients_in_window(conn, &portfolio, &recipients, since)?
                    .len()
            };
            let expiries = crate::storage::quota::window_expiries(conn, &portfolio, since)?;
            Ok::<_, StorageError>((in_window, expiries))
        })
        .await?;
    let needed = (count - in_window) as u64;
    let window = QuotaWindow {
        tier,
        expiries_ms: &expiries,
        now_ms: now,
    };
    let mps = match number.effective_mps() {
        0 => f64::from(number.throughput_mps.max(1)),
        n => f64::from(n),
    };
    let estimate = estimate_minutes(count as u64, mps, &window, needed).unwrap_or(0.0);
    Ok(QuotaEstimate {
        info: window.quota_info(needed),
        estimate,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phones_parsed_in_parallel_keep_their_order() {
        let recipients: Vec<RawRecipient> = (0..5_001)
            .map(|i| match i % 3 {
                0 => json!({"phone": format!("+54911{:08}", 30_000_000 + i)}),
                1 => json!({"phone": "not a phone"}),
                _ => json!({"variables": {}}),
            })
            .map(|r| serde_json::from_value(r).unwrap())
            .collect();
        let parsed = parse_phones(&recipients);
        assert_eq!(parsed.len(), recipients.len());
        for (i, result) in parsed.iter().enumerate() {
            match i % 3 {
                0 => assert_eq!(
                    result.as_ref().unwrap().as_str(),
                    format!("+54911{:08}", 30_000_000 + i)
                ),
                _ => assert!(result.is_err()),
            }
        }
    }

    #[test]
    fn recipients_are_counted_without_being_built() {
        let body =
            br#"{"template_name": "x", "recipients": [{"phone": "+1"}, 5, null, [[]]], "z": {}}"#;
        assert_eq!(count_recipients(body), Some(4));
        assert_eq!(count_recipients(br#"{"recipients": []}"#), Some(0));
        for not_counted in [
            &br#"{"recipients": "x"}"#[..],
            br#"{"recipients": [1,]}"#,
            br#"{"phone_number_id": "1"}"#,
            br#"[1, 2]"#,
            b"",
        ] {
            assert_eq!(count_recipients(not_counted), None);
        }
    }
}
