//! Access tokens (JWT, HS256) and refresh tokens (random, stored as a SHA-256 digest).
//!
//! An access token names its user (`sub`) and its session (`sid`); it is only accepted while the
//! session is live, so logout and refresh-token reuse end it at once, not at `exp`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

pub const ISSUER: &str = "cairn-auth";
pub const AUDIENCE: &str = "cairn";

/// The claims of an access token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The user id, as a decimal string.
    pub sub: String,
    /// The session.
    pub sid: Uuid,
    pub iat: u64,
    pub exp: u64,
    pub iss: String,
    pub aud: String,
}

impl Claims {
    pub fn user_id(&self) -> Option<i64> {
        self.sub.parse().ok()
    }
}

#[derive(Debug, thiserror::Error)]
#[error("cannot sign the access token: {0}")]
pub struct SignError(#[from] jsonwebtoken::errors::Error);

/// Signs and verifies access tokens with one HMAC key.
pub struct TokenSigner {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    pub access_ttl: Duration,
}

impl TokenSigner {
    pub fn new(secret: &[u8], access_ttl: Duration) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[ISSUER]);
        validation.set_audience(&[AUDIENCE]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        // The same service issues and checks: no clock skew to allow for.
        validation.leeway = 0;
        Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
            access_ttl,
        }
    }

    /// A new access token for `user_id` in session `sid`, issued at `now`.
    pub fn issue(&self, user_id: i64, sid: Uuid, now: SystemTime) -> Result<String, SignError> {
        let iat = now.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        let claims = Claims {
            sub: user_id.to_string(),
            sid,
            iat,
            exp: iat + self.access_ttl.as_secs(),
            iss: ISSUER.into(),
            aud: AUDIENCE.into(),
        };
        Ok(jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)?)
    }

    /// The claims of a valid, unexpired token signed with this key; `None` otherwise.
    pub fn verify(&self, token: &str) -> Option<Claims> {
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation).ok()?;
        // jsonwebtoken accepts exp == now; a token is valid strictly before its exp.
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(u64::MAX);
        (data.claims.exp > now).then_some(data.claims)
    }
}

/// A random secret of `n` bytes.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    rand::rngs::OsRng.fill_bytes(&mut b);
    b
}

/// A new refresh token: 32 random bytes, base64url without padding.
pub fn new_refresh_token() -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(random_bytes::<32>())
}

/// The SHA-256 hex digest under which secrets (refresh tokens, API keys) are stored.
pub fn digest_hex(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// Compares two secrets in time independent of where they differ.
pub fn constant_time_eq(a: &str, b: &str) -> bool {
    let (a, b) = (Sha256::digest(a.as_bytes()), Sha256::digest(b.as_bytes()));
    a.iter().zip(b.iter()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signer(ttl: u64) -> TokenSigner {
        TokenSigner::new(b"0123456789abcdef0123456789abcdef", Duration::from_secs(ttl))
    }

    #[test]
    fn issued_tokens_verify_with_their_claims() {
        let s = signer(900);
        let sid = Uuid::new_v4();
        let t = s.issue(42, sid, SystemTime::now()).unwrap();
        let c = s.verify(&t).unwrap();
        assert_eq!((c.user_id(), c.sid, c.iss.as_str(), c.aud.as_str()), (Some(42), sid, ISSUER, AUDIENCE));
        assert_eq!(c.exp - c.iat, 900);
    }

    #[test]
    fn expired_tampered_and_foreign_tokens_are_refused() {
        let s = signer(900);
        let sid = Uuid::new_v4();
        let old = s.issue(1, sid, SystemTime::now() - Duration::from_secs(901)).unwrap();
        assert!(s.verify(&old).is_none(), "expired");
        let t = s.issue(1, sid, SystemTime::now()).unwrap();
        let other = TokenSigner::new(b"another-secret-another-secret-xx", Duration::from_secs(900));
        assert!(other.verify(&t).is_none(), "another key");
        let mut parts: Vec<String> = t.split('.').map(String::from).collect();
        let forged = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(
            serde_json::to_vec(
                &serde_json::json!({"sub":"2","sid":sid,"iat":1,"exp":u64::MAX/2,"iss":ISSUER,"aud":AUDIENCE}),
            )
            .unwrap(),
        );
        parts[1] = forged;
        assert!(s.verify(&parts.join(".")).is_none(), "payload changed under the signature");
        // alg=none is refused.
        let none =
            format!("{}.{}.", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(r#"{"alg":"none"}"#), parts[1]);
        assert!(s.verify(&none).is_none());
        assert!(s.verify("garbage").is_none());
    }

    #[test]
    fn refresh_tokens_are_random_and_stored_as_digests() {
        let a = new_refresh_token();
        assert_eq!(a.len(), 43);
        assert_ne!(a, new_refresh_token());
        assert_eq!(digest_hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        assert!(constant_time_eq("x", "x"));
        assert!(!constant_time_eq("x", "y"));
    }
}
