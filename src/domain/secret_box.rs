//! Secrets encrypted at rest: Meta access tokens and tenants' webhook secrets.
//!
//! - The AEAD is XChaCha20-Poly1305 (`chacha20poly1305`, RustCrypto). Its 24-byte nonce is
//!   drawn at random for every value written, which is safe at any number of values (a
//!   12-byte random nonce would not be past a few billion).
//! - A stored value is `hex(nonce ‖ ciphertext ‖ tag)`; the id of the key that sealed it
//!   is stored beside it in a column of its own, so a daemon with another key knows at
//!   once which key the data needs instead of decrypting garbage.
//! - The associated data is the value's purpose (`business_accounts.access_token`, …):
//!   a ciphertext copied into another column does not open there.
//! - The key is 32 random bytes, written as 64 hex digits (`openssl rand -hex 32` makes
//!   one). Its id is the first 8 bytes of SHA-256 over a label and the key, in hex: it
//!   names the key in errors and rows without revealing anything about it.
//! - Nothing here prints a key or a plaintext: `Debug` is redacted and errors name only
//!   key ids.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::RngCore;
use sha2::{Digest, Sha256};

/// Bytes of a key.
pub const KEY_LEN: usize = 32;
const NONCE_LEN: usize = 24;

/// What a secret is, bound into its ciphertext as associated data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// `business_accounts.access_token`: a WABA's system-user token.
    AccessToken,
    /// `tenants.webhook_secret`: the key that signs a tenant's callbacks.
    WebhookSecret,
}

impl Purpose {
    fn associated_data(self) -> &'static [u8] {
        match self {
            Purpose::AccessToken => b"business_accounts.access_token",
            Purpose::WebhookSecret => b"tenants.webhook_secret",
        }
    }
}

/// The key that encrypts secrets at rest.
#[derive(Clone)]
pub struct SecretKey {
    cipher: XChaCha20Poly1305,
    bytes: [u8; KEY_LEN],
    id: String,
}

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretKey")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// A key that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadKey {
    #[error("a secret key is 64 hex digits (32 bytes; `openssl rand -hex 32` makes one), got {0} characters")]
    Format(usize),
}

/// A stored secret that cannot be opened. Names key ids only, never the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    #[error("the secret is encrypted with key {stored}, but the configured key is {configured}")]
    OtherKey { stored: String, configured: String },
    #[error("key {key_id} cannot decrypt a stored secret (the key file was changed, or the row is damaged)")]
    Undecryptable { key_id: String },
}

impl SecretKey {
    /// A new random key.
    pub fn generate() -> SecretKey {
        let mut bytes = [0u8; KEY_LEN];
        rand::rng().fill_bytes(&mut bytes);
        SecretKey::from_bytes(bytes)
    }

    /// A key written as 64 hex digits (surrounding whitespace ignored, as in a key file).
    pub fn parse(text: &str) -> Result<SecretKey, BadKey> {
        let text = text.trim();
        let mut bytes = [0u8; KEY_LEN];
        hex::decode_to_slice(text, &mut bytes).map_err(|_| BadKey::Format(text.len()))?;
        Ok(SecretKey::from_bytes(bytes))
    }

    fn from_bytes(bytes: [u8; KEY_LEN]) -> SecretKey {
        let mut digest = Sha256::new();
        digest.update(b"mindo-bulk secret key id\0");
        digest.update(bytes);
        let id = hex::encode(&digest.finalize()[..8]);
        SecretKey {
            cipher: XChaCha20Poly1305::new(&bytes.into()),
            bytes,
            id,
        }
    }

    /// The key as written in a key file (64 hex digits).
    pub fn to_hex(&self) -> String {
        hex::encode(self.bytes)
    }

    /// The key's id, stored beside every value it seals.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Encrypts `plaintext` with a fresh random nonce; returns what is stored.
    #[allow(
        clippy::expect_used,
        reason = "the AEAD refuses only messages over 256 GiB; a secret is bounded by the request body limit"
    )]
    pub fn seal(&self, purpose: Purpose, plaintext: &str) -> String {
        let mut nonce = [0u8; NONCE_LEN];
        rand::rng().fill_bytes(&mut nonce);
        let sealed = self
            .cipher
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: plaintext.as_bytes(),
                    aad: purpose.associated_data(),
                },
            )
            // Encryption fails only for messages beyond 256 GiB.
            .expect("a secret is far below the AEAD's size limit");
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        hex::encode(out)
    }

    /// Decrypts a stored value sealed by the key `key_id`.
    pub fn open(&self, purpose: Purpose, key_id: &str, stored: &str) -> Result<String, OpenError> {
        if key_id != self.id {
            return Err(OpenError::OtherKey {
                stored: key_id.to_owned(),
                configured: self.id.clone(),
            });
        }
        let undecryptable = || OpenError::Undecryptable {
            key_id: key_id.to_owned(),
        };
        let bytes = hex::decode(stored).map_err(|_| undecryptable())?;
        if bytes.len() < NONCE_LEN {
            return Err(undecryptable());
        }
        let (nonce, sealed) = bytes.split_at(NONCE_LEN);
        let plain = self
            .cipher
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: sealed,
                    aad: purpose.associated_data(),
                },
            )
            .map_err(|_| undecryptable())?;
        String::from_utf8(plain).map_err(|_| undecryptable())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_value_opens_with_its_key_and_purpose_only() {
        let key = SecretKey::generate();
        let sealed = key.seal(Purpose::AccessToken, "EAAG-token");
        assert!(!sealed.contains("EAAG"));
        assert_eq!(
            key.open(Purpose::AccessToken, key.id(), &sealed),
            Ok("EAAG-token".to_owned())
        );
        // Moved to another column: refused.
        assert_eq!(
            key.open(Purpose::WebhookSecret, key.id(), &sealed),
            Err(OpenError::Undecryptable {
                key_id: key.id().to_owned()
            })
        );
        // Tampered with: refused.
        let mut tampered = sealed.clone().into_bytes();
        let last = tampered.len() - 1;
        tampered[last] = if tampered[last] == b'0' { b'1' } else { b'0' };
        let tampered = String::from_utf8(tampered).unwrap();
        assert!(key.open(Purpose::AccessToken, key.id(), &tampered).is_err());
        assert!(key.open(Purpose::AccessToken, key.id(), "zz").is_err());
        assert!(key.open(Purpose::AccessToken, key.id(), "").is_err());
    }

    #[test]
    fn every_value_gets_its_own_nonce() {
        let key = SecretKey::generate();
        let a = key.seal(Purpose::WebhookSecret, "whsec_same");
        let b = key.seal(Purpose::WebhookSecret, "whsec_same");
        assert_ne!(a, b);
        assert_ne!(a[..48], b[..48]);
    }

    #[test]
    fn another_key_is_named_not_used() {
        let (ours, theirs) = (SecretKey::generate(), SecretKey::generate());
        let sealed = theirs.seal(Purpose::AccessToken, "t");
        let err = ours
            .open(Purpose::AccessToken, theirs.id(), &sealed)
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "the secret is encrypted with key {}, but the configured key is {}",
                theirs.id(),
                ours.id()
            )
        );
        // A forged key id does not make the wrong key decrypt.
        assert!(matches!(
            ours.open(Purpose::AccessToken, ours.id(), &sealed),
            Err(OpenError::Undecryptable { .. })
        ));
    }

    #[test]
    fn keys_round_trip_through_hex_and_ids_are_stable() {
        let key = SecretKey::generate();
        let again = SecretKey::parse(&format!("  {}\n", key.to_hex())).unwrap();
        assert_eq!(again.id(), key.id());
        assert_eq!(key.id().len(), 16);
        let sealed = key.seal(Purpose::AccessToken, "t");
        assert_eq!(
            again.open(Purpose::AccessToken, key.id(), &sealed).unwrap(),
            "t"
        );
        assert!(matches!(SecretKey::parse("abc"), Err(BadKey::Format(3))));
        assert!(SecretKey::parse(&"g".repeat(64)).is_err());
        let printed = format!("{key:?}");
        assert!(!printed.contains(&key.to_hex()), "{printed}");
    }
}
