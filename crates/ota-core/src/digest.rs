//! The digest of a version: what a device compares after each patch to know
//! it holds exactly that version.
//!
//! - A single file: its SHA-256 (lowercase hex).
//! - A directory tree: the Merkle tree hash of RFC 6962 §2.1 (a leaf is
//!   `SHA-256(0x00 ‖ entry)`, a node `SHA-256(0x01 ‖ left ‖ right)`, the split
//!   at the largest power of two below the count; no entries: `SHA-256("")`)
//!   over the tree's entries sorted by path bytes, the root itself excluded,
//!   each entry encoded as
//!   `path NUL kind NUL mode NUL sha256`, where `path` is relative with `/`
//!   separators, `kind` is `file`, `dir` or `symlink`, `mode` the permission
//!   bits in octal (`755`; `777` for symlinks, whose mode Linux ignores) and
//!   `sha256` the hex SHA-256 of the file's bytes or the link's target
//!   text (of nothing for a directory). Symlinks are never followed;
//!   other file types (devices, sockets, fifos) are refused.
//!
//! Owners and timestamps are not part of a version: devices install with
//! their own.
//!
//! ```
//! use ota_core::digest::{merkle_root, Entry, Kind};
//! let entries = vec![
//!     Entry { path: "bin/app".into(), kind: Kind::File, mode: 0o755, sha256: ota_core::Sha256Hex::of_bytes(b"elf") },
//!     Entry { path: "bin".into(), kind: Kind::Dir, mode: 0o755, sha256: ota_core::Sha256Hex::of_bytes(b"") },
//! ];
//! let root = merkle_root(entries);
//! assert_eq!(root.as_str().len(), 64);
//! ```

use crate::hash::Sha256Hex;
use sha2::{Digest, Sha256};
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// What an entry is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// A symbolic link (its target text is hashed).
    Symlink,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::File => "file",
            Kind::Dir => "dir",
            Kind::Symlink => "symlink",
        }
    }
}

/// One entry of a tree.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Relative path, `/`-separated.
    pub path: String,
    /// What it is.
    pub kind: Kind,
    /// Permission bits (`0o7777` at most).
    pub mode: u32,
    /// SHA-256 of the content, the link text, or nothing (directories).
    pub sha256: Sha256Hex,
}

fn leaf(e: &Entry) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update([0u8]);
    h.update(e.path.as_bytes());
    h.update([0u8]);
    h.update(e.kind.as_str().as_bytes());
    h.update([0u8]);
    h.update(format!("{:o}", e.mode & 0o7777).as_bytes());
    h.update([0u8]);
    h.update(e.sha256.as_str().as_bytes());
    h.finalize().into()
}

fn node(leaves: &[[u8; 32]]) -> [u8; 32] {
    match leaves.len() {
        0 => Sha256::digest(b"").into(),
        1 => leaves[0],
        n => {
            let k = 1usize << (usize::BITS - 1 - (n - 1).leading_zeros());
            let mut h = Sha256::new();
            h.update([1u8]);
            h.update(node(&leaves[..k]));
            h.update(node(&leaves[k..]));
            h.finalize().into()
        }
    }
}

/// The Merkle root of a tree's entries (sorted here by path bytes).
pub fn merkle_root(mut entries: Vec<Entry>) -> Sha256Hex {
    entries.sort_by(|a, b| a.path.as_bytes().cmp(b.path.as_bytes()));
    let leaves: Vec<[u8; 32]> = entries.iter().map(leaf).collect();
    Sha256Hex::from_bytes(node(&leaves))
}

/// The digest of what is at `path`: a file's SHA-256, or a directory's
/// Merkle root (module documentation).
pub fn digest_path(path: &Path) -> io::Result<Sha256Hex> {
    let meta = std::fs::symlink_metadata(path)?;
    if meta.is_file() {
        return Sha256Hex::of_reader(std::fs::File::open(path)?);
    }
    if !meta.is_dir() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} is neither a file nor a directory", path.display()),
        ));
    }
    let mut entries = Vec::new();
    walk(path, "", &mut entries)?;
    Ok(merkle_root(entries))
}

fn walk(dir: &Path, prefix: &str, out: &mut Vec<Entry>) -> io::Result<()> {
    for item in std::fs::read_dir(dir)? {
        let item = item?;
        let name = item.file_name();
        let name = name.to_str().ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}: file names must be UTF-8", item.path().display()),
            )
        })?;
        let rel = if prefix.is_empty() {
            name.to_owned()
        } else {
            format!("{prefix}/{name}")
        };
        let meta = item.metadata()?; // does not follow symlinks
        let mode = meta.permissions().mode() & 0o7777;
        let ft = meta.file_type();
        if ft.is_symlink() {
            let target = std::fs::read_link(item.path())?;
            let text = target.to_str().ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{rel}: link target is not UTF-8"),
                )
            })?;
            out.push(Entry {
                path: rel,
                kind: Kind::Symlink,
                mode: 0o777,
                sha256: Sha256Hex::of_bytes(text.as_bytes()),
            });
        } else if ft.is_dir() {
            walk(&item.path(), &rel, out)?;
            out.push(Entry {
                path: rel,
                kind: Kind::Dir,
                mode,
                sha256: Sha256Hex::of_bytes(b""),
            });
        } else if ft.is_file() {
            out.push(Entry {
                sha256: Sha256Hex::of_reader(std::fs::File::open(item.path())?)?,
                path: rel,
                kind: Kind::File,
                mode,
            });
        } else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{rel}: only files, directories and symlinks belong in a version"),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn rfc6962_shape() {
        let h = |b: &[u8]| -> [u8; 32] { Sha256::digest(b).into() };
        assert_eq!(node(&[]), h(b""));
        let (a, b, c) = (h(b"a"), h(b"b"), h(b"c"));
        let pair = |x: [u8; 32], y: [u8; 32]| -> [u8; 32] {
            let mut v = vec![1u8];
            v.extend_from_slice(&x);
            v.extend_from_slice(&y);
            h(&v)
        };
        // Three leaves split 2 + 1.
        assert_eq!(node(&[a, b, c]), pair(pair(a, b), c));
        assert_eq!(node(&[a, b]), pair(a, b));
    }

    #[test]
    fn tree_digest_sees_content_mode_links_and_names() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir(root.join("bin")).unwrap();
        std::fs::write(root.join("bin/app"), b"elf").unwrap();
        std::fs::set_permissions(root.join("bin/app"), std::fs::Permissions::from_mode(0o755))
            .unwrap();
        symlink("bin/app", root.join("app")).unwrap();
        let d0 = digest_path(root).unwrap();
        assert_eq!(digest_path(root).unwrap(), d0, "deterministic");
        std::fs::set_permissions(root.join("bin/app"), std::fs::Permissions::from_mode(0o644))
            .unwrap();
        let d1 = digest_path(root).unwrap();
        assert_ne!(d1, d0, "mode counts");
        std::fs::remove_file(root.join("app")).unwrap();
        symlink("bin/other", root.join("app")).unwrap();
        assert_ne!(digest_path(root).unwrap(), d1, "link text counts");
        let f = root.join("bin/app");
        assert_eq!(
            digest_path(&f).unwrap(),
            Sha256Hex::of_bytes(b"elf"),
            "a file is its SHA-256"
        );
    }
}
