//! Content-addressed blob storage: the one facade every caller uses.
//!
//! Two backends ([`BlobBackend`]): the data directory itself (`local`), or
//! an S3-compatible object store, the source of truth shared by every
//! instance, with the data directory as a read-through cache in the same
//! layout. Either way:
//!
//! - uploads stream into a temporary file (`begin` → [`BlobWriter`]),
//!   hashed as they go; [`BlobWriter::commit`] makes the blob durable in
//!   the backend (on S3: uploaded, multipart above the part size) before
//!   it returns, so a catalogue row is only written for a stored blob;
//! - code that needs a file (pack jobs, bundles) asks
//!   [`BlobStore::ensure_local`], which fetches a missing blob into the
//!   cache (temporary file, SHA-256 verified, renamed in);
//! - downloads read the cache, or stream a range from the store
//!   ([`BlobStore::read_remote`]) without fetching the whole object first.

mod local;
mod s3;
mod url;

pub use local::DataDirLock;
pub use s3::{ObjectInfo, CONNECT_TIMEOUT, OPS_TIMEOUT, READ_IDLE_TIMEOUT};
pub use url::{
    BadBlobsUrl, BlobBackend, S3Config, DEFAULT_ORPHAN_GRACE, DEFAULT_PART_SIZE, MIN_PART_SIZE,
};

use bytes::Bytes;
use futures_util::stream::BoxStream;
use futures_util::StreamExt;
use local::LocalBlobs;
use ota_core::{Sha256Hex, Sha256Writer};
use s3::S3Blobs;
use std::collections::HashSet;
use std::fs::File;
use std::io::{self, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tempfile::NamedTempFile;

/// The blob store: local files, or an object store with a local cache.
#[derive(Clone, Debug)]
pub struct BlobStore {
    local: LocalBlobs,
    remote: Option<Arc<S3Blobs>>,
    /// Hashes being fetched into the cache in the background.
    filling: Arc<Mutex<HashSet<Sha256Hex>>>,
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

/// A blob store operation that failed.
#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    /// No blob with that hash.
    #[error("no such blob")]
    NotFound,
    /// The object store refused or did not answer (after bounded retries).
    #[error("object store: {0}")]
    Remote(String),
    /// What the object store returned does not hash to its name: refused,
    /// not cached.
    #[error("the object store returned corrupt content for {hash}: {detail}")]
    Corrupt {
        /// The blob asked for.
        hash: Sha256Hex,
        /// What differed.
        detail: String,
    },
    /// The backend cannot be set up (bad URL, missing credentials).
    #[error("{0}")]
    Config(String),
    /// A local file system error.
    #[error("{0}")]
    Io(#[from] io::Error),
}

/// Why a blob was not committed. The temporary file is removed either way,
/// and nothing is left in the object store.
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
    /// The object store did not take it.
    #[error("storing blob: {0}")]
    Store(BlobError),
}

impl From<BlobError> for CommitError {
    fn from(e: BlobError) -> Self {
        match e {
            BlobError::Io(e) => CommitError::Io(e),
            e => CommitError::Store(e),
        }
    }
}

impl BlobStore {
    /// Opens (creating if needed) the local blob store under `data_dir`.
    pub fn open(data_dir: &Path) -> io::Result<Self> {
        Ok(BlobStore {
            local: LocalBlobs::open(data_dir)?,
            remote: None,
            filling: Arc::default(),
        })
    }

    /// Opens the store `backend` names, with `data_dir` as its cache and
    /// temporary space. S3 credentials come from the environment
    /// (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`);
    /// no request is made yet.
    pub fn open_with(data_dir: &Path, backend: &BlobBackend) -> Result<Self, BlobError> {
        let mut store = BlobStore::open(data_dir)?;
        if let BlobBackend::S3(config) = backend {
            let creds = s3::Credentials::from_env()?;
            store.remote = Some(Arc::new(S3Blobs::new(config, creds)?));
        }
        Ok(store)
    }

    /// True when an object store is the source of truth.
    pub fn is_remote(&self) -> bool {
        self.remote.is_some()
    }

    /// Where the blobs are, for logs (never credentials).
    pub fn describe(&self) -> String {
        match &self.remote {
            Some(r) => format!("{} (cache: the data directory)", r.config),
            None => "the data directory".to_owned(),
        }
    }

    /// How old an unreferenced object must be before start-up cleanup
    /// deletes it (`None` with the local backend, where a locked data
    /// directory has no other writer).
    pub fn orphan_grace(&self) -> Option<Duration> {
        self.remote.as_ref().map(|r| r.config.orphan_grace)
    }

    /// Changes the grace period of [`BlobStore::orphan_grace`].
    pub fn set_orphan_grace(&mut self, grace: Duration) {
        if let Some(r) = &mut self.remote {
            let mut s = (**r).clone();
            s.config.orphan_grace = grace;
            *r = Arc::new(s);
        }
    }

    /// Takes the data directory's exclusive lock, failing at once if another
    /// server holds it.
    pub fn lock(&self) -> io::Result<DataDirLock> {
        self.local.lock()
    }

    /// Where the local copy of the blob is (whether or not it exists). With
    /// S3 it may be absent: use [`BlobStore::ensure_local`] to have it.
    pub fn path_of(&self, hash: &Sha256Hex) -> PathBuf {
        self.local.path_of(hash)
    }

    /// True when the local copy exists.
    pub fn is_cached(&self, hash: &Sha256Hex) -> bool {
        self.path_of(hash).is_file()
    }

    /// True when the blob is stored (in the object store, with S3).
    pub async fn contains(&self, hash: &Sha256Hex) -> Result<bool, BlobError> {
        match &self.remote {
            None => Ok(self.is_cached(hash)),
            Some(r) => Ok(r.head(hash).await?.is_some()),
        }
    }

    /// The object's size and age in the object store (`None` when absent
    /// or with the local backend).
    pub async fn head_remote(&self, hash: &Sha256Hex) -> Result<Option<ObjectInfo>, BlobError> {
        match &self.remote {
            None => Ok(None),
            Some(r) => r.head(hash).await,
        }
    }

    /// Checks the store can take blobs: a temporary file can be created,
    /// and the object store (when there is one) answers a request.
    pub async fn ping(&self) -> Result<(), BlobError> {
        let local = self.local.clone();
        tokio::task::spawn_blocking(move || local.temp("ping-").map(drop))
            .await
            .map_err(|e| BlobError::Io(io::Error::other(e)))??;
        if let Some(r) = &self.remote {
            // Any answer, found or not, means the store is up and lets us in.
            r.head(&Sha256Hex::of_bytes(b"ota readiness probe")).await?;
        }
        Ok(())
    }

    /// Starts a new upload in the temporary directory.
    pub fn begin(&self) -> io::Result<BlobWriter> {
        Ok(BlobWriter {
            tmp: Sha256Writer::new(self.local.temp("upload-")?),
        })
    }

    /// Stores a small file's bytes (packs, tests, importers). The bytes are
    /// written to the temporary file on the calling thread.
    pub async fn put_bytes(&self, data: &[u8]) -> Result<Committed, CommitError> {
        let mut w = self.begin()?;
        w.write_all(data)?;
        w.commit(self, None).await
    }

    /// The blob as a local file: the cached copy, fetched from the object
    /// store first when missing (streamed to a temporary file, SHA-256 and
    /// length verified, renamed in; a corrupt object is refused and not
    /// cached). [`BlobError::NotFound`] when no backend has it.
    pub async fn ensure_local(&self, hash: &Sha256Hex) -> Result<PathBuf, BlobError> {
        let path = self.path_of(hash);
        if tokio::fs::metadata(&path).await.is_ok_and(|m| m.is_file()) {
            return Ok(path);
        }
        let Some(remote) = &self.remote else {
            return Err(BlobError::NotFound);
        };
        let info = remote.head(hash).await?.ok_or(BlobError::NotFound)?;
        let tmp = self.local.temp("fetch-")?;
        let mut file = tokio::fs::File::from_std(tmp.reopen()?);
        let mut hasher = <sha2::Sha256 as sha2::Digest>::new();
        let mut got = 0u64;
        let mut stream = remote.read(hash, None).await?;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| BlobError::Remote(e.to_string()))?;
            got += chunk.len() as u64;
            if got > info.size {
                break; // longer than the object: corrupt, checked below
            }
            sha2::Digest::update(&mut hasher, &chunk);
            tokio::io::AsyncWriteExt::write_all(&mut file, &chunk).await?;
        }
        tokio::io::AsyncWriteExt::flush(&mut file).await?;
        drop(file);
        let actual = Sha256Hex::from_hasher(hasher);
        if got != info.size || actual != *hash {
            return Err(BlobError::Corrupt {
                hash: hash.clone(),
                detail: format!("{got} bytes hashing to {actual}, {} expected", info.size),
            });
        }
        let local = self.local.clone();
        let h = hash.clone();
        tokio::task::spawn_blocking(move || local.persist(tmp, &h))
            .await
            .map_err(|e| BlobError::Io(io::Error::other(e)))??;
        Ok(path)
    }

    /// Fetches the blob into the cache in the background (at most one
    /// fetch per hash at a time); errors are logged. Nothing with the
    /// local backend.
    pub fn spawn_fill(&self, hash: &Sha256Hex) {
        if self.remote.is_none() || self.is_cached(hash) {
            return;
        }
        {
            let mut filling = self.filling.lock().unwrap_or_else(|p| p.into_inner());
            if !filling.insert(hash.clone()) {
                return;
            }
        }
        let (store, hash) = (self.clone(), hash.clone());
        tokio::spawn(async move {
            if let Err(e) = store.ensure_local(&hash).await {
                tracing::warn!("caching blob {hash} from the object store: {e}");
            }
            store
                .filling
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&hash);
        });
    }

    /// Streams `range` (or all) of the object of `hash` from the object
    /// store. [`BlobError::NotFound`] with the local backend.
    pub async fn read_remote(
        &self,
        hash: &Sha256Hex,
        range: Option<Range<u64>>,
    ) -> Result<BoxStream<'static, io::Result<Bytes>>, BlobError> {
        match &self.remote {
            None => Err(BlobError::NotFound),
            Some(r) => r.read(hash, range).await,
        }
    }

    /// A URL that lets its holder download the object for `expires`
    /// (`None` with the local backend).
    pub async fn presign(
        &self,
        hash: &Sha256Hex,
        expires: Duration,
    ) -> Result<Option<String>, BlobError> {
        match &self.remote {
            None => Ok(None),
            Some(r) => r.presign(hash, expires).await.map(Some),
        }
    }

    /// Removes a blob no row references any more; false if its file was
    /// not there. With S3 only the cached copy goes: the object is left for
    /// start-up cleanup's grace period, because another instance may be
    /// committing the same content right now (it found the object and will
    /// write its row without uploading again).
    pub async fn remove(&self, hash: &Sha256Hex) -> Result<bool, BlobError> {
        let (local, h) = (self.local.clone(), hash.clone());
        let removed = tokio::task::spawn_blocking(move || local.remove(&h))
            .await
            .map_err(|e| BlobError::Io(io::Error::other(e)))??;
        Ok(removed)
    }

    /// Puts a file kept outside the blob layout (a built bundle, named by
    /// its SHA-256 and `size` bytes long) in the object store, so other
    /// instances can serve it. No row references it: start-up cleanup
    /// deletes it once the grace period is over. Nothing with the local
    /// backend.
    pub async fn share(&self, path: &Path, hash: &Sha256Hex, size: u64) -> Result<(), BlobError> {
        let Some(remote) = &self.remote else {
            return Ok(());
        };
        if remote.head(hash).await?.is_some() {
            return Ok(());
        }
        let file = File::open(path)?;
        remote.upload(file, hash, size).await
    }

    /// Deletes the object itself (start-up cleanup, once its grace period
    /// is over). Nothing with the local backend.
    pub async fn delete_remote(&self, hash: &Sha256Hex) -> Result<(), BlobError> {
        match &self.remote {
            None => Ok(()),
            Some(r) => r.delete(hash).await,
        }
    }

    /// Every object in the object store (empty with the local backend).
    pub async fn list_remote(&self) -> Result<Vec<(Sha256Hex, ObjectInfo)>, BlobError> {
        match &self.remote {
            None => Ok(Vec::new()),
            Some(r) => r.list().await,
        }
    }

    /// Deletes every temporary file; returns how many there were.
    pub fn clean_tmp(&self) -> io::Result<usize> {
        self.local.clean_tmp()
    }

    /// Number of files currently in the temporary directory.
    pub fn tmp_count(&self) -> io::Result<usize> {
        self.local.tmp_count()
    }

    /// Every blob in the data directory (the cache, with S3).
    pub fn list(&self) -> io::Result<Vec<Sha256Hex>> {
        self.local.list()
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
    /// content whose hash differs (nothing is stored). With S3 the object
    /// is uploaded before this returns (skipped when the store already has
    /// it, recently written), then the temporary file becomes the cached
    /// copy; a failed upload leaves nothing.
    pub async fn commit(
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
        self.tmp.flush()?;
        let mut created = None;
        if let Some(remote) = &store.remote {
            // An object older than a quarter of the grace period is written
            // again, so start-up cleanup elsewhere (which deletes only
            // unreferenced objects older than the whole grace) cannot remove
            // it before this instance writes its row.
            let refresh = remote.config.orphan_grace / 4;
            let fresh = remote.head(&hash).await?.is_some_and(|o| {
                o.size == size && o.modified.elapsed().is_ok_and(|age| age < refresh)
            });
            if !fresh {
                let file = self.tmp.get_mut().reopen()?;
                remote.upload(file, &hash, size).await?;
            }
            created = Some(!fresh);
        }
        let (_, _, tmp) = self.tmp.finish();
        let local = store.local.clone();
        let h = hash.clone();
        let local_created = tokio::task::spawn_blocking(move || local.persist(tmp, &h))
            .await
            .map_err(io::Error::other)??;
        Ok(Committed {
            hash,
            size,
            created: created.unwrap_or(local_created),
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

    #[tokio::test]
    async fn store_dedup_mismatch_and_tmp_cleanup() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path()).unwrap();
        let a = store.put_bytes(b"hello").await.unwrap();
        assert!(a.created);
        assert_eq!(a.hash, Sha256Hex::of_bytes(b"hello"));
        assert_eq!(std::fs::read(store.path_of(&a.hash)).unwrap(), b"hello");
        let b = store.put_bytes(b"hello").await.unwrap();
        assert!(!b.created);
        assert_eq!(store.list().unwrap(), vec![a.hash.clone()]);
        assert_eq!(
            store.ensure_local(&a.hash).await.unwrap(),
            store.path_of(&a.hash)
        );

        let mut w = store.begin().unwrap();
        w.write_all(b"other").unwrap();
        let err = w.commit(&store, Some(&a.hash)).await.unwrap_err();
        assert!(matches!(err, CommitError::HashMismatch { .. }));
        assert_eq!(
            store.tmp_count().unwrap(),
            0,
            "mismatch leaves no temp file"
        );
        let other = Sha256Hex::of_bytes(b"other");
        assert!(!store.contains(&other).await.unwrap());
        assert!(matches!(
            store.ensure_local(&other).await,
            Err(BlobError::NotFound)
        ));

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

        assert!(store.remove(&a.hash).await.unwrap());
        assert!(!store.remove(&a.hash).await.unwrap());
    }
}
