//! The live dashboard: one HTML page, its script and its style sheet, compiled into the
//! binary (`include_str!`), so the daemon serves it with no file to install and no request
//! leaving the machine (no CDN, no web fonts). Plain HTML, CSS and JavaScript with no build
//! step: see the README's "Dashboard" section for why.
//!
//! The page talks to the API like any client: the key typed once (kept in
//! `sessionStorage`), `X-API-Key` on every `fetch`, and a dashboard token for the
//! `EventSource` streams (`http::events`). The responses forbid framing and any script,
//! style or connection that is not this daemon's own (`Content-Security-Policy`).

use actix_web::{web, HttpResponse};
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

use super::error::ApiError;

const PAGE: &str = include_str!("dashboard/index.html");
const SCRIPT: &str = include_str!("dashboard/dashboard.js");
const STYLE: &str = include_str!("dashboard/dashboard.css");

/// Only this origin's scripts, styles, images and connections; no frames, no forms elsewhere.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// An asset of the page.
#[derive(Debug, Deserialize, ToSchema)]
enum Asset {
    #[serde(rename = "dashboard.js")]
    Script,
    #[serde(rename = "dashboard.css")]
    Style,
}

/// The `{asset}` path parameter.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct AssetPath {
    /// The file.
    #[param(inline)]
    asset: Asset,
}

fn respond(content_type: &str, body: &'static str) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(content_type)
        .insert_header(("Content-Security-Policy", CSP))
        .insert_header(("X-Content-Type-Options", "nosniff"))
        .insert_header(("Referrer-Policy", "no-referrer"))
        .insert_header(("Cache-Control", "no-cache"))
        .body(body)
}

/// `GET /`: the dashboard page.
#[utoipa::path(
    get,
    path = "/",
    tag = "dashboard",
    operation_id = "dashboard",
    responses(
        (status = 200, description = "The dashboard (HTML). It asks for an API key once and keeps it in the tab's `sessionStorage`.", content_type = "text/html", body = String),
    ),
)]
pub async fn page() -> HttpResponse {
    respond("text/html; charset=utf-8", PAGE)
}

/// `GET /dashboard/{asset}`: the page's script and style sheet.
#[utoipa::path(
    get,
    path = "/dashboard/{asset}",
    tag = "dashboard",
    operation_id = "dashboard_asset",
    params(AssetPath),
    responses(
        (status = 200, description = "The page's script or style sheet.", content(
            (String = "application/javascript"),
            (String = "text/css"),
        )),
        (status = 404, description = "`not_found`: no such asset.", body = super::error::ErrorBody),
    ),
)]
pub async fn asset(
    path: Result<web::Path<AssetPath>, actix_web::Error>,
) -> Result<HttpResponse, ApiError> {
    match path.map(|p| p.into_inner().asset) {
        Ok(Asset::Script) => Ok(respond("application/javascript; charset=utf-8", SCRIPT)),
        Ok(Asset::Style) => Ok(respond("text/css; charset=utf-8", STYLE)),
        Err(_) => Err(ApiError::not_found("no such asset")),
    }
}
