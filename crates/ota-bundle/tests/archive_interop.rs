//! Archives made by the real tools (GNU tar in its formats and
//! compressions, Info-ZIP's zip) are detected and unpack to the same
//! version digest as the tree they were made from.

use ota_bundle::archive::{detect, unpack, ArchiveKind, UnpackLimits};
use ota_core::digest::digest_path;
use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::Path;
use std::process::Command;

fn have(tool: &str) -> bool {
    let ok = Command::new(tool)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success() || !o.stdout.is_empty());
    if !ok {
        assert!(
            std::env::var("OTA_TEST_STRICT").as_deref() != Ok("1"),
            "{tool} is missing"
        );
        eprintln!("notice: {tool} is not installed; skipping its archives");
    }
    ok
}

fn write(root: &Path, rel: &str, data: &[u8], mode: u32) {
    let p = root.join(rel);
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(&p, data).unwrap();
    fs::set_permissions(&p, fs::Permissions::from_mode(mode)).unwrap();
}

/// A tree with real binaries, text, symlinks, modes and a long path.
fn tree(root: &Path) {
    fs::create_dir(root).unwrap();
    for (i, bin) in ["/usr/bin/true", "/usr/bin/env", "/usr/bin/tar"]
        .iter()
        .enumerate()
    {
        if let Ok(data) = fs::read(bin) {
            write(root, &format!("bin/tool{i}"), &data, 0o755);
        }
    }
    write(root, "etc/app.conf", b"threads = 4\n", 0o640);
    write(root, "share/doc/README", &b"line\n".repeat(2000), 0o644);
    let long = format!("{}/{}/file.txt", "a".repeat(90), "b".repeat(90));
    write(root, &long, b"deep", 0o600);
    symlink("../bin/tool0", root.join("share/link")).unwrap();
    symlink("/etc/hostname", root.join("abs-link")).unwrap();
    fs::create_dir(root.join("empty")).unwrap();
    fs::set_permissions(root.join("etc"), fs::Permissions::from_mode(0o750)).unwrap();
}

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn archives_from_real_tools_unpack_to_the_same_digest() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    tree(&src);
    let want = digest_path(&src).unwrap();
    let mut made: Vec<(String, ArchiveKind)> = Vec::new();
    if have("tar") {
        for (name, args, kind) in [
            ("gnu.tar", vec!["--format=gnu", "-cf"], ArchiveKind::Tar),
            ("pax.tar", vec!["--format=posix", "-cf"], ArchiveKind::Tar),
            (
                "ustar.tgz",
                vec!["--format=gnu", "-czf"],
                ArchiveKind::TarGz,
            ),
            (
                "pax.tgz",
                vec!["--format=posix", "-czf"],
                ArchiveKind::TarGz,
            ),
        ] {
            let out = dir.path().join(name);
            run(Command::new("tar")
                .args(&args)
                .arg(&out)
                .arg("-C")
                .arg(&src)
                .arg("."));
            made.push((name.into(), kind));
        }
        if have("zstd") {
            let out = dir.path().join("a.tar.zst");
            run(Command::new("tar")
                .args(["--zstd", "-cf"])
                .arg(&out)
                .arg("-C")
                .arg(&src)
                .arg("."));
            made.push(("a.tar.zst".into(), ArchiveKind::TarZst));
        }
    }
    if have("zip") {
        let out = dir.path().join("a.zip");
        // -y: symlinks as symlinks; -r: recurse.
        run(Command::new("zip")
            .args(["-qry"])
            .arg(&out)
            .arg(".")
            .current_dir(&src));
        made.push(("a.zip".into(), ArchiveKind::Zip));
    }
    for (name, kind) in made {
        let path = dir.path().join(&name);
        assert_eq!(detect(&path).unwrap(), Some(kind), "{name}");
        let dest = dir.path().join(format!("out-{name}"));
        fs::create_dir(&dest).unwrap();
        unpack(&path, kind, &dest, &UnpackLimits::default())
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(digest_path(&dest).unwrap(), want, "{name}");
    }
}
