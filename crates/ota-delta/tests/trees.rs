//! Directory-tree deltas on real directories: round trips (forward and
//! reverse), wrong sources, hostile patches, in-place updates and recovery.

use ota_delta::tree::{self, Manifest};
use ota_delta::DeltaError;
mod common;
use common::*;
use proptest::prelude::*;
use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::Path;

/// A realistic pair: unchanged, modified, renamed (versioned directory),
/// moved, deleted and added files, an empty file, symlinks, modes.
fn sample_pair(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let (a, b) = (dir.join("old"), dir.join("new"));
    let lib: Vec<u8> = (0..200_000u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 23) as u8)
        .collect();
    let mut lib2 = lib.clone();
    lib2[1000..1010].copy_from_slice(b"0123456789");
    lib2.extend_from_slice(b"appended");
    for (root, v, libdata) in [(&a, "1.2", &lib), (&b, "1.3", &lib2)] {
        fs::create_dir_all(root).unwrap();
        write(root, "README", b"same in both\n", 0o644);
        write(root, "bin/tool", libdata, 0o755);
        write(
            root,
            &format!("pkg-{v}.dist-info/RECORD"),
            format!("pkg-{v}.dist-info/RECORD,,\nbin/tool,sha256=x\n")
                .repeat(50)
                .as_bytes(),
            0o644,
        );
        write(root, "empty", b"", 0o600);
        symlink("bin/tool", root.join("tool-link")).unwrap();
    }
    write(&a, "gone.txt", b"deleted in new", 0o644);
    write(&a, "old/place.dat", &lib[..5000], 0o644);
    write(&b, "new/place.dat", &lib[..5000], 0o644); // moved
    write(&b, "added.txt", b"brand new file", 0o640);
    fs::set_permissions(b.join("README"), fs::Permissions::from_mode(0o600)).unwrap(); // mode only
    fs::remove_file(b.join("tool-link")).unwrap();
    symlink("README", b.join("tool-link")).unwrap(); // retargeted
    (a, b)
}

#[test]
fn forward_and_reverse_roundtrip() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = sample_pair(dir.path());
    let (fwd, rev) = (dir.path().join("f.otatree"), dir.path().join("r.otatree"));
    tree::diff_trees(&a, &b, &fwd, Some(&rev), &opts()).unwrap();
    let before = snapshot(&a);
    tree::patch_tree(&a, &fwd, &dir.path().join("out")).unwrap();
    assert_eq!(snapshot(&dir.path().join("out")), snapshot(&b));
    assert_eq!(snapshot(&a), before, "OLD untouched");
    tree::patch_tree(&b, &rev, &dir.path().join("back")).unwrap();
    assert_eq!(snapshot(&dir.path().join("back")), snapshot(&a));
    // The output must not exist yet.
    let err = tree::patch_tree(&a, &fwd, &dir.path().join("out")).unwrap_err();
    assert!(err.to_string().contains("already exists"), "{err}");
}

/// More directories than the applier keeps handles open for (256), deep
/// and wide, with modes that shut a walker out (0o500, 0o111): every file
/// lands where it belongs, in place and to a new directory.
#[test]
fn many_directories_roundtrip() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("old"), dir.path().join("new"));
    for root in [&a, &b] {
        for i in 0..150 {
            let deep = format!("d{}/e{}/f{i}", i % 7, i % 13);
            write(
                root,
                &format!("{deep}/same.txt"),
                format!("{i}").as_bytes(),
                0o644,
            );
            write(root, &format!("w{i}/x.bin"), &vec![i as u8; 3000], 0o644);
        }
    }
    for i in (0..150).step_by(3) {
        write(
            &b,
            &format!("w{i}/x.bin"),
            &vec![i as u8 ^ 0x55; 3100],
            0o600,
        );
        write(
            &b,
            &format!("d{}/e{}/f{i}/new.txt", i % 7, i % 13),
            b"added",
            0o644,
        );
    }
    fs::set_permissions(b.join("w3"), fs::Permissions::from_mode(0o500)).unwrap();
    fs::set_permissions(b.join("d1/e1"), fs::Permissions::from_mode(0o711)).unwrap();
    let patch = dir.path().join("p.otatree");
    tree::diff_trees(&a, &b, &patch, None, &opts()).unwrap();
    let out = dir.path().join("out");
    tree::patch_tree(&a, &patch, &out).unwrap();
    assert_eq!(snapshot(&out), snapshot(&b));
    tree::patch_tree_in_place(&a, &patch).unwrap();
    assert_eq!(snapshot(&a), snapshot(&b));
    for t in [&a, &b, &out] {
        fs::set_permissions(t.join("w3"), fs::Permissions::from_mode(0o755)).unwrap();
    }
}

#[test]
fn wrong_source_is_refused_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = sample_pair(dir.path());
    let fwd = dir.path().join("f.otatree");
    tree::diff_trees(&a, &b, &fwd, None, &opts()).unwrap();
    for tamper in ["README", "bin/tool", "extra-file"] {
        let c = dir.path().join(format!("c-{}", tamper.replace('/', "_")));
        copy_tree(&a, &c);
        fs::write(c.join(tamper), b"tampered").unwrap();
        let before = snapshot(&c);
        let out = dir.path().join("never");
        let err = tree::patch_tree(&c, &fwd, &out).unwrap_err();
        assert!(
            matches!(err, DeltaError::WrongSource { .. }),
            "{tamper}: {err}"
        );
        assert!(!out.exists() && !dir.path().join("never.ota-stage").exists());
        let err = tree::patch_tree_in_place(&c, &fwd).unwrap_err();
        assert!(
            matches!(err, DeltaError::WrongSource { .. }),
            "{tamper}: {err}"
        );
        assert_eq!(
            snapshot(&c),
            before,
            "in-place failure leaves the tree as it was"
        );
        assert!(!c
            .with_file_name(format!(
                "{}.ota-stage",
                c.file_name().unwrap().to_str().unwrap()
            ))
            .exists());
    }
}

#[test]
fn in_place_update_and_crash_recovery() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = sample_pair(dir.path());
    let fwd = dir.path().join("f.otatree");
    tree::diff_trees(&a, &b, &fwd, None, &opts()).unwrap();
    let c = dir.path().join("device");
    copy_tree(&a, &c);
    tree::patch_tree_in_place(&c, &fwd).unwrap();
    assert_eq!(snapshot(&c), snapshot(&b));
    let names: Vec<_> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert!(
        !names.iter().any(|n| n.starts_with("device.")),
        "no leftovers: {names:?}"
    );

    // Crash after the old tree was moved aside but before the new one was
    // moved in: recovery puts the old tree back.
    let d = dir.path().join("dev2");
    copy_tree(&a, &d);
    fs::rename(&d, dir.path().join("dev2.ota-old")).unwrap();
    copy_tree(&b, &dir.path().join("dev2.ota-stage"));
    fs::write(dir.path().join("dev2.ota-journal"), "staged").unwrap();
    assert!(tree::recover_in_place(&d).unwrap());
    assert_eq!(snapshot(&d), snapshot(&a));
    assert!(
        !dir.path().join("dev2.ota-stage").exists()
            && !dir.path().join("dev2.ota-journal").exists()
    );

    // Crash after the swap: recovery keeps the new tree, drops the old.
    copy_tree(&a, &dir.path().join("dev2.ota-old"));
    fs::write(dir.path().join("dev2.ota-journal"), "swapped").unwrap();
    assert!(tree::recover_in_place(&d).unwrap());
    assert_eq!(snapshot(&d), snapshot(&a));
    assert!(!dir.path().join("dev2.ota-old").exists());
    // And the next update runs normally.
    tree::patch_tree_in_place(&d, &fwd).unwrap();
    assert_eq!(snapshot(&d), snapshot(&b));

    // Killed after the swap but before "swapped" was recorded: the new
    // tree stays, the old one is dropped.
    copy_tree(&b, &dir.path().join("dev3"));
    copy_tree(&a, &dir.path().join("dev3.ota-old"));
    fs::write(dir.path().join("dev3.ota-journal"), "staged").unwrap();
    let d3 = dir.path().join("dev3");
    assert!(tree::recover_in_place(&d3).unwrap());
    assert_eq!(snapshot(&d3), snapshot(&b));
    assert!(!dir.path().join("dev3.ota-old").exists());
    assert!(!dir.path().join("dev3.ota-journal").exists());

    // Killed while writing the journal (before its rename): the temporary
    // is removed, and only it (a directory of that name is not ours).
    fs::write(dir.path().join("dev2.ota-journal.tmp-Ab12Cd"), "sta").unwrap();
    fs::create_dir(dir.path().join("dev2.ota-journal.tmp-dir")).unwrap();
    assert!(!tree::recover_in_place(&d).unwrap());
    assert!(!dir.path().join("dev2.ota-journal.tmp-Ab12Cd").exists());
    assert!(dir.path().join("dev2.ota-journal.tmp-dir").is_dir());
    assert_eq!(snapshot(&d), snapshot(&b));
}

fn copy_tree(from: &Path, to: &Path) {
    let st = std::process::Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .unwrap();
    assert!(st.success());
}

/// A change made to a valid manifest.
type Edit = Box<dyn FnOnce(&mut Manifest)>;

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
fn hostile_patches_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = sample_pair(dir.path());
    let fwd = dir.path().join("f.otatree");
    tree::diff_trees(&a, &b, &fwd, None, &opts()).unwrap();
    let outside = dir.path().join("outside");
    fs::create_dir(&outside).unwrap();
    let cases: Vec<(&str, Edit)> = vec![
        (
            "dot-dot",
            Box::new(|m: &mut Manifest| set_first_path(m, "../escape")),
        ),
        (
            "absolute",
            Box::new(|m: &mut Manifest| set_first_path(m, "/tmp/escape")),
        ),
        (
            "inner dot-dot",
            Box::new(|m: &mut Manifest| set_first_path(m, "bin/../../escape")),
        ),
        (
            "duplicate",
            Box::new(|m: &mut Manifest| {
                let e = m.entries[0].clone();
                m.entries.push(e);
            }),
        ),
        (
            "through a symlink",
            Box::new(|m: &mut Manifest| set_first_path(m, "tool-link/evil")),
        ),
        (
            "under a file",
            Box::new(|m: &mut Manifest| set_first_path(m, "README/evil")),
        ),
        (
            "copy from outside",
            Box::new(|m: &mut Manifest| {
                for e in &mut m.entries {
                    if let tree::Entry::File { from, .. } = e {
                        *from = tree::From::Copy("../outside/x".into());
                        return;
                    }
                }
            }),
        ),
        (
            "sizes do not add up",
            Box::new(|m: &mut Manifest| {
                for e in &mut m.entries {
                    if let tree::Entry::File {
                        size,
                        from: tree::From::Stream,
                        ..
                    } = e
                    {
                        *size += 1;
                        return;
                    }
                }
            }),
        ),
        (
            "deleted and changed",
            Box::new(|m: &mut Manifest| {
                let p = m.entries[0].path().to_owned();
                m.deleted.push(p);
            }),
        ),
    ];
    for (name, edit) in cases {
        let bad = dir.path().join("bad.otatree");
        tamper_manifest(&fwd, &bad, edit);
        let out = dir.path().join("out-bad");
        let r = tree::patch_tree(&a, &bad, &out);
        assert!(r.is_err(), "{name} was accepted");
        assert!(!out.exists(), "{name}: output created");
        assert_eq!(
            fs::read_dir(&outside).unwrap().count(),
            0,
            "{name}: wrote outside"
        );
        assert!(!dir.path().join("escape").exists(), "{name}: escaped");
    }
    // Truncated anywhere: an error, never a partial tree.
    let bytes = fs::read(&fwd).unwrap();
    for cut in [0, 7, 12, 20, bytes.len() / 2, bytes.len() - 1] {
        let bad = dir.path().join("cut.otatree");
        fs::write(&bad, &bytes[..cut]).unwrap();
        assert!(
            tree::patch_tree(&a, &bad, &dir.path().join("out-cut")).is_err(),
            "cut at {cut}"
        );
        assert!(!dir.path().join("out-cut").exists());
    }
}

/// Renames the first stream file entry (so the path is the one tested).
fn set_first_path(m: &mut Manifest, path: &str) {
    for e in &mut m.entries {
        if let tree::Entry::File { path: p, .. } = e {
            *p = path.to_owned();
            return;
        }
    }
}

fn random_tree(root: &Path, files: &[(u8, Vec<u8>, bool)]) {
    fs::create_dir_all(root).unwrap();
    for (i, (slot, data, exec)) in files.iter().enumerate() {
        let rel = format!("d{}/f{}-{}", slot % 4, slot, i % 3);
        write(root, &rel, data, if *exec { 0o755 } else { 0o644 });
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]
    #[test]
    fn random_trees_roundtrip(
        old in prop::collection::vec((0u8..12, prop::collection::vec(0u8..4, 0..3000), any::<bool>()), 0..10),
        new in prop::collection::vec((0u8..12, prop::collection::vec(0u8..4, 0..3000), any::<bool>()), 0..10),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        random_tree(&a, &old);
        // NEW shares some files with OLD, mutated.
        let mut mixed = new.clone();
        for (k, f) in old.iter().enumerate().filter(|(k, _)| k % 2 == 0) {
            let mut d = f.1.clone();
            if !d.is_empty() { let n = d.len(); d[k % n] ^= 1; }
            mixed.push((f.0, d, f.2));
        }
        random_tree(&b, &mixed);
        let (fwd, rev) = (dir.path().join("f"), dir.path().join("r"));
        tree::diff_trees(&a, &b, &fwd, Some(&rev), &opts()).unwrap();
        tree::patch_tree(&a, &fwd, &dir.path().join("out")).unwrap();
        prop_assert_eq!(snapshot(&dir.path().join("out")), snapshot(&b));
        tree::patch_tree(&b, &rev, &dir.path().join("back")).unwrap();
        prop_assert_eq!(snapshot(&dir.path().join("back")), snapshot(&a));
    }
}
