//! The bundle a confirm answers with: `data.tar.gz`.
//!
//! A gzip'd tar whose members are, for each hop `N` of the path (from 1):
//!
//! - `pack_N.tar.gz`: the pack ([`crate::pack`]);
//! - `pack_N_hash`: the digest of the whole version after pack `N`, 64 hex
//!   digits and a newline;
//! - `pack_N_sig`: the 64-byte Ed25519 signature of `pack_N.tar.gz`
//!   (`openssl pkeyutl -verify -rawin -pubin -inkey KEY -in pack_N.tar.gz
//!   -sigfile pack_N_sig`);
//!
//! and last `apply_log`, one line per hop in order:
//! `./pack_N.tar.gz|./pack_N_hash|./pack_N_sig`.

use crate::error::{BundleError, Result};
use std::fs::File;
use std::io::Write;
use std::path::Path;

/// Name of the log member.
pub const APPLY_LOG: &str = "apply_log";

/// One hop of a bundle being written.
#[derive(Clone, Copy, Debug)]
pub struct Hop<'a> {
    /// The stored pack file.
    pub pack: &'a Path,
    /// Digest of the version after this pack, hex.
    pub hash: &'a str,
    /// Ed25519 signature of the pack.
    pub signature: &'a [u8; 64],
}

/// The member names of hop `n` (from 1): pack, hash, signature.
pub fn member_names(n: usize) -> [String; 3] {
    [
        format!("pack_{n}.tar.gz"),
        format!("pack_{n}_hash"),
        format!("pack_{n}_sig"),
    ]
}

/// The `apply_log` of a bundle of `hops` hops.
pub fn apply_log(hops: usize) -> String {
    (1..=hops)
        .map(|n| {
            let [p, h, s] = member_names(n);
            format!("./{p}|./{h}|./{s}\n")
        })
        .collect()
}

fn header(size: u64) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    h.set_size(size);
    h.set_mode(0o644);
    h.set_mtime(0);
    h.set_entry_type(tar::EntryType::Regular);
    h
}

/// Writes the bundle of `hops` to `out`. The packs are stored compressed
/// already, so gzip only frames them (stored blocks): building a bundle
/// costs a copy, not a compression.
pub fn write_bundle<W: Write>(hops: &[Hop<'_>], out: W) -> Result<W> {
    if hops.is_empty() {
        return Err(BundleError::malformed(
            "bundle",
            "a bundle has at least one pack",
        ));
    }
    let gz = flate2::write::GzEncoder::new(out, flate2::Compression::none());
    let mut tar = tar::Builder::new(gz);
    let w = |e| BundleError::io("writing bundle", e);
    for (i, hop) in hops.iter().enumerate() {
        let [p, h, s] = member_names(i + 1);
        let f = File::open(hop.pack)
            .map_err(|e| BundleError::io(format!("opening {}", hop.pack.display()), e))?;
        let len = f
            .metadata()
            .map_err(|e| BundleError::io(format!("reading {}", hop.pack.display()), e))?
            .len();
        tar.append_data(&mut header(len), &p, std::io::Read::take(f, len))
            .map_err(w)?;
        let hash = format!("{}\n", hop.hash);
        tar.append_data(&mut header(hash.len() as u64), &h, hash.as_bytes())
            .map_err(w)?;
        tar.append_data(&mut header(64), &s, &hop.signature[..])
            .map_err(w)?;
    }
    let log = apply_log(hops.len());
    tar.append_data(&mut header(log.len() as u64), APPLY_LOG, log.as_bytes())
        .map_err(w)?;
    let gz = tar.into_inner().map_err(w)?;
    let mut out = gz.finish().map_err(w)?;
    out.flush().map_err(w)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_lines_are_the_protocol_s() {
        assert_eq!(
            apply_log(2),
            "./pack_1.tar.gz|./pack_1_hash|./pack_1_sig\n./pack_2.tar.gz|./pack_2_hash|./pack_2_sig\n"
        );
    }

    #[test]
    fn members_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("p");
        std::fs::write(&p, b"pack").unwrap();
        let sig = [7u8; 64];
        let hash = "c".repeat(64);
        let hop = Hop {
            pack: &p,
            hash: &hash,
            signature: &sig,
        };
        let bytes = write_bundle(&[hop, hop], Vec::new()).unwrap();
        let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(bytes.as_slice()));
        let names: Vec<String> = tar
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().display().to_string())
            .collect();
        assert_eq!(
            names,
            [
                "pack_1.tar.gz",
                "pack_1_hash",
                "pack_1_sig",
                "pack_2.tar.gz",
                "pack_2_hash",
                "pack_2_sig",
                "apply_log"
            ]
        );
    }
}
