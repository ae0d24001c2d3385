//! Meta's webhooks end to end: the handshake, signatures, status batches (duplicated,
//! shuffled, stale, failed), template, number and account updates reaching running sends,
//! inbound messages, and "200 means durable" across a crash.

use std::time::Duration;

use mindo_bulk::domain::tier::{ThroughputLevel, Tier};
use mindo_bulk::simulator::{signature, PhoneNumberChange};
use mindo_bulk::storage::{accounts, inbound};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde_json::{json, Value};

use crate::helpers::{spawn_app_on, spawn_app_with, TestApp, START_MS};
use crate::meta::{
    phones, spawn_with_meta_tweaked, welcome, MetaApp, NUMBER_10K, NUMBER_250, WABA_250,
};

/// The WABA of `NUMBER_10K`, and that number's display digits.
const WABA_10K: &str = "102938475610002";
const DISPLAY_10K: &str = "12025550102";
const HOUR_MS: i64 = 60 * 60 * 1000;
/// Unix seconds around the test clock's start.
const T0: i64 = START_MS / 1000;

fn id_of(body: &Value) -> String {
    body["bulk_send_id"].as_str().unwrap().to_owned()
}

/// Lets the engine run for a while of real time (for "nothing happens" checks).
async fn settle() {
    actix_web::rt::time::sleep(Duration::from_millis(300)).await;
}

/// POSTs `body` to the webhook endpoint with the given signature header (if any).
async fn post_raw(app: &TestApp, body: Vec<u8>, signature: Option<String>) -> reqwest::Response {
    let mut req = app
        .client
        .post(format!("{}/webhooks/meta/", app.address))
        .header("Content-Type", "application/json");
    if let Some(signature) = signature {
        req = req.header("X-Hub-Signature-256", signature);
    }
    req.body(body)
        .send()
        .await
        .expect("the webhook is answered")
}

/// POSTs `body` signed with `secret`, as Meta does.
async fn post_signed(app: &TestApp, secret: &str, body: &Value) -> reqwest::Response {
    let bytes = serde_json::to_vec(body).unwrap();
    let sig = signature(secret.as_bytes(), &bytes);
    post_raw(app, bytes, Some(sig)).await
}

impl MetaApp {
    /// Posts a notification signed with the simulator's app secret; asserts the 200.
    async fn notify(&self, body: &Value) {
        let res = post_signed(&self.app, self.sim.app_secret(), body).await;
        assert_eq!(
            res.status(),
            200,
            "{}",
            res.text().await.unwrap_or_default()
        );
    }

    /// A send's messages in recipient order.
    async fn messages(&self, id: &str) -> Vec<Value> {
        let res = self
            .app
            .get(
                &format!("/api/v1/meta-templates/bulk-sends/{id}/messages/?page_size=1000"),
                Some(&self.api_key),
            )
            .await;
        assert_eq!(res.status(), 200);
        let page: Value = res.json().await.unwrap();
        page["results"].as_array().unwrap().clone()
    }

    /// Waits until the simulator has posted every status it planned.
    async fn wait_webhooks_idle(&self) {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while self.stats().webhooks.statuses_pending > 0 {
            assert!(
                std::time::Instant::now() < deadline,
                "{:?}",
                self.stats().webhooks
            );
            actix_web::rt::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The business-accounts listing.
    async fn business_accounts(&self) -> Value {
        let res = self
            .app
            .get("/api/v1/business-accounts/", Some(&self.api_key))
            .await;
        assert_eq!(res.status(), 200);
        res.json().await.unwrap()
    }

    /// The listed number with Meta's id `phone_number_id`.
    async fn listed_number(&self, phone_number_id: &str) -> Value {
        let accounts = self.business_accounts().await;
        accounts["businessAccounts"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|a| a["phoneNumbers"].as_array().unwrap().iter())
            .find(|n| n["phoneNumberId"] == phone_number_id)
            .cloned()
            .expect("the number is listed")
    }
}

/// A simulator that only ever reports `sent` (so the test's own payloads decide the rest).
async fn spawn_sent_only() -> MetaApp {
    spawn_with_meta_tweaked(|s| s.behaviour.delivered_ratio = 0.0, |_| {}).await
}

/// Quota tests leave throughput enforcement aside (see `engine.rs`).
async fn spawn_for_quota() -> MetaApp {
    spawn_with_meta_tweaked(|s| s.behaviour.enforce_mps = false, |_| {}).await
}

/// A COMPLETED send of `n` recipients on `NUMBER_10K` whose messages are `sent` only, once
/// the simulator has nothing more to say; returns its id and messages.
async fn completed_send(meta: &MetaApp, n: u32) -> (String, Vec<Value>) {
    completed_send_from(meta, 0, n).await
}

/// Same, to `n` recipients starting at `phones(from, …)`.
async fn completed_send_from(meta: &MetaApp, from: u32, n: u32) -> (String, Vec<Value>) {
    let (status, res) = meta.send_bulk(&welcome(NUMBER_10K, &phones(from, n))).await;
    assert_eq!(status, 202, "{res:#}");
    let id = id_of(&res);
    meta.wait_status(&id, |s| s["status"] == "COMPLETED").await;
    meta.wait_webhooks_idle().await;
    let s = meta.status(&id).await;
    assert_eq!(
        (s["sent_count"].as_u64(), s["delivered_count"].as_u64()),
        (Some(u64::from(n)), Some(0))
    );
    let messages = meta.messages(&id).await;
    assert!(messages.iter().all(|m| m["meta_message_id"].is_string()));
    (id, messages)
}

/// One `statuses[]` item for message `m` of send `send_id`, as Meta sends it; `opaque` says
/// whether it echoes `biz_opaque_callback_data` (without it the wamid routes it).
fn status(send_id: &str, m: &Value, status: &str, at: i64, opaque: bool) -> Value {
    let mut s = json!({
        "id": m["meta_message_id"],
        "status": status,
        "timestamp": at.to_string(),
        "recipient_id": m["recipient_phone"].as_str().unwrap().trim_start_matches('+'),
    });
    if opaque {
        s["biz_opaque_callback_data"] = json!(format!("{send_id}/{}", m["id"]));
    }
    match status {
        "delivered" => {
            s["pricing"] = json!({"billable": true, "pricing_model": "PMP", "type": "regular",
                                  "category": "marketing"})
        }
        "failed" => {
            s["errors"] = json!([{"code": 131049, "title": "This message was not delivered to maintain healthy ecosystem engagement.",
                                  "message": "This message was not delivered to maintain healthy ecosystem engagement.",
                                  "error_data": {"details": "In order to maintain a healthy ecosystem engagement, the message failed to be delivered."},
                                  "href": "https://developers.facebook.com/docs/whatsapp/cloud-api/support/error-codes/"}])
        }
        _ => {}
    }
    s
}

/// A `messages` notification for `NUMBER_10K` carrying `statuses`.
fn statuses_notification(statuses: &[Value]) -> Value {
    json!({"object": "whatsapp_business_account", "entry": [{"id": WABA_10K, "changes": [{
        "field": "messages",
        "value": {"messaging_product": "whatsapp",
                  "metadata": {"display_phone_number": DISPLAY_10K, "phone_number_id": NUMBER_10K},
                  "statuses": statuses}}]}]})
}

/// A notification with one change of `field` for `waba_id`.
fn notification(waba_id: &str, field: &str, value: Value) -> Value {
    json!({"object": "whatsapp_business_account", "entry": [{"id": waba_id, "time": T0,
           "changes": [{"field": field, "value": value}]}]})
}

#[actix_web::test]
async fn the_verification_handshake_answers_the_bare_challenge_only_to_the_right_token() {
    let app = spawn_app_with(|c| c.verify_token = Some("s3cret-token".to_owned().into())).await;
    let res = app
        .get(
            "/webhooks/meta/?hub.mode=subscribe&hub.verify_token=s3cret-token&hub.challenge=1158201444",
            None,
        )
        .await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.text().await.unwrap(), "1158201444");
    for query in [
        "hub.mode=subscribe&hub.verify_token=wrong&hub.challenge=1",
        "hub.mode=subscribe&hub.challenge=1",
        "hub.mode=unsubscribe&hub.verify_token=s3cret-token&hub.challenge=1",
    ] {
        let res = app.get(&format!("/webhooks/meta?{query}"), None).await;
        assert_eq!(res.status(), 403, "{query}");
    }
    // Without a configured token nothing verifies.
    let bare = spawn_app_with(|_| {}).await;
    let res = bare
        .get(
            "/webhooks/meta/?hub.mode=subscribe&hub.verify_token=&hub.challenge=1",
            None,
        )
        .await;
    assert_eq!(res.status(), 403);
}

#[actix_web::test]
async fn only_a_signature_over_the_exact_bytes_is_accepted() {
    let meta = spawn_sent_only().await;
    let secret = meta.sim.app_secret().to_owned();
    let (id, messages) = completed_send(&meta, 2).await;
    let body = statuses_notification(&[status(&id, &messages[0], "read", T0 + 5, true)]);
    let compact = serde_json::to_vec(&body).unwrap();
    let signed = signature(secret.as_bytes(), &compact);

    // The same JSON, re-serialised differently than it was signed.
    let pretty = serde_json::to_vec_pretty(&body).unwrap();
    assert_ne!(pretty, compact);
    let refused = [
        (pretty, Some(signed.clone())),
        (compact.clone(), None),
        (
            compact.clone(),
            Some(signature(b"another secret", &compact)),
        ),
        (compact.clone(), Some("sha256=not-hex".into())),
        (
            compact.clone(),
            Some(signed.trim_start_matches("sha256=").to_owned()),
        ),
    ];
    for (bytes, sig) in refused {
        let res = post_raw(&meta.app, bytes, sig.clone()).await;
        assert_eq!(res.status(), 401, "{sig:?}");
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["code"], "invalid_signature");
    }
    assert_eq!(
        meta.app
            .engine
            .ingest_counters()
            .snapshot()
            .refused_signatures_total,
        5
    );
    let s = meta.status(&id).await;
    assert_eq!(s["read_count"], 0, "nothing applied: {s:#}");

    let res = post_raw(&meta.app, compact, Some(signed)).await;
    assert_eq!(res.status(), 200);
    let s = meta.status(&id).await;
    assert_eq!(
        (s["read_count"].as_u64(), s["delivered_count"].as_u64()),
        (Some(1), Some(1))
    );

    // Signed but not a notification: 400 (Meta's own bodies never are).
    let res = post_signed(&meta.app, &secret, &json!([1, 2])).await;
    assert_eq!(res.status(), 400);
}

#[actix_web::test]
async fn bodies_up_to_metas_size_are_taken_and_larger_ones_refused() {
    let meta = spawn_sent_only().await;
    let secret = meta.sim.app_secret().to_owned();
    // About 3 MB: Meta's largest notification, padded with a field we do not know.
    let mut body = statuses_notification(&[json!({"id": "wamid.NOT-OURS", "status": "sent",
                                                  "timestamp": T0.to_string()})]);
    body["padding"] = json!("x".repeat(3_000_000));
    let res = post_signed(&meta.app, &secret, &body).await;
    assert_eq!(res.status(), 200);

    body["padding"] = json!("x".repeat(5 * 1024 * 1024));
    let res = post_signed(&meta.app, &secret, &body).await;
    assert_eq!(res.status(), 413);
    let err: Value = res.json().await.unwrap();
    assert_eq!(err["code"], "payload_too_large");
}

#[actix_web::test]
async fn duplicated_and_shuffled_batches_give_exact_counters() {
    let meta = spawn_sent_only().await;
    let (id, messages) = completed_send(&meta, 10).await;
    let mut updates = Vec::new();
    for (i, m) in messages.iter().enumerate() {
        // Every other update routes by wamid only.
        let opaque = i % 2 == 0;
        let at = T0 + 10 + i as i64;
        updates.push(status(&id, m, "sent", at, opaque));
        updates.push(status(&id, m, "delivered", at + 1, opaque));
        if i < 4 {
            updates.push(status(&id, m, "read", at + 2, opaque));
        }
    }
    // Message 9 is read at once: no `delivered` is ever sent for it.
    updates.retain(|u| !(u["id"] == messages[9]["meta_message_id"] && u["status"] == "delivered"));
    updates.push(status(&id, &messages[9], "read", T0 + 30, true));
    // Every update twice, in an arbitrary order, over three POSTs.
    let mut all: Vec<Value> = updates.iter().chain(updates.iter()).cloned().collect();
    all.shuffle(&mut StdRng::seed_from_u64(7));
    for chunk in all.chunks(all.len() / 3 + 1) {
        meta.notify(&statuses_notification(chunk)).await;
    }
    let s = meta.status(&id).await;
    assert_eq!(s["status"], "COMPLETED");
    assert_eq!(s["sent_count"], 10);
    assert_eq!(s["delivered_count"], 10);
    assert_eq!(s["read_count"], 5);
    assert_eq!(s["failed_count"], 0);
    assert_eq!(s["pending_count"], 0);
    let messages = meta.messages(&id).await;
    let by_state = |state: &str| messages.iter().filter(|m| m["status"] == state).count();
    assert_eq!((by_state("read"), by_state("delivered")), (5, 5));
    for m in messages.iter().filter(|m| m["status"] == "read") {
        assert!(
            m["delivered_at"].is_string() && m["read_at"].is_string(),
            "{m:#}"
        );
    }
    // The same batches again change nothing.
    for chunk in all.chunks(all.len() / 3 + 1) {
        meta.notify(&statuses_notification(chunk)).await;
    }
    assert_eq!(meta.status(&id).await, s);
}

#[actix_web::test]
async fn a_stale_sent_after_read_does_not_downgrade_and_read_alone_counts_as_delivered() {
    let meta = spawn_sent_only().await;
    let (id, messages) = completed_send(&meta, 2).await;
    meta.notify(&statuses_notification(&[status(
        &id,
        &messages[0],
        "read",
        T0 + 60,
        true,
    )]))
    .await;
    let s = meta.status(&id).await;
    assert_eq!(
        (s["delivered_count"].as_u64(), s["read_count"].as_u64()),
        (Some(1), Some(1))
    );
    for stale in ["sent", "delivered"] {
        meta.notify(&statuses_notification(&[status(
            &id,
            &messages[0],
            stale,
            T0 + 10,
            true,
        )]))
        .await;
    }
    let s = meta.status(&id).await;
    assert_eq!(s["sent_count"], 2);
    assert_eq!(s["delivered_count"], 1);
    assert_eq!(s["read_count"], 1);
    let m = &meta.messages(&id).await[0];
    assert_eq!(m["status"], "read");
    assert_eq!(m["read_at"], "2026-01-01T00:01:00Z");
    assert_eq!(
        m["delivered_at"], "2026-01-01T00:01:00Z",
        "read implies delivered"
    );
}

#[actix_web::test]
async fn failed_webhooks_move_counters_and_a_late_failure_turns_completed_into_partial() {
    let meta = spawn_sent_only().await;
    let (id, messages) = completed_send(&meta, 3).await;
    meta.notify(&statuses_notification(&[
        status(&id, &messages[0], "delivered", T0 + 5, true),
        status(&id, &messages[2], "read", T0 + 5, false),
    ]))
    .await;
    meta.notify(&statuses_notification(&[status(
        &id,
        &messages[0],
        "failed",
        T0 + 9,
        true,
    )]))
    .await;
    let s = meta.status(&id).await;
    assert_eq!(s["status"], "PARTIAL", "{s:#}");
    assert_eq!(s["failed_count"], 1);
    assert_eq!(s["sent_count"], 2);
    assert_eq!(s["delivered_count"], 1);
    assert_eq!(s["pending_count"], 0);
    assert!(s["completed_at"].is_string());
    let failed = &meta.messages(&id).await[0];
    assert_eq!(failed["status"], "failed");
    assert_eq!(failed["error_code"], 131049);
    assert!(failed["error_message"]
        .as_str()
        .unwrap()
        .contains("healthy ecosystem"));
    assert_eq!(failed["failed_at"], "2026-01-01T00:00:09Z");

    // A duplicate failure is a no-op; a failure after `read` cannot undo the read.
    meta.notify(&statuses_notification(&[
        status(&id, &messages[0], "failed", T0 + 9, false),
        status(&id, &messages[2], "failed", T0 + 9, true),
    ]))
    .await;
    assert_eq!(meta.status(&id).await, s);

    meta.notify(&statuses_notification(&[status(
        &id,
        &messages[1],
        "failed",
        T0 + 9,
        true,
    )]))
    .await;
    let s = meta.status(&id).await;
    assert_eq!(s["status"], "PARTIAL");
    assert_eq!(
        (s["failed_count"].as_u64(), s["sent_count"].as_u64()),
        (Some(2), Some(1))
    );

    // A send whose every message failed is FAILED.
    let (other, messages) = completed_send_from(&meta, 500, 1).await;
    meta.notify(&statuses_notification(&[status(
        &other,
        &messages[0],
        "failed",
        T0 + 9,
        true,
    )]))
    .await;
    let s = meta.status(&other).await;
    assert_eq!(
        (s["status"].as_str(), s["failed_count"].as_u64()),
        (Some("FAILED"), Some(1))
    );
}

#[actix_web::test]
async fn the_simulators_duplicated_and_reordered_webhooks_give_exact_counters() {
    let meta = spawn_with_meta_tweaked(
        |s| {
            s.behaviour.duplicate_ratio = 1.0;
            s.behaviour.reorder = true;
            s.behaviour.reorder_jitter_ms = 40;
            s.behaviour.delivered_ratio = 1.0;
            s.behaviour.read_ratio = 1.0;
        },
        |_| {},
    )
    .await;
    let (_, res) = meta.send_bulk(&welcome(NUMBER_10K, &phones(0, 30))).await;
    let id = id_of(&res);
    meta.wait_status(&id, |s| s["read_count"] == 30).await;
    meta.wait_webhooks_idle().await;
    let s = meta.status(&id).await;
    assert_eq!(s["status"], "COMPLETED");
    assert_eq!(s["sent_count"], 30);
    assert_eq!(s["delivered_count"], 30);
    assert_eq!(s["read_count"], 30);
    assert_eq!(s["failed_count"], 0);
    let webhooks = meta.stats().webhooks;
    assert_eq!(webhooks.duplicates_scheduled, 90, "{webhooks:?}");
    assert_eq!(webhooks.statuses_posted, 180);
}

#[actix_web::test]
async fn updates_for_unknown_messages_are_counted_and_dropped_and_unknown_fields_ignored() {
    let meta = spawn_sent_only().await;
    let mut body = statuses_notification(&[
        json!({"id": "wamid.UNKNOWN1", "status": "delivered", "timestamp": T0.to_string(),
               "biz_opaque_callback_data": "no-such-send/99999", "brand_new_field": {"x": 1}}),
        json!({"id": "wamid.UNKNOWN2", "status": "read", "timestamp": T0}),
        json!({"id": "wamid.UNKNOWN3", "status": "deleted"}),
        json!({"status": "sent"}),
    ]);
    body["entry"][0]["changes"]
        .as_array_mut()
        .unwrap()
        .push(json!({"field": "template_category_update",
                     "value": {"message_template_id": 1, "new_category": "UTILITY"}}));
    body["entry"][0]["surprise"] = json!(true);
    meta.notify(&body).await;
    let stats = meta.app.engine.ingest_counters().snapshot();
    assert_eq!(stats.unknown_status_updates_total, 2);
    assert_eq!(stats.skipped_items_total, 1, "the status without an id");
}

/// A send on `NUMBER_250` with more recipients than its quota: 250 go, 50 wait in PROCESSING.
async fn send_over_quota(meta: &MetaApp) -> String {
    let (status, res) = meta.send_bulk(&welcome(NUMBER_250, &phones(0, 300))).await;
    assert_eq!(status, 202, "{res:#}");
    let id = id_of(&res);
    meta.wait_status(&id, |s| s["sent_count"] == 250).await;
    settle().await;
    let s = meta.status(&id).await;
    assert_eq!(
        (s["status"].as_str(), s["pending_count"].as_u64()),
        (Some("PROCESSING"), Some(50))
    );
    id
}

#[actix_web::test]
async fn a_paused_template_pauses_its_sends_and_approval_resumes_only_those() {
    let meta = spawn_for_quota().await;
    let running = send_over_quota(&meta).await;
    // Another send on the template, scheduled, that the client paused itself.
    let mut body = welcome(NUMBER_250, &phones(1000, 5));
    body["scheduled_at"] = json!("2026-01-01T01:00:00Z");
    let (_, res) = meta.send_bulk(&body).await;
    let client_paused = id_of(&res);
    let res = meta
        .app
        .post(
            &format!("/api/v1/meta-templates/bulk-sends/{client_paused}/pause/"),
            &meta.api_key,
            &json!({}),
        )
        .await;
    assert_eq!(res.status(), 200);

    meta.sim
        .set_template_status(WABA_250, "welcome_message", "es", "PAUSED")
        .unwrap();
    let s = meta.wait_status(&running, |s| s["paused"] == true).await;
    let reason = s["pause_reason"].as_str().unwrap();
    assert!(reason.starts_with("template_paused:"), "{reason}");
    assert!(
        reason.contains("welcome_message") && reason.contains("PAUSED"),
        "{reason}"
    );
    assert_eq!(s["template"]["status"], "PAUSED");
    assert_eq!(s["status"], "PROCESSING");
    let other = meta.status(&client_paused).await;
    assert_eq!(other["pause_reason"], "paused by the client");
    // The template is no longer offered nor accepted for new sends.
    let (status, err) = meta.send_bulk(&welcome(NUMBER_250, &phones(2000, 1))).await;
    assert_eq!(
        (status, err["code"].as_str()),
        (400, Some("template_not_approved"))
    );

    // The quota window frees up: only the pause holds the 50 back.
    meta.app.clock.advance_ms(24 * HOUR_MS + 1_000);
    settle().await;
    assert_eq!(
        meta.stats().accepted_total,
        250,
        "a paused send dispatches nothing"
    );
    assert_eq!(meta.status(&running).await["pending_count"], 50);

    meta.sim
        .set_template_status(WABA_250, "welcome_message", "es", "APPROVED")
        .unwrap();
    let s = meta
        .wait_status(&running, |s| s["status"] == "COMPLETED")
        .await;
    assert_eq!(s["sent_count"], 300);
    assert_eq!(s["paused"], false);
    assert_eq!(s["pause_reason"], Value::Null);
    assert_eq!(s["template"]["status"], "APPROVED");
    settle().await;
    let other = meta.status(&client_paused).await;
    assert_eq!(other["paused"], true, "the client's pause stays: {other:#}");
    assert_eq!(other["status"], "QUEUED");
    assert_eq!(meta.stats().accepted_total, 300);
}

/// A `message_template_status_update` for `welcome_message` (es) of `WABA_250`, at unix second `at`.
fn template_event(event: &str, at: i64) -> Value {
    let mut body = notification(
        WABA_250,
        "message_template_status_update",
        json!({"event": event, "message_template_id": 0, "message_template_name": "welcome_message",
               "message_template_language": "es", "reason": "NONE"}),
    );
    body["entry"][0]["time"] = json!(at);
    body
}

#[actix_web::test]
async fn template_events_delivered_late_or_reordered_never_override_a_newer_status() {
    let meta = spawn_for_quota().await;
    let running = send_over_quota(&meta).await;

    meta.notify(&template_event("PAUSED", T0 + 10)).await;
    let s = meta.status(&running).await;
    assert_eq!(
        (s["paused"].as_bool(), s["template"]["status"].as_str()),
        (Some(true), Some("PAUSED"))
    );
    meta.notify(&template_event("APPROVED", T0 + 30)).await;
    // Delivered after the approval but older than it: stale.
    meta.notify(&template_event("PAUSED", T0 + 20)).await;
    let s = meta.status(&running).await;
    assert_eq!(s["template"]["status"], "APPROVED", "{s:#}");
    assert_eq!(s["paused"], false, "{s:#}");

    // The quota window frees up and the send finishes: the stale pause held nothing back.
    meta.app.clock.advance_ms(24 * HOUR_MS + 1_000);
    let s = meta
        .wait_status(&running, |s| s["status"] == "COMPLETED")
        .await;
    assert_eq!(s["sent_count"], 300);

    // A newer event still applies, and an event of the same second as the stored one too.
    meta.notify(&template_event("PAUSED", T0 + 40)).await;
    meta.notify(&template_event("APPROVED", T0 + 40)).await;
    let s = meta.status(&running).await;
    assert_eq!(s["template"]["status"], "APPROVED", "{s:#}");
    meta.notify(&template_event("DISABLED", T0 + 41)).await;
    assert_eq!(
        meta.status(&running).await["template"]["status"],
        "DISABLED"
    );
}

#[actix_web::test]
async fn a_disabled_template_stops_a_running_send() {
    let meta = spawn_for_quota().await;
    let running = send_over_quota(&meta).await;
    meta.sim
        .set_template_status(WABA_250, "welcome_message", "es", "DISABLED")
        .unwrap();
    let s = meta
        .wait_status(&running, |s| s["status"] == "FAILED")
        .await;
    assert_eq!(s["failed_count"], 50);
    assert_eq!(s["sent_count"], 250);
    assert_eq!(s["pending_count"], 0);
    assert_eq!(s["template"]["status"], "DISABLED");
    let failed: Value = meta
        .app
        .get(
            &format!(
                "/api/v1/meta-templates/bulk-sends/{running}/messages/?status=failed&page_size=1"
            ),
            Some(&meta.api_key),
        )
        .await
        .json()
        .await
        .unwrap();
    let reason = failed["results"][0]["error_message"].as_str().unwrap();
    assert!(reason.starts_with("template_disabled:"), "{reason}");
    meta.app.clock.advance_ms(24 * HOUR_MS + 1_000);
    settle().await;
    assert_eq!(meta.stats().accepted_total, 250);
}

#[actix_web::test]
async fn a_tier_upgrade_raises_the_quota_so_held_messages_go_out() {
    let meta = spawn_for_quota().await;
    let running = send_over_quota(&meta).await;
    meta.sim
        .set_phone_number(
            NUMBER_250,
            PhoneNumberChange {
                tier: Some(Tier::T2000),
                ..PhoneNumberChange::default()
            },
        )
        .unwrap();
    // Without moving the clock: only the new limit lets the rest go.
    let s = meta
        .wait_status(&running, |s| s["status"] == "COMPLETED")
        .await;
    assert_eq!(s["sent_count"], 300);
    let number = meta.listed_number(NUMBER_250).await;
    assert_eq!(number["messagingLimitTier"], "TIER_2000");
    assert_eq!(number["quota"]["dailyLimit"], 2000);
    let stats = meta.stats();
    assert_eq!(stats.accepted_total, 300);
    assert!(
        stats.refusals_by_code.is_empty(),
        "{:?}",
        stats.refusals_by_code
    );
}

#[actix_web::test]
async fn a_throughput_upgrade_sets_the_high_level() {
    let meta = spawn_sent_only().await;
    assert_eq!(meta.listed_number(NUMBER_10K).await["throughputMps"], 80);
    meta.sim
        .set_phone_number(
            NUMBER_10K,
            PhoneNumberChange {
                throughput_level: Some(ThroughputLevel::High),
                ..PhoneNumberChange::default()
            },
        )
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while meta.listed_number(NUMBER_10K).await["throughputMps"] != 1000 {
        assert!(
            std::time::Instant::now() < deadline,
            "the upgrade never arrived"
        );
        actix_web::rt::time::sleep(Duration::from_millis(20)).await;
    }
    let mut conn = meta.app.db.get().unwrap();
    let (number, _) = accounts::tenant_number(&mut conn, meta.tenant_id, NUMBER_10K)
        .unwrap()
        .unwrap();
    assert_eq!(number.throughput_level, "HIGH");
}

#[actix_web::test]
async fn an_account_ban_pauses_the_numbers_and_a_reinstatement_resumes_them() {
    let meta = spawn_sent_only().await;
    meta.notify(&notification(
        WABA_250,
        "account_update",
        json!({"phone_number": "12025550101", "event": "DISABLED_UPDATE",
               "ban_info": {"waba_ban_state": "DISABLE", "waba_ban_date": "2026-01-01"}}),
    ))
    .await;
    let number = |meta: &MetaApp| {
        let mut conn = meta.app.db.get().unwrap();
        accounts::tenant_number(&mut conn, meta.tenant_id, NUMBER_250)
            .unwrap()
            .unwrap()
            .0
    };
    let paused = number(&meta);
    assert!(paused.paused);
    assert_eq!(
        paused.pause_reason.as_deref(),
        Some("account_update: DISABLED_UPDATE (DISABLE)")
    );
    let (_, res) = meta.send_bulk(&welcome(NUMBER_250, &phones(0, 3))).await;
    let id = id_of(&res);
    settle().await;
    assert_eq!(meta.stats().accepted_total, 0, "the number's sends wait");
    assert_eq!(meta.status(&id).await["pending_count"], 3);

    meta.notify(&notification(
        WABA_250,
        "account_update",
        json!({"phone_number": "12025550101", "event": "DISABLED_UPDATE",
               "ban_info": {"waba_ban_state": "REINSTATE"}}),
    ))
    .await;
    assert!(!number(&meta).paused);
    meta.wait_status(&id, |s| s["status"] == "COMPLETED").await;
}

#[actix_web::test]
async fn inbound_messages_record_when_each_user_last_wrote() {
    let meta = spawn_sent_only().await;
    let inbound_message = |from: &str, at: i64| {
        notification(
            WABA_10K,
            "messages",
            json!({"messaging_product": "whatsapp",
                   "metadata": {"display_phone_number": DISPLAY_10K, "phone_number_id": NUMBER_10K},
                   "contacts": [{"profile": {"name": "Juan"}, "wa_id": from}],
                   "messages": [{"from": from, "id": format!("wamid.IN{at}"), "timestamp": at.to_string(),
                                 "type": "text", "text": {"body": "STOP"}}]}),
        )
    };
    meta.notify(&inbound_message("5491130000001", T0 + 100))
        .await;
    meta.notify(&inbound_message("5491130000002", T0 + 50))
        .await;
    // A late, older message does not move the time back.
    meta.notify(&inbound_message("5491130000001", T0 + 10))
        .await;
    let mut conn = meta.app.db.get().unwrap();
    let last = |conn: &mut _, wa_id| inbound::last_inbound_at(conn, NUMBER_10K, wa_id).unwrap();
    assert_eq!(last(&mut conn, "5491130000001"), Some((T0 + 100) * 1000));
    assert_eq!(last(&mut conn, "5491130000002"), Some((T0 + 50) * 1000));
    assert_eq!(last(&mut conn, "5491130000003"), None);
}

#[actix_web::test]
async fn a_200_means_every_change_survives_a_crash() {
    let meta = spawn_sent_only().await;
    let (id, messages) = completed_send(&meta, 3).await;
    let mut body = statuses_notification(
        &messages
            .iter()
            .map(|m| status(&id, m, "read", T0 + 20, true))
            .collect::<Vec<_>>(),
    );
    // In the same notification: an inbound message and a template paused in another WABA.
    body["entry"][0]["changes"][0]["value"]["contacts"] =
        json!([{"profile": {"name": "Ana"}, "wa_id": "5491130000000"}]);
    body["entry"][0]["changes"][0]["value"]["messages"] = json!([{"from": "5491130000000",
        "id": "wamid.INX", "timestamp": (T0 + 21).to_string(), "type": "text", "text": {"body": "hola"}}]);
    body["entry"].as_array_mut().unwrap().push(
        notification(
            WABA_250,
            "message_template_status_update",
            json!({"event": "PAUSED", "message_template_name": "order_update",
                   "message_template_language": "en", "reason": "NONE"}),
        )["entry"][0]
            .clone(),
    );
    meta.notify(&body).await;
    // Killed right after the 200.
    meta.app.crash().await;

    let secret = meta.sim.app_secret().to_owned();
    let graph_url = meta.sim.base_url().to_owned();
    let restarted = spawn_app_on(meta.app.database.clone(), meta.app.clock.clone(), |c| {
        c.graph_url = graph_url;
        c.app_secret = Some(secret.into());
    })
    .await;
    let meta = MetaApp {
        app: restarted,
        ..meta
    };
    let s = meta.status(&id).await;
    assert_eq!(s["read_count"], 3, "{s:#}");
    assert_eq!(s["delivered_count"], 3);
    let mut conn = meta.app.db.get().unwrap();
    assert_eq!(
        inbound::last_inbound_at(&mut conn, NUMBER_10K, "5491130000000").unwrap(),
        Some((T0 + 21) * 1000)
    );
    drop(conn);
    let accounts = meta.business_accounts().await;
    let waba = accounts["businessAccounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["wabaId"] == WABA_250)
        .unwrap();
    let listed: Vec<(&str, &str)> = waba["templates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t["name"].as_str().unwrap(), t["language"].as_str().unwrap()))
        .collect();
    assert!(!listed.contains(&("order_update", "en")), "{listed:?}");
    assert!(listed.contains(&("order_update", "es")), "{listed:?}");
}
