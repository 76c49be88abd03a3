//! CSV reports of the cache (`expiring`, `lookups`, `summary`, `audit`) and the rows
//! behind `gbdfl expiring`.
//!
//! Rules this module keeps:
//! - it reads the store and nothing else: there is no path from here to the
//!   HTTP client, so a report never pays for a lookup and works offline;
//! - a report appears under its final name complete or not at all: it is
//!   written to `.<final name>.<random>.tmp` in the same folder (mode 0600
//!   from the first byte) and renamed when done; an error removes the temp file;
//! - rows stream from the database to the file, except `expiring`, which
//!   must be sorted (see [`expiring_set`]);
//! - every cell whose text comes from outside (names, numbers, statuses,
//!   purposes, reasons) is neutralised against formula injection;
//! - full IINs only when the caller asks for them.

pub mod html;
pub mod render;

use std::borrow::Cow;
use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use chrono::{DateTime, NaiveDate, Utc};

use rayon::prelude::*;
use tempfile::NamedTempFile;

use crate::html::{Lang, expiring::ScanStats};
use gbdfl_core::expiry::{self, RowRun, RowSet, Rules, StaleRow};
use gbdfl_core::fsutil;
use gbdfl_core::iin;
use gbdfl_core::summary::Summary;
use gbdfl_store::{
    AuditFilter, AuditView, DayStats, Lookup, Scratch, SealedSummaries, Source, Store, StoreError,
};

/// What can go wrong while making a report.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("reading the database: {0}")]
    Store(#[from] StoreError),
    #[error("writing report {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("writing CSV: {0}")]
    Csv(#[from] csv::Error),
}

/// The kinds of report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Expiring,
    Lookups,
    Summary,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Expiring => "expiring",
            Kind::Lookups => "lookups",
            Kind::Summary => "summary",
        }
    }
}

/// How the CSV is laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Format {
    pub delimiter: u8,
    /// UTF-8 byte order mark and CRLF line ends, so Excel reads Cyrillic.
    pub excel: bool,
    /// The language of the header row: English keeps the stable column
    /// keys (`--headers ru` translates them).
    pub headers: Lang,
}

impl Default for Format {
    fn default() -> Self {
        Format {
            delimiter: b',',
            excel: false,
            headers: Lang::En,
        }
    }
}

/// A period of whole UTC days, both ends included; `None` is open.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Period {
    pub from: Option<NaiveDate>,
    pub to: Option<NaiveDate>,
}

impl Period {
    /// `[from 00:00Z, the day after to 00:00Z)`, as the store takes it.
    pub fn bounds(self) -> (Option<DateTime<Utc>>, Option<DateTime<Utc>>) {
        let start = |d: NaiveDate| d.and_hms_opt(0, 0, 0).map(|t| t.and_utc());
        (
            self.from.and_then(start),
            self.to.and_then(|d| d.succ_opt()).and_then(start),
        )
    }
}

/// An HTML report instead of CSV: its language, the price of a call
/// (summary) and the time it says it was made.
#[derive(Debug, Clone)]
pub struct HtmlOptions {
    pub lang: Lang,
    pub price: Option<html::Price>,
    pub generated_at: DateTime<Utc>,
}

/// Everything a report needs besides the store.
#[derive(Debug, Clone)]
pub struct Options {
    pub format: Format,
    /// Set for `--html`.
    pub html: Option<HtmlOptions>,
    pub full_iin: bool,
    pub period: Period,
    pub rules: Rules,
    /// Workers for the expiry scan (the output does not depend on it).
    pub threads: usize,
}

/// The report options as typed, before they are checked.
#[derive(Debug, Clone, Copy)]
pub struct OptionText<'a> {
    pub delimiter: &'a str,
    pub excel: bool,
    pub full_iin: bool,
    pub from: Option<&'a str>,
    pub to: Option<&'a str>,
    pub within: &'a str,
    pub as_of: Option<&'a str>,
}

impl Options {
    /// Checks every option of `kind`; the message names the bad one.
    pub fn parse(kind: Kind, t: &OptionText<'_>, today: NaiveDate) -> Result<Options, String> {
        let day = |flag, v: Option<&str>| v.map(|s| expiry::parse_day(flag, s)).transpose();
        let period = Period {
            from: day("--from", t.from)?,
            to: day("--to", t.to)?,
        };
        if let (Some(f), Some(to)) = (period.from, period.to)
            && f > to
        {
            return Err(format!("--from {f} is after --to {to}"));
        }
        if kind == Kind::Expiring && period != Period::default() {
            return Err("--from/--to apply to lookups and summary; expiring takes --as-of".into());
        }
        Ok(Options {
            format: Format {
                delimiter: parse_delimiter(t.delimiter)?,
                excel: t.excel,
                headers: Lang::En,
            },
            html: None,
            full_iin: t.full_iin,
            period,
            rules: Rules::parse(t.within, t.as_of, today)?,
            threads: default_threads(),
        })
    }
}

/// Parses `--delimiter`: one ASCII character other than a quote or a line
/// break, or the word `tab`.
pub fn parse_delimiter(s: &str) -> Result<u8, String> {
    let c = match s {
        "tab" | "\\t" | "\t" => b'\t',
        s if s.len() == 1 && s.is_ascii() => s.as_bytes()[0],
        _ => {
            return Err(format!(
                "--delimiter {}: give one ASCII character such as ',' or ';', or `tab`",
                gbdfl_core::limits::shown(s)
            ));
        }
    };
    if matches!(c, b'"' | b'\n' | b'\r') {
        return Err(format!(
            "--delimiter {} cannot separate CSV fields",
            gbdfl_core::limits::shown(s)
        ));
    }
    Ok(c)
}

/// Prefixes a single quote to text that a spreadsheet would run as a
/// formula: text starting with `=`, `+`, `-`, `@`, a tab or a carriage
/// return (OWASP, "CSV Injection"); and, by the same rule, to text holding
/// a bidirectional control ([`is_bidi_control`]), which could otherwise
/// hide such a start or reorder the text beside it. The rest of the text
/// is kept as it is, so removing the one `'` gives the original back.
pub fn neutralise(s: &str) -> Cow<'_, str> {
    match s.as_bytes().first() {
        Some(b'=' | b'+' | b'-' | b'@' | b'\t' | b'\r') => Cow::Owned(format!("'{s}")),
        _ if s.chars().any(is_bidi_control) => Cow::Owned(format!("'{s}")),
        _ => Cow::Borrowed(s),
    }
}

/// The characters that set or change text direction: the marks (U+200E,
/// U+200F, U+061C), embeddings and overrides (U+202A-U+202E) and
/// isolates (U+2066-U+2069).
pub fn is_bidi_control(c: char) -> bool {
    matches!(
        c,
        '\u{200E}' | '\u{200F}' | '\u{061C}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}'
    )
}

fn shown_iin(iin: &str, full: bool) -> String {
    if full { iin.to_owned() } else { iin::mask(iin) }
}

/// The rows of `gbdfl expiring` and the expiring report, sorted.
///
/// The one report that cannot stream: it is sorted by expiry date, and the
/// walk comes in subject order. The walk reads only the small sealed
/// summary of each person's latest VALID lookup (never the whole answer);
/// `threads` workers open and check batches of them while the walk goes
/// on, and the batches are taken back in walk order, so the result is the
/// same with one thread or many. What is kept is a compact [`RowSet`],
/// never a whole record, and only documents that need attention.
pub fn expiring_set(
    store: &Store,
    rules: &Rules,
    full_iin: bool,
    threads: usize,
) -> Result<RowSet, ReportError> {
    Ok(expiring_set_by(store, rules, full_iin, threads, SCAN_BATCH)?.0)
}

/// [`expiring_set`] and what the scan saw: people read, people listed,
/// the oldest fetch time (the HTML report's header).
pub fn expiring_scan(
    store: &Store,
    rules: &Rules,
    full_iin: bool,
    threads: usize,
) -> Result<(RowSet, ScanStats), ReportError> {
    expiring_set_by(store, rules, full_iin, threads, SCAN_BATCH)
}

/// Adds a part's counts to the whole.
fn add_stats(to: &mut ScanStats, part: &ScanStats) {
    to.people += part.people;
    to.people_listed += part.people_listed;
    to.oldest_fetch = match (to.oldest_fetch, part.oldest_fetch) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
}

/// Persons per batch of the scans of every person's summary: large enough
/// to share out, small enough to keep memory flat.
const SCAN_BATCH: usize = 4096;

/// [`expiring_set`] in batches of `batch` persons.
fn expiring_set_by(
    store: &Store,
    rules: &Rules,
    full_iin: bool,
    threads: usize,
    batch_size: usize,
) -> Result<(RowSet, ScanStats), ReportError> {
    let pool = thread_pool(threads)?;
    let opener = store.opener();
    let reader = store.reopen()?;
    let mut set = RowSet::new();
    let mut stats = ScanStats::default();
    std::thread::scope(|s| -> Result<(), ReportError> {
        let (tx, rx) = std::sync::mpsc::sync_channel(4);
        // Batches go back to the walk once packed, to be filled again.
        let (spare_tx, spare_rx) = std::sync::mpsc::channel::<SealedSummaries>();
        let walk = s.spawn(move || {
            reader.each_latest_summary(
                batch_size,
                || spare_rx.try_recv().ok(),
                |batch| {
                    tx.send(batch)
                        .map_err(|_| StoreError::Io(io::Error::other("stopped")))
                },
            )
        });
        // Each worker opens, checks and packs a share of a batch into a
        // set of its own; the shares are joined in walk order.
        let pack = |batch: &SealedSummaries, share: std::ops::Range<usize>| {
            let mut part = RowSet::new();
            let mut seen = ScanStats::default();
            let mut summary = Summary::default();
            let mut scratch = Scratch::default();
            for i in share {
                let fetched_at = opener.open_summary_into(batch, i, &mut summary, &mut scratch)?;
                let iin = shown_iin(&summary.iin, full_iin);
                let before = part.len();
                expiry::check_each(&iin, summary.person.as_ref(), fetched_at, rules, |r| {
                    part.push_row(&r);
                });
                add_stats(
                    &mut seen,
                    &ScanStats {
                        people: 1,
                        people_listed: u64::from(part.len() > before),
                        oldest_fetch: Some(fetched_at),
                    },
                );
            }
            Ok::<_, StoreError>((part, seen))
        };
        // Joining a batch's shares into the set overlaps with packing the
        // next batch (it was a tenth of the scan, with the workers idle).
        type Packed = Result<(RowSet, ScanStats), StoreError>;
        fn join_all(
            (set, stats): (&mut RowSet, &mut ScanStats),
            parts: Vec<Packed>,
        ) -> Result<(), StoreError> {
            for part in parts {
                let (part, seen) = part?;
                set.append(part);
                add_stats(stats, &seen);
            }
            Ok(())
        }
        let mut failed = None;
        let mut packed: Vec<Packed> = Vec::new();
        for batch in rx {
            let share = batch.len().div_ceil(threads.max(1)).max(1);
            let previous = std::mem::take(&mut packed);
            let (joined, parts) = if threads <= 1 {
                (
                    join_all((&mut set, &mut stats), previous),
                    vec![pack(&batch, 0..batch.len())],
                )
            } else {
                pool.install(|| {
                    rayon::join(
                        || join_all((&mut set, &mut stats), previous),
                        || {
                            (0..batch.len())
                                .step_by(share)
                                .collect::<Vec<_>>()
                                .into_par_iter()
                                .map(|from| pack(&batch, from..(from + share).min(batch.len())))
                                .collect()
                        },
                    )
                })
            };
            packed = parts;
            // The walk may have ended: then the batch is simply dropped.
            let _ = spare_tx.send(batch);
            if let Err(e) = joined {
                failed = Some(e);
                break;
            }
        }
        if failed.is_none()
            && let Err(e) = join_all((&mut set, &mut stats), packed)
        {
            failed = Some(e);
        }
        // Dropping the receiver stops the walk at its next batch.
        let walked = walk.join().expect("the walk does not panic");
        if let Some(e) = failed {
            return Err(e.into());
        }
        walked?;
        Ok(())
    })?;
    pool.install(|| set.sort());
    Ok((set, stats))
}

/// One worker per core unless told otherwise.
pub fn default_threads() -> usize {
    std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(gbdfl_core::limits::THREADS.max as usize)
}

pub fn thread_pool(threads: usize) -> Result<rayon::ThreadPool, ReportError> {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads.max(1))
        .thread_name(|i| format!("gbdfl-worker-{i}"))
        .build()
        .map_err(|e| ReportError::Io {
            path: PathBuf::from("(threads)"),
            source: io::Error::other(e.to_string()),
        })
}

/// Persons whose latest VALID record is older than `max_age` at `now`,
/// oldest first. Reads each person's sealed summary through the covering
/// index, as the expiry scan does, not the whole answer: at a million
/// people about 2 s instead of 55 s of opening, decompressing and parsing
/// answers (BENCHMARKS.md). The latest record is the one `show`
/// takes (newest answer, ties to the greatest id).
pub fn stale_rows(
    store: &Store,
    now: DateTime<Utc>,
    max_age: chrono::Duration,
    full_iin: bool,
) -> Result<Vec<StaleRow>, ReportError> {
    let opener = store.opener();
    let (mut summary, mut scratch) = (Summary::default(), Scratch::default());
    let spare = std::cell::Cell::new(None);
    let mut rows = Vec::new();
    store.each_latest_summary(
        SCAN_BATCH,
        || spare.take(),
        |batch| -> Result<(), ReportError> {
            // Only the stale are opened: the time needs no key.
            for i in
                (0..batch.len()).filter(|&i| expiry::is_stale(batch.fetched_at(i), now, max_age))
            {
                let fetched_at = opener.open_summary_into(&batch, i, &mut summary, &mut scratch)?;
                rows.push(StaleRow {
                    iin: shown_iin(&summary.iin, full_iin),
                    full_name: summary
                        .person
                        .as_ref()
                        .map(|p| p.full_name())
                        .unwrap_or_default(),
                    fetched_at,
                    age_days: (now - fetched_at).num_days(),
                });
            }
            spare.set(Some(batch));
            Ok(())
        },
    )?;
    expiry::sort_stale(&mut rows);
    Ok(rows)
}

/// The columns of each report, in order. docs/reports.md documents each one.
pub const EXPIRING_COLUMNS: &[&str] = &[
    "iin",
    "full_name",
    "document_type",
    "document_number",
    "expiry_date",
    "days_left",
    "document_status",
    "life_status",
    "fetched_at",
    "reasons",
    "note",
];
pub const LOOKUPS_COLUMNS: &[&str] = &[
    "requested_at",
    "lookup_id",
    "operator",
    "purpose",
    "iin",
    "source",
    "outcome",
    "status",
    "http_status",
    "failure_reason",
];
/// Every lookup is a paid call, a cache hit, or an attempt that provably
/// never reached the service (`not_sent`, nothing billed); every paid call
/// is counted once under its GBDFL status, or as refused, unavailable or
/// garbled. Paid is decided by [`gbdfl_store::is_paid_call`], as `stats`
/// and the audit trail decide it.
pub const SUMMARY_COLUMNS: &[&str] = &[
    "day",
    "lookups",
    "paid_calls",
    "cache_hits",
    "valid",
    "pending",
    "invalid",
    "timeout",
    "not_found",
    "failed",
    "unapproved",
    "error_accepted",
    "other_status",
    "refused",
    "unavailable",
    "garbled",
    "not_sent",
];

/// The counts of a summary day: every column of [`SUMMARY_COLUMNS`] but `day`.
pub const SUMMARY_COUNTS: usize = 16;

/// The CSV writer settings of a report's format.
fn csv_builder(format: Format) -> csv::WriterBuilder {
    let mut b = csv::WriterBuilder::new();
    b.delimiter(format.delimiter).terminator(if format.excel {
        csv::Terminator::CRLF
    } else {
        csv::Terminator::Any(b'\n')
    });
    b
}

/// Writes rows with the report's format; counts data rows.
struct Sheet<W: Write> {
    csv: csv::Writer<W>,
    rows: u64,
}

impl<W: Write> Sheet<W> {
    fn new(mut w: W, format: Format, header: &[&'static str]) -> Result<Sheet<W>, ReportError> {
        if format.excel {
            w.write_all(b"\xEF\xBB\xBF").map_err(csv::Error::from)?;
        }
        let mut csv = csv_builder(format).from_writer(w);
        csv.write_record(header.iter().map(|k| format.headers.header(k)))?;
        Ok(Sheet { csv, rows: 0 })
    }

    fn row(&mut self, cells: &[Cow<'_, str>]) -> Result<(), ReportError> {
        self.csv.write_record(cells.iter().map(|c| c.as_bytes()))?;
        self.rows += 1;
        Ok(())
    }

    fn finish(self) -> Result<(W, u64), ReportError> {
        let rows = self.rows;
        let w = self
            .csv
            .into_inner()
            .map_err(|e| csv::Error::from(e.into_error()))?;
        Ok((w, rows))
    }
}

/// Text from outside: neutralised.
fn text(s: &str) -> Cow<'_, str> {
    neutralise(s)
}

/// A value gbdfl made itself (dates, numbers, codes): as it is.
fn own(s: impl Into<String>) -> Cow<'static, str> {
    Cow::Owned(s.into())
}

fn opt<T: ToString>(v: Option<T>) -> Cow<'static, str> {
    own(v.map(|v| v.to_string()).unwrap_or_default())
}

/// Writes the expiring report of a sorted [`RowSet`], cells borrowed from
/// it. `threads` workers format pieces of rows side by side; the pieces
/// are written in order, so the file is the same with any number.
pub fn write_expiring_set<W: Write>(
    w: W,
    format: Format,
    rows: &RowSet,
    threads: usize,
) -> Result<(W, u64), ReportError> {
    let pool = thread_pool(threads)?;
    let (mut w, _) = Sheet::new(w, format, EXPIRING_COLUMNS)?.finish()?;
    rows.lay_out_in_order(
        &pool,
        PIECE,
        |run| expiring_piece(format, run),
        |piece| {
            w.write_all(&piece?).map_err(csv::Error::from)?;
            Ok::<_, ReportError>(())
        },
    )?;
    Ok((w, rows.len() as u64))
}

/// Rows per piece of the expiring report (one run of rows).
const PIECE: usize = expiry::RUN_ROWS;

/// The CSV lines of a run of rows, no header.
fn expiring_piece(format: Format, run: &RowRun<'_>) -> Result<Vec<u8>, ReportError> {
    use std::fmt::Write as _;
    let mut csv = csv_builder(format).from_writer(Vec::with_capacity(PIECE * 200));
    // Most people have two or three rows: their fetch time is formatted once.
    let mut last: Option<(DateTime<Utc>, String)> = None;
    let (mut date, mut days, mut why) = (String::new(), String::new(), String::new());
    for r in run.iter() {
        if last.as_ref().is_none_or(|(t, _)| *t != r.fetched_at) {
            last = Some((r.fetched_at, expiry::iso(r.fetched_at)));
        }
        let at = last.as_ref().map(|(_, s)| s.as_str()).unwrap_or_default();
        date.clear();
        days.clear();
        why.clear();
        if let Some(d) = r.expiry_date {
            let _ = write!(date, "{d}");
        }
        if let Some(d) = r.days_left {
            let _ = write!(days, "{d}");
        }
        let _ = write!(why, "{}", r.reasons);
        for cell in [
            r.iin,
            &text(r.full_name),
            &text(r.document_type),
            &text(r.document_number),
            &date,
            &days,
            &text(r.document_status),
            &text(r.life_status),
            at,
            &why,
            &text(r.note),
        ] {
            csv.write_field(cell)?;
        }
        csv.write_record(None::<&[u8]>)?;
    }
    csv.into_inner()
        .map_err(|e| csv::Error::from(e.into_error()).into())
}

/// Streams the lookups of the period, oldest first.
pub fn write_lookups<W: Write>(
    w: W,
    format: Format,
    store: &Store,
    period: Period,
    full_iin: bool,
) -> Result<(W, u64), ReportError> {
    let mut sheet = Sheet::new(w, format, LOOKUPS_COLUMNS)?;
    let (from, to) = period.bounds();
    store.each_lookup(from, to, |l: Lookup| -> Result<(), ReportError> {
        sheet.row(&[
            own(expiry::iso(l.requested_at)),
            own(l.id.as_str()),
            text(&l.operator),
            text(l.purpose.as_deref().unwrap_or("")),
            own(shown_iin(&l.iin, full_iin)),
            own(match l.source {
                _ if l.is_paid_call() => "paid",
                Source::Service => "not sent",
                Source::Cache => "cache",
            }),
            own(l.outcome.as_str()),
            text(l.status.as_deref().unwrap_or("")),
            opt(l.http_status),
            text(&render::reason_text(&l)),
        ])
    })?;
    sheet.finish()
}

/// The summary's counts of a day, in [`SUMMARY_COLUMNS`] order after
/// `day`: read off the store's one per-day count ([`Store::stats`], UTC
/// days, paid calls by [`gbdfl_store::is_paid_call`]), as `gbdfl stats`
/// reads it.
fn summary_counts(d: &DayStats) -> [u64; SUMMARY_COUNTS] {
    let status = |s: &str| d.statuses.get(s).copied().unwrap_or(0);
    const KNOWN: [&str; 8] = [
        "VALID",
        "PENDING",
        "INVALID",
        "TIMEOUT",
        "NOT_FOUND",
        "FAILED",
        "UNAPPROVED",
        "ERROR_ACCEPTED",
    ];
    let known: u64 = KNOWN.iter().map(|s| status(s)).sum();
    let other = d.statuses.values().sum::<u64>() - known;
    [
        d.lookups(),
        d.paid_calls,
        d.from_cache,
        status(KNOWN[0]),
        status(KNOWN[1]),
        status(KNOWN[2]),
        status(KNOWN[3]),
        status(KNOWN[4]),
        status(KNOWN[5]),
        status(KNOWN[6]),
        status(KNOWN[7]),
        other,
        d.refused,
        d.unavailable,
        d.garbled,
        d.not_sent,
    ]
}

/// The counts of each UTC day with lookups in the period, oldest first:
/// the one definition of the summary's counting, for the CSV and the HTML
/// report alike.
pub fn summary_days(
    store: &Store,
    period: Period,
) -> Result<Vec<html::summary::DayCounts>, ReportError> {
    let (from, to) = period.bounds();
    Ok(store
        .stats(from, to)?
        .iter()
        .filter(|d| d.lookups() > 0)
        .filter_map(|d| d.day.map(|day| (day, summary_counts(d))))
        .collect())
}

/// Writes one row per UTC day that has lookups, oldest first.
pub fn write_summary<W: Write>(
    w: W,
    format: Format,
    store: &Store,
    period: Period,
) -> Result<(W, u64), ReportError> {
    let mut sheet = Sheet::new(w, format, SUMMARY_COLUMNS)?;
    for (day, counts) in summary_days(store, period)? {
        let mut cells = vec![own(day.to_string())];
        cells.extend(counts.iter().map(|n| own(n.to_string())));
        sheet.row(&cells)?;
    }
    sheet.finish()
}

/// The columns of the audit report: the fields of `gbdfl audit log --json`.
pub const AUDIT_COLUMNS: [&str; 14] = [
    "seq",
    "id",
    "at",
    "operator",
    "host",
    "command",
    "subject",
    "purpose",
    "outcome",
    "exit_code",
    "error",
    "paid_call",
    "records",
    "os_user",
];

/// An audit entry's fields in [`AUDIT_COLUMNS`] order: the one definition
/// behind `gbdfl audit log --json` and the audit report, so the two
/// cannot differ. The entry holds no IIN (only the start of its blind
/// index); messages in it were masked when written.
pub fn audit_fields(v: &AuditView) -> [serde_json::Value; 14] {
    use serde_json::json;
    [
        json!(v.seq),
        json!(v.id),
        json!(gbdfl_store::time_text(v.at)),
        json!(v.operator),
        json!(v.host),
        json!(v.command),
        json!(v.subject),
        json!(v.purpose),
        json!(if v.ok { "ok" } else { "error" }),
        json!(v.exit_code),
        json!(v.error),
        json!(v.paid_call),
        json!(v.records),
        json!(v.os_user),
    ]
}

/// Streams the audit entries `filter` keeps, oldest first, one row each;
/// text cells neutralised like every report's.
pub fn write_audit<W: Write>(
    w: W,
    format: Format,
    store: &Store,
    filter: &AuditFilter,
) -> Result<(W, u64), ReportError> {
    use serde_json::Value;
    let mut sheet = Sheet::new(w, format, &AUDIT_COLUMNS)?;
    store.each_audit(filter, |v| -> Result<(), ReportError> {
        let cells = audit_fields(&v).map(|f| match f {
            Value::Null => own(""),
            Value::String(s) => Cow::Owned(text(&s).into_owned()),
            other => own(other.to_string()),
        });
        sheet.row(&cells)
    })?;
    sheet.finish()
}

/// The summary of these days as an HTML page; returns the days written.
pub fn write_summary_html<W: Write>(
    w: W,
    days: &[html::summary::DayCounts],
    period: Period,
    opts: &HtmlOptions,
) -> Result<(W, u64), ReportError> {
    let page = html::summary::Page {
        lang: opts.lang,
        period,
        price: opts.price.as_ref(),
        generated_at: opts.generated_at,
    };
    let w = html::summary::write(w, days, &page).map_err(csv::Error::from)?;
    Ok((w, days.len() as u64))
}

/// The expiring report as an HTML page; returns the rows written.
pub fn write_expiring_html<W: Write>(
    w: W,
    rows: &RowSet,
    stats: &ScanStats,
    opts: &Options,
    html_opts: &HtmlOptions,
) -> Result<(W, u64), ReportError> {
    let page = html::expiring::Page {
        lang: html_opts.lang,
        rules: &opts.rules,
        full_iin: opts.full_iin,
        generated_at: html_opts.generated_at,
    };
    let w = html::expiring::write(w, rows, stats, &page).map_err(csv::Error::from)?;
    Ok((w, rows.len() as u64))
}

/// The columns of a batch's outcome file, in order.
pub const BATCH_COLUMNS: [&str; 7] = [
    "line",
    "iin",
    "outcome",
    "source",
    "lookup_id",
    "message",
    "paid_calls",
];

/// One row of a batch's outcome file.
#[derive(Debug, Clone)]
pub struct BatchRow {
    /// The line of the input file.
    pub line: u64,
    /// The IIN as typed (the row's own, for matching back; masked unless asked).
    pub iin: String,
    /// VALID, NOT_FOUND, ..., or BAD_ROW, QUEUED, EXPIRED, IN_DOUBT.
    pub outcome: String,
    /// `paid call` (a call made for it counts as paid), `cache`, `no answer`
    /// (tried, but it never reached the service: nothing billed) or `no call`.
    pub source: &'static str,
    pub lookup_id: String,
    pub message: String,
    /// The calls made for it that count as paid
    /// ([`gbdfl_store::is_paid_call`]): the column sums to the paid calls
    /// of the run.
    pub paid_calls: u64,
}

/// Writes a batch's outcome file atomically (Excel-friendly UTF-8 with BOM).
/// `delimiter` is the input file's, so the outcome opens in the same
/// spreadsheet as the input did.
pub fn write_batch(dest: &Path, rows: &[BatchRow], delimiter: u8) -> Result<u64, ReportError> {
    write_batch_to(AtomicFile::create(dest)?, rows, delimiter)
}

/// [`write_batch`] into a file created beforehand (`batch` creates it
/// before its first call, so that no call is made whose outcome cannot be
/// written).
pub fn write_batch_to(
    file: AtomicFile,
    rows: &[BatchRow],
    delimiter: u8,
) -> Result<u64, ReportError> {
    let format = Format {
        delimiter,
        excel: true,
        headers: Lang::En,
    };
    let mut sheet = Sheet::new(file, format, &BATCH_COLUMNS)?;
    for r in rows {
        sheet.row(&[
            Cow::Owned(r.line.to_string()),
            text(&r.iin),
            text(&r.outcome),
            Cow::Borrowed(r.source),
            Cow::Borrowed(&r.lookup_id),
            text(&r.message),
            own(r.paid_calls.to_string()),
        ])?;
    }
    let (file, n) = sheet.finish()?;
    file.commit()?;
    Ok(n)
}

/// `reports/KIND-YYYYMMDD-HHMMSS.csv` (`.html` for an HTML report),
/// relative to the current folder, in local time.
pub fn default_path(kind: Kind, now: DateTime<chrono::Local>, html: bool) -> PathBuf {
    let csv = default_path_named(kind.name(), now);
    if html {
        csv.with_extension("html")
    } else {
        csv
    }
}

/// `reports/NAME-YYYYMMDD-HHMMSS.csv`, for reports that are not a [`Kind`] (batch outcomes).
pub fn default_path_named(name: &str, now: DateTime<chrono::Local>) -> PathBuf {
    Path::new("reports").join(format!("{name}-{}.csv", now.format("%Y%m%d-%H%M%S")))
}

/// Makes the report `kind` at `dest`, atomically. Returns the data rows
/// written.
///
/// Audited first: `release` hears how many rows are about to be written
/// before the first byte goes to the file (the caller writes its audit
/// entry there); if it fails, no file is made. The (empty, owner-only)
/// temporary file is made before anything else, so that a path that cannot
/// be written is refused before the work and before the release. The rows are known first:
/// the expiring set is built in memory, the summary's few rows too, and
/// the lookups are counted and then read in one read snapshot, so the
/// count is exactly what the file gets.
pub fn produce<E: From<ReportError>>(
    kind: Kind,
    store: &Store,
    opts: &Options,
    dest: &Path,
    release: impl FnOnce(u64) -> Result<(), E>,
) -> Result<u64, E> {
    let file = AtomicFile::create(dest)?;
    let (file, rows) = match (kind, &opts.html) {
        (Kind::Expiring, Some(h)) => {
            let (rows, stats) = expiring_scan(store, &opts.rules, opts.full_iin, opts.threads)?;
            release(rows.len() as u64)?;
            write_expiring_html(file, &rows, &stats, opts, h)?
        }
        (Kind::Summary, Some(h)) => {
            let days = summary_days(store, opts.period)?;
            release(days.len() as u64)?;
            write_summary_html(file, &days, opts.period, h)?
        }
        (Kind::Lookups, Some(_)) => {
            return Err(ReportError::Io {
                path: dest.to_owned(),
                source: io::Error::other("--html is for the expiring and summary reports"),
            }
            .into());
        }
        (Kind::Expiring, None) => {
            let rows = expiring_set(store, &opts.rules, opts.full_iin, opts.threads)?;
            release(rows.len() as u64)?;
            write_expiring_set(file, opts.format, &rows, opts.threads)?
        }
        (Kind::Lookups, None) => {
            let snapshot = store.snapshot().map_err(ReportError::from)?;
            let (from, to) = opts.period.bounds();
            let n = snapshot
                .count_lookups_between(from, to)
                .map_err(ReportError::from)?;
            release(n)?;
            write_lookups(file, opts.format, &snapshot, opts.period, opts.full_iin)?
        }
        (Kind::Summary, None) => {
            let (sheet, n) = write_summary(Vec::new(), opts.format, store, opts.period)?;
            release(n)?;
            let mut file = file;
            file.write_all(&sheet).map_err(|source| ReportError::Io {
                path: dest.to_owned(),
                source,
            })?;
            (file, n)
        }
    };
    file.commit()?;
    Ok(rows)
}

/// A file written under a temporary name beside its destination and
/// renamed over it when complete (a [`tempfile::NamedTempFile`] made in the
/// destination's folder). Dropped without [`commit`](Self::commit), it
/// removes the temporary file; killed, it leaves only that hidden
/// `.<name>.<random>.tmp` file, never a partial file under the final name.
pub struct AtomicFile {
    dest: PathBuf,
    file: Option<io::BufWriter<NamedTempFile>>,
    /// Bytes written since the disk was last asked to start writing.
    unflushed: usize,
}

/// After this many bytes, the disk is asked to start writing what it has
/// (Linux): a 150 MB report is then mostly on disk when `commit` syncs,
/// instead of all of it waiting for that sync.
const WRITEBACK: usize = 16 << 20;

impl AtomicFile {
    /// Creates the folder (0700) if missing and the temp file (0600 from
    /// its first byte) beside `dest`.
    pub fn create(dest: &Path) -> Result<AtomicFile, ReportError> {
        let io_err = |source| ReportError::Io {
            path: dest.to_owned(),
            source,
        };
        let dir = dest.parent().filter(|d| !d.as_os_str().is_empty());
        if let Some(dir) = dir {
            fsutil::create_private_dir(dir).map_err(io_err)?;
        }
        let name = dest
            .file_name()
            .ok_or_else(|| io_err(io::Error::other("the output path names no file")))?;
        let mut prefix = std::ffi::OsString::from(".");
        prefix.push(name);
        prefix.push(".");
        let mut temp = tempfile::Builder::new();
        temp.prefix(&prefix).suffix(".tmp").rand_bytes(8);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            temp.permissions(std::fs::Permissions::from_mode(0o600));
        }
        let dir = dir.unwrap_or(Path::new("."));
        let file = temp.tempfile_in(dir).map_err(|source| ReportError::Io {
            path: dir.join(&prefix),
            source,
        })?;
        Ok(AtomicFile {
            dest: dest.to_owned(),
            file: Some(io::BufWriter::with_capacity(64 * 1024, file)),
            unflushed: 0,
        })
    }

    /// The temporary file's path (for tests and messages).
    pub fn temp_path(&self) -> &Path {
        self.file.as_ref().expect("not committed").get_ref().path()
    }

    /// Flushes, syncs and renames the file to its destination.
    pub fn commit(mut self) -> Result<(), ReportError> {
        let io_err = |source| ReportError::Io {
            path: self.dest.clone(),
            source,
        };
        let file = self.file.take().expect("committed once");
        let file = file.into_inner().map_err(|e| io_err(e.into_error()))?;
        file.as_file().sync_all().map_err(io_err)?;
        file.persist(&self.dest).map_err(|e| io_err(e.error))?;
        // Make the rename itself durable; a failure here loses nothing.
        #[cfg(unix)]
        if let Some(dir) = self.dest.parent().filter(|d| !d.as_os_str().is_empty()) {
            let _ = File::open(dir).and_then(|d| d.sync_all());
        }
        Ok(())
    }
}

impl Write for AtomicFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let file = self.file.as_mut().expect("not committed");
        let n = file.write(buf)?;
        self.unflushed += n;
        if self.unflushed >= WRITEBACK {
            self.unflushed = 0;
            file.flush()?;
            start_writeback(file.get_ref().as_file());
        }
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.file.as_mut().expect("not committed").flush()
    }
}

/// Asks the kernel to start writing the file's dirty pages now, without
/// waiting for them; only a hint, so errors are ignored (the final sync
/// reports any).
fn start_writeback(file: &File) {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd as _;
        // SAFETY: a valid open descriptor; offset 0 and length 0 mean the
        // whole file; SYNC_FILE_RANGE_WRITE only starts write-out.
        unsafe {
            libc::sync_file_range(file.as_raw_fd(), 0, 0, libc::SYNC_FILE_RANGE_WRITE);
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = file;
}

#[cfg(test)]
mod tests {
    use super::*;
    use gbdfl_core::expiry::{Reasons, Row};

    /// The scan's batches go back to the walk to be filled again: the rows
    /// are the same whatever the batch size and the number of workers.
    #[test]
    fn the_scan_gives_the_same_rows_whatever_its_batches() {
        use gbdfl_emulator::synthetic_archive;
        use gbdfl_store::testing::{test_importer, test_store};
        let dir = tempfile::tempdir().unwrap();
        let store = test_store(dir.path());
        let today = chrono::Local::now().date_naive();
        let lines = synthetic_archive(300, "8501");
        let who = test_importer();
        let pool = thread_pool(2).unwrap();
        let imported =
            gbdfl_store::archive::import(&store, lines.as_bytes(), who, &pool, &mut |_| {});
        assert_eq!(
            imported.unwrap().stored.inserted,
            lines.lines().count() as u64
        );
        let rules = Rules::parse("90d", None, today).unwrap();
        let rows = |threads, batch| {
            let (set, _) = expiring_set_by(&store, &rules, true, threads, batch).unwrap();
            set.iter().collect::<Vec<_>>()
        };
        let whole = rows(1, 4096);
        assert!(whole.len() > 100, "{} rows", whole.len());
        for (threads, batch) in [(1, 1), (2, 7), (2, 64), (3, 5)] {
            assert_eq!(
                rows(threads, batch),
                whole,
                "{threads} workers, batches of {batch}"
            );
        }
    }

    #[test]
    fn formula_starts_are_neutralised_and_nothing_else() {
        for s in ["=1+1", "+7", "-1", "@SUM(A1)", "\tx", "\rx"] {
            assert_eq!(neutralise(s), format!("'{s}"), "{s:?}");
        }
        for s in ["Нурланов", "", "1-2", "a=b", " =x", "'quoted"] {
            assert_eq!(neutralise(s), s, "{s:?}");
        }
    }

    #[test]
    fn text_with_a_bidi_control_anywhere_is_neutralised_like_a_formula() {
        for s in [
            "Асхат\u{202E}вонлуН",
            "\u{200F}x",
            "a\u{2066}b\u{2069}",
            "x\u{061C}",
        ] {
            assert_eq!(neutralise(s), format!("'{s}"), "{s:?}");
        }
        // Other format characters do not change direction.
        assert_eq!(neutralise("a\u{200B}b"), "a\u{200B}b");
    }

    #[test]
    fn delimiters() {
        assert_eq!(parse_delimiter(";"), Ok(b';'));
        assert_eq!(parse_delimiter("tab"), Ok(b'\t'));
        assert!(parse_delimiter(";;").is_err());
        assert!(parse_delimiter("\"").is_err());
        assert!(parse_delimiter("ж").is_err());
    }

    fn row(name: &str, days: Option<i64>) -> Row {
        Row {
            iin: "950215*****6".into(),
            full_name: name.into(),
            document_type: "ПАСПОРТ".into(),
            document_number: "-N1".into(),
            expiry_date: None,
            days_left: days,
            document_status: "ДОКУМЕНТ ДЕЙСТВИТЕЛЕН".into(),
            life_status: String::new(),
            fetched_at: DateTime::UNIX_EPOCH,
            reasons: Reasons::default(),
            note: String::new(),
        }
    }

    /// The expiring report of one row, as `report expiring` writes it; the
    /// same with one worker and two.
    fn write_rows(format: Format, r: Row) -> (Vec<u8>, u64) {
        let mut set = RowSet::new();
        set.push_person(vec![r]);
        set.sort();
        let one = write_expiring_set(Vec::new(), format, &set, 1).unwrap();
        let two = write_expiring_set(Vec::new(), format, &set, 2).unwrap();
        assert_eq!(one, two);
        one
    }

    #[test]
    fn excel_has_bom_crlf_and_the_delimiter() {
        let (out, n) = write_rows(
            Format {
                delimiter: b';',
                excel: true,
                headers: Lang::En,
            },
            row("=Иванов, \"Ваня\"\nвторая", Some(-5)),
        );
        assert_eq!(n, 1);
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("\u{feff}iin;full_name;"), "{text}");
        assert!(
            text.contains("\r\n950215*****6;\"'=Иванов, \"\"Ваня\"\"\nвторая\";ПАСПОРТ;'-N1;;-5;")
        );
        assert!(text.ends_with("\r\n"));
    }

    #[test]
    fn plain_has_no_bom_and_lf() {
        let (out, _) = write_rows(Format::default(), row("A", None));
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("iin,full_name,"));
        assert!(!text.contains('\r'));
        assert_eq!(text.lines().count(), 2);
    }

    #[test]
    fn periods_include_both_days() {
        let d = |s| NaiveDate::parse_from_str(s, "%Y-%m-%d").ok();
        let (from, to) = Period {
            from: d("2030-06-01"),
            to: d("2030-06-02"),
        }
        .bounds();
        assert_eq!(expiry::iso(from.unwrap()), "2030-06-01T00:00:00Z");
        assert_eq!(expiry::iso(to.unwrap()), "2030-06-03T00:00:00Z");
    }

    #[test]
    fn atomic_file_appears_only_on_commit_and_cleans_up_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("sub").join("r.csv");
        let mut f = AtomicFile::create(&dest).unwrap();
        f.write_all(b"a,b\n").unwrap();
        let tmp = f.temp_path().to_owned();
        assert!(tmp.exists() && !dest.exists());
        let name = tmp.file_name().unwrap().to_string_lossy().into_owned();
        assert!(
            name.starts_with(".r.csv.") && name.ends_with(".tmp"),
            "{name}"
        );
        f.commit().unwrap();
        assert_eq!(std::fs::read(&dest).unwrap(), b"a,b\n");
        assert!(!tmp.exists());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode(&dest), 0o600);
            assert_eq!(mode(dest.parent().unwrap()), 0o700);
        }

        let f = AtomicFile::create(&dest).unwrap();
        let tmp = f.temp_path().to_owned();
        drop(f);
        assert!(!tmp.exists(), "an abandoned report leaves no temp file");
        assert_eq!(
            std::fs::read(&dest).unwrap(),
            b"a,b\n",
            "the old report stays"
        );
    }
}
