//! Installing a version so that a crash at any moment leaves `local`
//! holding exactly the old or the new version, and the config agreeing.
//!
//! 1. **Stage** the new version in a private work directory beside
//!    `local` (`<parent>/.<name>.ota-agent/new`, same file system): a full
//!    archive is unpacked there, a full file copied there; a delta bundle
//!    is applied to a copy of `local` there (so `local` is untouched while
//!    packs apply, and a failed hook can still return to it).
//! 2. **Journal** (`STATE/journal/<pkg>.json`, synced) the identities
//!    (device, inode) of the old `local` and the staged version.
//! 3. **Switch**: one `renameat2(RENAME_EXCHANGE)` of `new` and `local`;
//!    afterwards `new` holds the previous version.
//! 4. The hooks `restore` and `AfterUpdate` run; a failure switches back.
//! 5. **Commit**: the config is rewritten with the new version (atomic
//!    rename). This is the commit point.
//! 6. The work directory and the journal are removed.
//!
//! [`recover`] runs when the agent starts, for every journal left: if the
//! config names the journal's new version, the update committed and only
//! the cleanup is finished; otherwise whatever `local` holds is put back
//! to the old version (found by its identity) and the staged files are
//! removed.

use crate::fsutil::{exchange, identity, remove_any, sync_parent};
use crate::state::StateDir;
use ota_bundle::apply::{apply_bundle, ApplyOptions};
use ota_bundle::archive::{detect, unpack, UnpackLimits};
use ota_core::signing::PublicKey;
use serde::{Deserialize, Serialize};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// The install journal of one package.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Journal {
    /// Package name.
    pub package: String,
    /// Install location.
    pub local: PathBuf,
    /// The work directory beside it.
    pub work: PathBuf,
    /// Version installed before.
    pub from: String,
    /// Version being installed.
    pub to: String,
    /// Identity of the old `local` (none on a first install).
    pub old_id: Option<(u64, u64)>,
    /// Identity of the staged new version, once staged.
    pub new_id: Option<(u64, u64)>,
}

/// Why staging failed.
#[derive(Debug, thiserror::Error)]
pub enum StageError {
    /// The bundle does not apply to what `local` holds (it is not the
    /// version the config says, or was changed): a full download can.
    #[error("the delta does not apply to {local}: {why}")]
    NotApplicable {
        /// The install location.
        local: PathBuf,
        /// Why.
        why: String,
    },
    /// Anything else (refused bundle, unpack error, disk full, …).
    #[error("{0}")]
    Failed(String),
}

fn failed(what: impl std::fmt::Display, e: impl std::fmt::Display) -> StageError {
    StageError::Failed(format!("{what}: {e}"))
}

/// The work directory of an install location.
pub fn work_dir(local: &Path) -> PathBuf {
    let name = local
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    local.with_file_name(format!(".{name}.ota-agent"))
}

fn fresh_work(local: &Path) -> Result<PathBuf, StageError> {
    if fs::symlink_metadata(local).is_ok_and(|m| m.file_type().is_symlink()) {
        return Err(StageError::Failed(format!(
            "{} is a symlink: set `local` to the path it points to (the agent replaces what it names)",
            local.display()
        )));
    }
    let work = work_dir(local);
    remove_any(&work).map_err(|e| failed(format!("clearing {}", work.display()), e))?;
    if let Some(parent) = local.parent() {
        fs::create_dir_all(parent)
            .map_err(|e| failed(format!("creating {}", parent.display()), e))?;
    }
    fs::create_dir(&work).map_err(|e| failed(format!("creating {}", work.display()), e))?;
    fs::set_permissions(&work, fs::Permissions::from_mode(0o700))
        .map_err(|e| failed(format!("securing {}", work.display()), e))?;
    Ok(work)
}

/// Stages a full package: an archive is unpacked when `local` is (or will
/// be) a directory; otherwise the file itself is the new `local`.
pub fn stage_full(download: &Path, local: &Path) -> Result<PathBuf, StageError> {
    let work = fresh_work(local)?;
    let new = work.join("new");
    let local_meta = fs::symlink_metadata(local).ok();
    let kind = detect(download).map_err(|e| failed("reading the package", e))?;
    let as_tree = match &local_meta {
        Some(m) => m.is_dir(),
        None => kind.is_some(),
    };
    if as_tree {
        let kind = kind.ok_or_else(|| {
            StageError::Failed(format!(
                "{} is a directory, but the package is not a tar, tar.gz, tar.zst or zip archive",
                local.display()
            ))
        })?;
        fs::create_dir(&new).map_err(|e| failed("creating the stage", e))?;
        unpack(download, kind, &new, &UnpackLimits::default())
            .map_err(|e| failed("unpacking the package", e))?;
        let mode = local_meta
            .map(|m| m.permissions().mode() & 0o7777)
            .unwrap_or(0o755);
        fs::set_permissions(&new, fs::Permissions::from_mode(mode))
            .map_err(|e| failed("setting the stage's mode", e))?;
    } else {
        crate::fsutil::copy_tree(download, &new).map_err(|e| failed("copying the package", e))?;
        let mode = local_meta
            .map(|m| m.permissions().mode() & 0o7777)
            .unwrap_or(0o644);
        fs::set_permissions(&new, fs::Permissions::from_mode(mode))
            .map_err(|e| failed("setting the file's mode", e))?;
    }
    sync_stage(&new)?;
    Ok(new)
}

/// Makes every staged file durable before the switch: the unpacker does
/// not sync each file, and a power cut after the commit must not leave a
/// committed but empty file (one `syncfs` of the stage's file system).
fn sync_stage(new: &Path) -> Result<(), StageError> {
    let dir = new.parent().unwrap_or(new);
    let f = fs::File::open(dir).map_err(|e| failed("opening the stage", e))?;
    rustix::fs::syncfs(&f).map_err(|e| failed("syncing the stage", e))
}

/// Stages a delta: `local` is copied into the work directory and the
/// bundle (every signature and the digest chain checked first) applied to
/// the copy.
pub fn stage_delta(
    bundle: &Path,
    local: &Path,
    key: &PublicKey,
    to: &str,
) -> Result<PathBuf, StageError> {
    let work = fresh_work(local)?;
    let new = work.join("new");
    crate::fsutil::copy_tree(local, &new)
        .map_err(|e| failed(format!("copying {}", local.display()), e))?;
    let opts = ApplyOptions {
        allow_setuid: false,
        expect_to: Some(to.to_owned()),
    };
    match apply_bundle(bundle, &new, key, &opts) {
        Ok(_) => {
            sync_stage(&new)?;
            Ok(new)
        }
        Err(f) if !f.changed && f.left_at.is_none() && is_digest_mismatch(&f.error) => {
            Err(StageError::NotApplicable {
                local: local.to_owned(),
                why: f.error.to_string(),
            })
        }
        Err(f) => Err(StageError::Failed(format!(
            "applying the delta: {}",
            f.error
        ))),
    }
}

fn is_digest_mismatch(e: &ota_bundle::BundleError) -> bool {
    // Before anything is applied, a target error means the copy of
    // `local` is at none of the bundle's versions (or of the other kind).
    matches!(e, ota_bundle::BundleError::Target { .. })
}

/// Writes a journal (synced) before the switch.
pub fn begin(state: &StateDir, j: &Journal) -> std::io::Result<()> {
    let bytes = serde_json::to_vec_pretty(j).map_err(std::io::Error::other)?;
    crate::fsutil::write_atomic(&state.journal_path(&j.package), &bytes)
}

/// Puts the staged version in place: `local` then holds it, and the
/// stage path the previous version (nothing, on a first install).
pub fn switch(j: &Journal) -> std::io::Result<()> {
    let new = j.work.join("new");
    if j.old_id.is_none() {
        fs::rename(&new, &j.local)?;
        return sync_parent(&j.local);
    }
    exchange(&new, &j.local)
}

/// Returns `local` to the version with identity `want` (the old one, or
/// the new one when the config already committed it); removes the rest.
fn settle(j: &Journal, want: Option<(u64, u64)>) -> std::io::Result<()> {
    let new = j.work.join("new");
    let here = identity(&j.local)?;
    let there = identity(&new)?;
    if here != want {
        if want.is_some() && there == want {
            if here.is_some() {
                exchange(&new, &j.local)?;
            } else {
                fs::rename(&new, &j.local)?;
                sync_parent(&j.local)?;
            }
        } else if want.is_none() && here.is_some() && here == j.new_id {
            // A first install rolled back: no previous version to restore.
            remove_any(&j.local)?;
        } else if want.is_some() {
            return Err(std::io::Error::other(format!(
                "{}: neither {} nor {} holds the version to keep",
                j.package,
                j.local.display(),
                new.display()
            )));
        }
    }
    remove_any(&j.work)?;
    sync_parent(&j.work)
}

/// Switches back to the old version and removes the staged one.
pub fn roll_back(state: &StateDir, j: &Journal) -> std::io::Result<()> {
    settle(j, j.old_id)?;
    remove_journal(state, j)
}

/// Removes the previous version and the journal after the commit. The
/// config is the truth then: if `local` is gone (a crash between the two
/// renames of a first install), the staged version is put there first;
/// otherwise `local` is kept whatever its identity (a hook may have
/// replaced the file).
pub fn finish(state: &StateDir, j: &Journal) -> std::io::Result<()> {
    let new = j.work.join("new");
    if identity(&j.local)?.is_none() && identity(&new)? == j.new_id && j.new_id.is_some() {
        fs::rename(&new, &j.local)?;
        sync_parent(&j.local)?;
    }
    remove_any(&j.work)?;
    sync_parent(&j.work)?;
    remove_journal(state, j)
}

fn remove_journal(state: &StateDir, j: &Journal) -> std::io::Result<()> {
    let p = state.journal_path(&j.package);
    match fs::remove_file(&p) {
        Ok(()) => sync_parent(&p),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// What [`recover`] did for one journal.
#[derive(Debug, PartialEq, Eq)]
pub enum Recovered {
    /// The config named the new version: cleanup finished.
    Committed {
        /// Package.
        package: String,
        /// Version kept.
        version: String,
    },
    /// The update had not committed: the old version is back.
    RolledBack {
        /// Package.
        package: String,
        /// Version restored.
        version: String,
        /// Version abandoned.
        abandoned: String,
    },
}

/// Finishes or undoes every install a crash interrupted. `installed`
/// gives the config's version of a package.
pub fn recover(
    state: &StateDir,
    installed: impl Fn(&str) -> Option<String>,
) -> std::io::Result<Vec<Recovered>> {
    let mut out = Vec::new();
    for path in state.journals()? {
        let j: Journal = match fs::read(&path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
        {
            Some(j) => j,
            None => {
                // A journal is written atomically; an unreadable one is not ours.
                tracing::warn!("ignoring unreadable journal {}", path.display());
                continue;
            }
        };
        if installed(&j.package).as_deref() == Some(j.to.as_str()) {
            if let Err(e) = finish(state, &j) {
                tracing::error!(package = j.package, "finishing a committed install: {e}");
                continue;
            }
            out.push(Recovered::Committed {
                package: j.package.clone(),
                version: j.to.clone(),
            });
        } else {
            if let Err(e) = roll_back(state, &j) {
                // Kept for the next start; the other packages go on.
                tracing::error!(
                    package = j.package,
                    "rolling back an interrupted install: {e}"
                );
                continue;
            }
            out.push(Recovered::RolledBack {
                package: j.package.clone(),
                version: j.from.clone(),
                abandoned: j.to.clone(),
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup() -> (tempfile::TempDir, StateDir, PathBuf) {
        let d = tempfile::tempdir().unwrap();
        let state = StateDir::open(&d.path().join("state")).unwrap();
        let local = d.path().join("opt/app");
        fs::create_dir_all(&local).unwrap();
        fs::write(local.join("v"), "1").unwrap();
        (d, state, local)
    }

    fn staged(local: &Path, content: &str) -> Journal {
        let work = fresh_work(local).unwrap();
        fs::create_dir(work.join("new")).unwrap();
        fs::write(work.join("new/v"), content).unwrap();
        Journal {
            package: "app".into(),
            local: local.to_owned(),
            work: work.clone(),
            from: "1".into(),
            to: "2".into(),
            old_id: identity(local).unwrap(),
            new_id: identity(&work.join("new")).unwrap(),
        }
    }

    #[test]
    fn switch_then_roll_back_or_commit() {
        let (_d, state, local) = setup();
        let j = staged(&local, "2");
        begin(&state, &j).unwrap();
        switch(&j).unwrap();
        assert_eq!(fs::read_to_string(local.join("v")).unwrap(), "2");
        roll_back(&state, &j).unwrap();
        assert_eq!(fs::read_to_string(local.join("v")).unwrap(), "1");
        assert!(!j.work.exists() && state.journals().unwrap().is_empty());

        let j = staged(&local, "2");
        begin(&state, &j).unwrap();
        switch(&j).unwrap();
        finish(&state, &j).unwrap();
        assert_eq!(fs::read_to_string(local.join("v")).unwrap(), "2");
        assert!(!j.work.exists());
    }

    #[test]
    fn recovery_at_every_step() {
        // (switched?, config committed?) → expected content of local.
        for (switched, committed, want) in
            [(false, false, "1"), (true, false, "1"), (true, true, "2")]
        {
            let (_d, state, local) = setup();
            let j = staged(&local, "2");
            begin(&state, &j).unwrap();
            if switched {
                switch(&j).unwrap();
            }
            let version = if committed { "2" } else { "1" };
            let r = recover(&state, |_| Some(version.to_owned())).unwrap();
            assert_eq!(r.len(), 1);
            assert_eq!(fs::read_to_string(local.join("v")).unwrap(), want);
            assert!(!j.work.exists() && state.journals().unwrap().is_empty());
            assert!(recover(&state, |_| None).unwrap().is_empty());
        }
    }

    #[test]
    fn a_symlinked_local_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let real = d.path().join("tool-1.4");
        fs::write(&real, b"old").unwrap();
        let local = d.path().join("tool");
        std::os::unix::fs::symlink(&real, &local).unwrap();
        let pkg = d.path().join("pkg");
        fs::write(&pkg, b"new").unwrap();
        let e = stage_full(&pkg, &local).unwrap_err().to_string();
        assert!(e.contains("is a symlink"), "{e}");
        assert_eq!(fs::read(&real).unwrap(), b"old");
    }

    #[test]
    fn first_install_and_file_packages() {
        let d = tempfile::tempdir().unwrap();
        let state = StateDir::open(&d.path().join("state")).unwrap();
        let pkg = d.path().join("pkg.bin");
        fs::write(&pkg, b"new binary").unwrap();
        let local = d.path().join("usr/bin/tool");
        let new = stage_full(&pkg, &local).unwrap();
        let j = Journal {
            package: "tool".into(),
            local: local.clone(),
            work: work_dir(&local),
            from: "0".into(),
            to: "1".into(),
            old_id: None,
            new_id: identity(&new).unwrap(),
        };
        begin(&state, &j).unwrap();
        switch(&j).unwrap();
        // Not committed: a first install rolls back to nothing.
        recover(&state, |_| Some("0".into())).unwrap();
        assert!(!local.exists() && !j.work.exists());
    }
}
