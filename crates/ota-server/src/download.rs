//! `GET|HEAD /otafiles/<sha256>`: blob downloads with resumption.
//!
//! Supports a single byte range (`206`, or `416` when unsatisfiable),
//! `If-Range` and `If-None-Match` against the strong `ETag` (the hash).
//! Several ranges in one request are answered with the whole file, which
//! RFC 9110 allows. The body is a memory map of the blob: blobs never change
//! after their rename, so the map stays valid (an unlink keeps it alive),
//! and the socket is fed straight from the page cache with no copy through
//! a user-space buffer.
//!
//! With an object store, a blob missing from the local cache is streamed
//! from the store: a HEAD for its length, then a GET of just the range
//! asked for (so a resumed download never fetches the whole object first),
//! and the cache is filled in the background for the next request. With
//! `--blobs-presign`, blob downloads are answered with a `302` to a
//! presigned URL instead.

use crate::error::{ApiError, PlainError};
use crate::state::AppState;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::response::Response;
use bytes::Bytes;
use ota_core::Sha256Hex;

/// A parsed `Range` header against a file of known length.
#[derive(Debug, PartialEq, Eq)]
pub enum RangeRequest {
    /// No (usable) range: send everything.
    Full,
    /// Inclusive byte range.
    Partial(u64, u64),
    /// Syntactically valid but outside the file.
    Unsatisfiable,
}

/// Interprets a `Range` header value for a file of `len` bytes.
pub fn parse_range(value: &str, len: u64) -> RangeRequest {
    let Some(spec) = value.trim().strip_prefix("bytes=") else {
        return RangeRequest::Full; // unknown unit: ignore
    };
    if spec.contains(',') {
        return RangeRequest::Full;
    }
    let Some((start, end)) = spec.trim().split_once('-') else {
        return RangeRequest::Full;
    };
    let (start, end) = (start.trim(), end.trim());
    let num = |s: &str| -> Option<u64> {
        (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse().ok())
            .flatten()
    };
    match (start.is_empty(), end.is_empty()) {
        (true, true) => RangeRequest::Full,
        (true, false) => match num(end) {
            // Suffix range: the last N bytes.
            Some(0) => RangeRequest::Unsatisfiable,
            Some(_) if len == 0 => RangeRequest::Unsatisfiable,
            Some(n) => RangeRequest::Partial(len.saturating_sub(n), len - 1),
            None => RangeRequest::Full,
        },
        (false, _) => {
            let Some(first) = num(start) else {
                return RangeRequest::Full;
            };
            let last = if end.is_empty() {
                None
            } else {
                match num(end) {
                    Some(l) if l >= first => Some(l),
                    _ => return RangeRequest::Full, // invalid: ignore
                }
            };
            if first >= len {
                return RangeRequest::Unsatisfiable;
            }
            RangeRequest::Partial(first, last.map_or(len - 1, |l| l.min(len - 1)))
        }
    }
}

fn etag_matches(list: &str, etag: &str) -> bool {
    list.split(',').any(|t| {
        let t = t.trim();
        t == "*" || t.strip_prefix("W/").unwrap_or(t) == etag
    })
}

/// The handler.
#[utoipa::path(
    get,
    path = "/otafiles/{hash}",
    tag = "downloads",
    params(("hash" = String, Path, description = "SHA-256 of the file")),
    responses((status = 200, description = "The file", content_type = "application/octet-stream"), (status = 206, description = "The requested range (Range: bytes=N-)", content_type = "application/octet-stream"), (status = 304, description = "Not modified (If-None-Match)"), (status = 404, description = "No such file", content_type = "text/plain"), (status = 416, description = "Range outside the file"))
)]
pub async fn get_file(
    State(state): State<AppState>,
    method: Method,
    Path(hash): Path<String>,
    headers: HeaderMap,
) -> Result<Response, PlainError> {
    let hash = Sha256Hex::parse(&hash).map_err(|_| {
        ApiError::bad_request("malformed file name: expected a SHA-256 (64 hex characters)")
    })?;
    serve_blob(&state, &method, &hash, &headers, "application/octet-stream")
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no file with SHA-256 {hash}")).into())
}

/// Cache-Control of content-addressed files.
const IMMUTABLE: &str = "public, max-age=31536000, immutable";

/// Serves a blob: from the local copy, else (object store) a redirect to a
/// presigned URL or the range streamed from the store. `None` when no
/// backend has it.
pub async fn serve_blob(
    state: &AppState,
    method: &Method,
    hash: &Sha256Hex,
    headers: &HeaderMap,
    content_type: &'static str,
) -> Result<Option<Response>, PlainError> {
    let etag = format!("\"{hash}\"");
    if state.presign.is_none() {
        if let Some(r) = serve_file(
            state.blobs.path_of(hash),
            &etag,
            headers,
            IMMUTABLE,
            content_type,
        )
        .await?
        {
            return Ok(Some(r));
        }
    }
    if !state.blobs.is_remote() {
        return Ok(None);
    }
    serve_remote(state, method, hash, &etag, headers, content_type).await
}

/// The object store part of [`serve_blob`].
async fn serve_remote(
    state: &AppState,
    method: &Method,
    hash: &Sha256Hex,
    etag: &str,
    headers: &HeaderMap,
    content_type: &'static str,
) -> Result<Option<Response>, PlainError> {
    let unavailable =
        |e| crate::upload::store_unavailable("reading a blob from the object store", e);
    let Some(info) = state.blobs.head_remote(hash).await.map_err(unavailable)? else {
        return Ok(None);
    };
    if let Some(expires) = state.presign {
        let url = state
            .blobs
            .presign(hash, expires)
            .await
            .map_err(unavailable)?
            .ok_or_else(|| ApiError::internal("signing a download URL", "no object store"))?;
        return Response::builder()
            .status(StatusCode::FOUND)
            .header(header::LOCATION, url)
            .header(header::CACHE_CONTROL, "no-store")
            .body(Body::empty())
            .map(Some)
            .map_err(|e| ApiError::internal("building a response", e).into());
    }
    let len = info.size;
    let plan = plan(headers, etag, len);
    let range = match plan {
        Plan::Full if len > 0 => Some(0..len),
        Plan::Partial(first, last) => Some(first..last + 1),
        _ => None,
    };
    let body = match range {
        Some(r) if *method != Method::HEAD => {
            let stream = state
                .blobs
                .read_remote(hash, Some(r))
                .await
                .map_err(unavailable)?;
            // The next request is served from the cache.
            state.blobs.spawn_fill(hash);
            Body::from_stream(stream)
        }
        _ => Body::empty(),
    };
    respond(plan, etag, len, IMMUTABLE, content_type, |_, _| body).map(Some)
}

/// Serves a file that never changes once in place (a blob, a cached
/// bundle) with `ETag`, `Range`, `If-Range` and `If-None-Match`; `None`
/// when it does not exist.
pub async fn serve_file(
    path: std::path::PathBuf,
    etag: &str,
    headers: &HeaderMap,
    cache_control: &'static str,
    content_type: &'static str,
) -> Result<Option<Response>, PlainError> {
    let opened = tokio::task::spawn_blocking(
        move || -> std::io::Result<Option<(u64, Option<memmap2::Mmap>)>> {
            let file = match std::fs::File::open(&path) {
                Ok(f) => f,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(e),
            };
            let len = file.metadata()?.len();
            if len == 0 {
                return Ok(Some((0, None)));
            }
            // SAFETY: blobs are written once, renamed into place and never
            // modified or truncated afterwards, so the mapped bytes cannot change.
            let map = unsafe { memmap2::Mmap::map(&file)? };
            let _ = map.advise(memmap2::Advice::Sequential);
            Ok(Some((len, Some(map))))
        },
    )
    .await
    .map_err(|e| ApiError::internal("opening a file", e))?
    .map_err(|e| ApiError::internal("opening a file", e))?;
    let Some((len, map)) = opened else {
        return Ok(None);
    };
    let all = map.map(Bytes::from_owner).unwrap_or_default();
    respond(
        plan(headers, etag, len),
        etag,
        len,
        cache_control,
        content_type,
        |a, b| Body::from(all.slice(a as usize..b as usize)),
    )
    .map(Some)
}

/// What a request for a file of `len` bytes gets.
#[derive(Debug, PartialEq, Eq)]
enum Plan {
    /// `If-None-Match` matched.
    NotModified,
    /// The whole file.
    Full,
    /// Inclusive byte range.
    Partial(u64, u64),
    /// `416`.
    Unsatisfiable,
}

fn plan(headers: &HeaderMap, etag: &str, len: u64) -> Plan {
    if let Some(inm) = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
    {
        if etag_matches(inm, etag) {
            return Plan::NotModified;
        }
    }
    // If-Range: honour Range only when the validator is our (strong) ETag.
    let range_allowed = match headers.get(header::IF_RANGE).and_then(|v| v.to_str().ok()) {
        Some(v) => v.trim() == etag,
        None => true,
    };
    match headers.get(header::RANGE).and_then(|v| v.to_str().ok()) {
        Some(r) if range_allowed => match parse_range(r, len) {
            RangeRequest::Full => Plan::Full,
            RangeRequest::Partial(a, b) => Plan::Partial(a, b),
            RangeRequest::Unsatisfiable => Plan::Unsatisfiable,
        },
        _ => Plan::Full,
    }
}

/// The response for `plan`; `body(start, end)` gives the bytes
/// `start..end` (exclusive end).
fn respond(
    plan: Plan,
    etag: &str,
    len: u64,
    cache_control: &'static str,
    content_type: &'static str,
    body: impl FnOnce(u64, u64) -> Body,
) -> Result<Response, PlainError> {
    let builder = Response::builder()
        .header(header::ETAG, etag)
        .header(header::ACCEPT_RANGES, "bytes")
        .header(header::CACHE_CONTROL, cache_control);
    let response = match plan {
        Plan::NotModified => builder.status(StatusCode::NOT_MODIFIED).body(Body::empty()),
        Plan::Full => builder
            .status(StatusCode::OK)
            .header(header::CONTENT_TYPE, content_type)
            .header(header::CONTENT_LENGTH, len)
            .body(body(0, len)),
        Plan::Partial(first, last) => builder
            .status(StatusCode::PARTIAL_CONTENT)
            .header(header::CONTENT_TYPE, content_type)
            .header(header::CONTENT_RANGE, format!("bytes {first}-{last}/{len}"))
            .header(header::CONTENT_LENGTH, last + 1 - first)
            .body(body(first, last + 1)),
        Plan::Unsatisfiable => builder
            .status(StatusCode::RANGE_NOT_SATISFIABLE)
            .header(header::CONTENT_RANGE, format!("bytes */{len}"))
            .body(Body::empty()),
    };
    response.map_err(|e| ApiError::internal("building a response", e).into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use RangeRequest::*;

    #[test]
    fn ranges() {
        assert_eq!(parse_range("bytes=0-9", 100), Partial(0, 9));
        assert_eq!(parse_range("bytes=90-", 100), Partial(90, 99));
        assert_eq!(parse_range("bytes=90-1000", 100), Partial(90, 99));
        assert_eq!(parse_range("bytes=-10", 100), Partial(90, 99));
        assert_eq!(parse_range("bytes=-1000", 100), Partial(0, 99));
        assert_eq!(parse_range("bytes=100-", 100), Unsatisfiable);
        assert_eq!(parse_range("bytes=-0", 100), Unsatisfiable);
        assert_eq!(parse_range("bytes=0-", 0), Unsatisfiable);
        assert_eq!(parse_range("bytes=5-2", 100), Full);
        assert_eq!(parse_range("bytes=0-1,5-6", 100), Full);
        assert_eq!(parse_range("items=0-1", 100), Full);
        assert_eq!(parse_range("bytes=x-1", 100), Full);
        assert_eq!(parse_range("bytes=-", 100), Full);
        assert_eq!(parse_range("bytes=99999999999999999999999-", 100), Full);
    }

    #[test]
    fn etags() {
        assert!(etag_matches("\"a\", \"b\"", "\"b\""));
        assert!(etag_matches("*", "\"b\""));
        assert!(etag_matches("W/\"b\"", "\"b\""));
        assert!(!etag_matches("\"c\"", "\"b\""));
    }
}
