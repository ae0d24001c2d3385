//! Client callbacks (API.md, "Client events"): a send with a `callback_url` posts signed
//! `bulk_send.status_changed` and `bulk_send.progress` events to a receiver run by the test;
//! failed posts are retried after a backoff on the injected clock; a restart loses nothing.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use hmac::{Hmac, Mac};
use mindo_bulk::clock::Clock;
use mindo_bulk::storage::callbacks::{events_of_send, purge_settled, CallbackEventRow};
use serde_json::{json, Value};
use sha2::Sha256;

use crate::helpers::{spawn_app_on, START_MS};
use crate::meta::{
    phones, spawn_with_meta, spawn_with_meta_tweaked, welcome, MetaApp, NUMBER_10K, NUMBER_250,
};

/// One request the receiver got.
#[derive(Debug, Clone)]
struct Received {
    body: Vec<u8>,
    signature: Option<String>,
    event_id: Option<String>,
    content_type: Option<String>,
    /// What the receiver answered.
    answered: u16,
}

impl Received {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("an event body is JSON")
    }
}

#[derive(Default)]
struct ReceiverState {
    received: Mutex<Vec<Received>>,
    /// Requests still to answer with a 500.
    failures_left: AtomicUsize,
}

/// An HTTP server on a free port that records every request and answers 200, or 500 while
/// told to fail.
struct Receiver {
    url: String,
    state: Arc<ReceiverState>,
    server: actix_web::dev::ServerHandle,
}

impl Receiver {
    async fn start() -> Receiver {
        let state = Arc::new(ReceiverState::default());
        let shared = web::Data::from(state.clone());
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = HttpServer::new(move || {
            App::new()
                .app_data(shared.clone())
                .default_service(web::to(receive))
        })
        .workers(1)
        .listen(listener)
        .unwrap()
        .disable_signals()
        .run();
        let handle = server.handle();
        actix_web::rt::spawn(server);
        Receiver {
            url: format!("http://127.0.0.1:{port}/hooks/mindo"),
            state,
            server: handle,
        }
    }

    fn fail_next(&self, n: usize) {
        self.state.failures_left.store(n, Ordering::SeqCst);
    }

    fn received(&self) -> Vec<Received> {
        self.state.received.lock().unwrap().clone()
    }

    /// Waits (at most 20 s) until `n` requests arrived; returns them all.
    async fn wait_for(&self, n: usize) -> Vec<Received> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let got = self.received();
            if got.len() >= n {
                return got;
            }
            assert!(
                Instant::now() < deadline,
                "expected {n} callback requests, got {}: {:#?}",
                got.len(),
                got.iter().map(Received::json).collect::<Vec<_>>()
            );
            actix_web::rt::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

async fn receive(
    req: HttpRequest,
    body: web::Bytes,
    state: web::Data<ReceiverState>,
) -> HttpResponse {
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let fail = state
        .failures_left
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok();
    let answered = if fail { 500 } else { 200 };
    state.received.lock().unwrap().push(Received {
        body: body.to_vec(),
        signature: header("X-Mindo-Signature"),
        event_id: header("X-Mindo-Event-Id"),
        content_type: header("Content-Type"),
        answered,
    });
    if fail {
        HttpResponse::InternalServerError().body("not now")
    } else {
        HttpResponse::Ok().finish()
    }
}

/// The tenant's webhook secret, as `tenant create` printed it (it is stored encrypted).
fn webhook_secret(meta: &MetaApp) -> String {
    meta.webhook_secret.clone()
}

/// `sha256=<hex HMAC-SHA256(body, secret)>`, computed here independently of the daemon.
fn expected_signature(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// Submits `body` with the receiver as `callback_url`; returns the send's id.
async fn send_with_callback(meta: &MetaApp, mut body: Value, receiver: &Receiver) -> String {
    body["callback_url"] = json!(receiver.url);
    let (status, res) = meta.send_bulk(&body).await;
    assert_eq!(status, 202, "{res:#}");
    res["bulk_send_id"].as_str().unwrap().to_owned()
}

/// `(event, data.status)` of each request.
fn summary(received: &[Received]) -> Vec<(String, String)> {
    received
        .iter()
        .map(|r| {
            let v = r.json();
            (
                v["event"].as_str().unwrap_or_default().to_owned(),
                v["data"]["status"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

fn changed(status: &str) -> (String, String) {
    ("bulk_send.status_changed".into(), status.into())
}

fn progress(status: &str) -> (String, String) {
    ("bulk_send.progress".into(), status.into())
}

/// Waits (at most 20 s) until the send's stored events satisfy `done`; returns them.
async fn wait_events(
    meta_db: &mindo_bulk::storage::Db,
    id: &str,
    done: impl Fn(&[CallbackEventRow]) -> bool,
) -> Vec<CallbackEventRow> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let events = events_of_send(&mut meta_db.get().unwrap(), id).unwrap();
        if done(&events) {
            return events;
        }
        assert!(Instant::now() < deadline, "{events:#?}");
        actix_web::rt::time::sleep(Duration::from_millis(20)).await;
    }
}

fn all_delivered(events: &[CallbackEventRow]) -> bool {
    events.iter().all(|e| e.delivered_at.is_some())
}

/// Lets the daemon run a while of real time, longer than its progress check and polling
/// (for "nothing more arrives" checks).
async fn quiet() {
    actix_web::rt::time::sleep(Duration::from_millis(1_500)).await;
}

#[actix_web::test]
async fn status_changes_are_posted_in_order_signed_with_the_tenant_secret() {
    let meta = spawn_with_meta().await;
    let receiver = Receiver::start().await;
    let id = send_with_callback(&meta, welcome(NUMBER_10K, &phones(0, 3)), &receiver).await;
    meta.wait_finished(&id).await;
    let got = receiver.wait_for(2).await;
    quiet().await;
    let got_all = receiver.received();
    assert_eq!(got_all.len(), 2, "{:?}", summary(&got_all));
    assert_eq!(
        summary(&got),
        [changed("PROCESSING"), changed("COMPLETED")],
        "QUEUED → PROCESSING → COMPLETED, in order; no progress while the clock stands still"
    );

    let secret = webhook_secret(&meta);
    assert!(secret.starts_with("whsec_"));
    let status_keys: Vec<String> = {
        let now = meta.status(&id).await;
        now.as_object().unwrap().keys().cloned().collect()
    };
    let mut event_ids = Vec::new();
    for r in &got {
        assert_eq!(r.answered, 200);
        assert_eq!(r.content_type.as_deref(), Some("application/json"));
        assert_eq!(
            r.signature.as_deref(),
            Some(expected_signature(&secret, &r.body).as_str()),
            "the signature verifies with the tenant's webhook secret"
        );
        let v = r.json();
        let mut keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(keys, ["bulk_send_id", "data", "event", "occurred_at"]);
        assert_eq!(v["bulk_send_id"], json!(id));
        assert_eq!(v["occurred_at"], "2026-01-01T00:00:00Z");
        // `data` is the status object, as GET …/bulk-sends/{id}/ shows it.
        let data_keys: Vec<String> = v["data"].as_object().unwrap().keys().cloned().collect();
        assert_eq!(data_keys, status_keys);
        assert_eq!(v["data"]["id"], json!(id));
        assert_eq!(v["data"]["total_recipients"], 3);
        event_ids.push(r.event_id.clone().unwrap().parse::<i64>().unwrap());
    }
    assert!(event_ids[0] < event_ids[1]);
    let processing = got[0].json();
    assert!(processing["data"]["started_at"].is_string());
    assert_eq!(processing["data"]["completed_at"], Value::Null);
    let completed = got[1].json();
    assert_eq!(completed["data"]["sent_count"], 3);
    assert_eq!(completed["data"]["pending_count"], 0);
    assert_eq!(completed["data"]["progress_percentage"], 100.0);
    assert!(completed["data"]["completed_at"].is_string());

    receiver.server.stop(true).await;
}

#[actix_web::test]
async fn a_send_without_callback_url_posts_nothing() {
    let meta = spawn_with_meta().await;
    let (_, res) = meta.send_bulk(&welcome(NUMBER_10K, &phones(0, 2))).await;
    let id = res["bulk_send_id"].as_str().unwrap().to_owned();
    meta.wait_finished(&id).await;
    let events = events_of_send(&mut meta.app.db.get().unwrap(), &id).unwrap();
    assert!(events.is_empty(), "{events:?}");
}

#[actix_web::test]
async fn a_refused_event_is_posted_again_after_the_backoff_and_blocks_the_next() {
    let meta = spawn_with_meta().await;
    let receiver = Receiver::start().await;
    receiver.fail_next(1);
    let id = send_with_callback(&meta, welcome(NUMBER_10K, &phones(0, 1)), &receiver).await;
    meta.wait_finished(&id).await;
    let first = receiver.wait_for(1).await;
    assert_eq!(first[0].answered, 500);
    quiet().await;
    // The retry waits 1 s of the (frozen) clock, and COMPLETED waits behind it.
    assert_eq!(
        receiver.received().len(),
        1,
        "{:?}",
        summary(&receiver.received())
    );
    let events = events_of_send(&mut meta.app.db.get().unwrap(), &id).unwrap();
    assert_eq!(events.len(), 2);
    assert_eq!(events[0].attempts, 1);
    assert_eq!(events[0].next_attempt_at, START_MS + 1_000);
    assert!(events[0].last_error.as_deref().unwrap().contains("500"));
    assert_eq!(events[0].delivered_at, None);

    meta.app.clock.advance_ms(1_000);
    let got = receiver.wait_for(3).await;
    assert_eq!(
        summary(&got),
        [
            changed("PROCESSING"),
            changed("PROCESSING"),
            changed("COMPLETED")
        ]
    );
    assert_eq!(
        (got[1].answered, got[2].answered),
        (200, 200),
        "{:?}",
        summary(&got)
    );
    // The same event, byte for byte: the same id, body and signature.
    assert_eq!(got[0].body, got[1].body);
    assert_eq!(got[0].event_id, got[1].event_id);
    assert_eq!(got[0].signature, got[1].signature);
    let events = wait_events(&meta.app.db, &id, all_delivered).await;
    assert_eq!(events[0].attempts, 2);
    assert_eq!(events[1].attempts, 1);
    // Operators see the retries (the registry is shared by every test in this process).
    let metrics = meta.app.get("/metrics", None).await.text().await.unwrap();
    let retries: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix(r#"mindo_callback_attempts_total{result="retry"} "#))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0);
    assert!(retries >= 1.0, "{metrics}");
    receiver.server.stop(true).await;
}

#[actix_web::test]
async fn progress_is_posted_while_processing_at_most_every_five_seconds() {
    // Only `sent` webhooks: once 250 are sent, nothing changes on its own.
    let meta = spawn_with_meta_tweaked(
        |s| {
            s.behaviour.enforce_mps = false;
            s.behaviour.delivered_ratio = 0.0;
        },
        |_| {},
    )
    .await;
    let receiver = Receiver::start().await;
    // TIER_250: 250 go, 50 wait a day for the quota window; the send stays PROCESSING.
    let id = send_with_callback(&meta, welcome(NUMBER_250, &phones(0, 300)), &receiver).await;
    meta.wait_status(&id, |s| s["sent_count"] == 250).await;
    let got = receiver.wait_for(1).await;
    assert_eq!(summary(&got), [changed("PROCESSING")]);
    quiet().await;
    assert_eq!(receiver.received().len(), 1, "no progress before 5 s pass");

    // 5 s after the last event, with counters that moved since: one progress event.
    meta.app.clock.advance_ms(5_000);
    let got = receiver.wait_for(2).await;
    assert_eq!(
        summary(&got),
        [changed("PROCESSING"), progress("PROCESSING")]
    );
    let p1 = got[1].json();
    assert_eq!(p1["occurred_at"], "2026-01-01T00:00:05Z");
    assert_eq!(p1["data"]["sent_count"], 250);
    assert_eq!(p1["data"]["pending_count"], 50);
    let secret = webhook_secret(&meta);
    assert_eq!(
        got[1].signature.as_deref(),
        Some(expected_signature(&secret, &got[1].body).as_str())
    );

    // 5 s more, nothing changed: nothing to report.
    meta.app.clock.advance_ms(5_000);
    quiet().await;
    assert_eq!(
        receiver.received().len(),
        2,
        "{:?}",
        summary(&receiver.received())
    );

    // A change (a pause) is reported, but not sooner than 5 s after the last progress.
    let res = meta
        .app
        .post(
            &format!("/api/v1/meta-templates/bulk-sends/{id}/pause/"),
            &meta.api_key,
            &json!({}),
        )
        .await;
    assert_eq!(res.status(), 200);
    let got = receiver.wait_for(3).await;
    assert_eq!(got[2].json()["event"], "bulk_send.progress");
    assert_eq!(got[2].json()["occurred_at"], "2026-01-01T00:00:10Z");
    assert_eq!(got[2].json()["data"]["paused"], true);
    let res = meta
        .app
        .post(
            &format!("/api/v1/meta-templates/bulk-sends/{id}/resume/"),
            &meta.api_key,
            &json!({}),
        )
        .await;
    assert_eq!(res.status(), 200);
    meta.app.clock.advance_ms(4_999);
    quiet().await;
    assert_eq!(
        receiver.received().len(),
        3,
        "at most one progress event per 5 s"
    );
    meta.app.clock.advance_ms(1);
    let got = receiver.wait_for(4).await;
    assert_eq!(got[3].json()["event"], "bulk_send.progress");
    assert_eq!(got[3].json()["data"]["paused"], false);

    // The final status change follows the progress events.
    let res = meta
        .app
        .post(
            &format!("/api/v1/meta-templates/bulk-sends/{id}/cancel/"),
            &meta.api_key,
            &json!({}),
        )
        .await;
    assert_eq!(res.status(), 200);
    let got = receiver.wait_for(5).await;
    let last = got[4].json();
    assert_eq!(
        (last["event"].as_str(), last["data"]["status"].as_str()),
        (Some("bulk_send.status_changed"), Some("CANCELLED"))
    );
    assert_eq!(last["data"]["cancelled_count"], 50);
    assert_eq!(last["data"]["pending_count"], 0);
    wait_events(&meta.app.db, &id, all_delivered).await;
    meta.app.clock.advance_ms(60_000);
    quiet().await;
    assert_eq!(
        receiver.received().len(),
        5,
        "no progress after the send finished"
    );
    for r in receiver.received() {
        assert_eq!(r.answered, 200);
    }
    receiver.server.stop(true).await;
}

#[actix_web::test]
async fn a_restart_does_not_lose_a_pending_event() {
    let meta = spawn_with_meta().await;
    let receiver = Receiver::start().await;
    receiver.fail_next(usize::MAX);
    let id = send_with_callback(&meta, welcome(NUMBER_10K, &phones(0, 2)), &receiver).await;
    meta.wait_finished(&id).await;
    receiver.wait_for(1).await;
    // The refused attempt is recorded (a retry is due 1 s later).
    wait_events(&meta.app.db, &id, |e| e.len() == 2 && e[0].attempts == 1).await;
    meta.app.crash().await;
    let events = events_of_send(&mut meta.app.db.get().unwrap(), &id).unwrap();
    assert_eq!(events.len(), 2, "{events:?}");
    assert!(events.iter().all(|e| e.delivered_at.is_none()));

    // The receiver recovers while the daemon is down.
    receiver.fail_next(0);
    let failed_attempts = receiver.received().len();
    let secret = meta.sim.app_secret().to_owned();
    let graph_url = meta.sim.base_url().to_owned();
    let restarted = spawn_app_on(meta.app.database.clone(), meta.app.clock.clone(), |c| {
        c.graph_url = graph_url;
        c.app_secret = Some(secret.into());
    })
    .await;
    // The backoff of the refused attempt passes.
    restarted.clock.advance_ms(1_000);
    let got = receiver.wait_for(failed_attempts + 2).await;
    let after: Vec<_> = got[failed_attempts..].to_vec();
    assert_eq!(
        summary(&after),
        [changed("PROCESSING"), changed("COMPLETED")]
    );
    assert!(after.iter().all(|r| r.answered == 200));
    wait_events(&restarted.db, &id, all_delivered).await;
    receiver.server.stop(true).await;
}

#[actix_web::test]
async fn a_delivery_to_a_target_no_longer_allowed_is_refused_recorded_and_not_retried() {
    let meta = spawn_with_meta().await;
    let receiver = Receiver::start().await;
    receiver.fail_next(1);
    let id = send_with_callback(&meta, welcome(NUMBER_10K, &phones(0, 1)), &receiver).await;
    meta.wait_finished(&id).await;
    wait_events(&meta.app.db, &id, |e| e.len() == 2 && e[0].attempts == 1).await;
    meta.app.crash().await;
    let tried = receiver.received().len();

    // The operator turns loopback callbacks off: the receiver on 127.0.0.1 is refused
    // before any connection, the reason recorded, the events given up.
    let (secret, graph_url) = (
        meta.sim.app_secret().to_owned(),
        meta.sim.base_url().to_owned(),
    );
    let restarted = spawn_app_on(meta.app.database.clone(), meta.app.clock.clone(), |c| {
        c.graph_url = graph_url;
        c.app_secret = Some(secret.into());
        c.callback_allow_loopback = false;
    })
    .await;
    restarted.clock.advance_ms(1_000);
    let events = wait_events(&restarted.db, &id, |e| {
        e.iter().all(|e| e.failed_at.is_some())
    })
    .await;
    for event in &events {
        assert_eq!(
            event.last_error.as_deref(),
            Some("refused: callback_url points to 127.0.0.1, a loopback address"),
            "{event:?}"
        );
        assert!(event.delivered_at.is_none());
    }
    assert_eq!(
        events.iter().map(|e| e.attempts).collect::<Vec<_>>(),
        [2, 1]
    );
    // Not retried: a day later nothing more has been attempted or received.
    restarted.clock.advance_ms(24 * 60 * 60 * 1000);
    quiet().await;
    let later = events_of_send(&mut restarted.db.get().unwrap(), &id).unwrap();
    assert_eq!(later.iter().map(|e| e.attempts).collect::<Vec<_>>(), [2, 1]);
    assert_eq!(receiver.received().len(), tried);
    receiver.server.stop(true).await;
}

#[actix_web::test]
async fn a_receiver_named_by_host_is_resolved_vetted_and_reached() {
    // `localhost` resolves from /etc/hosts (no query leaves the machine); the delivery
    // connects to the vetted address it resolved to.
    let meta = spawn_with_meta().await;
    let receiver = Receiver::start().await;
    let named = receiver.url.replace("127.0.0.1", "localhost");
    let mut body = welcome(NUMBER_10K, &phones(0, 1));
    body["callback_url"] = json!(named);
    let (status, res) = meta.send_bulk(&body).await;
    assert_eq!(status, 202, "{res:#}");
    let id = res["bulk_send_id"].as_str().unwrap().to_owned();
    meta.wait_finished(&id).await;
    let got = receiver.wait_for(2).await;
    assert_eq!(summary(&got), [changed("PROCESSING"), changed("COMPLETED")]);
    wait_events(&meta.app.db, &id, all_delivered).await;
    receiver.server.stop(true).await;
}

#[actix_web::test]
async fn an_event_is_given_up_24_hours_after_it_occurred() {
    let meta = spawn_with_meta().await;
    let receiver = Receiver::start().await;
    receiver.fail_next(usize::MAX);
    let id = send_with_callback(&meta, welcome(NUMBER_10K, &phones(0, 1)), &receiver).await;
    meta.wait_finished(&id).await;
    wait_events(&meta.app.db, &id, |e| e.len() == 2 && e[0].attempts == 1).await;

    // A day later the next attempt is the last: it fails, the event is given up, and the
    // next event of the send gets its turn (and is given up too: it is as old).
    meta.app.clock.advance_ms(24 * 60 * 60 * 1000);
    let events = wait_events(&meta.app.db, &id, |e| {
        e.iter().all(|e| e.failed_at.is_some())
    })
    .await;
    assert_eq!(
        events.iter().map(|e| e.attempts).collect::<Vec<_>>(),
        [2, 1]
    );
    assert!(events.iter().all(|e| e.delivered_at.is_none()));
    quiet().await;
    assert_eq!(
        summary(&receiver.received()),
        [
            changed("PROCESSING"),
            changed("PROCESSING"),
            changed("COMPLETED")
        ]
    );

    // Settled events are purged after a while, except each send's latest.
    let later = meta.app.clock.now_ms() + 1;
    let purged = purge_settled(&mut meta.app.db.get().unwrap(), later).unwrap();
    assert_eq!(purged, 1);
    let left = events_of_send(&mut meta.app.db.get().unwrap(), &id).unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].id, events[1].id);
    receiver.server.stop(true).await;
}
