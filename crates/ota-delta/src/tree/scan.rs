//! Listing a tree by handle (nothing followed, files hashed in parallel),
//! the digest of the kept entries, and whether a tree already is a patch's
//! target.

use super::{hex, io, Entry, From, Manifest};
use crate::dirfd::{Dir, Dirs};
use crate::error::{DeltaError, Result};
use rustix::fs::FileType;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashSet};

/// What a tree holds, as scanned.
#[derive(Clone, Debug)]
pub(super) enum Node {
    Dir {
        mode: u32,
    },
    Symlink {
        target: String,
    },
    File {
        mode: u32,
        size: u64,
        sha256: String,
    },
}

/// A scanned tree: relative path -> node, in path order.
pub(super) type Tree = BTreeMap<String, Node>;

/// Lists the tree under `root` without following symlinks, hashing files
/// in parallel.
pub(super) fn scan(root: &Dir) -> Result<Tree> {
    let mut out = BTreeMap::new();
    let mut files: Vec<(String, u32)> = Vec::new();
    // Relative paths, not open handles, so a wide tree holds few descriptors.
    let mut stack = vec![String::new()];
    let dirs = Dirs::new(root);
    while let Some(rel) = stack.pop() {
        let shown = || root.path().join(&rel).display().to_string();
        let dir = dirs.get(&rel).map_err(io(format!("opening {}", shown())))?;
        let entries = dir.entries().map_err(io(format!("listing {}", shown())))?;
        for (name, kind) in entries {
            let name = name.into_string().map_err(|n| DeltaError::Path {
                path: dir.path().join(n),
                why: "file name is not UTF-8".into(),
            })?;
            let path = if rel.is_empty() {
                name.clone()
            } else {
                format!("{rel}/{name}")
            };
            let full = || root.path().join(&path);
            let (kind, mode) = match kind {
                FileType::Symlink => (kind, 0),
                _ => dir
                    .stat(&name)
                    .map_err(io(format!("reading {}", full().display())))?,
            };
            match kind {
                FileType::Symlink => {
                    let target = dir
                        .read_link(&name)
                        .map_err(io(format!("reading link {}", full().display())))?
                        .into_string()
                        .map_err(|_| DeltaError::Path {
                            path: full(),
                            why: "link text is not UTF-8".into(),
                        })?;
                    out.insert(path, Node::Symlink { target });
                }
                FileType::Directory => {
                    out.insert(path.clone(), Node::Dir { mode });
                    stack.push(path);
                }
                FileType::RegularFile => files.push((path, mode)),
                _ => {
                    return Err(DeltaError::Path {
                        path: full(),
                        why: "unsupported file type (not a file, directory or symlink)".into(),
                    })
                }
            }
        }
    }
    use rayon::prelude::*;
    let hashed: Vec<Result<(String, Node)>> = files
        .into_par_iter()
        .map(|(path, mode)| {
            let what = root.path().join(&path);
            let f = dirs
                .parent(&path)
                .and_then(|(d, name)| d.open_file(name))
                .map_err(io(format!("opening {}", what.display())))?;
            let (size, sha256) = copy_hashed(f, &mut std::io::sink())
                .map_err(io(format!("reading {}", what.display())))?;
            Ok((path, Node::File { mode, size, sha256 }))
        })
        .collect();
    for h in hashed {
        let (p, n) = h?;
        out.insert(p, n);
    }
    Ok(out)
}

/// Copies `from` to `to` in 256 KiB pieces, hashing what passes; returns
/// the size and SHA-256 (hex). Plain reads rather than a mapping: most files
/// of a tree are small, and mapping and unmapping each one on several
/// threads costs more (page-table shootdowns) than reading it.
pub(super) fn copy_hashed(
    mut from: std::fs::File,
    to: &mut impl std::io::Write,
) -> std::io::Result<(u64, String)> {
    use std::io::Read;
    let mut buf = vec![0u8; 256 << 10];
    let (mut h, mut size) = (Sha256::new(), 0u64);
    loop {
        match from.read(&mut buf) {
            Ok(0) => return Ok((size, hex(&h.finalize()))),
            Ok(n) => {
                h.update(&buf[..n]);
                to.write_all(&buf[..n])?;
                size += n as u64;
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// The manifest entry for a scanned node; `from` is asked only for files.
pub(super) fn entry_of(path: &str, node: &Node, from: impl FnOnce() -> From) -> Entry {
    match node {
        Node::Dir { mode } => Entry::Dir {
            path: path.to_owned(),
            mode: *mode,
        },
        Node::Symlink { target } => Entry::Symlink {
            path: path.to_owned(),
            target: target.clone(),
        },
        Node::File { mode, size, sha256 } => Entry::File {
            path: path.to_owned(),
            mode: *mode,
            size: *size,
            sha256: sha256.clone(),
            from: from(),
        },
    }
}

/// Whether `old` (if any) is `new` as far as a patch cares.
pub(super) fn same_node(old: Option<&Node>, new: &Node) -> bool {
    match (old, new) {
        (Some(Node::Dir { mode: a }), Node::Dir { mode: b }) => a == b,
        (Some(Node::Symlink { target: a }), Node::Symlink { target: b }) => a == b,
        (
            Some(Node::File {
                mode: a, sha256: x, ..
            }),
            Node::File {
                mode: b, sha256: y, ..
            },
        ) => a == b && x == y,
        _ => false,
    }
}

/// Digest of the OLD entries that stay as they are: every entry not deleted
/// and not changed, in path order, as `path NUL kind NUL mode-or-text NUL
/// content-hash LF`. Returns (count, hex digest).
pub(super) fn kept_digest(
    tree: &Tree,
    deleted: &HashSet<&str>,
    changed: &HashSet<&str>,
) -> (u64, String) {
    let mut h = Sha256::new();
    let mut n = 0u64;
    for (p, node) in tree {
        if deleted.contains(p.as_str()) || changed.contains(p.as_str()) {
            continue;
        }
        n += 1;
        h.update(p.as_bytes());
        match node {
            Node::Dir { mode } => h.update(format!("\0dir\0{mode:o}\0\n")),
            Node::Symlink { target } => h.update(format!("\0symlink\0{target}\0\n")),
            Node::File { mode, sha256, .. } => h.update(format!("\0file\0{mode:o}\0{sha256}\n")),
        }
    }
    (n, hex(&h.finalize()))
}

/// The paths a manifest deletes and changes.
pub(super) fn deleted_and_changed(m: &Manifest) -> (HashSet<&str>, HashSet<&str>) {
    (
        m.deleted.iter().map(String::as_str).collect(),
        m.entries.iter().map(Entry::path).collect(),
    )
}

/// Whether `tree`'s unchanged part is the one the patch was made for.
pub(super) fn kept_matches(tree: &Tree, m: &Manifest) -> std::result::Result<(), (u64, String)> {
    let (deleted, changed) = deleted_and_changed(m);
    let (kept, digest) = kept_digest(tree, &deleted, &changed);
    if kept == m.kept && digest == m.kept_sha256 {
        Ok(())
    } else {
        Err((kept, digest))
    }
}

/// Whether `tree` already is the patch's target: every entry of the
/// manifest is there as listed, no deleted path is, and everything else
/// hashes to the kept digest (NEW = changed entries + kept entries).
pub(super) fn is_target(tree: &Tree, m: &Manifest) -> bool {
    if m.deleted.iter().any(|d| tree.contains_key(d)) {
        return false;
    }
    let listed = m.entries.iter().all(|e| match (e, tree.get(e.path())) {
        (Entry::Dir { mode, .. }, Some(Node::Dir { mode: m })) => mode == m,
        (Entry::Symlink { target, .. }, Some(Node::Symlink { target: t })) => target == t,
        (
            Entry::File {
                mode, size, sha256, ..
            },
            Some(Node::File {
                mode: m,
                size: s,
                sha256: h,
            }),
        ) => mode == m && size == s && sha256 == h,
        _ => false,
    });
    listed && kept_matches(tree, m).is_ok()
}
