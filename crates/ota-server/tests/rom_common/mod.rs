//! What the ROM server's test files share: sample Android packages,
//! publishing, and the stock clients' requests and parsing.
#![allow(dead_code)]

use super::common::{client, TestServer};
use md5::Digest;
use ota_android::fixtures::Spec;
use ota_android::package::BuildOptions;
use ota_android::target_files::TargetFiles;
use reqwest::multipart::{Form, Part};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

/// Sample packages: full v1, full v2, incremental v1 → v2 (unsigned).
pub struct Packages {
    pub _dir: tempfile::TempDir,
    pub full1: PathBuf,
    pub full2: PathBuf,
    pub inc12: PathBuf,
}

pub fn packages() -> Packages {
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

pub fn md5_hex(data: &[u8]) -> String {
    hex(&md5::Md5::digest(data))
}

pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// `POST /api/v1/builds` with a `build` part and the file under `name`.
pub async fn publish_as(
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

pub async fn publish_path(s: &TestServer, build: Value, path: &Path) -> Value {
    let bytes = std::fs::read(path).unwrap();
    let name = path.file_name().unwrap().to_str().unwrap();
    let r = publish_as(s, Some(&s.key), &build.to_string(), &bytes, name).await;
    let status = r.status();
    let body: Value = r.json().await.unwrap();
    assert_eq!(status, 201, "{body}");
    body
}

/// Publishes the three sample packages on `nightly`.
pub async fn publish_samples(s: &TestServer, p: &Packages) {
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
pub async fn cm_post(s: &TestServer, path: &str, body: String) -> reqwest::Response {
    client()
        .post(format!("{}{path}", s.base))
        .header("User-Agent", "com.cyanogenmod.updater/2.3")
        .header("Cache-Control", "no-cache")
        .body(body)
        .send()
        .await
        .unwrap()
}

pub fn cm_request(device: &str, channel: &str, source: &str) -> String {
    format!(
        r#"{{"method":"get_all_builds","params":{{"device":"{device}","channels":["{channel}"],"source_incremental":"{source}"}}}}"#
    )
}

/// An item as `parseUpdateJSONObject` reads it: every key, with its type.
#[derive(Debug)]
pub struct CmUpdate {
    pub filename: String,
    pub url: String,
    pub changes: String,
    pub md5sum: String,
    pub api_level: i32,
    pub timestamp: i64,
    pub channel: String,
    pub incremental: String,
}

pub fn get_string(o: &Value, k: &str) -> String {
    o.get(k)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("getString({k:?}) fails on {o}"))
        .to_owned()
}

pub fn get_long(o: &Value, k: &str) -> i64 {
    o.get(k)
        .and_then(Value::as_i64)
        .unwrap_or_else(|| panic!("getLong({k:?}) fails on {o}"))
}

pub fn parse_cm(answer: &Value) -> Vec<CmUpdate> {
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
pub async fn download_resumed(url: &str) -> Vec<u8> {
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
