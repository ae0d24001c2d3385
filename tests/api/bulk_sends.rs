//! Bulk sends end to end against the simulator.

use serde_json::{json, Value};

use crate::meta::{phones, spawn_with_meta, welcome, NUMBER_10K};

#[actix_web::test]
async fn a_send_completes_with_exact_counters_and_one_message_per_recipient() {
    let meta = spawn_with_meta().await;
    let mut list = phones(0, 20);
    // Duplicates after normalisation: the first occurrence wins.
    list.push("+54 9 11 3000-0000".into());
    list.push("0054 9 11 3000 0001".into());
    let (status, body) = meta.send_bulk(&welcome(NUMBER_10K, &list)).await;
    assert_eq!(status, 202, "{body:#}");
    assert_eq!(body["status"], "queued");
    assert_eq!(body["template_name"], "welcome_message");
    assert_eq!(body["total_recipients"], 22);
    assert_eq!(body["unique_recipients"], 20);
    assert_eq!(body["invalid_recipients"], 0);
    assert_eq!(body["scheduled_at"], Value::Null);
    assert_eq!(body["whatsapp_phone_number"]["phone_number_id"], NUMBER_10K);
    assert_eq!(
        body["whatsapp_phone_number"]["messaging_limit_tier"],
        "TIER_10000"
    );
    assert_eq!(
        body["quota_info"],
        json!({"can_send": true, "quota_needed": 20, "quota_available": 10000,
               "quota_total": 10000, "tier": "TIER_10000"})
    );
    assert!(body["estimated_time_minutes"].as_f64().unwrap() > 0.0);
    let id = body["bulk_send_id"].as_str().unwrap().to_owned();

    let done = meta
        .wait_status(&id, |s| {
            s["status"] == "COMPLETED" && s["delivered_count"] == 20
        })
        .await;
    assert_eq!(done["total_recipients"], 20);
    assert_eq!(done["sent_count"], 20);
    assert_eq!(done["failed_count"], 0);
    assert_eq!(done["pending_count"], 0);
    assert_eq!(done["cancelled_count"], 0);
    assert_eq!(done["progress_percentage"], 100.0);
    assert!(done["started_at"].is_string() && done["completed_at"].is_string());
    assert_eq!(done["created_by"]["name"], "Default");

    let stats = meta.stats();
    assert_eq!(stats.accepted_total, 20);
    assert_eq!(stats.recipients_accepted_more_than_once, 0);
    assert!(
        stats.refusals_by_code.is_empty(),
        "{:?}",
        stats.refusals_by_code
    );
}

#[actix_web::test]
async fn messages_page_in_recipient_order_with_absolute_links_and_filters() {
    let meta = spawn_with_meta().await;
    let list = phones(100, 25);
    let (_, body) = meta.send_bulk(&welcome(NUMBER_10K, &list)).await;
    let id = body["bulk_send_id"].as_str().unwrap().to_owned();
    meta.wait_status(&id, |s| s["delivered_count"] == 25).await;

    let path = format!("/api/v1/meta-templates/bulk-sends/{id}/messages/?page_size=10&page=2");
    let res = meta.app.get(&path, Some(&meta.api_key)).await;
    assert_eq!(res.status(), 200);
    let page: Value = res.json().await.unwrap();
    assert_eq!(page["count"], 25);
    let results = page["results"].as_array().unwrap();
    assert_eq!(results.len(), 10);
    assert_eq!(results[0]["recipient_phone"], list[10].as_str());
    assert_eq!(results[9]["recipient_phone"], list[19].as_str());
    let next = page["next"].as_str().unwrap();
    let previous = page["previous"].as_str().unwrap();
    assert!(
        next.starts_with("http://127.0.0.1:") && next.contains("page=3"),
        "{next}"
    );
    assert!(
        next.contains(&format!("/bulk-sends/{id}/messages/?")),
        "{next}"
    );
    assert!(
        previous.contains("page=1") && previous.contains("page_size=10"),
        "{previous}"
    );
    let row = &results[0];
    assert!(row["meta_message_id"]
        .as_str()
        .unwrap()
        .starts_with("wamid."));
    assert_eq!(row["variables_used"], json!({"customer_name": "Ana"}));
    assert_eq!(row["attempts"], 1);
    assert!(matches!(row["status"].as_str(), Some("delivered" | "read")));
    assert!(row["sent_at"].is_string() && row["delivered_at"].is_string());
    assert_eq!(row["error_code"], Value::Null);

    // The last page has no next.
    let res = meta
        .app
        .get(
            &format!("/api/v1/meta-templates/bulk-sends/{id}/messages/?page_size=10&page=3"),
            Some(&meta.api_key),
        )
        .await;
    let page: Value = res.json().await.unwrap();
    assert_eq!(page["results"].as_array().unwrap().len(), 5);
    assert_eq!(page["next"], Value::Null);

    // Status filter: exact match.
    let res = meta
        .app
        .get(
            &format!("/api/v1/meta-templates/bulk-sends/{id}/messages/?status=pending"),
            Some(&meta.api_key),
        )
        .await;
    let page: Value = res.json().await.unwrap();
    assert_eq!(page["count"], 0);

    for bad in ["page=0", "page_size=1001", "page_size=x", "status=weird"] {
        let res = meta
            .app
            .get(
                &format!("/api/v1/meta-templates/bulk-sends/{id}/messages/?{bad}"),
                Some(&meta.api_key),
            )
            .await;
        assert_eq!(res.status(), 400, "{bad}");
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["code"], "validation_error", "{bad}");
    }

    // CSV export: a header and one row per message, in order.
    let res = meta
        .app
        .get(
            &format!("/api/v1/meta-templates/bulk-sends/{id}/messages/export/"),
            Some(&meta.api_key),
        )
        .await;
    assert_eq!(res.status(), 200);
    assert!(res.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/csv"));
    let csv = res.text().await.unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 26);
    assert!(lines[0].starts_with("id,recipient_phone,status"));
    assert!(lines[1].contains(&list[0]));
    assert!(lines[25].contains(&list[24]));
}

#[actix_web::test]
async fn the_list_is_newest_first_and_filters() {
    let meta = spawn_with_meta().await;
    let (_, first) = meta.send_bulk(&welcome(NUMBER_10K, &phones(200, 2))).await;
    meta.app.clock.advance_ms(1_000);
    let (_, second) = meta.send_bulk(&welcome(NUMBER_10K, &phones(300, 2))).await;
    for b in [&first, &second] {
        meta.wait_status(b["bulk_send_id"].as_str().unwrap(), |s| {
            s["status"] == "COMPLETED"
        })
        .await;
    }
    let res = meta
        .app
        .get("/api/v1/meta-templates/bulk-sends/", Some(&meta.api_key))
        .await;
    assert_eq!(res.status(), 200);
    let page: Value = res.json().await.unwrap();
    assert_eq!(page["count"], 2);
    let results = page["results"].as_array().unwrap();
    assert_eq!(results[0]["id"], second["bulk_send_id"]);
    assert_eq!(results[1]["id"], first["bulk_send_id"]);
    let item = &results[0];
    assert!(item.get("estimated_time_minutes").is_none());
    assert!(item.get("started_at").is_none());
    assert!(item.get("created_by").is_none());
    assert_eq!(item["template"]["template_name"], "welcome_message");

    for (query, count) in [
        ("status=COMPLETED", 2),
        ("status=FAILED", 0),
        ("template_name=welcome_message", 2),
        ("template_name=order_update", 0),
        ("created_after=2026-01-01&created_before=2026-01-01", 2),
        ("created_after=2026-01-02", 0),
        ("created_before=2025-12-31", 0),
        ("page_size=1", 2),
    ] {
        let res = meta
            .app
            .get(
                &format!("/api/v1/meta-templates/bulk-sends/?{query}"),
                Some(&meta.api_key),
            )
            .await;
        assert_eq!(res.status(), 200, "{query}");
        let page: Value = res.json().await.unwrap();
        assert_eq!(page["count"], count, "{query}");
    }
    let template_id = item["template"]["id"].as_i64().unwrap();
    let res = meta
        .app
        .get(
            &format!("/api/v1/meta-templates/bulk-sends/?template={template_id}"),
            Some(&meta.api_key),
        )
        .await;
    let page: Value = res.json().await.unwrap();
    assert_eq!(page["count"], 2);
    for bad in [
        "status=completed",
        "template=abc",
        "created_after=01-01-2026",
    ] {
        let res = meta
            .app
            .get(
                &format!("/api/v1/meta-templates/bulk-sends/?{bad}"),
                Some(&meta.api_key),
            )
            .await;
        assert_eq!(res.status(), 400, "{bad}");
    }
}
