//! `POST send-bulk`: validation, idempotency, dry runs, tenant isolation.

use mindo_bulk::clock::Clock;
use serde_json::{json, Value};

use crate::meta::{phones, spawn_with_meta, welcome, MetaApp, NUMBER_10K, NUMBER_250};

async fn error_of(meta: &MetaApp, body: &Value) -> (u16, Value) {
    let (status, body) = meta.send_bulk(body).await;
    assert!(
        body["detail"].is_string() && body["code"].is_string(),
        "{body:#}"
    );
    (status, body)
}

#[actix_web::test]
async fn every_validation_error_has_its_documented_code() {
    let meta = spawn_with_meta().await;
    let ok = welcome(NUMBER_10K, &phones(0, 2));

    let mut unknown_number = ok.clone();
    unknown_number["phone_number_id"] = json!("999999");
    let (status, body) = error_of(&meta, &unknown_number).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (404, Some("phone_number_not_found"))
    );

    let mut unknown_template = ok.clone();
    unknown_template["template_name"] = json!("nope");
    let (status, body) = error_of(&meta, &unknown_template).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (404, Some("template_not_found"))
    );

    let mut wrong_language = ok.clone();
    wrong_language["language"] = json!("pt_BR");
    let (status, body) = error_of(&meta, &wrong_language).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (404, Some("template_not_found"))
    );

    let mut paused = ok.clone();
    paused["template_name"] = json!("seasonal_sale");
    let (status, body) = error_of(&meta, &paused).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (400, Some("template_not_approved"))
    );

    let mut empty = ok.clone();
    empty["recipients"] = json!([]);
    let (status, body) = error_of(&meta, &empty).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (400, Some("validation_error"))
    );

    for malformed in [
        json!({"template_name": "welcome_message", "recipients": []}),
        json!({"phone_number_id": 5, "template_name": "welcome_message", "recipients": []}),
        json!({"phone_number_id": NUMBER_10K, "template_name": "welcome_message", "recipients": "x"}),
        json!([1, 2, 3]),
    ] {
        let (status, body) = error_of(&meta, &malformed).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (400, Some("validation_error")),
            "{malformed}"
        );
    }
    let res = meta
        .app
        .client
        .post(format!(
            "{}/api/v1/meta-templates/send-bulk/",
            meta.app.address
        ))
        .header("X-API-Key", &meta.api_key)
        .header("Content-Type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["code"], "validation_error");

    let bad = json!({
        "phone_number_id": NUMBER_10K, "template_name": "welcome_message", "language": "es",
        "recipients": [
            {"phone": "+5491130000000", "variables": {"customer_name": "Ana"}},
            {"phone": "+12", "variables": {"customer_name": "Ana"}},
            {"phone": "+5491130000001", "variables": {}},
            {"phone": "+5491130000002", "variables": {"customer_name": "Ana", "extra": "x"}},
            {"phone": "+5491130000003", "variables": {"customer_name": 5}},
            {"variables": {"customer_name": "Ana"}},
            {"phone": "+5491130000004", "variables": {"customer_name": "Ana"}, "button_variables": {"button_0": "x"}},
            "just a string"
        ]
    });
    let (status, body) = error_of(&meta, &bad).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (400, Some("invalid_recipients")),
        "{body:#}"
    );
    let errors = body["errors"].as_array().unwrap();
    let at = |i: u64, field: &str| {
        errors
            .iter()
            .any(|e| e["index"] == i && e["field"].as_str().is_some_and(|f| f.starts_with(field)))
    };
    assert!(at(1, "phone"), "{errors:#?}");
    assert_eq!(
        errors.iter().find(|e| e["index"] == 1).unwrap()["value"],
        "+12"
    );
    assert!(at(2, "variables.customer_name"), "{errors:#?}");
    assert!(at(3, "variables.extra"), "{errors:#?}");
    assert!(at(4, "variables.customer_name"), "{errors:#?}");
    assert!(at(5, "phone"), "{errors:#?}");
    assert!(at(6, "button_variables.button_0"), "{errors:#?}");
    assert!(at(7, "recipient"), "{errors:#?}");
    assert!(!errors.iter().any(|e| e["index"] == 0));

    // Nothing was stored by any of the refused requests.
    let list: Value = meta
        .app
        .get("/api/v1/meta-templates/bulk-sends/", Some(&meta.api_key))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(list["count"], 0);

    // skip_invalid drops them instead.
    let mut skipping = bad.clone();
    skipping["skip_invalid"] = json!(true);
    let (status, body) = meta.send_bulk(&skipping).await;
    assert_eq!(status, 202, "{body:#}");
    assert_eq!(body["total_recipients"], 8);
    assert_eq!(body["unique_recipients"], 1);
    assert_eq!(body["invalid_recipients"], 7);
}

#[actix_web::test]
async fn more_than_a_hundred_problems_are_truncated() {
    let meta = spawn_with_meta().await;
    let body = json!({
        "phone_number_id": NUMBER_10K, "template_name": "welcome_message",
        "recipients": (0..150).map(|_| json!({"phone": "nope", "variables": {"customer_name": "A"}})).collect::<Vec<_>>(),
    });
    let (status, body) = error_of(&meta, &body).await;
    assert_eq!(status, 400);
    assert_eq!(body["errors"].as_array().unwrap().len(), 100);
    assert_eq!(body["errors_truncated"], true);
}

#[actix_web::test]
async fn too_many_recipients_are_refused() {
    let meta = crate::meta::spawn_with_meta_tweaked(|_| {}, |c| c.max_recipients = 3).await;
    let (status, body) = error_of(&meta, &welcome(NUMBER_10K, &phones(0, 4))).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (400, Some("validation_error"))
    );
}

#[actix_web::test]
async fn an_idempotency_key_replays_and_refuses_reuse() {
    let meta = spawn_with_meta().await;
    let body = welcome(NUMBER_10K, &phones(0, 3));
    let post = |body: Value, key: &'static str| {
        let meta = &meta;
        async move {
            let res = meta
                .app
                .client
                .post(format!(
                    "{}/api/v1/meta-templates/send-bulk/",
                    meta.app.address
                ))
                .header("X-API-Key", &meta.api_key)
                .header("Idempotency-Key", key)
                .json(&body)
                .send()
                .await
                .unwrap();
            (res.status().as_u16(), res.json::<Value>().await.unwrap())
        }
    };
    let (s1, b1) = post(body.clone(), "k-1").await;
    let (s2, b2) = post(body.clone(), "k-1").await;
    assert_eq!((s1, s2), (202, 202));
    assert_eq!(b1, b2);
    let other = welcome(NUMBER_10K, &phones(10, 3));
    let (s3, b3) = post(other, "k-1").await;
    assert_eq!(
        (s3, b3["code"].as_str()),
        (422, Some("idempotency_key_reused"))
    );
    let list: Value = meta
        .app
        .get("/api/v1/meta-templates/bulk-sends/", Some(&meta.api_key))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(list["count"], 1);

    // A refused request releases its key.
    let mut bad = body.clone();
    bad["template_name"] = json!("nope");
    let (s4, _) = post(bad, "k-2").await;
    assert_eq!(s4, 404);
    let (s5, _) = post(body.clone(), "k-2").await;
    assert_eq!(s5, 202);

    // A request still in progress makes its twin wait.
    let now = meta.app.clock.now_ms();
    let tenant = meta.tenant_id;
    let hash = {
        use sha2::{Digest, Sha256};
        hex::encode(Sha256::digest(serde_json::to_vec(&body).unwrap()))
    };
    mindo_bulk::storage::idempotency::claim(
        &mut meta.app.db.get().unwrap(),
        tenant,
        "k-3",
        &hash,
        now,
    )
    .unwrap();
    let (s6, b6) = post(body, "k-3").await;
    assert_eq!(
        (s6, b6["code"].as_str()),
        (409, Some("idempotency_in_progress"))
    );
}

#[actix_web::test]
async fn a_dry_run_previews_and_stores_nothing() {
    let meta = spawn_with_meta().await;
    let mut body = json!({
        "phone_number_id": NUMBER_10K, "template_name": "order_update", "language": "es",
        "dry_run": true,
        "recipients": (0..7).map(|i| json!({"phone": format!("+549113000000{i}"),
            "variables": {"1": "Ana", "2": format!("A-{i}")},
            "button_variables": {"button_0": format!("trk{i}")}})).collect::<Vec<_>>(),
    });
    let (status, res) = meta.send_bulk(&body).await;
    assert_eq!(status, 200, "{res:#}");
    assert_eq!(res["unique_recipients"], 7);
    let preview = res["preview"].as_array().unwrap();
    assert_eq!(preview.len(), 5);
    assert_eq!(preview[0]["phone"], "+5491130000000");
    let components = preview[0]["components"].as_array().unwrap();
    assert!(components.iter().any(|c| c["type"] == "body"
        && c["parameters"]
            == json!([{"type": "text", "text": "Ana"}, {"type": "text", "text": "A-0"}])));
    assert!(components
        .iter()
        .any(|c| c["type"] == "button" && c["index"] == "0"));
    let list: Value = meta
        .app
        .get("/api/v1/meta-templates/bulk-sends/", Some(&meta.api_key))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(list["count"], 0);
    assert_eq!(meta.stats().accepted_total, 0);
    body["dry_run"] = json!(false);
    let (status, _) = meta.send_bulk(&body).await;
    assert_eq!(status, 202);
}

#[actix_web::test]
async fn quota_info_counts_recipients_already_in_the_window_as_free() {
    let meta = spawn_with_meta().await;
    let (_, first) = meta.send_bulk(&welcome(NUMBER_250, &phones(0, 10))).await;
    let id = first["bulk_send_id"].as_str().unwrap();
    meta.wait_status(id, |s| s["status"] == "COMPLETED").await;
    meta.app.clock.advance_ms(10_000);
    // 5 of these were messaged already: they cost nothing.
    let (status, second) = meta.send_bulk(&welcome(NUMBER_250, &phones(5, 10))).await;
    assert_eq!(status, 202);
    assert_eq!(
        second["quota_info"],
        json!({"can_send": true, "quota_needed": 5, "quota_available": 240,
               "quota_total": 250, "tier": "TIER_250"})
    );
}

#[actix_web::test]
async fn scheduled_at_must_be_in_the_next_thirty_days() {
    let meta = spawn_with_meta().await;
    for (when, ok) in [
        ("2025-12-31T23:00:00Z", false),
        ("2026-03-01T00:00:00Z", false),
        ("tomorrow", false),
        ("2026-01-02T00:00:00Z", true),
    ] {
        let mut body = welcome(NUMBER_10K, &phones(0, 1));
        body["scheduled_at"] = json!(when);
        let (status, res) = meta.send_bulk(&body).await;
        if ok {
            assert_eq!(status, 202, "{when}: {res:#}");
            assert_eq!(res["scheduled_at"], when);
        } else {
            assert_eq!(
                (status, res["code"].as_str()),
                (400, Some("validation_error")),
                "{when}"
            );
        }
    }
}

#[actix_web::test]
async fn tenants_never_see_each_others_sends() {
    let meta = spawn_with_meta().await;
    let (_, body) = meta.send_bulk(&welcome(NUMBER_10K, &phones(0, 2))).await;
    let id = body["bulk_send_id"].as_str().unwrap().to_owned();
    let (_, other_key) = meta.app.create_tenant("Globex");

    for path in [
        format!("/api/v1/meta-templates/bulk-sends/{id}/"),
        format!("/api/v1/meta-templates/bulk-sends/{id}/messages/"),
        format!("/api/v1/meta-templates/bulk-sends/{id}/messages/export/"),
        "/api/v1/meta-templates/bulk-sends/not-a-uuid/".to_owned(),
    ] {
        let res = meta.app.get(&path, Some(&other_key)).await;
        assert_eq!(res.status(), 404, "{path}");
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["code"], "not_found");
    }
    for action in ["cancel", "pause", "resume"] {
        let res = meta
            .app
            .post(
                &format!("/api/v1/meta-templates/bulk-sends/{id}/{action}/"),
                &other_key,
                &json!({}),
            )
            .await;
        assert_eq!(res.status(), 404, "{action}");
    }
    let list: Value = meta
        .app
        .get("/api/v1/meta-templates/bulk-sends/", Some(&other_key))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(list["count"], 0);
    // Another tenant cannot send from this tenant's number either.
    let res = meta
        .app
        .post(
            "/api/v1/meta-templates/send-bulk/",
            &other_key,
            &welcome(NUMBER_10K, &phones(0, 1)),
        )
        .await;
    assert_eq!(res.status(), 404);
    let business: Value = meta
        .app
        .get("/api/v1/business-accounts/", Some(&other_key))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(business["businessAccounts"], json!([]));
    // And every endpoint wants a key.
    let res = meta
        .app
        .get(&format!("/api/v1/meta-templates/bulk-sends/{id}/"), None)
        .await;
    assert_eq!(res.status(), 401);
}

#[actix_web::test]
async fn an_unlimited_number_reports_no_quota_limit() {
    let meta = spawn_with_meta().await;
    let (status, body) = meta
        .send_bulk(&welcome(crate::meta::NUMBER_UNLIMITED, &phones(0, 3)))
        .await;
    assert_eq!(status, 202, "{body:#}");
    assert_eq!(
        body["quota_info"],
        json!({"can_send": true, "quota_needed": 3, "quota_available": null,
               "quota_total": null, "tier": "TIER_UNLIMITED"})
    );
    assert_eq!(
        body["whatsapp_phone_number"]["messaging_limit_tier"],
        "TIER_UNLIMITED"
    );
}

/// Starts a send-bulk request whose body never finishes arriving; the connection stays open
/// until the returned stream is dropped.
fn stalled_create(app: &crate::helpers::TestApp, api_key: &str) -> std::net::TcpStream {
    use std::io::Write;
    let host = app.address.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(host).unwrap();
    write!(
        stream,
        "POST /api/v1/meta-templates/send-bulk/ HTTP/1.1\r\nHost: {host}\r\nX-API-Key: {api_key}\r\n\
         Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{{\"recipients\": ["
    )
    .unwrap();
    stream
}

/// Waits (with a deadline) until the gate shows `in_flight` creates holding a slot and
/// `waiting` in its queue.
async fn gate_reaches(app: &crate::helpers::TestApp, in_flight: usize, waiting: usize) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while (app.create_gate.in_flight(), app.create_gate.waiting()) != (in_flight, waiting) {
        assert!(
            std::time::Instant::now() < deadline,
            "the gate shows {} in flight and {} waiting",
            app.create_gate.in_flight(),
            app.create_gate.waiting()
        );
        actix_web::rt::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}

#[actix_web::test]
async fn creates_beyond_the_slots_and_their_queue_get_503_with_retry_after() {
    use mindo_bulk::http::create_gate::QUEUE_PER_SLOT;
    let meta = crate::meta::spawn_with_meta_tweaked(|_| {}, |c| c.max_concurrent_creates = 1).await;
    let app = &meta.app;

    // One create holds the only slot while its body trickles in; the queue fills behind it.
    let holder = stalled_create(app, &meta.api_key);
    gate_reaches(app, 1, 0).await;
    let queued: Vec<_> = (0..QUEUE_PER_SLOT)
        .map(|_| stalled_create(app, &meta.api_key))
        .collect();
    gate_reaches(app, 1, QUEUE_PER_SLOT).await;

    let body = welcome(NUMBER_10K, &phones(900, 2));
    let res = app
        .post("/api/v1/meta-templates/send-bulk/", &meta.api_key, &body)
        .await;
    assert_eq!(res.status(), 503);
    assert_eq!(res.headers()["retry-after"], "2");
    let refused: Value = res.json().await.unwrap();
    assert_eq!(refused["code"], "too_many_creates", "{refused}");
    let list = app
        .get("/api/v1/meta-templates/bulk-sends/", Some(&meta.api_key))
        .await;
    assert_eq!(
        list.json::<Value>().await.unwrap()["count"],
        0,
        "nothing was created"
    );

    // Once the stalled requests go away, their slot and places are free again.
    drop(holder);
    drop(queued);
    gate_reaches(app, 0, 0).await;
    let (status, created) = meta.send_bulk(&body).await;
    assert_eq!(status, 202, "{created}");
}
