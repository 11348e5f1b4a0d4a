//! The HTTP edge over real sockets (docs/contract.md §2.4, §2.5, §2.7):
//! every read and write has a deadline, on TCP and on unix sockets; errors
//! hyper answers itself get a problem body and their status; refused
//! requests leave a usable connection or close it cleanly; framing the
//! server does not honour is refused.

use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crebito::ledger::sqlite::SqliteLedger;
use crebito::ledger::Ledger;
use crebito::server::{bind, serve, Bound, Limits, Listen};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::helpers;

/// The body deadline and write deadline of these tests.
const BODY_TIMEOUT: Duration = Duration::from_millis(600);
const WRITE_TIMEOUT: Duration = Duration::from_millis(600);

/// How long after a deadline a connection may take to give its slot back:
/// the response, at most the server's linger (2 s), and the scheduling of a
/// machine busy with other tests. Without the deadlines, never.
const SLACK: Duration = Duration::from_secs(8);

trait Stream: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Stream for T {}

#[derive(Debug, Clone, Copy)]
enum Transport {
    Tcp,
    Unix,
}

struct Server {
    addr: Listen,
    ledger: Arc<SqliteLedger>,
    _dir: tempfile::TempDir,
}

impl Server {
    async fn start(transport: Transport, max_connections: usize) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let ledger = Arc::new(SqliteLedger::open(&dir.path().join("l.db")).await.unwrap());
        let listen = match transport {
            Transport::Tcp => "127.0.0.1:0".parse().unwrap(),
            Transport::Unix => Listen::Unix(dir.path().join("api.sock")),
        };
        let bound = bind(&listen).await.unwrap();
        let addr = match &bound {
            Bound::Tcp(listener) => Listen::Tcp(listener.local_addr().unwrap()),
            Bound::Unix(_) => listen,
        };
        let limits = Limits {
            idle_timeout: Duration::from_secs(30),
            body_timeout: BODY_TIMEOUT,
            write_timeout: WRITE_TIMEOUT,
            max_connections,
            shutdown_grace: Duration::from_secs(1),
        };
        tokio::spawn(serve(
            bound,
            crebito::http::router(ledger.clone()),
            limits,
            std::future::pending(),
        ));
        Server {
            addr,
            ledger,
            _dir: dir,
        }
    }

    async fn connect(&self) -> Pin<Box<dyn Stream>> {
        match &self.addr {
            Listen::Tcp(addr) => Box::pin(tokio::net::TcpStream::connect(addr).await.unwrap()),
            Listen::Unix(path) => Box::pin(connect_unix(path).await),
        }
    }

    async fn transactions(&self) -> i64 {
        let report = self.ledger.audit().await.unwrap();
        report.accounts.iter().map(|a| a.transactions).sum()
    }
}

async fn connect_unix(path: &PathBuf) -> tokio::net::UnixStream {
    tokio::net::UnixStream::connect(path).await.unwrap()
}

/// One response as read from the wire.
#[derive(Debug)]
struct Response {
    status: u16,
    head: String,
    body: Vec<u8>,
}

impl Response {
    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().find_map(|line| {
            let (n, v) = line.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }

    /// The problem body's `type`, after checking the problem shape.
    fn problem_type(&self) -> String {
        assert_eq!(
            self.header("content-type"),
            Some("application/problem+json"),
            "{self:?}"
        );
        let body: serde_json::Value = serde_json::from_slice(&self.body).expect("JSON body");
        helpers::assert_problem(self.status, &body);
        body["type"].as_str().unwrap().to_owned()
    }
}

/// Reads one response (skipping `100 Continue`) within `within`.
async fn read_response(stream: &mut Pin<Box<dyn Stream>>, within: Duration) -> Response {
    let deadline = tokio::time::Instant::now() + within;
    let mut bytes = Vec::new();
    loop {
        if let Some(end) = find(&bytes, b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&bytes[..end]).into_owned();
            let status: u16 = head[9..12].parse().unwrap();
            if status == 100 {
                bytes.drain(..end + 4);
                continue;
            }
            let response = Response {
                status,
                head,
                body: Vec::new(),
            };
            let length: usize = response
                .header("content-length")
                .map(|v| v.parse().unwrap())
                .unwrap_or(0);
            if bytes.len() >= end + 4 + length {
                return Response {
                    body: bytes[end + 4..end + 4 + length].to_vec(),
                    ..response
                };
            }
        }
        let mut buffer = [0u8; 4096];
        let n = tokio::time::timeout_at(deadline, stream.read(&mut buffer))
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "no response within {within:?}; got {:?}",
                    String::from_utf8_lossy(&bytes)
                )
            })
            .expect("read a response (not a reset)");
        assert!(
            n > 0,
            "closed before a response: {:?}",
            String::from_utf8_lossy(&bytes)
        );
        bytes.extend_from_slice(&buffer[..n]);
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// True when the server closes the connection cleanly (EOF, not a reset)
/// within `within`.
async fn closed_cleanly(stream: &mut Pin<Box<dyn Stream>>, within: Duration) -> bool {
    let mut buffer = [0u8; 256];
    match tokio::time::timeout(within, stream.read(&mut buffer)).await {
        Ok(Ok(0)) => true,
        Ok(Ok(n)) => panic!(
            "unexpected bytes: {:?}",
            String::from_utf8_lossy(&buffer[..n])
        ),
        Ok(Err(e)) => panic!("connection reset instead of closed: {e}"),
        Err(_) => false,
    }
}

const POST_HEAD: &str =
    "POST /clientes/1/transacoes HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n";
const VALID: &str = r#"{"valor": 1, "tipo": "c", "descricao": "x"}"#;
const HEALTH: &[u8] = b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n";

/// Sends `request`, expects a 408 `body-timeout` within the body deadline
/// plus slack, then a clean close; nothing recorded.
async fn expect_body_timeout(server: &Server, mut stream: Pin<Box<dyn Stream>>, request: &[u8]) {
    let started = Instant::now();
    stream.write_all(request).await.unwrap();
    let response = read_response(&mut stream, BODY_TIMEOUT + SLACK).await;
    assert_eq!(response.status, 408, "{response:?}");
    assert_eq!(response.problem_type(), "urn:crebito:problem:body-timeout");
    assert_eq!(response.header("connection"), Some("close"));
    assert!(started.elapsed() >= BODY_TIMEOUT, "{:?}", started.elapsed());
    assert!(
        closed_cleanly(&mut stream, SLACK).await,
        "still open after the 408"
    );
    assert_eq!(server.transactions().await, 0);
}

macro_rules! on_both_transports {
    ($($case:ident),* $(,)?) => {
        mod tcp {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    super::$case(super::Transport::Tcp).await;
                }
            )*
        }
        mod unix {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    super::$case(super::Transport::Unix).await;
                }
            )*
        }
    };
}

on_both_transports!(
    a_stalled_body_is_408_then_closed,
    expect_continue_then_nothing_is_408,
    a_chunked_body_that_stops_mid_chunk_is_408,
    a_body_at_one_byte_per_interval_is_408,
    a_client_that_never_reads_its_responses_is_disconnected,
    stalled_clients_at_the_cap_do_not_block_a_new_client,
    errors_hyper_answers_itself_have_problem_bodies,
    refused_requests_leave_the_connection_usable,
);

async fn a_stalled_body_is_408_then_closed(transport: Transport) {
    let server = Server::start(transport, 16).await;
    let request = format!("{POST_HEAD}Content-Length: 1000\r\n\r\n{{");
    expect_body_timeout(&server, server.connect().await, request.as_bytes()).await;
}

async fn expect_continue_then_nothing_is_408(transport: Transport) {
    let server = Server::start(transport, 16).await;
    let request = format!("{POST_HEAD}Expect: 100-continue\r\nContent-Length: 44\r\n\r\n");
    expect_body_timeout(&server, server.connect().await, request.as_bytes()).await;
}

async fn a_chunked_body_that_stops_mid_chunk_is_408(transport: Transport) {
    let server = Server::start(transport, 16).await;
    let request = format!("{POST_HEAD}Transfer-Encoding: chunked\r\n\r\n2c\r\n{{\"valor\": 1,");
    expect_body_timeout(&server, server.connect().await, request.as_bytes()).await;
}

async fn a_body_at_one_byte_per_interval_is_408(transport: Transport) {
    let server = Server::start(transport, 16).await;
    let mut stream = server.connect().await;
    let head = format!("{POST_HEAD}Content-Length: {}\r\n\r\n", VALID.len());
    stream.write_all(head.as_bytes()).await.unwrap();
    // Each byte well within the deadline of the previous one: only a
    // deadline for the whole body stops this client.
    let started = Instant::now();
    let (mut read, mut write) = tokio::io::split(stream);
    let trickle = tokio::spawn(async move {
        for byte in VALID.bytes() {
            if write.write_all(&[byte]).await.is_err() {
                break;
            }
            tokio::time::sleep(BODY_TIMEOUT / 6).await;
        }
    });
    let mut bytes = Vec::new();
    let mut buffer = [0u8; 1024];
    while find(&bytes, b"\r\n\r\n").is_none() {
        let n = tokio::time::timeout(BODY_TIMEOUT + SLACK, read.read(&mut buffer))
            .await
            .expect("answered in time")
            .unwrap();
        assert!(n > 0);
        bytes.extend_from_slice(&buffer[..n]);
    }
    let text = String::from_utf8_lossy(&bytes);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(started.elapsed() < BODY_TIMEOUT + SLACK);
    trickle.abort();
    assert_eq!(server.transactions().await, 0);
}

async fn a_client_that_never_reads_its_responses_is_disconnected(transport: Transport) {
    // One connection at a time: the pipelining client holds the only slot
    // until the write deadline frees it.
    let server = Server::start(transport, 1).await;
    let stream: Pin<Box<dyn Stream>> = match &server.addr {
        // A small receive window, so that the server's writes block after a
        // few responses rather than after megabytes of them.
        Listen::Tcp(addr) => {
            let socket = tokio::net::TcpSocket::new_v4().unwrap();
            socket.set_recv_buffer_size(4096).unwrap();
            Box::pin(socket.connect(*addr).await.unwrap())
        }
        Listen::Unix(_) => server.connect().await,
    };
    let (_read, mut write) = tokio::io::split(stream);
    let pipeline = tokio::spawn(async move {
        // Until the server stops reading (its responses are stuck: hyper
        // reads no request while one is unanswered) or closes the
        // connection; the kernel buffers hold megabytes before that.
        let batch = HEALTH.repeat(1000);
        for _ in 0..1000 {
            match tokio::time::timeout(Duration::from_secs(2), write.write_all(&batch)).await {
                Ok(Ok(())) => {}
                _ => break,
            }
        }
        write
    });
    let _write = pipeline.await.unwrap();
    let started = Instant::now();
    let mut next = server.connect().await;
    next.write_all(HEALTH).await.unwrap();
    let response = read_response(&mut next, WRITE_TIMEOUT + SLACK).await;
    assert_eq!(response.status, 200);
    assert!(started.elapsed() < WRITE_TIMEOUT + SLACK);
}

async fn stalled_clients_at_the_cap_do_not_block_a_new_client(transport: Transport) {
    const CAP: usize = 4;
    let server = Server::start(transport, CAP).await;
    let mut stalled = Vec::new();
    for i in 0..CAP {
        let mut stream = server.connect().await;
        // Each kind of stall at once.
        let request = match i % 3 {
            0 => format!("{POST_HEAD}Content-Length: 1000\r\n\r\n{{"),
            1 => format!("{POST_HEAD}Expect: 100-continue\r\nContent-Length: 44\r\n\r\n"),
            _ => format!("{POST_HEAD}Transfer-Encoding: chunked\r\n\r\n2c\r\n{{"),
        };
        stream.write_all(request.as_bytes()).await.unwrap();
        stalled.push(stream);
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = Instant::now();
    let mut client = server.connect().await;
    client.write_all(HEALTH).await.unwrap();
    let response = read_response(&mut client, BODY_TIMEOUT + SLACK).await;
    assert_eq!(response.status, 200);
    assert!(
        started.elapsed() < BODY_TIMEOUT + SLACK,
        "served after {:?}",
        started.elapsed()
    );
}

async fn errors_hyper_answers_itself_have_problem_bodies(transport: Transport) {
    let server = Server::start(transport, 16).await;
    let many_headers: String = (0..101).map(|i| format!("X-H{i}: v\r\n")).collect();
    let cases: Vec<(Vec<u8>, u16, &str)> = vec![
        (b"GARBAGE\r\n\r\n".to_vec(), 400, "malformed-request"),
        (
            b"GET /health HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n".to_vec(),
            400,
            "malformed-request",
        ),
        (
            b"GET /health HTTP/1.1\r\nHost: x\r\nX: a\x01b\r\n\r\n".to_vec(),
            400,
            "malformed-request",
        ),
        (
            b"GET /health HTTP/9.9\r\nHost: x\r\n\r\n".to_vec(),
            400,
            "malformed-request",
        ),
        (
            format!("GET /health HTTP/1.1\r\nHost: x\r\n{many_headers}\r\n").into_bytes(),
            431,
            "request-head-too-large",
        ),
        (
            format!(
                "GET /health HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
                "v".repeat(9000)
            )
            .into_bytes(),
            431,
            "request-head-too-large",
        ),
        (
            format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(9000)).into_bytes(),
            414,
            "uri-too-long",
        ),
        (
            format!("{POST_HEAD}Transfer-Encoding: gzip\r\n\r\n").into_bytes(),
            400,
            "malformed-request",
        ),
    ];
    for (request, status, kind) in cases {
        let mut stream = server.connect().await;
        // A big request may be refused before it is all sent.
        let _ = stream.write_all(&request).await;
        let response = read_response(&mut stream, Duration::from_secs(5)).await;
        let shown = String::from_utf8_lossy(&request[..request.len().min(60)]).into_owned();
        assert_eq!(response.status, status, "{shown}: {response:?}");
        assert_eq!(
            response.problem_type(),
            format!("urn:crebito:problem:{kind}"),
            "{shown}"
        );
        assert_eq!(response.header("connection"), Some("close"), "{shown}");
        assert!(closed_cleanly(&mut stream, SLACK).await, "{shown}");
    }
}

async fn refused_requests_leave_the_connection_usable(transport: Transport) {
    let server = Server::start(transport, 16).await;
    // More than arrives in one read: hyper alone drains only what one read
    // brings, then closes with the rest unread, and the reuse meets a reset.
    let big_json = format!("{{\"descricao\": \"{}\"}}", "x".repeat(40_000));
    let cases: Vec<(String, u16)> = vec![
        // 415: refused on its Content-Type, body unread.
        (
            format!("POST /clientes/1/transacoes HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{big_json}", big_json.len()),
            415,
        ),
        // 413: refused on its declared length.
        (format!("{POST_HEAD}Content-Length: {}\r\n\r\n{big_json}", big_json.len()), 413),
        // 404: unknown path, and an id that cannot name an account.
        (format!("POST /nothing HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{big_json}", big_json.len()), 404),
        (format!("POST /clientes/0/transacoes HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{big_json}", big_json.len()), 404),
        // 405 with a chunked body.
        (format!("PUT /clientes/1/transacoes HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{big_json}\r\n0\r\n\r\n", big_json.len()), 405),
    ];
    for (request, status) in cases {
        let mut stream = server.connect().await;
        stream.write_all(request.as_bytes()).await.unwrap();
        let response = read_response(&mut stream, Duration::from_secs(5)).await;
        assert_eq!(response.status, status, "{response:?}");
        assert_eq!(response.header("connection"), None, "{response:?}");
        // The same connection serves the next request.
        stream.write_all(HEALTH).await.unwrap();
        let next = read_response(&mut stream, Duration::from_secs(5)).await;
        assert_eq!(next.status, 200, "after {status}: {next:?}");
    }
    // A body too long to drain: Connection: close, then a clean close (no
    // reset) while the client is still sending.
    let mut stream = server.connect().await;
    let head = format!("{POST_HEAD}Content-Length: 200000\r\n\r\n");
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(&vec![b' '; 100_000]).await.unwrap();
    let response = read_response(&mut stream, Duration::from_secs(5)).await;
    assert_eq!(response.status, 413, "{response:?}");
    assert_eq!(response.header("connection"), Some("close"));
    let _ = stream.write_all(&vec![b' '; 50_000]).await;
    assert!(closed_cleanly(&mut stream, SLACK).await);
    assert_eq!(server.transactions().await, 0);
}

/// One request on a new TCP connection; the response.
async fn exchange(server: &Server, request: &[u8]) -> Response {
    let mut stream = server.connect().await;
    stream.write_all(request).await.unwrap();
    read_response(&mut stream, Duration::from_secs(5)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreadable_bodies_are_400_not_413() {
    let server = Server::start(Transport::Tcp, 16).await;
    // A malformed chunk size.
    let response = exchange(
        &server,
        format!("{POST_HEAD}Transfer-Encoding: chunked\r\n\r\nzz\r\n{VALID}\r\n0\r\n\r\n")
            .as_bytes(),
    )
    .await;
    assert_eq!(response.status, 400, "{response:?}");
    assert_eq!(
        response.problem_type(),
        "urn:crebito:problem:unreadable-body"
    );
    // Shorter than its Content-Length, then the client's end of the stream.
    let mut stream = tokio::net::TcpStream::connect(match &server.addr {
        Listen::Tcp(addr) => *addr,
        Listen::Unix(_) => unreachable!(),
    })
    .await
    .unwrap();
    stream
        .write_all(format!("{POST_HEAD}Content-Length: 100\r\n\r\n{{\"valor\"").as_bytes())
        .await
        .unwrap();
    stream.shutdown().await.unwrap();
    let mut stream: Pin<Box<dyn Stream>> = Box::pin(stream);
    let response = read_response(&mut stream, Duration::from_secs(5)).await;
    assert_eq!(response.status, 400, "{response:?}");
    assert_eq!(
        response.problem_type(),
        "urn:crebito:problem:unreadable-body"
    );
    assert_eq!(server.transactions().await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn framing_and_metadata_not_honoured_are_refused() {
    let server = Server::start(Transport::Tcp, 16).await;
    let body = format!("Content-Length: {}\r\n\r\n{VALID}", VALID.len());
    let cases: Vec<(String, u16, &str)> = vec![
        (
            format!(
                "POST /clientes/1/transacoes HTTP/1.1\r\nContent-Type: application/json\r\n{body}"
            ),
            400,
            "invalid-host",
        ),
        (format!("{POST_HEAD}Host: y\r\n{body}"), 400, "invalid-host"),
        (
            format!(
                "{POST_HEAD}Transfer-Encoding: gzip, chunked\r\n\r\n{:x}\r\n{VALID}\r\n0\r\n\r\n",
                VALID.len()
            ),
            501,
            "unsupported-transfer-encoding",
        ),
        (
            format!("{POST_HEAD}Content-Encoding: gzip\r\n{body}"),
            415,
            "unsupported-content-encoding",
        ),
        (
            format!("{POST_HEAD}Content-Type: application/json\r\n{body}"),
            400,
            "repeated-content-type",
        ),
        // Invalid UTF-8 in a field that would be ignored (\u{1} stands
        // for a byte that is not UTF-8).
        {
            let json =
                "{\"valor\": 1, \"tipo\": \"c\", \"descricao\": \"x\", \"extra\": \"\u{1}\"}";
            (
                format!("{POST_HEAD}Content-Length: {}\r\n\r\n{json}", json.len()),
                200,
                "",
            )
        },
    ];
    for (request, status, kind) in cases {
        let mut bytes = request.into_bytes();
        if status == 200 {
            // Replace the \u{1} placeholder by a byte that is not UTF-8.
            let at = bytes.iter().position(|&b| b == 1).unwrap();
            bytes[at] = 0xff;
        }
        let response = exchange(&server, &bytes).await;
        if status == 200 {
            assert_eq!(response.status, 400, "{response:?}");
            assert_eq!(
                response.problem_type(),
                "urn:crebito:problem:malformed-json"
            );
            continue;
        }
        assert_eq!(response.status, status, "{response:?}");
        assert_eq!(
            response.problem_type(),
            format!("urn:crebito:problem:{kind}")
        );
        if kind == "unsupported-content-encoding" {
            assert_eq!(response.header("accept-encoding"), Some("identity"));
        }
    }
    assert_eq!(server.transactions().await, 0);
    // HTTP/1.0 without Host is fine; identity coding is no coding.
    let response = exchange(&server, b"GET /health HTTP/1.0\r\n\r\n").await;
    assert_eq!(response.status, 200, "{response:?}");
    let response = exchange(
        &server,
        format!("{POST_HEAD}Content-Encoding: identity\r\n{body}").as_bytes(),
    )
    .await;
    assert_eq!(response.status, 200, "{response:?}");
}

/// RFC 9112 §6.1 forbids applying `chunked` more than once: a body
/// declared so is refused (400 `malformed-request`, nothing recorded) and
/// its connection closed, on one field line or two; the other framings of
/// §6.1 and §6.3 that hyper judges itself keep their answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_applied_twice_is_refused_and_closes_the_connection() {
    let server = Server::start(Transport::Tcp, 16).await;
    let chunk = format!("{:x}\r\n{VALID}\r\n0\r\n\r\n", VALID.len());
    let cases = [
        "Transfer-Encoding: chunked, chunked\r\n",
        "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n",
        "Transfer-Encoding: CHUNKED,chunked\r\n",
    ];
    for fields in cases {
        let mut stream = server.connect().await;
        let request = format!("{POST_HEAD}{fields}\r\n{chunk}");
        stream.write_all(request.as_bytes()).await.unwrap();
        let response = read_response(&mut stream, Duration::from_secs(5)).await;
        assert_eq!(response.status, 400, "{fields:?}: {response:?}");
        assert_eq!(
            response.problem_type(),
            "urn:crebito:problem:malformed-request"
        );
        assert_eq!(response.header("connection"), Some("close"), "{fields:?}");
        assert!(closed_cleanly(&mut stream, SLACK).await, "{fields:?}");
    }
    assert_eq!(server.transactions().await, 0);
    // The other combinations of RFC 9112 §6.1 and §6.3.
    let refused = [
        // chunked not last: 400 (hyper).
        (
            "Transfer-Encoding: chunked, gzip\r\n",
            400,
            "malformed-request",
        ),
        // a coding the server does not implement, chunked last: 501.
        (
            "Transfer-Encoding: identity, chunked\r\n",
            501,
            "unsupported-transfer-encoding",
        ),
        (
            "Transfer-Encoding: gzip, chunked\r\n",
            501,
            "unsupported-transfer-encoding",
        ),
    ];
    for (fields, status, kind) in refused {
        let request = format!("{POST_HEAD}{fields}\r\n{chunk}");
        let response = exchange(&server, request.as_bytes()).await;
        assert_eq!(response.status, status, "{fields:?}: {response:?}");
        assert_eq!(
            response.problem_type(),
            format!("urn:crebito:problem:{kind}")
        );
    }
    // Transfer-Encoding in HTTP/1.0: 400 (hyper).
    let request = format!(
        "POST /clientes/1/transacoes HTTP/1.0\r\nContent-Type: application/json\r\n\
         Transfer-Encoding: chunked\r\n\r\n{chunk}"
    );
    let response = exchange(&server, request.as_bytes()).await;
    assert_eq!(response.status, 400, "{response:?}");
    assert_eq!(server.transactions().await, 0);
    // Transfer-Encoding and Content-Length: framed by the chunked coding
    // alone, then the connection is closed (RFC 9112 §6.3).
    let mut stream = server.connect().await;
    let request =
        format!("{POST_HEAD}Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n{chunk}");
    stream.write_all(request.as_bytes()).await.unwrap();
    let response = read_response(&mut stream, Duration::from_secs(5)).await;
    assert_eq!(response.status, 200, "{response:?}");
    assert!(closed_cleanly(&mut stream, SLACK).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotency_key_quoted_and_bare_are_one_key() {
    let server = Server::start(Transport::Tcp, 16).await;
    let post = |key: &str| {
        format!(
            "{POST_HEAD}Idempotency-Key: {key}\r\nContent-Length: {}\r\n\r\n{VALID}",
            VALID.len()
        )
    };
    let first = exchange(&server, post(r#""key-7""#).as_bytes()).await;
    assert_eq!(first.status, 200, "{first:?}");
    let bare = exchange(&server, post("key-7").as_bytes()).await;
    assert_eq!((bare.status, &bare.body), (200, &first.body));
    let quoted = exchange(&server, post(r#""key-7""#).as_bytes()).await;
    assert_eq!((quoted.status, &quoted.body), (200, &first.body));
    assert_eq!(server.transactions().await, 1);
    for bad in [r#""key-7"#, r#""key 7""#, r#""a\b""#, r#""k" tail"#] {
        let response = exchange(&server, post(bad).as_bytes()).await;
        assert_eq!(response.status, 422, "{bad}: {response:?}");
        assert_eq!(
            response.problem_type(),
            "urn:crebito:problem:invalid-idempotency-key"
        );
    }
    assert_eq!(server.transactions().await, 1);
}

/// A 404 names what was asked whatever the form of the request target
/// (RFC 9112 §3.2): an authority-form target (`CONNECT`, §3.2.3) has no
/// path, so its authority is named; an asterisk-form one (`OPTIONS *`,
/// §3.2.4) is named `*`; an absolute-form one (§3.2.2) by its path, the
/// part that is routed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_404_names_authority_and_asterisk_form_targets() {
    let server = Server::start(Transport::Tcp, 16).await;
    let cases: [(&[u8], &str); 4] = [
        (
            b"CONNECT x:80 HTTP/1.1\r\nHost: x:80\r\n\r\n",
            "no route for CONNECT x:80; the routes are ",
        ),
        (
            b"CONNECT [::1]:443 HTTP/1.1\r\nHost: [::1]:443\r\n\r\n",
            "no route for CONNECT [::1]:443; the routes are ",
        ),
        (
            b"OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n",
            "no route for OPTIONS *; the routes are ",
        ),
        (
            b"GET http://x/nothing HTTP/1.1\r\nHost: x\r\n\r\n",
            "no route for GET /nothing; the routes are ",
        ),
    ];
    for (request, detail) in cases {
        let shown = String::from_utf8_lossy(request).into_owned();
        let response = exchange(&server, request).await;
        assert_eq!(response.status, 404, "{shown}: {response:?}");
        assert_eq!(
            response.problem_type(),
            "urn:crebito:problem:not-found",
            "{shown}"
        );
        let body: serde_json::Value = serde_json::from_slice(&response.body).unwrap();
        let said = body["detail"].as_str().unwrap();
        assert!(said.starts_with(detail), "{shown}: {said:?}");
        assert!(said.ends_with("GET /metrics"), "{shown}: {said:?}");
    }
}
