//! crebito-load against the real crebito API (the embedded SQLite ledger,
//! in process on 127.0.0.1) at a small scale: a correct server must get
//! 0 KO and the full payout.

use std::sync::Arc;
use std::time::Duration;

use crebito::ledger::sqlite::SqliteLedger;
use crebito_load::runner::RunConfig;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_crebito_with_sqlite_scores_a_perfect_run() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = SqliteLedger::open(&dir.path().join("load.db"))
        .await
        .unwrap();
    let app = crebito::http::router(Arc::new(ledger));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    // --scale 0.05: 6 s ramp + 6 s constant at the official rates, with
    // Gatling's 1 s ticks between the validation phases.
    let config = RunConfig {
        scale: 0.05,
        wait_ready: Duration::from_secs(10),
        ..RunConfig::official(&url, 2024)
    };
    let report = crebito_load::run(&config, 2).await.expect("run completes");
    server.abort();
    let s = &report.summary;
    assert_eq!(s.requests, s.run.planned_requests, "{}", s.to_text());
    assert_eq!(s.requests, 663 + 1_320 + 333 + 660 + 33 + 60 + 123);
    assert_eq!(s.ko, 0, "{}", s.to_text());
    assert_eq!(s.inconsistencies, 0, "{}", s.to_text());
    assert_eq!(s.score.payout_cents, 10_000_000, "{}", s.to_text());
}
