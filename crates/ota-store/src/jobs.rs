//! Jobs: work queued in the database (building the packs of a new version),
//! so it survives a restart and, with several servers on one PostgreSQL,
//! each job runs on exactly one of them.
//!
//! A worker claims the oldest ready job with a lease; it renews the lease
//! while it works ([`Catalogue::heartbeat_job`]) and ends the job as done
//! or failed. A job whose lease ran out (its server was killed) is claimed
//! again. Claiming is one statement: `FOR UPDATE SKIP LOCKED` on
//! PostgreSQL, SQLite's single writer elsewhere.

use crate::catalogue::{now, Backend, Catalogue, StoreError};
use sqlx::any::AnyRow;
use sqlx::Row;
use std::time::Duration;

/// Where a job is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JobState {
    /// Waiting (possibly until `run_after`, after a failed attempt).
    Queued,
    /// Claimed by a worker.
    Running,
    /// Finished.
    Done,
    /// Gave up; [`Catalogue::retry_job`] queues it again.
    Failed,
}

impl JobState {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Running => "running",
            JobState::Done => "done",
            JobState::Failed => "failed",
        }
    }

    fn parse(s: &str) -> Result<Self, StoreError> {
        Ok(match s {
            "queued" => JobState::Queued,
            "running" => JobState::Running,
            "done" => JobState::Done,
            "failed" => JobState::Failed,
            other => return Err(StoreError::Corrupt(format!("job state {other:?}"))),
        })
    }
}

/// A job to queue.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewJob {
    /// What to do, e.g. `pack`.
    pub kind: String,
    /// Package name.
    pub package: String,
    /// Branch.
    pub branch: String,
    /// The older version of the edge.
    pub from_version: String,
    /// The newer version of the edge.
    pub to_version: String,
    /// Skip-list level of the edge.
    pub level: Option<i64>,
}

/// A stored job.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Job {
    /// Row id.
    pub id: i64,
    /// What it is.
    pub job: NewJob,
    /// Where it is.
    pub state: JobState,
    /// Attempts started so far.
    pub attempts: i64,
    /// Unix seconds before which it is not claimed.
    pub run_after: i64,
    /// The worker holding it.
    pub claimed_by: Option<String>,
    /// Last error.
    pub error: Option<String>,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds.
    pub updated_at: i64,
}

const COLUMNS: &str = "id, kind, package, branch, from_version, to_version, level, state, \
                       attempts, run_after, claimed_by, error, created_at, updated_at";

fn from_row(row: &AnyRow) -> Result<Job, StoreError> {
    let get = |e| StoreError::db("decoding a job row", e);
    let state: String = row.try_get("state").map_err(get)?;
    Ok(Job {
        id: row.try_get("id").map_err(get)?,
        job: NewJob {
            kind: row.try_get("kind").map_err(get)?,
            package: row.try_get("package").map_err(get)?,
            branch: row.try_get("branch").map_err(get)?,
            from_version: row.try_get("from_version").map_err(get)?,
            to_version: row.try_get("to_version").map_err(get)?,
            level: row.try_get("level").map_err(get)?,
        },
        state: JobState::parse(&state)?,
        attempts: row.try_get("attempts").map_err(get)?,
        run_after: row.try_get("run_after").map_err(get)?,
        claimed_by: row.try_get("claimed_by").map_err(get)?,
        error: row.try_get("error").map_err(get)?,
        created_at: row.try_get("created_at").map_err(get)?,
        updated_at: row.try_get("updated_at").map_err(get)?,
    })
}

impl Catalogue {
    /// Queues jobs; one already queued (same kind, package, branch, from,
    /// to) is not queued twice. Returns how many were new.
    pub async fn enqueue_jobs(&self, jobs: &[NewJob]) -> Result<u64, StoreError> {
        let t = now();
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(|e| StoreError::db("begin", e))?;
        let mut added = 0;
        for j in jobs {
            let res = sqlx::query(
                "INSERT INTO jobs (kind, package, branch, from_version, to_version, level, state,
                                   attempts, run_after, created_at, updated_at)
                 VALUES ($1, $2, $3, $4, $5, $6, 'queued', 0, $7, $7, $7)
                 ON CONFLICT (kind, package, branch, from_version, to_version) DO NOTHING",
            )
            .bind(&j.kind)
            .bind(&j.package)
            .bind(&j.branch)
            .bind(&j.from_version)
            .bind(&j.to_version)
            .bind(j.level)
            .bind(t)
            .execute(&mut *tx)
            .await
            .map_err(|e| StoreError::db("queuing a job", e))?;
            added += res.rows_affected();
        }
        tx.commit()
            .await
            .map_err(|e| StoreError::db("committing jobs", e))?;
        Ok(added)
    }

    /// Claims the oldest job that is ready, or whose lease ran out, for
    /// `worker`, with a lease of `lease`.
    pub async fn claim_job(
        &self,
        worker: &str,
        lease: Duration,
    ) -> Result<Option<Job>, StoreError> {
        let t = now();
        let expired = t - i64::try_from(lease.as_secs()).unwrap_or(i64::MAX / 2);
        let lock = match self.backend {
            Backend::Postgres => "FOR UPDATE SKIP LOCKED",
            Backend::Sqlite => "",
        };
        let row = sqlx::query(&format!(
            "UPDATE jobs SET state = 'running', claimed_by = $1, claimed_at = $2,
                             attempts = attempts + 1, updated_at = $2
             WHERE id = (SELECT id FROM jobs
                         WHERE (state = 'queued' AND run_after <= $2)
                            OR (state = 'running' AND claimed_at < $3)
                         ORDER BY id LIMIT 1 {lock})
             RETURNING {COLUMNS}"
        ))
        .bind(worker)
        .bind(t)
        .bind(expired)
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| StoreError::db("claiming a job", e))?;
        row.as_ref().map(from_row).transpose()
    }

    /// Renews `worker`'s lease on a job; false if it lost the job.
    pub async fn heartbeat_job(&self, id: i64, worker: &str) -> Result<bool, StoreError> {
        let res = sqlx::query(
            "UPDATE jobs SET claimed_at = $1 WHERE id = $2 AND claimed_by = $3 AND state = 'running'",
        )
        .bind(now())
        .bind(id)
        .bind(worker)
        .execute(&self.pool)
        .await
        .map_err(|e| StoreError::db("renewing a job lease", e))?;
        Ok(res.rows_affected() == 1)
    }

    /// Marks `worker`'s job done; false if it no longer held it.
    pub async fn finish_job(&self, id: i64, worker: &str) -> Result<bool, StoreError> {
        let res = sqlx::query(
            "UPDATE jobs SET state = 'done', error = NULL, updated_at = $1
             WHERE id = $2 AND claimed_by = $3 AND state = 'running'",
        )
        .bind(now())
        .bind(id)
        .bind(worker)
        .execute(&self.pool)
        .await
        .map_err(|e| StoreError::db("finishing a job", e))?;
        Ok(res.rows_affected() == 1)
    }

    /// Records a failed attempt: queued again after `retry_after`, or
    /// failed for good when `None`.
    pub async fn fail_job(
        &self,
        id: i64,
        worker: &str,
        error: &str,
        retry_after: Option<Duration>,
    ) -> Result<bool, StoreError> {
        let t = now();
        let (state, run_after) = match retry_after {
            Some(d) => (
                "queued",
                t + i64::try_from(d.as_secs()).unwrap_or(i64::MAX / 2),
            ),
            None => ("failed", t),
        };
        let error: String = error.chars().take(4000).collect();
        let res = sqlx::query(
            "UPDATE jobs SET state = $1, run_after = $2, error = $3, claimed_by = NULL,
                             claimed_at = NULL, updated_at = $4
             WHERE id = $5 AND claimed_by = $6 AND state = 'running'",
        )
        .bind(state)
        .bind(run_after)
        .bind(error)
        .bind(t)
        .bind(id)
        .bind(worker)
        .execute(&self.pool)
        .await
        .map_err(|e| StoreError::db("recording a failed job", e))?;
        Ok(res.rows_affected() == 1)
    }

    /// Queues again the job with `job`'s key if it ended (failed, or done
    /// while what it made was removed since). Returns how many were queued.
    pub async fn requeue_ended_job(&self, job: &NewJob) -> Result<u64, StoreError> {
        let t = now();
        let res = sqlx::query(
            "UPDATE jobs SET state = 'queued', run_after = $1, attempts = 0, error = NULL,
                             claimed_by = NULL, updated_at = $1
             WHERE kind = $2 AND package = $3 AND branch = $4 AND from_version = $5
               AND to_version = $6 AND state IN ('failed', 'done')",
        )
        .bind(t)
        .bind(&job.kind)
        .bind(&job.package)
        .bind(&job.branch)
        .bind(&job.from_version)
        .bind(&job.to_version)
        .execute(&self.pool)
        .await
        .map_err(|e| StoreError::db("queuing a job again", e))?;
        Ok(res.rows_affected())
    }

    /// Queues a failed job again; false unless it had failed.
    pub async fn retry_job(&self, id: i64) -> Result<bool, StoreError> {
        let t = now();
        let res = sqlx::query(
            "UPDATE jobs SET state = 'queued', run_after = $1, attempts = 0, updated_at = $1
             WHERE id = $2 AND state = 'failed'",
        )
        .bind(t)
        .bind(id)
        .execute(&self.pool)
        .await
        .map_err(|e| StoreError::db("retrying a job", e))?;
        Ok(res.rows_affected() == 1)
    }

    /// How many jobs there are of each kind in each state.
    pub async fn job_counts(&self) -> Result<Vec<(String, String, i64)>, StoreError> {
        let rows = sqlx::query(
            "SELECT kind, state, COUNT(*) AS n FROM jobs GROUP BY kind, state ORDER BY kind, state",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(|e| StoreError::db("counting jobs", e))?;
        let get = |e| StoreError::db("decoding job counts", e);
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get("kind").map_err(get)?,
                    r.try_get("state").map_err(get)?,
                    r.try_get("n").map_err(get)?,
                ))
            })
            .collect()
    }

    /// Jobs, newest first, optionally in one state.
    pub async fn jobs(&self, state: Option<JobState>, limit: u32) -> Result<Vec<Job>, StoreError> {
        let sql = match state {
            Some(_) => {
                format!("SELECT {COLUMNS} FROM jobs WHERE state = $1 ORDER BY id DESC LIMIT $2")
            }
            None => format!("SELECT {COLUMNS} FROM jobs ORDER BY id DESC LIMIT $1"),
        };
        let mut query = sqlx::query(&sql);
        if let Some(s) = state {
            query = query.bind(s.as_str());
        }
        let rows = query
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
            .map_err(|e| StoreError::db("listing jobs", e))?;
        rows.iter().map(from_row).collect()
    }
}
