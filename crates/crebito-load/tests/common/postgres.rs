//! A throwaway PostgreSQL cluster for the tests that run the real crebito on
//! PostgreSQL: initdb into a temp dir, the server on a unix socket there, no
//! TCP port. Started once per test binary; stopped and removed when the test
//! process exits. When run as root, the server runs as the `postgres` user
//! (PostgreSQL refuses root).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

struct Cluster {
    url: String,
    _wrapper: Mutex<Child>,
}

static CLUSTER: OnceLock<Cluster> = OnceLock::new();

fn bin_dir() -> PathBuf {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|d| {
            d.filter_map(Result::ok)
                .map(|e| e.path().join("bin"))
                .filter(|p| p.join("initdb").exists())
                .collect()
        })
        .unwrap_or_default();
    found.sort();
    found.pop().expect(
        "PostgreSQL server binaries not found under /usr/lib/postgresql/*/bin \
         (Debian: apt-get install postgresql)",
    )
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// `sh -c script`, as the `postgres` user when we are root.
fn shell(script: &str) -> Command {
    let mut cmd = if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--", "sh", "-c", script]);
        c
    } else {
        let mut c = Command::new("sh");
        c.args(["-c", script]);
        c
    };
    cmd.stdin(Stdio::piped());
    cmd
}

fn start() -> Cluster {
    let bin = bin_dir();
    let dir = tempfile::Builder::new()
        .prefix("crebito-load-test-pg-")
        .tempdir()
        .expect("temp dir")
        .keep();
    if is_root() {
        let ok = Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(&dir)
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "cannot chown {} to postgres", dir.display());
    }
    let (bin, dir_s) = (bin.display(), dir.display());
    let init = shell(&format!(
        "'{bin}/initdb' -A trust -U postgres -E UTF8 --no-sync -D '{dir_s}/data' >'{dir_s}/initdb.log' 2>&1"
    ))
    .status()
    .expect("run initdb");
    assert!(init.success(), "initdb failed, see {dir_s}/initdb.log");
    // The wrapper waits for its stdin to close (this process exiting), then
    // stops the server and removes the directory.
    let wrapper = shell(&format!(
        "'{bin}/postgres' -D '{dir_s}/data' -k '{dir_s}' -c listen_addresses= -c max_connections=100 \
         >'{dir_s}/server.log' 2>&1 & pid=$!; read _; kill -INT $pid; wait $pid; rm -rf '{dir_s}'"
    ))
    .spawn()
    .expect("start postgres");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !dir.join(".s.PGSQL.5432").exists() {
        assert!(
            Instant::now() < deadline,
            "PostgreSQL did not start within 30 s, see {dir_s}/server.log"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // The socket appears before the server accepts connections; the ledger's
    // own connection retries cover the gap.
    Cluster {
        url: format!("postgres://postgres@localhost/postgres?host={dir_s}"),
        _wrapper: Mutex::new(wrapper),
    }
}

/// The URL of the throwaway cluster's `postgres` database (fresh: nothing
/// else uses it).
pub fn database_url() -> String {
    CLUSTER.get_or_init(start).url.clone()
}
