//! The `recipients` of a send-bulk body, read straight from the JSON text into compact
//! records: a phone, and variables as (name, value) pairs.
//!
//! Read as a `serde_json::Value` tree first, a recipient of 65 bytes of JSON cost about
//! 1.4 KB (two B-tree nodes of 11 slots, a boxed value per field), so a 100 000-recipient
//! request held ~150 MB before any check ran. Read here it costs about three times its text
//! (a whole create in flight, about eight times its body: bench/README.md, `burst`).
//! Reading stays lenient: a field of the wrong type is recorded with the type it had, not an
//! error that stops the parse, so that every problem of every recipient can be reported.

use std::fmt;

use serde::de::{Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

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
    Object {
        phone: Text,
        variables: Strings,
        button_variables: Strings,
    },
    /// Not an object.
    Not(Kind),
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
                Ok(RawRecipient::Object {
                    phone,
                    variables,
                    button_variables,
                })
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
            RawRecipient::Object {
                phone: Text::Is(phone),
                ..
            } => Some(phone),
            _ => None,
        }
    }
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
                RawRecipient::Object {
                    phone: Text::Is("+1 202".into()),
                    variables: Strings::Entries(vec![
                        ("a".into(), Ok("y".into())),
                        ("b".into(), Err(Kind::Number)),
                    ]),
                    button_variables: Strings::None,
                },
                RawRecipient::Object {
                    phone: Text::Not(Kind::Number),
                    variables: Strings::None,
                    button_variables: Strings::Not(Kind::String),
                },
                RawRecipient::Object {
                    phone: Text::Missing,
                    variables: Strings::Not(Kind::Array),
                    button_variables: Strings::None,
                },
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
}
