//! Playback tokens: the control plane signs one when it finds a viewer entitled to an
//! event, and the origin checks it on every playlist, init, part and segment request of
//! that event, with no database round trip.
//!
//! A token is a JWT (RFC 7519) signed with HMAC-SHA256 under a key shared by the control
//! plane and the origins. Its header names the key (`kid`), so keys rotate: the control
//! plane signs with the current key and the origins accept the current and the previous
//! one ([`TokenVerifier`]).

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

/// What a playback token asserts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlaybackClaims {
    /// The event the token plays (its public `event_id`).
    pub evt: String,
    /// The viewer's account id.
    pub sub: String,
    /// The playback session id: what concurrency limits count and revocation names.
    pub sid: String,
    /// Issued at, seconds since the Unix epoch.
    pub iat: i64,
    /// Expiry, seconds since the Unix epoch.
    pub exp: i64,
}

/// Shortest secret accepted: HS256 keys should carry at least the hash's 256 bits.
pub const MIN_SECRET_LEN: usize = 32;

/// A named HMAC key.
#[derive(Clone)]
pub struct TokenKey {
    id: String,
    secret: Vec<u8>,
}

impl std::fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenKey")
            .field("id", &self.id)
            .field("secret", &"<redacted>")
            .finish()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeySpecError {
    #[error("expected `<key id>:<secret>`")]
    NoSeparator,
    #[error("the key id must be 1 to 64 characters of A-Z a-z 0-9 - _ .")]
    BadId,
    #[error("the secret must be at least {MIN_SECRET_LEN} characters")]
    ShortSecret,
}

impl TokenKey {
    pub fn new(id: &str, secret: &[u8]) -> Result<Self, KeySpecError> {
        let id_ok = !id.is_empty()
            && id.len() <= 64
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        if !id_ok {
            return Err(KeySpecError::BadId);
        }
        if secret.len() < MIN_SECRET_LEN {
            return Err(KeySpecError::ShortSecret);
        }
        Ok(TokenKey {
            id: id.to_string(),
            secret: secret.to_vec(),
        })
    }

    /// Parses the config form `<key id>:<secret>`.
    pub fn parse(spec: &str) -> Result<Self, KeySpecError> {
        let (id, secret) = spec.split_once(':').ok_or(KeySpecError::NoSeparator)?;
        TokenKey::new(id, secret.as_bytes())
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// Signs `claims` with this key.
    pub fn sign(&self, claims: &PlaybackClaims) -> String {
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(self.id.clone());
        jsonwebtoken::encode(&header, claims, &EncodingKey::from_secret(&self.secret))
            .expect("HS256 signing of serializable claims cannot fail")
    }
}

/// Why a token was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the token is not a well-formed HS256 JWT with playback claims")]
    Malformed,
    #[error("the token was signed with a key this service does not hold")]
    UnknownKey,
    #[error("the token's signature does not verify")]
    BadSignature,
    #[error("the token has expired")]
    Expired,
}

/// Checks tokens against the keys in rotation (current first, then previous).
pub struct TokenVerifier {
    keys: Vec<(String, DecodingKey)>,
    validation: Validation,
}

impl TokenVerifier {
    pub fn new(keys: &[TokenKey]) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        // Expiry is checked against the caller's clock in `verify`, with no leeway.
        validation.validate_exp = false;
        validation.required_spec_claims.clear();
        TokenVerifier {
            keys: keys
                .iter()
                .map(|k| (k.id.clone(), DecodingKey::from_secret(&k.secret)))
                .collect(),
            validation,
        }
    }

    /// The token's claims, if it is signed by a key in rotation and unexpired at `now`
    /// (seconds since the Unix epoch).
    pub fn verify(&self, token: &str, now: i64) -> Result<PlaybackClaims, TokenError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| TokenError::Malformed)?;
        if header.alg != Algorithm::HS256 {
            return Err(TokenError::Malformed);
        }
        let kid = header.kid.ok_or(TokenError::Malformed)?;
        let (_, key) = self
            .keys
            .iter()
            .find(|(id, _)| *id == kid)
            .ok_or(TokenError::UnknownKey)?;
        let data =
            jsonwebtoken::decode::<PlaybackClaims>(token, key, &self.validation).map_err(|e| {
                match e.kind() {
                    jsonwebtoken::errors::ErrorKind::InvalidSignature => TokenError::BadSignature,
                    _ => TokenError::Malformed,
                }
            })?;
        if data.claims.exp <= now {
            return Err(TokenError::Expired);
        }
        Ok(data.claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    fn claims(exp: i64) -> PlaybackClaims {
        PlaybackClaims {
            evt: "ev_1".into(),
            sub: "acct_1".into(),
            sid: "ses_1".into(),
            iat: 1000,
            exp,
        }
    }

    #[test]
    fn signed_token_verifies_until_expiry() {
        let key = TokenKey::parse(&format!("k1:{SECRET}")).unwrap();
        let token = key.sign(&claims(2000));
        let verifier = TokenVerifier::new(&[key]);
        assert_eq!(verifier.verify(&token, 1999), Ok(claims(2000)));
        assert_eq!(verifier.verify(&token, 2000), Err(TokenError::Expired));
    }

    #[test]
    fn previous_key_still_verifies_and_unknown_key_does_not() {
        let old = TokenKey::parse(&format!("old:{SECRET}")).unwrap();
        let new = TokenKey::parse(&format!("new:{SECRET}x")).unwrap();
        let token = old.sign(&claims(2000));
        assert!(
            TokenVerifier::new(&[new.clone(), old])
                .verify(&token, 1500)
                .is_ok()
        );
        assert_eq!(
            TokenVerifier::new(&[new]).verify(&token, 1500),
            Err(TokenError::UnknownKey)
        );
    }

    #[test]
    fn tampered_token_is_refused() {
        let key = TokenKey::parse(&format!("k1:{SECRET}")).unwrap();
        let other = TokenKey::parse(&format!("k1:{SECRET}-other")).unwrap();
        let verifier = TokenVerifier::new(std::slice::from_ref(&key));
        assert_eq!(
            verifier.verify(&other.sign(&claims(2000)), 1500),
            Err(TokenError::BadSignature)
        );
        // Swap the payload for one naming another event, keeping the signature.
        let token = key.sign(&claims(2000));
        let mut forged = claims(2000);
        forged.evt = "ev_2".into();
        let forged_token = key.sign(&forged);
        let parts: Vec<&str> = token.split('.').collect();
        let forged_parts: Vec<&str> = forged_token.split('.').collect();
        let spliced = format!("{}.{}.{}", parts[0], forged_parts[1], parts[2]);
        assert_eq!(
            verifier.verify(&spliced, 1500),
            Err(TokenError::BadSignature)
        );
        assert_eq!(
            verifier.verify("not-a-jwt", 1500),
            Err(TokenError::Malformed)
        );
    }

    #[test]
    fn key_specs_are_checked() {
        assert_eq!(
            TokenKey::parse("nocolon").unwrap_err(),
            KeySpecError::NoSeparator
        );
        assert_eq!(
            TokenKey::parse("k:short").unwrap_err(),
            KeySpecError::ShortSecret
        );
        assert_eq!(
            TokenKey::parse(&format!("bad id:{SECRET}")).unwrap_err(),
            KeySpecError::BadId
        );
        assert!(
            !format!("{:?}", TokenKey::parse(&format!("k:{SECRET}")).unwrap()).contains(SECRET)
        );
    }
}
