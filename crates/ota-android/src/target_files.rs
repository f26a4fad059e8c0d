//! Reading a target-files package, zipped or unpacked.
//!
//! Only the parts an OTA needs are loaded: `SYSTEM/`, `VENDOR/`, `BOOT/`,
//! `RECOVERY/`, `META/`, `OTA/bin/updater` and prebuilt `IMAGES/{boot,recovery}.img`.
//! In a zip, a symlink is an entry whose Unix mode is `S_IFLNK` and whose
//! data is the link target (as `zip -y` stores them); in a directory it is
//! a real symlink, read and never followed.

use crate::bootimg::{self, BootParts};
use crate::error::{io, zip_err, AndroidError, Result};
use crate::fs_config::FsConfig;
use crate::fstab::Fstab;
use crate::props::Props;
use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

/// A file system object as stored in target-files.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RawNode {
    /// A directory (its permission bits when the archive records them).
    Dir {
        /// Permission bits, if recorded.
        mode: Option<u32>,
    },
    /// A regular file.
    File {
        /// Contents.
        data: Vec<u8>,
        /// Permission bits, if recorded.
        mode: Option<u32>,
    },
    /// A symbolic link and its target.
    Symlink(String),
}

/// One file-system partition of the build (`system`, `vendor`).
#[derive(Clone, Debug, Default)]
pub struct Tree {
    /// `system` or `vendor`: the zip prefix in the OTA and the mount point
    /// without its `/`.
    pub name: String,
    /// Every entry by its path in the OTA (`system/bin/sh`), with implied
    /// parent directories added, and the root itself (`system`) as a dir.
    pub entries: BTreeMap<String, RawNode>,
}

impl Tree {
    /// Regular files, by path.
    pub fn files(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.entries.iter().filter_map(|(p, n)| match n {
            RawNode::File { data, .. } => Some((p.as_str(), data.as_slice())),
            _ => None,
        })
    }

    /// Symlinks as (target, link path), sorted like releasetools does.
    pub fn symlinks(&self) -> Vec<(String, String)> {
        let mut v: Vec<(String, String)> = self
            .entries
            .iter()
            .filter_map(|(p, n)| match n {
                RawNode::Symlink(t) => Some((t.clone(), format!("/{p}"))),
                _ => None,
            })
            .collect();
        v.sort();
        v
    }
}

/// A loaded target-files package.
#[derive(Debug)]
pub struct TargetFiles {
    /// Where it was read from.
    pub source: PathBuf,
    /// `META/misc_info.txt`.
    pub misc_info: Props,
    /// `SYSTEM/build.prop`.
    pub build_prop: Props,
    /// `META/filesystem_config.txt` (plus `vendor_filesystem_config.txt`).
    pub fs_config: FsConfig,
    /// `RECOVERY/RAMDISK/etc/recovery.fstab`.
    pub fstab: Fstab,
    /// `system`, then `vendor` when the build has one.
    pub trees: Vec<Tree>,
    /// The boot image (prebuilt or built from `BOOT/`), if the build has one.
    pub boot_image: Option<Vec<u8>>,
    /// The recovery image, if the build has one.
    pub recovery_image: Option<Vec<u8>>,
    /// `OTA/bin/updater`, if present.
    pub updater: Option<Vec<u8>>,
    /// `BOOT/RAMDISK/file_contexts`, when `misc_info` sets `selinux_fc`.
    pub file_contexts: Option<Vec<u8>>,
}

/// Raw entries by their path inside target-files.
type Raw = BTreeMap<String, RawNode>;

fn wanted(name: &str) -> bool {
    [
        "SYSTEM/",
        "VENDOR/",
        "BOOT/",
        "RECOVERY/",
        "META/",
        "OTA/bin/updater",
        "IMAGES/boot.img",
        "IMAGES/recovery.img",
    ]
    .iter()
    .any(|p| name.starts_with(p) || name == p.trim_end_matches('/'))
}

fn check_name(name: &str, source: &Path) -> Result<()> {
    // Directory entries end with '/'; otherwise the delta engine's rule.
    let bad = ota_delta::tree::check_rel_path(name.strip_suffix('/').unwrap_or(name)).is_err()
        || name.contains('\\');
    if bad {
        return Err(AndroidError::Invalid(format!(
            "{}: entry {name:?} is not a safe relative path",
            source.display()
        )));
    }
    Ok(())
}

type Archive = zip::ZipArchive<std::io::BufReader<std::fs::File>>;

fn open_zip(path: &Path) -> Result<Archive> {
    let file = std::fs::File::open(path).map_err(io(format!("opening {}", path.display())))?;
    zip::ZipArchive::new(std::io::BufReader::new(file))
        .map_err(zip_err(format!("reading {} as a zip", path.display())))
}

/// Bytes a target-files zip's entries take once read into memory (the sum
/// of the declared sizes of the entries the builder reads; an entry that
/// inflates past its declared size is refused while reading). A directory
/// is measured by its files' sizes.
pub fn memory_needed(path: &Path) -> Result<u64> {
    let md = std::fs::metadata(path).map_err(io(format!("opening {}", path.display())))?;
    if md.is_dir() {
        return Ok(md.len());
    }
    let mut zip = open_zip(path)?;
    let mut total = 0u64;
    for i in 0..zip.len() {
        let e = zip
            .by_index_raw(i)
            .map_err(zip_err(format!("reading {}", path.display())))?;
        if wanted(e.name()) {
            total = total.saturating_add(e.size());
        }
    }
    Ok(total)
}

/// Reads the wanted entries, inflating them on all cores (each worker
/// opens its own handle on the file).
fn read_zip(path: &Path) -> Result<Raw> {
    use rayon::prelude::*;
    let zip = open_zip(path)?;
    // Every name is checked, read or not: an archive with unsafe names is
    // not a target-files package.
    let mut wanted_entries: Vec<(usize, String)> = Vec::new();
    for i in 0..zip.len() {
        let Some(name) = zip.name_for_index(i) else {
            continue;
        };
        check_name(name, path)?;
        if wanted(name) {
            wanted_entries.push((i, name.to_string()));
        }
    }
    drop(zip);
    let nodes: Vec<Result<(String, RawNode)>> = wanted_entries
        .par_iter()
        .map_init(
            || open_zip(path),
            |zip, (i, name)| {
                let zip = zip
                    .as_mut()
                    .map_err(|e| AndroidError::Invalid(e.to_string()))?;
                let ctx = || format!("reading {name} from {}", path.display());
                let mut e = zip.by_index(*i).map_err(zip_err(ctx()))?;
                let unix = e.unix_mode();
                let perm = unix.map(|m| m & 0o7777);
                let node = if e.is_dir() {
                    RawNode::Dir { mode: perm }
                } else {
                    // The declared size bounds what is read (and what
                    // `memory_needed` promised): an entry that inflates
                    // past it is refused, not followed.
                    let declared = e.size();
                    let mut data = Vec::with_capacity(declared.min(64 << 20) as usize);
                    (&mut e)
                        .take(declared.saturating_add(1))
                        .read_to_end(&mut data)
                        .map_err(io(ctx()))?;
                    if data.len() as u64 > declared {
                        return Err(AndroidError::Invalid(format!(
                            "{}: entry {name} inflates past its declared size of {declared} bytes",
                            path.display()
                        )));
                    }
                    if unix.is_some_and(|m| m & 0o170000 == 0o120000) {
                        let t = String::from_utf8(data).map_err(|_| {
                            AndroidError::Invalid(format!(
                                "{}: symlink {name} has a non-UTF-8 target",
                                path.display()
                            ))
                        })?;
                        RawNode::Symlink(t)
                    } else {
                        RawNode::File { data, mode: perm }
                    }
                };
                Ok((name.trim_end_matches('/').to_string(), node))
            },
        )
        .collect();
    let mut raw = Raw::new();
    for n in nodes {
        let (name, node) = n?;
        raw.insert(name, node);
    }
    Ok(raw)
}

fn read_dir(root: &Path) -> Result<Raw> {
    use std::os::unix::fs::PermissionsExt;
    let mut raw = Raw::new();
    let mut stack = vec![String::new()];
    while let Some(rel) = stack.pop() {
        let dir = root.join(&rel);
        let rd = std::fs::read_dir(&dir).map_err(io(format!("listing {}", dir.display())))?;
        for ent in rd {
            let ent = ent.map_err(io(format!("listing {}", dir.display())))?;
            let name = ent.file_name();
            let name = name.to_str().ok_or_else(|| {
                AndroidError::Invalid(format!("{}: a file name is not UTF-8", dir.display()))
            })?;
            let path = if rel.is_empty() {
                name.to_string()
            } else {
                format!("{rel}/{name}")
            };
            let full = ent.path();
            let md = std::fs::symlink_metadata(&full)
                .map_err(io(format!("reading {}", full.display())))?;
            let ft = md.file_type();
            let keep = wanted(&path)
                || (ft.is_dir() && wanted(&format!("{path}/")))
                || ["OTA", "OTA/bin", "IMAGES"].contains(&path.as_str());
            if !keep {
                continue;
            }
            let perm = Some(md.permissions().mode() & 0o7777);
            if ft.is_symlink() {
                let t = std::fs::read_link(&full)
                    .map_err(io(format!("reading link {}", full.display())))?;
                let t = t.to_str().ok_or_else(|| {
                    AndroidError::Invalid(format!("{}: link target is not UTF-8", full.display()))
                })?;
                raw.insert(path, RawNode::Symlink(t.to_string()));
            } else if ft.is_dir() {
                if wanted(&format!("{path}/")) {
                    raw.insert(path.clone(), RawNode::Dir { mode: perm });
                }
                stack.push(path);
            } else if ft.is_file() {
                if wanted(&path) {
                    let data =
                        std::fs::read(&full).map_err(io(format!("reading {}", full.display())))?;
                    raw.insert(path, RawNode::File { data, mode: perm });
                }
            } else {
                return Err(AndroidError::Invalid(format!(
                    "{}: not a file, directory or symlink",
                    full.display()
                )));
            }
        }
    }
    Ok(raw)
}

fn text<'a>(raw: &'a Raw, name: &str) -> Result<Option<&'a str>> {
    match raw.get(name) {
        None => Ok(None),
        Some(RawNode::File { data, .. }) => std::str::from_utf8(data)
            .map(Some)
            .map_err(|_| AndroidError::Invalid(format!("{name} is not UTF-8 text"))),
        Some(_) => Err(AndroidError::Invalid(format!(
            "{name} is not a regular file"
        ))),
    }
}

fn file<'a>(raw: &'a Raw, name: &str) -> Option<&'a [u8]> {
    match raw.get(name) {
        Some(RawNode::File { data, .. }) => Some(data),
        _ => None,
    }
}

/// Adds the parent directories that a zip may leave implicit, so every
/// entry's parent is listed (as in an unpacked tree).
pub fn add_parents(entries: &mut BTreeMap<String, RawNode>) {
    let paths: Vec<String> = entries.keys().cloned().collect();
    for p in paths {
        let mut cur = p.as_str();
        while let Some((parent, _)) = cur.rsplit_once('/') {
            entries
                .entry(parent.to_string())
                .or_insert(RawNode::Dir { mode: None });
            cur = parent;
        }
    }
}

/// Collects one partition's entries (`SYSTEM/…` → `system/…`), adding the
/// parent directories a zip may leave implicit.
fn tree(raw: &Raw, prefix: &str, name: &str) -> Option<Tree> {
    let mut entries = BTreeMap::new();
    let pre = format!("{prefix}/");
    for (p, n) in raw.range(pre.clone()..) {
        let Some(rest) = p.strip_prefix(&pre) else {
            break;
        };
        entries.insert(format!("{name}/{rest}"), n.clone());
    }
    if entries.is_empty() && !raw.contains_key(prefix) {
        return None;
    }
    add_parents(&mut entries);
    entries.insert(name.to_string(), RawNode::Dir { mode: None });
    Some(Tree {
        name: name.to_string(),
        entries,
    })
}

fn bootable(
    raw: &Raw,
    dir: &str,
    image: &str,
    boot_fs: Option<FsConfig>,
) -> Result<Option<Vec<u8>>> {
    for prebuilt in [format!("IMAGES/{image}"), format!("{dir}/{image}")] {
        if let Some(d) = file(raw, &prebuilt) {
            return Ok(Some(d.to_vec()));
        }
    }
    let Some(kernel) = file(raw, &format!("{dir}/kernel")) else {
        return Ok(None);
    };
    let small = |n: &str| text(raw, &format!("{dir}/{n}")).map(|t| t.map(|s| s.trim().to_string()));
    let base = match small("base")? {
        None => 0x1000_0000,
        Some(b) => u32::from_str_radix(b.trim_start_matches("0x"), 16).map_err(|_| {
            AndroidError::Invalid(format!("{dir}/base: {b:?} is not a hex address"))
        })?,
    };
    let page_size = match small("pagesize")? {
        None => 2048,
        Some(p) => p
            .parse()
            .map_err(|_| AndroidError::Invalid(format!("{dir}/pagesize: {p:?} is not a number")))?,
    };
    let pre = format!("{dir}/RAMDISK/");
    let mut ramdisk: BTreeMap<String, RawNode> = raw
        .range(pre.clone()..)
        .take_while(|(p, _)| p.starts_with(&pre))
        .map(|(p, n)| (p[pre.len()..].to_string(), n.clone()))
        .collect();
    // The cpio archive lists every directory.
    add_parents(&mut ramdisk);
    let parts = BootParts {
        kernel,
        second: file(raw, &format!("{dir}/second")),
        cmdline: small("cmdline")?.unwrap_or_default(),
        base,
        page_size,
        ramdisk,
        fs_config: boot_fs,
    };
    bootimg::build(&parts).map(Some)
}

impl TargetFiles {
    /// Opens a target-files zip or unpacked directory.
    pub fn open(path: &Path) -> Result<TargetFiles> {
        let md = std::fs::metadata(path)
            .map_err(io(format!("opening target-files {}", path.display())))?;
        let raw = if md.is_dir() {
            read_dir(path)?
        } else {
            read_zip(path)?
        };
        Self::from_raw(raw, path)
    }

    fn from_raw(raw: Raw, source: &Path) -> Result<TargetFiles> {
        let where_ = source.display();
        let misc = text(&raw, "META/misc_info.txt")?
            .ok_or_else(|| AndroidError::Missing(format!("META/misc_info.txt in {where_}")))?;
        let misc_info = Props::parse(misc, "META/misc_info.txt")?;
        let bp = text(&raw, "SYSTEM/build.prop")?
            .ok_or_else(|| AndroidError::Missing(format!("SYSTEM/build.prop in {where_}")))?;
        let build_prop = Props::parse(bp, "SYSTEM/build.prop")?;
        let fsc = text(&raw, "META/filesystem_config.txt")?.ok_or_else(|| {
            AndroidError::Missing(format!("META/filesystem_config.txt in {where_}"))
        })?;
        let mut fs_config = FsConfig::parse(fsc, "META/filesystem_config.txt")?;
        if let Some(v) = text(&raw, "META/vendor_filesystem_config.txt")? {
            fs_config
                .entries
                .extend(FsConfig::parse(v, "META/vendor_filesystem_config.txt")?.entries);
        }
        let fstab_version = misc_info.int_or("fstab_version", 1)?;
        let fstab_name = "RECOVERY/RAMDISK/etc/recovery.fstab";
        let fstab_text = text(&raw, fstab_name)?.ok_or_else(|| {
            AndroidError::Missing(format!(
                "{fstab_name} in {where_} (needed to mount /system)"
            ))
        })?;
        let fstab = Fstab::parse(fstab_text, fstab_version, fstab_name)?;
        let mut trees = Vec::new();
        let system = tree(&raw, "SYSTEM", "system")
            .ok_or_else(|| AndroidError::Missing(format!("SYSTEM/ in {where_}")))?;
        trees.push(system);
        if let Some(v) = tree(&raw, "VENDOR", "vendor") {
            trees.push(v);
        }
        for t in &trees {
            fstab.get(&format!("/{}", t.name))?;
        }
        let cfg = |n: &str| -> Result<Option<FsConfig>> {
            text(&raw, n)?.map(|t| FsConfig::parse(t, n)).transpose()
        };
        let boot_image = bootable(
            &raw,
            "BOOT",
            "boot.img",
            cfg("META/boot_filesystem_config.txt")?,
        )?;
        let recovery_image = bootable(
            &raw,
            "RECOVERY",
            "recovery.img",
            cfg("META/recovery_filesystem_config.txt")?,
        )?;
        let file_contexts = match misc_info.get("selinux_fc") {
            None => None,
            Some(_) => Some(
                file(&raw, "BOOT/RAMDISK/file_contexts")
                    .ok_or_else(|| {
                        AndroidError::Missing(format!(
                            "BOOT/RAMDISK/file_contexts in {where_} (misc_info sets selinux_fc)"
                        ))
                    })?
                    .to_vec(),
            ),
        };
        Ok(TargetFiles {
            source: source.to_path_buf(),
            misc_info,
            build_prop,
            fs_config,
            fstab,
            trees,
            boot_image,
            recovery_image,
            updater: file(&raw, "OTA/bin/updater").map(<[u8]>::to_vec),
            file_contexts,
        })
    }

    /// A build property, or an error naming it (`GetBuildProp`).
    pub fn prop(&self, key: &str) -> Result<&str> {
        self.build_prop.require(key)
    }

    /// `recovery_api_version` from misc_info (default 3).
    pub fn recovery_api_version(&self) -> Result<i64> {
        self.misc_info.int_or("recovery_api_version", 3)
    }

    /// The partition tree named `name`.
    pub fn tree(&self, name: &str) -> Option<&Tree> {
        self.trees.iter().find(|t| t.name == name)
    }
}
