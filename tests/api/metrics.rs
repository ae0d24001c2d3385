//! `GET /metrics`: Prometheus text, present and moving with a real send against the
//! simulator, no high-cardinality labels.
//!
//! Every daemon of this test process records into the one global recorder, and other tests
//! run at the same time: checks compare before/after and ask for *at least* this send's share.

use std::collections::BTreeMap;

use crate::helpers::spawn_app;
use crate::meta::{phones, spawn_with_meta, welcome, MetaApp, NUMBER_10K};

/// One scrape: series (`name{labels}` as rendered) → value, and the `# TYPE` of each name.
struct Scrape {
    series: BTreeMap<String, f64>,
    types: BTreeMap<String, String>,
    text: String,
}

impl Scrape {
    fn parse(text: String) -> Scrape {
        let mut series = BTreeMap::new();
        let mut types = BTreeMap::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').expect("a TYPE line names a type");
                types.insert(name.to_owned(), kind.to_owned());
                continue;
            }
            if line.starts_with('#') || line.trim().is_empty() {
                continue;
            }
            let (key, value) = line.rsplit_once(' ').expect("a sample has a value");
            let value: f64 = value.parse().unwrap_or_else(|_| panic!("a number: {line}"));
            series.insert(key.to_owned(), value);
        }
        Scrape {
            series,
            types,
            text,
        }
    }

    /// The value of `name` with exactly these labels (in the rendered order), 0 if absent.
    fn get(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.series.get(&key(name, labels)).copied().unwrap_or(0.0)
    }

    /// The sum of every series of `name` whose labels include all of `labels`.
    fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.series
            .iter()
            .filter(|(k, _)| series_name(k) == name)
            .filter(|(k, _)| {
                let have = series_labels(k);
                labels
                    .iter()
                    .all(|(l, v)| have.iter().any(|(hl, hv)| hl == l && hv == v))
            })
            .map(|(_, v)| v)
            .sum()
    }
}

fn key(name: &str, labels: &[(&str, &str)]) -> String {
    if labels.is_empty() {
        return name.to_owned();
    }
    let inner: Vec<String> = labels.iter().map(|(l, v)| format!("{l}=\"{v}\"")).collect();
    format!("{name}{{{}}}", inner.join(","))
}

fn series_name(key: &str) -> &str {
    key.split('{').next().unwrap_or(key)
}

/// The labels of a rendered series (values never contain `,` or `"` here).
fn series_labels(key: &str) -> Vec<(String, String)> {
    let Some((_, rest)) = key.split_once('{') else {
        return Vec::new();
    };
    rest.trim_end_matches('}')
        .split(',')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (l, v) = pair.split_once('=').expect("label=value");
            (l.to_owned(), v.trim_matches('"').to_owned())
        })
        .collect()
}

async fn scrape(meta: &MetaApp) -> Scrape {
    let res = meta.app.get("/metrics", None).await;
    assert_eq!(res.status(), 200);
    let content_type = res.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    Scrape::parse(res.text().await.unwrap())
}

fn looks_like_uuid(v: &str) -> bool {
    v.len() == 36
        && v.char_indices().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => c == '-',
            _ => c.is_ascii_hexdigit(),
        })
}

/// Phone numbers have 8 digits or more; Meta's error codes at most 6.
fn looks_like_phone(v: &str) -> bool {
    v.chars().filter(char::is_ascii_digit).count() >= 8
}

#[actix_web::test]
async fn metrics_move_with_a_send_and_carry_no_ids() {
    let meta = spawn_with_meta().await;
    let before = scrape(&meta).await;

    // Four good recipients and the number's own (refused by Meta with 131021).
    let mut list = phones(900, 4);
    list.push("+12025550102".into());
    let (status, created) = meta.send_bulk(&welcome(NUMBER_10K, &list)).await;
    assert_eq!(status, 202, "{created}");
    let id = created["bulk_send_id"].as_str().unwrap().to_owned();
    meta.wait_status(&id, |s| {
        s["status"] == "PARTIAL" && s["pending_count"] == 0 && s["delivered_count"] == 4
    })
    .await;
    // One refused webhook.
    let refused = meta
        .app
        .client
        .post(format!("{}/webhooks/meta/", meta.app.address))
        .body(r#"{"object":"whatsapp_business_account","entry":[]}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);

    let after = scrape(&meta).await;
    let delta =
        |name: &str, labels: &[(&str, &str)]| after.sum(name, labels) - before.sum(name, labels);

    assert!(delta("mindo_messages_dispatched_total", &[]) >= 5.0);
    assert!(delta("mindo_messages_accepted_total", &[]) >= 4.0);
    assert!(delta("mindo_messages_failed_total", &[("class", "fail")]) >= 1.0);
    assert!(delta("mindo_meta_refusals_total", &[("code", "131021")]) >= 1.0);
    assert!(delta("mindo_limiter_grants_total", &[]) >= 5.0);
    // At least a delivered update for each of the four.
    assert!(delta("mindo_webhook_updates_total", &[("result", "applied")]) >= 4.0);
    assert!(delta("mindo_webhook_signature_refusals_total", &[]) >= 1.0);
    assert!(
        delta(
            "mindo_graph_request_duration_seconds_count",
            &[("operation", "send_message")]
        ) >= 5.0
    );
    assert!(
        delta(
            "mindo_http_request_duration_seconds_count",
            &[
                ("method", "POST"),
                ("route", "/api/v1/meta-templates/send-bulk"),
                ("status", "2xx")
            ]
        ) >= 1.0
    );
    // Status reads are timed under the route's pattern, not the path with the id.
    assert!(
        delta(
            "mindo_http_request_duration_seconds_count",
            &[("route", "/api/v1/meta-templates/bulk-sends/{id}")]
        ) >= 1.0,
        "{}",
        after.text
    );
    assert!(
        after.get(
            "mindo_http_request_duration_seconds_bucket",
            &[
                ("method", "POST"),
                ("route", "/api/v1/meta-templates/send-bulk"),
                ("status", "2xx"),
                ("le", "+Inf")
            ]
        ) >= 1.0,
        "{}",
        after.text
    );
    for name in [
        "mindo_active_sends",
        "mindo_limiter_queued_messages",
        "mindo_limiter_waits_total",
        "mindo_build_info",
    ] {
        assert!(after.types.contains_key(name), "{name} is missing");
    }

    // Naming and cardinality rules.
    for (name, kind) in &after.types {
        assert!(name.starts_with("mindo_"), "{name}");
        if kind == "counter" {
            assert!(name.ends_with("_total"), "{name}");
        }
    }
    for key in after.series.keys() {
        assert!(series_name(key).starts_with("mindo_"), "{key}");
        for (label, value) in series_labels(key) {
            assert!(!looks_like_uuid(&value), "{key}: {label} looks like an id");
            assert!(
                !looks_like_phone(&value),
                "{key}: {label} looks like a phone"
            );
            assert!(!value.contains(&id), "{key}");
            assert!(!value.starts_with("wamid"), "{key}");
        }
    }
}

#[actix_web::test]
async fn metrics_need_no_api_key_and_answer_with_a_trailing_slash() {
    let app = spawn_app().await;
    let res = app.get("/metrics/", None).await;
    assert_eq!(res.status(), 200);
    let text = res.text().await.unwrap();
    assert!(
        text.contains("# TYPE mindo_messages_dispatched_total counter"),
        "{text}"
    );
    // Unknown paths are timed as unmatched, not by their raw path.
    let _ = app
        .get("/no/such/a3f2b8c9-4d5e-6f7a-8b9c-0d1e2f3a4b5c", None)
        .await;
    let text = app.get("/metrics", None).await.text().await.unwrap();
    assert!(text.contains("route=\"unmatched\""), "{text}");
    assert!(!text.contains("/no/such/"), "{text}");
}

#[actix_web::test]
async fn a_pair_rate_hold_shows_as_limiter_waits_and_queued_messages() {
    let meta = spawn_with_meta().await;
    let same = phones(950, 1);
    let (_, first) = meta.send_bulk(&welcome(NUMBER_10K, &same)).await;
    let first = first["bulk_send_id"].as_str().unwrap().to_owned();
    meta.wait_status(&first, |s| s["status"] == "COMPLETED")
        .await;

    let before = scrape(&meta).await;
    let (_, second) = meta.send_bulk(&welcome(NUMBER_10K, &same)).await;
    let second = second["bulk_send_id"].as_str().unwrap().to_owned();
    // Held by the pair rate until the clock moves 6 s and the engine's margin.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let held = loop {
        let now = scrape(&meta).await;
        let waits = now.sum("mindo_limiter_waits_total", &[("reason", "pair_rate")])
            - before.sum("mindo_limiter_waits_total", &[("reason", "pair_rate")]);
        if waits >= 1.0 {
            break now;
        }
        assert!(std::time::Instant::now() < deadline, "{}", now.text);
        actix_web::rt::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    assert!(held.get("mindo_limiter_queued_messages", &[("state", "pair_rate")]) >= 1.0);
    assert!(held.get("mindo_active_sends", &[]) >= 1.0);
    assert_eq!(meta.status(&second).await["pending_count"], 1);

    meta.app.clock.advance_ms(
        mindo_bulk::domain::pacing::PAIR_INTERVAL_MS + mindo_bulk::domain::pacing::PAIR_MARGIN_MS,
    );
    meta.wait_status(&second, |s| s["status"] == "COMPLETED")
        .await;
}
