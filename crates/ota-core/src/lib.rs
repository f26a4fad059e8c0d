//! Core types of the OTA system: version numbers and their ordering, the
//! `content.json` package manifest, SHA-256 digests and a version's digest,
//! name rules, API keys and their scopes, sizes.
//!
//! This crate does no network or database I/O so every other crate (server,
//! agent, builders) can share it and it can be tested alone.
//!
//! ```
//! use ota_core::{Content, Version};
//! assert!(Version::parse("1.10.0").unwrap() > Version::parse("1.9.9").unwrap());
//! let c = Content::from_slice(br#"{"package":"org.example.app","version":"1.4.2",
//!     "sha256":"ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"}"#).unwrap();
//! assert_eq!(c.branch(), "main"); // the default branch
//! assert!(Version::parse("01.2").is_err()); // leading zeros are ambiguous
//! ```

pub mod apikey;
pub mod content;
pub mod digest;
pub mod hash;
pub mod name;
pub mod scope;
pub mod signing;
pub mod size;
pub mod version;

pub use content::{Content, ContentError};
pub use hash::{Sha256Hex, Sha256Writer};
pub use version::{Version, VersionError};
