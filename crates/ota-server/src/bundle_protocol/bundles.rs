//! Bundles built from stored packs, kept on disk so a repeated or resumed
//! download costs a file read.
//!
//! A bundle is named by its own SHA-256 (its `ETag`) and indexed by the
//! packs it holds: the same path gives the same bundle, and new packs give
//! a new one. Building is single-flight per path. The directory is cleared
//! at start and bounded in bytes (oldest bundles go first).
//!
//! With an object store, the packs are fetched into the blob cache first
//! (`ensure_local`), and each built bundle is also put in the store in the
//! background (`BlobStore::share`), so a download resumed through another
//! instance finds it; no row references it, so start-up cleanup removes it
//! once the store's grace period is over.

use crate::packs::maps::PackRef;
use anyhow::Context;
use ota_bundle::bundle::{write_bundle, Hop};
use ota_core::Sha256Hex;
use ota_store::BlobStore;
use sha2::{Digest, Sha256};
use std::collections::{HashMap, VecDeque};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// A bundle on disk.
#[derive(Clone, Debug)]
pub struct Bundle {
    /// Its SHA-256 (file name and ETag).
    pub sha256: String,
    /// Its size.
    pub size: u64,
    /// Where it is.
    pub path: PathBuf,
}

/// The bundle cache.
#[derive(Debug)]
pub struct BundleCache {
    dir: PathBuf,
    budget: u64,
    inner: Mutex<Inner>,
    building: tokio::sync::Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

#[derive(Debug, Default)]
struct Inner {
    by_key: HashMap<String, Bundle>,
    by_sha: HashMap<String, Bundle>,
    order: VecDeque<String>,
    bytes: u64,
}

impl BundleCache {
    /// A cache in `dir` (emptied) holding up to `budget` bytes.
    pub fn new(dir: PathBuf, budget: u64) -> anyhow::Result<Self> {
        if dir.exists() {
            std::fs::remove_dir_all(&dir).with_context(|| format!("clearing {}", dir.display()))?;
        }
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(BundleCache {
            dir,
            budget,
            inner: Mutex::new(Inner::default()),
            building: tokio::sync::Mutex::new(HashMap::new()),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A cached bundle by its SHA-256.
    pub fn by_sha(&self, sha: &str) -> Option<Bundle> {
        self.lock().by_sha.get(sha).cloned()
    }

    /// The bundle of `packs` (in order), built if needed.
    pub async fn get_or_build(
        &self,
        blobs: &BlobStore,
        packs: &[PackRef],
    ) -> anyhow::Result<Bundle> {
        let key = cache_key(packs);
        if let Some(b) = self.lock().by_key.get(&key) {
            return Ok(b.clone());
        }
        let gate = {
            let mut building = self.building.lock().await;
            building.entry(key.clone()).or_default().clone()
        };
        let _building = gate.lock().await;
        if let Some(b) = self.lock().by_key.get(&key) {
            return Ok(b.clone());
        }
        let built = self.build_from(blobs, packs).await;
        if let Ok(bundle) = &built {
            self.insert(key.clone(), bundle.clone());
            if blobs.is_remote() {
                let (blobs, b) = (blobs.clone(), bundle.clone());
                tokio::spawn(async move {
                    let Ok(hash) = Sha256Hex::parse(&b.sha256) else {
                        return;
                    };
                    if let Err(e) = blobs.share(&b.path, &hash, b.size).await {
                        tracing::warn!("putting bundle {hash} in the object store: {e}");
                    }
                });
            }
        }
        // Success or not, the gate is no longer needed.
        self.building.lock().await.remove(&key);
        built
    }

    /// Fetches the packs (from the object store when not cached) and
    /// writes the bundle.
    async fn build_from(&self, blobs: &BlobStore, packs: &[PackRef]) -> anyhow::Result<Bundle> {
        let mut hops: Vec<(PathBuf, String, [u8; 64])> = Vec::with_capacity(packs.len());
        for p in packs {
            let path = blobs
                .ensure_local(&p.sha256)
                .await
                .with_context(|| format!("fetching pack {}", p.sha256))?;
            hops.push((path, p.target_digest.clone(), p.signature));
        }
        let dir = self.dir.clone();
        tokio::task::spawn_blocking(move || build(&dir, &hops))
            .await
            .context("building a bundle")
            .and_then(|r| r)
    }

    fn insert(&self, key: String, bundle: Bundle) {
        let mut inner = self.lock();
        inner.bytes += bundle.size;
        inner.by_sha.insert(bundle.sha256.clone(), bundle.clone());
        inner.by_key.insert(key.clone(), bundle);
        inner.order.push_back(key);
        while inner.bytes > self.budget && inner.order.len() > 1 {
            let Some(old) = inner.order.pop_front() else {
                break;
            };
            if let Some(b) = inner.by_key.remove(&old) {
                inner.bytes -= b.size;
                // Another path may have produced the same bytes.
                if !inner.by_key.values().any(|o| o.sha256 == b.sha256) {
                    inner.by_sha.remove(&b.sha256);
                    // An open download keeps its file alive after the unlink.
                    let _ = std::fs::remove_file(&b.path);
                }
            }
        }
    }
}

fn cache_key(packs: &[PackRef]) -> String {
    let mut h = Sha256::new();
    for p in packs {
        h.update(p.sha256.as_str());
        h.update(b"|");
        h.update(&p.target_digest);
        h.update(b"\n");
    }
    hex::encode(h.finalize())
}

struct Hashing<W: Write> {
    inner: W,
    hash: Sha256,
    len: u64,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

fn build(dir: &Path, hops: &[(PathBuf, String, [u8; 64])]) -> anyhow::Result<Bundle> {
    let tmp = tempfile::NamedTempFile::new_in(dir).context("creating a bundle file")?;
    let out = Hashing {
        inner: std::io::BufWriter::with_capacity(1 << 20, tmp.reopen()?),
        hash: Sha256::new(),
        len: 0,
    };
    let list: Vec<Hop<'_>> = hops
        .iter()
        .map(|(pack, hash, signature)| Hop {
            pack,
            hash,
            signature,
        })
        .collect();
    let out = write_bundle(&list, out)?;
    let sha = Sha256Hex::from_hasher(out.hash).to_string();
    let size = out.len;
    out.inner
        .into_inner()
        .map_err(|e| e.into_error())
        .context("writing a bundle")?;
    let path = dir.join(format!("{sha}.tar.gz"));
    tmp.persist(&path).context("storing a bundle")?;
    Ok(Bundle {
        sha256: sha,
        size,
        path,
    })
}
