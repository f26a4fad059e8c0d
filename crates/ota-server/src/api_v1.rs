//! The JSON API under `/api/v1/`, with conventional semantics: JSON bodies,
//! `{"error":{"code","message"}}` on failure, `201` on creation, `422` when
//! an upload's hash does not match its content.json.
//!
//! | method | path | |
//! |---|---|---|
//! | GET | `/api/v1/auth` | checks the bearer key: 200 `{"key": name}` or 401 |
//! | GET | `/api/v1/packages` | packages with their branches, by name, paged (`?limit=&after=`) |
//! | POST | `/api/v1/packages` | upload (multipart `content` + `file`), authenticated |
//! | GET | `/api/v1/packages/{package}` | one package's branches |
//! | GET | `/api/v1/packages/{package}/branches/{branch}/versions` | versions in version order, paged |
//! | GET | `/api/v1/packages/{package}/branches/{branch}/latest` | highest version |
//! | GET | `/api/v1/packages/{package}/branches/{branch}/versions/{version}` | one version |
//! | DELETE | same | delete it (authenticated); its file goes when nothing else uses it |

use crate::error::{ApiError, JsonError};
use crate::render::content_value;
use crate::state::{not_published, valid_name, AppState};
use crate::upload::{self, UploadError};
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use ota_store::Entry;
use serde_json::{json, Value};

/// Page size when `limit` is not given.
pub const DEFAULT_PAGE: usize = 100;
/// Largest page a client may ask for.
pub const MAX_PAGE: usize = 1000;

/// `?limit=N&after=KEY`: pages of a list in its order.
#[derive(Default)]
pub struct Page {
    limit: usize,
    after: Option<String>,
}

impl Page {
    /// Reads `limit` and `after` from a query string; errors are the JSON
    /// API's 400s.
    pub fn from_query(query: Option<&str>) -> Result<Self, ApiError> {
        let mut page = Page {
            limit: DEFAULT_PAGE,
            after: None,
        };
        for (k, v) in form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
            match k.as_ref() {
                "limit" => {
                    page.limit = v
                        .parse::<usize>()
                        .ok()
                        .filter(|n| (1..=MAX_PAGE).contains(n))
                        .ok_or_else(|| {
                            ApiError::bad_request(format!(
                                "limit must be a number from 1 to {MAX_PAGE}, got {:?}",
                                v.chars().take(32).collect::<String>()
                            ))
                        })?
                }
                "after" => page.after = Some(v.into_owned()),
                _ => {}
            }
        }
        Ok(page)
    }

    /// The items after `after` (those ordered above it by `cmp`, so an
    /// `after` deleted meanwhile still works) and the key to ask for the
    /// next page with, if there is one.
    fn apply<'a, T>(
        &self,
        items: &'a [T],
        key: impl Fn(&T) -> &str,
        above: impl Fn(&T, &str) -> bool,
    ) -> (&'a [T], Option<String>) {
        let start = match &self.after {
            None => 0,
            Some(a) => items
                .iter()
                .position(|i| above(i, a))
                .unwrap_or(items.len()),
        };
        let end = (start + self.limit).min(items.len());
        let next = (end < items.len() && end > start).then(|| key(&items[end - 1]).to_owned());
        (&items[start..end], next)
    }
}

fn entry_json(state: &AppState, headers: &HeaderMap, e: &Entry) -> Value {
    json!({
        "package": e.package,
        "branch": e.branch,
        "version": e.version,
        "sha256": e.sha256,
        "size": e.size,
        "created_at": e.created_at,
        "content": content_value(&e.content, &e.sha256, &state.download_base, headers),
    })
}

/// `GET /api/v1/auth`: 200 with the key's name, scopes and the server's
/// upload limit when `Authorization: Bearer KEY` is valid, 401 otherwise.
/// Publishers call it before streaming a large file, so a bad key or a
/// file over the limit is reported before the upload.
#[utoipa::path(
    get,
    path = "/api/v1/auth",
    tag = "JSON API",
    responses((status = 200, description = "The key's name, scopes and the server's upload limit", content_type = "application/json"), (status = 401, description = "Missing or invalid key", body = crate::openapi::ErrorBody, content_type = "application/json")),
    security(("bearer" = []))
)]
pub async fn auth(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<Value>, JsonError> {
    let key = state.authenticate(&headers).await?;
    Ok(Json(json!({
        "key": key.name,
        "scopes": key.scopes.to_string(),
        "max_upload": state.max_upload,
    })))
}

/// `GET /api/v1/packages[?limit=N&after=NAME]`.
#[utoipa::path(
    get,
    path = "/api/v1/packages",
    tag = "JSON API",
    params(("limit" = Option<u32>, Query, description = "Page size"), ("after" = Option<String>, Query, description = "Names after this one")),
    responses((status = 200, description = "Packages with their branches", content_type = "application/json"), (status = 400, description = "Bad parameter", body = crate::openapi::ErrorBody, content_type = "application/json"))
)]
pub async fn list_packages(
    State(state): State<AppState>,
    uri: Uri,
) -> Result<Json<Value>, JsonError> {
    let page = Page::from_query(uri.query())?;
    let all = state.packages().await?;
    let (items, next) = page.apply(&all, |p| &p.name, |p, after| p.name.as_str() > after);
    Ok(Json(json!({ "packages": items, "next": next })))
}

/// `GET /api/v1/packages/{package}`.
#[utoipa::path(
    get,
    path = "/api/v1/packages/{package}",
    tag = "JSON API",
    params(("package" = String, Path, description = "Package name")),
    responses((status = 200, description = "The package and its branches", content_type = "application/json"), (status = 404, description = "Unknown package", body = crate::openapi::ErrorBody, content_type = "application/json"))
)]
pub async fn get_package(
    State(state): State<AppState>,
    Path(package): Path<String>,
) -> Result<Json<Value>, JsonError> {
    valid_name("package", &package)?;
    let all = state.packages().await?;
    let p = all
        .iter()
        .find(|p| p.name == package)
        .ok_or_else(|| ApiError::not_found(format!("no package named {package}")))?;
    Ok(Json(json!(p)))
}

/// `GET …/versions[?limit=N&after=VERSION]`, in version order.
#[utoipa::path(
    get,
    path = "/api/v1/packages/{package}/branches/{branch}/versions",
    tag = "JSON API",
    params(("package" = String, Path, description = "Package name"), ("branch" = String, Path, description = "Branch"), ("limit" = Option<u32>, Query, description = "Page size"), ("after" = Option<String>, Query, description = "Versions after this one")),
    responses((status = 200, description = "Versions in version order", content_type = "application/json"), (status = 400, description = "Bad parameter", body = crate::openapi::ErrorBody, content_type = "application/json"))
)]
pub async fn list_versions(
    State(state): State<AppState>,
    Path((package, branch)): Path<(String, String)>,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Json<Value>, JsonError> {
    valid_name("package", &package)?;
    valid_name("branch", &branch)?;
    let page = Page::from_query(uri.query())?;
    let view = state.branch_view(&package, &branch).await?;
    if view.is_empty() {
        return Err(
            ApiError::not_found(format!("no versions of {package} on branch {branch}")).into(),
        );
    }
    // Versions are in version order: "after" is a position in that order.
    let after = page.after.as_deref().map(ota_core::Version::parse);
    if let Some(Err(e)) = &after {
        return Err(ApiError::bad_request(format!("after: {e}")).into());
    }
    let after = after.and_then(Result::ok);
    let (items, next) = page.apply(
        &view.entries,
        |e| &e.version,
        |e, _| {
            ota_core::Version::parse(&e.version)
                .is_ok_and(|v| after.as_ref().is_none_or(|a| v > *a))
        },
    );
    let versions: Vec<Value> = items
        .iter()
        .map(|e| entry_json(&state, &headers, e))
        .collect();
    Ok(Json(json!({ "versions": versions, "next": next })))
}

/// `GET …/latest`.
#[utoipa::path(
    get,
    path = "/api/v1/packages/{package}/branches/{branch}/latest",
    tag = "JSON API",
    params(("package" = String, Path, description = "Package name"), ("branch" = String, Path, description = "Branch")),
    responses((status = 200, description = "The newest version", content_type = "application/json"), (status = 404, description = "No version", body = crate::openapi::ErrorBody, content_type = "application/json"))
)]
pub async fn latest(
    State(state): State<AppState>,
    Path((package, branch)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Json<Value>, JsonError> {
    valid_name("package", &package)?;
    valid_name("branch", &branch)?;
    let view = state.branch_view(&package, &branch).await?;
    let e = view.entries.last().ok_or_else(|| {
        ApiError::not_found(format!("no versions of {package} on branch {branch}"))
    })?;
    Ok(Json(entry_json(&state, &headers, e)))
}

fn check_path(package: &str, branch: &str) -> Result<(), ApiError> {
    valid_name("package", package)?;
    valid_name("branch", branch)
}

/// `GET …/versions/{version}`.
#[utoipa::path(
    get,
    path = "/api/v1/packages/{package}/branches/{branch}/versions/{version}",
    tag = "JSON API",
    params(("package" = String, Path, description = "Package name"), ("branch" = String, Path, description = "Branch"), ("version" = String, Path, description = "Version")),
    responses((status = 200, description = "The version and its content.json", content_type = "application/json"), (status = 404, description = "Not published", body = crate::openapi::ErrorBody, content_type = "application/json"))
)]
pub async fn get_version(
    State(state): State<AppState>,
    Path((package, branch, version)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Result<Json<Value>, JsonError> {
    check_path(&package, &branch)?;
    let view = state.branch_view(&package, &branch).await?;
    let e = view
        .entries
        .iter()
        .find(|e| e.version == version)
        .ok_or_else(|| not_published(&package, &branch, &version))?;
    Ok(Json(entry_json(&state, &headers, e)))
}

/// `DELETE …/versions/{version}`: needs a key whose scopes cover the package.
#[utoipa::path(
    delete,
    path = "/api/v1/packages/{package}/branches/{branch}/versions/{version}",
    tag = "JSON API",
    params(("package" = String, Path, description = "Package name"), ("branch" = String, Path, description = "Branch"), ("version" = String, Path, description = "Version")),
    responses((status = 200, description = "Deleted", content_type = "application/json"), (status = 401, description = "Missing or invalid key", body = crate::openapi::ErrorBody, content_type = "application/json"), (status = 403, description = "Scopes do not cover the package", body = crate::openapi::ErrorBody, content_type = "application/json"), (status = 404, description = "Not published", body = crate::openapi::ErrorBody, content_type = "application/json")),
    security(("bearer" = []))
)]
pub async fn delete_version(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((package, branch, version)): Path<(String, String, String)>,
) -> Result<StatusCode, JsonError> {
    let key = state.authenticate(&headers).await?;
    delete_version_as(&state, &key, &package, &branch, &version).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Deletes a version on behalf of `key` (an API key, or the web admin's
/// `user:NAME`): the row, its place on the delta map, and its blob when no
/// other row references it.
pub async fn delete_version_as(
    state: &AppState,
    key: &ota_store::KeyAuth,
    package: &str,
    branch: &str,
    version: &str,
) -> Result<(), ApiError> {
    check_path(package, branch)?;
    state.require_publish(key, package)?;
    let _guard = state.write_lock.lock().await;
    let gone = state
        .catalogue
        .delete(package, branch, version)
        .await?
        .ok_or_else(|| not_published(package, branch, version))?;
    state.cache.invalidate(package, branch);
    state
        .packs
        .deleted(&state.catalogue, package, branch, version)
        .await?;
    if state.catalogue.references(&gone.sha256).await? == 0 {
        if let Ok(h) = ota_core::Sha256Hex::parse(&gone.sha256) {
            if let Err(e) = state.blobs.remove(&h).await {
                tracing::warn!("removing blob {h}: {e}");
            }
        }
    }
    tracing::info!(package, branch, version, key = key.name, "deleted");
    state
        .catalogue
        .audit_or_warn(
            &crate::admin::actor(&key.name),
            "package.delete",
            &format!("{package}/{branch}/{version}"),
            &gone.sha256,
        )
        .await;
    Ok(())
}

/// `POST /api/v1/packages`: upload.
#[utoipa::path(
    post,
    path = "/api/v1/packages",
    tag = "JSON API",
    request_body(content_type = "multipart/form-data", description = "Parts `content` (content.json) and `file`"),
    responses((status = 201, description = "Published", content_type = "application/json"), (status = 200, description = "Already published identically", content_type = "application/json"), (status = 400, description = "Malformed upload", body = crate::openapi::ErrorBody, content_type = "application/json"), (status = 401, description = "Missing or invalid key", body = crate::openapi::ErrorBody, content_type = "application/json"), (status = 403, description = "Scopes do not cover the package", body = crate::openapi::ErrorBody, content_type = "application/json"), (status = 409, description = "Another file holds that version", body = crate::openapi::ErrorBody, content_type = "application/json"), (status = 413, description = "Over the upload limit", body = crate::openapi::ErrorBody, content_type = "application/json")),
    security(("bearer" = []))
)]
pub async fn upload(State(state): State<AppState>, req: Request) -> Response {
    let headers = req.headers().clone();
    match upload::receive(&state, req).await {
        Ok(done) => {
            let status = if done.created {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            };
            let e = &done.entry;
            let content = content_value(&e.content, &e.sha256, &state.download_base, &headers);
            (
                status,
                Json(json!({ "created": done.created, "content": content })),
            )
                .into_response()
        }
        Err(UploadError::HashMismatch(msg)) => {
            ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "hash_mismatch", msg).into_json()
        }
        Err(UploadError::Api(e)) => e.into_json(),
    }
}

fn job_json(j: &ota_store::Job) -> Value {
    json!({
        "id": j.id,
        "kind": j.job.kind,
        "package": j.job.package,
        "branch": j.job.branch,
        "from": j.job.from_version,
        "to": j.job.to_version,
        "level": j.job.level,
        "state": j.state.as_str(),
        "attempts": j.attempts,
        "run_after": j.run_after,
        "worker": j.claimed_by,
        "error": j.error,
        "created_at": j.created_at,
        "updated_at": j.updated_at,
    })
}

/// `GET /api/v1/jobs[?state=queued|running|done|failed&limit=N]`, newest
/// first (any valid key).
#[utoipa::path(
    get,
    path = "/api/v1/jobs",
    tag = "JSON API",
    params(("state" = Option<String>, Query, description = "queued, running, done or failed"), ("limit" = Option<u32>, Query, description = "At most this many (1 to 10000)")),
    responses((status = 200, description = "Jobs, newest first", content_type = "application/json"), (status = 400, description = "Bad parameter", body = crate::openapi::ErrorBody, content_type = "application/json"), (status = 401, description = "Missing or invalid key", body = crate::openapi::ErrorBody, content_type = "application/json")),
    security(("bearer" = []))
)]
pub async fn list_jobs(
    State(state): State<AppState>,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Json<Value>, JsonError> {
    state.authenticate(&headers).await?;
    let mut filter = None;
    let mut limit = 100u32;
    for (k, v) in form_urlencoded::parse(uri.query().unwrap_or_default().as_bytes()) {
        match &*k {
            "state" => {
                filter = Some(match &*v {
                    "queued" => ota_store::JobState::Queued,
                    "running" => ota_store::JobState::Running,
                    "done" => ota_store::JobState::Done,
                    "failed" => ota_store::JobState::Failed,
                    other => {
                        return Err(ApiError::bad_request(format!(
                            "state: {other:?} is not one of queued, running, done, failed"
                        ))
                        .into())
                    }
                })
            }
            "limit" => {
                limit = v
                    .parse::<u32>()
                    .ok()
                    .filter(|n| (1..=10_000).contains(n))
                    .ok_or_else(|| ApiError::bad_request("limit: a number from 1 to 10000"))?
            }
            other => {
                return Err(ApiError::bad_request(format!("unknown parameter {other:?}")).into())
            }
        }
    }
    let jobs = state.catalogue.jobs(filter, limit).await?;
    Ok(Json(
        json!({ "jobs": jobs.iter().map(job_json).collect::<Vec<_>>() }),
    ))
}

/// `POST /api/v1/jobs/{id}/retry`: queues a failed job again (admin).
#[utoipa::path(
    post,
    path = "/api/v1/jobs/{id}/retry",
    tag = "JSON API",
    params(("id" = i64, Path, description = "Job id")),
    responses((status = 200, description = "Queued again", content_type = "application/json"), (status = 403, description = "Needs the admin scope", body = crate::openapi::ErrorBody, content_type = "application/json"), (status = 404, description = "No failed job with that id", body = crate::openapi::ErrorBody, content_type = "application/json")),
    security(("bearer" = []))
)]
pub async fn retry_job(
    State(state): State<AppState>,
    Path(id): Path<i64>,
    headers: HeaderMap,
) -> Result<StatusCode, JsonError> {
    let key = state.authenticate(&headers).await?;
    if !key.scopes.is_admin() {
        return Err(ApiError::forbidden("retrying a job needs the admin scope").into());
    }
    if !state.catalogue.retry_job(id).await? {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "not_failed",
            format!("job {id} does not exist or has not failed"),
        )
        .into());
    }
    state.packs.wake.notify_waiters();
    let actor = crate::admin::actor(&key.name);
    state
        .catalogue
        .audit_or_warn(&actor, "job.retry", &id.to_string(), "")
        .await;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET …/branches/{branch}/deltas`: the branch's delta map: each version
/// with its position, digest and whether it is a delta destination yet.
#[utoipa::path(
    get,
    path = "/api/v1/packages/{package}/branches/{branch}/deltas",
    tag = "bundle protocol",
    params(("package" = String, Path, description = "Package name"), ("branch" = String, Path, description = "Branch")),
    responses((status = 200, description = "Each version with its position, digest and readiness, and the packs", content_type = "application/json"))
)]
pub async fn delta_map(
    State(state): State<AppState>,
    Path((package, branch)): Path<(String, String)>,
) -> Result<Json<Value>, JsonError> {
    check_path(&package, &branch)?;
    let rows = state.catalogue.map_versions(&package, &branch).await?;
    if rows.is_empty() {
        return Err(ApiError::not_found(format!(
            "no versions of {package} on branch {branch} are on the delta map"
        ))
        .into());
    }
    let m = state.packs.map(&state.catalogue, &package, &branch).await?;
    let versions: Vec<Value> = rows
        .iter()
        .map(|r| {
            json!({
                "version": r.version,
                "position": r.position,
                "digest": r.digest,
                "deleted": r.deleted,
                "ready": !r.deleted && m.map.is_ready(&r.version),
            })
        })
        .collect();
    Ok(Json(json!({
        "package": package,
        "branch": branch,
        "newest": m.map.newest_ready(),
        "packs": m.packs.len(),
        "pack_bytes": m.packs.values().map(|p| p.size).sum::<u64>(),
        "versions": versions,
    })))
}
