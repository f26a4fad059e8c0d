//! Staging NEW from OLD and a tree patch. Every entry is created by handle
//! inside a stage directory the caller made (`O_EXCL|O_NOFOLLOW`, walked
//! one component at a time), every file is checked against its SHA-256,
//! modes are set with `fchmod` on the open file or directory, and nothing
//! is ever followed, so no entry of NEW (a symlink named like something we
//! write) and no symlink in OLD can redirect a write. There are no
//! temporary names inside the stage.

use super::scan::{copy_hashed, deleted_and_changed, entry_of, Node, Tree};
use super::{hex, io, Entry, From, Manifest};
use crate::dirfd::{self, Dir, Dirs};
use crate::error::{DeltaError, Result};
use crate::file::Mapped;
use crate::format::{self, Header};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::fs::{File, Permissions};
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;

/// Opens a regular file of OLD for reading, refusing a path that passes
/// through a symlink (a patch must never make us read outside OLD).
/// Returns the file and the directory holding it.
fn old_file<'a>(root: &Dirs, rel: &'a str, sha256: &str) -> Result<(File, Arc<Dir>, &'a str)> {
    let wrong = |actual: String| DeltaError::WrongSource {
        what: rel.to_owned(),
        expected: sha256.to_owned(),
        actual,
    };
    let refused = |e: std::io::Error| {
        if dirfd::is_link_refusal(&e) {
            wrong("a symlink on the way (refused: not followed)".into())
        } else {
            wrong(format!("unreadable ({e})"))
        }
    };
    let (dir, name) = root.parent(rel).map_err(refused)?;
    let f = dir.open_file(name).map_err(refused)?;
    Ok((f, dir, name))
}

/// Splits the decoded target stream into the manifest's stream files,
/// creating each (never following or replacing anything), checking it, and
/// giving it its mode on the handle once complete.
struct StreamFiles<'a> {
    stage: &'a Dirs<'a>,
    /// (path, size, SHA-256, mode)
    files: Vec<(&'a str, u64, &'a str, u32)>,
    next: usize,
    current: Option<(File, u64, Sha256)>,
}

impl StreamFiles<'_> {
    fn open_next(&mut self) -> std::io::Result<()> {
        while self.current.is_none() && self.next < self.files.len() {
            let (p, size, _, _) = self.files[self.next];
            let (dir, name) = self.stage.parent(p)?;
            let f = dir.create_file(name, 0o600)?;
            self.current = Some((f, size, Sha256::new()));
            if size == 0 {
                self.finish_current()?;
            }
        }
        Ok(())
    }

    fn finish_current(&mut self) -> std::io::Result<()> {
        if let Some((f, _, h)) = self.current.take() {
            let (p, _, want, mode) = self.files[self.next];
            self.next += 1;
            let got = hex(&h.finalize());
            if got != want {
                return Err(std::io::Error::other(format!(
                    "{p}: SHA-256 {got}, expected {want}"
                )));
            }
            // Durable with the whole stage (one syncfs before it is
            // renamed into place), not file by file.
            f.set_permissions(Permissions::from_mode(mode))?;
        }
        Ok(())
    }
}

impl Write for StreamFiles<'_> {
    fn write(&mut self, mut buf: &[u8]) -> std::io::Result<usize> {
        let n = buf.len();
        while !buf.is_empty() {
            self.open_next()?;
            let Some((f, left, h)) = self.current.as_mut() else {
                return Err(std::io::Error::other(
                    "delta produced more bytes than the files hold",
                ));
            };
            let k = (*left).min(buf.len() as u64) as usize;
            f.write_all(&buf[..k])?;
            h.update(&buf[..k]);
            *left -= k as u64;
            buf = &buf[k..];
            if *left == 0 {
                self.finish_current()?;
            }
        }
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Puts the OLD file `src` at `path` in the stage with `mode`: a hard link
/// when `link` and the modes agree (a linked inode is shared with OLD, so
/// it is never chmodded), otherwise a fresh copy. Either way the content is
/// hashed from what ends up in the stage.
fn place_copy(
    old: &Dirs,
    stage: &Dirs,
    src: &str,
    path: &str,
    sha256: &str,
    mode: u32,
    link: bool,
) -> Result<()> {
    let (f, src_dir, src_name) = old_file(old, src, sha256)?;
    let (dir, name) = stage
        .parent(path)
        .map_err(io(format!("opening the stage for {path}")))?;
    let wrong = |actual: String| DeltaError::WrongSource {
        what: src.to_owned(),
        expected: sha256.to_owned(),
        actual,
    };
    let perm =
        |f: &File| -> std::io::Result<u32> { Ok(f.metadata()?.permissions().mode() & 0o7777) };
    let shown = old.root().path().join(src);
    if link
        && perm(&f).map_err(io(format!("reading {src}")))? == mode
        && dir.hard_link_from(&src_dir, src_name, name).is_ok()
    {
        let linked = dir.open_file(name).map_err(io(format!("opening {path}")))?;
        let got = hex(&Sha256::digest(Mapped::from_file(&linked, &shown)?.bytes()));
        if got != sha256 {
            return Err(wrong(got));
        }
        if perm(&linked).map_err(io(format!("reading {path}")))? == mode {
            return Ok(());
        }
        // OLD's mode changed since it was checked: copy instead.
        drop(linked);
        dir.remove_file(name)
            .map_err(io(format!("removing {path}")))?;
    }
    let mut out = dir
        .create_file(name, 0o600)
        .map_err(io(format!("creating {path}")))?;
    let (_, got) = copy_hashed(f, &mut out).map_err(io(format!("copying {}", shown.display())))?;
    if got != sha256 {
        return Err(wrong(got));
    }
    out.set_permissions(Permissions::from_mode(mode))
        .map_err(io(format!("writing {path}")))?;
    Ok(())
}

/// Builds NEW from OLD (`old`, scanned as `old_tree`, its kept part already
/// checked) and the patch (`m`, `header`, then the delta `body`) into the
/// empty directory `stage`. `link` hard-links unchanged files instead of
/// copying them.
///
/// Nothing is synced file by file: once every file is written and checked
/// and every mode set, one `syncfs` makes the whole stage durable, and only
/// then does the caller rename it into place. A crash before that rename
/// leaves a stage that is removed on the next run, never a partial tree.
pub(super) fn build(
    old: &Dir,
    old_tree: &Tree,
    m: &Manifest,
    header: &Header,
    body: impl Read,
    stage: &Dir,
    link: bool,
) -> Result<()> {
    let tree = whole_tree(old_tree, m)?;
    let (old, staged) = (Dirs::new(old), Dirs::new(stage));
    // Directories 0700 while we fill them; their modes are set last.
    for e in tree.values() {
        if let Entry::Dir { path, .. } = e {
            staged
                .parent(path)
                .and_then(|(d, name)| d.create_dir(name, 0o700))
                .map_err(io(format!("creating {path}")))?;
        }
    }
    let src = source_stream(&old, old_tree, m, header)?;
    write_stream_files(m, header, &src, body, &staged)?;
    drop(src);
    place_copies_and_links(&tree, &old, &staged, link)?;
    // Directory modes, deepest first (a parent is reached through before
    // its own mode can shut us out); then the root, which keeps OLD's mode.
    for e in tree.values().rev() {
        if let Entry::Dir { path, mode } = e {
            staged
                .get(path)
                .and_then(|d| d.chmod(*mode))
                .map_err(io(format!("setting the mode of {path}")))?;
        }
    }
    let root_mode = old.root().mode().map_err(io("reading the mode of OLD"))?;
    stage
        .chmod(root_mode)
        .and_then(|()| stage.sync_file_system())
        .map_err(io("setting the root mode and syncing the new tree"))?;
    Ok(())
}

/// The whole NEW tree: kept entries of OLD plus the manifest's changes.
/// Every parent must be a directory of NEW, so nothing is ever created
/// through a symlink or under a file.
fn whole_tree<'t>(old_tree: &'t Tree, m: &'t Manifest) -> Result<BTreeMap<&'t str, Entry>> {
    let (deleted, changed) = deleted_and_changed(m);
    let mut tree: BTreeMap<&str, Entry> = BTreeMap::new();
    for (p, n) in old_tree {
        if deleted.contains(p.as_str()) || changed.contains(p.as_str()) {
            continue;
        }
        tree.insert(p, entry_of(p, n, || From::Copy(p.clone())));
    }
    for e in &m.entries {
        tree.insert(e.path(), e.clone());
    }
    for p in tree.keys() {
        if let Some((parent, _)) = p.rsplit_once('/') {
            if !matches!(tree.get(parent), Some(Entry::Dir { .. })) {
                return Err(DeltaError::Path {
                    path: (*p).into(),
                    why: "refused entry: its parent is not a directory of the new tree".into(),
                });
            }
        }
    }
    Ok(tree)
}

/// The source stream: each source must be the OLD file the patch names,
/// by size and hash, before anything is allocated for it (sizes come from
/// the patch); their concatenation must hash to the patch header's.
fn source_stream(old: &Dirs, old_tree: &Tree, m: &Manifest, header: &Header) -> Result<Vec<u8>> {
    let mut total = 0u64;
    for s in &m.sources {
        match old_tree.get(&s.path) {
            Some(Node::File { sha256, size, .. }) if *sha256 == s.sha256 && *size == s.size => {
                total += size
            }
            Some(Node::File { sha256, .. }) => {
                return Err(DeltaError::WrongSource {
                    what: s.path.clone(),
                    expected: s.sha256.clone(),
                    actual: sha256.clone(),
                })
            }
            _ => {
                return Err(DeltaError::WrongSource {
                    what: s.path.clone(),
                    expected: s.sha256.clone(),
                    actual: "missing or not a regular file".into(),
                })
            }
        }
    }
    let mut src = Vec::with_capacity(usize::try_from(total).unwrap_or(0));
    for s in &m.sources {
        let (f, _, _) = old_file(old, &s.path, &s.sha256)?;
        // At most the size the scan saw: a file grown since is caught by
        // the stream's hash, not read without bound.
        f.take(s.size).read_to_end(&mut src).map_err(io(format!(
            "reading {}",
            old.root().path().join(&s.path).display()
        )))?;
    }
    if src.len() as u64 != header.old_size || Sha256::digest(&src)[..] != header.old_sha256[..] {
        return Err(DeltaError::WrongSource {
            what: "the changed files of the old tree".into(),
            expected: hex(&header.old_sha256),
            actual: hex(&Sha256::digest(&src)),
        });
    }
    Ok(src)
}

/// Decodes the target stream into the manifest's stream files, each
/// checked against its SHA-256.
fn write_stream_files(
    m: &Manifest,
    header: &Header,
    src: &[u8],
    body: impl Read,
    stage: &Dirs,
) -> Result<()> {
    let files: Vec<(&str, u64, &str, u32)> = m
        .entries
        .iter()
        .filter_map(|e| match e {
            Entry::File {
                path,
                size,
                sha256,
                mode,
                from: From::Stream,
            } => Some((path.as_str(), *size, sha256.as_str(), *mode)),
            _ => None,
        })
        .collect();
    let mut sink = StreamFiles {
        stage,
        files,
        next: 0,
        current: None,
    };
    let got = format::decode(header, src, body, &mut sink).map_err(|e| match e {
        DeltaError::Io { source, .. } => DeltaError::WrongResult {
            what: "a file of the tree".into(),
            expected: "its manifest hash".into(),
            actual: source.to_string(),
        },
        e => e,
    })?;
    sink.open_next().map_err(io("creating an empty file"))?;
    if got != header.new_sha256 || sink.next != sink.files.len() {
        return Err(DeltaError::WrongResult {
            what: "the target stream".into(),
            expected: hex(&header.new_sha256),
            actual: hex(&got),
        });
    }
    Ok(())
}

/// Copies (kept files included, on all cores) and symlinks.
fn place_copies_and_links(
    tree: &BTreeMap<&str, Entry>,
    old: &Dirs,
    stage: &Dirs,
    link: bool,
) -> Result<()> {
    use rayon::prelude::*;
    let copies: Vec<&Entry> = tree
        .values()
        .filter(|e| {
            matches!(
                e,
                Entry::File {
                    from: From::Copy(_),
                    ..
                }
            )
        })
        .collect();
    copies.par_iter().try_for_each(|e| match e {
        Entry::File {
            path,
            sha256,
            mode,
            from: From::Copy(src),
            ..
        } => place_copy(old, stage, src, path, sha256, *mode, link),
        _ => Ok(()),
    })?;
    for e in tree.values() {
        if let Entry::Symlink { path, target } = e {
            stage
                .parent(path)
                .and_then(|(d, name)| d.symlink(target, name))
                .map_err(io(format!("creating link {path}")))?;
        }
    }
    Ok(())
}
