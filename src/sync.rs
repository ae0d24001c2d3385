//! WABA sync: read a WhatsApp Business Account from the Graph API (its portfolio, phone
//! numbers and templates) and store it. Used by `mindo-bulk waba add|sync`, by the daemon's
//! periodic re-sync, and by `serve --sandbox` to register the simulator's demo accounts.
//!
//! Messaging limits are shared per business portfolio: the portfolio is `--portfolio-id`
//! when given, else the WABA's `owner_business_info`, else the WABA itself. It is decided
//! when the WABA is added and kept by later syncs.

use std::time::Duration;

use crate::clock::SharedClock;
use crate::domain::secret_box::SecretKey;
use crate::meta::client::{GraphClient, GraphError};
use crate::storage::accounts::{self, AccountError, BusinessAccount, SyncCounts};
use crate::storage::secrets::{self, SecretsError};
use crate::storage::{Db, StorageError};

/// What a sync did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SyncReport {
    pub waba_id: String,
    pub business_account_id: i64,
    pub portfolio_id: String,
    #[serde(flatten)]
    pub counts: SyncCounts,
}

/// Why a sync failed.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("WABA {waba_id}: {source}")]
    Graph { waba_id: String, source: GraphError },
    #[error("WABA {waba_id}: {source}")]
    Secret {
        waba_id: String,
        source: SecretsError,
    },
    #[error(transparent)]
    Account(#[from] AccountError),
}

impl From<StorageError> for SyncError {
    fn from(e: StorageError) -> Self {
        SyncError::Account(AccountError::Storage(e))
    }
}

/// Registers a WABA for a tenant and syncs it.
#[allow(clippy::too_many_arguments)]
pub async fn add_waba(
    db: &Db,
    graph: &GraphClient,
    clock: &SharedClock,
    key: &SecretKey,
    tenant_id: i64,
    waba_id: &str,
    access_token: &str,
    portfolio_id: Option<&str>,
) -> Result<SyncReport, SyncError> {
    let graph_err = |source| SyncError::Graph {
        waba_id: waba_id.to_owned(),
        source,
    };
    let waba = graph.waba(access_token, waba_id).await.map_err(graph_err)?;
    let portfolio = portfolio_id
        .map(str::to_owned)
        .or(waba.portfolio_id)
        .unwrap_or_else(|| waba_id.to_owned());
    fetch_and_store(
        db,
        graph,
        clock,
        key,
        tenant_id,
        waba_id,
        &waba.name,
        &portfolio,
        access_token,
    )
    .await
}

/// Re-reads a registered WABA (numbers, templates, name) and stores what changed.
pub async fn sync_account(
    db: &Db,
    graph: &GraphClient,
    clock: &SharedClock,
    key: &SecretKey,
    account: &BusinessAccount,
) -> Result<SyncReport, SyncError> {
    let access_token =
        secrets::open_access_token(key, account).map_err(|source| SyncError::Secret {
            waba_id: account.waba_id.clone(),
            source,
        })?;
    let waba = graph
        .waba(&access_token, &account.waba_id)
        .await
        .map_err(|source| SyncError::Graph {
            waba_id: account.waba_id.clone(),
            source,
        })?;
    let name = if waba.name.is_empty() {
        account.business_name.clone()
    } else {
        waba.name
    };
    fetch_and_store(
        db,
        graph,
        clock,
        key,
        account.tenant_id,
        &account.waba_id,
        &name,
        &account.portfolio_id,
        &access_token,
    )
    .await
}

/// Syncs every registered WABA; one failing does not stop the others.
pub async fn sync_all(
    db: &Db,
    graph: &GraphClient,
    clock: &SharedClock,
    key: &SecretKey,
) -> Result<Vec<Result<SyncReport, SyncError>>, StorageError> {
    let all = db.run(accounts::all_accounts).await?;
    let mut results = Vec::with_capacity(all.len());
    for account in &all {
        results.push(sync_account(db, graph, clock, key, account).await);
    }
    Ok(results)
}

#[allow(clippy::too_many_arguments)]
async fn fetch_and_store(
    db: &Db,
    graph: &GraphClient,
    clock: &SharedClock,
    key: &SecretKey,
    tenant_id: i64,
    waba_id: &str,
    name: &str,
    portfolio_id: &str,
    access_token: &str,
) -> Result<SyncReport, SyncError> {
    let graph_err = |source| SyncError::Graph {
        waba_id: waba_id.to_owned(),
        source,
    };
    let numbers = graph
        .waba_phone_numbers(access_token, waba_id)
        .await
        .map_err(graph_err)?;
    let templates = graph
        .waba_templates(access_token, waba_id)
        .await
        .map_err(graph_err)?;
    let now = clock.now_ms();
    let (waba, name, portfolio, token, key) = (
        waba_id.to_owned(),
        name.to_owned(),
        portfolio_id.to_owned(),
        access_token.to_owned(),
        key.clone(),
    );
    let (business_account_id, counts) = db
        .run(move |conn| {
            accounts::store_sync(
                conn, tenant_id, &waba, &name, &portfolio, &token, &key, &numbers, &templates, now,
            )
        })
        .await?;
    Ok(SyncReport {
        waba_id: waba_id.to_owned(),
        business_account_id,
        portfolio_id: portfolio_id.to_owned(),
        counts,
    })
}

/// Re-syncs every WABA every `interval`, on the current actix arbiter, until the System
/// stops. Failures are logged and retried at the next round.
pub fn spawn_periodic(
    db: Db,
    graph: GraphClient,
    clock: SharedClock,
    key: SecretKey,
    interval: Duration,
) {
    actix_web::rt::spawn(async move {
        let mut ticker = actix_web::rt::time::interval(interval);
        ticker.tick().await;
        loop {
            ticker.tick().await;
            match sync_all(&db, &graph, &clock, &key).await {
                Ok(results) => {
                    for result in results {
                        match result {
                            Ok(report) => tracing::info!(
                                waba_id = %report.waba_id,
                                phone_numbers = report.counts.phone_numbers,
                                templates = report.counts.templates,
                                "Re-synced a WABA."
                            ),
                            Err(err) => tracing::warn!(error = %err, "A WABA re-sync failed."),
                        }
                    }
                }
                Err(err) => {
                    tracing::warn!(error = %err, "The periodic WABA re-sync could not start.")
                }
            }
        }
    });
}
