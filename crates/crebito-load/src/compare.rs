//! `crebito-load compare`: several runs' summaries side by side, each
//! figure with its ratio to the first run's. The presenters are in
//! [`crate::report::compare`].

use std::path::{Path, PathBuf};

use crate::stats::{Group, GroupStats};
use crate::summary::Summary;

/// One run to compare: its label and its summary.
#[derive(Debug, Clone)]
pub struct ComparedRun {
    /// Label shown in the column heading (`--label`, else the path).
    pub label: String,
    /// Where the summary was read from.
    pub path: PathBuf,
    /// The summary.
    pub summary: Summary,
}

/// Why summaries cannot be compared.
#[derive(Debug, thiserror::Error)]
pub enum CompareError {
    /// A file cannot be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A file is not a crebito-load summary.
    #[error("{path} is not a crebito-load summary: {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The JSON error.
        source: serde_json::Error,
    },
    /// A JSON file without a summary's `requests` and `payout_usd`.
    #[error("{0} is not a crebito-load summary (no requests and payout_usd)")]
    NotSummary(PathBuf),
    /// More labels than files.
    #[error("{labels} labels for {runs} summaries")]
    Labels {
        /// Labels given.
        labels: usize,
        /// Summaries given.
        runs: usize,
    },
}

/// Reads each summary (`--json` output or `summary.json`; a directory means
/// its `summary.json`), labelled by `labels` in order, else by its path.
///
/// Errors: [`CompareError`] for an unreadable or unparsable file, or more
/// labels than files.
pub fn load(paths: &[PathBuf], labels: &[String]) -> Result<Vec<ComparedRun>, CompareError> {
    if labels.len() > paths.len() {
        return Err(CompareError::Labels {
            labels: labels.len(),
            runs: paths.len(),
        });
    }
    paths
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let file = if p.is_dir() {
                p.join("summary.json")
            } else {
                p.clone()
            };
            let text = std::fs::read(&file).map_err(|source| CompareError::Read {
                path: file.clone(),
                source,
            })?;
            let parse_error = |source| CompareError::Parse {
                path: file.clone(),
                source,
            };
            let value: serde_json::Value = serde_json::from_slice(&text).map_err(parse_error)?;
            // Every field has a default (older summaries lack some), so
            // require the ones every version wrote.
            if !value.get("requests").is_some_and(|v| v.is_u64())
                || !value.get("payout_usd").is_some_and(|v| v.is_number())
            {
                return Err(CompareError::NotSummary(file.clone()));
            }
            let summary: Summary = serde_json::from_value(value).map_err(parse_error)?;
            Ok(ComparedRun {
                label: labels.get(i).cloned().unwrap_or_else(|| display(p)),
                path: file,
                summary,
            })
        })
        .collect()
}

fn display(p: &Path) -> String {
    p.display().to_string()
}

/// How a figure is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// A count of requests.
    Count,
    /// US dollars, two decimals.
    Usd,
    /// A percentage, two decimals.
    Percent,
    /// Milliseconds.
    Ms,
    /// Seconds, one decimal.
    Seconds,
}

/// One compared figure: its name and each run's value.
#[derive(Debug, Clone, PartialEq)]
pub struct Figure {
    /// What it is, e.g. `p99 ms` or `débitos p99 ms`.
    pub name: String,
    /// Unit.
    pub unit: Unit,
    /// One value per run, in the runs' order.
    pub values: Vec<f64>,
}

impl Figure {
    /// The value of run `i` relative to the first run's: `None` when the
    /// first is 0 (and run `i` is not).
    pub fn ratio(&self, i: usize) -> Option<f64> {
        let (first, v) = (self.values[0], self.values[i]);
        if first == 0.0 {
            (v == 0.0).then_some(1.0)
        } else {
            Some(v / first)
        }
    }
}

/// The figures compared, in order: the score, the latency over all
/// requests, then per group, then the generator's own.
pub fn figures(runs: &[ComparedRun]) -> Vec<Figure> {
    let mut out = Vec::new();
    let mut add = |name: String, unit, f: &dyn Fn(&Summary) -> f64| {
        out.push(Figure {
            name,
            unit,
            values: runs.iter().map(|r| f(&r.summary)).collect(),
        });
    };
    add("payout USD".into(), Unit::Usd, &|s| s.payout_usd);
    add("requests".into(), Unit::Count, &|s| s.requests as f64);
    add("KO".into(), Unit::Count, &|s| s.ko as f64);
    add("inconsistencies".into(), Unit::Count, &|s| {
        s.inconsistencies as f64
    });
    add("OK under 250 ms %".into(), Unit::Percent, &|s| {
        s.pct_under_250ms
    });
    add("mean ms".into(), Unit::Ms, &|s| s.latency_ms.mean);
    add("p50 ms".into(), Unit::Ms, &|s| s.latency_ms.p50);
    add("p99 ms".into(), Unit::Ms, &|s| s.latency_ms.p99);
    add("max ms".into(), Unit::Ms, &|s| s.latency_ms.max);
    for (i, group) in Group::ALL.iter().enumerate() {
        let label = group.label();
        let stats = move |s: &Summary| -> GroupStats { s.groups.all()[i].clone() };
        add(format!("{label} KO"), Unit::Count, &|s| stats(s).ko as f64);
        add(format!("{label} mean ms"), Unit::Ms, &|s| {
            stats(s).latency_ms.mean
        });
        add(format!("{label} p50 ms"), Unit::Ms, &|s| {
            stats(s).latency_ms.p50
        });
        add(format!("{label} p99 ms"), Unit::Ms, &|s| {
            stats(s).latency_ms.p99
        });
        add(format!("{label} max ms"), Unit::Ms, &|s| {
            stats(s).latency_ms.max
        });
    }
    add("generator lag p99 ms".into(), Unit::Ms, &|s| {
        s.generator.lag_p99_ms
    });
    add("generator CPU s".into(), Unit::Seconds, &|s| {
        s.generator.cpu_s
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(label: &str, payout: f64, p99: f64, ko: u64) -> ComparedRun {
        let mut summary = Summary {
            payout_usd: payout,
            ko,
            ..Summary::default()
        };
        summary.latency_ms.p99 = p99;
        summary.groups.debitos.latency_ms.p99 = p99 * 2.0;
        ComparedRun {
            label: label.to_string(),
            path: PathBuf::from(label),
            summary,
        }
    }

    #[test]
    fn figures_and_ratios_to_the_first_run() {
        let runs = [run("a", 100_000.0, 2.0, 0), run("b", 50_000.0, 3.0, 4)];
        let figures = figures(&runs);
        let find = |name: &str| figures.iter().find(|f| f.name == name).unwrap();
        assert_eq!(find("payout USD").values, vec![100_000.0, 50_000.0]);
        assert_eq!(find("payout USD").ratio(1), Some(0.5));
        assert_eq!(find("p99 ms").ratio(1), Some(1.5));
        assert_eq!(find("débitos p99 ms").values, vec![4.0, 6.0]);
        // From 0: no ratio, unless it stays 0.
        assert_eq!(find("KO").ratio(1), None);
        assert_eq!(find("inconsistencies").ratio(1), Some(1.0));
    }
}
