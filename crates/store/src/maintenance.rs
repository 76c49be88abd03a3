//! Whole-database work: purge, rekey, backup and check.
//!
//! Rules this module keeps: every multi-row change runs in transactions
//! together with their audit entries, so a crash leaves what is committed
//! accounted for (rekey: one transaction, the old state or the new one;
//! purge: bounded batches, each with the entry of what it deleted, so that
//! other processes are served between them); purge leaves no old
//! ciphertext in the file or its WAL; rekey leaves a database that opens
//! with exactly one key.

use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::audit::{AuditCheck, AuditEntry};
use super::queue::Reseal;
use super::sqlite::{self, LookupRow};
use super::{Store, StoreError, time_text, wrap_aad};
use crate::crypto::{self, Keys, MasterKey};

/// What `check` found.
#[derive(Debug)]
pub struct CheckReport {
    /// What SQLite's `integrity_check` said: `["ok"]` when the file is sound.
    pub integrity: Vec<String>,
    /// How many lookups were read and opened.
    pub lookups: u64,
    /// Items in the request queue.
    pub queued: u64,
    /// Lookups and queue items with a value that does not open (or a VALID
    /// answer without its summary): one line each.
    pub undecryptable: Vec<String>,
    /// Lookups and audit entries that do not account for each other: a
    /// lookup no audit entry names, an entry naming a lookup that is gone
    /// with no purge to explain it. One line each.
    pub unaccounted: Vec<String>,
    /// Stored compression dictionaries that are not the ones this format
    /// names (docs/FORMAT.md lists their SHA-256).
    pub dictionaries: Vec<String>,
    /// What verifying the audit chain found.
    pub audit: AuditCheck,
}

impl CheckReport {
    /// Whether the check found nothing wrong (`gbdfl check` exits 0).
    pub fn ok(&self) -> bool {
        self.integrity == ["ok"]
            && self.undecryptable.is_empty()
            && self.unaccounted.is_empty()
            && self.dictionaries.is_empty()
            && self.audit.problem.is_none()
    }
}

/// What a purge deletes (or, in a dry run, would delete), per kind.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PurgeCounts {
    /// Lookups that were calls to the service (any outcome, including
    /// attempts that never reached it).
    pub paid: u64,
    /// Lookups answered without a call: from the cache, or from the
    /// organisation cache.
    pub cached: u64,
    /// Queue items whose 3-hour window passed (never sent).
    pub expired_queue: u64,
    /// Queue items still waiting to be sent (WAITING, IN_DOUBT): kept
    /// unless the purge is asked to drop them; then, how many it dropped.
    pub waiting_queue: u64,
}

impl PurgeCounts {
    /// Lookups of either kind.
    pub fn lookups(&self) -> u64 {
        self.paid + self.cached
    }

    /// Whether a purge of these lookups, of `total` in the database, drops
    /// the secondary indexes and builds them again at its end: for much of
    /// a large database (`DROP_INDEXES_FROM` lookups or more, and a
    /// quarter of it or more) that is several times faster.
    pub fn drops_indexes(&self, total: u64) -> bool {
        self.lookups() >= DROP_INDEXES_FROM && self.lookups() >= total / 4
    }
}

/// Lookups to delete from which a purge of a quarter of the database or
/// more drops the secondary indexes and builds them again at its end.
pub const DROP_INDEXES_FROM: u64 = 100_000;

/// Lookups a purge deletes per transaction unless told otherwise (or
/// fewer, when one has held the lock for `PURGE_HOLD`). Every
/// transaction rewrites most pages of the index on `id` it touches (ids of
/// imported lookups are in no order), so fewer, larger ones are faster.
pub const PURGE_BATCH: u64 = 50_000;
/// Lookups deleted between two looks at the clock within a transaction.
const PURGE_STEP: usize = 1_000;
/// The longest a purge holds the write lock before it commits: as long as
/// an import ([`super::bulk::IMPORT_HOLD`]), so another writer waits at
/// most about this long, far inside its busy timeout.
const PURGE_HOLD: Duration = Duration::from_secs(2);
/// How long a purge leaves the write lock free between transactions: four
/// tries of another process waiting for it (its busy handler tries every
/// [`sqlite::BUSY_POLL`]), as an import does ([`super::bulk::IMPORT_GAP`]).
const PURGE_GAP: Duration = Duration::from_millis(20);

impl Store {
    /// What a purge with `cutoff` would delete now, per kind, and the
    /// queue items it keeps unless asked.
    pub fn purge_counts(&self, cutoff: DateTime<Utc>) -> Result<PurgeCounts, StoreError> {
        let (cutoff, now) = (time_text(cutoff), self.now_text());
        let (paid, cached) = sqlite::count_lookups_before(&self.conn, &cutoff)?;
        let (expired, waiting) = sqlite::count_queue_before(&self.conn, &cutoff, &now)?;
        Ok(PurgeCounts {
            paid,
            cached,
            expired_queue: expired,
            waiting_queue: waiting,
        })
    }

    /// Deletes lookups requested before `cutoff`, and expired queue items
    /// queued before it, in transactions of at most `batch` lookups (or
    /// `PURGE_HOLD` of work), each with its own audit entry saying how
    /// many it deleted: other processes get the write lock between them
    /// (`PURGE_GAP`), and a purge stopped midway has entries for exactly
    /// what it deleted. With `waiting`, queue items still waiting to be
    /// sent (not those a live process is sending) go too, each with a
    /// `queue drop` entry. `progress` hears the lookups deleted so far.
    /// Then the WAL is emptied: secure_delete has zeroed every freed page,
    /// so no old ciphertext is left in the file or its WAL.
    ///
    /// Lookups are deleted in the table's own order, so that its pages are
    /// each rewritten once rather than once per batch; with
    /// `drop_indexes` (for a purge of much of the database), the secondary
    /// indexes are dropped first and built again at the end, as a large
    /// import does: deleting a row from each of them is a write to a
    /// random page, several times the cost of the delete itself
    /// (BENCHMARKS.md). Meanwhile other processes' queries are slow, not
    /// refused.
    pub fn purge(
        &self,
        cutoff: DateTime<Utc>,
        batch: u64,
        waiting: bool,
        drop_indexes: bool,
        audit: &AuditEntry,
        progress: &mut dyn FnMut(u64),
    ) -> Result<PurgeCounts, StoreError> {
        let audit = &AuditEntry {
            purged_before: Some(cutoff),
            ..audit.clone()
        };
        let cutoff = time_text(cutoff);
        let batch = usize::try_from(batch.max(1)).unwrap_or(usize::MAX);
        // As an import: a larger page cache keeps the index pages each
        // transaction touches; `synchronous = NORMAL` never corrupts a WAL
        // database, and a power cut can lose only whole last batches, each
        // with its audit entry (they are purged again by the next run).
        sqlite::bulk_pragmas(&self.conn)?;
        let mut done = PurgeCounts::default();
        let rowids = sqlite::lookup_rowids_before(&self.conn, &cutoff)?;
        let dropped = drop_indexes && !rowids.is_empty();
        if dropped {
            sqlite::drop_lookup_indexes(&self.conn)?;
        }
        let deleted = self.purge_rowids(&rowids, &cutoff, batch, audit, &mut done, progress);
        // Whatever happened, the indexes come back before the command ends.
        if dropped {
            sqlite::rebuild_lookup_indexes(&self.conn)?;
        }
        deleted?;
        let now = self.now_text();
        done.expired_queue = sqlite::immediate(&self.conn, |c| {
            let n = sqlite::delete_expired_queue_before(c, &cutoff)?;
            if n > 0 {
                let mut entry = audit.clone();
                entry.records = n;
                self.append_audit_in(c, &entry)?;
            }
            Ok::<_, StoreError>(n)
        })?;
        let left = sqlite::waiting_queue_before(&self.conn, &cutoff, &now)?;
        if waiting {
            let mut entry = audit.clone();
            entry.command = "queue drop".to_owned();
            for id in &left {
                if self.drop_item(id, &entry)?.is_some() {
                    done.waiting_queue += 1;
                }
            }
        } else {
            done.waiting_queue = left.len() as u64;
        }
        sqlite::checkpoint(&self.conn)?;
        Ok(done)
    }

    /// Deletes the lookups of `rowids` in transactions of `batch` (fewer if
    /// one holds the lock for [`PURGE_HOLD`]), each with its audit entry.
    fn purge_rowids(
        &self,
        rowids: &[i64],
        cutoff: &str,
        batch: usize,
        audit: &AuditEntry,
        done: &mut PurgeCounts,
        progress: &mut dyn FnMut(u64),
    ) -> Result<(), StoreError> {
        let mut left = rowids;
        while !left.is_empty() {
            let (paid, cached, taken) = sqlite::immediate(&self.conn, |c| {
                let begun = std::time::Instant::now();
                let (mut paid, mut cached, mut taken) = (0u64, 0u64, 0usize);
                while taken < batch.min(left.len()) && begun.elapsed() < PURGE_HOLD {
                    let step = (batch - taken).min(PURGE_STEP).min(left.len() - taken);
                    let (p, k) =
                        sqlite::delete_lookups_by_rowid(c, &left[taken..taken + step], cutoff)?;
                    paid += p;
                    cached += k;
                    taken += step;
                }
                if paid + cached > 0 {
                    let mut entry = audit.clone();
                    entry.records = paid + cached;
                    self.append_audit_in(c, &entry)?;
                }
                Ok::<_, StoreError>((paid, cached, taken))
            })?;
            done.paid += paid;
            done.cached += cached;
            progress(done.paid + done.cached);
            left = &left[taken..];
            if !left.is_empty() {
                std::thread::sleep(PURGE_GAP);
            }
        }
        Ok(())
    }

    /// Re-encrypts every sealed value under `new` in one transaction, re-wraps
    /// the index and audit keys, retires the current key and appends the
    /// audit entry. `old` must be the key this store was opened with.
    /// Returns how many lookups and queue items were sealed again.
    ///
    /// Its steps, in this order and all in the one transaction: the new key
    /// version (`next_key_in`), the lookups
    /// (`reseal_lookups_in`), the queue, the audit trail
    /// (`reseal_audit_in`), and the entry, sealed under the new key.
    pub fn rekey(
        &self,
        old: &MasterKey,
        new: &MasterKey,
        audit: &AuditEntry,
    ) -> Result<(u64, u64), StoreError> {
        sqlite::immediate(&self.conn, |c| {
            let (version, new_keys) = self.next_key_in(c, old, new)?;
            let (lookups, queued) = {
                let reseal = resealer(&self.keys, &new_keys, version);
                let lookups = self.reseal_lookups_in(c, &reseal, version)?;
                let queued = self.reseal_queue(c, &reseal, version)?;
                self.reseal_audit_in(c, &reseal, version)?;
                (lookups, queued)
            };
            // The entry is sealed under the new key, like everything else now.
            let after = Store {
                conn: rusqlite::Connection::open_in_memory()?,
                path: self.path.clone(),
                busy: self.busy,
                keys: new_keys,
                key_version: version as u32,
                key_id: crypto::key_id(&new.check_value()),
                clock: std::sync::Arc::clone(&self.clock),
            };
            let mut entry = audit.clone();
            entry.records = lookups + queued;
            after.append_audit_in(c, &entry)?;
            Ok((lookups, queued))
        })
    }

    /// Rekey's first step: retires the current key version and adds the
    /// next one, `new` wrapping the same index and audit keys (which `old`
    /// unwraps). Returns the new version and its keys.
    fn next_key_in(
        &self,
        c: &rusqlite::Connection,
        old: &MasterKey,
        new: &MasterKey,
    ) -> Result<(i64, Keys), StoreError> {
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
        let at = self.now_text();
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
        Ok((version, new_keys))
    }

    /// Seals every lookup's sealed values again under key `version`;
    /// returns how many lookups there are.
    fn reseal_lookups_in(
        &self,
        c: &rusqlite::Connection,
        reseal: &Reseal<'_>,
        version: i64,
    ) -> Result<u64, StoreError> {
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
            let mut binding = Vec::new();
            r.binding().write(&mut binding);
            for (col, v) in r.sealed_mut() {
                if let Some(v) = v {
                    *v = reseal("lookups", col, id, Some(&binding), v, from)?;
                }
            }
            r.key_version = version;
            sqlite::update_lookup_sealed(c, &r)?;
        }
        Ok(ids.len() as u64)
    }

    /// Seals every audit entry's sealed values again under key `version`.
    /// The MAC chain does not change: it is made of the plaintext.
    fn reseal_audit_in(
        &self,
        c: &rusqlite::Connection,
        reseal: &Reseal<'_>,
        version: i64,
    ) -> Result<(), StoreError> {
        let mut audits = Vec::new();
        sqlite::each_audit(c, &mut |a| {
            audits.push(a);
            Ok::<_, StoreError>(())
        })?;
        for mut a in audits {
            let (id, from) = (a.id.clone(), a.key_version);
            for (col, v) in a.sealed_mut() {
                if let Some(v) = v {
                    *v = reseal("audit", col, &id, None, v, from)?;
                }
            }
            a.key_version = version;
            sqlite::update_audit_sealed(c, &a)?;
        }
        Ok(())
    }

    /// A consistent copy through SQLite's online backup API, owner-only.
    pub fn backup(&self, dest: &Path, audit: &AuditEntry) -> Result<(), StoreError> {
        // Append first so the copy carries the entry of its own making.
        self.append_audit(audit)?;
        gbdfl_core::fsutil::create_private_file(dest)?;
        sqlite::backup(&self.conn, dest)
    }

    /// integrity_check, every sealed value opens under what its row says,
    /// every lookup and audit entry account for each other, the stored
    /// dictionaries are the format's, the audit chain verifies.
    pub fn check(&self) -> Result<CheckReport, StoreError> {
        let integrity = sqlite::integrity_check(&self.conn)?;
        let mut lookups = 0u64;
        let mut undecryptable = Vec::new();
        // Every lookup's id and whether an import made it (a UUIDv8: one
        // audit entry accounts for a whole import, naming none).
        let mut ids = std::collections::HashMap::new();
        sqlite::all_lookups(&self.conn, &mut |mut r: LookupRow| {
            lookups += 1;
            // The sealed values taken out (not copied): what they are bound
            // to stays in the row.
            let values: Vec<_> = r
                .sealed_mut()
                .into_iter()
                .map(|(col, v)| (col, v.map(std::mem::take)))
                .collect();
            let row = r;
            for (col, v) in values {
                if let Some(sealed) = v
                    && let Err(e) = self.open_col(&row, col, &sealed)
                {
                    // One message per lookup: every value of a row whose
                    // choosing fields were changed fails the same way.
                    undecryptable.push(e.to_string());
                    break;
                }
            }
            if matches!(row.source, super::Source::Service | super::Source::Org)
                && row.outcome == super::Outcome::Answered
                && row.status.as_deref() == Some("VALID")
                && row.summary_enc.is_none()
            {
                undecryptable.push(format!(
                    "lookup {}: a VALID answer without its document summary (removed?); the expiry scan refuses it",
                    row.id
                ));
            }
            ids.insert(row.id, row.requested_at);
            Ok::<_, StoreError>(())
        })?;
        let (queued, problems) = self.check_queue()?;
        undecryptable.extend(problems);
        let unaccounted = self.cross_check(&ids)?;
        let dictionaries = self.check_dictionaries()?;
        let audit = self.verify_audit(None)?;
        Ok(CheckReport {
            queued,
            integrity,
            lookups,
            undecryptable,
            unaccounted,
            dictionaries,
            audit,
        })
    }

    /// Lookups against the audit trail. A lookup recorded since format
    /// version 6 is named by the audit entry written with it (an imported
    /// one is counted by its import's entry instead); an entry that names a
    /// lookup no longer stored must be followed by a purge whose cutoff
    /// lies after that lookup was requested (the time in its UUIDv7 id).
    fn cross_check(
        &self,
        lookups: &std::collections::HashMap<String, i64>,
    ) -> Result<Vec<String>, StoreError> {
        let since: i64 = sqlite::meta(&self.conn, crate::migrate::FORMAT6_SINCE)?
            .and_then(|v| v.parse().ok())
            .unwrap_or(i64::MIN);
        let mut named = std::collections::HashSet::new();
        // (seq, lookup id) of entries naming a missing lookup, and the
        // purges' cutoffs by seq.
        let (mut missing, mut purges) = (Vec::new(), Vec::new());
        sqlite::each_audit(&self.conn, &mut |a| {
            if let Some(before) = a.purged_before {
                purges.push((a.seq, before));
            }
            if let Some(id) = a.lookup_id {
                if !lookups.contains_key(&id) {
                    missing.push((a.seq, id.clone()));
                }
                named.insert(id);
            }
            Ok::<_, StoreError>(())
        })?;
        let mut out = Vec::new();
        for (seq, id) in missing {
            let requested = uuid::Uuid::parse_str(&id)
                .ok()
                .and_then(|u| u.get_timestamp())
                .map(|t| {
                    let (s, n) = t.to_unix();
                    (s as i64).saturating_mul(1000) + i64::from(n / 1_000_000)
                });
            let purged = purges
                .iter()
                .any(|&(p, before)| p > seq && requested.is_none_or(|at| at < before));
            if !purged {
                out.push(format!(
                    "audit entry {seq} names lookup {id}, which is not in the database and no purge deleted it: the row was deleted"
                ));
            }
        }
        let mut unnamed: Vec<(&String, &i64)> = lookups
            .iter()
            .filter(|(id, at)| {
                **at >= since
                    && !named.contains(*id)
                    && uuid::Uuid::parse_str(id).map_or(true, |u| u.get_version_num() != 8)
            })
            .collect();
        unnamed.sort();
        for (id, _) in unnamed {
            out.push(format!(
                "lookup {id} has no audit entry: it was not recorded by gbdfl, or its entry is gone"
            ));
        }
        Ok(out)
    }

    /// The stored dictionaries against the ones the format names.
    fn check_dictionaries(&self) -> Result<Vec<String>, StoreError> {
        use sha2::Digest as _;
        let stored = sqlite::dictionaries(&self.conn)?;
        let mut out = Vec::new();
        for (codec, zstd_id, content) in crate::codec::DICTIONARIES {
            let want = sha2::Sha256::digest(content).to_vec();
            match stored.iter().find(|d| d.0 == i64::from(codec)) {
                None => out.push(format!("dictionary of codec {codec} is missing")),
                Some((_, id, sha, bytes))
                    if *id != i64::from(zstd_id)
                        || *sha != want
                        || sha2::Sha256::digest(bytes).to_vec() != want =>
                {
                    out.push(format!(
                        "dictionary of codec {codec} was altered (its SHA-256 is not {}); gbdfl reads answers with its own copy",
                        hex::encode(&want)
                    ));
                }
                Some(_) => {}
            }
        }
        Ok(out)
    }
}

/// Rekey's re-sealing: opens a value of `table`.`column` of row `id`
/// sealed under `old` at key version `from` (bound to `binding`, or of a
/// table whose values are not bound), and seals it under `new` at
/// `version`.
fn resealer<'a>(old: &'a Keys, new: &'a Keys, version: i64) -> Box<Reseal<'a>> {
    Box::new(
        move |table: &str,
              column: &str,
              id: &str,
              binding: Option<&[u8]>,
              sealed: &[u8],
              from: i64| {
            let aad = |version: i64| {
                let mut aad = Vec::new();
                match binding {
                    Some(b) => {
                        crypto::bound_data_into(&mut aad, table, column, id, version as u32, b)
                    }
                    None => {
                        crypto::associated_data_into(&mut aad, table, column, id, version as u32)
                    }
                }
                aad
            };
            let plain = old
                .open(sealed, &aad(from))
                .map_err(|e| StoreError::Corrupt {
                    id: id.to_owned(),
                    column: "rekey",
                    reason: format!("{column}: {e}"),
                })?;
            new.seal(&plain, &aad(version))
                .map_err(|e| StoreError::Corrupt {
                    id: id.to_owned(),
                    column: "rekey",
                    reason: e.to_string(),
                })
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_purge_drops_the_indexes_only_for_much_of_a_large_database() {
        let purging = |paid, cached| PurgeCounts {
            paid,
            cached,
            ..PurgeCounts::default()
        };
        // Many lookups, a quarter of the database or more.
        assert!(purging(60_000, 40_000).drops_indexes(400_000));
        // Many, but under a quarter.
        assert!(!purging(100_000, 0).drops_indexes(400_004));
        // All of a small database.
        assert!(!purging(99_999, 0).drops_indexes(99_999));
    }
}
