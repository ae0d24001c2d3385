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

/// What a key may do. A `read` key reads (status, messages, lists, business accounts);
/// only a `send` key creates sends and cancels, pauses or resumes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KeyScope {
    #[default]
    Send,
    Read,
}

impl KeyScope {
    /// The stored and printed name.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyScope::Send => "send",
            KeyScope::Read => "read",
        }
    }

    /// Whether the key may create and control sends.
    pub fn can_send(self) -> bool {
        self == KeyScope::Send
    }
}

impl std::str::FromStr for KeyScope {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "send" => Ok(KeyScope::Send),
            "read" => Ok(KeyScope::Read),
            _ => Err(format!("expected `send` or `read`, got `{s}`")),
        }
    }
}

/// A key's lifetime as `--expires-in` takes it: a whole number and a unit, `d` (days),
/// `h`, `m` or `s` (`90d`, `12h`); in milliseconds.
pub fn parse_lifetime(text: &str) -> Result<i64, String> {
    let bad =
        || format!("expected a whole number and a unit d, h, m or s (e.g. 90d), got `{text}`");
    let text = text.trim();
    let split = text.len().checked_sub(1).ok_or_else(bad)?;
    let (count, unit) = text.split_at(split);
    let count: i64 = count.parse().ok().filter(|n| *n > 0).ok_or_else(bad)?;
    let unit_ms: i64 = match unit {
        "d" => 86_400_000,
        "h" => 3_600_000,
        "m" => 60_000,
        "s" => 1_000,
        _ => return Err(bad()),
    };
    count
        .checked_mul(unit_ms)
        .filter(|ms| *ms <= 100 * 365 * 86_400_000)
        .ok_or_else(|| format!("`{text}` is longer than 100 years"))
}

/// Whether a key with this expiry time has expired at `now_ms`.
pub fn is_expired(expires_at: Option<i64>, now_ms: i64) -> bool {
    expires_at.is_some_and(|at| now_ms >= at)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_and_lifetimes_parse() {
        assert_eq!("read".parse::<KeyScope>(), Ok(KeyScope::Read));
        assert_eq!("send".parse::<KeyScope>(), Ok(KeyScope::Send));
        assert!("admin".parse::<KeyScope>().is_err());
        assert!(!KeyScope::Read.can_send());
        assert_eq!(KeyScope::default(), KeyScope::Send);
        assert_eq!(parse_lifetime("90d"), Ok(90 * 86_400_000));
        assert_eq!(parse_lifetime("12h"), Ok(12 * 3_600_000));
        assert_eq!(parse_lifetime("30m"), Ok(1_800_000));
        assert_eq!(parse_lifetime("45s"), Ok(45_000));
        for bad in ["", "d", "0d", "-1d", "90", "90w", "1.5d", "99999999999999d"] {
            assert!(parse_lifetime(bad).is_err(), "{bad}");
        }
        assert!(!is_expired(None, i64::MAX));
        assert!(!is_expired(Some(1_000), 999));
        assert!(is_expired(Some(1_000), 1_000));
    }

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
