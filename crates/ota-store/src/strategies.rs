//! The update strategies document: stored whole, validated by the caller
//! (`ota_graph::strategy`) before it is written, read by every server.

use crate::catalogue::{now, Catalogue, StoreError};
use sqlx::Row;

/// The stored strategies.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredStrategies {
    /// The JSON text as given.
    pub body: String,
    /// Unix seconds.
    pub updated_at: i64,
    /// The API key (or `serve --strategy`) that set it.
    pub updated_by: String,
}

impl Catalogue {
    /// Replaces the strategies (the caller has validated `body`).
    pub async fn set_strategies(&self, body: &str, by: &str) -> Result<(), StoreError> {
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(|e| StoreError::db("begin", e))?;
        sqlx::query(
            "INSERT INTO strategies (id, body, updated_at, updated_by) VALUES (1, $1, $2, $3)
             ON CONFLICT (id) DO UPDATE SET body = $1, updated_at = $2, updated_by = $3",
        )
        .bind(body)
        .bind(now())
        .bind(by)
        .execute(&mut *tx)
        .await
        .map_err(|e| StoreError::db("storing the strategies", e))?;
        crate::catalogue::bump_generation(&mut tx).await?;
        tx.commit()
            .await
            .map_err(|e| StoreError::db("committing the strategies", e))
    }

    /// The strategies, if any were set.
    pub async fn strategies(&self) -> Result<Option<StoredStrategies>, StoreError> {
        let row = sqlx::query("SELECT body, updated_at, updated_by FROM strategies WHERE id = 1")
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| StoreError::db("reading the strategies", e))?;
        let Some(row) = row else { return Ok(None) };
        let get = |e| StoreError::db("decoding the strategies", e);
        Ok(Some(StoredStrategies {
            body: row.try_get("body").map_err(get)?,
            updated_at: row.try_get("updated_at").map_err(get)?,
            updated_by: row.try_get("updated_by").map_err(get)?,
        }))
    }
}
