//! The `queue` table: [`QueueRow`], the requests waiting to be sent, and
//! its statements (queue, claim, release, expire, purge, stats).

use rusqlite::{Connection, OptionalExtension, params};

use super::{Stored, exec, ms, row1, time_at, time_in};
use crate::StoreError;

/// A queue row as stored: sealed columns stay sealed here.
#[derive(Debug, Clone)]
pub struct QueueRow {
    /// The item's id: a UUIDv7 made by the client.
    pub id: String,
    /// The blind index of the IIN, as in `lookups`.
    pub subject: Vec<u8>,
    /// The request index of the IIN and session: one request is
    /// queued once.
    pub request: Vec<u8>,
    /// When it was queued.
    pub queued_at: String,
    /// When its window ends: it is never sent after this.
    pub deadline: String,
    /// `waiting` or `expired`.
    pub state: String,
    /// How many calls were started for it.
    pub attempts: i64,
    /// It is not sent before this (backoff, Retry-After).
    pub next_try_at: String,
    /// The process sending it now, if one.
    pub claimed_by: Option<String>,
    /// When that claim ends; past it, the item is in doubt.
    pub claimed_until: Option<String>,
    /// The last GBDFL or HTTP status it met, enumerated.
    pub last_status: Option<String>,
    /// The staff member who asked.
    pub operator: String,
    /// The machine that asked.
    pub host: String,
    /// False when `--skip-iin-check` let an IIN that fails its check
    /// digit through.
    pub iin_checked: bool,
    /// The key version its sealed values are sealed under.
    pub key_version: i64,
    /// The sealed IIN.
    pub iin_enc: Vec<u8>,
    /// The sealed face2face backend session id.
    pub session_enc: Vec<u8>,
    /// The sealed purpose the operator gave.
    pub purpose_enc: Option<Vec<u8>>,
    /// The sealed last error message.
    pub error_enc: Option<Vec<u8>>,
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

/// The columns of `queue` in [`QueueRow`]'s order.
pub(crate) const QUEUE_COLUMNS: &str = "id, subject, request, queued_at, deadline, state, attempts, next_try_at, \
     claimed_by, claimed_until, last_status, operator, host, iin_checked, key_version, \
     iin_enc, session_enc, purpose_enc, error_enc";

fn queue_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<QueueRow> {
    queue_in(r, Stored::Current)
}

/// A row of `queue` (columns in [`QUEUE_COLUMNS`]' order) as stored in
/// `format`.
pub(crate) fn queue_in(r: &rusqlite::Row<'_>, format: Stored) -> rusqlite::Result<QueueRow> {
    let time = |i| {
        time_in(r, i, format)?.ok_or(rusqlite::Error::InvalidColumnType(
            i,
            "time".into(),
            rusqlite::types::Type::Null,
        ))
    };
    Ok(QueueRow {
        id: r.get(0)?,
        subject: r.get(1)?,
        request: r.get(2)?,
        queued_at: time(3)?,
        deadline: time(4)?,
        state: r.get(5)?,
        attempts: r.get(6)?,
        next_try_at: time(7)?,
        claimed_by: r.get(8)?,
        claimed_until: time_in(r, 9, format)?,
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

/// The next try of every unclaimed waiting item that can still be sent:
/// (id, time).
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
