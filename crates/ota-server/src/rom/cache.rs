//! Hot ROM answers: the rendered bodies of `POST /api` and the LineageOS
//! GET, kept in memory so a fleet of phones polling neither reaches the
//! database nor re-renders JSON (the key includes the download base, so
//! per-request bases stay apart).
//!
//! Entries are valid for one epoch of the server's [`VersionCache`]
//! (`crate::cache`): its epoch moves whenever anything may have changed —
//! a local publish (ROM writes clear it) or another server's write seen
//! through the catalogue generation — so a list is never stale for longer
//! than the generation poll, the same promise the package API keeps. A load
//! that started before an invalidation is not stored. The key space is
//! bounded: past [`MAX_ANSWERS`] lists the cache starts over.
//!
//! [`VersionCache`]: crate::cache::VersionCache

use bytes::Bytes;
use std::collections::HashMap;
use std::sync::RwLock;

/// Most answers held at once.
pub const MAX_ANSWERS: usize = 4096;

#[derive(Default)]
struct Inner {
    epoch: u64,
    answers: HashMap<String, Bytes>,
}

/// The cache; one per server, shared behind an `Arc`.
#[derive(Default)]
pub struct RomCache {
    inner: RwLock<Inner>,
}

impl RomCache {
    /// The answer under `key`, if it was loaded in `epoch`.
    pub fn get(&self, epoch: u64, key: &str) -> Option<Bytes> {
        let inner = self.inner.read().unwrap_or_else(|p| p.into_inner());
        if inner.epoch != epoch {
            return None;
        }
        inner.answers.get(key).cloned()
    }

    /// Stores an answer loaded in `epoch` (dropped if a later epoch was seen).
    pub fn insert(&self, epoch: u64, key: String, answer: Bytes) {
        let mut inner = self.inner.write().unwrap_or_else(|p| p.into_inner());
        if epoch < inner.epoch {
            return;
        }
        if epoch > inner.epoch || inner.answers.len() >= MAX_ANSWERS {
            inner.answers.clear();
            inner.epoch = epoch;
        }
        inner.answers.insert(key, answer);
    }

    /// Answers held now.
    pub fn len(&self) -> usize {
        self.inner
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .answers
            .len()
    }

    /// True when nothing is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epochs_and_bound() {
        let c = RomCache::default();
        let list = Bytes::from_static(b"[]");
        c.insert(1, "a".into(), list.clone());
        assert!(c.get(1, "a").is_some());
        assert!(c.get(2, "a").is_none(), "a later epoch never sees it");
        c.insert(2, "b".into(), list.clone());
        assert!(c.get(2, "a").is_none() && c.get(2, "b").is_some());
        c.insert(1, "late".into(), list.clone());
        assert!(c.get(1, "late").is_none() && c.get(2, "late").is_none());
        for i in 0..MAX_ANSWERS + 10 {
            c.insert(2, format!("k{i}"), list.clone());
        }
        assert!(c.len() <= MAX_ANSWERS);
    }
}
