//! What the web admin needs beyond the client-facing queries: ROM devices
//! with or without builds (add, edit, remove), every build of a device
//! (published or not), changelog edits, and per-day counts for charts.

use crate::catalogue::{bump_generation, now, Catalogue, StoreError};
use crate::rom::{build_from_row, RomBuild, RomDevice, BUILD_COLUMNS, BUILD_FROM};
use sqlx::Row;

/// A ROM device with the number of its full builds.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct RomDeviceSummary {
    /// Codename, name, OEM.
    #[serde(flatten)]
    pub device: RomDevice,
    /// Full builds, published or not.
    pub builds: i64,
}

/// What removing a ROM device did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RomDeviceRemoval {
    /// Removed.
    Removed,
    /// No such device.
    Missing,
    /// It still has builds: unpublish or remove them first.
    HasBuilds,
}

/// Reports of one day, by result.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct DayCount {
    /// Days since 1970-01-01 (UTC).
    pub day: i64,
    /// Result (`success`, `failure`, …).
    pub result: String,
    /// How many.
    pub count: i64,
}

impl Catalogue {
    /// Adds a ROM device; false when the codename is taken.
    pub async fn add_rom_device(&self, d: &RomDevice) -> Result<bool, StoreError> {
        let res = sqlx::query(
            "INSERT INTO rom_devices (codename, name, oem, created_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (codename) DO NOTHING",
        )
        .bind(&d.codename)
        .bind(&d.name)
        .bind(&d.oem)
        .bind(now())
        .execute(&self.pool)
        .await
        .map_err(|e| StoreError::db("adding a ROM device", e))?;
        Ok(res.rows_affected() > 0)
    }

    /// Changes a ROM device's name and OEM; false when there is none. The
    /// device list clients read changes, so the generation is bumped.
    pub async fn edit_rom_device(&self, d: &RomDevice) -> Result<bool, StoreError> {
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(|e| StoreError::db("begin", e))?;
        let changed = sqlx::query(
            "UPDATE rom_devices SET name = $1, oem = $2 WHERE codename = $3 RETURNING codename",
        )
        .bind(&d.name)
        .bind(&d.oem)
        .bind(&d.codename)
        .fetch_optional(&mut *tx)
        .await
        .map_err(|e| StoreError::db("editing a ROM device", e))?;
        if changed.is_some() {
            bump_generation(&mut tx).await?;
        }
        tx.commit()
            .await
            .map_err(|e| StoreError::db("committing a ROM device edit", e))?;
        Ok(changed.is_some())
    }

    /// Removes a ROM device that has no builds (builds hold blobs and
    /// clients' history; a device with builds is refused).
    pub async fn remove_rom_device(&self, codename: &str) -> Result<RomDeviceRemoval, StoreError> {
        let removed = sqlx::query(
            "DELETE FROM rom_devices WHERE codename = $1
             AND NOT EXISTS (SELECT 1 FROM rom_builds b WHERE b.device = $1)
             RETURNING codename",
        )
        .bind(codename)
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| StoreError::db("removing a ROM device", e))?;
        if removed.is_some() {
            return Ok(RomDeviceRemoval::Removed);
        }
        let exists = sqlx::query("SELECT 1 AS one FROM rom_devices WHERE codename = $1")
            .bind(codename)
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| StoreError::db("reading a ROM device", e))?;
        Ok(if exists.is_some() {
            RomDeviceRemoval::HasBuilds
        } else {
            RomDeviceRemoval::Missing
        })
    }

    /// Every ROM device with its build count, by codename.
    pub async fn rom_devices_all(&self) -> Result<Vec<RomDeviceSummary>, StoreError> {
        let rows = sqlx::query(
            "SELECT d.codename, d.name, d.oem,
                    (SELECT COUNT(*) FROM rom_builds b WHERE b.device = d.codename) AS builds
             FROM rom_devices d ORDER BY d.codename",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(|e| StoreError::db("listing ROM devices", e))?;
        rows.iter()
            .map(|r| {
                let get = |e| StoreError::db("decoding a ROM device", e);
                Ok(RomDeviceSummary {
                    device: RomDevice {
                        codename: r.try_get("codename").map_err(get)?,
                        name: r.try_get("name").map_err(get)?,
                        oem: r.try_get("oem").map_err(get)?,
                    },
                    builds: r.try_get("builds").map_err(get)?,
                })
            })
            .collect()
    }

    /// One ROM device, with or without builds.
    pub async fn rom_device(&self, codename: &str) -> Result<Option<RomDevice>, StoreError> {
        let row = sqlx::query("SELECT codename, name, oem FROM rom_devices WHERE codename = $1")
            .bind(codename)
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| StoreError::db("reading a ROM device", e))?;
        let Some(r) = row else { return Ok(None) };
        let get = |e| StoreError::db("decoding a ROM device", e);
        Ok(Some(RomDevice {
            codename: r.try_get("codename").map_err(get)?,
            name: r.try_get("name").map_err(get)?,
            oem: r.try_get("oem").map_err(get)?,
        }))
    }

    /// Every full build of a device, published or not, by channel then
    /// newest first.
    pub async fn rom_builds_all(&self, device: &str) -> Result<Vec<RomBuild>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {BUILD_COLUMNS} FROM {BUILD_FROM} WHERE b.device = $1
             ORDER BY b.channel, b.build_timestamp DESC, b.id DESC"
        ))
        .bind(device)
        .fetch_all(&self.pool)
        .await
        .map_err(|e| StoreError::db("listing ROM builds", e))?;
        rows.iter().map(build_from_row).collect()
    }

    /// Replaces a full build's changelog; false when there is no such build.
    pub async fn set_rom_changelog(
        &self,
        device: &str,
        incremental: &str,
        changelog: &str,
    ) -> Result<bool, StoreError> {
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(|e| StoreError::db("begin", e))?;
        let changed = sqlx::query(
            "UPDATE rom_builds SET changelog = $1 WHERE device = $2 AND incremental = $3
             RETURNING id",
        )
        .bind(changelog)
        .bind(device)
        .bind(incremental)
        .fetch_optional(&mut *tx)
        .await
        .map_err(|e| StoreError::db("editing a changelog", e))?;
        if changed.is_some() {
            bump_generation(&mut tx).await?;
        }
        tx.commit()
            .await
            .map_err(|e| StoreError::db("committing a changelog", e))?;
        Ok(changed.is_some())
    }

    /// Device reports per day and result since `since` (Unix seconds).
    pub async fn report_counts_per_day(&self, since: i64) -> Result<Vec<DayCount>, StoreError> {
        let rows = sqlx::query(
            "SELECT received_at / 86400 AS day, result, COUNT(*) AS n FROM device_reports
             WHERE received_at >= $1 GROUP BY received_at / 86400, result ORDER BY day, result",
        )
        .bind(since)
        .fetch_all(&self.pool)
        .await
        .map_err(|e| StoreError::db("counting reports per day", e))?;
        rows.iter()
            .map(|r| {
                let get = |e| StoreError::db("decoding a report count", e);
                Ok(DayCount {
                    day: r.try_get("day").map_err(get)?,
                    result: r.try_get("result").map_err(get)?,
                    count: r.try_get("n").map_err(get)?,
                })
            })
            .collect()
    }
}
