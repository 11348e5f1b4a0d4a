//! Copying a SQLite ledger's WAL back into its database file, off the
//! posting path.
//!
//! In WAL mode a commit appends to `<database>-wal`; a *checkpoint* copies
//! those pages back into the database file and syncs it
//! (<https://sqlite.org/wal.html#checkpointing>). By default SQLite runs one
//! inside the `COMMIT` that takes the WAL past 1,000 pages: that batch's
//! postings wait for hundreds of page writes and a second `fsync`, holding
//! the writer lock, so the other instance's writers wait too.
//!
//! Instead, every connection of the ledger checkpoints by itself only past
//! [`SAFETY_NET_PAGES`] (`PRAGMA wal_autocheckpoint`, a bound for when this
//! task cannot keep up or is not running), and this task runs a `PASSIVE`
//! checkpoint on a connection of its own every [`INTERVAL`]. A passive
//! checkpoint takes no write lock: postings keep committing while it
//! copies, and readers keep their snapshots. With several processes on
//! one file, each runs one; SQLite lets one checkpoint run at a time and
//! the others skip that turn.
//!
//! Durability does not change: a posting is acknowledged after its `COMMIT`
//! synced the WAL, checkpointed or not.

use std::time::Duration;

use deadpool_sqlite::rusqlite;
use tokio::task::JoinHandle;

use crate::log_limit::{LogLimiter, INTERVAL as LOG_INTERVAL};

/// How often the WAL is checkpointed.
pub const INTERVAL: Duration = Duration::from_secs(1);

/// WAL pages (4 KiB each by default) past which a committing connection
/// checkpoints by itself (`PRAGMA wal_autocheckpoint`; SQLite's default is
/// 1,000).
pub const SAFETY_NET_PAGES: u32 = 10_000;

/// Checkpoints that failed (disk full, I/O error, a file gone); logged at
/// most once per interval.
static FAILURES: LogLimiter =
    LogLimiter::new("WAL checkpoints failed", tracing::Level::WARN, LOG_INTERVAL);

/// The background checkpoint task of one ledger; stopped when dropped.
#[derive(Debug)]
pub struct Checkpointer {
    task: JoinHandle<()>,
}

impl Checkpointer {
    /// Starts checkpointing the WAL of the database that `open` connects to
    /// every [`INTERVAL`], on a blocking thread. `open` makes the
    /// connection (with the ledger's pragmas), once, and again after a
    /// failure. Needs a tokio runtime.
    pub fn start<F>(open: F) -> Self
    where
        F: Fn() -> rusqlite::Result<rusqlite::Connection> + Send + Sync + 'static,
    {
        Checkpointer {
            task: tokio::spawn(run(open)),
        }
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Runs one passive checkpoint on `conn`; its report (whether another
/// checkpoint was running, frames in the WAL and copied) is not needed.
/// Errors: SQLite's.
fn checkpoint(conn: &rusqlite::Connection) -> rusqlite::Result<()> {
    conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
}

async fn run<F>(open: F)
where
    F: Fn() -> rusqlite::Result<rusqlite::Connection> + Send + Sync + 'static,
{
    let open = std::sync::Arc::new(open);
    let mut tick = tokio::time::interval(INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The first tick completes at once; the ledger was just opened.
    tick.tick().await;
    let mut conn: Option<rusqlite::Connection> = None;
    loop {
        tick.tick().await;
        let open = open.clone();
        let turn = tokio::task::spawn_blocking(move || {
            let conn = match conn {
                Some(conn) => conn,
                None => open()?,
            };
            // A connection whose checkpoint failed is dropped and opened
            // again next turn.
            checkpoint(&conn).map(|_| conn)
        })
        .await;
        conn = match turn {
            Ok(Ok(kept)) => Some(kept),
            Ok(Err(e)) => {
                FAILURES.report(&format!("cannot checkpoint the SQLite WAL: {e}"));
                None
            }
            // The blocking pool is shutting down.
            Err(_) => return,
        };
    }
}
