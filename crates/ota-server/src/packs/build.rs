//! Building the two packs of one skip-list edge (blocking work: run it on
//! a blocking thread).
//!
//! Archive packages (`.tar`, `.tar.gz`, `.tar.zst`, `.zip`, recognised by
//! content) are unpacked and diffed as trees, so a device holding the
//! unpacked tree can apply them; other packages are diffed as files. Both
//! packs come from one scan of each side (`ota-delta`'s forward + reverse).

use anyhow::{bail, Context};
use ota_bundle::archive::{self, UnpackLimits};
use ota_bundle::pack::{write_pack, PackDirection, PackInfo, PatchFormat};
use ota_delta::DiffOptions;
use std::path::{Path, PathBuf};

/// One side of an edge.
#[derive(Clone, Debug)]
pub struct Side {
    /// Version text.
    pub version: String,
    /// The stored package file.
    pub blob: PathBuf,
    /// Its SHA-256 (a single file's digest).
    pub sha256: String,
}

/// An edge's two versions, ready to diff.
#[derive(Debug)]
pub struct Prepared {
    /// Tree or file.
    pub format: PatchFormat,
    old: PathBuf,
    new: PathBuf,
    /// Digest of the older version.
    pub old_digest: String,
    /// Digest of the newer version.
    pub new_digest: String,
    /// Bytes of both sides, to bound the memory diffs take together.
    pub input_bytes: u64,
}

/// A pack written to the work directory.
#[derive(Debug)]
pub struct BuiltPack {
    /// Where it is.
    pub path: PathBuf,
    /// What it holds.
    pub info: PackInfo,
}

/// Unpacks archives (into `work`) and computes both digests.
pub fn prepare(old: &Side, new: &Side, work: &Path) -> anyhow::Result<Prepared> {
    let kinds = (
        archive::detect(&old.blob).with_context(|| format!("reading version {}", old.version))?,
        archive::detect(&new.blob).with_context(|| format!("reading version {}", new.version))?,
    );
    let limits = UnpackLimits::default();
    match kinds {
        (Some(ko), Some(kn)) => {
            let (o, n) = (work.join("old"), work.join("new"));
            for (side, kind, dir) in [(old, ko, &o), (new, kn, &n)] {
                std::fs::create_dir(dir)
                    .with_context(|| format!("creating {}", dir.display()))?;
                archive::unpack(&side.blob, kind, dir, &limits)
                    .with_context(|| format!("unpacking version {}", side.version))?;
            }
            let digest = |d: &Path, v: &str| {
                ota_core::digest::digest_path(d)
                    .map(|h| h.to_string())
                    .with_context(|| format!("computing the digest of version {v}"))
            };
            Ok(Prepared {
                format: PatchFormat::Otatree1,
                old_digest: digest(&o, &old.version)?,
                new_digest: digest(&n, &new.version)?,
                input_bytes: tree_bytes(&o)? + tree_bytes(&n)?,
                old: o,
                new: n,
            })
        }
        (None, None) => {
            let len = |p: &Path| std::fs::metadata(p).map(|m| m.len());
            Ok(Prepared {
                format: PatchFormat::Otadiff1,
                old_digest: old.sha256.clone(),
                new_digest: new.sha256.clone(),
                input_bytes: len(&old.blob)? + len(&new.blob)?,
                old: old.blob.clone(),
                new: new.blob.clone(),
            })
        }
        (o, _) => bail!(
            "version {} is {} and version {} is {}: a delta needs both to be archives or both single files",
            old.version,
            if o.is_some() { "an archive" } else { "a single file" },
            new.version,
            if o.is_some() { "a single file" } else { "an archive" },
        ),
    }
}

/// What a diff of `input_bytes` needs at most, roughly: the suffix array
/// (8 bytes per byte of OLD) and both sides mapped.
pub fn memory_estimate(input_bytes: u64) -> u64 {
    input_bytes.saturating_mul(6)
}

/// Diffs a prepared edge into its upgrade and rollback packs in `work`.
pub fn diff(
    p: &Prepared,
    package: &str,
    branch: &str,
    old: &str,
    new: &str,
    work: &Path,
    opts: &DiffOptions,
) -> anyhow::Result<[BuiltPack; 2]> {
    let (fwd, rev) = (work.join("upgrade.patch"), work.join("rollback.patch"));
    match p.format {
        PatchFormat::Otatree1 => {
            ota_delta::tree::diff_trees(&p.old, &p.new, &fwd, Some(&rev), opts)
                .context("diffing the two trees")?;
        }
        PatchFormat::Otadiff1 => {
            ota_delta::diff_files(&p.old, &p.new, &fwd, opts).context("diffing the two files")?;
            ota_delta::diff_files(&p.new, &p.old, &rev, opts).context("diffing the two files")?;
        }
    }
    let info = |direction, from: &str, to: &str, fd: &str, td: &str| PackInfo {
        package: package.to_owned(),
        branch: branch.to_owned(),
        from: from.to_owned(),
        to: to.to_owned(),
        direction,
        format: p.format,
        from_digest: fd.to_owned(),
        to_digest: td.to_owned(),
        patch_sha256: String::new(),
        patch_size: 0,
    };
    let write = |patch: &Path, name: &str, info: PackInfo| -> anyhow::Result<BuiltPack> {
        let path = work.join(name);
        let f =
            std::fs::File::create(&path).with_context(|| format!("creating {}", path.display()))?;
        let mut w = std::io::BufWriter::new(f);
        let info = write_pack(&info, patch, &mut w)?;
        let f = w.into_inner().map_err(|e| e.into_error())?;
        f.sync_all()?;
        Ok(BuiltPack { path, info })
    };
    let up = write(
        &fwd,
        "upgrade.pack",
        info(
            PackDirection::Upgrade,
            old,
            new,
            &p.old_digest,
            &p.new_digest,
        ),
    )?;
    let down = write(
        &rev,
        "rollback.pack",
        info(
            PackDirection::Rollback,
            new,
            old,
            &p.new_digest,
            &p.old_digest,
        ),
    )?;
    Ok([up, down])
}

fn tree_bytes(dir: &Path) -> anyhow::Result<u64> {
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).with_context(|| format!("listing {}", d.display()))? {
            let e = e?;
            let meta = e.metadata()?;
            if meta.is_dir() {
                stack.push(e.path());
            } else if meta.is_file() {
                total += meta.len();
            }
        }
    }
    Ok(total)
}
