//! API errors: a status, a machine-readable code and a message that names the offending
//! field.

use hyper::{Response, StatusCode};
use serde_json::json;

use super::{json_response, Body};

/// The result of a handler.
pub type ApiResult = Result<Response<Body>, ApiError>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: String,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &str, message: impl Into<String>) -> Self {
        Self {
            status,
            code: code.to_owned(),
            message: message.into(),
        }
    }

    /// 400 `invalid_request`.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", message)
    }

    /// 422 `validation_failed`, naming the field.
    pub fn invalid_field(field: &str, message: impl std::fmt::Display) -> Self {
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            format!("{field}: {message}"),
        )
    }

    /// 404 `not_found`.
    pub fn not_found(what: &str, id: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("{what} {id:?} does not exist"),
        )
    }

    /// 409 `conflict`.
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "conflict", message)
    }

    pub fn into_response(self) -> Response<Body> {
        json_response(
            self.status,
            json!({"error": {"code": self.code, "message": self.message}}),
        )
    }
}

impl From<crate::store::page::PageError> for ApiError {
    /// A bad `limit` or `cursor`: 400 naming the parameter.
    fn from(error: crate::store::page::PageError) -> Self {
        Self::bad_request(error.to_string())
    }
}

impl From<mongodb::error::Error> for ApiError {
    /// The store is unreachable or refused the operation: 503, never a 500.
    fn from(error: mongodb::error::Error) -> Self {
        tracing::warn!(error = %crate::text::one_line(&error.to_string()), "MongoDB error in an API request");
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "store_unavailable",
            "MongoDB did not complete the operation; try again",
        )
    }
}
