//! The two reads the live feature adds: which sends of a tenant are live (their state can
//! still change, or changed a moment ago), and the principal behind a dashboard token. The
//! status objects themselves come from `storage::sends::load_detail`, like every status read.

use diesel::prelude::*;

use crate::domain::api_key::{self, KeyScope};
use crate::domain::message::BulkStatus;
use crate::storage::schema::{api_keys, bulk_sends, tenants};
use crate::storage::tenants::Principal;
use crate::storage::{DbConnection, StorageError};

/// Most sends a tenant stream follows at once (the newest).
pub const MAX_LIVE_SENDS: i64 = 200;

/// The tenant's sends that are unfinished, not yet settled, or that settled at `since` or
/// later, newest first (at most [`MAX_LIVE_SENDS`]).
pub fn live_send_ids(
    conn: &mut DbConnection,
    tenant_id: i64,
    since: i64,
) -> Result<Vec<String>, StorageError> {
    let finished: Vec<&str> = BulkStatus::ALL
        .iter()
        .filter(|s| s.is_finished())
        .map(|s| s.as_str())
        .collect();
    Ok(bulk_sends::table
        .filter(bulk_sends::tenant_id.eq(tenant_id))
        .filter(
            bulk_sends::status
                .ne_all(finished)
                .or(bulk_sends::completed_at.is_null())
                .or(bulk_sends::completed_at.ge(since)),
        )
        .order((bulk_sends::created_at.desc(), bulk_sends::id.desc()))
        .limit(MAX_LIVE_SENDS)
        .select(bulk_sends::id)
        .load(conn)?)
}

/// The principal of API key `api_key_id` of tenant `tenant_id`, if that key still
/// authenticates (not revoked, not expired).
pub fn principal_of_key(
    conn: &mut DbConnection,
    tenant_id: i64,
    api_key_id: i64,
    now_ms: i64,
) -> Result<Option<Principal>, StorageError> {
    /// Key name, revoked at, scope, expires at, tenant name.
    type Row = (String, Option<i64>, String, Option<i64>, String);
    let row: Option<Row> = api_keys::table
        .inner_join(tenants::table)
        .filter(api_keys::id.eq(api_key_id))
        .filter(api_keys::tenant_id.eq(tenant_id))
        .select((
            api_keys::name,
            api_keys::revoked_at,
            api_keys::scope,
            api_keys::expires_at,
            tenants::name,
        ))
        .first(conn)
        .optional()?;
    Ok(
        row.and_then(|(name, revoked_at, scope, expires_at, tenant_name)| {
            (revoked_at.is_none() && !api_key::is_expired(expires_at, now_ms)).then(|| Principal {
                tenant_id,
                tenant_name,
                api_key_id,
                api_key_name: name,
                scope: scope.parse().unwrap_or(KeyScope::Read),
            })
        }),
    )
}
