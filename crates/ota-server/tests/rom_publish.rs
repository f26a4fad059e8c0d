//! Publishing ROM builds over HTTP: every refusal (keys, scopes, reserved
//! codenames, contradictions with the package, hostile names and text,
//! oversize uploads) stores nothing; hostile text that is accepted is
//! served inert; builds can wait unpublished.

mod common;
mod rom_common;

use common::{client, start, start_with, TestServer};
use reqwest::multipart::{Form, Part};
use rom_common::*;
use serde_json::{json, Value};

type Case<'a> = (Option<&'a str>, String, &'a [u8], &'a str, u16, &'a str);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_refusals_store_nothing() {
    let p = packages();
    let full1 = std::fs::read(&p.full1).unwrap();
    let full2 = std::fs::read(&p.full2).unwrap();
    let limit = full1.len().max(full2.len()) as u64 + 10_000;
    let s = start_with(|c| c.max_upload = limit).await;
    let inc = std::fs::read(&p.inc12).unwrap();
    let good = json!({"device": "hammerhead", "channel": "nightly"}).to_string();
    // Over the limit, but not by more than the multipart allowance: the
    // server reads up to the limit, then refuses.
    let big = vec![0u8; limit as usize + 50_000];
    let scoped = s.key_with("other", "publish:rom.flo").await;
    // (key, build part, file, file name, status, in the answer)
    let cases: Vec<Case> = vec![
        // Refused before the body is read: a small body, so the client
        // has sent it all and reads the answer.
        (None, good.clone(), b"small", "a.zip", 401, "Authorization"),
        (
            Some(&scoped),
            good.clone(),
            &full1,
            "a.zip",
            403,
            "may not publish",
        ),
        (
            Some(&s.key),
            json!({"device": "flo", "channel": "nightly"}).to_string(),
            &full1,
            "a.zip",
            422,
            "contradicts the package",
        ),
        (
            Some(&s.key),
            json!({"device": "hammerhead", "channel": "nightly", "incremental": "eng.7"})
                .to_string(),
            &full1,
            "a.zip",
            422,
            "which says \\\"eng.1001",
        ),
        (
            Some(&s.key),
            json!({"device": "hammerhead", "channel": "nightly", "source_incremental": "eng.1"})
                .to_string(),
            &full1,
            "a.zip",
            422,
            "source_incremental",
        ),
        (
            Some(&s.key),
            json!({"device": "hammerhead", "channel": "nightly", "version": "9.0"}).to_string(),
            &full1,
            "a.zip",
            422,
            "version",
        ),
        (
            Some(&s.key),
            json!({"device": "packages", "channel": "nightly"}).to_string(),
            &full1,
            "a.zip",
            400,
            "reserved",
        ),
        (
            Some(&s.key),
            json!({"device": "Types", "channel": "nightly"}).to_string(),
            &full1,
            "a.zip",
            400,
            "reserved",
        ),
        (
            Some(&s.key),
            json!({"device": "ham/../x", "channel": "nightly"}).to_string(),
            &full1,
            "a.zip",
            400,
            "invalid device codename",
        ),
        (
            Some(&s.key),
            json!({"device": "hammerhead", "channel": "nightly'; DROP TABLE rom_builds;--"})
                .to_string(),
            &full1,
            "a.zip",
            400,
            "invalid channel",
        ),
        (
            Some(&s.key),
            json!({"device": "hammerhead", "channel": "<script>"}).to_string(),
            &full1,
            "a.zip",
            400,
            "invalid channel",
        ),
        (
            Some(&s.key),
            json!({"device": "hammerhead", "channel": "nightly", "extra": 1}).to_string(),
            &full1,
            "a.zip",
            400,
            "unknown field",
        ),
        (
            Some(&s.key),
            "{not json".into(),
            &full1,
            "a.zip",
            400,
            "form field 'build'",
        ),
        (
            Some(&s.key),
            good.clone(),
            &full1,
            "../../etc/passwd.zip",
            400,
            "invalid file name",
        ),
        (
            Some(&s.key),
            good.clone(),
            &full1,
            "a b.zip",
            400,
            "invalid file name",
        ),
        (
            Some(&s.key),
            good.clone(),
            &full1,
            "<img>.zip",
            400,
            "invalid file name",
        ),
        (
            Some(&s.key),
            good.clone(),
            &full1,
            "update.exe",
            400,
            "invalid file name",
        ),
        (
            Some(&s.key),
            good.clone(),
            b"not a zip at all",
            "a.zip",
            400,
            "not a usable OTA package",
        ),
        (
            Some(&s.key),
            good.clone(),
            &inc,
            "inc.zip",
            409,
            "publish the full build eng.1002",
        ),
        (
            Some(&s.key),
            good.clone(),
            &big,
            "big.zip",
            413,
            "exceeds the limit",
        ),
    ];
    for (key, build, file, name, status, expect) in cases {
        let r = publish_as(&s, key, &build, file, name).await;
        assert_eq!(r.status().as_u16(), status, "{build} {name}");
        let body = r.text().await.unwrap();
        assert!(body.contains(expect), "{build} {name}: {body}");
        assert_eq!(s.blob_count(), 0, "{build} {name} stored a blob");
        assert_eq!(s.tmp_count(), 0, "{build} {name} left a temporary file");
    }
    // A zip that is not an OTA package (no metadata).
    let mut zip = std::io::Cursor::new(Vec::new());
    {
        let mut w = zip::ZipWriter::new(&mut zip);
        w.start_file(
            "system/build.prop",
            zip::write::SimpleFileOptions::default(),
        )
        .unwrap();
        std::io::Write::write_all(&mut w, b"ro.product.device=hammerhead\n").unwrap();
        w.finish().unwrap();
    }
    let r = publish_as(&s, Some(&s.key), &good, zip.get_ref(), "a.zip").await;
    assert_eq!(r.status(), 400);
    assert!(r
        .text()
        .await
        .unwrap()
        .contains("META-INF/com/android/metadata"));
    // A form without its parts.
    let form = Form::new().part("build", Part::text(good.clone()));
    let r = client()
        .post(format!("{}/api/v1/builds", s.base))
        .bearer_auth(&s.key)
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(r
        .text()
        .await
        .unwrap()
        .contains("missing form field 'file'"));
    let r = cm_post(&s, "/api", cm_request("hammerhead", "nightly", "x")).await;
    assert_eq!(r.json::<Value>().await.unwrap()["result"], json!([]));
    assert_eq!(s.blob_count(), 0);

    // The scoped key may publish its own device only; re-publishing is a
    // no-op; another file under the same build is a conflict.
    let r = publish_as(&s, Some(&s.key), &good, &full1, "a.zip").await;
    assert_eq!(r.status(), 201);
    let r = publish_as(&s, Some(&s.key), &good, &full1, "a.zip").await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["created"], false);
    let other = json!({"device": "hammerhead", "channel": "stable"}).to_string();
    let r = publish_as(&s, Some(&s.key), &other, &full1, "a.zip").await;
    assert_eq!(r.status(), 409);
    assert_eq!(s.blob_count(), 1);
    // The incremental on another channel than its target: refused.
    let r = publish_as(&s, Some(&s.key), &good, &full2, "b.zip").await;
    assert_eq!(r.status(), 201);
    let r = publish_as(&s, Some(&s.key), &other, &inc, "c.zip").await;
    assert_eq!(r.status(), 422);
    assert_eq!(s.blob_count(), 2);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_text_is_stored_verbatim_and_served_inert() {
    let s = start().await;
    let p = packages();
    let hostile = "<script>alert('x')</script>\n'); DROP TABLE rom_builds; --\n";
    let b = json!({"device": "hammerhead", "channel": "nightly", "changelog": hostile});
    publish_path(&s, b, &p.full1).await;
    let r = cm_post(&s, "/api", cm_request("hammerhead", "nightly", "x")).await;
    let u = &parse_cm(&r.json().await.unwrap())[0];
    let r = client().get(&u.changes).send().await.unwrap();
    assert_eq!(r.headers()["x-content-type-options"], "nosniff");
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    assert!(r.text().await.unwrap().ends_with(hostile));

    // Reports: stored, bounded, refused when incomplete.
    let report = |body: String| {
        client()
            .post(format!("{}/api/report", s.base))
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
    };
    let r = report("fprint=acme%2Fh%3A4.4.4&fcontent=%3Cb%3Ecrash%3C%2Fb%3E'%3B--".into())
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "thank you for report!\n");
    for bad in [
        "fprint=a".to_string(),
        "fcontent=a".to_string(),
        format!("fprint=a&fcontent={}", "x".repeat(1000)),
        "fprint=a&fprint=b&fcontent=c".to_string(),
        "fprint=%00&fcontent=c".to_string(),
    ] {
        let r = report(bad.clone()).await.unwrap();
        assert_eq!(r.status(), 400, "{bad}");
    }
    let r = client()
        .get(format!("{}/api/v1/reports", s.base))
        .bearer_auth(&s.key)
        .send()
        .await
        .unwrap();
    let reports: Value = r.json().await.unwrap();
    assert_eq!(reports["reports"].as_array().unwrap().len(), 1);
    assert_eq!(reports["reports"][0]["fcontent"], "<b>crash</b>';--");
    let weak = s.key_with("weak", "publish:*").await;
    let r = client()
        .get(format!("{}/api/v1/reports", s.base))
        .bearer_auth(&weak)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unpublished_builds_wait_for_the_switch() {
    let s = start().await;
    let p = packages();
    let b = json!({"device": "hammerhead", "channel": "nightly", "published": false});
    let answer = publish_path(&s, b, &p.full1).await;
    assert_eq!(answer["published"], false);
    let list = |s: &TestServer| {
        let req = cm_request("hammerhead", "nightly", "x");
        let base = s.base.clone();
        async move {
            let r = client()
                .post(format!("{base}/api"))
                .body(req)
                .send()
                .await
                .unwrap();
            parse_cm(&r.json().await.unwrap()).len()
        }
    };
    assert_eq!(list(&s).await, 0);
    assert_eq!(
        s.get("/api/v1/hammerhead/nightly/1")
            .await
            .json::<Value>()
            .await
            .unwrap(),
        json!({"response": []})
    );
    let put = |body: &'static str, key: String| {
        client()
            .put(format!(
                "{}/api/v1/builds/hammerhead/eng.1001/published",
                s.base
            ))
            .bearer_auth(key)
            .body(body)
            .send()
    };
    let other = s.key_with("flo-only", "publish:rom.flo").await;
    assert_eq!(put("true", other).await.unwrap().status(), 403);
    assert_eq!(put("yes", s.key.clone()).await.unwrap().status(), 400);
    assert_eq!(put("true", s.key.clone()).await.unwrap().status(), 200);
    assert_eq!(list(&s).await, 1);
    assert_eq!(put("false", s.key.clone()).await.unwrap().status(), 200);
    assert_eq!(list(&s).await, 0);
    let r = client()
        .put(format!(
            "{}/api/v1/builds/hammerhead/eng.404/published",
            s.base
        ))
        .bearer_auth(&s.key)
        .body("true")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    s.stop().await;
}
