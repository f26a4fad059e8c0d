//! The web admin at `/admin`: server-rendered pages (templates compiled into
//! the binary, auto-escaped), one CSS file and one small optional script.
//!
//! Every page but the sign-in form needs a session ([`session`]): the
//! cookie `ota_admin` (256 random bits, stored hashed, `HttpOnly`,
//! `SameSite=Strict`, `Path=/admin`, `Secure` over https). Every POST
//! carries the session's CSRF token (form field `csrf`, or the `csrf` query
//! parameter for multipart uploads), compared in constant time before the
//! handler runs. Every admin response carries the security headers
//! ([`security_headers`]); every change writes the audit log with actor
//! `user:NAME`.

mod audit;
mod auth;
mod charts;
mod dashboard;
mod devices;
mod keys;
mod packages;
mod rom;
mod session;
mod strategies;
mod templates;
mod users;

pub use session::Session;

use crate::error::ApiError;
use crate::state::AppState;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use ota_store::{KeyAuth, LockoutPolicy, StoreError};

/// Largest url-encoded form body accepted (the strategies editor's
/// document is the largest field).
pub const MAX_FORM_BYTES: usize = crate::strategies::MAX_STRATEGIES_BYTES + 64 * 1024;

/// Settings of the web admin.
#[derive(Clone, Copy, Debug, Default)]
pub struct AdminConfig {
    /// Growing delay and lock-out after failed sign-ins.
    pub lockout: LockoutPolicy,
}

/// Who made a change, for the audit log: `key:NAME` for an API key; names
/// that already carry a kind (`user:NAME` from the admin, `serve:watch`)
/// are kept. Key names cannot contain `:`, so the two never mix.
pub fn actor(by: &str) -> String {
    if by.contains(':') {
        by.to_owned()
    } else {
        format!("key:{by}")
    }
}

/// The key-like identity an admin user acts with when an admin page reuses
/// an API receive path (uploads): every scope, named `user:NAME`.
pub fn as_key(s: &Session) -> KeyAuth {
    KeyAuth {
        name: s.actor(),
        scopes: ota_core::scope::Scopes::admin(),
    }
}

/// The admin's routes; merge them into the server's router.
pub fn router(state: &AppState) -> Router<AppState> {
    let protected = Router::new()
        .route("/admin", get(dashboard::page))
        .route("/admin/", get(|| async { Redirect::to("/admin") }))
        .route("/admin/logout", post(auth::logout))
        .route(
            "/admin/password",
            get(auth::password_form).post(auth::change_password),
        )
        .route("/admin/keys", get(keys::page).post(keys::create))
        .route("/admin/keys/revoke", post(keys::revoke))
        .route("/admin/users", get(users::page).post(users::create))
        .route("/admin/users/delete", post(users::delete))
        .route("/admin/audit", get(audit::page))
        .route("/admin/devices", get(devices::list).post(devices::add))
        .route("/admin/devices/remove", post(devices::remove))
        .route("/admin/devices/{name}", get(devices::show))
        .route("/admin/rom", get(rom::devices).post(rom::add_device))
        .route("/admin/rom/edit", post(rom::edit_device))
        .route("/admin/rom/remove", post(rom::remove_device))
        .route("/admin/rom/upload", post(rom::upload))
        .route("/admin/rom/published", post(rom::set_published))
        .route("/admin/rom/changelog", post(rom::set_changelog))
        .route("/admin/rom/reports", get(rom::reports))
        .route("/admin/rom/{device}", get(rom::builds))
        .route(
            "/admin/packages",
            get(packages::list).post(packages::upload),
        )
        .route("/admin/packages/delete", post(packages::delete))
        .route("/admin/jobs", get(packages::jobs))
        .route("/admin/jobs/retry", post(packages::retry))
        .route("/admin/packages/{package}", get(packages::package))
        .route("/admin/packages/{package}/{branch}", get(packages::branch))
        .route(
            "/admin/strategies",
            get(strategies::page).post(strategies::save),
        )
        // `route_layer`: only the admin's own routes, never the server's
        // fallback (an unknown path stays a 404 for everyone).
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            session::require,
        ));
    Router::new()
        .route("/admin/login", get(auth::login_form).post(auth::login))
        .route("/admin/static/admin.css", get(templates::css))
        .route("/admin/static/admin.js", get(templates::js))
        .merge(protected)
        .route_layer(axum::middleware::map_response(security_headers))
}

/// Adds the security headers to every admin response: no framing, no
/// inline script or style, no referrer, no sniffing, no caching of pages.
pub async fn security_headers(mut r: Response) -> Response {
    let h = r.headers_mut();
    let set = |h: &mut axum::http::HeaderMap, name: &'static str, value: &'static str| {
        h.insert(name, HeaderValue::from_static(value));
    };
    set(
        h,
        "content-security-policy",
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
         connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    );
    set(h, "x-frame-options", "DENY");
    set(h, "referrer-policy", "no-referrer");
    set(h, "x-content-type-options", "nosniff");
    set(h, "cross-origin-opener-policy", "same-origin");
    if !h.contains_key(header::CACHE_CONTROL) {
        set(h, "cache-control", "no-store");
    }
    r
}

/// An admin page's failure, shown as a page (escaped like every page).
#[derive(Debug)]
pub struct AdminError {
    /// HTTP status.
    pub status: StatusCode,
    /// What to tell the user.
    pub message: String,
}

impl AdminError {
    /// 400 with a message.
    pub fn bad(message: impl Into<String>) -> Self {
        AdminError {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
        }
    }
    /// 404 with a message.
    pub fn not_found(message: impl Into<String>) -> Self {
        AdminError {
            status: StatusCode::NOT_FOUND,
            message: message.into(),
        }
    }
}

impl From<StoreError> for AdminError {
    fn from(e: StoreError) -> Self {
        ApiError::from(e).into()
    }
}

impl From<ApiError> for AdminError {
    fn from(e: ApiError) -> Self {
        AdminError {
            status: e.status,
            message: e.message,
        }
    }
}

impl From<minijinja::Error> for AdminError {
    fn from(e: minijinja::Error) -> Self {
        ApiError::internal("rendering an admin page", e).into()
    }
}

impl IntoResponse for AdminError {
    fn into_response(self) -> Response {
        let body = templates::render(
            "error.html",
            minijinja::context! { status => self.status.as_u16(), message => self.message },
        )
        .unwrap_or_else(|_| "error".to_owned());
        (
            self.status,
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            body,
        )
            .into_response()
    }
}

/// A handler's result.
pub type PageResult = Result<Response, AdminError>;

/// A 303 to a page (after a successful POST, so reloading does not repeat it).
pub fn see_other(to: &str) -> Response {
    Redirect::to(to).into_response()
}

/// Records a change made by a signed-in user.
pub async fn audit(
    state: &AppState,
    s: &Session,
    action: &str,
    target: &str,
    detail: &str,
) -> Result<(), AdminError> {
    state
        .catalogue
        .audit(&s.actor(), action, target, detail)
        .await?;
    Ok(())
}

/// Refuses text fields with control characters and over `max` bytes.
pub fn check_text(what: &str, value: &str, max: usize) -> Result<(), AdminError> {
    if value.len() > max {
        return Err(AdminError::bad(format!("{what}: at most {max} bytes")));
    }
    if value
        .chars()
        .any(|c| c.is_control() && c != '\n' && c != '\r' && c != '\t')
    {
        return Err(AdminError::bad(format!(
            "{what}: control characters are not allowed"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actors() {
        assert_eq!(actor("ci"), "key:ci");
        assert_eq!(actor("user:alice"), "user:alice");
        assert_eq!(actor("serve:watch"), "serve:watch");
    }

    #[test]
    fn text_checks() {
        assert!(check_text("x", "a\nb", 10).is_ok());
        assert!(check_text("x", "a\u{0}b", 10).is_err());
        assert!(check_text("x", "abcdefghijk", 10).is_err());
    }
}
