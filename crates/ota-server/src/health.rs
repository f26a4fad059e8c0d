//! `GET /healthz` (the process answers) and `GET /readyz` (it can do its
//! work: the database answers and blobs can be written), for load
//! balancers and orchestrators. Each check is bounded in time, so a hung
//! dependency makes the instance not ready instead of hanging the probe.

use crate::state::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use std::time::Duration;

/// How long each readiness check may take.
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// `GET /healthz`: 200 while the process serves.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "operations",
    responses((status = 200, description = "The process serves", content_type = "text/plain"))
)]
pub async fn healthz() -> &'static str {
    "ok\n"
}

/// `GET /readyz`: 200 with one line per check when every check passes,
/// 503 naming what failed otherwise.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "operations",
    responses((status = 200, description = "Every check passed, one line each", content_type = "text/plain"), (status = 503, description = "A check failed (named)", content_type = "text/plain"))
)]
pub async fn readyz(State(state): State<AppState>) -> Response {
    let db = match tokio::time::timeout(CHECK_TIMEOUT, state.catalogue.ping()).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no answer within {CHECK_TIMEOUT:?}")),
    };
    // The temporary directory takes a file, and the object store (when
    // there is one) answers.
    let store = match tokio::time::timeout(CHECK_TIMEOUT, state.blobs.ping()).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no answer within {CHECK_TIMEOUT:?}")),
    };
    let line = |name: &str, r: &Result<(), String>| match r {
        Ok(()) => format!("{name}: ok\n"),
        Err(e) => format!("{name}: {e}\n"),
    };
    let body = line("database", &db) + &line("blob store", &store);
    let status = if db.is_ok() && store.is_ok() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, body).into_response()
}
