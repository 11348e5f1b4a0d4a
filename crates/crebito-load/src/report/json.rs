//! The JSON summary (`--json`, `summary.json`): the [`Summary`] value as
//! pretty-printed JSON.

use crate::summary::Summary;

/// `summary` as pretty JSON with a final newline.
///
/// Errors: only if serde_json refuses a value (a non-finite float would be
/// written as `null`, so in practice never).
pub fn render(summary: &Summary) -> std::io::Result<String> {
    serde_json::to_string_pretty(summary)
        .map(|json| json + "\n")
        .map_err(std::io::Error::other)
}
