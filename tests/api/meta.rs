//! Tests against "Meta": the simulator in-process, the daemon pointed at it, a tenant with
//! the sandbox WABAs registered through the real Graph client.

use std::sync::Arc;
use std::time::Duration;

use mindo_bulk::clock::{Clock, ManualClock};
use mindo_bulk::config::Config;
use mindo_bulk::simulator::{SimConfig, SimStats, Simulator};
use mindo_bulk::storage::tenants;
use serde_json::{json, Value};

use crate::helpers::{spawn_app_on_clock, TestApp, START_MS};

/// The sandbox numbers: TIER_250/80 mps, TIER_10K/80 mps, UNLIMITED/1000 mps.
pub const NUMBER_250: &str = "106540352240001";
pub const NUMBER_10K: &str = "106540352240002";
pub const NUMBER_UNLIMITED: &str = "106540352240003";
/// The WABA of `NUMBER_250`.
pub const WABA_250: &str = "102938475610001";

/// A daemon talking to a simulator.
pub struct MetaApp {
    pub app: TestApp,
    pub sim: Simulator,
    pub api_key: String,
    pub tenant_id: i64,
    /// The tenant's webhook secret in clear, as `tenant create` prints it.
    pub webhook_secret: String,
}

/// Starts a simulator (sandbox world, instant webhooks) and a daemon using it.
pub async fn spawn_with_meta() -> MetaApp {
    spawn_with_meta_tweaked(|_| {}, |_| {}).await
}

/// Same, after `sim` adjusts the simulator's config and `daemon` the daemon's.
pub async fn spawn_with_meta_tweaked(
    sim: impl FnOnce(&mut SimConfig),
    daemon: impl FnOnce(&mut Config),
) -> MetaApp {
    let clock = ManualClock::new(START_MS);
    let mut sim_config = SimConfig::sandbox();
    sim_config.behaviour.sent_delay_ms = 0;
    sim_config.behaviour.delivered_delay_ms = 0;
    sim_config.behaviour.read_delay_ms = 0;
    sim_config.behaviour.batch_interval_ms = 5;
    sim_config.behaviour.retry_initial_ms = 20;
    sim(&mut sim_config);
    let simulator = Simulator::start(sim_config, "127.0.0.1:0", Arc::new(clock.clone()))
        .await
        .expect("the simulator starts");
    let graph_url = simulator.base_url().to_owned();
    let secret = simulator.app_secret().to_owned();
    let app = spawn_app_on_clock(clock, |c| {
        c.graph_url = graph_url;
        c.app_secret = Some(secret.into());
        c.graph_timeout_secs = 2;
        daemon(c);
    })
    .await;
    simulator.set_webhook_url(Some(format!("{}/webhooks/meta/", app.address)));
    let created = tenants::create_tenant(
        &mut app.db.get().unwrap(),
        "Mindo Software",
        &app.secret_key,
        app.clock.now_ms(),
    )
    .expect("a tenant");
    let config = Config {
        graph_url: simulator.base_url().to_owned(),
        ..Config::default()
    };
    let graph = config.graph_client();
    let clock: mindo_bulk::clock::SharedClock = Arc::new(app.clock.clone());
    for waba in ["102938475610001", "102938475610002", "102938475610003"] {
        mindo_bulk::sync::add_waba(
            &app.db,
            &graph,
            &clock,
            &app.secret_key,
            created.tenant_id,
            waba,
            "sandbox-token",
            None,
        )
        .await
        .expect("the sandbox WABA syncs");
    }
    MetaApp {
        app,
        sim: simulator,
        api_key: created.api_key,
        tenant_id: created.tenant_id,
        webhook_secret: created.webhook_secret,
    }
}

impl MetaApp {
    /// Submits a send; returns (status, body).
    pub async fn send_bulk(&self, body: &Value) -> (u16, Value) {
        let res = self
            .app
            .post("/api/v1/meta-templates/send-bulk/", &self.api_key, body)
            .await;
        let status = res.status().as_u16();
        (status, res.json().await.unwrap_or(Value::Null))
    }

    /// The status object of a send.
    pub async fn status(&self, id: &str) -> Value {
        let res = self
            .app
            .get(
                &format!("/api/v1/meta-templates/bulk-sends/{id}/"),
                Some(&self.api_key),
            )
            .await;
        assert_eq!(res.status(), 200);
        res.json().await.unwrap()
    }

    /// Polls the status until `done` holds (at most 60 s of polling); returns the last one.
    pub async fn wait_status(&self, id: &str, done: impl Fn(&Value) -> bool) -> Value {
        // A bound against hangs, not a timing assertion: generous for a loaded CI machine.
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            let status = self.status(id).await;
            if done(&status) {
                return status;
            }
            if std::time::Instant::now() >= deadline {
                let stats = self.stats();
                panic!(
                    "the send did not get there in time: {status:#}\nsimulator: accepted {}, refusals {:?}, webhooks {:?}",
                    stats.accepted_total, stats.refusals_by_code, stats.webhooks
                );
            }
            actix_web::rt::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Polls until the send is finished and every webhook has arrived (nothing `sent` only
    /// when every message should be read/delivered is not checked here).
    pub async fn wait_finished(&self, id: &str) -> Value {
        self.wait_status(id, |s| {
            matches!(
                s["status"].as_str(),
                Some("COMPLETED" | "PARTIAL" | "FAILED" | "CANCELLED")
            ) && s["pending_count"] == 0
        })
        .await
    }

    pub fn stats(&self) -> SimStats {
        self.sim.stats()
    }
}

/// A welcome_message send body for `phones`.
pub fn welcome(number: &str, phones: &[String]) -> Value {
    json!({
        "phone_number_id": number,
        "template_name": "welcome_message",
        "language": "es",
        "recipients": phones.iter().map(|p| json!({"phone": p, "variables": {"customer_name": "Ana"}})).collect::<Vec<_>>(),
    })
}

/// `n` distinct valid Argentine mobile numbers, starting at `from`.
pub fn phones(from: u32, n: u32) -> Vec<String> {
    (from..from + n)
        .map(|i| format!("+54911{:08}", 30_000_000 + i))
        .collect()
}
