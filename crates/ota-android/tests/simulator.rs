//! The recovery simulator against hostile and broken packages: nothing is
//! written outside ROOT, errors say what happened.

mod common;
use common::package;
use ota_android::recovery::{self, ApplyOptions};
use std::path::Path;

fn run(dir: &Path, script: &str, files: &[(&str, &[u8])]) -> Result<String, String> {
    let pkg = package(dir, script, files);
    let mut log = Vec::new();
    recovery::apply(&pkg, &dir.join("root"), ApplyOptions::default(), &mut log)
        .map(|_| String::from_utf8_lossy(&log).to_string())
        .map_err(|e| e.to_string())
}

const MOUNT: &str = "mount(\"ext4\", \"EMMC\", \"/dev/block/system\", \"/system\");\n";

#[test]
fn paths_cannot_leave_root() {
    let d = tempfile::tempdir().unwrap();
    let outside = d.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    let e = run(
        d.path(),
        &format!("{MOUNT}package_extract_file(\"f\", \"/system/../../outside/x\");"),
        &[("f", b"x")],
    )
    .unwrap_err();
    assert!(e.contains("contains '..'"), "{e}");
    // Symlinks to absolute and climbing relative targets resolve inside ROOT.
    let script = format!(
        "{MOUNT}symlink(\"/\", \"/system/abs\");\nsymlink(\"../../../../..\", \"/system/up\");\n\
         package_extract_file(\"f\", \"/system/abs/system/a\");\npackage_extract_file(\"f\", \"/system/up/system/b\");\n\
         package_extract_file(\"f\", \"/system/abs/tmp/c\");"
    );
    run(d.path(), &script, &[("f", b"data")]).unwrap();
    let root = d.path().join("root");
    assert_eq!(std::fs::read(root.join("system/a")).unwrap(), b"data");
    assert_eq!(std::fs::read(root.join("system/b")).unwrap(), b"data");
    assert_eq!(std::fs::read(root.join("tmp/c")).unwrap(), b"data");
    assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0);
    // A package entry with '..' under an extracted directory.
    let e = run(
        d.path(),
        &format!("{MOUNT}package_extract_dir(\"system\", \"/system\");"),
        &[("system/../../evil", b"x")],
    )
    .unwrap_err();
    assert!(e.contains("not a safe path"), "{e}");
    // Raw partitions stay under ROOT/dev.
    let e = run(
        d.path(),
        "write_raw_image(package_extract_file(\"f\"), \"../../etc\");",
        &[("f", b"x")],
    )
    .unwrap_err();
    assert!(e.contains("bad MTD partition name"), "{e}");
    let e = run(
        d.path(),
        "package_extract_file(\"f\", \"/dev/../outside/y\");",
        &[("f", b"x")],
    )
    .unwrap_err();
    assert!(e.contains("contains '..'"), "{e}");
}

#[test]
fn unmounted_unknown_and_unsupported_are_errors() {
    let d = tempfile::tempdir().unwrap();
    let e = run(
        d.path(),
        "package_extract_file(\"f\", \"/system/x\");",
        &[("f", b"x")],
    )
    .unwrap_err();
    assert!(
        e.contains("/system/x is not on a mounted partition (mounted: none)"),
        "{e}"
    );
    let e = run(d.path(), "frobnicate(\"a\");", &[]).unwrap_err();
    assert_eq!(e, "script aborted: unknown function frobnicate()");
    let e = run(
        d.path(),
        "run_program(\"/sbin/busybox\", \"rm\", \"-rf\", \"/\");",
        &[],
    )
    .unwrap_err();
    assert!(e.contains("run_program() is not simulated"), "{e}");
    let e = run(
        d.path(),
        &format!("{MOUNT}set_metadata(\"/system\", \"owner\", \"0\");"),
        &[],
    )
    .unwrap_err();
    assert!(e.contains("invalid key \"owner\""), "{e}");
    let e = run(d.path(), &format!("{MOUNT}{MOUNT}"), &[]).unwrap_err();
    assert!(e.contains("already mounted"), "{e}");
    let e = run(d.path(), "package_extract_file(\"nope\", \"/tmp/x\");", &[]).unwrap_err();
    assert!(e.contains("no nope in the package"), "{e}");
    let e = run(d.path(), "ui_print(\"a\"", &[]).unwrap_err();
    assert!(e.starts_with("updater-script:1:"), "{e}");
    let e = run(
        d.path(),
        "abort(\"custom stop\"); ui_print(\"never\");",
        &[],
    )
    .unwrap_err();
    assert_eq!(e, "script aborted: custom stop");
}

#[test]
fn apply_patch_refuses_wrong_sources_and_keeps_the_file() {
    let d = tempfile::tempdir().unwrap();
    let old = b"hello old world, this is the source file".repeat(50);
    let new = b"hello new world, this is the target file".repeat(50);
    let mut patch = Vec::new();
    let opts = ota_delta::DiffOptions {
        format: ota_delta::Format::Bsdiff40,
        ..Default::default()
    };
    ota_delta::diff_bytes(&old, &new, &opts, &mut patch).unwrap();
    let sha = |b: &[u8]| ota_android::package::sha1_hex(b);
    let root = d.path().join("root");
    std::fs::create_dir_all(root.join("system")).unwrap();
    std::fs::write(root.join("system/f"), b"something else entirely").unwrap();
    let script = format!(
        "{MOUNT}apply_patch(\"/system/f\", \"-\", {}, {}, {}, package_extract_file(\"p\"));",
        sha(&new),
        new.len(),
        sha(&old)
    );
    let e = run(d.path(), &script, &[("p", &patch)]).unwrap_err();
    assert!(e.contains("matches none of the patches' sources"), "{e}");
    assert_eq!(
        std::fs::read(root.join("system/f")).unwrap(),
        b"something else entirely"
    );
    // The right source is patched; a saved copy from an interrupted run is used when the file is gone.
    std::fs::write(root.join("system/f"), &old).unwrap();
    run(d.path(), &script, &[("p", &patch)]).unwrap();
    assert_eq!(std::fs::read(root.join("system/f")).unwrap(), new);
    std::fs::write(root.join("system/f"), b"torn write").unwrap();
    std::fs::create_dir_all(root.join("cache")).unwrap();
    std::fs::write(root.join("cache/saved.file"), &old).unwrap();
    run(d.path(), &script, &[("p", &patch)]).unwrap();
    assert_eq!(std::fs::read(root.join("system/f")).unwrap(), new);
    assert!(!root.join("cache/saved.file").exists());
    // A corrupt patch: refused, file untouched.
    std::fs::write(root.join("system/f"), &old).unwrap();
    let mut bad = patch.clone();
    let n = bad.len();
    bad.truncate(n - 10);
    let e = run(d.path(), &script, &[("p", &bad)]).unwrap_err();
    assert!(e.contains("apply_patch: patching /system/f"), "{e}");
    assert_eq!(std::fs::read(root.join("system/f")).unwrap(), old);
}

#[test]
fn the_host_root_is_refused() {
    let d = tempfile::tempdir().unwrap();
    let pkg = package(d.path(), "ui_print(\"hi\");", &[]);
    let e = recovery::apply(
        &pkg,
        Path::new("/"),
        ApplyOptions::default(),
        &mut Vec::new(),
    )
    .unwrap_err();
    assert!(e.to_string().contains("ROOT is the host's /"), "{e}");
    let e = recovery::apply(
        &pkg,
        Path::new("/tmp/../"),
        ApplyOptions::default(),
        &mut Vec::new(),
    )
    .unwrap_err();
    assert!(e.to_string().contains("ROOT is the host's /"), "{e}");
}

#[test]
fn mount_points_come_from_the_fstab() {
    let d = tempfile::tempdir().unwrap();
    // The default fstab: the usual partitions, nothing else.
    let e = run(
        d.path(),
        "mount(\"ext4\", \"EMMC\", \"/dev/block/x\", \"/mnt/x\");",
        &[],
    )
    .unwrap_err();
    assert!(
        e.contains("/mnt/x is not a mount point of the fstab (known: /cache, /data"),
        "{e}"
    );
    let e = run(
        d.path(),
        "format(\"ext4\", \"EMMC\", \"/dev/block/x\", \"0\", \"/\");",
        &[],
    )
    .unwrap_err();
    assert!(e.contains("/ is not a mount point of the fstab"), "{e}");
    // A device's own fstab (v2 here) replaces the default.
    let fstab = ota_android::fstab::Fstab::parse_any(
        "/dev/block/by-name/system /system_root ext4 ro wait\n",
        "recovery.fstab",
    )
    .unwrap();
    let pkg = package(
        d.path(),
        "mount(\"ext4\", \"EMMC\", \"/dev/block/by-name/system\", \"/system_root\");\n\
         package_extract_file(\"f\", \"/system_root/x\");\n\
         mount(\"ext4\", \"EMMC\", \"/dev/block/by-name/system\", \"/system\");",
        &[("f", b"x")],
    );
    let root = d.path().join("root");
    let opts = ApplyOptions {
        fstab: Some(fstab),
        ..Default::default()
    };
    let e = recovery::apply(&pkg, &root, opts, &mut Vec::new())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("/system is not a mount point of the fstab (known: /system_root)"),
        "{e}"
    );
    assert_eq!(std::fs::read(root.join("system_root/x")).unwrap(), b"x");
}

#[test]
fn partitions_stay_under_dev() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path().join("root");
    std::fs::create_dir_all(root.join("dev/block/by-name")).unwrap();
    std::fs::create_dir_all(root.join("system")).unwrap();
    // A by-name link to another device node is followed...
    std::os::unix::fs::symlink("../mmcblk0p5", root.join("dev/block/by-name/boot")).unwrap();
    run(
        d.path(),
        "package_extract_file(\"f\", \"/dev/block/by-name/boot\");",
        &[("f", b"boot")],
    )
    .unwrap();
    assert_eq!(
        std::fs::read(root.join("dev/block/mmcblk0p5")).unwrap(),
        b"boot"
    );
    // ...one that leaves /dev is not, even inside ROOT.
    std::os::unix::fs::symlink("/system/bin/sh", root.join("dev/block/by-name/recovery")).unwrap();
    let e = run(
        d.path(),
        "package_extract_file(\"f\", \"/dev/block/by-name/recovery\");",
        &[("f", b"r")],
    )
    .unwrap_err();
    assert!(
        e.contains("partition /dev/block/by-name/recovery leads to /system/bin/sh, outside /dev"),
        "{e}"
    );
    assert!(!root.join("system/bin").exists());
}
