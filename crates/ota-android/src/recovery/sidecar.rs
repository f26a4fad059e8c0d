//! `ROOT/.ota-metadata`: owners, groups, SELinux labels and capabilities
//! (which need root to set for real), one path a line in the
//! `filesystem_config.txt` format: `path uid gid mode [selabel=…]
//! [capabilities=0x…]`.
//!
//! Paths and labels are escaped: a backslash, a space or a control
//! character (newline included) is written `\xHH` (`\\` for the
//! backslash), so a file name or label from a package can never add or
//! split a line. Ordinary names read exactly as `filesystem_config.txt`.

use super::root::Root;
use crate::error::{AndroidError, Result};
use std::collections::BTreeMap;
use std::path::Path;

/// Name of the sidecar with owners, labels and capabilities.
pub const METADATA_FILE: &str = ".ota-metadata";

/// What the simulator records for one path.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Recorded {
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Mode last set (for symlinks: none).
    pub mode: Option<u32>,
    /// SELinux label.
    pub selabel: Option<String>,
    /// Capabilities (regular files only).
    pub capabilities: Option<u64>,
}

/// `s` with backslashes, spaces and control characters as `\xHH`.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            c if c == ' ' || c.is_control() => {
                let mut b = [0u8; 4];
                for byte in c.encode_utf8(&mut b).bytes() {
                    out.push_str(&format!("\\x{byte:02x}"));
                }
            }
            c => out.push(c),
        }
    }
    out
}

/// The inverse of [`escape`]; `None` for a malformed escape.
fn unescape(s: &str) -> Option<String> {
    if !s.contains('\\') {
        return Some(s.to_string());
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match (b[i], b.get(i + 1)) {
            (b'\\', Some(b'\\')) => {
                out.push(b'\\');
                i += 2;
            }
            (b'\\', Some(b'x')) => {
                let hex = std::str::from_utf8(b.get(i + 2..i + 4)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 4;
            }
            (b'\\', _) => return None,
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// Parses sidecar text; `file` names it in errors.
fn parse(text: &str, file: &str) -> Result<BTreeMap<String, Recorded>> {
    let mut out = BTreeMap::new();
    for (n, line) in text.lines().enumerate() {
        let bad = || AndroidError::Malformed {
            file: file.to_string(),
            line: n + 1,
            message: format!("bad line {line:?}"),
        };
        let mut cols = line.split(' ');
        let (Some(path), Some(uid), Some(gid), Some(mode)) =
            (cols.next(), cols.next(), cols.next(), cols.next())
        else {
            return Err(bad());
        };
        let mut r = Recorded {
            uid: uid.parse().map_err(|_| bad())?,
            gid: gid.parse().map_err(|_| bad())?,
            mode: if mode == "-" {
                None
            } else {
                Some(u32::from_str_radix(mode, 8).map_err(|_| bad())?)
            },
            ..Default::default()
        };
        for kv in cols {
            match kv.split_once('=') {
                Some(("selabel", v)) => r.selabel = Some(unescape(v).ok_or_else(bad)?),
                Some(("capabilities", v)) => {
                    r.capabilities = Some(
                        u64::from_str_radix(v.trim_start_matches("0x"), 16).map_err(|_| bad())?,
                    )
                }
                _ => return Err(bad()),
            }
        }
        out.insert(unescape(path).ok_or_else(bad)?, r);
    }
    Ok(out)
}

/// The sidecar as text.
fn render(meta: &BTreeMap<String, Recorded>) -> String {
    let mut s = String::new();
    for (p, r) in meta {
        let mode = r.mode.map_or("-".to_string(), |m| format!("{m:o}"));
        s.push_str(&format!("{} {} {} {mode}", escape(p), r.uid, r.gid));
        if let Some(l) = &r.selabel {
            s.push_str(&format!(" selabel={}", escape(l)));
        }
        if let Some(c) = r.capabilities {
            s.push_str(&format!(" capabilities=0x{c:x}"));
        }
        s.push('\n');
    }
    s
}

/// Reads ROOT's sidecar (empty when there is none).
pub(super) fn load(root: &Root, shown: &Path) -> Result<BTreeMap<String, Recorded>> {
    let shown = shown.join(METADATA_FILE);
    match root.read(METADATA_FILE) {
        Ok(b) => {
            let text = String::from_utf8(b).map_err(|_| AndroidError::Malformed {
                file: shown.display().to_string(),
                line: 0,
                message: "not UTF-8".into(),
            })?;
            parse(&text, &shown.display().to_string())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(BTreeMap::new()),
        Err(e) => Err(AndroidError::Io {
            context: format!("reading {}", shown.display()),
            source: e,
        }),
    }
}

/// Writes ROOT's sidecar (a fresh temporary renamed over it).
pub(super) fn store(root: &Root, shown: &Path, meta: &BTreeMap<String, Recorded>) -> Result<()> {
    root.write(METADATA_FILE, render(meta).as_bytes(), 0o644)
        .map_err(|e| AndroidError::Io {
            context: format!("writing {}", shown.join(METADATA_FILE).display()),
            source: e,
        })
}

/// Reads the sidecar of `root`: path (no leading `/`) → record.
pub fn read_metadata(root: &Path) -> Result<BTreeMap<String, Recorded>> {
    let r = Root::open(root).map_err(|e| AndroidError::Io {
        context: format!("opening {}", root.display()),
        source: e,
    })?;
    load(&r, root)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_labels_round_trip_without_adding_lines() {
        let mut m = BTreeMap::new();
        for name in [
            "system/bin/sh",
            "system/x\nsystem/bin/su 0 0 6755",
            "a b\\c\r\t\u{7f}\u{85}é",
        ] {
            m.insert(
                name.to_string(),
                Recorded {
                    uid: 1000,
                    gid: 2000,
                    mode: Some(0o4755),
                    selabel: Some(format!("u:object_r:{name}:s0")),
                    capabilities: Some(0x20),
                },
            );
        }
        let text = render(&m);
        assert_eq!(text.lines().count(), 3, "{text}");
        assert!(text.starts_with(
            "a\\x20b\\\\c\\x0d\\x09\\x7f\\xc2\\x85é 1000 2000 4755 selabel=u:object_r:a\\x20b"
        ));
        assert!(text.contains("\nsystem/bin/sh 1000 2000 4755 selabel=u:object_r:system/bin/sh:s0 capabilities=0x20\n"));
        assert_eq!(parse(&text, "t").unwrap(), m);
        assert!(parse("a\\q 0 0 644\n", "t").is_err());
        assert!(parse("a\\x4 0 0 644\n", "t").is_err());
    }
}
