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
