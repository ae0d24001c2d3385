//! `spawn_app()`: the real daemon on port 0 with a fresh database of its own.
//!
//! SQLite by default (a file in a temporary directory); PostgreSQL when
//! `MINDO_TEST_POSTGRES_URL` is set: each test then gets its own database, created from that
//! URL's server and dropped (with `FORCE`) when the test's `TestApp` goes away.

use std::sync::Arc;

use diesel::connection::SimpleConnection;
use diesel::Connection;
use mindo_bulk::clock::ManualClock;
use mindo_bulk::config::Config;
use mindo_bulk::startup::Application;
use mindo_bulk::storage::Db;

/// Where a test's data lives; cleaned up on drop.
pub enum TestDatabase {
    Sqlite {
        url: String,
        _dir: tempfile::TempDir,
    },
    Postgres {
        url: String,
        admin_url: String,
        name: String,
    },
}

impl TestDatabase {
    /// A new, empty database on the backend chosen by the environment.
    pub fn create() -> TestDatabase {
        match std::env::var("MINDO_TEST_POSTGRES_URL") {
            Ok(admin_url) if !admin_url.is_empty() => {
                let name = format!("mindo_test_{}", uuid::Uuid::new_v4().simple());
                let mut admin = diesel::PgConnection::establish(&admin_url)
                    .expect("MINDO_TEST_POSTGRES_URL must reach a PostgreSQL server");
                admin
                    .batch_execute(&format!("CREATE DATABASE {name}"))
                    .expect("creating the test database");
                TestDatabase::Postgres {
                    url: with_database(&admin_url, &name),
                    admin_url,
                    name,
                }
            }
            _ => {
                let dir = tempfile::tempdir().expect("a temporary directory");
                let url = format!("sqlite://{}", dir.path().join("mindo.db").display());
                TestDatabase::Sqlite { url, _dir: dir }
            }
        }
    }

    pub fn url(&self) -> &str {
        match self {
            TestDatabase::Sqlite { url, .. } | TestDatabase::Postgres { url, .. } => url,
        }
    }

    pub fn is_postgres(&self) -> bool {
        matches!(self, TestDatabase::Postgres { .. })
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        if let TestDatabase::Postgres {
            admin_url, name, ..
        } = self
        {
            if let Ok(mut admin) = diesel::PgConnection::establish(admin_url) {
                let _ =
                    admin.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
            }
        }
    }
}

/// `url` with its database name replaced by `name`.
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let scheme_end = base.find("://").map(|i| i + 3).unwrap_or(0);
    let server = match base[scheme_end..].find('/') {
        Some(i) => &base[..scheme_end + i],
        None => base,
    };
    match query {
        Some(q) => format!("{server}/{name}?{q}"),
        None => format!("{server}/{name}"),
    }
}

/// A running daemon and what a test needs to talk to it.
pub struct TestApp {
    pub address: String,
    pub db: Db,
    pub server: actix_web::dev::ServerHandle,
    pub engine: mindo_bulk::engine::Engine,
    pub clock: ManualClock,
    /// The key that encrypts this daemon's secrets at rest.
    pub secret_key: mindo_bulk::domain::secret_box::SecretKey,
    pub client: reqwest::Client,
    pub database: Arc<TestDatabase>,
    /// The daemon's gate of concurrent creates (to see who holds and waits for a slot).
    pub create_gate: mindo_bulk::http::create_gate::CreateGate,
    /// The hub of the live event streams.
    pub live: mindo_bulk::live::LiveHub,
}

/// A config for tests: port 0, the given database, quiet logs; callbacks may go to the
/// receivers tests run on 127.0.0.1, and no request budget (the test clock stands still,
/// so a budget would never refill; `security` tests set one).
pub fn test_config(database_url: &str) -> Config {
    Config {
        database_url: database_url.to_owned(),
        bind: "127.0.0.1:0".into(),
        db_pool_size: 4,
        callback_allow_loopback: true,
        tenant_rps: 0,
        ..Config::default()
    }
}

/// Starts the daemon on a fresh database.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// Starts the daemon on a fresh database, after `tweak` adjusts the config.
pub async fn spawn_app_with(tweak: impl FnOnce(&mut Config)) -> TestApp {
    spawn_app_on_clock(ManualClock::new(START_MS), tweak).await
}

/// 2026-01-01T00:00:00Z: a fixed start so time-based behaviour is reproducible.
pub const START_MS: i64 = 1_767_225_600_000;

/// Starts the daemon on a fresh database with the given clock.
pub async fn spawn_app_on_clock(clock: ManualClock, tweak: impl FnOnce(&mut Config)) -> TestApp {
    if std::env::var("TEST_LOG").is_ok() {
        mindo_bulk::telemetry::init("debug", mindo_bulk::config::LogFormat::Text);
    }
    spawn_app_on(Arc::new(TestDatabase::create()), clock, tweak).await
}

/// Starts a daemon on an existing database (a restart).
pub async fn spawn_app_on(
    database: Arc<TestDatabase>,
    clock: ManualClock,
    tweak: impl FnOnce(&mut Config),
) -> TestApp {
    let mut config = test_config(database.url());
    tweak(&mut config);
    let app = Application::build_with_clock(config, Arc::new(clock.clone()))
        .await
        .expect("the application builds");
    let port = app.port();
    let db = app.state().db.clone();
    let server = app.server_handle();
    let engine = app.state().engine.clone();
    let secret_key = app.state().secret_key.clone();
    let create_gate = app.state().create_gate.clone();
    let live = app.state().live.clone();
    actix_web::rt::spawn(app.run_until_stopped());
    // Ready means the engine has resumed every unfinished send (as `/readyz` says).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !engine.is_resumed().await {
        assert!(
            std::time::Instant::now() < deadline,
            "the engine never became ready"
        );
        actix_web::rt::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    TestApp {
        address: format!("http://127.0.0.1:{port}"),
        db,
        server,
        engine,
        clock,
        secret_key,
        client: reqwest::Client::new(),
        database,
        create_gate,
        live,
    }
}

/// A test's daemon stops with the test: its engine's arbiters (threads of their own, which the
/// test's actix System does not own) stop, and with them its send actors, its callback
/// delivery and, once their handles are gone, its writer thread. (The HTTP server stops when the
/// System drops it.) Without this every test would leave its engine running until the process
/// exits: background work that slows the tests after it, and threads still busy while the
/// process tears itself down.
impl Drop for TestApp {
    fn drop(&mut self) {
        self.engine.stop();
    }
}

impl TestApp {
    /// Stops the daemon the hard way: the engine's actors go away with whatever they held
    /// in memory, and the server stops answering.
    pub async fn crash(&self) {
        self.engine.stop();
        self.server.stop(false).await;
    }

    /// POST JSON to `path` with an API key.
    pub async fn post(
        &self,
        path: &str,
        api_key: &str,
        body: &serde_json::Value,
    ) -> reqwest::Response {
        self.client
            .post(format!("{}{}", self.address, path))
            .header("X-API-Key", api_key)
            .json(body)
            .send()
            .await
            .expect("the request is answered")
    }

    /// GET `path` with an optional API key.
    pub async fn get(&self, path: &str, api_key: Option<&str>) -> reqwest::Response {
        let mut req = self.client.get(format!("{}{}", self.address, path));
        if let Some(key) = api_key {
            req = req.header("X-API-Key", key);
        }
        req.send().await.expect("the request is answered")
    }

    /// Runs the `mindo-bulk` binary against this app's database; returns (status, stdout, stderr).
    pub fn cli(&self, args: &[&str]) -> (i32, String, String) {
        run_cli(self.database.url(), args)
    }

    /// Creates a tenant through the CLI; returns (tenant_id, api_key).
    pub fn create_tenant(&self, name: &str) -> (i64, String) {
        let (code, out, err) = self.cli(&["tenant", "create", "--name", name, "--json"]);
        assert_eq!(code, 0, "tenant create failed: {err}");
        let v: serde_json::Value = serde_json::from_str(&out).expect("tenant create prints JSON");
        (
            v["tenant_id"].as_i64().expect("tenant_id"),
            v["api_key"].as_str().expect("api_key").to_owned(),
        )
    }
}

/// Runs the `mindo-bulk` binary with `MINDO_DATABASE_URL` set; returns (status, stdout, stderr).
pub fn run_cli(database_url: &str, args: &[&str]) -> (i32, String, String) {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_mindo-bulk"))
        .args(args)
        .env("MINDO_DATABASE_URL", database_url)
        .env_remove("MINDO_CONFIG")
        .output()
        .expect("the binary runs");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Reads a JSON body.
pub async fn json(res: reqwest::Response) -> serde_json::Value {
    res.json().await.expect("the body is JSON")
}

#[test]
fn database_name_is_replaced_in_urls() {
    assert_eq!(
        with_database("postgres://postgres@127.0.0.1:5432/test", "x"),
        "postgres://postgres@127.0.0.1:5432/x"
    );
    assert_eq!(
        with_database("postgres://postgres@127.0.0.1", "x"),
        "postgres://postgres@127.0.0.1/x"
    );
    assert_eq!(
        with_database("postgresql://u:p@h/db?sslmode=disable", "x"),
        "postgresql://u:p@h/x?sslmode=disable"
    );
}
