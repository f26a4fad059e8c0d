//! The LineageOS Updater API.
//!
//! - `GET /api/v1/<device>/<romtype>/<incremental>[?after=TS&version=V]` →
//!   `{"response":[{datetime, filename, id, romtype, size, url, version}]}`,
//!   newest first; an unknown device gets an empty list. The app filters
//!   by `datetime` and `version` itself; the incremental is checked but, as
//!   on LineageOS's own server, does not select anything.
//! - `GET /api/v1/types/<device>/` → `{"response":["nightly", …]}`.
//! - `GET /api/v1/devices` (without `Authorization`; the fleet inventory
//!   answers with it) → `[{"model","oem","name"}]`, the devices with a
//!   published build.

use super::{bad_field, download_url};
use crate::error::{ApiError, JsonError};
use crate::state::AppState;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use ota_store::{check_channel, check_codename, check_incremental, check_rom_version, RomBuild};
use serde_json::{json, Value};
use std::collections::HashMap;

/// `GET /api/v1/<device>/<romtype>/<incremental>`.
#[utoipa::path(
    get,
    path = "/api/v1/{device}/{romtype}/{incremental}",
    tag = "LineageOS Updater API",
    params(("device" = String, Path, description = "Codename"), ("romtype" = String, Path, description = "Release type"), ("incremental" = String, Path, description = "The phone's incremental")),
    responses((status = 200, description = "`{\"response\":[…]}`; an empty list for an unknown device", body = crate::openapi::LineageAnswer, content_type = "application/json"))
)]
pub async fn builds(
    State(state): State<AppState>,
    Path((device, romtype, incremental)): Path<(String, String, String)>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Result<Response, JsonError> {
    check_codename(&device).map_err(bad_field)?;
    check_channel("romtype", &romtype).map_err(bad_field)?;
    check_incremental("incremental", &incremental).map_err(bad_field)?;
    let after = match query.get("after") {
        None => None,
        Some(a) => Some(a.parse::<i64>().map_err(|_| {
            ApiError::bad_request(format!(
                "after={:?}: expected a Unix timestamp",
                a.chars().take(40).collect::<String>()
            ))
        })?),
    };
    let version = query.get("version");
    if let Some(v) = version {
        check_rom_version(v).map_err(bad_field)?;
    }
    // The app lowercases `ro.lineage.releasetype`; so are stored romtypes.
    let romtype = romtype.to_ascii_lowercase();
    let key = format!("lo\0{device}\0{romtype}\0{after:?}\0{version:?}");
    let load = state.catalogue.rom_builds_of_type(&device, &romtype, after);
    let base = state.download_base.for_request(&headers);
    let render = |base: &str, builds: &[RomBuild]| {
        let response: Vec<Value> = builds
            .iter()
            .filter(|b| version.is_none_or(|v| *v == b.build.version))
            .map(|b| build_item(base, b))
            .collect();
        json!({ "response": response })
    };
    Ok(super::cached_answer(&state, &key, &base, load, render).await?)
}

/// One item, with exactly the keys and types the app reads.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct LineageBuild {
    /// `ro.build.date.utc`.
    pub datetime: i64,
    /// File name.
    pub filename: String,
    /// A unique id (the SHA-256 of the package).
    pub id: String,
    /// Release type.
    pub romtype: String,
    /// Bytes.
    pub size: u64,
    /// Download URL.
    pub url: String,
    /// ROM version.
    pub version: String,
}

fn build_item(base: &str, b: &RomBuild) -> Value {
    let n = &b.build;
    let item = LineageBuild {
        datetime: n.timestamp,
        filename: n.filename.clone(),
        id: n.sha256.clone(),
        romtype: n.romtype.clone(),
        size: n.size,
        url: download_url(base, &n.sha256, &n.filename),
        version: n.version.clone(),
    };
    serde_json::to_value(item).unwrap_or(Value::Null)
}

/// `GET /api/v1/types/<device>/`.
#[utoipa::path(
    get,
    path = "/api/v1/types/{device}/",
    tag = "LineageOS Updater API",
    params(("device" = String, Path, description = "Codename")),
    responses((status = 200, description = "The release types of the device's published builds", content_type = "application/json"))
)]
pub async fn types(
    State(state): State<AppState>,
    Path(device): Path<String>,
) -> Result<Response, JsonError> {
    check_codename(&device).map_err(bad_field)?;
    let types = state.catalogue.rom_types(&device).await?;
    Ok(axum::Json(json!({ "response": types })).into_response())
}

/// `GET /api/v1/devices` for the LineageOS clients: every device with a
/// published build, as LineageOS's `devices.json` lists them.
pub async fn list_devices(State(state): State<AppState>) -> Response {
    match state.catalogue.rom_devices().await {
        Ok(devices) => {
            let list: Vec<Value> = devices
                .iter()
                .map(|d| json!({"model": d.codename, "oem": d.oem, "name": d.name}))
                .collect();
            axum::Json(Value::Array(list)).into_response()
        }
        Err(e) => ApiError::from(e).into_json(),
    }
}
