//! WhatsApp Business Accounts, their phone numbers and templates, as last synced from the
//! Graph API; the operator overrides of a number's pacing; and the template and number
//! changes Meta's webhooks report between syncs.

use diesel::prelude::*;

use super::schema::{business_accounts, phone_numbers, quota_ledger, templates};
use super::{write_transaction, DbConnection, StorageError};
use crate::domain::secret_box::{Purpose, SecretKey};
use crate::domain::tier::{ThroughputLevel, Tier};
use crate::meta::client::{PhoneNumberInfo, TemplateInfo};
use crate::with_backend;

/// Status given to a template that Meta no longer lists.
pub const GONE_TEMPLATE_STATUS: &str = "DELETED";

/// A WABA registered with `waba add`.
#[derive(Clone, Queryable, Selectable)]
#[diesel(table_name = business_accounts)]
pub struct BusinessAccount {
    pub id: i64,
    pub tenant_id: i64,
    pub waba_id: String,
    pub business_name: String,
    /// Messaging limits are shared by every number of a portfolio.
    pub portfolio_id: String,
    /// The system-user token, encrypted (`storage::secrets::open_access_token`); never
    /// printed (see the `Debug` impl).
    pub access_token: String,
    pub synced_at: Option<i64>,
    pub created_at: i64,
    /// The id of the key that encrypted `access_token`; `None` while it is still in plain
    /// text (a row from before encryption, until the start encrypts it).
    pub access_token_key_id: Option<String>,
}

impl std::fmt::Debug for BusinessAccount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BusinessAccount")
            .field("id", &self.id)
            .field("tenant_id", &self.tenant_id)
            .field("waba_id", &self.waba_id)
            .field("portfolio_id", &self.portfolio_id)
            .field("access_token", &"[REDACTED]")
            .finish()
    }
}

/// A sender phone number.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = phone_numbers)]
pub struct PhoneNumber {
    pub id: i64,
    pub business_account_id: i64,
    /// Meta's id of the number (the API's `phone_number_id`).
    pub phone_number_id: String,
    pub display_phone_number: String,
    pub verified_name: String,
    pub quality_rating: String,
    /// Meta's form (`TIER_2K`, …), so a round trip keeps `TIER_NOT_SET` apart.
    pub messaging_limit_tier: String,
    pub throughput_level: String,
    /// Meta's messages per second for the level.
    pub throughput_mps: i32,
    /// `number set --throughput-mps`: the operator's cap (or lift, against the simulator).
    pub override_mps: Option<i32>,
    /// Paused by the operator or by the engine (spam limit, account restriction).
    pub paused: bool,
    pub pause_reason: Option<String>,
    pub is_primary: bool,
    pub created_at: i64,
    pub updated_at: i64,
}

impl PhoneNumber {
    /// The messaging-limit tier.
    pub fn tier(&self) -> Tier {
        self.messaging_limit_tier.parse().unwrap_or(Tier::NotSet)
    }

    /// Messages per second the limiter grants: the override when set, else Meta's level.
    pub fn effective_mps(&self) -> u32 {
        let mps = self.override_mps.unwrap_or(self.throughput_mps);
        u32::try_from(mps).unwrap_or(0)
    }
}

/// A message template of a WABA.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = templates)]
pub struct Template {
    pub id: i64,
    pub business_account_id: i64,
    pub meta_template_id: String,
    pub name: String,
    pub language: String,
    pub category: String,
    pub status: String,
    pub parameter_format: String,
    /// Meta's `components` JSON, as listed.
    pub components: String,
    pub created_at: i64,
    pub updated_at: i64,
    /// The time (unix ms) of the newest Meta event (webhook or sync read) behind `status`;
    /// `None` until one is known. An event older than this is stale and not applied.
    pub status_event_at: Option<i64>,
}

impl Template {
    /// Whether a status event at `event_at_ms` is older than the one behind the stored status
    /// (Meta may deliver template events late or reordered). Events without a time, and events
    /// as old as the stored one (Meta's times are whole seconds), are applied in arrival order.
    pub fn is_stale_event(&self, event_at_ms: Option<i64>) -> bool {
        matches!((event_at_ms, self.status_event_at), (Some(at), Some(last)) if at < last)
    }
}

/// Why an account operation could not be done.
#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    #[error("there is no tenant with id {0}")]
    UnknownTenant(i64),
    #[error("WABA {0} is registered to another tenant")]
    OwnedByAnotherTenant(String),
    #[error("there is no phone number with phone_number_id {0}")]
    UnknownNumber(String),
    #[error(transparent)]
    Storage(#[from] StorageError),
}

impl From<diesel::result::Error> for AccountError {
    fn from(e: diesel::result::Error) -> Self {
        AccountError::Storage(StorageError::Query(e))
    }
}

/// What one sync wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct SyncCounts {
    pub phone_numbers: usize,
    pub templates: usize,
    pub templates_gone: usize,
}

/// Stores a WABA with everything just read from Meta, in one transaction: the account
/// (created or refreshed), its numbers (upserted; overrides and pauses kept) and its
/// templates (upserted; ones Meta no longer lists are marked `DELETED`).
#[allow(clippy::too_many_arguments)]
pub fn store_sync(
    conn: &mut DbConnection,
    tenant_id: i64,
    waba_id: &str,
    business_name: &str,
    portfolio_id: &str,
    access_token: &str,
    key: &SecretKey,
    numbers: &[PhoneNumberInfo],
    listed_templates: &[TemplateInfo],
    now_ms: i64,
) -> Result<(i64, SyncCounts), AccountError> {
    let sealed_token = key.seal(Purpose::AccessToken, access_token);
    let access_token = sealed_token.as_str();
    write_transaction(conn, |conn| {
        let tenant_exists: i64 = super::schema::tenants::table
            .filter(super::schema::tenants::id.eq(tenant_id))
            .count()
            .get_result(conn)?;
        if tenant_exists == 0 {
            return Err(AccountError::UnknownTenant(tenant_id));
        }
        let existing: Option<(i64, i64)> = business_accounts::table
            .filter(business_accounts::waba_id.eq(waba_id))
            .select((business_accounts::id, business_accounts::tenant_id))
            .first(conn)
            .optional()?;
        let account_id = match existing {
            Some((_, owner)) if owner != tenant_id => {
                return Err(AccountError::OwnedByAnotherTenant(waba_id.to_owned()))
            }
            Some((id, _)) => {
                diesel::update(business_accounts::table.find(id))
                    .set((
                        business_accounts::business_name.eq(business_name),
                        business_accounts::portfolio_id.eq(portfolio_id),
                        business_accounts::access_token.eq(access_token),
                        business_accounts::access_token_key_id.eq(key.id()),
                        business_accounts::synced_at.eq(Some(now_ms)),
                    ))
                    .execute(conn)?;
                id
            }
            None => {
                let insert = diesel::insert_into(business_accounts::table).values((
                    business_accounts::tenant_id.eq(tenant_id),
                    business_accounts::waba_id.eq(waba_id),
                    business_accounts::business_name.eq(business_name),
                    business_accounts::portfolio_id.eq(portfolio_id),
                    business_accounts::access_token.eq(access_token),
                    business_accounts::access_token_key_id.eq(key.id()),
                    business_accounts::synced_at.eq(Some(now_ms)),
                    business_accounts::created_at.eq(now_ms),
                ));
                with_backend!(conn, |c| insert
                    .returning(business_accounts::id)
                    .get_result::<i64>(c))?
            }
        };
        let mut counts = SyncCounts::default();
        store_numbers(conn, account_id, numbers, now_ms)?;
        counts.phone_numbers = numbers.len();
        counts.templates_gone = store_templates(conn, account_id, listed_templates, now_ms)?;
        counts.templates = listed_templates.len();
        Ok((account_id, counts))
    })
}

fn store_numbers(
    conn: &mut DbConnection,
    account_id: i64,
    numbers: &[PhoneNumberInfo],
    now_ms: i64,
) -> Result<(), AccountError> {
    let has_primary: i64 = phone_numbers::table
        .filter(phone_numbers::business_account_id.eq(account_id))
        .filter(phone_numbers::is_primary.eq(true))
        .count()
        .get_result(conn)?;
    let mut need_primary = has_primary == 0;
    for n in numbers {
        let mps = i32::try_from(n.throughput.mps()).unwrap_or(i32::MAX);
        let updated =
            diesel::update(phone_numbers::table.filter(phone_numbers::phone_number_id.eq(&n.id)))
                .set((
                    phone_numbers::business_account_id.eq(account_id),
                    phone_numbers::display_phone_number.eq(&n.display_phone_number),
                    phone_numbers::verified_name.eq(&n.verified_name),
                    phone_numbers::quality_rating.eq(&n.quality_rating),
                    phone_numbers::messaging_limit_tier.eq(n.tier.as_meta_str()),
                    phone_numbers::throughput_level.eq(n.throughput.as_str()),
                    phone_numbers::throughput_mps.eq(mps),
                    phone_numbers::updated_at.eq(now_ms),
                ))
                .execute(conn)?;
        if updated == 0 {
            diesel::insert_into(phone_numbers::table)
                .values((
                    phone_numbers::business_account_id.eq(account_id),
                    phone_numbers::phone_number_id.eq(&n.id),
                    phone_numbers::display_phone_number.eq(&n.display_phone_number),
                    phone_numbers::verified_name.eq(&n.verified_name),
                    phone_numbers::quality_rating.eq(&n.quality_rating),
                    phone_numbers::messaging_limit_tier.eq(n.tier.as_meta_str()),
                    phone_numbers::throughput_level.eq(n.throughput.as_str()),
                    phone_numbers::throughput_mps.eq(mps),
                    phone_numbers::is_primary.eq(need_primary),
                    phone_numbers::created_at.eq(now_ms),
                    phone_numbers::updated_at.eq(now_ms),
                ))
                .execute(conn)?;
            need_primary = false;
        }
    }
    Ok(())
}

/// Upserts the listed templates; returns how many stored ones Meta no longer lists.
fn store_templates(
    conn: &mut DbConnection,
    account_id: i64,
    listed: &[TemplateInfo],
    now_ms: i64,
) -> Result<usize, AccountError> {
    for t in listed {
        let components = t.components.to_string();
        let format = t
            .parameter_format
            .as_deref()
            .unwrap_or("POSITIONAL")
            .to_ascii_uppercase();
        let updated = diesel::update(
            templates::table
                .filter(templates::business_account_id.eq(account_id))
                .filter(templates::name.eq(&t.name))
                .filter(templates::language.eq(&t.language)),
        )
        .set((
            templates::meta_template_id.eq(&t.id),
            templates::category.eq(&t.category),
            templates::parameter_format.eq(&format),
            templates::components.eq(&components),
            templates::updated_at.eq(now_ms),
        ))
        .execute(conn)?;
        // What the sync read is the status as of now: a webhook event older than this read is
        // stale when it arrives later.
        diesel::update(
            templates::table
                .filter(templates::business_account_id.eq(account_id))
                .filter(templates::name.eq(&t.name))
                .filter(templates::language.eq(&t.language))
                .filter(templates::status.ne(&t.status)),
        )
        .set((
            templates::status.eq(&t.status),
            templates::status_event_at.eq(now_ms),
        ))
        .execute(conn)?;
        if updated == 0 {
            diesel::insert_into(templates::table)
                .values((
                    templates::business_account_id.eq(account_id),
                    templates::meta_template_id.eq(&t.id),
                    templates::name.eq(&t.name),
                    templates::language.eq(&t.language),
                    templates::category.eq(&t.category),
                    templates::status.eq(&t.status),
                    templates::parameter_format.eq(&format),
                    templates::components.eq(&components),
                    templates::created_at.eq(now_ms),
                    templates::updated_at.eq(now_ms),
                ))
                .execute(conn)?;
        }
    }
    let stored: Vec<(i64, String, String)> = templates::table
        .filter(templates::business_account_id.eq(account_id))
        .filter(templates::status.ne(GONE_TEMPLATE_STATUS))
        .select((templates::id, templates::name, templates::language))
        .load(conn)?;
    let mut gone = 0;
    for (id, name, language) in stored {
        if !listed
            .iter()
            .any(|t| t.name == name && t.language == language)
        {
            diesel::update(templates::table.find(id))
                .set((
                    templates::status.eq(GONE_TEMPLATE_STATUS),
                    templates::updated_at.eq(now_ms),
                ))
                .execute(conn)?;
            gone += 1;
        }
    }
    Ok(gone)
}

/// Every registered WABA (for `waba sync` and the periodic re-sync).
pub fn all_accounts(conn: &mut DbConnection) -> Result<Vec<BusinessAccount>, StorageError> {
    Ok(business_accounts::table
        .order(business_accounts::id)
        .select(BusinessAccount::as_select())
        .load(conn)?)
}

/// A WABA with its numbers and its APPROVED templates.
pub type AccountListing = (BusinessAccount, Vec<PhoneNumber>, Vec<Template>);

/// A tenant's WABAs, each with its numbers and its APPROVED templates.
pub fn tenant_accounts(
    conn: &mut DbConnection,
    tenant_id: i64,
) -> Result<Vec<AccountListing>, StorageError> {
    let accounts: Vec<BusinessAccount> = business_accounts::table
        .filter(business_accounts::tenant_id.eq(tenant_id))
        .order(business_accounts::id)
        .select(BusinessAccount::as_select())
        .load(conn)?;
    let ids: Vec<i64> = accounts.iter().map(|a| a.id).collect();
    let numbers: Vec<PhoneNumber> = phone_numbers::table
        .filter(phone_numbers::business_account_id.eq_any(&ids))
        .order(phone_numbers::id)
        .select(PhoneNumber::as_select())
        .load(conn)?;
    let approved: Vec<Template> = templates::table
        .filter(templates::business_account_id.eq_any(&ids))
        .filter(templates::status.eq("APPROVED"))
        .order(templates::id)
        .select(Template::as_select())
        .load(conn)?;
    Ok(accounts
        .into_iter()
        .map(|a| {
            let n = numbers
                .iter()
                .filter(|n| n.business_account_id == a.id)
                .cloned()
                .collect();
            let t = approved
                .iter()
                .filter(|t| t.business_account_id == a.id)
                .cloned()
                .collect();
            (a, n, t)
        })
        .collect())
}

/// A tenant's number by Meta's phone-number id, with its account; `None` when it is unknown
/// or another tenant's.
pub fn tenant_number(
    conn: &mut DbConnection,
    tenant_id: i64,
    phone_number_id: &str,
) -> Result<Option<(PhoneNumber, BusinessAccount)>, StorageError> {
    Ok(phone_numbers::table
        .inner_join(business_accounts::table)
        .filter(phone_numbers::phone_number_id.eq(phone_number_id))
        .filter(business_accounts::tenant_id.eq(tenant_id))
        .select((PhoneNumber::as_select(), BusinessAccount::as_select()))
        .first(conn)
        .optional()?)
}

/// A number by its row id, with its account (for the engine).
pub fn number_by_id(
    conn: &mut DbConnection,
    id: i64,
) -> Result<Option<(PhoneNumber, BusinessAccount)>, StorageError> {
    Ok(phone_numbers::table
        .inner_join(business_accounts::table)
        .filter(phone_numbers::id.eq(id))
        .select((PhoneNumber::as_select(), BusinessAccount::as_select()))
        .first(conn)
        .optional()?)
}

/// A WABA's template by exact name and language.
pub fn find_template(
    conn: &mut DbConnection,
    business_account_id: i64,
    name: &str,
    language: &str,
) -> Result<Option<Template>, StorageError> {
    Ok(templates::table
        .filter(templates::business_account_id.eq(business_account_id))
        .filter(templates::name.eq(name))
        .filter(templates::language.eq(language))
        .select(Template::as_select())
        .first(conn)
        .optional()?)
}

/// A template by id.
pub fn template_by_id(conn: &mut DbConnection, id: i64) -> Result<Option<Template>, StorageError> {
    Ok(templates::table
        .find(id)
        .select(Template::as_select())
        .first(conn)
        .optional()?)
}

/// Unique recipients messaged by a portfolio since `since_ms` (the moving 24 h window).
pub fn window_usage(
    conn: &mut DbConnection,
    portfolio_id: &str,
    since_ms: i64,
) -> Result<i64, StorageError> {
    Ok(quota_ledger::table
        .filter(quota_ledger::portfolio_id.eq(portfolio_id))
        .filter(quota_ledger::last_sent_at.gt(since_ms))
        .count()
        .get_result(conn)?)
}

/// An operator's change to a number's pacing (`mindo-bulk number set`).
#[derive(Debug, Clone, Default)]
pub struct NumberOverride {
    /// `Some(Some(n))` caps (or lifts) the rate at `n` mps; `Some(None)` returns to Meta's
    /// level (`auto`); `None` leaves it.
    pub throughput_mps: Option<Option<i32>>,
    /// Pause or resume every send on the number.
    pub paused: Option<bool>,
}

/// Applies an operator override; returns the number as it now is.
pub fn set_number_override(
    conn: &mut DbConnection,
    phone_number_id: &str,
    change: &NumberOverride,
    now_ms: i64,
) -> Result<PhoneNumber, AccountError> {
    write_transaction(conn, |conn| {
        let target =
            phone_numbers::table.filter(phone_numbers::phone_number_id.eq(phone_number_id));
        let found = target
            .select(PhoneNumber::as_select())
            .first(conn)
            .optional()?;
        if found.is_none() {
            return Err(AccountError::UnknownNumber(phone_number_id.to_owned()));
        }
        if let Some(mps) = change.throughput_mps {
            diesel::update(target)
                .set((
                    phone_numbers::override_mps.eq(mps),
                    phone_numbers::updated_at.eq(now_ms),
                ))
                .execute(conn)?;
        }
        if let Some(paused) = change.paused {
            let reason = paused.then_some("paused by the operator");
            diesel::update(target)
                .set((
                    phone_numbers::paused.eq(paused),
                    phone_numbers::pause_reason.eq(reason),
                    phone_numbers::updated_at.eq(now_ms),
                ))
                .execute(conn)?;
        }
        Ok(target.select(PhoneNumber::as_select()).first(conn)?)
    })
}

/// The templates a `message_template_status_update` names: the WABA's template with that name
/// and language when the notification gives all three, else every template with Meta's id.
pub fn templates_for_event(
    conn: &mut DbConnection,
    waba_id: Option<&str>,
    meta_template_id: Option<&str>,
    name: Option<&str>,
    language: Option<&str>,
) -> Result<Vec<Template>, StorageError> {
    if let (Some(waba_id), Some(name), Some(language)) = (waba_id, name, language) {
        let found: Option<Template> = templates::table
            .inner_join(business_accounts::table)
            .filter(business_accounts::waba_id.eq(waba_id))
            .filter(templates::name.eq(name))
            .filter(templates::language.eq(language))
            .select(Template::as_select())
            .first(conn)
            .optional()?;
        if let Some(template) = found {
            return Ok(vec![template]);
        }
    }
    match meta_template_id.filter(|id| !id.is_empty()) {
        Some(id) => Ok(templates::table
            .filter(templates::meta_template_id.eq(id))
            .order(templates::id)
            .select(Template::as_select())
            .load(conn)?),
        None => Ok(Vec::new()),
    }
}

/// Sets a template's status from a Meta event at `event_at_ms` (kept as the time behind the
/// status, when given); returns whether the status changed. The caller has checked that the
/// event is not stale ([`Template::is_stale_event`]).
pub fn set_template_status(
    conn: &mut DbConnection,
    template_id: i64,
    status: &str,
    event_at_ms: Option<i64>,
    now_ms: i64,
) -> Result<bool, StorageError> {
    if let Some(at) = event_at_ms {
        diesel::update(templates::table.find(template_id))
            .set(templates::status_event_at.eq(at))
            .execute(conn)?;
    }
    let changed = diesel::update(
        templates::table
            .find(template_id)
            .filter(templates::status.ne(status)),
    )
    .set((
        templates::status.eq(status),
        templates::updated_at.eq(now_ms),
    ))
    .execute(conn)?;
    Ok(changed > 0)
}

/// Which numbers a webhook about numbers concerns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NumberScope {
    /// The WABA's number with this display number (`phone_number_quality_update` names numbers
    /// only so); compared by digits, so `15550783881` matches `+1 555-078-3881`.
    Display { waba_id: String, digits: String },
    /// The WABA's numbers: the one with this display number when given and found, else all.
    Waba {
        waba_id: String,
        digits: Option<String>,
    },
    /// Every number of every WABA of the portfolio this WABA belongs to (messaging limits are
    /// per portfolio).
    Portfolio { waba_id: String },
}

/// The digits of a phone number as displayed.
fn digits(text: &str) -> String {
    text.chars().filter(char::is_ascii_digit).collect()
}

/// The numbers in `scope` (none when the WABA is not registered here).
pub fn numbers_in_scope(
    conn: &mut DbConnection,
    scope: &NumberScope,
) -> Result<Vec<PhoneNumber>, StorageError> {
    let waba_numbers = |conn: &mut DbConnection, waba_id: &str| {
        phone_numbers::table
            .inner_join(business_accounts::table)
            .filter(business_accounts::waba_id.eq(waba_id))
            .order(phone_numbers::id)
            .select(PhoneNumber::as_select())
            .load::<PhoneNumber>(conn)
    };
    Ok(match scope {
        NumberScope::Display { waba_id, digits: d } => waba_numbers(conn, waba_id)?
            .into_iter()
            .filter(|n| !d.is_empty() && digits(&n.display_phone_number) == *d)
            .collect(),
        NumberScope::Waba { waba_id, digits: d } => {
            let all = waba_numbers(conn, waba_id)?;
            let one: Vec<PhoneNumber> = match d {
                Some(d) if !d.is_empty() => all
                    .iter()
                    .filter(|n| digits(&n.display_phone_number) == *d)
                    .cloned()
                    .collect(),
                _ => Vec::new(),
            };
            if one.is_empty() {
                all
            } else {
                one
            }
        }
        NumberScope::Portfolio { waba_id } => {
            let portfolio: Option<String> = business_accounts::table
                .filter(business_accounts::waba_id.eq(waba_id))
                .select(business_accounts::portfolio_id)
                .first(conn)
                .optional()?;
            match portfolio {
                Some(portfolio) => phone_numbers::table
                    .inner_join(business_accounts::table)
                    .filter(business_accounts::portfolio_id.eq(portfolio))
                    .order(phone_numbers::id)
                    .select(PhoneNumber::as_select())
                    .load(conn)?,
                None => Vec::new(),
            }
        }
    })
}

/// A pause or resume of a number because of a webhook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NumberPause {
    /// Pause it with this reason (a number already paused keeps its reason).
    Pause(String),
    /// Resume it if its `pause_reason` starts with this prefix (so a number the operator or
    /// another mechanism paused stays paused).
    ResumeIfReasonStartsWith(&'static str),
}

/// What a webhook reports about a number; absent fields stay as they are.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NumberReport {
    pub tier: Option<Tier>,
    pub throughput: Option<ThroughputLevel>,
    pub quality_rating: Option<String>,
    pub pause: Option<NumberPause>,
}

impl NumberReport {
    /// Whether it reports nothing.
    pub fn is_empty(&self) -> bool {
        *self == NumberReport::default()
    }
}

/// Applies a report to a number; returns whether anything changed. The operator's override
/// (`override_mps`) stays: it caps or lifts whatever level Meta reports.
pub fn apply_number_report(
    conn: &mut DbConnection,
    number: &PhoneNumber,
    report: &NumberReport,
    now_ms: i64,
) -> Result<bool, StorageError> {
    let target = phone_numbers::table.find(number.id);
    let mut changed = false;
    if let Some(tier) = report.tier {
        if number.messaging_limit_tier != tier.as_meta_str() {
            diesel::update(target)
                .set(phone_numbers::messaging_limit_tier.eq(tier.as_meta_str()))
                .execute(conn)?;
            changed = true;
        }
    }
    if let Some(level) = report.throughput {
        let mps = i32::try_from(level.mps()).unwrap_or(i32::MAX);
        if number.throughput_level != level.as_str() || number.throughput_mps != mps {
            diesel::update(target)
                .set((
                    phone_numbers::throughput_level.eq(level.as_str()),
                    phone_numbers::throughput_mps.eq(mps),
                ))
                .execute(conn)?;
            changed = true;
        }
    }
    if let Some(quality) = &report.quality_rating {
        if number.quality_rating != *quality {
            diesel::update(target)
                .set(phone_numbers::quality_rating.eq(quality))
                .execute(conn)?;
            changed = true;
        }
    }
    match &report.pause {
        Some(NumberPause::Pause(reason)) if !number.paused => {
            diesel::update(target)
                .set((
                    phone_numbers::paused.eq(true),
                    phone_numbers::pause_reason.eq(reason),
                ))
                .execute(conn)?;
            changed = true;
        }
        Some(NumberPause::ResumeIfReasonStartsWith(prefix))
            if number.paused
                && number
                    .pause_reason
                    .as_deref()
                    .is_some_and(|r| r.starts_with(prefix)) =>
        {
            diesel::update(target)
                .set((
                    phone_numbers::paused.eq(false),
                    phone_numbers::pause_reason.eq(None::<String>),
                ))
                .execute(conn)?;
            changed = true;
        }
        _ => {}
    }
    if changed {
        diesel::update(target)
            .set(phone_numbers::updated_at.eq(now_ms))
            .execute(conn)?;
    }
    Ok(changed)
}
