//! The simulator's HTTP surface (actix-web): the Graph API endpoints a client uses and the
//! `/__sim/*` control endpoints a test or an operator uses.
//!
//! # Graph API (`{version}` is any `vNN.N`; the token is `Authorization: Bearer …`, or the
//! `access_token` query parameter as the Graph API also allows)
//! - `POST /{version}/{phone_number_id}/messages`: see `state.rs` for the validation order.
//! - `GET /{version}/{id}`: a phone number, a WABA or a template, honouring `fields=`.
//! - `GET /{version}/{waba_id}/phone_numbers` and `…/message_templates`: paged with `limit`
//!   (default 25, at most 100: larger values are clamped) and the `after` / `before` cursors of
//!   `paging.cursors`; `paging.next` (absolute URL) is absent on the last page, `paging.previous`
//!   on the first. Templates can be filtered with `status` (comma-separated), `name` (substring),
//!   `language` and `category`.
//! - Anything else: 400, code 2500 `Unknown path components`.
//!
//! Management-call rate limits (codes 4 / 80007) are not simulated.
//!
//! # Control (no authentication: the simulator is a local test tool)
//! - `GET /__sim/stats[?per_recipient=false]` → [`SimStats`](super::SimStats).
//! - `GET /__sim/behaviour` → the current [`Behaviour`](super::Behaviour);
//!   `POST /__sim/behaviour` with a JSON object of the fields to change → the new behaviour.
//! - `POST /__sim/templates/status` `{"waba_id", "name", "language", "status"}` → 200 and a
//!   `message_template_status_update` webhook.
//! - `POST /__sim/phone-numbers/{id}` with a [`PhoneNumberChange`](super::PhoneNumberChange) → the
//!   number as `GET /{version}/{id}` shows it with every field, plus the webhooks of
//!   `Shared::set_phone_number`.
//! - `POST /__sim/webhook-url` `{"url": "…" | null}`.
//! - `POST /__sim/inbound` with an [`InboundText`](super::InboundText) → an inbound text
//!   `messages` webhook (the user wrote to our number).
//! - `POST /__sim/user-preferences` with a [`UserPreferenceChange`](super::UserPreferenceChange)
//!   → a `user_preferences` webhook; while `stop`, marketing sends to the user fail with 131050.
//!
//! Control errors are `{"error": "<message>"}` with 400 or 404.

use std::net::TcpListener;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::Server;
use actix_web::http::StatusCode;
use actix_web::rt::time::sleep;
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use super::state::{
    authorize, bearer, Accepted, ControlError, Fault, InboundText, PhoneNumberChange, Shared,
    SimError, TemplateStatusChange, UserPreferenceChange,
};
use super::world::{Node, World};

/// Largest send request body accepted (Meta's are a few KB).
const BODY_LIMIT: usize = 1024 * 1024;
/// Default and largest page size of the list endpoints.
const DEFAULT_PAGE: usize = 25;
const MAX_PAGE: usize = 100;
/// How long a stopping server waits for in-flight requests (hung ones are cut).
const SHUTDOWN_TIMEOUT_SECS: u64 = 2;

/// Builds the server on a bound listener.
pub(crate) fn build(
    listener: TcpListener,
    shared: Arc<Shared>,
    workers: usize,
) -> std::io::Result<Server> {
    let data = web::Data::from(shared);
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .app_data(web::PayloadConfig::new(BODY_LIMIT))
            .configure(configure)
    })
    .workers(workers)
    .disable_signals()
    .shutdown_timeout(SHUTDOWN_TIMEOUT_SECS)
    .listen(listener)?
    .run();
    Ok(server)
}

fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/__sim")
            .route("/stats", web::get().to(control_stats))
            .route("/behaviour", web::get().to(control_get_behaviour))
            .route("/behaviour", web::post().to(control_behaviour))
            .route("/templates/status", web::post().to(control_template_status))
            .route("/phone-numbers/{id}", web::post().to(control_phone_number))
            .route("/webhook-url", web::post().to(control_webhook_url))
            .route("/inbound", web::post().to(control_inbound))
            .route(
                "/user-preferences",
                web::post().to(control_user_preferences),
            )
            .default_service(web::to(control_not_found)),
    )
    .route("/{version}/{id}/messages", web::post().to(send_message))
    .route(
        "/{version}/{id}/phone_numbers",
        web::get().to(list_phone_numbers),
    )
    .route(
        "/{version}/{id}/message_templates",
        web::get().to(list_templates),
    )
    .route("/{version}/{id}", web::get().to(get_node))
    .default_service(web::to(unknown_path));
}

// ---------------------------------------------------------------------------------------------
// Helpers.

/// `v` + digits + `.` + digits, as in `v24.0`.
fn is_version(segment: &str) -> bool {
    let Some(rest) = segment.strip_prefix('v') else {
        return false;
    };
    let Some((major, minor)) = rest.split_once('.') else {
        return false;
    };
    !major.is_empty()
        && !minor.is_empty()
        && major.bytes().all(|b| b.is_ascii_digit())
        && minor.bytes().all(|b| b.is_ascii_digit())
}

/// The bearer token, or the `access_token` query parameter.
fn token_of(req: &HttpRequest) -> Option<&str> {
    let header = req
        .headers()
        .get(actix_web::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    bearer(header).or_else(|| {
        req.query_string()
            .split('&')
            .find_map(|pair| pair.strip_prefix("access_token="))
            .filter(|t| !t.is_empty())
    })
}

fn error_response(shared: &Shared, error: &SimError) -> HttpResponse {
    let status = StatusCode::from_u16(error.http_status).unwrap_or(StatusCode::BAD_REQUEST);
    let mut response = HttpResponse::build(status);
    response.content_type("application/json");
    if error.code == 190 {
        response.insert_header((
            "WWW-Authenticate",
            "OAuth \"Facebook Platform\" \"invalid_token\" \"Invalid OAuth access token\"",
        ));
    }
    response.body(error.body(&shared.fbtrace_id()))
}

fn json_response(value: &Value) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(serde_json::to_vec(value).unwrap_or_default())
}

async fn unknown_path(req: HttpRequest, shared: web::Data<Shared>) -> HttpResponse {
    error_response(&shared, &SimError::unknown_path(req.path()))
}

// ---------------------------------------------------------------------------------------------
// The hot path.

async fn send_message(
    req: HttpRequest,
    body: web::Bytes,
    shared: web::Data<Shared>,
) -> HttpResponse {
    let shared: &Shared = &shared;
    shared
        .counters
        .requests_total
        .fetch_add(1, Ordering::Relaxed);
    let behaviour = shared.behaviour();
    if behaviour.latency_ms > 0 {
        sleep(Duration::from_millis(behaviour.latency_ms)).await;
    }
    let version = req.match_info().get("version").unwrap_or("");
    if !is_version(version) {
        return refuse(shared, SimError::unknown_path(req.path()));
    }
    let id = req.match_info().get("id").unwrap_or("");
    let valid = match shared.validate(id, token_of(&req), &body) {
        Ok(valid) => valid,
        Err(error) => return refuse(shared, error),
    };
    match shared.roll_fault(&behaviour) {
        Fault::None => answer(shared, shared.admit(valid, &behaviour)),
        Fault::Error(error) => {
            shared.counters.errors_5xx.fetch_add(1, Ordering::Relaxed);
            refuse(shared, error)
        }
        Fault::Hang { ms, accept } => {
            shared.counters.hangs.fetch_add(1, Ordering::Relaxed);
            let result = accept.then(|| shared.admit(valid, &behaviour));
            if matches!(result, Some(Ok(_))) {
                shared
                    .counters
                    .hangs_accepted
                    .fetch_add(1, Ordering::Relaxed);
            }
            sleep(Duration::from_millis(ms)).await;
            match result {
                Some(result) => answer(shared, result),
                None => refuse(shared, SimError::server_fault(131_000)),
            }
        }
    }
}

fn refuse(shared: &Shared, error: SimError) -> HttpResponse {
    shared.count_refusal(error.code);
    error_response(shared, &error)
}

fn answer(shared: &Shared, result: Result<Accepted, SimError>) -> HttpResponse {
    #[derive(Serialize)]
    struct Body<'a> {
        messaging_product: &'static str,
        contacts: [Contact<'a>; 1],
        messages: [Message<'a>; 1],
    }
    #[derive(Serialize)]
    struct Contact<'a> {
        input: &'a str,
        wa_id: &'a str,
    }
    #[derive(Serialize)]
    struct Message<'a> {
        id: &'a str,
        message_status: &'static str,
    }
    match result {
        Ok(accepted) => {
            let body = Body {
                messaging_product: "whatsapp",
                contacts: [Contact {
                    input: &accepted.to,
                    wa_id: &accepted.to[1..],
                }],
                messages: [Message {
                    id: &accepted.wamid,
                    message_status: "accepted",
                }],
            };
            HttpResponse::Ok()
                .content_type("application/json")
                .body(serde_json::to_vec(&body).unwrap_or_default())
        }
        Err(error) => refuse(shared, error),
    }
}

// ---------------------------------------------------------------------------------------------
// Reads.

/// The fields a node can show, and those shown without `fields=`.
struct NodeType {
    name: &'static str,
    fields: &'static [&'static str],
    default_fields: &'static [&'static str],
}

const PHONE_NUMBER: NodeType = NodeType {
    name: "WhatsAppBusinessPhoneNumber",
    fields: &[
        "id",
        "display_phone_number",
        "verified_name",
        "quality_rating",
        "throughput",
        "whatsapp_business_manager_messaging_limit",
        "messaging_limit_tier",
        "platform_type",
        "is_on_biz_app",
        "code_verification_status",
        "name_status",
        "status",
        "account_mode",
        "is_official_business_account",
    ],
    default_fields: &[
        "verified_name",
        "code_verification_status",
        "display_phone_number",
        "quality_rating",
        "platform_type",
        "throughput",
        "id",
    ],
};

const WABA: NodeType = NodeType {
    name: "WhatsAppBusinessAccount",
    fields: &[
        "id",
        "name",
        "owner_business_info",
        "timezone_id",
        "message_template_namespace",
        "currency",
        "account_review_status",
        "business_verification_status",
        "whatsapp_business_manager_messaging_limit",
    ],
    default_fields: &["id", "name", "timezone_id", "message_template_namespace"],
};

const TEMPLATE: NodeType = NodeType {
    name: "WhatsAppMessageTemplate",
    fields: &[
        "id",
        "name",
        "language",
        "status",
        "category",
        "parameter_format",
        "components",
        "sub_category",
        "quality_score",
        "rejected_reason",
    ],
    default_fields: &[
        "name",
        "parameter_format",
        "components",
        "language",
        "status",
        "category",
        "id",
    ],
};

/// The top-level names of `fields=a,b{c,d},e` (sub-selections are ignored: the whole object is
/// returned). `None` when no `fields` was given.
fn requested_fields(query: &[(String, String)]) -> Option<Vec<String>> {
    let fields = query.iter().find(|(k, _)| k == "fields").map(|(_, v)| v)?;
    let mut names = Vec::new();
    let mut depth = 0usize;
    let mut current = String::new();
    for c in fields.chars() {
        match c {
            '{' => depth += 1,
            '}' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => names.push(std::mem::take(&mut current)),
            _ if depth == 0 => current.push(c),
            _ => {}
        }
    }
    names.push(current);
    Some(
        names
            .into_iter()
            .map(|n| n.trim().to_owned())
            .filter(|n| !n.is_empty())
            .collect(),
    )
}

/// Builds an object with the requested fields (always with `id`), failing on an unknown one.
fn select(
    node: &NodeType,
    requested: Option<&[String]>,
    get: impl Fn(&str) -> Value,
) -> Result<Value, SimError> {
    let mut object = Map::new();
    match requested {
        Some(names) => {
            for name in names {
                if !node.fields.contains(&name.as_str()) {
                    return Err(SimError::nonexisting_field(name, node.name));
                }
                object.insert(name.clone(), get(name));
            }
            object.insert("id".into(), get("id"));
        }
        None => {
            for name in node.default_fields {
                object.insert((*name).into(), get(name));
            }
        }
    }
    Ok(Value::Object(object))
}

fn number_json(world: &World, i: usize, requested: Option<&[String]>) -> Result<Value, SimError> {
    let number = &world.numbers[i];
    let tier = world.portfolios[world.portfolio_of(i)].tier;
    select(&PHONE_NUMBER, requested, |field| match field {
        "id" => json!(number.id),
        "display_phone_number" => json!(number.display_phone_number),
        "verified_name" => json!(number.verified_name),
        "quality_rating" => json!(number.quality_rating),
        "throughput" => json!({"level": number.throughput_level.as_str()}),
        "whatsapp_business_manager_messaging_limit" | "messaging_limit_tier" => {
            json!(tier.as_meta_str())
        }
        "platform_type" => json!("CLOUD_API"),
        "is_on_biz_app" => json!(number.is_on_biz_app),
        "code_verification_status" => json!("VERIFIED"),
        "name_status" => json!("APPROVED"),
        "status" => json!("CONNECTED"),
        "account_mode" => json!("LIVE"),
        "is_official_business_account" => json!(false),
        _ => Value::Null,
    })
}

fn waba_json(world: &World, i: usize, requested: Option<&[String]>) -> Result<Value, SimError> {
    let waba = &world.wabas[i];
    let portfolio = &world.portfolios[waba.portfolio];
    select(&WABA, requested, |field| match field {
        "id" => json!(waba.id),
        "name" => json!(waba.name),
        "owner_business_info" => json!({"id": portfolio.id, "name": portfolio.name}),
        "timezone_id" => json!("1"),
        "message_template_namespace" => json!(format!("sim_{}", waba.id)),
        "currency" => json!("USD"),
        "account_review_status" => json!("APPROVED"),
        "business_verification_status" => json!("verified"),
        "whatsapp_business_manager_messaging_limit" => json!(portfolio.tier.as_meta_str()),
        _ => Value::Null,
    })
}

fn template_json(world: &World, i: usize, requested: Option<&[String]>) -> Result<Value, SimError> {
    let t = &world.templates[i];
    select(&TEMPLATE, requested, |field| match field {
        "id" => json!(t.id),
        "name" => json!(t.name),
        "language" => json!(t.language),
        "status" => json!(t.status),
        "category" => json!(t.category),
        "parameter_format" => json!(t.shape.format.as_meta()),
        "components" => t.components.clone(),
        "sub_category" => json!("CUSTOM"),
        "quality_score" => json!({"score": "GREEN", "date": 0}),
        "rejected_reason" => json!(if t.status == "REJECTED" {
            "INVALID_FORMAT"
        } else {
            "NONE"
        }),
        _ => Value::Null,
    })
}

fn parse_query(req: &HttpRequest) -> Result<Vec<(String, String)>, SimError> {
    web::Query::<Vec<(String, String)>>::from_query(req.query_string())
        .map(web::Query::into_inner)
        .map_err(|_| SimError::invalid_parameter("The query string is not valid"))
}

/// Version check, query, token and node of a GET.
fn read_node(req: &HttpRequest, world: &World) -> Result<(Node, Vec<(String, String)>), SimError> {
    let version = req.match_info().get("version").unwrap_or("");
    if !is_version(version) {
        return Err(SimError::unknown_path(req.path()));
    }
    let id = req.match_info().get("id").unwrap_or("");
    let node = authorize(world, "get", id, token_of(req))?;
    Ok((node, parse_query(req)?))
}

/// Answers a GET: version, token and node checked, then `answer` with the world read-locked.
fn answer_get(
    req: &HttpRequest,
    shared: &Shared,
    answer: impl FnOnce(&World, Node, &[(String, String)]) -> Result<Value, SimError>,
) -> HttpResponse {
    let result = {
        let world = shared.world.read();
        read_node(req, &world).and_then(|(node, query)| answer(&world, node, &query))
    };
    match result {
        Ok(value) => json_response(&value),
        Err(error) => error_response(shared, &error),
    }
}

async fn get_node(req: HttpRequest, shared: web::Data<Shared>) -> HttpResponse {
    answer_get(&req, &shared, |world, node, query| {
        let fields = requested_fields(query);
        match node {
            Node::Number(i) => number_json(world, i, fields.as_deref()),
            Node::Waba(i) => waba_json(world, i, fields.as_deref()),
            Node::Template(i) => template_json(world, i, fields.as_deref()),
        }
    })
}

/// The WABA a list endpoint was called on; other nodes do not have the edge.
fn waba_edge(node: Node, edge: &str) -> Result<usize, SimError> {
    match node {
        Node::Waba(i) => Ok(i),
        Node::Number(_) => Err(SimError::nonexisting_field(edge, PHONE_NUMBER.name)),
        Node::Template(_) => Err(SimError::nonexisting_field(edge, TEMPLATE.name)),
    }
}

async fn list_phone_numbers(req: HttpRequest, shared: web::Data<Shared>) -> HttpResponse {
    answer_get(&req, &shared, |world, node, query| {
        let waba = waba_edge(node, "phone_numbers")?;
        let fields = requested_fields(query);
        let items = world.wabas[waba]
            .numbers
            .iter()
            .map(|&i| {
                Ok((
                    world.numbers[i].id.clone(),
                    number_json(world, i, fields.as_deref())?,
                ))
            })
            .collect::<Result<Vec<_>, SimError>>()?;
        page(&req, query, items)
    })
}

async fn list_templates(req: HttpRequest, shared: web::Data<Shared>) -> HttpResponse {
    answer_get(&req, &shared, |world, node, query| {
        let waba = waba_edge(node, "message_templates")?;
        let fields = requested_fields(query);
        let param = |key: &str| {
            query
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.as_str())
        };
        let statuses: Option<Vec<String>> = param("status").map(|s| {
            s.split(',')
                .map(|x| x.trim().to_ascii_uppercase())
                .filter(|x| !x.is_empty())
                .collect()
        });
        let items = world.wabas[waba]
            .templates
            .iter()
            .map(|&i| (i, &world.templates[i]))
            .filter(|(_, t)| statuses.as_ref().is_none_or(|s| s.contains(&t.status)))
            .filter(|(_, t)| param("name").is_none_or(|n| t.name.contains(n)))
            .filter(|(_, t)| param("language").is_none_or(|l| t.language == l))
            .filter(|(_, t)| param("category").is_none_or(|c| t.category.eq_ignore_ascii_case(c)))
            .map(|(i, t)| Ok((t.id.clone(), template_json(world, i, fields.as_deref())?)))
            .collect::<Result<Vec<_>, SimError>>()?;
        page(&req, query, items)
    })
}

/// Cursor of an item: its id, hex-encoded (opaque to clients, like Meta's).
fn cursor(id: &str) -> String {
    hex::encode(id)
}

fn decode_cursor(cursor: &str) -> Option<String> {
    String::from_utf8(hex::decode(cursor).ok()?).ok()
}

/// One page of `items` (id, object) by `limit`, `after` and `before`.
fn page(
    req: &HttpRequest,
    query: &[(String, String)],
    items: Vec<(String, Value)>,
) -> Result<Value, SimError> {
    let param = |key: &str| {
        query
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    };
    let limit = match param("limit") {
        None => DEFAULT_PAGE,
        Some(text) => match text.trim().parse::<usize>() {
            Ok(n) if n > 0 => n.min(MAX_PAGE),
            _ => {
                return Err(SimError::invalid_parameter(
                    "limit must be a positive integer",
                ))
            }
        },
    };
    let position = |cursor: &str| -> Result<usize, SimError> {
        let id = decode_cursor(cursor)
            .ok_or_else(|| SimError::invalid_parameter("The cursor is not valid"))?;
        items
            .iter()
            .position(|(item, _)| *item == id)
            .ok_or_else(|| SimError::invalid_parameter("The cursor is not valid"))
    };
    let (start, end) = if let Some(after) = param("after") {
        let start = position(after)? + 1;
        (start, (start + limit).min(items.len()))
    } else if let Some(before) = param("before") {
        let end = position(before)?;
        (end.saturating_sub(limit), end)
    } else {
        (0, limit.min(items.len()))
    };
    let has_next = end < items.len();
    let has_previous = start > 0;
    let mut slice = items;
    slice.truncate(end);
    let data: Vec<(String, Value)> = slice.drain(start..).collect();
    if data.is_empty() {
        return Ok(json!({"data": []}));
    }
    let first = cursor(&data[0].0);
    let last = cursor(&data[data.len() - 1].0);
    let mut paging = json!({"cursors": {"before": first, "after": last}});
    if has_next {
        paging["next"] = json!(page_url(req, query, limit, "after", &last));
    }
    if has_previous {
        paging["previous"] = json!(page_url(req, query, limit, "before", &first));
    }
    Ok(json!({
        "data": data.into_iter().map(|(_, v)| v).collect::<Vec<_>>(),
        "paging": paging,
    }))
}

/// The absolute URL of the next/previous page: the same query with a new cursor.
fn page_url(
    req: &HttpRequest,
    query: &[(String, String)],
    limit: usize,
    direction: &str,
    cursor: &str,
) -> String {
    let info = req.connection_info();
    let mut url = format!("{}://{}{}?", info.scheme(), info.host(), req.path());
    let mut first = true;
    let mut push = |key: &str, value: &str| {
        if !first {
            url.push('&');
        }
        first = false;
        url.push_str(&percent_encode(key));
        url.push('=');
        url.push_str(&percent_encode(value));
    };
    for (key, value) in query {
        if !matches!(key.as_str(), "after" | "before" | "limit") {
            push(key, value);
        }
    }
    push("limit", &limit.to_string());
    push(direction, cursor);
    url
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Control.

fn control_error(status: StatusCode, message: impl std::fmt::Display) -> HttpResponse {
    HttpResponse::build(status).json(json!({"error": message.to_string()}))
}

fn control_failure(error: ControlError) -> HttpResponse {
    match error {
        ControlError::NotFound(m) => control_error(StatusCode::NOT_FOUND, m),
        ControlError::Invalid(m) => control_error(StatusCode::BAD_REQUEST, m),
    }
}

fn parse_body<T: for<'de> Deserialize<'de>>(body: &[u8]) -> Result<T, serde_json::Error> {
    serde_json::from_slice(body)
}

async fn control_not_found() -> HttpResponse {
    control_error(StatusCode::NOT_FOUND, "no such control endpoint")
}

async fn control_stats(req: HttpRequest, shared: web::Data<Shared>) -> HttpResponse {
    let per_recipient = !req
        .query_string()
        .split('&')
        .any(|pair| pair == "per_recipient=false" || pair == "per_recipient=0");
    HttpResponse::Ok().json(shared.stats(per_recipient))
}

async fn control_get_behaviour(shared: web::Data<Shared>) -> HttpResponse {
    HttpResponse::Ok().json(shared.behaviour())
}

async fn control_behaviour(body: web::Bytes, shared: web::Data<Shared>) -> HttpResponse {
    let patch: Value = match parse_body(&body) {
        Ok(patch) => patch,
        Err(error) => return control_error(StatusCode::BAD_REQUEST, error),
    };
    // Read-modify-write under the write lock, so concurrent patches do not lose fields.
    let mut behaviour = shared.behaviour.write();
    match behaviour.patched(&patch) {
        Ok(next) => {
            *behaviour = next;
            HttpResponse::Ok().json(next)
        }
        Err(error) => control_error(StatusCode::BAD_REQUEST, error),
    }
}

async fn control_template_status(body: web::Bytes, shared: web::Data<Shared>) -> HttpResponse {
    let request: TemplateStatusChange = match parse_body(&body) {
        Ok(request) => request,
        Err(error) => return control_error(StatusCode::BAD_REQUEST, error),
    };
    match shared.set_template_status(&request) {
        Ok(()) => HttpResponse::Ok().json(json!({
            "waba_id": request.waba_id,
            "name": request.name,
            "language": request.language,
            "status": request.status.trim().to_ascii_uppercase(),
        })),
        Err(error) => control_failure(error),
    }
}

async fn control_inbound(body: web::Bytes, shared: web::Data<Shared>) -> HttpResponse {
    let inbound: InboundText = match parse_body(&body) {
        Ok(inbound) => inbound,
        Err(error) => return control_error(StatusCode::BAD_REQUEST, error),
    };
    match shared.inbound_text(&inbound) {
        Ok(()) => HttpResponse::Ok().json(serde_json::json!({"sent": true})),
        Err(error) => control_failure(error),
    }
}

async fn control_user_preferences(body: web::Bytes, shared: web::Data<Shared>) -> HttpResponse {
    let change: UserPreferenceChange = match parse_body(&body) {
        Ok(change) => change,
        Err(error) => return control_error(StatusCode::BAD_REQUEST, error),
    };
    match shared.user_preference(&change) {
        Ok(()) => HttpResponse::Ok().json(serde_json::json!({"sent": true})),
        Err(error) => control_failure(error),
    }
}

async fn control_phone_number(
    path: web::Path<String>,
    body: web::Bytes,
    shared: web::Data<Shared>,
) -> HttpResponse {
    let change: PhoneNumberChange = match parse_body(&body) {
        Ok(change) => change,
        Err(error) => return control_error(StatusCode::BAD_REQUEST, error),
    };
    let id = path.into_inner();
    if let Err(error) = shared.set_phone_number(&id, &change) {
        return control_failure(error);
    }
    let world = shared.world.read();
    let all: Vec<String> = PHONE_NUMBER
        .fields
        .iter()
        .map(|f| (*f).to_owned())
        .collect();
    match world
        .number_index
        .get(&id)
        .map(|&i| number_json(&world, i, Some(&all)))
    {
        Some(Ok(value)) => HttpResponse::Ok().json(value),
        _ => control_error(StatusCode::NOT_FOUND, format!("no phone number {id}")),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WebhookUrlBody {
    url: Option<String>,
}

async fn control_webhook_url(body: web::Bytes, shared: web::Data<Shared>) -> HttpResponse {
    let request: WebhookUrlBody = match parse_body(&body) {
        Ok(request) => request,
        Err(error) => return control_error(StatusCode::BAD_REQUEST, error),
    };
    shared.set_webhook_url(request.url.clone());
    HttpResponse::Ok().json(json!({"url": request.url}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_look_like_v_major_dot_minor() {
        for ok in ["v24.0", "v3.1", "v100.25"] {
            assert!(is_version(ok), "{ok}");
        }
        for bad in ["24.0", "v24", "v.0", "v24.", "vx.0", "__sim", ""] {
            assert!(!is_version(bad), "{bad}");
        }
    }

    #[test]
    fn fields_are_split_at_the_top_level_only() {
        let query = vec![(
            "fields".to_owned(),
            "id, throughput{level},owner_business_info{id,name},,name".to_owned(),
        )];
        assert_eq!(
            requested_fields(&query).unwrap(),
            ["id", "throughput", "owner_business_info", "name"]
        );
        assert_eq!(requested_fields(&[]), None);
    }

    #[test]
    fn cursors_round_trip_and_urls_are_encoded() {
        assert_eq!(
            decode_cursor(&cursor("770001000000003")).unwrap(),
            "770001000000003"
        );
        assert_eq!(decode_cursor("zz"), None);
        assert_eq!(percent_encode("a b,c{d}"), "a%20b%2Cc%7Bd%7D");
    }
}
