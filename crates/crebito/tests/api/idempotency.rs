//! Safe retries: a posting with an `Idempotency-Key` is applied at most
//! once per account and key, on both ledgers, also under concurrent
//! duplicates through two instances.

use std::time::Duration;

use crate::helpers::{self, TestApp};
use crebito::ledger::Ledger;
use serde_json::{json, Value};

async fn post_with_key(base: &str, id: i64, key: &str, body: Value) -> (u16, Value) {
    helpers::post_new_connection(base, id, Some(key), body).await
}

async fn transactions_of(app: &TestApp, account: i32) -> i64 {
    let report = app.ledger.audit().await.unwrap();
    assert!(report.holds(), "{report:?}");
    report
        .accounts
        .iter()
        .find(|a| a.account == account)
        .unwrap()
        .transactions
}

async fn retries_are_applied_once(app: TestApp) {
    let body = json!({"valor": 300, "tipo": "d", "descricao": "retry"});
    let first = post_with_key(&app.base, 1, "key-1", body.clone()).await;
    assert_eq!(first, (200, json!({"limite": 100000, "saldo": -300})));
    // A later posting moves the balance; the retry still returns the stored answer.
    app.post(1, 50, "c", "outra").await;
    let retry = post_with_key(&app.base, 1, "key-1", body.clone()).await;
    assert_eq!(retry, first);
    assert_eq!(transactions_of(&app, 1).await, 2);
    let (_, statement) = app.statement("1").await;
    assert_eq!(statement["saldo"]["total"], -250);
    // The same key with another request is refused, nothing recorded.
    let (status, error) = post_with_key(
        &app.base,
        1,
        "key-1",
        json!({"valor": 301, "tipo": "d", "descricao": "retry"}),
    )
    .await;
    assert_eq!(status, 422, "{error}");
    assert_eq!(error["type"], "urn:crebito:problem:idempotency-key-reused");
    assert_eq!(transactions_of(&app, 1).await, 2);
    // Keys are per account.
    let other = post_with_key(&app.base, 2, "key-1", body.clone()).await;
    assert_eq!(other, (200, json!({"limite": 80000, "saldo": -300})));
    // Without a key, nothing is deduplicated.
    app.post(3, 1, "c", "a").await;
    app.post(3, 1, "c", "a").await;
    assert_eq!(transactions_of(&app, 3).await, 2);
}

async fn refusals_are_remembered(app: TestApp) {
    let debit = json!({"valor": 80001, "tipo": "d", "descricao": "grande"});
    let (status, _) = post_with_key(&app.base, 2, "k", debit.clone()).await;
    assert_eq!(status, 422);
    // Room appears, but the retry of the refused request keeps its answer.
    app.post(2, 10, "c", "credito").await;
    let (status, _) = post_with_key(&app.base, 2, "k", debit.clone()).await;
    assert_eq!(status, 422);
    assert_eq!(transactions_of(&app, 2).await, 1);
    // A new key for the same request is a new request.
    let (status, body) = post_with_key(&app.base, 2, "k2", debit).await;
    assert_eq!(
        (status, body),
        (200, json!({"limite": 80000, "saldo": -79991}))
    );
}

async fn invalid_keys_are_422(app: TestApp) {
    let body = json!({"valor": 1, "tipo": "c", "descricao": "x"});
    for key in ["", " ", "a b", &"k".repeat(65)] {
        let (status, response) = post_with_key(&app.base, 1, key, body.clone()).await;
        assert_eq!(status, 422, "{key:?}: {response}");
    }
    let response = app
        .client
        .post(app.url("/clientes/1/transacoes"))
        .header("content-type", "application/json")
        .header(
            "idempotency-key",
            reqwest::header::HeaderValue::from_bytes("chave-ã".as_bytes()).unwrap(),
        )
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(helpers::read(response).await.0, 422);
    let (status, _) = post_with_key(&app.base, 1, &"k".repeat(64), body).await;
    assert_eq!(status, 200);
    assert_eq!(transactions_of(&app, 1).await, 1);
}

async fn concurrent_duplicates_post_once(app: TestApp) {
    let second = TestApp::spawn_on(&app.database_url).await;
    let bases = [app.base.clone(), second.base.clone()];
    for round in 0..3 {
        let key = format!("dup-{round}");
        let tasks: Vec<_> = (0..24)
            .map(|i| {
                let base = bases[i % 2].clone();
                let key = key.clone();
                tokio::spawn(async move {
                    post_with_key(
                        &base,
                        4,
                        &key,
                        json!({"valor": 7, "tipo": "c", "descricao": "dup"}),
                    )
                    .await
                })
            })
            .collect();
        let mut answers = Vec::new();
        for task in tasks {
            answers.push(task.await.unwrap());
        }
        let expected = (200, json!({"limite": 10000000, "saldo": 7 * (round + 1)}));
        assert!(answers.iter().all(|a| *a == expected), "{answers:?}");
    }
    assert_eq!(transactions_of(&app, 4).await, 3);
}

async fn expired_keys_are_purged(app: TestApp) {
    let body = json!({"valor": 5, "tipo": "c", "descricao": "velha"});
    post_with_key(&app.base, 5, "old", body.clone()).await;
    // Nothing is older than an hour yet.
    assert_eq!(
        app.ledger
            .purge_idempotency_keys(Duration::from_secs(3600))
            .await
            .unwrap(),
        0
    );
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(
        app.ledger
            .purge_idempotency_keys(Duration::from_millis(1))
            .await
            .unwrap(),
        1
    );
    // Once purged, the key is new again.
    let (status, response) = post_with_key(&app.base, 5, "old", body).await;
    assert_eq!(
        (status, response),
        (200, json!({"limite": 500000, "saldo": 10}))
    );
}

on_every_ledger!(
    retries_are_applied_once,
    refusals_are_remembered,
    invalid_keys_are_422,
    concurrent_duplicates_post_once,
    expired_keys_are_purged,
);
