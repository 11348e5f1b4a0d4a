//! Command line and environment configuration (clap; every flag also has
//! an environment variable, docs/configuration.md).
//!
//! The flags are parsed into [`ServeArgs`] and [`AuditArgs`]; the settings
//! types [`ServeSettings`] and [`AuditSettings`] convert them once into what
//! each consumer takes (durations as [`Duration`], the ledger's
//! [`LedgerOptions`], the server's [`Limits`]), so no consumer reads a flag.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::ledger::{DatabaseUrl, LedgerOptions};
use crate::server::Limits;
pub use crate::server::Listen;

/// crebito — the crébitos ledger API (Rinha de Backend 2024/Q1).
///
/// Accounts with an overdraft limit, credits and debits posted concurrently,
/// and statements that are always consistent. Runs `serve` when no
/// subcommand is given. Log level: RUST_LOG (e.g. RUST_LOG=debug, or
/// RUST_LOG=crebito=debug for every request's steps and their durations),
/// default "info".
#[derive(Debug, Parser)]
#[command(name = "crebito", version, args_conflicts_with_subcommands = true)]
pub struct Cli {
    /// What to do; `serve` by default.
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Options of `serve`, accepted without the subcommand too.
    #[command(flatten)]
    pub serve: ServeArgs,
    /// How log lines are written to stderr: `text` for people, `json` for
    /// log shippers (one JSON object per line: timestamp, level, target,
    /// message, the event's fields and the spans it happened in, with the
    /// request id).
    #[arg(
        long,
        global = true,
        env = "CREBITO_LOG_FORMAT",
        value_enum,
        default_value_t = LogFormat::Text
    )]
    pub log_format: LogFormat,
}

/// The shape of log lines (`--log-format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// One human-readable line per event, coloured only on a terminal.
    Text,
    /// One JSON object per line (JSON Lines).
    Json,
}

/// Whether `serve` keeps and exposes metrics (`--metrics`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Toggle {
    /// On.
    On,
    /// Off.
    Off,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the HTTP API (the default).
    Serve(ServeArgs),
    /// Check every account: balance == Σ credits − Σ debits, balance >=
    /// −limit, no transaction without an account. Read-only. Exit 0 when
    /// all hold, 1 otherwise, 2 when the database cannot be read.
    Audit(AuditArgs),
    /// Start again from the seeded state: delete every transaction and
    /// idempotency key, and seed the five accounts at balance 0. Migrates
    /// the database if needed. Refuses a SQLite file that does not exist
    /// or holds no crebito ledger (empty, another program's database),
    /// naming the absolute path it looked at and leaving it as it was, and
    /// a PostgreSQL ledger without --force. Exit 0 when done, 1 when the
    /// database failed, 2 when refused.
    Reset(ResetArgs),
    /// Print the OpenAPI 3.1 document of the API (what GET /openapi.json
    /// serves; docs/openapi.json is a copy).
    Openapi,
    /// Probe a running instance: GET /health on the address it listens on
    /// (CREBITO_LISTEN; a wildcard address on the loopback). Exit 0 when it
    /// answers 2xx within the timeout, 1 otherwise, with the reason on
    /// stderr. The image's health check; the compose files turn it off in
    /// their instances (docs/deployment.md), where it is run by hand.
    Healthcheck(HealthcheckArgs),
}

/// Options of `crebito healthcheck`.
#[derive(Debug, Clone, Args)]
pub struct HealthcheckArgs {
    /// The address the instance listens on: HOST:PORT or unix:/path, the
    /// same value as its `serve --listen`.
    #[arg(long, env = "CREBITO_LISTEN", default_value = "0.0.0.0:9999")]
    pub listen: Listen,

    /// How long the whole probe may take (connect, request, answer), in
    /// milliseconds.
    #[arg(long, env = "CREBITO_HEALTHCHECK_TIMEOUT_MS", default_value_t = 2000, value_parser = clap::value_parser!(u64).range(1..))]
    pub timeout_ms: u64,
}

/// Options of `crebito reset`.
#[derive(Debug, Clone, Args)]
pub struct ResetArgs {
    /// Where the ledger lives.
    #[command(flatten)]
    pub database: DatabaseArgs,

    /// Reset a PostgreSQL ledger too. Without it only a SQLite file is
    /// reset: a PostgreSQL database is usually a deployment's, shared by
    /// its instances, and everything in it is deleted.
    #[arg(long)]
    pub force: bool,
}

/// Options of `crebito serve`.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Where to listen: HOST:PORT, or unix:/path/to.sock for a unix socket
    /// (a stale socket file is removed first; the socket is made
    /// world-writable so a load balancer running as another user can use it).
    #[arg(long, env = "CREBITO_LISTEN", default_value = "0.0.0.0:9999")]
    pub listen: Listen,

    /// Where the ledger lives.
    #[command(flatten)]
    pub database: DatabaseArgs,

    /// Database connections this instance keeps (PostgreSQL connections, or
    /// SQLite connections to the file). A few per instance serve best:
    /// postings for one account go one batch at a time anyway, and hold at
    /// most one connection (PostgreSQL).
    #[arg(long, env = "CREBITO_POOL_SIZE", default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=1000))]
    pub pool_size: u16,

    /// Longest a request waits, in milliseconds, for a database connection,
    /// for its turn in the posting queue and (SQLite) for another process's
    /// write lock, before it is answered 503 with nothing applied.
    #[arg(long, env = "CREBITO_ACQUIRE_TIMEOUT_MS", default_value_t = 2000, value_parser = clap::value_parser!(u64).range(1..=600_000))]
    pub acquire_timeout_ms: u64,

    /// Most postings applied together in one batch: one database round
    /// trip, one transaction, one commit (group commit). Postings that
    /// arrive while a batch is in flight form the next one; a lone posting
    /// goes at once.
    #[arg(long, env = "CREBITO_BATCH_MAX_POSTINGS", default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub batch_max_postings: u32,

    /// Most postings waiting in one posting queue (one queue per account on
    /// PostgreSQL, one per instance on SQLite) besides the batch in flight;
    /// one more is answered 503 at once.
    #[arg(long, env = "CREBITO_QUEUE_MAX_POSTINGS", default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub queue_max_postings: u32,

    /// Longest a request's database statement may run, in milliseconds
    /// (PostgreSQL statement_timeout); then the request is answered 503 and
    /// nothing is applied. A database that stops answering altogether gets
    /// one more second before its connection is dropped.
    #[arg(long, env = "CREBITO_QUERY_TIMEOUT_MS", default_value_t = 5000, value_parser = clap::value_parser!(u64).range(1..=3_600_000))]
    pub query_timeout_ms: u64,

    /// Tokio worker threads. 1 runs a single-threaded runtime: the deployed
    /// topology runs two instances with small CPU quotas, where one thread
    /// per instance keeps quota bursts (and their latency spikes) away.
    #[arg(long, env = "CREBITO_WORKER_THREADS", default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub worker_threads: u16,

    /// Seconds a connection may take to send a request head; also how long
    /// an idle keep-alive connection stays open. A load balancer's upstream
    /// keep-alive timeout must be shorter (deploy/nginx.conf uses 60 s).
    #[arg(long, env = "CREBITO_IDLE_TIMEOUT_SECS", default_value_t = 75, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub idle_timeout_secs: u64,

    /// Connections served at once; more clients wait in the listen backlog.
    #[arg(long, env = "CREBITO_MAX_CONNECTIONS", default_value_t = 4096, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub max_connections: u32,

    /// Longest time, in seconds, `serve` keeps trying at start to open a
    /// PostgreSQL ledger that does not answer yet (a database still
    /// starting): attempt 1 at once, then one attempt a second, the last
    /// this many seconds after the first (an attempt that is still running
    /// when its successor's second comes uses that slot up); then the
    /// server exits with status 1. Each attempt gives up after
    /// --acquire-timeout-ms. 0 tries once. A refused login (wrong password,
    /// unknown role) or a database that does not exist is not retried: the
    /// server exits 1 at once. A SQLite file is opened once.
    #[arg(long, env = "CREBITO_CONNECT_TIMEOUT_SECS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(0..=86_400))]
    pub connect_timeout_secs: u64,

    /// Refuse to start when the SQLite database file does not exist or
    /// holds nothing (0 bytes, or no table), instead of creating a new
    /// ledger with the seeded accounts (which is always logged as a
    /// warning). For a deployment whose ledger must never silently start
    /// over, e.g. after its file was lost.
    #[arg(long, env = "CREBITO_REQUIRE_EXISTING_LEDGER")]
    pub require_existing_ledger: bool,

    /// Longest time, in milliseconds, a request body may take to arrive in
    /// full once the request head is read (also covers a client that sent
    /// `Expect: 100-continue` and then nothing). Then the request is answered
    /// 408 and the connection closed.
    #[arg(long, env = "CREBITO_BODY_TIMEOUT_MS", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..=600_000))]
    pub body_timeout_ms: u64,

    /// Longest time, in milliseconds, writing a response may stay blocked
    /// (a client that does not read its responses); then the connection is
    /// closed.
    #[arg(long, env = "CREBITO_WRITE_TIMEOUT_MS", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..=600_000))]
    pub write_timeout_ms: u64,

    /// How long an Idempotency-Key is remembered, in hours (at least 24).
    /// Every instance deletes older keys once an hour.
    #[arg(long, env = "CREBITO_IDEMPOTENCY_RETENTION_HOURS", default_value_t = 24, value_parser = clap::value_parser!(u64).range(24..=87_600))]
    pub idempotency_retention_hours: u64,

    /// Keep request, ledger and pool metrics and serve them at GET /metrics
    /// (Prometheus / OpenMetrics text, docs/operations.md). `off` records
    /// nothing and answers /metrics 404.
    #[arg(long, env = "CREBITO_METRICS", value_enum, default_value_t = Toggle::On)]
    pub metrics: Toggle,
}

/// The database flag shared by `serve` and `audit`.
#[derive(Debug, Clone, Args)]
pub struct DatabaseArgs {
    /// The ledger database: postgres://user:password@host:port/dbname (use
    /// ?host=/socket/dir for a unix socket) or sqlite://path/to/file.db,
    /// relative to the current directory (`serve` creates the file and its
    /// directory if missing; `audit` and `reset` refuse a missing file).
    /// Every command prints the SQLite file's absolute path.
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "sqlite://data/crebito.db",
        hide_env_values = true
    )]
    pub database_url: DatabaseUrl,
}

/// Options of `crebito audit`.
#[derive(Debug, Clone, Args)]
pub struct AuditArgs {
    /// Where the ledger lives.
    #[command(flatten)]
    pub database: DatabaseArgs,

    /// Also check a client's record of postings (JSON Lines, one
    /// {"account","descricao","tipo","valor","outcome"} per line, outcome
    /// acknowledged|refused|unknown): every acknowledged posting stored
    /// exactly once, nothing refused stored, nothing stored twice.
    #[arg(long, value_name = "FILE")]
    pub acknowledged: Option<PathBuf>,
}

/// What `crebito serve` hands each part, converted from [`ServeArgs`].
#[derive(Debug, Clone)]
pub struct ServeSettings {
    /// Where to listen.
    pub listen: Listen,
    /// Where the ledger lives.
    pub database_url: DatabaseUrl,
    /// How the ledger uses its database.
    pub ledger: LedgerOptions,
    /// How long start-up keeps trying to open a PostgreSQL ledger, one
    /// attempt a second (`--connect-timeout-secs`).
    pub connect_timeout: Duration,
    /// The HTTP server's connection limits.
    pub server: Limits,
    /// How long an `Idempotency-Key` is remembered.
    pub idempotency_retention: Duration,
    /// Tokio worker threads; 1 runs a single-threaded runtime.
    pub worker_threads: usize,
    /// Whether metrics are kept and served at `GET /metrics`.
    pub metrics: bool,
}

impl From<ServeArgs> for ServeSettings {
    fn from(args: ServeArgs) -> Self {
        ServeSettings {
            listen: args.listen,
            database_url: args.database.database_url,
            ledger: LedgerOptions {
                pool_size: args.pool_size.into(),
                acquire_timeout: Duration::from_millis(args.acquire_timeout_ms),
                query_timeout: Duration::from_millis(args.query_timeout_ms),
                create_if_missing: !args.require_existing_ledger,
                max_batch: args.batch_max_postings as usize,
                max_queue: args.queue_max_postings as usize,
            },
            connect_timeout: Duration::from_secs(args.connect_timeout_secs),
            server: Limits {
                idle_timeout: Duration::from_secs(args.idle_timeout_secs),
                body_timeout: Duration::from_millis(args.body_timeout_ms),
                write_timeout: Duration::from_millis(args.write_timeout_ms),
                max_connections: args.max_connections as usize,
                ..Limits::default()
            },
            idempotency_retention: Duration::from_secs(args.idempotency_retention_hours * 3600),
            worker_threads: args.worker_threads.into(),
            metrics: args.metrics == Toggle::On,
        }
    }
}

/// What `crebito audit` needs, converted from [`AuditArgs`].
#[derive(Debug, Clone)]
pub struct AuditSettings {
    /// Where the ledger lives (opened read-only: nothing is created or
    /// migrated).
    pub database_url: DatabaseUrl,
    /// An audit reads every transaction: no per-request bound on its
    /// statements (one hour), otherwise the defaults.
    pub ledger: LedgerOptions,
    /// A client's record of postings to check against the ledger.
    pub acknowledged: Option<PathBuf>,
}

impl From<AuditArgs> for AuditSettings {
    fn from(args: AuditArgs) -> Self {
        AuditSettings {
            database_url: args.database.database_url,
            ledger: LedgerOptions {
                query_timeout: Duration::from_secs(3600),
                ..LedgerOptions::default()
            },
            acknowledged: args.acknowledged,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn serve_is_the_default() {
        let cli = Cli::try_parse_from(["crebito", "--listen", "127.0.0.1:1"]).unwrap();
        assert!(cli.command.is_none());
        assert_eq!(cli.serve.listen, "127.0.0.1:1".parse().unwrap());
        let cli = Cli::try_parse_from(["crebito", "serve", "--pool-size", "2"]).unwrap();
        assert!(matches!(cli.command, Some(Command::Serve(a)) if a.pool_size == 2));
        assert!(Cli::try_parse_from(["crebito", "--pool-size", "0"]).is_err());
        assert!(Cli::try_parse_from(["crebito", "--database-url", "mysql://x"]).is_err());
    }

    #[test]
    fn settings_convert_units_once() {
        let cli = Cli::try_parse_from([
            "crebito",
            "serve",
            "--database-url",
            "postgres://u@h/db",
            "--pool-size",
            "7",
            "--acquire-timeout-ms",
            "1500",
            "--query-timeout-ms",
            "250",
            "--idle-timeout-secs",
            "9",
            "--max-connections",
            "12",
            "--idempotency-retention-hours",
            "48",
            "--worker-threads",
            "3",
            "--body-timeout-ms",
            "700",
            "--write-timeout-ms",
            "800",
            "--require-existing-ledger",
            "--connect-timeout-secs",
            "5",
        ])
        .unwrap();
        let Some(Command::Serve(args)) = cli.command else {
            panic!("serve expected");
        };
        let settings = ServeSettings::from(args);
        assert_eq!(
            settings.database_url,
            DatabaseUrl::Postgres("postgres://u@h/db".into())
        );
        assert_eq!(settings.ledger.pool_size, 7);
        assert_eq!(settings.ledger.acquire_timeout, Duration::from_millis(1500));
        assert_eq!(settings.ledger.query_timeout, Duration::from_millis(250));
        assert_eq!(settings.server.idle_timeout, Duration::from_secs(9));
        assert_eq!(settings.server.max_connections, 12);
        assert_eq!(
            settings.idempotency_retention,
            Duration::from_secs(48 * 3600)
        );
        assert_eq!(settings.worker_threads, 3);
        assert_eq!(settings.server.body_timeout, Duration::from_millis(700));
        assert_eq!(settings.server.write_timeout, Duration::from_millis(800));
        assert!(!settings.ledger.create_if_missing);
        assert_eq!(settings.connect_timeout, Duration::from_secs(5));

        let cli =
            Cli::try_parse_from(["crebito", "audit", "--database-url", "sqlite://x.db"]).unwrap();
        let Some(Command::Audit(args)) = cli.command else {
            panic!("audit expected");
        };
        let settings = AuditSettings::from(args);
        assert_eq!(settings.database_url, DatabaseUrl::Sqlite("x.db".into()));
        assert_eq!(settings.ledger.query_timeout, Duration::from_secs(3600));
        assert_eq!(settings.acknowledged, None);
    }
}
