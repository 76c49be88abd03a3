//! The summary report: the counts of each UTC day with lookups, as CSV or
//! as the HTML page.

use std::io::Write;

use chrono::NaiveDate;

use crate::cells::{Sheet, own};
use crate::{Format, Period, ReportError};
use gbdfl_store::{DayStats, Store};

/// One day's counts, in the order of [`SUMMARY_COLUMNS`] after `day`.
pub type DayCounts = (NaiveDate, [u64; SUMMARY_COUNTS]);

/// The columns of the summary report, in order. docs/reports.md documents
/// each one.
///
/// Every lookup is a paid call, a cache hit, an answer of the organisation
/// cache (`org_cache_hits`: a record another branch fetched), or an attempt
/// that provably never reached the service (`not_sent`, nothing billed);
/// cache and organisation cache hits are paid calls avoided. Every paid call
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
    "org_cache_hits",
];

/// The counts of a summary day: every column of [`SUMMARY_COLUMNS`] but `day`.
pub const SUMMARY_COUNTS: usize = 17;

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
        d.from_org,
    ]
}

/// The counts of each UTC day with lookups in the period, oldest first:
/// the one definition of the summary's counting, for the CSV and the HTML
/// report alike.
pub fn summary_days(store: &Store, period: Period) -> Result<Vec<DayCounts>, ReportError> {
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

/// Head office's summary over its branches: one row per branch and UTC
/// day that has lookups, each led by a `branch` cell, the same counts as
/// that branch's own summary after it. `days` in branch, then day order.
pub fn write_branch_summary<W: Write>(
    w: W,
    format: Format,
    days: &[(String, DayStats)],
) -> Result<(W, u64), ReportError> {
    let mut header = vec!["branch"];
    header.extend_from_slice(SUMMARY_COLUMNS);
    let mut sheet = Sheet::new(w, format, &header)?;
    for (branch, d) in days.iter().filter(|(_, d)| d.lookups() > 0) {
        let Some(day) = d.day else { continue };
        let mut cells = vec![crate::cells::text(branch), own(day.to_string())];
        cells.extend(summary_counts(d).iter().map(|n| own(n.to_string())));
        sheet.row(&cells)?;
    }
    sheet.finish()
}
