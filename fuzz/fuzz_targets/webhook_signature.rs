//! The `X-Hub-Signature-256` check: never panics on any header; accepts exactly the HMAC of
//! the body under the secret (hex, either case, surrounding blanks ignored), and the correct
//! signature of the body always.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mindo_bulk::http::webhooks::signature_valid;
use mindo_bulk::simulator::signature;

fuzz_target!(|input: (Vec<u8>, Vec<u8>, String)| {
    let (secret, body, header) = input;
    let expected = signature(&secret, &body);
    assert!(signature_valid(&secret, &body, &expected));
    if signature_valid(&secret, &body, &header) {
        let given = header
            .trim()
            .strip_prefix("sha256=")
            .expect("accepted without the prefix");
        assert_eq!(
            hex::decode(given).ok(),
            hex::decode(&expected["sha256=".len()..]).ok(),
            "accepted a signature that is not the body's HMAC: {header:?}"
        );
    }
    // The body's signature does not pass for another body.
    let mut other = body.clone();
    other.push(0);
    assert!(!signature_valid(&secret, &other, &expected));
});
