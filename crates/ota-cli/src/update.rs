//! `ota update`: one round of the bundle protocol for one directory (or
//! file): request, confirm, download (resuming), verify, apply.

use anyhow::{bail, Context, Result};
use clap::Args;
use ota_bundle::apply::{apply_bundle, ApplyOptions};
use ota_core::signing::PublicKey;
use serde_json::{json, Value};
use std::io::Write;
use std::path::PathBuf;

/// `ota update …`.
#[derive(Args)]
pub struct UpdateArgs {
    /// Server base URL, e.g. http://127.0.0.1:8080
    #[arg(long, env = "OTA_SERVER")]
    server: String,
    /// Package name
    #[arg(long)]
    name: String,
    /// Client type the strategies match
    #[arg(long = "type", default_value = "default")]
    client_type: String,
    /// Branch
    #[arg(long, default_value = "main")]
    branch: String,
    /// Installed version [default: found on the server by the digest of TARGET]
    #[arg(long)]
    version: Option<String>,
    /// The server's signing public key (PEM; `ota keys signing-public` prints it)
    #[arg(long)]
    public_key: PathBuf,
    /// Also take optional updates (compulsory ones are always taken)
    #[arg(long, short = 'y')]
    yes: bool,
    /// Accept packs that set setuid/setgid bits
    #[arg(long)]
    allow_setuid: bool,
    /// The installed tree (or file) to update in place
    target: PathBuf,
}

async fn post(client: &reqwest::Client, url: &str, body: Value) -> Result<reqwest::Response> {
    crate::client::send_checked(client.post(url).json(&body), url).await
}

/// The installed version: given, or the version whose digest the target has.
async fn installed_version(client: &reqwest::Client, a: &UpdateArgs) -> Result<String> {
    if let Some(v) = &a.version {
        return Ok(v.clone());
    }
    let t = a.target.clone();
    let digest = tokio::task::spawn_blocking(move || ota_core::digest::digest_path(&t))
        .await?
        .with_context(|| format!("computing the digest of {}", a.target.display()))?
        .to_string();
    let url = format!(
        "{}/api/v1/packages/{}/branches/{}/deltas",
        a.server, a.name, a.branch
    );
    let map: Value = client
        .get(&url)
        .send()
        .await
        .with_context(|| format!("contacting {url}"))?
        .json()
        .await
        .with_context(|| format!("reading {url}"))?;
    map["versions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|v| v["digest"].as_str() == Some(digest.as_str()))
        .and_then(|v| v["version"].as_str().map(str::to_owned))
        .with_context(|| {
            format!(
                "{} (digest {digest}) is no published version of {} on {}: pass --version",
                a.target.display(),
                a.name,
                a.branch
            )
        })
}

/// Runs one update round.
pub async fn run(args: UpdateArgs) -> Result<()> {
    let pem = std::fs::read_to_string(&args.public_key)
        .with_context(|| format!("reading {}", args.public_key.display()))?;
    let key = PublicKey::from_pem(&pem).with_context(|| args.public_key.display().to_string())?;
    let client = reqwest::Client::new();
    let server = args.server.trim_end_matches('/').to_owned();
    let version = installed_version(&client, &args).await?;
    let answer: Value = post(
        &client,
        &format!("{server}/api/v1/update/request"),
        json!({"Request": "Yes", "name": args.name, "version": version,
               "type": args.client_type, "branch": args.branch}),
    )
    .await?
    .json()
    .await
    .context("reading the server's answer")?;
    if answer["Response"] != "Yes" {
        println!("{} {version} is up to date", args.name);
        return Ok(());
    }
    let (action, strategy, dest) = (
        answer["Action"].as_str().unwrap_or_default().to_owned(),
        answer["Strategy"].as_str().unwrap_or_default().to_owned(),
        answer["Destination"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
    );
    if strategy == "Optional" && !args.yes {
        println!("{action} {version} -> {dest} is offered (optional): run with --yes to take it");
        return Ok(());
    }
    let mut r = post(
        &client,
        &format!("{server}/api/v1/update/confirm"),
        json!({"Confirm": "Yes", "Action": action, "Strategy": strategy, "From": version,
               "Destination": dest, "name": args.name, "type": args.client_type,
               "branch": args.branch}),
    )
    .await?;
    let location = r
        .headers()
        .get("content-location")
        .and_then(|v| v.to_str().ok())
        .map(|l| format!("{server}{l}"));
    let etag = r
        .headers()
        .get("etag")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let dir = tempfile::tempdir().context("creating a temporary directory")?;
    let file = dir.path().join("data.tar.gz");
    let mut out = std::fs::File::create(&file).context("creating the bundle file")?;
    let mut have = 0u64;
    let mut tries = 0;
    loop {
        match r.chunk().await {
            Ok(Some(c)) => {
                out.write_all(&c).context("writing the bundle")?;
                have += c.len() as u64;
            }
            Ok(None) => break,
            Err(e) => {
                // Resume where the download stopped, from the bundle's own URL.
                tries += 1;
                let (Some(url), Some(etag)) = (&location, &etag) else {
                    return Err(e).context("downloading the bundle");
                };
                if tries > 5 {
                    return Err(e).context("downloading the bundle (5 resumptions failed)");
                }
                eprintln!("download interrupted at {have} bytes ({e}); resuming");
                r = client
                    .get(url)
                    .header("range", format!("bytes={have}-"))
                    .header("if-range", etag)
                    .send()
                    .await
                    .with_context(|| format!("resuming from {url}"))?;
                if r.status().as_u16() != 206 {
                    bail!("{url} answered {} to a resumption", r.status());
                }
            }
        }
    }
    out.sync_all().context("writing the bundle")?;
    let opts = ApplyOptions {
        allow_setuid: args.allow_setuid,
        expect_to: Some(dest.clone()),
    };
    let target = args.target.clone();
    let res = tokio::task::spawn_blocking(move || {
        apply_bundle(&file, &target, &key, &opts).map_err(Box::new)
    })
    .await?;
    match res {
        Ok(a) => {
            println!(
                "{} {} -> {} ({} pack{}, {have} bytes)",
                action.to_lowercase(),
                a.from,
                a.to,
                a.hops,
                if a.hops == 1 { "" } else { "s" }
            );
            Ok(())
        }
        Err(f) => {
            let at = f.left_at.as_deref().unwrap_or("unknown (run ota digest)");
            bail!("{}\n{} is at version {at}", f.error, args.target.display())
        }
    }
}
