//! `META/filesystem_config.txt`: owner, group, mode, SELinux label and
//! capabilities of every path, as `fs_config -C -S` writes them:
//! `<path> <uid> <gid> <octal mode>[ selabel=<ctx>][ capabilities=0x<hex>]`.

use crate::error::{AndroidError, Result};
use std::collections::BTreeMap;

/// Metadata of one path.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Meta {
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Permission bits (including setuid/setgid/sticky).
    pub mode: u32,
    /// SELinux context, when labelled.
    pub selabel: Option<String>,
    /// File capabilities bitmask, when given.
    pub capabilities: Option<u64>,
}

impl Meta {
    /// Formats as a `filesystem_config.txt` line (without the newline).
    pub fn line(&self, path: &str) -> String {
        let mut s = format!("{path} {} {} {:o}", self.uid, self.gid, self.mode);
        if let Some(l) = &self.selabel {
            s.push_str(" selabel=");
            s.push_str(l);
        }
        if let Some(c) = self.capabilities {
            s.push_str(&format!(" capabilities=0x{c:x}"));
        }
        s
    }
}

/// All entries of a `filesystem_config.txt`, by path (`system/bin/sh`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FsConfig {
    /// Entries by path without leading `/`.
    pub entries: BTreeMap<String, Meta>,
}

impl FsConfig {
    /// Parses the file's text; `file` names it in errors.
    pub fn parse(text: &str, file: &str) -> Result<FsConfig> {
        let mut entries = BTreeMap::new();
        for (n, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() {
                continue;
            }
            let bad = |message: String| AndroidError::Malformed {
                file: file.to_string(),
                line: n + 1,
                message,
            };
            let mut cols = line.split_whitespace();
            let (Some(path), Some(uid), Some(gid), Some(mode)) =
                (cols.next(), cols.next(), cols.next(), cols.next())
            else {
                return Err(bad(format!(
                    "expected <path> <uid> <gid> <mode>, found {line:?}"
                )));
            };
            let uid = uid
                .parse()
                .map_err(|_| bad(format!("uid {uid:?} is not a number")))?;
            let gid = gid
                .parse()
                .map_err(|_| bad(format!("gid {gid:?} is not a number")))?;
            let mode = u32::from_str_radix(mode, 8)
                .ok()
                .filter(|m| *m <= 0o7777)
                .ok_or_else(|| bad(format!("mode {mode:?} is not an octal permission")))?;
            let mut meta = Meta {
                uid,
                gid,
                mode,
                selabel: None,
                capabilities: None,
            };
            for kv in cols {
                match kv.split_once('=') {
                    Some(("selabel", v)) if !v.is_empty() => meta.selabel = Some(v.to_string()),
                    Some(("capabilities", v)) => {
                        let hex = v.strip_prefix("0x").unwrap_or(v);
                        meta.capabilities = Some(
                            u64::from_str_radix(hex, 16)
                                .map_err(|_| bad(format!("capabilities {v:?} is not hex")))?,
                        );
                    }
                    _ => return Err(bad(format!("unknown field {kv:?}"))),
                }
            }
            if ota_delta::tree::check_rel_path(path).is_err() {
                return Err(bad(format!(
                    "path {path:?} must be relative, without '..' or '//'"
                )));
            }
            entries.insert(path.to_string(), meta);
        }
        Ok(FsConfig { entries })
    }

    /// Metadata of `path`, if listed.
    pub fn get(&self, path: &str) -> Option<&Meta> {
        self.entries.get(path)
    }

    /// Formats the whole file, sorted by path.
    pub fn to_text(&self) -> String {
        let mut s = String::new();
        for (p, m) in &self.entries {
            s.push_str(&m.line(p));
            s.push('\n');
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_labels_and_capabilities() {
        let t = "system 0 0 755 selabel=u:object_r:system_file:s0\n\
                 system/bin/ping 0 2000 4755 selabel=u:object_r:system_file:s0 capabilities=0x2000\n\
                 system/etc/dbus.conf 1002 1002 440\n";
        let c = FsConfig::parse(t, "f").unwrap();
        let p = c.get("system/bin/ping").unwrap();
        assert_eq!(
            (p.uid, p.gid, p.mode, p.capabilities),
            (0, 2000, 0o4755, Some(0x2000))
        );
        assert_eq!(c.get("system/etc/dbus.conf").unwrap().selabel, None);
        assert_eq!(FsConfig::parse(&c.to_text(), "f").unwrap(), c);
    }

    #[test]
    fn errors_name_the_line() {
        for (t, want) in [
            ("system 0 0\n", "f:1: expected"),
            ("a 0 0 755\nsystem x 0 755\n", "f:2: uid \"x\""),
            ("system 0 0 999\n", "f:1: mode \"999\""),
            ("system 0 0 755 colour=red\n", "f:1: unknown field"),
            ("../x 0 0 755\n", "f:1: path"),
        ] {
            let e = FsConfig::parse(t, "f").unwrap_err().to_string();
            assert!(e.starts_with(want), "{e}");
        }
    }
}
