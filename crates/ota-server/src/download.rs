//! `GET|HEAD /otafiles/<sha256>`: blob downloads with resumption.
//!
//! Supports a single byte range (`206`, or `416` when unsatisfiable),
//! `If-Range` and `If-None-Match` against the strong `ETag` (the hash).
//! Several ranges in one request are answered with the whole file, which
//! RFC 9110 allows. The body is a memory map of the blob: blobs never change
//! after their rename, so the map stays valid (an unlink keeps it alive),
//! and the socket is fed straight from the page cache with no copy through
//! a user-space buffer.

use crate::error::{ApiError, PlainError};
use crate::state::AppState;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
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
    Path(hash): Path<String>,
    headers: HeaderMap,
) -> Result<Response, PlainError> {
    let hash = Sha256Hex::parse(&hash).map_err(|_| {
        ApiError::bad_request("malformed file name: expected a SHA-256 (64 hex characters)")
    })?;
    let path = state.blobs.path_of(&hash);
    serve_file(
        path,
        &format!("\"{hash}\""),
        &headers,
        "public, max-age=31536000, immutable",
        "application/octet-stream",
    )
    .await?
    .ok_or_else(|| ApiError::not_found(format!("no file with SHA-256 {hash}")).into())
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

    let mut builder = Response::builder()
        .header(header::ETAG, etag)
        .header(header::ACCEPT_RANGES, "bytes")
        .header(header::CACHE_CONTROL, cache_control);
    if let Some(inm) = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
    {
        if etag_matches(inm, etag) {
            return Ok(Some(
                builder
                    .status(StatusCode::NOT_MODIFIED)
                    .body(Body::empty())
                    .map_err(|e| ApiError::internal("building a response", e))?,
            ));
        }
    }
    // If-Range: honour Range only when the validator is our (strong) ETag.
    let range_allowed = match headers.get(header::IF_RANGE).and_then(|v| v.to_str().ok()) {
        Some(v) => v.trim() == etag,
        None => true,
    };
    let range = match headers.get(header::RANGE).and_then(|v| v.to_str().ok()) {
        Some(r) if range_allowed => parse_range(r, len),
        _ => RangeRequest::Full,
    };
    let all = map.map(Bytes::from_owner).unwrap_or_default();
    let response = match range {
        RangeRequest::Full => builder
            .status(StatusCode::OK)
            .header(header::CONTENT_TYPE, content_type)
            .header(header::CONTENT_LENGTH, len)
            .body(Body::from(all)),
        RangeRequest::Partial(first, last) => {
            let (a, b) = (first as usize, last as usize + 1);
            builder = builder
                .status(StatusCode::PARTIAL_CONTENT)
                .header(header::CONTENT_TYPE, content_type)
                .header(header::CONTENT_RANGE, format!("bytes {first}-{last}/{len}"))
                .header(header::CONTENT_LENGTH, b - a);
            builder.body(Body::from(all.slice(a..b)))
        }
        RangeRequest::Unsatisfiable => builder
            .status(StatusCode::RANGE_NOT_SATISFIABLE)
            .header(header::CONTENT_RANGE, format!("bytes */{len}"))
            .body(Body::empty()),
    };
    response
        .map(Some)
        .map_err(|e| ApiError::internal("building a response", e).into())
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
