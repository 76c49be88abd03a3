//! Times and dates as gbdfl writes and reads them: instants as ISO 8601
//! text (UTC, `Z`), and the calendar dates of GBDFL answers in every shape
//! the service sends. Session creation times, which people type, are read
//! in [`crate::session`].
//!
//! Rule this module keeps: each form has one writer and one reader, and the
//! fast paths read exactly what the general parsers read (tests compare
//! them).

use chrono::{DateTime, NaiveDate, SecondsFormat, Utc};

/// An instant as stored and exported: UTC, RFC 3339 to the millisecond,
/// `Z` (`2030-06-01T10:00:00.000Z`). As text these sort in time order.
pub fn iso_millis(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// An instant as reports show it: UTC, ISO 8601 to the second
/// (`2030-06-01T10:00:00Z`).
pub fn iso_seconds(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// [`iso_seconds`] as a serde `serialize_with`.
pub fn serialize_iso_seconds<S: serde::Serializer>(
    t: &DateTime<Utc>,
    s: S,
) -> Result<S::Ok, S::Error> {
    s.serialize_str(&iso_seconds(*t))
}

/// Reads an RFC 3339 instant (any offset, surrounding spaces allowed) as
/// UTC. The form [`iso_millis`] writes is read without chrono's parser
/// (the expiry scan reads a million of them).
pub fn parse_iso(s: &str) -> Option<DateTime<Utc>> {
    let s = s.trim();
    iso_millis_fast(s).or_else(|| {
        DateTime::parse_from_rfc3339(s)
            .ok()
            .map(|t| t.with_timezone(&Utc))
    })
}

/// The one form [`iso_millis`] writes, `YYYY-MM-DDTHH:MM:SS.mmmZ`; `None`
/// for anything else, which [`parse_iso`] leaves to chrono.
fn iso_millis_fast(s: &str) -> Option<DateTime<Utc>> {
    let b = s.as_bytes();
    if b.len() != 24
        || [
            (4, b'-'),
            (7, b'-'),
            (10, b'T'),
            (13, b':'),
            (16, b':'),
            (19, b'.'),
            (23, b'Z'),
        ]
        .iter()
        .any(|&(i, c)| b[i] != c)
    {
        return None;
    }
    let n = |r: std::ops::Range<usize>| ascii_number(&b[r]);
    let day = NaiveDate::from_ymd_opt(n(0..4)? as i32, n(5..7)?, n(8..10)?)?;
    // A leap second (:60) is not taken here: chrono reads it its own way.
    let t = day.and_hms_milli_opt(n(11..13)?, n(14..16)?, n(17..19)?, n(20..23)?)?;
    Some(t.and_utc())
}

/// The number written by ASCII digits only (none: `None`).
fn ascii_number(b: &[u8]) -> Option<u32> {
    if b.is_empty() || b.len() > 9 {
        return None;
    }
    b.iter().try_fold(0u32, |n, c| {
        c.is_ascii_digit().then(|| n * 10 + u32::from(c - b'0'))
    })
}

/// Parses a date in any shape seen in GBDFL traffic: `YYYY-MM-DD`, an ISO
/// date-time with an offset or `Z` (the date as written in that offset), a
/// date with an offset (`2017-10-16+06:00`), a naive date-time, or
/// `DD.MM.YYYY`.
pub fn parse_date(s: &str) -> Option<NaiveDate> {
    let s = s.trim();
    // `YYYY-MM-DD`, the form nearly every date has, without chrono's format
    // parser (a third of the expiry scan's time went there).
    if let Some(d) = plain_date(s) {
        return Some(d);
    }
    if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        return Some(d);
    }
    if let Ok(dt) = DateTime::parse_from_rfc3339(s) {
        return Some(dt.date_naive());
    }
    if let Ok(dt) = chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f") {
        return Some(dt.date());
    }
    if let Ok(dt) = chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f") {
        return Some(dt.date());
    }
    // A date followed by an offset or Z: the date part is the date.
    if s.len() > 10 && s.is_char_boundary(10) {
        let (date, rest) = s.split_at(10);
        let offset_like = rest == "Z"
            || ((rest.starts_with('+') || rest.starts_with('-'))
                && rest[1..].chars().all(|c| c.is_ascii_digit() || c == ':'));
        if let (true, Ok(d)) = (offset_like, NaiveDate::parse_from_str(date, "%Y-%m-%d")) {
            return Some(d);
        }
    }
    NaiveDate::parse_from_str(s, "%d.%m.%Y").ok()
}

/// `YYYY-MM-DD` with ASCII digits only.
fn plain_date(s: &str) -> Option<NaiveDate> {
    let b = s.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let n = |r: std::ops::Range<usize>| ascii_number(&b[r]);
    NaiveDate::from_ymd_opt(n(0..4)? as i32, n(5..7)?, n(8..10)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_in_every_shape() {
        let d = NaiveDate::from_ymd_opt(2017, 10, 16);
        for s in [
            "2017-10-16",
            "2017-10-16+06:00",
            "2017-10-16-03:00",
            "2017-10-16Z",
            "2017-10-16T00:00:00+06:00",
            "2017-10-16T23:10:00.123Z",
            "2017-10-16T10:00:00",
            "16.10.2017",
            " 2017-10-16 ",
        ] {
            assert_eq!(parse_date(s), d, "{s}");
        }
        assert_eq!(parse_date("бессрочно"), None);
        assert_eq!(parse_date("2017-13-01"), None);
        assert_eq!(parse_date(""), None);
    }

    /// What chrono alone reads.
    fn chrono_date(s: &str) -> Option<NaiveDate> {
        NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d").ok()
    }

    #[test]
    fn plain_dates_read_as_chrono_reads_them() {
        for s in [
            "2030-06-01",
            "1999-12-31",
            "2024-02-29",
            "2023-02-29",
            "2030-13-01",
            "2030-00-10",
            "0000-01-01",
            "9999-12-31",
            "2030-6-01",
            "2030-06-1",
            "20300601xx",
            "2030+06-01",
            "２０３０-06-01",
            "2030-06-01Z",
            " 2030-06-01",
            "01.06.2030",
            "",
        ] {
            let fast = plain_date(s);
            if fast.is_some() {
                assert_eq!(fast, chrono_date(s), "{s:?}");
            }
        }
        assert_eq!(plain_date("2030-06-01"), chrono_date("2030-06-01"));
        assert_eq!(plain_date("2023-02-29"), None);
    }

    /// What chrono alone reads of an instant.
    fn by_chrono(s: &str) -> Option<DateTime<Utc>> {
        DateTime::parse_from_rfc3339(s)
            .ok()
            .map(|t| t.with_timezone(&Utc))
    }

    #[test]
    fn stored_times_read_as_chrono_reads_them() {
        let start = DateTime::parse_from_rfc3339("1999-12-31T23:59:59.999Z").unwrap();
        let mut t = start.with_timezone(&Utc);
        for step in 0..20_000i64 {
            let text = iso_millis(t);
            assert!(
                iso_millis_fast(&text).is_some(),
                "{text} takes the fast path"
            );
            assert_eq!(parse_iso(&text), by_chrono(&text), "{text}");
            assert_eq!(parse_iso(&text), Some(t), "{text}");
            t += chrono::Duration::milliseconds((step % 97) * 3_600_007 + 1);
        }
        for other in [
            "2025-10-15T10:25:00Z",
            "2025-10-15T10:25:00.123+05:00",
            "2025-10-15t10:25:00.123z",
            "2016-12-31T23:59:60.500Z",
            "2025-02-29T10:25:00.000Z",
            "2025-13-01T00:00:00.000Z",
            "2025-10-15T24:00:00.000Z",
            "2025-10-15T10:25:00.1234Z",
            "2025-1a-15T10:25:00.000Z",
            "+025-10-15T10:25:00.000Z",
            "",
            "not a time",
        ] {
            assert_eq!(parse_iso(other), by_chrono(other), "{other:?}");
        }
        assert_eq!(
            iso_seconds(by_chrono("2030-06-01T10:00:00.700Z").unwrap()),
            "2030-06-01T10:00:00Z"
        );
    }
}
