//! File-system steps the agent's crash safety rests on: atomic rewrites,
//! directory syncs, the atomic exchange of two paths, inode identities,
//! tree copies, and removal that never follows a symlink.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Syncs the directory holding `path` (so a rename in it is durable).
pub fn sync_parent(path: &Path) -> io::Result<()> {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    fs::File::open(parent)?.sync_all()
}

/// Replaces `path` with `bytes`: a temporary beside it, synced, renamed
/// over it, the directory synced. An existing file's mode is kept.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::other(format!("{} has no file name", path.display())))?;
    let tmp = path.with_file_name(format!(
        ".{}.tmp-{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let mode = fs::metadata(path)
        .map(|m| m.permissions().mode() & 0o7777)
        .ok();
    let result = (|| {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)?;
        if let Some(mode) = mode {
            f.set_permissions(fs::Permissions::from_mode(mode))?;
        }
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)?;
        sync_parent(path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Removes the temporaries [`write_atomic`] leaves beside `path` when it is
/// killed between creating and renaming one (best effort).
pub fn remove_stale_temps(path: &Path) {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return;
    };
    let prefix = format!(".{}.tmp-", name.to_string_lossy());
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    for e in fs::read_dir(dir).into_iter().flatten().flatten() {
        if e.file_name().to_string_lossy().starts_with(&prefix) {
            let _ = fs::remove_file(e.path());
        }
    }
}

/// A file's identity (device, inode): the same across renames.
pub fn identity(path: &Path) -> io::Result<Option<(u64, u64)>> {
    match fs::symlink_metadata(path) {
        Ok(m) => Ok(Some((m.dev(), m.ino()))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Atomically exchanges two paths (files or directories on one file
/// system): `renameat2(RENAME_EXCHANGE)`, then both parents synced.
pub fn exchange(a: &Path, b: &Path) -> io::Result<()> {
    rustix::fs::renameat_with(
        rustix::fs::CWD,
        a,
        rustix::fs::CWD,
        b,
        rustix::fs::RenameFlags::EXCHANGE,
    )
    .map_err(|e| {
        io::Error::other(format!(
            "exchanging {} and {} (the file system must support renameat2 RENAME_EXCHANGE): {e}",
            a.display(),
            b.display()
        ))
    })?;
    sync_parent(a)?;
    sync_parent(b)
}

/// Removes a file, symlink or directory tree (symlinks are removed, never
/// followed); absent is fine.
pub fn remove_any(path: &Path) -> io::Result<()> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Copies a file or a directory tree to `dst` (which must not exist):
/// regular files with their permission bits, symlinks as symlinks,
/// directories recursively. Anything else (devices, FIFOs, sockets) is an
/// error. Every file is synced.
pub fn copy_tree(src: &Path, dst: &Path) -> io::Result<()> {
    let m = fs::symlink_metadata(src)?;
    let ft = m.file_type();
    if ft.is_symlink() {
        std::os::unix::fs::symlink(fs::read_link(src)?, dst)
    } else if ft.is_file() {
        let mut from = fs::File::open(src)?;
        let mut to = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(dst)?;
        io::copy(&mut from, &mut to)?;
        to.set_permissions(fs::Permissions::from_mode(m.permissions().mode() & 0o7777))?;
        to.sync_all()
    } else if ft.is_dir() {
        fs::create_dir(dst)?;
        let mut entries: Vec<PathBuf> = fs::read_dir(src)?
            .map(|e| e.map(|e| e.path()))
            .collect::<io::Result<_>>()?;
        entries.sort();
        for e in entries {
            let name = e
                .file_name()
                .ok_or_else(|| io::Error::other("an entry without a name"))?;
            copy_tree(&e, &dst.join(name))?;
        }
        fs::set_permissions(
            dst,
            fs::Permissions::from_mode(m.permissions().mode() & 0o7777),
        )?;
        fs::File::open(dst)?.sync_all()
    } else {
        Err(io::Error::other(format!(
            "{} is not a file, directory or symlink",
            src.display()
        )))
    }
}

/// Creates `dir` (and parents) with mode 0700 for the last component.
pub fn private_dir(dir: &Path) -> io::Result<()> {
    if let Some(parent) = dir.parent() {
        fs::create_dir_all(parent)?;
    }
    match fs::create_dir(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exchange_swaps_directories_and_files() {
        let d = tempfile::tempdir().unwrap();
        let (a, b) = (d.path().join("a"), d.path().join("b"));
        fs::create_dir(&a).unwrap();
        fs::write(a.join("x"), "old").unwrap();
        fs::write(&b, "new file").unwrap();
        let (ia, ib) = (identity(&a).unwrap(), identity(&b).unwrap());
        exchange(&a, &b).unwrap();
        assert_eq!(identity(&a).unwrap(), ib);
        assert_eq!(identity(&b).unwrap(), ia);
        assert_eq!(fs::read_to_string(&a).unwrap(), "new file");
        assert_eq!(fs::read_to_string(b.join("x")).unwrap(), "old");
    }

    #[test]
    fn copy_keeps_modes_and_symlinks() {
        let d = tempfile::tempdir().unwrap();
        let src = d.path().join("src");
        fs::create_dir_all(src.join("bin")).unwrap();
        fs::write(src.join("bin/tool"), "#!/bin/sh\n").unwrap();
        fs::set_permissions(src.join("bin/tool"), fs::Permissions::from_mode(0o755)).unwrap();
        std::os::unix::fs::symlink("bin/tool", src.join("link")).unwrap();
        copy_tree(&src, &d.path().join("dst")).unwrap();
        let dst = d.path().join("dst");
        let mode = fs::metadata(dst.join("bin/tool"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o755);
        assert_eq!(
            fs::read_link(dst.join("link")).unwrap(),
            Path::new("bin/tool")
        );
        assert_eq!(
            ota_core::digest::digest_path(&src).unwrap(),
            ota_core::digest::digest_path(&dst).unwrap()
        );
    }

    #[test]
    fn atomic_write_keeps_the_mode() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("agent.json");
        fs::write(&f, "{}").unwrap();
        fs::set_permissions(&f, fs::Permissions::from_mode(0o640)).unwrap();
        write_atomic(&f, b"{\"a\":1}").unwrap();
        assert_eq!(fs::read_to_string(&f).unwrap(), "{\"a\":1}");
        assert_eq!(
            fs::metadata(&f).unwrap().permissions().mode() & 0o777,
            0o640
        );
        assert_eq!(fs::read_dir(d.path()).unwrap().count(), 1);
        fs::write(d.path().join(".agent.json.tmp-999"), "half").unwrap();
        remove_stale_temps(&f);
        assert_eq!(fs::read_dir(d.path()).unwrap().count(), 1);
    }
}
