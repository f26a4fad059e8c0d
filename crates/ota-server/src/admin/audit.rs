//! The audit log page: who changed what and when, newest first.

use super::{templates, PageResult, Session};
use crate::state::AppState;
use axum::extract::{Query, State};
use axum::Extension;
use serde::Deserialize;

/// Rows per page.
const PAGE: u32 = 100;

/// `?before=ID` pages back.
#[derive(Deserialize)]
pub struct AuditQuery {
    before: Option<i64>,
}

/// `GET /admin/audit`.
pub async fn page(
    State(state): State<AppState>,
    Extension(s): Extension<Session>,
    Query(q): Query<AuditQuery>,
) -> PageResult {
    let entries = state.catalogue.audit_log(PAGE, q.before).await?;
    let older = (entries.len() == PAGE as usize)
        .then(|| entries.last().map(|e| e.id))
        .flatten();
    templates::page(
        &s,
        "audit.html",
        "audit",
        minijinja::context! { entries => entries, older => older },
    )
}
