//! Full OTA packages (`WriteFullOTAPackage`): format and refill every file
//! system partition, write the boot image, set every permission.

use crate::error::Result;
use crate::package::{self, BuildOptions, BuildReport, PackageWriter};
use crate::permissions;
use crate::script::Script;
use crate::target_files::{RawNode, TargetFiles};
use std::path::Path;

/// Writes a full OTA package for `target` to `out`.
pub fn write_full(target: &TargetFiles, out: &Path, opts: &BuildOptions) -> Result<BuildReport> {
    let mut report = BuildReport::default();
    let mut metadata = package::base_metadata(target)?;
    let device = target.prop("ro.product.device")?.to_string();
    metadata.insert("pre-device".into(), device.clone());
    if opts.wipe_user_data {
        metadata.insert("ota-wipe".into(), "yes".into());
    }
    let mut zip = PackageWriter::create(out, opts.signer.as_ref())?;
    let mut script = Script::new(
        target.fstab.clone(),
        target.misc_info.flag("use_set_metadata"),
    );

    if !opts.no_prereq {
        let ts = target.prop("ro.build.date.utc")?;
        let text = target.build_prop.get("ro.build.date").unwrap_or(ts);
        script.assert_older_build(ts, text)?;
    }
    script.assert_device(&device);
    script.show_progress(0.5, 0);
    if opts.wipe_user_data {
        script.format_partition("/data")?;
    }
    for t in &target.trees {
        script.format_partition(&format!("/{}", t.name))?;
        script.mount(&format!("/{}", t.name))?;
    }
    let recovery = match (&target.boot_image, &target.recovery_image) {
        (Some(b), Some(r)) if target.fstab.get("/recovery").is_ok() => {
            Some(package::recovery_patch(target, b, r)?)
        }
        (Some(_), Some(_)) => {
            report
                .notes
                .push("recovery.fstab has no /recovery: no recovery-from-boot patch".into());
            None
        }
        _ => None,
    };
    if let Some(entries) = &recovery {
        script.unpack_package_dir("recovery", "/system");
        for (name, data, perms) in entries {
            zip.add(name, data, *perms)?;
        }
    }
    for t in &target.trees {
        script.unpack_package_dir(&t.name, &format!("/{}", t.name));
        let mut files: Vec<(&str, &[u8], u32)> = Vec::new();
        for (path, node) in &t.entries {
            match node {
                RawNode::File { data, .. } => {
                    let perms = target.fs_config.get(path).map_or(0o644, |m| m.mode);
                    files.push((path, data, perms));
                }
                RawNode::Dir { .. } if path != &t.name => {
                    zip.add_dir(path)?;
                }
                _ => {}
            }
        }
        zip.add_all(&files)?;
    }
    for t in &target.trees {
        script.make_symlinks(&t.symlinks());
    }
    for t in &target.trees {
        let (tree, cfg) = package::with_recovery_items(target, t);
        permissions::set_permissions(&tree, &cfg, &mut script)?;
    }
    match &target.boot_image {
        Some(boot) => {
            zip.add("boot.img", boot, 0o644)?;
            script.show_progress(0.2, 0);
            script.show_progress(0.2, 10);
            script.write_raw_image("/boot", "boot.img")?;
            script.show_progress(0.1, 0);
        }
        None => report.notes.push(
            "target-files has no boot image (BOOT/kernel or IMAGES/boot.img): boot is not written"
                .into(),
        ),
    }
    if let Some(fc) = &target.file_contexts {
        zip.add("file_contexts", fc, 0o644)?;
    }
    if let Some(extra) = &opts.extra_script {
        script.append_extra(extra);
    }
    script.unmount_all();
    zip.finish_script(&script, target, &metadata, &mut report)?;
    report.verbatim = target
        .trees
        .iter()
        .flat_map(|t| t.files().map(|(p, _)| p.to_string()))
        .collect();
    zip.finish(opts.signer.as_ref(), &mut report)?;
    Ok(report)
}
