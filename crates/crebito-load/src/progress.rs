//! Live progress on stderr: an indicatif bar on a terminal (elapsed/total,
//! current phase, users/s over the last second, users in flight, OK/KO so
//! far), plain lines every 10 s otherwise.

use std::io::IsTerminal;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio::sync::oneshot;
use tokio::time::Instant;

use crate::report::format::group_thousands;
use crate::runner::{Ctx, PHASES};

/// Refresh period of the bar.
const BAR_PERIOD: Duration = Duration::from_millis(250);
/// Period of the plain lines when stderr is not a terminal.
const LINE_PERIOD: Duration = Duration::from_secs(10);

/// A running progress display; [`Progress::stop`] clears it.
pub struct Progress {
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Progress {
    /// Starts displaying the progress of `ctx`'s run, planned to last
    /// `planned` (validation phases plus the open-model steps).
    pub fn start(ctx: Arc<Ctx>, planned: Duration) -> Progress {
        let (tx, mut rx) = oneshot::channel();
        let terminal = std::io::stderr().is_terminal();
        let task = tokio::spawn(async move {
            let bar = if terminal {
                let bar = ProgressBar::with_draw_target(
                    Some(planned.as_secs()),
                    ProgressDrawTarget::stderr(),
                );
                bar.set_style(
                    ProgressStyle::with_template(
                        "{elapsed_precise} / {len:>3}s [{bar:30.cyan/blue}] {msg}",
                    )
                    .expect("valid template")
                    .progress_chars("=> "),
                );
                Some(bar)
            } else {
                None
            };
            let period = if terminal { BAR_PERIOD } else { LINE_PERIOD };
            let t0 = ctx.recorder.t0();
            let mut history: Vec<(Instant, u64)> = vec![(Instant::now(), 0)];
            loop {
                tokio::select! {
                    _ = &mut rx => break,
                    _ = tokio::time::sleep(period) => {}
                }
                let now = Instant::now();
                let live = &ctx.recorder.live;
                let started = live.users_started.load(Ordering::Relaxed);
                history.push((now, started));
                history.retain(|(t, _)| {
                    now.duration_since(*t)
                        <= period.max(Duration::from_secs(1)) + Duration::from_millis(100)
                });
                let (t_old, n_old) = history[0];
                let dt = now.duration_since(t_old).as_secs_f64();
                let rate = if dt > 0.0 {
                    (started - n_old) as f64 / dt
                } else {
                    0.0
                };
                let phase = PHASES[ctx.phase.load(Ordering::Relaxed).min(PHASES.len() - 1)];
                let msg = format!(
                    "{phase} | {rate:>4.0} users/s | {:>4} in flight | OK {} KO {}",
                    live.in_flight.load(Ordering::Relaxed).max(0),
                    group_thousands(live.ok.load(Ordering::Relaxed)),
                    group_thousands(live.ko.load(Ordering::Relaxed)),
                );
                let elapsed = now.saturating_duration_since(t0);
                match &bar {
                    Some(bar) => {
                        bar.set_position(elapsed.as_secs().min(planned.as_secs()));
                        bar.set_message(msg);
                    }
                    None => eprintln!("[{:>4}s/{}s] {msg}", elapsed.as_secs(), planned.as_secs()),
                }
            }
            if let Some(bar) = bar {
                bar.finish_and_clear();
            }
        });
        Progress {
            stop: Some(tx),
            task,
        }
    }

    /// Stops and clears the display.
    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        let _ = (&mut self.task).await;
    }
}
