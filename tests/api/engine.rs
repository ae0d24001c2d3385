//! The engine's behaviour against the simulator: schedules, controls, limits, errors,
//! restarts. Time that matters (schedules, quota windows, pair rate, backoff, reconcile
//! grace) is the injected clock, moved by the tests.

use std::time::Duration;

use mindo_bulk::clock::Clock;
use mindo_bulk::meta::client::TemplateMessage;
use serde_json::{json, Value};

use crate::helpers::spawn_app_on;
use crate::meta::{
    phones, spawn_with_meta, spawn_with_meta_tweaked, welcome, MetaApp, NUMBER_10K, NUMBER_250,
    WABA_250,
};

const HOUR_MS: i64 = 60 * 60 * 1000;

fn id_of(body: &Value) -> String {
    body["bulk_send_id"].as_str().unwrap().to_owned()
}

/// Lets the engine run for a while of real time (for "nothing happens" checks).
async fn settle() {
    actix_web::rt::time::sleep(Duration::from_millis(300)).await;
}

async fn control(meta: &MetaApp, id: &str, action: &str) -> (u16, Value) {
    let res = meta
        .app
        .post(
            &format!("/api/v1/meta-templates/bulk-sends/{id}/{action}/"),
            &meta.api_key,
            &json!({}),
        )
        .await;
    (res.status().as_u16(), res.json().await.unwrap())
}

#[actix_web::test]
async fn a_scheduled_send_waits_for_its_time() {
    let meta = spawn_with_meta().await;
    let mut body = welcome(NUMBER_10K, &phones(0, 3));
    body["scheduled_at"] = json!("2026-01-01T01:00:00Z");
    let (status, res) = meta.send_bulk(&body).await;
    assert_eq!(status, 202);
    let id = id_of(&res);
    settle().await;
    let s = meta.status(&id).await;
    assert_eq!(s["status"], "QUEUED");
    assert_eq!(s["scheduled_at"], "2026-01-01T01:00:00Z");
    assert_eq!(meta.stats().accepted_total, 0);
    meta.app.clock.advance_ms(HOUR_MS);
    let s = meta.wait_status(&id, |s| s["status"] == "COMPLETED").await;
    assert_eq!(s["sent_count"], 3);
}

#[actix_web::test]
async fn pause_holds_a_send_and_resume_finishes_it() {
    let meta = spawn_with_meta().await;
    let mut body = welcome(NUMBER_10K, &phones(0, 4));
    body["scheduled_at"] = json!("2026-01-01T01:00:00Z");
    let (_, res) = meta.send_bulk(&body).await;
    let id = id_of(&res);
    let (status, paused) = control(&meta, &id, "pause").await;
    assert_eq!(status, 200, "{paused:#}");
    assert_eq!(paused["paused"], true);
    assert!(paused["pause_reason"].is_string());
    meta.app.clock.advance_ms(HOUR_MS);
    settle().await;
    assert_eq!(
        meta.stats().accepted_total,
        0,
        "a paused send dispatches nothing"
    );
    let (status, resumed) = control(&meta, &id, "resume").await;
    assert_eq!(status, 200);
    assert_eq!(resumed["paused"], false);
    assert_eq!(resumed["pause_reason"], Value::Null);
    let s = meta.wait_status(&id, |s| s["status"] == "COMPLETED").await;
    assert_eq!(s["sent_count"], 4);
    let (status, res) = control(&meta, &id, "pause").await;
    assert_eq!(
        (status, res["code"].as_str()),
        (409, Some("already_finished"))
    );
}

/// On PostgreSQL a pause or resume is stored by itself, not queued behind the engine's writer:
/// it is answered while the writer waits for a lock another session holds (a writer group can
/// take a few hundred ms while hundreds of sends dispatch; 500 resumes queued behind such
/// groups took 98 s in `mindo-bench --only idle`). SQLite has one writer, so there they queue.
#[actix_web::test]
async fn on_postgres_a_resume_is_not_queued_behind_a_blocked_writer() {
    use diesel::connection::SimpleConnection;
    use diesel::{Connection, RunQueryDsl};
    let meta = spawn_with_meta().await;
    if !meta.app.database.is_postgres() {
        return;
    }
    let mut ids = Vec::new();
    for first in [0, 3] {
        let mut body = welcome(NUMBER_10K, &phones(first, 3));
        body["scheduled_at"] = json!("2026-01-01T01:00:00Z");
        let (_, res) = meta.send_bulk(&body).await;
        ids.push(id_of(&res));
    }
    let (blocked, resumed) = (ids[0].clone(), ids[1].clone());
    assert_eq!(control(&meta, &resumed, "pause").await.0, 200);

    // Another session holds the first send's row; a cancel of that send is then a writer job
    // that waits for the lock, and the writer with it.
    let url = meta.app.database.url().to_owned();
    let mut holder = diesel::PgConnection::establish(&url).unwrap();
    holder
        .batch_execute(&format!(
            "BEGIN; SELECT 1 FROM bulk_sends WHERE id = '{blocked}' FOR UPDATE;"
        ))
        .unwrap();
    let cancelled = std::cell::Cell::new(false);
    let cancel = async {
        let answer = control(&meta, &blocked, "cancel").await;
        cancelled.set(true);
        answer
    };
    let resume_while_held = async {
        let mut watcher = diesel::PgConnection::establish(&url).unwrap();
        let waiting_for_a_lock = diesel::dsl::sql::<diesel::sql_types::BigInt>(
            "(SELECT count(*) FROM pg_stat_activity \
              WHERE datname = current_database() AND wait_event_type = 'Lock')",
        );
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while diesel::select(waiting_for_a_lock.clone())
            .get_result::<i64>(&mut watcher)
            .unwrap()
            == 0
        {
            assert!(
                std::time::Instant::now() < deadline,
                "the cancel never waited"
            );
            actix_web::rt::time::sleep(Duration::from_millis(20)).await;
        }
        // The resume is answered while the writer still waits (were it queued behind the
        // cancel, it would be answered only after the lock is released, that is never).
        let answer = actix_web::rt::time::timeout(
            Duration::from_secs(60),
            control(&meta, &resumed, "resume"),
        )
        .await
        .expect("the resume waited for the writer");
        assert!(!cancelled.get(), "the writer was not held");
        holder.batch_execute("ROLLBACK").unwrap();
        answer
    };
    let ((cancel_status, _), (status, resumed_body)) =
        futures_util::future::join(cancel, resume_while_held).await;
    assert_eq!(status, 200, "{resumed_body:#}");
    assert_eq!(resumed_body["paused"], false);
    assert_eq!(cancel_status, 200);
    meta.app.clock.advance_ms(HOUR_MS);
    let s = meta
        .wait_status(&resumed, |s| s["status"] == "COMPLETED")
        .await;
    assert_eq!(s["sent_count"], 3);
    assert_eq!(meta.status(&ids[0]).await["cancelled_count"], 3);
}

/// Quota and fairness tests leave throughput enforcement to `the_throughput_cap_is_never_crossed`: on a
/// loaded test machine, scheduling delays between our grant and the simulator's clock can
/// exceed the limiter's safety margin, and a 130429 retry waits on the frozen test clock.
async fn spawn_for_quota() -> MetaApp {
    spawn_with_meta_tweaked(|s| s.behaviour.enforce_mps = false, |_| {}).await
}

#[actix_web::test]
async fn a_tier_250_number_sends_exactly_250_and_waits_for_the_window() {
    let meta = spawn_for_quota().await;
    let (status, res) = meta.send_bulk(&welcome(NUMBER_250, &phones(0, 300))).await;
    assert_eq!(status, 202);
    assert_eq!(
        res["quota_info"],
        json!({"can_send": false, "quota_needed": 300, "quota_available": 250,
               "quota_total": 250, "tier": "TIER_250"})
    );
    assert!(res["estimated_time_minutes"].as_f64().unwrap() >= 24.0 * 60.0);
    let id = id_of(&res);
    let s = meta.wait_status(&id, |s| s["sent_count"] == 250).await;
    settle().await;
    let s2 = meta.status(&id).await;
    assert_eq!(s2["sent_count"], 250, "{s:#}");
    assert_eq!(s2["pending_count"], 50);
    assert_eq!(s2["status"], "PROCESSING");
    let stats = meta.stats();
    assert_eq!(stats.accepted_total, 250);
    assert!(
        stats.refusals_by_code.is_empty(),
        "{:?}",
        stats.refusals_by_code
    );

    // The window moves: a day later the rest goes.
    meta.app.clock.advance_ms(24 * HOUR_MS + 1_000);
    let s = meta.wait_status(&id, |s| s["status"] == "COMPLETED").await;
    assert_eq!(s["sent_count"], 300);
    let stats = meta.stats();
    assert_eq!(stats.accepted_total, 300);
    assert!(
        stats.refusals_by_code.is_empty(),
        "{:?}",
        stats.refusals_by_code
    );
}

#[actix_web::test]
async fn cancel_stops_dispatching_and_counts_the_rest_as_cancelled() {
    let meta = spawn_for_quota().await;
    let (_, res) = meta.send_bulk(&welcome(NUMBER_250, &phones(0, 300))).await;
    let id = id_of(&res);
    meta.wait_status(&id, |s| s["sent_count"] == 250).await;
    let (status, cancelled) = control(&meta, &id, "cancel").await;
    assert_eq!(status, 200, "{cancelled:#}");
    assert_eq!(cancelled["status"], "CANCELLED");
    assert_eq!(cancelled["cancelled_count"], 50);
    assert_eq!(cancelled["pending_count"], 0);
    meta.app.clock.advance_ms(24 * HOUR_MS + 1_000);
    settle().await;
    assert_eq!(
        meta.stats().accepted_total,
        250,
        "nothing is dispatched after a cancel"
    );
    let s = meta.status(&id).await;
    assert_eq!(s["status"], "CANCELLED");
    assert_eq!(
        s["sent_count"].as_u64().unwrap() + s["cancelled_count"].as_u64().unwrap(),
        300
    );
    let (status, res) = control(&meta, &id, "cancel").await;
    assert_eq!(
        (status, res["code"].as_str()),
        (409, Some("already_finished"))
    );
}

#[actix_web::test]
async fn the_throughput_cap_is_never_crossed() {
    // The operator caps the number at 10 mps (`number set`), which the limiter applies; Meta
    // (the simulator) must never see more than 10 in a second. The margin (what separates a
    // grant from its arrival: commit, scheduling) is set wide here because CI machines run
    // many tests at once; the pacing arithmetic is unit-tested in `domain::pacing`, and the
    // benchmark measures the default margin's precision on a quiet machine.
    let meta = spawn_with_meta_tweaked(|_| {}, |c| c.throughput_margin_ms = 200).await;
    let mut conn = meta.app.db.get().unwrap();
    mindo_bulk::storage::accounts::set_number_override(
        &mut conn,
        NUMBER_10K,
        &mindo_bulk::storage::accounts::NumberOverride {
            throughput_mps: Some(Some(10)),
            paused: None,
        },
        meta.app.clock.now_ms(),
    )
    .unwrap();
    drop(conn);
    let started = std::time::Instant::now();
    let (_, res) = meta.send_bulk(&welcome(NUMBER_10K, &phones(0, 40))).await;
    let id = id_of(&res);
    meta.wait_status(&id, |s| s["status"] == "COMPLETED").await;
    // 40 messages at 10 per second cannot take less than 3 s (the first 10 may go at once).
    assert!(
        started.elapsed() >= Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    let stats = meta.stats();
    assert_eq!(stats.accepted_total, 40);
    assert!(
        stats.refusals_by_code.is_empty(),
        "{:?}",
        stats.refusals_by_code
    );
    let number = &stats.numbers[NUMBER_10K];
    assert!(
        number.max_accepted_in_1s <= 10,
        "{}",
        number.max_accepted_in_1s
    );
    assert_eq!(stats.accepted_over_mps, 0);
}

#[actix_web::test]
async fn the_pair_rate_holds_a_recipient_across_two_sends() {
    let meta = spawn_with_meta().await;
    let same = phones(0, 1);
    let (_, a) = meta.send_bulk(&welcome(NUMBER_10K, &same)).await;
    let a = id_of(&a);
    meta.wait_status(&a, |s| s["status"] == "COMPLETED").await;
    let (_, b) = meta.send_bulk(&welcome(NUMBER_10K, &same)).await;
    let b = id_of(&b);
    settle().await;
    assert_eq!(
        meta.status(&b).await["pending_count"],
        1,
        "held by the pair rate"
    );
    // Meta's 6 s, counted from its answer to the first message, plus the engine's margin.
    meta.app.clock.advance_ms(6_000);
    settle().await;
    assert_eq!(
        meta.status(&b).await["pending_count"],
        1,
        "6 s are not enough"
    );
    meta.app
        .clock
        .advance_ms(mindo_bulk::domain::pacing::PAIR_MARGIN_MS);
    meta.wait_status(&b, |s| s["status"] == "COMPLETED").await;
    let stats = meta.stats();
    assert_eq!(stats.accepted_by_recipient[&same[0]], 2);
    assert!(
        stats.refusals_by_code.is_empty(),
        "{:?}",
        stats.refusals_by_code
    );
}

#[actix_web::test]
async fn transient_errors_are_retried_until_sent() {
    let meta = spawn_with_meta_tweaked(|s| s.behaviour.error_5xx_ratio = 0.5, |_| {}).await;
    let (_, res) = meta.send_bulk(&welcome(NUMBER_10K, &phones(0, 20))).await;
    let id = id_of(&res);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let s = meta.status(&id).await;
        if s["status"] == "COMPLETED" {
            assert_eq!(s["sent_count"], 20);
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{s:#}");
        // Backoff is on the injected clock.
        meta.app.clock.advance_ms(5_000);
        actix_web::rt::time::sleep(Duration::from_millis(30)).await;
    }
    let stats = meta.stats();
    assert_eq!(stats.accepted_total, 20);
    assert_eq!(stats.recipients_accepted_more_than_once, 0);
    assert!(stats.faults.errors_5xx > 0, "{:?}", stats.faults);
    let messages: Value = meta
        .app
        .get(
            &format!("/api/v1/meta-templates/bulk-sends/{id}/messages/?page_size=100"),
            Some(&meta.api_key),
        )
        .await
        .json()
        .await
        .unwrap();
    assert!(messages["results"]
        .as_array()
        .unwrap()
        .iter()
        .any(|m| m["attempts"].as_i64().unwrap() > 1));
}

#[actix_web::test]
async fn a_permanent_error_fails_only_its_message() {
    let meta = spawn_with_meta().await;
    // The number itself (131021, sender equals recipient) and an undeliverable one (131026,
    // by webhook).
    let mut list = phones(0, 3);
    list.push("+12025550102".into());
    list.push("+14155550100".into());
    let (_, res) = meta.send_bulk(&welcome(NUMBER_10K, &list)).await;
    let id = id_of(&res);
    let s = meta
        .wait_status(&id, |s| s["status"] == "PARTIAL" && s["failed_count"] == 2)
        .await;
    assert_eq!(s["sent_count"], 3);
    let failed: Value = meta
        .app
        .get(
            &format!("/api/v1/meta-templates/bulk-sends/{id}/messages/?status=failed"),
            Some(&meta.api_key),
        )
        .await
        .json()
        .await
        .unwrap();
    let codes: Vec<i64> = failed["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["error_code"].as_i64().unwrap())
        .collect();
    assert!(
        codes.contains(&131021) && codes.contains(&131026),
        "{failed:#}"
    );
    assert!(failed["results"][0]["error_message"].is_string());
    assert!(failed["results"][0]["failed_at"].is_string());
}

#[actix_web::test]
async fn a_disabled_template_stops_the_send() {
    let meta = spawn_with_meta().await;
    let mut body = welcome(NUMBER_250, &phones(0, 5));
    body["scheduled_at"] = json!("2026-01-01T01:00:00Z");
    let (_, res) = meta.send_bulk(&body).await;
    let id = id_of(&res);
    meta.sim
        .set_template_status(WABA_250, "welcome_message", "es", "DISABLED")
        .unwrap();
    meta.app.clock.advance_ms(HOUR_MS);
    let s = meta
        .wait_status(&id, |s| s["status"] == "FAILED" && s["pending_count"] == 0)
        .await;
    assert_eq!(s["failed_count"], 5);
    assert_eq!(s["pending_count"], 0);
    assert_eq!(meta.stats().accepted_total, 0);
}

/// The race behind a client's pause overwritten by `template_paused:`: an actor that read its
/// send's row just before the client's pause committed believed the send was running. Whatever
/// an actor believes, the database marks nothing of a paused, cancelled or stopped send.
#[actix_web::test]
async fn no_message_of_a_paused_or_cancelled_send_can_be_marked_dispatching() {
    use mindo_bulk::storage::sends::{self, DispatchMarks};
    let meta = spawn_with_meta().await;
    let mut ids = Vec::new();
    for action in ["pause", "cancel"] {
        let mut body = welcome(NUMBER_10K, &phones(0, 3));
        body["scheduled_at"] = json!("2026-01-01T01:00:00Z");
        let (_, res) = meta.send_bulk(&body).await;
        let id = id_of(&res);
        assert_eq!(control(&meta, &id, action).await.0, 200);
        ids.push(id);
    }
    let now = meta.app.clock.now_ms();
    let mut conn = meta.app.db.get().unwrap();
    for id in &ids {
        let (_, rows) = sends::messages_page(&mut conn, id, None, 0, 10).unwrap();
        let marks: Vec<(i64, String)> = rows.iter().map(|m| (m.id, m.recipient.clone())).collect();
        let held =
            sends::mark_dispatching(&mut conn, id, "102938475610002", &marks, now, None).unwrap();
        assert_eq!(held, DispatchMarks::Held);
    }
    drop(conn);
    let paused = meta.status(&ids[0]).await;
    assert_eq!(
        (
            paused["pending_count"].as_u64(),
            paused["pause_reason"].as_str()
        ),
        (Some(3), Some("paused by the client"))
    );
    assert_eq!(meta.status(&ids[1]).await["cancelled_count"], 3);
    assert_eq!(meta.stats().accepted_total, 0);
}

/// A crash with messages in `dispatching`: some had reached Meta (their webhooks arrive after
/// the restart), some had not. After the restart nothing is sent twice.
async fn restart_with_messages_in_flight(policy_fail: bool) {
    let meta = spawn_with_meta_tweaked(
        |_| {},
        |c| {
            if policy_fail {
                c.reconcile_policy = mindo_bulk::config::ReconcilePolicy::Fail;
            }
        },
    )
    .await;
    let list = phones(0, 6);
    let mut body = welcome(NUMBER_10K, &list);
    body["scheduled_at"] = json!("2026-01-01T01:00:00Z");
    let (_, res) = meta.send_bulk(&body).await;
    let id = id_of(&res);
    meta.app.crash().await;

    // What the daemon had done before dying: four messages marked dispatching, two of them
    // already accepted by Meta.
    let now = meta.app.clock.now_ms();
    let mut conn = meta.app.db.get().unwrap();
    let (_, rows) = mindo_bulk::storage::sends::messages_page(&mut conn, &id, None, 0, 10).unwrap();
    let marks: Vec<(i64, String)> = rows[..4]
        .iter()
        .map(|m| (m.id, m.recipient.clone()))
        .collect();
    let marked = mindo_bulk::storage::sends::mark_dispatching(
        &mut conn,
        &id,
        "102938475610002",
        &marks,
        now,
        None,
    )
    .unwrap();
    assert_eq!(
        marked,
        mindo_bulk::storage::sends::DispatchMarks::Marked(marks.iter().map(|m| m.0).collect())
    );
    drop(conn);
    let graph = mindo_bulk::config::Config {
        graph_url: meta.sim.base_url().to_owned(),
        ..Default::default()
    }
    .graph_client();
    let components = json!([{"type": "body", "parameters": [
        {"type": "text", "parameter_name": "customer_name", "text": "Ana"}]}]);
    for (message_id, recipient) in &marks[..2] {
        let opaque = format!("{id}/{message_id}");
        let msg = TemplateMessage::new(recipient, &opaque, "welcome_message", "es", &components);
        graph
            .send_template("sandbox-token", NUMBER_10K, &msg)
            .await
            .expect("the simulator accepts");
    }

    // The restart.
    let secret = meta.sim.app_secret().to_owned();
    let graph_url = meta.sim.base_url().to_owned();
    let restarted = spawn_app_on(meta.app.database.clone(), meta.app.clock.clone(), |c| {
        c.graph_url = graph_url;
        c.app_secret = Some(secret.into());
        if policy_fail {
            c.reconcile_policy = mindo_bulk::config::ReconcilePolicy::Fail;
        }
    })
    .await;
    meta.sim
        .set_webhook_url(Some(format!("{}/webhooks/meta/", restarted.address)));
    let meta = MetaApp {
        app: restarted,
        ..meta
    };
    // The two that reached Meta are resolved by their webhooks, not resent.
    meta.wait_status(&id, |s| s["sent_count"] == 2).await;
    // The schedule passes, and the grace period of the two that did not reach Meta.
    meta.app.clock.advance_ms(HOUR_MS);
    let s = meta.wait_finished(&id).await;
    let stats = meta.stats();
    for phone in &list[..2] {
        assert_eq!(stats.accepted_by_recipient[phone], 1, "{phone}");
    }
    if policy_fail {
        assert_eq!(s["status"], "PARTIAL", "{s:#}");
        assert_eq!(s["failed_count"], 2);
        assert_eq!(s["sent_count"], 4);
        assert_eq!(stats.accepted_total, 4);
    } else {
        assert_eq!(s["status"], "COMPLETED", "{s:#}");
        assert_eq!(s["sent_count"], 6);
        assert_eq!(stats.accepted_total, 6);
    }
    assert_eq!(stats.recipients_accepted_more_than_once, 0);
}

#[actix_web::test]
async fn a_restart_reconciles_in_flight_messages_and_resends_the_rest() {
    restart_with_messages_in_flight(false).await;
}

#[actix_web::test]
async fn a_restart_with_the_fail_policy_fails_unknown_outcomes() {
    restart_with_messages_in_flight(true).await;
}

#[actix_web::test]
async fn sends_share_a_number_fairly() {
    let meta = spawn_for_quota().await;
    let (_, a) = meta.send_bulk(&welcome(NUMBER_10K, &phones(0, 160))).await;
    let (_, b) = meta
        .send_bulk(&welcome(NUMBER_10K, &phones(1000, 160)))
        .await;
    let (a, b) = (id_of(&a), id_of(&b));
    // When the first is half done, the second has made comparable progress.
    meta.wait_status(&a, |s| s["sent_count"].as_u64().unwrap() >= 80)
        .await;
    let sb = meta.status(&b).await;
    assert!(sb["sent_count"].as_u64().unwrap() >= 40, "{sb:#}");
    meta.wait_status(&a, |s| s["status"] == "COMPLETED").await;
    meta.wait_status(&b, |s| s["status"] == "COMPLETED").await;
    assert_eq!(meta.stats().accepted_total, 320);
}

#[actix_web::test]
async fn a_finished_send_leaves_no_actor_behind() {
    let meta = spawn_with_meta().await;
    let (_, res) = meta.send_bulk(&welcome(NUMBER_10K, &phones(0, 3))).await;
    let id = id_of(&res);
    meta.wait_status(&id, |s| s["status"] == "COMPLETED").await;
    // The actor goes once the supervisor and the limiter have let go of it, and is not
    // brought back (actix restarts a supervised actor that stops while still referenced).
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while meta.app.engine.live_send_actors() > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the finished send's actor is still running"
        );
        actix_web::rt::time::sleep(Duration::from_millis(20)).await;
    }
    actix_web::rt::time::sleep(Duration::from_millis(1_500)).await;
    assert_eq!(meta.app.engine.live_send_actors(), 0);
}

#[actix_web::test]
async fn a_spam_rate_refusal_pauses_the_number_with_metas_reason() {
    // Our record says unlimited, Meta's says 250: Meta refuses the 251st with 131048.
    let meta = spawn_for_quota().await;
    {
        use diesel::prelude::*;
        use mindo_bulk::storage::schema::phone_numbers;
        let mut conn = meta.app.db.get().unwrap();
        mindo_bulk::with_backend!(&mut *conn, |c| diesel::update(
            phone_numbers::table.filter(phone_numbers::phone_number_id.eq(NUMBER_250))
        )
        .set(phone_numbers::messaging_limit_tier.eq("TIER_UNLIMITED"))
        .execute(c))
        .unwrap();
    }
    let (_, res) = meta.send_bulk(&welcome(NUMBER_250, &phones(0, 260))).await;
    let id = id_of(&res);
    meta.wait_status(&id, |s| s["sent_count"] == 250).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let number = loop {
        let mut conn = meta.app.db.get().unwrap();
        let (number, _) =
            mindo_bulk::storage::accounts::tenant_number(&mut conn, meta.tenant_id, NUMBER_250)
                .unwrap()
                .unwrap();
        if number.paused {
            break number;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the number was never paused"
        );
        actix_web::rt::time::sleep(Duration::from_millis(20)).await;
    };
    let reason = number.pause_reason.unwrap_or_default();
    assert!(reason.contains("131048"), "{reason}");
    assert!(meta.stats().refusals_by_code.contains_key(&131048));
    let s = meta.status(&id).await;
    assert_eq!(s["pending_count"], 10, "{s:#}");
}
