//! Packs and bundles of the bundle protocol.
//!
//! The server builds one signed [`pack`] per hop of the version skip-list
//! (an `ota-delta` patch and what it is for) and answers a confirm with a
//! [`bundle`] (`data.tar.gz`): the packs of a path, the digest of the
//! version after each and their signatures, in `apply_log` order.
//! [`archive`] detects archive packages (tar, tar.gz, tar.zst, zip) and
//! unpacks them safely so the server can diff them as trees.
//!
//! ```
//! use ota_bundle::pack::{write_pack, read_pack, PackInfo, PackDirection, PatchFormat};
//! let dir = tempfile::tempdir().unwrap();
//! let patch = dir.path().join("patch");
//! std::fs::write(&patch, b"patch bytes").unwrap();
//! let info = PackInfo {
//!     package: "app".into(), branch: "stable".into(),
//!     from: "1.0.0".into(), to: "1.0.1".into(),
//!     direction: PackDirection::Upgrade, format: PatchFormat::Otadiff1,
//!     from_digest: "a".repeat(64), to_digest: "b".repeat(64),
//!     patch_sha256: String::new(), patch_size: 0,
//! };
//! let mut pack = Vec::new();
//! let written = write_pack(&info, &patch, &mut pack).unwrap();
//! let read = read_pack(pack.as_slice(), "pack_1.tar.gz", &dir.path().join("out")).unwrap();
//! assert_eq!(read, written);
//! ```

pub mod archive;
pub mod bundle;
pub mod error;
pub mod pack;

pub use error::{BundleError, Result};
