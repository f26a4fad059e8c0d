//! Errors of packs and bundles.

use std::path::PathBuf;

/// What went wrong reading, writing, verifying or applying a pack or bundle.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    /// An I/O error, with what was being done.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The pack or bundle is not laid out as the format says.
    #[error("malformed {what}: {why}")]
    Malformed {
        /// Which part (`pack_2.tar.gz`, `apply_log`, …).
        what: String,
        /// Why.
        why: String,
    },
    /// A signature did not verify with the given public key.
    #[error("{what}: signature does not verify with the given public key")]
    BadSignature {
        /// Which pack.
        what: String,
    },
    /// A patch failed to apply.
    #[error("{what}: {source}")]
    Delta {
        /// Which pack.
        what: String,
        /// The cause.
        source: ota_delta::DeltaError,
    },
    /// An archive member was refused: hostile name, link or type, a
    /// duplicate, a lie about its size.
    #[error("{archive}: member {member:?}: {why}")]
    Member {
        /// The archive.
        archive: PathBuf,
        /// The member's name as the archive gives it (lossy if not UTF-8).
        member: String,
        /// Why it is refused.
        why: String,
    },
    /// An archive refused as a whole: damaged, over a limit, or not what
    /// it was said to be.
    #[error("{archive}: {why}")]
    Archive {
        /// The archive.
        archive: PathBuf,
        /// Why.
        why: String,
    },
    /// The packs of a bundle do not form one path for one package, or a
    /// member contradicts the signed pack it goes with.
    #[error("{what}: {why}")]
    Chain {
        /// Which pack or member (`pack_2.tar.gz`, `pack_2_hash`).
        what: String,
        /// Why.
        why: String,
    },
    /// The target is not what the bundle applies to, could not be locked,
    /// or is not what a pack promised after applying it.
    #[error("{target}: {why}")]
    Target {
        /// The target file or directory.
        target: PathBuf,
        /// Why.
        why: String,
    },
    /// A path outside what a pack may touch.
    #[error("{path}: {why}")]
    Path {
        /// The path.
        path: PathBuf,
        /// Why it is refused.
        why: String,
    },
}

impl BundleError {
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        BundleError::Io {
            context: context.into(),
            source,
        }
    }
    pub(crate) fn malformed(what: impl Into<String>, why: impl Into<String>) -> Self {
        BundleError::Malformed {
            what: what.into(),
            why: why.into(),
        }
    }
}

/// Result with [`BundleError`].
pub type Result<T, E = BundleError> = std::result::Result<T, E>;
