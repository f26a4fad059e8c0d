//! A pack: one hop of a delta path, as the server stores and signs it.
//!
//! `pack_N.tar.gz` is a gzip'd tar with exactly two members, in this order:
//!
//! - `pack.json`: [`PackInfo`], what the patch is for (package, branch,
//!   from, to, direction, patch format, the digests of both versions and
//!   the patch's SHA-256 and size);
//! - `patch`: the patch itself (`OTATREE1` for trees, `OTADIFF1` for single
//!   files, as `ota-delta` writes them).
//!
//! The signature (`pack_N_sig`) covers the whole `pack_N.tar.gz` file, so it
//! also binds the digests in `pack.json`: a device checks the chain
//! (`from_digest` of each pack is the `to_digest` of the one before, the
//! first is what it holds) before it touches anything. Members are written
//! with fixed metadata (mode 0644, owner 0, time 0), so the same patch and
//! info always give the same bytes.

use crate::error::{BundleError, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::{self, Read, Write};
use std::path::Path;

/// Name of the info member.
pub const INFO_NAME: &str = "pack.json";
/// Name of the patch member.
pub const PATCH_NAME: &str = "patch";
/// Largest `pack.json` accepted.
pub const INFO_MAX: u64 = 64 << 10;

/// Which way a pack goes on the version list.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum PackDirection {
    /// To a newer version.
    Upgrade,
    /// To an older version.
    Rollback,
}

impl PackDirection {
    /// `upgrade` or `rollback`, as the catalogue's delta rows store it.
    pub fn as_str(self) -> &'static str {
        match self {
            PackDirection::Upgrade => "upgrade",
            PackDirection::Rollback => "rollback",
        }
    }
}

/// The patch format inside a pack.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum PatchFormat {
    /// A directory-tree patch (`OTATREE1`).
    Otatree1,
    /// A single-file patch (`OTADIFF1`).
    Otadiff1,
}

impl PatchFormat {
    /// `otatree1` or `otadiff1`, as the catalogue's delta rows store it.
    pub fn as_str(self) -> &'static str {
        match self {
            PatchFormat::Otatree1 => "otatree1",
            PatchFormat::Otadiff1 => "otadiff1",
        }
    }
}

/// What a pack's patch is for (`pack.json`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct PackInfo {
    /// Package name.
    pub package: String,
    /// Branch.
    pub branch: String,
    /// The version the patch applies to.
    pub from: String,
    /// The version it produces.
    pub to: String,
    /// Upgrade or rollback.
    pub direction: PackDirection,
    /// The patch format.
    pub format: PatchFormat,
    /// Digest of `from` (`ota_core::digest`).
    pub from_digest: String,
    /// Digest of `to`.
    pub to_digest: String,
    /// SHA-256 of the patch member.
    pub patch_sha256: String,
    /// Size of the patch member.
    pub patch_size: u64,
}

fn header(size: u64) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    h.set_size(size);
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h.set_entry_type(tar::EntryType::Regular);
    h
}

/// Writes a pack holding the patch at `patch` to `out`; fills in the patch's
/// SHA-256 and size in `info` and returns the info written.
pub fn write_pack(info: &PackInfo, patch: &Path, out: impl Write) -> Result<PackInfo> {
    let ctx = |what: &str| format!("{what} {}", patch.display());
    let mut f = File::open(patch).map_err(|e| BundleError::io(ctx("opening patch"), e))?;
    let mut hasher = Sha256::new();
    let size = io::copy(&mut f, &mut HashWriter(&mut hasher))
        .map_err(|e| BundleError::io(ctx("reading patch"), e))?;
    let mut info = info.clone();
    info.patch_sha256 = hex::encode(hasher.finalize());
    info.patch_size = size;
    let json = serde_json::to_vec_pretty(&info)
        .map_err(|e| BundleError::malformed(INFO_NAME, e.to_string()))?;

    // The patch is already compressed (zstd): gzip only frames it.
    let gz = flate2::write::GzEncoder::new(out, flate2::Compression::none());
    let mut tar = tar::Builder::new(gz);
    tar.mode(tar::HeaderMode::Deterministic);
    let w = |e| BundleError::io("writing pack", e);
    tar.append_data(&mut header(json.len() as u64), INFO_NAME, json.as_slice())
        .map_err(w)?;
    let f = File::open(patch).map_err(|e| BundleError::io(ctx("opening patch"), e))?;
    // Read exactly the bytes hashed above, even if the file grew meanwhile.
    tar.append_data(&mut header(size), PATCH_NAME, f.take(size))
        .map_err(w)?;
    let gz = tar.into_inner().map_err(w)?;
    let mut out = gz.finish().map_err(w)?;
    out.flush().map_err(w)?;
    Ok(info)
}

/// Reads a pack: checks its layout, extracts the patch to `patch_out` and
/// checks the patch against the SHA-256 and size in `pack.json`. The pack's
/// signature must have been checked before trusting what this returns.
pub fn read_pack(pack: impl Read, what: &str, patch_out: &Path) -> Result<PackInfo> {
    let bad = |why: String| BundleError::malformed(what, why);
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(pack));
    let mut entries = tar
        .entries()
        .map_err(|e| BundleError::io(format!("reading {what}"), e))?;
    let mut next = |expect: &str| -> Result<tar::Entry<'_, _>> {
        let e = entries
            .next()
            .ok_or_else(|| bad(format!("missing member {expect}")))?
            .map_err(|e| BundleError::io(format!("reading {what}"), e))?;
        let path = e
            .path()
            .map_err(|e| BundleError::io(format!("reading {what}"), e))?
            .into_owned();
        if path != Path::new(expect) || e.header().entry_type() != tar::EntryType::Regular {
            return Err(bad(format!(
                "expected member {expect}, found {}",
                path.display()
            )));
        }
        Ok(e)
    };
    let info_entry = next(INFO_NAME)?;
    if info_entry.size() > INFO_MAX {
        return Err(bad(format!("{INFO_NAME} is larger than {INFO_MAX} bytes")));
    }
    let mut json = Vec::new();
    info_entry
        .take(INFO_MAX)
        .read_to_end(&mut json)
        .map_err(|e| BundleError::io(format!("reading {what}/{INFO_NAME}"), e))?;
    let info: PackInfo =
        serde_json::from_slice(&json).map_err(|e| bad(format!("{INFO_NAME}: {e}")))?;
    let mut patch = next(PATCH_NAME)?;
    if patch.size() != info.patch_size {
        return Err(bad(format!(
            "patch is {} bytes, {INFO_NAME} says {}",
            patch.size(),
            info.patch_size
        )));
    }
    let mut out = File::create(patch_out)
        .map_err(|e| BundleError::io(format!("creating {}", patch_out.display()), e))?;
    let mut hasher = Sha256::new();
    let mut tee = TeeWriter(&mut out, &mut hasher);
    let n = io::copy(&mut patch, &mut tee)
        .map_err(|e| BundleError::io(format!("extracting {what}/{PATCH_NAME}"), e))?;
    if n != info.patch_size || hex::encode(hasher.finalize()) != info.patch_sha256 {
        return Err(bad(format!(
            "patch does not match the SHA-256 in {INFO_NAME}"
        )));
    }
    drop(patch);
    if entries.next().is_some() {
        return Err(bad("members after the patch".into()));
    }
    out.sync_all()
        .map_err(|e| BundleError::io(format!("syncing {}", patch_out.display()), e))?;
    Ok(info)
}

struct HashWriter<'a>(&'a mut Sha256);

impl Write for HashWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

struct TeeWriter<'a>(&'a mut File, &'a mut Sha256);

impl Write for TeeWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.0.write(buf)?;
        self.1.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info() -> PackInfo {
        PackInfo {
            package: "app".into(),
            branch: "stable".into(),
            from: "1.0.0".into(),
            to: "1.0.1".into(),
            direction: PackDirection::Upgrade,
            format: PatchFormat::Otadiff1,
            from_digest: "a".repeat(64),
            to_digest: "b".repeat(64),
            patch_sha256: String::new(),
            patch_size: 0,
        }
    }

    #[test]
    fn round_trip_and_deterministic() {
        let dir = tempfile::tempdir().unwrap();
        let patch = dir.path().join("p");
        std::fs::write(&patch, b"OTADIFF1 not really").unwrap();
        let (mut a, mut b) = (Vec::new(), Vec::new());
        let written = write_pack(&info(), &patch, &mut a).unwrap();
        write_pack(&info(), &patch, &mut b).unwrap();
        assert_eq!(a, b);
        assert_eq!(written.patch_size, 19);
        let out = dir.path().join("out");
        let read = read_pack(a.as_slice(), "pack_1.tar.gz", &out).unwrap();
        assert_eq!(read, written);
        assert_eq!(std::fs::read(&out).unwrap(), b"OTADIFF1 not really");
    }

    #[test]
    fn refuses_a_patch_that_is_not_the_one_described() {
        let dir = tempfile::tempdir().unwrap();
        let patch = dir.path().join("p");
        std::fs::write(&patch, b"xyz").unwrap();
        let mut bytes = Vec::new();
        let mut i = write_pack(&info(), &patch, &mut bytes).unwrap();
        i.patch_sha256 = "0".repeat(64);
        // Rewrite the pack with a lying info by hand.
        let json = serde_json::to_vec(&i).unwrap();
        let mut tar = tar::Builder::new(Vec::new());
        tar.append_data(&mut header(json.len() as u64), INFO_NAME, json.as_slice())
            .unwrap();
        tar.append_data(&mut header(3), PATCH_NAME, &b"xyz"[..])
            .unwrap();
        let raw = tar.into_inner().unwrap();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&raw).unwrap();
        let lying = gz.finish().unwrap();
        let err = read_pack(lying.as_slice(), "pack_1.tar.gz", &dir.path().join("o")).unwrap_err();
        assert!(err.to_string().contains("does not match"), "{err}");
    }
}
