//! The `ota` binary as a user runs it: serve, keys, publish, kill -9 and
//! SIGTERM, resumed downloads with curl and aria2c.

mod common;
use common::*;
use std::io::{BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn serve(args: &[&str], envs: &[(&str, &str)]) -> Serve {
    serve_with(args, envs, Stdio::inherit())
}

fn create_key(data: &Path) -> String {
    let out = ota(&[
        "keys",
        "create",
        "ci",
        "--scope",
        "admin",
        "--data",
        data.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

fn have(tool: &str) -> bool {
    let ok = Command::new(tool)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        ota_store::testdb::skip(&format!("{tool} is not installed"));
    }
    ok
}

fn count_files(p: &Path) -> usize {
    std::fs::read_dir(p).map(|d| d.count()).unwrap_or(0)
}

#[test]
fn keys_publish_and_resumed_downloads() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let key = create_key(&data);
    assert!(key.starts_with("ota_"));
    let list = ota(&["keys", "list", "--data", data.to_str().unwrap()]);
    let listed = String::from_utf8(list.stdout).unwrap();
    assert!(listed.contains("ci") && listed.contains("active"));
    assert!(!listed.contains(&key), "secrets are never listed");
    let again = ota(&["keys", "create", "ci", "--data", data.to_str().unwrap()]);
    assert!(!again.status.success());

    let s = serve(
        &["--listen", "127.0.0.1:0", "--data", data.to_str().unwrap()],
        &[],
    );
    let file: Vec<u8> = (0..5_000_000u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    let pkg = dir.path().join("app-1.2.3.bin");
    std::fs::write(&pkg, &file).unwrap();
    let cj = dir.path().join("content.json");
    std::fs::write(
        &cj,
        r#"{"package":"app","description":"demo","BeforeUpdate":"systemctl stop app"}"#,
    )
    .unwrap();
    let out = ota(&[
        "publish",
        "--server",
        &s.base,
        "--key",
        &key,
        "--content",
        cj.to_str().unwrap(),
        "--pkg-version",
        "1.2.3",
        "--branch",
        "stable",
        pkg.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(printed["sha256"], sha(&file));
    assert_eq!(printed["BeforeUpdate"], "systemctl stop app");

    // A contradicting flag and a wrong declared hash are refused locally.
    let out = ota(&[
        "publish",
        "--server",
        &s.base,
        "--key",
        &key,
        "--content",
        cj.to_str().unwrap(),
        "--package",
        "other",
        "--pkg-version",
        "2",
        pkg.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("contradicts"));
    let out = ota(&[
        "publish",
        "--server",
        &s.base,
        "--key",
        "ota_0000000000000000_00",
        "--package",
        "app",
        "--pkg-version",
        "9",
        pkg.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("401"));

    let url = format!("{}/otafiles/{}", s.base, sha(&file));
    let cut = 1_234_567;
    if have("curl") {
        let part = dir.path().join("curl.part");
        std::fs::write(&part, &file[..cut]).unwrap();
        let st = Command::new("curl")
            .args(["-sS", "-f", "-C", "-", "-o"])
            .arg(&part)
            .arg(&url)
            .status()
            .unwrap();
        assert!(st.success());
        assert_eq!(
            sha(&std::fs::read(&part).unwrap()),
            sha(&file),
            "curl -C - resumed exactly"
        );
    }
    if have("aria2c") {
        let d = dir.path().join("aria");
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("resumed.bin"), &file[..cut]).unwrap();
        let st = Command::new("aria2c")
            .args([
                "-q",
                "-c",
                "--allow-overwrite=false",
                "--auto-file-renaming=false",
                "-d",
            ])
            .arg(&d)
            .args(["-o", "resumed.bin", &url])
            .status()
            .unwrap();
        assert!(st.success());
        assert_eq!(
            sha(&std::fs::read(d.join("resumed.bin")).unwrap()),
            sha(&file),
            "aria2c -c resumed exactly"
        );
        let st = Command::new("aria2c")
            .args(["-q", "-x4", "-s4", "-k1M", "--min-split-size=1M", "-d"])
            .arg(&d)
            .args(["-o", "split.bin", &url])
            .status()
            .unwrap();
        assert!(st.success());
        assert_eq!(
            sha(&std::fs::read(d.join("split.bin")).unwrap()),
            sha(&file),
            "aria2c 4-way split"
        );
    }
}

/// kill -9 in the middle of an upload, then a restart: nothing half-done
/// is visible and the temporary file is gone.
#[test]
fn kill_during_upload_then_restart_is_clean() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let key = create_key(&data);
    let args = ["--listen", "127.0.0.1:0", "--data", data.to_str().unwrap()];
    let mut s = serve(&args, &[]);
    let addr = s.base.trim_start_matches("http://").to_owned();
    let file = vec![9u8; 8 << 20];
    let c = format!(
        r#"{{"package":"app","version":"1","sha256":"{}"}}"#,
        sha(&file)
    );
    let head = format!("--B\r\nContent-Disposition: form-data; name=\"content\"\r\n\r\n{c}\r\n--B\r\nContent-Disposition: form-data; name=\"file\"\r\n\r\n");
    let total = head.len() + file.len() + 8;
    let mut sock = std::net::TcpStream::connect(&addr).unwrap();
    write!(sock, "PUT /update HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {key}\r\nContent-Type: multipart/form-data; boundary=B\r\nContent-Length: {total}\r\n\r\n{head}").unwrap();
    sock.write_all(&file[..5 << 20]).unwrap();
    sock.flush().unwrap();
    let tmp = data.join("tmp");
    let t0 = Instant::now();
    while count_files(&tmp) == 0 && t0.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(count_files(&tmp), 1, "upload in progress");
    s.child.kill().unwrap(); // SIGKILL
    s.child.wait().unwrap();
    drop(sock);
    assert_eq!(count_files(&tmp), 1, "the crash left its temporary file");

    let s = serve(&args, &[]);
    assert_eq!(count_files(&tmp), 0, "restart removed it");
    let shards = std::fs::read_dir(data.join("blobs")).unwrap().count();
    assert_eq!(shards, 0, "no blob");
    let out = Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}"])
        .arg(format!("{}/maxVersion?package=app&branch=main", s.base))
        .output();
    if let Ok(out) = out {
        assert_eq!(String::from_utf8_lossy(&out.stdout), "404");
    }
}

/// SIGTERM lets an in-flight download finish, then the server exits 0.
#[test]
fn sigterm_finishes_in_flight_requests() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let key = create_key(&data);
    let mut s = serve(
        &["--listen", "127.0.0.1:0", "--data", data.to_str().unwrap()],
        &[],
    );
    let file = vec![3u8; 32 << 20];
    let pkg = dir.path().join("big.bin");
    std::fs::write(&pkg, &file).unwrap();
    let out = ota(&[
        "publish",
        "--server",
        &s.base,
        "--key",
        &key,
        "--package",
        "big",
        "--pkg-version",
        "1",
        pkg.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let addr = s.base.trim_start_matches("http://").to_owned();
    let mut sock = std::net::TcpStream::connect(&addr).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    write!(
        sock,
        "GET /otafiles/{} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n",
        sha(&file)
    )
    .unwrap();
    let mut reader = BufReader::new(sock);
    let mut first = [0u8; 4096];
    std::io::Read::read_exact(&mut reader, &mut first).unwrap(); // the download has started
    let st = Command::new("kill")
        .args(["-TERM", &s.child.id().to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    std::thread::sleep(Duration::from_millis(300));
    let mut rest = Vec::new();
    std::io::Read::read_to_end(&mut reader, &mut rest).unwrap();
    let mut all = first.to_vec();
    all.extend_from_slice(&rest);
    let body_at = all.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    assert_eq!(
        all.len() - body_at,
        file.len(),
        "the whole file arrived after SIGTERM"
    );
    let status = s.child.wait().unwrap();
    assert!(status.success(), "clean exit after SIGTERM: {status}");
}

/// Flags beat OTA_* variables, which beat the config file.
#[test]
fn config_file_env_and_flags() {
    let dir = tempfile::tempdir().unwrap();
    let from_file = dir.path().join("from-file");
    let from_env = dir.path().join("from-env");
    let cfg = dir.path().join("ota.toml");
    std::fs::write(
        &cfg,
        format!(
            "listen = \"127.0.0.1:1\"\ndata = \"{}\"\nmax_upload = \"1MiB\"\n",
            from_file.display()
        ),
    )
    .unwrap();
    // The file's data dir, the environment's listen address.
    let s = serve(
        &["--config", cfg.to_str().unwrap()],
        &[("OTA_LISTEN", "127.0.0.1:0")],
    );
    assert!(from_file.join("blobs").is_dir());
    drop(s);
    // The environment's data dir beats the file's; the flag's listen beats the environment's.
    let s = serve(
        &["--config", cfg.to_str().unwrap(), "--listen", "127.0.0.1:0"],
        &[
            ("OTA_DATA", from_env.to_str().unwrap()),
            ("OTA_LISTEN", "127.0.0.1:1"),
        ],
    );
    assert!(from_env.join("blobs").is_dir());
    drop(s);
    std::fs::write(&cfg, "lissten = 1\n").unwrap();
    let out = ota(&["serve", "--config", cfg.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown field"));
}

/// `ota diff` / `ota patch` as a user runs them, on files and trees.
#[test]
fn diff_and_patch_files_and_trees() {
    let dir = tempfile::tempdir().unwrap();
    let d = |p: &str| dir.path().join(p);
    let old: Vec<u8> = (0..300_000u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 24) as u8)
        .collect();
    let mut new = old.clone();
    new[1234] ^= 0xff;
    new.extend_from_slice(b"tail");
    std::fs::write(d("old.bin"), &old).unwrap();
    std::fs::write(d("new.bin"), &new).unwrap();
    let s = |p: &std::path::Path| p.to_str().unwrap().to_owned();
    for format in ["otadiff", "bsdiff40"] {
        let out = ota(&[
            "diff",
            "--format",
            format,
            &s(&d("old.bin")),
            &s(&d("new.bin")),
            &s(&d("p")),
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let out = ota(&["patch", &s(&d("old.bin")), &s(&d("p")), &s(&d("out.bin"))]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(std::fs::read(d("out.bin")).unwrap(), new, "{format}");
        std::fs::remove_file(d("out.bin")).unwrap();
    }
    // A wrong source: a clear error, exit status 1, no output.
    ota(&["diff", &s(&d("old.bin")), &s(&d("new.bin")), &s(&d("p"))]);
    let out = ota(&["patch", &s(&d("new.bin")), &s(&d("p")), &s(&d("out.bin"))]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("wrong source"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!d("out.bin").exists());
    // Garbage is not a patch.
    std::fs::write(d("junk"), b"not a patch at all").unwrap();
    let out = ota(&[
        "patch",
        &s(&d("old.bin")),
        &s(&d("junk")),
        &s(&d("out.bin")),
    ]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown patch format"));

    // Trees: forward, reverse, in place.
    for (root, data) in [("a", &old), ("b", &new)] {
        std::fs::create_dir_all(d(root).join("lib")).unwrap();
        std::fs::write(d(root).join("lib/core.bin"), data).unwrap();
        std::fs::write(d(root).join("VERSION"), root).unwrap();
    }
    let out = ota(&[
        "diff",
        "--reverse-out",
        &s(&d("rev.otatree")),
        &s(&d("a")),
        &s(&d("b")),
        &s(&d("fwd.otatree")),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = ota(&["patch", &s(&d("a")), &s(&d("fwd.otatree")), &s(&d("b2"))]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(std::fs::read(d("b2/lib/core.bin")).unwrap(), new);
    let out = ota(&["patch", "--in-place", &s(&d("b2")), &s(&d("rev.otatree"))]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(std::fs::read(d("b2/lib/core.bin")).unwrap(), old);
    assert_eq!(std::fs::read(d("b2/VERSION")).unwrap(), b"a");
    let out = ota(&["diff", &s(&d("a")), &s(&d("new.bin")), &s(&d("x"))]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("both be files or both be directories"));
}
