//! Incremental OTA packages (`WriteIncrementalOTAPackage`, KitKat order):
//! check every file to be patched, then delete, patch, unpack, relink and
//! set permissions, with `system/build.prop` patched last so that an
//! interrupted install still looks like the old build and is retried.
//!
//! Patches are BSDIFF40 from the delta engine (stock `applypatch` and
//! Debian's `bspatch` apply them), computed in parallel, largest first. A
//! patch is used when it is at most 0.95 of the file (`patch_threshold`);
//! otherwise the file is sent whole, except `system/build.prop`, which is
//! never sent whole.

use crate::error::{AndroidError, Result};
use crate::package::{self, sha1_hex, BuildOptions, BuildReport, PackageWriter};
use crate::permissions;
use crate::script::Script;
use crate::target_files::{RawNode, TargetFiles};
use rayon::prelude::*;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Files that must never be sent whole.
pub const PROHIBIT_VERBATIM: &[&str] = &["system/build.prop"];
/// A patch is used only if it is at most this fraction of the file.
pub const PATCH_THRESHOLD: f64 = 0.95;

struct Patched {
    path: String,
    src_sha1: String,
    tgt_sha1: String,
    src_size: u64,
    tgt_size: u64,
}

fn bsdiff(old: &[u8], new: &[u8], threads: usize) -> Result<Vec<u8>> {
    let mut patch = Vec::new();
    let opts = ota_delta::DiffOptions {
        format: ota_delta::Format::Bsdiff40,
        threads: threads.max(1),
        ..Default::default()
    };
    ota_delta::diff_bytes(old, new, &opts, &mut patch)?;
    Ok(patch)
}

/// Writes an incremental package from `source` to `target` into `out`.
pub fn write_incremental(
    source: &TargetFiles,
    target: &TargetFiles,
    out: &Path,
    opts: &BuildOptions,
) -> Result<BuildReport> {
    let mut report = BuildReport::default();
    let mut metadata = package::base_metadata(target)?;
    let src_fp = source.prop("ro.build.fingerprint")?.to_string();
    let tgt_fp = target.prop("ro.build.fingerprint")?.to_string();
    metadata.insert(
        "pre-device".into(),
        source.prop("ro.product.device")?.to_string(),
    );
    metadata.insert("pre-build".into(), src_fp.clone());
    if let Some(inc) = source.build_prop.get("ro.build.version.incremental") {
        metadata.insert("pre-build-incremental".into(), inc.to_string());
    }
    if opts.wipe_user_data {
        metadata.insert("ota-wipe".into(), "yes".into());
    }
    let src_ts = package::build_timestamp(source)?;
    let tgt_ts = package::build_timestamp(target)?;
    if tgt_ts < src_ts {
        metadata.insert("ota-downgrade".into(), "yes".into());
    }
    let mut zip = PackageWriter::create(out, opts.signer.as_ref())?;

    // Sort files into verbatim, changed and deleted.
    let mut verbatim: Vec<(String, u64)> = Vec::new();
    let mut changed: Vec<(&str, &[u8], &[u8])> = Vec::new();
    let mut deleted: Vec<String> = Vec::new();
    for t in &target.trees {
        let src_files: BTreeMap<&str, &[u8]> = source
            .tree(&t.name)
            .map(|s| s.files().collect())
            .unwrap_or_default();
        for (path, data) in t.files() {
            match src_files.get(path) {
                None => {
                    if PROHIBIT_VERBATIM.contains(&path) {
                        return Err(AndroidError::Invalid(format!("\"{path}\" must be sent verbatim, which is prohibited: the source build has no {path}")));
                    }
                    verbatim.push((path.to_string(), data.len() as u64));
                }
                Some(old) if *old != data => changed.push((path, old, data)),
                Some(_) => {}
            }
        }
        let tgt_files: BTreeSet<&str> = t.files().map(|(p, _)| p).collect();
        deleted.extend(
            src_files
                .keys()
                .filter(|p| !tgt_files.contains(*p))
                .map(|p| format!("/{p}")),
        );
    }
    if let Some(s) = source.trees.iter().find(|s| target.tree(&s.name).is_none()) {
        return Err(AndroidError::Invalid(format!("the source build has /{} and the target does not; an incremental cannot remove a partition", s.name)));
    }

    // Diff in parallel, largest first so the long ones start early.
    changed.sort_by_key(|(_, _, new)| std::cmp::Reverse(new.len()));
    let threads = if opts.worker_threads == 0 {
        rayon::current_num_threads()
    } else {
        opts.worker_threads
    };
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .map_err(|e| AndroidError::Invalid(format!("starting {threads} diff workers: {e}")))?;
    let per_diff = if changed.len() > 1 { 1 } else { threads };
    let patches: Vec<Result<Vec<u8>>> = pool.install(|| {
        changed
            .par_iter()
            .map(|(_, old, new)| bsdiff(old, new, per_diff))
            .collect()
    });

    let mut patch_list: Vec<Patched> = Vec::new();
    for ((path, old, new), patch) in changed.iter().zip(patches) {
        let patch = patch.map_err(|e| AndroidError::Invalid(format!("diffing {path}: {e}")))?;
        let too_big = patch.len() as f64 > new.len() as f64 * PATCH_THRESHOLD;
        if too_big && !PROHIBIT_VERBATIM.contains(path) {
            verbatim.push((path.to_string(), new.len() as u64));
            continue;
        }
        zip.add(&format!("patch/{path}.p"), &patch, 0o644)?;
        report
            .patched
            .push((path.to_string(), patch.len() as u64, new.len() as u64));
        patch_list.push(Patched {
            path: path.to_string(),
            src_sha1: sha1_hex(old),
            tgt_sha1: sha1_hex(new),
            src_size: old.len() as u64,
            tgt_size: new.len() as u64,
        });
    }
    patch_list.sort_by(|a, b| a.path.cmp(&b.path));
    report.patched.sort();
    verbatim.sort();
    let mut whole: Vec<(&str, &[u8], u32)> = Vec::new();
    for (path, _) in &verbatim {
        let t = target.trees.iter().find(|t| t.entries.contains_key(path));
        if let Some(RawNode::File { data, .. }) = t.and_then(|t| t.entries.get(path)) {
            let perms = target.fs_config.get(path).map_or(0o644, |m| m.mode);
            whole.push((path, data, perms));
        }
    }
    zip.add_all(&whole)?;
    let largest_source_size = patch_list.iter().map(|p| p.src_size).max().unwrap_or(0);

    // Boot and recovery images.
    let boot = match (&source.boot_image, &target.boot_image) {
        (Some(s), Some(t)) if s != t => {
            let p = target.fstab.get("/boot")?;
            let (s_sha, t_sha) = (sha1_hex(s), sha1_hex(t));
            let spec = format!(
                "{}:{}:{}:{s_sha}:{}:{t_sha}",
                p.partition_type()?,
                p.device,
                s.len(),
                t.len(),
            );
            let patch = bsdiff(s, t, threads)?;
            zip.add("patch/boot.img.p", &patch, 0o644)?;
            report
                .patched
                .push(("boot.img".into(), patch.len() as u64, t.len() as u64));
            Some((spec, s.len() as u64, t.len() as u64, s_sha, t_sha))
        }
        (None, Some(_)) => {
            report
                .notes
                .push("the source build has no boot image: boot is not updated".into());
            None
        }
        _ => None,
    };
    let updating_recovery = match (&target.boot_image, &target.recovery_image) {
        (Some(b), Some(r))
            if (source.recovery_image.as_ref() != Some(r)
                || source.boot_image.as_ref() != Some(b))
                && target.fstab.get("/recovery").is_ok() =>
        {
            for (name, data, perms) in package::recovery_patch(target, b, r)? {
                zip.add(&name, &data, perms)?;
            }
            true
        }
        _ => false,
    };

    let mut script = Script::new(
        target.fstab.clone(),
        target.misc_info.flag("use_set_metadata"),
    );
    for t in &target.trees {
        script.mount(&format!("/{}", t.name))?;
    }
    script.assert_some_fingerprint(&[&src_fp, &tgt_fp]);
    script.assert_device(target.prop("ro.product.device")?);
    script.print("Verifying current system...");
    script.show_progress(0.1, 0);
    let mut total_verify = patch_list.iter().map(|p| p.src_size).sum::<u64>() as f64 + 1.0;
    if let Some((_, s, ..)) = &boot {
        total_verify += *s as f64;
    }
    let mut so_far = 0.0;
    for p in &patch_list {
        script.patch_check(&format!("/{}", p.path), &[&p.tgt_sha1, &p.src_sha1]);
        so_far += p.src_size as f64;
        script.set_progress(so_far / total_verify);
    }
    if let Some((spec, s, ..)) = &boot {
        script.patch_check(spec, &[]);
        so_far += *s as f64;
        script.set_progress(so_far / total_verify);
    }
    if !patch_list.is_empty() || updating_recovery || boot.is_some() {
        script.cache_free_space_check(largest_source_size.max(boot.as_ref().map_or(0, |b| b.1)));
    }
    script.comment("---- start making changes here ----");
    if opts.wipe_user_data {
        script.print("Erasing user data...");
        script.format_partition("/data")?;
    }
    script.print("Removing unneeded files...");
    let mut to_delete: Vec<String> = verbatim.iter().map(|(p, _)| format!("/{p}")).collect();
    to_delete.extend(deleted.iter().cloned());
    to_delete.push("/system/recovery.img".into());
    script.delete_files(&to_delete);
    script.show_progress(0.8, 0);
    let mut total_patch = patch_list.iter().map(|p| p.tgt_size).sum::<u64>() as f64 + 1.0;
    if let Some((_, _, t, ..)) = &boot {
        total_patch += *t as f64;
    }
    let mut so_far = 0.0;
    script.print("Patching system files...");
    let mut deferred = Vec::new();
    for p in &patch_list {
        if PROHIBIT_VERBATIM.contains(&p.path.as_str()) {
            deferred.push(p);
            continue;
        }
        let f = format!("/{}", p.path);
        script.apply_patch(
            &f,
            "-",
            p.tgt_size,
            &p.tgt_sha1,
            &p.src_sha1,
            &format!("patch/{}.p", p.path),
        );
        so_far += p.tgt_size as f64;
        script.set_progress(so_far / total_patch);
    }
    if let Some((spec, _, t, s_sha, t_sha)) = &boot {
        script.print("Patching boot image...");
        script.apply_patch(spec, "-", *t, t_sha, s_sha, "patch/boot.img.p");
        so_far += *t as f64;
        script.set_progress(so_far / total_patch);
    }
    if updating_recovery {
        script.delete_files(&[
            "/system/recovery-from-boot.p".into(),
            "/system/etc/install-recovery.sh".into(),
        ]);
    }
    script.show_progress(0.1, 10);

    // Symlinks: remove the ones the target lacks before unpacking (a link
    // may become a file), then create new or changed ones.
    let mut temp = script.temporary();
    for t in &target.trees {
        let (tree, cfg) = package::with_recovery_items(target, t);
        permissions::set_permissions(&tree, &cfg, &mut temp)?;
    }
    let tgt_links: BTreeMap<String, String> = target
        .trees
        .iter()
        .flat_map(|t| t.symlinks())
        .map(|(dest, link)| (link, dest))
        .collect();
    let src_links: BTreeMap<String, String> = source
        .trees
        .iter()
        .flat_map(|t| t.symlinks())
        .map(|(dest, link)| (link, dest))
        .collect();
    let stale: Vec<String> = src_links
        .keys()
        .filter(|l| !tgt_links.contains_key(*l))
        .cloned()
        .collect();
    script.delete_files(&stale);
    if !verbatim.is_empty() {
        script.print("Unpacking new files...");
        for t in &target.trees {
            if verbatim
                .iter()
                .any(|(p, _)| p.starts_with(&format!("{}/", t.name)))
            {
                script.unpack_package_dir(&t.name, &format!("/{}", t.name));
            }
        }
    }
    if updating_recovery {
        script.print("Unpacking new recovery...");
        script.unpack_package_dir("recovery", "/system");
    }
    script.print("Symlinks and permissions...");
    let to_create: Vec<(String, String)> = tgt_links
        .iter()
        .filter(|(link, dest)| src_links.get(*link) != Some(*dest))
        .map(|(link, dest)| (dest.clone(), link.clone()))
        .collect();
    script.delete_files(&to_create.iter().map(|(_, l)| l.clone()).collect::<Vec<_>>());
    script.make_symlinks(&to_create);
    script.append_script(temp);
    if let Some(extra) = &opts.extra_script {
        script.append_extra(extra);
    }
    if !deferred.is_empty() {
        script.print("Patching remaining system files...");
        for p in deferred {
            let f = format!("/{}", p.path);
            script.apply_patch(
                &f,
                "-",
                p.tgt_size,
                &p.tgt_sha1,
                &p.src_sha1,
                &format!("patch/{}.p", p.path),
            );
        }
        let m = crate::fs_config::Meta {
            uid: 0,
            gid: 0,
            mode: 0o644,
            selabel: None,
            capabilities: None,
        };
        script.set_permissions("/system/build.prop", &m);
    }

    zip.finish_script(&script, target, &metadata, &mut report)?;
    report.verbatim = verbatim.into_iter().map(|(p, _)| p).collect();
    report.deleted = deleted;
    zip.finish(opts.signer.as_ref(), &mut report)?;
    Ok(report)
}
