//! The fleet inventory: installed versions, last seen, last result and
//! error, each device's history; register (token shown once) and remove.

use super::{audit, check_text, see_other, templates, AdminError, PageResult, Session};
use crate::state::AppState;
use axum::extract::{Form, Path, State};
use axum::http::StatusCode;
use axum::Extension;
use ota_store::{Device, StoreError};
use serde::Deserialize;
use serde_json::Value;

fn device_value(d: &Device) -> Value {
    let mut v = serde_json::to_value(d).unwrap_or(Value::Null);
    v["installed"] = serde_json::from_str(&d.installed).unwrap_or(Value::Null);
    v
}

async fn render(
    state: &AppState,
    s: &Session,
    status: StatusCode,
    message: &str,
    created: Option<(&str, &str)>,
) -> PageResult {
    let devices: Vec<Value> = state
        .catalogue
        .devices()
        .await?
        .iter()
        .map(device_value)
        .collect();
    let (name, token) = created.unwrap_or_default();
    let mut r = templates::page(
        s,
        "devices.html",
        "devices",
        minijinja::context! { devices => devices, message => message, created => name, token => token },
    )?;
    *r.status_mut() = status;
    Ok(r)
}

/// `GET /admin/devices`.
pub async fn list(State(state): State<AppState>, Extension(s): Extension<Session>) -> PageResult {
    render(&state, &s, StatusCode::OK, "", None).await
}

/// The register form.
#[derive(Deserialize)]
pub struct AddForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    description: String,
}

/// `POST /admin/devices`: registers a device and shows its token once.
pub async fn add(
    State(state): State<AppState>,
    Extension(s): Extension<Session>,
    Form(f): Form<AddForm>,
) -> PageResult {
    let checked = ota_core::name::check_name("device", &f.name)
        .map_err(|e| e.to_string())
        .and_then(|()| check_text("description", &f.description, 1024).map_err(|e| e.message));
    if let Err(m) = checked {
        return render(&state, &s, StatusCode::BAD_REQUEST, &m, None).await;
    }
    match state.catalogue.add_device(&f.name, &f.description).await {
        Ok(token) => {
            audit(&state, &s, "device.add", &f.name, &f.description).await?;
            render(&state, &s, StatusCode::CREATED, "", Some((&f.name, &token))).await
        }
        Err(e @ StoreError::DeviceExists(_)) => {
            render(&state, &s, StatusCode::CONFLICT, &e.to_string(), None).await
        }
        Err(e) => Err(e.into()),
    }
}

/// The remove form.
#[derive(Deserialize)]
pub struct NameForm {
    #[serde(default)]
    name: String,
}

/// `POST /admin/devices/remove`.
pub async fn remove(
    State(state): State<AppState>,
    Extension(s): Extension<Session>,
    Form(f): Form<NameForm>,
) -> PageResult {
    if !state.catalogue.remove_device(&f.name).await? {
        let m = format!("no device named {:?}", f.name);
        return render(&state, &s, StatusCode::NOT_FOUND, &m, None).await;
    }
    audit(&state, &s, "device.remove", &f.name, "").await?;
    Ok(see_other("/admin/devices"))
}

/// `GET /admin/devices/{name}`: one device and its history.
pub async fn show(
    State(state): State<AppState>,
    Extension(s): Extension<Session>,
    Path(name): Path<String>,
) -> PageResult {
    let device = state
        .catalogue
        .device(&name)
        .await?
        .ok_or_else(|| AdminError::not_found(format!("no device named {name:?}")))?;
    let reports = state
        .catalogue
        .device_reports(&name, ota_store::REPORTS_KEPT)
        .await?;
    let installed: Value = serde_json::from_str(&device.installed).unwrap_or(Value::Null);
    templates::page(
        &s,
        "device.html",
        "devices",
        minijinja::context! { device => device, installed => installed, reports => reports },
    )
}
