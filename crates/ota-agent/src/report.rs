//! Outcomes and reports. Every update attempt ends in an [`Outcome`]; the
//! agent queues it as a report in the state directory's outbox (so a
//! report survives the network being down, or the agent being killed)
//! and delivers the outbox to `POST /api/v1/devices/{device}/report` with
//! the device's token. A device that has nothing to report still reports
//! `up-to-date` once an hour, so the inventory's "last seen" stays fresh.

use crate::config::Config;
use crate::protocol::{CheckError, Server};
use crate::state::StateDir;
use serde::Serialize;
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// Seconds between `up-to-date` reports when nothing else was reported.
pub const HEARTBEAT_SECS: u64 = 3600;
/// Longest error text sent (the server's limit is 8 KiB).
const ERROR_MAX: usize = 4096;

/// How an update attempt ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Result {
    /// Installed and committed.
    Success,
    /// Failed before anything changed.
    Failure,
    /// Failed after the switch; the previous version is back.
    RolledBack,
    /// Not attempted: a dependency failed.
    Skipped,
    /// The agent was stopped; it resumes next time.
    Interrupted,
    /// Failed too often; not attempted again (not reported again).
    GaveUp,
}

impl Result {
    /// The report's `result` text.
    pub fn as_str(self) -> &'static str {
        match self {
            Result::Success => "success",
            Result::Failure => "failure",
            Result::RolledBack => "rolled-back",
            Result::Skipped => "skipped",
            Result::Interrupted => "interrupted",
            Result::GaveUp => "gave-up",
        }
    }
}

/// Milliseconds spent.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Timings {
    /// Check to staged (download, verification, staging).
    pub download_ms: u64,
    /// Hooks, switch and commit.
    pub install_ms: u64,
    /// Everything.
    pub total_ms: u64,
}

/// One update attempt.
#[derive(Clone, Debug)]
pub struct Outcome {
    /// Package.
    pub package: String,
    /// Version before.
    pub from: String,
    /// Version aimed at.
    pub to: String,
    /// How it ended.
    pub result: Result,
    /// Why it failed.
    pub error: Option<String>,
    /// `delta` or `full`.
    pub method: String,
    /// Bytes downloaded in this attempt.
    pub bytes: u64,
    /// Where the download resumed from (0: fresh).
    pub resumed_from: u64,
    /// Time spent.
    pub timings: Timings,
}

impl Outcome {
    /// A fresh outcome (result `Failure` until set).
    pub fn new(package: &str, from: &str, to: &str) -> Self {
        Outcome {
            package: package.into(),
            from: from.into(),
            to: to.into(),
            result: Result::Failure,
            error: None,
            method: String::new(),
            bytes: 0,
            resumed_from: 0,
            timings: Timings::default(),
        }
    }

    /// One line for the log and the terminal.
    pub fn line(&self) -> String {
        let what = format!("{} {} -> {}", self.package, self.from, self.to);
        match self.result {
            Result::Success => format!(
                "{what}: installed ({}, {} bytes{}, {} ms)",
                self.method,
                self.bytes,
                if self.resumed_from > 0 {
                    format!(", resumed at {}", self.resumed_from)
                } else {
                    String::new()
                },
                self.timings.total_ms
            ),
            r => format!(
                "{what}: {}{}",
                r.as_str(),
                self.error
                    .as_deref()
                    .map(|e| format!(": {e}"))
                    .unwrap_or_default()
            ),
        }
    }
}

/// Queues and delivers reports.
pub struct Reporter<'a> {
    state: &'a StateDir,
    device: String,
    token: Option<String>,
}

fn installed(config: &Config) -> BTreeMap<String, String> {
    // Read again: installs this cycle rewrote the file.
    let fresh = Config::load(&config.path).ok();
    fresh
        .as_ref()
        .unwrap_or(config)
        .packages
        .iter()
        .map(|p| (p.name.clone(), p.version.as_str().to_owned()))
        .collect()
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl<'a> Reporter<'a> {
    /// A reporter for this device (reports are only kept when the config
    /// has a `device_token`).
    pub fn new(config: &Config, state: &'a StateDir) -> Self {
        Reporter {
            state,
            device: config.device.clone(),
            token: config.device_token.clone(),
        }
    }

    fn enqueue(&self, remote: &str, report: Value) {
        if self.token.is_none() {
            return;
        }
        let entry = json!({ "remote": remote, "report": report });
        if let Err(e) = self.state.queue_report(&entry) {
            tracing::warn!("could not queue a report: {e}");
        }
    }

    /// Queues the report of an outcome.
    pub fn queue(&self, o: &Outcome, config: &Config) {
        let Some(p) = config.package(&o.package) else {
            return;
        };
        let error = o.error.as_ref().map(|e| {
            let mut e = e.clone();
            if e.len() > ERROR_MAX {
                let mut cut = ERROR_MAX;
                while !e.is_char_boundary(cut) {
                    cut -= 1;
                }
                e.truncate(cut);
            }
            e
        });
        let report = json!({
            "result": o.result.as_str(),
            "package": o.package,
            "from": o.from,
            "to": o.to,
            "error": error,
            "method": o.method,
            "bytes": o.bytes,
            "resumed_from": o.resumed_from,
            "timings": o.timings,
            "installed": installed(config),
            "at": unix_now(),
        });
        self.enqueue(&p.remote, report);
    }

    /// Queues an `up-to-date` report to each server when nothing was
    /// delivered for [`HEARTBEAT_SECS`].
    pub fn heartbeat_if_due(&self, config: &Config) {
        let status = self.state.status();
        let queued = self
            .state
            .queued_reports()
            .map(|q| !q.is_empty())
            .unwrap_or(false);
        if queued || unix_now().saturating_sub(status.last_report) < HEARTBEAT_SECS {
            return;
        }
        let mut remotes: Vec<&str> = config.packages.iter().map(|p| p.remote.as_str()).collect();
        remotes.sort_unstable();
        remotes.dedup();
        for remote in remotes {
            self.enqueue(
                remote,
                json!({"result": "up-to-date", "installed": installed(config), "at": unix_now()}),
            );
        }
    }

    /// Delivers queued reports, oldest first, until one cannot be sent.
    pub async fn flush(&self, server: &Server<'_>) {
        let Some(token) = &self.token else { return };
        let Ok(queued) = self.state.queued_reports() else {
            return;
        };
        let mut delivered = false;
        for path in queued {
            let entry: Option<Value> = std::fs::read(&path)
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok());
            let Some(entry) = entry else {
                let _ = std::fs::remove_file(&path);
                continue;
            };
            let remote = entry["remote"].as_str().unwrap_or_default();
            let body = serde_json::to_vec(&entry["report"]).unwrap_or_default();
            match server.report(remote, &self.device, token, &body).await {
                Ok(_) => {
                    let _ = std::fs::remove_file(&path);
                    delivered = true;
                }
                Err(CheckError::Transient(e)) | Err(CheckError::Refused(e)) => {
                    tracing::info!("report not delivered yet ({e}); kept for the next cycle");
                    break;
                }
            }
        }
        if delivered {
            let mut status = self.state.status();
            status.last_report = unix_now();
            let _ = self.state.save_status(&status);
        }
    }
}
