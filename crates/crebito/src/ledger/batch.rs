//! Group commit in the instance: postings queue up, and while one batch is
//! being applied the next arrivals form the next batch.
//!
//! * A queue has at most one batch in flight. A lone posting goes at once
//!   (there is no timer); postings that arrive while a batch's round trip is
//!   in flight wait for it and then go together, at most
//!   [`BatchOptions::max_batch`] at a time, in arrival order.
//! * A batch is applied by the storage in ONE transaction and ONE commit
//!   ([`ApplyBatch`]): each posting is judged on the balance left by the
//!   ones before it, so a refused debit refuses only itself, and each gets
//!   its own answer. When the batch as a whole fails (the database is down,
//!   the statement timed out), none of it is applied — or, when the
//!   connection was lost after the batch was sent, its outcome is unknown —
//!   and every member is answered [`LedgerError::Unavailable`] (503) with
//!   the batch's cause ([`BatchFailed`]) — except a batch the database
//!   refused for one posting's row ([`super::RowRefused`]): its postings
//!   are applied again one by one, and only that posting fails.
//! * Each posting's outcome is counted in `crebito_postings_total` here,
//!   where it is decided, also when its client has hung up meanwhile.
//! * Queues are keyed by [`Scope`]: one per account on PostgreSQL, so that
//!   postings for one account — a hot one, or one whose row another session
//!   keeps locked — hold at most one pooled connection and never starve the
//!   other accounts, statements or health checks; one per instance on
//!   SQLite, whose file has a single writer anyway.
//! * Bounded: a queue holds at most [`BatchOptions::max_queue`] waiting
//!   postings (one more is answered 503 at once), and a posting that is
//!   still waiting when its deadline ([`BatchOptions::max_wait`], the
//!   acquire timeout) passes leaves the queue, unapplied, with a 503. Both
//!   refusals carry a [`QueueRefusal`] as their cause.

use std::collections::{HashMap, VecDeque};
use std::error::Error;
use std::fmt;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::time::Instant;
use tracing::Instrument;

use super::LedgerError;
use crate::domain::{AccountId, Balance, IdempotencyKey, Transaction};
use crate::metrics::StorageMetrics;

/// One posting request, as queued: the account, the validated transaction
/// and its optional idempotency key (docs/contract.md §2.1, §2.6).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Posting {
    /// The account to post to.
    pub account: AccountId,
    /// What to post.
    pub transaction: Transaction,
    /// The client's `Idempotency-Key`, if any.
    pub key: Option<IdempotencyKey>,
}

impl Posting {
    /// A posting of `transaction` to `account`, with the client's `key`.
    pub fn new(
        account: AccountId,
        transaction: &Transaction,
        key: Option<&IdempotencyKey>,
    ) -> Self {
        Posting {
            account,
            transaction: transaction.clone(),
            key: key.cloned(),
        }
    }
}

/// The answer to one posting: the balance right after it, or why it was
/// refused ([`LedgerError::AccountNotFound`], or [`LedgerError::Refused`]
/// for the limit, an overflow or a reused `Idempotency-Key`).
pub type PostingResult = Result<Balance, LedgerError>;

/// Why a posting queue answered a posting 503 without applying it (the
/// cause of its [`LedgerError::Unavailable`]; counted as `queue_full` and
/// `queue_timeout` in `crebito_unavailable_total`, docs/operations.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum QueueRefusal {
    /// [`BatchOptions::max_queue`] postings were already waiting.
    #[error("posting queue full")]
    Full,
    /// The posting waited [`BatchOptions::max_wait`] without being taken
    /// into a batch.
    #[error("posting waited too long in the queue")]
    WaitedTooLong,
}

/// The cause of a member's 503 when its whole batch failed: the batch's
/// one error, shared by the answers of all its members, so that each keeps
/// the whole source chain (for the log, and for the cause counted in
/// `crebito_unavailable_total`).
#[derive(Debug)]
pub struct BatchFailed {
    /// How many postings the batch held.
    pub members: usize,
    /// Why it failed.
    pub error: Arc<LedgerError>,
}

impl fmt::Display for BatchFailed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "its batch of {} postings failed", self.members)
    }
}

impl Error for BatchFailed {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        Some(&*self.error)
    }
}

/// Storage that applies a batch of postings atomically.
pub trait ApplyBatch: Send + Sync + 'static {
    /// Applies `postings` in order in one transaction with one commit, each
    /// judged on the balance left by the ones before it, and returns one
    /// result per posting, in the same order. A posting whose key was
    /// already used (earlier in the batch too) gets the recorded outcome.
    ///
    /// `Err` (only [`LedgerError::Unavailable`]) means nothing was
    /// applied. `deadline` is when the earliest member stops waiting for
    /// storage that is busy elsewhere (a write lock held by another
    /// process, no free connection).
    fn apply_batch(
        &self,
        postings: &[Posting],
        deadline: Instant,
    ) -> impl Future<Output = Result<Vec<PostingResult>, LedgerError>> + Send;
}

/// Which postings share a queue (and so a batch).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// One queue per account: batches touch one account, and an account has
    /// at most one batch in flight per instance (PostgreSQL).
    Account,
    /// One queue for the instance: batches mix accounts (SQLite).
    Instance,
}

/// Limits of the posting queues.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchOptions {
    /// Most postings applied in one batch (one transaction). At least 1.
    pub max_batch: usize,
    /// Most postings waiting in one queue (per account on PostgreSQL, per
    /// instance on SQLite) besides the batch in flight; one more is answered
    /// 503 at once. At least 1.
    pub max_queue: usize,
    /// Longest a posting waits in its queue, and for busy storage, before it
    /// is answered 503 unapplied (the acquire timeout).
    pub max_wait: Duration,
}

impl Default for BatchOptions {
    fn default() -> Self {
        BatchOptions {
            max_batch: 64,
            max_queue: 1024,
            max_wait: Duration::from_secs(2),
        }
    }
}

/// Counts of batches sent by size, for the log line at shutdown: bucket
/// `i` counts batches of `2^(i-1)+1 ..= 2^i` postings (1, 2, 3–4, 5–8, … ,
/// 65 and more), the buckets of `crebito_posting_batch_size`.
pub const SIZE_BUCKETS: usize = 8;

/// The queues of one instance in front of an [`ApplyBatch`] storage.
pub struct Batcher<A> {
    shared: Arc<Shared<A>>,
}

impl<A> Clone for Batcher<A> {
    fn clone(&self) -> Self {
        Batcher {
            shared: self.shared.clone(),
        }
    }
}

struct Shared<A> {
    storage: A,
    options: BatchOptions,
    scope: Scope,
    /// A queue exists exactly while its drain task runs.
    queues: Mutex<HashMap<Option<AccountId>, VecDeque<Waiting>>>,
    next_ticket: std::sync::atomic::AtomicU64,
    /// For the log line at shutdown, whether metrics are on or not.
    sizes: Mutex<[u64; SIZE_BUCKETS]>,
    /// `crebito_posting_batch_size`.
    metrics: StorageMetrics,
}

struct Waiting {
    ticket: u64,
    posting: Posting,
    deadline: Instant,
    answer: oneshot::Sender<PostingResult>,
}

impl<A: ApplyBatch> Batcher<A> {
    /// Queues in front of `storage`, recording the size of every batch
    /// sent in `metrics` (`crebito_posting_batch_size`).
    pub fn new(storage: A, scope: Scope, options: BatchOptions, metrics: StorageMetrics) -> Self {
        let options = BatchOptions {
            max_batch: options.max_batch.max(1),
            max_queue: options.max_queue.max(1),
            ..options
        };
        Batcher {
            shared: Arc::new(Shared {
                storage,
                options,
                scope,
                queues: Mutex::new(HashMap::new()),
                next_ticket: Default::default(),
                sizes: Mutex::new([0; SIZE_BUCKETS]),
                metrics,
            }),
        }
    }

    /// The storage behind the queues.
    pub fn storage(&self) -> &A {
        &self.shared.storage
    }

    /// Batches sent so far, by size (see [`SIZE_BUCKETS`]), applied or
    /// failed.
    pub fn batch_sizes(&self) -> [u64; SIZE_BUCKETS] {
        *lock(&self.shared.sizes)
    }

    /// Queues `posting` and waits for its own answer.
    ///
    /// Errors: those of [`PostingResult`], and [`LedgerError::Unavailable`]
    /// when the queue is full, when the posting waited longer than
    /// [`BatchOptions::max_wait`] without being applied, or when its batch
    /// failed as a whole (nothing of it applied).
    pub async fn post(&self, posting: Posting) -> PostingResult {
        let shared = &self.shared;
        let key = match shared.scope {
            Scope::Account => Some(posting.account),
            Scope::Instance => None,
        };
        let ticket = shared
            .next_ticket
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let deadline = Instant::now() + shared.options.max_wait;
        let (answer, mut answered) = oneshot::channel();
        let waiting = Waiting {
            ticket,
            posting,
            deadline,
            answer,
        };
        {
            let mut queues = lock(&shared.queues);
            match queues.get_mut(&key) {
                Some(queue) if queue.len() >= shared.options.max_queue => {
                    shared.metrics.posting(UNAVAILABLE);
                    return Err(LedgerError::unavailable(
                        format!("posting queue full ({} waiting)", queue.len()),
                        QueueRefusal::Full,
                    ));
                }
                Some(queue) => queue.push_back(waiting),
                None => {
                    queues.insert(key, VecDeque::from([waiting]));
                    tokio::spawn(drain(shared.clone(), key));
                }
            }
        }
        match tokio::time::timeout_at(deadline, &mut answered).await {
            Ok(answer) => answer.unwrap_or_else(|_| Err(dropped())),
            Err(_) => {
                // Still waiting in the queue: leave it, never applied.
                // Already taken into a batch: that batch answers (its round
                // trip is bounded by the storage's own timeouts).
                let removed = lock(&shared.queues).get_mut(&key).is_some_and(|queue| {
                    let before = queue.len();
                    queue.retain(|w| w.ticket != ticket);
                    queue.len() < before
                });
                if removed {
                    shared.metrics.posting(UNAVAILABLE);
                    Err(LedgerError::unavailable(
                        format!(
                            "posting waited {} ms in the queue",
                            shared.options.max_wait.as_millis()
                        ),
                        QueueRefusal::WaitedTooLong,
                    ))
                } else {
                    answered.await.unwrap_or_else(|_| Err(dropped()))
                }
            }
        }
    }
}

fn dropped() -> LedgerError {
    LedgerError::unavailable_because("the posting's batch was abandoned")
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // The data (queues of senders, counters) stays consistent even if a
    // holder panicked: every critical section is a few container calls.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Removes the queue when the drain task ends in any way (a panic
/// included), so that its waiting postings are answered (503, by dropping
/// their senders) and the next posting starts a new drain task.
struct QueueGuard<'a, A> {
    shared: &'a Shared<A>,
    key: Option<AccountId>,
    /// False once the task removed its queue itself: a queue under the same
    /// key may then already belong to a new drain task.
    armed: bool,
}

impl<A> Drop for QueueGuard<'_, A> {
    fn drop(&mut self) {
        if self.armed {
            lock(&self.shared.queues).remove(&self.key);
        }
    }
}

/// Applies the queue's postings batch after batch until it is empty.
async fn drain<A: ApplyBatch>(shared: Arc<Shared<A>>, key: Option<AccountId>) {
    let mut guard = QueueGuard {
        shared: &shared,
        key,
        armed: true,
    };
    loop {
        let (batch, expired) = {
            let mut queues = lock(&shared.queues);
            let Some(queue) = queues.get_mut(&key) else {
                guard.armed = false;
                break;
            };
            // Those past their deadline (normally already gone, answered by
            // their own timer) are never applied.
            let now = Instant::now();
            let expired: Vec<Waiting> = if queue.iter().any(|w| w.deadline <= now) {
                let (live, expired): (VecDeque<Waiting>, VecDeque<Waiting>) = std::mem::take(queue)
                    .into_iter()
                    .partition(|w| w.deadline > now);
                *queue = live;
                expired.into()
            } else {
                Vec::new()
            };
            if queue.is_empty() {
                queues.remove(&key);
                guard.armed = false;
                (Vec::new(), expired)
            } else {
                let take = queue.len().min(shared.options.max_batch);
                (queue.drain(..take).collect::<Vec<_>>(), expired)
            }
        };
        for waiting in expired {
            shared.metrics.posting(UNAVAILABLE);
            let _ = waiting.answer.send(Err(LedgerError::unavailable(
                "posting left the queue unapplied",
                QueueRefusal::WaitedTooLong,
            )));
        }
        if batch.is_empty() {
            break;
        }
        let deadlines: Vec<Instant> = batch.iter().map(|w| w.deadline).collect();
        let deadline = deadlines.iter().copied().min().unwrap_or_else(Instant::now);
        let (postings, answers): (Vec<Posting>, Vec<_>) =
            batch.into_iter().map(|w| (w.posting, w.answer)).unzip();
        // The batch's own span (debug): its postings come from several
        // requests, each of which has its `ledger` span waiting on it.
        let span = tracing::debug_span!(
            "batch",
            postings = postings.len(),
            account = key.map(AccountId::get)
        );
        let started = Instant::now();
        let outcome = shared
            .storage
            .apply_batch(&postings, deadline)
            .instrument(span.clone())
            .await;
        shared.sent(postings.len());
        span.in_scope(|| {
            tracing::debug!(
                elapsed_ms = started.elapsed().as_secs_f64() * 1000.0,
                applied = outcome.is_ok(),
                "batch done"
            )
        });
        let outcome = match outcome {
            Err(error) if postings.len() > 1 && error.row_refused() => {
                one_by_one(&shared, &postings, &deadlines, &error)
                    .instrument(span)
                    .await
            }
            other => other,
        };
        let results = match outcome {
            Ok(results) if results.len() == answers.len() => results,
            Ok(results) => {
                let error = format!(
                    "a batch of {} postings came back with {} answers",
                    answers.len(),
                    results.len()
                );
                tracing::error!("{error}");
                failed(answers.len(), LedgerError::unavailable_because(error))
            }
            Err(error) => failed(answers.len(), error),
        };
        for (answer, result) in answers.into_iter().zip(results) {
            // Counted here, where the outcome is decided: a client that
            // hung up while its posting waited is counted too.
            shared.metrics.posting(outcome_label(&result));
            let _ = answer.send(result);
        }
    }
}

impl<A> Shared<A> {
    /// Counts one batch of `postings` sent to the storage.
    fn sent(&self, postings: usize) {
        lock(&self.sizes)[size_bucket(postings)] += 1;
        self.metrics.batch(postings);
    }
}

/// The `unavailable` outcome of `crebito_postings_total`.
const UNAVAILABLE: &str = "unavailable";

/// The `outcome` label of `crebito_postings_total` for a posting's answer
/// (docs/operations.md).
fn outcome_label(result: &PostingResult) -> &'static str {
    use crate::domain::PostingError;
    match result {
        Ok(_) => "applied",
        Err(LedgerError::Refused(PostingError::LimitExceeded)) => "limit_exceeded",
        Err(LedgerError::Refused(PostingError::Overflow)) => "overflow",
        Err(LedgerError::Refused(PostingError::IdempotencyKeyReused)) => "idempotency_key_reused",
        Err(LedgerError::AccountNotFound) => "account_not_found",
        Err(LedgerError::Unavailable { .. }) => UNAVAILABLE,
    }
}

/// The answers to a batch that the database refused as a whole because of
/// one posting's row ([`super::RowRefused`], `error`): nothing of it was
/// applied, so each posting is applied again alone, in order, each before
/// its own `deadlines`, and only the posting whose row is refused fails
/// (503). Rare by construction: a valid posting meets every constraint of
/// the schema the ledger creates.
async fn one_by_one<A: ApplyBatch>(
    shared: &Shared<A>,
    postings: &[Posting],
    deadlines: &[Instant],
    error: &LedgerError,
) -> Result<Vec<PostingResult>, LedgerError> {
    tracing::warn!(
        error = %super::ErrorChain(error),
        postings = postings.len(),
        "the database refused a row of a batch; applying its postings one by one"
    );
    let mut results = Vec::with_capacity(postings.len());
    for (posting, deadline) in postings.iter().zip(deadlines) {
        let alone = shared
            .storage
            .apply_batch(std::slice::from_ref(posting), *deadline)
            .await;
        shared.sent(1);
        results.push(match alone {
            Ok(mut answers) if answers.len() == 1 => answers.remove(0),
            Ok(answers) => Err(LedgerError::unavailable_because(format!(
                "a batch of 1 posting came back with {} answers",
                answers.len()
            ))),
            Err(error) => Err(error),
        });
    }
    Ok(results)
}

/// The answers of a batch that failed as a whole: 503 for every member. A
/// lone member gets the error itself; several share it ([`BatchFailed`]).
fn failed(members: usize, error: LedgerError) -> Vec<PostingResult> {
    if members == 1 {
        return vec![Err(error)];
    }
    let error = Arc::new(error);
    (0..members)
        .map(|_| {
            Err(LedgerError::unavailable(
                "posting not applied",
                BatchFailed {
                    members,
                    error: error.clone(),
                },
            ))
        })
        .collect()
}

fn size_bucket(size: usize) -> usize {
    let bucket = usize::BITS - size.saturating_sub(1).leading_zeros();
    (bucket as usize).min(SIZE_BUCKETS - 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Amount, Description, Kind};
    use crate::ledger::{ErrorChain, UnavailableCause};
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn posting(account: i32, cents: i64) -> Posting {
        Posting {
            account: AccountId::new(account).unwrap(),
            transaction: Transaction {
                amount: Amount::new(cents).unwrap(),
                kind: Kind::Credit,
                description: Description::new("t").unwrap(),
            },
            key: None,
        }
    }

    /// Records every batch; answers each posting with its amount as the
    /// balance, after `delay`; fails batches containing amount 13, and
    /// those containing 17 as a refused row.
    #[derive(Default)]
    struct Recorder {
        batches: Mutex<Vec<Vec<i64>>>,
        in_flight: AtomicUsize,
        max_in_flight: AtomicUsize,
        delay: Duration,
    }

    impl ApplyBatch for Arc<Recorder> {
        async fn apply_batch(
            &self,
            postings: &[Posting],
            _deadline: Instant,
        ) -> Result<Vec<PostingResult>, LedgerError> {
            let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
            self.max_in_flight.fetch_max(now, Ordering::SeqCst);
            let amounts: Vec<i64> = postings
                .iter()
                .map(|p| p.transaction.amount.cents())
                .collect();
            lock(&self.batches).push(amounts.clone());
            tokio::time::sleep(self.delay).await;
            self.in_flight.fetch_sub(1, Ordering::SeqCst);
            if amounts.contains(&17) {
                return Err(LedgerError::unavailable(
                    "refused",
                    crate::ledger::RowRefused {
                        constraint: "no_17".into(),
                        source: "row 17".into(),
                    },
                ));
            }
            if amounts.contains(&13) {
                // A cause that `crebito_unavailable_total` names.
                return Err(LedgerError::unavailable(
                    "boom",
                    deadpool_postgres::PoolError::Timeout(deadpool_postgres::TimeoutType::Wait),
                ));
            }
            Ok(amounts
                .into_iter()
                .map(|balance| Ok(Balance { balance, limit: 0 }))
                .collect())
        }
    }

    /// Queues in front of `storage` that record their metrics nowhere.
    fn queues(
        storage: &Arc<Recorder>,
        scope: Scope,
        options: BatchOptions,
    ) -> Batcher<Arc<Recorder>> {
        Batcher::new(storage.clone(), scope, options, StorageMetrics::default())
    }

    /// Per-instance queues in front of `storage` with the default options,
    /// and the metrics they record.
    fn counted_queues(storage: &Arc<Recorder>) -> (Batcher<Arc<Recorder>>, StorageMetrics) {
        let metrics = StorageMetrics::default();
        let batcher = Batcher::new(
            storage.clone(),
            Scope::Instance,
            BatchOptions::default(),
            metrics.clone(),
        );
        (batcher, metrics)
    }

    fn recorder(delay_ms: u64) -> Arc<Recorder> {
        Arc::new(Recorder {
            delay: Duration::from_millis(delay_ms),
            ..Recorder::default()
        })
    }

    #[test]
    fn size_buckets() {
        let sizes: Vec<usize> = [1, 2, 3, 4, 5, 8, 9, 64, 65, 1000]
            .into_iter()
            .map(size_bucket)
            .collect();
        assert_eq!(sizes, [0, 1, 2, 2, 3, 3, 4, 6, 7, 7]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_lone_posting_goes_at_once_and_arrivals_form_the_next_batch() {
        let storage = recorder(10);
        let (batcher, metrics) = counted_queues(&storage);
        let first = tokio::spawn({
            let b = batcher.clone();
            async move { b.post(posting(1, 1)).await }
        });
        tokio::time::sleep(Duration::from_millis(1)).await;
        let rest: Vec<_> = (2..=5)
            .map(|i| {
                let b = batcher.clone();
                tokio::spawn(async move { b.post(posting(1, i)).await })
            })
            .collect();
        assert_eq!(first.await.unwrap().unwrap().balance, 1);
        for (i, task) in rest.into_iter().enumerate() {
            assert_eq!(task.await.unwrap().unwrap().balance, i as i64 + 2);
        }
        assert_eq!(*lock(&storage.batches), vec![vec![1], vec![2, 3, 4, 5]]);
        assert_eq!(batcher.batch_sizes()[..3], [1, 0, 1]);
        // The same sizes in /metrics.
        let text = crate::metrics::Metrics::new("test", Some(&metrics), || None).render();
        for (le, count) in [("1", 1), ("2", 1), ("4", 2)] {
            let line = format!("crebito_posting_batch_size_bucket{{le=\"{le}\"}} {count}");
            assert!(text.lines().any(|l| l == line), "{line} in\n{text}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn batches_are_bounded_and_keep_arrival_order() {
        let storage = recorder(10);
        let options = BatchOptions {
            max_batch: 3,
            ..BatchOptions::default()
        };
        let batcher = queues(&storage, Scope::Instance, options);
        let tasks: Vec<_> = (1..=8)
            .map(|i| {
                let b = batcher.clone();
                tokio::spawn(async move { b.post(posting(1, i)).await })
            })
            .collect();
        for task in tasks {
            task.await.unwrap().unwrap();
        }
        assert_eq!(
            *lock(&storage.batches),
            vec![vec![1, 2, 3], vec![4, 5, 6], vec![7, 8]]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_queue_answers_at_once() {
        let storage = recorder(100);
        let options = BatchOptions {
            max_batch: 1,
            max_queue: 2,
            ..BatchOptions::default()
        };
        let batcher = queues(&storage, Scope::Instance, options);
        let mut tasks = Vec::new();
        for i in 1..=3 {
            let b = batcher.clone();
            tasks.push(tokio::spawn(async move { b.post(posting(1, i)).await }));
            // Let the first one be taken into its batch.
            tokio::task::yield_now().await;
        }
        let started = Instant::now();
        let refused = batcher.post(posting(1, 4)).await;
        assert_eq!(
            refused.unwrap_err().unavailable_cause(),
            Some(UnavailableCause::QueueFull)
        );
        assert_eq!(started.elapsed(), Duration::ZERO);
        for task in tasks {
            task.await.unwrap().unwrap();
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_batch_answers_every_member_503() {
        let storage = recorder(10);
        let batcher = queues(&storage, Scope::Instance, BatchOptions::default());
        let first = tokio::spawn({
            let b = batcher.clone();
            async move { b.post(posting(1, 1)).await }
        });
        tokio::task::yield_now().await;
        let members: Vec<_> = [12, 13, 14]
            .into_iter()
            .map(|i| {
                let b = batcher.clone();
                tokio::spawn(async move { b.post(posting(1, i)).await })
            })
            .collect();
        assert!(first.await.unwrap().is_ok());
        // Each member is 503 with the batch's own cause and message.
        for member in members {
            let error = member.await.unwrap().unwrap_err();
            assert_eq!(
                error.unavailable_cause(),
                Some(UnavailableCause::PoolTimeout)
            );
            assert!(
                ErrorChain(&error).to_string().contains("boom"),
                "{}",
                ErrorChain(&error)
            );
        }
        // The queue recovers.
        assert!(batcher.post(posting(1, 2)).await.is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn a_batch_refused_for_one_row_is_applied_one_by_one_and_every_outcome_is_counted() {
        let storage = recorder(10);
        let (batcher, metrics) = counted_queues(&storage);
        let first = tokio::spawn({
            let b = batcher.clone();
            async move { b.post(posting(1, 1)).await }
        });
        tokio::task::yield_now().await;
        let members: Vec<_> = [2, 17, 3]
            .into_iter()
            .map(|i| {
                let b = batcher.clone();
                tokio::spawn(async move { b.post(posting(1, i)).await })
            })
            .collect();
        assert!(first.await.unwrap().is_ok());
        let mut answers = Vec::new();
        for member in members {
            answers.push(match member.await.unwrap() {
                Ok(balance) => balance.balance.to_string(),
                Err(e) if e.row_refused() => "refused".to_owned(),
                Err(e) => format!("{e:?}"),
            });
        }
        assert_eq!(answers, ["2", "refused", "3"]);
        assert_eq!(
            *lock(&storage.batches),
            vec![vec![1], vec![2, 17, 3], vec![2], vec![17], vec![3]]
        );
        // Each posting counted once, by its own outcome.
        let text = crate::metrics::Metrics::new("test", Some(&metrics), || None).render();
        for line in [
            r#"crebito_postings_total{outcome="applied"} 3"#,
            r#"crebito_postings_total{outcome="unavailable"} 1"#,
        ] {
            assert!(text.lines().any(|l| l == line), "{line} in\n{text}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn accounts_have_their_own_queues() {
        let storage = recorder(50);
        let batcher = queues(&storage, Scope::Account, BatchOptions::default());
        let tasks: Vec<_> = [(1, 1), (1, 2), (2, 3), (1, 4), (2, 5), (3, 6)]
            .into_iter()
            .map(|(account, i)| {
                let b = batcher.clone();
                tokio::spawn(async move { b.post(posting(account, i)).await })
            })
            .collect();
        for task in tasks {
            task.await.unwrap().unwrap();
        }
        let mut batches = lock(&storage.batches).clone();
        batches.sort();
        // All arrive before any drain task runs: one batch per account.
        assert_eq!(batches, vec![vec![1, 2, 4], vec![3, 5], vec![6]]);
        assert_eq!(storage.max_in_flight.load(Ordering::SeqCst), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn a_posting_waits_at_most_max_wait_in_the_queue_and_is_not_applied() {
        let storage = recorder(5_000);
        let options = BatchOptions {
            max_wait: Duration::from_millis(300),
            ..BatchOptions::default()
        };
        let batcher = queues(&storage, Scope::Instance, options);
        let first = tokio::spawn({
            let b = batcher.clone();
            async move { b.post(posting(1, 1)).await }
        });
        tokio::task::yield_now().await;
        let started = Instant::now();
        let second = batcher.post(posting(1, 2)).await;
        assert_eq!(
            second.unwrap_err().unavailable_cause(),
            Some(UnavailableCause::QueueTimeout)
        );
        assert_eq!(started.elapsed(), Duration::from_millis(300));
        // The first batch is bounded by the storage, not by the queue.
        assert!(first.await.unwrap().is_ok());
        assert_eq!(*lock(&storage.batches), vec![vec![1]]);
    }
}
