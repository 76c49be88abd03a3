//! The optional table `push_pending`: the ids of the lookups not yet
//! pushed to the organisation's replica, kept by two triggers on `lookups`
//! (docs/FORMAT.md, "Pushing to a replica"). Absent until
//! [`enable_push`] makes it; a database without it is not pushed.

use rusqlite::{Connection, params};

use super::{LOOKUP_COLUMNS, LookupRow, exec, lookup_in, row1};
use crate::StoreError;

/// The table and its triggers, each made only if missing.
const PUSH_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS push_pending (id TEXT PRIMARY KEY) WITHOUT ROWID, STRICT;
CREATE TRIGGER IF NOT EXISTS push_pending_on_insert AFTER INSERT ON lookups
BEGIN
    INSERT OR IGNORE INTO push_pending (id) VALUES (new.id);
END;
CREATE TRIGGER IF NOT EXISTS push_pending_on_delete AFTER DELETE ON lookups
BEGIN
    DELETE FROM push_pending WHERE id = old.id;
END;
";

/// Whether the database has the table `push_pending`.
pub fn push_enabled(conn: &Connection) -> Result<bool, StoreError> {
    let n: i64 = row1(
        conn,
        "SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name = 'push_pending'",
        [],
        |r| r.get(0),
    )?;
    Ok(n > 0)
}

/// Makes the table and its triggers, inside the caller's transaction; a
/// table made now is filled with the id of every lookup there is.
pub fn enable_push(conn: &Connection) -> Result<(), StoreError> {
    let new = !push_enabled(conn)?;
    conn.execute_batch(PUSH_SCHEMA)?;
    if new {
        conn.execute_batch("INSERT OR IGNORE INTO push_pending (id) SELECT id FROM lookups;")?;
    }
    Ok(())
}

/// Up to `limit` lookups waiting to be pushed, whole rows as stored, in id
/// order; none when pushing is not enabled.
pub fn pending_lookups(conn: &Connection, limit: usize) -> Result<Vec<LookupRow>, StoreError> {
    if !push_enabled(conn)? {
        return Ok(Vec::new());
    }
    pending_lookups_after(conn, "", limit)
}

/// Up to `limit` lookups waiting to be pushed whose id sorts after
/// `after` ("" for the first), whole rows as stored, in id order: a push
/// reads ahead with it while earlier batches are still being sent.
pub fn pending_lookups_after(
    conn: &Connection,
    after: &str,
    limit: usize,
) -> Result<Vec<LookupRow>, StoreError> {
    if !push_enabled(conn)? {
        return Ok(Vec::new());
    }
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let mut st = conn.prepare_cached(&format!(
        "SELECT {LOOKUP_COLUMNS} FROM lookups \
         WHERE id IN (SELECT id FROM push_pending WHERE id > ?1 ORDER BY id LIMIT ?2) ORDER BY id"
    ))?;
    let rows = st
        .query_map(params![after, limit], |r| {
            lookup_in(r, super::Stored::Current)
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

/// How many lookups wait to be pushed; 0 when pushing is not enabled.
pub fn count_pending_lookups(conn: &Connection) -> Result<u64, StoreError> {
    if !push_enabled(conn)? {
        return Ok(0);
    }
    let n: i64 = row1(conn, "SELECT count(*) FROM push_pending", [], |r| r.get(0))?;
    Ok(n.max(0) as u64)
}

/// Takes these ids off the pending list, inside the caller's transaction
/// (ids not on it are ignored).
pub fn mark_pushed(conn: &Connection, ids: &[String]) -> Result<(), StoreError> {
    if !push_enabled(conn)? {
        return Ok(());
    }
    for id in ids {
        exec(conn, "DELETE FROM push_pending WHERE id = ?1", params![id])?;
    }
    Ok(())
}
