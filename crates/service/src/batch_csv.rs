//! The CSV file of `gbdfl batch`: bytes in, checked rows and rejected rows
//! out. A pure function, so it can be fuzzed and property-tested alone.
//!
//! Rules this module keeps: it never panics, whatever the bytes; a file that
//! is not a CSV with the required header is an error, not rows; every other
//! problem is one [`BadRow`] naming its 1-based physical line, and no reason
//! ever holds a full IIN (only [`mask`]ed ones); a row is either good or bad,
//! never both, and no (IIN, session) pair is returned twice. The tests of
//! `gbdfl-fuzzing` hold them (the proptests `batch_csv_on_any_bytes`,
//! `batch_csv_on_near_csv_text`, `batch_csv_file_errors_are_errors`), with
//! the unit tests below.
//!
//! The format: a header row with the columns `iin` and `session_id`, and
//! optionally `purpose` and `session_created_at`, in any order, any case,
//! surrounding spaces ignored; other columns are ignored. UTF-8, with or
//! without a byte-order mark; [`decode`] turns a Windows-1251 file (what
//! Excel in a Russian locale saves as "CSV") into UTF-8 first. The delimiter is `;` (as Excel writes CSV in
//! Kazakh and Russian locales) or `,`, whichever the header line has more of.
//! Blank lines, and rows whose every cell is empty, are skipped.

use std::borrow::Cow;
use std::collections::HashMap;

use crate::lookup::{SessionId, parse_session_time};
use gbdfl_core::iin::{Iin, mask};

/// A row that passed every check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    /// The physical line (1-based) the row starts on.
    pub line: u64,
    /// The 12 digits, checked. Personal data.
    pub iin: String,
    /// The session id in canonical (lowercase, hyphenated) form.
    pub session_id: String,
    /// Empty cells become `None`.
    pub purpose: Option<String>,
    /// As written (trimmed); it parses with [`parse_session_time`].
    pub session_created_at: Option<String>,
}

/// A row that was rejected, and why. The reason holds no full IIN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadRow {
    /// The physical line (1-based) the row starts on.
    pub line: u64,
    /// What is wrong with it, fit to show (IINs masked).
    pub reason: String,
}

/// Why the file as a whole cannot be read as a batch.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchCsvError {
    /// No bytes but a byte-order mark and white space.
    #[error("the file is empty: a batch file starts with a header row such as `iin;session_id`")]
    Empty,
    /// The header line is not text (not UTF-8, or binary) or not CSV;
    /// why, fit to show.
    #[error(
        "the first line is not a CSV header ({0}): a batch file is UTF-8 text starting with a header row such as `iin;session_id`"
    )]
    NotCsv(String),
    /// A required column (`iin`, `session_id`) is not in the header.
    #[error(
        "the header row has no {0:?} column: it needs `iin` and `session_id` (and may have `purpose` and `session_created_at`), separated by `;` or `,`"
    )]
    MissingColumn(&'static str),
    /// A known column is named twice, so which cell counts is unclear.
    #[error("the header row names the column {0:?} twice")]
    DuplicateColumn(String),
}

const BOM: &[u8] = b"\xEF\xBB\xBF";

/// What to tell a user whose file is not UTF-8.
pub const SAVE_AS_UTF8: &str =
    "in Excel, save the file as \"CSV UTF-8 (Comma delimited)\" and run batch again";

/// How the bytes of a batch file were read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// UTF-8 (or plain ASCII), as the format asks.
    Utf8,
    /// Not UTF-8, but Windows-1251 text: converted to UTF-8.
    Windows1251,
    /// Neither: left as it is, so each field that is not UTF-8 is a bad row.
    Unknown,
}

/// The file as UTF-8 bytes, and how it was read. Bytes that are not UTF-8
/// are taken for Windows-1251 (cp1251, the default of Excel's "CSV" in a
/// Russian locale) only when that reading is plausible: no control
/// characters but tab and line breaks, and at least four in five of the
/// characters outside ASCII are Cyrillic letters. A UTF-16 file (it starts
/// with its byte-order mark) is never taken for one.
pub fn decode(bytes: &[u8]) -> (Cow<'_, [u8]>, Encoding) {
    if simdutf8::basic::from_utf8(bytes).is_ok() {
        return (Cow::Borrowed(bytes), Encoding::Utf8);
    }
    if bytes.starts_with(b"\xFF\xFE") || bytes.starts_with(b"\xFE\xFF") {
        return (Cow::Borrowed(bytes), Encoding::Unknown);
    }
    let Some(text) =
        encoding_rs::WINDOWS_1251.decode_without_bom_handling_and_without_replacement(bytes)
    else {
        return (Cow::Borrowed(bytes), Encoding::Unknown);
    };
    // Letters of Russian (and the Kazakh і) in cp1251's upper half; UTF-8
    // read as cp1251 gives mostly other characters (`Р`/`С`, then signs
    // like `Ђ`, `‰`, `Ћ`), so its mojibake falls short of four in five.
    let letter = |c: char| matches!(c, 'А'..='я' | 'Ё' | 'ё' | 'І' | 'і');
    let punctuation = |c: char| "«»№–—‘’“”„…•\u{a0}".contains(c);
    let (mut outside, mut cyrillic) = (0usize, 0usize);
    for c in text.chars() {
        if c.is_control() && !matches!(c, '\t' | '\r' | '\n') {
            return (Cow::Borrowed(bytes), Encoding::Unknown);
        }
        if !c.is_ascii() && !punctuation(c) {
            outside += 1;
            if letter(c) {
                cyrillic += 1;
            }
        }
    }
    if cyrillic * 5 < outside * 4 {
        return (Cow::Borrowed(bytes), Encoding::Unknown);
    }
    (
        Cow::Owned(text.into_owned().into_bytes()),
        Encoding::Windows1251,
    )
}

/// Column positions found in the header.
struct Columns {
    iin: usize,
    session_id: usize,
    purpose: Option<usize>,
    session_created_at: Option<usize>,
    count: usize,
}

/// `;` or `,`: whichever the header line has more of (a tie means `,`).
pub fn delimiter(text: &[u8]) -> u8 {
    let first = text.split(|&b| b == b'\n').next().unwrap_or_default();
    let count = |d: u8| first.iter().filter(|&&b| b == d).count();
    if count(b';') > count(b',') {
        b';'
    } else {
        b','
    }
}

fn columns(header: &csv::ByteRecord) -> Result<Columns, BatchCsvError> {
    let mut found: HashMap<String, usize> = HashMap::new();
    for (i, raw) in header.iter().enumerate() {
        let name = std::str::from_utf8(raw)
            .map_err(|_| BatchCsvError::NotCsv(format!("it is not UTF-8 text: {SAVE_AS_UTF8}")))?;
        if name.contains('\0') {
            return Err(BatchCsvError::NotCsv("it holds binary data".into()));
        }
        let name = name.trim().to_lowercase();
        if name.is_empty() {
            continue;
        }
        if found.insert(name.clone(), i).is_some()
            && matches!(
                name.as_str(),
                "iin" | "session_id" | "purpose" | "session_created_at"
            )
        {
            return Err(BatchCsvError::DuplicateColumn(name));
        }
    }
    Ok(Columns {
        iin: *found
            .get("iin")
            .ok_or(BatchCsvError::MissingColumn("iin"))?,
        session_id: *found
            .get("session_id")
            .ok_or(BatchCsvError::MissingColumn("session_id"))?,
        purpose: found.get("purpose").copied(),
        session_created_at: found.get("session_created_at").copied(),
        count: header.len(),
    })
}

/// Parses a whole batch file. `Ok` holds the good rows and the bad ones,
/// each in file order; `Err` means the file is not a batch file at all.
pub fn parse(bytes: &[u8]) -> Result<(Vec<Row>, Vec<BadRow>), BatchCsvError> {
    let text = bytes.strip_prefix(BOM).unwrap_or(bytes);
    if text.iter().all(u8::is_ascii_whitespace) {
        return Err(BatchCsvError::Empty);
    }
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .trim(csv::Trim::All)
        .delimiter(delimiter(text))
        .from_reader(text);
    let mut records = reader.byte_records();
    let header = match records.next() {
        Some(Ok(h)) => h,
        Some(Err(e)) => return Err(BatchCsvError::NotCsv(e.to_string())),
        None => return Err(BatchCsvError::Empty),
    };
    let cols = columns(&header)?;
    let mut lines = Lines {
        text,
        at: 0,
        line: 1,
    };
    let mut rows = Vec::new();
    let mut bad = Vec::new();
    let mut seen: HashMap<(String, String), u64> = HashMap::new();
    for record in records {
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                let line = lines.of(e.position());
                bad.push(BadRow {
                    line,
                    reason: "not readable as CSV".into(),
                });
                continue;
            }
        };
        let line = lines.of(record.position());
        // Blank rows (`;;;`, as Excel writes below a table) are not rows.
        if record.iter().all(|f| f.trim_ascii().is_empty()) {
            continue;
        }
        match check_row(&record, &cols, line) {
            Ok(row) => {
                let key = (row.iin.clone(), row.session_id.clone());
                if let Some(first) = seen.get(&key) {
                    bad.push(BadRow {
                        line,
                        reason: format!("duplicate of line {first} (same IIN and session)"),
                    });
                } else {
                    seen.insert(key, line);
                    rows.push(row);
                }
            }
            Err(reason) => bad.push(BadRow { line, reason }),
        }
    }
    Ok((rows, bad))
}

/// Physical line numbers (1-based) from the csv reader's byte positions. The reader
/// records where it stood after the previous record, before the line
/// breaks and blank lines it skips, so its own line count can be behind:
/// count the newlines up to the record's first byte instead.
struct Lines<'a> {
    text: &'a [u8],
    /// Bytes counted so far, and the line the byte at `at` is on.
    at: usize,
    line: u64,
}

impl Lines<'_> {
    fn of(&mut self, pos: Option<&csv::Position>) -> u64 {
        let Some(pos) = pos else {
            return self.line;
        };
        let mut start = usize::try_from(pos.byte())
            .unwrap_or(usize::MAX)
            .min(self.text.len());
        while start < self.text.len() && matches!(self.text[start], b'\r' | b'\n') {
            start += 1;
        }
        if start > self.at {
            self.line += line_breaks(self.text, self.at..start) as u64;
            self.at = start;
        }
        self.line
    }
}

/// The line breaks in `text[range]`: `\n`, `\r\n` or a lone `\r` (as the
/// csv reader, and old Mac files, take it).
pub fn line_breaks(text: &[u8], range: std::ops::Range<usize>) -> usize {
    range
        .filter(|&i| match text[i] {
            b'\n' => true,
            b'\r' => text.get(i + 1) != Some(&b'\n'),
            _ => false,
        })
        .count()
}

/// Checks one record against the header; `Err` is the reason it is bad.
fn check_row(record: &csv::ByteRecord, cols: &Columns, line: u64) -> Result<Row, String> {
    if record.len() != cols.count {
        return Err(format!(
            "has {} fields, the header has {}",
            record.len(),
            cols.count
        ));
    }
    let field = |i: usize, name: &str| -> Result<&str, String> {
        std::str::from_utf8(record.get(i).unwrap_or_default())
            .map(str::trim)
            .map_err(|_| format!("the {name} field is not UTF-8 text ({SAVE_AS_UTF8})"))
    };
    let optional = |i: Option<usize>, name: &str| -> Result<Option<String>, String> {
        Ok(match i {
            Some(i) => Some(field(i, name)?)
                .filter(|s| !s.is_empty())
                .map(str::to_owned),
            None => None,
        })
    };
    let iin_text = field(cols.iin, "iin")?;
    let iin = Iin::parse(iin_text).map_err(|e| {
        let hint = if iin_text.contains(['E', 'e']) && iin_text.contains('+') {
            " (Excel wrote it as a number in scientific notation: format the IIN column as Text and type it again)"
        } else if iin_text.len() == 11 && iin_text.bytes().all(|b| b.is_ascii_digit()) {
            " (did Excel drop a leading zero? format the IIN column as Text)"
        } else {
            ""
        };
        format!("IIN {} is not valid: {e}{hint}", mask(iin_text))
    })?;
    let session_text = field(cols.session_id, "session_id")?;
    let session = SessionId::parse(session_text).map_err(|_| {
        format!(
            "session_id is not a UUID ({} characters; expected 8-4-4-4-12 hex digits)",
            session_text.chars().count()
        )
    })?;
    let purpose = optional(cols.purpose, "purpose")?;
    let session_created_at = optional(cols.session_created_at, "session_created_at")?;
    if let Some(t) = &session_created_at {
        // parse_session_time's own message quotes the value, which may be
        // an IIN typed into the wrong column: say what is wanted instead.
        parse_session_time(t).map_err(|_| {
            "session_created_at is not a time: write 2026-11-28 09:15 (local time) or 2026-11-28T09:15:00+05:00".to_owned()
        })?;
    }
    Ok(Row {
        line,
        iin: iin.as_str().to_owned(),
        session_id: session.as_str().to_owned(),
        purpose,
        session_created_at,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use gbdfl_core::iin::complete;

    fn iin(n: u32) -> String {
        (0..)
            .find_map(|i| complete(&format!("880512{}{:04}", 3 + n % 2, (n * 37 + i) % 10_000)))
            .unwrap()
    }

    const S1: &str = "0b4c9a4e-3c1b-4c8e-9a57-0d6e1f2a3b4c";
    const S2: &str = "7d1f0a2b-5e6c-4d7e-8f90-a1b2c3d4e5f6";

    #[test]
    fn semicolon_bom_any_order_and_case() {
        let a = iin(1);
        let text = format!(
            "\u{feff} Session_ID ; IIN ;Purpose\r\n{S1};{a};loan\r\n\r\n{};{a}; \r\n",
            S2.to_uppercase()
        );
        let (rows, bad) = parse(text.as_bytes()).unwrap();
        assert!(bad.is_empty(), "{bad:?}");
        assert_eq!(rows.len(), 2);
        assert_eq!((rows[0].line, rows[1].line), (2, 4));
        assert_eq!(rows[0].purpose.as_deref(), Some("loan"));
        assert_eq!(rows[1].purpose, None);
        assert_eq!(rows[1].session_id, S2, "session ids are made canonical");
        assert_eq!(rows[0].iin, a);
    }

    #[test]
    fn comma_and_quoted_fields_with_the_other_delimiter() {
        let a = iin(2);
        let text = format!(
            "iin,session_id,purpose,session_created_at\n{a},{S1},\"loan; a, b\",2026-11-28 09:15\n"
        );
        let (rows, bad) = parse(text.as_bytes()).unwrap();
        assert!(bad.is_empty(), "{bad:?}");
        assert_eq!(rows[0].purpose.as_deref(), Some("loan; a, b"));
        assert_eq!(
            rows[0].session_created_at.as_deref(),
            Some("2026-11-28 09:15")
        );
    }

    #[test]
    fn each_bad_row_names_its_line_and_never_the_full_iin() {
        let a = iin(3);
        let mut wrong_check = a.clone();
        let last = wrong_check.pop().unwrap();
        wrong_check.push(if last == '0' { '1' } else { '0' });
        let text = format!(
            "iin;session_id;session_created_at\n\
             {a};{S1};\n\
             {wrong_check};{S1};\n\
             {a};not-a-uuid;\n\
             {a};{S2};yesterday\n\
             {a};{S1}\n\
             {a};{S1};\n"
        );
        let mut bytes = text.into_bytes();
        bytes.extend_from_slice(b"\xff\xfe;");
        bytes.extend_from_slice(S2.as_bytes());
        bytes.extend_from_slice(b";\n");
        let (rows, bad) = parse(&bytes).unwrap();
        assert_eq!(rows.len(), 1);
        let lines: Vec<u64> = bad.iter().map(|b| b.line).collect();
        assert_eq!(lines, [3, 4, 5, 6, 7, 8], "{bad:?}");
        assert!(bad[0].reason.contains(&mask(&wrong_check)), "{bad:?}");
        assert!(bad[1].reason.contains("UUID"));
        assert!(bad[2].reason.contains("session_created_at"));
        assert!(bad[3].reason.contains("2 fields, the header has 3"));
        assert_eq!(bad[4].reason, "duplicate of line 2 (same IIN and session)");
        assert!(bad[5].reason.contains("not UTF-8"));
        for b in &bad {
            assert!(!b.reason.contains(&a) && !b.reason.contains(&wrong_check));
        }
    }

    #[test]
    fn a_file_that_is_not_a_batch_is_an_error() {
        assert_eq!(parse(b""), Err(BatchCsvError::Empty));
        assert_eq!(parse(b"\xEF\xBB\xBF \n\n"), Err(BatchCsvError::Empty));
        assert_eq!(
            parse(b"iin;purpose\n1;2\n"),
            Err(BatchCsvError::MissingColumn("session_id"))
        );
        assert!(matches!(
            parse(b"\x7fELF\x02\x01\x01\0\0\0\0\0\n"),
            Err(BatchCsvError::NotCsv(_) | BatchCsvError::MissingColumn(_))
        ));
        assert!(matches!(
            parse(b"\xff\xfeiin;session_id\n"),
            Err(BatchCsvError::NotCsv(_))
        ));
        assert_eq!(
            parse(b"iin;IIN;session_id\n"),
            Err(BatchCsvError::DuplicateColumn("iin".into()))
        );
    }

    #[test]
    fn windows_1251_is_read_when_plausible() {
        let a = iin(5);
        let text = format!("iin;session_id;purpose\r\n{a};{S1};Проверка кредита «Ёлка» №5\r\n");
        let (cp1251, _, bad) = encoding_rs::WINDOWS_1251.encode(&text);
        assert!(!bad);
        let (utf8, how) = decode(&cp1251);
        assert_eq!(how, Encoding::Windows1251);
        assert_eq!(utf8.as_ref(), text.as_bytes());
        let (rows, bad) = parse(&utf8).unwrap();
        assert!(bad.is_empty(), "{bad:?}");
        assert_eq!(
            rows[0].purpose.as_deref(),
            Some("Проверка кредита «Ёлка» №5")
        );
        // UTF-8 as it is.
        assert_eq!(
            decode(text.as_bytes()),
            (Cow::Borrowed(text.as_bytes()), Encoding::Utf8)
        );
        // UTF-8 Cyrillic with one stray byte is not taken for cp1251.
        let mut stray = text.trim_end().as_bytes().to_vec();
        stray.extend_from_slice(b"\xFF\r\n");
        assert_eq!(decode(&stray).1, Encoding::Unknown);
        // Nor binary, nor UTF-16.
        assert_eq!(
            decode(b"iin;session_id\n\x01\xC0\xC1\n").1,
            Encoding::Unknown
        );
        assert_eq!(decode(b"\xFF\xFEi\0n\0").1, Encoding::Unknown);
        // A file left as it is says what to do, row by row.
        let (_, bad) = parse(&stray).unwrap();
        assert!(bad[0].reason.contains("CSV UTF-8"), "{bad:?}");
    }

    #[test]
    fn multi_line_quoted_field_keeps_physical_lines() {
        let a = iin(4);
        let text = format!("iin,session_id,purpose\n{a},{S1},\"two\nlines\"\nbad,{S2},x\n");
        let (rows, bad) = parse(text.as_bytes()).unwrap();
        assert_eq!(rows[0].line, 2);
        assert_eq!(bad[0].line, 4, "{bad:?}");
    }
}
