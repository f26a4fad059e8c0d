//! What a public server must survive and get right, over real HTTP:
//! download URLs built at answer time, slow and idle clients, the
//! connection cap, the drain deadline at shutdown, key scopes, bounded
//! multipart parsing and publish-time checks of what reaches devices.

mod common;
use common::*;
use serde_json::Value;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn form_body(boundary: &str, content: &str, file: &[u8]) -> Vec<u8> {
    let mut b = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"content\"\r\n\r\n{content}\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"f\"\r\n\r\n"
    )
    .into_bytes();
    b.extend_from_slice(file);
    b.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    b
}

/// Sends a raw request and returns the whole answer (the server closes).
async fn raw(addr: &str, head: &str, body: &[u8]) -> String {
    let mut sock = TcpStream::connect(addr).await.unwrap();
    sock.write_all(head.as_bytes()).await.unwrap();
    // The server may answer (and stop reading) before the body is sent.
    let _ = sock.write_all(body).await;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(20), sock.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn download_urls_follow_the_configuration_not_the_publisher() {
    let s = start().await;
    let file = b"hostdemo".to_vec();
    let body = form_body("bnd", &content("hostdemo", "main", "1", &file), &file);
    let head = format!(
        "PUT /update HTTP/1.1\r\nHost: internal-ci.lan:9999\r\nAuthorization: Bearer {}\r\nContent-Type: multipart/form-data; boundary=bnd\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        s.key,
        body.len()
    );
    let answer = raw(&s.addr(), &head, &body).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(!answer.contains("internal-ci.lan"), "{answer}");
    let want = format!("{}/otafiles/{}", s.base, sha(&file));
    let j: Value = s
        .get("/maxVersion?package=hostdemo&branch=main")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(j["remote"], want.as_str());

    // A public URL configured later applies to versions published before.
    let dir = s.stop_keeping_data().await;
    let s = start_in(dir, |c| {
        c.public_url = Some("https://ota.example.com".into())
    })
    .await;
    let want = format!("https://ota.example.com/otafiles/{}", sha(&file));
    for path in [
        "/maxVersion?package=hostdemo&branch=main",
        "/getVersion?package=hostdemo&branch=main&version=1",
    ] {
        let j: Value = s.get(path).await.json().await.unwrap();
        assert_eq!(j["remote"], want.as_str(), "{path}");
    }
    let j: Value = s
        .get("/api/v1/packages/hostdemo/branches/main/latest")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(j["content"]["remote"], want.as_str());

    // Behind a proxy, and only when allowed: from X-Forwarded-*.
    let dir = s.stop_keeping_data().await;
    let s = start_in(dir, |c| c.url_from_request = true).await;
    let j: Value = client()
        .get(format!(
            "{}/maxVersion?package=hostdemo&branch=main",
            s.base
        ))
        .header("x-forwarded-host", "updates.example.org")
        .header("x-forwarded-proto", "https")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        j["remote"],
        format!("https://updates.example.org/otafiles/{}", sha(&file))
    );
    s.stop().await;
}

#[tokio::test]
async fn wildcard_listen_without_public_url_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = ota_server::ServerConfig::new(dir.path().join("data"));
    c.listen = "0.0.0.0:0".parse().unwrap();
    let err = ota_server::Server::bind(c).await.err().expect("refused");
    assert!(err.to_string().contains("--public-url"), "{err}");
}

#[tokio::test]
async fn slow_headers_are_cut_off_but_slow_downloads_are_not() {
    let s = start_with(|c| {
        c.limits.header_timeout = Duration::from_secs(1);
        c.limits.stall_timeout = Duration::from_secs(2);
    })
    .await;
    // Slowloris: a request head that never ends.
    let mut sock = TcpStream::connect(s.addr()).await.unwrap();
    sock.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let t = Instant::now();
    let mut buf = Vec::new();
    let r = tokio::time::timeout(Duration::from_secs(10), sock.read_to_end(&mut buf)).await;
    assert!(r.is_ok(), "the server closed the connection");
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());

    // A slow reader that keeps making progress gets the whole file.
    let file: Vec<u8> = (0..8u32 << 20).map(|i| (i * 7 % 251) as u8).collect();
    s.publish("big", "main", "1", &file).await;
    let mut sock = TcpStream::connect(s.addr()).await.unwrap();
    sock.write_all(
        format!(
            "GET /otafiles/{} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            sha(&file)
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let mut got = Vec::new();
    let mut chunk = vec![0u8; 512 << 10];
    let t = Instant::now();
    loop {
        let n = sock.read(&mut chunk).await.unwrap();
        if n == 0 {
            break;
        }
        got.extend_from_slice(&chunk[..n]);
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    assert!(t.elapsed() > Duration::from_secs(2), "the read was slow");
    let body_at = got.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    assert_eq!(got.len() - body_at, file.len(), "complete despite the pace");

    // A reader that stops altogether is cut after the stall timeout.
    let mut sock = TcpStream::connect(s.addr()).await.unwrap();
    sock.write_all(format!("GET /otafiles/{} HTTP/1.1\r\nHost: x\r\n\r\n", sha(&file)).as_bytes())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let mut total = 0usize;
    let r = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match sock.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => total += n,
            }
        }
    })
    .await;
    assert!(r.is_ok(), "connection closed");
    assert!(total < file.len(), "cut short: {total} bytes");
    s.stop().await;
}

#[tokio::test]
async fn stalled_upload_body_is_refused_and_leaves_nothing() {
    let s = start_with(|c| c.limits.stall_timeout = Duration::from_secs(1)).await;
    let file = vec![3u8; 100_000];
    let body = form_body("bnd", &content("app", "main", "1", &file), &file);
    let head = format!(
        "PUT /update HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nContent-Type: multipart/form-data; boundary=bnd\r\nContent-Length: {}\r\n\r\n",
        s.key,
        body.len()
    );
    let mut sock = TcpStream::connect(s.addr()).await.unwrap();
    sock.write_all(head.as_bytes()).await.unwrap();
    sock.write_all(&body[..50_000]).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), sock.read_to_end(&mut out))
        .await
        .expect("answered")
        .ok();
    let out = String::from_utf8_lossy(&out);
    assert!(out.starts_with("HTTP/1.1 408"), "{out}");
    assert!(out.contains("sent nothing for 1 s"), "{out}");
    assert!(eventually(|| s.tmp_count() == 0).await);
    assert_eq!(s.blob_count(), 0);
    s.stop().await;
}

#[tokio::test]
async fn connection_cap_holds_and_frees() {
    let s = start_with(|c| {
        c.limits.max_connections = 2;
        c.limits.header_timeout = Duration::from_secs(1);
    })
    .await;
    let idle1 = TcpStream::connect(s.addr()).await.unwrap();
    let idle2 = TcpStream::connect(s.addr()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    // The third waits for a slot, which the header timeout frees.
    let t = Instant::now();
    let r = s.get("/healthz").await;
    assert_eq!(r.status(), 200);
    assert!(
        t.elapsed() >= Duration::from_millis(500),
        "served only once a slot was free ({:?})",
        t.elapsed()
    );
    drop((idle1, idle2));
    s.stop().await;
}

#[tokio::test]
async fn shutdown_stops_accepting_and_drains_within_the_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = ota_server::ServerConfig::new(dir.path().join("data"));
    config.listen = "127.0.0.1:0".parse().unwrap();
    config.limits.drain_timeout = Duration::from_secs(2);
    let database_url = config.database_url();
    let server = ota_server::Server::bind(config).await.unwrap();
    let addr = server.local_addr().unwrap();
    let cat = ota_store::Catalogue::open(&database_url).await.unwrap();
    let key = cat
        .create_key("k", &ota_core::scope::Scopes::admin())
        .await
        .unwrap();
    cat.close().await;
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(server.run(async move {
        let _ = rx.await;
    }));
    let file: Vec<u8> = (0..32u32 << 20).map(|i| (i % 249) as u8).collect();
    let form = reqwest::multipart::Form::new()
        .text("content", content("big", "main", "1", &file))
        .part("file", reqwest::multipart::Part::bytes(file.clone()));
    let r = client()
        .put(format!("http://{addr}/update"))
        .bearer_auth(&key)
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // A download that reads slowly is in flight…
    let mut sock = TcpStream::connect(addr).await.unwrap();
    sock.write_all(format!("GET /otafiles/{} HTTP/1.1\r\nHost: x\r\n\r\n", sha(&file)).as_bytes())
        .await
        .unwrap();
    let mut first = vec![0u8; 4096];
    let n = sock.read(&mut first).await.unwrap();
    assert!(n > 0);
    // …when the server is told to stop.
    let t = Instant::now();
    tx.send(()).unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "no new connections once stopping"
    );
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("stopped by the drain deadline")
        .unwrap()
        .unwrap();
    assert!(t.elapsed() >= Duration::from_secs(2), "{:?}", t.elapsed());
    assert!(t.elapsed() < Duration::from_secs(6), "{:?}", t.elapsed());
}

#[tokio::test]
async fn key_scopes_are_enforced_on_every_write() {
    let s = start().await;
    let narrow = s.key_with("narrow", "publish:org.example.*").await;
    let file = b"scoped".to_vec();
    let mine = content("org.example.app", "main", "1", &file);
    assert_eq!(
        s.put_update_as(Some(&narrow), &mine, &file).await.status(),
        200
    );
    // Another package: 403, over both upload routes and delete.
    let theirs = content("com.other", "main", "1", &file);
    let r = s.put_update_as(Some(&narrow), &theirs, &file).await;
    assert_eq!(r.status(), 403);
    assert!(r.text().await.unwrap().contains("may not publish"));
    let form = reqwest::multipart::Form::new()
        .text("content", theirs.clone())
        .part("file", reqwest::multipart::Part::bytes(file.clone()));
    let r = client()
        .post(format!("{}/api/v1/packages", s.base))
        .bearer_auth(&narrow)
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    s.publish("com.other", "main", "1", &file).await;
    let del = |key: String, pkg: &str| {
        client()
            .delete(format!(
                "{}/api/v1/packages/{pkg}/branches/main/versions/1",
                s.base
            ))
            .bearer_auth(key)
            .send()
    };
    assert_eq!(
        del(narrow.clone(), "com.other").await.unwrap().status(),
        403
    );
    assert_eq!(
        s.get("/maxVersion?package=com.other&branch=main")
            .await
            .status(),
        200,
        "still there"
    );
    // Hooks are commands devices run: they need a hooks scope.
    let hooked = format!(
        r#"{{"package":"org.example.app","version":"2","sha256":"{}","AfterUpdate":"systemctl restart app"}}"#,
        sha(&file)
    );
    let r = s.put_update_as(Some(&narrow), &hooked, &file).await;
    assert_eq!(r.status(), 403);
    assert!(r.text().await.unwrap().contains("AfterUpdate"));
    let hooks = s
        .key_with("hooks", "publish:org.example.* hooks:org.example.app")
        .await;
    assert_eq!(
        s.put_update_as(Some(&hooks), &hooked, &file).await.status(),
        200
    );
    assert_eq!(
        del(narrow.clone(), "org.example.app")
            .await
            .unwrap()
            .status(),
        204
    );
    assert_eq!(del(s.key.clone(), "com.other").await.unwrap().status(), 204);
    // The auth check tells a publisher its scopes and the size limit.
    let j: Value = client()
        .get(format!("{}/api/v1/auth", s.base))
        .bearer_auth(&narrow)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(j["scopes"], "publish:org.example.*");
    assert_eq!(j["max_upload"], 8u64 << 30);
    s.stop().await;
}

#[tokio::test]
async fn multipart_framing_is_bounded() {
    let s = start().await;
    let send = |body: Vec<u8>| {
        let head = format!(
            "PUT /update HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nContent-Type: multipart/form-data; boundary=bnd\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            s.key,
            body.len()
        );
        let addr = s.addr();
        async move { raw(&addr, &head, &body).await }
    };
    // A part header that never ends: refused after a few KiB, not buffered.
    let mut endless =
        b"--bnd\r\nContent-Disposition: form-data; name=\"content\"\r\nX-Pad: ".to_vec();
    endless.extend(std::iter::repeat_n(b'a', 4 << 20));
    let out = send(endless).await;
    assert!(
        out.starts_with("HTTP/1.1 431"),
        "{}",
        &out[..out.len().min(200)]
    );
    assert!(out.contains("headers exceed 8192 bytes"));
    // A preamble that never reaches a boundary.
    let out = send(vec![b'x'; 1 << 20]).await;
    assert!(
        out.starts_with("HTTP/1.1 400"),
        "{}",
        &out[..out.len().min(200)]
    );
    assert!(out.contains("no multipart boundary within"));
    // A body cut before its closing boundary.
    let file = b"abc".to_vec();
    let mut body = form_body("bnd", &content("app", "main", "1", &file), &file);
    body.truncate(body.len() - 10);
    let out = send(body).await;
    assert!(out.starts_with("HTTP/1.1 400"), "{out}");
    assert!(out.contains("truncated"), "{out}");
    assert_eq!(s.tmp_count(), 0);
    assert_eq!(s.blob_count(), 0);
    s.stop().await;
}

#[tokio::test]
async fn what_reaches_devices_is_checked_at_publish() {
    let s = start().await;
    let file = b"v".to_vec();
    let h = sha(&file);
    for (bad, why) in [
        (
            format!(r#"{{"package":"app","version":"01.2","sha256":"{h}"}}"#),
            "leading zeros",
        ),
        (
            format!(r#"{{"package":"app","version":"1","sha256":"{h}","local":"opt/app"}}"#),
            "absolute",
        ),
        (
            format!(r#"{{"package":"app","version":"1","sha256":"{h}","local":"/opt/../etc"}}"#),
            "normalised",
        ),
        (
            format!(
                r#"{{"package":"app","version":"1","sha256":"{h}","remote":"file:///etc/shadow"}}"#
            ),
            "http",
        ),
    ] {
        let r = s.put_update(&bad, &file).await;
        assert_eq!(r.status(), 400, "{bad}");
        let msg = r.text().await.unwrap();
        assert!(msg.contains(why), "{bad}: {msg}");
    }
    s.publish("app", "main", "1.2", &file).await;
    assert_eq!(
        s.get("/getVersion?package=app&branch=main&version=01.2")
            .await
            .status(),
        400
    );
    s.stop().await;
}

#[tokio::test]
async fn version_lists_are_paged() {
    let s = start().await;
    for v in 1..=5 {
        let f = format!("file {v}").into_bytes();
        s.publish("app", "main", &v.to_string(), &f).await;
    }
    let page = |q: &'static str| {
        let s = &s;
        async move {
            let j: Value = s
                .get(&format!("/api/v1/packages/app/branches/main/versions{q}"))
                .await
                .json()
                .await
                .unwrap();
            j
        }
    };
    let j = page("?limit=2").await;
    let versions: Vec<&str> = j["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["version"].as_str().unwrap())
        .collect();
    assert_eq!(versions, ["1", "2"]);
    assert_eq!(j["next"], "2");
    let j = page("?limit=2&after=4").await;
    assert_eq!(j["versions"].as_array().unwrap().len(), 1);
    assert_eq!(j["next"], Value::Null);
    assert_eq!(
        s.get("/api/v1/packages/app/branches/main/versions?limit=0")
            .await
            .status(),
        400
    );
    let j: Value = s
        .get("/api/v1/packages?limit=1")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(j["packages"][0]["name"], "app");
    s.stop().await;
}

#[tokio::test]
async fn data_directory_and_database_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let s = start().await;
    let mode = |p: std::path::PathBuf| std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(s.data()), 0o700);
    assert_eq!(mode(s.data().join("ota.db")), 0o600);
    assert_eq!(mode(s.data().join("lock")), 0o600);
    s.stop().await;
}

#[tokio::test]
async fn review_findings_stay_fixed() {
    let s = start().await;
    // Equal precedence is a conflict, whatever the spelling.
    let f = b"one".to_vec();
    s.publish("app", "main", "1.2", &f).await;
    for twin in ["1.2.0", "1.2+b10"] {
        let r = s.put_update(&content("app", "main", twin, &f), &f).await;
        assert_eq!(r.status(), 409, "{twin}");
        assert!(r.text().await.unwrap().contains("same precedence as 1.2"));
    }
    // Paging goes on after a deleted item; bad parameters are JSON 400s.
    for v in 3..=6 {
        let f = format!("v{v}").into_bytes();
        s.publish("app", "main", &v.to_string(), &f).await;
    }
    let del = client()
        .delete(format!(
            "{}/api/v1/packages/app/branches/main/versions/4",
            s.base
        ))
        .bearer_auth(&s.key)
        .send()
        .await
        .unwrap();
    assert_eq!(del.status(), 204);
    let j: Value = s
        .get("/api/v1/packages/app/branches/main/versions?after=4")
        .await
        .json()
        .await
        .unwrap();
    let versions: Vec<&str> = j["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["version"].as_str().unwrap())
        .collect();
    assert_eq!(versions, ["5", "6"]);
    for bad in ["?limit=abc", "?limit=-1", "?limit=99999999999999999999999"] {
        let r = s.get(&format!("/api/v1/packages{bad}")).await;
        assert_eq!(r.status(), 400, "{bad}");
        let j: Value = r.json().await.unwrap();
        assert_eq!(j["error"]["code"], "bad_request", "{bad}");
    }
    // The scheme name of Authorization is case-insensitive.
    let r = client()
        .get(format!("{}/api/v1/auth", s.base))
        .header("authorization", format!("BEARER {}", s.key))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    s.stop().await;

    // Contradicting URL settings are refused; per-request URLs say Vary.
    let dir = tempfile::tempdir().unwrap();
    let mut c = ota_server::ServerConfig::new(dir.path().join("data"));
    c.listen = "127.0.0.1:0".parse().unwrap();
    c.public_url = Some("https://a.example".into());
    c.url_from_request = true;
    assert!(ota_server::Server::bind(c).await.is_err());
    let s = start_with(|c| c.url_from_request = true).await;
    let r = s.get("/maxVersion?package=none&branch=main").await;
    assert_eq!(r.status(), 404);
    assert_eq!(
        r.headers()["vary"],
        "Host, X-Forwarded-Host, X-Forwarded-Proto"
    );
    s.stop().await;
}

#[tokio::test]
async fn one_address_cannot_take_every_connection() {
    // Loopback is exempt (a proxy on the same host), so this test connects
    // from another local address of the loopback network when it can.
    let s = start_with(|c| {
        c.listen = "0.0.0.0:0".parse().unwrap();
        c.public_url = Some("http://ota.test".into());
        c.limits.max_per_ip = 3;
        c.limits.header_timeout = Duration::from_secs(30);
    })
    .await;
    let port = s.addr().rsplit(':').next().unwrap().to_owned();
    let Some(own) = local_non_loopback_ip() else {
        eprintln!("notice: no non-loopback address on this machine; skipping");
        s.stop().await;
        return;
    };
    let target = format!("{own}:{port}");
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(TcpStream::connect(&target).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    // The fourth from the same address is closed at once…
    let mut fourth = TcpStream::connect(&target).await.unwrap();
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(Duration::from_secs(5), fourth.read(&mut buf))
        .await
        .expect("closed, not left waiting");
    assert!(matches!(n, Ok(0) | Err(_)), "{n:?}");
    // …while loopback clients are still served.
    assert_eq!(s.get("/healthz").await.status(), 200);
    drop(held);
    s.stop().await;
}

fn local_non_loopback_ip() -> Option<std::net::IpAddr> {
    // The address the kernel would use to reach a public one (no packet is sent).
    let sock = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    sock.connect("192.0.2.1:9").ok()?;
    let ip = sock.local_addr().ok()?.ip();
    (!ip.is_loopback() && !ip.is_unspecified()).then_some(ip)
}
