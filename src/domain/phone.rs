//! Recipient phone numbers as E.164 strings (`+` followed by digits).
//!
//! Every phone number that reaches Meta goes through [`E164`]. Meta prepends the *sender's* country
//! code to a number sent without a leading `+` (META.md §1), so a number that is not unambiguous
//! E.164 would silently reach the wrong person; this module is where that can no longer happen.
//!
//! Two ways in:
//! - [`E164::parse`] for what API clients send (`recipients[].phone`): forgiving about punctuation,
//!   strict about meaning. The number must be in international format and must be valid for its
//!   country's numbering plan (checked with the `rlibphonenumber` crate, a port of Google's
//!   libphonenumber), so typos are rejected before they cost a send.
//! - [`E164::from_wa_id`] for what Meta itself reports (`wa_id`, `recipient_id` in webhooks and send
//!   responses): digits without `+`, trusted as they are.
//!
//! Normalisation performed by [`E164::parse`], in order:
//! 1. trim surrounding whitespace; reject more than [`MAX_INPUT_CHARS`] characters (before any
//!    further work, so a huge input costs nothing);
//! 2. drop separators: any Unicode whitespace, dashes (ASCII and Unicode dashes/minus), dots,
//!    parentheses, slashes, and invisible formatting marks (zero-width and bidi controls, which
//!    appear when numbers are copied out of chat apps);
//! 3. a leading `00` becomes `+`; a number of bare digits is taken as international and gets `+`;
//! 4. what remains must be `+` followed by ASCII digits only;
//! 5. parse it with no default region and require the library's `is_valid`;
//! 6. the result is the library's E.164 rendering.
//!
//! Argentina's mobile `9` is kept as the numbering plan wants it: `+54 9 223 675-0780` becomes
//! `+5492236750780`.

use std::fmt;

use rlibphonenumber::{ParseError, PhoneNumber, PhoneNumberFormat};
use serde::{Deserialize, Serialize};

/// Inputs longer than this many characters (after trimming) are rejected unparsed.
pub const MAX_INPUT_CHARS: usize = 64;

/// Most digits an E.164 number can have (country code included), per ITU-T E.164.
pub const MAX_E164_DIGITS: usize = 15;

/// Most digits handed to the numbering-plan library. Higher than [`MAX_E164_DIGITS`] because an
/// international number may still carry a national trunk prefix that the library strips
/// (`+44 (0)7911 123456`); the library's own limit is 3 (country code) + 17 (national number).
const MAX_DIGITS_TO_PARSE: usize = 20;

/// A phone number in E.164 form: `+` followed by 1 to [`MAX_E164_DIGITS`] ASCII digits.
///
/// The invariant holds for every value, however it was built: [`E164::parse`] and
/// [`E164::from_wa_id`] guarantee it, and deserialisation checks the same shape (but not the
/// numbering plan, so stored values stay readable when the library's metadata changes).
/// Serialises as the plain string, e.g. `"+5491112345678"`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct E164(String);

/// Why a phone number was rejected. `Display` (and [`PhoneError::reason`]) gives a short phrase
/// meant to follow the field name in an API error body, e.g. `phone is too long`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PhoneError {
    /// Nothing left after trimming.
    #[error("is empty")]
    Empty,
    /// More than [`MAX_INPUT_CHARS`] characters, or more digits than any phone number has.
    #[error("is too long")]
    TooLong,
    /// Separators only, no digit at all (e.g. `"+"` or `"( )"`).
    #[error("contains no digits")]
    NoDigits,
    /// Something other than digits, separators and one leading `+` or `00`
    /// (letters, emoji, a second `+`, ...).
    #[error("contains characters that are not digits")]
    InvalidCharacters,
    /// The numbering-plan library could not make a phone number of it (too short, unknown
    /// country code, ...). The payload says what the library found.
    #[error("could not be parsed: {0}")]
    Unparseable(String),
    /// Parsed, but not a number that can exist in its country's numbering plan.
    #[error("is not a valid number for its numbering plan")]
    NotValid,
}

impl PhoneError {
    /// The human reason text for an API error body (same as `Display`).
    pub fn reason(&self) -> String {
        self.to_string()
    }
}

impl E164 {
    /// Parses a recipient's phone number given in international format (see the module docs for
    /// the exact normalisation) and checks it against its numbering plan.
    pub fn parse(input: &str) -> Result<E164, PhoneError> {
        let trimmed = input.trim();
        if trimmed.is_empty() {
            return Err(PhoneError::Empty);
        }
        if trimmed.chars().nth(MAX_INPUT_CHARS).is_some() {
            return Err(PhoneError::TooLong);
        }
        let candidate = normalise(trimmed)?;
        let number = PhoneNumber::parse(&candidate, None)
            .map_err(|err| PhoneError::Unparseable(describe_parse_error(&err).to_owned()))?;
        if !number.is_valid() {
            return Err(PhoneError::NotValid);
        }
        let formatted = number.format_as(PhoneNumberFormat::E164).into_owned();
        if !is_e164_shape(&formatted) {
            // A "valid" number longer than E.164 allows cannot be sent through Meta anyway.
            return Err(PhoneError::TooLong);
        }
        Ok(E164(formatted))
    }

    /// Builds an [`E164`] from a WhatsApp id as Meta reports it (`wa_id`, `recipient_id`): 1 to
    /// [`MAX_E164_DIGITS`] ASCII digits, no `+`. No numbering-plan check: Meta's ids are
    /// authoritative. Returns `None` for anything else.
    pub fn from_wa_id(wa_id: &str) -> Option<E164> {
        if wa_id.is_empty()
            || wa_id.len() > MAX_E164_DIGITS
            || !wa_id.bytes().all(|b| b.is_ascii_digit())
        {
            return None;
        }
        let mut number = String::with_capacity(wa_id.len() + 1);
        number.push('+');
        number.push_str(wa_id);
        Some(E164(number))
    }

    /// The number as `+` and digits.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The number as `+` and digits, giving up ownership.
    pub fn into_string(self) -> String {
        self.0
    }

    /// The digits without the `+`: the form Meta uses for `wa_id`.
    pub fn digits(&self) -> &str {
        self.0.strip_prefix('+').unwrap_or(&self.0)
    }
}

impl fmt::Display for E164 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for E164 {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl From<E164> for String {
    fn from(number: E164) -> String {
        number.0
    }
}

impl TryFrom<String> for E164 {
    type Error = String;

    /// Accepts a string already in E.164 shape (`+` and 1..=15 digits), as stored or
    /// serialised earlier. No normalisation and no numbering-plan check.
    fn try_from(value: String) -> Result<Self, Self::Error> {
        if is_e164_shape(&value) {
            Ok(E164(value))
        } else {
            Err("expected an E.164 phone number: '+' followed by 1 to 15 digits".to_owned())
        }
    }
}

/// `+` followed by 1..=[`MAX_E164_DIGITS`] ASCII digits.
fn is_e164_shape(value: &str) -> bool {
    match value.strip_prefix('+') {
        Some(digits) => {
            !digits.is_empty()
                && digits.len() <= MAX_E164_DIGITS
                && digits.bytes().all(|b| b.is_ascii_digit())
        }
        None => false,
    }
}

/// Characters dropped anywhere in the input: visual separators people type or paste.
fn is_separator(c: char) -> bool {
    c.is_whitespace()
        || matches!(
            c,
            '-' | '.' | '(' | ')' | '/' | '\\'
            // Unicode hyphens and dashes, minus sign.
            | '\u{2010}'..='\u{2015}' | '\u{2212}'
            // Zero-width spaces/joiners, bidi marks and embeddings, word joiner, BOM.
            | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{2064}'
            | '\u{2066}'..='\u{2069}' | '\u{FEFF}'
        )
}

/// Steps 2 to 4 of the module docs: returns `+` followed by ASCII digits, ready for the library.
fn normalise(trimmed: &str) -> Result<String, PhoneError> {
    let mut compact = String::with_capacity(trimmed.len() + 1);
    for c in trimmed.chars() {
        if !is_separator(c) {
            compact.push(c);
        }
    }
    let digits = if let Some(rest) = compact.strip_prefix('+') {
        rest
    } else if let Some(rest) = compact.strip_prefix("00") {
        rest
    } else {
        compact.as_str()
    };
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(PhoneError::InvalidCharacters);
    }
    if digits.is_empty() {
        return Err(PhoneError::NoDigits);
    }
    if digits.len() > MAX_DIGITS_TO_PARSE {
        return Err(PhoneError::TooLong);
    }
    let mut candidate = String::with_capacity(digits.len() + 1);
    candidate.push('+');
    candidate.push_str(digits);
    Ok(candidate)
}

/// Our wording for the library's parse errors (its own texts are terse and may change).
fn describe_parse_error(err: &ParseError) -> &'static str {
    match err {
        ParseError::NotANumber(_) => "no phone number found",
        ParseError::InvalidCountryCode => "the country calling code does not exist",
        ParseError::TooShortAfterIdd | ParseError::TooShortNsn => {
            "too few digits after the country calling code"
        }
        ParseError::TooLongNsn => "too many digits for a phone number",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(input: &str) -> String {
        match E164::parse(input) {
            Ok(number) => number.into_string(),
            Err(err) => panic!("{input:?} should parse, got: {err}"),
        }
    }

    fn err(input: &str) -> PhoneError {
        match E164::parse(input) {
            Ok(number) => panic!("{input:?} should be rejected, got {number}"),
            Err(err) => err,
        }
    }

    #[test]
    fn argentina_mobiles_keep_the_nine() {
        assert_eq!(ok("+54 9 223 675-0780"), "+5492236750780");
        assert_eq!(ok("+5491112345678"), "+5491112345678");
        assert_eq!(ok("0054 9 11 1234-5678"), "+5491112345678");
        assert_eq!(ok("5491112345678"), "+5491112345678");
    }

    #[test]
    fn mobiles_of_other_countries() {
        assert_eq!(ok("+1 650 555 1234"), "+16505551234"); // US
        assert_eq!(ok("(+1) 650.555.1234"), "+16505551234");
        assert_eq!(ok("+1 (650) 555-1234"), "+16505551234");
        assert_eq!(ok("+34 612 34 56 78"), "+34612345678"); // Spain
        assert_eq!(ok("+55 11 91234-5678"), "+5511912345678"); // Brazil, São Paulo
        assert_eq!(ok("+44 7911 123456"), "+447911123456"); // UK
        assert_eq!(ok("0044 7911/123456"), "+447911123456");
    }

    #[test]
    fn bare_digits_are_international() {
        assert_eq!(ok("16505551234"), "+16505551234");
        assert_eq!(ok("34612345678"), "+34612345678");
    }

    #[test]
    fn unicode_whitespace_dashes_and_invisible_marks_are_dropped() {
        assert_eq!(
            ok("\u{202A}+54 9 11 1234\u{2011}5678\u{202C}"),
            "+5491112345678"
        );
        assert_eq!(ok("+34\u{00A0}612\u{2009}345\u{2013}678"), "+34612345678");
        assert_eq!(ok("\t +44 7911 123456 \n"), "+447911123456");
    }

    #[test]
    fn empty_and_blank_are_empty() {
        assert_eq!(err(""), PhoneError::Empty);
        assert_eq!(err("   \t"), PhoneError::Empty);
    }

    #[test]
    fn separators_without_digits() {
        assert_eq!(err("+"), PhoneError::NoDigits);
        assert_eq!(err("( - )"), PhoneError::NoDigits);
        assert_eq!(err("00"), PhoneError::NoDigits);
    }

    #[test]
    fn too_short_is_unparseable() {
        let e = err("+12");
        assert!(matches!(e, PhoneError::Unparseable(_)), "{e:?}");
        assert!(e.reason().starts_with("could not be parsed: "), "{e}");
    }

    #[test]
    fn numbering_plan_is_checked() {
        assert_eq!(err("+1 555 0100"), PhoneError::NotValid);
        assert_eq!(err("+1 555 555 0100"), PhoneError::NotValid); // no area code 555
        assert_eq!(err("+54 9 11 1234"), PhoneError::NotValid);
    }

    #[test]
    fn unknown_country_code() {
        let e = err("+999 1234 5678");
        assert!(matches!(e, PhoneError::Unparseable(_)), "{e:?}");
    }

    #[test]
    fn non_digits_are_rejected() {
        for input in [
            "abc",
            "++5491112345678",
            "+54+91112345678",
            "+54 9 11 1234-567a",
            "+54 9 11 CALL-NOW",
            "+54 9 11 1234 5678 📞",
            "📞",
            "+54_9_11_1234_5678",
            "+５４９１１１２３４５６７８", // full-width digits
            "tel:+5491112345678",
            "+5491112345678 ext. 12",
        ] {
            assert_eq!(err(input), PhoneError::InvalidCharacters, "{input:?}");
        }
    }

    #[test]
    fn long_inputs_are_rejected_before_parsing() {
        let sixty_five = format!("+{}", "1".repeat(64));
        assert_eq!(sixty_five.chars().count(), 65);
        assert_eq!(err(&sixty_five), PhoneError::TooLong);
        // 65 characters of which most are spaces: still too long.
        let padded = format!("+54{}91112345678", " ".repeat(51));
        assert_eq!(padded.chars().count(), 65);
        assert_eq!(err(&padded), PhoneError::TooLong);
        // 64 characters are accepted.
        let padded = format!("+54{}91112345678", " ".repeat(50));
        assert_eq!(ok(&padded), "+5491112345678");
        // Too many digits for any number, within 64 characters.
        assert_eq!(err(&"9".repeat(40)), PhoneError::TooLong);
        // Multi-byte characters count as one each.
        assert_eq!(err(&"é".repeat(40)), PhoneError::InvalidCharacters);
    }

    #[test]
    fn reasons_read_well() {
        assert_eq!(PhoneError::Empty.reason(), "is empty");
        assert_eq!(PhoneError::TooLong.reason(), "is too long");
        assert_eq!(
            PhoneError::InvalidCharacters.reason(),
            "contains characters that are not digits"
        );
        assert_eq!(
            PhoneError::NotValid.reason(),
            "is not a valid number for its numbering plan"
        );
        assert_eq!(
            PhoneError::Unparseable("x".into()).to_string(),
            "could not be parsed: x"
        );
    }

    #[test]
    fn wa_ids() {
        let n = E164::from_wa_id("5491112345678").unwrap();
        assert_eq!(n.as_str(), "+5491112345678");
        assert_eq!(n.digits(), "5491112345678");
        assert_eq!(E164::from_wa_id("1").unwrap().as_str(), "+1");
        assert!(E164::from_wa_id("123456789012345").is_some());
        for bad in [
            "",
            "+5491112345678",
            "1234567890123456",
            "54 911",
            "54a",
            "٣٤",
        ] {
            assert_eq!(E164::from_wa_id(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn wa_id_and_parse_agree() {
        assert_eq!(
            E164::from_wa_id("5492236750780"),
            E164::parse("+54 9 223 675-0780").ok()
        );
    }

    #[test]
    fn display_and_conversions() {
        let n = E164::parse("+44 7911 123456").unwrap();
        assert_eq!(n.to_string(), "+447911123456");
        assert_eq!(format!("to {n}"), "to +447911123456");
        let as_ref: &str = n.as_ref();
        assert_eq!(as_ref, "+447911123456");
        assert_eq!(String::from(n), "+447911123456");
    }

    #[test]
    fn serde_is_a_plain_string_and_checks_shape() {
        let n = E164::parse("+5491112345678").unwrap();
        let json = serde_json::to_string(&n).unwrap();
        assert_eq!(json, "\"+5491112345678\"");
        let back: E164 = serde_json::from_str(&json).unwrap();
        assert_eq!(back, n);
        for bad in [
            "\"5491112345678\"",
            "\"+\"",
            "\"+54 911\"",
            "\"+1234567890123456\"",
            "12",
        ] {
            assert!(serde_json::from_str::<E164>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn ordering_and_hashing_follow_the_string() {
        use std::collections::HashSet;
        let a = E164::parse("+16505551234").unwrap();
        let b = E164::parse("+5491112345678").unwrap();
        assert!(a < b);
        let set: HashSet<E164> = [a.clone(), a.clone(), b].into_iter().collect();
        assert_eq!(set.len(), 2);
    }

    #[test]
    fn never_panics_on_odd_inputs() {
        let odd = [
            "+0",
            "+00",
            "+0000000000",
            "0000000000000",
            "+1",
            "+10000000000000000000",
            "+99999999999999999999",
            "+262 269 12 34 56",
            "+800 1234 5678",
            "+882 1234 5678 9",
            "+979 1234 5678 9",
            "  2 22#:",
            "+(((((",
            "\u{0}\u{0}",
            "\u{FEFF}",
        ];
        for input in odd {
            let _ = E164::parse(input);
        }
        // Every country-code prefix with a few shapes of national number.
        for cc in 1..1000u32 {
            for national in [
                "1",
                "12",
                "1234",
                "0123456",
                "912345678",
                "12345678901234567",
            ] {
                let _ = E164::parse(&format!("+{cc}{national}"));
            }
        }
    }
}
