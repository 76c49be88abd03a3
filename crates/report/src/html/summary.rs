//! The summary report as one HTML page: lookups, paid calls, cache answers
//! and failures per day as a chart and a table, and what the paid calls
//! cost and the cache saved, from `price_per_call` and `currency` (never
//! an invented price).

use std::fmt::Write as _;
use std::io::{self, Write};

use chrono::{DateTime, Utc};

use super::chart::{self, Series};
use super::{Lang, Price, esc, fact, generated_fact, money, number};
use crate::{HtmlOptions, Period, ReportError, SUMMARY_COLUMNS};

pub use crate::summary::DayCounts;

/// Where the counts of the chart sit in a day's counts.
const LOOKUPS: usize = 0;
const PAID: usize = 1;
const CACHE: usize = 2;
/// Answers of the organisation cache: like cache answers, paid calls avoided.
const ORG_CACHE: usize = 16;
/// Refused, unavailable, garbled: calls that gave no usable answer.
const FAILURES: [usize; 3] = [12, 13, 14];

/// A day's failed paid calls.
pub fn failures(c: &[u64; crate::SUMMARY_COUNTS]) -> u64 {
    FAILURES.iter().map(|&i| c[i]).sum()
}

/// What the page says about itself.
#[derive(Debug, Clone)]
pub struct Page<'a> {
    /// The language of the page's words.
    pub lang: Lang,
    /// The days the page covers.
    pub period: Period,
    /// The price of a paid call, if configured: the cost and the savings.
    pub price: Option<&'a Price>,
    /// When the page says it was made.
    pub generated_at: DateTime<Utc>,
}

const SCRIPT: &str = include_str!("summary.js");

/// The summary of these days as an HTML page; returns the days written.
pub fn write_summary_html<W: Write>(
    w: W,
    days: &[DayCounts],
    period: Period,
    opts: &HtmlOptions,
) -> Result<(W, u64), ReportError> {
    let page = Page {
        lang: opts.lang,
        period,
        price: opts.price.as_ref(),
        generated_at: opts.generated_at,
    };
    let w = write(w, days, &page).map_err(csv::Error::from)?;
    Ok((w, days.len() as u64))
}

/// Writes the page for these days (oldest first).
pub fn write<W: Write>(mut w: W, days: &[DayCounts], page: &Page<'_>) -> io::Result<W> {
    let l = page.lang.labels();
    let mut total = [0u64; crate::SUMMARY_COUNTS];
    for (_, c) in days {
        for (t, n) in total.iter_mut().zip(c) {
            *t = t.saturating_add(*n);
        }
    }
    let mut out = String::with_capacity(16 * 1024);
    super::head(&mut out, page.lang, l.summary_title, &[SCRIPT]);
    header(&mut out, &total, page);
    if days.is_empty() {
        let _ = writeln!(out, "<p>{}</p>", esc(l.no_lookups));
    } else {
        days_chart(&mut out, days, page.lang);
        table(&mut out, days, page.lang);
    }
    super::tail(&mut out, SCRIPT);
    w.write_all(out.as_bytes())?;
    Ok(w)
}

/// The page's header: the title, the period, its totals and their cost.
fn header(out: &mut String, total: &[u64; crate::SUMMARY_COUNTS], page: &Page<'_>) {
    let lang = page.lang;
    let l = lang.labels();
    let _ = writeln!(
        out,
        "<header>\n<h1>{}</h1>\n<dl class=\"facts\">",
        esc(l.summary_title)
    );
    let period = match (page.period.from, page.period.to) {
        (None, None) => l.all_time.to_owned(),
        (f, t) => format!(
            "{} – {}",
            f.map(|d| lang.date(d)).unwrap_or_else(|| "…".into()),
            t.map(|d| lang.date(d)).unwrap_or_else(|| "…".into())
        ),
    };
    fact(out, l.period, &esc(&period));
    fact(out, l.lookups, &number(total[LOOKUPS], lang));
    fact(out, l.paid_calls, &number(total[PAID], lang));
    fact(out, l.cache_hits, &number(total[CACHE], lang));
    fact(out, l.failures, &number(failures(total), lang));
    match page.price {
        Some(p) => {
            let cur = esc(&p.currency);
            let amount = |n: Option<u64>| match n {
                Some(h) => format!("<span class=\"money\">{} {cur}</span>", money(h, lang)),
                None => "—".into(),
            };
            fact(
                out,
                l.price,
                &format!("{} {cur}", money(p.hundredths, lang)),
            );
            fact(out, l.spent, &amount(p.times(total[PAID])));
            fact(
                out,
                l.saved,
                &amount(p.times(total[CACHE] + total[ORG_CACHE])),
            );
        }
        None => {
            fact(out, l.spent, &esc(l.price_not_set));
            fact(out, l.saved, &esc(l.price_not_set));
        }
    }
    generated_fact(out, l.generated, lang, page.generated_at);
    out.push_str("</dl>\n</header>\n");
}

/// The chart of each day's paid answers, failures and cache answers, and
/// the note on what a failure is.
fn days_chart(out: &mut String, days: &[DayCounts], lang: Lang) {
    let l = lang.labels();
    out.push_str("<section class=\"charts\">\n");
    let cats: Vec<String> = days.iter().map(|(d, _)| lang.short_date(*d)).collect();
    let values: Vec<Vec<u64>> = days
        .iter()
        .map(|(_, c)| {
            let failed = failures(c);
            vec![c[PAID].saturating_sub(failed), failed, c[CACHE]]
        })
        .collect();
    let series = [
        Series {
            label: l.paid_answered,
            key: "paid",
        },
        Series {
            label: l.failures,
            key: "failed",
        },
        Series {
            label: l.cache_hits,
            key: "cache",
        },
    ];
    chart::stacked(out, "days", l.chart_days, &cats, &series, &values);
    let _ = writeln!(
        out,
        "</section>\n<p class=\"note\">{}</p>",
        esc(l.failures_are)
    );
}

/// Every column of the CSV summary, headed in the page's language.
fn table(out: &mut String, days: &[DayCounts], lang: Lang) {
    out.push_str("<section class=\"wide\">\n<table id=\"days-table\"><thead><tr>");
    for key in SUMMARY_COLUMNS {
        let class = if *key == "day" { "" } else { " class=\"num\"" };
        let _ = write!(out, "<th{class}>{}</th>", esc(lang.header(key)));
    }
    out.push_str("</tr></thead><tbody>\n");
    for (d, c) in days {
        let _ = write!(out, "<tr data-day=\"{d}\"><td class=\"day\">{d}</td>");
        for n in c {
            let _ = write!(out, "<td class=\"num\">{n}</td>");
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</tbody></table>\n</section>\n");
}
