//! PostgreSQL's plan for the statement read, kept for the life of each
//! pooled connection, stays bounded as the ledger grows: it reads the 10
//! newest rows from the account's index, never every row of the account
//! (docs/benchmark-log.md, "The statement read's cached plan").

use std::time::{Duration, Instant};

use crate::helpers::{self, Backend, TestApp};

/// Statement reads made on the empty ledger, enough for each of the test
/// pool's 8 connections to run the prepared statement more than five
/// times, after which PostgreSQL keeps a generic plan for it.
const PRIMING_READS: i64 = 80;
/// Statement reads made once the account holds `ROWS_PER_ACCOUNT` rows.
const LOADED_READS: i64 = 40;
const ROWS_PER_ACCOUNT: i64 = 10_000;

/// `(idx_scan, idx_tup_read)` of the history index, as the statistics
/// collector has them so far.
async fn index_reads(admin: &tokio_postgres::Client) -> (i64, i64) {
    let row = admin
        .query_one(
            "SELECT idx_scan, idx_tup_read FROM pg_stat_user_indexes
             WHERE indexrelname = 'transactions_account_history'",
            &[],
        )
        .await
        .expect("read the index statistics");
    (row.get(0), row.get(1))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn statement_read_stays_an_ordered_index_scan() {
    let app = TestApp::spawn(Backend::Postgres).await;
    let admin = helpers::admin_session(&app.database_url).await;
    // No autovacuum or autoanalyze during the test: the planner knows no
    // more about `transactions` than it does on a fresh ledger under load.
    admin
        .batch_execute("ALTER TABLE transactions SET (autovacuum_enabled = false)")
        .await
        .expect("turn autovacuum off for transactions");

    for _ in 0..PRIMING_READS {
        let (status, body) = app.statement("1").await;
        assert_eq!(status, 200, "{body}");
    }
    // A long history behind the ledger's back, balances kept consistent.
    admin
        .batch_execute(&format!(
            "INSERT INTO transactions (account_id, amount, kind, description)
             SELECT 1 + g % 5, 1, 'c', 'seeded' FROM generate_series(0, {} - 1) g;
             UPDATE accounts SET balance = balance + {ROWS_PER_ACCOUNT};",
            5 * ROWS_PER_ACCOUNT
        ))
        .await
        .expect("seed a long history");
    for _ in 0..LOADED_READS {
        let (status, body) = app.statement("1").await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["saldo"]["total"], ROWS_PER_ACCOUNT, "{body}");
        assert_eq!(body["ultimas_transacoes"].as_array().unwrap().len(), 10);
    }

    // Each backend reports its counters within about 10 s of going idle.
    let reads = PRIMING_READS + LOADED_READS;
    let deadline = Instant::now() + Duration::from_secs(30);
    let (scans, tuples) = loop {
        let (scans, tuples) = index_reads(&admin).await;
        if scans >= reads {
            break (scans, tuples);
        }
        assert!(
            Instant::now() < deadline,
            "only {scans} scans of the history index reported for {reads} statement reads"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    // An ordered index scan under the LIMIT reads about 10 index entries
    // per statement; a bitmap scan of the account reads all 10,000.
    assert!(
        tuples <= LOADED_READS * 20,
        "{LOADED_READS} statement reads of an account with {ROWS_PER_ACCOUNT} rows read \
         {tuples} index entries in {scans} scans: the plan reads every row of the account"
    );
}
