//! The checker's HTTP client: one request per new HTTP/1.1 connection
//! (hyper), or a [`KeepAlive`] connection for the sustained probe, every
//! header and body byte under the caller's control, and the exchange kept
//! whole so that a failed check can show exactly what was sent and what came
//! back.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use serde::Serialize;
use tokio::net::TcpStream;

use crate::http::Target;

/// How long one exchange may take, connection included.
pub const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(10);

/// The `User-Agent` of the checker's requests.
pub const USER_AGENT: &str = concat!("crebito-load-check/", env!("CARGO_PKG_VERSION"));

/// A request as sent.
#[derive(Debug, Clone, Serialize)]
pub struct SentRequest {
    /// Method, e.g. `POST`.
    pub method: String,
    /// Full URL.
    pub url: String,
    /// Headers in the order sent (`host`, `user-agent`, `content-type`,
    /// `content-length`).
    pub headers: Vec<(String, String)>,
    /// Body, as text (invalid UTF-8 shown with replacement characters).
    pub body: String,
}

/// A response as received.
#[derive(Debug, Clone, Serialize)]
pub struct Reply {
    /// HTTP status.
    pub status: u16,
    /// Headers.
    pub headers: Vec<(String, String)>,
    /// Body, as text (invalid UTF-8 shown with replacement characters).
    pub body: String,
    /// The body bytes.
    #[serde(skip)]
    pub raw: Bytes,
}

/// One request and its outcome.
#[derive(Debug, Clone, Serialize)]
pub struct Exchange {
    /// What was sent.
    pub request: SentRequest,
    /// What came back.
    pub response: Option<Reply>,
    /// Why nothing came back (connection or timeout), when nothing did.
    pub error: Option<String>,
}

impl Exchange {
    /// The status, when a response came.
    pub fn status(&self) -> Option<u16> {
        self.response.as_ref().map(|r| r.status)
    }

    /// The body parsed as JSON, when a response came and it is JSON.
    pub fn json(&self) -> Option<serde_json::Value> {
        self.response
            .as_ref()
            .and_then(|r| serde_json::from_slice(&r.raw).ok())
    }

    /// The exchange as text: request line, headers and body, then the
    /// status, headers and body of the response (or the error).
    pub fn render(&self) -> String {
        let r = &self.request;
        let mut o = format!("{} {}\n", r.method, r.url);
        for (k, v) in &r.headers {
            o.push_str(&format!("{k}: {v}\n"));
        }
        if !r.body.is_empty() {
            o.push_str(&format!("\n{}\n", shorten(&r.body)));
        }
        match (&self.response, &self.error) {
            (Some(reply), _) => {
                o.push_str(&format!("→ {}\n", reply.status));
                for (k, v) in &reply.headers {
                    o.push_str(&format!("{k}: {v}\n"));
                }
                if !reply.body.is_empty() {
                    o.push_str(&format!("\n{}\n", shorten(&reply.body)));
                }
            }
            (None, Some(e)) => o.push_str(&format!("→ no response: {e}\n")),
            (None, None) => o.push_str("→ no response\n"),
        }
        o
    }
}

/// At most 2,000 characters of `s`.
fn shorten(s: &str) -> String {
    if s.chars().count() > 2000 {
        let cut: String = s.chars().take(2000).collect();
        format!("{cut}… ({} bytes in all)", s.len())
    } else {
        s.to_string()
    }
}

/// What to send.
#[derive(Debug, Clone)]
pub struct Outgoing {
    /// Method.
    pub method: Method,
    /// Path below the target's prefix.
    pub path: String,
    /// `Content-Type`, if any.
    pub content_type: Option<String>,
    /// Body bytes (none for an empty body).
    pub body: Vec<u8>,
}

impl Outgoing {
    /// `GET path`.
    pub fn get(path: impl Into<String>) -> Outgoing {
        Outgoing {
            method: Method::GET,
            path: path.into(),
            content_type: None,
            body: Vec::new(),
        }
    }

    /// `POST path` with `content-type: application/json`.
    pub fn post_json(path: impl Into<String>, body: impl Into<Vec<u8>>) -> Outgoing {
        Outgoing {
            method: Method::POST,
            path: path.into(),
            content_type: Some("application/json".to_string()),
            body: body.into(),
        }
    }
}

/// Sends `out` to `target` on a new connection and reads the whole
/// response within [`EXCHANGE_TIMEOUT`]. Never fails: a connection error
/// or timeout is kept in [`Exchange::error`].
pub async fn send(target: &Target, out: &Outgoing) -> Exchange {
    KeepAlive::new().send(target, out).await
}

/// One connection kept alive from one request to the next (reopened when
/// the server closes it), for probes that send many requests in a row: a
/// new connection per request would add its handshake to every request and
/// leave the server idle between them.
#[derive(Default)]
pub struct KeepAlive {
    sender: Option<SendRequest<Full<Bytes>>>,
    driver: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for KeepAlive {
    fn drop(&mut self) {
        if let Some(d) = self.driver.take() {
            d.abort();
        }
    }
}

impl KeepAlive {
    /// No connection yet: the first request opens it.
    pub fn new() -> KeepAlive {
        KeepAlive::default()
    }

    /// Sends `out` to `target` on this connection (opened first when there
    /// is none usable) and reads the whole response within
    /// [`EXCHANGE_TIMEOUT`]. Never fails: a connection error or timeout is
    /// kept in [`Exchange::error`], and the connection is dropped then.
    pub async fn send(&mut self, target: &Target, out: &Outgoing) -> Exchange {
        self.send_within(target, out, EXCHANGE_TIMEOUT).await
    }

    /// [`KeepAlive::send`], with at most `limit` (and at most
    /// [`EXCHANGE_TIMEOUT`]) for the whole exchange.
    pub async fn send_within(
        &mut self,
        target: &Target,
        out: &Outgoing,
        limit: Duration,
    ) -> Exchange {
        let limit = limit.min(EXCHANGE_TIMEOUT);
        let mut headers = vec![
            ("host".to_string(), target.host_header.clone()),
            ("user-agent".to_string(), USER_AGENT.to_string()),
        ];
        if let Some(ct) = &out.content_type {
            headers.push(("content-type".to_string(), ct.clone()));
        }
        if !out.body.is_empty() || out.method == Method::POST {
            headers.push(("content-length".to_string(), out.body.len().to_string()));
        }
        let request = SentRequest {
            method: out.method.to_string(),
            url: format!("{}{}", target.base_url.trim_end_matches('/'), out.path),
            headers: headers.clone(),
            body: String::from_utf8_lossy(&out.body).into_owned(),
        };
        let outcome = tokio::time::timeout(limit, self.exchange(target, out, &headers)).await;
        let (response, error) = match outcome {
            Ok(Ok(reply)) => (Some(reply), None),
            Ok(Err(e)) => (None, Some(e)),
            Err(_) => (
                None,
                Some(if limit.subsec_millis() == 0 {
                    format!("no complete response within {} s", limit.as_secs())
                } else {
                    format!("no complete response within {:.1} s", limit.as_secs_f64())
                }),
            ),
        };
        if error.is_some() {
            self.close();
        }
        Exchange {
            request,
            response,
            error,
        }
    }

    fn close(&mut self) {
        self.sender = None;
        if let Some(d) = self.driver.take() {
            d.abort();
        }
    }

    async fn exchange(
        &mut self,
        target: &Target,
        out: &Outgoing,
        headers: &[(String, String)],
    ) -> Result<Reply, String> {
        if self.sender.as_ref().is_none_or(|s| s.is_closed()) {
            self.close();
            let stream = TcpStream::connect(target.addr)
                .await
                .map_err(|e| format!("cannot connect to {}: {e}", target.addr))?;
            let _ = stream.set_nodelay(true);
            let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                .await
                .map_err(|e| e.to_string())?;
            self.driver = Some(tokio::spawn(async move {
                let _ = conn.await;
            }));
            self.sender = Some(sender);
        }
        let sender = self.sender.as_mut().expect("connection just opened");
        sender.ready().await.map_err(|e| e.to_string())?;
        let mut builder = Request::builder()
            .method(out.method.clone())
            .uri(format!("{}{}", target.prefix, out.path));
        for (k, v) in headers {
            builder = builder.header(k.as_str(), v.as_str());
        }
        let request = builder
            .body(Full::new(Bytes::from(out.body.clone())))
            .map_err(|e| e.to_string())?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| e.to_string())?;
        let status = response.status().as_u16();
        let headers: Vec<(String, String)> = response
            .headers()
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        let close = headers
            .iter()
            .any(|(k, v)| k == "connection" && v.eq_ignore_ascii_case("close"));
        let raw = response
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        if close {
            self.close();
        }
        Ok(Reply {
            status,
            headers,
            body: String::from_utf8_lossy(&raw).into_owned(),
            raw,
        })
    }
}
