//! A server and devices for the agent's tests: `ota serve` with pack
//! workers, an admin key, the signing key's public half, packages built
//! as real tar.gz trees of real binaries, agent configs, and runs of
//! `ota agent` with their JSON logs.

use super::*;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

pub struct Fleet {
    pub dir: tempfile::TempDir,
    pub serve: Option<Serve>,
    pub base: String,
    pub key: String,
    pub data: PathBuf,
    pub pem: PathBuf,
    pub extra: Vec<String>,
}

/// A tree of real binaries; `bump` changes a few bytes of each and a file.
pub fn tree(dir: &Path, bins: &[&str], bump: u8) {
    std::fs::create_dir_all(dir.join("bin")).unwrap();
    for b in bins {
        let mut data = std::fs::read(format!("/usr/bin/{b}")).unwrap();
        for k in 0..bump as usize {
            let at = 4096 + k * 997 % (data.len() - 4096);
            data[at] = data[at].wrapping_add(bump);
        }
        std::fs::write(dir.join("bin").join(b), data).unwrap();
    }
    std::fs::write(dir.join("VERSION"), format!("{bump}\n")).unwrap();
}

/// `tar czf OUT -C DIR .` (GNU tar).
pub fn tar_gz(dir: &Path, out: &Path) {
    let st = std::process::Command::new("tar")
        .arg("czf")
        .arg(out)
        .arg("-C")
        .arg(dir)
        .arg(".")
        .status()
        .unwrap();
    assert!(st.success());
}

pub fn digest(p: &Path) -> String {
    let out = ota(&["digest", p.to_str().unwrap()]);
    if !out.status.success() {
        return format!("(none: {})", text(&out).trim());
    }
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

impl Fleet {
    /// `ota serve` on a fresh data directory; `extra` flags added.
    pub fn start(extra: &[&str]) -> Fleet {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let mut f = Fleet {
            dir,
            serve: None,
            base: String::new(),
            key: String::new(),
            data,
            pem: PathBuf::new(),
            extra: extra.iter().map(|s| s.to_string()).collect(),
        };
        f.restart();
        let key = text(&ota(&[
            "keys",
            "create",
            "ci",
            "--scope",
            "admin",
            "--data",
            f.data.to_str().unwrap(),
        ]));
        f.key = key.lines().next().unwrap().trim().to_owned();
        f.pem = f.dir.path().join("server.pem");
        let out = ota(&["keys", "signing-public", "--data", f.data.to_str().unwrap()]);
        assert!(out.status.success(), "{}", text(&out));
        std::fs::write(&f.pem, &out.stdout).unwrap();
        f
    }

    /// Starts (again) the server on the same data directory.
    pub fn restart(&mut self) {
        self.serve = None;
        let d = self.data.to_str().unwrap().to_owned();
        let mut args: Vec<String> = [
            "--listen",
            "127.0.0.1:0",
            "--data",
            &d,
            "--pack-workers",
            "1",
            "--pack-level",
            "3",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.extend(self.extra.iter().cloned());
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        let s = serve_with(&a, &[], Stdio::null());
        self.base = s.base.clone();
        self.serve = Some(s);
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// Publishes FILE as PACKAGE VERSION with extra content.json keys.
    pub fn publish(&self, package: &str, version: &str, file: &Path, extra: Value) {
        let mut content = json!({"package": package, "version": version});
        for (k, v) in extra.as_object().into_iter().flatten() {
            content[k] = v.clone();
        }
        let cpath = self.path(&format!("content-{package}-{version}.json"));
        std::fs::write(&cpath, content.to_string()).unwrap();
        let out = ota(&[
            "publish",
            "--server",
            &self.base,
            "--key",
            &self.key,
            "--content",
            cpath.to_str().unwrap(),
            file.to_str().unwrap(),
        ]);
        assert!(
            out.status.success(),
            "publish {package} {version}: {}",
            text(&out)
        );
    }

    /// Builds version `bump` of a tree package, publishes it as a tar.gz;
    /// returns the tree.
    pub fn publish_tree(
        &self,
        package: &str,
        version: &str,
        bins: &[&str],
        bump: u8,
        extra: Value,
    ) -> PathBuf {
        let t = self.path(&format!("trees/{package}-{version}"));
        tree(&t, bins, bump);
        let archive = self.path(&format!("{package}-{version}.tar.gz"));
        tar_gz(&t, &archive);
        self.publish(package, version, &archive, extra);
        t
    }

    /// Waits until a device at `from` is offered `to` by the bundle protocol.
    pub async fn wait_offer(&self, package: &str, from: &str, to: &str) {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let r: Value = reqwest::Client::new()
                .post(format!("{}/api/v1/update/request", self.base))
                .json(
                    &json!({"Request": "Yes", "name": package, "version": from, "type": "default"}),
                )
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap_or(Value::Null);
            if r["Destination"] == to {
                return;
            }
            if Instant::now() > deadline {
                let jobs = text(&ota(&["jobs", "--server", &self.base, "--key", &self.key]));
                let path = format!("/api/v1/packages/{package}/branches/main/deltas");
                let map = self.get(&path).await;
                panic!("{package} {from} -> {to} not offered: {r}\n{jobs}\n{map}");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Registers a device; returns its token.
    pub fn add_device(&self, name: &str) -> String {
        let out = ota(&[
            "devices", "add", name, "--server", &self.base, "--key", &self.key,
        ]);
        assert!(out.status.success(), "{}", text(&out));
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// Writes an agent config; returns its path.
    pub fn config(&self, name: &str, body: Value) -> PathBuf {
        let p = self.path(&format!("{name}.json"));
        std::fs::write(&p, serde_json::to_string_pretty(&body).unwrap()).unwrap();
        p
    }

    /// One `ota agent --once` run; returns (success, JSON log lines).
    pub fn agent_once(&self, config: &Path, state: &Path) -> (bool, String) {
        let out = std::process::Command::new(OTA)
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
            .output()
            .unwrap();
        (out.status.success(), text(&out))
    }

    /// GET a JSON API path with the admin key.
    pub async fn get(&self, path: &str) -> Value {
        reqwest::Client::new()
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.key)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }
}

/// A package entry of an agent config.
pub fn entry(package: &str, version: &str, local: &Path, remote: &str) -> Value {
    json!({"package": package, "version": version, "local": local, "remote": remote})
}

/// Reads a package's version from an agent config.
pub fn config_version(config: &Path, package: &str) -> String {
    let v: Value = serde_json::from_slice(&std::fs::read(config).unwrap()).unwrap();
    v["package"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["package"] == package)
        .map(|p| p["version"].as_str().unwrap().to_owned())
        .unwrap()
}

/// `cp -a FROM TO`.
pub fn cp(from: &Path, to: &Path) {
    std::fs::create_dir_all(to.parent().unwrap()).unwrap();
    assert!(std::process::Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .unwrap()
        .success());
}
