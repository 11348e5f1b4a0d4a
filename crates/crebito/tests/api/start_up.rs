//! Start-up (PostgreSQL): no stored balance and no lock held by another
//! session stops an instance from starting, and a database that cannot
//! hold the contract is refused at once with an error that says why.

use std::time::Duration;

use serde_json::json;

use crate::helpers::{self, admin_session, hold_account_row, Crebito};

/// A fresh PostgreSQL database: its URL, a superuser session on it and its
/// name.
async fn fresh_database_with_admin() -> (String, tokio_postgres::Client, String) {
    let url = helpers::fresh_postgres_database().await;
    let admin = admin_session(&url).await;
    let name: String = admin
        .query_one("SELECT current_database()::text", &[])
        .await
        .unwrap()
        .get(0);
    (url, admin, name)
}

/// Posts and reads on `base`: account 2 takes a credit, account 1's
/// statement shows `balance`.
async fn serves(base: &str, balance: i64) {
    let body = json!({"valor": 1, "tipo": "c", "descricao": "served"});
    let (status, _) = helpers::post_new_connection(base, 2, None, body).await;
    assert_eq!(status, 200);
    let response = reqwest::get(format!("{base}/clientes/1/extrato"))
        .await
        .unwrap();
    let (status, statement) = helpers::read(response).await;
    assert_eq!(status, 200);
    assert_eq!(statement["saldo"]["total"], balance);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stored_balance_or_a_held_row_lock_does_not_stop_a_start() {
    let url = helpers::fresh_postgres_database().await;
    let (first, base) = Crebito::serve(&url, &[]).await;
    // A legal state: account 1 holds 2^63 - 1 cents.
    let body = json!({"valor": i64::MAX, "tipo": "c", "descricao": "max"});
    let (status, answer) = helpers::post_new_connection(&base, 1, None, body).await;
    assert_eq!((status, answer["saldo"].as_i64()), (200, Some(i64::MAX)));
    drop(first);
    let (second, base) = Crebito::serve_within(&url, &[], Duration::from_secs(15)).await;
    serves(&base, i64::MAX).await;
    drop(second);
    // Another session holds account 1's row lock for the whole start.
    let session = admin_session(&url).await;
    hold_account_row(&session, 1).await;
    let (third, base) = Crebito::serve_within(&url, &[], Duration::from_secs(15)).await;
    serves(&base, i64::MAX).await;
    session.batch_execute("ROLLBACK").await.unwrap();
    drop(third);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_not_encoded_in_utf8_is_refused_at_start() {
    let (url, admin, name) = fresh_database_with_admin().await;
    let ascii = format!("{name}_ascii");
    admin
        .batch_execute(&format!(
            "CREATE DATABASE {ascii} ENCODING 'SQL_ASCII' LC_COLLATE 'C' LC_CTYPE 'C' \
             TEMPLATE template0"
        ))
        .await
        .unwrap();
    let ascii_url = url.replacen(&format!("/{name}"), &format!("/{ascii}"), 1);
    let listen = format!("127.0.0.1:{}", helpers::free_port());
    let mut process = Crebito::spawn(
        &["serve", "--listen", &listen],
        &[("DATABASE_URL", &ascii_url)],
    );
    // Refused at once, not retried for 30 s: waiting does not change it.
    let code = process.wait(Duration::from_secs(15));
    assert_eq!(code, Some(1));
    let log = process.log();
    for needle in ["SQL_ASCII", "UTF8", "CREATE DATABASE", "docs/deployment.md"] {
        assert!(log.contains(needle), "{needle:?} in:\n{log}");
    }
    assert!(!log.contains("retrying"), "{log}");
    // Nothing was created in it.
    let tables: i64 = admin_session(&ascii_url)
        .await
        .query_one(
            "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(tables, 0);
}

/// A server that answers and refuses the login, or names no such
/// database, does not change by waiting: the start ends at once with the
/// server's message, not after `--connect-timeout-secs` of retries.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_login_or_a_missing_database_ends_the_start_at_once() {
    let (url, admin, name) = fresh_database_with_admin().await;
    let role = format!("{name}_role");
    admin
        .batch_execute(&format!("CREATE ROLE {role} LOGIN PASSWORD 'right'"))
        .await
        .unwrap();
    let wrong_password = helpers::with_credentials(&url, &role, "wrong");
    let missing = url.replacen(&format!("/{name}"), &format!("/{name}_missing"), 1);
    for (database_url, needle) in [
        (wrong_password, "password authentication failed"),
        (missing, "does not exist"),
    ] {
        let listen = format!("127.0.0.1:{}", helpers::free_port());
        let mut process = Crebito::spawn(
            &["serve", "--listen", &listen, "--connect-timeout-secs", "60"],
            &[("DATABASE_URL", &database_url)],
        );
        let code = process.wait(Duration::from_secs(15));
        let log = process.log();
        assert_eq!(code, Some(1), "{log}");
        assert!(log.contains(needle), "{needle:?} in:\n{log}");
        assert!(!log.contains("retrying"), "{log}");
    }
}
