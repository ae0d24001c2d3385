//! The suppression list: one row per tenant and phone (E.164), kept when lifted so that a
//! signal older than the latest one applied changes nothing (`domain::suppression::decide`).
//!
//! - [`apply_signals`]: stops and resumes from webhooks, the API and imports, set-based (the
//!   rows named are read in chunks, decided in memory in order, new rows inserted in
//!   multi-row statements). A phone newly suppressed stops its queued messages in the
//!   tenant's unfinished sends whose template the suppression covers, in the same
//!   transaction, with the counters moved from `pending` to `suppressed`
//!   (`suppress_queued`).
//! - [`suppressed_among`]: which of a new send's recipients are suppressed for its template's
//!   category: one statement per chunk of phones against the `(tenant_id, phone)` key (on
//!   PostgreSQL one `= ANY($1)` for up to [`LOOKUP_CHUNK`] phones).
//! - [`list`], [`lift`]: the API's reads and `DELETE`.

use std::collections::HashMap;

use diesel::prelude::*;

use super::schema::{
    bulk_sends, business_accounts, messages, phone_numbers, suppressions, templates,
};
use super::{status, DbConnection, StorageError};
use crate::domain::message::{BulkStatus, CounterDelta, EngineStep};
use crate::domain::suppression::{
    decide, Decision, Signal, StoredState, SuppressionScope, SuppressionSource,
};
use crate::with_backend;

/// Phones per lookup statement (SQLite binds one variable per phone; its limit is 32 766).
pub const LOOKUP_CHUNK: usize = 10_000;
/// On SQLite, a tenant list up to this many times a send's recipients is read whole and
/// matched in memory rather than probed phone by phone ([`suppressed_among`]).
pub const SCAN_FACTOR: usize = 4;
/// Rows per multi-row INSERT (9 values a row).
const INSERT_CHUNK: usize = 500;
/// Phones per `recipient IN (…)` when stopping queued messages.
const STOP_CHUNK: usize = 1_000;

/// A stop or resume for one phone of a tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SuppressionSignal {
    /// E.164.
    pub phone: String,
    pub signal: Signal,
    /// The categories a stop covers (ignored by a resume, which lifts the row).
    pub scope: SuppressionScope,
    pub source: SuppressionSource,
    pub reason: String,
    /// When the signal happened (unix ms): orders it against the row's latest.
    pub at_ms: i64,
}

/// What applying signals did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SignalOutcome {
    /// Phones suppressed that were not (or widened to every category).
    pub suppressed: usize,
    /// Phones already suppressed (a duplicate or repeated stop).
    pub already: usize,
    /// Suppressions lifted.
    pub lifted: usize,
    /// Signals older than the phone's latest, ignored.
    pub stale: usize,
    /// Queued messages stopped in unfinished sends.
    pub messages_suppressed: usize,
    /// Sends whose counters changed.
    pub touched_sends: Vec<String>,
}

/// A suppression as the API lists it.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable)]
#[diesel(table_name = suppressions)]
pub struct SuppressionRow {
    pub phone: String,
    pub scope: String,
    pub reason: String,
    pub source: String,
    pub signal_at: i64,
    pub created_at: i64,
}

/// The row as read for deciding.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = suppressions)]
struct Stored {
    phone: String,
    active: bool,
    scope: String,
    signal_at: i64,
}

/// A row's state after the batch, and whether it existed before it.
struct RowChange {
    existed: bool,
    changed: bool,
    active: bool,
    scope: SuppressionScope,
    reason: String,
    source: SuppressionSource,
    signal_at: i64,
    /// When the current suppression began (`None`: unchanged since read).
    began_at: Option<i64>,
    stored_scope: Option<SuppressionScope>,
    stored_active: bool,
}

/// Applies stops and resumes for one tenant, in order (call inside a write transaction).
pub fn apply_signals(
    conn: &mut DbConnection,
    tenant_id: i64,
    signals: &[SuppressionSignal],
    now_ms: i64,
) -> Result<SignalOutcome, StorageError> {
    let mut outcome = SignalOutcome::default();
    if signals.is_empty() {
        return Ok(outcome);
    }
    let mut phones: Vec<&str> = signals.iter().map(|s| s.phone.as_str()).collect();
    phones.sort_unstable();
    phones.dedup();
    let mut rows: HashMap<String, RowChange> = HashMap::with_capacity(phones.len());
    for chunk in phones.chunks(LOOKUP_CHUNK) {
        let query = || {
            suppressions::table
                .filter(suppressions::tenant_id.eq(tenant_id))
                .filter(suppressions::phone.eq_any(chunk))
        };
        // PostgreSQL: the rows stay locked until the commit, so two nodes applying signals
        // for one phone at once decide one after the other (SQLite has one writer anyway).
        let found: Vec<Stored> = match conn {
            DbConnection::Postgres(pg) => {
                query().select(Stored::as_select()).for_update().load(pg)?
            }
            DbConnection::Sqlite(c) => query().select(Stored::as_select()).load(c)?,
        };
        for s in found {
            let scope = SuppressionScope::parse_stored(&s.scope);
            rows.insert(
                s.phone,
                RowChange {
                    existed: true,
                    changed: false,
                    active: s.active,
                    scope,
                    reason: String::new(),
                    source: SuppressionSource::Api,
                    signal_at: s.signal_at,
                    began_at: None,
                    stored_scope: Some(scope),
                    stored_active: s.active,
                },
            );
        }
    }
    for signal in signals {
        let row = rows.get(&signal.phone);
        let stored = row.filter(|r| r.existed || r.changed).map(|r| StoredState {
            active: r.active,
            scope: r.scope,
            signal_at: r.signal_at,
        });
        let decision = decide(stored, signal.signal, signal.scope, signal.at_ms);
        let entry = rows.entry(signal.phone.clone()).or_insert(RowChange {
            existed: false,
            changed: false,
            active: false,
            scope: signal.scope,
            reason: String::new(),
            source: signal.source,
            signal_at: signal.at_ms,
            began_at: None,
            stored_scope: None,
            stored_active: false,
        });
        match decision {
            Decision::Stale => {
                outcome.stale += 1;
                continue;
            }
            Decision::Suppress { newly, scope } => {
                if !entry.active {
                    entry.reason = signal.reason.clone();
                    entry.source = signal.source;
                    entry.began_at = Some(now_ms);
                } else if newly {
                    // Widened to every category by hand: the operator's reason now applies.
                    entry.reason = signal.reason.clone();
                    entry.source = signal.source;
                }
                if newly {
                    outcome.suppressed += 1;
                } else {
                    outcome.already += 1;
                }
                entry.active = true;
                entry.scope = scope;
            }
            Decision::Lift { was_active } => {
                if was_active {
                    outcome.lifted += 1;
                }
                entry.active = false;
            }
        }
        entry.signal_at = entry.signal_at.max(signal.at_ms);
        entry.changed = true;
    }

    let mut inserts = Vec::new();
    let mut newly: Vec<NewlySuppressed> = Vec::new();
    for (phone, row) in &rows {
        if !row.changed {
            continue;
        }
        let widened = row.stored_scope != Some(row.scope) && row.stored_active;
        if row.active && (!row.stored_active || widened) {
            newly.push(NewlySuppressed {
                phone: phone.clone(),
                scope: row.scope,
                message_text: message_reason(row),
            });
        }
        if row.existed {
            let target = suppressions::table
                .filter(suppressions::tenant_id.eq(tenant_id))
                .filter(suppressions::phone.eq(phone));
            match row.began_at {
                Some(began) => diesel::update(target)
                    .set((
                        suppressions::active.eq(row.active),
                        suppressions::scope.eq(row.scope.as_str()),
                        suppressions::reason.eq(&row.reason),
                        suppressions::source.eq(row.source.as_str()),
                        suppressions::signal_at.eq(row.signal_at),
                        suppressions::created_at.eq(began),
                        suppressions::updated_at.eq(now_ms),
                    ))
                    .execute(conn)?,
                None if widened => diesel::update(target)
                    .set((
                        suppressions::active.eq(row.active),
                        suppressions::scope.eq(row.scope.as_str()),
                        suppressions::reason.eq(&row.reason),
                        suppressions::source.eq(row.source.as_str()),
                        suppressions::signal_at.eq(row.signal_at),
                        suppressions::updated_at.eq(now_ms),
                    ))
                    .execute(conn)?,
                None => diesel::update(target)
                    .set((
                        suppressions::active.eq(row.active),
                        suppressions::signal_at.eq(row.signal_at),
                        suppressions::updated_at.eq(now_ms),
                    ))
                    .execute(conn)?,
            };
        } else {
            // A resume for a phone never suppressed is kept too: it orders a later, older stop.
            inserts.push((
                suppressions::tenant_id.eq(tenant_id),
                suppressions::phone.eq(phone.clone()),
                suppressions::active.eq(row.active),
                suppressions::scope.eq(row.scope.as_str()),
                suppressions::reason.eq(row.reason.clone()),
                suppressions::source.eq(row.source.as_str()),
                suppressions::signal_at.eq(row.signal_at),
                suppressions::created_at.eq(row.began_at.unwrap_or(now_ms)),
                suppressions::updated_at.eq(now_ms),
            ));
        }
    }
    for chunk in inserts.chunks(INSERT_CHUNK) {
        // Another node may have inserted the same phone since the read (PostgreSQL); its
        // row stands, as if that signal had come after this one.
        let insert = diesel::insert_into(suppressions::table)
            .values(chunk)
            .on_conflict((suppressions::tenant_id, suppressions::phone))
            .do_nothing();
        with_backend!(conn, |c| insert.execute(c))?;
    }
    newly.sort_by(|a, b| a.phone.cmp(&b.phone));
    let stopped = suppress_queued(conn, tenant_id, &newly, now_ms)?;
    outcome.messages_suppressed = stopped.0;
    outcome.touched_sends = stopped.1;
    Ok(outcome)
}

/// A phone suppressed by a batch of signals (or widened to every category): its queued
/// messages are stopped.
struct NewlySuppressed {
    phone: String,
    scope: SuppressionScope,
    /// The `error_message` its stopped messages get.
    message_text: String,
}

/// What the list says of a suppressed recipient, for its message's `error_message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    pub source: String,
    pub reason: String,
}

/// The text a suppressed message shows in `error_message`.
fn message_reason(row: &RowChange) -> String {
    format!("suppressed ({}): {}", row.source.as_str(), row.reason)
}

impl Listed {
    /// The `error_message` of a recipient suppressed at creation.
    pub fn message_text(&self) -> String {
        format!("suppressed ({}): {}", self.source, self.reason)
    }
}

/// Stops the queued (`pending`, not yet dispatched) messages of newly suppressed phones in the
/// tenant's unfinished sends whose template the phone's scope covers; moves their counters
/// from `pending` to `suppressed` and re-derives their status. A `dispatching` message is in
/// flight and left alone; the engine's `pending → dispatching` mark is guarded by the state,
/// so a message stopped here is never dispatched. Returns the messages stopped and the sends
/// touched.
///
/// `messages` has no index on the recipient (every index on it costs every create); the
/// update goes through `messages_due`'s `send_key` prefix, i.e. it reads the unfinished
/// sends' messages once per batch of phones, not once per phone.
fn suppress_queued(
    conn: &mut DbConnection,
    tenant_id: i64,
    phones: &[NewlySuppressed],
    now_ms: i64,
) -> Result<(usize, Vec<String>), StorageError> {
    if phones.is_empty() {
        return Ok((0, Vec::new()));
    }
    let unfinished: Vec<(String, String)> = bulk_sends::table
        .inner_join(templates::table)
        .filter(bulk_sends::tenant_id.eq(tenant_id))
        .filter(
            bulk_sends::status
                .eq_any([BulkStatus::Queued.as_str(), BulkStatus::Processing.as_str()]),
        )
        .filter(bulk_sends::pending_count.gt(0))
        .select((bulk_sends::id, templates::category))
        .load(conn)?;
    let mut total = 0usize;
    let mut touched = Vec::new();
    let step = EngineStep::SuppressPending;
    for (send_id, category) in unfinished {
        let covering = SuppressionScope::covering(&category);
        let concerned: Vec<&NewlySuppressed> = phones
            .iter()
            .filter(|n| covering.contains(&n.scope))
            .collect();
        let mut moved = 0usize;
        for chunk in concerned.chunks(STOP_CHUNK) {
            // One reason per phone: the statement is per phone when reasons differ, which only
            // a batch mixing sources does.
            let mut by_reason: HashMap<&str, Vec<&str>> = HashMap::new();
            for n in chunk {
                by_reason
                    .entry(n.message_text.as_str())
                    .or_default()
                    .push(n.phone.as_str());
            }
            for (reason, phones) in by_reason {
                moved += diesel::update(
                    messages::table
                        .filter(crate::storage::sends::of_send(&send_id))
                        .filter(messages::recipient.eq_any(&phones))
                        .filter(messages::state.eq(step.from().as_str())),
                )
                .set((
                    messages::state.eq(step.to().as_str()),
                    messages::error_message.eq(reason),
                ))
                .execute(conn)?;
            }
        }
        if moved > 0 {
            status::adjust_counters(
                conn,
                &send_id,
                &CounterDelta::moved_many(step, moved),
                now_ms,
            )?;
            tracing::info!(bulk_send_id = %send_id, messages = moved,
                "Queued messages of opted-out recipients were suppressed.");
            total += moved;
            touched.push(send_id);
        }
    }
    Ok((total, touched))
}

/// Which of `phones` (E.164) the tenant has suppressed for a template of `category`, with
/// the stored source and reason.
///
/// Set-based either way: on PostgreSQL one `phone = ANY($1)` per [`LOOKUP_CHUNK`] phones
/// against the `(tenant_id, phone)` key. On SQLite, probing that key once per recipient costs
/// as much as storing the send (a 100 000-phone `IN` list is parsed afresh and probed phone by
/// phone), so while the tenant's list is at most [`SCAN_FACTOR`] times the recipients it is
/// read in one pass over the key's `tenant_id` prefix and matched in memory; a list much
/// larger than the send is probed in chunks instead.
pub fn suppressed_among(
    conn: &mut DbConnection,
    tenant_id: i64,
    category: &str,
    phones: &[&str],
) -> Result<HashMap<String, Listed>, StorageError> {
    let scopes: Vec<&str> = SuppressionScope::covering(category)
        .iter()
        .map(|s| s.as_str())
        .collect();
    let mut found = HashMap::new();
    let any: bool = diesel::select(diesel::dsl::exists(
        suppressions::table
            .filter(suppressions::tenant_id.eq(tenant_id))
            .filter(suppressions::active.eq(true)),
    ))
    .get_result(conn)?;
    if !any {
        return Ok(found);
    }
    if let DbConnection::Sqlite(_) = conn {
        let most = i64::try_from(phones.len().saturating_mul(SCAN_FACTOR)).unwrap_or(i64::MAX);
        let listed: Vec<(String, String, String)> = suppressions::table
            .filter(suppressions::tenant_id.eq(tenant_id))
            .filter(suppressions::active.eq(true))
            .filter(suppressions::scope.eq_any(&scopes))
            .select((
                suppressions::phone,
                suppressions::source,
                suppressions::reason,
            ))
            .limit(most.saturating_add(1))
            .load(conn)?;
        if listed.len() as i64 <= most {
            let wanted: std::collections::HashSet<&str> = phones.iter().copied().collect();
            found.extend(
                listed
                    .into_iter()
                    .filter(|(p, _, _)| wanted.contains(p.as_str()))
                    .map(|(phone, source, reason)| (phone, Listed { source, reason })),
            );
            return Ok(found);
        }
    }
    for chunk in phones.chunks(LOOKUP_CHUNK) {
        let rows: Vec<(String, String, String)> = suppressions::table
            .filter(suppressions::tenant_id.eq(tenant_id))
            .filter(suppressions::phone.eq_any(chunk))
            .filter(suppressions::active.eq(true))
            .filter(suppressions::scope.eq_any(&scopes))
            .select((
                suppressions::phone,
                suppressions::source,
                suppressions::reason,
            ))
            .load(conn)?;
        found.extend(
            rows.into_iter()
                .map(|(phone, source, reason)| (phone, Listed { source, reason })),
        );
    }
    Ok(found)
}

/// A page of the tenant's active suppressions, newest first (then by phone), optionally of
/// one phone; with the count of all matching.
pub fn list(
    conn: &mut DbConnection,
    tenant_id: i64,
    phone: Option<&str>,
    offset: i64,
    limit: i64,
) -> Result<(i64, Vec<SuppressionRow>), StorageError> {
    let active = suppressions::table
        .filter(suppressions::tenant_id.eq(tenant_id))
        .filter(suppressions::active.eq(true));
    let order = (suppressions::created_at.desc(), suppressions::phone.asc());
    Ok(match phone {
        Some(phone) => {
            let one = active.filter(suppressions::phone.eq(phone));
            let count: i64 = one.count().get_result(conn)?;
            let rows = one
                .order(order)
                .offset(offset)
                .limit(limit)
                .select(SuppressionRow::as_select())
                .load(conn)?;
            (count, rows)
        }
        None => {
            let count: i64 = active.count().get_result(conn)?;
            let rows = active
                .order(order)
                .offset(offset)
                .limit(limit)
                .select(SuppressionRow::as_select())
                .load(conn)?;
            (count, rows)
        }
    })
}

/// Lifts a phone's suppression by hand (`DELETE`): from now on, only a stop newer than
/// `now_ms` suppresses it again. Returns whether it was suppressed.
pub fn lift(
    conn: &mut DbConnection,
    tenant_id: i64,
    phone: &str,
    now_ms: i64,
) -> Result<bool, StorageError> {
    let target = suppressions::table
        .filter(suppressions::tenant_id.eq(tenant_id))
        .filter(suppressions::phone.eq(phone))
        .filter(suppressions::active.eq(true));
    let signal_at: Option<i64> = target
        .select(suppressions::signal_at)
        .first(conn)
        .optional()?;
    let Some(signal_at) = signal_at else {
        return Ok(false);
    };
    diesel::update(target)
        .set((
            suppressions::active.eq(false),
            suppressions::signal_at.eq(signal_at.max(now_ms)),
            suppressions::updated_at.eq(now_ms),
        ))
        .execute(conn)?;
    Ok(true)
}

/// The tenant owning one of our numbers (Meta's phone-number id).
pub fn tenant_of_number(
    conn: &mut DbConnection,
    phone_number_id: &str,
) -> Result<Option<i64>, StorageError> {
    Ok(phone_numbers::table
        .inner_join(business_accounts::table)
        .filter(phone_numbers::phone_number_id.eq(phone_number_id))
        .select(business_accounts::tenant_id)
        .first(conn)
        .optional()?)
}

/// The tenant owning a WABA.
pub fn tenant_of_waba(conn: &mut DbConnection, waba_id: &str) -> Result<Option<i64>, StorageError> {
    Ok(business_accounts::table
        .filter(business_accounts::waba_id.eq(waba_id))
        .select(business_accounts::tenant_id)
        .first(conn)
        .optional()?)
}

/// The tenant and recipient of a message named by our id (when its wamid, if any yet, is
/// `wamid`) or else by its wamid: the user a 131050 failure is about.
pub fn message_owner(
    conn: &mut DbConnection,
    message_id: Option<i64>,
    wamid: &str,
) -> Result<Option<(i64, String)>, StorageError> {
    if let Some(id) = message_id {
        let found: Option<(Option<String>, i64, String)> = messages::table
            .inner_join(bulk_sends::table.on(bulk_sends::send_key.eq(messages::send_key)))
            .filter(messages::id.eq(id))
            .select((messages::wamid, bulk_sends::tenant_id, messages::recipient))
            .first(conn)
            .optional()?;
        if let Some((stored, tenant_id, recipient)) = found {
            if stored.as_deref().is_none_or(|w| w == wamid) {
                return Ok(Some((tenant_id, recipient)));
            }
        }
    }
    Ok(messages::table
        .inner_join(bulk_sends::table.on(bulk_sends::send_key.eq(messages::send_key)))
        .filter(messages::wamid.eq(wamid))
        .select((bulk_sends::tenant_id, messages::recipient))
        .first(conn)
        .optional()?)
}
