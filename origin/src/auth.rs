//! The push API's credential: a bearer token (RFC 6750 §2.1) shared by the origin and its
//! transcoders, compared without leaking it through timing or logs.

use axum::http::{HeaderMap, header};
use sha2::{Digest, Sha256};

use crate::error::ApiError;

/// The configured push token, held only as its SHA-256 digest.
pub(crate) struct PushCredential {
    digest: [u8; 32],
}

impl PushCredential {
    pub(crate) fn new(token: &str) -> Self {
        PushCredential {
            digest: Sha256::digest(token.as_bytes()).into(),
        }
    }

    /// Accepts a request whose `Authorization` header carries the token. Both sides are
    /// hashed and the digests compared with every byte examined, so the time taken says
    /// nothing about how much of a guess was right (nor how long the token is). Error
    /// details never echo what was presented.
    pub(crate) fn check(&self, headers: &HeaderMap) -> Result<(), ApiError> {
        let presented = headers
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(bearer_token);
        let Some(presented) = presented else {
            return Err(ApiError::Unauthorized(
                "the push API requires an `Authorization: Bearer <token>` header carrying \
                 origin.push_token (RFC 6750 §2.1)"
                    .to_string(),
            ));
        };
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        if digests_equal(&digest, &self.digest) {
            Ok(())
        } else {
            Err(ApiError::Unauthorized(
                "the bearer token does not match origin.push_token".to_string(),
            ))
        }
    }
}

/// The credentials of `Bearer <token>`; the scheme is case-insensitive (RFC 9110 §11.1).
fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    let token = token.trim_start();
    (scheme.eq_ignore_ascii_case("Bearer") && !token.is_empty()).then_some(token)
}

/// Equality without an early exit.
fn digests_equal(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |diff, (x, y)| diff | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn headers(authorization: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_str(authorization).unwrap(),
        );
        headers
    }

    #[test]
    fn only_the_bearer_token_is_accepted() {
        let credential = PushCredential::new("0123456789abcdef");
        assert!(
            credential
                .check(&headers("Bearer 0123456789abcdef"))
                .is_ok()
        );
        // RFC 9110 §11.1: the scheme is case-insensitive.
        assert!(
            credential
                .check(&headers("bearer 0123456789abcdef"))
                .is_ok()
        );
        for wrong in [
            "Bearer 0123456789abcdeF",
            "Bearer 0123456789abcde",
            "Bearer 0123456789abcdef0",
            "Basic 0123456789abcdef",
            "Bearer",
            "0123456789abcdef",
        ] {
            let err = credential.check(&headers(wrong)).unwrap_err();
            assert!(matches!(err, ApiError::Unauthorized(_)), "{wrong}");
            assert!(!err.to_string().contains("0123456789"), "{err}");
        }
        assert!(matches!(
            credential.check(&HeaderMap::new()),
            Err(ApiError::Unauthorized(_))
        ));
    }

    #[test]
    fn digests_are_compared_whole() {
        let a = [7u8; 32];
        let mut b = a;
        assert!(digests_equal(&a, &b));
        b[31] ^= 1;
        assert!(!digests_equal(&a, &b));
    }
}
