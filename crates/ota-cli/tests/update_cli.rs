//! `ota serve --watch`, `ota update`, `ota jobs` and `ota keys
//! signing-public` with the real binary; a server killed with SIGKILL in
//! the middle of a pack job finishes it after a restart.

mod common;
use common::fleet::cp;
use common::*;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

/// A tree of real binaries; `bump` changes a few bytes of each and a file.
fn tree(dir: &Path, bins: &[&str], bump: u8) {
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
    std::os::unix::fs::symlink("bin", dir.join("sbin")).unwrap();
}

/// Runs `ota update` until it applies something (packs may still be building).
fn update_until_applied(args: &[&str], secs: u64) -> String {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let out = ota(args);
        let t = text(&out);
        // Until the first pack is built the server knows no digest yet.
        assert!(
            out.status.success() || t.contains("no published version"),
            "{t}"
        );
        if t.contains(" -> ") && !t.contains("offered") {
            return t;
        }
        assert!(Instant::now() < deadline, "nothing applied in {secs}s: {t}");
        std::thread::sleep(Duration::from_millis(300));
    }
}

#[test]
fn watched_release_reaches_a_device_with_ota_update() {
    let dir = tempfile::tempdir().unwrap();
    let (data, watch) = (dir.path().join("data"), dir.path().join("watch"));
    std::fs::create_dir_all(&watch).unwrap();
    let d = data.to_str().unwrap();
    let s = serve_with(
        &[
            "--listen",
            "127.0.0.1:0",
            "--data",
            d,
            "--watch",
            watch.to_str().unwrap(),
            "--pack-workers",
            "1",
            "--pack-level",
            "3",
        ],
        &[],
        Stdio::null(),
    );
    let key = text(&ota(&[
        "keys", "create", "ci", "--scope", "admin", "--data", d,
    ]));
    let key = key.lines().next().unwrap().trim().to_owned();
    let v0 = dir.path().join("v0");
    let v1 = dir.path().join("v1");
    tree(&v0, &["cat", "sed"], 0);
    tree(&v1, &["cat", "sed"], 3);
    cp(&v0, &watch.join("tool/main/1.0.0"));
    cp(&v1, &watch.join("tool/main/1.0.1"));
    let pem = dir.path().join("signing.pem");
    let out = ota(&["keys", "signing-public", "--data", d]);
    assert!(out.status.success(), "{}", text(&out));
    std::fs::write(&pem, &out.stdout).unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("-----BEGIN PUBLIC KEY-----"));

    let device = dir.path().join("device");
    cp(&v0, &device);
    // No --version: the server's delta map knows the tree by its digest.
    let done = update_until_applied(
        &[
            "update",
            "--server",
            &s.base,
            "--name",
            "tool",
            "--public-key",
            pem.to_str().unwrap(),
            "--yes",
            device.to_str().unwrap(),
        ],
        120,
    );
    assert!(done.contains("update 1.0.0 -> 1.0.1 (1 pack"), "{done}");
    assert_eq!(
        text(&ota(&["digest", device.to_str().unwrap()])),
        text(&ota(&["digest", v1.to_str().unwrap()]))
    );
    let again = ota(&[
        "update",
        "--server",
        &s.base,
        "--name",
        "tool",
        "--public-key",
        pem.to_str().unwrap(),
        device.to_str().unwrap(),
    ]);
    assert!(
        text(&again).contains("tool 1.0.1 is up to date"),
        "{}",
        text(&again)
    );
    let jobs = ota(&["jobs", "--server", &s.base, "--key", &key]);
    let jobs = text(&jobs);
    assert!(
        jobs.contains("done") && jobs.contains("tool/main  1.0.0 -> 1.0.1"),
        "{jobs}"
    );
    // Without the key, jobs are not listed.
    let anon = ota(&["jobs", "--server", &s.base, "--key", "ota_bad"]);
    assert!(!anon.status.success());
}

#[test]
fn a_job_cut_by_sigkill_is_finished_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (data, watch) = (dir.path().join("data"), dir.path().join("watch"));
    std::fs::create_dir_all(&watch).unwrap();
    let d = data.to_str().unwrap();
    let args = |w: &str| {
        vec![
            "--listen".to_owned(),
            "127.0.0.1:0".into(),
            "--data".into(),
            d.into(),
            "--watch".into(),
            w.into(),
            "--pack-workers".into(),
            "1".into(),
            "--pack-level".into(),
            "19".into(),
            "--pack-lease".into(),
            "3s".into(),
        ]
    };
    let w = watch.to_str().unwrap().to_owned();
    let a = args(&w);
    let a: Vec<&str> = a.iter().map(String::as_str).collect();
    let mut s = serve_with(&a, &[], Stdio::null());
    let key = text(&ota(&[
        "keys", "create", "ci", "--scope", "admin", "--data", d,
    ]));
    let key = key.lines().next().unwrap().trim().to_owned();
    // Big enough that level 19 takes a while.
    let bins = ["tar", "grep", "find", "sed", "ls", "cp", "mv", "sort"];
    let (v0, v1) = (dir.path().join("v0"), dir.path().join("v1"));
    tree(&v0, &bins, 0);
    tree(&v1, &bins, 9);
    cp(&v0, &watch.join("big/main/1.0.0"));
    cp(&v1, &watch.join("big/main/1.0.1"));
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let out = text(&ota(&[
            "jobs", "--server", &s.base, "--key", &key, "--state", "running",
        ]));
        if out.contains("running") {
            break;
        }
        assert!(Instant::now() < deadline, "no job started: {out}");
        std::thread::sleep(Duration::from_millis(50));
    }
    s.child.kill().unwrap(); // SIGKILL, mid-diff
    s.child.wait().unwrap();
    drop(s);
    let s = serve_with(&a, &[], Stdio::null());
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let out = text(&ota(&["jobs", "--server", &s.base, "--key", &key]));
        if out.contains("done") {
            assert!(
                out.contains("attempts 2"),
                "taken over after the lease: {out}"
            );
            break;
        }
        assert!(!out.contains("failed"), "{out}");
        assert!(Instant::now() < deadline, "job never finished: {out}");
        std::thread::sleep(Duration::from_millis(300));
    }
    let pem = dir.path().join("signing.pem");
    std::fs::write(&pem, ota(&["keys", "signing-public", "--data", d]).stdout).unwrap();
    let device = dir.path().join("device");
    cp(&v0, &device);
    let done = update_until_applied(
        &[
            "update",
            "--server",
            &s.base,
            "--name",
            "big",
            "--public-key",
            pem.to_str().unwrap(),
            "--yes",
            device.to_str().unwrap(),
        ],
        30,
    );
    assert!(done.contains("1.0.0 -> 1.0.1"), "{done}");
    assert_eq!(
        text(&ota(&["digest", device.to_str().unwrap()])),
        text(&ota(&["digest", v1.to_str().unwrap()]))
    );
}
