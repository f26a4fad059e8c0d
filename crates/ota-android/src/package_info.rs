//! What an OTA package says about itself: `META-INF/com/android/metadata`
//! and, in a full package, the `system/build.prop` it installs.
//!
//! Publishing reads these instead of trusting flags: the device, the build's
//! incremental and timestamp, the API level, and (for an incremental) the
//! build it applies to. Packages made by [`crate::full`] and
//! [`crate::incremental`] carry all of them, as releasetools' do since
//! Nougat (`pre-build-incremental`, `post-build-incremental`).
//!
//! Reads are bounded: the metadata entry may hold 64 KiB, build.prop 1 MiB,
//! whatever sizes the zip declares.

use crate::error::{io, zip_err, AndroidError, Result};
use crate::props::Props;
use std::io::Read;
use std::path::Path;

/// The metadata entry of an OTA package.
pub const METADATA_ENTRY: &str = "META-INF/com/android/metadata";
/// The build properties a full package installs.
pub const BUILD_PROP_ENTRY: &str = "system/build.prop";
const MAX_METADATA: u64 = 64 * 1024;
const MAX_BUILD_PROP: u64 = 1 << 20;

/// Whether a package installs a whole build or patches one build into another.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PackageKind {
    /// A full package.
    Full,
    /// An incremental package from the build whose incremental is given.
    Incremental {
        /// `pre-build-incremental`: the build it applies to.
        source_incremental: String,
        /// `pre-build`: that build's fingerprint.
        source_fingerprint: String,
    },
}

/// What a package declares about the build it produces.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PackageInfo {
    /// Full or incremental (with its source).
    pub kind: PackageKind,
    /// `pre-device`: the device codename (`ro.product.device`).
    pub device: String,
    /// `post-build-incremental`: the target's `ro.build.version.incremental`.
    pub incremental: String,
    /// `post-timestamp`: the target's `ro.build.date.utc`.
    pub timestamp: i64,
    /// `post-build`: the target's fingerprint.
    pub fingerprint: String,
    /// `ro.build.version.sdk` of the carried build.prop (full packages that
    /// have it).
    pub api_level: Option<i64>,
    /// The ROM version: `ro.lineage.build.version`, `ro.cm.build.version`,
    /// `ro.build.version.release`, else the release field of the fingerprint
    /// (`brand/product/device:RELEASE/id/incremental:type/tags`).
    pub version: Option<String>,
    /// `ro.lineage.releasetype` or `ro.cm.releasetype`, when carried.
    pub release_type: Option<String>,
    /// `ro.product.model`, when carried.
    pub model: Option<String>,
    /// `ro.product.brand`, when carried.
    pub brand: Option<String>,
}

/// Reads one entry of at most `max` bytes as UTF-8; `None` when absent.
fn read_entry<R: Read + std::io::Seek>(
    zip: &mut zip::ZipArchive<R>,
    name: &str,
    max: u64,
    source: &str,
) -> Result<Option<String>> {
    let entry = match zip.by_name(name) {
        Ok(e) => e,
        Err(zip::result::ZipError::FileNotFound) => return Ok(None),
        Err(e) => return Err(zip_err(format!("reading {name} in {source}"))(e)),
    };
    let mut buf = Vec::new();
    entry
        .take(max + 1)
        .read_to_end(&mut buf)
        .map_err(io(format!("reading {name} in {source}")))?;
    if buf.len() as u64 > max {
        return Err(AndroidError::Invalid(format!(
            "{name} in {source} is larger than {max} bytes"
        )));
    }
    String::from_utf8(buf)
        .map(Some)
        .map_err(|_| AndroidError::Invalid(format!("{name} in {source} is not UTF-8 text")))
}

/// The release field of a fingerprint, if it has the usual shape.
fn release_of(fingerprint: &str) -> Option<String> {
    let (_, rest) = fingerprint.split_once(':')?;
    let release = rest.split('/').next()?;
    (!release.is_empty()).then(|| release.to_string())
}

impl PackageInfo {
    /// Reads a package file.
    pub fn read(path: &Path) -> Result<PackageInfo> {
        let file = std::fs::File::open(path).map_err(io(format!("opening {}", path.display())))?;
        Self::from_reader(std::io::BufReader::new(file), &path.display().to_string())
    }

    /// Reads a package from any seekable reader; `source` names it in errors.
    pub fn from_reader<R: Read + std::io::Seek>(reader: R, source: &str) -> Result<PackageInfo> {
        let mut zip = zip::ZipArchive::new(reader).map_err(zip_err(format!(
            "{source} is not a zip (an OTA package is one)"
        )))?;
        let text =
            read_entry(&mut zip, METADATA_ENTRY, MAX_METADATA, source)?.ok_or_else(|| {
                AndroidError::Missing(format!(
                "{METADATA_ENTRY} in {source}: not an OTA package, or one made without metadata"
            ))
            })?;
        let meta = Props::parse(&text, METADATA_ENTRY)?;
        let build_prop = read_entry(&mut zip, BUILD_PROP_ENTRY, MAX_BUILD_PROP, source)?
            .map(|t| Props::parse(&t, BUILD_PROP_ENTRY))
            .transpose()?;
        Self::from_props(&meta, build_prop.as_ref())
    }

    fn from_props(meta: &Props, build_prop: Option<&Props>) -> Result<PackageInfo> {
        let device = meta.require("pre-device")?.to_string();
        let incremental = meta.require("post-build-incremental")?.to_string();
        let fingerprint = meta.require("post-build")?.to_string();
        let ts = meta.require("post-timestamp")?;
        let timestamp: i64 = ts.parse().map_err(|_| {
            AndroidError::Invalid(format!(
                "{METADATA_ENTRY}: post-timestamp={ts:?} is not a number"
            ))
        })?;
        let kind = match (meta.get("pre-build-incremental"), meta.get("pre-build")) {
            (None, None) => PackageKind::Full,
            (Some(inc), Some(fp)) => PackageKind::Incremental {
                source_incremental: inc.to_string(),
                source_fingerprint: fp.to_string(),
            },
            (None, Some(_)) => {
                return Err(AndroidError::Missing(format!(
                    "pre-build-incremental in {METADATA_ENTRY}: an incremental package must name \
                     the build it applies to"
                )))
            }
            (Some(_), None) => {
                return Err(AndroidError::Missing(format!(
                    "pre-build in {METADATA_ENTRY}"
                )))
            }
        };
        let mut info = PackageInfo {
            kind,
            device,
            incremental,
            timestamp,
            api_level: None,
            version: None,
            release_type: None,
            model: None,
            brand: None,
            fingerprint,
        };
        if let Some(bp) = build_prop {
            info.check_build_prop(bp)?;
            if bp.get("ro.build.version.sdk").is_some() {
                info.api_level = Some(bp.int_or("ro.build.version.sdk", 0)?);
            }
            info.version = [
                "ro.lineage.build.version",
                "ro.cm.build.version",
                "ro.build.version.release",
            ]
            .iter()
            .find_map(|k| bp.get(k).filter(|v| !v.is_empty()).map(str::to_string));
            info.release_type = ["ro.lineage.releasetype", "ro.cm.releasetype"]
                .iter()
                .find_map(|k| bp.get(k).filter(|v| !v.is_empty()).map(str::to_string));
            info.model = bp.get("ro.product.model").map(str::to_string);
            info.brand = bp.get("ro.product.brand").map(str::to_string);
        }
        if info.version.is_none() {
            info.version = release_of(&info.fingerprint);
        }
        Ok(info)
    }

    /// The carried build.prop must describe the build the metadata names.
    fn check_build_prop(&self, bp: &Props) -> Result<()> {
        let pairs = [
            ("ro.product.device", "pre-device", self.device.clone()),
            (
                "ro.build.version.incremental",
                "post-build-incremental",
                self.incremental.clone(),
            ),
            (
                "ro.build.date.utc",
                "post-timestamp",
                self.timestamp.to_string(),
            ),
            (
                "ro.build.fingerprint",
                "post-build",
                self.fingerprint.clone(),
            ),
        ];
        for (prop, key, expected) in pairs {
            if let Some(v) = bp.get(prop) {
                if v != expected {
                    return Err(AndroidError::Invalid(format!(
                        "{BUILD_PROP_ENTRY} says {prop}={v:?} but {METADATA_ENTRY} says \
                         {key}={expected:?}"
                    )));
                }
            }
        }
        Ok(())
    }

    /// The source build's incremental, for an incremental package.
    pub fn source_incremental(&self) -> Option<&str> {
        match &self.kind {
            PackageKind::Full => None,
            PackageKind::Incremental {
                source_incremental, ..
            } => Some(source_incremental),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(text: &str) -> Props {
        Props::parse(text, METADATA_ENTRY).unwrap()
    }

    const FULL: &str = "ota-type=FILE\npost-build=acme/h/hammerhead:4.4.4/KTU84P/eng.1001:user/release-keys\npost-build-incremental=eng.1001\npost-timestamp=1400000000\npre-device=hammerhead\n";

    #[test]
    fn full_and_incremental() {
        let info = PackageInfo::from_props(&meta(FULL), None).unwrap();
        assert_eq!(info.kind, PackageKind::Full);
        assert_eq!(info.device, "hammerhead");
        assert_eq!(info.incremental, "eng.1001");
        assert_eq!(info.timestamp, 1_400_000_000);
        assert_eq!(info.version.as_deref(), Some("4.4.4"));
        assert_eq!(info.api_level, None);

        let inc = format!("{FULL}pre-build=fp1\npre-build-incremental=eng.1000\n");
        let info = PackageInfo::from_props(&meta(&inc), None).unwrap();
        assert_eq!(info.source_incremental(), Some("eng.1000"));
    }

    #[test]
    fn build_prop_fills_and_must_agree() {
        let bp = Props::parse(
            "ro.build.version.sdk=19\nro.lineage.build.version=11.0\nro.lineage.releasetype=NIGHTLY\nro.product.device=hammerhead\nro.build.version.incremental=eng.1001\n",
            BUILD_PROP_ENTRY,
        )
        .unwrap();
        let info = PackageInfo::from_props(&meta(FULL), Some(&bp)).unwrap();
        assert_eq!(info.api_level, Some(19));
        assert_eq!(info.version.as_deref(), Some("11.0"));
        assert_eq!(info.release_type.as_deref(), Some("NIGHTLY"));

        let lying = Props::parse("ro.product.device=flo\n", BUILD_PROP_ENTRY).unwrap();
        let e = PackageInfo::from_props(&meta(FULL), Some(&lying)).unwrap_err();
        assert!(e.to_string().contains("ro.product.device=\"flo\""), "{e}");
        let bad_sdk = Props::parse("ro.build.version.sdk=x\n", BUILD_PROP_ENTRY).unwrap();
        assert!(PackageInfo::from_props(&meta(FULL), Some(&bad_sdk)).is_err());
    }

    #[test]
    fn missing_or_malformed_metadata() {
        for drop in [
            "pre-device",
            "post-build-incremental",
            "post-timestamp",
            "post-build",
        ] {
            let text: String = FULL
                .lines()
                .filter(|l| !l.starts_with(&format!("{drop}=")))
                .map(|l| format!("{l}\n"))
                .collect();
            let e = PackageInfo::from_props(&meta(&text), None).unwrap_err();
            assert!(e.to_string().contains(drop), "{drop}: {e}");
        }
        let text = FULL.replace("post-timestamp=1400000000", "post-timestamp=soon");
        assert!(PackageInfo::from_props(&meta(&text), None).is_err());
        let half = format!("{FULL}pre-build=fp1\n");
        let e = PackageInfo::from_props(&meta(&half), None).unwrap_err();
        assert!(e.to_string().contains("pre-build-incremental"), "{e}");
    }

    #[test]
    fn not_a_zip_or_no_metadata() {
        let e = PackageInfo::from_reader(std::io::Cursor::new(b"not a zip".to_vec()), "x.zip")
            .unwrap_err();
        assert!(e.to_string().contains("x.zip is not a zip"), "{e}");
        let mut buf = std::io::Cursor::new(Vec::new());
        {
            let mut w = zip::ZipWriter::new(&mut buf);
            w.start_file(
                "system/build.prop",
                zip::write::SimpleFileOptions::default(),
            )
            .unwrap();
            std::io::Write::write_all(&mut w, b"a=b\n").unwrap();
            w.finish().unwrap();
        }
        buf.set_position(0);
        let e = PackageInfo::from_reader(buf, "y.zip").unwrap_err();
        assert!(e.to_string().contains(METADATA_ENTRY), "{e}");
    }
}
