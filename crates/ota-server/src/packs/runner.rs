//! Workers that claim jobs and run them: pack jobs here, ROM build jobs in
//! [`crate::rom::build_jobs`].
//!
//! A worker claims the oldest ready job with a lease, renews the lease
//! while it works, and records the two packs (blobs first, then rows) only
//! when both are built and signed. A failure is retried with exponential
//! backoff up to `max_attempts`; a job that can never succeed (a version
//! deleted meanwhile, an archive against a single file) fails at once.

use super::build::{self, Side};
use super::{Packs, JOB_KIND};
use crate::state::AppState;
use anyhow::Context;
use ota_core::Sha256Hex;
use ota_delta::DiffOptions;
use ota_store::{Job, NewDelta};
use std::sync::Arc;
use std::time::Duration;

/// An error retrying cannot fix.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct Permanent(pub(crate) String);

/// Starts the configured number of workers; they stop with the runtime.
pub fn spawn(state: &AppState, packs: &Arc<Packs>) -> Vec<tokio::task::JoinHandle<()>> {
    let host = rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned();
    (0..packs.config.workers)
        .map(|i| {
            let worker = format!("{host}:{}:{i}", std::process::id());
            tokio::spawn(work(state.clone(), packs.clone(), worker))
        })
        .collect()
}

async fn work(state: AppState, packs: Arc<Packs>, worker: String) {
    loop {
        // Register for a wake-up before looking, so a job queued between
        // the look and the wait is not missed.
        let woken = packs.wake.notified();
        let job = match state.catalogue.claim_job(&worker, packs.config.lease).await {
            Ok(job) => job,
            Err(e) => {
                tracing::warn!("claiming a pack job: {e}");
                None
            }
        };
        match job {
            Some(job)
                if job.job.kind == JOB_KIND || crate::rom::build_jobs::handles(&job.job.kind) =>
            {
                run(&state, &packs, &worker, job).await
            }
            Some(job) => {
                let _ = state
                    .catalogue
                    .fail_job(job.id, &worker, "unknown job kind", None)
                    .await;
            }
            None => {
                let _ = tokio::time::timeout(packs.config.poll, woken).await;
            }
        }
    }
}

async fn run(state: &AppState, packs: &Arc<Packs>, worker: &str, job: Job) {
    let started = std::time::Instant::now();
    let j = &job.job;
    // Each claim counts an attempt, also the claims of a job whose server
    // died running it: one that kills its servers (out of memory, say) is
    // given up instead of taking every server down in turn.
    if job.attempts > packs.config.max_attempts {
        let msg = format!(
            "given up after {} attempts that ended without a result (the server running it \
             stopped or was killed)",
            job.attempts - 1
        );
        tracing::warn!(id = job.id, "{msg}");
        if let Err(e) = state.catalogue.fail_job(job.id, worker, &msg, None).await {
            tracing::warn!("recording job {} failed: {e}", job.id);
        }
        return;
    }
    tracing::info!(
        id = job.id,
        package = j.package,
        branch = j.branch,
        from = j.from_version,
        to = j.to_version,
        attempt = job.attempts,
        "building packs"
    );
    // Renew the lease while the job runs.
    let beat = {
        let (catalogue, worker, id) = (state.catalogue.clone(), worker.to_owned(), job.id);
        let every = packs.config.lease / 3;
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                match catalogue.heartbeat_job(id, &worker).await {
                    Ok(true) => {}
                    Ok(false) => break, // taken over: the result will not be recorded
                    Err(e) => tracing::warn!("renewing the lease of job {id}: {e}"),
                }
            }
        })
    };
    let result = if j.kind == JOB_KIND {
        build_job(state, packs, &job).await
    } else {
        crate::rom::build_jobs::run(state, packs, &job).await
    };
    beat.abort();
    let catalogue = &state.catalogue;
    match result {
        Ok(()) => {
            if let Err(e) = catalogue.finish_job(job.id, worker).await {
                tracing::warn!("recording job {} done: {e}", job.id);
            }
            packs.maps.invalidate(&j.package, &j.branch);
            tracing::info!(
                id = job.id,
                secs = started.elapsed().as_secs_f64(),
                "packs built"
            );
        }
        Err(e) => {
            let permanent = e.downcast_ref::<Permanent>().is_some();
            let retry = (!permanent && job.attempts < packs.config.max_attempts).then(|| {
                let exp = (job.attempts.clamp(1, 8) - 1) as u32;
                Duration::from_secs(5 * 2u64.pow(exp)).min(Duration::from_secs(600))
            });
            let msg = format!("{e:#}");
            tracing::warn!(id = job.id, retry = ?retry, "pack job failed: {msg}");
            if let Err(e) = catalogue.fail_job(job.id, worker, &msg, retry).await {
                tracing::warn!("recording job {} failed: {e}", job.id);
            }
        }
    }
}

async fn side(state: &AppState, j: &ota_store::NewJob, version: &str) -> anyhow::Result<Side> {
    let entry = state
        .catalogue
        .get(&j.package, &j.branch, version)
        .await?
        .ok_or_else(|| Permanent(format!("version {version} is no longer published")))?;
    let hash = Sha256Hex::parse(&entry.sha256)
        .map_err(|_| Permanent(format!("version {version} has a malformed SHA-256")))?;
    // With an object store the blob may be elsewhere: fetched (verified)
    // into the cache; a store that is down is retried like any failure.
    let blob = match state.blobs.ensure_local(&hash).await {
        Ok(p) => p,
        Err(ota_store::BlobError::NotFound) => {
            return Err(Permanent(format!("the file of version {version} is missing")).into())
        }
        Err(e) => return Err(anyhow::Error::new(e).context(format!("fetching version {version}"))),
    };
    Ok(Side {
        version: version.to_owned(),
        blob,
        sha256: entry.sha256,
    })
}

async fn build_job(state: &AppState, packs: &Arc<Packs>, job: &Job) -> anyhow::Result<()> {
    let j = job.job.clone();
    let level = j
        .level
        .ok_or_else(|| Permanent("a pack job without a level".into()))?;
    let old = side(state, &j, &j.from_version).await?;
    let new = side(state, &j, &j.to_version).await?;
    let work = tempfile::Builder::new()
        .prefix(&format!("job-{}-", job.id))
        .tempdir_in(&packs.work_dir)
        .context("creating a work directory")?;
    let work_path = work.path().to_path_buf();
    let prepared = {
        let w = work_path.clone();
        tokio::task::spawn_blocking(move || build::prepare(&old, &new, &w))
            .await
            .context("preparing")?
            .map_err(|e| {
                // Unusable inputs do not get better by retrying.
                if format!("{e:#}").contains("a delta needs both") {
                    anyhow::Error::new(Permanent(format!("{e:#}")))
                } else {
                    e
                }
            })?
    };
    // A diff larger than the whole budget takes all of it: it runs alone.
    let need_mib = (build::memory_estimate(prepared.input_bytes) >> 20).max(1);
    let permits = need_mib.min(u64::from(packs.memory_permits)) as u32;
    let _memory = packs
        .memory
        .acquire_many(permits)
        .await
        .context("waiting for memory")?;
    let opts = DiffOptions {
        level: packs.config.level,
        ..DiffOptions::default()
    };
    let (p, b, f, t, w) = (
        j.package.clone(),
        j.branch.clone(),
        j.from_version.clone(),
        j.to_version.clone(),
        work_path.clone(),
    );
    let (built, prepared) = tokio::task::spawn_blocking(move || {
        build::diff(&prepared, &p, &b, &f, &t, &w, &opts).map(|b| (b, prepared))
    })
    .await
    .context("diffing")??;
    drop(_memory);
    // Blobs first, rows after: a row always has its file.
    let mut rows = Vec::new();
    for pack in built {
        let (blobs, pack_path) = (state.blobs.clone(), pack.path.clone());
        let packs2 = packs.clone();
        let (writer, signature) = tokio::task::spawn_blocking(move || {
            let bytes = std::fs::read(&pack_path)
                .with_context(|| format!("reading {}", pack_path.display()))?;
            let signature = packs2.key.sign(&bytes);
            let mut writer = blobs.begin().context("storing a pack")?;
            std::io::Write::write_all(&mut writer, &bytes).context("storing a pack")?;
            anyhow::Ok((writer, signature))
        })
        .await
        .context("storing a pack")??;
        let committed = writer
            .commit(&state.blobs, None)
            .await
            .context("storing a pack")?;
        let info = &pack.info;
        rows.push(NewDelta {
            package: info.package.clone(),
            branch: info.branch.clone(),
            from_version: info.from.clone(),
            to_version: info.to.clone(),
            direction: info.direction.as_str().into(),
            format: info.format.as_str().into(),
            level: Some(level),
            sha256: committed.hash.to_string(),
            size: committed.size,
            target_digest: Some(info.to_digest.clone()),
            signature: Some(hex::encode(signature)),
        });
    }
    for row in &rows {
        state.catalogue.add_delta(row).await?;
    }
    let c = &state.catalogue;
    c.set_map_digest(&j.package, &j.branch, &j.from_version, &prepared.old_digest)
        .await?;
    c.set_map_digest(&j.package, &j.branch, &j.to_version, &prepared.new_digest)
        .await?;
    drop(work);
    Ok(())
}
