//! Errors in OpenAI's shape: `{"error": {"message", "type", "param", "code"}}` with a 4xx status
//! for anything the client did wrong, 503 (with `Retry-After`) when the queue is full, 500 only
//! for faults of the server itself (an engine error that is not about the request).

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use saguaro_engine::Error;
use serde_json::json;

/// An error answer.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    /// OpenAI's `type`: `invalid_request_error`, `authentication_error`, `not_found_error`,
    /// `server_error`, ...
    pub kind: &'static str,
    /// The request field at fault, when one is.
    pub param: Option<String>,
    /// A machine-readable code (`context_length_exceeded`, `invalid_api_key`, ...).
    pub code: Option<&'static str>,
    /// Seconds for `Retry-After` (503 only).
    pub retry_after: Option<u32>,
}

impl ApiError {
    /// A 400 about the request, naming the field at fault.
    pub fn invalid(param: impl Into<Option<String>>, message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
            kind: "invalid_request_error",
            param: param.into(),
            code: None,
            retry_after: None,
        }
    }

    /// A 400 about field `param`.
    pub fn field(param: &str, message: impl Into<String>) -> Self {
        Self::invalid(Some(param.to_string()), message)
    }

    pub fn with_status(mut self, status: StatusCode) -> Self {
        self.status = status;
        self
    }

    pub fn with_code(mut self, code: &'static str) -> Self {
        self.code = Some(code);
        self
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        ApiError { kind: "not_found_error", ..Self::invalid(None, message).with_status(StatusCode::NOT_FOUND) }
    }

    pub fn unauthorized() -> Self {
        ApiError {
            kind: "authentication_error",
            ..Self::invalid(None, "missing or incorrect API key (send `Authorization: Bearer <key>`)")
                .with_status(StatusCode::UNAUTHORIZED)
                .with_code("invalid_api_key")
        }
    }

    /// The queue is full: come back later.
    pub fn overloaded(message: impl Into<String>) -> Self {
        ApiError {
            kind: "server_error",
            retry_after: Some(1),
            ..Self::invalid(None, message).with_status(StatusCode::SERVICE_UNAVAILABLE).with_code("server_overloaded")
        }
    }

    /// A fault of the server, not of the request.
    pub fn internal(message: impl Into<String>) -> Self {
        ApiError { kind: "server_error", ..Self::invalid(None, message).with_status(StatusCode::INTERNAL_SERVER_ERROR) }
    }

    /// An engine error from running a request: the request's fault (400) unless the engine
    /// says the model or the machine failed.
    pub fn from_engine(code: Option<&str>, message: &str) -> Self {
        match code {
            Some("context_full") => Self::invalid(Some("messages".into()), message).with_code("context_length_exceeded"),
            Some("input") | None => Self::invalid(None, message),
            Some(_) => Self::internal(message),
        }
    }

    /// The JSON body.
    pub fn body(&self) -> serde_json::Value {
        json!({"error": {"message": self.message, "type": self.kind, "param": self.param, "code": self.code}})
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        ApiError::from_engine(Some(e.code()), &e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = super::json_response(self.status, &self.body());
        if let Some(s) = self.retry_after {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        response
    }
}
