//! `ota publish android`: publish a full or incremental OTA package to the
//! ROM server (`POST /api/v1/builds`), for CMUpdater and LineageOS Updater
//! clients.
//!
//! What the package declares (device, incrementals, timestamp, API level,
//! version) is read with `ota_android::package_info` and checked against
//! the flags with the server's own check before anything is sent; the
//! server reads the package again and decides.

use crate::client::{Remote, RemoteArgs};
use crate::config::Settings;
use anyhow::{bail, Context, Result};
use clap::Args;
use ota_android::package_info::{PackageInfo, PackageKind};
use ota_server::rom::publish::{reconcile, BuildForm, MAX_CHANGELOG};
use serde_json::Value;
use std::path::PathBuf;

/// Arguments of `ota publish android`.
#[derive(Args)]
pub struct PublishAndroidArgs {
    #[command(flatten)]
    remote: RemoteArgs,
    /// Device codename (must be the package's `pre-device`)
    #[arg(long)]
    device: String,
    /// Channel: stable, RC, snapshot, nightly, or any other name
    #[arg(long)]
    channel: String,
    /// Plain-text changelog for a full build (`=` lines frame a header,
    /// `*` lines are bold, as CMUpdater shows them)
    #[arg(long)]
    changelog: Option<PathBuf>,
    /// API level, for a package whose build.prop has no ro.build.version.sdk
    #[arg(long)]
    api_level: Option<i64>,
    /// ROM version, for a package that names none
    #[arg(long)]
    rom_version: Option<String>,
    /// LineageOS release type [default: the package's, else the channel]
    #[arg(long)]
    romtype: Option<String>,
    /// Upload without offering it to clients yet
    #[arg(long)]
    unpublished: bool,
    /// The OTA package (made by `ota android full|incremental` or releasetools)
    package: PathBuf,
}

/// The `build` form part from the flags.
fn build_form(args: &PublishAndroidArgs) -> Result<BuildForm> {
    let changelog = match &args.changelog {
        None => None,
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading the changelog {}", path.display()))?;
            if text.len() > MAX_CHANGELOG {
                bail!(
                    "the changelog {} is {} bytes; at most {MAX_CHANGELOG} are accepted",
                    path.display(),
                    text.len()
                );
            }
            Some(text)
        }
    };
    Ok(BuildForm {
        device: args.device.clone(),
        channel: args.channel.clone(),
        changelog,
        api_level: args.api_level,
        version: args.rom_version.clone(),
        romtype: args.romtype.clone(),
        published: Some(!args.unpublished),
        ..Default::default()
    })
}

/// The form as JSON (only the fields set).
fn form_json(form: &BuildForm) -> Value {
    let mut m = serde_json::Map::new();
    m.insert("device".into(), form.device.clone().into());
    m.insert("channel".into(), form.channel.clone().into());
    let optional = [
        ("changelog", form.changelog.clone().map(Value::from)),
        ("api_level", form.api_level.map(Value::from)),
        ("version", form.version.clone().map(Value::from)),
        ("romtype", form.romtype.clone().map(Value::from)),
        ("published", form.published.map(Value::from)),
    ];
    for (k, v) in optional {
        if let Some(v) = v {
            m.insert(k.into(), v);
        }
    }
    Value::Object(m)
}

/// Asks the server about the key first: a server refusing the upload
/// before reading it closes the connection while the package streams, and
/// the client could see a reset instead of the reason.
async fn check_key(client: &reqwest::Client, server: &str, key: &str, size: u64) -> Result<()> {
    let url = format!("{server}/api/v1/auth");
    let auth = crate::client::send_checked(client.get(&url).bearer_auth(key), &url)
        .await
        .context("checking the API key; nothing was sent")?;
    let info: Value = auth
        .json()
        .await
        .with_context(|| format!("reading the answer of {url}"))?;
    if let Some(limit) = info.get("max_upload").and_then(Value::as_u64) {
        if size > limit {
            bail!(
                "the package is {} but the server accepts at most {}; nothing was sent",
                ota_core::size::describe(size),
                ota_core::size::describe(limit)
            );
        }
    }
    Ok(())
}

/// Runs the command.
pub async fn run(settings: Settings, args: PublishAndroidArgs) -> Result<()> {
    let form = build_form(&args)?;
    let path = args.package.clone();
    let info = tokio::task::spawn_blocking(move || PackageInfo::read(&path))
        .await?
        .with_context(|| format!("reading {}", args.package.display()))?;
    reconcile(&form, &info).map_err(|e| anyhow::anyhow!("{}; nothing was sent", e.message))?;
    if info.kind == PackageKind::Full && info.version.is_none() && form.version.is_none() {
        bail!("the package names no ROM version; pass --rom-version");
    }
    let file_name = args
        .package
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default()
        .to_owned();
    ota_store::check_filename(&file_name).with_context(|| {
        format!(
            "{} cannot be published under its own name; rename it",
            args.package.display()
        )
    })?;
    let Remote { server, key } = args.remote.resolve(settings)?;
    let size = std::fs::metadata(&args.package)
        .with_context(|| format!("reading {}", args.package.display()))?
        .len();
    let file = tokio::fs::File::open(&args.package)
        .await
        .with_context(|| format!("opening {}", args.package.display()))?;
    let stream = tokio_util::io::ReaderStream::with_capacity(file, 256 * 1024);
    let multipart = reqwest::multipart::Form::new()
        .part(
            "build",
            reqwest::multipart::Part::text(form_json(&form).to_string())
                .mime_str("application/json")?,
        )
        .part(
            "file",
            reqwest::multipart::Part::stream_with_length(reqwest::Body::wrap_stream(stream), size)
                .file_name(file_name),
        );
    let client = reqwest::Client::new();
    check_key(&client, &server, &key, size).await?;
    let url = format!("{server}/api/v1/builds");
    let response = client
        .post(&url)
        .bearer_auth(key)
        .multipart(multipart)
        .send()
        .await
        .with_context(|| format!("uploading to {url}"))?;
    let status = response.status();
    let body = response.text().await.unwrap_or_default();
    if !status.is_success() {
        bail!("the server refused the package ({status}): {}", body.trim());
    }
    println!("{}", body.trim());
    let what = match &info.kind {
        PackageKind::Full => format!("full build {}", info.incremental),
        PackageKind::Incremental {
            source_incremental, ..
        } => format!("incremental {source_incremental} -> {}", info.incremental),
    };
    let done = if status.as_u16() == 201 {
        "published"
    } else {
        "already published:"
    };
    eprintln!(
        "{done} {what} of {} on {} ({size} bytes)",
        info.device, form.channel
    );
    Ok(())
}
