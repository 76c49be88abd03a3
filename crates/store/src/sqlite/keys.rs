//! The `keys`, `dictionaries` and `meta` tables: [`KeyRow`], the key
//! versions the data is sealed under; the compression dictionaries; and
//! the database's own notes.

use rusqlite::{Connection, OptionalExtension, params};

use super::{exec, ms, time_or_text_at};
use crate::StoreError;

/// One row of the `keys` table.
#[derive(Debug, Clone)]
pub struct KeyRow {
    /// The key version; the highest is the current key.
    pub version: i64,
    /// Tells a wrong key file apart before anything is read.
    pub check_value: Vec<u8>,
    /// The index and audit keys, sealed under this version's key.
    pub wrapped_keys: Vec<u8>,
    /// When this version was made.
    pub created_at: String,
    /// When `rekey` replaced it, if it did.
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

/// Adds one key version.
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

/// Marks a key version replaced at `at` (rekey).
pub fn retire_key(conn: &Connection, version: i64, at: &str) -> Result<(), StoreError> {
    exec(
        conn,
        "UPDATE keys SET retired_at = ?2 WHERE version = ?1",
        params![version, ms(at)?],
    )?;
    Ok(())
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
