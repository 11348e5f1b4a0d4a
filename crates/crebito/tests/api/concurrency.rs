//! Concurrency against real PostgreSQL and real SQLite (docs/contract.md §3):
//! concurrent requests through two instances sharing one database, as
//! behind the load balancer, must never overdraw, lose an update or show a
//! statement whose balance and rows disagree.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crebito::ledger::Ledger;
use serde_json::{json, Value};

use crate::helpers::{self, Backend, Crebito, Fixture, TestApp};

on_every_ledger!(
    validation_bursts,
    only_affordable_debits_succeed,
    statements_are_snapshots,
    two_processes_share_one_database,
);

/// Two in-process instances (separate pools) on one fresh database.
struct TwoInstances {
    first: TestApp,
    second: TestApp,
}

impl Fixture for TwoInstances {
    async fn make(backend: Backend) -> Self {
        let first = TestApp::spawn(backend).await;
        let second = TestApp::spawn_on(&first.database_url).await;
        TwoInstances { first, second }
    }
}

impl TwoInstances {
    fn bases(&self) -> Vec<String> {
        vec![self.first.base.clone(), self.second.base.clone()]
    }
}

async fn validation_bursts(pair: TwoInstances) {
    assert_validation_bursts(pair.bases(), pair.first.ledger.as_ref()).await;
}

async fn only_affordable_debits_succeed(pair: TwoInstances) {
    assert_only_affordable_debits_succeed(pair.bases(), pair.first.ledger.as_ref()).await;
}

async fn statements_are_snapshots(pair: TwoInstances) {
    assert_statements_are_snapshots(pair.bases()).await;
}

/// Two real `crebito` processes on one database, started together:
/// migrations must be safe when they race.
async fn two_processes_share_one_database(backend: Backend) {
    let (url, _dir) = helpers::fresh_database(backend).await;
    let ((_a, a), (_b, b)) = tokio::join!(Crebito::serve(&url, &[]), Crebito::serve(&url, &[]));
    let ledger = helpers::open_ledger(&url).await;
    let bases = vec![a, b];
    assert_validation_bursts(bases.clone(), &ledger).await;
    assert_only_affordable_debits_succeed(bases, &ledger).await;
}

async fn statement_new_connection(base: &str, id: i64) -> Value {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let response = client
        .get(format!("{base}/clientes/{id}/extrato"))
        .send()
        .await
        .expect("send");
    let (status, body) = helpers::read(response).await;
    assert_eq!(status, 200, "{body}");
    body
}

/// Fires `count` postings at once, alternating between `bases`.
async fn burst(
    bases: &[String],
    count: usize,
    id: i64,
    valor: i64,
    tipo: &'static str,
) -> Vec<(u16, Value)> {
    let tasks: Vec<_> = (0..count)
        .map(|i| {
            let base = bases[i % bases.len()].clone();
            let body = json!({"valor": valor, "tipo": tipo, "descricao": format!("b{i}")});
            tokio::spawn(async move { helpers::post_new_connection(&base, id, None, body).await })
        })
        .collect();
    let mut results = Vec::with_capacity(count);
    for task in tasks {
        results.push(task.await.expect("task"));
    }
    results
}

async fn assert_validation_bursts(bases: Vec<String>, ledger: &impl Ledger) {
    // docs/contract.md §5 phases 1 and 2.
    let debits = burst(&bases, 25, 1, 1, "d").await;
    assert!(debits.iter().all(|(s, _)| *s == 200), "{debits:?}");
    let total = statement_new_connection(&bases[0], 1).await["saldo"]["total"].clone();
    assert_eq!(total, -25);
    let mut balances: Vec<i64> = debits
        .iter()
        .map(|(_, b)| b["saldo"].as_i64().unwrap())
        .collect();
    balances.sort();
    assert_eq!(
        balances,
        (-25..=-1).collect::<Vec<_>>(),
        "each debit saw a distinct balance"
    );
    let credits = burst(&bases, 25, 1, 1, "c").await;
    assert!(credits.iter().all(|(s, _)| *s == 200), "{credits:?}");
    let total =
        statement_new_connection(&bases[1 % bases.len()], 1).await["saldo"]["total"].clone();
    assert_eq!(total, 0);
    assert!(ledger.audit().await.unwrap().holds());
}

async fn assert_only_affordable_debits_succeed(bases: Vec<String>, ledger: &impl Ledger) {
    // Account 2: limite 80000. 100 debits of 1000: exactly 80 fit.
    let results = burst(&bases, 100, 2, 1000, "d").await;
    let ok = results.iter().filter(|(s, _)| *s == 200).count();
    let refused = results.iter().filter(|(s, _)| *s == 422).count();
    assert_eq!((ok, refused), (80, 20), "{results:?}");
    for (status, body) in &results {
        if *status == 200 {
            assert!(body["saldo"].as_i64().unwrap() >= -80000, "{body}");
        }
    }
    let body = statement_new_connection(&bases[0], 2).await;
    assert_eq!(body["saldo"]["total"], -80000);
    let report = ledger.audit().await.unwrap();
    assert!(report.holds(), "{report:?}");
    let account = report.accounts.iter().find(|a| a.account == 2).unwrap();
    assert_eq!(account.transactions, 80);
}

/// Every statement read while postings land must be one snapshot. All
/// postings are credits of 1 on an account at 0, so the posting that
/// returned saldo k was the k-th to commit; a statement with total T must
/// then list exactly the postings T, T-1, …, T-9, in that order.
async fn assert_statements_are_snapshots(bases: Vec<String>) {
    const POSTINGS: usize = 150;
    let done = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..4)
        .map(|r| {
            let base = bases[r % bases.len()].clone();
            let done = done.clone();
            tokio::spawn(async move {
                let client = reqwest::Client::new();
                let mut seen = Vec::new();
                while !done.load(Ordering::Relaxed) {
                    let response = client
                        .get(format!("{base}/clientes/4/extrato"))
                        .send()
                        .await
                        .unwrap();
                    let (status, body) = helpers::read(response).await;
                    assert_eq!(status, 200);
                    seen.push(body);
                }
                seen
            })
        })
        .collect();
    let results = burst(&bases, POSTINGS, 4, 1, "c").await;
    done.store(true, Ordering::Relaxed);
    let mut order: HashMap<i64, String> = HashMap::new();
    for (i, (status, body)) in results.iter().enumerate() {
        assert_eq!(*status, 200, "{body}");
        let previous = order.insert(body["saldo"].as_i64().unwrap(), format!("b{i}"));
        assert!(previous.is_none(), "two postings returned the same balance");
    }
    let mut statements = 0;
    for reader in readers {
        for body in reader.await.unwrap() {
            statements += 1;
            let total = body["saldo"]["total"].as_i64().unwrap();
            let rows = body["ultimas_transacoes"].as_array().unwrap();
            assert_eq!(rows.len() as i64, total.min(10), "{body}");
            for (offset, row) in rows.iter().enumerate() {
                let k = total - offset as i64;
                assert_eq!(
                    row["descricao"].as_str(),
                    order.get(&k).map(String::as_str),
                    "statement {body}"
                );
            }
        }
    }
    assert!(statements > 0);
    let body = statement_new_connection(&bases[0], 4).await;
    assert_eq!(body["saldo"]["total"], POSTINGS as i64);
}
