//! Receiving a package upload (multipart `content` + `file`), shared by
//! `PUT /update` and `POST /api/v1/packages`.
//!
//! The file streams to a temporary file while it is hashed and counted, in
//! 1 MiB batches written on the blocking pool, so memory stays flat whatever
//! the size. Nothing becomes visible until the hash matches, the blob is
//! durable and the row is written; any failure, including the client going
//! away, drops the temporary file.

use crate::error::ApiError;
use crate::state::AppState;
use axum::extract::{FromRequest, Multipart, Request};
use axum::http::StatusCode;
use ota_core::content::MAX_CONTENT_BYTES;
use ota_core::{Content, ContentError};
use ota_store::{BlobWriter, CommitError, NewEntry, PublishOutcome};
use std::io::Write;

/// Slack allowed above the file size limit for the multipart framing and
/// the content.json part.
pub const MULTIPART_OVERHEAD: u64 = MAX_CONTENT_BYTES as u64 + 64 * 1024;
const BATCH: usize = 1 << 20;

/// A successful upload.
#[derive(Debug)]
pub struct Uploaded {
    /// False when the identical version was already published.
    pub created: bool,
    /// The stored content.json text.
    pub content: String,
}

/// Why an upload was refused.
#[derive(Debug)]
pub enum UploadError {
    /// Any refusal with its own status.
    Api(ApiError),
    /// The file's SHA-256 differs from content.json's `sha256`
    /// (304 on `PUT /update`, 422 on `/api/v1/`).
    HashMismatch(String),
}

impl From<ApiError> for UploadError {
    fn from(e: ApiError) -> Self {
        UploadError::Api(e)
    }
}

impl From<ota_store::StoreError> for UploadError {
    fn from(e: ota_store::StoreError) -> Self {
        UploadError::Api(e.into())
    }
}

fn io_error(context: &str, e: std::io::Error) -> ApiError {
    if e.kind() == std::io::ErrorKind::StorageFull {
        ApiError::new(
            StatusCode::INSUFFICIENT_STORAGE,
            "storage_full",
            "the server is out of disk space",
        )
    } else {
        ApiError::internal(context, e)
    }
}

fn multipart_error(e: axum::extract::multipart::MultipartError) -> ApiError {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::too_large("upload exceeds the server's size limit")
    } else {
        ApiError::bad_request(format!("malformed multipart/form-data: {}", e.body_text()))
    }
}

async fn write_batch(writer: BlobWriter, buf: Vec<u8>) -> Result<(BlobWriter, Vec<u8>), ApiError> {
    tokio::task::spawn_blocking(move || {
        let mut writer = writer;
        writer.write_all(&buf).map(|()| (writer, buf))
    })
    .await
    .map_err(|e| ApiError::internal("writing an upload", e))?
    .map_err(|e| io_error("writing an upload", e))
}

/// Authenticates, receives, verifies and publishes one upload.
pub async fn receive(state: &AppState, req: Request) -> Result<Uploaded, UploadError> {
    let headers = req.headers().clone();
    state.authenticate(&headers).await?;
    let declared_len = headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared_len.is_some_and(|n| n > state.max_upload.saturating_add(MULTIPART_OVERHEAD)) {
        return Err(ApiError::too_large(format!(
            "upload of {} bytes exceeds the limit of {} bytes",
            declared_len.unwrap_or(0),
            state.max_upload
        ))
        .into());
    }
    let mut multipart = Multipart::from_request(req, &()).await.map_err(|e| {
        ApiError::bad_request(format!("expected multipart/form-data: {}", e.body_text()))
    })?;

    let mut content_bytes: Option<Vec<u8>> = None;
    let mut file: Option<BlobWriter> = None;
    while let Some(mut field) = multipart.next_field().await.map_err(multipart_error)? {
        let name = field.name().unwrap_or_default().to_owned();
        match name.as_str() {
            "content" if content_bytes.is_none() => {
                let mut buf = Vec::new();
                while let Some(chunk) = field.chunk().await.map_err(multipart_error)? {
                    if buf.len() + chunk.len() > MAX_CONTENT_BYTES {
                        return Err(ApiError::too_large(format!(
                            "content.json is larger than {MAX_CONTENT_BYTES} bytes"
                        ))
                        .into());
                    }
                    buf.extend_from_slice(&chunk);
                }
                content_bytes = Some(buf);
            }
            "file" if file.is_none() => {
                let blobs = state.blobs.clone();
                let mut writer = tokio::task::spawn_blocking(move || blobs.begin())
                    .await
                    .map_err(|e| ApiError::internal("starting an upload", e))?
                    .map_err(|e| io_error("starting an upload", e))?;
                let mut buf = Vec::with_capacity(BATCH);
                let mut total: u64 = 0;
                while let Some(chunk) = field.chunk().await.map_err(multipart_error)? {
                    total += chunk.len() as u64;
                    if total > state.max_upload {
                        return Err(ApiError::too_large(format!(
                            "file exceeds the limit of {} bytes",
                            state.max_upload
                        ))
                        .into());
                    }
                    buf.extend_from_slice(&chunk);
                    if buf.len() >= BATCH {
                        let (w, mut b) = write_batch(writer, buf).await?;
                        b.clear();
                        (writer, buf) = (w, b);
                    }
                }
                if !buf.is_empty() {
                    writer = write_batch(writer, buf).await?.0;
                }
                file = Some(writer);
            }
            "content" | "file" => {
                return Err(
                    ApiError::bad_request(format!("form field {name:?} appears twice")).into(),
                )
            }
            other => {
                return Err(ApiError::bad_request(format!(
                    "unexpected form field {:?}; expected 'content' and 'file'",
                    other.chars().take(64).collect::<String>()
                ))
                .into())
            }
        }
    }
    let content_bytes = content_bytes
        .ok_or_else(|| ApiError::bad_request("missing form field 'content' (content.json)"))?;
    let file = file.ok_or_else(|| ApiError::bad_request("missing form field 'file'"))?;
    let mut content = Content::from_slice(&content_bytes).map_err(|e| match e {
        ContentError::TooLarge => ApiError::too_large(e.to_string()),
        e => ApiError::bad_request(e.to_string()),
    })?;

    let actual = file.digest();
    if actual != *content.sha256() {
        return Err(UploadError::HashMismatch(format!(
            "SHA-256 of the received file is {actual}, content.json declares {}; nothing was stored",
            content.sha256()
        )));
    }

    let _guard = state.write_lock.lock().await;
    let (package, branch, version) = (
        content.package().to_owned(),
        content.branch().to_owned(),
        content.version().as_str().to_owned(),
    );
    if let Some(existing) = state.catalogue.get(&package, &branch, &version).await? {
        return same_or_conflict(&existing.content, content);
    }
    let blobs = state.blobs.clone();
    let declared = content.sha256().clone();
    let committed = tokio::task::spawn_blocking(move || file.commit(&blobs, Some(&declared)))
        .await
        .map_err(|e| ApiError::internal("storing an upload", e))?
        .map_err(|e| match e {
            CommitError::HashMismatch { .. } => UploadError::HashMismatch(e.to_string()),
            CommitError::Io(e) => io_error("storing an upload", e).into(),
        })?;
    content.set_remote_if_absent(|| state.download_url(&headers, committed.hash.as_str()));
    let new = NewEntry {
        package: package.clone(),
        branch: branch.clone(),
        version,
        content: content.to_json(),
        sha256: committed.hash.to_string(),
        size: committed.size,
    };
    match state.catalogue.publish(&new).await? {
        PublishOutcome::Inserted(e) => {
            state.cache.invalidate(&package, &branch);
            tracing::info!(
                package,
                branch,
                version = e.version,
                sha256 = e.sha256,
                "published"
            );
            Ok(Uploaded {
                created: true,
                content: e.content,
            })
        }
        PublishOutcome::Identical(e) => Ok(Uploaded {
            created: false,
            content: e.content,
        }),
        PublishOutcome::Conflict(existing) => {
            // Another server sharing the database won the race.
            if committed.created && state.catalogue.references(committed.hash.as_str()).await? == 0
            {
                let _ = state.blobs.remove(&committed.hash);
            }
            same_or_conflict(&existing.content, content)
        }
    }
}

/// An upload of an existing package/branch/version: identical content is a
/// success, anything else a conflict. A missing `remote` takes the stored one.
fn same_or_conflict(stored: &str, mut content: Content) -> Result<Uploaded, UploadError> {
    let stored_value: serde_json::Value = serde_json::from_str(stored)
        .map_err(|e| ApiError::internal("reading a stored content.json", e))?;
    let stored_remote = stored_value
        .get("remote")
        .and_then(|r| r.as_str())
        .unwrap_or_default()
        .to_owned();
    content.set_remote_if_absent(|| stored_remote);
    if serde_json::Value::Object(content.as_map().clone()) == stored_value {
        Ok(Uploaded {
            created: false,
            content: stored.to_owned(),
        })
    } else {
        Err(ApiError::new(
            StatusCode::CONFLICT,
            "conflict",
            format!(
                "{} {} on branch {} is already published with different content",
                content.package(),
                content.version(),
                content.branch()
            ),
        )
        .into())
    }
}
