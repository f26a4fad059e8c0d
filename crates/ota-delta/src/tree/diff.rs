//! Writing a tree patch (and its reverse) from two scanned trees.

use super::scan::{entry_of, kept_digest, same_node, scan, Node, Tree};
use super::{io, Entry, From, Manifest, Source, MAGIC};
use crate::dirfd::Dir;
use crate::error::{DeltaError, Result};
use crate::file::{self, DiffOptions, Format, Mapped};
use std::collections::{HashMap, HashSet};
use std::io::{BufWriter, Write};
use std::path::Path;

/// A sort key that lines up renamed versions of a file: digits dropped.
pub(super) fn similarity_key(path: &str) -> String {
    let base: String = path.chars().filter(|c| !c.is_ascii_digit()).collect();
    format!("{base}\0{path}")
}

fn open_root(root: &Path) -> Result<Dir> {
    Dir::open(root).map_err(|e| {
        if crate::dirfd::is_link_refusal(&e) {
            DeltaError::Path {
                path: root.into(),
                why: "not a directory (a symlink to one is not followed)".into(),
            }
        } else {
            DeltaError::io(format!("opening {}", root.display()), e)
        }
    })
}

/// Diffs two directory trees into a tree patch. With `reverse`, also writes
/// the patch from NEW back to OLD (both from one scan of each tree). Tree
/// patches are always `OTATREE1`: asking for `BSDIFF40` is an error.
pub fn diff_trees(
    old: &Path,
    new: &Path,
    patch: &Path,
    reverse: Option<&Path>,
    opts: &DiffOptions,
) -> Result<()> {
    if opts.format != Format::Otadiff {
        return Err(DeltaError::Unsupported(
            "BSDIFF40 describes one file; directory trees are always written as OTATREE1 \
             (use the otadiff format)"
                .into(),
        ));
    }
    let (old_dir, new_dir) = (open_root(old)?, open_root(new)?);
    let (a, b) = rayon::join(|| scan(&old_dir), || scan(&new_dir));
    let (a, b) = (a?, b?);
    write_tree_patch(&old_dir, &a, &new_dir, &b, patch, opts)?;
    if let Some(rev) = reverse {
        write_tree_patch(&new_dir, &b, &old_dir, &a, rev, opts)?;
    }
    Ok(())
}

/// The bytes of `paths` under `root`, concatenated (opened by handle).
fn concat<'a>(root: &Dir, paths: impl Iterator<Item = &'a str>) -> Result<Vec<u8>> {
    let mut v = Vec::new();
    for p in paths {
        let what = root.path().join(p);
        let f = root
            .walk_parent(p)
            .and_then(|(d, name)| d.open_file(name))
            .map_err(io(format!("opening {}", what.display())))?;
        v.extend_from_slice(Mapped::from_file(&f, &what)?.bytes());
    }
    Ok(v)
}

fn write_tree_patch(
    old_root: &Dir,
    old: &Tree,
    new_root: &Dir,
    new: &Tree,
    patch: &Path,
    opts: &DiffOptions,
) -> Result<()> {
    // OLD content by hash, preferring the same path.
    let mut by_hash: HashMap<&str, &str> = HashMap::new();
    for (p, n) in old {
        if let Node::File { sha256, .. } = n {
            by_hash.entry(sha256.as_str()).or_insert(p.as_str());
        }
    }
    let mut entries = Vec::new();
    let mut stream_files: Vec<&str> = Vec::new();
    let mut unchanged: HashSet<&str> = HashSet::new();
    for (p, n) in new {
        if same_node(old.get(p), n) {
            unchanged.insert(p.as_str());
            continue;
        }
        entries.push(entry_of(p, n, || {
            let Node::File { sha256, .. } = n else {
                return From::Stream;
            };
            let same_content =
                matches!(old.get(p), Some(Node::File { sha256: s, .. }) if s == sha256);
            if same_content {
                unchanged.insert(p.as_str());
                From::Copy(p.clone())
            } else if let Some(src) = by_hash.get(sha256.as_str()) {
                From::Copy((*src).to_owned())
            } else {
                stream_files.push(p.as_str());
                From::Stream
            }
        }));
    }
    let mut sources: Vec<(&str, u64, &str)> = old
        .iter()
        .filter_map(|(p, n)| match n {
            Node::File { size, sha256, .. } if !unchanged.contains(p.as_str()) => {
                Some((p.as_str(), *size, sha256.as_str()))
            }
            _ => None,
        })
        .collect();
    sources.sort_by_cached_key(|(p, _, _)| similarity_key(p));
    let deleted: Vec<String> = old
        .keys()
        .filter(|p| !new.contains_key(*p))
        .cloned()
        .collect();
    let changed: HashSet<&str> = entries.iter().map(Entry::path).collect();
    let (kept, kept_sha256) =
        kept_digest(old, &deleted.iter().map(String::as_str).collect(), &changed);
    let manifest = Manifest {
        sources: sources
            .iter()
            .map(|(p, s, h)| Source {
                path: (*p).into(),
                size: *s,
                sha256: (*h).into(),
            })
            .collect(),
        entries,
        deleted,
        kept,
        kept_sha256,
    };
    let src = concat(old_root, sources.iter().map(|s| s.0))?;
    let dst = concat(new_root, stream_files.iter().copied())?;

    let json = serde_json::to_vec(&manifest)
        .map_err(|e| DeltaError::corrupt(format!("serialising the manifest: {e}")))?;
    // The manifest gets the patch's zstd level (19 by default), compressed
    // in one call so zstd sizes its tables to the manifest (streaming with
    // an unknown size takes level 19's full ~90 MB tables).
    let zman = zstd::bulk::compress(&json[..], opts.level.clamp(1, 19))
        .map_err(io("compressing the manifest"))?;
    let out = file::Output::create(patch)?;
    let mut w = BufWriter::with_capacity(1 << 20, out);
    let werr = || io(format!("writing {}", patch.display()));
    w.write_all(MAGIC).map_err(werr())?;
    w.write_all(&(zman.len() as u64).to_le_bytes())
        .map_err(werr())?;
    w.write_all(&zman).map_err(werr())?;
    file::diff_bytes(
        &src,
        &dst,
        &DiffOptions {
            format: Format::Otadiff,
            // The streams are concatenations of files, not one ELF image.
            exe_rounds: 0,
            ..*opts
        },
        &mut w,
    )?;
    let out = w
        .into_inner()
        .map_err(|e| DeltaError::io(format!("writing {}", patch.display()), e.into_error()))?;
    out.finish_new(true)
}
