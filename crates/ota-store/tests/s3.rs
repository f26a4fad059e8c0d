//! The S3 backend against a real S3-compatible server (Garage in CI:
//! `.ci/start-garage.sh`; `OTA_TEST_S3_URL` and the AWS_* credentials).

use ota_core::Sha256Hex;
use ota_store::testdb::fresh_s3;
use ota_store::{
    recover, BlobBackend, BlobError, BlobStore, Catalogue, CommitError, NewEntry, S3Config,
};
use std::io::Write;
use std::time::{Duration, Instant};

fn data(len: usize, seed: u64) -> Vec<u8> {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut v = vec![0u8; len];
    rng.fill(&mut v[..]);
    v
}

fn open(backend: &BlobBackend) -> (tempfile::TempDir, BlobStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = BlobStore::open_with(&dir.path().join("data"), backend).unwrap();
    (dir, store)
}

fn config(backend: &BlobBackend) -> &S3Config {
    match backend {
        BlobBackend::S3(c) => c,
        BlobBackend::Local => unreachable!(),
    }
}

/// A raw client on the same bucket, to plant objects the facade would never
/// write.
fn raw(backend: &BlobBackend) -> object_store::aws::AmazonS3 {
    let c = config(backend);
    object_store::aws::AmazonS3Builder::from_env()
        .with_bucket_name(&c.bucket)
        .with_region(&c.region)
        .with_endpoint(c.endpoint.clone().unwrap())
        .with_allow_http(true)
        .with_virtual_hosted_style_request(false)
        .build()
        .unwrap()
}

fn key(backend: &BlobBackend, hash: &Sha256Hex) -> object_store::path::Path {
    let prefix = config(backend).prefix.clone().unwrap();
    object_store::path::Path::from(format!("{prefix}/blobs/{hash}"))
}

async fn read_all(store: &BlobStore, hash: &Sha256Hex, r: Option<std::ops::Range<u64>>) -> Vec<u8> {
    use futures_util::StreamExt;
    let mut s = store.read_remote(hash, r).await.unwrap();
    let mut out = Vec::new();
    while let Some(c) = s.next().await {
        out.extend_from_slice(&c.unwrap());
    }
    out
}

#[tokio::test]
async fn round_trip_small_and_multipart_through_an_empty_cache() {
    let Some(backend) = fresh_s3("round trip", "part_size=5MiB") else {
        return;
    };
    let (_a, writer) = open(&backend);
    let (_b, reader) = open(&backend); // another instance: empty cache
    for (len, seed) in [(0usize, 0u64), (1000, 1), ((12 << 20) + 12345, 2)] {
        let bytes = data(len, seed);
        let mut w = writer.begin().unwrap();
        w.write_all(&bytes).unwrap();
        let c = w.commit(&writer, None).await.unwrap();
        assert!(c.created, "{len} bytes: a new object");
        assert_eq!(c.size, len as u64);
        assert!(writer.contains(&c.hash).await.unwrap());
        assert_eq!(writer.tmp_count().unwrap(), 0);
        // Identical content again: already there, not uploaded again.
        let again = writer.put_bytes(&bytes).await.unwrap();
        assert!(!again.created);

        assert!(!reader.is_cached(&c.hash));
        let path = reader.ensure_local(&c.hash).await.unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), bytes, "{len} bytes fetched");
        assert_eq!(reader.tmp_count().unwrap(), 0);
        if len > 0 {
            assert_eq!(read_all(&reader, &c.hash, None).await, bytes);
        }
    }
}

#[tokio::test]
async fn ranged_reads() {
    let Some(backend) = fresh_s3("ranged reads", "") else {
        return;
    };
    let (_d, store) = open(&backend);
    let bytes = data(100_000, 3);
    let c = store.put_bytes(&bytes).await.unwrap();
    let h = &c.hash;
    assert_eq!(read_all(&store, h, Some(0..10)).await, &bytes[..10]);
    assert_eq!(
        read_all(&store, h, Some(5000..7000)).await,
        &bytes[5000..7000]
    );
    assert_eq!(
        read_all(&store, h, Some(99_990..100_000)).await,
        &bytes[99_990..]
    );
    // An end past the object: the rest (as HTTP ranges do).
    assert_eq!(
        read_all(&store, h, Some(99_000..200_000)).await,
        &bytes[99_000..]
    );
    // A start past the end: an error, not a hang or an empty success.
    let started = Instant::now();
    assert!(store.read_remote(h, Some(100_000..100_010)).await.is_err());
    assert!(started.elapsed() < Duration::from_secs(30));
    let missing = Sha256Hex::of_bytes(b"never stored");
    assert!(matches!(
        store.read_remote(&missing, Some(0..1)).await,
        Err(BlobError::NotFound)
    ));
    assert!(matches!(
        store.ensure_local(&missing).await,
        Err(BlobError::NotFound)
    ));
}

#[tokio::test]
async fn truncated_and_abandoned_uploads_store_nothing() {
    let Some(backend) = fresh_s3("truncated uploads", "part_size=5MiB") else {
        return;
    };
    let (_d, store) = open(&backend);
    // Writer dropped mid-way (client gone): no temp file, no object.
    let mut w = store.begin().unwrap();
    w.write_all(&data(1 << 20, 4)).unwrap();
    let hash = w.digest();
    drop(w);
    assert_eq!(store.tmp_count().unwrap(), 0);
    assert!(!store.contains(&hash).await.unwrap());

    // The temporary file loses bytes after hashing (wrong length): both a
    // single PUT and a multipart upload (aborted) refuse, and store nothing.
    for len in [1usize << 20, 13 << 20] {
        let mut w = store.begin().unwrap();
        w.write_all(&data(len, 5)).unwrap();
        let hash = w.digest();
        w.reopen().unwrap().set_len(len as u64 / 2).unwrap();
        let err = w.commit(&store, None).await.unwrap_err();
        assert!(matches!(err, CommitError::Io(_)), "{len}: {err}");
        assert!(!store.contains(&hash).await.unwrap(), "{len}: no object");
        assert!(!store.is_cached(&hash));
        assert_eq!(store.tmp_count().unwrap(), 0);
    }

    // A declared hash that the content does not have: nothing either.
    let mut w = store.begin().unwrap();
    w.write_all(b"content").unwrap();
    let wrong = Sha256Hex::of_bytes(b"other");
    assert!(matches!(
        w.commit(&store, Some(&wrong)).await,
        Err(CommitError::HashMismatch { .. })
    ));
    assert!(!store
        .contains(&Sha256Hex::of_bytes(b"content"))
        .await
        .unwrap());
}

#[tokio::test]
async fn a_corrupt_object_is_refused_and_not_cached() {
    let Some(backend) = fresh_s3("corrupt object", "") else {
        return;
    };
    use object_store::ObjectStoreExt;
    let (_d, store) = open(&backend);
    let claimed = Sha256Hex::of_bytes(b"the real content");
    raw(&backend)
        .put(
            &key(&backend, &claimed),
            b"tampered content".to_vec().into(),
        )
        .await
        .unwrap();
    let err = store.ensure_local(&claimed).await.unwrap_err();
    assert!(matches!(err, BlobError::Corrupt { .. }), "{err}");
    assert!(!store.is_cached(&claimed));
    assert_eq!(store.tmp_count().unwrap(), 0);
}

#[tokio::test]
async fn a_store_that_is_down_fails_fast_and_records_nothing() {
    // Credentials are needed to build the client; the store itself is a
    // port nothing listens on.
    if fresh_s3("store down", "").is_none() {
        return;
    }
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let backend = BlobBackend::parse(&format!(
        "s3://ota-test?endpoint=http://127.0.0.1:{port}&region=garage"
    ))
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = BlobStore::open_with(dir.path(), &backend).unwrap();
    let catalogue = Catalogue::open(&Catalogue::sqlite_url_for(dir.path()))
        .await
        .unwrap();

    let started = Instant::now();
    let err = store.put_bytes(b"package").await.unwrap_err();
    let took = started.elapsed();
    assert!(
        matches!(err, CommitError::Store(BlobError::Remote(_))),
        "{err}"
    );
    assert!(took < Duration::from_secs(30), "took {took:?}");
    assert!(
        err.to_string().contains("127.0.0.1"),
        "names the store: {err}"
    );
    assert_eq!(store.tmp_count().unwrap(), 0);
    assert!(store.list().unwrap().is_empty(), "nothing cached");
    assert!(catalogue.all_hashes().await.unwrap().is_empty());

    let h = Sha256Hex::of_bytes(b"package");
    assert!(matches!(
        store.ensure_local(&h).await,
        Err(BlobError::Remote(_))
    ));
    assert!(matches!(
        store.contains(&h).await,
        Err(BlobError::Remote(_))
    ));
    // Start-up cleanup reports the store, it does not pretend all is well.
    let err = recover(&catalogue, &store).await.unwrap_err();
    assert!(err.to_string().contains("object store"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(60));
}

#[tokio::test]
async fn recover_deletes_only_old_unreferenced_objects() {
    let Some(backend) = fresh_s3("recover grace", "") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let catalogue = Catalogue::open(&Catalogue::sqlite_url_for(dir.path()))
        .await
        .unwrap();
    let (_d, mut store) = open(&backend);
    assert_eq!(store.orphan_grace(), Some(Duration::from_secs(24 * 3600)));
    let kept = store.put_bytes(b"referenced").await.unwrap();
    let orphan = store
        .put_bytes(b"an upload whose row is not written yet")
        .await
        .unwrap();
    catalogue
        .publish(&NewEntry {
            package: "org.example.app".into(),
            branch: "main".into(),
            version: "1.0.0".into(),
            content: r#"{"package":"org.example.app","version":"1.0.0"}"#.into(),
            sha256: kept.hash.to_string(),
            size: kept.size,
        })
        .await
        .unwrap();
    std::mem::forget(store.begin().unwrap()); // a crashed upload's temp file

    // Young orphan, 24 h grace: the object stays (another instance may be
    // about to write its row); the local cache copy and temp file go.
    let (tmp, removed) = recover(&catalogue, &store).await.unwrap();
    assert_eq!((tmp, removed), (1, 1));
    assert!(
        store.contains(&orphan.hash).await.unwrap(),
        "young orphan kept"
    );
    assert!(!store.is_cached(&orphan.hash));
    assert!(store.contains(&kept.hash).await.unwrap());

    // Grace 0: now it is old enough; the referenced one stays.
    store.set_orphan_grace(Duration::ZERO);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (_, removed) = recover(&catalogue, &store).await.unwrap();
    assert_eq!(removed, 1);
    assert!(
        !store.contains(&orphan.hash).await.unwrap(),
        "old orphan deleted"
    );
    assert!(store.contains(&kept.hash).await.unwrap(), "referenced kept");
    assert!(store.is_cached(&kept.hash));
}
