//! The ROM server over HTTP, as the stock CMUpdater and LineageOS Updater
//! apps talk to it: their exact requests (no Content-Type on CMUpdater's
//! bodies, no `device` in `get_delta`), their answers read with exactly the
//! keys and types the apps read, and resumed downloads.

mod common;
mod rom_common;

use common::{client, start, start_with, TestServer};
use rom_common::*;
use serde_json::{json, Value};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cmupdater_stock_client() {
    let s = start().await;
    let p = packages();
    publish_samples(&s, &p).await;

    // On eng.1001: only the newer build, with every key the app reads.
    let r = cm_post(&s, "/api", cm_request("hammerhead", "nightly", "eng.1001")).await;
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/json"));
    let answer: Value = r.json().await.unwrap();
    assert_eq!(answer["id"], Value::Null);
    assert_eq!(answer["error"], Value::Null);
    let updates = parse_cm(&answer);
    assert_eq!(updates.len(), 1, "{answer}");
    let u = &updates[0];
    assert_eq!(u.incremental, "eng.1002");
    assert_eq!(u.channel, "nightly");
    assert_eq!(u.filename, "update-eng.1002.zip");
    assert_eq!(u.api_level, 0, "the sample build.prop has no SDK level");
    let full2 = std::fs::read(&p.full2).unwrap();
    assert_eq!(u.md5sum, md5_hex(&full2));
    let info = ota_android::package_info::PackageInfo::read(&p.full2).unwrap();
    assert_eq!(u.timestamp, info.timestamp);

    // A source this server never published: every build, newest first.
    let r = cm_post(&s, "/api", cm_request("hammerhead", "nightly", "other.1")).await;
    let all = parse_cm(&r.json().await.unwrap());
    let incs: Vec<&str> = all.iter().map(|u| u.incremental.as_str()).collect();
    assert_eq!(incs, ["eng.1002", "eng.1001"]);
    assert!(all[0].timestamp > all[1].timestamp);

    // The full build downloads, resumed, and matches md5sum.
    let got = download_resumed(&u.url).await;
    assert_eq!(md5_hex(&got), u.md5sum);
    assert_eq!(got, full2);

    // The changelog renders: a `=` header block, then the text.
    let r = client().get(&u.changes).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    let text = r.text().await.unwrap();
    assert!(text.starts_with("===================="), "{text}");
    assert!(text.contains("eng.1002 (nightly)"), "{text}");
    assert!(text.ends_with("=Fixes\n* Faster\nless battery\n"), "{text}");

    // The delta: exactly the app's body, no device, no Content-Type.
    let body = r#"{"source_incremental":"eng.1001","target_incremental":"eng.1002"}"#;
    let r = cm_post(&s, "/api/v1/build/get_delta", body.into()).await;
    assert_eq!(r.status(), 200);
    let d: Value = r.json().await.unwrap();
    assert!(d.get("errors").is_none(), "{d}");
    let created = get_long(&d, "date_created_unix");
    assert!(created > 1_600_000_000, "{d}");
    assert_eq!(get_string(&d, "incremental"), "eng.1002");
    assert_eq!(get_string(&d, "filename"), "update-eng.1001-eng.1002.zip");
    let inc = download_resumed(&get_string(&d, "download_url")).await;
    assert_eq!(md5_hex(&inc), get_string(&d, "md5sum"));
    assert_eq!(inc, std::fs::read(&p.inc12).unwrap());

    // No incremental for that pair: 200 with "errors", so the app falls
    // back to the full build.
    let body = r#"{"source_incremental":"eng.0999","target_incremental":"eng.1002"}"#;
    let r = cm_post(&s, "/api/v1/build/get_delta", body.into()).await;
    assert_eq!(r.status(), 200);
    let d: Value = r.json().await.unwrap();
    assert_eq!(
        d["errors"][0]["message"],
        "No matching incremental update found!"
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cmupdater_refusals_keep_the_client_shapes() {
    let s = start().await;
    let p = packages();
    publish_samples(&s, &p).await;
    let bad = [
        ("{", "malformed JSON"),
        ("[1]", "must be a JSON object"),
        (
            r#"{"method":"get_builds_as_html","params":{}}"#,
            "is not a valid \"method\"!",
        ),
        (
            r#"{"method":"get_all_builds"}"#,
            "params is a required parameter!",
        ),
        (
            r#"{"method":"get_all_builds","params":{"channels":["nightly"],"source_incremental":"1"}}"#,
            "device is a required parameter!",
        ),
        (
            r#"{"method":"get_all_builds","params":{"device":"hammerhead","source_incremental":"1"}}"#,
            "channels is a required parameter!",
        ),
        (
            r#"{"method":"get_all_builds","params":{"device":"hammerhead","channels":["nightly"]}}"#,
            "source_incremental is a required parameter!",
        ),
        (
            r#"{"method":"get_all_builds","params":{"device":"x' OR '1'='1","channels":["nightly"],"source_incremental":"1"}}"#,
            "invalid device codename",
        ),
        (
            r#"{"method":"get_all_builds","params":{"device":"hammerhead","channels":["<script>"],"source_incremental":"1"}}"#,
            "invalid channel",
        ),
        (
            r#"{"method":"get_all_builds","params":{"device":"hammerhead","channels":["nightly"],"source_incremental":"1;DROP TABLE rom_builds"}}"#,
            "invalid source_incremental",
        ),
    ];
    for (body, expect) in bad {
        let r = cm_post(&s, "/api", body.into()).await;
        assert_eq!(r.status(), 400, "{body}");
        assert!(r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json"));
        let a: Value = r.json().await.unwrap();
        assert_eq!(a["id"], Value::Null);
        assert_eq!(a["result"], Value::Null);
        let e = a["error"].as_str().unwrap();
        assert!(e.contains(expect), "{body}: {e}");
    }
    // An unknown device or channel: an empty list, not an error.
    for (d, c) in [("flo", "nightly"), ("hammerhead", "stable")] {
        let r = cm_post(&s, "/api", cm_request(d, c, "eng.1001")).await;
        assert_eq!(r.status(), 200);
        let a: Value = r.json().await.unwrap();
        assert_eq!(a["result"], json!([]), "{d} {c}");
    }
    // An oversize body.
    let r = cm_post(&s, "/api", format!("{{\"x\":\"{}\"}}", "a".repeat(20_000))).await;
    assert_eq!(r.status(), 400);

    for body in [
        "{}",
        r#"{"source_incremental":"eng.1001"}"#,
        r#"{"source_incremental":1,"target_incremental":2}"#,
        "not json",
    ] {
        let r = cm_post(&s, "/api/v1/build/get_delta", body.into()).await;
        assert_eq!(r.status(), 400, "{body}");
        let a: Value = r.json().await.unwrap();
        assert!(a["errors"][0]["message"].is_string(), "{a}");
    }
    let body = r#"{"source_incremental":"../../etc","target_incremental":"eng.1002"}"#;
    let r = cm_post(&s, "/api/v1/build/get_delta", body.into()).await;
    assert_eq!(r.status(), 400);
    // A device, when sent, must be one that has the incremental.
    let body =
        r#"{"device":"flo","source_incremental":"eng.1001","target_incremental":"eng.1002"}"#;
    let r = cm_post(&s, "/api/v1/build/get_delta", body.into()).await;
    let a: Value = r.json().await.unwrap();
    assert!(a["errors"].is_array(), "{a}");
    let body = r#"{"device":"hammerhead","source_incremental":"eng.1001","target_incremental":"eng.1002"}"#;
    let r = cm_post(&s, "/api/v1/build/get_delta", body.into()).await;
    let a: Value = r.json().await.unwrap();
    assert_eq!(a["incremental"], "eng.1002", "{a}");

    // Changelogs of builds that do not exist, and hostile paths.
    for path in [
        "/api/changelog/hammerhead/eng.9999.txt",
        "/api/changelog/hammerhead/eng.1002",
        "/api/changelog/ham%27merhead/eng.1002.txt",
        "/api/changelog/hammerhead/..%2F..%2Fota.db.txt",
    ] {
        let r = s.get(path).await;
        assert!(matches!(r.status().as_u16(), 400 | 404), "{path}");
        assert!(r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain"));
    }
    s.stop().await;
}

/// An item as `Utils.parseJsonUpdate` reads it: datetime, filename, id,
/// romtype, size, url, version.
type LineageUpdate = (i64, String, String, String, i64, String, String);

fn parse_lineage(answer: &Value) -> Vec<LineageUpdate> {
    answer["response"]
        .as_array()
        .unwrap_or_else(|| panic!("no response array in {answer}"))
        .iter()
        .map(|o| {
            (
                get_long(o, "datetime"),
                get_string(o, "filename"),
                get_string(o, "id"),
                get_string(o, "romtype"),
                get_long(o, "size"),
                get_string(o, "url"),
                get_string(o, "version"),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lineage_stock_client() {
    let s = start().await;
    let p = packages();
    publish_samples(&s, &p).await;
    let r = s.get("/api/v1/hammerhead/nightly/eng.1001").await;
    assert_eq!(r.status(), 200);
    let builds = parse_lineage(&r.json().await.unwrap());
    assert_eq!(builds.len(), 2);
    let (datetime, filename, id, romtype, size, url, version) = &builds[0];
    let full2 = std::fs::read(&p.full2).unwrap();
    assert_eq!(filename, "update-eng.1002.zip");
    assert_eq!(*id, common::sha(&full2));
    assert_eq!(romtype, "nightly");
    assert_eq!(*size, full2.len() as i64);
    assert_eq!(version, "4.4.4", "from the fingerprint's release field");
    assert!(*datetime > builds[1].0, "newest first");
    assert_eq!(download_resumed(url).await, full2);

    // The app lowercases the release type; `after` filters.
    let r = s.get("/api/v1/hammerhead/NIGHTLY/x").await;
    assert_eq!(parse_lineage(&r.json().await.unwrap()).len(), 2);
    let r = s
        .get(&format!(
            "/api/v1/hammerhead/nightly/x?after={}",
            builds[1].0
        ))
        .await;
    assert_eq!(parse_lineage(&r.json().await.unwrap()).len(), 1);
    let r = s.get("/api/v1/hammerhead/nightly/x?version=4.4.4").await;
    assert_eq!(parse_lineage(&r.json().await.unwrap()).len(), 2);
    let r = s.get("/api/v1/hammerhead/nightly/x?version=5.0").await;
    assert_eq!(parse_lineage(&r.json().await.unwrap()).len(), 0);

    // Unknown device or type: an empty list.
    for path in ["/api/v1/flo/nightly/1", "/api/v1/hammerhead/snapshot/1"] {
        let r = s.get(path).await;
        assert_eq!(r.status(), 200);
        assert_eq!(r.json::<Value>().await.unwrap(), json!({"response": []}));
    }
    // Malformed segments and parameters: clear 400s.
    for path in [
        "/api/v1/ham'merhead/nightly/1",
        "/api/v1/hammerhead/<b>/1",
        "/api/v1/hammerhead/nightly/1%20OR%201=1",
        "/api/v1/hammerhead/nightly/1?after=yesterday",
        "/api/v1/hammerhead/nightly/1?version=%3Cscript%3E",
    ] {
        let r = s.get(path).await;
        assert_eq!(r.status(), 400, "{path}");
        let a: Value = r.json().await.unwrap();
        assert!(a["error"]["message"].is_string(), "{a}");
    }

    // Types, with and without the trailing slash.
    for path in ["/api/v1/types/hammerhead/", "/api/v1/types/hammerhead"] {
        let r = s.get(path).await;
        assert_eq!(
            r.json::<Value>().await.unwrap(),
            json!({"response": ["nightly"]})
        );
    }
    let r = s.get("/api/v1/types/flo/").await;
    assert_eq!(r.json::<Value>().await.unwrap(), json!({"response": []}));

    // The shared /api/v1/devices: without a key, the LineageOS device list.
    let r = s.get("/api/v1/devices").await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!([{"model": "hammerhead", "oem": "", "name": "hammerhead"}])
    );

    // The server's own /api/v1/ routes still answer beside the LineageOS one.
    let r = s.get("/api/v1/packages").await;
    assert_eq!(r.status(), 200);
    let r = client()
        .get(format!("{}/api/v1/jobs", s.base))
        .bearer_auth(&s.key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    s.stop().await;
}

/// The LineageOS device list, called in-process as the shared
/// `GET /api/v1/devices` route calls it for a request without a key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lineage_device_list() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = ota_server::ServerConfig::new(dir.path().join("data"));
    config.listen = "127.0.0.1:0".parse().unwrap();
    config.packs.workers = 0;
    let server = ota_server::Server::bind(config).await.unwrap();
    let state = server.state().clone();
    let list = || async {
        let r = ota_server::rom::lineage::list_devices(axum::extract::State(state.clone())).await;
        assert_eq!(r.status(), 200);
        let body = axum::body::to_bytes(r.into_body(), 1 << 20).await.unwrap();
        serde_json::from_slice::<Value>(&body).unwrap()
    };
    assert_eq!(list().await, json!([]));
    let p = packages();
    let b = ota_store::NewRomBuild {
        device: ota_store::RomDevice {
            codename: "hammerhead".into(),
            name: "Nexus 5".into(),
            oem: "LGE".into(),
        },
        channel: "nightly".into(),
        incremental: "eng.1001".into(),
        timestamp: 1,
        api_level: 19,
        version: "11.0".into(),
        romtype: "nightly".into(),
        filename: "a.zip".into(),
        size: 1,
        md5: "0".repeat(32),
        sha256: common::sha(&std::fs::read(&p.full1).unwrap()),
        changelog: String::new(),
        published: false,
    };
    state.catalogue.publish_rom_build(&b).await.unwrap();
    assert_eq!(list().await, json!([]), "no published build yet");
    state
        .catalogue
        .set_rom_published("hammerhead", "eng.1001", true)
        .await
        .unwrap();
    assert_eq!(
        list().await,
        json!([{"model": "hammerhead", "oem": "LGE", "name": "Nexus 5"}])
    );
    server.run(async {}).await.unwrap();
}

/// Build lists are cached, yet a build published on another server sharing
/// the database is offered within the generation poll.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cached_lists_follow_other_servers() {
    let a = start().await;
    let url = a.database_url.clone();
    let key = a.data().join("signing-key.pem");
    let b = start_with(|c| {
        c.database_url = Some(url);
        c.packs.signing_key = Some(key);
    })
    .await;
    let p = packages();
    let ask = |s: &TestServer| {
        let base = s.base.clone();
        async move {
            let r = client()
                .post(format!("{base}/api"))
                .body(cm_request("hammerhead", "nightly", "eng.1000"))
                .send()
                .await
                .unwrap();
            parse_cm(&r.json().await.unwrap())
                .into_iter()
                .map(|u| u.incremental)
                .collect::<Vec<_>>()
        }
    };
    let b_build = json!({"device": "hammerhead", "channel": "nightly"});
    publish_path(&b, b_build.clone(), &p.full1).await;
    assert_eq!(ask(&a).await, ["eng.1001"]); // now cached on A
    assert_eq!(ask(&a).await, ["eng.1001"]);
    publish_path(&b, b_build, &p.full2).await;
    let mut seen = Vec::new();
    for _ in 0..100 {
        seen = ask(&a).await;
        if seen.len() == 2 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(seen, ["eng.1002", "eng.1001"]);
    b.stop().await;
    a.stop().await;
}

/// With download URLs built from each request's Host, cached answers for
/// one host are never served to another.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cached_answers_keep_hosts_apart() {
    let s = start_with(|c| c.url_from_request = true).await;
    let p = packages();
    publish_samples(&s, &p).await;
    for _ in 0..2 {
        for host in ["a.example", "b.example:8443"] {
            let r = client()
                .post(format!("{}/api", s.base))
                .header("Host", host)
                .body(cm_request("hammerhead", "nightly", "eng.1001"))
                .send()
                .await
                .unwrap();
            let u = &parse_cm(&r.json().await.unwrap())[0];
            assert!(
                u.url.starts_with(&format!("http://{host}/rom/")),
                "{}",
                u.url
            );
            assert!(u
                .changes
                .starts_with(&format!("http://{host}/api/changelog/")));
            let r = client()
                .get(format!("{}/api/v1/hammerhead/nightly/x", s.base))
                .header("Host", host)
                .send()
                .await
                .unwrap();
            let v: Value = r.json().await.unwrap();
            let url = v["response"][0]["url"].as_str().unwrap();
            assert!(url.starts_with(&format!("http://{host}/rom/")), "{url}");
        }
    }
    s.stop().await;
}
