//! Publishing ROM builds: `POST /api/v1/builds` (multipart: `build`, a JSON
//! object, and `file`, the OTA package), `PUT
//! /api/v1/builds/<device>/<incremental>/published`, and the client reports
//! (`GET /api/v1/reports`, admin).
//!
//! The upload goes through [`upload::receive_as`], the receive path of
//! package uploads (bounded parser, size limit, stall timeout, scopes
//! checked as soon as the `build` part arrives). Nothing the publisher
//! says about the build is trusted when the package says it too: device,
//! incrementals, timestamp, API level, version and release type are read
//! from `META-INF/com/android/metadata` and the carried `system/build.prop`
//! ([`ota_android::package_info`]) before the file is committed; a `build`
//! field that contradicts them is refused, and nothing is stored.
//!
//! A key may publish for device D with scope `admin`, or `publish:PATTERN`
//! where PATTERN matches `rom.D` (`publish:rom.*` for every device).

use super::{bad_field, download_url, RESERVED_CODENAMES};
use crate::error::{ApiError, JsonError};
use crate::state::AppState;
use crate::upload::{self, io_error, UploadError};
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use md5::Digest;
use ota_android::package_info::{PackageInfo, PackageKind};
use ota_store::{
    check_channel, check_codename, check_filename, check_incremental, check_rom_version,
    BlobWriter, Committed, KeyAuth, NewRomBuild, NewRomIncremental, RomDevice, RomPublish,
};
use serde_json::{json, Value};
use std::collections::HashMap;

/// Longest changelog, in bytes (the `build` part as a whole is bounded too).
pub const MAX_CHANGELOG: usize = 60 * 1024;

/// The `build` part: what the publisher says. Only `device` and `channel`
/// are required; the rest, when given, must agree with the package.
#[derive(Debug, Default, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BuildForm {
    /// Device codename.
    pub device: String,
    /// Channel (`nightly`, `snapshot`, `RC`, `stable`, …).
    pub channel: String,
    /// Plain-text changelog (full builds).
    #[serde(default)]
    pub changelog: Option<String>,
    /// API level, when the package carries none.
    #[serde(default)]
    pub api_level: Option<i64>,
    /// ROM version, when the package carries none.
    #[serde(default)]
    pub version: Option<String>,
    /// LineageOS release type [default: the package's, else the channel].
    #[serde(default)]
    pub romtype: Option<String>,
    /// Expected target incremental.
    #[serde(default)]
    pub incremental: Option<String>,
    /// Expected source incremental (incremental packages).
    #[serde(default)]
    pub source_incremental: Option<String>,
    /// Expected build timestamp.
    #[serde(default)]
    pub timestamp: Option<i64>,
    /// Offer to clients at once [default: true].
    #[serde(default)]
    pub published: Option<bool>,
}

/// The name scopes are matched against for a device's builds.
pub fn scope_subject(device: &str) -> String {
    format!("rom.{device}")
}

/// Refuses codenames the router could never reach.
pub fn check_publishable_codename(device: &str) -> Result<(), ApiError> {
    check_codename(device).map_err(bad_field)?;
    if RESERVED_CODENAMES
        .iter()
        .any(|w| w.eq_ignore_ascii_case(device))
    {
        return Err(ApiError::bad_request(format!(
            "device codename {device:?} is reserved: /api/v1/{device}/… is another API of this \
             server, so LineageOS clients could never reach its builds"
        )));
    }
    Ok(())
}

/// Parses and checks the `build` part, and the key's right to publish it.
fn accept_build(bytes: &[u8], key: &KeyAuth, state: &AppState) -> Result<BuildForm, ApiError> {
    let form: BuildForm = serde_json::from_slice(bytes)
        .map_err(|e| ApiError::bad_request(format!("form field 'build': {e}")))?;
    check_publishable_codename(&form.device)?;
    check_channel("channel", &form.channel).map_err(bad_field)?;
    if let Some(r) = &form.romtype {
        check_channel("romtype", r).map_err(bad_field)?;
    }
    if let Some(v) = &form.version {
        check_rom_version(v).map_err(bad_field)?;
    }
    for (what, v) in [
        ("incremental", &form.incremental),
        ("source_incremental", &form.source_incremental),
    ] {
        if let Some(v) = v {
            check_incremental(what, v).map_err(bad_field)?;
        }
    }
    if form.api_level.is_some_and(|a| !(0..=10_000).contains(&a)) {
        return Err(ApiError::bad_request("api_level must be 0 to 10000"));
    }
    if let Some(c) = &form.changelog {
        if c.len() > MAX_CHANGELOG || c.contains('\0') {
            return Err(ApiError::bad_request(format!(
                "the changelog must be text of at most {MAX_CHANGELOG} bytes"
            )));
        }
    }
    state.require_publish(key, &scope_subject(&form.device))?;
    Ok(form)
}

/// What the package says, and its MD5.
pub(crate) async fn inspect(file: &mut BlobWriter) -> Result<(PackageInfo, String), ApiError> {
    let mut reader = file
        .reopen()
        .map_err(|e| io_error("reading an upload back", e))?;
    tokio::task::spawn_blocking(move || -> Result<_, ApiError> {
        use std::io::{Read, Seek};
        let mut md5 = md5::Md5::new();
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = reader
                .read(&mut buf)
                .map_err(|e| io_error("reading an upload back", e))?;
            if n == 0 {
                break;
            }
            md5.update(&buf[..n]);
        }
        reader
            .rewind()
            .map_err(|e| io_error("reading an upload back", e))?;
        let info = PackageInfo::from_reader(std::io::BufReader::new(reader), "the uploaded file")
            .map_err(|e| ApiError::bad_request(format!("not a usable OTA package: {e}")))?;
        Ok((info, hex::encode(md5.finalize())))
    })
    .await
    .map_err(|e| ApiError::internal("reading an upload back", e))?
}

/// A `build` field that contradicts the package.
pub(crate) fn contradiction(field: &str, said: &str, package: &str) -> ApiError {
    ApiError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "contradicts_package",
        format!(
            "{field} {said:?} contradicts the package, which says {package:?}; nothing was stored"
        ),
    )
}

/// Checks the publisher's fields against the package (the CLI runs it
/// too, before sending anything).
pub fn reconcile(form: &BuildForm, info: &PackageInfo) -> Result<(), ApiError> {
    if form.device != info.device {
        return Err(contradiction("device", &form.device, &info.device));
    }
    check_incremental("the package's incremental", &info.incremental).map_err(bad_field)?;
    if let Some(src) = info.source_incremental() {
        check_incremental("the package's source incremental", src).map_err(bad_field)?;
    }
    let pairs = [
        (
            "incremental",
            form.incremental.as_deref(),
            Some(info.incremental.as_str()),
        ),
        (
            "source_incremental",
            form.source_incremental.as_deref(),
            Some(
                info.source_incremental()
                    .unwrap_or("(none: a full package)"),
            ),
        ),
        ("version", form.version.as_deref(), info.version.as_deref()),
    ];
    for (field, said, package) in pairs {
        if let (Some(s), Some(p)) = (said, package) {
            if s != p {
                return Err(contradiction(field, s, p));
            }
        }
    }
    if let (Some(s), Some(p)) = (&form.romtype, &info.release_type) {
        if !s.eq_ignore_ascii_case(p) {
            return Err(contradiction("romtype", s, p));
        }
    }
    if let (Some(s), Some(p)) = (form.api_level, info.api_level) {
        if s != p {
            return Err(contradiction("api_level", &s.to_string(), &p.to_string()));
        }
    }
    if let Some(t) = form.timestamp.filter(|t| *t != info.timestamp) {
        return Err(contradiction(
            "timestamp",
            &t.to_string(),
            &info.timestamp.to_string(),
        ));
    }
    Ok(())
}

/// Makes the upload durable.
pub(crate) async fn commit(state: &AppState, file: BlobWriter) -> Result<Committed, ApiError> {
    file.commit(&state.blobs, None)
        .await
        .map_err(|e| crate::upload::commit_error("storing an upload", e))
}

/// Removes a blob this upload created when no row took it.
pub(crate) async fn forget(state: &AppState, committed: &Committed) -> Result<(), ApiError> {
    if committed.created && state.catalogue.references(committed.hash.as_str()).await? == 0 {
        let _ = state.blobs.remove(&committed.hash).await;
    }
    Ok(())
}

pub(crate) fn conflict(message: String) -> ApiError {
    ApiError::new(StatusCode::CONFLICT, "conflict", message)
}

/// A received and checked upload.
pub(crate) struct Received {
    pub(crate) form: BuildForm,
    pub(crate) info: PackageInfo,
    pub(crate) md5: String,
    pub(crate) filename: String,
    pub(crate) file: BlobWriter,
    pub(crate) by: String,
}

/// Receives and inspects the upload of an authenticated publisher.
async fn receive(state: &AppState, key: &KeyAuth, req: Request) -> Result<Received, ApiError> {
    let check = |bytes: &[u8], key: &KeyAuth| accept_build(bytes, key, state);
    let form = match upload::receive_as(state, key, req, "build", &check).await {
        Ok(r) => r,
        Err(UploadError::Api(e)) => return Err(e),
        Err(UploadError::HashMismatch(m)) => return Err(ApiError::bad_request(m)),
    };
    let build = form
        .meta
        .ok_or_else(|| ApiError::bad_request("missing form field 'build' (a JSON object)"))?;
    let mut file = form
        .file
        .ok_or_else(|| ApiError::bad_request("missing form field 'file' (the OTA package)"))?;
    let filename = form.file_name.ok_or_else(|| {
        ApiError::bad_request("the 'file' part needs a filename (what clients save it as)")
    })?;
    check_filename(&filename).map_err(bad_field)?;
    let (info, md5) = inspect(&mut file).await?;
    reconcile(&build, &info)?;
    Ok(Received {
        form: build,
        info,
        md5,
        filename,
        file,
        by: key.name.clone(),
    })
}

/// Records a full build.
pub(crate) async fn store_full(state: &AppState, r: Received) -> Result<(bool, Value), ApiError> {
    let info = &r.info;
    let version = info
        .version
        .clone()
        .or(r.form.version.clone())
        .ok_or_else(|| {
            ApiError::bad_request(
            "the package names no ROM version (ro.lineage.build.version, ro.build.version.release \
             or a fingerprint); send \"version\"",
        )
        })?;
    check_rom_version(&version).map_err(bad_field)?;
    let romtype = info
        .release_type
        .clone()
        .or(r.form.romtype.clone())
        .unwrap_or_else(|| r.form.channel.clone())
        .to_ascii_lowercase();
    check_channel("romtype", &romtype).map_err(bad_field)?;
    let size = r.file.len();
    let _guard = state.write_lock.lock().await;
    let committed = commit(state, r.file).await?;
    let new = NewRomBuild {
        device: RomDevice {
            codename: info.device.clone(),
            name: info.model.clone().unwrap_or_else(|| info.device.clone()),
            oem: info.brand.clone().unwrap_or_default(),
        },
        channel: r.form.channel.clone(),
        incremental: info.incremental.clone(),
        timestamp: info.timestamp,
        api_level: info.api_level.or(r.form.api_level).unwrap_or(0),
        version,
        romtype,
        filename: r.filename.clone(),
        size,
        md5: r.md5.clone(),
        sha256: committed.hash.to_string(),
        changelog: r.form.changelog.clone().unwrap_or_default(),
        published: r.form.published.unwrap_or(true),
    };
    let (created, b) = match state.catalogue.publish_rom_build(&new).await? {
        RomPublish::Inserted(b) => (true, b),
        RomPublish::Identical(b) => (false, b),
        RomPublish::Conflict(m) => {
            forget(state, &committed).await?;
            return Err(conflict(m));
        }
        RomPublish::UnknownTarget => return Err(ApiError::internal("publishing", "no target")),
    };
    let n = &b.build;
    if created {
        super::written(state, &n.device.codename, &n.channel);
    }
    tracing::info!(
        device = n.device.codename,
        incremental = n.incremental,
        by = r.by,
        "ROM build published"
    );
    Ok((
        created,
        json!({
            "kind": "full", "device": n.device.codename, "channel": n.channel,
            "incremental": n.incremental, "timestamp": n.timestamp, "api_level": n.api_level,
            "version": n.version, "romtype": n.romtype, "filename": n.filename, "size": n.size,
            "md5sum": n.md5, "sha256": n.sha256, "published": n.published,
        }),
    ))
}

/// Records an incremental build; its target must be published first.
pub(crate) async fn store_incremental(
    state: &AppState,
    r: Received,
) -> Result<(bool, Value), ApiError> {
    let info = &r.info;
    let source = info.source_incremental().unwrap_or_default().to_owned();
    let target = state
        .catalogue
        .rom_build(&info.device, &info.incremental)
        .await?
        .ok_or_else(|| {
            conflict(format!(
                "publish the full build {} of {} before incrementals to it",
                info.incremental, info.device
            ))
        })?;
    let t = &target.build;
    if t.channel != r.form.channel {
        return Err(contradiction("channel", &r.form.channel, &t.channel));
    }
    if t.timestamp != info.timestamp {
        return Err(contradiction(
            "the package's target timestamp",
            &info.timestamp.to_string(),
            &format!("{} (published build {})", t.timestamp, t.incremental),
        ));
    }
    let size = r.file.len();
    let _guard = state.write_lock.lock().await;
    let committed = commit(state, r.file).await?;
    let new = NewRomIncremental {
        device: info.device.clone(),
        source_incremental: source,
        target_incremental: info.incremental.clone(),
        filename: r.filename.clone(),
        size,
        md5: r.md5.clone(),
        sha256: committed.hash.to_string(),
    };
    let (created, i) = match state.catalogue.publish_rom_incremental(&new).await? {
        RomPublish::Inserted(i) => (true, i),
        RomPublish::Identical(i) => (false, i),
        RomPublish::Conflict(m) => {
            forget(state, &committed).await?;
            return Err(conflict(m));
        }
        RomPublish::UnknownTarget => {
            forget(state, &committed).await?;
            return Err(conflict(format!(
                "the build {} of {} was removed meanwhile",
                new.target_incremental, new.device
            )));
        }
    };
    let n = &i.incremental;
    if created {
        super::written(state, &n.device, &i.channel);
    }
    tracing::info!(
        device = n.device,
        from = n.source_incremental,
        to = n.target_incremental,
        by = r.by,
        "ROM incremental published"
    );
    Ok((
        created,
        json!({
            "kind": "incremental", "device": n.device, "channel": i.channel,
            "source_incremental": n.source_incremental, "incremental": n.target_incremental,
            "filename": n.filename, "size": n.size, "md5sum": n.md5, "sha256": n.sha256,
        }),
    ))
}

/// Receives, checks and records one build on behalf of `key` (the API's
/// key, or the web admin's session acting as `user:NAME`); answers whether
/// it was new, and its description.
pub async fn publish_as(
    state: &AppState,
    key: &KeyAuth,
    req: Request,
) -> Result<(bool, Value), ApiError> {
    let received = receive(state, key, req).await?;
    let (created, body) = match received.info.kind {
        PackageKind::Full => store_full(state, received).await?,
        PackageKind::Incremental { .. } => store_incremental(state, received).await?,
    };
    if created {
        let target = format!(
            "{}/{}",
            body["device"].as_str().unwrap_or(""),
            body["incremental"].as_str().unwrap_or("")
        );
        let detail = body["filename"].as_str().unwrap_or("");
        state
            .catalogue
            .audit_or_warn(
                &crate::admin::actor(&key.name),
                "rom.publish",
                &target,
                detail,
            )
            .await;
    }
    Ok((created, body))
}

/// `POST /api/v1/builds`.
#[utoipa::path(
    post,
    path = "/api/v1/builds",
    tag = "ROM publishing",
    request_body(content_type = "multipart/form-data", description = "Parts `build` (crate::rom::publish::BuildForm as JSON) and `file` (the OTA package)"),
    responses((status = 201, description = "Published", content_type = "application/json"), (status = 200, description = "Already published identically", content_type = "application/json"), (status = 400, description = "Malformed form or package", body = crate::openapi::ErrorBody, content_type = "application/json"), (status = 403, description = "Scopes do not cover the device", body = crate::openapi::ErrorBody, content_type = "application/json"), (status = 409, description = "Conflicts with a published build", body = crate::openapi::ErrorBody, content_type = "application/json"), (status = 413, description = "Over the upload limit", body = crate::openapi::ErrorBody, content_type = "application/json"), (status = 422, description = "A field contradicts the package", body = crate::openapi::ErrorBody, content_type = "application/json")),
    security(("bearer" = []))
)]
pub async fn publish(State(state): State<AppState>, req: Request) -> Response {
    let headers = req.headers().clone();
    let result = async {
        let key = state.authenticate(&headers).await?;
        publish_as(&state, &key, req).await
    }
    .await;
    match result {
        Ok((created, mut body)) => {
            let base = state.download_base.for_request(&headers);
            if let (Some(Value::String(sha)), Some(Value::String(name))) =
                (body.get("sha256").cloned(), body.get("filename").cloned())
            {
                body["url"] = Value::String(download_url(&base, &sha, &name));
            }
            body["created"] = Value::Bool(created);
            let status = if created {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            };
            (status, axum::Json(body)).into_response()
        }
        Err(e) => e.into_json(),
    }
}

/// `PUT /api/v1/builds/<device>/<incremental>/published` with body `true`
/// or `false`: offer a build to clients, or withdraw it.
#[utoipa::path(
    put,
    path = "/api/v1/builds/{device}/{incremental}/published",
    tag = "ROM publishing",
    params(("device" = String, Path, description = "Codename"), ("incremental" = String, Path, description = "Incremental")),
    request_body(content = bool, content_type = "application/json"),
    responses((status = 200, description = "Set", content_type = "application/json"), (status = 404, description = "No such build", body = crate::openapi::ErrorBody, content_type = "application/json")),
    security(("bearer" = []))
)]
pub async fn set_published(
    State(state): State<AppState>,
    Path((device, incremental)): Path<(String, String)>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, JsonError> {
    let key = state.authenticate(&headers).await?;
    check_codename(&device).map_err(bad_field)?;
    check_incremental("incremental", &incremental).map_err(bad_field)?;
    state.require_publish(&key, &scope_subject(&device))?;
    let published = match serde_json::from_slice::<Value>(&body) {
        Ok(Value::Bool(b)) => b,
        _ => return Err(ApiError::bad_request("expected a body of true or false").into()),
    };
    if !state
        .catalogue
        .set_rom_published(&device, &incremental, published)
        .await?
    {
        return Err(ApiError::not_found(format!("no build {incremental} of {device}")).into());
    }
    super::written(&state, &device, "");
    let action = if published {
        "rom.published"
    } else {
        "rom.unpublished"
    };
    state
        .catalogue
        .audit_or_warn(
            &crate::admin::actor(&key.name),
            action,
            &format!("{device}/{incremental}"),
            "",
        )
        .await;
    tracing::info!(
        device,
        incremental,
        published,
        by = key.name,
        "ROM build state set"
    );
    Ok(
        axum::Json(json!({"device": device, "incremental": incremental, "published": published}))
            .into_response(),
    )
}

/// `GET /api/v1/reports[?limit=N]` (admin): the newest client reports.
#[utoipa::path(
    get,
    path = "/api/v1/reports",
    tag = "ROM publishing",
    params(("limit" = Option<i64>, Query, description = "1 to 1000 [default: 100]")),
    responses((status = 200, description = "The newest client reports", content_type = "application/json"), (status = 403, description = "Needs the admin scope", body = crate::openapi::ErrorBody, content_type = "application/json")),
    security(("bearer" = []))
)]
pub async fn reports(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, JsonError> {
    let key = state.authenticate(&headers).await?;
    if !key.scopes.is_admin() {
        return Err(ApiError::forbidden("reading client reports needs an admin key").into());
    }
    let limit = match query.get("limit") {
        None => 100,
        Some(l) => l
            .parse::<i64>()
            .ok()
            .filter(|l| (1..=1000).contains(l))
            .ok_or_else(|| ApiError::bad_request("limit must be 1 to 1000"))?,
    };
    let list: Vec<Value> = state
        .catalogue
        .rom_reports(limit)
        .await?
        .into_iter()
        .map(|(id, fprint, fcontent, at)| {
            json!({"id": id, "fprint": fprint, "fcontent": fcontent, "received_at": at})
        })
        .collect();
    Ok(axum::Json(json!({ "reports": list })).into_response())
}
