//! Live events: the server-sent event streams of a send and of a tenant, the dashboard
//! token, `Last-Event-ID`, and slow clients that must never hold anything up.

use std::io::Write;
use std::time::Duration;

use mindo_bulk::live::SUBSCRIBER_CAPACITY;
use serde_json::{json, Value};

use crate::helpers::json;
use crate::meta::{phones, spawn_with_meta, welcome, MetaApp, NUMBER_10K, NUMBER_UNLIMITED};

/// One server-sent event.
#[derive(Debug, Clone)]
struct Event {
    event: String,
    id: String,
    data: Value,
}

/// An open event stream, read event by event.
struct EventStream {
    res: reqwest::Response,
    buffer: String,
}

impl EventStream {
    /// The next event (comments and `retry:` skipped); `None` when the stream ended.
    async fn next(&mut self) -> Option<Event> {
        loop {
            while let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let (mut event, mut id, mut data) = (None, String::new(), None);
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("event: ") {
                        event = Some(v.to_owned());
                    } else if let Some(v) = line.strip_prefix("id: ") {
                        id = v.to_owned();
                    } else if let Some(v) = line.strip_prefix("data: ") {
                        data = Some(serde_json::from_str(v).expect("event data is JSON"));
                    }
                }
                if let (Some(event), Some(data)) = (event, data) {
                    return Some(Event { event, id, data });
                }
            }
            // A bound against hangs, not a timing assertion.
            let chunk = tokio::time::timeout(Duration::from_secs(60), self.res.chunk())
                .await
                .expect("an event within 60 s")
                .expect("the stream reads");
            self.buffer.push_str(std::str::from_utf8(&chunk?).unwrap());
        }
    }

    /// Events until one satisfies `done` (which is returned).
    async fn until(&mut self, done: impl Fn(&Event) -> bool) -> Event {
        loop {
            let event = self.next().await.expect("the stream ended early");
            if done(&event) {
                return event;
            }
        }
    }
}

fn send_events_path(id: &str) -> String {
    format!("/api/v1/meta-templates/bulk-sends/{id}/events/")
}

/// Opens `path` with the key (or none) and optional `Last-Event-ID`.
async fn open(
    meta: &MetaApp,
    path: &str,
    key: Option<&str>,
    last_event_id: Option<&str>,
) -> reqwest::Response {
    let mut req = meta.app.client.get(format!("{}{path}", meta.app.address));
    if let Some(key) = key {
        req = req.header("X-API-Key", key);
    }
    if let Some(id) = last_event_id {
        req = req.header("Last-Event-ID", id);
    }
    req.send().await.unwrap()
}

async fn stream(res: reqwest::Response) -> EventStream {
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "text/event-stream");
    EventStream {
        res,
        buffer: String::new(),
    }
}

async fn token(meta: &MetaApp) -> String {
    let res = meta
        .app
        .post("/api/v1/dashboard-token/", &meta.api_key, &json!({}))
        .await;
    assert_eq!(res.status(), 200);
    let body = json(res).await;
    assert!(
        body["expires_at"].as_str().unwrap().ends_with('Z'),
        "{body}"
    );
    body["token"].as_str().unwrap().to_owned()
}

async fn submit(meta: &MetaApp, number: &str, phones: &[String]) -> String {
    let (status, body) = meta.send_bulk(&welcome(number, phones)).await;
    assert_eq!(status, 202, "{body}");
    body["bulk_send_id"].as_str().unwrap().to_owned()
}

#[actix_web::test]
async fn a_send_stream_follows_the_send_to_its_final_event_and_resumes_by_id() {
    let meta = spawn_with_meta().await;
    let id = submit(&meta, NUMBER_10K, &phones(0, 40)).await;
    let res = open(&meta, &send_events_path(&id), Some(&meta.api_key), None).await;
    assert_eq!(res.headers()["cache-control"], "no-cache");
    let mut events = stream(res).await;

    // The current state at once, then changes, each a status object, until `finished`.
    let first = events.next().await.unwrap();
    assert_eq!(first.data["id"], id.as_str());
    let mut seen = vec![first];
    loop {
        let event = events.next().await.expect("a final event before the end");
        let done = event.event == "finished";
        seen.push(event);
        if done {
            break;
        }
    }
    assert!(
        events.next().await.is_none(),
        "the stream ends after `finished`"
    );
    let last = seen.last().unwrap().clone();
    assert_eq!(
        last.data,
        meta.status(&id).await,
        "the final event is the status object"
    );
    assert_eq!(last.data["status"], "COMPLETED");
    assert_eq!(last.data["sent_count"], 40);
    assert_eq!(last.data["pending_count"], 0);
    for pair in seen.windows(2) {
        assert_ne!(
            pair[0].id, pair[1].id,
            "an event is sent only when something changed"
        );
        assert_ne!(pair[0].data, pair[1].data);
        assert_eq!(pair[0].event, "status");
    }

    // A client that has the final state is told there is nothing more (204 stops
    // `EventSource`); one that missed it gets it at once.
    let res = open(
        &meta,
        &send_events_path(&id),
        Some(&meta.api_key),
        Some(&last.id),
    )
    .await;
    assert_eq!(res.status(), 204);
    let res = open(
        &meta,
        &send_events_path(&id),
        Some(&meta.api_key),
        Some(&seen[0].id),
    )
    .await;
    let mut resumed = stream(res).await;
    let event = resumed.next().await.unwrap();
    assert_eq!((event.event.as_str(), &event.id), ("finished", &last.id));
    assert!(resumed.next().await.is_none());

    // A paused send (scheduled an hour ahead, so nothing races the pause): its stream shows
    // the pause, and a reconnect with the id it has sends nothing again, only the next
    // change (the resume).
    let mut body = welcome(NUMBER_10K, &phones(1_000, 5));
    body["scheduled_at"] = json!("2026-01-01T01:00:00Z");
    let (status, created) = meta.send_bulk(&body).await;
    assert_eq!(status, 202, "{created}");
    let later = created["bulk_send_id"].as_str().unwrap().to_owned();
    let control = |action: &str| format!("/api/v1/meta-templates/bulk-sends/{later}/{action}/");
    let res = meta
        .app
        .post(&control("pause"), &meta.api_key, &json!({}))
        .await;
    assert_eq!(res.status(), 200);
    let res = open(&meta, &send_events_path(&later), Some(&meta.api_key), None).await;
    let paused = stream(res).await.next().await.unwrap();
    assert_eq!(
        (paused.event.as_str(), &paused.data["paused"]),
        ("status", &json!(true))
    );
    let res = open(
        &meta,
        &send_events_path(&later),
        Some(&meta.api_key),
        Some(&paused.id),
    )
    .await;
    let mut events = stream(res).await;
    let res = meta
        .app
        .post(&control("resume"), &meta.api_key, &json!({}))
        .await;
    assert_eq!(res.status(), 200);
    let next = events.next().await.unwrap();
    assert_ne!(next.id, paused.id);
    assert_eq!(next.data["paused"], false, "the first event is the resume");
    assert_eq!(next.data["status"], "QUEUED");
    meta.app.clock.advance_ms(60 * 60 * 1000);
    let last = events.until(|e| e.event == "finished").await;
    assert_eq!(last.data["sent_count"], 5);
}

#[actix_web::test]
async fn a_dashboard_token_opens_the_streams_of_its_tenant_only_while_valid() {
    let meta = spawn_with_meta().await;
    let id = submit(&meta, NUMBER_10K, &phones(0, 3)).await;
    meta.wait_finished(&id).await;
    let token = token(&meta).await;
    let path = |token: &str| format!("{}?token={token}", send_events_path(&id));

    let mut events = stream(open(&meta, &path(&token), None, None).await).await;
    let event = events.next().await.unwrap();
    assert_eq!(event.event, "finished");
    assert_eq!(event.data["sent_count"], 3);

    let refused = |body: &Value| {
        assert_eq!(body["code"], "invalid_api_key", "{body}");
        assert!(body["detail"].as_str().unwrap().contains("token"), "{body}");
    };
    // Forged: another tenant's id in the claims, or a signature changed.
    let (claims, tag) = token.rsplit_once('.').unwrap();
    let mut parts: Vec<String> = claims.split('.').map(str::to_owned).collect();
    parts[0] = (meta.tenant_id + 1).to_string();
    let other_tenant = format!("{}.{tag}", parts.join("."));
    let flipped = format!(
        "{claims}.{}",
        tag.replace(&tag[..1], if &tag[..1] == "0" { "1" } else { "0" })
    );
    for bad in [other_tenant.as_str(), flipped.as_str(), "nonsense"] {
        let res = open(&meta, &path(bad), None, None).await;
        assert_eq!(res.status(), 401, "{bad}");
        refused(&json(res).await);
    }
    // No key and no token.
    let res = open(&meta, &send_events_path(&id), None, None).await;
    assert_eq!(res.status(), 401);
    assert_eq!(json(res).await["code"], "missing_api_key");
    // Another tenant's send is unknown, with its own token as with its key.
    let (_, other_key) = meta.app.create_tenant("Other company");
    let res = open(&meta, &send_events_path(&id), Some(&other_key), None).await;
    assert_eq!(res.status(), 404);
    assert_eq!(json(res).await["code"], "not_found");
    // A token names its key: revoking the key ends its tokens at once.
    let (code, out, err) = meta.app.cli(&[
        "api-key",
        "create",
        "--tenant",
        &meta.tenant_id.to_string(),
        "--json",
    ]);
    assert_eq!(code, 0, "{err}");
    let created: Value = serde_json::from_str(&out).unwrap();
    let res = meta
        .app
        .post(
            "/api/v1/dashboard-token/",
            created["api_key"].as_str().unwrap(),
            &json!({}),
        )
        .await;
    let second = json(res).await["token"].as_str().unwrap().to_owned();
    assert_eq!(open(&meta, &path(&second), None, None).await.status(), 200);
    let key_id = created["api_key_id"].as_i64().unwrap().to_string();
    assert_eq!(meta.app.cli(&["api-key", "revoke", &key_id]).0, 0);
    let res = open(&meta, &path(&second), None, None).await;
    assert_eq!(res.status(), 401);
    refused(&json(res).await);
    // Five minutes later the first token is expired.
    meta.app.clock.advance_ms(5 * 60 * 1000);
    let res = open(&meta, &path(&token), None, None).await;
    assert_eq!(res.status(), 401);
    refused(&json(res).await);
    // The token endpoint itself wants a key.
    let res = meta
        .app
        .client
        .post(format!("{}/api/v1/dashboard-token/", meta.app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
}

#[actix_web::test]
async fn the_tenant_stream_shows_every_send_of_the_tenant() {
    let meta = spawn_with_meta().await;
    let token = token(&meta).await;
    let res = open(&meta, &format!("/api/v1/events/?token={token}"), None, None).await;
    let mut events = stream(res).await;
    let a = submit(&meta, NUMBER_10K, &phones(0, 10)).await;
    let b = submit(&meta, NUMBER_UNLIMITED, &phones(100, 20)).await;
    let mut finished = std::collections::BTreeMap::new();
    while finished.len() < 2 {
        let event = events.next().await.expect("the tenant stream does not end");
        assert_eq!(event.event, "status");
        let send = event.data["id"].as_str().unwrap().to_owned();
        assert!(send == a || send == b, "only the sends submitted: {send}");
        assert!(event.id.starts_with(&format!("{send}/")), "{}", event.id);
        if event.data["status"] == "COMPLETED" && event.data["pending_count"] == 0 {
            finished.insert(send, event.data["sent_count"].clone());
        }
    }
    assert_eq!(finished[&a], 10);
    assert_eq!(finished[&b], 20);
    // A new connection gets the sends that settled a moment ago at once.
    let res = open(&meta, "/api/v1/events/", Some(&meta.api_key), None).await;
    let mut again = stream(res).await;
    let mut ids = vec![
        again.next().await.unwrap().data["id"].clone(),
        again.next().await.unwrap().data["id"].clone(),
    ];
    ids.sort_by_key(|v| v.to_string());
    let mut expected = vec![json!(a), json!(b)];
    expected.sort_by_key(|v| v.to_string());
    assert_eq!(ids, expected);
}

/// A client that opens a stream and never reads its socket.
fn stalled_client(address: &str, path: &str, key: &str) -> std::net::TcpStream {
    let addr = address.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nX-API-Key: {key}\r\nAccept: text/event-stream\r\n\r\n"
    )
    .unwrap();
    stream
}

#[actix_web::test]
async fn a_client_that_never_reads_does_not_hold_up_a_10k_send() {
    let meta = spawn_with_meta().await;
    let id = submit(&meta, NUMBER_UNLIMITED, &phones(0, 10_000)).await;
    // Three followers: one that never reads its socket, one that never takes an event from
    // the hub, one that reads everything.
    let _stalled = stalled_client(&meta.app.address, &send_events_path(&id), &meta.api_key);
    let mut never_reads = meta.app.live.follow_send(meta.tenant_id, id.clone(), None);
    let res = open(&meta, &send_events_path(&id), Some(&meta.api_key), None).await;
    let mut reader = stream(res).await;

    // The send runs to its end while they lag, and the attentive reader sees it all.
    // Retries (Meta's 130429 at the edge of the number's rate) wait on the injected clock:
    // let it run, a second per 200 ms.
    let clock = meta.app.clock.clone();
    let ticking = actix_web::rt::spawn(async move {
        loop {
            actix_web::rt::time::sleep(Duration::from_millis(200)).await;
            clock.advance_ms(1_000);
        }
    });
    let last = reader.until(|e| e.event == "finished").await;
    ticking.abort();
    assert_eq!(last.data["status"], "COMPLETED");
    assert_eq!(last.data["sent_count"], 10_000);
    assert_eq!(meta.stats().accepted_total, 10_000);

    // The subscriber that never read holds at most its bounded buffer, and was let go
    // when it was full: it gets what is buffered, then the end.
    let mut buffered = 0;
    while let Some(event) = never_reads.recv().await {
        assert_eq!(event.kind.as_str(), "status");
        buffered += 1;
    }
    assert_eq!(buffered, SUBSCRIBER_CAPACITY, "a full buffer, then dropped");
    assert!(meta.app.live.dropped_slow() >= 1);
    // Nobody is followed any more: the stalled socket's subscription ended with the send.
    assert_eq!(meta.app.live.subscribers(), 0);
}
