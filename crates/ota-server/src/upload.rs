//! Receiving an upload (multipart: a metadata part + `file`), shared by
//! `PUT /update` and `POST /api/v1/packages` (metadata: `content`, the
//! content.json) and `POST /api/v1/builds` (metadata: `build`, see
//! [`crate::rom::publish`]). [`receive_with`] takes the metadata part's name
//! and the check to run on it as soon as it arrives.
//!
//! The file streams to a temporary file while it is hashed and counted, in
//! 1 MiB batches written on the blocking pool, so memory stays flat whatever
//! the size. Nothing becomes visible until the hash matches, the blob is
//! durable and the row is written; any failure, including the client going
//! away, drops the temporary file.

use crate::error::ApiError;
use crate::multipart::{Event, Limits, MultipartError, MultipartParser};
use crate::state::AppState;
use axum::extract::Request;
use axum::http::{header, HeaderMap, StatusCode};
use futures_util::StreamExt;
use ota_core::content::MAX_CONTENT_BYTES;
use ota_core::{Content, ContentError};
use ota_store::{BlobWriter, CommitError, Entry, KeyAuth, NewEntry, PublishOutcome};
use std::io::Write;
use std::time::Duration;

/// Slack allowed above the file size limit for the multipart framing and
/// the content.json part.
pub const MULTIPART_OVERHEAD: u64 = MAX_CONTENT_BYTES as u64 + 64 * 1024;
const BATCH: usize = 1 << 20;

/// A successful upload.
#[derive(Debug)]
pub struct Uploaded {
    /// False when the identical version was already published.
    pub created: bool,
    /// The stored row.
    pub entry: Entry,
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

impl From<MultipartError> for UploadError {
    fn from(e: MultipartError) -> Self {
        let status = match e {
            MultipartError::HeadersTooLarge(_) => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            _ => StatusCode::BAD_REQUEST,
        };
        UploadError::Api(ApiError::new(
            status,
            "bad_multipart",
            format!("malformed multipart/form-data: {e}"),
        ))
    }
}

/// A commit that failed as an answer: 304-style mismatches are the
/// caller's; the object store being down is 503 (nothing was recorded, the
/// client may retry); a full disk 507.
pub fn commit_error(context: &str, e: CommitError) -> ApiError {
    match e {
        CommitError::Io(e) => io_error(context, e),
        CommitError::Store(e) => store_unavailable(context, e),
        e @ CommitError::HashMismatch { .. } => ApiError::internal(context, e),
    }
}

/// The object store failed: 503, details in the log and the message (they
/// name the store's answer, never credentials).
pub fn store_unavailable(context: &str, e: ota_store::BlobError) -> ApiError {
    tracing::warn!("{context}: {e}");
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "store_unavailable",
        format!("the blob store is unavailable while {context}; nothing was stored, retry later"),
    )
}

/// An I/O error as an answer: 507 when the disk is full, else 500.
pub fn io_error(context: &str, e: std::io::Error) -> ApiError {
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

async fn write_batch(writer: BlobWriter, buf: Vec<u8>) -> Result<(BlobWriter, Vec<u8>), ApiError> {
    tokio::task::spawn_blocking(move || {
        let mut writer = writer;
        writer.write_all(&buf).map(|()| (writer, buf))
    })
    .await
    .map_err(|e| ApiError::internal("writing an upload", e))?
    .map_err(|e| io_error("writing an upload", e))
}

/// The `boundary` parameter of a `multipart/form-data` content type.
fn boundary(headers: &HeaderMap, field: &str) -> Result<String, ApiError> {
    let expected = || {
        ApiError::bad_request(format!(
            "expected Content-Type: multipart/form-data; boundary=… with fields '{field}' and 'file'"
        ))
    };
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(expected)?;
    let (kind, params) = ct.split_once(';').ok_or_else(expected)?;
    if !kind.trim().eq_ignore_ascii_case("multipart/form-data") {
        return Err(expected());
    }
    params
        .split(';')
        .filter_map(|p| p.split_once('='))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("boundary"))
        .map(|(_, v)| v.trim().trim_matches('"').to_owned())
        .ok_or_else(expected)
}

/// The file part being received.
struct FilePart {
    writer: BlobWriter,
    buf: Vec<u8>,
    total: u64,
}

/// Which part the parser is inside.
enum Current {
    None,
    Content(Vec<u8>),
    File(FilePart),
}

/// What a form delivered.
pub struct Form<M> {
    /// The checked metadata part.
    pub meta: Option<M>,
    /// The file, in a temporary blob.
    pub file: Option<BlobWriter>,
    /// The file part's `filename`, as the client sent it (unchecked).
    pub file_name: Option<String>,
}

/// The check a metadata part gets on arrival: its bytes and the key that
/// sent them.
pub type MetaCheck<'a, M> = &'a (dyn Fn(&[u8], &KeyAuth) -> Result<M, ApiError> + Sync);

/// Parses content.json and checks the key may publish it, as soon as it
/// arrives (before the file when the client sends content first).
fn accept_content(bytes: &[u8], key: &KeyAuth, state: &AppState) -> Result<Content, ApiError> {
    let content = Content::from_slice(bytes).map_err(|e| match e {
        ContentError::TooLarge => ApiError::too_large(e.to_string()),
        e => ApiError::bad_request(e.to_string()),
    })?;
    state.require_publish(key, content.package())?;
    let hooks = content.hooks();
    if !hooks.is_empty() && !key.scopes.may_set_hooks(content.package()) {
        return Err(ApiError::forbidden(format!(
            "API key {:?} (scopes: {}) may not set {} on {}: hooks are commands devices run; \
             they need a key with scope hooks:PATTERN or admin",
            key.name,
            key.scopes,
            hooks.join(", "),
            content.package()
        )));
    }
    Ok(content)
}

/// After refusing an upload part-way, how much more of the body is read and
/// dropped (or for how long) so the client, still sending, gets to read the
/// answer instead of a reset (nginx's lingering close does the same).
const LINGER_BYTES: u64 = 16 << 20;
const LINGER_TIME: Duration = Duration::from_secs(3);

type BodyStream = axum::body::BodyDataStream;

/// Receives the multipart body, refusing it (after a bounded linger) on
/// the first problem.
async fn receive_form<M>(
    state: &AppState,
    key: &KeyAuth,
    req: Request,
    field: &'static str,
    check: MetaCheck<'_, M>,
) -> Result<Form<M>, UploadError> {
    let boundary = boundary(req.headers(), field)?;
    let mut body = req.into_body().into_data_stream();
    let result = parse_form(state, key, &boundary, &mut body, field, check).await;
    // After a refusal, linger; after success, read what follows the closing
    // boundary (its CRLF, an epilogue) so the client is not reset either.
    let (limit, time) = if result.is_err() {
        (LINGER_BYTES, LINGER_TIME)
    } else {
        (64 * 1024, Duration::from_secs(1))
    };
    let _ = tokio::time::timeout(time, async {
        let mut dropped = 0u64;
        while let Some(Ok(chunk)) = body.next().await {
            dropped += chunk.len() as u64;
            if dropped > limit {
                break;
            }
        }
    })
    .await;
    result
}

/// Parses the multipart body: the metadata part into memory (bounded),
/// the file to a temporary blob, hashed as it streams.
async fn parse_form<M>(
    state: &AppState,
    key: &KeyAuth,
    boundary: &str,
    body: &mut BodyStream,
    field: &'static str,
    check: MetaCheck<'_, M>,
) -> Result<Form<M>, UploadError> {
    let mut parser = MultipartParser::new(boundary, Limits::default())?;
    let mut receiver = FormReceiver {
        state,
        key,
        field,
        check,
        form: Form {
            meta: None,
            file: None,
            file_name: None,
        },
        current: Current::None,
    };
    loop {
        let chunk = match tokio::time::timeout(state.body_stall, body.next()).await {
            Err(_) => {
                return Err(ApiError::new(
                    StatusCode::REQUEST_TIMEOUT,
                    "stalled",
                    format!(
                        "the upload sent nothing for {} s; nothing was stored",
                        state.body_stall.as_secs()
                    ),
                )
                .into())
            }
            Ok(None) => {
                parser.finish()?;
                return Ok(receiver.form);
            }
            Ok(Some(Err(e))) => {
                return Err(ApiError::bad_request(format!("reading the upload: {e}")).into())
            }
            Ok(Some(Ok(chunk))) => chunk,
        };
        parser.push(&chunk);
        while let Some(event) = parser.next_event()? {
            match event {
                Event::Part(h) => receiver.begin_part(&h.name, h.filename).await?,
                Event::Data(data) => receiver.data(&data).await?,
                Event::PartEnd => receiver.end_part().await?,
                // Nothing after the closing boundary matters.
                Event::End => return Ok(receiver.form),
            }
        }
    }
}

/// Turns parser events into a [`Form`].
struct FormReceiver<'a, M> {
    state: &'a AppState,
    key: &'a KeyAuth,
    field: &'static str,
    check: MetaCheck<'a, M>,
    form: Form<M>,
    current: Current,
}

impl<M> FormReceiver<'_, M> {
    async fn begin_part(
        &mut self,
        name: &str,
        file_name: Option<String>,
    ) -> Result<(), UploadError> {
        self.current = match name {
            n if n == self.field && self.form.meta.is_none() => Current::Content(Vec::new()),
            "file" if self.form.file.is_none() => {
                self.form.file_name = file_name;
                let blobs = self.state.blobs.clone();
                let writer = tokio::task::spawn_blocking(move || blobs.begin())
                    .await
                    .map_err(|e| ApiError::internal("starting an upload", e))?
                    .map_err(|e| io_error("starting an upload", e))?;
                Current::File(FilePart {
                    writer,
                    buf: Vec::with_capacity(BATCH),
                    total: 0,
                })
            }
            n if n == self.field || n == "file" => {
                return Err(
                    ApiError::bad_request(format!("form field {name:?} appears twice")).into(),
                )
            }
            other => {
                return Err(ApiError::bad_request(format!(
                    "unexpected form field {:?}; expected '{}' and 'file'",
                    other.chars().take(64).collect::<String>(),
                    self.field
                ))
                .into())
            }
        };
        Ok(())
    }

    async fn data(&mut self, data: &[u8]) -> Result<(), UploadError> {
        let max_upload = self.state.max_upload;
        match &mut self.current {
            Current::Content(buf) => {
                if buf.len() + data.len() > MAX_CONTENT_BYTES {
                    return Err(ApiError::too_large(format!(
                        "form field '{}' is larger than {MAX_CONTENT_BYTES} bytes",
                        self.field
                    ))
                    .into());
                }
                buf.extend_from_slice(data);
            }
            Current::File(f) => {
                f.total += data.len() as u64;
                if f.total > max_upload {
                    return Err(ApiError::too_large(format!(
                        "file exceeds the limit of {}",
                        ota_core::size::describe(max_upload)
                    ))
                    .into());
                }
                f.buf.extend_from_slice(data);
                if f.buf.len() >= BATCH {
                    if let Current::File(FilePart { writer, buf, total }) =
                        std::mem::replace(&mut self.current, Current::None)
                    {
                        let (writer, mut buf) = write_batch(writer, buf).await?;
                        buf.clear();
                        self.current = Current::File(FilePart { writer, buf, total });
                    }
                }
            }
            Current::None => {}
        }
        Ok(())
    }

    async fn end_part(&mut self) -> Result<(), UploadError> {
        match std::mem::replace(&mut self.current, Current::None) {
            Current::Content(buf) => self.form.meta = Some((self.check)(&buf, self.key)?),
            Current::File(FilePart { writer, buf, .. }) => {
                let writer = if buf.is_empty() {
                    writer
                } else {
                    write_batch(writer, buf).await?.0
                };
                self.form.file = Some(writer);
            }
            Current::None => {}
        }
        Ok(())
    }
}

/// Authenticates and receives one upload whose metadata part is `field`,
/// checked by `check` as soon as it arrives (before the file, when the
/// client sends it first). Refuses a declared length over the limit before
/// reading anything.
pub async fn receive_with<M>(
    state: &AppState,
    req: Request,
    field: &'static str,
    check: MetaCheck<'_, M>,
) -> Result<(KeyAuth, Form<M>), UploadError> {
    let key = state.authenticate(req.headers()).await?;
    let form = receive_as(state, &key, req, field, check).await?;
    Ok((key, form))
}

/// [`receive_with`] for a caller authenticated otherwise (the web admin's
/// session acts as an admin key named `user:NAME`).
pub async fn receive_as<M>(
    state: &AppState,
    key: &KeyAuth,
    req: Request,
    field: &'static str,
    check: MetaCheck<'_, M>,
) -> Result<Form<M>, UploadError> {
    let declared_len = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if let Some(n) =
        declared_len.filter(|n| *n > state.max_upload.saturating_add(MULTIPART_OVERHEAD))
    {
        return Err(ApiError::too_large(format!(
            "upload of {n} bytes exceeds the limit of {}",
            ota_core::size::describe(state.max_upload)
        ))
        .into());
    }
    receive_form(state, key, req, field, check).await
}

/// Authenticates, receives, verifies and publishes one package upload.
pub async fn receive(state: &AppState, req: Request) -> Result<Uploaded, UploadError> {
    let key = state.authenticate(req.headers()).await?;
    receive_package_as(state, &key, req).await
}

/// [`receive`] for a caller authenticated otherwise (the web admin).
pub async fn receive_package_as(
    state: &AppState,
    key: &KeyAuth,
    req: Request,
) -> Result<Uploaded, UploadError> {
    let check = |bytes: &[u8], key: &KeyAuth| accept_content(bytes, key, state);
    let form = receive_as(state, key, req, "content", &check).await?;
    let content = form
        .meta
        .ok_or_else(|| ApiError::bad_request("missing form field 'content' (content.json)"))?;
    let file = form
        .file
        .ok_or_else(|| ApiError::bad_request("missing form field 'file'"))?;

    let actual = file.digest();
    if actual != *content.sha256() {
        return Err(UploadError::HashMismatch(format!(
            "SHA-256 of the received file is {actual}, content.json declares {}; nothing was stored",
            content.sha256()
        )));
    }

    publish_file(state, content, file, &key.name).await
}

/// Publishes a received file (its hash already checked against `content`)
/// on behalf of `by`: the checks every publish path shares, the blob made
/// durable, the row written, the packs queued.
pub async fn publish_file(
    state: &AppState,
    content: Content,
    file: ota_store::BlobWriter,
    by: &str,
) -> Result<Uploaded, UploadError> {
    let _guard = state.write_lock.lock().await;
    let (package, branch, version) = (
        content.package().to_owned(),
        content.branch().to_owned(),
        content.version().as_str().to_owned(),
    );
    if let Some(existing) = state.catalogue.get(&package, &branch, &version).await? {
        return same_or_conflict(existing, content);
    }
    // Two spellings of one precedence (`1.2` and `1.2.0`, `1.2+b9` and
    // `1.2+b10`) would make "the newest" depend on a tie-break.
    let view = state.branch_view(&package, &branch).await?;
    if let Some(twin) = view.entries.iter().find(|e| {
        ota_core::Version::parse(&e.version)
            .is_ok_and(|v| v.cmp_precedence(content.version()).is_eq())
    }) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "conflict",
            format!(
                "{package} {version} has the same precedence as {} already on branch {branch} \
                 (build metadata and trailing .0 do not order versions); publish a higher version",
                twin.version
            ),
        )
        .into());
    }
    let declared = content.sha256().clone();
    let committed = file
        .commit(&state.blobs, Some(&declared))
        .await
        .map_err(|e| match e {
            CommitError::HashMismatch { .. } => UploadError::HashMismatch(e.to_string()),
            e => commit_error("storing an upload", e).into(),
        })?;
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
            // The version is published whatever happens here; a failure to
            // queue its packs is repaired at the next start (reconcile).
            if let Err(err) = state
                .packs
                .published(&state.catalogue, &package, &branch, &e.version)
                .await
            {
                tracing::warn!(
                    package,
                    branch,
                    version = e.version,
                    "queueing pack jobs: {err}"
                );
            }
            tracing::info!(
                package,
                branch,
                version = e.version,
                sha256 = e.sha256,
                by,
                "published"
            );
            state
                .catalogue
                .audit_or_warn(
                    &crate::admin::actor(by),
                    "package.publish",
                    &format!("{package}/{branch}/{}", e.version),
                    &e.sha256,
                )
                .await;
            Ok(Uploaded {
                created: true,
                entry: e,
            })
        }
        PublishOutcome::Identical(e) => Ok(Uploaded {
            created: false,
            entry: e,
        }),
        PublishOutcome::Conflict(existing) => {
            // Another server sharing the database won the race.
            if committed.created && state.catalogue.references(committed.hash.as_str()).await? == 0
            {
                let _ = state.blobs.remove(&committed.hash).await;
            }
            same_or_conflict(existing, content)
        }
    }
}

/// An upload of an existing package/branch/version: identical content is a
/// success, anything else a conflict.
fn same_or_conflict(stored: Entry, content: Content) -> Result<Uploaded, UploadError> {
    let stored_value: serde_json::Value = serde_json::from_str(&stored.content)
        .map_err(|e| ApiError::internal("reading a stored content.json", e))?;
    if serde_json::Value::Object(content.as_map().clone()) == stored_value {
        Ok(Uploaded {
            created: false,
            entry: stored,
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
