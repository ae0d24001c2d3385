//! The status object (API.md): how a bulk send looks to clients. The HTTP answers
//! (`GET …/bulk-sends/{id}/`, the list, cancel/pause/resume) and the `data` of client
//! callback events ([`super::callbacks`]) are the same rendering of a [`SendDetail`], so a
//! receiver sees exactly what a status read would have shown at that moment. It lives
//! beside the storage it reads because callback events are rendered inside the write
//! transaction that changes the send; its OpenAPI schema (`ToSchema`) is used by `http`.

use serde::Serialize;
use utoipa::ToSchema;

use super::sends::SendDetail;
use crate::clock::format_api_time;

#[derive(Serialize, ToSchema)]
pub struct TemplateRef {
    id: i64,
    template_name: String,
    language: String,
    status: String,
}

#[derive(Serialize, ToSchema)]
pub struct NumberRef {
    id: i64,
    display_phone_number: String,
    verified_name: String,
}

/// The API key that created the send.
#[derive(Serialize, ToSchema)]
pub struct KeyRef {
    id: i64,
    name: String,
}

/// The status object of a bulk send. List items leave out `estimated_time_minutes`,
/// `started_at` and `created_by`.
#[derive(Serialize, ToSchema)]
pub struct StatusBody {
    id: String,
    /// QUEUED, PROCESSING, COMPLETED, PARTIAL, FAILED or CANCELLED.
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
    #[schema(value_type = Option<String>)]
    started_at: Option<Option<String>>,
    #[schema(required)]
    completed_at: Option<String>,
    created_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    created_by: Option<KeyRef>,
    task_id: String,
    unique_recipients: u64,
    cancelled_count: u64,
    /// Recipients never sent because they opted out (*ext*).
    suppressed_count: u64,
    paused: bool,
    #[schema(required)]
    pause_reason: Option<String>,
    #[schema(required)]
    scheduled_at: Option<String>,
}

/// The status object of a send: `full` for the single-send answers and callback events,
/// not for list items.
pub fn status_body(detail: SendDetail, full: bool) -> StatusBody {
    let send = detail.send;
    let counters = send.counters();
    let status = send.status();
    let (template, phone, key) = (detail.template, detail.phone, detail.api_key);
    StatusBody {
        id: send.id,
        status: status.as_str(),
        template: TemplateRef {
            id: template.id,
            template_name: template.name,
            language: template.language,
            status: template.status,
        },
        phone_number: NumberRef {
            id: phone.id,
            display_phone_number: phone.display_phone_number,
            verified_name: phone.verified_name,
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
            id: key.id,
            name: key.name,
        }),
        task_id: send.task_id,
        unique_recipients: u64::try_from(send.unique_recipients).unwrap_or(0),
        cancelled_count: counters.cancelled_count(),
        suppressed_count: counters.suppressed_count(),
        paused: send.paused,
        pause_reason: send.pause_reason,
        scheduled_at: send.scheduled_at.map(format_api_time),
    }
}
