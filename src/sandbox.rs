//! `serve --sandbox`: the daemon with the Meta simulator in-process, so everything can be
//! tried on one machine with nothing sent anywhere.
//!
//! The simulator runs the sandbox world (`SimConfig::sandbox()`: three WABAs, each its own
//! portfolio, with numbers on TIER_250, TIER_10K and TIER_UNLIMITED and approved templates in
//! both parameter formats) on a free loopback port; the Graph client, the app secret and the
//! webhook URL point at it. A demo tenant is seeded (a fresh API key at every start: only
//! hashes are stored) and its WABAs are registered through the real Graph client, exactly as
//! `mindo-bulk waba add` does. Client callbacks may go to loopback receivers (the sandbox is
//! local by nature), unless `MINDO_CALLBACK_ALLOW_LOOPBACK=false` says otherwise.

use std::sync::Arc;

use anyhow::Context;
use diesel::prelude::*;
use serde::Serialize;

use crate::clock::SharedClock;
use crate::config::Config;
use crate::domain::api_key::KeyScope;
use crate::simulator::{SimConfig, Simulator};
use crate::startup::Application;
use crate::storage::schema::tenants as tenants_table;
use crate::storage::tenants;
use crate::sync;

/// The demo tenant's name.
pub const DEMO_TENANT: &str = "Sandbox demo";
/// The database a sandbox uses unless one is configured.
pub const SANDBOX_DATABASE_URL: &str = "sqlite://mindo-sandbox.db";
/// The webhook verify token of the sandbox (when none is configured).
pub const SANDBOX_VERIFY_TOKEN: &str = "sandbox-verify-token";

/// What the sandbox prints.
#[derive(Debug, Clone, Serialize)]
pub struct SandboxInfo {
    pub simulator_url: String,
    pub tenant_id: i64,
    pub api_key: String,
    pub numbers: Vec<DemoNumber>,
    pub curl: String,
    /// The live dashboard (`http::dashboard`).
    pub dashboard_url: String,
}

/// A demo sender number.
#[derive(Debug, Clone, Serialize)]
pub struct DemoNumber {
    pub phone_number_id: String,
    pub display_phone_number: String,
    pub messaging_limit_tier: &'static str,
    pub throughput_mps: u32,
}

/// Starts the simulator and points the configuration at it.
pub async fn start_simulator(config: &mut Config, clock: SharedClock) -> anyhow::Result<Simulator> {
    let simulator = Simulator::start(SimConfig::sandbox(), "127.0.0.1:0", clock)
        .await
        .context("cannot start the sandbox simulator")?;
    config.graph_url = simulator.base_url().to_owned();
    config.app_secret = Some(simulator.app_secret().to_owned().into());
    if config.verify_token.is_none() {
        config.verify_token = Some(SANDBOX_VERIFY_TOKEN.to_owned().into());
    }
    if config.database_url == Config::default().database_url {
        config.database_url = SANDBOX_DATABASE_URL.to_owned();
    }
    if std::env::var_os("MINDO_CALLBACK_ALLOW_LOOPBACK").is_none() {
        config.callback_allow_loopback = true;
    }
    Ok(simulator)
}

/// Points the simulator's webhooks at the daemon, seeds the demo tenant and registers the
/// sandbox WABAs.
pub async fn seed(
    app: &Application,
    simulator: &Simulator,
    clock: &SharedClock,
) -> anyhow::Result<SandboxInfo> {
    let base = format!("http://127.0.0.1:{}", app.port());
    simulator.set_webhook_url(Some(format!("{base}/webhooks/meta/")));
    let state = app.state();
    let now = clock.now_ms();
    let key = state.secret_key.clone();
    let (tenant_id, api_key) = state
        .db
        .run(move |conn| {
            let existing: Option<i64> = tenants_table::table
                .filter(tenants_table::name.eq(DEMO_TENANT))
                .select(tenants_table::id)
                .first(conn)
                .optional()
                .map_err(crate::storage::StorageError::from)?;
            match existing {
                Some(id) => {
                    let new = tenants::NewKey {
                        name: "Sandbox key",
                        scope: KeyScope::Send,
                        expires_at: None,
                    };
                    tenants::create_api_key(conn, id, &new, now).map(|(_, key)| (id, key))
                }
                None => tenants::create_tenant(conn, DEMO_TENANT, &key, now)
                    .map(|t| (t.tenant_id, t.api_key)),
            }
        })
        .await
        .context("cannot seed the demo tenant")?;
    let graph = state.config.graph_client();
    let world = SimConfig::sandbox();
    let mut numbers = Vec::new();
    for waba in &world.wabas {
        sync::add_waba(
            &state.db,
            &graph,
            clock,
            &state.secret_key,
            tenant_id,
            &waba.id,
            &waba.access_token,
            None,
        )
        .await
        .with_context(|| format!("cannot register the sandbox WABA {}", waba.id))?;
        for n in &waba.phone_numbers {
            numbers.push(DemoNumber {
                phone_number_id: n.id.clone(),
                display_phone_number: n.display_phone_number.clone(),
                messaging_limit_tier: n.tier.as_api_str(),
                throughput_mps: n.throughput_level.mps(),
            });
        }
    }
    let example = numbers
        .get(1)
        .or(numbers.first())
        .map(|n| n.phone_number_id.clone())
        .unwrap_or_default();
    let curl = format!(
        "curl -s -X POST {base}/api/v1/meta-templates/send-bulk/ \\\n  -H 'X-API-Key: {api_key}' -H 'Content-Type: application/json' \\\n  -d '{{\"phone_number_id\": \"{example}\", \"template_name\": \"welcome_message\", \"language\": \"es\", \"recipients\": [{{\"phone\": \"+54 9 11 1234-5678\", \"variables\": {{\"customer_name\": \"Ana\"}}}}]}}'"
    );
    Ok(SandboxInfo {
        simulator_url: simulator.base_url().to_owned(),
        tenant_id,
        api_key,
        numbers,
        curl,
        dashboard_url: format!("{base}/"),
    })
}

/// The text printed on stdout when the sandbox is ready.
pub fn describe(info: &SandboxInfo) -> String {
    let mut out = String::new();
    out.push_str(&format!(
        "mindo-bulk sandbox: Meta is simulated at {} (nothing leaves this machine).\n",
        info.simulator_url
    ));
    out.push_str(&format!(
        "Demo tenant {}; API key: {}\n",
        info.tenant_id, info.api_key
    ));
    out.push_str(&format!(
        "Dashboard: {} (open it, enter the API key, and watch sends move)\n",
        info.dashboard_url
    ));
    out.push_str("Sender numbers:\n");
    for n in &info.numbers {
        out.push_str(&format!(
            "  {}  {}  {}  {} mps\n",
            n.phone_number_id, n.display_phone_number, n.messaging_limit_tier, n.throughput_mps
        ));
    }
    out.push_str("Try:\n");
    out.push_str(&info.curl);
    out.push('\n');
    out
}

/// The wall clock, shared.
pub fn system_clock() -> SharedClock {
    Arc::new(crate::clock::SystemClock)
}
