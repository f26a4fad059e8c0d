//! Permissions of what holds secrets: the data directory is 0700 and the
//! embedded database 0600, whatever the umask, because the database holds
//! the API keys' hashes and the directory the unpublished uploads.

use crate::catalogue::StoreError;
use std::fs;
use std::io;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

pub(crate) fn create_private_dir_io(dir: &Path) -> io::Result<()> {
    fs::create_dir_all(dir)?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
}

/// Creates `dir` (and its parents) and makes it private to its owner (0700).
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
