//! Core types of the OTA system: version numbers and their ordering, the
//! `content.json` package manifest, SHA-256 digests, name rules and API keys.
//!
//! This crate does no network or database I/O so every other crate (server,
//! agent, builders) can share it and it can be tested alone.

pub mod apikey;
pub mod content;
pub mod hash;
pub mod name;
pub mod scope;
pub mod size;
pub mod version;

pub use content::{Content, ContentError};
pub use hash::{Sha256Hex, Sha256Writer};
pub use version::{Version, VersionError};
