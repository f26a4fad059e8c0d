//! Start-up cleanup: what a crash left behind.

use crate::{BlobStore, Catalogue, StoreError};
use std::collections::HashSet;

/// Removes what a crash can leave behind: temporary files, and blobs that
/// no catalogue row references (a crash between storing a blob and
/// writing its row). Call it at start-up while holding the
/// [`crate::DataDirLock`]. Returns (temporary files removed, orphan blobs
/// removed, each hash counted once).
///
/// Local files (the whole store, or the cache with S3) are removed at once:
/// the lock means no upload is in progress there. Objects in an object
/// store are shared with other instances, which may be uploading one whose
/// row they have not written yet, so an unreferenced object is deleted only
/// when it is older than the store's grace period, and only after checking
/// again, just before deleting, that it is still that old and still
/// unreferenced. (A commit rewrites an object older than a quarter of the
/// grace period instead of reusing it, so an object a commit relies on is
/// always young.)
pub async fn recover(
    catalogue: &Catalogue,
    blobs: &BlobStore,
) -> Result<(usize, usize), StoreError> {
    let tmp = blobs
        .clean_tmp()
        .map_err(|e| StoreError::io("cleaning temporary uploads", e))?;
    let referenced = catalogue.all_hashes().await?;
    let mut removed = HashSet::new();
    for hash in blobs
        .list()
        .map_err(|e| StoreError::io("listing blobs", e))?
    {
        if !referenced.contains(hash.as_str()) {
            blobs
                .remove(&hash)
                .await
                .map_err(|e| StoreError::blob("removing an orphan blob", e))?;
            removed.insert(hash);
        }
    }
    removed.extend(remote_orphans(catalogue, blobs, &referenced).await?);
    Ok((tmp, removed.len()))
}

/// Deletes the objects no row references that are older than the object
/// store's grace period (see [`recover`]), while the server runs: unlike
/// [`recover`] it touches no local file, so it is safe during uploads.
/// Returns how many objects it deleted; 0 with the local backend.
pub async fn collect_orphans(
    catalogue: &Catalogue,
    blobs: &BlobStore,
) -> Result<usize, StoreError> {
    if !blobs.is_remote() {
        return Ok(0);
    }
    let referenced = catalogue.all_hashes().await?;
    Ok(remote_orphans(catalogue, blobs, &referenced).await?.len())
}

async fn remote_orphans(
    catalogue: &Catalogue,
    blobs: &BlobStore,
    referenced: &HashSet<String>,
) -> Result<Vec<ota_core::Sha256Hex>, StoreError> {
    let Some(grace) = blobs.orphan_grace() else {
        return Ok(Vec::new());
    };
    let old_enough =
        |info: &crate::ObjectInfo| info.modified.elapsed().is_ok_and(|age| age >= grace);
    let objects = blobs
        .list_remote()
        .await
        .map_err(|e| StoreError::blob("listing the object store", e))?;
    let mut removed = Vec::new();
    for (hash, info) in objects {
        if referenced.contains(hash.as_str()) || !old_enough(&info) {
            continue;
        }
        // Checked again: another instance may have rewritten it or written
        // its row since the listing.
        let now = blobs
            .head_remote(&hash)
            .await
            .map_err(|e| StoreError::blob("checking an orphan object", e))?;
        if !now.as_ref().is_some_and(old_enough) || catalogue.references(hash.as_str()).await? > 0 {
            continue;
        }
        blobs
            .delete_remote(&hash)
            .await
            .map_err(|e| StoreError::blob("deleting an orphan object", e))?;
        removed.push(hash);
    }
    Ok(removed)
}
