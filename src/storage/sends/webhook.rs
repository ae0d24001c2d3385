//! Meta's status webhooks applied to messages, monotonic and duplicate-proof.

use std::collections::{HashMap, HashSet};

use diesel::prelude::*;

use super::*;
use crate::domain::message::{apply_webhook, FailureSource, MessageState, WebhookStatus};
use crate::storage::schema::{bulk_sends, messages};
use crate::storage::{status, DbConnection, StorageError};

/// A status update from a Meta webhook, resolved to our message where possible.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusUpdate {
    /// Our message id from `biz_opaque_callback_data`, when present.
    pub message_id: Option<i64>,
    /// The send that `biz_opaque_callback_data` names with it: a message is found by its id
    /// only if it belongs to that send (ids are per database, and a status for a message of
    /// another database, such as another installation on the same Meta app, must not land on
    /// one of ours).
    pub send_id: Option<String>,
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
///
/// Set-based: the messages named are read in two statements (by our id, then by wamid for
/// the rest), the updates are applied in order to an in-memory copy (so a `sent`, `delivered`
/// and `read` of one message in one batch land as one write), and each touched message is
/// written once, guarded by the state it was read in — on PostgreSQL as one
/// `UPDATE … FROM unnest(…)` for the whole batch.
pub fn apply_status_updates(
    conn: &mut DbConnection,
    updates: &[StatusUpdate],
    now_ms: i64,
) -> Result<AppliedUpdates, StorageError> {
    let mut batch = Batch::read(conn, updates)?;
    let mut result = AppliedUpdates::default();
    for update in updates {
        match batch.apply(update) {
            Applied::Moved => result.applied += 1,
            Applied::Duplicate => result.duplicates += 1,
            Applied::Unknown => result.unknown += 1,
        }
    }
    let written = batch.write(conn)?;
    let mut deltas: Vec<(String, CounterDelta)> = Vec::new();
    for row in batch.rows.values().filter(|r| r.moves > 0) {
        if !written.contains(&row.id) {
            // Moved by someone else since it was read: as if these updates came too late.
            result.applied -= row.moves;
            result.duplicates += row.moves;
            continue;
        }
        // Every message read has its send (`Batch::read`).
        let Some(send_id) = batch.sends.get(&row.send_key) else {
            continue;
        };
        match deltas.iter_mut().find(|(s, _)| s == send_id) {
            Some((_, d)) => d.moved(row.read_state, row.now.state),
            None => {
                let mut d = CounterDelta::default();
                d.moved(row.read_state, row.now.state);
                deltas.push((send_id.clone(), d));
            }
        }
    }
    deltas.sort_by(|a, b| a.0.cmp(&b.0));
    for (send_id, delta) in &deltas {
        status::adjust_counters(conn, send_id, delta, now_ms)?;
    }
    result.touched_sends = deltas.into_iter().map(|(s, _)| s).collect();
    Ok(result)
}

/// A message's columns a webhook can change.
#[derive(Debug, Clone, PartialEq, Queryable, Selectable)]
#[diesel(table_name = messages)]
struct StoredMessage {
    id: i64,
    send_key: i64,
    state: String,
    wamid: Option<String>,
    sent_at: Option<i64>,
    delivered_at: Option<i64>,
    read_at: Option<i64>,
    failed_at: Option<i64>,
    error_code: Option<i64>,
    error_message: Option<String>,
}

/// What a webhook may set on a message.
#[derive(Debug, Clone, PartialEq)]
struct Columns {
    state: MessageState,
    wamid: Option<String>,
    sent_at: Option<i64>,
    delivered_at: Option<i64>,
    read_at: Option<i64>,
    failed_at: Option<i64>,
    error_code: Option<i64>,
    error_message: Option<String>,
}

/// A message of the batch: as read, and as the updates so far leave it.
struct Row {
    id: i64,
    send_key: i64,
    read_state: MessageState,
    now: Columns,
    /// Updates of the batch that moved it.
    moves: usize,
}

enum Applied {
    Moved,
    Duplicate,
    Unknown,
}

/// The messages a batch of updates names.
struct Batch {
    rows: HashMap<i64, Row>,
    by_wamid: HashMap<String, i64>,
    /// The id of each send the messages belong to, by its `send_key`.
    sends: HashMap<i64, String>,
}

impl Batch {
    /// Reads the messages the updates name: by our id first, then by wamid. On PostgreSQL
    /// the rows are locked (`FOR UPDATE`, in id order) until the write commits: several
    /// daemons apply webhooks and outcomes at once, and the fold below must not decide on a
    /// state another transaction is changing (its guarded write would then match nothing and
    /// the status be lost). SQLite has one writer. Then the ids of their sends, by the
    /// `send_key` the messages name them with (not locked: a send's key and id never change).
    fn read(conn: &mut DbConnection, updates: &[StatusUpdate]) -> Result<Batch, StorageError> {
        let mut batch = Batch {
            rows: HashMap::new(),
            by_wamid: HashMap::new(),
            sends: HashMap::new(),
        };
        let mut ids: Vec<i64> = updates.iter().filter_map(|u| u.message_id).collect();
        ids.sort_unstable();
        ids.dedup();
        for chunk in ids.chunks(READ_CHUNK) {
            let query = messages::table
                .filter(messages::id.eq_any(chunk))
                .order(messages::id);
            let found: Vec<StoredMessage> = match conn {
                DbConnection::Postgres(c) => query
                    .select(StoredMessage::as_select())
                    .for_update()
                    .load(c)?,
                DbConnection::Sqlite(c) => query.select(StoredMessage::as_select()).load(c)?,
            };
            batch.add(found);
        }
        let mut wamids: Vec<&str> = updates
            .iter()
            .filter(|u| !batch.by_wamid.contains_key(&u.wamid))
            .map(|u| u.wamid.as_str())
            .collect();
        wamids.sort_unstable();
        wamids.dedup();
        for chunk in wamids.chunks(READ_CHUNK) {
            let query = messages::table
                .filter(messages::wamid.eq_any(chunk))
                .order(messages::id);
            let found: Vec<StoredMessage> = match conn {
                DbConnection::Postgres(c) => query
                    .select(StoredMessage::as_select())
                    .for_update()
                    .load(c)?,
                DbConnection::Sqlite(c) => query.select(StoredMessage::as_select()).load(c)?,
            };
            batch.add(found);
        }
        let mut keys: Vec<i64> = batch.rows.values().map(|r| r.send_key).collect();
        keys.sort_unstable();
        keys.dedup();
        for chunk in keys.chunks(READ_CHUNK) {
            let sends: Vec<(i64, String)> = bulk_sends::table
                .filter(bulk_sends::send_key.eq_any(chunk))
                .select((bulk_sends::send_key, bulk_sends::id))
                .load(conn)?;
            batch.sends.extend(sends);
        }
        // A message whose send is not stored (none is ever deleted) is as unknown as a
        // wamid we never sent: its counters could not be kept.
        let sends = &batch.sends;
        batch
            .rows
            .retain(|_, row| sends.contains_key(&row.send_key));
        let rows = &batch.rows;
        batch.by_wamid.retain(|_, id| rows.contains_key(id));
        Ok(batch)
    }

    fn add(&mut self, found: Vec<StoredMessage>) {
        for m in found {
            let Ok(state) = m.state.parse::<MessageState>() else {
                continue;
            };
            if let Some(wamid) = &m.wamid {
                self.by_wamid.insert(wamid.clone(), m.id);
            }
            self.rows.entry(m.id).or_insert(Row {
                id: m.id,
                send_key: m.send_key,
                read_state: state,
                now: Columns {
                    state,
                    wamid: m.wamid,
                    sent_at: m.sent_at,
                    delivered_at: m.delivered_at,
                    read_at: m.read_at,
                    failed_at: m.failed_at,
                    error_code: m.error_code,
                    error_message: m.error_message,
                },
                moves: 0,
            });
        }
    }

    /// The message an update names: ours by id when its wamid (if any yet) is the update's,
    /// else the one with the update's wamid.
    fn find(&self, update: &StatusUpdate) -> Option<i64> {
        let by_id = update.message_id.filter(|id| {
            self.rows.get(id).is_some_and(|row| {
                update
                    .send_id
                    .as_deref()
                    .is_none_or(|send| self.sends.get(&row.send_key).is_some_and(|s| s == send))
                    && row.now.wamid.as_deref().is_none_or(|w| w == update.wamid)
            })
        });
        by_id.or_else(|| self.by_wamid.get(&update.wamid).copied())
    }

    /// Applies one update to the in-memory copy: the funnel's times are filled (a `read`
    /// implies delivered and sent, a `delivered` implies sent), and Meta's word overrides a
    /// failure we decided on our own.
    fn apply(&mut self, update: &StatusUpdate) -> Applied {
        let Some(id) = self.find(update) else {
            return Applied::Unknown;
        };
        let Some(row) = self.rows.get_mut(&id) else {
            return Applied::Unknown;
        };
        let now = &mut row.now;
        let Some(next) = apply_webhook(
            now.state,
            update.status,
            FailureSource::from_meta_code(now.error_code),
        ) else {
            return Applied::Duplicate;
        };
        if matches!(
            next,
            MessageState::Pending
                | MessageState::Dispatching
                | MessageState::Cancelled
                | MessageState::Suppressed
        ) {
            return Applied::Duplicate;
        }
        let at = update.at_ms;
        if now.state == MessageState::Suppressed {
            // Meta's word that an earlier attempt went through: the suppression note goes.
            now.error_message = None;
        }
        if now.state == MessageState::Failed && next != MessageState::Failed {
            now.failed_at = None;
            now.error_code = None;
            now.error_message = None;
        }
        if now.wamid.is_none() {
            now.wamid = Some(update.wamid.clone());
            self.by_wamid.insert(update.wamid.clone(), id);
        }
        match next {
            MessageState::Sent => now.sent_at = now.sent_at.or(Some(at)),
            MessageState::Delivered => {
                now.sent_at = now.sent_at.or(Some(at));
                now.delivered_at = Some(at);
            }
            MessageState::Read => {
                now.sent_at = now.sent_at.or(Some(at));
                now.delivered_at = now.delivered_at.or(Some(at));
                now.read_at = Some(at);
            }
            MessageState::Failed => {
                let (code, message) = match &update.error {
                    Some((code, message)) => (Some(*code), message.clone()),
                    None => (None, "failed (Meta gave no error)".to_owned()),
                };
                now.failed_at = Some(at);
                now.error_code = code;
                now.error_message = Some(message);
            }
            MessageState::Pending
            | MessageState::Dispatching
            | MessageState::Cancelled
            | MessageState::Suppressed => {}
        }
        now.state = next;
        row.moves += 1;
        Applied::Moved
    }

    /// Writes every message the batch moved, each guarded by the state it was read in;
    /// returns the ids written.
    fn write(&self, conn: &mut DbConnection) -> Result<HashSet<i64>, StorageError> {
        let moved: Vec<&Row> = self.rows.values().filter(|r| r.moves > 0).collect();
        let mut written = HashSet::with_capacity(moved.len());
        match conn {
            DbConnection::Postgres(pg) => {
                for chunk in moved.chunks(READ_CHUNK) {
                    written.extend(write_pg(pg, chunk)?);
                }
            }
            DbConnection::Sqlite(_) => {
                for row in moved {
                    let c = &row.now;
                    let n = diesel::update(message_in_state(row.id, row.read_state.as_str()))
                        .set((
                            messages::state.eq(c.state.as_str()),
                            messages::wamid.eq(&c.wamid),
                            messages::sent_at.eq(c.sent_at),
                            messages::delivered_at.eq(c.delivered_at),
                            messages::read_at.eq(c.read_at),
                            messages::failed_at.eq(c.failed_at),
                            messages::error_code.eq(c.error_code),
                            messages::error_message.eq(&c.error_message),
                        ))
                        .execute(conn)?;
                    if n == 1 {
                        written.insert(row.id);
                    }
                }
            }
        }
        Ok(written)
    }
}

/// Messages read or written by one statement at most.
const READ_CHUNK: usize = 1_000;

/// An id a set-based update moved.
#[derive(QueryableByName)]
struct WrittenId {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    id: i64,
}

/// One `UPDATE … FROM unnest(…)` for the moved messages of a batch.
fn write_pg(conn: &mut diesel::PgConnection, rows: &[&Row]) -> Result<Vec<i64>, StorageError> {
    use diesel::sql_types::{Array, BigInt, Nullable, Text};
    let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
    let read_states: Vec<&str> = rows.iter().map(|r| r.read_state.as_str()).collect();
    let states: Vec<&str> = rows.iter().map(|r| r.now.state.as_str()).collect();
    let wamids: Vec<Option<&str>> = rows.iter().map(|r| r.now.wamid.as_deref()).collect();
    let times = |f: fn(&Columns) -> Option<i64>| rows.iter().map(|r| f(&r.now)).collect::<Vec<_>>();
    let error_messages: Vec<Option<&str>> = rows
        .iter()
        .map(|r| r.now.error_message.as_deref())
        .collect();
    let written: Vec<WrittenId> = diesel::sql_query(
        "UPDATE messages AS m SET \
             state = u.state, wamid = u.wamid, sent_at = u.sent_at, \
             delivered_at = u.delivered_at, read_at = u.read_at, failed_at = u.failed_at, \
             error_code = u.error_code, error_message = u.error_message \
         FROM unnest($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
             AS u(id, read_state, state, wamid, sent_at, delivered_at, read_at, failed_at, \
                  error_code, error_message) \
         WHERE m.id = u.id AND m.state = u.read_state \
         RETURNING m.id",
    )
    .bind::<Array<BigInt>, _>(&ids)
    .bind::<Array<Text>, _>(&read_states)
    .bind::<Array<Text>, _>(&states)
    .bind::<Array<Nullable<Text>>, _>(&wamids)
    .bind::<Array<Nullable<BigInt>>, _>(times(|c| c.sent_at))
    .bind::<Array<Nullable<BigInt>>, _>(times(|c| c.delivered_at))
    .bind::<Array<Nullable<BigInt>>, _>(times(|c| c.read_at))
    .bind::<Array<Nullable<BigInt>>, _>(times(|c| c.failed_at))
    .bind::<Array<Nullable<BigInt>>, _>(times(|c| c.error_code))
    .bind::<Array<Nullable<Text>>, _>(&error_messages)
    .load(conn)?;
    Ok(written.into_iter().map(|w| w.id).collect())
}
