//! The `recipients` of a send-bulk body, read straight from the JSON text into compact
//! records (a phone, and variables as (name, value) pairs), then validated by
//! `domain::recipients`, whose problems are mapped here to the error body's items.
//!
//! Read as a `serde_json::Value` tree first, a recipient of 65 bytes of JSON cost about
//! 1.4 KB (two B-tree nodes of 11 slots, a boxed value per field), so a 100 000-recipient
//! request held ~150 MB before any check ran. Read here it costs about three times its text
//! (a whole create in flight, about eight times its body: bench/README.md, `burst`).
//! Reading stays lenient: a field of the wrong type is recorded with the type it had, not an
//! error that stops the parse, so that every problem of every recipient can be reported.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use utoipa::ToSchema;

use super::error::{ErrorItem, MAX_ERRORS};
use crate::domain::phone::E164;
use crate::domain::recipients::{check_phone, check_values, parse_phones, Problem, Unique, Values};
use crate::domain::template::TemplateSpec;

/// A JSON value's kind, as problems name it (`must be a string, not a number`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Null,
    Boolean,
    Number,
    String,
    Array,
    Object,
}

impl Kind {
    /// `null`, `a boolean`, `a number`, `a string`, `an array`, `an object`.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Null => "null",
            Kind::Boolean => "a boolean",
            Kind::Number => "a number",
            Kind::String => "a string",
            Kind::Array => "an array",
            Kind::Object => "an object",
        }
    }
}

/// A field that should be a string.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Text {
    Missing,
    Is(String),
    /// Present with another kind of value.
    Not(Kind),
}

/// A field that should be an object of strings (`variables`, `button_variables`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Strings {
    /// Absent or `null`: no values.
    #[default]
    None,
    /// The object's entries in document order; `Err` holds the kind of a non-string value.
    Entries(Vec<(String, Result<String, Kind>)>),
    /// Present with another kind of value.
    Not(Kind),
}

/// One item of `recipients`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RawRecipient {
    Object(Recipient),
    /// Not an object.
    Not(Kind),
}

/// One recipient object as read. Its schema (what `/openapi.json` shows) is what a valid
/// recipient holds; the fields record what any other value was, to report it.
#[derive(Clone, Debug, PartialEq, Eq, ToSchema)]
pub struct Recipient {
    /// International format; normalised to E.164.
    #[schema(value_type = String)]
    pub phone: Text,
    /// The template's parameter names (NAMED) or `"1"`, `"2"`, … (POSITIONAL) → values.
    #[schema(value_type = Option<BTreeMap<String, String>>, required = false)]
    pub variables: Strings,
    /// `button_0`, `button_1`, … (0-based button index) → values, for dynamic buttons.
    #[schema(value_type = Option<BTreeMap<String, String>>, required = false)]
    pub button_variables: Strings,
}

/// Reads any value, keeping a string and only the kind of anything else (whose contents
/// are skipped, never built).
struct KindOrString;

impl<'de> Visitor<'de> for KindOrString {
    type Value = Result<String, Kind>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(Err(Kind::Boolean))
    }
    fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
        Ok(Err(Kind::Number))
    }
    fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
        Ok(Err(Kind::Number))
    }
    fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
        Ok(Err(Kind::Number))
    }
    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Ok(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
        Ok(Ok(v))
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(Err(Kind::Null))
    }
    fn visit_none<E>(self) -> Result<Self::Value, E> {
        Ok(Err(Kind::Null))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Err(Kind::Array))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Err(Kind::Object))
    }
}

struct Loose(Result<String, Kind>);

impl<'de> Deserialize<'de> for Loose {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Loose, D::Error> {
        d.deserialize_any(KindOrString).map(Loose)
    }
}

impl<'de> Deserialize<'de> for Strings {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Strings, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Strings;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object of strings")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Strings, A::Error> {
                let mut entries: Vec<(String, Result<String, Kind>)> = Vec::new();
                while let Some((key, Loose(value))) = map.next_entry::<String, Loose>()? {
                    // A repeated key: the last one wins, as in any JSON object reader.
                    match entries.iter_mut().find(|(k, _)| *k == key) {
                        Some(entry) => entry.1 = value,
                        None => entries.push((key, value)),
                    }
                }
                Ok(Strings::Entries(entries))
            }
            fn visit_unit<E>(self) -> Result<Strings, E> {
                Ok(Strings::None)
            }
            fn visit_none<E>(self) -> Result<Strings, E> {
                Ok(Strings::None)
            }
            fn visit_bool<E>(self, _: bool) -> Result<Strings, E> {
                Ok(Strings::Not(Kind::Boolean))
            }
            fn visit_i64<E>(self, _: i64) -> Result<Strings, E> {
                Ok(Strings::Not(Kind::Number))
            }
            fn visit_u64<E>(self, _: u64) -> Result<Strings, E> {
                Ok(Strings::Not(Kind::Number))
            }
            fn visit_f64<E>(self, _: f64) -> Result<Strings, E> {
                Ok(Strings::Not(Kind::Number))
            }
            fn visit_str<E>(self, _: &str) -> Result<Strings, E> {
                Ok(Strings::Not(Kind::String))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Strings, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Strings::Not(Kind::Array))
            }
        }
        d.deserialize_any(V)
    }
}

impl<'de> Deserialize<'de> for RawRecipient {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<RawRecipient, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawRecipient;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a recipient object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawRecipient, A::Error> {
                let mut phone = Text::Missing;
                let mut variables = Strings::None;
                let mut button_variables = Strings::None;
                while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
                    match key.as_ref() {
                        "phone" => {
                            phone = match map.next_value::<Loose>()?.0 {
                                Ok(text) => Text::Is(text),
                                Err(kind) => Text::Not(kind),
                            }
                        }
                        "variables" => variables = map.next_value()?,
                        "button_variables" => button_variables = map.next_value()?,
                        _ => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(RawRecipient::Object(Recipient {
                    phone,
                    variables,
                    button_variables,
                }))
            }
            fn visit_bool<E>(self, _: bool) -> Result<RawRecipient, E> {
                Ok(RawRecipient::Not(Kind::Boolean))
            }
            fn visit_i64<E>(self, _: i64) -> Result<RawRecipient, E> {
                Ok(RawRecipient::Not(Kind::Number))
            }
            fn visit_u64<E>(self, _: u64) -> Result<RawRecipient, E> {
                Ok(RawRecipient::Not(Kind::Number))
            }
            fn visit_f64<E>(self, _: f64) -> Result<RawRecipient, E> {
                Ok(RawRecipient::Not(Kind::Number))
            }
            fn visit_str<E>(self, _: &str) -> Result<RawRecipient, E> {
                Ok(RawRecipient::Not(Kind::String))
            }
            fn visit_unit<E>(self) -> Result<RawRecipient, E> {
                Ok(RawRecipient::Not(Kind::Null))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<RawRecipient, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(RawRecipient::Not(Kind::Array))
            }
        }
        d.deserialize_any(V)
    }
}

impl RawRecipient {
    /// The phone, when it is a string.
    pub fn phone(&self) -> Option<&str> {
        match self {
            RawRecipient::Object(Recipient {
                phone: Text::Is(phone),
                ..
            }) => Some(phone),
            _ => None,
        }
    }
}

/// A recipient that passed validation, its values already in the JSON they are stored as.
pub struct ValidRecipient {
    pub phone: E164,
    pub variables: String,
    pub button_variables: String,
}

/// The outcome of validating every recipient.
pub struct Validated {
    /// The valid recipients, each phone once, in request order.
    pub unique: Vec<ValidRecipient>,
    /// Indexes that failed validation.
    pub invalid: usize,
    /// The first problems found (one more than shown, to flag truncation).
    pub errors: Vec<ErrorItem>,
}

/// The first problems found: one more than an answer shows, so that it can say it
/// truncated them.
struct Report(Vec<ErrorItem>);

impl Report {
    fn add(&mut self, item: ErrorItem) {
        if self.0.len() <= MAX_ERRORS {
            self.0.push(item);
        }
    }

    /// A problem the domain found with the recipient at `index`; the value it echoes is
    /// truncated.
    fn problem(&mut self, index: usize, problem: Problem) {
        let item = ErrorItem::new(problem.field, problem.reason).at(index);
        self.add(match problem.value {
            Some(value) => item.with_value(truncate(value.as_str())),
            None => item,
        });
    }
}

/// Validates every recipient (`domain::recipients`): phone normalised to E.164, variables
/// and button variables exactly as the template needs, duplicates dropped (the first
/// occurrence wins); here, what the JSON held where a string belongs is reported too. Each
/// recipient is let go once checked.
pub fn validate(recipients: Vec<RawRecipient>, spec: &TemplateSpec) -> Validated {
    let parsed_phones = parse_phones(&recipients, RawRecipient::phone);
    let mut unique = Unique::with_capacity(recipients.len());
    let mut invalid = 0;
    let mut report = Report(Vec::new());
    for ((index, recipient), parsed) in recipients.into_iter().enumerate().zip(parsed_phones) {
        let RawRecipient::Object(Recipient {
            phone,
            variables,
            button_variables,
        }) = recipient
        else {
            report.add(ErrorItem::new("recipient", "must be an object with a phone").at(index));
            invalid += 1;
            continue;
        };
        let phone = match phone {
            Text::Is(raw) => check_phone(&raw, parsed)
                .map_err(|problem| report.problem(index, problem))
                .ok(),
            Text::Not(kind) => {
                report.add(
                    ErrorItem::new("phone", format!("must be a string, not {}", kind.name()))
                        .at(index),
                );
                None
            }
            Text::Missing => {
                report.add(ErrorItem::new("phone", "is required").at(index));
                None
            }
        };
        let variables = string_map(variables, "variables", index, &mut report);
        let buttons = string_map(button_variables, "button_variables", index, &mut report);
        let values_fit = match (&variables, &buttons) {
            (Some(variables), Some(buttons)) => {
                let problems = check_values(spec, variables, buttons);
                let fit = problems.is_empty();
                for problem in problems {
                    report.problem(index, problem);
                }
                fit
            }
            _ => false,
        };
        match (phone, variables, buttons) {
            (Some(phone), Some(variables), Some(button_variables)) if values_fit => {
                let stored =
                    |values: &Values| serde_json::to_string(values).unwrap_or_else(|_| "{}".into());
                unique.add(phone, |phone| ValidRecipient {
                    phone,
                    variables: stored(&variables),
                    button_variables: stored(&button_variables),
                });
            }
            _ => invalid += 1,
        }
    }
    Validated {
        unique: unique.into_vec(),
        invalid,
        errors: report.0,
    }
}

/// Reads an optional object of strings (in key order, as a JSON object reader would give
/// them); reports each value that is not a string.
fn string_map(value: Strings, field: &str, index: usize, report: &mut Report) -> Option<Values> {
    let entries = match value {
        Strings::None => return Some(Values::new()),
        Strings::Not(kind) => {
            report.add(
                ErrorItem::new(
                    field,
                    format!("must be an object of strings, not {}", kind.name()),
                )
                .at(index),
            );
            return None;
        }
        Strings::Entries(entries) => entries,
    };
    let mut out = Values::new();
    let mut wrong = BTreeMap::new();
    for (key, value) in entries {
        match value {
            Ok(text) => {
                out.insert(key, text);
            }
            Err(kind) => {
                wrong.insert(key, kind);
            }
        }
    }
    for (key, kind) in &wrong {
        report.add(
            ErrorItem::new(
                format!("{field}.{}", truncate(key)),
                format!("must be a string, not {}", kind.name()),
            )
            .at(index),
        );
    }
    wrong.is_empty().then_some(out)
}

/// At most 64 characters of user input echoed back in an error.
fn truncate(s: &str) -> String {
    s.chars().take(64).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(json: &str) -> Vec<RawRecipient> {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn recipients_are_read_with_the_kind_of_every_wrong_field() {
        let got = read(
            r#"[
                {"phone": "+1 202", "variables": {"a": "x", "b": 5, "a": "y"}, "extra": [1, {"z": 2}]},
                {"phone": 7, "variables": null, "button_variables": "x"},
                {"variables": [1, 2]},
                "x", 1, null, [{}], true
            ]"#,
        );
        assert_eq!(
            got,
            vec![
                RawRecipient::Object(Recipient {
                    phone: Text::Is("+1 202".into()),
                    variables: Strings::Entries(vec![
                        ("a".into(), Ok("y".into())),
                        ("b".into(), Err(Kind::Number)),
                    ]),
                    button_variables: Strings::None,
                }),
                RawRecipient::Object(Recipient {
                    phone: Text::Not(Kind::Number),
                    variables: Strings::None,
                    button_variables: Strings::Not(Kind::String),
                }),
                RawRecipient::Object(Recipient {
                    phone: Text::Missing,
                    variables: Strings::Not(Kind::Array),
                    button_variables: Strings::None,
                }),
                RawRecipient::Not(Kind::String),
                RawRecipient::Not(Kind::Number),
                RawRecipient::Not(Kind::Null),
                RawRecipient::Not(Kind::Array),
                RawRecipient::Not(Kind::Boolean),
            ]
        );
        assert_eq!(got[0].phone(), Some("+1 202"));
        assert_eq!(got[1].phone(), None);
    }

    #[test]
    fn malformed_json_is_still_an_error() {
        assert!(serde_json::from_str::<Vec<RawRecipient>>(r#"[{"phone": "+1",}]"#).is_err());
        assert!(serde_json::from_str::<Vec<RawRecipient>>(r#"[{"phone": }]"#).is_err());
    }

    #[test]
    fn validation_reports_each_problem_in_order_and_keeps_the_first_of_each_number() {
        let components = serde_json::json!([{"type": "BODY", "text": "Hola {{name}}",
            "example": {"body_text_named_params": [{"param_name": "name", "example": "Ana"}]}}]);
        let spec = TemplateSpec::from_meta(Some("NAMED"), &components).unwrap();
        let long = format!("+1{}", "9".repeat(80));
        let recipients = read(&format!(
            r#"[
                {{"phone": "+54 9 11 3000-0001", "variables": {{"name": "Ana"}}}},
                {{"phone": "{long}", "variables": {{"name": 5, "zz": "x"}}, "button_variables": []}},
                {{"phone": "0054 9 11 3000 0001", "variables": {{"name": "Bea"}}}},
                {{"variables": {{"nombre": "Ana"}}}},
                7
            ]"#
        ));
        let validated = validate(recipients, &spec);
        let phones: Vec<&str> = validated.unique.iter().map(|r| r.phone.as_str()).collect();
        assert_eq!(phones, ["+5491130000001"]);
        assert_eq!(validated.unique[0].variables, r#"{"name":"Ana"}"#);
        assert_eq!(validated.invalid, 3);
        let errors: Vec<serde_json::Value> = validated
            .errors
            .iter()
            .map(|e| serde_json::to_value(e).unwrap())
            .collect();
        let phone_reason = E164::parse(&long).unwrap_err().reason();
        assert_eq!(
            errors,
            [
                serde_json::json!({"index": 1, "field": "phone", "value": &long[..64], "reason": phone_reason}),
                serde_json::json!({"index": 1, "field": "variables.name", "reason": "must be a string, not a number"}),
                serde_json::json!({"index": 1, "field": "button_variables", "reason": "must be an object of strings, not an array"}),
                serde_json::json!({"index": 3, "field": "phone", "reason": "is required"}),
                errors[4].clone(),
                errors[5].clone(),
                serde_json::json!({"index": 4, "field": "recipient", "reason": "must be an object with a phone"}),
            ]
        );
        assert_eq!(errors[4]["index"], 3);
        assert_eq!(errors[4]["field"], "variables.name");
        assert_eq!(errors[5]["field"], "variables.nombre");
        assert_eq!(errors[5]["index"], 3);
    }

    #[test]
    fn at_most_one_problem_more_than_shown_is_kept() {
        let spec = TemplateSpec::from_meta(Some("POSITIONAL"), &serde_json::json!([])).unwrap();
        let recipients = read(&format!("[{}1]", "null, ".repeat(500)));
        let validated = validate(recipients, &spec);
        assert_eq!(validated.invalid, 501);
        assert_eq!(validated.errors.len(), MAX_ERRORS + 1);
    }
}
