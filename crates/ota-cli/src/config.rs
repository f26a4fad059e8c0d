//! Settings from a TOML file, overridden by `OTA_*` variables and flags
//! (clap reads the variables; this file supplies what both left unset).
//!
//! ```toml
//! listen = "0.0.0.0:8080"
//! data = "/var/lib/ota"
//! database = "postgres://ota@db/ota"
//! max_upload = "8GiB"
//! public_url = "https://ota.example.com"
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
}

impl Settings {
    /// Reads the file if one is given.
    pub fn load(path: Option<&Path>) -> Result<Settings> {
        let Some(path) = path else {
            return Ok(Settings::default());
        };
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading config {}", path.display()))?;
        toml::from_str(&text).with_context(|| format!("parsing config {}", path.display()))
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
        listen: Option<String>,
        max_upload: Option<String>,
        public_url: Option<String>,
    ) -> Result<ota_server::ServerConfig> {
        let mut c = ota_server::ServerConfig::new(self.data_dir(store));
        c.database_url = Some(self.database_url(store));
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
            c.max_upload = parse_size(&s)?;
        }
        c.public_url = public_url.or_else(|| self.public_url.clone());
        Ok(c)
    }
}

/// Parses `1048576`, `500MB`, `8GiB`, `2G` (K/M/G/T are binary multiples).
pub fn parse_size(text: &str) -> Result<u64> {
    let t = text.trim();
    let digits = t.bytes().take_while(u8::is_ascii_digit).count();
    let (num, unit) = t.split_at(digits);
    let n: u64 = num
        .parse()
        .with_context(|| format!("invalid size {text:?}"))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        "t" | "tb" | "tib" => 1 << 40,
        u => bail!("invalid size unit {u:?} in {text:?} (use B, KiB, MiB, GiB, TiB)"),
    };
    n.checked_mul(mult)
        .with_context(|| format!("size {text:?} is too large"))
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
    fn sizes() {
        assert_eq!(parse_size("1048576").unwrap(), 1 << 20);
        assert_eq!(parse_size("8GiB").unwrap(), 8 << 30);
        assert_eq!(parse_size("500MB").unwrap(), 500 << 20);
        assert!(parse_size("5 parsecs").is_err());
        assert!(parse_size("99999999999T").is_err());
        assert!(parse_size("").is_err());
    }

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
            .server_config(&StoreArgs::default(), None, None, None)
            .unwrap();
        assert_eq!(c.listen.to_string(), "0.0.0.0:9000");
        assert_eq!(c.max_upload, 1 << 30);
        assert_eq!(c.data_dir, PathBuf::from("/srv/ota"));
        let c = s
            .server_config(
                &StoreArgs::default(),
                Some("127.0.0.1:1".into()),
                Some("2MiB".into()),
                None,
            )
            .unwrap();
        assert_eq!(c.listen.to_string(), "127.0.0.1:1");
        assert_eq!(c.max_upload, 2 << 20);
        assert!(
            toml::from_str::<Settings>("lisen = 1").is_err(),
            "typos are reported"
        );
    }
}
