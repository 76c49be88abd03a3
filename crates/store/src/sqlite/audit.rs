//! The `audit` table: [`AuditRow`], one entry of the audit trail, and its
//! statements (append, walk in order, re-seal).

use rusqlite::{Connection, OptionalExtension, params};

use super::{exec, ms, time_at};
use crate::StoreError;

/// One audit entry as stored.
#[derive(Debug, Clone)]
pub struct AuditRow {
    /// Its place in the chain: 1, 2, 3, ... without gaps.
    pub seq: i64,
    /// The entry's id: a UUIDv7 made by the client.
    pub id: String,
    /// When the command ran.
    pub at: String,
    /// The staff member who ran the command.
    pub operator: String,
    /// The machine it ran on.
    pub host: String,
    /// The command: fetch, show, history, report, purge, ...
    pub command: String,
    /// The blind index of the IIN the command concerned, if one.
    pub subject: Option<Vec<u8>>,
    /// `ok` or `error`.
    pub outcome: String,
    /// The command's exit code.
    pub exit_code: i64,
    /// Whether a call to the paid service was made.
    pub paid_call: bool,
    /// How many records were shown, exported, changed or deleted.
    pub records: i64,
    /// The key version its sealed values are sealed under.
    pub key_version: i64,
    /// The sealed purpose.
    pub purpose_enc: Option<Vec<u8>>,
    /// The sealed error message.
    pub error_enc: Option<Vec<u8>>,
    /// The chain's MAC over the previous entry's and this entry's
    /// fields (32 bytes).
    pub mac: Vec<u8>,
    /// The OS user that ran the command (schema version 5; NULL before).
    pub os_user: Option<String>,
    /// The lookup the entry wrote or showed (format version 6; NULL
    /// before, and for entries of no one lookup).
    pub lookup_id: Option<String>,
    /// A purge's cutoff, milliseconds since the epoch (format version 6).
    pub purged_before: Option<i64>,
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

/// Appends one entry to the audit trail (its MAC already made).
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

/// Up to `limit` entries after entry `seq`, whole rows as stored, in
/// sequence order.
pub fn audit_rows_after(
    conn: &Connection,
    seq: i64,
    limit: usize,
) -> Result<Vec<AuditRow>, StoreError> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let mut st = conn.prepare_cached(&format!(
        "SELECT {AUDIT_COLUMNS} FROM audit WHERE seq > ?1 ORDER BY seq LIMIT ?2"
    ))?;
    let rows = st
        .query_map(params![seq, limit], audit_from_row)?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

/// The highest entry number (0 for an empty trail).
pub fn audit_len(conn: &Connection) -> Result<i64, StoreError> {
    Ok(conn.query_row("SELECT coalesce(max(seq), 0) FROM audit", [], |r| r.get(0))?)
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
