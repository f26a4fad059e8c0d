//! Fresh databases for test suites, so every test runs against both backends.
//!
//! SQLite needs nothing. PostgreSQL tests read `OTA_TEST_DATABASE_URL` (an
//! admin URL such as `postgres://postgres@127.0.0.1:55432/postgres`) and
//! create one new database per test, so tests can run in parallel.

use crate::catalogue::StoreError;
use sqlx::{Connection, Executor};

/// The environment variable naming the PostgreSQL server for tests.
pub const ENV: &str = "OTA_TEST_DATABASE_URL";

/// Set to `1` (as `scripts/test` does) to make every test that would skip
/// for a missing outside tool or server fail instead.
pub const STRICT_ENV: &str = "OTA_TEST_STRICT";

/// Announces a skipped part of a test, or panics under [`STRICT_ENV`].
pub fn skip(what: &str) {
    if std::env::var(STRICT_ENV).is_ok_and(|v| v == "1") {
        panic!("{what}, and {STRICT_ENV}=1 forbids skipping");
    }
    eprintln!("notice: {what}; skipping (scripts/test installs it)");
}

/// Creates a new empty PostgreSQL database and returns its URL, or `None`
/// (after printing a notice) when [`ENV`] is unset.
pub async fn fresh_postgres(test: &str) -> Result<Option<String>, StoreError> {
    let Ok(admin) = std::env::var(ENV) else {
        skip(&format!("{ENV} is unset: no PostgreSQL run of {test}"));
        return Ok(None);
    };
    sqlx::any::install_default_drivers();
    let name = format!("ota_test_{:016x}", rand::random::<u64>());
    let mut conn = sqlx::AnyConnection::connect(&admin)
        .await
        .map_err(|e| StoreError::db("connecting to the test server", e))?;
    conn.execute(format!("CREATE DATABASE {name}").as_str())
        .await
        .map_err(|e| StoreError::db("creating a test database", e))?;
    let (base, query) = match admin.split_once('?') {
        Some((b, q)) => (b, format!("?{q}")),
        None => (admin.as_str(), String::new()),
    };
    let base = match base.rfind('/') {
        Some(i) if i > base.find("://").map_or(0, |s| s + 2) => &base[..i],
        _ => base,
    };
    Ok(Some(format!("{base}/{name}{query}")))
}

/// The environment variable naming the S3-compatible store for tests
/// (`.ci/start-garage.sh` prints it with the credentials).
pub const S3_ENV: &str = "OTA_TEST_S3_URL";

/// The test object store ([`S3_ENV`]) under a new random prefix, so tests
/// sharing the bucket never see each other's objects; `extra` is appended
/// to the query (e.g. `part_size=5MiB`). `None` (after printing a notice,
/// or a panic under [`STRICT_ENV`]) when [`S3_ENV`] or the credentials are
/// unset.
pub fn fresh_s3(test: &str, extra: &str) -> Option<crate::BlobBackend> {
    let Ok(url) = std::env::var(S3_ENV) else {
        skip(&format!(
            "{S3_ENV} is unset (.ci/start-garage.sh prints it): no S3 run of {test}"
        ));
        return None;
    };
    if std::env::var("AWS_ACCESS_KEY_ID").is_err() {
        skip(&format!(
            "AWS_ACCESS_KEY_ID is unset (.ci/start-garage.sh prints it): no S3 run of {test}"
        ));
        return None;
    }
    let (base, query) = url.split_once('?').unwrap_or((url.as_str(), ""));
    let prefix = format!("t{:016x}", rand::random::<u64>());
    let mut text = format!("{}/{prefix}?{query}", base.trim_end_matches('/'));
    if !extra.is_empty() {
        text.push('&');
        text.push_str(extra);
    }
    match crate::BlobBackend::parse(&text) {
        Ok(b) => Some(b),
        Err(e) => panic!("{S3_ENV}: {e}"),
    }
}
