use crate::helpers::{run_cli, spawn_app, TestDatabase};

#[test]
fn tenant_create_prints_the_documented_json() {
    let db = TestDatabase::create();
    let (code, out, err) = run_cli(db.url(), &["tenant", "create", "--name", "Acme", "--json"]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(v["tenant_id"].as_i64().unwrap() > 0);
    let key = v["api_key"].as_str().unwrap();
    assert!(key.starts_with("mindo_") && key.len() == 30, "{key}");
    assert!(key[6..].bytes().all(|b| b.is_ascii_alphanumeric()));
    assert!(!v["webhook_secret"].as_str().unwrap().is_empty());
    assert_eq!(v.as_object().unwrap().len(), 3, "{v}");
}

#[test]
fn api_key_create_for_an_unknown_tenant_fails_with_one_line() {
    let db = TestDatabase::create();
    let (code, out, err) = run_cli(db.url(), &["api-key", "create", "--tenant", "999"]);
    assert_ne!(code, 0);
    assert!(out.is_empty(), "{out}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(err.contains("no tenant with id 999"), "{err}");
}

#[test]
fn api_key_revoke_of_an_unknown_key_fails() {
    let db = TestDatabase::create();
    let (code, out, err) = run_cli(db.url(), &["api-key", "revoke", "4242", "--json"]);
    assert_ne!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(v["error"].as_str().unwrap().contains("4242"));
    assert!(err.contains("no API key with id 4242"), "{err}");
}

#[test]
fn an_empty_tenant_name_is_refused() {
    let db = TestDatabase::create();
    let (code, _, err) = run_cli(db.url(), &["tenant", "create", "--name", "  "]);
    assert_ne!(code, 0);
    assert!(err.contains("must not be empty"), "{err}");
}

#[test]
fn migrate_is_idempotent() {
    let db = TestDatabase::create();
    let (code, out, err) = run_cli(db.url(), &["migrate", "--json"]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(!v["applied"].as_array().unwrap().is_empty());
    let (code, out, _) = run_cli(db.url(), &["migrate", "--json"]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(v["applied"].as_array().unwrap().is_empty());
}

#[test]
fn a_bad_database_url_is_a_clear_error() {
    let (code, _, err) = run_cli("mysql://nope", &["migrate"]);
    assert_ne!(code, 0);
    assert!(err.contains("MINDO_DATABASE_URL"), "{err}");
}

#[actix_web::test]
async fn the_cli_works_while_the_daemon_runs() {
    // SQLite: the CLI is a second process writing the same file as the daemon.
    let app = spawn_app().await;
    for i in 0..5 {
        app.create_tenant(&format!("Tenant {i}"));
    }
    assert_eq!(app.get("/readyz", None).await.status(), 200);
}

#[test]
fn the_example_config_in_deploy_is_valid() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/deploy/mindo-bulk.toml"
    ))
    .unwrap();
    let config =
        mindo_bulk::config::Config::from_sources(Some(("mindo-bulk.toml", &text)), |_| None)
            .expect("the example config loads");
    assert_eq!(config.database_url, "sqlite:///var/lib/mindo-bulk/mindo.db");
    assert_eq!(config.log_format, mindo_bulk::config::LogFormat::Json);
}
