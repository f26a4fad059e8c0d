//! The web admin in a real browser: headless Debian `chromium` driven
//! through `chromedriver` (WebDriver) with `fantoccini`. Sign in, add a ROM
//! device, upload a build through the form and see it served by `POST
//! /api` and the LineageOS endpoint, upload two package versions and watch
//! their pack job finish, save a strategy with an error and see the
//! message at its line, revoke a key and see publishing with it refused,
//! sign out. A screenshot of each page is kept under
//! `target/admin-screenshots/`.
//!
//! Without `chromedriver` and `chromium` the test says so and skips
//! (`OTA_TEST_STRICT=1` makes that a failure; `scripts/test` installs both).

mod common;
#[path = "rom_common/mod.rs"]
mod rom_common;

use common::*;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const PASSWORD: &str = "correct horse battery";
const EVIL: &str = "<script>alert(1)</script>' OR 1=1; --";

/// A chromedriver process, killed when dropped.
struct Driver {
    child: Child,
    url: String,
    _profile: tempfile::TempDir,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn find_program(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    for dir in std::env::split_paths(&path) {
        for n in names {
            let p = dir.join(n);
            if p.is_file() {
                return Some(p);
            }
        }
    }
    None
}

async fn start_driver() -> Option<(Driver, PathBuf)> {
    let (Some(driver), Some(browser)) = (
        find_program(&["chromedriver"]),
        find_program(&["chromium", "chromium-browser"]),
    ) else {
        ota_store::testdb::skip(
            "chromedriver or chromium is not installed (apt-get install chromium chromium-driver)",
        );
        return None;
    };
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let child = Command::new(driver)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let d = Driver {
        child,
        url: format!("http://127.0.0.1:{port}"),
        _profile: tempfile::tempdir().unwrap(),
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "chromedriver did not start");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Some((d, browser))
}

async fn connect(d: &Driver, browser: &Path) -> Client {
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": browser,
            "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-dev-shm-usage", "--window-size=1280,1000",
                format!("--user-data-dir={}", d._profile.path().display()),
            ],
        }),
    );
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&d.url)
        .await
        .expect("connecting to chromedriver")
}

fn screenshot_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"));
    let dir = target.join("admin-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn shot(c: &Client, name: &str) {
    let png = c.screenshot().await.unwrap();
    assert!(png.starts_with(b"\x89PNG"), "{name}: not a PNG");
    std::fs::write(screenshot_dir().join(format!("{name}.png")), png).unwrap();
}

async fn fill(c: &Client, css: &str, text: &str) {
    let e = c.find(Locator::Css(css)).await.unwrap();
    e.clear().await.unwrap();
    e.send_keys(text).await.unwrap();
}

async fn click(c: &Client, css: &str) {
    c.find(Locator::Css(css))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
}

/// Waits until the page source contains `text` (uploads go through the
/// script's XMLHttpRequest, so the new page arrives a little later).
async fn wait_for(c: &Client, text: &str, within: Duration) -> String {
    let deadline = Instant::now() + within;
    loop {
        let src = c.source().await.unwrap();
        if src.contains(text) {
            return src;
        }
        assert!(
            Instant::now() < deadline,
            "page never showed {text:?}: {src}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_in_a_real_browser() {
    let Some((driver, browser)) = start_driver().await else {
        return;
    };
    let s = start_with(|c| c.packs.workers = 1).await;
    let cat = ota_store::Catalogue::open(&s.database_url).await.unwrap();
    cat.create_admin_user("alice", PASSWORD).await.unwrap();
    cat.close().await;
    let ci = s.key_with("ci", "publish:*").await;
    let c = connect(&driver, &browser).await;
    let base = &s.base;

    // A page without a session lands on the sign-in form.
    c.goto(&format!("{base}/admin/keys")).await.unwrap();
    assert!(c
        .current_url()
        .await
        .unwrap()
        .as_str()
        .ends_with("/admin/login"));
    shot(&c, "01-sign-in").await;
    fill(&c, "input[name=user]", "alice").await;
    fill(&c, "input[name=password]", PASSWORD).await;
    click(&c, "#sign-in").await;
    wait_for(&c, "Dashboard", Duration::from_secs(10)).await;
    shot(&c, "02-dashboard").await;

    // A ROM device, then a build through the upload form.
    c.goto(&format!("{base}/admin/rom")).await.unwrap();
    fill(&c, "input[name=codename]", "hammerhead").await;
    fill(&c, "input[name=name]", "Nexus 5").await;
    fill(&c, "input[name=oem]", "LGE").await;
    click(&c, "#add-rom-device").await;
    wait_for(&c, "Nexus 5", Duration::from_secs(10)).await;
    shot(&c, "03-rom-devices").await;
    let p = rom_common::packages();
    c.goto(&format!("{base}/admin/rom/hammerhead"))
        .await
        .unwrap();
    fill(
        &c,
        "#build-json",
        &json!({"device": "hammerhead", "channel": "nightly", "changelog": "* first"}).to_string(),
    )
    .await;
    c.find(Locator::Css("form.upload input[type=file]"))
        .await
        .unwrap()
        .send_keys(p.full1.to_str().unwrap())
        .await
        .unwrap();
    click(&c, "#upload-build").await;
    wait_for(&c, "update-eng.1001.zip", Duration::from_secs(30)).await;
    // Markup in the changelog: stored as typed, shown escaped, served raw
    // to the clients (JSON).
    fill(&c, "textarea[name=changelog]", EVIL).await;
    click(&c, "form[action='/admin/rom/changelog'] button").await;
    let src = wait_for(&c, "&lt;script&gt;", Duration::from_secs(10)).await;
    assert!(!src.contains("<script>alert"), "{src}");
    shot(&c, "04-rom-builds").await;
    // The stock clients see it.
    let r = rom_common::cm_post(
        &s,
        "/api",
        rom_common::cm_request("hammerhead", "nightly", "none"),
    )
    .await;
    let body = r.text().await.unwrap();
    assert!(body.contains("update-eng.1001.zip"), "{body}");
    let cat = ota_store::Catalogue::open(&s.database_url).await.unwrap();
    let b = cat
        .rom_build("hammerhead", "eng.1001")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(b.build.changelog, EVIL);
    cat.close().await;
    let lineage: Value = client()
        .get(format!("{base}/api/v1/hammerhead/nightly/none"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        lineage.to_string().contains("update-eng.1001.zip"),
        "{lineage}"
    );

    // Two package versions through the form; their pack job finishes.
    let dir = tempfile::tempdir().unwrap();
    for (v, bytes) in [
        ("1.0.0", vec![1u8; 50_000]),
        ("1.0.1", {
            let mut b = vec![1u8; 50_000];
            b[100..200].fill(9);
            b
        }),
    ] {
        let path = dir.path().join(format!("app-{v}.bin"));
        std::fs::write(&path, &bytes).unwrap();
        c.goto(&format!("{base}/admin/packages")).await.unwrap();
        fill(
            &c,
            "textarea[name=content]",
            &content("org.example.app", "main", v, &bytes),
        )
        .await;
        c.find(Locator::Css("form.upload input[type=file]"))
            .await
            .unwrap()
            .send_keys(path.to_str().unwrap())
            .await
            .unwrap();
        click(&c, "#upload-package").await;
        wait_for(&c, v, Duration::from_secs(30)).await;
    }
    shot(&c, "05-branch").await;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        c.goto(&format!("{base}/admin/jobs")).await.unwrap();
        let src = c.source().await.unwrap();
        if src.contains("state-done")
            && !src.contains("state-queued")
            && !src.contains("state-running")
        {
            break;
        }
        assert!(!src.contains("state-failed"), "{src}");
        assert!(
            Instant::now() < deadline,
            "the pack job did not finish: {src}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    shot(&c, "06-jobs").await;
    c.goto(&format!(
        "{base}/admin/packages/org.example.app/main?from=1.0.0&to=1.0.1"
    ))
    .await
    .unwrap();
    let src = wait_for(&c, "1 pack(s)", Duration::from_secs(10)).await;
    assert!(src.contains("version-graph"), "{src}");
    shot(&c, "07-delta-path").await;

    // A strategy with an error: the message names the line, nothing stored.
    c.goto(&format!("{base}/admin/strategies")).await.unwrap();
    fill(
        &c,
        "#strategies",
        "[\n  {\"name\": \"org.example.app\",\n   \"update\": 5}\n]",
    )
    .await;
    click(&c, "#save-strategies").await;
    let src = wait_for(&c, "id=\"error\"", Duration::from_secs(10)).await;
    assert!(src.contains("line 3"), "{src}");
    shot(&c, "08-strategies-error").await;

    // Revoke the CI key: publishing with it is refused.
    c.goto(&format!("{base}/admin/keys")).await.unwrap();
    click(&c, "#revoke-ci").await;
    let src = wait_for(&c, "revoked", Duration::from_secs(10)).await;
    assert!(src.contains("revoked"));
    shot(&c, "09-keys").await;
    let file = b"v3".to_vec();
    let r = s
        .put_update_as(
            Some(&ci),
            &content("org.example.app", "main", "1.0.2", &file),
            &file,
        )
        .await;
    assert_eq!(r.status(), 401);

    for (page, name) in [
        ("/admin/devices", "10-devices"),
        ("/admin/users", "11-users"),
        ("/admin/audit", "12-audit"),
        ("/admin/rom/reports", "13-rom-reports"),
        ("/admin/password", "14-password"),
        ("/admin", "15-dashboard-after"),
    ] {
        c.goto(&format!("{base}{page}")).await.unwrap();
        shot(&c, name).await;
    }

    // Readable on a phone: the same pages at 390 px wide.
    c.set_window_size(390, 844).await.unwrap();
    for (page, name) in [
        ("/admin", "16-phone-dashboard"),
        ("/admin/rom/hammerhead", "17-phone-rom-builds"),
        ("/admin/packages/org.example.app/main", "18-phone-branch"),
    ] {
        c.goto(&format!("{base}{page}")).await.unwrap();
        shot(&c, name).await;
    }

    // Sign out: back to the sign-in form, and pages redirect there again.
    click(&c, "#sign-out").await;
    wait_for(&c, "Sign in", Duration::from_secs(10)).await;
    c.goto(&format!("{base}/admin/audit")).await.unwrap();
    assert!(c
        .current_url()
        .await
        .unwrap()
        .as_str()
        .ends_with("/admin/login"));
    c.close().await.unwrap();
    drop(driver);
    s.stop().await;
}
