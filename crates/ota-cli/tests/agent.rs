//! `ota agent` against a real `ota serve`, with real packages (tar.gz
//! trees of real binaries, single files): full and multi-hop delta
//! updates, a compulsory rollback, dependency order and refusal, hook
//! failures before and after the switch, tampered downloads and a wrong
//! key — and what the server's inventory and `ota agent status` say.

mod common;
use common::fleet::*;
use common::*;
use serde_json::{json, Value};
use std::path::Path;

const BINS: &[&str] = &["cat", "sed", "grep"];

fn agent_config(f: &Fleet, token: &str, packages: Vec<Value>) -> std::path::PathBuf {
    f.config(
        "agent",
        json!({"device": "kiosk-7", "description": "lobby screen", "x-site": "berlin",
               "public_key": f.pem, "device_token": token, "package": packages}),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_and_multi_hop_delta_updates_then_a_compulsory_rollback() {
    let f = Fleet::start(&[]);
    let token = f.add_device("kiosk-7");
    let v = ["1.0", "1.1", "1.2", "1.3"];
    let trees: Vec<_> = v
        .iter()
        .enumerate()
        .map(|(i, ver)| f.publish_tree("app", ver, BINS, i as u8 * 3, json!({})))
        .collect();
    // A single-file package whose installed version the server never had:
    // the bundle protocol does not know it, so the agent takes the full file.
    let tool = f.path("tool-2.0.bin");
    let mut bytes = std::fs::read("/usr/bin/sort").unwrap();
    bytes.extend_from_slice(b"2.0");
    std::fs::write(&tool, &bytes).unwrap();
    f.publish("tool", "2.0", &tool, json!({}));
    f.wait_offer("app", "1.0", "1.3").await;

    let local = f.path("device/opt/app");
    cp(&trees[0], &local);
    let tool_local = f.path("device/usr/bin/tool");
    std::fs::create_dir_all(tool_local.parent().unwrap()).unwrap();
    std::fs::write(&tool_local, b"old tool").unwrap();
    let config = agent_config(
        &f,
        &token,
        vec![
            {
                let mut e = entry("app", "1.0", &local, &f.base);
                e["x-owner"] = json!("ops");
                e
            },
            entry("tool", "0.9", &tool_local, &f.base),
        ],
    );
    let state = f.path("state");
    let (ok, log) = f.agent_once(&config, &state);
    assert!(ok, "{log}");
    assert_eq!(digest(&local), digest(&trees[3]), "{log}");
    assert_eq!(std::fs::read(&tool_local).unwrap(), bytes);
    assert_eq!(config_version(&config, "app"), "1.3");
    assert_eq!(config_version(&config, "tool"), "2.0");
    let c: Value = serde_json::from_slice(&std::fs::read(&config).unwrap()).unwrap();
    assert_eq!(c["x-site"], "berlin", "unknown keys are kept");
    assert_eq!(c["package"][0]["x-owner"], "ops");
    assert!(log.contains("app 1.0 -> 1.3: installed (delta"), "{log}");
    assert!(log.contains("tool 0.9 -> 2.0: installed (full"), "{log}");
    // Nothing beside the install locations but what was there.
    let names: Vec<_> = std::fs::read_dir(local.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names, ["app"]);

    // The inventory knows.
    let d = f.get("/api/v1/devices/kiosk-7").await;
    assert_eq!(d["installed"], json!({"app": "1.3", "tool": "2.0"}), "{d}");
    assert_eq!(d["last_result"], "success");
    let results: Vec<_> = d["reports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["report"]["method"].clone())
        .collect();
    assert!(
        results.contains(&json!("delta")) && results.contains(&json!("full")),
        "{d}"
    );
    let status = ota(&[
        "agent",
        "status",
        "--config",
        config.to_str().unwrap(),
        "--state",
        state.to_str().unwrap(),
    ]);
    let st = text(&status);
    assert!(
        status.status.success() && st.contains("app") && st.contains("1.3") && st.contains("idle"),
        "{st}"
    );
    let listed = text(&ota(&[
        "devices", "list", "--server", &f.base, "--key", &f.key,
    ]));
    assert!(
        listed.contains("kiosk-7") && listed.contains("app 1.3"),
        "{listed}"
    );

    // Up to date: a second cycle changes nothing.
    let (ok, log) = f.agent_once(&config, &state);
    assert!(ok && !log.contains("installed"), "{log}");

    // A compulsory rollback to 1.1.
    let rules = json!([{ "name": "app", "rollback": [{ "strategy": "compulsory",
        "condition": { "version": { "compare": "==", "value": "1.3" } }, "dest": "1.1" }] }]);
    let r = reqwest::Client::new()
        .put(format!("{}/api/v1/strategies", f.base))
        .bearer_auth(&f.key)
        .body(rules.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204, "{}", r.text().await.unwrap());
    let (ok, log) = f.agent_once(&config, &state);
    assert!(ok, "{log}");
    assert_eq!(digest(&local), digest(&trees[1]), "{log}");
    assert_eq!(config_version(&config, "app"), "1.1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dependencies_go_first_and_an_unmet_one_stops_its_set() {
    let f = Fleet::start(&[]);
    let token = f.add_device("kiosk-7");
    let order = f.path("order.log");
    let hook = |name: &str| json!({"BeforeUpdate": format!("echo {name} >> {}", order.display())});
    let lib1 = f.publish_tree("libfoo", "1.0", &["cat"], 0, json!({}));
    let app1 = f.publish_tree("app", "1.0", &["sed"], 0, json!({}));
    let lib2 = f.publish_tree("libfoo", "2.0", &["cat"], 2, hook("libfoo"));
    let mut extra = hook("app");
    extra["dependencies"] = json!({"libfoo": ">=2.0"});
    let app2 = f.publish_tree("app", "2.0", &["sed"], 2, extra);
    let other1 = f.publish_tree("zlib", "1.0", &["grep"], 0, json!({}));
    f.wait_offer("libfoo", "1.0", "2.0").await;
    f.wait_offer("app", "1.0", "2.0").await;
    let (lib, app, other) = (f.path("d/libfoo"), f.path("d/app"), f.path("d/zlib"));
    cp(&lib1, &lib);
    cp(&app1, &app);
    cp(&other1, &other);
    // app is listed first, but needs the new libfoo.
    let config = agent_config(
        &f,
        &token,
        vec![
            entry("app", "1.0", &app, &f.base),
            entry("libfoo", "1.0", &lib, &f.base),
            entry("zlib", "1.0", &other, &f.base),
        ],
    );
    let state = f.path("state");
    let (ok, log) = f.agent_once(&config, &state);
    assert!(ok, "{log}");
    assert_eq!(std::fs::read_to_string(&order).unwrap(), "libfoo\napp\n");
    assert_eq!(digest(&lib), digest(&lib2));
    assert_eq!(digest(&app), digest(&app2));

    // app 3.0 needs libfoo 3, which does not exist; zlib 2.0 is unrelated.
    let mut extra = json!({});
    extra["dependencies"] = json!({"libfoo": ">=3"});
    f.publish_tree("app", "3.0", &["sed"], 4, extra);
    let other2 = f.publish_tree("zlib", "2.0", &["grep"], 4, json!({}));
    f.wait_offer("app", "2.0", "3.0").await;
    f.wait_offer("zlib", "1.0", "2.0").await;
    let (ok, log) = f.agent_once(&config, &state);
    assert!(ok, "{log}");
    assert_eq!(
        digest(&app),
        digest(&app2),
        "nothing of the refused set: {log}"
    );
    assert_eq!(digest(&lib), digest(&lib2));
    assert_eq!(digest(&other), digest(&other2), "{log}");
    assert!(
        log.contains("needs libfoo >=3, but libfoo would be at 2.0"),
        "{log}"
    );
    let d = f.get("/api/v1/devices/kiosk-7").await;
    let refused = d["reports"].as_array().unwrap().iter().any(|r| {
        r["result"] == "failure"
            && r["report"]["package"] == "app"
            && r["report"]["error"]
                .as_str()
                .unwrap_or("")
                .contains("libfoo >=3")
    });
    assert!(refused, "{d}");
}

fn snapshot(p: &Path) -> String {
    digest(p)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hook_failures_before_and_after_the_switch() {
    let f = Fleet::start(&[]);
    let token = f.add_device("kiosk-7");
    let v1 = f.publish_tree("app", "1.0", BINS, 0, json!({}));
    f.publish_tree(
        "app",
        "1.1",
        BINS,
        1,
        json!({"BeforeUpdate": "echo not now >&2; exit 7"}),
    );
    f.wait_offer("app", "1.0", "1.1").await;
    let local = f.path("d/app");
    cp(&v1, &local);
    let config = agent_config(&f, &token, vec![entry("app", "1.0", &local, &f.base)]);
    let before = std::fs::read(&config).unwrap();
    let state = f.path("state");
    let (ok, log) = f.agent_once(&config, &state);
    assert!(ok, "{log}");
    assert!(
        log.contains("BeforeUpdate exited with exit status: 7: not now; nothing was changed"),
        "{log}"
    );
    assert_eq!(snapshot(&local), digest(&v1));
    assert_eq!(
        std::fs::read(&config).unwrap(),
        before,
        "the config is untouched"
    );

    // restore fails after the switch: the old version comes back.
    let marker = f.path("after-ran");
    f.publish_tree(
        "app",
        "1.2",
        BINS,
        2,
        json!({"restore": "test -d \"$OTA_PREVIOUS\" && exit 3", "AfterUpdate": format!("touch {}", marker.display())}),
    );
    f.wait_offer("app", "1.0", "1.2").await;
    let (ok, log) = f.agent_once(&config, &state);
    assert!(ok, "{log}");
    assert!(
        log.contains("restore exited with exit status: 3; app is back at 1.0"),
        "{log}"
    );
    assert_eq!(snapshot(&local), digest(&v1));
    assert!(
        !marker.exists(),
        "AfterUpdate does not run after a failed restore"
    );
    assert_eq!(config_version(&config, "app"), "1.0");
    // AfterUpdate fails: same.
    f.publish_tree("app", "1.3", BINS, 3, json!({"AfterUpdate": "exit 1"}));
    f.wait_offer("app", "1.0", "1.3").await;
    let (ok, log) = f.agent_once(&config, &state);
    assert!(ok, "{log}");
    assert!(log.contains("rolled-back: AfterUpdate exited"), "{log}");
    assert_eq!(snapshot(&local), digest(&v1));
    let d = f.get("/api/v1/devices/kiosk-7").await;
    assert_eq!(d["last_result"], "rolled-back", "{d}");
    assert!(
        d["last_error"]
            .as_str()
            .unwrap()
            .contains("AfterUpdate exited"),
        "{d}"
    );
    let names: Vec<_> = std::fs::read_dir(local.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names, ["app"], "no stage left behind");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampered_downloads_and_a_wrong_key_are_refused() {
    let f = Fleet::start(&[]);
    let token = f.add_device("kiosk-7");
    let file1 = f.path("tool-1");
    std::fs::write(&file1, std::fs::read("/usr/bin/cat").unwrap()).unwrap();
    f.publish("tool", "1.0", &file1, json!({}));
    let file2 = f.path("tool-2");
    let mut two = std::fs::read("/usr/bin/cat").unwrap();
    two.extend_from_slice(b"v2");
    std::fs::write(&file2, &two).unwrap();
    f.publish("tool", "2.0", &file2, json!({}));
    let local = f.path("d/tool");
    std::fs::create_dir_all(local.parent().unwrap()).unwrap();
    std::fs::write(&local, b"installed").unwrap();
    // Not on the delta map: a full download, which we corrupt on the server's disk.
    let sha = sha(&two);
    let blob = f.data.join("blobs").join(&sha[..2]).join(&sha);
    // One byte changed in place: truncating a file the server may have
    // mapped (its pack job reads it) would be a different test.
    let poke = |byte: u8| {
        use std::io::{Seek, SeekFrom, Write};
        let mut perm = std::fs::metadata(&blob).unwrap().permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut perm, 0o644);
        std::fs::set_permissions(&blob, perm).unwrap();
        let mut f = std::fs::OpenOptions::new().write(true).open(&blob).unwrap();
        f.seek(SeekFrom::Start(100)).unwrap();
        f.write_all(&[byte]).unwrap();
    };
    poke(two[100] ^ 0xff);
    let config = agent_config(&f, &token, vec![entry("tool", "0.1", &local, &f.base)]);
    let state = f.path("state");
    let (ok, log) = f.agent_once(&config, &state);
    assert!(ok, "{log}");
    assert!(log.contains("SHA-256"), "{log}");
    assert_eq!(std::fs::read(&local).unwrap(), b"installed");
    assert_eq!(config_version(&config, "tool"), "0.1");
    let d = f.get("/api/v1/devices/kiosk-7").await;
    assert_eq!(d["last_result"], "failure", "{d}");

    // The server's answers signed with another key: refused before any download.
    poke(two[100]);
    let other = f.path("other.pem");
    let st = std::process::Command::new("openssl")
        .args(["genpkey", "-algorithm", "ed25519", "-out"])
        .arg(f.path("other-key.pem"))
        .status()
        .unwrap();
    assert!(st.success());
    let st = std::process::Command::new("openssl")
        .args(["pkey", "-pubout", "-in"])
        .arg(f.path("other-key.pem"))
        .arg("-out")
        .arg(&other)
        .status()
        .unwrap();
    assert!(st.success());
    let mut c: Value = serde_json::from_slice(&std::fs::read(&config).unwrap()).unwrap();
    c["public_key"] = json!(other);
    std::fs::write(&config, c.to_string()).unwrap();
    let (ok, log) = f.agent_once(&config, &state);
    assert!(ok, "{log}");
    assert!(log.contains("signature does not verify"), "{log}");
    assert_eq!(std::fs::read(&local).unwrap(), b"installed");
    assert!(
        std::fs::read_dir(state.join("downloads"))
            .unwrap()
            .next()
            .is_none(),
        "nothing downloaded"
    );

    // The right key: installed.
    c["public_key"] = json!(f.pem);
    std::fs::write(&config, c.to_string()).unwrap();
    let (ok, log) = f.agent_once(&config, &state);
    assert!(ok, "{log}");
    assert_eq!(std::fs::read(&local).unwrap(), two, "{log}");
}
