//! File-based (non-A/B) Android OTA packages, built in Rust.
//!
//! - [`target_files`]: read a target-files package (zip or directory):
//!   [`props`] (`build.prop`, `META/misc_info.txt`), [`fs_config`]
//!   (`META/filesystem_config.txt`), [`fstab`] (recovery fstab v1/v2),
//!   [`bootimg`] (boot and recovery images).
//! - [`full`] and [`incremental`]: write OTA zips with their
//!   `updater-script` ([`script`], [`permissions`]) and metadata ([`package`]).
//! - [`package_info`]: what a package declares (device, incrementals,
//!   timestamp, API level), read back for publishing.
//! - [`sign`]: whole-file signatures as `signapk -w` makes them, and their check.
//! - [`edify`] and [`recovery`]: parse and run an `updater-script` against a
//!   directory standing in for the device.
//! - [`fixtures`]: synthetic target-files for tests and benchmarks.

pub mod bootimg;
pub mod edify;
pub mod error;
pub mod fixtures;
pub mod fs_config;
pub mod fstab;
pub mod full;
pub mod incremental;
pub mod package;
pub mod package_info;
pub mod permissions;
pub mod props;
pub mod recovery;
pub mod script;
pub mod sign;
pub mod target_files;

pub use error::{AndroidError, Result};
