//! What a WhatsApp template needs at send time, and how a recipient's values become Meta's
//! `template.components`.
//!
//! A template is read once from Meta (`GET /{waba-id}/message_templates`, META.md §6) and turned
//! into a [`TemplateSpec`] by [`TemplateSpec::from_meta`]. The spec then answers three questions
//! for every recipient of a bulk send:
//! - which keys must a recipient supply ([`TemplateSpec::expected_variables`],
//!   [`TemplateSpec::expected_button_variables`], [`TemplateSpec::variables_info`]);
//! - are the supplied values acceptable, to Meta and to us ([`TemplateSpec::validate`]), so a bad
//!   row is rejected at the API instead of failing at Meta later;
//! - what `components` array goes in the send request ([`TemplateSpec::render`], META.md §1).
//!
//! The types and the keys live in `mod.rs`; `read.rs` reads Meta's JSON
//! ([`TemplateSpec::from_meta`]), `values.rs` checks a recipient's values
//! ([`TemplateSpec::validate`]) and `render.rs` builds the components ([`TemplateSpec::render`]).
//!
//! # Keys a recipient supplies (public API contract)
//! `variables` (string → string):
//! - NAMED templates: the placeholder names of the header text and the body (`{{first_name}}` →
//!   key `first_name`). A name used in both header and body is a single key whose value fills both.
//! - POSITIONAL templates: body placeholders `{{1}}`, `{{2}}`, … → keys `"1"`, `"2"`, …; a
//!   placeholder `{{1}}` in the *header* text → key `"header_1"` (our extension: Meta numbers header
//!   and body placeholders separately, so the header needs its own keys).
//! - A media header (IMAGE, VIDEO or DOCUMENT) → key `"header_media"`: an `https://` link or a Meta
//!   media id (digits). Sent as `{"link": …}` or `{"id": …}` respectively.
//!
//! `button_variables` (string → string): `"button_N"` for each *dynamic* button, N being the
//! 0-based position of the button in the template's BUTTONS component:
//! - a URL button whose `url` contains a placeholder: the value fills the placeholder (Meta allows
//!   one variable per URL; several placeholders in one URL still take one value);
//! - a COPY_CODE button: the coupon code (at most [`MAX_COUPON_CODE_CHARS`] characters);
//! - an OTP button (authentication templates): the one-time code, sent as a `url` button as Meta
//!   requires.
//!
//! Other buttons (QUICK_REPLY, PHONE_NUMBER, static URL, FLOW, ...) take no value: a key for them is
//! reported as unknown.
//!
//! # Reading Meta's JSON
//! Lenient where it can be: unknown component types (FOOTER, CAROUSEL, LIMITED_TIME_OFFER, ...),
//! unknown fields, non-object entries and unknown button types are ignored; only the first HEADER,
//! BODY and BUTTONS components are read. A HEADER without `format` but with `text` is a text header;
//! LOCATION or unknown header formats need nothing. Strict where a mistake would make every send
//! fail or go out wrong: see [`TemplateError`]. In particular every `{{` in header/body text or a
//! button URL must open a well-formed placeholder: `{{name}}` (lowercase ASCII letters, digits,
//! underscore) or `{{N}}` (a number from 1, no leading zero, no spaces inside the braces).
//!
//! Positional numbering: the keys are the numbers that appear, sorted numerically and
//! deduplicated, and rendered in that order (`{{2}} … {{1}}` still sends the value of `"1"`
//! first). Gaps (`{{1}}` and `{{3}}` only) are not an error: Meta does not approve such templates,
//! so we simply expect the numbers that are there.
//!
//! When `parameter_format` is absent the template is POSITIONAL (Meta's default), except that a
//! template whose placeholders are all named is taken as NAMED, since Meta only approves named
//! placeholders in NAMED templates.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::hash::BuildHasher;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

mod read;
mod render;
mod values;

/// Longest text parameter value Meta accepts, in characters (not bytes).
pub const MAX_TEXT_PARAM_CHARS: usize = 1024;
/// Longest run of consecutive spaces Meta accepts inside a text parameter value.
pub const MAX_CONSECUTIVE_SPACES: usize = 4;
/// Longest coupon code a COPY_CODE button accepts, in characters.
pub const MAX_COUPON_CODE_CHARS: usize = 15;
/// The `variables` key holding a media header's link or media id.
pub const HEADER_MEDIA_KEY: &str = "header_media";
/// Prefix of the `variables` key of a positional header text parameter (`header_1`).
const POSITIONAL_HEADER_KEY_PREFIX: &str = "header_";
/// Prefix of the `button_variables` keys (`button_0`).
const BUTTON_KEY_PREFIX: &str = "button_";
/// How much of an offending template text an error message quotes.
const SNIPPET_CHARS: usize = 40;
/// How much of an unknown key a problem's reason quotes.
const KEY_QUOTE_CHARS: usize = 64;

/// How a template's placeholders are written, as Meta's `parameter_format` says.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum ParameterFormat {
    /// `{{first_name}}`: parameters are sent with `parameter_name`, in any order.
    Named,
    /// `{{1}}`, `{{2}}`: parameters are sent without a name, in numeric order. Meta's default.
    #[default]
    Positional,
}

impl ParameterFormat {
    /// Meta's spelling: `"NAMED"` or `"POSITIONAL"`.
    pub fn as_str(self) -> &'static str {
        match self {
            ParameterFormat::Named => "NAMED",
            ParameterFormat::Positional => "POSITIONAL",
        }
    }

    /// Reads Meta's optional `parameter_format` field: case-insensitive, absent means POSITIONAL.
    pub fn from_meta(value: Option<&str>) -> Result<ParameterFormat, TemplateError> {
        value.map_or(Ok(ParameterFormat::Positional), str::parse)
    }
}

impl FromStr for ParameterFormat {
    type Err = TemplateError;

    /// `"NAMED"` or `"POSITIONAL"`, any case, surrounding whitespace ignored.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if s.eq_ignore_ascii_case("NAMED") {
            Ok(ParameterFormat::Named)
        } else if s.eq_ignore_ascii_case("POSITIONAL") {
            Ok(ParameterFormat::Positional)
        } else {
            Err(TemplateError::UnknownParameterFormat(snippet(s)))
        }
    }
}

impl fmt::Display for ParameterFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The kind of media a media header carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum MediaKind {
    /// `format: IMAGE`.
    Image,
    /// `format: VIDEO`.
    Video,
    /// `format: DOCUMENT`.
    Document,
}

impl MediaKind {
    /// The parameter `type` (and object key) Meta expects at send time: `image`, `video`,
    /// `document`.
    pub fn parameter_type(self) -> &'static str {
        match self {
            MediaKind::Image => "image",
            MediaKind::Video => "video",
            MediaKind::Document => "document",
        }
    }

    fn from_header_format(format: &str) -> Option<MediaKind> {
        if format.eq_ignore_ascii_case("IMAGE") {
            Some(MediaKind::Image)
        } else if format.eq_ignore_ascii_case("VIDEO") {
            Some(MediaKind::Video)
        } else if format.eq_ignore_ascii_case("DOCUMENT") {
            Some(MediaKind::Document)
        } else {
            None
        }
    }
}

/// What the template's header needs per send. A header that needs nothing (static text, LOCATION,
/// none at all) is represented by `TemplateSpec::header == None`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum HeaderSpec {
    /// A TEXT header with placeholders. `params` are the placeholder names (`"first_name"`) or
    /// numbers (`"1"`), in sending order; see [`TemplateSpec::expected_variables`] for their keys.
    Text {
        /// Placeholder names or numbers, deduplicated, in sending order.
        params: Vec<String>,
    },
    /// An IMAGE, VIDEO or DOCUMENT header: one link or media id per send (key `header_media`).
    Media {
        /// Which kind of media.
        media: MediaKind,
    },
}

/// A button's `type` as Meta gives it. Serialises as Meta's upper-case string.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(from = "String", into = "String")]
pub enum ButtonKind {
    /// `URL`: dynamic when its `url` contains a placeholder.
    Url,
    /// `COPY_CODE`: always dynamic, takes the coupon code.
    CopyCode,
    /// `OTP` (authentication templates): always dynamic, takes the code; sent as a `url` button.
    Otp,
    /// `QUICK_REPLY`: static.
    QuickReply,
    /// `PHONE_NUMBER`: static.
    PhoneNumber,
    /// Anything else (`FLOW`, `CATALOG`, `MPM`, `VOICE_CALL`, ...), upper-cased; treated as static.
    Other(String),
}

impl ButtonKind {
    /// Meta's upper-case name of the button type.
    pub fn as_str(&self) -> &str {
        match self {
            ButtonKind::Url => "URL",
            ButtonKind::CopyCode => "COPY_CODE",
            ButtonKind::Otp => "OTP",
            ButtonKind::QuickReply => "QUICK_REPLY",
            ButtonKind::PhoneNumber => "PHONE_NUMBER",
            ButtonKind::Other(name) => name,
        }
    }

    fn from_meta(name: &str) -> ButtonKind {
        let upper = name.trim().to_ascii_uppercase();
        match upper.as_str() {
            "URL" => ButtonKind::Url,
            "COPY_CODE" => ButtonKind::CopyCode,
            "OTP" => ButtonKind::Otp,
            "QUICK_REPLY" => ButtonKind::QuickReply,
            "PHONE_NUMBER" => ButtonKind::PhoneNumber,
            _ => ButtonKind::Other(upper),
        }
    }
}

impl From<String> for ButtonKind {
    fn from(value: String) -> Self {
        ButtonKind::from_meta(&value)
    }
}

impl From<ButtonKind> for String {
    fn from(kind: ButtonKind) -> Self {
        match kind {
            ButtonKind::Other(name) => name,
            known => known.as_str().to_owned(),
        }
    }
}

/// One button of the template's BUTTONS component.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ButtonSpec {
    /// 0-based position in the BUTTONS component: Meta's `index` and our `button_N` key.
    pub index: usize,
    /// The button's type.
    pub kind: ButtonKind,
    /// Whether each send must supply a value for it (`button_variables.button_N`).
    pub dynamic: bool,
}

/// Everything a send needs to know about one approved template, derived from Meta's JSON.
///
/// Built by [`TemplateSpec::from_meta`]; serialisable so it can be stored next to the template.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TemplateSpec {
    /// NAMED or POSITIONAL placeholders in header and body.
    pub parameter_format: ParameterFormat,
    /// What the header needs per send; `None` when it needs nothing.
    pub header: Option<HeaderSpec>,
    /// Body placeholder names (NAMED, in order of first appearance) or numbers as strings
    /// (POSITIONAL, sorted numerically); deduplicated.
    pub body_params: Vec<String>,
    /// Every button, dynamic or not, in template order.
    pub buttons: Vec<ButtonSpec>,
}

/// Why a template from Meta cannot be used for sending.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    /// `components` is not a JSON array.
    #[error("template components are not a JSON array")]
    ComponentsNotArray,
    /// `parameter_format` is neither NAMED nor POSITIONAL.
    #[error("unknown parameter_format '{0}' (expected NAMED or POSITIONAL)")]
    UnknownParameterFormat(String),
    /// A `{{` without a closing `}}`.
    #[error("{component} has a placeholder that is never closed: '{snippet}'")]
    UnclosedPlaceholder {
        /// Where: `HEADER`, `BODY` or `BUTTONS[i].url`.
        component: String,
        /// The text from the `{{` on, shortened.
        snippet: String,
    },
    /// `{{ }}`, `{{First Name}}`, `{{01}}`, ...
    #[error("{component} has a malformed placeholder '{snippet}': {problem}")]
    MalformedPlaceholder {
        /// Where: `HEADER`, `BODY` or `BUTTONS[i].url`.
        component: String,
        /// The placeholder as written, shortened.
        snippet: String,
        /// What is wrong with it.
        problem: &'static str,
    },
    /// A named placeholder in a POSITIONAL template, or a numbered one in a NAMED template.
    #[error(
        "{component} has the placeholder '{placeholder}', which a {format} template cannot have"
    )]
    FormatMismatch {
        /// Where: `HEADER` or `BODY`.
        component: String,
        /// The placeholder as written, e.g. `{{1}}`.
        placeholder: String,
        /// The template's parameter format.
        format: ParameterFormat,
    },
    /// A NAMED template with a media header and a text parameter called `header_media`: both
    /// would need the same `variables` key.
    #[error("the parameter name '{HEADER_MEDIA_KEY}' is reserved for the media header")]
    ReservedName,
}

/// One problem with one recipient's values, for the `errors` list of an API error body.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct VariableProblem {
    /// Which value: `variables.<key>` or `button_variables.<key>`.
    pub field: String,
    /// What is wrong, starting with a one-word verdict (`missing:`, `unknown:`, `empty:`,
    /// `invalid:`, `too long:`).
    pub reason: String,
}

/// Whether a variable is text or a media reference, as the business-accounts endpoint lists it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum VariableKind {
    /// A text value (header/body text, URL suffix, coupon or OTP code).
    Text,
    /// A link or Meta media id for a media header.
    Media,
}

/// Which part of the template a variable fills.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum VariableComponent {
    /// The header (text parameter or media).
    Header,
    /// The body.
    Body,
    /// A dynamic button.
    Button,
}

/// One variable of a template as `GET /api/v1/business-accounts/` lists it (camelCase).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct VariableInfo {
    /// The key the recipient supplies (`first_name`, `"1"`, `header_1`, `header_media`,
    /// `button_0`).
    pub name: String,
    /// TEXT or MEDIA, serialised as `type`.
    #[serde(rename = "type")]
    pub kind: VariableKind,
    /// 1-based position within its component: the parameter's order in the header or body, or
    /// the button's position (index + 1) for buttons.
    pub position: usize,
    /// Always true: Meta rejects a send with a parameter missing.
    pub is_required: bool,
    /// HEADER, BODY or BUTTON.
    pub component: VariableComponent,
}

/// Read access to a recipient's `variables` or `button_variables`, so validation and rendering
/// work on whichever map the caller deserialised into.
pub trait ParameterValues {
    /// The value supplied for `key`, if any.
    fn value(&self, key: &str) -> Option<&str>;
    /// Every key supplied, in any order.
    fn keys(&self) -> impl Iterator<Item = &str>;
}

impl ParameterValues for BTreeMap<String, String> {
    fn value(&self, key: &str) -> Option<&str> {
        self.get(key).map(String::as_str)
    }

    fn keys(&self) -> impl Iterator<Item = &str> {
        BTreeMap::keys(self).map(String::as_str)
    }
}

impl<S: BuildHasher> ParameterValues for HashMap<String, String, S> {
    fn value(&self, key: &str) -> Option<&str> {
        self.get(key).map(String::as_str)
    }

    fn keys(&self) -> impl Iterator<Item = &str> {
        HashMap::keys(self).map(String::as_str)
    }
}

/// What a value must look like, per slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ValueRule {
    /// Header/body text or a URL suffix.
    Text,
    /// `header_media`: an https link or a media id.
    Media,
    /// A COPY_CODE coupon: text, at most [`MAX_COUPON_CODE_CHARS`].
    Coupon,
}

impl TemplateSpec {
    /// The `variables` keys a recipient must supply, each once: header first (`header_media`, or
    /// the header text keys), then body keys in sending order.
    pub fn expected_variables(&self) -> Vec<String> {
        self.variable_slots()
            .into_iter()
            .map(|(key, _)| key.into_owned())
            .collect()
    }

    /// The `button_variables` keys a recipient must supply (`button_N` for each dynamic button),
    /// in button order.
    pub fn expected_button_variables(&self) -> Vec<String> {
        self.dynamic_buttons().map(button_key).collect()
    }

    /// The template's variables for `GET /api/v1/business-accounts/`: header, body, then dynamic
    /// buttons. A NAMED parameter used in both header and body is listed once, under HEADER.
    pub fn variables_info(&self) -> Vec<VariableInfo> {
        let mut out = Vec::new();
        match &self.header {
            Some(HeaderSpec::Text { params }) => {
                for (i, name) in params.iter().enumerate() {
                    out.push(VariableInfo {
                        name: self.header_text_key(name).into_owned(),
                        kind: VariableKind::Text,
                        position: i + 1,
                        is_required: true,
                        component: VariableComponent::Header,
                    });
                }
            }
            Some(HeaderSpec::Media { .. }) => out.push(VariableInfo {
                name: HEADER_MEDIA_KEY.to_owned(),
                kind: VariableKind::Media,
                position: 1,
                is_required: true,
                component: VariableComponent::Header,
            }),
            None => {}
        }
        for (i, name) in self.body_params.iter().enumerate() {
            if self.is_header_text_key(name) {
                continue;
            }
            out.push(VariableInfo {
                name: name.clone(),
                kind: VariableKind::Text,
                position: i + 1,
                is_required: true,
                component: VariableComponent::Body,
            });
        }
        for button in self.dynamic_buttons() {
            out.push(VariableInfo {
                name: button_key(button),
                kind: VariableKind::Text,
                position: button.index.saturating_add(1),
                is_required: true,
                component: VariableComponent::Button,
            });
        }
        out
    }

    /// The `variables` key of a header text placeholder: the name itself (NAMED) or
    /// `header_<n>` (POSITIONAL).
    fn header_text_key<'a>(&self, name: &'a str) -> Cow<'a, str> {
        match self.parameter_format {
            ParameterFormat::Named => Cow::Borrowed(name),
            ParameterFormat::Positional => {
                Cow::Owned(format!("{POSITIONAL_HEADER_KEY_PREFIX}{name}"))
            }
        }
    }

    /// Whether a body key is also a header text key (possible in NAMED templates only).
    fn is_header_text_key(&self, key: &str) -> bool {
        match &self.header {
            Some(HeaderSpec::Text { params }) => {
                params.iter().any(|name| self.header_text_key(name) == key)
            }
            _ => false,
        }
    }

    /// Every `variables` key with its rule, each key once, in expected order.
    fn variable_slots(&self) -> Vec<(Cow<'_, str>, ValueRule)> {
        let mut slots: Vec<(Cow<'_, str>, ValueRule)> = Vec::new();
        match &self.header {
            Some(HeaderSpec::Text { params }) => {
                for name in params {
                    slots.push((self.header_text_key(name), ValueRule::Text));
                }
            }
            Some(HeaderSpec::Media { .. }) => {
                slots.push((Cow::Borrowed(HEADER_MEDIA_KEY), ValueRule::Media));
            }
            None => {}
        }
        for name in &self.body_params {
            if !slots.iter().any(|(key, _)| key == name) {
                slots.push((Cow::Borrowed(name.as_str()), ValueRule::Text));
            }
        }
        slots
    }

    fn dynamic_buttons(&self) -> impl Iterator<Item = &ButtonSpec> {
        self.buttons.iter().filter(|button| button.dynamic)
    }
}

/// A Meta media id: ASCII digits only.
fn is_media_id(value: &str) -> bool {
    !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit())
}

fn button_key(button: &ButtonSpec) -> String {
    format!("{BUTTON_KEY_PREFIX}{}", button.index)
}

/// At most [`SNIPPET_CHARS`] characters of `text`, with `…` when cut.
fn snippet(text: &str) -> String {
    shorten(text, SNIPPET_CHARS)
}

fn quote_key(key: &str) -> String {
    shorten(key, KEY_QUOTE_CHARS)
}

fn shorten(text: &str, max_chars: usize) -> String {
    match text.char_indices().nth(max_chars) {
        Some((cut, _)) => {
            let mut short = text.get(..cut).unwrap_or(text).to_owned();
            short.push('…');
            short
        }
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn vars(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn none() -> BTreeMap<String, String> {
        BTreeMap::new()
    }

    fn spec(format: Option<&str>, components: Value) -> TemplateSpec {
        match TemplateSpec::from_meta(format, &components) {
            Ok(spec) => spec,
            Err(err) => panic!("template should be usable: {err}"),
        }
    }

    fn spec_err(format: Option<&str>, components: Value) -> TemplateError {
        match TemplateSpec::from_meta(format, &components) {
            Ok(spec) => panic!("template should be rejected, got {spec:?}"),
            Err(err) => err,
        }
    }

    fn problems(
        spec: &TemplateSpec,
        variables: &BTreeMap<String, String>,
        buttons: &BTreeMap<String, String>,
    ) -> Vec<(String, String)> {
        match spec.validate(variables, buttons) {
            Ok(()) => Vec::new(),
            Err(problems) => problems.into_iter().map(|p| (p.field, p.reason)).collect(),
        }
    }

    /// META.md §6: NAMED, image header, footer, static URL, phone and quick-reply buttons.
    fn reservation_confirmation() -> TemplateSpec {
        spec(
            Some("NAMED"),
            json!([
                {"type":"HEADER","format":"IMAGE","example":{"header_handle":["https://example.com/h.jpg"]}},
                {"type":"BODY","text":"Your reservation for {{number_of_guests}} on {{day}} is confirmed. See you on {{day}}!",
                 "example":{"body_text_named_params":[{"param_name":"number_of_guests","example":"4"},
                                                      {"param_name":"day","example":"Friday"}]}},
                {"type":"FOOTER","text":"Lucky Shrub"},
                {"type":"BUTTONS","buttons":[
                    {"type":"URL","text":"Manage","url":"https://www.luckyshrub.com/reservations"},
                    {"type":"PHONE_NUMBER","text":"Call us","phone_number":"+15550783881"},
                    {"type":"QUICK_REPLY","text":"Cancel"}]}
            ]),
        )
    }

    /// POSITIONAL coupon template: text header, body, quick reply and copy code.
    fn summer_coupon() -> TemplateSpec {
        spec(
            Some("POSITIONAL"),
            json!([
                {"type":"HEADER","format":"TEXT","text":"Hola {{1}}!","example":{"header_text":["Pablo"]}},
                {"type":"BODY","text":"Use code {{1}} to get {{2}} off.","example":{"body_text":[["SUMMER20","10%"]]}},
                {"type":"BUTTONS","buttons":[
                    {"type":"QUICK_REPLY","text":"Unsubscribe"},
                    {"type":"COPY_CODE","example":"SUMMER20"}]}
            ]),
        )
    }

    // ---- parameter_format ----

    #[test]
    fn parameter_format_parsing() {
        assert_eq!(
            ParameterFormat::from_meta(None).unwrap(),
            ParameterFormat::Positional
        );
        assert_eq!(
            ParameterFormat::from_meta(Some("named")).unwrap(),
            ParameterFormat::Named
        );
        assert_eq!(
            ParameterFormat::from_meta(Some(" NAMED ")).unwrap(),
            ParameterFormat::Named
        );
        assert_eq!(
            "Positional".parse::<ParameterFormat>().unwrap(),
            ParameterFormat::Positional
        );
        assert_eq!(ParameterFormat::Named.as_str(), "NAMED");
        assert_eq!(ParameterFormat::Positional.to_string(), "POSITIONAL");
        assert_eq!(
            ParameterFormat::from_meta(Some("numbered")),
            Err(TemplateError::UnknownParameterFormat("numbered".into()))
        );
        assert_eq!(
            serde_json::to_value(ParameterFormat::Named).unwrap(),
            json!("NAMED")
        );
    }

    // ---- from_meta ----

    #[test]
    fn named_template_from_meta_docs() {
        let spec = reservation_confirmation();
        assert_eq!(spec.parameter_format, ParameterFormat::Named);
        assert_eq!(
            spec.header,
            Some(HeaderSpec::Media {
                media: MediaKind::Image
            })
        );
        assert_eq!(spec.body_params, ["number_of_guests", "day"]);
        assert_eq!(spec.buttons.len(), 3);
        assert!(spec.buttons.iter().all(|b| !b.dynamic));
        assert_eq!(spec.buttons[0].kind, ButtonKind::Url);
        assert_eq!(spec.buttons[1].kind, ButtonKind::PhoneNumber);
        assert_eq!(spec.buttons[2].kind, ButtonKind::QuickReply);
        assert_eq!(
            spec.expected_variables(),
            ["header_media", "number_of_guests", "day"]
        );
        assert!(spec.expected_button_variables().is_empty());
    }

    #[test]
    fn positional_template_with_text_header_and_copy_code() {
        let spec = summer_coupon();
        assert_eq!(spec.parameter_format, ParameterFormat::Positional);
        assert_eq!(
            spec.header,
            Some(HeaderSpec::Text {
                params: vec!["1".into()]
            })
        );
        assert_eq!(spec.body_params, ["1", "2"]);
        assert_eq!(
            spec.buttons,
            [
                ButtonSpec {
                    index: 0,
                    kind: ButtonKind::QuickReply,
                    dynamic: false
                },
                ButtonSpec {
                    index: 1,
                    kind: ButtonKind::CopyCode,
                    dynamic: true
                },
            ]
        );
        assert_eq!(spec.expected_variables(), ["header_1", "1", "2"]);
        assert_eq!(spec.expected_button_variables(), ["button_1"]);
    }

    #[test]
    fn positional_params_out_of_order_and_repeated() {
        let spec = spec(
            None,
            json!([{"type":"BODY","text":"Pay {{2}} before {{1}}, {{2}} is due."}]),
        );
        assert_eq!(spec.parameter_format, ParameterFormat::Positional);
        assert_eq!(spec.body_params, ["1", "2"]);
        let rendered = spec.render(&vars(&[("2", "$10"), ("1", "Friday")]), &none());
        assert_eq!(
            rendered,
            json!([{"type":"body","parameters":[
                {"type":"text","text":"Friday"},
                {"type":"text","text":"$10"}]}])
        );
    }

    #[test]
    fn positional_gaps_list_what_appears() {
        let spec = spec(
            Some("POSITIONAL"),
            json!([{"type":"BODY","text":"a {{10}} b {{3}} c {{1}} d"}]),
        );
        assert_eq!(spec.body_params, ["1", "3", "10"]);
    }

    #[test]
    fn named_duplicates_are_one_param() {
        let spec = spec(
            Some("NAMED"),
            json!([{"type":"BODY","text":"Hi {{name}}! {{name}}, order {{order_id}} ships {{when}}; {{order_id}}."}]),
        );
        assert_eq!(spec.body_params, ["name", "order_id", "when"]);
    }

    #[test]
    fn named_param_shared_by_header_and_body_is_one_key() {
        let spec = spec(
            Some("NAMED"),
            json!([
                {"type":"HEADER","format":"TEXT","text":"Hi {{first_name}}"},
                {"type":"BODY","text":"Dear {{first_name}}, order {{order_number}} is ready."}
            ]),
        );
        assert_eq!(spec.expected_variables(), ["first_name", "order_number"]);
        let values = vars(&[("first_name", "Jessica"), ("order_number", "SKBUP2")]);
        assert_eq!(spec.validate(&values, &none()), Ok(()));
        assert_eq!(
            spec.render(&values, &none()),
            json!([
                {"type":"header","parameters":[
                    {"type":"text","parameter_name":"first_name","text":"Jessica"}]},
                {"type":"body","parameters":[
                    {"type":"text","parameter_name":"first_name","text":"Jessica"},
                    {"type":"text","parameter_name":"order_number","text":"SKBUP2"}]}
            ])
        );
    }

    #[test]
    fn header_formats() {
        for (format, media) in [
            ("IMAGE", MediaKind::Image),
            ("video", MediaKind::Video),
            ("DOCUMENT", MediaKind::Document),
        ] {
            let spec = spec(None, json!([{"type":"HEADER","format":format}]));
            assert_eq!(spec.header, Some(HeaderSpec::Media { media }));
            assert_eq!(spec.expected_variables(), ["header_media"]);
        }
        let location = spec(None, json!([{"type":"HEADER","format":"LOCATION"}]));
        assert_eq!(location.header, None);
        let static_text = spec(
            None,
            json!([{"type":"HEADER","format":"TEXT","text":"Big sale"}]),
        );
        assert_eq!(static_text.header, None);
        let no_format = spec(None, json!([{"type":"header","text":"Hi {{1}}"}]));
        assert_eq!(
            no_format.header,
            Some(HeaderSpec::Text {
                params: vec!["1".into()]
            })
        );
        let unknown = spec(None, json!([{"type":"HEADER","format":"HOLOGRAM"}]));
        assert_eq!(unknown.header, None);
    }

    #[test]
    fn url_buttons_dynamic_only_with_placeholder() {
        let spec = spec(
            Some("NAMED"),
            json!([
                {"type":"BODY","text":"Hi {{name}}"},
                {"type":"BUTTONS","buttons":[
                    {"type":"URL","text":"Track","url":"https://shop.example/track/{{1}}","example":["https://shop.example/track/A1"]},
                    {"type":"URL","text":"Shop","url":"https://shop.example/"},
                    {"type":"QUICK_REPLY","text":"Stop"},
                    {"type":"COPY_CODE","example":"WELCOME10"},
                    {"type":"FLOW","text":"Book","flow_id":"123"}]}
            ]),
        );
        let dynamic: Vec<usize> = spec
            .buttons
            .iter()
            .filter(|b| b.dynamic)
            .map(|b| b.index)
            .collect();
        assert_eq!(dynamic, [0, 3]);
        assert_eq!(spec.buttons[4].kind, ButtonKind::Other("FLOW".into()));
        assert_eq!(spec.expected_button_variables(), ["button_0", "button_3"]);
    }

    #[test]
    fn authentication_template_otp_button() {
        // As Meta returns it after creation: the OTP button shows as a URL with a placeholder.
        let as_url = spec(
            None,
            json!([
                {"type":"BODY","text":"*{{1}}* is your verification code."},
                {"type":"BUTTONS","buttons":[{"type":"URL","text":"Copy code",
                    "url":"https://www.whatsapp.com/otp/code/?otp_type=COPY_CODE&code=otp{{1}}"}]}
            ]),
        );
        // And as the create request spells it.
        let as_otp = spec(
            None,
            json!([
                {"type":"BODY","text":"*{{1}}* is your verification code."},
                {"type":"BUTTONS","buttons":[{"type":"OTP","otp_type":"COPY_CODE","text":"Copy code"}]}
            ]),
        );
        let expected = json!([
            {"type":"body","parameters":[{"type":"text","text":"482913"}]},
            {"type":"button","sub_type":"url","index":"0","parameters":[{"type":"text","text":"482913"}]}
        ]);
        for spec in [as_url, as_otp] {
            let values = vars(&[("1", "482913")]);
            let buttons = vars(&[("button_0", "482913")]);
            assert_eq!(spec.validate(&values, &buttons), Ok(()));
            assert_eq!(spec.render(&values, &buttons), expected);
        }
    }

    #[test]
    fn lenient_about_unknown_things() {
        let spec = spec(
            Some("POSITIONAL"),
            json!([
                "not an object",
                42,
                {"no_type": true},
                {"type":"CAROUSEL","cards":[]},
                {"type":"FOOTER","text":"Reply STOP {{ to stop"},
                {"type":"BODY","text":"Hi {{1}}","extra":{"whatever":1}},
                {"type":"BODY","text":"second body {{7}} is ignored"},
                {"type":"BUTTONS","buttons":[null, {"type":7}, {"type":"URL"}, {"type":"URL","url":5}]}
            ]),
        );
        assert_eq!(spec.body_params, ["1"]);
        assert_eq!(spec.header, None);
        assert_eq!(spec.buttons.len(), 4);
        assert!(spec.buttons.iter().all(|b| !b.dynamic));
        assert_eq!(spec.buttons[0].kind, ButtonKind::Other("UNKNOWN".into()));

        let buttons_not_array = super::TemplateSpec::from_meta(
            None,
            &json!([{"type":"BUTTONS","buttons":{"0":{}}}, {"type":"BODY"}]),
        )
        .unwrap();
        assert!(buttons_not_array.buttons.is_empty());
        assert!(buttons_not_array.body_params.is_empty());

        let empty = TemplateSpec::from_meta(None, &json!([])).unwrap();
        assert!(empty.expected_variables().is_empty());
        assert_eq!(empty.render(&none(), &none()), json!([]));
    }

    #[test]
    fn infers_named_when_format_is_missing() {
        let spec = spec(None, json!([{"type":"BODY","text":"Hi {{first_name}}"}]));
        assert_eq!(spec.parameter_format, ParameterFormat::Named);
        let spec2 = spec_err(
            None,
            json!([{"type":"BODY","text":"Hi {{first_name}} {{1}}"}]),
        );
        assert!(
            matches!(spec2, TemplateError::FormatMismatch { .. }),
            "{spec2}"
        );
    }

    #[test]
    fn unusable_templates_are_errors() {
        assert_eq!(
            spec_err(None, json!({"type":"BODY"})),
            TemplateError::ComponentsNotArray
        );
        assert_eq!(
            spec_err(Some("SOMETIMES"), json!([])),
            TemplateError::UnknownParameterFormat("SOMETIMES".into())
        );
        let cases = [
            (
                "Hi {{ }} there",
                "BODY has a malformed placeholder '{{ }}': it is empty",
            ),
            (
                "Hi {{}} there",
                "BODY has a malformed placeholder '{{}}': it is empty",
            ),
            (
                "Hi {{1} there",
                "BODY has a placeholder that is never closed: '{{1} there'",
            ),
            (
                "Hi {{1} and {{2}} x",
                "BODY has a malformed placeholder '{{1} and {{2}}': a placeholder is a number or a \
                 name of lowercase letters, digits and underscores",
            ),
            (
                "Hi {{First_Name}} x",
                "BODY has a malformed placeholder '{{First_Name}}': a placeholder is a number or a \
                 name of lowercase letters, digits and underscores",
            ),
            (
                "Hi {{ 1 }} x",
                "BODY has a malformed placeholder '{{ 1 }}': a placeholder is a number or a name \
                 of lowercase letters, digits and underscores",
            ),
            (
                "Hi {{01}} x",
                "BODY has a malformed placeholder '{{01}}': positional numbers start at 1 and \
                 have no leading zeros",
            ),
            (
                "Hi {{0}} x",
                "BODY has a malformed placeholder '{{0}}': positional numbers start at 1 and \
                 have no leading zeros",
            ),
            (
                "Hi {{99999999}} x",
                "BODY has a malformed placeholder '{{99999999}}': the number is too large",
            ),
        ];
        for (text, message) in cases {
            let err = spec_err(None, json!([{"type":"BODY","text":text}]));
            assert_eq!(err.to_string(), message, "{text}");
        }
    }

    #[test]
    fn format_mismatch_is_an_error() {
        let err = spec_err(
            Some("POSITIONAL"),
            json!([{"type":"BODY","text":"Hi {{first_name}}"}]),
        );
        assert_eq!(
            err.to_string(),
            "BODY has the placeholder '{{first_name}}', which a POSITIONAL template cannot have"
        );
        let err = spec_err(
            Some("NAMED"),
            json!([{"type":"HEADER","format":"TEXT","text":"Hi {{1}}"},{"type":"BODY","text":"x"}]),
        );
        assert_eq!(
            err.to_string(),
            "HEADER has the placeholder '{{1}}', which a NAMED template cannot have"
        );
    }

    #[test]
    fn malformed_url_placeholder_is_an_error() {
        let err = spec_err(
            None,
            json!([{"type":"BUTTONS","buttons":[{"type":"QUICK_REPLY"},{"type":"URL","url":"https://x.example/{{1"}]}]),
        );
        assert_eq!(
            err.to_string(),
            "BUTTONS[1].url has a placeholder that is never closed: '{{1'"
        );
    }

    #[test]
    fn header_media_name_clash_is_an_error() {
        let err = spec_err(
            Some("NAMED"),
            json!([{"type":"HEADER","format":"IMAGE"},{"type":"BODY","text":"x {{header_media}} y"}]),
        );
        assert_eq!(err, TemplateError::ReservedName);
        // Without a media header the name is an ordinary parameter.
        let spec = spec(
            Some("NAMED"),
            json!([{"type":"BODY","text":"x {{header_media}} y"}]),
        );
        assert_eq!(spec.expected_variables(), ["header_media"]);
    }

    #[test]
    fn long_snippets_are_shortened() {
        let text = format!("Hi {{{{{}", "a".repeat(500));
        let err = spec_err(None, json!([{"type":"BODY","text":text}]));
        let TemplateError::UnclosedPlaceholder { snippet, .. } = err else {
            panic!("unexpected {err:?}");
        };
        assert_eq!(snippet.chars().count(), SNIPPET_CHARS + 1);
        assert!(snippet.ends_with('…'));
    }

    // ---- validate ----

    #[test]
    fn valid_values_pass() {
        let spec = summer_coupon();
        let values = vars(&[("header_1", "Pablo"), ("1", "SUMMER20"), ("2", "10%")]);
        let buttons = vars(&[("button_1", "SUMMER20")]);
        assert_eq!(spec.validate(&values, &buttons), Ok(()));
    }

    #[test]
    fn missing_and_unknown_keys_are_named() {
        let spec = spec(
            Some("NAMED"),
            json!([{"type":"BODY","text":"Hi {{first_name}}, order {{order_number}}."}]),
        );
        let got = problems(
            &spec,
            &vars(&[("zeta", "z"), ("first_name", "Ana"), ("foo", "x")]),
            &vars(&[("button_0", "x")]),
        );
        assert_eq!(
            got,
            [
                (
                    "variables.order_number".to_owned(),
                    "missing: the template needs this parameter".to_owned()
                ),
                (
                    "variables.foo".to_owned(),
                    "unknown: the template has no parameter named 'foo' (expected: first_name, \
                     order_number)"
                        .to_owned()
                ),
                (
                    "variables.zeta".to_owned(),
                    "unknown: the template has no parameter named 'zeta' (expected: first_name, \
                     order_number)"
                        .to_owned()
                ),
                (
                    "button_variables.button_0".to_owned(),
                    "unknown: the template has no dynamic button 'button_0' (the template has no \
                     dynamic buttons)"
                        .to_owned()
                ),
            ]
        );
    }

    #[test]
    fn template_without_variables() {
        let spec = spec(None, json!([{"type":"BODY","text":"Hello!"}]));
        assert_eq!(spec.validate(&none(), &none()), Ok(()));
        let got = problems(&spec, &vars(&[("name", "x")]), &none());
        assert_eq!(
            got,
            [(
                "variables.name".to_owned(),
                "unknown: the template has no parameter named 'name' (it takes no variables)"
                    .to_owned()
            )]
        );
    }

    #[test]
    fn positional_keys_and_header_key() {
        let spec = summer_coupon();
        let got = problems(&spec, &vars(&[("1", "A"), ("3", "C")]), &none());
        let fields: Vec<&str> = got.iter().map(|(f, _)| f.as_str()).collect();
        assert_eq!(
            fields,
            [
                "variables.header_1",
                "variables.2",
                "variables.3",
                "button_variables.button_1"
            ]
        );
        assert_eq!(
            got[2].1,
            "unknown: the template has no parameter named '3' (expected: header_1, 1, 2)"
        );
    }

    #[test]
    fn unknown_button_keys_explain_themselves() {
        let spec = summer_coupon();
        let got = problems(
            &spec,
            &vars(&[("header_1", "P"), ("1", "A"), ("2", "B")]),
            &vars(&[
                ("button_1", "X"),
                ("button_0", "Y"),
                ("button_9", "Z"),
                ("btn", "W"),
            ]),
        );
        assert_eq!(
            got,
            [
                (
                    "button_variables.btn".to_owned(),
                    "unknown: the template has no dynamic button 'btn' (expected: button_1)"
                        .to_owned()
                ),
                (
                    "button_variables.button_0".to_owned(),
                    "unknown: button 0 is a QUICK_REPLY button, which takes no value (expected: \
                     button_1)"
                        .to_owned()
                ),
                (
                    "button_variables.button_9".to_owned(),
                    "unknown: the template has no dynamic button 'button_9' (expected: button_1)"
                        .to_owned()
                ),
            ]
        );
    }

    #[test]
    fn hash_map_and_btree_map_report_the_same() {
        let spec = reservation_confirmation();
        let pairs = [("b", "1"), ("a", "2"), ("day", ""), ("c", "3")];
        let btree = vars(&pairs);
        let hash: HashMap<String, String> = btree.clone().into_iter().collect();
        let from_btree = spec.validate(&btree, &none());
        let from_hash = spec.validate(&hash, &HashMap::new());
        assert_eq!(from_btree, from_hash);
        let fields: Vec<String> = from_hash
            .unwrap_err()
            .into_iter()
            .map(|p| p.field)
            .collect();
        assert_eq!(
            fields,
            [
                "variables.header_media",
                "variables.number_of_guests",
                "variables.day",
                "variables.a",
                "variables.b",
                "variables.c"
            ]
        );
    }

    #[test]
    fn text_values_meta_would_refuse() {
        let spec = spec(None, json!([{"type":"BODY","text":"x {{1}} y"}]));
        let reason = |value: &str| -> Option<String> {
            spec.validate(&vars(&[("1", value)]), &none())
                .err()
                .map(|mut p| p.remove(0).reason)
        };
        let empty =
            Some("empty: Meta refuses parameter text that is empty or only spaces".to_owned());
        let newline =
            Some("invalid: Meta refuses parameter text with new-line or tab characters".to_owned());
        let spaces = Some(
            "invalid: Meta refuses parameter text with more than 4 consecutive spaces".to_owned(),
        );
        assert_eq!(reason(""), empty);
        assert_eq!(reason("   "), empty);
        assert_eq!(reason("\u{3000}"), empty);
        assert_eq!(reason("a\nb"), newline);
        assert_eq!(reason("a\r\nb"), newline);
        assert_eq!(reason("a\tb"), newline);
        assert_eq!(reason("a     b"), spaces);
        assert_eq!(reason("a    b    c"), None);
        assert_eq!(reason(" leading and trailing "), None);
        assert_eq!(reason("ñandú 🎉 ok"), None);
        // 1024 characters, 2048 bytes: fine. 1025: too long.
        assert_eq!(reason(&"ñ".repeat(1024)), None);
        assert_eq!(
            reason(&"ñ".repeat(1025)),
            Some("too long: 1025 characters, Meta accepts at most 1024".to_owned())
        );
    }

    #[test]
    fn media_values() {
        let spec = reservation_confirmation();
        let check = |value: &str| {
            spec.validate(
                &vars(&[
                    ("header_media", value),
                    ("number_of_guests", "4"),
                    ("day", "Friday"),
                ]),
                &none(),
            )
        };
        assert_eq!(check("https://cdn.example.com/a.jpg?x=1"), Ok(()));
        assert_eq!(check("HTTPS://cdn.example.com/a.jpg"), Ok(()));
        assert_eq!(check("1234567890123456"), Ok(()));
        for bad in [
            "http://cdn.example.com/a.jpg",
            "ftp://x",
            "https://",
            "https://cdn.example.com/a b.jpg",
            "cdn.example.com/a.jpg",
            "12ab",
            "",
            " 123",
            "/tmp/a.jpg",
            "ñ",
        ] {
            let problems = check(bad).unwrap_err();
            assert_eq!(problems.len(), 1, "{bad:?}");
            assert_eq!(problems[0].field, "variables.header_media");
            assert_eq!(
                problems[0].reason,
                "invalid: header_media must be an https:// link or a Meta media id (digits)"
            );
        }
    }

    #[test]
    fn coupon_codes() {
        let spec = summer_coupon();
        let values = vars(&[("header_1", "P"), ("1", "A"), ("2", "B")]);
        let check = |code: &str| spec.validate(&values, &vars(&[("button_1", code)]));
        assert_eq!(check("ABCDEFGHIJKLMNO"), Ok(()));
        let problems = check("ABCDEFGHIJKLMNOP").unwrap_err();
        assert_eq!(
            problems,
            [VariableProblem {
                field: "button_variables.button_1".into(),
                reason: "too long: a coupon code has at most 15 characters".into()
            }]
        );
        assert!(check("").is_err());
        assert!(check("A\tB").is_err());
    }

    #[test]
    fn every_problem_is_reported() {
        let spec = summer_coupon();
        let got = problems(
            &spec,
            &vars(&[("header_1", ""), ("1", "a\nb"), ("x", "1")]),
            &vars(&[("button_1", "       ")]),
        );
        let fields: Vec<&str> = got.iter().map(|(f, _)| f.as_str()).collect();
        assert_eq!(
            fields,
            [
                "variables.header_1",
                "variables.1",
                "variables.2",
                "variables.x",
                "button_variables.button_1"
            ]
        );
    }

    #[test]
    fn long_unknown_keys_are_quoted_short() {
        let spec = summer_coupon();
        let key = "k".repeat(1000);
        let got = problems(&spec, &vars(&[(key.as_str(), "v")]), &none());
        let unknown = got
            .iter()
            .find(|(field, _)| field.len() > 1000)
            .expect("unknown key reported");
        assert!(unknown.1.len() < 200, "{}", unknown.1);
    }

    // ---- render ----

    #[test]
    fn render_named_with_media_id_and_link() {
        let spec = reservation_confirmation();
        let by_id = vars(&[
            ("header_media", "1234567890"),
            ("number_of_guests", "4"),
            ("day", "Friday"),
        ]);
        assert_eq!(
            spec.render(&by_id, &none()),
            json!([
                {"type":"header","parameters":[{"type":"image","image":{"id":"1234567890"}}]},
                {"type":"body","parameters":[
                    {"type":"text","parameter_name":"number_of_guests","text":"4"},
                    {"type":"text","parameter_name":"day","text":"Friday"}]}
            ])
        );
        let mut by_link = by_id.clone();
        by_link.insert("header_media".into(), "https://cdn.example/p.jpg".into());
        assert_eq!(
            spec.render(&by_link, &none())[0],
            json!({"type":"header","parameters":[{"type":"image","image":{"link":"https://cdn.example/p.jpg"}}]})
        );
    }

    #[test]
    fn render_video_and_document_headers() {
        for (format, kind) in [("VIDEO", "video"), ("DOCUMENT", "document")] {
            let spec = spec(None, json!([{"type":"HEADER","format":format}]));
            let rendered = spec.render(&vars(&[("header_media", "https://x.example/f")]), &none());
            let mut parameter = Map::new();
            parameter.insert("type".into(), json!(kind));
            parameter.insert(kind.into(), json!({"link":"https://x.example/f"}));
            assert_eq!(
                rendered,
                json!([{"type":"header","parameters":[Value::Object(parameter)]}])
            );
        }
    }

    #[test]
    fn render_positional_with_header_and_copy_code() {
        let spec = summer_coupon();
        let rendered = spec.render(
            &vars(&[("header_1", "Pablo"), ("1", "SUMMER20"), ("2", "10%")]),
            &vars(&[("button_1", "SUMMER20")]),
        );
        assert_eq!(
            rendered,
            json!([
                {"type":"header","parameters":[{"type":"text","text":"Pablo"}]},
                {"type":"body","parameters":[
                    {"type":"text","text":"SUMMER20"},
                    {"type":"text","text":"10%"}]},
                {"type":"button","sub_type":"copy_code","index":"1",
                 "parameters":[{"type":"coupon_code","coupon_code":"SUMMER20"}]}
            ])
        );
    }

    #[test]
    fn render_url_buttons_in_index_order() {
        let spec = spec(
            Some("NAMED"),
            json!([
                {"type":"BODY","text":"Order {{order_id}} shipped."},
                {"type":"BUTTONS","buttons":[
                    {"type":"QUICK_REPLY","text":"Stop"},
                    {"type":"URL","text":"Track","url":"https://x.example/t/{{1}}"},
                    {"type":"URL","text":"Home","url":"https://x.example/"},
                    {"type":"URL","text":"Invoice","url":"https://x.example/i/{{1}}"}]}
            ]),
        );
        let rendered = spec.render(
            &vars(&[("order_id", "A1")]),
            &vars(&[
                ("button_3", "inv-9"),
                ("button_1", "A1"),
                ("button_0", "ignored"),
            ]),
        );
        assert_eq!(
            rendered,
            json!([
                {"type":"body","parameters":[{"type":"text","parameter_name":"order_id","text":"A1"}]},
                {"type":"button","sub_type":"url","index":"1","parameters":[{"type":"text","text":"A1"}]},
                {"type":"button","sub_type":"url","index":"3","parameters":[{"type":"text","text":"inv-9"}]}
            ])
        );
    }

    #[test]
    fn render_skips_missing_values_and_empty_components() {
        let spec = summer_coupon();
        assert_eq!(spec.render(&none(), &none()), json!([]));
        assert_eq!(
            spec.render(&vars(&[("2", "10%"), ("nope", "x")]), &none()),
            json!([{"type":"body","parameters":[{"type":"text","text":"10%"}]}])
        );
        let static_only = reservation_confirmation();
        assert_eq!(
            static_only.render(&vars(&[("day", "Fri")]), &vars(&[("button_0", "x")])),
            json!([{"type":"body","parameters":[{"type":"text","parameter_name":"day","text":"Fri"}]}])
        );
    }

    #[test]
    fn render_is_deterministic_across_map_types() {
        let spec = summer_coupon();
        let btree = vars(&[("header_1", "Pablo"), ("1", "A"), ("2", "B")]);
        let hash: HashMap<String, String> = btree.clone().into_iter().collect();
        let buttons = vars(&[("button_1", "C")]);
        let hash_buttons: HashMap<String, String> = buttons.clone().into_iter().collect();
        let a = serde_json::to_string(&spec.render(&btree, &buttons)).unwrap();
        let b = serde_json::to_string(&spec.render(&hash, &hash_buttons)).unwrap();
        assert_eq!(a, b);
    }

    // ---- variables_info ----

    #[test]
    fn variables_info_matches_the_business_accounts_shape() {
        let spec = spec(
            Some("NAMED"),
            json!([{"type":"BODY","text":"Hola {{customer_name}}"}]),
        );
        assert_eq!(
            serde_json::to_value(spec.variables_info()).unwrap(),
            json!([{"name":"customer_name","type":"TEXT","position":1,"isRequired":true,"component":"BODY"}])
        );
    }

    #[test]
    fn variables_info_covers_every_component() {
        let media = reservation_confirmation();
        assert_eq!(
            serde_json::to_value(media.variables_info()).unwrap(),
            json!([
                {"name":"header_media","type":"MEDIA","position":1,"isRequired":true,"component":"HEADER"},
                {"name":"number_of_guests","type":"TEXT","position":1,"isRequired":true,"component":"BODY"},
                {"name":"day","type":"TEXT","position":2,"isRequired":true,"component":"BODY"}
            ])
        );
        let coupon = summer_coupon();
        assert_eq!(
            serde_json::to_value(coupon.variables_info()).unwrap(),
            json!([
                {"name":"header_1","type":"TEXT","position":1,"isRequired":true,"component":"HEADER"},
                {"name":"1","type":"TEXT","position":1,"isRequired":true,"component":"BODY"},
                {"name":"2","type":"TEXT","position":2,"isRequired":true,"component":"BODY"},
                {"name":"button_1","type":"TEXT","position":2,"isRequired":true,"component":"BUTTON"}
            ])
        );
        let shared = spec(
            Some("NAMED"),
            json!([
                {"type":"HEADER","format":"TEXT","text":"Hi {{first_name}}"},
                {"type":"BODY","text":"{{first_name}}: order {{order_number}}"}
            ]),
        );
        let names: Vec<(String, VariableComponent, usize)> = shared
            .variables_info()
            .into_iter()
            .map(|v| (v.name, v.component, v.position))
            .collect();
        assert_eq!(
            names,
            [
                ("first_name".into(), VariableComponent::Header, 1),
                ("order_number".into(), VariableComponent::Body, 2)
            ]
        );
    }

    // ---- serde ----

    #[test]
    fn spec_round_trips_through_json() {
        for spec in [reservation_confirmation(), summer_coupon()] {
            let json = serde_json::to_value(&spec).unwrap();
            let back: TemplateSpec = serde_json::from_value(json).unwrap();
            assert_eq!(back, spec);
        }
        let json = serde_json::to_value(summer_coupon()).unwrap();
        assert_eq!(json["parameter_format"], "POSITIONAL");
        assert_eq!(json["header"], json!({"kind":"text","params":["1"]}));
        assert_eq!(
            json["buttons"][1],
            json!({"index":1,"kind":"COPY_CODE","dynamic":true})
        );
        let media = serde_json::to_value(reservation_confirmation()).unwrap();
        assert_eq!(media["header"], json!({"kind":"media","media":"IMAGE"}));
    }

    #[test]
    fn button_kind_names() {
        assert_eq!(
            ButtonKind::from("copy_code".to_owned()),
            ButtonKind::CopyCode
        );
        assert_eq!(String::from(ButtonKind::Url), "URL");
        assert_eq!(
            String::from(ButtonKind::from("catalog".to_owned())),
            "CATALOG"
        );
        assert_eq!(ButtonKind::Otp.as_str(), "OTP");
        assert_eq!(ButtonKind::PhoneNumber.as_str(), "PHONE_NUMBER");
    }

    // ---- robustness ----

    #[test]
    fn never_panics_on_odd_templates() {
        let texts = [
            "",
            "{{",
            "}}",
            "{{}}",
            "{{{{",
            "}}{{",
            "{{{1}}}",
            "{{1}}}}",
            "{{é}}",
            "{{1}}{{2}}",
            "🎉{{1}}🎉",
            "{{\u{0}}}",
            "{{ 65535 }}",
            "{{65535}}",
            "{{65536}}",
            "{{_}}",
        ];
        for text in texts {
            for format in [None, Some("NAMED"), Some("POSITIONAL")] {
                let components = json!([
                    {"type":"HEADER","format":"TEXT","text":text},
                    {"type":"BODY","text":text},
                    {"type":"BUTTONS","buttons":[{"type":"URL","url":text},{"type":"COPY_CODE"}]}
                ]);
                if let Ok(spec) = TemplateSpec::from_meta(format, &components) {
                    let values = vars(&[("1", "x"), ("header_1", "\n"), ("button_0", "")]);
                    let _ = spec.validate(&values, &values);
                    let _ = spec.render(&values, &values);
                    let _ = spec.variables_info();
                }
            }
        }
        for components in [json!(null), json!("x"), json!(1), json!({}), json!([[]])] {
            let _ = TemplateSpec::from_meta(None, &components);
        }
    }

    #[test]
    fn hand_made_specs_do_not_panic() {
        // A spec deserialised from storage may not respect from_meta's invariants.
        let spec = TemplateSpec {
            parameter_format: ParameterFormat::Named,
            header: Some(HeaderSpec::Text { params: vec![] }),
            body_params: vec!["".into(), "".into()],
            buttons: vec![ButtonSpec {
                index: usize::MAX,
                kind: ButtonKind::QuickReply,
                dynamic: true,
            }],
        };
        let values = vars(&[("", "v"), ("button_18446744073709551615", "x")]);
        let _ = spec.validate(&values, &values);
        let _ = spec.render(&values, &values);
        let _ = spec.variables_info();
    }
}
