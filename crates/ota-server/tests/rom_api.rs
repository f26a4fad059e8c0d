//! The ROM server over HTTP, as the stock CMUpdater and LineageOS Updater
//! apps talk to it: their exact requests (no Content-Type on CMUpdater's
//! bodies, no `device` in `get_delta`), their answers read with exactly the
//! keys and types the apps read, resumed downloads; and publishing with
//! every refusal storing nothing.

mod common;

use common::{client, start, start_with, TestServer};
use md5::Digest;
use ota_android::fixtures::Spec;
use ota_android::package::BuildOptions;
use ota_android::target_files::TargetFiles;
use reqwest::multipart::{Form, Part};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

/// Sample packages: full v1, full v2, incremental v1 → v2 (unsigned).
struct Packages {
    _dir: tempfile::TempDir,
    full1: PathBuf,
    full2: PathBuf,
    inc12: PathBuf,
}

fn packages() -> Packages {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut tf = Vec::new();
    for v in 1..=2 {
        let zip = d.join(format!("tf{v}.zip"));
        Spec::sample(v).unwrap().write_zip(&zip).unwrap();
        tf.push(TargetFiles::open(&zip).unwrap());
    }
    let opts = BuildOptions {
        worker_threads: 2,
        ..Default::default()
    };
    let full1 = d.join("update-eng.1001.zip");
    let full2 = d.join("update-eng.1002.zip");
    let inc12 = d.join("update-eng.1001-eng.1002.zip");
    ota_android::full::write_full(&tf[0], &full1, &opts).unwrap();
    ota_android::full::write_full(&tf[1], &full2, &opts).unwrap();
    ota_android::incremental::write_incremental(&tf[0], &tf[1], &inc12, &opts).unwrap();
    Packages {
        _dir: dir,
        full1,
        full2,
        inc12,
    }
}

fn md5_hex(data: &[u8]) -> String {
    hex(&md5::Md5::digest(data))
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// `POST /api/v1/builds` with a `build` part and the file under `name`.
async fn publish_as(
    s: &TestServer,
    key: Option<&str>,
    build: &str,
    file: &[u8],
    name: &str,
) -> reqwest::Response {
    let form = Form::new()
        .part("build", Part::text(build.to_owned()))
        .part(
            "file",
            Part::bytes(file.to_vec()).file_name(name.to_owned()),
        );
    let mut req = client()
        .post(format!("{}/api/v1/builds", s.base))
        .multipart(form);
    if let Some(k) = key {
        req = req.bearer_auth(k);
    }
    req.send().await.unwrap()
}

async fn publish_path(s: &TestServer, build: Value, path: &Path) -> Value {
    let bytes = std::fs::read(path).unwrap();
    let name = path.file_name().unwrap().to_str().unwrap();
    let r = publish_as(s, Some(&s.key), &build.to_string(), &bytes, name).await;
    let status = r.status();
    let body: Value = r.json().await.unwrap();
    assert_eq!(status, 201, "{body}");
    body
}

/// Publishes the three sample packages on `nightly`.
async fn publish_samples(s: &TestServer, p: &Packages) {
    let b =
        json!({"device": "hammerhead", "channel": "nightly", "changelog": "* First\nfixed boot\n"});
    publish_path(s, b, &p.full1).await;
    let b = json!({"device": "hammerhead", "channel": "nightly", "changelog": "=Fixes\n* Faster\nless battery\n"});
    publish_path(s, b, &p.full2).await;
    let b = json!({"device": "hammerhead", "channel": "nightly"});
    publish_path(s, b, &p.inc12).await;
}

/// The CMUpdater request, byte for byte as the app builds it, sent as the
/// app's Volley request does (POST, no Content-Type).
async fn cm_post(s: &TestServer, path: &str, body: String) -> reqwest::Response {
    client()
        .post(format!("{}{path}", s.base))
        .header("User-Agent", "com.cyanogenmod.updater/2.3")
        .header("Cache-Control", "no-cache")
        .body(body)
        .send()
        .await
        .unwrap()
}

fn cm_request(device: &str, channel: &str, source: &str) -> String {
    format!(
        r#"{{"method":"get_all_builds","params":{{"device":"{device}","channels":["{channel}"],"source_incremental":"{source}"}}}}"#
    )
}

/// An item as `parseUpdateJSONObject` reads it: every key, with its type.
#[derive(Debug)]
struct CmUpdate {
    filename: String,
    url: String,
    changes: String,
    md5sum: String,
    api_level: i32,
    timestamp: i64,
    channel: String,
    incremental: String,
}

fn get_string(o: &Value, k: &str) -> String {
    o.get(k)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("getString({k:?}) fails on {o}"))
        .to_owned()
}

fn get_long(o: &Value, k: &str) -> i64 {
    o.get(k)
        .and_then(Value::as_i64)
        .unwrap_or_else(|| panic!("getLong({k:?}) fails on {o}"))
}

fn parse_cm(answer: &Value) -> Vec<CmUpdate> {
    answer["result"]
        .as_array()
        .unwrap_or_else(|| panic!("getJSONArray(\"result\") fails on {answer}"))
        .iter()
        .map(|o| CmUpdate {
            filename: get_string(o, "filename"),
            url: get_string(o, "url"),
            changes: get_string(o, "changes"),
            md5sum: get_string(o, "md5sum"),
            api_level: i32::try_from(get_long(o, "api_level")).unwrap(),
            timestamp: get_long(o, "timestamp"),
            channel: get_string(o, "channel"),
            incremental: get_string(o, "incremental"),
        })
        .collect()
}

/// Downloads `url` in two parts, the second resumed with `Range: bytes=N-`
/// as both apps resume, and checks the 206.
async fn download_resumed(url: &str) -> Vec<u8> {
    let whole = client().get(url).send().await.unwrap();
    assert_eq!(whole.status(), 200);
    let len = whole.bytes().await.unwrap().len();
    let cut = len / 3;
    let head = client()
        .get(url)
        .header("Range", format!("bytes=0-{}", cut - 1))
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), 206);
    let mut data = head.bytes().await.unwrap().to_vec();
    let tail = client()
        .get(url)
        .header("Range", format!("bytes={cut}-"))
        .send()
        .await
        .unwrap();
    assert_eq!(tail.status(), 206);
    assert_eq!(
        tail.headers()["content-range"].to_str().unwrap(),
        format!("bytes {cut}-{}/{len}", len - 1)
    );
    data.extend_from_slice(&tail.bytes().await.unwrap());
    data
}

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
