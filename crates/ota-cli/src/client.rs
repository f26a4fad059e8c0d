//! Talking to a server from the command line: which server, which key
//! (read safely), and a warning before a key crosses the network in clear.

use crate::config::Settings;
use anyhow::{bail, Context, Result};
use clap::Args;
use std::path::{Path, PathBuf};

/// `--server`, `--key`, `--key-file` (and their variables).
#[derive(Args, Clone)]
pub struct RemoteArgs {
    /// Server base URL, e.g. http://127.0.0.1:8080
    #[arg(long, env = "OTA_SERVER")]
    server: Option<String>,
    /// API key (from `ota keys create`); prefer --key-file or OTA_KEY, since
    /// other users can read command lines in `ps`
    #[arg(long, env = "OTA_KEY", hide_env_values = true)]
    key: Option<String>,
    /// File holding the API key (must not be readable by other users)
    #[arg(long, env = "OTA_KEY_FILE")]
    key_file: Option<PathBuf>,
}

/// A server and the key to use with it.
pub struct Remote {
    /// Base URL, without a trailing slash.
    pub server: String,
    /// The API key.
    pub key: String,
}

impl RemoteArgs {
    /// Flags and variables first, then the config file's `[publish]` table.
    /// A key file (flag or `OTA_KEY_FILE`) wins over a key in `OTA_KEY` or `--key`.
    pub fn resolve(self, settings: Settings) -> Result<Remote> {
        let server = self.server.or(settings.publish.server).context(
            "no server: pass --server URL (or OTA_SERVER, or [publish] server in the config)",
        )?;
        let key = match (self.key_file.or(settings.publish.key_file), self.key) {
            (Some(path), _) => read_key_file(&path)?,
            (None, Some(k)) => k,
            (None, None) => settings.publish.key.context(
                "no API key: pass --key-file FILE (or OTA_KEY_FILE, OTA_KEY, or [publish] key_file in the config)",
            )?,
        };
        warn_if_plain_http(&server);
        Ok(Remote {
            server: server.trim_end_matches('/').to_owned(),
            key,
        })
    }
}

/// Reads a key file, refusing one that other users can read.
fn read_key_file(path: &Path) -> Result<String> {
    crate::config::refuse_if_shared(path, "it holds an API key")?;
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading key file {}", path.display()))?;
    let key = text.trim().to_owned();
    if key.is_empty() {
        bail!("key file {} is empty", path.display());
    }
    Ok(key)
}

/// Warns when a key would cross the network in clear text.
fn warn_if_plain_http(server: &str) {
    let Ok(url) = url::Url::parse(server) else {
        return;
    };
    let loopback = match url.host() {
        Some(url::Host::Domain(d)) => d == "localhost",
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => true,
    };
    if url.scheme() == "http" && !loopback {
        eprintln!(
            "warning: sending the API key over plain http:// to {}; anyone on the path can read it (use https://)",
            url.host_str().unwrap_or_default()
        );
    }
}

/// Sends a request; a transport error or a non-2xx answer becomes an error
/// naming the URL, the status and the server's message.
pub async fn send_checked(req: reqwest::RequestBuilder, url: &str) -> Result<reqwest::Response> {
    let r = req
        .send()
        .await
        .with_context(|| format!("contacting {url}"))?;
    if !r.status().is_success() {
        let status = r.status();
        bail!(
            "{url} answered {status}: {}",
            r.text().await.unwrap_or_default().trim()
        );
    }
    Ok(r)
}
