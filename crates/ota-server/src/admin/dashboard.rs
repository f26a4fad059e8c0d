//! The dashboard: counts, jobs running or failed, devices seen in the last
//! day, the last errors devices reported, and update results per day.

use super::charts;
use super::templates;
use super::{PageResult, Session};
use crate::state::AppState;
use axum::extract::State;
use axum::Extension;
use ota_store::JobState;
use serde_json::json;

/// Days the results chart covers.
const CHART_DAYS: i64 = 14;

/// A job as the pages show it.
pub fn job_json(j: &ota_store::Job) -> serde_json::Value {
    json!({
        "id": j.id, "kind": j.job.kind, "package": j.job.package, "branch": j.job.branch,
        "from_version": j.job.from_version, "to_version": j.job.to_version,
        "state": j.state.as_str(), "attempts": j.attempts, "error": j.error,
    })
}

/// `GET /admin`.
pub async fn page(State(state): State<AppState>, Extension(s): Extension<Session>) -> PageResult {
    let cat = &state.catalogue;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let packages = cat.packages().await?;
    let versions: u64 = packages.iter().map(|p| p.versions).sum();
    let devices = cat.devices().await?;
    let seen_today = devices
        .iter()
        .filter(|d| d.last_seen.is_some_and(|t| now - t < 86_400))
        .count();
    let rom = cat.rom_devices_all().await?;
    let rom_builds: i64 = rom.iter().map(|d| d.builds).sum();
    let keys = cat.list_keys().await?;
    let active_keys = keys.iter().filter(|k| k.revoked_at.is_none()).count();
    let mut jobs = cat.jobs(Some(JobState::Running), 50).await?;
    jobs.extend(cat.jobs(Some(JobState::Failed), 50).await?);
    let queued = cat.jobs(Some(JobState::Queued), 1000).await?.len();
    let mut errors: Vec<_> = devices
        .iter()
        .filter(|d| d.last_error.is_some())
        .cloned()
        .collect();
    errors.sort_by_key(|d| std::cmp::Reverse(d.last_seen));
    errors.truncate(10);
    let counts = vec![
        ("packages", packages.len().to_string(), "/admin/packages"),
        ("versions", versions.to_string(), "/admin/packages"),
        ("ROM devices", rom.len().to_string(), "/admin/rom"),
        ("ROM builds", rom_builds.to_string(), "/admin/rom"),
        ("devices", devices.len().to_string(), "/admin/devices"),
        (
            "seen in the last day",
            seen_today.to_string(),
            "/admin/devices",
        ),
        ("jobs queued", queued.to_string(), "/admin/jobs"),
        ("API keys", active_keys.to_string(), "/admin/keys"),
    ];
    let since = (now / 86_400 - CHART_DAYS + 1) * 86_400;
    let per_day = cat.report_counts_per_day(since).await?;
    let chart = charts::results_per_day(&per_day, now / 86_400, CHART_DAYS);
    let downloads = cat
        .download_counts_per_day(now / 86_400 - CHART_DAYS + 1)
        .await?;
    let downloads_chart = charts::downloads_per_day(&downloads, now / 86_400, CHART_DAYS);
    templates::page(
        &s,
        "dashboard.html",
        "dashboard",
        minijinja::context! {
            counts => counts,
            jobs => jobs.iter().map(job_json).collect::<Vec<_>>(),
            errors => errors,
            results_chart => chart,
            downloads_chart => downloads_chart,
        },
    )
}
