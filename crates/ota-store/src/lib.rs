//! Storage for the update server: the [`Catalogue`] of published versions and
//! API keys (SQLite embedded by default, PostgreSQL for production, one
//! implementation over `sqlx::Any`) and the content-addressed [`BlobStore`].
//!
//! Invariant kept by both together: a catalogue row is only written after its
//! blob is durable under its hash, so every row's file can be served.

mod blob;
mod catalogue;
mod migrate;
mod private;
pub mod testdb;

pub use blob::{BlobStore, BlobWriter, CommitError, Committed, DataDirLock};
pub use catalogue::{
    Backend, Catalogue, Entry, KeyAuth, KeyInfo, NewEntry, PackageSummary, PublishOutcome,
    StoreError,
};
pub use private::create_private_dir;

/// Removes what a crash can leave behind: temporary upload files, and blobs
/// that no catalogue row references (a crash between storing a blob and
/// writing its row). Call it at start-up while holding the [`DataDirLock`].
/// Returns (temporary files removed, orphan blobs removed).
pub async fn recover(
    catalogue: &Catalogue,
    blobs: &BlobStore,
) -> Result<(usize, usize), StoreError> {
    let tmp = blobs
        .clean_tmp()
        .map_err(|e| StoreError::io("cleaning temporary uploads", e))?;
    let referenced = catalogue.all_hashes().await?;
    let mut orphans = 0;
    for hash in blobs
        .list()
        .map_err(|e| StoreError::io("listing blobs", e))?
    {
        if !referenced.contains(hash.as_str()) {
            blobs
                .remove(&hash)
                .map_err(|e| StoreError::io("removing an orphan blob", e))?;
            orphans += 1;
        }
    }
    Ok((tmp, orphans))
}
