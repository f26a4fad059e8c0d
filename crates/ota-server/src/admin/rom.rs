//! ROM devices (add, edit, remove), their builds per channel (upload
//! through the API's own receive path, publish/unpublish, changelog) and
//! the clients' reports.

use super::{as_key, audit, check_text, see_other, templates, AdminError, PageResult, Session};
use crate::rom::publish::{check_publishable_codename, publish_as, MAX_CHANGELOG};
use crate::state::AppState;
use axum::extract::{Form, Path, Query, Request, State};
use axum::http::StatusCode;
use axum::Extension;
use ota_store::{check_codename, check_incremental, RomDevice, RomDeviceRemoval};
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// Longest device name or OEM.
const MAX_LABEL: usize = 128;

async fn render_devices(
    state: &AppState,
    s: &Session,
    status: StatusCode,
    message: &str,
) -> PageResult {
    let devices: Vec<Value> = state
        .catalogue
        .rom_devices_all()
        .await?
        .iter()
        .map(|d| json!({"codename": d.device.codename, "name": d.device.name, "oem": d.device.oem, "builds": d.builds}))
        .collect();
    let mut r = templates::page(
        s,
        "rom_devices.html",
        "rom",
        minijinja::context! { devices => devices, message => message },
    )?;
    *r.status_mut() = status;
    Ok(r)
}

/// `GET /admin/rom`.
pub async fn devices(
    State(state): State<AppState>,
    Extension(s): Extension<Session>,
) -> PageResult {
    render_devices(&state, &s, StatusCode::OK, "").await
}

/// The add and edit forms.
#[derive(Deserialize)]
pub struct DeviceForm {
    #[serde(default)]
    codename: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    oem: String,
}

impl DeviceForm {
    fn check(&self) -> Result<RomDevice, AdminError> {
        check_publishable_codename(&self.codename)?;
        let name = self.name.trim();
        if name.is_empty() {
            return Err(AdminError::bad("name: required"));
        }
        check_text("name", name, MAX_LABEL)?;
        check_text("OEM", self.oem.trim(), MAX_LABEL)?;
        Ok(RomDevice {
            codename: self.codename.clone(),
            name: name.to_owned(),
            oem: self.oem.trim().to_owned(),
        })
    }
}

/// `POST /admin/rom`: adds a device.
pub async fn add_device(
    State(state): State<AppState>,
    Extension(s): Extension<Session>,
    Form(f): Form<DeviceForm>,
) -> PageResult {
    let d = match f.check() {
        Ok(d) => d,
        Err(e) => return render_devices(&state, &s, e.status, &e.message).await,
    };
    if !state.catalogue.add_rom_device(&d).await? {
        let m = format!("a ROM device {:?} already exists", d.codename);
        return render_devices(&state, &s, StatusCode::CONFLICT, &m).await;
    }
    crate::rom::written(&state, &d.codename, "");
    audit(
        &state,
        &s,
        "rom.device.add",
        &d.codename,
        &format!("{} / {}", d.name, d.oem),
    )
    .await?;
    Ok(see_other("/admin/rom"))
}

/// `POST /admin/rom/edit`: changes a device's name and OEM.
pub async fn edit_device(
    State(state): State<AppState>,
    Extension(s): Extension<Session>,
    Form(f): Form<DeviceForm>,
) -> PageResult {
    let d = match f.check() {
        Ok(d) => d,
        Err(e) => return render_devices(&state, &s, e.status, &e.message).await,
    };
    if !state.catalogue.edit_rom_device(&d).await? {
        let m = format!("no ROM device {:?}", d.codename);
        return render_devices(&state, &s, StatusCode::NOT_FOUND, &m).await;
    }
    crate::rom::written(&state, &d.codename, "");
    audit(
        &state,
        &s,
        "rom.device.edit",
        &d.codename,
        &format!("{} / {}", d.name, d.oem),
    )
    .await?;
    Ok(see_other("/admin/rom"))
}

/// `POST /admin/rom/remove`: removes a device without builds.
pub async fn remove_device(
    State(state): State<AppState>,
    Extension(s): Extension<Session>,
    Form(f): Form<DeviceForm>,
) -> PageResult {
    let m = match state.catalogue.remove_rom_device(&f.codename).await? {
        RomDeviceRemoval::Removed => {
            crate::rom::written(&state, &f.codename, "");
            audit(&state, &s, "rom.device.remove", &f.codename, "").await?;
            return Ok(see_other("/admin/rom"));
        }
        RomDeviceRemoval::Missing => format!("no ROM device {:?}", f.codename),
        RomDeviceRemoval::HasBuilds => format!(
            "{:?} has builds: a device with builds stays (unpublish them to hide it from clients)",
            f.codename
        ),
    };
    render_devices(&state, &s, StatusCode::CONFLICT, &m).await
}

async fn render_builds(
    state: &AppState,
    s: &Session,
    codename: &str,
    status: StatusCode,
    message: &str,
    build_json: Option<String>,
) -> PageResult {
    let device = state
        .catalogue
        .rom_device(codename)
        .await?
        .ok_or_else(|| AdminError::not_found(format!("no ROM device {codename:?}")))?;
    let mut channels: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for b in state.catalogue.rom_builds_all(codename).await? {
        let n = b.build;
        channels.entry(n.channel.clone()).or_default().push(json!({
            "incremental": n.incremental, "version": n.version, "timestamp": n.timestamp,
            "filename": n.filename, "size": n.size, "published": n.published,
            "changelog": n.changelog,
        }));
    }
    let incrementals: Vec<Value> = state
        .catalogue
        .rom_incrementals(codename)
        .await?
        .iter()
        .map(|i| {
            let n = &i.incremental;
            json!({"source_incremental": n.source_incremental, "target_incremental": n.target_incremental,
                   "filename": n.filename, "size": n.size})
        })
        .collect();
    let build_json = build_json.unwrap_or_else(|| {
        json!({"device": device.codename, "channel": "nightly", "changelog": ""}).to_string()
    });
    let mut r = templates::page(
        s,
        "rom_builds.html",
        "rom",
        minijinja::context! {
            device => device, channels => channels, incrementals => incrementals,
            message => message, build_json => build_json,
        },
    )?;
    *r.status_mut() = status;
    Ok(r)
}

/// `GET /admin/rom/{device}`.
pub async fn builds(
    State(state): State<AppState>,
    Extension(s): Extension<Session>,
    Path(device): Path<String>,
) -> PageResult {
    render_builds(&state, &s, &device, StatusCode::OK, "", None).await
}

/// `?device=` of the upload form (where to come back to).
#[derive(Deserialize)]
pub struct UploadQuery {
    #[serde(default)]
    device: String,
}

/// `POST /admin/rom/upload?csrf=…&device=…`: the API's receive path
/// (`build` JSON part + `file`), acting as an admin key `user:NAME`.
pub async fn upload(
    State(state): State<AppState>,
    Extension(s): Extension<Session>,
    Query(q): Query<UploadQuery>,
    req: Request,
) -> PageResult {
    check_codename(&q.device).map_err(crate::rom::bad_field)?;
    match publish_as(&state, &as_key(&s), req).await {
        Ok((_, body)) => {
            let device = body["device"].as_str().unwrap_or(&q.device).to_owned();
            Ok(see_other(&format!("/admin/rom/{device}")))
        }
        Err(e) => render_builds(&state, &s, &q.device, e.status, &e.message, None).await,
    }
}

/// The publish/unpublish form.
#[derive(Deserialize)]
pub struct PublishedForm {
    #[serde(default)]
    device: String,
    #[serde(default)]
    incremental: String,
    #[serde(default)]
    published: String,
}

/// `POST /admin/rom/published`: offers a build to clients or withdraws it.
pub async fn set_published(
    State(state): State<AppState>,
    Extension(s): Extension<Session>,
    Form(f): Form<PublishedForm>,
) -> PageResult {
    check_codename(&f.device).map_err(crate::rom::bad_field)?;
    check_incremental("incremental", &f.incremental).map_err(crate::rom::bad_field)?;
    let published = match f.published.as_str() {
        "true" => true,
        "false" => false,
        _ => return Err(AdminError::bad("published: true or false")),
    };
    if !state
        .catalogue
        .set_rom_published(&f.device, &f.incremental, published)
        .await?
    {
        return Err(AdminError::not_found(format!(
            "no build {} of {}",
            f.incremental, f.device
        )));
    }
    crate::rom::written(&state, &f.device, "");
    let action = if published {
        "rom.published"
    } else {
        "rom.unpublished"
    };
    audit(
        &state,
        &s,
        action,
        &format!("{}/{}", f.device, f.incremental),
        "",
    )
    .await?;
    Ok(see_other(&format!("/admin/rom/{}", f.device)))
}

/// The changelog form.
#[derive(Deserialize)]
pub struct ChangelogForm {
    #[serde(default)]
    device: String,
    #[serde(default)]
    incremental: String,
    #[serde(default)]
    changelog: String,
}

/// `POST /admin/rom/changelog`: replaces a full build's changelog.
pub async fn set_changelog(
    State(state): State<AppState>,
    Extension(s): Extension<Session>,
    Form(f): Form<ChangelogForm>,
) -> PageResult {
    check_codename(&f.device).map_err(crate::rom::bad_field)?;
    check_incremental("incremental", &f.incremental).map_err(crate::rom::bad_field)?;
    if let Err(e) = check_text("changelog", &f.changelog, MAX_CHANGELOG) {
        return render_builds(&state, &s, &f.device, e.status, &e.message, None).await;
    }
    if !state
        .catalogue
        .set_rom_changelog(&f.device, &f.incremental, &f.changelog)
        .await?
    {
        return Err(AdminError::not_found(format!(
            "no build {} of {}",
            f.incremental, f.device
        )));
    }
    crate::rom::written(&state, &f.device, "");
    let target = format!("{}/{}", f.device, f.incremental);
    audit(
        &state,
        &s,
        "rom.changelog",
        &target,
        &format!("{} bytes", f.changelog.len()),
    )
    .await?;
    Ok(see_other(&format!("/admin/rom/{}", f.device)))
}

/// `GET /admin/rom/reports`: the newest client reports.
pub async fn reports(
    State(state): State<AppState>,
    Extension(s): Extension<Session>,
) -> PageResult {
    let reports: Vec<Value> = state
        .catalogue
        .rom_reports(500)
        .await?
        .into_iter()
        .map(|(id, fprint, fcontent, at)| json!({"id": id, "fprint": fprint, "fcontent": fcontent, "at": at}))
        .collect();
    templates::page(
        &s,
        "rom_reports.html",
        "rom",
        minijinja::context! { reports => reports },
    )
}
