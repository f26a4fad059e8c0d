//! The storage suite, run against SQLite and (when `OTA_TEST_DATABASE_URL`
//! is set) a real PostgreSQL server.

use ota_core::scope::Scopes;
use ota_store::{recover, BlobStore, Catalogue, NewEntry, PublishOutcome, StoreError};

/// Runs `body` once per backend with a fresh catalogue URL.
macro_rules! both_backends {
    ($name:ident, $body:expr) => {
        mod $name {
            use super::*;
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                let dir = tempfile::tempdir().unwrap();
                let url = Catalogue::sqlite_url_for(dir.path());
                ($body)(url, dir.path().to_path_buf()).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                let dir = tempfile::tempdir().unwrap();
                if let Some(url) = ota_store::testdb::fresh_postgres(stringify!($name))
                    .await
                    .unwrap()
                {
                    ($body)(url, dir.path().to_path_buf()).await;
                }
            }
        }
    };
}

fn entry(package: &str, branch: &str, version: &str, sha: &str) -> NewEntry {
    NewEntry {
        package: package.into(),
        branch: branch.into(),
        version: version.into(),
        content: format!(
            r#"{{"package":"{package}","branch":"{branch}","version":"{version}","sha256":"{sha}"}}"#
        ),
        sha256: sha.into(),
        size: 5,
    }
}

const H1: &str = "1111111111111111111111111111111111111111111111111111111111111111";
const H2: &str = "2222222222222222222222222222222222222222222222222222222222222222";

both_backends!(
    publish_identical_and_conflict,
    |url: String, _dir| async move {
        let cat = Catalogue::open(&url).await.unwrap();
        let g0 = cat.generation().await.unwrap();
        let e = entry("app", "main", "1.0.0", H1);
        assert!(matches!(
            cat.publish(&e).await.unwrap(),
            PublishOutcome::Inserted(_)
        ));
        let g1 = cat.generation().await.unwrap();
        assert!(g1 > g0);
        // Same content with keys in another order is identical.
        let mut same = e.clone();
        same.content =
            format!(r#"{{"sha256":"{H1}","version":"1.0.0","branch":"main","package":"app"}}"#);
        assert!(matches!(
            cat.publish(&same).await.unwrap(),
            PublishOutcome::Identical(_)
        ));
        assert_eq!(
            cat.generation().await.unwrap(),
            g1,
            "no-op publish does not invalidate"
        );
        let other = entry("app", "main", "1.0.0", H2);
        match cat.publish(&other).await.unwrap() {
            PublishOutcome::Conflict(existing) => assert_eq!(existing.sha256, H1),
            o => panic!("expected conflict, got {o:?}"),
        }
        // Reopening (migrations already applied) keeps the data.
        cat.close().await;
        let cat = Catalogue::open(&url).await.unwrap();
        assert_eq!(
            cat.get("app", "main", "1.0.0")
                .await
                .unwrap()
                .unwrap()
                .sha256,
            H1
        );
    }
);

both_backends!(
    version_ordering_and_listing,
    |url: String, _dir| async move {
        let cat = Catalogue::open(&url).await.unwrap();
        for v in ["1.9.9", "1.10.0", "2.0.0-rc.1", "1.2"] {
            cat.publish(&entry("app", "main", v, H1)).await.unwrap();
        }
        cat.publish(&entry("app", "beta", "3.0.0", H2))
            .await
            .unwrap();
        cat.publish(&entry("zeta", "main", "1416913926", H2))
            .await
            .unwrap();
        cat.publish(&entry("zeta", "main", "1416912639", H2))
            .await
            .unwrap();
        let vs: Vec<_> = cat
            .versions("app", "main")
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.version)
            .collect();
        assert_eq!(vs, ["1.2", "1.9.9", "1.10.0", "2.0.0-rc.1"]);
        assert_eq!(
            cat.max_version("app", "main")
                .await
                .unwrap()
                .unwrap()
                .version,
            "2.0.0-rc.1"
        );
        assert_eq!(
            cat.max_version("zeta", "main")
                .await
                .unwrap()
                .unwrap()
                .version,
            "1416913926"
        );
        assert!(cat.max_version("app", "nope").await.unwrap().is_none());
        assert!(cat.get("app", "main", "9").await.unwrap().is_none());
        let pk = cat.packages().await.unwrap();
        assert_eq!(pk.len(), 2);
        assert_eq!(pk[0].name, "app");
        assert_eq!(pk[0].branches, ["beta", "main"]);
        assert_eq!(pk[0].versions, 5);
        assert_eq!(cat.references(H2).await.unwrap(), 3);
        assert_eq!(cat.all_hashes().await.unwrap().len(), 2);
        let g = cat.generation().await.unwrap();
        let gone = cat.delete("app", "main", "1.2").await.unwrap().unwrap();
        assert_eq!(gone.version, "1.2");
        assert!(cat.delete("app", "main", "1.2").await.unwrap().is_none());
        assert!(cat.generation().await.unwrap() > g);
    }
);

both_backends!(
    concurrent_publishes_make_one_row,
    |url: String, _dir| async move {
        let cat = Catalogue::open(&url).await.unwrap();
        let mut tasks = Vec::new();
        for _ in 0..16 {
            let cat = cat.clone();
            tasks.push(tokio::spawn(async move {
                cat.publish(&entry("app", "main", "1.0.0", H1)).await
            }));
        }
        let mut inserted = 0;
        for t in tasks {
            match t.await.unwrap().unwrap() {
                PublishOutcome::Inserted(_) => inserted += 1,
                PublishOutcome::Identical(_) => {}
                o => panic!("unexpected {o:?}"),
            }
        }
        assert_eq!(inserted, 1);
        assert_eq!(cat.versions("app", "main").await.unwrap().len(), 1);
    }
);

both_backends!(
    concurrent_open_migrates_once,
    |url: String, _dir| async move {
        let (a, b) = tokio::join!(Catalogue::open(&url), Catalogue::open(&url));
        a.unwrap();
        b.unwrap();
    }
);

both_backends!(api_keys, |url: String, _dir| async move {
    let cat = Catalogue::open(&url).await.unwrap();
    let scopes: Scopes = "publish:org.*".parse().unwrap();
    let token = cat.create_key("ci", &scopes).await.unwrap();
    assert!(matches!(
        cat.create_key("ci", &scopes).await,
        Err(StoreError::KeyExists(_))
    ));
    assert_eq!(cat.list_keys().await.unwrap()[0].last_used_at, None);
    let auth = cat.verify_key(&token).await.unwrap().unwrap();
    assert_eq!((auth.name.as_str(), &auth.scopes), ("ci", &scopes));
    let mut wrong = token.clone();
    let last = wrong.pop().unwrap();
    wrong.push(if last == '0' { '1' } else { '0' });
    assert_eq!(cat.verify_key(&wrong).await.unwrap(), None);
    assert_eq!(cat.verify_key("garbage").await.unwrap(), None);
    let keys = cat.list_keys().await.unwrap();
    assert_eq!(keys.len(), 1);
    assert!(
        token.contains(&keys[0].key_id),
        "the listed id is the token's public part"
    );
    assert_eq!(keys[0].scopes, "publish:org.*");
    assert!(keys[0].last_used_at.is_some(), "use is recorded");
    assert!(cat.revoke_key("ci").await.unwrap());
    assert!(!cat.revoke_key("ci").await.unwrap());
    assert_eq!(cat.verify_key(&token).await.unwrap(), None);
    assert!(cat.list_keys().await.unwrap()[0].revoked_at.is_some());
    // A revoked key's name can be taken again; the old key stays revoked.
    let again = cat.create_key("ci", &Scopes::admin()).await.unwrap();
    assert!(cat
        .verify_key(&again)
        .await
        .unwrap()
        .unwrap()
        .scopes
        .is_admin());
    assert_eq!(cat.verify_key(&token).await.unwrap(), None);
    let keys = cat.list_keys().await.unwrap();
    assert_eq!(keys.len(), 2);
    assert!(keys[0].revoked_at.is_some() && keys[1].revoked_at.is_none());
});

both_backends!(
    recovery_removes_orphans_only,
    |url: String, dir: std::path::PathBuf| async move {
        let cat = Catalogue::open(&url).await.unwrap();
        let blobs = BlobStore::open(&dir).unwrap();
        let kept = blobs.put_bytes(b"kept").await.unwrap();
        let orphan = blobs.put_bytes(b"orphan").await.unwrap();
        cat.publish(&entry("app", "main", "1", kept.hash.as_str()))
            .await
            .unwrap();
        std::mem::forget(blobs.begin().unwrap()); // a crashed upload's temp file
        assert_eq!(recover(&cat, &blobs).await.unwrap(), (1, 1));
        assert!(blobs.contains(&kept.hash).await.unwrap());
        assert!(!blobs.contains(&orphan.hash).await.unwrap());
    }
);

both_backends!(upgrade_from_schema_1, |url: String, _dir| async move {
    let old = Catalogue::open_at_schema(&url, 1).await.unwrap();
    let sha = "ab".repeat(32);
    let mut served = entry("app", "main", "1", &sha);
    served.content = format!(
        r#"{{"package":"app","branch":"main","version":"1","sha256":"{sha}","remote":"http://internal-ci.lan:9999/otafiles/{sha}"}}"#
    );
    let mut own = entry("app", "main", "2", &sha);
    own.content = format!(
        r#"{{"package":"app","branch":"main","version":"2","sha256":"{sha}","remote":"https://cdn.example.com/app-2.bin"}}"#
    );
    old.publish(&served).await.unwrap();
    old.publish(&own).await.unwrap();
    old.close().await;
    let cat = Catalogue::open(&url).await.unwrap();
    let v1: serde_json::Value =
        serde_json::from_str(&cat.get("app", "main", "1").await.unwrap().unwrap().content).unwrap();
    assert!(v1.get("remote").is_none(), "the frozen URL is gone: {v1}");
    assert_eq!(v1["version"], "1");
    let v2: serde_json::Value =
        serde_json::from_str(&cat.get("app", "main", "2").await.unwrap().unwrap().content).unwrap();
    assert_eq!(v2["remote"], "https://cdn.example.com/app-2.bin");
});

both_backends!(devices_reports_and_tokens, |url: String, _dir| async move {
    let cat = Catalogue::open(&url).await.unwrap();
    let token = cat.add_device("kiosk-7", "lobby").await.unwrap();
    assert!(matches!(
        cat.add_device("kiosk-7", "again").await,
        Err(StoreError::DeviceExists(_))
    ));
    assert!(cat.device_token_valid("kiosk-7", &token).await.unwrap());
    let other = cat.add_device("kiosk-8", "").await.unwrap();
    assert!(!cat.device_token_valid("kiosk-7", &other).await.unwrap());
    assert!(!cat.device_token_valid("kiosk-7", "ota_x").await.unwrap());
    assert!(!cat.device_token_valid("nobody", &token).await.unwrap());
    let d = cat.device("kiosk-7").await.unwrap().unwrap();
    assert_eq!((d.last_seen, d.installed.as_str()), (None, "{}"));
    for i in 0..(ota_store::REPORTS_KEPT + 5) {
        let report = format!(r#"{{"n":{i}}}"#);
        let failed = i % 2 == 1;
        let r = ota_store::NewReport {
            result: if failed { "failure" } else { "success" },
            error: failed.then_some("hash mismatch"),
            installed: r#"{"app":"1.2"}"#,
            report: &report,
        };
        assert!(cat.record_report("kiosk-7", &r).await.unwrap());
    }
    let none = ota_store::NewReport {
        result: "success",
        error: None,
        installed: "{}",
        report: "{}",
    };
    assert!(!cat.record_report("nobody", &none).await.unwrap());
    let d = cat.device("kiosk-7").await.unwrap().unwrap();
    assert_eq!(d.last_result.as_deref(), Some("success")); // the last one was even
    assert_eq!(d.last_error, None);
    assert_eq!(d.installed, r#"{"app":"1.2"}"#);
    let reports = cat.device_reports("kiosk-7", 1000).await.unwrap();
    assert_eq!(reports.len() as i64, ota_store::REPORTS_KEPT);
    assert_eq!(
        reports[0].report,
        format!(r#"{{"n":{}}}"#, ota_store::REPORTS_KEPT + 4)
    );
    assert_eq!(cat.devices().await.unwrap().len(), 2);
    assert!(cat.remove_device("kiosk-7").await.unwrap());
    assert!(!cat.remove_device("kiosk-7").await.unwrap());
    assert!(cat.device_reports("kiosk-7", 10).await.unwrap().is_empty());
    assert!(!cat.device_token_valid("kiosk-7", &token).await.unwrap());
});

#[tokio::test]
async fn unsupported_url_is_a_clear_error() {
    let err = Catalogue::open("mysql://x").await.unwrap_err();
    assert!(
        err.to_string().contains("unsupported database URL"),
        "{err}"
    );
}

fn delta(from: &str, to: &str, format: &str, sha: &str) -> ota_store::NewDelta {
    ota_store::NewDelta {
        package: "app".into(),
        branch: "main".into(),
        from_version: from.into(),
        to_version: to.into(),
        direction: "upgrade".into(),
        format: format.into(),
        level: Some(0),
        sha256: sha.into(),
        size: 42,
        target_digest: Some("d".repeat(64)),
        signature: None,
    }
}

both_backends!(
    deltas_are_found_by_source_and_target,
    |url: String, dir: std::path::PathBuf| async move {
        let cat = Catalogue::open(&url).await.unwrap();
        let blobs = BlobStore::open(&dir).unwrap();
        let pack = blobs.put_bytes(b"pack").await.unwrap();
        let sha = pack.hash.as_str();
        let g0 = cat.generation().await.unwrap();
        let a = cat
            .add_delta(&delta("1", "2", "otadiff1", sha))
            .await
            .unwrap();
        assert!(
            cat.generation().await.unwrap() > g0,
            "other servers learn of it"
        );
        let again = cat
            .add_delta(&delta("1", "2", "otadiff1", sha))
            .await
            .unwrap();
        assert_eq!(a, again, "recording twice keeps one row");
        cat.add_delta(&delta("1", "2", "bsdiff40", sha))
            .await
            .unwrap();
        cat.add_delta(&delta("2", "3", "otadiff1", sha))
            .await
            .unwrap();
        let found = cat.deltas_between("app", "main", "1", "2").await.unwrap();
        assert_eq!(found.len(), 2);
        assert_eq!(found[0].delta.format, "bsdiff40");
        assert!(cat
            .deltas_between("app", "main", "2", "1")
            .await
            .unwrap()
            .is_empty());
        assert_eq!(cat.deltas("app", "main").await.unwrap().len(), 3);
        // A delta's blob is referenced: start-up recovery keeps it.
        assert_eq!(cat.references(sha).await.unwrap(), 3);
        assert_eq!(recover(&cat, &blobs).await.unwrap(), (0, 0));
        assert!(blobs.contains(&pack.hash).await.unwrap());
    }
);

fn job(from: &str, to: &str) -> ota_store::NewJob {
    ota_store::NewJob {
        kind: "pack".into(),
        package: "app".into(),
        branch: "main".into(),
        from_version: from.into(),
        to_version: to.into(),
        level: Some(0),
    }
}

both_backends!(
    jobs_are_claimed_once_and_survive_a_lost_worker,
    |url: String, _dir| async move {
        use ota_store::JobState;
        use std::time::Duration;
        let cat = Catalogue::open(&url).await.unwrap();
        assert_eq!(
            cat.enqueue_jobs(&[job("1", "2"), job("2", "3")])
                .await
                .unwrap(),
            2
        );
        assert_eq!(
            cat.enqueue_jobs(&[job("1", "2")]).await.unwrap(),
            0,
            "not queued twice"
        );
        let lease = Duration::from_secs(600);
        let a = cat.claim_job("w1", lease).await.unwrap().unwrap();
        assert_eq!(
            (a.job.from_version.as_str(), a.state, a.attempts),
            ("1", JobState::Running, 1)
        );
        let b = cat.claim_job("w2", lease).await.unwrap().unwrap();
        assert_ne!(a.id, b.id);
        assert!(cat.claim_job("w3", lease).await.unwrap().is_none());
        // A failed attempt is retried after its backoff, not before.
        assert!(cat
            .fail_job(
                a.id,
                "w1",
                "diff failed: out of memory",
                Some(Duration::from_secs(3600))
            )
            .await
            .unwrap());
        assert!(cat.claim_job("w3", lease).await.unwrap().is_none());
        assert!(!cat.finish_job(a.id, "w1").await.unwrap(), "no longer held");
        // A worker that vanished (lease of 0 s has run out) loses its job.
        assert!(cat.heartbeat_job(b.id, "w2").await.unwrap());
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let stolen = cat.claim_job("w3", Duration::ZERO).await.unwrap().unwrap();
        assert_eq!((stolen.id, stolen.attempts), (b.id, 2));
        assert!(
            !cat.finish_job(b.id, "w2").await.unwrap(),
            "the old worker cannot finish it"
        );
        assert!(cat.finish_job(b.id, "w3").await.unwrap());
        let done = cat.jobs(Some(JobState::Done), 10).await.unwrap();
        assert_eq!(done.len(), 1);
        let queued = cat.jobs(Some(JobState::Queued), 10).await.unwrap();
        assert_eq!(
            queued[0].error.as_deref(),
            Some("diff failed: out of memory")
        );
        let all = cat.jobs(None, 10).await.unwrap();
        assert_eq!(all.len(), 2);
        assert!(
            !cat.retry_job(a.id).await.unwrap(),
            "only failed jobs are retried"
        );
    }
);

both_backends!(
    concurrent_claims_never_share_a_job,
    |url: String, _dir| async move {
        use std::time::Duration;
        let cat = Catalogue::open(&url).await.unwrap();
        let jobs: Vec<_> = (0..40)
            .map(|i| job(&i.to_string(), &(i + 1).to_string()))
            .collect();
        cat.enqueue_jobs(&jobs).await.unwrap();
        // Two "servers", each with its own pool, claiming as fast as they can.
        let other = Catalogue::open(&url).await.unwrap();
        let run = |c: Catalogue, name: &'static str| {
            tokio::spawn(async move {
                let mut mine = Vec::new();
                while let Some(j) = c.claim_job(name, Duration::from_secs(600)).await.unwrap() {
                    mine.push(j.id);
                    assert!(c.finish_job(j.id, name).await.unwrap());
                }
                mine
            })
        };
        let (a, b) = tokio::join!(run(cat.clone(), "a"), run(other, "b"));
        let (a, b) = (a.unwrap(), b.unwrap());
        let mut all: Vec<i64> = a.iter().chain(&b).copied().collect();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), 40, "every job ran");
        assert_eq!(a.len() + b.len(), 40, "none ran twice");
    }
);

both_backends!(
    strategies_are_one_shared_document,
    |url: String, _dir| async move {
        let cat = Catalogue::open(&url).await.unwrap();
        assert_eq!(cat.strategies().await.unwrap(), None);
        let g0 = cat.generation().await.unwrap();
        cat.set_strategies("[]", "ops").await.unwrap();
        cat.set_strategies(r#"[{"name":"app"}]"#, "ci")
            .await
            .unwrap();
        let s = cat.strategies().await.unwrap().unwrap();
        assert_eq!(
            (s.body.as_str(), s.updated_by.as_str()),
            (r#"[{"name":"app"}]"#, "ci")
        );
        assert!(
            cat.generation().await.unwrap() >= g0 + 2,
            "other servers learn of it"
        );
    }
);

both_backends!(
    two_servers_claiming_at_once_run_each_job_once,
    |url: String, _dir| async move {
        use std::time::Duration;
        // Two catalogues with their own pools: two servers on one database.
        let a = Catalogue::open(&url).await.unwrap();
        let b = Catalogue::open(&url).await.unwrap();
        let jobs: Vec<_> = (0..40)
            .map(|i| job(&format!("1.{i}"), &format!("1.{}", i + 1)))
            .collect();
        a.enqueue_jobs(&jobs).await.unwrap();
        let claim_all = |cat: Catalogue, worker: &'static str| {
            tokio::spawn(async move {
                let mut got = Vec::new();
                while let Some(j) = cat
                    .claim_job(worker, Duration::from_secs(600))
                    .await
                    .unwrap()
                {
                    got.push(j.id);
                    assert!(cat.finish_job(j.id, worker).await.unwrap());
                }
                got
            })
        };
        let handles = vec![
            claim_all(a.clone(), "a1"),
            claim_all(a.clone(), "a2"),
            claim_all(b.clone(), "b1"),
            claim_all(b.clone(), "b2"),
        ];
        let mut all = Vec::new();
        for h in handles {
            all.extend(h.await.unwrap());
        }
        all.sort();
        let n = all.len();
        all.dedup();
        assert_eq!((n, all.len()), (40, 40), "every job claimed exactly once");
    }
);

both_backends!(
    delta_map_membership_and_settings,
    |url: String, _dir| async move {
        use ota_store::MapAppend;
        let c = Catalogue::open(&url).await.unwrap();
        assert_eq!(
            c.map_append("p", "b", "1.0.0").await.unwrap(),
            MapAppend::Appended(0)
        );
        assert_eq!(
            c.map_append("p", "b", "1.2.0").await.unwrap(),
            MapAppend::Appended(1)
        );
        assert_eq!(
            c.map_append("p", "b", "1.1.0").await.unwrap(),
            MapAppend::NotNewer("1.2.0".into())
        );
        assert!(c.map_delete("p", "b", "1.0.0").await.unwrap());
        c.set_map_digest("p", "b", "1.2.0", "d1").await.unwrap();
        let m = c.map_versions("p", "b").await.unwrap();
        assert_eq!(
            m.iter()
                .map(|r| (
                    r.position,
                    r.version.as_str(),
                    r.deleted,
                    r.digest.as_deref()
                ))
                .collect::<Vec<_>>(),
            vec![(0, "1.0.0", true, None), (1, "1.2.0", false, Some("d1"))]
        );
        // The first value stored wins; an explicit set replaces it.
        assert_eq!(c.setting_or_insert("k", "one").await.unwrap(), "one");
        assert_eq!(c.setting_or_insert("k", "two").await.unwrap(), "one");
        c.set_setting("k", "three").await.unwrap();
        assert_eq!(c.setting_or_insert("k", "four").await.unwrap(), "three");
    }
);
