//! ROM builds for the CMUpdater and LineageOS Updater clients.
//!
//! Model: a **device** (`rom_devices`: codename, name, OEM) has **full
//! builds** (`rom_builds`), one per `ro.build.version.incremental`, each on a
//! **channel** (`stable`, `RC`, `snapshot`, `nightly` or any other name; a
//! column, not a table) with its LineageOS `romtype`. An **incremental
//! build** is a row of `deltas` (package `rom:<codename>`, branch = the
//! target build's channel, from/to = the source and target incrementals,
//! format `android-incremental`), the same table the bundle protocol's packs
//! live in, so one lookup (`from_version`, `to_version`) answers `get_delta`;
//! `rom_incrementals` adds, by delta id, what only these clients read: the
//! file name and MD5. Package names cannot contain `:`, so `rom:` rows never
//! meet a package's.
//!
//! Every blob a ROM row references is counted by [`Catalogue::all_hashes`];
//! every write to builds or incrementals bumps the catalogue generation.
//! Client reports (`POST /api/report`) do not: they change no answer, and
//! an unauthenticated flood must not empty every server's caches.

use crate::catalogue::{bump_generation, now, Catalogue, StoreError};
use sqlx::any::AnyRow;
use sqlx::Row;

/// The `deltas.package` of a device's incremental builds.
pub fn rom_package(codename: &str) -> String {
    format!("rom:{codename}")
}

/// The delta format of an incremental OTA package.
pub const INCREMENTAL_FORMAT: &str = "android-incremental";

/// Reports kept; older ones are dropped as new ones arrive.
pub const ROM_REPORTS_KEPT: i64 = 100_000;

/// A ROM device.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct RomDevice {
    /// `ro.product.device`.
    pub codename: String,
    /// A friendly name (`ro.product.model`, else the codename).
    pub name: String,
    /// The maker (`ro.product.brand`), may be empty.
    pub oem: String,
}

/// A full build to record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewRomBuild {
    /// The device (created on first publish).
    pub device: RomDevice,
    /// Channel.
    pub channel: String,
    /// `ro.build.version.incremental`.
    pub incremental: String,
    /// `ro.build.date.utc`.
    pub timestamp: i64,
    /// `ro.build.version.sdk` (0: unknown, clients then compare timestamps).
    pub api_level: i64,
    /// ROM version (`ro.lineage.build.version`, …).
    pub version: String,
    /// LineageOS release type, lowercase.
    pub romtype: String,
    /// File name clients save it as.
    pub filename: String,
    /// Bytes.
    pub size: u64,
    /// MD5, hex (CMUpdater checks it).
    pub md5: String,
    /// SHA-256, hex: the blob.
    pub sha256: String,
    /// Plain-text changelog.
    pub changelog: String,
    /// Offered to clients.
    pub published: bool,
}

/// A stored full build.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RomBuild {
    /// Row id.
    pub id: i64,
    /// What was recorded (the device by codename only: name and OEM as given).
    pub build: NewRomBuild,
    /// Unix seconds.
    pub created_at: i64,
}

/// An incremental build to record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewRomIncremental {
    /// Device codename.
    pub device: String,
    /// Incremental of the build it applies to.
    pub source_incremental: String,
    /// Incremental of the build it produces (must be a stored full build).
    pub target_incremental: String,
    /// File name.
    pub filename: String,
    /// Bytes.
    pub size: u64,
    /// MD5, hex.
    pub md5: String,
    /// SHA-256, hex: the blob.
    pub sha256: String,
}

/// A stored incremental build.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RomIncremental {
    /// The `deltas` row id.
    pub id: i64,
    /// Channel of the target build.
    pub channel: String,
    /// What was recorded.
    pub incremental: NewRomIncremental,
    /// Unix seconds.
    pub created_at: i64,
}

/// What publishing a ROM build or incremental did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RomPublish<T> {
    /// A new row.
    Inserted(T),
    /// The same file was already recorded the same way.
    Identical(T),
    /// Another file (or another channel) holds this build or file name.
    Conflict(String),
    /// An incremental whose target build is not stored.
    UnknownTarget,
}

pub(crate) const BUILD_COLUMNS: &str = "b.id, b.device, d.name, d.oem, b.channel, b.incremental, \
    b.build_timestamp, b.api_level, b.version, b.romtype, b.filename, b.size, b.md5, b.sha256, \
    b.changelog, b.published, b.created_at";
pub(crate) const BUILD_FROM: &str = "rom_builds b JOIN rom_devices d ON d.codename = b.device";

const INC_COLUMNS: &str = "x.id, x.branch, x.from_version, x.to_version, x.sha256, x.size, \
    x.created_at, r.device, r.filename, r.md5";
const INC_FROM: &str = "deltas x JOIN rom_incrementals r ON r.delta_id = x.id";

fn size_of(row: &AnyRow, what: &str) -> Result<u64, StoreError> {
    let size: i64 = row
        .try_get("size")
        .map_err(|e| StoreError::db(format!("decoding a {what} row"), e))?;
    u64::try_from(size).map_err(|_| StoreError::Corrupt(format!("negative {what} size {size}")))
}

pub(crate) fn build_from_row(row: &AnyRow) -> Result<RomBuild, StoreError> {
    let get = |e| StoreError::db("decoding a ROM build row", e);
    let published: i32 = row.try_get("published").map_err(get)?;
    Ok(RomBuild {
        id: row.try_get("id").map_err(get)?,
        build: NewRomBuild {
            device: RomDevice {
                codename: row.try_get("device").map_err(get)?,
                name: row.try_get("name").map_err(get)?,
                oem: row.try_get("oem").map_err(get)?,
            },
            channel: row.try_get("channel").map_err(get)?,
            incremental: row.try_get("incremental").map_err(get)?,
            timestamp: row.try_get("build_timestamp").map_err(get)?,
            api_level: row.try_get("api_level").map_err(get)?,
            version: row.try_get("version").map_err(get)?,
            romtype: row.try_get("romtype").map_err(get)?,
            filename: row.try_get("filename").map_err(get)?,
            size: size_of(row, "ROM build")?,
            md5: row.try_get("md5").map_err(get)?,
            sha256: row.try_get("sha256").map_err(get)?,
            changelog: row.try_get("changelog").map_err(get)?,
            published: published != 0,
        },
        created_at: row.try_get("created_at").map_err(get)?,
    })
}

fn incremental_from_row(row: &AnyRow) -> Result<RomIncremental, StoreError> {
    let get = |e| StoreError::db("decoding a ROM incremental row", e);
    Ok(RomIncremental {
        id: row.try_get("id").map_err(get)?,
        channel: row.try_get("branch").map_err(get)?,
        incremental: NewRomIncremental {
            device: row.try_get("device").map_err(get)?,
            source_incremental: row.try_get("from_version").map_err(get)?,
            target_incremental: row.try_get("to_version").map_err(get)?,
            filename: row.try_get("filename").map_err(get)?,
            size: size_of(row, "ROM incremental")?,
            md5: row.try_get("md5").map_err(get)?,
            sha256: row.try_get("sha256").map_err(get)?,
        },
        created_at: row.try_get("created_at").map_err(get)?,
    })
}

type Tx<'a> = sqlx::Transaction<'a, sqlx::Any>;

async fn begin(cat: &Catalogue) -> Result<Tx<'_>, StoreError> {
    cat.pool
        .begin()
        .await
        .map_err(|e| StoreError::db("begin", e))
}

async fn commit(tx: Tx<'_>, what: &str) -> Result<(), StoreError> {
    tx.commit()
        .await
        .map_err(|e| StoreError::db(format!("committing {what}"), e))
}

/// Records an incremental's file name and MD5 beside its delta row; false
/// when the device already has a file of that name.
async fn name_incremental(
    tx: &mut Tx<'_>,
    delta_id: i64,
    new: &NewRomIncremental,
) -> Result<bool, StoreError> {
    let named = sqlx::query(
        "INSERT INTO rom_incrementals (delta_id, device, filename, md5)
         VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING RETURNING delta_id",
    )
    .bind(delta_id)
    .bind(&new.device)
    .bind(&new.filename)
    .bind(&new.md5)
    .fetch_optional(&mut **tx)
    .await
    .map_err(|e| StoreError::db("naming a ROM incremental", e))?;
    Ok(named.is_some())
}

impl Catalogue {
    /// Records a full build (and its device, the first time). Re-publishing
    /// the same file on the same channel is [`RomPublish::Identical`];
    /// anything else under the same incremental or file name is a conflict.
    pub async fn publish_rom_build(
        &self,
        new: &NewRomBuild,
    ) -> Result<RomPublish<RomBuild>, StoreError> {
        let size = i64::try_from(new.size)
            .map_err(|_| StoreError::Corrupt(format!("size {} too large", new.size)))?;
        let mut tx = begin(self).await?;
        // The device first: the write opens the transaction.
        sqlx::query(
            "INSERT INTO rom_devices (codename, name, oem, created_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (codename) DO NOTHING",
        )
        .bind(&new.device.codename)
        .bind(&new.device.name)
        .bind(&new.device.oem)
        .bind(now())
        .execute(&mut *tx)
        .await
        .map_err(|e| StoreError::db("recording a ROM device", e))?;
        let inserted = sqlx::query(
            "INSERT INTO rom_builds (device, channel, incremental, build_timestamp, api_level,
                 version, romtype, filename, size, md5, sha256, changelog, published, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
             ON CONFLICT DO NOTHING RETURNING id",
        )
        .bind(&new.device.codename)
        .bind(&new.channel)
        .bind(&new.incremental)
        .bind(new.timestamp)
        .bind(new.api_level)
        .bind(&new.version)
        .bind(&new.romtype)
        .bind(&new.filename)
        .bind(size)
        .bind(&new.md5)
        .bind(&new.sha256)
        .bind(&new.changelog)
        .bind(i32::from(new.published))
        .bind(now())
        .fetch_optional(&mut *tx)
        .await
        .map_err(|e| StoreError::db("recording a ROM build", e))?;
        if inserted.is_some() {
            bump_generation(&mut tx).await?;
        }
        let row = sqlx::query(&format!(
            "SELECT {BUILD_COLUMNS} FROM {BUILD_FROM} WHERE b.device = $1
             AND (b.incremental = $2 OR b.filename = $3) ORDER BY b.incremental = $2 DESC"
        ))
        .bind(&new.device.codename)
        .bind(&new.incremental)
        .bind(&new.filename)
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| StoreError::db("reading a ROM build back", e))?;
        let stored = build_from_row(&row)?;
        commit(tx, "a ROM build").await?;
        let b = &stored.build;
        Ok(if inserted.is_some() {
            RomPublish::Inserted(stored)
        } else if b.incremental != new.incremental {
            RomPublish::Conflict(format!(
                "file name {:?} already belongs to build {} of {}",
                new.filename, b.incremental, b.device.codename
            ))
        } else if b.sha256 == new.sha256 && b.channel == new.channel {
            RomPublish::Identical(stored)
        } else {
            RomPublish::Conflict(format!(
                "build {} of {} is already published ({} on channel {}, SHA-256 {})",
                b.incremental, b.device.codename, b.filename, b.channel, b.sha256
            ))
        })
    }

    /// Records an incremental build as a delta row plus its file name and
    /// MD5, in one transaction. Its target must be a stored full build of
    /// the same device; the source need not be (a build published
    /// elsewhere, or before this server).
    pub async fn publish_rom_incremental(
        &self,
        new: &NewRomIncremental,
    ) -> Result<RomPublish<RomIncremental>, StoreError> {
        let size = i64::try_from(new.size)
            .map_err(|_| StoreError::Corrupt(format!("size {} too large", new.size)))?;
        let mut tx = begin(self).await?;
        let inserted = sqlx::query(
            "INSERT INTO deltas (package, branch, from_version, to_version, direction, format,
                                 level, sha256, size, target_digest, signature, created_at)
             SELECT $1, b.channel, $2, b.incremental,
                    CASE WHEN COALESCE((SELECT s.build_timestamp FROM rom_builds s
                                        WHERE s.device = $3 AND s.incremental = $2), 0)
                              > b.build_timestamp THEN 'rollback' ELSE 'upgrade' END,
                    $4, CAST(NULL AS INTEGER), $5, $6, CAST(NULL AS TEXT), CAST(NULL AS TEXT), $7
             FROM rom_builds b WHERE b.device = $3 AND b.incremental = $8
             ON CONFLICT DO NOTHING RETURNING id",
        )
        .bind(rom_package(&new.device))
        .bind(&new.source_incremental)
        .bind(&new.device)
        .bind(INCREMENTAL_FORMAT)
        .bind(&new.sha256)
        .bind(size)
        .bind(now())
        .bind(&new.target_incremental)
        .fetch_optional(&mut *tx)
        .await
        .map_err(|e| StoreError::db("recording a ROM incremental", e))?;
        let mut inserted_id = None;
        if let Some(row) = inserted {
            let id: i64 = row
                .try_get("id")
                .map_err(|e| StoreError::db("reading a delta id", e))?;
            if !name_incremental(&mut tx, id, new).await? {
                // Dropping the transaction rolls the delta row back.
                return Ok(RomPublish::Conflict(format!(
                    "file name {:?} already belongs to another incremental of {}",
                    new.filename, new.device
                )));
            }
            bump_generation(&mut tx).await?;
            inserted_id = Some(id);
        }
        let row = sqlx::query(&format!(
            "SELECT {INC_COLUMNS} FROM {INC_FROM} WHERE x.package = $1
             AND x.from_version = $2 AND x.to_version = $3 AND x.format = $4"
        ))
        .bind(rom_package(&new.device))
        .bind(&new.source_incremental)
        .bind(&new.target_incremental)
        .bind(INCREMENTAL_FORMAT)
        .fetch_optional(&mut *tx)
        .await
        .map_err(|e| StoreError::db("reading a ROM incremental back", e))?;
        let stored = row.as_ref().map(incremental_from_row).transpose()?;
        commit(tx, "a ROM incremental").await?;
        Ok(match stored {
            None => RomPublish::UnknownTarget,
            Some(s) if inserted_id == Some(s.id) => RomPublish::Inserted(s),
            Some(s)
                if s.incremental.sha256 == new.sha256 && s.incremental.filename == new.filename =>
            {
                RomPublish::Identical(s)
            }
            Some(s) => RomPublish::Conflict(format!(
                "the incremental {} -> {} of {} is already published ({}, SHA-256 {})",
                s.incremental.source_incremental,
                s.incremental.target_incremental,
                new.device,
                s.incremental.filename,
                s.incremental.sha256
            )),
        })
    }

    /// One full build (published or not).
    pub async fn rom_build(
        &self,
        device: &str,
        incremental: &str,
    ) -> Result<Option<RomBuild>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {BUILD_COLUMNS} FROM {BUILD_FROM} WHERE b.device = $1 AND b.incremental = $2"
        ))
        .bind(device)
        .bind(incremental)
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| StoreError::db("reading a ROM build", e))?;
        row.as_ref().map(build_from_row).transpose()
    }

    /// The published builds of `device` on any of `channels` that are newer
    /// (by build timestamp) than the build `source_incremental`, newest
    /// first; every published build of those channels when the source is
    /// not stored here (the client compares timestamps itself).
    pub async fn rom_builds_newer(
        &self,
        device: &str,
        channels: &[String],
        source_incremental: &str,
    ) -> Result<Vec<RomBuild>, StoreError> {
        if channels.is_empty() {
            return Ok(Vec::new());
        }
        let placeholders: Vec<String> =
            (0..channels.len()).map(|i| format!("${}", i + 3)).collect();
        let sql = format!(
            "SELECT {BUILD_COLUMNS} FROM {BUILD_FROM} WHERE b.device = $1 AND b.published = 1
             AND b.channel IN ({})
             AND b.build_timestamp > COALESCE((SELECT s.build_timestamp FROM rom_builds s
                                               WHERE s.device = $1 AND s.incremental = $2), -1)
             ORDER BY b.build_timestamp DESC, b.id DESC",
            placeholders.join(", ")
        );
        let mut q = sqlx::query(&sql).bind(device).bind(source_incremental);
        for c in channels {
            q = q.bind(c);
        }
        let rows = q
            .fetch_all(&self.pool)
            .await
            .map_err(|e| StoreError::db("listing ROM builds", e))?;
        rows.iter().map(build_from_row).collect()
    }

    /// The published builds of `device` whose romtype is `romtype`
    /// (lowercase), built after `after` when given, newest first.
    pub async fn rom_builds_of_type(
        &self,
        device: &str,
        romtype: &str,
        after: Option<i64>,
    ) -> Result<Vec<RomBuild>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {BUILD_COLUMNS} FROM {BUILD_FROM} WHERE b.device = $1 AND b.published = 1
             AND b.romtype = $2 AND b.build_timestamp > $3
             ORDER BY b.build_timestamp DESC, b.id DESC"
        ))
        .bind(device)
        .bind(romtype)
        .bind(after.unwrap_or(i64::MIN))
        .fetch_all(&self.pool)
        .await
        .map_err(|e| StoreError::db("listing ROM builds", e))?;
        rows.iter().map(build_from_row).collect()
    }

    /// The romtypes of a device's published builds, sorted.
    pub async fn rom_types(&self, device: &str) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query(
            "SELECT DISTINCT romtype FROM rom_builds WHERE device = $1 AND published = 1
             ORDER BY romtype",
        )
        .bind(device)
        .fetch_all(&self.pool)
        .await
        .map_err(|e| StoreError::db("listing ROM types", e))?;
        rows.iter()
            .map(|r| {
                r.try_get("romtype")
                    .map_err(|e| StoreError::db("decoding a ROM type", e))
            })
            .collect()
    }

    /// Devices with at least one published build, by codename.
    pub async fn rom_devices(&self) -> Result<Vec<RomDevice>, StoreError> {
        let rows = sqlx::query(
            "SELECT codename, name, oem FROM rom_devices d WHERE EXISTS
               (SELECT 1 FROM rom_builds b WHERE b.device = d.codename AND b.published = 1)
             ORDER BY codename",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(|e| StoreError::db("listing ROM devices", e))?;
        rows.iter()
            .map(|r| {
                let get = |e| StoreError::db("decoding a ROM device", e);
                Ok(RomDevice {
                    codename: r.try_get("codename").map_err(get)?,
                    name: r.try_get("name").map_err(get)?,
                    oem: r.try_get("oem").map_err(get)?,
                })
            })
            .collect()
    }

    /// The incrementals from one build to another whose target build is
    /// published, over every device (CMUpdater's `get_delta` names none).
    pub async fn rom_incrementals_between(
        &self,
        source_incremental: &str,
        target_incremental: &str,
    ) -> Result<Vec<RomIncremental>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {INC_COLUMNS} FROM {INC_FROM}
             JOIN rom_builds b ON b.device = r.device AND b.incremental = x.to_version
             WHERE x.from_version = $1 AND x.to_version = $2 AND x.format = $3
             AND b.published = 1 ORDER BY x.id"
        ))
        .bind(source_incremental)
        .bind(target_incremental)
        .bind(INCREMENTAL_FORMAT)
        .fetch_all(&self.pool)
        .await
        .map_err(|e| StoreError::db("looking up a ROM incremental", e))?;
        rows.iter().map(incremental_from_row).collect()
    }

    /// Every incremental of a device, oldest first.
    pub async fn rom_incrementals(&self, device: &str) -> Result<Vec<RomIncremental>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {INC_COLUMNS} FROM {INC_FROM} WHERE x.package = $1 ORDER BY x.id"
        ))
        .bind(rom_package(device))
        .fetch_all(&self.pool)
        .await
        .map_err(|e| StoreError::db("listing ROM incrementals", e))?;
        rows.iter().map(incremental_from_row).collect()
    }

    /// Offers a build to clients or withdraws it; false when there is no
    /// such build.
    pub async fn set_rom_published(
        &self,
        device: &str,
        incremental: &str,
        published: bool,
    ) -> Result<bool, StoreError> {
        let mut tx = begin(self).await?;
        let changed = sqlx::query(
            "UPDATE rom_builds SET published = $1 WHERE device = $2 AND incremental = $3
             RETURNING id",
        )
        .bind(i32::from(published))
        .bind(device)
        .bind(incremental)
        .fetch_optional(&mut *tx)
        .await
        .map_err(|e| StoreError::db("publishing a ROM build", e))?;
        if changed.is_some() {
            bump_generation(&mut tx).await?;
        }
        commit(tx, "a ROM build's state").await?;
        Ok(changed.is_some())
    }

    /// Stores a client report, keeping the newest [`ROM_REPORTS_KEPT`].
    pub async fn add_rom_report(&self, fprint: &str, fcontent: &str) -> Result<i64, StoreError> {
        self.add_rom_report_keeping(fprint, fcontent, ROM_REPORTS_KEPT)
            .await
    }

    /// [`Catalogue::add_rom_report`] keeping the newest `keep` (for tests).
    #[doc(hidden)]
    pub async fn add_rom_report_keeping(
        &self,
        fprint: &str,
        fcontent: &str,
        keep: i64,
    ) -> Result<i64, StoreError> {
        let mut tx = begin(self).await?;
        let row = sqlx::query(
            "INSERT INTO rom_reports (fprint, fcontent, created_at) VALUES ($1, $2, $3)
             RETURNING id",
        )
        .bind(fprint)
        .bind(fcontent)
        .bind(now())
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| StoreError::db("storing a report", e))?;
        let id: i64 = row
            .try_get("id")
            .map_err(|e| StoreError::db("reading a report id", e))?;
        sqlx::query("DELETE FROM rom_reports WHERE id <= $1")
            .bind(id - keep)
            .execute(&mut *tx)
            .await
            .map_err(|e| StoreError::db("dropping old reports", e))?;
        commit(tx, "a report").await?;
        Ok(id)
    }

    /// The newest reports (id, fingerprint, content, unix seconds), newest first.
    pub async fn rom_reports(
        &self,
        limit: i64,
    ) -> Result<Vec<(i64, String, String, i64)>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, fprint, fcontent, created_at FROM rom_reports ORDER BY id DESC LIMIT $1",
        )
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(|e| StoreError::db("listing reports", e))?;
        rows.iter()
            .map(|r| {
                let get = |e| StoreError::db("decoding a report", e);
                Ok((
                    r.try_get("id").map_err(get)?,
                    r.try_get("fprint").map_err(get)?,
                    r.try_get("fcontent").map_err(get)?,
                    r.try_get("created_at").map_err(get)?,
                ))
            })
            .collect()
    }
}
