//! Bulk sends and their messages: creation, the reads behind the API, and every state
//! change the engine and the webhook ingestion make.
//!
//! Counters live on the `bulk_sends` row, one column per exact state (`pending_count`
//! includes `dispatching`), and change in the same transaction as the messages they count,
//! always by relative increments; the status is re-derived from them right after
//! ([`crate::domain::message::derive_status`]). Every message update names the state it
//! expects (`WHERE id = ? AND state = ?`) and counts only if a row changed, so two writers
//! racing on one message (an HTTP answer and a webhook) can never count it twice.

use diesel::prelude::*;

use super::schema::{api_keys, bulk_sends, messages, phone_numbers, quota_ledger, templates};
use super::{DbConnection, StorageError};
use crate::domain::message::{
    apply_webhook, derive_status, BulkStatus, Counters, EngineStep, FailureSource, MessageState,
    WebhookStatus,
};
use crate::with_backend;

/// Rows per multi-row INSERT when creating messages (7 values a row stays far below both
/// backends' bind-parameter limits).
const INSERT_CHUNK: usize = 100;

/// A bulk send as stored.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = bulk_sends)]
pub struct BulkSendRow {
    pub id: String,
    pub tenant_id: i64,
    pub api_key_id: i64,
    pub phone_number_id: i64,
    pub template_id: i64,
    pub task_id: String,
    pub status: String,
    pub total_submitted: i32,
    pub unique_recipients: i32,
    pub invalid_recipients: i32,
    pub pending_count: i32,
    pub sent_count: i32,
    pub delivered_count: i32,
    pub read_count: i32,
    pub failed_count: i32,
    pub cancelled_count: i32,
    pub estimated_time_minutes: f64,
    pub paused: bool,
    pub pause_reason: Option<String>,
    pub failure_reason: Option<String>,
    pub callback_url: Option<String>,
    pub scheduled_at: Option<i64>,
    pub created_at: i64,
    pub started_at: Option<i64>,
    pub completed_at: Option<i64>,
}

impl BulkSendRow {
    /// The per-state counts.
    pub fn counters(&self) -> Counters {
        let n = |v: i32| u64::try_from(v).unwrap_or(0);
        Counters {
            pending: n(self.pending_count),
            sent: n(self.sent_count),
            delivered: n(self.delivered_count),
            read: n(self.read_count),
            failed: n(self.failed_count),
            cancelled: n(self.cancelled_count),
        }
    }

    /// The stored status.
    pub fn status(&self) -> BulkStatus {
        self.status.parse().unwrap_or(BulkStatus::Processing)
    }

    /// Whether nothing is left to send or reconcile.
    pub fn is_settled(&self) -> bool {
        self.pending_count == 0
    }
}

/// A send with what its status object shows of its template, number and creating key.
#[derive(Debug, Clone)]
pub struct SendDetail {
    pub send: BulkSendRow,
    pub template: (i64, String, String, String),
    pub phone: (i64, String, String),
    pub api_key: (i64, String),
}

/// A message as the API lists it.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = messages)]
pub struct MessageRow {
    pub id: i64,
    pub seq: i32,
    pub recipient: String,
    pub variables: String,
    pub state: String,
    pub attempts: i32,
    pub wamid: Option<String>,
    pub sent_at: Option<i64>,
    pub delivered_at: Option<i64>,
    pub read_at: Option<i64>,
    pub failed_at: Option<i64>,
    pub error_code: Option<i64>,
    pub error_message: Option<String>,
}

/// A pending message as the engine loads it to dispatch.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = messages)]
pub struct PendingMessage {
    pub id: i64,
    pub recipient: String,
    pub variables: String,
    pub button_variables: String,
    pub attempts: i32,
    pub next_attempt_at: i64,
}

/// A message whose dispatch outcome is unknown.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = messages)]
pub struct DispatchingMessage {
    pub id: i64,
    pub recipient: String,
    pub dispatched_at: Option<i64>,
}

/// What a new send stores.
#[derive(Debug, Clone)]
pub struct NewSend {
    pub id: String,
    pub tenant_id: i64,
    pub api_key_id: i64,
    pub phone_number_id: i64,
    pub template_id: i64,
    pub task_id: String,
    pub total_submitted: i32,
    pub invalid_recipients: i32,
    pub estimated_time_minutes: f64,
    pub callback_url: Option<String>,
    pub scheduled_at: Option<i64>,
    pub created_at: i64,
}

/// One recipient of a new send.
#[derive(Debug, Clone)]
pub struct NewMessage {
    pub recipient: String,
    /// JSON object of the template variables.
    pub variables: String,
    /// JSON object of the button variables.
    pub button_variables: String,
}

pub use crate::domain::message::CounterDelta;

/// Stores a send and all its messages (call inside a write transaction). Messages are
/// inserted in multi-row statements, in recipient order; each is due at `due_at`.
pub fn insert_send(
    conn: &mut DbConnection,
    send: &NewSend,
    recipients: Vec<NewMessage>,
    due_at: i64,
) -> Result<(), StorageError> {
    let unique = i32::try_from(recipients.len()).unwrap_or(i32::MAX);
    diesel::insert_into(bulk_sends::table)
        .values((
            bulk_sends::id.eq(&send.id),
            bulk_sends::tenant_id.eq(send.tenant_id),
            bulk_sends::api_key_id.eq(send.api_key_id),
            bulk_sends::phone_number_id.eq(send.phone_number_id),
            bulk_sends::template_id.eq(send.template_id),
            bulk_sends::task_id.eq(&send.task_id),
            bulk_sends::status.eq(BulkStatus::Queued.as_str()),
            bulk_sends::total_submitted.eq(send.total_submitted),
            bulk_sends::unique_recipients.eq(unique),
            bulk_sends::invalid_recipients.eq(send.invalid_recipients),
            bulk_sends::pending_count.eq(unique),
            bulk_sends::estimated_time_minutes.eq(send.estimated_time_minutes),
            bulk_sends::callback_url.eq(&send.callback_url),
            bulk_sends::scheduled_at.eq(send.scheduled_at),
            bulk_sends::created_at.eq(send.created_at),
        ))
        .execute(conn)?;
    // Full chunks go in as fixed-size arrays of owned rows: diesel then caches the prepared
    // statement (a multi-row INSERT of a runtime length is parsed afresh every time, which
    // costs as much as storing the rows). The rest goes in as one statement of its own length.
    let mut rows = recipients
        .into_iter()
        .enumerate()
        .map(|(seq, m)| message_row(&send.id, seq, m, due_at));
    loop {
        let chunk: Vec<NewMessageRow> = rows.by_ref().take(INSERT_CHUNK).collect();
        match <[NewMessageRow; INSERT_CHUNK]>::try_from(chunk) {
            Ok(full) => {
                with_backend!(conn, |c| diesel::insert_into(messages::table)
                    .values(full)
                    .execute(c))?;
            }
            Err(rest) => {
                if !rest.is_empty() {
                    with_backend!(conn, |c| diesel::insert_into(messages::table)
                        .values(&rest)
                        .execute(c))?;
                }
                return Ok(());
            }
        }
    }
}

/// The columns of one new `messages` row.
type NewMessageRow = (
    diesel::dsl::Eq<messages::bulk_send_id, String>,
    diesel::dsl::Eq<messages::seq, i32>,
    diesel::dsl::Eq<messages::recipient, String>,
    diesel::dsl::Eq<messages::variables, String>,
    diesel::dsl::Eq<messages::button_variables, String>,
    diesel::dsl::Eq<messages::state, &'static str>,
    diesel::dsl::Eq<messages::next_attempt_at, i64>,
);

/// One `messages` row of a new send, `seq` being its position in the request.
fn message_row(send_id: &str, seq: usize, m: NewMessage, due_at: i64) -> NewMessageRow {
    (
        messages::bulk_send_id.eq(send_id.to_owned()),
        messages::seq.eq(i32::try_from(seq).unwrap_or(i32::MAX)),
        messages::recipient.eq(m.recipient),
        messages::variables.eq(m.variables),
        messages::button_variables.eq(m.button_variables),
        messages::state.eq(MessageState::Pending.as_str()),
        messages::next_attempt_at.eq(due_at),
    )
}

macro_rules! detail_query {
    () => {
        bulk_sends::table
            .inner_join(templates::table)
            .inner_join(phone_numbers::table)
            .inner_join(api_keys::table)
    };
}

type DetailTuple = (
    BulkSendRow,
    (i64, String, String, String),
    (i64, String, String),
    (i64, String),
);

fn detail_from(t: DetailTuple) -> SendDetail {
    SendDetail {
        send: t.0,
        template: t.1,
        phone: t.2,
        api_key: t.3,
    }
}

macro_rules! detail_select {
    () => {
        (
            BulkSendRow::as_select(),
            (
                templates::id,
                templates::name,
                templates::language,
                templates::status,
            ),
            (
                phone_numbers::id,
                phone_numbers::display_phone_number,
                phone_numbers::verified_name,
            ),
            (api_keys::id, api_keys::name),
        )
    };
}

/// A tenant's send with its details; `None` for unknown ids and other tenants' sends.
pub fn load_detail(
    conn: &mut DbConnection,
    tenant_id: i64,
    send_id: &str,
) -> Result<Option<SendDetail>, StorageError> {
    let found: Option<DetailTuple> = detail_query!()
        .filter(bulk_sends::id.eq(send_id))
        .filter(bulk_sends::tenant_id.eq(tenant_id))
        .select(detail_select!())
        .first(conn)
        .optional()?;
    Ok(found.map(detail_from))
}

/// A send row by id, whatever its tenant (for the engine).
pub fn load_send(
    conn: &mut DbConnection,
    send_id: &str,
) -> Result<Option<BulkSendRow>, StorageError> {
    Ok(bulk_sends::table
        .find(send_id)
        .select(BulkSendRow::as_select())
        .first(conn)
        .optional()?)
}

/// Filters of the send list.
#[derive(Debug, Clone, Default)]
pub struct ListFilter {
    pub status: Option<String>,
    pub template_id: Option<i64>,
    pub template_name: Option<String>,
    /// Inclusive lower bound, unix ms.
    pub created_from: Option<i64>,
    /// Exclusive upper bound, unix ms.
    pub created_until: Option<i64>,
}

/// A page of a tenant's sends, newest first, and the total matching.
pub fn list_sends(
    conn: &mut DbConnection,
    tenant_id: i64,
    filter: &ListFilter,
    offset: i64,
    limit: i64,
) -> Result<(i64, Vec<SendDetail>), StorageError> {
    macro_rules! filtered {
        () => {{
            let mut q = detail_query!()
                .filter(bulk_sends::tenant_id.eq(tenant_id))
                .into_boxed();
            if let Some(status) = &filter.status {
                q = q.filter(bulk_sends::status.eq(status.clone()));
            }
            if let Some(id) = filter.template_id {
                q = q.filter(bulk_sends::template_id.eq(id));
            }
            if let Some(name) = &filter.template_name {
                q = q.filter(templates::name.eq(name.clone()));
            }
            if let Some(from) = filter.created_from {
                q = q.filter(bulk_sends::created_at.ge(from));
            }
            if let Some(until) = filter.created_until {
                q = q.filter(bulk_sends::created_at.lt(until));
            }
            q
        }};
    }
    let count: i64 = filtered!().count().get_result(conn)?;
    let rows: Vec<DetailTuple> = filtered!()
        .order((bulk_sends::created_at.desc(), bulk_sends::id.desc()))
        .offset(offset)
        .limit(limit)
        .select(detail_select!())
        .load(conn)?;
    Ok((count, rows.into_iter().map(detail_from).collect()))
}

/// The states an API status filter matches (`pending` covers `dispatching`).
pub fn states_for_filter(api_status: &str) -> Option<&'static [&'static str]> {
    Some(match api_status {
        "pending" => &["pending", "dispatching"],
        "sent" => &["sent"],
        "delivered" => &["delivered"],
        "read" => &["read"],
        "failed" => &["failed"],
        "cancelled" => &["cancelled"],
        _ => return None,
    })
}

/// A page of a send's messages in recipient order, and the total matching.
pub fn messages_page(
    conn: &mut DbConnection,
    send_id: &str,
    states: Option<&[&str]>,
    offset: i64,
    limit: i64,
) -> Result<(i64, Vec<MessageRow>), StorageError> {
    let mut count_q = messages::table
        .filter(messages::bulk_send_id.eq(send_id))
        .into_boxed();
    let mut rows_q = messages::table
        .filter(messages::bulk_send_id.eq(send_id))
        .into_boxed();
    if let Some(states) = states {
        count_q = count_q.filter(messages::state.eq_any(states.to_vec()));
        rows_q = rows_q.filter(messages::state.eq_any(states.to_vec()));
    }
    let count: i64 = count_q.count().get_result(conn)?;
    let rows = rows_q
        .order(messages::seq)
        .offset(offset)
        .limit(limit)
        .select(MessageRow::as_select())
        .load(conn)?;
    Ok((count, rows))
}

/// Messages after recipient position `after_seq`, for streaming an export in chunks.
pub fn messages_after(
    conn: &mut DbConnection,
    send_id: &str,
    after_seq: i32,
    limit: i64,
) -> Result<Vec<MessageRow>, StorageError> {
    Ok(messages::table
        .filter(messages::bulk_send_id.eq(send_id))
        .filter(messages::seq.gt(after_seq))
        .order(messages::seq)
        .limit(limit)
        .select(MessageRow::as_select())
        .load(conn)?)
}

/// Sends that still have messages pending or in flight (resumed at boot).
pub fn unsettled_sends(conn: &mut DbConnection) -> Result<Vec<BulkSendRow>, StorageError> {
    Ok(bulk_sends::table
        .filter(bulk_sends::pending_count.gt(0))
        .order(bulk_sends::created_at)
        .select(BulkSendRow::as_select())
        .load(conn)?)
}

/// Position of the engine's scan through a send's pending messages: `(next_attempt_at, id)`.
pub type PendingCursor = (i64, i64);

/// The next pending messages due by `now_ms`, after `cursor`, in (due time, id) order.
pub fn due_pending(
    conn: &mut DbConnection,
    send_id: &str,
    cursor: PendingCursor,
    now_ms: i64,
    limit: i64,
) -> Result<Vec<PendingMessage>, StorageError> {
    let (after_at, after_id) = cursor;
    Ok(messages::table
        .filter(messages::bulk_send_id.eq(send_id))
        .filter(messages::state.eq(MessageState::Pending.as_str()))
        .filter(messages::next_attempt_at.le(now_ms))
        .filter(
            messages::next_attempt_at
                .gt(after_at)
                .or(messages::next_attempt_at
                    .eq(after_at)
                    .and(messages::id.gt(after_id))),
        )
        .order((messages::next_attempt_at, messages::id))
        .limit(limit)
        .select(PendingMessage::as_select())
        .load(conn)?)
}

/// The earliest due time after `now_ms` of a send's pending messages (a retry's), to know
/// when to look for due messages again; `None` when no pending message is due later.
pub fn next_due_after(
    conn: &mut DbConnection,
    send_id: &str,
    now_ms: i64,
) -> Result<Option<i64>, StorageError> {
    Ok(messages::table
        .filter(messages::bulk_send_id.eq(send_id))
        .filter(messages::state.eq(MessageState::Pending.as_str()))
        .filter(messages::next_attempt_at.gt(now_ms))
        .select(diesel::dsl::min(messages::next_attempt_at))
        .first(conn)?)
}

/// A send's messages whose dispatch outcome is unknown.
pub fn dispatching_messages(
    conn: &mut DbConnection,
    send_id: &str,
) -> Result<Vec<DispatchingMessage>, StorageError> {
    Ok(messages::table
        .filter(messages::bulk_send_id.eq(send_id))
        .filter(messages::state.eq(MessageState::Dispatching.as_str()))
        .order(messages::id)
        .select(DispatchingMessage::as_select())
        .load(conn)?)
}

/// Applies counter changes to a send and re-derives its status; returns the new status.
pub fn adjust_counters(
    conn: &mut DbConnection,
    send_id: &str,
    delta: &CounterDelta,
    now_ms: i64,
) -> Result<Option<BulkStatus>, StorageError> {
    if !delta.is_zero() {
        diesel::update(bulk_sends::table.find(send_id))
            .set((
                bulk_sends::pending_count.eq(bulk_sends::pending_count + delta.pending),
                bulk_sends::sent_count.eq(bulk_sends::sent_count + delta.sent),
                bulk_sends::delivered_count.eq(bulk_sends::delivered_count + delta.delivered),
                bulk_sends::read_count.eq(bulk_sends::read_count + delta.read),
                bulk_sends::failed_count.eq(bulk_sends::failed_count + delta.failed),
                bulk_sends::cancelled_count.eq(bulk_sends::cancelled_count + delta.cancelled),
            ))
            .execute(conn)?;
    }
    refresh_status(conn, send_id, now_ms)
}

/// Re-derives a send's status from its counters and flags; sets `completed_at` the first
/// time it settles. A change of status enqueues the client's `bulk_send.status_changed`
/// event in the same transaction (for sends with a `callback_url`, see `callbacks`).
pub fn refresh_status(
    conn: &mut DbConnection,
    send_id: &str,
    now_ms: i64,
) -> Result<Option<BulkStatus>, StorageError> {
    let Some(row) = load_send(conn, send_id)? else {
        return Ok(None);
    };
    let current = row.status();
    let status = derive_status(
        &row.counters(),
        row.started_at.is_some(),
        current == BulkStatus::Cancelled,
        row.failure_reason.is_some(),
    );
    let completed_at = match row.completed_at {
        None if row.is_settled() && status.is_finished() => Some(now_ms),
        other => other,
    };
    if status != current || completed_at != row.completed_at {
        diesel::update(bulk_sends::table.find(send_id))
            .set((
                bulk_sends::status.eq(status.as_str()),
                bulk_sends::completed_at.eq(completed_at),
            ))
            .execute(conn)?;
    }
    if status != current {
        // The client's event commits (or not) with the change it reports.
        super::callbacks::enqueue_status_change(conn, &row, now_ms)?;
    }
    Ok(Some(status))
}

/// What [`mark_dispatching`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DispatchMarks {
    /// The ids that were still pending and are now `dispatching` (only those may be sent).
    Marked(Vec<i64>),
    /// Nothing was marked: the stored send is paused, cancelled or stopped (a control or a
    /// webhook the caller has not seen yet), or gone.
    Held,
}

/// Marks granted messages `dispatching` (attempt counted, time noted) before their HTTP
/// calls, records their recipients in the portfolio's quota ledger, and marks the send
/// started.
///
/// The stored send decides, in the same transaction: if it is paused, cancelled or stopped,
/// nothing is marked. An actor's in-memory flags can lag behind a control or webhook whose
/// write is committing while the actor reads the row; the database cannot.
pub fn mark_dispatching(
    conn: &mut DbConnection,
    send_id: &str,
    portfolio_id: &str,
    granted: &[(i64, String)],
    now_ms: i64,
) -> Result<DispatchMarks, StorageError> {
    let Some(send) = load_send(conn, send_id)? else {
        return Ok(DispatchMarks::Held);
    };
    if send.paused || send.failure_reason.is_some() || send.status() == BulkStatus::Cancelled {
        return Ok(DispatchMarks::Held);
    }
    let mut marked = Vec::with_capacity(granted.len());
    for (id, recipient) in granted {
        let step = EngineStep::StartDispatch;
        let moved = diesel::update(message_in_state(*id, step.from().as_str()))
            .set((
                messages::state.eq(step.to().as_str()),
                messages::attempts.eq(messages::attempts + 1),
                messages::dispatched_at.eq(now_ms),
            ))
            .execute(conn)?;
        if moved == 1 {
            marked.push(*id);
            record_quota(conn, portfolio_id, recipient, now_ms)?;
        }
    }
    let started = diesel::update(
        bulk_sends::table
            .find(send_id)
            .filter(bulk_sends::started_at.is_null()),
    )
    .set(bulk_sends::started_at.eq(now_ms))
    .execute(conn)?;
    if started > 0 {
        refresh_status(conn, send_id, now_ms)?;
    }
    Ok(DispatchMarks::Marked(marked))
}

fn record_quota(
    conn: &mut DbConnection,
    portfolio_id: &str,
    recipient: &str,
    now_ms: i64,
) -> Result<(), StorageError> {
    let insert = diesel::insert_into(quota_ledger::table)
        .values((
            quota_ledger::portfolio_id.eq(portfolio_id),
            quota_ledger::recipient.eq(recipient),
            quota_ledger::last_sent_at.eq(now_ms),
        ))
        .on_conflict((quota_ledger::portfolio_id, quota_ledger::recipient))
        .do_update()
        .set(quota_ledger::last_sent_at.eq(now_ms));
    with_backend!(conn, |c| insert.execute(c))?;
    Ok(())
}

/// Which of `recipients` a portfolio messaged since `since_ms` (they cost no quota).
pub fn recipients_in_window(
    conn: &mut DbConnection,
    portfolio_id: &str,
    recipients: &[String],
    since_ms: i64,
) -> Result<std::collections::HashSet<String>, StorageError> {
    let mut found = std::collections::HashSet::new();
    for chunk in recipients.chunks(INSERT_CHUNK) {
        let rows: Vec<String> = quota_ledger::table
            .filter(quota_ledger::portfolio_id.eq(portfolio_id))
            .filter(quota_ledger::last_sent_at.gt(since_ms))
            .filter(quota_ledger::recipient.eq_any(chunk))
            .select(quota_ledger::recipient)
            .load(conn)?;
        found.extend(rows);
    }
    Ok(found)
}

/// When each recipient counted in a portfolio's window leaves it (last send + 24 h),
/// ascending.
pub fn window_expiries(
    conn: &mut DbConnection,
    portfolio_id: &str,
    since_ms: i64,
) -> Result<Vec<i64>, StorageError> {
    let sent: Vec<i64> = quota_ledger::table
        .filter(quota_ledger::portfolio_id.eq(portfolio_id))
        .filter(quota_ledger::last_sent_at.gt(since_ms))
        .order(quota_ledger::last_sent_at)
        .select(quota_ledger::last_sent_at)
        .load(conn)?;
    Ok(sent
        .into_iter()
        .map(|t| t + crate::domain::eta::WINDOW_MS)
        .collect())
}

/// The ledger entries of a portfolio inside the window (recipient, last sent), for the
/// limiter to rebuild its quota after a restart.
pub fn quota_window(
    conn: &mut DbConnection,
    portfolio_id: &str,
    since_ms: i64,
) -> Result<Vec<(String, i64)>, StorageError> {
    Ok(quota_ledger::table
        .filter(quota_ledger::portfolio_id.eq(portfolio_id))
        .filter(quota_ledger::last_sent_at.gt(since_ms))
        .select((quota_ledger::recipient, quota_ledger::last_sent_at))
        .load(conn)?)
}

/// How a dispatch attempt ended (decided in `domain::dispatch`).
pub use crate::domain::dispatch::Outcome;

/// One message, if it is still in `state` (every engine update names the state it expects).
#[diesel::dsl::auto_type]
fn message_in_state(id: i64, state: &'static str) -> _ {
    messages::table
        .filter(messages::id.eq(id))
        .filter(messages::state.eq(state))
}

/// The columns an outcome sets besides the state (`None`: left as is).
#[derive(AsChangeset)]
#[diesel(table_name = messages)]
struct OutcomeColumns<'a> {
    state: &'static str,
    wamid: Option<&'a str>,
    sent_at: Option<i64>,
    failed_at: Option<i64>,
    next_attempt_at: Option<i64>,
    error_code: Option<Option<i64>>,
    error_message: Option<&'a str>,
}

impl<'a> OutcomeColumns<'a> {
    fn of(outcome: &'a Outcome, now_ms: i64) -> Self {
        let mut columns = OutcomeColumns {
            state: outcome.step().to().as_str(),
            wamid: None,
            sent_at: None,
            failed_at: None,
            next_attempt_at: None,
            error_code: None,
            error_message: None,
        };
        match outcome {
            Outcome::Accepted { wamid } => {
                columns.wamid = Some(wamid);
                columns.sent_at = Some(now_ms);
            }
            Outcome::Retry {
                next_attempt_at,
                error_code,
                error_message,
            } => {
                columns.next_attempt_at = Some(*next_attempt_at);
                columns.error_code = Some(*error_code);
                columns.error_message = Some(error_message);
            }
            Outcome::Reset { next_attempt_at } => columns.next_attempt_at = Some(*next_attempt_at),
            Outcome::Failed {
                error_code,
                error_message,
            } => {
                columns.failed_at = Some(now_ms);
                columns.error_code = Some(*error_code);
                columns.error_message = Some(error_message);
            }
            Outcome::Cancelled => {}
        }
        columns
    }
}

/// Records the outcomes of dispatch attempts and adjusts the send's counters; returns the
/// send's status after. Each is its [`Outcome::step`], applied only to a message still in the
/// step's source state (`dispatching`), so a webhook that got there first wins.
pub fn record_outcomes(
    conn: &mut DbConnection,
    send_id: &str,
    outcomes: &[(i64, Outcome)],
    now_ms: i64,
) -> Result<Option<BulkStatus>, StorageError> {
    let mut delta = CounterDelta::default();
    for (id, outcome) in outcomes {
        let step = outcome.step();
        let moved = diesel::update(message_in_state(*id, step.from().as_str()))
            .set(OutcomeColumns::of(outcome, now_ms))
            .execute(conn)?;
        if moved == 1 {
            delta.moved(step.from(), step.to());
        }
    }
    adjust_counters(conn, send_id, &delta, now_ms)
}

/// A status update from a Meta webhook, resolved to our message where possible.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusUpdate {
    /// Our message id from `biz_opaque_callback_data`, when present.
    pub message_id: Option<i64>,
    pub wamid: String,
    pub status: WebhookStatus,
    /// When Meta says it happened (unix ms).
    pub at_ms: i64,
    /// Meta's error on `failed`.
    pub error: Option<(i64, String)>,
}

/// What applying webhook updates did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AppliedUpdates {
    pub applied: usize,
    pub duplicates: usize,
    pub unknown: usize,
    /// Sends whose counters changed.
    pub touched_sends: Vec<String>,
}

/// Applies webhook status updates monotonically (see `domain::message::apply_webhook`),
/// adjusting each touched send's counters once.
pub fn apply_status_updates(
    conn: &mut DbConnection,
    updates: &[StatusUpdate],
    now_ms: i64,
) -> Result<AppliedUpdates, StorageError> {
    let mut result = AppliedUpdates::default();
    let mut deltas: Vec<(String, CounterDelta)> = Vec::new();
    for update in updates {
        type Current = (
            i64,
            String,
            String,
            Option<String>,
            Option<i64>,
            Option<i64>,
            Option<i64>,
        );
        let by_id: Option<Current> = match update.message_id {
            Some(id) => messages::table
                .find(id)
                .select(CURRENT_COLUMNS)
                .first(conn)
                .optional()?
                .filter(|row: &Current| row.3.as_deref().is_none_or(|w| w == update.wamid)),
            None => None,
        };
        let found = match by_id {
            Some(row) => Some(row),
            None => messages::table
                .filter(messages::wamid.eq(&update.wamid))
                .select(CURRENT_COLUMNS)
                .first(conn)
                .optional()?,
        };
        let Some((id, send_id, state, wamid, error_code, sent_at, delivered_at)) = found else {
            result.unknown += 1;
            continue;
        };
        let Ok(current) = state.parse::<MessageState>() else {
            result.unknown += 1;
            continue;
        };
        let Some(next) = apply_webhook(
            current,
            update.status,
            FailureSource::from_meta_code(error_code),
        ) else {
            result.duplicates += 1;
            continue;
        };
        let row = WebhookTarget {
            id,
            from: current,
            to: next,
            wamid: wamid.unwrap_or_else(|| update.wamid.clone()),
            sent_at,
            delivered_at,
        };
        if !row.apply(conn, update)? {
            result.duplicates += 1;
            continue;
        }
        result.applied += 1;
        match deltas.iter_mut().find(|(s, _)| *s == send_id) {
            Some((_, d)) => d.moved(current, next),
            None => {
                let mut d = CounterDelta::default();
                d.moved(current, next);
                deltas.push((send_id, d));
            }
        }
    }
    for (send_id, delta) in &deltas {
        adjust_counters(conn, send_id, delta, now_ms)?;
    }
    result.touched_sends = deltas.into_iter().map(|(s, _)| s).collect();
    Ok(result)
}

/// The columns read before applying a webhook to a message.
const CURRENT_COLUMNS: (
    messages::id,
    messages::bulk_send_id,
    messages::state,
    messages::wamid,
    messages::error_code,
    messages::sent_at,
    messages::delivered_at,
) = (
    messages::id,
    messages::bulk_send_id,
    messages::state,
    messages::wamid,
    messages::error_code,
    messages::sent_at,
    messages::delivered_at,
);

/// One message about to move because of a webhook, with the times it already has.
struct WebhookTarget {
    id: i64,
    from: MessageState,
    to: MessageState,
    wamid: String,
    sent_at: Option<i64>,
    delivered_at: Option<i64>,
}

impl WebhookTarget {
    /// Moves the message if it is still in `from`, filling the funnel's times: a `read`
    /// implies delivered and sent, a `delivered` implies sent. Returns whether it moved.
    fn apply(&self, conn: &mut DbConnection, update: &StatusUpdate) -> Result<bool, StorageError> {
        let at = update.at_ms;
        let target = message_in_state(self.id, self.from.as_str());
        let state = messages::state.eq(self.to.as_str());
        let wamid = messages::wamid.eq(&self.wamid);
        let sent_at = messages::sent_at.eq(self.sent_at.unwrap_or(at));
        let changed = match self.to {
            MessageState::Sent => diesel::update(target)
                .set((state, wamid, sent_at))
                .execute(conn)?,
            MessageState::Delivered => diesel::update(target)
                .set((state, wamid, sent_at, messages::delivered_at.eq(at)))
                .execute(conn)?,
            MessageState::Read => diesel::update(target)
                .set((
                    state,
                    wamid,
                    sent_at,
                    messages::delivered_at.eq(self.delivered_at.unwrap_or(at)),
                    messages::read_at.eq(at),
                ))
                .execute(conn)?,
            MessageState::Failed => {
                let (code, message) = match &update.error {
                    Some((code, message)) => (Some(*code), Some(message.as_str())),
                    None => (None, Some("failed (Meta gave no error)")),
                };
                diesel::update(target)
                    .set((
                        state,
                        wamid,
                        messages::failed_at.eq(at),
                        messages::error_code.eq(code),
                        messages::error_message.eq(message),
                    ))
                    .execute(conn)?
            }
            MessageState::Pending | MessageState::Dispatching | MessageState::Cancelled => 0,
        };
        if changed == 1 && self.from == MessageState::Failed {
            // Meta's word overrides a failure we decided on our own (unknown outcome).
            diesel::update(messages::table.find(self.id))
                .set((
                    messages::failed_at.eq(None::<i64>),
                    messages::error_code.eq(None::<i64>),
                    messages::error_message.eq(None::<String>),
                ))
                .execute(conn)?;
        }
        Ok(changed == 1)
    }
}

/// Cancels a send: every pending message becomes `cancelled` (in-flight ones finish), the
/// status becomes `CANCELLED`. Returns `false` when the send had already finished.
pub fn cancel_send(
    conn: &mut DbConnection,
    send_id: &str,
    now_ms: i64,
) -> Result<bool, StorageError> {
    let Some(row) = load_send(conn, send_id)? else {
        return Ok(false);
    };
    if row.status().is_finished() {
        return Ok(false);
    }
    let step = EngineStep::CancelPending;
    let n = diesel::update(
        messages::table
            .filter(messages::bulk_send_id.eq(send_id))
            .filter(messages::state.eq(step.from().as_str())),
    )
    .set(messages::state.eq(step.to().as_str()))
    .execute(conn)?;
    diesel::update(bulk_sends::table.find(send_id))
        .set((
            bulk_sends::status.eq(BulkStatus::Cancelled.as_str()),
            bulk_sends::paused.eq(false),
        ))
        .execute(conn)?;
    adjust_counters(conn, send_id, &CounterDelta::moved_many(step, n), now_ms)?;
    // The status was set above, not derived, so `refresh_status` saw no change to report.
    super::callbacks::enqueue_status_change(conn, &row, now_ms)?;
    Ok(true)
}

/// Stops a send for good after a fatal error: pending messages fail with `reason`, the
/// status becomes `FAILED` with the reason recorded.
pub fn stop_send(
    conn: &mut DbConnection,
    send_id: &str,
    reason: &str,
    now_ms: i64,
) -> Result<(), StorageError> {
    let step = EngineStep::StopPending;
    let n = diesel::update(
        messages::table
            .filter(messages::bulk_send_id.eq(send_id))
            .filter(messages::state.eq(step.from().as_str())),
    )
    .set((
        messages::state.eq(step.to().as_str()),
        messages::failed_at.eq(now_ms),
        messages::error_message.eq(reason),
    ))
    .execute(conn)?;
    diesel::update(bulk_sends::table.find(send_id))
        .set((
            bulk_sends::failure_reason.eq(reason),
            bulk_sends::paused.eq(false),
        ))
        .execute(conn)?;
    adjust_counters(conn, send_id, &CounterDelta::moved_many(step, n), now_ms)?;
    Ok(())
}

/// Pauses or resumes a send (`reason` shown as `pause_reason`).
pub fn set_paused(
    conn: &mut DbConnection,
    send_id: &str,
    paused: bool,
    reason: Option<&str>,
) -> Result<(), StorageError> {
    diesel::update(bulk_sends::table.find(send_id))
        .set((
            bulk_sends::paused.eq(paused),
            bulk_sends::pause_reason.eq(if paused { reason } else { None }),
        ))
        .execute(conn)?;
    Ok(())
}

/// Sends on a template that are not finished: something still pending, not cancelled, not
/// stopped by a fatal error.
pub fn unfinished_sends_on_template(
    conn: &mut DbConnection,
    template_id: i64,
) -> Result<Vec<BulkSendRow>, StorageError> {
    Ok(bulk_sends::table
        .filter(bulk_sends::template_id.eq(template_id))
        .filter(bulk_sends::pending_count.gt(0))
        .filter(bulk_sends::failure_reason.is_null())
        .filter(bulk_sends::status.ne(BulkStatus::Cancelled.as_str()))
        .order(bulk_sends::created_at)
        .select(BulkSendRow::as_select())
        .load(conn)?)
}

/// Pauses a send with `reason` unless it is already paused (a client's pause keeps its
/// reason, so a later "template approved" does not resume it). Returns whether it changed.
pub fn pause_unless_paused(
    conn: &mut DbConnection,
    send_id: &str,
    reason: &str,
) -> Result<bool, StorageError> {
    let changed = diesel::update(
        bulk_sends::table
            .find(send_id)
            .filter(bulk_sends::paused.eq(false)),
    )
    .set((
        bulk_sends::paused.eq(true),
        bulk_sends::pause_reason.eq(reason),
    ))
    .execute(conn)?;
    Ok(changed > 0)
}

/// Resumes a send if it is paused with exactly `reason`. Returns whether it changed.
pub fn resume_if_paused_with(
    conn: &mut DbConnection,
    send_id: &str,
    reason: &str,
) -> Result<bool, StorageError> {
    let changed = diesel::update(
        bulk_sends::table
            .find(send_id)
            .filter(bulk_sends::paused.eq(true))
            .filter(bulk_sends::pause_reason.eq(reason)),
    )
    .set((
        bulk_sends::paused.eq(false),
        bulk_sends::pause_reason.eq(None::<String>),
    ))
    .execute(conn)?;
    Ok(changed > 0)
}
