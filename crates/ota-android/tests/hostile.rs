//! Hostile packages against the recovery simulator: symlinks planted at
//! every path the simulator writes (raw partitions, temporaries, the
//! sidecar and its temporary, mount points, `/cache/saved.file`, format
//! targets) point to a sentinel directory beside ROOT, and after the run
//! that directory must be byte for byte what it was (listing, modes,
//! contents, link targets), whether the install succeeded or not.

mod common;
use common::package;
use ota_android::recovery::{self, ApplyOptions};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// A temporary directory with `root/` (the device) and `sentinel/`
/// (outside it, where nothing may change).
struct Scene {
    dir: tempfile::TempDir,
}

impl Scene {
    fn new() -> Scene {
        let dir = tempfile::tempdir().unwrap();
        let s = dir.path().join("sentinel");
        std::fs::create_dir_all(s.join("victimdir/sub")).unwrap();
        std::fs::write(s.join("victim"), b"precious bytes").unwrap();
        std::fs::write(s.join("victimdir/keep"), b"keep me").unwrap();
        std::fs::write(s.join("victimdir/sub/deep"), b"deep").unwrap();
        // Valid sidecar text, so a simulator that reads through a planted
        // `.ota-metadata` link gets as far as writing.
        std::fs::write(s.join("meta-victim"), b"system/x 0 0 644\n").unwrap();
        std::fs::set_permissions(s.join("victim"), std::fs::Permissions::from_mode(0o600)).unwrap();
        std::fs::create_dir_all(dir.path().join("root")).unwrap();
        Scene { dir }
    }
    fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }
    fn sentinel(&self) -> PathBuf {
        self.dir.path().join("sentinel")
    }
    /// Plants `ROOT/rel` → `sentinel/target` (an absolute host path).
    fn plant(&self, rel: &str, target: &str) {
        let link = self.root().join(rel);
        std::fs::create_dir_all(link.parent().unwrap()).unwrap();
        let to = if target.is_empty() {
            self.sentinel()
        } else {
            self.sentinel().join(target)
        };
        std::os::unix::fs::symlink(to, link).unwrap();
    }
    fn write(&self, rel: &str, data: &[u8]) {
        let p = self.root().join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, data).unwrap();
    }
    /// Runs a package made of `script` and `files`; the result as text.
    fn run(&self, script: &str, files: &[(&str, &[u8])]) -> Result<String, String> {
        let pkg = package(self.dir.path(), script, files);
        let mut log = Vec::new();
        recovery::apply(&pkg, &self.root(), ApplyOptions::default(), &mut log)
            .map(|_| String::from_utf8_lossy(&log).to_string())
            .map_err(|e| e.to_string())
    }
    /// Runs the package and checks the sentinel did not change.
    fn assert_contained(&self, script: &str, files: &[(&str, &[u8])]) -> Result<String, String> {
        let before = snapshot(&self.sentinel());
        let r = self.run(script, files);
        let after = snapshot(&self.sentinel());
        assert_eq!(
            before, after,
            "the sentinel outside ROOT changed; the run gave {r:?}"
        );
        r
    }
}

/// Every entry under `dir` (and `dir` itself): kind and mode bits, SHA-256
/// of contents, or link target.
fn snapshot(dir: &Path) -> BTreeMap<String, (u32, String)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(p) = stack.pop() {
        let md = std::fs::symlink_metadata(&p).unwrap();
        let rel = p.strip_prefix(dir).unwrap().to_string_lossy().to_string();
        let what = if md.file_type().is_symlink() {
            format!("-> {}", std::fs::read_link(&p).unwrap().display())
        } else if md.is_dir() {
            let mut names: Vec<_> = std::fs::read_dir(&p)
                .unwrap()
                .map(|e| e.unwrap().path())
                .collect();
            names.sort();
            let listing = names
                .iter()
                .map(|n| n.file_name().unwrap().to_string_lossy().to_string())
                .collect::<Vec<_>>()
                .join("/");
            stack.extend(names);
            format!("dir [{listing}]")
        } else {
            hex::encode(Sha256::digest(std::fs::read(&p).unwrap()))
        };
        out.insert(rel, (md.mode(), what));
    }
    out
}

const MOUNT_SYSTEM: &str = "mount(\"ext4\", \"EMMC\", \"/dev/block/system\", \"/system\");\n";

fn sha1(b: &[u8]) -> String {
    ota_android::package::sha1_hex(b)
}

/// (old, new, BSDIFF40 patch old → new).
fn patch_pair() -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    let old = b"hello old world, this is the source file ".repeat(40);
    let new = b"hello new world, this is the target file ".repeat(40);
    let mut patch = Vec::new();
    let opts = ota_delta::DiffOptions {
        format: ota_delta::Format::Bsdiff40,
        ..Default::default()
    };
    ota_delta::diff_bytes(&old, &new, &opts, &mut patch).unwrap();
    (old, new, patch)
}

#[test]
fn emmc_partition_link_is_not_followed_out_of_root() {
    let s = Scene::new();
    s.plant("dev/block/boot", "victim");
    s.assert_contained(
        "package_extract_file(\"boot.img\", \"/dev/block/boot\");",
        &[("boot.img", b"evil boot image")],
    )
    .ok();
}

#[test]
fn mtd_directory_link_is_not_followed_out_of_root() {
    let s = Scene::new();
    s.plant("dev/mtd", "");
    s.assert_contained(
        "write_raw_image(package_extract_file(\"boot.img\"), \"boot\");",
        &[("boot.img", b"evil boot image")],
    )
    .ok();
}

#[test]
fn a_script_cannot_plant_its_own_partition_link() {
    // The reviewer's reproduction: mount /dev, plant a link, write the partition.
    let s = Scene::new();
    let victim = s.sentinel().join("victim");
    let script = format!(
        "mount(\"ext4\", \"EMMC\", \"/dev/block/dev\", \"/dev\");\n\
         symlink(\"{}\", \"/dev/block/boot\");\n\
         package_extract_file(\"boot.img\", \"/dev/block/boot\");",
        victim.display()
    );
    s.assert_contained(&script, &[("boot.img", b"evil boot image")])
        .ok();
}

#[test]
fn apply_patch_partition_target_link_is_not_followed_out_of_root() {
    let s = Scene::new();
    let (old, new, patch) = patch_pair();
    s.write("dev/block/src", &old);
    s.plant("dev/block/boot", "victim");
    let script = format!(
        "apply_patch(\"EMMC:/dev/block/src:{}:{}\", \"EMMC:/dev/block/boot\", \"{}\", {}, \"{}\", package_extract_file(\"p\"));",
        old.len(),
        sha1(&old),
        sha1(&new),
        new.len(),
        sha1(&old)
    );
    s.assert_contained(&script, &[("p", &patch)]).ok();
}

#[test]
fn apply_patch_temporary_is_not_a_predictable_name() {
    let s = Scene::new();
    let (old, new, patch) = patch_pair();
    s.write("system/f", &old);
    s.plant("system/f.patch", "created-through-patch-temp");
    let script = format!(
        "{MOUNT_SYSTEM}apply_patch(\"/system/f\", \"-\", \"{}\", {}, \"{}\", package_extract_file(\"p\"));",
        sha1(&new),
        new.len(),
        sha1(&old)
    );
    let r = s.assert_contained(&script, &[("p", &patch)]);
    r.unwrap();
    assert_eq!(std::fs::read(s.root().join("system/f")).unwrap(), new);
}

#[test]
fn saved_file_link_is_not_followed_out_of_root() {
    let s = Scene::new();
    let (old, new, patch) = patch_pair();
    s.write("system/f", &old);
    s.plant("cache/saved.file", "victim");
    let script = format!(
        "{MOUNT_SYSTEM}apply_patch(\"/system/f\", \"-\", \"{}\", {}, \"{}\", package_extract_file(\"p\"));",
        sha1(&new),
        new.len(),
        sha1(&old)
    );
    s.assert_contained(&script, &[("p", &patch)]).unwrap();
    assert_eq!(std::fs::read(s.root().join("system/f")).unwrap(), new);
}

#[test]
fn cache_directory_link_is_not_followed_out_of_root() {
    let s = Scene::new();
    let (old, new, patch) = patch_pair();
    s.write("system/f", &old);
    // A file the saved copy would land on, were the link followed.
    std::fs::write(s.sentinel().join("saved.file"), b"not a saved copy").unwrap();
    s.plant("cache", "");
    let script = format!(
        "{MOUNT_SYSTEM}apply_patch(\"/system/f\", \"-\", \"{}\", {}, \"{}\", package_extract_file(\"p\"));\nwipe_cache();",
        sha1(&new),
        new.len(),
        sha1(&old)
    );
    // In a chroot too, /cache leads nowhere: the install stops there.
    let e = s.assert_contained(&script, &[("p", &patch)]).unwrap_err();
    assert!(e.contains("saving the source to /cache/saved.file"), "{e}");
}

#[test]
fn format_target_link_is_not_followed_out_of_root() {
    let s = Scene::new();
    s.plant("mnt", "");
    s.assert_contained(
        "format(\"ext4\", \"EMMC\", \"/dev/block/x\", \"0\", \"/mnt/victimdir\");",
        &[],
    )
    .ok();
}

#[test]
fn mount_point_link_is_not_followed_out_of_root() {
    let s = Scene::new();
    s.plant("mnt", "");
    s.assert_contained(
        "mount(\"ext4\", \"EMMC\", \"/dev/block/x\", \"/mnt/new/dir\");",
        &[],
    )
    .ok();
}

#[test]
fn sidecar_temporary_link_is_not_followed_out_of_root() {
    let s = Scene::new();
    s.plant(".ota-metadata.tmp", "victim");
    s.assert_contained("ui_print(\"hello\");", &[]).unwrap();
}

#[test]
fn sidecar_link_is_not_followed_out_of_root() {
    let s = Scene::new();
    s.plant(".ota-metadata", "meta-victim");
    s.plant(".ota-metadata.tmp", "victim");
    s.assert_contained(
        &format!("{MOUNT_SYSTEM}package_extract_file(\"f\", \"/system/x\");"),
        &[("f", b"x")],
    )
    .unwrap();
}

/// A whole install with links planted at every name it replaces (files,
/// the sidecar and its temporary, the saved copy, a formatted mount
/// point) and links of its own making: it succeeds, replacing the links
/// and changing nothing outside. (Links at directories and partitions,
/// which stop an install, have their own tests above.)
#[test]
fn links_planted_everywhere_change_nothing_outside_root() {
    let s = Scene::new();
    let (old, new, patch) = patch_pair();
    s.write("system/f", &old);
    for (link, target) in [
        ("data", "victimdir"),
        ("cache/saved.file", "victim"),
        ("system/f.patch", "new-file"),
        ("system/app/a.apk", "victim"),
        ("system/etc/hosts", "victimdir/keep"),
        ("system/bin/keeplink", "victimdir"),
        (".ota-metadata", "meta-victim"),
        (".ota-metadata.tmp", "victim"),
    ] {
        s.plant(link, target);
    }
    let victim = s.sentinel().join("victim");
    let script = format!(
        "{MOUNT_SYSTEM}\
         mount(\"ext4\", \"EMMC\", \"/dev/block/cache\", \"/cache\");\n\
         format(\"ext4\", \"EMMC\", \"/dev/block/data\", \"0\", \"/data\");\n\
         mount(\"ext4\", \"EMMC\", \"/dev/block/data\", \"/data\");\n\
         package_extract_dir(\"system\", \"/system\");\n\
         package_extract_file(\"f\", \"/system/etc/hosts\");\n\
         package_extract_file(\"f\", \"/data/keep\");\n\
         package_extract_file(\"f\", \"/tmp/x\");\n\
         symlink(\"{v}\", \"/system/bin/planted\", \"/data/planted\");\n\
         package_extract_file(\"f\", \"/system/bin/planted\");\n\
         set_perm_recursive(0, 0, 0777, 0777, \"/system\");\n\
         set_metadata_recursive(\"/data\", \"uid\", 0, \"gid\", 0, \"dmode\", 0777, \"fmode\", 0777);\n\
         apply_patch(\"/system/f\", \"-\", \"{new_sha}\", {new_len}, \"{old_sha}\", package_extract_file(\"p\"));\n\
         package_extract_file(\"f\", \"/dev/block/boot\");\n\
         write_raw_image(package_extract_file(\"f\"), \"boot\");\n\
         rename(\"/system/etc/hosts\", \"/data/hosts\");\n\
         delete_recursive(\"/system/app\", \"/data\");\n\
         unmount(\"/data\");\n\
         format(\"ext4\", \"EMMC\", \"/dev/block/data\", \"0\", \"/data\");\n\
         unmount(\"/cache\");\n\
         wipe_cache();\n",
        v = victim.display(),
        new_sha = sha1(&new),
        new_len = new.len(),
        old_sha = sha1(&old),
    );
    let log = s
        .assert_contained(
            &script,
            &[
                ("f", b"payload"),
                ("p", &patch),
                ("system/bin/sh", b"#!"),
                ("system/app/a.apk", b"apk"),
            ],
        )
        .unwrap();
    assert_eq!(log, "");
    let root = s.root();
    assert_eq!(std::fs::read(root.join("system/f")).unwrap(), new);
    assert_eq!(
        std::fs::read(root.join("system/bin/planted")).unwrap(),
        b"payload"
    );
    assert!(!root.join("system/app").exists());
    assert!(std::fs::symlink_metadata(root.join("system/bin/keeplink"))
        .unwrap()
        .file_type()
        .is_symlink());
    assert_eq!(std::fs::read_dir(root.join("data")).unwrap().count(), 0);
    assert_eq!(
        std::fs::read(root.join("dev/mtd/boot")).unwrap(),
        b"payload"
    );
    let meta = recovery::read_metadata(&root).unwrap();
    assert_eq!(meta["system/bin/sh"].mode, Some(0o777));
}

#[test]
fn names_with_newlines_do_not_inject_sidecar_lines() {
    let s = Scene::new();
    let script = format!(
        "{MOUNT_SYSTEM}package_extract_file(\"f\", \"/system/x\\nsystem/bin/su 0 0 6755\");\n\
         package_extract_file(\"f\", \"/system/y\");\n\
         set_metadata(\"/system/y\", \"uid\", 0, \"gid\", 0, \"mode\", 0644, \"selabel\", \"u:object_r:y:s0\\nsystem/bin/sh 0 0 6755 capabilities=0x0\");"
    );
    s.run(&script, &[("f", b"x")]).unwrap();
    let meta = recovery::read_metadata(&s.root()).unwrap();
    let keys: Vec<&str> = meta.keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        ["system/x\nsystem/bin/su 0 0 6755", "system/y"],
        "{meta:?}"
    );
    assert_eq!(
        meta["system/y"].selabel.as_deref(),
        Some("u:object_r:y:s0\nsystem/bin/sh 0 0 6755 capabilities=0x0")
    );
    assert_eq!(meta["system/x\nsystem/bin/su 0 0 6755"].mode, Some(0o644));
}
