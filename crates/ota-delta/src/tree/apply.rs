//! Applying a tree patch: to a new directory (stage, then rename), or in
//! place under a journal (`<dir>.ota-journal`: `staged` → `swapped`) that
//! [`recover_in_place`] reads to roll back or finish after a crash. Every
//! name beside the tree (`.ota-stage`, `.ota-old`, the journal and its
//! temporary) is handled through a handle on the parent directory and is
//! never followed: a symlink planted there is removed or refused, never
//! written through.

use super::build::build;
use super::scan::{self, scan};
use super::{check_modes, io, read_head, Applied, ApplyOptions, Manifest};
use crate::dirfd::{self, Dir};
use crate::error::{DeltaError, Result};
use crate::format::Header;
use std::ffi::{OsStr, OsString};
use std::fs;
use std::io::{BufReader, Read};
use std::path::Path;

/// Journal states of an in-place update.
const JOURNAL_STAGED: &str = "staged";
const JOURNAL_SWAPPED: &str = "swapped";

fn suffixed(name: &OsStr, suffix: &str) -> OsString {
    let mut n = name.to_os_string();
    n.push(suffix);
    n
}

/// The directory holding `path`, `path`'s name, and the names of the
/// stage, backup and journal beside it.
struct Beside {
    parent: Dir,
    name: OsString,
    stage: OsString,
    backup: OsString,
    journal: OsString,
}

impl Beside {
    fn of(path: &Path) -> Result<Beside> {
        let (parent, name) = Dir::parent_of(path)
            .map_err(io(format!("opening the directory of {}", path.display())))?;
        Ok(Beside {
            stage: suffixed(&name, ".ota-stage"),
            backup: suffixed(&name, ".ota-old"),
            journal: suffixed(&name, ".ota-journal"),
            parent,
            name,
        })
    }

    fn shown(&self, name: &OsStr) -> String {
        self.parent.path().join(name).display().to_string()
    }

    /// Removes `name` beside the tree (never following it).
    fn remove(&self, name: &OsStr) -> Result<bool> {
        self.parent
            .remove_all(name)
            .map_err(io(format!("removing {}", self.shown(name))))
    }

    /// Creates the stage, fills it with `fill`, and removes it on error.
    fn staged(&self, fill: impl FnOnce(&Dir) -> Result<()>) -> Result<()> {
        self.remove(&self.stage)?;
        let shown = self.shown(&self.stage);
        self.parent
            .create_dir(&self.stage, 0o700)
            .map_err(io(format!("creating {shown}")))?;
        let r = self
            .parent
            .open_dir(&self.stage)
            .map_err(io(format!("opening {shown}")))
            .and_then(|stage| fill(&stage));
        if r.is_err() {
            let _ = self.parent.remove_all(&self.stage);
        }
        r
    }

    /// The journal's state, or None when there is none. A journal that is
    /// not a regular file (a planted symlink) is refused, not followed.
    fn read_journal(&self) -> Result<Option<String>> {
        let shown = self.shown(&self.journal);
        let f = match self.parent.open_file(&self.journal) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                let why = if dirfd::is_link_refusal(&e) {
                    "refused journal: a symlink, not a file we wrote".to_owned()
                } else {
                    format!("unreadable journal ({e})")
                };
                return Err(DeltaError::Path {
                    path: shown.into(),
                    why,
                });
            }
        };
        let mut s = String::new();
        f.take(64)
            .read_to_string(&mut s)
            .map_err(io(format!("reading {shown}")))?;
        Ok(Some(s))
    }

    /// Writes the journal: a temporary with a random name, synced, renamed
    /// over the journal, directory synced.
    /// Removes journal temporaries a kill left between their creation and
    /// their rename (regular files named `<journal>.tmp-…`; nothing else).
    fn remove_journal_temporaries(&self) -> Result<()> {
        let prefix = format!("{}.tmp-", self.journal.to_string_lossy());
        let entries = self
            .parent
            .entries()
            .map_err(io(format!("listing {}", self.parent.path().display())))?;
        for (name, kind) in entries {
            if kind.is_file() && name.to_string_lossy().starts_with(&prefix) {
                self.parent
                    .remove_file(&name)
                    .map_err(io(format!("removing {}", self.shown(&name))))?;
            }
        }
        Ok(())
    }

    fn write_journal(&self, state: &str) -> Result<()> {
        let shown = self.shown(&self.journal);
        let prefix = format!("{}.tmp-", self.journal.to_string_lossy());
        let mut tmp = self
            .parent
            .temp_file(&prefix)
            .map_err(io(format!("creating a temporary beside {shown}")))?;
        std::io::Write::write_all(&mut tmp, state.as_bytes())
            .map_err(io(format!("writing {shown}")))?;
        tmp.persist(&self.journal, true)
            .map_err(io(format!("writing {shown}")))
    }
}

/// Opens and checks the head of a tree patch; returns the reader at the
/// delta body.
fn open_patch(patch: &Path) -> Result<(Manifest, Header, BufReader<fs::File>)> {
    let f = fs::File::open(patch).map_err(io(format!("opening {}", patch.display())))?;
    let mut r = BufReader::with_capacity(1 << 20, f);
    let (m, header) = read_head(&mut r)?;
    Ok((m, header, r))
}

fn open_tree(path: &Path) -> Result<Dir> {
    Dir::open(path).map_err(|e| {
        if dirfd::is_link_refusal(&e) {
            DeltaError::Path {
                path: path.into(),
                why: "not a directory (a symlink to one is not followed)".into(),
            }
        } else {
            DeltaError::io(format!("opening {}", path.display()), e)
        }
    })
}

fn wrong_tree(path: &Path, m: &Manifest, (kept, digest): (u64, String)) -> DeltaError {
    DeltaError::WrongSource {
        what: format!("the old tree {} (its unchanged part)", path.display()),
        expected: format!("{} with {} entries", m.kept_sha256, m.kept),
        actual: format!("{digest} with {kept} entries"),
    }
}

/// Applies a tree patch to `old`, creating `out` (which must not exist).
/// OLD is never modified; on any error `out` is not created. Entries with
/// setuid/setgid modes are refused ([`patch_tree_with`] can allow them).
pub fn patch_tree(old: &Path, patch: &Path, out: &Path) -> Result<()> {
    patch_tree_with(old, patch, out, &ApplyOptions::default())
}

/// [`patch_tree`] with options.
pub fn patch_tree_with(old: &Path, patch: &Path, out: &Path, opts: &ApplyOptions) -> Result<()> {
    let b = Beside::of(out)?;
    let exists = b
        .parent
        .exists(&b.name)
        .map_err(io(format!("reading {}", out.display())))?;
    if exists {
        return Err(DeltaError::Path {
            path: out.into(),
            why: "already exists; choose a new output directory".into(),
        });
    }
    let (m, header, body) = open_patch(patch)?;
    check_modes(&m, opts)?;
    let old_dir = open_tree(old)?;
    let tree = scan(&old_dir)?;
    scan::kept_matches(&tree, &m).map_err(|k| wrong_tree(old, &m, k))?;
    b.staged(|stage| build(&old_dir, &tree, &m, &header, body, stage, false))?;
    if let Err(e) = b.parent.rename_noreplace(&b.stage, &b.parent, &b.name) {
        let _ = b.parent.remove_all(&b.stage);
        return Err(DeltaError::io(
            format!("renaming into {}", out.display()),
            e,
        ));
    }
    let _ = b.parent.sync();
    Ok(())
}

/// Finishes or undoes an in-place update that was interrupted, going by
/// its journal. Returns true when there was something to recover.
pub fn recover_in_place(dir: &Path) -> Result<bool> {
    let b = Beside::of(dir)?;
    b.remove_journal_temporaries()?;
    let Some(state) = b.read_journal()? else {
        // No journal: at most a stage from a build that never finished.
        return b.remove(&b.stage);
    };
    match state.trim() {
        // Staged but not swapped: OLD is intact (or its rename is undone).
        JOURNAL_STAGED => {
            let there = |n: &OsStr, what: &str| b.parent.exists(n).map_err(io(what.to_owned()));
            let (tree, backup, stage) = (
                there(&b.name, "reading the tree")?,
                there(&b.backup, "reading the backup")?,
                there(&b.stage, "reading the stage")?,
            );
            if !tree && backup {
                b.parent
                    .rename_noreplace(&b.backup, &b.parent, &b.name)
                    .map_err(io("restoring the old tree"))?;
            } else if tree && backup && !stage {
                // Killed after the swap, before "swapped" was recorded: the
                // stage is in place, so this is the swapped case.
                b.remove(&b.backup)?;
            }
            b.remove(&b.stage)?;
        }
        // Swapped: NEW is in place; only the backup remains to remove.
        JOURNAL_SWAPPED => {
            b.remove(&b.backup)?;
        }
        other => {
            return Err(DeltaError::corrupt(format!(
                "unknown journal state {other:?}"
            )))
        }
    }
    b.parent
        .remove_file(&b.journal)
        .map_err(io("removing the journal"))?;
    let _ = b.parent.sync();
    Ok(true)
}

/// Applies a tree patch to `dir` itself, refusing setuid/setgid entries;
/// see [`patch_tree_in_place_with`].
pub fn patch_tree_in_place(dir: &Path, patch: &Path) -> Result<Applied> {
    patch_tree_in_place_with(dir, patch, &ApplyOptions::default())
}

/// Applies a tree patch to `dir` itself. NEW is built and verified beside
/// it (unchanged files hard-linked), then swapped in with two renames under
/// a journal; [`recover_in_place`] (run first, automatically) completes or
/// rolls back a swap a crash interrupted. On error `dir` is left as it was.
/// A `dir` that already is the patch's target is left alone and reported
/// as [`Applied::AlreadyUpToDate`], so a caller can safely retry.
pub fn patch_tree_in_place_with(dir: &Path, patch: &Path, opts: &ApplyOptions) -> Result<Applied> {
    recover_in_place(dir)?;
    let b = Beside::of(dir)?;
    b.remove(&b.backup)?;
    let (m, header, body) = open_patch(patch)?;
    check_modes(&m, opts)?;
    let old_dir = open_tree(dir)?;
    let tree = scan(&old_dir)?;
    if scan::is_target(&tree, &m) {
        return Ok(Applied::AlreadyUpToDate);
    }
    scan::kept_matches(&tree, &m).map_err(|k| wrong_tree(dir, &m, k))?;
    b.staged(|stage| build(&old_dir, &tree, &m, &header, body, stage, true))?;
    if let Err(e) = b.write_journal(JOURNAL_STAGED) {
        let _ = b.parent.remove_all(&b.stage);
        let _ = b.parent.remove_file(&b.journal);
        return Err(e);
    }
    b.parent
        .rename_noreplace(&b.name, &b.parent, &b.backup)
        .map_err(io("moving the old tree aside"))?;
    if let Err(e) = b.parent.rename_noreplace(&b.stage, &b.parent, &b.name) {
        let _ = b.parent.rename_noreplace(&b.backup, &b.parent, &b.name);
        return Err(DeltaError::io("moving the new tree into place", e));
    }
    b.write_journal(JOURNAL_SWAPPED)?;
    recover_in_place(dir)?;
    Ok(Applied::Updated)
}
