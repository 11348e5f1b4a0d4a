//! Binding the listener and serving the router until a shutdown signal.
//!
//! The accept loop is hyper's HTTP/1 connection builder (what `axum::serve`
//! uses), set up with what `axum::serve` does not offer: every read and
//! write of a connection has a deadline (the request head, the request body,
//! a blocked response), request heads are bounded in bytes and fields,
//! concurrent connections are capped, errors that hyper answers itself get a
//! problem body ([`conn_io`]), and framing rules hyper leaves to the
//! application are enforced ([`guard`]) (docs/contract.md §2.7).

use std::convert::Infallible;
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
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::Semaphore;

pub mod conn_io;
pub mod guard;

/// Largest request head (request line and header fields), bytes: hyper's
/// buffer for a connection (`max_buf_size`, at its minimum). A longer
/// request line is answered 414, a longer head 431 (docs/contract.md §2.7).
/// It also bounds what one connection costs in memory while its head
/// arrives (docs/deployment.md).
pub const MAX_HEAD_BYTES: usize = 8 * 1024;

/// Most header fields in a request head (hyper's default); more is 431.
pub const MAX_HEADERS: usize = 100;

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
    /// A request body must arrive in full within this time after its head;
    /// otherwise it is answered 408 and the connection closed.
    pub body_timeout: Duration,
    /// A response whose writing stays blocked this long (the client does
    /// not read) fails its connection.
    pub write_timeout: Duration,
    /// Connections served at once; further clients wait in the listen
    /// backlog until one closes.
    pub max_connections: usize,
    /// On shutdown, how long requests in flight get to finish.
    pub shutdown_grace: Duration,
}

impl Default for Limits {
    /// The defaults of `crebito serve` (docs/configuration.md).
    fn default() -> Self {
        Limits {
            idle_timeout: Duration::from_secs(75),
            body_timeout: Duration::from_secs(10),
            write_timeout: Duration::from_secs(10),
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
        Ok(meta) if meta.file_type().is_socket() => {
            // A server still accepting on it answers a connect: never take
            // over its socket. Refused means nobody listens: stale.
            match std::os::unix::net::UnixStream::connect(path) {
                Ok(_) => Err(io::Error::new(
                    io::ErrorKind::AddrInUse,
                    "another server is listening on this socket; refusing to replace it",
                )),
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                    std::fs::remove_file(path)
                }
                Err(e) => Err(io::Error::new(
                    e.kind(),
                    format!("cannot tell whether a server still listens on it: {e}"),
                )),
            }
        }
        Ok(_) => Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            "path exists and is not a socket; refusing to remove it",
        )),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Checks that `max_connections` fit this process's open file limit
/// (`RLIMIT_NOFILE`), raising the soft limit towards the hard one if
/// needed. Returns a warning to log when they still do not fit: then
/// `accept` fails with EMFILE before the cap is reached.
pub fn check_file_limit(max_connections: usize) -> Option<String> {
    // Besides the connections: the listener, stdio, database connections
    // and files, the runtime's own descriptors.
    const RESERVED: u64 = 64;
    let needed = max_connections as u64 + RESERVED;
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return None;
    }
    if limit.rlim_cur >= needed {
        return None;
    }
    let raised = libc::rlimit {
        rlim_cur: needed.min(limit.rlim_max),
        rlim_max: limit.rlim_max,
    };
    // SAFETY: setrlimit reads the struct we own.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
        limit = raised;
    }
    (limit.rlim_cur < needed).then(|| {
        format!(
            "--max-connections {max_connections} needs about {needed} file descriptors but the \
             limit is {} (hard limit {}): connections beyond about {} will fail to be accepted; \
             raise `ulimit -n` or lower --max-connections",
            limit.rlim_cur,
            limit.rlim_max,
            limit.rlim_cur.saturating_sub(RESERVED)
        )
    })
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
        .max_buf_size(MAX_HEAD_BYTES)
        .keep_alive(true);
    let permits = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let graceful = GracefulShutdown::new();
    let mut backoff = ACCEPT_BACKOFF_MIN;
    let storm = Arc::new(ConnectionStorm::default());
    let ticking = tokio::spawn(keep_a_timer_armed());
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
        let stream = match accepted {
            Ok(stream) => {
                backoff = ACCEPT_BACKOFF_MIN;
                stream
            }
            Err(e) if is_transient(&e) => {
                // Out of file descriptors and the like: back off (longer
                // while it lasts) instead of spinning, and log once per
                // interval.
                crate::log_limit::ACCEPT_FAILURES.report(&format!("accept failed: {e}"));
                drop(permit);
                tokio::select! {
                    () = tokio::time::sleep(backoff) => {}
                    () = &mut shutdown => break,
                }
                backoff = (backoff * 2).min(ACCEPT_BACKOFF_MAX);
                continue;
            }
            Err(e) => return Err(e),
        };
        let io = TokioIo::new(conn_io::ConnIo::new(
            stream,
            limits.write_timeout,
            MAX_HEAD_BYTES,
        ));
        let app = app.clone();
        let body_timeout = limits.body_timeout;
        let service = hyper::service::service_fn(move |request| {
            let app = app.clone();
            async move { Ok::<_, Infallible>(guard::handle(app, request, body_timeout).await) }
        });
        let connection = graceful.watch(builder.serve_connection(io, service));
        let storm = storm.clone();
        storm.opened();
        let open = crate::metrics::OpenConnection::new();
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!("connection ended with an error: {e}");
            }
            drop(open);
            drop(permit);
            storm.closed();
        });
    }
    drop(bound);
    ticking.abort();
    if tokio::time::timeout(limits.shutdown_grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("requests still in flight after the shutdown grace period");
    }
    Ok(())
}

/// Gives the memory of a connection storm back to the system once it is
/// over.
///
/// Each connection's buffers (about 19 KiB while its head arrives,
/// scripts/memory) come from the heap in small blocks; glibc keeps freed
/// blocks inside the heap, so after a storm of 1000 connections the process
/// stayed at its peak RSS (22.5 MB, against 6.7 MB before the storm),
/// whatever `glibc.malloc.trim_threshold` or `mmap_threshold`.
/// `malloc_trim(0)` also returns the free pages inside the heap (10.5 MB
/// after the same storm; 6.8 to 7.7 MB after storms of 200); it runs (on a
/// blocking thread) when the open connections fall to a quarter of a peak
/// of at least [`ConnectionStorm::MIN_PEAK`]: at most once per storm, never
/// under steady load.
#[derive(Default)]
struct ConnectionStorm {
    open: std::sync::atomic::AtomicUsize,
    /// The most connections open since the last trim.
    peak: std::sync::atomic::AtomicUsize,
}

impl ConnectionStorm {
    /// A peak below this is no storm.
    const MIN_PEAK: usize = 128;

    fn opened(&self) {
        use std::sync::atomic::Ordering::Relaxed;
        let open = self.open.fetch_add(1, Relaxed) + 1;
        self.peak.fetch_max(open, Relaxed);
    }

    fn closed(&self) {
        use std::sync::atomic::Ordering::Relaxed;
        let open = self.open.fetch_sub(1, Relaxed) - 1;
        let peak = self.peak.load(Relaxed);
        if peak >= Self::MIN_PEAK
            && open <= peak / 4
            && self
                .peak
                .compare_exchange(peak, open, Relaxed, Relaxed)
                .is_ok()
        {
            tokio::task::spawn_blocking(trim_heap);
        }
    }
}

/// Returns the heap's free pages to the system (glibc); nothing elsewhere.
fn trim_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases memory the allocator holds free.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Period of [`keep_a_timer_armed`]: below every timer a request arms
/// (the queue wait and the connection wait, 2 s by default; the round trip,
/// the query timeout plus 1 s).
const ARMED_TIMER_PERIOD: Duration = Duration::from_millis(250);

/// Keeps one timer armed at most [`ARMED_TIMER_PERIOD`] ahead, for as long
/// as the server runs.
///
/// Tokio wakes its I/O driver (an `eventfd` write, then one more
/// `epoll_wait`) whenever a timer is armed earlier than the driver's next
/// planned wake-up, even when that happens on the driver's own thread while
/// it is running tasks (tokio-rs/tokio#5207). Every posting arms two such
/// timers (its queue deadline and its round trip's), so without an earlier
/// timer each request paid three extra system calls; with this one armed,
/// theirs are never the earliest. Measured with `strace -c` on an instance
/// under the official load (docs/benchmark.md).
async fn keep_a_timer_armed() {
    let mut tick = tokio::time::interval(ARMED_TIMER_PERIOD);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
    }
}

/// First pause after a failed `accept`; doubled while failures last.
const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(20);
/// Longest pause after a failed `accept`.
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);

/// An accepted connection of either kind.
trait Stream: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Stream for T {}

async fn accept(bound: &Bound) -> io::Result<Box<dyn Stream>> {
    Ok(match bound {
        Bound::Tcp(listener) => {
            let (stream, _) = listener.accept().await?;
            // Responses are written whole; don't let Nagle hold them back.
            stream.set_nodelay(true)?;
            Box::new(stream)
        }
        Bound::Unix(listener) => {
            let (stream, _) = listener.accept().await?;
            Box::new(stream)
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
