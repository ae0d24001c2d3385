//! Bad input, table-driven: malformed requests to every POST endpoint and every query string
//! (wrong types, nulls, huge strings, unicode, invalid UTF-8, deep nesting, a million
//! recipients, wrong content types, bodies over the limit). Every answer must be a documented
//! 4xx with the error body `{"detail", "code"}` and leave the daemon healthy: `/healthz` 200
//! and a normal send still going through afterwards. How long the answers take is printed, not
//! asserted (timing belongs in `mindo-bench`, not in pass/fail tests).

use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;

use crate::meta::{phones, spawn_with_meta_tweaked, welcome, MetaApp, NUMBER_10K};

const SEND_BULK: &str = "/api/v1/meta-templates/send-bulk/";
const WEBHOOK: &str = "/webhooks/meta/";
/// The body limit of the daemon under test: room for the million-recipient body (about
/// 27 MB), small enough to send a body over it cheaply.
const BODY_LIMIT: usize = 32 * 1024 * 1024;

/// What a case expects.
#[derive(Clone, Copy, Debug)]
enum Expect {
    /// This 4xx status with this error code.
    Error(u16, &'static str),
    /// Not malformed (odd but valid input): this success status.
    Ok(u16),
}

/// How a case authenticates and signs.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Auth {
    ApiKey,
    None,
    /// A correct `X-Hub-Signature-256` of the body.
    Signed,
}

struct Case {
    name: String,
    method: reqwest::Method,
    path: String,
    content_type: Option<&'static str>,
    headers: Vec<(&'static str, reqwest::header::HeaderValue)>,
    auth: Auth,
    body: Vec<u8>,
    expect: Expect,
}

fn case(name: impl Into<String>, path: impl Into<String>, body: Vec<u8>, expect: Expect) -> Case {
    Case {
        name: name.into(),
        method: reqwest::Method::POST,
        path: path.into(),
        content_type: Some("application/json"),
        headers: Vec::new(),
        auth: Auth::ApiKey,
        body,
        expect,
    }
}

fn get(name: impl Into<String>, path: impl Into<String>, expect: Expect) -> Case {
    Case {
        method: reqwest::Method::GET,
        content_type: None,
        ..case(name, path, Vec::new(), expect)
    }
}

fn bytes(v: &Value) -> Vec<u8> {
    serde_json::to_vec(v).unwrap()
}

/// A valid send body for one recipient, with `edit` applied.
fn send_body(edit: impl FnOnce(&mut Value)) -> Vec<u8> {
    let mut body = welcome(NUMBER_10K, &phones(0, 1));
    edit(&mut body);
    bytes(&body)
}

/// A valid send body whose first recipient is `recipient`.
fn with_recipient(recipient: Value) -> Vec<u8> {
    send_body(|b| b["recipients"] = json!([recipient]))
}

fn nested(depth: usize) -> String {
    format!("{}{}", "[".repeat(depth), "]".repeat(depth))
}

const BAD: Expect = Expect::Error(400, "validation_error");
const BAD_RECIPIENTS: Expect = Expect::Error(400, "invalid_recipients");

/// Every case against send-bulk.
fn send_bulk_cases() -> Vec<Case> {
    let mega = "9".repeat(1024 * 1024);
    let mut cases = vec![
        // Not JSON, or not an object.
        case("empty body", SEND_BULK, Vec::new(), BAD),
        case("whitespace body", SEND_BULK, b"  \n ".to_vec(), BAD),
        case("not JSON", SEND_BULK, b"hello".to_vec(), BAD),
        case("truncated JSON", SEND_BULK, b"{\"phone_number_id\": ".to_vec(), BAD),
        case("JSON null", SEND_BULK, b"null".to_vec(), BAD),
        case("JSON array", SEND_BULK, b"[]".to_vec(), BAD),
        case("JSON string", SEND_BULK, b"\"send\"".to_vec(), BAD),
        case("trailing garbage", SEND_BULK, [send_body(|_| {}), b" }{".to_vec()].concat(), BAD),
        case("invalid UTF-8 in a string", SEND_BULK, {
            let mut b = send_body(|b| b["template_name"] = json!("welcome_XX"));
            let at = b.windows(2).position(|w| w == b"XX").unwrap();
            b[at] = 0xff;
            b[at + 1] = 0xfe;
            b
        }, BAD),
        case("invalid UTF-8 outside strings", SEND_BULK, [b"\xef\xbb\xbf\xff".to_vec(), send_body(|_| {})].concat(), BAD),
        case("a lone surrogate escape", SEND_BULK,
            br#"{"phone_number_id":"106540352240002","template_name":"\ud800","recipients":[{"phone":"+5491130000000"}]}"#.to_vec(), BAD),
        case("duplicate keys", SEND_BULK,
            br#"{"phone_number_id":"106540352240002","template_name":"a","template_name":"b","recipients":[{"phone":"+5491130000000"}]}"#.to_vec(), BAD),
        case("a number out of range", SEND_BULK,
            br#"{"phone_number_id":"106540352240002","template_name":"a","skip_invalid":1e999,"recipients":[]}"#.to_vec(), BAD),
        // Recipients are read without building what they hold: a deep value where a
        // recipient or a variable should be is skipped and reported as the wrong kind.
        case("nesting 10 000 deep in recipients", SEND_BULK,
            format!(r#"{{"phone_number_id":"106540352240002","template_name":"welcome_message","recipients":[{}]}}"#, nested(10_000)).into_bytes(), BAD_RECIPIENTS),
        case("nesting 10 000 deep in variables", SEND_BULK,
            format!(r#"{{"phone_number_id":"106540352240002","template_name":"welcome_message","recipients":[{{"phone":"+5491130000000","variables":{{"customer_name":{}}}}}]}}"#, nested(10_000)).into_bytes(), BAD_RECIPIENTS),
        case("nesting 10 000 deep, objects", SEND_BULK,
            format!("{}{}", r#"{"a":"#.repeat(10_000), "}".repeat(10_000)).into_bytes(), BAD),
        // Wrong types and nulls at the top level.
        case("phone_number_id a number", SEND_BULK, send_body(|b| b["phone_number_id"] = json!(106540352240002u64)), BAD),
        case("phone_number_id null", SEND_BULK, send_body(|b| b["phone_number_id"] = Value::Null), BAD),
        case("phone_number_id missing", SEND_BULK, send_body(|b| { b.as_object_mut().unwrap().remove("phone_number_id"); }), BAD),
        case("template_name an array", SEND_BULK, send_body(|b| b["template_name"] = json!(["welcome_message"])), BAD),
        case("template_name null", SEND_BULK, send_body(|b| b["template_name"] = Value::Null), BAD),
        case("language null", SEND_BULK, send_body(|b| b["language"] = Value::Null), BAD),
        case("language a number", SEND_BULK, send_body(|b| b["language"] = json!(34)), BAD),
        case("recipients null", SEND_BULK, send_body(|b| b["recipients"] = Value::Null), BAD),
        case("recipients a string", SEND_BULK, send_body(|b| b["recipients"] = json!("+5491130000000")), BAD),
        case("recipients an object", SEND_BULK, send_body(|b| b["recipients"] = json!({"phone": "+5491130000000"})), BAD),
        case("recipients empty", SEND_BULK, send_body(|b| b["recipients"] = json!([])), BAD),
        case("skip_invalid a string", SEND_BULK, send_body(|b| b["skip_invalid"] = json!("yes")), BAD),
        case("skip_invalid null", SEND_BULK, send_body(|b| b["skip_invalid"] = Value::Null), BAD),
        case("dry_run a number", SEND_BULK, send_body(|b| b["dry_run"] = json!(1)), BAD),
        case("scheduled_at a number", SEND_BULK, send_body(|b| b["scheduled_at"] = json!(1_767_225_600)), BAD),
        case("scheduled_at not a date", SEND_BULK, send_body(|b| b["scheduled_at"] = json!("tomorrow")), BAD),
        case("scheduled_at an impossible date", SEND_BULK, send_body(|b| b["scheduled_at"] = json!("2026-02-30T25:61:00Z")), BAD),
        case("callback_url a number", SEND_BULK, send_body(|b| b["callback_url"] = json!(5)), BAD),
        case("callback_url javascript:", SEND_BULK, send_body(|b| b["callback_url"] = json!("javascript:alert(1)")), BAD),
        case("callback_url with RTL override", SEND_BULK, send_body(|b| b["callback_url"] = json!("https://\u{202E}moc.elpmaxe")), BAD),
        // Wrong types and nulls in a recipient.
        case("recipient null", SEND_BULK, with_recipient(Value::Null), BAD_RECIPIENTS),
        case("recipient a number", SEND_BULK, with_recipient(json!(5_491_130_000_000u64)), BAD_RECIPIENTS),
        case("recipient a string", SEND_BULK, with_recipient(json!("+5491130000000")), BAD_RECIPIENTS),
        case("recipient empty", SEND_BULK, with_recipient(json!({})), BAD_RECIPIENTS),
        case("phone a number", SEND_BULK, with_recipient(json!({"phone": 5_491_130_000_000u64, "variables": {"customer_name": "Ana"}})), BAD_RECIPIENTS),
        case("phone null", SEND_BULK, with_recipient(json!({"phone": null, "variables": {"customer_name": "Ana"}})), BAD_RECIPIENTS),
        case("variables a string", SEND_BULK, with_recipient(json!({"phone": "+5491130000000", "variables": "Ana"})), BAD_RECIPIENTS),
        case("variables an array", SEND_BULK, with_recipient(json!({"phone": "+5491130000000", "variables": ["Ana"]})), BAD_RECIPIENTS),
        case("variables null", SEND_BULK, with_recipient(json!({"phone": "+5491130000000", "variables": null})), BAD_RECIPIENTS),
        case("a variable a number", SEND_BULK, with_recipient(json!({"phone": "+5491130000000", "variables": {"customer_name": 5}})), BAD_RECIPIENTS),
        case("a variable null", SEND_BULK, with_recipient(json!({"phone": "+5491130000000", "variables": {"customer_name": null}})), BAD_RECIPIENTS),
        case("a variable an object", SEND_BULK, with_recipient(json!({"phone": "+5491130000000", "variables": {"customer_name": {"first": "Ana"}}})), BAD_RECIPIENTS),
        case("button_variables a number", SEND_BULK, with_recipient(json!({"phone": "+5491130000000", "variables": {"customer_name": "Ana"}, "button_variables": 0})), BAD_RECIPIENTS),
        // Huge strings.
        case("a 1 MB phone", SEND_BULK, with_recipient(json!({"phone": format!("+{mega}"), "variables": {"customer_name": "Ana"}})), BAD_RECIPIENTS),
        case("a 1 MB phone_number_id", SEND_BULK, send_body(|b| b["phone_number_id"] = json!(mega)), BAD),
        case("a 1 MB template_name", SEND_BULK, send_body(|b| b["template_name"] = json!(mega)), BAD),
        case("a 1 MB language", SEND_BULK, send_body(|b| b["language"] = json!(mega)), BAD),
        case("a 1 MB variable name", SEND_BULK, with_recipient(json!({"phone": "+5491130000000", "variables": {"customer_name": "Ana", mega.clone(): "x"}})), BAD_RECIPIENTS),
        case("a 1 MB variable value", SEND_BULK, with_recipient(json!({"phone": "+5491130000000", "variables": {"customer_name": mega.clone()}})), BAD_RECIPIENTS),
        case("a 1 MB scheduled_at", SEND_BULK, send_body(|b| b["scheduled_at"] = json!(mega)), BAD),
        case("a 1 MB callback_url", SEND_BULK, send_body(|b| b["callback_url"] = json!(format!("https://{mega}.example"))), BAD),
        // Unicode where it does not belong.
        case("a phone with an emoji", SEND_BULK, with_recipient(json!({"phone": "+54911📞30000000", "variables": {"customer_name": "Ana"}})), BAD_RECIPIENTS),
        case("a phone with a NUL", SEND_BULK, with_recipient(json!({"phone": "+5491130000\u{0}000", "variables": {"customer_name": "Ana"}})), BAD_RECIPIENTS),
        case("a phone of NULs", SEND_BULK, with_recipient(json!({"phone": "\u{0}".repeat(20), "variables": {"customer_name": "Ana"}})), BAD_RECIPIENTS),
        case("a phone of fullwidth digits", SEND_BULK, with_recipient(json!({"phone": "＋５４９１１３０００００００", "variables": {"customer_name": "Ana"}})), BAD_RECIPIENTS),
        case("a template_name with an RTL override", SEND_BULK, send_body(|b| b["template_name"] = json!("welcome\u{202E}message")), Expect::Error(404, "template_not_found")),
        case("a template_name with a NUL", SEND_BULK, send_body(|b| b["template_name"] = json!("welcome_message\u{0}")), BAD),
        case("a template_name of emoji", SEND_BULK, send_body(|b| b["template_name"] = json!("🎉🎉🎉")), Expect::Error(404, "template_not_found")),
        case("a language with a NUL", SEND_BULK, send_body(|b| b["language"] = json!("es\u{0}")), BAD),
        case("a phone_number_id with a NUL", SEND_BULK, send_body(|b| b["phone_number_id"] = json!("106540352240002\u{0}")), BAD),
        case("a phone_number_id with an RTL mark", SEND_BULK, send_body(|b| b["phone_number_id"] = json!("\u{200F}106540352240002")), Expect::Error(404, "phone_number_not_found")),
        case("a variable name with a NUL", SEND_BULK, with_recipient(json!({"phone": "+5491130000000", "variables": {"customer_name\u{0}": "Ana"}})), BAD_RECIPIENTS),
        // Odd but valid. Bidirectional marks are what a number copied from a right-to-left
        // text carries: they are separators, like spaces. Unicode in a variable's text is the
        // client's to send.
        case("a phone with RTL marks (dry run)", SEND_BULK, send_body(|b| {
            b["dry_run"] = json!(true);
            b["recipients"][0]["phone"] = json!("\u{200F}+54 9 11 3000-0000\u{200F}");
        }), Expect::Ok(200)),
        case("a phone with an RTL override (dry run)", SEND_BULK, send_body(|b| {
            b["dry_run"] = json!(true);
            b["recipients"][0]["phone"] = json!("+54911\u{202E}30000000");
        }), Expect::Ok(200)),
        case("emoji, RTL and NUL in a variable (dry run)", SEND_BULK, send_body(|b| {
            b["dry_run"] = json!(true);
            b["recipients"][0]["variables"]["customer_name"] = json!("Ana 🎉 \u{200F}مرحبا\u{0}!");
        }), Expect::Ok(200)),
        case("a NUL in a variable, stored", SEND_BULK, send_body(|b| {
            b["recipients"][0]["phone"] = json!("+5491130000999");
            b["recipients"][0]["variables"]["customer_name"] = json!("A\u{0}na");
        }), Expect::Ok(202)),
        // Wrong content types: the body is read as JSON whatever its declared type, so what
        // decides is whether it is JSON.
        Case { content_type: Some("application/x-www-form-urlencoded"),
            ..case("a form body", SEND_BULK, b"phone_number_id=106540352240002&template_name=welcome_message&recipients=%2B5491130000000".to_vec(), BAD) },
        Case { content_type: Some("multipart/form-data; boundary=x"),
            ..case("a multipart body", SEND_BULK, b"--x\r\nContent-Disposition: form-data; name=\"recipients\"\r\n\r\n+5491130000000\r\n--x--\r\n".to_vec(), BAD) },
        Case { content_type: Some("text/xml"),
            ..case("an XML body", SEND_BULK, b"<send><phone>+5491130000000</phone></send>".to_vec(), BAD) },
        Case { content_type: Some("application/octet-stream"),
            ..case("binary body", SEND_BULK, (0..=255u8).cycle().take(4096).collect(), BAD) },
        // Headers.
        Case { headers: vec![("Idempotency-Key", reqwest::header::HeaderValue::from_str(&"k".repeat(300)).unwrap())],
            ..case("a 300-character Idempotency-Key", SEND_BULK, send_body(|_| {}), BAD) },
        Case { headers: vec![("Idempotency-Key", reqwest::header::HeaderValue::from_bytes(b"cl\xe9").unwrap())],
            ..case("a non-ASCII Idempotency-Key", SEND_BULK, send_body(|_| {}), BAD) },
        Case { headers: vec![("X-API-Key", reqwest::header::HeaderValue::from_bytes(b"mindo_\xe9\xe9").unwrap())], auth: Auth::None,
            ..case("a non-ASCII API key", SEND_BULK, send_body(|_| {}), Expect::Error(401, "invalid_api_key")) },
        Case { headers: vec![("X-API-Key", reqwest::header::HeaderValue::from_str(&"a".repeat(8 * 1024)).unwrap())], auth: Auth::None,
            ..case("an 8 KB API key", SEND_BULK, send_body(|_| {}), Expect::Error(401, "invalid_api_key")) },
        Case { auth: Auth::None, ..case("no API key and a broken body", SEND_BULK, b"{".to_vec(), Expect::Error(401, "missing_api_key")) },
    ];
    // A body over the limit.
    cases.push(case(
        "a body over the limit",
        SEND_BULK,
        vec![b' '; BODY_LIMIT + 1],
        Expect::Error(413, "payload_too_large"),
    ));
    cases
}

/// Every case against the control endpoints (their bodies are not read).
fn control_cases(id: &str) -> Vec<Case> {
    let base = "/api/v1/meta-templates/bulk-sends";
    let unknown = "0b9f0c1e-5d4b-4a7e-9a51-3c2f1d0e9b8a";
    let mut cases = Vec::new();
    for action in ["cancel", "pause", "resume"] {
        cases.extend([
            case(
                format!("{action}: an unknown id"),
                format!("{base}/{unknown}/{action}/"),
                Vec::new(),
                Expect::Error(404, "not_found"),
            ),
            case(
                format!("{action}: an id that is no uuid"),
                format!("{base}/not-a-uuid/{action}/"),
                Vec::new(),
                Expect::Error(404, "not_found"),
            ),
            case(
                format!("{action}: a 4 KB id"),
                format!("{base}/{}/{action}/", "a".repeat(4096)),
                Vec::new(),
                Expect::Error(404, "not_found"),
            ),
            case(
                format!("{action}: an id with a NUL"),
                format!("{base}/%00/{action}/"),
                Vec::new(),
                Expect::Error(404, "not_found"),
            ),
            case(
                format!("{action}: an id of invalid UTF-8"),
                format!("{base}/%FF%FE/{action}/"),
                Vec::new(),
                Expect::Error(404, "not_found"),
            ),
            case(
                format!("{action}: an id with an RTL override"),
                format!("{base}/%E2%80%AE{unknown}/{action}/"),
                Vec::new(),
                Expect::Error(404, "not_found"),
            ),
            case(
                format!("{action}: garbage body"),
                format!("{base}/{unknown}/{action}/"),
                b"\xff\xfe{[".to_vec(),
                Expect::Error(404, "not_found"),
            ),
            Case {
                auth: Auth::None,
                ..case(
                    format!("{action}: no API key"),
                    format!("{base}/{id}/{action}/"),
                    b"{".to_vec(),
                    Expect::Error(401, "missing_api_key"),
                )
            },
            Case {
                method: reqwest::Method::PUT,
                ..case(
                    format!("{action}: PUT"),
                    format!("{base}/{id}/{action}/"),
                    Vec::new(),
                    Expect::Error(405, "method_not_allowed"),
                )
            },
        ]);
    }
    cases
}

/// Every case against the Meta webhook.
fn webhook_cases() -> Vec<Case> {
    let signed = |name: &str, body: Vec<u8>, expect: Expect| Case {
        auth: Auth::Signed,
        ..case(name, WEBHOOK, body, expect)
    };
    let entry = |statuses: Value| {
        bytes(
            &json!({"object": "whatsapp_business_account", "entry": [{"id": "102938475610002",
            "changes": [{"field": "messages", "value": {"messaging_product": "whatsapp",
                "metadata": {"display_phone_number": "12025550102", "phone_number_id": NUMBER_10K},
                "statuses": statuses}}]}]}),
        )
    };
    vec![
        Case {
            auth: Auth::None,
            ..case(
                "webhook: unsigned",
                WEBHOOK,
                entry(json!([])),
                Expect::Error(401, "invalid_signature"),
            )
        },
        Case {
            auth: Auth::None,
            headers: vec![(
                "X-Hub-Signature-256",
                reqwest::header::HeaderValue::from_static("sha256=zz"),
            )],
            ..case(
                "webhook: a signature that is not hex",
                WEBHOOK,
                entry(json!([])),
                Expect::Error(401, "invalid_signature"),
            )
        },
        Case {
            auth: Auth::None,
            headers: vec![(
                "X-Hub-Signature-256",
                reqwest::header::HeaderValue::from_bytes(b"sha256=\xe9").unwrap(),
            )],
            ..case(
                "webhook: a non-ASCII signature",
                WEBHOOK,
                entry(json!([])),
                Expect::Error(401, "invalid_signature"),
            )
        },
        Case {
            auth: Auth::None,
            headers: vec![(
                "X-Hub-Signature-256",
                reqwest::header::HeaderValue::from_str(&format!("sha256={}", "ab".repeat(4096)))
                    .unwrap(),
            )],
            ..case(
                "webhook: an 8 KB signature",
                WEBHOOK,
                entry(json!([])),
                Expect::Error(401, "invalid_signature"),
            )
        },
        signed("webhook: empty", Vec::new(), BAD),
        signed("webhook: not JSON", b"hello".to_vec(), BAD),
        signed(
            "webhook: invalid UTF-8",
            b"{\"object\":\"\xff\xfe\"}".to_vec(),
            BAD,
        ),
        signed("webhook: JSON null", b"null".to_vec(), BAD),
        signed(
            "webhook: nesting 10 000 deep",
            format!(
                r#"{{"object":"whatsapp_business_account","entry":{}}}"#,
                nested(10_000)
            )
            .into_bytes(),
            BAD,
        ),
        signed(
            "webhook: entry a string",
            bytes(&json!({"object": "whatsapp_business_account", "entry": "x"})),
            BAD,
        ),
        // Broken items inside a well-formed notification are dropped (Meta would retry a
        // refusal for days), the rest applies: 200.
        signed(
            "webhook: statuses of wrong types",
            entry(json!([null, 5, "x", {"id": 5, "status": ["sent"], "timestamp": {}}])),
            Expect::Ok(200),
        ),
        signed(
            "webhook: a status with a 1 MB id and NULs",
            entry(
                json!([{"id": "9".repeat(1024 * 1024), "status": "sent\u{0}", "timestamp": "\u{0}", "recipient_id": "\u{202E}1"}]),
            ),
            Expect::Ok(200),
        ),
        signed(
            "webhook: a body over its 4 MiB limit",
            vec![b' '; 4 * 1024 * 1024 + 1],
            Expect::Error(413, "payload_too_large"),
        ),
        get(
            "webhook verify: no parameters",
            "/webhooks/meta/",
            Expect::Error(403, "forbidden"),
        ),
        get(
            "webhook verify: a wrong token with unicode",
            "/webhooks/meta/?hub.mode=subscribe&hub.verify_token=%E2%80%AE%00&hub.challenge=1",
            Expect::Error(403, "forbidden"),
        ),
        get(
            "webhook verify: invalid UTF-8",
            "/webhooks/meta/?hub.mode=%FF&hub.verify_token=%FE&hub.challenge=%FF",
            Expect::Error(403, "forbidden"),
        ),
    ]
}

/// Every case against the query strings of the read endpoints.
fn query_cases(id: &str) -> Vec<Case> {
    let list = "/api/v1/meta-templates/bulk-sends/";
    let messages = format!("/api/v1/meta-templates/bulk-sends/{id}/messages/");
    let mut cases = Vec::new();
    for (what, path) in [("list", list.to_owned()), ("messages", messages.clone())] {
        for (name, query) in [
            ("page 0", "page=0"),
            ("page -1", "page=-1"),
            ("page a word", "page=abc"),
            ("page huge", "page=99999999999999999999999999"),
            ("page a float", "page=1.5"),
            ("page empty", "page="),
            ("page a NUL", "page=%00"),
            ("page invalid UTF-8", "page=%FF"),
            ("page fullwidth digits", "page=%EF%BC%91"),
            ("page_size 0", "page_size=0"),
            ("page_size over the maximum", "page_size=1001"),
            ("page_size an exponent", "page_size=1e3"),
            ("page twice", "page=1&page=2"),
            ("status of emoji", "status=%F0%9F%8E%89"),
            ("status with an RTL override", "status=%E2%80%AEsent"),
            ("status invalid UTF-8", "status=%FF"),
        ] {
            cases.push(get(
                format!("{what}: {name}"),
                format!("{path}?{query}"),
                BAD,
            ));
        }
    }
    let list_only = [
        ("status lowercase", "status=completed"),
        ("template a word", "template=abc"),
        ("template huge", "template=99999999999999999999999"),
        ("created_after impossible", "created_after=2025-13-45"),
        (
            "created_after a timestamp",
            "created_after=2025-11-16T21:30:00Z",
        ),
        ("created_before a NUL", "created_before=%00"),
        (
            "created_before with an RTL mark",
            "created_before=%E2%80%8F2025-11-16",
        ),
    ];
    for (name, query) in list_only {
        cases.push(get(format!("list: {name}"), format!("{list}?{query}"), BAD));
    }
    cases.push(get(
        "list: a template_name with a NUL",
        format!("{list}?template_name=welcome%00"),
        BAD,
    ));
    let base = "/api/v1/meta-templates/bulk-sends";
    for (name, bad_id) in [
        ("no uuid", "not-a-uuid"),
        ("a NUL", "%00"),
        ("invalid UTF-8", "%FF%FE"),
        (
            "an RTL override",
            "%E2%80%AE0b9f0c1e-5d4b-4a7e-9a51-3c2f1d0e9b8a",
        ),
    ] {
        for (what, suffix) in [
            ("status", ""),
            ("messages", "messages/"),
            ("export", "messages/export/"),
        ] {
            cases.push(get(
                format!("{what}: an id with {name}"),
                format!("{base}/{bad_id}/{suffix}"),
                Expect::Error(404, "not_found"),
            ));
        }
    }
    cases.push(get(
        "list: a 16 KB template_name",
        format!("{list}?template_name={}", "x".repeat(16 * 1024)),
        Expect::Ok(200),
    ));
    for (name, query) in [
        ("status uppercase", "status=DELIVERED"),
        ("status unknown", "status=sending"),
    ] {
        cases.push(get(
            format!("messages: {name}"),
            format!("{messages}?{query}"),
            BAD,
        ));
    }
    cases
}

async fn run(meta: &MetaApp, case: &Case) -> (u16, Value, Duration) {
    let url = format!("{}{}", meta.app.address, case.path);
    let mut req = meta.app.client.request(case.method.clone(), url);
    if let Some(ct) = case.content_type {
        req = req.header("Content-Type", ct);
    }
    match case.auth {
        Auth::ApiKey => req = req.header("X-API-Key", &meta.api_key),
        Auth::Signed => {
            let mut mac = Hmac::<Sha256>::new_from_slice(meta.sim.app_secret().as_bytes()).unwrap();
            mac.update(&case.body);
            let signature = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
            req = req.header("X-Hub-Signature-256", signature);
        }
        Auth::None => {}
    }
    for (name, value) in &case.headers {
        req = req.header(*name, value.clone());
    }
    if !case.body.is_empty() || case.method == reqwest::Method::POST {
        req = req.body(case.body.clone());
    }
    let started = Instant::now();
    let res = req
        .send()
        .await
        .unwrap_or_else(|e| panic!("{}: no answer: {e}", case.name));
    let status = res.status().as_u16();
    let content_type = res
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let text = res.bytes().await.unwrap_or_default();
    let took = started.elapsed();
    let body = if content_type.starts_with("application/json") {
        serde_json::from_slice(&text).unwrap_or(Value::Null)
    } else {
        Value::String(String::from_utf8_lossy(&text).chars().take(200).collect())
    };
    (status, body, took)
}

/// The daemon is still fine: `/healthz` 200 and a normal send accepted and sent.
async fn assert_healthy(meta: &MetaApp, from: u32) {
    let res = meta.app.get("/healthz", None).await;
    assert_eq!(res.status(), 200);
    let (code, res) = meta.send_bulk(&welcome(NUMBER_10K, &phones(from, 2))).await;
    assert_eq!(code, 202, "{res:#}");
    let id = res["bulk_send_id"].as_str().unwrap().to_owned();
    let s = meta.wait_status(&id, |s| s["status"] == "COMPLETED").await;
    assert_eq!(s["sent_count"], 2);
}

async fn spawn() -> MetaApp {
    spawn_with_meta_tweaked(|_| {}, |c| c.body_limit_bytes = BODY_LIMIT).await
}

#[actix_web::test]
async fn malformed_requests_get_documented_errors_and_leave_the_daemon_healthy() {
    let meta = spawn().await;
    // A send of this tenant, for the endpoints that take an id.
    let (code, res) = meta.send_bulk(&welcome(NUMBER_10K, &phones(500, 1))).await;
    assert_eq!(code, 202);
    let id = res["bulk_send_id"].as_str().unwrap().to_owned();

    let mut cases = send_bulk_cases();
    cases.extend(control_cases(&id));
    cases.extend(webhook_cases());
    cases.extend(query_cases(&id));
    let mut failures = Vec::new();
    let mut slowest = (Duration::ZERO, String::new());
    for case in &cases {
        let (status, body, took) = run(&meta, case).await;
        if took > slowest.0 {
            slowest = (took, case.name.clone());
        }
        let ok = match case.expect {
            Expect::Error(want, code) => {
                status == want
                    && body["code"] == code
                    && body["detail"].as_str().is_some_and(|d| !d.is_empty())
            }
            Expect::Ok(want) => status == want,
        };
        if !ok {
            failures.push(format!(
                "{}: expected {:?}, got {status} in {took:.1?}: {}",
                case.name,
                case.expect,
                body.to_string().chars().take(300).collect::<String>()
            ));
        }
    }
    println!(
        "bad input: {} cases, slowest {:.2?} ({})",
        cases.len(),
        slowest.0,
        slowest.1
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert_healthy(&meta, 1_000).await;
}

/// A send of a million recipients (63 MB, under the default 64 MiB body limit): refused as
/// over `max_recipients` (100 000 by default), without building the recipients in memory.
#[actix_web::test]
async fn a_million_recipients_are_refused_without_exhausting_memory() {
    let meta = spawn_with_meta_tweaked(|_| {}, |_| {}).await;
    let mut body = String::with_capacity(30 * 1024 * 1024);
    body.push_str(&format!(
        r#"{{"phone_number_id":"{NUMBER_10K}","template_name":"welcome_message","recipients":["#
    ));
    for i in 0..1_000_000u32 {
        if i > 0 {
            body.push(',');
        }
        body.push_str(&format!(
            r#"{{"phone":"+54911{:08}","variables":{{"customer_name":"Ana"}}}}"#,
            30_000_000 + i
        ));
    }
    body.push_str("]}");
    let size = body.len();
    let rss_before = memory_kib("VmRSS:");
    let started = Instant::now();
    let res = meta
        .app
        .client
        .post(format!("{}{SEND_BULK}", meta.app.address))
        .header("X-API-Key", &meta.api_key)
        .header("Content-Type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    let took = started.elapsed();
    let status = res.status().as_u16();
    let answer: Value = res.json().await.unwrap();
    let peak = memory_kib("VmHWM:");
    println!(
        "a million recipients ({:.1} MB): {status} in {took:.2?}; this test process's resident memory {} MiB before, peak {} MiB",
        size as f64 / 1e6,
        rss_before / 1024,
        peak / 1024
    );
    assert_eq!(status, 400, "{answer:#}");
    assert_eq!(answer["code"], "validation_error");
    assert_eq!(answer["errors"][0]["field"], "recipients", "{answer:#}");
    // The body itself is here twice (the client's copy and the server's); building the
    // recipients as JSON values would take over a gigabyte.
    assert!(
        peak.saturating_sub(rss_before) < 600 * 1024,
        "the process grew by {} MiB",
        peak.saturating_sub(rss_before) / 1024
    );
    assert_healthy(&meta, 2_000).await;
}

/// A memory figure of this process (`VmRSS:` resident now, `VmHWM:` its peak), KiB.
fn memory_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}
