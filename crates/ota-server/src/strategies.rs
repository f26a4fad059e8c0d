//! `GET|PUT /api/v1/strategies`: the update strategies every server
//! applies, stored in the catalogue. A document that does not parse is
//! refused with its JSON path and the reason, and the previous one stays.

use crate::error::{ApiError, JsonError};
use crate::state::AppState;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use ota_graph::strategy::Strategies;

/// Largest strategies document accepted.
pub const MAX_STRATEGIES_BYTES: usize = 1 << 20;

/// Checks a document and stores it, naming who set it.
pub async fn store(state: &AppState, body: &[u8], by: &str) -> Result<(), ApiError> {
    if body.len() > MAX_STRATEGIES_BYTES {
        return Err(ApiError::too_large(format!(
            "the strategies document is larger than {MAX_STRATEGIES_BYTES} bytes"
        )));
    }
    let text = std::str::from_utf8(body)
        .map_err(|_| ApiError::bad_request("the strategies document is not UTF-8"))?;
    Strategies::parse(text).map_err(|e| ApiError::bad_request(e.to_string()))?;
    state.catalogue.set_strategies(text, by).await?;
    state.rules.clear();
    tracing::info!(by, bytes = body.len(), "strategies updated");
    // `serve --strategy` names itself with a space; keys get `key:`.
    let actor = if by.contains(' ') {
        by.to_owned()
    } else {
        crate::admin::actor(by)
    };
    state
        .catalogue
        .audit_or_warn(
            &actor,
            "strategies.set",
            "strategies",
            &format!("{} bytes", body.len()),
        )
        .await;
    Ok(())
}

/// `PUT /api/v1/strategies`: needs a key with the `admin` scope.
#[utoipa::path(
    put,
    path = "/api/v1/strategies",
    tag = "bundle protocol",
    request_body(content = String, content_type = "application/json", description = "The update strategies document"),
    responses((status = 200, description = "Stored and in force", content_type = "application/json"), (status = 400, description = "Invalid document (line and column named)", body = crate::openapi::ErrorBody, content_type = "application/json"), (status = 403, description = "Needs the admin scope", body = crate::openapi::ErrorBody, content_type = "application/json")),
    security(("bearer" = []))
)]
pub async fn put(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<StatusCode, JsonError> {
    let key = state.authenticate(&headers).await?;
    if !key.scopes.is_admin() {
        return Err(ApiError::forbidden(format!(
            "API key {:?} (scopes: {}) may not change the strategies: they need the admin scope",
            key.name, key.scopes
        ))
        .into());
    }
    store(&state, &body, &key.name).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /api/v1/strategies`: the document as stored (any valid key).
#[utoipa::path(
    get,
    path = "/api/v1/strategies",
    tag = "bundle protocol",
    responses((status = 200, description = "The document as stored", content_type = "application/json"), (status = 401, description = "Missing or invalid key", body = crate::openapi::ErrorBody, content_type = "application/json")),
    security(("bearer" = []))
)]
pub async fn get(State(state): State<AppState>, headers: HeaderMap) -> Result<Response, JsonError> {
    state.authenticate(&headers).await?;
    let stored = state
        .catalogue
        .strategies()
        .await?
        .ok_or_else(|| ApiError::not_found("no strategies are set"))?;
    Ok((
        [
            (header::CONTENT_TYPE, "application/json".to_owned()),
            (
                header::HeaderName::from_static("x-ota-updated-by"),
                stored.updated_by.clone(),
            ),
        ],
        stored.body,
    )
        .into_response())
}
