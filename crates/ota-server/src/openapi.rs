//! `GET /api/v1/openapi.json`: the OpenAPI 3.1 document of every route the
//! server answers, generated from the handlers' `#[utoipa::path]`
//! annotations and the request and answer types they use. A test checks
//! it against the routes the router holds, both ways.

use axum::http::header;
use axum::response::{IntoResponse, Response};
use std::sync::OnceLock;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

/// The error body of `/api/v1/`: `{"error":{"code":…,"message":…}}`.
#[derive(utoipa::ToSchema)]
pub struct ErrorBody {
    /// What went wrong.
    pub error: ErrorDetail,
}

/// The inside of [`ErrorBody`].
#[derive(utoipa::ToSchema)]
pub struct ErrorDetail {
    /// A stable machine-readable code (`bad_request`, `not_found`, …).
    pub code: String,
    /// A human-readable explanation.
    pub message: String,
}

/// The CMUpdater app's `POST /api` body.
#[derive(utoipa::ToSchema)]
pub struct CmUpdaterRequest {
    /// `get_all_builds`.
    pub method: String,
    /// What it asks about.
    pub params: CmUpdaterParams,
}

/// `params` of [`CmUpdaterRequest`].
#[derive(utoipa::ToSchema)]
pub struct CmUpdaterParams {
    /// Codename.
    pub device: String,
    /// Channels the user follows.
    pub channels: Vec<String>,
    /// The phone's `ro.build.version.incremental`.
    pub source_incremental: String,
}

/// The answer of `POST /api`.
#[derive(utoipa::ToSchema)]
pub struct CmUpdaterAnswer {
    /// Always null.
    pub id: Option<String>,
    /// Newer published builds, newest first.
    pub result: Vec<crate::rom::cmupdater::CmBuild>,
    /// Null, or what went wrong.
    pub error: Option<String>,
}

/// The CMUpdater app's `POST /api/v1/build/get_delta` body (it sends no
/// device).
#[derive(utoipa::ToSchema)]
pub struct GetDeltaRequest {
    /// The phone's incremental.
    pub source_incremental: String,
    /// The chosen build's incremental.
    pub target_incremental: String,
}

/// The answer of the LineageOS Updater API.
#[derive(utoipa::ToSchema)]
pub struct LineageAnswer {
    /// Builds, newest first.
    pub response: Vec<crate::rom::lineage::LineageBuild>,
}

/// Declares the bearer scheme API keys and device tokens use.
struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "An API key (`ota keys create`), or a device's token for its reports",
                    ))
                    .build(),
            ),
        );
    }
}

/// The document.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "OTA update server",
        description = "The package API, the JSON API, the bundle protocol, the fleet inventory, \
                       the CMUpdater and LineageOS Updater APIs, ROM publishing and operations."
    ),
    paths(
        crate::legacy::max_version,
        crate::legacy::get_version,
        crate::legacy::update,
        crate::download::get_file,
        crate::api_v1::auth,
        crate::api_v1::list_packages,
        crate::api_v1::upload,
        crate::api_v1::get_package,
        crate::api_v1::list_versions,
        crate::api_v1::latest,
        crate::api_v1::get_version,
        crate::api_v1::delete_version,
        crate::api_v1::list_jobs,
        crate::api_v1::retry_job,
        crate::api_v1::delta_map,
        crate::strategies::get,
        crate::strategies::put,
        crate::bundle_protocol::request,
        crate::bundle_protocol::confirm,
        crate::bundle_protocol::get_bundle,
        crate::bundle_protocol::signing_key,
        crate::devices::add,
        crate::devices::list,
        crate::devices::show,
        crate::devices::remove,
        crate::devices::report,
        crate::rom::cmupdater::get_all_builds,
        crate::rom::cmupdater::get_delta,
        crate::rom::cmupdater::changelog,
        crate::rom::cmupdater::report,
        crate::rom::lineage::builds,
        crate::rom::lineage::types,
        crate::rom::publish::publish,
        crate::rom::publish::set_published,
        crate::rom::publish::reports,
        crate::rom::target_files::publish,
        crate::rom::download_build,
        crate::health::healthz,
        crate::health::readyz,
        crate::metrics::serve,
        serve,
    ),
    components(schemas(
        ErrorBody,
        ErrorDetail,
        crate::rom::publish::BuildForm,
        crate::rom::target_files::TargetFilesForm,
    )),
    modifiers(&BearerAuth)
)]
pub struct ApiDoc;

/// The document as JSON, built once.
pub fn json() -> &'static str {
    static DOC: OnceLock<String> = OnceLock::new();
    DOC.get_or_init(|| {
        ApiDoc::openapi()
            .to_pretty_json()
            .unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    })
}

#[utoipa::path(
    get,
    path = "/api/v1/openapi.json",
    tag = "operations",
    responses((status = 200, description = "This document", content_type = "application/json"))
)]
/// `GET /api/v1/openapi.json`.
pub async fn serve() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], json()).into_response()
}
