//! Bar charts as inline SVG, drawn here from counts computed over every
//! row (the page's script never draws them). Every bar carries its count
//! in `data-n`, so a test or a reader's tool can check the chart against
//! the CSV report. Labels from outside are escaped.

use std::fmt::Write as _;

use super::esc;

/// One series of a stacked chart.
pub struct Series<'a> {
    pub label: &'a str,
    /// Stable key, in `data-s`; also the CSS class of its colour.
    pub key: &'static str,
}

const HEIGHT: u32 = 240;
const TOP: u32 = 20;
const LEFT: u32 = 56;
const BOTTOM: u32 = 100;

/// A rounded top for the y axis, at least `max`.
fn nice_max(max: u64) -> u64 {
    if max <= 5 {
        return max.max(1);
    }
    let mut step = 1u64;
    while step.saturating_mul(10) <= max {
        step = step.saturating_mul(10);
    }
    for m in [1, 2, 5, 10] {
        let top = step.saturating_mul(m);
        if top >= max {
            return top;
        }
    }
    max
}

/// Stacked vertical bars: one bar per category, one segment per series.
/// `values[c][s]` is the count of category `c` in series `s`.
pub fn stacked(
    out: &mut String,
    id: &str,
    title: &str,
    categories: &[String],
    series: &[Series<'_>],
    values: &[Vec<u64>],
) {
    let n = categories.len().max(1) as u32;
    let bar = if n > 60 { 8 } else { 28 };
    let gap = bar / 3;
    let width = LEFT + n * (bar + gap) + 16;
    let height = TOP + HEIGHT + BOTTOM;
    let max = values
        .iter()
        .map(|v| v.iter().sum::<u64>())
        .max()
        .unwrap_or(0);
    let bars = Bars {
        id,
        n,
        bar,
        gap,
        top: nice_max(max),
    };
    let _ = write!(
        out,
        "<figure class=\"chart\" id=\"{id}\">\n<figcaption>{}</figcaption>\n\
         <svg class=\"bars\" viewBox=\"0 0 {width} {height}\" width=\"{width}\" height=\"{height}\" role=\"img\" aria-label=\"{}\">\n",
        esc(title),
        esc(title)
    );
    // The y axis: 0, half, top.
    for v in [0, bars.top / 2, bars.top] {
        let y = f64::from(TOP + HEIGHT) - bars.scale(v);
        let _ = writeln!(
            out,
            "<line class=\"grid\" x1=\"{LEFT}\" x2=\"{}\" y1=\"{y:.1}\" y2=\"{y:.1}\"/><text class=\"axis\" x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{v}</text>",
            width - 8,
            LEFT - 6,
            y + 4.0
        );
    }
    for (c, label) in categories.iter().enumerate() {
        let empty = Vec::new();
        bars.bar(out, c, label, series, values.get(c).unwrap_or(&empty));
    }
    out.push_str("</svg>\n<ul class=\"legend\">");
    for s in series {
        let _ = write!(
            out,
            "<li><span class=\"swatch s-{}\"></span>{}</li>",
            s.key,
            esc(s.label)
        );
    }
    out.push_str("</ul>\n</figure>\n");
}

/// How the bars of a stacked chart are laid out.
struct Bars<'a> {
    /// The chart's id, in each segment's `data-chart`.
    id: &'a str,
    /// Bars on the chart.
    n: u32,
    /// A bar's width.
    bar: u32,
    /// The space between bars.
    gap: u32,
    /// The count at the top of the y axis.
    top: u64,
}

impl Bars<'_> {
    /// The height of `v` on the chart.
    fn scale(&self, v: u64) -> f64 {
        v as f64 * f64::from(HEIGHT) / self.top as f64
    }

    /// Category `c`'s bar: its segments bottom up, its count on top and,
    /// on every few bars, its label below.
    fn bar(&self, out: &mut String, c: usize, label: &str, series: &[Series<'_>], values: &[u64]) {
        let (id, n, bar) = (self.id, self.n, self.bar);
        let x = LEFT + 8 + c as u32 * (bar + self.gap);
        let mut y = f64::from(TOP + HEIGHT);
        let total: u64 = values.iter().sum();
        let _ = writeln!(out, "<g class=\"bar\" data-c=\"{c}\" data-n=\"{total}\">");
        for (s, ser) in series.iter().enumerate() {
            let v = values.get(s).copied().unwrap_or(0);
            if v == 0 {
                continue;
            }
            let h = self.scale(v);
            y -= h;
            let _ = writeln!(
                out,
                "<rect class=\"s-{}\" data-chart=\"{id}\" data-c=\"{c}\" data-s=\"{}\" data-n=\"{v}\" x=\"{x}\" y=\"{y:.1}\" width=\"{bar}\" height=\"{h:.1}\"><title>{}: {} = {v}</title></rect>",
                ser.key,
                ser.key,
                esc(label),
                esc(ser.label)
            );
        }
        if total > 0 && n <= 60 {
            let _ = writeln!(
                out,
                "<text class=\"count\" x=\"{}\" y=\"{:.1}\" text-anchor=\"middle\">{total}</text>",
                x + bar / 2,
                y - 3.0
            );
        }
        let stride = (n as usize).div_ceil(40).max(1);
        if c.is_multiple_of(stride) {
            let lx = x + bar / 2;
            let ly = TOP + HEIGHT + 12;
            let _ = writeln!(
                out,
                "<text class=\"axis\" x=\"{lx}\" y=\"{ly}\" text-anchor=\"end\" transform=\"rotate(-40 {lx} {ly})\">{}</text>",
                esc(label)
            );
        }
        out.push_str("</g>\n");
    }
}

/// Labels longer than this are cut on the chart (whole in the tooltip).
const LABEL_CHARS: usize = 34;

/// Horizontal bars, one per item, largest first as given.
pub fn horizontal(out: &mut String, id: &str, title: &str, items: &[(String, u64)]) {
    let row = 22u32;
    let label_w = 250u32;
    let bar_w = 420u32;
    let width = label_w + bar_w + 80;
    let height = (items.len() as u32).max(1) * row + 10;
    let max = items.iter().map(|(_, n)| *n).max().unwrap_or(0).max(1);
    let _ = write!(
        out,
        "<figure class=\"chart\" id=\"{id}\">\n<figcaption>{}</figcaption>\n\
         <svg class=\"hbars\" viewBox=\"0 0 {width} {height}\" width=\"{width}\" height=\"{height}\" role=\"img\" aria-label=\"{}\">\n",
        esc(title),
        esc(title)
    );
    for (i, (label, n)) in items.iter().enumerate() {
        let y = 5 + i as u32 * row;
        let w = (*n as f64 * f64::from(bar_w) / max as f64).max(1.0);
        let shown: String = if label.chars().count() > LABEL_CHARS {
            label.chars().take(LABEL_CHARS - 1).chain(['…']).collect()
        } else {
            label.clone()
        };
        let _ = writeln!(
            out,
            "<g class=\"hbar\" data-chart=\"{id}\" data-c=\"{i}\" data-label=\"{}\" data-n=\"{n}\"><title>{}: {n}</title>\
             <text class=\"axis\" x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>\
             <rect class=\"s-type\" x=\"{label_w}\" y=\"{}\" width=\"{w:.1}\" height=\"{}\"/>\
             <text class=\"count\" x=\"{:.1}\" y=\"{}\">{n}</text></g>",
            esc(label),
            esc(label),
            label_w - 6,
            y + 15,
            esc(&shown),
            y + 3,
            row - 6,
            f64::from(label_w) + w + 4.0,
            y + 15,
        );
    }
    out.push_str("</svg>\n</figure>\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn axis_tops_are_round_and_cover_the_data() {
        for (max, top) in [
            (0, 1),
            (3, 3),
            (7, 10),
            (11, 20),
            (120, 200),
            (999, 1000),
            (1001, 2000),
        ] {
            assert_eq!(nice_max(max), top, "{max}");
        }
    }

    #[test]
    fn labels_from_outside_are_escaped_in_text_and_attributes() {
        let mut out = String::new();
        let hostile = "<img src=x onerror=alert(1)>\"".to_string();
        horizontal(&mut out, "t", "T", &[(hostile, 2)]);
        assert!(!out.contains("<img"), "{out}");
        assert!(out.contains("data-label=\"&lt;img src=x onerror=alert(1)&gt;&quot;\""));
    }
}
