//! Packs and bundles of the bundle protocol.
//!
//! The server builds one signed [`pack`] per hop of the version skip-list
//! (an `ota-delta` patch and what it is for) and answers a confirm with a
//! [`bundle`] (`data.tar.gz`): the packs of a path, the digest of the
//! version after each and their signatures, in `apply_log` order.
//! A device checks a whole bundle and applies it with [`apply`]
//! (signatures, chain of digests, journaled in-place updates, resume after
//! a crash). [`archive`] detects archive packages (tar, tar.gz, tar.zst,
//! zip) and unpacks them safely so the server can diff them as trees.
//! [`fixtures`] makes sample versions, packs and bundles for tests.
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

pub mod apply;
pub mod archive;
pub mod bundle;
pub mod error;
pub mod fixtures;
pub mod pack;

pub use error::{BundleError, Result};
