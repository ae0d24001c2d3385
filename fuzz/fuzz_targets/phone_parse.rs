//! Phone normalisation (`domain::phone::E164::parse`) and Meta's wa_id form: never panics; what
//! it accepts is E.164 (`+` and at most 15 digits, no leading zero) and parses back to itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mindo_bulk::domain::phone::E164;

fuzz_target!(|data: &[u8]| {
    let Ok(input) = std::str::from_utf8(data) else {
        return;
    };
    match E164::parse(input) {
        Ok(phone) => {
            let text = phone.as_str();
            let digits = text.strip_prefix('+').expect("E.164 starts with +");
            assert!(
                (1..=15).contains(&digits.len())
                    && digits.bytes().all(|b| b.is_ascii_digit())
                    && !digits.starts_with('0'),
                "{input:?} -> {text:?}"
            );
            assert_eq!(E164::parse(text).ok().as_ref(), Some(&phone), "{input:?}");
        }
        Err(err) => {
            let _ = err.reason();
        }
    }
    if let Some(phone) = E164::from_wa_id(input) {
        assert_eq!(&phone.as_str()[1..], input);
    }
});
