//! What a branch of an organisation shares with the others: its lookups
//! and audit trail pushed, row for row, to the organisation's replica, and
//! rows of other branches opened and checked with the same keys.
//!
//! Rules this module keeps: a pushed row is the row as stored (sealed
//! values stay sealed; their associated data names the row's own id, not
//! the database, so any database holding the same keys opens them); a row
//! handed in from elsewhere is believed only once every sealed value of it
//! opens and its blind index is that of the IIN it holds
//! (`a_foreign_row_opens_only_with_the_same_keys`); a foreign audit trail
//! is checked by the very chain walk of `audit verify`
//! (`a_foreign_trail_is_checked_as_the_own_one`).

use std::path::Path;
use std::sync::Arc;

use zeroize::Zeroizing;

use crate::audit::AuditCheck;
use crate::crypto::{self, MasterKey};
use crate::sqlite::{self, AuditRow, LookupRow};
use crate::{Lookup, Store, StoreError, crypto_err, time_text, wrap_aad};
use gbdfl_core::clock::{Clock, SystemClock};

impl Store {
    /// Starts keeping the list of lookups to push (the optional table
    /// `push_pending` and its two triggers, docs/FORMAT.md): from now on
    /// every lookup recorded is on it until [`Store::mark_pushed`] takes it
    /// off, and a lookup deleted (purged) leaves it. Made now, the list
    /// holds every lookup already stored. Idempotent: once enabled, calling
    /// it again changes nothing.
    pub fn enable_push(&self) -> Result<(), StoreError> {
        sqlite::immediate(&self.conn, sqlite::enable_push)
    }

    /// Whether [`Store::enable_push`] was called on this database.
    pub fn push_enabled(&self) -> Result<bool, StoreError> {
        sqlite::push_enabled(&self.conn)
    }

    /// Up to `limit` lookups waiting to be pushed, as stored (every column,
    /// sealed values as they are), in id order; none when pushing is not
    /// enabled.
    pub fn pending_lookups(&self, limit: usize) -> Result<Vec<LookupRow>, StoreError> {
        sqlite::pending_lookups(&self.conn, limit)
    }

    /// Up to `limit` lookups waiting to be pushed whose id sorts after
    /// `after` ("" for the first), in id order: for a push that reads the
    /// next batch while earlier ones are still being sent.
    pub fn pending_lookups_after(
        &self,
        after: &str,
        limit: usize,
    ) -> Result<Vec<LookupRow>, StoreError> {
        sqlite::pending_lookups_after(&self.conn, after, limit)
    }

    /// How many lookups wait to be pushed; 0 when pushing is not enabled.
    pub fn count_pending_lookups(&self) -> Result<u64, StoreError> {
        sqlite::count_pending_lookups(&self.conn)
    }

    /// Takes these lookups off the list to push, in one transaction (once
    /// the replica has committed them). Ids not on the list are ignored.
    pub fn mark_pushed(&self, ids: &[String]) -> Result<(), StoreError> {
        sqlite::immediate(&self.conn, |c| sqlite::mark_pushed(c, ids))
    }

    /// Up to `limit` audit entries after entry `seq` (0: from the first),
    /// as stored (every column, sealed values as they are), in sequence
    /// order.
    pub fn audit_rows_after(&self, seq: i64, limit: usize) -> Result<Vec<AuditRow>, StoreError> {
        sqlite::audit_rows_after(&self.conn, seq, limit)
    }

    /// The number of the last audit entry (the trail has no gaps, so also
    /// how many there are); 0 for an empty trail.
    pub fn audit_len(&self) -> Result<i64, StoreError> {
        sqlite::audit_len(&self.conn)
    }

    /// Opens a lookup row as stored in some database with this database's
    /// keys (another branch's, read from the replica): every sealed value
    /// must open under the row as it is, and its `subject` must be the
    /// blind index of the IIN it holds, else [`StoreError::Corrupt`] naming
    /// the row. Gives the lookup and its response body (`None` when it has
    /// none).
    #[allow(clippy::type_complexity)]
    pub fn open_lookup_row(
        &self,
        row: &LookupRow,
    ) -> Result<(Lookup, Option<Zeroizing<Vec<u8>>>), StoreError> {
        let lookup = self.to_lookup(row)?;
        self.open_col(row, "session_enc", &row.session_enc)?;
        if let Some(summary) = &row.summary_enc {
            self.open_col(row, "summary_enc", summary)?;
        }
        let body = self.open_response(row)?;
        if self.keys.blind_index(&lookup.iin).as_slice() != row.subject.as_slice() {
            return Err(StoreError::Corrupt {
                id: row.id.clone(),
                column: "subject",
                reason: "it is not the blind index of the IIN the row holds under this database's keys (the row comes from a database with other keys)".into(),
            });
        }
        Ok((lookup, body))
    }

    /// Checks an audit trail handed in row by row (another branch's, read
    /// from the replica), from entry 1 in sequence order, as
    /// [`Store::verify_audit`] checks this database's own: numbered without
    /// gaps, each MAC (under this database's audit key) over the previous
    /// one and the entry. The first problem names its entry. An error of
    /// the rows themselves stops the walk and is given back.
    pub fn verify_audit_rows<E: From<StoreError>>(
        &self,
        rows: impl IntoIterator<Item = Result<AuditRow, E>>,
    ) -> Result<AuditCheck, E> {
        let mut chain = crate::audit::Chain::new(None);
        for row in rows {
            if !self.chain_step(&mut chain, row?) {
                break;
            }
        }
        Ok(chain.end())
    }
}

/// The organisation's keys row: what every branch's database holds in its
/// `keys` table as its current key version, so that the blind index and
/// the audit key agree across branches. Its wrapped keys are sealed under
/// the (shared) master key; nothing here is secret without it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrgKeys {
    /// The key version (`keys.version`); the associated data of the
    /// wrapped keys names it.
    pub version: i64,
    /// The check value of the master key (`keys.check_value`, 32 bytes).
    pub check_value: Vec<u8>,
    /// The blind-index and audit keys, sealed under the master key
    /// (`keys.wrapped_keys`).
    pub wrapped_keys: Vec<u8>,
}

impl Store {
    /// The current keys row of this database, to hand to other branches
    /// ([`Store::init_adopting`]) or to compare ([`Store::has_org_keys`]).
    pub fn org_keys(&self) -> Result<OrgKeys, StoreError> {
        let rows = sqlite::key_rows(&self.conn)?;
        let current = rows.into_iter().next().ok_or(StoreError::NoKey)?;
        Ok(OrgKeys {
            version: current.version,
            check_value: current.check_value,
            wrapped_keys: current.wrapped_keys,
        })
    }

    /// Creates a new database at `path` whose keys row is the
    /// organisation's (same version, check value and wrapped keys), so that
    /// its blind indexes and audit MACs agree with every other branch's.
    /// Refuses, before any file is made, a `key` that is not the
    /// organisation's master key ([`StoreError::WrongKey`]) or wrapped keys
    /// that do not open under it ([`StoreError::Corrupt`]); refuses a file
    /// that already holds a database ([`StoreError::AlreadyInitialised`],
    /// the file left as it was), or another program's file.
    pub fn init_adopting(path: &Path, key: &MasterKey, org: &OrgKeys) -> Result<Store, StoreError> {
        Store::init_adopting_with(path, key, org, SystemClock::shared())
    }

    /// [`Store::init_adopting`] with the clock the store is to read.
    pub fn init_adopting_with(
        path: &Path,
        key: &MasterKey,
        org: &OrgKeys,
        clock: Arc<dyn Clock>,
    ) -> Result<Store, StoreError> {
        let mine = key.check_value();
        if org.check_value.as_slice() != mine.as_slice() {
            return Err(StoreError::WrongKey {
                db_key_id: crypto::key_id(&org.check_value),
                file_key_id: crypto::key_id(&mine),
            });
        }
        let version = u32::try_from(org.version)
            .ok()
            .filter(|v| *v >= 1)
            .ok_or_else(|| {
                StoreError::Malformed(format!(
                    "the organisation's key version {} is not a key version",
                    org.version
                ))
            })?;
        let stable = key
            .unwrap_keys(&org.wrapped_keys, &wrap_aad(org.version))
            .map_err(crypto_err("the organisation's keys"))?;
        if sqlite::probe_holds_database(path)? {
            return Err(StoreError::AlreadyInitialised(path.to_owned()));
        }
        let (conn, _) = sqlite::create(path, Store::BUSY_TIMEOUT, &time_text(clock.now()))?;
        sqlite::immediate(&conn, |c| {
            if !sqlite::key_rows(c)?.is_empty() {
                return Err(StoreError::AlreadyInitialised(path.to_owned()));
            }
            sqlite::insert_key(
                c,
                &sqlite::KeyRow {
                    version: org.version,
                    check_value: org.check_value.clone(),
                    wrapped_keys: org.wrapped_keys.clone(),
                    created_at: time_text(clock.now()),
                    retired_at: None,
                },
            )
        })?;
        Ok(Store::with_key(conn, path, key, version, &stable).with_clock(clock))
    }

    /// Whether this database's current blind-index and audit keys are the
    /// organisation's: `org`'s wrapped keys, opened with this database's
    /// master key, are the keys this store uses. False when they differ or
    /// do not open under this master key (another organisation, another
    /// key file).
    pub fn has_org_keys(&self, org: &OrgKeys) -> Result<bool, StoreError> {
        let Ok(theirs) = self.keys.open(&org.wrapped_keys, &wrap_aad(org.version)) else {
            return Ok(false);
        };
        Ok(self.keys.holds_stable(&theirs))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::KEY_LEN;
    use crate::testing::valid_lookup;
    use crate::{AuditEntry, LookupId, NewLookup, Source};
    use gbdfl_core::iin::Iin;

    fn at(s: &str) -> chrono::DateTime<chrono::Utc> {
        chrono::DateTime::parse_from_rfc3339(s).unwrap().to_utc()
    }

    fn iin(n: u32) -> Iin {
        Iin::parse_unchecked(&format!("{:012}", 900_000_000_000u64 + u64::from(n))).unwrap()
    }

    fn entry(command: &str) -> AuditEntry {
        AuditEntry {
            command: command.into(),
            operator: "anna".into(),
            host: "branch".into(),
            purpose: Some("a purpose".into()),
            ..AuditEntry::default()
        }
    }

    #[test]
    fn the_push_list_holds_every_lookup_until_it_is_marked_pushed() {
        let dir = tempfile::tempdir().unwrap();
        let key = MasterKey::from_bytes([1; KEY_LEN]);
        let (store, _) = Store::init(&dir.path().join("a.db"), &key).unwrap();
        let (one, two, three) = (iin(1), iin(2), iin(3));
        store
            .record(&valid_lookup(&one, b"{}", at("2026-01-01T00:00:00Z")), None)
            .unwrap();
        store
            .record(&valid_lookup(&two, b"{}", at("2026-01-02T00:00:00Z")), None)
            .unwrap();
        assert!(!store.push_enabled().unwrap());
        assert!(store.pending_lookups(10).unwrap().is_empty());
        assert_eq!(store.count_pending_lookups().unwrap(), 0);

        store.enable_push().unwrap();
        assert!(store.push_enabled().unwrap());
        assert_eq!(
            store.count_pending_lookups().unwrap(),
            2,
            "the lookups already there"
        );
        let third = valid_lookup(&three, b"{\"x\":1}", at("2026-01-03T00:00:00Z"));
        store.record(&third, None).unwrap();
        store.record(&third, None).unwrap();
        assert_eq!(
            store.count_pending_lookups().unwrap(),
            3,
            "each lookup once"
        );

        let first = store.pending_lookups(2).unwrap();
        assert_eq!(first.len(), 2);
        assert!(first[0].id < first[1].id, "in id order");
        let stored = sqlite::lookup_by_id(&store.conn, &first[0].id)
            .unwrap()
            .unwrap();
        assert_eq!(
            serde_json::to_value(&first[0]).unwrap(),
            serde_json::to_value(&stored).unwrap(),
            "the row as stored"
        );
        let ids: Vec<String> = first.iter().map(|r| r.id.clone()).collect();
        store.mark_pushed(&ids).unwrap();
        assert_eq!(store.count_pending_lookups().unwrap(), 1);
        let rest = store.pending_lookups(10).unwrap();
        assert_eq!(rest.len(), 1);
        assert!(!ids.contains(&rest[0].id));

        // Enabling again does not put the pushed ones back; a deleted
        // lookup leaves the list.
        store.enable_push().unwrap();
        assert_eq!(store.count_pending_lookups().unwrap(), 1);
        store
            .conn
            .execute("DELETE FROM lookups WHERE id = ?1", [&rest[0].id])
            .unwrap();
        assert_eq!(store.count_pending_lookups().unwrap(), 0);
        assert_eq!(store.check().unwrap().integrity, ["ok"]);
    }

    /// A branch made with the organisation's keys opens another branch's
    /// rows and gets the same blind index; a branch with keys of its own
    /// (the same key file) does not, nor does anyone open an altered row.
    #[test]
    fn a_foreign_row_opens_only_with_the_same_keys() {
        let dir = tempfile::tempdir().unwrap();
        let key = MasterKey::from_bytes([2; KEY_LEN]);
        let (head, _) = Store::init(&dir.path().join("head.db"), &key).unwrap();
        let org = head.org_keys().unwrap();
        assert_eq!(org.version, 1);
        let branch = Store::init_adopting(&dir.path().join("branch.db"), &key, &org).unwrap();
        let (alone, _) = Store::init(&dir.path().join("alone.db"), &key).unwrap();
        assert_eq!(branch.org_keys().unwrap(), org);
        assert!(head.has_org_keys(&org).unwrap());
        assert!(branch.has_org_keys(&org).unwrap());
        assert!(!alone.has_org_keys(&org).unwrap());

        let person = iin(7);
        assert_eq!(head.subject_of(&person), branch.subject_of(&person));
        assert_ne!(head.subject_of(&person), alone.subject_of(&person));
        let body = br#"{"result":true,"from":"head office"}"#;
        let fetched = valid_lookup(&person, body, at("2026-02-01T10:00:00Z"));
        head.enable_push().unwrap();
        head.record(&fetched, None).unwrap();
        let row = head.pending_lookups(1).unwrap().remove(0);

        let (lookup, got) = branch.open_lookup_row(&row).unwrap();
        assert_eq!(lookup.id, fetched.id.to_string());
        assert_eq!(lookup.iin, person.as_str());
        assert_eq!(lookup.source, Source::Service);
        assert_eq!(&got.unwrap()[..], &body[..]);
        let refused = alone.open_lookup_row(&row).unwrap_err();
        assert!(
            matches!(
                &refused,
                StoreError::Corrupt {
                    column: "subject",
                    ..
                }
            ),
            "{refused}"
        );
        let mut altered = row.clone();
        altered.answered_at = altered.answered_at.map(|t| t + 1);
        assert!(branch.open_lookup_row(&altered).is_err());

        // The branch stores it as an answer of the organisation cache: its
        // own lookup, the original answer time, the latest VALID answer.
        let now = at("2026-02-03T09:00:00Z");
        let opened = got_body(&branch, &row);
        let org_answer = NewLookup {
            source: Source::Org,
            cached_from: Some(LookupId(uuid::Uuid::parse_str(&lookup.id).unwrap())),
            reached: None,
            requested_at: now,
            answered_at: lookup.answered_at,
            ..valid_lookup(&person, &opened, now)
        };
        branch.record(&org_answer, None).unwrap();
        let latest = branch.latest_valid(&person).unwrap().unwrap();
        assert_eq!(latest.lookup.source, Source::Org);
        assert_eq!(latest.lookup.answered_at, lookup.answered_at);
        assert_eq!(
            latest.lookup.cached_from.as_deref(),
            Some(lookup.id.as_str())
        );
        assert!(branch.check().unwrap().undecryptable.is_empty());
        let days = branch.stats(None, None).unwrap();
        assert_eq!(
            (days[0].from_org, days[0].paid_calls, days[0].avoided()),
            (1, 0, 1)
        );
        let purge = branch.purge_counts(at("2030-01-01T00:00:00Z")).unwrap();
        assert_eq!((purge.paid, purge.cached), (0, 1), "no call");
    }

    fn got_body(store: &Store, row: &LookupRow) -> Vec<u8> {
        store.open_lookup_row(row).unwrap().1.unwrap().to_vec()
    }

    #[test]
    fn adopting_refuses_another_key_and_an_existing_database() {
        let dir = tempfile::tempdir().unwrap();
        let key = MasterKey::from_bytes([3; KEY_LEN]);
        let (head, _) = Store::init(&dir.path().join("head.db"), &key).unwrap();
        let org = head.org_keys().unwrap();
        let other = MasterKey::from_bytes([4; KEY_LEN]);
        let path = dir.path().join("branch.db");
        let wrong = Store::init_adopting(&path, &other, &org).unwrap_err();
        assert!(matches!(wrong, StoreError::WrongKey { .. }), "{wrong}");
        assert!(wrong.is_key_or_integrity());
        assert!(!path.exists(), "nothing made");
        let mut bent = org.clone();
        bent.version = 2;
        let bad = Store::init_adopting(&path, &key, &bent).unwrap_err();
        assert!(matches!(bad, StoreError::Corrupt { .. }), "{bad}");
        assert!(!path.exists(), "nothing made");

        let existing = dir.path().join("head.db");
        let before = std::fs::read(&existing).unwrap();
        drop(head);
        let there = Store::init_adopting(&existing, &key, &org).unwrap_err();
        assert!(
            matches!(there, StoreError::AlreadyInitialised(_)),
            "{there}"
        );
        let (_, state) = Store::init(&existing, &key).unwrap();
        assert_eq!(state, crate::InitState::AlreadyInitialised);
        assert!(before.len() <= std::fs::read(&existing).unwrap().len());
    }

    /// Another branch's trail, handed in row by row, is checked as `audit
    /// verify` checks the own one, and the first problem names its entry.
    #[test]
    fn a_foreign_trail_is_checked_as_the_own_one() {
        let dir = tempfile::tempdir().unwrap();
        let key = MasterKey::from_bytes([5; KEY_LEN]);
        let (head, _) = Store::init(&dir.path().join("head.db"), &key).unwrap();
        let branch = Store::init_adopting(
            &dir.path().join("branch.db"),
            &key,
            &head.org_keys().unwrap(),
        )
        .unwrap();
        let (alone, _) = Store::init(&dir.path().join("alone.db"), &key).unwrap();
        assert_eq!(head.audit_len().unwrap(), 0);
        for command in ["fetch", "show", "history", "report expiring"] {
            head.append_audit(&entry(command)).unwrap();
        }
        assert_eq!(head.audit_len().unwrap(), 4);
        let rows = head.audit_rows_after(0, 100).unwrap();
        assert_eq!(rows.len(), 4);
        let tail = head.audit_rows_after(2, 1).unwrap();
        assert_eq!(tail.len(), 1);
        assert_eq!(tail[0].seq, 3);
        assert_eq!(tail[0].mac, rows[2].mac);

        fn ok(rows: &[AuditRow]) -> impl Iterator<Item = Result<AuditRow, StoreError>> + '_ {
            rows.iter().cloned().map(Ok)
        }
        let own = head.verify_audit(None).unwrap();
        let theirs = branch.verify_audit_rows(ok(&rows)).unwrap();
        assert_eq!(theirs.problem, None);
        assert_eq!(
            (theirs.entries, &theirs.last_mac),
            (own.entries, &own.last_mac)
        );

        let mut changed = rows.clone();
        changed[2].operator = "boris".into();
        let problem = branch
            .verify_audit_rows(ok(&changed))
            .unwrap()
            .problem
            .unwrap();
        assert!(problem.starts_with("entry 3 "), "{problem}");
        let mut gap = rows.clone();
        gap.remove(1);
        let problem = branch.verify_audit_rows(ok(&gap)).unwrap().problem.unwrap();
        assert!(problem.starts_with("entry 2 is missing"), "{problem}");
        let problem = alone.verify_audit_rows(ok(&rows)).unwrap().problem.unwrap();
        assert!(problem.starts_with("entry 1 "), "{problem}");

        // An error of the rows' source stops the walk and comes back.
        let failing = rows.iter().cloned().map(Ok).chain([Err(StoreError::NoKey)]);
        assert!(matches!(
            branch.verify_audit_rows(failing),
            Err(StoreError::NoKey)
        ));
    }
}
