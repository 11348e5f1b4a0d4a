//! Group commit (docs/architecture.md): a batch of postings applied in one
//! transaction gives every posting the answer it would get applied alone,
//! one after another; a failed batch applies nothing; waits stay bounded; a
//! hot account does not starve the others; a crash loses nothing
//! acknowledged. Against real PostgreSQL and real SQLite.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crebito::audit::{ClientRecord, Outcome};
use crebito::domain::{
    AccountId, Amount, Description, IdempotencyKey, Kind, PostingError, Transaction,
};
use crebito::ledger::batch::{ApplyBatch, Posting, PostingResult};
use crebito::ledger::postgres::PostgresLedger;
use crebito::ledger::sqlite::SqliteLedger;
use crebito::ledger::{AnyLedger, Ledger, LedgerError, LedgerOptions};
use proptest::prelude::*;
use serde_json::json;

use crate::helpers::{self as support, admin_session, Crebito};

// --- the model: the same postings applied one by one -----------------------

/// What a posting should come back with.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Expected {
    Posted(i64),
    LimitExceeded,
    Overflow,
    KeyReused,
    NotFound,
}

fn expected(result: &PostingResult) -> Expected {
    match result {
        Ok(balance) => Expected::Posted(balance.balance),
        Err(LedgerError::Refused(PostingError::LimitExceeded)) => Expected::LimitExceeded,
        Err(LedgerError::Refused(PostingError::Overflow)) => Expected::Overflow,
        Err(LedgerError::Refused(PostingError::IdempotencyKeyReused)) => Expected::KeyReused,
        Err(LedgerError::AccountNotFound) => Expected::NotFound,
        Err(other) => panic!("unexpected error {other:?}"),
    }
}

/// The seeded accounts (migrations/0002_seed.sql): id -> limit.
const LIMITS: [(i32, i64); 5] = [
    (1, 100_000),
    (2, 80_000),
    (3, 1_000_000),
    (4, 10_000_000),
    (5, 500_000),
];

/// The ledger's rules applied to one posting at a time.
#[derive(Default)]
struct Model {
    balances: HashMap<i32, i64>,
    /// (account, key) -> (fingerprint, recorded outcome)
    keys: HashMap<(i32, String), (String, Expected)>,
    /// Stored rows per account, in order: (kind, amount, description).
    stored: HashMap<i32, Vec<(Kind, i64, String)>>,
}

impl Model {
    fn apply(&mut self, posting: &Posting) -> Expected {
        let account = posting.account.get();
        let Some(limit) = LIMITS.iter().find(|(id, _)| *id == account).map(|l| l.1) else {
            return Expected::NotFound;
        };
        let transaction = &posting.transaction;
        if let Some(key) = &posting.key {
            if let Some((fingerprint, outcome)) = self.keys.get(&(account, key.as_str().into())) {
                return if *fingerprint == transaction.fingerprint() {
                    outcome.clone()
                } else {
                    Expected::KeyReused
                };
            }
        }
        let balance = self.balances.entry(account).or_default();
        let outcome = match crebito::domain::apply(*balance, limit, transaction.delta()) {
            Ok(new_balance) => {
                *balance = new_balance;
                self.stored.entry(account).or_default().push((
                    transaction.kind,
                    transaction.amount.cents(),
                    transaction.description.as_str().into(),
                ));
                Expected::Posted(new_balance)
            }
            Err(PostingError::LimitExceeded) => Expected::LimitExceeded,
            Err(PostingError::Overflow) => return Expected::Overflow,
            Err(PostingError::IdempotencyKeyReused) => unreachable!("not a rule of apply"),
        };
        if let Some(key) = &posting.key {
            self.keys.insert(
                (account, key.as_str().into()),
                (transaction.fingerprint(), outcome.clone()),
            );
        }
        outcome
    }
}

fn posting(account: i32, kind: Kind, cents: i64, text: &str, key: Option<&str>) -> Posting {
    Posting {
        account: AccountId::new(account).unwrap(),
        transaction: Transaction {
            amount: Amount::new(cents).unwrap(),
            kind,
            description: Description::new(text).unwrap(),
        },
        key: key.map(|k| IdempotencyKey::new(k).unwrap()),
    }
}

fn arb_posting() -> impl Strategy<Value = Posting> {
    (
        // Account 6 does not exist.
        prop_oneof![8 => 1..=2i32, 2 => 3..=6i32],
        prop_oneof![Just(Kind::Credit), Just(Kind::Debit)],
        prop_oneof![
            // Round amounts reach a balance of exactly -limit often.
            6 => prop::sample::select(vec![10_000i64, 20_000, 40_000, 50_000]),
            4 => 1..=60_000i64,
            1 => Just(i64::MAX),
            1 => (i64::MAX / 2)..=i64::MAX,
        ],
        prop_oneof![Just("a"), Just("b"), Just("débito")],
        // Few keys: repeats (same request) and reuses (another request).
        prop_oneof![4 => Just(None), 1 => Just(Some("k1")), 1 => Just(Some("k2"))],
    )
        .prop_map(|(account, kind, cents, text, key)| posting(account, kind, cents, text, key))
}

/// Applies `batches` in order through `storage`, checks every answer and
/// the stored rows against the model, then the audit.
async fn check_against_model<A: ApplyBatch>(
    storage: &A,
    ledger: &AnyLedger,
    batches: &[Vec<Posting>],
) -> Result<(), TestCaseError> {
    let mut model = Model::default();
    for batch in batches {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        let results = storage.apply_batch(batch, deadline).await.unwrap();
        prop_assert_eq!(results.len(), batch.len());
        for (posting, result) in batch.iter().zip(&results) {
            prop_assert_eq!(expected(result), model.apply(posting), "{:?}", posting);
        }
    }
    let mut stored: HashMap<i32, Vec<(Kind, i64, String)>> = HashMap::new();
    for row in ledger.postings().await.unwrap() {
        stored
            .entry(row.account)
            .or_default()
            .push((row.kind, row.amount, row.description));
    }
    prop_assert_eq!(stored, model.stored);
    let report = ledger.audit().await.unwrap();
    prop_assert!(report.holds(), "{:?}", report);
    for account in &report.accounts {
        let balance = model.balances.get(&account.account).copied().unwrap_or(0);
        prop_assert_eq!(account.balance, balance);
    }
    Ok(())
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// SQLite: one queue per instance, so a batch mixes accounts.
    #[test]
    fn sqlite_batches_match_postings_applied_one_by_one(
        batches in prop::collection::vec(prop::collection::vec(arb_posting(), 1..24), 1..4)
    ) {
        runtime().block_on(async {
            let dir = tempfile::tempdir().unwrap();
            let ledger = SqliteLedger::open(&dir.path().join("l.db")).await.unwrap();
            let any = AnyLedger::Sqlite(ledger.clone());
            check_against_model(ledger.batches(), &any, &batches).await
        })?;
    }

    /// PostgreSQL: one queue per account, so a batch holds one account's
    /// postings; each generated batch is split per account, in order.
    #[test]
    fn postgres_batches_match_postings_applied_one_by_one(
        batches in prop::collection::vec(prop::collection::vec(arb_posting(), 1..24), 1..4)
    ) {
        runtime().block_on(async {
            let url = support::fresh_postgres_database().await;
            let AnyLedger::Postgres(ledger) = support::open_ledger(&url).await else {
                unreachable!()
            };
            let any = AnyLedger::Postgres(ledger.clone());
            let mut per_account = Vec::new();
            for batch in &batches {
                let mut accounts: Vec<AccountId> = batch.iter().map(|p| p.account).collect();
                accounts.dedup();
                accounts.sort();
                accounts.dedup();
                for account in accounts {
                    per_account.push(
                        batch.iter().filter(|p| p.account == account).cloned().collect::<Vec<_>>(),
                    );
                }
            }
            check_against_model(ledger.batches(), &any, &per_account).await
        })?;
    }
}

/// A hand-written mixed batch, so that the interesting cases are always
/// covered: a refused debit between accepted ones, a repeated key, a
/// reused key, an overflow, an unknown account.
fn mixed_batch(account: i32) -> Vec<Posting> {
    use Kind::{Credit, Debit};
    vec![
        posting(account, Debit, 60_000, "d1", None),
        posting(account, Debit, 60_000, "refused", None),
        posting(account, Credit, 1_000, "c1", Some("k")),
        posting(account, Debit, 40_000, "d2", None),
        posting(account, Credit, 1_000, "c1", Some("k")),
        posting(account, Credit, 2_000, "other", Some("k")),
        posting(account, Debit, 1_000, "d3", Some("r")),
        posting(account, Debit, 1_000, "d3", Some("r")),
        posting(account, Credit, 100_100, "up", None),
        posting(account, Credit, i64::MAX, "huge", None),
    ]
}

/// `crebito_idempotent_replays_total` as `ledger` would serve it.
fn replays(ledger: &AnyLedger) -> f64 {
    let metrics = crebito::metrics::Metrics::new("test", ledger.storage_metrics(), || None);
    let text = metrics.render();
    crate::observability::sample(&text, "crebito_idempotent_replays_total").expect(&text)
}

/// Applies [`mixed_batch`] for account 1 directly to `storage`, waiting at
/// most `wait` for storage that is busy elsewhere, and asserts that the
/// whole batch fails [`LedgerError::Unavailable`].
async fn assert_mixed_batch_unavailable<A: ApplyBatch>(storage: &A, wait: Duration) {
    let deadline = tokio::time::Instant::now() + wait;
    let outcome = storage.apply_batch(&mixed_batch(1), deadline).await;
    assert!(
        matches!(outcome, Err(LedgerError::Unavailable { .. })),
        "{outcome:?}"
    );
}

async fn mixed_batch_case<A: ApplyBatch>(storage: &A, ledger: &AnyLedger, batch: Vec<Posting>) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let replayed_before = replays(ledger);
    let results = storage.apply_batch(&batch, deadline).await.unwrap();
    let answers: Vec<Expected> = results.iter().map(expected).collect();
    use Expected::*;
    assert_eq!(
        answers,
        [
            Posted(-60_000),
            LimitExceeded,
            Posted(-59_000),
            Posted(-99_000),
            Posted(-59_000), // the same request with the same key: its answer again
            KeyReused,
            Posted(-100_000), // exactly -limit
            Posted(-100_000),
            Posted(100),
            Overflow,
        ]
    );
    let mut model = Model::default();
    let modelled: Vec<Expected> = batch.iter().map(|p| model.apply(p)).collect();
    assert_eq!(answers, modelled);
    // Answered from a recorded key, each counted once as a replay: "c1"
    // and "d3" again, and "other" under "c1"'s key.
    assert_eq!(replays(ledger) - replayed_before, 3.0);
    let report = ledger.audit().await.unwrap();
    assert!(report.holds(), "{report:?}");
    let account = report.accounts.iter().find(|a| a.account == 1).unwrap();
    assert_eq!((account.balance, account.transactions), (100, 5));
    // An unknown account refuses only its own postings.
    let batch = vec![
        posting(6, Kind::Credit, 1, "x", None),
        posting(6, Kind::Debit, 1, "y", Some("z")),
    ];
    let results = storage.apply_batch(&batch, deadline).await.unwrap();
    assert!(results
        .iter()
        .all(|r| matches!(r, Err(LedgerError::AccountNotFound))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mixed_batch_answers_each_posting_as_if_alone_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = SqliteLedger::open(&dir.path().join("l.db")).await.unwrap();
    let any = AnyLedger::Sqlite(ledger.clone());
    mixed_batch_case(ledger.batches(), &any, mixed_batch(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mixed_batch_answers_each_posting_as_if_alone_postgres() {
    let url = support::fresh_postgres_database().await;
    let AnyLedger::Postgres(ledger) = support::open_ledger(&url).await else {
        unreachable!()
    };
    let any = AnyLedger::Postgres(ledger.clone());
    mixed_batch_case(ledger.batches(), &any, mixed_batch(1)).await;
}

// --- failed batches, bounded waits, hot accounts -------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_batch_applies_none_of_its_postings_postgres() {
    let url = support::fresh_postgres_database().await;
    support::open_ledger(&url).await;
    let ledger = PostgresLedger::new(
        &url,
        &LedgerOptions {
            query_timeout: Duration::from_millis(300),
            ..LedgerOptions::default()
        },
    )
    .unwrap();
    // Another session holds account 1's row: the batch's statement times out.
    let blocker = admin_session(&url).await;
    support::hold_account_row(&blocker, 1).await;
    assert_mixed_batch_unavailable(ledger.batches(), Duration::from_secs(10)).await;
    blocker.batch_execute("COMMIT").await.unwrap();
    let report = ledger.audit().await.unwrap();
    let account = report.accounts.iter().find(|a| a.account == 1).unwrap();
    assert_eq!((account.balance, account.transactions), (0, 0));
    // Through the queue: every member of the failed batch is answered 503.
    support::hold_account_row(&blocker, 1).await;
    let ledger = Arc::new(ledger);
    let tasks: Vec<_> = mixed_batch(1)
        .into_iter()
        .map(|p| {
            let ledger = ledger.clone();
            tokio::spawn(
                async move { ledger.post(p.account, &p.transaction, p.key.as_ref()).await },
            )
        })
        .collect();
    for task in tasks {
        let result = task.await.unwrap();
        assert!(
            matches!(result, Err(LedgerError::Unavailable { .. })),
            "{result:?}"
        );
    }
    blocker.batch_execute("COMMIT").await.unwrap();
    assert_eq!(ledger.postings().await.unwrap().len(), 0);
}

/// The fastest of three applications of `n` credits of 1 cent to account
/// 1 as one batch, straight to `storage`.
async fn fastest_batch_of<A: ApplyBatch>(storage: &A, n: usize) -> Duration {
    let batch: Vec<Posting> = (0..n)
        .map(|_| posting(1, Kind::Credit, 1, "linear", None))
        .collect();
    let mut fastest = Duration::MAX;
    for _ in 0..3 {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        let started = Instant::now();
        let results = storage.apply_batch(&batch, deadline).await.unwrap();
        fastest = fastest.min(started.elapsed());
        assert!(results.iter().all(Result::is_ok));
    }
    fastest
}

/// What one batch costs in PostgreSQL by its size (`--batch-max-postings`,
/// docs/configuration.md): prints the fastest of three applications of
/// 1,000 to 30,000 credits as one batch, and how the time grows. A
/// benchmark, not a pass/fail test (timings belong in figures, not in
/// assertions): run it with `scripts/batch-cost`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark that prints figures: scripts/batch-cost"]
async fn batch_cost_by_size_postgres() {
    let url = support::fresh_postgres_database().await;
    let AnyLedger::Postgres(ledger) = support::open_ledger(&url).await else {
        unreachable!()
    };
    let mut previous: Option<(usize, Duration)> = None;
    println!("postings  fastest of 3 (ms)  growth against the size before");
    for n in [1_000, 4_000, 10_000, 16_000, 30_000] {
        let took = fastest_batch_of(ledger.batches(), n).await;
        let growth = previous
            .map(|(m, t)| {
                format!(
                    "x{:.1} time for x{:.1} postings",
                    took.as_secs_f64() / t.as_secs_f64(),
                    n as f64 / m as f64
                )
            })
            .unwrap_or_default();
        println!("{n:>8}  {:>17.1}  {growth}", took.as_secs_f64() * 1e3);
        previous = Some((n, took));
    }
}

/// A key-less batch is judged on the balance read without a lock and
/// written only if the balance is still the one it was judged on; when
/// another transaction moved it in between, the batch is judged again on
/// the new balance (here: the debit no longer fits and is refused).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_whose_balance_moved_meanwhile_is_judged_again_postgres() {
    let url = support::fresh_postgres_database().await;
    let AnyLedger::Postgres(ledger) = support::open_ledger(&url).await else {
        unreachable!()
    };
    // Another session moves account 1 by -50000 and keeps it uncommitted.
    let other = admin_session(&url).await;
    other
        .batch_execute(
            "BEGIN;
             UPDATE accounts SET balance = balance - 50000 WHERE id = 1;
             INSERT INTO transactions (account_id, amount, kind, description)
             VALUES (1, 50000, 'd', 'outra')",
        )
        .await
        .unwrap();
    let batch = vec![
        posting(1, Kind::Debit, 60_000, "d1", None),
        posting(1, Kind::Credit, 1, "c1", None),
    ];
    let storage = ledger.batches().clone();
    let applied = tokio::spawn(async move {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        storage.apply_batch(&batch, deadline).await
    });
    // The batch read balance 0, judged the debit affordable and now waits
    // for the row.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!applied.is_finished());
    other.batch_execute("COMMIT").await.unwrap();
    let results = applied.await.unwrap().unwrap();
    let answers: Vec<Expected> = results.iter().map(expected).collect();
    assert_eq!(
        answers,
        [Expected::LimitExceeded, Expected::Posted(-49_999)]
    );
    let any = AnyLedger::Postgres(ledger);
    let report = any.audit().await.unwrap();
    assert!(report.holds(), "{report:?}");
    let account = report.accounts.iter().find(|a| a.account == 1).unwrap();
    assert_eq!((account.balance, account.transactions), (-49_999, 2));
}

/// Holds SQLite's write lock on `path` from another connection (SQLite locks
/// the file the same way for another process) until dropped.
fn hold_sqlite_write_lock(path: &std::path::Path) -> rusqlite::Connection {
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.execute_batch("BEGIN IMMEDIATE").unwrap();
    conn
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_batch_applies_none_of_its_postings_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("l.db");
    let ledger = SqliteLedger::open(&path).await.unwrap();
    let lock = hold_sqlite_write_lock(&path);
    assert_mixed_batch_unavailable(ledger.batches(), Duration::from_millis(300)).await;
    drop(lock);
    assert_eq!(ledger.postings().await.unwrap().len(), 0);
    assert!(ledger.audit().await.unwrap().holds());
}

/// docs/configuration.md: with another process holding SQLite's write lock,
/// every posting is answered 503 within the acquire timeout plus a margin
/// (one batch's own work), not after k busy timeouts in a row; statements
/// keep answering.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_waits_are_bounded_by_the_acquire_timeout() {
    const ACQUIRE_MS: u64 = 500;
    const MARGIN_MS: u64 = 500;
    let (_dir, path, url) = support::temp_sqlite_file();
    let acquire = ACQUIRE_MS.to_string();
    let (_server, base) = Crebito::serve(&url, &["--acquire-timeout-ms", &acquire]).await;
    let lock = hold_sqlite_write_lock(&path);
    let started = Instant::now();
    let tasks: Vec<_> = (0..30)
        .map(|i| {
            let base = base.clone();
            let body = json!({"valor": 1, "tipo": "c", "descricao": format!("p{i}")});
            tokio::spawn(async move {
                let answer = support::post_new_connection(&base, 1 + i % 5, None, body).await;
                (answer, started.elapsed())
            })
        })
        .collect();
    let statement = reqwest::get(format!("{}/clientes/2/extrato", base))
        .await
        .unwrap();
    assert_eq!(statement.status(), 200);
    for task in tasks {
        let ((status, body), after) = task.await.unwrap();
        assert_eq!(status, 503, "{body}");
        assert!(
            after < Duration::from_millis(ACQUIRE_MS + MARGIN_MS),
            "answered after {after:?}"
        );
    }
    drop(lock);
    // Each 503 is counted once, as the write lock's (busy: its batch
    // waited for the lock) or the queue's (it never reached a batch).
    let text = reqwest::get(format!("{base}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let counted: Vec<(&str, f64)> = text
        .lines()
        .filter_map(|line| line.strip_prefix("crebito_unavailable_total{cause=\""))
        .filter_map(|rest| {
            let (cause, value) = rest.split_once("\"} ")?;
            Some((cause, value.parse().ok()?))
        })
        .collect();
    assert_eq!(counted.iter().map(|(_, n)| n).sum::<f64>(), 30.0, "{text}");
    assert!(
        counted
            .iter()
            .all(|(cause, _)| ["busy", "queue_timeout"].contains(cause)),
        "{counted:?}"
    );
    let (status, _) = support::post_new_connection(
        &base,
        1,
        None,
        json!({"valor": 1, "tipo": "c", "descricao": "depois"}),
    )
    .await;
    assert_eq!(status, 200);
    let ledger = support::open_ledger(&url).await;
    assert_eq!(ledger.postings().await.unwrap().len(), 1);
}

/// Issue of a hot account (PostgreSQL): with account 1's row locked by
/// another session for 8 s, postings for account 1 hold at most one of the
/// instance's pooled connections, so statements of other accounts, postings
/// to other accounts and /health keep answering at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_locked_account_does_not_starve_the_others_postgres() {
    let url = support::fresh_postgres_database().await;
    support::open_ledger(&url).await;
    let (_server, base) = Crebito::serve(&url, &["--pool-size", "2"]).await;
    let database: String = admin_session(&url)
        .await
        .query_one("SELECT current_database()", &[])
        .await
        .unwrap()
        .get(0);
    let blocker = admin_session(&url).await;
    support::hold_account_row(&blocker, 1).await;
    let locked_at = Instant::now();
    let hot: Vec<_> = (0..20)
        .map(|i| {
            let base = base.clone();
            let body = json!({"valor": 1, "tipo": "d", "descricao": format!("h{i}")});
            tokio::spawn(async move { support::post_new_connection(&base, 1, None, body).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let mut rounds = 0;
    let monitor = admin_session(&url).await;
    while locked_at.elapsed() < Duration::from_secs(7) {
        let started = Instant::now();
        for path in ["/health", "/clientes/2/extrato", "/clientes/5/extrato"] {
            let response = client.get(format!("{}{path}", base)).send().await.unwrap();
            assert_eq!(response.status(), 200, "{path} during the lock");
        }
        let (status, body) = support::post_new_connection(
            &base,
            2,
            None,
            json!({"valor": 1, "tipo": "c", "descricao": format!("o{rounds}")}),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "a round took {:?}",
            started.elapsed()
        );
        // Sessions of this database waiting on a lock: the one batch of
        // account 1 in flight, never more.
        let waiting: i64 = monitor
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND wait_event_type = 'Lock'",
                &[&database],
            )
            .await
            .unwrap()
            .get(0);
        assert!(waiting <= 1, "{waiting} connections wait on account 1");
        rounds += 1;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(rounds >= 10, "only {rounds} rounds");
    blocker.batch_execute("COMMIT").await.unwrap();
    // Each hot posting got an answer: applied (200) once the lock was
    // gone, or 503 (waited too long, or its batch timed out) and not applied.
    let mut applied = 0;
    for task in hot {
        let (status, body) = task.await.unwrap();
        assert!(status == 200 || status == 503, "{status} {body}");
        applied += usize::from(status == 200);
    }
    let ledger = support::open_ledger(&url).await;
    let report = ledger.audit().await.unwrap();
    assert!(report.holds(), "{report:?}");
    let account = report.accounts.iter().find(|a| a.account == 1).unwrap();
    assert_eq!(account.transactions as usize, applied);
}

// --- a crash between batches loses nothing acknowledged ------------------

/// Drives postings with unique descriptions and keys at `base` from
/// `clients` concurrent clients until `stop`, recording what each learned.
async fn drive(base: String, clients: usize, stop: Instant) -> Vec<ClientRecord> {
    let tasks: Vec<_> = (0..clients)
        .map(|c| {
            let base = base.clone();
            tokio::spawn(async move {
                let client = reqwest::Client::builder()
                    .timeout(Duration::from_secs(5))
                    .build()
                    .unwrap();
                let mut records = Vec::new();
                let mut n = 0;
                while Instant::now() < stop {
                    n += 1;
                    let account = 1 + (c + n) as i32 % 5;
                    let tipo = if n % 3 == 0 { "c" } else { "d" };
                    let descricao = format!("c{c}n{n}");
                    let response = client
                        .post(format!("{base}/clientes/{account}/transacoes"))
                        .header("content-type", "application/json")
                        .header("idempotency-key", &descricao)
                        .body(
                            json!({"valor": 700, "tipo": tipo, "descricao": descricao}).to_string(),
                        )
                        .send()
                        .await;
                    let outcome = match response.map(|r| r.status().as_u16()) {
                        Ok(200) => Outcome::Acknowledged,
                        Ok(422) => Outcome::Refused,
                        _ => Outcome::Unknown,
                    };
                    let dead = outcome == Outcome::Unknown;
                    records.push(ClientRecord {
                        account,
                        descricao,
                        tipo: tipo.into(),
                        valor: 700,
                        outcome,
                    });
                    if dead {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
                records
            })
        })
        .collect();
    let mut records = Vec::new();
    for task in tasks {
        records.extend(task.await.unwrap());
    }
    records
}

async fn crash_mid_load(backend: support::Backend) {
    let (url, _dir) = support::fresh_database(backend).await;
    let (server, base) = Crebito::serve(&url, &[]).await;
    let stop = Instant::now() + Duration::from_millis(2500);
    let load = tokio::spawn(drive(base, 24, stop));
    tokio::time::sleep(Duration::from_millis(1200)).await;
    drop(server); // SIGKILL with batches in flight
    let records = load.await.unwrap();
    let acknowledged = records
        .iter()
        .filter(|r| r.outcome == Outcome::Acknowledged)
        .count();
    assert!(
        acknowledged >= 10,
        "only {acknowledged} acknowledged before the kill"
    );
    assert!(
        records.iter().any(|r| r.outcome == Outcome::Unknown),
        "the kill interrupted nothing"
    );
    // A new process on the same database: the audit of everything the
    // clients were told.
    let _restarted = Crebito::serve(&url, &[]).await;
    let ledger = support::open_ledger(&url).await;
    let report = ledger.audit().await.unwrap();
    assert!(report.holds(), "{report:?}");
    let check = crebito::audit::check(&records, &ledger.postings().await.unwrap());
    assert!(check.holds(), "{:?}", check.violations);
    assert_eq!(check.acknowledged_ok, acknowledged);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_crash_mid_load_loses_nothing_acknowledged_postgres() {
    crash_mid_load(support::Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_crash_mid_load_loses_nothing_acknowledged_sqlite() {
    crash_mid_load(support::Backend::Sqlite).await;
}

// --- upgrading a ledger migrated before group commit ---------------------

/// A PostgreSQL ledger migrated by the release before group commit (every
/// migration up to 0005, with a posting and its recorded key) upgrades on
/// the next start: `post_batch` (0006, revised by 0007) is added, nothing else is re-applied,
/// and the recorded key still replays through it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ledger_migrated_before_group_commit_upgrades_postgres() {
    use crebito::ledger::migrations::{POSTGRES, TABLE};
    let url = support::fresh_postgres_database().await;
    let admin = admin_session(&url).await;
    // The migrations table as every release has written it.
    admin
        .batch_execute(&format!(
            "CREATE TABLE {TABLE} (
                version integer PRIMARY KEY,
                name text NOT NULL,
                applied_at timestamptz NOT NULL DEFAULT now())"
        ))
        .await
        .unwrap();
    for migration in POSTGRES.iter().filter(|m| m.version <= 5) {
        admin.batch_execute(migration.sql).await.unwrap();
        admin
            .execute(
                &format!("INSERT INTO {TABLE} (version, name) VALUES ($1, $2)"),
                &[&migration.version, &migration.name],
            )
            .await
            .unwrap();
    }
    let before = posting(1, Kind::Credit, 500, "antes", Some("k"));
    admin
        .execute(
            "WITH moved AS (UPDATE accounts SET balance = 500 WHERE id = 1)
             INSERT INTO transactions (account_id, amount, kind, description)
             VALUES (1, 500, 'c', 'antes')",
            &[],
        )
        .await
        .unwrap();
    admin
        .execute(
            "INSERT INTO idempotency_keys (account_id, key, fingerprint, outcome, balance, credit_limit)
             VALUES (1, 'k', $1, 'posted', 500, 100000)",
            &[&before.transaction.fingerprint()],
        )
        .await
        .unwrap();

    let ledger = support::open_ledger(&url).await;
    let versions: Vec<i32> = admin
        .query(
            &format!("SELECT version FROM {TABLE} ORDER BY version"),
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    let expected: Vec<i32> = POSTGRES.iter().map(|m| m.version).collect();
    assert_eq!(versions, expected);
    assert!(expected.contains(&6));
    // The recorded key replays; a new posting is applied after it.
    let replayed = ledger
        .post(before.account, &before.transaction, before.key.as_ref())
        .await
        .unwrap();
    assert_eq!(replayed.balance, 500);
    let after = posting(1, Kind::Debit, 200, "depois", Some("k2"));
    let posted = ledger
        .post(after.account, &after.transaction, after.key.as_ref())
        .await
        .unwrap();
    assert_eq!(posted.balance, 300);
    let report = ledger.audit().await.unwrap();
    assert!(report.holds(), "{report:?}");
    let account = report.accounts.iter().find(|a| a.account == 1).unwrap();
    assert_eq!((account.balance, account.transactions), (300, 2));
}
