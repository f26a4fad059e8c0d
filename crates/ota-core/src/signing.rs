//! Ed25519 keys for signing what the server ships (delta packs, bundles),
//! stored as PEM so `openssl` reads them: the private key as PKCS#8
//! (`-----BEGIN PRIVATE KEY-----`), the public key as SubjectPublicKeyInfo
//! (`-----BEGIN PUBLIC KEY-----`). A signature is the raw 64 bytes of
//! RFC 8032 over the message itself, which
//! `openssl pkeyutl -verify -rawin -pubin -inkey public.pem -in MSG -sigfile SIG`
//! accepts.
//!
//! ```
//! use ota_core::signing::{PublicKey, SecretKey};
//! let key = SecretKey::generate();
//! let sig = key.sign(b"pack bytes");
//! let public = PublicKey::from_pem(&key.public().to_pem()).unwrap();
//! assert!(public.verify(b"pack bytes", &sig).is_ok());
//! assert!(public.verify(b"pack bytes!", &sig).is_err());
//! ```

use base64::Engine;
use ed25519_dalek::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey};
use ed25519_dalek::Signer;

/// The HTTP header that carries the server's signature over an answer's
/// exact body bytes (`/maxVersion`, `/getVersion`): standard base64 of the
/// raw 64-byte Ed25519 signature.
pub const SIGNATURE_HEADER: &str = "ota-signature";

/// Why a key or a signature was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SigningError {
    /// Not a PEM Ed25519 key of the expected kind.
    #[error("not an Ed25519 {0} key in PEM (openssl genpkey -algorithm ed25519 writes one)")]
    BadKey(&'static str),
    /// Not 64 bytes.
    #[error("an Ed25519 signature is 64 bytes, got {0}")]
    BadLength(usize),
    /// The signature does not match.
    #[error("the signature does not match the data and key")]
    Mismatch,
    /// The signature text is not base64.
    #[error("the signature is not base64")]
    BadEncoding,
}

/// A signing key. Its PEM is secret: write it with mode 0600.
pub struct SecretKey(ed25519_dalek::SigningKey);

/// A public key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublicKey(ed25519_dalek::VerifyingKey);

impl SecretKey {
    /// A new key from the operating system's random source.
    pub fn generate() -> Self {
        let mut seed = [0u8; 32];
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut seed);
        SecretKey(ed25519_dalek::SigningKey::from_bytes(&seed))
    }

    /// Reads a PKCS#8 PEM private key.
    pub fn from_pem(pem: &str) -> Result<Self, SigningError> {
        ed25519_dalek::SigningKey::from_pkcs8_pem(pem)
            .map(SecretKey)
            .map_err(|_| SigningError::BadKey("private"))
    }

    /// The PKCS#8 PEM text (secret).
    pub fn to_pem(&self) -> Result<String, SigningError> {
        self.0
            .to_pkcs8_pem(Default::default())
            .map(|z| z.to_string())
            .map_err(|_| SigningError::BadKey("private"))
    }

    /// The matching public key.
    pub fn public(&self) -> PublicKey {
        PublicKey(self.0.verifying_key())
    }

    /// Signs `message` (RFC 8032 Ed25519, the message itself, not a digest).
    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        self.0.sign(message).to_bytes()
    }

    /// Signs `message` and encodes the signature as [`SIGNATURE_HEADER`] carries it.
    pub fn sign_base64(&self, message: &[u8]) -> String {
        base64::engine::general_purpose::STANDARD.encode(self.sign(message))
    }
}

impl PublicKey {
    /// Reads a SubjectPublicKeyInfo PEM public key.
    pub fn from_pem(pem: &str) -> Result<Self, SigningError> {
        ed25519_dalek::VerifyingKey::from_public_key_pem(pem)
            .map(PublicKey)
            .map_err(|_| SigningError::BadKey("public"))
    }

    /// The PEM text.
    pub fn to_pem(&self) -> String {
        self.0
            .to_public_key_pem(Default::default())
            .unwrap_or_default()
    }

    /// Checks a signature made by [`SecretKey::sign`] (or `openssl pkeyutl -sign -rawin`).
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> Result<(), SigningError> {
        let sig: [u8; 64] = signature
            .try_into()
            .map_err(|_| SigningError::BadLength(signature.len()))?;
        self.0
            .verify_strict(message, &ed25519_dalek::Signature::from_bytes(&sig))
            .map_err(|_| SigningError::Mismatch)
    }

    /// Checks a base64 signature as [`SIGNATURE_HEADER`] carries it.
    pub fn verify_base64(&self, message: &[u8], signature: &str) -> Result<(), SigningError> {
        let raw = base64::engine::general_purpose::STANDARD
            .decode(signature.trim())
            .map_err(|_| SigningError::BadEncoding)?;
        self.verify(message, &raw)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    fn openssl_available() -> bool {
        Command::new("openssl")
            .arg("version")
            .output()
            .is_ok_and(|o| o.status.success())
    }

    #[test]
    fn pem_round_trip_and_refusals() {
        let key = SecretKey::generate();
        let again = SecretKey::from_pem(&key.to_pem().unwrap()).unwrap();
        assert_eq!(again.public(), key.public());
        assert!(SecretKey::from_pem(
            "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"
        )
        .is_err());
        assert!(
            PublicKey::from_pem(&key.to_pem().unwrap()).is_err(),
            "a private PEM is not a public key"
        );
        let sig = key.sign(b"m");
        assert_eq!(
            key.public().verify(b"m", &sig[..63]),
            Err(SigningError::BadLength(63))
        );
        assert_eq!(
            SecretKey::generate().public().verify(b"m", &sig),
            Err(SigningError::Mismatch)
        );
    }

    /// openssl, an independent implementation, accepts our signatures and
    /// keys, and we accept its.
    #[test]
    fn openssl_agrees() {
        if !openssl_available() {
            assert!(
                std::env::var("OTA_TEST_STRICT").as_deref() != Ok("1"),
                "openssl is missing"
            );
            eprintln!("notice: openssl is not installed; skipping");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let p = |n: &str| dir.path().join(n);
        let key = SecretKey::generate();
        std::fs::write(p("pub.pem"), key.public().to_pem()).unwrap();
        std::fs::write(p("msg"), b"a pack's bytes").unwrap();
        std::fs::write(p("sig"), key.sign(b"a pack's bytes")).unwrap();
        let ok = Command::new("openssl")
            .args(["pkeyutl", "-verify", "-rawin", "-pubin", "-inkey"])
            .arg(p("pub.pem"))
            .arg("-in")
            .arg(p("msg"))
            .arg("-sigfile")
            .arg(p("sig"))
            .output()
            .unwrap();
        assert!(
            ok.status.success(),
            "{}",
            String::from_utf8_lossy(&ok.stderr)
        );
        // A key openssl made, and its signature.
        let gen = Command::new("openssl")
            .args(["genpkey", "-algorithm", "ed25519", "-out"])
            .arg(p("k.pem"))
            .status()
            .unwrap();
        assert!(gen.success());
        let theirs = SecretKey::from_pem(&std::fs::read_to_string(p("k.pem")).unwrap()).unwrap();
        let sign = Command::new("openssl")
            .args(["pkeyutl", "-sign", "-rawin", "-inkey"])
            .arg(p("k.pem"))
            .arg("-in")
            .arg(p("msg"))
            .arg("-out")
            .arg(p("sig2"))
            .status()
            .unwrap();
        assert!(sign.success());
        let sig2 = std::fs::read(p("sig2")).unwrap();
        assert!(theirs.public().verify(b"a pack's bytes", &sig2).is_ok());
    }
}
