//! In-memory answers for `/maxVersion` and `/getVersion`.
//!
//! Keyed by package then branch; each entry holds the serialised content.json
//! of every version and of the newest one, ready to send. A miss loads the
//! branch from the catalogue. Invalidation bumps an epoch, and a load that
//! started before an invalidation does not store its (possibly stale) result.

use bytes::Bytes;
use ota_store::Entry;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

/// Branch entries kept before the cache is emptied (bounds memory against
/// requests for many distinct unknown names).
pub const MAX_BRANCHES: usize = 20_000;

/// The answers for one package branch.
#[derive(Debug, Default)]
pub struct BranchView {
    /// content.json of the newest version.
    pub max: Option<Bytes>,
    /// content.json by version text.
    pub by_version: HashMap<String, Bytes>,
}

impl BranchView {
    /// Builds a view from entries sorted oldest first.
    pub fn from_sorted(entries: Vec<Entry>) -> Self {
        let max = entries.last().map(|e| Bytes::from(e.content.clone()));
        let by_version = entries
            .into_iter()
            .map(|e| (e.version, Bytes::from(e.content)))
            .collect();
        BranchView { max, by_version }
    }
}

#[derive(Default)]
struct Inner {
    epoch: u64,
    len: usize,
    packages: HashMap<String, HashMap<String, Arc<BranchView>>>,
}

/// The cache; share it behind an `Arc`.
#[derive(Default)]
pub struct VersionCache {
    inner: RwLock<Inner>,
}

impl VersionCache {
    /// The cached view, or `None` on a miss; also returns the epoch to pass
    /// to [`VersionCache::insert`] after loading.
    pub fn get(&self, package: &str, branch: &str) -> (Option<Arc<BranchView>>, u64) {
        let inner = self.inner.read().unwrap_or_else(|p| p.into_inner());
        let view = inner
            .packages
            .get(package)
            .and_then(|b| b.get(branch))
            .cloned();
        (view, inner.epoch)
    }

    /// Stores a view loaded when the epoch was `epoch`, unless invalidated since.
    pub fn insert(&self, package: &str, branch: &str, epoch: u64, view: Arc<BranchView>) {
        let mut inner = self.inner.write().unwrap_or_else(|p| p.into_inner());
        if inner.epoch != epoch {
            return;
        }
        if inner.len >= MAX_BRANCHES {
            inner.packages.clear();
            inner.len = 0;
        }
        let branches = inner.packages.entry(package.to_owned()).or_default();
        if branches.insert(branch.to_owned(), view).is_none() {
            inner.len += 1;
        }
    }

    /// Drops one branch (after a local publish or delete).
    pub fn invalidate(&self, package: &str, branch: &str) {
        let mut inner = self.inner.write().unwrap_or_else(|p| p.into_inner());
        inner.epoch += 1;
        let removed = inner
            .packages
            .get_mut(package)
            .and_then(|b| b.remove(branch))
            .is_some();
        if removed {
            inner.len -= 1;
        }
    }

    /// Drops everything (another server changed the catalogue).
    pub fn clear(&self) {
        let mut inner = self.inner.write().unwrap_or_else(|p| p.into_inner());
        inner.epoch += 1;
        inner.packages.clear();
        inner.len = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_load_is_not_stored() {
        let c = VersionCache::default();
        let (miss, epoch) = c.get("a", "main");
        assert!(miss.is_none());
        c.invalidate("a", "main"); // a publish lands while we load
        c.insert("a", "main", epoch, Arc::new(BranchView::default()));
        assert!(c.get("a", "main").0.is_none());
        let (_, epoch) = c.get("a", "main");
        c.insert("a", "main", epoch, Arc::new(BranchView::default()));
        assert!(c.get("a", "main").0.is_some());
        c.clear();
        assert!(c.get("a", "main").0.is_none());
    }

    #[test]
    fn bounded() {
        let c = VersionCache::default();
        for i in 0..MAX_BRANCHES + 5 {
            let (_, e) = c.get("p", &i.to_string());
            c.insert("p", &i.to_string(), e, Arc::new(BranchView::default()));
        }
        assert!(c.inner.read().unwrap().len <= MAX_BRANCHES);
    }
}
