//! Delta serving end to end over real HTTP: versions of a realistic tree
//! published as archives, pack jobs, the request/confirm protocol, bundles
//! applied with `ota-bundle` and compared with the target.

mod common;
use common::*;
use ota_bundle::apply::{apply_bundle, ApplyOptions};
use ota_core::signing::PublicKey;
use serde_json::{json, Value};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

/// A small deterministic generator (tests must not depend on a seed file).
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Writes version `i` of the test tree into `dir`: real ELF binaries that
/// change a little between versions (as rebuilds do), text, renames,
/// deletions, mode changes and symlinks.
fn write_version(dir: &Path, i: u32) {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ (u64::from(i) * 0x1000_0001));
    std::fs::create_dir_all(dir.join("bin")).unwrap();
    std::fs::create_dir_all(dir.join("share/doc")).unwrap();
    for (k, name) in ["cat", "sed", "grep"].iter().enumerate() {
        let mut elf = std::fs::read(format!("/usr/bin/{name}")).unwrap();
        // Versions drift: a few patched bytes per version since the first.
        for v in 0..i {
            let mut r = Rng(u64::from(v) * 7919 + k as u64 + 1);
            for _ in 0..8 {
                let at = 64 + r.below(elf.len() as u64 - 64) as usize;
                elf[at] = elf[at].wrapping_add(1 + v as u8);
            }
        }
        std::fs::write(dir.join("bin").join(name), &elf).unwrap();
        let mode = if i % 5 == 3 && k == 1 { 0o700 } else { 0o755 };
        std::fs::set_permissions(
            dir.join("bin").join(name),
            std::fs::Permissions::from_mode(mode),
        )
        .unwrap();
    }
    // A config file that gains a line per version.
    let mut conf = String::from("# app configuration\n");
    for v in 0..=i {
        conf.push_str(&format!("option_{v} = {}\n", v * 3 + 1));
    }
    std::fs::write(dir.join("app.conf"), conf).unwrap();
    // A document renamed every fourth version.
    let doc = format!("release notes\n{}\n", "lorem ipsum ".repeat(200));
    std::fs::write(dir.join(format!("share/doc/NOTES-{}.txt", i / 4)), doc).unwrap();
    // A file present in odd versions only.
    if i % 2 == 1 {
        let blob: Vec<u8> = (0..4096).map(|_| rng.next() as u8).collect();
        std::fs::write(dir.join("share/odd.bin"), blob).unwrap();
    }
    // A symlink whose target changes.
    let target = if i.is_multiple_of(3) {
        "bin/cat"
    } else {
        "bin/sed"
    };
    std::os::unix::fs::symlink(target, dir.join("current")).unwrap();
    std::fs::write(dir.join("VERSION"), format!("1.0.{i}\n")).unwrap();
}

/// A tar.gz of a directory (symlinks stored as links).
fn targz(dir: &Path) -> Vec<u8> {
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut t = tar::Builder::new(gz);
    t.follow_symlinks(false);
    t.append_dir_all(".", dir).unwrap();
    t.into_inner().unwrap().finish().unwrap()
}

fn version(i: u32) -> String {
    format!("1.0.{i}")
}

async fn post(s: &TestServer, path: &str, body: Value) -> reqwest::Response {
    client()
        .post(format!("{}{path}", s.base))
        .json(&body)
        .send()
        .await
        .unwrap()
}

async fn delta_map(s: &TestServer, package: &str) -> Value {
    s.get(&format!("/api/v1/packages/{package}/branches/main/deltas"))
        .await
        .json()
        .await
        .unwrap()
}

/// Waits until `version` is a delta destination (every pack ending there built).
async fn wait_ready(s: &TestServer, package: &str, version: &str, secs: u64) {
    let deadline = std::time::Instant::now() + Duration::from_secs(secs);
    loop {
        let m = delta_map(s, package).await;
        if m["newest"] == json!(version) {
            return;
        }
        let failed: Value = client()
            .get(format!("{}/api/v1/jobs?state=failed", s.base))
            .bearer_auth(&s.key)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(failed["jobs"], json!([]), "a pack job failed");
        assert!(
            std::time::Instant::now() < deadline,
            "not ready in {secs}s: {m}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn set_rule(s: &TestServer, package: &str, from: &str, to: &str, rollback: bool) {
    let rule = json!([{ "strategy": "compulsory",
        "condition": { "version": { "compare": "==", "value": from },
                       "type": { "assign": "==", "name": "board" } },
        "dest": to }]);
    let doc = if rollback {
        json!([{ "name": package, "rollback": rule }])
    } else {
        json!([{ "name": package, "update": rule }])
    };
    let r = client()
        .put(format!("{}/api/v1/strategies", s.base))
        .bearer_auth(&s.key)
        .body(doc.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
}

/// Request, confirm and return the bundle bytes for from → to.
async fn fetch_bundle(s: &TestServer, package: &str, from: &str, to: &str) -> Vec<u8> {
    let r = post(
        s,
        "/api/v1/update/request",
        json!({"Request": "Yes", "name": package, "version": from, "type": "board"}),
    )
    .await;
    assert_eq!(r.status(), 200);
    let answer: Value = r.json().await.unwrap();
    let action = if ota_core::Version::parse(to).unwrap() > ota_core::Version::parse(from).unwrap()
    {
        "Update"
    } else {
        "Rollback"
    };
    assert_eq!(
        answer,
        json!({"Response": "Yes", "Action": action, "Strategy": "Compulsory",
               "From": from, "Destination": to})
    );
    let r = post(
        s,
        "/api/v1/update/confirm",
        json!({"Confirm": "Yes", "Action": action, "Strategy": "Compulsory",
               "From": from, "Destination": to, "name": package, "type": "board"}),
    )
    .await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/gzip");
    let location = r.headers()["content-location"].to_str().unwrap().to_owned();
    let etag = r.headers()["etag"].to_str().unwrap().to_owned();
    let bytes = r.bytes().await.unwrap().to_vec();
    // The same bundle resumes at its own URL.
    let tail = client()
        .get(format!("{}{location}", s.base))
        .header("range", "bytes=10-")
        .header("if-range", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(tail.status(), 206);
    assert_eq!(tail.bytes().await.unwrap(), bytes[10..]);
    bytes
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to.parent().unwrap()).unwrap();
    let status = std::process::Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .unwrap();
    assert!(status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thirty_versions_random_pairs_both_ways() {
    const N: u32 = 30;
    let s = start_with(|c| c.packs.workers = 2).await;
    let trees = tempfile::tempdir().unwrap();
    let mut full_sizes = Vec::new();
    for i in 0..N {
        let dir = trees.path().join(version(i));
        write_version(&dir, i);
        let archive = targz(&dir);
        full_sizes.push(archive.len());
        s.publish("fleet-app", "main", &version(i), &archive).await;
    }
    wait_ready(&s, "fleet-app", &version(N - 1), 300).await;
    let m = delta_map(&s, "fleet-app").await;
    let packs = m["packs"].as_u64().unwrap();
    assert!(packs <= 4 * u64::from(N), "{packs} packs for {N} versions");

    let public = s.get("/api/v1/signing-key").await.text().await.unwrap();
    let key = PublicKey::from_pem(&public).unwrap();
    let mut rng = Rng(42);
    let (mut shipped, mut full) = (0usize, 0usize);
    for round in 0..14 {
        let a = rng.below(u64::from(N)) as u32;
        let mut b = rng.below(u64::from(N)) as u32;
        if a == b {
            b = (b + 1 + round) % N;
        }
        let (from, to) = (version(a), version(b));
        set_rule(&s, "fleet-app", &from, &to, b < a).await;
        let bundle = fetch_bundle(&s, "fleet-app", &from, &to).await;
        shipped += bundle.len();
        full += full_sizes[b as usize];
        let work = tempfile::tempdir().unwrap();
        let device = work.path().join("device");
        copy_tree(&trees.path().join(&from), &device);
        let file = work.path().join("data.tar.gz");
        std::fs::write(&file, &bundle).unwrap();
        let opts = ApplyOptions {
            expect_to: Some(to.clone()),
            ..ApplyOptions::default()
        };
        let applied = apply_bundle(&file, &device, &key, &opts)
            .unwrap_or_else(|f| panic!("{from} -> {to}: {}", f.error));
        assert_eq!(
            (applied.from.as_str(), applied.to.as_str()),
            (from.as_str(), to.as_str())
        );
        // Same paths, kinds, modes, bytes and link texts as the target.
        assert_eq!(
            ota_core::digest::digest_path(&device).unwrap(),
            ota_core::digest::digest_path(&trees.path().join(&to)).unwrap(),
            "{from} -> {to}"
        );
        assert_eq!(
            std::fs::read(device.join("bin/grep")).unwrap(),
            std::fs::read(trees.path().join(&to).join("bin/grep")).unwrap()
        );
    }
    eprintln!("bundles shipped {shipped} bytes for 14 updates; full downloads: {full} bytes");
    assert!(
        shipped * 3 < full,
        "deltas should be far smaller than full downloads"
    );
    s.stop().await;
}

#[tokio::test]
async fn versions_wait_for_their_packs_and_jobs_survive_a_restart() {
    let s = start().await; // no workers
    let trees = tempfile::tempdir().unwrap();
    for i in 0..4 {
        let dir = trees.path().join(version(i));
        write_version(&dir, i);
        s.publish("slow-app", "main", &version(i), &targz(&dir))
            .await;
    }
    // Full-package clients see the newest version at once…
    let r = s.get("/maxVersion?package=slow-app&branch=main").await;
    assert!(r.text().await.unwrap().contains("1.0.3"));
    // …delta clients only once its packs exist.
    let r = post(
        &s,
        "/api/v1/update/request",
        json!({"Request": "Yes", "name": "slow-app", "version": "1.0.0", "type": "t"}),
    )
    .await;
    assert_eq!(r.json::<Value>().await.unwrap(), json!({"Response": "No"}));
    let m = delta_map(&s, "slow-app").await;
    assert_eq!(m["newest"], json!("1.0.0"));
    assert_eq!(m["versions"][3]["ready"], json!(false));
    let queued: Value = client()
        .get(format!("{}/api/v1/jobs?state=queued", s.base))
        .bearer_auth(&s.key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    // Edges 0→1, 1→2, 2→3 and the level-1 edge 0→3.
    assert_eq!(queued["jobs"].as_array().unwrap().len(), 4, "{queued}");

    let dir = s.stop_keeping_data().await;
    let s = start_in(dir, |c| c.packs.workers = 1).await;
    wait_ready(&s, "slow-app", "1.0.3", 120).await;
    // No rules for the package: its newest version, optionally, in one pack.
    let r = post(
        &s,
        "/api/v1/update/request",
        json!({"Request": "Yes", "name": "slow-app", "version": "1.0.0", "type": "t"}),
    )
    .await;
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({"Response": "Yes", "Action": "Update", "Strategy": "Optional",
               "From": "1.0.0", "Destination": "1.0.3"})
    );
    s.stop().await;
}

#[tokio::test]
async fn bad_messages_get_clear_errors_and_build_nothing() {
    let s = start_with(|c| c.packs.workers = 1).await;
    let trees = tempfile::tempdir().unwrap();
    for i in 0..2 {
        let dir = trees.path().join(version(i));
        write_version(&dir, i);
        s.publish("app", "main", &version(i), &targz(&dir)).await;
    }
    wait_ready(&s, "app", "1.0.1", 120).await;
    let req = |body: &str| {
        client()
            .post(format!("{}/api/v1/update/request", s.base))
            .body(body.to_owned())
            .send()
    };
    let err = |r: reqwest::Response| async move {
        let status = r.status().as_u16();
        let v: Value = r.json().await.unwrap();
        (
            status,
            v["error"]["message"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        )
    };
    let (st, msg) = err(req("{not json").await.unwrap()).await;
    assert_eq!(st, 400, "{msg}");
    assert!(msg.contains("malformed request message"), "{msg}");
    let (st, _) = err(
        req(r#"{"Request":"No","name":"app","version":"1.0.0","type":"t"}"#)
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(st, 400);
    let (st, msg) = err(
        req(r#"{"Request":"Yes","name":"nope","version":"1.0.0","type":"t"}"#)
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(st, 404, "{msg}");
    let (st, msg) = err(
        req(r#"{"Request":"Yes","name":"app","version":"9.9.9","type":"t"}"#)
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(st, 404, "{msg}");
    let (st, _) = err(
        req(r#"{"Request":"Yes","name":"app","version":"01.0","type":"t"}"#)
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(st, 400);
    let (st, _) = err(req(&"x".repeat(20_000)).await.unwrap()).await;
    assert_eq!(st, 413);
    // At the newest version: nothing to do.
    let r = req(r#"{"Request":"Yes","name":"app","version":"1.0.1","type":"t"}"#)
        .await
        .unwrap();
    assert_eq!(r.json::<Value>().await.unwrap(), json!({"Response": "No"}));
    // A confirm the strategies do not allow (here: a rollback nobody offered).
    let bundles_before = std::fs::read_dir(s.data().join("bundles")).unwrap().count();
    let r = post(
        &s,
        "/api/v1/update/confirm",
        json!({"Confirm": "Yes", "Action": "Rollback", "Strategy": "Compulsory",
               "From": "1.0.1", "Destination": "1.0.0", "name": "app", "type": "t"}),
    )
    .await;
    let (st, msg) = err(r).await;
    assert_eq!(st, 409, "{msg}");
    assert!(msg.contains("they allow nothing"), "{msg}");
    assert_eq!(
        std::fs::read_dir(s.data().join("bundles")).unwrap().count(),
        bundles_before
    );
    // An unknown bundle.
    let r = s
        .get(&format!("/api/v1/update/bundles/{}", "0".repeat(64)))
        .await;
    assert_eq!(r.status(), 404);
    s.stop().await;
}

/// True when `openssl pkeyutl -verify -rawin` accepts the signature.
fn openssl_verifies(pem: &Path, data: &Path, sig: &Path) -> bool {
    std::process::Command::new("openssl")
        .args(["pkeyutl", "-verify", "-rawin", "-pubin", "-inkey"])
        .arg(pem)
        .arg("-in")
        .arg(data)
        .arg("-sigfile")
        .arg(sig)
        .output()
        .unwrap()
        .status
        .success()
}

/// Extracts the members of a bundle into `dir`.
fn untar(bundle: &[u8], dir: &Path) {
    let mut t = tar::Archive::new(flate2::read::GzDecoder::new(bundle));
    t.unpack(dir).unwrap();
}

#[tokio::test]
async fn watched_directory_trees_and_files_become_deltas_openssl_verifies_packs() {
    let watch = tempfile::tempdir().unwrap();
    let w = watch.path().to_path_buf();
    let s = start_with(|c| {
        c.packs.workers = 1;
        c.watch = Some(w.clone());
        c.watch_interval = Duration::from_millis(150);
    })
    .await;
    let trees = tempfile::tempdir().unwrap();
    for i in 0..2 {
        write_version(&trees.path().join(version(i)), i);
        copy_tree(
            &trees.path().join(version(i)),
            &watch.path().join("tree-app/main").join(version(i)),
        );
    }
    // A single-file package: a firmware image changing a little.
    std::fs::create_dir_all(watch.path().join("fw/main")).unwrap();
    let mut image = std::fs::read("/usr/bin/grep").unwrap();
    std::fs::write(watch.path().join("fw/main/2.0.0.bin"), &image).unwrap();
    image[5000..5100].fill(7);
    std::fs::write(watch.path().join("fw/main/2.0.1.bin"), &image).unwrap();
    // A name that is no version is ignored.
    std::fs::write(watch.path().join("fw/main/README.txt"), b"notes").unwrap();
    std::fs::create_dir_all(watch.path().join("tree-app/main")).unwrap();

    wait_ready(&s, "tree-app", "1.0.1", 60).await;
    wait_ready(&s, "fw", "2.0.1", 60).await;
    let versions: Value = s
        .get("/api/v1/packages/fw/branches/main/versions")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        versions["versions"].as_array().unwrap().len(),
        2,
        "{versions}"
    );

    // The tree: no rules, so the newest version is offered (optional).
    let public = s.get("/api/v1/signing-key").await.text().await.unwrap();
    let key = PublicKey::from_pem(&public).unwrap();
    for (pkg, from, to) in [("tree-app", "1.0.0", "1.0.1"), ("fw", "2.0.0", "2.0.1")] {
        let r = post(
            &s,
            "/api/v1/update/confirm",
            json!({"Confirm": "Yes", "Action": "Update", "Strategy": "Optional",
                   "From": from, "Destination": to, "name": pkg, "type": "x"}),
        )
        .await;
        assert_eq!(r.status(), 200, "{pkg}");
        let bundle = r.bytes().await.unwrap();
        let work = tempfile::tempdir().unwrap();
        let file = work.path().join("data.tar.gz");
        std::fs::write(&file, &bundle).unwrap();
        let target = work.path().join("installed");
        if pkg == "fw" {
            std::fs::copy(watch.path().join("fw/main/2.0.0.bin"), &target).unwrap();
        } else {
            copy_tree(&trees.path().join(from), &target);
        }
        apply_bundle(&file, &target, &key, &ApplyOptions::default())
            .unwrap_or_else(|f| panic!("{pkg}: {}", f.error));
        let want = if pkg == "fw" {
            watch.path().join("fw/main/2.0.1.bin")
        } else {
            trees.path().join(to)
        };
        assert_eq!(
            ota_core::digest::digest_path(&target).unwrap(),
            ota_core::digest::digest_path(&want).unwrap(),
            "{pkg}"
        );
        // openssl, independently, accepts the pack's signature with the served key.
        let members = work.path().join("members");
        untar(&bundle, &members);
        std::fs::write(work.path().join("pub.pem"), &public).unwrap();
        let pem = work.path().join("pub.pem");
        let (pack, sig) = (members.join("pack_1.tar.gz"), members.join("pack_1_sig"));
        assert!(openssl_verifies(&pem, &pack, &sig));
        // A flipped byte anywhere in a pack is refused and changes nothing.
        let before = ota_core::digest::digest_path(&target).unwrap();
        let mut bytes = std::fs::read(&pack).unwrap();
        let at = bytes.len() / 2;
        bytes[at] ^= 1;
        std::fs::write(&pack, &bytes).unwrap();
        assert!(!openssl_verifies(&pem, &pack, &sig));
        assert_eq!(ota_core::digest::digest_path(&target).unwrap(), before);
    }
    s.stop().await;
}
