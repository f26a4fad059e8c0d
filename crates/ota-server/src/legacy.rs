//! The package API, exactly: `GET /maxVersion`, `GET /getVersion`,
//! `PUT /update`. Errors are plain text; a hash mismatch on upload is `304`.
//! Every content.json answered carries `Ota-Signature` (see [`crate::render`]).

use crate::error::{ApiError, PlainError};
use crate::render::{Answer, SignedBody, SIGNATURE_HEADER};
use crate::state::{not_published, valid_name, AppState};
use crate::upload::{self, UploadError};
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use std::borrow::Cow;

/// Query of `/maxVersion` and `/getVersion`, borrowed from the URI when it
/// has no escapes (the common case: this is the hottest path of the server).
#[derive(Default)]
pub struct VersionQuery<'a> {
    package: Option<Cow<'a, str>>,
    branch: Option<Cow<'a, str>>,
    version: Option<Cow<'a, str>>,
}

impl<'a> VersionQuery<'a> {
    /// Parses `application/x-www-form-urlencoded` query text; later
    /// repetitions of a key win, unknown keys are ignored.
    pub fn parse(query: &'a str) -> Self {
        let mut q = VersionQuery::default();
        for (k, v) in form_urlencoded::parse(query.as_bytes()) {
            match k.as_ref() {
                "package" => q.package = Some(v),
                "branch" => q.branch = Some(v),
                "version" => q.version = Some(v),
                _ => {}
            }
        }
        q
    }
}

fn required<'a>(v: &'a Option<Cow<'_, str>>, what: &'static str) -> Result<&'a str, ApiError> {
    v.as_deref()
        .filter(|s| !s.is_empty())
        .ok_or_else(|| ApiError::bad_request(format!("missing query parameter '{what}'")))
}

fn json(body: SignedBody) -> Response {
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            ),
            (HeaderName::from_static(SIGNATURE_HEADER), body.signature),
        ],
        body.body,
    )
        .into_response()
}

/// `GET /maxVersion?package=&branch=`: the content.json of the highest version.
#[utoipa::path(
    get,
    path = "/maxVersion",
    tag = "package API",
    params(("package" = String, Query, description = "Package name"), ("branch" = Option<String>, Query, description = "Branch [default: master]")),
    responses((status = 200, description = "content.json of the highest version; signed in the Ota-Signature header", content_type = "application/json"), (status = 400, description = "Malformed name", content_type = "text/plain"), (status = 404, description = "No version of the package branch", content_type = "text/plain"))
)]
pub async fn max_version(
    State(state): State<AppState>,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, PlainError> {
    let q = VersionQuery::parse(uri.query().unwrap_or_default());
    let package = required(&q.package, "package")?;
    let branch = required(&q.branch, "branch")?;
    valid_name("package", package)?;
    valid_name("branch", branch)?;
    let view = state.branch_view(package, branch).await?;
    match &view.max {
        Some(answer) => Ok(json(answer.signed_body(
            &state.download_base,
            &headers,
            &state.packs.key,
        ))),
        None => {
            Err(ApiError::not_found(format!("no versions of {package} on branch {branch}")).into())
        }
    }
}

/// `GET /getVersion?package=&branch=&version=`: one version's content.json.
#[utoipa::path(
    get,
    path = "/getVersion",
    tag = "package API",
    params(("package" = String, Query, description = "Package name"), ("branch" = Option<String>, Query, description = "Branch [default: master]"), ("version" = String, Query, description = "Version")),
    responses((status = 200, description = "content.json of that version; signed in the Ota-Signature header", content_type = "application/json"), (status = 400, description = "Malformed name or version", content_type = "text/plain"), (status = 404, description = "Not published", content_type = "text/plain"))
)]
pub async fn get_version(
    State(state): State<AppState>,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, PlainError> {
    let q = VersionQuery::parse(uri.query().unwrap_or_default());
    let package = required(&q.package, "package")?;
    let branch = required(&q.branch, "branch")?;
    let version = required(&q.version, "version")?;
    valid_name("package", package)?;
    valid_name("branch", branch)?;
    let view = state.branch_view(package, branch).await?;
    match view.by_version.get(version) {
        Some(answer) => Ok(json(answer.signed_body(
            &state.download_base,
            &headers,
            &state.packs.key,
        ))),
        None => Err(not_published(package, branch, version).into()),
    }
}

/// `PUT /update`: multipart `content` + `file`, `Authorization: Bearer KEY`.
#[utoipa::path(
    put,
    path = "/update",
    tag = "package API",
    request_body(content_type = "multipart/form-data", description = "Parts `content` (content.json) and `file`"),
    responses((status = 200, description = "Published (or already published identically)", content_type = "application/json"), (status = 400, description = "Malformed content.json, hash mismatch, missing part", content_type = "text/plain"), (status = 401, description = "Missing or invalid key", content_type = "text/plain"), (status = 403, description = "The key's scopes do not cover the package", content_type = "text/plain"), (status = 409, description = "Another file is published under that version", content_type = "text/plain"), (status = 413, description = "Over the upload limit", content_type = "text/plain")),
    security(("bearer" = []))
)]
pub async fn update(State(state): State<AppState>, req: Request) -> Response {
    let headers = req.headers().clone();
    match upload::receive(&state, req).await {
        Ok(done) => {
            let e = &done.entry;
            let key = &state.packs.key;
            let answer = Answer::new(&e.content, &e.sha256, &state.download_base, key);
            json(answer.signed_body(&state.download_base, &headers, &state.packs.key))
        }
        Err(UploadError::HashMismatch(msg)) => {
            tracing::warn!("upload refused: {msg}");
            // The package API's contract: 304, nothing stored. A 304 has no body.
            StatusCode::NOT_MODIFIED.into_response()
        }
        Err(UploadError::Api(e)) => e.into_plain(),
    }
}
