//! `ota agent`: the device agent (`ota-agent`), and `ota agent status`.

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use ota_agent::config::Config;
use ota_agent::state::StateDir;
use ota_agent::{Agent, AgentOptions};
use std::path::{Path, PathBuf};

/// `ota agent …`.
#[derive(Args)]
pub struct AgentArgs {
    /// The agent's configuration (the daemon's JSON: device, package list, …)
    #[arg(
        long,
        env = "OTA_AGENT_CONFIG",
        global = true,
        default_value = "/etc/ota/agent.json"
    )]
    config: PathBuf,
    /// State directory (overrides the config's state_dir)
    #[arg(long, env = "OTA_AGENT_STATE", global = true)]
    state: Option<PathBuf>,
    /// Run one check-and-install cycle, then exit
    #[arg(long)]
    once: bool,
    /// Download attempts before a download is reported failed
    #[arg(long, default_value_t = 8)]
    download_attempts: u32,
    /// A read from the server that stalls this long is retried [default: 30s]
    #[arg(long, default_value = "30s")]
    stall_timeout: String,
    /// First retry delay (doubles per attempt, capped at 60s) [default: 1s]
    #[arg(long, default_value = "1s")]
    retry_delay: String,
    #[command(subcommand)]
    action: Option<AgentAction>,
}

/// Agent subcommands.
#[derive(Subcommand)]
pub enum AgentAction {
    /// Installed versions, any update in progress, the last error.
    Status {
        /// Print JSON
        #[arg(long)]
        json: bool,
    },
    /// Finish or undo an install a crash or power loss interrupted, then exit
    /// (the agent also does this when it starts; run it early at boot).
    Recover,
}

fn duration(text: &str, flag: &str) -> Result<std::time::Duration> {
    humantime::parse_duration(text).with_context(|| format!("{flag} {text:?}"))
}

/// Runs the agent (until SIGTERM/SIGINT, or one cycle with `--once`).
pub fn run(args: AgentArgs) -> Result<()> {
    if let Some(AgentAction::Status { json }) = args.action {
        return status(&args.config, args.state.as_deref(), json);
    }
    use std::io::IsTerminal;
    let recover_only = matches!(args.action, Some(AgentAction::Recover));
    let mut opts = AgentOptions {
        state_dir: args.state.clone(),
        progress: std::io::stderr().is_terminal(),
        stall_timeout: duration(&args.stall_timeout, "--stall-timeout")?,
        ..Default::default()
    };
    opts.retry.attempts = args.download_attempts.max(1);
    opts.retry.base = duration(&args.retry_delay, "--retry-delay")?;
    let rt = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    rt.block_on(async {
        let (stop, cancel) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            ota_server::shutdown_signal().await;
            tracing::info!("stopping after the step in progress");
            let _ = stop.send(true);
        });
        let mut agent = Agent::new(&args.config, opts, cancel)?;
        if recover_only {
            return agent.recover_only();
        }
        agent.run(args.once).await
    })
}

fn status(config_path: &Path, state: Option<&Path>, json: bool) -> Result<()> {
    let config = Config::load(config_path)?;
    let root = state
        .map(Path::to_path_buf)
        .unwrap_or(config.state_dir.clone());
    let st = StateDir::at(&root);
    let status = st.status();
    let partial = |package: &str| -> u64 {
        std::fs::read_dir(root.join("downloads"))
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| {
                let n = e.file_name().to_string_lossy().into_owned();
                n.starts_with(&format!("{package}-")) && n.ends_with(".part")
            })
            .filter_map(|e| e.metadata().ok().map(|m| m.len()))
            .max()
            .unwrap_or(0)
    };
    let queued = st.queued_reports().map(|q| q.len()).unwrap_or(0);
    let mut rows = Vec::new();
    for p in &config.packages {
        let s = status.packages.get(&p.name).cloned().unwrap_or_default();
        let busy = matches!(s.phase.as_str(), "downloading" | "installing");
        let bytes = if busy {
            partial(&p.name).max(s.bytes)
        } else {
            0
        };
        rows.push(serde_json::json!({
            "package": p.name, "installed": p.version.as_str(), "branch": p.branch,
            "local": p.local, "phase": if s.phase.is_empty() { "idle" } else { &s.phase },
            "target": s.target.filter(|_| busy), "bytes": bytes, "total": s.total.filter(|_| busy),
            "last_result": s.last_result, "last_error": s.last_error, "last_check": s.last_check,
        }));
    }
    if json {
        let out = serde_json::json!({"device": config.device, "packages": rows, "queued_reports": queued});
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    println!("device {} ({} reports waiting)", config.device, queued);
    for r in rows {
        let s = |k: &str| r[k].as_str().unwrap_or("-").to_owned();
        let mut line = format!(
            "{:<24} {:<14} {:<10}",
            s("package"),
            s("installed"),
            s("phase")
        );
        if let Some(t) = r["target"].as_str() {
            let total = r["total"]
                .as_u64()
                .map(|t| format!("/{t}"))
                .unwrap_or_default();
            line.push_str(&format!(" -> {t} ({}{total} bytes)", r["bytes"]));
        }
        if let Some(e) = r["last_error"].as_str() {
            line.push_str(&format!("  last error: {e}"));
        }
        println!("{line}");
    }
    Ok(())
}
