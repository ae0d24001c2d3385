//! Reading Meta's template JSON into a [`TemplateSpec`] (see the parent module's "Reading Meta's
//! JSON").

use super::*;

impl TemplateSpec {
    /// Derives the spec from Meta's `parameter_format` and `components` fields.
    ///
    /// Errors only for what would make every send of the template fail or go out wrong:
    /// `components` not an array, an unknown `parameter_format`, a malformed or unclosed
    /// placeholder, a placeholder of the wrong format, or a `header_media` name clash.
    pub fn from_meta(
        parameter_format: Option<&str>,
        components: &Value,
    ) -> Result<TemplateSpec, TemplateError> {
        let declared = parameter_format
            .map(ParameterFormat::from_str)
            .transpose()?;
        let list = components
            .as_array()
            .ok_or(TemplateError::ComponentsNotArray)?;

        let mut header_obj = None;
        let mut body_obj = None;
        let mut buttons_obj = None;
        for component in list {
            let Some(obj) = component.as_object() else {
                continue;
            };
            let kind = str_field(obj, "type").unwrap_or("");
            let slot = if kind.eq_ignore_ascii_case("HEADER") {
                &mut header_obj
            } else if kind.eq_ignore_ascii_case("BODY") {
                &mut body_obj
            } else if kind.eq_ignore_ascii_case("BUTTONS") {
                &mut buttons_obj
            } else {
                continue;
            };
            if slot.is_none() {
                *slot = Some(obj);
            }
        }

        // Header: text placeholders or media.
        let mut header_placeholders = Vec::new();
        let mut header_media = None;
        if let Some(obj) = header_obj {
            let text = str_field(obj, "text");
            match str_field(obj, "format") {
                Some(format) if format.eq_ignore_ascii_case("TEXT") => {
                    header_placeholders = scan_placeholders(text.unwrap_or(""), "HEADER")?;
                }
                None if text.is_some() => {
                    header_placeholders = scan_placeholders(text.unwrap_or(""), "HEADER")?;
                }
                Some(format) => header_media = MediaKind::from_header_format(format),
                None => {}
            }
        }

        let body_placeholders = match body_obj.and_then(|obj| str_field(obj, "text")) {
            Some(text) => scan_placeholders(text, "BODY")?,
            None => Vec::new(),
        };

        let format = match declared {
            Some(format) => format,
            None => infer_format(&header_placeholders, &body_placeholders),
        };
        check_format("HEADER", &header_placeholders, format)?;
        check_format("BODY", &body_placeholders, format)?;

        let header = match header_media {
            Some(media) => Some(HeaderSpec::Media { media }),
            None if header_placeholders.is_empty() => None,
            None => Some(HeaderSpec::Text {
                params: param_names(&header_placeholders, format),
            }),
        };
        let body_params = param_names(&body_placeholders, format);

        if matches!(header, Some(HeaderSpec::Media { .. }))
            && body_params.iter().any(|name| name == HEADER_MEDIA_KEY)
        {
            return Err(TemplateError::ReservedName);
        }

        let buttons = match buttons_obj.and_then(|obj| obj.get("buttons")) {
            Some(Value::Array(items)) => read_buttons(items)?,
            _ => Vec::new(),
        };

        Ok(TemplateSpec {
            parameter_format: format,
            header,
            body_params,
            buttons,
        })
    }
}

/// A placeholder found in template text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Placeholder<'a> {
    /// `{{first_name}}`.
    Named(&'a str),
    /// `{{3}}`.
    Positional(u16),
}

impl Placeholder<'_> {
    fn written(self) -> String {
        match self {
            Placeholder::Named(name) => format!("{{{{{name}}}}}"),
            Placeholder::Positional(n) => format!("{{{{{n}}}}}"),
        }
    }
}

/// Finds every `{{…}}` in `text`, in order of appearance, failing on a malformed one.
fn scan_placeholders<'a>(
    text: &'a str,
    component: &str,
) -> Result<Vec<Placeholder<'a>>, TemplateError> {
    let mut found = Vec::new();
    let mut rest = text;
    while let Some((_, after_open)) = rest.split_once("{{") {
        let Some((inner, after_close)) = after_open.split_once("}}") else {
            return Err(TemplateError::UnclosedPlaceholder {
                component: component.to_owned(),
                snippet: snippet(&format!("{{{{{after_open}")),
            });
        };
        let placeholder =
            classify_placeholder(inner).map_err(|problem| TemplateError::MalformedPlaceholder {
                component: component.to_owned(),
                snippet: snippet(&format!("{{{{{inner}}}}}")),
                problem,
            })?;
        found.push(placeholder);
        rest = after_close;
    }
    Ok(found)
}

/// What is between `{{` and `}}`: a number from 1 or a lowercase name.
fn classify_placeholder(inner: &str) -> Result<Placeholder<'_>, &'static str> {
    if inner.trim().is_empty() {
        return Err("it is empty");
    }
    if inner.bytes().all(|b| b.is_ascii_digit()) {
        if inner.starts_with('0') {
            return Err("positional numbers start at 1 and have no leading zeros");
        }
        return inner
            .parse::<u16>()
            .map(Placeholder::Positional)
            .map_err(|_| "the number is too large");
    }
    if inner
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    {
        return Ok(Placeholder::Named(inner));
    }
    Err("a placeholder is a number or a name of lowercase letters, digits and underscores")
}

/// A missing `parameter_format`: POSITIONAL unless every placeholder is named.
fn infer_format(header: &[Placeholder<'_>], body: &[Placeholder<'_>]) -> ParameterFormat {
    let mut all = header.iter().chain(body);
    let any_named = all.clone().any(|p| matches!(p, Placeholder::Named(_)));
    if any_named && all.all(|p| matches!(p, Placeholder::Named(_))) {
        ParameterFormat::Named
    } else {
        ParameterFormat::Positional
    }
}

fn check_format(
    component: &str,
    placeholders: &[Placeholder<'_>],
    format: ParameterFormat,
) -> Result<(), TemplateError> {
    let wrong = placeholders.iter().find(|p| match format {
        ParameterFormat::Named => matches!(p, Placeholder::Positional(_)),
        ParameterFormat::Positional => matches!(p, Placeholder::Named(_)),
    });
    match wrong {
        Some(placeholder) => Err(TemplateError::FormatMismatch {
            component: component.to_owned(),
            placeholder: placeholder.written(),
            format,
        }),
        None => Ok(()),
    }
}

/// Parameter names in sending order: NAMED by first appearance, POSITIONAL numerically; both
/// deduplicated. Placeholders of the other format were rejected by [`check_format`].
fn param_names(placeholders: &[Placeholder<'_>], format: ParameterFormat) -> Vec<String> {
    match format {
        ParameterFormat::Named => {
            let mut names: Vec<String> = Vec::new();
            for placeholder in placeholders {
                match placeholder {
                    Placeholder::Named(name) if !names.iter().any(|n| n == name) => {
                        names.push((*name).to_owned());
                    }
                    _ => {}
                }
            }
            names
        }
        ParameterFormat::Positional => {
            let mut numbers: Vec<u16> = placeholders
                .iter()
                .filter_map(|p| match p {
                    Placeholder::Positional(n) => Some(*n),
                    Placeholder::Named(_) => None,
                })
                .collect();
            numbers.sort_unstable();
            numbers.dedup();
            numbers.into_iter().map(|n| n.to_string()).collect()
        }
    }
}

fn read_buttons(items: &[Value]) -> Result<Vec<ButtonSpec>, TemplateError> {
    let mut buttons = Vec::with_capacity(items.len());
    for (index, item) in items.iter().enumerate() {
        let obj = item.as_object();
        let kind = obj.and_then(|o| str_field(o, "type")).map_or(
            ButtonKind::Other("UNKNOWN".to_owned()),
            ButtonKind::from_meta,
        );
        let dynamic = match kind {
            ButtonKind::Url => match obj.and_then(|o| str_field(o, "url")) {
                Some(url) => !scan_placeholders(url, &format!("BUTTONS[{index}].url"))?.is_empty(),
                None => false,
            },
            ButtonKind::CopyCode | ButtonKind::Otp => true,
            _ => false,
        };
        buttons.push(ButtonSpec {
            index,
            kind,
            dynamic,
        });
    }
    Ok(buttons)
}

fn str_field<'a>(obj: &'a Map<String, Value>, key: &str) -> Option<&'a str> {
    obj.get(key).and_then(Value::as_str)
}
