//! The engine's dispatch path: due messages, the durable `dispatching` mark, outcomes.

use std::collections::HashSet;

use diesel::prelude::*;

use super::*;
use crate::domain::message::{BulkStatus, EngineStep, MessageState};
use crate::storage::schema::{bulk_sends, messages};
use crate::storage::{status, DbConnection, StorageError};
use crate::with_backend;

/// Messages marked `dispatching` by one statement at most (SQLite binds each id).
const MARK_CHUNK: usize = 500;

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
        .filter(of_send(send_id))
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
        .filter(of_send(send_id))
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
        .filter(of_send(send_id))
        .filter(messages::state.eq(MessageState::Dispatching.as_str()))
        .order(messages::id)
        .select(DispatchingMessage::as_select())
        .load(conn)?)
}

/// What [`mark_dispatching`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DispatchMarks {
    /// The ids that were still pending and are now `dispatching` (only those may be sent).
    Marked(Vec<i64>),
    /// Nothing was marked: the stored send is paused, cancelled or stopped (a control or a
    /// webhook the caller has not seen yet), or gone.
    Held,
    /// Nothing was marked: the node no longer holds the portfolio's lease under the epoch it
    /// claimed with (another node took it over).
    Fenced,
}

/// The lease a claim is made under on a cluster: the node and the epoch of its lease on the
/// send's portfolio.
#[derive(Debug, Clone, Copy)]
pub struct ClaimLease<'a> {
    pub node: &'a str,
    pub epoch: i64,
}

/// Marks granted messages `dispatching` (attempt counted, time noted) before their HTTP
/// calls, records their recipients in the portfolio's quota ledger, and marks the send
/// started.
///
/// The stored send decides, in the same transaction: if it is paused, cancelled or stopped,
/// nothing is marked. An actor's in-memory flags can lag behind a control or webhook whose
/// write is committing while the actor reads the row; the database cannot. On a cluster the
/// lease decides first (a fenced claim): if `lease` is no longer the portfolio's current one,
/// nothing is marked, and the lease row stays locked against a takeover until this commits.
pub fn mark_dispatching(
    conn: &mut DbConnection,
    send_id: &str,
    portfolio_id: &str,
    granted: &[(i64, String)],
    now_ms: i64,
    lease: Option<ClaimLease<'_>>,
) -> Result<DispatchMarks, StorageError> {
    if let Some(lease) = lease {
        if !crate::storage::cluster::lease_is_held(conn, portfolio_id, lease.node, lease.epoch)? {
            return Ok(DispatchMarks::Fenced);
        }
    }
    let Some(send) = load_send(conn, send_id)? else {
        return Ok(DispatchMarks::Held);
    };
    if send.paused || send.failure_reason.is_some() || send.status() == BulkStatus::Cancelled {
        return Ok(DispatchMarks::Held);
    }
    // One statement per chunk for the whole grant (the guard is the source state: a message a
    // webhook or a control moved meanwhile is not marked), then one upsert into the quota
    // ledger for the recipients of the messages marked.
    let step = EngineStep::StartDispatch;
    let mut marked: Vec<i64> = Vec::with_capacity(granted.len());
    for chunk in granted.chunks(MARK_CHUNK) {
        let ids: Vec<i64> = chunk.iter().map(|(id, _)| *id).collect();
        let update = diesel::update(
            messages::table
                .filter(messages::id.eq_any(&ids))
                .filter(messages::state.eq(step.from().as_str())),
        )
        .set((
            messages::state.eq(step.to().as_str()),
            messages::attempts.eq(messages::attempts + 1),
            messages::dispatched_at.eq(now_ms),
        ))
        .returning(messages::id);
        let moved: Vec<i64> = with_backend!(conn, |c| update.get_results(c))?;
        marked.extend(moved);
    }
    let marked_set: HashSet<i64> = marked.iter().copied().collect();
    let recipients: Vec<&str> = granted
        .iter()
        .filter(|(id, _)| marked_set.contains(id))
        .map(|(_, recipient)| recipient.as_str())
        .collect();
    crate::storage::quota::record_quota(conn, portfolio_id, &recipients, now_ms)?;
    if send.started_at.is_some() {
        // `started_at` is set once and never cleared: a send read as started needs no write.
        return Ok(DispatchMarks::Marked(marked));
    }
    let started = diesel::update(
        bulk_sends::table
            .find(send_id)
            .filter(bulk_sends::started_at.is_null()),
    )
    .set(bulk_sends::started_at.eq(now_ms))
    .execute(conn)?;
    if started > 0 {
        status::refresh_status(conn, send_id, now_ms)?;
    }
    Ok(DispatchMarks::Marked(marked))
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
///
/// On PostgreSQL the whole batch is one statement (`UPDATE … FROM unnest(…)`); SQLite, in the
/// process, takes one cheap statement per outcome.
pub fn record_outcomes(
    conn: &mut DbConnection,
    send_id: &str,
    outcomes: &[(i64, Outcome)],
    now_ms: i64,
) -> Result<Option<BulkStatus>, StorageError> {
    let mut moved: HashSet<i64> = match conn {
        DbConnection::Postgres(pg) => outcomes
            .chunks(OUTCOME_CHUNK)
            .map(|chunk| record_outcomes_pg(pg, chunk, now_ms))
            .collect::<Result<Vec<_>, _>>()?
            .into_iter()
            .flatten()
            .collect(),
        DbConnection::Sqlite(_) => {
            let mut moved = HashSet::with_capacity(outcomes.len());
            for (id, outcome) in outcomes {
                let step = outcome.step();
                let n = diesel::update(message_in_state(*id, step.from().as_str()))
                    .set(OutcomeColumns::of(outcome, now_ms))
                    .execute(conn)?;
                if n == 1 {
                    moved.insert(*id);
                }
            }
            moved
        }
    };
    let mut delta = CounterDelta::default();
    for (id, outcome) in outcomes {
        // Each moved message counts once (an id given twice moves once).
        if moved.remove(id) {
            let step = outcome.step();
            delta.moved(step.from(), step.to());
        }
    }
    status::adjust_counters(conn, send_id, &delta, now_ms)
}

/// Outcomes written by one statement at most on PostgreSQL.
const OUTCOME_CHUNK: usize = 1_000;

/// An id a set-based update moved.
#[derive(QueryableByName)]
struct MovedId {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    id: i64,
}

/// One `UPDATE … FROM unnest(…)` for a batch of outcomes: the same columns as
/// [`OutcomeColumns`] (a `NULL` keeps the stored value, `set_error` says whether the error
/// columns are written), guarded by the source state. Returns the ids it moved.
fn record_outcomes_pg(
    conn: &mut diesel::PgConnection,
    outcomes: &[(i64, Outcome)],
    now_ms: i64,
) -> Result<Vec<i64>, StorageError> {
    use diesel::sql_types::{Array, BigInt, Bool, Nullable, Text};
    let n = outcomes.len();
    let mut ids = Vec::with_capacity(n);
    let mut states = Vec::with_capacity(n);
    let mut wamids = Vec::with_capacity(n);
    let mut sent_at = Vec::with_capacity(n);
    let mut failed_at = Vec::with_capacity(n);
    let mut next_attempt_at = Vec::with_capacity(n);
    let mut set_error = Vec::with_capacity(n);
    let mut error_codes = Vec::with_capacity(n);
    let mut error_messages = Vec::with_capacity(n);
    for (id, outcome) in outcomes {
        let c = OutcomeColumns::of(outcome, now_ms);
        ids.push(*id);
        states.push(c.state);
        wamids.push(c.wamid);
        sent_at.push(c.sent_at);
        failed_at.push(c.failed_at);
        next_attempt_at.push(c.next_attempt_at);
        set_error.push(c.error_code.is_some());
        error_codes.push(c.error_code.flatten());
        error_messages.push(c.error_message);
    }
    let moved: Vec<MovedId> = diesel::sql_query(
        "UPDATE messages AS m SET \
             state = u.state, \
             wamid = COALESCE(u.wamid, m.wamid), \
             sent_at = COALESCE(u.sent_at, m.sent_at), \
             failed_at = COALESCE(u.failed_at, m.failed_at), \
             next_attempt_at = COALESCE(u.next_attempt_at, m.next_attempt_at), \
             error_code = CASE WHEN u.set_error THEN u.error_code ELSE m.error_code END, \
             error_message = CASE WHEN u.set_error THEN u.error_message ELSE m.error_message END \
         FROM unnest($1, $2, $3, $4, $5, $6, $7, $8, $9) \
             AS u(id, state, wamid, sent_at, failed_at, next_attempt_at, set_error, error_code, error_message) \
         WHERE m.id = u.id AND m.state = $10 \
         RETURNING m.id",
    )
    .bind::<Array<BigInt>, _>(&ids)
    .bind::<Array<Text>, _>(&states)
    .bind::<Array<Nullable<Text>>, _>(&wamids)
    .bind::<Array<Nullable<BigInt>>, _>(&sent_at)
    .bind::<Array<Nullable<BigInt>>, _>(&failed_at)
    .bind::<Array<Nullable<BigInt>>, _>(&next_attempt_at)
    .bind::<Array<Bool>, _>(&set_error)
    .bind::<Array<Nullable<BigInt>>, _>(&error_codes)
    .bind::<Array<Nullable<Text>>, _>(&error_messages)
    .bind::<Text, _>(MessageState::Dispatching.as_str())
    .load(conn)?;
    Ok(moved.into_iter().map(|m| m.id).collect())
}
