//! One refusal type per cause (docs/contract.md §2.4, §2.5): a debit is
//! only ever refused for the limit, alone, under a key and in a batch; a
//! row the database refuses by a constraint other than the balance's is
//! never `limit-exceeded` and fails only its own posting, not its batch.

use std::sync::Arc;
use std::time::Duration;

use crebito::domain::{AccountId, Amount, Description, IdempotencyKey, Kind, Transaction};
use crebito::ledger::batch::{ApplyBatch, Posting, PostingResult};
use crebito::ledger::{AnyLedger, ErrorChain, Ledger, LedgerError};
use serde_json::json;

use crate::helpers::{self, Backend, TestApp};

on_every_ledger!(
    a_debit_is_only_ever_refused_for_the_limit,
    a_row_the_database_refuses_fails_only_its_own_posting,
    a_key_repeated_in_a_refused_batch_resolves_to_one_posting,
);

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

/// Adds, behind the ledger's back, a constraint that refuses the row of
/// any posting described `forbidden` (a valid description).
async fn forbid(url: &str) {
    if let Some(path) = url.strip_prefix("sqlite://") {
        let conn = rusqlite::Connection::open(path).unwrap();
        conn.execute_batch(
            "CREATE TRIGGER forbidden BEFORE INSERT ON transactions
             WHEN NEW.description = 'forbidden'
             BEGIN SELECT RAISE(ABORT, 'description_not_forbidden'); END",
        )
        .unwrap();
        return;
    }
    helpers::admin_session(url)
        .await
        .batch_execute(
            "ALTER TABLE transactions ADD CONSTRAINT description_not_forbidden
             CHECK (description <> 'forbidden')",
        )
        .await
        .unwrap();
}

/// True when `error`'s whole cause names the constraint [`forbid`] adds.
fn names_constraint(error: &LedgerError) -> bool {
    ErrorChain(error)
        .to_string()
        .contains("description_not_forbidden")
}

/// What holds the storage that account 1's postings need, so that the
/// postings sent meanwhile queue up and go in one batch once it ends: the
/// account's row lock (PostgreSQL), the write lock (SQLite).
enum Hold {
    Postgres(tokio_postgres::Client),
    Sqlite(rusqlite::Connection),
}

impl Hold {
    async fn take(url: &str) -> Hold {
        if let Some(path) = url.strip_prefix("sqlite://") {
            let conn = rusqlite::Connection::open(path).unwrap();
            conn.execute_batch("BEGIN IMMEDIATE").unwrap();
            return Hold::Sqlite(conn);
        }
        let session = helpers::admin_session(url).await;
        helpers::hold_account_row(&session, 1).await;
        Hold::Postgres(session)
    }

    async fn release(self) {
        match self {
            Hold::Postgres(session) => session.batch_execute("ROLLBACK").await.unwrap(),
            Hold::Sqlite(conn) => conn.execute_batch("ROLLBACK").unwrap(),
        }
    }
}

async fn a_row_the_database_refuses_fails_only_its_own_posting(backend: Backend) {
    let (url, _dir) = helpers::fresh_database(backend).await;
    let ledger = Arc::new(helpers::open_ledger(&url).await);
    forbid(&url).await;
    // Alone: a 503 for that posting, never `limit-exceeded`.
    let forbidden = posting(Kind::Credit, 1, "forbidden", None).transaction;
    let alone = ledger
        .post(AccountId::new(1).unwrap(), &forbidden, None)
        .await;
    assert!(
        matches!(&alone, Err(e @ LedgerError::Unavailable { .. }) if names_constraint(e)),
        "{alone:?}"
    );
    // In a batch: the others are applied, in order.
    let answers = credits_queued_behind_a_lock(
        &url,
        &ledger,
        &[
            ("first", None),
            ("a", None),
            ("b", None),
            ("forbidden", None),
            ("c", None),
            ("d", None),
        ],
    )
    .await;
    assert_eq!(answers, ["1", "2", "3", "refused", "4", "5"]);
    let report = ledger.audit().await.unwrap();
    assert!(report.holds(), "{report:?}");
    let account = report.accounts.iter().find(|a| a.account == 1).unwrap();
    assert_eq!((account.balance, account.transactions), (5, 5));
}

/// Credits of 1 cent to account 1, `(descricao, key)` each, posted 100 ms
/// apart while another session holds the account's row: the first goes
/// alone and waits on the lock, the others queue behind it as one batch.
/// Returns each posting's answer in order: its balance, or "refused" for a
/// row the database refused.
async fn credits_queued_behind_a_lock(
    url: &str,
    ledger: &Arc<AnyLedger>,
    postings: &[(&'static str, Option<&'static str>)],
) -> Vec<String> {
    let hold = Hold::take(url).await;
    let mut tasks = Vec::new();
    for &(text, key) in postings {
        let ledger = ledger.clone();
        let p = posting(Kind::Credit, 1, text, key);
        tasks.push(tokio::spawn(async move {
            ledger.post(p.account, &p.transaction, p.key.as_ref()).await
        }));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    hold.release().await;
    let mut answers = Vec::new();
    for task in tasks {
        answers.push(match task.await.unwrap() {
            Ok(balance) => balance.balance.to_string(),
            Err(e @ LedgerError::Unavailable { .. }) if names_constraint(&e) => {
                "refused".to_owned()
            }
            Err(e) => format!("{e:?}"),
        });
    }
    answers
}

/// A batch refused for one row is applied again one by one: a key used
/// twice in it still names one posting (the second use is its replay), and
/// the refused posting's key records nothing.
async fn a_key_repeated_in_a_refused_batch_resolves_to_one_posting(backend: Backend) {
    let (url, _dir) = helpers::fresh_database(backend).await;
    let ledger = Arc::new(helpers::open_ledger(&url).await);
    forbid(&url).await;
    let answers = credits_queued_behind_a_lock(
        &url,
        &ledger,
        &[
            ("first", None),
            ("a", Some("k1")),
            ("forbidden", Some("k2")),
            ("a", Some("k1")),
            ("forbidden", Some("k2")),
            ("b", None),
        ],
    )
    .await;
    assert_eq!(answers, ["1", "2", "refused", "2", "refused", "3"]);
    let report = ledger.audit().await.unwrap();
    assert!(report.holds(), "{report:?}");
    let account = report.accounts.iter().find(|a| a.account == 1).unwrap();
    assert_eq!((account.balance, account.transactions), (3, 3));
    // k2 recorded nothing: it is free for another posting.
    let other = posting(Kind::Credit, 1, "c", Some("k2"));
    let answer = ledger
        .post(other.account, &other.transaction, other.key.as_ref())
        .await;
    assert_eq!(answer.map(|b| b.balance).ok(), Some(4));
}
