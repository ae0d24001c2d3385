//! Live events (server-sent events, `text/event-stream`) and the dashboard token.
//!
//! - `GET /api/v1/meta-templates/bulk-sends/{id}/events/`: the send's status object now, then
//!   at every change (at most four a second), and a last `finished` event once it finished
//!   and settled, after which the stream ends.
//! - `GET /api/v1/events/`: every live send of the tenant (unfinished, or settled in the last
//!   minute), now and at every change; it never ends.
//! - `POST /api/v1/dashboard-token/`: a token valid for five minutes that the streams take as
//!   `?token=` where no `X-API-Key` header can be sent (`EventSource`).
//!
//! The hub behind the streams is `crate::live`. Here: authentication (the key, or a token
//! whose key is re-checked at every connection), the first events, `Last-Event-ID`, and the
//! SSE framing with a comment every 15 s so that idle proxies keep the connection open and a
//! vanished client is noticed.

use std::time::Duration;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::middleware::Next;
use actix_web::{web, HttpRequest, HttpResponse};
use futures_util::stream::{self, Stream, StreamExt};
use serde::Serialize;
use utoipa::{IntoParams, ToSchema};

use super::auth::Authenticated;
use super::bulk_sends::BulkSendId;
use super::error::{ApiError, ErrorCode};
use super::openapi::{KeyErrors, UnknownSendErrors};
use super::state::AppState;
use crate::clock::format_api_time;
use crate::live::token::{TokenClaims, TOKEN_LIFETIME_MS};
use crate::live::{LiveEvent, Snapshot, Subscription, RECENT_MS};
use crate::storage::sends;
use crate::storage::tenants::Principal;

/// How often an idle stream carries a comment.
const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// What `EventSource` waits before reconnecting, in ms (the `retry:` field).
const RECONNECT_MS: u32 = 1_000;

/// Where [`token_out_of_url`] puts a `?token=` (and only it: a client's own header of this
/// name is removed).
const TOKEN_HEADER: &str = "x-mindo-dashboard-token";

/// Middleware, outermost (`startup`): moves a `token` query parameter into [`TOKEN_HEADER`]
/// before anything sees the URL, so that request logs (which show the URL of every refused
/// request) never carry a dashboard token.
pub async fn token_out_of_url(
    mut req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    req.headers_mut().remove(TOKEN_HEADER);
    let query = req.uri().query().unwrap_or("");
    if query.split('&').any(|pair| pair.starts_with("token=")) {
        let mut token = None;
        let mut kept = url::form_urlencoded::Serializer::new(String::new());
        for (name, value) in url::form_urlencoded::parse(query.as_bytes()) {
            match name.as_ref() {
                "token" => token = Some(value.into_owned()),
                _ => {
                    kept.append_pair(&name, &value);
                }
            }
        }
        let kept = kept.finish();
        let path = req.uri().path().to_owned();
        let target = match kept.is_empty() {
            true => path,
            false => format!("{path}?{kept}"),
        };
        if let Ok(uri) = target.parse() {
            req.head_mut().uri = uri;
            if let Some(value) = token.and_then(|t| HeaderValue::from_str(&t).ok()) {
                req.headers_mut()
                    .insert(HeaderName::from_static(TOKEN_HEADER), value);
            }
        }
    }
    next.call(req).await
}

/// The caller of a stream: by `X-API-Key`, else by `?token=`.
async fn stream_principal(req: &HttpRequest, state: &AppState) -> Result<Principal, ApiError> {
    let token = req
        .headers()
        .get(TOKEN_HEADER)
        .map(|v| v.to_str().unwrap_or(""));
    let token = match token {
        Some(token) if req.headers().get(super::auth::API_KEY_HEADER).is_none() => token.to_owned(),
        _ => {
            let mut payload = actix_web::dev::Payload::None;
            let Authenticated(principal) =
                <Authenticated as actix_web::FromRequest>::from_request(req, &mut payload).await?;
            return Ok(principal);
        }
    };
    let now = state.clock.now_ms();
    let refused = || {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            ErrorCode::InvalidApiKey,
            "the dashboard token is invalid or expired; POST /api/v1/dashboard-token/ issues a new one",
        )
    };
    let TokenClaims {
        tenant_id,
        api_key_id,
        ..
    } = state
        .live
        .token_key()
        .verify(&token, now)
        .map_err(|_| refused())?;
    let principal = state
        .db
        .run(move |conn| crate::live::store::principal_of_key(conn, tenant_id, api_key_id, now))
        .await?
        .ok_or_else(refused)?;
    if let Err(retry_after) = state.tenant_limits.check(principal.tenant_id) {
        return Err(ApiError::rate_limited(retry_after));
    }
    Ok(principal)
}

/// The `Last-Event-ID` header, if any.
fn last_event_id(req: &HttpRequest) -> Option<String> {
    req.headers()
        .get("Last-Event-ID")
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
}

/// One event in SSE framing.
fn frame(event: &LiveEvent) -> web::Bytes {
    // The data is one line of JSON (serde_json never writes a raw newline).
    web::Bytes::from(format!(
        "event: {}\nid: {}\ndata: {}\n\n",
        event.kind.as_str(),
        event.id,
        event.data
    ))
}

/// The response: `first` events, then the subscription's, with keep-alive comments.
fn event_stream(first: Vec<LiveEvent>, subscription: Option<Subscription>) -> HttpResponse {
    let mut head = format!("retry: {RECONNECT_MS}\n\n").into_bytes();
    for event in &first {
        head.extend_from_slice(&frame(event));
    }
    let head = stream::once(async move { Ok::<_, actix_web::Error>(web::Bytes::from(head)) });
    let body: std::pin::Pin<Box<dyn Stream<Item = Result<web::Bytes, actix_web::Error>>>> =
        match subscription {
            Some(subscription) => Box::pin(head.chain(follow(subscription))),
            None => Box::pin(head),
        };
    HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header(("Cache-Control", "no-cache"))
        .insert_header(("X-Accel-Buffering", "no"))
        .streaming(body)
}

/// The subscription's events as SSE frames, with a comment when idle; ends when the hub
/// lets the subscription go.
fn follow(subscription: Subscription) -> impl Stream<Item = Result<web::Bytes, actix_web::Error>> {
    stream::unfold(subscription, |mut subscription| async move {
        let bytes = match tokio::time::timeout(KEEP_ALIVE, subscription.recv()).await {
            Ok(Some(event)) => frame(&event),
            Ok(None) => return None,
            Err(_) => web::Bytes::from_static(b": keep-alive\n\n"),
        };
        Some((Ok(bytes), subscription))
    })
}

/// `GET …/bulk-sends/{id}/events/`.
#[utoipa::path(
    get,
    path = "/api/v1/meta-templates/bulk-sends/{bulk_send_id}/events/",
    tag = "live events",
    operation_id = "bulk_send_events",
    params(BulkSendId, TokenParam,
        ("Last-Event-ID" = Option<String>, Header, description = "The id of the last event received: the current state is sent at once unless it is that one."),
    ),
    responses(
        (status = 200, description = "Server-sent events: `status` with the status object (the `GET …/bulk-sends/{id}/` body) now and at each change, at most four a second; `finished` with the final status object once the send finished and settled, then the stream ends. Each event's `id` names its content. A client that falls 16 events behind is disconnected.", content_type = "text/event-stream", body = String),
        (status = 204, description = "The send has finished and the client already has its final state (`Last-Event-ID`): nothing more will come, and `EventSource` stops reconnecting."),
        KeyErrors,
        UnknownSendErrors,
    ),
    security(("api_key" = []), ()),
)]
pub async fn send_events(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<BulkSendId>,
) -> Result<HttpResponse, ApiError> {
    let principal = stream_principal(&req, &state).await?;
    let tenant_id = principal.tenant_id;
    let id = path.into_inner().0;
    let lookup = id.clone();
    let detail = state
        .db
        .run(move |conn| sends::load_detail(conn, tenant_id, &lookup))
        .await?
        .ok_or_else(|| ApiError::not_found("no bulk send with this id"))?;
    let snapshot = Snapshot::of(detail);
    let known = last_event_id(&req);
    let has_it = known.as_deref() == Some(snapshot.id.as_str());
    if snapshot.finished {
        if has_it {
            return Ok(HttpResponse::NoContent().finish());
        }
        return Ok(event_stream(vec![snapshot.send_event()], None));
    }
    let first = match has_it {
        true => Vec::new(),
        false => vec![snapshot.send_event()],
    };
    let subscription = state.live.follow_send(tenant_id, id, Some(snapshot.id));
    Ok(event_stream(first, Some(subscription)))
}

/// `GET /api/v1/events/`.
#[utoipa::path(
    get,
    path = "/api/v1/events/",
    tag = "live events",
    operation_id = "tenant_events",
    params(TokenParam,
        ("Last-Event-ID" = Option<String>, Header, description = "The id of the last event received: sends that have not changed since are not sent again."),
    ),
    responses(
        (status = 200, description = "Server-sent events, `status` only: the status object of each of the tenant's live sends (not settled, or settled in the last minute) now, then of any of them at each change, at most four a second per send. Event ids are `{bulk_send_id}/{content id}`. A client that falls 16 events behind is disconnected.", content_type = "text/event-stream", body = String),
        KeyErrors,
    ),
    security(("api_key" = []), ()),
)]
pub async fn tenant_events(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let principal = stream_principal(&req, &state).await?;
    let since = state.clock.now_ms() - RECENT_MS;
    let mut snapshots = state
        .live
        .tenant_snapshots(principal.tenant_id, since)
        .await?;
    // Oldest first, as the hub sends them.
    snapshots.reverse();
    let known = last_event_id(&req);
    let first = snapshots
        .iter()
        .map(Snapshot::tenant_event)
        .filter(|e| known.as_deref() != Some(e.id.as_str()))
        .collect();
    let subscription = state.live.follow_tenant(principal.tenant_id, &snapshots);
    Ok(event_stream(first, Some(subscription)))
}

/// The `token` query parameter of the streams, as documented (the handlers read it from
/// [`TOKEN_HEADER`], where [`token_out_of_url`] moved it).
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
struct TokenParam {
    /// A dashboard token (`POST /api/v1/dashboard-token/`), for clients that cannot send
    /// `X-API-Key`.
    token: Option<String>,
}

/// A dashboard token.
#[derive(Serialize, ToSchema)]
pub struct DashboardToken {
    /// Pass it as `?token=` to the event streams.
    token: String,
    /// When it stops working (five minutes after it was issued).
    expires_at: String,
}

/// `POST /api/v1/dashboard-token/`.
#[utoipa::path(
    post,
    path = "/api/v1/dashboard-token/",
    tag = "live events",
    operation_id = "create_dashboard_token",
    responses(
        (status = 200, description = "A token for the event streams (`?token=`), valid for five minutes, with the rights of the key that asked for it; it stops working at once if that key is revoked.", body = DashboardToken),
        KeyErrors,
    ),
    security(("api_key" = [])),
)]
pub async fn create_token(
    Authenticated(principal): Authenticated,
    state: web::Data<AppState>,
) -> HttpResponse {
    let expires_at = state.clock.now_ms() + TOKEN_LIFETIME_MS;
    let token = state.live.token_key().issue(TokenClaims {
        tenant_id: principal.tenant_id,
        api_key_id: principal.api_key_id,
        expires_at,
    });
    HttpResponse::Ok()
        .insert_header(("Cache-Control", "no-store"))
        .json(DashboardToken {
            token,
            expires_at: format_api_time(expires_at),
        })
}
