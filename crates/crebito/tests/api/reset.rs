//! `crebito reset`: back to the seeded state (docs/configuration.md), on
//! SQLite at once, on PostgreSQL only with `--force`.

use std::path::Path;
use std::process::Command;

use crate::helpers::{self, Backend, NotALedger, TestApp};

/// Runs `crebito reset ARGS`; returns the exit code and stdout + stderr.
fn reset(args: &[&str]) -> (i32, String) {
    reset_in(Path::new("."), args)
}

/// Runs `crebito reset ARGS` in directory `dir`, without a
/// `DATABASE_URL` from the environment; returns the exit code and stdout +
/// stderr.
fn reset_in(dir: &Path, args: &[&str]) -> (i32, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_crebito"))
        .arg("reset")
        .args(args)
        .current_dir(dir)
        .env_remove("DATABASE_URL")
        .env("RUST_LOG", "warn")
        .output()
        .expect("run crebito reset");
    (
        output.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ),
    )
}

async fn assert_seeded(app: &TestApp) {
    for (id, limit) in [
        (1, 100000),
        (2, 80000),
        (3, 1000000),
        (4, 10000000),
        (5, 500000),
    ] {
        let (status, body) = app.statement(&id.to_string()).await;
        assert_eq!(status, 200);
        assert_eq!(body["saldo"]["total"], 0, "{body}");
        assert_eq!(body["saldo"]["limite"], limit, "{body}");
        assert_eq!(body["ultimas_transacoes"], serde_json::json!([]), "{body}");
    }
    assert_eq!(app.statement("6").await.0, 404);
}

/// Credits 9 to account 2 with `Idempotency-Key: k`; the status.
async fn post_keyed(app: &TestApp) -> reqwest::StatusCode {
    app.client
        .post(app.url("/clientes/2/transacoes"))
        .header("content-type", "application/json")
        .header("idempotency-key", "k")
        .body(r#"{"valor": 9, "tipo": "c", "descricao": "chave"}"#)
        .send()
        .await
        .unwrap()
        .status()
}

/// Postings, an idempotency key and a sixth account: all gone after.
async fn dirty(app: &TestApp) {
    assert_eq!(app.post(1, 700, "d", "antes").await.0, 200);
    assert_eq!(app.post(3, 5, "c", "antes").await.0, 200);
    assert_eq!(post_keyed(app).await, 200);
    helpers::execute_unchecked(
        &app.database_url,
        "INSERT INTO accounts (id, credit_limit, balance) VALUES (6, 1, 0)",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sqlite_ledger_is_reset_to_the_seeded_accounts() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    dirty(&app).await;
    let (code, out) = reset(&["--database-url", &app.database_url]);
    assert_eq!(code, 0, "{out}");
    assert_seeded(&app).await;
    // The key is forgotten too: the same request posts again.
    assert_eq!(post_keyed(&app).await, 200);
    assert_eq!(app.statement("2").await.1["saldo"]["total"], 9);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_is_refused_without_force_and_reset_with_it() {
    let app = TestApp::spawn(Backend::Postgres).await;
    dirty(&app).await;
    let (code, out) = reset(&["--database-url", &app.database_url]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("--force"), "{out}");
    // Refused: nothing changed.
    let (_, body) = app.statement("1").await;
    assert_eq!(body["saldo"]["total"], -700, "{body}");

    // Reset while the instance keeps serving the database.
    let (code, out) = reset(&["--database-url", &app.database_url, "--force"]);
    assert_eq!(code, 0, "{out}");
    assert_seeded(&app).await;
    assert_eq!(app.post(1, 1, "c", "depois").await.0, 200);
    assert_eq!(app.statement("1").await.1["saldo"]["total"], 1);
}

#[test]
fn an_unreachable_database_fails_with_its_address() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!(
        "postgres://crebito@/crebito?host={}&connect_timeout=2",
        dir.path().display()
    );
    let (code, out) = reset(&["--database-url", &url, "--force"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains(&dir.path().display().to_string()), "{out}");
}

/// Run from a directory without the server's ledger, `reset` (default
/// `sqlite://data/crebito.db`) used to create a new file there and say it
/// had reset the ledger, while the server's stayed as it was.
#[test]
fn a_missing_sqlite_ledger_is_refused_and_its_absolute_path_named() {
    let dir = tempfile::tempdir().unwrap();
    let (code, out) = reset_in(dir.path(), &[]);
    assert_eq!(code, 2, "{out}");
    let looked_at = dir.path().canonicalize().unwrap().join("data/crebito.db");
    assert!(
        out.contains(&format!("no SQLite ledger at {}", looked_at.display())),
        "{out}"
    );
    assert!(out.contains("does not exist"), "{out}");
    assert!(
        !dir.path().join("data").exists(),
        "reset created something: {out}"
    );
    // A directory where the file should be is named as such.
    std::fs::create_dir_all(dir.path().join("data/crebito.db")).unwrap();
    let (code, out) = reset_in(dir.path(), &[]);
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains(&format!(
            "no SQLite ledger at {}: it is a directory, not a file",
            looked_at.display()
        )),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reset_names_the_absolute_path_of_the_ledger_it_reset() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    dirty(&app).await;
    let file = Path::new(app.database_url.strip_prefix("sqlite://").unwrap());
    // A relative URL, from the file's directory.
    let (code, out) = reset_in(
        file.parent().unwrap(),
        &["--database-url", "sqlite://ledger.db"],
    );
    assert_eq!(code, 0, "{out}");
    let absolute = file.canonicalize().unwrap();
    assert!(
        out.contains(&format!("reset the SQLite ledger {}:", absolute.display())),
        "{out}"
    );
    assert_seeded(&app).await;
}

/// A file that holds no crebito ledger — empty, a SQLite database without
/// any table, another program's database, not SQLite at all — used to be
/// given the ledger's tables and "reset". It is refused (exit 2), naming
/// its absolute path, why, and what to do, and left byte for byte as it
/// was.
#[test]
fn a_file_that_holds_no_crebito_ledger_is_refused_and_left_as_it_was() {
    for file in NotALedger::every_kind() {
        let before = file.files();
        let (code, out) = reset(&["--database-url", &file.url()]);
        let name = file.path.display();
        assert_eq!(code, 2, "{name}: {out}");
        file.assert_refused(&out, &before);
        assert!(out.contains("nothing was reset"), "{name}: {out}");
        assert!(out.contains("--database-url"), "{name}: {out}");
        if file.holds_nothing {
            assert!(out.contains("`crebito serve` creates"), "{name}: {out}");
        }
    }
}
