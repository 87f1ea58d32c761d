//! docker's error responses: a status code and `{"message": "..."}`.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use berth_host::client::ClientError;
use berth_protocol::ErrorKind;

/// An error answered to an API client.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
        }
    }

    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, message)
    }

    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, message)
    }

    pub fn internal(message: impl std::fmt::Display) -> ApiError {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, message.to_string())
    }
}

impl From<ClientError> for ApiError {
    fn from(e: ClientError) -> ApiError {
        let status = match e.kind() {
            Some(ErrorKind::NotFound) => StatusCode::NOT_FOUND,
            Some(ErrorKind::Conflict) => StatusCode::CONFLICT,
            Some(ErrorKind::InvalidArgument) => StatusCode::BAD_REQUEST,
            // dockerd answers an OCI start failure with 400 and a text the
            // CLI maps to exit codes 126/127.
            Some(ErrorKind::CommandNotFound) | Some(ErrorKind::CommandNotExecutable) => {
                StatusCode::BAD_REQUEST
            }
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError::new(status, e.to_string())
    }
}

impl From<anyhow::Error> for ApiError {
    fn from(e: anyhow::Error) -> ApiError {
        match e.downcast::<ClientError>() {
            Ok(c) => c.into(),
            Err(e) => ApiError::internal(format!("{e:#}")),
        }
    }
}

/// The JSON body docker sends with an error.
pub fn body(message: &str) -> String {
    serde_json::json!({ "message": message }).to_string()
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            [(axum::http::header::CONTENT_TYPE, "application/json")],
            body(&self.message) + "\n",
        )
            .into_response()
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
