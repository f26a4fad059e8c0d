//! Settings every server sharing the catalogue must agree on.

use crate::catalogue::{Catalogue, StoreError};
use sqlx::Row;

impl Catalogue {
    /// Stores `value` under `name` unless a value is there already, and
    /// returns the value in force (the one stored first wins).
    pub async fn setting_or_insert(&self, name: &str, value: &str) -> Result<String, StoreError> {
        sqlx::query(
            "INSERT INTO settings (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .bind(value)
        .execute(&self.pool)
        .await
        .map_err(|e| StoreError::db("storing a setting", e))?;
        let row = sqlx::query("SELECT value FROM settings WHERE name = $1")
            .bind(name)
            .fetch_one(&self.pool)
            .await
            .map_err(|e| StoreError::db("reading a setting", e))?;
        row.try_get("value")
            .map_err(|e| StoreError::db("decoding a setting", e))
    }

    /// Replaces a setting (an operator rotating the signing key).
    pub async fn set_setting(&self, name: &str, value: &str) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO settings (name, value) VALUES ($1, $2)
             ON CONFLICT (name) DO UPDATE SET value = excluded.value",
        )
        .bind(name)
        .bind(value)
        .execute(&self.pool)
        .await
        .map_err(|e| StoreError::db("storing a setting", e))?;
        Ok(())
    }
}
