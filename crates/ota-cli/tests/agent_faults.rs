//! The agent against a server that misbehaves, and an agent killed with
//! SIGKILL at random moments: faults injected by a proxy in front of a
//! real `ota serve`.
//!
//! `OTA_AGENT_KILLS` sets how many SIGKILLs the kill test makes (default
//! 25; `.ci/run` runs 100).

mod common;
use common::fleet::*;
use common::proxy::{Fault, Proxy};
use common::*;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// Real binaries, four times over, changed by `bump`: about 5 MB.
fn big_file(path: &Path, bump: u8) -> Vec<u8> {
    let mut data = Vec::new();
    for copy in 0..4u8 {
        for b in ["sed", "grep", "tar", "sort", "ls", "cp"] {
            let bin = std::fs::read(format!("/usr/bin/{b}")).unwrap();
            // Four different copies, not one repeated (a worst case for diffing).
            data.extend(bin.iter().map(|x| x.wrapping_add(copy * 37)));
        }
    }
    for k in 0..bump as usize * 7 {
        let at = 4096 + k * 7919 % (data.len() - 4096);
        data[at] = data[at].wrapping_add(bump);
    }
    std::fs::write(path, &data).unwrap();
    data
}

fn proxied_fleet() -> (Fleet, Proxy) {
    let proxy = Proxy::start();
    let f = Fleet::start(&["--public-url", &proxy.base]);
    proxy.set_upstream(&f.base);
    (f, proxy)
}

fn config_for(f: &Fleet, token: &str, packages: Vec<Value>) -> PathBuf {
    f.config(
        "agent",
        json!({"device": "d1", "public_key": f.pem, "device_token": token, "package": packages}),
    )
}

/// A 5 MB single-file package `tool` 1.0 on the server, and a device whose
/// `tool` is at 0.1 (a version the server never had: a full download).
fn tool_device(f: &Fleet, proxy: &Proxy, token: &str) -> (Vec<u8>, PathBuf, PathBuf) {
    let pkg = f.path("tool-1.bin");
    let data = big_file(&pkg, 1);
    f.publish("tool", "1.0", &pkg, json!({}));
    let local = f.path("dev/tool");
    std::fs::create_dir_all(local.parent().unwrap()).unwrap();
    std::fs::write(&local, b"old").unwrap();
    let config = config_for(f, token, vec![entry("tool", "0.1", &local, &proxy.base)]);
    (data, local, config)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_cuts_and_stalls_are_retried_and_resumed() {
    let (f, proxy) = proxied_fleet();
    let token = f.add_device("d1");
    let (data, local, config) = tool_device(&f, &proxy, &token);
    proxy.queue(&[
        Fault::Status(503),
        Fault::Status(500),
        Fault::CutAfter(1_000_000),
        Fault::StallAfter(1_500_000),
    ]);
    let (ok, log) = f.agent_once(&config, &f.path("state"));
    assert!(ok, "{log}");
    assert_eq!(std::fs::read(&local).unwrap(), data, "{log}");
    let reqs = proxy.downloads.lock().unwrap().clone();
    assert_eq!(reqs.len(), 5, "{reqs:?}");
    // After the cut and the stall, the agent asked for the rest only.
    let ranges: Vec<u64> = reqs
        .iter()
        .filter_map(|(_, r)| {
            r.as_deref()?
                .strip_prefix("bytes=")?
                .trim_end_matches('-')
                .parse()
                .ok()
        })
        .collect();
    assert_eq!(ranges.len(), 2, "{reqs:?}");
    assert!(
        ranges[0] > 900_000 && ranges[1] > ranges[0] + 1_000_000,
        "{ranges:?}"
    );
    let d = f.get("/api/v1/devices/d1").await;
    assert_eq!(d["last_result"], "success", "{d}");
    assert!(d["reports"][0]["report"]["bytes"].as_u64().unwrap() < data.len() as u64 + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attempts_are_bounded_then_reported_and_the_next_cycle_resumes() {
    let (f, proxy) = proxied_fleet();
    let token = f.add_device("d1");
    let (data, local, config) = tool_device(&f, &proxy, &token);
    // 8 attempts (the default), each cut: the first moves 1 MB, the rest fail.
    proxy.queue(&[Fault::CutAfter(1_000_000)]);
    proxy.queue(&[Fault::Status(503); 7]);
    let state = f.path("state");
    let (ok, log) = f.agent_once(&config, &state);
    assert!(ok, "{log}");
    assert!(log.contains("giving up after 8 attempts"), "{log}");
    assert_eq!(std::fs::read(&local).unwrap(), b"old");
    let d = f.get("/api/v1/devices/d1").await;
    assert_eq!(d["last_result"], "failure", "{d}");
    assert!(d["last_error"].as_str().unwrap().contains("503"), "{d}");
    // The next cycle continues from the partial file.
    let (ok, log) = f.agent_once(&config, &state);
    assert!(ok, "{log}");
    assert_eq!(std::fs::read(&local).unwrap(), data);
    let reqs = proxy.downloads.lock().unwrap().clone();
    let last = reqs.last().unwrap().1.clone().unwrap_or_default();
    let from: u64 = last
        .trim_start_matches("bytes=")
        .trim_end_matches('-')
        .parse()
        .unwrap();
    assert!(from > 900_000, "{reqs:?}");
}

fn partials(state: &Path) -> HashMap<String, u64> {
    std::fs::read_dir(state.join("downloads"))
        .map(|d| {
            d.flatten()
                .filter_map(|e| {
                    let n = e.file_name().into_string().ok()?;
                    let sha = n.strip_suffix(".part")?.rsplit('-').next()?.to_owned();
                    Some((sha, e.metadata().ok()?.len()))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// (sha from the URL, offset) of every first download attempt in a JSON log.
fn download_starts(log: &str) -> Vec<(String, u64)> {
    log.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["fields"]["message"] == "downloading" && v["fields"]["attempt"] == 1)
        .map(|v| {
            let url = v["fields"]["url"].as_str().unwrap_or("").to_owned();
            let sha = url.rsplit('/').next().unwrap_or("").to_owned();
            (sha, v["fields"]["offset"].as_u64().unwrap_or(0))
        })
        .collect()
}

fn spawn_agent(config: &Path, state: &Path, log: &Path) -> std::process::Child {
    Command::new(OTA)
        .args([
            "agent",
            "--once",
            "--retry-delay",
            "100ms",
            "--stall-timeout",
            "3s",
            "--config",
        ])
        .arg(config)
        .arg("--state")
        .arg(state)
        .env("OTA_LOG_FORMAT", "json")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_stopping_mid_download_and_a_reboot_resume_from_the_offset() {
    let (mut f, proxy) = proxied_fleet();
    let token = f.add_device("d1");
    let (data, local, config) = tool_device(&f, &proxy, &token);
    let state = f.path("state");
    proxy.rate.store(1_000_000, Ordering::Relaxed);
    // The server stops while the agent downloads, and comes back.
    let log = f.path("agent1.log");
    let mut agent = spawn_agent(&config, &state, &log);
    let wait_partial = |min: u64| {
        let deadline = Instant::now() + Duration::from_secs(30);
        while partials(&state).values().max().copied().unwrap_or(0) < min {
            assert!(Instant::now() < deadline, "no download progress");
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    wait_partial(500_000);
    f.serve = None; // SIGKILL
    proxy.cut_all();
    std::thread::sleep(Duration::from_millis(800));
    f.restart();
    proxy.set_upstream(&f.base);
    wait_partial(1_500_000);
    // Reboot: agent and server both die.
    agent.kill().unwrap();
    agent.wait().unwrap();
    f.serve = None;
    proxy.cut_all();
    let before = partials(&state);
    let have = *before.values().max().unwrap();
    assert_ne!(
        std::fs::read(&local).unwrap(),
        data,
        "nothing installed yet"
    );
    f.restart();
    proxy.set_upstream(&f.base);
    proxy.rate.store(0, Ordering::Relaxed);
    let log2 = f.path("agent2.log");
    let st = spawn_agent(&config, &state, &log2).wait().unwrap();
    let text2 = std::fs::read_to_string(&log2).unwrap();
    assert!(st.success(), "{text2}");
    assert_eq!(std::fs::read(&local).unwrap(), data);
    let starts = download_starts(&text2);
    assert_eq!(starts.len(), 1, "{text2}");
    assert_eq!(starts[0].1, have, "continued from the offset: {text2}");
    let log1 = std::fs::read_to_string(&log).unwrap();
    assert!(
        log1.contains("download attempt failed"),
        "the server stop was retried: {log1}"
    );
    let d = f.get("/api/v1/devices/d1").await;
    assert_eq!(d["last_result"], "success", "{d}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_keeps_the_partial_download_and_the_next_run_continues() {
    let (f, proxy) = proxied_fleet();
    let token = f.add_device("d1");
    let (data, local, config) = tool_device(&f, &proxy, &token);
    let state = f.path("state");
    proxy.rate.store(1_000_000, Ordering::Relaxed);
    let log = f.path("term.log");
    let mut agent = spawn_agent(&config, &state, &log);
    let deadline = Instant::now() + Duration::from_secs(30);
    while partials(&state).values().max().copied().unwrap_or(0) < 300_000 {
        assert!(Instant::now() < deadline, "no download progress");
        std::thread::sleep(Duration::from_millis(20));
    }
    let sent = Instant::now();
    assert!(Command::new("kill")
        .arg("-TERM")
        .arg(agent.id().to_string())
        .status()
        .unwrap()
        .success());
    let status = agent.wait().unwrap();
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(status.success(), "{text}");
    assert!(
        sent.elapsed() < Duration::from_secs(5),
        "stopped promptly: {text}"
    );
    assert!(
        text.contains("stopping after the step in progress"),
        "{text}"
    );
    assert_eq!(std::fs::read(&local).unwrap(), b"old");
    let kept = *partials(&state).values().max().unwrap();
    assert!(kept >= 300_000, "the partial download is kept");
    proxy.rate.store(0, Ordering::Relaxed);
    let log2 = f.path("term2.log");
    assert!(spawn_agent(&config, &state, &log2)
        .wait()
        .unwrap()
        .success());
    let text2 = std::fs::read_to_string(&log2).unwrap();
    assert_eq!(download_starts(&text2)[0].1, kept, "{text2}");
    assert_eq!(std::fs::read(&local).unwrap(), data);
    // An interrupted run is not a failure: nothing was reported but the success.
    let d = f.get("/api/v1/devices/d1").await;
    let results: Vec<_> = d["reports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["result"].clone())
        .collect();
    assert_eq!(results, [json!("success")], "{d}");
}

fn kills_wanted() -> usize {
    std::env::var("OTA_AGENT_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(25)
}

/// Sets a package's installed version in an agent config (a device reset).
fn set_config_version(config: &Path, package: &str, version: &str) {
    let mut v: Value = serde_json::from_slice(&std::fs::read(config).unwrap()).unwrap();
    for p in v["package"].as_array_mut().unwrap() {
        if p["package"] == package {
            p["version"] = json!(version);
        }
    }
    std::fs::write(config, v.to_string()).unwrap();
}

/// Each round: the tool file is reset to its factory state (a full 5 MB
/// download, rate-limited) and a new app version is published (a delta
/// bundle); the agent is started and SIGKILLed at a random moment until
/// one run completes both. After every kill, and after `ota agent
/// recover`, the invariants are checked.
// `try_wait` reaps the agent when it exits before the kill.
#[allow(clippy::zombie_processes)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_random_moments_leaves_old_or_new_and_resumes() {
    use rand::Rng;
    let (f, proxy) = proxied_fleet();
    let token = f.add_device("d1");
    let hooks = json!({"AfterUpdate": "sleep 0.2", "restore": "true"});
    let app_dir = f.path("dev/app");
    let tool = f.path("dev/tool");
    let t0 = f.publish_tree("app", "1", &["sed", "grep"], 0, hooks.clone());
    cp(&t0, &app_dir);
    let tool_file = f.path("tool-1.bin");
    let new_tool = big_file(&tool_file, 1);
    f.publish("tool", "1", &tool_file, hooks.clone());
    let config = config_for(
        &f,
        &token,
        vec![
            entry("app", "1", &app_dir, &proxy.base),
            entry("tool", "0", &tool, &proxy.base),
        ],
    );
    let state = f.path("state");
    proxy.rate.store(2_500_000, Ordering::Relaxed);
    let want = kills_wanted();
    let (mut kills, mut resumed) = (0, 0);
    let mut round = 1u8;
    let mut rng = rand::thread_rng();
    while kills < want {
        std::fs::write(&tool, b"factory").unwrap();
        set_config_version(&config, "tool", "0");
        let old_app = digest(&app_dir);
        let next = (round + 1).to_string();
        let t = f.publish_tree("app", &next, &["sed", "grep"], round * 5, hooks.clone());
        let new_app = digest(&t);
        f.wait_offer("app", &round.to_string(), &next).await;
        let mut runs = 0;
        loop {
            runs += 1;
            assert!(runs < 100, "round {round} never completed");
            let before = partials(&state);
            let log = f.path(&format!("kill-{kills}-{runs}.log"));
            let mut agent = spawn_agent(&config, &state, &log);
            let deadline = Instant::now() + Duration::from_millis(rng.gen_range(20..2000));
            let mut exited = None;
            while Instant::now() < deadline {
                if let Some(s) = agent.try_wait().unwrap() {
                    exited = Some(s);
                    break;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            if exited.is_none() {
                agent.kill().unwrap(); // SIGKILL
                agent.wait().unwrap();
                kills += 1;
            }
            let log_text = std::fs::read_to_string(&log).unwrap_or_default();
            // A partial download is continued, never restarted from zero.
            for (sha, offset) in download_starts(&log_text) {
                if let Some(had) = before.get(&sha).filter(|h| **h > 0) {
                    assert!(
                        offset >= *had,
                        "{sha} restarted at {offset} with {had} on disk:\n{log_text}"
                    );
                    resumed += 1;
                }
            }
            // Right after the kill: exactly the old or the new version.
            let app_now = digest(&app_dir);
            assert!(
                app_now == old_app || app_now == new_app,
                "app is a mix: {app_now}\n{log_text}"
            );
            let tool_now = std::fs::read(&tool).unwrap();
            assert!(
                tool_now == b"factory" || tool_now == new_tool,
                "tool is a mix\n{log_text}"
            );
            // After recovery, the config agrees with what is installed.
            let out = ota(&[
                "agent",
                "recover",
                "--config",
                config.to_str().unwrap(),
                "--state",
                state.to_str().unwrap(),
            ]);
            assert!(out.status.success(), "{}", text(&out));
            let app_v = config_version(&config, "app");
            let expect = if digest(&app_dir) == new_app {
                next.clone()
            } else {
                round.to_string()
            };
            assert_eq!(app_v, expect, "app config vs tree\n{log_text}");
            let tool_v = config_version(&config, "tool");
            let tool_is_new = std::fs::read(&tool).unwrap() == new_tool;
            assert_eq!(
                tool_v == "1",
                tool_is_new,
                "tool config {tool_v} vs file\n{log_text}"
            );
            if let Some(s) = exited {
                assert!(s.success(), "agent failed: {log_text}");
                if app_v == next && tool_v == "1" {
                    break;
                }
            }
        }
        round += 1;
    }
    eprintln!(
        "{kills} SIGKILLs over {} rounds; {resumed} downloads continued from a partial file",
        round - 1
    );
    assert!(resumed > 0, "no kill landed in a download");
    let mut names: Vec<_> = std::fs::read_dir(app_dir.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["app", "tool"],
        "nothing left beside the install locations"
    );
}
