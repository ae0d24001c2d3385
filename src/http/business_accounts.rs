//! `GET /api/v1/business-accounts/`: the tenant's WhatsApp Business Accounts, their numbers
//! (with the portfolio's quota in the moving 24 h window) and their APPROVED templates with
//! the variables a send must give. camelCase, as the hosted API answers.

use std::collections::HashMap;

use actix_web::{web, HttpResponse};
use serde::Serialize;
use utoipa::ToSchema;

use super::auth::Authenticated;
use super::error::ApiError;
use super::openapi::KeyErrors;
use super::state::AppState;
use crate::domain::eta::WINDOW_MS;
use crate::domain::template::{TemplateSpec, VariableInfo};
use crate::domain::tier::Tier;
use crate::storage::accounts::{self, PhoneNumber, Template};
use crate::storage::StorageError;

/// The tenant's WhatsApp Business Accounts.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = BusinessAccountsBody)]
struct Body {
    company_name: String,
    api_key_name: String,
    business_accounts: Vec<AccountBody>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct AccountBody {
    business_account_id: i64,
    waba_id: String,
    business_name: String,
    phone_numbers: Vec<NumberBody>,
    templates: Vec<TemplateBody>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct NumberBody {
    id: i64,
    phone_number_id: String,
    display_phone_number: String,
    verified_name: String,
    is_primary: bool,
    messaging_limit_tier: Tier,
    quality_rating: String,
    throughput_mps: u32,
    quota: QuotaBody,
}

/// A portfolio's use of its messaging limit, as seen from one of its numbers. `null`
/// limits mean unlimited.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct QuotaBody {
    #[schema(required)]
    daily_limit: Option<u32>,
    unique_numbers_sent24h: i64,
    #[schema(required)]
    remaining: Option<i64>,
    usage_percentage: f64,
    can_send: bool,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct TemplateBody {
    id: i64,
    name: String,
    language: String,
    category: String,
    status: String,
    variables: Vec<VariableInfo>,
}

/// `GET /api/v1/business-accounts/`.
#[utoipa::path(
    get,
    path = "/api/v1/business-accounts/",
    tag = "business accounts",
    operation_id = "business_accounts",
    responses(
        (status = 200, description = "The tenant's WABAs, their numbers with quota, and their APPROVED templates.", body = Body),
        KeyErrors,
    ),
    security(("api_key" = [])),
)]
pub async fn list(
    Authenticated(principal): Authenticated,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let since = state.clock.now_ms() - WINDOW_MS;
    let tenant_id = principal.tenant_id;
    let (listed, usage) = state
        .db
        .run(move |conn| {
            let listed = accounts::tenant_accounts(conn, tenant_id)?;
            let mut usage = HashMap::new();
            for (account, _, _) in &listed {
                if !usage.contains_key(&account.portfolio_id) {
                    let used = accounts::window_usage(conn, &account.portfolio_id, since)?;
                    usage.insert(account.portfolio_id.clone(), used);
                }
            }
            Ok::<_, StorageError>((listed, usage))
        })
        .await?;
    let business_accounts = listed
        .into_iter()
        .map(|(account, numbers, templates)| {
            let used = usage.get(&account.portfolio_id).copied().unwrap_or(0);
            AccountBody {
                business_account_id: account.id,
                waba_id: account.waba_id,
                business_name: account.business_name,
                phone_numbers: numbers.iter().map(|n| number_body(n, used)).collect(),
                templates: templates.into_iter().map(template_body).collect(),
            }
        })
        .collect();
    Ok(HttpResponse::Ok().json(Body {
        company_name: principal.tenant_name,
        api_key_name: principal.api_key_name,
        business_accounts,
    }))
}

fn number_body(n: &PhoneNumber, used: i64) -> NumberBody {
    let tier = n.tier();
    let limit = tier.limit();
    let quota = match limit {
        Some(limit) => {
            let remaining = (i64::from(limit) - used).max(0);
            QuotaBody {
                daily_limit: Some(limit),
                unique_numbers_sent24h: used,
                remaining: Some(remaining),
                usage_percentage: round1(used as f64 * 100.0 / f64::from(limit.max(1))),
                can_send: remaining > 0 && !n.paused,
            }
        }
        None => QuotaBody {
            daily_limit: None,
            unique_numbers_sent24h: used,
            remaining: None,
            usage_percentage: 0.0,
            can_send: !n.paused,
        },
    };
    NumberBody {
        id: n.id,
        phone_number_id: n.phone_number_id.clone(),
        display_phone_number: n.display_phone_number.clone(),
        verified_name: n.verified_name.clone(),
        is_primary: n.is_primary,
        messaging_limit_tier: tier,
        quality_rating: n.quality_rating.clone(),
        throughput_mps: n.effective_mps(),
        quota,
    }
}

fn template_body(t: Template) -> TemplateBody {
    let variables = serde_json::from_str(&t.components)
        .ok()
        .and_then(|components| TemplateSpec::from_meta(Some(&t.parameter_format), &components).ok())
        .map(|spec| spec.variables_info())
        .unwrap_or_else(|| {
            tracing::warn!(
                template_id = t.id,
                "A stored template's components could not be read."
            );
            Vec::new()
        });
    TemplateBody {
        id: t.id,
        name: t.name,
        language: t.language,
        category: t.category,
        status: t.status,
        variables,
    }
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}
