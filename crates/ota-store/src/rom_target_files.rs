//! Target-files of ROM builds, uploaded once for the server to build from.
//!
//! A row records the upload (device, channel, incremental, build
//! timestamp, blob) and what the publisher asked for: the changelog and
//! published state of the full build, and how many earlier builds get an
//! incremental to it. Jobs build the packages; the row stays so later
//! builds can use it as a source. Its blob is counted by
//! [`Catalogue::all_hashes`].

use crate::catalogue::{now, Catalogue, StoreError};
use crate::rom::RomPublish;
use sqlx::any::AnyRow;
use sqlx::Row;

/// Target-files to record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewRomTargetFiles {
    /// Device codename (`ro.product.device`).
    pub device: String,
    /// Channel of the build.
    pub channel: String,
    /// `ro.build.version.incremental`.
    pub incremental: String,
    /// `ro.build.date.utc`.
    pub timestamp: i64,
    /// SHA-256 of the target-files zip (its blob).
    pub sha256: String,
    /// Bytes.
    pub size: u64,
    /// Changelog of the full build.
    pub changelog: String,
    /// Offer the full build to clients once built.
    pub published: bool,
    /// Incrementals to build: from this many earlier builds.
    pub sources: i64,
    /// The API key that uploaded it.
    pub uploaded_by: String,
}

/// Stored target-files.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RomTargetFiles {
    /// Row id.
    pub id: i64,
    /// What was recorded.
    pub new: NewRomTargetFiles,
    /// Unix seconds.
    pub created_at: i64,
}

const COLUMNS: &str = "id, device, channel, incremental, build_timestamp, sha256, size, \
    changelog, published, sources, uploaded_by, created_at";

fn from_row(row: &AnyRow) -> Result<RomTargetFiles, StoreError> {
    let get = |e| StoreError::db("decoding a target-files row", e);
    let size: i64 = row.try_get("size").map_err(get)?;
    let published: i32 = row.try_get("published").map_err(get)?;
    Ok(RomTargetFiles {
        id: row.try_get("id").map_err(get)?,
        new: NewRomTargetFiles {
            device: row.try_get("device").map_err(get)?,
            channel: row.try_get("channel").map_err(get)?,
            incremental: row.try_get("incremental").map_err(get)?,
            timestamp: row.try_get("build_timestamp").map_err(get)?,
            sha256: row.try_get("sha256").map_err(get)?,
            size: u64::try_from(size)
                .map_err(|_| StoreError::Corrupt(format!("target-files size {size}")))?,
            changelog: row.try_get("changelog").map_err(get)?,
            published: published != 0,
            sources: row.try_get("sources").map_err(get)?,
            uploaded_by: row.try_get("uploaded_by").map_err(get)?,
        },
        created_at: row.try_get("created_at").map_err(get)?,
    })
}

impl Catalogue {
    /// Records uploaded target-files. The same file for the same build
    /// again is [`RomPublish::Identical`] (its jobs may be queued again);
    /// another file under the same incremental is a conflict.
    pub async fn add_rom_target_files(
        &self,
        new: &NewRomTargetFiles,
    ) -> Result<RomPublish<RomTargetFiles>, StoreError> {
        let size = i64::try_from(new.size)
            .map_err(|_| StoreError::Corrupt(format!("size {} too large", new.size)))?;
        let inserted = sqlx::query(
            "INSERT INTO rom_target_files (device, channel, incremental, build_timestamp, sha256,
                 size, changelog, published, sources, uploaded_by, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
             ON CONFLICT DO NOTHING RETURNING id",
        )
        .bind(&new.device)
        .bind(&new.channel)
        .bind(&new.incremental)
        .bind(new.timestamp)
        .bind(&new.sha256)
        .bind(size)
        .bind(&new.changelog)
        .bind(i32::from(new.published))
        .bind(new.sources)
        .bind(&new.uploaded_by)
        .bind(now())
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| StoreError::db("recording target-files", e))?;
        let stored = self
            .rom_target_files(&new.device, &new.incremental)
            .await?
            .ok_or_else(|| StoreError::Corrupt("target-files row vanished".into()))?;
        let s = &stored.new;
        Ok(if inserted.is_some() {
            RomPublish::Inserted(stored)
        } else if s.sha256 == new.sha256 && s.channel == new.channel {
            RomPublish::Identical(stored)
        } else {
            RomPublish::Conflict(format!(
                "target-files of build {} of {} are already stored (channel {}, SHA-256 {})",
                s.incremental, s.device, s.channel, s.sha256
            ))
        })
    }

    /// The target-files of one build.
    pub async fn rom_target_files(
        &self,
        device: &str,
        incremental: &str,
    ) -> Result<Option<RomTargetFiles>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM rom_target_files WHERE device = $1 AND incremental = $2"
        ))
        .bind(device)
        .bind(incremental)
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| StoreError::db("reading target-files", e))?;
        row.as_ref().map(from_row).transpose()
    }

    /// Sources for the incrementals of a new build: the target-files of
    /// the newest `limit` published full builds of `device` on `channel`
    /// that are older than `before` (a build timestamp), newest first.
    pub async fn rom_target_files_sources(
        &self,
        device: &str,
        channel: &str,
        before: i64,
        limit: i64,
    ) -> Result<Vec<RomTargetFiles>, StoreError> {
        let cols: Vec<String> = COLUMNS.split(", ").map(|c| format!("t.{c}")).collect();
        let rows = sqlx::query(&format!(
            "SELECT {} FROM rom_target_files t
             JOIN rom_builds b ON b.device = t.device AND b.incremental = t.incremental
             WHERE t.device = $1 AND b.channel = $2 AND b.published = 1
               AND b.build_timestamp < $3
             ORDER BY b.build_timestamp DESC, b.id DESC LIMIT $4",
            cols.join(", ")
        ))
        .bind(device)
        .bind(channel)
        .bind(before)
        .bind(limit.max(0))
        .fetch_all(&self.pool)
        .await
        .map_err(|e| StoreError::db("listing target-files sources", e))?;
        rows.iter().map(from_row).collect()
    }
}
