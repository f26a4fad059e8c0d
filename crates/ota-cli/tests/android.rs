//! `ota android …` through the real binary: names, signing, verify, apply.

use ota_android::fixtures::Spec;
use std::path::Path;
use std::process::{Command, Output};

const OTA: &str = env!("CARGO_BIN_EXE_ota");

fn ota(args: &[&str]) -> Output {
    Command::new(OTA).args(args).output().unwrap()
}

fn ok(args: &[&str]) -> String {
    let o = ota(args);
    assert!(
        o.status.success(),
        "ota {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).to_string()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn build_sign_verify_and_apply() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for v in 1..=2 {
        Spec::sample(v)
            .unwrap()
            .write_zip(&d.join(format!("v{v}.zip")))
            .unwrap();
    }
    let (key, cert) = (d.join("key.pem"), d.join("cert.pem"));
    let st = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            s(&key),
            "-out",
            s(&cert),
            "-days",
            "30",
            "-subj",
            "/CN=ota cli test",
        ])
        .output()
        .expect("openssl");
    assert!(st.status.success());
    let out = d.join("out");
    std::fs::create_dir(&out).unwrap();

    // An output directory gets seed 000's names.
    let full = ok(&[
        "android",
        "full",
        "--package-key",
        s(&key),
        "--cert",
        s(&cert),
        s(&d.join("v1.zip")),
        s(&out),
    ]);
    assert!(
        full.contains("update-eng.1001.zip") && full.contains("signed"),
        "{full}"
    );
    let inc = ok(&[
        "android",
        "incremental",
        "-k",
        s(&key),
        "--cert",
        s(&cert),
        "--worker-threads",
        "2",
        "--from",
        s(&d.join("v1.zip")),
        s(&d.join("v2.zip")),
        s(&out),
    ]);
    assert!(inc.contains("update-eng.1001-eng.1002.zip"), "{inc}");
    let full_pkg = out.join("update-eng.1001.zip");
    let inc_pkg = out.join("update-eng.1001-eng.1002.zip");
    assert!(ok(&["android", "verify", s(&full_pkg), "--cert", s(&cert)]).contains("signature OK"));

    // Tampered: refused by verify and by apply --cert, and nothing installed.
    let mut bytes = std::fs::read(&inc_pkg).unwrap();
    bytes[200] ^= 0x10;
    let bad = d.join("bad.zip");
    std::fs::write(&bad, &bytes).unwrap();
    let o = ota(&["android", "verify", s(&bad), "--cert", s(&cert)]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("signature verification failed"));

    let root = d.join("root");
    let props = d.join("props");
    std::fs::write(&props, "ro.product.device=hammerhead\n").unwrap();
    ok(&[
        "android",
        "apply",
        s(&full_pkg),
        s(&root),
        "--props",
        s(&props),
        "--cert",
        s(&cert),
    ]);
    let o = ota(&["android", "apply", s(&bad), s(&root), "--cert", s(&cert)]);
    assert!(!o.status.success());
    let printed = ok(&[
        "android",
        "apply",
        s(&inc_pkg),
        s(&root),
        "--cert",
        s(&cert),
    ]);
    assert!(printed.contains("Patching system files..."), "{printed}");
    let bp = std::fs::read_to_string(root.join("system/build.prop")).unwrap();
    assert!(bp.contains("ro.build.version.incremental=eng.1002"));

    // A device of another model: recovery's message, exit status 1.
    let other = d.join("other");
    std::fs::write(&props, "ro.product.device=flo\n").unwrap();
    let o = ota(&[
        "android",
        "apply",
        s(&full_pkg),
        s(&other),
        "--props",
        s(&props),
    ]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains(
            "script aborted: This package is for \"hammerhead\" devices; this is a \"flo\"."
        ),
        "{err}"
    );
    assert!(!other.join("system").exists());

    // Bad inputs: clear errors.
    let o = ota(&["android", "full", s(&d.join("missing.zip")), s(&out)]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("missing.zip"));
    let extra = d.join("extra.edify");
    std::fs::write(&extra, "ui_print(\"unterminated);\n").unwrap();
    let o = ota(&[
        "android",
        "full",
        "-e",
        s(&extra),
        s(&d.join("v1.zip")),
        s(&out),
    ]);
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("unterminated string"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let o = ota(&[
        "android",
        "full",
        "--package-key",
        s(&key),
        s(&d.join("v1.zip")),
        s(&out),
    ]);
    assert!(
        !o.status.success(),
        "a key without its certificate must be refused"
    );
}

/// Runs `ota ARGS` under `umask MASK` (set by a shell, as a user's would be).
fn ota_umask(mask: &str, args: &[&str]) -> Output {
    Command::new("sh")
        .arg("-c")
        .arg(format!("umask {mask} && exec \"$0\" \"$@\""))
        .arg(OTA)
        .args(args)
        .output()
        .unwrap()
}

fn mode(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).unwrap().permissions().mode() & 0o7777
}

/// Packages are 0666 & !umask like any new file (0644 under umask 022),
/// so a web server running as another user can serve them.
#[test]
fn packages_get_the_umask_mode() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for v in 1..=2 {
        Spec::sample(v)
            .unwrap()
            .write_zip(&d.join(format!("v{v}.zip")))
            .unwrap();
    }
    let out = d.join("out");
    std::fs::create_dir(&out).unwrap();
    let o = ota_umask("022", &["android", "full", s(&d.join("v1.zip")), s(&out)]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(mode(&out.join("update-eng.1001.zip")), 0o644);
    let o = ota_umask(
        "027",
        &[
            "android",
            "incremental",
            "--from",
            s(&d.join("v1.zip")),
            s(&d.join("v2.zip")),
            s(&out),
        ],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(mode(&out.join("update-eng.1001-eng.1002.zip")), 0o640);
}

/// A KitKat-era key (SHA-1 certificate) signs with SHA-1, as signapk
/// does; `verify` and `apply --cert` accept that only with --allow-sha1.
#[test]
fn sha1_signatures_need_allow_sha1() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    Spec::sample(1)
        .unwrap()
        .write_zip(&d.join("v1.zip"))
        .unwrap();
    let (key, cert) = (d.join("key.pem"), d.join("cert.pem"));
    let st = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            s(&key),
            "-out",
            s(&cert),
            "-days",
            "30",
            "-subj",
            "/CN=kitkat-era key",
            "-sha1",
        ])
        .output()
        .expect("openssl");
    assert!(
        st.status.success(),
        "{}",
        String::from_utf8_lossy(&st.stderr)
    );
    let pkg = d.join("sha1.zip");
    ok(&[
        "android",
        "full",
        "-k",
        s(&key),
        "--cert",
        s(&cert),
        s(&d.join("v1.zip")),
        s(&pkg),
    ]);
    let o = ota(&["android", "verify", s(&pkg), "--cert", s(&cert)]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("--allow-sha1"), "{err}");
    let v = ok(&[
        "android",
        "verify",
        s(&pkg),
        "--cert",
        s(&cert),
        "--allow-sha1",
    ]);
    assert!(v.contains("signature OK: Sha1"), "{v}");

    let props = d.join("props");
    std::fs::write(&props, "ro.product.device=hammerhead\n").unwrap();
    let root = d.join("root");
    let apply = |extra: &[&str]| {
        let mut args = vec![
            "android",
            "apply",
            s(&pkg),
            s(&root),
            "--props",
            s(&props),
            "--cert",
            s(&cert),
        ];
        args.extend_from_slice(extra);
        ota(&args)
    };
    let o = apply(&[]);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("--allow-sha1"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(!root.join("system").exists(), "nothing may be installed");
    let o = apply(&["--allow-sha1"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(root.join("system/build.prop").exists());
}
