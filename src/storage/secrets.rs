//! The secrets stored encrypted (`domain::secret_box`): `business_accounts.access_token`
//! and `tenants.webhook_secret`, each with the id of its key in the column beside it
//! (`access_token_key_id`, `webhook_secret_key_id`; NULL while still in plain text).
//!
//! - [`check_key`]: whether a key opens what is stored (a daemon refuses to start if not).
//! - [`encrypt_plain_rows`]: seals the rows written before encryption (run at every start).
//! - [`rotate`]: re-seals everything under a new key, in one transaction.
//! - [`open_access_token`], [`open_webhook_secret`]: a stored value in clear, for its use.

use diesel::prelude::*;

use super::schema::{business_accounts, tenants};
use super::{write_transaction, DbConnection, StorageError};
use crate::domain::secret_box::{OpenError, Purpose, SecretKey};
use crate::storage::accounts::BusinessAccount;

/// Why stored secrets and a key do not go together.
#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    #[error(transparent)]
    Open(#[from] OpenError),
    #[error(
        "a stored secret is in plain text although encryption is on; run `mindo-bulk migrate`"
    )]
    Plain,
    #[error(transparent)]
    Storage(#[from] StorageError),
}

impl From<diesel::result::Error> for SecretsError {
    fn from(e: diesel::result::Error) -> Self {
        SecretsError::Storage(StorageError::Query(e))
    }
}

/// What [`rotate`] and [`encrypt_plain_rows`] changed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct SealedCounts {
    pub access_tokens: usize,
    pub webhook_secrets: usize,
}

/// The distinct ids of the keys the stored secrets are sealed with.
pub fn stored_key_ids(conn: &mut DbConnection) -> Result<Vec<String>, StorageError> {
    let mut ids: Vec<String> = business_accounts::table
        .filter(business_accounts::access_token_key_id.is_not_null())
        .select(business_accounts::access_token_key_id.assume_not_null())
        .distinct()
        .load(conn)?;
    let more: Vec<String> = tenants::table
        .filter(tenants::webhook_secret_key_id.is_not_null())
        .select(tenants::webhook_secret_key_id.assume_not_null())
        .distinct()
        .load(conn)?;
    ids.extend(more);
    ids.sort();
    ids.dedup();
    Ok(ids)
}

/// Checks that `key` opens every stored secret: each sealed value is decrypted (the rows
/// are few: one per WABA and per tenant). The first one that does not open is the error,
/// naming the key it needs.
pub fn check_key(conn: &mut DbConnection, key: &SecretKey) -> Result<(), SecretsError> {
    for (key_id, value) in sealed_tokens(conn)? {
        key.open(Purpose::AccessToken, &key_id, &value)?;
    }
    for (key_id, value) in sealed_webhook_secrets(conn)? {
        key.open(Purpose::WebhookSecret, &key_id, &value)?;
    }
    Ok(())
}

fn sealed_tokens(conn: &mut DbConnection) -> Result<Vec<(String, String)>, StorageError> {
    Ok(business_accounts::table
        .filter(business_accounts::access_token_key_id.is_not_null())
        .select((
            business_accounts::access_token_key_id.assume_not_null(),
            business_accounts::access_token,
        ))
        .load(conn)?)
}

fn sealed_webhook_secrets(conn: &mut DbConnection) -> Result<Vec<(String, String)>, StorageError> {
    Ok(tenants::table
        .filter(tenants::webhook_secret_key_id.is_not_null())
        .select((
            tenants::webhook_secret_key_id.assume_not_null(),
            tenants::webhook_secret,
        ))
        .load(conn)?)
}

/// Seals the secrets still stored in plain text (rows from before encryption) with `key`.
pub fn encrypt_plain_rows(
    conn: &mut DbConnection,
    key: &SecretKey,
) -> Result<SealedCounts, StorageError> {
    write_transaction(conn, |conn| {
        let mut counts = SealedCounts::default();
        let plain: Vec<(i64, String)> = business_accounts::table
            .filter(business_accounts::access_token_key_id.is_null())
            .select((business_accounts::id, business_accounts::access_token))
            .load(conn)?;
        for (id, token) in plain {
            counts.access_tokens += seal_token(conn, id, key, &token)?;
        }
        let plain: Vec<(i64, String)> = tenants::table
            .filter(tenants::webhook_secret_key_id.is_null())
            .select((tenants::id, tenants::webhook_secret))
            .load(conn)?;
        for (id, secret) in plain {
            counts.webhook_secrets += seal_webhook_secret(conn, id, key, &secret)?;
        }
        Ok(counts)
    })
}

/// Re-seals every stored secret: opened with `old`, sealed with `new`, all in one
/// transaction (a failure changes nothing). Rows still in plain text are sealed too.
pub fn rotate(
    conn: &mut DbConnection,
    old: &SecretKey,
    new: &SecretKey,
) -> Result<SealedCounts, SecretsError> {
    write_transaction(conn, |conn| {
        let mut counts = SealedCounts::default();
        let rows: Vec<(i64, Option<String>, String)> = business_accounts::table
            .select((
                business_accounts::id,
                business_accounts::access_token_key_id,
                business_accounts::access_token,
            ))
            .load(conn)?;
        for (id, key_id, stored) in rows {
            let token = match key_id {
                Some(key_id) => old.open(Purpose::AccessToken, &key_id, &stored)?,
                None => stored,
            };
            counts.access_tokens += seal_token(conn, id, new, &token)?;
        }
        let rows: Vec<(i64, Option<String>, String)> = tenants::table
            .select((
                tenants::id,
                tenants::webhook_secret_key_id,
                tenants::webhook_secret,
            ))
            .load(conn)?;
        for (id, key_id, stored) in rows {
            let secret = match key_id {
                Some(key_id) => old.open(Purpose::WebhookSecret, &key_id, &stored)?,
                None => stored,
            };
            counts.webhook_secrets += seal_webhook_secret(conn, id, new, &secret)?;
        }
        Ok(counts)
    })
}

fn seal_token(
    conn: &mut DbConnection,
    id: i64,
    key: &SecretKey,
    token: &str,
) -> Result<usize, diesel::result::Error> {
    diesel::update(business_accounts::table.find(id))
        .set((
            business_accounts::access_token.eq(key.seal(Purpose::AccessToken, token)),
            business_accounts::access_token_key_id.eq(key.id()),
        ))
        .execute(conn)
}

fn seal_webhook_secret(
    conn: &mut DbConnection,
    id: i64,
    key: &SecretKey,
    secret: &str,
) -> Result<usize, diesel::result::Error> {
    diesel::update(tenants::table.find(id))
        .set((
            tenants::webhook_secret.eq(key.seal(Purpose::WebhookSecret, secret)),
            tenants::webhook_secret_key_id.eq(key.id()),
        ))
        .execute(conn)
}

/// A WABA's access token in clear, for a call to Meta.
pub fn open_access_token(
    key: &SecretKey,
    account: &BusinessAccount,
) -> Result<String, SecretsError> {
    let key_id = account
        .access_token_key_id
        .as_deref()
        .ok_or(SecretsError::Plain)?;
    Ok(key.open(Purpose::AccessToken, key_id, &account.access_token)?)
}

/// A tenant's webhook secret in clear, to sign a callback.
pub fn open_webhook_secret(
    key: &SecretKey,
    key_id: Option<&str>,
    stored: &str,
) -> Result<String, SecretsError> {
    let key_id = key_id.ok_or(SecretsError::Plain)?;
    Ok(key.open(Purpose::WebhookSecret, key_id, stored)?)
}
