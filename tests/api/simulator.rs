//! The Meta simulator driven over HTTP the way a client drives Meta: sends, refusals in Meta's
//! error shape, limits, reads with paging, signed webhooks to a receiver, faults and control.
//!
//! Waiting for webhooks polls with a bounded deadline; nothing passes or fails on a sleep.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use hmac::{Hmac, Mac};
use mindo_bulk::clock::ManualClock;
use mindo_bulk::domain::template::TemplateSpec;
use mindo_bulk::domain::tier::Tier;
use mindo_bulk::meta::error::MetaError;
use mindo_bulk::meta::webhook::{
    self, DeliveryStatus, Event, PhoneQualityEvent, StatusUpdate, TemplateEvent,
};
use mindo_bulk::simulator::{Behaviour, PhoneNumberChange, SimConfig, SimStats, Simulator};
use parking_lot::Mutex;
use serde_json::{json, Value};
use sha2::Sha256;

/// 2026-01-01T00:00:00Z.
const T0: i64 = 1_767_225_600_000;
/// Sandbox number on TIER_250 / STANDARD, and its WABA.
const STARTER: &str = "106540352240001";
const STARTER_WABA: &str = "102938475610001";
const TOKEN: &str = "sandbox-token";
const SECRET: &str = "test-app-secret";

struct Sim {
    sim: Simulator,
    clock: ManualClock,
    http: reqwest::Client,
}

/// The sandbox world with test behaviour (no delays) and `tweak` applied.
async fn start(tweak: impl FnOnce(&mut SimConfig)) -> Sim {
    let mut config = SimConfig::sandbox();
    config.behaviour = Behaviour::default();
    config.app_secret = SECRET.into();
    config.workers = 1;
    tweak(&mut config);
    let clock = ManualClock::new(T0);
    let sim = Simulator::start(config, "127.0.0.1:0", Arc::new(clock.clone()))
        .await
        .expect("the simulator starts");
    Sim {
        sim,
        clock,
        http: reqwest::Client::new(),
    }
}

impl Sim {
    async fn send(&self, number: &str, token: Option<&str>, body: &Value) -> (u16, Value) {
        let mut request = self
            .http
            .post(format!("{}/v24.0/{number}/messages", self.sim.base_url()))
            .json(body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.expect("the send is answered");
        let status = response.status().as_u16();
        (status, response.json().await.expect("a JSON body"))
    }

    /// GET a path (or an absolute URL) with the sandbox token.
    async fn get(&self, path_or_url: &str) -> (u16, Value) {
        let url = if path_or_url.starts_with("http") {
            path_or_url.to_owned()
        } else {
            format!("{}{path_or_url}", self.sim.base_url())
        };
        let response = self
            .http
            .get(url)
            .bearer_auth(TOKEN)
            .send()
            .await
            .expect("answered");
        let status = response.status().as_u16();
        (status, response.json().await.expect("a JSON body"))
    }

    async fn control(&self, path: &str, body: Value) -> (u16, Value) {
        let response = self
            .http
            .post(format!("{}{path}", self.sim.base_url()))
            .json(&body)
            .send()
            .await
            .expect("answered");
        let status = response.status().as_u16();
        (status, response.json().await.expect("a JSON body"))
    }

    async fn stats(&self) -> SimStats {
        self.http
            .get(format!("{}/__sim/stats", self.sim.base_url()))
            .send()
            .await
            .expect("answered")
            .json()
            .await
            .expect("stats JSON")
    }
}

fn welcome(to: &str, opaque: &str) -> Value {
    json!({
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": to,
        "type": "template",
        "biz_opaque_callback_data": opaque,
        "template": {
            "name": "welcome_message",
            "language": {"code": "es"},
            "components": [{"type": "body", "parameters": [
                {"type": "text", "parameter_name": "customer_name", "text": "Ana"}
            ]}]
        }
    })
}

fn order_update(to: &str, components: Value) -> Value {
    json!({
        "messaging_product": "whatsapp",
        "to": to,
        "type": "template",
        "template": {"name": "order_update", "language": {"code": "es"}, "components": components}
    })
}

fn order_body() -> Value {
    json!({"type": "body", "parameters": [{"type": "text", "text": "A-1042"}, {"type": "text", "text": "en camino"}]})
}

fn order_button() -> Value {
    json!({"type": "button", "sub_type": "url", "index": "0", "parameters": [{"type": "text", "text": "A-1042"}]})
}

/// Polls `check` every 15 ms until it gives a value, for at most 10 s.
async fn eventually<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        actix_web::rt::time::sleep(Duration::from_millis(15)).await;
    }
}

// ---------------------------------------------------------------------------------------------
// A webhook receiver.

struct Post {
    signature: Option<String>,
    body: Vec<u8>,
}

#[derive(Clone, Default)]
struct Inbox {
    posts: Arc<Mutex<Vec<Post>>>,
    /// Answer 500 to this many POSTs first.
    fail_first: Arc<AtomicUsize>,
}

async fn hook(req: HttpRequest, body: web::Bytes, inbox: web::Data<Inbox>) -> HttpResponse {
    let signature = req
        .headers()
        .get("X-Hub-Signature-256")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    inbox.posts.lock().push(Post {
        signature,
        body: body.to_vec(),
    });
    let failing = inbox
        .fail_first
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok();
    if failing {
        HttpResponse::InternalServerError().finish()
    } else {
        HttpResponse::Ok().finish()
    }
}

/// Starts a receiver on port 0; returns its URL.
fn receiver(fail_first: usize) -> (String, Inbox) {
    let inbox = Inbox::default();
    inbox.fail_first.store(fail_first, Ordering::SeqCst);
    let state = web::Data::new(inbox.clone());
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .route("/webhooks/meta", web::post().to(hook))
    })
    .workers(1)
    .disable_signals()
    .listen(listener)
    .unwrap()
    .run();
    actix_web::rt::spawn(server);
    (format!("http://127.0.0.1:{port}/webhooks/meta"), inbox)
}

impl Inbox {
    /// Every event received so far, after checking each POST's signature.
    fn events(&self) -> Vec<Event> {
        let posts = self.posts.lock();
        let mut events = Vec::new();
        for post in posts.iter() {
            let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
            mac.update(&post.body);
            let expected = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
            assert_eq!(post.signature.as_deref(), Some(expected.as_str()));
            let notification = webhook::parse(&post.body).expect("Meta's payload shape");
            assert_eq!(
                notification.object.as_deref(),
                Some("whatsapp_business_account")
            );
            assert_eq!(notification.skipped, 0);
            events.extend(notification.events);
        }
        events
    }

    fn statuses(&self) -> Vec<StatusUpdate> {
        self.events()
            .into_iter()
            .filter_map(|e| match e {
                Event::Status(s) => Some(s),
                _ => None,
            })
            .collect()
    }

    fn post_count(&self) -> usize {
        self.posts.lock().len()
    }
}

// ---------------------------------------------------------------------------------------------
// Sends.

#[actix_web::test]
async fn a_valid_send_is_accepted_with_a_wamid() {
    let s = start(|_| {}).await;
    let (status, body) = s
        .send(STARTER, Some(TOKEN), &welcome("+5491112345678", "m1"))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["messaging_product"], "whatsapp");
    assert_eq!(body["contacts"][0]["input"], "+5491112345678");
    assert_eq!(body["contacts"][0]["wa_id"], "5491112345678");
    let wamid = body["messages"][0]["id"].as_str().unwrap();
    assert!(wamid.starts_with("wamid."), "{wamid}");
    assert_eq!(body["messages"][0]["message_status"], "accepted");

    let (status, second) = s
        .send(
            STARTER,
            Some(TOKEN),
            &order_update("+5491112345679", json!([order_body(), order_button()])),
        )
        .await;
    assert_eq!(status, 200, "{second}");
    assert_ne!(second["messages"][0]["id"], body["messages"][0]["id"]);

    let stats = s.stats().await;
    assert_eq!(stats.accepted_total, 2);
    assert_eq!(stats.accepted_by_recipient["+5491112345678"], 1);
    assert_eq!(stats.recipients_accepted_more_than_once, 0);
    assert_eq!(stats.numbers[STARTER].accepted, 2);
}

/// One refusal case: the request and the answer Meta gives.
struct Case {
    what: &'static str,
    number: &'static str,
    token: Option<&'static str>,
    body: Value,
    http: u16,
    code: i64,
}

#[actix_web::test]
async fn every_refusal_comes_in_metas_error_shape() {
    let s = start(|_| {}).await;
    s.sim
        .set_template_status("102938475610003", "hello_world", "en_US", "DISABLED")
        .unwrap();
    let ok = welcome("+5491112345678", "x");
    let mut no_plus = ok.clone();
    no_plus["to"] = json!("5491112345678");
    let mut unknown = ok.clone();
    unknown["template"]["name"] = json!("no_such_template");
    let mut paused = ok.clone();
    paused["template"]["name"] = json!("seasonal_sale");
    let disabled = json!({"messaging_product": "whatsapp", "to": "+5491112345678", "type": "template",
        "template": {"name": "hello_world", "language": {"code": "en_US"}}});
    let mut unnamed = ok.clone();
    unnamed["template"]["components"][0]["parameters"][0]
        .as_object_mut()
        .unwrap()
        .remove("parameter_name");
    let mut empty = ok.clone();
    empty["template"]["components"][0]["parameters"][0]["text"] = json!("");
    let two_params =
        json!([{"type": "body", "parameters": [{"type": "text", "text": "A-1"}]}, order_button()]);

    let cases = [
        Case {
            what: "no token",
            number: STARTER,
            token: None,
            body: ok.clone(),
            http: 401,
            code: 190,
        },
        Case {
            what: "wrong token",
            number: STARTER,
            token: Some("nope"),
            body: ok.clone(),
            http: 401,
            code: 190,
        },
        Case {
            what: "unknown number",
            number: "123456789",
            token: Some(TOKEN),
            body: ok.clone(),
            http: 400,
            code: 100,
        },
        Case {
            what: "to without +",
            number: STARTER,
            token: Some(TOKEN),
            body: no_plus,
            http: 400,
            code: 131_009,
        },
        Case {
            what: "unknown template",
            number: STARTER,
            token: Some(TOKEN),
            body: unknown,
            http: 404,
            code: 132_001,
        },
        Case {
            what: "paused template",
            number: STARTER,
            token: Some(TOKEN),
            body: paused,
            http: 400,
            code: 132_015,
        },
        Case {
            what: "disabled template",
            number: "106540352240003",
            token: Some(TOKEN),
            body: disabled,
            http: 400,
            code: 132_016,
        },
        Case {
            what: "parameter count",
            number: STARTER,
            token: Some(TOKEN),
            body: order_update("+5491112345678", two_params),
            http: 400,
            code: 132_000,
        },
        Case {
            what: "named without name",
            number: STARTER,
            token: Some(TOKEN),
            body: unnamed,
            http: 400,
            code: 100,
        },
        Case {
            what: "missing button",
            number: STARTER,
            token: Some(TOKEN),
            body: order_update("+5491112345678", json!([order_body()])),
            http: 400,
            code: 131_008,
        },
        Case {
            what: "empty text",
            number: STARTER,
            token: Some(TOKEN),
            body: empty,
            http: 400,
            code: 131_008,
        },
    ];
    for Case {
        what,
        number,
        token,
        body,
        http,
        code,
    } in &cases
    {
        let (status, error) = s.send(number, *token, body).await;
        assert_eq!(status, *http, "{what}: {error}");
        let e = &error["error"];
        assert_eq!(e["code"], *code, "{what}: {error}");
        assert!(
            e["type"].is_string() && e["fbtrace_id"].is_string(),
            "{what}: {error}"
        );
        let message = e["message"].as_str().unwrap();
        if *code != 100 || *what != "unknown number" {
            assert!(
                message.starts_with(&format!("(#{code})")),
                "{what}: {message}"
            );
        }
        // Our own Graph client's reader sees the same code.
        let parsed = MetaError::from_response(status, error.to_string().as_bytes());
        assert_eq!(parsed.code, *code, "{what}");
    }
    // A bad body is 100 too (not JSON at all).
    let response = s
        .http
        .post(format!("{}/v24.0/{STARTER}/messages", s.sim.base_url()))
        .bearer_auth(TOKEN)
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let error: Value = response.json().await.unwrap();
    assert_eq!(error["error"]["code"], 100);

    let stats = s.stats().await;
    assert_eq!(stats.accepted_total, 0);
    assert_eq!(stats.refusals_by_code[&190], 2);
    assert_eq!(stats.refusals_by_code[&100], 3);
    assert_eq!(stats.refusals_by_code[&131_008], 2);
    assert_eq!(stats.requests_total, cases.len() as u64 + 1);
}

#[actix_web::test]
async fn over_the_numbers_throughput_sends_get_130429() {
    // A coexistence number: 20 messages per second.
    let s = start(|c| {
        c.wabas[0].phone_numbers[0].is_on_biz_app = true;
        c.behaviour.enforce_quota = false;
    })
    .await;
    let mut refused = 0;
    let mut round = 0u64;
    let deadline = Instant::now() + Duration::from_secs(10);
    while refused == 0 {
        assert!(Instant::now() < deadline, "no 130429 within 10 s");
        let s = &s;
        let sends = (0..30u64).map(|i| {
            let to = format!("+54911{:08}", round * 100 + i);
            let body = welcome(&to, "x");
            async move { s.send(STARTER, Some(TOKEN), &body).await }
        });
        for (status, body) in futures_util::future::join_all(sends).await {
            match status {
                200 => {}
                400 => {
                    assert_eq!(body["error"]["code"], 130_429, "{body}");
                    refused += 1;
                }
                other => panic!("unexpected {other}: {body}"),
            }
        }
        round += 1;
    }
    let stats = s.stats().await;
    let number = &stats.numbers[STARTER];
    assert_eq!(number.mps_limit, 20);
    assert!(number.max_accepted_in_1s <= 20, "{number:?}");
    assert!(number.max_accepted_in_1s >= 1);
    assert_eq!(stats.accepted_over_mps, 0);
    assert_eq!(stats.refusals_by_code[&130_429], refused);
}

#[actix_web::test]
async fn the_same_recipient_within_six_seconds_gets_131056() {
    let s = start(|_| {}).await;
    let body = welcome("+5491112345678", "x");
    assert_eq!(s.send(STARTER, Some(TOKEN), &body).await.0, 200);
    let (status, error) = s.send(STARTER, Some(TOKEN), &body).await;
    assert_eq!(
        (status, error["error"]["code"].as_i64()),
        (400, Some(131_056))
    );
    // Another recipient is not affected.
    assert_eq!(
        s.send(STARTER, Some(TOKEN), &welcome("+5491112345679", "y"))
            .await
            .0,
        200
    );
    s.clock.advance_ms(5_999);
    assert_eq!(s.send(STARTER, Some(TOKEN), &body).await.0, 400);
    s.clock.advance_ms(1);
    assert_eq!(s.send(STARTER, Some(TOKEN), &body).await.0, 200);
    assert_eq!(s.stats().await.accepted_within_pair_window, 0);
}

#[actix_web::test]
async fn the_portfolio_messaging_limit_refuses_new_recipients_with_131048() {
    let s = start(|_| {}).await;
    s.sim
        .set_phone_number(
            STARTER,
            PhoneNumberChange {
                tier: Some(Tier::T50),
                ..PhoneNumberChange::default()
            },
        )
        .unwrap();
    s.sim.update_behaviour(|b| b.enforce_mps = false).unwrap();
    for i in 0..50 {
        let (status, body) = s
            .send(
                STARTER,
                Some(TOKEN),
                &welcome(&format!("+54911{i:08}"), "x"),
            )
            .await;
        assert_eq!(status, 200, "{i}: {body}");
    }
    let (status, error) = s
        .send(STARTER, Some(TOKEN), &welcome("+5491199999999", "x"))
        .await;
    assert_eq!(
        (status, error["error"]["code"].as_i64()),
        (400, Some(131_048))
    );
    // A recipient already in the window costs nothing.
    s.clock.advance_ms(6_000);
    assert_eq!(
        s.send(STARTER, Some(TOKEN), &welcome("+5491100000000", "x"))
            .await
            .0,
        200
    );
    // A day later the first 49 have left the window (the re-sent one is still in it).
    s.clock.advance_ms(24 * 60 * 60 * 1_000 - 6_000);
    assert_eq!(
        s.send(STARTER, Some(TOKEN), &welcome("+5491199999999", "x"))
            .await
            .0,
        200
    );
    let stats = s.stats().await;
    let portfolio = &stats.portfolios[STARTER_WABA];
    assert_eq!(portfolio.tier, "TIER_50");
    assert_eq!(portfolio.max_unique_recipients_in_window, 50);
    assert_eq!(portfolio.unique_recipients_in_window, 2);
    assert_eq!(stats.accepted_over_quota, 0);
}

// ---------------------------------------------------------------------------------------------
// Reads.

#[actix_web::test]
async fn numbers_and_wabas_honour_fields() {
    let s = start(|_| {}).await;
    let (status, number) = s
        .get(&format!(
            "/v24.0/{STARTER}?fields=throughput,whatsapp_business_manager_messaging_limit,is_on_biz_app"
        ))
        .await;
    assert_eq!(status, 200, "{number}");
    assert_eq!(
        number,
        json!({"id": STARTER, "throughput": {"level": "STANDARD"},
               "whatsapp_business_manager_messaging_limit": "TIER_250", "is_on_biz_app": false})
    );
    let (_, default) = s.get(&format!("/v21.0/{STARTER}")).await;
    assert_eq!(default["display_phone_number"], "+1 202-555-0101");
    assert_eq!(default["quality_rating"], "GREEN");
    assert!(default
        .get("whatsapp_business_manager_messaging_limit")
        .is_none());

    let (status, error) = s.get(&format!("/v24.0/{STARTER}?fields=id,nope")).await;
    assert_eq!(status, 400);
    assert_eq!(error["error"]["code"], 100);
    assert!(error["error"]["message"]
        .as_str()
        .unwrap()
        .starts_with("(#100) Tried accessing nonexisting field (nope)"));

    let (_, waba) = s
        .get(&format!(
            "/v24.0/{STARTER_WABA}?fields=name,owner_business_info{{id,name}}"
        ))
        .await;
    assert_eq!(waba["owner_business_info"]["id"], STARTER_WABA);
    assert_eq!(waba["name"], "Mindo Demo Starter");

    let (_, numbers) = s.get(&format!("/v24.0/{STARTER_WABA}/phone_numbers")).await;
    assert_eq!(numbers["data"].as_array().unwrap().len(), 1);
    assert_eq!(numbers["data"][0]["id"], STARTER);

    // Another WABA's token does not open this one; an unknown id is 100.
    let response = s
        .http
        .get(format!("{}/v24.0/{STARTER}", s.sim.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    let (status, error) = s.get("/v24.0/424242").await;
    assert_eq!((status, error["error"]["code"].as_i64()), (400, Some(100)));
}

#[actix_web::test]
async fn template_pages_follow_next_to_the_end() {
    let s = start(|_| {}).await;
    let mut url =
        format!("/v24.0/{STARTER_WABA}/message_templates?limit=3&fields=name,language,status");
    let mut seen = Vec::new();
    let mut pages = 0;
    loop {
        let (status, page) = s.get(&url).await;
        assert_eq!(status, 200, "{page}");
        pages += 1;
        for t in page["data"].as_array().unwrap() {
            assert!(t["name"].is_string() && t["status"].is_string() && t["id"].is_string());
            assert!(t.get("components").is_none(), "only the fields asked for");
            seen.push(format!("{}/{}", t["name"], t["language"]));
        }
        assert!(page["paging"]["cursors"]["after"].is_string());
        match page["paging"]["next"].as_str() {
            Some(next) => {
                assert!(next.starts_with(s.sim.base_url()), "{next}");
                url = next.to_owned();
            }
            None => break,
        }
    }
    assert_eq!(seen.len(), 10);
    assert_eq!(pages, 4);
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 10, "no template twice");

    let (_, approved) = s
        .get(&format!(
            "/v24.0/{STARTER_WABA}/message_templates?status=APPROVED&limit=100"
        ))
        .await;
    let data = approved["data"].as_array().unwrap();
    assert_eq!(data.len(), 8);
    assert!(approved["paging"].get("next").is_none());
    assert!(data.iter().all(|t| t["components"].is_array()));
}

/// The cross-check between the two readings of Meta's template JSON: the daemon reads each
/// approved template as the simulator serves it (`GET …/message_templates`) with its own parser,
/// renders a send with its own renderer, and the simulator, reading the same JSON with its own
/// code, must accept every one. A send that misreads the template (a NAMED template's parameters
/// without their names, a dropped URL-suffix button) is refused.
#[actix_web::test]
async fn what_the_daemon_renders_from_the_served_templates_is_accepted() {
    let s = start(|_| {}).await;
    let world = SimConfig::sandbox();
    let (mut sent, mut misread_refused) = (0, 0);
    for (w, waba) in world.wabas.iter().enumerate() {
        let number = &waba.phone_numbers[0].id;
        let (status, page) = s
            .get(&format!(
                "/v24.0/{}/message_templates?status=APPROVED&limit=100\
                 &fields=name,language,status,parameter_format,components",
                waba.id
            ))
            .await;
        assert_eq!(status, 200, "{page}");
        for (i, t) in page["data"].as_array().unwrap().iter().enumerate() {
            let spec = TemplateSpec::from_meta(t["parameter_format"].as_str(), &t["components"])
                .unwrap_or_else(|e| panic!("the daemon reads {t}: {e}"));
            // Any value the template's checks take: a link for a media header, a short code
            // (it fits a coupon) for the rest.
            let mut vars = BTreeMap::new();
            for key in spec.expected_variables() {
                let link = key == "header_media";
                vars.insert(
                    key,
                    if link {
                        "https://x.example/a.pdf"
                    } else {
                        "C1"
                    }
                    .to_owned(),
                );
            }
            let mut buttons = BTreeMap::new();
            for key in spec.expected_button_variables() {
                buttons.insert(key, "CODE1".to_owned());
            }
            // A recipient per send: the pair rate must not be what refuses one.
            let send = |components: Value, attempt: usize| {
                json!({
                    "messaging_product": "whatsapp",
                    "recipient_type": "individual",
                    "to": format!("+54911{w}{i:03}{attempt:03}"),
                    "type": "template",
                    "template": {"name": t["name"], "language": {"code": t["language"]},
                                 "components": components}
                })
            };
            let components = spec.render(&vars, &buttons);
            let (status, answer) = s
                .send(number, Some(TOKEN), &send(components.clone(), 0))
                .await;
            assert_eq!(status, 200, "{} {}: {answer}", t["name"], t["language"]);
            sent += 1;

            let mut misread = components;
            let mut changed = false;
            for component in misread.as_array_mut().unwrap() {
                for parameter in component["parameters"].as_array_mut().unwrap() {
                    changed |= parameter
                        .as_object_mut()
                        .unwrap()
                        .remove("parameter_name")
                        .is_some();
                }
            }
            let list = misread.as_array_mut().unwrap();
            let before = list.len();
            list.retain(|c| c["sub_type"] != "url");
            changed |= list.len() != before;
            if changed {
                misread_refused += 1;
                let (status, answer) = s.send(number, Some(TOKEN), &send(misread, 1)).await;
                assert_eq!(status, 400, "{} {}: {answer}", t["name"], t["language"]);
                assert!(
                    [100, 131_008].contains(&answer["error"]["code"].as_i64().unwrap()),
                    "{answer}"
                );
            }
        }
    }
    assert_eq!(sent, 24, "8 approved templates in each of 3 WABAs");
    // welcome_message (es, en) named, order_update (es, en) with a URL suffix, in each WABA.
    assert_eq!(misread_refused, 12);
}

// ---------------------------------------------------------------------------------------------
// Webhooks.

#[actix_web::test]
async fn status_webhooks_are_signed_and_echo_the_callback_data() {
    let (url, inbox) = receiver(0);
    let s = start(|c| {
        c.webhook_url = Some(url);
        c.behaviour.read_ratio = 1.0;
    })
    .await;
    let mut wamids = Vec::new();
    for i in 0..3 {
        let (status, body) = s
            .send(
                STARTER,
                Some(TOKEN),
                &welcome(&format!("+549111234567{i}"), &format!("row-{i}")),
            )
            .await;
        assert_eq!(status, 200);
        wamids.push(body["messages"][0]["id"].as_str().unwrap().to_owned());
    }
    let (status, body) = s
        .send(STARTER, Some(TOKEN), &welcome("+14155550100", "gone"))
        .await;
    assert_eq!(status, 200, "an undeliverable number is accepted first");
    let gone = body["messages"][0]["id"].as_str().unwrap().to_owned();

    let statuses = eventually("10 statuses", || {
        let statuses = inbox.statuses();
        (statuses.len() >= 10).then_some(statuses)
    })
    .await;
    for (i, wamid) in wamids.iter().enumerate() {
        let mine: Vec<&StatusUpdate> = statuses.iter().filter(|s| &s.wamid == wamid).collect();
        let kinds: Vec<&DeliveryStatus> = mine.iter().map(|s| &s.status).collect();
        assert_eq!(
            kinds,
            [
                &DeliveryStatus::Sent,
                &DeliveryStatus::Delivered,
                &DeliveryStatus::Read
            ]
        );
        for update in mine {
            assert_eq!(update.biz_opaque_callback_data, Some(format!("row-{i}")));
            assert_eq!(update.recipient_id, Some(format!("549111234567{i}")));
            assert_eq!(update.phone_number_id.as_deref(), Some(STARTER));
            assert_eq!(update.waba_id.as_deref(), Some(STARTER_WABA));
            assert_eq!(update.timestamp, Some(T0 / 1_000));
        }
    }
    let failed: Vec<&StatusUpdate> = statuses.iter().filter(|s| s.wamid == gone).collect();
    assert_eq!(failed.len(), 1, "no sent for an undeliverable number");
    assert_eq!(failed[0].status, DeliveryStatus::Failed);
    assert_eq!(failed[0].errors[0].code, 131_026);

    let stats = eventually("the sender to be idle", || {
        let stats = s.sim.stats();
        (stats.webhooks.statuses_pending == 0).then_some(stats)
    })
    .await;
    assert_eq!(stats.webhooks.statuses_posted, 10);
    assert_eq!(stats.webhooks.posts_failed, 0);
}

#[actix_web::test]
async fn a_receiver_answering_500_gets_the_batch_again() {
    let (url, inbox) = receiver(1);
    let s = start(|c| {
        c.webhook_url = Some(url);
        c.behaviour.read_ratio = 0.0;
        c.behaviour.delivered_ratio = 0.0;
    })
    .await;
    assert_eq!(
        s.send(STARTER, Some(TOKEN), &welcome("+5491112345678", "x"))
            .await
            .0,
        200
    );
    eventually("a retry", || (inbox.post_count() >= 2).then_some(())).await;
    {
        let posts = inbox.posts.lock();
        assert_eq!(posts[0].body, posts[1].body, "the same batch, again");
    }
    let stats = eventually("the retry to succeed", || {
        let stats = s.sim.stats();
        (stats.webhooks.posts_ok == 1).then_some(stats)
    })
    .await;
    assert_eq!(stats.webhooks.posts_failed, 1);
    assert_eq!(stats.webhooks.statuses_posted, 1);
}

#[actix_web::test]
async fn a_webhook_url_set_later_still_gets_retried_notifications() {
    // A receiver that is down: nothing listens on this port.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_url = format!("http://{}/hook", dead.local_addr().unwrap());
    drop(dead);
    let s = start(|c| {
        c.webhook_url = Some(dead_url);
        c.behaviour.delivered_ratio = 0.0;
    })
    .await;
    assert_eq!(
        s.send(STARTER, Some(TOKEN), &welcome("+5491112345678", "x"))
            .await
            .0,
        200
    );
    eventually("a failed POST", || {
        (s.sim.stats().webhooks.posts_failed >= 1).then_some(())
    })
    .await;
    // The daemon comes back (at another address).
    let (url, inbox) = receiver(0);
    s.sim.set_webhook_url(Some(url));
    let statuses = eventually("the missed status", || {
        let statuses = inbox.statuses();
        (!statuses.is_empty()).then_some(statuses)
    })
    .await;
    assert_eq!(statuses[0].status, DeliveryStatus::Sent);
}

#[actix_web::test]
async fn duplicate_ratio_one_sends_every_status_twice() {
    let (url, inbox) = receiver(0);
    let s = start(|c| {
        c.webhook_url = Some(url);
        c.behaviour.read_ratio = 0.0;
        c.behaviour.duplicate_ratio = 1.0;
    })
    .await;
    let (_, body) = s
        .send(STARTER, Some(TOKEN), &welcome("+5491112345678", "x"))
        .await;
    let wamid = body["messages"][0]["id"].as_str().unwrap().to_owned();
    let statuses = eventually("4 statuses", || {
        let statuses = inbox.statuses();
        (statuses.len() >= 4).then_some(statuses)
    })
    .await;
    let count = |kind: DeliveryStatus| {
        statuses
            .iter()
            .filter(|s| s.wamid == wamid && s.status == kind)
            .count()
    };
    assert_eq!(count(DeliveryStatus::Sent), 2);
    assert_eq!(count(DeliveryStatus::Delivered), 2);
    assert_eq!(s.sim.stats().webhooks.duplicates_scheduled, 2);
}

#[actix_web::test]
async fn reordering_still_delivers_every_status_once() {
    let (url, inbox) = receiver(0);
    let s = start(|c| {
        c.webhook_url = Some(url);
        c.behaviour.read_ratio = 1.0;
        c.behaviour.reorder = true;
        c.behaviour.reorder_jitter_ms = 50;
    })
    .await;
    for i in 0..5 {
        let to = format!("+549111234567{i}");
        assert_eq!(
            s.send(STARTER, Some(TOKEN), &welcome(&to, "x")).await.0,
            200
        );
    }
    let statuses = eventually("15 statuses", || {
        let statuses = inbox.statuses();
        (statuses.len() >= 15).then_some(statuses)
    })
    .await;
    let mut keys: Vec<(String, String)> = statuses
        .iter()
        .map(|s| (s.wamid.clone(), s.status.to_string()))
        .collect();
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), 15);
}

// ---------------------------------------------------------------------------------------------
// Faults and control.

#[actix_web::test]
async fn template_status_changes_are_announced_and_enforced() {
    let (url, inbox) = receiver(0);
    let s = start(|c| c.webhook_url = Some(url)).await;
    let (status, body) = s
        .control(
            "/__sim/templates/status",
            json!({"waba_id": STARTER_WABA, "name": "order_update", "language": "es", "status": "PAUSED"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let update = eventually("a template status webhook", || {
        inbox.events().into_iter().find_map(|e| match e {
            Event::TemplateStatus(t) => Some(t),
            _ => None,
        })
    })
    .await;
    assert_eq!(update.event, TemplateEvent::Paused);
    assert_eq!(update.name.as_deref(), Some("order_update"));
    assert_eq!(update.language.as_deref(), Some("es"));
    assert_eq!(update.waba_id.as_deref(), Some(STARTER_WABA));
    assert_eq!(update.other_info_title.as_deref(), Some("FIRST_PAUSE"));
    let (status, error) = s
        .send(
            STARTER,
            Some(TOKEN),
            &order_update("+5491112345678", json!([order_body(), order_button()])),
        )
        .await;
    assert_eq!(
        (status, error["error"]["code"].as_i64()),
        (400, Some(132_015))
    );

    let (status, _) = s
        .control(
            "/__sim/templates/status",
            json!({"waba_id": STARTER_WABA, "name": "nope", "language": "es", "status": "PAUSED"}),
        )
        .await;
    assert_eq!(status, 404);
}

#[actix_web::test]
async fn number_changes_are_announced_and_shown() {
    let (url, inbox) = receiver(0);
    let s = start(|c| c.webhook_url = Some(url)).await;
    let (status, number) = s
        .control(
            &format!("/__sim/phone-numbers/{STARTER}"),
            json!({"throughput_level": "HIGH", "tier": "TIER_2K"}),
        )
        .await;
    assert_eq!(status, 200, "{number}");
    assert_eq!(number["throughput"]["level"], "HIGH");
    assert_eq!(
        number["whatsapp_business_manager_messaging_limit"],
        "TIER_2K"
    );
    let events = eventually("3 account webhooks", || {
        let events = inbox.events();
        (events.len() >= 3).then_some(events)
    })
    .await;
    assert!(events.iter().any(|e| matches!(e,
        Event::Capability(c) if c.limit() == Some(Tier::T2000))));
    assert!(events.iter().any(|e| matches!(e,
        Event::PhoneQuality(q) if q.event == Some(PhoneQualityEvent::ThroughputUpgrade)
            && q.display_phone_number.as_deref() == Some("12025550101"))));
    assert_eq!(s.stats().await.numbers[STARTER].mps_limit, 1_000);

    let (status, _) = s
        .control("/__sim/phone-numbers/999", json!({"quality_rating": "RED"}))
        .await;
    assert_eq!(status, 404);
    let (status, _) = s
        .control(
            &format!("/__sim/phone-numbers/{STARTER}"),
            json!({"tier": "TIER_5K"}),
        )
        .await;
    assert_eq!(status, 400);
}

#[actix_web::test]
async fn behaviour_patches_inject_5xx_and_are_validated() {
    let s = start(|_| {}).await;
    let (status, behaviour) = s
        .control("/__sim/behaviour", json!({"error_5xx_ratio": 1.0}))
        .await;
    assert_eq!(status, 200);
    assert_eq!(behaviour["error_5xx_ratio"], 1.0);
    assert_eq!(
        behaviour["enforce_mps"], true,
        "other fields keep their value"
    );
    let (status, error) = s
        .send(STARTER, Some(TOKEN), &welcome("+5491112345678", "x"))
        .await;
    assert_eq!(status, 500);
    let code = error["error"]["code"].as_i64().unwrap();
    assert!(code == 131_000 || code == 1, "{error}");
    // Faults come after validation: an invalid request still gets its own error.
    assert_eq!(
        s.send(STARTER, None, &welcome("+5491112345678", "x"))
            .await
            .0,
        401
    );

    let (status, _) = s
        .control("/__sim/behaviour", json!({"error_5xx_ratio": 2}))
        .await;
    assert_eq!(status, 400);
    let (status, _) = s.control("/__sim/behaviour", json!({"nope": true})).await;
    assert_eq!(status, 400);

    let stats = s.stats().await;
    assert_eq!(stats.faults.errors_5xx, 1);
    assert_eq!(stats.accepted_total, 0);
}

#[actix_web::test]
async fn a_hung_send_may_have_been_accepted() {
    let s = start(|c| {
        c.behaviour.hang_ratio = 1.0;
        c.behaviour.hang_ms = 2_000;
    })
    .await;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    let result = client
        .post(format!("{}/v24.0/{STARTER}/messages", s.sim.base_url()))
        .bearer_auth(TOKEN)
        .json(&welcome("+5491112345678", "x"))
        .send()
        .await;
    assert!(result.is_err(), "the client gives up first");
    let stats = eventually("the hung send to be counted", || {
        let stats = s.sim.stats();
        (stats.faults.hangs_accepted == 1).then_some(stats)
    })
    .await;
    assert_eq!(stats.faults.hangs, 1);
    assert_eq!(stats.faults.hangs_accepted, 1);
    assert_eq!(stats.accepted_by_recipient["+5491112345678"], 1);
}

// ---------------------------------------------------------------------------------------------
// The command.

/// Runs `mindo-bulk simulator` with `args`, reads its first JSON line, and gives the child back.
fn spawn_cli(args: &[&str]) -> (std::process::Child, Value) {
    use std::io::BufRead;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_mindo-bulk"))
        .arg("simulator")
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("the binary runs");
    let stdout = child.stdout.take().unwrap();
    let mut line = String::new();
    std::io::BufReader::new(stdout)
        .read_line(&mut line)
        .unwrap();
    let value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line:?}"));
    (child, value)
}

/// A raw HTTP/1.0 GET (the test is not async).
fn http_get(base_url: &str, path: &str) -> String {
    use std::io::{Read, Write};
    let address = base_url.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {address}\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
}

#[test]
fn the_simulator_command_serves_the_sandbox_and_prints_how_to_reach_it() {
    let (mut child, printed) =
        spawn_cli(&["--bind", "127.0.0.1:0", "--app-secret", "s3", "--json"]);
    let base_url = printed["base_url"].as_str().unwrap().to_owned();
    assert_eq!(printed["access_token"], "sandbox-token");
    assert_eq!(printed["app_secret"], "s3");
    assert_eq!(printed["wabas"].as_array().unwrap().len(), 3);
    let response = http_get(&base_url, "/__sim/stats");
    child.kill().unwrap();
    let _ = child.wait();
    assert!(response.starts_with("HTTP/1.0 200"), "{response}");
    assert!(response.contains("\"accepted_total\":0"), "{response}");
}

#[test]
fn the_simulator_command_reads_its_world_from_config() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("world.toml");
    std::fs::write(
        &path,
        r#"
app_secret = "from-file"

[[wabas]]
id = "111"
name = "Tiny"
access_token = "tiny-token"

[[wabas.phone_numbers]]
id = "222"
display_phone_number = "+1 202-555-0199"
verified_name = "Tiny"
tier = "TIER_2K"

[[wabas.templates]]
id = "333"
name = "hello_world"
language = "en_US"
components = [{ type = "BODY", text = "Hello!" }]
"#,
    )
    .unwrap();
    let config = path.to_str().unwrap();
    let (mut child, printed) = spawn_cli(&["--config", config, "--bind", "127.0.0.1:0", "--json"]);
    child.kill().unwrap();
    let _ = child.wait();
    assert_eq!(printed["access_token"], "tiny-token");
    assert_eq!(printed["app_secret"], "from-file");
    assert_eq!(printed["wabas"][0]["phone_numbers"][0]["tier"], "TIER_2K");

    // A broken world is a one-line error.
    std::fs::write(&path, "wabas = 3").unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_mindo-bulk"))
        .args(["simulator", "--config", config, "--bind", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("world.toml"), "{stderr}");
}
