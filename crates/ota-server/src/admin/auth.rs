//! Sign-in, sign-out and password change.
//!
//! The sign-in form is protected against cross-site posts by a double
//! submit: a random token in a `SameSite=Strict` cookie and the same token
//! in the form. A failed sign-in is answered after a delay that doubles
//! with each failure in a row; after [`ota_store::LockoutPolicy::max_failures`]
//! the account is locked and even the right password is refused until the
//! lock-out ends.

use super::session::{cookie, over_https, same_token, set_cookie, Session, COOKIE};
use super::templates::{format_time, page, render};
use super::{audit, AdminError, PageResult};
use crate::state::AppState;
use axum::extract::{Form, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::Extension;
use ota_store::{check_password, SignIn, MIN_PASSWORD_LEN, SESSION_LIFETIME};
use serde::Deserialize;

/// The pre-session cookie of the sign-in form.
const LOGIN_COOKIE: &str = "ota_admin_login";

fn random_token() -> String {
    use rand::RngCore;
    let mut b = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut b);
    hex::encode(b)
}

fn login_page(
    state: &AppState,
    headers: &HeaderMap,
    status: StatusCode,
    name: &str,
    message: &str,
) -> PageResult {
    // The token already set is kept: a second load of the form (another
    // tab, a browser's repeated request) must not strand the first.
    let token = cookie(headers, LOGIN_COOKIE)
        .filter(|t| t.len() == 64 && t.bytes().all(|b| b.is_ascii_hexdigit()))
        .unwrap_or_else(random_token);
    let body = render(
        "login.html",
        minijinja::context! { login_csrf => token, name => name, message => message },
    )?;
    let c = set_cookie(LOGIN_COOKIE, &token, 3600, over_https(state, headers));
    Ok((status, [(header::SET_COOKIE, c)], Html(body)).into_response())
}

/// `GET /admin/login`.
pub async fn login_form(State(state): State<AppState>, headers: HeaderMap) -> PageResult {
    login_page(&state, &headers, StatusCode::OK, "", "")
}

/// The sign-in form.
#[derive(Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    user: String,
    #[serde(default)]
    password: String,
}

/// Sign-in attempts hashed at once (one per core).
fn sign_in_permits() -> &'static tokio::sync::Semaphore {
    static PERMITS: std::sync::OnceLock<tokio::sync::Semaphore> = std::sync::OnceLock::new();
    PERMITS.get_or_init(|| {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        tokio::sync::Semaphore::new(cores)
    })
}

/// `POST /admin/login`.
pub async fn login(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> PageResult {
    let expected = cookie(&headers, LOGIN_COOKIE).unwrap_or_default();
    if !same_token(&form.csrf, &expected) {
        return login_page(
            &state,
            &headers,
            StatusCode::FORBIDDEN,
            "",
            "the sign-in form expired or came from another site: try again",
        );
    }
    let secure = over_https(&state, &headers);
    // Names are at most 64 bytes (store rules); a longer one is wrong
    // without hashing anything, and never reaches the log whole.
    if form.user.len() > 64 {
        return login_page(
            &state,
            &headers,
            StatusCode::UNAUTHORIZED,
            "",
            "wrong user name or password",
        );
    }
    // Each attempt costs an argon2 verify (19 MiB, tens of ms): at most one
    // per core at once, so a flood of sign-ins cannot take the memory and
    // the cores the fleet is served with.
    let Ok(_hashing) = sign_in_permits().try_acquire() else {
        let mut r = login_page(
            &state,
            &headers,
            StatusCode::SERVICE_UNAVAILABLE,
            &form.user,
            "too many sign-ins at once: try again in a moment",
        )?;
        r.headers_mut().insert(
            header::RETRY_AFTER,
            axum::http::HeaderValue::from_static("2"),
        );
        return Ok(r);
    };
    match state
        .catalogue
        .admin_sign_in(&form.user, &form.password, &state.admin.lockout)
        .await?
    {
        SignIn::Ok(s) => {
            state
                .catalogue
                .audit(&format!("user:{}", form.user), "sign-in", &form.user, "")
                .await?;
            let mut r = super::see_other("/admin");
            let h = r.headers_mut();
            let session = set_cookie(COOKIE, &s.id, SESSION_LIFETIME.as_secs(), secure);
            let clear = set_cookie(LOGIN_COOKIE, "", 0, secure);
            for c in [session, clear] {
                if let Ok(v) = c.parse() {
                    h.append(header::SET_COOKIE, v);
                }
            }
            Ok(r)
        }
        SignIn::Wrong { delay } => {
            tokio::time::sleep(delay).await;
            tracing::warn!(user = form.user, "failed admin sign-in");
            login_page(
                &state,
                &headers,
                StatusCode::UNAUTHORIZED,
                &form.user,
                "wrong user name or password",
            )
        }
        SignIn::Locked { until_ms } => login_page(
            &state,
            &headers,
            StatusCode::TOO_MANY_REQUESTS,
            &form.user,
            &format!(
                "too many failed sign-ins: this account is locked until {}",
                format_time(until_ms.div_euclid(1000) + 59)
            ),
        ),
    }
}

/// `POST /admin/logout`: ends the session (its row is deleted, so the
/// cookie is worthless even if copied) and clears the cookie.
pub async fn logout(
    State(state): State<AppState>,
    headers: HeaderMap,
    Extension(s): Extension<Session>,
) -> PageResult {
    state.catalogue.end_admin_session(&s.id).await?;
    audit(&state, &s, "sign-out", &s.user, "").await?;
    let mut r = super::see_other("/admin/login");
    if let Ok(v) = set_cookie(COOKIE, "", 0, over_https(&state, &headers)).parse() {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    Ok(r)
}

fn password_page(s: &Session, status: StatusCode, message: &str, done: bool) -> PageResult {
    let mut r = page(
        s,
        "password.html",
        "password",
        minijinja::context! { message => message, done => done, min_len => MIN_PASSWORD_LEN },
    )?;
    *r.status_mut() = status;
    Ok(r)
}

/// `GET /admin/password`.
pub async fn password_form(Extension(s): Extension<Session>) -> PageResult {
    password_page(&s, StatusCode::OK, "", false)
}

/// The change-password form.
#[derive(Deserialize)]
pub struct PasswordForm {
    #[serde(default)]
    current: String,
    #[serde(default)]
    new: String,
    #[serde(default)]
    again: String,
}

/// `POST /admin/password`: needs the current password; ends every other
/// session of the user.
pub async fn change_password(
    State(state): State<AppState>,
    Extension(s): Extension<Session>,
    Form(form): Form<PasswordForm>,
) -> Result<Response, AdminError> {
    if !state
        .catalogue
        .check_admin_password(&s.user, &form.current)
        .await?
    {
        tokio::time::sleep(state.admin.lockout.base_delay).await;
        return password_page(
            &s,
            StatusCode::UNAUTHORIZED,
            "the current password is wrong",
            false,
        );
    }
    if form.new != form.again {
        return password_page(
            &s,
            StatusCode::BAD_REQUEST,
            "the two new passwords differ",
            false,
        );
    }
    if let Err(m) = check_password(&form.new) {
        return password_page(&s, StatusCode::BAD_REQUEST, &m, false);
    }
    state
        .catalogue
        .set_admin_password(&s.user, &form.new, Some(&s.id))
        .await?;
    audit(&state, &s, "user.password", &s.user, "other sessions ended").await?;
    password_page(&s, StatusCode::OK, "", true)
}
