//! Downloads that survive anything: a kill, a reboot, a server that stops,
//! answers 500/503, cuts the file short or stalls.
//!
//! The partial file lives in the state directory under the SHA-256 it must
//! have (`<pkg>-<sha>.part`), beside a small record of its URL, the
//! server's validator (`ETag`, else `Last-Modified`) and the length last
//! synced to disk. A new attempt — in this run or after a restart — asks
//! for the rest with `Range: bytes=N-` and `If-Range`, so a server whose
//! file changed sends it whole (200) and the partial is dropped. Bytes
//! are hashed as they arrive (the partial is re-hashed once on resume);
//! the file is only handed over when its SHA-256 is the expected one. A
//! mismatch after a resume (a power cut can leave junk past the last
//! sync) retries from the synced length, then from zero, then gives up:
//! the server's file is not what was signed.
//!
//! Transient failures (connection errors, a stall longer than the stall
//! timeout, 408/429/5xx, a short body) are retried after
//! `base · 2^(n−1)` (capped, with jitter, or the server's `Retry-After`)
//! up to a bounded number of attempts; a 4xx is final at once.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fs;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::sync::watch;

/// Bytes between syncs of the partial file (and its record).
pub const SYNC_EVERY: u64 = 8 * 1024 * 1024;

/// How hard to try.
#[derive(Clone, Debug)]
pub struct RetryPolicy {
    /// Attempts per download, first included.
    pub attempts: u32,
    /// First backoff.
    pub base: Duration,
    /// Longest backoff.
    pub cap: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 8,
            base: Duration::from_secs(1),
            cap: Duration::from_secs(60),
        }
    }
}

impl RetryPolicy {
    /// The wait before attempt `n + 1` (n ≥ 1): exponential, capped, with
    /// jitter in [50 %, 100 %] so a fleet does not retry in step.
    pub fn backoff(&self, n: u32) -> Duration {
        let exp = self
            .base
            .saturating_mul(2u32.saturating_pow(n.saturating_sub(1)));
        let d = exp.min(self.cap);
        d.mul_f64(rand::Rng::gen_range(&mut rand::thread_rng(), 0.5..=1.0))
    }
}

/// Why a download stopped.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The agent is stopping; the partial file is kept.
    #[error("interrupted (the partial download is kept)")]
    Interrupted,
    /// The server refused for good (404, 403, …).
    #[error("{url} answered {status}")]
    Refused {
        /// The URL.
        url: String,
        /// The status.
        status: u16,
    },
    /// Attempts ran out.
    #[error("giving up after {attempts} attempts: {last}")]
    Exhausted {
        /// How many.
        attempts: u32,
        /// The last error.
        last: String,
    },
    /// The whole file arrived but its SHA-256 is not the expected one.
    #[error("the downloaded file's SHA-256 is {actual}, not the expected {expected}")]
    WrongHash {
        /// Expected.
        expected: String,
        /// Received.
        actual: String,
    },
    /// A local error.
    #[error("{0}")]
    Local(String),
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Record {
    url: String,
    #[serde(default)]
    validator: Option<String>,
    #[serde(default)]
    synced: u64,
}

/// One file to fetch.
pub struct Download<'a> {
    /// Where from.
    pub url: &'a str,
    /// The SHA-256 it must have (hex).
    pub sha256: &'a str,
    /// The partial file (`StateDir::download_path`).
    pub path: PathBuf,
}

/// Progress: (bytes so far, total when known). Called at most every 64 KiB.
pub type Progress<'a> = &'a (dyn Fn(u64, Option<u64>) + Sync);

/// What a completed download reports.
#[derive(Debug)]
pub struct Fetched {
    /// The verified file.
    pub path: PathBuf,
    /// Bytes received over the network in this call.
    pub received: u64,
    /// Offset the first attempt of this call started from (0 = fresh).
    pub resumed_from: u64,
}

fn record_path(part: &Path) -> PathBuf {
    part.with_extension("part.json")
}

fn done_path(part: &Path) -> PathBuf {
    part.with_extension("ok")
}

fn local(what: &str, e: impl std::fmt::Display) -> FetchError {
    FetchError::Local(format!("{what}: {e}"))
}

fn save_record(part: &Path, r: &Record) -> Result<(), FetchError> {
    let bytes = serde_json::to_vec(r).map_err(|e| local("encoding the download record", e))?;
    crate::fsutil::write_atomic(&record_path(part), &bytes)
        .map_err(|e| local("saving the download record", e))
}

/// Hashes the first `len` bytes of `file`.
fn hash_prefix(file: &mut fs::File, len: u64) -> io::Result<Sha256> {
    let mut h = Sha256::new();
    file.seek(SeekFrom::Start(0))?;
    let mut buf = vec![0u8; 1 << 20];
    let mut left = len;
    while left > 0 {
        let n = file.read(&mut buf[..left.min(1 << 20) as usize])?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        left -= n as u64;
    }
    Ok(h)
}

enum Attempt {
    Done,
    Transient(String, Option<Duration>),
}

/// Fetches `d`, resuming any partial file; `first` may be a response
/// already opened for the whole file (used when nothing is partial yet).
pub async fn fetch(
    client: &reqwest::Client,
    d: &Download<'_>,
    first: Option<reqwest::Response>,
    policy: &RetryPolicy,
    progress: Progress<'_>,
    cancel: &mut watch::Receiver<bool>,
) -> Result<Fetched, FetchError> {
    let done = done_path(&d.path);
    if done.exists() {
        return Ok(Fetched {
            path: done,
            received: 0,
            resumed_from: 0,
        });
    }
    let mut record: Record = fs::read(record_path(&d.path))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    let mut file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&d.path)
        .map_err(|e| local(&format!("opening {}", d.path.display()), e))?;
    let mut have = file
        .metadata()
        .map_err(|e| local("reading the partial download", e))?
        .len();
    if record.url.is_empty() {
        // No record: nothing trustworthy about any bytes there.
        have = 0;
        record.synced = 0;
    }
    record.url = d.url.to_owned();
    let resumed_from = have;
    let mut first = if have == 0 { first } else { None };
    let mut received = 0u64;
    let mut mismatches = 0;
    let mut attempt = 0u32;
    let mut last = String::new();
    loop {
        if *cancel.borrow() {
            return Err(FetchError::Interrupted);
        }
        attempt += 1;
        if attempt > policy.attempts {
            return Err(FetchError::Exhausted {
                attempts: policy.attempts,
                last,
            });
        }
        file.set_len(have)
            .map_err(|e| local("truncating the partial download", e))?;
        let mut hasher =
            hash_prefix(&mut file, have).map_err(|e| local("hashing the partial download", e))?;
        tracing::info!(url = d.url, offset = have, attempt, "downloading");
        let response = match first.take() {
            Some(r) => Ok(r),
            None => {
                let mut req = client.get(d.url);
                if have > 0 {
                    req = req.header("range", format!("bytes={have}-"));
                    if let Some(v) = &record.validator {
                        req = req.header("if-range", v);
                    }
                }
                req.send().await
            }
        };
        let outcome = match response {
            Err(e) => Attempt::Transient(format!("contacting {}: {e}", d.url), None),
            Ok(r) => {
                let step = receive(
                    r,
                    d,
                    &mut file,
                    &mut have,
                    &mut record,
                    &mut hasher,
                    &mut received,
                    progress,
                    cancel,
                )
                .await?;
                match step {
                    Attempt::Done => {
                        let actual = hex::encode(hasher.finalize());
                        if actual.eq_ignore_ascii_case(d.sha256) {
                            file.sync_all()
                                .map_err(|e| local("syncing the download", e))?;
                            fs::rename(&d.path, &done)
                                .map_err(|e| local("keeping the download", e))?;
                            let _ = fs::remove_file(record_path(&d.path));
                            let _ = crate::fsutil::sync_parent(&done);
                            return Ok(Fetched {
                                path: done,
                                received,
                                resumed_from,
                            });
                        }
                        mismatches += 1;
                        if mismatches >= 3 {
                            let _ = fs::remove_file(&d.path);
                            let _ = fs::remove_file(record_path(&d.path));
                            return Err(FetchError::WrongHash {
                                expected: d.sha256.to_owned(),
                                actual,
                            });
                        }
                        // Junk past the last sync (a power cut), or a
                        // changed file: back to the synced length, then 0.
                        have = if mismatches == 1 && record.synced < have {
                            record.synced
                        } else {
                            0
                        };
                        record.synced = record.synced.min(have);
                        tracing::warn!(
                            url = d.url,
                            have,
                            "downloaded file has the wrong SHA-256; fetching again"
                        );
                        Attempt::Transient(
                            format!("SHA-256 {actual} is not {}", d.sha256),
                            Some(Duration::ZERO),
                        )
                    }
                    t => t,
                }
            }
        };
        if let Attempt::Transient(why, after) = outcome {
            let wait = after.unwrap_or_else(|| policy.backoff(attempt));
            tracing::warn!(
                url = d.url,
                attempt,
                have,
                "download attempt failed ({why}); retrying in {wait:?}"
            );
            last = why;
            if attempt < policy.attempts {
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = cancel.changed() => return Err(FetchError::Interrupted),
                }
            }
        }
    }
}

fn retry_after(r: &reqwest::Response) -> Option<Duration> {
    r.headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(|s| Duration::from_secs(s.min(300)))
}

/// Reads one response into the partial file.
#[allow(clippy::too_many_arguments)]
async fn receive(
    mut r: reqwest::Response,
    d: &Download<'_>,
    file: &mut fs::File,
    have: &mut u64,
    record: &mut Record,
    hasher: &mut Sha256,
    received: &mut u64,
    progress: Progress<'_>,
    cancel: &mut watch::Receiver<bool>,
) -> Result<Attempt, FetchError> {
    let status = r.status().as_u16();
    match status {
        206 => {
            let starts_at = r
                .headers()
                .get("content-range")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("bytes "))
                .and_then(|v| v.split('-').next())
                .and_then(|v| v.parse::<u64>().ok());
            if starts_at != Some(*have) {
                // Not the range asked for: start over.
                *have = 0;
                record.synced = 0;
                return Ok(Attempt::Transient(
                    "the server answered a different range".into(),
                    Some(Duration::ZERO),
                ));
            }
        }
        200 => {
            if *have > 0 {
                tracing::info!(
                    url = d.url,
                    "the server sent the whole file (it changed, or ignores ranges)"
                );
                *have = 0;
                record.synced = 0;
                *hasher = Sha256::new();
                file.set_len(0)
                    .map_err(|e| local("truncating the partial download", e))?;
            }
        }
        416 => {
            // Asked past the end: what we have is the whole (or a wrong) file.
            return Ok(Attempt::Done);
        }
        408 | 429 | 500..=599 => {
            return Ok(Attempt::Transient(
                format!("{} answered {status}", d.url),
                retry_after(&r),
            ))
        }
        _ => {
            return Err(FetchError::Refused {
                url: d.url.to_owned(),
                status,
            })
        }
    }
    let total = r.content_length().map(|n| n + *have);
    record.validator = r
        .headers()
        .get("etag")
        .or_else(|| r.headers().get("last-modified"))
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    save_record(&d.path, record)?;
    file.seek(SeekFrom::Start(*have))
        .map_err(|e| local("seeking in the partial download", e))?;
    let mut since_progress = 0u64;
    progress(*have, total);
    loop {
        let chunk = tokio::select! {
            c = r.chunk() => c,
            _ = cancel.changed() => {
                let _ = file.sync_all();
                record.synced = *have;
                let _ = save_record(&d.path, record);
                return Err(FetchError::Interrupted);
            }
        };
        match chunk {
            Ok(Some(c)) => {
                file.write_all(&c)
                    .map_err(|e| local("writing the download", e))?;
                hasher.update(&c);
                *have += c.len() as u64;
                *received += c.len() as u64;
                since_progress += c.len() as u64;
                if since_progress >= 64 * 1024 {
                    since_progress = 0;
                    progress(*have, total);
                }
                if *have - record.synced >= SYNC_EVERY {
                    file.sync_data()
                        .map_err(|e| local("syncing the download", e))?;
                    record.synced = *have;
                    save_record(&d.path, record)?;
                }
            }
            Ok(None) => {
                progress(*have, total);
                if total.is_some_and(|t| t != *have) {
                    return Ok(Attempt::Transient(
                        format!("the body ended at {} of {:?} bytes", *have, total),
                        None,
                    ));
                }
                return Ok(Attempt::Done);
            }
            Err(e) => {
                let _ = file.sync_data();
                record.synced = *have;
                let _ = save_record(&d.path, record);
                return Ok(Attempt::Transient(
                    format!("receiving from {}: {e}", d.url),
                    None,
                ));
            }
        }
    }
}

/// Removes a finished or partial download of `part`.
pub fn discard(part: &Path) {
    for p in [part.to_owned(), record_path(part), done_path(part)] {
        let _ = fs::remove_file(p);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_caps_and_jitters() {
        let p = RetryPolicy {
            attempts: 10,
            base: Duration::from_secs(1),
            cap: Duration::from_secs(8),
        };
        for n in 1..=10 {
            let want = Duration::from_secs(1 << (n - 1).min(3));
            let got = p.backoff(n);
            assert!(got <= want && got >= want / 2, "{n}: {got:?}");
        }
    }
}
