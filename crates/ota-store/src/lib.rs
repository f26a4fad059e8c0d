//! Storage for the update server: the [`Catalogue`] (versions, deltas
//! between versions, jobs, API keys; SQLite embedded by default, PostgreSQL
//! for production, one implementation over `sqlx::Any`) and the
//! content-addressed [`BlobStore`].
//!
//! Invariant kept by both together: a catalogue row (version or delta) is
//! only written after its blob is durable under its hash, so every row's
//! file can be served.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use ota_store::{BlobStore, Catalogue, NewEntry, PublishOutcome};
//! let dir = tempfile::tempdir()?;
//! let blobs = BlobStore::open(dir.path())?;
//! let catalogue = Catalogue::open(&Catalogue::sqlite_url_for(dir.path())).await?;
//! let blob = blobs.put_bytes(b"package bytes").await?; // durable first…
//! let entry = NewEntry {
//!     package: "org.example.app".into(), branch: "main".into(), version: "1.0.0".into(),
//!     content: r#"{"package":"org.example.app","version":"1.0.0"}"#.into(),
//!     sha256: blob.hash.to_string(), size: blob.size,
//! };
//! assert!(matches!(catalogue.publish(&entry).await?, PublishOutcome::Inserted(_))); // …then the row
//! assert_eq!(catalogue.max_version("org.example.app", "main").await?.unwrap().version, "1.0.0");
//! # Ok(()) }
//! ```

mod admin;
mod blob;
mod catalogue;
mod deltas;
mod devices;
mod downloads;
mod jobs;
mod map_versions;
mod migrate;
mod private;
mod recover;
mod rom;
mod rom_admin;
mod rom_fields;
mod rom_target_files;
mod settings;
mod strategies;
pub mod testdb;

pub use admin::{
    check_password, check_user_name, hash_password, verify_password, AdminSession, AdminUser,
    AuditEntry, LockoutPolicy, NewSession, SignIn, MAX_PASSWORD_LEN, MIN_PASSWORD_LEN,
    SESSION_LIFETIME,
};
pub use blob::{
    BadBlobsUrl, BlobBackend, BlobError, BlobStore, BlobWriter, CommitError, Committed,
    DataDirLock, ObjectInfo, S3Config, CONNECT_TIMEOUT, DEFAULT_ORPHAN_GRACE, DEFAULT_PART_SIZE,
    MIN_PART_SIZE, OPS_TIMEOUT, READ_IDLE_TIMEOUT,
};
pub use catalogue::{
    Backend, Catalogue, Entry, KeyAuth, KeyInfo, NewEntry, PackageSummary, PublishOutcome,
    StoreError,
};
pub use deltas::{Delta, NewDelta};
pub use devices::{Device, DeviceReport, NewReport, REPORTS_KEPT};
pub use downloads::DownloadCount;
pub use jobs::{Job, JobState, NewJob};
pub use map_versions::{MapAppend, MapVersion};
pub use private::create_private_dir;
pub use recover::{collect_orphans, recover};
pub use rom::{
    rom_package, NewRomBuild, NewRomIncremental, RomBuild, RomDevice, RomIncremental, RomPublish,
    INCREMENTAL_FORMAT, ROM_REPORTS_KEPT,
};
pub use rom_admin::{DayCount, RomDeviceRemoval, RomDeviceSummary};
pub use rom_fields::{
    check_channel, check_codename, check_filename, check_incremental, check_rom_version,
    BadRomField,
};
pub use rom_target_files::{NewRomTargetFiles, RomTargetFiles};
pub use strategies::StoredStrategies;
