//! The reads behind the API: a send with its details, the list, the messages.

use diesel::prelude::*;

use super::*;
use crate::storage::schema::{api_keys, bulk_sends, messages, phone_numbers, templates};
use crate::storage::{DbConnection, StorageError};

macro_rules! detail_query {
    () => {
        bulk_sends::table
            .inner_join(templates::table)
            .inner_join(phone_numbers::table)
            .inner_join(api_keys::table)
    };
}

macro_rules! detail_select {
    () => {
        (
            BulkSendRow::as_select(),
            TemplateSummary::as_select(),
            NumberSummary::as_select(),
            KeySummary::as_select(),
        )
    };
}

/// A tenant's send with its details; `None` for unknown ids and other tenants' sends.
pub fn load_detail(
    conn: &mut DbConnection,
    tenant_id: i64,
    send_id: &str,
) -> Result<Option<SendDetail>, StorageError> {
    Ok(detail_query!()
        .filter(bulk_sends::id.eq(send_id))
        .filter(bulk_sends::tenant_id.eq(tenant_id))
        .select(detail_select!())
        .first(conn)
        .optional()?)
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
    let rows: Vec<SendDetail> = filtered!()
        .order((bulk_sends::created_at.desc(), bulk_sends::id.desc()))
        .offset(offset)
        .limit(limit)
        .select(detail_select!())
        .load(conn)?;
    Ok((count, rows))
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
        "suppressed" => &["suppressed"],
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
    let mut count_q = messages::table.filter(of_send(send_id)).into_boxed();
    let mut rows_q = messages::table.filter(of_send(send_id)).into_boxed();
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
        .filter(of_send(send_id))
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
