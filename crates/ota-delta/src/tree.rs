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
//! beside the output, every file is checked against its SHA-256, and only a
//! complete, verified tree is renamed into place. `--in-place` swaps
//! directories under a journal, so a crash at any point rolls back.

use crate::error::{DeltaError, Result};
use crate::file::{self, DiffOptions, Mapped};
use crate::format::{self, Header, HEADER_LEN};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs;
use std::io::{BufReader, BufWriter, Read, Write};
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};

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

/// What a tree holds, as scanned.
#[derive(Clone, Debug)]
enum Node {
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

fn hex(d: &[u8]) -> String {
    d.iter().map(|b| format!("{b:02x}")).collect()
}

fn io(ctx: impl Into<String>) -> impl FnOnce(std::io::Error) -> DeltaError {
    let ctx = ctx.into();
    move |e| DeltaError::io(ctx, e)
}

/// Lists a tree (without following symlinks), hashing files in parallel.
fn scan(root: &Path) -> Result<BTreeMap<String, Node>> {
    let meta = fs::symlink_metadata(root).map_err(io(format!("reading {}", root.display())))?;
    if !meta.is_dir() {
        return Err(DeltaError::Path {
            path: root.into(),
            why: "not a directory".into(),
        });
    }
    let mut out = BTreeMap::new();
    let mut files = Vec::new();
    let mut stack = vec![(root.to_path_buf(), String::new())];
    while let Some((dir, rel)) = stack.pop() {
        for e in fs::read_dir(&dir).map_err(io(format!("listing {}", dir.display())))? {
            let e = e.map_err(io(format!("listing {}", dir.display())))?;
            let name = e.file_name().into_string().map_err(|n| DeltaError::Path {
                path: dir.join(n),
                why: "file name is not UTF-8".into(),
            })?;
            let path = if rel.is_empty() {
                name
            } else {
                format!("{rel}/{name}")
            };
            let full = e.path();
            let m =
                fs::symlink_metadata(&full).map_err(io(format!("reading {}", full.display())))?;
            let mode = m.permissions().mode() & 0o7777;
            if m.file_type().is_symlink() {
                let t =
                    fs::read_link(&full).map_err(io(format!("reading link {}", full.display())))?;
                let target = t
                    .into_os_string()
                    .into_string()
                    .map_err(|_| DeltaError::Path {
                        path: full.clone(),
                        why: "link text is not UTF-8".into(),
                    })?;
                out.insert(path, Node::Symlink { target });
            } else if m.is_dir() {
                out.insert(path.clone(), Node::Dir { mode });
                stack.push((full, path));
            } else if m.is_file() {
                files.push((path, full, mode, m.len()));
            } else {
                return Err(DeltaError::Path {
                    path: full,
                    why: "unsupported file type (not a file, directory or symlink)".into(),
                });
            }
        }
    }
    use rayon::prelude::*;
    let hashed: Vec<Result<(String, Node)>> = files
        .into_par_iter()
        .map(|(path, full, mode, size)| {
            let m = Mapped::open(&full)?;
            let sha256 = hex(&Sha256::digest(m.bytes()));
            Ok((path, Node::File { mode, size, sha256 }))
        })
        .collect();
    for h in hashed {
        let (p, n) = h?;
        out.insert(p, n);
    }
    Ok(out)
}

/// A sort key that lines up renamed versions of a file: digits dropped.
fn similarity_key(path: &str) -> String {
    let base: String = path.chars().filter(|c| !c.is_ascii_digit()).collect();
    format!("{base}\0{path}")
}

/// The manifest entry for a scanned node; `from` is asked only for files.
fn entry_of(path: &str, node: &Node, from: impl FnOnce() -> From) -> Entry {
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

fn same_node(old: Option<&Node>, new: &Node) -> bool {
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
fn kept_digest(
    old: &BTreeMap<String, Node>,
    deleted: &HashSet<&str>,
    changed: &HashSet<&str>,
) -> (u64, String) {
    let mut h = Sha256::new();
    let mut n = 0u64;
    for (p, node) in old {
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

/// Diffs two directory trees into a tree patch. With `reverse`, also writes
/// the patch from NEW back to OLD (both from one scan of each tree).
pub fn diff_trees(
    old: &Path,
    new: &Path,
    patch: &Path,
    reverse: Option<&Path>,
    opts: &DiffOptions,
) -> Result<()> {
    let (a, b) = rayon::join(|| scan(old), || scan(new));
    let (a, b) = (a?, b?);
    write_tree_patch(old, &a, new, &b, patch, opts)?;
    if let Some(rev) = reverse {
        write_tree_patch(new, &b, old, &a, rev, opts)?;
    }
    Ok(())
}

fn write_tree_patch(
    old_root: &Path,
    old: &BTreeMap<String, Node>,
    new_root: &Path,
    new: &BTreeMap<String, Node>,
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
    let concat = |root: &Path, paths: &mut dyn Iterator<Item = &str>| -> Result<Vec<u8>> {
        let mut v = Vec::new();
        for p in paths {
            let m = Mapped::open(&root.join(p))?;
            v.extend_from_slice(m.bytes());
        }
        Ok(v)
    };
    let src = concat(old_root, &mut sources.iter().map(|s| s.0))?;
    let dst = concat(new_root, &mut stream_files.iter().copied())?;

    let json = serde_json::to_vec(&manifest)
        .map_err(|e| DeltaError::corrupt(format!("serialising the manifest: {e}")))?;
    let zman = zstd::encode_all(&json[..], 19).map_err(io("compressing the manifest"))?;
    let tmp = file::temp_beside(patch)?;
    let mut w = BufWriter::with_capacity(1 << 20, tmp);
    let werr = io("writing the patch");
    w.write_all(MAGIC).map_err(io("writing the patch"))?;
    w.write_all(&(zman.len() as u64).to_le_bytes())
        .map_err(io("writing the patch"))?;
    w.write_all(&zman).map_err(werr)?;
    file::diff_bytes(
        &src,
        &dst,
        &DiffOptions {
            format: file::Format::Otadiff,
            ..*opts
        },
        &mut w,
    )?;
    let tmp = w
        .into_inner()
        .map_err(|e| DeltaError::io("writing the patch", e.into_error()))?;
    file::persist(tmp, patch, true)
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
    validate(&manifest, &header)?;
    Ok((manifest, header))
}

/// Reads and validates the manifest and delta header at the start of a
/// tree patch (for inspecting a patch without applying it).
pub fn read_manifest(r: &mut impl Read) -> Result<(Manifest, Header)> {
    read_head(r)
}

/// Splits the decoded target stream into the manifest's stream files,
/// creating each (never following or replacing anything) and checking it.
struct StreamFiles<'a> {
    root: &'a Path,
    files: Vec<(&'a str, u64, &'a str)>,
    next: usize,
    current: Option<(fs::File, u64, Sha256)>,
}

impl StreamFiles<'_> {
    fn open_next(&mut self) -> std::io::Result<()> {
        while self.current.is_none() && self.next < self.files.len() {
            let (p, size, _) = self.files[self.next];
            let f = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(self.root.join(p))?;
            self.current = Some((f, size, Sha256::new()));
            if size == 0 {
                self.finish_current()?;
            }
        }
        Ok(())
    }

    fn finish_current(&mut self) -> std::io::Result<()> {
        if let Some((_, _, h)) = self.current.take() {
            let (p, _, want) = self.files[self.next];
            self.next += 1;
            let got = hex(&h.finalize());
            if got != want {
                return Err(std::io::Error::other(format!(
                    "{p}: SHA-256 {got}, expected {want}"
                )));
            }
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

/// Opens a regular file of OLD for reading, refusing a path that passes
/// through a symlink (a patch must never make us read outside OLD).
fn old_file(root: &Path, rel: &str, sha256: &str) -> Result<PathBuf> {
    let wrong = |actual: String| DeltaError::WrongSource {
        what: rel.to_owned(),
        expected: sha256.to_owned(),
        actual,
    };
    let mut p = root.to_path_buf();
    let parts: Vec<&str> = rel.split('/').collect();
    for (i, c) in parts.iter().enumerate() {
        p.push(c);
        let meta = fs::symlink_metadata(&p).map_err(|e| wrong(format!("unreadable ({e})")))?;
        let last = i + 1 == parts.len();
        if meta.file_type().is_symlink() {
            return Err(wrong("a symlink (refused: not followed)".into()));
        }
        if last && !meta.is_file() {
            return Err(wrong("not a regular file".into()));
        }
    }
    Ok(p)
}

/// Builds NEW from `old_root` and the patch into `stage` (which must not
/// exist). `link` hard-links copies instead of copying them.
fn build(old_root: &Path, patch: &Path, stage: &Path, link: bool) -> Result<()> {
    let f = fs::File::open(patch).map_err(io(format!("opening {}", patch.display())))?;
    let mut r = BufReader::with_capacity(1 << 20, f);
    let (m, header) = read_head(&mut r)?;
    let old = scan(old_root)?;
    let deleted: HashSet<&str> = m.deleted.iter().map(String::as_str).collect();
    let changed: HashSet<&str> = m.entries.iter().map(Entry::path).collect();
    let (kept, digest) = kept_digest(&old, &deleted, &changed);
    if kept != m.kept || digest != m.kept_sha256 {
        return Err(DeltaError::WrongSource {
            what: format!("the old tree {} (its unchanged part)", old_root.display()),
            expected: format!("{} with {} entries", m.kept_sha256, m.kept),
            actual: format!("{digest} with {kept} entries"),
        });
    }
    // The whole NEW tree: kept entries of OLD plus the manifest's changes.
    let mut tree: BTreeMap<&str, Entry> = BTreeMap::new();
    for (p, n) in &old {
        if deleted.contains(p.as_str()) || changed.contains(p.as_str()) {
            continue;
        }
        tree.insert(p, entry_of(p, n, || From::Copy(p.clone())));
    }
    for e in &m.entries {
        tree.insert(e.path(), e.clone());
    }
    // Every parent must be a directory of NEW, so nothing is ever created
    // through a symlink or under a file.
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
    fs::create_dir(stage).map_err(io(format!("creating {}", stage.display())))?;
    for e in tree.values() {
        if let Entry::Dir { path, .. } = e {
            fs::create_dir(stage.join(path)).map_err(io(format!("creating {path}")))?;
        }
    }
    // The source stream: the listed OLD files, each checked.
    // Each source must be the OLD file the patch names, by size and hash,
    // before anything is allocated for it (sizes come from the patch).
    let mut total = 0u64;
    for s in &m.sources {
        match old.get(&s.path) {
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
    let mut src = Vec::with_capacity(total as usize);
    for s in &m.sources {
        let mapped = Mapped::open(&old_file(old_root, &s.path, &s.sha256)?)?;
        src.extend_from_slice(mapped.bytes());
    }
    if src.len() as u64 != header.old_size || Sha256::digest(&src)[..] != header.old_sha256[..] {
        return Err(DeltaError::WrongSource {
            what: "the changed files of the old tree".into(),
            expected: hex(&header.old_sha256),
            actual: hex(&Sha256::digest(&src)),
        });
    }
    let files: Vec<(&str, u64, &str)> = m
        .entries
        .iter()
        .filter_map(|e| match e {
            Entry::File {
                path,
                size,
                sha256,
                from: From::Stream,
                ..
            } => Some((path.as_str(), *size, sha256.as_str())),
            _ => None,
        })
        .collect();
    let mut sink = StreamFiles {
        root: stage,
        files,
        next: 0,
        current: None,
    };
    let got = format::decode(&header, &src, &mut r, &mut sink).map_err(|e| match e {
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
    drop(src);
    // Copies, links, then modes (directories last, deepest first).
    for e in tree.values() {
        match e {
            Entry::File {
                path,
                sha256,
                from: From::Copy(src),
                ..
            } => {
                let from = old_file(old_root, src, sha256)?;
                let to = stage.join(path);
                if !(link && fs::hard_link(&from, &to).is_ok()) {
                    fs::copy(&from, &to).map_err(io(format!("copying {src} to {path}")))?;
                }
                let got = hex(&Sha256::digest(Mapped::open(&to)?.bytes()));
                if got != *sha256 {
                    return Err(DeltaError::WrongSource {
                        what: src.clone(),
                        expected: sha256.clone(),
                        actual: got,
                    });
                }
            }
            Entry::Symlink { path, target } => {
                symlink(target, stage.join(path)).map_err(io(format!("creating link {path}")))?
            }
            _ => {}
        }
    }
    for e in tree.values() {
        if let Entry::File {
            path, mode, from, ..
        } = e
        {
            // A hard link shares its inode with OLD: leave its mode alone
            // unless it differs (then it was copied, see below).
            let p = stage.join(path);
            let cur = fs::symlink_metadata(&p)
                .map_err(io(format!("reading {path}")))?
                .permissions()
                .mode()
                & 0o7777;
            if cur != *mode {
                if link && matches!(from, From::Copy(_)) {
                    // Break the link before changing the mode.
                    let tmp = stage.join(format!("{path}.ota-copy"));
                    fs::copy(&p, &tmp).map_err(io(format!("copying {path}")))?;
                    fs::rename(&tmp, &p).map_err(io(format!("replacing {path}")))?;
                }
                fs::set_permissions(&p, fs::Permissions::from_mode(*mode))
                    .map_err(io(format!("setting the mode of {path}")))?;
            }
        }
    }
    for e in tree.values().rev() {
        if let Entry::Dir { path, mode } = e {
            fs::set_permissions(stage.join(path), fs::Permissions::from_mode(*mode))
                .map_err(io(format!("setting the mode of {path}")))?;
        }
    }
    fs::set_permissions(
        stage,
        fs::metadata(old_root)
            .map_err(io("reading OLD"))?
            .permissions(),
    )
    .map_err(io("setting the root mode"))?;
    sync_tree(stage)?;
    Ok(())
}

fn sync_tree(root: &Path) -> Result<()> {
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).map_err(io(format!("listing {}", d.display())))? {
            let e = e.map_err(io("listing"))?;
            let t = e.file_type().map_err(io("listing"))?;
            if t.is_dir() {
                stack.push(e.path());
            } else if t.is_file() {
                fs::File::open(e.path())
                    .and_then(|f| f.sync_all())
                    .map_err(io(format!("syncing {}", e.path().display())))?;
            }
        }
        fs::File::open(&d)
            .and_then(|f| f.sync_all())
            .map_err(io(format!("syncing {}", d.display())))?;
    }
    Ok(())
}

fn sibling(path: &Path, suffix: &str) -> Result<PathBuf> {
    let name = path.file_name().ok_or_else(|| DeltaError::Path {
        path: path.into(),
        why: "has no file name".into(),
    })?;
    let mut n = name.to_os_string();
    n.push(suffix);
    Ok(path.with_file_name(n))
}

fn remove_dir_if_exists(p: &Path) -> Result<()> {
    match fs::remove_dir_all(p) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(DeltaError::io(format!("removing {}", p.display()), e)),
    }
}

/// Applies a tree patch to `old`, creating `out` (which must not exist).
/// OLD is never modified; on any error `out` is not created.
pub fn patch_tree(old: &Path, patch: &Path, out: &Path) -> Result<()> {
    if fs::symlink_metadata(out).is_ok() {
        return Err(DeltaError::Path {
            path: out.into(),
            why: "already exists; choose a new output directory".into(),
        });
    }
    let stage = sibling(out, ".ota-stage")?;
    remove_dir_if_exists(&stage)?;
    match build(old, patch, &stage, false) {
        Ok(()) => fs::rename(&stage, out).map_err(io(format!("renaming into {}", out.display()))),
        Err(e) => {
            let _ = fs::remove_dir_all(&stage);
            Err(e)
        }
    }
}

/// Journal states of an in-place update, written to `<dir>.ota-journal`.
const JOURNAL_STAGED: &str = "staged";
const JOURNAL_SWAPPED: &str = "swapped";

fn write_journal(path: &Path, state: &str) -> Result<()> {
    let tmp = sibling(path, ".tmp")?;
    fs::write(&tmp, state).map_err(io("writing the journal"))?;
    fs::File::open(&tmp)
        .and_then(|f| f.sync_all())
        .map_err(io("syncing the journal"))?;
    fs::rename(&tmp, path).map_err(io("writing the journal"))?;
    if let Some(parent) = path.parent() {
        let _ = fs::File::open(parent).and_then(|f| f.sync_all());
    }
    Ok(())
}

/// Finishes or undoes an in-place update that was interrupted, going by
/// its journal. Returns true when there was something to recover.
pub fn recover_in_place(dir: &Path) -> Result<bool> {
    let journal = sibling(dir, ".ota-journal")?;
    let stage = sibling(dir, ".ota-stage")?;
    let backup = sibling(dir, ".ota-old")?;
    let state = match fs::read_to_string(&journal) {
        Ok(s) => s,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            // No journal: at most a stage from a build that never finished.
            let had = fs::symlink_metadata(&stage).is_ok();
            remove_dir_if_exists(&stage)?;
            return Ok(had);
        }
        Err(e) => return Err(DeltaError::io("reading the journal", e)),
    };
    match state.trim() {
        // Staged but not swapped: OLD is intact (or its rename is undone).
        JOURNAL_STAGED => {
            if fs::symlink_metadata(dir).is_err() && fs::symlink_metadata(&backup).is_ok() {
                fs::rename(&backup, dir).map_err(io("restoring the old tree"))?;
            }
            remove_dir_if_exists(&stage)?;
        }
        // Swapped: NEW is in place; only the backup remains to remove.
        JOURNAL_SWAPPED => remove_dir_if_exists(&backup)?,
        other => {
            return Err(DeltaError::corrupt(format!(
                "unknown journal state {other:?}"
            )))
        }
    }
    fs::remove_file(&journal).map_err(io("removing the journal"))?;
    Ok(true)
}

/// Applies a tree patch to `dir` itself. NEW is built and verified beside
/// it (unchanged files hard-linked), then swapped in with two renames under
/// a journal; [`recover_in_place`] (run first, automatically) completes or
/// rolls back a swap a crash interrupted. On error `dir` is left as it was.
pub fn patch_tree_in_place(dir: &Path, patch: &Path) -> Result<()> {
    recover_in_place(dir)?;
    let journal = sibling(dir, ".ota-journal")?;
    let stage = sibling(dir, ".ota-stage")?;
    let backup = sibling(dir, ".ota-old")?;
    remove_dir_if_exists(&backup)?;
    if let Err(e) = build(dir, patch, &stage, true) {
        let _ = fs::remove_dir_all(&stage);
        return Err(e);
    }
    write_journal(&journal, JOURNAL_STAGED)?;
    fs::rename(dir, &backup).map_err(io("moving the old tree aside"))?;
    if let Err(e) = fs::rename(&stage, dir) {
        let _ = fs::rename(&backup, dir);
        return Err(DeltaError::io("moving the new tree into place", e));
    }
    write_journal(&journal, JOURNAL_SWAPPED)?;
    recover_in_place(dir)?;
    Ok(())
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
        v.sort_by_cached_key(|p| similarity_key(p));
        assert_eq!(v[0], "pkg-1.2.dist-info/METADATA");
        assert!(v[1].ends_with("RECORD") && v[2].ends_with("RECORD"));
    }
}
