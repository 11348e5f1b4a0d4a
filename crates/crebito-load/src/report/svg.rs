//! A small SVG chart writer for the HTML report: axes (linear or log),
//! lines, filled bands, bars, markers and hover tooltips (`<title>`), all
//! inline, no script.

use std::fmt::Write as _;

use super::format::{esc, trim};

/// An axis: range, linear or logarithmic, title and tick labels.
#[derive(Debug, Clone)]
pub struct Axis {
    /// Smallest value shown.
    pub min: f64,
    /// Largest value shown.
    pub max: f64,
    /// Logarithmic (base 10) when true.
    pub log: bool,
    /// Axis title.
    pub title: String,
    /// Tick positions and labels.
    pub ticks: Vec<(f64, String)>,
    /// Minor grid lines (no label).
    pub minor: Vec<f64>,
}

/// A "nice" step (1, 2 or 5 × 10ⁿ) giving about `target` intervals over `span`.
pub fn nice_step(span: f64, target: f64) -> f64 {
    if span <= 0.0 || !span.is_finite() {
        return 1.0;
    }
    let raw = span / target;
    let mag = 10f64.powf(raw.log10().floor());
    let norm = raw / mag;
    let nice = if norm <= 1.0 {
        1.0
    } else if norm <= 2.0 {
        2.0
    } else if norm <= 5.0 {
        5.0
    } else {
        10.0
    };
    nice * mag
}

impl Axis {
    /// A linear axis from `min` to at least `max`, rounded up to a nice
    /// tick, with labels made by `fmt`.
    pub fn linear(min: f64, max: f64, title: &str, fmt: fn(f64) -> String) -> Axis {
        let max = if max <= min { min + 1.0 } else { max };
        let step = nice_step(max - min, 5.0);
        let top = (max / step).ceil() * step;
        let mut ticks = Vec::new();
        let mut v = min;
        while v <= top + step * 1e-6 {
            ticks.push((v, fmt(v)));
            v += step;
        }
        Axis {
            min,
            max: top,
            log: false,
            title: title.to_string(),
            ticks,
            minor: Vec::new(),
        }
    }

    /// A linear time axis in seconds, exactly `0..=max`.
    pub fn seconds(max: f64, title: &str) -> Axis {
        let max = max.max(1.0);
        let step = nice_step(max, 8.0);
        let mut ticks = Vec::new();
        let mut v = 0.0;
        while v <= max + 1e-9 {
            ticks.push((v, format!("{}s", trim(v))));
            v += step;
        }
        Axis {
            min: 0.0,
            max,
            log: false,
            title: title.to_string(),
            ticks,
            minor: Vec::new(),
        }
    }

    /// A log axis covering `min..max`, widened to whole decades, labelled
    /// with `fmt` at each decade, minor lines at 2× and 5×.
    pub fn log(min: f64, max: f64, title: &str, fmt: fn(f64) -> String) -> Axis {
        let min = min.max(1e-6);
        let max = max.max(min * 10.0);
        let lo = min.log10().floor() as i32;
        let hi = max.log10().ceil() as i32;
        let mut ticks = Vec::new();
        let mut minor = Vec::new();
        for k in lo..=hi {
            let v = 10f64.powi(k);
            ticks.push((v, fmt(v)));
            if k < hi {
                minor.push(2.0 * v);
                minor.push(5.0 * v);
            }
        }
        Axis {
            min: 10f64.powi(lo),
            max: 10f64.powi(hi),
            log: true,
            title: title.to_string(),
            ticks,
            minor,
        }
    }

    /// Position of `v` along the axis, 0.0 (min) to 1.0 (max).
    pub fn frac(&self, v: f64) -> f64 {
        let f = if self.log {
            let v = v.max(self.min);
            (v.log10() - self.min.log10()) / (self.max.log10() - self.min.log10())
        } else {
            (v - self.min) / (self.max - self.min)
        };
        if f.is_finite() {
            f.clamp(-0.01, 1.01)
        } else {
            0.0
        }
    }
}

/// A polyline.
#[derive(Debug, Clone)]
pub struct Line {
    /// CSS colour.
    pub color: String,
    /// Stroke width, px.
    pub width: f64,
    /// Dashed stroke.
    pub dashed: bool,
    /// Points (x, y); a `None` y breaks the line.
    pub points: Vec<(f64, Option<f64>)>,
}

/// A filled band between a lower and an upper line (stacked areas).
#[derive(Debug, Clone)]
pub struct Band {
    /// CSS colour.
    pub color: String,
    /// Fill opacity.
    pub opacity: f64,
    /// Points (x, lower y, upper y).
    pub points: Vec<(f64, f64, f64)>,
}

/// A rectangle in data coordinates with a tooltip.
#[derive(Debug, Clone)]
pub struct Bar {
    /// Left, right.
    pub x: (f64, f64),
    /// Bottom, top.
    pub y: (f64, f64),
    /// CSS colour.
    pub color: String,
    /// Tooltip.
    pub title: String,
}

/// A chart.
#[derive(Debug, Clone)]
pub struct Chart {
    /// Width, px (the SVG scales to its container).
    pub width: f64,
    /// Height, px.
    pub height: f64,
    /// Horizontal axis.
    pub x: Axis,
    /// Vertical axis.
    pub y: Axis,
    /// Filled bands, drawn first.
    pub bands: Vec<Band>,
    /// Bars.
    pub bars: Vec<Bar>,
    /// Lines, drawn over bands and bars.
    pub lines: Vec<Line>,
    /// Vertical markers (x, label).
    pub vmarks: Vec<(f64, String)>,
    /// Horizontal markers (y, label, colour).
    pub hmarks: Vec<(f64, String, String)>,
    /// Hover zones (x from, x to, tooltip text).
    pub hover: Vec<(f64, f64, String)>,
}

const LEFT: f64 = 62.0;
const RIGHT: f64 = 14.0;
const TOP: f64 = 14.0;
const BOTTOM: f64 = 40.0;

impl Chart {
    /// An empty chart with these axes.
    pub fn new(width: f64, height: f64, x: Axis, y: Axis) -> Chart {
        Chart {
            width,
            height,
            x,
            y,
            bands: Vec::new(),
            bars: Vec::new(),
            lines: Vec::new(),
            vmarks: Vec::new(),
            hmarks: Vec::new(),
            hover: Vec::new(),
        }
    }

    fn px(&self, x: f64) -> f64 {
        LEFT + self.x.frac(x) * (self.width - LEFT - RIGHT)
    }

    fn py(&self, y: f64) -> f64 {
        self.height - BOTTOM - self.y.frac(y) * (self.height - TOP - BOTTOM)
    }

    /// The SVG element.
    pub fn render(&self) -> String {
        let (w, h) = (self.width, self.height);
        let mut o = String::new();
        let _ = write!(
            o,
            r#"<svg class="chart" viewBox="0 0 {w} {h}" xmlns="http://www.w3.org/2000/svg" role="img" preserveAspectRatio="xMidYMid meet">"#
        );
        let (x0, x1) = (LEFT, w - RIGHT);
        let (y0, y1) = (h - BOTTOM, TOP);
        let _ = write!(
            o,
            r#"<rect x="{x0}" y="{y1}" width="{}" height="{}" class="plot"/>"#,
            x1 - x0,
            y0 - y1
        );
        for v in &self.y.minor {
            let y = self.py(*v);
            let _ = write!(
                o,
                r#"<line x1="{x0}" x2="{x1}" y1="{y:.1}" y2="{y:.1}" class="grid minor"/>"#
            );
        }
        for (v, label) in &self.y.ticks {
            let y = self.py(*v);
            let _ = write!(
                o,
                r#"<line x1="{x0}" x2="{x1}" y1="{y:.1}" y2="{y:.1}" class="grid"/><text x="{}" y="{:.1}" class="tick" text-anchor="end">{}</text>"#,
                x0 - 6.0,
                y + 4.0,
                esc(label)
            );
        }
        for v in &self.x.minor {
            let x = self.px(*v);
            let _ = write!(
                o,
                r#"<line x1="{x:.1}" x2="{x:.1}" y1="{y0}" y2="{y1}" class="grid minor"/>"#
            );
        }
        for (v, label) in &self.x.ticks {
            let x = self.px(*v);
            let _ = write!(
                o,
                r#"<line x1="{x:.1}" x2="{x:.1}" y1="{y0}" y2="{y1}" class="grid"/><text x="{x:.1}" y="{}" class="tick" text-anchor="middle">{}</text>"#,
                y0 + 16.0,
                esc(label)
            );
        }
        let _ = write!(
            o,
            r#"<text x="{:.1}" y="{}" class="axis-title" text-anchor="middle">{}</text>"#,
            (x0 + x1) / 2.0,
            h - 6.0,
            esc(&self.x.title)
        );
        let _ = write!(
            o,
            r#"<text transform="translate(14 {:.1}) rotate(-90)" class="axis-title" text-anchor="middle">{}</text>"#,
            (y0 + y1) / 2.0,
            esc(&self.y.title)
        );
        for (i, (v, label)) in self.vmarks.iter().enumerate() {
            let x = self.px(*v);
            // Labels alternate between two rows so that close markers stay
            // readable; past 70 % of the width they sit left of their line.
            let (lx, anchor) = if x > x0 + 0.7 * (x1 - x0) {
                (x - 4.0, "end")
            } else {
                (x + 4.0, "start")
            };
            let _ = write!(
                o,
                r#"<line x1="{x:.1}" x2="{x:.1}" y1="{y0}" y2="{y1}" class="vmark"/><text x="{lx:.1}" y="{}" class="mark-label" text-anchor="{anchor}">{}</text>"#,
                y1 + 12.0 + 13.0 * (i % 2) as f64,
                esc(label)
            );
        }
        for band in &self.bands {
            if band.points.is_empty() {
                continue;
            }
            let mut d = String::new();
            for (i, (x, _, hi)) in band.points.iter().enumerate() {
                let _ = write!(
                    d,
                    "{}{:.1},{:.1} ",
                    if i == 0 { "M" } else { "L" },
                    self.px(*x),
                    self.py(*hi)
                );
            }
            for (x, lo, _) in band.points.iter().rev() {
                let _ = write!(d, "L{:.1},{:.1} ", self.px(*x), self.py(*lo));
            }
            let _ = write!(
                o,
                r#"<path d="{d}Z" fill="{}" fill-opacity="{}" stroke="none"/>"#,
                band.color, band.opacity
            );
        }
        for bar in &self.bars {
            let (l, r) = (self.px(bar.x.0), self.px(bar.x.1));
            let (b, t) = (self.py(bar.y.0), self.py(bar.y.1));
            if (b - t).abs() < 0.01 {
                continue;
            }
            let _ = write!(
                o,
                r#"<rect x="{:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="{}"><title>{}</title></rect>"#,
                l + 0.5,
                t.min(b),
                (r - l - 1.0).max(0.5),
                (b - t).abs(),
                bar.color,
                esc(&bar.title)
            );
        }
        for line in &self.lines {
            let mut d = String::new();
            let mut pen_down = false;
            for (x, y) in &line.points {
                match y {
                    Some(y) => {
                        let _ = write!(
                            d,
                            "{}{:.1},{:.1} ",
                            if pen_down { "L" } else { "M" },
                            self.px(*x),
                            self.py(*y)
                        );
                        pen_down = true;
                    }
                    None => pen_down = false,
                }
            }
            if d.is_empty() {
                continue;
            }
            let dash = if line.dashed {
                r#" stroke-dasharray="5 4""#
            } else {
                ""
            };
            let _ = write!(
                o,
                r#"<path d="{d}" fill="none" stroke="{}" stroke-width="{}" stroke-linejoin="round"{dash}/>"#,
                line.color, line.width
            );
        }
        for (v, label, color) in &self.hmarks {
            let y = self.py(*v);
            let _ = write!(
                o,
                r#"<line x1="{x0}" x2="{x1}" y1="{y:.1}" y2="{y:.1}" stroke="{color}" stroke-width="1.5" stroke-dasharray="6 4"/><text x="{:.1}" y="{:.1}" class="mark-label" fill="{color}">{}</text>"#,
                x0 + 6.0,
                y + 14.0,
                esc(label)
            );
        }
        for (a, b, text) in &self.hover {
            let (l, r) = (self.px(*a), self.px(*b));
            let _ = write!(
                o,
                r#"<rect x="{l:.1}" y="{y1}" width="{:.1}" height="{}" class="hover"><title>{}</title></rect>"#,
                (r - l).max(1.0),
                y0 - y1,
                esc(text)
            );
        }
        o.push_str("</svg>");
        o
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::format::short;

    #[test]
    fn nice_numbers() {
        assert_eq!(nice_step(240.0, 8.0), 50.0);
        assert_eq!(nice_step(1.0, 5.0), 0.2);
        assert_eq!(short(1500.0), "1500");
        assert_eq!(short(25_000.0), "25k");
        assert_eq!(short(0.25), "0.25");
        assert_eq!(esc("<a & \"b\">"), "&lt;a &amp; &quot;b&quot;&gt;");
    }

    #[test]
    fn log_axis_widens_to_decades() {
        let a = Axis::log(0.3, 450.0, "ms", short);
        assert_eq!(a.min, 0.1);
        assert_eq!(a.max, 1000.0);
        assert!((a.frac(1.0) - 0.25).abs() < 1e-9);
        assert!((a.frac(100.0) - 0.75).abs() < 1e-9);
    }
}
