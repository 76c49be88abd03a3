//! The `lookups` table: [`LookupRow`], its columns, its inserts, the
//! selects by subject, id and time, the scans of the covering indexes
//! (latest VALID answers, all others) and purge's counts and deletes.

use rusqlite::{Connection, OptionalExtension, params};

use super::{Stored, exec, ms, ms_in, opt_ms, row1};
use crate::sealed::LookupBinding;
use crate::{Outcome, Reached, Source, StoreError};

/// A lookup row as stored: sealed columns stay sealed here.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct LookupRow {
    /// The lookup's id: a UUIDv7 made by the client (a UUIDv8 derived
    /// from the answer when imported).
    pub id: String,
    /// The blind index of the IIN looked up (32 bytes).
    pub subject: Vec<u8>,
    /// Milliseconds since the epoch (a spill file written before format
    /// version 6 has the RFC 3339 text).
    #[serde(deserialize_with = "millis_or_text")]
    pub requested_at: i64,
    #[serde(deserialize_with = "opt_millis_or_text")]
    /// When the answer (or failure) came back, milliseconds since the
    /// epoch; `None` when none came.
    pub answered_at: Option<i64>,
    /// The staff member who asked (never the subject).
    pub operator: String,
    /// The machine that asked.
    pub host: String,
    /// A call to the service or an answer from the cache.
    pub source: Source,
    /// How the lookup ended.
    pub outcome: Outcome,
    /// The GBDFL status of the answer, one of [`STATUSES`].
    pub status: Option<String>,
    /// The answer's `result` flag.
    pub result: Option<bool>,
    /// The HTTP status of the answer; `None` when no HTTP answer came.
    pub http_status: Option<i64>,
    /// The answer's failure type, enumerated (docs/FORMAT.md).
    pub failure_type: Option<String>,
    /// False when `--skip-iin-check` let an IIN that fails its check
    /// digit through.
    pub iin_checked: bool,
    /// For a cache answer, the id of the lookup it was served from.
    pub cached_from: Option<String>,
    /// The key version its sealed values are sealed under.
    pub key_version: i64,
    /// The sealed IIN.
    pub iin_enc: Vec<u8>,
    /// The sealed face2face backend session id.
    pub session_enc: Vec<u8>,
    /// The sealed purpose the operator gave.
    pub purpose_enc: Option<Vec<u8>>,
    /// The sealed failure detail, HTTP error message or transport error.
    pub detail_enc: Option<Vec<u8>>,
    /// The sealed response body, behind its codec byte.
    pub response_enc: Option<Vec<u8>>,
    /// Sealed document summary of a VALID answer (schema version 3).
    pub summary_enc: Option<Vec<u8>>,
    /// Whether the request reached the service; `None` for cache answers.
    pub reached: Option<Reached>,
    /// The OS user of the process that recorded the lookup (schema
    /// version 5; NULL before).
    pub os_user: Option<String>,
}

/// The columns of `lookups` in [`LookupRow`]'s order, as a literal so that
/// statements can be made of it at compile time.
macro_rules! lookup_columns {
    () => {
        "id, subject, requested_at, answered_at, operator, host, source, outcome, \
         status, result, http_status, failure_type, iin_checked, cached_from, key_version, \
         iin_enc, session_enc, purpose_enc, detail_enc, response_enc, summary_enc, reached, os_user"
    };
}

pub(crate) const LOOKUP_COLUMNS: &str = lookup_columns!();

/// Inserts one [`LookupRow`] unless its id is already there. A constant, so
/// that an import's million inserts neither format nor hash a new text each.
const INSERT_LOOKUP: &str = concat!(
    "INSERT OR IGNORE INTO lookups (",
    lookup_columns!(),
    ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21, ?22, ?23)"
);

impl LookupRow {
    /// The fields its sealed values are bound to.
    pub fn binding(&self) -> LookupBinding<'_> {
        LookupBinding {
            subject: &self.subject,
            requested_at: self.requested_at,
            answered_at: self.answered_at,
            source: self.source.as_str(),
            outcome: self.outcome.as_str(),
            status: self.status.as_deref(),
            reached: self.reached.map(Reached::as_str),
            cached_from: self.cached_from.as_deref(),
        }
    }
}

impl LookupRow {
    /// Its sealed values by column, in [`crate::sealed::SEALED`]'s order
    /// (a test holds the two lists together); `None` where NULL.
    pub fn sealed_mut(&mut self) -> [(&'static str, Option<&mut Vec<u8>>); 6] {
        [
            ("iin_enc", Some(&mut self.iin_enc)),
            ("session_enc", Some(&mut self.session_enc)),
            ("purpose_enc", self.purpose_enc.as_mut()),
            ("detail_enc", self.detail_enc.as_mut()),
            ("response_enc", self.response_enc.as_mut()),
            ("summary_enc", self.summary_enc.as_mut()),
        ]
    }
}

/// A stored time: milliseconds since the epoch, or (in a spill file of
/// an older gbdfl) RFC 3339 text.
fn millis_or_text<'de, D: serde::Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    #[derive(serde::Deserialize)]
    #[serde(untagged)]
    enum Either {
        Millis(i64),
        Text(String),
    }
    match <Either as serde::Deserialize>::deserialize(d)? {
        Either::Millis(ms) => Ok(ms),
        Either::Text(t) => gbdfl_core::time::parse_iso(&t)
            .map(|t| t.timestamp_millis())
            .ok_or_else(|| serde::de::Error::custom(format!("not a time: {t:?}"))),
    }
}

fn opt_millis_or_text<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    #[derive(serde::Deserialize)]
    struct Wrap(#[serde(deserialize_with = "millis_or_text")] i64);
    Ok(<Option<Wrap> as serde::Deserialize>::deserialize(d)?.map(|w| w.0))
}

fn lookup_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<LookupRow> {
    lookup_in(r, Stored::Current)
}

/// A row of `lookups` (columns in [`LOOKUP_COLUMNS`]' order) as stored in
/// `format`. Version 5 kept any `[A-Z0-9_]` status: read as the current
/// format stores it ([`crate::stored_status`]).
pub(crate) fn lookup_in(r: &rusqlite::Row<'_>, format: Stored) -> rusqlite::Result<LookupRow> {
    let status = match format {
        Stored::Current => status_at(r, 8)?,
        Stored::V5 => crate::stored_status(r.get::<_, Option<String>>(8)?.as_deref()),
    };
    let time = |i| ms_in(r, i, format);
    Ok(LookupRow {
        id: r.get(0)?,
        subject: r.get(1)?,
        requested_at: time(2)?.ok_or(rusqlite::Error::InvalidColumnType(
            2,
            "requested_at".into(),
            rusqlite::types::Type::Null,
        ))?,
        answered_at: time(3)?,
        operator: r.get(4)?,
        host: r.get(5)?,
        source: r.get(6)?,
        outcome: r.get(7)?,
        status,
        result: r.get(9)?,
        http_status: r.get(10)?,
        failure_type: r.get(11)?,
        iin_checked: r.get(12)?,
        cached_from: r.get(13)?,
        key_version: r.get(14)?,
        iin_enc: r.get(15)?,
        session_enc: r.get(16)?,
        purpose_enc: r.get(17)?,
        detail_enc: r.get(18)?,
        response_enc: r.get(19)?,
        summary_enc: r.get(20)?,
        reached: r.get(21)?,
        os_user: r.get(22)?,
    })
}

/// The GBDFL statuses a lookup row may hold (schema.sql); any other status
/// an answer brings is stored as `OTHER`.
pub const STATUSES: [&str; 9] = [
    "UNAPPROVED",
    "PENDING",
    "VALID",
    "INVALID",
    "TIMEOUT",
    "NOT_FOUND",
    "FAILED",
    "ERROR_ACCEPTED",
    "OTHER",
];

/// Column `i` of `r`, a GBDFL status: one of [`STATUSES`] or NULL, anything
/// else an error (never read as some default).
fn status_at(r: &rusqlite::Row<'_>, i: usize) -> rusqlite::Result<Option<String>> {
    let status: Option<String> = r.get(i)?;
    match status {
        Some(s) if !STATUSES.contains(&s.as_str()) => {
            Err(rusqlite::Error::FromSqlConversionFailure(
                i,
                rusqlite::types::Type::Text,
                format!("unknown status {s:?}").into(),
            ))
        }
        s => Ok(s),
    }
}

/// Inserts a lookup; an id already present is left as it is (idempotent).
pub fn insert_lookup(conn: &Connection, r: &LookupRow) -> Result<bool, StoreError> {
    insert_with(&mut conn.prepare_cached(INSERT_LOOKUP)?, r)
}

/// Inserts each row unless its id is already there, with one statement:
/// how many were inserted and how many were already there.
pub fn insert_lookups<'a>(
    conn: &Connection,
    rows: impl IntoIterator<Item = &'a LookupRow>,
) -> Result<(u64, u64), StoreError> {
    let mut st = conn.prepare_cached(INSERT_LOOKUP)?;
    let (mut inserted, mut already) = (0, 0);
    for r in rows {
        if insert_with(&mut st, r)? {
            inserted += 1;
        } else {
            already += 1;
        }
    }
    Ok((inserted, already))
}

fn insert_with(st: &mut rusqlite::CachedStatement<'_>, r: &LookupRow) -> Result<bool, StoreError> {
    let n = st.execute(params![
        r.id,
        r.subject,
        r.requested_at,
        r.answered_at,
        r.operator,
        r.host,
        r.source,
        r.outcome,
        r.status,
        r.result,
        r.http_status,
        r.failure_type,
        r.iin_checked,
        r.cached_from,
        r.key_version,
        r.iin_enc,
        r.session_enc,
        r.purpose_enc,
        r.detail_enc,
        r.response_enc,
        r.summary_enc,
        r.reached,
        r.os_user,
    ])?;
    Ok(n == 1)
}

/// The newest answered VALID lookup of a subject, if any; one answered
/// after `believed` (now plus [`crate::FUTURE_TOLERANCE`]) is not believed.
pub fn latest_valid(
    conn: &Connection,
    subject: &[u8],
    believed: &str,
) -> Result<Option<LookupRow>, StoreError> {
    let row = conn
        .query_row(
            &format!(
                "SELECT {LOOKUP_COLUMNS} FROM lookups \
                 WHERE subject = ?1 AND source IN ('service', 'org') AND outcome = 'answered' AND status = 'VALID' \
                 AND answered_at <= ?2 \
                 ORDER BY answered_at DESC, id DESC LIMIT 1"
            ),
            params![subject, ms(believed)?],
            lookup_from_row,
        )
        .optional()?;
    Ok(row)
}

/// Every lookup of a subject, newest first.
pub fn history(conn: &Connection, subject: &[u8]) -> Result<Vec<LookupRow>, StoreError> {
    let mut st = conn.prepare_cached(&format!(
        "SELECT {LOOKUP_COLUMNS} FROM lookups WHERE subject = ?1 ORDER BY requested_at DESC, id DESC"
    ))?;
    let rows = st
        .query_map(params![subject], lookup_from_row)?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

/// One lookup by id.
pub fn lookup_by_id(conn: &Connection, id: &str) -> Result<Option<LookupRow>, StoreError> {
    Ok(conn
        .query_row(
            &format!("SELECT {LOOKUP_COLUMNS} FROM lookups WHERE id = ?1"),
            params![id],
            lookup_from_row,
        )
        .optional()?)
}

/// Calls `f` with every lookup requested in `[from, to)`, oldest first.
pub fn each_lookup<E: From<StoreError>>(
    conn: &Connection,
    from: Option<&str>,
    to: Option<&str>,
    f: &mut dyn FnMut(LookupRow) -> Result<(), E>,
) -> Result<(), E> {
    let mut st = conn
        .prepare_cached(&format!(
            "SELECT {LOOKUP_COLUMNS} FROM lookups \
         WHERE (?1 IS NULL OR requested_at >= ?1) AND (?2 IS NULL OR requested_at < ?2) \
         ORDER BY requested_at, id"
        ))
        .map_err(StoreError::from)?;
    let (from, to) = (opt_ms(from)?, opt_ms(to)?);
    let mut rows = st.query(params![from, to]).map_err(StoreError::from)?;
    while let Some(r) = rows.next().map_err(StoreError::from)? {
        f(lookup_from_row(r).map_err(StoreError::from)?)?;
    }
    Ok(())
}

/// How many lookups were requested in `[from, to)`.
pub fn count_lookups_between(
    conn: &Connection,
    from: Option<&str>,
    to: Option<&str>,
) -> Result<u64, StoreError> {
    let n: i64 = row1(
        conn,
        "SELECT count(*) FROM lookups \
         WHERE (?1 IS NULL OR requested_at >= ?1) AND (?2 IS NULL OR requested_at < ?2)",
        params![opt_ms(from)?, opt_ms(to)?],
        |r| r.get(0),
    )?;
    Ok(n.max(0) as u64)
}

/// How many rows [`each_answer`] walks.
pub fn count_answers(conn: &Connection) -> Result<u64, StoreError> {
    let n: i64 = row1(
        conn,
        "SELECT count(*) FROM lookups \
         WHERE source = 'service' AND outcome = 'answered' AND response_enc IS NOT NULL",
        [],
        |r| r.get(0),
    )?;
    Ok(n.max(0) as u64)
}

/// How many lookups the database holds.
pub fn count_lookups(conn: &Connection) -> Result<i64, StoreError> {
    Ok(row1(conn, "SELECT count(*) FROM lookups", [], |r| {
        r.get(0)
    })?)
}

/// One row per lookup for `stats`: (requested_at in milliseconds since the
/// epoch, source, outcome, status, reached).
pub type StatRow = (i64, Source, Outcome, Option<String>, Option<Reached>);

/// Calls `f` with the plaintext columns of every lookup requested in
/// `[from, to)` (milliseconds since the epoch).
pub fn each_lookup_stat<E: From<StoreError>>(
    conn: &Connection,
    from: Option<i64>,
    to: Option<i64>,
    f: &mut dyn FnMut(StatRow) -> Result<(), E>,
) -> Result<(), E> {
    let mut st = conn
        .prepare_cached(
            "SELECT requested_at, source, outcome, status, reached FROM lookups \
             WHERE (?1 IS NULL OR requested_at >= ?1) AND (?2 IS NULL OR requested_at < ?2) \
             ORDER BY requested_at, id",
        )
        .map_err(StoreError::from)?;
    let mut rows = st.query(params![from, to]).map_err(StoreError::from)?;
    while let Some(r) = rows.next().map_err(StoreError::from)? {
        let row = (|| Ok((r.get(0)?, r.get(1)?, r.get(2)?, status_at(r, 3)?, r.get(4)?)))()
            .map_err(|e: rusqlite::Error| StoreError::from(e))?;
        f(row)?;
    }
    Ok(())
}

/// A VALID lookup as the covering index `lookups_latest` holds it,
/// borrowed for the length of one call.
#[derive(Debug, Clone, Copy)]
pub struct LatestRow<'a> {
    /// The blind index of the IIN.
    pub subject: &'a [u8],
    /// The lookup's id.
    pub id: &'a str,
    /// The key version its summary is sealed under.
    pub key_version: i64,
    /// Milliseconds since the epoch.
    pub requested_at: i64,
    /// Milliseconds since the epoch.
    pub answered_at: Option<i64>,
    /// The sealed document summary.
    pub summary_enc: Option<&'a [u8]>,
    /// `service`, or `org` for an answer of the organisation cache.
    pub source: Source,
    /// `yes` for an answer of the service, `None` for one of the
    /// organisation cache.
    pub reached: Option<Reached>,
    /// For an answer of the organisation cache, the lookup of the other
    /// branch it came from.
    pub cached_from: Option<&'a str>,
}

/// The row of [`LatestRow`] held while the walk looks at the next one; its
/// buffers are reused from row to row. Also the central store's walk's
/// (`crate::foreign`).
#[derive(Default)]
pub(crate) struct HeldRow {
    subject: Vec<u8>,
    id: String,
    key_version: i64,
    requested_at: i64,
    answered_at: Option<i64>,
    summary_enc: Option<Vec<u8>>,
    source: Option<Source>,
    reached: Option<Reached>,
    cached_from: Option<String>,
}

impl HeldRow {
    fn hold(&mut self, r: &rusqlite::Row<'_>) -> rusqlite::Result<()> {
        self.hold_row(&LatestRow {
            subject: r.get_ref(0)?.as_blob()?,
            id: r.get_ref(1)?.as_str()?,
            key_version: r.get(2)?,
            answered_at: r.get(3)?,
            requested_at: r.get(4)?,
            summary_enc: r.get_ref(5)?.as_blob_or_null()?,
            source: r.get(6)?,
            reached: r.get(7)?,
            cached_from: r.get_ref(8)?.as_str_or_null()?,
        });
        Ok(())
    }

    /// Holds a copy of `r`, in this row's buffers.
    pub(crate) fn hold_row(&mut self, r: &LatestRow<'_>) {
        fn put(to: &mut Vec<u8>, from: &[u8]) {
            to.clear();
            to.extend_from_slice(from);
        }
        fn put_text(to: &mut Option<String>, from: Option<&str>) {
            match from {
                Some(t) => {
                    let held = to.get_or_insert_with(String::new);
                    held.clear();
                    held.push_str(t);
                }
                None => *to = None,
            }
        }
        put(&mut self.subject, r.subject);
        self.id.clear();
        self.id.push_str(r.id);
        self.key_version = r.key_version;
        self.answered_at = r.answered_at;
        self.requested_at = r.requested_at;
        match r.summary_enc {
            Some(b) => put(self.summary_enc.get_or_insert_with(Vec::new), b),
            None => self.summary_enc = None,
        }
        self.source = Some(r.source);
        self.reached = r.reached;
        put_text(&mut self.cached_from, r.cached_from);
    }

    /// The held row, borrowed.
    pub(crate) fn as_row(&self) -> LatestRow<'_> {
        LatestRow {
            subject: &self.subject,
            id: &self.id,
            key_version: self.key_version,
            requested_at: self.requested_at,
            answered_at: self.answered_at,
            summary_enc: self.summary_enc.as_deref(),
            source: self.source.unwrap_or(Source::Service),
            reached: self.reached,
            cached_from: self.cached_from.as_deref(),
        }
    }

    /// The blind index of the held row.
    pub(crate) fn subject(&self) -> &[u8] {
        &self.subject
    }
}

/// Calls `f` with every VALID lookup, in subject order, reading only the
/// covering partial index `lookups_latest`; the second argument says
/// whether it is the latest of its subject. Unlike [`latest_valid`], it
/// believes every answer time: reports are made as of a day (`--as-of`),
/// which may lie ahead of this machine's clock.
pub fn each_latest_summary<E: From<StoreError>>(
    conn: &Connection,
    f: &mut dyn FnMut(LatestRow<'_>, bool) -> Result<(), E>,
) -> Result<(), E> {
    // A plain walk of the index in its own order (subject, answered_at,
    // id), the last row of each subject being the latest: the row
    // `latest_valid` picks (newest answer, ties by the greatest id).
    // Several times faster than `GROUP BY subject` with max(answered_at),
    // which SQLite runs as an aggregate over the same walk (BENCHMARKS.md).
    let sql = |e: rusqlite::Error| E::from(StoreError::from(e));
    let mut st = conn
        .prepare_cached(
            "SELECT subject, id, key_version, answered_at, requested_at, summary_enc, source, \
             reached, cached_from FROM lookups \
             WHERE source IN ('service', 'org') AND outcome = 'answered' AND status = 'VALID' \
             ORDER BY subject, answered_at, id",
        )
        .map_err(sql)?;
    let mut rows = st.query([]).map_err(sql)?;
    let (mut held, mut holding) = (HeldRow::default(), false);
    while let Some(r) = rows.next().map_err(sql)? {
        let subject = r
            .get_ref(0)
            .and_then(|v| v.as_blob().map_err(rusqlite::Error::from))
            .map_err(sql)?;
        if holding {
            let latest = held.subject.as_slice() != subject;
            f(held.as_row(), latest)?;
        }
        held.hold(r).map_err(sql)?;
        holding = true;
    }
    if holding {
        f(held.as_row(), true)?;
    }
    Ok(())
}

/// Calls `f` with every lookup that is not in `lookups_latest` (not a
/// VALID answer of the service or the organisation cache), with its
/// binding and sealed IIN, reading
/// only the covering index `lookups_other`.
pub fn each_other_lookup(
    conn: &Connection,
    f: &mut dyn FnMut(&LookupRow) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    let mut st = conn.prepare_cached(
        "SELECT id, key_version, subject, requested_at, answered_at, source, outcome, status, \
         reached, cached_from, iin_enc FROM lookups \
         WHERE source NOT IN ('service', 'org') OR outcome IS NOT 'answered' OR status IS NOT 'VALID'",
    )?;
    let mut rows = st.query([])?;
    let mut row = LookupRow {
        id: String::new(),
        subject: Vec::new(),
        requested_at: 0,
        answered_at: None,
        operator: String::new(),
        host: String::new(),
        source: Source::Service,
        outcome: Outcome::Answered,
        status: None,
        result: None,
        http_status: None,
        failure_type: None,
        iin_checked: true,
        cached_from: None,
        key_version: 0,
        iin_enc: Vec::new(),
        session_enc: Vec::new(),
        purpose_enc: None,
        detail_enc: None,
        response_enc: None,
        summary_enc: None,
        reached: None,
        os_user: None,
    };
    while let Some(r) = rows.next()? {
        row.id = r.get(0)?;
        row.key_version = r.get(1)?;
        row.subject = r.get(2)?;
        row.requested_at = r.get(3)?;
        row.answered_at = r.get(4)?;
        row.source = r.get(5)?;
        row.outcome = r.get(6)?;
        row.status = status_at(r, 7)?;
        row.reached = r.get(8)?;
        row.cached_from = r.get(9)?;
        row.iin_enc = r.get(10)?;
        f(&row)?;
    }
    Ok(())
}

/// Calls `f` with every answer of the service that has a body, oldest first.
pub fn each_answer<E: From<StoreError>>(
    conn: &Connection,
    f: &mut dyn FnMut(LookupRow) -> Result<(), E>,
) -> Result<(), E> {
    let mut st = conn
        .prepare_cached(&format!(
            "SELECT {LOOKUP_COLUMNS} FROM lookups \
             WHERE source = 'service' AND outcome = 'answered' AND response_enc IS NOT NULL \
             ORDER BY requested_at, id"
        ))
        .map_err(StoreError::from)?;
    let mut rows = st.query([]).map_err(StoreError::from)?;
    while let Some(r) = rows.next().map_err(StoreError::from)? {
        f(lookup_from_row(r).map_err(StoreError::from)?)?;
    }
    Ok(())
}

/// Every lookup row (for rekey and check).
pub fn all_lookups<E: From<StoreError>>(
    conn: &Connection,
    f: &mut dyn FnMut(LookupRow) -> Result<(), E>,
) -> Result<(), E> {
    each_lookup(conn, None, None, f)
}

/// Re-seals one lookup's sealed columns (rekey).
pub fn update_lookup_sealed(conn: &Connection, r: &LookupRow) -> Result<(), StoreError> {
    exec(
        conn,
        "UPDATE lookups SET key_version = ?2, iin_enc = ?3, session_enc = ?4, purpose_enc = ?5, \
         detail_enc = ?6, response_enc = ?7, summary_enc = ?8 WHERE id = ?1",
        params![
            r.id,
            r.key_version,
            r.iin_enc,
            r.session_enc,
            r.purpose_enc,
            r.detail_enc,
            r.response_enc,
            r.summary_enc
        ],
    )?;
    Ok(())
}

/// The row ids of the lookups requested before `cutoff`, found through
/// the index on `requested_at`, in row id order (the table's own order).
pub fn lookup_rowids_before(conn: &Connection, cutoff: &str) -> Result<Vec<i64>, StoreError> {
    let mut st = conn.prepare_cached("SELECT rowid FROM lookups WHERE requested_at < ?1")?;
    let mut ids = st
        .query_map(params![ms(cutoff)?], |r| r.get(0))?
        .collect::<Result<Vec<i64>, _>>()?;
    ids.sort_unstable();
    Ok(ids)
}

/// Deletes the lookups of these row ids that are still requested before
/// `cutoff` (a row id freed meanwhile may have been given to a new
/// lookup); returns how many were calls to the service and how many
/// answers without a call (of the cache or the organisation cache). Cache answers that named a deleted lookup as their source keep
/// its id (bound into their sealed values, it cannot change).
pub fn delete_lookups_by_rowid(
    conn: &Connection,
    rowids: &[i64],
    cutoff: &str,
) -> Result<(u64, u64), StoreError> {
    let mut st = conn.prepare_cached(
        "DELETE FROM lookups WHERE rowid = ?1 AND requested_at < ?2 RETURNING source <> 'service'",
    )?;
    let (mut paid, mut cached) = (0u64, 0u64);
    let cutoff = ms(cutoff)?;
    for id in rowids {
        let mut rows = st.query(params![id, cutoff])?;
        if let Some(r) = rows.next()? {
            if r.get::<_, bool>(0)? {
                cached += 1;
            } else {
                paid += 1;
            }
        }
    }
    Ok((paid, cached))
}

/// Lookups requested before `cutoff`: (calls to the service, answers
/// without a call: of the cache or the organisation cache).
pub fn count_lookups_before(conn: &Connection, cutoff: &str) -> Result<(u64, u64), StoreError> {
    let (paid, cached): (i64, i64) = row1(
        conn,
        "SELECT count(*) FILTER (WHERE source = 'service'), count(*) FILTER (WHERE source <> 'service') \
         FROM lookups WHERE requested_at < ?1",
        params![ms(cutoff)?],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    Ok((paid.max(0) as u64, cached.max(0) as u64))
}
