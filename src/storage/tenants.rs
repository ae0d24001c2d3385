//! Tenants (companies) and their API keys.

use diesel::prelude::*;

use super::schema::{api_keys, tenants};
use super::{write_transaction, DbConnection, StorageError};
use crate::domain::api_key::{self, KeyScope};
use crate::domain::secret_box::{Purpose, SecretKey};
use crate::with_backend;

/// Length of a tenant's webhook secret (signs client callbacks).
const WEBHOOK_SECRET_LEN: usize = 40;

/// A tenant as created by `mindo-bulk tenant create`, with its first key and its webhook
/// secret in clear (shown once; the secret is stored encrypted).
#[derive(Debug, Clone)]
pub struct CreatedTenant {
    pub tenant_id: i64,
    pub api_key_id: i64,
    pub api_key: String,
    pub webhook_secret: String,
}

/// The authenticated caller of an API request: the key and the tenant it belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub tenant_id: i64,
    pub tenant_name: String,
    pub api_key_id: i64,
    pub api_key_name: String,
    /// What the key may do.
    pub scope: KeyScope,
}

/// How a new API key is made: its name, scope and expiry.
#[derive(Debug, Clone)]
pub struct NewKey<'a> {
    pub name: &'a str,
    pub scope: KeyScope,
    /// Unix ms after which the key no longer authenticates; `None`: never.
    pub expires_at: Option<i64>,
}

/// Why an API key operation could not be done.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("there is no tenant with id {0}")]
    UnknownTenant(i64),
    #[error("there is no API key with id {0}")]
    UnknownKey(i64),
    #[error("the tenant name must not be empty")]
    EmptyName,
    #[error(transparent)]
    Storage(#[from] StorageError),
}

impl From<diesel::result::Error> for KeyError {
    fn from(e: diesel::result::Error) -> Self {
        KeyError::Storage(StorageError::Query(e))
    }
}

/// Creates a tenant with a webhook secret (stored sealed with `key`) and a first API key
/// named "Default" (scope `send`, no expiry).
pub fn create_tenant(
    conn: &mut DbConnection,
    name: &str,
    key: &SecretKey,
    now_ms: i64,
) -> Result<CreatedTenant, KeyError> {
    let name = name.trim();
    if name.is_empty() {
        return Err(KeyError::EmptyName);
    }
    let webhook_secret = format!("whsec_{}", api_key::random_secret(WEBHOOK_SECRET_LEN));
    write_transaction(conn, |conn| {
        let insert = diesel::insert_into(tenants::table).values((
            tenants::name.eq(name),
            tenants::webhook_secret.eq(key.seal(Purpose::WebhookSecret, &webhook_secret)),
            tenants::webhook_secret_key_id.eq(key.id()),
            tenants::created_at.eq(now_ms),
        ));
        let tenant_id: i64 = with_backend!(conn, |c| insert.returning(tenants::id).get_result(c))?;
        let first = NewKey {
            name: "Default",
            scope: KeyScope::Send,
            expires_at: None,
        };
        let (api_key_id, api_key) = insert_key(conn, tenant_id, &first, now_ms)?;
        Ok(CreatedTenant {
            tenant_id,
            api_key_id,
            api_key,
            webhook_secret: webhook_secret.clone(),
        })
    })
}

/// Creates another API key for an existing tenant; returns its id and the key in clear.
pub fn create_api_key(
    conn: &mut DbConnection,
    tenant_id: i64,
    new: &NewKey<'_>,
    now_ms: i64,
) -> Result<(i64, String), KeyError> {
    write_transaction(conn, |conn| {
        let exists: i64 = tenants::table
            .filter(tenants::id.eq(tenant_id))
            .count()
            .get_result(conn)?;
        if exists == 0 {
            return Err(KeyError::UnknownTenant(tenant_id));
        }
        insert_key(conn, tenant_id, new, now_ms)
    })
}

fn insert_key(
    conn: &mut DbConnection,
    tenant_id: i64,
    new: &NewKey<'_>,
    now_ms: i64,
) -> Result<(i64, String), KeyError> {
    // A lookup handle is 8 random characters (62^8 ≈ 2·10^14): a collision is
    // astronomically rare, and the UNIQUE index would refuse it rather than mix two keys up.
    let key = api_key::generate();
    let insert = diesel::insert_into(api_keys::table).values((
        api_keys::tenant_id.eq(tenant_id),
        api_keys::name.eq(new.name),
        api_keys::lookup.eq(&key.lookup),
        api_keys::key_hash.eq(&key.hash),
        api_keys::created_at.eq(now_ms),
        api_keys::scope.eq(new.scope.as_str()),
        api_keys::expires_at.eq(new.expires_at),
    ));
    let id: i64 = with_backend!(conn, |c| insert.returning(api_keys::id).get_result(c))?;
    Ok((id, key.plaintext))
}

/// Revokes a key; a revoked key stops authenticating at once. Revoking twice is fine.
pub fn revoke_api_key(conn: &mut DbConnection, key_id: i64, now_ms: i64) -> Result<(), KeyError> {
    write_transaction(conn, |conn| {
        let found: Option<Option<i64>> = api_keys::table
            .filter(api_keys::id.eq(key_id))
            .select(api_keys::revoked_at)
            .first(conn)
            .optional()?;
        match found {
            None => Err(KeyError::UnknownKey(key_id)),
            Some(Some(_)) => Ok(()),
            Some(None) => {
                diesel::update(api_keys::table.filter(api_keys::id.eq(key_id)))
                    .set(api_keys::revoked_at.eq(now_ms))
                    .execute(conn)?;
                Ok(())
            }
        }
    })
}

/// Finds the active key matching `presented`. `None` for unknown, malformed, revoked or
/// expired (at `now_ms`) keys.
///
/// The row is found by the key's lookup handle; the secret part is checked by comparing
/// hashes in constant time, and an unknown handle still pays for one hash and comparison.
pub fn authenticate(
    conn: &mut DbConnection,
    presented: &str,
    now_ms: i64,
) -> Result<Option<Principal>, StorageError> {
    let Some(lookup) = api_key::lookup_of(presented) else {
        return Ok(None);
    };
    type Row = (
        i64,
        String,
        String,
        Option<i64>,
        String,
        Option<i64>,
        i64,
        String,
    );
    let row: Option<Row> = api_keys::table
        .inner_join(tenants::table)
        .filter(api_keys::lookup.eq(lookup))
        .select((
            api_keys::id,
            api_keys::name,
            api_keys::key_hash,
            api_keys::revoked_at,
            api_keys::scope,
            api_keys::expires_at,
            tenants::id,
            tenants::name,
        ))
        .first(conn)
        .optional()?;
    let Some((
        api_key_id,
        api_key_name,
        key_hash,
        revoked_at,
        scope,
        expires_at,
        tenant_id,
        tenant_name,
    )) = row
    else {
        // Same work as a found row, so timing does not tell unknown from wrong.
        let _ = api_key::verify(presented, DUMMY_HASH);
        return Ok(None);
    };
    if !api_key::verify(presented, &key_hash)
        || revoked_at.is_some()
        || api_key::is_expired(expires_at, now_ms)
    {
        return Ok(None);
    }
    Ok(Some(Principal {
        tenant_id,
        tenant_name,
        api_key_id,
        api_key_name,
        // An unknown scope (a row from a newer version) grants the least.
        scope: scope.parse().unwrap_or(KeyScope::Read),
    }))
}

/// A hash no key has (SHA-256 output is never all zeros in practice).
const DUMMY_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Whether a tenant with this id exists.
pub fn tenant_exists(conn: &mut DbConnection, tenant_id: i64) -> Result<bool, StorageError> {
    Ok(diesel::select(diesel::dsl::exists(tenants::table.find(tenant_id))).get_result(conn)?)
}
