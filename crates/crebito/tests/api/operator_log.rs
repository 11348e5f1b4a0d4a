//! The operator can see why: a database failure is logged with its whole
//! cause (the server's message, the I/O error) and where the connection
//! went, so that a wrong password, a missing socket and a timed-out
//! statement are each recognisable; a password never appears. A log
//! written to a file or a pipe is plain text.

use std::time::Duration;

use crate::helpers::{self, Crebito};

/// Starts `crebito serve --listen LISTEN EXTRA…` on `database_url`.
fn serve(database_url: &str, listen: &str, extra: &[&str]) -> Crebito {
    let mut args = vec!["serve", "--listen", listen];
    args.extend_from_slice(extra);
    Crebito::spawn(&args, &[("DATABASE_URL", database_url)])
}

#[tokio::test]
async fn a_wrong_password_is_named_in_the_log() {
    let url = helpers::fresh_postgres_database().await;
    let role = format!("crebito_pw_{}", std::process::id());
    helpers::admin_session(&url)
        .await
        .batch_execute(&format!(
            "CREATE ROLE {role} LOGIN PASSWORD 'right-password'"
        ))
        .await
        .unwrap();
    // The right password is accepted, so what fails below is the password.
    let right = helpers::with_credentials(&url, &role, "right-password");
    let (client, _) = tokio_postgres::connect(&right, tokio_postgres::NoTls)
        .await
        .expect("the right password connects");
    drop(client);

    let wrong = helpers::with_credentials(&url, &role, "wrong-secret");
    let crebito = serve(&wrong, "127.0.0.1:0", &[]);
    let log = crebito.wait_for_log(
        &format!("password authentication failed for user \"{role}\""),
        Duration::from_secs(20),
    );
    assert!(log.contains("cannot connect to PostgreSQL at"), "{log}");
    assert!(!log.contains("wrong-secret"), "the password leaked:\n{log}");
}

#[test]
fn a_missing_socket_is_named_in_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let socket_dir = dir.path().join("no-server-here");
    let url = format!(
        "postgres://crebito:secret-password@/crebito?host={}",
        socket_dir.display()
    );
    let crebito = serve(&url, "127.0.0.1:0", &[]);
    let socket = socket_dir.join(".s.PGSQL.5432");
    let log = crebito.wait_for_log(&socket.display().to_string(), Duration::from_secs(20));
    assert!(log.contains("No such file or directory"), "{log}");
    assert!(
        !log.contains("secret-password"),
        "the password leaked:\n{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timed_out_statement_is_named_in_the_log() {
    let url = helpers::fresh_postgres_database().await;
    let (crebito, base) = Crebito::serve(&url, &["--query-timeout-ms", "300"]).await;
    // Another session holds account 1's row lock: the posting waits, and
    // the server cancels it after 300 ms.
    let blocker = helpers::admin_session(&url).await;
    helpers::hold_account_row(&blocker, 1).await;
    let (status, body) = helpers::post_new_connection(
        &base,
        1,
        None,
        serde_json::json!({"valor": 1, "tipo": "d", "descricao": "bloqueada"}),
    )
    .await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["type"], "urn:crebito:problem:service-unavailable");
    assert_eq!(body["detail"], "service unavailable");
    crebito.wait_for_log(
        "canceling statement due to statement timeout",
        Duration::from_secs(10),
    );
    blocker.batch_execute("ROLLBACK").await.unwrap();
}

#[test]
fn a_log_written_to_a_pipe_has_no_colour_escapes() {
    let dir = tempfile::tempdir().unwrap();
    let database = format!("sqlite://{}", dir.path().join("ledger.db").display());
    let socket = dir.path().join("missing-dir").join("api.sock");
    // Opens the ledger (info lines), then cannot listen (an error line)
    // and exits.
    let mut crebito = serve(&database, &format!("unix:{}", socket.display()), &[]);
    assert_eq!(crebito.wait(Duration::from_secs(30)), Some(1));
    let log = crebito.log_bytes();
    let text = String::from_utf8_lossy(&log);
    assert!(
        text.contains("ERROR") && text.contains("cannot listen on"),
        "{text}"
    );
    assert!(
        !log.contains(&0x1b),
        "colour escapes in a piped log: {text:?}"
    );
}

/// `serve` says in one line which ledger it serves — a SQLite file by its
/// absolute path, however the URL named it — and whether it created it:
/// a mistyped URL shows as a NEW ledger at an unexpected path.
#[test]
fn serve_names_its_ledger_and_whether_it_created_it() {
    let dir = tempfile::tempdir().unwrap();
    let absolute = dir.path().canonicalize().unwrap().join("sub/ledger.db");
    for expected in [
        format!(
            "serving the SQLite ledger {}: a NEW ledger, created now with the seeded accounts",
            absolute.display()
        ),
        format!(
            "serving the SQLite ledger {}, which existed",
            absolute.display()
        ),
    ] {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_crebito"));
        command
            .args(["serve", "--listen", "127.0.0.1:0"])
            .env("DATABASE_URL", "sqlite://sub/ledger.db")
            .current_dir(dir.path());
        let crebito = Crebito::spawn_command(&mut command);
        let log = crebito.wait_for_log("crebito ready", Duration::from_secs(30));
        let lines: Vec<&str> = log.lines().filter(|l| l.contains("serving")).collect();
        assert_eq!(lines.len(), 1, "{log}");
        assert!(lines[0].contains("INFO"), "{log}");
        assert!(
            lines[0].contains(&expected),
            "{expected:?} expected:\n{log}"
        );
    }
}

/// The same on PostgreSQL: a database that holds no ledger gets one,
/// seeded, and the log says so; the next start finds it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_says_whether_it_seeded_a_new_ledger_in_postgres() {
    let url = helpers::fresh_postgres_database().await;
    for expected in [
        ": a NEW ledger, created now with the seeded accounts",
        ", which existed",
    ] {
        let crebito = Crebito::spawn(
            &["serve", "--listen", "127.0.0.1:0"],
            &[("DATABASE_URL", url.as_str())],
        );
        let log = crebito.wait_for_log("crebito ready", Duration::from_secs(30));
        let lines: Vec<&str> = log.lines().filter(|l| l.contains("serving")).collect();
        assert_eq!(lines.len(), 1, "{log}");
        assert!(
            lines[0].contains("serving the ledger in PostgreSQL at ")
                && lines[0].contains(expected),
            "{expected:?} expected:\n{log}"
        );
    }
}

/// A PostgreSQL that does not answer at start is retried once a second for
/// `--connect-timeout-secs` (`CREBITO_CONNECT_TIMEOUT_SECS`), each warning
/// saying which attempt of how many failed; then the server exits 1.
#[test]
fn an_unreachable_postgres_is_retried_for_the_connect_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!(
        "postgres://crebito@/crebito?host={}",
        dir.path().join("no-server").display()
    );
    let mut crebito = Crebito::spawn(
        &["serve", "--listen", "127.0.0.1:0"],
        &[
            ("DATABASE_URL", url.as_str()),
            ("CREBITO_CONNECT_TIMEOUT_SECS", "2"),
        ],
    );
    assert_eq!(crebito.wait(Duration::from_secs(20)), Some(1));
    let log = crebito.log();
    for attempt in ["attempt 1 of 3", "attempt 2 of 3", "attempt 3 of 3"] {
        assert_eq!(log.matches(attempt).count(), 1, "{attempt}:\n{log}");
    }
    assert!(log.contains("--connect-timeout-secs 2"), "{log}");
    assert!(!log.contains("attempt 4"), "{log}");

    // 0: one attempt, no retry.
    let mut crebito = Crebito::spawn(
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--connect-timeout-secs",
            "0",
        ],
        &[("DATABASE_URL", url.as_str())],
    );
    assert_eq!(crebito.wait(Duration::from_secs(10)), Some(1));
    let log = crebito.log();
    assert!(!log.contains("retrying"), "{log}");
    assert!(log.contains("ERROR"), "{log}");
}
