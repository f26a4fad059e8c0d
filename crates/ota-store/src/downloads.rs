//! Downloads per day and kind, for the admin's chart. Servers count in
//! memory and add their counts here about once a minute, so a download
//! costs no database write.

use crate::catalogue::{Catalogue, StoreError};
use crate::rom_admin::DayCount;
use sqlx::Row;

/// Counts to add for one day and kind.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DownloadCount {
    /// Days since 1970-01-01 (UTC).
    pub day: i64,
    /// `package`, `rom` or `bundle`.
    pub kind: String,
    /// Downloads started (requests from the first byte).
    pub downloads: i64,
    /// Bytes the answers declared.
    pub bytes: i64,
}

impl Catalogue {
    /// Adds counts to the stored ones, in one transaction.
    pub async fn add_download_counts(&self, counts: &[DownloadCount]) -> Result<(), StoreError> {
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(|e| StoreError::db("begin", e))?;
        for c in counts {
            sqlx::query(
                "INSERT INTO download_counts (day, kind, downloads, bytes) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (day, kind) DO UPDATE
                 SET downloads = download_counts.downloads + excluded.downloads,
                     bytes = download_counts.bytes + excluded.bytes",
            )
            .bind(c.day)
            .bind(&c.kind)
            .bind(c.downloads)
            .bind(c.bytes)
            .execute(&mut *tx)
            .await
            .map_err(|e| StoreError::db("adding download counts", e))?;
        }
        tx.commit()
            .await
            .map_err(|e| StoreError::db("committing download counts", e))
    }

    /// Downloads per day and kind since `since_day` (days since 1970),
    /// as [`DayCount`]s whose `result` is the kind.
    pub async fn download_counts_per_day(
        &self,
        since_day: i64,
    ) -> Result<Vec<DayCount>, StoreError> {
        let rows = sqlx::query(
            "SELECT day, kind, downloads FROM download_counts WHERE day >= $1 ORDER BY day, kind",
        )
        .bind(since_day)
        .fetch_all(&self.pool)
        .await
        .map_err(|e| StoreError::db("reading download counts", e))?;
        let get = |e| StoreError::db("decoding download counts", e);
        rows.iter()
            .map(|r| {
                Ok(DayCount {
                    day: r.try_get("day").map_err(get)?,
                    result: r.try_get("kind").map_err(get)?,
                    count: r.try_get("downloads").map_err(get)?,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn counts_add_up_per_day_and_kind() {
        let dir = tempfile::tempdir().unwrap();
        let cat = Catalogue::open(&Catalogue::sqlite_url_for(dir.path()))
            .await
            .unwrap();
        let c = |day, kind: &str, n| DownloadCount {
            day,
            kind: kind.into(),
            downloads: n,
            bytes: n * 10,
        };
        cat.add_download_counts(&[c(10, "package", 2), c(10, "rom", 1)])
            .await
            .unwrap();
        cat.add_download_counts(&[c(10, "package", 3), c(11, "bundle", 1)])
            .await
            .unwrap();
        let got: Vec<(i64, String, i64)> = cat
            .download_counts_per_day(10)
            .await
            .unwrap()
            .into_iter()
            .map(|d| (d.day, d.result, d.count))
            .collect();
        assert_eq!(
            got,
            [
                (10, "package".into(), 5),
                (10, "rom".into(), 1),
                (11, "bundle".into(), 1)
            ]
        );
        assert_eq!(cat.download_counts_per_day(11).await.unwrap().len(), 1);
    }
}
