//! Errors of the delta engine.

use std::path::PathBuf;

/// Everything that can go wrong making or applying a delta.
#[derive(Debug, thiserror::Error)]
pub enum DeltaError {
    /// A file system error, with what was being done. The OS error is the
    /// [`source`](std::error::Error::source), not part of the message, so a
    /// chain printer (`anyhow`'s `{:#}`) shows it once.
    #[error("{context}")]
    Io {
        /// What was being done.
        context: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The patch is malformed, truncated or hostile.
    #[error("corrupt patch: {0}")]
    Corrupt(String),
    /// The patch was made for another source file.
    #[error("wrong source: the patch expects {what} with SHA-256 {expected}, found {actual}")]
    WrongSource {
        /// Which source ("the old file", a path in a tree).
        what: String,
        /// Digest the patch was made against.
        expected: String,
        /// Digest of what is there.
        actual: String,
    },
    /// The result does not hash to what the patch promises.
    #[error("the patched result for {what} does not match the target (SHA-256 {actual}, expected {expected}); nothing was written")]
    WrongResult {
        /// What was being built.
        what: String,
        /// Promised digest.
        expected: String,
        /// Digest of the result.
        actual: String,
    },
    /// The patch's magic is not one we know.
    #[error("unknown patch format (magic {0:?}); expected OTADIFF1, BSDIFF40 or OTATREE1")]
    UnknownFormat(String),
    /// A combination of inputs or options the engine does not support.
    #[error("{0}")]
    Unsupported(String),
    /// Inputs over the supported size.
    #[error("{0}")]
    TooLarge(String),
    /// Suffix array construction failed.
    #[error(transparent)]
    SuffixArray(#[from] crate::matcher::SaError),
    /// A path is unusable (hostile entry, missing directory, …).
    #[error("{path}: {why}")]
    Path {
        /// The offending path.
        path: PathBuf,
        /// Why it is refused.
        why: String,
    },
}

impl DeltaError {
    /// Wraps an I/O error with context.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        DeltaError::Io {
            context: context.into(),
            source,
        }
    }
    /// A corrupt-patch error.
    pub fn corrupt(why: impl Into<String>) -> Self {
        DeltaError::Corrupt(why.into())
    }
}

/// Result alias.
pub type Result<T> = std::result::Result<T, DeltaError>;
