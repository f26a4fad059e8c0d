//! `POST /api/v1/builds/target-files`: a build's target-files, uploaded
//! once; the server's jobs make its full package and its incrementals.
//!
//! Multipart like `POST /api/v1/builds`: `build`, a JSON object (device,
//! channel, and optionally changelog, published, sources, incremental,
//! timestamp), then `file`, the target-files zip. Device, incremental and
//! timestamp are read from the zip's `SYSTEM/build.prop`; a `build` field
//! that contradicts them is refused and nothing is stored. The blob is
//! stored, then its row, then the `rom-full` job is queued: a crash in
//! between leaves a row without a job, and uploading the same file again
//! queues it ([`crate::rom::build_jobs`] queues the incrementals once the
//! full build is published).

use super::bad_field;
use super::build_jobs;
use super::publish::{check_publishable_codename, conflict, contradiction, forget, scope_subject};
use super::publish::{commit, MAX_CHANGELOG};
use crate::error::ApiError;
use crate::state::AppState;
use crate::upload::{self, io_error, UploadError};
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use ota_android::props::Props;
use ota_store::{
    check_channel, check_incremental, BlobWriter, KeyAuth, NewRomTargetFiles, RomPublish,
};
use serde_json::json;
use std::io::Read;

/// Incrementals built for a new build when the publisher does not say.
pub const DEFAULT_SOURCES: i64 = 3;

/// Most incrementals a build may ask for.
pub const MAX_SOURCES: i64 = 20;

/// Largest `SYSTEM/build.prop` read from an upload.
const MAX_BUILD_PROP: u64 = 1 << 20;

/// The `build` part of a target-files upload.
#[derive(Debug, Default, serde::Deserialize, serde::Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TargetFilesForm {
    /// Device codename.
    pub device: String,
    /// Channel.
    pub channel: String,
    /// Changelog of the full build.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub changelog: Option<String>,
    /// Offer the full build to clients once built [default: true].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub published: Option<bool>,
    /// Incrementals from this many earlier builds [default: 3].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sources: Option<i64>,
    /// Expected `ro.build.version.incremental`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incremental: Option<String>,
    /// Expected `ro.build.date.utc`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<i64>,
}

/// What a target-files zip says about its build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetFilesInfo {
    /// `ro.product.device`.
    pub device: String,
    /// `ro.build.version.incremental`.
    pub incremental: String,
    /// `ro.build.date.utc`.
    pub timestamp: i64,
}

impl TargetFilesInfo {
    /// Reads the build from a target-files zip: it must carry
    /// `META/misc_info.txt` and a `SYSTEM/build.prop` naming the device,
    /// incremental and build date.
    pub fn from_reader<R: Read + std::io::Seek>(reader: R) -> Result<Self, String> {
        let mut zip =
            zip::ZipArchive::new(reader).map_err(|e| format!("not a target-files zip: {e}"))?;
        if zip.index_for_name("META/misc_info.txt").is_none() {
            return Err("not a target-files zip: META/misc_info.txt is missing".into());
        }
        let mut entry = zip
            .by_name("SYSTEM/build.prop")
            .map_err(|_| "not a target-files zip: SYSTEM/build.prop is missing".to_string())?;
        let mut text = String::new();
        (&mut entry)
            .take(MAX_BUILD_PROP)
            .read_to_string(&mut text)
            .map_err(|e| format!("reading SYSTEM/build.prop: {e}"))?;
        let props = Props::parse(&text, "SYSTEM/build.prop").map_err(|e| e.to_string())?;
        let get = |key: &str| {
            props
                .get(key)
                .filter(|v| !v.is_empty())
                .map(str::to_owned)
                .ok_or_else(|| format!("SYSTEM/build.prop has no {key}"))
        };
        let timestamp = get("ro.build.date.utc")?
            .parse::<i64>()
            .map_err(|_| "SYSTEM/build.prop: ro.build.date.utc is not a number".to_string())?;
        Ok(TargetFilesInfo {
            device: get("ro.product.device")?,
            incremental: get("ro.build.version.incremental")?,
            timestamp,
        })
    }

    /// Refuses a form that contradicts the zip.
    pub fn reconcile(&self, form: &TargetFilesForm) -> Result<(), ApiError> {
        if form.device != self.device {
            return Err(contradiction("device", &form.device, &self.device));
        }
        if let Some(i) = form
            .incremental
            .as_deref()
            .filter(|i| *i != self.incremental)
        {
            return Err(contradiction("incremental", i, &self.incremental));
        }
        if let Some(t) = form.timestamp.filter(|t| *t != self.timestamp) {
            return Err(contradiction(
                "timestamp",
                &t.to_string(),
                &self.timestamp.to_string(),
            ));
        }
        check_incremental("the build's incremental", &self.incremental).map_err(bad_field)
    }
}

/// Parses and checks the `build` part, and the key's right to publish it.
fn accept_form(bytes: &[u8], key: &KeyAuth, state: &AppState) -> Result<TargetFilesForm, ApiError> {
    let form: TargetFilesForm = serde_json::from_slice(bytes)
        .map_err(|e| ApiError::bad_request(format!("form field 'build': {e}")))?;
    check_publishable_codename(&form.device)?;
    check_channel("channel", &form.channel).map_err(bad_field)?;
    if let Some(i) = &form.incremental {
        check_incremental("incremental", i).map_err(bad_field)?;
    }
    if form
        .sources
        .is_some_and(|k| !(0..=MAX_SOURCES).contains(&k))
    {
        return Err(ApiError::bad_request(format!(
            "sources must be 0 to {MAX_SOURCES}"
        )));
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

/// Reads the build out of the uploaded zip.
async fn inspect(file: &mut BlobWriter) -> Result<TargetFilesInfo, ApiError> {
    let reader = file
        .reopen()
        .map_err(|e| io_error("reading an upload back", e))?;
    tokio::task::spawn_blocking(move || {
        TargetFilesInfo::from_reader(std::io::BufReader::new(reader))
    })
    .await
    .map_err(|e| ApiError::internal("reading an upload back", e))?
    .map_err(ApiError::bad_request)
}

/// `POST /api/v1/builds/target-files`.
#[utoipa::path(
    post,
    path = "/api/v1/builds/target-files",
    tag = "ROM publishing",
    request_body(content_type = "multipart/form-data", description = "Parts `build` (TargetFilesForm as JSON) and `file` (target-files zip)"),
    responses((status = 202, description = "Stored; the full build is queued", content_type = "application/json"), (status = 200, description = "Already stored", content_type = "application/json"), (status = 400, description = "Not target-files, or a malformed form", body = crate::openapi::ErrorBody, content_type = "application/json"), (status = 409, description = "Conflicts with a stored build", body = crate::openapi::ErrorBody, content_type = "application/json"), (status = 422, description = "A field contradicts the target-files", body = crate::openapi::ErrorBody, content_type = "application/json")),
    security(("bearer" = []))
)]
pub async fn publish(State(state): State<AppState>, req: Request) -> Response {
    match receive_and_queue(&state, req).await {
        Ok((status, body)) => (status, axum::Json(body)).into_response(),
        Err(e) => e.into_json(),
    }
}

async fn receive_and_queue(
    state: &AppState,
    req: Request,
) -> Result<(StatusCode, serde_json::Value), ApiError> {
    let check = |bytes: &[u8], key: &KeyAuth| accept_form(bytes, key, state);
    let (key, form) = match upload::receive_with(state, req, "build", &check).await {
        Ok(r) => r,
        Err(UploadError::Api(e)) => return Err(e),
        Err(UploadError::HashMismatch(m)) => return Err(ApiError::bad_request(m)),
    };
    let build = form
        .meta
        .ok_or_else(|| ApiError::bad_request("missing form field 'build' (a JSON object)"))?;
    let mut file = form
        .file
        .ok_or_else(|| ApiError::bad_request("missing form field 'file' (the target-files zip)"))?;
    let info = inspect(&mut file).await?;
    info.reconcile(&build)?;
    let existing = state
        .catalogue
        .rom_build(&info.device, &info.incremental)
        .await?;
    if existing.is_some()
        && state
            .catalogue
            .rom_target_files(&info.device, &info.incremental)
            .await?
            .is_none()
    {
        // A package upload holds this build: a job could only conflict.
        return Err(conflict(format!(
            "build {} of {} is already published from an uploaded package; nothing was stored",
            info.incremental, info.device
        )));
    }
    let size = file.len();
    let _guard = state.write_lock.lock().await;
    let committed = commit(state, file).await?;
    let new = NewRomTargetFiles {
        device: info.device.clone(),
        channel: build.channel.clone(),
        incremental: info.incremental.clone(),
        timestamp: info.timestamp,
        sha256: committed.hash.to_string(),
        size,
        changelog: build.changelog.clone().unwrap_or_default(),
        published: build.published.unwrap_or(true),
        sources: build.sources.unwrap_or(DEFAULT_SOURCES),
        uploaded_by: key.name.clone(),
    };
    let (created, stored) = match state.catalogue.add_rom_target_files(&new).await? {
        RomPublish::Inserted(t) => (true, t),
        RomPublish::Identical(t) => (false, t),
        RomPublish::Conflict(m) => {
            forget(state, &committed).await?;
            return Err(conflict(m));
        }
        RomPublish::UnknownTarget => {
            return Err(ApiError::internal("storing target-files", "no target"))
        }
    };
    drop(_guard);
    // The full build is (re)queued unless it exists: a re-upload after a
    // crash or a failed job starts it again.
    let queued = if existing.is_none() {
        build_jobs::queue_full(state, &stored).await?
    } else {
        0
    };
    tracing::info!(
        device = info.device,
        incremental = info.incremental,
        by = key.name,
        queued,
        "ROM target-files stored"
    );
    if created {
        let target = format!("{}/{}", info.device, info.incremental);
        let actor = crate::admin::actor(&key.name);
        state
            .catalogue
            .audit_or_warn(&actor, "rom.target-files", &target, &stored.new.sha256)
            .await;
    }
    let status = if created {
        StatusCode::ACCEPTED
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        json!({
            "kind": "target-files", "device": info.device, "channel": stored.new.channel,
            "incremental": info.incremental, "timestamp": info.timestamp,
            "sha256": stored.new.sha256, "size": stored.new.size,
            "sources": stored.new.sources, "created": created, "jobs_queued": queued,
        }),
    ))
}
