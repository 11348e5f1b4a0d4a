//! `crebito-deploy`: prints what scripts need from the compose file — the
//! services, their limits, their environment — so that shell scripts never
//! parse YAML themselves. Used by `scripts/stack`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use crebito_deploy::{Compose, DeployError};

/// Reads deploy/docker-compose.yml and prints its services' limits and
/// environment, one line per item, for scripts.
///
/// Exit status: 0 on success, 1 when the file cannot be read or a value in it
/// is missing or invalid (the message says which), 2 for bad arguments.
#[derive(Debug, Parser)]
#[command(name = "crebito-deploy", version)]
struct Cli {
    /// The compose file.
    #[arg(
        long,
        env = "CREBITO_COMPOSE_FILE",
        default_value = "deploy/docker-compose.yml"
    )]
    compose: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// The services' names, one a line, in file order.
    Services,
    /// One line per service (all of them when none is named):
    /// `NAME QUOTA_US BYTES CPUS MEMORY` — the CPU quota in microseconds per
    /// 100 000 µs period, the memory limit in bytes (Docker's binary units:
    /// 70MB = 73400320), then both values as written in the file (MEMORY
    /// last: it may hold a space, as in "70 MB").
    Limits {
        /// Services to print.
        services: Vec<String>,
    },
    /// The service's environment as written (no ${VAR} interpolation),
    /// `KEY=VALUE` one a line, sorted by key.
    Env {
        /// The service.
        service: String,
    },
}

fn run(cli: &Cli) -> Result<String, DeployError> {
    let compose = Compose::load(&cli.compose)?;
    let mut out = String::new();
    match &cli.command {
        Command::Services => {
            for name in compose.service_names() {
                out += &format!("{name}\n");
            }
        }
        Command::Limits { services } => {
            let names = if services.is_empty() {
                compose.service_names()
            } else {
                services.clone()
            };
            for name in names {
                let limits = compose.limits(&name)?;
                out += &format!(
                    "{name} {} {} {} {}\n",
                    limits.cpus.quota_us(),
                    limits.memory.bytes(),
                    limits.cpus.text(),
                    limits.memory.text()
                );
            }
        }
        Command::Env { service } => {
            for (key, value) in compose.environment(service)? {
                if value.contains('\n') {
                    return Err(DeployError::Environment {
                        path: cli.compose.clone(),
                        service: service.clone(),
                        reason: format!("{key} holds a line break, which a KEY=VALUE line cannot"),
                    });
                }
                out += &format!("{key}={value}\n");
            }
        }
    }
    Ok(out)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli) {
        Ok(out) => {
            print!("{out}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("crebito-deploy: {e}");
            ExitCode::FAILURE
        }
    }
}
