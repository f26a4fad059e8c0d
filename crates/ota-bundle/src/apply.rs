//! Verifying and applying a bundle (`data.tar.gz`) on a device.
//!
//! [`apply_bundle`] follows the bundle protocol's client rule: nothing
//! touches the target before the whole bundle is checked.
//!
//! 1. The bundle is unpacked into a private temporary directory (0700,
//!    under `$TMPDIR`): only regular members named `pack_N.tar.gz`,
//!    `pack_N_hash`, `pack_N_sig` (N from 1, no leading zeros, at most
//!    [`MAX_HOPS`]) and `apply_log`, each once, within size limits.
//! 2. `apply_log` must be exactly the protocol's: one newline-terminated
//!    line `./pack_N.tar.gz|./pack_N_hash|./pack_N_sig` per hop, N = 1..k
//!    in order, and the bundle must hold the three members of every listed
//!    hop and nothing else, so a truncated, cut or reordered log is refused.
//! 3. Every signature is verified (Ed25519 over the whole pack file) and
//!    every `pack.json` read, with each patch checked against its SHA-256.
//! 4. The chain is checked: one package and branch, one patch format, each
//!    pack starting where the one before ends (names and digests), each
//!    `pack_N_hash` equal to pack N's signed `to_digest`, and the last
//!    version the one the caller expects, if it said.
//! 5. The target is locked (an exclusive `flock` on its parent directory,
//!    so two applies never interleave), an interrupted earlier tree apply is
//!    finished or rolled back (`recover_in_place`), and the target's
//!    digest must be pack 1's `from_digest`, or the version after one of
//!    the packs: a run killed half-way resumes where it stopped.
//! 6. Each pack is applied: a tree in place under `ota-delta`'s journal (a
//!    crash leaves the old or the new version, never a mix), a file to a
//!    temporary beside it, synced and renamed over it with its mode, the
//!    directory synced. After each, the target's digest must be the pack's
//!    `to_digest`.
//!
//! A failure says which version the target holds ([`ApplyFailure`]).

use crate::bundle::{check_log, member_names, unpack_bundle};
use crate::error::{BundleError, Result};
use crate::pack::{read_pack, PackInfo, PatchFormat};
use ota_core::signing::PublicKey;
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

pub use crate::bundle::{BUNDLE_MAX_BYTES, LOG_MAX, MAX_HOPS, SMALL_MEMBER_MAX};

/// How a bundle is applied.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ApplyOptions {
    /// Accept tree entries whose mode sets setuid or setgid (refused by
    /// default; `ota bundle apply --allow-setuid`).
    pub allow_setuid: bool,
    /// The version the bundle must lead to (`--to`); refused before
    /// anything is touched if the last pack's `to` is another.
    pub expect_to: Option<String>,
}

/// What [`apply_bundle`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Applied {
    /// The version the target held when this run started (pack.json's
    /// names).
    pub from: String,
    /// The version it holds now: the bundle's last.
    pub to: String,
    /// Packs applied by this run (fewer than the bundle holds when an
    /// interrupted run had applied some; 0 when the target already was
    /// the last version).
    pub hops: usize,
}

/// Why [`apply_bundle`] failed, and where it left the target.
#[derive(Debug)]
pub struct ApplyFailure {
    /// What went wrong.
    pub error: BundleError,
    /// The version (pack.json's name) the target holds, as its digest
    /// shows, when a pack whose signature verified names it: the version
    /// it started at for a refused bundle, the last one reached when a pack
    /// failed, or (digest mismatch) the version the failing pack claimed.
    /// `None`: the bundle was refused before any pack could be trusted, or
    /// the target's digest is none of the bundle's versions.
    pub left_at: Option<String>,
    /// Whether this run changed the target (applied at least one pack, or
    /// went through one whose result then failed its digest check). False
    /// for every refusal before the first apply: the target is as it was
    /// (apart from finishing an update an earlier run was killed in).
    pub changed: bool,
}

impl std::fmt::Display for ApplyFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.error.fmt(f)
    }
}

impl std::error::Error for ApplyFailure {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        std::error::Error::source(&self.error)
    }
}

/// Verifies `bundle` completely with `key`, then applies its packs to
/// `target` (a directory for `otatree1` packs, a file for `otadiff1`), as
/// the module documentation describes. A killed or failed run leaves the
/// target at one of the bundle's versions; running it again resumes.
// The failure is returned once per apply, never in a loop: its size (the
// error plus the version) costs nothing worth a Box in the public type.
#[allow(clippy::result_large_err)]
pub fn apply_bundle(
    bundle: &Path,
    target: &Path,
    key: &PublicKey,
    opts: &ApplyOptions,
) -> std::result::Result<Applied, ApplyFailure> {
    let mut verified = Vec::new();
    let refused = |error: BundleError, verified: &[Verified]| ApplyFailure {
        error,
        // Reading the target changes nothing; naming its version needs a
        // pack whose signature verified.
        left_at: if verified.is_empty() {
            None
        } else {
            digest_of(target)
                .ok()
                .and_then(|d| version_named(verified, &d))
        },
        changed: false,
    };
    let work = match tempfile::Builder::new().prefix("ota-bundle-").tempdir() {
        Ok(w) => w,
        Err(e) => {
            let error = BundleError::io("creating a private temporary directory", e);
            return Err(refused(error, &verified));
        }
    };
    if let Err(e) = verify_bundle(bundle, work.path(), key, opts, &mut verified) {
        return Err(refused(e, &verified));
    }
    let packs = verified;
    let _lock = lock_beside(target).map_err(|e| refused(e, &packs))?;
    let format = packs[0].info.format;
    let start = locate(target, &packs, format).map_err(|e| refused(e, &packs))?;
    let from = if start == 0 {
        packs[0].info.from.clone()
    } else {
        packs[start - 1].info.to.clone()
    };
    for (i, p) in packs.iter().enumerate().skip(start) {
        let at = if i == 0 {
            &p.info.from
        } else {
            &packs[i - 1].info.to
        };
        apply_pack(target, p, opts, at).map_err(|mut f| {
            f.changed |= i > start;
            f
        })?;
    }
    let to = packs[packs.len() - 1].info.to.clone();
    Ok(Applied {
        from,
        to,
        hops: packs.len() - start,
    })
}

/// A pack whose signature verified, its info, and its extracted patch.
struct Verified {
    /// `pack_N.tar.gz`.
    what: String,
    info: PackInfo,
    patch: PathBuf,
}

/// Steps 1 to 4: unpack, check the log, verify every pack, check the
/// chain. The packs verified so far are in `packs`, also on error.
fn verify_bundle(
    bundle: &Path,
    work: &Path,
    key: &PublicKey,
    opts: &ApplyOptions,
    packs: &mut Vec<Verified>,
) -> Result<()> {
    let members = unpack_bundle(bundle, work)?;
    let hops = check_log(&members)?;
    for n in 1..=hops {
        let [what, hash_name, sig_name] = member_names(n);
        let (Some(pack), Some(hash), Some(sig)) = (
            members.packs.get(&n),
            members.hashes.get(&n),
            members.sigs.get(&n),
        ) else {
            return Err(BundleError::malformed(
                "bundle",
                format!("hop {n} is incomplete"),
            ));
        };
        if sig.len() != 64 {
            return Err(BundleError::malformed(
                sig_name,
                format!("{} bytes; an Ed25519 signature is 64", sig.len()),
            ));
        }
        let mapped = ota_delta::file::Mapped::open(pack).map_err(|e| BundleError::Delta {
            what: what.clone(),
            source: e,
        })?;
        key.verify(mapped.bytes(), sig)
            .map_err(|_| BundleError::BadSignature { what: what.clone() })?;
        // Read from the very bytes that were verified.
        let patch = work.join(format!("patch_{n}"));
        let info = read_pack(mapped.bytes(), &what, &patch)?;
        drop(mapped);
        // The pack itself is no longer needed: its patch is out.
        let _ = std::fs::remove_file(pack);
        check_info(&what, &info)?;
        check_patch(&what, &info, &patch, opts)?;
        if let Some(prev) = packs.last() {
            check_link(&prev.info, &what, &info)?;
        }
        let hash = std::str::from_utf8(hash)
            .ok()
            .and_then(|h| h.strip_suffix('\n'))
            .filter(|h| is_digest(h))
            .ok_or_else(|| {
                BundleError::malformed(&hash_name, "not 64 lowercase hex digits and a newline")
            })?;
        if hash != info.to_digest {
            return Err(BundleError::Chain {
                what: hash_name,
                why: format!(
                    "says {hash}, but the signed {what} leads to {} with digest {}",
                    info.to, info.to_digest
                ),
            });
        }
        packs.push(Verified { what, info, patch });
    }
    let last = &packs[packs.len() - 1];
    if let Some(want) = &opts.expect_to {
        if &last.info.to != want {
            return Err(BundleError::Chain {
                what: last.what.clone(),
                why: format!(
                    "the bundle leads to version {}, not {want} as expected",
                    last.info.to
                ),
            });
        }
    }
    Ok(())
}

/// A pack's patch checked before anything is applied: a tree patch's
/// manifest is read and validated (paths, sizes, setuid unless allowed),
/// so a hostile later pack cannot leave the target half-way along the
/// path; a file patch must be `OTADIFF1`.
fn check_patch(what: &str, info: &PackInfo, patch: &Path, opts: &ApplyOptions) -> Result<()> {
    let delta = |e| BundleError::Delta {
        what: what.to_owned(),
        source: e,
    };
    let f = File::open(patch)
        .map_err(|e| BundleError::io(format!("opening {}", patch.display()), e))?;
    let mut r = io::BufReader::new(f);
    match info.format {
        PatchFormat::Otatree1 => {
            let (manifest, _) = ota_delta::tree::read_manifest(&mut r).map_err(delta)?;
            if !opts.allow_setuid {
                for e in &manifest.entries {
                    let mode = match e {
                        ota_delta::tree::Entry::Dir { mode, .. }
                        | ota_delta::tree::Entry::File { mode, .. } => *mode,
                        ota_delta::tree::Entry::Symlink { .. } => 0,
                    };
                    if mode & ota_delta::tree::SETID_BITS != 0 {
                        return Err(delta(ota_delta::DeltaError::Path {
                            path: e.path().into(),
                            why: format!(
                                "refused entry: mode {mode:o} sets setuid/setgid (allow with --allow-setuid)"
                            ),
                        }));
                    }
                }
            }
        }
        PatchFormat::Otadiff1 => {
            let mut magic = [0u8; 8];
            r.read_exact(&mut magic)
                .map_err(|e| BundleError::io(format!("reading {}", patch.display()), e))?;
            if &magic != ota_delta::format::MAGIC {
                return Err(BundleError::malformed(
                    what,
                    "pack.json says otadiff1, the patch is not an OTADIFF1 patch",
                ));
            }
        }
    }
    Ok(())
}

fn is_digest(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// One pack's info on its own: names and digests well formed.
fn check_info(what: &str, info: &PackInfo) -> Result<()> {
    let bad = |why: String| BundleError::malformed(format!("{what}/pack.json"), why);
    ota_core::name::check_name("package", &info.package).map_err(|e| bad(e.to_string()))?;
    ota_core::name::check_name("branch", &info.branch).map_err(|e| bad(e.to_string()))?;
    for v in [&info.from, &info.to] {
        ota_core::Version::parse(v).map_err(|e| bad(format!("version {v:?}: {e}")))?;
    }
    for d in [&info.from_digest, &info.to_digest] {
        if !is_digest(d) {
            return Err(bad(format!("digest {d:?} is not 64 lowercase hex digits")));
        }
    }
    Ok(())
}

/// Pack `what` must continue `prev`: same package, branch and format,
/// starting at the version (name and digest) `prev` leads to.
fn check_link(prev: &PackInfo, what: &str, info: &PackInfo) -> Result<()> {
    let chain = |why: String| BundleError::Chain {
        what: what.to_owned(),
        why,
    };
    if info.package != prev.package || info.branch != prev.branch {
        return Err(chain(format!(
            "is for {}/{}, the packs before it for {}/{}",
            info.package, info.branch, prev.package, prev.branch
        )));
    }
    if info.format != prev.format {
        return Err(chain(format!(
            "is {}, the packs before it {}: a bundle patches a tree or a file, not both",
            info.format.as_str(),
            prev.format.as_str()
        )));
    }
    if info.from != prev.to || info.from_digest != prev.to_digest {
        return Err(chain(format!(
            "starts at {} (digest {}), but the pack before it ends at {} (digest {})",
            info.from, info.from_digest, prev.to, prev.to_digest
        )));
    }
    Ok(())
}

/// An exclusive lock on the directory holding `target`, held while the
/// returned handle lives: two applies to one target never interleave (a
/// recovery must not run under another process's swap).
fn lock_beside(target: &Path) -> Result<OwnedFd> {
    let parent = match target.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let err = |why: String| BundleError::Target {
        target: target.into(),
        why,
    };
    let fd = rustix::fs::open(
        parent,
        rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )
    .map_err(|e| err(format!("opening its directory {}: {e}", parent.display())))?;
    match rustix::fs::flock(&fd, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(fd),
        Err(e) if e == rustix::io::Errno::WOULDBLOCK => Err(err(format!(
            "another update holds the lock on {} (an apply is running); try again when it ends",
            parent.display()
        ))),
        Err(e) => Err(err(format!("locking {}: {e}", parent.display()))),
    }
}

/// The digest of what is at `target`, or an error naming it.
fn digest_of(target: &Path) -> Result<String> {
    ota_core::digest::digest_path(target)
        .map(|d| d.as_str().to_owned())
        .map_err(|e| BundleError::io(format!("computing the digest of {}", target.display()), e))
}

/// The version name whose digest `d` is, among those `packs` go through.
fn version_named(packs: &[Verified], d: &str) -> Option<String> {
    let first = &packs[0].info;
    if first.from_digest == d {
        return Some(first.from.clone());
    }
    packs
        .iter()
        .rev()
        .find(|p| p.info.to_digest == d)
        .map(|p| p.info.to.clone())
}

/// Step 5: recovers an interrupted tree apply, checks the target's kind,
/// and finds where its digest puts it on the path: 0 (pack 1's from) up to
/// `packs.len()` (already at the last version).
fn locate(target: &Path, packs: &[Verified], format: PatchFormat) -> Result<usize> {
    let err = |why: String| BundleError::Target {
        target: target.into(),
        why,
    };
    if format == PatchFormat::Otatree1 {
        // A run killed during the swap left a journal: finish or undo it
        // first (the target may even be missing until then).
        ota_delta::tree::recover_in_place(target).map_err(|e| BundleError::Delta {
            what: format!("recovering an interrupted update of {}", target.display()),
            source: e,
        })?;
    }
    let meta = std::fs::symlink_metadata(target)
        .map_err(|e| BundleError::io(format!("reading {}", target.display()), e))?;
    match format {
        PatchFormat::Otatree1 if !meta.is_dir() => {
            return Err(err(
                "the bundle patches a directory tree; this is not a directory (a symlink to one is not followed)".into(),
            ))
        }
        PatchFormat::Otadiff1 if !meta.is_file() => {
            return Err(err(
                "the bundle patches a single file; this is not a regular file (a symlink is not followed)".into(),
            ))
        }
        _ => {}
    }
    let d = digest_of(target)?;
    let first = &packs[0].info;
    if d == first.from_digest {
        return Ok(0);
    }
    // Resuming: the version after some pack (the latest such).
    if let Some(j) = packs.iter().rposition(|p| p.info.to_digest == d) {
        return Ok(j + 1);
    }
    Err(err(format!(
        "its digest {d} is not that of version {} ({}), where pack 1 starts, nor of any version \
         the bundle leads to: the bundle was made for another version",
        first.from, first.from_digest
    )))
}

/// Step 6 for one pack. `at` is the version the target holds before it.
#[allow(clippy::result_large_err)]
fn apply_pack(
    target: &Path,
    p: &Verified,
    opts: &ApplyOptions,
    at: &str,
) -> std::result::Result<(), ApplyFailure> {
    let what = format!("{} ({} -> {})", p.what, p.info.from, p.info.to);
    let applied = match p.info.format {
        PatchFormat::Otatree1 => ota_delta::tree::patch_tree_in_place_with(
            target,
            &p.patch,
            &ota_delta::tree::ApplyOptions {
                allow_setuid: opts.allow_setuid,
            },
        )
        .map(|_| ()),
        PatchFormat::Otadiff1 => apply_file(target, &p.patch, &p.info),
    };
    if let Err(e) = applied {
        // The apply is all or nothing; say which version is there, as the
        // target's digest shows.
        if p.info.format == PatchFormat::Otatree1 {
            let _ = ota_delta::tree::recover_in_place(target);
        }
        let left_at = digest_of(target).ok().and_then(|d| {
            [
                (&p.info.from_digest, &p.info.from),
                (&p.info.to_digest, &p.info.to),
            ]
            .into_iter()
            .find(|(digest, _)| **digest == d)
            .map(|(_, v)| v.clone())
        });
        let changed = left_at.as_deref() != Some(at);
        return Err(ApplyFailure {
            error: BundleError::Delta { what, source: e },
            left_at,
            changed,
        });
    }
    let d = digest_of(target).map_err(|error| ApplyFailure {
        error,
        left_at: None,
        changed: true,
    })?;
    if d != p.info.to_digest {
        // Every file was checked against the patch, so the signed pack
        // contradicts itself: its tree is what the patch describes.
        return Err(ApplyFailure {
            error: BundleError::Target {
                target: target.into(),
                why: format!(
                    "after {what} its digest is {d}, not {} as the signed pack.json promises for \
                     version {} (digest mismatch; the version before was {at})",
                    p.info.to_digest, p.info.to
                ),
            },
            left_at: Some(p.info.to.clone()),
            changed: true,
        });
    }
    Ok(())
}

fn digest_bytes(hex_digest: &str) -> Option<[u8; 32]> {
    hex::decode(hex_digest).ok()?.try_into().ok()
}

/// A file pack (`OTADIFF1`, checked by [`check_patch`]): the old file's
/// and the result's SHA-256 checked by the patcher, the result before it
/// is renamed in.
fn apply_file(target: &Path, patch: &Path, info: &PackInfo) -> ota_delta::Result<()> {
    let opts = ota_delta::PatchOptions {
        sync: true,
        old_sha256: digest_bytes(&info.from_digest),
        new_sha256: digest_bytes(&info.to_digest),
    };
    ota_delta::patch_file_with(target, patch, target, &opts).map(|_| ())
}
