//! The OpenAPI 3.1 document of the HTTP API (`GET /openapi.json`), generated from the code:
//! the handlers carry `#[utoipa::path]`, the request and response structs derive `ToSchema`.
//! `tests/api/openapi.rs` checks the documented shapes against real answers.

use std::sync::OnceLock;

use serde_json::Value;
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

/// The document as served: the generated one with this daemon's settings filled in (the most
/// recipients a request may list).
pub fn document(max_recipients: u32) -> Value {
    static GENERATED: OnceLock<Value> = OnceLock::new();
    let mut document = GENERATED
        .get_or_init(|| serde_json::to_value(ApiDoc::openapi()).unwrap_or(Value::Null))
        .clone();
    if let Some(Value::Object(recipients)) =
        document.pointer_mut("/components/schemas/SendBulkRequest/properties/recipients")
    {
        recipients.insert("maxItems".into(), max_recipients.into());
    }
    fix_link_keys(&mut document);
    document
}

/// utoipa 5 writes a response link's fields in snake case (`operation_id`); OpenAPI
/// spells them in camel case, and tools that follow links (Schemathesis) read only that.
fn fix_link_keys(document: &mut Value) {
    let Some(Value::Object(paths)) = document.get_mut("paths") else {
        return;
    };
    let links = paths
        .values_mut()
        .filter_map(Value::as_object_mut)
        .flat_map(|operations| operations.values_mut())
        .filter_map(|operation| operation.get_mut("responses")?.as_object_mut())
        .flat_map(|responses| responses.values_mut())
        .filter_map(|response| response.get_mut("links")?.as_object_mut())
        .flat_map(|links| links.values_mut())
        .filter_map(Value::as_object_mut);
    for link in links {
        for (snake, camel) in [
            ("operation_id", "operationId"),
            ("operation_ref", "operationRef"),
            ("request_body", "requestBody"),
        ] {
            if let Some(value) = link.remove(snake) {
                link.insert(camel.into(), value);
            }
        }
    }
}
