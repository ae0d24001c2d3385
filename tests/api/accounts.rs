//! WABA sync (the Graph client against the simulator), `waba add|sync`, `number set`, and
//! `GET /api/v1/business-accounts/`.

use std::sync::Arc;

use mindo_bulk::clock::ManualClock;
use mindo_bulk::simulator::{SimConfig, Simulator, TemplateConfig};
use serde_json::{json, Value};

use crate::helpers::{run_cli, spawn_app, START_MS};
use crate::meta::{phones, spawn_with_meta, welcome, NUMBER_250, NUMBER_UNLIMITED};

#[actix_web::test]
async fn business_accounts_show_numbers_quota_and_approved_templates() {
    let meta = spawn_with_meta().await;
    let (_, res) = meta.send_bulk(&welcome(NUMBER_250, &phones(0, 10))).await;
    let id = res["bulk_send_id"].as_str().unwrap().to_owned();
    meta.wait_status(&id, |s| s["status"] == "COMPLETED").await;

    let body: Value = meta
        .app
        .get("/api/v1/business-accounts/", Some(&meta.api_key))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(body["companyName"], "Mindo Software");
    assert_eq!(body["apiKeyName"], "Default");
    let accounts = body["businessAccounts"].as_array().unwrap();
    assert_eq!(accounts.len(), 3);
    let starter = &accounts[0];
    assert_eq!(starter["wabaId"], "102938475610001");
    assert_eq!(starter["businessName"], "Mindo Demo Starter");
    assert!(starter["businessAccountId"].is_i64());
    let number = &starter["phoneNumbers"][0];
    assert_eq!(number["phoneNumberId"], NUMBER_250);
    assert_eq!(number["displayPhoneNumber"], "+1 202-555-0101");
    assert_eq!(number["isPrimary"], true);
    assert_eq!(number["messagingLimitTier"], "TIER_250");
    assert_eq!(number["qualityRating"], "GREEN");
    assert_eq!(number["throughputMps"], 80);
    assert_eq!(
        number["quota"],
        json!({"dailyLimit": 250, "uniqueNumbersSent24h": 10, "remaining": 240,
               "usagePercentage": 4.0, "canSend": true})
    );
    let names: Vec<(&str, &str)> = starter["templates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t["name"].as_str().unwrap(), t["language"].as_str().unwrap()))
        .collect();
    assert!(names.contains(&("welcome_message", "es")));
    assert!(names.contains(&("hello_world", "en_US")));
    assert!(
        !names.iter().any(|(n, _)| *n == "seasonal_sale"),
        "PAUSED is not listed"
    );
    assert!(
        !names.iter().any(|(n, _)| *n == "account_alert"),
        "REJECTED is not listed"
    );
    let welcome_es = starter["templates"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "welcome_message" && t["language"] == "es")
        .unwrap();
    assert_eq!(welcome_es["category"], "MARKETING");
    assert_eq!(welcome_es["status"], "APPROVED");
    assert_eq!(
        welcome_es["variables"],
        json!([{"name": "customer_name", "type": "TEXT", "position": 1,
                "isRequired": true, "component": "BODY"}])
    );
    let unlimited = accounts
        .iter()
        .flat_map(|a| a["phoneNumbers"].as_array().unwrap())
        .find(|n| n["phoneNumberId"] == NUMBER_UNLIMITED)
        .unwrap();
    assert_eq!(unlimited["messagingLimitTier"], "TIER_UNLIMITED");
    assert_eq!(unlimited["throughputMps"], 1000);
    assert_eq!(unlimited["quota"]["dailyLimit"], Value::Null);
    assert_eq!(unlimited["quota"]["canSend"], true);
}

/// A simulator whose one WABA has 130 templates (two pages of 100) and a portfolio.
fn big_world() -> SimConfig {
    let mut world = SimConfig::sandbox();
    world.wabas.truncate(1);
    world.wabas[0].portfolio_id = Some("5550001".into());
    let base = world.wabas[0].templates[0].clone();
    let have = world.wabas[0].templates.len();
    for i in 0..130 - have {
        world.wabas[0].templates.push(TemplateConfig {
            id: format!("99{i:06}"),
            name: format!("bulk_template_{i}"),
            ..base.clone()
        });
    }
    world
}

#[actix_web::test]
async fn waba_add_and_sync_follow_paging_and_store_everything() {
    let world = big_world();
    let total = world.wabas[0].templates.len();
    assert_eq!(total, 130);
    let approved = world.wabas[0]
        .templates
        .iter()
        .filter(|t| t.status == "APPROVED")
        .count();
    let clock = ManualClock::new(START_MS);
    let sim = Simulator::start(world, "127.0.0.1:0", Arc::new(clock))
        .await
        .unwrap();
    let app = spawn_app().await;
    let (tenant, key) = app.create_tenant("Acme");
    let url = app.database.url().to_owned();
    let graph = sim.base_url().to_owned();
    let cli = move |args: Vec<String>| {
        let (url, graph) = (url.clone(), graph.clone());
        actix_web::rt::task::spawn_blocking(move || {
            let output = std::process::Command::new(env!("CARGO_BIN_EXE_mindo-bulk"))
                .args(&args)
                .env("MINDO_DATABASE_URL", &url)
                .env("MINDO_GRAPH_URL", &graph)
                .output()
                .unwrap();
            (
                output.status.code().unwrap_or(-1),
                String::from_utf8_lossy(&output.stdout).into_owned(),
                String::from_utf8_lossy(&output.stderr).into_owned(),
            )
        })
    };
    let args = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let (code, out, err) = cli(args(&[
        "waba",
        "add",
        "--tenant",
        &tenant.to_string(),
        "--waba-id",
        "102938475610001",
        "--access-token",
        "sandbox-token",
        "--json",
    ]))
    .await
    .unwrap();
    assert_eq!(code, 0, "{err}");
    let report: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["templates"], 130);
    assert_eq!(report["phone_numbers"], 1);
    assert_eq!(
        report["portfolio_id"], "5550001",
        "read from owner_business_info"
    );

    let body: Value = app
        .get("/api/v1/business-accounts/", Some(&key))
        .await
        .json()
        .await
        .unwrap();
    let templates = body["businessAccounts"][0]["templates"].as_array().unwrap();
    // Every approved one, whatever page it came on.
    assert_eq!(templates.len(), approved);

    // A template paused at Meta is no longer listed after a sync.
    sim.set_template_status("102938475610001", "bulk_template_7", "es", "PAUSED")
        .unwrap();
    let (code, out, err) = cli(args(&["waba", "sync", "--json"])).await.unwrap();
    assert_eq!(code, 0, "{err}");
    let synced: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(synced["synced"].as_array().unwrap().len(), 1);
    let body: Value = app
        .get("/api/v1/business-accounts/", Some(&key))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        body["businessAccounts"][0]["templates"]
            .as_array()
            .unwrap()
            .len(),
        approved - 1
    );

    // The operator caps the number; the API shows it.
    let (code, out, err) = cli(args(&[
        "number",
        "set",
        "--phone-number-id",
        NUMBER_250,
        "--throughput-mps",
        "20",
        "--json",
    ]))
    .await
    .unwrap();
    assert_eq!(code, 0, "{err}");
    let set: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(set["throughput_mps"], 20);
    let body: Value = app
        .get("/api/v1/business-accounts/", Some(&key))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        body["businessAccounts"][0]["phoneNumbers"][0]["throughputMps"],
        20
    );
    let (code, _, _) = cli(args(&[
        "number",
        "set",
        "--phone-number-id",
        NUMBER_250,
        "--throughput-mps",
        "auto",
    ]))
    .await
    .unwrap();
    assert_eq!(code, 0);

    // Another tenant cannot take the WABA; a wrong token is Meta's 190.
    let (other, _) = app.create_tenant("Globex");
    let (code, _, err) = cli(args(&[
        "waba",
        "add",
        "--tenant",
        &other.to_string(),
        "--waba-id",
        "102938475610001",
        "--access-token",
        "sandbox-token",
    ]))
    .await
    .unwrap();
    assert_ne!(code, 0);
    assert!(err.contains("another tenant"), "{err}");
    let (code, _, err) = cli(args(&[
        "waba",
        "add",
        "--tenant",
        &other.to_string(),
        "--waba-id",
        "102938475610001",
        "--access-token",
        "wrong",
    ]))
    .await
    .unwrap();
    assert_ne!(code, 0);
    assert!(err.contains("190"), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
}

#[test]
fn number_set_validates_its_arguments() {
    let db = crate::helpers::TestDatabase::create();
    let (code, _, err) = run_cli(db.url(), &["number", "set", "--phone-number-id", "1"]);
    assert_ne!(code, 0);
    assert!(err.contains("nothing to set"), "{err}");
    let (code, _, err) = run_cli(
        db.url(),
        &[
            "number",
            "set",
            "--phone-number-id",
            "1",
            "--throughput-mps",
            "fast",
        ],
    );
    assert_ne!(code, 0);
    assert!(err.contains("auto"), "{err}");
    let (code, _, err) = run_cli(
        db.url(),
        &[
            "number",
            "set",
            "--phone-number-id",
            "1",
            "--paused",
            "true",
        ],
    );
    assert_ne!(code, 0);
    assert!(err.contains("no phone number"), "{err}");
}

#[actix_web::test]
async fn the_daemon_re_syncs_periodically() {
    let meta = crate::meta::spawn_with_meta_tweaked(|_| {}, |c| c.sync_interval_secs = 1).await;
    meta.sim
        .set_template_status(crate::meta::WABA_250, "order_update", "es", "PAUSED")
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let body: Value = meta
            .app
            .get("/api/v1/business-accounts/", Some(&meta.api_key))
            .await
            .json()
            .await
            .unwrap();
        let listed = body["businessAccounts"][0]["templates"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["name"] == "order_update" && t["language"] == "es");
        if !listed {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the re-sync never came"
        );
        actix_web::rt::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}
