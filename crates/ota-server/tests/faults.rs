//! Faults over real HTTP: clients that vanish, racing uploads, several
//! servers sharing one database, and the PostgreSQL backend end to end.

mod common;
use common::*;
use serde_json::Value;
use std::time::Duration;
use tokio::io::AsyncWriteExt;

#[tokio::test]
async fn client_disconnect_mid_upload_leaves_nothing() {
    let s = start().await;
    let file = vec![1u8; 4 << 20];
    let c = content("app", "main", "1", &file);
    let boundary = "BOUNDARYxyz";
    let head = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"content\"\r\n\r\n{c}\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"f\"\r\n\r\n"
    );
    let total = head.len() + file.len() + boundary.len() + 8;
    let addr = s.base.trim_start_matches("http://").to_owned();
    let mut sock = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let req = format!(
        "PUT /update HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {}\r\nContent-Type: multipart/form-data; boundary={boundary}\r\nContent-Length: {total}\r\n\r\n",
        s.key
    );
    sock.write_all(req.as_bytes()).await.unwrap();
    sock.write_all(head.as_bytes()).await.unwrap();
    sock.write_all(&file[..3 << 20]).await.unwrap();
    sock.flush().await.unwrap();
    // The server has started writing the temporary file…
    assert!(
        eventually(|| s.tmp_count() == 1).await,
        "upload in progress"
    );
    drop(sock); // …and the client vanishes.
    assert!(
        eventually(|| s.tmp_count() == 0).await,
        "temporary file removed"
    );
    assert_eq!(s.blob_count(), 0);
    assert_eq!(
        s.get("/maxVersion?package=app&branch=main").await.status(),
        404
    );
    s.stop().await;
}

#[tokio::test]
async fn concurrent_identical_uploads_store_once() {
    let s = start().await;
    let file: Vec<u8> = (0..2_000_000u32).map(|i| (i % 253) as u8).collect();
    let c = content("app", "main", "1.0.0", &file);
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let (base, key, c, file) = (s.base.clone(), s.key.clone(), c.clone(), file.clone());
        tasks.push(tokio::spawn(async move {
            let form = reqwest::multipart::Form::new()
                .text("content", c)
                .part("file", reqwest::multipart::Part::bytes(file));
            client()
                .put(format!("{base}/update"))
                .bearer_auth(key)
                .multipart(form)
                .send()
                .await
                .unwrap()
                .status()
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 200);
    }
    assert_eq!(s.blob_count(), 1);
    assert_eq!(s.tmp_count(), 0);
    let j: Value = s
        .get("/api/v1/packages/app/branches/main/versions")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(j["versions"].as_array().unwrap().len(), 1);
    s.stop().await;
}

/// Two servers on one database: a publish on B reaches A's cached answer.
async fn shared_database(url: String) {
    let a = start_with(|c| {
        c.database_url = Some(url.clone());
        c.generation_poll = Duration::from_millis(100);
    })
    .await;
    // A server with a key of its own is refused: its packs would not
    // verify with the key devices were given.
    let other = tempfile::tempdir().unwrap();
    let mut config = ota_server::ServerConfig::new(other.path().join("data"));
    config.listen = "127.0.0.1:0".parse().unwrap();
    config.database_url = Some(url.clone());
    let refused = ota_server::Server::bind(config)
        .await
        .err()
        .expect("refused");
    assert!(
        refused.to_string().contains("signed with another key"),
        "{refused:#}"
    );
    let key = a.data().join("signing-key.pem");
    let b = start_with(|c| {
        c.database_url = Some(url.clone());
        c.packs.signing_key = Some(key);
    })
    .await;
    a.publish("app", "main", "1.0.0", b"v1").await;
    let j: Value = a
        .get("/maxVersion?package=app&branch=main")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(j["version"], "1.0.0"); // now cached on A
    b.publish("app", "main", "1.1.0", b"v2").await;
    let mut seen = String::new();
    for _ in 0..100 {
        let j: Value = a
            .get("/maxVersion?package=app&branch=main")
            .await
            .json()
            .await
            .unwrap();
        seen = j["version"].as_str().unwrap().to_owned();
        if seen == "1.1.0" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(seen, "1.1.0", "server A dropped its cached answer");
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn shared_sqlite_invalidates_other_servers() {
    let dir = tempfile::tempdir().unwrap();
    shared_database(ota_store::Catalogue::sqlite_url_for(dir.path())).await;
}

#[tokio::test]
async fn shared_postgres_invalidates_other_servers() {
    if let Some(url) = ota_store::testdb::fresh_postgres("shared_postgres")
        .await
        .unwrap()
    {
        shared_database(url).await;
    }
}

#[tokio::test]
async fn postgres_backend_end_to_end() {
    let Some(url) = ota_store::testdb::fresh_postgres("postgres_backend_end_to_end")
        .await
        .unwrap()
    else {
        return;
    };
    let s = start_with(|c| c.database_url = Some(url)).await;
    s.publish("app", "main", "1.9.9", b"a").await;
    s.publish("app", "main", "1.10.0", b"b").await;
    let j: Value = s
        .get("/maxVersion?package=app&branch=main")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(j["version"], "1.10.0");
    let r = s
        .put_update(&content("app", "main", "1.10.0", b"c"), b"c")
        .await;
    assert_eq!(r.status(), 409);
    assert_eq!(
        s.get(&format!("/otafiles/{}", sha(b"b")))
            .await
            .bytes()
            .await
            .unwrap(),
        &b"b"[..]
    );
    s.stop().await;
}

#[tokio::test]
async fn second_server_on_same_data_dir_is_refused() {
    let s = start().await;
    let mut config = ota_server::ServerConfig::new(s.data());
    config.listen = "127.0.0.1:0".parse().unwrap();
    let err = ota_server::Server::bind(config)
        .await
        .err()
        .expect("refused");
    assert!(
        format!("{err:#}").contains("in use by another ota server"),
        "{err:#}"
    );
    s.stop().await;
}
