//! Packages, branches and versions of the package API (upload through the
//! API's receive path, delete), their packs and pack jobs (state, retry),
//! the version graph, and the delta path the server would ship between
//! two versions with its size.

use super::charts::{self, GraphEdge, GraphVersion};
use super::dashboard::job_json;
use super::{as_key, audit, see_other, templates, AdminError, PageResult, Session};
use crate::api_v1::delete_version_as;
use crate::state::{valid_name, AppState};
use crate::upload::{receive_package_as, UploadError};
use axum::extract::{Form, Path, Query, Request, State};
use axum::http::StatusCode;
use axum::Extension;
use ota_graph::version_map::Direction;
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::HashMap;

async fn render_list(
    state: &AppState,
    s: &Session,
    status: StatusCode,
    message: &str,
) -> PageResult {
    let packages = state.catalogue.packages().await?;
    let mut r = templates::page(
        s,
        "packages.html",
        "packages",
        minijinja::context! { packages => packages, message => message },
    )?;
    *r.status_mut() = status;
    Ok(r)
}

/// `GET /admin/packages`.
pub async fn list(State(state): State<AppState>, Extension(s): Extension<Session>) -> PageResult {
    render_list(&state, &s, StatusCode::OK, "").await
}

/// `POST /admin/packages?csrf=…`: `content` (content.json) + `file`, the
/// API's own receive path acting as `user:NAME`.
pub async fn upload(
    State(state): State<AppState>,
    Extension(s): Extension<Session>,
    req: Request,
) -> PageResult {
    match receive_package_as(&state, &as_key(&s), req).await {
        Ok(done) => {
            let e = &done.entry;
            Ok(see_other(&format!(
                "/admin/packages/{}/{}",
                e.package, e.branch
            )))
        }
        Err(UploadError::HashMismatch(m)) => {
            render_list(&state, &s, StatusCode::UNPROCESSABLE_ENTITY, &m).await
        }
        Err(UploadError::Api(e)) => render_list(&state, &s, e.status, &e.message).await,
    }
}

/// The delete form.
#[derive(Deserialize)]
pub struct DeleteForm {
    #[serde(default)]
    package: String,
    #[serde(default)]
    branch: String,
    #[serde(default)]
    version: String,
}

/// `POST /admin/packages/delete`.
pub async fn delete(
    State(state): State<AppState>,
    Extension(s): Extension<Session>,
    Form(f): Form<DeleteForm>,
) -> PageResult {
    delete_version_as(&state, &as_key(&s), &f.package, &f.branch, &f.version).await?;
    Ok(see_other(&format!(
        "/admin/packages/{}/{}",
        f.package, f.branch
    )))
}

/// `GET /admin/jobs`.
pub async fn jobs(State(state): State<AppState>, Extension(s): Extension<Session>) -> PageResult {
    let jobs: Vec<Value> = state
        .catalogue
        .jobs(None, 500)
        .await?
        .iter()
        .map(job_json)
        .collect();
    templates::page(
        &s,
        "jobs.html",
        "jobs",
        minijinja::context! { jobs => jobs, message => "" },
    )
}

/// The retry form.
#[derive(Deserialize)]
pub struct RetryForm {
    #[serde(default)]
    id: String,
}

/// `POST /admin/jobs/retry`: queues a failed job again.
pub async fn retry(
    State(state): State<AppState>,
    Extension(s): Extension<Session>,
    Form(f): Form<RetryForm>,
) -> PageResult {
    let id: i64 =
        f.id.parse()
            .map_err(|_| AdminError::bad("job id: a number"))?;
    if !state.catalogue.retry_job(id).await? {
        return Err(AdminError {
            status: StatusCode::CONFLICT,
            message: format!("job {id} does not exist or has not failed"),
        });
    }
    state.packs.wake.notify_waiters();
    audit(&state, &s, "job.retry", &id.to_string(), "").await?;
    Ok(see_other("/admin/jobs"))
}

/// `GET /admin/packages/{package}`.
pub async fn package(
    State(state): State<AppState>,
    Extension(s): Extension<Session>,
    Path(package): Path<String>,
) -> PageResult {
    let list = state.catalogue.packages().await?;
    let p = list
        .into_iter()
        .find(|p| p.name == package)
        .ok_or_else(|| AdminError::not_found(format!("no package {package:?}")))?;
    templates::page(
        &s,
        "package.html",
        "packages",
        minijinja::context! { package => p },
    )
}

/// `?from=&to=` of the delta path form.
#[derive(Deserialize)]
pub struct PathQuery {
    from: Option<String>,
    to: Option<String>,
}

/// `GET /admin/packages/{package}/{branch}[?from=A&to=B]`: versions,
/// version graph, packs, and the path from A to B.
pub async fn branch(
    State(state): State<AppState>,
    Extension(s): Extension<Session>,
    Path((package, branch)): Path<(String, String)>,
    Query(q): Query<PathQuery>,
) -> PageResult {
    valid_name("package", &package)?;
    valid_name("branch", &branch)?;
    let versions = state.catalogue.versions(&package, &branch).await?;
    let rows = state.catalogue.map_versions(&package, &branch).await?;
    let deltas = state.catalogue.deltas(&package, &branch).await?;
    let (graph, path, path_message) = if rows.is_empty() {
        (charts::version_graph(&[], &[]), Vec::new(), String::new())
    } else {
        let m = state.packs.map(&state.catalogue, &package, &branch).await?;
        let gv: Vec<GraphVersion> = rows
            .iter()
            .map(|r| GraphVersion {
                version: r.version.clone(),
                deleted: r.deleted,
                ready: !r.deleted && m.map.is_ready(&r.version),
            })
            .collect();
        let index: HashMap<u64, usize> = rows
            .iter()
            .enumerate()
            .map(|(i, r)| (r.position, i))
            .collect();
        let geometry = *m.map.geometry();
        let mut edges = Vec::new();
        for r in &rows {
            for e in geometry.edges_ending_at(r.position) {
                if let (Some(&from), Some(&to)) = (index.get(&e.from), index.get(&e.to)) {
                    edges.push(GraphEdge {
                        from,
                        to,
                        level: i64::from(e.level),
                        built: m.map.has_pack(e, Direction::Upgrade)
                            && m.map.has_pack(e, Direction::Rollback),
                    });
                }
            }
        }
        let graph = charts::version_graph(&gv, &edges);
        let (path, message) = match (&q.from, &q.to) {
            (Some(from), Some(to)) if from == to => {
                (Vec::new(), format!("{from} is {to}: nothing to ship"))
            }
            (Some(from), Some(to)) => match m.map.search(from, to) {
                Ok(Some(p)) => {
                    let hops: Vec<Value> = p
                        .hops
                        .iter()
                        .map(|h| {
                            json!({
                                "from": m.map.version_at(h.start()).unwrap_or("?"),
                                "to": m.map.version_at(h.end()).unwrap_or("?"),
                                "direction": match h.direction { Direction::Upgrade => "upgrade", Direction::Rollback => "rollback" },
                                "level": h.edge.level,
                                "size": m.map.pack_bytes(h.edge, h.direction).unwrap_or(0),
                            })
                        })
                        .collect();
                    let msg = format!(
                        "{from} → {to}: {} pack(s), {}",
                        hops.len(),
                        ota_core::size::describe(p.bytes)
                    );
                    (hops, msg)
                }
                Ok(None) => (
                    Vec::new(),
                    format!("no path from {from} to {to}: its packs are not all built yet"),
                ),
                Err(e) => (Vec::new(), e.to_string()),
            },
            _ => (Vec::new(), String::new()),
        };
        (graph, path, message)
    };
    let delta_rows: Vec<Value> = deltas
        .iter()
        .map(|d| json!({"from_version": d.delta.from_version, "to_version": d.delta.to_version, "direction": d.delta.direction, "level": d.delta.level, "size": d.delta.size}))
        .collect();
    let versions: Vec<Value> = versions
        .iter()
        .map(|e| json!({"version": e.version, "size": e.size, "created_at": e.created_at, "sha256": e.sha256}))
        .collect();
    templates::page(
        &s,
        "branch.html",
        "packages",
        minijinja::context! {
            package => package, branch => branch, versions => versions, graph => graph,
            deltas => delta_rows, path => path, path_message => path_message,
            from => q.from.unwrap_or_default(), to => q.to.unwrap_or_default(), message => "",
        },
    )
}
