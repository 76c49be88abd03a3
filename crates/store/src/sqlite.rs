//! The SQLite backend: every SQL statement gbdfl runs is in this file.
//!
//! Rules this module keeps: it sees only sealed rows (blobs, blind indexes,
//! times and enumerated values), never plaintext personal data; it opens a
//! connection once with WAL, foreign keys, secure_delete, in-memory temp
//! storage (except while indexes are rebuilt, [`sorting_in_parallel`]) and
//! a busy timeout; it creates the database file owner-only; and
//! it migrates the schema through `PRAGMA user_version`.

use std::path::Path;
use std::time::Duration;

use rusqlite::{
    Connection, OpenFlags, OptionalExtension, Transaction, TransactionBehavior, params,
};

use super::owner;
use super::{Outcome, Reached, Source, StoreError};
use crate::sealed::LookupBinding;

/// The schema version this binary writes (schema.sql): the at-rest format
/// version of docs/FORMAT.md.
pub const SCHEMA_VERSION: i64 = 6;
/// `PRAGMA application_id` of a gbdfl database: "gbdf" in ASCII.
pub const APPLICATION_ID: i64 = 0x6762_6466;
pub(crate) const SCHEMA: &str = include_str!("../../../schema.sql");

/// A lookup row as stored: sealed columns stay sealed here.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct LookupRow {
    pub id: String,
    pub subject: Vec<u8>,
    /// Milliseconds since the epoch (a spill file written before format
    /// version 6 has the RFC 3339 text).
    #[serde(deserialize_with = "millis_or_text")]
    pub requested_at: i64,
    #[serde(deserialize_with = "opt_millis_or_text")]
    pub answered_at: Option<i64>,
    pub operator: String,
    pub host: String,
    pub source: Source,
    pub outcome: Outcome,
    pub status: Option<String>,
    pub result: Option<bool>,
    pub http_status: Option<i64>,
    pub failure_type: Option<String>,
    pub iin_checked: bool,
    pub cached_from: Option<String>,
    pub key_version: i64,
    pub iin_enc: Vec<u8>,
    pub session_enc: Vec<u8>,
    pub purpose_enc: Option<Vec<u8>>,
    pub detail_enc: Option<Vec<u8>>,
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

const LOOKUP_COLUMNS: &str = lookup_columns!();

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

impl QueueRow {
    /// Its sealed values by column, in [`crate::sealed::SEALED`]'s order
    /// (a test holds the two lists together); `None` where NULL.
    pub fn sealed_mut(&mut self) -> [(&'static str, Option<&mut Vec<u8>>); 4] {
        [
            ("iin_enc", Some(&mut self.iin_enc)),
            ("session_enc", Some(&mut self.session_enc)),
            ("purpose_enc", self.purpose_enc.as_mut()),
            ("error_enc", self.error_enc.as_mut()),
        ]
    }
}

impl AuditRow {
    /// Its sealed values by column, in [`crate::sealed::SEALED`]'s order
    /// (a test holds the two lists together); `None` where NULL.
    pub fn sealed_mut(&mut self) -> [(&'static str, Option<&mut Vec<u8>>); 2] {
        [
            ("purpose_enc", self.purpose_enc.as_mut()),
            ("error_enc", self.error_enc.as_mut()),
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

/// A time as the database keeps it (INTEGER milliseconds since the epoch,
/// UTC) from the text the store's callers hold ([`crate::time_text`]).
pub(crate) fn ms(text: &str) -> rusqlite::Result<i64> {
    gbdfl_core::time::parse_iso(text)
        .map(|t| t.timestamp_millis())
        .ok_or_else(|| {
            rusqlite::Error::ToSqlConversionFailure(format!("not a time: {text:?}").into())
        })
}

/// The text of a stored time ([`crate::time_text`]); a value no calendar
/// holds is an error, never a default.
pub(crate) fn text_of(ms: i64) -> rusqlite::Result<String> {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(crate::time_text)
        .ok_or(rusqlite::Error::IntegralValueOutOfRange(0, ms))
}

/// [`ms`] of a time that may be absent.
fn opt_ms(text: Option<&str>) -> Result<Option<i64>, StoreError> {
    Ok(text.map(ms).transpose()?)
}

/// Column `i` of `r`, a stored time, as text.
fn time_at(r: &rusqlite::Row<'_>, i: usize) -> rusqlite::Result<String> {
    text_of(r.get(i)?)
}

/// Column `i` of `r`, a stored time (or the RFC 3339 text of a database
/// not yet migrated) or NULL, as text.
fn time_or_text_at(r: &rusqlite::Row<'_>, i: usize) -> rusqlite::Result<Option<String>> {
    use rusqlite::types::ValueRef;
    match r.get_ref(i)? {
        ValueRef::Integer(ms) => text_of(ms).map(Some),
        ValueRef::Text(t) => Ok(Some(String::from_utf8_lossy(t).into_owned())),
        _ => Ok(None),
    }
}

/// Column `i` of `r`, a stored time or NULL, as text.
fn time_opt_at(r: &rusqlite::Row<'_>, i: usize) -> rusqlite::Result<Option<String>> {
    r.get::<_, Option<i64>>(i)?.map(text_of).transpose()
}

fn lookup_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<LookupRow> {
    Ok(LookupRow {
        id: r.get(0)?,
        subject: r.get(1)?,
        requested_at: r.get(2)?,
        answered_at: r.get(3)?,
        operator: r.get(4)?,
        host: r.get(5)?,
        source: r.get(6)?,
        outcome: r.get(7)?,
        status: status_at(r, 8)?,
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

/// Runs one statement, prepared once per connection (the hot paths of
/// `sync` run the same few statements thousands of times).
fn exec(conn: &Connection, sql: &str, params: impl rusqlite::Params) -> rusqlite::Result<usize> {
    conn.prepare_cached(sql)?.execute(params)
}

/// One row of one statement, prepared once per connection.
fn row1<T>(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
    f: impl FnOnce(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
) -> rusqlite::Result<T> {
    conn.prepare_cached(sql)?.query_row(params, f)
}

/// How often a connection waiting for a lock another process holds tries
/// again. SQLite's own busy handler sleeps longer and longer, up to 100 ms
/// between tries, and so missed the short moments a long import leaves
/// the lock free ([`super::bulk::IMPORT_GAP`]).
pub const BUSY_POLL: Duration = Duration::from_millis(5);

fn configure(conn: &mut Connection, busy: Duration) -> Result<(), StoreError> {
    let mut since = std::time::Instant::now();
    conn.busy_handler(Some(move |tries: i32| {
        if tries == 0 {
            since = std::time::Instant::now();
        }
        if since.elapsed() >= busy {
            return false;
        }
        std::thread::sleep(BUSY_POLL);
        true
    }))?;
    conn.set_prepared_statement_cache_capacity(64);
    // WAL for readers beside a writer; FULL so a recorded paid call survives
    // a power cut; secure_delete so deleted rows leave no old ciphertext;
    // temp_store in memory so sorts do not spill to a temp file (only an
    // index rebuild lets them: sorting_in_parallel).
    conn.execute_batch(
        "PRAGMA journal_mode = WAL;
         PRAGMA synchronous = FULL;
         PRAGMA foreign_keys = ON;
         PRAGMA secure_delete = ON;
         PRAGMA temp_store = MEMORY;",
    )?;
    Ok(())
}

/// Maps SQLite's "not a database" and friends to a message about the file.
fn classify(path: &Path, e: rusqlite::Error) -> StoreError {
    if let rusqlite::Error::SqliteFailure(f, _) = &e
        && f.code == rusqlite::ErrorCode::NotADatabase
    {
        return StoreError::NotADatabase(path.to_owned());
    }
    if let rusqlite::Error::SqliteFailure(f, _) = &e
        && f.code == rusqlite::ErrorCode::ReadOnly
    {
        return StoreError::ReadOnly(path.to_owned());
    }
    StoreError::from(e)
}

/// What a file is, as far as gbdfl can tell without writing to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Found {
    /// No file, or an empty one (0 bytes): as if absent.
    Absent,
    /// A SQLite database with no schema and no application id yet.
    Blank,
    /// A gbdfl database.
    Gbdfl,
    /// Not SQLite, or another program's database.
    Foreign,
}

/// Looks at the file at `path` before anything opens it for writing: a
/// read-write connection switches a database to WAL mode and so changes
/// it, and another program's database must be left byte for byte as it
/// was. The 100-byte header says it all (application id at offset 68,
/// schema cookie at 40) unless a WAL file may hold a newer header; then a
/// read-only connection, which never writes the database file, asks SQLite.
fn probe(path: &Path) -> Result<Found, StoreError> {
    use std::io::Read as _;
    let mut header = Vec::with_capacity(100);
    match std::fs::File::open(path) {
        Ok(f) => f.take(100).read_to_end(&mut header)?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Found::Absent),
        // Unreadable: let SQLite's open say what is wrong, as before.
        Err(_) => return Ok(Found::Gbdfl),
    };
    if header.is_empty() {
        return Ok(Found::Absent);
    }
    if header.len() < 100 || !header.starts_with(b"SQLite format 3\0") {
        return Ok(Found::Foreign);
    }
    let be32 = |at: usize| {
        u32::from_be_bytes([header[at], header[at + 1], header[at + 2], header[at + 3]])
    };
    let (app_id, schema_cookie) = (i64::from(be32(68)), be32(40));
    if app_id == APPLICATION_ID {
        return Ok(Found::Gbdfl);
    }
    if app_id != 0 {
        return Ok(Found::Foreign);
    }
    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    if std::fs::metadata(&wal).is_ok_and(|m| m.len() > 0) {
        // The header may be newer in the WAL (a gbdfl init stopped before
        // its first checkpoint): ask SQLite, read-only.
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| classify(path, e))?;
        let app_id: i64 = conn
            .query_row("PRAGMA application_id", [], |r| r.get(0))
            .map_err(|e| classify(path, e))?;
        let tables: i64 = conn
            .query_row("SELECT count(*) FROM sqlite_schema", [], |r| r.get(0))
            .map_err(|e| classify(path, e))?;
        return Ok(match (app_id, tables) {
            (APPLICATION_ID, _) => Found::Gbdfl,
            (0, 0) => Found::Blank,
            _ => Found::Foreign,
        });
    }
    Ok(if schema_cookie == 0 {
        Found::Blank
    } else {
        Found::Foreign
    })
}

/// Opens an existing gbdfl database, checking it is one and migrating it.
pub fn open(path: &Path, busy: Duration) -> Result<Connection, StoreError> {
    match probe(path)? {
        Found::Absent | Found::Blank => return Err(StoreError::NotInitialised(path.to_owned())),
        Found::Foreign => return Err(StoreError::NotADatabase(path.to_owned())),
        Found::Gbdfl => {}
    }
    let mut conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| classify(path, e))?;
    // SQLite opens a file it may not write read-only, silently; every
    // command writes (lookups, the audit trail), so refuse it here, before
    // any paid call could be made and then not recorded.
    if conn
        .is_readonly(rusqlite::MAIN_DB)
        .map_err(|e| classify(path, e))?
    {
        return Err(StoreError::ReadOnly(path.to_owned()));
    }
    configure(&mut conn, busy).map_err(|e| match e {
        StoreError::Sqlite(e) => classify(path, e),
        other => other,
    })?;
    let app_id: i64 = conn
        .query_row("PRAGMA application_id", [], |r| r.get(0))
        .map_err(|e| classify(path, e))?;
    let version: i64 = row1(&conn, "PRAGMA user_version", [], |r| r.get(0))?;
    if app_id != APPLICATION_ID {
        if app_id == 0 && version == 0 {
            return Err(StoreError::NotInitialised(path.to_owned()));
        }
        return Err(StoreError::NotADatabase(path.to_owned()));
    }
    if version > SCHEMA_VERSION {
        return Err(StoreError::TooNew {
            path: path.to_owned(),
            found: version,
            supported: SCHEMA_VERSION,
        });
    }
    // An older version is migrated by the store once the key is known
    // (version 6 seals every value again).
    if version == SCHEMA_VERSION {
        ensure_schema(&conn)?;
    }
    Ok(conn)
}

/// The page size of a new database.
const PAGE_SIZE: u32 = 16384;

/// Creates (or opens) the database file and applies the schema. Returns the
/// connection and whether the schema was newly applied.
pub fn create(path: &Path, busy: Duration, now: &str) -> Result<(Connection, bool), StoreError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        gbdfl_core::fsutil::create_private_dir(dir)?;
    }
    match probe(path)? {
        Found::Foreign => return Err(StoreError::NotADatabase(path.to_owned())),
        Found::Absent if path.exists() => {
            // An empty file is taken as no database: made owner-only
            // before the first byte goes in.
            gbdfl_core::fsutil::restrict_to_owner(path)?;
        }
        Found::Absent => {
            // Create the file ourselves so it is owner-only from the first
            // byte; SQLite gives its -wal and -shm files the same mode.
            gbdfl_core::fsutil::create_private_file(path)?;
        }
        Found::Blank | Found::Gbdfl => {}
    }
    let mut conn = Connection::open(path).map_err(|e| classify(path, e))?;
    // A new file gets 16 KiB pages (before WAL mode writes its header):
    // a lookup row is about 1.1 KB, and 4 KiB pages leave much of each page
    // unused; 16 KiB makes the database 12% smaller (BENCHMARKS.md).
    // SQLite ignores this on a database that already has pages.
    conn.execute_batch(&format!("PRAGMA page_size = {PAGE_SIZE};"))
        .map_err(|e| classify(path, e))?;
    configure(&mut conn, busy).map_err(|e| match e {
        StoreError::Sqlite(e) => classify(path, e),
        other => other,
    })?;
    let app_id: i64 = row1(&conn, "PRAGMA application_id", [], |r| r.get(0))?;
    let version: i64 = row1(&conn, "PRAGMA user_version", [], |r| r.get(0))?;
    if app_id == APPLICATION_ID {
        if version > SCHEMA_VERSION {
            return Err(StoreError::TooNew {
                path: path.to_owned(),
                found: version,
                supported: SCHEMA_VERSION,
            });
        }
        return Ok((conn, false));
    }
    let tables: i64 = row1(&conn, "SELECT count(*) FROM sqlite_schema", [], |r| {
        r.get(0)
    })?;
    if app_id != 0 || tables > 0 {
        return Err(StoreError::NotADatabase(path.to_owned()));
    }
    let tx = conn.unchecked_transaction()?;
    tx.execute_batch(SCHEMA)?;
    tx.execute_batch(&format!(
        "PRAGMA application_id = {APPLICATION_ID}; PRAGMA user_version = {SCHEMA_VERSION};"
    ))?;
    tx.execute(
        "INSERT INTO meta (key, value) VALUES ('format', 'gbdfl'), ('created_at', ?1)",
        params![now],
    )?;
    insert_dictionaries(&tx)?;
    tx.commit()?;
    Ok((conn, true))
}

/// Puts every dictionary of [`crate::codec::DICTIONARIES`] into the
/// database, with its SHA-256, unless there.
pub(crate) fn insert_dictionaries(conn: &Connection) -> Result<(), StoreError> {
    use sha2::Digest as _;
    for (codec, zstd_id, content) in crate::codec::DICTIONARIES {
        exec(
            conn,
            "INSERT OR IGNORE INTO dictionaries (codec, zstd_id, sha256, content) VALUES (?1, ?2, ?3, ?4)",
            params![
                codec,
                zstd_id,
                sha2::Sha256::digest(content).to_vec(),
                content
            ],
        )?;
    }
    Ok(())
}

/// A stored dictionary: (codec, zstd id, sha256, content).
pub type DictionaryRow = (i64, i64, Vec<u8>, Vec<u8>);

/// Every stored dictionary.
pub fn dictionaries(conn: &Connection) -> Result<Vec<DictionaryRow>, StoreError> {
    let mut st = conn.prepare_cached(
        "SELECT codec, zstd_id, sha256, content FROM dictionaries ORDER BY codec",
    )?;
    let rows = st
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

/// One value of `meta`, if set.
pub fn meta(conn: &Connection, key: &str) -> Result<Option<String>, StoreError> {
    Ok(conn
        .query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
        .optional()?)
}

/// The version the database's schema is at (`PRAGMA user_version`).
pub fn user_version(conn: &Connection) -> Result<i64, StoreError> {
    Ok(row1(conn, "PRAGMA user_version", [], |r| r.get(0))?)
}

/// One row of the `keys` table.
#[derive(Debug, Clone)]
pub struct KeyRow {
    pub version: i64,
    pub check_value: Vec<u8>,
    pub wrapped_keys: Vec<u8>,
    pub created_at: String,
    pub retired_at: Option<String>,
}

/// Every key version, newest first.
pub fn key_rows(conn: &Connection) -> Result<Vec<KeyRow>, StoreError> {
    let mut st = conn.prepare_cached(
        "SELECT version, check_value, wrapped_keys, created_at, retired_at FROM keys ORDER BY version DESC",
    )?;
    let rows = st
        .query_map([], |r| {
            Ok(KeyRow {
                version: r.get(0)?,
                check_value: r.get(1)?,
                wrapped_keys: r.get(2)?,
                // Read before an older database is migrated: its times
                // are still text then.
                created_at: time_or_text_at(r, 3)?.unwrap_or_default(),
                retired_at: time_or_text_at(r, 4)?,
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

pub fn insert_key(conn: &Connection, k: &KeyRow) -> Result<(), StoreError> {
    exec(
        conn,
        "INSERT INTO keys (version, check_value, wrapped_keys, created_at, retired_at) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![
            k.version,
            k.check_value,
            k.wrapped_keys,
            ms(&k.created_at)?,
            k.retired_at.as_deref().map(ms).transpose()?
        ],
    )?;
    Ok(())
}

pub fn retire_key(conn: &Connection, version: i64, at: &str) -> Result<(), StoreError> {
    exec(
        conn,
        "UPDATE keys SET retired_at = ?2 WHERE version = ?1",
        params![version, ms(at)?],
    )?;
    Ok(())
}

/// One writer at a time among this process's connections (see [`immediate`]).
static WRITE_TURN: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Runs `f` in a `BEGIN IMMEDIATE` transaction: the write lock is taken at
/// the start, so two processes appending to the audit chain take turns.
/// Commits on `Ok`, rolls back on `Err`.
pub fn immediate<T, E: From<StoreError>>(
    conn: &Connection,
    f: impl FnOnce(&Connection) -> Result<T, E>,
) -> Result<T, E> {
    // Threads of this process take turns here rather than in a busy
    // handler that sleeps between tries (SQLite's own slept 1, 2, 5, 10...
    // ms: with 16 `sync` workers that sleeping, not the disk, bounded the
    // rate). Other processes still meet SQLite's lock, and [`configure`]'s
    // busy handler.
    let _turn = WRITE_TURN
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let tx = Transaction::new_unchecked(conn, TransactionBehavior::Immediate).map_err(|e| {
        match StoreError::from(e) {
            StoreError::Busy { .. } => StoreError::Busy {
                holder: lock_holder(conn),
            },
            other => other,
        }
    })?;
    // Dropped without `commit` (an error of `f`, a failed COMMIT, a panic),
    // the transaction rolls back.
    let v = f(&tx)?;
    tx.commit().map_err(StoreError::from)?;
    Ok(v)
}

/// Who holds the write lock, when gbdfl cannot tell.
pub const SOME_OTHER_WRITER: &str = "another gbdfl process or another program";

/// The start of the `meta` keys by which a long writer (an import, a
/// purge) names itself while it runs: `writing:` and [`owner::this_process`].
const WRITING: &str = "writing:";

/// Notes in `meta`, in a transaction of its own (so that others can read
/// it while the writer holds the lock), that this process is about to
/// write for long: `what` is the command.
pub fn note_writer(conn: &Connection, what: &str, now: &str) -> Result<(), StoreError> {
    immediate(conn, |c| {
        exec(
            c,
            "INSERT OR REPLACE INTO meta (key, value) VALUES (?1, ?2)",
            params![
                format!("{WRITING}{}", owner::this_process()),
                format!("{what} {now}")
            ],
        )?;
        Ok::<_, StoreError>(())
    })
}

/// Removes this process's note of [`note_writer`].
pub fn clear_writer(conn: &Connection) -> Result<(), StoreError> {
    immediate(conn, |c| {
        exec(
            c,
            "DELETE FROM meta WHERE key = ?1",
            params![format!("{WRITING}{}", owner::this_process())],
        )?;
        Ok::<_, StoreError>(())
    })
}

/// Names what holds the write lock, as far as the notes of running long
/// writers say (read without the lock: WAL readers do not wait); else
/// [`SOME_OTHER_WRITER`].
fn lock_holder(conn: &Connection) -> String {
    let notes = || -> rusqlite::Result<Vec<(String, String)>> {
        let mut st = conn.prepare_cached(
            "SELECT substr(key, length(?1) + 1), value FROM meta WHERE key >= ?1 AND key < ?2 \
             UNION ALL SELECT value, 'import' FROM meta WHERE key = ?3",
        )?;
        st.query_map(params![WRITING, "writing;", INDEXES_WITH], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })?
        .collect()
    };
    let Ok(notes) = notes() else {
        return SOME_OTHER_WRITER.to_owned();
    };
    let me = owner::this_process();
    for (by, what) in notes {
        if by == me || !running(&by) {
            continue;
        }
        let who = owner::Owner::parse(&by).map_or(by.clone(), |o| o.describe());
        let (command, since) = what.split_once(' ').unwrap_or((&what, ""));
        let since = match since {
            "" => String::new(),
            t => format!(", started {t}"),
        };
        return format!("a running `gbdfl {command}` ({who}{since})");
    }
    SOME_OTHER_WRITER.to_owned()
}

/// One audit entry as stored.
#[derive(Debug, Clone)]
pub struct AuditRow {
    pub seq: i64,
    pub id: String,
    pub at: String,
    pub operator: String,
    pub host: String,
    pub command: String,
    pub subject: Option<Vec<u8>>,
    pub outcome: String,
    pub exit_code: i64,
    pub paid_call: bool,
    pub records: i64,
    pub key_version: i64,
    pub purpose_enc: Option<Vec<u8>>,
    pub error_enc: Option<Vec<u8>>,
    pub mac: Vec<u8>,
    /// The OS user that ran the command (schema version 5; NULL before).
    pub os_user: Option<String>,
    /// The lookup the entry wrote or showed (format version 6; NULL
    /// before, and for entries of no one lookup).
    pub lookup_id: Option<String>,
    /// A purge's cutoff, milliseconds since the epoch (format version 6).
    pub purged_before: Option<i64>,
}

const AUDIT_COLUMNS: &str = "seq, id, at, operator, host, command, subject, outcome, exit_code, \
     paid_call, records, key_version, purpose_enc, error_enc, mac, os_user, lookup_id, purged_before";

fn audit_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<AuditRow> {
    Ok(AuditRow {
        seq: r.get(0)?,
        id: r.get(1)?,
        at: time_at(r, 2)?,
        operator: r.get(3)?,
        host: r.get(4)?,
        command: r.get(5)?,
        subject: r.get(6)?,
        outcome: r.get(7)?,
        exit_code: r.get(8)?,
        paid_call: r.get(9)?,
        records: r.get(10)?,
        key_version: r.get(11)?,
        purpose_enc: r.get(12)?,
        error_enc: r.get(13)?,
        mac: r.get(14)?,
        os_user: r.get(15)?,
        lookup_id: r.get(16)?,
        purged_before: r.get(17)?,
    })
}

/// The last entry's sequence number and MAC, if any.
pub fn audit_last(conn: &Connection) -> Result<Option<(i64, Vec<u8>)>, StoreError> {
    Ok(conn
        .query_row(
            "SELECT seq, mac FROM audit ORDER BY seq DESC LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?)
}

pub fn insert_audit(conn: &Connection, a: &AuditRow) -> Result<(), StoreError> {
    exec(
        conn,
        &format!(
            "INSERT INTO audit ({AUDIT_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18)"
        ),
        params![
            a.seq,
            a.id,
            ms(&a.at)?,
            a.operator,
            a.host,
            a.command,
            a.subject,
            a.outcome,
            a.exit_code,
            a.paid_call,
            a.records,
            a.key_version,
            a.purpose_enc,
            a.error_enc,
            a.mac,
            a.os_user,
            a.lookup_id,
            a.purged_before
        ],
    )?;
    Ok(())
}

/// Calls `f` with every audit entry in sequence order.
pub fn each_audit<E: From<StoreError>>(
    conn: &Connection,
    f: &mut dyn FnMut(AuditRow) -> Result<(), E>,
) -> Result<(), E> {
    let mut st = conn
        .prepare_cached(&format!("SELECT {AUDIT_COLUMNS} FROM audit ORDER BY seq"))
        .map_err(StoreError::from)?;
    let mut rows = st.query([]).map_err(StoreError::from)?;
    while let Some(r) = rows.next().map_err(StoreError::from)? {
        f(audit_from_row(r).map_err(StoreError::from)?)?;
    }
    Ok(())
}

/// Re-seals one audit row's sealed columns (rekey).
pub fn update_audit_sealed(conn: &Connection, a: &AuditRow) -> Result<(), StoreError> {
    exec(
        conn,
        "UPDATE audit SET key_version = ?2, purpose_enc = ?3, error_enc = ?4 WHERE seq = ?1",
        params![a.seq, a.key_version, a.purpose_enc, a.error_enc],
    )?;
    Ok(())
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

/// Every lookup row (for rekey and check).
pub fn all_lookups<E: From<StoreError>>(
    conn: &Connection,
    f: &mut dyn FnMut(LookupRow) -> Result<(), E>,
) -> Result<(), E> {
    each_lookup(conn, None, None, f)
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
/// lookup); returns how many were calls to the service and how many cache
/// answers. Cache answers that named a deleted lookup as their source keep
/// its id (bound into their sealed values, it cannot change).
pub fn delete_lookups_by_rowid(
    conn: &Connection,
    rowids: &[i64],
    cutoff: &str,
) -> Result<(u64, u64), StoreError> {
    let mut st = conn.prepare_cached(
        "DELETE FROM lookups WHERE rowid = ?1 AND requested_at < ?2 RETURNING source = 'cache'",
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

/// Lookups requested before `cutoff`: (paid calls, cache answers).
pub fn count_lookups_before(conn: &Connection, cutoff: &str) -> Result<(u64, u64), StoreError> {
    let (paid, cached): (i64, i64) = row1(
        conn,
        "SELECT count(*) FILTER (WHERE source <> 'cache'), count(*) FILTER (WHERE source = 'cache') \
         FROM lookups WHERE requested_at < ?1",
        params![ms(cutoff)?],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    Ok((paid.max(0) as u64, cached.max(0) as u64))
}

/// Queue items queued before `cutoff`: (expired, still waiting and not
/// being sent by a live process at `now`).
pub fn count_queue_before(
    conn: &Connection,
    cutoff: &str,
    now: &str,
) -> Result<(u64, u64), StoreError> {
    let (expired, waiting): (i64, i64) = row1(
        conn,
        "SELECT count(*) FILTER (WHERE state = 'expired'), \
         count(*) FILTER (WHERE state = 'waiting' AND (claimed_by IS NULL OR claimed_until <= ?2)) \
         FROM queue WHERE queued_at < ?1",
        params![ms(cutoff)?, ms(now)?],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    Ok((expired.max(0) as u64, waiting.max(0) as u64))
}

/// Deletes expired queue items queued before `cutoff`; returns how many.
pub fn delete_expired_queue_before(conn: &Connection, cutoff: &str) -> Result<u64, StoreError> {
    Ok(exec(
        conn,
        "DELETE FROM queue WHERE state = 'expired' AND queued_at < ?1",
        params![ms(cutoff)?],
    )? as u64)
}

/// The ids of queue items queued before `cutoff` that still wait to be
/// sent, except those a live process is sending at `now`.
pub fn waiting_queue_before(
    conn: &Connection,
    cutoff: &str,
    now: &str,
) -> Result<Vec<String>, StoreError> {
    let mut st = conn.prepare_cached(
        "SELECT id FROM queue WHERE queued_at < ?1 AND state = 'waiting' \
         AND (claimed_by IS NULL OR claimed_until <= ?2) ORDER BY queued_at, id",
    )?;
    let rows = st
        .query_map(params![ms(cutoff)?, ms(now)?], |r| r.get(0))?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

/// Copies the WAL into the database file and empties it (a purge's last
/// step: the freed pages, zeroed by secure_delete, reach the file, and the
/// WAL's older copies of them are gone). Readers still reading an older
/// snapshot keep the WAL from being emptied; that is not an error.
pub fn checkpoint(conn: &Connection) -> Result<(), StoreError> {
    row1(conn, "PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
    Ok(())
}

/// `PRAGMA integrity_check`: "ok" or the problems found.
pub fn integrity_check(conn: &Connection) -> Result<Vec<String>, StoreError> {
    let mut st = conn.prepare_cached("PRAGMA integrity_check")?;
    let rows = st
        .query_map([], |r| r.get::<_, String>(0))?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

/// An online backup of the database into `dest` (SQLite's backup API).
pub fn backup(conn: &Connection, dest: &Path) -> Result<(), StoreError> {
    let mut out = Connection::open(dest)?;
    {
        let b = rusqlite::backup::Backup::new(conn, &mut out)?;
        b.run_to_completion(256, Duration::from_millis(5), None)?;
    }
    out.execute_batch("PRAGMA journal_mode = DELETE;")?;
    Ok(())
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
/// after `believed` (now plus [`super::FUTURE_TOLERANCE`]) is not believed.
pub fn latest_valid(
    conn: &Connection,
    subject: &[u8],
    believed: &str,
) -> Result<Option<LookupRow>, StoreError> {
    let row = conn
        .query_row(
            &format!(
                "SELECT {LOOKUP_COLUMNS} FROM lookups \
                 WHERE subject = ?1 AND source = 'service' AND outcome = 'answered' AND status = 'VALID' \
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

/// A queue row as stored: sealed columns stay sealed here.
#[derive(Debug, Clone)]
pub struct QueueRow {
    pub id: String,
    pub subject: Vec<u8>,
    pub request: Vec<u8>,
    pub queued_at: String,
    pub deadline: String,
    pub state: String,
    pub attempts: i64,
    pub next_try_at: String,
    pub claimed_by: Option<String>,
    pub claimed_until: Option<String>,
    pub last_status: Option<String>,
    pub operator: String,
    pub host: String,
    pub iin_checked: bool,
    pub key_version: i64,
    pub iin_enc: Vec<u8>,
    pub session_enc: Vec<u8>,
    pub purpose_enc: Option<Vec<u8>>,
    pub error_enc: Option<Vec<u8>>,
}

pub(crate) const QUEUE_COLUMNS: &str = "id, subject, request, queued_at, deadline, state, attempts, next_try_at, \
     claimed_by, claimed_until, last_status, operator, host, iin_checked, key_version, \
     iin_enc, session_enc, purpose_enc, error_enc";

fn queue_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<QueueRow> {
    Ok(QueueRow {
        id: r.get(0)?,
        subject: r.get(1)?,
        request: r.get(2)?,
        queued_at: time_at(r, 3)?,
        deadline: time_at(r, 4)?,
        state: r.get(5)?,
        attempts: r.get(6)?,
        next_try_at: time_at(r, 7)?,
        claimed_by: r.get(8)?,
        claimed_until: time_opt_at(r, 9)?,
        last_status: r.get(10)?,
        operator: r.get(11)?,
        host: r.get(12)?,
        iin_checked: r.get(13)?,
        key_version: r.get(14)?,
        iin_enc: r.get(15)?,
        session_enc: r.get(16)?,
        purpose_enc: r.get(17)?,
        error_enc: r.get(18)?,
    })
}

/// A `queue` row of format version 5, whose times are RFC 3339 text.
pub(crate) fn v5_queue_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<QueueRow> {
    Ok(QueueRow {
        id: r.get(0)?,
        subject: r.get(1)?,
        request: r.get(2)?,
        queued_at: r.get(3)?,
        deadline: r.get(4)?,
        state: r.get(5)?,
        attempts: r.get(6)?,
        next_try_at: r.get(7)?,
        claimed_by: r.get(8)?,
        claimed_until: r.get(9)?,
        last_status: r.get(10)?,
        operator: r.get(11)?,
        host: r.get(12)?,
        iin_checked: r.get(13)?,
        key_version: r.get(14)?,
        iin_enc: r.get(15)?,
        session_enc: r.get(16)?,
        purpose_enc: r.get(17)?,
        error_enc: r.get(18)?,
    })
}

/// Inserts a queue item; returns false when its request is already queued.
pub fn insert_queue(conn: &Connection, q: &QueueRow) -> Result<bool, StoreError> {
    let n = exec(
        conn,
        &format!(
            "INSERT OR IGNORE INTO queue ({QUEUE_COLUMNS}) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19)"
        ),
        params![
            q.id,
            q.subject,
            q.request,
            ms(&q.queued_at)?,
            ms(&q.deadline)?,
            q.state,
            q.attempts,
            ms(&q.next_try_at)?,
            q.claimed_by,
            q.claimed_until.as_deref().map(ms).transpose()?,
            q.last_status,
            q.operator,
            q.host,
            q.iin_checked,
            q.key_version,
            q.iin_enc,
            q.session_enc,
            q.purpose_enc,
            q.error_enc,
        ],
    )?;
    Ok(n == 1)
}

/// The queue item of one request, if queued.
pub fn queue_by_request(conn: &Connection, request: &[u8]) -> Result<Option<QueueRow>, StoreError> {
    Ok(conn
        .query_row(
            &format!("SELECT {QUEUE_COLUMNS} FROM queue WHERE request = ?1"),
            params![request],
            queue_from_row,
        )
        .optional()?)
}

/// One queue item by id.
pub fn queue_by_id(conn: &Connection, id: &str) -> Result<Option<QueueRow>, StoreError> {
    Ok(conn
        .query_row(
            &format!("SELECT {QUEUE_COLUMNS} FROM queue WHERE id = ?1"),
            params![id],
            queue_from_row,
        )
        .optional()?)
}

/// Every queue item, soonest deadline first.
pub fn queue_all(conn: &Connection) -> Result<Vec<QueueRow>, StoreError> {
    let mut st = conn.prepare_cached(&format!(
        "SELECT {QUEUE_COLUMNS} FROM queue ORDER BY deadline, queued_at, id"
    ))?;
    let rows = st
        .query_map([], queue_from_row)?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

/// Marks waiting items past their deadline as expired, unless claimed by a
/// live process; returns how many.
pub fn expire_queue(conn: &Connection, now: &str) -> Result<usize, StoreError> {
    Ok(exec(
        conn,
        "UPDATE queue SET state = 'expired', claimed_by = NULL, claimed_until = NULL \
         WHERE state = 'waiting' AND deadline <= ?1 \
           AND (claimed_by IS NULL OR claimed_until <= ?1)",
        params![ms(now)?],
    )?)
}

/// Up to `limit` items that may be sent now, soonest deadline first: waiting,
/// due, before their deadline, and not claimed (or, with `in_doubt`, claimed
/// by a process whose claim ran out).
pub fn queue_due(
    conn: &Connection,
    now: &str,
    in_doubt: bool,
    limit: i64,
) -> Result<Vec<QueueRow>, StoreError> {
    let mut st = conn.prepare_cached(&format!(
        "SELECT {QUEUE_COLUMNS} FROM queue \
         WHERE state = 'waiting' AND deadline > ?1 AND next_try_at <= ?1 \
           AND (claimed_by IS NULL OR (?2 AND claimed_until <= ?1)) \
         ORDER BY deadline, next_try_at, id LIMIT ?3"
    ))?;
    let rows = st
        .query_map(params![ms(now)?, in_doubt, limit], queue_from_row)?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

/// Claims an item for `owner` until `until`, counting an attempt.
pub fn claim_queue(
    conn: &Connection,
    id: &str,
    owner: &str,
    until: &str,
) -> Result<(), StoreError> {
    exec(
        conn,
        "UPDATE queue SET claimed_by = ?2, claimed_until = ?3, attempts = attempts + 1 WHERE id = ?1",
        params![id, owner, ms(until)?],
    )?;
    Ok(())
}

/// Puts a claimed item back: unclaimed, with its attempt count, next try,
/// last status and sealed last error as given.
pub fn release_queue(conn: &Connection, q: &QueueRow) -> Result<(), StoreError> {
    exec(
        conn,
        "UPDATE queue SET claimed_by = NULL, claimed_until = NULL, attempts = ?2, next_try_at = ?3, \
         last_status = ?4, error_enc = ?5, key_version = ?6 WHERE id = ?1",
        params![
            q.id,
            q.attempts,
            ms(&q.next_try_at)?,
            q.last_status,
            q.error_enc,
            q.key_version
        ],
    )?;
    Ok(())
}

/// Leaves a claimed item in doubt: its claim ends at `at` but stays set, so
/// the item is never claimed again unless in-doubt items are asked for;
/// with its last status and sealed last error as given.
pub fn queue_in_doubt(conn: &Connection, q: &QueueRow, at: &str) -> Result<(), StoreError> {
    exec(
        conn,
        "UPDATE queue SET claimed_until = ?2, last_status = ?3, error_enc = ?4, key_version = ?5 \
         WHERE id = ?1",
        params![q.id, ms(at)?, q.last_status, q.error_enc, q.key_version],
    )?;
    Ok(())
}

/// Re-seals one queue row's sealed columns (rekey).
pub fn update_queue_sealed(conn: &Connection, q: &QueueRow) -> Result<(), StoreError> {
    exec(
        conn,
        "UPDATE queue SET key_version = ?2, iin_enc = ?3, session_enc = ?4, purpose_enc = ?5, \
         error_enc = ?6 WHERE id = ?1",
        params![
            q.id,
            q.key_version,
            q.iin_enc,
            q.session_enc,
            q.purpose_enc,
            q.error_enc
        ],
    )?;
    Ok(())
}

/// Deletes one queue item; returns whether it was there.
pub fn delete_queue(conn: &Connection, id: &str) -> Result<bool, StoreError> {
    Ok(exec(conn, "DELETE FROM queue WHERE id = ?1", params![id])? == 1)
}

/// The next try of every unclaimed waiting item that can still be sent.
/// Ends a live claim of `owner` now (its process is gone): the item is then in doubt.
pub fn queue_end_claim(
    conn: &Connection,
    id: &str,
    owner: &str,
    now: &str,
) -> Result<bool, StoreError> {
    let n = exec(
        conn,
        "UPDATE queue SET claimed_until = ?3 WHERE id = ?1 AND claimed_by = ?2 AND claimed_until > ?3",
        params![id, owner, ms(now)?],
    )?;
    Ok(n > 0)
}

pub fn queue_next_tries(conn: &Connection, now: &str) -> Result<Vec<(String, String)>, StoreError> {
    let mut st = conn.prepare_cached(
        "SELECT id, next_try_at FROM queue \
         WHERE state = 'waiting' AND deadline > ?1 AND next_try_at < deadline AND claimed_by IS NULL",
    )?;
    let rows = st
        .query_map(params![ms(now)?], |r| Ok((r.get(0)?, time_at(r, 1)?)))?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
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

/// When each expired queue item's deadline was (milliseconds since the
/// epoch), for `stats`.
pub fn expired_queue_times(
    conn: &Connection,
    from: Option<i64>,
    to: Option<i64>,
    now: i64,
) -> Result<Vec<i64>, StoreError> {
    // Waiting items past their deadline are expired too, marked or not yet.
    let mut st = conn.prepare_cached(
        "SELECT deadline FROM queue WHERE (state = 'expired' OR deadline <= ?3) \
         AND (?1 IS NULL OR deadline >= ?1) AND (?2 IS NULL OR deadline < ?2) ORDER BY deadline",
    )?;
    let rows = st
        .query_map(params![from, to, now], |r| r.get(0))?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

/// Pragmas for a long import on this connection only: in WAL mode,
/// `synchronous = NORMAL` still never corrupts the file, but a power cut may
/// lose the last commits (an import can simply be run again); a 64 MiB page
/// cache keeps the indexes being filled in memory.
pub fn bulk_pragmas(conn: &Connection) -> Result<(), StoreError> {
    conn.execute_batch("PRAGMA synchronous = NORMAL; PRAGMA cache_size = -65536;")?;
    Ok(())
}

/// The secondary indexes of `lookups`, which a large import drops and
/// builds again at its end (one sort each, instead of a million random
/// inserts). A process that dies in between leaves them missing;
/// [`open`] builds them again.
pub(crate) const LOOKUP_INDEXES: [&str; 4] = [
    "lookups_by_subject",
    "lookups_by_time",
    "lookups_latest",
    "lookups_other",
];

/// The `meta` key naming the import that dropped the indexes and will
/// build them again ([`owner::this_process`]).
const INDEXES_WITH: &str = "indexes_dropped_by";

/// Drops the secondary indexes and notes that this process will build
/// them again, in one transaction.
pub fn drop_lookup_indexes(conn: &Connection) -> Result<(), StoreError> {
    immediate(conn, |c| {
        for name in LOOKUP_INDEXES {
            c.execute_batch(&format!("DROP INDEX IF EXISTS {name};"))?;
        }
        exec(
            c,
            "INSERT OR REPLACE INTO meta (key, value) VALUES (?1, ?2)",
            params![INDEXES_WITH, owner::this_process()],
        )?;
        Ok::<_, StoreError>(())
    })
}

/// Whether the process named `by` ([`owner::this_process`]) is known to
/// run now. One of another host, or one gbdfl cannot read, is taken as
/// gone: its note is stale or not gbdfl's.
fn running(by: &str) -> bool {
    owner::liveness(by) == owner::Liveness::Alive
}

/// Creates whatever the schema has and the database lacks; cheap when
/// nothing is missing. Indexes a large import dropped are left to that
/// import while it runs (building them under it would take the write lock
/// for seconds and slow the import to a crawl; meanwhile queries are slow,
/// not refused); an import that died leaves them to whoever opens the
/// database next, or to `own` (the import itself at its end).
fn ensure_schema_as(conn: &Connection, own: bool) -> Result<(), StoreError> {
    let missing = |c: &Connection| -> Result<bool, StoreError> {
        let present: i64 = row1(
            c,
            "SELECT count(*) FROM sqlite_schema WHERE type = 'index' AND name IN (?1, ?2, ?3, ?4)",
            params![
                LOOKUP_INDEXES[0],
                LOOKUP_INDEXES[1],
                LOOKUP_INDEXES[2],
                LOOKUP_INDEXES[3]
            ],
            |r| r.get(0),
        )?;
        Ok(present < LOOKUP_INDEXES.len() as i64)
    };
    if !missing(conn)? {
        return Ok(());
    }
    let by: Option<String> = conn
        .query_row(
            "SELECT value FROM meta WHERE key = ?1",
            params![INDEXES_WITH],
            |r| r.get(0),
        )
        .optional()?;
    if let Some(by) = &by
        && !own
        && running(by)
    {
        return Ok(());
    }
    // The write lock first (a deferred transaction that read would fail at
    // once if another process had written since), then look again.
    sorting_in_parallel(conn, |conn| {
        immediate(conn, |c| {
            if missing(c)? {
                c.execute_batch(SCHEMA)?;
            }
            exec(c, "DELETE FROM meta WHERE key = ?1", params![INDEXES_WITH])?;
            Ok::<_, StoreError>(())
        })
    })
}

/// Page cache while indexes are built: the sort is cut into runs of about
/// this size, each sorted by a helper thread while the next is read.
const SORT_CACHE_KIB: u32 = 8 * 1024;

/// Runs `f` (which builds indexes) with SQLite's sorter allowed to use
/// helper threads, then puts this connection's settings back.
///
/// SQLite's sorter sorts runs in parallel only when they may go to temp
/// files (`temp_store = FILE`; in memory it uses no helper thread at all),
/// and only when a run fills the page cache, hence the smaller cache.
/// Building the three indexes at a million lookups takes about half the
/// time (BENCHMARKS.md). The runs hold index records only: blind indexes,
/// times, ids, key versions and sealed summaries, never a plaintext
/// personal value, since SQLite never sees one; the files are unlinked as
/// soon as they are opened.
///
/// If that fails for want of temp space (the temp folder full, missing or
/// not writable), `f` runs again sorting in memory, as it did before: a
/// full `/tmp` must not leave every later open of the database failing
/// to build the indexes.
fn sorting_in_parallel<T>(
    conn: &Connection,
    f: impl Fn(&Connection) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    let setting = |name: &str| row1(conn, &format!("PRAGMA {name}"), [], |r| r.get::<_, i64>(0));
    let (temp_store, threads, cache) = (
        setting("temp_store")?,
        setting("threads")?,
        setting("cache_size")?,
    );
    let helpers = std::thread::available_parallelism().map_or(1, |n| n.get().min(4));
    conn.execute_batch(&format!(
        "PRAGMA temp_store = FILE; PRAGMA threads = {helpers}; PRAGMA cache_size = -{SORT_CACHE_KIB};"
    ))?;
    let out = f(conn);
    let back = conn.execute_batch(&format!(
        "PRAGMA temp_store = {temp_store}; PRAGMA threads = {threads}; PRAGMA cache_size = {cache};"
    ));
    match out {
        Err(e) if short_of_temp_space(&e) => {
            back?;
            f(conn)
        }
        // The build's own error, if any, says more than the restore's.
        out => {
            let out = out?;
            back?;
            Ok(out)
        }
    }
}

/// Whether `e` may come from SQLite's temp files: a full disk, a failed
/// write, or a temp file that could not be made. (A failed sync is not:
/// temp files are never synced.)
fn short_of_temp_space(e: &StoreError) -> bool {
    use rusqlite::ffi;
    let (StoreError::WriteFailed(rusqlite::Error::SqliteFailure(f, _))
    | StoreError::Sqlite(rusqlite::Error::SqliteFailure(f, _))) = e
    else {
        return false;
    };
    f.code == rusqlite::ErrorCode::DiskFull
        || f.code == rusqlite::ErrorCode::CannotOpen
        || matches!(
            f.extended_code,
            ffi::SQLITE_IOERR_WRITE | ffi::SQLITE_IOERR_GETTEMPPATH
        )
}

/// [`ensure_schema_as`] by a process opening the database.
pub fn ensure_schema(conn: &Connection) -> Result<(), StoreError> {
    ensure_schema_as(conn, false)
}

/// [`ensure_schema_as`] by the import that dropped the indexes.
pub fn rebuild_lookup_indexes(conn: &Connection) -> Result<(), StoreError> {
    ensure_schema_as(conn, true)
}

/// A VALID lookup as the covering index `lookups_latest` holds it,
/// borrowed for the length of one call.
#[derive(Debug, Clone, Copy)]
pub struct LatestRow<'a> {
    pub subject: &'a [u8],
    pub id: &'a str,
    pub key_version: i64,
    /// Milliseconds since the epoch.
    pub requested_at: i64,
    /// Milliseconds since the epoch.
    pub answered_at: Option<i64>,
    pub summary_enc: Option<&'a [u8]>,
}

/// The row of [`LatestRow`] held while the walk looks at the next one; its
/// buffers are reused from row to row.
#[derive(Default)]
struct HeldRow {
    subject: Vec<u8>,
    id: String,
    key_version: i64,
    requested_at: i64,
    answered_at: Option<i64>,
    summary_enc: Option<Vec<u8>>,
}

impl HeldRow {
    fn hold(&mut self, r: &rusqlite::Row<'_>) -> rusqlite::Result<()> {
        fn put(to: &mut Vec<u8>, from: &[u8]) {
            to.clear();
            to.extend_from_slice(from);
        }
        put(&mut self.subject, r.get_ref(0)?.as_blob()?);
        let id = r.get_ref(1)?.as_str()?;
        self.id.clear();
        self.id.push_str(id);
        self.key_version = r.get(2)?;
        self.answered_at = r.get(3)?;
        self.requested_at = r.get(4)?;
        match r.get_ref(5)?.as_blob_or_null()? {
            Some(b) => put(self.summary_enc.get_or_insert_with(Vec::new), b),
            None => self.summary_enc = None,
        }
        Ok(())
    }

    fn as_row(&self) -> LatestRow<'_> {
        LatestRow {
            subject: &self.subject,
            id: &self.id,
            key_version: self.key_version,
            requested_at: self.requested_at,
            answered_at: self.answered_at,
            summary_enc: self.summary_enc.as_deref(),
        }
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
            "SELECT subject, id, key_version, answered_at, requested_at, summary_enc FROM lookups \
             WHERE source = 'service' AND outcome = 'answered' AND status = 'VALID' \
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
/// VALID answer of the service), with its binding and sealed IIN, reading
/// only the covering index `lookups_other`.
pub fn each_other_lookup(
    conn: &Connection,
    f: &mut dyn FnMut(&LookupRow) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    let mut st = conn.prepare_cached(
        "SELECT id, key_version, subject, requested_at, answered_at, source, outcome, status, \
         reached, cached_from, iin_enc FROM lookups \
         WHERE source IS NOT 'service' OR outcome IS NOT 'answered' OR status IS NOT 'VALID'",
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

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_store(conn: &Connection) -> (i64, i64, i64) {
        let get = |p: &str| row1(conn, &format!("PRAGMA {p}"), [], |r| r.get(0)).unwrap();
        (get("temp_store"), get("threads"), get("cache_size"))
    }

    /// Settings as `configure` and `bulk_pragmas` leave them.
    fn connection() -> Connection {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch("PRAGMA temp_store = MEMORY; PRAGMA cache_size = -65536;")
            .unwrap();
        conn
    }

    #[test]
    fn index_builds_sort_in_temp_files_on_helper_threads_then_settings_come_back() {
        let conn = connection();
        let before = temp_store(&conn);
        assert_eq!(before.0, 2, "temp_store = MEMORY");
        let during = sorting_in_parallel(&conn, |c| Ok(temp_store(c))).unwrap();
        assert_eq!(during.0, 1, "temp_store = FILE while indexes are built");
        assert!(during.1 >= 1, "helper threads allowed: {during:?}");
        assert_eq!(during.2, -i64::from(SORT_CACHE_KIB));
        assert_eq!(temp_store(&conn), before);
    }

    #[test]
    fn short_of_temp_space_the_indexes_are_built_sorting_in_memory() {
        let conn = connection();
        let full = || {
            StoreError::from(rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_FULL),
                None,
            ))
        };
        let tries = std::cell::RefCell::new(Vec::new());
        let built = sorting_in_parallel(&conn, |c| {
            let settings = temp_store(c);
            tries.borrow_mut().push(settings);
            if settings.0 == 1 {
                Err(full())
            } else {
                Ok("built")
            }
        });
        assert_eq!(built.unwrap(), "built");
        let tries = tries.into_inner();
        assert_eq!(tries.len(), 2, "{tries:?}");
        assert_eq!(
            tries[1],
            temp_store(&conn),
            "the second try sorts in memory"
        );
        assert_eq!(tries[1].0, 2);

        // Other errors (a failed sync of the database, say) are not tried
        // again, and come back as they were.
        for other in [
            StoreError::from(rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_IOERR_FSYNC),
                None,
            )),
            StoreError::Sqlite(rusqlite::Error::QueryReturnedNoRows),
        ] {
            let want = other.to_string();
            let other = std::cell::RefCell::new(Some(other));
            let once = std::cell::Cell::new(0);
            let err = sorting_in_parallel(&conn, |_| -> Result<(), StoreError> {
                once.set(once.get() + 1);
                Err(other.borrow_mut().take().expect("called once"))
            });
            assert_eq!(err.unwrap_err().to_string(), want);
            assert_eq!(once.get(), 1);
            assert_eq!(temp_store(&conn).0, 2, "settings back after an error");
        }
    }
}
