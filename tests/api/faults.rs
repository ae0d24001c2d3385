//! Faults on Meta's side: 5xx answers, sends that hang past the Graph client's timeout after
//! Meta took them, and status webhooks that arrive twice and out of order. Every recipient
//! must be sent exactly once, the counters must equal what "Meta" (the simulator) did, and no
//! send may be left unfinished.
//!
//! Time that the engine waits on (retry backoff, the reconcile grace of unknown outcomes) is
//! the injected clock, moved forward by the test only while the simulator has no status
//! webhook left to deliver. So a message Meta took while its answer hung has its `sent`
//! webhook made durable before the clock can reach the end of its grace period: the test
//! proves that the webhook, not the grace period, resolves it (a resend would be seen by
//! the simulator as a second acceptance, or a 131056 pair-rate refusal).
//!
//! CI runs a few hundred recipients; `MINDO_LONG_RELIABILITY=1` runs 5 000 and prints the
//! figures.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use mindo_bulk::clock::Clock;
use mindo_bulk::simulator::SimStats;
use serde_json::Value;

use crate::meta::{phones, spawn_with_meta_tweaked, welcome, MetaApp, NUMBER_UNLIMITED};

/// How far the injected clock moves per step, when the simulator's webhooks are idle.
pub const CLOCK_STEP_MS: i64 = 1_000;
/// The reconcile grace period of these tests: many clock steps, so the gate above decides.
pub const GRACE_SECS: u64 = 30;

/// Whether the long variants run.
pub fn long_run() -> bool {
    std::env::var("MINDO_LONG_RELIABILITY").is_ok_and(|v| !v.is_empty() && v != "0")
}

/// The states a message can end in.
const FINAL: [&str; 5] = ["sent", "delivered", "read", "failed", "cancelled"];

/// Drives a send to its end: polls its status, moving the injected clock forward by
/// [`CLOCK_STEP_MS`] whenever the simulator has no status webhook pending, until the send is
/// finished, nothing is pending and every webhook has been answered. Returns the last status
/// and the simulator's counters at that moment.
pub async fn drive_to_the_end(meta: &MetaApp, id: &str, limit: Duration) -> (Value, SimStats) {
    let deadline = Instant::now() + limit;
    loop {
        let status = meta.status(id).await;
        let stats = meta.stats();
        let finished = matches!(
            status["status"].as_str(),
            Some("COMPLETED" | "PARTIAL" | "FAILED" | "CANCELLED")
        ) && status["pending_count"] == 0;
        if stats.webhooks.statuses_pending == 0 {
            if finished {
                // Every webhook was answered 200, so it is durable: read the counters again
                // now that nothing can change them.
                return (meta.status(id).await, meta.stats());
            }
            meta.app.clock.advance_ms(CLOCK_STEP_MS);
        }
        assert!(
            Instant::now() < deadline,
            "the send did not finish in {limit:?}: {status:#}\nsimulator: accepted {}, refusals {:?}, faults {:?}, webhooks {:?}",
            stats.accepted_total,
            stats.refusals_by_code,
            stats.faults,
            stats.webhooks
        );
        actix_web::rt::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Every message row of a send (all pages).
pub async fn all_messages(meta: &MetaApp, id: &str) -> Vec<Value> {
    let mut rows = Vec::new();
    let mut page = 1;
    loop {
        let body: Value = meta
            .app
            .get(
                &format!(
                    "/api/v1/meta-templates/bulk-sends/{id}/messages/?page_size=1000&page={page}"
                ),
                Some(&meta.api_key),
            )
            .await
            .json()
            .await
            .unwrap();
        rows.extend(body["results"].as_array().unwrap().iter().cloned());
        if body["next"].is_null() {
            return rows;
        }
        page += 1;
    }
}

/// The checks every fault test ends with: the send COMPLETED, every recipient accepted by
/// Meta exactly once, the counters equal to what Meta did and to the message rows, every
/// message final. Returns the rows by state.
pub async fn assert_exact_outcome(
    meta: &MetaApp,
    id: &str,
    list: &[String],
    status: &Value,
    stats: &SimStats,
) -> BTreeMap<String, u64> {
    let total = list.len() as u64;
    assert_eq!(status["status"], "COMPLETED", "{status:#}");
    assert_eq!(stats.recipients_accepted_more_than_once, 0, "double sends");
    assert_eq!(stats.accepted_total, total, "{:?}", stats.refusals_by_code);
    assert_eq!(stats.unique_recipients, total);
    for phone in list {
        assert_eq!(stats.accepted_by_recipient.get(phone), Some(&1), "{phone}");
    }
    // A resend of a message Meta already took would meet the pair rate first.
    assert!(
        !stats.refusals_by_code.contains_key(&131_056),
        "a recipient was sent again: {:?}",
        stats.refusals_by_code
    );
    assert_eq!(status["total_recipients"], total);
    assert_eq!(status["sent_count"], stats.accepted_total);
    assert_eq!(status["delivered_count"], stats.webhooks.delivered_planned);
    assert_eq!(status["read_count"], stats.webhooks.read_planned);
    assert_eq!(status["failed_count"], 0);
    assert_eq!(status["pending_count"], 0);
    assert_eq!(status["cancelled_count"], 0);
    assert_eq!(status["progress_percentage"], 100.0);

    let rows = all_messages(meta, id).await;
    assert_eq!(rows.len() as u64, total);
    let mut by_state: BTreeMap<String, u64> = BTreeMap::new();
    for row in &rows {
        let state = row["status"].as_str().unwrap().to_owned();
        assert!(FINAL.contains(&state.as_str()), "{row:#}");
        assert!(row["meta_message_id"].is_string(), "{row:#}");
        *by_state.entry(state).or_default() += 1;
    }
    let count = |s: &str| by_state.get(s).copied().unwrap_or(0);
    assert_eq!(count("read"), stats.webhooks.read_planned);
    assert_eq!(
        count("delivered") + count("read"),
        stats.webhooks.delivered_planned
    );
    by_state
}

async fn faults(recipients: u32) {
    let meta = spawn_with_meta_tweaked(
        |sim| {
            let b = &mut sim.behaviour;
            b.error_5xx_ratio = 0.05;
            b.hang_ratio = 0.01;
            // Longer than the daemon's timeout below; Meta took the message all the same.
            b.hang_ms = 1_500;
            b.hang_accepts = true;
            // Meta's `sent` comes after the daemon gave up waiting for the answer: a hung
            // message is then resolved by its webhook while it waits out its grace period.
            b.sent_delay_ms = 1_200;
            b.duplicate_ratio = 0.5;
            b.reorder = true;
            b.reorder_jitter_ms = 200;
            b.delivered_ratio = 0.9;
            b.read_ratio = 0.5;
            b.retry_max_ms = 500;
        },
        |daemon| {
            daemon.graph_timeout_secs = 1;
            daemon.reconcile_grace_secs = GRACE_SECS;
        },
    )
    .await;
    let list = phones(0, recipients);
    let started = Instant::now();
    let (code, res) = meta.send_bulk(&welcome(NUMBER_UNLIMITED, &list)).await;
    assert_eq!(code, 202, "{res:#}");
    let id = res["bulk_send_id"].as_str().unwrap().to_owned();
    let limit = Duration::from_secs(if recipients > 1_000 { 600 } else { 120 });
    let (status, stats) = drive_to_the_end(&meta, &id, limit).await;
    let elapsed = started.elapsed();
    let by_state = assert_exact_outcome(&meta, &id, &list, &status, &stats).await;

    // The faults really happened.
    assert!(stats.faults.errors_5xx > 0, "{:?}", stats.faults);
    assert!(stats.faults.hangs_accepted > 0, "{:?}", stats.faults);
    assert!(stats.webhooks.duplicates_scheduled > 0);
    let rows = all_messages(&meta, &id).await;
    let retried = rows
        .iter()
        .filter(|m| m["attempts"].as_i64().unwrap() > 1)
        .count();
    assert!(retried > 0, "no message needed a second attempt");
    println!(
        "faults: {recipients} recipients in {:.1} s real time ({:.0} s on the injected clock); \
         Meta: {} requests, {} accepted, {} answered 5xx, {} hung past the timeout ({} of them accepted), \
         refusals {:?}; webhooks: {} statuses posted ({} duplicates), {} POSTs failed; \
         daemon: {retried} messages needed more than one attempt, final states {by_state:?}, \
         0 recipients sent twice",
        elapsed.as_secs_f64(),
        (meta.app.clock.now_ms() - crate::helpers::START_MS) as f64 / 1000.0,
        stats.requests_total,
        stats.accepted_total,
        stats.faults.errors_5xx,
        stats.faults.hangs,
        stats.faults.hangs_accepted,
        stats.refusals_by_code,
        stats.webhooks.statuses_posted,
        stats.webhooks.duplicates_scheduled,
        stats.webhooks.posts_failed,
    );
}

#[actix_web::test]
async fn faults_at_meta_send_every_recipient_exactly_once() {
    faults(if long_run() { 5_000 } else { 400 }).await;
}
