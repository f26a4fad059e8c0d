//! `ota strategy set FILE` / `ota strategy show`: the update strategies
//! every server applies (`PUT|GET /api/v1/strategies`).

use crate::client::{Remote, RemoteArgs};
use crate::config::Settings;
use anyhow::{bail, Context, Result};
use clap::Subcommand;
use std::path::PathBuf;

/// `ota strategy …`.
#[derive(Subcommand)]
pub enum StrategyCommand {
    /// Checks a strategies file locally, then stores it on the server
    /// (needs an admin key); the rules in force stay if it is refused.
    Set {
        #[command(flatten)]
        remote: RemoteArgs,
        /// The strategies JSON file.
        file: PathBuf,
    },
    /// Prints the strategies in force.
    Show {
        #[command(flatten)]
        remote: RemoteArgs,
    },
}

/// Runs the command.
pub async fn run(settings: Settings, cmd: StrategyCommand) -> Result<()> {
    let client = reqwest::Client::new();
    match cmd {
        StrategyCommand::Set { remote, file } => {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("reading {}", file.display()))?;
            ota_graph::strategy::Strategies::parse(&text)
                .with_context(|| format!("{} is not a valid strategies file", file.display()))?;
            let Remote { server, key } = remote.resolve(settings)?;
            let url = format!("{server}/api/v1/strategies");
            let r = client
                .put(&url)
                .bearer_auth(key)
                .header("content-type", "application/json")
                .body(text)
                .send()
                .await
                .with_context(|| format!("contacting {url}"))?;
            let status = r.status();
            if !status.is_success() {
                bail!(
                    "the server refused the strategies ({status}): {}",
                    r.text().await.unwrap_or_default().trim()
                );
            }
            eprintln!("strategies from {} are in force", file.display());
        }
        StrategyCommand::Show { remote } => {
            let Remote { server, key } = remote.resolve(settings)?;
            let url = format!("{server}/api/v1/strategies");
            let body = crate::client::send_checked(client.get(&url).bearer_auth(key), &url)
                .await?
                .text()
                .await
                .with_context(|| format!("reading {url}"))?;
            println!("{body}");
        }
    }
    Ok(())
}
