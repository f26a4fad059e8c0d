//! In-memory answers for the hot reads (`/maxVersion`, `/getVersion`, the
//! JSON API's version lists and the package list).
//!
//! Keyed by package then branch; each entry holds the branch's entries in
//! version order and every version's answer, ready to send. A miss loads
//! the branch from the catalogue. Invalidation bumps an epoch, and a load
//! that started before an invalidation does not store its (possibly stale)
//! result.
//!
//! Memory is bounded: at most [`MAX_BRANCHES`] branches with versions and
//! [`MAX_MISSES`] names without any are kept, each set on its own, so a
//! flood of unknown names churns only the second set and never evicts the
//! answers devices actually need (and names absent from the cached package
//! list are answered without a database query at all, see
//! `AppState::branch_view`). When a set is full, one entry goes: the
//! least recently used of a few sampled at random (as Redis approximates
//! LRU), so a hit costs a read lock and one atomic store, and an eviction
//! costs O(1).

use crate::render::{Answer, DownloadBase};
use ota_core::signing::SecretKey;
use ota_store::{Entry, PackageSummary};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

/// Branches with versions kept at most.
pub const MAX_BRANCHES: usize = 20_000;
/// Unknown package/branch names remembered at most.
pub const MAX_MISSES: usize = 4_096;
/// Entries sampled to choose one to evict.
const SAMPLES: usize = 8;

/// The answers for one package branch.
#[derive(Debug, Default)]
pub struct BranchView {
    /// Every version, lowest first.
    pub entries: Vec<Entry>,
    /// The answer for the newest version.
    pub max: Option<Answer>,
    /// Answers by version text.
    pub by_version: HashMap<String, Answer>,
}

impl BranchView {
    /// Builds a view from entries sorted lowest version first.
    pub fn from_sorted(entries: Vec<Entry>, base: &DownloadBase, key: &SecretKey) -> Self {
        let by_version: HashMap<String, Answer> = entries
            .iter()
            .map(|e| {
                let answer = Answer::new(&e.content, &e.sha256, base, key);
                (e.version.clone(), answer)
            })
            .collect();
        let max = entries
            .last()
            .and_then(|e| by_version.get(&e.version))
            .cloned();
        BranchView {
            entries,
            max,
            by_version,
        }
    }

    /// True when the branch has no versions.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

struct Slot {
    package: String,
    branch: String,
    view: Arc<BranchView>,
    last_used: AtomicU64,
}

/// One bounded set of branch views with sampled-LRU eviction.
struct Lru {
    capacity: usize,
    slots: Vec<Slot>,
    index: HashMap<String, HashMap<String, usize>>,
}

impl Lru {
    fn new(capacity: usize) -> Self {
        Lru {
            capacity,
            slots: Vec::new(),
            index: HashMap::new(),
        }
    }

    fn get(&self, package: &str, branch: &str, now: u64) -> Option<Arc<BranchView>> {
        let i = *self.index.get(package)?.get(branch)?;
        let slot = &self.slots[i];
        // Written only when the clock moved (it moves on inserts), so hot
        // entries read by every core do not bounce a cache line on each hit.
        if slot.last_used.load(Ordering::Relaxed) != now {
            slot.last_used.store(now, Ordering::Relaxed);
        }
        Some(slot.view.clone())
    }

    fn insert(&mut self, package: &str, branch: &str, view: Arc<BranchView>, now: u64) {
        if let Some(&i) = self.index.get(package).and_then(|b| b.get(branch)) {
            self.slots[i].view = view;
            self.slots[i].last_used.store(now, Ordering::Relaxed);
            return;
        }
        if self.slots.len() >= self.capacity {
            self.evict_one(now);
        }
        let i = self.slots.len();
        self.slots.push(Slot {
            package: package.to_owned(),
            branch: branch.to_owned(),
            view,
            last_used: AtomicU64::new(now),
        });
        self.index
            .entry(package.to_owned())
            .or_default()
            .insert(branch.to_owned(), i);
    }

    fn evict_one(&mut self, seed: u64) {
        if self.slots.is_empty() {
            return;
        }
        // A cheap xorshift on the clock is random enough to sample with.
        let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        let mut victim = 0;
        let mut oldest = u64::MAX;
        for _ in 0..SAMPLES.min(self.slots.len()) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let i = (x % self.slots.len() as u64) as usize;
            let t = self.slots[i].last_used.load(Ordering::Relaxed);
            if t < oldest {
                oldest = t;
                victim = i;
            }
        }
        self.remove_at(victim);
    }

    fn remove(&mut self, package: &str, branch: &str) {
        if let Some(&i) = self.index.get(package).and_then(|b| b.get(branch)) {
            self.remove_at(i);
        }
    }

    fn remove_at(&mut self, i: usize) {
        let gone = self.slots.swap_remove(i);
        if let Some(branches) = self.index.get_mut(&gone.package) {
            branches.remove(&gone.branch);
            if branches.is_empty() {
                self.index.remove(&gone.package);
            }
        }
        if let Some(moved) = self.slots.get(i) {
            if let Some(slot) = self
                .index
                .get_mut(&moved.package)
                .and_then(|b| b.get_mut(&moved.branch))
            {
                *slot = i;
            }
        }
    }

    fn clear(&mut self) {
        self.slots.clear();
        self.index.clear();
    }

    fn len(&self) -> usize {
        self.slots.len()
    }
}

struct Inner {
    epoch: u64,
    hits: Lru,
    misses: Lru,
    packages: Option<Arc<Vec<PackageSummary>>>,
}

/// The cache; share it behind an `Arc`.
pub struct VersionCache {
    inner: RwLock<Inner>,
    clock: AtomicU64,
    lookup_hits: AtomicU64,
    lookup_misses: AtomicU64,
}

impl Default for VersionCache {
    fn default() -> Self {
        Self::with_capacity(MAX_BRANCHES, MAX_MISSES)
    }
}

impl VersionCache {
    /// A cache holding at most `branches` known and `misses` unknown branches.
    pub fn with_capacity(branches: usize, misses: usize) -> Self {
        VersionCache {
            inner: RwLock::new(Inner {
                epoch: 0,
                hits: Lru::new(branches.max(1)),
                misses: Lru::new(misses.max(1)),
                packages: None,
            }),
            clock: AtomicU64::new(1),
            lookup_hits: AtomicU64::new(0),
            lookup_misses: AtomicU64::new(0),
        }
    }

    /// Advances the clock (on inserts: recency only needs to order entries
    /// against the insertions that may evict them).
    fn tick(&self) -> u64 {
        self.clock.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// The cached view, or `None` on a miss; also returns the epoch to pass
    /// to [`VersionCache::insert`] after loading.
    pub fn get(&self, package: &str, branch: &str) -> (Option<Arc<BranchView>>, u64) {
        let now = self.clock.load(Ordering::Relaxed);
        let inner = self.inner.read().unwrap_or_else(|p| p.into_inner());
        let view = inner
            .hits
            .get(package, branch, now)
            .or_else(|| inner.misses.get(package, branch, now));
        let counter = if view.is_some() {
            &self.lookup_hits
        } else {
            &self.lookup_misses
        };
        counter.fetch_add(1, Ordering::Relaxed);
        (view, inner.epoch)
    }

    /// Lookups answered from the cache, and lookups that missed, so far.
    pub fn lookups(&self) -> (u64, u64) {
        (
            self.lookup_hits.load(Ordering::Relaxed),
            self.lookup_misses.load(Ordering::Relaxed),
        )
    }

    /// Stores a view loaded when the epoch was `epoch`, unless invalidated since.
    pub fn insert(&self, package: &str, branch: &str, epoch: u64, view: Arc<BranchView>) {
        let now = self.tick();
        let mut inner = self.inner.write().unwrap_or_else(|p| p.into_inner());
        if inner.epoch != epoch {
            return;
        }
        if view.is_empty() {
            inner.misses.insert(package, branch, view, now);
        } else {
            inner.hits.insert(package, branch, view, now);
        }
    }

    /// The package list, if cached, and the epoch for [`VersionCache::set_packages`].
    pub fn packages(&self) -> (Option<Arc<Vec<PackageSummary>>>, u64) {
        let inner = self.inner.read().unwrap_or_else(|p| p.into_inner());
        (inner.packages.clone(), inner.epoch)
    }

    /// Stores the package list loaded at `epoch`, unless invalidated since.
    pub fn set_packages(&self, epoch: u64, packages: Arc<Vec<PackageSummary>>) {
        let mut inner = self.inner.write().unwrap_or_else(|p| p.into_inner());
        if inner.epoch == epoch {
            inner.packages = Some(packages);
        }
    }

    /// Drops one branch and the package list (after a local publish or delete).
    pub fn invalidate(&self, package: &str, branch: &str) {
        let mut inner = self.inner.write().unwrap_or_else(|p| p.into_inner());
        inner.epoch += 1;
        inner.hits.remove(package, branch);
        inner.misses.remove(package, branch);
        inner.packages = None;
    }

    /// Drops everything (another server changed the catalogue).
    pub fn clear(&self) {
        let mut inner = self.inner.write().unwrap_or_else(|p| p.into_inner());
        inner.epoch += 1;
        inner.hits.clear();
        inner.misses.clear();
        inner.packages = None;
    }

    /// (branches with versions, unknown names) held now.
    pub fn len(&self) -> (usize, usize) {
        let inner = self.inner.read().unwrap_or_else(|p| p.into_inner());
        (inner.hits.len(), inner.misses.len())
    }

    /// True when nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == (0, 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(n: usize) -> Arc<BranchView> {
        let entries = (0..n)
            .map(|i| Entry {
                id: i as i64,
                package: "p".into(),
                branch: "b".into(),
                version: i.to_string(),
                content: "{}".into(),
                sha256: "00".into(),
                size: 0,
                created_at: 0,
            })
            .collect();
        Arc::new(BranchView::from_sorted(
            entries,
            &DownloadBase::Fixed("http://h".into()),
            &SecretKey::generate(),
        ))
    }

    #[test]
    fn stale_load_is_not_stored() {
        let c = VersionCache::default();
        let (miss, epoch) = c.get("a", "main");
        assert!(miss.is_none());
        c.invalidate("a", "main"); // a publish lands while we load
        c.insert("a", "main", epoch, view(1));
        assert!(c.get("a", "main").0.is_none());
        let (_, epoch) = c.get("a", "main");
        c.insert("a", "main", epoch, view(1));
        assert!(c.get("a", "main").0.is_some());
        c.clear();
        assert!(c.get("a", "main").0.is_none());
    }

    #[test]
    fn bounded_and_recently_used_survive() {
        let c = VersionCache::with_capacity(100, 10);
        for i in 0..100 {
            let (_, e) = c.get("p", &i.to_string());
            c.insert("p", &i.to_string(), e, view(1));
        }
        // Keep branches 0..10 hot while 1,000 more arrive.
        for i in 100..1100 {
            for hot in 0..10 {
                assert!(
                    c.get("p", &hot.to_string()).0.is_some(),
                    "hot {hot} evicted at {i}"
                );
            }
            let (_, e) = c.get("p", &i.to_string());
            c.insert("p", &i.to_string(), e, view(1));
            assert!(c.len().0 <= 100);
        }
    }

    #[test]
    fn misses_never_evict_hits() {
        let c = VersionCache::with_capacity(50, 10);
        for i in 0..50 {
            let (_, e) = c.get("known", &i.to_string());
            c.insert("known", &i.to_string(), e, view(2));
        }
        for i in 0..20_000 {
            let name = format!("unknown{i}");
            let (_, e) = c.get(&name, "main");
            c.insert(&name, "main", e, view(0));
        }
        assert_eq!(c.len(), (50, 10));
        for i in 0..50 {
            assert!(c.get("known", &i.to_string()).0.is_some());
        }
    }
}
