//! Checking one recipient's values against a [`TemplateSpec`] before anything is sent.

use super::*;

impl TemplateSpec {
    /// Checks one recipient's values against the template.
    ///
    /// Reports every problem, in a fixed order: `variables` before `button_variables`; within
    /// each, the expected keys in [`expected_variables`](Self::expected_variables) order (missing
    /// or bad value), then unknown keys sorted by key.
    pub fn validate<V, B>(
        &self,
        variables: &V,
        button_variables: &B,
    ) -> Result<(), Vec<VariableProblem>>
    where
        V: ParameterValues + ?Sized,
        B: ParameterValues + ?Sized,
    {
        let mut problems = Vec::new();

        let slots = self.variable_slots();
        check_values("variables", &slots, variables, &mut problems, |key| {
            let expected = join_keys(slots.iter().map(|(k, _)| k.as_ref()));
            if expected.is_empty() {
                format!(
                    "unknown: the template has no parameter named '{}' (it takes no variables)",
                    quote_key(key)
                )
            } else {
                format!(
                    "unknown: the template has no parameter named '{}' (expected: {expected})",
                    quote_key(key)
                )
            }
        });

        let button_slots: Vec<(Cow<'_, str>, ValueRule)> = self
            .dynamic_buttons()
            .map(|button| {
                let rule = match button.kind {
                    ButtonKind::CopyCode => ValueRule::Coupon,
                    _ => ValueRule::Text,
                };
                (Cow::Owned(button_key(button)), rule)
            })
            .collect();
        check_values(
            "button_variables",
            &button_slots,
            button_variables,
            &mut problems,
            |key| {
                let expected = join_keys(button_slots.iter().map(|(k, _)| k.as_ref()));
                let expected = if expected.is_empty() {
                    "the template has no dynamic buttons".to_owned()
                } else {
                    format!("expected: {expected}")
                };
                match self.buttons.iter().find(|b| button_key(b) == key) {
                    Some(button) => format!(
                        "unknown: button {} is a {} button, which takes no value ({expected})",
                        button.index,
                        button.kind.as_str()
                    ),
                    None => format!(
                        "unknown: the template has no dynamic button '{}' ({expected})",
                        quote_key(key)
                    ),
                }
            },
        );

        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems)
        }
    }
}

/// Checks supplied values against expected slots, then reports unknown keys (sorted).
fn check_values<V, F>(
    map_name: &str,
    slots: &[(Cow<'_, str>, ValueRule)],
    values: &V,
    problems: &mut Vec<VariableProblem>,
    unknown_reason: F,
) where
    V: ParameterValues + ?Sized,
    F: Fn(&str) -> String,
{
    for (key, rule) in slots {
        let reason = match values.value(key) {
            None => Some("missing: the template needs this parameter".to_owned()),
            Some(value) => check_value(*rule, value).err(),
        };
        if let Some(reason) = reason {
            problems.push(VariableProblem {
                field: format!("{map_name}.{key}"),
                reason,
            });
        }
    }
    let mut unknown: Vec<&str> = values
        .keys()
        .filter(|key| !slots.iter().any(|(slot, _)| slot == key))
        .collect();
    unknown.sort_unstable();
    for key in unknown {
        problems.push(VariableProblem {
            field: format!("{map_name}.{key}"),
            reason: unknown_reason(key),
        });
    }
}

fn check_value(rule: ValueRule, value: &str) -> Result<(), String> {
    match rule {
        ValueRule::Text => check_text(value),
        ValueRule::Coupon => {
            check_text(value)?;
            if value.chars().nth(MAX_COUPON_CODE_CHARS).is_some() {
                return Err(format!(
                    "too long: a coupon code has at most {MAX_COUPON_CODE_CHARS} characters"
                ));
            }
            Ok(())
        }
        ValueRule::Media => {
            if is_media_id(value) || is_https_link(value) {
                Ok(())
            } else {
                Err(format!(
                    "invalid: {HEADER_MEDIA_KEY} must be an https:// link or a Meta media id (digits)"
                ))
            }
        }
    }
}

/// Meta's rules for text parameters: not blank, no new-line or tab, at most
/// [`MAX_CONSECUTIVE_SPACES`] spaces in a row, at most [`MAX_TEXT_PARAM_CHARS`] characters.
fn check_text(value: &str) -> Result<(), String> {
    if value.trim().is_empty() {
        return Err("empty: Meta refuses parameter text that is empty or only spaces".to_owned());
    }
    let mut chars = 0usize;
    let mut spaces = 0usize;
    for c in value.chars() {
        chars += 1;
        match c {
            '\n' | '\r' | '\t' => {
                return Err(
                    "invalid: Meta refuses parameter text with new-line or tab characters"
                        .to_owned(),
                );
            }
            ' ' => {
                spaces += 1;
                if spaces > MAX_CONSECUTIVE_SPACES {
                    return Err(format!(
                        "invalid: Meta refuses parameter text with more than \
                         {MAX_CONSECUTIVE_SPACES} consecutive spaces"
                    ));
                }
            }
            _ => spaces = 0,
        }
    }
    if chars > MAX_TEXT_PARAM_CHARS {
        return Err(format!(
            "too long: {chars} characters, Meta accepts at most {MAX_TEXT_PARAM_CHARS}"
        ));
    }
    Ok(())
}

/// `https://` (any case) followed by at least one character, no whitespace or control characters.
fn is_https_link(value: &str) -> bool {
    const SCHEME: &str = "https://";
    let Some((scheme, rest)) = value.split_at_checked(SCHEME.len()) else {
        return false;
    };
    scheme.eq_ignore_ascii_case(SCHEME)
        && !rest.is_empty()
        && !rest.chars().any(|c| c.is_whitespace() || c.is_control())
}

fn join_keys<'a>(keys: impl Iterator<Item = &'a str>) -> String {
    keys.collect::<Vec<_>>().join(", ")
}
