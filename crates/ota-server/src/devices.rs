//! The fleet inventory: devices are registered by an admin (each gets a
//! token for its agent), agents report every update's outcome, and the
//! inventory shows each device's installed versions, when it was last seen
//! and its last result and error.
//!
//! - `POST /api/v1/devices` (admin) `{"name","description"}` → the token, once.
//! - `GET /api/v1/devices` (any key) → every device. Without an
//!   `Authorization` header the same URL is the LineageOS Updater API's
//!   public device list.
//! - `GET /api/v1/devices/{device}` (any key) → the device and its newest reports.
//! - `DELETE /api/v1/devices/{device}` (admin).
//! - `POST /api/v1/devices/{device}/report` (the device's own token).

use crate::error::{ApiError, JsonError};
use crate::state::{valid_name, AppState};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use bytes::Bytes;
use ota_store::{Device, NewReport, StoreError};
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// A report body is at most this many bytes.
pub const MAX_REPORT: usize = 64 * 1024;
/// An error text in a report is at most this many bytes.
pub const MAX_ERROR: usize = 8 * 1024;
/// Results a report may carry.
pub const RESULTS: &[&str] = &["success", "failure", "rolled-back", "up-to-date", "skipped"];

fn device_json(d: &Device) -> Value {
    json!({
        "name": d.name,
        "description": d.description,
        "created_at": d.created_at,
        "last_seen": d.last_seen,
        "last_result": d.last_result,
        "last_error": d.last_error,
        "installed": serde_json::from_str::<Value>(&d.installed).unwrap_or(Value::Null),
    })
}

async fn require_admin(
    state: &AppState,
    headers: &HeaderMap,
    what: &str,
) -> Result<String, ApiError> {
    let key = state.authenticate(headers).await?;
    if key.scopes.is_admin() {
        Ok(crate::admin::actor(&key.name))
    } else {
        Err(ApiError::forbidden(format!("{what} needs the admin scope")))
    }
}

/// A device to register.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct AddDevice {
    name: String,
    #[serde(default)]
    description: String,
}

/// `POST /api/v1/devices`: registers a device; the answer holds its token.
#[utoipa::path(
    post,
    path = "/api/v1/devices",
    tag = "fleet",
    request_body(content = crate::devices::AddDevice, content_type = "application/json"),
    responses((status = 201, description = "Registered; the answer holds the device's token, shown once", content_type = "application/json"), (status = 403, description = "Needs the admin scope", body = crate::openapi::ErrorBody, content_type = "application/json"), (status = 409, description = "A device of that name exists", body = crate::openapi::ErrorBody, content_type = "application/json")),
    security(("bearer" = []))
)]
pub async fn add(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, JsonError> {
    let actor = require_admin(&state, &headers, "registering a device").await?;
    let msg: AddDevice = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("malformed device: {e}")))?;
    valid_name("device", &msg.name)?;
    if msg.description.len() > 1024 {
        return Err(ApiError::bad_request("description: at most 1024 bytes").into());
    }
    match state
        .catalogue
        .add_device(&msg.name, &msg.description)
        .await
    {
        Ok(token) => Ok({
            state
                .catalogue
                .audit_or_warn(&actor, "device.add", &msg.name, &msg.description)
                .await;
            (
                StatusCode::CREATED,
                Json(json!({"name": msg.name, "token": token})),
            )
                .into_response()
        }),
        Err(e @ StoreError::DeviceExists(_)) => {
            Err(ApiError::new(StatusCode::CONFLICT, "device_exists", e.to_string()).into())
        }
        Err(e) => Err(ApiError::from(e).into()),
    }
}

/// `GET /api/v1/devices`: the inventory (with a key), or the LineageOS
/// Updater API's device list (without one).
#[utoipa::path(
    get,
    path = "/api/v1/devices",
    tag = "fleet",
    responses((status = 200, description = "With an admin key: the inventory. Without a key: the LineageOS Updater API's device list", content_type = "application/json"))
)]
pub async fn list(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, JsonError> {
    if !headers.contains_key(axum::http::header::AUTHORIZATION) {
        return Ok(crate::rom::lineage::list_devices(State(state)).await);
    }
    state.authenticate(&headers).await?;
    let devices = state.catalogue.devices().await?;
    Ok(
        Json(json!({ "devices": devices.iter().map(device_json).collect::<Vec<_>>() }))
            .into_response(),
    )
}

/// `GET /api/v1/devices/{device}`: one device and its newest reports.
#[utoipa::path(
    get,
    path = "/api/v1/devices/{device}",
    tag = "fleet",
    params(("device" = String, Path, description = "Device name")),
    responses((status = 200, description = "The device and its newest reports", content_type = "application/json"), (status = 404, description = "Unknown device", body = crate::openapi::ErrorBody, content_type = "application/json")),
    security(("bearer" = []))
)]
pub async fn show(
    State(state): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Result<Json<Value>, JsonError> {
    state.authenticate(&headers).await?;
    valid_name("device", &name)?;
    let device = state
        .catalogue
        .device(&name)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no device named {name:?}")))?;
    let reports = state.catalogue.device_reports(&name, 20).await?;
    let mut out = device_json(&device);
    out["reports"] = reports
        .iter()
        .map(|r| {
            json!({
                "received_at": r.received_at,
                "result": r.result,
                "report": serde_json::from_str::<Value>(&r.report).unwrap_or(Value::Null),
            })
        })
        .collect();
    Ok(Json(out))
}

/// `DELETE /api/v1/devices/{device}`.
#[utoipa::path(
    delete,
    path = "/api/v1/devices/{device}",
    tag = "fleet",
    params(("device" = String, Path, description = "Device name")),
    responses((status = 200, description = "Removed", content_type = "application/json"), (status = 404, description = "Unknown device", body = crate::openapi::ErrorBody, content_type = "application/json")),
    security(("bearer" = []))
)]
pub async fn remove(
    State(state): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Result<StatusCode, JsonError> {
    let actor = require_admin(&state, &headers, "removing a device").await?;
    valid_name("device", &name)?;
    if state.catalogue.remove_device(&name).await? {
        state
            .catalogue
            .audit_or_warn(&actor, "device.remove", &name, "")
            .await;
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found(format!("no device named {name:?}")).into())
    }
}

/// What an agent reports.
#[derive(Deserialize, utoipa::ToSchema)]
pub(crate) struct Report {
    result: String,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    installed: BTreeMap<String, String>,
}

fn check_report(body: &[u8]) -> Result<Report, ApiError> {
    if body.len() > MAX_REPORT {
        return Err(ApiError::too_large(format!(
            "a report is at most {MAX_REPORT} bytes"
        )));
    }
    let r: Report = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("malformed report: {e}")))?;
    if !RESULTS.contains(&r.result.as_str()) {
        return Err(ApiError::bad_request(format!(
            "result: {:?} is not one of {}",
            r.result,
            RESULTS.join(", ")
        )));
    }
    if r.error.as_ref().is_some_and(|e| e.len() > MAX_ERROR) {
        return Err(ApiError::bad_request(format!(
            "error: at most {MAX_ERROR} bytes"
        )));
    }
    for (package, version) in &r.installed {
        valid_name("installed package", package)?;
        ota_core::Version::parse(version)
            .map_err(|e| ApiError::bad_request(format!("installed.{package}: {e}")))?;
    }
    Ok(r)
}

/// `POST /api/v1/devices/{device}/report`, with `Authorization: Bearer
/// DEVICE_TOKEN`.
#[utoipa::path(
    post,
    path = "/api/v1/devices/{device}/report",
    tag = "fleet",
    params(("device" = String, Path, description = "Device name")),
    request_body(content = crate::devices::Report, content_type = "application/json"),
    responses((status = 200, description = "Stored", content_type = "application/json"), (status = 400, description = "Malformed report", body = crate::openapi::ErrorBody, content_type = "application/json"), (status = 401, description = "Not this device's token", body = crate::openapi::ErrorBody, content_type = "application/json"), (status = 413, description = "Over 64 KiB", body = crate::openapi::ErrorBody, content_type = "application/json")),
    security(("bearer" = []))
)]
pub async fn report(
    State(state): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<StatusCode, JsonError> {
    valid_name("device", &name)?;
    let token = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, t)| t.trim())
        .ok_or_else(|| {
            ApiError::unauthorized("missing 'Authorization: Bearer DEVICE_TOKEN' header")
        })?;
    // The same answer for an unknown device and a wrong token.
    if !state.catalogue.device_token_valid(&name, token).await? {
        return Err(ApiError::unauthorized(format!(
            "not a valid token for device {name:?} (ota devices add {name} issues one)"
        ))
        .into());
    }
    let r = check_report(&body)?;
    let installed = serde_json::to_string(&r.installed)
        .map_err(|e| ApiError::internal("encoding versions", e))?;
    let text = String::from_utf8_lossy(&body);
    let stored = state
        .catalogue
        .record_report(
            &name,
            &NewReport {
                result: &r.result,
                error: r.error.as_deref(),
                installed: &installed,
                report: &text,
            },
        )
        .await?;
    if !stored {
        return Err(ApiError::not_found(format!("device {name:?} was removed")).into());
    }
    Ok(StatusCode::NO_CONTENT)
}
