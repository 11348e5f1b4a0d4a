//! The PostgreSQL schema's own rules, the second line of defence behind the
//! ledger's (docs/contract.md §2.1, §3): a row that breaks one is refused
//! by the database even when it is written behind the ledger's back. The
//! rules on a posting's values and on a limit are domains; only the
//! balance's rule, which compares two columns, and the account id's stay
//! table `CHECK`s, which PostgreSQL parses again for every posting
//! (crates/crebito/migrations/postgres/0008_posting_domains.sql).

use tokio_postgres::error::SqlState;

use crate::helpers::{self, Backend, TestApp};

/// `sql`, run on its own, must fail on a check: the constraint it names.
async fn refused(admin: &tokio_postgres::Client, sql: &str) -> String {
    let error = admin
        .batch_execute(sql)
        .await
        .expect_err(&format!("the database accepted: {sql}"));
    let db = error
        .as_db_error()
        .unwrap_or_else(|| panic!("{sql}: not a database error: {error}"));
    assert_eq!(db.code(), &SqlState::CHECK_VIOLATION, "{sql}: {db}");
    db.constraint().unwrap_or_default().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rows_that_break_the_contract_are_refused_by_the_database_postgres() {
    let app = TestApp::spawn(Backend::Postgres).await;
    let admin = helpers::admin_session(&app.database_url).await;
    let insert = |amount: &str, kind: &str, description: &str| {
        format!(
            "INSERT INTO transactions (account_id, amount, kind, description)
             VALUES (1, {amount}, {kind}, {description})"
        )
    };
    for (sql, constraint) in [
        (insert("0", "'c'", "'zero'"), "posting_amount_check"),
        (insert("-5", "'d'", "'negativo'"), "posting_amount_check"),
        (insert("5", "'x'", "'tipo'"), "posting_kind_check"),
        (insert("5", "'C'", "'maiuscula'"), "posting_kind_check"),
        (insert("5", "'c'", "''"), "posting_description_check"),
        (
            insert("5", "'c'", "'onze chars!'"),
            "posting_description_check",
        ),
        (
            "UPDATE accounts SET credit_limit = -1 WHERE id = 1".to_owned(),
            "credit_limit_cents_check",
        ),
        (
            "UPDATE accounts SET balance = -credit_limit - 1 WHERE id = 1".to_owned(),
            "balance_within_limit",
        ),
        (
            "INSERT INTO accounts (id, credit_limit) VALUES (0, 0)".to_owned(),
            "accounts_id_check",
        ),
    ] {
        assert_eq!(refused(&admin, &sql).await, constraint, "{sql}");
    }
    // At the bounds, and ten characters (not bytes) of a description.
    admin
        .batch_execute(&format!(
            "{}; {};
             UPDATE accounts SET balance = -credit_limit WHERE id = 2",
            insert("1", "'c'", "'a'"),
            insert("9223372036854775807", "'d'", "'ação ção ç'"),
        ))
        .await
        .expect("rows within every rule are stored");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn only_the_balance_and_the_account_id_are_table_checks_postgres() {
    let app = TestApp::spawn(Backend::Postgres).await;
    let admin = helpers::admin_session(&app.database_url).await;
    let rows = admin
        .query(
            "SELECT conrelid::regclass::text, conname FROM pg_constraint
             WHERE contype = 'c' AND conrelid IN ('accounts'::regclass, 'transactions'::regclass)
             ORDER BY 1, 2",
            &[],
        )
        .await
        .expect("read the table checks");
    let checks: Vec<(String, String)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(
        checks,
        [
            ("accounts".to_owned(), "accounts_id_check".to_owned()),
            ("accounts".to_owned(), "balance_within_limit".to_owned()),
        ]
    );
}
