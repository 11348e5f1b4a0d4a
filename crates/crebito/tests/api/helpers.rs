//! What every test shares: one throwaway PostgreSQL server per test run,
//! fresh databases, [`TestApp::spawn`] (the real router on a real socket on
//! a fresh ledger), the [`Fixture`]s of the ledger matrix, and a real
//! `crebito` process ([`Crebito`]).
//!
//! Why not the `pgtemp` crate: it runs `initdb`/`postgres` as the current
//! user, and CI runs as root, which PostgreSQL refuses. This helper runs the
//! server as the `postgres` system user when started as root.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use crebito::ledger::{AnyLedger, DatabaseUrl, Ledger, LedgerOptions};

/// Which ledger a test runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// What a case of the ledger matrix (`on_every_ledger!`) starts from, made
/// for one backend; the case's parameter type chooses it.
pub trait Fixture: Sized {
    fn make(backend: Backend) -> impl Future<Output = Self>;
}

/// Runs `case` on a fixture made for `backend`: the body of every test
/// that `on_every_ledger!` generates.
pub async fn run_on<F, C, R>(backend: Backend, case: C)
where
    F: Fixture,
    C: FnOnce(F) -> R,
    R: Future<Output = ()>,
{
    case(F::make(backend).await).await
}

/// The backend itself, for cases that set up their own database.
impl Fixture for Backend {
    async fn make(backend: Backend) -> Self {
        backend
    }
}

/// A served, freshly seeded ledger.
impl Fixture for TestApp {
    async fn make(backend: Backend) -> Self {
        TestApp::spawn(backend).await
    }
}

/// Set this to a PostgreSQL URL of a role that may CREATE DATABASE to use an
/// existing server instead of starting a throwaway one.
pub const ADMIN_URL_ENV: &str = "CREBITO_TEST_DATABASE_URL";

struct Server {
    admin_url: String,
    // The wrapper shell, whose stdin stays open for the life of the test
    // process: when it closes (the process exits), the wrapper stops the
    // server and removes its data directory.
    _wrapper: Mutex<Option<Child>>,
}

static SERVER: OnceLock<Server> = OnceLock::new();
static COUNTER: AtomicUsize = AtomicUsize::new(0);

fn postgres_bin_dir() -> PathBuf {
    if let Ok(path) = which("initdb") {
        // A symlink on PATH (e.g. /usr/local/bin/initdb) leads to the
        // directory that holds the other programs too.
        let path = path.canonicalize().unwrap_or(path);
        return path.parent().unwrap().to_path_buf();
    }
    let mut candidates: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|dir| {
            dir.filter_map(Result::ok)
                .map(|e| e.path().join("bin"))
                .filter(|p| p.join("initdb").exists())
                .collect()
        })
        .unwrap_or_default();
    candidates.sort_by_key(|p| {
        p.parent()
            .and_then(|v| v.file_name())
            .and_then(|v| v.to_str())
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(0)
    });
    candidates.pop().unwrap_or_else(|| {
        panic!(
            "PostgreSQL server binaries (initdb, postgres) not found on PATH or under \
             /usr/lib/postgresql/*/bin. Install them (Debian: apt-get install postgresql) \
             or set {ADMIN_URL_ENV} to a server the tests may create databases on."
        )
    })
}

fn which(name: &str) -> Result<PathBuf, ()> {
    std::env::var_os("PATH")
        .and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|dir| dir.join(name))
                .find(|p| p.is_file())
        })
        .ok_or(())
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// Runs `program args` as the `postgres` user when we are root.
fn as_server_user(program: &Path) -> Command {
    if is_root() {
        let mut cmd = Command::new("runuser");
        cmd.args(["-u", "postgres", "--"]).arg(program);
        cmd
    } else {
        Command::new(program)
    }
}

fn start_server() -> Server {
    if let Ok(url) = std::env::var(ADMIN_URL_ENV) {
        return Server {
            admin_url: url,
            _wrapper: Mutex::new(None),
        };
    }
    let dir = server_dir();
    let data = dir.join("data");
    initdb(&data);
    // The superuser the tests use is trusted; every other role must give
    // its password, so that a wrong one is refused as in production.
    std::fs::write(
        data.join("pg_hba.conf"),
        "local all postgres trust\nlocal all all scram-sha-256\n",
    )
    .expect("write pg_hba.conf");
    let child = start_postgres(&dir, &data);
    let admin_url = format!(
        "postgres://postgres@localhost/postgres?host={}",
        dir.display()
    );
    Server {
        admin_url,
        _wrapper: Mutex::new(Some(child)),
    }
}

/// A new temporary directory for one PostgreSQL server (its data and its
/// socket), owned by the `postgres` user when we are root. It is removed
/// when the server started in it by [`start_postgres`] stops.
pub fn server_dir() -> PathBuf {
    let dir = tempfile::Builder::new()
        .prefix("crebito-test-pg-")
        .tempdir()
        .expect("create temp dir")
        .keep();
    chown_to_server_user(&dir);
    dir
}

/// Gives `path` (recursively) to the `postgres` user when we are root.
pub fn chown_to_server_user(path: &Path) {
    if is_root() {
        let status = Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(path)
            .status()
            .expect("chown");
        assert!(
            status.success(),
            "cannot chown {} to postgres",
            path.display()
        );
    }
}

/// Runs `bin` (a PostgreSQL program such as `pg_ctl`) as the server's user
/// with `args`; panics with its output when it fails.
pub fn run_server_program(bin: &str, args: &[&std::ffi::OsStr]) {
    let out = as_server_user(&postgres_bin_dir().join(bin))
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run {bin}: {e}"));
    assert!(
        out.status.success(),
        "{bin} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `initdb` of a new cluster in `data`, superuser `postgres`, trusted.
pub fn initdb(data: &Path) {
    run_server_program(
        "initdb",
        &[
            "-A".as_ref(),
            "trust".as_ref(),
            "-U".as_ref(),
            "postgres".as_ref(),
            "-E".as_ref(),
            "UTF8".as_ref(),
            "--no-sync".as_ref(),
            "-D".as_ref(),
            data.as_os_str(),
        ],
    );
}

/// Starts PostgreSQL on `data`, listening only on a unix socket in `dir`,
/// and waits (at most 30 s) until it accepts connections. The server runs under a
/// wrapper shell that waits for its stdin to close — when the returned
/// child is dropped, or our process exits — then stops the server and
/// removes `dir`.
pub fn start_postgres(dir: &Path, data: &Path) -> Child {
    let script = format!(
        "'{postgres}' -D '{data}' -k '{dir}' -c listen_addresses= -c max_connections=200 \
         > '{dir}/server.log' 2>&1 & pid=$!; read _; kill -INT $pid; wait $pid; rm -rf '{dir}'",
        postgres = postgres_bin_dir().join("postgres").display(),
        data = data.display(),
        dir = dir.display(),
    );
    let child: Child = if is_root() {
        Command::new("runuser")
            .args(["-u", "postgres", "--", "sh", "-c", &script])
            .stdin(Stdio::piped())
            .spawn()
    } else {
        Command::new("sh")
            .args(["-c", &script])
            .stdin(Stdio::piped())
            .spawn()
    }
    .expect("start postgres");
    let deadline = Instant::now() + Duration::from_secs(30);
    let ready = || {
        dir.join(".s.PGSQL.5432").exists()
            && Command::new(postgres_bin_dir().join("pg_isready"))
                .args(["-q", "-U", "postgres", "-h"])
                .arg(dir)
                .status()
                .is_ok_and(|status| status.success())
    };
    while !ready() {
        if Instant::now() > deadline {
            let log = std::fs::read_to_string(dir.join("server.log")).unwrap_or_default();
            panic!("PostgreSQL did not start within 30 s:\n{log}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child
}

/// Creates a fresh, empty database and returns its URL.
pub async fn fresh_postgres_database() -> String {
    let server = SERVER.get_or_init(start_server);
    let name = format!(
        "crebito_test_{}_{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    let (client, connection) = loop {
        match tokio_postgres::connect(&server.admin_url, tokio_postgres::NoTls).await {
            Ok(pair) => break pair,
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("cannot connect to the test PostgreSQL: {e}"),
        }
    };
    let task = tokio::spawn(connection);
    client
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .expect("create test database");
    drop(client);
    let _ = task.await;
    replace_database(&server.admin_url, &name)
}

/// `url` with its user and password replaced:
/// `postgres://OLD@host/db?q` -> `postgres://USER:PASSWORD@host/db?q`.
pub fn with_credentials(url: &str, user: &str, password: &str) -> String {
    let scheme_end = url.find("://").map(|i| i + 3).unwrap_or(0);
    let rest = &url[scheme_end..];
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let host = match rest[..authority_end].rfind('@') {
        Some(at) => &rest[at + 1..],
        None => rest,
    };
    format!("{}{user}:{password}@{host}", &url[..scheme_end])
}

fn replace_database(url: &str, name: &str) -> String {
    // postgres://user@host/DB?query -> postgres://user@host/NAME?query
    let (before_query, query) = match url.split_once('?') {
        Some((a, q)) => (a, format!("?{q}")),
        None => (url, String::new()),
    };
    let scheme_end = before_query.find("://").map(|i| i + 3).unwrap_or(0);
    let base = match before_query[scheme_end..].find('/') {
        Some(i) => &before_query[..scheme_end + i],
        None => before_query,
    };
    format!("{base}/{name}{query}")
}

/// A database URL for a fresh, empty ledger of `backend`, plus whatever must
/// live as long as it (the SQLite temp dir).
pub async fn fresh_database(backend: Backend) -> (String, Option<tempfile::TempDir>) {
    match backend {
        Backend::Postgres => (fresh_postgres_database().await, None),
        Backend::Sqlite => {
            let (dir, _, url) = temp_sqlite_file();
            (url, Some(dir))
        }
    }
}

/// A SQLite ledger file that does not exist yet, in a temp dir of its own:
/// the dir (keep it alive as long as the file is used), the file's path
/// and its `sqlite://` URL.
pub fn temp_sqlite_file() -> (tempfile::TempDir, PathBuf, String) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("ledger.db");
    let url = format!("sqlite://{}", path.display());
    (dir, path, url)
}

/// A file at a `sqlite://` URL that holds no crebito ledger (no
/// `schema_migrations` table recording crebito's migration 1), alone in a
/// temp dir of its own (kept alive with it).
pub struct NotALedger {
    _dir: tempfile::TempDir,
    /// The file's absolute path, symbolic links resolved.
    pub path: PathBuf,
    /// Whether it holds nothing at all (0 bytes, or a SQLite database
    /// without any table): `serve` creates a new ledger in it.
    pub holds_nothing: bool,
    /// Words of the reason a command that refuses it gives.
    pub reason: &'static str,
}

impl NotALedger {
    /// Every kind: an empty file, a SQLite database without any table,
    /// another program's SQLite database, one with a `schema_migrations`
    /// table that is not crebito's, and a file that is not SQLite at all.
    pub fn every_kind() -> Vec<NotALedger> {
        let make = |name: &str, holds_nothing, reason, fill: &dyn Fn(&Path)| {
            let dir = tempfile::tempdir().expect("temp dir");
            let path = dir.path().canonicalize().unwrap().join(name);
            fill(&path);
            NotALedger {
                _dir: dir,
                path,
                holds_nothing,
                reason,
            }
        };
        let sql = |sql: &'static str| {
            move |path: &Path| {
                let conn = rusqlite::Connection::open(path).unwrap();
                conn.execute_batch(sql).unwrap();
            }
        };
        vec![
            make("empty.db", true, "the file is empty (0 bytes)", &|path| {
                std::fs::write(path, b"").unwrap()
            }),
            make(
                "no-tables.db",
                true,
                "a SQLite database without any table",
                &sql("PRAGMA user_version = 7"),
            ),
            make(
                "notes.db",
                false,
                "not a crebito ledger",
                &sql(
                    "CREATE TABLE notes (id INTEGER PRIMARY KEY, text TEXT NOT NULL);
                      INSERT INTO notes (text) VALUES ('keep me')",
                ),
            ),
            make(
                "rails.db",
                false,
                "not a crebito ledger",
                &sql("CREATE TABLE schema_migrations (version TEXT PRIMARY KEY);
                      INSERT INTO schema_migrations VALUES ('20240101000000')"),
            ),
            make("notes.txt", false, "not a SQLite database", &|path| {
                std::fs::write(path, "not a database\n".repeat(200)).unwrap()
            }),
        ]
    }

    /// Its `sqlite://` URL.
    pub fn url(&self) -> String {
        format!("sqlite://{}", self.path.display())
    }

    /// Asserts what every refusal of this file shows: `out` (a command's
    /// output or log) names its absolute path and why, and its directory is
    /// still `before` ([`NotALedger::files`]).
    pub fn assert_refused(&self, out: &str, before: &std::collections::BTreeMap<String, Vec<u8>>) {
        let name = self.path.display();
        assert!(
            out.contains(&format!("no SQLite ledger at {name}: ")),
            "{name}: {out}"
        );
        assert!(out.contains(self.reason), "{name}: {out}");
        assert!(self.files() == *before, "{name} was changed: {out}");
    }

    /// Every file in its directory with its bytes: a command that left
    /// it as it was left this unchanged (no table added, no journal or
    /// lock file beside it).
    pub fn files(&self) -> std::collections::BTreeMap<String, Vec<u8>> {
        std::fs::read_dir(self.path.parent().unwrap())
            .unwrap()
            .map(|entry| {
                let entry = entry.unwrap();
                let name = entry.file_name().to_string_lossy().into_owned();
                (name, std::fs::read(entry.path()).unwrap())
            })
            .collect()
    }
}

/// Runs `sql` on the database at `url` behind the ledger's back, with the
/// checks on stored codes off (a kind's and an outcome's, dropped on
/// PostgreSQL; every check ignored on SQLite), to damage a ledger on
/// purpose.
pub async fn execute_unchecked(url: &str, sql: &str) {
    if let Some(path) = url.strip_prefix("sqlite://") {
        let conn = rusqlite::Connection::open(path).expect("open the SQLite file");
        conn.execute_batch(&format!("PRAGMA ignore_check_constraints = ON; {sql}"))
            .expect("damage the SQLite ledger");
        return;
    }
    admin_session(url)
        .await
        .batch_execute(&format!(
            "ALTER DOMAIN posting_kind DROP CONSTRAINT IF EXISTS posting_kind_check;
             ALTER TABLE idempotency_keys DROP CONSTRAINT IF EXISTS idempotency_keys_outcome_check;
             {sql}"
        ))
        .await
        .expect("damage the PostgreSQL ledger");
}

/// A session on the PostgreSQL database at `url`, beside the ledger's own
/// connections (to hold locks, tamper, or look at server processes).
pub async fn admin_session(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .expect("connect to the test PostgreSQL");
    tokio::spawn(connection);
    client
}

/// Locks account `account`'s row from `session` (`SELECT … FOR UPDATE` in
/// a transaction it leaves open): postings to that account wait until the
/// session ends the transaction (`ROLLBACK` or `COMMIT`).
pub async fn hold_account_row(session: &tokio_postgres::Client, account: i32) {
    session
        .batch_execute(&format!(
            "BEGIN; SELECT * FROM accounts WHERE id = {account} FOR UPDATE"
        ))
        .await
        .expect("lock the account's row");
}

/// Opens the ledger at `url` (applying migrations).
pub async fn open_ledger(url: &str) -> AnyLedger {
    let url: DatabaseUrl = url.parse().expect("database url");
    AnyLedger::open(
        &url,
        &LedgerOptions {
            pool_size: 8,
            acquire_timeout: Duration::from_secs(10),
            ..LedgerOptions::default()
        },
    )
    .await
    .expect("open ledger")
}

/// Serves the real router over `ledger` with the real server
/// (`crebito::server::serve`, default limits) on a new loopback port, in
/// the background; returns its base URL, `http://127.0.0.1:PORT`.
pub async fn serve<L: Ledger>(ledger: Arc<L>) -> String {
    let limits = crebito::server::Limits::default();
    let bound = crebito::server::bind(&"127.0.0.1:0".parse().unwrap())
        .await
        .expect("bind");
    let crebito::server::Bound::Tcp(listener) = &bound else {
        unreachable!("bound a TCP address")
    };
    let base = format!("http://{}", listener.local_addr().unwrap());
    let app = crebito::http::router(ledger);
    tokio::spawn(async move {
        crebito::server::serve(bound, app, limits, std::future::pending())
            .await
            .expect("serve");
    });
    base
}

/// The real router on a real TCP socket, on a fresh ledger.
pub struct TestApp {
    /// `http://127.0.0.1:PORT`
    pub base: String,
    /// The ledger's database URL (for a second instance or an audit).
    pub database_url: String,
    pub client: reqwest::Client,
    pub ledger: Arc<AnyLedger>,
    _dir: Option<tempfile::TempDir>,
}

impl TestApp {
    /// Serves the real router on a fresh, seeded database of `backend`.
    pub async fn spawn(backend: Backend) -> TestApp {
        let (url, dir) = fresh_database(backend).await;
        let mut app = Self::spawn_on(&url).await;
        app._dir = dir;
        app
    }

    /// Serves another instance (its own pool) on an existing database.
    pub async fn spawn_on(url: &str) -> TestApp {
        let ledger = Arc::new(open_ledger(url).await);
        let base = serve(ledger.clone()).await;
        TestApp {
            base,
            database_url: url.to_owned(),
            client: reqwest::Client::new(),
            ledger,
            _dir: None,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// POSTs a raw JSON body to account `id`; returns status and parsed body.
    pub async fn post_raw(&self, id: &str, body: &str) -> (u16, serde_json::Value) {
        let response = self
            .client
            .post(self.url(&format!("/clientes/{id}/transacoes")))
            .header("content-type", "application/json")
            .body(body.to_owned())
            .send()
            .await
            .expect("send");
        read(response).await
    }

    /// POSTs one transaction to account `id`.
    pub async fn post(
        &self,
        id: i64,
        valor: i64,
        tipo: &str,
        descricao: &str,
    ) -> (u16, serde_json::Value) {
        let body = serde_json::json!({"valor": valor, "tipo": tipo, "descricao": descricao});
        self.post_raw(&id.to_string(), &body.to_string()).await
    }

    /// GETs the statement of account `id`.
    pub async fn statement(&self, id: &str) -> (u16, serde_json::Value) {
        let response = self
            .client
            .get(self.url(&format!("/clientes/{id}/extrato")))
            .send()
            .await
            .expect("send");
        read(response).await
    }
}

/// POSTs `body` to account `id` at `base` on a brand-new connection (like
/// one virtual user of the official test), with an `Idempotency-Key` when
/// `key` is given; returns status and parsed body.
pub async fn post_new_connection(
    base: &str,
    id: i64,
    key: Option<&str>,
    body: serde_json::Value,
) -> (u16, serde_json::Value) {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let mut request = client
        .post(format!("{base}/clientes/{id}/transacoes"))
        .header("content-type", "application/json");
    if let Some(key) = key {
        request = request.header("idempotency-key", key);
    }
    let response = request.body(body.to_string()).send().await.expect("send");
    read(response).await
}

/// Status and JSON body of a response. Asserts the content type: JSON for
/// a success, problem details (RFC 9457, docs/contract.md §2.5) for an
/// error, whose `type`, `title`, `status` and `detail` it also checks.
pub async fn read(response: reqwest::Response) -> (u16, serde_json::Value) {
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let bytes = response.bytes().await.expect("body");
    let expected = if status < 400 {
        "application/json"
    } else {
        "application/problem+json"
    };
    assert_eq!(
        content_type,
        expected,
        "status {status}, body {:?}",
        String::from_utf8_lossy(&bytes)
    );
    let body: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_else(|e| {
        panic!(
            "status {status}: body is not JSON ({e}): {:?}",
            String::from_utf8_lossy(&bytes)
        )
    });
    if status >= 400 {
        assert_problem(status, &body);
    }
    (status, body)
}

/// Asserts that `body` is a problem details object (RFC 9457) of `status`:
/// a `urn:crebito:problem:` type, a title, the status and a detail.
pub fn assert_problem(status: u16, body: &serde_json::Value) {
    let kind = body["type"].as_str().unwrap_or_default();
    assert!(
        kind.starts_with("urn:crebito:problem:") && kind.len() > 20,
        "{status}: {body}"
    );
    assert!(
        body["title"].as_str().is_some_and(|t| !t.is_empty()),
        "{body}"
    );
    assert_eq!(body["status"], status, "{body}");
    assert!(
        body["detail"].as_str().is_some_and(|d| !d.is_empty()),
        "{body}"
    );
}

/// A `crebito` process started by a test, its log (stderr) collected as it
/// is written; killed when dropped.
pub struct Crebito {
    child: Child,
    log: Arc<Mutex<Vec<u8>>>,
    /// The thread copying stderr into `log`; it ends at the pipe's end.
    reader: Option<std::thread::JoinHandle<()>>,
}

/// A free loopback port (bound, then released) for a `crebito serve` to
/// listen on.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Crebito {
    /// Starts `crebito serve --pool-size 4 EXTRA…` (a `--pool-size` in
    /// EXTRA replaces the 4) on `database_url` on a free loopback port and
    /// waits until its `/health` answers 200; returns it with its base URL.
    pub async fn serve(database_url: &str, extra: &[&str]) -> (Crebito, String) {
        Self::serve_within(database_url, extra, Duration::from_secs(30)).await
    }

    /// [`Crebito::serve`], failing the test unless `/health` answers 200
    /// within `within` (a start that retries its database for longer and
    /// then exits does not).
    pub async fn serve_within(
        database_url: &str,
        extra: &[&str],
        within: Duration,
    ) -> (Crebito, String) {
        let listen = format!("127.0.0.1:{}", free_port());
        let mut args = vec!["serve", "--listen", &listen];
        // A --pool-size in EXTRA replaces the default (clap takes a flag once).
        if !extra.contains(&"--pool-size") {
            args.extend(["--pool-size", "4"]);
        }
        args.extend_from_slice(extra);
        let process = Crebito::spawn(&args, &[("DATABASE_URL", database_url)]);
        let base = format!("http://{listen}");
        let deadline = Instant::now() + within;
        loop {
            if let Ok(r) = reqwest::get(format!("{base}/health")).await {
                if r.status() == 200 {
                    return (process, base);
                }
            }
            assert!(
                Instant::now() < deadline,
                "crebito did not become healthy within {within:?}:\n{}",
                process.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Starts `crebito ARGS` with `RUST_LOG=info`, `NO_COLOR` unset and
    /// `env` added (it may override both), stdout discarded and stderr
    /// collected.
    pub fn spawn(args: &[&str], env: &[(&str, &str)]) -> Crebito {
        let mut command = Command::new(env!("CARGO_BIN_EXE_crebito"));
        command.args(args).envs(env.iter().copied());
        Self::spawn_command(&mut command)
    }

    /// Starts `command` (which runs crebito, e.g. through a shell) like
    /// [`Crebito::spawn`].
    pub fn spawn_command(command: &mut Command) -> Crebito {
        // Defaults that the caller's own environment overrides.
        let set = |name: &str| command.get_envs().any(|(key, _)| key == name);
        let (rust_log, no_color) = (set("RUST_LOG"), set("NO_COLOR"));
        if !rust_log {
            command.env("RUST_LOG", "info");
        }
        if !no_color {
            command.env_remove("NO_COLOR");
        }
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn crebito");
        let mut stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let sink = log.clone();
        let reader = std::thread::spawn(move || {
            let mut buffer = [0u8; 4096];
            while let Ok(n @ 1..) = std::io::Read::read(&mut stderr, &mut buffer) {
                sink.lock().unwrap().extend_from_slice(&buffer[..n]);
            }
        });
        Crebito {
            child,
            log,
            reader: Some(reader),
        }
    }

    /// Everything written to stderr so far, as raw bytes.
    pub fn log_bytes(&self) -> Vec<u8> {
        self.log.lock().unwrap().clone()
    }

    /// Everything written to stderr so far.
    pub fn log(&self) -> String {
        String::from_utf8_lossy(&self.log_bytes()).into_owned()
    }

    /// Waits until the log holds `needle`; returns the log. Panics with the
    /// log after `within`.
    pub fn wait_for_log(&self, needle: &str, within: Duration) -> String {
        let deadline = Instant::now() + within;
        loop {
            let log = self.log();
            if log.contains(needle) {
                return log;
            }
            assert!(
                Instant::now() < deadline,
                "no {needle:?} in crebito's log within {within:?}:\n{log}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits for the process to exit; returns its exit code. Its whole log
    /// has been collected by then.
    pub fn wait(&mut self, within: Duration) -> Option<i32> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait for crebito") {
                // The process is gone, but what it wrote last may still be
                // in the pipe: read it to the end first.
                if let Some(reader) = self.reader.take() {
                    let _ = reader.join();
                }
                return status.code();
            }
            assert!(
                Instant::now() < deadline,
                "crebito still running after {within:?}:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Crebito {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

mod tests {
    #[test]
    fn with_credentials_replaces_only_the_user_and_password() {
        assert_eq!(
            super::with_credentials("postgres://postgres@localhost/db1?host=/tmp/x", "u", "p"),
            "postgres://u:p@localhost/db1?host=/tmp/x"
        );
        assert_eq!(
            super::with_credentials("postgres://a:b@h:5/db", "u", "p"),
            "postgres://u:p@h:5/db"
        );
        assert_eq!(
            super::with_credentials("postgres://h/db", "u", "p"),
            "postgres://u:p@h/db"
        );
    }

    #[test]
    fn replace_database_keeps_query() {
        assert_eq!(
            super::replace_database("postgres://u@localhost/postgres?host=/tmp/x", "db1"),
            "postgres://u@localhost/db1?host=/tmp/x"
        );
        assert_eq!(
            super::replace_database("postgres://u:p@h:5/postgres", "db1"),
            "postgres://u:p@h:5/db1"
        );
        assert_eq!(
            super::replace_database("postgres://h", "db1"),
            "postgres://h/db1"
        );
    }
}
