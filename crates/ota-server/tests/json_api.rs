//! The `/api/v1/` JSON API over real HTTP.

mod common;
use common::*;
use reqwest::multipart::{Form, Part};
use serde_json::Value;

async fn post(s: &TestServer, key: Option<&str>, content: &str, file: &[u8]) -> reqwest::Response {
    let form = Form::new()
        .text("content", content.to_owned())
        .part("file", Part::bytes(file.to_vec()));
    let mut r = client()
        .post(format!("{}/api/v1/packages", s.base))
        .multipart(form);
    if let Some(k) = key {
        r = r.bearer_auth(k);
    }
    r.send().await.unwrap()
}

#[tokio::test]
async fn browse_upload_delete() {
    let s = start().await;
    let f1 = b"one".to_vec();
    let r = post(&s, Some(&s.key), &content("app", "main", "1.0.0", &f1), &f1).await;
    assert_eq!(r.status(), 201);
    let j: Value = r.json().await.unwrap();
    assert_eq!(j["created"], true);
    assert_eq!(j["content"]["version"], "1.0.0");
    let r = post(&s, Some(&s.key), &content("app", "main", "1.0.0", &f1), &f1).await;
    assert_eq!(r.status(), 200, "identical re-upload");

    let r = post(
        &s,
        Some(&s.key),
        &content("app", "main", "1.0.1", b"x"),
        b"y",
    )
    .await;
    assert_eq!(r.status(), 422);
    let j: Value = r.json().await.unwrap();
    assert_eq!(j["error"]["code"], "hash_mismatch");
    assert!(j["error"]["message"].as_str().unwrap().contains("SHA-256"));

    let r = post(&s, None, &content("app", "main", "1.0.2", &f1), &f1).await;
    assert_eq!(r.status(), 401);
    let j: Value = r.json().await.unwrap();
    assert_eq!(j["error"]["code"], "unauthorized");
    let r = post(&s, Some(&s.key), "{", &f1).await;
    assert_eq!(r.status(), 400);
    let j: Value = r.json().await.unwrap();
    assert_eq!(j["error"]["code"], "bad_request");
    let f2 = b"two".to_vec();
    assert_eq!(
        post(&s, Some(&s.key), &content("app", "main", "1.0.0", &f2), &f2)
            .await
            .status(),
        409
    );

    s.publish("app", "main", "1.10.0", b"ten").await;
    s.publish("app", "beta", "2.0.0-rc.1", b"rc").await;
    s.publish("lib", "main", "5", b"five").await;

    let j: Value = s.get("/api/v1/packages").await.json().await.unwrap();
    assert_eq!(j["packages"][0]["name"], "app");
    assert_eq!(
        j["packages"][0]["branches"],
        serde_json::json!(["beta", "main"])
    );
    assert_eq!(j["packages"][1]["name"], "lib");
    let j: Value = s.get("/api/v1/packages/app").await.json().await.unwrap();
    assert_eq!(j["versions"], 3);
    assert_eq!(s.get("/api/v1/packages/none").await.status(), 404);
    assert_eq!(s.get("/api/v1/packages/a..b%2Fc").await.status(), 400);

    let j: Value = s
        .get("/api/v1/packages/app/branches/main/versions")
        .await
        .json()
        .await
        .unwrap();
    let vs: Vec<_> = j["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["version"].as_str().unwrap())
        .collect();
    assert_eq!(vs, ["1.0.0", "1.10.0"]);
    assert_eq!(j["versions"][0]["size"], 3);
    let j: Value = s
        .get("/api/v1/packages/app/branches/main/latest")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(j["version"], "1.10.0");
    let j: Value = s
        .get("/api/v1/packages/app/branches/main/versions/1.0.0")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(j["sha256"], sha(&f1));
    assert_eq!(
        s.get("/api/v1/packages/app/branches/main/versions/9")
            .await
            .status(),
        404
    );
    assert_eq!(
        s.get("/api/v1/packages/app/branches/main/versions/x.y")
            .await
            .status(),
        400
    );
    assert_eq!(
        s.get("/api/v1/packages/app/branches/nope/latest")
            .await
            .status(),
        404
    );

    // Delete: authenticated; the blob goes when nothing references it.
    let url = format!(
        "{}/api/v1/packages/app/branches/main/versions/1.10.0",
        s.base
    );
    assert_eq!(client().delete(&url).send().await.unwrap().status(), 401);
    let blobs_before = s.blob_count();
    // Warm the cache, then delete: the seed API must see the change at once.
    let j: Value = s
        .get("/maxVersion?package=app&branch=main")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(j["version"], "1.10.0");
    assert_eq!(
        client()
            .delete(&url)
            .bearer_auth(&s.key)
            .send()
            .await
            .unwrap()
            .status(),
        204
    );
    assert_eq!(
        client()
            .delete(&url)
            .bearer_auth(&s.key)
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    assert_eq!(s.blob_count(), blobs_before - 1);
    assert_eq!(
        s.get(&format!("/otafiles/{}", sha(b"ten"))).await.status(),
        404
    );
    let j: Value = s
        .get("/maxVersion?package=app&branch=main")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(j["version"], "1.0.0");
    s.stop().await;
}

#[tokio::test]
async fn shared_blob_survives_deleting_one_user() {
    let s = start().await;
    s.publish("a", "main", "1", b"same").await;
    s.publish("b", "main", "1", b"same").await;
    assert_eq!(s.blob_count(), 1);
    let url = format!("{}/api/v1/packages/a/branches/main/versions/1", s.base);
    assert_eq!(
        client()
            .delete(&url)
            .bearer_auth(&s.key)
            .send()
            .await
            .unwrap()
            .status(),
        204
    );
    assert_eq!(
        s.get(&format!("/otafiles/{}", sha(b"same"))).await.status(),
        200
    );
    s.stop().await;
}

#[tokio::test]
async fn auth_checks_the_key() {
    let s = start().await;
    let url = format!("{}/api/v1/auth", s.base);
    let r = client().get(&url).bearer_auth(&s.key).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let j: Value = r.json().await.unwrap();
    assert!(j["key"].is_string());
    for bad in [Some("ota_0000000000000000_00"), None] {
        let mut req = client().get(&url);
        if let Some(k) = bad {
            req = req.bearer_auth(k);
        }
        let r = req.send().await.unwrap();
        assert_eq!(r.status(), 401);
        let j: Value = r.json().await.unwrap();
        assert_eq!(j["error"]["code"], "unauthorized");
    }
}
