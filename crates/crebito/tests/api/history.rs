//! `GET /clientes/{id}/historico` (docs/contract.md §2.8) on both ledgers:
//! pages by posting id, newest first, bounded, each one snapshot.

use std::collections::HashMap;

use serde_json::Value;

use crate::helpers::{self, TestApp};

on_every_ledger!(
    pages_walk_the_whole_history_newest_first,
    a_new_posting_does_not_shift_the_next_page,
    bad_queries_are_400_unknown_accounts_404,
    each_page_is_one_snapshot,
);

async fn page(app: &TestApp, id: &str, query: &str) -> (u16, Value) {
    let response = app
        .client
        .get(app.url(&format!("/clientes/{id}/historico{query}")))
        .send()
        .await
        .expect("send");
    helpers::read(response).await
}

fn descriptions(page: &Value) -> Vec<String> {
    page["transacoes"]
        .as_array()
        .expect("transacoes is an array")
        .iter()
        .map(|t| t["descricao"].as_str().unwrap().to_owned())
        .collect()
}

async fn pages_walk_the_whole_history_newest_first(app: TestApp) {
    let (status, empty) = page(&app, "1", "").await;
    assert_eq!(status, 200, "{empty}");
    assert_eq!(empty["transacoes"], serde_json::json!([]));
    assert_eq!(empty["proximo_antes_de"], Value::Null);
    assert_eq!(empty["saldo"]["total"], 0);
    assert_eq!(empty["saldo"]["limite"], 100000);

    for i in 0..25 {
        assert_eq!(app.post(1, 1, "c", &format!("t{i}")).await.0, 200);
    }
    // Another account's postings never show up.
    assert_eq!(app.post(2, 1, "c", "outra").await.0, 200);

    let mut seen = Vec::new();
    let mut query = "?tamanho=10".to_owned();
    let mut sizes = Vec::new();
    loop {
        let (status, body) = page(&app, "1", &query).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["saldo"]["total"], 25, "{body}");
        let rows = body["transacoes"].as_array().unwrap();
        sizes.push(rows.len());
        let ids: Vec<i64> = rows.iter().map(|t| t["id"].as_i64().unwrap()).collect();
        assert!(ids.windows(2).all(|w| w[0] > w[1]), "newest first: {ids:?}");
        for row in rows {
            assert_eq!(row["valor"], 1);
            assert_eq!(row["tipo"], "c");
            assert!(row["realizada_em"].as_str().unwrap().ends_with('Z'));
        }
        seen.extend(descriptions(&body));
        match body["proximo_antes_de"].as_i64() {
            Some(next) => {
                assert_eq!(Some(&next), ids.last(), "the cursor is the last id listed");
                query = format!("?tamanho=10&antes_de={next}");
            }
            None => break,
        }
    }
    assert_eq!(sizes, [10, 10, 5]);
    let expected: Vec<String> = (0..25).rev().map(|i| format!("t{i}")).collect();
    assert_eq!(seen, expected);

    // 20 by default; exactly one full page says there is nothing more.
    let (_, body) = page(&app, "1", "").await;
    assert_eq!(descriptions(&body).len(), 20);
    let (_, body) = page(&app, "1", "?tamanho=25").await;
    assert_eq!(descriptions(&body).len(), 25);
    assert_eq!(body["proximo_antes_de"], Value::Null);
    // The statement keeps its contract: the 10 newest.
    let (_, statement) = app.statement("1").await;
    assert_eq!(
        statement["ultimas_transacoes"].as_array().unwrap().len(),
        10
    );
}

async fn a_new_posting_does_not_shift_the_next_page(app: TestApp) {
    for i in 0..6 {
        assert_eq!(app.post(3, 1, "c", &format!("p{i}")).await.0, 200);
    }
    let (_, first) = page(&app, "3", "?tamanho=3").await;
    assert_eq!(descriptions(&first), ["p5", "p4", "p3"]);
    assert_eq!(app.post(3, 1, "d", "nova").await.0, 200);
    let next = first["proximo_antes_de"].as_i64().unwrap();
    let (_, second) = page(&app, "3", &format!("?tamanho=3&antes_de={next}")).await;
    assert_eq!(descriptions(&second), ["p2", "p1", "p0"]);
    assert_eq!(second["proximo_antes_de"], Value::Null);
    // The page is a fresh snapshot: its balance includes the new debit.
    assert_eq!(second["saldo"]["total"], 5);
}

async fn bad_queries_are_400_unknown_accounts_404(app: TestApp) {
    for query in [
        "?tamanho=0",
        "?tamanho=101",
        "?tamanho=abc",
        "?tamanho=",
        "?tamanho=-1",
        "?antes_de=0",
        "?antes_de=-5",
        "?antes_de=9223372036854775808",
        "?antes_de=1.5",
        "?tamanho=1&tamanho=2",
        "?antes_de=1&antes_de=2",
    ] {
        let (status, body) = page(&app, "1", query).await;
        assert_eq!(status, 400, "{query}: {body}");
        assert_eq!(
            body["type"], "urn:crebito:problem:invalid-query",
            "{query}: {body}"
        );
    }
    // Unknown parameters are ignored; the largest values are accepted.
    for query in ["?outro=1", "?tamanho=100&antes_de=9223372036854775807"] {
        assert_eq!(page(&app, "1", query).await.0, 200, "{query}");
    }
    for id in ["6", "0", "abc", "2147483648"] {
        assert_eq!(page(&app, id, "").await.0, 404, "{id}");
    }
    let response = app
        .client
        .post(app.url("/clientes/1/historico"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 405);
}

/// Credits of 1 posted concurrently with page reads: a page whose newest
/// row is the k-th posting must show the balance after exactly k postings.
async fn each_page_is_one_snapshot(app: TestApp) {
    let app = std::sync::Arc::new(app);
    let mut tasks = Vec::new();
    for i in 0..40 {
        let writer = app.clone();
        tasks.push(tokio::spawn(async move {
            assert_eq!(writer.post(4, 1, "c", &format!("c{i}")).await.0, 200);
            None
        }));
        let reader = app.clone();
        tasks.push(tokio::spawn(async move {
            let (status, body) = page(&reader, "4", "?tamanho=5").await;
            assert_eq!(status, 200);
            Some(body)
        }));
    }
    let mut pages = Vec::new();
    for task in tasks {
        if let Some(body) = task.await.unwrap() {
            pages.push(body);
        }
    }
    let (_, all) = page(&app, "4", "?tamanho=100").await;
    let ids: Vec<i64> = all["transacoes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids.len(), 40);
    let rank: HashMap<i64, i64> = ids
        .iter()
        .rev()
        .enumerate()
        .map(|(i, id)| (*id, i as i64 + 1))
        .collect();
    for body in pages {
        let total = body["saldo"]["total"].as_i64().unwrap();
        match body["transacoes"][0]["id"].as_i64() {
            Some(newest) => assert_eq!(total, rank[&newest], "{body}"),
            None => assert_eq!(total, 0, "{body}"),
        }
    }
}
