//! BSDIFF40 interoperability with Debian's `bsdiff`/`bspatch`, both ways, on
//! real binaries from this machine. Skipped with a notice when the tools are
//! missing (`scripts/test` installs them and sets `OTA_TEST_STRICT=1`,
//! which turns the skip into a failure).

use ota_delta::{diff_files, patch_file, DiffOptions, Format};
use std::path::{Path, PathBuf};
use std::process::Command;

fn have_bsdiff() -> bool {
    let ok = Path::new("/usr/bin/bsdiff").exists() && Path::new("/usr/bin/bspatch").exists();
    if !ok {
        assert!(
            std::env::var("OTA_TEST_STRICT").as_deref() != Ok("1"),
            "Debian's bsdiff is not installed, and OTA_TEST_STRICT=1 forbids skipping"
        );
        eprintln!(
            "notice: Debian's bsdiff is not installed; skipping BSDIFF40 interop (scripts/test installs it)"
        );
    }
    ok
}

/// Pairs of related real executables, plus one binary and a mutated copy.
fn pairs(dir: &Path) -> Vec<(PathBuf, PathBuf)> {
    let mut v = Vec::new();
    for (a, b) in [
        ("/usr/bin/cp", "/usr/bin/mv"),
        ("/usr/bin/head", "/usr/bin/tail"),
        ("/usr/bin/md5sum", "/usr/bin/sha1sum"),
    ] {
        if Path::new(a).exists() && Path::new(b).exists() {
            v.push((PathBuf::from(a), PathBuf::from(b)));
        }
    }
    let ls = std::fs::read("/usr/bin/ls").unwrap_or_else(|_| vec![0x7f, b'E', b'L', b'F']);
    let mut m = ls.clone();
    for i in (0..m.len()).step_by(997) {
        m[i] = m[i].wrapping_add(3);
    }
    m.splice(m.len() / 2..m.len() / 2, b"inserted block".repeat(40));
    let (a, b) = (dir.join("ls.old"), dir.join("ls.new"));
    std::fs::write(&a, &ls).unwrap();
    std::fs::write(&b, &m).unwrap();
    v.push((a, b));
    // NEW is a tail of OLD: the patch must seek before its first entry.
    let tail = dir.join("ls.tail");
    std::fs::write(&tail, &ls[ls.len() / 3..]).unwrap();
    v.push((dir.join("ls.old"), tail));
    v
}

#[test]
fn our_bsdiff40_applies_with_debian_bspatch() {
    if !have_bsdiff() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    for (old, new) in pairs(dir.path()) {
        let patch = dir.path().join("p.bsdiff");
        let opts = DiffOptions {
            format: Format::Bsdiff40,
            ..DiffOptions::default()
        };
        diff_files(&old, &new, &patch, &opts).unwrap();
        let out = dir.path().join("out");
        let st = Command::new("bspatch")
            .arg(&old)
            .arg(&out)
            .arg(&patch)
            .status()
            .unwrap();
        assert!(st.success(), "bspatch failed on {}", new.display());
        assert_eq!(
            std::fs::read(&out).unwrap(),
            std::fs::read(&new).unwrap(),
            "{}",
            new.display()
        );
    }
}

#[test]
fn debian_bsdiff_patches_apply_with_ota_patch() {
    if !have_bsdiff() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    for (old, new) in pairs(dir.path()) {
        let patch = dir.path().join("p.debian");
        let st = Command::new("bsdiff")
            .arg(&old)
            .arg(&new)
            .arg(&patch)
            .status()
            .unwrap();
        assert!(st.success());
        let out = dir.path().join("out2");
        assert_eq!(
            patch_file(&old, &patch, &out, true).unwrap(),
            Format::Bsdiff40
        );
        assert_eq!(
            std::fs::read(&out).unwrap(),
            std::fs::read(&new).unwrap(),
            "{}",
            new.display()
        );
    }
}

#[test]
fn own_format_on_real_binaries() {
    let dir = tempfile::tempdir().unwrap();
    for (old, new) in pairs(dir.path()) {
        let patch = dir.path().join("p.ota");
        diff_files(&old, &new, &patch, &DiffOptions::default()).unwrap();
        let out = dir.path().join("out3");
        assert_eq!(
            patch_file(&old, &patch, &out, false).unwrap(),
            Format::Otadiff
        );
        assert_eq!(std::fs::read(&out).unwrap(), std::fs::read(&new).unwrap());
        // A wrong source writes nothing.
        let wrong = patch_file(&new, &patch, &dir.path().join("never"), false).unwrap_err();
        assert!(wrong.to_string().contains("wrong source"), "{wrong}");
        assert!(!dir.path().join("never").exists());
    }
}
