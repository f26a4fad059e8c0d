//! `ota publish`: fill in content.json, then stream the file to `PUT /update`.

use crate::client::{Remote, RemoteArgs};
use crate::config::Settings;
use anyhow::{bail, Context, Result};
use clap::Args;
use futures_util::StreamExt;
use ota_core::{Content, Sha256Hex};
use serde_json::{Map, Value};
use std::io::IsTerminal;
use std::path::PathBuf;

/// Arguments of `ota publish`.
#[derive(Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct PublishArgs {
    #[command(subcommand)]
    kind: Option<PublishKind>,
    #[command(flatten)]
    remote: RemoteArgs,
    /// content.json to send; missing keys are filled from the flags and the file
    #[arg(long)]
    content: Option<PathBuf>,
    /// Package name (when content.json lacks it)
    #[arg(long)]
    package: Option<String>,
    /// Version (when content.json lacks it)
    #[arg(long = "pkg-version")]
    version: Option<String>,
    /// Branch (when content.json lacks it) [default: main]
    #[arg(long)]
    branch: Option<String>,
    /// The package file
    #[arg(required = true)]
    file: Option<PathBuf>,
}

/// What else `ota publish` publishes.
#[derive(clap::Subcommand)]
pub enum PublishKind {
    /// An Android OTA package (full or incremental) for the ROM server's
    /// CMUpdater and LineageOS Updater clients (POST /api/v1/builds).
    Android(crate::publish_android::PublishAndroidArgs),
}

/// Fills `key` from the flag `flag_name`; a flag that contradicts
/// content.json is an error.
fn fill(
    map: &mut Map<String, Value>,
    key: &str,
    flag_name: &str,
    flag: Option<String>,
) -> Result<()> {
    if let Some(flag) = flag {
        match map.get(key) {
            Some(Value::String(existing)) if *existing != flag => {
                bail!("{flag_name} {flag:?} contradicts content.json's {key} {existing:?}")
            }
            _ => {
                map.insert(key.into(), Value::String(flag));
            }
        }
    }
    Ok(())
}

/// Runs the command.
pub async fn run(settings: Settings, args: PublishArgs) -> Result<()> {
    if let Some(PublishKind::Android(a)) = args.kind {
        return crate::publish_android::run(settings, a).await;
    }
    let file = args.file.clone().context("no package file given")?;
    let Remote { server, key } = args.remote.resolve(settings)?;
    let mut map = match &args.content {
        Some(path) => {
            let text =
                std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
            match serde_json::from_slice(&text)
                .with_context(|| format!("parsing {}", path.display()))?
            {
                Value::Object(m) => m,
                _ => bail!("{} must hold a JSON object", path.display()),
            }
        }
        None => Map::new(),
    };
    fill(&mut map, "package", "--package", args.package)?;
    fill(&mut map, "version", "--pkg-version", args.version)?;
    fill(&mut map, "branch", "--branch", args.branch)?;
    for (key, flag) in [("package", "--package"), ("version", "--pkg-version")] {
        if !map.contains_key(key) {
            let source = match &args.content {
                Some(p) => format!("{} has no {key:?}", p.display()),
                None => "no content.json given".to_owned(),
            };
            bail!("no {key}: {source}; pass {flag} or add \"{key}\" to content.json");
        }
    }

    let path = file.clone();
    let (sha, size) = tokio::task::spawn_blocking(move || -> Result<(Sha256Hex, u64)> {
        let f =
            std::fs::File::open(&path).with_context(|| format!("opening {}", path.display()))?;
        let size = f.metadata()?.len();
        Ok((
            Sha256Hex::of_reader(std::io::BufReader::with_capacity(1 << 20, f))?,
            size,
        ))
    })
    .await??;
    match map.get("sha256").and_then(Value::as_str) {
        Some(declared) if !declared.eq_ignore_ascii_case(sha.as_str()) => bail!(
            "content.json declares sha256 {declared} but {} hashes to {sha}",
            file.display()
        ),
        _ => {
            map.insert("sha256".into(), Value::String(sha.to_string()));
        }
    }
    let content = Content::from_value(Value::Object(map)).context("content.json is not valid")?;

    let bar = if std::io::stderr().is_terminal() {
        let bar = indicatif::ProgressBar::new(size);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        Some(bar)
    } else {
        None
    };
    let opened = tokio::fs::File::open(&file)
        .await
        .with_context(|| format!("opening {}", file.display()))?;
    let progress = bar.clone();
    let stream =
        tokio_util::io::ReaderStream::with_capacity(opened, 256 * 1024).inspect(move |chunk| {
            if let (Some(bar), Ok(c)) = (&progress, chunk) {
                bar.inc(c.len() as u64);
            }
        });
    let file_name = file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "package".into());
    let form = reqwest::multipart::Form::new()
        .part(
            "content",
            reqwest::multipart::Part::text(content.to_json())
                .file_name("content.json")
                .mime_str("application/json")?,
        )
        .part(
            "file",
            reqwest::multipart::Part::stream_with_length(reqwest::Body::wrap_stream(stream), size)
                .file_name(file_name),
        );
    // Check the key first: a server that refuses the upload early closes
    // the connection while the file is still streaming, and the client
    // may then see a reset instead of the 401.
    let client = reqwest::Client::new();
    let auth_url = format!("{}/api/v1/auth", server.trim_end_matches('/'));
    let auth = client
        .get(&auth_url)
        .bearer_auth(&key)
        .send()
        .await
        .with_context(|| format!("contacting {auth_url}"))?;
    if auth.status() == reqwest::StatusCode::UNAUTHORIZED {
        let body = auth.text().await.unwrap_or_default();
        bail!(
            "the server refused the API key (401 Unauthorized): {}",
            body.trim()
        );
    }
    if !auth.status().is_success() {
        let status = auth.status();
        let body = auth.text().await.unwrap_or_default();
        bail!(
            "{auth_url} answered {status}: {} (is --server the base URL of an ota server?); nothing was sent",
            body.trim().chars().take(200).collect::<String>()
        );
    }
    // What the server would refuse is refused here rather than cut off
    // mid-stream, where the client may see a reset instead of the reason.
    let info: Value = auth
        .json()
        .await
        .with_context(|| format!("reading the answer of {auth_url}"))?;
    if let Some(limit) = info.get("max_upload").and_then(Value::as_u64) {
        if size > limit {
            bail!(
                "{} is {} but the server accepts at most {} (its --max-upload); nothing was sent",
                file.display(),
                ota_core::size::describe(size),
                ota_core::size::describe(limit)
            );
        }
    }
    if let Some(scopes) = info
        .get("scopes")
        .and_then(Value::as_str)
        .and_then(|s| s.parse::<ota_core::scope::Scopes>().ok())
    {
        if !scopes.may_publish(content.package()) {
            bail!(
                "the API key (scopes: {scopes}) may not publish {}: the server would refuse it (403); nothing was sent",
                content.package()
            );
        }
        let hooks = content.hooks();
        if !hooks.is_empty() && !scopes.may_set_hooks(content.package()) {
            bail!(
                "content.json sets {} and the API key (scopes: {scopes}) has no hooks: scope for {}: the server would refuse it (403); nothing was sent",
                hooks.join(", "),
                content.package()
            );
        }
    }
    let url = format!("{}/update", server.trim_end_matches('/'));
    let response = client
        .put(&url)
        .bearer_auth(key)
        .multipart(form)
        .send()
        .await
        .with_context(|| {
            format!("uploading to {url} (the connection failed before the server answered)")
        })?;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let status = response.status();
    let body = response.text().await.unwrap_or_default();
    match status.as_u16() {
        200 => {
            println!("{body}");
            eprintln!(
                "published {} {} on branch {} ({} bytes, sha256 {})",
                content.package(),
                content.version(),
                content.branch(),
                size,
                sha
            );
            Ok(())
        }
        304 => bail!("the server received different bytes than were sent (SHA-256 mismatch); nothing was stored, retry"),
        _ => bail!("the server refused the upload ({status}): {}", body.trim()),
    }
}
