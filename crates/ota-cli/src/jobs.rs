//! `ota jobs`: the pack jobs the servers run (`GET /api/v1/jobs`), and
//! `ota jobs retry ID`.

use crate::client::{send_checked, Remote, RemoteArgs};
use crate::config::Settings;
use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use serde_json::Value;

/// `ota jobs [list|retry]`.
#[derive(Args)]
pub struct JobsArgs {
    #[command(flatten)]
    remote: RemoteArgs,
    /// Only jobs in this state: queued, running, done, failed
    #[arg(long)]
    state: Option<String>,
    /// How many, newest first
    #[arg(long, default_value_t = 50)]
    limit: u32,
    /// Print the server's JSON instead of a table
    #[arg(long)]
    json: bool,
    #[command(subcommand)]
    action: Option<JobsAction>,
}

/// What to do with jobs.
#[derive(Subcommand)]
pub enum JobsAction {
    /// Queue a failed job again (admin key).
    Retry {
        /// The job's id.
        id: i64,
    },
}

/// Runs the command.
pub async fn run(settings: Settings, args: JobsArgs) -> Result<()> {
    let Remote { server, key } = args.remote.resolve(settings)?;
    let client = reqwest::Client::new();
    if let Some(JobsAction::Retry { id }) = args.action {
        let url = format!("{server}/api/v1/jobs/{id}/retry");
        send_checked(client.post(&url).bearer_auth(&key), &url).await?;
        eprintln!("job {id} queued again");
        return Ok(());
    }
    let mut url = format!("{server}/api/v1/jobs?limit={}", args.limit);
    if let Some(s) = &args.state {
        url.push_str(&format!("&state={s}"));
    }
    let body = send_checked(client.get(&url).bearer_auth(&key), &url)
        .await?
        .text()
        .await
        .with_context(|| format!("reading {url}"))?;
    if args.json {
        println!("{body}");
        return Ok(());
    }
    let v: Value = serde_json::from_str(&body).context("reading the server's answer")?;
    let jobs = v["jobs"].as_array().cloned().unwrap_or_default();
    if jobs.is_empty() {
        eprintln!("no jobs");
    }
    for j in jobs {
        let s = |k: &str| j[k].as_str().unwrap_or("").to_owned();
        let error = j["error"]
            .as_str()
            .map(|e| format!("  {}", e.lines().next().unwrap_or("")))
            .unwrap_or_default();
        println!(
            "{:>6}  {:<7}  {}/{}  {} -> {}  level {}  attempts {}{}",
            j["id"],
            s("state"),
            s("package"),
            s("branch"),
            s("from"),
            s("to"),
            j["level"],
            j["attempts"],
            error
        );
    }
    Ok(())
}
