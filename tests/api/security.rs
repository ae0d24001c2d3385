//! Security (issue #15): callbacks only to the public internet, secrets encrypted at rest
//! (rotation, a wrong key), read-only and expiring keys, per-tenant request limits.
//!
//! No test sends anything beyond 127.0.0.1: refused addresses are refused before any
//! connection, and accepted public URLs are only checked with `dry_run` (nothing persisted,
//! nothing delivered).

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use diesel::prelude::*;
use mindo_bulk::clock::{Clock, SystemClock};
use mindo_bulk::domain::secret_box::SecretKey;
use mindo_bulk::startup::Application;
use mindo_bulk::storage::schema::{business_accounts, tenants};
use serde_json::{json, Value};

use crate::helpers::{json, spawn_app_on, spawn_app_with, test_config, TestApp};
use crate::meta::{phones, spawn_with_meta_tweaked, welcome, MetaApp, NUMBER_10K};

/// The token the simulator's sandbox world accepts (what `waba add` stored).
const SANDBOX_TOKEN: &str = "sandbox-token";

/// Runs `mindo-bulk` on `app`'s database with extra environment; (status, stdout, stderr).
async fn cli(app: &TestApp, args: &[&str], env: &[(&str, String)]) -> (i32, String, String) {
    let url = app.database.url().to_owned();
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    actix_web::rt::task::spawn_blocking(move || {
        let output = Command::new(env!("CARGO_BIN_EXE_mindo-bulk"))
            .args(&args)
            .env("MINDO_DATABASE_URL", url)
            .env_remove("MINDO_CONFIG")
            .env_remove("MINDO_SECRET_KEY")
            .env_remove("MINDO_SECRET_KEY_FILE")
            .envs(env)
            .output()
            .expect("the binary runs");
        (
            output.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    })
    .await
    .unwrap()
}

// ---------------------------------------------------------------------------------------
// Callbacks reach only the public internet
// ---------------------------------------------------------------------------------------

async fn submit_with_callback(meta: &MetaApp, url: &str, dry_run: bool) -> (u16, Value) {
    let mut body = welcome(NUMBER_10K, &phones(0, 1));
    body["callback_url"] = json!(url);
    body["dry_run"] = json!(dry_run);
    meta.send_bulk(&body).await
}

#[actix_web::test]
async fn callback_urls_outside_the_public_internet_are_refused_at_submission() {
    let meta = spawn_with_meta_tweaked(
        |_| {},
        |c| {
            c.callback_allow_loopback = false;
            c.callback_allowed_networks =
                mindo_bulk::domain::egress::parse_networks("10.20.0.0/16").unwrap();
        },
    )
    .await;
    let refused = [
        ("https://0.0.0.0:9/x", "an unspecified address"),
        ("https://[::]/x", "an unspecified address"),
        ("https://127.0.0.1/x", "a loopback address"),
        ("http://127.0.0.1:8080/x", "a loopback address"),
        ("https://0x7f.1/x", "a loopback address"),
        ("https://2130706433/x", "a loopback address"),
        ("https://[::1]/x", "a loopback address"),
        ("https://[::ffff:127.0.0.1]/x", "a loopback address"),
        ("https://[::ffff:7f00:1]/x", "a loopback address"),
        ("https://10.0.0.1/x", "a private address"),
        ("https://10.21.0.5/x", "a private address"),
        ("https://172.16.5.4/x", "a private address"),
        ("https://192.168.1.1/x", "a private address"),
        ("https://[fd00::1]/x", "a private address"),
        ("https://[::ffff:192.168.1.1]/x", "a private address"),
        (
            "https://169.254.169.254/latest/meta-data/",
            "a link-local address",
        ),
        ("https://[fe80::1]/x", "a link-local address"),
        ("https://100.64.0.1/x", "a shared (CGNAT) address"),
        ("https://224.0.0.1/x", "a multicast address"),
        ("https://[ff02::1]/x", "a multicast address"),
        ("https://255.255.255.255/x", "a broadcast address"),
        ("https://localhost/x", "not on the public internet"),
        (
            "https://metadata.google.internal/x",
            "not on the public internet",
        ),
        ("https://intranet/x", "not on the public internet"),
    ];
    for (url, reason) in refused {
        let (status, body) = submit_with_callback(&meta, url, false).await;
        assert_eq!(status, 400, "{url}: {body:#}");
        assert_eq!(body["code"], "validation_error", "{url}");
        let error = &body["errors"][0];
        assert_eq!(error["field"], "callback_url", "{url}");
        let why = error["reason"].as_str().unwrap_or_default();
        assert!(why.contains(reason), "{url}: {why}");
    }
    // Nothing was stored.
    let list = meta
        .app
        .get("/api/v1/meta-templates/bulk-sends/", Some(&meta.api_key))
        .await;
    assert_eq!(json(list).await["count"], 0);
    // Public hosts and the allowed internal range pass (checked without sending anything).
    for url in [
        "https://hooks.example.com/mindo",
        "https://93.184.215.14/x",
        "https://[2606:4700::1111]/x",
        "https://10.20.3.4/x",
    ] {
        let (status, body) = submit_with_callback(&meta, url, true).await;
        assert_eq!(status, 200, "{url}: {body:#}");
    }
}

#[actix_web::test]
async fn loopback_callbacks_are_accepted_only_when_allowed() {
    let meta = spawn_with_meta_tweaked(|_| {}, |c| c.callback_allow_loopback = true).await;
    for url in [
        "http://127.0.0.1:9/x",
        "http://localhost:9/x",
        "http://[::1]:9/x",
    ] {
        let (status, body) = submit_with_callback(&meta, url, true).await;
        assert_eq!(status, 200, "{url}: {body:#}");
    }
    // Still only over https elsewhere, and never private ranges.
    let (status, _) = submit_with_callback(&meta, "http://hooks.example.com/x", true).await;
    assert_eq!(status, 400);
    let (status, _) = submit_with_callback(&meta, "https://10.0.0.1/x", true).await;
    assert_eq!(status, 400);
}

// ---------------------------------------------------------------------------------------
// Secrets encrypted at rest
// ---------------------------------------------------------------------------------------

/// Stored values with the id of the key that sealed them.
type Sealed = Vec<(String, Option<String>)>;

/// (access tokens, webhook secrets) as stored.
fn stored_secrets(app: &TestApp) -> (Sealed, Sealed) {
    let mut conn = app.db.get().unwrap();
    let tokens = business_accounts::table
        .select((
            business_accounts::access_token,
            business_accounts::access_token_key_id,
        ))
        .load(&mut *conn)
        .unwrap();
    let secrets = tenants::table
        .select((tenants::webhook_secret, tenants::webhook_secret_key_id))
        .load(&mut *conn)
        .unwrap();
    (tokens, secrets)
}

/// Every byte of the SQLite database (main file, WAL and shared memory).
fn sqlite_bytes(app: &TestApp) -> Vec<u8> {
    let path = app
        .database
        .url()
        .trim_start_matches("sqlite://")
        .to_owned();
    let dir = Path::new(&path).parent().unwrap();
    let mut all = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        all.extend(std::fs::read(entry.unwrap().path()).unwrap_or_default());
    }
    all
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

#[actix_web::test]
async fn tokens_and_webhook_secrets_are_stored_encrypted_and_still_work() {
    let meta = spawn_with_meta_tweaked(|_| {}, |_| {}).await;
    let key_id = meta.app.secret_key.id().to_owned();
    let (tokens, secrets) = stored_secrets(&meta.app);
    assert_eq!(tokens.len(), 3);
    for (value, id) in tokens.iter().chain(&secrets) {
        assert_eq!(id.as_deref(), Some(key_id.as_str()));
        assert!(!value.contains(SANDBOX_TOKEN) && !value.contains("whsec_"));
    }
    // Two seals of the same token differ: a nonce per value.
    assert_ne!(tokens[0].0, tokens[1].0);
    if !meta.app.database.is_postgres() {
        let bytes = sqlite_bytes(&meta.app);
        assert!(!contains(&bytes, SANDBOX_TOKEN), "the token is in the file");
        assert!(
            !contains(&bytes, &meta.webhook_secret),
            "the secret is in the file"
        );
    }
    // The daemon opens the token to send: Meta (the simulator) accepts only the real one.
    let (status, body) = meta.send_bulk(&welcome(NUMBER_10K, &phones(0, 3))).await;
    assert_eq!(status, 202, "{body:#}");
    let done = meta
        .wait_finished(body["bulk_send_id"].as_str().unwrap())
        .await;
    assert_eq!(done["status"], "COMPLETED", "{done:#}");
}

#[actix_web::test]
async fn plain_text_rows_are_encrypted_at_the_next_start() {
    let meta = spawn_with_meta_tweaked(|_| {}, |_| {}).await;
    meta.app.crash().await;
    // Rows as an older version wrote them.
    {
        let mut conn = meta.app.db.get().unwrap();
        diesel::update(business_accounts::table)
            .set((
                business_accounts::access_token.eq(SANDBOX_TOKEN),
                business_accounts::access_token_key_id.eq(None::<String>),
            ))
            .execute(&mut *conn)
            .unwrap();
        diesel::update(tenants::table)
            .set((
                tenants::webhook_secret.eq(&meta.webhook_secret),
                tenants::webhook_secret_key_id.eq(None::<String>),
            ))
            .execute(&mut *conn)
            .unwrap();
    }
    let app = restart(&meta, |_| {}).await;
    let (tokens, secrets) = stored_secrets(&app);
    for (value, id) in tokens.iter().chain(&secrets) {
        assert_eq!(id.as_deref(), Some(app.secret_key.id()));
        assert!(!value.contains(SANDBOX_TOKEN) && !value.contains("whsec_"));
    }
    send_completes(&app, &meta.api_key, 2).await;
}

/// Starts a daemon again on `meta`'s database and simulator (after `meta.app.crash()`),
/// with `tweak` applied to its config.
async fn restart(meta: &MetaApp, tweak: impl FnOnce(&mut mindo_bulk::config::Config)) -> TestApp {
    let (graph, secret) = (
        meta.sim.base_url().to_owned(),
        meta.sim.app_secret().to_owned(),
    );
    let app = spawn_app_on(meta.app.database.clone(), meta.app.clock.clone(), |c| {
        c.graph_url = graph;
        c.app_secret = Some(secret.into());
        tweak(c);
    })
    .await;
    meta.sim
        .set_webhook_url(Some(format!("{}/webhooks/meta/", app.address)));
    app
}

/// Submits a send of `n` recipients on `app` and waits until it is COMPLETED: Meta (the
/// simulator) accepted every message, so the token the daemon opened is the real one.
async fn send_completes(app: &TestApp, api_key: &str, n: u32) {
    let body = welcome(NUMBER_10K, &phones(0, n));
    let res = app
        .post("/api/v1/meta-templates/send-bulk/", api_key, &body)
        .await;
    assert_eq!(res.status(), 202);
    let id = json(res).await["bulk_send_id"].as_str().unwrap().to_owned();
    let path = format!("/api/v1/meta-templates/bulk-sends/{id}/");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let status = json(app.get(&path, Some(api_key)).await).await;
        if status["status"] == "COMPLETED" {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "{status:#}");
        actix_web::rt::time::sleep(Duration::from_millis(20)).await;
    }
}

#[actix_web::test]
async fn a_wrong_key_refuses_to_start_and_names_the_key_id() {
    let right = SecretKey::generate();
    let wrong = SecretKey::generate();
    let right_hex = right.to_hex();
    let app = spawn_app_with(|c| c.secret_key = Some(right_hex.clone().into())).await;
    let (code, _, err) = cli(
        &app,
        &["tenant", "create", "--name", "Acme"],
        &[("MINDO_SECRET_KEY", right.to_hex())],
    )
    .await;
    assert_eq!(code, 0, "{err}");
    app.crash().await;

    // The daemon.
    let mut config = test_config(app.database.url());
    config.secret_key = Some(wrong.to_hex().into());
    let refused = Application::build(config).await;
    let message = format!("{:#}", refused.err().expect("a wrong key is refused"));
    assert!(
        message.contains(right.id()) && message.contains(wrong.id()),
        "{message}"
    );
    assert!(!message.contains(&right.to_hex()) && !message.contains(&wrong.to_hex()));

    // A command: one line on stderr, non-zero, naming the key.
    let (code, out, err) = cli(
        &app,
        &["tenant", "create", "--name", "Globex", "--json"],
        &[("MINDO_SECRET_KEY", wrong.to_hex())],
    )
    .await;
    assert_ne!(code, 0);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains(right.id()), "{err}");
    assert!(
        out.contains(right.id()),
        "--json prints the error as JSON: {out}"
    );

    // The right key still works.
    let mut config = test_config(app.database.url());
    config.secret_key = Some(right.to_hex().into());
    let started = Application::build(config)
        .await
        .expect("the right key starts");
    started.state().engine.stop();
}

#[actix_web::test]
async fn a_node_without_the_key_refuses_to_start_instead_of_making_a_new_one() {
    let key = SecretKey::generate();
    let key_hex = key.to_hex();
    let app = spawn_app_with(|c| c.secret_key = Some(key_hex.clone().into())).await;
    let (code, _, err) = cli(
        &app,
        &["tenant", "create", "--name", "Acme"],
        &[("MINDO_SECRET_KEY", key_hex)],
    )
    .await;
    assert_eq!(code, 0, "{err}");
    app.crash().await;
    // Another node: no key configured, no key file in its working directory.
    let dir = tempfile::tempdir().unwrap();
    let (url, cwd) = (app.database.url().to_owned(), dir.path().to_owned());
    let output = actix_web::rt::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_mindo-bulk"))
            .arg("migrate")
            .current_dir(cwd)
            .env("MINDO_DATABASE_URL", url)
            .env_remove("MINDO_SECRET_KEY")
            .env_remove("MINDO_SECRET_KEY_FILE")
            .env_remove("MINDO_CONFIG")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.contains(key.id()) && err.contains("MINDO_SECRET_KEY_FILE"),
        "{err}"
    );
    assert!(
        !dir.path()
            .join(mindo_bulk::secrets::DEFAULT_KEY_FILE)
            .exists(),
        "no new key is made for a database that has one"
    );
}

#[actix_web::test]
async fn rotation_re_encrypts_every_secret_under_the_new_key() {
    let old = SecretKey::generate();
    let old_hex = old.to_hex();
    let meta = spawn_with_meta_tweaked(|_| {}, |c| c.secret_key = Some(old_hex.into())).await;
    meta.app.crash().await;
    let dir = tempfile::tempdir().unwrap();
    let new_file = dir.path().join("new.key");
    let (code, out, err) = cli(
        &meta.app,
        &[
            "secrets",
            "rotate",
            "--new-key-file",
            new_file.to_str().unwrap(),
            "--json",
        ],
        &[("MINDO_SECRET_KEY", old.to_hex())],
    )
    .await;
    assert_eq!(code, 0, "{err}");
    let report: Value = serde_json::from_str(&out).unwrap();
    let new = mindo_bulk::secrets::read_key_file(&new_file).unwrap();
    assert_eq!(report["old_key_id"], old.id());
    assert_eq!(report["new_key_id"], new.id());
    assert_eq!(report["access_tokens"], 3);
    assert_eq!(report["webhook_secrets"], 1);
    assert!(!out.contains(&new.to_hex()) && !out.contains(&old.to_hex()));

    // The old key opens nothing any more.
    let mut config = test_config(meta.app.database.url());
    config.secret_key = Some(old.to_hex().into());
    let message = format!("{:#}", Application::build(config).await.err().unwrap());
    assert!(message.contains(new.id()), "{message}");

    // The new key's file works, and the token it opens is the real one.
    let app = restart(&meta, |c| c.secret_key_file = Some(new_file.clone())).await;
    let (tokens, secrets) = stored_secrets(&app);
    assert!(tokens
        .iter()
        .chain(&secrets)
        .all(|(_, id)| id.as_deref() == Some(new.id())));
    send_completes(&app, &meta.api_key, 1).await;
}

#[actix_web::test]
async fn tokens_never_appear_in_command_output_errors_or_metrics() {
    let meta = spawn_with_meta_tweaked(|_| {}, |_| {}).await;
    let graph = meta.sim.base_url().to_owned();
    let key = meta.app.secret_key.to_hex();
    let env = [
        ("MINDO_GRAPH_URL", graph.clone()),
        ("MINDO_SECRET_KEY", key.clone()),
    ];
    // A sync reads every stored token and uses it.
    let (code, out, err) = cli(&meta.app, &["waba", "sync", "--json"], &env).await;
    assert_eq!(code, 0, "{err}");
    // A token Meta refuses: the error names the WABA, never the token.
    let tenant = meta.tenant_id.to_string();
    let bad = "EAAGbadTokenThatMustNotLeak123";
    let (code2, out2, err2) = cli(
        &meta.app,
        &[
            "waba",
            "add",
            "--tenant",
            &tenant,
            "--waba-id",
            "102938475610001",
            "--access-token",
            bad,
            "--json",
        ],
        &env,
    )
    .await;
    assert_ne!(code2, 0);
    for text in [&out, &err, &out2, &err2] {
        assert!(!text.contains(SANDBOX_TOKEN), "{text}");
        assert!(!text.contains(bad), "{text}");
        assert!(!text.contains(&meta.webhook_secret), "{text}");
        assert!(!text.contains(&key), "{text}");
    }
    let metrics = meta.app.get("/metrics", None).await.text().await.unwrap();
    assert!(!metrics.contains(SANDBOX_TOKEN) && !metrics.contains(&meta.webhook_secret));
    let accounts = meta
        .app
        .get("/api/v1/business-accounts/", Some(&meta.api_key))
        .await
        .text()
        .await
        .unwrap();
    assert!(!accounts.contains(SANDBOX_TOKEN) && !accounts.contains(&meta.webhook_secret));
}

// ---------------------------------------------------------------------------------------
// Key scopes and expiry
// ---------------------------------------------------------------------------------------

async fn create_key(meta: &MetaApp, extra: &[&str]) -> Value {
    let tenant = meta.tenant_id.to_string();
    let mut args = vec!["api-key", "create", "--tenant", &tenant, "--json"];
    args.extend_from_slice(extra);
    let key = meta.app.secret_key.to_hex();
    let (code, out, err) = cli(&meta.app, &args, &[("MINDO_SECRET_KEY", key)]).await;
    assert_eq!(code, 0, "{err}");
    serde_json::from_str(&out).unwrap()
}

fn forbidden() -> Value {
    json!({"detail": "API Key no tiene acceso a este recurso", "code": "forbidden"})
}

#[actix_web::test]
async fn a_read_key_reads_but_cannot_send_or_control() {
    let meta = spawn_with_meta_tweaked(|_| {}, |_| {}).await;
    let created = create_key(&meta, &["--scope", "read", "--name", "Dashboard"]).await;
    assert_eq!(created["scope"], "read");
    let read = created["api_key"].as_str().unwrap().to_owned();
    let default = create_key(&meta, &[]).await;
    assert_eq!(default["scope"], "send");
    assert_eq!(default["expires_at"], Value::Null);

    // A send made with the tenant's send key.
    let (status, body) = meta.send_bulk(&welcome(NUMBER_10K, &phones(0, 1))).await;
    assert_eq!(status, 202);
    let id = body["bulk_send_id"].as_str().unwrap().to_owned();

    for path in [
        "/api/v1/business-accounts/".to_owned(),
        "/api/v1/meta-templates/bulk-sends/".to_owned(),
        format!("/api/v1/meta-templates/bulk-sends/{id}/"),
        format!("/api/v1/meta-templates/bulk-sends/{id}/messages/"),
    ] {
        let res = meta.app.get(&path, Some(&read)).await;
        assert_eq!(res.status(), 200, "{path}");
    }
    let res = meta
        .app
        .post(
            "/api/v1/meta-templates/send-bulk/",
            &read,
            &welcome(NUMBER_10K, &phones(5, 1)),
        )
        .await;
    assert_eq!(res.status(), 403);
    assert_eq!(json(res).await, forbidden());
    for action in ["cancel", "pause", "resume"] {
        let path = format!("/api/v1/meta-templates/bulk-sends/{id}/{action}/");
        let res = meta.app.post(&path, &read, &json!({})).await;
        assert_eq!(res.status(), 403, "{action}");
        assert_eq!(json(res).await, forbidden(), "{action}");
    }
    // Nothing else was sent.
    let list = json(
        meta.app
            .get("/api/v1/meta-templates/bulk-sends/", Some(&read))
            .await,
    )
    .await;
    assert_eq!(list["count"], 1);
}

#[actix_web::test]
async fn an_expired_key_gets_401() {
    let meta = spawn_with_meta_tweaked(|_| {}, |_| {}).await;
    // The command dates the expiry by the wall clock; the daemon's clock is set to it.
    meta.app.clock.set(SystemClock.now_ms());
    let created = create_key(&meta, &["--expires-in", "90d"]).await;
    assert!(created["expires_at"].as_str().unwrap().ends_with('Z'));
    let key = created["api_key"].as_str().unwrap().to_owned();
    let res = meta.app.get("/api/v1/business-accounts/", Some(&key)).await;
    assert_eq!(res.status(), 200);
    meta.app.clock.advance_ms(91 * 24 * 60 * 60 * 1000);
    let res = meta.app.get("/api/v1/business-accounts/", Some(&key)).await;
    assert_eq!(res.status(), 401);
    assert_eq!(
        json(res).await,
        json!({"detail": "API Key expirada", "code": "invalid_api_key"})
    );
    // A key without expiry keeps working.
    let res = meta
        .app
        .get("/api/v1/business-accounts/", Some(&meta.api_key))
        .await;
    assert_eq!(res.status(), 200);
    // A lifetime that is not one is refused by the command.
    let tenant = meta.tenant_id.to_string();
    let (code, _, err) = cli(
        &meta.app,
        &[
            "api-key",
            "create",
            "--tenant",
            &tenant,
            "--expires-in",
            "soon",
        ],
        &[],
    )
    .await;
    assert_ne!(code, 0);
    assert!(err.contains("--expires-in"), "{err}");
}

// ---------------------------------------------------------------------------------------
// Per-tenant request limits
// ---------------------------------------------------------------------------------------

#[actix_web::test]
async fn a_tenant_over_its_request_budget_gets_429_with_retry_after() {
    let meta = spawn_with_meta_tweaked(|_| {}, |c| c.tenant_rps = 2).await;
    let path = "/api/v1/business-accounts/";
    // A burst of twice the rate passes.
    for _ in 0..4 {
        let res = meta.app.get(path, Some(&meta.api_key)).await;
        assert_eq!(res.status(), 200);
    }
    let res = meta.app.get(path, Some(&meta.api_key)).await;
    assert_eq!(res.status(), 429);
    assert_eq!(res.headers()["retry-after"], "1");
    let body = json(res).await;
    assert_eq!(body["code"], "rate_limited");
    assert!(body["detail"].as_str().is_some());
    // Sending counts against the same budget.
    let (status, _) = meta.send_bulk(&welcome(NUMBER_10K, &phones(0, 1))).await;
    assert_eq!(status, 429);

    // Another tenant has its own budget.
    let tenant = cli(
        &meta.app,
        &["tenant", "create", "--name", "Globex", "--json"],
        &[("MINDO_SECRET_KEY", meta.app.secret_key.to_hex())],
    )
    .await;
    let other: Value = serde_json::from_str(&tenant.1).unwrap();
    let res = meta
        .app
        .get(path, Some(other["api_key"].as_str().unwrap()))
        .await;
    assert_eq!(res.status(), 200);

    // Health checks and Meta's webhooks are never limited.
    for _ in 0..20 {
        assert_eq!(meta.app.get("/healthz", None).await.status(), 200);
    }
    let res = meta
        .app
        .client
        .post(format!("{}/webhooks/meta/", meta.app.address))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.status(),
        401,
        "an unsigned webhook is refused, not limited"
    );

    // Half a second on the daemon's clock refills one request at 2/s.
    meta.app.clock.advance_ms(500);
    assert_eq!(meta.app.get(path, Some(&meta.api_key)).await.status(), 200);
    assert_eq!(meta.app.get(path, Some(&meta.api_key)).await.status(), 429);
}

#[actix_web::test]
async fn the_daemon_logs_no_token_secret_or_key_even_at_debug() {
    use mindo_bulk::simulator::{SimConfig, Simulator};
    use std::process::Stdio;

    let mut world = SimConfig::sandbox();
    world.behaviour.sent_delay_ms = 0;
    world.behaviour.delivered_delay_ms = 0;
    world.behaviour.read_delay_ms = 0;
    let sim = Simulator::start(
        world,
        "127.0.0.1:0",
        std::sync::Arc::new(mindo_bulk::clock::SystemClock),
    )
    .await
    .unwrap();
    let database = crate::helpers::TestDatabase::create();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let base = format!("http://127.0.0.1:{port}");
    sim.set_webhook_url(Some(format!("{base}/webhooks/meta/")));
    let key = SecretKey::generate().to_hex();
    let env: Vec<(&str, String)> = vec![
        ("MINDO_GRAPH_URL", sim.base_url().to_owned()),
        ("MINDO_SECRET_KEY", key.clone()),
    ];
    let ok = |(code, out, err): (i32, String, String)| {
        assert_eq!(code, 0, "{err}");
        out
    };
    let database_url = database.url().to_owned();
    let run = |args: Vec<String>| {
        let (url, env) = (
            database_url.clone(),
            env.iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect::<Vec<_>>(),
        );
        actix_web::rt::task::spawn_blocking(move || {
            let out = Command::new(env!("CARGO_BIN_EXE_mindo-bulk"))
                .args(&args)
                .env("MINDO_DATABASE_URL", url)
                .env_remove("MINDO_SECRET_KEY_FILE")
                .env_remove("MINDO_CONFIG")
                .envs(env)
                .output()
                .unwrap();
            (
                out.status.code().unwrap_or(-1),
                String::from_utf8_lossy(&out.stdout).into_owned(),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            )
        })
    };
    let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let tenant: Value = serde_json::from_str(&ok(run(args(&[
        "tenant", "create", "--name", "Acme", "--json",
    ]))
    .await
    .unwrap()))
    .unwrap();
    let (api_key, webhook_secret) = (
        tenant["api_key"].as_str().unwrap().to_owned(),
        tenant["webhook_secret"].as_str().unwrap().to_owned(),
    );
    let tenant_id = tenant["tenant_id"].to_string();
    ok(run(args(&[
        "waba",
        "add",
        "--tenant",
        &tenant_id,
        "--waba-id",
        "102938475610002",
        "--access-token",
        SANDBOX_TOKEN,
    ]))
    .await
    .unwrap());

    let dir = tempfile::tempdir().unwrap();
    let log_path = dir.path().join("daemon.log");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mindo-bulk"));
    cmd.arg("serve")
        .env("MINDO_BIND", format!("127.0.0.1:{port}"))
        .env("MINDO_APP_SECRET", sim.app_secret())
        .env("MINDO_CALLBACK_ALLOW_LOOPBACK", "true")
        .env("MINDO_LOG", "debug")
        .env("MINDO_LOG_FORMAT", "json")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log_path).unwrap())
        .env("MINDO_DATABASE_URL", database.url())
        .env_remove("MINDO_SECRET_KEY_FILE")
        .env_remove("MINDO_CONFIG")
        .envs(env.iter().cloned());
    let mut child = cmd.spawn().unwrap();
    let client = reqwest::Client::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !client
        .get(format!("{base}/readyz"))
        .send()
        .await
        .is_ok_and(|r| r.status() == 200)
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the daemon is not ready"
        );
        actix_web::rt::time::sleep(Duration::from_millis(20)).await;
    }
    // A send (the token is opened and used) with a callback (the webhook secret is opened
    // and signs; the daemon's own /healthz refuses the POST, so it is retried and logged).
    let mut body = welcome(NUMBER_10K, &phones(0, 3));
    body["callback_url"] = json!(format!("{base}/healthz"));
    let res = client
        .post(format!("{base}/api/v1/meta-templates/send-bulk/"))
        .header("X-API-Key", &api_key)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 202);
    let id = json(res).await["bulk_send_id"].as_str().unwrap().to_owned();
    loop {
        let status = json(
            client
                .get(format!("{base}/api/v1/meta-templates/bulk-sends/{id}/"))
                .header("X-API-Key", &api_key)
                .send()
                .await
                .unwrap(),
        )
        .await;
        if status["status"] == "COMPLETED" {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{status:#}");
        actix_web::rt::time::sleep(Duration::from_millis(50)).await;
    }
    // Let a callback attempt or two be made and logged.
    actix_web::rt::time::sleep(Duration::from_millis(1_500)).await;
    let _ = child.kill();
    let _ = child.wait();

    let log = std::fs::read_to_string(&log_path).unwrap();
    assert!(log.contains("mindo-bulk is listening"), "{log}");
    assert!(
        log.contains("callback"),
        "the callback attempts are logged: {log}"
    );
    for (what, secret) in [
        ("access token", SANDBOX_TOKEN),
        ("webhook secret", webhook_secret.as_str()),
        ("secret key", key.as_str()),
        ("API key", api_key.as_str()),
    ] {
        assert!(!log.contains(secret), "the {what} is in the log");
    }
}
