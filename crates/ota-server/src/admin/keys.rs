//! API keys: create (the token is shown once), revoke.

use super::templates;
use super::{audit, see_other, PageResult, Session};
use crate::state::AppState;
use axum::extract::{Form, State};
use axum::http::StatusCode;
use axum::Extension;
use ota_core::scope::Scopes;
use ota_store::StoreError;
use serde::Deserialize;

async fn render(
    state: &AppState,
    s: &Session,
    status: StatusCode,
    message: &str,
    created: Option<(&str, &str)>,
) -> PageResult {
    let keys = state.catalogue.list_keys().await?;
    let (name, token) = created.unwrap_or_default();
    let mut r = templates::page(
        s,
        "keys.html",
        "keys",
        minijinja::context! { keys => keys, message => message, created => name, token => token },
    )?;
    *r.status_mut() = status;
    Ok(r)
}

/// `GET /admin/keys`.
pub async fn page(State(state): State<AppState>, Extension(s): Extension<Session>) -> PageResult {
    render(&state, &s, StatusCode::OK, "", None).await
}

/// The create form.
#[derive(Deserialize)]
pub struct CreateForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    scopes: String,
}

/// `POST /admin/keys`: creates a key and shows its token once.
pub async fn create(
    State(state): State<AppState>,
    Extension(s): Extension<Session>,
    Form(f): Form<CreateForm>,
) -> PageResult {
    let checked = ota_core::name::check_name("key name", &f.name)
        .map_err(|e| e.to_string())
        .and_then(|()| {
            f.scopes
                .parse::<Scopes>()
                .map_err(|e| format!("scopes: {e}"))
        });
    let scopes = match checked {
        Ok(sc) => sc,
        Err(m) => return render(&state, &s, StatusCode::BAD_REQUEST, &m, None).await,
    };
    match state.catalogue.create_key(&f.name, &scopes).await {
        Ok(token) => {
            audit(&state, &s, "key.create", &f.name, &scopes.to_string()).await?;
            render(&state, &s, StatusCode::CREATED, "", Some((&f.name, &token))).await
        }
        Err(e @ StoreError::KeyExists(_)) => {
            render(&state, &s, StatusCode::CONFLICT, &e.to_string(), None).await
        }
        Err(e) => Err(e.into()),
    }
}

/// The revoke form.
#[derive(Deserialize)]
pub struct NameForm {
    #[serde(default)]
    name: String,
}

/// `POST /admin/keys/revoke`.
pub async fn revoke(
    State(state): State<AppState>,
    Extension(s): Extension<Session>,
    Form(f): Form<NameForm>,
) -> PageResult {
    if !state.catalogue.revoke_key(&f.name).await? {
        let m = format!("no active API key is named {:?}", f.name);
        return render(&state, &s, StatusCode::NOT_FOUND, &m, None).await;
    }
    audit(&state, &s, "key.revoke", &f.name, "").await?;
    Ok(see_other("/admin/keys"))
}
