//! ROOT as a directory handle: the only way the simulator touches the disk.
//!
//! Every path is resolved by the kernel with `openat2(RESOLVE_IN_ROOT)`
//! from the handle of ROOT, so symlinks behave as in a chroot (absolute
//! targets restart at ROOT, `..` stops there) and no path, whatever the
//! script or an earlier install planted, names anything outside. The last
//! component of whatever is written, removed, renamed or chmodded is never
//! followed: the operation goes through its parent directory's handle
//! (`*at` calls, `O_NOFOLLOW`). Writes go to a temporary created
//! `O_EXCL|O_NOFOLLOW` under a random name in the same directory, then are
//! renamed over the name.
//!
//! Paths are device paths (`/system/bin/sh`); `..` is refused here as well
//! as by the script checks, so a path never climbs by itself.

use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use rustix::fs::{self as rfs, AtFlags, FileType, Mode, OFlags, ResolveFlags};
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// Symlinks followed before giving up (the kernel's own limit).
const MAX_HOPS: usize = 40;

/// A directory standing in for the device's `/`.
pub(crate) struct Root {
    fd: OwnedFd,
}

fn resolve_flags() -> ResolveFlags {
    // NO_MAGICLINKS: /proc/self/fd/N-style links would otherwise jump
    // anywhere, chroot or not.
    ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg)
}

/// The components of a device path; `..` is refused.
fn parts(path: &str) -> io::Result<Vec<&str>> {
    let mut out = Vec::new();
    for c in path.split('/') {
        match c {
            "" | "." => {}
            ".." => return Err(invalid(format!("{path:?} contains '..'"))),
            c => out.push(c),
        }
    }
    Ok(out)
}

fn relative(parts: &[&str]) -> String {
    if parts.is_empty() {
        ".".into()
    } else {
        parts.join("/")
    }
}

/// File names in the directory `dir` (without `.` and `..`).
fn names_in(dir: BorrowedFd<'_>) -> io::Result<Vec<OsString>> {
    let mut out = Vec::new();
    for e in rfs::Dir::read_from(dir)? {
        let e = e?;
        let n = e.file_name().to_bytes();
        if n != b"." && n != b".." {
            out.push(OsStr::from_bytes(n).to_os_string());
        }
    }
    out.sort();
    Ok(out)
}

/// Removes `name` in `dir` and, for a directory, everything below it,
/// never following a symlink (a link is removed, not its target).
fn remove_at(dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<()> {
    let st = rfs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW)?;
    if FileType::from_raw_mode(st.st_mode) != FileType::Directory {
        return Ok(rfs::unlinkat(dir, name, AtFlags::empty())?);
    }
    let sub = rfs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    for n in names_in(sub.as_fd())? {
        remove_at(sub.as_fd(), &n)?;
    }
    Ok(rfs::unlinkat(dir, name, AtFlags::REMOVEDIR)?)
}

/// A random temporary name (`.ota-tmp-` and 16 hex digits).
fn temp_name() -> io::Result<String> {
    let mut b = [0u8; 8];
    let mut filled = 0;
    while filled < b.len() {
        filled += rustix::rand::getrandom(&mut b[filled..], rustix::rand::GetRandomFlags::empty())?;
    }
    Ok(format!(".ota-tmp-{}", hex::encode(b)))
}

impl Root {
    /// Opens `path` as ROOT. Fails clearly where `openat2` is missing
    /// (Linux before 5.6, or a seccomp filter): without it the simulator
    /// could not keep its writes inside ROOT.
    pub(crate) fn open(path: &Path) -> io::Result<Root> {
        let fd = rfs::open(
            path,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        let root = Root { fd };
        match root.dir(&[]) {
            Err(e) if e.raw_os_error() == Some(rustix::io::Errno::NOSYS.raw_os_error()) => {
                Err(io::Error::other(
                    "openat2() is not available (Linux 5.6 or later is needed to keep the simulator inside ROOT)",
                ))
            }
            Err(e) => Err(e),
            Ok(_) => Ok(root),
        }
    }

    fn open2(&self, parts: &[&str], flags: OFlags, mode: Mode) -> io::Result<OwnedFd> {
        Ok(rfs::openat2(
            &self.fd,
            relative(parts),
            flags | OFlags::CLOEXEC,
            mode,
            resolve_flags(),
        )?)
    }

    /// A handle on the directory `parts` (symlinks followed inside ROOT).
    fn dir(&self, parts: &[&str]) -> io::Result<OwnedFd> {
        self.open2(parts, OFlags::PATH | OFlags::DIRECTORY, Mode::empty())
    }

    /// The parent directory's handle and the last component of `path`.
    fn parent<'p>(&self, path: &'p str) -> io::Result<(OwnedFd, &'p str)> {
        let p = parts(path)?;
        let Some((name, dirs)) = p.split_last() else {
            return Err(invalid("the operation needs a path below /".into()));
        };
        Ok((self.dir(dirs)?, name))
    }

    /// The file type of `path` without following its last component;
    /// `None` when it does not exist.
    pub(crate) fn kind(&self, path: &str) -> io::Result<Option<FileType>> {
        match self.lstat(path) {
            Ok(st) => Ok(Some(FileType::from_raw_mode(st.st_mode))),
            // A missing parent, or a file where a directory would be.
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
                ) =>
            {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// `lstat` of `path`.
    pub(crate) fn lstat(&self, path: &str) -> io::Result<rfs::Stat> {
        if parts(path)?.is_empty() {
            return Ok(rfs::fstat(&self.fd)?);
        }
        let (dir, name) = self.parent(path)?;
        Ok(rfs::statat(&dir, name, AtFlags::SYMLINK_NOFOLLOW)?)
    }

    /// The target of the symlink `path`.
    pub(crate) fn read_link(&self, path: &str) -> io::Result<OsString> {
        let (dir, name) = self.parent(path)?;
        let t = rfs::readlinkat(&dir, name, Vec::new())?;
        Ok(OsStr::from_bytes(t.to_bytes()).to_os_string())
    }

    /// The contents of `path` (symlinks followed inside ROOT); the buffer
    /// grows with what is read.
    pub(crate) fn read(&self, path: &str) -> io::Result<Vec<u8>> {
        let fd = self.open2(&parts(path)?, OFlags::RDONLY, Mode::empty())?;
        let mut out = Vec::new();
        File::from(fd).read_to_end(&mut out)?;
        Ok(out)
    }

    /// Creates `path` and its missing parents (existing symlinks on the
    /// way are followed inside ROOT).
    pub(crate) fn create_dir_all(&self, path: &str) -> io::Result<()> {
        let p = parts(path)?;
        for i in 0..p.len() {
            let dir = self.dir(&p[..i])?;
            match rfs::mkdirat(&dir, p[i], Mode::from_raw_mode(0o755)) {
                Ok(()) => {}
                Err(rustix::io::Errno::EXIST) => {}
                Err(e) => return Err(e.into()),
            }
        }
        // What was there already must be (or lead to) a directory.
        self.dir(&p).map(|_| ())
    }

    /// Removes the file or symlink `path` (not a directory).
    pub(crate) fn remove(&self, path: &str) -> io::Result<()> {
        let (dir, name) = self.parent(path)?;
        Ok(rfs::unlinkat(&dir, name, AtFlags::empty())?)
    }

    /// Removes `path` and everything below it; a symlink is removed
    /// itself. A missing `path` is not an error.
    pub(crate) fn remove_all(&self, path: &str) -> io::Result<()> {
        let (dir, name) = self.parent(path)?;
        match remove_at(dir.as_fd(), OsStr::new(name)) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            r => r,
        }
    }

    /// Creates the symlink `path` → `target` (any text: it is resolved
    /// inside ROOT when followed).
    pub(crate) fn symlink(&self, target: &str, path: &str) -> io::Result<()> {
        let (dir, name) = self.parent(path)?;
        Ok(rfs::symlinkat(target, &dir, name)?)
    }

    /// Renames `from` to `to` (neither last component is followed).
    pub(crate) fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        let (fd, fname) = self.parent(from)?;
        let (td, tname) = self.parent(to)?;
        Ok(rfs::renameat(&fd, fname, &td, tname)?)
    }

    /// Replaces `path` (a file, a symlink or nothing) with a file holding
    /// `data` and mode `mode`: written to a fresh temporary in the same
    /// directory, synced, then renamed over the name.
    pub(crate) fn write(&self, path: &str, data: &[u8], mode: u32) -> io::Result<()> {
        let (dir, name) = self.parent(path)?;
        let mut tries = 0;
        let (tmp, fd) = loop {
            let tmp = temp_name()?;
            match rfs::openat(
                &dir,
                tmp.as_str(),
                OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::from_raw_mode(0o600),
            ) {
                Ok(fd) => break (tmp, fd),
                Err(rustix::io::Errno::EXIST) if tries < 8 => tries += 1,
                Err(e) => return Err(e.into()),
            }
        };
        let done = (|| {
            let mut f = File::from(fd);
            f.write_all(data)?;
            // On the handle: the name could be swapped, the handle cannot.
            rfs::fchmod(&f, Mode::from_raw_mode(mode & 0o7777))?;
            f.sync_all()?;
            rfs::renameat(&dir, tmp.as_str(), &dir, name)?;
            Ok(())
        })();
        if done.is_err() {
            rfs::unlinkat(&dir, tmp.as_str(), AtFlags::empty()).ok();
        }
        done
    }

    /// Sets the mode of `path` without following it; a symlink is an error.
    pub(crate) fn chmod(&self, path: &str, mode: u32) -> io::Result<()> {
        let (dir, name) = self.parent(path)?;
        let fd = rfs::openat(
            &dir,
            name,
            OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        if FileType::from_raw_mode(rfs::fstat(&fd)?.st_mode) == FileType::Symlink {
            return Err(invalid(format!("{path} is a symlink")));
        }
        // fchmod() refuses O_PATH handles; the handle's /proc entry names
        // exactly the inode opened above, whatever happens to the name.
        let proc = format!("/proc/self/fd/{}", rustix::fd::AsRawFd::as_raw_fd(&fd));
        rfs::chmodat(
            rfs::CWD,
            proc.as_str(),
            Mode::from_raw_mode(mode & 0o7777),
            AtFlags::empty(),
        )
        .map_err(|e| match e {
            rustix::io::Errno::NOENT => io::Error::other("chmod needs /proc to be mounted"),
            e => e.into(),
        })
    }

    /// The names in the directory `path` (not followed if a symlink), sorted.
    pub(crate) fn list(&self, path: &str) -> io::Result<Vec<OsString>> {
        let fd = self.open2(
            &parts(path)?,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW,
            Mode::empty(),
        )?;
        names_in(fd.as_fd())
    }

    /// Free space of the file system ROOT is on.
    pub(crate) fn statvfs(&self) -> io::Result<rfs::StatVfs> {
        Ok(rfs::fstatvfs(&self.fd)?)
    }

    /// Where `path` leads, as the kernel resolves it under ROOT: a device
    /// path without symlinks (the last component followed only when
    /// `follow_last`). The simulator uses it to tell which partition a
    /// path lands on; confinement does not depend on it.
    pub(crate) fn resolve(&self, path: &str, follow_last: bool) -> io::Result<String> {
        let mut pending: Vec<String> = parts(path)?.into_iter().map(String::from).collect();
        pending.reverse();
        let mut done: Vec<String> = Vec::new();
        let mut hops = 0;
        while let Some(c) = pending.pop() {
            if c == ".." {
                done.pop();
                continue;
            }
            let last = pending.is_empty();
            let here = format!("/{}/{c}", done.join("/"));
            let is_link = self.kind(&here)? == Some(FileType::Symlink);
            if is_link && (!last || follow_last) {
                hops += 1;
                if hops > MAX_HOPS {
                    return Err(io::Error::from_raw_os_error(
                        rustix::io::Errno::LOOP.raw_os_error(),
                    ));
                }
                let target = self.read_link(&here)?;
                let t = target.to_string_lossy();
                if t.starts_with('/') {
                    done.clear();
                }
                for part in t.split('/').rev() {
                    match part {
                        "" | "." => {}
                        p => pending.push(p.to_string()),
                    }
                }
                continue;
            }
            done.push(c);
        }
        Ok(format!("/{}", done.join("/")))
    }
}
