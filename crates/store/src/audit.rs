//! The audit trail inside the store: appending chained entries, reading
//! them back, and verifying the chain.
//!
//! Rules this module keeps: an entry is appended under `BEGIN IMMEDIATE`,
//! so concurrent processes take turns and the chain never forks (the chain
//! verifies after `concurrent::four_operators_for_five_seconds`); each
//! entry's MAC covers the previous entry's MAC and the entry's fields
//! (docs/FORMAT.md, "The audit chain"), and verification names the first
//! entry that was changed, deleted, inserted, renumbered or swapped
//! (tests/cli/audit.rs, `os_user::a_changed_or_removed_os_user_breaks_the_chain`);
//! the purpose and the error are stored only sealed (the backend's row has
//! no plaintext field for them).

use chrono::{DateTime, Utc};
use rusqlite::Connection;
use uuid::Uuid;

use super::sqlite::{self, AuditRow};
use super::{Store, StoreError, parse_time};
use crate::crypto;

/// An entry to append. The store fills in sequence, time, id and MAC.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct AuditEntry {
    /// The gbdfl command the entry is about (`fetch`, `show`, `purge`, ...).
    pub command: String,
    /// The staff member who ran it, as declared.
    pub operator: String,
    /// The machine it ran on.
    pub host: String,
    /// The blind index of the IIN the command concerned; `None` when none.
    pub subject: Option<[u8; 32]>,
    /// Why the staff member asked (`--purpose`); stored sealed.
    pub purpose: Option<String>,
    /// The command's exit code: 0 is recorded as `ok`, any other as `error`.
    pub exit_code: u8,
    /// What went wrong, for a failed command; stored sealed.
    pub error: Option<String>,
    /// Whether a call to the paid service was made.
    pub paid_call: bool,
    /// How many records were shown, exported, changed or deleted.
    pub records: u64,
    /// The OS user that ran the command (`NAME (uid N)`), beside the
    /// declared `operator`; `None` for entries written before it was kept.
    pub os_user: Option<String>,
    /// The lookup the entry wrote or showed, when it concerns one (filled
    /// in by the store for the lookups it records).
    pub lookup_id: Option<String>,
    /// For a purge: the cutoff, before which it deleted every lookup
    /// (filled in by the store's purge).
    pub purged_before: Option<DateTime<Utc>>,
}

/// An entry as read back, opened.
#[derive(Debug, Clone)]
pub struct AuditView {
    /// Its place in the chain: 1, 2, 3, ... without gaps.
    pub seq: i64,
    /// The entry's id (UUIDv7).
    pub id: String,
    /// When the entry was written.
    pub at: DateTime<Utc>,
    /// The staff member who ran the command, as declared.
    pub operator: String,
    /// The machine it ran on.
    pub host: String,
    /// The gbdfl command the entry is about.
    pub command: String,
    /// First 8 bytes of the subject's blind index in hex: lets a reader see
    /// which entries concern the same person without saying who.
    pub subject: Option<String>,
    /// Why the staff member asked, opened.
    pub purpose: Option<String>,
    /// Whether the command succeeded (stored outcome `ok`).
    pub ok: bool,
    /// The command's exit code.
    pub exit_code: u8,
    /// What went wrong, opened; `None` when the command succeeded.
    pub error: Option<String>,
    /// Whether a call to the paid service was made.
    pub paid_call: bool,
    /// How many records were shown, exported, changed or deleted.
    pub records: u64,
    /// The OS user that ran the command; `None` for entries written before
    /// it was kept.
    pub os_user: Option<String>,
    /// The lookup the entry wrote or showed, if one.
    pub lookup_id: Option<String>,
    /// For a purge: the cutoff before which it deleted every lookup.
    pub purged_before: Option<DateTime<Utc>>,
}

/// What `audit verify` found.
#[derive(Debug, Clone)]
pub struct AuditCheck {
    /// How many entries the chain holds.
    pub entries: u64,
    /// The MAC of the last entry (empty for an empty trail): with `entries`,
    /// the head that `audit head` prints and `audit verify --head` checks.
    pub last_mac: Vec<u8>,
    /// The first problem, naming the entry; `None` when the chain holds.
    pub problem: Option<String>,
}

/// Filters for `audit log`.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    /// Only entries written at or after this time.
    pub from: Option<DateTime<Utc>>,
    /// Only entries written before this time.
    pub to: Option<DateTime<Utc>>,
    /// Only entries of this operator (exact match).
    pub operator: Option<String>,
    /// Only entries concerning the person with this blind index.
    pub subject: Option<[u8; 32]>,
    /// Only entries of this command (exact match).
    pub command: Option<String>,
}

impl AuditFilter {
    /// Whether the entry passes the filter.
    fn keeps(&self, row: &AuditRow) -> bool {
        let at = parse_time(&row.at);
        self.from.is_none_or(|t| at >= t)
            && self.to.is_none_or(|t| at < t)
            && self.operator.as_ref().is_none_or(|o| &row.operator == o)
            && self.command.as_ref().is_none_or(|c| &row.command == c)
            && self
                .subject
                .is_none_or(|s| row.subject.as_deref() == Some(s.as_slice()))
    }
}

/// Optional text as a MAC part: absent is empty, present is 0x01 + UTF-8.
fn opt_part(v: Option<&str>) -> Vec<u8> {
    match v {
        None => Vec::new(),
        Some(s) => {
            let mut p = vec![1u8];
            p.extend_from_slice(s.as_bytes());
            p
        }
    }
}

impl Store {
    fn audit_mac(
        &self,
        prev: &[u8],
        row: &AuditRow,
        purpose: Option<&str>,
        error: Option<&str>,
    ) -> [u8; 32] {
        let seq = row.seq.to_string();
        let exit = row.exit_code.to_string();
        let records = row.records.to_string();
        let purpose = opt_part(purpose);
        let error = opt_part(error);
        let subject = row.subject.clone().unwrap_or_default();
        // The OS user joins the MAC input only when the entry has one, so
        // entries written before it was kept still verify.
        let os_user = opt_part(row.os_user.as_deref());
        let lookup_id = opt_part(row.lookup_id.as_deref());
        let purged_before = opt_part(row.purged_before.map(|ms| ms.to_string()).as_deref());
        let parts: [&[u8]; 17] = [
            prev,
            seq.as_bytes(),
            row.id.as_bytes(),
            row.at.as_bytes(),
            row.operator.as_bytes(),
            row.host.as_bytes(),
            row.command.as_bytes(),
            &subject,
            row.outcome.as_bytes(),
            exit.as_bytes(),
            if row.paid_call { b"1" } else { b"0" },
            records.as_bytes(),
            &purpose,
            &error,
            &os_user,
            &lookup_id,
            &purged_before,
        ];
        // Likewise the lookup id and the purge cutoff: the optional parts
        // go in up to the last one present (those before it, empty when
        // absent), so entries written before they existed still verify.
        let n = if row.purged_before.is_some() {
            17
        } else if row.lookup_id.is_some() {
            16
        } else if row.os_user.is_some() {
            15
        } else {
            14
        };
        self.keys.audit_mac(&parts[..n])
    }

    fn seal_audit(
        &self,
        id: &str,
        column: &str,
        text: Option<&str>,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        text.map(|t| {
            let aad = crypto::associated_data("audit", column, id, self.key_version);
            self.keys
                .seal(t.as_bytes(), &aad)
                .map_err(|e| StoreError::Corrupt {
                    id: id.to_owned(),
                    column: "seal",
                    reason: e.to_string(),
                })
        })
        .transpose()
    }

    pub(super) fn open_audit_text(
        &self,
        row: &AuditRow,
        column: &'static str,
        sealed: Option<&[u8]>,
    ) -> Result<Option<String>, StoreError> {
        let Some(sealed) = sealed else {
            return Ok(None);
        };
        let aad = crypto::associated_data("audit", column, &row.id, row.key_version as u32);
        let plain = self
            .keys
            .open(sealed, &aad)
            .map_err(|e| StoreError::Corrupt {
                id: format!("audit entry {}", row.seq),
                column,
                reason: e.to_string(),
            })?;
        Ok(Some(String::from_utf8_lossy(&plain).into_owned()))
    }

    /// Appends an entry on `conn`, which must be inside a write transaction.
    pub(super) fn append_audit_in(
        &self,
        conn: &Connection,
        e: &AuditEntry,
    ) -> Result<(), StoreError> {
        let (seq, prev) = match sqlite::audit_last(conn)? {
            Some((seq, mac)) => (seq + 1, mac),
            None => (1, Vec::new()),
        };
        let id = Uuid::now_v7().hyphenated().to_string();
        let mut row = AuditRow {
            seq,
            at: self.now_text(),
            operator: e.operator.clone(),
            host: e.host.clone(),
            command: e.command.clone(),
            subject: e.subject.map(|s| s.to_vec()),
            outcome: if e.exit_code == 0 { "ok" } else { "error" }.to_owned(),
            exit_code: i64::from(e.exit_code),
            paid_call: e.paid_call,
            records: e.records as i64,
            key_version: i64::from(self.key_version),
            purpose_enc: self.seal_audit(&id, "purpose_enc", e.purpose.as_deref())?,
            error_enc: self.seal_audit(&id, "error_enc", e.error.as_deref())?,
            os_user: e.os_user.clone(),
            lookup_id: e.lookup_id.clone(),
            purged_before: e.purged_before.map(|t| t.timestamp_millis()),
            mac: Vec::new(),
            id,
        };
        row.mac = self
            .audit_mac(&prev, &row, e.purpose.as_deref(), e.error.as_deref())
            .to_vec();
        sqlite::insert_audit(conn, &row)
    }

    /// Appends one audit entry in its own transaction.
    pub fn append_audit(&self, e: &AuditEntry) -> Result<(), StoreError> {
        sqlite::immediate(&self.conn, |c| self.append_audit_in(c, e))
    }

    fn view(&self, row: &AuditRow) -> Result<AuditView, StoreError> {
        Ok(AuditView {
            seq: row.seq,
            id: row.id.clone(),
            at: parse_time(&row.at),
            operator: row.operator.clone(),
            host: row.host.clone(),
            command: row.command.clone(),
            subject: row
                .subject
                .as_ref()
                .map(|s| hex::encode(&s[..8.min(s.len())])),
            purpose: self.open_audit_text(row, "purpose_enc", row.purpose_enc.as_deref())?,
            ok: row.outcome == "ok",
            exit_code: row.exit_code as u8,
            error: self.open_audit_text(row, "error_enc", row.error_enc.as_deref())?,
            paid_call: row.paid_call,
            records: row.records.max(0) as u64,
            os_user: row.os_user.clone(),
            lookup_id: row.lookup_id.clone(),
            purged_before: row.purged_before.and_then(DateTime::from_timestamp_millis),
        })
    }

    /// Calls `f` with every entry that passes the filter, oldest first.
    pub fn each_audit<E: From<StoreError>>(
        &self,
        filter: &AuditFilter,
        mut f: impl FnMut(AuditView) -> Result<(), E>,
    ) -> Result<(), E> {
        sqlite::each_audit(&self.conn, &mut |row: AuditRow| {
            if filter.keeps(&row) {
                f(self.view(&row)?)
            } else {
                Ok(())
            }
        })
    }

    /// An entry of another store with these keys (a branch's, from the
    /// central store) as `audit log` shows it, its sealed purpose and
    /// error opened; `None` when `filter` leaves it out.
    pub fn audit_view_of(
        &self,
        row: &AuditRow,
        filter: &AuditFilter,
    ) -> Result<Option<AuditView>, StoreError> {
        filter.keeps(row).then(|| self.view(row)).transpose()
    }

    /// Walks the whole chain and reports the first entry that does not fit.
    /// With `head` (count and MAC written down earlier) it also detects a
    /// tail cut off since then.
    pub fn verify_audit(&self, head: Option<(u64, &[u8])>) -> Result<AuditCheck, StoreError> {
        let mut chain = Chain::new(head);
        sqlite::each_audit(&self.conn, &mut |row: AuditRow| -> Result<(), StoreError> {
            self.chain_step(&mut chain, row);
            Ok(())
        })?;
        Ok(chain.end())
    }

    /// Takes the next entry of a chain walk ([`Chain`]); false once the
    /// walk has found its problem (later entries are not looked at).
    pub(crate) fn chain_step(&self, chain: &mut Chain<'_>, row: AuditRow) -> bool {
        if chain.problem.is_some() {
            return false;
        }
        if row.seq != chain.expected {
            chain.problem = Some(format!(
                "entry {} is missing (deleted, or the entries were renumbered); the next entry present is {}",
                chain.expected, row.seq
            ));
            return false;
        }
        let opened = (
            self.open_audit_text(&row, "purpose_enc", row.purpose_enc.as_deref()),
            self.open_audit_text(&row, "error_enc", row.error_enc.as_deref()),
        );
        let mac_ok = match opened {
            (Ok(p), Ok(e)) => {
                self.audit_mac(&chain.prev, &row, p.as_deref(), e.as_deref())
                    .as_slice()
                    == row.mac.as_slice()
            }
            _ => false,
        };
        if !mac_ok {
            chain.problem = Some(format!(
                "entry {} (id {}, {} {} at {}) does not match the chain: it was changed, or an entry was inserted, deleted or moved just before it",
                row.seq, row.id, row.operator, row.command, row.at
            ));
            return false;
        }
        if chain.head.is_some_and(|(n, _)| n as i64 == row.seq) {
            chain.head_mac = Some(row.mac.clone());
        }
        chain.prev = row.mac;
        chain.expected += 1;
        true
    }
}

/// A walk along an audit chain, entry by entry from entry 1
/// ([`Store::chain_step`]): what [`Store::verify_audit`] and
/// [`Store::verify_audit_rows`] share.
pub(crate) struct Chain<'h> {
    expected: i64,
    prev: Vec<u8>,
    problem: Option<String>,
    head: Option<(u64, &'h [u8])>,
    head_mac: Option<Vec<u8>>,
}

impl<'h> Chain<'h> {
    /// A walk not begun; with `head` (count and MAC written down earlier)
    /// its end also checks that entry.
    pub(crate) fn new(head: Option<(u64, &'h [u8])>) -> Chain<'h> {
        Chain {
            expected: 1,
            prev: Vec::new(),
            problem: None,
            head,
            head_mac: None,
        }
    }

    /// What the walk found.
    pub(crate) fn end(self) -> AuditCheck {
        let entries = (self.expected - 1) as u64;
        let mut problem = self.problem;
        if problem.is_none()
            && let Some((count, mac)) = self.head
        {
            if entries < count {
                problem = Some(format!(
                    "the trail ends at entry {entries}, but the head written down says {count} entries: entries {} to {count} were cut off",
                    entries + 1
                ));
            } else if self.head_mac.as_deref() != Some(mac) {
                problem = Some(format!(
                    "entry {count} does not match the head written down: the trail was rewritten since"
                ));
            }
        }
        AuditCheck {
            entries,
            last_mac: self.prev,
            problem,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::MasterKey;

    fn entry(command: &str, os_user: Option<&str>) -> AuditEntry {
        AuditEntry {
            command: command.into(),
            operator: "anna".into(),
            host: "host".into(),
            os_user: os_user.map(str::to_owned),
            ..AuditEntry::default()
        }
    }

    /// Entries without an `os_user` (as before version 5) and entries with
    /// one share a chain: the MAC takes the OS user only when present, and
    /// changing or clearing it breaks the chain.
    #[test]
    fn entries_before_and_after_os_user_verify_and_it_is_covered() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gbdfl.db");
        let key = MasterKey::from_bytes([7; crate::crypto::KEY_LEN]);
        let (store, _) = Store::init(&path, &key).unwrap();
        store.append_audit(&entry("fetch", None)).unwrap();
        store.append_audit(&entry("show", None)).unwrap();
        store
            .append_audit(&entry("fetch", Some("anna (uid 1000)")))
            .unwrap();
        let check = store.verify_audit(None).unwrap();
        assert_eq!((check.entries, check.problem), (3, None));
        let mut seen = Vec::new();
        store
            .each_audit(&AuditFilter::default(), |v| -> Result<(), StoreError> {
                seen.push(v.os_user);
                Ok(())
            })
            .unwrap();
        assert_eq!(seen, [None, None, Some("anna (uid 1000)".to_owned())]);
        for (seq, value) in [(3, Some("root (uid 0)")), (3, None), (1, Some("x"))] {
            let before: Option<String> = store
                .conn
                .query_row("SELECT os_user FROM audit WHERE seq = ?1", [seq], |r| {
                    r.get(0)
                })
                .unwrap();
            store
                .conn
                .execute(
                    "UPDATE audit SET os_user = ?2 WHERE seq = ?1",
                    rusqlite::params![seq, value],
                )
                .unwrap();
            let problem = store.verify_audit(None).unwrap().problem.unwrap();
            assert!(problem.starts_with(&format!("entry {seq} ")), "{problem}");
            store
                .conn
                .execute(
                    "UPDATE audit SET os_user = ?2 WHERE seq = ?1",
                    rusqlite::params![seq, before],
                )
                .unwrap();
        }
        assert_eq!(store.verify_audit(None).unwrap().problem, None);
    }
}
