//! Delta packs: the skip-list of each branch's versions, the jobs that
//! build the two packs of every edge, and the key that signs them.
//!
//! When a version is published it joins its branch's map (if it is newer
//! than every version there) and one `pack` job per new edge is queued in
//! the catalogue. Workers (`runner`) claim jobs with a lease, so a job is
//! built by one server even when several share a PostgreSQL database, and a
//! job whose server died is taken over once its lease runs out. A version
//! becomes a delta destination (and `newest`) once every pack ending at it
//! exists ([`ota_graph::VersionMap::is_ready`]).

mod build;
pub mod maps;
pub mod runner;
pub mod signing_key;

use crate::error::ApiError;
use maps::DeltaMaps;
use ota_core::signing::SecretKey;
use ota_graph::Geometry;
use ota_store::{Catalogue, MapAppend, NewJob, StoreError};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// The `kind` of pack jobs in the jobs table.
pub const JOB_KIND: &str = "pack";

/// How packs are built.
#[derive(Clone, Debug)]
pub struct PackConfig {
    /// Jobs run at once by this server (0: this server builds none).
    pub workers: usize,
    /// Memory the diffs running at once may use together, in bytes; a diff
    /// larger than this runs alone.
    pub memory_budget: u64,
    /// The skip-list's shape.
    pub geometry: Geometry,
    /// How long a claimed job is held without a heartbeat.
    pub lease: Duration,
    /// Attempts before a job fails for good.
    pub max_attempts: i64,
    /// zstd level of the patches.
    pub level: i32,
    /// Signing key file; `None`: `signing-key.pem` in the data directory.
    pub signing_key: Option<PathBuf>,
    /// How often idle workers look for jobs other servers queued.
    pub poll: Duration,
    /// Android release key and certificate (PEM or DER) that ROM packages
    /// built from target-files are signed with; unsigned without.
    pub android_key: Option<(PathBuf, PathBuf)>,
}

impl Default for PackConfig {
    fn default() -> Self {
        PackConfig {
            workers: 1,
            memory_budget: 2 << 30,
            geometry: Geometry::default(),
            lease: Duration::from_secs(60),
            max_attempts: 5,
            level: 19,
            signing_key: None,
            poll: Duration::from_secs(2),
            android_key: None,
        }
    }
}

/// The delta side of the server.
pub struct Packs {
    /// Each branch's map.
    pub maps: DeltaMaps,
    /// The signing key.
    pub key: SecretKey,
    /// Its public half, PEM.
    pub public_pem: String,
    /// Settings.
    pub config: PackConfig,
    /// Where jobs unpack and diff.
    pub work_dir: PathBuf,
    /// Wakes idle workers when a job is queued here.
    pub wake: tokio::sync::Notify,
    /// Memory budget, in MiB permits.
    pub(crate) memory: tokio::sync::Semaphore,
    /// Permits the budget has in all.
    pub(crate) memory_permits: u32,
}

impl std::fmt::Debug for Packs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Packs")
            .field("config", &self.config)
            .finish()
    }
}

impl Packs {
    /// Sets up packs for a server whose data directory is `data_dir`.
    pub async fn new(
        config: PackConfig,
        data_dir: &std::path::Path,
        catalogue: &Catalogue,
    ) -> anyhow::Result<Arc<Self>> {
        let key = signing_key::load(config.signing_key.as_deref(), data_dir, catalogue).await?;
        if let Some((k, c)) = &config.android_key {
            // A bad key is refused at start, not at the first build.
            ota_android::sign::Signer::load(k, c)
                .map_err(|e| anyhow::anyhow!("the Android release key {}: {e}", k.display()))?;
        }
        let work_dir = data_dir.join("pack-work");
        // What a killed job left is useless: its job is redone.
        if work_dir.exists() {
            std::fs::remove_dir_all(&work_dir)
                .map_err(|e| anyhow::anyhow!("clearing {}: {e}", work_dir.display()))?;
        }
        std::fs::create_dir_all(&work_dir)
            .map_err(|e| anyhow::anyhow!("creating {}: {e}", work_dir.display()))?;
        let permits = (config.memory_budget >> 20).clamp(1, u64::from(u32::MAX >> 4)) as u32;
        Ok(Arc::new(Packs {
            maps: DeltaMaps::new(config.geometry),
            public_pem: key.public().to_pem(),
            key,
            config,
            work_dir,
            wake: tokio::sync::Notify::new(),
            memory: tokio::sync::Semaphore::new(permits as usize),
            memory_permits: permits,
        }))
    }

    /// A version was published: put it on its branch's map and queue the
    /// jobs for its edges. Returns how many jobs were queued.
    pub async fn published(
        &self,
        catalogue: &Catalogue,
        package: &str,
        branch: &str,
        version: &str,
    ) -> Result<u64, StoreError> {
        let queued = match catalogue.map_append(package, branch, version).await? {
            MapAppend::Appended(p) | MapAppend::Present(p) => {
                self.queue_edges(catalogue, package, branch, p).await?
            }
            MapAppend::NotNewer(newest) => {
                tracing::info!(
                    package,
                    branch,
                    version,
                    newest,
                    "published below the newest version on the delta map: served whole only"
                );
                0
            }
        };
        self.maps.invalidate(package, branch);
        if queued > 0 {
            self.wake.notify_waiters();
        }
        Ok(queued)
    }

    /// Queues the jobs of the edges ending at `position`.
    async fn queue_edges(
        &self,
        catalogue: &Catalogue,
        package: &str,
        branch: &str,
        position: u64,
    ) -> Result<u64, StoreError> {
        let rows = catalogue.map_versions(package, branch).await?;
        let name = |i: u64| rows.get(i as usize).map(|r| r.version.clone());
        let jobs: Vec<NewJob> = self
            .config
            .geometry
            .edges_ending_at(position)
            .filter_map(|e| {
                Some(NewJob {
                    kind: JOB_KIND.into(),
                    package: package.into(),
                    branch: branch.into(),
                    from_version: name(e.from)?,
                    to_version: name(e.to)?,
                    level: Some(i64::from(e.level)),
                })
            })
            .collect();
        catalogue.enqueue_jobs(&jobs).await
    }

    /// A version was deleted: it stays on the map as a waypoint.
    pub async fn deleted(
        &self,
        catalogue: &Catalogue,
        package: &str,
        branch: &str,
        version: &str,
    ) -> Result<(), StoreError> {
        catalogue.map_delete(package, branch, version).await?;
        self.maps.invalidate(package, branch);
        Ok(())
    }

    /// Puts every published version the map lacks on it (a catalogue from
    /// before delta serving, or a crash between a publish and its jobs) and
    /// queues what is missing. Returns how many jobs were queued.
    pub async fn reconcile(&self, catalogue: &Catalogue) -> Result<u64, StoreError> {
        let mut queued = 0;
        for p in catalogue.packages().await? {
            for b in &p.branches {
                for e in catalogue.versions(&p.name, b).await? {
                    queued += self.published(catalogue, &p.name, b, &e.version).await?;
                }
            }
        }
        Ok(queued)
    }

    /// The map of a branch.
    pub async fn map(
        &self,
        catalogue: &Catalogue,
        package: &str,
        branch: &str,
    ) -> Result<Arc<maps::BranchMap>, ApiError> {
        self.maps.get(catalogue, package, branch).await
    }
}
