//! The one error type of the HTTP layer.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use thiserror::Error;

use crate::domain::InvalidField;
use crate::ledger::LedgerError;

/// Every way a request can fail. Each variant maps to exactly one status
/// code (docs/contract.md §2.4) and is answered with a
/// JSON body `{"error": "<message>"}`.
#[derive(Debug, Error)]
pub enum ApiError {
    /// The body is not one well-formed JSON value (syntax error, empty
    /// body, trailing data): 400.
    #[error("malformed JSON: {0}")]
    MalformedJson(String),
    /// Well-formed JSON that breaks a field rule (docs/contract.md §2): 422.
    #[error("{0}")]
    InvalidField(#[from] InvalidField),
    /// The debit would take the balance below `-limite` (docs/contract.md §2): 422.
    #[error("debit would exceed the account's limit")]
    LimitExceeded,
    /// The new balance would overflow 64-bit cents: 422.
    #[error("the new balance would overflow")]
    Overflow,
    /// The `Idempotency-Key` was first used for a different request: 422.
    #[error("Idempotency-Key was already used for a different request")]
    IdempotencyKeyReused,
    /// No account with this id, or an id that cannot name one: 404.
    #[error("account not found")]
    AccountNotFound,
    /// No route for this path: 404.
    #[error("not found")]
    NotFound,
    /// The path exists but not for this method: 405.
    #[error("method not allowed")]
    MethodNotAllowed,
    /// The body is larger than the limit: 413.
    #[error("request body larger than {0} bytes")]
    PayloadTooLarge(usize),
    /// `Content-Type` is missing or not JSON: 415.
    #[error("expected Content-Type: application/json")]
    UnsupportedMediaType,
    /// The database cannot answer now: 503. The detail is logged, never
    /// sent to the client.
    #[error("service unavailable")]
    Unavailable(String),
}

impl ApiError {
    /// The status code of this variant.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::MalformedJson(_) => StatusCode::BAD_REQUEST,
            ApiError::InvalidField(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::LimitExceeded => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Overflow => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::IdempotencyKeyReused => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::AccountNotFound => StatusCode::NOT_FOUND,
            ApiError::NotFound => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

impl From<LedgerError> for ApiError {
    fn from(error: LedgerError) -> Self {
        match error {
            LedgerError::AccountNotFound => ApiError::AccountNotFound,
            LedgerError::LimitExceeded => ApiError::LimitExceeded,
            LedgerError::Overflow => ApiError::Overflow,
            LedgerError::IdempotencyKeyReused => ApiError::IdempotencyKeyReused,
            LedgerError::Unavailable(detail) => ApiError::Unavailable(detail),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let ApiError::Unavailable(detail) = &self {
            tracing::error!(%detail, "ledger unavailable");
        }
        let body = serde_json::json!({ "error": self.to_string() });
        super::json_response(self.status(), &body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unavailable_detail_is_not_in_the_client_message() {
        let error = ApiError::Unavailable("password authentication failed for user x".into());
        assert_eq!(error.to_string(), "service unavailable");
        assert_eq!(error.status(), StatusCode::SERVICE_UNAVAILABLE);
    }

    #[test]
    fn ledger_errors_map_to_their_status() {
        let status = |e| ApiError::from(e).status();
        assert_eq!(status(LedgerError::AccountNotFound), StatusCode::NOT_FOUND);
        assert_eq!(
            status(LedgerError::LimitExceeded),
            StatusCode::UNPROCESSABLE_ENTITY
        );
        assert_eq!(
            status(LedgerError::Overflow),
            StatusCode::UNPROCESSABLE_ENTITY
        );
        assert_eq!(
            status(LedgerError::Unavailable(String::new())),
            StatusCode::SERVICE_UNAVAILABLE
        );
    }
}
