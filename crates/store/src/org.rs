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

use zeroize::Zeroizing;

use crate::audit::AuditCheck;
use crate::sqlite::{self, AuditRow, LookupRow};
use crate::{Lookup, Store, StoreError};

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::AuditEntry;
    use crate::crypto::{KEY_LEN, MasterKey};
    use crate::testing::valid_lookup;
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

    /// Another branch's trail, handed in row by row, is checked as `audit
    /// verify` checks the own one, and the first problem names its entry.
    #[test]
    fn a_foreign_trail_is_checked_as_the_own_one() {
        let dir = tempfile::tempdir().unwrap();
        let key = MasterKey::from_bytes([5; KEY_LEN]);
        let (head, _) = Store::init(&dir.path().join("head.db"), &key).unwrap();
        let branch = head.reopen().unwrap();
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
