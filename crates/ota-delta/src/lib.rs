//! Binary and directory-tree deltas.
//!
//! - [`file`]: diff and patch whole files, in the own [`format`]
//!   (`OTADIFF1`: zstd, SHA-256 of both sides, applied front to back) or the
//!   classic [`bsdiff40`] format that stock `bspatch` and Android read.
//! - [`exe`]: the executable-aware transform (`OTADIFF2`): x86-64 ELF code
//!   and pointers rewritten by an address map before the byte-level diff.
//! - [`matcher`]: suffix array (libsais) and the bsdiff-style scan.
//! - [`tree`]: directory trees, forward and reverse.

pub mod bsdiff40;
mod dirfd;
pub mod error;
pub mod exe;
pub mod file;
pub mod format;
pub mod matcher;
pub mod tree;
mod varint;

pub use error::{DeltaError, Result};
pub use file::{
    diff_bytes, diff_files, output_mode, patch_bytes, patch_file, patch_file_with,
    set_output_permissions, DiffOptions, Format, PatchOptions,
};
