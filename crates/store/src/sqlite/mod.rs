//! The SQLite backend: every SQL statement gbdfl runs is in this module
//! (apart from those of [`crate::migrate`], which reads the tables of the
//! older formats it migrates).
//!
//! This file sets a connection up and keeps the schema; each table's rows
//! and statements have a file of their own: [`lookups`], [`queue`],
//! [`audit`], [`keys`] (with the dictionaries and `meta`), and [`push`]
//! (the optional list of lookups to push to a replica).
//!
//! Each connection gets WAL, `synchronous = FULL`, foreign keys,
//! secure_delete and in-memory temp storage ([`configure`]).
//!
//! Rules this module keeps: it sees only sealed rows (blobs, blind
//! indexes, times and enumerated values), never plaintext personal data
//! (`privacy::database_and_wal_hold_no_iin_name_document_number_or_session_id`
//! in tests/cli), and a purge leaves no old ciphertext behind
//! (`audit::purge_leaves_no_purged_ciphertext_in_the_file_or_wal`); it
//! creates the database file owner-only
//! (`init::init_creates_owner_only_key_and_database_and_is_safe_to_repeat`)
//! and leaves another program's file byte for byte as it was
//! (`audit_first::issue_17_another_programs_database_is_left_byte_for_byte`),
//! as it does a database of a newer format
//! (`hostile::a_database_from_a_newer_schema_is_refused_and_left_alone`);
//! sorts spill to temp files only while indexes are built, and go back
//! to memory when temp space runs out
//! (`index_builds_sort_in_temp_files_on_helper_threads_then_settings_come_back`,
//! `short_of_temp_space_the_indexes_are_built_sorting_in_memory` below).

use std::path::Path;
use std::time::Duration;

use rusqlite::{
    Connection, OpenFlags, OptionalExtension, Transaction, TransactionBehavior, params,
};

use super::StoreError;
use super::owner;

mod audit;
mod keys;
mod lookups;
mod push;
mod queue;

pub use audit::*;
pub use keys::*;
pub use lookups::*;
pub use push::*;
pub use queue::*;

/// The schema version this binary writes (schema.sql): the at-rest format
/// version of docs/FORMAT.md.
pub const SCHEMA_VERSION: i64 = 7;
/// `PRAGMA application_id` of a gbdfl database: "gbdf" in ASCII.
pub const APPLICATION_ID: i64 = 0x6762_6466;
/// The whole schema of the current format (schema.sql): every table and
/// index, each created only if missing.
pub(crate) const SCHEMA: &str = include_str!("../../../../schema.sql");

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

/// Which format a row is read in: the current one, or version 5 (times
/// as RFC 3339 text, any `[A-Z0-9_]` status), which only the migration reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stored {
    /// Format version 6 or 7 (the same rows).
    Current,
    /// Format version 5.
    V5,
}

/// Column `i` of `r`, a time (or NULL) as stored in `format`, in
/// milliseconds since the epoch.
fn ms_in(r: &rusqlite::Row<'_>, i: usize, format: Stored) -> rusqlite::Result<Option<i64>> {
    match format {
        Stored::Current => r.get(i),
        Stored::V5 => r
            .get::<_, Option<String>>(i)?
            .as_deref()
            .map(ms)
            .transpose(),
    }
}

/// Column `i` of `r`, a time (or NULL) as stored in `format`, as text.
fn time_in(r: &rusqlite::Row<'_>, i: usize, format: Stored) -> rusqlite::Result<Option<String>> {
    match format {
        Stored::Current => time_opt_at(r, i),
        Stored::V5 => r.get(i),
    }
}

/// Column `i` of `r`, a stored time or NULL, as text.
fn time_opt_at(r: &rusqlite::Row<'_>, i: usize) -> rusqlite::Result<Option<String>> {
    r.get::<_, Option<i64>>(i)?.map(text_of).transpose()
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

/// Whether the file at `path` holds a gbdfl database, read without
/// writing to it (an absent or empty file, a blank SQLite file or another
/// program's file holds none).
pub fn probe_holds_database(path: &Path) -> Result<bool, StoreError> {
    Ok(probe(path)? == Found::Gbdfl)
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
    // (version 6 sealed every value again).
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

/// The version the database's schema is at (`PRAGMA user_version`).
pub fn user_version(conn: &Connection) -> Result<i64, StoreError> {
    Ok(row1(conn, "PRAGMA user_version", [], |r| r.get(0))?)
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
