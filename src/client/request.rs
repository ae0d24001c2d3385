//! The send-bulk request a CSV becomes, its `Idempotency-Key`, and the server's error bodies
//! turned into one line that names CSV lines.

use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::recipients::{Recipient, RecipientsCsv, MAX_QUOTED_PROBLEMS};

/// What `mindo-bulk send` submits (API.md, `POST send-bulk`).
#[derive(Debug, Serialize)]
pub struct SendBulkBody<'a> {
    pub phone_number_id: &'a str,
    pub template_name: &'a str,
    pub language: &'a str,
    pub recipients: &'a [Recipient],
}

impl SendBulkBody<'_> {
    /// The JSON bytes. Deterministic: struct fields in declaration order, variables in
    /// `BTreeMap` order, so the same file and options always give the same bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        // Serialising plain structs and string maps cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }
}

/// The `Idempotency-Key` of a request body: the hex SHA-256 of its bytes. Submitting the same
/// file with the same options again within the server's 24 h window answers the original send
/// instead of creating a second one; a retry after a lost response is therefore harmless.
pub fn idempotency_key(body: &[u8]) -> String {
    hex::encode(Sha256::digest(body))
}

/// An error answered by the daemon: the documented body `{"detail", "code", "errors"?}`, or
/// whatever else came back.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerError {
    pub status: u16,
    pub code: Option<String>,
    pub detail: String,
    pub errors: Vec<Value>,
    pub errors_truncated: bool,
}

impl ServerError {
    /// Reads an error response; a body that is not the documented JSON is quoted (briefly).
    pub fn from_response(status: u16, body: &[u8]) -> ServerError {
        let parsed: Option<Value> = serde_json::from_slice(body).ok();
        let detail = parsed
            .as_ref()
            .and_then(|v| v.get("detail"))
            .and_then(Value::as_str);
        match (detail, &parsed) {
            (Some(detail), Some(v)) => ServerError {
                status,
                code: v.get("code").and_then(Value::as_str).map(str::to_owned),
                detail: detail.to_owned(),
                errors: v
                    .get("errors")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default(),
                errors_truncated: v
                    .get("errors_truncated")
                    .and_then(Value::as_bool)
                    .unwrap_or(false),
            },
            _ => {
                let text = String::from_utf8_lossy(body);
                let text: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
                let text: String = text.chars().take(200).collect();
                ServerError {
                    status,
                    code: None,
                    detail: if text.is_empty() {
                        "no details in the response".to_owned()
                    } else {
                        text
                    },
                    errors: Vec::new(),
                    errors_truncated: false,
                }
            }
        }
    }

    /// One line: `HTTP 400 invalid_recipients: <detail>; line 5: phone …; line 9: …`. Per-item
    /// errors that carry an `index` name the CSV line of that recipient when `csv` is given
    /// (else the recipient's index).
    pub fn describe(&self, csv: Option<&RecipientsCsv>) -> String {
        let mut out = format!("HTTP {}", self.status);
        if let Some(code) = &self.code {
            out.push(' ');
            out.push_str(code);
        }
        out.push_str(": ");
        out.push_str(&self.detail);
        let items: Vec<String> = self
            .errors
            .iter()
            .take(MAX_QUOTED_PROBLEMS)
            .map(|e| describe_item(e, csv))
            .collect();
        if !items.is_empty() {
            out.push_str("; ");
            out.push_str(&items.join("; "));
        }
        let more = self.errors.len().saturating_sub(MAX_QUOTED_PROBLEMS);
        if more > 0 || self.errors_truncated {
            out.push_str("; and more");
        }
        if self.code.as_deref() == Some("invalid_api_key")
            || self.code.as_deref() == Some("missing_api_key")
        {
            out.push_str(" (check --api-key or MINDO_API_KEY)");
        }
        out
    }
}

/// `line 5: variables.customer_name is required` (or `recipient 3: …` without a CSV, or
/// `field reason` for errors that name no recipient).
fn describe_item(item: &Value, csv: Option<&RecipientsCsv>) -> String {
    let field = item.get("field").and_then(Value::as_str).unwrap_or("value");
    let reason = item
        .get("reason")
        .and_then(Value::as_str)
        .unwrap_or("is invalid");
    let what = match item.get("value").and_then(Value::as_str) {
        Some(value) => format!("{field} {value:?} {reason}"),
        None => format!("{field} {reason}"),
    };
    let index = item
        .get("index")
        .and_then(Value::as_u64)
        .and_then(|i| usize::try_from(i).ok());
    match (index, csv) {
        (Some(i), Some(csv)) => match csv.line_of(i) {
            Some(line) => format!("line {line}: {what}"),
            None => format!("recipient {i}: {what}"),
        },
        (Some(i), None) => format!("recipient {i}: {what}"),
        (None, _) => what,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::recipients::parse;
    use serde_json::json;

    fn csv() -> RecipientsCsv {
        parse(b"phone,customer_name\n+5491130000001,Ana\n\n+5491130000002,\n").unwrap()
    }

    #[test]
    fn the_body_is_the_documented_request() {
        let csv = csv();
        let body = SendBulkBody {
            phone_number_id: "106540352240002",
            template_name: "welcome_message",
            language: "es",
            recipients: &csv.recipients,
        };
        let value: Value = serde_json::from_slice(&body.to_bytes()).unwrap();
        assert_eq!(
            value,
            json!({
                "phone_number_id": "106540352240002",
                "template_name": "welcome_message",
                "language": "es",
                "recipients": [
                    {"phone": "+5491130000001", "variables": {"customer_name": "Ana"}},
                    {"phone": "+5491130000002", "variables": {}},
                ],
            })
        );
    }

    #[test]
    fn the_idempotency_key_is_stable_and_follows_the_content() {
        let a = csv();
        let body = |template: &'static str, csv: &RecipientsCsv| {
            SendBulkBody {
                phone_number_id: "1",
                template_name: template,
                language: "es",
                recipients: &csv.recipients,
            }
            .to_bytes()
        };
        let key = idempotency_key(&body("welcome_message", &a));
        assert_eq!(key.len(), 64);
        assert!(key.bytes().all(|b| b.is_ascii_hexdigit()));
        // Same content, parsed again (and written differently): same key.
        let again = parse(
            b"\xEF\xBB\xBFPhone ; customer_name\r\n+54 9 11 3000-0001;Ana\r\n+5491130000002;\r\n",
        )
        .unwrap();
        assert_eq!(idempotency_key(&body("welcome_message", &again)), key);
        // Other content: another key.
        assert_ne!(idempotency_key(&body("order_update", &a)), key);
        let other = parse(b"phone,customer_name\n+5491130000001,Eva\n").unwrap();
        assert_ne!(idempotency_key(&body("welcome_message", &other)), key);
        // Known value, so a change of serialisation (which would double a resubmission
        // across versions) is noticed.
        assert_eq!(
            idempotency_key(b"{}"),
            "44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
        );
    }

    #[test]
    fn invalid_recipients_name_csv_lines() {
        let body = json!({
            "detail": "2 of 2 recipients are invalid; nothing was sent (set skip_invalid to drop them)",
            "code": "invalid_recipients",
            "errors": [
                {"index": 1, "field": "variables.customer_name", "reason": "is required"},
                {"index": 0, "field": "phone", "value": "+12", "reason": "is not valid"},
            ],
        });
        let err = ServerError::from_response(400, body.to_string().as_bytes());
        assert_eq!(err.code.as_deref(), Some("invalid_recipients"));
        assert_eq!(
            err.describe(Some(&csv())),
            "HTTP 400 invalid_recipients: 2 of 2 recipients are invalid; nothing was sent (set skip_invalid to drop them); \
             line 4: variables.customer_name is required; line 2: phone \"+12\" is not valid"
        );
        assert_eq!(
            err.describe(None),
            "HTTP 400 invalid_recipients: 2 of 2 recipients are invalid; nothing was sent (set skip_invalid to drop them); \
             recipient 1: variables.customer_name is required; recipient 0: phone \"+12\" is not valid"
        );
    }

    #[test]
    fn only_the_first_items_are_quoted() {
        let errors: Vec<Value> = (0..8)
            .map(|i| json!({"index": i, "field": "phone", "reason": "is bad"}))
            .collect();
        let body = json!({"detail": "bad", "code": "invalid_recipients", "errors": errors});
        let text = ServerError::from_response(400, body.to_string().as_bytes()).describe(None);
        assert!(
            text.ends_with("recipient 4: phone is bad; and more"),
            "{text}"
        );
        assert!(!text.contains("recipient 5"));
    }

    #[test]
    fn other_errors_show_their_detail_and_code() {
        let body = json!({"detail": "template nope does not exist in language es for this number's account", "code": "template_not_found"});
        let err = ServerError::from_response(404, body.to_string().as_bytes());
        assert_eq!(
            err.describe(Some(&csv())),
            "HTTP 404 template_not_found: template nope does not exist in language es for this number's account"
        );
        let body = json!({"detail": "API Key expirada", "code": "invalid_api_key"});
        assert_eq!(
            ServerError::from_response(401, body.to_string().as_bytes()).describe(None),
            "HTTP 401 invalid_api_key: API Key expirada (check --api-key or MINDO_API_KEY)"
        );
    }

    #[test]
    fn a_body_that_is_not_the_documented_json_is_quoted_on_one_line() {
        let err = ServerError::from_response(502, b"<html>\n<body>Bad gateway</body>\n</html>");
        assert_eq!(
            err.describe(None),
            "HTTP 502: <html> <body>Bad gateway</body> </html>"
        );
        assert_eq!(
            ServerError::from_response(500, b"").describe(None),
            "HTTP 500: no details in the response"
        );
    }
}
