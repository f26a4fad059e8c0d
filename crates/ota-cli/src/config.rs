//! Settings from a TOML file, overridden by `OTA_*` variables and flags
//! (clap reads the variables; this file supplies what both left unset).
//!
//! ```toml
//! listen = "0.0.0.0:8080"
//! data = "/var/lib/ota"
//! database = "postgres://ota@db/ota"
//! max_upload = "8GiB"
//! public_url = "https://ota.example.com"
//! header_timeout = "10s"
//! stall_timeout = "60s"
//! drain_timeout = "30s"
//! max_connections = 4096
//! max_connections_per_ip = 256
//! blobs = "s3://ota?endpoint=http://127.0.0.1:3900&region=garage"
//!
//! [publish]
//! server = "https://ota.example.com"
//! key = "ota_…"
//! ```

use crate::StoreArgs;
use anyhow::{bail, Context, Result};
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// The TOML file's contents; every key optional.
#[derive(Deserialize, Default, Debug)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    listen: Option<String>,
    data: Option<PathBuf>,
    database: Option<String>,
    max_upload: Option<toml::Value>,
    public_url: Option<String>,
    url_from_request: Option<bool>,
    header_timeout: Option<String>,
    stall_timeout: Option<String>,
    drain_timeout: Option<String>,
    max_connections: Option<usize>,
    max_connections_per_ip: Option<usize>,
    blobs: Option<String>,
    #[serde(default)]
    pub publish: PublishSettings,
}

/// The `[publish]` table.
#[derive(Deserialize, Default, Debug)]
#[serde(deny_unknown_fields)]
pub struct PublishSettings {
    /// Server base URL.
    pub server: Option<String>,
    /// API key.
    pub key: Option<String>,
    /// File holding the API key.
    pub key_file: Option<PathBuf>,
}

/// The `serve` options that also come from the file.
#[derive(Default)]
pub struct ServeOptions {
    pub listen: Option<String>,
    pub max_upload: Option<String>,
    pub public_url: Option<String>,
    pub url_from_request: bool,
    pub header_timeout: Option<String>,
    pub stall_timeout: Option<String>,
    pub drain_timeout: Option<String>,
    pub max_connections: Option<usize>,
    pub max_connections_per_ip: Option<usize>,
    pub blobs: Option<String>,
}

impl Settings {
    /// Reads the file if one is given.
    pub fn load(path: Option<&Path>) -> Result<Settings> {
        let Some(path) = path else {
            return Ok(Settings::default());
        };
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading config {}", path.display()))?;
        let settings: Settings =
            toml::from_str(&text).with_context(|| format!("parsing config {}", path.display()))?;
        if settings.publish.key.is_some() {
            refuse_if_shared(path, "it holds an API key ([publish] key)")?;
        }
        Ok(settings)
    }

    /// The data directory in effect.
    pub fn data_dir(&self, store: &StoreArgs) -> PathBuf {
        store
            .data
            .clone()
            .or_else(|| self.data.clone())
            .unwrap_or_else(|| PathBuf::from("ota-data"))
    }

    /// The database URL in effect.
    pub fn database_url(&self, store: &StoreArgs) -> String {
        store
            .database
            .clone()
            .or_else(|| self.database.clone())
            .unwrap_or_else(|| ota_store::Catalogue::sqlite_url_for(&self.data_dir(store)))
    }

    /// The server configuration in effect.
    pub fn server_config(
        &self,
        store: &StoreArgs,
        opts: ServeOptions,
    ) -> Result<ota_server::ServerConfig> {
        let mut c = ota_server::ServerConfig::new(self.data_dir(store));
        c.database_url = Some(self.database_url(store));
        let ServeOptions {
            listen,
            max_upload,
            public_url,
            url_from_request,
            header_timeout,
            stall_timeout,
            drain_timeout,
            max_connections,
            max_connections_per_ip,
            blobs,
        } = opts;
        if let Some(b) = blobs.or_else(|| self.blobs.clone()) {
            c.blobs = ota_store::BlobBackend::parse(&b)?;
        }
        if let Some(l) = listen.or_else(|| self.listen.clone()) {
            c.listen = l
                .parse::<SocketAddr>()
                .with_context(|| format!("invalid listen address {l:?} (expected IP:PORT)"))?;
        }
        let size = match (max_upload, &self.max_upload) {
            (Some(s), _) => Some(s),
            (None, Some(toml::Value::String(s))) => Some(s.clone()),
            (None, Some(toml::Value::Integer(n))) => Some(n.to_string()),
            (None, Some(v)) => bail!("max_upload must be a size such as \"8GiB\", got {v}"),
            (None, None) => None,
        };
        if let Some(s) = size {
            c.max_upload = ota_core::size::parse_size(&s).context("max_upload")?;
        }
        c.public_url = public_url.or_else(|| self.public_url.clone());
        c.url_from_request = url_from_request || self.url_from_request.unwrap_or(false);
        let duration = |flag: Option<String>,
                        file: &Option<String>,
                        what: &str,
                        into: &mut std::time::Duration|
         -> Result<()> {
            if let Some(text) = flag.or_else(|| file.clone()) {
                let d = humantime::parse_duration(&text)
                    .with_context(|| format!("invalid {what} {text:?} (e.g. 10s, 2m, 1h)"))?;
                if d.is_zero() {
                    bail!("{what} must be more than 0 (e.g. 10s)");
                }
                *into = d;
            }
            Ok(())
        };
        duration(
            header_timeout,
            &self.header_timeout,
            "header_timeout",
            &mut c.limits.header_timeout,
        )?;
        duration(
            stall_timeout,
            &self.stall_timeout,
            "stall_timeout",
            &mut c.limits.stall_timeout,
        )?;
        duration(
            drain_timeout,
            &self.drain_timeout,
            "drain_timeout",
            &mut c.limits.drain_timeout,
        )?;
        if let Some(n) = max_connections.or(self.max_connections) {
            if n == 0 {
                bail!("max_connections must be at least 1");
            }
            c.limits.max_connections = n;
        }
        if let Some(n) = max_connections_per_ip.or(self.max_connections_per_ip) {
            c.limits.max_per_ip = n;
        }
        Ok(c)
    }
}

/// Refuses a file that others than its owner can read (or write), because
/// of what it holds.
pub fn refuse_if_shared(path: &Path, why: &str) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path)
        .with_context(|| format!("reading {}", path.display()))?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        bail!(
            "{} is readable or writable by other users (mode {:04o}) and {why}: run chmod 600 {}",
            path.display(),
            mode & 0o7777,
            path.display()
        );
    }
    Ok(())
}

/// Formats Unix seconds as `YYYY-MM-DDTHH:MM:SSZ`.
pub fn iso8601(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(iso8601(0), "1970-01-01T00:00:00Z");
        assert_eq!(iso8601(1_416_913_926), "2014-11-25T11:12:06Z");
        assert_eq!(iso8601(951_782_400), "2000-02-29T00:00:00Z");
    }

    #[test]
    fn precedence_flag_over_file() {
        let s: Settings =
            toml::from_str("listen = \"0.0.0.0:9000\"\ndata = \"/srv/ota\"\nmax_upload = \"1GiB\"")
                .unwrap();
        let c = s
            .server_config(&StoreArgs::default(), ServeOptions::default())
            .unwrap();
        assert_eq!(c.listen.to_string(), "0.0.0.0:9000");
        assert_eq!(c.max_upload, 1 << 30);
        assert_eq!(c.data_dir, PathBuf::from("/srv/ota"));
        let c = s
            .server_config(
                &StoreArgs::default(),
                ServeOptions {
                    listen: Some("127.0.0.1:1".into()),
                    max_upload: Some("2MB".into()),
                    stall_timeout: Some("90s".into()),
                    ..ServeOptions::default()
                },
            )
            .unwrap();
        assert_eq!(c.listen.to_string(), "127.0.0.1:1");
        assert_eq!(c.max_upload, 2_000_000, "MB is 10^6");
        assert_eq!(c.limits.stall_timeout.as_secs(), 90);
        assert!(s
            .server_config(
                &StoreArgs::default(),
                ServeOptions {
                    drain_timeout: Some("soon".into()),
                    ..ServeOptions::default()
                }
            )
            .is_err());
        assert!(
            toml::from_str::<Settings>("lisen = 1").is_err(),
            "typos are reported"
        );
    }
}
