//! Errors of the Android OTA builder and the recovery simulator.

/// Everything that can go wrong reading target-files, building, signing,
/// verifying or applying a package.
#[derive(Debug, thiserror::Error)]
pub enum AndroidError {
    /// A file system error, with what was being done.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A zip archive could not be read or written.
    #[error("{context}: {source}")]
    Zip {
        /// What was being done.
        context: String,
        /// The zip error.
        #[source]
        source: zip::result::ZipError,
    },
    /// A required part of the input is absent.
    #[error("missing {0}")]
    Missing(String),
    /// A text file has a bad line.
    #[error("{file}:{line}: {message}")]
    Malformed {
        /// File inside the target-files (or on disk).
        file: String,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// The input is well-formed but cannot be packaged (or applied).
    #[error("{0}")]
    Invalid(String),
    /// Making the binary patch failed.
    #[error("delta: {0}")]
    Delta(#[from] ota_delta::DeltaError),
    /// A key, certificate or signature problem.
    #[error("signature: {0}")]
    Signature(String),
    /// An edify script did not parse.
    #[error("updater-script:{line}:{column}: {message}")]
    Syntax {
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// What is wrong.
        message: String,
    },
    /// The script stopped: `abort`, a failed `assert` or a failed function,
    /// with the message recovery would print.
    #[error("script aborted: {0}")]
    Aborted(String),
}

/// Result with [`AndroidError`].
pub type Result<T, E = AndroidError> = std::result::Result<T, E>;

/// Attaches a context to an I/O error.
pub(crate) fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> AndroidError {
    let context = context.into();
    move |source| AndroidError::Io { context, source }
}

/// Attaches a context to a zip error.
pub(crate) fn zip_err(
    context: impl Into<String>,
) -> impl FnOnce(zip::result::ZipError) -> AndroidError {
    let context = context.into();
    move |source| AndroidError::Zip { context, source }
}
