//! The callback address policy (`domain::egress`): any string as a `callback_url` under the
//! strict policy never panics; what it accepts is https, and a numeric host it accepts is a
//! public address (also through every IPv6 form that carries an IPv4 address). A raw address
//! from the same bytes classifies the same as its IPv4-mapped form.
#![no_main]

use std::net::{IpAddr, Ipv4Addr};

use libfuzzer_sys::fuzz_target;
use mindo_bulk::domain::egress::{classify, CallbackHost, CallbackPolicy};

fuzz_target!(|data: &[u8]| {
    let strict = CallbackPolicy::default();
    if let Ok(input) = std::str::from_utf8(data) {
        if let Ok((url, host)) = strict.check_url(input) {
            assert_eq!(url.scheme(), "https", "{input:?}");
            if let CallbackHost::Ip(ip) = host {
                assert_eq!(classify(ip), None, "{input:?} -> {ip}");
                assert_eq!(strict.pick("h", &[ip]), Ok(ip));
            }
        }
    }
    if data.len() >= 4 {
        let v4 = Ipv4Addr::new(data[0], data[1], data[2], data[3]);
        assert_eq!(
            classify(IpAddr::V4(v4)),
            classify(IpAddr::V6(v4.to_ipv6_mapped())),
            "{v4}"
        );
    }
    if data.len() >= 16 {
        let mut octets = [0u8; 16];
        octets.copy_from_slice(&data[..16]);
        let _ = classify(IpAddr::from(octets));
    }
});
