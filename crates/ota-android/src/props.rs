//! `key=value` files: `SYSTEM/build.prop` and `META/misc_info.txt`.
//!
//! Both split each line on its first `=`; blank lines and lines starting
//! with `#` are ignored (releasetools' `LoadDictionaryFromLines`). A line
//! with no `=` is an error naming the file and line, where releasetools
//! would silently drop it.

use crate::error::{AndroidError, Result};
use std::collections::BTreeMap;

/// Parsed `key=value` lines. A later line overrides an earlier one, as in
/// Android's property service.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Props {
    /// Which file these came from (for error messages).
    pub file: String,
    map: BTreeMap<String, String>,
}

impl Props {
    /// Parses `text`, read from `file` (named in errors).
    pub fn parse(text: &str, file: &str) -> Result<Props> {
        let mut map = BTreeMap::new();
        for (n, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let Some((k, v)) = line.split_once('=') else {
                return Err(AndroidError::Malformed {
                    file: file.to_string(),
                    line: n + 1,
                    message: format!("expected key=value, found {line:?}"),
                });
            };
            let k = k.trim();
            if k.is_empty() {
                return Err(AndroidError::Malformed {
                    file: file.to_string(),
                    line: n + 1,
                    message: "empty key".into(),
                });
            }
            map.insert(k.to_string(), v.trim().to_string());
        }
        Ok(Props {
            file: file.to_string(),
            map,
        })
    }

    /// The value of `key`, if present.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.map.get(key).map(String::as_str)
    }

    /// The value of `key`, or an error naming the file.
    pub fn require(&self, key: &str) -> Result<&str> {
        self.get(key)
            .ok_or_else(|| AndroidError::Missing(format!("{key} in {}", self.file)))
    }

    /// An integer value, `default` when absent, an error when not a number.
    pub fn int_or(&self, key: &str, default: i64) -> Result<i64> {
        match self.get(key) {
            None => Ok(default),
            Some(v) => v.parse().map_err(|_| {
                AndroidError::Invalid(format!("{}: {key}={v:?} is not an integer", self.file))
            }),
        }
    }

    /// Whether a flag key is set to a true value (`1`, `true`).
    pub fn flag(&self, key: &str) -> bool {
        matches!(self.get(key), Some("1" | "true" | "yes"))
    }

    /// All entries, sorted by key.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.map.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// Sets a value (used to build fixtures and for overrides).
    pub fn set(&mut self, key: &str, value: &str) {
        self.map.insert(key.to_string(), value.to_string());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_equals_splits_and_comments_skip() {
        let p = Props::parse("# c\nro.a=b=c\n\n  ro.x = y \n", "f").unwrap();
        assert_eq!(p.get("ro.a"), Some("b=c"));
        assert_eq!(p.get("ro.x"), Some("y"));
        assert_eq!(p.get("ro.z"), None);
    }

    #[test]
    fn bad_line_names_file_and_line() {
        let e = Props::parse("a=1\nnoequals\n", "META/misc_info.txt").unwrap_err();
        assert_eq!(
            e.to_string(),
            "META/misc_info.txt:2: expected key=value, found \"noequals\""
        );
        let p = Props::parse("fstab_version=x\n", "m").unwrap();
        assert!(p.int_or("fstab_version", 1).is_err());
        assert_eq!(p.int_or("other", 1).unwrap(), 1);
    }
}
