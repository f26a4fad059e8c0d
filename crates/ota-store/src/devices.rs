//! The fleet: devices registered to run the agent, each with a token the
//! agent authenticates its reports with, what it reported last, and its
//! most recent reports ([`REPORTS_KEPT`] per device).

use crate::catalogue::{now, Catalogue, StoreError};
use ota_core::apikey;
use sqlx::any::AnyRow;
use sqlx::Row;

/// Reports kept per device; older ones are dropped as new ones arrive.
pub const REPORTS_KEPT: i64 = 100;

/// A registered device and what it last reported.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Device {
    /// Its name (the agent config's `device`).
    pub name: String,
    /// Free text.
    pub description: String,
    /// Registration time (Unix seconds).
    pub created_at: i64,
    /// Time of its last report.
    pub last_seen: Option<i64>,
    /// Result of its last report (`success`, `failure`, …).
    pub last_result: Option<String>,
    /// Error text of its last report, if it failed.
    pub last_error: Option<String>,
    /// Installed versions as a JSON object `{package: version}`.
    pub installed: String,
}

/// One stored report.
#[derive(Clone, Debug, serde::Serialize)]
pub struct DeviceReport {
    /// Row id (increasing).
    pub id: i64,
    /// When the server received it (Unix seconds).
    pub received_at: i64,
    /// Its result.
    pub result: String,
    /// The report as the device sent it (JSON text).
    pub report: String,
}

/// A report to record.
pub struct NewReport<'a> {
    /// Result (`success`, `failure`, `up-to-date`, …).
    pub result: &'a str,
    /// Error text for a failure.
    pub error: Option<&'a str>,
    /// Installed versions, a JSON object.
    pub installed: &'a str,
    /// The whole report, JSON text.
    pub report: &'a str,
}

fn device_from(r: &AnyRow) -> Result<Device, StoreError> {
    let get = |e| StoreError::db("decoding a device", e);
    Ok(Device {
        name: r.try_get("name").map_err(get)?,
        description: r.try_get("description").map_err(get)?,
        created_at: r.try_get("created_at").map_err(get)?,
        last_seen: r.try_get("last_seen").map_err(get)?,
        last_result: r.try_get("last_result").map_err(get)?,
        last_error: r.try_get("last_error").map_err(get)?,
        installed: r.try_get("installed").map_err(get)?,
    })
}

const DEVICE_COLUMNS: &str =
    "name, description, created_at, last_seen, last_result, last_error, installed";

impl Catalogue {
    /// Registers a device; returns its token, which is never stored (only
    /// its hash is).
    pub async fn add_device(&self, name: &str, description: &str) -> Result<String, StoreError> {
        let key = apikey::generate();
        let res = sqlx::query(
            "INSERT INTO devices (name, description, token_id, token_hash, created_at)
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .bind(description)
        .bind(&key.id)
        .bind(&key.secret_hash)
        .bind(now())
        .execute(&self.pool)
        .await
        .map_err(|e| StoreError::db("registering a device", e))?;
        if res.rows_affected() == 0 {
            return Err(StoreError::DeviceExists(name.to_owned()));
        }
        Ok(key.token)
    }

    /// Removes a device and its reports; false if there was none.
    pub async fn remove_device(&self, name: &str) -> Result<bool, StoreError> {
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(|e| StoreError::db("removing a device", e))?;
        let gone = sqlx::query("DELETE FROM devices WHERE name = $1")
            .bind(name)
            .execute(&mut *tx)
            .await
            .map_err(|e| StoreError::db("removing a device", e))?
            .rows_affected();
        sqlx::query("DELETE FROM device_reports WHERE device = $1")
            .bind(name)
            .execute(&mut *tx)
            .await
            .map_err(|e| StoreError::db("removing a device's reports", e))?;
        tx.commit()
            .await
            .map_err(|e| StoreError::db("removing a device", e))?;
        Ok(gone > 0)
    }

    /// Every device, by name.
    pub async fn devices(&self) -> Result<Vec<Device>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {DEVICE_COLUMNS} FROM devices ORDER BY name"
        ))
        .fetch_all(&self.pool)
        .await
        .map_err(|e| StoreError::db("listing devices", e))?;
        rows.iter().map(device_from).collect()
    }

    /// One device.
    pub async fn device(&self, name: &str) -> Result<Option<Device>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {DEVICE_COLUMNS} FROM devices WHERE name = $1"
        ))
        .bind(name)
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| StoreError::db("reading a device", e))?;
        row.as_ref().map(device_from).transpose()
    }

    /// True when `token` is the device's token (compared in constant time).
    pub async fn device_token_valid(&self, name: &str, token: &str) -> Result<bool, StoreError> {
        let Some((id, hash)) = apikey::parse(token) else {
            return Ok(false);
        };
        let row = sqlx::query("SELECT token_id, token_hash FROM devices WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| StoreError::db("reading a device token", e))?;
        let Some(row) = row else { return Ok(false) };
        let get = |e| StoreError::db("decoding a device token", e);
        let stored_id: String = row.try_get("token_id").map_err(get)?;
        let stored_hash: String = row.try_get("token_hash").map_err(get)?;
        Ok(stored_id == id && apikey::hashes_equal(&stored_hash, &hash))
    }

    /// Records a report: the device's last state, and the report itself
    /// (keeping the newest [`REPORTS_KEPT`]). False if the device is unknown.
    pub async fn record_report(&self, name: &str, r: &NewReport<'_>) -> Result<bool, StoreError> {
        let at = now();
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(|e| StoreError::db("recording a report", e))?;
        let updated = sqlx::query(
            "UPDATE devices SET last_seen = $1, last_result = $2, last_error = $3, installed = $4
             WHERE name = $5",
        )
        .bind(at)
        .bind(r.result)
        .bind(r.error)
        .bind(r.installed)
        .bind(name)
        .execute(&mut *tx)
        .await
        .map_err(|e| StoreError::db("recording a report", e))?
        .rows_affected();
        if updated == 0 {
            return Ok(false);
        }
        sqlx::query(
            "INSERT INTO device_reports (device, received_at, result, report)
             VALUES ($1, $2, $3, $4)",
        )
        .bind(name)
        .bind(at)
        .bind(r.result)
        .bind(r.report)
        .execute(&mut *tx)
        .await
        .map_err(|e| StoreError::db("storing a report", e))?;
        sqlx::query(
            "DELETE FROM device_reports WHERE device = $1 AND id <= (
                 SELECT id FROM device_reports WHERE device = $1
                 ORDER BY id DESC LIMIT 1 OFFSET $2)",
        )
        .bind(name)
        .bind(REPORTS_KEPT)
        .execute(&mut *tx)
        .await
        .map_err(|e| StoreError::db("pruning old reports", e))?;
        tx.commit()
            .await
            .map_err(|e| StoreError::db("recording a report", e))?;
        Ok(true)
    }

    /// A device's newest reports, newest first.
    pub async fn device_reports(
        &self,
        name: &str,
        limit: i64,
    ) -> Result<Vec<DeviceReport>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, received_at, result, report FROM device_reports
             WHERE device = $1 ORDER BY id DESC LIMIT $2",
        )
        .bind(name)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(|e| StoreError::db("listing reports", e))?;
        rows.iter()
            .map(|r| {
                let get = |e| StoreError::db("decoding a report", e);
                Ok(DeviceReport {
                    id: r.try_get("id").map_err(get)?,
                    received_at: r.try_get("received_at").map_err(get)?,
                    result: r.try_get("result").map_err(get)?,
                    report: r.try_get("report").map_err(get)?,
                })
            })
            .collect()
    }
}
