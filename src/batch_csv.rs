//! Reading a batch file: `iin,session_id[,purpose][,session_created_at]`
//! with a header row, UTF-8 with or without a BOM, comma or semicolon (as
//! Excel writes it in Kazakh and Russian locales).
//!
//! Rules this module keeps: it is a pure function of the bytes (no I/O, no
//! store), so it can be fuzzed; a bad row never stops the file, it becomes a
//! [`BadRow`] with its line number and a reason that names the masked IIN
//! only; a file without the required header columns is an error, not rows.

use std::collections::HashMap;

use chrono::{DateTime, Utc};

use crate::iin::{Iin, mask};
use crate::lookup::{SessionId, parse_session_time};

/// One good row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    /// The physical line of the file the row starts on (1 is the header).
    pub line: u64,
    pub iin: Iin,
    pub session: SessionId,
    pub purpose: Option<String>,
    pub session_created_at: Option<DateTime<Utc>>,
}

/// A row that was skipped, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadRow {
    pub line: u64,
    /// The IIN as masked (empty if the row had none).
    pub iin: String,
    pub reason: String,
}

/// What a file holds.
#[derive(Debug, Default)]
pub struct Parsed {
    pub rows: Vec<Row>,
    pub bad: Vec<BadRow>,
    /// The file's delimiter, `;` or `,` (the outcome file uses the same).
    pub delimiter: u8,
}

/// The file cannot be read as a batch at all.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FileError {
    #[error("the file is empty: it needs a header row `iin,session_id` and one row per request")]
    Empty,
    #[error(
        "the header row has no `{0}` column{1}: the first row must name the columns, e.g. `iin;session_id;purpose;session_created_at`"
    )]
    MissingColumn(&'static str, &'static str),
    #[error("the header row names `{0}` twice")]
    DuplicateColumn(String),
    #[error("the header row is not CSV: {0}")]
    Header(String),
}

/// Which delimiter the header line uses: `;` if it has more of them than commas.
fn delimiter(first_line: &[u8]) -> u8 {
    let count = |c| first_line.iter().filter(|&&b| b == c).count();
    if count(b';') > count(b',') {
        b';'
    } else {
        b','
    }
}

/// Parses a batch file. `now` is for refusing session times in the future.
/// `skip_iin_check` accepts IINs that fail the published checks.
pub fn parse(bytes: &[u8], now: DateTime<Utc>, skip_iin_check: bool) -> Result<Parsed, FileError> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let first_line = bytes.split(|&b| b == b'\n').next().unwrap_or_default();
    if bytes.iter().all(|b| b.is_ascii_whitespace()) {
        return Err(FileError::Empty);
    }
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(delimiter(first_line))
        .has_headers(true)
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(bytes);
    let header = reader
        .byte_headers()
        .map_err(|e| FileError::Header(e.to_string()))?
        .clone();
    let names: Vec<String> = header
        .iter()
        .map(|h| String::from_utf8_lossy(h).trim().to_lowercase())
        .collect();
    let mut columns: HashMap<&str, usize> = HashMap::new();
    for (i, name) in names.iter().enumerate() {
        let known = ["iin", "session_id", "purpose", "session_created_at"];
        if let Some(k) = known.iter().find(|k| **k == name)
            && columns.insert(k, i).is_some()
        {
            return Err(FileError::DuplicateColumn(name.clone()));
        }
    }
    // The header's cells are never echoed: a file without a header has a
    // person's IIN and session there.
    let listed = || {
        if names
            .iter()
            .any(|n| n.len() >= 6 && n.bytes().all(|b| b.is_ascii_digit()))
        {
            " (the first row looks like data: add a header row above it)"
        } else {
            ""
        }
    };
    let iin_col = *columns
        .get("iin")
        .ok_or_else(|| FileError::MissingColumn("iin", listed()))?;
    let session_col = *columns
        .get("session_id")
        .ok_or_else(|| FileError::MissingColumn("session_id", listed()))?;
    let purpose_col = columns.get("purpose").copied();
    let created_col = columns.get("session_created_at").copied();

    let mut parsed = Parsed {
        delimiter: delimiter(first_line),
        ..Parsed::default()
    };
    let mut seen: HashMap<(String, String), u64> = HashMap::new();
    let mut record = csv::ByteRecord::new();
    loop {
        let line_guess = reader.position().line();
        match reader.read_byte_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => {
                let line = e.position().map_or(line_guess, |p| p.line());
                parsed.bad.push(BadRow {
                    line,
                    iin: String::new(),
                    reason: format!("not readable as CSV: {e}"),
                });
                continue;
            }
        }
        let line = record
            .position()
            .map_or(line_guess, |p| first_line_of(bytes, p));
        match row(
            &record,
            line,
            [iin_col, session_col],
            purpose_col,
            created_col,
            now,
            skip_iin_check,
        ) {
            Ok(r) => {
                let key = (r.iin.as_str().to_owned(), r.session.as_str().to_owned());
                if let Some(first) = seen.get(&key) {
                    parsed.bad.push(BadRow {
                        line,
                        iin: r.iin.masked(),
                        reason: format!("the same IIN and session as line {first}: asked once"),
                    });
                } else {
                    seen.insert(key, line);
                    parsed.rows.push(r);
                }
            }
            Err(bad) => parsed.bad.push(bad),
        }
    }
    Ok(parsed)
}

/// The line a record's text starts on: the reader's position counts the
/// blank lines it skipped before the record as part of it.
fn first_line_of(bytes: &[u8], p: &csv::Position) -> u64 {
    let start = usize::try_from(p.byte()).unwrap_or(usize::MAX);
    let blank = bytes
        .get(start..)
        .unwrap_or_default()
        .iter()
        .take_while(|b| matches!(b, b'\r' | b'\n'))
        .filter(|b| **b == b'\n')
        .count();
    p.line() + blank as u64
}

fn field(record: &csv::ByteRecord, col: usize) -> Result<Option<&str>, ()> {
    match record.get(col) {
        None => Ok(None),
        Some(b) => std::str::from_utf8(b)
            .map(|s| Some(s.trim()).filter(|s| !s.is_empty()))
            .map_err(|_| ()),
    }
}

fn row(
    record: &csv::ByteRecord,
    line: u64,
    [iin_col, session_col]: [usize; 2],
    purpose_col: Option<usize>,
    created_col: Option<usize>,
    now: DateTime<Utc>,
    skip_iin_check: bool,
) -> Result<Row, BadRow> {
    let bad = |iin: &str, reason: String| BadRow {
        line,
        iin: if iin.is_empty() {
            String::new()
        } else {
            mask(iin)
        },
        reason,
    };
    let not_utf8 = |what: &str| {
        bad(
            "",
            format!("the {what} is not UTF-8 text: save the file as \"CSV UTF-8\""),
        )
    };
    let iin_text = field(record, iin_col).map_err(|_| not_utf8("IIN"))?;
    let Some(iin_text) = iin_text else {
        return Err(bad("", "no IIN".into()));
    };
    let iin = Iin::parse_with(iin_text, skip_iin_check).map_err(|e| {
        let hint = if iin_text.contains(['E', 'e']) && iin_text.contains('+') {
            " (Excel wrote it as a number in scientific notation: format the IIN column as Text and type it again)"
        } else if iin_text.len() == 11 && iin_text.bytes().all(|b| b.is_ascii_digit()) {
            " (did Excel drop a leading zero? format the IIN column as Text)"
        } else {
            ""
        };
        bad(iin_text, format!("IIN is not valid: {e}{hint}"))
    })?;
    let session = match field(record, session_col).map_err(|_| not_utf8("session_id"))? {
        None => return Err(bad(iin_text, "no session_id".into())),
        Some(s) => SessionId::parse(s).map_err(|e| bad(iin_text, e.to_string()))?,
    };
    let purpose = match purpose_col {
        Some(c) => field(record, c)
            .map_err(|_| not_utf8("purpose"))?
            .map(str::to_owned),
        None => None,
    };
    let session_created_at = match created_col {
        Some(c) => match field(record, c).map_err(|_| not_utf8("session_created_at"))? {
            None => None,
            Some(t) => {
                let t = parse_session_time(t)
                    .map_err(|e| bad(iin_text, format!("session_created_at: {e}")))?;
                if t > now + chrono::TimeDelta::minutes(5) {
                    return Err(bad(
                        iin_text,
                        "session_created_at is in the future: give the time the face2face session was created".into(),
                    ));
                }
                Some(t)
            }
        },
        None => None,
    };
    Ok(Row {
        line,
        iin,
        session,
        purpose,
        session_created_at,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const S1: &str = "0b8e2f4c-6a43-4a55-9f0e-0d3c9a1e7b21";
    const S2: &str = "1b8e2f4c-6a43-4a55-9f0e-0d3c9a1e7b21";

    fn iin() -> String {
        crate::emulator::iins::VALID.to_owned()
    }

    #[test]
    fn bom_semicolon_columns_in_any_order_and_bad_rows_by_line() {
        let text = format!(
            "\u{FEFF}Session_ID;IIN;purpose\n{S1};{i};loan\n\n{S2};123;x\nnot-a-uuid;{i};\n{S1};{i};again\n",
            i = iin()
        );
        let p = parse(text.as_bytes(), Utc::now(), false).unwrap();
        assert_eq!(p.rows.len(), 1);
        assert_eq!(p.rows[0].line, 2);
        assert_eq!(p.rows[0].purpose.as_deref(), Some("loan"));
        let lines: Vec<u64> = p.bad.iter().map(|b| b.line).collect();
        assert_eq!(lines, vec![4, 5, 6]);
        assert!(p.bad[2].reason.contains("line 2"), "{:?}", p.bad[2]);
        for b in &p.bad {
            assert!(!b.reason.contains(&iin()), "{b:?}");
            assert!(!b.iin.contains(&iin()), "{b:?}");
        }
    }

    #[test]
    fn missing_header_column_is_a_file_error() {
        let e = parse(b"iin,session\n1,2\n", Utc::now(), false).unwrap_err();
        assert!(
            matches!(e, FileError::MissingColumn("session_id", _)),
            "{e}"
        );
        assert_eq!(
            parse(b"\xEF\xBB\xBF \n", Utc::now(), false).unwrap_err(),
            FileError::Empty
        );
    }

    #[test]
    fn invalid_utf8_and_short_rows_are_bad_rows() {
        let mut text = format!("iin,session_id,session_created_at\n{},{S1},\n", iin()).into_bytes();
        text.extend_from_slice(b"\xff\xfe,abc\n");
        text.extend_from_slice(format!("{}\n", iin()).as_bytes());
        text.extend_from_slice(format!("{},{S2},2999-01-01 10:00\n", iin()).as_bytes());
        let p = parse(&text, Utc::now(), false).unwrap();
        assert_eq!(p.rows.len(), 1);
        let reasons: Vec<&str> = p.bad.iter().map(|b| b.reason.as_str()).collect();
        assert!(reasons[0].contains("UTF-8"), "{reasons:?}");
        assert!(reasons[1].contains("no session_id"), "{reasons:?}");
        assert!(reasons[2].contains("future"), "{reasons:?}");
    }
}
