//! What the simulator pretends Meta knows: the configuration ([`SimConfig`], loadable from TOML)
//! and the indexed, mutable world built from it ([`World`]).
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

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::domain::tier::{ThroughputLevel, Tier};
use crate::simulator::template::{check_locale, TemplateShape};

/// Everything the simulator is started with.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimConfig {
    /// Where status and account webhooks are POSTed; `None` drops them (counted in the stats).
    /// Changeable at runtime ([`crate::simulator::Simulator::set_webhook_url`]).
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

    /// The demo world of `serve --sandbox`: three WABAs, each its own portfolio, one number each:
    ///
    /// | WABA | number | tier | throughput |
    /// |---|---|---|---|
    /// | `102938475610001` Mindo Demo Starter | `106540352240001` +1 202-555-0101 | TIER_250 | STANDARD |
    /// | `102938475610002` Mindo Demo Growth | `106540352240002` +1 202-555-0102 | TIER_10K | STANDARD |
    /// | `102938475610003` Mindo Demo Enterprise | `106540352240003` +1 202-555-0103 | TIER_UNLIMITED | HIGH |
    ///
    /// Every WABA has the token `sandbox-token` and the same templates (ids differ per WABA):
    /// `welcome_message` (NAMED `{{customer_name}}`, es + en, MARKETING), `order_update`
    /// (POSITIONAL `{{1}}` `{{2}}` + a dynamic URL button, es + en, UTILITY), `promo_code` (POSITIONAL
    /// `{{1}}` + COPY_CODE and QUICK_REPLY buttons, es + en, MARKETING), `invoice_ready` (DOCUMENT
    /// header + `{{1}}`, es), `hello_world` (no parameters, en_US), `seasonal_sale` (PAUSED, es) and
    /// `account_alert` (REJECTED, en). `+14155550100` and `+14155550199` are not on WhatsApp.
    /// Statuses come with small human-visible delays (sent 100 ms, delivered 400 ms, read 1.5 s).
    pub fn sandbox() -> SimConfig {
        let numbers = [
            (
                "102938475610001",
                "Mindo Demo Starter",
                "106540352240001",
                "+1 202-555-0101",
                Tier::T250,
                ThroughputLevel::Standard,
            ),
            (
                "102938475610002",
                "Mindo Demo Growth",
                "106540352240002",
                "+1 202-555-0102",
                Tier::T10000,
                ThroughputLevel::Standard,
            ),
            (
                "102938475610003",
                "Mindo Demo Enterprise",
                "106540352240003",
                "+1 202-555-0103",
                Tier::Unlimited,
                ThroughputLevel::High,
            ),
        ];
        let wabas = numbers
            .iter()
            .enumerate()
            .map(
                |(i, (waba_id, name, number_id, display, tier, level))| WabaConfig {
                    id: (*waba_id).into(),
                    name: (*name).into(),
                    portfolio_id: None,
                    portfolio_name: None,
                    access_token: "sandbox-token".into(),
                    phone_numbers: vec![PhoneNumberConfig {
                        id: (*number_id).into(),
                        display_phone_number: (*display).into(),
                        verified_name: (*name).into(),
                        quality_rating: "GREEN".into(),
                        tier: *tier,
                        throughput_level: *level,
                        is_on_biz_app: false,
                    }],
                    templates: sandbox_templates(i + 1),
                },
            )
            .collect();
        SimConfig {
            undeliverable: vec!["+14155550100".into(), "+14155550199".into()],
            behaviour: Behaviour {
                sent_delay_ms: 100,
                delivered_delay_ms: 400,
                read_delay_ms: 1_500,
                ..Behaviour::default()
            },
            wabas,
            ..SimConfig::default()
        }
    }
}

/// The sandbox templates of WABA number `n` (1-based); ids are unique across WABAs.
fn sandbox_templates(n: usize) -> Vec<TemplateConfig> {
    let t = |seq: usize,
             name: &str,
             language: &str,
             status: &str,
             category: &str,
             format: &str,
             components: Value| TemplateConfig {
        id: format!("7700{n:02}{seq:09}"),
        name: name.into(),
        language: language.into(),
        status: status.into(),
        category: category.into(),
        parameter_format: Some(format.into()),
        components,
    };
    use serde_json::json;
    vec![
        t(
            1,
            "welcome_message",
            "es",
            "APPROVED",
            "MARKETING",
            "NAMED",
            json!([
                {"type": "BODY", "text": "¡Hola {{customer_name}}! Gracias por sumarte a Mindo. Responde a este mensaje si necesitas ayuda.",
                 "example": {"body_text_named_params": [{"param_name": "customer_name", "example": "Juan"}]}},
                {"type": "FOOTER", "text": "Mindo Software"}
            ]),
        ),
        t(
            2,
            "welcome_message",
            "en",
            "APPROVED",
            "MARKETING",
            "NAMED",
            json!([
                {"type": "BODY", "text": "Hi {{customer_name}}! Thanks for joining Mindo. Reply to this message if you need help.",
                 "example": {"body_text_named_params": [{"param_name": "customer_name", "example": "John"}]}},
                {"type": "FOOTER", "text": "Mindo Software"}
            ]),
        ),
        t(
            3,
            "order_update",
            "es",
            "APPROVED",
            "UTILITY",
            "POSITIONAL",
            json!([
                {"type": "BODY", "text": "Tu pedido {{1}} está {{2}}. Gracias por tu compra.",
                 "example": {"body_text": [["A-1042", "en camino"]]}},
                {"type": "BUTTONS", "buttons": [
                    {"type": "URL", "text": "Ver pedido", "url": "https://shop.example.com/orders/{{1}}",
                     "example": ["https://shop.example.com/orders/A-1042"]}
                ]}
            ]),
        ),
        t(
            4,
            "order_update",
            "en",
            "APPROVED",
            "UTILITY",
            "POSITIONAL",
            json!([
                {"type": "BODY", "text": "Your order {{1}} is {{2}}. Thanks for shopping with us.",
                 "example": {"body_text": [["A-1042", "on its way"]]}},
                {"type": "BUTTONS", "buttons": [
                    {"type": "URL", "text": "View order", "url": "https://shop.example.com/orders/{{1}}",
                     "example": ["https://shop.example.com/orders/A-1042"]}
                ]}
            ]),
        ),
        t(
            5,
            "promo_code",
            "es",
            "APPROVED",
            "MARKETING",
            "POSITIONAL",
            json!([
                {"type": "HEADER", "format": "TEXT", "text": "Un regalo para ti"},
                {"type": "BODY", "text": "Tienes {{1}}% de descuento en tu próxima compra. Copia el código y úsalo al pagar.",
                 "example": {"body_text": [["20"]]}},
                {"type": "BUTTONS", "buttons": [
                    {"type": "COPY_CODE", "example": "SAVE20"},
                    {"type": "QUICK_REPLY", "text": "No me interesa"}
                ]}
            ]),
        ),
        t(
            6,
            "promo_code",
            "en",
            "APPROVED",
            "MARKETING",
            "POSITIONAL",
            json!([
                {"type": "HEADER", "format": "TEXT", "text": "A gift for you"},
                {"type": "BODY", "text": "You get {{1}}% off your next order. Copy the code and use it at checkout.",
                 "example": {"body_text": [["20"]]}},
                {"type": "BUTTONS", "buttons": [
                    {"type": "COPY_CODE", "example": "SAVE20"},
                    {"type": "QUICK_REPLY", "text": "Not interested"}
                ]}
            ]),
        ),
        t(
            7,
            "invoice_ready",
            "es",
            "APPROVED",
            "UTILITY",
            "POSITIONAL",
            json!([
                {"type": "HEADER", "format": "DOCUMENT",
                 "example": {"header_handle": ["https://files.example.com/invoice.pdf"]}},
                {"type": "BODY", "text": "Tu factura {{1}} ya está disponible.",
                 "example": {"body_text": [["F-0001"]]}}
            ]),
        ),
        t(
            8,
            "hello_world",
            "en_US",
            "APPROVED",
            "UTILITY",
            "POSITIONAL",
            json!([
                {"type": "HEADER", "format": "TEXT", "text": "Hello World"},
                {"type": "BODY", "text": "Welcome and congratulations!! This message demonstrates your ability to send a WhatsApp message notification from the Cloud API, hosted by Meta. Thank you for taking the time to test with us."},
                {"type": "FOOTER", "text": "WhatsApp Business Platform sample message"}
            ]),
        ),
        t(
            9,
            "seasonal_sale",
            "es",
            "PAUSED",
            "MARKETING",
            "NAMED",
            json!([
                {"type": "BODY", "text": "¡{{customer_name}}, llegó la temporada de ofertas! Hasta 50% en toda la tienda.",
                 "example": {"body_text_named_params": [{"param_name": "customer_name", "example": "Juan"}]}}
            ]),
        ),
        t(
            10,
            "account_alert",
            "en",
            "REJECTED",
            "UTILITY",
            "POSITIONAL",
            json!([
                {"type": "BODY", "text": "URGENT!!! Your account {{1}} will be closed. Click now.",
                 "example": {"body_text": [["12345"]]}}
            ]),
        ),
    ]
}

/// A business portfolio: owns the messaging limit shared by its WABAs' numbers.
#[derive(Clone, Debug)]
pub(crate) struct Portfolio {
    pub id: String,
    pub name: String,
    /// The portfolio's messaging limit; changed through the control API.
    pub tier: Tier,
}

/// A WABA at runtime.
#[derive(Clone, Debug)]
pub(crate) struct Waba {
    pub id: String,
    pub name: String,
    pub portfolio: usize,
    pub access_token: String,
    /// Indexes into [`World::numbers`], in configuration order.
    pub numbers: Vec<usize>,
    /// Indexes into [`World::templates`], in configuration order.
    pub templates: Vec<usize>,
    /// Template name → indexes (one per language).
    pub templates_by_name: HashMap<String, Vec<usize>>,
}

/// A sender number at runtime.
#[derive(Clone, Debug)]
pub(crate) struct PhoneNumber {
    pub id: String,
    pub display_phone_number: String,
    /// `display_phone_number` without separators: what webhooks carry.
    pub display_digits: String,
    pub verified_name: String,
    /// Changed through the control API.
    pub quality_rating: String,
    /// Changed through the control API.
    pub throughput_level: ThroughputLevel,
    /// Changed through the control API.
    pub is_on_biz_app: bool,
    pub waba: usize,
}

impl PhoneNumber {
    /// Messages per second this number may send: 20 on the Business app, else its level's.
    pub fn mps(&self) -> u32 {
        if self.is_on_biz_app {
            ThroughputLevel::Coexistence.mps()
        } else {
            self.throughput_level.mps()
        }
    }
}

/// A template at runtime, with what a send must supply.
#[derive(Clone, Debug)]
pub(crate) struct Template {
    pub id: String,
    pub name: String,
    pub language: String,
    /// Upper case; changed through the control API.
    pub status: String,
    pub category: String,
    /// `category` in lower case, as status webhooks' `pricing.category` carries it.
    pub pricing_category: Arc<str>,
    pub components: Value,
    /// What a send must carry, as the simulator reads `components` (its own reading, see
    /// [`crate::simulator::template`]).
    pub shape: TemplateShape,
}

/// The indexed world: WABAs, portfolios, numbers, templates, undeliverable recipients.
#[derive(Clone, Debug)]
pub(crate) struct World {
    pub portfolios: Vec<Portfolio>,
    pub wabas: Vec<Waba>,
    pub numbers: Vec<PhoneNumber>,
    pub templates: Vec<Template>,
    pub number_index: HashMap<String, usize>,
    pub waba_index: HashMap<String, usize>,
    pub template_index: HashMap<String, usize>,
    /// Recipients not on WhatsApp, as digits parsed to an integer.
    pub undeliverable: HashSet<u64>,
    /// Every access token, for "is this token known at all" (190 before 100).
    pub tokens: HashSet<String>,
}

/// Which object a Graph id names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Node {
    Number(usize),
    Waba(usize),
    Template(usize),
}

impl World {
    /// Indexes and checks a configuration.
    pub fn build(config: &SimConfig) -> Result<World, SimConfigError> {
        config.behaviour.check()?;
        if config.workers == 0 {
            return Err(SimConfigError::Invalid("workers must be at least 1".into()));
        }
        let mut world = World {
            portfolios: Vec::new(),
            wabas: Vec::new(),
            numbers: Vec::new(),
            templates: Vec::new(),
            number_index: HashMap::new(),
            waba_index: HashMap::new(),
            template_index: HashMap::new(),
            undeliverable: HashSet::new(),
            tokens: HashSet::new(),
        };
        let mut ids: HashSet<&str> = HashSet::new();
        let mut portfolio_index: HashMap<String, usize> = HashMap::new();
        // The highest tier among each portfolio's numbers, so far.
        let mut portfolio_tiers: Vec<Option<Tier>> = Vec::new();
        for waba in &config.wabas {
            check_id(&waba.id, "WABA")?;
            if !ids.insert(&waba.id) {
                return Err(SimConfigError::Invalid(format!(
                    "the id {} is used twice",
                    waba.id
                )));
            }
            if waba.access_token.trim().is_empty() {
                return Err(SimConfigError::Invalid(format!(
                    "WABA {} has an empty access_token",
                    waba.id
                )));
            }
            let portfolio_id = waba.portfolio_id.clone().unwrap_or_else(|| waba.id.clone());
            let portfolio = *portfolio_index
                .entry(portfolio_id.clone())
                .or_insert_with(|| {
                    world.portfolios.push(Portfolio {
                        id: portfolio_id,
                        name: waba
                            .portfolio_name
                            .clone()
                            .unwrap_or_else(|| waba.name.clone()),
                        tier: Tier::NotSet,
                    });
                    portfolio_tiers.push(None);
                    world.portfolios.len() - 1
                });
            let waba_idx = world.wabas.len();
            let mut numbers = Vec::new();
            for number in &waba.phone_numbers {
                check_id(&number.id, "phone number")?;
                if !ids.insert(&number.id) {
                    return Err(SimConfigError::Invalid(format!(
                        "the id {} is used twice",
                        number.id
                    )));
                }
                let display_digits: String = number
                    .display_phone_number
                    .chars()
                    .filter(char::is_ascii_digit)
                    .collect();
                if display_digits.is_empty() {
                    return Err(SimConfigError::Invalid(format!(
                        "phone number {} has no digits in display_phone_number",
                        number.id
                    )));
                }
                let highest = &mut portfolio_tiers[portfolio];
                if highest.is_none_or(|t| tier_rank(number.tier) > tier_rank(t)) {
                    *highest = Some(number.tier);
                }
                numbers.push(world.numbers.len());
                world
                    .number_index
                    .insert(number.id.clone(), world.numbers.len());
                world.numbers.push(PhoneNumber {
                    id: number.id.clone(),
                    display_phone_number: number.display_phone_number.clone(),
                    display_digits,
                    verified_name: number.verified_name.clone(),
                    quality_rating: number.quality_rating.to_ascii_uppercase(),
                    throughput_level: number.throughput_level,
                    is_on_biz_app: number.is_on_biz_app,
                    waba: waba_idx,
                });
            }
            let mut templates = Vec::new();
            let mut by_name: HashMap<String, Vec<usize>> = HashMap::new();
            for template in &waba.templates {
                check_id(&template.id, "template")?;
                if !ids.insert(&template.id) {
                    return Err(SimConfigError::Invalid(format!(
                        "the id {} is used twice",
                        template.id
                    )));
                }
                let same = by_name.get(&template.name).into_iter().flatten();
                if same
                    .clone()
                    .any(|&i| world.templates[i].language == template.language)
                {
                    return Err(SimConfigError::Invalid(format!(
                        "WABA {} has two templates {} in {}",
                        waba.id, template.name, template.language
                    )));
                }
                let shape = check_locale(&template.language)
                    .and_then(|()| {
                        TemplateShape::read(
                            template.parameter_format.as_deref(),
                            &template.components,
                        )
                    })
                    .map_err(|e| {
                        SimConfigError::Invalid(format!(
                            "template {} ({}): {e}",
                            template.name, template.language
                        ))
                    })?;
                let idx = world.templates.len();
                templates.push(idx);
                by_name.entry(template.name.clone()).or_default().push(idx);
                world.template_index.insert(template.id.clone(), idx);
                world.templates.push(Template {
                    id: template.id.clone(),
                    name: template.name.clone(),
                    language: template.language.clone(),
                    status: template.status.trim().to_ascii_uppercase(),
                    category: template.category.trim().to_ascii_uppercase(),
                    pricing_category: Arc::from(template.category.trim().to_ascii_lowercase()),
                    components: template.components.clone(),
                    shape,
                });
            }
            world.tokens.insert(waba.access_token.clone());
            world.waba_index.insert(waba.id.clone(), waba_idx);
            world.wabas.push(Waba {
                id: waba.id.clone(),
                name: waba.name.clone(),
                portfolio,
                access_token: waba.access_token.clone(),
                numbers,
                templates,
                templates_by_name: by_name,
            });
        }
        for number in &config.undeliverable {
            let key = recipient_key(number).ok_or_else(|| {
                SimConfigError::Invalid(format!(
                    "undeliverable number {number:?} is not E.164 (+ and 7 to 15 digits)"
                ))
            })?;
            world.undeliverable.insert(key);
        }
        // A portfolio without numbers has the new-portfolio limit.
        for (portfolio, tier) in world.portfolios.iter_mut().zip(portfolio_tiers) {
            portfolio.tier = tier.unwrap_or(Tier::T250);
        }
        Ok(world)
    }

    /// The object a Graph id names.
    pub fn node(&self, id: &str) -> Option<Node> {
        if let Some(&i) = self.number_index.get(id) {
            return Some(Node::Number(i));
        }
        if let Some(&i) = self.waba_index.get(id) {
            return Some(Node::Waba(i));
        }
        self.template_index.get(id).map(|&i| Node::Template(i))
    }

    /// The WABA owning an object.
    pub fn owner(&self, node: Node) -> usize {
        match node {
            Node::Number(i) => self.numbers[i].waba,
            Node::Waba(i) => i,
            Node::Template(i) => self
                .wabas
                .iter()
                .position(|w| w.templates.contains(&i))
                .unwrap_or(0),
        }
    }

    /// The template `name` in `language` of a WABA.
    pub fn template(&self, waba: usize, name: &str, language: &str) -> Option<usize> {
        self.wabas[waba]
            .templates_by_name
            .get(name)?
            .iter()
            .copied()
            .find(|&i| self.templates[i].language == language)
    }

    /// The portfolio of a number.
    pub fn portfolio_of(&self, number: usize) -> usize {
        self.wabas[self.numbers[number].waba].portfolio
    }
}

/// Graph ids are path segments: letters, digits, underscores.
fn check_id(id: &str, what: &str) -> Result<(), SimConfigError> {
    if id.is_empty() || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        return Err(SimConfigError::Invalid(format!(
            "{what} id {id:?} must be non-empty letters, digits or underscores"
        )));
    }
    Ok(())
}

/// Order of tiers by limit (`NotSet` counts as 250).
pub(crate) fn tier_rank(tier: Tier) -> u64 {
    match tier.limit() {
        Some(limit) => u64::from(limit),
        None => u64::MAX,
    }
}

/// A recipient in strict E.164 (`+`, a non-zero first digit, 7 to 15 digits in all) as an integer
/// key; `None` for anything else.
pub(crate) fn recipient_key(to: &str) -> Option<u64> {
    let digits = to.strip_prefix('+')?;
    if !(7..=15).contains(&digits.len())
        || digits.starts_with('0')
        || !digits.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
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
