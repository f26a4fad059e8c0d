//! End to end: target-files fixtures → full and incremental packages →
//! the recovery simulator, Debian's bspatch and openssl as independent checks.

mod common;
use common::*;
use ota_android::fixtures::Spec;
use ota_android::package::BuildOptions;
use ota_android::props::Props;
use ota_android::recovery::{self, ApplyOptions};
use ota_android::target_files::{RawNode, TargetFiles};
use ota_android::{full, incremental};
use std::io::Read;
use std::path::Path;
use std::process::Command;

#[test]
fn full_package_installs_build_exactly() {
    let b = Builds::new();
    let root = b.path("root");
    b.device_at(1, &root);
    assert_is_build(&root, &b.specs[0]);
    // Boot partition holds v1's boot image.
    let boot = std::fs::read(root.join("dev/block/platform/msm_sdcc.1/by-name/boot")).unwrap();
    assert_eq!(Some(boot), b.tf(1).boot_image);
    // The script has the reference's shape.
    let mut z = zip::ZipArchive::new(std::fs::File::open(b.path("full-v1.zip")).unwrap()).unwrap();
    let script = entry_text(
        &b.path("full-v1.zip"),
        "META-INF/com/google/android/updater-script",
    );
    let first: Vec<&str> = script.lines().take(6).collect();
    assert!(first[0].starts_with("(!less_than_int(1400000000, getprop(\"ro.build.date.utc\"))) || abort(\"Can't install this package (Tue May 13 1400000000) over newer build (\""), "{}", first[0]);
    assert!(first[1].starts_with("getprop(\"ro.product.device\") == \"hammerhead\" || abort("));
    assert_eq!(first[2], "show_progress(0.500000, 0);");
    assert_eq!(first[3], "format(\"ext4\", \"EMMC\", \"/dev/block/platform/msm_sdcc.1/by-name/system\", \"0\", \"/system\");");
    assert_eq!(first[4], "mount(\"ext4\", \"EMMC\", \"/dev/block/platform/msm_sdcc.1/by-name/system\", \"/system\");");
    assert_eq!(first[5], "package_extract_dir(\"recovery\", \"/system\");");
    // Wrapped at 80 columns under the parenthesis, as releasetools does.
    assert!(script.contains("symlink(\"toolbox\", \"/system/bin/ps\", \"/system/bin/reboot\",\n        \"/system/bin/top\");"), "{script}");
    assert!(script.contains("set_metadata_recursive(\"/system\", \"uid\", 0, \"gid\", 0, \"dmode\", 0755, \"fmode\", 0644, \"capabilities\", 0x0, \"selabel\", \"u:object_r:system_file:s0\");"), "{script}");
    assert!(script.contains("set_metadata(\"/system/bin/run-as\", \"uid\", 0, \"gid\", 2000, \"mode\", 0750, \"capabilities\", 0xc0, \"selabel\", \"u:object_r:runas_exec:s0\");"), "{script}");
    assert!(script.contains(
        "package_extract_file(\"boot.img\", \"/dev/block/platform/msm_sdcc.1/by-name/boot\");"
    ));
    assert!(script.trim_end().ends_with("unmount(\"/system\");"));
    let meta = entry_text(&b.path("full-v1.zip"), "META-INF/com/android/metadata");
    assert_eq!(meta, format!("ota-type=FILE\npost-build={}\npost-build-incremental=eng.1001\npost-timestamp=1400000000\npre-device=hammerhead\n", b.specs[0].fingerprint));
    let ub = z
        .by_name("META-INF/com/google/android/update-binary")
        .unwrap();
    assert_eq!(ub.unix_mode().map(|m| m & 0o777), Some(0o755));
    drop(ub);
    assert!(
        z.by_name("system/bin/sh").is_err(),
        "symlinks must not be stored as files"
    );
}

#[test]
fn full_package_from_directory_equals_zip() {
    let b = Builds::new();
    let dir = b.path("v1-dir");
    b.specs[0].write_dir(&dir).unwrap();
    let from_dir = TargetFiles::open(&dir).unwrap();
    let from_zip = b.tf(1);
    assert_eq!(
        from_dir.trees[0].entries.keys().collect::<Vec<_>>(),
        from_zip.trees[0].entries.keys().collect::<Vec<_>>()
    );
    assert_eq!(from_dir.boot_image, from_zip.boot_image);
    let (a, c) = (b.path("a.zip"), b.path("c.zip"));
    full::write_full(&from_dir, &a, &BuildOptions::default()).unwrap();
    full::write_full(&from_zip, &c, &BuildOptions::default()).unwrap();
    let (a, c) = (std::fs::read(&a).unwrap(), std::fs::read(&c).unwrap());
    let first_diff = a.iter().zip(&c).position(|(x, y)| x != y);
    assert!(
        a.len() == c.len() && first_diff.is_none(),
        "same input, same package: lengths {} {}, first difference at {first_diff:?}",
        a.len(),
        c.len()
    );
}

#[test]
fn incremental_turns_v1_into_v2_and_refuses_others() {
    let b = Builds::new();
    let inc = b.path("inc.zip");
    let report = incremental::write_incremental(
        &b.tf(1),
        &b.tf(2),
        &inc,
        &BuildOptions {
            worker_threads: 2,
            ..Default::default()
        },
    )
    .unwrap();
    let patched: Vec<&str> = report.patched.iter().map(|(p, _, _)| p.as_str()).collect();
    for p in [
        "system/bin/mksh",
        "system/lib/libc.so",
        "system/app/Settings.apk",
        "system/build.prop",
        "boot.img",
    ] {
        assert!(patched.contains(&p), "{p} should be patched: {patched:?}");
    }
    assert!(
        report
            .verbatim
            .contains(&"system/etc/random.bin".to_string()),
        "{:?}",
        report.verbatim
    );
    assert!(report
        .verbatim
        .contains(&"system/app/NewApp.apk".to_string()));
    assert!(report.deleted.contains(&"/system/etc/old.conf".to_string()));

    // v1 → v2.
    let root = b.path("root");
    b.device_at(1, &root);
    let mut log = Vec::new();
    recovery::apply(&inc, &root, ApplyOptions::default(), &mut log)
        .unwrap_or_else(|e| panic!("{e}\n{}", String::from_utf8_lossy(&log)));
    assert_is_build(&root, &b.specs[1]);
    let boot = std::fs::read(root.join("dev/block/platform/msm_sdcc.1/by-name/boot")).unwrap();
    assert_eq!(Some(boot), b.tf(2).boot_image);
    assert!(!root.join("cache/saved.file").exists());
    // Running it again (an interrupted install retried on a finished one) is harmless.
    recovery::apply(&inc, &root, ApplyOptions::default(), &mut Vec::new()).unwrap();
    assert_is_build(&root, &b.specs[1]);

    // v3: wrong fingerprint, nothing changes.
    let root3 = b.path("root3");
    b.device_at(3, &root3);
    let before = snapshot(&root3);
    let e = recovery::apply(&inc, &root3, ApplyOptions::default(), &mut Vec::new())
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        format!(
            "script aborted: Package expects build fingerprint of {} or {}; this device has {}.",
            b.specs[0].fingerprint, b.specs[1].fingerprint, b.specs[2].fingerprint
        )
    );
    assert!(
        snapshot(&root3) == before,
        "an aborted install changed files"
    );

    // v1 with one byte changed in a file the package patches.
    let root1 = b.path("root1b");
    b.device_at(1, &root1);
    let victim = root1.join("system/lib/libc.so");
    let mut d = std::fs::read(&victim).unwrap();
    d[1000] ^= 0xff;
    std::fs::write(&victim, &d).unwrap();
    let before = snapshot(&root1);
    let e = recovery::apply(&inc, &root1, ApplyOptions::default(), &mut Vec::new())
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        "script aborted: \"/system/lib/libc.so\" has unexpected contents."
    );
    assert!(
        snapshot(&root1) == before,
        "an aborted install changed files"
    );
}

#[test]
fn every_patch_applies_with_debian_bspatch() {
    if !have_bspatch() {
        return;
    }
    let b = Builds::new();
    let inc = b.path("inc.zip");
    incremental::write_incremental(&b.tf(1), &b.tf(2), &inc, &BuildOptions::default()).unwrap();
    let (v1, v2) = (b.tf(1), b.tf(2));
    let file = |t: &TargetFiles, p: &str| -> Vec<u8> {
        if p == "boot.img" {
            return t.boot_image.clone().unwrap();
        }
        match &t.trees[0].entries[p] {
            RawNode::File { data, .. } => data.clone(),
            other => panic!("{p}: {other:?}"),
        }
    };
    let mut z = zip::ZipArchive::new(std::fs::File::open(&inc).unwrap()).unwrap();
    let names: Vec<String> = z
        .file_names()
        .filter(|n| n.starts_with("patch/"))
        .map(String::from)
        .collect();
    assert!(names.len() >= 6, "{names:?}");
    for n in names {
        let target = n.trim_start_matches("patch/").trim_end_matches(".p");
        let mut patch = Vec::new();
        z.by_name(&n).unwrap().read_to_end(&mut patch).unwrap();
        assert_eq!(&patch[..8], b"BSDIFF40");
        let (old, new, p) = (b.path("old"), b.path("new"), b.path("p"));
        std::fs::write(&old, file(&v1, target)).unwrap();
        std::fs::write(&p, &patch).unwrap();
        let st = Command::new("bspatch")
            .arg(&old)
            .arg(&new)
            .arg(&p)
            .status()
            .expect("Debian's bspatch (apt install bsdiff)");
        assert!(st.success(), "bspatch failed on {n}");
        assert!(
            std::fs::read(&new).unwrap() == file(&v2, target),
            "{n}: bspatch result differs"
        );
    }
}

/// Debian's bspatch, or a notice and a skip (a failure under
/// `OTA_TEST_STRICT=1`, which `scripts/test` sets after installing it).
fn have_bspatch() -> bool {
    let ok = std::path::Path::new("/usr/bin/bspatch").exists();
    if !ok {
        assert!(
            std::env::var("OTA_TEST_STRICT").as_deref() != Ok("1"),
            "Debian's bspatch is not installed, and OTA_TEST_STRICT=1 forbids skipping"
        );
        eprintln!("notice: Debian's bspatch is not installed; skipping (scripts/test installs it)");
    }
    ok
}

#[test]
fn broken_target_files_name_the_part() {
    let b = Builds::new();
    let dir = b.path("t");
    b.specs[0].write_dir(&dir).unwrap();
    std::fs::write(
        dir.join("META/filesystem_config.txt"),
        "system 0 0 755\nsystem/bin 0 x 755\n",
    )
    .unwrap();
    let e = TargetFiles::open(&dir).unwrap_err().to_string();
    assert_eq!(e, "META/filesystem_config.txt:2: gid \"x\" is not a number");
    std::fs::remove_file(dir.join("META/misc_info.txt")).unwrap();
    let e = TargetFiles::open(&dir).unwrap_err().to_string();
    assert!(e.starts_with("missing META/misc_info.txt in"), "{e}");
    let e = TargetFiles::open(&b.path("nope.zip"))
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("opening target-files"), "{e}");
    std::fs::write(b.path("junk.zip"), b"not a zip").unwrap();
    assert!(TargetFiles::open(&b.path("junk.zip"))
        .unwrap_err()
        .to_string()
        .contains("as a zip"));
}

#[test]
fn fstab_v1_mtd_boot_and_set_perm() {
    let dir = tempfile::tempdir().unwrap();
    let specs: Vec<Spec> = (1..=2)
        .map(|v| {
            let mut s = Spec::sample(v).unwrap();
            s.legacy_fstab = true;
            s.use_set_metadata = false;
            s
        })
        .collect();
    let tf: Vec<TargetFiles> = specs
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let d = dir.path().join(format!("v{}", i + 1));
            s.write_dir(&d).unwrap();
            TargetFiles::open(&d).unwrap()
        })
        .collect();
    let (full_pkg, inc_pkg) = (dir.path().join("full.zip"), dir.path().join("inc.zip"));
    full::write_full(&tf[0], &full_pkg, &BuildOptions::default()).unwrap();
    incremental::write_incremental(&tf[0], &tf[1], &inc_pkg, &BuildOptions::default()).unwrap();
    let script = |p: &Path| entry_text(p, "META-INF/com/google/android/updater-script");
    let fs = script(&full_pkg);
    assert!(
        fs.contains("write_raw_image(package_extract_file(\"boot.img\"), \"boot\");"),
        "{fs}"
    );
    assert!(
        fs.contains("set_perm_recursive(0, 0, 0755, 0644, \"/system\");"),
        "{fs}"
    );
    assert!(
        fs.contains("set_perm(0, 0, 06755, \"/system/xbin/su\");"),
        "{fs}"
    );
    assert!(!fs.contains("set_metadata"));
    let is = script(&inc_pkg);
    assert!(is.contains("apply_patch_check(\"MTD:boot:"), "{is}");

    let root = dir.path().join("root");
    let props = Props::parse("ro.product.device=hammerhead\n", "props").unwrap();
    recovery::apply(
        &full_pkg,
        &root,
        ApplyOptions {
            props: Some(props),
            ..Default::default()
        },
        &mut Vec::new(),
    )
    .unwrap();
    assert_is_build_with(&root, &specs[0], false);
    assert_eq!(
        Some(std::fs::read(root.join("dev/mtd/boot")).unwrap()),
        tf[0].boot_image
    );
    recovery::apply(&inc_pkg, &root, ApplyOptions::default(), &mut Vec::new()).unwrap();
    assert_is_build_with(&root, &specs[1], false);
    assert_eq!(
        Some(std::fs::read(root.join("dev/mtd/boot")).unwrap()),
        tf[1].boot_image
    );
}

#[test]
fn wipe_no_prereq_and_extra_script() {
    let b = Builds::new();
    let pkg = b.path("wipe.zip");
    let opts = BuildOptions {
        wipe_user_data: true,
        no_prereq: true,
        extra_script: Some("ui_print(\"extra step ran\");\n".into()),
        ..Default::default()
    };
    full::write_full(&b.tf(1), &pkg, &opts).unwrap();
    let root = b.path("root");
    std::fs::create_dir_all(root.join("data/app")).unwrap();
    std::fs::write(root.join("data/app/user.apk"), b"user data").unwrap();
    let props = Props::parse(
        "ro.product.device=hammerhead\nro.build.date.utc=1999999999\n",
        "props",
    )
    .unwrap();
    let mut log = Vec::new();
    recovery::apply(
        &pkg,
        &root,
        ApplyOptions {
            props: Some(props.clone()),
            ..Default::default()
        },
        &mut log,
    )
    .unwrap();
    assert!(String::from_utf8_lossy(&log).contains("extra step ran"));
    assert!(!root.join("data/app").exists(), "/data must be wiped");
    assert_is_build(&root, &b.specs[0]);
    let meta = entry_text(&pkg, "META-INF/com/android/metadata");
    assert!(meta.contains("ota-wipe=yes\n"));
    // With the older-build check, a device on a newer build refuses.
    let checked = b.path("checked.zip");
    full::write_full(&b.tf(1), &checked, &BuildOptions::default()).unwrap();
    let e = recovery::apply(
        &checked,
        &b.path("r2"),
        ApplyOptions {
            props: Some(props),
            ..Default::default()
        },
        &mut Vec::new(),
    )
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "script aborted: Can't install this package (Tue May 13 1400000000) over newer build ()."
    );
}

#[test]
fn vendor_partition_full_and_incremental() {
    let dir = tempfile::tempdir().unwrap();
    let specs: Vec<Spec> = (1..=2)
        .map(|v| {
            let mut s = Spec::sample(v).unwrap();
            let lib = ota_android::fixtures::noise(901, 150_000);
            let lib = if v == 2 {
                ota_android::fixtures::mutate(&lib, 902)
            } else {
                lib
            };
            s.vendor.insert(
                "lib/libvendor.so".into(),
                RawNode::File {
                    data: lib,
                    mode: None,
                },
            );
            s.vendor.insert(
                "firmware/wlan/fw.bin".into(),
                RawNode::File {
                    data: ota_android::fixtures::noise(903, 40_000),
                    mode: None,
                },
            );
            s.vendor.insert(
                "bin/vd".into(),
                RawNode::File {
                    data: b"#!/vendor/bin/sh\n".to_vec(),
                    mode: None,
                },
            );
            s.vendor.insert(
                "lib/libalias.so".into(),
                RawNode::Symlink("libvendor.so".into()),
            );
            if v == 2 {
                s.vendor.insert(
                    "etc/new.conf".into(),
                    RawNode::File {
                        data: b"new=1\n".to_vec(),
                        mode: None,
                    },
                );
            }
            s
        })
        .collect();
    let tf: Vec<TargetFiles> = specs
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let p = dir.path().join(format!("v{}.zip", i + 1));
            s.write_zip(&p).unwrap();
            TargetFiles::open(&p).unwrap()
        })
        .collect();
    assert_eq!(tf[0].trees.len(), 2);
    let (full_pkg, inc_pkg) = (dir.path().join("full.zip"), dir.path().join("inc.zip"));
    full::write_full(&tf[0], &full_pkg, &BuildOptions::default()).unwrap();
    let r =
        incremental::write_incremental(&tf[0], &tf[1], &inc_pkg, &BuildOptions::default()).unwrap();
    assert!(
        r.patched
            .iter()
            .any(|(p, _, _)| p == "vendor/lib/libvendor.so"),
        "{:?}",
        r.patched
    );
    assert!(r.verbatim.contains(&"vendor/etc/new.conf".to_string()));

    let root = dir.path().join("root");
    let props = Props::parse("ro.product.device=hammerhead\n", "props").unwrap();
    for (pkg, spec) in [(&full_pkg, &specs[0]), (&inc_pkg, &specs[1])] {
        let opts = ApplyOptions {
            props: Some(props.clone()),
            ..Default::default()
        };
        recovery::apply(pkg, &root, opts, &mut Vec::new()).unwrap();
        assert_is_build(&root, spec);
        let got = snapshot(&root.join("vendor"));
        let cfg = spec.vendor_fs_config();
        let recorded = recovery::read_metadata(&root).unwrap();
        let want = spec.vendor_tree();
        assert_eq!(
            got.len(),
            want.len() - 1,
            "{:?}",
            got.keys().collect::<Vec<_>>()
        );
        for (p, n) in want.iter().filter(|(p, _)| *p != "vendor") {
            let g = &got[&p["vendor/".len()..]];
            match n {
                RawNode::File { data, .. } => {
                    assert!(g.1 == *data, "{p}");
                    assert_eq!(g.2, cfg.get(p).unwrap().mode, "{p} mode");
                }
                RawNode::Symlink(t) => assert_eq!(g.1, t.as_bytes()),
                RawNode::Dir { .. } => assert_eq!(g.0, 'd'),
            }
            if !matches!(n, RawNode::Symlink(_)) {
                let m = cfg.get(p).unwrap();
                let r = &recorded[p];
                assert_eq!(
                    (r.uid, r.gid, r.selabel.as_deref()),
                    (m.uid, m.gid, m.selabel.as_deref()),
                    "{p}"
                );
            }
        }
    }
}

/// A copy of `pkg` whose script stops after `keep` statements that start
/// with `prefix` (as if the device lost power there).
fn cut_package(pkg: &Path, out: &Path, prefix: &str, keep: usize) {
    let mut z = zip::ZipArchive::new(std::fs::File::open(pkg).unwrap()).unwrap();
    let mut w = zip::ZipWriter::new(std::fs::File::create(out).unwrap());
    for i in 0..z.len() {
        let mut e = z.by_index(i).unwrap();
        let name = e.name().to_string();
        let mut data = Vec::new();
        e.read_to_end(&mut data).unwrap();
        if name.ends_with("updater-script") {
            let text = String::from_utf8(data).unwrap();
            let mut seen = 0;
            let mut kept = String::new();
            for stmt in text.split_inclusive(";\n") {
                if stmt.trim_start().starts_with(prefix) {
                    if seen == keep {
                        break;
                    }
                    seen += 1;
                }
                kept.push_str(stmt);
            }
            assert_eq!(
                seen, keep,
                "the script has fewer than {keep} {prefix} statements"
            );
            data = kept.into_bytes();
        }
        w.start_file(name, zip::write::SimpleFileOptions::default())
            .unwrap();
        std::io::Write::write_all(&mut w, &data).unwrap();
    }
    w.finish().unwrap();
}

#[test]
fn interrupted_incremental_is_finished_by_running_it_again() {
    let b = Builds::new();
    let inc = b.path("inc.zip");
    incremental::write_incremental(&b.tf(1), &b.tf(2), &inc, &BuildOptions::default()).unwrap();
    // Power lost after two of the patches, and after everything but build.prop.
    for (prefix, keep) in [("apply_patch(", 2), ("ui_print(\"Patching remaining", 0)] {
        let root = b.path(&format!("root-{keep}"));
        b.device_at(1, &root);
        let cut = b.path("cut.zip");
        cut_package(&inc, &cut, prefix, keep);
        recovery::apply(&cut, &root, ApplyOptions::default(), &mut Vec::new()).unwrap();
        // Still v1 by its fingerprint: build.prop is patched last.
        let bp = std::fs::read_to_string(root.join("system/build.prop")).unwrap();
        assert!(bp.contains(&b.specs[0].fingerprint));
        let mut log = Vec::new();
        recovery::apply(&inc, &root, ApplyOptions::default(), &mut log)
            .unwrap_or_else(|e| panic!("{e}\n{}", String::from_utf8_lossy(&log)));
        assert!(String::from_utf8_lossy(&log).contains("is already the target; skipping"));
        assert_is_build(&root, &b.specs[1]);
    }
}

#[test]
fn hostile_target_files_are_refused() {
    let d = tempfile::tempdir().unwrap();
    for bad in ["SYSTEM/../../evil", "/SYSTEM/abs", "SYSTEM/a/./b"] {
        let p = d.path().join("bad.zip");
        let mut w = zip::ZipWriter::new(std::fs::File::create(&p).unwrap());
        w.start_file(bad, zip::write::SimpleFileOptions::default())
            .unwrap();
        std::io::Write::write_all(&mut w, b"x").unwrap();
        w.finish().unwrap();
        let e = TargetFiles::open(&p).unwrap_err().to_string();
        assert!(e.contains("is not a safe relative path"), "{bad}: {e}");
    }
    // A symlink in an unpacked target-files is read as a link, never followed.
    let b = Builds::new();
    let dir = b.path("t");
    b.specs[0].write_dir(&dir).unwrap();
    std::os::unix::fs::symlink("/etc", dir.join("SYSTEM/etc/hostlink")).unwrap();
    let mut cfg = std::fs::read_to_string(dir.join("META/filesystem_config.txt")).unwrap();
    cfg.push_str("system/etc/hostlink 0 0 777\n");
    std::fs::write(dir.join("META/filesystem_config.txt"), cfg).unwrap();
    let tf = TargetFiles::open(&dir).unwrap();
    assert_eq!(
        tf.trees[0].entries["system/etc/hostlink"],
        RawNode::Symlink("/etc".into())
    );
    assert!(!tf.trees[0]
        .entries
        .keys()
        .any(|k| k.starts_with("system/etc/hostlink/")));
}

#[test]
fn a_non_numeric_build_date_is_refused() {
    let b = Builds::new();
    let dir = b.path("t");
    b.specs[1].write_dir(&dir).unwrap();
    let bp = dir.join("SYSTEM/build.prop");
    let text = std::fs::read_to_string(&bp).unwrap().replace(
        "ro.build.date.utc=1400100000",
        "ro.build.date.utc=yesterday",
    );
    std::fs::write(&bp, text).unwrap();
    let tf = TargetFiles::open(&dir).unwrap();
    for r in [
        full::write_full(&tf, &b.path("f.zip"), &BuildOptions::default()),
        incremental::write_incremental(&b.tf(1), &tf, &b.path("i.zip"), &BuildOptions::default()),
    ] {
        let e = r.unwrap_err().to_string();
        assert!(
            e.contains("ro.build.date.utc=\"yesterday\" is not a number"),
            "{e}"
        );
    }
    assert!(!b.path("f.zip").exists() && !b.path("i.zip").exists());
}
