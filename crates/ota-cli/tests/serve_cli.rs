//! The server and publishing as a user runs them from the shell: SIGTERM
//! with a drain deadline, oversized publishes, size units, keys (scopes,
//! reuse, last use), log format, messages and secrets' file modes.

mod common;
use common::*;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn serve(args: &[&str], stderr: Stdio) -> Serve {
    serve_with(args, &[], stderr)
}

fn key(data: &Path, name: &str, scope: &str) -> String {
    let out = ota(&[
        "keys",
        "create",
        name,
        "--scope",
        scope,
        "--data",
        data.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

#[test]
fn sigterm_drains_until_the_deadline_then_exits() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let k = key(&data, "ci", "admin");
    let mut s = serve(
        &[
            "--listen",
            "127.0.0.1:0",
            "--data",
            data.to_str().unwrap(),
            "--drain-timeout",
            "2s",
        ],
        Stdio::null(),
    );
    let file = vec![5u8; 64 << 20];
    let pkg = dir.path().join("big.bin");
    std::fs::write(&pkg, &file).unwrap();
    let out = ota(&[
        "publish",
        "--server",
        &s.base,
        "--key",
        &k,
        "--package",
        "big",
        "--pkg-version",
        "1",
        pkg.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    // A client that reads slowly (the way `curl --limit-rate` does).
    let addr = s.base.trim_start_matches("http://").to_owned();
    let mut sock = std::net::TcpStream::connect(&addr).unwrap();
    write!(
        sock,
        "GET /otafiles/{} HTTP/1.1\r\nHost: x\r\n\r\n",
        sha(&file)
    )
    .unwrap();
    let mut first = [0u8; 4096];
    sock.read_exact(&mut first).unwrap();
    let t = Instant::now();
    Command::new("kill")
        .args(["-TERM", &s.child.id().to_string()])
        .status()
        .unwrap();
    let status = loop {
        if let Some(st) = s.child.try_wait().unwrap() {
            break st;
        }
        assert!(
            t.elapsed() < Duration::from_secs(15),
            "still running 15 s after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success(), "{status}");
    assert!(
        t.elapsed() >= Duration::from_secs(2),
        "waited for the drain deadline"
    );
    assert!(t.elapsed() < Duration::from_secs(8), "{:?}", t.elapsed());
}

#[test]
fn oversized_publish_reports_the_limit_every_time() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let k = key(&data, "ci", "publish:*");
    let s = serve(
        &[
            "--listen",
            "127.0.0.1:0",
            "--data",
            data.to_str().unwrap(),
            "--max-upload",
            "1MB",
        ],
        Stdio::null(),
    );
    // 1 MiB is more than 1 MB (10^6 bytes).
    let pkg = dir.path().join("f.bin");
    std::fs::write(&pkg, vec![1u8; 1 << 20]).unwrap();
    for _ in 0..4 {
        let out = ota(&[
            "publish",
            "--server",
            &s.base,
            "--key",
            &k,
            "--package",
            "app",
            "--pkg-version",
            "1",
            pkg.to_str().unwrap(),
        ]);
        assert!(!out.status.success());
        let t = text(&out);
        assert!(t.contains("accepts at most 1000000 bytes"), "{t}");
        assert!(!t.contains("Broken pipe"), "{t}");
    }
    std::fs::write(&pkg, vec![1u8; 999_999]).unwrap();
    let out = ota(&[
        "publish",
        "--server",
        &s.base,
        "--key",
        &k,
        "--package",
        "app",
        "--pkg-version",
        "1",
        pkg.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out));
}

#[test]
fn publish_messages_name_the_flags() {
    let dir = tempfile::tempdir().unwrap();
    let pkg = dir.path().join("f.bin");
    std::fs::write(&pkg, b"x").unwrap();
    let cj = dir.path().join("content.json");
    std::fs::write(&cj, r#"{"package":"app","version":"2.0"}"#).unwrap();
    let base = [
        "publish",
        "--server",
        "http://127.0.0.1:9",
        "--key",
        "ota_x",
    ];
    let run = |extra: &[&str]| {
        let mut a: Vec<&str> = base.to_vec();
        a.extend_from_slice(extra);
        text(&ota(&a))
    };
    let t = run(&[
        "--content",
        cj.to_str().unwrap(),
        "--pkg-version",
        "3.0",
        pkg.to_str().unwrap(),
    ]);
    assert!(
        t.contains(r#"--pkg-version "3.0" contradicts content.json's version "2.0""#),
        "{t}"
    );
    let t = run(&["--package", "app", pkg.to_str().unwrap()]);
    assert!(
        t.contains("no version") && t.contains("--pkg-version"),
        "{t}"
    );
    let t = run(&[
        "--package",
        "app",
        "--pkg-version",
        "01.2",
        pkg.to_str().unwrap(),
    ]);
    assert!(t.contains("leading zeros"), "{t}");
}

#[test]
fn keys_scopes_reuse_and_last_use() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let d = data.to_str().unwrap();
    let k = key(&data, "ops", "publish:org.example.*");
    let list = text(&ota(&["keys", "list", "--data", d]));
    assert!(
        list.contains("last used never") && list.contains("publish:org.example.*"),
        "{list}"
    );
    let out = ota(&["keys", "create", "ops", "--data", d]);
    assert!(!out.status.success(), "an active name is taken");
    let out = ota(&["keys", "create", "x", "--scope", "root", "--data", d]);
    assert!(!out.status.success() && text(&out).contains("invalid scope"));

    let s = serve(&["--listen", "127.0.0.1:0", "--data", d], Stdio::null());
    let pkg = dir.path().join("f.bin");
    std::fs::write(&pkg, b"payload").unwrap();
    let publish = |key: &str, package: &str| {
        ota(&[
            "publish",
            "--server",
            &s.base,
            "--key",
            key,
            "--package",
            package,
            "--pkg-version",
            "1",
            pkg.to_str().unwrap(),
        ])
    };
    assert!(publish(&k, "org.example.app").status.success());
    let out = publish(&k, "com.other");
    assert!(!out.status.success());
    assert!(text(&out).contains("403"), "{}", text(&out));
    let list = text(&ota(&["keys", "list", "--data", d]));
    assert!(!list.contains("last used never"), "{list}");

    assert!(ota(&["keys", "revoke", "ops", "--data", d])
        .status
        .success());
    let again = key(&data, "ops", "publish:*");
    assert_ne!(again, k);
    assert!(
        !publish(&k, "org.example.app2").status.success(),
        "the old key stays revoked"
    );
    assert!(publish(&again, "org.example.app2").status.success());
    let list = text(&ota(&["keys", "list", "--data", d]));
    assert_eq!(list.matches("ops").count(), 2, "{list}");
}

#[test]
fn logs_have_no_colour_in_files_and_json_on_request() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    for format in ["text", "json"] {
        let log = dir.path().join(format!("log.{format}"));
        let mut child = Command::new(OTA)
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--data",
                data.to_str().unwrap(),
            ])
            .env("OTA_LOG_FORMAT", format)
            .stdout(Stdio::piped())
            .stderr(Stdio::from(std::fs::File::create(&log).unwrap()))
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        child.wait().unwrap();
        let text = std::fs::read_to_string(&log).unwrap();
        assert!(!text.is_empty(), "the server logged its start");
        assert!(
            !text.contains('\x1b'),
            "no colour codes in a file: {text:?}"
        );
        if format == "json" {
            for l in text.lines() {
                let v: serde_json::Value =
                    serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"));
                assert!(v.get("level").is_some(), "{l}");
            }
        }
    }
}

#[test]
fn secrets_in_files_must_be_private() {
    let dir = tempfile::tempdir().unwrap();
    let keyfile = dir.path().join("key");
    std::fs::write(&keyfile, "ota_0000000000000000_00\n").unwrap();
    std::fs::set_permissions(&keyfile, std::fs::Permissions::from_mode(0o644)).unwrap();
    let pkg = dir.path().join("f.bin");
    std::fs::write(&pkg, b"x").unwrap();
    let out = ota(&[
        "publish",
        "--server",
        "http://127.0.0.1:9",
        "--key-file",
        keyfile.to_str().unwrap(),
        "--package",
        "a",
        "--pkg-version",
        "1",
        pkg.to_str().unwrap(),
    ]);
    assert!(text(&out).contains("chmod 600"), "{}", text(&out));
    let cfg = dir.path().join("ota.toml");
    std::fs::write(&cfg, "[publish]\nkey = \"ota_x\"\n").unwrap();
    std::fs::set_permissions(&cfg, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = ota(&["--config", cfg.to_str().unwrap(), "keys", "list"]);
    assert!(
        !out.status.success() && text(&out).contains("chmod 600"),
        "{}",
        text(&out)
    );
    // Plain http to another host: a warning before anything is sent.
    std::fs::set_permissions(&keyfile, std::fs::Permissions::from_mode(0o600)).unwrap();
    let out = ota(&[
        "publish",
        "--server",
        "http://0.0.0.0:9",
        "--key-file",
        keyfile.to_str().unwrap(),
        "--package",
        "a",
        "--pkg-version",
        "1",
        pkg.to_str().unwrap(),
    ]);
    let t = text(&out);
    assert!(t.contains("plain http://"), "{t}");
}

#[test]
fn settings_mistakes_are_caught_before_anything_runs() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("data");
    let d = d.to_str().unwrap();
    let out = ota(&[
        "serve",
        "--data",
        d,
        "--listen",
        "127.0.0.1:0",
        "--stall-timeout",
        "0s",
    ]);
    assert!(
        !out.status.success() && text(&out).contains("more than 0"),
        "{}",
        text(&out)
    );
    let out = ota(&[
        "serve",
        "--data",
        d,
        "--listen",
        "127.0.0.1:0",
        "--public-url",
        "https://a.example",
        "--url-from-request",
    ]);
    assert!(
        !out.status.success() && text(&out).contains("contradict"),
        "{}",
        text(&out)
    );
    // Boolean variables read as people write them.
    let out = Command::new(OTA)
        .args([
            "serve",
            "--data",
            d,
            "--listen",
            "0.0.0.0:0",
            "--stall-timeout",
            "0s",
        ])
        .env("OTA_URL_FROM_REQUEST", "1")
        .output()
        .unwrap();
    assert!(
        text(&out).contains("more than 0"),
        "OTA_URL_FROM_REQUEST=1 parses: {}",
        text(&out)
    );
    // A server URL that is not an ota server: stopped before streaming.
    let s = serve(&["--listen", "127.0.0.1:0", "--data", d], Stdio::null());
    let pkg = dir.path().join("f.bin");
    std::fs::write(&pkg, b"x").unwrap();
    let out = ota(&[
        "publish",
        "--server",
        &format!("{}/ota", s.base),
        "--key",
        "ota_x",
        "--package",
        "a",
        "--pkg-version",
        "1",
        pkg.to_str().unwrap(),
    ]);
    let t = text(&out);
    assert!(
        !out.status.success() && t.contains("404") && t.contains("nothing was sent"),
        "{t}"
    );
}

#[test]
fn strategies_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let d = data.to_str().unwrap();
    let admin = key(&data, "ops", "admin");
    let file = dir.path().join("strategies.json");
    std::fs::write(
        &file,
        r#"[{"name":"app","update":[{"strategy":"compulsory","dest":"newest"}]}]"#,
    )
    .unwrap();
    let s = serve(
        &[
            "--listen",
            "127.0.0.1:0",
            "--data",
            d,
            "--strategy",
            file.to_str().unwrap(),
        ],
        Stdio::null(),
    );
    let show = ota(&["strategy", "show", "--server", &s.base, "--key", &admin]);
    assert!(show.status.success(), "{}", text(&show));
    assert!(text(&show).contains(r#""dest":"newest""#));
    // A mistake is caught locally, with where it is; nothing is sent.
    std::fs::write(
        &file,
        r#"[{"name":"app","update":[{"strategy":"often","dest":"1"}]}]"#,
    )
    .unwrap();
    let set = ota(&[
        "strategy",
        "set",
        "--server",
        &s.base,
        "--key",
        &admin,
        file.to_str().unwrap(),
    ]);
    assert!(!set.status.success());
    assert!(
        text(&set).contains("[0].update[0].strategy"),
        "{}",
        text(&set)
    );
    std::fs::write(&file, "[]").unwrap();
    let set = ota(&[
        "strategy",
        "set",
        "--server",
        &s.base,
        "--key",
        &admin,
        file.to_str().unwrap(),
    ]);
    assert!(set.status.success(), "{}", text(&set));
    let show = ota(&["strategy", "show", "--server", &s.base, "--key", &admin]);
    assert_eq!(String::from_utf8_lossy(&show.stdout).trim(), "[]");
}
