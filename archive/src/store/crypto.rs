//! SHA-256 and HMAC-SHA256 for object_store's S3 request signing (AWS SigV4), from the
//! pure-Rust `sha2` and `hmac` crates the workspace already builds. object_store's own
//! providers are `ring` or `aws-lc-rs`, C builds this workspace avoids (see the
//! `object_store` entry in the workspace Cargo.toml); SigV4 needs nothing else.

use hmac::{Hmac, Mac};
use object_store::client::{
    CryptoProvider, DigestAlgorithm, DigestContext, HmacContext, Signer, SigningAlgorithm,
};
use sha2::{Digest, Sha256};

#[derive(Debug, Default)]
pub(super) struct RustCrypto;

impl CryptoProvider for RustCrypto {
    fn digest(&self, algorithm: DigestAlgorithm) -> object_store::Result<Box<dyn DigestContext>> {
        match algorithm {
            DigestAlgorithm::Sha256 => Ok(Box::new(Sha256Context {
                hasher: Sha256::new(),
                out: Vec::new(),
            })),
            other => Err(unsupported(format!("digest {other:?}"))),
        }
    }

    fn hmac(
        &self,
        algorithm: DigestAlgorithm,
        secret: &[u8],
    ) -> object_store::Result<Box<dyn HmacContext>> {
        match algorithm {
            DigestAlgorithm::Sha256 => {
                // HMAC takes a key of any length (RFC 2104 §2), so this cannot fail.
                let mac = Hmac::<Sha256>::new_from_slice(secret)
                    .map_err(|_| unsupported("an HMAC key".to_string()))?;
                Ok(Box::new(HmacSha256Context {
                    mac,
                    out: Vec::new(),
                }))
            }
            other => Err(unsupported(format!("HMAC {other:?}"))),
        }
    }

    /// RSA signing is for Google Cloud service accounts; S3 never asks for it.
    fn sign(
        &self,
        algorithm: SigningAlgorithm,
        _pem: &[u8],
    ) -> object_store::Result<Box<dyn Signer>> {
        Err(unsupported(format!("signing with {algorithm:?}")))
    }
}

fn unsupported(what: String) -> object_store::Error {
    object_store::Error::NotSupported {
        source: format!("floodlight-archive's crypto provider has no {what}").into(),
    }
}

/// `finish` hands out a borrow of the result, so the context keeps it. The hasher is
/// reset by `finalize_reset`, which also makes a second `finish` harmless.
struct Sha256Context {
    hasher: Sha256,
    out: Vec<u8>,
}

impl DigestContext for Sha256Context {
    fn update(&mut self, data: &[u8]) {
        self.hasher.update(data);
    }

    fn finish(&mut self) -> object_store::Result<&[u8]> {
        self.out = self.hasher.finalize_reset().to_vec();
        Ok(&self.out)
    }
}

struct HmacSha256Context {
    mac: Hmac<Sha256>,
    out: Vec<u8>,
}

impl HmacContext for HmacSha256Context {
    fn update(&mut self, data: &[u8]) {
        self.mac.update(data);
    }

    fn finish(&mut self) -> object_store::Result<&[u8]> {
        self.out = self.mac.finalize_reset().into_bytes().to_vec();
        Ok(&self.out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn sha256_and_hmac_match_the_published_vectors() {
        let provider = RustCrypto;
        // FIPS 180-2 appendix B.1.
        let mut digest = provider.digest(DigestAlgorithm::Sha256).unwrap();
        digest.update(b"ab");
        digest.update(b"c");
        assert_eq!(
            hex(digest.finish().unwrap()),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        // RFC 4231 §4.3 (test case 2).
        let mut mac = provider.hmac(DigestAlgorithm::Sha256, b"Jefe").unwrap();
        mac.update(b"what do ya want ");
        mac.update(b"for nothing?");
        assert_eq!(
            hex(mac.finish().unwrap()),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert!(provider.sign(SigningAlgorithm::RS256, b"").is_err());
    }
}
