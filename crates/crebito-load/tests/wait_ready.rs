//! `--wait-ready N` waits N seconds in full: probes every 2 s, the last one
//! when N seconds have passed; the binary says what it waits for while it
//! waits, and ends with the likely fix.

mod common;

use std::time::{Duration, Instant};

use tokio::io::AsyncBufReadExt;

use crebito_load::http::Target;
use crebito_load::runner::{wait_ready, RunError};

/// A loopback port with nothing listening on it (yet).
fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

#[tokio::test]
async fn a_target_ready_within_one_second_passes_wait_ready_1() {
    let port = free_port();
    let target = Target::resolve(&format!("http://127.0.0.1:{port}"))
        .await
        .unwrap();
    // The target starts answering 400 ms after the first probe.
    let server = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(400)).await;
        let app =
            axum::Router::new().route("/clientes/1/extrato", axum::routing::get(|| async { "{}" }));
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .unwrap();
        axum::serve(listener, app).await.unwrap();
    });
    let result = wait_ready(&target, Duration::from_secs(1)).await;
    server.abort();
    result.expect("ready before the 1 s wait ended");
}

#[tokio::test]
async fn an_unready_target_is_waited_for_in_full() {
    let port = free_port();
    let target = Target::resolve(&format!("http://127.0.0.1:{port}"))
        .await
        .unwrap();
    let started = Instant::now();
    let err = wait_ready(&target, Duration::from_secs(3))
        .await
        .unwrap_err();
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_secs(3),
        "gave up after {waited:?}, before the 3 s asked for"
    );
    match err {
        RunError::NotReady { waited_s, last, .. } => {
            assert_eq!(waited_s, 3);
            assert_eq!(last, "connection refused");
        }
        other => panic!("{other}"),
    }
}

/// Runs the binary with `args` against a port where nothing listens:
/// returns its stderr lines, each with the time it came, and the exit code.
async fn waiting_for_nothing(args: &[&str]) -> (Vec<(Duration, String)>, Option<i32>, String) {
    let url = format!("http://127.0.0.1:{}", free_port());
    let cwd = tempfile::tempdir().unwrap();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_crebito-load"))
        .args(args)
        .args(["--base-url", &url])
        .current_dir(cwd.path())
        .env_remove("CREBITO_LOAD_BASE_URL")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let mut lines = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let mut timed = Vec::new();
    while let Some(line) = lines.next_line().await.unwrap() {
        timed.push((started.elapsed(), line));
    }
    let code = child.wait().await.unwrap().code();
    let all: Vec<&str> = timed.iter().map(|(_, l)| l.as_str()).collect();
    let all = all.join("\n");
    assert!(all.contains(&url), "{all}");
    (timed, code, all)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_says_what_it_waits_for_at_once_and_ends_with_the_fix() {
    for args in [
        vec!["--wait-ready", "3", "--no-report"],
        vec!["check", "--wait-ready", "3"],
    ] {
        let (timed, code, all) = waiting_for_nothing(&args).await;
        let (after, waiting) = timed
            .iter()
            .find(|(_, l)| l.contains("waiting up to"))
            .unwrap_or_else(|| panic!("{args:?}: no line says what it waits for: {all}"));
        assert!(
            *after < Duration::from_millis(1500),
            "{args:?}: said after {after:?}, not while it waits: {all}"
        );
        assert!(
            waiting.contains("waiting up to 3 s for http://127.0.0.1:")
                && waiting.contains("/clientes/1/extrato to answer 2xx")
                && waiting.contains("first probe: connection refused"),
            "{args:?}: {waiting}"
        );
        assert_eq!(code, Some(2), "{all}");
        let last = all.lines().last().unwrap();
        assert!(
            last.contains("did not answer 2xx within 3 s")
                && last.ends_with("is the server running? is --base-url right?"),
            "{args:?}: {last}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_ready_0_probes_once_and_says_so() {
    for args in [
        vec!["--wait-ready", "0", "--no-report"],
        vec!["check", "--wait-ready", "0"],
    ] {
        let (_, code, all) = waiting_for_nothing(&args).await;
        assert_eq!(code, Some(2), "{all}");
        assert!(!all.contains("within 0 s"), "{all}");
        assert!(!all.contains("waiting up to"), "{all}");
        assert!(
            all.contains("did not answer 2xx to the one probe of --wait-ready 0 (last probe: connection refused); nothing listens there"),
            "{all}"
        );
    }
}

#[tokio::test]
async fn a_target_answering_an_error_gets_its_own_hint() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let app = axum::Router::new().route(
        "/clientes/1/extrato",
        axum::routing::get(|| async { axum::http::StatusCode::SERVICE_UNAVAILABLE }),
    );
    let server = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let target = Target::resolve(&url).await.unwrap();
    let err = wait_ready(&target, Duration::ZERO).await.unwrap_err();
    server.abort();
    let text = err.to_string();
    assert!(text.contains("(last probe: HTTP 503)"), "{text}");
    assert!(
        text.contains("something answers there, but not 2xx"),
        "{text}"
    );
}
