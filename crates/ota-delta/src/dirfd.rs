//! Directory handles: the one way the delta engine creates, links, renames,
//! removes and changes the mode of anything.
//!
//! Every operation names one entry of a directory that is already open
//! (the `*at` system calls), and none follows a symlink at that entry:
//! files are created with `O_CREAT|O_EXCL|O_NOFOLLOW` and read with
//! `O_NOFOLLOW`, directories are walked one component at a time with
//! `O_DIRECTORY|O_NOFOLLOW`, modes are set with `fchmod` on the open
//! handle, hard links never follow their source, renames replace a symlink
//! rather than write through it. So a symlink planted anywhere (by the new
//! tree, in OLD, or beside the destination) is an error or a plain entry,
//! never a way out of the tree, whatever order the caller does things in.
//! Temporary files get random names (`O_EXCL`, retried on collision) and
//! are removed when dropped unless persisted.

use rustix::fs::{AtFlags, FileType, Mode, OFlags};
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::hash::{BuildHasher, Hasher};
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// An open directory, and the path it was opened by (for messages only).
#[derive(Debug)]
pub(crate) struct Dir {
    fd: OwnedFd,
    path: PathBuf,
}

const DIR_FLAGS: OFlags = OFlags::RDONLY
    .union(OFlags::DIRECTORY)
    .union(OFlags::NOFOLLOW)
    .union(OFlags::CLOEXEC);

/// Most directory handles a [`Dirs`] keeps open (the default limit on
/// descriptors is 1,024); past it the cache starts again.
const DIRS_KEPT: usize = 256;

/// Handles on the directories under one root, each opened once (one
/// component at a time, nothing followed, like [`Dir::walk`]) and shared
/// between threads: a tree of N files costs one open per directory rather
/// than one per path component per file.
pub(crate) struct Dirs<'r> {
    root: &'r Dir,
    open: Mutex<std::collections::HashMap<String, Arc<Dir>>>,
}

impl<'r> Dirs<'r> {
    /// An empty cache over `root`.
    pub(crate) fn new(root: &'r Dir) -> Dirs<'r> {
        Dirs {
            root,
            open: Mutex::default(),
        }
    }

    /// The root these paths are relative to.
    pub(crate) fn root(&self) -> &Dir {
        self.root
    }

    /// The directory at relative path `rel` ('/'-separated; "" is the root).
    pub(crate) fn get(&self, rel: &str) -> io::Result<Arc<Dir>> {
        let lock = || self.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(d) = lock().get(rel) {
            return Ok(d.clone());
        }
        let d = Arc::new(match rel.rsplit_once('/') {
            Some((parent, name)) => self.get(parent)?.open_dir(name)?,
            None if rel.is_empty() => self.root.try_clone()?,
            None => self.root.open_dir(rel)?,
        });
        let mut open = lock();
        if open.len() >= DIRS_KEPT {
            open.clear();
        }
        open.insert(rel.to_owned(), d.clone());
        Ok(d)
    }

    /// The directory holding relative path `rel`, and `rel`'s last name.
    pub(crate) fn parent<'a>(&self, rel: &'a str) -> io::Result<(Arc<Dir>, &'a str)> {
        match rel.rsplit_once('/') {
            Some((parent, name)) => Ok((self.get(parent)?, name)),
            None => Ok((self.get("")?, rel)),
        }
    }
}

/// True when an error means "a symlink (or a non-directory) was in the way"
/// rather than "missing".
pub(crate) fn is_link_refusal(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(code) if code == rustix::io::Errno::LOOP.raw_os_error()
            || code == rustix::io::Errno::NOTDIR.raw_os_error()
            || code == rustix::io::Errno::MLINK.raw_os_error()
    )
}

impl Dir {
    /// Opens the directory at `path`; a symlink as its last component is
    /// refused (components before it are the caller's own choice).
    pub(crate) fn open(path: &Path) -> io::Result<Dir> {
        let fd = rustix::fs::openat(rustix::fs::CWD, path, DIR_FLAGS, Mode::empty())?;
        Ok(Dir {
            fd,
            path: path.to_path_buf(),
        })
    }

    /// Opens the directory holding `dest` and returns it with `dest`'s file
    /// name: outputs are created and renamed in by handle on that directory.
    pub(crate) fn parent_of(dest: &Path) -> io::Result<(Dir, OsString)> {
        let name = dest.file_name().ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidInput, "the path has no file name")
        })?;
        let parent = match dest.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        // The parent may be reached through symlinks: the user named it.
        let fd = rustix::fs::openat(
            rustix::fs::CWD,
            parent,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        Ok((
            Dir {
                fd,
                path: parent.to_path_buf(),
            },
            name.to_os_string(),
        ))
    }

    /// The path this directory was opened by.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Another handle on the same directory.
    pub(crate) fn try_clone(&self) -> io::Result<Dir> {
        Ok(Dir {
            fd: self.fd.try_clone()?,
            path: self.path.clone(),
        })
    }

    /// Opens the subdirectory `name` (never through a symlink).
    pub(crate) fn open_dir(&self, name: impl AsRef<OsStr>) -> io::Result<Dir> {
        let name = name.as_ref();
        let fd = rustix::fs::openat(&self.fd, name, DIR_FLAGS, Mode::empty())?;
        Ok(Dir {
            fd,
            path: self.path.join(name),
        })
    }

    /// Opens the directory at relative path `rel` ('/'-separated), one
    /// component at a time, refusing any symlink on the way. "" is `self`.
    pub(crate) fn walk(&self, rel: &str) -> io::Result<Dir> {
        let mut d = self.try_clone()?;
        for c in rel.split('/').filter(|c| !c.is_empty()) {
            d = d.open_dir(c)?;
        }
        Ok(d)
    }

    /// The directory holding relative path `rel`, and `rel`'s last name.
    pub(crate) fn walk_parent<'a>(&self, rel: &'a str) -> io::Result<(Dir, &'a str)> {
        match rel.rsplit_once('/') {
            Some((parent, name)) => Ok((self.walk(parent)?, name)),
            None => Ok((self.try_clone()?, rel)),
        }
    }

    /// Creates the directory `name` with `mode` (before the umask).
    pub(crate) fn create_dir(&self, name: impl AsRef<OsStr>, mode: u32) -> io::Result<()> {
        rustix::fs::mkdirat(&self.fd, name.as_ref(), Mode::from_raw_mode(mode))?;
        Ok(())
    }

    /// Creates the regular file `name` for writing; fails if anything,
    /// a symlink included, is already there.
    pub(crate) fn create_file(&self, name: impl AsRef<OsStr>, mode: u32) -> io::Result<File> {
        let fd = rustix::fs::openat(
            &self.fd,
            name.as_ref(),
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(mode),
        )?;
        Ok(File::from(fd))
    }

    /// Opens the regular file `name` for reading, refusing a symlink or
    /// anything that is not a regular file.
    pub(crate) fn open_file(&self, name: impl AsRef<OsStr>) -> io::Result<File> {
        let fd = rustix::fs::openat(
            &self.fd,
            name.as_ref(),
            // O_NONBLOCK: a FIFO planted here must not hang the open.
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NONBLOCK,
            Mode::empty(),
        )?;
        let st = rustix::fs::fstat(&fd)?;
        if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "not a regular file",
            ));
        }
        Ok(File::from(fd))
    }

    /// What `name` is, without following it: (type, permission bits).
    pub(crate) fn stat(&self, name: impl AsRef<OsStr>) -> io::Result<(FileType, u32)> {
        let st = rustix::fs::statat(&self.fd, name.as_ref(), AtFlags::SYMLINK_NOFOLLOW)?;
        Ok((FileType::from_raw_mode(st.st_mode), st.st_mode & 0o7777))
    }

    /// Whether anything (a dangling symlink included) is at `name`.
    pub(crate) fn exists(&self, name: impl AsRef<OsStr>) -> io::Result<bool> {
        match self.stat(name) {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// The text of the symlink `name`.
    pub(crate) fn read_link(&self, name: impl AsRef<OsStr>) -> io::Result<OsString> {
        let t = rustix::fs::readlinkat(&self.fd, name.as_ref(), Vec::new())?;
        Ok(OsStr::from_bytes(t.as_bytes()).to_os_string())
    }

    /// Creates the symlink `name` with text `target` (never followed here).
    pub(crate) fn symlink(&self, target: &str, name: impl AsRef<OsStr>) -> io::Result<()> {
        rustix::fs::symlinkat(target, &self.fd, name.as_ref())?;
        Ok(())
    }

    /// Hard-links `src/src_name` as `name` here; a symlink at the source is
    /// linked as itself (never followed).
    pub(crate) fn hard_link_from(
        &self,
        src: &Dir,
        src_name: impl AsRef<OsStr>,
        name: impl AsRef<OsStr>,
    ) -> io::Result<()> {
        rustix::fs::linkat(
            &src.fd,
            src_name.as_ref(),
            &self.fd,
            name.as_ref(),
            AtFlags::empty(),
        )?;
        Ok(())
    }

    /// Renames `name` to `to/to_name`, replacing a file (or symlink) there.
    pub(crate) fn rename(
        &self,
        name: impl AsRef<OsStr>,
        to: &Dir,
        to_name: impl AsRef<OsStr>,
    ) -> io::Result<()> {
        rustix::fs::renameat(&self.fd, name.as_ref(), &to.fd, to_name.as_ref())?;
        Ok(())
    }

    /// Renames `name` to `to/to_name` only if nothing is there yet.
    pub(crate) fn rename_noreplace(
        &self,
        name: impl AsRef<OsStr>,
        to: &Dir,
        to_name: impl AsRef<OsStr>,
    ) -> io::Result<()> {
        let (from, dest) = (name.as_ref(), to_name.as_ref());
        #[cfg(any(target_os = "linux", target_os = "android"))]
        {
            match rustix::fs::renameat_with(
                &self.fd,
                from,
                &to.fd,
                dest,
                rustix::fs::RenameFlags::NOREPLACE,
            ) {
                Ok(()) => return Ok(()),
                // File systems without RENAME_NOREPLACE: check, then rename.
                Err(e) if e == rustix::io::Errno::INVAL || e == rustix::io::Errno::NOSYS => {}
                Err(e) => return Err(e.into()),
            }
        }
        if to.exists(dest)? {
            return Err(io::Error::from(io::ErrorKind::AlreadyExists));
        }
        self.rename(from, to, dest)
    }

    /// Removes the file or symlink `name`.
    pub(crate) fn remove_file(&self, name: impl AsRef<OsStr>) -> io::Result<()> {
        rustix::fs::unlinkat(&self.fd, name.as_ref(), AtFlags::empty())?;
        Ok(())
    }

    /// Removes `name` and, if it is a directory, everything under it,
    /// never following a symlink (a symlink is removed as itself).
    /// Returns whether anything was there.
    pub(crate) fn remove_all(&self, name: impl AsRef<OsStr>) -> io::Result<bool> {
        let name = name.as_ref();
        match self.stat(name) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(e),
            Ok((FileType::Directory, mode)) => {
                if mode & 0o700 != 0o700 {
                    // Our own stage may hold read-only directories.
                    let d = self.open_dir(name)?;
                    rustix::fs::fchmod(&d.fd, Mode::from_raw_mode(0o700))?;
                }
                let d = self.open_dir(name)?;
                for (child, _) in d.entries()? {
                    d.remove_all(&child)?;
                }
                rustix::fs::unlinkat(&self.fd, name, AtFlags::REMOVEDIR)?;
            }
            Ok(_) => self.remove_file(name)?,
        }
        Ok(true)
    }

    /// The entries of this directory (without "." and ".."), each with its
    /// type as `lstat` reports it.
    pub(crate) fn entries(&self) -> io::Result<Vec<(OsString, FileType)>> {
        let mut out = Vec::new();
        for e in rustix::fs::Dir::read_from(&self.fd)? {
            let e = e?;
            let name = e.file_name().to_bytes();
            if name == b"." || name == b".." {
                continue;
            }
            let name = OsStr::from_bytes(name).to_os_string();
            let t = match e.file_type() {
                FileType::Unknown => self.stat(&name)?.0,
                t => t,
            };
            out.push((name, t));
        }
        Ok(out)
    }

    /// Sets this directory's own permission bits.
    pub(crate) fn chmod(&self, mode: u32) -> io::Result<()> {
        rustix::fs::fchmod(&self.fd, Mode::from_raw_mode(mode))?;
        Ok(())
    }

    /// This directory's own permission bits.
    pub(crate) fn mode(&self) -> io::Result<u32> {
        Ok(rustix::fs::fstat(&self.fd)?.st_mode & 0o7777)
    }

    /// fsyncs the directory (its entries, after creations and renames).
    pub(crate) fn sync(&self) -> io::Result<()> {
        rustix::fs::fsync(&self.fd)?;
        Ok(())
    }

    /// Writes out everything dirty on this directory's file system
    /// (`syncfs`): one journal commit for a whole staged tree instead of
    /// an fsync per file.
    pub(crate) fn sync_file_system(&self) -> io::Result<()> {
        rustix::fs::syncfs(&self.fd)?;
        Ok(())
    }

    /// Creates a temporary file here with a random name starting with
    /// `prefix` (`O_EXCL|O_NOFOLLOW`, mode 0600), removed on drop unless
    /// [`TempFile::persist`]ed.
    pub(crate) fn temp_file(&self, prefix: &str) -> io::Result<TempFile> {
        let mut last = None;
        for _ in 0..64 {
            let name = format!("{prefix}{:016x}", random_u64());
            match self.create_file(&name, 0o600) {
                Ok(file) => {
                    return Ok(TempFile {
                        dir: self.try_clone()?,
                        name: Some(name.into()),
                        file,
                    })
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| io::Error::from(io::ErrorKind::AlreadyExists)))
    }
}

/// A random number from std's per-process random hash keys plus a counter
/// (names only need to be unlikely to collide: creation is `O_EXCL`).
fn random_u64() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    h.write_u32(std::process::id());
    if let Ok(t) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        h.write_u128(t.as_nanos());
    }
    h.finish()
}

/// A file being written under a random name in a directory handle.
#[derive(Debug)]
pub(crate) struct TempFile {
    dir: Dir,
    /// None once persisted.
    name: Option<OsString>,
    file: File,
}

impl TempFile {
    /// The open file.
    pub(crate) fn file(&self) -> &File {
        &self.file
    }

    /// fsyncs (with `sync`) and renames the file to `dest` in the same
    /// directory, replacing whatever file or symlink is there; then fsyncs
    /// the directory.
    pub(crate) fn persist(mut self, dest: &OsStr, sync: bool) -> io::Result<()> {
        if sync {
            self.file.sync_all()?;
        }
        let name = self.name.take().unwrap_or_default();
        if let Err(e) = self.dir.rename(&name, &self.dir, dest) {
            self.name = Some(name);
            return Err(e);
        }
        if sync {
            self.dir.sync()?;
        }
        Ok(())
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if let Some(name) = self.name.take() {
            let _ = self.dir.remove_file(name);
        }
    }
}

impl io::Write for TempFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.file.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}
