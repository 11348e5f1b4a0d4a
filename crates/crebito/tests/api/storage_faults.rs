//! Storage faults never lose an acknowledged posting silently, and the
//! operator sees them (docs/contract.md §2.8, docs/operations.md): a SQLite
//! file deleted or replaced under the server refuses writes; `/health` says
//! why the instance cannot write; a new ledger is never created silently;
//! a live unix socket is never taken over; a failure repeated by every
//! request is logged once per interval; running out of file descriptors is
//! logged once per interval too.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::helpers::{self, Crebito, NotALedger};

/// Starts `crebito serve` on the SQLite file `db`; waits until it is ready.
fn start(db: &Path, extra: &[&str]) -> (Crebito, String) {
    let listen = format!("127.0.0.1:{}", helpers::free_port());
    let url = format!("sqlite://{}", db.display());
    let mut args = vec!["serve", "--listen", &listen, "--database-url", &url];
    args.extend_from_slice(extra);
    let crebito = Crebito::spawn(&args, &[]);
    crebito.wait_for_log("crebito ready", Duration::from_secs(30));
    (crebito, format!("http://{listen}"))
}

async fn post(base: &str) -> (u16, serde_json::Value) {
    helpers::post_new_connection(
        base,
        1,
        None,
        serde_json::json!({"valor": 1, "tipo": "c", "descricao": "x"}),
    )
    .await
}

async fn health(base: &str) -> (u16, serde_json::Value) {
    helpers::read(reqwest::get(format!("{base}/health")).await.unwrap()).await
}

fn count(log: &str, needle: &str) -> usize {
    log.lines().filter(|l| l.contains(needle)).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_or_replaced_sqlite_file_refuses_writes_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("ledger.db");
    let (crebito, base) = start(&db, &[]);
    // A new ledger is created loudly.
    assert_eq!(count(&crebito.log(), "WARN"), 1, "{}", crebito.log());
    assert!(crebito.log().contains("creating a NEW one"));
    assert_eq!(post(&base).await.0, 200);
    assert_eq!(health(&base).await.0, 200);

    std::fs::remove_file(&db).unwrap();
    for _ in 0..50 {
        let (status, body) = post(&base).await;
        assert_eq!(status, 503, "{body}");
        assert_eq!(body["type"], "urn:crebito:problem:service-unavailable");
    }
    let (status, body) = health(&base).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["type"], "urn:crebito:problem:unhealthy");
    assert_eq!(
        body["detail"],
        "the database file was deleted while the server ran"
    );
    // The path is not created again behind the operator's back.
    assert!(!db.exists());
    // The cause is logged with the path, once for the 50 requests (a
    // summary follows at the end of the interval).
    let log = crebito.wait_for_log("refusing writes", Duration::from_secs(5));
    assert!(log.contains(&db.display().to_string()), "{log}");
    assert_eq!(count(&log, "ERROR"), 1, "{log}");

    // Another file at the path is not the ledger either.
    std::fs::write(&db, b"not the ledger").unwrap();
    let (status, body) = health(&base).await;
    assert_eq!(status, 503);
    assert_eq!(
        body["detail"],
        "the database file was replaced by another file while the server ran"
    );
    assert_eq!(post(&base).await.0, 503);
}

#[test]
fn a_missing_ledger_can_be_required_to_exist() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("gone.db");
    let url = format!("sqlite://{}", db.display());
    let mut crebito = Crebito::spawn(
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--database-url",
            &url,
            "--require-existing-ledger",
        ],
        &[],
    );
    assert_eq!(crebito.wait(Duration::from_secs(10)), Some(1));
    assert!(
        crebito.log().contains("no SQLite database at"),
        "{}",
        crebito.log()
    );
    assert!(!db.exists());
}

/// `serve` on a file that holds no crebito ledger: one that holds nothing
/// (0 bytes, a SQLite database without any table) is a new ledger —
/// created with the warning and start line of a new one, or refused with
/// `--require-existing-ledger`; anything else (another program's database,
/// a file that is not SQLite) used to be given the ledger's tables, and is
/// refused (exit 1) naming its absolute path and why, left byte for byte
/// as it was.
#[test]
fn serve_creates_a_ledger_only_in_a_file_that_holds_nothing() {
    for file in NotALedger::every_kind() {
        let name = file.path.display();
        let url = file.url();
        let serve = |extra: &[&str]| {
            let mut args = vec!["serve", "--listen", "127.0.0.1:0", "--database-url", &url];
            args.extend_from_slice(extra);
            Crebito::spawn(&args, &[])
        };
        let before = file.files();
        // Exit 1, the absolute path and why in the log, the file as it was.
        let refused = |extra: &[&str]| {
            let mut crebito = serve(extra);
            assert_eq!(crebito.wait(Duration::from_secs(10)), Some(1), "{name}");
            let log = crebito.log();
            file.assert_refused(&log, &before);
            log
        };
        refused(&["--require-existing-ledger"]);
        if !file.holds_nothing {
            let log = refused(&[]);
            assert!(log.contains("refusing to add"), "{name}: {log}");
            continue;
        }
        let crebito = serve(&[]);
        let log = crebito.wait_for_log("crebito ready", Duration::from_secs(30));
        assert!(log.contains("creating a NEW"), "{name}: {log}");
        assert!(
            log.contains(&format!(
                "serving the SQLite ledger {name}: a NEW ledger, created now"
            )),
            "{name}: {log}"
        );
    }
}

/// Runs `program args`; panics with its output when it fails.
fn run(program: &str, args: &[&str]) {
    let out = Command::new(program).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A tmpfs of `size` at a new directory under `parent`, unmounted on drop.
/// Needs root (CI runs as root); `None`, with a note, otherwise.
struct Mount(std::path::PathBuf);

impl Mount {
    fn tmpfs(parent: &Path, size: &str) -> Option<Mount> {
        let path = parent.join("mnt");
        std::fs::create_dir(&path).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&path)
            .output()
            .ok()?;
        if !out.status.success() {
            eprintln!(
                "cannot mount a tmpfs (not root?): {}",
                String::from_utf8_lossy(&out.stderr)
            );
            return None;
        }
        Some(Mount(path))
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_says_when_the_disk_is_full() {
    let dir = tempfile::tempdir().unwrap();
    let Some(mount) = Mount::tmpfs(dir.path(), "4m") else {
        assert!(!is_root(), "root could not mount a tmpfs");
        return;
    };
    let db = mount.0.join("ledger.db");
    let (_crebito, base) = start(&db, &[]);
    assert_eq!(health(&base).await.0, 200);
    // Fill the file system.
    let filler = mount.0.join("filler");
    let mut file = std::fs::File::create(&filler).unwrap();
    let chunk = vec![0u8; 64 * 1024];
    while std::io::Write::write_all(&mut file, &chunk).is_ok() {}
    drop(file);
    // The probe of a second ago is not reused.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let mut answer = health(&base).await;
    for _ in 0..20 {
        if answer.0 == 503 {
            break;
        }
        // The WAL may still have room for a few frames: use it up.
        let _ = post(&base).await;
        tokio::time::sleep(Duration::from_millis(1100)).await;
        answer = health(&base).await;
    }
    let (status, body) = answer;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["detail"], "the disk is full");
    assert_eq!(post(&base).await.0, 503);
    // Space again: healthy again.
    std::fs::remove_file(&filler).unwrap();
    assert_eq!(health(&base).await.0, 200);
    assert_eq!(post(&base).await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ledger_on_read_only_storage_does_not_start_and_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let Some(mount) = Mount::tmpfs(dir.path(), "16m") else {
        assert!(!is_root(), "root could not mount a tmpfs");
        return;
    };
    let db = mount.0.join("ledger.db");
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.execute_batch("CREATE TABLE t (x INTEGER)").unwrap();
    drop(conn);
    // The same files, read-only (as root, file modes would not stop us).
    run(
        "mount",
        &["-o", "remount,ro", &mount.0.display().to_string()],
    );
    let url = format!("sqlite://{}", db.display());
    let mut crebito = Crebito::spawn(
        &["serve", "--listen", "127.0.0.1:0", "--database-url", &url],
        &[],
    );
    assert_eq!(crebito.wait(Duration::from_secs(10)), Some(1));
    // The log is collected by a thread that may still be reading it.
    crebito.wait_for_log("cannot be opened for writing", Duration::from_secs(5));
}

#[tokio::test]
async fn a_second_server_refuses_a_live_unix_socket() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("api.sock");
    let listen = format!("unix:{}", socket.display());
    let db = format!("sqlite://{}", dir.path().join("l.db").display());
    let first = Crebito::spawn(&["serve", "--listen", &listen, "--database-url", &db], &[]);
    first.wait_for_log("crebito ready", Duration::from_secs(30));
    let mut second = Crebito::spawn(&["serve", "--listen", &listen, "--database-url", &db], &[]);
    assert_eq!(second.wait(Duration::from_secs(30)), Some(1));
    assert!(
        second
            .log()
            .contains("another server is listening on this socket"),
        "{}",
        second.log()
    );
    // The first still serves on its socket.
    let mut stream = tokio::net::UnixStream::connect(&socket).await.unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    stream
        .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buffer = [0u8; 64];
    let n = stream.read(&mut buffer).await.unwrap();
    assert!(buffer[..n].starts_with(b"HTTP/1.1 200"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn running_out_of_file_descriptors_is_logged_once_per_interval() {
    let dir = tempfile::tempdir().unwrap();
    let port = helpers::free_port();
    let db = format!("sqlite://{}", dir.path().join("l.db").display());
    // A limit of 64 descriptors, soft and hard: the server warns at start
    // (it cannot raise it) and runs out when many clients connect.
    let script = format!(
        "ulimit -n 64 && exec '{}' serve --listen 127.0.0.1:{port} --database-url '{db}'",
        env!("CARGO_BIN_EXE_crebito")
    );
    let crebito = Crebito::spawn_command(Command::new("sh").args(["-c", &script]));
    crebito.wait_for_log("crebito ready", Duration::from_secs(30));
    assert!(
        crebito
            .log()
            .contains("file descriptors but the limit is 64"),
        "{}",
        crebito.log()
    );
    let mut clients = Vec::new();
    for _ in 0..150 {
        if let Ok(stream) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await {
            clients.push(stream);
        }
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let log = crebito.log();
    let failures = count(&log, "accept failed");
    assert!(failures >= 1, "{log}");
    assert!(
        failures <= 2,
        "accept failures logged {failures} times:\n{log}"
    );
    // Once clients leave, it serves again.
    drop(clients);
    let response = helpers::post_new_connection(
        &format!("http://127.0.0.1:{port}"),
        1,
        None,
        serde_json::json!({"valor": 1, "tipo": "c", "descricao": "x"}),
    )
    .await;
    assert_eq!(response.0, 200);
}
