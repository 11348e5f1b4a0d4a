//! One refusal type per cause (docs/contract.md §2.4, §2.5): a debit is
//! only ever refused for the limit, alone, under a key and in a batch.

use std::time::Duration;

use crebito::domain::{AccountId, Amount, Description, IdempotencyKey, Kind, Transaction};
use crebito::ledger::batch::{ApplyBatch, Posting, PostingResult};
use crebito::ledger::{AnyLedger, Ledger};
use serde_json::json;

use crate::helpers::{self, TestApp};

on_every_ledger!(a_debit_is_only_ever_refused_for_the_limit);

fn posting(kind: Kind, cents: i64, text: &str, key: Option<&str>) -> Posting {
    Posting {
        account: AccountId::new(1).unwrap(),
        transaction: Transaction {
            amount: Amount::new(cents).unwrap(),
            kind,
            description: Description::new(text).unwrap(),
        },
        key: key.map(|k| IdempotencyKey::new(k).unwrap()),
    }
}

/// Applies `postings` as one batch straight to `ledger`'s storage.
async fn apply_batch(ledger: &AnyLedger, postings: &[Posting]) -> Vec<PostingResult> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    match ledger {
        AnyLedger::Postgres(l) => l.batches().apply_batch(postings, deadline).await,
        AnyLedger::Sqlite(l) => l.batches().apply_batch(postings, deadline).await,
    }
    .expect("the batch is applied")
}

/// The problem type of a refused posting, `""` for a 200.
async fn post_type(app: &TestApp, key: Option<&str>, valor: i64, tipo: &str) -> (u16, String) {
    let body = json!({"valor": valor, "tipo": tipo, "descricao": "x"});
    let (status, body) = helpers::post_new_connection(&app.base, 1, key, body).await;
    let kind = body["type"].as_str().unwrap_or_default().to_owned();
    (status, kind)
}

const LIMIT: &str = "urn:crebito:problem:limit-exceeded";
const OVERFLOW: &str = "urn:crebito:problem:balance-overflow";

async fn a_debit_is_only_ever_refused_for_the_limit(app: TestApp) {
    // Account 1 (limit 100000) at -2: a debit of 2^63 - 1 would take it
    // below i64::MIN, which is below -limite.
    assert_eq!(app.post(1, 2, "d", "to -2").await.0, 200);
    for key in [None, Some("huge-debit")] {
        assert_eq!(
            post_type(&app, key, i64::MAX, "d").await,
            (422, LIMIT.to_owned()),
            "key {key:?}"
        );
    }
    // The same at -1 and at 0 (no intermediate below i64::MIN): the limit.
    assert_eq!(app.post(1, 1, "c", "to -1").await.0, 200);
    assert_eq!(post_type(&app, None, i64::MAX, "d").await.1, LIMIT);
    // Remembered under its key like any limit refusal: its retry is the
    // same refusal, also after the balance moved up.
    assert_eq!(app.post(1, 1_000, "c", "up").await.0, 200);
    assert_eq!(
        post_type(&app, Some("huge-debit"), i64::MAX, "d").await.1,
        LIMIT
    );
    // Only a credit overflows.
    assert_eq!(post_type(&app, None, i64::MAX, "c").await.1, OVERFLOW);
    // In a batch, on either side of an applied posting.
    let results = apply_batch(
        &app.ledger,
        &[
            posting(Kind::Debit, i64::MAX, "a", None),
            posting(Kind::Debit, 1_000, "b", None),
            posting(Kind::Debit, i64::MAX, "c", Some("k")),
            posting(Kind::Debit, 99_999, "d", None),
            posting(Kind::Debit, i64::MAX, "e", None),
        ],
    )
    .await;
    let kinds: Vec<String> = results
        .iter()
        .map(|r| match r {
            Ok(balance) => balance.balance.to_string(),
            Err(e) => format!("{e:?}"),
        })
        .collect();
    let limit = "Refused(LimitExceeded)";
    assert_eq!(kinds, [limit, "-1", limit, "-100000", limit]);
    let report = app.ledger.audit().await.unwrap();
    assert!(report.holds(), "{report:?}");
}
