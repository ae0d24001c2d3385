//! `POST /api/v1/meta-templates/send-bulk/`: validate everything, store the send and all its
//! messages in one transaction, answer 202 at once; the engine takes it from there.
//!
//! Order of work: the `Idempotency-Key` is claimed first (a replay answers before anything
//! else is looked at), then the body is parsed and every recipient validated off the async
//! executor (phone parsing is CPU work), then the tenant's suppression list is looked up once
//! for all of them (recipients it covers for the template's category are stored as
//! `suppressed`, never sent, and left out of the quota and the ETA), then the send is stored
//! together with the key's answer. A refused request releases its key: nothing was created, the key may be reused.
//!
//! `request` reads the body and checks the request's own fields; recipients are checked by
//! `http::recipients` (over `domain::recipients`); `response` is the answer's body, with the
//! quota and ETA it reports.

mod request;
mod response;

use std::collections::BTreeMap;

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::auth::Authenticated;
use super::error::{ApiError, ErrorBody, ErrorCode, ErrorItem};
use super::openapi::SendKeyErrors;
use super::recipients;
use super::state::AppState;
use crate::clock::format_api_time;
use crate::domain::template::TemplateSpec;
use crate::storage::accounts::{self, Template};
use crate::storage::idempotency::{self, Claim};
use crate::storage::sends::{self, NewMessage, NewSend};
use crate::storage::suppressions;
use crate::storage::StorageError;
use request::{
    check_callback_url, check_fields, count_recipients, discard_body, idempotency_key,
    parse_schedule, read_body, too_many_recipients, SendBulkRequest,
};
use response::{quota_for, CreateResponse, CreatedStatus, NumberSummary, PreviewItem};

/// Recipients shown in a dry run's preview.
const PREVIEW_RECIPIENTS: usize = 5;

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
        SendKeyErrors,
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
            ErrorCode::ShuttingDown,
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
                    ErrorCode::IdempotencyInProgress,
                    "a request with this Idempotency-Key is still being processed",
                ))
            }
            Claim::Reused => {
                return Err(ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    ErrorCode::IdempotencyKeyReused,
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
                        ErrorCode::PhoneNumberNotFound,
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
            ErrorCode::TemplateNotSupported,
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
        let validated = recipients::validate(recipients, &spec);
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

    // Recipients the tenant suppressed for this template's category: one lookup against the
    // suppression list for all of them; they are stored as `suppressed` and never sent.
    let category = template.category.clone();
    let (validated, suppressed) = state
        .db
        .run(move |conn| {
            let phones: Vec<&str> = validated.unique.iter().map(|r| r.phone.as_str()).collect();
            let found = suppressions::suppressed_among(conn, tenant_id, &category, &phones)?;
            Ok::<_, StorageError>((validated, found))
        })
        .await?;
    let sendable: Vec<String> = validated
        .unique
        .iter()
        .map(|r| r.phone.as_str())
        .filter(|phone| !suppressed.contains_key(*phone))
        .map(str::to_owned)
        .collect();
    let quota = quota_for(state, &account, &number, sendable, now).await?;
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
                PreviewItem {
                    phone: r.phone.as_str().to_owned(),
                    components: spec.render(&values(&r.variables), &values(&r.button_variables)),
                }
            })
            .collect()
    });
    let response = CreateResponse {
        bulk_send_id: bulk_send_id.clone(),
        task_id: task_id.clone(),
        status: CreatedStatus::Queued,
        template_name: template.name.clone(),
        total_recipients: total,
        unique_recipients: validated.unique.len(),
        estimated_time_minutes: quota.estimate,
        created_at: format_api_time(now),
        whatsapp_phone_number: NumberSummary::of(&number),
        quota_info: quota.info,
        invalid_recipients: validated.invalid,
        suppressed_recipients: suppressed.len(),
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
            suppressed: suppressed
                .get(r.phone.as_str())
                .map(suppressions::Listed::message_text),
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

fn check_template(
    template: Option<Template>,
    request: &SendBulkRequest,
) -> Result<Template, ApiError> {
    let Some(template) = template else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            ErrorCode::TemplateNotFound,
            format!(
                "template {} does not exist in language {} for this number's account",
                request.template_name, request.language
            ),
        ));
    };
    if template.status != "APPROVED" {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            ErrorCode::TemplateNotApproved,
            format!(
                "template {} ({}) is {}, not APPROVED",
                template.name, template.language, template.status
            ),
        ));
    }
    Ok(template)
}

fn invalid_recipients(detail: String, errors: Vec<ErrorItem>) -> ApiError {
    ApiError::new(
        StatusCode::BAD_REQUEST,
        ErrorCode::InvalidRecipients,
        detail,
    )
    .with_errors(errors)
}
