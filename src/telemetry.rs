//! Logging and metrics.
//!
//! # Logging
//! `tracing`: human-readable lines, or one JSON object per line with `MINDO_LOG_FORMAT=json`.
//! Logs go to stderr, so stdout stays free for command output.
//!
//! # Metrics
//! The `metrics` facade with a Prometheus recorder, installed once per process
//! ([`metrics_handle`]; tests start many daemons in one process and share it). `GET /metrics`
//! renders it in Prometheus' text format. Every name starts with `mindo_`, counters end in
//! `_total`, and labels only ever take values from small fixed sets (an error class, Meta's
//! numeric error code, a route *pattern*, a status class): never a phone number, a message,
//! send or tenant id, or a raw path. The names are the constants below; the recording
//! functions are the only way the rest of the code touches them.

use std::io::IsTerminal;
use std::sync::OnceLock;
use std::time::Duration;

use metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;
use crate::meta::error::ErrorAction;

/// Installs the global subscriber. `filter` is a tracing filter such as `info` or
/// `mindo_bulk=debug,info`. Calling it twice (as tests do) keeps the first subscriber.
pub fn init(filter: &str, format: LogFormat) {
    let filter = EnvFilter::try_new(filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}

/// Metric names.
pub mod names {
    /// Counter: messages handed to Meta (every attempt, retries included).
    pub const MESSAGES_DISPATCHED: &str = "mindo_messages_dispatched_total";
    /// Counter: dispatches Meta accepted (answered with a message id).
    pub const MESSAGES_ACCEPTED: &str = "mindo_messages_accepted_total";
    /// Counter: dispatches Meta did not accept, by `class` (what the engine did about it).
    pub const MESSAGES_FAILED: &str = "mindo_messages_failed_total";
    /// Counter: Meta's refusals of a send, by Meta's numeric error `code` (`none` without one).
    pub const META_REFUSALS: &str = "mindo_meta_refusals_total";
    /// Counter: status updates from webhooks, by `result` (applied, duplicate, unknown).
    pub const WEBHOOK_UPDATES: &str = "mindo_webhook_updates_total";
    /// Counter: webhook notifications refused for a missing or wrong signature.
    pub const WEBHOOK_SIGNATURE_REFUSALS: &str = "mindo_webhook_signature_refusals_total";
    /// Counter: notification items too broken to use, dropped.
    pub const WEBHOOK_SKIPPED_ITEMS: &str = "mindo_webhook_skipped_items_total";
    /// Counter: template and number changes naming nothing registered here.
    pub const WEBHOOK_UNMATCHED_CHANGES: &str = "mindo_webhook_unmatched_changes_total";
    /// Counter: users' opt-out signals from webhooks (keywords, `user_preferences`, 131050),
    /// by `result`: `suppressed`, `lifted` or `stale`.
    pub const OPT_OUT_SIGNALS: &str = "mindo_opt_out_signals_total";
    /// Counter: planning rounds of a number's limiter that ended with messages held back, by
    /// `reason` (throughput, quota, pair_rate, paused).
    pub const LIMITER_WAITS: &str = "mindo_limiter_waits_total";
    /// Counter: send slots granted by the limiters.
    pub const LIMITER_GRANTS: &str = "mindo_limiter_grants_total";
    /// Gauge: messages offered to the limiters and not yet granted, by `state` (ready,
    /// pair_rate, quota).
    pub const LIMITER_QUEUED: &str = "mindo_limiter_queued_messages";
    /// Gauge: bulk sends with a running actor.
    pub const ACTIVE_SENDS: &str = "mindo_active_sends";
    /// Histogram: HTTP request latency, by `method`, `route` (pattern) and `status` class.
    pub const HTTP_DURATION: &str = "mindo_http_request_duration_seconds";
    /// Histogram: Graph API call latency, by `operation` and `status` class.
    pub const GRAPH_DURATION: &str = "mindo_graph_request_duration_seconds";
    /// Counter: attempts to post a client callback event, by `result` (delivered, retry,
    /// given_up).
    pub const CALLBACK_ATTEMPTS: &str = "mindo_callback_attempts_total";
    /// Gauge: always 1, with the daemon's `version`.
    pub const BUILD_INFO: &str = "mindo_build_info";
    /// Gauge: portfolio leases this node holds (cluster on PostgreSQL).
    pub const CLUSTER_LEASES_HELD: &str = "mindo_cluster_leases_held";
    /// Counter: leases this node took over from a node that stopped renewing them.
    pub const CLUSTER_TAKEOVERS: &str = "mindo_cluster_takeovers_total";
    /// Counter: claims refused because this node's lease was no longer valid (fenced out).
    pub const CLUSTER_FENCED_CLAIMS: &str = "mindo_cluster_fenced_claims_total";
}

/// Classes of `mindo_messages_failed_total`.
pub const FAILURE_CLASSES: [&str; 9] = [
    "retry",
    "throttled",
    "pair_rate",
    "app_rate_limited",
    "fail",
    "pause_number",
    "template_paused",
    "stop_send",
    "stop_account",
];
/// The class of a dispatch whose outcome is unknown (a timeout, a broken connection).
pub const UNKNOWN_OUTCOME: &str = "unknown_outcome";

/// Why a limiter held messages back (`reason` of `mindo_limiter_waits_total`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LimiterWait {
    /// The number's messages-per-second cap.
    Throughput,
    /// The portfolio's unique-recipient limit in the moving 24 h window.
    Quota,
    /// One message per recipient per 6 s.
    PairRate,
    /// The number is paused (operator, spam rate limit, account problem).
    Paused,
}

impl LimiterWait {
    pub const ALL: [LimiterWait; 4] = [
        LimiterWait::Throughput,
        LimiterWait::Quota,
        LimiterWait::PairRate,
        LimiterWait::Paused,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            LimiterWait::Throughput => "throughput",
            LimiterWait::Quota => "quota",
            LimiterWait::PairRate => "pair_rate",
            LimiterWait::Paused => "paused",
        }
    }
}

/// Latency buckets (seconds) of the daemon's own HTTP answers.
const HTTP_BUCKETS: [f64; 13] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// Latency buckets (seconds) of calls to Meta.
const GRAPH_BUCKETS: [f64; 12] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];
/// How often histogram samples are folded into buckets when nobody scrapes.
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// The process's metrics recorder, installed on first use (idempotent: every daemon built in
/// this process shares it).
pub fn metrics_handle() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        let builder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Full(names::HTTP_DURATION.into()), &HTTP_BUCKETS)
            .and_then(|b| {
                b.set_buckets_for_metric(
                    Matcher::Full(names::GRAPH_DURATION.into()),
                    &GRAPH_BUCKETS,
                )
            })
            .unwrap_or_else(|_| PrometheusBuilder::new());
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        if metrics::set_global_recorder(recorder).is_err() {
            tracing::warn!("Another metrics recorder is installed; /metrics will stay empty.");
        }
        let upkeep = handle.clone();
        let spawned = std::thread::Builder::new()
            .name("metrics-upkeep".into())
            .spawn(move || loop {
                std::thread::sleep(UPKEEP_EVERY);
                upkeep.run_upkeep();
            });
        if let Err(err) = spawned {
            tracing::warn!(error = %err, "The metrics upkeep thread did not start; scrapes still fold samples.");
        }
        describe();
        handle
    })
}

/// Renders every metric in Prometheus' text format (version 0.0.4).
pub fn render_metrics() -> String {
    metrics_handle().render()
}

/// HELP lines, and the series that must show from the start (at 0) so rates and alerts work
/// before the first event.
fn describe() {
    use names::*;
    describe_gauge!(
        CLUSTER_LEASES_HELD,
        "Portfolio leases this node holds (several daemons on one PostgreSQL)."
    );
    describe_counter!(
        CLUSTER_TAKEOVERS,
        "Portfolio leases this node took over from a node that stopped renewing them."
    );
    describe_counter!(
        CLUSTER_FENCED_CLAIMS,
        "Claims of messages refused because this node no longer held the portfolio's lease."
    );
    describe_counter!(
        MESSAGES_DISPATCHED,
        "Messages handed to Meta's Graph API (every attempt, retries included)."
    );
    describe_counter!(
        MESSAGES_ACCEPTED,
        "Dispatches Meta accepted with a message id."
    );
    describe_counter!(
        MESSAGES_FAILED,
        "Dispatches Meta did not accept, by what the engine did about it (class)."
    );
    describe_counter!(
        META_REFUSALS,
        "Refusals of a message send by Meta, by Meta's error code."
    );
    describe_counter!(
        WEBHOOK_UPDATES,
        "Message status updates received by webhook, by result."
    );
    describe_counter!(
        WEBHOOK_SIGNATURE_REFUSALS,
        "Webhook notifications refused for a missing or wrong X-Hub-Signature-256."
    );
    describe_counter!(
        WEBHOOK_SKIPPED_ITEMS,
        "Webhook notification items too broken to use, dropped."
    );
    describe_counter!(
        WEBHOOK_UNMATCHED_CHANGES,
        "Webhook template and number changes naming nothing registered here."
    );
    describe_counter!(
        OPT_OUT_SIGNALS,
        "Users' opt-out signals from webhooks that changed the suppression list, by result."
    );
    describe_counter!(
        LIMITER_WAITS,
        "Planning rounds of a number's limiter that ended with messages held back, by reason."
    );
    describe_counter!(LIMITER_GRANTS, "Send slots granted by the limiters.");
    describe_gauge!(
        LIMITER_QUEUED,
        "Messages offered to the limiters and not yet granted, by state."
    );
    describe_gauge!(ACTIVE_SENDS, "Bulk sends being dispatched or followed.");
    describe_histogram!(
        HTTP_DURATION,
        metrics::Unit::Seconds,
        "Latency of the daemon's HTTP answers, by method, route pattern and status class."
    );
    describe_histogram!(
        GRAPH_DURATION,
        metrics::Unit::Seconds,
        "Latency of calls to Meta's Graph API, by operation and status class."
    );
    describe_counter!(
        CALLBACK_ATTEMPTS,
        "Attempts to post a client callback event to a send's callback_url, by result."
    );
    describe_gauge!(BUILD_INFO, "Always 1; the version is a label.");

    gauge!(BUILD_INFO, "version" => env!("CARGO_PKG_VERSION")).set(1.0);
    for name in [
        MESSAGES_DISPATCHED,
        MESSAGES_ACCEPTED,
        WEBHOOK_SIGNATURE_REFUSALS,
        WEBHOOK_SKIPPED_ITEMS,
        WEBHOOK_UNMATCHED_CHANGES,
        LIMITER_GRANTS,
    ] {
        counter!(name).increment(0);
    }
    for class in FAILURE_CLASSES.into_iter().chain([UNKNOWN_OUTCOME]) {
        counter!(MESSAGES_FAILED, "class" => class).increment(0);
    }
    for result in ["applied", "duplicate", "unknown"] {
        counter!(WEBHOOK_UPDATES, "result" => result).increment(0);
    }
    for result in ["suppressed", "lifted", "stale"] {
        counter!(OPT_OUT_SIGNALS, "result" => result).increment(0);
    }
    for reason in LimiterWait::ALL {
        counter!(LIMITER_WAITS, "reason" => reason.as_str()).increment(0);
    }
    for state in ["ready", "pair_rate", "quota"] {
        gauge!(LIMITER_QUEUED, "state" => state).increment(0.0);
    }
    gauge!(ACTIVE_SENDS).increment(0.0);
    gauge!(CLUSTER_LEASES_HELD).set(0.0);
    counter!(CLUSTER_TAKEOVERS).increment(0);
    counter!(CLUSTER_FENCED_CLAIMS).increment(0);
    for result in CALLBACK_RESULTS {
        counter!(CALLBACK_ATTEMPTS, "result" => result).increment(0);
    }
}

// Recording. Without an installed recorder (CLI commands, unit tests) these do nothing.

/// `n` messages handed to Meta.
pub fn messages_dispatched(n: u64) {
    counter!(names::MESSAGES_DISPATCHED).increment(n);
}

/// Meta accepted a message.
pub fn message_accepted() {
    counter!(names::MESSAGES_ACCEPTED).increment(1);
}

/// Meta did not accept a message; `action` is what the engine does about it (`None`: the
/// outcome is unknown).
pub fn message_failed(action: Option<&ErrorAction>) {
    counter!(names::MESSAGES_FAILED, "class" => failure_class(action)).increment(1);
}

/// The `class` label of a failed dispatch.
pub fn failure_class(action: Option<&ErrorAction>) -> &'static str {
    match action {
        None => UNKNOWN_OUTCOME,
        Some(ErrorAction::RetryLater { .. }) => "retry",
        Some(ErrorAction::Throttled { .. }) => "throttled",
        Some(ErrorAction::PairRateLimited { .. }) => "pair_rate",
        Some(ErrorAction::AppRateLimited { .. }) => "app_rate_limited",
        Some(ErrorAction::FailMessage) => "fail",
        Some(ErrorAction::PauseNumber) => "pause_number",
        Some(ErrorAction::StopSend { reason }) if reason.is_temporary() => "template_paused",
        Some(ErrorAction::StopSend { .. }) => "stop_send",
        Some(ErrorAction::StopAccount { .. }) => "stop_account",
    }
}

/// Meta refused a message send with `code` (`None`: an error without Meta's error body).
pub fn meta_refusal(code: Option<i64>) {
    let code = match code {
        Some(code) => code.to_string(),
        None => "none".to_owned(),
    };
    counter!(names::META_REFUSALS, "code" => code).increment(1);
}

/// What applying webhook status updates did.
pub fn webhook_updates(applied: usize, duplicates: usize, unknown: usize) {
    for (result, n) in [
        ("applied", applied),
        ("duplicate", duplicates),
        ("unknown", unknown),
    ] {
        if n > 0 {
            counter!(names::WEBHOOK_UPDATES, "result" => result).increment(n as u64);
        }
    }
}

/// Results of `mindo_callback_attempts_total`.
pub const CALLBACK_RESULTS: [&str; 4] = ["delivered", "retry", "given_up", "refused"];

/// An attempt to post a client callback event ended with `result` (one of
/// [`CALLBACK_RESULTS`]).
pub fn callback_attempt(result: &'static str) {
    counter!(names::CALLBACK_ATTEMPTS, "result" => result).increment(1);
}

/// A webhook notification refused for its signature.
pub fn webhook_signature_refused() {
    counter!(names::WEBHOOK_SIGNATURE_REFUSALS).increment(1);
}

/// Notification items dropped as unusable.
pub fn webhook_items_skipped(n: usize) {
    counter!(names::WEBHOOK_SKIPPED_ITEMS).increment(n as u64);
}

/// Opt-out signals applied from a webhook notification.
pub fn opt_out_signals(suppressed: usize, lifted: usize, stale: usize) {
    for (result, n) in [
        ("suppressed", suppressed),
        ("lifted", lifted),
        ("stale", stale),
    ] {
        if n > 0 {
            counter!(names::OPT_OUT_SIGNALS, "result" => result).increment(n as u64);
        }
    }
}

/// Template and number changes naming nothing registered here.
pub fn webhook_changes_unmatched(n: usize) {
    if n > 0 {
        counter!(names::WEBHOOK_UNMATCHED_CHANGES).increment(n as u64);
    }
}

/// A limiter's planning round: `granted` slots, and why it stopped with messages still held
/// (`None`: nothing was held back).
pub fn limiter_round(granted: usize, held_back: Option<LimiterWait>) {
    if granted > 0 {
        counter!(names::LIMITER_GRANTS).increment(granted as u64);
    }
    if let Some(reason) = held_back {
        counter!(names::LIMITER_WAITS, "reason" => reason.as_str()).increment(1);
    }
}

/// One limiter's share of `mindo_limiter_queued_messages`. The gauge is the sum over every
/// limiter of the process: each reports the change since its last report, and takes its
/// share back when it goes away.
#[derive(Debug, Default)]
pub struct QueuedGauge {
    reported: [usize; 3],
}

impl QueuedGauge {
    const STATES: [&'static str; 3] = ["ready", "pair_rate", "quota"];

    /// This limiter now holds `ready` grantable, `pair_rate` and `quota` waiting messages.
    pub fn set(&mut self, ready: usize, pair_rate: usize, quota: usize) {
        let now = [ready, pair_rate, quota];
        for ((state, before), after) in Self::STATES.iter().zip(&mut self.reported).zip(now) {
            if *before != after {
                gauge!(names::LIMITER_QUEUED, "state" => *state)
                    .increment(after as f64 - *before as f64);
                *before = after;
            }
        }
    }
}

impl Drop for QueuedGauge {
    fn drop(&mut self) {
        self.set(0, 0, 0);
    }
}

/// The node holds `n` portfolio leases now.
pub fn cluster_leases_held(n: usize) {
    gauge!(names::CLUSTER_LEASES_HELD).set(n as f64);
}

/// The node took `n` leases over from nodes that stopped renewing them.
pub fn cluster_takeovers(n: usize) {
    counter!(names::CLUSTER_TAKEOVERS).increment(n as u64);
}

/// A claim was refused: the node's lease was no longer valid.
pub fn cluster_fenced_claim() {
    counter!(names::CLUSTER_FENCED_CLAIMS).increment(1);
}

/// A bulk send's actor started (`+1`) or retired (`-1`).
pub fn active_sends_changed(delta: f64) {
    gauge!(names::ACTIVE_SENDS).increment(delta);
}

/// An HTTP answer of the daemon. `route` is the matched pattern (`unmatched` when none).
pub fn http_request(method: &str, route: &str, status: u16, elapsed: Duration) {
    let method = match method {
        "GET" | "POST" | "PUT" | "PATCH" | "DELETE" | "HEAD" | "OPTIONS" => method.to_owned(),
        _ => "other".to_owned(),
    };
    histogram!(names::HTTP_DURATION,
        "method" => method,
        "route" => route.to_owned(),
        "status" => status_class(Some(status)))
    .record(elapsed.as_secs_f64());
}

/// A call to the Graph API: `operation` (`send_message`, `read`), the HTTP status of the
/// answer (`None`: no answer).
pub fn graph_request(operation: &'static str, status: Option<u16>, elapsed: Duration) {
    histogram!(names::GRAPH_DURATION,
        "operation" => operation,
        "status" => status_class(status))
    .record(elapsed.as_secs_f64());
}

/// `2xx` … `5xx`, or `error` when there was no HTTP answer.
fn status_class(status: Option<u16>) -> &'static str {
    match status {
        Some(100..=199) => "1xx",
        Some(200..=299) => "2xx",
        Some(300..=399) => "3xx",
        Some(400..=499) => "4xx",
        Some(500..=599) => "5xx",
        _ => "error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_classes_are_bounded() {
        assert_eq!(status_class(Some(202)), "2xx");
        assert_eq!(status_class(Some(404)), "4xx");
        assert_eq!(status_class(Some(999)), "error");
        assert_eq!(status_class(None), "error");
    }

    #[test]
    fn every_failure_class_is_listed() {
        use crate::meta::error::{StopAccountReason, StopSendReason};
        let after = Duration::from_secs(1);
        let actions = [
            ErrorAction::RetryLater { after },
            ErrorAction::Throttled { after },
            ErrorAction::PairRateLimited { after },
            ErrorAction::AppRateLimited { after },
            ErrorAction::FailMessage,
            ErrorAction::PauseNumber,
            ErrorAction::StopSend {
                reason: StopSendReason::TemplatePaused,
            },
            ErrorAction::StopSend {
                reason: StopSendReason::TemplateDisabled,
            },
            ErrorAction::StopAccount {
                reason: StopAccountReason::TokenInvalid,
            },
        ];
        for action in &actions {
            assert!(FAILURE_CLASSES.contains(&failure_class(Some(action))));
        }
        assert_eq!(failure_class(None), UNKNOWN_OUTCOME);
    }

    #[test]
    fn the_handle_is_installed_once_and_renders_mindo_names() {
        let a = metrics_handle() as *const _;
        let b = metrics_handle() as *const _;
        assert_eq!(a, b);
        messages_dispatched(3);
        let text = render_metrics();
        assert!(text.contains("mindo_messages_dispatched_total"), "{text}");
        for line in text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
        {
            assert!(line.starts_with("mindo_"), "{line}");
        }
    }
}
