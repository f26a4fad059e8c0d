//! The JSON API under `/api/v1/`, with conventional semantics: JSON bodies,
//! `{"error":{"code","message"}}` on failure, `201` on creation, `422` when
//! an upload's hash does not match its content.json.
//!
//! | method | path | |
//! |---|---|---|
//! | GET | `/api/v1/auth` | checks the bearer key: 200 `{"key": name}` or 401 |
//! | GET | `/api/v1/packages` | every package with its branches |
//! | POST | `/api/v1/packages` | upload (multipart `content` + `file`), authenticated |
//! | GET | `/api/v1/packages/{package}` | one package's branches |
//! | GET | `/api/v1/packages/{package}/branches/{branch}/versions` | versions, oldest first |
//! | GET | `/api/v1/packages/{package}/branches/{branch}/latest` | highest version |
//! | GET | `/api/v1/packages/{package}/branches/{branch}/versions/{version}` | one version |
//! | DELETE | same | delete it (authenticated); its file goes when nothing else uses it |

use crate::error::{ApiError, JsonError};
use crate::state::{valid_name, AppState};
use crate::upload::{self, UploadError};
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use ota_store::Entry;
use serde_json::{json, Value};

fn entry_json(e: &Entry) -> Value {
    json!({
        "package": e.package,
        "branch": e.branch,
        "version": e.version,
        "sha256": e.sha256,
        "size": e.size,
        "created_at": e.created_at,
        "content": serde_json::from_str::<Value>(&e.content).unwrap_or(Value::Null),
    })
}

/// `GET /api/v1/auth`: 200 with the key's name when `Authorization:
/// Bearer KEY` is valid, 401 otherwise. Publishers call it before
/// streaming a large file, so a bad key is reported before the upload.
pub async fn auth(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<Value>, JsonError> {
    let name = state.authenticate(&headers).await?;
    Ok(Json(json!({ "key": name })))
}

/// `GET /api/v1/packages`.
pub async fn list_packages(State(state): State<AppState>) -> Result<Json<Value>, JsonError> {
    let packages = state.catalogue.packages().await?;
    Ok(Json(json!({ "packages": packages })))
}

/// `GET /api/v1/packages/{package}`.
pub async fn get_package(
    State(state): State<AppState>,
    Path(package): Path<String>,
) -> Result<Json<Value>, JsonError> {
    valid_name("package", &package)?;
    let packages = state.catalogue.packages().await?;
    let p = packages
        .into_iter()
        .find(|p| p.name == package)
        .ok_or_else(|| ApiError::not_found(format!("no package named {package}")))?;
    Ok(Json(json!(p)))
}

/// `GET …/versions`.
pub async fn list_versions(
    State(state): State<AppState>,
    Path((package, branch)): Path<(String, String)>,
) -> Result<Json<Value>, JsonError> {
    valid_name("package", &package)?;
    valid_name("branch", &branch)?;
    let versions = state.catalogue.versions(&package, &branch).await?;
    if versions.is_empty() {
        return Err(
            ApiError::not_found(format!("no versions of {package} on branch {branch}")).into(),
        );
    }
    Ok(Json(
        json!({ "versions": versions.iter().map(entry_json).collect::<Vec<_>>() }),
    ))
}

/// `GET …/latest`.
pub async fn latest(
    State(state): State<AppState>,
    Path((package, branch)): Path<(String, String)>,
) -> Result<Json<Value>, JsonError> {
    valid_name("package", &package)?;
    valid_name("branch", &branch)?;
    let e = state
        .catalogue
        .max_version(&package, &branch)
        .await?
        .ok_or_else(|| {
            ApiError::not_found(format!("no versions of {package} on branch {branch}"))
        })?;
    Ok(Json(entry_json(&e)))
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
) -> Result<Json<Value>, JsonError> {
    check_path(&package, &branch, &version)?;
    let e = state
        .catalogue
        .get(&package, &branch, &version)
        .await?
        .ok_or_else(|| {
            ApiError::not_found(format!(
                "{package} {version} is not published on branch {branch}"
            ))
        })?;
    Ok(Json(entry_json(&e)))
}

/// `DELETE …/versions/{version}`.
pub async fn delete_version(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((package, branch, version)): Path<(String, String, String)>,
) -> Result<StatusCode, JsonError> {
    state.authenticate(&headers).await?;
    check_path(&package, &branch, &version)?;
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
    tracing::info!(package, branch, version, "deleted");
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /api/v1/packages`: upload.
pub async fn upload(State(state): State<AppState>, req: Request) -> Response {
    match upload::receive(&state, req).await {
        Ok(done) => {
            let status = if done.created {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            };
            let content: Value = serde_json::from_str(&done.content).unwrap_or(Value::Null);
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
