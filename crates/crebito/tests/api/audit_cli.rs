//! `crebito audit`: exit 0 when every account holds, 1 when one does not.

use std::path::Path;
use std::process::Command;

use crate::helpers::{self, NotALedger, TestApp};

on_every_ledger!(audit_passes_then_catches_a_tampered_balance);

fn audit(url: &str) -> (i32, String) {
    run_audit(&["--database-url", url])
}

/// Runs `crebito audit ARGS`; returns the exit code and stdout.
fn run_audit(args: &[&str]) -> (i32, String) {
    let (code, stdout, _) = run_audit_with_stderr(args);
    (code, stdout)
}

/// Runs `crebito audit ARGS`; returns the exit code, stdout and stderr.
fn run_audit_with_stderr(args: &[&str]) -> (i32, String, String) {
    run_audit_in(Path::new("."), args)
}

/// Runs `crebito audit ARGS` in directory `dir`; returns the exit code,
/// stdout and stderr.
fn run_audit_in(dir: &Path, args: &[&str]) -> (i32, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_crebito"))
        .arg("audit")
        .args(args)
        .current_dir(dir)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run crebito audit");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

async fn audit_passes_then_catches_a_tampered_balance(app: TestApp) {
    app.post(1, 500, "c", "a").await;
    app.post(1, 200, "d", "b").await;
    let (code, out) = audit(&app.database_url);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("audit passed"), "{out}");
    // Move a balance without a transaction row.
    helpers::execute_unchecked(
        &app.database_url,
        "UPDATE accounts SET balance = balance + 1 WHERE id = 2",
    )
    .await;
    let (code, out) = audit(&app.database_url);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("FAILED"), "{out}");
}

#[test]
fn audit_of_an_unreachable_database_exits_2() {
    let (code, _) = audit("postgres://nobody@127.0.0.1:1/none?connect_timeout=2");
    assert_eq!(code, 2);
}

#[test]
fn audit_names_what_it_could_not_reach_without_the_password() {
    let dir = tempfile::tempdir().unwrap();
    let socket_dir = dir.path().join("no-server");
    let missing_file = dir.path().join("missing.db");
    for (url, reached) in [
        (
            "postgres://nobody:secret-password@127.0.0.1:1/none?connect_timeout=2".to_owned(),
            "127.0.0.1:1".to_owned(),
        ),
        (
            format!(
                "postgres://nobody:secret-password@/none?host={}",
                socket_dir.display()
            ),
            socket_dir.join(".s.PGSQL.5432").display().to_string(),
        ),
        (
            format!("sqlite://{}", missing_file.display()),
            missing_file.display().to_string(),
        ),
    ] {
        let (code, _, stderr) = run_audit_with_stderr(&["--database-url", &url]);
        assert_eq!(code, 2, "{url}: {stderr}");
        assert!(stderr.contains(&reached), "{url}: {stderr}");
        assert!(!stderr.contains("secret-password"), "{url}: {stderr}");
    }
}

#[test]
fn audit_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("missing").join("ledger.db");
    let (code, _) = audit(&format!("sqlite://{}", path.display()));
    assert_eq!(code, 2);
    assert!(!path.exists() && !path.parent().unwrap().exists());
}

/// A relative `sqlite://` URL is read from the current directory: the
/// audit names the file it read, or looked for, by its absolute path.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_names_the_absolute_path_of_the_sqlite_file() {
    let app = TestApp::spawn(helpers::Backend::Sqlite).await;
    let file = Path::new(app.database_url.strip_prefix("sqlite://").unwrap());
    let dir = file.parent().unwrap();
    let absolute = file.canonicalize().unwrap();
    let (code, stdout, stderr) = run_audit_in(dir, &["--database-url", "sqlite://ledger.db"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(
        stdout.contains(&format!(
            "auditing the SQLite ledger {}",
            absolute.display()
        )),
        "{stdout}"
    );
    let (code, _, stderr) = run_audit_in(dir, &["--database-url", "sqlite://typo.db"]);
    assert_eq!(code, 2, "{stderr}");
    let missing = dir.canonicalize().unwrap().join("typo.db");
    assert!(
        stderr.contains(&format!(
            "no SQLite ledger at {}: the file does not exist",
            missing.display()
        )),
        "{stderr}"
    );
    std::fs::create_dir(dir.join("typo.db")).unwrap();
    let (code, _, stderr) = run_audit_in(dir, &["--database-url", "sqlite://typo.db"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains(&format!(
            "no SQLite ledger at {}: it is a directory, not a file",
            missing.display()
        )),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_checks_a_client_record_of_postings() {
    let app = TestApp::spawn(helpers::Backend::Sqlite).await;
    app.post(1, 10, "c", "ack-1").await;
    app.post(2, 90000, "d", "refused-1").await; // over the limit: 422
    let dir = tempfile::tempdir().unwrap();
    let record = dir.path().join("record.jsonl");
    let line = |account: i32, descricao: &str, tipo: &str, valor: i64, outcome: &str| {
        format!(
            r#"{{"account":{account},"descricao":"{descricao}","tipo":"{tipo}","valor":{valor},"outcome":"{outcome}"}}"#
        )
    };
    let good = [
        line(1, "ack-1", "c", 10, "acknowledged"),
        line(2, "refused-1", "d", 90000, "refused"),
        line(3, "lost-1", "c", 1, "unknown"),
    ]
    .join("\n");
    std::fs::write(&record, &good).unwrap();
    let with_record = [
        "--database-url",
        &app.database_url,
        "--acknowledged",
        record.to_str().unwrap(),
    ];
    let (code, stdout) = run_audit(&with_record);
    assert_eq!(code, 0, "{stdout}");
    assert!(stdout.contains("1 acknowledged stored once"), "{stdout}");
    // An acknowledged posting the ledger does not have.
    std::fs::write(
        &record,
        format!("{good}\n{}", line(1, "ack-2", "c", 10, "acknowledged")),
    )
    .unwrap();
    let (code, stdout) = run_audit(&with_record);
    assert_eq!(code, 1, "{stdout}");
    assert!(stdout.contains("acknowledged but missing"), "{stdout}");
}

/// A file that holds no crebito ledger used to be opened as one: switched
/// to WAL (its header rewritten) before the audit met a missing table. It
/// is refused (exit 2) before anything is opened for writing, naming its
/// absolute path and why, and left byte for byte as it was.
#[test]
fn audit_refuses_a_file_that_holds_no_crebito_ledger_and_leaves_it_as_it_was() {
    for file in NotALedger::every_kind() {
        let before = file.files();
        let (code, stdout, stderr) = run_audit_with_stderr(&["--database-url", &file.url()]);
        let name = file.path.display();
        assert_eq!(code, 2, "{name}: {stdout}{stderr}");
        file.assert_refused(&stderr, &before);
    }
}
