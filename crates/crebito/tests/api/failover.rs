//! What an instance does while its PostgreSQL fails over (docs/ha.md), on
//! real servers of the test's own: a primary with a synchronous streaming
//! standby that is promoted, a round trip cancelled mid-statement, and a
//! connection lost after the statement was sent.

use std::path::PathBuf;
use std::process::Child;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crebito::domain::{AccountId, Amount, Description, Kind, Transaction};
use crebito::ledger::batch::{ApplyBatch, Posting};
use crebito::ledger::postgres::PostgresLedger;
use crebito::ledger::{Ledger, LedgerOptions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, UnixStream};

use crate::helpers::{
    admin_session, fresh_postgres_database, hold_account_row, initdb, post_new_connection,
    run_server_program, serve, server_dir, start_postgres,
};

/// A PostgreSQL server of the test's own (not the shared one: these tests
/// change server-wide settings), on a unix socket in its directory;
/// stopped and removed when dropped.
struct Node {
    dir: PathBuf,
    _server: Child,
}

impl Node {
    /// A new cluster, started.
    fn primary() -> Node {
        let dir = server_dir();
        let data = dir.join("data");
        initdb(&data);
        let server = start_postgres(&dir, &data);
        Node {
            dir,
            _server: server,
        }
    }

    /// A streaming standby of this node: cloned with pg_basebackup
    /// (`-R` writes its primary_conninfo and standby.signal), started.
    fn standby(&self) -> Node {
        let dir = server_dir();
        let data = dir.join("data");
        run_server_program(
            "pg_basebackup",
            &[
                "-h".as_ref(),
                self.dir.as_os_str(),
                "-U".as_ref(),
                "postgres".as_ref(),
                "-D".as_ref(),
                data.as_os_str(),
                "-R".as_ref(),
                "-X".as_ref(),
                "stream".as_ref(),
                "--checkpoint=fast".as_ref(),
            ],
        );
        let server = start_postgres(&dir, &data);
        Node {
            dir,
            _server: server,
        }
    }

    /// `pg_ctl promote`, waiting until it takes writes.
    fn promote(&self) {
        let data = self.dir.join("data");
        run_server_program(
            "pg_ctl",
            &[
                "promote".as_ref(),
                "-w".as_ref(),
                "-t".as_ref(),
                "30".as_ref(),
                "-D".as_ref(),
                data.as_os_str(),
            ],
        );
    }

    /// The superuser's connection string for this node alone.
    fn conninfo(&self) -> String {
        format!("host={} user=postgres dbname=postgres", self.dir.display())
    }

    /// Runs `sql` and returns the first column of its rows.
    async fn query(&self, sql: &str) -> Vec<Option<String>> {
        query(&self.conninfo(), sql).await
    }
}

async fn query(conninfo: &str, sql: &str) -> Vec<Option<String>> {
    let (client, connection) = tokio_postgres::connect(conninfo, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("connect to {conninfo}: {e}"));
    tokio::spawn(connection);
    let mut rows = Vec::new();
    for message in client.simple_query(sql).await.expect(sql) {
        if let tokio_postgres::SimpleQueryMessage::Row(row) = message {
            rows.push(row.get(0).map(str::to_owned));
        }
    }
    rows
}

/// Polls `condition` every 50 ms for up to 30 s.
async fn eventually<F, Fut>(what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(30);
    while !condition().await {
        assert!(Instant::now() < deadline, "not within 30 s: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn credit(valor: i64, descricao: &str) -> serde_json::Value {
    serde_json::json!({"valor": valor, "tipo": "c", "descricao": descricao})
}

async fn health(base: &str) -> u16 {
    reqwest::get(format!("{base}/health"))
        .await
        .expect("GET /health")
        .status()
        .as_u16()
}

/// How many transactions with `description` `node` holds.
async fn stored(node: &Node, description: &str) -> usize {
    let rows = node
        .query(&format!(
            "SELECT count(*) FROM transactions WHERE description = '{description}'"
        ))
        .await;
    rows[0].as_deref().unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_promoted_standby_takes_over_without_a_restart_and_keeps_every_acknowledged_posting() {
    let primary = Node::primary();
    let standby = primary.standby();
    // Synchronous replication: a commit is acknowledged once the standby
    // has it.
    primary
        .query("ALTER SYSTEM SET synchronous_standby_names = '*'")
        .await;
    primary.query("SELECT pg_reload_conf()").await;
    eventually("the standby is synchronous", || async {
        primary
            .query("SELECT sync_state FROM pg_stat_replication")
            .await
            == [Some("sync".to_owned())]
    })
    .await;

    // The instance knows both hosts and wants the writable one.
    let url = format!(
        "host={},{} user=postgres dbname=postgres target_session_attrs=read-write",
        primary.dir.display(),
        standby.dir.display()
    );
    let options = LedgerOptions {
        pool_size: 2,
        ..LedgerOptions::default()
    };
    let ledger = Arc::new(PostgresLedger::connect(&url, &options).await.unwrap());
    let base = serve(ledger.clone()).await;
    let mut acknowledged = Vec::new();
    for i in 0..10 {
        let description = format!("antes{i}");
        let (status, body) =
            post_new_connection(&base, 1, Some(&description), credit(100, &description)).await;
        assert_eq!(status, 200, "{body}");
        acknowledged.push(description);
    }
    assert_eq!(health(&base).await, 200);

    // The primary is fenced: it keeps running but takes no writes, for
    // its open sessions too (the instance's pooled connections).
    primary
        .query("ALTER SYSTEM SET default_transaction_read_only = on")
        .await;
    primary.query("SELECT pg_reload_conf()").await;
    eventually("the primary is read-only", || async {
        primary.query("SHOW transaction_read_only").await == [Some("on".to_owned())]
    })
    .await;
    // No host takes writes now: not healthy, and a posting is refused
    // before anything could be applied.
    assert_eq!(health(&base).await, 503);
    let (status, body) = post_new_connection(&base, 1, Some("durante"), credit(7, "durante")).await;
    assert_eq!(status, 503, "{body}");

    standby.promote();
    // Without a restart, the instance reaches the new primary: the
    // pooled connections to the fenced one are discarded (never reused),
    // and the retry of the refused posting, with its key, is applied.
    let (status, body) = post_new_connection(&base, 1, Some("durante"), credit(7, "durante")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["saldo"], 1007);
    acknowledged.push("durante".to_owned());
    assert_eq!(health(&base).await, 200);
    for i in 0..5 {
        let description = format!("depois{i}");
        let (status, body) =
            post_new_connection(&base, 1, Some(&description), credit(100, &description)).await;
        assert_eq!(status, 200, "{body}");
        acknowledged.push(description);
    }

    // Every acknowledged posting is on the new primary exactly once, and
    // the fenced one took none after it was fenced.
    for description in &acknowledged {
        assert_eq!(stored(&standby, description).await, 1, "{description}");
    }
    assert_eq!(stored(&primary, "durante").await, 0);
    let report = ledger.audit().await.unwrap();
    assert!(report.holds(), "{report:?}");
}

/// A ledger on a fresh PostgreSQL database whose pool holds one
/// connection (5 s to get it, 30 s per statement), and the database's URL.
async fn one_connection_ledger() -> (PostgresLedger, String) {
    let url = fresh_postgres_database().await;
    let options = LedgerOptions {
        pool_size: 1,
        acquire_timeout: Duration::from_secs(5),
        query_timeout: Duration::from_secs(30),
        ..LedgerOptions::default()
    };
    let ledger = PostgresLedger::connect(&url, &options).await.unwrap();
    (ledger, url)
}

/// A posting's round trip belongs to its batch (a request that gives up
/// only stops waiting for its batch's answer); when the batch's own round
/// trip is dropped mid-flight — the instance stopping, say — its
/// connection must not go back to the pool with the statement in flight.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cancelled_round_trip_does_not_give_its_busy_connection_back_to_the_pool() {
    let (ledger, url) = one_connection_ledger().await;
    // Another session holds account 1's row, so a posting to it waits.
    let admin = admin_session(&url).await;
    hold_account_row(&admin, 1).await;
    let transaction = Transaction {
        amount: Amount::new(100).unwrap(),
        kind: Kind::Credit,
        description: Description::new("cancelada").unwrap(),
    };
    let batch = [Posting::new(AccountId::new(1).unwrap(), &transaction, None)];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    // The round trip is dropped while its statement waits.
    let abandoned = tokio::time::timeout(
        Duration::from_millis(300),
        ledger.batches().apply_batch(&batch, deadline),
    )
    .await;
    assert!(abandoned.is_err(), "the batch should still be waiting");
    // The pool's only connection still has that statement in flight; had it
    // gone back to the pool, this read would wait behind it.
    let statement = tokio::time::timeout(
        Duration::from_secs(3),
        ledger.statement(AccountId::new(2).unwrap()),
    )
    .await;
    admin.batch_execute("ROLLBACK").await.unwrap();
    let statement = statement.expect("a read after a cancelled round trip answers at once");
    assert_eq!(statement.unwrap().balance, 0);
}

/// A read whose caller goes away mid-round-trip (its client hung up) is
/// finished by its own task, and its connection goes back to the pool: it
/// is neither closed nor replaced, so a storm of hang-ups on statements
/// does not churn connections.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_abandoned_read_keeps_its_connection_in_the_pool() {
    let (ledger, url) = one_connection_ledger().await;
    let admin = admin_session(&url).await;
    let sessions = || async {
        let rows = admin
            .query(
                "SELECT pid FROM pg_stat_activity
                 WHERE datname = current_database() AND pid <> pg_backend_pid()
                 ORDER BY pid",
                &[],
            )
            .await
            .unwrap();
        rows.iter()
            .map(|row| row.get::<_, i32>(0))
            .collect::<Vec<_>>()
    };
    let account = AccountId::new(1).unwrap();
    ledger.statement(account).await.unwrap();
    let before = sessions().await;
    assert_eq!(before.len(), 1, "the pool's one connection: {before:?}");
    // The statement waits behind a lock on the transactions table, and its
    // caller gives up meanwhile.
    admin
        .batch_execute("BEGIN; LOCK TABLE transactions IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    let abandoned =
        tokio::time::timeout(Duration::from_millis(300), ledger.statement(account)).await;
    assert!(abandoned.is_err(), "the read should still be waiting");
    admin.batch_execute("ROLLBACK").await.unwrap();
    let statement = tokio::time::timeout(Duration::from_secs(3), ledger.statement(account))
        .await
        .expect("the next read answers at once");
    assert_eq!(statement.unwrap().balance, 0);
    assert_eq!(
        sessions().await,
        before,
        "the abandoned read's connection was closed and another opened"
    );
}

/// A TCP proxy to a PostgreSQL unix socket that, when told, forwards the
/// client's next message to the server, lets the server answer it in full,
/// and hangs up on the client without passing the answer on: the statement
/// ran, the client cannot know.
struct AnswerEater {
    port: u16,
    eat_next: Arc<AtomicBool>,
}

impl AnswerEater {
    async fn start(socket: PathBuf) -> AnswerEater {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let eat_next = Arc::new(AtomicBool::new(false));
        let flag = eat_next.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let server = UnixStream::connect(&socket).await.unwrap();
                tokio::spawn(Self::relay(client, server, flag.clone()));
            }
        });
        AnswerEater { port, eat_next }
    }

    async fn relay(
        mut client: tokio::net::TcpStream,
        mut server: UnixStream,
        eat: Arc<AtomicBool>,
    ) {
        let (mut to_server, mut to_client) = ([0u8; 8192], [0u8; 8192]);
        loop {
            tokio::select! {
                read = client.read(&mut to_server) => {
                    let Ok(n @ 1..) = read else { return };
                    server.write_all(&to_server[..n]).await.unwrap();
                    if eat.swap(false, Ordering::SeqCst) {
                        Self::swallow_until_ready(&mut server).await;
                        return; // both ends closed, the answer never sent
                    }
                }
                read = server.read(&mut to_client) => {
                    let Ok(n @ 1..) = read else { return };
                    if client.write_all(&to_client[..n]).await.is_err() {
                        return;
                    }
                }
            }
        }
    }

    /// Reads the server's messages (a tag byte and a 32-bit length each)
    /// until ReadyForQuery (`Z`): the statement has run and committed.
    async fn swallow_until_ready(server: &mut UnixStream) {
        let mut pending = Vec::new();
        let mut chunk = [0u8; 8192];
        loop {
            while pending.len() >= 5 {
                let length = u32::from_be_bytes(pending[1..5].try_into().unwrap()) as usize;
                if pending.len() < 1 + length {
                    break;
                }
                if pending[0] == b'Z' {
                    return;
                }
                pending.drain(..1 + length);
            }
            let n = server.read(&mut chunk).await.unwrap();
            assert!(n > 0, "the server closed before answering");
            pending.extend_from_slice(&chunk[..n]);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_posting_whose_answer_was_lost_is_503_and_its_retry_with_the_key_resolves_it_once() {
    let node = Node::primary();
    let proxy = AnswerEater::start(node.dir.join(".s.PGSQL.5432")).await;
    let through_proxy = format!(
        "host=127.0.0.1 port={} user=postgres dbname=postgres",
        proxy.port
    );
    let options = LedgerOptions {
        pool_size: 1,
        ..LedgerOptions::default()
    };
    let ledger = PostgresLedger::connect(&through_proxy, &options)
        .await
        .unwrap();
    let base = serve(Arc::new(ledger)).await;

    proxy.eat_next.store(true, Ordering::SeqCst);
    let (status, body) = post_new_connection(&base, 1, Some("k1"), credit(500, "perdida")).await;
    // The connection was lost after the statement was sent: the outcome is
    // unknown to the instance, so it answers 503, never 500 or 200...
    assert_eq!(status, 503, "{body}");
    // ...though the posting was applied.
    let count = |sql: &'static str| {
        let node = &node;
        async move { node.query(sql).await[0].clone().unwrap() }
    };
    let applied = "SELECT count(*) FROM transactions WHERE description = 'perdida'";
    assert_eq!(count(applied).await, "1");
    // The client's retry with the same key gets the recorded answer, and the
    // posting stays stored once.
    let (status, body) = post_new_connection(&base, 1, Some("k1"), credit(500, "perdida")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["saldo"], 500);
    assert_eq!(count(applied).await, "1");
    assert_eq!(
        count("SELECT balance::text FROM accounts WHERE id = 1").await,
        "500"
    );
}
