//! The delta map's membership: which versions of a package branch are on
//! the skip-list, at which position.
//!
//! A version joins when it is published and is newer than every version
//! already on the list (positions only grow, so the packs already built stay
//! valid); a version published out of order is still served whole, but is
//! not a delta endpoint. Deleting a version keeps its row as a waypoint:
//! the packs through it stay usable.

use crate::catalogue::{now, Catalogue, StoreError};
use ota_core::version::Version;
use sqlx::Row;

/// A version on the delta map.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MapVersion {
    /// Position on the skip-list, from 0.
    pub position: u64,
    /// Version text.
    pub version: String,
    /// The version's digest (`ota_core::digest`), once computed.
    pub digest: Option<String>,
    /// Deleted from the catalogue: a waypoint only.
    pub deleted: bool,
}

/// What [`Catalogue::map_append`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MapAppend {
    /// Joined the map at this position.
    Appended(u64),
    /// Was already on the map at this position.
    Present(u64),
    /// Not newer than the last version on the map, which is named here.
    NotNewer(String),
}

fn parse(v: &str) -> Option<Version> {
    Version::parse(v).ok()
}

impl Catalogue {
    /// Puts a published version on its branch's delta map, after the
    /// newest one, unless it is not newer.
    pub async fn map_append(
        &self,
        package: &str,
        branch: &str,
        version: &str,
    ) -> Result<MapAppend, StoreError> {
        // Two servers appending at once collide on the primary key; the
        // loser reads the new last version and tries again.
        let mut last_err = None;
        for _ in 0..5 {
            match self.try_map_append(package, branch, version).await {
                Ok(r) => return Ok(r),
                Err(e) => last_err = Some(e),
            }
        }
        Err(last_err.unwrap_or_else(|| StoreError::Corrupt("map append".into())))
    }

    async fn try_map_append(
        &self,
        package: &str,
        branch: &str,
        version: &str,
    ) -> Result<MapAppend, StoreError> {
        let present = sqlx::query(
            "SELECT position FROM map_versions WHERE package = $1 AND branch = $2 AND version = $3",
        )
        .bind(package)
        .bind(branch)
        .bind(version)
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| StoreError::db("reading the delta map", e))?;
        if let Some(row) = present {
            let p: i64 = row
                .try_get("position")
                .map_err(|e| StoreError::db("decoding a map row", e))?;
            return Ok(MapAppend::Present(p.max(0) as u64));
        }
        let last = sqlx::query(
            "SELECT position, version FROM map_versions WHERE package = $1 AND branch = $2
             ORDER BY position DESC LIMIT 1",
        )
        .bind(package)
        .bind(branch)
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| StoreError::db("reading the delta map", e))?;
        let next = match last {
            None => 0,
            Some(row) => {
                let get = |e| StoreError::db("decoding a map row", e);
                let p: i64 = row.try_get("position").map_err(get)?;
                let v: String = row.try_get("version").map_err(get)?;
                if parse(version) <= parse(&v) {
                    return Ok(MapAppend::NotNewer(v));
                }
                p + 1
            }
        };
        sqlx::query(
            "INSERT INTO map_versions (package, branch, position, version, deleted, created_at)
             VALUES ($1, $2, $3, $4, 0, $5)",
        )
        .bind(package)
        .bind(branch)
        .bind(next)
        .bind(version)
        .bind(now())
        .execute(&self.pool)
        .await
        .map_err(|e| StoreError::db("appending to the delta map", e))?;
        Ok(MapAppend::Appended(next as u64))
    }

    /// A branch's delta map, by position.
    pub async fn map_versions(
        &self,
        package: &str,
        branch: &str,
    ) -> Result<Vec<MapVersion>, StoreError> {
        let rows = sqlx::query(
            "SELECT position, version, digest, deleted FROM map_versions
             WHERE package = $1 AND branch = $2 ORDER BY position",
        )
        .bind(package)
        .bind(branch)
        .fetch_all(&self.pool)
        .await
        .map_err(|e| StoreError::db("reading the delta map", e))?;
        rows.iter()
            .map(|row| {
                let get = |e| StoreError::db("decoding a map row", e);
                let p: i64 = row.try_get("position").map_err(get)?;
                let deleted: i32 = row.try_get("deleted").map_err(get)?;
                Ok(MapVersion {
                    position: u64::try_from(p)
                        .map_err(|_| StoreError::Corrupt(format!("map position {p}")))?,
                    version: row.try_get("version").map_err(get)?,
                    digest: row.try_get("digest").map_err(get)?,
                    deleted: deleted != 0,
                })
            })
            .collect()
    }

    /// Marks a version of the map deleted (a waypoint from now on).
    pub async fn map_delete(
        &self,
        package: &str,
        branch: &str,
        version: &str,
    ) -> Result<bool, StoreError> {
        let res = sqlx::query(
            "UPDATE map_versions SET deleted = 1 WHERE package = $1 AND branch = $2 AND version = $3",
        )
        .bind(package)
        .bind(branch)
        .bind(version)
        .execute(&self.pool)
        .await
        .map_err(|e| StoreError::db("marking a map version deleted", e))?;
        Ok(res.rows_affected() == 1)
    }

    /// Records a version's digest.
    pub async fn set_map_digest(
        &self,
        package: &str,
        branch: &str,
        version: &str,
        digest: &str,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE map_versions SET digest = $1 WHERE package = $2 AND branch = $3 AND version = $4",
        )
        .bind(digest)
        .bind(package)
        .bind(branch)
        .bind(version)
        .execute(&self.pool)
        .await
        .map_err(|e| StoreError::db("recording a version digest", e))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn appends_in_order_and_keeps_deleted_as_waypoints() {
        let dir = tempfile::tempdir().unwrap();
        let c = Catalogue::open(&Catalogue::sqlite_url_for(dir.path()))
            .await
            .unwrap();
        assert_eq!(
            c.map_append("p", "b", "1.0.0").await.unwrap(),
            MapAppend::Appended(0)
        );
        assert_eq!(
            c.map_append("p", "b", "1.1.0").await.unwrap(),
            MapAppend::Appended(1)
        );
        assert_eq!(
            c.map_append("p", "b", "1.1.0").await.unwrap(),
            MapAppend::Present(1)
        );
        assert_eq!(
            c.map_append("p", "b", "1.0.5").await.unwrap(),
            MapAppend::NotNewer("1.1.0".into())
        );
        assert_eq!(
            c.map_append("p", "other", "0.1.0").await.unwrap(),
            MapAppend::Appended(0)
        );
        assert!(c.map_delete("p", "b", "1.0.0").await.unwrap());
        c.set_map_digest("p", "b", "1.1.0", "ab").await.unwrap();
        let m = c.map_versions("p", "b").await.unwrap();
        assert_eq!(m.len(), 2);
        assert!(m[0].deleted && !m[1].deleted);
        assert_eq!(m[1].digest.as_deref(), Some("ab"));
        // 1.10.0 sorts after 1.9.0 by version, not text.
        c.map_append("p", "b", "1.9.0").await.unwrap();
        assert_eq!(
            c.map_append("p", "b", "1.10.0").await.unwrap(),
            MapAppend::Appended(3)
        );
    }
}
