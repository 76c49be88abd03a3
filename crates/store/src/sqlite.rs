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

use super::StoreError;

/// The schema version this binary writes (schema.sql).
pub const SCHEMA_VERSION: i64 = 5;
/// `PRAGMA application_id` of a gbdfl database: "gbdf" in ASCII.
pub const APPLICATION_ID: i64 = 0x6762_6466;
const SCHEMA: &str = include_str!("../../../schema.sql");

/// A lookup row as stored: sealed columns stay sealed here.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct LookupRow {
    pub id: String,
    pub subject: Vec<u8>,
    pub requested_at: String,
    pub answered_at: Option<String>,
    pub operator: String,
    pub host: String,
    pub source: String,
    pub outcome: String,
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
    /// Whether the request reached the service: `no`, `maybe`, `yes`
    /// (schema version 4; NULL for cache answers and older rows).
    pub reached: Option<String>,
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
        status: r.get(8)?,
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
    if version < SCHEMA_VERSION {
        migrate(&conn, version)?;
    }
    ensure_schema(&conn)?;
    Ok(conn)
}

/// The page size of a new database.
const PAGE_SIZE: u32 = 16384;

/// Creates (or opens) the database file and applies the schema. Returns the
/// connection and whether the schema was newly applied.
pub fn create(path: &Path, busy: Duration) -> Result<(Connection, bool), StoreError> {
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
        migrate(&conn, version)?;
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
        params![super::now_text()],
    )?;
    tx.commit()?;
    Ok((conn, true))
}

/// Brings an older schema up to SCHEMA_VERSION in one transaction.
fn migrate(conn: &Connection, from: i64) -> Result<(), StoreError> {
    if from >= SCHEMA_VERSION {
        return Ok(());
    }
    // Version 2 added `queue`; version 3 adds `lookups.summary_enc` and
    // replaces the index `lookups_valid` by `lookups_latest`, which covers
    // the summary. Table changes go here, before the schema's CREATE ... IF
    // NOT EXISTS statements add what is missing. Rows from before version 3
    // keep `summary_enc` NULL; readers fall back to the whole answer.
    let tx = conn.unchecked_transaction()?;
    let has_summary: bool = tx.query_row(
        "SELECT count(*) FROM pragma_table_info('lookups') WHERE name = 'summary_enc'",
        [],
        |r| r.get::<_, i64>(0).map(|n| n > 0),
    )?;
    if !has_summary {
        tx.execute_batch("ALTER TABLE lookups ADD COLUMN summary_enc BLOB;")?;
    }
    // Version 4 adds `lookups.reached`: whether the request reached the
    // service, as the client classified it. Older rows keep NULL (the store
    // reads them as before, docs/FORMAT.md).
    let has_reached: bool = tx.query_row(
        "SELECT count(*) FROM pragma_table_info('lookups') WHERE name = 'reached'",
        [],
        |r| r.get::<_, i64>(0).map(|n| n > 0),
    )?;
    if !has_reached {
        tx.execute_batch(
            "ALTER TABLE lookups ADD COLUMN reached TEXT CHECK (reached IN ('no', 'maybe', 'yes'));",
        )?;
    }
    // Version 5 adds `os_user` to `lookups` and `audit`: the OS user of the
    // process beside the declared operator. Older rows keep NULL; the audit
    // MAC covers it only when present, so older entries still verify.
    for table in ["lookups", "audit"] {
        let has_os_user: bool = tx.query_row(
            "SELECT count(*) FROM pragma_table_info(?1) WHERE name = 'os_user'",
            [table],
            |r| r.get::<_, i64>(0).map(|n| n > 0),
        )?;
        if !has_os_user {
            tx.execute_batch(&format!("ALTER TABLE {table} ADD COLUMN os_user TEXT;"))?;
        }
    }
    tx.execute_batch("DROP INDEX IF EXISTS lookups_valid;")?;
    tx.execute_batch(SCHEMA)?;
    tx.execute_batch(&format!("PRAGMA user_version = {SCHEMA_VERSION};"))?;
    tx.commit()?;
    Ok(())
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
                created_at: r.get(3)?,
                retired_at: r.get(4)?,
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
            k.created_at,
            k.retired_at
        ],
    )?;
    Ok(())
}

pub fn retire_key(conn: &Connection, version: i64, at: &str) -> Result<(), StoreError> {
    exec(
        conn,
        "UPDATE keys SET retired_at = ?2 WHERE version = ?1",
        params![version, at],
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
/// purge) names itself while it runs: `writing:PID HOST`.
const WRITING: &str = "writing:";

/// Notes in `meta`, in a transaction of its own (so that others can read
/// it while the writer holds the lock), that this process is about to
/// write for long: `what` is the command.
pub fn note_writer(conn: &Connection, what: &str) -> Result<(), StoreError> {
    immediate(conn, |c| {
        exec(
            c,
            "INSERT OR REPLACE INTO meta (key, value) VALUES (?1, ?2)",
            params![
                format!("{WRITING}{}", this_process()),
                format!("{what} {}", super::now_text())
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
            params![format!("{WRITING}{}", this_process())],
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
    let me = this_process();
    for (by, what) in notes {
        if by == me || !running(&by) {
            continue;
        }
        let (pid, host) = by.split_once(' ').unwrap_or((&by, ""));
        let (command, since) = what.split_once(' ').unwrap_or((&what, ""));
        let since = match since {
            "" => String::new(),
            t => format!(", started {t}"),
        };
        return format!("a running `gbdfl {command}` (PID {pid} on {host}{since})");
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
}

const AUDIT_COLUMNS: &str = "seq, id, at, operator, host, command, subject, outcome, exit_code, \
     paid_call, records, key_version, purpose_enc, error_enc, mac, os_user";

fn audit_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<AuditRow> {
    Ok(AuditRow {
        seq: r.get(0)?,
        id: r.get(1)?,
        at: r.get(2)?,
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
            "INSERT INTO audit ({AUDIT_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)"
        ),
        params![
            a.seq,
            a.id,
            a.at,
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
            a.os_user
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
        .query_map(params![cutoff], |r| r.get(0))?
        .collect::<Result<Vec<i64>, _>>()?;
    ids.sort_unstable();
    Ok(ids)
}

/// Deletes the lookups of these row ids that are still requested before
/// `cutoff` (a row id freed meanwhile may have been given to a new
/// lookup); returns how many were calls to the service and how many cache
/// answers. Cache answers that named a deleted lookup as their source keep
/// NULL there (`ON DELETE SET NULL`, found through
/// `lookups_by_cached_from`).
pub fn delete_lookups_by_rowid(
    conn: &Connection,
    rowids: &[i64],
    cutoff: &str,
) -> Result<(u64, u64), StoreError> {
    let mut st = conn.prepare_cached(
        "DELETE FROM lookups WHERE rowid = ?1 AND requested_at < ?2 RETURNING source = 'cache'",
    )?;
    let (mut paid, mut cached) = (0u64, 0u64);
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
        params![cutoff],
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
        params![cutoff, now],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    Ok((expired.max(0) as u64, waiting.max(0) as u64))
}

/// Deletes expired queue items queued before `cutoff`; returns how many.
pub fn delete_expired_queue_before(conn: &Connection, cutoff: &str) -> Result<u64, StoreError> {
    Ok(exec(
        conn,
        "DELETE FROM queue WHERE state = 'expired' AND queued_at < ?1",
        params![cutoff],
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
        .query_map(params![cutoff, now], |r| r.get(0))?
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
/// further in the future than [`super::FUTURE_TOLERANCE`] is not believed.
pub fn latest_valid(conn: &Connection, subject: &[u8]) -> Result<Option<LookupRow>, StoreError> {
    let row = conn
        .query_row(
            &format!(
                "SELECT {LOOKUP_COLUMNS} FROM lookups \
                 WHERE subject = ?1 AND source = 'service' AND outcome = 'answered' AND status = 'VALID' \
                 AND answered_at <= ?2 \
                 ORDER BY answered_at DESC, id DESC LIMIT 1"
            ),
            params![subject, super::latest_believed()],
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
        params![from, to],
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

const QUEUE_COLUMNS: &str = "id, subject, request, queued_at, deadline, state, attempts, next_try_at, \
     claimed_by, claimed_until, last_status, operator, host, iin_checked, key_version, \
     iin_enc, session_enc, purpose_enc, error_enc";

fn queue_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<QueueRow> {
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
            q.queued_at,
            q.deadline,
            q.state,
            q.attempts,
            q.next_try_at,
            q.claimed_by,
            q.claimed_until,
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
        params![now],
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
        .query_map(params![now, in_doubt, limit], queue_from_row)?
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
        params![id, owner, until],
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
            q.next_try_at,
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
        params![q.id, at, q.last_status, q.error_enc, q.key_version],
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
        params![id, owner, now],
    )?;
    Ok(n > 0)
}

pub fn queue_next_tries(conn: &Connection, now: &str) -> Result<Vec<(String, String)>, StoreError> {
    let mut st = conn.prepare_cached(
        "SELECT id, next_try_at FROM queue \
         WHERE state = 'waiting' AND deadline > ?1 AND next_try_at < deadline AND claimed_by IS NULL",
    )?;
    let rows = st
        .query_map(params![now], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

/// One row per lookup for `stats`: (requested_at, source, outcome, status,
/// reached, and the whole row of a call recorded before schema version 4
/// that may never have been sent, whose detail tells).
pub type StatRow = (
    String,
    String,
    String,
    Option<String>,
    Option<String>,
    Option<LookupRow>,
);

/// Calls `f` with the plaintext columns of every lookup requested in
/// `[from, to)`; the whole row only where `stats` must open the detail.
pub fn each_lookup_stat<E: From<StoreError>>(
    conn: &Connection,
    from: Option<&str>,
    to: Option<&str>,
    f: &mut dyn FnMut(StatRow) -> Result<(), E>,
) -> Result<(), E> {
    let mut st = conn
        .prepare_cached(
            "SELECT id, requested_at, source, outcome, status, http_status, reached FROM lookups \
             WHERE (?1 IS NULL OR requested_at >= ?1) AND (?2 IS NULL OR requested_at < ?2) \
             ORDER BY requested_at, id",
        )
        .map_err(StoreError::from)?;
    let mut rows = st.query(params![from, to]).map_err(StoreError::from)?;
    while let Some(r) = rows.next().map_err(StoreError::from)? {
        let id: String = r.get(0).map_err(StoreError::from)?;
        let outcome: String = r.get(3).map_err(StoreError::from)?;
        let http: Option<i64> = r.get(5).map_err(StoreError::from)?;
        let reached: Option<String> = r.get(6).map_err(StoreError::from)?;
        let full = if reached.is_none() && outcome == "unavailable" && http.is_none() {
            lookup_by_id(conn, &id)?
        } else {
            None
        };
        f((
            r.get(1).map_err(StoreError::from)?,
            r.get(2).map_err(StoreError::from)?,
            outcome,
            r.get(4).map_err(StoreError::from)?,
            reached,
            full,
        ))?;
    }
    Ok(())
}

/// Expired queue items by the day they were queued (for `stats`).
pub fn expired_queue_times(
    conn: &Connection,
    from: Option<&str>,
    to: Option<&str>,
    now: &str,
) -> Result<Vec<String>, StoreError> {
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
const LOOKUP_INDEXES: [&str; 4] = [
    "lookups_by_subject",
    "lookups_by_time",
    "lookups_latest",
    "lookups_by_cached_from",
];

/// The one of [`LOOKUP_INDEXES`] a bulk change never drops.
const KEPT_INDEX: &str = "lookups_by_cached_from";

/// The `meta` key naming the import that dropped the indexes and will
/// build them again: `PID HOST`.
const INDEXES_WITH: &str = "indexes_dropped_by";

/// This process as [`INDEXES_WITH`] names it.
fn this_process() -> String {
    format!(
        "{} {}",
        std::process::id(),
        gethostname::gethostname().to_string_lossy()
    )
}

/// Drops the secondary indexes and notes that this process will build
/// them again, in one transaction.
pub fn drop_lookup_indexes(conn: &Connection) -> Result<(), StoreError> {
    immediate(conn, |c| {
        // The index on `cached_from` stays: small (cache answers only),
        // and without it every deleted lookup would read the whole table.
        for name in LOOKUP_INDEXES.iter().filter(|&&n| n != KEPT_INDEX) {
            c.execute_batch(&format!("DROP INDEX IF EXISTS {name};"))?;
        }
        exec(
            c,
            "INSERT OR REPLACE INTO meta (key, value) VALUES (?1, ?2)",
            params![INDEXES_WITH, this_process()],
        )?;
        Ok::<_, StoreError>(())
    })
}

/// Whether the process named `by` (`PID HOST`) runs now on this host.
fn running(by: &str) -> bool {
    let Some((pid, host)) = by.split_once(' ') else {
        return false;
    };
    let Ok(pid) = pid.parse::<i32>() else {
        return false;
    };
    if host != gethostname::gethostname().to_string_lossy() || pid <= 0 {
        return false;
    }
    #[cfg(unix)]
    {
        // SAFETY: signal 0 only asks whether the process exists.
        let r = unsafe { libc::kill(pid, 0) };
        r == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
    }
    #[cfg(not(unix))]
    true
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

/// The latest VALID lookup of one person, as the covering index holds it,
/// borrowed for the length of one call.
#[derive(Debug, Clone, Copy)]
pub struct LatestRow<'a> {
    pub id: &'a str,
    pub key_version: i64,
    pub answered_at: Option<&'a str>,
    pub summary_enc: Option<&'a [u8]>,
}

/// The row of [`LatestRow`] held while the walk looks at the next one; its
/// buffers are reused from row to row.
#[derive(Default)]
struct HeldRow {
    subject: Vec<u8>,
    id: String,
    key_version: i64,
    answered_at: Option<String>,
    summary_enc: Option<Vec<u8>>,
}

impl HeldRow {
    fn hold(&mut self, r: &rusqlite::Row<'_>) -> rusqlite::Result<()> {
        fn put(to: &mut Vec<u8>, from: &[u8]) {
            to.clear();
            to.extend_from_slice(from);
        }
        fn put_text(to: &mut Option<String>, from: Option<&str>) {
            match from {
                Some(from) => {
                    let s = to.get_or_insert_with(String::new);
                    s.clear();
                    s.push_str(from);
                }
                None => *to = None,
            }
        }
        put(&mut self.subject, r.get_ref(0)?.as_blob()?);
        let id = r.get_ref(1)?.as_str()?;
        self.id.clear();
        self.id.push_str(id);
        self.key_version = r.get(2)?;
        put_text(&mut self.answered_at, r.get_ref(3)?.as_str_or_null()?);
        match r.get_ref(4)?.as_blob_or_null()? {
            Some(b) => put(self.summary_enc.get_or_insert_with(Vec::new), b),
            None => self.summary_enc = None,
        }
        Ok(())
    }

    fn as_row(&self) -> LatestRow<'_> {
        LatestRow {
            id: &self.id,
            key_version: self.key_version,
            answered_at: self.answered_at.as_deref(),
            summary_enc: self.summary_enc.as_deref(),
        }
    }
}

/// Calls `f` with the latest VALID lookup of every subject, in subject
/// order, reading only the covering partial index `lookups_latest`. Unlike
/// [`latest_valid`], it believes every answer time: reports are made as of
/// a day (`--as-of`), which may lie ahead of this machine's clock.
pub fn each_latest_summary<E: From<StoreError>>(
    conn: &Connection,
    f: &mut dyn FnMut(LatestRow<'_>) -> Result<(), E>,
) -> Result<(), E> {
    // A plain walk of the index in its own order (subject, answered_at,
    // id), keeping the last row of each subject: the row `latest_valid`
    // picks (newest answer, ties by the greatest id). Several times faster
    // than `GROUP BY subject` with max(answered_at), which SQLite runs as
    // an aggregate over the same walk (BENCHMARKS.md).
    let sql = |e: rusqlite::Error| E::from(StoreError::from(e));
    let mut st = conn
        .prepare_cached(
            "SELECT subject, id, key_version, answered_at, summary_enc FROM lookups \
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
        if holding && held.subject.as_slice() != subject {
            f(held.as_row())?;
        }
        held.hold(r).map_err(sql)?;
        holding = true;
    }
    if holding {
        f(held.as_row())?;
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

/// Calls `f` with the id, key version and sealed answer of every lookup
/// that has one, in storage order (the benchmark's floor).
pub fn each_sealed_answer(
    conn: &Connection,
    f: &mut dyn FnMut(String, i64, Vec<u8>) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    let mut st = conn.prepare_cached(
        "SELECT id, key_version, response_enc FROM lookups WHERE response_enc IS NOT NULL",
    )?;
    let mut rows = st.query([])?;
    while let Some(r) = rows.next()? {
        f(r.get(0)?, r.get(1)?, r.get(2)?)?;
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
