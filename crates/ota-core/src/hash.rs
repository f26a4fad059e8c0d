//! SHA-256 digests as the hex strings that name blobs and appear in content.json.

use sha2::{Digest, Sha256};
use std::fmt;
use std::io::{self, Read, Write};

/// A SHA-256 digest as 64 lowercase hex characters.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct Sha256Hex(String);

/// The text is not 64 hex characters.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a SHA-256 digest (64 hex characters expected)")]
pub struct BadDigest;

impl Sha256Hex {
    /// Parses 64 hex characters (either case; stored lowercase).
    pub fn parse(text: &str) -> Result<Self, BadDigest> {
        if text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
            Ok(Sha256Hex(text.to_ascii_lowercase()))
        } else {
            Err(BadDigest)
        }
    }

    /// Wraps a finished hasher.
    pub fn from_hasher(hasher: Sha256) -> Self {
        Sha256Hex(hex::encode(hasher.finalize()))
    }

    /// Wraps a raw 32-byte digest.
    pub fn from_bytes(digest: [u8; 32]) -> Self {
        Sha256Hex(hex::encode(digest))
    }

    /// Hashes a byte slice.
    pub fn of_bytes(data: &[u8]) -> Self {
        Sha256Hex(hex::encode(Sha256::digest(data)))
    }

    /// Hashes everything `reader` yields.
    pub fn of_reader(mut reader: impl Read) -> io::Result<Self> {
        let mut w = Sha256Writer::new(io::sink());
        io::copy(&mut reader, &mut w)?;
        Ok(w.finish().0)
    }

    /// The 64 lowercase hex characters.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Sha256Hex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A writer that hashes and counts everything passing through to `inner`.
pub struct Sha256Writer<W> {
    inner: W,
    hasher: Sha256,
    len: u64,
}

impl<W: Write> Sha256Writer<W> {
    /// Wraps `inner`.
    pub fn new(inner: W) -> Self {
        Sha256Writer {
            inner,
            hasher: Sha256::new(),
            len: 0,
        }
    }

    /// The digest of what was written so far.
    pub fn digest(&self) -> Sha256Hex {
        Sha256Hex::from_hasher(self.hasher.clone())
    }

    /// Bytes written so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// True when nothing was written.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The inner writer.
    pub fn get_mut(&mut self) -> &mut W {
        &mut self.inner
    }

    /// Returns the digest, the number of bytes written and the inner writer.
    pub fn finish(self) -> (Sha256Hex, u64, W) {
        (Sha256Hex::from_hasher(self.hasher), self.len, self.inner)
    }
}

impl<W: Write> Write for Sha256Writer<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_digest() {
        assert_eq!(
            Sha256Hex::of_bytes(b"abc").as_str(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        let r = Sha256Hex::of_reader(&b"abc"[..]).unwrap();
        assert_eq!(r, Sha256Hex::of_bytes(b"abc"));
    }

    #[test]
    fn parse_rules() {
        let up = "BA7816BF8F01CFEA414140DE5DAE2223B00361A396177A9CB410FF61F20015AD";
        assert_eq!(Sha256Hex::parse(up).unwrap(), Sha256Hex::of_bytes(b"abc"));
        assert!(Sha256Hex::parse("../etc/passwd").is_err());
        assert!(Sha256Hex::parse(&"g".repeat(64)).is_err());
        assert!(Sha256Hex::parse(&"a".repeat(63)).is_err());
    }
}
