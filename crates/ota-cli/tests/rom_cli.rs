//! The whole Android round trip through the real binary and real clients:
//! `ota android full|incremental` on the sample target-files, `ota publish
//! android` for all three packages, the CMUpdater exchange replayed with
//! curl (no Content-Type, no `device` in `get_delta`), the incremental
//! downloaded in two pieces (`curl -C -` resumes with `Range: bytes=N-`),
//! checked with `md5sum`, and applied by `ota android apply` onto a device
//! tree at the source build, which ends at the target build.

mod common;

use common::{ota, serve_with, text};
use ota_android::fixtures::Spec;
use serde_json::Value;
use std::path::Path;
use std::process::{Command, Stdio};

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn ok(args: &[&str]) -> String {
    let o = ota(args);
    assert!(o.status.success(), "ota {args:?}: {}", text(&o));
    text(&o)
}

fn tool(name: &str, args: &[&str]) -> std::process::Output {
    Command::new(name)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running {name}: {e}"))
}

/// POSTs `body` as the CMUpdater app does: no Content-Type at all.
fn cm_post(url: &str, body: &str) -> Value {
    let o = tool(
        "curl",
        &[
            "-sS",
            "-f",
            "-X",
            "POST",
            "-H",
            "Content-Type:",
            "--data-binary",
            body,
            url,
        ],
    );
    assert!(o.status.success(), "curl {url}: {}", text(&o));
    serde_json::from_slice(&o.stdout).unwrap()
}

#[test]
fn android_packages_published_and_applied_as_cmupdater_would() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for v in 1..=2 {
        Spec::sample(v)
            .unwrap()
            .write_zip(&d.join(format!("v{v}.zip")))
            .unwrap();
    }
    let (key, cert) = (d.join("key.pem"), d.join("cert.pem"));
    let o = tool(
        "openssl",
        &[
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
            "/CN=rom test",
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    let out = d.join("out");
    std::fs::create_dir(&out).unwrap();
    let sign = ["-k", s(&key), "--cert", s(&cert)];
    let (v1, v2) = (d.join("v1.zip"), d.join("v2.zip"));
    for v in [&v1, &v2] {
        let mut a = vec!["android", "full"];
        a.extend(sign);
        a.extend([s(v), s(&out)]);
        ok(&a);
    }
    let mut a = vec!["android", "incremental"];
    a.extend(sign);
    a.extend(["--from", s(&v1), s(&v2), s(&out)]);
    ok(&a);
    let full1 = out.join("update-eng.1001.zip");
    let full2 = out.join("update-eng.1002.zip");
    let inc = out.join("update-eng.1001-eng.1002.zip");

    let data = d.join("data");
    let server = serve_with(
        &["--listen", "127.0.0.1:0", "--data", s(&data)],
        &[],
        Stdio::null(),
    );
    let api_key = ok(&[
        "keys",
        "create",
        "builder",
        "--scope",
        "publish:rom.*",
        "--data",
        s(&data),
    ]);
    let api_key = api_key.lines().next().unwrap().trim().to_owned();
    let base = server.base.clone();
    let changelog = d.join("changelog.txt");
    std::fs::write(&changelog, "=Fixes\n* Faster boot\nsmaller patches\n").unwrap();
    let publish = |pkg: &Path, extra: &[&str]| {
        let mut a = vec![
            "publish",
            "android",
            "--server",
            &base,
            "--key",
            &api_key,
            "--channel",
            "nightly",
        ];
        a.extend(extra);
        a.push(s(pkg));
        ota(&a)
    };

    // A wrong key: the server's reason, before the package is sent.
    let o = ota(&[
        "publish",
        "android",
        "--server",
        &base,
        "--key",
        "ota_bad_key",
        "--device",
        "hammerhead",
        "--channel",
        "nightly",
        s(&full1),
    ]);
    assert!(!o.status.success());
    assert!(text(&o).contains("401"), "{}", text(&o));
    // A flag that contradicts the package: refused before sending.
    let o = publish(&full1, &["--device", "flo"]);
    assert!(!o.status.success());
    assert!(text(&o).contains("contradicts the package"), "{}", text(&o));
    // An incremental before its target build: the server refuses.
    let o = publish(&inc, &["--device", "hammerhead"]);
    assert!(!o.status.success());
    assert!(
        text(&o).contains("publish the full build eng.1002"),
        "{}",
        text(&o)
    );

    for (pkg, extra) in [
        (&full1, vec!["--device", "hammerhead"]),
        (
            &full2,
            vec!["--device", "hammerhead", "--changelog", s(&changelog)],
        ),
        (&inc, vec!["--device", "hammerhead"]),
    ] {
        let o = publish(pkg, &extra);
        assert!(o.status.success(), "{}", text(&o));
        assert!(text(&o).contains("published"), "{}", text(&o));
    }
    // Again: a no-op.
    let o = publish(&inc, &["--device", "hammerhead"]);
    assert!(text(&o).contains("already published"), "{}", text(&o));

    // The phone, on eng.1001, asks for builds...
    let builds = cm_post(
        &format!("{base}/api"),
        r#"{"method":"get_all_builds","params":{"device":"hammerhead","channels":["nightly"],"source_incremental":"eng.1001"}}"#,
    );
    let result = builds["result"].as_array().unwrap();
    assert_eq!(result.len(), 1, "{builds}");
    assert_eq!(result[0]["incremental"], "eng.1002");
    let changes = tool(
        "curl",
        &["-sS", "-f", result[0]["changes"].as_str().unwrap()],
    );
    assert!(String::from_utf8_lossy(&changes.stdout).ends_with("smaller patches\n"));
    // ...then for the delta to the one it chose, without naming itself.
    let delta = cm_post(
        &format!("{base}/api/v1/build/get_delta"),
        r#"{"source_incremental":"eng.1001","target_incremental":"eng.1002"}"#,
    );
    let url = delta["download_url"].as_str().expect("a delta");
    let md5 = delta["md5sum"].as_str().unwrap();

    // Download with an interruption, then resume as DownloadManager does.
    let part = d.join("incremental-eng.1001-eng.1002.zip");
    let o = tool("curl", &["-sS", "-f", "-r", "0-4999", "-o", s(&part), url]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(std::fs::metadata(&part).unwrap().len(), 5000);
    let o = tool(
        "curl",
        &[
            "-sS",
            "-f",
            "-C",
            "-",
            "-w",
            "%{http_code}",
            "-o",
            s(&part),
            url,
        ],
    );
    assert_eq!(String::from_utf8_lossy(&o.stdout), "206", "{}", text(&o));
    let sum = tool("md5sum", &[s(&part)]);
    assert!(String::from_utf8_lossy(&sum.stdout).starts_with(md5));
    assert_eq!(std::fs::read(&part).unwrap(), std::fs::read(&inc).unwrap());

    // A device tree at the source build takes the incremental to the target.
    let root = d.join("device");
    let props = d.join("props");
    std::fs::write(&props, "ro.product.device=hammerhead\n").unwrap();
    ok(&[
        "android",
        "apply",
        "--props",
        s(&props),
        "--cert",
        s(&cert),
        s(&full1),
        s(&root),
    ]);
    ok(&["android", "apply", "--cert", s(&cert), s(&part), s(&root)]);
    let bp = std::fs::read_to_string(root.join("system/build.prop")).unwrap();
    assert!(bp.contains("ro.build.version.incremental=eng.1002"), "{bp}");
    // Byte for byte the tree the full target build installs.
    let fresh = d.join("fresh");
    ok(&[
        "android",
        "apply",
        "--props",
        s(&props),
        "--cert",
        s(&cert),
        s(&full2),
        s(&fresh),
    ]);
    assert_eq!(
        ok(&["digest", s(&root.join("system"))]),
        ok(&["digest", s(&fresh.join("system"))])
    );
}

/// Makes a self-signed RSA key and certificate with openssl.
fn release_key(d: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let (key, cert) = (d.join("release.pem"), d.join("release.x509.pem"));
    let o = tool(
        "openssl",
        &[
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
            "/CN=release",
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    (key, cert)
}

/// Target-files uploaded once: the server's jobs build and sign the full
/// packages and the incrementals from the last K builds, which CMUpdater
/// then offers, and which install on a device tree.
#[test]
fn target_files_built_into_signed_packages_by_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let tf: Vec<_> = (1..=3)
        .map(|v| {
            let p = d.join(format!("tf{v}.zip"));
            Spec::sample(v).unwrap().write_zip(&p).unwrap();
            p
        })
        .collect();
    let (key, cert) = release_key(d);
    let data = d.join("data");
    let server = serve_with(
        &[
            "--listen",
            "127.0.0.1:0",
            "--data",
            s(&data),
            "--android-key",
            s(&key),
            "--android-cert",
            s(&cert),
        ],
        &[],
        Stdio::null(),
    );
    let api_key = ok(&[
        "keys",
        "create",
        "builder",
        "--scope",
        "publish:rom.*",
        "--data",
        s(&data),
    ]);
    let api_key = api_key.lines().next().unwrap().trim().to_owned();
    let base = server.base.clone();
    let publish = |file: &Path, extra: &[&str]| {
        let mut a = vec![
            "publish",
            "android",
            "--server",
            &base,
            "--key",
            &api_key,
            "--device",
            "hammerhead",
            "--channel",
            "nightly",
            "--wait",
        ];
        a.extend(extra);
        a.extend(["--target-files", s(file)]);
        ota(&a)
    };

    // Refused before anything is sent: a contradicting flag, a file that
    // is not target-files.
    let mut a = vec!["publish", "android", "--server", &base, "--key", &api_key];
    a.extend([
        "--device",
        "flo",
        "--channel",
        "nightly",
        "--target-files",
        s(&tf[0]),
    ]);
    let o = ota(&a);
    assert!(!o.status.success());
    assert!(text(&o).contains("contradicts"), "{}", text(&o));
    let junk = d.join("junk.zip");
    std::fs::write(&junk, b"PK\x05\x06not a zip at all").unwrap();
    let o = publish(&junk, &[]);
    assert!(!o.status.success());
    assert!(text(&o).contains("not a target-files zip"), "{}", text(&o));

    // The server checks too: a zip without META/misc_info.txt sent by hand.
    let plain = d.join("plain.zip");
    {
        let mut z = zip::ZipWriter::new(std::fs::File::create(&plain).unwrap());
        z.start_file(
            "SYSTEM/build.prop",
            zip::write::SimpleFileOptions::default(),
        )
        .unwrap();
        std::io::Write::write_all(&mut z, b"ro.product.device=hammerhead\n").unwrap();
        z.finish().unwrap();
    }
    let o = tool(
        "curl",
        &[
            "-sS",
            "-w",
            "%{http_code}",
            "-H",
            &format!("Authorization: Bearer {api_key}"),
            "-F",
            "build={\"device\":\"hammerhead\",\"channel\":\"nightly\"};type=application/json",
            "-F",
            &format!("file=@{}", s(&plain)),
            &format!("{base}/api/v1/builds/target-files"),
        ],
    );
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.ends_with("400") && out.contains("META/misc_info.txt"),
        "{out}"
    );

    // Build 1: its full package only. Build 2: full + from 1. Build 3 with
    // one source: full + from 2 only.
    for (file, extra) in [
        (&tf[0], vec![]),
        (&tf[1], vec![]),
        (&tf[2], vec!["--sources", "1"]),
    ] {
        let o = publish(file, &extra);
        assert!(o.status.success(), "{}", text(&o));
    }
    // The same upload again is a no-op.
    let o = publish(&tf[1], &[]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("\"created\":false"), "{}", text(&o));

    let builds = cm_post(
        &format!("{base}/api"),
        r#"{"method":"get_all_builds","params":{"device":"hammerhead","channels":["nightly"],"source_incremental":"eng.1001"}}"#,
    );
    let result: Vec<&str> = builds["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["incremental"].as_str().unwrap())
        .collect();
    assert_eq!(result, ["eng.1003", "eng.1002"], "{builds}");
    let delta = |from: &str, to: &str| {
        cm_post(
            &format!("{base}/api/v1/build/get_delta"),
            &format!(r#"{{"source_incremental":"{from}","target_incremental":"{to}"}}"#),
        )
    };
    assert!(delta("eng.1001", "eng.1002")["download_url"].is_string());
    assert!(delta("eng.1002", "eng.1003")["download_url"].is_string());
    assert!(
        delta("eng.1001", "eng.1003")["errors"].is_array(),
        "--sources 1 builds no incremental from two builds back"
    );

    // Downloaded, verified against the release certificate, installed.
    let fetch = |url: &str, name: &str| {
        let p = d.join(name);
        let o = tool("curl", &["-sS", "-f", "-o", s(&p), url]);
        assert!(o.status.success(), "{}", text(&o));
        p
    };
    let all = cm_post(
        &format!("{base}/api"),
        r#"{"method":"get_all_builds","params":{"device":"hammerhead","channels":["nightly"],"source_incremental":"none"}}"#,
    );
    let first = all["result"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["incremental"] == "eng.1001")
        .unwrap();
    let full1 = fetch(first["url"].as_str().unwrap(), "full1.zip");
    let inc12 = fetch(
        delta("eng.1001", "eng.1002")["download_url"]
            .as_str()
            .unwrap(),
        "inc12.zip",
    );
    let inc23 = fetch(
        delta("eng.1002", "eng.1003")["download_url"]
            .as_str()
            .unwrap(),
        "inc23.zip",
    );
    let root = d.join("device");
    let props = d.join("props");
    std::fs::write(&props, "ro.product.device=hammerhead\n").unwrap();
    ok(&[
        "android",
        "apply",
        "--props",
        s(&props),
        "--cert",
        s(&cert),
        s(&full1),
        s(&root),
    ]);
    for p in [&inc12, &inc23] {
        ok(&["android", "apply", "--cert", s(&cert), s(p), s(&root)]);
    }
    let bp = std::fs::read_to_string(root.join("system/build.prop")).unwrap();
    assert!(bp.contains("ro.build.version.incremental=eng.1003"), "{bp}");
    // The release key signed them: openssl verifies the signature block.
    let (_, der) = ota_android::sign::signature_block(&inc23).unwrap();
    let sig = d.join("sig.der");
    std::fs::write(&sig, der).unwrap();
    let o = tool(
        "openssl",
        &[
            "pkcs7",
            "-inform",
            "DER",
            "-in",
            s(&sig),
            "-print_certs",
            "-noout",
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("release"),
        "{}",
        text(&o)
    );
}
