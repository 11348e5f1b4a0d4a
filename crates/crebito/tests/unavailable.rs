//! When the database cannot be reached the API answers 503 with a JSON
//! error body, within a bounded time, and never leaks the cause.

mod support;

use std::sync::Arc;
use std::time::Duration;

use crebito::ledger::postgres::{PostgresLedger, PostgresOptions};

#[tokio::test]
async fn unreachable_postgres_is_503_not_a_hang() {
    // Nothing listens on port 1.
    let ledger = PostgresLedger::new(
        "postgres://crebito:secret-password@127.0.0.1:1/crebito",
        &PostgresOptions {
            pool_size: 1,
            acquire_timeout: Duration::from_millis(500),
        },
    )
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        axum::serve(listener, crebito::http::router(Arc::new(ledger)))
            .await
            .unwrap()
    });
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
        let (status, body) = support::read(request.send().await.expect("answered in time")).await;
        assert_eq!(status, 503, "{body}");
        let message = body["error"].as_str().unwrap();
        assert_eq!(message, "service unavailable");
    }
    // Body rules do not need the database.
    let response = client
        .post(format!("{base}/clientes/1/transacoes"))
        .header("content-type", "application/json")
        .body(r#"{"valor": 0, "tipo": "c", "descricao": "x"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(support::read(response).await.0, 422);
}

#[tokio::test]
async fn restarting_on_the_same_database_keeps_balances_and_seeds_once() {
    for backend in [support::Backend::Sqlite, support::Backend::Postgres] {
        let first = support::TestApp::start(backend).await;
        let (status, _) = first.post(3, 700, "d", "antes").await;
        assert_eq!(status, 200);
        // A second instance re-runs the migrations on the same database.
        let second = support::TestApp::start_on(&first.database_url).await;
        let (_, body) = second.statement("3").await;
        assert_eq!(body["saldo"]["total"], -700, "{backend:?}");
        let report = crebito::ledger::Ledger::audit(second.ledger.as_ref())
            .await
            .unwrap();
        let ids: Vec<i32> = report.accounts.iter().map(|a| a.account).collect();
        assert_eq!(ids, [1, 2, 3, 4, 5], "{backend:?}");
        assert!(report.holds());
    }
}
