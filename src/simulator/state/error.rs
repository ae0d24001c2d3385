//! Meta's error answers, as the simulator gives them: the code, the HTTP status, the message
//! and `error_data.details` of each refusal.

use super::*;

/// One refusal, in Meta's error shape.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SimError {
    /// The HTTP status of the answer.
    pub http_status: u16,
    /// Meta's `error.code`.
    pub code: i64,
    /// Meta's `error.error_subcode`, when Meta gives one.
    pub subcode: Option<i64>,
    /// `error.type`: `OAuthException` (nearly everything) or `GraphMethodException`.
    pub kind: &'static str,
    /// `error.message`, e.g. `(#130429) Rate limit hit`.
    pub message: Cow<'static, str>,
    /// `error.error_data.details`.
    pub details: Cow<'static, str>,
}

impl SimError {
    fn new(
        http_status: u16,
        code: i64,
        message: impl Into<Cow<'static, str>>,
        details: impl Into<Cow<'static, str>>,
    ) -> SimError {
        SimError {
            http_status,
            code,
            subcode: None,
            kind: "OAuthException",
            message: message.into(),
            details: details.into(),
        }
    }

    /// 190, HTTP 401.
    pub fn bad_token() -> SimError {
        SimError::new(
            401,
            190,
            "(#190) Error validating access token",
            "Invalid OAuth access token - Cannot parse access token",
        )
    }

    /// 100 (subcode 33), HTTP 400: the object does not exist. `method` is `post` or `get`.
    pub fn unknown_object(method: &str, id: &str) -> SimError {
        SimError {
            subcode: Some(33),
            kind: "GraphMethodException",
            ..SimError::new(
                400,
                100,
                format!(
                    "Unsupported {method} request. Object with ID '{id}' does not exist, cannot be \
                     loaded due to missing permissions, or does not support this operation. \
                     Please read the Graph API documentation at \
                     https://developers.facebook.com/docs/graph-api"
                ),
                "",
            )
        }
    }

    /// 2500, HTTP 400: a path the Graph API does not have.
    pub fn unknown_path(path: &str) -> SimError {
        SimError::new(
            400,
            2500,
            format!("Unknown path components: {path}"),
            // A Graph-level error: no WhatsApp `error_data`.
            "",
        )
    }

    /// 100, HTTP 400, `(#100) Invalid parameter`.
    pub fn invalid_parameter(details: impl Into<Cow<'static, str>>) -> SimError {
        SimError::new(400, 100, "(#100) Invalid parameter", details)
    }

    /// 100, HTTP 400, `(#100) The parameter X is required.`
    pub fn required(parameter: &str) -> SimError {
        SimError::new(
            400,
            100,
            format!("(#100) The parameter {parameter} is required."),
            format!("The parameter {parameter} is required."),
        )
    }

    /// 100, HTTP 400: `fields=` names a field the node does not have.
    pub fn nonexisting_field(field: &str, node_type: &str) -> SimError {
        SimError::new(
            400,
            100,
            format!(
                "(#100) Tried accessing nonexisting field ({field}) on node type ({node_type})"
            ),
            "",
        )
    }

    /// 131009, HTTP 400.
    pub fn invalid_value(details: impl Into<Cow<'static, str>>) -> SimError {
        SimError::new(
            400,
            131_009,
            "(#131009) Parameter value is not valid",
            details,
        )
    }

    /// 131008, HTTP 400.
    pub fn missing_parameter(details: impl Into<Cow<'static, str>>) -> SimError {
        SimError::new(
            400,
            131_008,
            "(#131008) Required parameter is missing",
            details,
        )
    }

    /// 132000, HTTP 400.
    pub fn param_count(component: &str, given: usize, expected: usize) -> SimError {
        SimError::new(
            400,
            132_000,
            "(#132000) Number of parameters does not match the expected number of params",
            format!(
                "{component}: number of localizable_params ({given}) does not match the expected \
                 number of params ({expected})"
            ),
        )
    }

    /// 132012, HTTP 400.
    pub fn format_mismatch(details: impl Into<Cow<'static, str>>) -> SimError {
        SimError::new(
            400,
            132_012,
            "(#132012) Parameter format does not match format in the created template",
            details,
        )
    }

    /// 132001, HTTP 404.
    pub fn template_not_found(name: &str, language: &str) -> SimError {
        SimError::new(
            404,
            132_001,
            "(#132001) Template name does not exist in the translation",
            format!("template name ({name}) does not exist in {language}"),
        )
    }

    /// 132015, HTTP 400.
    pub fn template_paused() -> SimError {
        SimError::new(
            400,
            132_015,
            "(#132015) Template is Paused",
            "Template is paused due to low quality so it cannot be sent in a template message.",
        )
    }

    /// 132016, HTTP 400.
    pub fn template_disabled() -> SimError {
        SimError::new(
            400,
            132_016,
            "(#132016) Template is Disabled",
            "Template has been paused too many times due to low quality and is now permanently \
             disabled.",
        )
    }

    /// 131021, HTTP 400.
    pub fn recipient_is_sender() -> SimError {
        SimError::new(
            400,
            131_021,
            "(#131021) Recipient cannot be sender",
            "Sender and recipient phone number is the same.",
        )
    }

    /// 130429, HTTP 400.
    pub fn throughput() -> SimError {
        SimError::new(
            400,
            130_429,
            "(#130429) Rate limit hit",
            "Cloud API message throughput has been reached.",
        )
    }

    /// 131056, HTTP 400.
    pub fn pair_rate() -> SimError {
        SimError::new(
            400,
            131_056,
            "(#131056) (Business Account, Consumer Account) pair rate limit hit",
            "Message failed to send because there were too many messages sent from this phone \
             number to the same phone number in a short period of time.",
        )
    }

    /// 131048, HTTP 400.
    pub fn messaging_limit() -> SimError {
        SimError::new(
            400,
            131_048,
            "(#131048) Spam rate limit hit",
            "Message failed to send because there are restrictions on how many messages can be \
             sent from this phone number. The business portfolio has reached its messaging limit \
             of unique recipients in a moving 24 hour window.",
        )
    }

    /// A simulated server fault: HTTP 500 with 131000 or 1.
    pub fn server_fault(code: i64) -> SimError {
        if code == 1 {
            SimError::new(
                500,
                1,
                "(#1) An unknown error occurred",
                "An unknown error occurred",
            )
        } else {
            SimError::new(
                500,
                131_000,
                "(#131000) Something went wrong",
                "Something went wrong",
            )
        }
    }

    /// Meta's error body, with a trace id.
    pub fn body(&self, fbtrace_id: &str) -> Vec<u8> {
        #[derive(Serialize)]
        struct Body<'a> {
            error: Inner<'a>,
        }
        #[derive(Serialize)]
        struct Inner<'a> {
            message: &'a str,
            #[serde(rename = "type")]
            kind: &'a str,
            code: i64,
            #[serde(skip_serializing_if = "Option::is_none")]
            error_subcode: Option<i64>,
            #[serde(skip_serializing_if = "Option::is_none")]
            error_data: Option<Data<'a>>,
            fbtrace_id: &'a str,
        }
        #[derive(Serialize)]
        struct Data<'a> {
            messaging_product: &'static str,
            details: &'a str,
        }
        let body = Body {
            error: Inner {
                message: &self.message,
                kind: self.kind,
                code: self.code,
                error_subcode: self.subcode,
                error_data: (!self.details.is_empty()).then_some(Data {
                    messaging_product: "whatsapp",
                    details: &self.details,
                }),
                fbtrace_id,
            },
        };
        serde_json::to_vec(&body).unwrap_or_default()
    }
}
