//! The writer lock of a SQLite ledger shared by several processes.
//!
//! `BEGIN IMMEDIATE` serialises the writers of one SQLite file, but a
//! writer that finds the file locked by another process waits in SQLite's
//! busy handler, which sleeps and polls with growing intervals (1, 2, 5,
//! 10 … 100 ms): it notices the release up to 100 ms late. Before each
//! batch, the instance's batch writer therefore takes an exclusive
//! `flock(2)` on a companion file next to the database
//! (`<database>.writer-lock`, created when missing and never deleted) and
//! releases it right after `COMMIT` or `ROLLBACK`. A writer that finds it
//! taken sleeps in the kernel and is woken the moment it is released.
//!
//! The lock only decides who goes next: correctness still rests on
//! `BEGIN IMMEDIATE` and SQLite's busy timeout, which also keep serving a
//! writer that does not take this lock (migrations at start, the `sqlite3`
//! shell, an older release, a lock file deleted while in use).
//!
//! `flock` locks belong to an open file description, and the kernel wait
//! has no timeout. Each acquisition opens the file again (a description of
//! its own, so that two waiters of one process exclude each other too).
//! A contended acquisition waits in a thread of its own, and its waiter
//! gives up at the batch's deadline; a lock that thread obtains after its
//! waiter gave up is released at once (the guard is dropped with the
//! channel that would have carried it), so it is never leaked. While
//! [`MAX_WAITERS`] such threads are already waiting (the lock has stayed
//! taken through several acquire timeouts: a writer elsewhere is stuck), a
//! new acquisition is refused as busy at once instead of adding a thread.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use rustix::fs::{flock, FlockOperation};
use rustix::io::Errno;

use super::LedgerError;
use crate::log_limit::{LogLimiter, INTERVAL};

/// Lock files that cannot be opened: writes go on without the lock (only
/// slower to hand over), and this is logged at most once per interval.
static UNUSABLE: LogLimiter = LogLimiter::new(
    "writer-lock files could not be opened",
    tracing::Level::WARN,
    INTERVAL,
);

/// Most threads of one [`WriterLock`] waiting in the kernel at once. An
/// instance has at most one batch, one health probe and one purge writing
/// at a time; the rest are waits whose waiter gave up.
pub const MAX_WAITERS: usize = 8;

/// The writer lock of one SQLite database file; see the module
/// documentation.
#[derive(Debug)]
pub struct WriterLock {
    path: PathBuf,
    /// Threads now waiting in the kernel for the lock.
    waiters: Arc<AtomicUsize>,
}

/// The lock, held until dropped.
#[derive(Debug)]
pub struct WriterGuard {
    /// `None` when the lock file could not be opened (see [`WriterLock::acquire`]).
    file: Option<File>,
}

impl Drop for WriterGuard {
    fn drop(&mut self) {
        if let Some(file) = self.file.take() {
            // Closing the last descriptor releases the lock anyway; say it.
            let _ = flock(&file, FlockOperation::Unlock);
        }
    }
}

impl WriterGuard {
    /// Whether the lock is really held (false when its file could not be
    /// opened).
    pub fn is_held(&self) -> bool {
        self.file.is_some()
    }
}

/// The writer lock stayed taken by another writer until the wait's
/// deadline: the cause of the [`LedgerError::Unavailable`] that refuses the
/// batch (counted as `busy`, like SQLite's own busy timeout).
#[derive(Debug, thiserror::Error)]
#[error("another writer held the writer lock {path} for the whole wait ({waited_ms} ms)")]
pub struct WriterLockBusy {
    /// The lock file.
    pub path: String,
    /// How long the writer waited, in milliseconds.
    pub waited_ms: u128,
}

impl WriterLock {
    /// The writer lock of the database file `database`: the file
    /// `<database>.writer-lock` beside it. Nothing is opened yet.
    pub fn for_database(database: &Path) -> WriterLock {
        let mut path = database.as_os_str().to_owned();
        path.push(".writer-lock");
        WriterLock {
            path: path.into(),
            waiters: Arc::default(),
        }
    }

    /// The lock file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Takes the lock, waiting in the kernel (no polling) until another
    /// writer releases it or `deadline` passes.
    ///
    /// When the lock file cannot be opened or locked (a read-only
    /// directory, a file system without `flock`), the guard holds nothing
    /// and the write goes on, serialised by SQLite alone; this is logged.
    ///
    /// Errors: [`LedgerError::Unavailable`] caused by [`WriterLockBusy`]
    /// when the lock stayed taken until `deadline`.
    pub async fn acquire(
        &self,
        deadline: tokio::time::Instant,
    ) -> Result<WriterGuard, LedgerError> {
        let started = tokio::time::Instant::now();
        let file = match self.open() {
            Ok(file) => file,
            Err(e) => return Ok(self.unusable(e)),
        };
        match flock(&file, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => return Ok(WriterGuard { file: Some(file) }),
            Err(Errno::WOULDBLOCK) => {}
            Err(e) => return Ok(self.unusable(e.into())),
        }
        if self.waiters.fetch_add(1, Ordering::AcqRel) >= MAX_WAITERS {
            self.waiters.fetch_sub(1, Ordering::AcqRel);
            return Err(self.busy(started));
        }
        let waiters = self.waiters.clone();
        let (sender, receiver) = tokio::sync::oneshot::channel();
        // A thread of its own, not the runtime's blocking pool: a wait that
        // outlives its waiter must not hold up the runtime's shutdown.
        let spawned = std::thread::Builder::new()
            .name("crebito-writer-lock".into())
            .spawn(move || {
                let locked = loop {
                    match flock(&file, FlockOperation::LockExclusive) {
                        Err(Errno::INTR) => continue,
                        other => break other,
                    }
                };
                waiters.fetch_sub(1, Ordering::AcqRel);
                // When the waiter gave up, the guard comes back (or is
                // dropped with the channel) and the lock is released.
                let _ = sender.send(locked.map(|()| WriterGuard { file: Some(file) }));
            });
        if let Err(e) = spawned {
            self.waiters.fetch_sub(1, Ordering::AcqRel);
            return Err(LedgerError::unavailable(
                "cannot start a thread to wait for the writer lock",
                e,
            ));
        }
        match tokio::time::timeout_at(deadline, receiver).await {
            Ok(Ok(Ok(guard))) => Ok(guard),
            Ok(Ok(Err(e))) => Ok(self.unusable(e.into())),
            Ok(Err(_)) => Err(LedgerError::unavailable_because(
                "the thread waiting for the writer lock ended without an answer",
            )),
            Err(_) => Err(self.busy(started)),
        }
    }

    fn busy(&self, started: tokio::time::Instant) -> LedgerError {
        LedgerError::unavailable(
            "the database is busy",
            WriterLockBusy {
                path: self.path.display().to_string(),
                waited_ms: started.elapsed().as_millis(),
            },
        )
    }

    fn open(&self) -> std::io::Result<File> {
        OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&self.path)
    }

    fn unusable(&self, error: std::io::Error) -> WriterGuard {
        UNUSABLE.report(&format!(
            "cannot use the writer lock {} ({error}): writers of this database are \
             serialised by SQLite's busy timeout alone",
            self.path.display()
        ));
        WriterGuard { file: None }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::UnavailableCause;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;
    use tokio::time::Instant;

    /// How long a test waits for something that should happen at once.
    const PROMPTLY: Duration = Duration::from_secs(10);

    /// A holder of the lock as another process would take it: its own
    /// open file description.
    fn hold(lock: &WriterLock) -> File {
        let file = lock.open().unwrap();
        flock(&file, FlockOperation::NonBlockingLockExclusive).expect("the lock is free");
        file
    }

    /// An acquisition that waits `wait` fails as busy.
    async fn assert_busy_after(lock: &WriterLock, wait: Duration) {
        let error = lock.acquire(Instant::now() + wait).await.unwrap_err();
        assert_eq!(
            error.unavailable_cause(),
            Some(UnavailableCause::Busy),
            "{error:?}"
        );
    }

    fn is_free(lock: &WriterLock) -> bool {
        let file = lock.open().unwrap();
        flock(&file, FlockOperation::NonBlockingLockExclusive).is_ok()
    }

    /// A waiter sleeps while another holder has the lock and gets it only
    /// after the release: the events happen in that order.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_waiter_gets_the_lock_after_its_release() {
        let dir = tempfile::tempdir().unwrap();
        let lock = Arc::new(WriterLock::for_database(&dir.path().join("l.db")));
        let holder = hold(&lock);
        let events = Arc::new(Mutex::new(Vec::new()));
        let waiter = tokio::spawn({
            let (lock, events) = (lock.clone(), events.clone());
            async move {
                let guard = lock.acquire(Instant::now() + PROMPTLY).await.unwrap();
                assert!(guard.is_held());
                events.lock().unwrap().push("acquired");
                guard
            }
        });
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(!waiter.is_finished(), "the waiter got a held lock");
        events.lock().unwrap().push("released");
        drop(holder);
        let guard = waiter.await.unwrap();
        assert_eq!(*events.lock().unwrap(), ["released", "acquired"]);
        assert!(!is_free(&lock), "the waiter holds it");
        drop(guard);
        assert!(is_free(&lock));
    }

    /// A wait past its deadline fails as busy; the thread that gets the
    /// lock after its waiter gave up releases it at once, so the next
    /// writer gets it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_lock_obtained_after_the_deadline_is_not_leaked() {
        let dir = tempfile::tempdir().unwrap();
        let lock = WriterLock::for_database(&dir.path().join("l.db"));
        let holder = hold(&lock);
        assert_busy_after(&lock, Duration::from_millis(200)).await;
        drop(holder);
        let guard = lock.acquire(Instant::now() + PROMPTLY).await.unwrap();
        assert!(guard.is_held());
        drop(guard);
        let deadline = std::time::Instant::now() + PROMPTLY;
        while !is_free(&lock) {
            assert!(std::time::Instant::now() < deadline, "the lock leaked");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Two waiters of one process exclude each other (flock is per open
    /// file description, and each acquisition opens its own).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_acquisitions_of_one_process_exclude_each_other() {
        let dir = tempfile::tempdir().unwrap();
        let lock = WriterLock::for_database(&dir.path().join("l.db"));
        let first = lock.acquire(Instant::now() + PROMPTLY).await.unwrap();
        assert_busy_after(&lock, Duration::from_millis(100)).await;
        drop(first);
        assert!(lock
            .acquire(Instant::now() + PROMPTLY)
            .await
            .unwrap()
            .is_held());
    }

    /// While the lock stays taken, the waits that gave up keep at most
    /// [`MAX_WAITERS`] threads; the next acquisition is refused at once, and
    /// once the lock is released every thread ends and it is free again.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn waits_that_gave_up_keep_a_bounded_number_of_threads() {
        let dir = tempfile::tempdir().unwrap();
        let lock = WriterLock::for_database(&dir.path().join("l.db"));
        let holder = hold(&lock);
        for _ in 0..MAX_WAITERS {
            let wait = Instant::now() + Duration::from_millis(20);
            assert!(lock.acquire(wait).await.is_err());
        }
        assert_eq!(lock.waiters.load(Ordering::Acquire), MAX_WAITERS);
        let started = Instant::now();
        let error = lock.acquire(started + PROMPTLY).await.unwrap_err();
        assert_eq!(error.unavailable_cause(), Some(UnavailableCause::Busy));
        assert!(started.elapsed() < PROMPTLY / 2, "refused at once");
        drop(holder);
        let deadline = std::time::Instant::now() + PROMPTLY;
        while lock.waiters.load(Ordering::Acquire) > 0 || !is_free(&lock) {
            assert!(
                std::time::Instant::now() < deadline,
                "threads or the lock leaked"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(lock
            .acquire(Instant::now() + PROMPTLY)
            .await
            .unwrap()
            .is_held());
    }

    #[tokio::test]
    async fn a_lock_file_that_cannot_be_opened_does_not_stop_writes() {
        let lock = WriterLock::for_database(Path::new("/nonexistent-dir/l.db"));
        let guard = lock.acquire(Instant::now() + PROMPTLY).await.unwrap();
        assert!(!guard.is_held());
    }
}
