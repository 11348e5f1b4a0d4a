//! Binding the listener and serving the router until a shutdown signal.

use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use axum::Router;
use tokio::net::{TcpListener, UnixListener};

use crate::config::Listen;

/// A bound listener, TCP or unix socket.
pub enum Bound {
    /// A TCP listener.
    Tcp(TcpListener),
    /// A unix socket listener.
    Unix(UnixListener),
}

/// Binds `listen`. For a unix socket, a stale socket file at the path is
/// removed first (a regular file is left alone and reported), and the new
/// socket is made world-writable (mode 0666) so that a load balancer running
/// as another user can connect.
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

/// Serves `app` on `bound` until `shutdown` completes, then finishes the
/// requests in flight.
pub async fn serve(
    bound: Bound,
    app: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    match bound {
        Bound::Tcp(listener) => {
            axum::serve(listener, app)
                .with_graceful_shutdown(shutdown)
                .await
        }
        Bound::Unix(listener) => {
            axum::serve(listener, app)
                .with_graceful_shutdown(shutdown)
                .await
        }
    }
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
