//! `GraphClient`: the calls this daemon makes to Meta's Graph API, over awc.
//!
//! `awc::Client` is `!Send`: make one per arbiter or actor and reuse it (keep-alive), never
//! one per request. Every call carries the WABA's system-user token as a bearer token and
//! uses the pinned Graph API version from the configuration.
//!
//! Paging: list calls follow `paging.next` only when it points at the configured Graph base
//! URL (the token travels with the request, so it must never go to another host); otherwise
//! they page on with the `after` cursor against the base URL.

use std::time::{Duration, Instant};

use awc::error::SendRequestError;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::error::{MetaError, SendFailure};
use crate::domain::tier::{ThroughputLevel, Tier};
use crate::telemetry;

/// Fields read from a phone number (v24+ messaging-limit field).
const PHONE_FIELDS: &str = "id,display_phone_number,verified_name,quality_rating,throughput,\
whatsapp_business_manager_messaging_limit,is_on_biz_app";
/// The same with the pre-v24 messaging-limit field, for versions that lack the new one.
const PHONE_FIELDS_LEGACY: &str = "id,display_phone_number,verified_name,quality_rating,\
throughput,messaging_limit_tier,is_on_biz_app";
/// Fields read from a template.
const TEMPLATE_FIELDS: &str = "id,name,language,status,category,parameter_format,components";
/// Page size asked for in list calls.
const PAGE_LIMIT: u32 = 100;
/// Pages followed at most in one list call (a guard against a server that never ends).
const MAX_PAGES: usize = 1_000;
/// Largest answer body read from a management call.
const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;

/// A management call that failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum GraphError {
    /// Meta answered with an error.
    #[error("the Graph API refused the call: {0}")]
    Meta(MetaError),
    /// No usable answer: connection, timeout, or a body that is not what Meta sends.
    #[error("the Graph API call failed: {0}")]
    Transport(String),
}

/// A phone number as the Graph API describes it.
#[derive(Debug, Clone, PartialEq)]
pub struct PhoneNumberInfo {
    pub id: String,
    pub display_phone_number: String,
    pub verified_name: String,
    pub quality_rating: String,
    pub tier: Tier,
    pub throughput: ThroughputLevel,
}

/// A WABA and the business portfolio that owns it.
#[derive(Debug, Clone, PartialEq)]
pub struct WabaInfo {
    pub id: String,
    pub name: String,
    /// `owner_business_info.id`, when Meta tells.
    pub portfolio_id: Option<String>,
}

/// A message template as listed by `GET /{waba}/message_templates`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct TemplateInfo {
    pub id: String,
    pub name: String,
    pub language: String,
    pub status: String,
    #[serde(default)]
    pub category: String,
    #[serde(default)]
    pub parameter_format: Option<String>,
    #[serde(default)]
    pub components: Value,
}

/// Meta accepted a message.
#[derive(Debug, Clone, PartialEq)]
pub struct Accepted {
    /// The message's id at Meta; status webhooks name it.
    pub wamid: String,
    /// `accepted`, `held_for_quality_assessment`, … when present.
    pub message_status: Option<String>,
}

/// The body of a template send (`POST /{phone_number_id}/messages`).
#[derive(Debug, Serialize)]
pub struct TemplateMessage<'a> {
    pub messaging_product: &'static str,
    pub recipient_type: &'static str,
    /// E.164 with `+`: without it Meta prepends the sender's country code.
    pub to: &'a str,
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// Our message id, echoed in status webhooks so they route without a lookup.
    pub biz_opaque_callback_data: &'a str,
    pub template: TemplatePayload<'a>,
}

/// The `template` object of a send.
#[derive(Debug, Serialize)]
pub struct TemplatePayload<'a> {
    pub name: &'a str,
    pub language: Language<'a>,
    pub components: &'a Value,
}

/// `{"code": "es"}`.
#[derive(Debug, Serialize)]
pub struct Language<'a> {
    pub code: &'a str,
}

impl<'a> TemplateMessage<'a> {
    pub fn new(
        to: &'a str,
        opaque: &'a str,
        template: &'a str,
        language: &'a str,
        components: &'a Value,
    ) -> Self {
        TemplateMessage {
            messaging_product: "whatsapp",
            recipient_type: "individual",
            to,
            kind: "template",
            biz_opaque_callback_data: opaque,
            template: TemplatePayload {
                name: template,
                language: Language { code: language },
                components,
            },
        }
    }
}

/// The Graph API client. Cheap to clone (awc shares its connection pool between clones),
/// but `!Send`: one per arbiter.
#[derive(Clone)]
pub struct GraphClient {
    http: awc::Client,
    base: String,
    version: String,
}

impl std::fmt::Debug for GraphClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GraphClient")
            .field("base", &self.base)
            .field("version", &self.version)
            .finish()
    }
}

impl GraphClient {
    /// A client for `base_url` (e.g. `https://graph.facebook.com`) and `version` (`v24.0`),
    /// whose calls give up after `timeout`, with at most `max_connections` open at once.
    pub fn new(base_url: &str, version: &str, timeout: Duration, max_connections: usize) -> Self {
        let connector = awc::Connector::new()
            .timeout(timeout.min(Duration::from_secs(10)))
            .limit(max_connections);
        let http = awc::Client::builder()
            .connector(connector)
            .timeout(timeout)
            .disable_redirects()
            .finish();
        GraphClient {
            http,
            base: base_url.trim_end_matches('/').to_owned(),
            version: version.trim_matches('/').to_owned(),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}/{}/{}", self.base, self.version, path)
    }

    /// Sends one template message. On success Meta has *accepted* it (not delivered it).
    pub async fn send_template(
        &self,
        token: &str,
        phone_number_id: &str,
        message: &TemplateMessage<'_>,
    ) -> Result<Accepted, SendFailure> {
        let body = serde_json::to_vec(message)
            .map_err(|e| SendFailure::Connect(format!("cannot encode the message: {e}")))?;
        self.send_raw(token, phone_number_id, body).await
    }

    /// Sends an already encoded message body.
    pub async fn send_raw(
        &self,
        token: &str,
        phone_number_id: &str,
        body: Vec<u8>,
    ) -> Result<Accepted, SendFailure> {
        let request = self
            .http
            .post(self.url(&format!("{phone_number_id}/messages")))
            .bearer_auth(token)
            .content_type("application/json");
        let started = Instant::now();
        let mut response = match request.send_body(body).await {
            Ok(r) => r,
            Err(err) => {
                telemetry::graph_request("send_message", None, started.elapsed());
                return Err(send_error(err));
            }
        };
        let status = response.status().as_u16();
        let bytes = response.body().limit(MAX_BODY_BYTES).await;
        telemetry::graph_request("send_message", Some(status), started.elapsed());
        let bytes =
            bytes.map_err(|e| SendFailure::Interrupted(format!("reading the answer: {e}")))?;
        if !(200..300).contains(&status) {
            let err = MetaError::from_response(status, &bytes);
            telemetry::meta_refusal(err.has_meta_code().then_some(err.code));
            return Err(SendFailure::Meta(err));
        }
        parse_accepted(&bytes).ok_or_else(|| {
            SendFailure::Interrupted("the answer to a send carried no message id".into())
        })
    }

    /// Reads one phone number: quality, messaging limit (v24+ field, falling back to the
    /// pre-v24 `messaging_limit_tier`), throughput level.
    pub async fn phone_number(&self, token: &str, id: &str) -> Result<PhoneNumberInfo, GraphError> {
        let value = match self
            .get_json(token, &self.url(id), &[("fields", PHONE_FIELDS)])
            .await
        {
            Ok(v) if v.get("whatsapp_business_manager_messaging_limit").is_some() => v,
            Ok(_) | Err(GraphError::Meta(MetaError { code: 100, .. })) => {
                self.get_json(token, &self.url(id), &[("fields", PHONE_FIELDS_LEGACY)])
                    .await?
            }
            Err(other) => return Err(other),
        };
        phone_number_from_json(&value)
            .ok_or_else(|| GraphError::Transport(format!("phone number {id}: unexpected answer")))
    }

    /// Reads a WABA's name and owning business portfolio.
    pub async fn waba(&self, token: &str, waba_id: &str) -> Result<WabaInfo, GraphError> {
        let value = self
            .get_json(
                token,
                &self.url(waba_id),
                &[("fields", "id,name,owner_business_info")],
            )
            .await?;
        Ok(WabaInfo {
            id: string_field(&value, "id").unwrap_or_else(|| waba_id.to_owned()),
            name: string_field(&value, "name").unwrap_or_default(),
            portfolio_id: value
                .get("owner_business_info")
                .and_then(|o| string_field(o, "id")),
        })
    }

    /// Lists a WABA's phone numbers, every page.
    pub async fn waba_phone_numbers(
        &self,
        token: &str,
        waba_id: &str,
    ) -> Result<Vec<PhoneNumberInfo>, GraphError> {
        let items = self
            .list_all(token, &format!("{waba_id}/phone_numbers"), PHONE_FIELDS)
            .await?;
        let mut numbers = Vec::with_capacity(items.len());
        for item in items {
            let id = string_field(&item, "id").unwrap_or_default();
            if item
                .get("whatsapp_business_manager_messaging_limit")
                .is_some()
            {
                if let Some(n) = phone_number_from_json(&item) {
                    numbers.push(n);
                    continue;
                }
            }
            // The list did not carry the limit: read the number on its own.
            numbers.push(self.phone_number(token, &id).await?);
        }
        Ok(numbers)
    }

    /// Lists a WABA's templates, following paging to the end.
    pub async fn waba_templates(
        &self,
        token: &str,
        waba_id: &str,
    ) -> Result<Vec<TemplateInfo>, GraphError> {
        let items = self
            .list_all(
                token,
                &format!("{waba_id}/message_templates"),
                TEMPLATE_FIELDS,
            )
            .await?;
        items
            .into_iter()
            .map(|item| {
                let mut item = item;
                // Meta sends ids as strings; be lenient with numbers.
                if let Some(id) = item.get("id").and_then(Value::as_i64) {
                    item["id"] = Value::String(id.to_string());
                }
                serde_json::from_value(item).map_err(|e| {
                    GraphError::Transport(format!("a template entry is malformed: {e}"))
                })
            })
            .collect()
    }

    async fn list_all(
        &self,
        token: &str,
        path: &str,
        fields: &str,
    ) -> Result<Vec<Value>, GraphError> {
        let limit = PAGE_LIMIT.to_string();
        let first = self.url(path);
        let mut page = self
            .get_json(token, &first, &[("fields", fields), ("limit", &limit)])
            .await?;
        let mut items = Vec::new();
        for _ in 0..MAX_PAGES {
            if let Some(data) = page.get_mut("data").and_then(Value::as_array_mut) {
                items.append(data);
            }
            let next = page.pointer("/paging/next").and_then(Value::as_str);
            let after = page
                .pointer("/paging/cursors/after")
                .and_then(Value::as_str)
                .map(str::to_owned);
            page = match (next, after) {
                (None, _) => return Ok(items),
                (Some(next), _) if next.starts_with(&format!("{}/", self.base)) => {
                    let next = next.to_owned();
                    self.get_json(token, &next, &[]).await?
                }
                (Some(_), Some(after)) => {
                    self.get_json(
                        token,
                        &first,
                        &[("fields", fields), ("limit", &limit), ("after", &after)],
                    )
                    .await?
                }
                (Some(next), None) => {
                    return Err(GraphError::Transport(format!(
                        "paging points at another host ({next}) and gives no cursor"
                    )))
                }
            };
        }
        Err(GraphError::Transport(format!(
            "{path}: more than {MAX_PAGES} pages"
        )))
    }

    async fn get_json(
        &self,
        token: &str,
        url: &str,
        query: &[(&str, &str)],
    ) -> Result<Value, GraphError> {
        let mut request = self.http.get(url).bearer_auth(token);
        if !query.is_empty() {
            request = request
                .query(&query)
                .map_err(|e| GraphError::Transport(format!("bad query: {e}")))?;
        }
        let started = Instant::now();
        let mut response = request.send().await.map_err(|e| {
            telemetry::graph_request("read", None, started.elapsed());
            GraphError::Transport(e.to_string())
        })?;
        let status = response.status().as_u16();
        let bytes = response.body().limit(MAX_BODY_BYTES).await;
        telemetry::graph_request("read", Some(status), started.elapsed());
        let bytes = bytes.map_err(|e| GraphError::Transport(format!("reading the answer: {e}")))?;
        if !(200..300).contains(&status) {
            return Err(GraphError::Meta(MetaError::from_response(status, &bytes)));
        }
        serde_json::from_slice(&bytes)
            .map_err(|e| GraphError::Transport(format!("the answer is not JSON: {e}")))
    }
}

/// Maps an awc failure to what it means for the message: a connect failure means the
/// request was never written; anything later leaves the outcome unknown.
fn send_error(err: SendRequestError) -> SendFailure {
    match err {
        SendRequestError::Connect(e) => SendFailure::Connect(e.to_string()),
        SendRequestError::Url(e) => SendFailure::Connect(e.to_string()),
        SendRequestError::Timeout => SendFailure::Timeout,
        other => SendFailure::Interrupted(other.to_string()),
    }
}

fn parse_accepted(bytes: &[u8]) -> Option<Accepted> {
    #[derive(Deserialize)]
    struct Answer {
        #[serde(default)]
        messages: Vec<AnswerMessage>,
    }
    #[derive(Deserialize)]
    struct AnswerMessage {
        id: String,
        #[serde(default)]
        message_status: Option<String>,
    }
    let answer: Answer = serde_json::from_slice(bytes).ok()?;
    let first = answer.messages.into_iter().next()?;
    (!first.id.is_empty()).then_some(Accepted {
        wamid: first.id,
        message_status: first.message_status,
    })
}

fn string_field(value: &Value, key: &str) -> Option<String> {
    match value.get(key)? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Reads a phone number object. `None` without an id.
pub fn phone_number_from_json(value: &Value) -> Option<PhoneNumberInfo> {
    let id = string_field(value, "id")?;
    let tier = value
        .get("whatsapp_business_manager_messaging_limit")
        .or_else(|| value.get("messaging_limit_tier"))
        .and_then(Tier::from_json)
        .unwrap_or(Tier::NotSet);
    let coexistence = value.get("is_on_biz_app").and_then(Value::as_bool) == Some(true);
    let throughput = if coexistence {
        ThroughputLevel::Coexistence
    } else {
        ThroughputLevel::from_meta(value.pointer("/throughput/level").and_then(Value::as_str))
    };
    Some(PhoneNumberInfo {
        id,
        display_phone_number: string_field(value, "display_phone_number").unwrap_or_default(),
        verified_name: string_field(value, "verified_name").unwrap_or_default(),
        quality_rating: string_field(value, "quality_rating").unwrap_or_else(|| "UNKNOWN".into()),
        tier,
        throughput,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_send_body_has_meta_shape() {
        let components = json!([{"type": "body", "parameters": [{"type": "text", "text": "Ana"}]}]);
        let msg = TemplateMessage::new("+5491112345678", "42", "welcome", "es", &components);
        let v = serde_json::to_value(&msg).unwrap();
        assert_eq!(
            v,
            json!({
                "messaging_product": "whatsapp",
                "recipient_type": "individual",
                "to": "+5491112345678",
                "type": "template",
                "biz_opaque_callback_data": "42",
                "template": {"name": "welcome", "language": {"code": "es"}, "components": components}
            })
        );
    }

    #[test]
    fn accepted_answers_give_the_wamid() {
        let body = br#"{"messaging_product":"whatsapp","contacts":[{"input":"+1","wa_id":"1"}],
            "messages":[{"id":"wamid.X","message_status":"accepted"}]}"#;
        assert_eq!(
            parse_accepted(body),
            Some(Accepted {
                wamid: "wamid.X".into(),
                message_status: Some("accepted".into())
            })
        );
        assert_eq!(parse_accepted(br#"{"messages":[]}"#), None);
        assert_eq!(parse_accepted(br#"{"messages":[{"id":""}]}"#), None);
        assert_eq!(parse_accepted(b"not json"), None);
    }

    #[test]
    fn phone_numbers_read_both_limit_fields_and_coexistence() {
        let new = json!({"id": "1", "display_phone_number": "+1 555", "verified_name": "A",
            "quality_rating": "GREEN", "throughput": {"level": "HIGH"},
            "whatsapp_business_manager_messaging_limit": "TIER_2K"});
        let n = phone_number_from_json(&new).unwrap();
        assert_eq!(n.tier, Tier::T2000);
        assert_eq!(n.throughput, ThroughputLevel::High);

        let old = json!({"id": 2, "messaging_limit_tier": "TIER_1K", "is_on_biz_app": true,
            "throughput": {"level": "STANDARD"}});
        let n = phone_number_from_json(&old).unwrap();
        assert_eq!(n.id, "2");
        assert_eq!(n.tier, Tier::T1000);
        assert_eq!(n.throughput, ThroughputLevel::Coexistence);
        assert_eq!(n.quality_rating, "UNKNOWN");

        assert!(phone_number_from_json(&json!({"display_phone_number": "x"})).is_none());
    }
}
