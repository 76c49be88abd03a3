//! The lookups report: every lookup of a period, streamed oldest first.

use std::io::Write;

use crate::cells::{Sheet, opt, own, shown_iin, text};
use crate::{Format, Period, ReportError, render};
use gbdfl_store::{Lookup, Source, Store};

/// The columns of the lookups report, in order. docs/reports.md documents
/// each one.
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
            own(gbdfl_core::time::iso_seconds(l.requested_at)),
            own(l.id.as_str()),
            text(&l.operator),
            text(l.purpose.as_deref().unwrap_or("")),
            own(shown_iin(&l.iin, full_iin)),
            own(match l.source {
                _ if l.is_paid_call() => "paid",
                Source::Service => "not sent",
                Source::Cache => "cache",
                Source::Org => "org cache",
            }),
            own(l.outcome.as_str()),
            text(l.status.as_deref().unwrap_or("")),
            opt(l.http_status),
            text(&render::reason_text(&l)),
        ])
    })?;
    sheet.finish()
}
