//! The one error type of the HTTP layer, and the problem details (RFC 9457)
//! every error is answered with.

use axum::http::{header, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use thiserror::Error;

use crate::domain::{AccountId, FieldRule, InvalidField, PostingError, SEEDED_ACCOUNTS};
use crate::ledger::{ErrorChain, LedgerError};

/// Media type of every error body (RFC 9457 §3).
pub const PROBLEM_JSON: &str = "application/problem+json";

/// Declares [`ProblemType`]: one variant per rule a request can break, with
/// its kebab-case name, its status and its title, listed once.
macro_rules! problem_types {
    ($($(#[$doc:meta])* $variant:ident = $name:literal, $status:ident, $title:literal;)*) => {
        /// The kind of a problem: one per rule (docs/contract.md §2.5), so
        /// that a client can tell one refusal from another without parsing
        /// English. Its URI (`type` in the body) is
        /// `urn:crebito:problem:<name>` and never changes.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum ProblemType {
            $($(#[$doc])* $variant,)*
        }

        impl ProblemType {
            /// Every problem type, in the order of docs/contract.md §2.5.
            pub const ALL: &'static [ProblemType] = &[$(ProblemType::$variant,)*];

            /// The stable URI, `urn:crebito:problem:<name>`.
            pub fn uri(self) -> &'static str {
                match self {
                    $(ProblemType::$variant => concat!("urn:crebito:problem:", $name),)*
                }
            }

            /// The status every problem of this type is answered with.
            pub fn status(self) -> StatusCode {
                match self {
                    $(ProblemType::$variant => StatusCode::$status,)*
                }
            }

            /// A short summary that does not change from occurrence to
            /// occurrence (RFC 9457 §3.1.3).
            pub fn title(self) -> &'static str {
                match self {
                    $(ProblemType::$variant => $title,)*
                }
            }
        }
    };
}

problem_types! {
    /// The request line or a header field is not valid HTTP/1.1 (RFC 9112 §2.2),
    /// including a `Transfer-Encoding` that is not `chunked` last, or applies it twice (RFC 9112 §6.1, §6.3).
    MalformedRequest = "malformed-request", BAD_REQUEST, "Malformed request";
    /// An HTTP/1.1 request without exactly one valid `Host` (RFC 9112 §3.2).
    InvalidHost = "invalid-host", BAD_REQUEST, "Missing or repeated Host";
    /// The request line is longer than the request head limit (RFC 9112 §3).
    UriTooLong = "uri-too-long", URI_TOO_LONG, "URI too long";
    /// The request head is larger than its limit, or has too many fields (RFC 6585 §5).
    RequestHeadTooLarge = "request-head-too-large", REQUEST_HEADER_FIELDS_TOO_LARGE, "Request head too large";
    /// A transfer coding other than `chunked` (RFC 9112 §6.1).
    UnsupportedTransferEncoding = "unsupported-transfer-encoding", NOT_IMPLEMENTED, "Unsupported transfer coding";
    /// No route for this path.
    NotFound = "not-found", NOT_FOUND, "Not found";
    /// No account with this id, or an id that cannot name one.
    AccountNotFound = "account-not-found", NOT_FOUND, "Account not found";
    /// The path exists, not for this method.
    MethodNotAllowed = "method-not-allowed", METHOD_NOT_ALLOWED, "Method not allowed";
    /// More than one `Content-Type` field (RFC 9110 §8.3: a singleton).
    RepeatedContentType = "repeated-content-type", BAD_REQUEST, "Repeated Content-Type";
    /// `Content-Type` missing or not JSON.
    UnsupportedMediaType = "unsupported-media-type", UNSUPPORTED_MEDIA_TYPE, "Unsupported media type";
    /// A content coding other than `identity` (RFC 9110 §8.4.1, §15.5.16).
    UnsupportedContentEncoding = "unsupported-content-encoding", UNSUPPORTED_MEDIA_TYPE, "Unsupported content coding";
    /// The body is larger than the limit.
    BodyTooLarge = "body-too-large", PAYLOAD_TOO_LARGE, "Request body too large";
    /// The body did not arrive within the body deadline.
    BodyTimeout = "body-timeout", REQUEST_TIMEOUT, "Request body not received in time";
    /// The body's framing is broken: a malformed chunk, or the connection
    /// ended before the declared length.
    UnreadableBody = "unreadable-body", BAD_REQUEST, "Unreadable request body";
    /// The body is not exactly one well-formed JSON text in UTF-8.
    MalformedJson = "malformed-json", BAD_REQUEST, "Malformed JSON";
    /// A query parameter of the history out of range, not an integer or
    /// repeated (docs/contract.md §2.8).
    InvalidQuery = "invalid-query", BAD_REQUEST, "Invalid query parameter";
    /// Well-formed JSON that is not one object with each field at most once.
    InvalidBody = "invalid-body", UNPROCESSABLE_ENTITY, "Body is not a posting";
    /// `valor` missing, `null`, not an integer or out of range.
    InvalidValor = "invalid-valor", UNPROCESSABLE_ENTITY, "Invalid valor";
    /// `tipo` missing, `null` or not `"c"`/`"d"`.
    InvalidTipo = "invalid-tipo", UNPROCESSABLE_ENTITY, "Invalid tipo";
    /// `descricao` missing, `null`, not a string, of the wrong length, or with a NUL.
    InvalidDescricao = "invalid-descricao", UNPROCESSABLE_ENTITY, "Invalid descricao";
    /// `Idempotency-Key` malformed or sent more than once.
    InvalidIdempotencyKey = "invalid-idempotency-key", UNPROCESSABLE_ENTITY, "Invalid Idempotency-Key";
    /// The debit would take the balance below `-limite`.
    LimitExceeded = "limit-exceeded", UNPROCESSABLE_ENTITY, "Debit exceeds the limit";
    /// The credit would take the balance past 64-bit cents.
    BalanceOverflow = "balance-overflow", UNPROCESSABLE_ENTITY, "Balance would overflow";
    /// The `Idempotency-Key` was first used for a different request.
    IdempotencyKeyReused = "idempotency-key-reused", UNPROCESSABLE_ENTITY, "Idempotency-Key reused";
    /// The database cannot answer now.
    ServiceUnavailable = "service-unavailable", SERVICE_UNAVAILABLE, "Service unavailable";
    /// `GET /health`: this instance cannot serve (the detail says why).
    Unhealthy = "unhealthy", SERVICE_UNAVAILABLE, "Unhealthy";
}

/// A problem details object (RFC 9457 §3): the body of every error
/// response, `{"type", "title", "status", "detail"}`, sent as
/// `application/problem+json`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Which rule; gives `type`, `title` and `status`.
    pub kind: ProblemType,
    /// What went wrong with this request, for people (RFC 9457 §3.1.4).
    pub detail: String,
}

impl Serialize for Problem {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Wire<'a> {
            #[serde(rename = "type")]
            kind: &'static str,
            title: &'static str,
            status: u16,
            detail: &'a str,
        }
        Wire {
            kind: self.kind.uri(),
            title: self.kind.title(),
            status: self.kind.status().as_u16(),
            detail: &self.detail,
        }
        .serialize(serializer)
    }
}

impl Problem {
    /// The body as JSON bytes.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a problem always serialises")
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        (
            self.kind.status(),
            [(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON))],
            self.to_json(),
        )
            .into_response()
    }
}

/// Every way a request can fail. Each variant maps to exactly one status
/// code (docs/contract.md §2.4, §2.7) and is answered with a [`Problem`]
/// (docs/contract.md §2.5). Errors of the layers below are wrapped, not
/// copied: a refused posting keeps its [`PostingError`], an unavailable
/// ledger its [`LedgerError`] with the whole cause.
#[derive(Debug, Error)]
pub enum ApiError {
    /// An HTTP/1.1 request without exactly one valid `Host` field: 400
    /// (RFC 9112 §3.2).
    #[error("{0}")]
    InvalidHost(&'static str),
    /// A `Transfer-Encoding` other than `chunked`: 501 (RFC 9112 §6.1).
    #[error("only the chunked transfer coding is supported")]
    UnsupportedTransferEncoding,
    /// `chunked` applied more than once (`Transfer-Encoding: chunked,
    /// chunked`, or in two fields), which RFC 9112 §6.1 forbids: 400, and
    /// the connection is closed, since the body's framing cannot be
    /// trusted (RFC 9112 §6.3).
    #[error("the chunked transfer coding is applied more than once")]
    RepeatedChunked,
    /// The body is not one well-formed JSON value (syntax error, empty
    /// body, trailing data, invalid UTF-8): 400.
    #[error("malformed JSON: {0}")]
    MalformedJson(String),
    /// The body could not be read: a malformed chunk, or the connection
    /// ended before the declared length: 400.
    #[error("the request body could not be read: {0}")]
    UnreadableBody(String),
    /// Well-formed JSON that breaks a field rule (docs/contract.md §2): 422.
    #[error("{0}")]
    InvalidField(#[from] InvalidField),
    /// A posting refused by a rule — the debit would take the balance below
    /// `-limite`, the new balance would overflow 64-bit cents, or the
    /// `Idempotency-Key` was first used for a different request
    /// (docs/contract.md §2.4): 422, nothing recorded.
    #[error(transparent)]
    Refused(#[from] PostingError),
    /// No account with this id, or an id that cannot name one: 404. The
    /// message ([`ApiError::account_not_found`]) names the id asked and
    /// the seeded accounts.
    #[error("{0}")]
    AccountNotFound(String),
    /// No route for this path: 404. The message ([`ApiError::not_found`])
    /// names the method and path asked and the routes served.
    #[error("{0}")]
    NotFound(String),
    /// The path exists but not for this method: 405. The message
    /// ([`ApiError::method_not_allowed`]) names the method and path asked
    /// and the methods allowed (those of the `Allow` header).
    #[error("{0}")]
    MethodNotAllowed(String),
    /// More than one `Content-Type` field: 400 (RFC 9110 §8.3 defines one
    /// media type; RFC 9110 §5.3 forbids repeating a singleton field).
    #[error("Content-Type must be sent once")]
    RepeatedContentType,
    /// The body is larger than the limit: 413.
    #[error("request body larger than {0} bytes")]
    PayloadTooLarge(usize),
    /// The body did not arrive within the deadline (milliseconds): 408, and
    /// the connection is closed (RFC 9110 §15.5.9).
    #[error("the request body did not arrive within {0} ms")]
    BodyTimeout(u128),
    /// `Content-Type` is missing or not JSON: 415.
    #[error("expected Content-Type: application/json")]
    UnsupportedMediaType,
    /// A `Content-Encoding` other than `identity`: 415, answered with
    /// `Accept-Encoding: identity` (RFC 9110 §12.5.3, §15.5.16).
    #[error("request content codings are not supported; send the body as is")]
    UnsupportedContentEncoding,
    /// The database cannot answer now: 503. The cause is logged whole,
    /// never sent to the client.
    #[error("service unavailable")]
    Unavailable(#[source] LedgerError),
}

impl ApiError {
    /// The problem type of this error; its status is the response's.
    pub fn problem_type(&self) -> ProblemType {
        match self {
            ApiError::InvalidHost(_) => ProblemType::InvalidHost,
            ApiError::UnsupportedTransferEncoding => ProblemType::UnsupportedTransferEncoding,
            ApiError::RepeatedChunked => ProblemType::MalformedRequest,
            ApiError::MalformedJson(_) => ProblemType::MalformedJson,
            ApiError::UnreadableBody(_) => ProblemType::UnreadableBody,
            ApiError::InvalidField(invalid) => match invalid.rule {
                FieldRule::Query => ProblemType::InvalidQuery,
                FieldRule::Body => ProblemType::InvalidBody,
                FieldRule::Amount => ProblemType::InvalidValor,
                FieldRule::Kind => ProblemType::InvalidTipo,
                FieldRule::Description => ProblemType::InvalidDescricao,
                FieldRule::IdempotencyKey => ProblemType::InvalidIdempotencyKey,
            },
            ApiError::Refused(PostingError::LimitExceeded) => ProblemType::LimitExceeded,
            ApiError::Refused(PostingError::Overflow) => ProblemType::BalanceOverflow,
            ApiError::Refused(PostingError::IdempotencyKeyReused) => {
                ProblemType::IdempotencyKeyReused
            }
            ApiError::AccountNotFound(_) => ProblemType::AccountNotFound,
            ApiError::NotFound(_) => ProblemType::NotFound,
            ApiError::MethodNotAllowed(_) => ProblemType::MethodNotAllowed,
            ApiError::RepeatedContentType => ProblemType::RepeatedContentType,
            ApiError::PayloadTooLarge(_) => ProblemType::BodyTooLarge,
            ApiError::BodyTimeout(_) => ProblemType::BodyTimeout,
            ApiError::UnsupportedMediaType => ProblemType::UnsupportedMediaType,
            ApiError::UnsupportedContentEncoding => ProblemType::UnsupportedContentEncoding,
            ApiError::Unavailable(_) => ProblemType::ServiceUnavailable,
        }
    }

    /// The status code of this variant.
    pub fn status(&self) -> StatusCode {
        self.problem_type().status()
    }

    /// The body sent for this error.
    pub fn problem(&self) -> Problem {
        Problem {
            kind: self.problem_type(),
            detail: self.to_string(),
        }
    }
}

/// Longest part of a request's path, or of its method, repeated in a
/// detail, in bytes; a longer one is cut there and marked with `…` (a
/// request line may take 8 KiB, docs/contract.md §2.7).
const MAX_ECHOED_PATH: usize = 200;

/// `path` (or a method) as a detail repeats it: at most
/// [`MAX_ECHOED_PATH`] bytes.
fn echoed(path: &str) -> String {
    if path.len() <= MAX_ECHOED_PATH {
        return path.to_owned();
    }
    let mut end = MAX_ECHOED_PATH;
    while !path.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &path[..end])
}

/// What a 404 or 405 names as the target of the request (RFC 9112 §3.2):
/// the path of an origin-form or absolute-form target (the part that is
/// routed), `*` for the asterisk form (§3.2.4, `OPTIONS *`), and the
/// authority of the authority form (§3.2.3, `CONNECT host:port`), which
/// has no path to name.
pub fn request_target(uri: &Uri) -> &str {
    match uri.authority() {
        Some(authority) if uri.path().is_empty() => authority.as_str(),
        _ => uri.path(),
    }
}

/// What exists, as a 404 for an account says it: the seeded accounts
/// (docs/contract.md §2.3), not read from the ledger, so that an unknown
/// account costs no more than before.
fn seeded_accounts() -> String {
    format!(
        "a ledger is seeded with accounts {} to {}",
        SEEDED_ACCOUNTS.start(),
        SEEDED_ACCOUNTS.end()
    )
}

impl ApiError {
    /// 404 for the `{id}` segment `asked` of `/clientes/{id}/…`, as sent
    /// (percent-encoded): the detail says whether it is an id without an
    /// account or no id at all (docs/contract.md §2.3), and which accounts
    /// a ledger is seeded with ([`SEEDED_ACCOUNTS`]). Costs no database
    /// round trip.
    pub fn account_not_found(asked: &str) -> ApiError {
        let seeded = seeded_accounts();
        ApiError::AccountNotFound(match AccountId::parse(asked) {
            Some(id) => format!("there is no account {id}; {seeded}"),
            None => format!(
                "{:?} cannot name an account (an id is an integer from 1 to {}); {seeded}",
                echoed(asked),
                i32::MAX
            ),
        })
    }

    /// 404 for `method path`, no route: the detail names them and the
    /// routes served, `routes` (`Allow`-style methods, e.g. `GET,HEAD`,
    /// and path template each; the first method is named). `path` is the
    /// request's target as [`request_target`] names it (docs/contract.md
    /// §2.5).
    pub fn not_found(method: &Method, path: &str, routes: &[(&str, &str)]) -> ApiError {
        let routes: Vec<String> = routes
            .iter()
            .map(|(methods, route)| {
                // The first method is enough here (HEAD comes with GET).
                let method = methods.split(',').next().unwrap_or(methods);
                format!("{method} {route}")
            })
            .collect();
        ApiError::NotFound(format!(
            "no route for {} {}; the routes are {}",
            echoed(method.as_str()),
            echoed(path),
            routes.join(", ")
        ))
    }

    /// 405 for `method path`: the detail names them and `allowed`, the
    /// methods the path answers (the `Allow` header's, RFC 9110 §15.5.6).
    /// `path` is the request's target as [`request_target`] names it.
    pub fn method_not_allowed(method: &Method, path: &str, allowed: &str) -> ApiError {
        ApiError::MethodNotAllowed(format!(
            "{} is not allowed on {}; allowed: {allowed}",
            echoed(method.as_str()),
            echoed(path)
        ))
    }

    /// The API error of a ledger call on `account`: each ledger error to
    /// the one variant with its status, an unknown account named.
    pub fn for_account(error: LedgerError, account: AccountId) -> ApiError {
        match error {
            LedgerError::AccountNotFound => ApiError::account_not_found(&account.to_string()),
            other => other.into(),
        }
    }
}

impl From<LedgerError> for ApiError {
    /// Each ledger error to the one variant with its status (an unknown
    /// account without its id: see [`ApiError::for_account`]).
    fn from(error: LedgerError) -> Self {
        match error {
            LedgerError::AccountNotFound => ApiError::AccountNotFound(format!(
                "there is no such account; {}",
                seeded_accounts()
            )),
            LedgerError::Refused(refusal) => ApiError::Refused(refusal),
            unavailable @ LedgerError::Unavailable { .. } => ApiError::Unavailable(unavailable),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let ApiError::Unavailable(cause) = &self {
            crate::log_limit::error(&ErrorChain(cause).to_string());
        }
        let mut response = self.problem().into_response();
        match self {
            // The connection cannot carry another request: the body was
            // not (fully) read, or its framing is broken.
            ApiError::BodyTimeout(_) | ApiError::UnreadableBody(_) | ApiError::RepeatedChunked => {
                response
                    .headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            ApiError::UnsupportedContentEncoding => {
                response.headers_mut().insert(
                    header::ACCEPT_ENCODING,
                    HeaderValue::from_static("identity"),
                );
            }
            // For crebito_unavailable_total (observe.rs).
            ApiError::Unavailable(error) => {
                if let Some(cause) = error.unavailable_cause() {
                    response.extensions_mut().insert(cause);
                }
            }
            _ => {}
        }
        response
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
        assert_eq!(error.problem().detail, "service unavailable");
        // The whole cause stays reachable for the log.
        assert!(ErrorChain(&error)
            .to_string()
            .contains("password authentication failed"));
    }

    #[test]
    fn ledger_errors_map_to_their_status_and_type() {
        let status = |e| ApiError::from(e).status();
        assert_eq!(status(LedgerError::AccountNotFound), StatusCode::NOT_FOUND);
        let account = AccountId::new(7).unwrap();
        let error = ApiError::for_account(LedgerError::AccountNotFound, account);
        assert_eq!(error.problem_type(), ProblemType::AccountNotFound);
        assert_eq!(
            error.to_string(),
            "there is no account 7; a ledger is seeded with accounts 1 to 5"
        );
        for (refusal, kind) in [
            (PostingError::LimitExceeded, ProblemType::LimitExceeded),
            (PostingError::Overflow, ProblemType::BalanceOverflow),
            (
                PostingError::IdempotencyKeyReused,
                ProblemType::IdempotencyKeyReused,
            ),
        ] {
            let error = ApiError::from(LedgerError::Refused(refusal));
            assert_eq!(error.status(), StatusCode::UNPROCESSABLE_ENTITY);
            assert_eq!(error.problem_type(), kind);
            // The message is the refusal's own.
            assert_eq!(ApiError::from(refusal).to_string(), refusal.to_string());
        }
        assert_eq!(
            status(LedgerError::unavailable_because("x")),
            StatusCode::SERVICE_UNAVAILABLE
        );
    }

    #[test]
    fn problem_bodies_follow_rfc_9457() {
        let problem = ApiError::from(InvalidField::new(
            FieldRule::Description,
            "descricao must be 1 to 10 characters long",
        ))
        .problem();
        let body: serde_json::Value = serde_json::from_slice(&problem.to_json()).unwrap();
        assert_eq!(
            body,
            serde_json::json!({
                "type": "urn:crebito:problem:invalid-descricao",
                "title": "Invalid descricao",
                "status": 422,
                "detail": "descricao must be 1 to 10 characters long",
            })
        );
    }

    #[test]
    fn the_target_named_is_the_path_or_else_the_authority() {
        for (target, named) in [
            ("/clientes/1/extrato?x=1", "/clientes/1/extrato"),
            ("http://x/nothing?q", "/nothing"),
            ("http://x", "/"),
            ("*", "*"),
            ("x:80", "x:80"),
            ("[::1]:443", "[::1]:443"),
        ] {
            let uri: Uri = target.parse().unwrap();
            assert_eq!(request_target(&uri), named, "{target}");
        }
    }

    #[test]
    fn details_repeat_at_most_200_bytes_of_the_path() {
        let long = format!("/{}", "é".repeat(300));
        let detail = ApiError::not_found(&Method::GET, &long, &[("GET", "/health")]).to_string();
        assert!(detail.contains("é…;"), "{detail}");
        assert!(detail.len() < 300, "{detail}");
        // A method is any token, as long as the request line allows.
        let method = Method::from_bytes("X".repeat(5000).as_bytes()).unwrap();
        let detail = ApiError::not_found(&method, "/x", &[("GET", "/health")]).to_string();
        assert!(detail.contains("X…"), "{detail}");
        assert!(detail.len() < 300, "{detail}");
        let detail = ApiError::method_not_allowed(&method, "/health", "GET,HEAD").to_string();
        assert!(detail.len() < 300, "{detail}");
        let detail = ApiError::account_not_found(&"9".repeat(500)).to_string();
        assert!(detail.contains("9…\" cannot name"), "{detail}");
    }

    #[test]
    fn problem_types_are_distinct_urns() {
        let mut seen = std::collections::HashSet::new();
        for kind in ProblemType::ALL {
            let name = kind.uri().strip_prefix("urn:crebito:problem:").unwrap();
            assert!(
                !name.is_empty() && name.bytes().all(|b| b.is_ascii_lowercase() || b == b'-'),
                "{name}"
            );
            assert!(seen.insert(kind.uri()), "{} twice", kind.uri());
            assert!(kind.status().is_client_error() || kind.status().is_server_error());
        }
    }

    #[test]
    fn every_problem_type_is_in_the_contract() {
        // docs/contract.md §2.5 lists each type with its status.
        let contract = include_str!("../../../../docs/contract.md");
        for kind in ProblemType::ALL {
            let row = format!("| `{}` | {} |", kind.uri(), kind.status().as_u16());
            assert!(contract.contains(&row), "docs/contract.md lacks {row}");
        }
    }
}
