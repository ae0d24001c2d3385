//! The Meta simulator: a stand-in for Meta's WhatsApp Cloud API that every test, the `--sandbox`
//! mode and the benchmarks use as "Meta". It is as strict as Meta where it matters to a bulk
//! sender, not a yes-machine:
//! - it checks tokens (190), numbers (100), the request's shape (100, 131009), templates (132001,
//!   132015, 132016) and every parameter against the template (132000, 131008, 132012, 100);
//! - it enforces per-number throughput (130429), the pair rate (131056) and the portfolio's
//!   messaging limit of unique recipients per moving 24 h (131048);
//! - it answers accepted sends with Meta's body and a unique wamid, then sends signed status
//!   webhooks (sent, delivered, read; failed 131026 for recipients not on WhatsApp, 131050 for
//!   marketing to users who stopped it) in batches,
//!   retried until the receiver answers 2xx;
//! - it can inject faults: latency, 5xx, hung requests (accepted or not), duplicate and reordered
//!   webhooks;
//! - it counts every accepted message per recipient, the most messages any number had accepted
//!   in one second and the most unique recipients any portfolio held, so a test can prove there
//!   were no double sends and that no limit was crossed ([`SimStats`]).
//!
//! # Pieces
//! - [`world`]: [`SimConfig`] (TOML), [`Behaviour`], [`SimConfig::sandbox`], and the indexed world.
//! - `template`: the simulator's own reading of Meta's template JSON (what a send must carry).
//! - `state`: validation, the limits ledger, counters and control operations as plain code.
//! - `server`: the actix-web routes, Graph API and `/__sim/*` control endpoints (listed there).
//! - `webhooks`: the webhook sender (a local task on the System the simulator was started on).
//!
//! # Use
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use std::sync::Arc;
//! use mindo_bulk::clock::SystemClock;
//! use mindo_bulk::simulator::{SimConfig, Simulator};
//!
//! let sim = Simulator::start(SimConfig::sandbox(), "127.0.0.1:0", Arc::new(SystemClock)).await?;
//! sim.set_webhook_url(Some("http://127.0.0.1:8080/webhooks/meta/".into()));
//! // Point the Graph client at sim.base_url(); later:
//! assert_eq!(sim.stats().recipients_accepted_more_than_once, 0);
//! # Ok(()) }
//! ```
//! Time: the throughput window runs on real monotonic time (`Instant`); the pair rate, the 24 h
//! window and webhook timestamps use the injected [`SharedClock`], so tests move them by hand.

mod server;
mod state;
mod template;
mod webhooks;
pub mod world;

use std::net::{IpAddr, Ipv4Addr, TcpListener};
use std::sync::Arc;

use actix_web::dev::ServerHandle;
use anyhow::Context;

use crate::clock::SharedClock;
pub use state::{
    ControlError, FaultStats, InboundText, NumberStats, PhoneNumberChange, PortfolioStats,
    SimError, SimStats, UserPreferenceChange, WebhookStats,
};
use state::{SenderCommand, Shared, TemplateStatusChange};
pub use webhooks::signature;
pub use world::{
    Behaviour, PhoneNumberConfig, SimConfig, SimConfigError, TemplateConfig, WabaConfig,
};

/// A running simulator. Cheap to clone; every clone controls the same simulator.
#[derive(Clone, Debug)]
pub struct Simulator {
    shared: Arc<Shared>,
    server: ServerHandle,
    base_url: String,
    port: u16,
}

impl Simulator {
    /// Checks `config`, binds `bind` (port 0 picks a free port), and starts the HTTP server (with
    /// `config.workers` workers) and the webhook sender on the current actix System.
    pub async fn start(
        config: SimConfig,
        bind: &str,
        clock: SharedClock,
    ) -> anyhow::Result<Simulator> {
        let (commands, receiver) = tokio::sync::mpsc::unbounded_channel();
        let shared = Arc::new(
            Shared::new(&config, clock, commands).context("the simulator config is not valid")?,
        );
        let listener = TcpListener::bind(bind)
            .with_context(|| format!("the simulator cannot listen on {bind}"))?;
        let address = listener.local_addr()?;
        let host = match address.ip() {
            ip if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
            ip => ip,
        };
        let base_url = match host {
            IpAddr::V4(ip) => format!("http://{ip}:{}", address.port()),
            IpAddr::V6(ip) => format!("http://[{ip}]:{}", address.port()),
        };
        let server = server::build(listener, shared.clone(), config.workers)?;
        let handle = server.handle();
        actix_web::rt::spawn(server);
        webhooks::spawn(shared.clone(), receiver);
        Ok(Simulator {
            shared,
            server: handle,
            base_url,
            port: address.port(),
        })
    }

    /// The port the simulator listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:PORT`: the Graph API base URL to give a client (paths are
    /// `/{version}/…`).
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// The app secret that signs webhooks.
    pub fn app_secret(&self) -> &str {
        &self.shared.app_secret
    }

    /// Where webhooks go; `None` drops them. Notifications waiting for a retry go to the new URL.
    pub fn set_webhook_url(&self, url: Option<String>) {
        self.shared.set_webhook_url(url);
    }

    /// The current webhook URL.
    pub fn webhook_url(&self) -> Option<String> {
        self.shared.webhook_url.read().as_deref().map(str::to_owned)
    }

    /// The current behaviour.
    pub fn behaviour(&self) -> Behaviour {
        self.shared.behaviour()
    }

    /// Changes the behaviour (faults, limits, ratios, delays) while running; refused, with nothing
    /// changed, when the result is not valid.
    pub fn update_behaviour(
        &self,
        change: impl FnOnce(&mut Behaviour),
    ) -> Result<Behaviour, SimConfigError> {
        let mut behaviour = self.shared.behaviour.write();
        let mut next = *behaviour;
        change(&mut next);
        next.check()?;
        *behaviour = next;
        Ok(next)
    }

    /// Sets a template's status (`APPROVED`, `PAUSED`, `DISABLED`, …) and sends
    /// `message_template_status_update`.
    pub fn set_template_status(
        &self,
        waba_id: &str,
        name: &str,
        language: &str,
        status: &str,
    ) -> Result<(), ControlError> {
        self.shared.set_template_status(&TemplateStatusChange {
            waba_id: waba_id.to_owned(),
            name: name.to_owned(),
            language: language.to_owned(),
            status: status.to_owned(),
        })
    }

    /// Changes a number's tier (its portfolio's), throughput, quality or coexistence, and sends the
    /// matching `business_capability_update` / `phone_number_quality_update` webhooks.
    pub fn set_phone_number(
        &self,
        id: &str,
        change: PhoneNumberChange,
    ) -> Result<(), ControlError> {
        self.shared.set_phone_number(id, &change)
    }

    /// A user writes `text` to our number `phone_number_id` (an inbound `messages` webhook).
    pub fn send_inbound_text(
        &self,
        phone_number_id: &str,
        from: &str,
        text: &str,
    ) -> Result<(), ControlError> {
        self.shared.inbound_text(&InboundText {
            phone_number_id: phone_number_id.to_owned(),
            from: from.to_owned(),
            text: text.to_owned(),
        })
    }

    /// A user stops (`true`) or resumes marketing messages in WhatsApp: a `user_preferences`
    /// webhook, and marketing sends to them fail with 131050 while stopped.
    pub fn set_marketing_stopped(
        &self,
        phone_number_id: &str,
        phone: &str,
        stopped: bool,
    ) -> Result<(), ControlError> {
        self.shared.user_preference(&UserPreferenceChange {
            phone_number_id: phone_number_id.to_owned(),
            phone: phone.to_owned(),
            value: if stopped { "stop" } else { "resume" }.to_owned(),
        })
    }

    /// A snapshot of the counters, with the per-recipient map.
    pub fn stats(&self) -> SimStats {
        self.shared.stats(true)
    }

    /// Stops the HTTP server (in-flight requests get a short grace period) and the webhook sender.
    /// POSTs already in flight or waiting for a retry end with the System.
    pub async fn stop(&self) {
        let _ = self.shared.sender.send(SenderCommand::Shutdown);
        self.server.stop(true).await;
    }
}
