//! Dashboard tokens: a short-lived, signed stand-in for an API key where a client cannot send
//! headers (the browser's `EventSource` sends none). `POST /api/v1/dashboard-token/`, called
//! with `X-API-Key`, issues one; the event streams take it as `?token=`.
//!
//! A token is `{tenant_id}.{api_key_id}.{expires_at_ms}.{mac}`, the MAC being the hex
//! HMAC-SHA256 of the three claims under a key drawn at random when the daemon starts. Nothing
//! is stored: a restart forgets the key, and with it every token (a page asks for a new one
//! when its stream is refused). The claims name the key the token was issued for, so whoever
//! checks one can also check that the key is still valid (not revoked, not expired) and a
//! revoked key's tokens stop working at once.

use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;

/// How long a token is valid: long enough to open and reopen a stream, short enough that
/// a token copied out of a page's URL is soon worthless.
pub const TOKEN_LIFETIME_MS: i64 = 5 * 60 * 1000;

/// What a token says: whose it is and until when.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenClaims {
    pub tenant_id: i64,
    pub api_key_id: i64,
    /// Unix ms after which the token is refused.
    pub expires_at: i64,
}

/// Why a token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the token is malformed")]
    Malformed,
    #[error("the token's signature does not match")]
    Forged,
    #[error("the token has expired")]
    Expired,
}

/// The daemon's signing key (random per process).
#[derive(Clone)]
pub struct TokenKey([u8; 32]);

impl std::fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenKey(..)")
    }
}

impl TokenKey {
    /// A fresh random key.
    pub fn random() -> TokenKey {
        let mut key = [0u8; 32];
        rand::rng().fill_bytes(&mut key);
        TokenKey(key)
    }

    fn mac(&self, claims: &str) -> Hmac<Sha256> {
        // HMAC takes a key of any length; this cannot fail.
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.0)
            .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
        mac.update(claims.as_bytes());
        mac
    }

    /// A token carrying `claims`.
    pub fn issue(&self, claims: TokenClaims) -> String {
        let body = format!(
            "{}.{}.{}",
            claims.tenant_id, claims.api_key_id, claims.expires_at
        );
        let tag = hex::encode(self.mac(&body).finalize().into_bytes());
        format!("{body}.{tag}")
    }

    /// The claims of a token this key issued that has not expired at `now_ms`.
    pub fn verify(&self, token: &str, now_ms: i64) -> Result<TokenClaims, TokenError> {
        let (body, tag) = token.rsplit_once('.').ok_or(TokenError::Malformed)?;
        let mut parts = body.split('.');
        let mut number = || -> Result<i64, TokenError> {
            parts
                .next()
                .and_then(|p| p.parse().ok())
                .ok_or(TokenError::Malformed)
        };
        let claims = TokenClaims {
            tenant_id: number()?,
            api_key_id: number()?,
            expires_at: number()?,
        };
        if parts.next().is_some() {
            return Err(TokenError::Malformed);
        }
        let tag = hex::decode(tag).map_err(|_| TokenError::Malformed)?;
        // Constant-time comparison.
        self.mac(body)
            .verify_slice(&tag)
            .map_err(|_| TokenError::Forged)?;
        if now_ms >= claims.expires_at {
            return Err(TokenError::Expired);
        }
        Ok(claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_767_225_600_000;

    fn claims() -> TokenClaims {
        TokenClaims {
            tenant_id: 7,
            api_key_id: 12,
            expires_at: NOW + TOKEN_LIFETIME_MS,
        }
    }

    #[test]
    fn a_token_verifies_until_it_expires() {
        let key = TokenKey::random();
        let token = key.issue(claims());
        assert_eq!(key.verify(&token, NOW), Ok(claims()));
        assert_eq!(
            key.verify(&token, NOW + TOKEN_LIFETIME_MS - 1),
            Ok(claims())
        );
        assert_eq!(
            key.verify(&token, NOW + TOKEN_LIFETIME_MS),
            Err(TokenError::Expired)
        );
    }

    #[test]
    fn changed_claims_and_other_keys_are_refused() {
        let key = TokenKey::random();
        let token = key.issue(claims());
        let (_, tag) = token.rsplit_once('.').unwrap();
        // Another tenant, another key, a later expiry: each with the original signature.
        for body in [
            format!("8.12.{}", NOW + TOKEN_LIFETIME_MS),
            format!("7.13.{}", NOW + TOKEN_LIFETIME_MS),
            format!("7.12.{}", NOW + 10 * TOKEN_LIFETIME_MS),
        ] {
            assert_eq!(
                key.verify(&format!("{body}.{tag}"), NOW),
                Err(TokenError::Forged)
            );
        }
        assert_eq!(
            TokenKey::random().verify(&token, NOW),
            Err(TokenError::Forged)
        );
    }

    #[test]
    fn malformed_tokens_are_refused() {
        let key = TokenKey::random();
        for token in ["", "abc", "1.2.3", "1.2.x.00", "1.2.3.4.00", "1.2.3.zz"] {
            assert_eq!(
                key.verify(token, NOW),
                Err(TokenError::Malformed),
                "{token}"
            );
        }
    }
}
