//! Opt-outs (issue 16): the suppression list through the API and the CLI, each of Meta's
//! three signals (keyword texts, `user_preferences`, 131050) suppressing and lifting, sends
//! honouring the list at creation and mid-send, and signals duplicated or reordered.

use std::time::Duration;

use mindo_bulk::clock::Clock;
use mindo_bulk::simulator::signature;
use serde_json::{json, Value};

use crate::helpers::{json as body_of, spawn_app, TestApp, START_MS};
use crate::meta::{
    phones, spawn_with_meta, spawn_with_meta_tweaked, welcome, MetaApp, NUMBER_250, WABA_250,
};

const SUPPRESSIONS: &str = "/api/v1/suppressions/";
const HOUR_MS: i64 = 60 * 60 * 1000;

fn id_of(body: &Value) -> String {
    body["bulk_send_id"].as_str().unwrap().to_owned()
}

/// An `order_update` (UTILITY) send body for `phones`.
fn order_update(phones: &[String]) -> Value {
    json!({
        "phone_number_id": NUMBER_250,
        "template_name": "order_update",
        "language": "es",
        "recipients": phones.iter().map(|p| json!({"phone": p,
            "variables": {"1": "A-1", "2": "en camino"},
            "button_variables": {"button_0": "A-1"}})).collect::<Vec<_>>(),
    })
}

impl MetaApp {
    async fn suppress(&self, body: &Value) -> (u16, Value) {
        let res = self.app.post(SUPPRESSIONS, &self.api_key, body).await;
        let status = res.status().as_u16();
        (status, body_of(res).await)
    }

    async fn suppressions(&self, query: &str) -> Value {
        let res = self
            .app
            .get(&format!("{SUPPRESSIONS}{query}"), Some(&self.api_key))
            .await;
        assert_eq!(res.status(), 200);
        body_of(res).await
    }

    /// The list's entry for `phone`, if suppressed.
    async fn suppression_of(&self, phone: &str) -> Option<Value> {
        let list = self
            .suppressions(&format!("?phone={}", phone.replace('+', "%2B")))
            .await;
        list["results"].as_array().unwrap().first().cloned()
    }

    /// Polls until `phone`'s suppression is as `wanted` says (webhooks arrive asynchronously).
    async fn wait_suppression(&self, phone: &str, wanted: impl Fn(Option<&Value>) -> bool) {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let entry = self.suppression_of(phone).await;
            if wanted(entry.as_ref()) {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the suppression of {phone} never got there: {entry:?}"
            );
            actix_web::rt::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Posts a notification signed with the simulator's app secret; asserts the 200.
    async fn notify_signed(&self, body: &Value) {
        let bytes = serde_json::to_vec(body).unwrap();
        let sig = signature(self.sim.app_secret().as_bytes(), &bytes);
        let res = self
            .app
            .client
            .post(format!("{}/webhooks/meta/", self.app.address))
            .header("Content-Type", "application/json")
            .header("X-Hub-Signature-256", sig)
            .body(bytes)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
    }

    async fn message_page(&self, id: &str, query: &str) -> Value {
        let res = self
            .app
            .get(
                &format!("/api/v1/meta-templates/bulk-sends/{id}/messages/{query}"),
                Some(&self.api_key),
            )
            .await;
        assert_eq!(res.status(), 200);
        body_of(res).await
    }

    fn accepted_for(&self, phone: &str) -> u64 {
        self.stats()
            .accepted_by_recipient
            .get(phone)
            .copied()
            .unwrap_or(0)
    }
}

/// Counters add up: sent + failed + pending + cancelled + suppressed = total.
fn assert_counters_add_up(s: &Value) {
    let n = |k: &str| s[k].as_u64().unwrap();
    assert_eq!(
        n("sent_count")
            + n("failed_count")
            + n("pending_count")
            + n("cancelled_count")
            + n("suppressed_count"),
        n("total_recipients"),
        "{s:#}"
    );
}

/// POSTs to the suppressions endpoint; returns (status, body).
async fn post(app: &TestApp, key: &str, body: Value) -> (u16, Value) {
    let res = app.post(SUPPRESSIONS, key, &body).await;
    let status = res.status().as_u16();
    (status, body_of(res).await)
}

#[actix_web::test]
async fn the_api_adds_lists_filters_and_lifts_suppressions_per_tenant() {
    let app = spawn_app().await;
    let (_, key) = app.create_tenant("Mindo Software");
    let (_, other_key) = app.create_tenant("Other");
    let (status, body) = post(
        &app,
        &key,
        json!({"phones": ["+54 9 11 3000-0001", "+5491130000002", "005491130000001"],
               "reason": "asked by phone"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        json!({"received": 2, "added": 2, "already_suppressed": 0, "messages_suppressed": 0})
    );
    let (_, again) = post(&app, &key, json!({"phones": ["+5491130000002"]})).await;
    assert_eq!(again["already_suppressed"], 1);
    assert_eq!(again["added"], 0);

    let list = body_of(app.get(SUPPRESSIONS, Some(&key)).await).await;
    assert_eq!(list["count"], 2);
    let first = &list["results"][0];
    assert_eq!(first["reason"], "asked by phone");
    assert_eq!(first["source"], "api");
    assert_eq!(first["suppress_all_categories"], false);
    assert_eq!(first["created_at"], "2026-01-01T00:00:00Z");
    let one = body_of(
        app.get(
            &format!("{SUPPRESSIONS}?phone=%2B5491130000001"),
            Some(&key),
        )
        .await,
    )
    .await;
    assert_eq!(one["count"], 1);
    assert_eq!(one["results"][0]["phone"], "+5491130000001");
    let paged = body_of(
        app.get(&format!("{SUPPRESSIONS}?page_size=1"), Some(&key))
            .await,
    )
    .await;
    assert_eq!(paged["results"].as_array().unwrap().len(), 1);
    assert!(paged["next"].as_str().unwrap().contains("page=2"));

    // Another tenant sees nothing and cannot lift them.
    let theirs = body_of(app.get(SUPPRESSIONS, Some(&other_key)).await).await;
    assert_eq!(theirs["count"], 0);
    let delete = |key: &str, phone: &str| {
        app.client
            .delete(format!("{}{SUPPRESSIONS}{phone}/", app.address))
            .header("X-API-Key", key)
            .send()
    };
    assert_eq!(
        delete(&other_key, "%2B5491130000001")
            .await
            .unwrap()
            .status(),
        404
    );
    assert_eq!(
        delete(&key, "%2B5491130000001").await.unwrap().status(),
        204
    );
    assert_eq!(
        delete(&key, "%2B5491130000001").await.unwrap().status(),
        404
    );
    assert_eq!(delete(&key, "+5491130000002").await.unwrap().status(), 204);
    let res = delete(&key, "not-a-phone").await.unwrap();
    assert_eq!(res.status(), 400);
    assert_eq!(body_of(res).await["code"], "validation_error");
    let list = body_of(app.get(SUPPRESSIONS, Some(&key)).await).await;
    assert_eq!(list["count"], 0);

    // Bad input: the documented error body, every bad phone named.
    let (status, body) = post(
        &app,
        &key,
        json!({"phones": ["+5491130000003", "12", "hello"]}),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(body["code"], "validation_error");
    let errors = body["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 2, "{body}");
    assert_eq!(errors[0]["index"], 1);
    assert_eq!(errors[0]["field"], "phones");
    for bad in [
        json!({"phones": []}),
        json!({"phones": "x"}),
        json!({"phones": ["+5491130000003"], "surprise": 1}),
        json!({"phones": ["+5491130000003"], "reason": "a".repeat(501)}),
    ] {
        let (status, body) = post(&app, &key, bad.clone()).await;
        assert_eq!(status, 400, "{bad}: {body}");
        assert_eq!(body["code"], "validation_error");
    }
    let res = app
        .get(&format!("{SUPPRESSIONS}?phone=12"), Some(&key))
        .await;
    assert_eq!(res.status(), 400);
}

#[actix_web::test]
async fn a_read_key_may_list_but_not_add_or_lift() {
    let app = spawn_app().await;
    let (tenant, key) = app.create_tenant("Mindo Software");
    let (code, out, err) = app.cli(&[
        "api-key",
        "create",
        "--tenant",
        &tenant.to_string(),
        "--scope",
        "read",
        "--json",
    ]);
    assert_eq!(code, 0, "{err}");
    let read_key = serde_json::from_str::<Value>(&out).unwrap()["api_key"]
        .as_str()
        .unwrap()
        .to_owned();
    let res = app
        .post(
            SUPPRESSIONS,
            &read_key,
            &json!({"phones": ["+5491130000001"]}),
        )
        .await;
    assert_eq!(res.status(), 403);
    assert_eq!(body_of(res).await["code"], "forbidden");
    let res = app
        .post(SUPPRESSIONS, &key, &json!({"phones": ["+5491130000001"]}))
        .await;
    assert_eq!(res.status(), 200);
    let res = app
        .client
        .delete(format!("{}{SUPPRESSIONS}%2B5491130000001/", app.address))
        .header("X-API-Key", &read_key)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    let list = body_of(app.get(SUPPRESSIONS, Some(&read_key)).await).await;
    assert_eq!(list["count"], 1);
}

#[actix_web::test]
async fn ten_thousand_phones_are_added_in_one_request_and_more_are_refused() {
    let app = spawn_app().await;
    let (_, key) = app.create_tenant("Mindo Software");
    let many = phones(0, 10_000);
    let res = app
        .post(
            SUPPRESSIONS,
            &key,
            &json!({"phones": many, "reason": "legacy list"}),
        )
        .await;
    assert_eq!(res.status(), 200);
    let body = body_of(res).await;
    assert_eq!(body["added"], 10_000);
    let list = body_of(app.get(SUPPRESSIONS, Some(&key)).await).await;
    assert_eq!(list["count"], 10_000);
    let res = app
        .post(SUPPRESSIONS, &key, &json!({"phones": phones(0, 10_001)}))
        .await;
    assert_eq!(res.status(), 400);
    assert_eq!(body_of(res).await["code"], "validation_error");
    let bad: Vec<String> = (0..150).map(|i| format!("+12{i}")).collect();
    let res = app.post(SUPPRESSIONS, &key, &json!({"phones": bad})).await;
    assert_eq!(res.status(), 400);
    let body = body_of(res).await;
    assert_eq!(body["errors"].as_array().unwrap().len(), 100);
    assert_eq!(body["errors_truncated"], true);
    assert!(
        body["detail"].as_str().unwrap().starts_with("150 of 150"),
        "{body}"
    );
}

#[actix_web::test]
async fn the_cli_imports_a_csv_and_refuses_a_file_with_a_bad_phone() {
    let app = spawn_app().await;
    let (tenant, key) = app.create_tenant("Mindo Software");
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("optouts.csv");
    std::fs::write(
        &good,
        "name,phone\nAna,+5491130000001\nJuan,+54 9 11 3000-0002\nAna again,+5491130000001\n",
    )
    .unwrap();
    let tenant_arg = tenant.to_string();
    let (code, out, err) = app.cli(&[
        "suppressions",
        "import",
        "--tenant",
        &tenant_arg,
        "--csv",
        good.to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(code, 0, "{err}");
    let out: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(out["added"], 2);
    let list = body_of(app.get(SUPPRESSIONS, Some(&key)).await).await;
    assert_eq!(list["count"], 2);
    assert_eq!(list["results"][0]["source"], "import");

    let bad = dir.path().join("bad.csv");
    std::fs::write(&bad, "+5491130000003\nnot a phone\n").unwrap();
    let (code, _, err) = app.cli(&[
        "suppressions",
        "import",
        "--tenant",
        &tenant_arg,
        "--csv",
        bad.to_str().unwrap(),
    ]);
    assert_ne!(code, 0);
    assert!(err.contains("row 2"), "{err}");
    let (code, _, err) = app.cli(&[
        "suppressions",
        "import",
        "--tenant",
        "999",
        "--csv",
        good.to_str().unwrap(),
    ]);
    assert_ne!(code, 0);
    assert!(err.contains("no tenant"), "{err}");
    let list = body_of(app.get(SUPPRESSIONS, Some(&key)).await).await;
    assert_eq!(list["count"], 2, "nothing of the refused file was imported");
}

#[actix_web::test]
async fn a_suppressed_recipient_is_skipped_by_marketing_sends_but_not_by_utility_ones() {
    let meta = spawn_with_meta().await;
    let people = phones(0, 3);
    let (status, _) = meta
        .suppress(&json!({"phones": [people[0]], "reason": "asked in the shop"}))
        .await;
    assert_eq!(status, 200);

    let (status, created) = meta.send_bulk(&welcome(NUMBER_250, &people)).await;
    assert_eq!(status, 202, "{created}");
    assert_eq!(created["suppressed_recipients"], 1);
    assert_eq!(created["unique_recipients"], 3);
    assert_eq!(created["quota_info"]["quota_needed"], 2);
    let id = id_of(&created);
    let s = meta.wait_finished(&id).await;
    assert_eq!(s["status"], "COMPLETED");
    assert_eq!(s["suppressed_count"], 1);
    assert_eq!(s["sent_count"], 2);
    assert_eq!(s["total_recipients"], 3);
    assert_eq!(s["progress_percentage"], 100.0);
    assert_counters_add_up(&s);
    assert_eq!(meta.accepted_for(&people[0]), 0, "Meta never saw it");
    assert_eq!(meta.accepted_for(&people[1]), 1);
    let suppressed = meta.message_page(&id, "?status=suppressed").await;
    assert_eq!(suppressed["count"], 1);
    let m = &suppressed["results"][0];
    assert_eq!(m["recipient_phone"], people[0]);
    assert_eq!(m["status"], "suppressed");
    assert_eq!(m["error_message"], "suppressed (api): asked in the shop");

    // A UTILITY send reaches it (past the pair rate's 6 s).
    meta.app.clock.advance_ms(10_000);
    let (status, created) = meta.send_bulk(&order_update(&people[..1])).await;
    assert_eq!(status, 202, "{created}");
    assert_eq!(created["suppressed_recipients"], 0);
    let s = meta.wait_finished(&id_of(&created)).await;
    assert_eq!(s["suppressed_count"], 0);
    assert_eq!(meta.accepted_for(&people[0]), 1);

    // Unless the tenant suppresses it for every category.
    let (status, body) = meta
        .suppress(&json!({"phones": [people[0]], "suppress_all_categories": true}))
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["added"], 1, "widened to every category");
    meta.app.clock.advance_ms(10_000);
    let (_, created) = meta.send_bulk(&order_update(&people[..2])).await;
    assert_eq!(created["suppressed_recipients"], 1);
    let s = meta.wait_finished(&id_of(&created)).await;
    assert_eq!(s["suppressed_count"], 1);
    assert_eq!(
        meta.accepted_for(&people[0]),
        1,
        "still only the first utility"
    );
    assert_eq!(meta.accepted_for(&people[1]), 2);
}

#[actix_web::test]
async fn a_send_whose_recipients_are_all_suppressed_completes_at_once() {
    let meta = spawn_with_meta().await;
    let people = phones(0, 2);
    meta.suppress(&json!({"phones": people})).await;
    let (status, created) = meta.send_bulk(&welcome(NUMBER_250, &people)).await;
    assert_eq!(status, 202);
    assert_eq!(created["suppressed_recipients"], 2);
    assert_eq!(created["quota_info"]["quota_needed"], 0);
    let s = meta.status(&id_of(&created)).await;
    assert_eq!(s["status"], "COMPLETED");
    assert_eq!(s["suppressed_count"], 2);
    assert_eq!(s["pending_count"], 0);
    assert!(s["completed_at"].is_string());
    assert_eq!(meta.stats().accepted_total, 0);
}

#[actix_web::test]
async fn an_opt_out_keyword_suppresses_and_an_opt_in_keyword_lifts() {
    let meta = spawn_with_meta().await;
    let ana = &phones(0, 1)[0];
    meta.sim
        .send_inbound_text(NUMBER_250, ana, " Bája! ")
        .unwrap();
    meta.wait_suppression(ana, |e| e.is_some()).await;
    let entry = meta.suppression_of(ana).await.unwrap();
    assert_eq!(entry["source"], "inbound_keyword");
    assert_eq!(entry["reason"], "the user wrote \"Bája!\"");
    // Ordinary text changes nothing; a later ALTA lifts it.
    meta.sim
        .send_inbound_text(NUMBER_250, ana, "quiero darme de baja mañana")
        .unwrap();
    meta.app.clock.advance_ms(1_000);
    meta.sim.send_inbound_text(NUMBER_250, ana, "ALTA").unwrap();
    meta.wait_suppression(ana, |e| e.is_none()).await;
    let (_, created) = meta
        .send_bulk(&welcome(NUMBER_250, std::slice::from_ref(ana)))
        .await;
    assert_eq!(created["suppressed_recipients"], 0);
    // Counted on /metrics (the registry is the process's: at least this test's).
    let metrics = meta.app.get("/metrics", None).await.text().await.unwrap();
    for result in ["suppressed", "lifted"] {
        let prefix = format!("mindo_opt_out_signals_total{{result=\"{result}\"}} ");
        let line = metrics
            .lines()
            .find(|l| l.starts_with(&prefix))
            .unwrap_or_else(|| panic!("no {result} line in {metrics}"));
        let n: f64 = line[prefix.len()..].trim().parse().unwrap();
        assert!(n >= 1.0, "{line}");
    }
}

#[actix_web::test]
async fn user_preferences_stop_suppresses_and_resume_lifts() {
    let meta = spawn_with_meta().await;
    let ana = &phones(0, 1)[0];
    meta.sim
        .set_marketing_stopped(NUMBER_250, ana, true)
        .unwrap();
    meta.wait_suppression(ana, |e| e.is_some()).await;
    let entry = meta.suppression_of(ana).await.unwrap();
    assert_eq!(entry["source"], "user_preferences");
    let (_, created) = meta
        .send_bulk(&welcome(NUMBER_250, std::slice::from_ref(ana)))
        .await;
    assert_eq!(created["suppressed_recipients"], 1);
    meta.app.clock.advance_ms(1_000);
    meta.sim
        .set_marketing_stopped(NUMBER_250, ana, false)
        .unwrap();
    meta.wait_suppression(ana, |e| e.is_none()).await;
    let (_, created) = meta
        .send_bulk(&welcome(NUMBER_250, std::slice::from_ref(ana)))
        .await;
    assert_eq!(created["suppressed_recipients"], 0);
    meta.wait_finished(&id_of(&created)).await;
    assert_eq!(meta.accepted_for(ana), 1);
}

#[actix_web::test]
async fn a_131050_failure_suppresses_so_a_later_marketing_send_never_reaches_meta() {
    let people = phones(0, 2);
    let stopped = people[0].clone();
    let meta =
        spawn_with_meta_tweaked(move |sim| sim.marketing_stopped = vec![stopped], |_| {}).await;
    let (_, created) = meta.send_bulk(&welcome(NUMBER_250, &people)).await;
    assert_eq!(created["suppressed_recipients"], 0, "nothing known yet");
    // Meta accepts the message, then its `failed` webhook comes: until that is applied the
    // send may read COMPLETED, so the wait is for the failure to be counted.
    let id = id_of(&created);
    let s = meta
        .wait_status(&id, |s| s["pending_count"] == 0 && s["failed_count"] == 1)
        .await;
    assert_eq!(s["status"], "PARTIAL");
    assert_eq!(s["failed_count"], 1);
    meta.wait_suppression(&people[0], |e| e.is_some()).await;
    let entry = meta.suppression_of(&people[0]).await.unwrap();
    assert_eq!(entry["source"], "error_131050");
    assert_eq!(meta.accepted_for(&people[0]), 1);

    meta.app.clock.advance_ms(10_000);
    let (_, created) = meta.send_bulk(&welcome(NUMBER_250, &people)).await;
    assert_eq!(created["suppressed_recipients"], 1);
    let s = meta.wait_finished(&id_of(&created)).await;
    assert_eq!(s["status"], "COMPLETED");
    assert_eq!(meta.accepted_for(&people[0]), 1, "never sent again");
    assert_eq!(meta.accepted_for(&people[1]), 2);
}

#[actix_web::test]
async fn a_stop_arriving_before_dispatch_stops_that_message_and_nothing_else() {
    let meta = spawn_with_meta().await;
    let people = phones(0, 3);
    let mut body = welcome(NUMBER_250, &people);
    body["scheduled_at"] = json!("2026-01-01T01:00:00Z");
    let (status, created) = meta.send_bulk(&body).await;
    assert_eq!(status, 202);
    let id = id_of(&created);
    // An unrelated UTILITY send scheduled alike is not touched by a marketing opt-out.
    let mut utility = order_update(&people[1..2]);
    utility["scheduled_at"] = json!("2026-01-01T01:00:00Z");
    let (_, utility_created) = meta.send_bulk(&utility).await;
    let utility_id = id_of(&utility_created);
    meta.sim
        .send_inbound_text(NUMBER_250, &people[1], "STOP")
        .unwrap();
    let s = meta.wait_status(&id, |s| s["suppressed_count"] == 1).await;
    assert_eq!(s["pending_count"], 2);
    assert_eq!(s["status"], "QUEUED");
    assert_counters_add_up(&s);
    let m = meta.message_page(&id, "?status=suppressed").await;
    assert_eq!(m["results"][0]["recipient_phone"], people[1]);
    assert_eq!(
        m["results"][0]["error_message"],
        "suppressed (inbound_keyword): the user wrote \"STOP\""
    );

    meta.app.clock.advance_ms(HOUR_MS + 1_000);
    let s = meta.wait_finished(&id).await;
    assert_eq!(s["status"], "COMPLETED");
    assert_eq!(s["sent_count"], 2);
    assert_eq!(s["suppressed_count"], 1);
    assert_counters_add_up(&s);
    let u = meta.wait_finished(&utility_id).await;
    assert_eq!(u["suppressed_count"], 0);
    assert_eq!(meta.accepted_for(&people[0]), 1);
    assert_eq!(
        meta.accepted_for(&people[1]),
        1,
        "only the utility message reached Meta"
    );
    assert_eq!(meta.accepted_for(&people[2]), 1);
}

/// A `user_preferences` notification for `wa_id` at unix second `at`.
fn preference(wa_id: &str, value: &str, at: i64) -> Value {
    json!({"object": "whatsapp_business_account", "entry": [{"id": WABA_250, "time": at,
        "changes": [{"field": "user_preferences", "value": {"messaging_product": "whatsapp",
            "user_preferences": [{"wa_id": wa_id, "detail": "x", "category": "marketing_messages",
                                  "value": value, "timestamp": at}]}}]}]})
}

#[actix_web::test]
async fn duplicated_and_reordered_signals_are_ordered_by_their_own_time() {
    let meta = spawn_with_meta().await;
    let phone = &phones(0, 1)[0];
    let wa_id = &phone[1..];
    let t0 = START_MS / 1000;
    let suppressed = |entry: Option<Value>| entry.is_some();

    // A resume at t0+200 arrives first; the older stop (t0+100) arrives after it: no effect.
    meta.notify_signed(&preference(wa_id, "resume", t0 + 200))
        .await;
    meta.notify_signed(&preference(wa_id, "stop", t0 + 100))
        .await;
    assert!(!suppressed(meta.suppression_of(phone).await));
    // A newer stop suppresses, and its duplicate changes nothing.
    meta.notify_signed(&preference(wa_id, "stop", t0 + 300))
        .await;
    meta.notify_signed(&preference(wa_id, "stop", t0 + 300))
        .await;
    let list = meta.suppressions("").await;
    assert_eq!(list["count"], 1);
    let created_at = list["results"][0]["created_at"].clone();
    // A resume older than that stop (delivered late) does not lift it.
    meta.notify_signed(&preference(wa_id, "resume", t0 + 250))
        .await;
    assert!(suppressed(meta.suppression_of(phone).await));
    // Nor does an old keyword text; a newer one does.
    let text = |body: &str, at: i64| {
        json!({"object": "whatsapp_business_account", "entry": [{"id": WABA_250, "changes": [{
            "field": "messages", "value": {"messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "12025550101", "phone_number_id": NUMBER_250},
            "messages": [{"from": wa_id, "id": format!("wamid.IN{at}"), "timestamp": at.to_string(),
                          "type": "text", "text": {"body": body}}]}}]}]})
    };
    meta.notify_signed(&text("start", t0 + 299)).await;
    assert!(suppressed(meta.suppression_of(phone).await));
    meta.app.clock.advance_ms(10_000);
    meta.notify_signed(&text("start", t0 + 301)).await;
    assert!(!suppressed(meta.suppression_of(phone).await));
    // Stopped again later: a new suppression, dated now.
    meta.notify_signed(&text("stop", t0 + 400)).await;
    let entry = meta.suppression_of(phone).await.unwrap();
    assert_eq!(entry["source"], "inbound_keyword");
    assert_ne!(entry["created_at"], created_at);
    // A hand-made lift orders later signals as well: a stop older than it is stale.
    meta.app.clock.set(START_MS + 1_000_000);
    let res = meta
        .app
        .client
        .delete(format!("{}{SUPPRESSIONS}%2B{wa_id}/", meta.app.address))
        .header("X-API-Key", &meta.api_key)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    let now_s = meta.app.clock.now_ms() / 1000;
    meta.notify_signed(&text("stop", now_s - 5)).await;
    assert_eq!(meta.suppressions("").await["count"], 0);
    assert!(!suppressed(meta.suppression_of(phone).await));
    meta.notify_signed(&text("stop", now_s + 5)).await;
    assert!(suppressed(meta.suppression_of(phone).await));
}

#[actix_web::test]
async fn a_stop_arriving_while_a_send_runs_stops_its_undispatched_message() {
    // The number is capped at 1 message per second (real time), so the send is still running,
    // with its recipients loaded by its actor, when the STOP arrives.
    let meta = spawn_with_meta().await;
    let mut conn = meta.app.db.get().unwrap();
    mindo_bulk::storage::accounts::set_number_override(
        &mut conn,
        NUMBER_250,
        &mindo_bulk::storage::accounts::NumberOverride {
            throughput_mps: Some(Some(1)),
            paused: None,
        },
        meta.app.clock.now_ms(),
    )
    .unwrap();
    drop(conn);
    let people = phones(0, 4);
    let (_, created) = meta.send_bulk(&welcome(NUMBER_250, &people)).await;
    let id = id_of(&created);
    meta.wait_status(&id, |s| s["sent_count"].as_u64() >= Some(1))
        .await;
    let last = &people[3];
    meta.sim
        .send_inbound_text(NUMBER_250, last, "stop")
        .unwrap();
    let s = meta.wait_status(&id, |s| s["suppressed_count"] == 1).await;
    assert_counters_add_up(&s);
    let s = meta.wait_finished(&id).await;
    assert_eq!(s["status"], "COMPLETED");
    assert_eq!(s["sent_count"], 3);
    assert_eq!(s["suppressed_count"], 1);
    assert_counters_add_up(&s);
    assert_eq!(meta.accepted_for(last), 0, "never dispatched");
    assert_eq!(meta.stats().accepted_total, 3);
    let m = meta.message_page(&id, "?status=suppressed").await;
    assert_eq!(m["results"][0]["recipient_phone"], *last);
}

#[actix_web::test]
async fn a_list_much_longer_than_the_send_is_probed_and_still_honoured() {
    // 40 listed, 2 recipients: on SQLite the list is probed instead of read whole.
    let meta = spawn_with_meta().await;
    let listed = phones(0, 40);
    meta.suppress(&json!({"phones": listed})).await;
    let recipients = vec![listed[7].clone(), phones(100, 1)[0].clone()];
    let (status, created) = meta.send_bulk(&welcome(NUMBER_250, &recipients)).await;
    assert_eq!(status, 202, "{created}");
    assert_eq!(created["suppressed_recipients"], 1);
    assert_eq!(created["quota_info"]["quota_needed"], 1);
    let (_, utility) = meta.send_bulk(&order_update(&recipients)).await;
    assert_eq!(utility["suppressed_recipients"], 0);
}

#[actix_web::test]
async fn the_sandbox_world_has_a_user_who_stopped_marketing() {
    let meta = spawn_with_meta().await;
    let opted_out = "+14155550150".to_owned();
    let (status, created) = meta
        .send_bulk(&welcome(NUMBER_250, std::slice::from_ref(&opted_out)))
        .await;
    assert_eq!(status, 202, "{created}");
    let s = meta.wait_finished(&id_of(&created)).await;
    assert_eq!(s["failed_count"], 1);
    let failed = meta.message_page(&id_of(&created), "?status=failed").await;
    assert_eq!(failed["results"][0]["error_code"], 131050);
    meta.wait_suppression(&opted_out, |e| e.is_some()).await;
}
