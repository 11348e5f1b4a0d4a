//! The presenters of a run: they only read the [`RunReport`] (the
//! [`Summary`](crate::summary::Summary) value and the series the charts draw)
//! that [`crate::run`] produced.
//!
//! * [`text`] — the text summary printed at the end of a run.
//! * [`json`] — `--json` and `summary.json`.
//! * [`html`] — the self-contained `index.html`, drawn with [`svg`].
//! * [`format`] — money, counts, milliseconds and escaping shared by all three.

use std::path::Path;

use crate::RunReport;

pub mod format;
pub mod html;
pub mod json;
pub mod svg;
pub mod text;

/// Writes `index.html` and `summary.json` into `dir` (created if needed).
pub fn write(dir: &Path, report: &RunReport) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join("index.html"), html::render(report))?;
    std::fs::write(dir.join("summary.json"), json::render(&report.summary)?)?;
    Ok(())
}
