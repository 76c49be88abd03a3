//! The expiry rules: which documents of a person need attention and why, how
//! many days they have left, and the order they are listed in.
//!
//! Rule this module keeps (tests below): it never drops a document
//! silently. One whose expiry date is missing or unreadable is always
//! listed, with `days_left` empty and a note saying why.

use std::fmt;

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Serialize, Serializer};

use crate::api::{Document, Person};

/// What `expiring` looks for: the day to count from and the window of days
/// after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rules {
    /// The day days are counted from ("today" unless `--as-of`).
    pub as_of: NaiveDate,
    /// Documents expiring within this many days of `as_of` are listed.
    pub within_days: i64,
}

impl Rules {
    /// The rules of `--within` (a duration such as `90d`, or a bare number
    /// of days) and `--as-of` (`YYYY-MM-DD`; `today` when not given). The
    /// error is the message for the user, naming the flag.
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
    /// Adds `r` to the set (a second time changes nothing).
    pub fn add(&mut self, r: Reason) {
        self.0 |= r.bit();
    }

    /// Whether `r` is in the set.
    pub fn has(self, r: Reason) -> bool {
        self.0 & r.bit() != 0
    }

    /// Whether no reason is in the set: a document that needs no attention.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// One bit per reason, bit `i` for the `i`-th of [`Reason`]'s variants
    /// in declaration order (the HTML report's data keeps this form).
    pub fn bits(self) -> u8 {
        self.0
    }

    /// The set whose [`Reasons::bits`] are `bits`; bits that stand for no
    /// reason are dropped.
    pub fn from_bits(bits: u8) -> Reasons {
        Reasons(bits & ((1 << Reason::ALL.len()) - 1))
    }

    /// The reasons in the set, in [`Reason`]'s declaration order.
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
/// in memory to sort, never the whole record. Its fields are the columns
/// of the expiring report, in order; texts are trimmed, empty when the
/// record has none.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Row {
    /// The IIN as it may be shown: masked unless the caller chose otherwise.
    pub iin: String,
    /// Surname, name and patronymic, as the record gives them.
    pub full_name: String,
    /// The document's type (`ПАСПОРТ`, `УДОСТОВЕРЕНИЕ РК`, ...); empty on a
    /// row for a person without documents.
    pub document_type: String,
    /// The document's number.
    pub document_number: String,
    /// The expiry date, when the record has one gbdfl can read.
    pub expiry_date: Option<NaiveDate>,
    /// Days from [`Rules::as_of`] to the expiry date, negative once
    /// expired ([`days_until`]); `None` without a readable date.
    pub days_left: Option<i64>,
    /// The document's status as the service gives it.
    pub document_status: String,
    /// The person's life status as the service gives it (`Нормальный`, ...).
    pub life_status: String,
    /// When the GBDFL answer this row comes from was received.
    #[serde(serialize_with = "crate::time::serialize_iso_seconds")]
    pub fetched_at: DateTime<Utc>,
    /// Why the row is listed; never empty.
    pub reasons: Reasons,
    /// Why a date is missing or unreadable, or why the record could not be
    /// read; empty otherwise.
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

    /// How the row should stand out on a terminal.
    pub fn urgency(&self) -> Urgency {
        urgency(self.days_left)
    }
}

/// A [`Row`] whose texts are borrowed: what [`check_each`] hands out, and
/// what a report reads back from wherever it keeps its rows.
#[derive(Debug, Clone, Copy)]
pub struct RowRef<'a> {
    /// [`Row::iin`].
    pub iin: &'a str,
    /// [`Row::full_name`].
    pub full_name: &'a str,
    /// [`Row::document_type`].
    pub document_type: &'a str,
    /// [`Row::document_number`].
    pub document_number: &'a str,
    /// [`Row::expiry_date`].
    pub expiry_date: Option<NaiveDate>,
    /// [`Row::days_left`].
    pub days_left: Option<i64>,
    /// [`Row::document_status`].
    pub document_status: &'a str,
    /// [`Row::life_status`].
    pub life_status: &'a str,
    /// [`Row::fetched_at`].
    pub fetched_at: DateTime<Utc>,
    /// [`Row::reasons`].
    pub reasons: Reasons,
    /// [`Row::note`].
    pub note: &'a str,
}

impl RowRef<'_> {
    /// How the row should stand out on a terminal.
    pub fn urgency(&self) -> Urgency {
        urgency(self.days_left)
    }

    /// The row with its texts copied out.
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

/// How a row should stand out on a terminal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Urgency {
    /// The document expired before the day counted from.
    Expired,
    /// Expires within [`URGENT_DAYS`].
    Urgent,
    /// Anything else: later, or no readable date.
    Normal,
}

/// Documents with this many days left or fewer stand out.
pub const URGENT_DAYS: i64 = 30;

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
/// rows: the expiry scan packs them straight into its compact row set.
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

/// A document's expiry date, if it can be read.
pub fn expiry_date(doc: &Document) -> Option<NaiveDate> {
    doc.expiry_date.as_deref().and_then(crate::time::parse_date)
}

/// Days left on `today` until `expiry`: the one count of days left, which
/// every list, report and `show` gives.
pub fn days_until(expiry: NaiveDate, today: NaiveDate) -> i64 {
    (expiry - today).num_days()
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
    let Some(date) = crate::time::parse_date(raw) else {
        reasons.add(Reason::ExpiryDateUnreadable);
        let note = format!("expiry date {raw:?} is not a date gbdfl can read");
        return (None, None, reasons, note);
    };
    let days = days_until(date, rules.as_of);
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

/// Whether a record fetched at `fetched_at` is older than `max_age` at `now`.
pub fn is_stale(fetched_at: DateTime<Utc>, now: DateTime<Utc>, max_age: chrono::Duration) -> bool {
    now - fetched_at > max_age
}

/// Parses `--within`: a duration (`90d`, `12weeks`) or a bare number of
/// days; partial days are dropped.
fn parse_window(s: &str) -> Result<i64, String> {
    crate::limits::parse_days("--within", s, crate::limits::WITHIN).map_err(|e| e.message)
}

/// Parses a calendar day given as `YYYY-MM-DD`, with a four-digit year.
fn parse_day(flag: &str, s: &str) -> Result<NaiveDate, String> {
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
    fn reasons_keep_their_bits_and_drop_unknown_ones() {
        let mut r = Reasons::default();
        r.add(Reason::Expired);
        r.add(Reason::RecordUnreadable);
        assert_eq!(Reasons::from_bits(r.bits()), r);
        assert_eq!(Reasons::from_bits(r.bits() | 0x80), r);
        assert_eq!(r.to_string(), "expired record_unreadable");
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
}
