//! The socket of one connection as hyper sees it: a write deadline, a
//! lingering close, and problem bodies for the errors hyper answers itself.
//!
//! # Why hyper's own error responses are rewritten here
//!
//! A request whose head hyper cannot parse (a malformed request line or
//! header, more header fields than allowed, a head larger than its buffer)
//! never reaches a service: hyper writes `400`, `414` or `431` itself, with
//! an empty body and no `Content-Type`, and closes the connection. hyper has
//! no hook for that response (hyperium/hyper#258, #3874). The alternatives
//! are worse: parsing every request head a second time ahead of hyper
//! (httparse, as hyper does) would also mean tracking the body framing of
//! every request to find the next head, i.e. a second HTTP/1.1 parser; and
//! raising hyper's limits to enforce our own still leaves hyper's syntax
//! errors body-less.
//!
//! So the write side reads back what hyper writes, response by response
//! (the heads with httparse, the bodies skipped by their `Content-Length`;
//! every response of ours has one). A response that is a `400`, `414` or
//! `431` with no `Content-Type` can only be hyper's parse-error answer —
//! every response the application produces carries a content type — and is
//! replaced, before any byte of it is sent, by the same status with a
//! problem body (docs/contract.md §2.5) and `Connection: close`. A response
//! this reader cannot follow (chunked, no length) ends the scanning for the
//! connection: its bytes pass through unchanged.
//!
//! hyper answers a head over its buffer with 431 whether the request line
//! or a header field is too long; the read side counts the bytes since the
//! last line feed it passed to hyper, and when the whole buffer holds no
//! line feed, the request line is what is too long: 414 (RFC 9112 §3).

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

use crate::http::{Problem, ProblemType};

/// How long a connection closed by the server keeps reading (and
/// discarding) what the client still sends, so that the close is a FIN
/// after the response rather than a reset that can destroy it in flight
/// (RFC 9112 §9.6).
pub const LINGER: Duration = Duration::from_secs(2);

/// Most bytes discarded while lingering.
const LINGER_MAX_BYTES: usize = 1024 * 1024;

/// Most bytes of a response held to leave in one write with its head (a
/// statement or a posting answer is well below).
const MAX_JOINED: usize = 16 * 1024;

/// A response head longer than this is not one of ours nor hyper's: stop
/// scanning.
const MAX_RESPONSE_HEAD: usize = 8 * 1024;

/// The socket of one connection, wrapped (see the module documentation).
pub struct ConnIo<S> {
    inner: S,
    write_timeout: Duration,
    /// Armed when a write or flush blocks; cleared when hyper's output is
    /// flushed. Firing fails the connection.
    write_blocked: Option<Pin<Box<Sleep>>>,
    /// The request head limit (hyper's `max_buf_size`), bytes.
    max_head: usize,
    /// Bytes read since the last line feed.
    since_line_feed: usize,
    /// Where the outgoing byte stream is.
    scan: Scan,
    /// Bytes accepted from hyper and not written yet (a held-back head, or
    /// its replacement).
    pending: Vec<u8>,
    pending_from: usize,
    close: Close,
    /// The write deadline passed: the client does not read, so lingering
    /// for it is pointless.
    write_failed: bool,
}

#[derive(Debug)]
enum Scan {
    /// Collecting a response head.
    Head(Vec<u8>),
    /// Inside a body: this many bytes pass through.
    Body(u64),
    /// Everything passes through (a response this reader cannot follow).
    Off,
    /// hyper's parse-error answer was replaced: nothing of hyper's follows
    /// it (the connection closes), and anything that would is dropped.
    Replaced,
}

enum Close {
    Open,
    Lingering {
        until: Pin<Box<Sleep>>,
        discarded: usize,
    },
    Closed,
}

impl<S> ConnIo<S> {
    /// Wraps `inner`: a write blocked longer than `write_timeout` fails
    /// with [`io::ErrorKind::TimedOut`]; `max_head` is hyper's head limit.
    pub fn new(inner: S, write_timeout: Duration, max_head: usize) -> Self {
        ConnIo {
            inner,
            write_timeout,
            write_blocked: None,
            max_head,
            since_line_feed: 0,
            scan: Scan::Head(Vec::new()),
            pending: Vec::new(),
            pending_from: 0,
            close: Close::Open,
            write_failed: false,
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> ConnIo<S> {
    /// Called when the socket did not take bytes: arms the write deadline,
    /// and fails once it passed.
    fn blocked(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        let timeout = self.write_timeout;
        let sleep = self
            .write_blocked
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        match sleep.as_mut().poll(cx) {
            Poll::Ready(()) => {
                self.write_failed = true;
                Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "the client did not take the response within {} ms",
                        timeout.as_millis()
                    ),
                )))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    /// Writes out [`ConnIo::pending`]; `Ready(Ok)` once it is empty.
    fn poll_pending(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.pending_from < self.pending.len() {
            match Pin::new(&mut self.inner).poll_write(cx, &self.pending[self.pending_from..]) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => self.pending_from += n,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => {
                    ready!(self.blocked(cx))?;
                    return Poll::Pending;
                }
            }
        }
        self.pending.clear();
        self.pending_from = 0;
        Poll::Ready(Ok(()))
    }

    /// Takes head bytes from `buf` into the scanner; returns how many.
    fn take_head(&mut self, buf: &[u8]) -> usize {
        let Scan::Head(head) = &mut self.scan else {
            unreachable!("take_head outside a head")
        };
        let before = head.len();
        head.extend_from_slice(buf);
        // The end of the head may straddle what was held and what is new.
        let search_from = before.saturating_sub(3);
        let end = head[search_from..]
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .map(|i| search_from + i + 4);
        let Some(end) = end else {
            if head.len() > MAX_RESPONSE_HEAD {
                self.pending = std::mem::take(head);
                self.scan = Scan::Off;
            }
            return buf.len();
        };
        head.truncate(end);
        let taken = end - before;
        let head = std::mem::take(head);
        let (next, bytes) = self.judge(head);
        self.scan = next;
        self.pending = bytes;
        self.pending_from = 0;
        taken
    }

    /// Joins to the head just completed (held in [`ConnIo::pending`]) the
    /// body bytes hyper passed in the same write, so that a response
    /// leaves in one `send` instead of two: the balancer then wakes once
    /// per response, not once for the head and again for the body.
    /// Returns how many bytes of `rest` it took: none when the body would
    /// make the held bytes exceed [`MAX_JOINED`] (those go out by
    /// themselves, as before).
    fn take_body_behind_head(&mut self, rest: &[u8]) -> usize {
        let Scan::Body(left) = &mut self.scan else {
            return 0;
        };
        let n = (*left).min(rest.len() as u64) as usize;
        if self.pending.len() + n > MAX_JOINED {
            return 0;
        }
        self.pending.extend_from_slice(&rest[..n]);
        self.body_passed(n);
        n
    }

    /// Counts `n` bytes of the current body as passed; after its last one
    /// the next response head begins.
    fn body_passed(&mut self, n: usize) {
        if let Scan::Body(left) = &mut self.scan {
            *left -= n as u64;
            if *left == 0 {
                self.scan = Scan::Head(Vec::new());
            }
        }
    }

    /// Decides what a complete response head becomes: passed through
    /// (followed by its body), or replaced (hyper's parse-error answer).
    fn judge(&self, head: Vec<u8>) -> (Scan, Vec<u8>) {
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut response = httparse::Response::new(&mut headers);
        let Ok(httparse::Status::Complete(_)) = response.parse(&head) else {
            return (Scan::Off, head);
        };
        let status = response.code.unwrap_or(0);
        let header = |name: &str| {
            response
                .headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case(name))
                .map(|h| h.value)
        };
        let has_content_type = header("content-type").is_some();
        let length = header("content-length")
            .and_then(|v| std::str::from_utf8(v).ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        if matches!(status, 400 | 414 | 431) && !has_content_type && length.unwrap_or(0) == 0 {
            let date = header("date").map(<[u8]>::to_vec);
            return (Scan::Replaced, self.replacement(status, date));
        }
        if (100..200).contains(&status) || status == 204 || status == 304 {
            return (Scan::Head(Vec::new()), head);
        }
        if header("transfer-encoding").is_some() {
            return (Scan::Off, head);
        }
        match length {
            Some(0) => (Scan::Head(Vec::new()), head),
            Some(n) => (Scan::Body(n), head),
            None => (Scan::Off, head),
        }
    }

    /// The problem response for hyper's parse-error answer `status`.
    fn replacement(&self, status: u16, date: Option<Vec<u8>>) -> Vec<u8> {
        let problem = match status {
            431 if self.since_line_feed >= self.max_head => Problem {
                kind: ProblemType::UriTooLong,
                detail: format!(
                    "the request line is longer than the {} bytes a request head may take",
                    self.max_head
                ),
            },
            431 => Problem {
                kind: ProblemType::RequestHeadTooLarge,
                detail: format!(
                    "the request head is larger than {} bytes or has more than {} header fields",
                    self.max_head,
                    super::MAX_HEADERS
                ),
            },
            414 => Problem {
                kind: ProblemType::UriTooLong,
                detail: "the request target is too long".into(),
            },
            _ => Problem {
                kind: ProblemType::MalformedRequest,
                detail: "the request line or a header field is not valid HTTP/1.1 (RFC 9112)"
                    .into(),
            },
        };
        let status = problem.kind.status();
        let body = problem.to_json();
        let mut bytes = format!(
            "HTTP/1.1 {} {}\r\ncontent-type: {}\r\ncontent-length: {}\r\nconnection: close\r\n",
            status.as_u16(),
            status.canonical_reason().unwrap_or_default(),
            crate::http::error::PROBLEM_JSON,
            body.len()
        )
        .into_bytes();
        if let Some(date) = date {
            bytes.extend_from_slice(b"date: ");
            bytes.extend_from_slice(&date);
            bytes.extend_from_slice(b"\r\n");
        }
        bytes.extend_from_slice(b"\r\n");
        bytes.extend_from_slice(&body);
        bytes
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for ConnIo<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        ready!(Pin::new(&mut self.inner).poll_read(cx, buf))?;
        let new = &buf.filled()[before..];
        match new.iter().rposition(|&b| b == b'\n') {
            Some(i) => self.since_line_feed = new.len() - i - 1,
            None => self.since_line_feed = self.since_line_feed.saturating_add(new.len()),
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for ConnIo<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        ready!(this.poll_pending(cx))?;
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let written = match &mut this.scan {
            Scan::Head(_) => {
                let taken = this.take_head(buf);
                this.take_body_behind_head(&buf[taken..]) + taken
            }
            Scan::Body(left) => {
                let n = (*left).min(buf.len() as u64) as usize;
                let written = match Pin::new(&mut this.inner).poll_write(cx, &buf[..n]) {
                    Poll::Ready(result) => result?,
                    Poll::Pending => {
                        ready!(this.blocked(cx))?;
                        return Poll::Pending;
                    }
                };
                this.body_passed(written);
                written
            }
            Scan::Off => match Pin::new(&mut this.inner).poll_write(cx, buf) {
                Poll::Ready(result) => result?,
                Poll::Pending => {
                    ready!(this.blocked(cx))?;
                    return Poll::Pending;
                }
            },
            Scan::Replaced => buf.len(),
        };
        // Send what was accepted now if the socket takes it; if not, the
        // next write or flush does.
        if let Poll::Ready(Err(e)) = this.poll_pending(cx) {
            return Poll::Ready(Err(e));
        }
        Poll::Ready(Ok(written))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        ready!(this.poll_pending(cx))?;
        match Pin::new(&mut this.inner).poll_flush(cx) {
            Poll::Ready(result) => {
                // hyper flushes its socket once its own buffer is empty: the
                // responses so far are out.
                this.write_blocked = None;
                Poll::Ready(result)
            }
            Poll::Pending => {
                ready!(this.blocked(cx))?;
                Poll::Pending
            }
        }
    }

    /// Flushes, sends FIN, then reads and discards what the client still
    /// sends for up to [`LINGER`] (or until it closes), so that the kernel
    /// does not answer unread data with a reset.
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        loop {
            match &mut this.close {
                Close::Open if this.write_failed => this.close = Close::Closed,
                Close::Open => {
                    ready!(this.poll_pending(cx))?;
                    match Pin::new(&mut this.inner).poll_shutdown(cx) {
                        Poll::Ready(Ok(())) => {}
                        // Already reset or closed by the peer: nothing to
                        // linger for.
                        Poll::Ready(Err(_)) => {
                            this.close = Close::Closed;
                            continue;
                        }
                        Poll::Pending => {
                            ready!(this.blocked(cx))?;
                            return Poll::Pending;
                        }
                    }
                    this.close = Close::Lingering {
                        until: Box::pin(tokio::time::sleep_until(Instant::now() + LINGER)),
                        discarded: 0,
                    };
                }
                Close::Lingering { until, discarded } => {
                    if until.as_mut().poll(cx).is_ready() || *discarded > LINGER_MAX_BYTES {
                        this.close = Close::Closed;
                        continue;
                    }
                    let mut scratch = [0u8; 2048];
                    let mut buf = ReadBuf::new(&mut scratch);
                    match Pin::new(&mut this.inner).poll_read(cx, &mut buf) {
                        Poll::Ready(Ok(())) if buf.filled().is_empty() => {
                            this.close = Close::Closed
                        }
                        Poll::Ready(Ok(())) => *discarded += buf.filled().len(),
                        Poll::Ready(Err(_)) => this.close = Close::Closed,
                        Poll::Pending => return Poll::Pending,
                    }
                }
                Close::Closed => return Poll::Ready(Ok(())),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn through(writes: &[&[u8]], read_first: &[u8]) -> String {
        let (client, server) = tokio::io::duplex(64 * 1024);
        let mut io = ConnIo::new(server, Duration::from_secs(5), 8192);
        let (mut client_read, mut client_write) = tokio::io::split(client);
        client_write.write_all(read_first).await.unwrap();
        let mut sink = vec![0u8; read_first.len()];
        if !read_first.is_empty() {
            io.read_exact(&mut sink).await.unwrap();
        }
        for w in writes {
            io.write_all(w).await.unwrap();
        }
        io.flush().await.unwrap();
        drop(io);
        let mut out = String::new();
        client_read.read_to_string(&mut out).await.unwrap();
        out
    }

    #[tokio::test]
    async fn our_responses_pass_unchanged_also_split_anywhere() {
        let one =
            b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}";
        let two = b"HTTP/1.1 422 Unprocessable Entity\r\ncontent-type: application/problem+json\r\ncontent-length: 3\r\n\r\nabc";
        let cont = b"HTTP/1.1 100 Continue\r\n\r\n";
        let all = [&cont[..], one, two].concat();
        for split in 0..all.len() {
            let out = through(&[&all[..split], &all[split..]], b"").await;
            assert_eq!(out.as_bytes(), &all[..], "split at {split}");
        }
    }

    /// A socket that records each write it is given.
    #[derive(Default)]
    struct Writes(Vec<Vec<u8>>);

    impl AsyncRead for Writes {
        fn poll_read(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            _: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    impl AsyncWrite for Writes {
        fn poll_write(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            self.0.push(buf.to_vec());
            Poll::Ready(Ok(buf.len()))
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    #[tokio::test]
    async fn a_response_given_in_one_write_leaves_in_one_write() {
        let one =
            b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}";
        let two = b"HTTP/1.1 422 Unprocessable Entity\r\ncontent-type: application/problem+json\r\ncontent-length: 3\r\n\r\nabc";
        let mut io = ConnIo::new(Writes::default(), Duration::from_secs(5), 8192);
        io.write_all(one).await.unwrap();
        io.write_all(two).await.unwrap();
        io.flush().await.unwrap();
        assert_eq!(io.inner.0, vec![one.to_vec(), two.to_vec()]);
        // Two responses in one write: each leaves whole, one after the other.
        let mut io = ConnIo::new(Writes::default(), Duration::from_secs(5), 8192);
        io.write_all(&[&one[..], two].concat()).await.unwrap();
        io.flush().await.unwrap();
        assert_eq!(io.inner.0, vec![one.to_vec(), two.to_vec()]);
    }

    #[tokio::test]
    async fn hypers_empty_error_answers_get_a_problem_body() {
        let hyper_400 = b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\ndate: Mon, 30 Nov 2026 00:00:00 GMT\r\n\r\n";
        let out = through(&[hyper_400], b"").await;
        assert!(out.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{out}");
        assert!(
            out.contains("content-type: application/problem+json\r\n"),
            "{out}"
        );
        assert!(out.contains("connection: close\r\n"), "{out}");
        assert!(
            out.contains("date: Mon, 30 Nov 2026 00:00:00 GMT\r\n"),
            "{out}"
        );
        let body = &out[out.find("\r\n\r\n").unwrap() + 4..];
        let value: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(value["type"], "urn:crebito:problem:malformed-request");
        assert_eq!(value["status"], 400);
        // After one of ours, too.
        let ours =
            b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}";
        let out = through(
            &[
                ours,
                b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\n\r\n",
            ],
            b"GET / HTTP/1.1\r\n",
        )
        .await;
        assert!(out.starts_with("HTTP/1.1 200 OK\r\n"), "{out}");
        assert!(
            out.contains("urn:crebito:problem:request-head-too-large"),
            "{out}"
        );
    }

    #[tokio::test]
    async fn a_request_line_filling_the_head_buffer_is_414() {
        let long_line = vec![b'a'; 8192];
        let out = through(
            &[b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\n\r\n"],
            &long_line,
        )
        .await;
        assert!(out.starts_with("HTTP/1.1 414 URI Too Long\r\n"), "{out}");
        assert!(out.contains("urn:crebito:problem:uri-too-long"), "{out}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_write_blocked_past_the_deadline_fails() {
        let (_client, server) = tokio::io::duplex(64);
        let mut io = ConnIo::new(server, Duration::from_millis(500), 8192);
        let response = [
            b"HTTP/1.1 200 OK\r\ncontent-type: x\r\ncontent-length: 1000\r\n\r\n".as_slice(),
            &[b'x'; 1000],
        ]
        .concat();
        // As hyper does: write, then flush. The bytes may be taken into
        // the held response; the deadline then fails the flush.
        let result = match io.write_all(&response).await {
            Ok(()) => io.flush().await,
            Err(e) => Err(e),
        };
        assert_eq!(result.unwrap_err().kind(), io::ErrorKind::TimedOut);
        // A body too large to be held with its head blocks its own write.
        let (_client, server) = tokio::io::duplex(64);
        let mut io = ConnIo::new(server, Duration::from_millis(200), 8192);
        let head = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: x\r\ncontent-length: {}\r\n\r\n",
            MAX_JOINED
        );
        let response = [head.as_bytes(), &vec![b'x'; MAX_JOINED]].concat();
        let error = io.write_all(&response).await.unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
    }
}
