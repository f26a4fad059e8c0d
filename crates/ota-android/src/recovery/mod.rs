//! A recovery simulator: runs a package's `updater-script` against a
//! directory standing in for the device.
//!
//! - Every file operation goes through `root::Root`, a handle on ROOT
//!   whose paths the kernel resolves with `openat2(RESOLVE_IN_ROOT)`:
//!   symlinks behave as in a chroot (a link to `/system/bin/toolbox` is
//!   `ROOT/system/bin/toolbox`, `..` stops at ROOT), the last component of
//!   anything written or removed is never followed, and writes go to a
//!   random `O_EXCL|O_NOFOLLOW` temporary renamed into place. Nothing
//!   outside ROOT can be named, whatever links the script or an earlier
//!   install planted.
//! - Mount points come from the fstab ([`ApplyOptions::fstab`], else the
//!   usual Android partitions); file operations must land (after symlinks)
//!   on a mounted one, `/tmp` or `/cache`; `format` empties a mount point.
//! - Raw partitions are files: an EMMC device path maps under ROOT like any
//!   path (`/dev/block/…/boot`), an MTD partition `NAME` to
//!   `ROOT/dev/mtd/NAME`; either must stay under `/dev` after symlinks.
//! - `getprop` answers from a props file or, when none is given,
//!   `ROOT/system/build.prop` as it was when the run started.
//! - Modes are set for real (directories keep owner `rwx` so a non-root
//!   user can go on writing); owner, group, SELinux label and capabilities,
//!   which need root, are recorded in the sidecar `ROOT/.ota-metadata`
//!   ([`sidecar`]).
//! - `apply_patch` saves the source to `/cache/saved.file` first, writes the
//!   result beside the target and renames it after its SHA-1 matches.
//! - `run_program` is refused (it would run a device binary); `sleep` does
//!   not wait.

mod builtins;
mod patch;
mod root;
mod sidecar;

pub use sidecar::{read_metadata, Recorded, METADATA_FILE};

use crate::edify::{self, Value};
use crate::error::{io, zip_err, AndroidError, Result};
use crate::fstab::Fstab;
use crate::props::Props;
use root::Root;
use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Seek, Write};
use std::path::Path;

const SAVED_FILE: &str = "/cache/saved.file";

/// Mount points when no fstab is given: the partitions Android's
/// recovery.fstab files list.
pub const DEFAULT_MOUNT_POINTS: &[&str] = &[
    "/cache",
    "/data",
    "/firmware",
    "/odm",
    "/oem",
    "/persist",
    "/product",
    "/system",
    "/vendor",
];

/// Buffers for data whose size an untrusted header or script announces
/// start at most this big and grow with what actually arrives.
const PREALLOC_MAX: u64 = 1 << 20;

/// Options of a simulated install.
#[derive(Default)]
pub struct ApplyOptions {
    /// Properties `getprop` answers (else ROOT/system/build.prop).
    pub props: Option<Props>,
    /// The device's recovery fstab: `mount` and `format` accept only its
    /// mount points (else [`DEFAULT_MOUNT_POINTS`]).
    pub fstab: Option<Fstab>,
}

/// Runs `package`'s updater-script against `root`. `ui_print` text goes
/// to `log`. The sidecar is written even when the script aborts, so it
/// always describes what is on disk.
pub fn apply(package: &Path, root: &Path, opts: ApplyOptions, log: &mut dyn Write) -> Result<()> {
    let file =
        std::fs::File::open(package).map_err(io(format!("opening {}", package.display())))?;
    apply_reader(
        std::io::BufReader::new(file),
        &package.display().to_string(),
        root,
        opts,
        log,
    )
}

/// As [`apply`], for a package already open (`name` is shown in errors):
/// a caller that checked the signature installs from the same file.
pub fn apply_reader<R: Read + Seek>(
    package: R,
    name: &str,
    root: &Path,
    opts: ApplyOptions,
    log: &mut dyn Write,
) -> Result<()> {
    let mut zip =
        zip::ZipArchive::new(package).map_err(zip_err(format!("reading {name} as a zip")))?;
    let script = {
        let mut e = zip
            .by_name("META-INF/com/google/android/updater-script")
            .map_err(|_| {
                AndroidError::Missing(format!(
                    "META-INF/com/google/android/updater-script in {name}"
                ))
            })?;
        let mut s = String::new();
        e.read_to_string(&mut s)
            .map_err(io("reading updater-script"))?;
        s
    };
    let program = edify::parse(&script)?;
    std::fs::create_dir_all(root).map_err(io(format!("creating {}", root.display())))?;
    // The script formats /system and /data: never against the host itself.
    let real = std::fs::canonicalize(root).map_err(io(format!("resolving {}", root.display())))?;
    if real == Path::new("/") {
        return Err(AndroidError::Invalid(
            "ROOT is the host's / : the simulator would format this machine's /system and /data; give it an empty directory".into(),
        ));
    }
    let handle = Root::open(root).map_err(io(format!("opening {}", root.display())))?;
    let props = match opts.props {
        Some(p) => p,
        None => match handle.read("/system/build.prop") {
            Ok(t) => Props::parse(&String::from_utf8_lossy(&t), "system/build.prop")?,
            Err(_) => Props::default(),
        },
    };
    let mount_points = mount_points(opts.fstab.as_ref())?;
    let meta = sidecar::load(&handle, root)?;
    let mut dev = Device {
        root: handle,
        zip,
        props,
        mount_points,
        mounted: BTreeSet::new(),
        meta,
        log,
    };
    let result = program.run(&mut dev);
    sidecar::store(&dev.root, root, &dev.meta)?;
    result.map(|_| ())
}

/// The mount points `mount` and `format` accept.
fn mount_points(fstab: Option<&Fstab>) -> Result<BTreeSet<String>> {
    let Some(f) = fstab else {
        return Ok(DEFAULT_MOUNT_POINTS.iter().map(|s| s.to_string()).collect());
    };
    let mut out = BTreeSet::new();
    for mp in f.partitions.keys() {
        let c = components("fstab", mp).map_err(|_| {
            AndroidError::Invalid(format!(
                "fstab mount point {mp:?} is not an absolute path without '..'"
            ))
        })?;
        if !c.is_empty() {
            out.insert(format!("/{}", c.join("/")));
        }
    }
    Ok(out)
}

pub(super) struct Device<'a, R> {
    root: Root,
    zip: zip::ZipArchive<R>,
    props: Props,
    mount_points: BTreeSet<String>,
    mounted: BTreeSet<String>,
    meta: BTreeMap<String, Recorded>,
    log: &'a mut dyn Write,
}

fn fail(msg: impl Into<String>) -> AndroidError {
    AndroidError::Aborted(msg.into())
}

/// `strtoul(s, 0)`: decimal, `0` octal, `0x` hex.
fn parse_num(func: &str, s: &str) -> Result<u64> {
    let s = s.trim();
    let r = if let Some(h) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        u64::from_str_radix(h, 16)
    } else if s.len() > 1 && s.starts_with('0') {
        u64::from_str_radix(&s[1..], 8)
    } else {
        s.parse()
    };
    r.map_err(|_| fail(format!("{func}: {s:?} is not a number")))
}

fn args_str<'v>(func: &str, args: &'v [Value]) -> Result<Vec<&'v str>> {
    args.iter().map(|a| a.str(func)).collect()
}

fn arity(func: &str, args: &[Value], lo: usize, hi: usize) -> Result<()> {
    if args.len() < lo || args.len() > hi {
        let want = if lo == hi {
            lo.to_string()
        } else if hi == usize::MAX {
            format!("at least {lo}")
        } else {
            format!("{lo}..{hi}")
        };
        return Err(fail(format!(
            "{func}() expects {want} arguments, got {}",
            args.len()
        )));
    }
    Ok(())
}

/// Splits `/a/b` into checked components.
fn components(func: &str, path: &str) -> Result<Vec<String>> {
    if !path.starts_with('/') {
        return Err(fail(format!(
            "{func}: {path:?} is not an absolute device path"
        )));
    }
    let mut out = Vec::new();
    for c in path.split('/') {
        match c {
            "" | "." => {}
            ".." => return Err(fail(format!("{func}: {path:?} contains '..'"))),
            c => out.push(c.to_string()),
        }
    }
    Ok(out)
}

/// The directory holding a device path (`None` for a top-level name).
fn parent(dev: &str) -> Option<&str> {
    dev.rsplit_once('/')
        .map(|(p, _)| p)
        .filter(|p| !p.is_empty())
}

impl<R: Read + Seek> Device<'_, R> {
    /// Where a device path leads under ROOT (symlinks followed chroot-style,
    /// the last one only when `follow_last`), checked to be on a mounted
    /// partition, `/tmp` or `/cache`.
    fn host(&self, func: &str, path: &str, follow_last: bool) -> Result<String> {
        components(func, path)?;
        let dev = self
            .root
            .resolve(path, follow_last)
            .map_err(|e| fail(format!("{func}: resolving {path:?}: {e}")))?;
        let ok = ["/tmp", "/cache"]
            .into_iter()
            .chain(self.mounted.iter().map(String::as_str))
            .any(|m| dev == m || dev.starts_with(&format!("{m}/")));
        if !ok {
            return Err(fail(format!(
                "{func}: {path} is not on a mounted partition (mounted: {})",
                self.mounted_list()
            )));
        }
        Ok(dev)
    }

    fn mounted_list(&self) -> String {
        if self.mounted.is_empty() {
            "none".into()
        } else {
            self.mounted.iter().cloned().collect::<Vec<_>>().join(", ")
        }
    }

    /// A mount point argument: normalised, and one the fstab lists.
    fn mount_point(&self, func: &str, mp: &str) -> Result<String> {
        let mp = format!("/{}", components(func, mp)?.join("/"));
        if !self.mount_points.contains(&mp) {
            return Err(fail(format!(
                "{func}: {mp} is not a mount point of the fstab (known: {})",
                self.mount_points
                    .iter()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        Ok(mp)
    }

    /// The device path of a raw partition (`MTD` name or `EMMC` device
    /// path), symlinks followed, checked to stay under `/dev`.
    fn partition(&self, func: &str, kind: &str, dev: &str) -> Result<String> {
        let path = match kind {
            "MTD" => {
                if dev.is_empty() || dev.contains('/') || dev.starts_with('.') {
                    return Err(fail(format!("{func}: bad MTD partition name {dev:?}")));
                }
                format!("/dev/mtd/{dev}")
            }
            "EMMC" => {
                let c = components(func, dev)?;
                if c.first().map(String::as_str) != Some("dev") || c.len() < 2 {
                    return Err(fail(format!(
                        "{func}: EMMC device {dev:?} is not under /dev"
                    )));
                }
                format!("/{}", c.join("/"))
            }
            k => {
                return Err(fail(format!(
                    "{func}: unknown partition type {k:?} (MTD or EMMC)"
                )))
            }
        };
        let real = self
            .root
            .resolve(&path, true)
            .map_err(|e| fail(format!("{func}: resolving {path}: {e}")))?;
        if !real.starts_with("/dev/") {
            return Err(fail(format!(
                "{func}: partition {dev} leads to {real}, outside /dev"
            )));
        }
        Ok(real)
    }

    /// Writes a raw partition (resolved by [`Self::partition`]).
    fn write_partition(&mut self, func: &str, real: &str, data: &[u8]) -> Result<()> {
        if let Some(p) = parent(real) {
            self.root
                .create_dir_all(p)
                .map_err(|e| fail(format!("{func}: creating {p}: {e}")))?;
        }
        self.root
            .write(real, data, 0o644)
            .map_err(|e| fail(format!("{func}: writing partition {real}: {e}")))
    }

    fn rel(dev: &str) -> String {
        dev.trim_start_matches('/').to_string()
    }

    /// Writes a file at the resolved device path `dev` with `mode`, and
    /// records it (root-owned) in the sidecar.
    fn write_file(&mut self, func: &str, dev: &str, data: &[u8], mode: u32) -> Result<()> {
        if let Some(p) = parent(dev) {
            self.root.create_dir_all(p).map_err(|e| {
                fail(format!(
                    "{func}: failed to create directories for {dev}: {e}"
                ))
            })?;
        }
        self.root
            .write(dev, data, mode)
            .map_err(|e| fail(format!("{func}: failed to write {dev}: {e}")))?;
        self.meta.insert(
            Self::rel(dev),
            Recorded {
                uid: 0,
                gid: 0,
                mode: Some(mode),
                ..Default::default()
            },
        );
        Ok(())
    }

    /// A package entry; the buffer grows with what is inflated, not with
    /// the size its header claims, and an entry longer than that size is
    /// refused.
    fn zip_entry(&mut self, func: &str, name: &str) -> Result<Vec<u8>> {
        let mut e = self
            .zip
            .by_name(name)
            .map_err(|_| fail(format!("{func}: no {name} in the package")))?;
        let size = e.size();
        let mut data = Vec::with_capacity(size.min(PREALLOC_MAX) as usize);
        (&mut e)
            .take(size.saturating_add(1))
            .read_to_end(&mut data)
            .map_err(|e| fail(format!("{func}: reading {name} from the package: {e}")))?;
        if data.len() as u64 > size {
            return Err(fail(format!(
                "{func}: {name} inflates to more than the {size} bytes its header says"
            )));
        }
        Ok(data)
    }

    fn forget_under(&mut self, dev: &str) {
        let rel = Self::rel(dev);
        let prefix = format!("{rel}/");
        self.meta
            .retain(|k, _| *k != rel && !k.starts_with(&prefix));
    }
}
