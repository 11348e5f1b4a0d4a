//! The virtual users' HTTP/1.1 client: one TCP connection per user (kept
//! alive only for that user's next requests), hyper 1 underneath.
//!
//! Like Gatling (docs/contract.md §5: "every virtual user is a new client with its
//! own connection(s)"), nothing is shared between users: a user opens its
//! connection when it sends its first request, the time to connect counts in
//! that request's response time, and the connection is closed when the user
//! ends. Timeouts are Gatling's defaults: 10 s to connect
//! (`gatling.http.connectTimeout`), 60 s for a whole request
//! (`gatling.http.requestTimeout`, docs/contract.md §5 "no answer within 60 s is a
//! KO").

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{CONNECTION, CONTENT_TYPE, HOST, USER_AGENT};
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::time::Instant;

/// The `User-Agent` of the official simulation (docs/contract.md §5).
pub const USER_AGENT_VALUE: &str = "Agente do Caos - 2024/Q1";
/// Gatling's default connect timeout, 10 s.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Gatling's default request timeout, 60 s (docs/contract.md §5: a KO).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// Where the requests go: a resolved `http://host:port[/prefix]` base URL.
#[derive(Debug, Clone)]
pub struct Target {
    /// The base URL as given.
    pub base_url: String,
    /// The address connected to (IPv4 preferred when the name resolves to
    /// both, as the JVM does).
    pub addr: SocketAddr,
    /// `Host` header value (`host:port` as written in the URL).
    pub host_header: String,
    /// Path prefix prepended to every request path (no trailing slash).
    pub prefix: String,
}

/// Why a base URL cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    /// Not of the form `http://host[:port][/path]`.
    #[error(
        "base URL {0:?} is not of the form http://host[:port][/path] (https is not supported)"
    )]
    BadUrl(String),
    /// The host name does not resolve.
    #[error("cannot resolve {host}: {source}")]
    Resolve {
        /// `host:port` that failed.
        host: String,
        /// The resolver's error.
        source: std::io::Error,
    },
}

impl Target {
    /// Parses and resolves `base_url`.
    pub async fn resolve(base_url: &str) -> Result<Target, TargetError> {
        let bad = || TargetError::BadUrl(base_url.to_string());
        let rest = base_url.strip_prefix("http://").ok_or_else(bad)?;
        let (authority, prefix) = match rest.find('/') {
            Some(i) => (&rest[..i], rest[i..].trim_end_matches('/')),
            None => (rest, ""),
        };
        if authority.is_empty() || authority.contains('@') {
            return Err(bad());
        }
        let uri: hyper::Uri = format!("http://{authority}/").parse().map_err(|_| bad())?;
        let host = uri
            .host()
            .ok_or_else(bad)?
            .trim_start_matches('[')
            .trim_end_matches(']');
        let port = uri.port_u16().unwrap_or(80);
        let lookup = format!("{host}:{port}");
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
            .await
            .map_err(|source| TargetError::Resolve {
                host: lookup.clone(),
                source,
            })?
            .collect();
        let addr = addrs
            .iter()
            .find(|a| a.is_ipv4())
            .or_else(|| addrs.first())
            .copied()
            .ok_or_else(|| TargetError::Resolve {
                host: lookup.clone(),
                source: std::io::Error::other("no address"),
            })?;
        Ok(Target {
            base_url: base_url.to_string(),
            addr,
            host_header: authority.to_string(),
            prefix: prefix.to_string(),
        })
    }
}

/// A request failure with no usable response (a KO whatever the checks).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HttpError {
    /// The TCP connection was refused.
    ConnectRefused,
    /// The TCP connection was not established within [`CONNECT_TIMEOUT`].
    ConnectTimeout,
    /// No full response within [`REQUEST_TIMEOUT`].
    Timeout,
    /// The server closed the connection before the whole response.
    Closed,
    /// The server reset the connection.
    Reset,
    /// Any other I/O or protocol error.
    Other(String),
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HttpError::ConnectRefused => write!(f, "connection refused"),
            HttpError::ConnectTimeout => write!(
                f,
                "connection timed out after {} ms",
                CONNECT_TIMEOUT.as_millis()
            ),
            HttpError::Timeout => write!(
                f,
                "request timeout after {} ms",
                REQUEST_TIMEOUT.as_millis()
            ),
            HttpError::Closed => write!(f, "connection closed before the response was complete"),
            HttpError::Reset => write!(f, "connection reset by peer"),
            HttpError::Other(e) => write!(f, "{e}"),
        }
    }
}

fn io_error(e: &std::io::Error) -> HttpError {
    use std::io::ErrorKind::*;
    match e.kind() {
        ConnectionRefused => HttpError::ConnectRefused,
        ConnectionReset => HttpError::Reset,
        ConnectionAborted | BrokenPipe | UnexpectedEof => HttpError::Closed,
        _ => HttpError::Other(e.to_string()),
    }
}

fn hyper_error(e: &hyper::Error) -> HttpError {
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            return io_error(io);
        }
        source = s.source();
    }
    if e.is_incomplete_message() || e.is_canceled() || e.is_closed() {
        HttpError::Closed
    } else {
        HttpError::Other(e.to_string())
    }
}

/// A complete response.
#[derive(Debug, Clone)]
pub struct Response {
    /// HTTP status code.
    pub status: u16,
    /// The whole body.
    pub body: Bytes,
}

/// One request to send.
#[derive(Debug, Clone)]
pub struct Outgoing {
    /// `GET` or `POST`.
    pub method: Method,
    /// Path below the target's prefix, e.g. `/clientes/1/extrato`.
    pub path: String,
    /// JSON body, sent with `content-type: application/json`.
    pub body: Option<String>,
}

/// A virtual user's connection slot: empty until its first request, then
/// kept alive for its next requests while the server allows it.
#[derive(Default)]
pub struct Connection {
    sender: Option<SendRequest<Full<Bytes>>>,
}

impl Connection {
    /// A slot with no connection yet.
    pub fn new() -> Connection {
        Connection::default()
    }

    async fn open(target: &Target) -> Result<SendRequest<Full<Bytes>>, HttpError> {
        let stream =
            match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(target.addr)).await {
                Err(_) => return Err(HttpError::ConnectTimeout),
                Ok(Err(e)) => return Err(io_error(&e)),
                Ok(Ok(s)) => s,
            };
        // Netty, under Gatling, sets TCP_NODELAY too.
        let _ = stream.set_nodelay(true);
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| hyper_error(&e))?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(sender)
    }

    /// Sends `req` (opening a connection first when there is none usable)
    /// and reads the whole response, within [`REQUEST_TIMEOUT`]. Returns the
    /// outcome and the instants the request started (before connecting,
    /// when it connects) and ended (after the last body byte, or at the
    /// failure), which is how Gatling measures response time.
    pub async fn send(
        &mut self,
        target: &Target,
        req: &Outgoing,
    ) -> (Result<Response, HttpError>, Instant, Instant) {
        let start = Instant::now();
        let outcome = match tokio::time::timeout(REQUEST_TIMEOUT, self.exchange(target, req)).await
        {
            Ok(r) => r,
            Err(_) => Err(HttpError::Timeout),
        };
        if outcome.is_err() {
            self.sender = None;
        }
        (outcome, start, Instant::now())
    }

    async fn exchange(&mut self, target: &Target, req: &Outgoing) -> Result<Response, HttpError> {
        if self.sender.as_ref().is_none_or(|s| s.is_closed()) {
            self.sender = Some(Self::open(target).await?);
        }
        let sender = self.sender.as_mut().expect("connection just opened");
        sender.ready().await.map_err(|e| hyper_error(&e))?;
        let mut builder = Request::builder()
            .method(req.method.clone())
            .uri(format!("{}{}", target.prefix, req.path))
            .header(HOST, &target.host_header)
            .header(USER_AGENT, USER_AGENT_VALUE);
        let body = match &req.body {
            Some(b) => {
                builder = builder.header(CONTENT_TYPE, "application/json");
                Full::new(Bytes::from(b.clone()))
            }
            None => Full::new(Bytes::new()),
        };
        let request = builder
            .body(body)
            .map_err(|e| HttpError::Other(e.to_string()))?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| hyper_error(&e))?;
        let status = response.status().as_u16();
        let close = response
            .headers()
            .get(CONNECTION)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.eq_ignore_ascii_case("close"));
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| hyper_error(&e))?
            .to_bytes();
        if close {
            self.sender = None;
        }
        Ok(Response { status, body })
    }
}
