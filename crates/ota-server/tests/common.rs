//! A real server on a free loopback port with its own data directory.
#![allow(dead_code)]

use ota_server::{Server, ServerConfig};
use reqwest::multipart::{Form, Part};
use sha2::{Digest, Sha256};
use std::time::Duration;

pub struct TestServer {
    pub base: String,
    pub key: String,
    pub dir: tempfile::TempDir,
    pub database_url: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

pub fn sha(data: &[u8]) -> String {
    hex(&Sha256::digest(data))
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

pub async fn start() -> TestServer {
    start_with(|_| {}).await
}

pub async fn start_with(tweak: impl FnOnce(&mut ServerConfig)) -> TestServer {
    start_in(tempfile::tempdir().unwrap(), tweak).await
}

/// Starts a server on the data directory of an earlier one (see [`TestServer::stop_keeping_data`]).
pub async fn start_in(dir: tempfile::TempDir, tweak: impl FnOnce(&mut ServerConfig)) -> TestServer {
    let mut config = ServerConfig::new(dir.path().join("data"));
    config.listen = "127.0.0.1:0".parse().unwrap();
    // Pack jobs add blobs in the background: only the tests about them
    // turn them on, so the others count files deterministically.
    config.packs.workers = 0;
    config.packs.level = 3;
    tweak(&mut config);
    let database_url = config.database_url();
    let server = Server::bind(config).await.unwrap();
    let addr = server.local_addr().unwrap();
    let catalogue = ota_store::Catalogue::open(&database_url).await.unwrap();
    let admin = ota_core::scope::Scopes::admin();
    let key = match catalogue.create_key("test", &admin).await {
        Ok(k) => k,
        Err(_) => catalogue
            .create_key(&format!("test{}", rand_suffix()), &admin)
            .await
            .unwrap(),
    };
    catalogue.close().await;
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(server.run(async move {
        let _ = rx.await;
    }));
    TestServer {
        base: format!("http://{addr}"),
        key,
        dir,
        database_url,
        stop: Some(tx),
        task: Some(task),
    }
}

fn rand_suffix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64
}

impl TestServer {
    pub fn data(&self) -> std::path::PathBuf {
        self.dir.path().join("data")
    }

    pub fn blob_count(&self) -> usize {
        walk(&self.data().join("blobs"))
    }

    pub fn tmp_count(&self) -> usize {
        std::fs::read_dir(self.data().join("tmp")).unwrap().count()
    }

    /// Stops the server and hands back its directory, to start another on it.
    pub async fn stop_keeping_data(mut self) -> tempfile::TempDir {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            t.await.unwrap().unwrap();
        }
        self.dir
    }

    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            t.await.unwrap().unwrap();
        }
    }

    /// Creates another key with the given scopes.
    pub async fn key_with(&self, name: &str, scopes: &str) -> String {
        let cat = ota_store::Catalogue::open(&self.database_url)
            .await
            .unwrap();
        let key = cat
            .create_key(name, &scopes.parse().unwrap())
            .await
            .unwrap();
        cat.close().await;
        key
    }

    /// The address to connect raw sockets to.
    pub fn addr(&self) -> String {
        self.base.trim_start_matches("http://").to_owned()
    }

    /// PUT /update with a content.json text and file bytes.
    pub async fn put_update(&self, content: &str, file: &[u8]) -> reqwest::Response {
        self.put_update_as(Some(&self.key), content, file).await
    }

    pub async fn put_update_as(
        &self,
        key: Option<&str>,
        content: &str,
        file: &[u8],
    ) -> reqwest::Response {
        let form = Form::new()
            .part("content", Part::text(content.to_owned()))
            .part("file", Part::bytes(file.to_vec()).file_name("pkg.bin"));
        let mut req = client()
            .put(format!("{}/update", self.base))
            .multipart(form);
        if let Some(k) = key {
            req = req.bearer_auth(k);
        }
        req.send().await.unwrap()
    }

    /// Publishes `file` as package/branch/version and asserts 200.
    pub async fn publish(&self, package: &str, branch: &str, version: &str, file: &[u8]) {
        let r = self
            .put_update(&content(package, branch, version, file), file)
            .await;
        assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        client()
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap()
    }
}

pub fn content(package: &str, branch: &str, version: &str, file: &[u8]) -> String {
    format!(
        r#"{{"package":"{package}","branch":"{branch}","version":"{version}","sha256":"{}","description":"test"}}"#,
        sha(file)
    )
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap()
}

fn walk(p: &std::path::Path) -> usize {
    let mut n = 0;
    for e in std::fs::read_dir(p).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            n += walk(&e.path());
        } else {
            n += 1;
        }
    }
    n
}

/// Polls `cond` for up to 10 s.
pub async fn eventually(mut cond: impl FnMut() -> bool) -> bool {
    for _ in 0..200 {
        if cond() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}
