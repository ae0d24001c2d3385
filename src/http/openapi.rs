//! The OpenAPI 3.1 document of the HTTP API (`GET /openapi.json`), generated from the code:
//! the handlers carry `#[utoipa::path]`, the request and response structs derive `ToSchema`.
//! `tests/api/openapi.rs` checks the documented shapes against real answers.

use utoipa::openapi::security::{ApiKey, ApiKeyValue, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::{bulk_sends, business_accounts, health, operations, send_bulk, webhooks};

/// The document.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "mindo-bulk",
        description = "Bulk WhatsApp template messages through Meta's Cloud API. Canonical paths end \
with `/`; the same path without it works too. Every error answer has the body `ErrorBody`.",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    paths(
        send_bulk::create,
        bulk_sends::list,
        bulk_sends::status,
        bulk_sends::messages,
        bulk_sends::export,
        bulk_sends::cancel,
        bulk_sends::pause,
        bulk_sends::resume,
        business_accounts::list,
        webhooks::verify,
        webhooks::receive,
        health::healthz,
        health::readyz,
        operations::metrics,
        operations::openapi,
    ),
    modifiers(&ApiKeyScheme),
    tags(
        (name = "bulk sends", description = "Create, follow and control bulk sends."),
        (name = "business accounts", description = "The tenant's numbers, quotas and templates."),
        (name = "meta webhooks", description = "Meta's notifications (Meta → this daemon)."),
        (name = "operations", description = "Health, metrics and this document: no API key; keep them behind the firewall."),
    ),
)]
pub struct ApiDoc;

/// The `X-API-Key` header scheme (`api_key`), which the tenant endpoints require.
struct ApiKeyScheme;

impl Modify for ApiKeyScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                super::auth::API_KEY_HEADER,
                "`mindo_` followed by 24 characters [A-Za-z0-9]; the key's tenant is the caller.",
            ))),
        );
    }
}
