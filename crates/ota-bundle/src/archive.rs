//! Archive packages (tar, tar.gz, tar.zst, zip): detecting them by content
//! and unpacking them safely into an empty directory, so the server can diff
//! two versions of an archive package as trees.
//!
//! Unpacking trusts nothing in the archive:
//!
//! - names must be UTF-8 relative paths without `..`, `.` or empty
//!   components, NUL bytes or a leading `/` (`ota_delta::tree::check_rel_path`;
//!   a leading `./`, and a trailing `/` on directories, are accepted and
//!   dropped);
//! - nothing is written through a symlink: a member under a path an earlier
//!   member made a symlink (or a file) is refused, and every directory is
//!   opened, and every file created, by handle on its parent with
//!   `O_NOFOLLOW` (`O_EXCL` for files), so even a symlink planted by someone
//!   else is an error rather than a way out;
//! - symlinks are created as symlinks with their text, whatever it says
//!   (absolute, `..`): they are never followed here (the text must be UTF-8,
//!   as a version's digest requires);
//! - hard links, devices, FIFOs, sparse files and unknown member types are
//!   refused;
//! - a path listed twice is refused ("duplicate member"), except a directory
//!   listed after members inside it created it implicitly;
//! - directories and files get their permission bits `& 0o777` (no setuid,
//!   setgid or sticky bit), directories only once everything is written;
//!   owners and times are not kept;
//! - [`UnpackLimits`] bound the member count and the bytes written, counting
//!   both the sizes members declare (checked before writing) and the bytes
//!   actually read: a member that yields more than it declares (a zip entry
//!   lying about its size) is refused after exactly its declared size;
//! - tar extension headers are read with bounds (GNU long names up to
//!   4 KiB, pax headers up to 1 MiB) and their meaning is checked: a pax
//!   `size` that disagrees with the header, sparse-file records, and a
//!   global header that sets a path are refused; zip entries are checked
//!   against the central directory walked here, so a name listed twice
//!   cannot be hidden by the zip reader keeping only one of them.
//!
//! On error `dest` holds whatever was unpacked before it: the caller
//! removes it.

use crate::error::{BundleError, Result};
use rustix::fs::{Mode, OFlags};
use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom, Write};
use std::os::fd::OwnedFd;
use std::path::Path;

/// What kind of archive a package is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ArchiveKind {
    /// A plain tar.
    Tar,
    /// A gzip-compressed tar.
    TarGz,
    /// A zstd-compressed tar.
    TarZst,
    /// A zip.
    Zip,
}

impl ArchiveKind {
    /// `tar`, `tar.gz`, `tar.zst` or `zip`.
    pub fn as_str(self) -> &'static str {
        match self {
            ArchiveKind::Tar => "tar",
            ArchiveKind::TarGz => "tar.gz",
            ArchiveKind::TarZst => "tar.zst",
            ArchiveKind::Zip => "zip",
        }
    }
}

/// Bounds on what [`unpack`] writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UnpackLimits {
    /// Most members (directories created implicitly for a member's parents
    /// count too).
    pub max_entries: u64,
    /// Most bytes of file content, declared and actually written.
    pub max_total_bytes: u64,
}

impl Default for UnpackLimits {
    /// 1,000,000 entries, 64 GiB.
    fn default() -> Self {
        UnpackLimits {
            max_entries: 1_000_000,
            max_total_bytes: 64 << 30,
        }
    }
}

const ZIP_MAGIC: &[u8] = b"PK\x03\x04";
const GZIP_MAGIC: &[u8] = &[0x1f, 0x8b];
const ZSTD_MAGIC: &[u8] = &[0x28, 0xb5, 0x2f, 0xfd];
const BLOCK: usize = 512;
/// Longest GNU long name / long link accepted (a path, and its NUL).
const LONG_NAME_MAX: u64 = ota_delta::tree::PATH_MAX as u64 + 1;
/// Largest pax extended header accepted.
const PAX_MAX: u64 = 1 << 20;
/// Longest symlink text accepted.
const LINK_MAX: u64 = 4096;

/// True when a 512-byte block is a ustar or GNU tar header ("ustar" at 257).
fn is_tar_header(block: &[u8]) -> bool {
    block.get(257..262) == Some(b"ustar".as_slice())
}

/// Reads up to `buf.len()` bytes; the count read (short only at the end).
fn read_up_to(r: &mut (impl Read + ?Sized), buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Whether a decompressed stream starts with a tar header (any error: no).
fn starts_with_tar(mut r: impl Read) -> bool {
    let mut block = [0u8; BLOCK];
    matches!(read_up_to(&mut r, &mut block), Ok(BLOCK)) && is_tar_header(&block)
}

/// Detects an archive by content: zip by `PK\x03\x04`; gzip (`1f 8b`) or
/// zstd (`28 b5 2f fd`) whose first 512 decompressed bytes are a ustar or
/// GNU tar header; a plain tar by `ustar` at offset 257. `None`: not an
/// archive we unpack (treat the package as a single file); a compressed
/// stream that does not decompress to a tar is `None` too.
pub fn detect(path: &Path) -> Result<Option<ArchiveKind>> {
    let ctx = || format!("reading {}", path.display());
    let mut f = File::open(path).map_err(|e| BundleError::io(ctx(), e))?;
    let mut head = [0u8; BLOCK];
    let n = read_up_to(&mut f, &mut head).map_err(|e| BundleError::io(ctx(), e))?;
    let head = &head[..n];
    if head.starts_with(ZIP_MAGIC) {
        return Ok(Some(ArchiveKind::Zip));
    }
    let compressed = if head.starts_with(GZIP_MAGIC) {
        Some(ArchiveKind::TarGz)
    } else if head.starts_with(ZSTD_MAGIC) {
        Some(ArchiveKind::TarZst)
    } else {
        None
    };
    let Some(kind) = compressed else {
        return Ok((n == BLOCK && is_tar_header(head)).then_some(ArchiveKind::Tar));
    };
    f.seek(SeekFrom::Start(0))
        .map_err(|e| BundleError::io(ctx(), e))?;
    let tar = match kind {
        ArchiveKind::TarGz => starts_with_tar(flate2::read::MultiGzDecoder::new(f)),
        _ => zstd::stream::read::Decoder::new(f).is_ok_and(starts_with_tar),
    };
    Ok(tar.then_some(kind))
}

/// Unpacks the archive at `path`, of `kind`, into `dest`, an existing empty
/// directory, under the rules of the module documentation and `limits`.
/// Errors name the archive and the member.
pub fn unpack(path: &Path, kind: ArchiveKind, dest: &Path, limits: &UnpackLimits) -> Result<()> {
    let mut out = Out::open(path, dest, limits)?;
    let file =
        File::open(path).map_err(|e| BundleError::io(format!("opening {}", path.display()), e))?;
    match kind {
        ArchiveKind::Tar => unpack_tar(BufReader::with_capacity(1 << 16, file), &mut out)?,
        ArchiveKind::TarGz => unpack_tar(
            flate2::read::MultiGzDecoder::new(BufReader::with_capacity(1 << 16, file)),
            &mut out,
        )?,
        ArchiveKind::TarZst => {
            let z = zstd::stream::read::Decoder::new(file)
                .map_err(|e| BundleError::io(format!("starting zstd for {}", path.display()), e))?;
            unpack_tar(z, &mut out)?
        }
        ArchiveKind::Zip => unpack_zip(BufReader::with_capacity(1 << 16, file), &mut out)?,
    }
    out.finish()
}

/// What a path unpacked so far is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Node {
    /// A directory with its final permission bits; `explicit` once a member
    /// names it (not only as a parent).
    Dir {
        mode: u32,
        explicit: bool,
    },
    File,
    Symlink,
}

/// The destination being filled: a handle on it, what is there, the counts.
struct Out<'a> {
    archive: &'a Path,
    dest: &'a Path,
    root: OwnedFd,
    nodes: HashMap<String, Node>,
    limits: &'a UnpackLimits,
    entries: u64,
    declared: u64,
    written: u64,
}

const DIR_FLAGS: OFlags = OFlags::RDONLY
    .union(OFlags::DIRECTORY)
    .union(OFlags::NOFOLLOW)
    .union(OFlags::CLOEXEC);

/// The text of a member name for messages.
fn shown(raw: &[u8]) -> String {
    String::from_utf8_lossy(raw).into_owned()
}

impl<'a> Out<'a> {
    fn open(archive: &'a Path, dest: &'a Path, limits: &'a UnpackLimits) -> Result<Out<'a>> {
        let ctx = || format!("opening {}", dest.display());
        // The destination itself may be reached through symlinks: the
        // caller named it. Nothing under it is followed.
        let root = rustix::fs::openat(
            rustix::fs::CWD,
            dest,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| BundleError::io(ctx(), e.into()))?;
        let mut listing = std::fs::read_dir(dest).map_err(|e| BundleError::io(ctx(), e))?;
        if listing.next().is_some() {
            return Err(BundleError::Path {
                path: dest.into(),
                why: "refused destination: not an empty directory".into(),
            });
        }
        Ok(Out {
            archive,
            dest,
            root,
            nodes: HashMap::new(),
            limits,
            entries: 0,
            declared: 0,
            written: 0,
        })
    }

    fn refuse(&self, member: &str, why: impl Into<String>) -> BundleError {
        BundleError::Member {
            archive: self.archive.into(),
            member: member.into(),
            why: why.into(),
        }
    }

    fn damaged(&self, why: impl std::fmt::Display) -> BundleError {
        BundleError::Archive {
            archive: self.archive.into(),
            why: format!("damaged or unreadable archive: {why}"),
        }
    }

    fn io_err(&self, member: &str, doing: &str, e: impl Into<io::Error>) -> BundleError {
        BundleError::io(
            format!(
                "{}: member {member:?}: {doing} in {}",
                self.archive.display(),
                self.dest.display()
            ),
            e.into(),
        )
    }

    /// Counts one more entry against the limit.
    fn count(&mut self, member: &str) -> Result<()> {
        self.entries += 1;
        if self.entries > self.limits.max_entries {
            return Err(self.refuse(
                member,
                format!(
                    "over the limit of {} entries (directories created for members' parents count)",
                    self.limits.max_entries
                ),
            ));
        }
        Ok(())
    }

    /// The relative path a member name stands for: UTF-8, `./` and (for a
    /// directory) one trailing `/` dropped, then checked. "" is the
    /// destination itself (`.` or `./`, directories only).
    fn rel_path(&self, raw: &[u8], is_dir: bool) -> Result<String> {
        let member = shown(raw);
        let Ok(name) = std::str::from_utf8(raw) else {
            return Err(self.refuse(&member, "refused name: not UTF-8"));
        };
        let mut rel = name.strip_prefix("./").unwrap_or(name);
        if is_dir {
            rel = rel.strip_suffix('/').unwrap_or(rel);
        }
        if rel.is_empty() || rel == "." {
            if is_dir {
                return Ok(String::new());
            }
            return Err(self.refuse(&member, "refused name: empty"));
        }
        if let Err(e) = ota_delta::tree::check_rel_path(rel) {
            let why = match e {
                ota_delta::DeltaError::Path { why, .. } => why
                    .strip_prefix("refused path in patch: ")
                    .map(str::to_owned)
                    .unwrap_or(why),
                other => other.to_string(),
            };
            return Err(self.refuse(&member, format!("refused name: {why}")));
        }
        Ok(rel.to_owned())
    }

    /// Opens `name` under `dir` as a directory, never through a symlink.
    fn open_dir(&self, dir: &OwnedFd, name: &str, member: &str) -> Result<OwnedFd> {
        rustix::fs::openat(dir, name, DIR_FLAGS, Mode::empty())
            .map_err(|e| self.io_err(member, &format!("opening directory {name:?}"), e))
    }

    /// The directory that will hold `rel`, and `rel`'s last name. Parents
    /// not seen yet are created (0700 until [`Out::finish`], then 0755);
    /// a parent that is a symlink or a file refuses the member.
    fn parent<'r>(&mut self, member: &str, rel: &'r str) -> Result<(OwnedFd, &'r str)> {
        let (parent, name) = rel.rsplit_once('/').unwrap_or(("", rel));
        let mut dir = rustix::io::dup(&self.root).map_err(|e| self.io_err(member, "dup", e))?;
        if parent.is_empty() {
            return Ok((dir, name));
        }
        let mut end = 0;
        for c in parent.split('/') {
            end += if end == 0 { c.len() } else { c.len() + 1 };
            let prefix = &parent[..end];
            match self.nodes.get(prefix) {
                Some(Node::Dir { .. }) => {}
                Some(Node::Symlink) => {
                    return Err(self.refuse(
                        member,
                        format!(
                            "lies under {prefix:?}, which an earlier member made a symlink (never followed)"
                        ),
                    ))
                }
                Some(Node::File) => {
                    return Err(self.refuse(
                        member,
                        format!("lies under {prefix:?}, which an earlier member made a file"),
                    ))
                }
                None => {
                    self.count(member)?;
                    rustix::fs::mkdirat(&dir, c, Mode::from_raw_mode(0o700)).map_err(|e| {
                        self.io_err(member, &format!("creating directory {prefix:?}"), e)
                    })?;
                    self.nodes.insert(
                        prefix.to_owned(),
                        Node::Dir {
                            mode: 0o755,
                            explicit: false,
                        },
                    );
                }
            }
            dir = self.open_dir(&dir, c, member)?;
        }
        Ok((dir, name))
    }

    fn duplicate(&self, member: &str, rel: &str) -> BundleError {
        let what = match self.nodes.get(rel) {
            Some(Node::Dir { .. }) => "a directory",
            Some(Node::File) => "a file",
            Some(Node::Symlink) => "a symlink",
            None => "something",
        };
        self.refuse(
            member,
            format!("duplicate member: an earlier member already made {rel:?} {what}"),
        )
    }

    /// A directory member.
    fn dir(&mut self, member: &str, rel: &str, mode: u32) -> Result<()> {
        if rel.is_empty() {
            // `.` itself: the destination's own mode is the caller's.
            return Ok(());
        }
        let mode = mode & 0o777;
        match self.nodes.get(rel).copied() {
            Some(Node::Dir {
                explicit: false, ..
            }) => {
                self.nodes.insert(
                    rel.to_owned(),
                    Node::Dir {
                        mode,
                        explicit: true,
                    },
                );
                Ok(())
            }
            Some(_) => Err(self.duplicate(member, rel)),
            None => {
                let (dir, name) = self.parent(member, rel)?;
                rustix::fs::mkdirat(&dir, name, Mode::from_raw_mode(0o700))
                    .map_err(|e| self.io_err(member, "creating the directory", e))?;
                self.nodes.insert(
                    rel.to_owned(),
                    Node::Dir {
                        mode,
                        explicit: true,
                    },
                );
                Ok(())
            }
        }
    }

    /// A regular file member of `declared` bytes read from `data`: at most
    /// `declared` bytes are written, and a member that has more, or fewer,
    /// is refused.
    fn file(
        &mut self,
        member: &str,
        rel: &str,
        mode: u32,
        declared: u64,
        data: &mut dyn Read,
    ) -> Result<()> {
        if self.nodes.contains_key(rel) {
            return Err(self.duplicate(member, rel));
        }
        let max = self.limits.max_total_bytes;
        match self.declared.checked_add(declared) {
            Some(total) if total <= max => self.declared = total,
            _ => {
                return Err(self.refuse(
                    member,
                    format!(
                        "declares {declared} bytes, over the limit of {max} bytes for the whole archive"
                    ),
                ))
            }
        }
        let (dir, name) = self.parent(member, rel)?;
        let fd = rustix::fs::openat(
            &dir,
            name,
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        )
        .map_err(|e| self.io_err(member, "creating the file", e))?;
        self.nodes.insert(rel.to_owned(), Node::File);
        let mut file = File::from(fd);
        let mut limited = data.take(declared);
        let n = copy(&mut limited, &mut file).map_err(|e| match e {
            CopyError::Read(e) => self.refuse(member, format!("reading its data: {e}")),
            CopyError::Write(e) => self.io_err(member, "writing the file", e),
        })?;
        self.written += n;
        if n < declared {
            return Err(self.refuse(
                member,
                format!("has {n} bytes, fewer than the {declared} it declares"),
            ));
        }
        // One byte more than declared means the member lied about its size.
        let mut probe = [0u8; 1];
        let more = read_up_to(limited.into_inner(), &mut probe)
            .map_err(|e| self.refuse(member, format!("reading its data: {e}")))?;
        if more != 0 {
            return Err(self.refuse(
                member,
                format!(
                    "has more bytes than the {declared} it declares (stopped after {declared})"
                ),
            ));
        }
        if self.written > max {
            // Cannot happen (written <= declared <= max), kept as a guard.
            return Err(self.refuse(member, format!("over the limit of {max} bytes")));
        }
        rustix::fs::fchmod(&file, Mode::from_raw_mode(mode & 0o777))
            .map_err(|e| self.io_err(member, "setting the file's mode", e))?;
        Ok(())
    }

    /// A symlink member with link text `target` (any UTF-8 text, created
    /// as is and never followed).
    fn symlink(&mut self, member: &str, rel: &str, target: &[u8]) -> Result<()> {
        if self.nodes.contains_key(rel) {
            return Err(self.duplicate(member, rel));
        }
        let Ok(text) = std::str::from_utf8(target) else {
            return Err(self.refuse(member, "refused symlink: its text is not UTF-8"));
        };
        if text.is_empty() || text.contains('\0') || text.len() as u64 > LINK_MAX {
            return Err(self.refuse(
                member,
                "refused symlink: empty, over 4096 bytes or containing NUL",
            ));
        }
        let (dir, name) = self.parent(member, rel)?;
        rustix::fs::symlinkat(text, &dir, name)
            .map_err(|e| self.io_err(member, "creating the symlink", e))?;
        self.nodes.insert(rel.to_owned(), Node::Symlink);
        Ok(())
    }

    /// Gives every directory its final mode, deepest first (so a directory
    /// made read-only is not walked through afterwards).
    fn finish(self) -> Result<()> {
        let mut dirs: Vec<(&str, u32)> = self
            .nodes
            .iter()
            .filter_map(|(p, n)| match n {
                Node::Dir { mode, .. } => Some((p.as_str(), *mode)),
                _ => None,
            })
            .collect();
        dirs.sort_by_key(|(p, _)| std::cmp::Reverse(p.matches('/').count()));
        for (rel, mode) in dirs {
            let mut d = rustix::io::dup(&self.root).map_err(|e| self.io_err(rel, "dup", e))?;
            for c in rel.split('/') {
                d = self.open_dir(&d, c, rel)?;
            }
            rustix::fs::fchmod(&d, Mode::from_raw_mode(mode))
                .map_err(|e| self.io_err(rel, "setting the directory's mode", e))?;
        }
        Ok(())
    }
}

enum CopyError {
    Read(io::Error),
    Write(io::Error),
}

/// Copies `r` to `w`, telling read errors (the archive's) from write errors.
fn copy(r: &mut impl Read, w: &mut impl Write) -> std::result::Result<u64, CopyError> {
    let mut buf = vec![0u8; 1 << 16];
    let mut total = 0u64;
    loop {
        let n = match r.read(&mut buf) {
            Ok(0) => return Ok(total),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(CopyError::Read(e)),
        };
        w.write_all(&buf[..n]).map_err(CopyError::Write)?;
        total += n as u64;
    }
}

/// Extension headers waiting for the member they describe.
#[derive(Default)]
struct Pending {
    long_name: Option<Vec<u8>>,
    long_link: Option<Vec<u8>>,
    pax: Option<Vec<u8>>,
}

impl Pending {
    fn is_empty(&self) -> bool {
        self.long_name.is_none() && self.long_link.is_none() && self.pax.is_none()
    }
}

/// What a pax header says about its member.
#[derive(Default)]
struct Pax {
    path: Option<Vec<u8>>,
    linkpath: Option<Vec<u8>>,
    size: Option<u64>,
    sparse: bool,
}

fn parse_pax(data: &[u8]) -> std::result::Result<Pax, String> {
    let mut pax = Pax::default();
    for ext in tar::PaxExtensions::new(data) {
        let ext = ext.map_err(|e| format!("malformed pax header ({e})"))?;
        let key = ext.key_bytes();
        match key {
            b"path" => pax.path = Some(ext.value_bytes().to_vec()),
            b"linkpath" => pax.linkpath = Some(ext.value_bytes().to_vec()),
            b"size" => {
                let v = ext
                    .value()
                    .ok()
                    .and_then(|v| v.parse::<u64>().ok())
                    .ok_or("malformed pax size")?;
                pax.size = Some(v);
            }
            k if k.starts_with(b"GNU.sparse.") => pax.sparse = true,
            _ => {}
        }
    }
    Ok(pax)
}

/// Reads an extension header's data, refusing more than `max` bytes.
fn read_ext(
    out: &Out<'_>,
    entry: &mut impl Read,
    size: u64,
    max: u64,
    what: &str,
) -> Result<Vec<u8>> {
    if size > max {
        return Err(out.damaged(format!("{what} of {size} bytes (at most {max})")));
    }
    let mut v = Vec::with_capacity(size as usize);
    entry
        .take(max)
        .read_to_end(&mut v)
        .map_err(|e| out.damaged(e))?;
    Ok(v)
}

/// Drops the NUL a GNU long name ends with.
fn strip_nul(mut v: Vec<u8>) -> Vec<u8> {
    if v.last() == Some(&0) {
        v.pop();
    }
    v
}

fn unpack_tar(r: impl Read, out: &mut Out<'_>) -> Result<()> {
    use tar::EntryType as T;
    let mut archive = tar::Archive::new(r);
    // Raw: the extension headers come to us, so their size is bounded here
    // (the tar crate would read them whole into memory).
    let entries = archive.entries().map_err(|e| out.damaged(e))?.raw(true);
    let mut pending = Pending::default();
    for entry in entries {
        let mut entry = entry.map_err(|e| out.damaged(e))?;
        let t = entry.header().entry_type();
        let size = entry.header().entry_size().map_err(|e| out.damaged(e))?;
        match t {
            T::GNULongName | T::GNULongLink | T::XHeader => {
                let (slot, max, what) = match t {
                    T::GNULongName => (&mut pending.long_name, LONG_NAME_MAX, "GNU long name"),
                    T::GNULongLink => (&mut pending.long_link, LONG_NAME_MAX, "GNU long link"),
                    _ => (&mut pending.pax, PAX_MAX, "pax header"),
                };
                if slot.is_some() {
                    return Err(out.damaged(format!("two {what}s for one member")));
                }
                *slot = Some(read_ext(out, &mut entry, size, max, what)?);
                continue;
            }
            T::XGlobalHeader => {
                out.count("pax global header")?;
                let data = read_ext(out, &mut entry, size, PAX_MAX, "pax global header")?;
                let g = parse_pax(&data).map_err(|e| out.damaged(e))?;
                if g.path.is_some() || g.linkpath.is_some() || g.size.is_some() || g.sparse {
                    return Err(out.damaged(
                        "a pax global header sets path, linkpath, size or sparse records for every member",
                    ));
                }
                continue;
            }
            _ => {}
        }
        let ext = std::mem::take(&mut pending);
        let pax = match &ext.pax {
            Some(d) => parse_pax(d).map_err(|e| out.damaged(e))?,
            None => Pax::default(),
        };
        let raw_name = match (pax.path, ext.long_name) {
            (Some(p), _) => p,
            (None, Some(l)) => strip_nul(l),
            (None, None) => entry.header().path_bytes().into_owned(),
        };
        let member = shown(&raw_name);
        out.count(&member)?;
        if let Some(s) = pax.size.filter(|s| *s != size) {
            return Err(out.refuse(
                &member,
                format!("pax size {s} disagrees with the header's {size} (unsupported)"),
            ));
        }
        if pax.sparse {
            return Err(out.refuse(&member, "sparse files are not supported"));
        }
        let link = match (pax.linkpath, ext.long_link) {
            (Some(p), _) => Some(p),
            (None, Some(l)) => Some(strip_nul(l)),
            (None, None) => entry.header().link_name_bytes().map(|c| c.into_owned()),
        };
        let mode = || entry.header().mode().map_err(|e| out.damaged(e));
        match t {
            T::Regular | T::Continuous => {
                let mode = mode()?;
                let rel = out.rel_path(&raw_name, false)?;
                out.file(&member, &rel, mode, size, &mut entry)?;
            }
            T::Directory => {
                let mode = mode()?;
                let rel = out.rel_path(&raw_name, true)?;
                out.dir(&member, &rel, mode)?;
            }
            T::Symlink => {
                let rel = out.rel_path(&raw_name, false)?;
                let target = link.unwrap_or_default();
                out.symlink(&member, &rel, &target)?;
            }
            T::Link => {
                let target = shown(&link.unwrap_or_default());
                return Err(out.refuse(&member, format!("hard links are refused (to {target:?})")));
            }
            T::Char | T::Block => {
                return Err(out.refuse(&member, "device nodes are refused"));
            }
            T::Fifo => return Err(out.refuse(&member, "FIFOs are refused")),
            T::GNUSparse => {
                return Err(out.refuse(&member, "sparse files are not supported"));
            }
            other => {
                return Err(out.refuse(
                    &member,
                    format!("unsupported member type {:?}", other.as_byte() as char),
                ))
            }
        }
    }
    if !pending.is_empty() {
        return Err(out.damaged("an extension header at the end describes no member"));
    }
    Ok(())
}

const S_IFMT: u32 = 0o170000;
const S_IFREG: u32 = 0o100000;
const S_IFDIR: u32 = 0o040000;
const S_IFLNK: u32 = 0o120000;
const CENTRAL_SIG: &[u8] = b"PK\x01\x02";

/// The names in a zip's central directory, walked here record by record
/// from its start (at most `max` of them).
fn central_names(r: &mut (impl Read + Seek), start: u64, max: u64) -> io::Result<Vec<Vec<u8>>> {
    r.seek(SeekFrom::Start(start))?;
    let mut names = Vec::new();
    loop {
        let mut fixed = [0u8; 46];
        if read_up_to(r, &mut fixed)? < fixed.len() || &fixed[..4] != CENTRAL_SIG {
            return Ok(names);
        }
        let len = |at: usize| u16::from_le_bytes([fixed[at], fixed[at + 1]]);
        let mut name = vec![0u8; usize::from(len(28))];
        r.read_exact(&mut name)?;
        r.seek(SeekFrom::Current(i64::from(len(30)) + i64::from(len(32))))?;
        names.push(name);
        if names.len() as u64 > max {
            return Ok(names);
        }
    }
}

fn unpack_zip<R: Read + Seek>(mut r: R, out: &mut Out<'_>) -> Result<()> {
    let start = {
        let zip = zip::ZipArchive::new(&mut r).map_err(|e| out.damaged(e))?;
        (zip.central_directory_start(), zip.len())
    };
    let (dir_start, len) = start;
    let max = out.limits.max_entries;
    // Our own walk of the central directory: duplicates the zip reader
    // would fold into one are refused, and the counts must agree.
    let names = central_names(&mut r, dir_start, max).map_err(|e| out.damaged(e))?;
    if names.len() as u64 > max || len as u64 > max {
        return Err(BundleError::Archive {
            archive: out.archive.into(),
            why: format!("more than the limit of {max} members"),
        });
    }
    let mut seen = HashSet::new();
    for n in &names {
        if !seen.insert(n.as_slice()) {
            return Err(out.refuse(
                &shown(n),
                "duplicate member: listed twice in the central directory",
            ));
        }
    }
    if names.len() != len {
        return Err(out.damaged(format!(
            "the central directory holds {} records, the zip reader sees {len}",
            names.len()
        )));
    }
    let mut zip = zip::ZipArchive::new(r).map_err(|e| out.damaged(e))?;
    // Declared sizes first: an archive over the limit is refused before
    // anything is written.
    let mut declared = 0u64;
    for i in 0..len {
        let f = zip.by_index_raw(i).map_err(|e| out.damaged(e))?;
        declared = declared.saturating_add(f.size());
        if declared > out.limits.max_total_bytes {
            return Err(out.refuse(
                &shown(f.name_raw()),
                format!(
                    "the members up to this one declare {declared} bytes, over the limit of {} bytes",
                    out.limits.max_total_bytes
                ),
            ));
        }
    }
    for i in 0..len {
        let (raw_name, encrypted) = {
            let f = zip.by_index_raw(i).map_err(|e| out.damaged(e))?;
            (f.name_raw().to_vec(), f.encrypted())
        };
        let member = shown(&raw_name);
        out.count(&member)?;
        if encrypted {
            return Err(out.refuse(&member, "encrypted members are not supported"));
        }
        let mut f = zip
            .by_index(i)
            .map_err(|e| out.refuse(&member, format!("unreadable: {e}")))?;
        let unix = f.unix_mode();
        let ftype = unix.map_or(0, |m| m & S_IFMT);
        let dir_name = raw_name.last() == Some(&b'/');
        let perms = unix.map(|m| m & 0o777);
        match ftype {
            S_IFLNK if !dir_name => {
                let rel = out.rel_path(&raw_name, false)?;
                if f.size() > LINK_MAX {
                    return Err(out.refuse(&member, "refused symlink: text over 4096 bytes"));
                }
                let mut text = Vec::new();
                (&mut f)
                    .take(LINK_MAX + 1)
                    .read_to_end(&mut text)
                    .map_err(|e| out.refuse(&member, format!("reading its data: {e}")))?;
                out.symlink(&member, &rel, &text)?;
            }
            S_IFDIR | 0 if dir_name => {
                let rel = out.rel_path(&raw_name, true)?;
                out.dir(&member, &rel, perms.unwrap_or(0o755))?;
            }
            S_IFDIR => {
                return Err(out.refuse(
                    &member,
                    "a directory (by its mode) whose name does not end with '/'",
                ))
            }
            S_IFREG | 0 if !dir_name => {
                let rel = out.rel_path(&raw_name, false)?;
                let size = f.size();
                out.file(&member, &rel, perms.unwrap_or(0o644), size, &mut f)?;
            }
            S_IFREG | S_IFLNK => {
                return Err(out.refuse(&member, "a name ending with '/' for a file or symlink"))
            }
            _ => {
                return Err(out.refuse(
                    &member,
                    format!(
                        "file type {:o} refused (devices, FIFOs and sockets are not unpacked)",
                        ftype
                    ),
                ))
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
