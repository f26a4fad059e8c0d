//! Permissions of what holds secrets: the data directory is 0700 and the
//! embedded database 0600, whatever the umask, because the database holds
//! the API keys' hashes and the directory the unpublished uploads.

use crate::catalogue::StoreError;
use std::fs;
use std::io;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

pub(crate) fn create_private_dir_io(dir: &Path) -> io::Result<()> {
    match fs::symlink_metadata(dir) {
        // An existing directory is the operator's: its mode is left alone,
        // with a warning when others can enter it.
        Ok(meta) => {
            if meta.permissions().mode() & 0o077 != 0 {
                tracing::warn!(
                    "data directory {} is accessible to other users (mode {:o}); chmod 700 it",
                    dir.display(),
                    meta.permissions().mode() & 0o7777
                );
            }
            Ok(())
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            fs::create_dir_all(dir)?;
            fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
        }
        Err(e) => Err(e),
    }
}

/// Creates `dir` (and its parents) private to its owner (0700); an
/// existing directory keeps its mode (a warning says when it is shared).
pub fn create_private_dir(dir: &Path) -> Result<(), StoreError> {
    create_private_dir_io(dir)
        .map_err(|e| StoreError::io(format!("creating data directory {}", dir.display()), e))
}

/// Makes the SQLite database file owner-only (0600) before SQLite opens it;
/// SQLite gives its `-wal` and `-shm` files the database's mode.
pub(crate) fn private_sqlite_file(url: &str) -> Result<(), StoreError> {
    let Some(rest) = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
    else {
        return Ok(());
    };
    let path = rest.split('?').next().unwrap_or_default();
    if path.is_empty() || path == ":memory:" {
        return Ok(());
    }
    let path = Path::new(path);
    let err = |e| StoreError::io(format!("securing {}", path.display()), e);
    match fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            fs::set_permissions(path, fs::Permissions::from_mode(0o600)).map_err(err)
        }
        // A missing parent directory: let SQLite report it.
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(err(e)),
    }
}
