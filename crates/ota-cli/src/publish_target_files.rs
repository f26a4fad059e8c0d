//! `ota publish android --target-files tf.zip`: upload a build's
//! target-files once (`POST /api/v1/builds/target-files`); the server's
//! jobs build the full package and the incrementals from earlier builds.
//!
//! The zip's device, incremental and date are read here with the server's
//! own reader and checked against the flags before anything is sent. With
//! `--wait`, the command follows the build's jobs (`GET /api/v1/jobs`)
//! until none is queued or running, and fails if one failed.

use crate::client::Remote;
use crate::config::Settings;
use crate::publish_android::{build_form, check_key, upload, PublishAndroidArgs};
use anyhow::{bail, Context, Result};
use ota_server::rom::target_files::{TargetFilesForm, TargetFilesInfo};
use serde_json::Value;
use std::time::Duration;

/// Runs `ota publish android --target-files`.
pub async fn run(settings: Settings, args: PublishAndroidArgs) -> Result<()> {
    let path = args
        .target_files
        .clone()
        .context("--target-files or a package is required")?;
    let package_form = build_form(&args)?;
    let form = TargetFilesForm {
        device: package_form.device,
        channel: package_form.channel,
        changelog: package_form.changelog,
        published: package_form.published,
        sources: args.sources,
        ..TargetFilesForm::default()
    };
    let p = path.clone();
    let info = tokio::task::spawn_blocking(move || {
        let file = std::fs::File::open(&p)?;
        TargetFilesInfo::from_reader(std::io::BufReader::new(file)).map_err(anyhow::Error::msg)
    })
    .await?
    .with_context(|| format!("reading {}", path.display()))?;
    info.reconcile(&form)
        .map_err(|e| anyhow::anyhow!("{}; nothing was sent", e.message))?;
    let Remote { server, key } = args.remote.resolve(settings)?;
    let size = std::fs::metadata(&path)
        .with_context(|| format!("reading {}", path.display()))?
        .len();
    let client = reqwest::Client::new();
    check_key(&client, &server, &key, size).await?;
    let url = format!("{server}/api/v1/builds/target-files");
    let build = serde_json::to_value(&form)?;
    let (status, body) = upload(
        &client,
        &url,
        &key,
        &build,
        &path,
        "target-files.zip".into(),
        size,
    )
    .await?;
    if !status.is_success() {
        bail!(
            "the server refused the target-files ({status}): {}",
            body.trim()
        );
    }
    println!("{}", body.trim());
    eprintln!(
        "stored the target-files of build {} of {} on {}; the server builds its packages",
        info.incremental, info.device, form.channel
    );
    if args.wait {
        wait_for_jobs(&client, &server, &key, &info).await?;
    }
    Ok(())
}

/// Follows the jobs that build `info`'s packages until none is queued or
/// running; fails when one failed.
async fn wait_for_jobs(
    client: &reqwest::Client,
    server: &str,
    key: &str,
    info: &TargetFilesInfo,
) -> Result<()> {
    let url = format!("{server}/api/v1/jobs?limit=10000");
    let package = ota_store::rom_package(&info.device);
    let mut last = String::new();
    loop {
        let response = crate::client::send_checked(client.get(&url).bearer_auth(key), &url)
            .await
            .context("following the build's jobs")?;
        let list: Value = response
            .json()
            .await
            .with_context(|| format!("reading the answer of {url}"))?;
        let jobs: Vec<&Value> = list["jobs"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter(|j| j["package"] == package.as_str())
                    .filter(|j| j["to"] == info.incremental.as_str())
                    .collect()
            })
            .unwrap_or_default();
        let state = |j: &Value| j["state"].as_str().unwrap_or_default().to_owned();
        let summary: Vec<String> = jobs
            .iter()
            .map(|j| {
                let from = j["from"].as_str().filter(|f| !f.is_empty());
                format!(
                    "{} {}",
                    from.map_or("full".into(), |f| format!("from {f}")),
                    state(j)
                )
            })
            .collect();
        let line = summary.join(", ");
        if line != last {
            eprintln!("jobs: {line}");
            last = line;
        }
        let full_done = jobs
            .iter()
            .any(|j| j["kind"] == "rom-full" && state(j) == "done");
        let pending = jobs
            .iter()
            .any(|j| matches!(state(j).as_str(), "queued" | "running"));
        let failed: Vec<String> = jobs
            .iter()
            .filter(|j| state(j) == "failed")
            .map(|j| j["error"].as_str().unwrap_or("failed").to_owned())
            .collect();
        if !pending && !failed.is_empty() {
            bail!("a build job failed: {}", failed.join("; "));
        }
        // The full job queues the incrementals before it ends, so once it is
        // done and nothing is pending, everything was built.
        if full_done && !pending {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
