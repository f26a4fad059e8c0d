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

mod out;
mod tar_reader;
mod zip_reader;

use out::*;
use tar_reader::*;
use zip_reader::*;

#[cfg(test)]
mod tests;
