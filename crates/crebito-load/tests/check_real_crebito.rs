//! `crebito-load check` against the real crebito, in process, on both
//! ledgers (SQLite in a temp dir, a throwaway PostgreSQL cluster): two
//! instances on one database, as behind the load balancer. Every check must
//! pass on the fresh ledger, and again after a load test (then the check
//! about the seed is skipped).

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use crebito::ledger::{AnyLedger, DatabaseUrl};
use crebito_load::conformance::{self, present, CheckConfig, Status};

/// Serves the real router over a new connection pool on `database_url`;
/// returns the instance's base URL.
async fn instance(database_url: &str) -> String {
    let url: DatabaseUrl = database_url.parse().expect("database url");
    let deadline = Instant::now() + Duration::from_secs(30);
    let ledger = loop {
        match AnyLedger::open(&url, &Default::default()).await {
            Ok(l) => break l,
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("cannot open the ledger: {e}"),
        }
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let app = crebito::http::router(Arc::new(ledger));
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    base
}

async fn conformance_then_load_then_conformance(database_url: &str) {
    let urls = vec![instance(database_url).await, instance(database_url).await];
    let config = CheckConfig {
        base_urls: urls.clone(),
        only: Vec::new(),
        only_challenge: false,
        strict: false,
    };
    let fresh = conformance::run(&config).await.unwrap();
    let text = present::text(&fresh);
    assert!(fresh.starting_state.fresh, "{text}");
    assert_eq!((fresh.failed, fresh.skipped), (0, 0), "{text}");
    assert_eq!(fresh.passed, conformance::checks::catalogue().len());

    // The checks put every balance back, but leave transactions: a load
    // test now needs --allow-dirty, and the checks run again after it.
    let mut load = common::tiny(&urls[0], 7);
    load.allow_dirty = true;
    let report = crebito_load::run(&load, 1).await.expect("the load runs");
    assert_eq!(report.summary.requests, report.summary.run.planned_requests);
    let used = conformance::run(&config).await.unwrap();
    let text = present::text(&used);
    assert!(!used.starting_state.fresh, "{text}");
    assert_eq!((used.failed, used.skipped), (0, 1), "{text}");
    let skipped: Vec<&str> = used
        .checks
        .iter()
        .filter(|c| c.status == Status::Skip)
        .map(|c| c.name)
        .collect();
    assert_eq!(skipped, ["seed-balances"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_check_passes_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("ledger.db").display());
    conformance_then_load_then_conformance(&url).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_check_passes_on_postgres() {
    conformance_then_load_then_conformance(&common::postgres::database_url()).await;
}
