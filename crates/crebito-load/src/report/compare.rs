//! The presenters of `crebito-load compare`: a text table, a Markdown table
//! and a self-contained HTML page with the runs' percentile curves
//! overlaid. They only read the compared runs.

use std::fmt::Write as _;

use super::format::{esc, group_thousands, ms, short};
use super::html::{chart_section, legend, ms_label, nines, percentile_axis, CSS, KO_COLOR, WIDTH};
use super::svg::{Axis, Chart, Line};
use crate::compare::{figures, ComparedRun, Figure, Unit};
use crate::summary::PercentileCurves;

/// Colours of the runs, in order (colour-blind safe), repeated past eight.
pub const RUN_COLORS: [&str; 8] = [
    "#1b9e77", "#d95f02", "#7570b3", "#e7298a", "#66a61e", "#e6ab02", "#a6761d", "#666666",
];

fn value(f: &Figure, i: usize) -> String {
    let v = f.values[i];
    match f.unit {
        Unit::Count => group_thousands(v.max(0.0).round() as u64),
        Unit::Usd => {
            let cents = (v * 100.0).round().max(0.0) as u64;
            format!("{}.{:02}", group_thousands(cents / 100), cents % 100)
        }
        Unit::Percent => format!("{v:.2}"),
        Unit::Ms => ms(v),
        Unit::Seconds => format!("{v:.1}"),
    }
}

/// `×1.23` against the first run, `—` when the first is 0 and this is not.
fn ratio(f: &Figure, i: usize) -> String {
    match f.ratio(i) {
        Some(r) => format!("×{r:.2}"),
        None => "—".to_string(),
    }
}

/// Each run's figure with its ratio to the first (the first has none).
fn cell(f: &Figure, i: usize) -> String {
    if i == 0 {
        value(f, i)
    } else {
        format!("{} ({})", value(f, i), ratio(f, i))
    }
}

/// The comparison as an aligned text table: one row per figure, one column
/// per run (numbered; the legend above the table names them).
pub fn text(runs: &[ComparedRun]) -> String {
    let figures = figures(runs);
    let mut o = String::new();
    for (i, r) in runs.iter().enumerate() {
        let _ = writeln!(o, "[{}]{} {}", i + 1, mark(r), r.label);
        if let Some(w) = r.summary.untrustworthy_warning() {
            let _ = writeln!(o, "     ! {w}");
        }
    }
    if runs.iter().any(|r| r.summary.untrustworthy()) {
        let _ = writeln!(
            o,
            "A run marked ! measured its generator as much as the server: compare its figures with care."
        );
    }
    let name_width = figures
        .iter()
        .map(|f| f.name.chars().count())
        .max()
        .unwrap_or(8)
        + 2;
    let widths: Vec<usize> = (0..runs.len())
        .map(|i| {
            figures
                .iter()
                .map(|f| cell(f, i).chars().count())
                .max()
                .unwrap_or(0)
                .max(4)
                + 2
        })
        .collect();
    let pad = |s: &str, w: usize| format!("{}{s}", " ".repeat(w.saturating_sub(s.chars().count())));
    let _ = write!(o, "{}", pad_right("figure", name_width));
    for (i, w) in widths.iter().enumerate() {
        let _ = write!(o, "{}", pad(&format!("[{}]{}", i + 1, mark(&runs[i])), *w));
    }
    o.push('\n');
    for f in &figures {
        let _ = write!(o, "{}", pad_right(&f.name, name_width));
        for (i, w) in widths.iter().enumerate() {
            let _ = write!(o, "{}", pad(&cell(f, i), *w));
        }
        o.push('\n');
    }
    o
}

/// `!` after the number of a run that is not
/// [trustworthy](crate::summary::Summary::untrustworthy).
fn mark(run: &ComparedRun) -> &'static str {
    if run.summary.untrustworthy() {
        "!"
    } else {
        ""
    }
}

fn pad_right(s: &str, w: usize) -> String {
    format!("{s}{}", " ".repeat(w.saturating_sub(s.chars().count())))
}

/// The comparison as a Markdown table, the runs' labels as headings.
pub fn markdown(runs: &[ComparedRun]) -> String {
    let mut o = String::from("| figure |");
    for r in runs {
        let flag = if r.summary.untrustworthy() {
            " ⚠"
        } else {
            ""
        };
        let _ = write!(o, " {}{flag} |", r.label.replace('|', "\\|"));
    }
    o.push_str("\n|---|");
    for _ in runs {
        o.push_str("---:|");
    }
    o.push('\n');
    for f in figures(runs) {
        let _ = write!(o, "| {} |", f.name);
        for i in 0..runs.len() {
            let _ = write!(o, " {} |", cell(&f, i));
        }
        o.push('\n');
    }
    for r in runs {
        if let Some(w) = r.summary.untrustworthy_warning() {
            let _ = write!(o, "\n⚠ {}: {w}\n", r.label.replace('|', "\\|"));
        }
    }
    o
}

/// The curve of one group (or all requests) of a summary.
fn curve<'a>(c: &'a PercentileCurves, key: &str) -> &'a [(f64, f64)] {
    match key {
        "debitos" => &c.debitos,
        "creditos" => &c.creditos,
        "extratos" => &c.extratos,
        "validacoes" => &c.validacoes,
        _ => &c.todas,
    }
}

fn curves_chart(runs: &[ComparedRun], key: &str, height: f64) -> String {
    let (mut lo, mut hi) = (f64::MAX, 0f64);
    for r in runs {
        for (_, v) in curve(&r.summary.percentile_curves_ms, key) {
            lo = lo.min(*v);
            hi = hi.max(*v);
        }
    }
    if lo == f64::MAX {
        return r#"<p class="note">No percentile curve in these summaries (written by an older crebito-load).</p>"#.to_string();
    }
    let mut chart = Chart::new(
        WIDTH,
        height,
        percentile_axis(),
        Axis::log(lo, hi.max(300.0), "response time (log scale)", ms_label),
    );
    for (i, r) in runs.iter().enumerate() {
        let points = curve(&r.summary.percentile_curves_ms, key);
        let color = RUN_COLORS[i % RUN_COLORS.len()];
        chart.lines.push(Line {
            color: color.to_string(),
            width: 2.2,
            dashed: i >= RUN_COLORS.len(),
            points: points.iter().map(|(p, v)| (nines(*p), Some(*v))).collect(),
        });
        for (p, v) in points {
            let x = nines(*p);
            chart.hover.push((
                x - 0.03,
                x + 0.03,
                format!("[{}] {} p{}: {} ms", i + 1, r.label, short(*p), ms(*v)),
            ));
        }
    }
    chart
        .hmarks
        .push((250.0, "250 ms".to_string(), KO_COLOR.to_string()));
    chart.render()
}

/// The comparison as one self-contained HTML page (inline CSS and SVG, no
/// script): the table, then the runs' percentile curves overlaid, over all
/// requests and per group.
pub fn html(runs: &[ComparedRun]) -> String {
    let mut o = String::with_capacity(64 * 1024);
    let _ = write!(
        o,
        r#"<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1"><title>crebito-load compare — {} runs</title><style>{CSS}</style></head><body><main><header><h1>crebito-load compare</h1><p class="meta">{} runs; ratios are to run [1].</p></header>"#,
        runs.len(),
        runs.len()
    );
    let items: Vec<(String, String)> = runs
        .iter()
        .enumerate()
        .map(|(i, r)| {
            (
                RUN_COLORS[i % RUN_COLORS.len()].to_string(),
                format!("[{}] {}", i + 1, r.label),
            )
        })
        .collect();
    let items_ref: Vec<(&str, &str)> = items
        .iter()
        .map(|(c, l)| (c.as_str(), l.as_str()))
        .collect();
    let runs_legend = legend(&items_ref);
    let mut table = String::from(r#"<table class="stats"><thead><tr><th>figure</th>"#);
    for (i, r) in runs.iter().enumerate() {
        let flag = match r.summary.untrustworthy_warning() {
            Some(w) => format!(
                r#" <b class="bad" title="{}">⚠ not trustworthy</b>"#,
                esc(&w)
            ),
            None => String::new(),
        };
        let _ = write!(
            table,
            r#"<th><i class="sw" style="background:{}"></i>[{}] {}{flag}</th>"#,
            RUN_COLORS[i % RUN_COLORS.len()],
            i + 1,
            esc(&r.label)
        );
    }
    table.push_str("</tr></thead><tbody>");
    for f in figures(runs) {
        let _ = write!(table, "<tr><td>{}</td>", esc(&f.name));
        for i in 0..runs.len() {
            let _ = write!(table, "<td>{}</td>", esc(&cell(&f, i)));
        }
        table.push_str("</tr>");
    }
    table.push_str("</tbody></table>");
    for (i, r) in runs.iter().enumerate() {
        if let Some(w) = r.summary.untrustworthy_warning() {
            let _ = write!(
                o,
                r#"<section class="alert"><b>Run [{}] {}</b>: {}.</section>"#,
                i + 1,
                esc(&r.label),
                esc(&w)
            );
        }
    }
    chart_section(
        &mut o,
        "Figures",
        "Each run's figure, with its ratio to run [1] in brackets (— when run [1] has 0).",
        &table,
    );
    chart_section(
        &mut o,
        "Percentile curves, all requests",
        "Response time at each percentile, one line per run: the right of the chart is the tail (99.9 %, 99.99 %, max).",
        &format!("{runs_legend}{}", curves_chart(runs, "todas", 340.0)),
    );
    for (key, label) in [
        ("debitos", "débitos"),
        ("creditos", "créditos"),
        ("extratos", "extratos"),
        ("validacoes", "validações"),
    ] {
        chart_section(
            &mut o,
            &format!("Percentile curves, {label}"),
            "One line per run.",
            &format!("{runs_legend}{}", curves_chart(runs, key, 260.0)),
        );
    }
    o.push_str("<footer>");
    for (i, r) in runs.iter().enumerate() {
        let _ = write!(
            o,
            "<p>[{}] {}: {} against {}, scale {}, rate ×{}, seed {}, started {}</p>",
            i + 1,
            esc(&r.path.display().to_string()),
            esc(&r.summary.run.version),
            esc(&r.summary.run.base_url),
            r.summary.run.scale,
            r.summary.run.rate,
            r.summary.run.seed,
            esc(&r.summary.run.started_at)
        );
    }
    o.push_str("</footer></main></body></html>\n");
    o
}
