//! How a row of a [`RowSet`](super::RowSet) is kept: a few bytes in the
//! byte string of its expiry day, its repeating texts as numbers into one
//! table of [`Texts`].
//!
//! A packed row: fetch time (i64 ms), days left (i32, `i32::MIN` for
//! none), reasons (u8), the ids of document type, document status, life
//! status and note (u32 each), then IIN, name and document number, each a
//! u16 length and its bytes, or [`LONG`] and a u32 id for a text of 64 KiB
//! or more. Numbers are little-endian. The expiry date is not in the row:
//! it is the day the row is kept under ([`day_key`]).

use std::collections::HashMap;

use chrono::{DateTime, Datelike as _, NaiveDate, Utc};

use gbdfl_core::expiry::{Reasons, RowRef};

/// Texts that repeat, once each, by number.
#[derive(Debug, Default)]
pub(super) struct Texts {
    list: Vec<Box<str>>,
    index: HashMap<Box<str>, u32>,
    /// The id last given for each kind of text (type, status, ...): most
    /// rows repeat the row before, and this spares hashing them.
    last: [Option<u32>; 4],
}

impl Texts {
    /// [`Texts::id`] for the `slot`-th kind of text.
    fn id_in(&mut self, slot: usize, s: &str) -> u32 {
        if let Some(i) = self.last[slot]
            && *self.list[i as usize] == *s
        {
            return i;
        }
        let i = self.id(s);
        self.last[slot] = Some(i);
        i
    }

    /// The number of `s`, given it now if it has none.
    fn id(&mut self, s: &str) -> u32 {
        if let Some(&i) = self.index.get(s) {
            return i;
        }
        let i = self.list.len() as u32;
        self.list.push(s.into());
        self.index.insert(s.into(), i);
        i
    }

    fn get(&self, i: u32) -> &str {
        &self.list[i as usize]
    }

    /// For each text of `other`, in its numbering, its number here (given
    /// one if it has none yet): what [`renumber`] takes.
    pub(super) fn take_in(&mut self, other: &Texts) -> Vec<u32> {
        other.list.iter().map(|t| self.id(t)).collect()
    }
}

/// The sort key of an expiry day: days from the common era with the sign
/// bit flipped (so it orders as a u32); no date is `u32::MAX`, last.
pub(super) fn day_key(d: Option<NaiveDate>) -> u32 {
    d.map_or(u32::MAX, |d| (d.num_days_from_ce() as u32) ^ (1 << 31))
}

fn key_day(k: u32) -> Option<NaiveDate> {
    (k != u32::MAX)
        .then(|| NaiveDate::from_num_days_from_ce_opt((k ^ (1 << 31)) as i32))
        .flatten()
}

/// The length of a packed row's fixed head, before its inline texts.
const HEAD: usize = 8 + 4 + 1 + 4 * 4;
/// Where the four text ids start in the head.
const IDS: usize = 13;
/// The length that marks an inline text kept in [`Texts`] instead.
const LONG: u16 = u16::MAX;
const NO_DAYS: i32 = i32::MIN;

fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

/// Packs `r` onto the end of `out`, its texts numbered in `texts`.
pub(super) fn pack(texts: &mut Texts, out: &mut Vec<u8>, r: &RowRef<'_>) {
    let ids = [
        texts.id_in(0, r.document_type),
        texts.id_in(1, r.document_status),
        texts.id_in(2, r.life_status),
        texts.id_in(3, r.note),
    ];
    out.extend_from_slice(&r.fetched_at.timestamp_millis().to_le_bytes());
    let days = r.days_left.map_or(NO_DAYS, |d| {
        d.clamp(NO_DAYS as i64 + 1, i32::MAX as i64) as i32
    });
    out.extend_from_slice(&days.to_le_bytes());
    out.push(r.reasons.bits());
    for id in ids {
        put_u32(out, id);
    }
    for t in [r.iin, r.full_name, r.document_number] {
        if t.len() >= LONG as usize {
            out.extend_from_slice(&LONG.to_le_bytes());
            put_u32(out, texts.id(t));
        } else {
            out.extend_from_slice(&(t.len() as u16).to_le_bytes());
            out.extend_from_slice(t.as_bytes());
        }
    }
}

/// Changes the text numbers of the packed row `b` (one row, whole) by
/// `ids`, old number to new ([`Texts::take_in`]).
pub(super) fn renumber(b: &mut [u8], ids: &[u32]) {
    for f in 0..4 {
        let o = IDS + 4 * f;
        let id = ids[u32_at(b, o) as usize];
        b[o..o + 4].copy_from_slice(&id.to_le_bytes());
    }
    let mut o = HEAD;
    for _ in 0..3 {
        let len = u16::from_le_bytes([b[o], b[o + 1]]);
        if len == LONG {
            let id = ids[u32_at(b, o + 2) as usize];
            b[o + 2..o + 6].copy_from_slice(&id.to_le_bytes());
            o += 6;
        } else {
            o += 2 + len as usize;
        }
    }
}

/// A row's inline text at `at`, as bytes: (bytes or long id, the offset
/// after it).
fn inline_bytes_at(b: &[u8], at: usize) -> (Result<&[u8], u32>, usize) {
    let len = u16::from_le_bytes([b[at], b[at + 1]]);
    if len == LONG {
        return (Err(u32_at(b, at + 2)), at + 6);
    }
    let end = at + 2 + len as usize;
    (Ok(&b[at + 2..end]), end)
}

/// A row's inline text at `at`: (text or long id, the offset after it).
fn inline_at(b: &[u8], at: usize) -> (Result<&str, u32>, usize) {
    let (bytes, end) = inline_bytes_at(b, at);
    // `pack` wrote these bytes from a &str, with its length in front, and
    // `RowSet::append` copies rows whole: they are checked, not trusted.
    let text = bytes.map(|t| std::str::from_utf8(t).expect("a row's text is UTF-8"));
    (text, end)
}

/// The row packed at `at` in `b`, the byte string of the day `key`.
pub(super) fn unpack<'a>(texts: &'a Texts, key: u32, b: &'a [u8], at: usize) -> RowRef<'a> {
    let fetched_ms = i64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"));
    let days = i32::from_le_bytes(b[at + 8..at + 12].try_into().expect("4 bytes"));
    let text = |t: Result<&'a str, u32>| t.unwrap_or_else(|id| texts.get(id));
    let (iin, o) = inline_at(b, at + HEAD);
    let (name, o) = inline_at(b, o);
    let (number, _) = inline_at(b, o);
    RowRef {
        iin: text(iin),
        full_name: text(name),
        document_type: texts.get(u32_at(b, at + IDS)),
        document_number: text(number),
        expiry_date: key_day(key),
        days_left: (days != NO_DAYS).then_some(i64::from(days)),
        document_status: texts.get(u32_at(b, at + IDS + 4)),
        life_status: texts.get(u32_at(b, at + IDS + 8)),
        fetched_at: DateTime::from_timestamp_millis(fetched_ms).unwrap_or(DateTime::<Utc>::MIN_UTC),
        reasons: Reasons::from_bits(b[at + 12]),
        note: texts.get(u32_at(b, at + IDS + 12)),
    }
}

/// What orders the rows of one day: IIN, document type and number. As
/// bytes, which order as their `str` does (UTF-8 keeps the order of code
/// points), so sorting checks no text: the rows' texts are checked once,
/// when read out ([`unpack`]).
pub(super) fn sort_fields<'a>(
    texts: &'a Texts,
    b: &'a [u8],
    at: usize,
) -> (&'a [u8], &'a [u8], &'a [u8]) {
    let text = |t: Result<&'a [u8], u32>| t.unwrap_or_else(|id| texts.get(id).as_bytes());
    let (iin, o) = inline_bytes_at(b, at + HEAD);
    let (_, o) = inline_bytes_at(b, o);
    let (number, _) = inline_bytes_at(b, o);
    (
        text(iin),
        texts.get(u32_at(b, at + IDS)).as_bytes(),
        text(number),
    )
}
