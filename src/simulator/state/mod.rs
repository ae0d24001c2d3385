//! The simulator's decisions as plain code, no HTTP: who may call, whether a send request is
//! valid for its template, whether it fits the limits, and what gets counted.
//!
//! # Validation order of `POST /{ver}/{phone_number_id}/messages` (Meta's)
//! | step | refusal | HTTP | code |
//! |---|---|---|---|
//! | token missing, unknown, or not the owning WABA's | `(#190) Error validating access token` | 401 | 190 |
//! | number unknown | `Unsupported post request. Object with ID '…' does not exist…` | 400 | 100 (subcode 33) |
//! | body not JSON / wrong field types | `(#100) Invalid parameter` | 400 | 100 |
//! | `messaging_product` missing / not `whatsapp` | `(#100) The parameter messaging_product is required` / `(#100) Invalid parameter` | 400 | 100 |
//! | `recipient_type` other than `individual`; `type` absent or not `template` | `(#131009) Parameter value is not valid` | 400 | 131009 |
//! | `to` missing | `(#100) The parameter to is required.` | 400 | 100 |
//! | `to` not strict E.164 (`+`, 7–15 digits, no leading 0) | `(#131009) Parameter value is not valid` | 400 | 131009 |
//! | `to` is the sender itself | `(#131021) Recipient cannot be sender` | 400 | 131021 |
//! | `template`, `name` or `language.code` missing | `(#100) The parameter template[…] is required.` | 400 | 100 |
//! | no template with that name and language in the number's WABA, or not APPROVED (PENDING, REJECTED, …) | `(#132001) Template name does not exist in the translation` | 404 | 132001 |
//! | template PAUSED / DISABLED | `(#132015) Template is Paused` / `(#132016) Template is Disabled` | 400 | 132015 / 132016 |
//! | unknown or repeated component, repeated button index | `(#100) Invalid parameter` | 400 | 100 |
//! | button `index` not a number or out of range, wrong `sub_type` | `(#131009) Parameter value is not valid` | 400 | 131009 |
//! | header / body / button parameter count differs from the template's | `(#132000) Number of parameters does not match the expected number of params` | 400 | 132000 |
//! | a parameter of the wrong type (an image for a text slot, a video for a document header) | `(#132012) Parameter format does not match format in the created template` | 400 | 132012 |
//! | NAMED template: `parameter_name` missing, unknown or repeated; POSITIONAL template: `parameter_name` present; text with a new line, a tab or more than 4 spaces in a row | `(#100) Invalid parameter` | 400 | 100 |
//! | empty text / coupon / payload / media; a dynamic button without its component | `(#131008) Required parameter is missing` | 400 | 131008 |
//! | text over 1 024 characters, coupon over 15 | `(#131009) Parameter value is not valid` | 400 | 131009 |
//!
//! Faults (`error_5xx_ratio`, `hang_ratio`, `latency_ms`) apply to valid requests, before limits
//! (see `server.rs`). Then the limits, on accepted messages only, in this order:
//! 1. **throughput**: accepted messages of the number in the last second (a sliding window of
//!    real monotonic [`Instant`]s) must be under its mps (80 STANDARD, 1 000 HIGH, 20 on the
//!    Business app) → 130429;
//! 2. **pair rate**: the same number → recipient accepted less than 6 s ago (by the injected
//!    clock) → 131056. Meta's burst allowance (45 in 6 s) is not simulated: the simple rule is
//!    stricter;
//! 3. **messaging limit**: a recipient not already in the portfolio's moving 24 h window (injected
//!    clock) when the window holds the tier's limit of unique recipients → 131048. A recipient
//!    already in the window costs nothing (and its time is refreshed).
//!
//! Each limit can be switched off (`enforce_*`); the ledger still records everything, and counts
//! acceptances that crossed a limit (`accepted_over_mps`, …), so a benchmark with the limits lifted
//! can still prove the client never crossed them.
//!
//! # Files
//! - `mod.rs`: the state shared by the HTTP workers and the webhook sender ([`Shared`]): faults,
//!   admission, wamids, account events.
//! - `error.rs`: [`SimError`], each refusal in Meta's error shape.
//! - `request.rs`: the send request and its validation, in the order above.
//! - `limits.rs`: the limits ledger (throughput, pair rate, messaging limit).
//! - `controls.rs`: the control operations (template status, numbers, webhook URL).
//! - `stats.rs`: what was counted ([`SimStats`]).

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Mutex, RwLock};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc::UnboundedSender;

use crate::clock::SharedClock;
use crate::domain::tier::{ThroughputLevel, Tier};
use crate::simulator::world::{recipient_key, Behaviour, SimConfig, SimConfigError, World};

/// Meta's pair rate limit: one message per (number, recipient) per 6 s.
pub const PAIR_WINDOW_MS: i64 = 6_000;
/// The messaging limit's moving window.
pub const QUOTA_WINDOW_MS: i64 = 24 * 60 * 60 * 1_000;
/// The throughput window.
const MPS_WINDOW: Duration = Duration::from_secs(1);
/// Pair entries are pruned (entries older than the pair window dropped) at most once per window,
/// and only when a number has at least this many.
const PAIR_PRUNE_MIN: usize = 4_096;

mod controls;
mod error;
mod limits;
mod request;
mod stats;

pub(crate) use controls::TemplateStatusChange;
pub use controls::{ControlError, InboundText, PhoneNumberChange, UserPreferenceChange};
pub use error::SimError;
pub(crate) use limits::*;
pub(crate) use request::*;
pub use stats::{FaultStats, NumberStats, PortfolioStats, SimStats, WebhookStats};

// ---------------------------------------------------------------------------------------------
// Shared state.

/// What the webhook sender is told.
#[derive(Debug)]
pub(crate) enum SenderCommand {
    /// A message was accepted: plan its statuses.
    Accepted(AcceptedMessage),
    /// Post an account-level notification (template status, number quality, capability).
    Event(AccountEvent),
    /// Stop the sender loop.
    Shutdown,
}

/// An accepted message, as the webhook sender needs it.
#[derive(Debug)]
pub(crate) struct AcceptedMessage {
    pub wamid: String,
    pub number: usize,
    /// Recipient digits without `+`.
    pub recipient_id: String,
    pub opaque: Option<String>,
    /// Clock ms at acceptance (webhook timestamps derive from it).
    pub accepted_ms: i64,
    pub undeliverable: bool,
    /// Marketing to a user who stopped it: `failed` 131050.
    pub marketing_stopped: bool,
    pub pricing_category: Arc<str>,
}

/// A non-status webhook: `entry[{id: waba_id, time, changes[{field, value}]}]`.
#[derive(Debug)]
pub(crate) struct AccountEvent {
    pub waba_id: String,
    pub field: &'static str,
    pub value: serde_json::Value,
    pub time_s: i64,
}

/// Counters updated without the ledger lock.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub requests_total: AtomicU64,
    pub errors_5xx: AtomicU64,
    pub hangs: AtomicU64,
    pub hangs_accepted: AtomicU64,
    pub messages_planned: AtomicU64,
    pub delivered_planned: AtomicU64,
    pub read_planned: AtomicU64,
    pub statuses_scheduled: AtomicU64,
    pub duplicates_scheduled: AtomicU64,
    pub statuses_posted: AtomicU64,
    pub statuses_dropped: AtomicU64,
    pub events_scheduled: AtomicU64,
    pub events_posted: AtomicU64,
    pub events_dropped: AtomicU64,
    pub posts_ok: AtomicU64,
    pub posts_failed: AtomicU64,
}

/// A fault chosen for one valid send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Fault {
    None,
    /// Answer this 5xx; the message is not accepted.
    Error(SimError),
    /// Hold the answer for `ms`; `accept`: process it first (else answer 500 afterwards).
    Hang {
        ms: u64,
        accept: bool,
    },
}

/// The accepted answer's pieces.
#[derive(Debug)]
pub(crate) struct Accepted {
    pub wamid: String,
    pub to: String,
}

/// State shared by the HTTP workers, the webhook sender and the [`super::Simulator`] handle.
#[derive(Debug)]
pub(crate) struct Shared {
    pub world: RwLock<World>,
    pub ledger: Mutex<Ledger>,
    pub behaviour: RwLock<Behaviour>,
    pub webhook_url: RwLock<Option<Arc<str>>>,
    pub app_secret: String,
    pub seed: u64,
    pub clock: SharedClock,
    pub counters: Counters,
    refusals: Mutex<BTreeMap<i64, u64>>,
    fault_rng: Mutex<StdRng>,
    run_id: u32,
    next_seq: AtomicU64,
    pub sender: UnboundedSender<SenderCommand>,
}

impl Shared {
    /// Builds the state from a checked configuration; the sender gets the other end of `sender`.
    pub fn new(
        config: &SimConfig,
        clock: SharedClock,
        sender: UnboundedSender<SenderCommand>,
    ) -> Result<Shared, SimConfigError> {
        let world = World::build(config)?;
        let ledger = Ledger::new(world.numbers.len(), world.portfolios.len());
        Ok(Shared {
            world: RwLock::new(world),
            ledger: Mutex::new(ledger),
            behaviour: RwLock::new(config.behaviour),
            webhook_url: RwLock::new(config.webhook_url.as_deref().map(Arc::from)),
            app_secret: config.app_secret.clone(),
            seed: config.seed,
            clock,
            counters: Counters::default(),
            refusals: Mutex::new(BTreeMap::new()),
            fault_rng: Mutex::new(StdRng::seed_from_u64(config.seed ^ 0x5EED_FA17)),
            // Not from the seed: wamids must not repeat across runs with the same seed.
            run_id: rand::random(),
            next_seq: AtomicU64::new(1),
            sender,
        })
    }

    /// The current behaviour (a copy).
    pub fn behaviour(&self) -> Behaviour {
        *self.behaviour.read()
    }

    /// Validates a send (token, number, body, template, parameters).
    pub fn validate(
        &self,
        phone_number_id: &str,
        token: Option<&str>,
        body: &[u8],
    ) -> Result<ValidSend, SimError> {
        validate_send(&self.world.read(), phone_number_id, token, body)
    }

    /// Chooses a fault for a valid send by the behaviour's ratios.
    pub fn roll_fault(&self, behaviour: &Behaviour) -> Fault {
        if behaviour.error_5xx_ratio <= 0.0 && behaviour.hang_ratio <= 0.0 {
            return Fault::None;
        }
        let mut rng = self.fault_rng.lock();
        if behaviour.error_5xx_ratio > 0.0 && rng.random_bool(behaviour.error_5xx_ratio) {
            let code = if rng.random_bool(0.5) { 131_000 } else { 1 };
            return Fault::Error(SimError::server_fault(code));
        }
        if behaviour.hang_ratio > 0.0 && rng.random_bool(behaviour.hang_ratio) {
            return Fault::Hang {
                ms: behaviour.hang_ms,
                accept: behaviour.hang_accepts,
            };
        }
        Fault::None
    }

    /// Applies the limits and, when the message fits, accepts it: a new wamid, counters, and its
    /// statuses handed to the webhook sender.
    pub fn admit(&self, send: ValidSend, behaviour: &Behaviour) -> Result<Accepted, SimError> {
        let limits = Limits {
            mps: send.mps,
            tier_limit: send.tier_limit,
            enforce_mps: behaviour.enforce_mps,
            enforce_pair_rate: behaviour.enforce_pair_rate,
            enforce_quota: behaviour.enforce_quota,
        };
        let now_ms = {
            let mut ledger = self.ledger.lock();
            // Read both clocks under the lock, so the throughput window is in order.
            let now_ms = self.clock.now_ms();
            ledger
                .admit(
                    send.number,
                    send.portfolio,
                    send.recipient,
                    &limits,
                    Instant::now(),
                    now_ms,
                )
                .map_err(LimitRefusal::error)?;
            now_ms
        };
        let wamid = self.new_wamid();
        let _ = self.sender.send(SenderCommand::Accepted(AcceptedMessage {
            wamid: wamid.clone(),
            number: send.number,
            recipient_id: send.to[1..].to_owned(),
            opaque: send.opaque,
            accepted_ms: now_ms,
            undeliverable: send.undeliverable,
            marketing_stopped: send.marketing_stopped,
            pricing_category: send.pricing_category,
        }));
        Ok(Accepted { wamid, to: send.to })
    }

    /// Counts an error answer of the send endpoint.
    pub fn count_refusal(&self, code: i64) {
        *self.refusals.lock().entry(code).or_insert(0) += 1;
    }

    /// A unique message id in Meta's style.
    fn new_wamid(&self) -> String {
        let seq = self.next_seq.fetch_add(1, Ordering::Relaxed);
        format!("wamid.HBgL{:08X}{seq:016X}FQIAERgS", self.run_id)
    }

    /// A trace id for an error body.
    pub fn fbtrace_id(&self) -> String {
        let seq = self.next_seq.fetch_add(1, Ordering::Relaxed);
        format!("ASim{:08x}{seq:010x}", self.run_id)
    }

    /// Queues an account-level webhook.
    pub fn emit(&self, waba_id: String, field: &'static str, value: serde_json::Value) {
        let time_s = self.clock.now_ms().div_euclid(1_000);
        self.counters
            .events_scheduled
            .fetch_add(1, Ordering::Relaxed);
        let _ = self.sender.send(SenderCommand::Event(AccountEvent {
            waba_id,
            field,
            value,
            time_s,
        }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use serde_json::json;

    const T0: i64 = 1_767_225_600_000;

    fn world() -> World {
        World::build(&SimConfig::sandbox()).unwrap()
    }

    /// Number 0 (TIER_250, STANDARD) of the sandbox and its WABA's token.
    const NUMBER: &str = "106540352240001";
    const TOKEN: Option<&str> = Some("sandbox-token");

    fn send_body(template: &str, language: &str, components: serde_json::Value) -> Vec<u8> {
        serde_json::to_vec(&json!({
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            "to": "+5491112345678",
            "type": "template",
            "biz_opaque_callback_data": "msg-1",
            "template": {"name": template, "language": {"code": language}, "components": components}
        }))
        .unwrap()
    }

    /// The welcome template's one parameter, named as it must be.
    fn customer_name(text: &str) -> serde_json::Value {
        json!({"type": "text", "parameter_name": "customer_name", "text": text})
    }

    fn welcome(name_param: serde_json::Value) -> Vec<u8> {
        send_body(
            "welcome_message",
            "es",
            json!([{"type": "body", "parameters": [name_param]}]),
        )
    }

    fn code_of(result: Result<ValidSend, SimError>) -> i64 {
        match result {
            Ok(_) => 0,
            Err(e) => e.code,
        }
    }

    fn check(body: &[u8]) -> i64 {
        code_of(validate_send(&world(), NUMBER, TOKEN, body))
    }

    #[test]
    fn a_valid_named_send_passes_with_what_the_webhook_needs() {
        let body = welcome(customer_name("Ana"));
        let valid = validate_send(&world(), NUMBER, TOKEN, &body).unwrap();
        assert_eq!(valid.to, "+5491112345678");
        assert_eq!(valid.recipient, 5_491_112_345_678);
        assert_eq!(valid.opaque.as_deref(), Some("msg-1"));
        assert_eq!(valid.mps, 80);
        assert_eq!(valid.tier_limit, Some(250));
        assert!(!valid.undeliverable);
        assert_eq!(&*valid.pricing_category, "marketing");
    }

    #[test]
    fn tokens_are_checked_before_anything_else() {
        let body = welcome(customer_name("Ana"));
        let w = world();
        for token in [None, Some("nope")] {
            let err = validate_send(&w, NUMBER, token, &body).unwrap_err();
            assert_eq!((err.http_status, err.code), (401, 190));
            // Even for a number that does not exist.
            let err = validate_send(&w, "999", token, b"not json").unwrap_err();
            assert_eq!(err.code, 190);
        }
        let err = validate_send(&w, "999", TOKEN, &body).unwrap_err();
        assert_eq!(
            (err.http_status, err.code, err.subcode),
            (400, 100, Some(33))
        );
        assert!(err.message.contains("Object with ID '999' does not exist"));
        // Another WABA's token is not this number's.
        let mut config = SimConfig::sandbox();
        config.wabas[1].access_token = "other".into();
        let w = World::build(&config).unwrap();
        assert_eq!(
            code_of(validate_send(&w, NUMBER, Some("other"), &body)),
            190
        );
    }

    #[test]
    fn envelope_problems_are_100_or_131009() {
        assert_eq!(check(b"{not json"), 100);
        assert_eq!(check(br#"{"to": 5}"#), 100);
        let base = json!({
            "messaging_product": "whatsapp", "to": "+5491112345678", "type": "template",
            "template": {"name": "hello_world", "language": {"code": "en_US"}}
        });
        assert_eq!(check(&serde_json::to_vec(&base).unwrap()), 0);
        let with = |key: &str, value: serde_json::Value| {
            let mut v = base.clone();
            if value.is_null() {
                v.as_object_mut().unwrap().remove(key);
            } else {
                v[key] = value;
            }
            check(&serde_json::to_vec(&v).unwrap())
        };
        assert_eq!(with("messaging_product", json!(null)), 100);
        assert_eq!(with("messaging_product", json!("messenger")), 100);
        assert_eq!(with("type", json!("text")), 131_009);
        assert_eq!(with("type", json!(null)), 131_009);
        assert_eq!(with("recipient_type", json!("group")), 131_009);
        assert_eq!(with("to", json!(null)), 100);
        for bad in [
            "5491112345678",
            "+54 9 11 1234-5678",
            "+0123456789",
            "+12",
            "abc",
        ] {
            assert_eq!(with("to", json!(bad)), 131_009, "{bad}");
        }
        assert_eq!(with("to", json!("+12025550101")), 131_021);
        assert_eq!(with("template", json!(null)), 100);
        assert_eq!(with("template", json!({"name": "hello_world"})), 100);
        assert_eq!(
            with("template", json!({"language": {"code": "en_US"}})),
            100
        );
    }

    #[test]
    fn template_lookup_and_status_codes() {
        let err = validate_send(&world(), NUMBER, TOKEN, &send_body("nope", "es", json!([])))
            .unwrap_err();
        assert_eq!((err.http_status, err.code), (404, 132_001));
        assert!(err.details.contains("nope") && err.details.contains("es"));
        // The right name in a language it does not have.
        assert_eq!(check(&send_body("hello_world", "en", json!([]))), 132_001);
        // REJECTED and PENDING are "not approved".
        assert_eq!(
            check(&send_body(
                "account_alert",
                "en",
                json!([{"type": "body", "parameters": [{"type": "text", "text": "1"}]}])
            )),
            132_001
        );
        let mut w = world();
        let i = w.template(0, "hello_world", "en_US").unwrap();
        let hello = send_body("hello_world", "en_US", json!([]));
        for (status, code) in [("PENDING", 132_001), ("DISABLED", 132_016)] {
            w.templates[i].status = status.into();
            assert_eq!(
                code_of(validate_send(&w, NUMBER, TOKEN, &hello)),
                code,
                "{status}"
            );
        }
        let paused = welcome(customer_name("A"));
        let paused = String::from_utf8(paused)
            .unwrap()
            .replace("welcome_message", "seasonal_sale");
        assert_eq!(check(paused.as_bytes()), 132_015);
    }

    #[test]
    fn parameter_counts_and_names() {
        // Body count.
        assert_eq!(
            check(&send_body("welcome_message", "es", json!([]))),
            132_000
        );
        assert_eq!(
            check(&send_body(
                "welcome_message",
                "es",
                json!([{"type": "body", "parameters": [
                {"type": "text", "parameter_name": "customer_name", "text": "A"},
                {"type": "text", "parameter_name": "other", "text": "B"}]}])
            )),
            132_000
        );
        // Named: name missing, unknown.
        assert_eq!(check(&welcome(json!({"type": "text", "text": "Ana"}))), 100);
        assert_eq!(
            check(&welcome(
                json!({"type": "text", "parameter_name": "name", "text": "Ana"})
            )),
            100
        );
        // Empty text, new lines and long runs of spaces.
        for (text, code) in [("  ", 131_008), ("A\nB", 100), ("A     B", 100)] {
            assert_eq!(check(&welcome(customer_name(text))), code, "{text:?}");
        }
        assert_eq!(
            check(&welcome(
                json!({"type": "text", "parameter_name": "customer_name"})
            )),
            131_008
        );
        // Wrong type for a text slot.
        assert_eq!(
            check(&welcome(
                json!({"type": "image", "parameter_name": "customer_name", "image": {"id": "1"}})
            )),
            132_012
        );
        // A header the template does not have.
        assert_eq!(
            check(&send_body(
                "hello_world",
                "en_US",
                json!([{"type": "header", "parameters": [{"type": "text", "text": "x"}]}])
            )),
            132_000
        );
        // Unknown component type.
        assert_eq!(
            check(&send_body(
                "hello_world",
                "en_US",
                json!([{"type": "footer", "parameters": []}])
            )),
            100
        );
    }

    fn order(components: serde_json::Value) -> i64 {
        check(&send_body("order_update", "es", components))
    }

    #[test]
    fn positional_parameters_and_dynamic_buttons() {
        let body = json!({"type": "body", "parameters": [{"type": "text", "text": "A-1"}, {"type": "text", "text": "en camino"}]});
        let button = json!({"type": "button", "sub_type": "url", "index": "0", "parameters": [{"type": "text", "text": "A-1"}]});
        assert_eq!(order(json!([body, button])), 0);
        // The index as a number is fine too.
        let mut numeric = button.clone();
        numeric["index"] = json!(0);
        assert_eq!(order(json!([body, numeric])), 0);
        // Positional parameters carry no name.
        let named = json!({"type": "body", "parameters": [{"type": "text", "parameter_name": "1", "text": "A-1"}, {"type": "text", "text": "x"}]});
        assert_eq!(order(json!([named, button])), 100);
        // The dynamic button's component is required.
        assert_eq!(order(json!([body])), 131_008);
        // Its parameter must be non-empty text.
        let empty = json!({"type": "button", "sub_type": "url", "index": "0", "parameters": [{"type": "text", "text": ""}]});
        assert_eq!(order(json!([body, empty])), 131_008);
        let none = json!({"type": "button", "sub_type": "url", "index": "0", "parameters": []});
        assert_eq!(order(json!([body, none])), 132_000);
        // Index out of range or not a number; wrong sub_type; twice the same index.
        let mut far = button.clone();
        far["index"] = json!("3");
        assert_eq!(order(json!([body, far])), 131_009);
        let mut word = button.clone();
        word["index"] = json!("first");
        assert_eq!(order(json!([body, word])), 131_009);
        let mut quick = button.clone();
        quick["sub_type"] = json!("quick_reply");
        assert_eq!(order(json!([body, quick])), 131_009);
        assert_eq!(order(json!([body, button, button])), 100);
    }

    #[test]
    fn copy_code_quick_reply_and_media_headers() {
        let promo = |buttons: serde_json::Value| {
            let mut components =
                vec![json!({"type": "body", "parameters": [{"type": "text", "text": "20"}]})];
            components.extend(buttons.as_array().unwrap().iter().cloned());
            check(&send_body("promo_code", "es", json!(components)))
        };
        let coupon = json!({"type": "button", "sub_type": "copy_code", "index": 0, "parameters": [{"type": "coupon_code", "coupon_code": "SAVE20"}]});
        assert_eq!(promo(json!([coupon])), 0);
        let reply = json!({"type": "button", "sub_type": "quick_reply", "index": "1", "parameters": [{"type": "payload", "payload": "NO"}]});
        assert_eq!(promo(json!([coupon, reply])), 0);
        assert_eq!(promo(json!([])), 131_008);
        let long = json!({"type": "button", "sub_type": "copy_code", "index": 0, "parameters": [{"type": "coupon_code", "coupon_code": "THIS-IS-TOO-LONG-1"}]});
        assert_eq!(promo(json!([long])), 131_009);
        let text = json!({"type": "button", "sub_type": "copy_code", "index": 0, "parameters": [{"type": "text", "text": "SAVE20"}]});
        assert_eq!(promo(json!([text])), 132_012);

        let invoice = |header: serde_json::Value| {
            check(&send_body(
                "invoice_ready",
                "es",
                json!([header, {"type": "body", "parameters": [{"type": "text", "text": "F-1"}]}]),
            ))
        };
        assert_eq!(
            invoice(
                json!({"type": "header", "parameters": [{"type": "document", "document": {"link": "https://x/y.pdf"}}]})
            ),
            0
        );
        assert_eq!(
            invoice(
                json!({"type": "header", "parameters": [{"type": "image", "image": {"link": "https://x/y.png"}}]})
            ),
            132_012
        );
        assert_eq!(
            invoice(
                json!({"type": "header", "parameters": [{"type": "document", "document": {}}]})
            ),
            131_008
        );
        assert_eq!(
            invoice(json!({"type": "header", "parameters": []})),
            132_000
        );
    }

    #[test]
    fn a_text_header_parameter_is_its_own_component() {
        // A NAMED template whose header and body share a name: Meta wants it in both components.
        let mut config = SimConfig::sandbox();
        let mut template = config.wabas[0].templates[0].clone();
        template.id = "7700019999".into();
        template.name = "greeting".into();
        template.components = json!([
            {"type": "HEADER", "format": "TEXT", "text": "For {{customer_name}}"},
            {"type": "BODY", "text": "Hi {{customer_name}}, your code is {{code}}."}
        ]);
        config.wabas[0].templates.push(template);
        let w = World::build(&config).unwrap();
        let name = |n: &str| json!({"type": "text", "parameter_name": n, "text": "x"});
        let header = json!({"type": "header", "parameters": [name("customer_name")]});
        let body = json!({"type": "body", "parameters": [name("code"), name("customer_name")]});
        let send = |components| {
            code_of(validate_send(
                &w,
                NUMBER,
                TOKEN,
                &send_body("greeting", "es", components),
            ))
        };
        assert_eq!(send(json!([header, body])), 0);
        // The header's value only in the body (one key for both, as the daemon's API takes it).
        assert_eq!(send(json!([body])), 132_000);
        let short = json!({"type": "body", "parameters": [name("code")]});
        assert_eq!(send(json!([header, short])), 132_000);
        let wrong = json!({"type": "header", "parameters": [name("code")]});
        assert_eq!(send(json!([wrong, body])), 100);
    }

    #[test]
    fn undeliverable_recipients_are_valid_and_flagged() {
        let body = String::from_utf8(welcome(customer_name("Ana")))
            .unwrap()
            .replace("+5491112345678", "+14155550100");
        let valid = validate_send(&world(), NUMBER, TOKEN, body.as_bytes()).unwrap();
        assert!(valid.undeliverable);
    }

    // --- shared state -------------------------------------------------------------------------

    fn shared() -> (
        Shared,
        tokio::sync::mpsc::UnboundedReceiver<SenderCommand>,
        ManualClock,
    ) {
        let clock = ManualClock::new(T0);
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let shared = Shared::new(&SimConfig::sandbox(), Arc::new(clock.clone()), tx).unwrap();
        (shared, rx, clock)
    }

    #[test]
    fn an_accepted_send_gets_a_unique_wamid_and_goes_to_the_webhook_sender() {
        let (shared, mut rx, clock) = shared();
        let b = shared.behaviour();
        let body = welcome(customer_name("Ana"));
        let first = shared
            .admit(shared.validate(NUMBER, TOKEN, &body).unwrap(), &b)
            .unwrap();
        assert!(first.wamid.starts_with("wamid."));
        let err = shared
            .admit(shared.validate(NUMBER, TOKEN, &body).unwrap(), &b)
            .unwrap_err();
        assert_eq!((err.http_status, err.code), (400, 131_056));
        clock.advance_ms(PAIR_WINDOW_MS);
        let second = shared
            .admit(shared.validate(NUMBER, TOKEN, &body).unwrap(), &b)
            .unwrap();
        assert_ne!(first.wamid, second.wamid);
        match rx.try_recv().unwrap() {
            SenderCommand::Accepted(m) => {
                assert_eq!(m.wamid, first.wamid);
                assert_eq!(m.recipient_id, "5491112345678");
                assert_eq!(m.opaque.as_deref(), Some("msg-1"));
                assert_eq!(m.accepted_ms, T0);
            }
            other => panic!("{other:?}"),
        }
        let stats = shared.stats(true);
        assert_eq!(stats.accepted_total, 2);
        assert_eq!(stats.accepted_by_recipient["+5491112345678"], 2);
        assert_eq!(stats.recipients_accepted_more_than_once, 1);
        assert_eq!(stats.numbers[NUMBER].accepted, 2);
        assert_eq!(
            stats.portfolios["102938475610001"].unique_recipients_in_window,
            1
        );
        assert_eq!(stats.portfolios["102938475610001"].limit, Some(250));
    }

    #[test]
    fn the_sandbox_starter_portfolio_refuses_its_251st_recipient() {
        let (shared, _rx, _clock) = shared();
        let b = Behaviour {
            enforce_mps: false,
            ..shared.behaviour()
        };
        let mut codes = BTreeMap::new();
        for i in 0..260u64 {
            let body = String::from_utf8(welcome(customer_name("Ana")))
                .unwrap()
                .replace("+5491112345678", &format!("+54911{:08}", i));
            let valid = shared.validate(NUMBER, TOKEN, body.as_bytes()).unwrap();
            let code = shared.admit(valid, &b).map_or_else(|e| e.code, |_| 0);
            *codes.entry(code).or_insert(0) += 1;
        }
        assert_eq!(codes[&0], 250);
        assert_eq!(codes[&131_048], 10);
    }

    #[test]
    fn faults_follow_their_ratios() {
        let (shared, _rx, _clock) = shared();
        let mut b = shared.behaviour();
        assert_eq!(shared.roll_fault(&b), Fault::None);
        b.error_5xx_ratio = 1.0;
        match shared.roll_fault(&b) {
            Fault::Error(e) => assert!(e.http_status == 500 && [1, 131_000].contains(&e.code)),
            other => panic!("{other:?}"),
        }
        b.error_5xx_ratio = 0.0;
        b.hang_ratio = 1.0;
        assert_eq!(
            shared.roll_fault(&b),
            Fault::Hang {
                ms: b.hang_ms,
                accept: true
            }
        );
    }

    #[test]
    fn error_bodies_have_metas_shape_and_parse_back() {
        let err = SimError::throughput();
        let body = err.body("AbC");
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["error"]["message"], "(#130429) Rate limit hit");
        assert_eq!(v["error"]["type"], "OAuthException");
        assert_eq!(v["error"]["code"], 130_429);
        assert_eq!(v["error"]["error_data"]["messaging_product"], "whatsapp");
        assert_eq!(v["error"]["fbtrace_id"], "AbC");
        let parsed = crate::meta::error::MetaError::from_response(400, &body);
        assert_eq!(parsed.code, 130_429);
        assert_eq!(
            parsed.details.as_deref(),
            Some("Cloud API message throughput has been reached.")
        );
    }

    #[test]
    fn bearer_tokens_are_read_from_the_header() {
        assert_eq!(bearer(Some("Bearer abc")), Some("abc"));
        assert_eq!(bearer(Some("bearer  abc ")), Some("abc"));
        assert_eq!(bearer(Some("OAuth abc")), Some("abc"));
        assert_eq!(bearer(Some("Basic abc")), None);
        assert_eq!(bearer(Some("Bearer ")), None);
        assert_eq!(bearer(None), None);
    }
}
