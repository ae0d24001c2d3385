//! `GET /openapi.json`: an OpenAPI 3.1 document of every endpoint of API.md, whose documented
//! shapes match what the daemon really answers.
//!
//! The shape checker walks a real body next to its documented schema (following `$ref`s into
//! `components.schemas`): every key of a real object is a documented property, every
//! documented required property is present, types and enums agree; arrays are checked item by
//! item, recursively.

use serde_json::{json, Value};

use crate::helpers::{json, spawn_app};
use crate::meta::{phones, spawn_with_meta, welcome, MetaApp, NUMBER_10K};

/// Every path of API.md, canonical form, with its methods.
const PATHS: &[(&str, &[&str])] = &[
    ("/api/v1/meta-templates/send-bulk/", &["post"]),
    ("/api/v1/meta-templates/bulk-sends/", &["get"]),
    (
        "/api/v1/meta-templates/bulk-sends/{bulk_send_id}/",
        &["get"],
    ),
    (
        "/api/v1/meta-templates/bulk-sends/{bulk_send_id}/messages/",
        &["get"],
    ),
    (
        "/api/v1/meta-templates/bulk-sends/{bulk_send_id}/messages/export/",
        &["get"],
    ),
    (
        "/api/v1/meta-templates/bulk-sends/{bulk_send_id}/cancel/",
        &["post"],
    ),
    (
        "/api/v1/meta-templates/bulk-sends/{bulk_send_id}/pause/",
        &["post"],
    ),
    (
        "/api/v1/meta-templates/bulk-sends/{bulk_send_id}/resume/",
        &["post"],
    ),
    ("/api/v1/business-accounts/", &["get"]),
    ("/api/v1/suppressions/", &["get", "post"]),
    ("/api/v1/suppressions/{phone}/", &["delete"]),
    (
        "/api/v1/meta-templates/bulk-sends/{bulk_send_id}/events/",
        &["get"],
    ),
    ("/api/v1/events/", &["get"]),
    ("/api/v1/dashboard-token/", &["post"]),
    ("/", &["get"]),
    ("/dashboard/{asset}", &["get"]),
    ("/webhooks/meta/", &["get", "post"]),
    ("/healthz", &["get"]),
    ("/readyz", &["get"]),
    ("/metrics", &["get"]),
    ("/openapi.json", &["get"]),
];

async fn document(base: &str, client: &reqwest::Client) -> Value {
    let res = client
        .get(format!("{base}/openapi.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert!(res.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/json"));
    res.json().await.expect("the document is JSON")
}

/// Follows a `$ref` (`#/components/schemas/Name`).
fn resolve<'a>(doc: &'a Value, schema: &'a Value) -> &'a Value {
    match schema.get("$ref").and_then(Value::as_str) {
        Some(reference) => {
            let pointer = reference
                .strip_prefix('#')
                .unwrap_or_else(|| panic!("a local $ref: {reference}"));
            let target = doc
                .pointer(pointer)
                .unwrap_or_else(|| panic!("{reference} does not resolve"));
            resolve(doc, target)
        }
        None => schema,
    }
}

fn is_null_schema(schema: &Value) -> bool {
    schema["type"] == "null"
}

fn type_matches(kind: &str, value: &Value) -> bool {
    match kind {
        "null" => value.is_null(),
        "boolean" => value.is_boolean(),
        "integer" => value.is_i64() || value.is_u64(),
        "number" => value.is_number(),
        "string" => value.is_string(),
        "array" => value.is_array(),
        "object" => value.is_object(),
        other => panic!("unknown schema type {other}"),
    }
}

/// Checks `value` against `schema`; problems are collected with their JSON path.
fn check(doc: &Value, schema: &Value, value: &Value, at: &str, problems: &mut Vec<String>) {
    let schema = resolve(doc, schema);
    for combinator in ["oneOf", "anyOf"] {
        if let Some(branches) = schema.get(combinator).and_then(Value::as_array) {
            if value.is_null() {
                if !branches.iter().any(|b| is_null_schema(resolve(doc, b))) {
                    problems.push(format!("{at}: null where the schema allows none"));
                }
            } else {
                let mut best: Option<Vec<String>> = None;
                for branch in branches.iter().filter(|b| !is_null_schema(b)) {
                    let mut found = Vec::new();
                    check(doc, branch, value, at, &mut found);
                    if found.is_empty() {
                        best = Some(found);
                        break;
                    }
                    if best.as_ref().is_none_or(|b| found.len() < b.len()) {
                        best = Some(found);
                    }
                }
                problems.extend(best.unwrap_or_default());
            }
            return;
        }
    }
    if let Some(parts) = schema.get("allOf").and_then(Value::as_array) {
        for part in parts {
            check(doc, part, value, at, problems);
        }
    }
    match schema.get("type") {
        Some(Value::String(kind)) if !type_matches(kind, value) => {
            problems.push(format!("{at}: {value} is not {kind}"));
            return;
        }
        Some(Value::Array(kinds))
            if !kinds
                .iter()
                .any(|k| type_matches(k.as_str().unwrap(), value)) =>
        {
            problems.push(format!("{at}: {value} is none of {kinds:?}"));
            return;
        }
        _ => {}
    }
    if let (Some(allowed), false) = (
        schema.get("enum").and_then(Value::as_array),
        value.is_null(),
    ) {
        if !allowed.contains(value) {
            problems.push(format!("{at}: {value} is not one of {allowed:?}"));
        }
    }
    if let Some(object) = value.as_object() {
        let properties = schema.get("properties").and_then(Value::as_object);
        let open = schema
            .get("additionalProperties")
            .is_some_and(|a| a != &Value::Bool(false));
        if let Some(properties) = properties {
            for (key, item) in object {
                match properties.get(key) {
                    Some(property) => check(doc, property, item, &format!("{at}.{key}"), problems),
                    None if open => {}
                    None => problems.push(format!("{at}.{key}: not a documented property")),
                }
            }
        } else if let Some(extra) = schema.get("additionalProperties").filter(|a| a.is_object()) {
            for (key, item) in object {
                check(doc, extra, item, &format!("{at}.{key}"), problems);
            }
        }
        for required in schema
            .get("required")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let name = required.as_str().unwrap();
            if !object.contains_key(name) {
                problems.push(format!("{at}.{name}: documented as required, missing"));
            }
        }
    }
    if let (Some(items), Some(array)) = (schema.get("items"), value.as_array()) {
        for (i, item) in array.iter().enumerate() {
            check(doc, items, item, &format!("{at}[{i}]"), problems);
        }
    }
}

/// The documented JSON schema of an answer.
fn response_schema<'a>(doc: &'a Value, path: &str, method: &str, status: u16) -> &'a Value {
    let pointer = format!(
        "/paths/{}/{method}/responses/{status}/content/application~1json/schema",
        path.replace('~', "~0").replace('/', "~1")
    );
    doc.pointer(&pointer)
        .unwrap_or_else(|| panic!("{method} {path} documents no JSON {status} answer"))
}

/// Asserts that a real answer matches its documented schema.
fn assert_shape(doc: &Value, path: &str, method: &str, status: u16, body: &Value) {
    let schema = response_schema(doc, path, method, status);
    let mut problems = Vec::new();
    check(doc, schema, body, "$", &mut problems);
    assert!(
        problems.is_empty(),
        "{method} {path} {status} does not match its documented schema:\n{}\nbody: {body:#}",
        problems.join("\n")
    );
    // The checker must have had something to check.
    assert!(
        resolve(doc, schema).get("properties").is_some(),
        "{method} {path} {status}: the schema is not an object"
    );
}

/// Collects every `$ref` of a JSON tree.
fn refs(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, item) in map {
                match (key.as_str(), item) {
                    ("$ref", Value::String(r)) => out.push(r.clone()),
                    _ => refs(item, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|item| refs(item, out)),
        _ => {}
    }
}

#[actix_web::test]
async fn the_document_is_openapi_3_1_and_lists_every_endpoint() {
    let app = spawn_app().await;
    let doc = document(&app.address, &app.client).await;
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3.1"),
        "{}",
        doc["openapi"]
    );
    assert_eq!(doc["info"]["title"], "mindo-bulk");
    for (path, methods) in PATHS {
        let item = &doc["paths"][*path];
        assert!(item.is_object(), "{path} is not documented");
        for method in *methods {
            assert!(
                item[*method].is_object(),
                "{method} {path} is not documented"
            );
        }
    }
    assert_eq!(
        doc["paths"].as_object().unwrap().len(),
        PATHS.len(),
        "undocumented in the test list: {:?}",
        doc["paths"].as_object().unwrap().keys().collect::<Vec<_>>()
    );

    let mut all = Vec::new();
    refs(&doc, &mut all);
    assert!(!all.is_empty());
    for reference in &all {
        resolve(&doc, &json!({ "$ref": reference }));
    }

    let scheme = &doc["components"]["securitySchemes"]["api_key"];
    assert_eq!(scheme["type"], "apiKey", "{scheme}");
    assert_eq!(scheme["in"], "header");
    assert_eq!(scheme["name"], "X-API-Key");
    // Tenant endpoints ask for the key; Meta's webhooks and the operator endpoints do not.
    let secured = |path: &str, method: &str| doc["paths"][path][method]["security"].is_array();
    assert!(secured("/api/v1/meta-templates/send-bulk/", "post"));
    assert!(secured("/api/v1/business-accounts/", "get"));
    assert!(secured(
        "/api/v1/meta-templates/bulk-sends/{bulk_send_id}/cancel/",
        "post"
    ));
    assert!(secured("/api/v1/dashboard-token/", "post"));
    assert!(secured("/api/v1/events/", "get"));
    assert!(!secured("/", "get"));
    assert!(!secured("/webhooks/meta/", "post"));
    assert!(!secured("/metrics", "get"));

    let error = resolve(&doc, &doc["components"]["schemas"]["ErrorBody"]);
    let required: Vec<&str> = error["required"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap())
        .collect();
    assert_eq!(required, ["detail", "code"]);
    assert!(error["properties"]["errors"].is_object());
    // The codes are an enum, so a body with an undocumented code does not match its schema.
    let codes = resolve(&doc, &error["properties"]["code"]);
    assert_eq!(codes["type"], "string", "{codes}");
    let codes: Vec<&str> = codes["enum"]
        .as_array()
        .expect("the codes are an enum")
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    for code in [
        "missing_api_key",
        "invalid_api_key",
        "forbidden",
        "not_found",
        "validation_error",
        "payload_too_large",
        "phone_number_not_found",
        "template_not_found",
        "template_not_approved",
        "invalid_recipients",
        "idempotency_key_reused",
        "idempotency_in_progress",
        "already_finished",
        "rate_limited",
        "method_not_allowed",
        "too_many_creates",
    ] {
        assert!(codes.contains(&code), "{code} is not documented: {codes:?}");
    }
    let item = resolve(&doc, &doc["components"]["schemas"]["ErrorItem"]);
    assert_eq!(item["required"], json!(["field", "reason"]), "{item}");

    // The same document without the trailing slash of the path style used elsewhere.
    assert_eq!(app.get("/openapi.json/", None).await.status(), 200);

    // The health answers.
    for path in ["/healthz", "/readyz"] {
        let body = json(app.get(path, None).await).await;
        assert_shape(&doc, path, "get", 200, &body);
    }
}

async fn get_json(meta: &MetaApp, path: &str) -> (u16, Value) {
    let res = meta.app.get(path, Some(&meta.api_key)).await;
    let status = res.status().as_u16();
    (status, res.json().await.unwrap())
}

#[actix_web::test]
async fn documented_shapes_match_real_answers() {
    let meta = spawn_with_meta().await;
    let doc = document(&meta.app.address, &meta.app.client).await;

    // The 202 create body, and a dry run's 200 (with its preview).
    let mut list = phones(700, 3);
    list.push("+12025550102".into());
    let (status, created) = meta.send_bulk(&welcome(NUMBER_10K, &list)).await;
    assert_eq!(status, 202, "{created}");
    assert_shape(
        &doc,
        "/api/v1/meta-templates/send-bulk/",
        "post",
        202,
        &created,
    );
    let mut dry = welcome(NUMBER_10K, &phones(710, 2));
    dry["dry_run"] = json!(true);
    let (status, preview) = meta.send_bulk(&dry).await;
    assert_eq!(status, 200, "{preview}");
    assert_shape(
        &doc,
        "/api/v1/meta-templates/send-bulk/",
        "post",
        200,
        &preview,
    );

    // The status object, once the send is over (delivered and failed rows, timestamps set).
    let id = created["bulk_send_id"].as_str().unwrap().to_owned();
    meta.wait_status(&id, |s| {
        s["status"] == "PARTIAL" && s["pending_count"] == 0 && s["delivered_count"] == 3
    })
    .await;
    let (status, body) = get_json(&meta, &format!("/api/v1/meta-templates/bulk-sends/{id}/")).await;
    assert_eq!(status, 200);
    assert_shape(
        &doc,
        "/api/v1/meta-templates/bulk-sends/{bulk_send_id}/",
        "get",
        200,
        &body,
    );

    // The list and the messages pages (with a `next` link).
    let (status, body) = get_json(&meta, "/api/v1/meta-templates/bulk-sends/").await;
    assert_eq!(status, 200);
    assert_eq!(body["count"], 1);
    assert_shape(
        &doc,
        "/api/v1/meta-templates/bulk-sends/",
        "get",
        200,
        &body,
    );
    let (status, body) = get_json(
        &meta,
        &format!("/api/v1/meta-templates/bulk-sends/{id}/messages/?page_size=3"),
    )
    .await;
    assert_eq!(status, 200);
    assert!(body["next"].is_string(), "{body}");
    assert_shape(
        &doc,
        "/api/v1/meta-templates/bulk-sends/{bulk_send_id}/messages/",
        "get",
        200,
        &body,
    );
    let failed = body["results"]
        .as_array()
        .unwrap()
        .iter()
        .chain(
            get_json(
                &meta,
                &format!("/api/v1/meta-templates/bulk-sends/{id}/messages/?status=failed"),
            )
            .await
            .1["results"]
                .as_array()
                .unwrap(),
        )
        .any(|m| m["error_code"].is_i64());
    assert!(failed, "a failed row with its error code was checked too");

    // The business accounts.
    let (status, body) = get_json(&meta, "/api/v1/business-accounts/").await;
    assert_eq!(status, 200);
    assert!(!body["businessAccounts"][0]["templates"]
        .as_array()
        .unwrap()
        .is_empty());
    assert_shape(&doc, "/api/v1/business-accounts/", "get", 200, &body);

    // The suppression list: an add, a page of it, and a refused add.
    let res = meta
        .app
        .post(
            "/api/v1/suppressions/",
            &meta.api_key,
            &json!({"phones": ["+5491139990001", "+5491139990002"], "reason": "asked",
                    "suppress_all_categories": true}),
        )
        .await;
    assert_eq!(res.status(), 200);
    let body = json(res).await;
    assert_shape(&doc, "/api/v1/suppressions/", "post", 200, &body);
    let (status, body) = get_json(&meta, "/api/v1/suppressions/?page_size=1").await;
    assert_eq!(status, 200);
    assert!(body["next"].is_string(), "{body}");
    assert_shape(&doc, "/api/v1/suppressions/", "get", 200, &body);
    let res = meta
        .app
        .post(
            "/api/v1/suppressions/",
            &meta.api_key,
            &json!({"phones": ["+12"]}),
        )
        .await;
    assert_eq!(res.status(), 400);
    let body = json(res).await;
    assert_shape(&doc, "/api/v1/suppressions/", "post", 400, &body);

    // The dashboard token.
    let res = meta
        .app
        .post("/api/v1/dashboard-token/", &meta.api_key, &json!({}))
        .await;
    assert_eq!(res.status(), 200);
    let body = json(res).await;
    assert_shape(&doc, "/api/v1/dashboard-token/", "post", 200, &body);

    // Error bodies: 404, 409, 401, and a 400 with per-item errors.
    let (status, body) = get_json(
        &meta,
        "/api/v1/meta-templates/bulk-sends/a3f2b8c9-4d5e-6f7a-8b9c-0d1e2f3a4b5c/",
    )
    .await;
    assert_eq!(status, 404);
    assert_shape(
        &doc,
        "/api/v1/meta-templates/bulk-sends/{bulk_send_id}/",
        "get",
        404,
        &body,
    );
    let res = meta
        .app
        .post(
            &format!("/api/v1/meta-templates/bulk-sends/{id}/cancel/"),
            &meta.api_key,
            &json!({}),
        )
        .await;
    assert_eq!(res.status(), 409);
    let body: Value = res.json().await.unwrap();
    assert_shape(
        &doc,
        "/api/v1/meta-templates/bulk-sends/{bulk_send_id}/cancel/",
        "post",
        409,
        &body,
    );
    let body = json(meta.app.get("/api/v1/business-accounts/", None).await).await;
    assert_shape(&doc, "/api/v1/business-accounts/", "get", 401, &body);
    let mut bad = welcome(NUMBER_10K, &["+12".to_owned()]);
    bad["recipients"][0]["variables"] = json!({"nope": "x"});
    let (status, body) = meta.send_bulk(&bad).await;
    assert_eq!(status, 400);
    assert!(!body["errors"].as_array().unwrap().is_empty(), "{body}");
    assert_shape(
        &doc,
        "/api/v1/meta-templates/send-bulk/",
        "post",
        400,
        &body,
    );
}

/// Asserts that an error answer is documented for its operation and status, with a
/// description naming its code, and matches the error schema (its code is in the enum).
fn assert_documented_error(doc: &Value, path: &str, method: &str, status: u16, body: &Value) {
    let code = body["code"]
        .as_str()
        .unwrap_or_else(|| panic!("no code: {body}"));
    let pointer = format!(
        "/paths/{}/{method}/responses/{status}/description",
        path.replace('~', "~0").replace('/', "~1")
    );
    let description = doc
        .pointer(&pointer)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("{method} {path} documents no {status}"));
    assert!(
        description.contains(&format!("`{code}`")),
        "{method} {path} {status}: `{code}` is not named in {description:?}"
    );
    assert_shape(doc, path, method, status, body);
}

#[actix_web::test]
async fn error_answers_are_documented_with_their_codes() {
    let meta = spawn_with_meta().await;
    let doc = document(&meta.app.address, &meta.app.client).await;
    let app = &meta.app;
    let key = meta.api_key.as_str();
    let list = "/api/v1/meta-templates/bulk-sends/";
    let create = "/api/v1/meta-templates/send-bulk/";
    let one = "/api/v1/meta-templates/bulk-sends/{bulk_send_id}/";
    let unknown = "a3f2b8c9-4d5e-6f7a-8b9c-0d1e2f3a4b5c";

    // (documented path, method, status, body) of each answer.
    let mut answers: Vec<(String, &str, u16, Value)> = Vec::new();
    let mut record = |path: &str, method, status: u16, body| {
        answers.push((path.to_owned(), method, status, body));
    };
    let res = app.get(list, None).await;
    record(list, "get", res.status().as_u16(), json(res).await);
    let res = app.get(list, Some("mindo_AAAAAAAAAAAAAAAAAAAAAAAA")).await;
    record(list, "get", res.status().as_u16(), json(res).await);
    let res = app.get(&format!("{list}?status=queued"), Some(key)).await;
    record(list, "get", res.status().as_u16(), json(res).await);
    for (query, documented) in [
        ("messages/", "messages/"),
        ("messages/?page=0", "messages/"),
        ("messages/export/", "messages/export/"),
    ] {
        let res = app
            .get(&format!("{list}{unknown}/{query}"), Some(key))
            .await;
        let documented = format!("{one}{documented}");
        record(&documented, "get", res.status().as_u16(), json(res).await);
    }
    let (status, body) = meta.send_bulk(&welcome("999", &phones(900, 1))).await;
    record(create, "post", status, body);
    let (status, body) = meta.send_bulk(&welcome(NUMBER_10K, &[])).await;
    record(create, "post", status, body);
    let (status, body) = meta
        .send_bulk(&welcome(NUMBER_10K, &["12".to_owned()]))
        .await;
    record(create, "post", status, body);
    let (status, created) = meta.send_bulk(&welcome(NUMBER_10K, &phones(900, 1))).await;
    assert_eq!(status, 202, "{created}");
    let id = created["bulk_send_id"].as_str().unwrap();
    let cancel = format!("{list}{id}/cancel/");
    assert_eq!(app.post(&cancel, key, &json!({})).await.status(), 200);
    for (send, action) in [
        (unknown, "pause"),
        (id, "cancel"),
        (id, "pause"),
        (id, "resume"),
    ] {
        let res = app
            .post(&format!("{list}{send}/{action}/"), key, &json!({}))
            .await;
        record(
            &format!("{one}{action}/"),
            "post",
            res.status().as_u16(),
            json(res).await,
        );
    }
    let idempotent = |body: Value| {
        app.client
            .post(format!("{}{create}", app.address))
            .header("X-API-Key", key)
            .header("Idempotency-Key", "errors-documented")
            .json(&body)
            .send()
    };
    assert_eq!(
        idempotent(welcome(NUMBER_10K, &phones(910, 1)))
            .await
            .unwrap()
            .status(),
        202
    );
    let res = idempotent(welcome(NUMBER_10K, &phones(911, 1)))
        .await
        .unwrap();
    record(create, "post", res.status().as_u16(), json(res).await);

    let res = app
        .client
        .post(format!("{}/webhooks/meta/", app.address))
        .body("{}")
        .send()
        .await
        .unwrap();
    record(
        "/webhooks/meta/",
        "post",
        res.status().as_u16(),
        json(res).await,
    );
    let res = app
        .get(
            "/webhooks/meta/?hub.mode=subscribe&hub.verify_token=wrong&hub.challenge=1",
            None,
        )
        .await;
    record(
        "/webhooks/meta/",
        "get",
        res.status().as_u16(),
        json(res).await,
    );

    let mut codes: Vec<String> = Vec::new();
    for (path, method, status, body) in &answers {
        assert_documented_error(&doc, path, method, *status, body);
        codes.push(format!("{status} {}", body["code"].as_str().unwrap()));
    }
    assert_eq!(
        codes,
        [
            "401 missing_api_key",
            "401 invalid_api_key",
            "400 validation_error",
            "404 not_found",
            "400 validation_error",
            "404 not_found",
            "404 phone_number_not_found",
            "400 validation_error",
            "400 invalid_recipients",
            "404 not_found",
            "409 already_finished",
            "409 already_finished",
            "409 already_finished",
            "422 idempotency_key_reused",
            "401 invalid_signature",
            "403 forbidden",
        ]
    );
}

#[test]
fn the_checker_finds_undocumented_and_missing_properties() {
    let doc = json!({"components": {"schemas": {
        "Item": {"type": "object", "required": ["a"], "properties": {
            "a": {"type": "integer"},
            "b": {"oneOf": [{"type": "null"}, {"$ref": "#/components/schemas/Kind"}]}}},
        "Kind": {"type": "string", "enum": ["X", "Y"]}}}});
    let schema = json!({"type": "array", "items": {"$ref": "#/components/schemas/Item"}});
    let mut problems = Vec::new();
    check(
        &doc,
        &schema,
        &json!([{"a": 1, "b": null}, {"a": 2, "b": "Y"}]),
        "$",
        &mut problems,
    );
    assert!(problems.is_empty(), "{problems:?}");
    check(
        &doc,
        &schema,
        &json!([{"b": "Z", "c": 1}, {"a": "1"}]),
        "$",
        &mut problems,
    );
    problems.sort();
    assert_eq!(
        problems,
        [
            "$[0].a: documented as required, missing",
            "$[0].b: \"Z\" is not one of [String(\"X\"), String(\"Y\")]",
            "$[0].c: not a documented property",
            "$[1].a: \"1\" is not integer",
        ]
    );
}

/// The operation (`METHOD path`) of the document with this `operationId`.
fn operation_with_id<'a>(doc: &'a Value, id: &str) -> Option<(&'a str, &'a str)> {
    doc["paths"].as_object()?.iter().find_map(|(path, item)| {
        item.as_object()?
            .iter()
            .find(|(_, op)| op["operationId"] == id)
            .map(|(method, _)| (method.as_str(), path.as_str()))
    })
}

#[actix_web::test]
async fn the_document_states_the_limits_the_code_enforces() {
    let app = crate::helpers::spawn_app_with(|c| c.max_recipients = 7).await;
    let doc = document(&app.address, &app.client).await;

    let request = resolve(&doc, &doc["components"]["schemas"]["SendBulkRequest"]);
    let recipients = &request["properties"]["recipients"];
    assert_eq!(recipients["minItems"], 1, "{recipients}");
    assert_eq!(
        recipients["maxItems"], 7,
        "the daemon's setting: {recipients}"
    );
    for field in ["phone_number_id", "template_name", "language"] {
        let schema = &request["properties"][field];
        assert_eq!(schema["minLength"], 1, "{field}: {schema}");
        assert_eq!(schema["maxLength"], 512, "{field}: {schema}");
        assert!(schema["pattern"].is_string(), "{field}: {schema}");
    }
    assert_eq!(request["properties"]["scheduled_at"]["format"], "date-time");
    assert_eq!(request["properties"]["callback_url"]["format"], "uri");

    let param = |path: &str, name: &str| -> Value {
        doc["paths"][path]["get"]["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .unwrap_or_else(|| panic!("{path} has no parameter {name}"))["schema"]
            .clone()
    };
    let list = "/api/v1/meta-templates/bulk-sends/";
    let messages = "/api/v1/meta-templates/bulk-sends/{bulk_send_id}/messages/";
    for path in [list, messages] {
        let size = param(path, "page_size");
        assert_eq!(
            (size["minimum"].as_i64(), size["maximum"].as_i64()),
            (Some(1), Some(1000))
        );
        assert_eq!(param(path, "page")["minimum"], 1);
    }
    let status = resolve(&doc, &param(list, "status")).clone();
    assert_eq!(
        status["enum"],
        json!([
            "QUEUED",
            "PROCESSING",
            "COMPLETED",
            "PARTIAL",
            "FAILED",
            "CANCELLED"
        ])
    );
    let status = resolve(&doc, &param(messages, "status")).clone();
    assert_eq!(
        status["enum"],
        json!([
            "pending",
            "sent",
            "delivered",
            "read",
            "failed",
            "cancelled",
            "suppressed"
        ])
    );

    // The bounds are the code's: one past them is refused, the bound itself is not.
    let key = app.create_tenant("Limits").1;
    for (query, expected) in [
        ("page_size=1000", 200),
        ("page_size=1001", 400),
        ("page_size=0", 400),
        ("page=0", 400),
        ("page=10000000", 200),
        ("page=10000001", 400),
        ("status=QUEUED", 200),
        ("status=queued", 400),
    ] {
        let res = app.get(&format!("{list}?{query}"), Some(&key)).await;
        assert_eq!(res.status(), expected, "{query}");
    }
    let body = |n: usize| {
        json!({"phone_number_id": "1", "template_name": "t",
            "recipients": vec![json!({"phone": "+12025550100"}); n]})
    };
    let res = app
        .post("/api/v1/meta-templates/send-bulk/", &key, &body(8))
        .await;
    assert_eq!(res.status(), 400, "8 recipients, above maxItems");
    let res = app
        .post("/api/v1/meta-templates/send-bulk/", &key, &body(7))
        .await;
    assert_eq!(
        res.status(),
        404,
        "7 recipients pass; the number is unknown"
    );
}

#[actix_web::test]
async fn the_links_of_a_created_send_lead_to_its_operations() {
    let meta = spawn_with_meta().await;
    let doc = document(&meta.app.address, &meta.app.client).await;
    let links = doc["paths"]["/api/v1/meta-templates/send-bulk/"]["post"]["responses"]["202"]
        ["links"]
        .as_object()
        .expect("the 202 has links")
        .clone();

    let (status, created) = meta.send_bulk(&welcome(NUMBER_10K, &phones(720, 2))).await;
    assert_eq!(status, 202, "{created}");
    let mut targets = Vec::new();
    for (name, link) in &links {
        let id = link["operationId"]
            .as_str()
            .unwrap_or_else(|| panic!("{name}: {link}"));
        let (method, path) =
            operation_with_id(&doc, id).unwrap_or_else(|| panic!("{name}: no {id}"));
        let expression = link["parameters"]["bulk_send_id"].as_str().unwrap();
        let pointer = expression.strip_prefix("$response.body#").unwrap();
        let value = created.pointer(pointer).unwrap().as_str().unwrap();
        let url = format!(
            "{}{}",
            meta.app.address,
            path.replace("{bulk_send_id}", value)
        );
        let res = meta
            .app
            .client
            .request(method.to_uppercase().parse().unwrap(), url)
            .header("X-API-Key", &meta.api_key)
            .send()
            .await
            .unwrap();
        assert!(
            [200, 409].contains(&res.status().as_u16()),
            "{name}: {method} {path} answered {}",
            res.status()
        );
        targets.push(format!("{method} {path}"));
    }
    targets.sort();
    let base = "/api/v1/meta-templates/bulk-sends/{bulk_send_id}";
    let mut expected: Vec<String> = [
        format!("get {base}/"),
        format!("get {base}/messages/"),
        format!("get {base}/messages/export/"),
        format!("post {base}/cancel/"),
        format!("post {base}/pause/"),
        format!("post {base}/resume/"),
    ]
    .into();
    expected.sort();
    assert_eq!(targets, expected);
}
