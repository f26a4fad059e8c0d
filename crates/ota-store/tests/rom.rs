//! ROM builds and incrementals on SQLite and (when `OTA_TEST_DATABASE_URL`
//! is set) PostgreSQL: publishing, the lookups each client API makes,
//! conflicts, blob accounting and reports.

use ota_store::{
    recover, BlobStore, Catalogue, NewRomBuild, NewRomIncremental, RomDevice, RomPublish,
    INCREMENTAL_FORMAT,
};

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

fn hash(n: u8) -> String {
    format!("{n:02x}").repeat(32)
}

fn build(device: &str, channel: &str, inc: &str, ts: i64, sha: u8) -> NewRomBuild {
    NewRomBuild {
        device: RomDevice {
            codename: device.into(),
            name: format!("{device} phone"),
            oem: "Acme".into(),
        },
        channel: channel.into(),
        incremental: inc.into(),
        timestamp: ts,
        api_level: 19,
        version: "11.0".into(),
        romtype: channel.to_lowercase(),
        filename: format!("rom-{device}-{inc}.zip"),
        size: 1000 + u64::from(sha),
        md5: format!("{sha:02x}").repeat(16),
        sha256: hash(sha),
        changelog: format!("* build {inc}\n"),
        published: true,
    }
}

fn incremental(device: &str, from: &str, to: &str, sha: u8) -> NewRomIncremental {
    NewRomIncremental {
        device: device.into(),
        source_incremental: from.into(),
        target_incremental: to.into(),
        filename: format!("update-{from}-{to}.zip"),
        size: 100,
        md5: format!("{sha:02x}").repeat(16),
        sha256: hash(sha),
    }
}

async fn inserted(cat: &Catalogue, b: &NewRomBuild) {
    match cat.publish_rom_build(b).await.unwrap() {
        RomPublish::Inserted(stored) => assert_eq!(&stored.build, b),
        other => panic!("expected a new build, got {other:?}"),
    }
}

fn incs(list: &[ota_store::RomBuild]) -> Vec<&str> {
    list.iter().map(|b| b.build.incremental.as_str()).collect()
}

both_backends!(
    builds_newest_first_by_channel,
    |url: String, _dir| async move {
        let cat = Catalogue::open(&url).await.unwrap();
        let g0 = cat.generation().await.unwrap();
        inserted(&cat, &build("hammerhead", "nightly", "eng.1", 100, 1)).await;
        let g1 = cat.generation().await.unwrap();
        assert!(g1 > g0, "a publish bumps the generation");
        inserted(&cat, &build("hammerhead", "nightly", "eng.2", 200, 2)).await;
        inserted(&cat, &build("hammerhead", "snapshot", "eng.3", 300, 3)).await;
        inserted(&cat, &build("hammerhead", "nightly", "eng.4", 400, 4)).await;
        inserted(&cat, &build("flo", "nightly", "eng.9", 900, 9)).await;
        let mut hidden = build("hammerhead", "nightly", "eng.5", 500, 5);
        hidden.published = false;
        inserted(&cat, &hidden).await;

        let nightly = vec!["nightly".to_string()];
        let both = vec!["nightly".to_string(), "snapshot".to_string()];
        // Newer than the source build, newest first, unpublished left out.
        let got = cat
            .rom_builds_newer("hammerhead", &nightly, "eng.1")
            .await
            .unwrap();
        assert_eq!(incs(&got), ["eng.4", "eng.2"]);
        let got = cat
            .rom_builds_newer("hammerhead", &both, "eng.2")
            .await
            .unwrap();
        assert_eq!(incs(&got), ["eng.4", "eng.3"]);
        // A source this server never saw: every build of the channels.
        let got = cat
            .rom_builds_newer("hammerhead", &nightly, "other.7")
            .await
            .unwrap();
        assert_eq!(incs(&got), ["eng.4", "eng.2", "eng.1"]);
        assert!(cat
            .rom_builds_newer("nosuch", &nightly, "x")
            .await
            .unwrap()
            .is_empty());
        assert!(cat
            .rom_builds_newer("hammerhead", &[], "x")
            .await
            .unwrap()
            .is_empty());

        let got = cat
            .rom_builds_of_type("hammerhead", "nightly", None)
            .await
            .unwrap();
        assert_eq!(incs(&got), ["eng.4", "eng.2", "eng.1"]);
        let got = cat
            .rom_builds_of_type("hammerhead", "nightly", Some(200))
            .await
            .unwrap();
        assert_eq!(incs(&got), ["eng.4"]);
        assert_eq!(
            cat.rom_types("hammerhead").await.unwrap(),
            ["nightly", "snapshot"]
        );
        assert!(cat.rom_types("nosuch").await.unwrap().is_empty());
        let devices = cat.rom_devices().await.unwrap();
        assert_eq!(
            devices
                .iter()
                .map(|d| d.codename.as_str())
                .collect::<Vec<_>>(),
            ["flo", "hammerhead"]
        );
        assert_eq!(devices[1].name, "hammerhead phone");

        // Publishing a withdrawn build offers it; withdrawing hides it again.
        let g = cat.generation().await.unwrap();
        assert!(cat
            .set_rom_published("hammerhead", "eng.5", true)
            .await
            .unwrap());
        assert!(cat.generation().await.unwrap() > g);
        let got = cat
            .rom_builds_newer("hammerhead", &nightly, "eng.4")
            .await
            .unwrap();
        assert_eq!(incs(&got), ["eng.5"]);
        assert!(!cat
            .set_rom_published("hammerhead", "eng.404", true)
            .await
            .unwrap());
        let b = cat.rom_build("hammerhead", "eng.5").await.unwrap().unwrap();
        assert!(b.build.published);
        assert!(cat
            .rom_build("hammerhead", "eng.404")
            .await
            .unwrap()
            .is_none());
    }
);

both_backends!(
    identical_and_conflicting_builds,
    |url: String, _dir| async move {
        let cat = Catalogue::open(&url).await.unwrap();
        let b = build("hammerhead", "nightly", "eng.1", 100, 1);
        inserted(&cat, &b).await;
        let g = cat.generation().await.unwrap();
        assert!(matches!(
            cat.publish_rom_build(&b).await.unwrap(),
            RomPublish::Identical(_)
        ));
        assert_eq!(cat.generation().await.unwrap(), g, "a no-op does not bump");

        let mut other_file = b.clone();
        other_file.sha256 = hash(2);
        match cat.publish_rom_build(&other_file).await.unwrap() {
            RomPublish::Conflict(m) => assert!(m.contains("already published"), "{m}"),
            o => panic!("{o:?}"),
        }
        let mut other_channel = b.clone();
        other_channel.channel = "stable".into();
        assert!(matches!(
            cat.publish_rom_build(&other_channel).await.unwrap(),
            RomPublish::Conflict(_)
        ));
        // Another build under a file name already taken.
        let mut same_name = build("hammerhead", "nightly", "eng.2", 200, 3);
        same_name.filename = b.filename.clone();
        match cat.publish_rom_build(&same_name).await.unwrap() {
            RomPublish::Conflict(m) => assert!(m.contains("file name"), "{m}"),
            o => panic!("{o:?}"),
        }
        assert!(cat
            .rom_build("hammerhead", "eng.2")
            .await
            .unwrap()
            .is_none());
        assert_eq!(cat.generation().await.unwrap(), g, "refusals store nothing");
    }
);

both_backends!(
    incrementals_are_delta_rows,
    |url: String, _dir| async move {
        let cat = Catalogue::open(&url).await.unwrap();
        inserted(&cat, &build("hammerhead", "nightly", "eng.1", 100, 1)).await;
        inserted(&cat, &build("hammerhead", "nightly", "eng.2", 200, 2)).await;
        inserted(&cat, &build("flo", "stable", "eng.2", 200, 3)).await;

        // No target build: refused, nothing stored.
        let g = cat.generation().await.unwrap();
        let orphan = incremental("hammerhead", "eng.1", "eng.9", 10);
        assert_eq!(
            cat.publish_rom_incremental(&orphan).await.unwrap(),
            RomPublish::UnknownTarget
        );
        assert_eq!(cat.generation().await.unwrap(), g);

        let inc = incremental("hammerhead", "eng.1", "eng.2", 11);
        let stored = match cat.publish_rom_incremental(&inc).await.unwrap() {
            RomPublish::Inserted(s) => s,
            o => panic!("{o:?}"),
        };
        assert_eq!(stored.incremental, inc);
        assert_eq!(stored.channel, "nightly");
        assert!(cat.generation().await.unwrap() > g);
        // The same row the bundle protocol's delta table holds.
        let rows = cat
            .deltas_between("rom:hammerhead", "nightly", "eng.1", "eng.2")
            .await
            .unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].delta.format, INCREMENTAL_FORMAT);
        assert_eq!(rows[0].delta.direction, "upgrade");
        assert_eq!(rows[0].delta.sha256, hash(11));
        assert_eq!(rows[0].id, stored.id);

        assert!(matches!(
            cat.publish_rom_incremental(&inc).await.unwrap(),
            RomPublish::Identical(_)
        ));
        let mut different = inc.clone();
        different.sha256 = hash(12);
        assert!(matches!(
            cat.publish_rom_incremental(&different).await.unwrap(),
            RomPublish::Conflict(_)
        ));
        // A file name another incremental of the device has: refused, and the
        // delta row it would have added is rolled back.
        let mut clash = incremental("hammerhead", "eng.0", "eng.2", 13);
        clash.filename = inc.filename.clone();
        assert!(matches!(
            cat.publish_rom_incremental(&clash).await.unwrap(),
            RomPublish::Conflict(_)
        ));
        assert!(cat
            .deltas_between("rom:hammerhead", "nightly", "eng.0", "eng.2")
            .await
            .unwrap()
            .is_empty());

        // A downgrade is recorded as a rollback.
        let back = incremental("hammerhead", "eng.2", "eng.1", 14);
        assert!(matches!(
            cat.publish_rom_incremental(&back).await.unwrap(),
            RomPublish::Inserted(_)
        ));
        let rows = cat
            .deltas_between("rom:hammerhead", "nightly", "eng.2", "eng.1")
            .await
            .unwrap();
        assert_eq!(rows[0].delta.direction, "rollback");

        // get_delta names no device: the lookup spans devices.
        let flo = incremental("flo", "eng.1", "eng.2", 15);
        assert!(matches!(
            cat.publish_rom_incremental(&flo).await.unwrap(),
            RomPublish::Inserted(_)
        ));
        let found = cat
            .rom_incrementals_between("eng.1", "eng.2")
            .await
            .unwrap();
        let devices: Vec<&str> = found
            .iter()
            .map(|i| i.incremental.device.as_str())
            .collect();
        assert_eq!(devices, ["hammerhead", "flo"]);
        assert_eq!(cat.rom_incrementals("hammerhead").await.unwrap().len(), 2);
        // An incremental to a withdrawn build is not offered.
        assert!(cat.set_rom_published("flo", "eng.2", false).await.unwrap());
        let found = cat
            .rom_incrementals_between("eng.1", "eng.2")
            .await
            .unwrap();
        assert_eq!(found.len(), 1);
        assert!(cat
            .rom_incrementals_between("eng.1", "eng.404")
            .await
            .unwrap()
            .is_empty());
    }
);

both_backends!(
    rom_blobs_survive_recovery,
    |url: String, dir: std::path::PathBuf| async move {
        let cat = Catalogue::open(&url).await.unwrap();
        let blobs = BlobStore::open(&dir.join("data")).unwrap();
        let full = blobs.put_bytes(b"full build").await.unwrap();
        let inc = blobs.put_bytes(b"incremental").await.unwrap();
        let orphan = blobs
            .put_bytes(b"crash between blob and row")
            .await
            .unwrap();
        let mut b = build("hammerhead", "nightly", "eng.1", 100, 1);
        b.sha256 = full.hash.to_string();
        inserted(&cat, &b).await;
        let mut b2 = build("hammerhead", "nightly", "eng.2", 200, 2);
        b2.sha256 = full.hash.to_string();
        inserted(&cat, &b2).await;
        let mut i = incremental("hammerhead", "eng.1", "eng.2", 3);
        i.sha256 = inc.hash.to_string();
        assert!(matches!(
            cat.publish_rom_incremental(&i).await.unwrap(),
            RomPublish::Inserted(_)
        ));
        let hashes = cat.all_hashes().await.unwrap();
        assert!(hashes.contains(full.hash.as_str()) && hashes.contains(inc.hash.as_str()));
        assert_eq!(cat.references(full.hash.as_str()).await.unwrap(), 2);
        let (_, removed) = recover(&cat, &blobs).await.unwrap();
        assert_eq!(removed, 1, "only the orphan goes");
        assert!(
            blobs.contains(&full.hash).await.unwrap() && blobs.contains(&inc.hash).await.unwrap()
        );
        assert!(!blobs.contains(&orphan.hash).await.unwrap());
    }
);

both_backends!(reports_and_hostile_text, |url: String, _dir| async move {
    let cat = Catalogue::open(&url).await.unwrap();
    let g = cat.generation().await.unwrap();
    let hostile = "x'); DROP TABLE rom_builds; -- <script>alert(1)</script>";
    let id = cat
        .add_rom_report(hostile, "fcontent \"quoted\"")
        .await
        .unwrap();
    assert_eq!(
        cat.generation().await.unwrap(),
        g,
        "reports change no answer"
    );
    let reports = cat.rom_reports(10).await.unwrap();
    assert_eq!(reports[0].0, id);
    assert_eq!(reports[0].1, hostile, "stored verbatim, bound not spliced");
    for n in 0..5 {
        cat.add_rom_report_keeping("fp", &format!("r{n}"), 3)
            .await
            .unwrap();
    }
    let kept = cat.rom_reports(100).await.unwrap();
    assert_eq!(
        kept.iter().map(|r| r.2.as_str()).collect::<Vec<_>>(),
        ["r4", "r3", "r2"]
    );

    let mut b = build("hammerhead", "nightly", "eng.1", 100, 1);
    b.changelog = hostile.into();
    inserted(&cat, &b).await;
    let stored = cat.rom_build("hammerhead", "eng.1").await.unwrap().unwrap();
    assert_eq!(stored.build.changelog, hostile);
    assert_eq!(
        cat.rom_builds_newer("hammerhead", &["nightly".to_string()], hostile)
            .await
            .unwrap()
            .len(),
        1
    );
});

fn target_files(
    device: &str,
    channel: &str,
    inc: &str,
    ts: i64,
    sha: u8,
) -> ota_store::NewRomTargetFiles {
    ota_store::NewRomTargetFiles {
        device: device.into(),
        channel: channel.into(),
        incremental: inc.into(),
        timestamp: ts,
        sha256: hash(sha),
        size: 5000,
        changelog: "* <b>bold</b>'; DROP TABLE rom_builds; --\n".into(),
        published: true,
        sources: 2,
        uploaded_by: "builder".into(),
    }
}

both_backends!(
    target_files_and_their_sources,
    |url: String, _dir| async move {
        let cat = Catalogue::open(&url).await.unwrap();
        let t1 = target_files("bacon", "nightly", "1", 100, 0x71);
        match cat.add_rom_target_files(&t1).await.unwrap() {
            RomPublish::Inserted(s) => assert_eq!(s.new, t1, "stored as given, text verbatim"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            cat.add_rom_target_files(&t1).await.unwrap(),
            RomPublish::Identical(_)
        ));
        let other_file = ota_store::NewRomTargetFiles {
            sha256: hash(0x72),
            ..t1.clone()
        };
        assert!(matches!(
            cat.add_rom_target_files(&other_file).await.unwrap(),
            RomPublish::Conflict(m) if m.contains("already stored")
        ));
        assert!(cat.all_hashes().await.unwrap().contains(&hash(0x71)));
        assert_eq!(cat.references(&hash(0x71)).await.unwrap(), 1);

        // Sources: target-files whose full build is published on the channel,
        // older than the new build, newest first, at most `limit`.
        for (inc, ts, sha, channel, published) in [
            ("2", 200, 0x73, "nightly", true),
            ("3", 300, 0x74, "nightly", false),
            ("4", 400, 0x75, "stable", true),
            ("5", 500, 0x76, "nightly", true),
        ] {
            cat.add_rom_target_files(&target_files("bacon", channel, inc, ts, sha))
                .await
                .unwrap();
            let mut b = build("bacon", channel, inc, ts, sha + 0x20);
            b.published = published;
            inserted(&cat, &b).await;
        }
        // Build 1 has target-files but no full build yet: not a source.
        let sources = |before, limit| {
            let cat = cat.clone();
            async move {
                cat.rom_target_files_sources("bacon", "nightly", before, limit)
                    .await
                    .unwrap()
                    .into_iter()
                    .map(|t| t.new.incremental)
                    .collect::<Vec<_>>()
            }
        };
        assert_eq!(sources(600, 3).await, ["5", "2"]);
        assert_eq!(sources(600, 1).await, ["5"]);
        assert_eq!(sources(500, 3).await, ["2"]);
        assert!(sources(600, 0).await.is_empty());
        assert!(cat.rom_target_files("bacon", "9").await.unwrap().is_none());
    }
);
