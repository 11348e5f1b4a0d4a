//! The one error type of the HTTP layer.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use thiserror::Error;

use crate::domain::{InvalidField, PostingError};
use crate::ledger::{ErrorChain, LedgerError};

/// Every way a request can fail. Each variant maps to exactly one status
/// code (docs/contract.md §2.4) and is answered with a
/// JSON body `{"error": "<message>"}`. Errors of the layers below are
/// wrapped, not copied: a refused posting keeps its [`PostingError`], an
/// unavailable ledger its [`LedgerError`] with the whole cause.
#[derive(Debug, Error)]
pub enum ApiError {
    /// The body is not one well-formed JSON value (syntax error, empty
    /// body, trailing data): 400.
    #[error("malformed JSON: {0}")]
    MalformedJson(String),
    /// Well-formed JSON that breaks a field rule (docs/contract.md §2): 422.
    #[error("{0}")]
    InvalidField(#[from] InvalidField),
    /// A posting refused by a rule — the debit would take the balance below
    /// `-limite`, the new balance would overflow 64-bit cents, or the
    /// `Idempotency-Key` was first used for a different request
    /// (docs/contract.md §2.4): 422, nothing recorded.
    #[error(transparent)]
    Refused(#[from] PostingError),
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
    /// The database cannot answer now: 503. The cause is logged whole,
    /// never sent to the client.
    #[error("service unavailable")]
    Unavailable(#[source] LedgerError),
}

impl ApiError {
    /// The status code of this variant.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::MalformedJson(_) => StatusCode::BAD_REQUEST,
            ApiError::InvalidField(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Refused(_) => StatusCode::UNPROCESSABLE_ENTITY,
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
    /// Each ledger error to the one variant with its status.
    fn from(error: LedgerError) -> Self {
        match error {
            LedgerError::AccountNotFound => ApiError::AccountNotFound,
            LedgerError::Refused(refusal) => ApiError::Refused(refusal),
            unavailable @ LedgerError::Unavailable { .. } => ApiError::Unavailable(unavailable),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let ApiError::Unavailable(cause) = &self {
            tracing::error!("{}", ErrorChain(cause));
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
        let cause = std::io::Error::other("password authentication failed for user x");
        let error = ApiError::from(LedgerError::unavailable("PostgreSQL", cause));
        assert_eq!(error.to_string(), "service unavailable");
        assert_eq!(error.status(), StatusCode::SERVICE_UNAVAILABLE);
        // The whole cause stays reachable for the log.
        assert!(ErrorChain(&error)
            .to_string()
            .contains("password authentication failed"));
    }

    #[test]
    fn ledger_errors_map_to_their_status() {
        let status = |e| ApiError::from(e).status();
        assert_eq!(status(LedgerError::AccountNotFound), StatusCode::NOT_FOUND);
        for refusal in [
            PostingError::LimitExceeded,
            PostingError::Overflow,
            PostingError::IdempotencyKeyReused,
        ] {
            assert_eq!(
                status(LedgerError::Refused(refusal)),
                StatusCode::UNPROCESSABLE_ENTITY
            );
            // The message is the refusal's own.
            assert_eq!(ApiError::from(refusal).to_string(), refusal.to_string());
        }
        assert_eq!(
            status(LedgerError::unavailable_because("x")),
            StatusCode::SERVICE_UNAVAILABLE
        );
    }
}
