//! `ota diff` / `ota patch` as a user (or an update agent) runs them: output
//! modes, refused combinations, expected hashes for BSDIFF40, re-running an
//! in-place update, error messages, setuid entries, and the symlink attack
//! on the in-place apply.

#[path = "../../ota-delta/tests/common/elf.rs"]
mod elf;

use sha2::{Digest, Sha256};
use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::Path;
use std::process::{Command, Output};

const OTA: &str = env!("CARGO_BIN_EXE_ota");

fn sha(data: &[u8]) -> String {
    Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn ota(args: &[&str]) -> Output {
    Command::new(OTA).args(args).output().expect("run ota")
}

/// Runs `ota` under a given umask (through sh, which can set it).
fn ota_umask(umask: &str, args: &[&str]) -> Output {
    Command::new("sh")
        .arg("-c")
        .arg(format!("umask {umask} && exec \"$0\" \"$@\""))
        .arg(OTA)
        .args(args)
        .output()
        .expect("run ota")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn ok(o: &Output) -> String {
    assert!(o.status.success(), "ota failed: {}", stderr(o));
    stderr(o)
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn mode(p: &Path) -> u32 {
    fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777
}

fn write(root: &Path, rel: &str, data: &[u8], mode: u32) {
    let p = root.join(rel);
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(&p, data).unwrap();
    fs::set_permissions(&p, fs::Permissions::from_mode(mode)).unwrap();
}

fn pseudo_random(n: usize, seed: u32) -> Vec<u8> {
    (0..n as u32)
        .map(|i| (i.wrapping_add(seed).wrapping_mul(2654435761) >> 24) as u8)
        .collect()
}

/// Names in `dir`, sorted (to see that nothing was left behind).
fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    v.sort();
    v
}

#[test]
fn diff_outputs_get_the_mode_of_a_new_file() {
    let dir = tempfile::tempdir().unwrap();
    let d = |n: &str| dir.path().join(n);
    write(dir.path(), "old", &pseudo_random(20_000, 1), 0o600);
    write(dir.path(), "new", &pseudo_random(20_000, 2), 0o600);
    write(&d("a"), "f", b"one", 0o600);
    write(&d("b"), "f", b"two", 0o600);
    for (umask, want) in [("022", 0o644), ("002", 0o664), ("077", 0o600)] {
        for format in ["otadiff", "bsdiff40"] {
            let (p, r) = (
                d(&format!("p-{umask}-{format}")),
                d(&format!("r-{umask}-{format}")),
            );
            ok(&ota_umask(
                umask,
                &[
                    "diff",
                    "--format",
                    format,
                    "--reverse-out",
                    s(&r),
                    s(&d("old")),
                    s(&d("new")),
                    s(&p),
                ],
            ));
            assert_eq!(mode(&p), want, "umask {umask}, {format}");
            assert_eq!(mode(&r), want, "umask {umask}, {format} reverse");
        }
        let (t, r) = (d(&format!("t-{umask}")), d(&format!("tr-{umask}")));
        ok(&ota_umask(
            umask,
            &[
                "diff",
                "--reverse-out",
                s(&r),
                s(&d("a")),
                s(&d("b")),
                s(&t),
            ],
        ));
        assert_eq!(mode(&t), want, "umask {umask}, tree");
        assert_eq!(mode(&r), want, "umask {umask}, tree reverse");
    }
    // A patched file keeps the old file's mode, a patched tree the manifest's.
    fs::set_permissions(d("old"), fs::Permissions::from_mode(0o750)).unwrap();
    ok(&ota_umask(
        "022",
        &["patch", s(&d("old")), s(&d("p-022-otadiff")), s(&d("out"))],
    ));
    assert_eq!(mode(&d("out")), 0o750);
    ok(&ota_umask(
        "022",
        &["patch", s(&d("a")), s(&d("t-022")), s(&d("tree-out"))],
    ));
    assert_eq!(mode(&d("tree-out/f")), 0o600);
}

#[test]
fn bsdiff40_for_directories_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let d = |n: &str| dir.path().join(n);
    write(&d("a"), "f", b"one", 0o644);
    write(&d("b"), "f", b"two", 0o644);
    let o = ota(&[
        "diff",
        "--format",
        "bsdiff40",
        s(&d("a")),
        s(&d("b")),
        s(&d("p")),
    ]);
    assert!(!o.status.success(), "accepted");
    let e = stderr(&o);
    assert!(e.contains("bsdiff40") && e.contains("OTATREE1"), "{e}");
    assert!(!d("p").exists());
    // The default and an explicit otadiff still work for trees.
    ok(&ota(&["diff", s(&d("a")), s(&d("b")), s(&d("p"))]));
    ok(&ota(&[
        "diff",
        "--format",
        "otadiff",
        s(&d("a")),
        s(&d("b")),
        s(&d("p2")),
    ]));
}

#[test]
fn expected_hashes_guard_bsdiff40_and_otadiff1() {
    let dir = tempfile::tempdir().unwrap();
    let d = |n: &str| dir.path().join(n);
    let old = pseudo_random(50_000, 1);
    let mut new = old.clone();
    new[100..200].fill(7);
    let mut wrong = old.clone();
    wrong[30_000] ^= 0xff;
    fs::write(d("old"), &old).unwrap();
    fs::write(d("new"), &new).unwrap();
    fs::write(d("wrong"), &wrong).unwrap();
    let (old_sha, new_sha) = (sha(&old), sha(&new));
    ok(&ota(&[
        "diff",
        "--format",
        "bsdiff40",
        s(&d("old")),
        s(&d("new")),
        s(&d("p.bsdiff")),
    ]));
    ok(&ota(&[
        "diff",
        s(&d("old")),
        s(&d("new")),
        s(&d("p.otadiff")),
    ]));

    // Without hashes, BSDIFF40 on the wrong file "works" but warns.
    let e = ok(&ota(&[
        "patch",
        s(&d("wrong")),
        s(&d("p.bsdiff")),
        s(&d("unverified")),
    ]));
    assert!(e.contains("warning") && e.contains("no checksum"), "{e}");

    let before = names(dir.path());
    for (flags, what) in [
        (vec!["--expect-sha256", &new_sha], "--expect-sha256"),
        (vec!["--old-sha256", &old_sha], "--old-sha256"),
    ] {
        for patch in ["p.bsdiff", "p.otadiff"] {
            let mut args = vec!["patch"];
            args.extend(flags.iter().copied());
            let (w, p, out) = (d("wrong"), d(patch), d("out"));
            args.extend([s(&w), s(&p), s(&out)]);
            let o = ota(&args);
            assert!(
                !o.status.success(),
                "{what} {patch}: a wrong old file was accepted"
            );
            // BSDIFF40 is caught by the flag; OTADIFF1 by its own header too.
            let e = stderr(&o);
            assert!(
                e.contains(what) || (patch == "p.otadiff" && e.contains("wrong source")),
                "{what} {patch}: {e}"
            );
            assert_eq!(
                names(dir.path()),
                before,
                "{what} {patch}: something was written"
            );
        }
    }
    // Hashes that contradict an OTADIFF1 patch are refused before decoding.
    let other = sha(b"something else");
    for flag in ["--expect-sha256", "--old-sha256"] {
        let o = ota(&[
            "patch",
            flag,
            &other,
            s(&d("old")),
            s(&d("p.otadiff")),
            s(&d("out")),
        ]);
        assert!(!o.status.success(), "{flag}");
        assert_eq!(names(dir.path()), before, "{flag}: something was written");
    }
    // Malformed hex is a usage error.
    let o = ota(&[
        "patch",
        "--expect-sha256",
        "xyz",
        s(&d("old")),
        s(&d("p.bsdiff")),
        s(&d("out")),
    ]);
    assert!(
        !o.status.success() && stderr(&o).contains("64 hex digits"),
        "{}",
        stderr(&o)
    );
    // The right file with both hashes: verified, no warning.
    for patch in ["p.bsdiff", "p.otadiff"] {
        let out = d(&format!("{patch}.out"));
        let e = ok(&ota(&[
            "patch",
            "--old-sha256",
            &old_sha,
            "--expect-sha256",
            &new_sha,
            s(&d("old")),
            s(&d(patch)),
            s(&out),
        ]));
        assert!(!e.contains("warning"), "{e}");
        assert!(e.contains("verified"), "{e}");
        assert_eq!(fs::read(&out).unwrap(), new);
    }
    // Hashes are for files: a tree patch checks itself.
    write(&d("ta"), "f", b"one", 0o644);
    write(&d("tb"), "f", b"two", 0o644);
    ok(&ota(&["diff", s(&d("ta")), s(&d("tb")), s(&d("t"))]));
    let o = ota(&[
        "patch",
        "--expect-sha256",
        &new_sha,
        s(&d("ta")),
        s(&d("t")),
        s(&d("tout")),
    ]);
    assert!(!o.status.success());
}

#[test]
fn in_place_update_rerun_is_already_up_to_date() {
    let dir = tempfile::tempdir().unwrap();
    let d = |n: &str| dir.path().join(n);
    write(&d("a"), "README", b"v1\n", 0o644);
    write(&d("a"), "lib/x", &pseudo_random(10_000, 3), 0o644);
    write(&d("a"), "gone", b"bye\n", 0o644);
    write(&d("b"), "README", b"v2\n", 0o644);
    write(&d("b"), "lib/x", &pseudo_random(10_000, 3), 0o755);
    write(&d("b"), "lib/y", &pseudo_random(10_000, 4), 0o644);
    ok(&ota(&["diff", s(&d("a")), s(&d("b")), s(&d("p"))]));
    ok(&ota(&["diff", s(&d("a")), s(&d("b")), s(&d("p"))]));
    let st = Command::new("cp")
        .arg("-a")
        .arg(d("a"))
        .arg(d("dev"))
        .status()
        .unwrap();
    assert!(st.success());
    let e = ok(&ota(&["patch", "--in-place", s(&d("dev")), s(&d("p"))]));
    assert!(e.contains("updated"), "{e}");
    let e = ok(&ota(&["patch", "--in-place", s(&d("dev")), s(&d("p"))]));
    assert!(e.contains("already up to date"), "{e}");
    assert_eq!(fs::read(d("dev/README")).unwrap(), b"v2\n");
    assert!(!d("dev/gone").exists());
    // Anything else is still a wrong source.
    fs::write(d("dev/README"), b"local edit\n").unwrap();
    let o = ota(&["patch", "--in-place", s(&d("dev")), s(&d("p"))]);
    assert!(
        !o.status.success() && stderr(&o).contains("wrong source"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn an_unwritable_output_is_reported_once() {
    let dir = tempfile::tempdir().unwrap();
    let d = |n: &str| dir.path().join(n);
    fs::write(d("old"), pseudo_random(5000, 1)).unwrap();
    fs::write(d("new"), pseudo_random(5000, 2)).unwrap();
    ok(&ota(&["diff", s(&d("old")), s(&d("new")), s(&d("p"))]));
    for args in [
        vec!["patch", s(&d("old")), s(&d("p")), "/nonexistent/x"],
        vec!["diff", s(&d("old")), s(&d("new")), "/nonexistent/x"],
    ] {
        let o = ota(&args);
        assert!(!o.status.success());
        let e = stderr(&o);
        assert_eq!(e.matches("/nonexistent").count(), 1, "{e}");
        assert_eq!(e.matches("No such file or directory").count(), 1, "{e}");
    }
}

#[test]
fn setuid_entries_need_allow_setuid() {
    let dir = tempfile::tempdir().unwrap();
    let d = |n: &str| dir.path().join(n);
    write(&d("a"), "keep", b"k", 0o644);
    write(&d("b"), "keep", b"k", 0o644);
    write(&d("b"), "bin/su", b"#!/bin/sh\n", 0o755);
    fs::set_permissions(d("b/bin/su"), fs::Permissions::from_mode(0o4755)).unwrap();
    ok(&ota(&["diff", s(&d("a")), s(&d("b")), s(&d("p"))]));
    let o = ota(&["patch", s(&d("a")), s(&d("p")), s(&d("out"))]);
    assert!(
        !o.status.success() && stderr(&o).contains("--allow-setuid"),
        "{}",
        stderr(&o)
    );
    assert!(!d("out").exists());
    ok(&ota(&[
        "patch",
        "--allow-setuid",
        s(&d("a")),
        s(&d("p")),
        s(&d("out")),
    ]));
    assert_eq!(mode(&d("out/bin/su")), 0o4755);
}

/// The reported attack, through the binary: NEW changes `a`'s mode and
/// holds `a.ota-copy` -> a file outside the tree.
#[test]
fn in_place_apply_never_writes_through_a_symlink_of_the_new_tree() {
    let dir = tempfile::tempdir().unwrap();
    let d = |n: &str| dir.path().join(n);
    write(&d("outside"), "victim", b"do not touch\n", 0o600);
    write(&d("a"), "a", b"same\n", 0o644);
    write(&d("b"), "a", b"same\n", 0o755);
    symlink(d("outside/victim"), d("b/a.ota-copy")).unwrap();
    ok(&ota(&["diff", s(&d("a")), s(&d("b")), s(&d("p"))]));
    ok(&ota(&["patch", "--in-place", s(&d("a")), s(&d("p"))]));
    assert_eq!(fs::read(d("outside/victim")).unwrap(), b"do not touch\n");
    assert_eq!(mode(&d("outside/victim")), 0o600);
    assert_eq!(mode(&d("a/a")), 0o755);
    assert_eq!(
        fs::read_link(d("a/a.ota-copy")).unwrap(),
        d("outside/victim")
    );
}

#[test]
fn executables_get_the_transform_unless_turned_off() {
    let dir = tempfile::tempdir().unwrap();
    let d = |n: &str| dir.path().join(n);
    let p = elf::program(21, 2000);
    fs::write(d("app-1.2"), elf::link(&p)).unwrap();
    fs::write(d("app-1.3"), elf::link(&elf::edit(&p, 21, 20))).unwrap();
    // As the README shows them.
    ok(&ota(&[
        "diff",
        s(&d("app-1.2")),
        s(&d("app-1.3")),
        s(&d("app.otadiff")),
    ]));
    assert_eq!(&fs::read(d("app.otadiff")).unwrap()[..8], b"OTADIFF2");
    ok(&ota(&[
        "patch",
        s(&d("app-1.2")),
        s(&d("app.otadiff")),
        s(&d("out")),
    ]));
    assert_eq!(fs::read(d("out")).unwrap(), fs::read(d("app-1.3")).unwrap());
    ok(&ota(&[
        "diff",
        "--exe-rounds",
        "0",
        s(&d("app-1.2")),
        s(&d("app-1.3")),
        s(&d("plain.otadiff")),
    ]));
    assert_eq!(&fs::read(d("plain.otadiff")).unwrap()[..8], b"OTADIFF1");
    let o = ota(&[
        "diff",
        "--exe-rounds",
        "9",
        s(&d("app-1.2")),
        s(&d("app-1.3")),
        s(&d("x")),
    ]);
    assert!(
        !o.status.success() && stderr(&o).contains("exe-rounds"),
        "{}",
        stderr(&o)
    );
}
