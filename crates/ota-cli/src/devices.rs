//! `ota devices list|show|add|remove`: the fleet inventory on a server.

use crate::client::{send_checked, Remote, RemoteArgs};
use crate::config::Settings;
use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use serde_json::{json, Value};

/// `ota devices …`.
#[derive(Args)]
pub struct DevicesArgs {
    #[command(subcommand)]
    action: DevicesAction,
}

/// Where, and how to print.
#[derive(Args)]
pub struct Common {
    #[command(flatten)]
    remote: RemoteArgs,
    /// Print the server's JSON
    #[arg(long)]
    json: bool,
}

/// What to do.
#[derive(Subcommand)]
pub enum DevicesAction {
    /// Every device: last seen, last result, installed versions.
    List {
        #[command(flatten)]
        common: Common,
    },
    /// One device with its recent reports.
    Show {
        /// Device name.
        name: String,
        #[command(flatten)]
        common: Common,
    },
    /// Register a device and print its token (put it in the agent's `device_token`).
    Add {
        /// Device name (the agent config's `device`).
        name: String,
        /// Free text.
        #[arg(long, default_value = "")]
        description: String,
        #[command(flatten)]
        common: Common,
    },
    /// Remove a device and its reports.
    Remove {
        /// Device name.
        name: String,
        #[command(flatten)]
        common: Common,
    },
}

fn when(v: &Value) -> String {
    v.as_i64()
        .map(|t| {
            humantime::format_rfc3339_seconds(
                std::time::UNIX_EPOCH + std::time::Duration::from_secs(t.max(0) as u64),
            )
            .to_string()
        })
        .unwrap_or_else(|| "never".into())
}

fn versions(v: &Value) -> String {
    v.as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k} {}", v.as_str().unwrap_or("?")))
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default()
}

/// Runs the command.
pub async fn run(settings: Settings, args: DevicesArgs) -> Result<()> {
    let (DevicesAction::List { common }
    | DevicesAction::Show { common, .. }
    | DevicesAction::Add { common, .. }
    | DevicesAction::Remove { common, .. }) = &args.action;
    let json_out = common.json;
    let Remote { server, key } = common.remote.clone().resolve(settings)?;
    let client = reqwest::Client::new();
    let base = format!("{server}/api/v1/devices");
    let read = |r: reqwest::Response, url: String| async move {
        r.json::<Value>()
            .await
            .with_context(|| format!("reading {url}"))
    };
    match args.action {
        DevicesAction::Add {
            name, description, ..
        } => {
            let req = client
                .post(&base)
                .bearer_auth(&key)
                .json(&json!({"name": name, "description": description}));
            let v = read(send_checked(req, &base).await?, base.clone()).await?;
            if json_out {
                println!("{v}");
            } else {
                eprintln!("device {name} registered; its token (shown once):");
                println!("{}", v["token"].as_str().unwrap_or_default());
            }
        }
        DevicesAction::Remove { name, .. } => {
            let url = format!("{base}/{name}");
            send_checked(client.delete(&url).bearer_auth(&key), &url).await?;
            eprintln!("device {name} removed");
        }
        DevicesAction::List { .. } => {
            let v = read(
                send_checked(client.get(&base).bearer_auth(&key), &base).await?,
                base.clone(),
            )
            .await?;
            if json_out {
                println!("{}", serde_json::to_string_pretty(&v)?);
                return Ok(());
            }
            println!(
                "{:<24} {:<22} {:<12} installed",
                "device", "last seen", "last result"
            );
            for d in v["devices"].as_array().into_iter().flatten() {
                println!(
                    "{:<24} {:<22} {:<12} {}",
                    d["name"].as_str().unwrap_or_default(),
                    when(&d["last_seen"]),
                    d["last_result"].as_str().unwrap_or("-"),
                    versions(&d["installed"])
                );
            }
        }
        DevicesAction::Show { name, .. } => {
            let url = format!("{base}/{name}");
            let d = read(
                send_checked(client.get(&url).bearer_auth(&key), &url).await?,
                url,
            )
            .await?;
            if json_out {
                println!("{}", serde_json::to_string_pretty(&d)?);
                return Ok(());
            }
            println!("device      {}", d["name"].as_str().unwrap_or_default());
            println!(
                "description {}",
                d["description"].as_str().unwrap_or_default()
            );
            println!("last seen   {}", when(&d["last_seen"]));
            println!("last result {}", d["last_result"].as_str().unwrap_or("-"));
            if let Some(e) = d["last_error"].as_str() {
                println!("last error  {e}");
            }
            println!("installed   {}", versions(&d["installed"]));
            for r in d["reports"].as_array().into_iter().flatten() {
                let rep = &r["report"];
                println!(
                    "  {}  {:<12} {} {} -> {} {}",
                    when(&r["received_at"]),
                    r["result"].as_str().unwrap_or_default(),
                    rep["package"].as_str().unwrap_or(""),
                    rep["from"].as_str().unwrap_or(""),
                    rep["to"].as_str().unwrap_or(""),
                    rep["error"].as_str().unwrap_or("")
                );
            }
        }
    }
    Ok(())
}
