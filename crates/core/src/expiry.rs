//! The expiry rules: which documents of a person need attention and why, how
//! many days they have left, and the order they are listed in.
//!
//! Rules this module keeps: it is pure (no store, no clock, no service; the
//! day to count from is handed in), and it never drops a document silently:
//! one whose expiry date is missing or unreadable is always listed, with
//! `days_left` empty and a note saying why.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use chrono::{DateTime, Datelike as _, NaiveDate, Utc};
use serde::{Serialize, Serializer};

use crate::api::{self, Document, Person};

/// What `expiring` looks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rules {
    /// The day days are counted from ("today" unless `--as-of`).
    pub as_of: NaiveDate,
    /// Documents expiring within this many days of `as_of` are listed.
    pub within_days: i64,
}

impl Rules {
    /// From `--within` and `--as-of` (default `today`).
    pub fn parse(within: &str, as_of: Option<&str>, today: NaiveDate) -> Result<Rules, String> {
        Ok(Rules {
            as_of: as_of
                .map(|s| parse_day("--as-of", s))
                .transpose()?
                .unwrap_or(today),
            within_days: parse_window(within)?,
        })
    }
}

/// Why a row is listed. A row can have several reasons.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// The expiry date is before `as_of`.
    Expired,
    /// The expiry date is `as_of` or within the window after it.
    ExpiresSoon,
    /// The document's status is not "ДОКУМЕНТ ДЕЙСТВИТЕЛЕН".
    DocumentNotValid,
    /// The person's life status is not normal.
    LifeStatusNotNormal,
    /// The document has no expiry date.
    ExpiryDateMissing,
    /// The document's expiry date is not a date gbdfl can read.
    ExpiryDateUnreadable,
    /// The stored VALID answer has no person gbdfl can read.
    RecordUnreadable,
}

impl Reason {
    const ALL: [Reason; 7] = [
        Reason::Expired,
        Reason::ExpiresSoon,
        Reason::DocumentNotValid,
        Reason::LifeStatusNotNormal,
        Reason::ExpiryDateMissing,
        Reason::ExpiryDateUnreadable,
        Reason::RecordUnreadable,
    ];

    /// The stable snake_case code used in CSV and JSON.
    pub fn code(self) -> &'static str {
        match self {
            Reason::Expired => "expired",
            Reason::ExpiresSoon => "expires_soon",
            Reason::DocumentNotValid => "document_not_valid",
            Reason::LifeStatusNotNormal => "life_status_not_normal",
            Reason::ExpiryDateMissing => "expiry_date_missing",
            Reason::ExpiryDateUnreadable => "expiry_date_unreadable",
            Reason::RecordUnreadable => "record_unreadable",
        }
    }

    fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

/// A set of reasons in one byte, to keep sorted rows small.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Reasons(u8);

impl Reasons {
    pub fn add(&mut self, r: Reason) {
        self.0 |= r.bit();
    }

    pub fn has(self, r: Reason) -> bool {
        self.0 & r.bit() != 0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// One bit per reason, bit `i` for the `i`-th of [`Reason`]'s variants
    /// in declaration order (the HTML report's data keeps this form).
    pub fn bits(self) -> u8 {
        self.0
    }

    pub fn iter(self) -> impl Iterator<Item = Reason> {
        Reason::ALL.into_iter().filter(move |r| self.has(*r))
    }
}

/// Codes joined by a space: `expired document_not_valid`.
impl fmt::Display for Reasons {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let codes: Vec<&str> = self.iter().map(Reason::code).collect();
        f.write_str(&codes.join(" "))
    }
}

impl Serialize for Reasons {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.iter().map(Reason::code))
    }
}

/// One listed document (or person), compact: this is what `expiring` keeps
/// in memory to sort, never the whole record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Row {
    /// The IIN as it may be shown: masked unless the caller chose otherwise.
    pub iin: String,
    pub full_name: String,
    pub document_type: String,
    pub document_number: String,
    pub expiry_date: Option<NaiveDate>,
    pub days_left: Option<i64>,
    pub document_status: String,
    pub life_status: String,
    #[serde(serialize_with = "iso_seconds")]
    pub fetched_at: DateTime<Utc>,
    pub reasons: Reasons,
    pub note: String,
}

impl Row {
    /// The row borrowed.
    pub fn as_ref(&self) -> RowRef<'_> {
        RowRef {
            iin: &self.iin,
            full_name: &self.full_name,
            document_type: &self.document_type,
            document_number: &self.document_number,
            expiry_date: self.expiry_date,
            days_left: self.days_left,
            document_status: &self.document_status,
            life_status: &self.life_status,
            fetched_at: self.fetched_at,
            reasons: self.reasons,
            note: &self.note,
        }
    }
}

/// UTC, ISO 8601 to the second: `2030-06-01T10:00:00Z`.
pub fn iso(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn iso_seconds<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&iso(*t))
}

/// How a row should stand out on a terminal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Urgency {
    Expired,
    /// Expires within [`URGENT_DAYS`].
    Urgent,
    Normal,
}

/// Documents with this many days left or fewer stand out.
pub const URGENT_DAYS: i64 = 30;

impl Row {
    pub fn urgency(&self) -> Urgency {
        urgency(self.days_left)
    }
}

/// How a row with `days_left` should stand out.
fn urgency(days_left: Option<i64>) -> Urgency {
    match days_left {
        Some(d) if d < 0 => Urgency::Expired,
        Some(d) if d <= URGENT_DAYS => Urgency::Urgent,
        _ => Urgency::Normal,
    }
}

fn trimmed(v: &Option<String>) -> &str {
    v.as_deref().map(str::trim).unwrap_or("")
}

/// The rows to list for one person's latest VALID record: every document
/// that expired, expires within the window, is not valid, or has no readable
/// expiry date; every document of a person whose life status is not normal
/// (one row without a document if they have none); one row for a record
/// with no readable person.
pub fn check(
    iin: &str,
    person: Option<&Person>,
    fetched_at: DateTime<Utc>,
    rules: &Rules,
) -> Vec<Row> {
    let mut rows = Vec::new();
    check_each(iin, person, fetched_at, rules, |r| rows.push(r.to_row()));
    rows
}

/// [`check`], handing each row to `f` borrowed instead of collecting owned
/// rows: the expiry scan packs them straight into a [`RowSet`].
pub fn check_each(
    iin: &str,
    person: Option<&Person>,
    fetched_at: DateTime<Utc>,
    rules: &Rules,
    mut f: impl FnMut(RowRef<'_>),
) {
    let blank = |reasons: Reasons,
                 note: &'static str,
                 name: &str,
                 life: &str,
                 f: &mut dyn FnMut(RowRef<'_>)| {
        f(RowRef {
            iin,
            full_name: name,
            document_type: "",
            document_number: "",
            expiry_date: None,
            days_left: None,
            document_status: "",
            life_status: life,
            fetched_at,
            reasons,
            note,
        })
    };
    let Some(p) = person else {
        let mut r = Reasons::default();
        r.add(Reason::RecordUnreadable);
        let note = "the stored answer has no person gbdfl can read; see `gbdfl show IIN --json`";
        return blank(r, note, "", "", &mut f);
    };
    let life_abnormal = !p.life_status_is_normal();
    let (name, life) = (p.full_name(), trimmed(&p.life_status));
    if p.documents.is_empty() {
        if life_abnormal {
            let mut r = Reasons::default();
            r.add(Reason::LifeStatusNotNormal);
            blank(r, "no documents in the record", &name, life, &mut f);
        }
        return;
    }
    for d in &p.documents {
        let (expiry_date, days_left, mut reasons, note) = document_expiry(d, rules);
        if !d.status_is_valid() {
            reasons.add(Reason::DocumentNotValid);
        }
        if life_abnormal {
            reasons.add(Reason::LifeStatusNotNormal);
        }
        if !reasons.is_empty() {
            f(RowRef {
                iin,
                full_name: &name,
                document_type: trimmed(&d.kind),
                document_number: trimmed(&d.number),
                expiry_date,
                days_left,
                document_status: trimmed(&d.status),
                life_status: life,
                fetched_at,
                reasons,
                note: &note,
            });
        }
    }
}

/// Expiry date, days left, the expiry reasons and a note for one document.
fn document_expiry(
    d: &Document,
    rules: &Rules,
) -> (Option<NaiveDate>, Option<i64>, Reasons, String) {
    let mut reasons = Reasons::default();
    let raw = d.expiry_date.as_deref().map(str::trim).unwrap_or("");
    if raw.is_empty() {
        reasons.add(Reason::ExpiryDateMissing);
        return (None, None, reasons, "no expiry date in the record".into());
    }
    let Some(date) = plain_date(raw).or_else(|| api::parse_date(raw)) else {
        reasons.add(Reason::ExpiryDateUnreadable);
        let note = format!("expiry date {raw:?} is not a date gbdfl can read");
        return (None, None, reasons, note);
    };
    let days = (date - rules.as_of).num_days();
    if days < 0 {
        reasons.add(Reason::Expired);
    } else if days <= rules.within_days {
        reasons.add(Reason::ExpiresSoon);
    }
    (Some(date), Some(days), reasons, String::new())
}

/// `YYYY-MM-DD`, the form nearly every stored date has, read without
/// chrono's format parser (a third of the expiry scan's time went there);
/// anything else is left to [`api::parse_date`], which reads it the same way.
fn plain_date(s: &str) -> Option<NaiveDate> {
    let b = s.as_bytes();
    let digits = |r: std::ops::Range<usize>| api::ascii_number(&b[r]);
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    NaiveDate::from_ymd_opt(digits(0..4)? as i32, digits(5..7)?, digits(8..10)?)
}

/// Sorts by expiry date, earliest first; rows without a date come last.
/// Ties go by IIN, document type and number, so the order is the same on
/// every run.
pub fn sort(rows: &mut [Row]) {
    rows.sort_by(|a, b| {
        (a.expiry_date.is_none(), a.expiry_date)
            .cmp(&(b.expiry_date.is_none(), b.expiry_date))
            .then_with(|| a.iin.cmp(&b.iin))
            .then_with(|| a.document_type.cmp(&b.document_type))
            .then_with(|| a.document_number.cmp(&b.document_number))
    });
}

/// Many [`Row`]s kept compactly and sorted: `expiring` over a million
/// people lists most of a million documents, and a `Row` of owned strings
/// each would take several hundred megabytes.
///
/// Rows are kept by expiry day, as they come: each day is one byte string
/// of packed rows (IIN, name and document number inline; document type,
/// statuses and notes, which repeat, as numbers into one table of texts).
/// Sorting is then a small sort within each day, and reading the sorted
/// rows walks memory in order. (Before, one arena in push order was read
/// in sorted order: a cache and TLB miss per text, the report's largest
/// cost at a million rows.)
#[derive(Debug, Default)]
pub struct RowSet {
    texts: Texts,
    /// Day key ([`day_key`]) to the rows expiring that day.
    days: BTreeMap<u32, Day>,
    len: usize,
}

/// The rows of one expiry day.
#[derive(Debug, Default)]
struct Day {
    bytes: Vec<u8>,
    /// Where each row starts in `bytes`: push order, then sorted order.
    starts: Vec<u32>,
}

/// Texts that repeat, once each, by number.
#[derive(Debug, Default)]
struct Texts {
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
}

/// The sort key of an expiry day: days from the common era with the sign
/// bit flipped (so it orders as a u32); no date is `u32::MAX`, last.
fn day_key(d: Option<NaiveDate>) -> u32 {
    d.map_or(u32::MAX, |d| (d.num_days_from_ce() as u32) ^ (1 << 31))
}

fn key_day(k: u32) -> Option<NaiveDate> {
    (k != u32::MAX)
        .then(|| NaiveDate::from_num_days_from_ce_opt((k ^ (1 << 31)) as i32))
        .flatten()
}

/// A packed row: fetch time (i64 ms), days left (i32, `i32::MIN` for
/// none), reasons (u8), the ids of document type, document status, life
/// status and note (u32 each), then IIN, name and document number, each a
/// u16 length and its bytes, or [`LONG`] and a u32 id for a text of 64 KiB
/// or more.
const HEAD: usize = 8 + 4 + 1 + 4 * 4;
const LONG: u16 = u16::MAX;
const NO_DAYS: i32 = i32::MIN;

fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
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
    // `push_row` wrote these bytes from a &str, with its length in front,
    // and `append` copies rows whole: they are checked, not trusted.
    let text = bytes.map(|t| std::str::from_utf8(t).expect("a row's text is UTF-8"));
    (text, end)
}

/// What orders the rows of one day: IIN, document type and number. As
/// bytes, which order as their `str` does (UTF-8 keeps the order of code
/// points), so sorting checks no text: the rows' texts are checked once,
/// when read out ([`RowSet::row_at`]).
fn sort_fields<'a>(texts: &'a Texts, b: &'a [u8], at: usize) -> (&'a [u8], &'a [u8], &'a [u8]) {
    let text = |t: Result<&'a [u8], u32>| t.unwrap_or_else(|id| texts.get(id).as_bytes());
    let (iin, o) = inline_bytes_at(b, at + HEAD);
    let (_, o) = inline_bytes_at(b, o);
    let (number, _) = inline_bytes_at(b, o);
    (
        text(iin),
        texts.get(u32_at(b, at + 13)).as_bytes(),
        text(number),
    )
}

/// A row of a [`RowSet`], borrowed: the texts stay in the set.
#[derive(Debug, Clone, Copy)]
pub struct RowRef<'a> {
    pub iin: &'a str,
    pub full_name: &'a str,
    pub document_type: &'a str,
    pub document_number: &'a str,
    pub expiry_date: Option<NaiveDate>,
    pub days_left: Option<i64>,
    pub document_status: &'a str,
    pub life_status: &'a str,
    pub fetched_at: DateTime<Utc>,
    pub reasons: Reasons,
    pub note: &'a str,
}

impl RowRef<'_> {
    pub fn urgency(&self) -> Urgency {
        urgency(self.days_left)
    }

    pub fn to_row(&self) -> Row {
        Row {
            iin: self.iin.to_owned(),
            full_name: self.full_name.to_owned(),
            document_type: self.document_type.to_owned(),
            document_number: self.document_number.to_owned(),
            expiry_date: self.expiry_date,
            days_left: self.days_left,
            document_status: self.document_status.to_owned(),
            life_status: self.life_status.to_owned(),
            fetched_at: self.fetched_at,
            reasons: self.reasons,
            note: self.note.to_owned(),
        }
    }
}

/// Rows of a sorted [`RowSet`] in order: a run of them, for one worker.
#[derive(Debug, Clone)]
pub struct RowRun<'a> {
    set: &'a RowSet,
    /// (day key, the day, which of its rows)
    parts: Vec<(u32, &'a Day, std::ops::Range<usize>)>,
}

impl<'a> RowRun<'a> {
    pub fn iter(&self) -> impl Iterator<Item = RowRef<'a>> + '_ {
        self.parts.iter().flat_map(move |(key, day, range)| {
            day.starts[range.clone()]
                .iter()
                .map(move |&at| self.set.row_at(*key, day, at as usize))
        })
    }
}

impl RowSet {
    pub fn new() -> RowSet {
        RowSet::default()
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Adds the rows of one person (as [`check`] made them), in order.
    pub fn push_person(&mut self, rows: Vec<Row>) {
        for r in &rows {
            self.push_row(&r.as_ref());
        }
    }

    /// Adds one row.
    pub fn push_row(&mut self, r: &RowRef<'_>) {
        let ids = [
            self.texts.id_in(0, r.document_type),
            self.texts.id_in(1, r.document_status),
            self.texts.id_in(2, r.life_status),
            self.texts.id_in(3, r.note),
        ];
        let long = [r.iin, r.full_name, r.document_number]
            .map(|t| (t.len() >= LONG as usize).then(|| self.texts.id(t)));
        let day = self.days.entry(day_key(r.expiry_date)).or_default();
        let out = &mut day.bytes;
        day.starts.push(out.len() as u32);
        out.extend_from_slice(&r.fetched_at.timestamp_millis().to_le_bytes());
        let days = r.days_left.map_or(NO_DAYS, |d| {
            d.clamp(NO_DAYS as i64 + 1, i32::MAX as i64) as i32
        });
        out.extend_from_slice(&days.to_le_bytes());
        out.push(r.reasons.0);
        for id in ids {
            put_u32(out, id);
        }
        for (t, long) in [r.iin, r.full_name, r.document_number]
            .into_iter()
            .zip(long)
        {
            match long {
                Some(id) => {
                    out.extend_from_slice(&LONG.to_le_bytes());
                    put_u32(out, id);
                }
                None => {
                    out.extend_from_slice(&(t.len() as u16).to_le_bytes());
                    out.extend_from_slice(t.as_bytes());
                }
            }
        }
        self.len += 1;
    }

    /// Moves every row of `part` to the end of this set, in its order: the
    /// workers of a scan each fill a set of their own, and the scan joins
    /// them in walk order. Rows are copied once, day by day; their text
    /// numbers are changed to this set's.
    pub fn append(&mut self, part: RowSet) {
        let ids: Vec<u32> = part.texts.list.iter().map(|t| self.texts.id(t)).collect();
        for (key, from) in part.days {
            let to = self.days.entry(key).or_default();
            for (i, &at) in from.starts.iter().enumerate() {
                let at = at as usize;
                let end = from
                    .starts
                    .get(i + 1)
                    .map_or(from.bytes.len(), |&e| e as usize);
                let row = &from.bytes[at..end];
                let start = to.bytes.len();
                to.starts.push(start as u32);
                to.bytes.extend_from_slice(row);
                let b = &mut to.bytes[start..];
                for f in 0..4 {
                    let o = 13 + 4 * f;
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
            self.len += from.starts.len();
        }
    }

    /// The row of `day` starting at `at`.
    fn row_at<'a>(&'a self, key: u32, day: &'a Day, at: usize) -> RowRef<'a> {
        let b = &day.bytes;
        let fetched_ms = i64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"));
        let days = i32::from_le_bytes(b[at + 8..at + 12].try_into().expect("4 bytes"));
        let text = |t: Result<&'a str, u32>| t.unwrap_or_else(|id| self.texts.get(id));
        let (iin, o) = inline_at(b, at + HEAD);
        let (name, o) = inline_at(b, o);
        let (number, _) = inline_at(b, o);
        RowRef {
            iin: text(iin),
            full_name: text(name),
            document_type: self.texts.get(u32_at(b, at + 13)),
            document_number: text(number),
            expiry_date: key_day(key),
            days_left: (days != NO_DAYS).then_some(i64::from(days)),
            document_status: self.texts.get(u32_at(b, at + 17)),
            life_status: self.texts.get(u32_at(b, at + 21)),
            fetched_at: DateTime::from_timestamp_millis(fetched_ms)
                .unwrap_or(DateTime::<Utc>::MIN_UTC),
            reasons: Reasons(b[at + 12]),
            note: self.texts.get(u32_at(b, at + 25)),
        }
    }

    /// Sorts as [`sort`] does (equal rows keep the order they were pushed
    /// in), each day on its own, on the current rayon pool.
    pub fn sort(&mut self) {
        use rayon::prelude::*;
        let days: Vec<(u32, Day)> = std::mem::take(&mut self.days).into_iter().collect();
        let days: Vec<(u32, Day)> = days
            .into_par_iter()
            .map(|(key, mut day)| {
                // What orders rows within a day: the IIN, the document type
                // and number; most comparisons are settled by the IIN's
                // first 12 bytes, taken once per row.
                let b = &day.bytes;
                let texts = &self.texts;
                let fields = |at: u32| sort_fields(texts, b, at as usize);
                let mut keyed: Vec<([u8; 12], u32)> = day
                    .starts
                    .iter()
                    .map(|&at| {
                        let mut k = [0u8; 12];
                        let iin = fields(at).0;
                        k[..iin.len().min(12)].copy_from_slice(&iin[..iin.len().min(12)]);
                        (k, at)
                    })
                    .collect();
                // Stable: ties keep push order.
                keyed.sort_by(|(ka, a), (kb, b)| {
                    ka.cmp(kb).then_with(|| fields(*a).cmp(&fields(*b)))
                });
                day.starts = keyed.into_iter().map(|(_, at)| at).collect();
                (key, day)
            })
            .collect();
        self.days = days.into_iter().collect();
    }

    /// Every row, borrowed, in sorted order (after [`RowSet::sort`]).
    pub fn iter_ref(&self) -> impl Iterator<Item = RowRef<'_>> + '_ {
        self.days.iter().flat_map(move |(&key, day)| {
            day.starts
                .iter()
                .map(move |&at| self.row_at(key, day, at as usize))
        })
    }

    /// Every row, in sorted order, one `Row` at a time.
    pub fn iter(&self) -> impl Iterator<Item = Row> + '_ {
        self.iter_ref().map(|r| r.to_row())
    }

    /// The rows in order, as runs of about `rows` rows each.
    pub fn runs(&self, rows: usize) -> Vec<RowRun<'_>> {
        let rows = rows.max(1);
        let mut runs = Vec::new();
        let mut run = RowRun {
            set: self,
            parts: Vec::new(),
        };
        let mut filled = 0;
        for (&key, day) in &self.days {
            let mut from = 0;
            while from < day.starts.len() {
                let take = (rows - filled).min(day.starts.len() - from);
                run.parts.push((key, day, from..from + take));
                from += take;
                filled += take;
                if filled == rows {
                    runs.push(std::mem::replace(
                        &mut run,
                        RowRun {
                            set: self,
                            parts: Vec::new(),
                        },
                    ));
                    filled = 0;
                }
            }
        }
        if !run.parts.is_empty() {
            runs.push(run);
        }
        runs
    }
}

/// Rows per run that [`RowSet::lay_out_in_order`]'s callers lay out at a
/// time: about 0.75 MB of report text, so the two windows of `2 * threads`
/// runs held at once stay small.
pub const RUN_ROWS: usize = 4096;

impl RowSet {
    /// Lays the sorted rows out on `pool`, in runs of about `rows` rows
    /// (`make`), and hands each run's result to `put` in order, on the
    /// calling thread. A window of two runs per worker is laid out while
    /// the window before it is handed over: writing a report's text no
    /// longer waits for its layout, nor its layout for the writing (the
    /// workers stood idle for a third of the writing). At most two windows
    /// are held at once.
    pub fn lay_out_in_order<'s, T: Send, E>(
        &'s self,
        pool: &rayon::ThreadPool,
        rows: usize,
        make: impl Fn(&RowRun<'s>) -> T + Sync,
        mut put: impl FnMut(T) -> Result<(), E>,
    ) -> Result<(), E> {
        use rayon::prelude::*;
        let runs = self.runs(rows);
        let mut laid_out: Vec<T> = Vec::new();
        for window in runs.chunks(2 * pool.current_num_threads()) {
            let mut next = Vec::new();
            let mut handed = Ok(());
            pool.in_place_scope(|s| {
                s.spawn(|_| next = window.par_iter().map(&make).collect());
                handed = laid_out.drain(..).try_for_each(&mut put);
            });
            handed?;
            laid_out = next;
        }
        laid_out.into_iter().try_for_each(put)
    }
}

/// Serialises as the JSON array of its rows, one row in memory at a time.
impl Serialize for RowSet {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.iter())
    }
}

/// A person whose latest VALID record is older than asked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StaleRow {
    pub iin: String,
    pub full_name: String,
    #[serde(serialize_with = "iso_seconds")]
    pub fetched_at: DateTime<Utc>,
    /// Whole days between the fetch and `now`.
    pub age_days: i64,
}

/// Whether a record fetched at `fetched_at` is older than `max_age` at `now`.
pub fn is_stale(fetched_at: DateTime<Utc>, now: DateTime<Utc>, max_age: chrono::Duration) -> bool {
    now - fetched_at > max_age
}

/// Oldest first; ties by IIN.
pub fn sort_stale(rows: &mut [StaleRow]) {
    rows.sort_by(|a, b| {
        a.fetched_at
            .cmp(&b.fetched_at)
            .then_with(|| a.iin.cmp(&b.iin))
    });
}

/// Parses `--within`: a duration (`90d`, `12weeks`) or a bare number of
/// days; partial days are dropped.
pub fn parse_window(s: &str) -> Result<i64, String> {
    crate::limits::parse_days("--within", s, crate::limits::WITHIN).map_err(|e| e.message)
}

/// Parses a calendar day given as `YYYY-MM-DD`, with a four-digit year.
pub fn parse_day(flag: &str, s: &str) -> Result<NaiveDate, String> {
    crate::limits::parse_date(flag, s).map_err(|e| e.message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn day(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    fn doc(kind: &str, expiry: Option<&str>, status: &str) -> Document {
        Document {
            kind: Some(kind.into()),
            number: Some(format!("N-{kind}")),
            expiry_date: expiry.map(str::to_owned),
            status: Some(status.into()),
            ..Document::default()
        }
    }

    fn person(life: &str, docs: Vec<Document>) -> Person {
        Person {
            surname: Some("Нурланов".into()),
            name: Some("Асхат".into()),
            life_status: Some(life.into()),
            documents: docs,
            ..Person::default()
        }
    }

    const OK: &str = "ДОКУМЕНТ ДЕЙСТВИТЕЛЕН";
    const RULES: Rules = Rules {
        as_of: NaiveDate::from_ymd_opt(2030, 7, 1).unwrap(),
        within_days: 90,
    };

    fn at() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2030, 6, 1, 10, 0, 0).unwrap()
    }

    fn codes(r: &Row) -> String {
        r.reasons.to_string()
    }

    #[test]
    fn plain_dates_read_as_the_api_reads_them() {
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
                assert_eq!(fast, api::parse_date(s), "{s:?}");
            }
        }
        assert_eq!(plain_date("2030-06-01"), Some(day("2030-06-01")));
        assert_eq!(plain_date("2023-02-29"), None);
    }

    #[test]
    fn expired_soon_and_far_documents() {
        let p = person(
            "Нормальный",
            vec![
                doc("past", Some("2030-06-30"), OK),
                doc("today", Some("2030-07-01"), OK),
                doc("edge", Some("2030-09-29"), OK),
                doc("beyond", Some("2030-09-30"), OK),
            ],
        );
        let rows = check("950215*****6", Some(&p), at(), &RULES);
        let got: Vec<(&str, Option<i64>, String)> = rows
            .iter()
            .map(|r| (r.document_type.as_str(), r.days_left, codes(r)))
            .collect();
        assert_eq!(
            got,
            vec![
                ("past", Some(-1), "expired".into()),
                ("today", Some(0), "expires_soon".into()),
                ("edge", Some(90), "expires_soon".into()),
            ]
        );
        assert_eq!(rows[0].urgency(), Urgency::Expired);
        assert_eq!(rows[1].urgency(), Urgency::Urgent);
        assert_eq!(rows[2].urgency(), Urgency::Normal);
        assert_eq!(rows[0].full_name, "Нурланов Асхат");
    }

    #[test]
    fn every_date_shape_is_read() {
        for shape in [
            "2030-08-15",
            "2030-08-15T00:00:00+06:00",
            "2030-08-15+06:00",
            "15.08.2030",
        ] {
            let p = person("Нормальный", vec![doc("ID", Some(shape), OK)]);
            let rows = check("x", Some(&p), at(), &RULES);
            assert_eq!(rows.len(), 1, "{shape}");
            assert_eq!(rows[0].expiry_date, Some(day("2030-08-15")), "{shape}");
            assert_eq!(rows[0].days_left, Some(45), "{shape}");
        }
    }

    #[test]
    fn missing_and_unreadable_dates_are_listed_with_a_note() {
        let p = person(
            "Нормальный",
            vec![
                doc("none", None, OK),
                doc("blank", Some("  "), OK),
                doc("words", Some("бессрочно"), OK),
            ],
        );
        let rows = check("x", Some(&p), at(), &RULES);
        assert_eq!(rows.len(), 3, "never dropped");
        for r in &rows {
            assert_eq!(r.days_left, None);
            assert_eq!(r.expiry_date, None);
            assert!(!r.note.is_empty());
        }
        assert_eq!(codes(&rows[0]), "expiry_date_missing");
        assert_eq!(codes(&rows[1]), "expiry_date_missing");
        assert_eq!(codes(&rows[2]), "expiry_date_unreadable");
        assert!(rows[2].note.contains("\"бессрочно\""), "{}", rows[2].note);
    }

    #[test]
    fn invalid_status_and_abnormal_life_status_list_every_document() {
        let p = person(
            "Умерший",
            vec![
                doc("ID", Some("2032-04-01"), "ДОКУМЕНТ НЕДЕЙСТВИТЕЛЕН"),
                doc("PASSPORT", Some("2014-05-20"), OK),
            ],
        );
        let rows = check("x", Some(&p), at(), &RULES);
        assert_eq!(rows.len(), 2);
        assert_eq!(codes(&rows[0]), "document_not_valid life_status_not_normal");
        assert_eq!(codes(&rows[1]), "expired life_status_not_normal");
        assert_eq!(rows[0].life_status, "Умерший");

        let fine = person("Нормальный", vec![doc("ID", Some("2040-01-01"), OK)]);
        assert!(check("x", Some(&fine), at(), &RULES).is_empty());
        let no_docs = person("Нормальный", vec![]);
        assert!(check("x", Some(&no_docs), at(), &RULES).is_empty());
        let dead_no_docs = person("Умерший", vec![]);
        let rows = check("x", Some(&dead_no_docs), at(), &RULES);
        assert_eq!(rows.len(), 1);
        assert_eq!(codes(&rows[0]), "life_status_not_normal");
        assert_eq!(rows[0].document_type, "");
    }

    #[test]
    fn a_record_without_a_person_is_listed() {
        let rows = check("x", None, at(), &RULES);
        assert_eq!(rows.len(), 1);
        assert_eq!(codes(&rows[0]), "record_unreadable");
    }

    #[test]
    fn sorted_by_expiry_with_undated_rows_last() {
        let p = person(
            "Нормальный",
            vec![
                doc("c", None, OK),
                doc("b", Some("2030-08-01"), OK),
                doc("a", Some("2030-07-05"), OK),
            ],
        );
        let mut rows = check("y", Some(&p), at(), &RULES);
        rows.extend(check(
            "x",
            Some(&person(
                "Нормальный",
                vec![doc("d", Some("2030-08-01"), OK)],
            )),
            at(),
            &RULES,
        ));
        sort(&mut rows);
        let order: Vec<&str> = rows.iter().map(|r| r.document_type.as_str()).collect();
        assert_eq!(order, ["a", "d", "b", "c"]);
    }

    #[test]
    fn json_shape_uses_the_csv_names() {
        let p = person("Нормальный", vec![doc("ID", Some("2030-07-05"), OK)]);
        let rows = check("950215*****6", Some(&p), at(), &RULES);
        let v = serde_json::to_value(&rows[0]).unwrap();
        assert_eq!(v["expiry_date"], "2030-07-05");
        assert_eq!(v["days_left"], 4);
        assert_eq!(v["fetched_at"], "2030-06-01T10:00:00Z");
        assert_eq!(v["reasons"], serde_json::json!(["expires_soon"]));
    }

    #[test]
    fn stale_and_options() {
        let now = at();
        let week = chrono::Duration::days(7);
        assert!(is_stale(now - chrono::Duration::days(8), now, week));
        assert!(!is_stale(now - chrono::Duration::days(6), now, week));
        assert_eq!(parse_window("90d"), Ok(90));
        assert_eq!(parse_window("30"), Ok(30));
        assert_eq!(parse_window("2weeks"), Ok(14));
        assert!(parse_window("soon").is_err());
        assert!(parse_window("-3").is_err());
        assert_eq!(parse_day("--as-of", "2030-07-01"), Ok(day("2030-07-01")));
        assert!(parse_day("--as-of", "01.07.2030").is_err());
    }

    #[test]
    fn a_row_set_gives_back_its_rows_and_sorts_like_sort() {
        let long = "Ж".repeat(600_000);
        let mut all = Vec::new();
        let mut set = RowSet::new();
        let mut parts = vec![RowSet::new()];
        for n in 0..400u32 {
            let mut docs = vec![
                doc(
                    "ID",
                    Some(&format!("2030-{:02}-{:02}", 7 + n % 3, 1 + n % 28)),
                    OK,
                ),
                doc(
                    "PASSPORT",
                    Some(if n % 5 == 0 {
                        "бессрочно"
                    } else {
                        "2030-07-02"
                    }),
                    OK,
                ),
            ];
            if n == 7 {
                docs[0].number = Some(long.clone());
            }
            let rows = check(
                &format!("{:012}", (n * 7919) % 1000),
                Some(&person("Умерший", docs)),
                at(),
                &RULES,
            );
            all.extend(rows.clone());
            // In parts, as the workers of a scan fill them.
            parts.last_mut().unwrap().push_person(rows);
            if n % 97 == 0 {
                parts.push(RowSet::new());
            }
        }
        for part in parts {
            set.append(part);
        }
        assert_eq!(set.len(), all.len());
        sort(&mut all);
        set.sort();
        assert_eq!(set.iter().collect::<Vec<_>>(), all, "sorted order");
        assert!(all.iter().any(|r| r.document_number == long));
        // Runs of any length give the same rows in the same order.
        for len in [1, 7, 1000] {
            let runs: Vec<Row> = set
                .runs(len)
                .iter()
                .flat_map(|r| r.iter().map(|r| r.to_row()).collect::<Vec<_>>())
                .collect();
            assert_eq!(runs, all, "runs of {len}");
        }
        // Laid out on any number of workers, handed over in order; a
        // failing hand-over stops there.
        for threads in [1, 2, 3] {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            for len in [1, 7, 1000] {
                let mut got = Vec::new();
                set.lay_out_in_order(
                    &pool,
                    len,
                    |run| run.iter().map(|r| r.to_row()).collect::<Vec<_>>(),
                    |rows| {
                        got.extend(rows);
                        Ok::<_, ()>(())
                    },
                )
                .unwrap();
                assert_eq!(got, all, "{threads} workers, runs of {len}");
                let mut handed = 0;
                let stopped = set.lay_out_in_order(
                    &pool,
                    len,
                    |run| run.iter().count(),
                    |n| {
                        handed += n;
                        if handed >= 100 { Err(handed) } else { Ok(()) }
                    },
                );
                assert_eq!(stopped, Err(handed), "{threads} workers, runs of {len}");
                // The first run that brings the count to 100 is the last
                // handed over.
                let mut upto = 0;
                let want = set
                    .runs(len)
                    .iter()
                    .map(|r| r.iter().count())
                    .find_map(|n| {
                        upto += n;
                        (upto >= 100).then_some(upto)
                    })
                    .unwrap();
                assert_eq!(handed, want, "stopped at the first failure");
            }
        }
    }
}
