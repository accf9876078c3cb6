//! Errors as the API answers them: `{ "code": ..., "message": ... }` (and `errors` with
//! one entry per bad item of a bulk request), with the status that says whose mistake it
//! was. Malformed input is always a 4xx; a 500 means the database failed.

use crate::change::WriteError;
use axum::Json;
use axum::extract::FromRequest;
use axum::extract::rejection::JsonRejection;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// One entry per bad item: `{ "index"?, "field"?, "message" }`.
    pub errors: Vec<Value>,
    /// Made from a database error that is worth running the transaction again for.
    retryable: bool,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            errors: Vec::new(),
            retryable: false,
        }
    }

    pub fn invalid(message: impl Into<String>, errors: Vec<Value>) -> ApiError {
        ApiError {
            errors,
            ..ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid", message)
        }
    }

    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    pub fn conflict(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::CONFLICT, "refused", message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = json!({"code": self.code, "message": self.message});
        if !self.errors.is_empty() {
            body["errors"] = Value::Array(self.errors);
        }
        (self.status, Json(body)).into_response()
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> ApiError {
        let retryable = crate::store::retryable(&e);
        if retryable {
            tracing::debug!("database conflict in an API request (run again): {e}");
        } else {
            tracing::error!("database error in an API request: {e}");
        }
        ApiError {
            retryable,
            ..ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "database_unavailable",
                "the database could not complete the request; try again",
            )
        }
    }
}

impl From<WriteError> for ApiError {
    fn from(e: WriteError) -> ApiError {
        match e {
            WriteError::Missing { message, .. } => ApiError::not_found(message),
            WriteError::Refused { message, .. } => ApiError::conflict(message),
            WriteError::Sql(e) => e.into(),
        }
    }
}

/// A JSON body whose rejections are API errors: 400 malformed JSON, 415 not JSON,
/// 413 too large, 422 the wrong shape.
#[derive(FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub struct Body<T>(pub T);

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> ApiError {
        let (status, code) = match &r {
            JsonRejection::JsonDataError(_) => (StatusCode::UNPROCESSABLE_ENTITY, "invalid"),
            JsonRejection::JsonSyntaxError(_) => (StatusCode::BAD_REQUEST, "malformed_json"),
            JsonRejection::MissingJsonContentType(_) => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type")
            }
            _ if r.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                (StatusCode::PAYLOAD_TOO_LARGE, "too_large")
            }
            _ => (StatusCode::BAD_REQUEST, "bad_request"),
        };
        let message = match status {
            StatusCode::PAYLOAD_TOO_LARGE => format!(
                "the body is larger than {} bytes; send a bulk request in parts",
                super::BODY_LIMIT
            ),
            StatusCode::UNSUPPORTED_MEDIA_TYPE => {
                "send the body as JSON with Content-Type: application/json".to_string()
            }
            _ => r.body_text(),
        };
        ApiError::new(status, code, message)
    }
}

pub async fn not_found() -> ApiError {
    ApiError::not_found("no such resource (see /api/v1/openapi.json)")
}

impl crate::store::Retryable for ApiError {
    fn retryable(&self) -> bool {
        self.retryable
    }
}
