//! The self-contained HTML report (`--report DIR`): `index.html` with inline
//! CSS and inline SVG charts (no script, no external font or file).

use std::fmt::Write as _;

use super::fine_reasons;
use super::format::{esc, format_usd, group_thousands, ms, one_line, short};
use super::svg::{Axis, Band, Bar, Chart, Line};
use crate::runner::PHASES;
use crate::stats::Group;
use crate::summary::{LAG_P99_LIMIT_MS, UNTRUSTWORTHY_REMEDY};
use crate::RunReport;

/// Colour of each group, in [`Group::ALL`] order (colour-blind safe).
pub const GROUP_COLORS: [&str; 4] = ["#d95f02", "#1b9e77", "#7570b3", "#e7298a"];
/// Colour of failed requests.
pub const KO_COLOR: &str = "#c62828";
const PERCENTILE_COLORS: [&str; 5] = ["#9ecae1", "#6baed6", "#3182bd", "#08519c", "#7f2704"];
pub(super) const WIDTH: f64 = 1120.0;

pub(super) fn ms_label(v: f64) -> String {
    if v >= 1000.0 {
        format!("{}s", short(v / 1000.0))
    } else {
        format!("{}ms", short(v))
    }
}

/// Appends a `<section>` with a heading, a one-line description and a body.
pub(super) fn chart_section(o: &mut String, title: &str, description: &str, body: &str) {
    let _ = write!(
        o,
        r#"<section><h2>{title}</h2><p class="desc">{description}</p>{body}</section>"#
    );
}

pub(super) fn legend(items: &[(&str, &str)]) -> String {
    let mut o = String::from(r#"<div class="legend">"#);
    for (color, label) in items {
        let _ = write!(
            o,
            r#"<span><i style="background:{color}"></i>{}</span>"#,
            esc(label)
        );
    }
    o.push_str("</div>");
    o
}

/// One legend item per scenario group, in its colour.
fn group_items() -> Vec<(&'static str, &'static str)> {
    Group::ALL
        .iter()
        .enumerate()
        .map(|(i, g)| (GROUP_COLORS[i], g.label()))
        .collect()
}

/// The legend of the per-group charts: one colour per scenario group.
fn group_legend() -> String {
    legend(&group_items())
}

/// The legend of a chart with a line per scenario group and one for KOs.
fn groups_and_ko_legend() -> String {
    let mut items = group_items();
    items.push((KO_COLOR, "KO"));
    legend(&items)
}

fn phase_marks(report: &RunReport) -> Vec<(f64, String)> {
    report
        .phases
        .iter()
        .filter_map(|(s, name)| {
            let label = match PHASES.iter().position(|p| p == name) {
                Some(4) => "validações",
                Some(5) => "rampa",
                Some(6) => "constante",
                _ => return None,
            };
            Some((*s, label.to_string()))
        })
        .collect()
}

fn requests_chart(report: &RunReport) -> String {
    let ts = &report.series;
    let n = ts.ko.len();
    let totals: Vec<u64> = (0..n)
        .map(|s| ts.requests.iter().map(|g| g[s]).sum())
        .collect();
    let max = totals.iter().copied().max().unwrap_or(1) as f64;
    let mut chart = Chart::new(
        WIDTH,
        300.0,
        Axis::seconds(n as f64, "time since start"),
        Axis::linear(0.0, max * 1.05, "requests started per second", short),
    );
    let mut base = vec![0f64; n];
    for (gi, per_second) in ts.requests.iter().enumerate() {
        let mut points = Vec::with_capacity(2 * n);
        for (s, (b, count)) in base.iter_mut().zip(per_second).enumerate() {
            let lo = *b;
            let hi = lo + *count as f64;
            points.push((s as f64, lo, hi));
            points.push((s as f64 + 1.0, lo, hi));
            *b = hi;
        }
        chart.bands.push(Band {
            color: GROUP_COLORS[gi].to_string(),
            opacity: 0.75,
            points,
        });
    }
    chart.lines.push(Line {
        color: KO_COLOR.to_string(),
        width: 2.0,
        dashed: false,
        points: (0..n)
            .flat_map(|s| {
                let v = ts.ko[s] as f64;
                [(s as f64, Some(v)), (s as f64 + 1.0, Some(v))]
            })
            .collect(),
    });
    chart.vmarks = phase_marks(report);
    for (s, total) in totals.iter().enumerate() {
        let mut text = format!("{s}–{} s: {total} requests", s + 1);
        for (gi, g) in Group::ALL.iter().enumerate() {
            if ts.requests[gi][s] > 0 {
                let _ = write!(text, "\n{}: {}", g.label(), ts.requests[gi][s]);
            }
        }
        let _ = write!(text, "\nKO: {}", ts.ko[s]);
        chart.hover.push((s as f64, s as f64 + 1.0, text));
    }
    format!("{}{}", groups_and_ko_legend(), chart.render())
}

fn users_chart(report: &RunReport) -> String {
    let ts = &report.series;
    let n = ts.ko.len();
    let max = ts
        .active_users
        .iter()
        .flat_map(|g| g.iter().copied())
        .max()
        .unwrap_or(1) as f64;
    let mut chart = Chart::new(
        WIDTH,
        260.0,
        Axis::seconds(n as f64, "time since start"),
        Axis::linear(0.0, max * 1.05, "active users (per second)", short),
    );
    for (gi, _) in Group::ALL.iter().enumerate() {
        chart.lines.push(Line {
            color: GROUP_COLORS[gi].to_string(),
            width: 2.0,
            dashed: false,
            points: (0..n)
                .map(|s| (s as f64 + 0.5, Some(ts.active_users[gi][s] as f64)))
                .collect(),
        });
    }
    chart.vmarks = phase_marks(report);
    for s in 0..n {
        let mut text = format!("{s}–{} s: active users", s + 1);
        for (gi, g) in Group::ALL.iter().enumerate() {
            let _ = write!(text, "\n{}: {}", g.label(), ts.active_users[gi][s]);
        }
        chart.hover.push((s as f64, s as f64 + 1.0, text));
    }
    format!("{}{}", group_legend(), chart.render())
}

fn percentiles_chart(report: &RunReport) -> String {
    let ts = &report.series;
    let n = ts.percentiles_ms.len();
    let (mut lo, mut hi) = (f64::MAX, 0f64);
    for p in ts.percentiles_ms.iter().flatten() {
        lo = lo.min(p[0]);
        hi = hi.max(p[4]);
    }
    if lo == f64::MAX {
        lo = 0.1;
        hi = 1.0;
    }
    let mut chart = Chart::new(
        WIDTH,
        320.0,
        Axis::seconds(n as f64, "time since start"),
        Axis::log(
            lo.min(250.0 / 10.0),
            hi.max(300.0),
            "response time (log scale)",
            ms_label,
        ),
    );
    let names = ["p50", "p75", "p95", "p99", "max"];
    for (k, color) in PERCENTILE_COLORS.iter().enumerate() {
        chart.lines.push(Line {
            color: color.to_string(),
            width: if k == 3 { 2.2 } else { 1.5 },
            dashed: k == 4,
            points: (0..n)
                .map(|s| (s as f64 + 0.5, ts.percentiles_ms[s].map(|p| p[k])))
                .collect(),
        });
    }
    chart.hmarks.push((
        250.0,
        "250 ms (docs/contract.md §6)".to_string(),
        KO_COLOR.to_string(),
    ));
    chart.vmarks = phase_marks(report);
    for s in 0..n {
        if let Some(p) = ts.percentiles_ms[s] {
            let mut text = format!("{s}–{} s", s + 1);
            for (k, name) in names.iter().enumerate() {
                let _ = write!(text, "\n{name}: {} ms", ms(p[k]));
            }
            chart.hover.push((s as f64, s as f64 + 1.0, text));
        }
    }
    let items: Vec<(&str, &str)> = PERCENTILE_COLORS.iter().copied().zip(names).collect();
    format!("{}{}", legend(&items), chart.render())
}

fn distribution_chart(report: &RunReport) -> String {
    let d = &report.distribution;
    let buckets = d.ko.len();
    // Trim empty buckets at both ends (keep at least 0.1 ms … 1 s visible).
    let used = |i: usize| d.ok.iter().any(|g| g[i] > 0) || d.ko[i] > 0;
    let first = (0..buckets).find(|&i| used(i)).unwrap_or(0);
    let last = (0..buckets).rev().find(|&i| used(i)).unwrap_or(buckets - 1);
    let lo_ms = d.edges_ms[first].min(0.1);
    let hi_ms = d.edges_ms[last + 1].max(1000.0);
    let totals: Vec<u64> = (0..buckets)
        .map(|i| d.ok.iter().map(|g| g[i]).sum::<u64>() + d.ko[i])
        .collect();
    let max = totals.iter().copied().max().unwrap_or(1) as f64;
    let mut chart = Chart::new(
        WIDTH,
        300.0,
        Axis::log(
            lo_ms,
            hi_ms,
            "response time (log scale, 10 buckets per decade)",
            ms_label,
        ),
        Axis::linear(0.0, max * 1.05, "requests", short),
    );
    for i in 0..buckets {
        let (x0, x1) = (d.edges_ms[i], d.edges_ms[i + 1]);
        let mut y = 0.0;
        for (gi, g) in Group::ALL.iter().enumerate() {
            let c = d.ok[gi][i];
            if c > 0 {
                chart.bars.push(Bar {
                    x: (x0, x1),
                    y: (y, y + c as f64),
                    color: GROUP_COLORS[gi].to_string(),
                    title: format!("{} OK, {}–{} ms: {}", g.label(), ms(x0), ms(x1), c),
                });
                y += c as f64;
            }
        }
        if d.ko[i] > 0 {
            chart.bars.push(Bar {
                x: (x0, x1),
                y: (y, y + d.ko[i] as f64),
                color: KO_COLOR.to_string(),
                title: format!("KO, {}–{} ms: {}", ms(x0), ms(x1), d.ko[i]),
            });
        }
    }
    chart.vmarks.push((
        250.0,
        format!(
            "250 ms: {:.2} % of all requests OK below",
            report.summary.pct_under_250ms
        ),
    ));
    format!("{}{}", groups_and_ko_legend(), chart.render())
}

/// Percentile → position on the "nines" axis: −log10(1 − p/100); 100 % at 5.
pub(super) fn nines(p: f64) -> f64 {
    if p >= 100.0 {
        5.0
    } else {
        -(1.0 - p / 100.0).log10()
    }
}

/// The "nines" axis of a percentile curve: 0 %, 90 %, 99 % … 99.99 %, max.
pub(super) fn percentile_axis() -> Axis {
    let ticks: Vec<(f64, String)> = [
        (0.0, "0%"),
        (1.0, "90%"),
        (2.0, "99%"),
        (3.0, "99.9%"),
        (4.0, "99.99%"),
        (5.0, "max"),
    ]
    .iter()
    .map(|(v, l)| (*v, l.to_string()))
    .collect();
    Axis {
        min: 0.0,
        max: 5.0,
        log: false,
        title: "percentile".to_string(),
        ticks,
        minor: vec![nines(50.0), nines(75.0), nines(95.0)],
    }
}

fn curve_chart(report: &RunReport) -> String {
    let (mut lo, mut hi) = (f64::MAX, 0f64);
    for (_, ms) in report.curves.iter().flatten() {
        lo = lo.min(*ms);
        hi = hi.max(*ms);
    }
    if lo == f64::MAX {
        lo = 0.1;
        hi = 1.0;
    }
    let mut chart = Chart::new(
        WIDTH,
        300.0,
        percentile_axis(),
        Axis::log(lo, hi.max(300.0), "response time (log scale)", ms_label),
    );
    for (gi, g) in Group::ALL.iter().enumerate() {
        let curve = &report.curves[gi];
        chart.lines.push(Line {
            color: GROUP_COLORS[gi].to_string(),
            width: 2.2,
            dashed: false,
            points: curve.iter().map(|(p, ms)| (nines(*p), Some(*ms))).collect(),
        });
        for (p, value) in curve {
            let x = nines(*p);
            chart.hover.push((
                x - 0.04,
                x + 0.04,
                format!("{} p{}: {} ms", g.label(), short(*p), ms(*value)),
            ));
        }
    }
    chart
        .hmarks
        .push((250.0, "250 ms".to_string(), KO_COLOR.to_string()));
    format!("{}{}", group_legend(), chart.render())
}

fn group_table(report: &RunReport) -> String {
    let s = &report.summary;
    let mut o = String::from(
        r#"<table class="stats"><thead><tr><th>group</th><th>requests</th><th>OK</th><th>KO</th><th>min</th><th>mean</th><th>stddev</th><th>p50</th><th>p75</th><th>p95</th><th>p99</th><th>max</th><th>req/s</th><th>&lt; 250 ms</th><th>250–1200 ms</th><th>≥ 1200 ms</th></tr></thead><tbody>"#,
    );
    let all = s.all_stats();
    for (i, g) in s
        .groups
        .all()
        .into_iter()
        .chain(std::iter::once(&all))
        .enumerate()
    {
        let l = &g.latency_ms;
        let w = &g.gatling_ms;
        let swatch = if i < 4 {
            format!(
                r#"<i class="sw" style="background:{}"></i>"#,
                GROUP_COLORS[i]
            )
        } else {
            String::new()
        };
        let cls = if i == 4 { r#" class="total""# } else { "" };
        let ko_cls = if g.ko > 0 { r#" class="bad""# } else { "" };
        let cell = |v: f64, whole: u64| format!("<td>{}<small>{whole}</small></td>", ms(v));
        let _ = write!(
            o,
            "<tr{cls}><td>{swatch}{}</td><td>{}</td><td>{}</td><td{ko_cls}>{}</td>{}{}{}{}{}{}{}{}<td>{:.1}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&g.name),
            group_thousands(g.requests),
            group_thousands(g.ok),
            group_thousands(g.ko),
            cell(l.min, w.min),
            cell(l.mean, w.mean),
            cell(l.stddev, w.stddev),
            cell(l.p50, w.p50),
            cell(l.p75, w.p75),
            cell(l.p95, w.p95),
            cell(l.p99, w.p99),
            cell(l.max, w.max),
            g.requests_per_s,
            group_thousands(g.ranges.under_250ms),
            group_thousands(g.ranges.from_250_to_1200ms),
            group_thousands(g.ranges.over_1200ms),
        );
    }
    o.push_str("</tbody></table>");
    o.push_str(r#"<p class="note">Response times in ms at µs resolution; the small figure under each is the whole-millisecond value Gatling would show (its mean and stddev rounded). Ranges count OK requests only.</p>"#);
    o
}

fn ranges_bar(report: &RunReport) -> String {
    let s = &report.summary;
    let total = s.requests.max(1) as f64;
    let parts = [
        ("t < 250 ms", s.ranges.under_250ms, "#2e7d32"),
        (
            "250 ms ≤ t < 1200 ms",
            s.ranges.from_250_to_1200ms,
            "#f9a825",
        ),
        ("t ≥ 1200 ms", s.ranges.over_1200ms, "#ef6c00"),
        ("failed", s.ranges.failed, KO_COLOR),
    ];
    let mut o = String::from(r#"<div class="ranges">"#);
    for (label, n, color) in parts {
        let pct = 100.0 * n as f64 / total;
        if n > 0 {
            let _ = write!(
                o,
                r#"<div style="width:{pct:.3}%;background:{color}" title="{}: {} ({pct:.2} %)"></div>"#,
                esc(label),
                group_thousands(n)
            );
        }
    }
    o.push_str(r#"</div><div class="legend">"#);
    for (label, n, color) in parts {
        let _ = write!(
            o,
            r#"<span><i style="background:{color}"></i>{}: <b>{}</b> ({:.2} %)</span>"#,
            esc(label),
            group_thousands(n),
            100.0 * n as f64 / total
        );
    }
    o.push_str("</div>");
    o
}

fn failures(report: &RunReport) -> String {
    let s = &report.summary;
    if s.failures.is_empty() {
        return r#"<p class="ok-text">No failed check, no connection error, no timeout.</p>"#
            .to_string();
    }
    let mut o = String::from(
        r#"<table class="failures"><thead><tr><th>count</th><th>check or error</th><th>groups</th><th>first examples</th></tr></thead><tbody>"#,
    );
    for (i, f) in s.failures.iter().enumerate() {
        let tag = if f.inconsistency {
            r#" <span class="tag">inconsistency</span>"#
        } else {
            ""
        };
        let mut ex = String::new();
        for e in &f.examples {
            let resp = match (&e.status, &e.response) {
                (Some(st), Some(body)) => format!("→ {st} {}", esc(&one_line(body, 160))),
                _ => "→ no response".to_string(),
            };
            let _ = write!(
                ex,
                r#"<div class="ex"><code>{}</code><br><code>{resp}</code><br><span>{}</span></div>"#,
                esc(&one_line(&e.request, 160)),
                esc(&e.message)
            );
        }
        let _ = write!(
            o,
            r#"<tr id="failure-{}"><td class="num">#{} · {}</td><td><code>{}</code>{tag}</td><td>{}</td><td>{ex}</td></tr>"#,
            i + 1,
            i + 1,
            group_thousands(f.count),
            esc(&f.check),
            esc(&f.groups.join(", "))
        );
    }
    o.push_str("</tbody></table>");
    o
}

/// The reasons of every fine, each failed check linking to its examples in
/// the failures table.
fn fine_reasons_html(s: &crate::summary::Summary) -> String {
    let mut o = String::from(r#"<ul class="reasons">"#);
    for reason in fine_reasons(s) {
        let _ = write!(
            o,
            "<li><b>{} {}</b>: {}",
            reason.fine,
            esc(&format_usd(reason.cents)),
            esc(&reason.because)
        );
        if reason.not_fresh {
            o.push_str(r##"; <a href="#starting-state">the target was not freshly seeded</a>"##);
        }
        if !reason.checks.is_empty() {
            o.push_str("<ol>");
            for (n, check, count) in &reason.checks {
                let _ = write!(
                    o,
                    r##"<li><a href="#failure-{n}">{}</a> × {}</li>"##,
                    esc(check),
                    group_thousands(*count)
                );
            }
            o.push_str("</ol>");
        }
        o.push_str("</li>");
    }
    o.push_str("</ul>");
    o
}

fn score_box(report: &RunReport) -> String {
    let s = &report.summary;
    let sc = &s.score;
    let class = if sc.payout_cents == crate::score::MAX_PAYOUT_CENTS {
        "good"
    } else if sc.payout_cents >= 9_000_000 {
        "warn"
    } else {
        "bad"
    };
    let verdict = match class {
        "good" => "Perfect run: full payout.".to_string(),
        _ => fine_reasons_html(s),
    };
    let mut o = String::new();
    let _ = write!(
        o,
        r#"<section class="score {class}"><div class="payout"><div class="label">payout (docs/contract.md §6)</div><div class="big">{}</div><div class="verdict">{verdict}</div></div><div class="facts">"#,
        esc(&format_usd(sc.payout_cents))
    );
    let fact = |o: &mut String, label: &str, value: String, sub: String, bad: bool| {
        let cls = if bad { " bad" } else { "" };
        let _ = write!(
            o,
            r#"<div class="fact{cls}"><div class="label">{}</div><div class="value">{}</div><div class="sub">{}</div></div>"#,
            esc(label),
            value,
            sub
        );
    };
    fact(
        &mut o,
        "requests",
        group_thousands(s.requests),
        format!("of {} planned", group_thousands(s.run.planned_requests)),
        s.requests != s.run.planned_requests,
    );
    fact(
        &mut o,
        "KO",
        group_thousands(s.ko),
        format!("{} OK", group_thousands(s.ok)),
        s.ko > 0,
    );
    fact(
        &mut o,
        "OK under 250 ms",
        format!("{:.2} %", s.pct_under_250ms),
        format!("fine A {}", esc(&format_usd(sc.fine_latency_cents))),
        sc.fine_latency_cents > 0,
    );
    fact(
        &mut o,
        "inconsistencies",
        group_thousands(sc.inconsistencies),
        format!("fine B {}", esc(&format_usd(sc.fine_inconsistency_cents))),
        sc.inconsistencies > 0,
    );
    fact(
        &mut o,
        "p99 / max",
        format!("{} ms", ms(s.latency_ms.p99)),
        format!(
            "max {} ms · Gatling p99 {} ms",
            ms(s.latency_ms.max),
            s.gatling_ms.p99
        ),
        s.latency_ms.p99 >= 250.0,
    );
    fact(
        &mut o,
        "generator lag p99",
        format!("{:.2} ms", s.generator.lag_p99_ms),
        format!(
            "max {:.2} ms · CPU {:.0} µs/req",
            s.generator.lag_max_ms, s.generator.cpu_us_per_request
        ),
        !s.generator.trustworthy,
    );
    o.push_str("</div></section>");
    if let Some(state) = s.starting_state.as_ref().filter(|st| !st.fresh) {
        let mut items = String::new();
        for problem in state.problems() {
            let _ = write!(items, "<li>{}</li>", esc(&problem));
        }
        let _ = write!(
            o,
            r#"<section class="alert" id="starting-state"><b>The target was not freshly seeded.</b> Before the run, the five seeded accounts' statements showed:<ul>{items}</ul>The official test's opening checks expect every seeded account at balance 0 with no transaction, so they fail and are fined whatever the server does. Start from a seeded ledger to measure the server.</section>"#
        );
    }
    if !s.generator.trustworthy {
        let _ = write!(
            o,
            r#"<section class="alert">The load generator started its users {:.2} ms late at p99 (limit {LAG_P99_LIMIT_MS} ms): it could not keep Gatling's schedule, so <b>this run is not trustworthy</b>. What to do: {}.</section>"#,
            s.generator.lag_p99_ms,
            esc(UNTRUSTWORTHY_REMEDY)
        );
    }
    o
}

pub(super) const CSS: &str = r#"
:root{--fg:#1d2330;--muted:#5f6b7a;--line:#e3e7ee;--bg:#f5f7fa;--card:#fff;--good:#2e7d32;--warn:#b26a00;--bad:#c62828}
*{box-sizing:border-box}
body{margin:0;background:var(--bg);color:var(--fg);font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif}
main{max-width:1180px;margin:0 auto;padding:24px 20px 48px}
header h1{margin:0 0 4px;font-size:26px}
header .meta{color:var(--muted);margin:0}
header .meta b{color:var(--fg);font-weight:600}
section{background:var(--card);border:1px solid var(--line);border-radius:10px;padding:18px 20px;margin:18px 0;box-shadow:0 1px 2px rgba(20,30,50,.04)}
h2{font-size:18px;margin:0 0 4px}
.desc{color:var(--muted);margin:0 0 10px;font-size:14px}
.score{display:flex;gap:28px;align-items:stretch;border-left:8px solid var(--good)}
.score.warn{border-left-color:var(--warn)}.score.bad{border-left-color:var(--bad)}
.payout{min-width:300px;max-width:460px}
.payout .label,.fact .label{color:var(--muted);font-size:13px;text-transform:uppercase;letter-spacing:.04em}
.payout .big{font-size:40px;font-weight:700;letter-spacing:-.02em;white-space:nowrap}
.score.good .big{color:var(--good)}.score.warn .big{color:var(--warn)}.score.bad .big{color:var(--bad)}
.verdict{font-size:15px;color:var(--muted)}
.verdict ul.reasons{margin:6px 0 0;padding-left:18px;font-size:14px;color:var(--fg)}
.verdict ol{margin:2px 0 4px;padding-left:20px}
.verdict code,.verdict a{overflow-wrap:anywhere}
.facts{display:grid;grid-template-columns:repeat(3,1fr);gap:12px 22px;flex:1}
.fact .value{font-size:22px;font-weight:650}
.fact .sub{color:var(--muted);font-size:13px}
.fact.bad .value{color:var(--bad)}
.alert{background:#fff4e5;border-color:#f0c36d;color:#6d4300}
.legend{display:flex;flex-wrap:wrap;gap:6px 18px;font-size:13px;color:var(--muted);margin:4px 0 6px}
.legend i{display:inline-block;width:12px;height:12px;border-radius:3px;margin-right:6px;vertical-align:-1px}
svg.chart{width:100%;height:auto;display:block}
svg .plot{fill:#fbfcfe;stroke:var(--line)}
svg .grid{stroke:#e6e9ef;stroke-width:1}
svg .grid.minor{stroke:#f1f3f7}
svg .tick{font-size:11px;fill:var(--muted)}
svg .axis-title{font-size:12px;fill:var(--muted)}
svg .vmark{stroke:#9aa3af;stroke-dasharray:3 3}
svg .mark-label{font-size:11px;fill:#6b7380}
svg .hover{fill:transparent}
svg .hover:hover{fill:rgba(30,60,120,.07)}
table{border-collapse:collapse;width:100%;font-size:14px}
th,td{padding:6px 8px;border-bottom:1px solid var(--line);text-align:right;vertical-align:top}
th{color:var(--muted);font-weight:600;font-size:12px;text-transform:uppercase;letter-spacing:.03em}
td:first-child,th:first-child{text-align:left;white-space:nowrap}
table.stats td small{display:block;color:#98a1ad;font-size:11px}
tr.total td{font-weight:650;border-top:2px solid #cfd5de}
td.bad{color:var(--bad);font-weight:650}
.sw{display:inline-block;width:10px;height:10px;border-radius:2px;margin-right:7px}
.note{color:var(--muted);font-size:13px;margin:8px 0 0}
.ranges{display:flex;height:26px;border-radius:6px;overflow:hidden;background:#eef1f5;margin:6px 0}
table.failures td,table.failures th{text-align:left}
table.failures th:first-child{text-align:right}
table.failures td.num{text-align:right;font-weight:650;color:var(--bad)}
table.failures code{font-size:12.5px;overflow-wrap:anywhere}
.ex{margin:0 0 8px;font-size:12.5px;color:var(--muted)}
.ex code{color:var(--fg)}
.tag{background:#fde7e7;color:var(--bad);border-radius:4px;padding:1px 6px;font-size:12px;margin-left:6px}
.ok-text{color:var(--good);font-weight:600}
.cols{display:grid;grid-template-columns:1fr;gap:0}
footer{color:var(--muted);font-size:13px}
footer p{margin:6px 0}
"#;

/// The whole `index.html`.
pub fn render(report: &RunReport) -> String {
    let s = &report.summary;
    let r = &s.run;
    let mut o = String::with_capacity(256 * 1024);
    let _ = write!(
        o,
        r#"<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1"><title>crebito-load — {} — {}</title><style>{CSS}</style></head><body><main>"#,
        esc(&format_usd(s.score.payout_cents)),
        esc(&r.base_url)
    );
    let _ = write!(
        o,
        r#"<header><h1>crebito-load report</h1><p class="meta">Rinha de Backend 2024/Q1 official load test against <b>{}</b> · started {} · {:.1} s · scale <b>{}</b> ({} s ramp + {} s constant) · rate ×<b>{}</b> · seed {} · crebito-load {}</p></header>"#,
        esc(&r.base_url),
        esc(&r.started_at),
        r.duration_s,
        r.scale,
        r.step_seconds,
        r.step_seconds,
        r.rate,
        r.seed,
        esc(&r.version)
    );
    o.push_str(&score_box(report));
    chart_section(
        &mut o,
        "Requests per second",
        "Requests started in each second, stacked by group; the red line counts those that failed. Users arrive on Gatling's schedule whatever the server does, so a slow server shows more active users below, not fewer requests here.",
        &requests_chart(report),
    );
    chart_section(
        &mut o,
        "Response time over time",
        "Percentiles of the requests started in each second (all groups), log scale; the dashed red line is the 250 ms bound of the score. Hover for figures.",
        &percentiles_chart(report),
    );
    chart_section(
        &mut o,
        "Active users",
        "Virtual users alive at some point of each second, per group (Gatling's definition). Each user has its own TCP connection.",
        &users_chart(report),
    );
    chart_section(
        &mut o,
        "Latency distribution",
        "How many requests took how long, stacked by group, failures in red (log-scale time axis).",
        &distribution_chart(report),
    );
    chart_section(
        &mut o,
        "Percentile curve",
        "Response time at each percentile, per group: the right of the chart is the tail (99.9 %, 99.99 %, max).",
        &curve_chart(report),
    );
    let _ = write!(
        o,
        r#"<section><h2>Per group</h2>{}<h2 style="margin-top:18px">Response-time ranges</h2>{}</section>"#,
        group_table(report),
        ranges_bar(report)
    );
    chart_section(
        &mut o,
        "Failed checks and errors",
        "Grouped by Gatling check name (only the first failing check of a request counts, as in Gatling); inconsistencies are what fine B charges.",
        &failures(report),
    );
    let _ = write!(
        o,
        r#"<footer><p>Response time: from the start of the request (TCP connection included for a user's first request) to the last byte of the response, like Gatling. Score (docs/contract.md §6): pct = round(100 × OK responses under 250 ms ÷ all requests, 2); fine A = max(0, (98 − pct) × 1000) USD; fine B = inconsistencies × 803.01 USD; payout = max(0, 100,000 − A − B) USD.</p><p>Load generator: {} open-model users started with a lag of p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms behind schedule; {:.1} s of CPU (user {:.1} s, system {:.1} s, which on loopback includes kernel TCP work for the server; {:.0} µs per request) on {} thread(s).</p></footer>"#,
        group_thousands(s.generator.users),
        s.generator.lag_p50_ms,
        s.generator.lag_p99_ms,
        s.generator.lag_max_ms,
        s.generator.cpu_s,
        s.generator.cpu_user_s,
        s.generator.cpu_sys_s,
        s.generator.cpu_us_per_request,
        s.generator.threads
    );
    o.push_str("</main></body></html>\n");
    o
}
