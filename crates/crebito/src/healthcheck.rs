//! `crebito healthcheck`: the container health probe of one instance.
//!
//! One `GET /health` (docs/operations.md) on the address the instance
//! listens on, over one HTTP/1.1 connection (hyper's client), answered
//! within a timeout. It is the image's HEALTHCHECK instead of `sh` + `curl`:
//! Docker runs the probe inside the instance's own cgroup, so its CPU comes
//! out of the instance's quota. `sh` + `curl` cost 6–11 ms of CPU per probe
//! on the benchmark VM (`perf stat -e task-clock`), this probe 1.6–1.8 ms.
//! The compose files still turn the check off in their instances: the
//! exec's own set-up costs 16–22 ms, most of a 0.2-CPU instance's 20 ms per
//! 100 ms period (docs/deployment.md, "No health check inside an instance").

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use http_body_util::Empty;
use hyper::body::Bytes;
use hyper::Request;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::server::Listen;

/// Why a probe failed; its text is what `crebito healthcheck` prints.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// Nothing listens there, or the socket file is missing.
    #[error("cannot connect to {0}: {1}")]
    Connect(Listen, std::io::Error),
    /// The connection failed mid-exchange, or the answer was not HTTP.
    #[error("GET /health on {0} failed: {1}")]
    Http(Listen, hyper::Error),
    /// No complete answer within the timeout.
    #[error("GET /health on {0}: no answer within {1:?}")]
    Timeout(Listen, Duration),
    /// The instance answered, but not 2xx (503 while its ledger is
    /// unhealthy, docs/operations.md).
    #[error("GET /health on {0} answered {1}")]
    Status(Listen, hyper::StatusCode),
}

/// The address a probe connects to for an instance listening on `listen`:
/// a wildcard TCP address (`0.0.0.0`, `::`) is reached on the loopback of
/// its family; a specific one and a unix socket as they are.
pub fn probe_address(listen: &Listen) -> Listen {
    match listen {
        Listen::Tcp(addr) if addr.ip().is_unspecified() => {
            let loopback = match addr.ip() {
                IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
                IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
            };
            Listen::Tcp(SocketAddr::new(loopback, addr.port()))
        }
        other => other.clone(),
    }
}

/// `GET /health` on the instance listening on `listen` ([`probe_address`]),
/// all of it (connect, request, status line) within `timeout`. `Ok` for a
/// 2xx answer. Errors: [`ProbeError`], one variant per way it can fail.
pub async fn probe(listen: &Listen, timeout: Duration) -> Result<(), ProbeError> {
    let target = probe_address(listen);
    let exchange = async {
        match &target {
            Listen::Tcp(addr) => {
                let stream = tokio::net::TcpStream::connect(addr)
                    .await
                    .map_err(|e| ProbeError::Connect(target.clone(), e))?;
                get_health(&target, stream).await
            }
            Listen::Unix(path) => {
                let stream = tokio::net::UnixStream::connect(path)
                    .await
                    .map_err(|e| ProbeError::Connect(target.clone(), e))?;
                get_health(&target, stream).await
            }
        }
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| ProbeError::Timeout(target.clone(), timeout))?
}

/// One `GET /health` on an open connection; `Ok` for 2xx.
async fn get_health<S>(target: &Listen, stream: S) -> Result<(), ProbeError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let http = |e| ProbeError::Http(target.clone(), e);
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(http)?;
    tokio::spawn(connection);
    let request = Request::get("/health")
        .header(hyper::header::HOST, "localhost")
        .header(hyper::header::CONNECTION, "close")
        .body(Empty::<Bytes>::new())
        .expect("a GET with constant parts is a valid request");
    let response = sender.send_request(request).await.map_err(http)?;
    if response.status().is_success() {
        Ok(())
    } else {
        Err(ProbeError::Status(target.clone(), response.status()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wildcard_address_is_probed_on_the_loopback_of_its_family() {
        let probed = |text: &str| probe_address(&text.parse().unwrap()).to_string();
        assert_eq!(probed("0.0.0.0:9999"), "127.0.0.1:9999");
        assert_eq!(probed("[::]:8080"), "[::1]:8080");
        assert_eq!(probed("10.1.2.3:9999"), "10.1.2.3:9999");
        assert_eq!(
            probed("unix:/run/crebito/api01.sock"),
            "unix:/run/crebito/api01.sock"
        );
    }

    /// A TCP listener on the loopback that answers its first connection
    /// with `answer` (written as is, after reading the request head), or
    /// never answers when `answer` is `None`; its address.
    async fn one_shot_server(answer: Option<&'static str>) -> Listen {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut head = Vec::new();
            let mut buffer = [0u8; 1024];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = stream.read(&mut buffer).await.unwrap();
                if n == 0 {
                    return;
                }
                head.extend_from_slice(&buffer[..n]);
            }
            assert!(head.starts_with(b"GET /health HTTP/1.1\r\n"));
            match answer {
                Some(answer) => stream.write_all(answer.as_bytes()).await.unwrap(),
                None => std::future::pending::<()>().await,
            }
        });
        Listen::Tcp(address)
    }

    #[tokio::test]
    async fn a_2xx_answer_is_healthy() {
        let ok = "HTTP/1.1 200 OK\r\ncontent-length: 15\r\n\r\n{\"status\":\"ok\"}";
        let listen = one_shot_server(Some(ok)).await;
        probe(&listen, Duration::from_secs(5)).await.unwrap();
    }

    #[tokio::test]
    async fn a_503_answer_is_unhealthy() {
        let unhealthy = "HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n";
        let listen = one_shot_server(Some(unhealthy)).await;
        let error = probe(&listen, Duration::from_secs(5)).await.unwrap_err();
        assert!(
            matches!(error, ProbeError::Status(_, status) if status == 503),
            "{error}"
        );
    }

    #[tokio::test]
    async fn an_instance_that_never_answers_fails_within_the_timeout() {
        let listen = one_shot_server(None).await;
        let error = probe(&listen, Duration::from_millis(200))
            .await
            .unwrap_err();
        assert!(matches!(error, ProbeError::Timeout(..)), "{error}");
    }

    #[tokio::test]
    async fn a_missing_socket_is_a_connect_error_naming_it() {
        let listen: Listen = "unix:/nonexistent/crebito.sock".parse().unwrap();
        let error = probe(&listen, Duration::from_secs(5)).await.unwrap_err();
        assert!(matches!(error, ProbeError::Connect(..)), "{error}");
        assert!(
            error.to_string().contains("/nonexistent/crebito.sock"),
            "{error}"
        );
    }
}
