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
use crate::state::{valid_name, AppState};
use crate::upload::{self, UploadError};
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use ota_store::Entry;
use serde_json::{json, Value};
use std::sync::Arc;

/// Page size when `limit` is not given.
pub const DEFAULT_PAGE: usize = 100;
/// Largest page a client may ask for.
pub const MAX_PAGE: usize = 1000;

/// `?limit=N&after=KEY`: pages of a list in its order.
#[derive(serde::Deserialize, Default)]
pub struct Page {
    limit: Option<usize>,
    after: Option<String>,
}

impl Page {
    fn limit(&self) -> Result<usize, ApiError> {
        match self.limit {
            None => Ok(DEFAULT_PAGE),
            Some(n) if (1..=MAX_PAGE).contains(&n) => Ok(n),
            Some(n) => Err(ApiError::bad_request(format!(
                "limit {n} is out of range 1..={MAX_PAGE}"
            ))),
        }
    }

    /// The slice of `items` after the one whose key is `after`, and the
    /// key to ask for the next page with (if there is one).
    fn apply<'a, T>(
        &self,
        items: &'a [T],
        key: impl Fn(&T) -> &str,
    ) -> Result<(&'a [T], Option<String>), ApiError> {
        let start = match &self.after {
            None => 0,
            Some(a) => {
                items.iter().position(|i| key(i) == a).ok_or_else(|| {
                    ApiError::bad_request(format!("after={a:?} is not in the list"))
                })? + 1
            }
        };
        let end = (start + self.limit()?).min(items.len());
        let next = (end < items.len() && end > start).then(|| key(&items[end - 1]).to_owned());
        Ok((&items[start..end], next))
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

async fn packages(state: &AppState) -> Result<Arc<Vec<ota_store::PackageSummary>>, ApiError> {
    let (cached, epoch) = state.cache.packages();
    if let Some(p) = cached {
        return Ok(p);
    }
    let list = Arc::new(state.catalogue.packages().await?);
    state.cache.set_packages(epoch, list.clone());
    Ok(list)
}

/// `GET /api/v1/packages[?limit=N&after=NAME]`.
pub async fn list_packages(
    State(state): State<AppState>,
    Query(page): Query<Page>,
) -> Result<Json<Value>, JsonError> {
    let all = packages(&state).await?;
    let (items, next) = page.apply(&all, |p| &p.name)?;
    Ok(Json(json!({ "packages": items, "next": next })))
}

/// `GET /api/v1/packages/{package}`.
pub async fn get_package(
    State(state): State<AppState>,
    Path(package): Path<String>,
) -> Result<Json<Value>, JsonError> {
    valid_name("package", &package)?;
    let all = packages(&state).await?;
    let p = all
        .iter()
        .find(|p| p.name == package)
        .ok_or_else(|| ApiError::not_found(format!("no package named {package}")))?;
    Ok(Json(json!(p)))
}

/// `GET …/versions[?limit=N&after=VERSION]`, in version order.
pub async fn list_versions(
    State(state): State<AppState>,
    Path((package, branch)): Path<(String, String)>,
    Query(page): Query<Page>,
    headers: HeaderMap,
) -> Result<Json<Value>, JsonError> {
    valid_name("package", &package)?;
    valid_name("branch", &branch)?;
    let view = state.branch_view(&package, &branch).await?;
    if view.is_empty() {
        return Err(
            ApiError::not_found(format!("no versions of {package} on branch {branch}")).into(),
        );
    }
    let (items, next) = page.apply(&view.entries, |e| &e.version)?;
    let versions: Vec<Value> = items
        .iter()
        .map(|e| entry_json(&state, &headers, e))
        .collect();
    Ok(Json(json!({ "versions": versions, "next": next })))
}

/// `GET …/latest`.
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

fn check_path(package: &str, branch: &str, version: &str) -> Result<(), ApiError> {
    valid_name("package", package)?;
    valid_name("branch", branch)?;
    ota_core::Version::parse(version).map_err(|e| ApiError::bad_request(e.to_string()))?;
    Ok(())
}

/// `GET …/versions/{version}`.
pub async fn get_version(
    State(state): State<AppState>,
    Path((package, branch, version)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Result<Json<Value>, JsonError> {
    check_path(&package, &branch, &version)?;
    let view = state.branch_view(&package, &branch).await?;
    let e = view
        .entries
        .iter()
        .find(|e| e.version == version)
        .ok_or_else(|| {
            ApiError::not_found(format!(
                "{package} {version} is not published on branch {branch}"
            ))
        })?;
    Ok(Json(entry_json(&state, &headers, e)))
}

/// `DELETE …/versions/{version}`: needs a key whose scopes cover the package.
pub async fn delete_version(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((package, branch, version)): Path<(String, String, String)>,
) -> Result<StatusCode, JsonError> {
    let key = state.authenticate(&headers).await?;
    check_path(&package, &branch, &version)?;
    state.require_publish(&key, &package)?;
    let _guard = state.write_lock.lock().await;
    let gone = state
        .catalogue
        .delete(&package, &branch, &version)
        .await?
        .ok_or_else(|| {
            ApiError::not_found(format!(
                "{package} {version} is not published on branch {branch}"
            ))
        })?;
    state.cache.invalidate(&package, &branch);
    if state.catalogue.references(&gone.sha256).await? == 0 {
        if let Ok(h) = ota_core::Sha256Hex::parse(&gone.sha256) {
            if let Err(e) = state.blobs.remove(&h) {
                tracing::warn!("removing blob {h}: {e}");
            }
        }
    }
    tracing::info!(package, branch, version, key = key.name, "deleted");
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /api/v1/packages`: upload.
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
