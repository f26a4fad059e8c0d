//! The deployment of deploy/nginx.conf, for real: two `ota serve` on one
//! PostgreSQL and one S3-compatible store (Garage in CI) behind Debian's
//! nginx with `ip_hash`. A version and a ROM build published through one
//! instance are served by the other at once; a download through nginx is
//! cut and resumed byte-exact; killing the instance that serves a download
//! lets the client resume through the other; the pack job of a new version
//! runs exactly once across both.

mod common;

use common::{ota, serve_with, text, Serve};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn nginx_binary() -> Option<PathBuf> {
    ["/usr/sbin/nginx", "/usr/bin/nginx"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

struct Nginx(Child);

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGTERM: the master stops its workers (SIGKILL would orphan them).
        let _ = Command::new("kill").arg(self.0.id().to_string()).status();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// deploy/nginx.conf with the two instances and a free port, inside a
/// minimal main configuration.
fn nginx_conf(dir: &Path, port: u16, upstreams: &[&str]) -> PathBuf {
    let shipped = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/nginx.conf"),
    )
    .unwrap();
    let mut site = String::new();
    let mut servers_written = false;
    for line in shipped.lines() {
        let t = line.trim_start();
        if t.starts_with("server 127.0.0.1:") {
            if !servers_written {
                for u in upstreams {
                    site.push_str(&format!("    server {u} max_fails=1 fail_timeout=30s;\n"));
                }
                servers_written = true;
            }
            continue;
        }
        if t.starts_with("listen 80;") {
            site.push_str(&format!("    listen 127.0.0.1:{port};\n"));
            continue;
        }
        site.push_str(line);
        site.push('\n');
    }
    assert!(
        servers_written,
        "deploy/nginx.conf lost its upstream servers"
    );
    let d = s(dir);
    let conf = format!(
        "daemon off;\nworker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/error.log;\n\
         events {{ worker_connections 1024; }}\n\
         http {{\n  access_log off;\n  client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n\
         fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n{site}}}\n"
    );
    let path = dir.join("nginx.conf");
    std::fs::write(&path, conf).unwrap();
    path
}

/// The store URL with a prefix of this run's own.
fn s3_url_with_prefix(url: &str, prefix: &str) -> String {
    let (head, query) = url.split_once('?').unwrap_or((url, ""));
    format!("{}/{prefix}?{query}", head.trim_end_matches('/'))
}

fn curl(args: &[&str]) -> std::process::Output {
    Command::new("curl").args(args).output().unwrap()
}

fn get_json(url: &str) -> Value {
    let o = curl(&["-sS", "-f", url]);
    assert!(o.status.success(), "{url}: {}", text(&o));
    serde_json::from_slice(&o.stdout).unwrap_or(Value::Null)
}

fn serve(data: &Path, db: &str, blobs: &str, extra: &[&str]) -> Serve {
    let mut args = vec![
        "--listen",
        "127.0.0.1:0",
        "--data",
        s(data),
        "--database",
        db,
        "--blobs",
        blobs,
        "--url-from-request",
    ];
    args.extend(extra);
    serve_with(&args, &[], Stdio::null())
}

/// Requests by route on one instance, from its `/metrics`.
fn served(base: &str, route: &str) -> u64 {
    let o = curl(&["-sS", &format!("{base}/metrics")]);
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter(|l| {
            l.starts_with("ota_http_requests_total") && l.contains(&format!("route=\"{route}\""))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_behind_nginx_on_shared_storage() {
    let Some(nginx) = nginx_binary() else {
        ota_store::testdb::skip("nginx is not installed: no deployment test");
        return;
    };
    let Ok(s3) = std::env::var("OTA_TEST_S3_URL") else {
        ota_store::testdb::skip("OTA_TEST_S3_URL is unset: no deployment test");
        return;
    };
    let Some(db) = ota_store::testdb::fresh_postgres("deploy").await.unwrap() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let blobs = s3_url_with_prefix(&s3, &format!("deploy-{:x}", rand::random::<u64>()));
    let a = serve(&d.join("a"), &db, &blobs, &[]);
    let signing = d.join("a/signing-key.pem");
    let b = serve(&d.join("b"), &db, &blobs, &["--signing-key", s(&signing)]);
    let key = ota(&[
        "keys",
        "create",
        "ci",
        "--data",
        s(&d.join("a")),
        "--database",
        &db,
    ]);
    assert!(key.status.success(), "{}", text(&key));
    let key = text(&key).lines().next().unwrap().trim().to_owned();

    let port = free_port();
    let conf = nginx_conf(d, port, &[&a.base[7..], &b.base[7..]]);
    let t = Command::new(&nginx)
        .args(["-t", "-c", s(&conf), "-p", s(d)])
        .output()
        .unwrap();
    assert!(t.status.success(), "nginx -t: {}", text(&t));
    let _nginx = Nginx(
        Command::new(&nginx)
            .args(["-c", s(&conf), "-p", s(d)])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let front = format!("http://127.0.0.1:{port}");
    let started = Instant::now();
    while curl(&["-sf", &format!("{front}/healthz")]).status.code() != Some(0) {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "nginx did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    // B answers (and caches) "nothing" before A publishes.
    let max = |base: &str| get_json(&format!("{base}/maxVersion?package=app&branch=main"));
    let o = curl(&[
        "-s",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        &format!("{}/maxVersion?package=app&branch=main", b.base),
    ]);
    assert_eq!(String::from_utf8_lossy(&o.stdout), "404");
    // Larger than what the sockets and nginx hold in flight, so killing the
    // instance in the middle cuts the download.
    let payload: Vec<u8> = (0..48u32 << 20)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    let file = d.join("app.bin");
    std::fs::write(&file, &payload).unwrap();
    let published = Instant::now();
    let o = ota(&[
        "publish",
        "--server",
        &a.base,
        "--key",
        &key,
        "--package",
        "app",
        "--pkg-version",
        "1.0.0",
        "--branch",
        "main",
        s(&file),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let publish_took = published.elapsed();
    loop {
        let o = curl(&[
            "-s",
            &format!("{}/maxVersion?package=app&branch=main", b.base),
        ]);
        if String::from_utf8_lossy(&o.stdout).contains("1.0.0") {
            break;
        }
        assert!(
            published.elapsed() < publish_took + Duration::from_secs(1),
            "B still answers without 1.0.0"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    eprintln!(
        "publish through A visible on B {:?} after A answered",
        published.elapsed().saturating_sub(publish_took)
    );

    // A ROM build published through A is offered by B at once (B asked,
    // and cached the empty answer, before).
    let cm = |base: &str| {
        let o = curl(&[
            "-sS",
            "-X",
            "POST",
            "-H",
            "Content-Type:",
            "--data-binary",
            r#"{"method":"get_all_builds","params":{"device":"hammerhead","channels":["nightly"],"source_incremental":"eng.1000"}}"#,
            &format!("{base}/api"),
        ]);
        serde_json::from_slice::<Value>(&o.stdout).unwrap()
    };
    assert_eq!(cm(&b.base)["result"], serde_json::json!([]));
    let tf = d.join("tf.zip");
    ota_android::fixtures::Spec::sample(1)
        .unwrap()
        .write_zip(&tf)
        .unwrap();
    let out = d.join("rom");
    std::fs::create_dir(&out).unwrap();
    let o = ota(&["android", "full", s(&tf), s(&out)]);
    assert!(o.status.success(), "{}", text(&o));
    let published = Instant::now();
    let o = ota(&[
        "publish",
        "android",
        "--server",
        &a.base,
        "--key",
        &key,
        "--device",
        "hammerhead",
        "--channel",
        "nightly",
        s(&out.join("update-eng.1001.zip")),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let publish_took = published.elapsed();
    loop {
        if cm(&b.base)["result"][0]["incremental"] == "eng.1001" {
            break;
        }
        assert!(
            published.elapsed() < publish_took + Duration::from_secs(1),
            "B does not offer the ROM build"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    eprintln!(
        "ROM build visible on B {:?} after publishing through A returned",
        published.elapsed().saturating_sub(publish_took)
    );

    // Through nginx: the download URL names nginx, and a cut download
    // resumes byte-exact.
    let answer = max(&front);
    let remote = answer["remote"].as_str().unwrap().to_owned();
    assert!(remote.starts_with(&front), "{remote}");
    let part = d.join("part.bin");
    let o = curl(&["-sS", "-f", "-r", "0-999999", "-o", s(&part), &remote]);
    assert!(o.status.success(), "{}", text(&o));
    let o = curl(&[
        "-sS",
        "-f",
        "-C",
        "-",
        "-w",
        "%{http_code}",
        "-o",
        s(&part),
        &remote,
    ]);
    assert_eq!(String::from_utf8_lossy(&o.stdout), "206", "{}", text(&o));
    assert!(
        std::fs::read(&part).unwrap() == payload,
        "resumed download differs"
    );

    // Kill the instance nginx sends this client to, in the middle of a
    // slow download; the client resumes through the other.
    let (serving, other) = if served(&a.base, "/otafiles/{hash}") > 0 {
        (a, b)
    } else {
        (b, a)
    };
    let slow = d.join("slow.bin");
    let mut download = Command::new("curl")
        .args(["-sS", "-f", "--limit-rate", "4M", "-o", s(&slow), &remote])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    drop(serving); // kill -9
    let status = download.wait().unwrap();
    let got = std::fs::metadata(&slow).map(|m| m.len()).unwrap_or(0);
    assert!(
        !status.success() && got > 0 && got < payload.len() as u64,
        "cut at {got}"
    );
    let o = curl(&[
        "-sS",
        "-f",
        "-C",
        "-",
        "-w",
        "%{http_code}",
        "-o",
        s(&slow),
        &remote,
    ]);
    assert_eq!(String::from_utf8_lossy(&o.stdout), "206", "{}", text(&o));
    assert!(
        std::fs::read(&slow).unwrap() == payload,
        "resumed through the other instance differs"
    );
    assert!(served(&other.base, "/otafiles/{hash}") > 0);

    // A new version through the survivor: its pack job runs once.
    std::fs::write(&file, [&payload[..], b"v2"].concat()).unwrap();
    let o = ota(&[
        "publish",
        "--server",
        &front,
        "--key",
        &key,
        "--package",
        "app",
        "--pkg-version",
        "1.1.0",
        "--branch",
        "main",
        s(&file),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let started = Instant::now();
    loop {
        let o = curl(&[
            "-sS",
            "-H",
            &format!("Authorization: Bearer {key}"),
            &format!("{front}/api/v1/jobs"),
        ]);
        let jobs: Value = serde_json::from_slice(&o.stdout).unwrap();
        let jobs = jobs["jobs"].as_array().unwrap().clone();
        if !jobs.is_empty() && jobs.iter().all(|j| j["state"] == "done") {
            assert_eq!(jobs.len(), 1, "one edge, one job: {jobs:?}");
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(120), "{jobs:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
    let map = get_json(&format!("{front}/api/v1/packages/app/branches/main/deltas"));
    assert_eq!(map["packs"], 2, "upgrade and rollback, once: {map}");
    assert_eq!(max(&front)["version"], "1.1.0");
}
