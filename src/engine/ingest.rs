//! Webhook ingestion: what one Meta notification changes, and making all of it durable in one
//! write.
//!
//! [`WebhookChanges::from_notification`] turns the parsed events into changes (no I/O). [`apply`]
//! makes every change of a notification inside one job of the writer's group commit, so the
//! HTTP layer answers 200 only once all of it is durable, and a retried or duplicated
//! notification changes nothing the second time:
//! - **statuses**: applied monotonically per message
//!   ([`apply_status_updates`](crate::storage::sends::apply_status_updates)); updates naming no
//!   message of ours are counted and dropped;
//! - **template status** (`message_template_status_update`): the template row takes the new
//!   status; by [`TemplateEffect`]: *pause* pauses every unfinished send on the template with a
//!   `pause_reason` starting with [`TEMPLATE_PAUSE_PREFIX`] (a send already paused keeps its
//!   reason), *stop* stops them (`FAILED`, pending messages failed, reason recorded), *resume*
//!   resumes only the sends paused with that prefix, so a send the client paused stays paused;
//! - **number quality and capability** (`phone_number_quality_update`,
//!   `business_capability_update`): tier, throughput level and quality of the numbers concerned
//!   (capability updates are portfolio-wide);
//! - **account updates**: a ban or restriction pauses the WABA's numbers, a reinstatement
//!   resumes the ones it paused;
//! - **inbound messages**: the last time each user wrote to each number;
//! - **opt-outs** (`domain::suppression`): an inbound text that is an opt-out or opt-in
//!   keyword, a `user_preferences` stop or resume for marketing, and a `131050` failure
//!   suppress or lift the user for the tenant that owns the number, WABA or message, ordered
//!   by the signal's own time; queued messages of a newly suppressed user in that tenant's
//!   running marketing sends become `suppressed` in the same write
//!   (`storage::suppressions::apply_signals`).
//!
//! The returned [`IngestOutcome`] names the sends and numbers that changed, so the supervisor
//! can make their live actors and limiters follow at once (before the 200).

use std::sync::atomic::{AtomicU64, Ordering};

use crate::domain::phone::E164;
use crate::domain::suppression::{KeywordMatcher, Signal, SuppressionScope, SuppressionSource};
use crate::meta::webhook::{
    self, AccountEffect, Event, Notification, TemplateEffect, ACCOUNT_PAUSE_PREFIX,
};
use crate::storage::accounts::{self, NumberPause, NumberReport, NumberScope};
use crate::storage::inbound::{self, InboundContact};
use crate::storage::sends::{self, AppliedUpdates, StatusUpdate};
use crate::storage::suppressions::{self, SuppressionSignal};
use crate::storage::{DbConnection, StorageError};
use crate::telemetry;

/// The prefix of every send `pause_reason` set because the template cannot be sent for now
/// (a `PAUSED` webhook, or Meta's 132015 on a send), so that the template's approval resumes
/// exactly those sends.
pub const TEMPLATE_PAUSE_PREFIX: &str = "template_paused:";

/// Everything one notification changes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WebhookChanges {
    pub statuses: Vec<StatusUpdate>,
    pub templates: Vec<TemplateChange>,
    pub numbers: Vec<NumberChange>,
    pub inbound: Vec<InboundContact>,
    pub opt_outs: Vec<OptOutChange>,
}

/// Meta's error code for "the user stopped your marketing messages".
pub const USER_STOPPED_MARKETING: i64 = 131050;

/// A user's stop or resume, with what names the tenant it belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OptOutChange {
    pub owner: OptOutOwner,
    pub signal: Signal,
    pub source: SuppressionSource,
    pub reason: String,
    /// When it happened (unix ms; `now` when Meta gave no time).
    pub at_ms: i64,
}

/// Whose user: the tenant of one of our numbers or WABAs (and the user's phone), or of the
/// message a `131050` failure names (the user is its recipient).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OptOutOwner {
    Number {
        phone_number_id: String,
        phone: String,
    },
    Waba {
        waba_id: String,
        phone: String,
    },
    Message {
        message_id: Option<i64>,
        wamid: String,
    },
}

/// A template's new status and what it means for the sends using it.
#[derive(Debug, Clone, PartialEq)]
pub struct TemplateChange {
    /// `entry[].id`.
    pub waba_id: Option<String>,
    /// Meta's template id.
    pub meta_template_id: Option<String>,
    pub name: Option<String>,
    pub language: Option<String>,
    /// The status to store, when the event sets one.
    pub status: Option<&'static str>,
    pub effect: TemplateEffect,
    /// The `pause_reason` (pause) or failure reason (stop) given to the sends.
    pub reason: String,
    /// When Meta says it happened (`entry[].time`), unix ms: an event older than the one behind
    /// a template's stored status is stale and changes nothing.
    pub event_at_ms: Option<i64>,
}

/// A change to some numbers.
#[derive(Debug, Clone, PartialEq)]
pub struct NumberChange {
    pub scope: NumberScope,
    pub report: NumberReport,
}

/// What happened to a send, for its live actor to follow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendEffect {
    Pause,
    Resume,
    /// Stopped for good, with the reason stored as its failure reason.
    Stop(String),
}

/// What applying a notification did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IngestOutcome {
    pub statuses: AppliedUpdates,
    /// Sends paused, resumed or stopped.
    pub sends: Vec<(String, SendEffect)>,
    /// Numbers (row ids) whose tier, throughput, quality or pause changed.
    pub numbers: Vec<i64>,
    /// Template and number changes naming nothing registered here.
    pub unmatched: usize,
    /// Template changes older than the template's stored status, ignored.
    pub stale: usize,
    /// Inbound contacts created or moved forward.
    pub inbound: usize,
    /// Users newly suppressed.
    pub suppressed: usize,
    /// Suppressions lifted.
    pub lifted: usize,
    /// Opt-out signals older than the user's latest, ignored.
    pub stale_opt_outs: usize,
    /// Queued messages stopped because their recipient opted out.
    pub messages_suppressed: usize,
}

impl WebhookChanges {
    /// The changes a parsed notification asks for; `keywords` tells opt-out and opt-in texts.
    /// `now_ms` stands in for missing timestamps. Events that change nothing here (loose
    /// errors, unknown fields, informational account or template events, preferences for
    /// other categories) are left out (and logged).
    pub fn from_notification(
        notification: &Notification,
        keywords: &KeywordMatcher,
        now_ms: i64,
    ) -> WebhookChanges {
        let mut out = WebhookChanges::default();
        for event in &notification.events {
            match event {
                Event::Status(s) => {
                    out.statuses.extend(status_update(s, now_ms));
                    if s.errors.iter().any(|e| e.code == USER_STOPPED_MARKETING) {
                        out.opt_outs.push(OptOutChange {
                            owner: OptOutOwner::Message {
                                message_id: our_message_id(s),
                                wamid: s.wamid.clone(),
                            },
                            signal: Signal::Stop,
                            source: SuppressionSource::Error131050,
                            reason: "Meta: the user stopped marketing messages (131050)".into(),
                            at_ms: seconds_to_ms(s.timestamp).unwrap_or(now_ms),
                        });
                    }
                }
                Event::Inbound(m) => {
                    out.opt_outs.extend(keyword_opt_out(m, keywords, now_ms));
                    match &m.phone_number_id {
                        Some(phone_number_id) => out.inbound.push(InboundContact {
                            phone_number_id: phone_number_id.clone(),
                            wa_id: m.from.clone(),
                            at_ms: seconds_to_ms(m.timestamp).unwrap_or(now_ms),
                        }),
                        None => tracing::debug!(
                            "An inbound message without metadata.phone_number_id is ignored."
                        ),
                    }
                }
                Event::UserPreference(p) => out.opt_outs.extend(preference_opt_out(p, now_ms)),
                Event::TemplateStatus(t) => out.templates.push(template_change(t)),
                Event::PhoneQuality(p) => {
                    let report = NumberReport {
                        tier: p.limit(),
                        throughput: p.throughput(),
                        quality_rating: p.quality_rating().map(str::to_owned),
                        pause: None,
                    };
                    match (&p.waba_id, &p.display_phone_number) {
                        (Some(waba_id), Some(display)) if !report.is_empty() => {
                            out.numbers.push(NumberChange {
                                scope: NumberScope::Display {
                                    waba_id: waba_id.clone(),
                                    digits: digits(display),
                                },
                                report,
                            })
                        }
                        _ => tracing::debug!(event = ?p.event,
                            "A phone number quality update changes nothing here."),
                    }
                }
                Event::Capability(c) => match (&c.waba_id, c.limit()) {
                    (Some(waba_id), Some(tier)) => out.numbers.push(NumberChange {
                        scope: NumberScope::Portfolio {
                            waba_id: waba_id.clone(),
                        },
                        report: NumberReport {
                            tier: Some(tier),
                            ..NumberReport::default()
                        },
                    }),
                    _ => tracing::debug!("A capability update without a usable limit is ignored."),
                },
                Event::Account(a) => {
                    let pause = match a.effect() {
                        AccountEffect::Pause { reason } => NumberPause::Pause(reason),
                        AccountEffect::Resume => {
                            NumberPause::ResumeIfReasonStartsWith(ACCOUNT_PAUSE_PREFIX)
                        }
                        AccountEffect::Informational => {
                            tracing::info!(waba_id = ?a.waba_id, event = ?a.event.as_ref().map(|e| e.as_str()),
                                "An account update that does not stop sending.");
                            continue;
                        }
                    };
                    let Some(waba_id) = &a.waba_id else {
                        tracing::warn!("An account update without a WABA id is ignored.");
                        continue;
                    };
                    out.numbers.push(NumberChange {
                        scope: NumberScope::Waba {
                            waba_id: waba_id.clone(),
                            digits: a.phone_number.as_deref().map(digits),
                        },
                        report: NumberReport {
                            pause: Some(pause),
                            ..NumberReport::default()
                        },
                    });
                }
                Event::Errors(e) => tracing::warn!(waba_id = ?e.waba_id,
                    phone_number_id = ?e.phone_number_id,
                    codes = ?e.errors.iter().map(|e| e.code).collect::<Vec<_>>(),
                    "Meta reported errors not tied to a message."),
                Event::Unknown { .. } => {}
            }
        }
        out
    }

    /// Whether it changes nothing.
    pub fn is_empty(&self) -> bool {
        self.statuses.is_empty()
            && self.templates.is_empty()
            && self.numbers.is_empty()
            && self.inbound.is_empty()
            && self.opt_outs.is_empty()
    }
}

/// An inbound text that is exactly an opt-out or opt-in keyword.
fn keyword_opt_out(
    m: &webhook::InboundMessage,
    keywords: &KeywordMatcher,
    now_ms: i64,
) -> Option<OptOutChange> {
    let text = m.text.as_deref()?;
    let signal = keywords.classify(text)?;
    let phone = E164::from_wa_id(&m.from)?.into_string();
    let owner = match (&m.phone_number_id, &m.waba_id) {
        (Some(phone_number_id), _) => OptOutOwner::Number {
            phone_number_id: phone_number_id.clone(),
            phone,
        },
        (None, Some(waba_id)) => OptOutOwner::Waba {
            waba_id: waba_id.clone(),
            phone,
        },
        (None, None) => return None,
    };
    let shown: String = text.trim().chars().take(40).collect();
    Some(OptOutChange {
        owner,
        signal,
        source: SuppressionSource::InboundKeyword,
        reason: format!("the user wrote \"{shown}\""),
        at_ms: seconds_to_ms(m.timestamp).unwrap_or(now_ms),
    })
}

/// A `user_preferences` stop or resume of marketing messages.
fn preference_opt_out(p: &webhook::UserPreferenceUpdate, now_ms: i64) -> Option<OptOutChange> {
    if p.category.as_deref() != Some("marketing_messages") {
        tracing::debug!(category = ?p.category, "A user preference for another category is ignored.");
        return None;
    }
    let signal = match p.value.as_deref().map(str::to_ascii_lowercase).as_deref() {
        Some("stop") => Signal::Stop,
        Some("resume") => Signal::Resume,
        other => {
            tracing::debug!(value = ?other, "A user preference with an unknown value is ignored.");
            return None;
        }
    };
    let phone = E164::from_wa_id(&p.wa_id)?.into_string();
    let owner = match (&p.phone_number_id, &p.waba_id) {
        (Some(phone_number_id), _) => OptOutOwner::Number {
            phone_number_id: phone_number_id.clone(),
            phone,
        },
        (None, Some(waba_id)) => OptOutOwner::Waba {
            waba_id: waba_id.clone(),
            phone,
        },
        (None, None) => return None,
    };
    let reason = match &p.detail {
        Some(detail) => format!(
            "WhatsApp: the user chose {} for marketing messages ({detail})",
            signal_word(signal)
        ),
        None => format!(
            "WhatsApp: the user chose {} for marketing messages",
            signal_word(signal)
        ),
    };
    Some(OptOutChange {
        owner,
        signal,
        source: SuppressionSource::UserPreferences,
        reason,
        at_ms: seconds_to_ms(p.timestamp).unwrap_or(now_ms),
    })
}

fn signal_word(signal: Signal) -> &'static str {
    match signal {
        Signal::Stop => "stop",
        Signal::Resume => "resume",
    }
}

/// Our message id from `biz_opaque_callback_data` (`{bulk_send_id}/{message_id}`).
fn our_message_id(s: &webhook::StatusUpdate) -> Option<i64> {
    our_ids(s).map(|(_, id)| id)
}

/// The send and message ids in `biz_opaque_callback_data`.
fn our_ids(s: &webhook::StatusUpdate) -> Option<(String, i64)> {
    let data = s.biz_opaque_callback_data.as_deref()?;
    let id = opaque_message_id(data)?;
    let send = data.split('/').next()?;
    Some((send.to_owned(), id))
}

fn seconds_to_ms(seconds: Option<i64>) -> Option<i64> {
    seconds.and_then(|t| t.checked_mul(1000))
}

fn digits(text: &str) -> String {
    text.chars().filter(char::is_ascii_digit).collect()
}

/// Our message id in the `biz_opaque_callback_data` we sent: `{bulk_send_id}/{message_id}`,
/// followed on a cluster by `/{epoch}`, the lease epoch the message was claimed under.
fn opaque_message_id(data: &str) -> Option<i64> {
    let mut parts = data.split('/');
    let (_send, id) = (parts.next()?, parts.next()?);
    match (parts.next(), parts.next()) {
        (None, _) => id.parse().ok(),
        (Some(epoch), None) if epoch.parse::<i64>().is_ok() => id.parse().ok(),
        _ => None,
    }
}

/// A parsed status as the storage applies it; `None` for statuses that change nothing
/// (`played`, unknown values). Our message id comes from `biz_opaque_callback_data`
/// (see [`opaque_message_id`]).
fn status_update(s: &webhook::StatusUpdate, now_ms: i64) -> Option<StatusUpdate> {
    let status = s.status.to_webhook_status()?;
    let (send_id, message_id) = our_ids(s).unzip();
    Some(StatusUpdate {
        message_id,
        send_id,
        wamid: s.wamid.clone(),
        status,
        at_ms: seconds_to_ms(s.timestamp).unwrap_or(now_ms),
        error: s.errors.first().map(|e| {
            let meta = e.to_meta_error();
            (meta.code, meta.to_string())
        }),
    })
}

fn template_change(t: &webhook::TemplateStatusUpdate) -> TemplateChange {
    let effect = t.event.effect();
    let what = match (&t.name, &t.language, &t.message_template_id) {
        (Some(name), Some(language), _) => format!("template {name} ({language})"),
        (Some(name), None, _) => format!("template {name}"),
        (None, _, Some(id)) => format!("template {id}"),
        (None, _, None) => "the template".to_owned(),
    };
    let detail = match (&t.other_info_title, &t.reason) {
        (Some(title), _) => format!(" ({title})"),
        (None, Some(reason)) if !reason.eq_ignore_ascii_case("NONE") => format!(" ({reason})"),
        _ => String::new(),
    };
    let event = t.event.as_str();
    let reason = match effect {
        TemplateEffect::Pause => {
            format!("{TEMPLATE_PAUSE_PREFIX} Meta reported {event} for {what}{detail}")
        }
        _ => format!(
            "template_{}: Meta reported {event} for {what}{detail}",
            event.to_ascii_lowercase()
        ),
    };
    TemplateChange {
        waba_id: t.waba_id.clone(),
        meta_template_id: t.message_template_id.clone(),
        name: t.name.clone(),
        language: t.language.clone(),
        status: t.event.stored_status(),
        effect,
        reason,
        event_at_ms: seconds_to_ms(t.time),
    }
}

/// Makes every change of a notification (call inside one write transaction).
pub fn apply(
    conn: &mut DbConnection,
    changes: &WebhookChanges,
    now_ms: i64,
) -> Result<IngestOutcome, StorageError> {
    let mut outcome = IngestOutcome::default();
    if !changes.statuses.is_empty() {
        outcome.statuses = sends::apply_status_updates(conn, &changes.statuses, now_ms)?;
    }
    for change in &changes.templates {
        apply_template_change(conn, change, now_ms, &mut outcome)?;
    }
    for change in &changes.numbers {
        let numbers = accounts::numbers_in_scope(conn, &change.scope)?;
        if numbers.is_empty() {
            tracing::info!(scope = ?change.scope, "A number update names no number registered here.");
            outcome.unmatched += 1;
            continue;
        }
        for number in &numbers {
            if accounts::apply_number_report(conn, number, &change.report, now_ms)? {
                tracing::info!(phone_number_id = %number.phone_number_id, report = ?change.report,
                    "Meta changed a number.");
                if !outcome.numbers.contains(&number.id) {
                    outcome.numbers.push(number.id);
                }
            }
        }
    }
    if !changes.inbound.is_empty() {
        outcome.inbound = inbound::record_inbound(conn, &changes.inbound)?;
    }
    if !changes.opt_outs.is_empty() {
        apply_opt_outs(conn, &changes.opt_outs, now_ms, &mut outcome)?;
    }
    Ok(outcome)
}

/// Resolves each opt-out to its tenant and user, then applies them per tenant, in order.
fn apply_opt_outs(
    conn: &mut DbConnection,
    changes: &[OptOutChange],
    now_ms: i64,
    outcome: &mut IngestOutcome,
) -> Result<(), StorageError> {
    let mut by_tenant: Vec<(i64, Vec<SuppressionSignal>)> = Vec::new();
    for change in changes {
        let (tenant_id, phone) = match &change.owner {
            OptOutOwner::Number {
                phone_number_id,
                phone,
            } => (
                suppressions::tenant_of_number(conn, phone_number_id)?,
                Some(phone.clone()),
            ),
            OptOutOwner::Waba { waba_id, phone } => (
                suppressions::tenant_of_waba(conn, waba_id)?,
                Some(phone.clone()),
            ),
            OptOutOwner::Message { message_id, wamid } => {
                match suppressions::message_owner(conn, *message_id, wamid)? {
                    Some((tenant_id, recipient)) => (Some(tenant_id), Some(recipient)),
                    None => (None, None),
                }
            }
        };
        let (Some(tenant_id), Some(phone)) = (tenant_id, phone) else {
            tracing::info!(owner = ?change.owner, "An opt-out names no number, WABA or message of ours.");
            outcome.unmatched += 1;
            continue;
        };
        let signal = SuppressionSignal {
            phone,
            signal: change.signal,
            scope: SuppressionScope::Marketing,
            source: change.source,
            reason: change.reason.clone(),
            at_ms: change.at_ms,
        };
        match by_tenant.iter_mut().find(|(t, _)| *t == tenant_id) {
            Some((_, list)) => list.push(signal),
            None => by_tenant.push((tenant_id, vec![signal])),
        }
    }
    for (tenant_id, signals) in by_tenant {
        let applied = suppressions::apply_signals(conn, tenant_id, &signals, now_ms)?;
        if applied.suppressed > 0 || applied.lifted > 0 || applied.stale > 0 {
            tracing::info!(
                tenant_id,
                suppressed = applied.suppressed,
                lifted = applied.lifted,
                stale = applied.stale,
                messages = applied.messages_suppressed,
                "Opt-out signals were applied."
            );
        }
        outcome.suppressed += applied.suppressed;
        outcome.lifted += applied.lifted;
        outcome.stale_opt_outs += applied.stale;
        outcome.messages_suppressed += applied.messages_suppressed;
        for send in applied.touched_sends {
            if !outcome.statuses.touched_sends.contains(&send) {
                outcome.statuses.touched_sends.push(send);
            }
        }
    }
    Ok(())
}

fn apply_template_change(
    conn: &mut DbConnection,
    change: &TemplateChange,
    now_ms: i64,
    outcome: &mut IngestOutcome,
) -> Result<(), StorageError> {
    let templates = accounts::templates_for_event(
        conn,
        change.waba_id.as_deref(),
        change.meta_template_id.as_deref(),
        change.name.as_deref(),
        change.language.as_deref(),
    )?;
    if templates.is_empty() {
        tracing::info!(name = ?change.name, language = ?change.language,
            "A template status update names no template registered here.");
        outcome.unmatched += 1;
        return Ok(());
    }
    let effect = match change.effect {
        TemplateEffect::Pause => Some(SendEffect::Pause),
        TemplateEffect::Resume => Some(SendEffect::Resume),
        TemplateEffect::Stop => Some(SendEffect::Stop(change.reason.clone())),
        TemplateEffect::Informational => None,
    };
    for template in templates {
        if template.is_stale_event(change.event_at_ms) {
            tracing::info!(template = %template.name, language = %template.language,
                reason = %change.reason, "A template status update older than the stored status is ignored.");
            outcome.stale += 1;
            continue;
        }
        if let Some(status) = change.status {
            if accounts::set_template_status(conn, template.id, status, change.event_at_ms, now_ms)?
            {
                tracing::info!(template = %template.name, language = %template.language, %status,
                    "Meta changed a template's status.");
            }
        }
        let Some(effect) = &effect else {
            continue;
        };
        for send in sends::unfinished_sends_on_template(conn, template.id)? {
            let changed = match effect {
                SendEffect::Pause => sends::pause_unless_paused(conn, &send.id, &change.reason)?,
                SendEffect::Resume => match send.pause_reason.as_deref() {
                    Some(reason) if send.paused && reason.starts_with(TEMPLATE_PAUSE_PREFIX) => {
                        sends::resume_if_paused_with(conn, &send.id, reason)?
                    }
                    _ => false,
                },
                SendEffect::Stop(reason) => {
                    sends::stop_send(conn, &send.id, reason, now_ms)?;
                    true
                }
            };
            if changed {
                tracing::info!(bulk_send_id = %send.id, effect = ?effect, reason = %change.reason,
                    "A template status update changed a bulk send.");
                outcome.sends.push((send.id, effect.clone()));
            }
        }
    }
    Ok(())
}

/// The engine's webhook counters. Each count is also recorded in the process's metrics
/// (`mindo_webhook_*` on `/metrics`, see `telemetry`).
#[derive(Debug, Default)]
pub struct IngestCounters {
    unknown_status_updates: AtomicU64,
    unmatched_changes: AtomicU64,
    skipped_items: AtomicU64,
    refused_signatures: AtomicU64,
}

/// A snapshot of [`IngestCounters`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IngestStats {
    /// Status updates naming no message of ours, dropped.
    pub unknown_status_updates_total: u64,
    /// Template and number updates naming nothing registered here.
    pub unmatched_changes_total: u64,
    /// Notification items too broken to use (see `meta::webhook`), dropped.
    pub skipped_items_total: u64,
    /// Notifications refused for a missing or wrong signature.
    pub refused_signatures_total: u64,
}

impl IngestCounters {
    /// Counts what applying a notification found unusable.
    pub fn record(&self, outcome: &IngestOutcome) {
        let statuses = &outcome.statuses;
        telemetry::webhook_updates(statuses.applied, statuses.duplicates, statuses.unknown);
        telemetry::webhook_changes_unmatched(outcome.unmatched);
        telemetry::opt_out_signals(outcome.suppressed, outcome.lifted, outcome.stale_opt_outs);
        self.unknown_status_updates
            .fetch_add(outcome.statuses.unknown as u64, Ordering::Relaxed);
        self.unmatched_changes
            .fetch_add(outcome.unmatched as u64, Ordering::Relaxed);
    }

    /// Counts items the parser dropped.
    pub fn skipped(&self, items: usize) {
        telemetry::webhook_items_skipped(items);
        self.skipped_items
            .fetch_add(items as u64, Ordering::Relaxed);
    }

    /// Counts a notification refused for its signature.
    pub fn refused_signature(&self) {
        telemetry::webhook_signature_refused();
        self.refused_signatures.fetch_add(1, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> IngestStats {
        IngestStats {
            unknown_status_updates_total: self.unknown_status_updates.load(Ordering::Relaxed),
            unmatched_changes_total: self.unmatched_changes.load(Ordering::Relaxed),
            skipped_items_total: self.skipped_items.load(Ordering::Relaxed),
            refused_signatures_total: self.refused_signatures.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::message::WebhookStatus;
    use crate::domain::tier::{ThroughputLevel, Tier};
    use serde_json::{json, Value};

    fn changes(body: Value) -> WebhookChanges {
        let n = webhook::parse(body.to_string().as_bytes()).unwrap();
        WebhookChanges::from_notification(&n, &KeywordMatcher::default(), 42_000)
    }

    fn envelope(field: &str, value: Value) -> Value {
        json!({"object": "whatsapp_business_account", "entry": [{"id": "W1", "time": 1750030100,
               "changes": [{"field": field, "value": value}]}]})
    }

    #[test]
    fn statuses_carry_our_message_id_time_and_error() {
        let c = changes(envelope(
            "messages",
            json!({"metadata": {"phone_number_id": "P1"}, "statuses": [
                {"id": "wamid.A", "status": "read", "timestamp": "1750030073",
                 "biz_opaque_callback_data": "send-1/17"},
                {"id": "wamid.B", "status": "failed", "biz_opaque_callback_data": "garbage",
                 "errors": [{"code": 131049, "title": "Not delivered"}]},
                {"id": "wamid.C", "status": "played"}
            ]}),
        ));
        assert_eq!(c.statuses.len(), 2);
        assert_eq!(c.statuses[0].message_id, Some(17));
        assert_eq!(c.statuses[0].status, WebhookStatus::Read);
        assert_eq!(c.statuses[0].at_ms, 1_750_030_073_000);
        assert_eq!(c.statuses[1].message_id, None);
        assert_eq!(c.statuses[1].at_ms, 42_000, "no timestamp: now");
        assert_eq!(c.statuses[1].error.as_ref().map(|e| e.0), Some(131049));
    }

    #[test]
    fn template_events_become_changes_with_reasons() {
        let c = changes(envelope(
            "message_template_status_update",
            json!({"event": "PAUSED", "message_template_id": 77, "message_template_name": "welcome",
                   "message_template_language": "es", "reason": "NONE",
                   "other_info": {"title": "FIRST_PAUSE", "description": "3 hours"}}),
        ));
        let t = &c.templates[0];
        assert_eq!(t.effect, TemplateEffect::Pause);
        assert_eq!(t.status, Some("PAUSED"));
        assert_eq!(t.meta_template_id.as_deref(), Some("77"));
        assert_eq!(
            t.reason,
            "template_paused: Meta reported PAUSED for template welcome (es) (FIRST_PAUSE)"
        );
        let c = changes(envelope(
            "message_template_status_update",
            json!({"event": "DISABLED", "message_template_id": "77"}),
        ));
        assert_eq!(c.templates[0].effect, TemplateEffect::Stop);
        assert_eq!(
            c.templates[0].reason,
            "template_disabled: Meta reported DISABLED for template 77"
        );
    }

    #[test]
    fn number_events_become_scoped_reports() {
        let c = changes(envelope(
            "phone_number_quality_update",
            json!({"display_phone_number": "1 202-555-0101", "event": "THROUGHPUT_UPGRADE",
                   "max_daily_conversations_per_business": "TIER_2K"}),
        ));
        assert_eq!(
            c.numbers,
            vec![NumberChange {
                scope: NumberScope::Display {
                    waba_id: "W1".into(),
                    digits: "12025550101".into()
                },
                report: NumberReport {
                    tier: Some(Tier::T2000),
                    throughput: Some(ThroughputLevel::High),
                    ..NumberReport::default()
                }
            }]
        );
        let c = changes(envelope(
            "business_capability_update",
            json!({"max_daily_conversations_per_business": 10000}),
        ));
        assert_eq!(
            c.numbers[0].scope,
            NumberScope::Portfolio {
                waba_id: "W1".into()
            }
        );
        assert_eq!(c.numbers[0].report.tier, Some(Tier::T10000));
        let c = changes(envelope(
            "phone_number_quality_update",
            json!({"display_phone_number": "12025550101", "event": "ONBOARDING"}),
        ));
        assert!(c.is_empty(), "nothing to change");
    }

    #[test]
    fn account_bans_pause_and_reinstatements_resume() {
        let c = changes(envelope(
            "account_update",
            json!({"phone_number": "+1 202 555 0101", "event": "DISABLED_UPDATE",
                   "ban_info": {"waba_ban_state": "DISABLE"}}),
        ));
        assert_eq!(
            c.numbers[0].scope,
            NumberScope::Waba {
                waba_id: "W1".into(),
                digits: Some("12025550101".into())
            }
        );
        assert!(matches!(
            &c.numbers[0].report.pause,
            Some(NumberPause::Pause(r)) if r.starts_with(ACCOUNT_PAUSE_PREFIX)
        ));
        let c = changes(envelope(
            "account_update",
            json!({"event": "DISABLED_UPDATE", "ban_info": {"waba_ban_state": "REINSTATE"}}),
        ));
        assert_eq!(
            c.numbers[0].report.pause,
            Some(NumberPause::ResumeIfReasonStartsWith(ACCOUNT_PAUSE_PREFIX))
        );
        let c = changes(envelope(
            "account_update",
            json!({"event": "ACCOUNT_VIOLATION"}),
        ));
        assert!(c.is_empty());
    }

    #[test]
    fn inbound_messages_become_contacts() {
        let c = changes(envelope(
            "messages",
            json!({"metadata": {"phone_number_id": "P1"},
                   "contacts": [{"wa_id": "5491112345678", "profile": {"name": "Ana"}}],
                   "messages": [{"from": "5491112345678", "id": "wamid.IN", "timestamp": "1750030000",
                                 "type": "text", "text": {"body": "hola"}}]}),
        ));
        assert_eq!(
            c.inbound,
            vec![InboundContact {
                phone_number_id: "P1".into(),
                wa_id: "5491112345678".into(),
                at_ms: 1_750_030_000_000
            }]
        );
    }

    #[test]
    fn unknown_fields_and_other_preferences_change_nothing() {
        assert!(changes(envelope("template_category_update", json!({"x": 1}))).is_empty());
        assert!(changes(envelope(
            "user_preferences",
            json!({"user_preferences": [{"wa_id": "1", "category": "utility_messages", "value": "stop"}]})
        ))
        .is_empty());
    }

    #[test]
    fn the_opaque_data_names_the_message_with_or_without_an_epoch() {
        assert_eq!(opaque_message_id("send-1/17"), Some(17));
        assert_eq!(opaque_message_id("send-1/17/4"), Some(17));
        assert_eq!(opaque_message_id("send-1/17/x"), None);
        assert_eq!(opaque_message_id("send-1/17/4/5"), None);
        assert_eq!(opaque_message_id("garbage"), None);
        assert_eq!(opaque_message_id("a/b"), None);
    }

    #[test]
    fn keywords_preferences_and_131050_become_opt_outs() {
        let c = changes(envelope(
            "messages",
            json!({"metadata": {"phone_number_id": "P1"},
                   "messages": [
                     {"from": "5491112345678", "id": "wamid.IN1", "timestamp": "1750030000",
                      "type": "text", "text": {"body": " Baja "}},
                     {"from": "5491112345679", "id": "wamid.IN2", "timestamp": "1750030001",
                      "type": "text", "text": {"body": "quiero la baja"}},
                     {"from": "5491112345670", "id": "wamid.IN3", "timestamp": "1750030002",
                      "type": "text", "text": {"body": "ALTA"}}],
                   "statuses": [{"id": "wamid.F", "status": "failed", "timestamp": "1750030003",
                     "biz_opaque_callback_data": "send-1/9",
                     "errors": [{"code": 131050, "title": "User stopped marketing"}]}]}),
        ));
        assert_eq!(c.opt_outs.len(), 3, "{:?}", c.opt_outs);
        let baja = c
            .opt_outs
            .iter()
            .find(|o| o.source == SuppressionSource::InboundKeyword && o.signal == Signal::Stop)
            .unwrap();
        assert_eq!(
            baja.owner,
            OptOutOwner::Number {
                phone_number_id: "P1".into(),
                phone: "+5491112345678".into()
            }
        );
        assert_eq!(baja.at_ms, 1_750_030_000_000);
        assert!(c.opt_outs.iter().any(|o| o.signal == Signal::Resume));
        let failed = c
            .opt_outs
            .iter()
            .find(|o| o.source == SuppressionSource::Error131050)
            .unwrap();
        assert_eq!(
            failed.owner,
            OptOutOwner::Message {
                message_id: Some(9),
                wamid: "wamid.F".into()
            }
        );
        let c = changes(envelope(
            "user_preferences",
            json!({"user_preferences": [{"wa_id": "5491112345678", "category": "marketing_messages",
                   "value": "resume", "timestamp": 1750030100}]}),
        ));
        assert_eq!(c.opt_outs.len(), 1);
        assert_eq!(c.opt_outs[0].signal, Signal::Resume);
        assert_eq!(
            c.opt_outs[0].owner,
            OptOutOwner::Waba {
                waba_id: "W1".into(),
                phone: "+5491112345678".into()
            }
        );
    }
}
