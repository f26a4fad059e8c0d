//! Content-addressed blob storage on the local file system.
//!
//! Layout under the data directory:
//! `blobs/<first two hex>/<sha256>` for stored files, `tmp/` for uploads in
//! progress and `lock` for the single-server lock. An upload is written to a
//! temporary file in `tmp/` (same file system), hashed as it goes, fsynced,
//! and only then renamed to its hash, so a blob path never shows partial data.

use ota_core::{Sha256Hex, Sha256Writer};
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use tempfile::NamedTempFile;

/// The blob directory tree.
#[derive(Clone, Debug)]
pub struct BlobStore {
    root: PathBuf,
}

/// An exclusive lock on a data directory, held while a server runs on it.
#[derive(Debug)]
pub struct DataDirLock {
    _file: File,
}

/// An upload in progress: a temporary file plus a running hash.
pub struct BlobWriter {
    tmp: Sha256Writer<NamedTempFile>,
}

/// A blob that is now durable under its hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Committed {
    /// SHA-256 of the content.
    pub hash: Sha256Hex,
    /// Size in bytes.
    pub size: u64,
    /// False when identical content was already stored.
    pub created: bool,
}

/// Why a blob was not committed. The temporary file is removed either way.
#[derive(Debug, thiserror::Error)]
pub enum CommitError {
    /// The content does not hash to what the publisher declared.
    #[error("SHA-256 mismatch: declared {expected}, received {actual}")]
    HashMismatch {
        /// Declared digest.
        expected: Sha256Hex,
        /// Digest of the received bytes.
        actual: Sha256Hex,
    },
    /// A file system error.
    #[error("storing blob: {0}")]
    Io(#[from] io::Error),
}

impl BlobStore {
    /// Opens (creating if needed) the blob store under `data_dir`.
    pub fn open(data_dir: &Path) -> io::Result<Self> {
        let root = data_dir.to_path_buf();
        crate::private::create_private_dir_io(&root)?;
        fs::create_dir_all(root.join("blobs"))?;
        fs::create_dir_all(root.join("tmp"))?;
        Ok(BlobStore { root })
    }

    /// Takes the data directory's exclusive lock, failing at once if another
    /// server holds it.
    pub fn lock(&self) -> io::Result<DataDirLock> {
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
    pub fn path_of(&self, hash: &Sha256Hex) -> PathBuf {
        let h = hash.as_str();
        self.root.join("blobs").join(&h[..2]).join(h)
    }

    /// True when the blob is stored.
    pub fn contains(&self, hash: &Sha256Hex) -> bool {
        self.path_of(hash).is_file()
    }

    /// Starts a new upload in the temporary directory.
    pub fn begin(&self) -> io::Result<BlobWriter> {
        Ok(BlobWriter {
            tmp: Sha256Writer::new(
                tempfile::Builder::new()
                    .prefix("upload-")
                    .tempfile_in(self.root.join("tmp"))?,
            ),
        })
    }

    /// Stores a file's bytes (used by tests and importers).
    pub fn put_bytes(&self, data: &[u8]) -> Result<Committed, CommitError> {
        let mut w = self.begin()?;
        w.write_all(data)?;
        w.commit(self, None)
    }

    /// Removes one blob; false if it was not there.
    pub fn remove(&self, hash: &Sha256Hex) -> io::Result<bool> {
        match fs::remove_file(self.path_of(hash)) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Deletes every temporary upload file; returns how many there were.
    pub fn clean_tmp(&self) -> io::Result<usize> {
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
    pub fn tmp_count(&self) -> io::Result<usize> {
        Ok(fs::read_dir(self.root.join("tmp"))?.count())
    }

    /// Every stored blob (names that are not digests are skipped).
    pub fn list(&self) -> io::Result<Vec<Sha256Hex>> {
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

impl BlobWriter {
    /// Bytes written so far.
    pub fn len(&self) -> u64 {
        self.tmp.len()
    }

    /// The SHA-256 of what was written so far.
    pub fn digest(&self) -> Sha256Hex {
        self.tmp.digest()
    }

    /// True when nothing was written.
    pub fn is_empty(&self) -> bool {
        self.tmp.is_empty()
    }

    /// A new read handle on what was written so far (to inspect an upload
    /// before committing it).
    pub fn reopen(&mut self) -> io::Result<File> {
        self.tmp.get_mut().reopen()
    }

    /// Makes the content durable under its hash. With `expected`, refuses
    /// content whose hash differs (nothing is stored).
    pub fn commit(
        mut self,
        store: &BlobStore,
        expected: Option<&Sha256Hex>,
    ) -> Result<Committed, CommitError> {
        let hash = self.tmp.digest();
        let size = self.tmp.len();
        if let Some(expected) = expected {
            if *expected != hash {
                return Err(CommitError::HashMismatch {
                    expected: expected.clone(),
                    actual: hash,
                });
            }
        }
        let target = store.path_of(&hash);
        if target.is_file() {
            return Ok(Committed {
                hash,
                size,
                created: false,
            });
        }
        self.tmp.get_mut().as_file_mut().sync_all()?;
        let shard = target
            .parent()
            .ok_or_else(|| io::Error::other("blob path has no parent"))?
            .to_path_buf();
        fs::create_dir_all(&shard)?;
        let (_, _, tmp) = self.tmp.finish();
        let created = match tmp.persist_noclobber(&target) {
            Ok(_) => true,
            Err(e) if e.error.kind() == io::ErrorKind::AlreadyExists => false,
            Err(e) => return Err(e.error.into()),
        };
        // The rename is durable only once the directory entry is.
        File::open(&shard)?.sync_all()?;
        Ok(Committed {
            hash,
            size,
            created,
        })
    }
}

impl Write for BlobWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.tmp.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.tmp.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_dedup_mismatch_and_tmp_cleanup() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path()).unwrap();
        let a = store.put_bytes(b"hello").unwrap();
        assert!(a.created);
        assert_eq!(a.hash, Sha256Hex::of_bytes(b"hello"));
        assert_eq!(fs::read(store.path_of(&a.hash)).unwrap(), b"hello");
        let b = store.put_bytes(b"hello").unwrap();
        assert!(!b.created);
        assert_eq!(store.list().unwrap(), vec![a.hash.clone()]);

        let mut w = store.begin().unwrap();
        w.write_all(b"other").unwrap();
        let err = w.commit(&store, Some(&a.hash)).unwrap_err();
        assert!(matches!(err, CommitError::HashMismatch { .. }));
        assert_eq!(
            store.tmp_count().unwrap(),
            0,
            "mismatch leaves no temp file"
        );
        assert!(!store.contains(&Sha256Hex::of_bytes(b"other")));

        // A writer dropped mid-way (client gone) leaves nothing behind.
        let mut w = store.begin().unwrap();
        w.write_all(b"partial").unwrap();
        assert_eq!(store.tmp_count().unwrap(), 1);
        drop(w);
        assert_eq!(store.tmp_count().unwrap(), 0);

        // A crash leaves a temp file: clean_tmp removes it.
        let w = store.begin().unwrap();
        std::mem::forget(w);
        assert_eq!(store.clean_tmp().unwrap(), 1);

        assert!(store.remove(&a.hash).unwrap());
        assert!(!store.remove(&a.hash).unwrap());
    }

    #[test]
    fn lock_is_exclusive() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path()).unwrap();
        let l = store.lock().unwrap();
        let err = store.lock().unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::WouldBlock);
        drop(l);
        store.lock().unwrap();
    }
}
