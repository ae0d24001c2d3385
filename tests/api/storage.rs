//! Storage on the database the suite runs on (SQLite, or PostgreSQL when
//! `MINDO_TEST_POSTGRES_URL` is set): the status transition (`storage::status`) moves counters,
//! derives the status and puts the client's event in the outbox in one transaction, and the
//! detail read names what a status object shows.

use diesel::prelude::*;
use mindo_bulk::clock::Clock;
use mindo_bulk::domain::message::{BulkStatus, EngineStep};
use mindo_bulk::storage::callbacks::events_of_send;
use mindo_bulk::storage::conn::write_transaction;
use mindo_bulk::storage::schema::bulk_sends;
use mindo_bulk::storage::sends::{self, CounterDelta};
use mindo_bulk::storage::{status, StorageError};
use serde_json::json;

use crate::meta::{phones, spawn_with_meta, welcome, MetaApp, NUMBER_10K};

/// A send scheduled a day ahead (nothing dispatches it) with a `callback_url`: its counters and
/// status move only when a test moves them.
async fn waiting_send(meta: &MetaApp, recipients: u32) -> String {
    let mut body = welcome(NUMBER_10K, &phones(0, recipients));
    body["callback_url"] = json!("http://127.0.0.1:9/hooks");
    body["scheduled_at"] = json!(mindo_bulk::clock::format_api_time(
        meta.app.clock.now_ms() + 86_400_000
    ));
    let (code, res) = meta.send_bulk(&body).await;
    assert_eq!(code, 202, "{res:#}");
    res["bulk_send_id"].as_str().unwrap().to_owned()
}

/// `n` messages moved from pending to sent, as the counters see it.
fn sent(n: usize) -> CounterDelta {
    CounterDelta::moved_many(EngineStep::Accepted, n)
}

#[actix_web::test]
async fn a_status_change_commits_with_its_event_and_only_a_change_enqueues_one() {
    let meta = spawn_with_meta().await;
    let id = waiting_send(&meta, 3).await;
    let now = meta.app.clock.now_ms();
    let mut conn = meta.app.db.get().unwrap();
    // As its first dispatch would (a send that never started stays QUEUED).
    diesel::update(bulk_sends::table.find(&id))
        .set(bulk_sends::started_at.eq(now))
        .execute(&mut conn)
        .unwrap();
    let events_before = events_of_send(&mut conn, &id).unwrap().len();

    // Derived again, QUEUED becomes PROCESSING: one event for that change; derived once more
    // with nothing changed: none.
    write_transaction(&mut conn, |c| status::refresh_status(c, &id, now)).unwrap();
    let events_before = events_before + 1;
    assert_eq!(events_of_send(&mut conn, &id).unwrap().len(), events_before);
    let unchanged = write_transaction(&mut conn, |c| status::refresh_status(c, &id, now)).unwrap();
    assert_eq!(unchanged, Some(BulkStatus::Processing));
    assert_eq!(events_of_send(&mut conn, &id).unwrap().len(), events_before);

    // The transaction fails after the counters moved: neither the change nor its event stays.
    let failed: Result<(), StorageError> = write_transaction(&mut conn, |c| {
        let s = status::adjust_counters(c, &id, &sent(3), now)?;
        assert_eq!(s, Some(BulkStatus::Completed), "inside the transaction");
        Err(StorageError::Cancelled)
    });
    assert!(failed.is_err());
    let row = sends::load_send(&mut conn, &id).unwrap().unwrap();
    assert_eq!((row.status(), row.sent_count), (BulkStatus::Processing, 0));
    assert_eq!(events_of_send(&mut conn, &id).unwrap().len(), events_before);

    // Committed: the status, `completed_at` and one `status_changed` event whose data is the
    // new status object.
    let s = write_transaction(&mut conn, |c| {
        status::adjust_counters(c, &id, &sent(3), now)
    })
    .unwrap();
    assert_eq!(s, Some(BulkStatus::Completed));
    let row = sends::load_send(&mut conn, &id).unwrap().unwrap();
    assert_eq!(row.sent_count, 3);
    assert_eq!(row.completed_at, Some(now));
    let events = events_of_send(&mut conn, &id).unwrap();
    assert_eq!(events.len(), events_before + 1);
    let event = events.last().unwrap();
    assert_eq!(event.event, "bulk_send.status_changed");
    let body: serde_json::Value = serde_json::from_str(&event.payload).unwrap();
    assert_eq!(body["data"]["status"], "COMPLETED", "{body:#}");
    assert_eq!(body["data"]["sent_count"], 3, "{body:#}");

    // Derived again with nothing changed: no second event.
    write_transaction(&mut conn, |c| status::refresh_status(c, &id, now + 1)).unwrap();
    assert_eq!(
        events_of_send(&mut conn, &id).unwrap().len(),
        events_before + 1
    );
}

#[actix_web::test]
async fn the_detail_read_names_the_template_number_and_key() {
    let meta = spawn_with_meta().await;
    let id = waiting_send(&meta, 1).await;
    let status = meta.status(&id).await;
    let mut conn = meta.app.db.get().unwrap();
    let tenant = sends::load_send(&mut conn, &id).unwrap().unwrap().tenant_id;
    let detail = sends::load_detail(&mut conn, tenant, &id).unwrap().unwrap();
    assert_eq!(detail.send.id, id);
    assert_eq!(status["template"]["id"], detail.template.id);
    assert_eq!(status["template"]["template_name"], detail.template.name);
    assert_eq!(status["template"]["language"], detail.template.language);
    assert_eq!(status["template"]["status"], detail.template.status);
    assert_eq!(status["phone_number"]["id"], detail.phone.id);
    assert_eq!(
        status["phone_number"]["display_phone_number"],
        detail.phone.display_phone_number
    );
    assert_eq!(
        status["phone_number"]["verified_name"],
        detail.phone.verified_name
    );
    assert_eq!(status["created_by"]["id"], detail.api_key.id);
    assert_eq!(status["created_by"]["name"], detail.api_key.name);
    // Another tenant's id does not read it.
    assert!(sends::load_detail(&mut conn, tenant + 1, &id)
        .unwrap()
        .is_none());
}

#[actix_web::test]
async fn a_batch_of_webhook_statuses_is_applied_in_order_and_written_once() {
    use mindo_bulk::domain::message::WebhookStatus;
    use mindo_bulk::storage::schema::messages;
    use mindo_bulk::storage::sends::StatusUpdate;

    let meta = spawn_with_meta().await;
    let id = waiting_send(&meta, 2).await;
    let now = meta.app.clock.now_ms();
    let mut conn = meta.app.db.get().unwrap();
    // Both messages sent (as the engine would record it).
    let ids: Vec<i64> = messages::table
        .filter(sends::of_send(&id))
        .order(messages::id)
        .select(messages::id)
        .load(&mut conn)
        .unwrap();
    for (i, m) in ids.iter().enumerate() {
        diesel::update(messages::table.find(m))
            .set((
                messages::state.eq("sent"),
                messages::wamid.eq(format!("wamid.T{i}")),
                messages::sent_at.eq(now),
            ))
            .execute(&mut conn)
            .unwrap();
    }
    write_transaction(&mut conn, |c| {
        status::adjust_counters(c, &id, &sent(2), now)
    })
    .unwrap();

    let update = |i: usize, status, at_ms, by_id: bool| StatusUpdate {
        message_id: by_id.then_some(ids[i]),
        send_id: by_id.then(|| id.clone()),
        wamid: format!("wamid.T{i}"),
        status,
        at_ms,
        error: None,
    };
    let batch = [
        update(0, WebhookStatus::Delivered, now + 1_000, true),
        update(0, WebhookStatus::Read, now + 2_000, false),
        update(0, WebhookStatus::Delivered, now + 1_000, true), // a duplicate
        update(0, WebhookStatus::Sent, now, true),              // stale
        update(1, WebhookStatus::Read, now + 3_000, false),     // read alone: delivered too
        StatusUpdate {
            wamid: "wamid.nobody".into(),
            ..update(1, WebhookStatus::Delivered, now, false)
        },
    ];
    let applied = write_transaction(&mut conn, |c| {
        sends::apply_status_updates(c, &batch, now + 5_000)
    })
    .unwrap();
    assert_eq!(
        (applied.applied, applied.duplicates, applied.unknown),
        (3, 2, 1),
        "{applied:?}"
    );
    assert_eq!(applied.touched_sends, vec![id.clone()]);
    type Funnel = (String, Option<i64>, Option<i64>, Option<i64>);
    let rows: Vec<Funnel> = messages::table
        .filter(sends::of_send(&id))
        .order(messages::id)
        .select((
            messages::state,
            messages::sent_at,
            messages::delivered_at,
            messages::read_at,
        ))
        .load(&mut conn)
        .unwrap();
    assert_eq!(
        rows,
        vec![
            (
                "read".into(),
                Some(now),
                Some(now + 1_000),
                Some(now + 2_000)
            ),
            (
                "read".into(),
                Some(now),
                Some(now + 3_000),
                Some(now + 3_000)
            ),
        ]
    );
    let row = sends::load_send(&mut conn, &id).unwrap().unwrap();
    assert_eq!(
        (row.sent_count, row.delivered_count, row.read_count),
        (0, 0, 2),
        "the counters count each message in its state once"
    );
}

/// A table `probe` of rows 1..=`rows`, each with a counter `v` at 0, for the writer's tests.
fn probe_table(db: &mindo_bulk::storage::Db, rows: i32) {
    let values: Vec<String> = (1..=rows).map(|id| format!("({id}, 0)")).collect();
    diesel::connection::SimpleConnection::batch_execute(
        &mut *db.get().unwrap(),
        &format!(
            "CREATE TABLE probe (id INT PRIMARY KEY, v INT NOT NULL);
             INSERT INTO probe VALUES {};",
            values.join(", ")
        ),
    )
    .unwrap();
}

/// A write that adds one to `probe` row `row`.
fn bump(
    row: i32,
) -> impl Fn(&mut mindo_bulk::storage::DbConnection) -> Result<(), StorageError> + Send + 'static {
    move |conn| {
        diesel::sql_query(format!("UPDATE probe SET v = v + 1 WHERE id = {row}"))
            .execute(conn)
            .map(|_| ())
            .map_err(StorageError::from)
    }
}

/// `probe`'s rows as (id, v), by id.
fn probe_rows(db: &mindo_bulk::storage::Db) -> Vec<(i32, i32)> {
    #[derive(diesel::QueryableByName)]
    struct Row {
        #[diesel(sql_type = diesel::sql_types::Integer)]
        id: i32,
        #[diesel(sql_type = diesel::sql_types::Integer)]
        v: i32,
    }
    diesel::sql_query("SELECT id, v FROM probe ORDER BY id")
        .load::<Row>(&mut db.get().unwrap())
        .unwrap()
        .into_iter()
        .map(|r| (r.id, r.v))
        .collect()
}

/// Two writers (two daemons' on one PostgreSQL) whose groups take the same two rows in
/// opposite orders deadlock; the database undoes one statement of one of them. The loser's
/// group is rolled back whole, so the winner goes on at once, and its jobs are made again
/// one transaction each: every write succeeds and none is lost or made twice.
#[actix_web::test]
async fn writers_that_deadlock_each_other_both_finish_every_job() {
    use mindo_bulk::engine::writer::StoreWriter;
    use mindo_bulk::storage::Db;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Barrier};

    let database = crate::helpers::TestDatabase::create();
    if !database.is_postgres() {
        // One SQLite file has one writer: nothing to deadlock with.
        return;
    }
    let db = Db::connect(database.url(), 2).unwrap();
    probe_table(&db, 2);
    // Each writer's first job waits until every job is queued, so the rows are taken in one
    // group; the first rows are locked before either writer takes its second. (The waits are
    // made on a job's first run only: a job may run again.)
    let queued = Arc::new(Barrier::new(3));
    let both_locked = Arc::new(Barrier::new(2));
    let mut answers = Vec::new();
    for (first, second) in [(1, 2), (2, 1)] {
        let writer = StoreWriter::start(db.clone());
        let (gate, once) = (queued.clone(), Arc::new(AtomicBool::new(true)));
        let hold = writer.write(move |_| {
            if once.swap(false, Ordering::SeqCst) {
                gate.wait();
            }
            Ok(())
        });
        let (locked, once) = (both_locked.clone(), Arc::new(AtomicBool::new(true)));
        let take_first = bump(first);
        let one = writer.write(move |conn| {
            take_first(conn)?;
            if once.swap(false, Ordering::SeqCst) {
                locked.wait();
            }
            Ok(())
        });
        let two = writer.write(bump(second));
        answers.push((hold, one, two));
    }
    queued.wait();
    for (hold, one, two) in answers {
        hold.await.unwrap();
        one.await.unwrap();
        two.await.unwrap();
    }
    assert_eq!(probe_rows(&db), vec![(1, 2), (2, 2)]);
}

/// A job that fails inside a group commit changes nothing and answers its error; every other
/// job of the group is committed once.
#[actix_web::test]
async fn a_failing_job_changes_nothing_and_its_group_is_committed_without_it() {
    use mindo_bulk::engine::writer::StoreWriter;
    use mindo_bulk::storage::Db;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Barrier};

    let database = crate::helpers::TestDatabase::create();
    let db = Db::connect(database.url(), 2).unwrap();
    probe_table(&db, 3);
    let writer = StoreWriter::start(db.clone());
    // A first job holds the writer until the others are queued, so that they run in one
    // group (the writer forms a group from what is queued when it starts one).
    let (queued, once) = (Arc::new(Barrier::new(2)), Arc::new(AtomicBool::new(true)));
    let gate = queued.clone();
    let hold = writer.write(move |_| {
        if once.swap(false, Ordering::SeqCst) {
            gate.wait();
        }
        Ok(())
    });
    let first = writer.write(bump(1));
    let bump_failing = bump(2);
    let failing = writer.write(move |conn| {
        bump_failing(conn)?;
        // A failing statement (on PostgreSQL it also aborts the transaction).
        diesel::sql_query("SELECT * FROM no_such_table")
            .execute(conn)
            .map(|_| ())
            .map_err(StorageError::from)
    });
    let last = writer.write(bump(3));
    queued.wait();
    hold.await.unwrap();
    first.await.unwrap();
    assert!(failing.await.is_err(), "the failing job answers its error");
    last.await.unwrap();
    assert_eq!(probe_rows(&db), vec![(1, 1), (2, 0), (3, 1)]);
}
