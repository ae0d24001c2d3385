//! Creating a send: the send row, and its messages in one binary COPY (PostgreSQL) or in
//! multi-row INSERTs (SQLite). Suppressed recipients are stored as `suppressed` messages
//! and counted apart; a send with nothing left to send is `COMPLETED` at once.

use diesel::prelude::*;

use super::*;
use crate::domain::message::{derive_status, Counters, MessageState};
use crate::storage::schema::{bulk_sends, messages};
use crate::storage::{DbConnection, StorageError};
use crate::with_backend;

/// Rows per multi-row INSERT when creating messages (8 values a row stays far below both
/// backends' bind-parameter limits).
pub(crate) const INSERT_CHUNK: usize = 100;

/// Stores a send and all its messages (call inside a write transaction), in recipient order;
/// each is due at `due_at`.
pub fn insert_send(
    conn: &mut DbConnection,
    send: &NewSend,
    recipients: Vec<NewMessage>,
    due_at: i64,
) -> Result<(), StorageError> {
    let unique = i32::try_from(recipients.len()).unwrap_or(i32::MAX);
    let suppressed = recipients.iter().filter(|m| m.suppressed.is_some()).count();
    let counters = Counters {
        pending: (recipients.len() - suppressed) as u64,
        suppressed: suppressed as u64,
        ..Counters::default()
    };
    let status = derive_status(&counters, false, false, false);
    let completed_at = status.is_finished().then_some(send.created_at);
    let n = |v: u64| i32::try_from(v).unwrap_or(i32::MAX);
    // The send's key: PostgreSQL's identity column gives it (several daemons may create at
    // once); SQLite has one writer, so the largest so far plus one is free.
    let sqlite_key = match conn {
        DbConnection::Sqlite(c) => Some(
            bulk_sends::table
                .select(diesel::dsl::max(bulk_sends::send_key))
                .first::<Option<i64>>(c)?
                .unwrap_or(0)
                + 1,
        ),
        DbConnection::Postgres(_) => None,
    };
    let send_key: i64 = diesel::insert_into(bulk_sends::table)
        .values((
            bulk_sends::id.eq(&send.id),
            bulk_sends::tenant_id.eq(send.tenant_id),
            bulk_sends::api_key_id.eq(send.api_key_id),
            bulk_sends::phone_number_id.eq(send.phone_number_id),
            bulk_sends::template_id.eq(send.template_id),
            bulk_sends::task_id.eq(&send.task_id),
            bulk_sends::status.eq(status.as_str()),
            bulk_sends::total_submitted.eq(send.total_submitted),
            bulk_sends::unique_recipients.eq(unique),
            bulk_sends::invalid_recipients.eq(send.invalid_recipients),
            bulk_sends::pending_count.eq(n(counters.pending)),
            bulk_sends::suppressed_count.eq(n(counters.suppressed)),
            bulk_sends::completed_at.eq(completed_at),
            bulk_sends::estimated_time_minutes.eq(send.estimated_time_minutes),
            bulk_sends::callback_url.eq(&send.callback_url),
            bulk_sends::scheduled_at.eq(send.scheduled_at),
            bulk_sends::created_at.eq(send.created_at),
            sqlite_key.map(|key| bulk_sends::send_key.eq(key)),
        ))
        .returning(bulk_sends::send_key)
        .get_result(conn)?;
    let mut rows = recipients
        .into_iter()
        .enumerate()
        .map(|(seq, m)| message_row(send_key, seq, m, due_at));
    // PostgreSQL: one binary COPY for every message.
    if let DbConnection::Postgres(pg) = conn {
        diesel::copy_from(messages::table)
            .from_insertable(rows.collect::<Vec<_>>())
            .execute(pg)?;
        return Ok(());
    }
    // SQLite: full chunks go in as fixed-size arrays of owned rows: diesel then caches the
    // prepared statement (a multi-row INSERT of a runtime length is parsed afresh every time,
    // which costs as much as storing the rows). The rest goes in as one statement of its own
    // length.
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
    diesel::dsl::Eq<messages::send_key, i64>,
    diesel::dsl::Eq<messages::seq, i32>,
    diesel::dsl::Eq<messages::recipient, String>,
    diesel::dsl::Eq<messages::variables, String>,
    diesel::dsl::Eq<messages::button_variables, String>,
    diesel::dsl::Eq<messages::state, &'static str>,
    diesel::dsl::Eq<messages::next_attempt_at, i64>,
    diesel::dsl::Eq<messages::error_message, Option<String>>,
);

/// One `messages` row of a new send, `seq` being its position in the request.
fn message_row(send_key: i64, seq: usize, m: NewMessage, due_at: i64) -> NewMessageRow {
    let state = match m.suppressed {
        Some(_) => MessageState::Suppressed,
        None => MessageState::Pending,
    };
    (
        messages::send_key.eq(send_key),
        messages::seq.eq(i32::try_from(seq).unwrap_or(i32::MAX)),
        messages::recipient.eq(m.recipient),
        messages::variables.eq(m.variables),
        messages::button_variables.eq(m.button_variables),
        messages::state.eq(state.as_str()),
        messages::next_attempt_at.eq(due_at),
        messages::error_message.eq(m.suppressed),
    )
}
