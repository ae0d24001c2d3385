//! What every request handler can reach: the state `startup` builds once and actix-web
//! hands to each handler as `web::Data<AppState>`.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use super::create_gate::CreateGate;
use super::limits::TenantLimits;
use crate::clock::SharedClock;
use crate::config::Config;
use crate::domain::secret_box::SecretKey;
use crate::domain::suppression::KeywordMatcher;
use crate::engine::Engine;
use crate::live::LiveHub;
use crate::storage::Db;

/// What every request handler can reach.
#[derive(Clone, Debug)]
pub struct AppState {
    pub db: Db,
    pub config: Arc<Config>,
    pub clock: SharedClock,
    pub engine: Engine,
    /// The key that encrypts secrets at rest.
    pub secret_key: SecretKey,
    /// Every tenant's request budget.
    pub tenant_limits: Arc<TenantLimits>,
    /// Set when a clean stop begins: new sends are refused (503) from then on.
    pub draining: Arc<AtomicBool>,
    /// Bounds the send-bulk requests that hold their body in memory at once.
    pub create_gate: CreateGate,
    /// The live event streams' hub and the key that signs dashboard tokens.
    pub live: LiveHub,
    /// The opt-out and opt-in keywords of inbound texts (from the configuration).
    pub keywords: Arc<KeywordMatcher>,
}
