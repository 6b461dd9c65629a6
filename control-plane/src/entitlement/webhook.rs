//! The payment provider's webhook signature: `Floodlight-Signature: t=<unix seconds>,
//! v1=<hex>`, where `v1` is HMAC-SHA256 (RFC 2104) under `control.entitlement
//! .webhook_secret` of `<t>.<body>`. Signing the timestamp with the body lets the control
//! plane refuse a captured call replayed later (outside `webhook_tolerance_secs`), the
//! scheme payment providers use for their own webhooks.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The header that carries the signature.
pub(crate) const SIGNATURE_HEADER: &str = "floodlight-signature";

/// Why a webhook call is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum SignatureError {
    #[error("missing or malformed Floodlight-Signature header (t=<unix seconds>,v1=<hex>)")]
    Malformed,
    #[error("the signature's timestamp is too far from now (replayed or clock skew)")]
    Stale,
    #[error("the signature does not match the body")]
    Mismatch,
}

/// Checks `header` (the Floodlight-Signature value) against `body` at `now` (Unix
/// seconds), allowing `tolerance_secs` between the signed timestamp and now.
pub(crate) fn verify(
    secret: &[u8],
    header: Option<&str>,
    body: &[u8],
    now: i64,
    tolerance_secs: u64,
) -> Result<(), SignatureError> {
    let header = header.ok_or(SignatureError::Malformed)?;
    let mut timestamp = None;
    let mut signature = None;
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", value)) => timestamp = value.parse::<i64>().ok(),
            Some(("v1", value)) => signature = hex::decode(value).ok(),
            _ => {}
        }
    }
    let (Some(timestamp), Some(signature)) = (timestamp, signature) else {
        return Err(SignatureError::Malformed);
    };
    if now.abs_diff(timestamp) > tolerance_secs {
        return Err(SignatureError::Stale);
    }
    // `verify_slice` compares in constant time.
    mac(secret, timestamp, body)
        .verify_slice(&signature)
        .map_err(|_| SignatureError::Mismatch)
}

/// The header value a provider sends for `body` at `timestamp`.
#[cfg(test)]
pub(crate) fn sign(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    let digest = mac(secret, timestamp, body).finalize().into_bytes();
    format!("t={timestamp},v1={}", hex::encode(digest))
}

fn mac(secret: &[u8], timestamp: i64, body: &[u8]) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC accepts any key length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"whsec_0123456789abcdef0123456789abcdef";

    #[test]
    fn a_signed_body_verifies_within_the_tolerance_only() {
        let body = br#"{"subscription_id":"s","state":"past_due"}"#;
        let header = sign(SECRET, 1000, body);
        assert_eq!(verify(SECRET, Some(&header), body, 1100, 300), Ok(()));
        assert_eq!(verify(SECRET, Some(&header), body, 900, 300), Ok(()));
        assert_eq!(
            verify(SECRET, Some(&header), body, 1301, 300),
            Err(SignatureError::Stale)
        );
        // Another body, another secret, another timestamp: no match.
        assert_eq!(
            verify(SECRET, Some(&header), b"{}", 1000, 300),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(b"another secret", Some(&header), body, 1000, 300),
            Err(SignatureError::Mismatch)
        );
        let moved = header.replace("t=1000", "t=1001");
        assert_eq!(
            verify(SECRET, Some(&moved), body, 1000, 300),
            Err(SignatureError::Mismatch)
        );
        for bad in [
            None,
            Some(""),
            Some("t=1000"),
            Some("v1=00"),
            Some("t=x,v1=zz"),
        ] {
            assert_eq!(
                verify(SECRET, bad, body, 1000, 300),
                Err(SignatureError::Malformed)
            );
        }
    }
}
