//! The `crebito` binary: parses the configuration and wires the pieces.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use crebito::config::{AuditSettings, Cli, Command, HealthcheckArgs, ResetArgs, ServeSettings};
use crebito::http::RouterOptions;
use crebito::ledger::sqlite::{absolute_path, not_a_ledger_file};
use crebito::ledger::{AnyLedger, DatabaseUrl, ErrorChain, Ledger, LedgerOptions};

fn main() -> ExitCode {
    let cli = Cli::parse();
    crebito::logging::init(cli.log_format);
    let mode = match cli.command.unwrap_or(Command::Serve(cli.serve)) {
        Command::Serve(args) => Mode::Serve(args.into()),
        Command::Audit(args) => Mode::Audit(args.into()),
        Command::Reset(args) => Mode::Reset(args),
        Command::Openapi => {
            print!("{}", crebito::http::openapi::document());
            return ExitCode::SUCCESS;
        }
        Command::Healthcheck(args) => return healthcheck(&args),
    };
    let threads = match &mode {
        Mode::Serve(settings) => settings.worker_threads,
        Mode::Audit(_) | Mode::Reset(_) => 1,
    };
    let runtime = if threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .enable_all()
            .build()
    };
    let runtime = match runtime {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("crebito: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(mode.run())
}

/// `crebito healthcheck`: one probe on a single-threaded runtime (the
/// least CPU a probe can take out of the instance's quota).
fn healthcheck(args: &HealthcheckArgs) -> ExitCode {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build();
    let probed = match runtime {
        Ok(runtime) => runtime.block_on(crebito::healthcheck::probe(
            &args.listen,
            Duration::from_millis(args.timeout_ms),
        )),
        Err(e) => {
            eprintln!("crebito: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match probed {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("crebito healthcheck: {e}");
            ExitCode::FAILURE
        }
    }
}

enum Mode {
    Serve(ServeSettings),
    Audit(AuditSettings),
    Reset(ResetArgs),
}

impl Mode {
    async fn run(self) -> ExitCode {
        match self {
            Mode::Serve(args) => serve(args).await,
            Mode::Audit(args) => audit(args).await,
            Mode::Reset(args) => reset(args).await,
        }
    }
}

async fn serve(settings: ServeSettings) -> ExitCode {
    let ledger = match open_with_retry(&settings).await {
        Ok(ledger) => ledger,
        Err(e) => {
            tracing::error!("{}", ErrorChain(&e));
            return ExitCode::FAILURE;
        }
    };
    // Which ledger, in full: a relative sqlite:// URL depends on the
    // directory the server was started from.
    if ledger.created() {
        tracing::info!(
            "serving {}: a NEW ledger, created now with the seeded accounts",
            ledger.describe()
        );
    } else {
        tracing::info!("serving {}, which existed", ledger.describe());
    }
    let bound = match crebito::server::bind(&settings.listen).await {
        Ok(bound) => bound,
        Err(e) => {
            tracing::error!("{e}");
            return ExitCode::FAILURE;
        }
    };
    if let Some(warning) = crebito::server::check_file_limit(settings.server.max_connections) {
        tracing::warn!("{warning}");
    }
    tracing::info!(listen = %settings.listen, "crebito ready");
    let ledger = Arc::new(ledger);
    tokio::spawn(purge_idempotency_keys(
        ledger.clone(),
        settings.idempotency_retention,
    ));
    let app = crebito::http::router_with(
        ledger.clone(),
        RouterOptions {
            metrics: settings.metrics,
        },
    );
    let shutdown = crebito::server::shutdown_signal();
    let served = crebito::server::serve(bound, app, settings.server, shutdown).await;
    // For the operator and for measurements (docs/benchmark.md), with
    // metrics off too (crebito_posting_batch_size has the same buckets).
    let sizes = ledger.batch_sizes();
    tracing::info!(
        "posting batches sent, by size 1 / 2 / 3-4 / 5-8 / 9-16 / 17-32 / 33-64 / 65+: {}",
        sizes.map(|n| n.to_string()).join(" / ")
    );
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("server failed: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Deletes expired idempotency keys now and then once an hour.
async fn purge_idempotency_keys(ledger: Arc<AnyLedger>, retention: Duration) {
    let mut every_hour = tokio::time::interval(Duration::from_secs(3600));
    loop {
        every_hour.tick().await;
        match ledger.purge_idempotency_keys(retention).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(deleted = n, "purged expired idempotency keys"),
            Err(e) => tracing::warn!("cannot purge idempotency keys: {}", ErrorChain(&e)),
        }
    }
}

/// The database may still be starting (docker compose, the stack script):
/// try once a second for up to `settings.connect_timeout`
/// (`--connect-timeout-secs`), saying each time which attempt of how many
/// failed. Attempt `n` starts `n - 1` seconds after the first; one that is
/// still running when its successor's second comes uses that slot up, so
/// numbers may jump. A SQLite file has no server to wait for, and a
/// database that cannot hold the ledger (its encoding), a refused login
/// or a database that does not exist do not change by waiting
/// ([`crebito::ledger::LedgerError::is_permanent`]): their errors are
/// final.
async fn open_with_retry(
    settings: &ServeSettings,
) -> Result<AnyLedger, crebito::ledger::LedgerError> {
    let started = tokio::time::Instant::now();
    let retry = matches!(settings.database_url, DatabaseUrl::Postgres(_));
    let attempts = if retry {
        settings.connect_timeout.as_secs() + 1
    } else {
        1
    };
    let mut attempt = 1;
    loop {
        let error = match AnyLedger::open(&settings.database_url, &settings.ledger).await {
            Ok(ledger) => return Ok(ledger),
            Err(e) => e,
        };
        if error.is_permanent() {
            return Err(error);
        }
        // The first slot not yet begun: attempt n's slot begins n - 1
        // seconds after the start.
        let elapsed = started.elapsed().as_secs();
        let next = (attempt + 1).max(elapsed + 2);
        if next > attempts {
            if attempts > 1 {
                tracing::warn!(
                    "the database did not answer within --connect-timeout-secs {} \
                     (attempt {attempt} of {attempts} failed); giving up",
                    settings.connect_timeout.as_secs()
                );
            }
            return Err(error);
        }
        tracing::warn!(
            "database not ready (attempt {attempt} of {attempts}), retrying: {}",
            ErrorChain(&error)
        );
        tokio::time::sleep_until(started + Duration::from_secs(next - 1)).await;
        attempt = next;
    }
}

/// `crebito reset`: exit 0 done, 1 the database failed, 2 refused (a
/// PostgreSQL ledger without `--force`, a SQLite file that does not exist
/// or holds no crebito ledger — empty, another program's database — which
/// is left as it was; docs/configuration.md).
async fn reset(args: ResetArgs) -> ExitCode {
    let url = args.database.database_url;
    if let DatabaseUrl::Sqlite(path) = &url {
        let wait = LedgerOptions::default().acquire_timeout;
        if let Some(why) = not_a_ledger_file(path, wait) {
            eprintln!(
                "crebito reset: no SQLite ledger at {}: {why}, nothing was \
                 reset. Give the ledger the server uses with --database-url (or DATABASE_URL); \
                 a relative sqlite:// path is read from the current directory.",
                absolute_path(path).display()
            );
            return ExitCode::from(2);
        }
    }
    if matches!(url, DatabaseUrl::Postgres(_)) && !args.force {
        eprintln!(
            "crebito reset: refusing to reset a PostgreSQL ledger: it deletes every \
             transaction and idempotency key of every account, for every instance using \
             the database. Add --force if that is what you want."
        );
        return ExitCode::from(2);
    }
    // Never create a ledger: the file held one a moment ago.
    let options = LedgerOptions {
        create_if_missing: false,
        ..LedgerOptions::default()
    };
    let ledger = match AnyLedger::open(&url, &options).await {
        Ok(ledger) => ledger,
        Err(e) => {
            eprintln!("crebito reset: {}", ErrorChain(&e));
            return ExitCode::FAILURE;
        }
    };
    match ledger.reset().await {
        Ok(()) => {
            println!(
                "reset {}: accounts 1-5 seeded at balance 0, no transactions",
                ledger.describe()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("crebito reset: {}", ErrorChain(&e));
            ExitCode::FAILURE
        }
    }
}

async fn audit(settings: AuditSettings) -> ExitCode {
    match crebito::audit::run(&settings, &mut std::io::stdout()).await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("crebito audit: {}", ErrorChain(&e));
            ExitCode::from(2)
        }
    }
}
