//! The HTTP server's own limits: slow or idle clients are disconnected
//! after the idle timeout, keep-alive works within it, concurrent
//! connections are capped, and unix sockets replace only stale sockets.

use std::sync::Arc;
use std::time::Duration;

use crebito::server::{bind, serve, Bound, Limits, Listen};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const REQUEST: &[u8] = b"GET /health HTTP/1.1\r\nHost: test\r\n\r\n";

async fn start(limits: Limits) -> (String, tokio::sync::oneshot::Sender<()>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let ledger = crebito::ledger::sqlite::SqliteLedger::open(&dir.path().join("l.db"))
        .await
        .unwrap();
    let bound = bind(&"127.0.0.1:0".parse().unwrap()).await.unwrap();
    let Bound::Tcp(listener) = &bound else {
        unreachable!()
    };
    let addr = listener.local_addr().unwrap().to_string();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let app = crebito::http::router(Arc::new(ledger));
    tokio::spawn(serve(bound, app, limits, async {
        let _ = stopped.await;
    }));
    (addr, stop, dir)
}

/// Reads one response (headers and a small body) from `stream`.
async fn read_response(stream: &mut TcpStream) -> String {
    let mut buffer = vec![0u8; 4096];
    let mut text = String::new();
    loop {
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buffer))
            .await
            .expect("response in time")
            .unwrap();
        assert!(n > 0, "connection closed before a response: {text:?}");
        text.push_str(&String::from_utf8_lossy(&buffer[..n]));
        if let Some(end) = text.find("\r\n\r\n") {
            let length: usize = text[..end]
                .lines()
                .find_map(|l| l.strip_prefix("content-length: "))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            if text.len() >= end + 4 + length {
                return text;
            }
        }
    }
}

/// True when the server closes the connection within `within`.
async fn closed_within(stream: &mut TcpStream, within: Duration) -> bool {
    let mut buffer = [0u8; 64];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buffer)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue, // e.g. a 408 written before closing
            Err(_) => return false,
        }
    }
}

fn limits(idle_ms: u64, max_connections: usize) -> Limits {
    Limits {
        idle_timeout: Duration::from_millis(idle_ms),
        max_connections,
        shutdown_grace: Duration::from_secs(1),
        ..Limits::default()
    }
}

#[tokio::test]
async fn keep_alive_within_the_idle_timeout_then_closed() {
    let (addr, _stop, _dir) = start(limits(800, 16)).await;
    let mut stream = TcpStream::connect(&addr).await.unwrap();
    for _ in 0..3 {
        stream.write_all(REQUEST).await.unwrap();
        let response = read_response(&mut stream).await;
        assert!(response.starts_with("HTTP/1.1 200"), "{response}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    // Now idle: closed by the server after ~800 ms.
    assert!(!closed_within(&mut stream, Duration::from_millis(300)).await);
    assert!(closed_within(&mut stream, Duration::from_secs(3)).await);
}

#[tokio::test]
async fn slow_request_heads_are_cut_off() {
    let (addr, _stop, _dir) = start(limits(500, 16)).await;
    let mut stream = TcpStream::connect(&addr).await.unwrap();
    stream
        .write_all(b"GET /health HTTP/1.1\r\nHo")
        .await
        .unwrap();
    assert!(closed_within(&mut stream, Duration::from_secs(3)).await);
    // A silent connection too.
    let mut silent = TcpStream::connect(&addr).await.unwrap();
    assert!(closed_within(&mut silent, Duration::from_secs(3)).await);
}

#[tokio::test]
async fn connections_beyond_the_cap_wait_for_a_free_slot() {
    let (addr, _stop, _dir) = start(limits(10_000, 2)).await;
    let mut first = TcpStream::connect(&addr).await.unwrap();
    first.write_all(REQUEST).await.unwrap();
    read_response(&mut first).await;
    let mut second = TcpStream::connect(&addr).await.unwrap();
    second.write_all(REQUEST).await.unwrap();
    read_response(&mut second).await;
    // The third is accepted by the kernel but not served yet.
    let mut third = TcpStream::connect(&addr).await.unwrap();
    third.write_all(REQUEST).await.unwrap();
    let mut buffer = [0u8; 16];
    assert!(
        tokio::time::timeout(Duration::from_millis(400), third.read(&mut buffer))
            .await
            .is_err(),
        "served beyond the cap"
    );
    drop(first);
    let response = read_response(&mut third).await;
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
}

#[tokio::test]
async fn unix_socket_replaces_only_a_stale_socket() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("api.sock");
    let listen = Listen::Unix(path.clone());
    let first = bind(&listen).await.unwrap();
    drop(first); // leaves the socket file behind, like a killed process
    assert!(path.exists());
    let second = bind(&listen).await.expect("stale socket replaced");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o666);
    drop(second);
    let regular = dir.path().join("not-a-socket");
    std::fs::write(&regular, b"data").unwrap();
    let error = bind(&Listen::Unix(regular.clone()))
        .await
        .err()
        .expect("refused");
    assert!(error.to_string().contains("not a socket"), "{error}");
    assert_eq!(std::fs::read(&regular).unwrap(), b"data");
}

#[tokio::test]
async fn serves_over_a_unix_socket_and_stops_on_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("api.sock");
    let ledger = crebito::ledger::sqlite::SqliteLedger::open(&dir.path().join("l.db"))
        .await
        .unwrap();
    let bound = bind(&Listen::Unix(path.clone())).await.unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve(
        bound,
        crebito::http::router(Arc::new(ledger)),
        limits(5_000, 16),
        async {
            let _ = stopped.await;
        },
    ));
    let mut stream = tokio::net::UnixStream::connect(&path).await.unwrap();
    stream.write_all(REQUEST).await.unwrap();
    let mut buffer = vec![0u8; 1024];
    let n = stream.read(&mut buffer).await.unwrap();
    assert!(String::from_utf8_lossy(&buffer[..n]).starts_with("HTTP/1.1 200"));
    drop(stream);
    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .expect("server stopped")
        .unwrap()
        .unwrap();
}
