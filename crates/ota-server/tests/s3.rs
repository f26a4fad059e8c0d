//! `ota serve` on an S3-compatible object store (Garage in CI): what one
//! instance publishes, another with an empty data directory on the same
//! PostgreSQL and bucket serves byte for byte, with ranges; a store that
//! goes down answers uploads 503 and records nothing.

mod common;

use common::{client, content, eventually, sha, start_with};
use ota_store::testdb::{fresh_postgres, fresh_s3};
use ota_store::BlobBackend;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A TCP proxy in front of the store that the test can cut, as if the
/// store went down.
struct Proxy {
    addr: SocketAddr,
    tasks: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>>,
}

impl Proxy {
    async fn start(target: SocketAddr) -> Proxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let tasks: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>> = Arc::default();
        let t = tasks.clone();
        let accept = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let conn = tokio::spawn(async move {
                    if let Ok(mut out) = tokio::net::TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut out).await;
                    }
                });
                t.lock().unwrap().push(conn);
            }
        });
        tasks.lock().unwrap().push(accept);
        Proxy { addr, tasks }
    }

    /// Closes the port and every connection through it.
    fn cut(&self) {
        for t in self.tasks.lock().unwrap().drain(..) {
            t.abort();
        }
    }
}

fn endpoint_addr(backend: &BlobBackend) -> SocketAddr {
    let BlobBackend::S3(c) = backend else {
        unreachable!()
    };
    let e = url::Url::parse(c.endpoint.as_deref().unwrap()).unwrap();
    format!("{}:{}", e.host_str().unwrap(), e.port().unwrap())
        .parse()
        .unwrap()
}

fn via(backend: &BlobBackend, addr: SocketAddr) -> BlobBackend {
    let BlobBackend::S3(c) = backend else {
        unreachable!()
    };
    let mut c = c.clone();
    c.endpoint = Some(format!("http://{addr}"));
    BlobBackend::S3(c)
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
}

#[tokio::test]
async fn another_instance_serves_what_one_published() {
    let Some(backend) = fresh_s3("serve on S3", "part_size=5MiB") else {
        return;
    };
    let Some(db) = fresh_postgres("serve on S3").await.unwrap() else {
        return;
    };
    let proxy = Proxy::start(endpoint_addr(&backend)).await;
    let (db1, b1) = (db.clone(), via(&backend, proxy.addr));
    let a = start_with(move |c| {
        c.database_url = Some(db1);
        c.blobs = b1;
    })
    .await;
    let file = pattern((7 << 20) + 333); // multipart: two parts
    a.publish("org.example.app", "stable", "1.0.0", &file).await;
    let hash = sha(&file);

    let (db2, b2, key) = (
        db.clone(),
        backend.clone(),
        a.data().join(ota_server::packs::signing_key::FILE_NAME),
    );
    let b = start_with(move |c| {
        c.database_url = Some(db2);
        c.blobs = b2;
        c.packs.signing_key = Some(key);
    })
    .await;
    assert_eq!(
        b.blob_count(),
        0,
        "the second instance starts with an empty cache"
    );

    let r = b
        .get("/maxVersion?package=org.example.app&branch=stable")
        .await;
    assert_eq!(r.status(), 200);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["sha256"], hash.as_str());
    let url = format!("{}/otafiles/{hash}", b.base);

    // A resumed download from the store, cache still cold: two ranges.
    let http = client();
    let half = file.len() / 2;
    let first = http
        .get(&url)
        .header("Range", format!("bytes=0-{}", half - 1))
        .send()
        .await
        .unwrap();
    assert_eq!(first.status(), 206);
    assert_eq!(
        first.headers()["content-range"],
        format!("bytes 0-{}/{}", half - 1, file.len()).as_str()
    );
    let mut got = first.bytes().await.unwrap().to_vec();
    let rest = http
        .get(&url)
        .header("Range", format!("bytes={half}-"))
        .header("If-Range", format!("\"{hash}\""))
        .send()
        .await
        .unwrap();
    assert_eq!(rest.status(), 206);
    assert_eq!(
        rest.headers()["content-range"],
        format!("bytes {half}-{}/{}", file.len() - 1, file.len()).as_str()
    );
    got.extend_from_slice(&rest.bytes().await.unwrap());
    assert!(got == file, "resumed download is byte-exact");

    let middle = http
        .get(&url)
        .header("Range", "bytes=1000-1999")
        .send()
        .await
        .unwrap();
    assert_eq!(middle.status(), 206);
    assert_eq!(middle.bytes().await.unwrap(), &file[1000..2000]);
    let past = http
        .get(&url)
        .header("Range", format!("bytes={}-", file.len()))
        .send()
        .await
        .unwrap();
    assert_eq!(past.status(), 416);
    assert_eq!(
        past.headers()["content-range"],
        format!("bytes */{}", file.len()).as_str()
    );
    let same = http
        .get(&url)
        .header("If-None-Match", format!("\"{hash}\""))
        .send()
        .await
        .unwrap();
    assert_eq!(same.status(), 304);
    let head = http.head(&url).send().await.unwrap();
    assert_eq!(head.status(), 200);
    assert_eq!(
        head.headers()["content-length"],
        file.len().to_string().as_str()
    );
    let unknown = b.get(&format!("/otafiles/{}", sha(b"nothing"))).await;
    assert_eq!(unknown.status(), 404);

    // The misses filled the cache in the background; then it serves from it.
    assert!(eventually(|| b.blob_count() == 1).await, "cache filled");
    let whole = http.get(&url).send().await.unwrap();
    assert_eq!(whole.status(), 200);
    assert!(whole.bytes().await.unwrap() == file);

    // The store goes down: an upload is refused with 503 in bounded time,
    // nothing is recorded, and the instance keeps serving what it has.
    proxy.cut();
    let started = Instant::now();
    let v2 = pattern(100_000);
    let r = a
        .put_update(&content("org.example.app", "stable", "1.0.1", &v2), &v2)
        .await;
    assert_eq!(r.status(), 503, "{}", r.text().await.unwrap());
    assert!(started.elapsed() < Duration::from_secs(60));
    let newest: serde_json::Value = a
        .get("/maxVersion?package=org.example.app&branch=stable")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(newest["version"], "1.0.0", "the catalogue is untouched");
    assert_eq!(a.tmp_count(), 0);
    assert_eq!(
        b.get(&format!("/otafiles/{}", sha(&v2))).await.status(),
        404
    );
    let a_cached = a.get(&format!("/otafiles/{hash}")).await;
    assert_eq!(a_cached.status(), 200, "cached blobs still served");
    b.stop().await;
    a.stop().await;
}

#[tokio::test]
async fn presigned_redirects_and_start_up_errors() {
    let Some(backend) = fresh_s3("presigned downloads", "") else {
        return;
    };
    let b1 = backend.clone();
    let a = start_with(move |c| c.blobs = b1).await;
    let file = pattern(300_000);
    a.publish("org.example.app", "main", "2.0.0", &file).await;
    let dir = a.stop_keeping_data().await;

    // The same data directory, now redirecting downloads to the store.
    let b2 = backend.clone();
    let a = common::start_in(dir, move |c| {
        c.blobs = b2;
        c.blobs_presign = Some(Duration::from_secs(60));
    })
    .await;
    let no_follow = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let url = format!("{}/otafiles/{}", a.base, sha(&file));
    let r = no_follow.get(&url).send().await.unwrap();
    assert_eq!(r.status(), 302);
    let location = r.headers()["location"].to_str().unwrap().to_owned();
    assert!(location.contains("X-Amz-Signature="), "{location}");
    let direct = client().get(&location).send().await.unwrap();
    assert_eq!(direct.status(), 200);
    assert!(
        direct.bytes().await.unwrap() == file,
        "the presigned URL serves the blob"
    );
    a.stop().await;

    // A store nobody answers at: start-up fails in bounded time, naming it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    let mut config = ota_server::ServerConfig::new(dir.path().join("data"));
    config.listen = "127.0.0.1:0".parse().unwrap();
    config.blobs = BlobBackend::parse(&format!(
        "s3://ota-test?endpoint=http://127.0.0.1:{port}&region=garage"
    ))
    .unwrap();
    let started = Instant::now();
    let err = match ota_server::Server::bind(config).await {
        Ok(_) => panic!("started on a store that is down"),
        Err(e) => format!("{e:#}"),
    };
    assert!(started.elapsed() < Duration::from_secs(60));
    assert!(
        err.contains("blob store") && err.contains(&port.to_string()),
        "{err}"
    );

    // Presigning without an object store is refused at start.
    let mut config = ota_server::ServerConfig::new(dir.path().join("data2"));
    config.listen = "127.0.0.1:0".parse().unwrap();
    config.blobs_presign = Some(Duration::from_secs(60));
    let err = match ota_server::Server::bind(config).await {
        Ok(_) => panic!("presign on local blobs"),
        Err(e) => format!("{e:#}"),
    };
    assert!(err.contains("--blobs-presign"), "{err}");
}
