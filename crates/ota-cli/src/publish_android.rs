//! `ota publish android`: publish a full or incremental OTA package to the
//! ROM server (`POST /api/v1/builds`), for CMUpdater and LineageOS Updater
//! clients; with `--target-files`, a build's target-files for the server to
//! build from ([`crate::publish_target_files`]).
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
    pub(crate) remote: RemoteArgs,
    /// Device codename (must be the package's `pre-device`)
    #[arg(long)]
    pub(crate) device: String,
    /// Channel: stable, RC, snapshot, nightly, or any other name
    #[arg(long)]
    pub(crate) channel: String,
    /// Plain-text changelog for a full build (`=` lines frame a header,
    /// `*` lines are bold, as CMUpdater shows them)
    #[arg(long)]
    pub(crate) changelog: Option<PathBuf>,
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
    pub(crate) unpublished: bool,
    /// Upload a build's target-files zip instead of a package: the server's
    /// jobs build its full package and incrementals from earlier builds
    #[arg(long, conflicts_with_all = ["package", "api_level", "rom_version", "romtype"])]
    pub(crate) target_files: Option<PathBuf>,
    /// With --target-files: incrementals from this many earlier published
    /// builds of the device and channel [default: 3]
    #[arg(long, requires = "target_files", value_parser = clap::value_parser!(i64).range(0..=20))]
    pub(crate) sources: Option<i64>,
    /// With --target-files: wait until the server's jobs have built the
    /// packages, and fail if one failed
    #[arg(long, requires = "target_files")]
    pub(crate) wait: bool,
    /// The OTA package (made by `ota android full|incremental` or releasetools)
    #[arg(required_unless_present = "target_files")]
    package: Option<PathBuf>,
}

/// The `build` form part from the flags.
pub(crate) fn build_form(args: &PublishAndroidArgs) -> Result<BuildForm> {
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
pub(crate) async fn check_key(
    client: &reqwest::Client,
    server: &str,
    key: &str,
    size: u64,
) -> Result<()> {
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

/// Streams `path` as the `file` part beside the `build` part to `url`;
/// returns the status and body of the answer.
pub(crate) async fn upload(
    client: &reqwest::Client,
    url: &str,
    key: &str,
    build: &Value,
    path: &std::path::Path,
    file_name: String,
    size: u64,
) -> Result<(reqwest::StatusCode, String)> {
    let file = tokio::fs::File::open(path)
        .await
        .with_context(|| format!("opening {}", path.display()))?;
    let stream = tokio_util::io::ReaderStream::with_capacity(file, 256 * 1024);
    let multipart = reqwest::multipart::Form::new()
        .part(
            "build",
            reqwest::multipart::Part::text(build.to_string()).mime_str("application/json")?,
        )
        .part(
            "file",
            reqwest::multipart::Part::stream_with_length(reqwest::Body::wrap_stream(stream), size)
                .file_name(file_name),
        );
    let response = client
        .post(url)
        .bearer_auth(key)
        .multipart(multipart)
        .send()
        .await
        .with_context(|| format!("uploading to {url}"))?;
    let status = response.status();
    let body = response.text().await.unwrap_or_default();
    Ok((status, body))
}

/// Runs the command.
pub async fn run(settings: Settings, args: PublishAndroidArgs) -> Result<()> {
    let Some(package) = args.package.clone() else {
        return crate::publish_target_files::run(settings, args).await;
    };
    let form = build_form(&args)?;
    let path = package.clone();
    let info = tokio::task::spawn_blocking(move || PackageInfo::read(&path))
        .await?
        .with_context(|| format!("reading {}", package.display()))?;
    reconcile(&form, &info).map_err(|e| anyhow::anyhow!("{}; nothing was sent", e.message))?;
    if info.kind == PackageKind::Full && info.version.is_none() && form.version.is_none() {
        bail!("the package names no ROM version; pass --rom-version");
    }
    let file_name = package
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default()
        .to_owned();
    ota_store::check_filename(&file_name).with_context(|| {
        format!(
            "{} cannot be published under its own name; rename it",
            package.display()
        )
    })?;
    let Remote { server, key } = args.remote.resolve(settings)?;
    let size = std::fs::metadata(&package)
        .with_context(|| format!("reading {}", package.display()))?
        .len();
    let client = reqwest::Client::new();
    check_key(&client, &server, &key, size).await?;
    let url = format!("{server}/api/v1/builds");
    let (status, body) = upload(
        &client,
        &url,
        &key,
        &form_json(&form),
        &package,
        file_name,
        size,
    )
    .await?;
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
