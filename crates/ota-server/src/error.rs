//! API errors. The package API answers with a status and a plain-text
//! message; `/api/v1/` answers with `{"error":{"code":…,"message":…}}`.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

/// An error to answer a request with.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable machine-readable code.
    pub code: &'static str,
    /// Human-readable explanation.
    pub message: String,
}

impl ApiError {
    /// Builds an error.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }
    /// 400.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }
    /// 404.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }
    /// 401.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }
    /// 403: authenticated, but the key's scopes do not allow it.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }
    /// 413.
    pub fn too_large(message: impl Into<String>) -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, "too_large", message)
    }
    /// 500; the details go to the log, not to the client.
    pub fn internal(context: &str, err: impl std::fmt::Display) -> Self {
        tracing::error!("{context}: {err}");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            format!("internal error while {context}"),
        )
    }

    /// The plain-text answer of the package API.
    pub fn into_plain(self) -> Response {
        (
            self.status,
            [("content-type", "text/plain; charset=utf-8")],
            format!("{}\n", self.message),
        )
            .into_response()
    }

    /// The JSON answer of `/api/v1/`.
    pub fn into_json(self) -> Response {
        let body = serde_json::json!({"error": {"code": self.code, "message": self.message}});
        (self.status, axum::Json(body)).into_response()
    }
}

impl From<ota_store::StoreError> for ApiError {
    fn from(e: ota_store::StoreError) -> Self {
        ApiError::internal("reading the catalogue", e)
    }
}

/// Wraps a handler result for `/api/v1/` so `?` works with [`ApiError`].
pub struct JsonError(pub ApiError);

impl IntoResponse for JsonError {
    fn into_response(self) -> Response {
        self.0.into_json()
    }
}

impl<E: Into<ApiError>> From<E> for JsonError {
    fn from(e: E) -> Self {
        JsonError(e.into())
    }
}

/// Wraps a handler result for the package API.
pub struct PlainError(pub ApiError);

impl IntoResponse for PlainError {
    fn into_response(self) -> Response {
        self.0.into_plain()
    }
}

impl<E: Into<ApiError>> From<E> for PlainError {
    fn from(e: E) -> Self {
        PlainError(e.into())
    }
}
