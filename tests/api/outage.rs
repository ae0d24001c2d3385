//! A database outage in the middle of a send (PostgreSQL only).
//!
//! Stopping the PostgreSQL server would take down every other test running against it, so the
//! outage is this test's own database becoming unreachable: `ALLOW_CONNECTIONS false` and every
//! session on it terminated, from an admin connection; `ALLOW_CONNECTIONS true` ends it. While
//! it lasts the API answers 503 with the documented error body, `/readyz` 503 and `/healthz`
//! 200, and nothing more is handed to Meta (a message is marked `dispatching` durably before
//! it goes). Afterwards the engine picks up from the database and finishes the send: every
//! message final, the counters equal to what Meta (the simulator) did, nothing sent twice.

use std::time::{Duration, Instant};

use diesel::connection::SimpleConnection;
use diesel::Connection;
use serde_json::Value;

use crate::faults::{assert_exact_outcome, drive_to_the_end, GRACE_SECS};
use crate::helpers::TestDatabase;
use crate::meta::{phones, spawn_with_meta_tweaked, welcome, MetaApp, NUMBER_10K};

/// How long the database stays unreachable.
const OUTAGE: Duration = Duration::from_secs(25);

/// Makes one database unreachable (and reachable again on drop, should the test fail).
struct Outage {
    admin_url: String,
    name: String,
}

impl Outage {
    fn of(database: &TestDatabase) -> Option<Outage> {
        match database {
            TestDatabase::Postgres {
                admin_url, name, ..
            } => Some(Outage {
                admin_url: admin_url.clone(),
                name: name.clone(),
            }),
            TestDatabase::Sqlite { .. } => None,
        }
    }

    fn admin(&self, sql: &str) {
        let mut admin =
            diesel::PgConnection::establish(&self.admin_url).expect("the admin connection");
        admin.batch_execute(sql).expect("the admin statement runs");
    }

    /// No new connection, and every open one closed by the server.
    fn start(&self) {
        let name = &self.name;
        self.admin(&format!(
            "ALTER DATABASE {name} ALLOW_CONNECTIONS false;
             SELECT pg_terminate_backend(pid) FROM pg_stat_activity
              WHERE datname = '{name}' AND pid <> pg_backend_pid();"
        ));
    }

    fn end(&self) {
        self.admin(&format!(
            "ALTER DATABASE {} ALLOW_CONNECTIONS true",
            self.name
        ));
    }
}

impl Drop for Outage {
    fn drop(&mut self) {
        if let Ok(mut admin) = diesel::PgConnection::establish(&self.admin_url) {
            let _ = admin.batch_execute(&format!(
                "ALTER DATABASE {} ALLOW_CONNECTIONS true",
                self.name
            ));
        }
    }
}

/// Answers a request with its status, time taken and JSON body (`Null` if not JSON).
async fn timed(req: reqwest::RequestBuilder) -> (u16, Duration, Value) {
    let started = Instant::now();
    let res = req.send().await.expect("the request is answered");
    let status = res.status().as_u16();
    let body = res.json().await.unwrap_or(Value::Null);
    (status, started.elapsed(), body)
}

fn assert_unavailable(what: &str, (status, took, body): &(u16, Duration, Value), code: &str) {
    assert_eq!(*status, 503, "{what}: {body:#}");
    assert_eq!(body["code"], code, "{what}: {body:#}");
    assert!(
        body["detail"].as_str().is_some_and(|d| !d.is_empty()),
        "{what}: {body:#}"
    );
    println!("during the outage, {what} answered 503 {code} in {took:.1?}");
}

#[actix_web::test]
async fn a_database_outage_mid_send_is_survived() {
    if std::env::var("MINDO_TEST_POSTGRES_URL").map_or(true, |u| u.is_empty()) {
        println!(
            "skipped: the database outage test needs PostgreSQL (set MINDO_TEST_POSTGRES_URL)"
        );
        return;
    }
    let meta: MetaApp = spawn_with_meta_tweaked(
        |sim| {
            // Statuses of the messages taken just before the outage arrive during it.
            sim.behaviour.sent_delay_ms = 300;
            sim.behaviour.retry_max_ms = 500;
        },
        |daemon| daemon.reconcile_grace_secs = GRACE_SECS,
    )
    .await;
    let outage = Outage::of(&meta.app.database).expect("a PostgreSQL test database");
    let list = phones(0, 600);
    let (code, res) = meta.send_bulk(&welcome(NUMBER_10K, &list)).await;
    assert_eq!(code, 202, "{res:#}");
    let id = res["bulk_send_id"].as_str().unwrap().to_owned();
    meta.wait_status(&id, |s| s["sent_count"].as_u64().unwrap() >= 100)
        .await;

    outage.start();
    let started = Instant::now();
    let accepted_at_start = meta.stats().accepted_total;
    let url = |path: &str| format!("{}{path}", meta.app.address);
    let client = &meta.app.client;
    let healthz = timed(client.get(url("/healthz"))).await;
    assert_eq!(healthz.0, 200, "{:#}", healthz.2);
    // How fast is a benchmark's question; this test only needs the answer.
    println!(
        "during the outage, /healthz answered 200 in {:.1?}",
        healthz.1
    );
    let key = meta.api_key.as_str();
    let (readyz, status, list_sends, create) = futures_util::future::join4(
        timed(client.get(url("/readyz"))),
        timed(
            client
                .get(url(&format!("/api/v1/meta-templates/bulk-sends/{id}/")))
                .header("X-API-Key", key),
        ),
        timed(
            client
                .get(url("/api/v1/meta-templates/bulk-sends/"))
                .header("X-API-Key", key),
        ),
        timed(
            client
                .post(url("/api/v1/meta-templates/send-bulk/"))
                .header("X-API-Key", key)
                .json(&welcome(NUMBER_10K, &phones(10_000, 3))),
        ),
    )
    .await;
    assert_unavailable("GET /readyz", &readyz, "not_ready");
    assert_unavailable("GET bulk-sends/{id}/", &status, "service_unavailable");
    assert_unavailable("GET bulk-sends/", &list_sends, "service_unavailable");
    assert_unavailable("POST send-bulk/", &create, "service_unavailable");
    // Nothing goes to Meta without first being marked durably: once what was marked before
    // the outage is out, dispatching stops. The outage goes on long enough for the send's
    // actor to fail a write, restart, fail to load and restart again (the pool waits 10 s
    // for a connection before giving up); the process stays alive throughout.
    let accepted_during = meta.stats().accepted_total;
    while started.elapsed() < OUTAGE {
        actix_web::rt::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(
            meta.stats().accepted_total,
            accepted_during,
            "messages were handed to Meta while the database was down"
        );
        let res = client.get(url("/healthz")).send().await.unwrap();
        assert_eq!(res.status(), 200);
    }
    let outage_secs = started.elapsed().as_secs_f64();
    outage.end();

    // Back: ready again, and the send finishes.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let res = client.get(url("/readyz")).send().await.unwrap();
        if res.status() == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "never ready again after the outage"
        );
        actix_web::rt::time::sleep(Duration::from_millis(100)).await;
    }
    let recovered = started.elapsed().as_secs_f64();
    let (status, stats) = drive_to_the_end(&meta, &id, Duration::from_secs(180)).await;
    assert_exact_outcome(&meta, &id, &list, &status, &stats).await;
    assert!(
        stats.webhooks.posts_failed > 0,
        "no webhook met the outage: {:?}",
        stats.webhooks
    );
    // The send refused during the outage was not stored.
    let sends: Value = meta
        .app
        .get("/api/v1/meta-templates/bulk-sends/", Some(key))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(sends["count"], 1, "{sends:#}");
    // And a new one goes through.
    let (code, res) = meta
        .send_bulk(&welcome(NUMBER_10K, &phones(10_000, 3)))
        .await;
    assert_eq!(code, 202, "{res:#}");
    println!(
        "database outage: {} recipients, {accepted_at_start} accepted by Meta when it began, {accepted_during} when the 503s were in; \
         outage {outage_secs:.1} s, ready again {:.1} s after it ended; {} webhook POSTs refused and retried; \
         finished {}, 0 sent twice",
        list.len(),
        recovered - outage_secs,
        stats.webhooks.posts_failed,
        status["status"]
    );
}

/// Every connection the daemon holds is closed by the server, again and again, while a send
/// runs at full speed (unlike the outage above, new connections are allowed at once): a
/// batch whose connection dies mid-way is rolled back whole — the webhook POST that carried
/// it is answered 500 and posted again by Meta, the send's actor restarts from what was
/// committed — so no message is lost and none is sent twice.
#[actix_web::test]
async fn connections_killed_mid_batch_lose_nothing_and_send_nothing_twice() {
    if std::env::var("MINDO_TEST_POSTGRES_URL").map_or(true, |u| u.is_empty()) {
        println!("skipped: terminating backends needs PostgreSQL (set MINDO_TEST_POSTGRES_URL)");
        return;
    }
    let meta: MetaApp = spawn_with_meta_tweaked(
        |sim| {
            sim.behaviour.retry_max_ms = 300;
        },
        |daemon| daemon.reconcile_grace_secs = GRACE_SECS,
    )
    .await;
    let outage = Outage::of(&meta.app.database).expect("a PostgreSQL test database");
    let list = phones(0, 3_000);
    let (code, res) = meta
        .send_bulk(&welcome(crate::meta::NUMBER_UNLIMITED, &list))
        .await;
    assert_eq!(code, 202, "{res:#}");
    let id = res["bulk_send_id"].as_str().unwrap().to_owned();
    meta.wait_status(&id, |s| s["sent_count"].as_u64().unwrap() >= 50)
        .await;
    let mut kills = 0;
    let mut accepted_at_kills = Vec::new();
    while kills < 20 {
        outage.admin(&format!(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
              WHERE datname = '{}' AND pid <> pg_backend_pid()",
            outage.name
        ));
        kills += 1;
        accepted_at_kills.push(meta.stats().accepted_total);
        actix_web::rt::time::sleep(Duration::from_millis(150)).await;
    }
    let (status, stats) = drive_to_the_end(&meta, &id, Duration::from_secs(180)).await;
    assert_exact_outcome(&meta, &id, &list, &status, &stats).await;
    println!(
        "{kills} rounds of terminated connections while Meta had accepted {accepted_at_kills:?}; finished {}, 0 sent twice",
        status["status"]
    );
}
