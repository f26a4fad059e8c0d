//! Sessions and CSRF: the middleware in front of every page but sign-in.
//!
//! A request without a live session is redirected to the sign-in page (GET)
//! or refused (POST), before any handler reads data. A POST must carry the
//! session's CSRF token: the `csrf` field of a url-encoded form (the body
//! is read here, bounded, and handed on), or the `csrf` query parameter of
//! a multipart upload (whose body streams to the handler unread).

use super::AdminError;
use crate::render::DownloadBase;
use crate::state::AppState;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};

/// The session cookie's name.
pub const COOKIE: &str = "ota_admin";

/// The signed-in user of a request (put in its extensions by [`require`]).
#[derive(Clone, Debug)]
pub struct Session {
    /// The cookie value (to end this session, or keep it on a password change).
    pub id: String,
    /// User name.
    pub user: String,
    /// The token every form of this session carries.
    pub csrf: String,
}

impl Session {
    /// The audit log's actor: `user:NAME`.
    pub fn actor(&self) -> String {
        format!("user:{}", self.user)
    }
}

/// A cookie's value from the request's `Cookie` headers.
pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim().to_owned())
}

/// Whether the browser reached us over https: the configured public URL
/// says so, or (only when the operator trusts a proxy's headers with
/// `--url-from-request`) its `X-Forwarded-Proto`.
pub fn over_https(state: &AppState, headers: &HeaderMap) -> bool {
    match state.download_base.as_ref() {
        DownloadBase::Fixed(base) => base.starts_with("https://"),
        DownloadBase::FromRequest { .. } => headers
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|p| p.trim().eq_ignore_ascii_case("https")),
    }
}

/// A `Set-Cookie` value with the admin's attributes (`max_age` 0 clears it).
pub fn set_cookie(name: &str, value: &str, max_age: u64, secure: bool) -> String {
    format!(
        "{name}={value}; HttpOnly; SameSite=Strict; Path=/admin; Max-Age={max_age}{}",
        if secure { "; Secure" } else { "" }
    )
}

/// Compares two tokens in time independent of where they differ.
pub fn same_token(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() || a.is_empty() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The `csrf` field of a url-encoded body or query string.
pub fn csrf_field(encoded: &[u8]) -> Option<String> {
    form_urlencoded::parse(encoded)
        .find(|(k, _)| k == "csrf")
        .map(|(_, v)| v.into_owned())
}

fn forbidden(message: &str) -> Response {
    AdminError {
        status: StatusCode::FORBIDDEN,
        message: message.to_owned(),
    }
    .into_response()
}

/// The middleware: a live session, and on POST its CSRF token.
pub async fn require(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let session = match cookie(req.headers(), COOKIE) {
        Some(id) => match state.catalogue.admin_session(&id).await {
            Ok(s) => s.map(|s| Session {
                id,
                user: s.user,
                csrf: s.csrf,
            }),
            Err(e) => return AdminError::from(e).into_response(),
        },
        None => None,
    };
    let Some(session) = session else {
        if req.method() == Method::GET || req.method() == Method::HEAD {
            return Redirect::to("/admin/login").into_response();
        }
        return forbidden("your session has ended: sign in again; nothing was changed");
    };
    let (mut parts, body) = req.into_parts();
    let body =
        if parts.method == Method::POST {
            let multipart = parts
                .headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.to_ascii_lowercase().starts_with("multipart/form-data"));
            let (token, body) = if multipart {
                let q = parts.uri.query().unwrap_or("");
                (csrf_field(q.as_bytes()), body)
            } else {
                let bytes = match axum::body::to_bytes(body, super::MAX_FORM_BYTES).await {
                    Ok(b) => b,
                    Err(_) => {
                        return AdminError {
                            status: StatusCode::PAYLOAD_TOO_LARGE,
                            message: format!(
                                "the form is larger than {} bytes; nothing was changed",
                                super::MAX_FORM_BYTES
                            ),
                        }
                        .into_response()
                    }
                };
                (csrf_field(&bytes), Body::from(bytes))
            };
            match token {
                Some(t) if same_token(&t, &session.csrf) => body,
                Some(_) => return forbidden(
                    "the form's security token is stale (from another session or an old page): \
                     reload the page and try again; nothing was changed",
                ),
                None => return forbidden("the form has no security token; nothing was changed"),
            }
        } else {
            body
        };
    parts.extensions.insert(session);
    next.run(Request::from_parts(parts, body)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_and_tokens() {
        let mut h = HeaderMap::new();
        h.insert(header::COOKIE, "a=1; ota_admin=abc ; b=2".parse().unwrap());
        assert_eq!(cookie(&h, COOKIE).as_deref(), Some("abc"));
        assert_eq!(cookie(&h, "c"), None);
        assert!(same_token("abc", "abc"));
        assert!(!same_token("abc", "abd"));
        assert!(!same_token("abc", "ab"));
        assert!(!same_token("", ""));
        assert_eq!(csrf_field(b"x=1&csrf=t%2B").as_deref(), Some("t+"));
        let c = set_cookie(COOKIE, "v", 10, true);
        assert!(c.contains("HttpOnly") && c.contains("SameSite=Strict") && c.ends_with("Secure"));
    }
}
