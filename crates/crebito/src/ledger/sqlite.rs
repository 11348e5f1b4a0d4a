//! The embedded SQLite ledger: the zero-setup default (`cargo run`).
//!
//! * Durable: WAL journal with `synchronous=FULL`, so an acknowledged
//!   posting survives a crash of the process or the machine.
//! * Postings go through the instance's posting queue ([`super::batch`],
//!   one queue per instance: the file has one writer anyway). A batch is one
//!   `BEGIN IMMEDIATE` transaction: the write lock is taken before any
//!   balance is read, so concurrent batches — from this process or another
//!   one sharing the file — are serialised and never overdraw; each posting
//!   is judged on the balance left by the ones before it.
//! * Writers of several processes sharing the file take turns on its
//!   writer lock ([`super::writer_lock`], `<file>.writer-lock`) before
//!   `BEGIN IMMEDIATE`: a waiting writer sleeps in the kernel and wakes
//!   when the lock is released, instead of polling in SQLite's busy
//!   handler. Readers never take it.
//! * Before each batch the path is checked to still name the file opened at
//!   start ([`FileIdentity`]); when it does not, the whole batch is refused
//!   (503) instead of being written into a deleted or replaced file.
//! * Waits are bounded by the acquire timeout (`--acquire-timeout-ms`): for
//!   a pooled connection, for a turn in the queue, and for another
//!   process's writer lock and SQLite write lock (the lock wait ends, and
//!   SQLite's busy timeout is set, per batch, at what is left of the
//!   earliest member's deadline).
//! * A statement is one read transaction (one WAL snapshot).
//! * rusqlite is blocking: every call runs on deadpool-sqlite's blocking
//!   threads (`interact`), never on the async workers.

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use deadpool_sqlite::rusqlite::{self, OptionalExtension, TransactionBehavior};
use deadpool_sqlite::{Config, Hook, HookError, Pool, Runtime};

use super::batch::{ApplyBatch, Batcher, Posting, PostingResult, Scope};
use super::checkpointer::{self, Checkpointer};
use super::idempotency::{NextAction, RecordedKey, RecordedOutcome};
use super::migrations::{self, Migration};
use super::writer_lock::WriterLock;
use super::{
    history_bounds, history_page, stored_posting_id, AccountAudit, AuditReport, Ledger,
    LedgerError, LedgerOptions, PostingRow, RowRefused, Unhealthy,
};
use crate::domain::{
    self, AccountId, Balance, HistoryPage, IdempotencyKey, Kind, PageSize, PostedTransaction,
    PostingError, PostingId, Statement, Transaction,
};
use crate::metrics::{PoolStatus, StorageMetrics};

/// Applied to every new connection, with `wal_autocheckpoint` (see
/// [`apply_pragmas`]).
const PRAGMAS: &str = "\
PRAGMA journal_mode = WAL;
PRAGMA synchronous = FULL;
PRAGMA foreign_keys = ON;";

/// Applies [`PRAGMAS`] to a new connection, and `wal_autocheckpoint`: the
/// WAL is checkpointed by the ledger's [`Checkpointer`], not by the commit
/// that fills it, and a connection checkpoints by itself only past
/// [`checkpointer::SAFETY_NET_PAGES`]. Switching a new file to WAL
/// needs it to itself, and while another connection (another instance
/// starting on the same new file) holds a write lock SQLite answers
/// `SQLITE_BUSY` at once instead of calling the busy handler; the switch
/// is tried again every 10 ms for up to `wait`. Errors: SQLite's, busy
/// included once `wait` has passed.
fn apply_pragmas(conn: &rusqlite::Connection, wait: Duration) -> rusqlite::Result<()> {
    let deadline = std::time::Instant::now() + wait;
    loop {
        match conn.execute_batch(PRAGMAS) {
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::DatabaseBusy
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(10));
            }
            Ok(()) => break,
            other => return other,
        }
    }
    conn.pragma_update(None, "wal_autocheckpoint", checkpointer::SAFETY_NET_PAGES)
}

/// Readies a new connection of the ledger (the pool's and the
/// checkpointer's): `busy_timeout` as SQLite's busy timeout, then
/// [`apply_pragmas`] within it. Errors: SQLite's.
fn configure(conn: &rusqlite::Connection, busy_timeout: Duration) -> rusqlite::Result<()> {
    conn.busy_timeout(busy_timeout)?;
    apply_pragmas(conn, busy_timeout)
}

/// A [`Ledger`] in one SQLite file.
#[derive(Clone)]
pub struct SqliteLedger {
    /// The database file, for error messages.
    path: Arc<str>,
    /// The file opened at start, to notice when the path no longer names it.
    file: Arc<FileIdentity>,
    pool: Pool,
    /// When the last health probe committed; a probe within
    /// [`HEALTH_PROBE_REUSE`] of it is not repeated.
    last_healthy: Arc<std::sync::Mutex<Option<Instant>>>,
    /// Round trips and replays, for `/metrics`.
    metrics: StorageMetrics,
    /// Taken by every write of this ledger (batches, health probes,
    /// purges) before `BEGIN IMMEDIATE`.
    writer: Arc<WriterLock>,
    /// How long a write waits for [`Self::writer`]: the acquire timeout.
    acquire_timeout: Duration,
    /// Postings of this process take turns in this queue (one batch at a
    /// time) rather than in SQLite's busy handler, which sleeps with growing
    /// back-off while it waits for the file's write lock (hundreds of
    /// milliseconds under load). Other processes sharing the file are still
    /// serialised by the writer lock, `BEGIN IMMEDIATE` and the busy
    /// timeout.
    batcher: Batcher<SqliteBatches>,
    /// Whether opening it created the file (a new ledger).
    created: bool,
    /// Checkpoints the WAL in the background ([`super::checkpointer`]);
    /// `None` for a ledger opened by [`SqliteLedger::open_existing`],
    /// which writes nothing. Stops with the last clone of the ledger.
    checkpointer: Option<Arc<Checkpointer>>,
}

/// `path` made absolute against the current directory (not resolving
/// symbolic links), as every message names a SQLite file: a relative
/// `sqlite://` URL depends on where the command runs. `path` itself when
/// the current directory cannot be read.
pub fn absolute_path(path: &Path) -> std::path::PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

/// Why `path` holds no crebito ledger, for a command that never creates
/// one (`audit`, `reset`): `None` when it is a regular file (or a link to
/// one) holding a ledger — a SQLite database whose
/// [`migrations::TABLE`] records the first SQLite migration (version 1,
/// `schema`) — waiting at most `wait` for another connection's lock. The
/// file is only read, on a read-only connection: nothing is created,
/// migrated or switched to WAL. A file that holds nothing at all (0 bytes,
/// or a SQLite database without any table) is named with what creates a
/// ledger in it (`crebito serve`).
pub fn not_a_ledger_file(path: &Path, wait: Duration) -> Option<String> {
    let why = match std::fs::metadata(path) {
        Ok(meta) if meta.is_file() => match inspect(path, wait) {
            Contents::Ledger => return None,
            Contents::Nothing(what) => {
                format!("{what}: no ledger was ever created in it (`crebito serve` creates one)")
            }
            Contents::Other(why) => why,
        },
        Ok(meta) if meta.is_dir() => "it is a directory, not a file".to_owned(),
        Ok(_) => "it is not a regular file".to_owned(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => "the file does not exist".to_owned(),
        Err(e) => format!("it cannot be examined ({e})"),
    };
    Some(why)
}

/// What an existing file holds, as [`inspect`] finds it.
#[derive(Debug, PartialEq, Eq)]
enum Contents {
    /// Nothing at all: 0 bytes, or a SQLite database without any table
    /// (SQLite treats both as an empty database). `crebito serve` creates
    /// a ledger in it as in a file that does not exist; the text says
    /// which of the two it is.
    Nothing(&'static str),
    /// A crebito ledger: its [`migrations::TABLE`] records the first
    /// SQLite migration (version 1, `schema`), which creates the ledger's
    /// tables in the same transaction ([`apply_migrations`]).
    Ledger,
    /// Anything else: why it is no crebito ledger (another program's
    /// SQLite database, a file that is not SQLite, one that cannot be read).
    Other(String),
}

/// What the regular file at `path` holds, read without changing it: the
/// connection is read-only (`SQLITE_OPEN_READONLY`), so nothing is created,
/// migrated or switched to WAL, and waits at most `wait` for a lock held by
/// another connection (another instance migrating a new file). A crebito
/// ledger is a file whose [`migrations::TABLE`] has the row of the first
/// SQLite migration, with its name: the mark every ledger carries since
/// its first start, which another program's `schema_migrations` table (a
/// bare `version` column, other names) does not.
fn inspect(path: &Path, wait: Duration) -> Contents {
    if std::fs::metadata(path).is_ok_and(|meta| meta.len() == 0) {
        return Contents::Nothing("the file is empty (0 bytes)");
    }
    let unreadable = |e: rusqlite::Error| {
        if e.sqlite_error_code() == Some(rusqlite::ErrorCode::NotADatabase) {
            Contents::Other("it is not a SQLite database".to_owned())
        } else {
            Contents::Other(format!("it cannot be read as a SQLite database ({e})"))
        }
    };
    let flags =
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = match rusqlite::Connection::open_with_flags(path, flags) {
        Ok(conn) => conn,
        Err(e) => return unreadable(e),
    };
    if let Err(e) = conn.busy_timeout(wait) {
        return unreadable(e);
    }
    // Schema objects, and the columns of crebito's migrations table that
    // the file has (a table of that name made by another program may lack
    // them).
    let shape = conn.query_row(
        "SELECT (SELECT count(*) FROM sqlite_master),
                (SELECT count(*) FROM pragma_table_info(?1) WHERE name IN ('version', 'name'))",
        [migrations::TABLE],
        |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?)),
    );
    let (objects, columns) = match shape {
        Ok(shape) => shape,
        Err(e) => return unreadable(e),
    };
    if objects == 0 {
        return Contents::Nothing("it is a SQLite database without any table");
    }
    let first = &migrations::SQLITE[0];
    let recorded = if columns < 2 {
        None
    } else {
        match conn
            .query_row(
                &format!("SELECT name FROM {} WHERE version = ?1", migrations::TABLE),
                [first.version],
                |r| r.get::<_, rusqlite::types::Value>(0),
            )
            .optional()
        {
            Ok(Some(rusqlite::types::Value::Text(name))) => Some(name),
            Ok(_) => None,
            Err(e) => return unreadable(e),
        }
    };
    if recorded.as_deref() == Some(first.name) {
        return Contents::Ledger;
    }
    Contents::Other(format!(
        "it is a SQLite database but not a crebito ledger (no {} table records crebito's \
         migration {}, {:?}: another program's database?)",
        migrations::TABLE,
        first.version,
        first.name
    ))
}

/// Applies batches of postings in one `BEGIN IMMEDIATE` transaction each,
/// after checking that the path still names the file opened at start, and
/// holding the writer lock ([`super::writer_lock`]) around the transaction.
#[derive(Clone)]
pub struct SqliteBatches {
    path: Arc<str>,
    file: Arc<FileIdentity>,
    pool: Pool,
    writer: Arc<WriterLock>,
    /// The busy timeout a connection gets back after a batch (which sets
    /// its own): the acquire timeout.
    busy_timeout: Duration,
    metrics: StorageMetrics,
}

/// A health check within this long of a successful one reuses its result
/// (each probe commits a write with an fsync).
const HEALTH_PROBE_REUSE: Duration = Duration::from_secs(1);

impl SqliteLedger {
    /// Opens (creating if needed, with its parent directory) the database
    /// file at `path` and applies pending migrations, with the default
    /// [`LedgerOptions`]; see [`SqliteLedger::open_with`].
    pub async fn open(path: &Path) -> Result<Self, LedgerError> {
        Self::open_with(path, &LedgerOptions::default()).await
    }

    /// Opens the database file at `path` and applies pending migrations,
    /// with `options`: `pool_size` connections, waits bounded by
    /// `acquire_timeout`, the batch limits (`query_timeout` does not apply:
    /// statements run in this process).
    ///
    /// A missing file is created with its parent directory, and the event
    /// logged as a warning, when `options.create_if_missing`; otherwise it
    /// is an error. An existing file that holds nothing (0 bytes, or a
    /// SQLite database without any table) is a new ledger the same way. An
    /// existing file that holds anything but a crebito ledger (its
    /// [`migrations::TABLE`] recording the first migration) is refused
    /// before anything is written to it: another program's database is
    /// never given the ledger's tables. Once open, connections never create
    /// the file again (URI `mode=rw`): a file deleted while the server runs
    /// is noticed (see [`FileIdentity`]), not silently replaced by an empty
    /// one.
    ///
    /// Errors: [`LedgerError::Unavailable`] when the file is missing or
    /// holds nothing and may not be created, holds something that is not a
    /// crebito ledger (named by its absolute path, with why), the directory
    /// or file cannot be created or opened, or a migration fails.
    pub async fn open_with(path: &Path, options: &LedgerOptions) -> Result<Self, LedgerError> {
        let mut created = !path.exists();
        if created {
            if !options.create_if_missing {
                return Err(LedgerError::unavailable_because(format!(
                    "no SQLite database at {}, and creating one is not allowed \
                     (--require-existing-ledger)",
                    absolute_path(path).display()
                )));
            }
            tracing::warn!(
                "no ledger at {}: creating a NEW one with the seeded accounts (if a ledger \
                 was expected here, stop and restore it; --require-existing-ledger refuses \
                 to start instead)",
                absolute_path(path).display()
            );
            create_file(path)?;
        }
        // SQLite would open a file it cannot write read-only, and fail
        // later, or only on the first posting: say it now.
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(|e| {
                LedgerError::unavailable(
                    format!(
                        "the SQLite database {} cannot be opened for writing (read-only file, \
                         directory or file system?)",
                        absolute_path(path).display()
                    ),
                    e,
                )
            })?;
        if !created {
            match inspect(path, options.acquire_timeout) {
                Contents::Ledger => {}
                Contents::Nothing(what) if options.create_if_missing => {
                    tracing::warn!(
                        "no ledger at {}: {what}; creating a NEW one in it with the seeded \
                         accounts (if a ledger was expected here, stop and restore it; \
                         --require-existing-ledger refuses to start instead)",
                        absolute_path(path).display()
                    );
                    created = true;
                }
                Contents::Nothing(what) => {
                    return Err(LedgerError::unavailable_because(format!(
                        "no SQLite ledger at {}: {what}, and creating one is not allowed \
                         (--require-existing-ledger)",
                        absolute_path(path).display()
                    )));
                }
                Contents::Other(why) => {
                    return Err(LedgerError::unavailable_because(format!(
                        "no SQLite ledger at {}: {why}; refusing to add the ledger's tables \
                         to it. Give the ledger's file with --database-url (or DATABASE_URL), \
                         or a path where no file is yet to create a new ledger",
                        absolute_path(path).display()
                    )));
                }
            }
        }
        let mut ledger = Self::open_file(path, options)?;
        ledger.created = created;
        ledger
            .run(|conn| apply_migrations(conn, migrations::SQLITE))
            .await?;
        let uri = open_existing_uri(path);
        let busy_timeout = options.acquire_timeout;
        ledger.checkpointer = Some(Arc::new(Checkpointer::start(move || {
            let conn = rusqlite::Connection::open(&uri)?;
            configure(&conn, busy_timeout)?;
            Ok(conn)
        })));
        Ok(ledger)
    }

    /// Opens an existing database file without creating or migrating
    /// anything (for read-only tools such as `crebito audit`), with
    /// `options` as in [`SqliteLedger::open_with`].
    ///
    /// Errors: [`LedgerError::Unavailable`] when the file does not exist,
    /// holds no crebito ledger ([`not_a_ledger_file`]; checked read-only,
    /// before the pool switches it to WAL) or cannot be opened.
    pub async fn open_existing(path: &Path, options: &LedgerOptions) -> Result<Self, LedgerError> {
        if let Some(why) = not_a_ledger_file(path, options.acquire_timeout) {
            return Err(LedgerError::unavailable_because(format!(
                "no SQLite ledger at {}: {why}",
                absolute_path(path).display()
            )));
        }
        let ledger = Self::open_file(path, options)?;
        ledger.ping().await?;
        Ok(ledger)
    }

    fn open_file(path: &Path, options: &LedgerOptions) -> Result<Self, LedgerError> {
        let file = Arc::new(FileIdentity::of(path)?);
        let busy_timeout = options.acquire_timeout;
        let pool = Config::new(open_existing_uri(path))
            .builder(Runtime::Tokio1)
            .map_err(|e| LedgerError::unavailable("cannot build the SQLite pool", e))?
            .max_size(options.pool_size.max(1))
            .wait_timeout(Some(options.acquire_timeout))
            .create_timeout(Some(options.acquire_timeout))
            .recycle_timeout(Some(options.acquire_timeout))
            .post_create(Hook::async_fn(move |conn, _| {
                Box::pin(async move {
                    conn.interact(move |conn| {
                        // Readers rarely wait (WAL), but never unbounded;
                        // a batch sets its own while it runs.
                        configure(conn, busy_timeout)
                    })
                    .await
                    .map_err(|e| HookError::message(e.to_string()))?
                    .map_err(HookError::Backend)
                })
            }))
            .build()
            .map_err(|e| LedgerError::unavailable("cannot build the SQLite pool", e))?;
        let absolute = absolute_path(path);
        let writer = Arc::new(WriterLock::for_database(&absolute));
        let path: Arc<str> = absolute.display().to_string().into();
        let metrics = StorageMetrics::default();
        let batches = SqliteBatches {
            path: path.clone(),
            file: file.clone(),
            pool: pool.clone(),
            writer: writer.clone(),
            busy_timeout,
            metrics: metrics.clone(),
        };
        Ok(SqliteLedger {
            path,
            file,
            pool,
            last_healthy: Default::default(),
            writer,
            acquire_timeout: options.acquire_timeout,
            batcher: Batcher::new(batches, Scope::Instance, options.batch(), metrics.clone()),
            metrics,
            created: false,
            checkpointer: None,
        })
    }

    /// The database file's absolute path.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Runs the write `f` with a pooled connection on a blocking thread,
    /// holding the writer lock (waited for at most the acquire timeout)
    /// until `f` returns.
    async fn run_write<T, F>(&self, f: F) -> Result<T, LedgerError>
    where
        T: Send + 'static,
        F: FnOnce(&mut rusqlite::Connection) -> Result<T, LedgerError> + Send + 'static,
    {
        let conn = self.connection().await?;
        let deadline = tokio::time::Instant::now() + self.acquire_timeout;
        let guard = self.writer.acquire(deadline).await?;
        conn.interact(move |conn| {
            let outcome = f(conn);
            drop(guard);
            outcome
        })
        .await?
    }

    /// Whether [`SqliteLedger::open_with`] created the file: a new ledger
    /// with the seeded accounts.
    pub fn created(&self) -> bool {
        self.created
    }

    /// Deletes every transaction, idempotency key and account, then seeds
    /// the five accounts again (docs/contract.md §2.3), in one immediate
    /// transaction: the ledger is as freshly created. Errors:
    /// [`LedgerError::Unavailable`].
    pub async fn reset(&self) -> Result<(), LedgerError> {
        self.run_write(|conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            tx.execute_batch(
                "DELETE FROM transactions;
                 DELETE FROM idempotency_keys;
                 DELETE FROM accounts;
                 DELETE FROM sqlite_sequence WHERE name = 'transactions';",
            )?;
            tx.execute_batch(migrations::seed(migrations::SQLITE))?;
            Ok(tx.commit()?)
        })
        .await
    }

    /// Batches of postings sent so far, by size
    /// ([`super::batch::SIZE_BUCKETS`]).
    pub fn batch_sizes(&self) -> [u64; super::batch::SIZE_BUCKETS] {
        self.batcher.batch_sizes()
    }

    /// The storage behind the posting queue: applies a given batch directly
    /// (tests compare it with postings applied one by one).
    pub fn batches(&self) -> &SqliteBatches {
        self.batcher.storage()
    }

    /// A pooled connection; [`LedgerError::Unavailable`] when the pool
    /// cannot open one.
    async fn connection(&self) -> Result<deadpool_sqlite::Object, LedgerError> {
        self.pool.get().await.map_err(|e| {
            let context = format!("cannot open the SQLite database {}", self.path);
            LedgerError::unavailable(context, e)
        })
    }

    /// Runs `f` with a pooled connection on a blocking thread.
    async fn run<T, F>(&self, f: F) -> Result<T, LedgerError>
    where
        T: Send + 'static,
        F: FnOnce(&mut rusqlite::Connection) -> Result<T, LedgerError> + Send + 'static,
    {
        let conn = self.connection().await?;
        conn.interact(f).await?
    }

    /// [`Self::run`], recording the call as one round trip of `operation`
    /// (from the hand-off to the blocking thread to its answer).
    async fn run_timed<T, F>(&self, operation: &'static str, f: F) -> Result<T, LedgerError>
    where
        T: Send + 'static,
        F: FnOnce(&mut rusqlite::Connection) -> Result<T, LedgerError> + Send + 'static,
    {
        let conn = self.connection().await?;
        let started = Instant::now();
        let result = conn.interact(f).await;
        self.metrics.round_trip(operation, started.elapsed());
        result?
    }
}

/// Creates an empty database file at `path`, and its parent directory.
fn create_file(path: &Path) -> Result<(), LedgerError> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| {
            LedgerError::unavailable(format!("cannot create {}", parent.display()), e)
        })?;
    }
    rusqlite::Connection::open(path)
        .map(drop)
        .map_err(|e| LedgerError::unavailable(format!("cannot create {}", path.display()), e))
}

/// An SQLite URI filename that opens `path` read-write but never creates it
/// (`mode=rw`, <https://sqlite.org/uri.html>): a pooled connection opened
/// after the file was deleted fails instead of starting an empty ledger.
/// rusqlite opens with `SQLITE_OPEN_URI`. A path that is not UTF-8 is used
/// as is.
fn open_existing_uri(path: &Path) -> std::path::PathBuf {
    let Some(text) = path.to_str() else {
        return path.to_path_buf();
    };
    let mut uri = String::from("file:");
    for c in text.chars() {
        match c {
            '%' => uri.push_str("%25"),
            '?' => uri.push_str("%3f"),
            '#' => uri.push_str("%23"),
            c => uri.push(c),
        }
    }
    uri.push_str("?mode=rw");
    uri.into()
}

/// The device and inode of the database file as opened at start.
///
/// SQLite keeps writing to a file that was deleted or replaced under it:
/// every posting acknowledged after that would be lost at the next start.
/// Before each write the path is checked to still name this file.
#[derive(Debug)]
pub struct FileIdentity {
    path: std::path::PathBuf,
    device: u64,
    inode: u64,
}

impl FileIdentity {
    /// The identity of the file at `path` now.
    ///
    /// Errors: [`LedgerError::Unavailable`] when it cannot be read.
    pub fn of(path: &Path) -> Result<FileIdentity, LedgerError> {
        use std::os::unix::fs::MetadataExt;
        let meta = std::fs::metadata(path)
            .map_err(|e| LedgerError::unavailable(format!("cannot open {}", path.display()), e))?;
        Ok(FileIdentity {
            path: path.to_path_buf(),
            device: meta.dev(),
            inode: meta.ino(),
        })
    }

    /// `Ok` while the path still names the file opened at start.
    ///
    /// Errors: [`Unhealthy`] saying whether the file is gone or was
    /// replaced, with the path in its cause.
    pub fn check(&self) -> Result<(), Unhealthy> {
        use std::os::unix::fs::MetadataExt;
        let fault = match std::fs::metadata(&self.path) {
            Ok(meta) if meta.dev() == self.device && meta.ino() == self.inode => return Ok(()),
            Ok(_) => "the database file was replaced by another file while the server ran",
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                "the database file was deleted while the server ran"
            }
            Err(_) => "the database file cannot be found",
        };
        Err(Unhealthy::new(
            fault,
            LedgerError::unavailable_because(format!(
                "{fault}: {} is no longer the file opened at start; refusing writes \
                 (postings would be lost): restore the file, or restart",
                self.path.display()
            )),
        ))
    }
}

/// Commits one write, proving that the file can take postings. Errors:
/// [`Unhealthy`] naming the storage fault.
fn probe_write(conn: &mut rusqlite::Connection) -> Result<(), Unhealthy> {
    let mut attempt = || -> rusqlite::Result<()> {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.execute(
            "INSERT INTO health_probe (id, checked_at_us) VALUES (1, ?1)
             ON CONFLICT (id) DO UPDATE SET checked_at_us = excluded.checked_at_us",
            [Utc::now().timestamp_micros()],
        )?;
        tx.commit()
    };
    attempt().map_err(|e| {
        use rusqlite::ErrorCode;
        let reason = match e.sqlite_error_code() {
            Some(ErrorCode::ReadOnly) => {
                "the database is read-only (file, directory or file system)"
            }
            Some(ErrorCode::DiskFull) => "the disk is full",
            Some(ErrorCode::CannotOpen) => "the database file cannot be opened",
            Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => {
                "another process holds the database's write lock"
            }
            Some(ErrorCode::SystemIoFailure) => "the database file cannot be written (I/O error)",
            _ => "the database cannot be written",
        };
        Unhealthy::new(reason, LedgerError::from(e))
    })
}

fn apply_migrations(
    conn: &mut rusqlite::Connection,
    list: &[Migration],
) -> Result<(), LedgerError> {
    // Nothing pending: no write at all, so that a ledger on read-only
    // storage still starts and `GET /health` can say why it cannot post.
    let applied: Option<i32> = conn
        .query_row(
            &format!("SELECT max(version) FROM {}", migrations::TABLE),
            [],
            |r| r.get(0),
        )
        .unwrap_or(None);
    if applied.is_some() && applied == list.last().map(|m| m.version) {
        return Ok(());
    }
    // IMMEDIATE: two processes opening a new file at once take turns.
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    tx.execute_batch(&format!(
        "CREATE TABLE IF NOT EXISTS {} (
            version INTEGER PRIMARY KEY,
            name TEXT NOT NULL,
            applied_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ')))",
        migrations::TABLE
    ))?;
    for migration in list {
        let applied = tx
            .query_row(
                &format!("SELECT 1 FROM {} WHERE version = ?1", migrations::TABLE),
                [migration.version],
                |_| Ok(()),
            )
            .optional()?
            .is_some();
        if !applied {
            tracing::info!(
                version = migration.version,
                name = migration.name,
                "applying migration"
            );
            tx.execute_batch(migration.sql).map_err(|e| {
                LedgerError::unavailable(
                    format!(
                        "migration {} ({}) failed",
                        migration.version, migration.name
                    ),
                    e,
                )
            })?;
            tx.execute(
                &format!(
                    "INSERT INTO {} (version, name) VALUES (?1, ?2)",
                    migrations::TABLE
                ),
                (migration.version, migration.name),
            )?;
        }
    }
    Ok(tx.commit()?)
}

fn micros_to_time(micros: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(micros).unwrap_or_default()
}

impl ApplyBatch for SqliteBatches {
    /// See [`ApplyBatch::apply_batch`]. Refuses the whole batch, applying
    /// nothing, when the path no longer names the file opened at start
    /// ([`FileIdentity::check`]). One batch is one round trip of `post` in
    /// `crebito_db_round_trip_duration_seconds`.
    async fn apply_batch(
        &self,
        postings: &[Posting],
        deadline: tokio::time::Instant,
    ) -> Result<Vec<PostingResult>, LedgerError> {
        // Checked before every batch: one batch of this process is in
        // flight at a time, so nothing is written after a failed check.
        if let Err(unhealthy) = self.file.check() {
            return Err(unhealthy.cause.unwrap_or_else(|| {
                LedgerError::unavailable_because("the database file is not the one opened")
            }));
        }
        let wait = deadline.saturating_duration_since(tokio::time::Instant::now());
        let timeouts = deadpool_sqlite::Timeouts {
            wait: Some(wait),
            create: Some(wait),
            recycle: Some(wait),
        };
        let conn = self.pool.timeout_get(&timeouts).await.map_err(|e| {
            let context = format!("cannot open the SQLite database {}", self.path);
            LedgerError::unavailable(context, e)
        })?;
        // After the connection: the lock is held only while the batch can
        // run at once.
        let guard = self.writer.acquire(deadline).await?;
        let postings = postings.to_vec();
        let restore = self.busy_timeout;
        let started = Instant::now();
        let outcome = conn
            .interact(move |conn| {
                // What is left of the earliest member's wait, at least 1 ms.
                let busy = deadline
                    .saturating_duration_since(tokio::time::Instant::now())
                    .max(Duration::from_millis(1));
                conn.busy_timeout(busy)?;
                let outcome = post_batch_blocking(conn, &postings);
                // Committed or rolled back: the next writer may go.
                drop(guard);
                // Setting a busy timeout does not fail on an open
                // connection; and a committed batch must keep its answers.
                let _ = conn.busy_timeout(restore);
                outcome
            })
            .await;
        self.metrics.round_trip("post", started.elapsed());
        let (results, replays) = outcome?.map_err(row_refused)?;
        self.metrics.replays(replays);
        Ok(results)
    }
}

/// The constraint of `accounts` that backs the limit rule
/// (migrations/sqlite/0001_schema.sql).
const BALANCE_CONSTRAINT: &str = "balance_within_limit";

/// `error` with a [`RowRefused`] cause when SQLite refused a row by a
/// constraint (`SQLITE_CONSTRAINT`: a `CHECK`, `NOT NULL`, foreign key or
/// a trigger's `RAISE`) other than [`BALANCE_CONSTRAINT`], so that the
/// queue applies the batch's postings one by one and only that posting
/// fails; any other error as it is.
fn row_refused(error: LedgerError) -> LedgerError {
    let LedgerError::Unavailable {
        context,
        source: Some(source),
    } = error
    else {
        return error;
    };
    let constraint = source
        .downcast_ref::<rusqlite::Error>()
        .filter(|e| e.sqlite_error_code() == Some(rusqlite::ErrorCode::ConstraintViolation))
        .map(|e| {
            let text = e.to_string();
            let named = text.split_once("failed: ").map_or(&*text, |(_, name)| name);
            named.to_owned()
        })
        .filter(|constraint| !constraint.contains(BALANCE_CONSTRAINT));
    match constraint {
        Some(constraint) => LedgerError::unavailable(
            "SQLite refused a posting",
            RowRefused { constraint, source },
        ),
        None => LedgerError::Unavailable {
            context,
            source: Some(source),
        },
    }
}

/// Applies `postings` in order in one `BEGIN IMMEDIATE` transaction (see
/// [`ApplyBatch::apply_batch`]); `Err` rolls all of it back. Returns the
/// answers and how many of them were replays of a recorded
/// `Idempotency-Key` (docs/contract.md §2.6).
fn post_batch_blocking(
    conn: &mut rusqlite::Connection,
    postings: &[Posting],
) -> Result<(Vec<PostingResult>, u64), LedgerError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    // Balance and limit of each account touched, as the batch moves them.
    let mut accounts: HashMap<i32, Option<(i64, i64)>> = HashMap::new();
    let mut results = Vec::with_capacity(postings.len());
    let mut replays = 0;
    let now = Utc::now().timestamp_micros();
    for posting in postings {
        let account = posting.account.get();
        let state = match accounts.entry(account) {
            Entry::Occupied(e) => e.into_mut(),
            Entry::Vacant(e) => e.insert(
                tx.prepare_cached("SELECT balance, credit_limit FROM accounts WHERE id = ?1")
                    .and_then(|mut s| {
                        s.query_row([account], |r| Ok((r.get(0)?, r.get(1)?)))
                            .optional()
                    })?,
            ),
        };
        let Some((balance, limit)) = state else {
            results.push(Err(LedgerError::AccountNotFound));
            continue;
        };
        let transaction = &posting.transaction;
        if let Some(key) = &posting.key {
            // The write lock is held: no other writer can record this key
            // now, and a use earlier in this batch is visible here.
            let recorded = tx
                .prepare_cached(
                    "SELECT fingerprint, outcome, balance FROM idempotency_keys
                     WHERE account_id = ?1 AND key = ?2",
                )
                .and_then(|mut s| {
                    s.query_row((account, key.as_str()), |r| {
                        Ok(RecordedKey {
                            fingerprint: r.get(0)?,
                            outcome: r.get(1)?,
                            balance: r.get(2)?,
                            limit: *limit,
                        })
                    })
                    .optional()
                })?;
            if let NextAction::Replay(answer) = NextAction::for_key(recorded, transaction) {
                replays += 1;
                results.push(answer);
                continue;
            }
        }
        let new_balance = match domain::apply(*balance, *limit, transaction.delta()) {
            Ok(new_balance) => new_balance,
            Err(refusal) => {
                if let (Some(key), PostingError::LimitExceeded) = (&posting.key, refusal) {
                    // Remember the refusal, so a retry gets the same answer.
                    let outcome = RecordedOutcome::LimitExceeded;
                    remember_key(&tx, account, key, transaction, outcome, None, *limit, now)?;
                }
                results.push(Err(refusal.into()));
                continue;
            }
        };
        *balance = new_balance;
        tx.prepare_cached(
            "INSERT INTO transactions (account_id, amount, kind, description, posted_at_us)
             VALUES (?1, ?2, ?3, ?4, ?5)",
        )
        .and_then(|mut s| {
            s.execute((
                account,
                transaction.amount.cents(),
                transaction.kind,
                transaction.description.as_str(),
                now,
            ))
        })?;
        if let Some(key) = &posting.key {
            let outcome = RecordedOutcome::Posted;
            remember_key(
                &tx,
                account,
                key,
                transaction,
                outcome,
                Some(new_balance),
                *limit,
                now,
            )?;
        }
        results.push(Ok(Balance {
            balance: new_balance,
            limit: *limit,
        }));
    }
    for (account, state) in &accounts {
        if let Some((balance, _)) = state {
            tx.prepare_cached("UPDATE accounts SET balance = ?1 WHERE id = ?2 AND balance <> ?1")
                .and_then(|mut s| s.execute((balance, account)))?;
        }
    }
    tx.commit()?;
    Ok((results, replays))
}

/// Records `key`'s outcome in the batch's transaction; `at_us`: when, in
/// microseconds since the Unix epoch.
#[allow(clippy::too_many_arguments)]
fn remember_key(
    tx: &rusqlite::Transaction<'_>,
    account: i32,
    key: &IdempotencyKey,
    transaction: &Transaction,
    outcome: RecordedOutcome,
    balance: Option<i64>,
    limit: i64,
    at_us: i64,
) -> Result<(), LedgerError> {
    tx.prepare_cached(
        "INSERT INTO idempotency_keys
             (account_id, key, fingerprint, outcome, balance, credit_limit, created_at_us)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )
    .and_then(|mut s| {
        s.execute((
            account,
            key.as_str(),
            transaction.fingerprint(),
            outcome,
            balance,
            limit,
            at_us,
        ))
    })
    .map(|_| ())?;
    Ok(())
}

/// The account's `(balance, limit)` in cents, read in `tx` (the snapshot
/// of a statement or history page);
/// [`LedgerError::AccountNotFound`] when there is no such account.
fn account_balance(
    tx: &rusqlite::Transaction<'_>,
    account: i32,
) -> Result<(i64, i64), LedgerError> {
    tx.prepare_cached("SELECT balance, credit_limit FROM accounts WHERE id = ?1")
        .and_then(|mut s| {
            s.query_row([account], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()
        })?
        .ok_or(LedgerError::AccountNotFound)
}

fn statement_blocking(
    conn: &mut rusqlite::Connection,
    account: i32,
) -> Result<Statement, LedgerError> {
    // A deferred read transaction reads from one WAL snapshot.
    let tx = conn.transaction()?;
    let (balance, limit) = account_balance(&tx, account)?;
    let generated_at = Utc::now();
    let mut query = tx.prepare_cached(
        "SELECT amount, kind, description, posted_at_us FROM transactions
             WHERE account_id = ?1 ORDER BY id DESC LIMIT 10",
    )?;
    let transactions = query
        .query_map([account], |r| {
            Ok(PostedTransaction {
                amount: r.get(0)?,
                kind: r.get(1)?,
                description: r.get(2)?,
                posted_at: micros_to_time(r.get(3)?),
            })
        })
        .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())?;
    drop(query);
    tx.finish()?;
    Ok(Statement {
        balance,
        limit,
        generated_at,
        transactions,
    })
}

fn history_blocking(
    conn: &mut rusqlite::Connection,
    account: i32,
    before: Option<PostingId>,
    size: PageSize,
) -> Result<HistoryPage, LedgerError> {
    // A deferred read transaction reads from one WAL snapshot.
    let tx = conn.transaction()?;
    let (balance, limit) = account_balance(&tx, account)?;
    let generated_at = Utc::now();
    let (before, fetch) = history_bounds(before, size);
    let mut query = tx.prepare_cached(
        "SELECT id, amount, kind, description, posted_at_us FROM transactions
             WHERE account_id = ?1 AND id < ?2 ORDER BY id DESC LIMIT ?3",
    )?;
    let transactions = query
        .query_map((account, before, fetch), |r| {
            Ok((
                r.get::<_, i64>(0)?,
                PostedTransaction {
                    amount: r.get(1)?,
                    kind: r.get(2)?,
                    description: r.get(3)?,
                    posted_at: micros_to_time(r.get(4)?),
                },
            ))
        })
        .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())?
        .into_iter()
        .map(|(id, row)| stored_posting_id(id).map(|id| (id, row)))
        .collect::<Result<Vec<_>, _>>()?;
    drop(query);
    tx.finish()?;
    Ok(history_page(
        balance,
        limit,
        generated_at,
        transactions,
        size,
    ))
}

fn audit_blocking(conn: &mut rusqlite::Connection) -> Result<AuditReport, LedgerError> {
    let tx = conn.transaction()?;
    let mut accounts = tx
        .prepare("SELECT id, credit_limit, balance FROM accounts ORDER BY id")
        .and_then(|mut s| {
            s.query_map([], |r| {
                Ok(AccountAudit {
                    account: r.get(0)?,
                    limit: r.get(1)?,
                    balance: r.get(2)?,
                    transactions_sum: 0,
                    transactions: 0,
                })
            })?
            .collect::<Result<Vec<_>, _>>()
        })?;
    let mut orphan_transactions = 0;
    {
        // Summed in Rust with i128: SQLite's SUM() fails on i64 overflow.
        let mut rows = tx.prepare("SELECT account_id, kind, amount FROM transactions")?;
        let mut cursor = rows.query([])?;
        while let Some(row) = cursor.next()? {
            let account: i32 = row.get(0)?;
            let kind: Kind = row.get(1)?;
            let amount: i64 = row.get(2)?;
            match accounts.binary_search_by_key(&account, |a| a.account) {
                Ok(i) => {
                    let entry = &mut accounts[i];
                    entry.transactions += 1;
                    entry.transactions_sum += match kind {
                        Kind::Credit => i128::from(amount),
                        Kind::Debit => -i128::from(amount),
                    };
                }
                Err(_) => orphan_transactions += 1,
            }
        }
    }
    tx.finish()?;
    Ok(AuditReport {
        accounts,
        orphan_transactions,
    })
}

impl Ledger for SqliteLedger {
    fn storage_metrics(&self) -> Option<&StorageMetrics> {
        Some(&self.metrics)
    }

    fn pool_status(&self) -> Option<PoolStatus> {
        Some(PoolStatus::from_deadpool(self.pool.status()))
    }

    async fn post(
        &self,
        account: AccountId,
        transaction: &Transaction,
        key: Option<&IdempotencyKey>,
    ) -> Result<Balance, LedgerError> {
        let posting = Posting::new(account, transaction, key);
        self.batcher.post(posting).await
    }

    async fn purge_idempotency_keys(&self, older_than: Duration) -> Result<u64, LedgerError> {
        let cutoff = Utc::now().timestamp_micros()
            - i64::try_from(older_than.as_micros()).unwrap_or(i64::MAX / 2);
        self.run_write(move |conn| {
            Ok(conn
                .execute(
                    "DELETE FROM idempotency_keys WHERE created_at_us < ?1",
                    [cutoff],
                )
                .map(|n| n as u64)?)
        })
        .await
    }

    async fn statement(&self, account: AccountId) -> Result<Statement, LedgerError> {
        let account = account.get();
        self.run_timed("statement", move |conn| statement_blocking(conn, account))
            .await
    }

    async fn history(
        &self,
        account: AccountId,
        before: Option<PostingId>,
        size: PageSize,
    ) -> Result<HistoryPage, LedgerError> {
        let account = account.get();
        self.run_timed("history", move |conn| {
            history_blocking(conn, account, before, size)
        })
        .await
    }

    async fn ping(&self) -> Result<(), LedgerError> {
        self.run_timed("ping", |conn| {
            Ok(conn.query_row("SELECT 1", [], |_| Ok(()))?)
        })
        .await
    }

    /// Unhealthy when the path no longer names the file opened at start,
    /// or a write cannot be committed (see [`Ledger::health`]).
    async fn health(&self) -> Result<(), Unhealthy> {
        self.file.check()?;
        let recent = |at: &Option<std::time::Instant>| {
            at.is_some_and(|at| at.elapsed() < HEALTH_PROBE_REUSE)
        };
        if recent(&self.last_healthy.lock().unwrap_or_else(|e| e.into_inner())) {
            return Ok(());
        }
        let conn = self
            .connection()
            .await
            .map_err(|e| Unhealthy::new("the database file cannot be opened", e))?;
        let deadline = tokio::time::Instant::now() + self.acquire_timeout;
        let guard =
            self.writer.acquire(deadline).await.map_err(|e| {
                Unhealthy::new("another process holds the database's write lock", e)
            })?;
        let probe = move |conn: &mut rusqlite::Connection| {
            let outcome = probe_write(conn);
            drop(guard);
            outcome
        };
        conn.interact(probe).await.map_err(|e| {
            Unhealthy::new("the database cannot be written", LedgerError::from(e))
        })??;
        *self.last_healthy.lock().unwrap_or_else(|e| e.into_inner()) =
            Some(std::time::Instant::now());
        Ok(())
    }

    async fn audit(&self) -> Result<AuditReport, LedgerError> {
        self.run(audit_blocking).await
    }

    async fn postings(&self) -> Result<Vec<PostingRow>, LedgerError> {
        self.run(|conn| {
            let mut query = conn.prepare(
                "SELECT account_id, kind, amount, description FROM transactions ORDER BY id",
            )?;
            let rows = query
                .query_map([], |r| {
                    Ok(PostingRow {
                        account: r.get(0)?,
                        kind: r.get(1)?,
                        amount: r.get(2)?,
                        description: r.get(3)?,
                    })
                })
                .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())?;
            Ok(rows)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_health_probe_names_a_read_only_database() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("probe.db");
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(include_str!(
            "../../migrations/sqlite/0004_health_probe.sql"
        ))
        .unwrap();
        let mut writable = conn;
        assert!(probe_write(&mut writable).is_ok());
        let mut read_only = rusqlite::Connection::open_with_flags(
            &path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )
        .unwrap();
        let unhealthy = probe_write(&mut read_only).unwrap_err();
        assert_eq!(
            unhealthy.reason,
            "the database is read-only (file, directory or file system)"
        );
    }

    /// Two instances starting on a new file race to switch it to WAL:
    /// the switch needs the file to itself, and SQLite answers "database
    /// is locked" at once, without waiting, while another connection
    /// holds a write lock on it. The switch is tried again until the
    /// acquire timeout instead of failing the start.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_new_file_switched_to_wal_while_another_connection_writes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("race.db");
        let writer = rusqlite::Connection::open(&path).unwrap();
        // Rolled back, not committed: a table another program commits
        // makes the file its database, which a start refuses.
        writer
            .execute_batch("BEGIN IMMEDIATE; CREATE TABLE other (a)")
            .unwrap();
        let options = LedgerOptions {
            acquire_timeout: Duration::from_secs(10),
            ..LedgerOptions::default()
        };
        let opening = tokio::spawn({
            let path = path.clone();
            async move { SqliteLedger::open_with(&path, &options).await }
        });
        tokio::time::sleep(Duration::from_millis(500)).await;
        writer.execute_batch("ROLLBACK").unwrap();
        let ledger = opening
            .await
            .unwrap()
            .expect("opens once the writer is done");
        let statement = ledger.statement(AccountId::new(1).unwrap()).await.unwrap();
        assert_eq!(statement.balance, 0);
    }

    /// A ledger is recognised by its first migration's row, read without
    /// writing: also while the server has it open, and a table of the
    /// same name and columns that records something else is not one.
    #[tokio::test]
    async fn inspect_finds_a_ledger_by_its_first_migration() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger.db");
        let wait = Duration::from_secs(2);
        let ledger = SqliteLedger::open(&path).await.unwrap();
        assert_eq!(inspect(&path, wait), Contents::Ledger);
        drop(ledger);
        assert_eq!(inspect(&path, wait), Contents::Ledger);
        let other = dir.path().join("other.db");
        rusqlite::Connection::open(&other)
            .unwrap()
            .execute_batch(
                "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT);
                 INSERT INTO schema_migrations VALUES (1, 'create_users')",
            )
            .unwrap();
        let before = std::fs::read(&other).unwrap();
        assert!(
            matches!(inspect(&other, wait), Contents::Other(why) if why.contains("not a crebito ledger"))
        );
        assert_eq!(std::fs::read(&other).unwrap(), before);
    }

    /// Writes about 6 MB (1,500 pages) in one transaction on a connection
    /// with the ledger's pragmas, and returns the database file's size
    /// right after the commit.
    fn fill(conn: &rusqlite::Connection, path: &Path, table: &str) -> u64 {
        conn.execute_batch(&format!(
            "CREATE TABLE {table} (b BLOB);
             WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 1500)
             INSERT INTO {table} SELECT zeroblob(4000) FROM n;"
        ))
        .unwrap();
        std::fs::metadata(path).unwrap().len()
    }

    /// The commit that takes the WAL past SQLite's default 1,000 pages
    /// does not checkpoint (the database file does not grow with it); the
    /// ledger's checkpointer copies it into the file within a few of its
    /// intervals; and it stops with the ledger.
    #[tokio::test]
    async fn the_wal_is_checkpointed_in_the_background_not_by_the_commit() {
        const WRITTEN: u64 = 1_500 * 4_000;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger.db");
        let ledger = SqliteLedger::open(&path).await.unwrap();
        let conn = rusqlite::Connection::open(&path).unwrap();
        apply_pragmas(&conn, Duration::from_secs(2)).unwrap();
        let after_commit = fill(&conn, &path, "filler");
        assert!(
            after_commit < WRITTEN,
            "the commit checkpointed: the file has {after_commit} bytes"
        );
        let deadline = Instant::now() + checkpointer::INTERVAL * 5;
        while std::fs::metadata(&path).unwrap().len() < WRITTEN {
            assert!(
                Instant::now() < deadline,
                "no checkpoint within {:?}",
                checkpointer::INTERVAL * 5
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        drop(ledger);
        let stopped = fill(&conn, &path, "after");
        tokio::time::sleep(checkpointer::INTERVAL * 3).await;
        assert_eq!(
            std::fs::metadata(&path).unwrap().len(),
            stopped,
            "checkpointed after the ledger was dropped"
        );
    }

    #[test]
    fn pooled_connections_never_create_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a?b#c%d.db");
        let error = rusqlite::Connection::open(open_existing_uri(&path));
        assert!(error.is_err());
        assert!(!path.exists());
        rusqlite::Connection::open(&path).unwrap();
        rusqlite::Connection::open(open_existing_uri(&path)).unwrap();
    }
}
