//! Directory-tree deltas (`OTATREE1`).
//!
//! ```text
//!  0  8  magic "OTATREE1"
//!  8  8  length M of the compressed manifest, u64 little-endian
//! 16  M  zstd(manifest JSON)
//!  …     an OTADIFF1 patch from the "source stream" to the "target stream"
//! ```
//!
//! The manifest lists what changes: the entries of NEW that differ from
//! OLD at the same path (directories and symlinks with their mode or link
//! text; a file either as a `copy` of an OLD file with the same SHA-256, or
//! as the next `size` bytes of the target stream) and the paths of OLD that
//! NEW drops. Everything else is kept, and is covered by one digest over the
//! kept entries (path, kind, mode or link text, content hash), so a patch
//! for a tree of 10,000 unchanged files costs a few bytes, and an OLD tree
//! that is not the one the patch was made for is refused as a whole.
//!
//! The same two parts describe NEW completely: a tree is the target when
//! every manifest entry is there as listed, no deleted path is, and the
//! remaining entries hash to the kept digest (they are the kept entries).
//! That is how re-applying a patch to a tree it already produced is
//! recognised as "already up to date" without a separate target digest.
//!
//! The target stream is the concatenation of the `stream` files; the source
//! stream is the concatenation of the OLD files listed in `sources` (every
//! OLD file that does not stay unchanged at its path), ordered so that files
//! with similar names line up. One binary delta between the two streams
//! finds renamed, moved and similar files across file boundaries
//! (`pkg-1.2.dist-info/RECORD` against `pkg-1.3.dist-info/RECORD`), and
//! bytes that match nothing are stored compressed, which is what a per-file
//! "whole file if the delta is ≥ 95 %" rule approximates.
//!
//! Applying never touches OLD: the result is built in a staging directory
//! beside the output, every file is checked against its SHA-256, the whole
//! stage is made durable with one `syncfs` (not an fsync per file), and
//! only then is the complete, verified tree renamed into place: after a
//! crash the output is either absent or whole. `--in-place` swaps
//! directories under a journal, so a crash at any point rolls back. Every
//! write goes through [`crate::dirfd`] (directory handles, nothing followed),
//! so a symlink in OLD, in NEW or beside the output never leads outside.
//!
//! - [`scan`](self::scan): listing a tree, the kept digest, target check;
//! - `diff`: writing a patch;
//! - `build`: staging NEW from OLD and the patch;
//! - `apply`: the public apply calls, the in-place journal and recovery.

mod apply;
mod build;
mod diff;
mod scan;

pub use apply::{
    patch_tree, patch_tree_in_place, patch_tree_in_place_with, patch_tree_with, recover_in_place,
};
pub use diff::diff_trees;

use crate::error::{DeltaError, Result};
use crate::format::{Header, HEADER_LEN};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::io::Read;
use std::path::PathBuf;

/// Magic of the tree patch format.
pub const MAGIC: &[u8; 8] = b"OTATREE1";
/// Largest compressed manifest accepted.
pub const MANIFEST_MAX: u64 = 64 << 20;
/// Largest manifest JSON accepted once decompressed.
pub const MANIFEST_JSON_MAX: u64 = 256 << 20;
/// Longest relative path accepted.
pub const PATH_MAX: usize = 4096;

/// An OLD file that is part of the source stream.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Source {
    /// Relative path in OLD.
    pub path: String,
    /// Size in bytes.
    pub size: u64,
    /// SHA-256, hex.
    pub sha256: String,
}

/// Where a target file's bytes come from.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum From {
    /// An OLD file with the same content.
    Copy(String),
    /// The next bytes of the target stream.
    Stream,
}

/// One entry of NEW.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Entry {
    /// A directory.
    Dir {
        /// Relative path.
        path: String,
        /// Permission bits.
        mode: u32,
    },
    /// A symbolic link (its text is stored, never followed).
    Symlink {
        /// Relative path.
        path: String,
        /// The link's text.
        target: String,
    },
    /// A regular file.
    File {
        /// Relative path.
        path: String,
        /// Permission bits.
        mode: u32,
        /// Size in bytes.
        size: u64,
        /// SHA-256, hex.
        sha256: String,
        /// Where its bytes come from.
        from: From,
    },
}

impl Entry {
    /// The entry's relative path.
    pub fn path(&self) -> &str {
        match self {
            Entry::Dir { path, .. } | Entry::Symlink { path, .. } | Entry::File { path, .. } => {
                path
            }
        }
    }
}

/// The manifest of a tree patch.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Manifest {
    /// OLD files forming the source stream, in stream order.
    pub sources: Vec<Source>,
    /// Entries of NEW that differ from OLD at the same path, in path order.
    pub entries: Vec<Entry>,
    /// Paths of OLD that NEW no longer has.
    pub deleted: Vec<String>,
    /// How many OLD entries are kept as they are.
    pub kept: u64,
    /// Digest of the kept entries ([`kept_digest`]).
    pub kept_sha256: String,
}

/// Mode bits a tree patch may set only when the caller allows them.
pub const SETID_BITS: u32 = 0o6000;

/// How a tree patch is applied.
#[derive(Clone, Copy, Debug, Default)]
pub struct ApplyOptions {
    /// Accept entries whose mode sets setuid or setgid (`ota patch
    /// --allow-setuid`). Off by default: a patch must not be able to plant
    /// a privileged binary unless the caller means it to. The sticky bit
    /// grants nothing and is always accepted.
    pub allow_setuid: bool,
}

/// What an apply did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Applied {
    /// The tree was updated.
    Updated,
    /// The tree already was the patch's target; nothing was changed.
    AlreadyUpToDate,
}

/// Refuses setuid/setgid modes in the manifest unless `opts` allows them.
fn check_modes(m: &Manifest, opts: &ApplyOptions) -> Result<()> {
    if opts.allow_setuid {
        return Ok(());
    }
    for e in &m.entries {
        let mode = match e {
            Entry::Dir { mode, .. } | Entry::File { mode, .. } => *mode,
            Entry::Symlink { .. } => 0,
        };
        if mode & SETID_BITS != 0 {
            return Err(DeltaError::Path {
                path: e.path().into(),
                why: format!(
                    "refused entry: mode {mode:o} sets setuid/setgid (allow with ApplyOptions::allow_setuid, `ota patch --allow-setuid`)"
                ),
            });
        }
    }
    Ok(())
}

fn hex(d: &[u8]) -> String {
    d.iter().map(|b| format!("{b:02x}")).collect()
}

fn io(ctx: impl Into<String>) -> impl FnOnce(std::io::Error) -> DeltaError {
    let ctx = ctx.into();
    move |e| DeltaError::io(ctx, e)
}

/// Checks a relative path from a patch: no `..`, `.`, empty components,
/// absolute paths, NUL bytes or over-long names.
pub fn check_rel_path(p: &str) -> Result<()> {
    let bad = |why: &str| {
        Err(DeltaError::Path {
            path: PathBuf::from(p),
            why: format!("refused path in patch: {why}"),
        })
    };
    if p.is_empty() || p.len() > PATH_MAX {
        return bad("empty or too long");
    }
    if p.starts_with('/') {
        return bad("absolute");
    }
    if p.contains('\0') {
        return bad("contains NUL");
    }
    if p.split('/').any(|c| c.is_empty() || c == "." || c == "..") {
        return bad("empty, '.' or '..' component");
    }
    Ok(())
}

/// Validates a manifest on its own: every path checked, no duplicates,
/// fields well-formed, sizes that add up with the delta's header. (Parents
/// being directories is checked against the whole NEW tree in `build`.)
fn validate(m: &Manifest, header: &Header) -> Result<()> {
    let mut paths: HashSet<&str> = HashSet::new();
    let mut stream_total = 0u64;
    for e in &m.entries {
        let p = e.path();
        check_rel_path(p)?;
        if !paths.insert(p) {
            return Err(DeltaError::Path {
                path: p.into(),
                why: "refused entry: listed twice".into(),
            });
        }
        match e {
            Entry::File {
                sha256,
                from,
                size,
                mode,
                ..
            } => {
                if sha256.len() != 64
                    || !sha256.bytes().all(|b| b.is_ascii_hexdigit())
                    || *mode > 0o7777
                {
                    return Err(DeltaError::corrupt(format!("bad file entry {p}")));
                }
                match from {
                    From::Copy(src) => check_rel_path(src)?,
                    From::Stream => stream_total = stream_total.saturating_add(*size),
                }
            }
            Entry::Dir { mode, .. } if *mode > 0o7777 => {
                return Err(DeltaError::corrupt(format!("bad mode for {p}")))
            }
            Entry::Symlink { target, .. } if target.is_empty() || target.contains('\0') => {
                return Err(DeltaError::corrupt(format!("bad link text for {p}")))
            }
            _ => {}
        }
    }
    let mut seen = HashSet::new();
    let mut source_total = 0u64;
    for s in &m.sources {
        check_rel_path(&s.path)?;
        if !seen.insert(s.path.as_str()) {
            return Err(DeltaError::Path {
                path: s.path.clone().into(),
                why: "refused source: listed twice".into(),
            });
        }
        source_total = source_total.saturating_add(s.size);
    }
    for d in &m.deleted {
        check_rel_path(d)?;
        if paths.contains(d.as_str()) {
            return Err(DeltaError::Path {
                path: d.into(),
                why: "refused entry: both deleted and changed".into(),
            });
        }
    }
    if stream_total != header.new_size || source_total != header.old_size {
        return Err(DeltaError::corrupt(format!(
            "sizes do not add up: files {stream_total} / {source_total} bytes, delta {} / {} bytes",
            header.new_size, header.old_size
        )));
    }
    Ok(())
}

/// Reads the manifest and the delta header from a tree patch.
fn read_head(r: &mut impl Read) -> Result<(Manifest, Header)> {
    let mut magic = [0u8; 16];
    r.read_exact(&mut magic)
        .map_err(|e| DeltaError::corrupt(format!("truncated tree patch ({e})")))?;
    if &magic[..8] != MAGIC {
        return Err(DeltaError::corrupt("not an OTATREE1 patch"));
    }
    let mlen = u64::from_le_bytes(magic[8..16].try_into().unwrap_or([0; 8]));
    if mlen > MANIFEST_MAX {
        return Err(DeltaError::corrupt(format!(
            "manifest of {mlen} bytes is over the limit"
        )));
    }
    let mut zman = vec![0u8; mlen as usize];
    r.read_exact(&mut zman)
        .map_err(|e| DeltaError::corrupt(format!("truncated manifest ({e})")))?;
    let mut json = Vec::new();
    zstd::stream::read::Decoder::new(&zman[..])
        .map_err(io("starting zstd"))?
        .take(MANIFEST_JSON_MAX + 1)
        .read_to_end(&mut json)
        .map_err(|e| DeltaError::corrupt(format!("damaged manifest ({e})")))?;
    if json.len() as u64 > MANIFEST_JSON_MAX {
        return Err(DeltaError::corrupt("manifest is over the size limit"));
    }
    let manifest: Manifest =
        serde_json::from_slice(&json).map_err(|e| DeltaError::corrupt(format!("manifest: {e}")))?;
    let mut h = [0u8; HEADER_LEN];
    r.read_exact(&mut h)
        .map_err(|e| DeltaError::corrupt(format!("truncated delta header ({e})")))?;
    let header = Header::parse(&h)?;
    if header.transform != crate::format::Transform::None {
        return Err(DeltaError::corrupt(
            "a tree patch's delta cannot carry a transform",
        ));
    }
    validate(&manifest, &header)?;
    Ok((manifest, header))
}

/// Reads and validates the manifest and delta header at the start of a
/// tree patch (for inspecting a patch without applying it).
pub fn read_manifest(r: &mut impl Read) -> Result<(Manifest, Header)> {
    read_head(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_paths() {
        for bad in [
            "",
            "/etc/passwd",
            "../x",
            "a/../../x",
            "a//b",
            "./a",
            "a/.",
            "a\0b",
        ] {
            assert!(check_rel_path(bad).is_err(), "{bad:?}");
        }
        for good in ["a", "a/b", "a/.hidden", "a/b..c", "weird name/ü"] {
            assert!(check_rel_path(good).is_ok(), "{good:?}");
        }
    }

    #[test]
    fn similar_names_sort_together() {
        let mut v = [
            "pkg-1.3.dist-info/RECORD",
            "zeta",
            "pkg-1.2.dist-info/METADATA",
            "pkg-1.2.dist-info/RECORD",
        ];
        v.sort_by_cached_key(|p| diff::similarity_key(p));
        assert_eq!(v[0], "pkg-1.2.dist-info/METADATA");
        assert!(v[1].ends_with("RECORD") && v[2].ends_with("RECORD"));
    }
}
