//! Every request's id, span and metrics (docs/operations.md).
//!
//! * The request id is the client's (or the load balancer's)
//!   `X-Request-Id` when it is 1 to 128 visible ASCII characters, otherwise
//!   a new random one (32 hex digits, like nginx's `$request_id`). It is
//!   returned in the response's `X-Request-Id` and carried by the request's
//!   span, so every log line written while the request is served names it.
//! * The span is at ERROR level on purpose: a span's level decides when it
//!   exists, and the id must be on every line that can be written — an
//!   error under the deployed `RUST_LOG=warn` included. What a request did
//!   and how long each step took is logged at DEBUG inside it
//!   (`RUST_LOG=crebito=debug`).

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method};
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument;

use crate::ledger::UnavailableCause;
use crate::metrics::Metrics;

/// The request id header (request and response).
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Longest request id taken from a request, in bytes.
pub const MAX_REQUEST_ID_LEN: usize = 128;

/// The request's `X-Request-Id` when it is usable (1 to
/// [`MAX_REQUEST_ID_LEN`] visible ASCII characters, sent once), otherwise
/// a new random one.
pub fn request_id(headers: &HeaderMap) -> HeaderValue {
    let mut values = headers.get_all(&REQUEST_ID).iter();
    if let (Some(value), None) = (values.next(), values.next()) {
        let bytes = value.as_bytes();
        if (1..=MAX_REQUEST_ID_LEN).contains(&bytes.len()) && bytes.iter().all(u8::is_ascii_graphic)
        {
            return value.clone();
        }
    }
    let id = uuid::Uuid::new_v4().simple().to_string();
    HeaderValue::from_str(&id).expect("hex digits are a valid header value")
}

/// Every route the router serves.
pub const ROUTES: [&str; 6] = [
    super::POSTING_ROUTE,
    super::STATEMENT_ROUTE,
    super::HISTORY_ROUTE,
    super::HEALTH_ROUTE,
    super::METRICS_ROUTE,
    super::OPENAPI_ROUTE,
];

/// The `route` label: the route template that matched, or `unmatched`
/// (unknown paths must not create one series each).
fn route_label(matched: Option<&MatchedPath>) -> &'static str {
    matched
        .and_then(|m| ROUTES.iter().find(|route| **route == m.as_str()))
        .copied()
        .unwrap_or("unmatched")
}

/// The `method` label: the standard methods by name, anything else `other`.
fn method_label(method: &Method) -> &'static str {
    const METHODS: [Method; 9] = [
        Method::GET,
        Method::POST,
        Method::PUT,
        Method::DELETE,
        Method::HEAD,
        Method::OPTIONS,
        Method::PATCH,
        Method::TRACE,
        Method::CONNECT,
    ];
    const NAMES: [&str; 9] = [
        "GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH", "TRACE", "CONNECT",
    ];
    METHODS
        .iter()
        .position(|m| m == method)
        .map_or("other", |i| NAMES[i])
}

/// The middleware: request id, span, debug log of the request's end, and
/// the request's metrics when they are on.
pub async fn observe(
    State(metrics): State<Option<Arc<Metrics>>>,
    request: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let id = request_id(request.headers());
    let route = route_label(request.extensions().get::<MatchedPath>());
    let method = method_label(request.method());
    let span = tracing::error_span!(
        "request",
        request_id = %id.to_str().unwrap_or_default(),
        method,
        route
    );
    let mut response = async {
        let target = super::error::request_target(request.uri());
        tracing::debug!(path = target, "request received");
        next.run(request).await
    }
    .instrument(span.clone())
    .await;
    let elapsed = started.elapsed();
    let status = response.status();
    span.in_scope(|| {
        tracing::debug!(
            status = status.as_u16(),
            elapsed_ms = elapsed.as_secs_f64() * 1e3,
            "request answered"
        )
    });
    if let Some(metrics) = &metrics {
        metrics.request(route, method, status.as_u16(), elapsed);
        if status == axum::http::StatusCode::SERVICE_UNAVAILABLE {
            let cause = response
                .extensions()
                .get::<UnavailableCause>()
                .map_or("other", |cause| cause.label());
            metrics.unavailable(cause);
        }
    }
    response.headers_mut().insert(REQUEST_ID, id);
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_usable_request_id_is_kept_anything_else_replaced() {
        let with = |values: &[&[u8]]| {
            let mut headers = HeaderMap::new();
            for value in values {
                headers.append(&REQUEST_ID, HeaderValue::from_bytes(value).unwrap());
            }
            request_id(&headers)
        };
        assert_eq!(with(&[b"abc-123"]), "abc-123");
        let longest = "x".repeat(MAX_REQUEST_ID_LEN);
        assert_eq!(with(&[longest.as_bytes()]), longest.as_str());
        let generated = with(&[]);
        assert_eq!(generated.len(), 32);
        assert!(generated.as_bytes().iter().all(u8::is_ascii_hexdigit));
        assert_ne!(with(&[]), generated, "each generated id is new");
        for bad in [
            &b""[..],
            b"has space",
            b"tab\t",
            "x".repeat(MAX_REQUEST_ID_LEN + 1).as_bytes(),
            b"caf\xc3\xa9",
        ] {
            let id = with(&[bad]);
            assert_ne!(id.as_bytes(), bad);
            assert_eq!(id.len(), 32, "{bad:?}");
        }
        // Sent twice: ambiguous, replaced.
        assert_eq!(with(&[b"a", b"b"]).len(), 32);
    }

    #[test]
    fn labels_are_bounded() {
        assert_eq!(method_label(&Method::GET), "GET");
        assert_eq!(method_label(&Method::from_bytes(b"BREW").unwrap()), "other");
        assert_eq!(route_label(None), "unmatched");
    }
}
