//! The ROM update server: Android builds for phones running the stock
//! CMUpdater app ([`cmupdater`]) or the LineageOS Updater app ([`lineage`]),
//! published with an API key ([`publish`]).
//!
//! Builds live in the catalogue (`ota_store`'s ROM tables; incrementals are
//! rows of the delta table) and the blob store. Download URLs are built when
//! answering, like every other URL of the server: `BASE/rom/<sha256>/<file
//! name>`, served by [`download::serve_file`] with ranges (a client resumes
//! with `Range: bytes=N-` and gets 206).

pub mod build_jobs;
pub mod cache;
pub mod cmupdater;
pub mod lineage;
pub mod publish;
pub mod target_files;

use crate::download;
use crate::error::{ApiError, PlainError};
use crate::state::AppState;
use axum::extract::{Path, State};
use axum::http::header;
use axum::http::HeaderMap;
use axum::response::IntoResponse;
use axum::response::Response;
use axum::routing::{get, post, put};
use axum::Router;
use bytes::Bytes;
use ota_core::Sha256Hex;
use ota_store::{BadRomField, RomBuild, StoreError};

/// Words that may not be device codenames: the static segments the server
/// routes under `/api/v1/` (they win over `/api/v1/{device}/{romtype}/…`,
/// so a device so named could never be asked for), and a few kept for
/// later. Compared without case.
pub const RESERVED_CODENAMES: &[&str] = &[
    "agent",
    "auth",
    "build",
    "builds",
    "changes",
    "devices",
    "fleet",
    "jobs",
    "keys",
    "openapi",
    "packages",
    "reports",
    "rom",
    "signing-key",
    "strategies",
    "types",
    "update",
    "v1",
    "v2",
];

/// The routes of the ROM server (`GET /api/v1/devices` is not among them:
/// the fleet inventory shares that URL and dispatches to
/// [`lineage::list_devices`]).
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api", post(cmupdater::get_all_builds))
        .route("/api/v1/build/get_delta", post(cmupdater::get_delta))
        .route("/api/changelog/{device}/{file}", get(cmupdater::changelog))
        .route("/api/report", post(cmupdater::report))
        .route("/api/v1/types/{device}", get(lineage::types))
        .route("/api/v1/types/{device}/", get(lineage::types))
        .route(
            "/api/v1/{device}/{romtype}/{incremental}",
            get(lineage::builds),
        )
        .route("/api/v1/builds", post(publish::publish))
        .route("/api/v1/builds/target-files", post(target_files::publish))
        .route(
            "/api/v1/builds/{device}/{incremental}/published",
            put(publish::set_published),
        )
        .route("/api/v1/reports", get(publish::reports))
        .route("/rom/{hash}/{filename}", get(download_build))
}

/// A JSON answer from the hot cache, or the builds `load` finds rendered
/// by `render` with the download base `base`, and kept.
pub(crate) async fn cached_answer<F>(
    state: &AppState,
    key: &str,
    base: &str,
    load: F,
    render: impl FnOnce(&str, &[RomBuild]) -> serde_json::Value,
) -> Result<Response, StoreError>
where
    F: std::future::Future<Output = Result<Vec<RomBuild>, StoreError>>,
{
    let key = format!("{base}\0{key}");
    let (_, epoch) = state.cache.packages();
    let body = match state.rom.get(epoch, &key) {
        Some(body) => body,
        None => {
            let builds = load.await?;
            let body = Bytes::from(render(base, &builds).to_string());
            state.rom.insert(epoch, key, body.clone());
            body
        }
    };
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}

/// Drops hot answers after a local ROM write (moves the cache epoch; other
/// servers see the catalogue generation move).
pub(crate) fn written(state: &AppState, device: &str, channel: &str) {
    state
        .cache
        .invalidate(&ota_store::rom_package(device), channel);
}

/// A refused field as a 400.
pub(crate) fn bad_field(e: BadRomField) -> ApiError {
    ApiError::bad_request(e.to_string())
}

/// Where clients download a build or incremental.
pub(crate) fn download_url(base: &str, sha256: &str, filename: &str) -> String {
    format!("{base}/rom/{sha256}/{filename}")
}

/// `GET /rom/<sha256>/<file name>`: a ROM file, resumable. The name is
/// what clients save it as; the hash picks the blob.
#[utoipa::path(
    get,
    path = "/rom/{hash}/{filename}",
    tag = "downloads",
    params(("hash" = String, Path, description = "SHA-256 of the build"), ("filename" = String, Path, description = "The build's file name")),
    responses((status = 200, description = "The package", content_type = "application/zip"), (status = 206, description = "A range of it (Range: bytes=N-)", content_type = "application/zip"), (status = 404, description = "No such build", content_type = "text/plain"))
)]
pub(crate) async fn download_build(
    State(state): State<AppState>,
    method: axum::http::Method,
    Path((hash, filename)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, PlainError> {
    let hash = Sha256Hex::parse(&hash).map_err(|_| {
        ApiError::bad_request("malformed download path: expected /rom/<sha256>/<file name>")
    })?;
    ota_store::check_filename(&filename).map_err(bad_field)?;
    download::serve_blob(&state, &method, &hash, &headers, "application/zip")
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no ROM file with SHA-256 {hash}")).into())
}

#[cfg(test)]
mod tests {
    use super::RESERVED_CODENAMES;

    /// Every static first segment the server routes under `/api/v1/` is a
    /// reserved codename, so a route added later cannot shadow a device.
    #[test]
    fn every_api_v1_segment_is_reserved() {
        let sources = [include_str!("../server.rs"), include_str!("mod.rs")];
        let mut seen = 0;
        for src in sources {
            for (i, _) in src.match_indices("\"/api/v1/") {
                let rest = &src[i + "\"/api/v1/".len()..];
                let word: String = rest
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
                    .collect();
                if word.is_empty() {
                    continue; // `{device}`: the LineageOS route itself
                }
                seen += 1;
                assert!(
                    RESERVED_CODENAMES.contains(&word.as_str()),
                    "/api/v1/{word} is routed but {word:?} is not a reserved codename"
                );
            }
        }
        assert!(seen > 10, "found only {seen} routes: did server.rs move?");
    }
}
