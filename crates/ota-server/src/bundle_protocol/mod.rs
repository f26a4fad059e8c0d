//! The bundle protocol: a device asks (`POST /api/v1/update/request`), the
//! update strategies decide where it should go, the device confirms
//! (`POST /api/v1/update/confirm`) and receives `data.tar.gz`: the signed
//! packs of the shortest path on the branch's version skip-list, the digest
//! of the version after each, and `apply_log`.
//!
//! Messages are the protocol's JSON exactly; a confirm also names the
//! package and client type again (`name`, `type`), since HTTP keeps no
//! connection state between the two. Both accept an optional `branch`
//! (default `main`). A package without rules in the strategies document is
//! offered its newest ready version as an optional update.
//!
//! Bundles are built from stored packs only (never by diffing on a
//! request), cached, and also served at
//! `GET /api/v1/update/bundles/<sha256>` (the confirm answer's
//! `Content-Location`) with `ETag` and `Range`, so a device resumes an
//! interrupted download there.

pub mod bundles;

use crate::error::{ApiError, JsonError};
use crate::packs::maps::BranchMap;
use crate::state::{valid_name, AppState};
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use ota_core::content::DEFAULT_BRANCH;
use ota_core::version::Version;
use ota_core::Sha256Hex;
use ota_graph::strategy::{Action, Decision, Kind, Query, Strategies};
use serde::Deserialize;
use serde_json::json;
use std::sync::{Arc, Mutex};

/// Largest request or confirm message accepted.
pub const MAX_MESSAGE: usize = 16 << 10;

/// The strategies in force, parsed once per change.
#[derive(Debug, Default)]
pub struct RulesCache(Mutex<Option<Arc<Option<Strategies>>>>);

impl RulesCache {
    /// Forgets the parsed document (it changed).
    pub fn clear(&self) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    async fn get(&self, state: &AppState) -> Result<Arc<Option<Strategies>>, ApiError> {
        if let Some(r) = self.0.lock().unwrap_or_else(|p| p.into_inner()).clone() {
            return Ok(r);
        }
        let parsed = match state.catalogue.strategies().await? {
            None => None,
            Some(stored) => Some(
                Strategies::parse(&stored.body)
                    .map_err(|e| ApiError::internal("reading the stored strategies", e))?,
            ),
        };
        let parsed = Arc::new(parsed);
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(parsed.clone());
        Ok(parsed)
    }
}

/// A device's request: which update it should take.
#[derive(Deserialize, utoipa::ToSchema)]
pub(crate) struct RequestMsg {
    #[serde(rename = "Request")]
    request: String,
    name: String,
    version: String,
    #[serde(rename = "type")]
    client_type: String,
    #[serde(default)]
    branch: Option<String>,
}

/// A device's confirmation of the decision it was given.
#[derive(Deserialize, utoipa::ToSchema)]
pub(crate) struct ConfirmMsg {
    #[serde(rename = "Confirm")]
    confirm: String,
    #[serde(rename = "Action")]
    action: String,
    #[serde(rename = "Strategy")]
    strategy: String,
    #[serde(rename = "From")]
    from: String,
    #[serde(rename = "Destination")]
    destination: String,
    name: String,
    #[serde(rename = "type")]
    client_type: String,
    #[serde(default)]
    branch: Option<String>,
}

fn parse<T: serde::de::DeserializeOwned>(body: &[u8], what: &str) -> Result<T, ApiError> {
    if body.len() > MAX_MESSAGE {
        return Err(ApiError::too_large(format!(
            "a {what} message is at most {MAX_MESSAGE} bytes"
        )));
    }
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("malformed {what} message: {e}")))
}

fn check_version(v: &str, field: &str) -> Result<(), ApiError> {
    Version::parse(v)
        .map(|_| ())
        .map_err(|e| ApiError::bad_request(format!("{field}: {e}")))
}

/// Where a client should go, if anywhere: the strategies' decision, when
/// its destination is ready and a path of packs leads there; with the
/// branch's map it was decided on.
async fn decide(
    state: &AppState,
    name: &str,
    branch: &str,
    version: &str,
    client_type: &str,
) -> Result<(Option<Decision>, Arc<BranchMap>), ApiError> {
    valid_name("name", name)?;
    valid_name("branch", branch)?;
    check_version(version, "version")?;
    if !state.branch_exists(name, branch).await? {
        return Err(ApiError::not_found(format!(
            "no package {name:?} on branch {branch:?}"
        )));
    }
    let packs = &state.packs;
    let m = packs.map(&state.catalogue, name, branch).await?;
    if m.map.index_of(version).is_none() {
        return Err(ApiError::not_found(format!(
            "version {version} of {name} ({branch}) is not on the delta map (not published, \
             deleted, or published below a newer version): update it with the full package"
        )));
    }
    let newest = m.map.newest_ready();
    let rules = state.rules.get(state).await?;
    let q = Query {
        name,
        version,
        client_type,
    };
    let decision = match rules.as_ref() {
        Some(r) if r.covers(name) => r.decide(&q, newest),
        // No rules for this package: its newest version, optionally.
        _ => newest
            .filter(|n| Version::parse(n).ok() > Version::parse(version).ok())
            .map(|n| Decision {
                action: Action::Update,
                strategy: Kind::Optional,
                from: version.to_owned(),
                dest: n.to_owned(),
            }),
    };
    let Some(d) = decision else {
        return Ok((None, m));
    };
    if !m.map.is_ready(&d.dest) {
        tracing::debug!(
            name,
            branch,
            dest = d.dest,
            "destination not ready (packs pending)"
        );
        return Ok((None, m));
    }
    let reachable = matches!(m.map.search(version, &d.dest), Ok(Some(p)) if !p.hops.is_empty());
    Ok((reachable.then_some(d), m))
}

/// `POST /api/v1/update/request`.
#[utoipa::path(
    post,
    path = "/api/v1/update/request",
    tag = "bundle protocol",
    request_body(content = crate::bundle_protocol::RequestMsg, content_type = "application/json"),
    responses((status = 200, description = "The decision: strategy, action, from, destination", content_type = "application/json"), (status = 400, description = "Malformed request", body = crate::openapi::ErrorBody, content_type = "application/json"), (status = 404, description = "Unknown package or version", body = crate::openapi::ErrorBody, content_type = "application/json"))
)]
pub async fn request(State(state): State<AppState>, body: Bytes) -> Result<Response, JsonError> {
    let msg: RequestMsg = parse(&body, "request")?;
    if msg.request != "Yes" {
        return Err(ApiError::bad_request("\"Request\" must be \"Yes\"").into());
    }
    let branch = msg.branch.as_deref().unwrap_or(DEFAULT_BRANCH);
    let (decision, _) = decide(&state, &msg.name, branch, &msg.version, &msg.client_type).await?;
    Ok(Json(match decision {
        None => json!({ "Response": "No" }),
        Some(d) => json!({
            "Response": "Yes",
            "Action": d.action.as_str(),
            "Strategy": d.strategy.as_str(),
            "From": d.from,
            "Destination": d.dest,
        }),
    })
    .into_response())
}

/// `POST /api/v1/update/confirm`: the bundle of the confirmed path.
#[utoipa::path(
    post,
    path = "/api/v1/update/confirm",
    tag = "bundle protocol",
    request_body(content = crate::bundle_protocol::ConfirmMsg, content_type = "application/json"),
    responses((status = 200, description = "The signed bundle of the confirmed path (Content-Location names it)", content_type = "application/octet-stream"), (status = 400, description = "Malformed confirm", body = crate::openapi::ErrorBody, content_type = "application/json"), (status = 409, description = "The decision no longer holds", body = crate::openapi::ErrorBody, content_type = "application/json"))
)]
pub async fn confirm(State(state): State<AppState>, body: Bytes) -> Result<Response, JsonError> {
    let msg: ConfirmMsg = parse(&body, "confirm")?;
    if msg.confirm != "Yes" {
        return Ok(Json(json!({ "Response": "No" })).into_response());
    }
    check_version(&msg.from, "From")?;
    check_version(&msg.destination, "Destination")?;
    let branch = msg.branch.as_deref().unwrap_or(DEFAULT_BRANCH).to_owned();
    let (decision, m) = decide(&state, &msg.name, &branch, &msg.from, &msg.client_type).await?;
    let allowed = decision.as_ref().is_some_and(|d| {
        d.action.as_str() == msg.action
            && d.strategy.as_str() == msg.strategy
            && d.dest == msg.destination
    });
    if !allowed {
        let now = match &decision {
            None => "nothing".to_owned(),
            Some(d) => format!(
                "{} ({}) to {}",
                d.action.as_str(),
                d.strategy.as_str(),
                d.dest
            ),
        };
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "not_allowed",
            format!(
                "the strategies do not allow {} ({}) from {} to {} for {} (type {:?}); they allow {now}",
                msg.action, msg.strategy, msg.from, msg.destination, msg.name, msg.client_type
            ),
        )
        .into());
    }
    let path = m
        .map
        .search(&msg.from, &msg.destination)
        .ok()
        .flatten()
        .ok_or_else(|| ApiError::not_found("no path of packs joins the two versions"))?;
    let packs = path
        .hops
        .iter()
        .map(|h| m.pack(h).cloned())
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| ApiError::internal("finding packs", "a hop has no pack row"))?;
    let bundle = state
        .bundles
        .get_or_build(&state.blobs, &packs)
        .await
        .map_err(|e| ApiError::internal("building a bundle", format!("{e:#}")))?;
    tracing::info!(
        name = msg.name,
        branch,
        from = msg.from,
        to = msg.destination,
        packs = packs.len(),
        bytes = bundle.size,
        "bundle"
    );
    // Range applies to GET only (RFC 9110 §14.2): the POST answer is whole,
    // and names the URL that resumes.
    let mut response = crate::download::serve_file(
        bundle.path.clone(),
        &format!("\"{}\"", bundle.sha256),
        &HeaderMap::new(),
        "no-store",
        "application/gzip",
    )
    .await
    .map_err(|e| JsonError(e.0))?
    .ok_or_else(|| ApiError::internal("serving a bundle", "bundle file vanished"))?;
    let h = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&format!("/api/v1/update/bundles/{}", bundle.sha256)) {
        h.insert(header::CONTENT_LOCATION, v);
    }
    h.insert(
        header::CONTENT_DISPOSITION,
        HeaderValue::from_static("attachment; filename=\"data.tar.gz\""),
    );
    Ok(response)
}

/// `GET /api/v1/update/bundles/{sha256}`: a cached bundle, resumable.
#[utoipa::path(
    get,
    path = "/api/v1/update/bundles/{name}",
    tag = "bundle protocol",
    params(("name" = String, Path, description = "SHA-256 of the bundle, as Content-Location gave it")),
    responses((status = 200, description = "The bundle", content_type = "application/octet-stream"), (status = 206, description = "A range of it", content_type = "application/octet-stream"), (status = 404, description = "Not cached", body = crate::openapi::ErrorBody, content_type = "application/json"))
)]
pub async fn get_bundle(
    State(state): State<AppState>,
    method: axum::http::Method,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Result<Response, JsonError> {
    let sha = name.strip_suffix(".tar.gz").unwrap_or(&name);
    let gone = || {
        ApiError::not_found(format!(
            "no bundle {sha}: it expired or the server restarted; confirm again"
        ))
    };
    let Some(bundle) = state.bundles.by_sha(sha) else {
        // Built by another instance sharing the object store?
        let hash = Sha256Hex::parse(sha).map_err(|_| gone())?;
        if !state.blobs.is_remote() {
            return Err(gone().into());
        }
        return crate::download::serve_blob(&state, &method, &hash, &headers, "application/gzip")
            .await
            .map_err(|e| JsonError(e.0))?
            .ok_or_else(|| gone().into());
    };
    crate::download::serve_file(
        bundle.path,
        &format!("\"{}\"", bundle.sha256),
        &headers,
        "public, max-age=31536000, immutable",
        "application/gzip",
    )
    .await
    .map_err(|e| JsonError(e.0))?
    .ok_or_else(|| gone().into())
}

/// `GET /api/v1/signing-key`: the public key packs are signed with (PEM).
#[utoipa::path(
    get,
    path = "/api/v1/signing-key",
    tag = "bundle protocol",
    responses((status = 200, description = "The Ed25519 public key packs and answers are signed with", content_type = "application/x-pem-file"))
)]
pub async fn signing_key(State(state): State<AppState>) -> Response {
    (
        [(header::CONTENT_TYPE, "application/x-pem-file")],
        state.packs.public_pem.clone(),
    )
        .into_response()
}
