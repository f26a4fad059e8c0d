//! The agent's state directory: one lock (one agent per directory), the
//! status `ota agent status` prints, downloads in progress, install
//! journals, and reports not yet delivered.
//!
//! ```text
//! STATE/lock                      flock held while the agent runs
//! STATE/status.json               per package: phase, target, bytes, last result and error
//! STATE/downloads/<pkg>-<sha>.part  a download in progress (+ .json: URL, validator)
//! STATE/journal/<pkg>.json        an install between staging and commit
//! STATE/outbox/<n>.json           reports waiting to be delivered
//! ```

use crate::fsutil::{private_dir, write_atomic};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

/// Reports kept undelivered at most (the oldest go first).
pub const OUTBOX_MAX: usize = 200;

/// What one package is doing, as `ota agent status` shows it.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct PackageStatus {
    /// `idle`, `downloading`, `installing`.
    pub phase: String,
    /// The version being installed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// Bytes downloaded so far (of `total`, when known).
    #[serde(default)]
    pub bytes: u64,
    /// Size of the download.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total: Option<u64>,
    /// Result of the last attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_result: Option<String>,
    /// The last error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// Unix time of the last check.
    #[serde(default)]
    pub last_check: u64,
    /// Failed install attempts per target (`version sha256`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub failures: BTreeMap<String, u32>,
}

/// The whole status file.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Status {
    /// Per package.
    #[serde(default)]
    pub packages: BTreeMap<String, PackageStatus>,
    /// Unix time of the last report delivered (or heartbeat).
    #[serde(default)]
    pub last_report: u64,
}

/// The state directory.
#[derive(Clone, Debug)]
pub struct StateDir {
    root: PathBuf,
}

/// The exclusive lock on a state directory; released when dropped.
#[derive(Debug)]
pub struct StateLock {
    _file: fs::File,
}

impl StateDir {
    /// Opens (creating, mode 0700) a state directory.
    pub fn open(root: &Path) -> io::Result<StateDir> {
        private_dir(root)?;
        for sub in ["downloads", "journal", "outbox"] {
            private_dir(&root.join(sub))?;
        }
        Ok(StateDir {
            root: root.to_owned(),
        })
    }

    /// Opens a state directory for reading only (it may not exist).
    pub fn at(root: &Path) -> StateDir {
        StateDir {
            root: root.to_owned(),
        }
    }

    /// The directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Takes the agent lock; fails at once when another agent holds it.
    pub fn lock(&self) -> io::Result<StateLock> {
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(self.root.join("lock"))?;
        rustix::fs::flock(
            file.as_fd(),
            rustix::fs::FlockOperation::NonBlockingLockExclusive,
        )
        .map_err(|_| {
            io::Error::other(format!(
                "another agent is running on {} (its lock is held)",
                self.root.display()
            ))
        })?;
        Ok(StateLock { _file: file })
    }

    /// The status (empty when there is none yet or it is unreadable).
    pub fn status(&self) -> Status {
        fs::read(self.root.join("status.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    /// Writes the status atomically.
    pub fn save_status(&self, status: &Status) -> io::Result<()> {
        let bytes = serde_json::to_vec_pretty(status).map_err(io::Error::other)?;
        write_atomic(&self.root.join("status.json"), &bytes)
    }

    /// Where a download of `sha256` for `package` is kept.
    pub fn download_path(&self, package: &str, sha256: &str) -> PathBuf {
        self.root
            .join("downloads")
            .join(format!("{package}-{sha256}.part"))
    }

    /// Removes a package's downloads except those of `keep` (a SHA-256).
    pub fn prune_downloads(&self, package: &str, keep: Option<&str>) -> io::Result<()> {
        let prefix = format!("{package}-");
        for e in fs::read_dir(self.root.join("downloads"))? {
            let e = e?;
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(rest) = name.strip_prefix(&prefix) else {
                continue;
            };
            // `<pkg>-<64 hex>.…` only: another package's name may start
            // with this one's.
            let sha = rest.get(..64).unwrap_or_default();
            if sha.len() != 64 || !sha.bytes().all(|b| b.is_ascii_hexdigit()) {
                continue;
            }
            if keep != Some(sha) {
                fs::remove_file(e.path())?;
            }
        }
        Ok(())
    }

    /// The install journal of a package.
    pub fn journal_path(&self, package: &str) -> PathBuf {
        self.root.join("journal").join(format!("{package}.json"))
    }

    /// Every journal file.
    pub fn journals(&self) -> io::Result<Vec<PathBuf>> {
        let mut out: Vec<PathBuf> = fs::read_dir(self.root.join("journal"))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect();
        out.sort();
        Ok(out)
    }

    /// Queues a report for delivery; the oldest are dropped past [`OUTBOX_MAX`].
    pub fn queue_report(&self, report: &serde_json::Value) -> io::Result<()> {
        let dir = self.root.join("outbox");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let bytes = serde_json::to_vec(report).map_err(io::Error::other)?;
        write_atomic(&dir.join(format!("{now:032}.json")), &bytes)?;
        let queued = self.queued_reports()?;
        for old in queued.iter().take(queued.len().saturating_sub(OUTBOX_MAX)) {
            fs::remove_file(old)?;
        }
        Ok(())
    }

    /// Queued reports, oldest first.
    pub fn queued_reports(&self) -> io::Result<Vec<PathBuf>> {
        let mut out: Vec<PathBuf> = fs::read_dir(self.root.join("outbox"))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.extension().is_some_and(|x| x == "json")
                    && !p
                        .file_name()
                        .is_some_and(|n| n.to_string_lossy().starts_with('.'))
            })
            .collect();
        out.sort();
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_is_exclusive_and_outbox_bounded() {
        let d = tempfile::tempdir().unwrap();
        let s = StateDir::open(&d.path().join("state")).unwrap();
        let l = s.lock().unwrap();
        assert!(s.lock().unwrap_err().to_string().contains("another agent"));
        drop(l);
        s.lock().unwrap();
        for i in 0..(OUTBOX_MAX + 3) {
            s.queue_report(&serde_json::json!({ "n": i })).unwrap();
        }
        let q = s.queued_reports().unwrap();
        assert_eq!(q.len(), OUTBOX_MAX);
        let first: serde_json::Value = serde_json::from_slice(&fs::read(&q[0]).unwrap()).unwrap();
        assert_eq!(first["n"], 3);
    }

    #[test]
    fn prune_keeps_only_the_current_download() {
        let d = tempfile::tempdir().unwrap();
        let s = StateDir::open(d.path()).unwrap();
        let (a, b) = ("a".repeat(64), "b".repeat(64));
        let keep = s.download_path("app", &a);
        for p in [
            &keep,
            &s.download_path("app", &b),
            &s.download_path("app-extra", &b),
        ] {
            fs::write(p, "x").unwrap();
        }
        fs::write(keep.with_extension("part.json"), "{}").unwrap();
        s.prune_downloads("app", Some(&a)).unwrap();
        assert!(keep.exists() && keep.with_extension("part.json").exists());
        assert!(!s.download_path("app", &b).exists());
        assert!(s.download_path("app-extra", &b).exists());
    }
}
