//! The expiring report as one HTML page: a header saying what it covers,
//! two charts counted over every row, and the rows as a JSON data block
//! that the page's script shows a page at a time.
//!
//! At a million people (close to 900,000 rows) the rows are written
//! column by column, with the texts that repeat (document types,
//! statuses, notes) as numbers into short lists and the expiry date as
//! days from the as-of date, so the browser parses one compact JSON value
//! and builds only the rows of the page on screen.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::{self, Write};

use chrono::{DateTime, Utc};

use super::chart::{self, Series};
use super::{Lang, esc, fact, generated_fact, json_in_script, json_value};
use crate::lang::Labels;
use crate::rows::RowSet;
use crate::{HtmlOptions, Options, ReportError};
use gbdfl_core::expiry::{Reason, RowRef, Rules};

pub use crate::scan::ScanStats;

/// What the page says about itself.
#[derive(Debug, Clone, Copy)]
pub struct Page<'a> {
    /// The language of the page's words.
    pub lang: Lang,
    /// The as-of date and the window the rows were checked against.
    pub rules: &'a Rules,
    /// Whether the IINs are shown whole (the header says which).
    pub full_iin: bool,
    /// When the page says it was made.
    pub generated_at: DateTime<Utc>,
}

const SCRIPT: &str = include_str!("expiring.js");

/// The series of the weeks chart, by the row's first reason in this order.
const SERIES: [&str; 5] = [
    "expired",
    "expires_soon",
    "document_not_valid",
    "life_status_not_normal",
    "other",
];

/// The series a row is counted under: its most pressing reason.
fn series_of(r: &RowRef<'_>) -> usize {
    [
        Reason::Expired,
        Reason::ExpiresSoon,
        Reason::DocumentNotValid,
        Reason::LifeStatusNotNormal,
    ]
    .iter()
    .position(|&x| r.reasons.has(x))
    .unwrap_or(4)
}

/// Days per bar of the weeks chart: a week, or several when the window
/// would need more than 260 bars.
pub fn step_days(within_days: i64) -> i64 {
    let weeks = within_days / 7 + 1;
    7 * ((weeks + 259) / 260).max(1)
}

/// Bars of the weeks chart: expired, one per step within the window, and
/// "no date / later".
fn buckets(rules: &Rules) -> usize {
    (rules.within_days / step_days(rules.within_days) + 3) as usize
}

fn bucket_of(days_left: Option<i64>, rules: &Rules) -> usize {
    let last = buckets(rules) - 1;
    match days_left {
        Some(d) if d < 0 => 0,
        Some(d) if d <= rules.within_days => 1 + (d / step_days(rules.within_days)) as usize,
        _ => last,
    }
}

/// Document types shown on the types chart; the rest share one bar.
const TYPES_SHOWN: usize = 15;

/// Texts that repeat, as numbers into a list.
#[derive(Default)]
struct Dict<'a> {
    list: Vec<&'a str>,
    index: HashMap<&'a str, u32>,
}

impl<'a> Dict<'a> {
    fn id(&mut self, s: &'a str) -> u32 {
        if let Some(&i) = self.index.get(s) {
            return i;
        }
        let i = self.list.len() as u32;
        self.list.push(s);
        self.index.insert(s, i);
        i
    }
}

/// The expiring report as an HTML page; returns the rows written.
pub fn write_expiring_html<W: Write>(
    w: W,
    rows: &RowSet,
    stats: &ScanStats,
    opts: &Options,
    html_opts: &HtmlOptions,
) -> Result<(W, u64), ReportError> {
    let page = Page {
        lang: html_opts.lang,
        rules: &opts.rules,
        full_iin: opts.full_iin,
        generated_at: html_opts.generated_at,
    };
    let w = write(w, rows, stats, &page).map_err(csv::Error::from)?;
    Ok((w, rows.len() as u64))
}

/// Writes the page; hands the writer back.
pub fn write<W: Write>(
    mut w: W,
    rows: &RowSet,
    stats: &ScanStats,
    page: &Page<'_>,
) -> io::Result<W> {
    let l = page.lang.labels();
    let (weeks, types) = chart_counts(rows, page.rules);
    let mut out = String::with_capacity(64 * 1024);
    super::head(&mut out, page.lang, l.expiring_title, &[SCRIPT]);
    header(&mut out, rows, stats, page);
    out.push_str("<section class=\"charts\">\n");
    weeks_chart(&mut out, page, &weeks);
    types_chart(&mut out, l, types);
    out.push_str("</section>\n");
    table(&mut out, l);
    meta(&mut out, page);
    w.write_all(out.as_bytes())?;
    write_data(&mut w, rows)?;
    let mut end = String::from("</script>\n");
    super::tail(&mut end, SCRIPT);
    w.write_all(end.as_bytes())?;
    Ok(w)
}

/// One pass over the rows: the counts of the weeks chart (bar by series)
/// and of the types chart.
fn chart_counts<'r>(rows: &'r RowSet, rules: &Rules) -> (Vec<Vec<u64>>, HashMap<&'r str, u64>) {
    let mut weeks = vec![vec![0u64; SERIES.len()]; buckets(rules)];
    let mut types: HashMap<&str, u64> = HashMap::new();
    for r in rows.iter_ref() {
        weeks[bucket_of(r.days_left, rules)][series_of(&r)] += 1;
        *types.entry(r.document_type).or_default() += 1;
    }
    (weeks, types)
}

/// The page's header: the title and what the report covers.
fn header(out: &mut String, rows: &RowSet, stats: &ScanStats, page: &Page<'_>) {
    let (lang, rules) = (page.lang, page.rules);
    let l = lang.labels();
    let _ = writeln!(
        out,
        "<header>\n<h1>{}</h1>\n<dl class=\"facts\">",
        esc(l.expiring_title)
    );
    fact(out, l.as_of, &esc(&lang.date(rules.as_of)));
    fact(out, l.window, &esc(&lang.days(rules.within_days)));
    fact(out, l.people_scanned, &super::number(stats.people, lang));
    fact(
        out,
        l.people_listed,
        &super::number(stats.people_listed, lang),
    );
    fact(
        out,
        l.documents_listed,
        &super::number(rows.len() as u64, lang),
    );
    let oldest = match stats.oldest_fetch {
        Some(t) => format!(
            "<time datetime=\"{}\">{} {} UTC</time>",
            gbdfl_core::time::iso_seconds(t),
            esc(&lang.date(t.date_naive())),
            t.format("%H:%M")
        ),
        None => esc(l.no_records),
    };
    fact(out, l.oldest_fetch, &oldest);
    let iins = if page.full_iin {
        l.iins_full
    } else {
        l.iins_masked
    };
    fact(out, "IIN", &esc(iins));
    generated_fact(out, l.generated, lang, page.generated_at);
    out.push_str("</dl>\n</header>\n");
}

/// The weeks chart: a bar per step of the window, stacked by series.
fn weeks_chart(out: &mut String, page: &Page<'_>, weeks: &[Vec<u64>]) {
    let (lang, rules) = (page.lang, page.rules);
    let l = lang.labels();
    let step = step_days(rules.within_days);
    let mut cats = vec![l.bucket_expired.to_owned()];
    for b in 0..buckets(rules) - 2 {
        let start = rules.as_of + chrono::Duration::days(b as i64 * step);
        cats.push(format!("{} {}", l.bucket_week, lang.short_date(start)));
    }
    cats.push(l.bucket_later.to_owned());
    let series: Vec<Series<'_>> = SERIES
        .iter()
        .zip(l.series)
        .map(|(&key, label)| Series { label, key })
        .collect();
    chart::stacked(out, "weeks", l.chart_weeks, &cats, &series, weeks);
}

/// The types chart: the most common document types, the rest in one bar.
fn types_chart(out: &mut String, l: &Labels, types: HashMap<&str, u64>) {
    let mut by_type: Vec<(String, u64)> = types
        .into_iter()
        .map(|(t, n)| {
            (
                if t.is_empty() {
                    l.no_document.to_owned()
                } else {
                    t.to_owned()
                },
                n,
            )
        })
        .collect();
    by_type.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    if by_type.len() > TYPES_SHOWN {
        let rest = by_type.split_off(TYPES_SHOWN - 1);
        let n = rest.iter().map(|(_, n)| n).sum();
        by_type.push((format!("{} ({})", l.other_types, rest.len()), n));
    }
    chart::horizontal(out, "types", l.chart_types, &by_type);
}

/// The table: controls, headings; the body is filled by the script.
fn table(out: &mut String, l: &Labels) {
    let _ = write!(
        out,
        "<section>\n<div class=\"controls\" id=\"controls\" hidden>\
         <label>{} <input id=\"q\" type=\"search\" size=\"28\"></label>\
         <label><select id=\"reason\"><option value=\"-1\">{}</option>",
        esc(l.filter),
        esc(l.all_reasons)
    );
    for (i, r) in l.reasons.iter().enumerate() {
        let _ = write!(out, "<option value=\"{i}\">{}</option>", esc(r));
    }
    let _ = write!(
        out,
        "</select></label><label>{} <select id=\"size\"><option>50</option><option selected>100</option><option>500</option><option>2000</option></select></label>\
         <button id=\"prev\" type=\"button\">{}</button><span id=\"pageinfo\"></span><button id=\"next\" type=\"button\">{}</button>\
         <span class=\"hint\">{}</span></div>\n<noscript><p>{}</p></noscript>\n\
         <table id=\"rows-table\"><thead><tr>",
        esc(l.per_page),
        esc(l.previous),
        esc(l.next),
        esc(l.sort_hint),
        esc(l.needs_script)
    );
    for (i, c) in l.columns.iter().enumerate() {
        let _ = write!(
            out,
            "<th aria-sort=\"none\"><button type=\"button\" data-col=\"{i}\">{}</button></th>",
            esc(c)
        );
    }
    out.push_str("</tr></thead><tbody id=\"tbody\"></tbody></table>\n</section>\n");
}

/// The script's settings block, and the start of the data block.
fn meta(out: &mut String, page: &Page<'_>) {
    let (lang, rules) = (page.lang, page.rules);
    let l = lang.labels();
    let meta = serde_json::json!({
        "lang": lang.code(),
        "labels": {
            "columns": l.columns,
            "reasons": l.reasons,
            "page_of": l.page_of,
            "no_rows": l.no_rows,
        },
        "as_of": rules.as_of.to_string(),
        "within_days": rules.within_days,
        "step_days": step_days(rules.within_days),
        "buckets": buckets(rules),
        "urgent_days": gbdfl_core::expiry::URGENT_DAYS,
    });
    let _ = write!(
        out,
        "<script type=\"application/json\" id=\"meta\">{}</script>\n<script type=\"application/json\" id=\"data\">",
        json_value(&meta)
    );
}

/// Bytes gathered before they go to the writer.
const CHUNK: usize = 1 << 20;

/// Writes `buf` out once it holds [`CHUNK`] bytes, or now if `force`.
fn flush<W: Write>(buf: &mut Vec<u8>, w: &mut W, force: bool) -> io::Result<()> {
    if force || buf.len() >= CHUNK {
        w.write_all(buf)?;
        buf.clear();
    }
    Ok(())
}

/// The rows as one JSON object of columns, escaped for the script block.
fn write_data<W: Write>(w: &mut W, rows: &RowSet) -> io::Result<()> {
    let (dicts, ids) = dicts(rows);
    let mut buf: Vec<u8> = Vec::with_capacity(CHUNK);
    let mut json: Vec<u8> = Vec::with_capacity(256);
    let _ = write!(buf, "{{\"n\":{}", rows.len());
    for (name, dict) in ["types", "statuses", "lifes", "notes"]
        .into_iter()
        .zip(&dicts)
    {
        let _ = write!(buf, ",\"{name}\":");
        json.clear();
        serde_json::to_writer(&mut json, &dict.list).map_err(io::Error::other)?;
        json_in_script(&json, &mut buf);
    }
    // Text columns: escaped strings.
    type Text = for<'r> fn(&RowRef<'r>) -> &'r str;
    let texts: [(&str, Text); 3] = [
        ("iin", |r| r.iin),
        ("name", |r| r.full_name),
        ("number", |r| r.document_number),
    ];
    for (name, get) in texts {
        text_column(&mut buf, w, name, rows.iter_ref().map(|r| get(&r)))?;
    }
    // Number columns.
    let days = rows.iter_ref().map(|r| r.days_left);
    number_column(&mut buf, w, "days", days)?;
    let fetched = rows.iter_ref().map(|r| Some(r.fetched_at.timestamp()));
    number_column(&mut buf, w, "fetched", fetched)?;
    let reasons = rows.iter_ref().map(|r| Some(i64::from(r.reasons.bits())));
    number_column(&mut buf, w, "reasons", reasons)?;
    for (k, name) in ["type", "status", "life", "note"].into_iter().enumerate() {
        let column = ids.iter().map(|id| Some(i64::from(id[k])));
        number_column(&mut buf, w, name, column)?;
    }
    buf.push(b'}');
    flush(&mut buf, w, true)
}

/// The texts that repeat (document types, document statuses, life
/// statuses, notes) as lists, and each row's numbers into them.
fn dicts(rows: &RowSet) -> ([Dict<'_>; 4], Vec<[u32; 4]>) {
    let mut dicts: [Dict<'_>; 4] = Default::default();
    let mut ids: Vec<[u32; 4]> = Vec::with_capacity(rows.len());
    for r in rows.iter_ref() {
        let texts = [r.document_type, r.document_status, r.life_status, r.note];
        let mut id = [0u32; 4];
        for ((slot, dict), text) in id.iter_mut().zip(&mut dicts).zip(texts) {
            *slot = dict.id(text);
        }
        ids.push(id);
    }
    (dicts, ids)
}

/// `,"name":[...]`: a column of texts as escaped JSON strings.
fn text_column<'r, W: Write>(
    buf: &mut Vec<u8>,
    w: &mut W,
    name: &str,
    column: impl Iterator<Item = &'r str>,
) -> io::Result<()> {
    let mut json: Vec<u8> = Vec::with_capacity(256);
    let _ = write!(buf, ",\"{name}\":[");
    for (i, s) in column.enumerate() {
        if i > 0 {
            buf.push(b',');
        }
        json.clear();
        serde_json::to_writer(&mut json, s).map_err(io::Error::other)?;
        json_in_script(&json, buf);
        flush(buf, w, false)?;
    }
    buf.push(b']');
    Ok(())
}

/// `,"name":[...]`: a column of numbers, `null` where there is none.
fn number_column<W: Write>(
    buf: &mut Vec<u8>,
    w: &mut W,
    name: &str,
    column: impl Iterator<Item = Option<i64>>,
) -> io::Result<()> {
    let _ = write!(buf, ",\"{name}\":[");
    for (i, n) in column.enumerate() {
        if i > 0 {
            buf.push(b',');
        }
        match n {
            Some(n) => {
                let _ = write!(buf, "{n}");
            }
            None => buf.extend_from_slice(b"null"),
        }
        flush(buf, w, false)?;
    }
    buf.push(b']');
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::NaiveDate;

    fn rules(within: i64) -> Rules {
        Rules {
            as_of: NaiveDate::from_ymd_opt(2030, 7, 1).unwrap(),
            within_days: within,
        }
    }

    #[test]
    fn rows_fall_in_the_week_of_their_expiry() {
        let r = rules(90);
        assert_eq!(buckets(&r), 15);
        assert_eq!(bucket_of(Some(-400), &r), 0);
        assert_eq!(bucket_of(Some(0), &r), 1);
        assert_eq!(bucket_of(Some(6), &r), 1);
        assert_eq!(bucket_of(Some(7), &r), 2);
        assert_eq!(bucket_of(Some(90), &r), 13);
        assert_eq!(bucket_of(Some(91), &r), 14);
        assert_eq!(bucket_of(None, &r), 14);
        // A ten-year window still draws at most about 260 bars.
        let long = rules(3650);
        assert!(buckets(&long) <= 263, "{}", buckets(&long));
        assert_eq!(bucket_of(Some(3650), &long), buckets(&long) - 2);
    }
}
