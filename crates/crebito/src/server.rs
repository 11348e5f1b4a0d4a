//! Binding the listener and serving the router until a shutdown signal.
//!
//! The accept loop is hyper's HTTP/1 connection builder (what `axum::serve`
//! uses), set up with what `axum::serve` does not offer: a header read
//! timeout that also closes idle keep-alive connections, a cap on
//! concurrent connections, and `TCP_NODELAY`.

use std::io;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::Semaphore;

/// A bound listener, TCP or unix socket.
pub enum Bound {
    /// A TCP listener.
    Tcp(TcpListener),
    /// A unix socket listener.
    Unix(UnixListener),
}

/// Connection limits of [`serve`].
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// A connection that has not sent a complete request head within this
    /// time — a slow client, or an idle keep-alive connection — is closed.
    pub idle_timeout: Duration,
    /// Connections served at once; further clients wait in the listen
    /// backlog until one closes.
    pub max_connections: usize,
    /// On shutdown, how long requests in flight get to finish.
    pub shutdown_grace: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            idle_timeout: Duration::from_secs(75),
            max_connections: 4096,
            shutdown_grace: Duration::from_secs(10),
        }
    }
}

/// Binds `listen`. For a unix socket, a stale socket file at the path is
/// removed first (any other kind of file is left alone and reported), and
/// the new socket is made world-writable (mode 0666) so that a load balancer
/// running as another user can connect.
///
/// Errors: the underlying I/O error, with the address in the message.
pub async fn bind(listen: &Listen) -> io::Result<Bound> {
    let with_addr =
        |e: io::Error| io::Error::new(e.kind(), format!("cannot listen on {listen}: {e}"));
    match listen {
        Listen::Tcp(addr) => TcpListener::bind(addr)
            .await
            .map(Bound::Tcp)
            .map_err(with_addr),
        Listen::Unix(path) => {
            remove_stale_socket(path).map_err(with_addr)?;
            let listener = UnixListener::bind(path).map_err(with_addr)?;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o666))
                .map_err(with_addr)?;
            Ok(Bound::Unix(listener))
        }
    }
}

fn remove_stale_socket(path: &Path) -> io::Result<()> {
    use std::os::unix::fs::FileTypeExt;
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => std::fs::remove_file(path),
        Ok(_) => Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            "path exists and is not a socket; refusing to remove it",
        )),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Serves `app` on `bound` with `limits` until `shutdown` completes, then
/// stops accepting and lets requests in flight finish (up to
/// `limits.shutdown_grace`).
///
/// Errors: only a failure of the listener itself; failed connections are
/// logged at debug level and dropped.
pub async fn serve(
    bound: Bound,
    app: Router,
    limits: Limits,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.idle_timeout)
        .keep_alive(true);
    let permits = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            permit = permits.clone().acquire_owned() => permit.expect("semaphore never closed"),
            () = &mut shutdown => break,
        };
        let accepted = tokio::select! {
            accepted = accept(&bound) => accepted,
            () = &mut shutdown => break,
        };
        let io = match accepted {
            Ok(io) => io,
            Err(e) if is_transient(&e) => {
                // Out of file descriptors and the like: back off briefly
                // instead of spinning.
                tracing::warn!("accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
            Err(e) => return Err(e),
        };
        let service = TowerToHyperService::new(app.clone());
        let connection = graceful.watch(builder.serve_connection(io, service));
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!("connection ended with an error: {e}");
            }
            drop(permit);
        });
    }
    drop(bound);
    if tokio::time::timeout(limits.shutdown_grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("requests still in flight after the shutdown grace period");
    }
    Ok(())
}

/// An accepted connection of either kind.
trait Stream: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Stream for T {}

async fn accept(bound: &Bound) -> io::Result<TokioIo<Box<dyn Stream>>> {
    Ok(match bound {
        Bound::Tcp(listener) => {
            let (stream, _) = listener.accept().await?;
            // Responses are written whole; don't let Nagle hold them back.
            stream.set_nodelay(true)?;
            TokioIo::new(Box::new(stream) as Box<dyn Stream>)
        }
        Bound::Unix(listener) => {
            let (stream, _) = listener.accept().await?;
            TokioIo::new(Box::new(stream) as Box<dyn Stream>)
        }
    })
}

fn is_transient(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
            | io::ErrorKind::WouldBlock
            | io::ErrorKind::OutOfMemory
    ) || matches!(
        error.raw_os_error(),
        Some(23 /* ENFILE */) | Some(24 /* EMFILE */)
    )
}

/// Completes on SIGINT (Ctrl-C) or SIGTERM (docker stop).
pub async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = interrupt => {}
        _ = terminate => {}
    }
    tracing::info!("shutting down");
}

/// A listening address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Listen {
    /// TCP, e.g. `0.0.0.0:9999`.
    Tcp(SocketAddr),
    /// A unix domain socket path, written `unix:/path/to.sock`.
    Unix(PathBuf),
}

impl FromStr for Listen {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if let Some(path) = text.strip_prefix("unix:") {
            if path.is_empty() {
                return Err("unix: needs a socket path, e.g. unix:/tmp/crebito.sock".into());
            }
            return Ok(Listen::Unix(path.into()));
        }
        text.parse().map(Listen::Tcp).map_err(|_| {
            format!("invalid listen address {text:?}: expected HOST:PORT (e.g. 0.0.0.0:9999) or unix:/path")
        })
    }
}

impl std::fmt::Display for Listen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Listen::Tcp(addr) => addr.fmt(f),
            Listen::Unix(path) => write!(f, "unix:{}", path.display()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_addresses() {
        assert_eq!(
            "0.0.0.0:9999".parse(),
            Ok(Listen::Tcp("0.0.0.0:9999".parse().unwrap()))
        );
        assert_eq!(
            "unix:/tmp/a.sock".parse(),
            Ok(Listen::Unix("/tmp/a.sock".into()))
        );
        assert!("unix:".parse::<Listen>().is_err());
        assert!("localhost".parse::<Listen>().is_err());
        assert!("9999".parse::<Listen>().is_err());
    }
}
