//! Several servers on one PostgreSQL: writes and jobs announced by
//! notifications reach the others at once (their polling is set far too
//! slow to explain it), `/readyz` follows the database, and `/metrics`
//! counts what was served.

mod common;

use common::start_with;
use serde_json::Value;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpStream};

async fn max_version(base: &str) -> String {
    let j: Value = reqwest::get(format!("{base}/maxVersion?package=app&branch=main"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    j["version"].as_str().unwrap_or_default().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_servers_publish_and_jobs_arrive_by_notification() {
    let Some(url) = ota_store::testdb::fresh_postgres("instances")
        .await
        .unwrap()
    else {
        return;
    };
    // Polling every 10 minutes: only a notification can explain a prompt
    // change. A builds packs; B builds none.
    let a = start_with(|c| {
        c.database_url = Some(url.clone());
        c.generation_poll = Duration::from_secs(600);
        c.packs.workers = 1;
        c.packs.poll = Duration::from_secs(600);
    })
    .await;
    let key = a.data().join("signing-key.pem");
    let b = start_with(|c| {
        c.database_url = Some(url.clone());
        c.generation_poll = Duration::from_secs(600);
        c.packs.signing_key = Some(key);
    })
    .await;
    // The listener drops caches when it starts; let it be listening.
    tokio::time::sleep(Duration::from_millis(300)).await;
    b.publish("app", "main", "1.0.0", &vec![1u8; 50_000]).await;
    assert_eq!(max_version(&a.base).await, "1.0.0");
    let mut latencies = Vec::new();
    let mut previous = "1.0.0";
    for (i, v) in ["1.1.0", "1.2.0", "1.3.0"].iter().enumerate() {
        // A holds the previous answer in its cache.
        assert_eq!(max_version(&a.base).await, previous);
        previous = v;
        let started = Instant::now();
        b.publish("app", "main", v, &vec![i as u8 + 2; 50_000])
            .await;
        let published = started.elapsed();
        loop {
            if max_version(&a.base).await == *v {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "A still answers the old version 5 s after B published {v}"
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        latencies.push(started.elapsed().saturating_sub(published));
    }
    eprintln!("publish on B to visible on A, after B's answer: {latencies:?}");
    // B's publishes queued pack jobs; A, polling for jobs every 10
    // minutes, was woken and took them at once. (Each server keeps its
    // blobs in its own data directory here, so A cannot read B's files:
    // the jobs fail, which is enough to show they were claimed.)
    let started = Instant::now();
    loop {
        let j: Value = reqwest::Client::new()
            .get(format!("{}/api/v1/jobs", a.base))
            .bearer_auth(&a.key)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let jobs = j["jobs"].as_array().unwrap();
        if jobs.len() == 4 && jobs.iter().all(|j| j["attempts"].as_i64() >= Some(1)) {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "jobs not claimed by A: {j}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    a.stop().await;
    b.stop().await;
}

/// A TCP relay to the database that can be cut and restored.
struct Relay {
    addr: String,
    up: Arc<AtomicBool>,
}

async fn relay(target: String) -> Relay {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let up = Arc::new(AtomicBool::new(true));
    let flag = up.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut client, _)) = listener.accept().await else {
                return;
            };
            let flag = flag.clone();
            let target = target.clone();
            tokio::spawn(async move {
                if !flag.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(mut server) = TcpStream::connect(&target).await else {
                    return;
                };
                let copy = tokio::io::copy_bidirectional(&mut client, &mut server);
                let cut = async {
                    while flag.load(Ordering::SeqCst) {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                };
                tokio::select! { _ = copy => {}, _ = cut => {} }
            });
        }
    });
    Relay { addr, up }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_follows_the_database() {
    let Some(url) = ota_store::testdb::fresh_postgres("readyz").await.unwrap() else {
        return;
    };
    let parsed = url::Url::parse(&url).unwrap();
    let target = format!(
        "{}:{}",
        parsed.host_str().unwrap(),
        parsed.port().unwrap_or(5432)
    );
    let r = relay(target).await;
    let mut through = parsed.clone();
    let (host, port) = r.addr.split_once(':').unwrap();
    through.set_host(Some(host)).unwrap();
    through.set_port(Some(port.parse().unwrap())).unwrap();
    let s = start_with(|c| c.database_url = Some(through.to_string())).await;
    let ready = || async {
        let r = reqwest::get(format!("{}/readyz", s.base)).await.unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    };
    let (status, body) = ready().await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains("database: ok") && body.contains("blob store: ok"),
        "{body}"
    );
    r.up.store(false, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = Instant::now();
    let (status, body) = ready().await;
    assert_eq!(status, 503, "{body}");
    assert!(!body.contains("database: ok"), "{body}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "a bounded check"
    );
    // Still alive.
    let h = reqwest::get(format!("{}/healthz", s.base)).await.unwrap();
    assert_eq!(h.status(), 200);
    r.up.store(true, Ordering::SeqCst);
    let mut back = false;
    for _ in 0..100 {
        if ready().await.0 == 200 {
            back = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(back, "ready again once the database is back");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_requests_by_route_and_status() {
    let s = start_with(|_| {}).await;
    s.publish("app", "main", "1.0.0", b"payload").await;
    for _ in 0..3 {
        assert_eq!(max_version(&s.base).await, "1.0.0");
    }
    let missing = reqwest::get(format!("{}/no/such/{}", s.base, "x".repeat(10)))
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    let r = reqwest::get(format!("{}/metrics", s.base)).await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain; version=0.0.4"));
    let text = r.text().await.unwrap();
    for line in [
        "ota_http_requests_total{method=\"GET\",route=\"/maxVersion\",status=\"200\"} 3",
        "ota_http_requests_total{method=\"GET\",route=\"unmatched\",status=\"404\"} 1",
        "ota_http_request_duration_seconds_count{method=\"GET\",route=\"/maxVersion\"} 3",
        "ota_uploads_total{result=\"stored\"} 1",
        "ota_cache_lookups_total{result=\"hit\"}",
    ] {
        assert!(text.contains(line), "missing {line} in\n{text}");
    }
    // Distinct URLs share their route's series: no label per URL.
    assert!(!text.contains("xxxxxxxxxx"), "{text}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn downloads_are_counted_per_day_and_stored_at_shutdown() {
    let s = start_with(|_| {}).await;
    s.publish("app", "main", "1.0.0", &[7u8; 1000]).await;
    let j: Value = reqwest::get(format!("{}/maxVersion?package=app&branch=main", s.base))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let url = j["remote"].as_str().unwrap().to_owned();
    let client = reqwest::Client::new();
    // Two downloads started, and one resumption that is not a new one.
    for range in [None, Some("bytes=0-99"), Some("bytes=100-")] {
        let mut r = client.get(&url);
        if let Some(range) = range {
            r = r.header("Range", range);
        }
        assert!(r.send().await.unwrap().status().is_success());
    }
    let db = s.database_url.clone();
    let _dir = s.stop_keeping_data().await;
    let cat = ota_store::Catalogue::open(&db).await.unwrap();
    let counts = cat.download_counts_per_day(0).await.unwrap();
    assert_eq!(counts.len(), 1, "{counts:?}");
    assert_eq!((counts[0].result.as_str(), counts[0].count), ("package", 2));
}
