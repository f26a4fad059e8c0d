//! Hostile file systems: symlinks planted at every path the delta engine
//! writes (the mode-change copy, stage entries, the stage itself, the
//! journal and its temporary, the backup, output files), by the new tree,
//! in OLD or beside the destination, each pointing into a sentinel
//! directory outside the tree. The sentinel must come out byte for byte
//! unchanged (listing, contents, modes), whatever the apply answered.

mod common;
use common::*;
use ota_delta::tree::{self, Manifest};
use ota_delta::DiffOptions;
use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};

fn copy_tree(from: &Path, to: &Path) {
    let st = std::process::Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .unwrap();
    assert!(st.success());
}

/// A temporary directory holding `sentinel/` (files of several modes and a
/// subdirectory) beside whatever the test builds.
struct Scene {
    dir: tempfile::TempDir,
}

impl Scene {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let s = dir.path().join("sentinel");
        fs::create_dir(&s).unwrap();
        write(
            &s,
            "victim",
            b"sentinel content, must never change\n",
            0o600,
        );
        write(&s, "other", b"another file\n", 0o644);
        write(&s, "sub/deep", b"deep file\n", 0o640);
        Scene { dir }
    }
    fn p(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }
    fn victim(&self) -> PathBuf {
        self.p("sentinel/victim")
    }
    fn sentinel(&self) -> BTreeMap<String, String> {
        snapshot_with_root(&self.p("sentinel"))
    }
}

/// The reported attack: NEW changes `a`'s mode and also holds
/// `a.ota-copy`, a symlink to a file outside the tree.
fn mode_change_with_copy_link(sc: &Scene, link_in_old_too: bool) -> (PathBuf, PathBuf) {
    let (a, b) = (sc.p("old"), sc.p("new"));
    write(&a, "a", b"same bytes in both trees\n", 0o644);
    write(&b, "a", b"same bytes in both trees\n", 0o755);
    write(&a, "bin/tool", b"tool v1", 0o644);
    write(&b, "bin/tool", b"tool v2", 0o755);
    symlink(sc.victim(), b.join("a.ota-copy")).unwrap();
    symlink(sc.victim(), b.join("bin/tool.ota-copy")).unwrap();
    if link_in_old_too {
        symlink(sc.victim(), a.join("a.ota-copy")).unwrap();
        symlink(sc.victim(), a.join("bin/tool.ota-copy")).unwrap();
    }
    (a, b)
}

#[test]
fn mode_change_copy_never_writes_through_a_symlink_of_the_new_tree() {
    for link_in_old_too in [false, true] {
        let sc = Scene::new();
        let before = sc.sentinel();
        let (a, b) = mode_change_with_copy_link(&sc, link_in_old_too);
        let p = sc.p("p.otatree");
        tree::diff_trees(&a, &b, &p, None, &opts()).unwrap();
        let dev = sc.p("device");
        copy_tree(&a, &dev);
        tree::patch_tree_in_place(&dev, &p).unwrap();
        assert_eq!(
            sc.sentinel(),
            before,
            "sentinel changed (in place, link in OLD: {link_in_old_too})"
        );
        assert_eq!(
            snapshot_with_root(&dev),
            snapshot_with_root(&b),
            "in-place result"
        );
        tree::patch_tree(&a, &p, &sc.p("out")).unwrap();
        assert_eq!(
            sc.sentinel(),
            before,
            "sentinel changed (to a new directory)"
        );
        assert_eq!(snapshot_with_root(&sc.p("out")), snapshot_with_root(&b));
    }
}

/// Builds an ordinary OLD/NEW pair and its patch; returns (old, new, patch).
fn ordinary(sc: &Scene) -> (PathBuf, PathBuf, PathBuf) {
    let (a, b) = (sc.p("old"), sc.p("new"));
    write(&a, "README", b"readme\n", 0o644);
    write(&b, "README", b"readme, changed\n", 0o644);
    write(&a, "lib/x.so", &[7u8; 3000], 0o755);
    write(&b, "lib/x.so", &[7u8; 3000], 0o700);
    write(&b, "lib/new.so", &[9u8; 2000], 0o644);
    let p = sc.p("p.otatree");
    tree::diff_trees(&a, &b, &p, None, &opts()).unwrap();
    (a, b, p)
}

#[test]
fn journal_temporary_is_never_written_through_a_symlink() {
    let sc = Scene::new();
    let before = sc.sentinel();
    let (a, b, p) = ordinary(&sc);
    let dev = sc.p("device");
    copy_tree(&a, &dev);
    symlink(sc.victim(), sc.p("device.ota-journal.tmp")).unwrap();
    tree::patch_tree_in_place(&dev, &p).unwrap();
    assert_eq!(sc.sentinel(), before);
    assert_eq!(snapshot_with_root(&dev), snapshot_with_root(&b));
}

#[test]
fn planted_journal_stage_and_backup_never_lead_outside() {
    // Each of the in-place machinery's names, planted as a symlink into the
    // sentinel (a file or a directory), or as a directory full of links.
    type Plant = fn(&Scene);
    let plants: Vec<(&str, Plant)> = vec![
        ("journal -> file", |sc| {
            symlink(sc.victim(), sc.p("device.ota-journal")).unwrap()
        }),
        ("stage -> dir", |sc| {
            symlink(sc.p("sentinel"), sc.p("device.ota-stage")).unwrap()
        }),
        ("stage -> file", |sc| {
            symlink(sc.victim(), sc.p("device.ota-stage")).unwrap()
        }),
        ("stage holds links", |sc| {
            let st = sc.p("device.ota-stage");
            fs::create_dir_all(st.join("lib")).unwrap();
            symlink(sc.victim(), st.join("README")).unwrap();
            symlink(sc.victim(), st.join("lib/new.so")).unwrap();
            symlink(sc.p("sentinel/sub"), st.join("sub")).unwrap();
        }),
        ("backup -> dir", |sc| {
            symlink(sc.p("sentinel"), sc.p("device.ota-old")).unwrap()
        }),
        ("backup -> file", |sc| {
            symlink(sc.victim(), sc.p("device.ota-old")).unwrap()
        }),
    ];
    for (name, plant) in plants {
        let sc = Scene::new();
        let before = sc.sentinel();
        let (a, b, p) = ordinary(&sc);
        let dev = sc.p("device");
        copy_tree(&a, &dev);
        plant(&sc);
        let r = tree::patch_tree_in_place(&dev, &p);
        assert_eq!(sc.sentinel(), before, "{name}: sentinel changed ({r:?})");
        let got = snapshot_with_root(&dev);
        assert!(
            got == snapshot_with_root(&b) || (r.is_err() && got == snapshot_with_root(&a)),
            "{name}: the tree is neither OLD nor NEW ({r:?})"
        );
        // The same names beside a fresh output directory.
        let _ = tree::patch_tree(&a, &p, &sc.p("device2"));
        assert_eq!(
            sc.sentinel(),
            before,
            "{name}: sentinel changed (new directory)"
        );
    }
}

#[test]
fn output_files_replace_a_planted_symlink_instead_of_writing_through_it() {
    let sc = Scene::new();
    let before = sc.sentinel();
    let (a, b, _) = ordinary(&sc);
    write(&sc.p("files"), "old", &[1u8; 5000], 0o644);
    write(&sc.p("files"), "new", &[2u8; 5000], 0o644);
    let (fo, fnew) = (sc.p("files/old"), sc.p("files/new"));
    // diff outputs: file patch, its reverse, a tree patch and its reverse.
    for (i, format) in [ota_delta::Format::Otadiff, ota_delta::Format::Bsdiff40]
        .into_iter()
        .enumerate()
    {
        let out = sc.p(&format!("file-patch-{i}"));
        symlink(sc.victim(), &out).unwrap();
        let o = DiffOptions { format, ..opts() };
        ota_delta::diff_files(&fo, &fnew, &out, &o).unwrap();
        assert!(!fs::symlink_metadata(&out).unwrap().file_type().is_symlink());
        // patch output
        let res = sc.p(&format!("patched-{i}"));
        symlink(sc.victim(), &res).unwrap();
        ota_delta::patch_file(&fo, &out, &res, true).unwrap();
        assert_eq!(fs::read(&res).unwrap(), fs::read(&fnew).unwrap());
    }
    let (tp, rp) = (sc.p("t.otatree"), sc.p("r.otatree"));
    symlink(sc.victim(), &tp).unwrap();
    symlink(sc.p("sentinel/other"), &rp).unwrap();
    tree::diff_trees(&a, &b, &tp, Some(&rp), &opts()).unwrap();
    // A tree output that is a symlink is refused, not followed.
    let out = sc.p("tree-out");
    symlink(sc.p("sentinel/sub"), &out).unwrap();
    assert!(tree::patch_tree(&a, &tp, &out).is_err());
    assert_eq!(sc.sentinel(), before);
}

/// Rewrites the manifest of a valid patch with `edit`.
fn tamper_manifest(patch: &Path, out: &Path, edit: impl FnOnce(&mut Manifest)) {
    let bytes = fs::read(patch).unwrap();
    let mlen = u64::from_le_bytes(bytes[8..16].try_into().unwrap()) as usize;
    let json = zstd::decode_all(&bytes[16..16 + mlen]).unwrap();
    let mut m: Manifest = serde_json::from_slice(&json).unwrap();
    edit(&mut m);
    let z = zstd::encode_all(&serde_json::to_vec(&m).unwrap()[..], 3).unwrap();
    let mut v = bytes[..8].to_vec();
    v.extend_from_slice(&(z.len() as u64).to_le_bytes());
    v.extend_from_slice(&z);
    v.extend_from_slice(&bytes[16 + mlen..]);
    fs::write(out, v).unwrap();
}

#[test]
fn copies_from_symlinks_in_old_are_refused() {
    let sc = Scene::new();
    let before = sc.sentinel();
    let (a, b) = (sc.p("old"), sc.p("new"));
    let victim = fs::read(sc.victim()).unwrap();
    write(&a, "keep", b"k", 0o644);
    write(&b, "keep", b"k", 0o644);
    write(&b, "stolen", &victim, 0o644);
    write(&a, "decoy", &victim, 0o644); // so the patch copies `decoy`
    let p = sc.p("p.otatree");
    tree::diff_trees(&a, &b, &p, None, &opts()).unwrap();
    // OLD's copy source becomes a symlink (to the file, or via a directory).
    for (name, src) in [("file link", "decoy"), ("dir link", "d/victim")] {
        let dev = sc.p(&format!("dev-{}", name.replace(' ', "-")));
        copy_tree(&a, &dev);
        fs::remove_file(dev.join("decoy")).unwrap();
        symlink(sc.victim(), dev.join("decoy")).unwrap();
        symlink(sc.p("sentinel"), dev.join("d")).unwrap();
        let bad = sc.p("bad.otatree");
        tamper_manifest(&p, &bad, |m| {
            for e in &mut m.entries {
                if let tree::Entry::File { from, .. } = e {
                    *from = tree::From::Copy(src.into());
                }
            }
        });
        for in_place in [false, true] {
            let before_dev = snapshot_with_root(&dev);
            let r = if in_place {
                tree::patch_tree_in_place(&dev, &bad).map(|_| ())
            } else {
                tree::patch_tree(&dev, &bad, &sc.p("out"))
            };
            assert!(r.is_err(), "{name}: a copy through a symlink was accepted");
            assert_eq!(snapshot_with_root(&dev), before_dev, "{name}: tree changed");
            assert!(!sc.p("out").exists());
        }
    }
    assert_eq!(sc.sentinel(), before);
}

#[test]
fn setuid_and_setgid_modes_are_refused_by_default() {
    for (what, rel, mode) in [
        ("setuid file", "bin/su", 0o4755),
        ("setgid file", "bin/wall", 0o2755),
    ] {
        let sc = Scene::new();
        let (a, b) = (sc.p("old"), sc.p("new"));
        write(&a, "bin/x", b"x", 0o644);
        write(&b, "bin/x", b"x", 0o644);
        write(&b, rel, b"#!/bin/sh\n", 0o755);
        // Set after writing: some file systems drop the bits on write.
        fs::set_permissions(b.join(rel), fs::Permissions::from_mode(mode)).unwrap();
        let p = sc.p("p.otatree");
        tree::diff_trees(&a, &b, &p, None, &opts()).unwrap();
        let err = tree::patch_tree(&a, &p, &sc.p("out")).unwrap_err();
        assert!(err.to_string().contains("setuid"), "{what}: {err}");
        assert!(!sc.p("out").exists());
        let dev = sc.p("device");
        copy_tree(&a, &dev);
        let before = snapshot_with_root(&dev);
        assert!(tree::patch_tree_in_place(&dev, &p).is_err(), "{what}");
        assert_eq!(snapshot_with_root(&dev), before);
    }
    // A setgid directory likewise.
    let sc = Scene::new();
    let (a, b) = (sc.p("old"), sc.p("new"));
    write(&a, "x", b"x", 0o644);
    write(&b, "x", b"x", 0o644);
    fs::create_dir(b.join("shared")).unwrap();
    fs::set_permissions(b.join("shared"), fs::Permissions::from_mode(0o2775)).unwrap();
    let p = sc.p("p.otatree");
    tree::diff_trees(&a, &b, &p, None, &opts()).unwrap();
    assert!(tree::patch_tree(&a, &p, &sc.p("out")).is_err());
}

#[test]
fn setuid_modes_apply_when_the_caller_allows_them() {
    let sc = Scene::new();
    let (a, b) = (sc.p("old"), sc.p("new"));
    write(&a, "x", b"x", 0o644);
    write(&b, "x", b"x", 0o644);
    write(&b, "bin/su", b"#!/bin/sh\n", 0o755);
    fs::set_permissions(b.join("bin/su"), fs::Permissions::from_mode(0o4755)).unwrap();
    fs::create_dir(b.join("tmp")).unwrap();
    fs::set_permissions(b.join("tmp"), fs::Permissions::from_mode(0o1777)).unwrap();
    let p = sc.p("p.otatree");
    tree::diff_trees(&a, &b, &p, None, &opts()).unwrap();
    let allow = tree::ApplyOptions { allow_setuid: true };
    tree::patch_tree_with(&a, &p, &sc.p("out"), &allow).unwrap();
    assert_eq!(snapshot_with_root(&sc.p("out")), snapshot_with_root(&b));
    let dev = sc.p("device");
    copy_tree(&a, &dev);
    let applied = tree::patch_tree_in_place_with(&dev, &p, &allow).unwrap();
    assert_eq!(applied, tree::Applied::Updated);
    assert_eq!(snapshot_with_root(&dev), snapshot_with_root(&b));
    // Sticky alone needs no permission.
    fs::set_permissions(b.join("bin/su"), fs::Permissions::from_mode(0o755)).unwrap();
    tree::diff_trees(&a, &b, &p, None, &opts()).unwrap();
    tree::patch_tree(&a, &p, &sc.p("out2")).unwrap();
    assert_eq!(snapshot_with_root(&sc.p("out2")), snapshot_with_root(&b));
}
