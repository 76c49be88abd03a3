//! Laying records out for people on a terminal: a person, a lookup history.
//!
//! Rules this module keeps (tests below):
//! - text from a record or from outside goes through [`safe`] before it
//!   reaches the terminal, so no control or format character can move the
//!   cursor, recolour, hide or reorder what the operator reads;
//! - a field it cannot show says so: missing (`—`, `(none in the
//!   record)`) or unreadable, never garbage.

use std::borrow::Cow;
use std::fmt::Write as _;

use chrono::{DateTime, NaiveDate, Utc};

use gbdfl_core::api::{Document, Person, Response};
use gbdfl_core::expiry;
use gbdfl_store::{Lookup, Source};

/// Whether `c` must not reach a terminal as it is: C0 and C1 controls,
/// DEL, line and paragraph separators, and the Unicode format characters
/// (general category Cf: bidi embeddings, overrides, isolates and marks,
/// zero-width characters, invisible operators, tags). Any of them can move
/// the cursor, recolour, hide or reorder what the operator reads.
pub fn is_unsafe_char(c: char) -> bool {
    let u = c as u32;
    if (0x20..0x7f).contains(&u) {
        return false; // printable ASCII, the common case
    }
    c.is_control() // C0, DEL, C1
        || matches!(
            u,
            0x00AD
                | 0x0600..=0x0605
                | 0x061C
                | 0x06DD
                | 0x070F
                | 0x0890..=0x0891
                | 0x08E2
                | 0x180E
                | 0x200B..=0x200F
                | 0x2028..=0x202E
                | 0x2060..=0x2064
                | 0x2066..=0x206F
                | 0xFEFF
                | 0xFFF9..=0xFFFB
                | 0x110BD
                | 0x110CD
                | 0x13430..=0x1343F
                | 0x1BCA0..=0x1BCA3
                | 0x1D173..=0x1D17A
                | 0xE0001
                | 0xE0020..=0xE007F
        )
}

/// Text from outside (record fields, purposes, operator names, the
/// service's messages), made safe for a terminal: every character of
/// [`is_unsafe_char`] is shown as a visible escape, `\u{202e}`, `\u{1b}`.
/// Every renderer passes outside text through this one function (or
/// [`safe_lines`]); the text itself is unchanged in the database, JSON and CSV.
pub fn safe(s: &str) -> Cow<'_, str> {
    escape_unless(s, |_| false)
}

/// [`safe`] keeping line feeds: for a message of several lines.
pub fn safe_lines(s: &str) -> Cow<'_, str> {
    escape_unless(s, |c| c == '\n')
}

fn escape_unless(s: &str, keep: impl Fn(char) -> bool) -> Cow<'_, str> {
    if !s.chars().any(|c| is_unsafe_char(c) && !keep(c)) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        push_safe(&mut out, c, &keep);
    }
    Cow::Owned(out)
}

fn push_safe(out: &mut String, c: char, keep: &impl Fn(char) -> bool) {
    if is_unsafe_char(c) && !keep(c) {
        let _ = write!(out, "\\u{{{:x}}}", c as u32);
    } else {
        out.push(c);
    }
}

/// How many characters `s` takes on a terminal once made [`safe`].
pub fn safe_width(s: &str) -> usize {
    s.chars()
        .map(|c| {
            if is_unsafe_char(c) {
                // "\u{" + hex digits + "}"
                4 + format!("{:x}", c as u32).len()
            } else {
                1
            }
        })
        .sum()
}

/// JSON text made safe for a terminal without changing what it means: each
/// character of [`is_unsafe_char`] that serde_json leaves raw (DEL, C1,
/// format characters) becomes a `\u` escape of four hex digits. Such characters can only
/// stand inside JSON strings, where the escape is the same character, so
/// any JSON reader gets the data back unchanged.
pub fn json_safe(json: &str) -> Cow<'_, str> {
    if !json.chars().any(is_unsafe_char_outside_json_escapes) {
        return Cow::Borrowed(json);
    }
    let mut out = String::with_capacity(json.len() + 16);
    for c in json.chars() {
        if is_unsafe_char_outside_json_escapes(c) {
            let mut units = [0u16; 2];
            for u in c.encode_utf16(&mut units) {
                let _ = write!(out, "\\u{u:04x}");
            }
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// Unsafe characters, except JSON's whitespace (tab, line feed, carriage
/// return), which valid JSON never holds raw inside a string.
fn is_unsafe_char_outside_json_escapes(c: char) -> bool {
    is_unsafe_char(c) && !matches!(c, '\t' | '\n' | '\r')
}

/// A field of the record, made [`safe`], or a dash when it is empty.
fn or_dash(v: &Option<String>) -> Cow<'_, str> {
    safe(
        v.as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .unwrap_or("—"),
    )
}

fn when(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

/// Expiry as shown: "2030-08-15 (1356 days left)", "2024-01-01 (EXPIRED 12 days ago)".
pub fn expiry_text(doc: &Document, today: NaiveDate) -> String {
    match (&doc.expiry_date, expiry::expiry_date(doc)) {
        (None, _) => "no expiry date given".to_owned(),
        (Some(raw), None) => format!("{:?} (not a date gbdfl can read)", safe(raw)),
        (Some(_), Some(date)) => match expiry::days_until(date, today) {
            d if d < 0 => format!("{date} (EXPIRED {} days ago)", -d),
            0 => format!("{date} (EXPIRES TODAY)"),
            d => format!("{date} ({d} days left)"),
        },
    }
}

/// The person of a VALID record, laid out for reading.
pub fn person(iin: &str, response: &Response, lookup: &Lookup, today: NaiveDate) -> String {
    let mut out = String::new();
    let empty = Person::default();
    let p = response.result_json.as_ref().unwrap_or(&empty);
    person_facts(&mut out, iin, p);
    let _ = writeln!(out, "\nDocuments");
    if p.documents.is_empty() {
        let _ = writeln!(out, "  (none in the record)");
    }
    for d in &p.documents {
        document(&mut out, d, today);
    }
    let _ = writeln!(out, "\nRegistration address");
    registration_address(&mut out, p);
    let _ = writeln!(
        out,
        "\nFetched {} by {} on {} (lookup {})",
        when(lookup.answered_at.unwrap_or(lookup.requested_at)),
        safe(&lookup.operator),
        safe(&lookup.host),
        lookup.id
    );
    out
}

/// The name, then who the person is: IIN, birth, gender, nationality,
/// citizenship, life status.
fn person_facts(out: &mut String, iin: &str, p: &Person) {
    let name = p.full_name();
    let _ = writeln!(
        out,
        "{}",
        if name.is_empty() {
            Cow::Borrowed("(no name in the record)")
        } else {
            safe(&name)
        }
    );
    let _ = writeln!(out, "  IIN           {iin}");
    let birth_place = p
        .birth_place
        .as_ref()
        .map(|b| b.one_line())
        .filter(|s| !s.is_empty());
    let _ = writeln!(
        out,
        "  Born          {}{}",
        or_dash(&p.birth_date),
        birth_place
            .map(|b| format!(", {}", safe(&b)))
            .unwrap_or_default()
    );
    let _ = writeln!(
        out,
        "  Gender        {}",
        p.gender()
            .map(|g| safe(&g.to_string()).into_owned())
            .unwrap_or_else(|| "—".into())
    );
    let _ = writeln!(out, "  Nationality   {}", or_dash(&p.nationality));
    let _ = writeln!(out, "  Citizenship   {}", or_dash(&p.citizenship));
    let _ = writeln!(
        out,
        "  Life status   {}{}",
        or_dash(&p.life_status),
        if p.life_status_is_normal() {
            ""
        } else {
            "  (NOT NORMAL)"
        }
    );
}

/// One document: kind and number, issue, expiry, status.
fn document(out: &mut String, d: &Document, today: NaiveDate) {
    let _ = writeln!(out, "  {}  {}", or_dash(&d.kind), or_dash(&d.number));
    let _ = writeln!(
        out,
        "    issued   {} by {}",
        or_dash(&d.issue_date),
        or_dash(&d.issuer)
    );
    let _ = writeln!(out, "    expires  {}", expiry_text(d, today));
    let _ = writeln!(
        out,
        "    status   {}{}",
        or_dash(&d.status),
        if d.status_is_valid() {
            ""
        } else {
            "  (NOT VALID)"
        }
    );
}

/// The registration address on one line, with the day it began.
fn registration_address(out: &mut String, p: &Person) {
    match &p.registration_address {
        Some(a) => {
            let line = a.one_line();
            let since = a
                .begin_date
                .as_deref()
                .map(|b| format!(" (since {})", safe(b)))
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "  {}{since}",
                if line.is_empty() {
                    Cow::Borrowed("—")
                } else {
                    safe(&line)
                }
            );
        }
        None => {
            let _ = writeln!(out, "  (none in the record)");
        }
    }
}

/// One history line's "result" column.
pub fn result_text(l: &Lookup) -> String {
    let mut parts = Vec::new();
    if let Some(s) = &l.status {
        parts.push(s.clone());
    }
    if let Some(r) = l.result {
        parts.push(format!("result={r}"));
    }
    if parts.is_empty() {
        parts.push(l.outcome.as_str().to_uppercase());
    }
    parts.join(" ")
}

/// The reason column: failure reason, HTTP error or transport error.
pub fn reason_text(l: &Lookup) -> String {
    match (l.http_status, &l.detail) {
        (Some(code), Some(d)) if code >= 400 => format!("HTTP {code}: {d}"),
        (Some(code), None) if code >= 400 => format!("HTTP {code}"),
        (_, Some(d)) => d.clone(),
        (_, None) => String::new(),
    }
}

/// Lookup history as a table, newest first.
pub fn history(rows: &[Lookup]) -> String {
    let header = [
        "TIME (UTC)",
        "OPERATOR",
        "PURPOSE",
        "SOURCE",
        "RESULT",
        "REASON",
    ];
    let cells: Vec<(Vec<String>, Option<&str>)> = rows
        .iter()
        .map(|l| {
            let source = match l.source {
                _ if l.is_paid_call() => "paid call",
                Source::Service => "not sent",
                Source::Cache => "cache",
                Source::Org => "org cache",
            };
            let cells = vec![
                l.requested_at.format("%Y-%m-%d %H:%M:%S").to_string(),
                l.operator.clone(),
                l.purpose.clone().unwrap_or_default(),
                source.to_owned(),
                result_text(l),
                reason_text(l),
            ];
            (cells, None)
        })
        .collect();
    table(&header, &cells)
}

/// Lays out rows as columns, outside text made [`safe`]; a row's colour
/// (an ANSI SGR code) wraps its whole line.
fn table(header: &[&str], rows: &[(Vec<String>, Option<&str>)]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for (cells, _) in rows {
        widen(&mut widths, cells);
    }
    let mut out = table_line(&widths, header, None);
    for (cells, colour) in rows {
        let cells: Vec<&str> = cells.iter().map(String::as_str).collect();
        out.push_str(&table_line(&widths, &cells, *colour));
    }
    out
}

fn widen(widths: &mut [usize], cells: &[String]) {
    for (w, c) in widths.iter_mut().zip(cells) {
        *w = (*w).max(safe_width(c).min(40));
    }
}

fn table_line(widths: &[usize], cells: &[&str], colour: Option<&str>) -> String {
    let mut s = String::new();
    table_line_into(&mut s, widths, cells, colour);
    s
}

/// [`table_line`] appended to `s`, without a text per cell.
fn table_line_into(s: &mut String, widths: &[usize], cells: &[&str], colour: Option<&str>) {
    if let Some(code) = colour {
        s.push_str("\x1b[");
        s.push_str(code);
        s.push('m');
    }
    let line = s.len();
    for (i, (c, w)) in cells.iter().zip(widths).enumerate() {
        let last = i + 1 == cells.len();
        let mut shown = 0;
        // Text from outside must not move the cursor, change colours or
        // reorder the line: it is made safe a character at a time, and an
        // escape that does not fit the column is left out whole.
        let mut buf = String::new();
        for ch in c.chars() {
            if !is_unsafe_char(ch) {
                if !last && shown == *w {
                    break;
                }
                s.push(ch);
                shown += 1;
                continue;
            }
            buf.clear();
            push_safe(&mut buf, ch, &|_| false);
            let n = buf.chars().count();
            if !last && shown + n > *w {
                break;
            }
            s.push_str(&buf);
            shown += n;
        }
        if !last {
            s.extend(std::iter::repeat_n(' ', w - shown + 2));
        }
    }
    let kept = s[line..].trim_end().len();
    s.truncate(line + kept);
    if colour.is_some() {
        s.push_str("\x1b[0m");
    }
    s.push('\n');
}

const EXPIRING_HEADER: [&str; 10] = [
    "EXPIRES",
    "DAYS",
    "IIN",
    "NAME",
    "DOCUMENT",
    "NUMBER",
    "STATUS",
    "LIFE STATUS",
    "FETCHED (UTC)",
    "WHY",
];
const NOTHING_EXPIRES: &str =
    "Nothing expires in the window; no invalid documents; no abnormal life status.\n";

fn expiring_cells(
    r: &gbdfl_core::expiry::Row,
    colour: bool,
) -> (Vec<String>, Option<&'static str>) {
    let (cells, paint) = expiring_cells_ref(&r.as_ref(), colour);
    (cells.into_iter().map(Cow::into_owned).collect(), paint)
}

/// The cells of one row, borrowed where they can be.
fn expiring_cells_ref<'a>(
    r: &gbdfl_core::expiry::RowRef<'a>,
    colour: bool,
) -> ([Cow<'a, str>; 10], Option<&'static str>) {
    use gbdfl_core::expiry::Urgency;
    let why = if r.note.is_empty() {
        r.reasons.to_string()
    } else {
        format!("{}: {}", r.reasons, r.note)
    };
    let fetched = match chrono::Datelike::year(&r.fetched_at) {
        // What the format below gives, without parsing the format.
        1000..=9999 => {
            use chrono::{Datelike as _, Timelike as _};
            let t = r.fetched_at;
            format!(
                "{:04}-{:02}-{:02} {:02}:{:02}",
                t.year(),
                t.month(),
                t.day(),
                t.hour(),
                t.minute()
            )
        }
        _ => r.fetched_at.format("%Y-%m-%d %H:%M").to_string(),
    };
    let cells = [
        Cow::Owned(
            r.expiry_date
                .map(|d| d.to_string())
                .unwrap_or_else(|| "—".into()),
        ),
        Cow::Owned(r.days_left.map(|d| d.to_string()).unwrap_or_default()),
        Cow::Borrowed(r.iin),
        Cow::Borrowed(r.full_name),
        Cow::Borrowed(r.document_type),
        Cow::Borrowed(r.document_number),
        Cow::Borrowed(r.document_status),
        Cow::Borrowed(r.life_status),
        Cow::Owned(fetched),
        Cow::Owned(why),
    ];
    let paint = match (colour, r.urgency()) {
        (true, Urgency::Expired) => Some("31"),
        (true, Urgency::Urgent) => Some("33"),
        _ => None,
    };
    (cells, paint)
}

/// The `gbdfl expiring` table. With `colour`, expired documents are red and
/// those with 30 days or fewer left are yellow.
pub fn expiring(rows: &[gbdfl_core::expiry::Row], colour: bool) -> String {
    if rows.is_empty() {
        return NOTHING_EXPIRES.to_owned();
    }
    let cells: Vec<(Vec<String>, Option<&str>)> =
        rows.iter().map(|r| expiring_cells(r, colour)).collect();
    table(&EXPIRING_HEADER, &cells)
}

/// [`expiring`] written to `w` a line at a time, for sets too large to
/// hold as one text: one pass for the column widths, one to write.
pub fn expiring_to(
    w: &mut impl std::io::Write,
    rows: &crate::RowSet,
    colour: bool,
    pool: &rayon::ThreadPool,
) -> std::io::Result<()> {
    if rows.is_empty() {
        return w.write_all(NOTHING_EXPIRES.as_bytes());
    }
    let mut widths: Vec<usize> = EXPIRING_HEADER.iter().map(|h| h.chars().count()).collect();
    for r in rows.iter_ref() {
        // The widths of what expiring_cells makes, without making it.
        let days = r.days_left.map(|d| d.to_string().len()).unwrap_or(0);
        let expires = r.expiry_date.map_or(1, |d| d.to_string().len());
        let why = if r.note.is_empty() {
            r.reasons.to_string().chars().count()
        } else {
            r.reasons.to_string().chars().count() + 2 + safe_width(r.note)
        };
        let counts = [
            expires,
            days,
            safe_width(r.iin),
            safe_width(r.full_name),
            safe_width(r.document_type),
            safe_width(r.document_number),
            safe_width(r.document_status),
            safe_width(r.life_status),
            match chrono::Datelike::year(&r.fetched_at) {
                1000..=9999 => 16,
                _ => r
                    .fetched_at
                    .format("%Y-%m-%d %H:%M")
                    .to_string()
                    .chars()
                    .count(),
            },
            why,
        ];
        for (w, c) in widths.iter_mut().zip(counts) {
            *w = (*w).max(c.min(40));
        }
    }
    w.write_all(table_line(&widths, &EXPIRING_HEADER, None).as_bytes())?;
    // Runs of rows are laid out side by side on `pool`, written in order.
    rows.lay_out_in_order(
        pool,
        crate::rows::RUN_ROWS,
        |run| {
            let mut s = String::new();
            for r in run.iter() {
                let (cells, paint) = expiring_cells_ref(&r, colour);
                let cells = cells.each_ref().map(|c| c.as_ref());
                table_line_into(&mut s, &widths, &cells, paint);
            }
            s
        },
        |text| w.write_all(text.as_bytes()),
    )?;
    w.flush()
}

/// The `gbdfl expiring --stale` table.
pub fn stale(rows: &[crate::StaleRow]) -> String {
    if rows.is_empty() {
        return "No person's latest VALID record is that old.\n".to_owned();
    }
    let cells: Vec<(Vec<String>, Option<&str>)> = rows
        .iter()
        .map(|r| {
            let cells = vec![
                r.fetched_at.format("%Y-%m-%d %H:%M").to_string(),
                r.age_days.to_string(),
                r.iin.clone(),
                r.full_name.clone(),
            ];
            (cells, None)
        })
        .collect();
    table(&["FETCHED (UTC)", "AGE (DAYS)", "IIN", "NAME"], &cells)
}

/// A time for people: local time, to the minute, with the UTC offset.
pub fn local_time(t: chrono::DateTime<chrono::Utc>) -> String {
    t.with_timezone(&chrono::Local)
        .format("%Y-%m-%d %H:%M %:z")
        .to_string()
}

/// A plain table with a header row (outside text made [`safe`]).
pub fn columns(header: &[&str], rows: &[Vec<String>]) -> String {
    let rows: Vec<(Vec<String>, Option<&str>)> = rows.iter().map(|r| (r.clone(), None)).collect();
    table(header, &rows)
}

/// The shortest handle of a queue item: [`queue_handles`] never makes one
/// shorter, and `queue drop` takes no shorter end of an ID.
pub const SHORTEST_HANDLE: usize = 4;

/// Each ID's handle: its shortest end (at least [`SHORTEST_HANDLE`]
/// characters) that ends no other of `ids`. UUIDv7 IDs end in random
/// digits, so handles are almost always 4 characters, and one stays the
/// same while its item is queued unless a new item happens to end alike
/// (then both grow by a character; the old handle then names two items and
/// `queue drop` refuses it, listing both).
pub fn queue_handles(ids: &[&str]) -> Vec<String> {
    // Sorted by their reversed text, IDs that share an ending are
    // neighbours: an ID's handle is one character longer than the longest
    // ending it shares with a neighbour.
    let reversed: Vec<Vec<u8>> = ids.iter().map(|id| id.bytes().rev().collect()).collect();
    let mut order: Vec<usize> = (0..ids.len()).collect();
    order.sort_by(|&a, &b| reversed[a].cmp(&reversed[b]));
    let shared = |a: usize, b: usize| {
        reversed[a]
            .iter()
            .zip(&reversed[b])
            .take_while(|(x, y)| x == y)
            .count()
    };
    let mut len = vec![SHORTEST_HANDLE; ids.len()];
    for pair in order.windows(2) {
        let n = shared(pair[0], pair[1]) + 1;
        for &i in pair {
            len[i] = len[i].max(n);
        }
    }
    ids.iter()
        .zip(len)
        .map(|(id, n)| {
            let start = id.len().saturating_sub(n);
            id.get(start..).unwrap_or(id).to_owned()
        })
        .collect()
}

/// The request queue as a table, soonest deadline first. IINs are masked
/// unless `full`. Each item's handle (for `queue drop`) is made among
/// `items` alone.
pub fn queue(items: &[gbdfl_store::QueueItem], full: bool) -> String {
    let ids: Vec<&str> = items.iter().map(|q| q.id.as_str()).collect();
    queue_with_handles(items, &queue_handles(&ids), full)
}

/// [`queue`] with the handles given, one per item (made among a larger queue).
pub fn queue_with_handles(
    items: &[gbdfl_store::QueueItem],
    handles: &[String],
    full: bool,
) -> String {
    let header = [
        "HANDLE",
        "ID",
        "IIN",
        "STATE",
        "ATTEMPTS",
        "NEXT TRY",
        "DEADLINE",
        "OPERATOR",
        "LAST ERROR",
    ];
    let rows: Vec<Vec<String>> = items
        .iter()
        .zip(handles)
        .map(|(q, handle)| {
            let iin = if full {
                q.iin.as_str().to_owned()
            } else {
                q.iin.masked()
            };
            let next = match q.state {
                gbdfl_store::QueueState::Waiting => local_time(q.next_try_at),
                _ => "-".to_owned(),
            };
            vec![
                handle.clone(),
                q.id.clone(),
                iin,
                q.state.as_str().to_owned(),
                q.attempts.to_string(),
                next,
                local_time(q.deadline),
                q.operator.clone(),
                q.last_error.clone().unwrap_or_default(),
            ]
        })
        .collect();
    columns(&header, &rows)
}

#[cfg(test)]
mod tests {
    use gbdfl_core::expiry::{Reasons, Row};

    #[test]
    fn queue_handles_are_the_shortest_unique_endings() {
        let ids = [
            "019a-0001-aaaa-1234",
            "019a-0002-bbbb-1234",
            "019a-0003-cccc-5678",
            "019a-0004-dd0b-1234",
            "abc",
        ];
        let h = super::queue_handles(&ids);
        assert_eq!(h, ["a-1234", "bb-1234", "5678", "0b-1234", "abc"]);
        for (i, handle) in h.iter().enumerate() {
            let ends: Vec<_> = ids
                .iter()
                .filter(|id| id.ends_with(handle.as_str()))
                .collect();
            assert_eq!(ends, [&ids[i]], "{handle}");
        }
        assert!(super::queue_handles(&[]).is_empty());
    }

    fn row(days: Option<i64>, name: &str) -> Row {
        Row {
            iin: "950215*****6".into(),
            full_name: name.into(),
            document_type: "ПАСПОРТ".into(),
            document_number: "N1".into(),
            expiry_date: None,
            days_left: days,
            document_status: String::new(),
            life_status: String::new(),
            fetched_at: chrono::DateTime::UNIX_EPOCH,
            reasons: Reasons::default(),
            note: String::new(),
        }
    }

    #[test]
    fn expired_red_urgent_yellow_later_plain_and_no_colour_when_off() {
        let rows = [row(Some(-1), "a"), row(Some(30), "b"), row(Some(31), "c")];
        let text = super::expiring(&rows, true);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[1].starts_with("\x1b[31m") && lines[1].ends_with("\x1b[0m"));
        assert!(lines[2].starts_with("\x1b[33m"));
        assert!(!lines[3].contains('\x1b'));
        assert!(!super::expiring(&rows, false).contains('\x1b'));
    }

    #[test]
    fn controls_and_format_characters_are_shown_as_escapes() {
        use super::{safe, safe_lines, safe_width};
        assert_eq!(safe("Иван"), "Иван");
        assert_eq!(
            safe("a\x1b[2K\rb\u{8}\0\u{7f}\u{9b}"),
            "a\\u{1b}[2K\\u{d}b\\u{8}\\u{0}\\u{7f}\\u{9b}"
        );
        assert_eq!(
            safe("x\u{202e}y\u{2066}\u{200f}\u{61c}\u{feff}\u{e0041}"),
            "x\\u{202e}y\\u{2066}\\u{200f}\\u{61c}\\u{feff}\\u{e0041}"
        );
        assert_eq!(safe("a\nb"), "a\\u{a}b");
        assert_eq!(safe_lines("a\nb\r"), "a\nb\\u{d}");
        assert_eq!(safe_width("a\u{202e}"), safe("a\u{202e}").chars().count());
    }

    #[test]
    fn json_made_safe_reads_back_the_same() {
        let v = serde_json::json!({ "s": "a\u{202e}b\u{7f}\u{85}\x1b\r\n\u{e0041}", "n": 1 });
        let text = serde_json::to_string_pretty(&v).unwrap();
        let safe = super::json_safe(&text);
        assert!(
            !safe.chars().any(|c| super::is_unsafe_char(c) && c != '\n'),
            "{safe}"
        );
        assert!(
            safe.contains("\\u202e") && safe.contains("\\udb40\\udc41"),
            "{safe}"
        );
        let back: serde_json::Value = serde_json::from_str(&safe).unwrap();
        assert_eq!(back, v);
    }

    #[test]
    fn fields_missing_or_unreadable_say_so() {
        use gbdfl_core::api::{Document, Person};
        let empty = Person::default();
        let mut out = String::new();
        super::person_facts(&mut out, "950215*****6", &empty);
        super::registration_address(&mut out, &empty);
        assert!(out.starts_with("(no name in the record)\n"), "{out}");
        assert!(out.contains("  Born          —\n"), "{out}");
        assert!(out.contains("  Life status   —"), "{out}");
        assert!(out.ends_with("  (none in the record)\n"), "{out}");
        let today = chrono::NaiveDate::from_ymd_opt(2030, 7, 1).unwrap();
        let doc = |expiry: Option<&str>| Document {
            expiry_date: expiry.map(str::to_owned),
            ..Document::default()
        };
        assert_eq!(
            super::expiry_text(&doc(None), today),
            "no expiry date given"
        );
        assert_eq!(
            super::expiry_text(&doc(Some("soon\u{1b}")), today),
            "\"soon\\\\u{1b}\" (not a date gbdfl can read)"
        );
    }

    #[test]
    fn control_characters_from_the_record_do_not_reach_the_terminal() {
        let text = super::expiring(&[row(None, "Иван\x1b[2J\nов")], false);
        assert!(!text.contains('\x1b'), "{text:?}");
        assert_eq!(text.lines().count(), 2, "{text:?}");
    }
}
