//! What the simulator pretends Meta knows: the configuration ([`SimConfig`], loadable from TOML)
//! and the indexed, mutable world built from it (`World`).
//!
//! # The configuration file (`mindo-bulk simulator --config FILE`)
//! Every key is optional except the world's ids; unknown keys are refused, so a typo does not pass
//! silently. A minimal file:
//! ```toml
//! app_secret = "s3cret"
//! webhook_url = "http://127.0.0.1:8080/webhooks/meta/"
//! undeliverable = ["+14155550100"]
//!
//! [behaviour]
//! read_ratio = 0.2
//! delivered_delay_ms = 300
//!
//! [[wabas]]
//! id = "102938475610001"
//! name = "Acme"
//! access_token = "acme-token"
//!
//! [[wabas.phone_numbers]]
//! id = "106540352240001"
//! display_phone_number = "+1 202-555-0101"
//! verified_name = "Acme"
//! tier = "TIER_250"
//! throughput_level = "STANDARD"
//!
//! [[wabas.templates]]
//! id = "900000000000001"
//! name = "hello_world"
//! language = "en_US"
//! category = "UTILITY"
//! components = [{ type = "BODY", text = "Hello!" }]
//! ```
//!
//! # Tiers belong to the portfolio
//! Since 2025-10-07 Meta's messaging limit is per business portfolio (META.md §2). A number's
//! `tier` in the file is therefore folded into its portfolio: the portfolio takes the highest tier
//! of its numbers (as Meta did for existing portfolios), every number of the portfolio reports that
//! tier, and changing one number's tier through the control API changes the portfolio's.

//!
//! # Files
//! - `mod.rs`: the configuration ([`SimConfig`], [`Behaviour`]) and its loading.
//! - `sandbox.rs`: [`SimConfig::sandbox`], the demo world.
//! - `indexed.rs`: the indexed world built from a configuration, changed at runtime.

mod indexed;
mod sandbox;

use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::domain::tier::{ThroughputLevel, Tier};
pub(crate) use indexed::*;

/// Everything the simulator is started with.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimConfig {
    /// Where status and account webhooks are POSTed; `None` drops them (counted in the stats).
    /// Several URLs separated by commas take the POSTs in turn, a retry going to the next
    /// (several daemons, as a load balancer spreads them). Changeable at runtime ([`crate::simulator::Simulator::set_webhook_url`]).
    #[serde(default)]
    pub webhook_url: Option<String>,
    /// The Meta app secret that signs every webhook (`X-Hub-Signature-256`). Default
    /// `sandbox-app-secret`.
    #[serde(default = "default_app_secret")]
    pub app_secret: String,
    /// HTTP worker threads of the simulator's server. Default 2.
    #[serde(default = "default_workers")]
    pub workers: usize,
    /// Seed of the random choices (faults, delivered/read ratios, duplicates, reordering), so a
    /// run is reproducible. Default 42.
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// Recipients (E.164 with `+`) that are not on WhatsApp: their sends are accepted, then fail
    /// by webhook with 131026 and no `sent`.
    #[serde(default)]
    pub undeliverable: Vec<String>,
    /// Recipients (E.164 with `+`) who stopped marketing messages before the simulator started
    /// (no `user_preferences` webhook is sent for them): marketing sends to them are accepted,
    /// then fail by webhook with 131050. `POST /__sim/user-preferences` changes the set at runtime.
    #[serde(default)]
    pub marketing_stopped: Vec<String>,
    /// Timings, ratios, limits and faults; changeable at runtime.
    #[serde(default)]
    pub behaviour: Behaviour,
    /// The WhatsApp Business Accounts, with their numbers and templates.
    #[serde(default)]
    pub wabas: Vec<WabaConfig>,
}

/// One WhatsApp Business Account.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WabaConfig {
    /// Meta's WABA id.
    pub id: String,
    /// The account's name.
    pub name: String,
    /// The business portfolio (Meta Business Manager) owning the WABA. WABAs sharing a portfolio
    /// share its messaging limit. `None`: the WABA is its own portfolio (same id and name).
    #[serde(default)]
    pub portfolio_id: Option<String>,
    /// The portfolio's name (`owner_business_info.name`); default: the first owning WABA's name.
    #[serde(default)]
    pub portfolio_name: Option<String>,
    /// The system-user token every Graph call on this WABA's objects must present.
    pub access_token: String,
    /// The registered sender numbers.
    #[serde(default)]
    pub phone_numbers: Vec<PhoneNumberConfig>,
    /// The message templates, one per (name, language).
    #[serde(default)]
    pub templates: Vec<TemplateConfig>,
}

/// One registered sender number.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PhoneNumberConfig {
    /// Meta's phone-number id (the `{phone_number_id}` of `/messages`).
    pub id: String,
    /// As Meta displays it, e.g. `+1 202-555-0101`; webhooks carry its digits.
    pub display_phone_number: String,
    /// The approved display name.
    pub verified_name: String,
    /// `GREEN`, `YELLOW`, `RED` or `UNKNOWN`. Default `GREEN`.
    #[serde(default = "default_quality")]
    pub quality_rating: String,
    /// Messaging limit in any of Meta's forms (`TIER_250`, `TIER_2K`, `TIER_UNLIMITED`, …); see the
    /// module doc: it is folded into the portfolio. Default `TIER_250`.
    #[serde(default = "default_tier")]
    pub tier: Tier,
    /// `STANDARD` (80 mps) or `HIGH` (1 000 mps). Default `STANDARD`.
    #[serde(default = "default_throughput")]
    pub throughput_level: ThroughputLevel,
    /// Coexistence with the WhatsApp Business app: fixed at 20 mps whatever the level.
    #[serde(default)]
    pub is_on_biz_app: bool,
}

/// One message template (one language of it), in Meta's JSON shape.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TemplateConfig {
    /// Meta's template id.
    pub id: String,
    /// Template name (`[a-z0-9_]`).
    pub name: String,
    /// Exact locale (`es`, `en`, `en_US`, `pt_BR`, …).
    pub language: String,
    /// `APPROVED`, `PENDING`, `REJECTED`, `PAUSED`, `DISABLED`, … Default `APPROVED`.
    #[serde(default = "default_template_status")]
    pub status: String,
    /// `MARKETING`, `UTILITY` or `AUTHENTICATION`. Default `UTILITY`.
    #[serde(default = "default_category")]
    pub category: String,
    /// `NAMED` or `POSITIONAL`; absent means POSITIONAL (Meta's default).
    #[serde(default)]
    pub parameter_format: Option<String>,
    /// Meta's `components` array (HEADER, BODY, FOOTER, BUTTONS), read by the simulator's own
    /// reader (`src/simulator/template.rs`), which refuses what Meta would not approve.
    pub components: Value,
}

/// Timings, ratios, limits and faults. Every field has a default; all of them can be changed while
/// the simulator runs (`POST /__sim/behaviour` or [`crate::simulator::Simulator::update_behaviour`]).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Behaviour {
    /// Fraction of sent messages that get a `delivered`. Default 1.0.
    pub delivered_ratio: f64,
    /// Fraction of *delivered* messages that also get a `read`. Default 0.5. A read message always
    /// had its `delivered` first (Meta may skip it when both happen at once; the simulator does
    /// not, to keep the default simple).
    pub read_ratio: f64,
    /// Delay from acceptance to the `sent` (or `failed` for undeliverable) status, ms. Default 0.
    pub sent_delay_ms: u64,
    /// Delay from `sent` to `delivered`, ms. Default 0.
    pub delivered_delay_ms: u64,
    /// Delay from `delivered` to `read`, ms. Default 0.
    pub read_delay_ms: u64,
    /// Most statuses in one webhook POST. Default 100 (Meta: up to 1 000).
    pub batch_size: usize,
    /// Longest a due status waits for its batch to fill before being posted, ms. Default 10.
    pub batch_interval_ms: u64,
    /// Webhook POSTs in flight at once. Default 8. Read when the sender starts.
    pub max_concurrent_posts: usize,
    /// First retry delay of a webhook POST that failed (non-2xx or connection error), ms; doubled
    /// per failure up to [`Behaviour::retry_max_ms`], forever (Meta retries for 7 days). Default 250.
    pub retry_initial_ms: u64,
    /// Longest retry delay, ms. Default 30 000.
    pub retry_max_ms: u64,
    /// Refuse sends over the number's messages per second (130429). Default true.
    pub enforce_mps: bool,
    /// Refuse a second message to the same recipient from the same number within 6 s (131056).
    /// Default true.
    pub enforce_pair_rate: bool,
    /// Refuse new recipients over the portfolio's unique-recipient limit per moving 24 h (131048).
    /// Default true.
    pub enforce_quota: bool,
    /// Fraction of valid sends answered with a 5xx (HTTP 500, code 131000 or 1), not accepted.
    /// Default 0.
    pub error_5xx_ratio: f64,
    /// Fraction of valid sends whose answer is held for [`Behaviour::hang_ms`]. Default 0.
    pub hang_ratio: f64,
    /// How long a hung send is held, ms. Default 30 000.
    pub hang_ms: u64,
    /// Whether a hung send is processed (limits, acceptance, webhooks) before hanging, answering
    /// its real result late: the worst case for double sends. Otherwise it is answered 500
    /// (131000) after the hang and never accepted. Default true.
    pub hang_accepts: bool,
    /// Delay added to every send request before it is handled, ms. Default 0.
    pub latency_ms: u64,
    /// Fraction of status webhooks delivered twice (the copy up to `max(reorder_jitter_ms, 50)` ms
    /// later). Default 0.
    pub duplicate_ratio: f64,
    /// Shuffle statuses: each status is delayed by a random 0..=`reorder_jitter_ms` (so a
    /// `delivered` may arrive before its `sent`) and every batch is shuffled. Default false.
    pub reorder: bool,
    /// Largest random delay added per status when `reorder` is on, ms. Default 200.
    pub reorder_jitter_ms: u64,
}

impl Default for Behaviour {
    fn default() -> Self {
        Behaviour {
            delivered_ratio: 1.0,
            read_ratio: 0.5,
            sent_delay_ms: 0,
            delivered_delay_ms: 0,
            read_delay_ms: 0,
            batch_size: 100,
            batch_interval_ms: 10,
            max_concurrent_posts: 8,
            retry_initial_ms: 250,
            retry_max_ms: 30_000,
            enforce_mps: true,
            enforce_pair_rate: true,
            enforce_quota: true,
            error_5xx_ratio: 0.0,
            hang_ratio: 0.0,
            hang_ms: 30_000,
            hang_accepts: true,
            latency_ms: 0,
            duplicate_ratio: 0.0,
            reorder: false,
            reorder_jitter_ms: 200,
        }
    }
}

impl Behaviour {
    /// Checks ratios (0..=1) and sizes (≥ 1).
    pub fn check(&self) -> Result<(), SimConfigError> {
        let ratios = [
            ("delivered_ratio", self.delivered_ratio),
            ("read_ratio", self.read_ratio),
            ("error_5xx_ratio", self.error_5xx_ratio),
            ("hang_ratio", self.hang_ratio),
            ("duplicate_ratio", self.duplicate_ratio),
        ];
        for (name, value) in ratios {
            if !(0.0..=1.0).contains(&value) {
                return Err(SimConfigError::Invalid(format!(
                    "behaviour.{name} must be between 0 and 1, got {value}"
                )));
            }
        }
        if self.batch_size == 0 {
            return Err(SimConfigError::Invalid(
                "behaviour.batch_size must be at least 1".into(),
            ));
        }
        if self.max_concurrent_posts == 0 {
            return Err(SimConfigError::Invalid(
                "behaviour.max_concurrent_posts must be at least 1".into(),
            ));
        }
        if self.retry_initial_ms == 0 || self.retry_max_ms < self.retry_initial_ms {
            return Err(SimConfigError::Invalid(
                "behaviour.retry_initial_ms must be at least 1 and at most retry_max_ms".into(),
            ));
        }
        Ok(())
    }

    /// Applies a JSON object of behaviour fields (the body of `POST /__sim/behaviour`): the named
    /// fields change, the others keep their value; unknown fields and bad values are refused.
    pub fn patched(&self, patch: &Value) -> Result<Behaviour, SimConfigError> {
        let Value::Object(patch) = patch else {
            return Err(SimConfigError::Invalid(
                "the behaviour patch must be a JSON object".into(),
            ));
        };
        let mut current = serde_json::to_value(self)
            .map_err(|e| SimConfigError::Invalid(format!("behaviour: {e}")))?;
        if let Value::Object(fields) = &mut current {
            for (key, value) in patch {
                fields.insert(key.clone(), value.clone());
            }
        }
        let next: Behaviour = serde_json::from_value(current)
            .map_err(|e| SimConfigError::Invalid(format!("behaviour: {e}")))?;
        next.check()?;
        Ok(next)
    }
}

/// Why a simulator configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SimConfigError {
    /// The file could not be read.
    #[error("cannot read the simulator config {path}: {source}")]
    Read {
        /// The path given.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid TOML for a [`SimConfig`].
    #[error("the simulator config {path} is not valid: {message}")]
    Parse {
        /// The path given.
        path: String,
        /// What the parser said.
        message: String,
    },
    /// The world or behaviour is inconsistent (duplicate ids, a template Meta would not approve,
    /// a ratio out of range, …).
    #[error("{0}")]
    Invalid(String),
}

fn default_app_secret() -> String {
    "sandbox-app-secret".into()
}
fn default_workers() -> usize {
    2
}
fn default_seed() -> u64 {
    42
}
fn default_quality() -> String {
    "GREEN".into()
}
fn default_tier() -> Tier {
    Tier::T250
}
fn default_throughput() -> ThroughputLevel {
    ThroughputLevel::Standard
}
fn default_template_status() -> String {
    "APPROVED".into()
}
fn default_category() -> String {
    "UTILITY".into()
}

impl Default for SimConfig {
    /// An empty world with default behaviour.
    fn default() -> Self {
        SimConfig {
            webhook_url: None,
            app_secret: default_app_secret(),
            workers: default_workers(),
            seed: default_seed(),
            undeliverable: Vec::new(),
            marketing_stopped: Vec::new(),
            behaviour: Behaviour::default(),
            wabas: Vec::new(),
        }
    }
}

impl SimConfig {
    /// Reads a TOML file.
    pub fn load(path: &Path) -> Result<SimConfig, SimConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| SimConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_toml(&text).map_err(|e| match e {
            SimConfigError::Parse { message, .. } => SimConfigError::Parse {
                path: path.display().to_string(),
                message,
            },
            other => other,
        })
    }

    /// Parses TOML text and checks the result.
    pub fn from_toml(text: &str) -> Result<SimConfig, SimConfigError> {
        let config: SimConfig = toml::from_str(text).map_err(|e| SimConfigError::Parse {
            path: "(text)".into(),
            message: e.message().to_owned(),
        })?;
        config.check()?;
        Ok(config)
    }

    /// Checks the configuration: unique ids, usable templates, E.164 undeliverable numbers, sane
    /// behaviour. [`crate::simulator::Simulator::start`] calls it.
    pub fn check(&self) -> Result<(), SimConfigError> {
        World::build(self).map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn the_sandbox_world_is_valid_and_round_trips_through_toml() {
        let sandbox = SimConfig::sandbox();
        sandbox.check().expect("the sandbox is valid");
        let text = toml::to_string(&sandbox).expect("the sandbox serialises to TOML");
        let back = SimConfig::from_toml(&text).expect("and parses back");
        assert_eq!(back, sandbox);
    }

    #[test]
    fn sandbox_numbers_are_on_three_tiers_in_their_own_portfolios() {
        let world = World::build(&SimConfig::sandbox()).unwrap();
        assert_eq!(world.portfolios.len(), 3);
        let tiers: Vec<Tier> = world.portfolios.iter().map(|p| p.tier).collect();
        assert_eq!(tiers, [Tier::T250, Tier::T10000, Tier::Unlimited]);
        let mps: Vec<u32> = world.numbers.iter().map(PhoneNumber::mps).collect();
        assert_eq!(mps, [80, 80, 1_000]);
        let statuses: HashSet<&str> = world.templates.iter().map(|t| t.status.as_str()).collect();
        assert!(statuses.contains("PAUSED") && statuses.contains("REJECTED"));
    }

    #[test]
    fn a_portfolio_takes_the_highest_tier_of_its_numbers() {
        let mut config = SimConfig::sandbox();
        config.wabas[1].portfolio_id = Some(config.wabas[0].id.clone());
        let world = World::build(&config).unwrap();
        assert_eq!(world.portfolios.len(), 2);
        assert_eq!(world.portfolios[0].tier, Tier::T10000);
        assert_eq!(world.portfolio_of(0), world.portfolio_of(1));
    }

    #[test]
    fn duplicate_ids_and_bad_templates_are_refused() {
        let mut config = SimConfig::sandbox();
        config.wabas[1].phone_numbers[0].id = config.wabas[0].phone_numbers[0].id.clone();
        assert!(config
            .check()
            .unwrap_err()
            .to_string()
            .contains("used twice"));

        let mut config = SimConfig::sandbox();
        config.wabas[0].templates[0].components =
            serde_json::json!([{"type": "BODY", "text": "Hi {{ name"}]);
        assert!(config.check().is_err());

        let mut config = SimConfig::sandbox();
        config.undeliverable.push("5491112345678".into());
        assert!(config.check().unwrap_err().to_string().contains("E.164"));
    }

    #[test]
    fn unknown_keys_in_the_file_are_refused() {
        let err = SimConfig::from_toml("webhok_url = \"http://x\"").unwrap_err();
        assert!(err.to_string().contains("webhok_url"), "{err}");
    }

    #[test]
    fn a_behaviour_patch_changes_only_what_it_names() {
        let base = Behaviour::default();
        let next = base
            .patched(&serde_json::json!({"read_ratio": 1.0, "enforce_mps": false}))
            .unwrap();
        assert_eq!(next.read_ratio, 1.0);
        assert!(!next.enforce_mps);
        assert_eq!(next.batch_size, base.batch_size);
        assert!(base.patched(&serde_json::json!({"nope": 1})).is_err());
        assert!(base
            .patched(&serde_json::json!({"delivered_ratio": 2.0}))
            .is_err());
    }

    #[test]
    fn recipients_must_be_strict_e164() {
        assert_eq!(recipient_key("+5491112345678"), Some(5_491_112_345_678));
        for bad in [
            "5491112345678",
            "+0123456789",
            "+12",
            "+1234567890123456",
            "+54 911",
            "",
        ] {
            assert_eq!(recipient_key(bad), None, "{bad}");
        }
    }
}
