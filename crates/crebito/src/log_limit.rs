//! Rate-limited logging of repeated errors.
//!
//! An outage makes every request fail the same way; one log line per request
//! would bury everything else (and cost the disk as much as the requests).
//! A [`LogLimiter`] logs the first occurrence at once, then counts the
//! occurrences of the next [`INTERVAL`] and logs one summary line with the
//! count and the last message at its end; when an interval passes without
//! any, the next one is logged at once again.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// How often a repeated error is logged at most: once, then one summary
/// per interval.
pub const INTERVAL: Duration = Duration::from_secs(10);

/// Logs one kind of repeated event at most once per interval; see the
/// module documentation.
pub struct LogLimiter {
    /// Names the events in the summary line, e.g. "requests failed".
    what: &'static str,
    level: tracing::Level,
    interval: Duration,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Set while an interval runs (a flush is scheduled for its end).
    window_started: Option<Instant>,
    suppressed: u64,
    last: String,
}

impl LogLimiter {
    /// A limiter for events described as `what` (plural, e.g. "requests
    /// failed"), logged at `level`, at most once per `interval`.
    pub const fn new(what: &'static str, level: tracing::Level, interval: Duration) -> Self {
        LogLimiter {
            what,
            level,
            interval,
            state: Mutex::new(State {
                window_started: None,
                suppressed: 0,
                last: String::new(),
            }),
        }
    }

    /// Records one event: logged now when none was logged within the
    /// interval, otherwise counted for the interval's summary.
    ///
    /// Needs a tokio runtime to schedule the summary; outside one, every
    /// event is logged.
    pub fn report(&'static self, message: &str) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            self.emit(message);
            return;
        };
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if state.window_started.is_some() {
            state.suppressed += 1;
            message.clone_into(&mut state.last);
            return;
        }
        state.window_started = Some(Instant::now());
        drop(state);
        self.emit(message);
        runtime.spawn(self.flush_loop());
    }

    /// At the end of each interval: logs the summary of what was counted, or
    /// ends the throttling when nothing was.
    async fn flush_loop(&'static self) {
        loop {
            tokio::time::sleep(self.interval).await;
            let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
            if state.suppressed == 0 {
                state.window_started = None;
                return;
            }
            let summary = format!(
                "{} more {} in the last {} s (not logged one by one); the last: {}",
                state.suppressed,
                self.what,
                self.interval.as_secs_f64(),
                state.last
            );
            state.suppressed = 0;
            state.window_started = Some(Instant::now());
            drop(state);
            self.emit(&summary);
        }
    }

    fn emit(&self, message: &str) {
        match self.level {
            tracing::Level::ERROR => tracing::error!("{message}"),
            tracing::Level::WARN => tracing::warn!("{message}"),
            _ => tracing::info!("{message}"),
        }
    }
}

/// Requests answered 503 because the ledger failed: logged with their cause
/// (docs/operations.md), at most once per [`INTERVAL`].
pub static LEDGER_FAILURES: LogLimiter = LogLimiter::new(
    "requests failed because of the database",
    tracing::Level::ERROR,
    INTERVAL,
);

/// `GET /health` answered 503: the cause, at most once per [`INTERVAL`].
pub static UNHEALTHY: LogLimiter =
    LogLimiter::new("health checks failed", tracing::Level::WARN, INTERVAL);

/// Failed `accept` calls of the listener (out of file descriptors and the
/// like), at most once per [`INTERVAL`].
pub static ACCEPT_FAILURES: LogLimiter =
    LogLimiter::new("accept calls failed", tracing::Level::WARN, INTERVAL);

/// Logs a ledger failure through [`LEDGER_FAILURES`].
pub fn error(message: &str) {
    LEDGER_FAILURES.report(message);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    /// Counts the events written by tracing while `f` runs.
    #[derive(Clone, Default)]
    struct Lines(Arc<Mutex<Vec<String>>>);

    impl std::io::Write for Lines {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .unwrap()
                .push(String::from_utf8_lossy(bytes).into_owned());
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[tokio::test(start_paused = true)]
    async fn repeated_errors_are_counted_and_summarised() {
        static LIMITER: LogLimiter = LogLimiter::new(
            "test events",
            tracing::Level::ERROR,
            Duration::from_secs(10),
        );
        static N: AtomicUsize = AtomicUsize::new(0);
        let lines = Lines::default();
        let sink = lines.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || sink.clone())
            .with_ansi(false)
            .finish();
        let _guard = tracing::subscriber::set_default(subscriber);
        let logged = || lines.0.lock().unwrap().clone();

        for _ in 0..1000 {
            LIMITER.report(&format!("failure {}", N.fetch_add(1, Ordering::Relaxed)));
        }
        assert_eq!(logged().len(), 1, "{:?}", logged());
        assert!(logged()[0].contains("failure 0"));
        // One summary at the end of the interval, with the count and the last.
        tokio::time::sleep(Duration::from_millis(10_500)).await;
        let lines_now = logged();
        assert_eq!(lines_now.len(), 2, "{lines_now:?}");
        assert!(
            lines_now[1].contains("999 more test events in the last 10 s")
                && lines_now[1].contains("failure 999"),
            "{lines_now:?}"
        );
        // A quiet interval ends the throttling: the next one is logged at once.
        tokio::time::sleep(Duration::from_secs(11)).await;
        LIMITER.report("after the quiet");
        assert_eq!(logged().len(), 3);
        assert!(logged()[2].contains("after the quiet"));
    }
}
