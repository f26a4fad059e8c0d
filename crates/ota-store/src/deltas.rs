//! Deltas: stored patches from one version of a package branch to another.
//!
//! One table serves every protocol: the skip-list packs of the bundle
//! protocol (`level` set, two rows per edge: `upgrade` and `rollback`) and
//! any other source → target patch, such as a ROM's incremental build (the
//! CMUpdater `get_delta` lookup is [`Catalogue::deltas_between`]). A row,
//! like a version, is written only after its blob is durable.

use crate::catalogue::{now, Catalogue, StoreError};
use sqlx::any::AnyRow;
use sqlx::Row;

/// A delta to record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewDelta {
    /// Package name (or ROM device).
    pub package: String,
    /// Branch (or ROM channel).
    pub branch: String,
    /// The version the patch applies to.
    pub from_version: String,
    /// The version it produces.
    pub to_version: String,
    /// `upgrade` (to a newer version) or `rollback`.
    pub direction: String,
    /// Patch format: `otadiff1`, `otatree1`, `bsdiff40`, `android-incremental`, …
    pub format: String,
    /// Skip-list level, for packs of the bundle protocol.
    pub level: Option<i64>,
    /// SHA-256 of the patch blob.
    pub sha256: String,
    /// Size of the patch blob.
    pub size: u64,
    /// Digest of the version the patch produces (`ota_core::digest`).
    pub target_digest: Option<String>,
    /// Signature of the patch (base64 Ed25519), when signed.
    pub signature: Option<String>,
}

/// A stored delta.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delta {
    /// Row id.
    pub id: i64,
    /// What was recorded.
    pub delta: NewDelta,
    /// Unix seconds.
    pub created_at: i64,
}

const COLUMNS: &str = "id, package, branch, from_version, to_version, direction, format, level, \
                       sha256, size, target_digest, signature, created_at";

fn from_row(row: &AnyRow) -> Result<Delta, StoreError> {
    let get = |e| StoreError::db("decoding a delta row", e);
    let size: i64 = row.try_get("size").map_err(get)?;
    Ok(Delta {
        id: row.try_get("id").map_err(get)?,
        delta: NewDelta {
            package: row.try_get("package").map_err(get)?,
            branch: row.try_get("branch").map_err(get)?,
            from_version: row.try_get("from_version").map_err(get)?,
            to_version: row.try_get("to_version").map_err(get)?,
            direction: row.try_get("direction").map_err(get)?,
            format: row.try_get("format").map_err(get)?,
            level: row.try_get("level").map_err(get)?,
            sha256: row.try_get("sha256").map_err(get)?,
            size: u64::try_from(size)
                .map_err(|_| StoreError::Corrupt(format!("negative delta size {size}")))?,
            target_digest: row.try_get("target_digest").map_err(get)?,
            signature: row.try_get("signature").map_err(get)?,
        },
        created_at: row.try_get("created_at").map_err(get)?,
    })
}

impl Catalogue {
    /// Records a delta; recording the same (package, branch, from, to,
    /// format) again returns the row already there.
    pub async fn add_delta(&self, d: &NewDelta) -> Result<Delta, StoreError> {
        let size = i64::try_from(d.size)
            .map_err(|_| StoreError::Corrupt(format!("delta size {} too large", d.size)))?;
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(|e| StoreError::db("begin", e))?;
        let inserted = sqlx::query(
            "INSERT INTO deltas (package, branch, from_version, to_version, direction, format,
                                 level, sha256, size, target_digest, signature, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
             ON CONFLICT (package, branch, from_version, to_version, format) DO NOTHING
             RETURNING id",
        )
        .bind(&d.package)
        .bind(&d.branch)
        .bind(&d.from_version)
        .bind(&d.to_version)
        .bind(&d.direction)
        .bind(&d.format)
        .bind(d.level)
        .bind(&d.sha256)
        .bind(size)
        .bind(&d.target_digest)
        .bind(&d.signature)
        .bind(now())
        .fetch_optional(&mut *tx)
        .await
        .map_err(|e| StoreError::db("recording a delta", e))?;
        if inserted.is_some() {
            crate::catalogue::bump_generation(&mut tx).await?;
        }
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM deltas WHERE package = $1 AND branch = $2
             AND from_version = $3 AND to_version = $4 AND format = $5"
        ))
        .bind(&d.package)
        .bind(&d.branch)
        .bind(&d.from_version)
        .bind(&d.to_version)
        .bind(&d.format)
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| StoreError::db("reading a delta back", e))?;
        let delta = from_row(&row)?;
        tx.commit()
            .await
            .map_err(|e| StoreError::db("committing a delta", e))?;
        Ok(delta)
    }

    /// The deltas from one version to another, in any format (the lookup
    /// a CMUpdater `get_delta` request makes: source build → target build).
    pub async fn deltas_between(
        &self,
        package: &str,
        branch: &str,
        from: &str,
        to: &str,
    ) -> Result<Vec<Delta>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM deltas WHERE package = $1 AND branch = $2
             AND from_version = $3 AND to_version = $4 ORDER BY format"
        ))
        .bind(package)
        .bind(branch)
        .bind(from)
        .bind(to)
        .fetch_all(&self.pool)
        .await
        .map_err(|e| StoreError::db("looking up a delta", e))?;
        rows.iter().map(from_row).collect()
    }

    /// Every delta of a package branch, oldest first (to rebuild its map).
    pub async fn deltas(&self, package: &str, branch: &str) -> Result<Vec<Delta>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM deltas WHERE package = $1 AND branch = $2 ORDER BY id"
        ))
        .bind(package)
        .bind(branch)
        .fetch_all(&self.pool)
        .await
        .map_err(|e| StoreError::db("listing deltas", e))?;
        rows.iter().map(from_row).collect()
    }
}
