//! The answer to a send-bulk request: the body of a created send (202) or of a dry run
//! (200, with its preview), and the quota and ETA it reports.

use actix_web::web;
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use super::super::error::ApiError;
use super::super::state::AppState;
use crate::domain::eta::{estimate_minutes, QuotaInfo, QuotaWindow, WINDOW_MS};
use crate::domain::tier::Tier;
use crate::storage::accounts::{BusinessAccount, PhoneNumber};
use crate::storage::StorageError;

/// The answer to a created send (202), or to a dry run (200, with `preview`).
#[derive(Serialize, ToSchema)]
pub(super) struct CreateResponse {
    pub bulk_send_id: String,
    pub task_id: String,
    pub status: CreatedStatus,
    pub template_name: String,
    pub total_recipients: usize,
    pub unique_recipients: usize,
    pub estimated_time_minutes: f64,
    pub created_at: String,
    pub whatsapp_phone_number: NumberSummary,
    pub quota_info: QuotaInfo,
    pub invalid_recipients: usize,
    /// Unique recipients suppressed for the template's category (they opted out): stored as
    /// `suppressed` messages, never sent, not counted in `quota_needed` (*ext*).
    pub suppressed_recipients: usize,
    #[schema(required)]
    pub scheduled_at: Option<String>,
    /// Dry runs only: the rendered Meta `template.components` of the first 5 unique recipients.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub preview: Option<Vec<PreviewItem>>,
}

/// The status of a send just created: always `queued` (lowercase, as the hosted API answers).
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub(super) enum CreatedStatus {
    Queued,
}

/// The number a send goes out from.
#[derive(Serialize, ToSchema)]
pub(super) struct NumberSummary {
    id: i64,
    phone_number_id: String,
    display_phone_number: String,
    verified_name: String,
    quality_rating: String,
    messaging_limit_tier: Tier,
}

impl NumberSummary {
    pub fn of(number: &PhoneNumber) -> NumberSummary {
        NumberSummary {
            id: number.id,
            phone_number_id: number.phone_number_id.clone(),
            display_phone_number: number.display_phone_number.clone(),
            verified_name: number.verified_name.clone(),
            quality_rating: number.quality_rating.clone(),
            messaging_limit_tier: number.tier(),
        }
    }
}

/// One recipient of a dry run's preview: what Meta would be sent for it.
#[derive(Serialize, ToSchema)]
pub(super) struct PreviewItem {
    /// E.164.
    pub phone: String,
    /// The rendered Meta `template.components`.
    #[schema(value_type = Vec<Object>)]
    pub components: Value,
}

/// Quota and ETA of a new send.
pub(super) struct QuotaEstimate {
    pub info: QuotaInfo,
    pub estimate: f64,
}

pub(super) async fn quota_for(
    state: &web::Data<AppState>,
    account: &BusinessAccount,
    number: &PhoneNumber,
    recipients: Vec<String>,
    now: i64,
) -> Result<QuotaEstimate, ApiError> {
    let tier = number.tier();
    let portfolio = account.portfolio_id.clone();
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
