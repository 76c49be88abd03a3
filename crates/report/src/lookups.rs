//! The lookups report: every lookup of a period, streamed oldest first.

use std::borrow::Cow;
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
        sheet.row(&lookup_cells(&l, full_iin))
    })?;
    sheet.finish()
}

/// The cells of one lookup, in [`LOOKUPS_COLUMNS`]' order.
fn lookup_cells(l: &Lookup, full_iin: bool) -> [Cow<'_, str>; 10] {
    [
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
        Cow::Owned(text(&render::reason_text(l)).into_owned()),
    ]
}

/// The lookups report of several databases (head office's, over its
/// branches), row by row, each row led by a `branch` cell: the same cells
/// as each branch's own report after the first.
pub struct BranchLookups<W: Write> {
    sheet: Sheet<W>,
    full_iin: bool,
}

impl<W: Write> BranchLookups<W> {
    /// The header: `branch`, then the lookups report's columns.
    pub fn new(w: W, format: Format, full_iin: bool) -> Result<BranchLookups<W>, ReportError> {
        let mut header = vec!["branch"];
        header.extend_from_slice(LOOKUPS_COLUMNS);
        Ok(BranchLookups {
            sheet: Sheet::new(w, format, &header)?,
            full_iin,
        })
    }

    /// One lookup of `branch`.
    pub fn row(&mut self, branch: &str, l: &Lookup) -> Result<(), ReportError> {
        let mut cells = vec![text(branch)];
        cells.extend(lookup_cells(l, self.full_iin));
        self.sheet.row(&cells)
    }

    /// The writer and the rows written.
    pub fn finish(self) -> Result<(W, u64), ReportError> {
        self.sheet.finish()
    }
}
