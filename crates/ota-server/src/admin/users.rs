//! Admin users: add (with a password the new user changes), remove.

use super::templates;
use super::{audit, see_other, PageResult, Session};
use crate::state::AppState;
use axum::extract::{Form, State};
use axum::http::StatusCode;
use axum::Extension;
use ota_store::{check_password, check_user_name};
use serde::Deserialize;

async fn render(state: &AppState, s: &Session, status: StatusCode, message: &str) -> PageResult {
    let users: Vec<_> = state
        .catalogue
        .admin_users()
        .await?
        .into_iter()
        .map(|u| {
            minijinja::context! {
                name => u.name, created_at => u.created_at, failed_count => u.failed_count,
                locked_until => u.locked_until_ms.map(|ms| ms / 1000),
            }
        })
        .collect();
    let mut r = templates::page(
        s,
        "users.html",
        "users",
        minijinja::context! { users => users, message => message },
    )?;
    *r.status_mut() = status;
    Ok(r)
}

/// `GET /admin/users`.
pub async fn page(State(state): State<AppState>, Extension(s): Extension<Session>) -> PageResult {
    render(&state, &s, StatusCode::OK, "").await
}

/// The add form.
#[derive(Deserialize)]
pub struct AddForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    password: String,
}

/// `POST /admin/users`.
pub async fn create(
    State(state): State<AppState>,
    Extension(s): Extension<Session>,
    Form(f): Form<AddForm>,
) -> PageResult {
    if let Err(m) = check_user_name(&f.name).and_then(|()| check_password(&f.password)) {
        return render(&state, &s, StatusCode::BAD_REQUEST, &m).await;
    }
    if !state
        .catalogue
        .create_admin_user(&f.name, &f.password)
        .await?
    {
        let m = format!("a user named {:?} already exists", f.name);
        return render(&state, &s, StatusCode::CONFLICT, &m).await;
    }
    audit(&state, &s, "user.create", &f.name, "").await?;
    Ok(see_other("/admin/users"))
}

/// The remove form.
#[derive(Deserialize)]
pub struct NameForm {
    #[serde(default)]
    name: String,
}

/// `POST /admin/users/delete`: removes a user and its sessions (not
/// oneself: the last admin could lock everyone out).
pub async fn delete(
    State(state): State<AppState>,
    Extension(s): Extension<Session>,
    Form(f): Form<NameForm>,
) -> PageResult {
    if f.name == s.user {
        return render(
            &state,
            &s,
            StatusCode::BAD_REQUEST,
            "you cannot remove yourself; ask another admin",
        )
        .await;
    }
    if !state.catalogue.delete_admin_user(&f.name).await? {
        let m = format!("no user named {:?}", f.name);
        return render(&state, &s, StatusCode::NOT_FOUND, &m).await;
    }
    audit(&state, &s, "user.delete", &f.name, "").await?;
    Ok(see_other("/admin/users"))
}
