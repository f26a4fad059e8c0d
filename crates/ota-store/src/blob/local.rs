//! The data directory's blob layout: the whole store with the local
//! backend, the read-through cache with S3.
//!
//! `blobs/<first two hex>/<sha256>` for stored files, `tmp/` for uploads and
//! fetches in progress and `lock` for the single-server lock. A file is
//! written to a temporary file in `tmp/` (same file system), hashed as it
//! goes, fsynced, and only then renamed to its hash, so a blob path never
//! shows partial data.

use ota_core::Sha256Hex;
use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use tempfile::NamedTempFile;

/// The blob directory tree under a data directory.
#[derive(Clone, Debug)]
pub(crate) struct LocalBlobs {
    root: PathBuf,
}

/// An exclusive lock on a data directory, held while a server runs on it.
#[derive(Debug)]
pub struct DataDirLock {
    _file: File,
}

impl LocalBlobs {
    /// Opens (creating if needed) the layout under `data_dir`.
    pub(crate) fn open(data_dir: &Path) -> io::Result<Self> {
        let root = data_dir.to_path_buf();
        crate::private::create_private_dir_io(&root)?;
        fs::create_dir_all(root.join("blobs"))?;
        fs::create_dir_all(root.join("tmp"))?;
        Ok(LocalBlobs { root })
    }

    /// Takes the data directory's exclusive lock, failing at once if another
    /// server holds it.
    pub(crate) fn lock(&self) -> io::Result<DataDirLock> {
        use std::os::unix::fs::OpenOptionsExt;
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(self.root.join("lock"))?;
        match file.try_lock() {
            Ok(()) => Ok(DataDirLock { _file: file }),
            Err(fs::TryLockError::WouldBlock) => Err(io::Error::new(
                io::ErrorKind::WouldBlock,
                format!(
                    "data directory {} is in use by another ota server",
                    self.root.display()
                ),
            )),
            Err(fs::TryLockError::Error(e)) => Err(e),
        }
    }

    /// Where the blob with this hash lives (whether or not it exists).
    pub(crate) fn path_of(&self, hash: &Sha256Hex) -> PathBuf {
        let h = hash.as_str();
        self.root.join("blobs").join(&h[..2]).join(h)
    }

    /// A new temporary file in `tmp/`, named with `prefix`.
    pub(crate) fn temp(&self, prefix: &str) -> io::Result<NamedTempFile> {
        tempfile::Builder::new()
            .prefix(prefix)
            .tempfile_in(self.root.join("tmp"))
    }

    /// Renames a fully written temporary file to its hash, durably (file
    /// and directory entry synced). False when the blob was already there
    /// (the temporary file is removed).
    pub(crate) fn persist(&self, tmp: NamedTempFile, hash: &Sha256Hex) -> io::Result<bool> {
        let target = self.path_of(hash);
        if target.is_file() {
            return Ok(false);
        }
        tmp.as_file().sync_all()?;
        let shard = target
            .parent()
            .ok_or_else(|| io::Error::other("blob path has no parent"))?
            .to_path_buf();
        fs::create_dir_all(&shard)?;
        let created = match tmp.persist_noclobber(&target) {
            Ok(_) => true,
            Err(e) if e.error.kind() == io::ErrorKind::AlreadyExists => false,
            Err(e) => return Err(e.error),
        };
        // The rename is durable only once the directory entry is.
        File::open(&shard)?.sync_all()?;
        Ok(created)
    }

    /// Removes one blob; false if it was not there.
    pub(crate) fn remove(&self, hash: &Sha256Hex) -> io::Result<bool> {
        match fs::remove_file(self.path_of(hash)) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Deletes every temporary file; returns how many there were.
    pub(crate) fn clean_tmp(&self) -> io::Result<usize> {
        let mut n = 0;
        for entry in fs::read_dir(self.root.join("tmp"))? {
            let entry = entry?;
            if entry.file_type()?.is_file() {
                fs::remove_file(entry.path())?;
                n += 1;
            }
        }
        Ok(n)
    }

    /// Number of files currently in the temporary directory.
    pub(crate) fn tmp_count(&self) -> io::Result<usize> {
        Ok(fs::read_dir(self.root.join("tmp"))?.count())
    }

    /// Every stored blob (names that are not digests are skipped).
    pub(crate) fn list(&self) -> io::Result<Vec<Sha256Hex>> {
        let mut out = Vec::new();
        for shard in fs::read_dir(self.root.join("blobs"))? {
            let shard = shard?;
            if !shard.file_type()?.is_dir() {
                continue;
            }
            for entry in fs::read_dir(shard.path())? {
                if let Some(h) = entry?
                    .file_name()
                    .to_str()
                    .and_then(|n| Sha256Hex::parse(n).ok())
                {
                    out.push(h);
                }
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_is_exclusive() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalBlobs::open(dir.path()).unwrap();
        let l = store.lock().unwrap();
        let err = store.lock().unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::WouldBlock);
        drop(l);
        store.lock().unwrap();
    }
}
