//! Sample versions, packs and bundles for tests (this crate's and
//! `ota-cli`'s): real content, real patches, real signatures.
//!
//! - [`sample_trees`] writes four versions of a directory tree
//!   ([`SAMPLE_VERSIONS`]) made of ELF binaries copied from this machine,
//!   text, symlinks and empty directories, changing between versions by
//!   edits, renames, deletions, mode changes, symlink retargets and kind
//!   changes (a symlink becomes a file, a file a symlink);
//! - [`sample_files`] writes the same versions of a single file;
//! - [`build_chain`] diffs consecutive versions (`ota-delta`), wraps each
//!   patch in a pack and signs it; [`pack_info`], [`diff_versions`] and
//!   [`pack_and_sign`] are its steps, for packs made wrong on purpose;
//! - [`bundle_members`] and [`write_raw_bundle`] lay out a bundle member by
//!   member (any names, any order), [`write_bundle_file`] the proper way;
//! - [`rewrite_tree_manifest`] edits the manifest inside an `OTATREE1`
//!   patch (hostile paths a diff never writes);
//! - [`snapshot`] records a target byte for byte, to show it unchanged.

use crate::bundle::{apply_log, member_names, write_bundle, Hop, APPLY_LOG};
use crate::error::{BundleError, Result};
use crate::pack::{write_pack, PackDirection, PackInfo, PatchFormat};
use ota_core::signing::SecretKey;
use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// The version names of [`sample_trees`] and [`sample_files`], in order.
pub const SAMPLE_VERSIONS: [&str; 4] = ["1.0.0", "1.0.1", "1.1.0", "2.0.0"];

fn io_err(what: String) -> impl FnOnce(std::io::Error) -> BundleError {
    move |e| BundleError::io(what, e)
}

/// Up to `count` ELF binaries from `/usr/bin` (20 KB to 1.5 MB each, in
/// name order, so the same machine gives the same ones), padded with
/// pseudo-random stand-ins when there are fewer.
pub fn elf_binaries(count: usize) -> Vec<(String, Vec<u8>)> {
    let mut names: Vec<PathBuf> = fs::read_dir("/usr/bin")
        .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    names.sort();
    let mut out = Vec::new();
    for p in names {
        if out.len() == count {
            break;
        }
        let Ok(meta) = fs::metadata(&p) else { continue };
        if !meta.is_file() || !(20_000..=1_500_000).contains(&meta.len()) {
            continue;
        }
        let Ok(data) = fs::read(&p) else { continue };
        if data.starts_with(b"\x7fELF") {
            let name = p
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            out.push((name, data));
        }
    }
    while out.len() < count {
        let seed = out.len() as u32 + 1;
        out.push((format!("standin{seed}"), pseudo_random(200_000, seed)));
    }
    out
}

/// Deterministic bytes that do not compress.
pub fn pseudo_random(n: usize, seed: u32) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2_654_435_761).max(1);
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

/// One entry of a tree to write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Node {
    /// A directory with its mode.
    Dir(u32),
    /// A file: content and mode.
    File(Vec<u8>, u32),
    /// A symlink and its text.
    Link(String),
}

/// Writes `nodes` (relative paths) under `root`, which must not exist.
/// Directories get their modes last, deepest first.
pub fn write_tree(root: &Path, nodes: &BTreeMap<String, Node>) -> Result<()> {
    fs::create_dir(root).map_err(io_err(format!("creating {}", root.display())))?;
    let mut dirs = Vec::new();
    for (rel, node) in nodes {
        let p = root.join(rel);
        if let Some(parent) = p.parent() {
            fs::create_dir_all(parent).map_err(io_err(format!("creating {}", parent.display())))?;
        }
        match node {
            Node::Dir(mode) => {
                fs::create_dir_all(&p).map_err(io_err(format!("creating {}", p.display())))?;
                dirs.push((rel.matches('/').count(), p, *mode));
            }
            Node::File(data, mode) => {
                fs::write(&p, data).map_err(io_err(format!("writing {}", p.display())))?;
                fs::set_permissions(&p, fs::Permissions::from_mode(*mode))
                    .map_err(io_err(format!("setting the mode of {}", p.display())))?;
            }
            Node::Link(target) => std::os::unix::fs::symlink(target, &p)
                .map_err(io_err(format!("creating {}", p.display())))?,
        }
    }
    dirs.sort_by_key(|d| std::cmp::Reverse(d.0));
    for (_, p, mode) in dirs {
        fs::set_permissions(&p, fs::Permissions::from_mode(mode))
            .map_err(io_err(format!("setting the mode of {}", p.display())))?;
    }
    Ok(())
}

/// The four sample versions as node maps.
pub fn sample_nodes() -> Vec<BTreeMap<String, Node>> {
    let elf = elf_binaries(5);
    let text = |s: &str| Node::File(s.as_bytes().to_vec(), 0o644);
    let readme: String = (0..400)
        .map(|i| format!("line {i}: the quick brown fox\n"))
        .collect();
    let mut v1 = BTreeMap::new();
    for (i, (_, data)) in elf.iter().take(3).enumerate() {
        v1.insert(format!("bin/tool{i}"), Node::File(data.clone(), 0o755));
    }
    v1.insert("bin/sh".into(), Node::Link("tool0".into()));
    v1.insert("etc".into(), Node::Dir(0o755));
    v1.insert("etc/app.conf".into(), text("threads = 4\nlog = info\n"));
    v1.insert(
        "etc/secret".into(),
        Node::File(b"token=abc\n".to_vec(), 0o600),
    );
    v1.insert("lib/libfoo.so".into(), Node::File(elf[3].1.clone(), 0o644));
    v1.insert("share/doc/README.txt".into(), text(&readme));
    v1.insert("old/gone.txt".into(), text("soon deleted\n"));
    v1.insert("data".into(), Node::Dir(0o755));

    let mut v2 = v1.clone();
    let mut tool0 = elf[0].1.clone();
    let mid = tool0.len() / 2;
    for b in &mut tool0[mid..mid + 64] {
        *b = b.wrapping_add(1);
    }
    tool0.extend_from_slice(b"\0version 1.0.1\0");
    v2.insert("bin/tool0".into(), Node::File(tool0, 0o755));
    v2.insert("etc/app.conf".into(), text("threads = 8\nlog = info\n"));
    if let Some(r) = v2.remove("share/doc/README.txt") {
        v2.insert("share/doc/README.md".into(), r);
    }
    v2.remove("old/gone.txt");
    if let Some(Node::File(data, _)) = v2.get("bin/tool1").cloned() {
        v2.insert("bin/tool1".into(), Node::File(data, 0o700));
    }
    v2.insert("bin/sh".into(), Node::Link("tool1".into()));
    v2.insert("etc/new.conf".into(), text("feature = on\n"));

    let mut v3 = v2.clone();
    v3.insert("lib/libfoo.so".into(), Node::File(elf[4].1.clone(), 0o644));
    v3.insert("etc".into(), Node::Dir(0o750));
    v3.insert(
        "data/cache/a.bin".into(),
        Node::File(pseudo_random(50_000, 7), 0o644),
    );
    v3.insert("data/cache/b.txt".into(), text("cached\n"));
    v3.remove("bin/tool2");
    v3.insert("lib/link".into(), Node::Link("../bin/tool0".into()));

    let mut v4 = v3.clone();
    v4.insert(
        "bin/sh".into(),
        Node::File(b"#!/bin/true\n".to_vec(), 0o755),
    );
    v4.insert("etc/new.conf".into(), Node::Link("app.conf".into()));
    v4.retain(|k, _| k != "data" && !k.starts_with("data/"));
    v4.insert(
        "share/big.bin".into(),
        Node::File(pseudo_random(1_000_000, 11), 0o644),
    );
    vec![v1, v2, v3, v4]
}

/// Writes the four sample trees under `dir` (as `v1` … `v4`) and returns
/// their paths, in [`SAMPLE_VERSIONS`] order.
pub fn sample_trees(dir: &Path) -> Result<Vec<PathBuf>> {
    sample_nodes()
        .iter()
        .enumerate()
        .map(|(i, nodes)| {
            let p = dir.join(format!("v{}", i + 1));
            write_tree(&p, nodes)?;
            Ok(p)
        })
        .collect()
}

/// Writes four versions of one file under `dir` (`f1` … `f4`: an ELF
/// binary, edited, grown, rewritten) and returns their paths.
pub fn sample_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let elf = elf_binaries(1).remove(0).1;
    let mut versions = vec![elf.clone()];
    let mut v2 = elf.clone();
    let mid = v2.len() / 3;
    v2[mid..mid + 100].fill(0x90);
    versions.push(v2.clone());
    let mut v3 = v2;
    v3.extend_from_slice(&pseudo_random(30_000, 3));
    versions.push(v3);
    versions.push(pseudo_random(elf.len() / 2, 4));
    versions
        .into_iter()
        .enumerate()
        .map(|(i, data)| {
            let p = dir.join(format!("f{}", i + 1));
            fs::write(&p, data).map_err(io_err(format!("writing {}", p.display())))?;
            fs::set_permissions(&p, fs::Permissions::from_mode(0o755))
                .map_err(io_err(format!("setting the mode of {}", p.display())))?;
            Ok(p)
        })
        .collect()
}

/// Diffs two versions into `patch`: `OTATREE1` for directories,
/// `OTADIFF1` for files.
pub fn diff_versions(old: &Path, new: &Path, patch: &Path) -> Result<PatchFormat> {
    let delta = |e| BundleError::Delta {
        what: format!("diffing {} and {}", old.display(), new.display()),
        source: e,
    };
    let opts = ota_delta::DiffOptions::default();
    if old.is_dir() {
        ota_delta::tree::diff_trees(old, new, patch, None, &opts).map_err(delta)?;
        Ok(PatchFormat::Otatree1)
    } else {
        ota_delta::diff_files(old, new, patch, &opts).map_err(delta)?;
        Ok(PatchFormat::Otadiff1)
    }
}

/// The info of a pack from version `from` to `to` (name and path each),
/// digests computed (`ota_core::digest`); the patch fields are filled in
/// by [`write_pack`].
pub fn pack_info(
    package: &str,
    branch: &str,
    from: (&str, &Path),
    to: (&str, &Path),
    format: PatchFormat,
) -> Result<PackInfo> {
    let digest = |p: &Path| {
        ota_core::digest::digest_path(p)
            .map(|d| d.as_str().to_owned())
            .map_err(io_err(format!("computing the digest of {}", p.display())))
    };
    Ok(PackInfo {
        package: package.into(),
        branch: branch.into(),
        from: from.0.into(),
        to: to.0.into(),
        direction: PackDirection::Upgrade,
        format,
        from_digest: digest(from.1)?,
        to_digest: digest(to.1)?,
        patch_sha256: String::new(),
        patch_size: 0,
    })
}

/// A pack written and signed.
#[derive(Clone, Debug)]
pub struct BuiltPack {
    /// The pack file.
    pub path: PathBuf,
    /// What it says.
    pub info: PackInfo,
    /// Its Ed25519 signature.
    pub signature: [u8; 64],
}

impl BuiltPack {
    /// This pack as a bundle hop (the hash member is its `to_digest`).
    pub fn hop(&self) -> Hop<'_> {
        Hop {
            pack: &self.path,
            hash: &self.info.to_digest,
            signature: &self.signature,
        }
    }

    /// The pack file's bytes.
    pub fn bytes(&self) -> Result<Vec<u8>> {
        fs::read(&self.path).map_err(io_err(format!("reading {}", self.path.display())))
    }
}

/// Writes the pack of `info` and `patch` to `out` and signs the file.
pub fn pack_and_sign(
    info: &PackInfo,
    patch: &Path,
    out: &Path,
    key: &SecretKey,
) -> Result<BuiltPack> {
    let mut f = fs::File::create(out).map_err(io_err(format!("creating {}", out.display())))?;
    let info = write_pack(info, patch, &mut f)?;
    f.sync_all()
        .map_err(io_err(format!("writing {}", out.display())))?;
    let bytes = fs::read(out).map_err(io_err(format!("reading {}", out.display())))?;
    Ok(BuiltPack {
        path: out.to_path_buf(),
        info,
        signature: key.sign(&bytes),
    })
}

/// A pack of app/stable from sample version `a` to `b` (paths in
/// `versions`), made in `dir` as `NAME.patch` and `NAME.pack`, with `edit`
/// applied to its info and `edit_patch` to its patch before it is written
/// and signed: how tests build packs that lie.
#[allow(clippy::too_many_arguments)]
pub fn custom_pack(
    dir: &Path,
    versions: &[PathBuf],
    key: &SecretKey,
    name: &str,
    a: usize,
    b: usize,
    edit: impl FnOnce(&mut PackInfo),
    edit_patch: impl FnOnce(&Path),
) -> Result<BuiltPack> {
    let patch = dir.join(format!("{name}.patch"));
    let format = diff_versions(&versions[a], &versions[b], &patch)?;
    edit_patch(&patch);
    let mut info = pack_info(
        "app",
        "stable",
        (SAMPLE_VERSIONS[a], &versions[a]),
        (SAMPLE_VERSIONS[b], &versions[b]),
        format,
    )?;
    edit(&mut info);
    pack_and_sign(&info, &patch, &dir.join(format!("{name}.pack")), key)
}

/// Packs from each version to the next (`versions`: name and path), made
/// in `work` (`pack_N.tar.gz`, `patch_N`) and signed with `key`.
pub fn build_chain(
    package: &str,
    branch: &str,
    versions: &[(&str, &Path)],
    key: &SecretKey,
    work: &Path,
) -> Result<Vec<BuiltPack>> {
    versions
        .windows(2)
        .enumerate()
        .map(|(i, w)| {
            let n = i + 1;
            let patch = work.join(format!("patch_{n}"));
            let format = diff_versions(w[0].1, w[1].1, &patch)?;
            let info = pack_info(package, branch, w[0], w[1], format)?;
            pack_and_sign(&info, &patch, &work.join(format!("pack_{n}.tar.gz")), key)
        })
        .collect()
}

/// Writes the bundle of `packs` to `out`.
pub fn write_bundle_file(packs: &[BuiltPack], out: &Path) -> Result<()> {
    let hops: Vec<Hop<'_>> = packs.iter().map(BuiltPack::hop).collect();
    let f = fs::File::create(out).map_err(io_err(format!("creating {}", out.display())))?;
    write_bundle(&hops, f)?;
    Ok(())
}

/// The members of the bundle of `packs`, names and bytes, in the order
/// [`write_bundle`] writes them: edit and pass to [`write_raw_bundle`].
pub fn bundle_members(packs: &[BuiltPack]) -> Result<Vec<(String, Vec<u8>)>> {
    let mut out = Vec::new();
    for (i, p) in packs.iter().enumerate() {
        let [pack, hash, sig] = member_names(i + 1);
        out.push((pack, p.bytes()?));
        out.push((hash, format!("{}\n", p.info.to_digest).into_bytes()));
        out.push((sig, p.signature.to_vec()));
    }
    out.push((APPLY_LOG.into(), apply_log(packs.len()).into_bytes()));
    Ok(out)
}

/// Writes a gzip'd tar of `members` (names as given, in order, regular
/// files 0644) to `out`. Names go into the header as they are (at most
/// 100 bytes), `..` included: this is for making hostile bundles.
pub fn write_raw_bundle(members: &[(String, Vec<u8>)], out: &Path) -> Result<()> {
    let f = fs::File::create(out).map_err(io_err(format!("creating {}", out.display())))?;
    let gz = flate2::write::GzEncoder::new(f, flate2::Compression::fast());
    let mut tar = tar::Builder::new(gz);
    let w = |e| BundleError::io(format!("writing {}", out.display()), e);
    for (name, data) in members {
        let mut h = tar::Header::new_ustar();
        let slot = &mut h.as_old_mut().name;
        if name.len() > slot.len() {
            return Err(BundleError::malformed(
                name.as_str(),
                "member names here are at most 100 bytes",
            ));
        }
        slot[..name.len()].copy_from_slice(name.as_bytes());
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(0);
        h.set_entry_type(tar::EntryType::Regular);
        h.set_cksum();
        tar.append(&h, data.as_slice()).map_err(w)?;
    }
    let gz = tar.into_inner().map_err(w)?;
    let mut f = gz.finish().map_err(w)?;
    f.flush().map_err(w)?;
    Ok(())
}

/// Rewrites the manifest of the `OTATREE1` patch at `patch` with `edit`
/// (the delta after it is kept as it is).
pub fn rewrite_tree_manifest(
    patch: &Path,
    edit: impl FnOnce(&mut ota_delta::tree::Manifest),
) -> Result<()> {
    let bad = |why: String| BundleError::malformed(patch.display().to_string(), why);
    let mut bytes = Vec::new();
    fs::File::open(patch)
        .and_then(|mut f| f.read_to_end(&mut bytes))
        .map_err(io_err(format!("reading {}", patch.display())))?;
    let len = bytes
        .get(8..16)
        .and_then(|b| <[u8; 8]>::try_from(b).ok())
        .map(u64::from_le_bytes)
        .ok_or_else(|| bad("not an OTATREE1 patch".into()))?;
    let end = usize::try_from(len)
        .ok()
        .and_then(|l| l.checked_add(16))
        .filter(|&e| e <= bytes.len() && bytes.starts_with(ota_delta::tree::MAGIC))
        .ok_or_else(|| bad("not an OTATREE1 patch".into()))?;
    let json = zstd::decode_all(&bytes[16..end]).map_err(|e| bad(e.to_string()))?;
    let mut manifest: ota_delta::tree::Manifest =
        serde_json::from_slice(&json).map_err(|e| bad(e.to_string()))?;
    edit(&mut manifest);
    let json = serde_json::to_vec(&manifest).map_err(|e| bad(e.to_string()))?;
    let z = zstd::encode_all(json.as_slice(), 3).map_err(|e| bad(e.to_string()))?;
    let mut out = ota_delta::tree::MAGIC.to_vec();
    out.extend_from_slice(&(z.len() as u64).to_le_bytes());
    out.extend_from_slice(&z);
    out.extend_from_slice(&bytes[end..]);
    fs::write(patch, out).map_err(io_err(format!("writing {}", patch.display())))
}

/// What [`snapshot`] records of one entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Snap {
    /// A directory and its mode.
    Dir(u32),
    /// A file: mode and bytes.
    File(u32, Vec<u8>),
    /// A symlink's text.
    Link(Vec<u8>),
}

/// Everything at `root`, byte for byte, without following symlinks: each
/// entry's kind, mode and content or link text, by relative path (`""`
/// for `root` itself when it is a file). Two equal snapshots mean an
/// unchanged target.
pub fn snapshot(root: &Path) -> Result<BTreeMap<String, Snap>> {
    use std::os::unix::ffi::OsStrExt;
    fn walk(dir: &Path, rel: &str, out: &mut BTreeMap<String, Snap>) -> Result<()> {
        let entries = fs::read_dir(dir).map_err(io_err(format!("listing {}", dir.display())))?;
        for e in entries {
            let e = e.map_err(io_err(format!("listing {}", dir.display())))?;
            let name = e.file_name().to_string_lossy().into_owned();
            let rel = if rel.is_empty() {
                name
            } else {
                format!("{rel}/{name}")
            };
            let p = e.path();
            let m = fs::symlink_metadata(&p).map_err(io_err(format!("reading {}", p.display())))?;
            let mode = m.permissions().mode() & 0o7777;
            if m.file_type().is_symlink() {
                let t = fs::read_link(&p).map_err(io_err(format!("reading {}", p.display())))?;
                out.insert(rel, Snap::Link(t.as_os_str().as_bytes().to_vec()));
            } else if m.is_dir() {
                out.insert(rel.clone(), Snap::Dir(mode));
                walk(&p, &rel, out)?;
            } else {
                let data = fs::read(&p).map_err(io_err(format!("reading {}", p.display())))?;
                out.insert(rel, Snap::File(mode, data));
            }
        }
        Ok(())
    }
    let mut out = BTreeMap::new();
    let m = fs::symlink_metadata(root).map_err(io_err(format!("reading {}", root.display())))?;
    if m.is_dir() {
        walk(root, "", &mut out)?;
    } else {
        let data = fs::read(root).map_err(io_err(format!("reading {}", root.display())))?;
        out.insert(
            String::new(),
            Snap::File(m.permissions().mode() & 0o7777, data),
        );
    }
    Ok(out)
}
