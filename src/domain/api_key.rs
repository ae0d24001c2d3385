//! API keys: `mindo_` followed by 24 characters `[A-Za-z0-9]` from a CSPRNG.
//!
//! Only a SHA-256 hash of a key is stored. The first [`LOOKUP_LEN`] characters after the
//! prefix are stored in clear as a lookup handle: finding the row by them reveals nothing
//! about the remaining 16 characters (~95 bits), and the hash of the whole key is then
//! compared in constant time. An unknown lookup handle costs the same hash and comparison
//! against a dummy, so the time to reject a key does not depend on its secret part.

use rand::distr::{Alphanumeric, SampleString};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Every key starts with this.
pub const PREFIX: &str = "mindo_";
/// Characters after the prefix.
pub const BODY_LEN: usize = 24;
/// Characters after the prefix that are stored in clear to find the key's row.
pub const LOOKUP_LEN: usize = 8;

/// A freshly generated key: shown once to its owner, then only its hash is kept.
#[derive(Debug, Clone)]
pub struct NewApiKey {
    /// The whole key, `mindo_…`; never stored or logged.
    pub plaintext: String,
    /// The lookup handle stored in clear.
    pub lookup: String,
    /// Hex SHA-256 of `plaintext`.
    pub hash: String,
}

/// Generates a key with the thread-local CSPRNG (ChaCha, seeded from the OS).
pub fn generate() -> NewApiKey {
    let body = Alphanumeric.sample_string(&mut rand::rng(), BODY_LEN);
    let plaintext = format!("{PREFIX}{body}");
    NewApiKey {
        lookup: body[..LOOKUP_LEN].to_owned(),
        hash: hash(&plaintext),
        plaintext,
    }
}

/// A random secret of `len` alphanumeric characters (webhook secrets and the like).
pub fn random_secret(len: usize) -> String {
    Alphanumeric.sample_string(&mut rand::rng(), len)
}

/// Hex SHA-256 of a key.
pub fn hash(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// The lookup handle of a well-formed key, or `None` when the key cannot be one of ours.
pub fn lookup_of(key: &str) -> Option<&str> {
    let body = key.strip_prefix(PREFIX)?;
    if body.len() != BODY_LEN || !body.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return None;
    }
    Some(&body[..LOOKUP_LEN])
}

/// Compares the hash of `presented` with `stored_hash` in constant time.
pub fn verify(presented: &str, stored_hash: &str) -> bool {
    hash(presented)
        .as_bytes()
        .ct_eq(stored_hash.as_bytes())
        .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_have_the_documented_shape() {
        let key = generate();
        assert!(key.plaintext.starts_with("mindo_"));
        assert_eq!(key.plaintext.len(), PREFIX.len() + BODY_LEN);
        assert!(key.plaintext[PREFIX.len()..]
            .bytes()
            .all(|b| b.is_ascii_alphanumeric()));
        assert_eq!(lookup_of(&key.plaintext), Some(key.lookup.as_str()));
        assert!(verify(&key.plaintext, &key.hash));
    }

    #[test]
    fn keys_are_not_repeated() {
        let a = generate();
        let b = generate();
        assert_ne!(a.plaintext, b.plaintext);
    }

    #[test]
    fn malformed_keys_have_no_lookup() {
        assert_eq!(lookup_of(""), None);
        assert_eq!(lookup_of("mindo_short"), None);
        assert_eq!(lookup_of("other_abcdefghijklmnopqrstuvwx"), None);
        assert_eq!(lookup_of("mindo_abcdefghijklmnopqrstuvw!"), None);
        assert_eq!(lookup_of("mindo_abcdefghijklmnopqrstuvwxy"), None);
        // Multi-byte characters must not make slicing panic.
        assert_eq!(lookup_of("mindo_ñbcdefghijklmnopqrstuvw"), None);
        assert_eq!(
            lookup_of("mindo_abcdefghijklmnopqrstuvwx"),
            Some("abcdefgh")
        );
    }

    #[test]
    fn a_wrong_key_does_not_verify() {
        let key = generate();
        let mut wrong = key.plaintext.clone();
        wrong.pop();
        wrong.push(if key.plaintext.ends_with('a') {
            'b'
        } else {
            'a'
        });
        assert!(!verify(&wrong, &key.hash));
    }
}
