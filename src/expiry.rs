//! The expiry rules: which documents of a person need attention and why, how
//! many days they have left, and the order they are listed in.
//!
//! Rules this module keeps: it is pure (no store, no clock, no service; the
//! day to count from is handed in), and it never drops a document silently:
//! one whose expiry date is missing or unreadable is always listed, with
//! `days_left` empty and a note saying why.

use std::fmt;

use chrono::{DateTime, NaiveDate, Utc};
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
        match self.days_left {
            Some(d) if d < 0 => Urgency::Expired,
            Some(d) if d <= URGENT_DAYS => Urgency::Urgent,
            _ => Urgency::Normal,
        }
    }
}

fn trimmed(v: &Option<String>) -> String {
    v.as_deref().map(str::trim).unwrap_or("").to_owned()
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
    let blank = |reasons: Reasons, note: &str, name: String, life: String| Row {
        iin: iin.to_owned(),
        full_name: name,
        document_type: String::new(),
        document_number: String::new(),
        expiry_date: None,
        days_left: None,
        document_status: String::new(),
        life_status: life,
        fetched_at,
        reasons,
        note: note.to_owned(),
    };
    let Some(p) = person else {
        let mut r = Reasons::default();
        r.add(Reason::RecordUnreadable);
        let note = "the stored answer has no person gbdfl can read; see `gbdfl show IIN --json`";
        return vec![blank(r, note, String::new(), String::new())];
    };
    let life_abnormal = !p.life_status_is_normal();
    let (name, life) = (p.full_name(), trimmed(&p.life_status));
    if p.documents.is_empty() {
        if !life_abnormal {
            return Vec::new();
        }
        let mut r = Reasons::default();
        r.add(Reason::LifeStatusNotNormal);
        return vec![blank(r, "no documents in the record", name, life)];
    }
    p.documents
        .iter()
        .filter_map(|d| {
            let (expiry_date, days_left, mut reasons, note) = document_expiry(d, rules);
            if !d.status_is_valid() {
                reasons.add(Reason::DocumentNotValid);
            }
            if life_abnormal {
                reasons.add(Reason::LifeStatusNotNormal);
            }
            (!reasons.is_empty()).then(|| Row {
                iin: iin.to_owned(),
                full_name: name.clone(),
                document_type: trimmed(&d.kind),
                document_number: trimmed(&d.number),
                expiry_date,
                days_left,
                document_status: trimmed(&d.status),
                life_status: life.clone(),
                fetched_at,
                reasons,
                note,
            })
        })
        .collect()
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
    let Some(date) = api::parse_date(raw) else {
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

/// Many [`Row`]s kept compactly for sorting: `expiring` over a million
/// people lists most of a million documents, and a `Row` of owned strings
/// each would take several hundred megabytes. Here every text lives once in
/// an arena of 1 MiB chunks (no per-string allocation), repeated texts
/// (document types, statuses, notes) once in all, and a person's IIN, name,
/// life status and fetch time once per person. [`RowSet::get`] gives back
/// exactly the `Row` that was pushed.
#[derive(Debug, Default)]
pub struct RowSet {
    chunks: Vec<String>,
    /// The chunk being filled, if any.
    open: Option<usize>,
    /// Texts that repeat (document types, statuses, notes): few, so a
    /// short list searched from the front beats hashing; once full, new
    /// texts are simply stored again.
    common: Vec<(Text, u64)>,
    persons: Vec<PersonRef>,
    rows: Vec<Packed>,
    order: Vec<u32>,
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

/// A text in the arena, in 8 bytes: chunk (24 bits), start (20 bits) and
/// length (20 bits); length [`WHOLE`] means a chunk of its own holding
/// just this text (one of 1 MiB or more).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Text(u64);

const WHOLE: u64 = 0xF_FFFF;

fn text_of(chunks: &[String], t: Text) -> &str {
    let chunk = &chunks[(t.0 >> 40) as usize];
    let (start, len) = (((t.0 >> 20) & 0xF_FFFF) as usize, t.0 & 0xF_FFFF);
    if len == WHOLE {
        chunk
    } else {
        &chunk[start..start + len as usize]
    }
}

#[derive(Debug)]
struct PersonRef {
    /// The IIN's first 16 bytes, zero-padded: compares as the text does
    /// (IINs as shown are 12 ASCII characters; longer ones tie and fall
    /// back to the text).
    iin_key: [u8; 16],
    iin: Text,
    full_name: Text,
    life_status: Text,
    /// Milliseconds since 1970 (stored times have milliseconds).
    fetched_ms: i64,
}

#[derive(Debug)]
struct Packed {
    person: u32,
    document_type: Text,
    document_number: Text,
    document_status: Text,
    note: Text,
    expiry_date: Option<NaiveDate>,
    days_left: Option<i32>,
    reasons: Reasons,
}

const CHUNK: usize = 1 << 20;

impl RowSet {
    pub fn new() -> RowSet {
        RowSet::default()
    }

    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    fn add(&mut self, s: &str) -> Text {
        if s.len() as u64 >= WHOLE {
            self.chunks.push(s.to_owned());
            return Text(((self.chunks.len() - 1) as u64) << 40 | WHOLE);
        }
        let i = match self.open {
            Some(i) if CHUNK - self.chunks[i].len() >= s.len() => i,
            _ => {
                self.chunks.push(String::with_capacity(CHUNK));
                self.open = Some(self.chunks.len() - 1);
                self.chunks.len() - 1
            }
        };
        let c = &mut self.chunks[i];
        let start = c.len();
        c.push_str(s);
        Text((i as u64) << 40 | (start as u64) << 20 | s.len() as u64)
    }

    fn add_common(&mut self, s: &str) -> Text {
        const MAX: usize = 64;
        let chunks = &self.chunks;
        if let Some((t, hits)) = self
            .common
            .iter_mut()
            .find(|(t, _)| text_of(chunks, *t) == s)
        {
            *hits += 1;
            return *t;
        }
        let t = self.add(s);
        if self.common.len() < MAX {
            self.common.push((t, 0));
        }
        t
    }

    fn text(&self, t: Text) -> &str {
        text_of(&self.chunks, t)
    }

    /// Adds the rows of one person (as [`check`] made them), in order.
    pub fn push_person(&mut self, rows: Vec<Row>) {
        let Some(first) = rows.first() else {
            return;
        };
        let mut key = [0u8; 16];
        let b = first.iin.as_bytes();
        key[..b.len().min(16)].copy_from_slice(&b[..b.len().min(16)]);
        let person = PersonRef {
            iin_key: key,
            iin: self.add(&first.iin),
            full_name: self.add(&first.full_name),
            life_status: self.add_common(&first.life_status),
            fetched_ms: first.fetched_at.timestamp_millis(),
        };
        let p = self.persons.len() as u32;
        self.persons.push(person);
        for r in rows {
            debug_assert_eq!(r.iin, self.text(self.persons[p as usize].iin));
            let packed = Packed {
                person: p,
                document_type: self.add_common(&r.document_type),
                document_number: self.add(&r.document_number),
                document_status: self.add_common(&r.document_status),
                note: self.add_common(&r.note),
                expiry_date: r.expiry_date,
                days_left: r
                    .days_left
                    .map(|d| d.clamp(i32::MIN as i64, i32::MAX as i64) as i32),
                reasons: r.reasons,
            };
            self.rows.push(packed);
        }
    }

    /// Sorts as [`sort`] does (equal rows keep the order they were pushed
    /// in), on the current rayon pool. Numbers decide most comparisons;
    /// texts only break ties.
    pub fn sort(&mut self) {
        use rayon::slice::ParallelSliceMut as _;
        let mut order: Vec<u32> = (0..self.rows.len() as u32).collect();
        let cmp = |&a: &u32, &b: &u32| {
            let (ra, rb) = (&self.rows[a as usize], &self.rows[b as usize]);
            let (pa, pb) = (
                &self.persons[ra.person as usize],
                &self.persons[rb.person as usize],
            );
            (ra.expiry_date.is_none(), ra.expiry_date, pa.iin_key)
                .cmp(&(rb.expiry_date.is_none(), rb.expiry_date, pb.iin_key))
                .then_with(|| self.text(pa.iin).cmp(self.text(pb.iin)))
                .then_with(|| self.text(ra.document_type).cmp(self.text(rb.document_type)))
                .then_with(|| {
                    self.text(ra.document_number)
                        .cmp(self.text(rb.document_number))
                })
                .then(a.cmp(&b))
        };
        order.par_sort_unstable_by(cmp);
        self.order = order;
    }

    /// The `i`-th row in sorted order (or pushed order, before `sort`).
    pub fn get(&self, i: usize) -> Row {
        self.get_ref(i).to_row()
    }

    /// The `i`-th row, borrowed from the set.
    pub fn get_ref(&self, i: usize) -> RowRef<'_> {
        let at = self.order.get(i).map(|&o| o as usize).unwrap_or(i);
        let r = &self.rows[at];
        let p = &self.persons[r.person as usize];
        RowRef {
            iin: self.text(p.iin),
            full_name: self.text(p.full_name),
            document_type: self.text(r.document_type),
            document_number: self.text(r.document_number),
            expiry_date: r.expiry_date,
            days_left: r.days_left.map(i64::from),
            document_status: self.text(r.document_status),
            life_status: self.text(p.life_status),
            fetched_at: DateTime::from_timestamp_millis(p.fetched_ms)
                .unwrap_or(DateTime::<Utc>::MIN_UTC),
            reasons: r.reasons,
            note: self.text(r.note),
        }
    }

    /// Every row, borrowed, in sorted order.
    pub fn iter_ref(&self) -> impl Iterator<Item = RowRef<'_>> + '_ {
        (0..self.rows.len()).map(|i| self.get_ref(i))
    }

    /// Every row, in sorted order, one `Row` at a time.
    pub fn iter(&self) -> impl Iterator<Item = Row> + '_ {
        (0..self.rows.len()).map(|i| self.get(i))
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
    let s = s.trim();
    if let Ok(days) = s.parse::<i64>() {
        return if days >= 0 {
            Ok(days)
        } else {
            Err(format!("--within {s:?}: the window cannot be negative"))
        };
    }
    humantime::parse_duration(s)
        .map(|d| (d.as_secs() / 86_400) as i64)
        .map_err(|e| format!("--within {s:?} is not a duration ({e}); write e.g. 90d or 30"))
}

/// Parses a calendar day given as `YYYY-MM-DD`.
pub fn parse_day(flag: &str, s: &str) -> Result<NaiveDate, String> {
    NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d")
        .map_err(|_| format!("{flag} {s:?} is not a date: write YYYY-MM-DD, e.g. 2025-03-31"))
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
            set.push_person(rows);
        }
        assert_eq!(set.iter().collect::<Vec<_>>(), all, "pushed order");
        sort(&mut all);
        set.sort();
        assert_eq!(set.iter().collect::<Vec<_>>(), all, "sorted order");
        assert!(all.iter().any(|r| r.document_number == long));
    }
}
