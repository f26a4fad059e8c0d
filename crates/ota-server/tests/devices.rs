//! The fleet inventory over HTTP: registering devices, reports with the
//! device's own token, every bad report refused with nothing stored; and
//! the signature every `/maxVersion` and `/getVersion` answer carries,
//! checked with openssl.

mod common;
use common::*;
use serde_json::{json, Value};

async fn report(s: &TestServer, device: &str, token: &str, body: &str) -> reqwest::Response {
    client()
        .post(format!("{}/api/v1/devices/{device}/report", s.base))
        .bearer_auth(token)
        .body(body.to_owned())
        .send()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn devices_register_report_and_refuse_bad_reports() {
    let s = start().await;
    let add = |key: String, body: Value| {
        let base = s.base.clone();
        async move {
            client()
                .post(format!("{base}/api/v1/devices"))
                .bearer_auth(key)
                .json(&body)
                .send()
                .await
                .unwrap()
        }
    };
    let publisher = s.key_with("pub", "publish:*").await;
    let r = add(publisher.clone(), json!({"name": "kiosk-7"})).await;
    assert_eq!(r.status(), 403);
    for bad in [
        json!({"name": "../etc"}),
        json!({"name": "a b"}),
        json!({"nome": "x"}),
        json!({"name": "x", "description": "d".repeat(2000)}),
    ] {
        let r = add(s.key.clone(), bad.clone()).await;
        assert_eq!(r.status(), 400, "{bad}");
    }
    let r = add(
        s.key.clone(),
        json!({"name": "kiosk-7", "description": "lobby"}),
    )
    .await;
    assert_eq!(r.status(), 201);
    let token = r.json::<Value>().await.unwrap()["token"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        add(s.key.clone(), json!({"name": "kiosk-7"}))
            .await
            .status(),
        409
    );

    let good =
        r#"{"result":"success","package":"app","from":"1.0","to":"1.1","installed":{"app":"1.1"}}"#;
    // Wrong token, another device's name, no token: 401, nothing stored.
    assert_eq!(
        report(&s, "kiosk-7", "ota_0000000000000000_00", good)
            .await
            .status(),
        401
    );
    assert_eq!(report(&s, "kiosk-8", &token, good).await.status(), 401);
    assert_eq!(report(&s, "kiosk-7", &publisher, good).await.status(), 401);
    for (body, status) in [
        ("{", 400),
        (r#"{"result":"won"}"#, 400),
        (r#"{"result":"success","installed":{"app":"01.0"}}"#, 400),
        (r#"{"result":"success","installed":{"../x":"1"}}"#, 400),
        (r#"{"result":"success","installed":["app"]}"#, 400),
    ] {
        assert_eq!(
            report(&s, "kiosk-7", &token, body).await.status(),
            status,
            "{body}"
        );
    }
    let huge = format!(r#"{{"result":"failure","error":"{}"}}"#, "e".repeat(9000));
    assert_eq!(report(&s, "kiosk-7", &token, &huge).await.status(), 400);
    let big = format!(r#"{{"result":"failure","x":"{}"}}"#, "e".repeat(70_000));
    assert_eq!(report(&s, "kiosk-7", &token, &big).await.status(), 413);
    let d: Value = client()
        .get(format!("{}/api/v1/devices/kiosk-7", s.base))
        .bearer_auth(&s.key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(d["last_seen"], Value::Null, "nothing stored: {d}");
    assert_eq!(d["reports"], json!([]));

    assert_eq!(report(&s, "kiosk-7", &token, good).await.status(), 204);
    let failed = r#"{"result":"rolled-back","package":"app","error":"AfterUpdate exited with 1","installed":{"app":"1.1"}}"#;
    assert_eq!(report(&s, "kiosk-7", &token, failed).await.status(), 204);
    let list: Value = client()
        .get(format!("{}/api/v1/devices", s.base))
        .bearer_auth(&publisher)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let d = &list["devices"][0];
    assert_eq!(
        (d["name"].as_str(), d["last_result"].as_str()),
        (Some("kiosk-7"), Some("rolled-back"))
    );
    assert_eq!(d["last_error"], "AfterUpdate exited with 1");
    assert_eq!(d["installed"], json!({"app": "1.1"}));
    // Without a key, the same URL is the LineageOS Updater API's device list.
    let public = s.get("/api/v1/devices").await;
    assert_eq!(public.status(), 200);
    let v: Value = public.json().await.unwrap();
    assert!(v.get("devices").is_none(), "the fleet is not public: {v}");
    // Removal: the token stops working.
    let r = client()
        .delete(format!("{}/api/v1/devices/kiosk-7", s.base))
        .bearer_auth(&s.key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(report(&s, "kiosk-7", &token, good).await.status(), 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn content_answers_are_signed_and_openssl_agrees() {
    let s = start().await;
    s.publish("app", "main", "1.0", b"package one").await;
    let dir = tempfile::tempdir().unwrap();
    let pem = dir.path().join("public.pem");
    let key = s.get("/api/v1/signing-key").await.text().await.unwrap();
    std::fs::write(&pem, key).unwrap();
    for path in [
        "/maxVersion?package=app&branch=main",
        "/getVersion?package=app&branch=main&version=1.0",
    ] {
        let r = s.get(path).await;
        let sig = r.headers()["ota-signature"].to_str().unwrap().to_owned();
        let body = r.bytes().await.unwrap();
        let (msg, sigf) = (dir.path().join("body"), dir.path().join("sig"));
        std::fs::write(&msg, &body).unwrap();
        let raw = std::process::Command::new("base64")
            .arg("-d")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        raw.stdin
            .as_ref()
            .unwrap()
            .write_all(sig.as_bytes())
            .unwrap();
        let out = raw.wait_with_output().unwrap();
        std::fs::write(&sigf, &out.stdout).unwrap();
        let verify = |m: &std::path::Path| {
            std::process::Command::new("openssl")
                .args(["pkeyutl", "-verify", "-rawin", "-pubin", "-inkey"])
                .arg(&pem)
                .arg("-in")
                .arg(m)
                .arg("-sigfile")
                .arg(&sigf)
                .output()
                .unwrap()
                .status
                .success()
        };
        assert!(verify(&msg), "{path}");
        let mut tampered = body.to_vec();
        tampered[5] ^= 1;
        std::fs::write(&msg, &tampered).unwrap();
        assert!(!verify(&msg), "{path}");
    }
}
