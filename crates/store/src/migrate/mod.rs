//! Bringing a database of an older format version to the current one (7).
//!
//! Versions 2 to 4 become version 5 without the key (`to_v5` is handed
//! only the connection); version 5 becomes the current version with it,
//! since every sealed value is sealed again under its new associated data
//! (the tables are made anew, of the current schema); version 6 becomes
//! version 7 in place, without touching a row ([`Store::migrate_to_v7`]:
//! only the `CHECK` of `lookups.source` and two partial indexes change).
//!
//! Rules this module keeps: each step runs in one transaction, so a
//! migration killed at any moment leaves either the old version, readable
//! with its key, or the new one complete
//! (`migrate::a_migration_killed_at_any_moment_loses_nothing` in tests/cli,
//! for 5 to 7); a migrated database gives the answers a new one gives
//! (`migrate::a_version_5_database_gives_the_answers_a_new_one_gives`);
//! nothing is dropped: a value that does not open (altered before the
//! migration) is carried over as it was, and `check` names its lookup
//! (`a_value_that_does_not_open_is_carried_over_and_check_names_it`).

use std::sync::OnceLock;

use rusqlite::{Connection, params};

use super::sqlite::{self, LookupRow, QueueRow};
use super::{Outcome, Source, Store, StoreError, codec, crypto, legacy_reached};

/// The schema of format version 5, as it was: the target of the steps
/// from versions 2 to 4.
pub(crate) const SCHEMA_V5: &str = include_str!("schema-v5.sql");

/// The `meta` key holding when the database became format version 6
/// (milliseconds since the epoch): lookups requested before then have no
/// audit entry naming them.
pub const FORMAT6_SINCE: &str = "format6_since";

/// Rows of an old table deleted per transaction once a migration is done.
const DROP_STEP: u32 = 100_000;

/// Lookups between two calls of the progress hook.
const PROGRESS_EVERY: u64 = 2_000;

static PROGRESS: OnceLock<fn(u64, u64)> = OnceLock::new();

/// Sets what is called with (lookups done, lookups in all) while a
/// database of format version 5 (or older) is migrated, every value sealed
/// again: the command line draws a bar
/// on a terminal. Set once per process; later calls are ignored.
pub fn set_migration_progress(f: fn(u64, u64)) {
    let _ = PROGRESS.set(f);
}

fn progress(done: u64, total: u64) {
    if let Some(f) = PROGRESS.get() {
        f(done, total);
    }
}

/// Brings a database of version 2 to 4 to version 5, in one transaction.
pub(crate) fn to_v5(conn: &Connection, from: i64) -> Result<(), StoreError> {
    if from >= 5 {
        return Ok(());
    }
    // Version 3 added `lookups.summary_enc` (and `lookups_latest` in place
    // of `lookups_valid`), version 4 `lookups.reached`, version 5 `os_user`
    // in `lookups` and `audit`; version 2 added `queue`, which the schema's
    // CREATE ... IF NOT EXISTS makes.
    let tx = conn.unchecked_transaction()?;
    let has = |table: &str, column: &str| -> Result<bool, StoreError> {
        Ok(tx.query_row(
            "SELECT count(*) FROM pragma_table_info(?1) WHERE name = ?2",
            params![table, column],
            |r| r.get::<_, i64>(0).map(|n| n > 0),
        )?)
    };
    if !has("lookups", "summary_enc")? {
        tx.execute_batch("ALTER TABLE lookups ADD COLUMN summary_enc BLOB;")?;
    }
    if !has("lookups", "reached")? {
        tx.execute_batch(
            "ALTER TABLE lookups ADD COLUMN reached TEXT CHECK (reached IN ('no', 'maybe', 'yes'));",
        )?;
    }
    for table in ["lookups", "audit"] {
        if !has(table, "os_user")? {
            tx.execute_batch(&format!("ALTER TABLE {table} ADD COLUMN os_user TEXT;"))?;
        }
    }
    tx.execute_batch("DROP INDEX IF EXISTS lookups_valid;")?;
    tx.execute_batch(SCHEMA_V5)?;
    tx.execute_batch("PRAGMA user_version = 5;")?;
    tx.commit()?;
    Ok(())
}

impl Store {
    /// Migrates a database of format version 5 to the current version in
    /// one transaction, unless another process did it first. Returns how
    /// many lookups it carried over. (The tables it makes are those of the
    /// current schema, so it goes to the current version in one step.)
    ///
    /// Long on purpose: the steps of the one transaction (rename, create,
    /// copy each table, check, mark), in their order, read best together.
    pub(crate) fn migrate_from_v5(&self) -> Result<u64, StoreError> {
        // A larger page cache for the one long transaction, as an import.
        // Foreign keys off (a setting of the connection, outside any
        // transaction): with them on, dropping the old `lookups`, which
        // referred to itself (`cached_from`), deletes it row by row, each
        // delete looking for the rows naming it.
        let cache: i64 = self.conn.query_row("PRAGMA cache_size", [], |r| r.get(0))?;
        self.conn
            .execute_batch("PRAGMA cache_size = -65536; PRAGMA foreign_keys = OFF;")?;
        let done = sqlite::immediate(&self.conn, |c| {
            let version: i64 = c.query_row("PRAGMA user_version", [], |r| r.get(0))?;
            if version != 5 {
                return Ok(0);
            }
            let now = self.now();
            c.execute_batch(
                "DROP INDEX IF EXISTS lookups_by_subject;
                 DROP INDEX IF EXISTS lookups_by_time;
                 DROP INDEX IF EXISTS lookups_latest;
                 DROP INDEX IF EXISTS lookups_by_cached_from;
                 DROP INDEX IF EXISTS queue_by_deadline;
                 ALTER TABLE lookups RENAME TO v5_lookups;
                 ALTER TABLE queue RENAME TO v5_queue;
                 ALTER TABLE audit RENAME TO v5_audit;
                 ALTER TABLE keys RENAME TO v5_keys;",
            )?;
            c.execute_batch(sqlite::SCHEMA)?;
            // Filled without the secondary indexes, then indexed at once.
            for name in sqlite::LOOKUP_INDEXES {
                c.execute_batch(&format!("DROP INDEX IF EXISTS {name};"))?;
            }
            let mut st = c.prepare(
                "SELECT version, check_value, wrapped_keys, created_at, retired_at FROM v5_keys",
            )?;
            let keys = st
                .query_map([], |r| {
                    Ok(sqlite::KeyRow {
                        version: r.get(0)?,
                        check_value: r.get(1)?,
                        wrapped_keys: r.get(2)?,
                        created_at: r.get(3)?,
                        retired_at: r.get(4)?,
                    })
                })?
                .collect::<Result<Vec<_>, _>>()?;
            drop(st);
            for k in &keys {
                sqlite::insert_key(c, k)?;
            }
            sqlite::insert_dictionaries(c)?;
            let lookups = self.carry_lookups(c)?;
            self.carry_queue(c)?;
            carry_audit(c)?;
            // The old tables go after the commit, in bounded steps
            // ([`Store::drop_v5_tables`]): dropping a million rows at once,
            // every freed page zeroed, held them all in memory.
            // The secondary indexes of `lookups` are built after the commit,
            // as after a large import (`sqlite::ensure_schema`: sorted in
            // temp files, not in memory); a crash before that leaves them
            // to the next open.
            // What foreign keys would have refused, had they been on.
            let broken: i64 = c.query_row(
                "SELECT (SELECT count(*) FROM pragma_foreign_key_check('lookups')) \
                          + (SELECT count(*) FROM pragma_foreign_key_check('queue')) \
                          + (SELECT count(*) FROM pragma_foreign_key_check('audit'))",
                [],
                |r| r.get(0),
            )?;
            if broken > 0 {
                return Err(StoreError::Corrupt {
                    id: format!("{broken} rows"),
                    column: "key_version",
                    reason: "they name a key version the database does not have; the database was left as it was".into(),
                });
            }
            c.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES (?1, ?2)",
                params![FORMAT6_SINCE, now.timestamp_millis().to_string()],
            )?;
            c.execute_batch(&format!(
                "PRAGMA user_version = {};",
                sqlite::SCHEMA_VERSION
            ))?;
            let entry = crate::AuditEntry {
                command: "migrate".into(),
                operator: gbdfl_core::os_user::name(),
                host: gethostname::gethostname().to_string_lossy().into_owned(),
                records: lookups,
                os_user: Some(gbdfl_core::os_user::described().to_owned()),
                ..Default::default()
            };
            self.append_audit_in(c, &entry)?;
            Ok::<_, StoreError>(lookups)
        });
        self.conn.execute_batch(&format!(
            "PRAGMA cache_size = {cache}; PRAGMA foreign_keys = ON;"
        ))?;
        done
    }

    /// Migrates a database of format version 6 to version 7 in place, in
    /// one transaction, unless another process did it first: the `CHECK`
    /// of `lookups.source` also allows `org`, and the partial indexes
    /// `lookups_latest` and `lookups_other` take the answers of the
    /// organisation cache as VALID. No row is written: at a million
    /// lookups it took 11 s on a loaded 2-core machine, about half of it
    /// the `quick_check` of the table, half building the two indexes.
    ///
    /// The `CHECK` is changed the way SQLite documents for it
    /// (<https://www.sqlite.org/lang_altertable.html>, "Making Other Kinds
    /// Of Table Schema Changes"): the table's text in `sqlite_schema` is
    /// edited under `writable_schema`, the schema cookie raised, and the
    /// table checked (`quick_check`) before the commit. The two indexes are
    /// dropped here and built again right after the commit, as after a
    /// large import (`sqlite::ensure_schema`); a crash in between leaves
    /// them to the next open.
    pub(crate) fn migrate_to_v7(&self) -> Result<(), StoreError> {
        sqlite::immediate(&self.conn, |c| {
            if sqlite::user_version(c)? != 6 {
                return Ok(());
            }
            widen_source_check(c)?;
            c.execute_batch(
                "DROP INDEX IF EXISTS lookups_latest; DROP INDEX IF EXISTS lookups_other;",
            )?;
            let lookups: i64 = c.query_row("SELECT count(*) FROM lookups", [], |r| r.get(0))?;
            c.execute_batch("PRAGMA user_version = 7;")?;
            let entry = crate::AuditEntry {
                command: "migrate".into(),
                operator: gbdfl_core::os_user::name(),
                host: gethostname::gethostname().to_string_lossy().into_owned(),
                records: lookups.max(0) as u64,
                os_user: Some(gbdfl_core::os_user::described().to_owned()),
                ..Default::default()
            };
            self.append_audit_in(c, &entry)?;
            Ok::<_, StoreError>(())
        })
    }

    /// Removes the tables of format version 5 that a migration left (all
    /// of their rows are in the version-6 tables): rows in transactions of
    /// [`DROP_STEP`], each freed page zeroed (`secure_delete`), then the
    /// tables. A crash midway leaves the rest to the next open.
    pub(crate) fn drop_v5_tables(&self) -> Result<(), StoreError> {
        let left: i64 = self.conn.query_row(
            "SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name LIKE 'v5\\_%' ESCAPE '\\'",
            [],
            |r| r.get(0),
        )?;
        if left == 0 {
            return Ok(());
        }
        // Foreign keys off: the old `lookups` refers to itself, and with
        // them on every delete looks for the rows naming it.
        self.conn.execute_batch("PRAGMA foreign_keys = OFF;")?;
        let done = (|| {
            for table in ["v5_lookups", "v5_queue", "v5_audit"] {
                loop {
                    let n = sqlite::immediate(&self.conn, |c| {
                        Ok::<_, StoreError>(
                            c.execute(
                                &format!(
                                    "DELETE FROM {table} WHERE rowid IN \
                                 (SELECT rowid FROM {table} LIMIT {DROP_STEP})"
                                ),
                                [],
                            )
                            .or_else(|e| match e {
                                rusqlite::Error::SqliteFailure(_, Some(m))
                                    if m.contains("no such table") =>
                                {
                                    Ok(0)
                                }
                                e => Err(e),
                            })?,
                        )
                    })?;
                    if n == 0 {
                        break;
                    }
                }
            }
            sqlite::immediate(&self.conn, |c| {
                c.execute_batch(
                    "DROP TABLE IF EXISTS v5_lookups; DROP TABLE IF EXISTS v5_queue; \
                     DROP TABLE IF EXISTS v5_audit; DROP TABLE IF EXISTS v5_keys;",
                )?;
                Ok::<_, StoreError>(())
            })
        })();
        self.conn.execute_batch("PRAGMA foreign_keys = ON;")?;
        done
    }

    /// Copies every lookup into the new table, each sealed value sealed
    /// again under its new associated data; fills in what version 6 always
    /// has (`reached` of a call, the summary of a VALID answer).
    fn carry_lookups(&self, c: &Connection) -> Result<u64, StoreError> {
        let total: i64 = c.query_row("SELECT count(*) FROM v5_lookups", [], |r| r.get(0))?;
        let total = total.max(0) as u64;
        // In id order: the new table and its id index then grow at their
        // ends, instead of a random page of the id index per row (ids of
        // imported lookups are in no order), which thrashed the page cache.
        let mut st = c.prepare(&format!(
            "SELECT {} FROM v5_lookups ORDER BY id",
            sqlite::LOOKUP_COLUMNS
        ))?;
        let mut rows = st.query([])?;
        let mut done = 0u64;
        progress(0, total);
        while let Some(r) = rows.next()? {
            let mut row = sqlite::lookup_in(r, sqlite::Stored::V5)?;
            self.reseal_v5_lookup(&mut row)?;
            sqlite::insert_lookup(c, &row)?;
            done += 1;
            if done.is_multiple_of(PROGRESS_EVERY) {
                progress(done, total);
            }
        }
        if !done.is_multiple_of(PROGRESS_EVERY) {
            progress(done, total);
        }
        Ok(done)
    }

    /// Seals again every value of a lookup read from a version-5 table (or
    /// a spill file of that time) under the associated data of version 6.
    /// A row whose values do not open is left as it was: `check` names it.
    pub(crate) fn reseal_v5_lookup(&self, row: &mut LookupRow) -> Result<(), StoreError> {
        let Ok(plain) = self.open_v5_values(row) else {
            return Ok(());
        };
        let [iin, _, _, detail, response, summary] = &plain;
        if row.reached.is_none() && row.source == Source::Service {
            let detail = detail
                .as_ref()
                .map(|d| String::from_utf8_lossy(d).into_owned());
            row.reached = legacy_reached(
                row.source,
                row.outcome,
                row.http_status.and_then(|s| u16::try_from(s).ok()),
                detail.as_deref(),
            );
        }
        let mut made_summary = None;
        if summary.is_none()
            && row.source == Source::Service
            && row.outcome == Outcome::Answered
            && row.status.as_deref() == Some("VALID")
        {
            let body = response
                .as_ref()
                .and_then(|r| codec::unpack(r))
                .unwrap_or_default();
            let iin = iin
                .as_ref()
                .map(|i| String::from_utf8_lossy(i).into_owned());
            made_summary = Some(
                gbdfl_core::summary::Summary::of_body(iin.as_deref().unwrap_or_default(), &body)
                    .encode(),
            );
        }
        let mut binding = Vec::new();
        row.binding().write(&mut binding);
        let mut aad = Vec::new();
        let (id, version) = (row.id.clone(), self.key_version);
        let seal = |column: &str, plain: &[u8], aad: &mut Vec<u8>| {
            crypto::bound_data_into(aad, "lookups", column, &id, version, &binding);
            self.keys.seal(plain, aad).map_err(|e| StoreError::Corrupt {
                id: id.clone(),
                column: "seal",
                reason: e.to_string(),
            })
        };
        for ((column, value), plain) in row.sealed_mut().into_iter().zip(&plain) {
            if let (Some(value), Some(plain)) = (value, plain) {
                *value = seal(column, plain, &mut aad)?;
            }
        }
        if let Some(summary) = made_summary {
            row.summary_enc = Some(seal("summary_enc", &summary, &mut aad)?);
        }
        Ok(())
    }

    /// Every sealed value of a version-5 lookup opened, in
    /// [`LookupRow::sealed_mut`]'s order.
    #[allow(clippy::type_complexity)]
    fn open_v5_values(
        &self,
        row: &LookupRow,
    ) -> Result<[Option<zeroize::Zeroizing<Vec<u8>>>; 6], StoreError> {
        let mut out: [Option<zeroize::Zeroizing<Vec<u8>>>; 6] = Default::default();
        let mut copy = row.clone();
        for (slot, (column, value)) in out.iter_mut().zip(copy.sealed_mut()) {
            if let Some(value) = value {
                *slot = Some(self.open_sealed(
                    "lookups",
                    column,
                    &row.id,
                    row.key_version,
                    None,
                    value,
                )?);
            }
        }
        Ok(out)
    }

    /// Copies every queue item, each sealed value sealed again under its
    /// new associated data (one that does not open is left as it was).
    fn carry_queue(&self, c: &Connection) -> Result<(), StoreError> {
        let mut st = c.prepare(&format!(
            "SELECT {} FROM v5_queue ORDER BY rowid",
            sqlite::QUEUE_COLUMNS
        ))?;
        let rows: Vec<QueueRow> = st
            .query_map([], |r| sqlite::queue_in(r, sqlite::Stored::V5))?
            .collect::<Result<_, _>>()?;
        for mut q in rows {
            let binding = super::queue::queue_binding(&q)?;
            let mut opened = Vec::new();
            let mut copy = q.clone();
            let all_open = copy.sealed_mut().into_iter().all(|(column, value)| {
                let Some(value) = value else {
                    opened.push(None);
                    return true;
                };
                match self.open_sealed("queue", column, &q.id, q.key_version, None, value) {
                    Ok(plain) => {
                        opened.push(Some(plain));
                        true
                    }
                    Err(_) => false,
                }
            });
            if all_open {
                let mut aad = Vec::new();
                let id = q.id.clone();
                for ((column, value), plain) in q.sealed_mut().into_iter().zip(&opened) {
                    if let (Some(value), Some(plain)) = (value, plain) {
                        crypto::bound_data_into(
                            &mut aad,
                            "queue",
                            column,
                            &id,
                            self.key_version,
                            &binding,
                        );
                        *value = self
                            .keys
                            .seal(plain, &aad)
                            .map_err(|e| StoreError::Corrupt {
                                id: id.clone(),
                                column: "seal",
                                reason: e.to_string(),
                            })?;
                    }
                }
            }
            sqlite::insert_queue(c, &q)?;
        }
        Ok(())
    }
}

/// The `CHECK` of `lookups.source` in format version 6, and in version 7.
const SOURCE_CHECK_V6: &str = "CHECK (source IN ('service', 'cache'))";
const SOURCE_CHECK_V7: &str = "CHECK (source IN ('service', 'cache', 'org'))";

/// Edits the text of table `lookups` in `sqlite_schema` so that its
/// `source` also takes `org`, inside the caller's transaction; leaves a
/// table that already does as it is. Refuses (the transaction then rolls
/// back) a table whose text is not that of format version 6, or one that
/// SQLite's `quick_check` finds fault with afterwards.
fn widen_source_check(c: &Connection) -> Result<(), StoreError> {
    let sql: String = c.query_row(
        "SELECT sql FROM sqlite_schema WHERE type = 'table' AND name = 'lookups'",
        [],
        |r| r.get(0),
    )?;
    if sql.contains(SOURCE_CHECK_V7) {
        return Ok(());
    }
    if sql.matches(SOURCE_CHECK_V6).count() != 1 {
        return Err(StoreError::Malformed(format!(
            "the table lookups does not have the constraint {SOURCE_CHECK_V6} of format version 6; the database was left at version 6"
        )));
    }
    let cookie: i64 = c.query_row("PRAGMA schema_version", [], |r| r.get(0))?;
    c.execute_batch("PRAGMA writable_schema = ON;")?;
    let edited = c
        .execute(
            "UPDATE sqlite_schema SET sql = ?1 WHERE type = 'table' AND name = 'lookups'",
            params![sql.replacen(SOURCE_CHECK_V6, SOURCE_CHECK_V7, 1)],
        )
        .and_then(|_| c.execute_batch(&format!("PRAGMA schema_version = {};", cookie + 1)));
    c.execute_batch("PRAGMA writable_schema = OFF;")?;
    edited?;
    let mut st = c.prepare("PRAGMA quick_check(lookups)")?;
    let found = st
        .query_map([], |r| r.get::<_, String>(0))?
        .collect::<Result<Vec<_>, _>>()?;
    if found != ["ok"] {
        return Err(StoreError::Malformed(format!(
            "the table lookups does not pass SQLite's quick_check after its source constraint was widened ({}); the database was left at version 6",
            found.join("; ")
        )));
    }
    Ok(())
}

/// Copies the audit trail as it is, its times as milliseconds: the chain
/// covers each time as the text it is read back as, which is the text it
/// was written as (refused otherwise: the chain would no longer verify).
fn carry_audit(c: &Connection) -> Result<(), StoreError> {
    let mut st = c.prepare("SELECT seq, at FROM v5_audit ORDER BY seq")?;
    let times: Vec<(i64, String)> = st
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    let mut update = c.prepare(
        "INSERT INTO audit (seq, id, at, operator, host, command, subject, outcome, exit_code, \
         paid_call, records, key_version, purpose_enc, error_enc, mac, os_user) \
         SELECT seq, id, ?2, operator, host, command, subject, outcome, exit_code, paid_call, \
         records, key_version, purpose_enc, error_enc, mac, os_user FROM v5_audit WHERE seq = ?1",
    )?;
    for (seq, at) in times {
        let ms = sqlite::ms(&at)?;
        if sqlite::text_of(ms)? != at {
            return Err(StoreError::Corrupt {
                id: format!("audit entry {seq}"),
                column: "at",
                reason: format!(
                    "its time {at:?} is not in the form gbdfl writes; the database was left at format version 5"
                ),
            });
        }
        update.execute(params![seq, ms])?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::Store;
    use crate::crypto::{KEY_LEN, MasterKey};

    /// A value altered before the migration (here moved from another row)
    /// stops nothing: its lookup is carried over as it was, and `check`
    /// names it.
    #[test]
    fn a_value_that_does_not_open_is_carried_over_and_check_names_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v5.db");
        let key = MasterKey::from_bytes([6; KEY_LEN]);
        let lines: Vec<String> = gbdfl_emulator::synthetic_archive(20, "9002")
            .lines()
            .map(str::to_owned)
            .collect();
        let stored = crate::testing::write_v5_database(&path, &key, &lines, true);
        let conn = rusqlite::Connection::open(&path).unwrap();
        let id: String = conn
            .query_row("SELECT id FROM lookups ORDER BY id LIMIT 1", [], |r| {
                r.get(0)
            })
            .unwrap();
        conn.execute(
            "UPDATE lookups SET iin_enc = (SELECT iin_enc FROM lookups WHERE id <> ?1 LIMIT 1) \
             WHERE id = ?1",
            [&id],
        )
        .unwrap();
        drop(conn);

        let store = Store::open(&path, &key).unwrap();
        assert_eq!(store.count_lookups().unwrap() as u64, stored);
        let report = store.check().unwrap();
        assert_eq!(report.lookups, stored);
        assert_eq!(report.undecryptable.len(), 1, "{:?}", report.undecryptable);
        assert!(
            report.undecryptable[0].contains(&id),
            "{:?}",
            report.undecryptable
        );
    }

    /// A database of format version 6 migrates to version 7 in place:
    /// every row kept and still opening, the migration in the audit trail,
    /// and afterwards an answer of the organisation cache is taken (and is
    /// the latest VALID answer), which version 6 refused.
    #[test]
    fn a_version_6_database_migrates_in_place_and_takes_org_answers() {
        use crate::testing::{downgrade_to_v6, valid_lookup};
        use crate::{AuditFilter, LookupId, Outcome, Source};
        use gbdfl_core::iin::Iin;

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v6.db");
        let key = MasterKey::from_bytes([7; KEY_LEN]);
        let iin = Iin::parse_unchecked("900101300123").unwrap();
        let other = Iin::parse_unchecked("900101300124").unwrap();
        let at = chrono::DateTime::parse_from_rfc3339("2026-01-02T03:04:05Z")
            .unwrap()
            .to_utc();
        let body = br#"{"result":true}"#;
        let (store, _) = Store::init(&path, &key).unwrap();
        let first = valid_lookup(&iin, body, at);
        store.record(&first, None).unwrap();
        let cached = crate::NewLookup {
            source: Source::Cache,
            outcome: Outcome::Cached,
            response: None,
            cached_from: Some(first.id),
            reached: None,
            ..valid_lookup(&iin, b"", at + chrono::TimeDelta::minutes(1))
        };
        store.record(&cached, None).unwrap();
        store.record(&valid_lookup(&other, body, at), None).unwrap();
        drop(store);
        downgrade_to_v6(&path);

        let conn = rusqlite::Connection::open(&path).unwrap();
        let version = |c: &rusqlite::Connection| -> i64 {
            c.query_row("PRAGMA user_version", [], |r| r.get(0))
                .unwrap()
        };
        assert_eq!(version(&conn), 6);
        let refused = conn.execute(
            "UPDATE lookups SET source = 'org' WHERE id = ?1",
            [first.id.to_string()],
        );
        assert!(refused.is_err(), "version 6 refuses an org lookup");

        let store = Store::open(&path, &key).unwrap();
        assert_eq!(version(&conn), 7);
        assert_eq!(store.count_lookups().unwrap(), 3);
        let report = store.check().unwrap();
        assert!(
            report.undecryptable.is_empty(),
            "{:?}",
            report.undecryptable
        );
        assert_eq!(report.integrity, ["ok"]);
        let indexes: i64 = conn
            .query_row(
                "SELECT count(*) FROM sqlite_schema WHERE type = 'index' AND name IN \
                 ('lookups_latest', 'lookups_other') AND sql LIKE '%''org''%'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(indexes, 2, "both indexes of version 7");
        let mut migrations = 0;
        store
            .each_audit(&AuditFilter::default(), |e| {
                migrations += usize::from(e.command == "migrate" && e.records == 3);
                Ok::<_, crate::StoreError>(())
            })
            .unwrap();
        assert_eq!(migrations, 1);
        assert!(store.verify_audit(None).unwrap().problem.is_none());

        // An org answer, newer than the branch's own, is now the latest.
        let org = crate::NewLookup {
            source: Source::Org,
            cached_from: Some(LookupId::new()),
            reached: None,
            ..valid_lookup(
                &iin,
                br#"{"result":true,"org":1}"#,
                at + chrono::TimeDelta::hours(1),
            )
        };
        store.record(&org, None).unwrap();
        let latest = store.latest_valid(&iin).unwrap().unwrap();
        assert_eq!(latest.lookup.id, org.id.to_string());
        assert_eq!(latest.lookup.source, Source::Org);
        assert!(!latest.lookup.is_paid_call());
        assert_eq!(&latest.body[..], br#"{"result":true,"org":1}"#);
        let report = store.check().unwrap();
        assert!(
            report.undecryptable.is_empty(),
            "{:?}",
            report.undecryptable
        );

        // Opening again changes nothing more.
        drop(store);
        let store = Store::open(&path, &key).unwrap();
        assert_eq!(store.count_lookups().unwrap(), 4);
        assert_eq!(version(&conn), 7);
    }
}
