//! Log lines on stderr, as text or JSON Lines (`--log-format`,
//! docs/operations.md), filtered by `RUST_LOG` (default `info`).

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Installs the global subscriber. Text is coloured only when stderr is a
/// terminal and `NO_COLOR` is unset; JSON puts the message and the event's fields at the top level
/// of each object, next to `timestamp`, `level`, `target` and the spans
/// the event happened in (`span`, `spans`: the request span carries
/// `request_id`, `method` and `route`).
///
/// Panics when a global subscriber is already installed (call once, from
/// `main`).
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        // Colour only for a person at a terminal (not in files or pipes),
        // and not when NO_COLOR is set (https://no-color.org).
        LogFormat::Text => builder
            .with_ansi(
                std::io::stderr().is_terminal()
                    && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()),
            )
            .init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(true)
            .init(),
    }
}
