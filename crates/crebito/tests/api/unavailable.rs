//! When the database cannot be reached the API answers 503 with a JSON
//! error body, within a bounded time, and never leaks the cause.

use std::sync::Arc;
use std::time::Duration;

use crebito::ledger::postgres::PostgresLedger;
use crebito::ledger::LedgerOptions;

use crate::helpers::{self, TestApp};

on_every_ledger!(restarting_on_the_same_database_keeps_balances_and_seeds_once);

#[tokio::test]
async fn unreachable_postgres_is_503_not_a_hang() {
    // Nothing listens on port 1.
    let ledger = PostgresLedger::new(
        "postgres://crebito:secret-password@127.0.0.1:1/crebito",
        &LedgerOptions {
            pool_size: 1,
            acquire_timeout: Duration::from_millis(500),
            ..LedgerOptions::default()
        },
    )
    .unwrap();
    let base = helpers::serve(Arc::new(ledger)).await;
    // A hang would hit this client timeout and fail the test.
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let requests = [
        client.get(format!("{base}/health")),
        client.get(format!("{base}/clientes/1/extrato")),
        client
            .post(format!("{base}/clientes/1/transacoes"))
            .header("content-type", "application/json")
            .body(r#"{"valor": 1, "tipo": "c", "descricao": "x"}"#),
    ];
    for request in requests {
        let (status, body) = helpers::read(request.send().await.expect("answered in time")).await;
        assert_eq!(status, 503, "{body}");
        // /health says why (without the cause); the others only that the
        // service is unavailable.
        let expected = if body["type"] == "urn:crebito:problem:unhealthy" {
            "the database does not answer"
        } else {
            "service unavailable"
        };
        assert_eq!(body["detail"], expected, "{body}");
    }
    // Body rules do not need the database.
    let response = client
        .post(format!("{base}/clientes/1/transacoes"))
        .header("content-type", "application/json")
        .body(r#"{"valor": 0, "tipo": "c", "descricao": "x"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(helpers::read(response).await.0, 422);
}

async fn restarting_on_the_same_database_keeps_balances_and_seeds_once(first: TestApp) {
    let (status, _) = first.post(3, 700, "d", "antes").await;
    assert_eq!(status, 200);
    // A second instance re-runs the migrations on the same database.
    let second = TestApp::spawn_on(&first.database_url).await;
    let (_, body) = second.statement("3").await;
    assert_eq!(body["saldo"]["total"], -700);
    let report = crebito::ledger::Ledger::audit(second.ledger.as_ref())
        .await
        .unwrap();
    let ids: Vec<i32> = report.accounts.iter().map(|a| a.account).collect();
    assert_eq!(ids, [1, 2, 3, 4, 5]);
    assert!(report.holds());
}

async fn bounded_app(query_timeout_ms: u64) -> (TestApp, String) {
    let url = helpers::fresh_postgres_database().await;
    // Apply the migrations once with the default options.
    helpers::open_ledger(&url).await;
    let ledger = PostgresLedger::new(
        &url,
        &LedgerOptions {
            pool_size: 1,
            acquire_timeout: Duration::from_secs(5),
            query_timeout: Duration::from_millis(query_timeout_ms),
            ..LedgerOptions::default()
        },
    )
    .unwrap();
    let base = helpers::serve(Arc::new(ledger)).await;
    let mut app = TestApp::spawn_on(&url).await;
    app.base = base;
    (app, url)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statement_that_runs_too_long_is_cancelled_and_nothing_is_applied() {
    let (app, url) = bounded_app(300).await;
    // Another session holds account 1's row lock, so the posting waits.
    let blocker = helpers::admin_session(&url).await;
    helpers::hold_account_row(&blocker, 1).await;
    let started = std::time::Instant::now();
    let (status, body) = app.post(1, 10, "d", "bloqueada").await;
    let waited = started.elapsed();
    assert_eq!(status, 503, "{body}");
    assert!(waited < Duration::from_secs(3), "answered after {waited:?}");
    blocker.batch_execute("COMMIT").await.unwrap();
    // The cancelled posting was not applied, and the pool still serves.
    let (_, statement) = app.statement("1").await;
    assert_eq!(statement["saldo"]["total"], 0, "{statement}");
    let (status, body) = app.post(1, 10, "d", "depois").await;
    assert_eq!(
        (status, body["saldo"].clone()),
        (200, serde_json::json!(-10))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_that_stops_answering_gets_a_503_and_a_fresh_connection() {
    let (app, url) = bounded_app(300).await;
    let (status, _) = app.post(2, 1, "c", "antes").await;
    assert_eq!(status, 200);
    // Freeze every server process of this database (as if the machine
    // hung): the statement timeout cannot fire; the client-side bound must.
    let admin = helpers::admin_session(&url).await;
    let database: String = admin
        .query_one("SELECT current_database()", &[])
        .await
        .unwrap()
        .get(0);
    let pids: Vec<i32> = admin
        .query(
            "SELECT pid FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
            &[&database],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(!pids.is_empty());
    let signal = |name: &str| {
        for pid in &pids {
            let status = std::process::Command::new("kill")
                .args([name, &pid.to_string()])
                .status()
                .unwrap();
            assert!(status.success(), "kill {name} {pid}");
        }
    };
    signal("-STOP");
    let started = std::time::Instant::now();
    // Without the bound the request would wait for the thaw: give up at 8 s.
    let answer =
        tokio::time::timeout(Duration::from_secs(8), app.post(2, 1, "c", "congelada")).await;
    let waited = started.elapsed();
    signal("-CONT");
    let (status, body) = answer.expect("no answer while the database was frozen");
    assert_eq!(status, 503, "{body}");
    assert!(waited < Duration::from_secs(4), "answered after {waited:?}");
    // The frozen connection was discarded: the next request gets a new one.
    let (status, _) = app.post(2, 1, "c", "depois").await;
    assert_eq!(status, 200);
}
