//! What goes into a CSV cell, and the sheet the cells are written to.

use std::borrow::Cow;
use std::io::Write;

use crate::{Format, ReportError};
use gbdfl_core::iin;

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

/// The IIN as a report shows it: whole only when asked, else masked.
pub(crate) fn shown_iin(iin: &str, full: bool) -> String {
    if full { iin.to_owned() } else { iin::mask(iin) }
}

/// The CSV writer settings of a report's format.
pub(crate) fn csv_builder(format: Format) -> csv::WriterBuilder {
    let mut b = csv::WriterBuilder::new();
    b.delimiter(format.delimiter).terminator(if format.excel {
        csv::Terminator::CRLF
    } else {
        csv::Terminator::Any(b'\n')
    });
    b
}

/// Writes rows with the report's format; counts data rows.
pub(crate) struct Sheet<W: Write> {
    csv: csv::Writer<W>,
    rows: u64,
}

impl<W: Write> Sheet<W> {
    pub(crate) fn new(
        mut w: W,
        format: Format,
        header: &[&'static str],
    ) -> Result<Sheet<W>, ReportError> {
        if format.excel {
            w.write_all(b"\xEF\xBB\xBF").map_err(csv::Error::from)?;
        }
        let mut csv = csv_builder(format).from_writer(w);
        csv.write_record(header.iter().map(|k| format.headers.header(k)))?;
        Ok(Sheet { csv, rows: 0 })
    }

    pub(crate) fn row(&mut self, cells: &[Cow<'_, str>]) -> Result<(), ReportError> {
        self.csv.write_record(cells.iter().map(|c| c.as_bytes()))?;
        self.rows += 1;
        Ok(())
    }

    pub(crate) fn finish(self) -> Result<(W, u64), ReportError> {
        let rows = self.rows;
        let w = self
            .csv
            .into_inner()
            .map_err(|e| csv::Error::from(e.into_error()))?;
        Ok((w, rows))
    }
}

/// Text from outside: neutralised.
pub(crate) fn text(s: &str) -> Cow<'_, str> {
    neutralise(s)
}

/// A value gbdfl made itself (dates, numbers, codes): as it is.
pub(crate) fn own(s: impl Into<String>) -> Cow<'static, str> {
    Cow::Owned(s.into())
}

/// An optional value gbdfl made itself: as it is, or empty.
pub(crate) fn opt<T: ToString>(v: Option<T>) -> Cow<'static, str> {
    own(v.map(|v| v.to_string()).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
