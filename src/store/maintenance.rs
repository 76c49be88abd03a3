//! Whole-database work: purge, rekey, backup and check.
//!
//! Rules this module keeps: every multi-row change runs in one transaction
//! together with its audit entry, so a crash leaves the old state or the new
//! one; purge leaves no old ciphertext in the file or its WAL; rekey leaves
//! a database that opens with exactly one key.

use std::path::Path;

use chrono::{DateTime, Utc};

use super::audit::{AuditCheck, AuditEntry};
use super::sqlite::{self, LookupRow};
use super::{Store, StoreError, now_text, time_text, wrap_aad};
use crate::crypto::{self, Keys, MasterKey};

/// What `check` found.
#[derive(Debug)]
pub struct CheckReport {
    pub integrity: Vec<String>,
    pub lookups: u64,
    /// Items in the request queue.
    pub queued: u64,
    pub undecryptable: Vec<String>,
    pub audit: AuditCheck,
}

impl CheckReport {
    pub fn ok(&self) -> bool {
        self.integrity == ["ok"] && self.undecryptable.is_empty() && self.audit.problem.is_none()
    }
}

const SEALED: [&str; 6] = [
    "iin_enc",
    "session_enc",
    "purpose_enc",
    "detail_enc",
    "response_enc",
    "summary_enc",
];

fn sealed_of(r: &LookupRow) -> [Option<&Vec<u8>>; 6] {
    [
        Some(&r.iin_enc),
        Some(&r.session_enc),
        r.purpose_enc.as_ref(),
        r.detail_enc.as_ref(),
        r.response_enc.as_ref(),
        r.summary_enc.as_ref(),
    ]
}

impl Store {
    /// How many lookups were requested before `cutoff`.
    pub fn count_before(&self, cutoff: DateTime<Utc>) -> Result<i64, StoreError> {
        sqlite::count_lookups_before(&self.conn, &time_text(cutoff))
    }

    /// Deletes lookups requested before `cutoff` with its audit entry in one
    /// transaction, then compacts so no freed page keeps old ciphertext.
    pub fn purge(
        &self,
        cutoff: DateTime<Utc>,
        audit: &mut AuditEntry,
    ) -> Result<usize, StoreError> {
        let n = sqlite::immediate(&self.conn, |c| {
            let n = sqlite::delete_lookups_before(c, &time_text(cutoff))?
                + sqlite::delete_queue_before(c, &time_text(cutoff))?;
            audit.records = n as u64;
            self.append_audit_in(c, audit)?;
            Ok::<_, StoreError>(n)
        })?;
        sqlite::compact(&self.conn)?;
        Ok(n)
    }

    /// Re-encrypts every sealed value under `new` in one transaction, re-wraps
    /// the index and audit keys, retires the current key and appends the
    /// audit entry. `old` must be the key this store was opened with.
    pub fn rekey(
        &self,
        old: &MasterKey,
        new: &MasterKey,
        audit: &AuditEntry,
    ) -> Result<u64, StoreError> {
        sqlite::immediate(&self.conn, |c| {
            let rows = sqlite::key_rows(c)?;
            let current = rows.first().ok_or(StoreError::NoKey)?;
            let stable = old
                .unwrap_keys(&current.wrapped_keys, &wrap_aad(current.version))
                .map_err(|e| StoreError::Corrupt {
                    id: "keys".into(),
                    column: "wrapped_keys",
                    reason: e.to_string(),
                })?;
            let version = current.version + 1;
            let new_keys: Keys = new.keys(&stable);
            let reseal = |table: &str, column: &str, id: &str, sealed: &[u8], from: i64| {
                let plain = self
                    .keys
                    .open(
                        sealed,
                        &crypto::associated_data(table, column, id, from as u32),
                    )
                    .map_err(|e| StoreError::Corrupt {
                        id: id.to_owned(),
                        column: "rekey",
                        reason: format!("{column}: {e}"),
                    })?;
                new_keys
                    .seal(
                        &plain,
                        &crypto::associated_data(table, column, id, version as u32),
                    )
                    .map_err(|e| StoreError::Corrupt {
                        id: id.to_owned(),
                        column: "rekey",
                        reason: e.to_string(),
                    })
            };
            let at = now_text();
            sqlite::retire_key(c, current.version, &at)?;
            sqlite::insert_key(
                c,
                &sqlite::KeyRow {
                    version,
                    check_value: new.check_value().to_vec(),
                    wrapped_keys: new.wrap(&stable, &wrap_aad(version)).map_err(|e| {
                        StoreError::Corrupt {
                            id: "keys".into(),
                            column: "wrapped_keys",
                            reason: e.to_string(),
                        }
                    })?,
                    created_at: at,
                    retired_at: None,
                },
            )?;
            // Collect ids first: updating rows while a scan runs over them
            // on the same connection is not something to rely on.
            let mut ids = Vec::new();
            sqlite::all_lookups(c, &mut |r: LookupRow| {
                ids.push(r.id);
                Ok::<_, StoreError>(())
            })?;
            for id in &ids {
                let Some(mut r) = sqlite::lookup_by_id(c, id)? else {
                    continue;
                };
                let from = r.key_version;
                r.iin_enc = reseal("lookups", "iin_enc", id, &r.iin_enc, from)?;
                r.session_enc = reseal("lookups", "session_enc", id, &r.session_enc, from)?;
                for (col, v) in [
                    ("purpose_enc", &mut r.purpose_enc),
                    ("detail_enc", &mut r.detail_enc),
                    ("response_enc", &mut r.response_enc),
                    ("summary_enc", &mut r.summary_enc),
                ] {
                    if let Some(s) = v.as_ref() {
                        *v = Some(reseal("lookups", col, id, s, from)?);
                    }
                }
                r.key_version = version;
                sqlite::update_lookup_sealed(c, &r)?;
            }
            let queued = self.reseal_queue(c, &reseal, version)?;
            let mut audits = Vec::new();
            sqlite::each_audit(c, &mut |a| {
                audits.push(a);
                Ok::<_, StoreError>(())
            })?;
            for mut a in audits {
                let (id, from) = (a.id.clone(), a.key_version);
                for (col, v) in [
                    ("purpose_enc", &mut a.purpose_enc),
                    ("error_enc", &mut a.error_enc),
                ] {
                    if let Some(s) = v.as_ref() {
                        *v = Some(reseal("audit", col, &id, s, from)?);
                    }
                }
                a.key_version = version;
                sqlite::update_audit_sealed(c, &a)?;
            }
            // The entry is sealed under the new key, like everything else now.
            let after = Store {
                conn: rusqlite::Connection::open_in_memory()?,
                path: self.path.clone(),
                keys: new_keys,
                key_version: version as u32,
                key_id: crypto::key_id(&new.check_value()),
            };
            let mut entry = audit.clone();
            entry.records = ids.len() as u64 + queued;
            after.append_audit_in(c, &entry)?;
            Ok(ids.len() as u64 + queued)
        })
    }

    /// A consistent copy through SQLite's online backup API, owner-only.
    pub fn backup(&self, dest: &Path, audit: &AuditEntry) -> Result<(), StoreError> {
        // Append first so the copy carries the entry of its own making.
        self.append_audit(audit)?;
        crate::fsutil::create_private_file(dest)?;
        sqlite::backup(&self.conn, dest)
    }

    /// integrity_check, every sealed value opens, the audit chain verifies.
    pub fn check(&self) -> Result<CheckReport, StoreError> {
        let integrity = sqlite::integrity_check(&self.conn)?;
        let mut lookups = 0u64;
        let mut undecryptable = Vec::new();
        sqlite::all_lookups(&self.conn, &mut |r: LookupRow| {
            lookups += 1;
            for (col, v) in SEALED.iter().zip(sealed_of(&r)) {
                if let Some(sealed) = v
                    && let Err(e) = self.open_col(&r, col, sealed)
                {
                    undecryptable.push(e.to_string());
                }
            }
            Ok::<_, StoreError>(())
        })?;
        let (queued, problems) = self.check_queue()?;
        undecryptable.extend(problems);
        let audit = self.verify_audit(None)?;
        Ok(CheckReport {
            queued,
            integrity,
            lookups,
            undecryptable,
            audit,
        })
    }
}
