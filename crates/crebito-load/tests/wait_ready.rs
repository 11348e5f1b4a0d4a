//! `--wait-ready N` waits N seconds in full: probes every 2 s, the last one
//! when N seconds have passed.

use std::time::{Duration, Instant};

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
