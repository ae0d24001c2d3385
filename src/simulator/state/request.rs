//! The send request, as Meta reads it: the validation steps listed in `state`'s table.

use super::*;
use crate::simulator::template::{
    Button, Header, Media, TemplateShape, TextParams, MAX_CONSECUTIVE_SPACES,
    MAX_COUPON_CODE_CHARS, MAX_TEXT_PARAM_CHARS,
};

/// `POST /messages` body. Strings borrow from the request where they can.
#[derive(Debug, Deserialize)]
struct SendBody<'a> {
    #[serde(borrow, default)]
    messaging_product: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    recipient_type: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    to: Option<Cow<'a, str>>,
    #[serde(borrow, default, rename = "type")]
    kind: Option<Cow<'a, str>>,
    #[serde(default)]
    biz_opaque_callback_data: Option<String>,
    #[serde(borrow, default)]
    template: Option<TemplateBody<'a>>,
}

#[derive(Debug, Deserialize)]
struct TemplateBody<'a> {
    #[serde(borrow, default)]
    name: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    language: Option<LanguageBody<'a>>,
    #[serde(borrow, default)]
    components: Vec<ComponentBody<'a>>,
}

#[derive(Debug, Deserialize)]
struct LanguageBody<'a> {
    #[serde(borrow, default)]
    code: Option<Cow<'a, str>>,
}

#[derive(Debug, Deserialize)]
struct ComponentBody<'a> {
    #[serde(borrow, default, rename = "type")]
    kind: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    sub_type: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    index: Option<IndexBody<'a>>,
    #[serde(borrow, default)]
    parameters: Vec<ParamBody<'a>>,
}

/// A button index: Meta's examples send a string, a number is accepted too.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum IndexBody<'a> {
    Number(u64),
    #[serde(borrow)]
    Text(Cow<'a, str>),
}

#[derive(Debug, Deserialize)]
struct ParamBody<'a> {
    #[serde(borrow, default, rename = "type")]
    kind: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    parameter_name: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    text: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    coupon_code: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    payload: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    image: Option<MediaBody<'a>>,
    #[serde(borrow, default)]
    video: Option<MediaBody<'a>>,
    #[serde(borrow, default)]
    document: Option<MediaBody<'a>>,
    #[serde(borrow, default)]
    currency: Option<FallbackBody<'a>>,
    #[serde(borrow, default)]
    date_time: Option<FallbackBody<'a>>,
}

#[derive(Debug, Deserialize)]
struct MediaBody<'a> {
    #[serde(borrow, default)]
    id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    link: Option<Cow<'a, str>>,
}

#[derive(Debug, Deserialize)]
struct FallbackBody<'a> {
    #[serde(borrow, default)]
    fallback_value: Option<Cow<'a, str>>,
}

fn is(value: &Option<Cow<'_, str>>, expected: &str) -> bool {
    value
        .as_deref()
        .is_some_and(|v| v.eq_ignore_ascii_case(expected))
}

fn blank(value: &Option<Cow<'_, str>>) -> bool {
    value.as_deref().is_none_or(|v| v.trim().is_empty())
}

/// A send that passed validation: what the limits and the webhook need.
#[derive(Clone, Debug)]
pub(crate) struct ValidSend {
    /// Index of the sender number in the world.
    pub number: usize,
    /// Index of its portfolio.
    pub portfolio: usize,
    /// The recipient's digits as an integer.
    pub recipient: u64,
    /// `to` as given (E.164).
    pub to: String,
    /// `biz_opaque_callback_data`, echoed in status webhooks.
    pub opaque: Option<String>,
    /// The recipient is not on WhatsApp: accepted, then `failed` 131026.
    pub undeliverable: bool,
    /// A marketing template to a user who stopped marketing messages: accepted, then
    /// `failed` 131050.
    pub marketing_stopped: bool,
    /// The template's category in lower case (status webhooks' `pricing.category`).
    pub pricing_category: Arc<str>,
    /// The number's mps at validation time.
    pub mps: u32,
    /// The portfolio's unique-recipient limit at validation time; `None` = unlimited.
    pub tier_limit: Option<u32>,
}

/// Reads the `Authorization: Bearer <token>` value (`OAuth <token>` too, as the Graph API does).
pub(crate) fn bearer(header: Option<&str>) -> Option<&str> {
    let header = header?.trim();
    let (scheme, token) = header.split_once(' ')?;
    (scheme.eq_ignore_ascii_case("bearer") || scheme.eq_ignore_ascii_case("oauth"))
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// Token check for an object: 190 when the token is missing or not the owning WABA's, 100 when
/// the object does not exist (for a known token).
pub(crate) fn authorize(
    world: &World,
    method: &str,
    id: &str,
    token: Option<&str>,
) -> Result<crate::simulator::world::Node, SimError> {
    let Some(token) = token else {
        return Err(SimError::bad_token());
    };
    match world.node(id) {
        Some(node) => {
            if world.wabas[world.owner(node)].access_token == token {
                Ok(node)
            } else {
                Err(SimError::bad_token())
            }
        }
        None if world.tokens.contains(token) => Err(SimError::unknown_object(method, id)),
        None => Err(SimError::bad_token()),
    }
}

/// Validates a send request in Meta's order (see the module doc).
pub(crate) fn validate_send(
    world: &World,
    phone_number_id: &str,
    token: Option<&str>,
    body: &[u8],
) -> Result<ValidSend, SimError> {
    let number = match authorize(world, "post", phone_number_id, token)? {
        crate::simulator::world::Node::Number(i) => i,
        _ => return Err(SimError::unknown_object("post", phone_number_id)),
    };
    let request: SendBody<'_> = serde_json::from_slice(body).map_err(|e| {
        SimError::invalid_parameter(format!("The request body is not valid JSON: {e}"))
    })?;
    match request.messaging_product.as_deref() {
        None => return Err(SimError::required("messaging_product")),
        Some(p) if p.eq_ignore_ascii_case("whatsapp") => {}
        Some(_) => {
            return Err(SimError::invalid_parameter(
                "Param messaging_product must be \"whatsapp\"",
            ))
        }
    }
    if request.recipient_type.is_some() && !is(&request.recipient_type, "individual") {
        return Err(SimError::invalid_value(
            "recipient_type must be \"individual\" (group sends are not simulated)",
        ));
    }
    if !is(&request.kind, "template") {
        return Err(SimError::invalid_value(
            "type must be \"template\": the simulator accepts template messages only",
        ));
    }
    let Some(to) = request.to.as_deref() else {
        return Err(SimError::required("to"));
    };
    let Some(recipient) = recipient_key(to) else {
        return Err(SimError::invalid_value(
            "Invalid 'to': expected E.164 with a leading '+' (e.g. +16505551234)",
        ));
    };
    let sender = &world.numbers[number];
    if to[1..] == sender.display_digits {
        return Err(SimError::recipient_is_sender());
    }
    let Some(template) = request.template.as_ref() else {
        return Err(SimError::required("template"));
    };
    let Some(name) = template.name.as_deref() else {
        return Err(SimError::required("template['name']"));
    };
    let Some(language) = template.language.as_ref().and_then(|l| l.code.as_deref()) else {
        return Err(SimError::required("template['language']['code']"));
    };
    let Some(t) = world.template(sender.waba, name, language) else {
        return Err(SimError::template_not_found(name, language));
    };
    let t = &world.templates[t];
    match t.status.as_str() {
        "APPROVED" => {}
        "PAUSED" => return Err(SimError::template_paused()),
        "DISABLED" => return Err(SimError::template_disabled()),
        _ => return Err(SimError::template_not_found(name, language)),
    }
    check_components(&t.shape, &template.components)?;
    let portfolio = world.portfolio_of(number);
    Ok(ValidSend {
        number,
        portfolio,
        recipient,
        to: to.to_owned(),
        opaque: request.biz_opaque_callback_data,
        undeliverable: world.undeliverable.contains(&recipient),
        marketing_stopped: &*t.pricing_category == "marketing"
            && world.marketing_stopped.contains(&recipient),
        pricing_category: t.pricing_category.clone(),
        mps: sender.mps(),
        tier_limit: world.portfolios[portfolio].tier.limit(),
    })
}

/// Checks `template.components` against what the template expects.
fn check_components(
    shape: &TemplateShape,
    components: &[ComponentBody<'_>],
) -> Result<(), SimError> {
    let mut header = None;
    let mut body = None;
    let mut buttons: Vec<(usize, &ComponentBody<'_>)> = Vec::new();
    for component in components {
        let slot = if is(&component.kind, "header") {
            &mut header
        } else if is(&component.kind, "body") {
            &mut body
        } else if is(&component.kind, "button") {
            let index = match &component.index {
                None => return Err(SimError::required("template['components'][]['index']")),
                Some(IndexBody::Number(n)) => usize::try_from(*n).ok(),
                Some(IndexBody::Text(text)) => text.trim().parse::<usize>().ok(),
            };
            let Some(index) = index.filter(|&i| i < shape.buttons.len()) else {
                return Err(SimError::invalid_value(
                    "Button index is not a button position of the template",
                ));
            };
            if buttons.iter().any(|(i, _)| *i == index) {
                return Err(SimError::invalid_parameter(
                    "Two button components have the same index",
                ));
            }
            buttons.push((index, component));
            continue;
        } else {
            return Err(SimError::invalid_parameter(
                "Component type must be header, body or button",
            ));
        };
        if slot.replace(component).is_some() {
            return Err(SimError::invalid_parameter(
                "A component type appears twice in template['components']",
            ));
        }
    }

    let header_params: &[ParamBody<'_>] = header.map_or(&[], |c| &c.parameters);
    match &shape.header {
        Header::Nothing => {
            if !header_params.is_empty() {
                return Err(SimError::param_count("header", header_params.len(), 0));
            }
        }
        Header::Text(expected) => check_text_params("header", expected, header_params, true)?,
        Header::Media(media) => check_media_param(*media, header_params)?,
    }

    let body_params: &[ParamBody<'_>] = body.map_or(&[], |c| &c.parameters);
    check_text_params("body", &shape.body, body_params, false)?;

    for (index, button) in shape.buttons.iter().enumerate() {
        match buttons.iter().find(|(i, _)| *i == index) {
            None if button.is_required() => {
                return Err(SimError::missing_parameter(format!(
                    "buttons: Button at index {index} of type {} requires a parameter",
                    button.meta_type()
                )))
            }
            None => {}
            Some((_, component)) => check_button(index, button, component)?,
        }
    }
    Ok(())
}

/// A media header's one parameter: of the header's media type, with an id or a link.
fn check_media_param(media: Media, given: &[ParamBody<'_>]) -> Result<(), SimError> {
    let [param] = given else {
        return Err(SimError::param_count("header", given.len(), 1));
    };
    let wanted = media.parameter_type();
    if !is(&param.kind, wanted) {
        return Err(SimError::format_mismatch(format!(
            "header: the template's header is {}, the parameter must be of type {wanted}",
            wanted.to_ascii_uppercase()
        )));
    }
    let source = match media {
        Media::Image => &param.image,
        Media::Video => &param.video,
        Media::Document => &param.document,
    };
    if source
        .as_ref()
        .is_none_or(|m| blank(&m.id) && blank(&m.link))
    {
        return Err(SimError::missing_parameter(format!(
            "header: Parameter of type {wanted} is missing an id or a link"
        )));
    }
    Ok(())
}

fn check_text_params(
    component: &str,
    expected: &TextParams,
    given: &[ParamBody<'_>],
    header: bool,
) -> Result<(), SimError> {
    if given.len() != expected.count() {
        return Err(SimError::param_count(
            component,
            given.len(),
            expected.count(),
        ));
    }
    for (i, param) in given.iter().enumerate() {
        let kind = param.kind.as_deref().unwrap_or("");
        if kind.eq_ignore_ascii_case("text") {
            let Some(text) = param.text.as_deref().filter(|t| !t.trim().is_empty()) else {
                return Err(SimError::missing_parameter(format!(
                    "{component}: Parameter of type text is missing text value"
                )));
            };
            check_text_value(text)?;
        } else if !header
            && (kind.eq_ignore_ascii_case("currency") || kind.eq_ignore_ascii_case("date_time"))
        {
            let fallback = if kind.eq_ignore_ascii_case("currency") {
                param.currency.as_ref()
            } else {
                param.date_time.as_ref()
            };
            if fallback.is_none_or(|f| blank(&f.fallback_value)) {
                return Err(SimError::missing_parameter(format!(
                    "{component}: Parameter of type {kind} is missing fallback_value"
                )));
            }
        } else {
            return Err(SimError::format_mismatch(format!(
                "{component}: parameter {} has type {kind:?}; the template expects text",
                i + 1
            )));
        }
        match expected {
            TextParams::Named(names) => {
                let Some(name) = param.parameter_name.as_deref().filter(|n| !n.is_empty()) else {
                    return Err(SimError::invalid_parameter(format!(
                        "{component}: parameter_name is required in a template with named \
                         parameters"
                    )));
                };
                if !names.contains(name) {
                    return Err(SimError::invalid_parameter(format!(
                        "{component}: the template has no parameter named '{name}'"
                    )));
                }
                if given[..i]
                    .iter()
                    .any(|p| p.parameter_name.as_deref() == Some(name))
                {
                    return Err(SimError::invalid_parameter(format!(
                        "{component}: parameter '{name}' is given twice"
                    )));
                }
            }
            TextParams::Positional(_) => {
                if param.parameter_name.is_some() {
                    return Err(SimError::invalid_parameter(format!(
                        "{component}: parameter_name is only allowed in a template with named \
                         parameters"
                    )));
                }
            }
        }
    }
    Ok(())
}

/// Meta's rules for parameter text: no new-line or tab, at most 4 spaces in a row, at most 1 024
/// characters.
fn check_text_value(text: &str) -> Result<(), SimError> {
    let mut chars = 0usize;
    let mut spaces = 0usize;
    for c in text.chars() {
        chars += 1;
        match c {
            '\n' | '\r' | '\t' => spaces = usize::MAX,
            ' ' => spaces = spaces.saturating_add(1),
            _ => spaces = 0,
        }
        if spaces > MAX_CONSECUTIVE_SPACES {
            return Err(SimError::invalid_parameter(
                "Param text cannot have new-line/tab characters or more than 4 consecutive spaces",
            ));
        }
    }
    if chars > MAX_TEXT_PARAM_CHARS {
        return Err(SimError::invalid_value(format!(
            "Param text is {chars} characters long; the maximum is {MAX_TEXT_PARAM_CHARS}"
        )));
    }
    Ok(())
}

fn check_button(
    index: usize,
    button: &Button,
    component: &ComponentBody<'_>,
) -> Result<(), SimError> {
    let Some(sub_type) = component.sub_type.as_deref() else {
        return Err(SimError::required("template['components'][]['sub_type']"));
    };
    if let Some(expected) = button.sub_type() {
        if !sub_type.eq_ignore_ascii_case(expected) {
            return Err(SimError::invalid_value(format!(
                "Button at index {index} is a {} button: sub_type must be {expected}",
                button.meta_type()
            )));
        }
    }
    let params = &component.parameters;
    let component_name = "buttons";
    match button {
        Button::UrlSuffix | Button::OneTimeCode => {
            let [param] = params.as_slice() else {
                return Err(SimError::param_count(component_name, params.len(), 1));
            };
            if !is(&param.kind, "text") {
                return Err(SimError::format_mismatch(format!(
                    "buttons: Button at index {index} takes a parameter of type text"
                )));
            }
            let Some(text) = param.text.as_deref().filter(|t| !t.trim().is_empty()) else {
                return Err(SimError::missing_parameter(format!(
                    "buttons: Button at index {index} of type URL requires a parameter"
                )));
            };
            check_text_value(text)?;
        }
        Button::CouponCode => {
            let [param] = params.as_slice() else {
                return Err(SimError::param_count(component_name, params.len(), 1));
            };
            if !is(&param.kind, "coupon_code") {
                return Err(SimError::format_mismatch(format!(
                    "buttons: Button at index {index} takes a parameter of type coupon_code"
                )));
            }
            let code = param.coupon_code.as_deref().unwrap_or("");
            if code.trim().is_empty() {
                return Err(SimError::missing_parameter(format!(
                    "buttons: Button at index {index} of type COPY_CODE requires a parameter"
                )));
            }
            if code.chars().count() > MAX_COUPON_CODE_CHARS {
                return Err(SimError::invalid_value(format!(
                    "coupon_code is longer than {MAX_COUPON_CODE_CHARS} characters"
                )));
            }
        }
        Button::QuickReply => {
            if params.len() > 1 {
                return Err(SimError::param_count(component_name, params.len(), 1));
            }
            if let Some(param) = params.first() {
                if !is(&param.kind, "payload") {
                    return Err(SimError::format_mismatch(
                        "buttons: a quick_reply button takes a parameter of type payload",
                    ));
                }
                if blank(&param.payload) {
                    return Err(SimError::missing_parameter(
                        "buttons: Parameter of type payload is missing payload value",
                    ));
                }
            }
        }
        Button::FixedUrl | Button::PhoneNumber => {
            if !params.is_empty() {
                return Err(SimError::param_count(component_name, params.len(), 0));
            }
        }
        Button::Unchecked(_) => {}
    }
    Ok(())
}
