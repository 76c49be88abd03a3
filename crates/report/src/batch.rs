//! A batch's outcome file: one row per line of the input.

use std::borrow::Cow;
use std::path::Path;

use crate::cells::{Sheet, own, text};
use crate::html::Lang;
use crate::{AtomicFile, Format, ReportError};

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
    /// The id of the lookup that answered it, if any.
    pub lookup_id: String,
    /// What went wrong or what to do, for a row without an answer.
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
