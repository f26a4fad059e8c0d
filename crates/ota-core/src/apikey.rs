//! API keys for publishers.
//!
//! A key reads `ota_<id>_<secret>`: `id` is 16 hex characters that find the
//! stored row, `secret` is 64 hex characters (256 random bits). Only the
//! SHA-256 of the secret is stored. A slow password hash (argon2) buys nothing
//! for a 256-bit random secret and would cost milliseconds on every publish.

use crate::hash::Sha256Hex;
use rand::RngCore;

/// A freshly generated key: show `token` once, store `id` and `secret_hash`.
pub struct NewKey {
    /// The full key to hand to the publisher.
    pub token: String,
    /// The public lookup id.
    pub id: String,
    /// SHA-256 of the secret, hex.
    pub secret_hash: String,
}

/// Generates a key from the operating system's random source.
pub fn generate() -> NewKey {
    let mut id = [0u8; 8];
    let mut secret = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut id);
    rand::rngs::OsRng.fill_bytes(&mut secret);
    let id = hex::encode(id);
    let secret = hex::encode(secret);
    NewKey {
        token: format!("ota_{id}_{secret}"),
        secret_hash: Sha256Hex::of_bytes(secret.as_bytes()).to_string(),
        id,
    }
}

/// Splits a presented token into `(id, sha256-of-secret)`; `None` if malformed.
pub fn parse(token: &str) -> Option<(&str, String)> {
    let rest = token.strip_prefix("ota_")?;
    let (id, secret) = rest.split_once('_')?;
    let hexy = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit());
    if !hexy(id, 16) || !hexy(secret, 64) {
        return None;
    }
    Some((id, Sha256Hex::of_bytes(secret.as_bytes()).to_string()))
}

/// Compares two hashes in time independent of where they differ.
pub fn hashes_equal(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip() {
        let k = generate();
        let (id, h) = parse(&k.token).unwrap();
        assert_eq!(id, k.id);
        assert!(hashes_equal(&h, &k.secret_hash));
        assert!(parse("ota_zz_00").is_none());
        assert!(parse(&k.token[..k.token.len() - 1]).is_none());
        assert!(parse(&k.token.replace("ota_", "xyz_")).is_none());
        assert!(!hashes_equal(&h, &"0".repeat(64)));
    }
}
