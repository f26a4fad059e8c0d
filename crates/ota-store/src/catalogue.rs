//! The catalogue: published versions (the package API's `ota` table) and API keys.
//!
//! One implementation serves both databases through `sqlx::Any`; only the
//! schema text differs ([`crate::migrate`]). Every statement that writes
//! starts its transaction with the write, so SQLite never has to upgrade a
//! read lock (which fails at once instead of waiting).

use ota_core::scope::Scopes;
use ota_core::{apikey, Version};
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Executor, Row};
use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

/// Which database a catalogue runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// Embedded SQLite (`sqlite://path?mode=rwc`).
    Sqlite,
    /// PostgreSQL (`postgres://…`).
    Postgres,
}

/// Storage errors, each with what was being done.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A database error.
    #[error("{context}: {source}")]
    Db {
        /// What was being done.
        context: String,
        /// The driver's error.
        #[source]
        source: sqlx::Error,
    },
    /// A file system error.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The blob store failed.
    #[error("{context}: {source}")]
    Blob {
        /// What was being done.
        context: String,
        /// The blob store's error.
        #[source]
        source: crate::BlobError,
    },
    /// The database URL names no supported backend.
    #[error("unsupported database URL {0:?}: use sqlite://PATH or postgres://…")]
    UnsupportedUrl(String),
    /// An active key already has this name.
    #[error(
        "an active API key named {0:?} already exists (revoke it first, or pick another name)"
    )]
    KeyExists(String),
    /// A device with this name is already registered.
    #[error("a device named {0:?} is already registered (remove it first, or pick another name)")]
    DeviceExists(String),
    /// A stored row is not what this version writes.
    #[error("corrupt catalogue row: {0}")]
    Corrupt(String),
}

impl StoreError {
    pub(crate) fn db(context: impl Into<String>, source: sqlx::Error) -> Self {
        StoreError::Db {
            context: context.into(),
            source,
        }
    }
    pub(crate) fn blob(context: impl Into<String>, source: crate::BlobError) -> Self {
        StoreError::Blob {
            context: context.into(),
            source,
        }
    }
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        StoreError::Io {
            context: context.into(),
            source,
        }
    }
}

/// A version to record.
#[derive(Clone, Debug)]
pub struct NewEntry {
    /// Package name.
    pub package: String,
    /// Branch name.
    pub branch: String,
    /// Version text.
    pub version: String,
    /// The content.json text to store and serve.
    pub content: String,
    /// SHA-256 of the package file.
    pub sha256: String,
    /// Size of the package file.
    pub size: u64,
}

/// A stored version.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Row id.
    pub id: i64,
    /// Package name.
    pub package: String,
    /// Branch name.
    pub branch: String,
    /// Version text.
    pub version: String,
    /// The content.json text.
    pub content: String,
    /// SHA-256 of the package file.
    pub sha256: String,
    /// Size of the package file in bytes.
    pub size: u64,
    /// Unix seconds.
    pub created_at: i64,
}

/// What [`Catalogue::publish`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PublishOutcome {
    /// A new row.
    Inserted(Entry),
    /// The same package/branch/version with the same content was already there.
    Identical(Entry),
    /// The same package/branch/version exists with different content.
    Conflict(Entry),
}

/// A package and its branches.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct PackageSummary {
    /// Package name.
    pub name: String,
    /// Branch names, sorted.
    pub branches: Vec<String>,
    /// Number of versions over all branches.
    pub versions: u64,
}

/// An API key's public record.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct KeyInfo {
    /// The name given at creation.
    pub name: String,
    /// The public id inside the token.
    pub key_id: String,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds, when revoked.
    pub revoked_at: Option<i64>,
    /// What the key may do (`admin`, `publish:PATTERN`, `hooks:PATTERN`).
    pub scopes: String,
    /// Unix seconds of the last successful authentication (to a minute).
    pub last_used_at: Option<i64>,
}

/// A key that authenticated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyAuth {
    /// The key's name.
    pub name: String,
    /// What it may do.
    pub scopes: Scopes,
}

/// The catalogue handle; cheap to clone.
#[derive(Clone, Debug)]
pub struct Catalogue {
    pub(crate) pool: AnyPool,
    pub(crate) backend: Backend,
}

pub(crate) fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

const ENTRY_COLUMNS: &str = "id, name, branch, version, content, sha256, size, created_at";

fn entry_from_row(row: &AnyRow) -> Result<Entry, StoreError> {
    let get = |e: sqlx::Error| StoreError::db("decoding a catalogue row", e);
    let size: i64 = row.try_get("size").map_err(get)?;
    Ok(Entry {
        id: row.try_get("id").map_err(get)?,
        package: row.try_get("name").map_err(get)?,
        branch: row.try_get("branch").map_err(get)?,
        version: row.try_get("version").map_err(get)?,
        content: row.try_get("content").map_err(get)?,
        sha256: row.try_get("sha256").map_err(get)?,
        size: u64::try_from(size)
            .map_err(|_| StoreError::Corrupt(format!("negative size {size}")))?,
        created_at: row.try_get("created_at").map_err(get)?,
    })
}

/// Sorts entries by version, oldest first; rows with unparsable versions
/// (which uploads refuse) sort first so they never win "newest".
fn sort_by_version(entries: &mut [Entry]) {
    entries.sort_by_cached_key(|e| Version::parse(&e.version).ok());
}

impl Catalogue {
    /// Connects and migrates. `url` is `sqlite://PATH[?mode=rwc]` or `postgres://…`.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        Self::open_at_schema(url, i64::MAX).await
    }

    /// Connects and migrates up to schema `version` only: lets tests build
    /// a database as an older release left it.
    #[doc(hidden)]
    pub async fn open_at_schema(url: &str, version: i64) -> Result<Self, StoreError> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Backend::Postgres
        } else {
            return Err(StoreError::UnsupportedUrl(url.to_owned()));
        };
        if backend == Backend::Sqlite {
            crate::private::private_sqlite_file(url)?;
        }
        let mut options = AnyPoolOptions::new()
            // SQLite in WAL mode reads concurrently; writers queue on busy_timeout.
            .max_connections(16)
            .acquire_timeout(Duration::from_secs(30));
        if backend == Backend::Sqlite {
            options = options.after_connect(|conn, _meta| {
                Box::pin(async move {
                    conn.execute("PRAGMA journal_mode = WAL").await?;
                    conn.execute("PRAGMA busy_timeout = 15000").await?;
                    conn.execute("PRAGMA synchronous = FULL").await?;
                    Ok(())
                })
            });
        }
        let pool = options
            .connect(url)
            .await
            .map_err(|e| StoreError::db(format!("connecting to {}", redact(url)), e))?;
        let mut conn = pool
            .acquire()
            .await
            .map_err(|e| StoreError::db("acquiring a connection", e))?;
        crate::migrate::run(&mut conn, backend, version).await?;
        drop(conn);
        Ok(Catalogue { pool, backend })
    }

    /// The SQLite URL for the embedded database inside a data directory.
    pub fn sqlite_url_for(data_dir: &std::path::Path) -> String {
        format!("sqlite://{}?mode=rwc", data_dir.join("ota.db").display())
    }

    /// Which database this is.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Closes the pool, waiting for connections to finish.
    pub async fn close(&self) {
        self.pool.close().await
    }

    /// Records a version. Identical re-publishing is not an error; different
    /// content under an existing package/branch/version is a conflict.
    pub async fn publish(&self, new: &NewEntry) -> Result<PublishOutcome, StoreError> {
        let size = i64::try_from(new.size)
            .map_err(|_| StoreError::Corrupt(format!("size {} too large", new.size)))?;
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(|e| StoreError::db("begin", e))?;
        let inserted = sqlx::query(
            "INSERT INTO ota (name, branch, version, content, sha256, size, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7)
             ON CONFLICT (name, branch, version) DO NOTHING
             RETURNING id",
        )
        .bind(&new.package)
        .bind(&new.branch)
        .bind(&new.version)
        .bind(&new.content)
        .bind(&new.sha256)
        .bind(size)
        .bind(now())
        .fetch_optional(&mut *tx)
        .await
        .map_err(|e| StoreError::db("inserting a version", e))?;
        if inserted.is_some() {
            bump_generation(&mut tx).await?;
        }
        let row = sqlx::query(&format!(
            "SELECT {ENTRY_COLUMNS} FROM ota WHERE name = $1 AND branch = $2 AND version = $3"
        ))
        .bind(&new.package)
        .bind(&new.branch)
        .bind(&new.version)
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| StoreError::db("reading the version back", e))?;
        let entry = entry_from_row(&row)?;
        tx.commit()
            .await
            .map_err(|e| StoreError::db("committing a version", e))?;
        Ok(if inserted.is_some() {
            PublishOutcome::Inserted(entry)
        } else if same_json(&entry.content, &new.content) && entry.sha256 == new.sha256 {
            PublishOutcome::Identical(entry)
        } else {
            PublishOutcome::Conflict(entry)
        })
    }

    /// One version, if published.
    pub async fn get(
        &self,
        package: &str,
        branch: &str,
        version: &str,
    ) -> Result<Option<Entry>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {ENTRY_COLUMNS} FROM ota WHERE name = $1 AND branch = $2 AND version = $3"
        ))
        .bind(package)
        .bind(branch)
        .bind(version)
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| StoreError::db("reading a version", e))?;
        row.as_ref().map(entry_from_row).transpose()
    }

    /// Every version of a package branch, oldest first by version order.
    pub async fn versions(&self, package: &str, branch: &str) -> Result<Vec<Entry>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {ENTRY_COLUMNS} FROM ota WHERE name = $1 AND branch = $2"
        ))
        .bind(package)
        .bind(branch)
        .fetch_all(&self.pool)
        .await
        .map_err(|e| StoreError::db("listing versions", e))?;
        let mut out = rows
            .iter()
            .map(entry_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        sort_by_version(&mut out);
        Ok(out)
    }

    /// The highest version of a package branch.
    pub async fn max_version(
        &self,
        package: &str,
        branch: &str,
    ) -> Result<Option<Entry>, StoreError> {
        Ok(self.versions(package, branch).await?.pop())
    }

    /// Every package with its branches, by name.
    pub async fn packages(&self) -> Result<Vec<PackageSummary>, StoreError> {
        let rows = sqlx::query(
            "SELECT name, branch, COUNT(*) AS n FROM ota GROUP BY name, branch ORDER BY name, branch",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(|e| StoreError::db("listing packages", e))?;
        let mut map: BTreeMap<String, PackageSummary> = BTreeMap::new();
        for row in rows {
            let get = |e| StoreError::db("decoding a package row", e);
            let name: String = row.try_get("name").map_err(get)?;
            let branch: String = row.try_get("branch").map_err(get)?;
            let n: i64 = row.try_get("n").map_err(get)?;
            let p = map.entry(name.clone()).or_insert_with(|| PackageSummary {
                name,
                branches: Vec::new(),
                versions: 0,
            });
            p.branches.push(branch);
            p.versions += n.max(0) as u64;
        }
        Ok(map.into_values().collect())
    }

    /// Deletes one version; returns it if it existed.
    pub async fn delete(
        &self,
        package: &str,
        branch: &str,
        version: &str,
    ) -> Result<Option<Entry>, StoreError> {
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(|e| StoreError::db("begin", e))?;
        let row = sqlx::query(&format!(
            "DELETE FROM ota WHERE name = $1 AND branch = $2 AND version = $3 RETURNING {ENTRY_COLUMNS}"
        ))
        .bind(package)
        .bind(branch)
        .bind(version)
        .fetch_optional(&mut *tx)
        .await
        .map_err(|e| StoreError::db("deleting a version", e))?;
        let entry = row.as_ref().map(entry_from_row).transpose()?;
        if entry.is_some() {
            bump_generation(&mut tx).await?;
        }
        tx.commit()
            .await
            .map_err(|e| StoreError::db("committing a delete", e))?;
        Ok(entry)
    }

    /// How many rows (versions, deltas, ROM builds and target-files) reference
    /// a blob.
    pub async fn references(&self, sha256: &str) -> Result<u64, StoreError> {
        let row = sqlx::query(
            "SELECT (SELECT COUNT(*) FROM ota WHERE sha256 = $1)
                  + (SELECT COUNT(*) FROM deltas WHERE sha256 = $1)
                  + (SELECT COUNT(*) FROM rom_builds WHERE sha256 = $1)
                  + (SELECT COUNT(*) FROM rom_target_files WHERE sha256 = $1) AS n",
        )
        .bind(sha256)
        .fetch_one(&self.pool)
        .await
        .map_err(|e| StoreError::db("counting blob references", e))?;
        let n: i64 = row
            .try_get("n")
            .map_err(|e| StoreError::db("counting blob references", e))?;
        Ok(n.max(0) as u64)
    }

    /// Every blob hash some row (version, delta, ROM build, target-files)
    /// references.
    pub async fn all_hashes(&self) -> Result<HashSet<String>, StoreError> {
        let rows = sqlx::query(
            "SELECT sha256 FROM ota UNION SELECT sha256 FROM deltas
             UNION SELECT sha256 FROM rom_builds UNION SELECT sha256 FROM rom_target_files",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(|e| StoreError::db("listing blob references", e))?;
        rows.iter()
            .map(|r| {
                r.try_get::<String, _>("sha256")
                    .map_err(|e| StoreError::db("decoding a hash", e))
            })
            .collect()
    }

    /// Whether the catalogue is on PostgreSQL (where servers can share it,
    /// and writes are announced on the `ota_catalogue` and `ota_jobs`
    /// notification channels).
    pub fn is_postgres(&self) -> bool {
        self.backend == Backend::Postgres
    }

    /// Answers a trivial query: the database is reachable.
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map_err(|e| StoreError::db("pinging the database", e))?;
        Ok(())
    }

    /// A counter bumped by every write; servers sharing the database poll it
    /// to drop their in-memory answers when another server published.
    pub async fn generation(&self) -> Result<i64, StoreError> {
        let row = sqlx::query("SELECT generation FROM catalogue_generation WHERE id = 1")
            .fetch_one(&self.pool)
            .await
            .map_err(|e| StoreError::db("reading the catalogue generation", e))?;
        row.try_get("generation")
            .map_err(|e| StoreError::db("reading the catalogue generation", e))
    }

    /// Creates an API key with its scopes; returns the token, which is
    /// never stored. The name must not belong to another active key (a
    /// revoked key's name can be reused; the old row stays for the record).
    pub async fn create_key(&self, name: &str, scopes: &Scopes) -> Result<String, StoreError> {
        let key = apikey::generate();
        let res = sqlx::query(
            "INSERT INTO api_keys (name, key_id, secret_hash, created_at, scopes)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (name) WHERE revoked_at IS NULL DO NOTHING",
        )
        .bind(name)
        .bind(&key.id)
        .bind(&key.secret_hash)
        .bind(now())
        .bind(scopes.to_string())
        .execute(&self.pool)
        .await
        .map_err(|e| StoreError::db("creating an API key", e))?;
        if res.rows_affected() == 0 {
            return Err(StoreError::KeyExists(name.to_owned()));
        }
        Ok(key.token)
    }

    /// Every key, revoked ones included, by name then age.
    pub async fn list_keys(&self) -> Result<Vec<KeyInfo>, StoreError> {
        let rows = sqlx::query(
            "SELECT name, key_id, created_at, revoked_at, scopes, last_used_at FROM api_keys
             ORDER BY name, created_at, id",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(|e| StoreError::db("listing API keys", e))?;
        rows.iter()
            .map(|r| {
                let get = |e| StoreError::db("decoding an API key", e);
                Ok(KeyInfo {
                    name: r.try_get("name").map_err(get)?,
                    key_id: r.try_get("key_id").map_err(get)?,
                    created_at: r.try_get("created_at").map_err(get)?,
                    revoked_at: r.try_get("revoked_at").map_err(get)?,
                    scopes: r.try_get("scopes").map_err(get)?,
                    last_used_at: r.try_get("last_used_at").map_err(get)?,
                })
            })
            .collect()
    }

    /// Revokes a key by name; false if no active key has that name.
    pub async fn revoke_key(&self, name: &str) -> Result<bool, StoreError> {
        let res = sqlx::query(
            "UPDATE api_keys SET revoked_at = $1 WHERE name = $2 AND revoked_at IS NULL",
        )
        .bind(now())
        .bind(name)
        .execute(&self.pool)
        .await
        .map_err(|e| StoreError::db("revoking an API key", e))?;
        Ok(res.rows_affected() > 0)
    }

    /// Checks a presented token; returns the key's name and scopes when it
    /// is valid and not revoked, and records when it was last used (at most
    /// one write a minute per key, so authentication stays a read).
    pub async fn verify_key(&self, token: &str) -> Result<Option<KeyAuth>, StoreError> {
        let Some((id, hash)) = apikey::parse(token) else {
            return Ok(None);
        };
        let row = sqlx::query(
            "SELECT name, secret_hash, scopes, last_used_at FROM api_keys
             WHERE key_id = $1 AND revoked_at IS NULL",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| StoreError::db("checking an API key", e))?;
        let Some(row) = row else { return Ok(None) };
        let get = |e| StoreError::db("decoding an API key", e);
        let stored: String = row.try_get("secret_hash").map_err(get)?;
        if !apikey::hashes_equal(&stored, &hash) {
            return Ok(None);
        }
        let scopes: String = row.try_get("scopes").map_err(get)?;
        let scopes = scopes
            .parse::<Scopes>()
            .map_err(|e| StoreError::Corrupt(format!("API key {id}: {e}")))?;
        let last: Option<i64> = row.try_get("last_used_at").map_err(get)?;
        let t = now();
        if last.is_none_or(|l| t - l >= 60) {
            sqlx::query("UPDATE api_keys SET last_used_at = $1 WHERE key_id = $2")
                .bind(t)
                .bind(id)
                .execute(&self.pool)
                .await
                .map_err(|e| StoreError::db("recording an API key's use", e))?;
        }
        Ok(Some(KeyAuth {
            name: row.try_get("name").map_err(get)?,
            scopes,
        }))
    }
}

pub(crate) async fn bump_generation(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
) -> Result<(), StoreError> {
    sqlx::query("UPDATE catalogue_generation SET generation = generation + 1 WHERE id = 1")
        .execute(&mut **tx)
        .await
        .map_err(|e| StoreError::db("bumping the catalogue generation", e))?;
    Ok(())
}

fn same_json(a: &str, b: &str) -> bool {
    match (
        serde_json::from_str::<serde_json::Value>(a),
        serde_json::from_str::<serde_json::Value>(b),
    ) {
        (Ok(x), Ok(y)) => x == y,
        _ => a == b,
    }
}

/// Hides the password in a database URL for messages.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            match creds.split_once(':') {
                Some((user, _)) => format!("{}://{}:***@{}", &url[..s], user, &url[at + 1..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_password() {
        assert_eq!(redact("postgres://u:secret@h/db"), "postgres://u:***@h/db");
        assert_eq!(redact("sqlite:///x/ota.db"), "sqlite:///x/ota.db");
    }
}
