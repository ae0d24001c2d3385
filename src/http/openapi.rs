//! The OpenAPI 3.1 document of the HTTP API (`GET /openapi.json`), generated from the code:
//! the handlers carry `#[utoipa::path]`, the request and response structs derive `ToSchema`.
//! `tests/api/openapi.rs` checks the documented shapes against real answers.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use serde_json::Value;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, RefOr, Response, ResponseBuilder};
use utoipa::{IntoResponses, Modify, OpenApi, ToSchema};

use super::error::ErrorBody;
use super::{
    bulk_sends, business_accounts, dashboard, events, health, operations, send_bulk, suppressions,
    webhooks,
};

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
        suppressions::list,
        suppressions::add,
        suppressions::delete,
        events::send_events,
        events::tenant_events,
        events::create_token,
        dashboard::page,
        dashboard::asset,
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
        (name = "suppressions", description = "The tenant's opt-outs: phones that sends skip (MARKETING templates, or every category when added with `suppress_all_categories`)."),
        (name = "live events", description = "Server-sent event streams of sends' status objects, and the token that lets a browser open them."),
        (name = "dashboard", description = "The live dashboard: an HTML page and its assets, compiled into the binary."),
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

/// An error answer several operations document alike: its status and description.
type ErrorAnswer = (u16, &'static str);

const UNAUTHORIZED: ErrorAnswer = (401, "`missing_api_key` or `invalid_api_key`.");
const READ_ONLY_KEY: ErrorAnswer = (403, "`forbidden`: the key may only read.");
const RATE_LIMITED: ErrorAnswer = (
    429,
    "`rate_limited`: the tenant is over its request budget; `Retry-After` says when to come back.",
);
const UNKNOWN_SEND: ErrorAnswer = (404, "`not_found`.");
const BAD_FILTER: ErrorAnswer = (400, "`validation_error`: a bad filter or paging value.");
const ALREADY_FINISHED: ErrorAnswer = (409, "`already_finished`.");
const UNAVAILABLE: ErrorAnswer = (503, "`service_unavailable`.");

/// Error answers shared by several operations, each a type that `#[utoipa::path]` lists
/// in its `responses(...)` next to the operation's own answers.
macro_rules! shared_errors {
    ($($(#[$doc:meta])* $name:ident = [$($answer:expr),+ $(,)?];)+) => {$(
        $(#[$doc])*
        pub(crate) struct $name;

        impl IntoResponses for $name {
            fn responses() -> BTreeMap<String, RefOr<Response>> {
                error_responses(&[$($answer),+])
            }
        }
    )+};
}

shared_errors! {
    /// Every operation that takes an API key: 401 and 429.
    KeyErrors = [UNAUTHORIZED, RATE_LIMITED];
    /// An operation that creates or controls sends: 401, 403 for a read key, 429.
    SendKeyErrors = [UNAUTHORIZED, READ_ONLY_KEY, RATE_LIMITED];
    /// A list or a page read with a bad filter or paging value: 400.
    FilterErrors = [BAD_FILTER];
    /// A read of one send that does not exist (or is another tenant's): 404.
    UnknownSendErrors = [UNKNOWN_SEND];
    /// Cancel, pause and resume.
    ControlErrors = [
        UNAUTHORIZED,
        READ_ONLY_KEY,
        RATE_LIMITED,
        UNKNOWN_SEND,
        ALREADY_FINISHED,
        UNAVAILABLE,
    ];
}

/// Each answer with the `ErrorBody` schema, as `body = ErrorBody` in a path's responses.
fn error_responses(answers: &[ErrorAnswer]) -> BTreeMap<String, RefOr<Response>> {
    answers
        .iter()
        .map(|&(status, description)| {
            let content = ContentBuilder::new()
                .schema(Some(Ref::from_schema_name(ErrorBody::name())))
                .build();
            let response = ResponseBuilder::new()
                .description(description)
                .content("application/json", content)
                .build();
            (status.to_string(), RefOr::T(response))
        })
        .collect()
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Every error answer of every operation, shared or not, is documented alike: JSON with
    /// the error body's schema and a description naming its codes.
    #[test]
    fn every_error_answer_has_the_error_body() {
        let document = serde_json::to_value(ApiDoc::openapi()).unwrap();
        let mut checked = 0;
        for (path, item) in document["paths"].as_object().unwrap() {
            for (method, operation) in item.as_object().unwrap() {
                for (status, response) in operation["responses"].as_object().unwrap() {
                    if !status.starts_with('4') && !status.starts_with('5') {
                        continue;
                    }
                    assert_eq!(
                        response["content"]["application/json"]["schema"]["$ref"],
                        "#/components/schemas/ErrorBody",
                        "{method} {path} {status}"
                    );
                    let description = response["description"].as_str().unwrap();
                    assert!(description.starts_with('`'), "{method} {path} {status}");
                    checked += 1;
                }
            }
        }
        assert!(checked > 30, "{checked}");
    }

    #[test]
    fn a_shared_list_documents_each_of_its_answers() {
        let responses = ControlErrors::responses();
        let statuses: Vec<&str> = responses.keys().map(String::as_str).collect();
        assert_eq!(statuses, ["401", "403", "404", "409", "429", "503"]);
        let RefOr::T(conflict) = &responses["409"] else {
            panic!("an inline response");
        };
        assert_eq!(conflict.description, ALREADY_FINISHED.1);
    }
}
