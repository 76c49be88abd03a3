//! The expiring report as CSV, from a sorted [`RowSet`].

use std::io::Write;

use chrono::{DateTime, Utc};

use crate::cells::{Sheet, csv_builder, text};
use crate::rows::{RUN_ROWS, RowRun, RowSet};
use crate::workers::thread_pool;
use crate::{Format, ReportError};

/// The columns of the expiring report, in order. docs/reports.md documents
/// each one.
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

/// The expiring report of several databases' sets (head office's report
/// over its branches), one set after another, each row led by a `branch`
/// cell: the same rows as each branch's own report, the same bytes after
/// the first cell.
pub fn write_expiring_sets<W: Write>(
    w: W,
    format: Format,
    sets: &[(String, RowSet)],
    threads: usize,
) -> Result<(W, u64), ReportError> {
    let pool = thread_pool(threads)?;
    let mut header = vec!["branch"];
    header.extend_from_slice(EXPIRING_COLUMNS);
    let (mut w, _) = Sheet::new(w, format, &header)?.finish()?;
    let mut n = 0u64;
    for (branch, rows) in sets {
        rows.lay_out_in_order(
            &pool,
            PIECE,
            |run| expiring_piece_of(format, run, Some(branch)),
            |piece| {
                w.write_all(&piece?).map_err(csv::Error::from)?;
                Ok::<_, ReportError>(())
            },
        )?;
        n += rows.len() as u64;
    }
    Ok((w, n))
}

/// Rows per piece of the expiring report (one run of rows).
const PIECE: usize = RUN_ROWS;

/// The CSV lines of a run of rows, no header.
fn expiring_piece(format: Format, run: &RowRun<'_>) -> Result<Vec<u8>, ReportError> {
    expiring_piece_of(format, run, None)
}

/// [`expiring_piece`], each row led by `branch` when given.
fn expiring_piece_of(
    format: Format,
    run: &RowRun<'_>,
    branch: Option<&str>,
) -> Result<Vec<u8>, ReportError> {
    use std::fmt::Write as _;
    let mut csv = csv_builder(format).from_writer(Vec::with_capacity(PIECE * 200));
    // Most people have two or three rows: their fetch time is formatted once.
    let mut last: Option<(DateTime<Utc>, String)> = None;
    let (mut date, mut days, mut why) = (String::new(), String::new(), String::new());
    for r in run.iter() {
        if last.as_ref().is_none_or(|(t, _)| *t != r.fetched_at) {
            last = Some((r.fetched_at, gbdfl_core::time::iso_seconds(r.fetched_at)));
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
        if let Some(b) = branch {
            csv.write_field(text(b).as_bytes())?;
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::html::Lang;
    use gbdfl_core::expiry::{Reasons, Row};

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
}
