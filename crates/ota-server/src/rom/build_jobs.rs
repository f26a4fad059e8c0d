//! Jobs that build ROM packages from stored target-files.
//!
//! `rom-full` (package `rom:<device>`, branch = channel, to = the build's
//! incremental) builds the full OTA package with `ota_android`, signed with
//! the server's Android release key when one is configured, and publishes
//! it through the same checks as an uploaded package; then it queues one
//! `rom-incremental` job (from = a source incremental) for each of the
//! newest `sources` published builds of the device and channel whose
//! target-files the server holds. The jobs share the queue, leases and
//! retries of pack jobs ([`crate::packs::runner`]); a build error of the
//! target-files themselves fails at once, since retrying cannot fix it.

use super::publish::{self, BuildForm, Received};
use crate::error::ApiError;
use crate::packs::runner::Permanent;
use crate::packs::Packs;
use crate::state::AppState;
use anyhow::Context;
use ota_android::package::{default_name, BuildOptions};
use ota_android::package_info::PackageKind;
use ota_android::sign::Signer;
use ota_android::target_files::TargetFiles;
use ota_core::Sha256Hex;
use ota_store::{rom_package, Job, NewJob, RomTargetFiles};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The job kind that builds a full package.
pub const FULL_KIND: &str = "rom-full";

/// The job kind that builds an incremental package.
pub const INCREMENTAL_KIND: &str = "rom-incremental";

/// Whether this module runs jobs of `kind`.
pub fn handles(kind: &str) -> bool {
    kind == FULL_KIND || kind == INCREMENTAL_KIND
}

/// Queues (or, after a failure, queues again) the full build of `tf`.
/// Returns how many jobs were queued.
pub async fn queue_full(state: &AppState, tf: &RomTargetFiles) -> Result<u64, ApiError> {
    let job = NewJob {
        kind: FULL_KIND.into(),
        package: rom_package(&tf.new.device),
        branch: tf.new.channel.clone(),
        from_version: String::new(),
        to_version: tf.new.incremental.clone(),
        level: None,
    };
    let mut queued = state
        .catalogue
        .enqueue_jobs(std::slice::from_ref(&job))
        .await?;
    if queued == 0 {
        queued = state.catalogue.requeue_ended_job(&job).await?;
    }
    if queued > 0 {
        state.packs.wake.notify_waiters();
    }
    Ok(queued)
}

/// Runs one ROM job.
pub(crate) async fn run(state: &AppState, packs: &Arc<Packs>, job: &Job) -> anyhow::Result<()> {
    let j = &job.job;
    let device = j
        .package
        .strip_prefix("rom:")
        .ok_or_else(|| Permanent(format!("{:?} is not a ROM package", j.package)))?;
    let target = target_files(state, device, &j.to_version).await?;
    let source = match j.kind.as_str() {
        FULL_KIND => None,
        _ => Some(target_files(state, device, &j.from_version).await?),
    };
    let work = tempfile::Builder::new()
        .prefix(&format!("job-{}-", job.id))
        .tempdir_in(&packs.work_dir)
        .context("creating a work directory")?;
    // Target-files are read whole into memory: what their entries declare
    // (reading refuses an entry that inflates past it), twice over for the
    // package being written. More than the whole budget never runs.
    let paths: Vec<PathBuf> = std::iter::once(target.0.clone())
        .chain(source.as_ref().map(|s| s.0.clone()))
        .collect();
    let declared = tokio::task::spawn_blocking(move || {
        paths.iter().try_fold(0u64, |sum, p| {
            ota_android::target_files::memory_needed(p).map(|n| sum.saturating_add(n))
        })
    })
    .await
    .context("measuring the target-files")?
    .map_err(|e| Permanent(e.to_string()))?;
    let need_mib = (declared.saturating_mul(2) >> 20).max(1);
    if need_mib > u64::from(packs.memory_permits) {
        return Err(Permanent(format!(
            "the target-files need about {need_mib} MiB of memory to build from, more than \
             this server's job memory budget (--pack-memory, {} MiB)",
            packs.memory_permits
        ))
        .into());
    }
    let permits = need_mib as u32;
    let memory = packs
        .memory
        .acquire_many(permits)
        .await
        .context("waiting for memory")?;
    let (key, dir) = (packs.config.android_key.clone(), work.path().to_path_buf());
    let (src_path, tgt_path) = (source.as_ref().map(|s| s.0.clone()), target.0.clone());
    let (out, name) = tokio::task::spawn_blocking(move || {
        build_package(src_path.as_deref(), &tgt_path, &dir, key.as_ref())
    })
    .await
    .context("building")??;
    drop(memory);
    let tf = &target.2;
    let form = BuildForm {
        device: device.to_owned(),
        channel: tf.new.channel.clone(),
        changelog: source.is_none().then(|| tf.new.changelog.clone()),
        published: Some(tf.new.published),
        ..BuildForm::default()
    };
    publish_built(state, &out, name, form).await?;
    if source.is_none() {
        queue_incrementals(state, tf).await?;
    }
    Ok(())
}

/// The blob path, size and row of a build's target-files.
async fn target_files(
    state: &AppState,
    device: &str,
    incremental: &str,
) -> anyhow::Result<(PathBuf, u64, RomTargetFiles)> {
    let tf = state
        .catalogue
        .rom_target_files(device, incremental)
        .await?
        .ok_or_else(|| {
            Permanent(format!(
                "no target-files of build {incremental} of {device}"
            ))
        })?;
    let hash = Sha256Hex::parse(&tf.new.sha256)
        .map_err(|_| Permanent(format!("build {incremental} has a malformed SHA-256")))?;
    // Fetched (verified) into the cache when an object store holds it; a
    // store that is down is retried like any failure.
    let path = match state.blobs.ensure_local(&hash).await {
        Ok(p) => p,
        Err(ota_store::BlobError::NotFound) => {
            return Err(Permanent(format!(
                "the target-files of build {incremental} are missing"
            ))
            .into())
        }
        Err(e) => {
            return Err(anyhow::Error::new(e)
                .context(format!("fetching the target-files of build {incremental}")))
        }
    };
    Ok((path, tf.new.size, tf))
}

/// Builds the package into `dir`; returns its path and file name.
fn build_package(
    source: Option<&Path>,
    target: &Path,
    dir: &Path,
    key: Option<&(PathBuf, PathBuf)>,
) -> anyhow::Result<(PathBuf, String)> {
    // Unusable target-files do not get better by retrying.
    let permanent = |e: ota_android::AndroidError| anyhow::Error::new(Permanent(e.to_string()));
    let signer = match key {
        Some((k, c)) => Some(Signer::load(k, c).context("loading the Android release key")?),
        None => None,
    };
    let opts = BuildOptions {
        signer,
        ..BuildOptions::default()
    };
    let tgt = TargetFiles::open(target).map_err(permanent)?;
    let src = source
        .map(TargetFiles::open)
        .transpose()
        .map_err(permanent)?;
    let name = default_name(src.as_ref(), &tgt).map_err(permanent)?;
    let out = dir.join(&name);
    match &src {
        None => ota_android::full::write_full(&tgt, &out, &opts),
        Some(s) => ota_android::incremental::write_incremental(s, &tgt, &out, &opts),
    }
    .map_err(permanent)?;
    Ok((out, name))
}

/// Stores a built package as if it had been uploaded: the same metadata
/// checks, the same rows.
async fn publish_built(
    state: &AppState,
    path: &Path,
    filename: String,
    form: BuildForm,
) -> anyhow::Result<()> {
    let mut file = state.blobs.begin().context("storing a built package")?;
    let p = path.to_path_buf();
    let mut file = tokio::task::spawn_blocking(move || {
        let mut reader = std::fs::File::open(&p)?;
        std::io::copy(&mut reader, &mut file)?;
        std::io::Result::Ok(file)
    })
    .await
    .context("storing a built package")?
    .context("storing a built package")?;
    let as_anyhow = |e: ApiError| {
        let msg = format!("publishing {filename}: {}", e.message);
        if e.status.is_server_error() {
            anyhow::anyhow!(msg)
        } else {
            anyhow::Error::new(Permanent(msg))
        }
    };
    let (info, md5) = publish::inspect(&mut file).await.map_err(as_anyhow)?;
    publish::reconcile(&form, &info).map_err(as_anyhow)?;
    let incremental = matches!(info.kind, PackageKind::Incremental { .. });
    let received = Received {
        form,
        info,
        md5,
        filename: filename.clone(),
        file,
        by: "target-files job".into(),
    };
    let (created, _) = if incremental {
        publish::store_incremental(state, received).await
    } else {
        publish::store_full(state, received).await
    }
    .map_err(as_anyhow)?;
    if created {
        let detail = "built from uploaded target-files";
        state
            .catalogue
            .audit_or_warn("serve:rom-job", "rom.publish", &filename, detail)
            .await;
    }
    Ok(())
}

/// Queues the incrementals to a newly built full build.
async fn queue_incrementals(state: &AppState, tf: &RomTargetFiles) -> anyhow::Result<()> {
    let t = &tf.new;
    let sources = state
        .catalogue
        .rom_target_files_sources(&t.device, &t.channel, t.timestamp, t.sources)
        .await?;
    let jobs: Vec<NewJob> = sources
        .iter()
        .map(|s| NewJob {
            kind: INCREMENTAL_KIND.into(),
            package: rom_package(&t.device),
            branch: t.channel.clone(),
            from_version: s.new.incremental.clone(),
            to_version: t.incremental.clone(),
            level: None,
        })
        .collect();
    if state.catalogue.enqueue_jobs(&jobs).await? > 0 {
        state.packs.wake.notify_waiters();
    }
    Ok(())
}
