//! The seed 003 API over real HTTP: every status code it defines.

mod common;
use common::*;
use serde_json::Value;

#[tokio::test]
async fn max_and_get_version() {
    let s = start().await;
    for v in ["1.9.9", "1.10.0", "2.0.0-rc.1", "1.2"] {
        s.publish("app", "main", v, v.as_bytes()).await;
    }
    s.publish("app", "beta", "3.0.0", b"beta").await;
    let r = s.get("/maxVersion?package=app&branch=main").await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/json");
    let j: Value = r.json().await.unwrap();
    assert_eq!(j["version"], "2.0.0-rc.1");
    assert_eq!(j["sha256"], sha(b"2.0.0-rc.1"));
    assert_eq!(j["description"], "test");
    // Publishing a release invalidates the cached answer at once.
    s.publish("app", "main", "2.0.0", b"2.0.0").await;
    let j: Value = s
        .get("/maxVersion?package=app&branch=main")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(j["version"], "2.0.0");
    let j: Value = s
        .get("/maxVersion?package=app&branch=beta")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(j["version"], "3.0.0");

    let r = s
        .get("/getVersion?package=app&branch=main&version=1.10.0")
        .await;
    assert_eq!(r.status(), 200);
    let j: Value = r.json().await.unwrap();
    assert_eq!(j["sha256"], sha(b"1.10.0"));

    for (path, status) in [
        ("/maxVersion?package=nope&branch=main", 404),
        ("/maxVersion?package=app&branch=nope", 404),
        ("/getVersion?package=app&branch=main&version=9.9", 404),
        ("/maxVersion?package=app", 400),
        ("/maxVersion?branch=main", 400),
        ("/maxVersion", 400),
        ("/maxVersion?package=&branch=main", 400),
        ("/maxVersion?package=..%2Fetc&branch=main", 400),
        ("/maxVersion?package=a%2Fb&branch=main", 400),
        ("/getVersion?package=app&branch=main", 400),
        ("/getVersion?package=app&branch=main&version=1.x", 400),
        ("/getVersion?package=app&branch=..&version=1", 400),
    ] {
        let r = s.get(path).await;
        assert_eq!(r.status(), status, "{path}");
    }
    s.stop().await;
}

#[tokio::test]
async fn upload_statuses() {
    let s = start_with(|c| c.max_upload = 1 << 20).await;
    let file = b"package bytes".to_vec();
    let good = content("app", "main", "1.0.0", &file);

    let r = s.put_update(&good, &file).await;
    assert_eq!(r.status(), 200);
    let j: Value = r.json().await.unwrap();
    let remote = j["remote"].as_str().unwrap().to_owned();
    assert_eq!(
        remote,
        format!("{}/otafiles/{}", s.base, sha(&file)),
        "remote built from the listen address"
    );
    assert_eq!(s.blob_count(), 1);

    // Identical re-upload: 200, nothing new.
    let r = s.put_update(&good, &file).await;
    assert_eq!(r.status(), 200);
    assert_eq!(s.blob_count(), 1);

    // Same package/branch/version, different content: 409.
    let other = b"other bytes".to_vec();
    let r = s
        .put_update(&content("app", "main", "1.0.0", &other), &other)
        .await;
    assert_eq!(r.status(), 409);
    assert!(r.text().await.unwrap().contains("already published"));
    assert_eq!(s.blob_count(), 1, "a conflicting upload stores nothing");

    // SHA-256 mismatch: 304 (the seed's contract), nothing stored.
    let r = s
        .put_update(&content("app", "main", "1.0.1", b"declared"), b"received")
        .await;
    assert_eq!(r.status(), 304);
    assert_eq!(s.blob_count(), 1);
    assert_eq!(
        s.get("/getVersion?package=app&branch=main&version=1.0.1")
            .await
            .status(),
        404
    );

    // Authentication: 401 without a key, with a wrong one, with a revoked one.
    let c2 = content("app", "main", "1.0.2", &file);
    assert_eq!(s.put_update_as(None, &c2, &file).await.status(), 401);
    assert_eq!(
        s.put_update_as(Some("ota_0000000000000000_00"), &c2, &file)
            .await
            .status(),
        401
    );
    let cat = ota_store::Catalogue::open(&s.database_url).await.unwrap();
    let revoked = cat
        .create_key("old", &ota_core::scope::Scopes::admin())
        .await
        .unwrap();
    cat.revoke_key("old").await.unwrap();
    assert_eq!(
        s.put_update_as(Some(&revoked), &c2, &file).await.status(),
        401
    );

    // Malformed content.json: 400 with a message.
    let sha_f = sha(&file);
    for bad in [
        "not json".to_owned(),
        "[]".to_owned(),
        format!(r#"{{"version":"1","sha256":"{sha_f}"}}"#),
        format!(r#"{{"package":"app","sha256":"{sha_f}"}}"#),
        r#"{"package":"app","version":"1"}"#.to_owned(),
        r#"{"package":"app","version":"1","sha256":"abc"}"#.to_owned(),
        format!(r#"{{"package":"app","version":"v1.0","sha256":"{sha_f}"}}"#),
        format!(r#"{{"package":"../../etc","version":"1","sha256":"{sha_f}"}}"#),
        format!(r#"{{"package":"app","branch":"a/b","version":"1","sha256":"{sha_f}"}}"#),
        format!(r#"{{"package":"app","version":"1","sha256":"{sha_f}","dependencies":"x"}}"#),
        format!(r#"{{"package":"app","version":"1","sha256":"{sha_f}","BeforeUpdate":7}}"#),
        format!("{}{}", "[".repeat(5000), "]".repeat(5000)),
    ] {
        let r = s.put_update(&bad, &file).await;
        assert_eq!(r.status(), 400, "{}", &bad[..bad.len().min(80)]);
        assert!(!r.text().await.unwrap().is_empty());
    }

    // Oversized: a file over the limit, and a huge content.json: 413.
    let big = vec![7u8; (1 << 20) + 1];
    let r = s
        .put_update(&content("app", "main", "2.0.0", &big), &big)
        .await;
    assert_eq!(r.status(), 413);
    let huge = format!(
        r#"{{"package":"app","version":"1","sha256":"{sha_f}","description":"{}"}}"#,
        "x".repeat(100_000)
    );
    assert_eq!(s.put_update(&huge, &file).await.status(), 413);

    // Malformed multipart: not multipart, missing parts, unknown or repeated parts.
    let url = format!("{}/update", s.base);
    let r = client()
        .put(&url)
        .bearer_auth(&s.key)
        .body("plain")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = client()
        .put(&url)
        .bearer_auth(&s.key)
        .header("content-type", "multipart/form-data; boundary=XYZ")
        .body("--XYZ\r\nContent-Disposition: form-data; name=\"content\"\r\n\r\n{\"a\":")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    for form in [
        reqwest::multipart::Form::new().text("content", good.clone()),
        reqwest::multipart::Form::new().part("file", reqwest::multipart::Part::bytes(file.clone())),
        reqwest::multipart::Form::new()
            .text("content", good.clone())
            .text("content", good.clone()),
        reqwest::multipart::Form::new()
            .text("content", good.clone())
            .text("other", "x"),
    ] {
        let r = client()
            .put(&url)
            .bearer_auth(&s.key)
            .multipart(form)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400);
    }

    // A file part before the content part works too.
    let f2 = b"file first".to_vec();
    let form = reqwest::multipart::Form::new()
        .part("file", reqwest::multipart::Part::bytes(f2.clone()))
        .text("content", content("app", "main", "1.1.0", &f2));
    let r = client()
        .put(&url)
        .bearer_auth(&s.key)
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    assert_eq!(
        s.tmp_count(),
        0,
        "no temporary file survives any of the above"
    );
    s.stop().await;
}

#[tokio::test]
async fn public_url_and_given_remote_are_kept() {
    let s = start_with(|c| c.public_url = Some("https://ota.example.com/".into())).await;
    let f = b"x".to_vec();
    let j: Value = s
        .put_update(&content("app", "main", "1", &f), &f)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        j["remote"],
        format!("https://ota.example.com/otafiles/{}", sha(&f))
    );
    let c = format!(
        r#"{{"package":"app","version":"2","sha256":"{}","remote":"https://cdn/x"}}"#,
        sha(&f)
    );
    let j: Value = s.put_update(&c, &f).await.json().await.unwrap();
    assert_eq!(j["remote"], "https://cdn/x");
    assert_eq!(j["branch"], "main", "branch defaults to main");
    s.stop().await;
}

#[tokio::test]
async fn downloads_ranges_and_validators() {
    let s = start().await;
    let file: Vec<u8> = (0..100_000u32).map(|i| (i * 7 % 251) as u8).collect();
    s.publish("app", "main", "1", &file).await;
    let h = sha(&file);
    let path = format!("{}/otafiles/{h}", s.base);
    let etag = format!("\"{h}\"");

    let r = client().get(&path).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["accept-ranges"], "bytes");
    assert_eq!(r.headers()["etag"], etag.as_str());
    assert_eq!(r.headers()["content-length"], "100000");
    assert_eq!(r.bytes().await.unwrap(), file);

    let r = client().head(&path).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-length"], "100000");
    assert!(r.bytes().await.unwrap().is_empty());

    // Upper-case hash names the same blob.
    assert_eq!(
        client()
            .get(path.replace(&h, &h.to_uppercase()))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );

    for (range, first, last) in [
        ("bytes=0-99", 0, 99),
        ("bytes=99990-", 99990, 99999),
        ("bytes=-10", 99990, 99999),
        ("bytes=500-200000", 500, 99999),
    ] {
        let r = client()
            .get(&path)
            .header("range", range)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 206, "{range}");
        assert_eq!(
            r.headers()["content-range"],
            format!("bytes {first}-{last}/100000").as_str()
        );
        assert_eq!(r.bytes().await.unwrap(), &file[first..=last]);
    }
    let r = client()
        .get(&path)
        .header("range", "bytes=100000-")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 416);
    assert_eq!(r.headers()["content-range"], "bytes */100000");
    // Several ranges: the whole file (allowed by RFC 9110).
    let r = client()
        .get(&path)
        .header("range", "bytes=0-1,5-6")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    let r = client()
        .get(&path)
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 304);
    let r = client()
        .get(&path)
        .header("if-none-match", "\"other\"")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    let r = client()
        .get(&path)
        .header("range", "bytes=10-19")
        .header("if-range", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 206);
    let r = client()
        .get(&path)
        .header("range", "bytes=10-19")
        .header("if-range", "\"stale\"")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "a changed validator restarts from zero");
    assert_eq!(r.bytes().await.unwrap().len(), 100_000);

    for bad in ["abc", "..%2F..%2Fetc%2Fpasswd", &"z".repeat(64), &h[..63]] {
        let r = s.get(&format!("/otafiles/{bad}")).await;
        assert_eq!(r.status(), 400, "{bad}");
    }
    assert_eq!(
        s.get(&format!("/otafiles/{}", "0".repeat(64)))
            .await
            .status(),
        404
    );
    s.stop().await;
}

#[tokio::test]
async fn empty_file_downloads() {
    let s = start().await;
    s.publish("empty", "main", "1", b"").await;
    let r = s.get(&format!("/otafiles/{}", sha(b""))).await;
    assert_eq!(r.status(), 200);
    assert!(r.bytes().await.unwrap().is_empty());
    let r = client()
        .get(format!("{}/otafiles/{}", s.base, sha(b"")))
        .header("range", "bytes=0-")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 416);
    s.stop().await;
}
