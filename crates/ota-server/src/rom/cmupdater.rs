//! The CMUpdater API, as the stock app (CyanogenMod 11–14) reads it.
//!
//! - `POST /api` `{"method":"get_all_builds","params":{"device","channels",
//!   "source_incremental"}}` → `{"id":null,"result":[{url, timestamp,
//!   md5sum, filename, channel, changes, api_level, incremental}],
//!   "error":null}`: every published build of those channels newer than the
//!   source build, newest first. Refusals keep the shape, with `result:
//!   null` and the reason in `error` (400).
//! - `POST /api/v1/build/get_delta` `{"source_incremental",
//!   "target_incremental"}` → `{date_created_unix, filename, download_url,
//!   md5sum, incremental}`; when there is none, 200 with
//!   `{"errors":[{"message":…}]}` so the app falls back to the full build
//!   (an HTTP error would only be logged). The app sends no `device`; one,
//!   when sent, narrows the lookup.
//! - `GET /api/changelog/<device>/<incremental>.txt`: the `changes` URL,
//!   plain text in the form the app renders (`=` lines open and close a
//!   header, `*` lines are bold, others are bullets).
//! - `POST /api/report`: form fields `fprint` and `fcontent`, stored.
//!
//! Bodies are parsed whatever their Content-Type: before CM11 the app sent
//! none that said JSON.

use super::download_url;
use crate::error::ApiError;
use crate::state::AppState;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use ota_store::{check_channel, check_codename, check_incremental, RomBuild};
use serde_json::{json, Map, Value};

/// Largest request body read (a real request is ~150 bytes).
const MAX_BODY: usize = 16 * 1024;
/// Most channels one request may ask for.
const MAX_CHANNELS: usize = 16;
/// Longest `fprint` or `fcontent` of a report, in characters.
pub const MAX_REPORT_FIELD: usize = 1000;

/// `{"id":null,"result":null,"error":MESSAGE}` with a status.
fn rpc_error(status: StatusCode, message: impl Into<String>) -> Response {
    let body = json!({"id": null, "result": null, "error": message.into()});
    (status, axum::Json(body)).into_response()
}

/// `{"errors":[{"message":MESSAGE}]}` with a status.
fn delta_error(status: StatusCode, message: impl Into<String>) -> Response {
    let body = json!({"errors": [{"message": message.into()}]});
    (status, axum::Json(body)).into_response()
}

/// Parses a JSON object body, whatever the Content-Type.
fn json_object(body: &[u8]) -> Result<Map<String, Value>, String> {
    if body.len() > MAX_BODY {
        return Err(format!("request body larger than {MAX_BODY} bytes"));
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err("the request body must be a JSON object".into()),
        Err(e) => Err(format!("malformed JSON: {e}")),
    }
}

/// A required string member.
fn string<'a>(m: &'a Map<String, Value>, key: &str) -> Result<&'a str, String> {
    match m.get(key) {
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(format!("{key} must be a string")),
        None => Err(format!("{key} is a required parameter!")),
    }
}

/// What a `get_all_builds` request asks for.
struct BuildsQuery {
    device: String,
    channels: Vec<String>,
    source_incremental: String,
}

fn parse_builds_query(body: &[u8]) -> Result<BuildsQuery, String> {
    let req = json_object(body)?;
    let method = match req.get("method") {
        Some(Value::String(m)) => m.as_str(),
        Some(_) => return Err("method must be a string".into()),
        None => return Err("method is a required parameter!".into()),
    };
    if method != "get_all_builds" {
        let shown: String = method.chars().take(64).collect();
        return Err(format!("{shown} is not a valid \"method\"!"));
    }
    let params = match req.get("params") {
        Some(Value::Object(p)) => p,
        Some(_) => return Err("params must be an object".into()),
        None => return Err("params is a required parameter!".into()),
    };
    let device = string(params, "device")?;
    check_codename(device).map_err(|e| e.to_string())?;
    let channels = match params.get("channels") {
        Some(Value::Array(list)) if !list.is_empty() && list.len() <= MAX_CHANNELS => list,
        Some(Value::Array(_)) => {
            return Err(format!("channels must list 1 to {MAX_CHANNELS} channels"))
        }
        Some(_) => return Err("channels must be an array of strings".into()),
        None => return Err("channels is a required parameter!".into()),
    };
    let mut names = Vec::with_capacity(channels.len());
    for c in channels {
        let Value::String(c) = c else {
            return Err("channels must be an array of strings".into());
        };
        check_channel("channel", c).map_err(|e| e.to_string())?;
        names.push(c.clone());
    }
    let source = string(params, "source_incremental")?;
    check_incremental("source_incremental", source).map_err(|e| e.to_string())?;
    Ok(BuildsQuery {
        device: device.to_owned(),
        channels: names,
        source_incremental: source.to_owned(),
    })
}

/// The changelog URL of a build.
fn changes_url(base: &str, b: &RomBuild) -> String {
    format!(
        "{base}/api/changelog/{}/{}.txt",
        b.build.device.codename, b.build.incremental
    )
}

/// One item of `result`, with exactly the keys and types the app reads
/// (`getLong("timestamp")`, `getInt("api_level")`, the rest strings).
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct CmBuild {
    /// Download URL of the full package.
    pub url: String,
    /// `ro.build.date.utc`.
    pub timestamp: i64,
    /// MD5 of the package, hex.
    pub md5sum: String,
    /// File name the app saves it as.
    pub filename: String,
    /// Channel.
    pub channel: String,
    /// URL of the plain-text changelog.
    pub changes: String,
    /// `ro.build.version.sdk`.
    pub api_level: i64,
    /// `ro.build.version.incremental`.
    pub incremental: String,
}

fn build_item(base: &str, b: &RomBuild) -> Value {
    let n = &b.build;
    let item = CmBuild {
        url: download_url(base, &n.sha256, &n.filename),
        timestamp: n.timestamp,
        md5sum: n.md5.clone(),
        filename: n.filename.clone(),
        channel: n.channel.clone(),
        changes: changes_url(base, b),
        api_level: n.api_level,
        incremental: n.incremental.clone(),
    };
    serde_json::to_value(item).unwrap_or(Value::Null)
}

/// `POST /api`.
#[utoipa::path(
    post,
    path = "/api",
    tag = "CMUpdater API",
    request_body(content = crate::openapi::CmUpdaterRequest, description = "Parsed whatever the Content-Type"),
    responses((status = 200, description = "`{\"id\":null,\"result\":[…],\"error\":null}`, newest first", body = crate::openapi::CmUpdaterAnswer, content_type = "application/json"))
)]
pub async fn get_all_builds(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let query = match parse_builds_query(&body) {
        Ok(q) => q,
        Err(message) => return rpc_error(StatusCode::BAD_REQUEST, message),
    };
    let key = format!(
        "cm\0{}\0{}\0{}",
        query.device,
        query.source_incremental,
        query.channels.join("\0")
    );
    let load =
        state
            .catalogue
            .rom_builds_newer(&query.device, &query.channels, &query.source_incremental);
    let base = state.download_base.for_request(&headers);
    let render = |base: &str, builds: &[RomBuild]| {
        let result: Vec<Value> = builds.iter().map(|b| build_item(base, b)).collect();
        json!({"id": null, "result": result, "error": null})
    };
    match super::cached_answer(&state, &key, &base, load, render).await {
        Ok(r) => r,
        Err(e) => {
            tracing::error!("listing ROM builds: {e}");
            rpc_error(StatusCode::INTERNAL_SERVER_ERROR, "Database error.")
        }
    }
}

/// `POST /api/v1/build/get_delta`.
#[utoipa::path(
    post,
    path = "/api/v1/build/get_delta",
    tag = "CMUpdater API",
    request_body(content = crate::openapi::GetDeltaRequest, description = "Parsed whatever the Content-Type; no device key"),
    responses((status = 200, description = "The incremental package, or `{\"errors\":[{\"message\":…}]}` when there is none", content_type = "application/json"))
)]
pub async fn get_delta(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    const REQUIRED: &str = "source_incremental and target_incremental are required parameters!";
    let req = match json_object(&body) {
        Ok(r) => r,
        Err(message) => return delta_error(StatusCode::BAD_REQUEST, message),
    };
    let (Ok(source), Ok(target)) = (
        string(&req, "source_incremental"),
        string(&req, "target_incremental"),
    ) else {
        return delta_error(StatusCode::BAD_REQUEST, REQUIRED);
    };
    for (what, v) in [
        ("source_incremental", source),
        ("target_incremental", target),
    ] {
        if let Err(e) = check_incremental(what, v) {
            return delta_error(StatusCode::BAD_REQUEST, e.to_string());
        }
    }
    // Older servers required `device`; the stock app never sends it, but
    // when a client does, it picks between devices sharing incrementals.
    let device = match req.get("device") {
        None | Some(Value::Null) => None,
        Some(Value::String(d)) => match check_codename(d) {
            Ok(()) => Some(d.as_str()),
            Err(e) => return delta_error(StatusCode::BAD_REQUEST, e.to_string()),
        },
        Some(_) => return delta_error(StatusCode::BAD_REQUEST, "device must be a string"),
    };
    let mut found = match state
        .catalogue
        .rom_incrementals_between(source, target)
        .await
    {
        Ok(f) => f,
        Err(e) => {
            tracing::error!("looking up a ROM incremental: {e}");
            return delta_error(StatusCode::INTERNAL_SERVER_ERROR, "Database error.");
        }
    };
    if let Some(d) = device {
        found.retain(|i| i.incremental.device == d);
    }
    let Some(first) = found.first() else {
        return delta_error(StatusCode::OK, "No matching incremental update found!");
    };
    if found
        .iter()
        .any(|i| i.incremental.sha256 != first.incremental.sha256)
    {
        // Two devices share these incrementals and the request does not
        // say which it is: the full build (listed per device) is safe.
        return delta_error(
            StatusCode::OK,
            format!(
                "{} devices have an incremental from {source} to {target}; send \"device\" to \
                 choose, or install the full build",
                found.len()
            ),
        );
    }
    let base = state.download_base.for_request(&headers);
    let i = &first.incremental;
    axum::Json(json!({
        "date_created_unix": first.created_at,
        "filename": i.filename,
        "download_url": download_url(&base, &i.sha256, &i.filename),
        "md5sum": i.md5,
        "incremental": i.target_incremental,
    }))
    .into_response()
}

/// `GET /api/changelog/<device>/<incremental>.txt`.
#[utoipa::path(
    get,
    path = "/api/changelog/{device}/{file}",
    tag = "CMUpdater API",
    params(("device" = String, Path, description = "Codename"), ("file" = String, Path, description = "INCREMENTAL.txt")),
    responses((status = 200, description = "The changelog as plain text", content_type = "text/plain"), (status = 404, description = "No such build", content_type = "text/plain"))
)]
pub async fn changelog(
    State(state): State<AppState>,
    Path((device, file)): Path<(String, String)>,
) -> Response {
    let plain = |status: StatusCode, text: String| {
        (
            status,
            [
                (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
                (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            ],
            text,
        )
            .into_response()
    };
    let Some(incremental) = file.strip_suffix(".txt") else {
        return plain(
            StatusCode::NOT_FOUND,
            "changelogs are at /api/changelog/<device>/<incremental>.txt\n".into(),
        );
    };
    if let Err(e) =
        check_codename(&device).and_then(|()| check_incremental("incremental", incremental))
    {
        return plain(StatusCode::BAD_REQUEST, format!("{e}\n"));
    }
    match state.catalogue.rom_build(&device, incremental).await {
        Ok(Some(b)) if b.build.published => {
            let n = &b.build;
            // `=` lines open and close the app's header block.
            let text = format!(
                "====================\n{} {} ({})\n====================\n{}{}",
                n.version,
                n.incremental,
                n.channel,
                n.changelog,
                if n.changelog.ends_with('\n') || n.changelog.is_empty() {
                    ""
                } else {
                    "\n"
                }
            );
            plain(StatusCode::OK, text)
        }
        Ok(_) => plain(
            StatusCode::NOT_FOUND,
            format!("no published build {incremental} of {device}\n"),
        ),
        Err(e) => ApiError::from(e).into_plain(),
    }
}

/// `POST /api/report` with form fields `fprint` and `fcontent`.
#[utoipa::path(
    post,
    path = "/api/report",
    tag = "CMUpdater API",
    request_body(content_type = "application/x-www-form-urlencoded", description = "Form fields fprint and fcontent"),
    responses((status = 200, description = "Stored", content_type = "application/json"), (status = 400, description = "Missing fields", content_type = "application/json"))
)]
pub async fn report(State(state): State<AppState>, body: Bytes) -> Response {
    let refuse =
        |status: StatusCode, m: String| ApiError::new(status, "bad_request", m).into_plain();
    if body.len() > MAX_BODY {
        return refuse(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("report larger than {MAX_BODY} bytes"),
        );
    }
    let (mut fprint, mut fcontent) = (None, None);
    for (k, v) in form_urlencoded::parse(&body) {
        let slot = match k.as_ref() {
            "fprint" => &mut fprint,
            "fcontent" => &mut fcontent,
            _ => continue,
        };
        if slot.is_some() {
            return refuse(
                StatusCode::BAD_REQUEST,
                format!("form field {k} appears twice"),
            );
        }
        *slot = Some(v.into_owned());
    }
    let (Some(fprint), Some(fcontent)) = (fprint, fcontent) else {
        return refuse(
            StatusCode::BAD_REQUEST,
            "form fields fprint and fcontent are required".into(),
        );
    };
    for (name, v) in [("fprint", &fprint), ("fcontent", &fcontent)] {
        if v.trim().is_empty() || v.chars().count() >= MAX_REPORT_FIELD || v.contains('\0') {
            return refuse(
                StatusCode::BAD_REQUEST,
                format!(
                    "{name} must be 1 to {} characters of text",
                    MAX_REPORT_FIELD - 1
                ),
            );
        }
    }
    match state.catalogue.add_rom_report(&fprint, &fcontent).await {
        Ok(_) => (
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            "thank you for report!\n",
        )
            .into_response(),
        Err(e) => ApiError::from(e).into_plain(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_query_errors() {
        let err = |b: &str| parse_builds_query(b.as_bytes()).err().unwrap_or_default();
        assert!(err("{").starts_with("malformed JSON"));
        assert_eq!(err("[]"), "the request body must be a JSON object");
        assert_eq!(err("{}"), "method is a required parameter!");
        assert_eq!(
            err(r#"{"method":"drop_tables"}"#),
            "drop_tables is not a valid \"method\"!"
        );
        assert_eq!(
            err(r#"{"method":"get_all_builds"}"#),
            "params is a required parameter!"
        );
        let p = |params: &str| {
            err(&format!(
                r#"{{"method":"get_all_builds","params":{params}}}"#
            ))
        };
        assert_eq!(p("{}"), "device is a required parameter!");
        assert_eq!(p(r#"{"device":"d"}"#), "channels is a required parameter!");
        assert!(p(r#"{"device":"d","channels":[]}"#).contains("1 to 16"));
        assert_eq!(
            p(r#"{"device":"d","channels":["nightly"]}"#),
            "source_incremental is a required parameter!"
        );
        assert!(
            p(r#"{"device":"d'--","channels":["n"],"source_incremental":"1"}"#)
                .contains("invalid device codename")
        );
        assert!(
            p(r#"{"device":"d","channels":["<b>"],"source_incremental":"1"}"#)
                .contains("invalid channel")
        );
        assert!(
            p(r#"{"device":"d","channels":["n"],"source_incremental":"1 OR 1=1"}"#)
                .contains("invalid source_incremental")
        );
        let ok = parse_builds_query(
            br#"{"method":"get_all_builds","params":{"device":"d","channels":["nightly"],"source_incremental":"eng.1"}}"#,
        )
        .unwrap();
        assert_eq!(ok.channels, ["nightly"]);
    }
}
