//! What the engine leaves behind: patch files readable as any new file
//! would be (`0666 & !umask`), and an in-place update that can be re-run.

mod common;
use common::*;
use ota_delta::tree;
use ota_delta::DiffOptions;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// The process umask, from /proc (Linux ≥ 4.7), without changing it.
fn umask() -> u32 {
    let status = fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("Umask:")).unwrap();
    u32::from_str_radix(line["Umask:".len()..].trim(), 8).unwrap()
}

fn mode(p: &Path) -> u32 {
    fs::metadata(p).unwrap().permissions().mode() & 0o7777
}

#[test]
fn patches_get_the_mode_of_a_new_file() {
    let want = 0o666 & !umask();
    let dir = tempfile::tempdir().unwrap();
    let d = |n: &str| dir.path().join(n);
    write(dir.path(), "old", &[1u8; 4000], 0o600);
    write(dir.path(), "new", &[2u8; 4000], 0o600);
    for format in [ota_delta::Format::Otadiff, ota_delta::Format::Bsdiff40] {
        let o = DiffOptions { format, ..opts() };
        ota_delta::diff_files(&d("old"), &d("new"), &d("p"), &o).unwrap();
        assert_eq!(mode(&d("p")), want, "{format:?} patch");
    }
    write(&d("a"), "f", b"one", 0o600);
    write(&d("b"), "f", b"two", 0o600);
    tree::diff_trees(&d("a"), &d("b"), &d("t"), Some(&d("r")), &opts()).unwrap();
    assert_eq!(mode(&d("t")), want, "tree patch");
    assert_eq!(mode(&d("r")), want, "reverse tree patch");
    // A patched file keeps the old file's mode; a patched tree the manifest's.
    write(dir.path(), "old", &[1u8; 4000], 0o751);
    ota_delta::diff_files(&d("old"), &d("new"), &d("p"), &opts()).unwrap();
    ota_delta::patch_file(&d("old"), &d("p"), &d("out"), true).unwrap();
    assert_eq!(mode(&d("out")), 0o751);
    tree::patch_tree(&d("a"), &d("t"), &d("tree-out")).unwrap();
    assert_eq!(mode(&d("tree-out/f")), 0o600);
}

#[test]
fn in_place_update_can_be_rerun_after_it_completed() {
    let dir = tempfile::tempdir().unwrap();
    let d = |n: &str| dir.path().join(n);
    let (a, b) = (d("a"), d("b"));
    write(&a, "README", b"v1\n", 0o644);
    write(&a, "gone", b"deleted later\n", 0o644);
    write(&a, "lib/x", &[3u8; 5000], 0o644);
    write(&b, "README", b"v2\n", 0o644);
    write(&b, "lib/x", &[3u8; 5000], 0o755);
    write(&b, "lib/y", &[4u8; 5000], 0o644);
    tree::diff_trees(&a, &b, &d("p"), None, &opts()).unwrap();
    let st = std::process::Command::new("cp")
        .arg("-a")
        .arg(&a)
        .arg(d("dev"))
        .status()
        .unwrap();
    assert!(st.success());
    tree::patch_tree_in_place(&d("dev"), &d("p")).unwrap();
    // Re-applied (an agent retrying after a lost answer): success, no change.
    tree::patch_tree_in_place(&d("dev"), &d("p")).unwrap();
    let listing = |p: &Path| {
        let mut v: Vec<_> = walk(p);
        v.sort();
        v
    };
    assert_eq!(listing(&d("dev")), listing(&b));
    // A tree that is neither the source nor the target is still refused.
    fs::write(d("dev/README"), b"something else\n").unwrap();
    let err = tree::patch_tree_in_place(&d("dev"), &d("p")).unwrap_err();
    assert!(err.to_string().contains("wrong source"), "{err}");
}

fn walk(root: &Path) -> Vec<(String, u32, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let rel = p.strip_prefix(root).unwrap().display().to_string();
            let m = fs::symlink_metadata(&p).unwrap();
            if m.is_dir() {
                stack.push(p.clone());
                out.push((rel, m.permissions().mode() & 0o7777, Vec::new()));
            } else {
                out.push((rel, m.permissions().mode() & 0o7777, fs::read(&p).unwrap()));
            }
        }
    }
    out
}
