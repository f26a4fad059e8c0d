//! The agent's configuration: one JSON file, the package API's daemon
//! configuration exactly (`device`, `description`, `package`: a list of
//! content.json), plus optional top-level keys a real daemon needs.
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `device` | required | this device's name (its inventory entry) |
//! | `description` | `""` | free text |
//! | `package` | required | the installed packages, each a content.json |
//! | `public_key` | — | the server's Ed25519 public key (PEM path); required unless `allow_unsigned` |
//! | `allow_unsigned` | `false` | accept answers and packages without a valid signature |
//! | `type` | `"default"` | the client type update strategies match |
//! | `poll_interval` | `1800` | seconds between checks (±10 % jitter) |
//! | `state_dir` | `/var/lib/ota-agent` | downloads in progress, install journal, status |
//! | `take_optional` | `true` | take updates the strategies mark optional |
//! | `device_token` | — | the token `ota devices add` printed; reports are sent when set |
//! | `hook_timeout` | `300` | seconds a hook may run |
//!
//! Each package: `package`, `version` (installed), `local` (absolute path
//! where it is installed) and `remote` (the server's URL) are required;
//! `branch` defaults to `main`; `description`, `sha256`, `BeforeUpdate`,
//! `AfterUpdate`, `restore` are optional strings; `dependencies` an object
//! `{"name": "constraint"}` (or a list of names). Other keys are kept as
//! they are. The agent rewrites the file only to record a new installed
//! version (see [`crate::json_edit`]).

use crate::deps::Constraint;
use ota_core::content::{check_local, check_remote};
use ota_core::name::check_name;
use ota_core::Version;
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Largest config file read.
pub const MAX_CONFIG_BYTES: u64 = 4 * 1024 * 1024;
/// Default state directory.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/ota-agent";

/// Why a config was refused: the field, and the package when it is one's.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Reading the file failed.
    #[error("reading {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// Not JSON.
    #[error("{path}: not valid JSON: {source}")]
    Json {
        /// The file.
        path: PathBuf,
        /// The parser's error.
        source: serde_json::Error,
    },
    /// A field is missing or wrong.
    #[error("{path}: {field}: {why}")]
    Field {
        /// The file.
        path: PathBuf,
        /// `device`, `package[2] (app).local`, …
        field: String,
        /// What is wrong.
        why: String,
    },
}

/// One installed package.
#[derive(Clone, Debug)]
pub struct PackageConfig {
    /// Position in the `package` list.
    pub index: usize,
    /// Name.
    pub name: String,
    /// Installed version.
    pub version: Version,
    /// Branch followed.
    pub branch: String,
    /// Where it is installed (a directory or a file).
    pub local: PathBuf,
    /// The server's base URL.
    pub remote: String,
    /// SHA-256 of the installed package file, when known.
    pub sha256: Option<String>,
    /// Hook commands from the device's own entry.
    pub hooks: Hooks,
    /// Dependencies of the installed version.
    pub dependencies: BTreeMap<String, Constraint>,
}

/// The three hook commands (shell command lines).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Hooks {
    /// Run before anything changes; a failure aborts the package's update.
    pub before_update: Option<String>,
    /// Run after the switch, first: carries state into the new version.
    pub restore: Option<String>,
    /// Run after `restore`.
    pub after_update: Option<String>,
}

impl Hooks {
    /// Reads the hook keys of a content.json object.
    pub fn from_map(map: &Map<String, Value>) -> Self {
        let get = |k: &str| map.get(k).and_then(Value::as_str).map(str::to_owned);
        Hooks {
            before_update: get("BeforeUpdate"),
            restore: get("restore"),
            after_update: get("AfterUpdate"),
        }
    }

    /// `self`'s hooks, each falling back to `other`'s when absent.
    pub fn or(self, other: &Hooks) -> Hooks {
        Hooks {
            before_update: self.before_update.or_else(|| other.before_update.clone()),
            restore: self.restore.or_else(|| other.restore.clone()),
            after_update: self.after_update.or_else(|| other.after_update.clone()),
        }
    }
}

/// The whole configuration.
#[derive(Clone, Debug)]
pub struct Config {
    /// The file it was read from (rewritten in place).
    pub path: PathBuf,
    /// The device's name.
    pub device: String,
    /// Free text.
    pub description: String,
    /// The packages, in file order.
    pub packages: Vec<PackageConfig>,
    /// The server's public key (PEM path).
    pub public_key: Option<PathBuf>,
    /// Accept unsigned answers.
    pub allow_unsigned: bool,
    /// Client type for the strategies.
    pub client_type: String,
    /// Seconds between checks.
    pub poll_interval: Duration,
    /// State directory.
    pub state_dir: PathBuf,
    /// Take optional updates.
    pub take_optional: bool,
    /// Token for reports.
    pub device_token: Option<String>,
    /// Longest a hook may run.
    pub hook_timeout: Duration,
}

/// Parses a `dependencies` value: an object of constraints, or a list of
/// names (any version).
pub fn parse_dependencies(v: &Value) -> Result<BTreeMap<String, Constraint>, String> {
    let mut out = BTreeMap::new();
    match v {
        Value::Null => {}
        Value::Object(m) => {
            for (name, c) in m {
                check_name("dependency", name).map_err(|e| e.to_string())?;
                let text = c
                    .as_str()
                    .ok_or_else(|| format!("{name}: a constraint string such as \">=1.2\""))?;
                let c = Constraint::parse(text).map_err(|e| format!("{name}: {e}"))?;
                out.insert(name.clone(), c);
            }
        }
        Value::Array(list) => {
            for name in list {
                let name = name
                    .as_str()
                    .ok_or("a list of package names, or an object {\"name\": \">=1.2\"}")?;
                check_name("dependency", name).map_err(|e| e.to_string())?;
                out.insert(name.to_owned(), Constraint::any());
            }
        }
        _ => return Err("an object {\"name\": \">=1.2\"} or a list of names".into()),
    }
    Ok(out)
}

impl Config {
    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        use std::io::Read;
        let read = |source| ConfigError::Read {
            path: path.to_owned(),
            source,
        };
        let mut text = String::new();
        std::fs::File::open(path)
            .map_err(read)?
            .take(MAX_CONFIG_BYTES + 1)
            .read_to_string(&mut text)
            .map_err(read)?;
        if text.len() as u64 > MAX_CONFIG_BYTES {
            return Err(ConfigError::Field {
                path: path.to_owned(),
                field: "(file)".into(),
                why: format!("larger than {MAX_CONFIG_BYTES} bytes"),
            });
        }
        Config::parse(path, &text)
    }

    /// Validates config text (`path` is where it lives, for messages and rewrites).
    pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
        let field = |field: String, why: String| ConfigError::Field {
            path: path.to_owned(),
            field,
            why,
        };
        let v: Value = serde_json::from_str(text).map_err(|source| ConfigError::Json {
            path: path.to_owned(),
            source,
        })?;
        let Value::Object(top) = v else {
            return Err(field("(top level)".into(), "must be a JSON object".into()));
        };
        let string = |k: &str, required: bool| -> Result<Option<String>, ConfigError> {
            match top.get(k) {
                None | Some(Value::Null) if !required => Ok(None),
                Some(Value::String(s)) => Ok(Some(s.clone())),
                None | Some(Value::Null) => Err(field(k.into(), "required".into())),
                Some(_) => Err(field(k.into(), "must be a string".into())),
            }
        };
        let boolean = |k: &str, default: bool| match top.get(k) {
            None | Some(Value::Null) => Ok(default),
            Some(Value::Bool(b)) => Ok(*b),
            Some(_) => Err(field(k.into(), "must be true or false".into())),
        };
        let seconds = |k: &str, default: u64, min: u64| match top.get(k) {
            None | Some(Value::Null) => Ok(Duration::from_secs(default)),
            Some(v) => v
                .as_u64()
                .filter(|n| *n >= min && *n <= 30 * 24 * 3600)
                .map(Duration::from_secs)
                .ok_or_else(|| field(k.into(), format!("whole seconds, {min} to 2592000"))),
        };
        let device = string("device", true)?.unwrap_or_default();
        check_name("device", &device).map_err(|e| field("device".into(), e.to_string()))?;
        let allow_unsigned = boolean("allow_unsigned", false)?;
        let public_key = string("public_key", false)?.map(PathBuf::from);
        if public_key.is_none() && !allow_unsigned {
            return Err(field(
                "public_key".into(),
                "required (the server's key: `ota keys signing-public` prints it), unless \
                 \"allow_unsigned\": true"
                    .into(),
            ));
        }
        let client_type = string("type", false)?.unwrap_or_else(|| "default".into());
        check_name("type", &client_type).map_err(|e| field("type".into(), e.to_string()))?;
        let list = match top.get("package") {
            Some(Value::Array(l)) => l,
            None => return Err(field("package".into(), "required (a list)".into())),
            Some(_) => return Err(field("package".into(), "must be a list".into())),
        };
        let mut packages = Vec::with_capacity(list.len());
        for (i, p) in list.iter().enumerate() {
            let pkg = parse_package(i, p).map_err(|(f, why)| field(f, why))?;
            if packages.iter().any(|q: &PackageConfig| q.name == pkg.name) {
                return Err(field(
                    format!("package[{i}] ({}).package", pkg.name),
                    "listed twice".into(),
                ));
            }
            packages.push(pkg);
        }
        Ok(Config {
            path: path.to_owned(),
            description: string("description", false)?.unwrap_or_default(),
            device,
            packages,
            public_key,
            allow_unsigned,
            client_type,
            poll_interval: seconds("poll_interval", 1800, 1)?,
            state_dir: string("state_dir", false)?
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from(DEFAULT_STATE_DIR)),
            take_optional: boolean("take_optional", true)?,
            device_token: string("device_token", false)?,
            hook_timeout: seconds("hook_timeout", 300, 1)?,
        })
    }

    /// The package named `name`.
    pub fn package(&self, name: &str) -> Option<&PackageConfig> {
        self.packages.iter().find(|p| p.name == name)
    }
}

fn parse_package(i: usize, p: &Value) -> Result<PackageConfig, (String, String)> {
    let Value::Object(m) = p else {
        return Err((
            format!("package[{i}]"),
            "must be a content.json object".into(),
        ));
    };
    let name = m.get("package").and_then(Value::as_str).unwrap_or_default();
    let at = |k: &str| {
        if name.is_empty() {
            format!("package[{i}].{k}")
        } else {
            format!("package[{i}] ({name}).{k}")
        }
    };
    check_name("package", name).map_err(|e| (at("package"), e.to_string()))?;
    let string = |k: &str, required: bool| -> Result<Option<String>, (String, String)> {
        match m.get(k) {
            None | Some(Value::Null) if !required => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            None | Some(Value::Null) => Err((at(k), "required".into())),
            Some(_) => Err((at(k), "must be a string".into())),
        }
    };
    let version = string("version", true)?.unwrap_or_default();
    let version = Version::parse(&version).map_err(|e| (at("version"), e.to_string()))?;
    let branch = string("branch", false)?.unwrap_or_else(|| "main".into());
    check_name("branch", &branch).map_err(|e| (at("branch"), e.to_string()))?;
    let local = string("local", true)?.unwrap_or_default();
    check_local(&local).map_err(|e| (at("local"), e))?;
    let remote = string("remote", true)?.unwrap_or_default();
    check_remote(&remote).map_err(|e| (at("remote"), e))?;
    let sha256 = string("sha256", false)?;
    if let Some(s) = &sha256 {
        if s.len() != 64 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err((at("sha256"), "must be 64 hex characters".into()));
        }
    }
    for k in ["description", "BeforeUpdate", "AfterUpdate", "restore"] {
        string(k, false)?;
    }
    let dependencies = parse_dependencies(m.get("dependencies").unwrap_or(&Value::Null))
        .map_err(|e| (at("dependencies"), e))?;
    Ok(PackageConfig {
        index: i,
        name: name.to_owned(),
        version,
        branch,
        local: PathBuf::from(local),
        remote: remote.trim_end_matches('/').to_owned(),
        sha256,
        hooks: Hooks::from_map(m),
        dependencies,
    })
}

/// Records a package's new installed version (and its package's SHA-256)
/// in the config file: the two values are replaced in the text, which is
/// written to a temporary beside the file, synced and renamed over it,
/// and the directory synced. Everything else in the file stays as it was.
pub fn record_installed(
    path: &Path,
    index: usize,
    version: &str,
    sha256: Option<&str>,
) -> std::io::Result<()> {
    let text = std::fs::read_to_string(path)?;
    let bad = |e: crate::json_edit::EditError| std::io::Error::other(e.to_string());
    let mut out = crate::json_edit::set_item_string(&text, "package", index, "version", version)
        .map_err(bad)?;
    if let Some(sha) = sha256 {
        out = crate::json_edit::set_item_string(&out, "package", index, "sha256", sha)
            .map_err(bad)?;
    }
    crate::fsutil::write_atomic(path, out.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(Path::new("/etc/ota/agent.json"), text)
    }

    #[test]
    fn the_package_api_daemon_config_as_is() {
        let c = parse(
            r#"{"device":"kiosk-7","description":"lobby","allow_unsigned":true,"package":[
              {"package":"app","description":"d","version":"1.0","branch":"stable",
               "local":"/opt/app","remote":"http://ota.example.com","sha256":"",
               "BeforeUpdate":"systemctl stop app","AfterUpdate":"systemctl start app",
               "dependencies":{"libfoo":">=1.2"},"restore":"/opt/restore.sh"}]}"#
                .replace(r#""sha256":"","#, "")
                .as_str(),
        )
        .unwrap();
        let p = &c.packages[0];
        assert_eq!((p.name.as_str(), p.branch.as_str()), ("app", "stable"));
        assert_eq!(p.hooks.restore.as_deref(), Some("/opt/restore.sh"));
        assert_eq!(p.dependencies.len(), 1);
        assert_eq!(c.poll_interval, Duration::from_secs(1800));
        assert!(c.take_optional && c.allow_unsigned);
        assert_eq!(c.client_type, "default");
    }

    #[test]
    fn errors_name_the_package_and_the_field() {
        let base = r#"{"device":"d","public_key":"/k.pem","package":[
            {"package":"app","version":"1.0","local":"/opt/app","remote":"http://h"},
            {"package":"web","version":"VERSION","local":"LOCAL","remote":"http://h"}]}"#;
        let err = |v: &str, l: &str| {
            parse(&base.replace("VERSION", v).replace("LOCAL", l))
                .unwrap_err()
                .to_string()
        };
        let e = err("01.2", "/opt/web");
        assert!(e.contains("package[1] (web).version"), "{e}");
        let e = err("1.2", "relative/path");
        assert!(e.contains("package[1] (web).local"), "{e}");
        let e = parse(&base.replace(r#""public_key":"/k.pem","#, "")).unwrap_err();
        assert!(e.to_string().contains("public_key: required"), "{e}");
        let e = parse(r#"{"device":"d","allow_unsigned":true,"package":[{"package":"a","version":"1","local":"/a","remote":"http://h"},{"package":"a","version":"1","local":"/b","remote":"http://h"}]}"#).unwrap_err();
        assert!(e.to_string().contains("listed twice"), "{e}");
        let e = parse(r#"{"device":"d","allow_unsigned":true,"poll_interval":0,"package":[]}"#)
            .unwrap_err();
        assert!(e.to_string().contains("poll_interval"), "{e}");
        let e = parse(r#"{"device":"d","allow_unsigned":true,"package":[{"package":"a","version":"1","local":"/a","remote":"http://h","dependencies":{"b":">=x"}}]}"#).unwrap_err();
        assert!(e.to_string().contains("(a).dependencies"), "{e}");
    }
}
