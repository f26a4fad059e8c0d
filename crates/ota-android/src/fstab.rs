//! `RECOVERY/RAMDISK/etc/recovery.fstab`, versions 1 and 2
//! (releasetools' `LoadRecoveryFSTab`).
//!
//! - v1: `<mount_point> <fs_type> <device> [<device2>] [length=N]`
//! - v2: `<device> <mount_point> <fs_type> <flags> <options>`; entries with
//!   `voldmanaged=` are skipped; `length=` is honoured.

use crate::error::{AndroidError, Result};
use std::collections::BTreeMap;

/// One partition of the recovery fstab.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Partition {
    /// Where recovery mounts it (`/system`).
    pub mount_point: String,
    /// `ext4`, `yaffs2`, `emmc`, `mtd`, …
    pub fs_type: String,
    /// Block device or MTD partition name.
    pub device: String,
    /// Alternative device (v1 only).
    pub device2: Option<String>,
    /// `length=` option (0 when absent).
    pub length: i64,
}

impl Partition {
    /// `MTD` or `EMMC` (`PARTITION_TYPES`); other file systems have none.
    pub fn partition_type(&self) -> Result<&'static str> {
        match self.fs_type.as_str() {
            "yaffs2" | "mtd" => Ok("MTD"),
            "ext4" | "emmc" => Ok("EMMC"),
            other => Err(AndroidError::Invalid(format!(
                "{}: don't know how to handle {other:?} partitions (known: yaffs2, mtd, ext4, emmc)",
                self.mount_point
            ))),
        }
    }
}

/// Partitions by mount point.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Fstab {
    /// Entries by mount point.
    pub partitions: BTreeMap<String, Partition>,
}

impl Fstab {
    /// Parses `text` written in `version` (1 or 2); `file` names it in errors.
    pub fn parse(text: &str, version: i64, file: &str) -> Result<Fstab> {
        let mut partitions = BTreeMap::new();
        for (n, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let bad = |message: String| AndroidError::Malformed {
                file: file.to_string(),
                line: n + 1,
                message,
            };
            let pieces: Vec<&str> = line.split_whitespace().collect();
            let (p, options) = match version {
                1 => {
                    if !(3..=5).contains(&pieces.len()) {
                        return Err(bad(format!(
                            "fstab v1 wants <mount_point> <fs_type> <device> [<device2>] [options], found {line:?}"
                        )));
                    }
                    let (device2, options) = match pieces.get(3) {
                        Some(d) if d.starts_with('/') => (Some(d.to_string()), pieces.get(4)),
                        Some(_) if pieces.len() == 5 => {
                            return Err(bad(format!(
                                "fstab v1: device2 must be a path, found {line:?}"
                            )))
                        }
                        other => (None, other),
                    };
                    let p = Partition {
                        mount_point: pieces[0].to_string(),
                        fs_type: pieces[1].to_string(),
                        device: pieces[2].to_string(),
                        device2,
                        length: 0,
                    };
                    (p, options.copied())
                }
                2 => {
                    if pieces.len() != 5 {
                        return Err(bad(format!(
                            "fstab v2 wants exactly 5 fields <device> <mount_point> <fs_type> <flags> <options>, found {}",
                            pieces.len()
                        )));
                    }
                    if pieces[4].contains("voldmanaged=") {
                        continue;
                    }
                    let p = Partition {
                        mount_point: pieces[1].to_string(),
                        fs_type: pieces[2].to_string(),
                        device: pieces[0].to_string(),
                        device2: None,
                        length: 0,
                    };
                    (p, Some(pieces[4]))
                }
                v => {
                    return Err(AndroidError::Invalid(format!(
                        "unknown fstab_version {v} (1 or 2)"
                    )))
                }
            };
            let mut p = p;
            for opt in options.into_iter().flat_map(|o| o.split(',')) {
                if let Some(len) = opt.strip_prefix("length=") {
                    p.length = len
                        .parse()
                        .map_err(|_| bad(format!("length {len:?} is not an integer")))?;
                }
            }
            if !p.mount_point.starts_with('/') {
                return Err(bad(format!(
                    "mount point {:?} must be absolute",
                    p.mount_point
                )));
            }
            partitions.insert(p.mount_point.clone(), p);
        }
        Ok(Fstab { partitions })
    }

    /// Parses an fstab of either version: v2 when the first entry's second
    /// field is a path (`<device> <mount_point> …`), v1 otherwise
    /// (`<mount_point> <fs_type> …`).
    pub fn parse_any(text: &str, file: &str) -> Result<Fstab> {
        let v2 = text
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty() && !l.starts_with('#'))
            .and_then(|l| l.split_whitespace().nth(1))
            .is_some_and(|f| f.starts_with('/'));
        Fstab::parse(text, if v2 { 2 } else { 1 }, file)
    }

    /// The partition mounted at `mount_point`, or an error naming it.
    pub fn get(&self, mount_point: &str) -> Result<&Partition> {
        self.partitions.get(mount_point).ok_or_else(|| {
            AndroidError::Missing(format!("an entry for {mount_point} in recovery.fstab"))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_and_v2() {
        let v1 = "# mount point fstype device [device2]\n/system ext4 /dev/block/mmcblk0p9\n/boot emmc /dev/block/mmcblk0p7\n/data ext4 /dev/block/mmcblk0p12 length=-16384\n/sdcard vfat /dev/block/mmcblk1p1 /dev/block/mmcblk1\n";
        let f = Fstab::parse(v1, 1, "fstab").unwrap();
        assert_eq!(f.get("/data").unwrap().length, -16384);
        assert_eq!(
            f.get("/sdcard").unwrap().device2.as_deref(),
            Some("/dev/block/mmcblk1")
        );
        assert_eq!(f.get("/boot").unwrap().partition_type().unwrap(), "EMMC");
        let v2 = "/dev/block/platform/msm_sdcc.1/by-name/system /system ext4 ro,barrier=1 wait\n/dev/block/platform/msm_sdcc.1/by-name/userdata /data ext4 nosuid wait,length=-16384\n/devices/platform/sdhci /storage/sdcard1 vfat nosuid voldmanaged=sdcard1:auto\n";
        let f = Fstab::parse(v2, 2, "fstab").unwrap();
        assert_eq!(f.partitions.len(), 2);
        assert_eq!(f.get("/data").unwrap().length, -16384);
        assert!(f.get("/storage/sdcard1").is_err());
        assert_eq!(Fstab::parse_any(v1, "f").unwrap().partitions.len(), 4);
        assert_eq!(Fstab::parse_any(v2, "f").unwrap(), f);
    }

    #[test]
    fn malformed_lines() {
        let e = Fstab::parse("/system ext4\n", 1, "r.fstab")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("r.fstab:1: fstab v1"), "{e}");
        let e = Fstab::parse("a b c d\n", 2, "r.fstab")
            .unwrap_err()
            .to_string();
        assert!(e.contains("exactly 5 fields"), "{e}");
        assert!(Fstab::parse("/system ext4 /dev/x length=abc\n", 1, "f").is_err());
    }
}
