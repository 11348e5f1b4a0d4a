//! Per request, around the router: the framing rules hyper leaves to the
//! application, the body deadline, and what happens to a body the handler
//! did not read.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::http::header::{CONNECTION, CONTENT_LENGTH, EXPECT, HOST, TRANSFER_ENCODING};
use axum::http::{HeaderMap, HeaderValue, Request, Version};
use axum::response::{IntoResponse, Response};
use axum::Router;
use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use hyper::body::Incoming;
use tokio::time::{Instant, Sleep};
use tower::ServiceExt;

use crate::http::request::{has_coding_other_than, BodyDeadlineExceeded};
use crate::http::ApiError;

/// Most bytes of a body that the handler did not read (a request refused
/// before its body: 404, 405, 413, 415…) that are read and discarded so
/// that the connection can carry the next request. A longer body closes
/// the connection instead (`Connection: close`).
pub const DRAIN_MAX_BYTES: u64 = 64 * 1024;

/// Serves one request with `app`: framing rules first (docs/contract.md
/// §2.7), then the router with the body bounded by `body_timeout` from now;
/// a body left unread is drained (up to [`DRAIN_MAX_BYTES`], within the same
/// deadline) or the response says `Connection: close`.
pub async fn handle(app: Router, request: Request<Incoming>, body_timeout: Duration) -> Response {
    let deadline = Instant::now() + body_timeout;
    let expects_continue = request
        .headers()
        .get(EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    let declared = request
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let refusal = check_framing(request.version(), request.headers()).err();
    let (parts, body) = request.into_parts();
    let slot = Arc::new(Mutex::new(Slot {
        body,
        finished: false,
        failed: false,
        polled: false,
        deadline,
        body_timeout,
        sleep: None,
    }));
    let mut response = match refusal {
        Some(error) => error.into_response(),
        None => {
            let body = Body::new(SlotBody(slot.clone()));
            match app.oneshot(Request::from_parts(parts, body)).await {
                Ok(response) => response,
                Err(never) => match never {},
            }
        }
    };
    let reusable = drain(&slot, expects_continue, declared).await;
    if !reusable {
        response
            .headers_mut()
            .insert(CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

/// The framing rules checked before routing: exactly one `Host` in an
/// HTTP/1.1 request and at most one in any (RFC 9112 §3.2: 400), `chunked`
/// applied at most once (RFC 9112 §6.1: 400, and the connection is
/// closed), and no transfer coding but `chunked` (RFC 9112 §6.1: 501).
/// hyper itself answers 400 when `chunked` is not the last coding (RFC
/// 9112 §6.3) and for a `Transfer-Encoding` in an HTTP/1.0 request (§6.1),
/// and closes the connection after a request that has both
/// `Transfer-Encoding` and `Content-Length` (§6.3).
pub fn check_framing(version: Version, headers: &HeaderMap) -> Result<(), ApiError> {
    let mut hosts = headers.get_all(HOST).iter();
    match (hosts.next(), hosts.next()) {
        (_, Some(_)) => return Err(ApiError::InvalidHost("Host must be sent once")),
        (None, None) if version == Version::HTTP_11 => {
            return Err(ApiError::InvalidHost(
                "an HTTP/1.1 request must carry a Host header",
            ))
        }
        (Some(host), None) if !is_valid_host(host.as_bytes()) => {
            return Err(ApiError::InvalidHost("Host is not a valid host[:port]"))
        }
        _ => {}
    }
    let chunked = headers
        .get_all(TRANSFER_ENCODING)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|codings| codings.split(','))
        .filter(|coding| coding.trim().eq_ignore_ascii_case("chunked"))
        .count();
    if chunked > 1 {
        return Err(ApiError::RepeatedChunked);
    }
    if has_coding_other_than(headers, TRANSFER_ENCODING, "chunked") {
        return Err(ApiError::UnsupportedTransferEncoding);
    }
    Ok(())
}

/// `Host = uri-host [ ":" port ]` (RFC 9112 §3.2), or empty (a target
/// without an authority).
fn is_valid_host(value: &[u8]) -> bool {
    value.is_empty()
        || axum::http::uri::Authority::try_from(value)
            .is_ok_and(|a| !a.as_str().contains('@') && !a.host().is_empty())
}

/// The request body, shared between the handler (through [`SlotBody`]) and
/// [`drain`], which reads what the handler left.
struct Slot {
    body: Incoming,
    /// The body was read to its end.
    finished: bool,
    /// Reading failed (framing error, deadline): the connection cannot carry
    /// another request.
    failed: bool,
    /// The body was asked for at least once (for `Expect: 100-continue`,
    /// hyper sends `100 Continue` then).
    polled: bool,
    deadline: Instant,
    body_timeout: Duration,
    /// Armed the first time the body is not ready.
    sleep: Option<Pin<Box<Sleep>>>,
}

impl Slot {
    fn poll_frame(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::BoxError>>> {
        if self.finished {
            return Poll::Ready(None);
        }
        if self.failed {
            return Poll::Ready(Some(Err(BodyDeadlineExceeded(self.body_timeout).into())));
        }
        self.polled = true;
        match Pin::new(&mut self.body).poll_frame(cx) {
            Poll::Ready(None) => {
                self.finished = true;
                Poll::Ready(None)
            }
            Poll::Ready(Some(Ok(frame))) => Poll::Ready(Some(Ok(frame))),
            Poll::Ready(Some(Err(e))) => {
                self.failed = true;
                Poll::Ready(Some(Err(e.into())))
            }
            Poll::Pending => {
                let deadline = self.deadline;
                let sleep = self
                    .sleep
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
                match sleep.as_mut().poll(cx) {
                    Poll::Ready(()) => {
                        self.failed = true;
                        Poll::Ready(Some(Err(BodyDeadlineExceeded(self.body_timeout).into())))
                    }
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.finished || (!self.failed && self.body.is_end_stream())
    }
}

/// The body the router sees: the request's, failing with
/// [`BodyDeadlineExceeded`] once the deadline passes.
struct SlotBody(Arc<Mutex<Slot>>);

impl HttpBody for SlotBody {
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        lock(&self.0).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        lock(&self.0).is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        lock(&self.0).body.size_hint()
    }
}

fn lock(slot: &Mutex<Slot>) -> std::sync::MutexGuard<'_, Slot> {
    slot.lock().unwrap_or_else(|e| e.into_inner())
}

/// Reads and discards what the handler left of the body; `true` when the
/// connection can carry another request. Not when reading failed, when the
/// client waits for `100 Continue` that was never sent (soliciting a body
/// only to discard it would be wasted), when more than
/// [`DRAIN_MAX_BYTES`] are left, or when the rest does not arrive before the
/// body deadline.
async fn drain(slot: &Arc<Mutex<Slot>>, expects_continue: bool, declared: Option<u64>) -> bool {
    {
        let slot = lock(slot);
        if slot.is_end_stream() {
            return true;
        }
        if slot.failed
            || (expects_continue && !slot.polled)
            || declared.is_some_and(|n| n > DRAIN_MAX_BYTES)
        {
            return false;
        }
    }
    let mut discarded = 0u64;
    loop {
        let frame = std::future::poll_fn(|cx| lock(slot).poll_frame(cx)).await;
        match frame {
            None => return true,
            Some(Ok(frame)) => {
                discarded += frame.data_ref().map_or(0, |d| d.len() as u64);
                if discarded > DRAIN_MAX_BYTES {
                    return false;
                }
            }
            Some(Err(_)) => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_static(value));
        }
        map
    }

    #[test]
    fn host_rules() {
        let status = |version, pairs: &[(&'static str, &'static str)]| {
            check_framing(version, &headers(pairs)).map_err(|e| e.status().as_u16())
        };
        assert_eq!(status(Version::HTTP_11, &[("host", "x")]), Ok(()));
        assert_eq!(status(Version::HTTP_11, &[("host", "x:9999")]), Ok(()));
        assert_eq!(status(Version::HTTP_11, &[("host", "[::1]:80")]), Ok(()));
        assert_eq!(status(Version::HTTP_11, &[("host", "")]), Ok(()));
        assert_eq!(status(Version::HTTP_10, &[]), Ok(()));
        assert_eq!(status(Version::HTTP_11, &[]), Err(400));
        assert_eq!(
            status(Version::HTTP_11, &[("host", "a"), ("host", "a")]),
            Err(400)
        );
        assert_eq!(
            status(Version::HTTP_10, &[("host", "a"), ("host", "b")]),
            Err(400)
        );
        assert_eq!(status(Version::HTTP_11, &[("host", "a b")]), Err(400));
        assert_eq!(status(Version::HTTP_11, &[("host", "u@h")]), Err(400));
        assert_eq!(status(Version::HTTP_11, &[("host", "h/p")]), Err(400));
    }

    #[test]
    fn only_chunked_transfer_coding() {
        let status = |pairs: &[(&'static str, &'static str)]| {
            let mut all = vec![("host", "x")];
            all.extend_from_slice(pairs);
            check_framing(Version::HTTP_11, &headers(&all)).map_err(|e| e.status().as_u16())
        };
        assert_eq!(status(&[("transfer-encoding", "chunked")]), Ok(()));
        assert_eq!(status(&[("transfer-encoding", "Chunked")]), Ok(()));
        assert_eq!(status(&[("transfer-encoding", "gzip, chunked")]), Err(501));
        assert_eq!(
            status(&[
                ("transfer-encoding", "gzip"),
                ("transfer-encoding", "chunked")
            ]),
            Err(501)
        );
        assert_eq!(
            status(&[("transfer-encoding", "x-custom, chunked")]),
            Err(501)
        );
        // chunked at most once (RFC 9112 §6.1), on one field line or two.
        assert_eq!(
            status(&[("transfer-encoding", "chunked, chunked")]),
            Err(400)
        );
        assert_eq!(
            status(&[("transfer-encoding", "chunked,Chunked")]),
            Err(400)
        );
        assert_eq!(
            status(&[
                ("transfer-encoding", "chunked"),
                ("transfer-encoding", "chunked")
            ]),
            Err(400)
        );
        assert_eq!(
            status(&[("transfer-encoding", "gzip, chunked, chunked")]),
            Err(400)
        );
    }
}
