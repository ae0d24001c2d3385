//! The simulator's own reading of a template as Meta serves it (`GET /{waba-id}/message_templates`,
//! META.md §6), turned into what a send of it must carry (META.md §1).
//!
//! Written from Meta's documentation and deliberately independent of the daemon's
//! `domain::template`: the simulator stands in for Meta, so a misreading of Meta's JSON in the
//! daemon must fail against the simulator instead of passing on both sides.
//!
//! # What is read
//! - `parameter_format`: `NAMED` or `POSITIONAL` in any case (GET answers upper case, create takes
//!   lower case); absent means POSITIONAL, Meta's default.
//! - `HEADER`: `format` `TEXT` (its `text` may hold one placeholder), `IMAGE`, `VIDEO` or `DOCUMENT`
//!   (one media parameter per send). `LOCATION` and formats Meta may add later are not simulated: a
//!   send gives them no parameter. A header with `text` and no `format` is a text header.
//! - `BODY`: the placeholders of its `text`. `FOOTER` and component types the simulator does not
//!   know (`CAROUSEL`, `LIMITED_TIME_OFFER`, …) take nothing.
//! - `BUTTONS`: by position (the send's `index`): `URL` with a placeholder in `url` takes the URL
//!   suffix as a text parameter; `COPY_CODE` takes a coupon code; `OTP` takes the code, sent as a
//!   `url` button; `QUICK_REPLY` takes an optional payload; `PHONE_NUMBER` and a `URL` without a
//!   placeholder take nothing. Other types (`FLOW`, `CATALOG`, …) are not checked.
//!
//! # What Meta would not approve (a configuration error here)
//! - POSITIONAL placeholders other than `{{1}}`…`{{n}}` without gaps (the header counts on its
//!   own); a named placeholder in a POSITIONAL template or a number in a NAMED one. NAMED
//!   placeholders are lowercase letters, digits and underscores, starting with a letter. The same
//!   placeholder twice in one text is one parameter.
//! - Two placeholders with nothing between them, or a placeholder at the very start or end of the
//!   body (Meta's error 2388299); more than one placeholder in a text header.
//! - A URL button with more than one placeholder, or one that is not at the end of the URL.
//! - An `example` that does not fit: `header_text` / `body_text` must give one value per
//!   positional parameter, `header_text_named_params` / `body_text_named_params` must name exactly
//!   the named ones, a URL button's example must start with the URL's fixed part, a coupon example
//!   has at most [`MAX_COUPON_CODE_CHARS`] characters. Examples are optional.
//! - Two HEADER, BODY or BUTTONS components; a component without `type`.
//! - A `language` that is not a locale code (`es`, `en_US`, `pt_BR`, …): sends name it exactly.

use std::collections::BTreeSet;

use serde::Deserialize;
use serde_json::Value;

/// Longest text a text parameter may carry, in characters (Meta: 131009 beyond).
pub(crate) const MAX_TEXT_PARAM_CHARS: usize = 1024;
/// Longest run of spaces Meta accepts inside a text parameter (100 beyond).
pub(crate) const MAX_CONSECUTIVE_SPACES: usize = 4;
/// Longest coupon code of a COPY_CODE button, in characters.
pub(crate) const MAX_COUPON_CODE_CHARS: usize = 15;

/// How a template writes its placeholders.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ParameterFormat {
    /// `{{first_name}}`: each parameter is sent with its `parameter_name`.
    Named,
    /// `{{1}}`: parameters are sent without a name, in order.
    Positional,
}

impl ParameterFormat {
    /// Meta's spelling in GET answers.
    pub fn as_meta(self) -> &'static str {
        match self {
            ParameterFormat::Named => "NAMED",
            ParameterFormat::Positional => "POSITIONAL",
        }
    }
}

/// The text parameters one component (header or body) must be sent with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum TextParams {
    /// This many parameters, without names, in placeholder order.
    Positional(usize),
    /// One parameter per name, each with its `parameter_name`, in any order.
    Named(BTreeSet<String>),
}

impl TextParams {
    /// How many parameters a send gives.
    pub fn count(&self) -> usize {
        match self {
            TextParams::Positional(n) => *n,
            TextParams::Named(names) => names.len(),
        }
    }
}

/// The media of an IMAGE, VIDEO or DOCUMENT header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Media {
    Image,
    Video,
    Document,
}

impl Media {
    /// The send's parameter `type`, also the key of its `{id | link}` object.
    pub fn parameter_type(self) -> &'static str {
        match self {
            Media::Image => "image",
            Media::Video => "video",
            Media::Document => "document",
        }
    }
}

/// What a send gives the header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Header {
    /// No header, or one a send gives nothing (LOCATION, unknown formats).
    Nothing,
    /// A text header: its placeholders (none for a fixed text).
    Text(TextParams),
    /// One media parameter.
    Media(Media),
}

/// One button, by what a send must or may give it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Button {
    /// A URL button with a placeholder: a `url` component with one text parameter, required.
    UrlSuffix,
    /// An OTP button: sent like a URL suffix (`sub_type` `url`, one text parameter), required.
    OneTimeCode,
    /// A COPY_CODE button: a `copy_code` component with one `coupon_code` parameter, required.
    CouponCode,
    /// A QUICK_REPLY button: a `quick_reply` component with at most one `payload`, optional.
    QuickReply,
    /// A URL button without a placeholder: a `url` component, if given, has no parameter.
    FixedUrl,
    /// A PHONE_NUMBER button: a `phone_number` component, if given, has no parameter.
    PhoneNumber,
    /// Another type (FLOW, CATALOG, MPM, …): not checked. Holds Meta's type name.
    Unchecked(String),
}

impl Button {
    /// The `sub_type` a send must give this button; `None` when it is not checked.
    pub fn sub_type(&self) -> Option<&'static str> {
        match self {
            Button::UrlSuffix | Button::OneTimeCode | Button::FixedUrl => Some("url"),
            Button::CouponCode => Some("copy_code"),
            Button::QuickReply => Some("quick_reply"),
            Button::PhoneNumber => Some("phone_number"),
            Button::Unchecked(_) => None,
        }
    }

    /// Whether every send must carry a component for this button.
    pub fn is_required(&self) -> bool {
        matches!(
            self,
            Button::UrlSuffix | Button::OneTimeCode | Button::CouponCode
        )
    }

    /// Meta's name of the button's type, for error details.
    pub fn meta_type(&self) -> &str {
        match self {
            Button::UrlSuffix | Button::FixedUrl => "URL",
            Button::OneTimeCode => "OTP",
            Button::CouponCode => "COPY_CODE",
            Button::QuickReply => "QUICK_REPLY",
            Button::PhoneNumber => "PHONE_NUMBER",
            Button::Unchecked(name) => name,
        }
    }
}

/// What a send of one template must carry, as the simulator reads Meta's JSON.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct TemplateShape {
    /// NAMED or POSITIONAL, as read (served back by `GET …/message_templates`).
    pub format: ParameterFormat,
    pub header: Header,
    pub body: TextParams,
    /// The BUTTONS component's buttons; a send's `index` is the position in this list.
    pub buttons: Vec<Button>,
}

/// One entry of `components`, with only what the simulator reads; unknown fields are ignored.
#[derive(Deserialize)]
struct Component {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    format: Option<String>,
    #[serde(default)]
    text: Option<String>,
    /// Read by component type: its shape differs between them.
    #[serde(default)]
    example: Option<Value>,
    #[serde(default)]
    buttons: Option<Value>,
}

/// A HEADER or BODY `example`.
#[derive(Default, Deserialize)]
struct TextExample {
    #[serde(default)]
    header_text: Option<Vec<String>>,
    #[serde(default)]
    header_text_named_params: Option<Vec<NamedExample>>,
    #[serde(default)]
    body_text: Option<Vec<Vec<String>>>,
    #[serde(default)]
    body_text_named_params: Option<Vec<NamedExample>>,
}

#[derive(Deserialize)]
struct NamedExample {
    param_name: String,
}

/// One entry of a BUTTONS component's `buttons`.
#[derive(Deserialize)]
struct MetaButton {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    url: Option<String>,
    /// URL: a list with one full URL; COPY_CODE: the code.
    #[serde(default)]
    example: Option<Value>,
}

impl TemplateShape {
    /// Reads Meta's `parameter_format` and `components`; `Err` names what Meta would not have
    /// approved (see the module doc).
    pub fn read(
        parameter_format: Option<&str>,
        components: &Value,
    ) -> Result<TemplateShape, String> {
        let format = match parameter_format.map(str::trim) {
            None => ParameterFormat::Positional,
            Some(f) if f.eq_ignore_ascii_case("named") => ParameterFormat::Named,
            Some(f) if f.eq_ignore_ascii_case("positional") => ParameterFormat::Positional,
            Some(f) => {
                return Err(format!(
                    "parameter_format {f:?} is neither NAMED nor POSITIONAL"
                ))
            }
        };
        let components: Vec<Component> = serde_json::from_value(components.clone())
            .map_err(|e| format!("components are not Meta's list of typed components: {e}"))?;
        let mut seen: Vec<String> = Vec::new();
        let mut shape = TemplateShape {
            format,
            header: Header::Nothing,
            body: text_params(format, &[])?,
            buttons: Vec::new(),
        };
        for component in &components {
            let kind = component.kind.to_ascii_uppercase();
            if !matches!(kind.as_str(), "HEADER" | "BODY" | "BUTTONS") {
                continue;
            }
            if seen.contains(&kind) {
                return Err(format!("two {kind} components"));
            }
            match kind.as_str() {
                "HEADER" => shape.header = read_header(format, component)?,
                "BODY" => shape.body = read_body(format, component)?,
                _ => shape.buttons = read_buttons(component.buttons.as_ref())?,
            }
            seen.push(kind);
        }
        Ok(shape)
    }
}

/// A locale as Meta names template languages: `es`, `fil`, `en_US`, `pt_BR`.
pub(crate) fn check_locale(code: &str) -> Result<(), String> {
    let (language, region) = match code.split_once('_') {
        Some((language, region)) => (language, Some(region)),
        None => (code, None),
    };
    let language_ok =
        (2..=3).contains(&language.len()) && language.bytes().all(|b| b.is_ascii_lowercase());
    let region_ok = region
        .is_none_or(|r| (2..=3).contains(&r.len()) && r.bytes().all(|b| b.is_ascii_uppercase()));
    if language_ok && region_ok {
        Ok(())
    } else {
        Err(format!(
            "language {code:?} is not a locale code like es, en_US or pt_BR"
        ))
    }
}

fn read_header(format: ParameterFormat, component: &Component) -> Result<Header, String> {
    let header_format = match &component.format {
        Some(f) => f.to_ascii_uppercase(),
        None if component.text.is_some() => "TEXT".to_owned(),
        None => return Ok(Header::Nothing),
    };
    let media = match header_format.as_str() {
        "TEXT" => {
            let text = component.text.as_deref().unwrap_or_default();
            let found = find_placeholders(text, "HEADER")?;
            if found.len() > 1 {
                return Err("a text HEADER takes at most one placeholder".to_owned());
            }
            let params = text_params(format, &found)?;
            let example = text_example(component)?;
            let named = example.header_text_named_params.as_deref();
            check_example("HEADER", &params, example.header_text.as_deref(), named)?;
            return Ok(Header::Text(params));
        }
        "IMAGE" => Media::Image,
        "VIDEO" => Media::Video,
        "DOCUMENT" => Media::Document,
        _ => return Ok(Header::Nothing),
    };
    Ok(Header::Media(media))
}

fn read_body(format: ParameterFormat, component: &Component) -> Result<TextParams, String> {
    let text = component.text.as_deref().unwrap_or_default();
    let found = find_placeholders(text, "BODY")?;
    let trimmed = text.trim();
    if !found.is_empty() && (trimmed.starts_with("{{") || trimmed.ends_with("}}")) {
        return Err("BODY starts or ends with a placeholder (Meta's 2388299)".to_owned());
    }
    let params = text_params(format, &found)?;
    let example = text_example(component)?;
    let positional = example.body_text.as_ref().and_then(|rows| rows.first());
    let named = example.body_text_named_params.as_deref();
    check_example("BODY", &params, positional.map(Vec::as_slice), named)?;
    Ok(params)
}

fn text_example(component: &Component) -> Result<TextExample, String> {
    match &component.example {
        None => Ok(TextExample::default()),
        Some(example) => serde_json::from_value(example.clone())
            .map_err(|e| format!("{} example is not Meta's shape: {e}", component.kind)),
    }
}

/// An example, when given, has one value per positional parameter or names the named ones.
fn check_example(
    place: &str,
    params: &TextParams,
    positional: Option<&[String]>,
    named: Option<&[NamedExample]>,
) -> Result<(), String> {
    match params {
        TextParams::Positional(n) => {
            if named.is_some_and(|named| !named.is_empty()) {
                return Err(format!(
                    "{place} example has named values in a POSITIONAL template"
                ));
            }
            match positional {
                Some(values) if values.len() != *n => Err(format!(
                    "{place} example gives {} values for {n} placeholders",
                    values.len()
                )),
                _ => Ok(()),
            }
        }
        TextParams::Named(names) => {
            if positional.is_some_and(|values| !values.is_empty()) {
                return Err(format!(
                    "{place} example has positional values in a NAMED template"
                ));
            }
            let Some(named) = named else {
                return Ok(());
            };
            let given: BTreeSet<&str> = named.iter().map(|e| e.param_name.as_str()).collect();
            if given.len() == named.len()
                && given.iter().copied().eq(names.iter().map(String::as_str))
            {
                Ok(())
            } else {
                Err(format!(
                    "{place} example names {given:?}, the text has {names:?}"
                ))
            }
        }
    }
}

fn read_buttons(buttons: Option<&Value>) -> Result<Vec<Button>, String> {
    let Some(buttons) = buttons else {
        return Ok(Vec::new());
    };
    let buttons: Vec<MetaButton> = serde_json::from_value(buttons.clone())
        .map_err(|e| format!("BUTTONS is not Meta's list of typed buttons: {e}"))?;
    buttons
        .iter()
        .enumerate()
        .map(|(index, button)| read_button(index, button))
        .collect()
}

fn read_button(index: usize, button: &MetaButton) -> Result<Button, String> {
    let kind = button.kind.to_ascii_uppercase();
    let place = format!("button {index} ({kind})");
    match kind.as_str() {
        "URL" => {
            let url = button.url.as_deref().unwrap_or_default();
            let found = find_placeholders(url, &place)?;
            let Some(last) = found.last() else {
                return Ok(Button::FixedUrl);
            };
            if found.len() > 1 || last.end != url.len() {
                return Err(format!("{place}: a URL takes one placeholder, at its end"));
            }
            let fixed = &url[..last.start];
            let example = match &button.example {
                None => None,
                Some(Value::Array(values)) => values.first().and_then(Value::as_str),
                Some(Value::String(value)) => Some(value.as_str()),
                Some(_) => return Err(format!("{place}: the example is not a URL")),
            };
            match example {
                Some(example) if !example.starts_with(fixed) => Err(format!(
                    "{place}: the example {example:?} does not start with {fixed:?}"
                )),
                _ => Ok(Button::UrlSuffix),
            }
        }
        "COPY_CODE" => match &button.example {
            Some(Value::String(code)) if code.chars().count() > MAX_COUPON_CODE_CHARS => Err(
                format!("{place}: the example code is over {MAX_COUPON_CODE_CHARS} characters"),
            ),
            _ => Ok(Button::CouponCode),
        },
        "OTP" => Ok(Button::OneTimeCode),
        "QUICK_REPLY" => Ok(Button::QuickReply),
        "PHONE_NUMBER" => Ok(Button::PhoneNumber),
        _ => Ok(Button::Unchecked(kind)),
    }
}

/// A placeholder as written, where it stands in its text.
#[derive(Debug, PartialEq, Eq)]
struct Placeholder<'a> {
    /// What is between the braces.
    inner: &'a str,
    /// Byte offsets of `{{` and just after `}}`.
    start: usize,
    end: usize,
}

impl Placeholder<'_> {
    /// `Some(n)` for `{{n}}`.
    fn number(&self) -> Option<usize> {
        if self.inner.bytes().all(|b| b.is_ascii_digit()) {
            self.inner.parse().ok()
        } else {
            None
        }
    }
}

/// Every `{{…}}` of `text`, in order. Refuses an unclosed one, an empty one, a number with a
/// leading zero, a name that is not lowercase letters, digits and underscores from a letter, and
/// two placeholders with nothing between them.
fn find_placeholders<'a>(text: &'a str, place: &str) -> Result<Vec<Placeholder<'a>>, String> {
    let mut found: Vec<Placeholder<'a>> = Vec::new();
    let mut from = 0;
    while let Some(offset) = text[from..].find("{{") {
        let start = from + offset;
        let Some(length) = text[start + 2..].find("}}") else {
            return Err(format!("{place}: a placeholder is never closed"));
        };
        let inner = &text[start + 2..start + 2 + length];
        let end = start + 2 + length + 2;
        let number = !inner.is_empty() && inner.bytes().all(|b| b.is_ascii_digit());
        let name = inner.bytes().next().is_some_and(|b| b.is_ascii_lowercase())
            && inner
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if (number && inner.starts_with('0')) || !(number || name) {
            return Err(format!(
                "{place}: {{{{{inner}}}}} is not a placeholder Meta takes"
            ));
        }
        if found.last().is_some_and(|previous| previous.end == start) {
            return Err(format!(
                "{place}: two placeholders with nothing between them"
            ));
        }
        found.push(Placeholder { inner, start, end });
        from = end;
    }
    Ok(found)
}

/// The parameters that a component's placeholders ask for, in the template's format.
fn text_params(format: ParameterFormat, found: &[Placeholder<'_>]) -> Result<TextParams, String> {
    match format {
        ParameterFormat::Positional => {
            let mut numbers = BTreeSet::new();
            for placeholder in found {
                let Some(n) = placeholder.number() else {
                    return Err(format!(
                        "{{{{{}}}}} is a named placeholder in a POSITIONAL template",
                        placeholder.inner
                    ));
                };
                numbers.insert(n);
            }
            // 1..=n without gaps: the set's largest is its size.
            if numbers.last().is_some_and(|&max| max != numbers.len()) {
                return Err(format!(
                    "positional placeholders {numbers:?} are not numbered 1 to n"
                ));
            }
            Ok(TextParams::Positional(numbers.len()))
        }
        ParameterFormat::Named => {
            let mut names = BTreeSet::new();
            for placeholder in found {
                if placeholder.number().is_some() {
                    return Err(format!(
                        "{{{{{}}}}} is a positional placeholder in a NAMED template",
                        placeholder.inner
                    ));
                }
                names.insert(placeholder.inner.to_owned());
            }
            Ok(TextParams::Named(names))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn named(names: &[&str]) -> TextParams {
        TextParams::Named(names.iter().map(|n| (*n).to_owned()).collect())
    }

    fn read(format: Option<&str>, components: Value) -> Result<TemplateShape, String> {
        TemplateShape::read(format, &components)
    }

    #[test]
    fn a_named_marketing_template_reads_as_names_a_video_and_its_buttons() {
        // Shaped as `GET /{waba-id}/message_templates` answers (META.md §6).
        let mut components = json!([
            {"type": "HEADER", "format": "VIDEO", "example": {"header_handle": ["https://cdn.example/s.mp4"]}},
            {"type": "BODY", "text": "Hi {{first_name}}, {{discount}} off until {{end_date}}.",
             "example": {"body_text_named_params": [{"param_name": "first_name", "example": "Mia"},
                 {"param_name": "discount", "example": "15%"}, {"param_name": "end_date", "example": "May 1"}]}},
            {"type": "FOOTER", "text": "Reply STOP to opt out"},
            {"type": "BUTTONS", "buttons": [{"type": "QUICK_REPLY", "text": "Not now"},
                {"type": "PHONE_NUMBER", "text": "Call", "phone_number": "+15550002222"},
                {"type": "URL", "text": "Shop", "url": "https://shop.example/s"}]}
        ]);
        let shape = read(Some("NAMED"), components.clone()).unwrap();
        assert_eq!(shape.format, ParameterFormat::Named);
        assert_eq!(shape.header, Header::Media(Media::Video));
        assert_eq!(shape.body, named(&["discount", "end_date", "first_name"]));
        assert_eq!(
            shape.buttons,
            [Button::QuickReply, Button::PhoneNumber, Button::FixedUrl]
        );
        assert!(shape.buttons.iter().all(|b| !b.is_required()));
        // The body starting with a placeholder: Meta does not approve that.
        components[1]["text"] = json!("{{first_name}}, {{discount}} off until {{end_date}}.");
        assert!(read(Some("NAMED"), components).is_err());
    }

    #[test]
    fn named_and_positional_are_told_apart_by_parameter_format_not_guessed() {
        let body = |text: &str| json!([{"type": "BODY", "text": text}]);
        // Lower case is what create takes; GET answers upper case.
        let shape = read(Some("named"), body("Hi {{first_name}}, order {{order}}.")).unwrap();
        assert_eq!(shape.body, named(&["first_name", "order"]));
        // Absent means POSITIONAL (Meta's default), so a named placeholder is not approvable.
        assert!(read(None, body("Hi {{first_name}}.")).is_err());
        assert_eq!(
            read(None, body("Hi {{1}}, order {{2}}.")).unwrap().body,
            TextParams::Positional(2)
        );
        assert!(read(Some("NAMED"), body("Hi {{1}}.")).is_err());
        assert!(read(Some("BOTH"), body("Hi.")).is_err());
        assert_eq!(
            read(None, body("{{1}}")).unwrap_err(),
            "BODY starts or ends with a placeholder (Meta's 2388299)"
        );
        // The same placeholder twice is one parameter, in either format.
        assert_eq!(
            read(None, body("A {{1}} and {{1}} again.")).unwrap().body,
            TextParams::Positional(1)
        );
        assert_eq!(
            read(Some("NAMED"), body("A {{x}} and {{x}} again."))
                .unwrap()
                .body,
            named(&["x"])
        );
    }

    #[test]
    fn positional_numbers_run_from_one_without_gaps_and_placeholders_are_well_formed() {
        let body = |text: &str| read(Some("POSITIONAL"), json!([{"type": "BODY", "text": text}]));
        assert_eq!(
            body("B {{2}} then {{1}}.").unwrap().body,
            TextParams::Positional(2)
        );
        for bad in [
            "A {{1}} and {{3}}.",
            "A {{2}}.",
            "A {{01}}.",
            "A {{ 1 }}.",
            "A {{}}.",
            "A {{1}}{{2}} b.",
            "A {{1}.",
            "{{1}} starts.",
            "Ends {{1}}",
        ] {
            assert!(body(bad).is_err(), "{bad}");
        }
        let named = |text: &str| read(Some("NAMED"), json!([{"type": "BODY", "text": text}]));
        assert!(named("A {{first_name2}}.").is_ok());
        for bad in ["A {{First}}.", "A {{2nd}}.", "A {{first name}}."] {
            assert!(named(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_text_header_with_a_parameter_counts_apart_from_the_body() {
        let shape = read(
            None,
            json!([
                {"type": "HEADER", "format": "TEXT", "text": "Hello {{1}}", "example": {"header_text": ["Pablo"]}},
                {"type": "BODY", "text": "Use {{1}} for {{2}} off.", "example": {"body_text": [["SUMMER20", "10"]]}}
            ]),
        )
        .unwrap();
        assert_eq!(shape.header, Header::Text(TextParams::Positional(1)));
        assert_eq!(shape.body, TextParams::Positional(2));
        // A named header parameter is a name of its own, with its own example list.
        let shape = read(
            Some("NAMED"),
            json!([
                {"type": "HEADER", "format": "TEXT", "text": "For {{customer}}",
                 "example": {"header_text_named_params": [{"param_name": "customer", "example": "Ana"}]}},
                {"type": "BODY", "text": "Hi {{customer}}!"}
            ]),
        )
        .unwrap();
        assert_eq!(shape.header, Header::Text(named(&["customer"])));
        assert_eq!(shape.body, named(&["customer"]));
        // No format but a text: a text header. A fixed text takes nothing.
        let shape = read(None, json!([{"type": "HEADER", "text": "Hi"}])).unwrap();
        assert_eq!(shape.header, Header::Text(TextParams::Positional(0)));
        let two = json!([{"type": "HEADER", "format": "TEXT", "text": "{{1}} {{2}}"}]);
        assert!(read(None, two).is_err());
        let location = json!([{"type": "HEADER", "format": "LOCATION"}]);
        assert_eq!(read(None, location).unwrap().header, Header::Nothing);
        let video = json!([{"type": "header", "format": "video"}]);
        assert_eq!(
            read(None, video).unwrap().header,
            Header::Media(Media::Video)
        );
    }

    #[test]
    fn examples_that_do_not_fit_the_text_are_refused() {
        let body = |format: &str, example: Value| {
            read(
                Some(format),
                json!([{"type": "BODY", "text": "Hi {{a}} and {{b}}.", "example": example}]),
            )
        };
        let names = |list: &[&str]| json!({"body_text_named_params": list.iter().map(|n| json!({"param_name": n, "example": "x"})).collect::<Vec<_>>()});
        assert!(body("NAMED", names(&["b", "a"])).is_ok());
        assert!(body("NAMED", names(&["a"])).is_err());
        assert!(body("NAMED", names(&["a", "b", "c"])).is_err());
        assert!(body("NAMED", names(&["a", "a", "b"])).is_err());
        assert!(body("NAMED", json!({"body_text": [["x", "y"]]})).is_err());
        let positional = |example: Value| {
            read(
                None,
                json!([{"type": "BODY", "text": "Hi {{1}} and {{2}}.", "example": example}]),
            )
        };
        assert!(positional(json!({"body_text": [["x", "y"]]})).is_ok());
        assert!(positional(json!({"body_text": [["x"]]})).is_err());
        assert!(positional(json!({"body_text": "x"})).is_err());
        assert!(positional(names(&["a"])).is_err());
    }

    #[test]
    fn buttons_are_read_by_position_with_what_each_takes() {
        // Meta's types, in a send's `index` order; a FLOW button is not simulated.
        let buttons = read(
            None,
            json!([
                {"type": "BUTTONS", "buttons": [
                    {"type": "QUICK_REPLY", "text": "Stop"},
                    {"type": "URL", "text": "Track", "url": "https://shop.example/t/{{1}}",
                     "example": ["https://shop.example/t/A-1"]},
                    {"type": "COPY_CODE", "example": "SAVE20"},
                    {"type": "OTP", "otp_type": "COPY_CODE"},
                    {"type": "FLOW", "text": "Book", "flow_id": "1"}
                ]}
            ]),
        )
        .unwrap()
        .buttons;
        assert_eq!(
            buttons,
            [
                Button::QuickReply,
                Button::UrlSuffix,
                Button::CouponCode,
                Button::OneTimeCode,
                Button::Unchecked("FLOW".into())
            ]
        );
        let required: Vec<bool> = buttons.iter().map(Button::is_required).collect();
        assert_eq!(required, [false, true, true, true, false]);
        assert_eq!(buttons[3].sub_type(), Some("url"));
        assert_eq!(buttons[4].sub_type(), None);

        let url = |url: &str, example: Value| {
            read(
                None,
                json!([{"type": "BUTTONS", "buttons": [{"type": "URL", "text": "Go", "url": url, "example": example}]}]),
            )
        };
        assert!(url("https://x.example/{{1}}", json!(["https://x.example/abc"])).is_ok());
        assert!(url("https://x.example/{{1}}", json!(["https://y.example/abc"])).is_err());
        assert!(url("https://x.example/{{1}}/view", json!(null)).is_err());
        assert!(url("https://x.example/{{1}}/{{2}}", json!(null)).is_err());
        let long_code = json!([{"type": "BUTTONS", "buttons": [{"type": "COPY_CODE", "example": "THIS-IS-TOO-LONG-1"}]}]);
        assert!(read(None, long_code).is_err());
    }

    #[test]
    fn components_must_be_meta_shaped_and_unknown_ones_take_nothing() {
        assert!(read(None, json!({"type": "BODY"})).is_err());
        assert!(read(None, json!([{"text": "no type"}])).is_err());
        let twice = json!([{"type": "BODY", "text": "a"}, {"type": "body", "text": "b"}]);
        assert!(read(None, twice).is_err());
        let other = json!([
            {"type": "BODY", "text": "Hi."},
            {"type": "LIMITED_TIME_OFFER", "limited_time_offer": {"text": "x", "has_expiration": true}},
            {"type": "CAROUSEL", "cards": [], "example": {"anything": 1}}
        ]);
        let shape = read(None, other).unwrap();
        assert_eq!(shape.body, TextParams::Positional(0));
        assert_eq!(shape.header, Header::Nothing);
        assert!(shape.buttons.is_empty());
    }

    #[test]
    fn languages_are_locale_codes() {
        for good in ["es", "en_US", "pt_BR", "fil", "zh_HK"] {
            assert!(check_locale(good).is_ok(), "{good}");
        }
        for bad in ["", "EN", "en-US", "en_us", "english", "e"] {
            assert!(check_locale(bad).is_err(), "{bad}");
        }
    }
}
