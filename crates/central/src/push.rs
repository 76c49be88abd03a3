//! `gbdfl push`: the branch's new lookups and audit entries to the
//! central store.
//!
//! Resumable and idempotent: lookups wait in the branch's `push_pending`
//! list until the central store has committed them, and are then taken
//! off it; audit entries go from the central store's last entry of this
//! branch onwards. A batch goes by binary COPY into a temporary table and
//! on with `INSERT ... ON CONFLICT DO NOTHING` in one transaction, so a
//! push cut short anywhere (the line, the server, SIGKILL) leaves each row
//! either committed once or still waiting, and the next push completes it.

use postgres::binary_copy::BinaryCopyInWriter;
use postgres::types::Type;

use gbdfl_store::{AuditRow, LookupRow, Store};

use crate::{Central, CentralError, statement_error};

/// Lookups per COPY (a lookup is about 1-2 KB sealed): a batch is a few
/// megabytes and one transaction.
const LOOKUP_BATCH: usize = 2000;
/// Audit entries per COPY (an entry is about 300 bytes).
const AUDIT_BATCH: usize = 5000;

/// How far a push has gone.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pushed {
    /// Lookups committed by the central store in this push.
    pub lookups: u64,
    /// Lookups there were to send when the push began.
    pub lookups_total: u64,
    /// Audit entries committed by the central store in this push.
    pub audit: u64,
    /// Audit entries there were to send when the push began.
    pub audit_total: u64,
}

/// What a whole push did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PushCounts {
    /// The counts at the end.
    pub pushed: Pushed,
    /// Rows the central store had already (a resumed push): not written again.
    pub already_there: u64,
}

const LOOKUP_COLUMNS: &str = "branch, id, subject, requested_at, answered_at, operator, host, \
     source, outcome, status, result, http_status, failure_type, iin_checked, cached_from, \
     key_version, iin_enc, session_enc, purpose_enc, detail_enc, response_enc, summary_enc, \
     reached, os_user";

const LOOKUP_TYPES: [Type; 24] = [
    Type::TEXT,
    Type::TEXT,
    Type::BYTEA,
    Type::INT8,
    Type::INT8,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::BOOL,
    Type::INT4,
    Type::TEXT,
    Type::BOOL,
    Type::TEXT,
    Type::INT8,
    Type::BYTEA,
    Type::BYTEA,
    Type::BYTEA,
    Type::BYTEA,
    Type::BYTEA,
    Type::BYTEA,
    Type::TEXT,
    Type::TEXT,
];

const AUDIT_COLUMNS: &str = "branch, seq, id, at, operator, host, command, subject, outcome, \
     exit_code, paid_call, records, key_version, purpose_enc, error_enc, mac, os_user, \
     lookup_id, purged_before";

const AUDIT_TYPES: [Type; 19] = [
    Type::TEXT,
    Type::INT8,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::BYTEA,
    Type::TEXT,
    Type::INT8,
    Type::BOOL,
    Type::INT8,
    Type::INT8,
    Type::BYTEA,
    Type::BYTEA,
    Type::BYTEA,
    Type::TEXT,
    Type::TEXT,
    Type::INT8,
];

impl Central {
    /// Pushes everything this branch has that the central store has not,
    /// calling `progress` after each committed batch. First it checks the
    /// branch's key and id, and takes the branch's push lock on the server
    /// (two pushes of one branch never run at once); then `release` hears
    /// how many lookups are about to leave (the caller writes its audit
    /// entry there, which goes with the push); only then is anything sent.
    pub fn push<E: From<CentralError>>(
        &mut self,
        store: &Store,
        branch: &str,
        release: impl FnOnce(u64) -> Result<(), E>,
        progress: &mut dyn FnMut(Pushed),
    ) -> Result<PushCounts, E> {
        self.check_branch(branch, &store.org_keys().map_err(CentralError::from)?)?;
        store.enable_push().map_err(CentralError::from)?;
        let at = self.at.clone();
        let locked: bool = self
            .client
            .query_one(
                "SELECT pg_try_advisory_lock(hashtext('gbdfl-push:' || $1))",
                &[&branch],
            )
            .map_err(|e| statement_error(&at, &e))?
            .get(0);
        if !locked {
            return Err(CentralError::Busy(branch.to_owned()).into());
        }
        let result = store
            .count_pending_lookups()
            .map_err(|e| E::from(e.into()))
            .and_then(release)
            .and_then(|()| self.push_locked(store, branch, progress).map_err(E::from));
        // Dropping the connection releases the lock too (a killed push).
        let _ = self.client.execute(
            "SELECT pg_advisory_unlock(hashtext('gbdfl-push:' || $1))",
            &[&branch],
        );
        result
    }

    fn push_locked(
        &mut self,
        store: &Store,
        branch: &str,
        progress: &mut dyn FnMut(Pushed),
    ) -> Result<PushCounts, CentralError> {
        self.staging_tables()?;
        let central_seq = self.audit_continues(store, branch)?;
        let local_seq = store.audit_len()?;
        let mut counts = PushCounts {
            pushed: Pushed {
                lookups_total: store.count_pending_lookups()?,
                audit_total: u64::try_from(local_seq.saturating_sub(central_seq)).unwrap_or(0),
                ..Pushed::default()
            },
            already_there: 0,
        };
        progress(counts.pushed);
        // Audit entries first: the entries that tell of these lookups
        // reach the centre no later than the lookups themselves.
        let mut after = central_seq;
        loop {
            let rows = store.audit_rows_after(after, AUDIT_BATCH)?;
            let Some(last) = rows.last().map(|r| r.seq) else {
                break;
            };
            let added = self.copy_audit(branch, &rows)?;
            counts.pushed.audit += added;
            counts.already_there += rows.len() as u64 - added;
            after = last;
            progress(counts.pushed);
        }
        self.push_lookups(store, branch, &mut counts, progress)?;
        Ok(counts)
    }

    /// Sends the pending lookups over this connection and a second one:
    /// the server's work (the inserts, their indexes, the log) is most of
    /// a push, and two connections keep two of its processes busy. This
    /// thread reads each next batch from the store and takes committed
    /// batches off the pending list; the senders take batches in turn.
    /// A batch is committed before it is taken off the list, so a push
    /// stopped anywhere sends again at most what it had not marked, which
    /// the central store then finds there already.
    fn push_lookups(
        &mut self,
        store: &Store,
        branch: &str,
        counts: &mut PushCounts,
        progress: &mut dyn FnMut(Pushed),
    ) -> Result<(), CentralError> {
        let mut second = Central::connect(&self.target.clone())?;
        second.staging_tables()?;
        let (work_tx, work_rx) = std::sync::mpsc::sync_channel::<Vec<LookupRow>>(2);
        let work_rx = std::sync::Mutex::new(work_rx);
        let (done_tx, done_rx) =
            std::sync::mpsc::channel::<Result<(Vec<String>, u64), CentralError>>();
        std::thread::scope(|s| -> Result<(), CentralError> {
            for sender in [&mut *self, &mut second] {
                let (work_rx, done_tx) = (&work_rx, done_tx.clone());
                s.spawn(move || {
                    loop {
                        let next = work_rx.lock().map(|rx| rx.recv());
                        let Ok(Ok(rows)) = next else { break };
                        let sent = sender
                            .copy_lookups(branch, &rows)
                            .map(|added| (rows.into_iter().map(|r| r.id).collect(), added));
                        let failed = sent.is_err();
                        if done_tx.send(sent).is_err() || failed {
                            break;
                        }
                    }
                });
            }
            drop(done_tx);
            let mut mark = |done: Result<(Vec<String>, u64), CentralError>,
                            counts: &mut PushCounts|
             -> Result<(), CentralError> {
                let (ids, added) = done?;
                store.mark_pushed(&ids)?;
                counts.pushed.lookups += added;
                counts.already_there += ids.len() as u64 - added;
                progress(counts.pushed);
                Ok(())
            };
            let mut after = String::new();
            let mut first_error = None;
            loop {
                let rows = match store.pending_lookups_after(&after, LOOKUP_BATCH) {
                    Ok(rows) => rows,
                    Err(e) => {
                        first_error = Some(e.into());
                        break;
                    }
                };
                let Some(last) = rows.last().map(|r| r.id.clone()) else {
                    break;
                };
                after = last;
                if work_tx.send(rows).is_err() {
                    break;
                }
                while let Ok(done) = done_rx.try_recv() {
                    if let Err(e) = mark(done, counts) {
                        first_error.get_or_insert(e);
                    }
                }
                if first_error.is_some() {
                    break;
                }
            }
            drop(work_tx);
            // Every batch a sender committed is marked, even after an error.
            for done in done_rx {
                if let Err(e) = mark(done, counts) {
                    first_error.get_or_insert(e);
                }
            }
            first_error.map_or(Ok(()), Err)
        })
    }

    /// The temporary tables a push copies into (this connection's own).
    fn staging_tables(&mut self) -> Result<(), CentralError> {
        self.batch(
            "CREATE TEMP TABLE IF NOT EXISTS gbdfl_push_lookups (LIKE gbdfl_lookups) ON COMMIT DELETE ROWS;
             CREATE TEMP TABLE IF NOT EXISTS gbdfl_push_audit (LIKE gbdfl_audit) ON COMMIT DELETE ROWS;",
        )
    }

    /// The central store's last audit entry of this branch, checked to be
    /// the branch's own entry of that number (same MAC): a chain that
    /// diverged is never extended.
    fn audit_continues(&mut self, store: &Store, branch: &str) -> Result<i64, CentralError> {
        let at = self.at.clone();
        let row = self
            .client
            .query_opt(
                "SELECT seq, mac FROM gbdfl_audit WHERE branch = $1 ORDER BY seq DESC LIMIT 1",
                &[&branch],
            )
            .map_err(|e| statement_error(&at, &e))?;
        let Some(row) = row else {
            return Ok(0);
        };
        let (seq, mac): (i64, Vec<u8>) = (row.get(0), row.get(1));
        let local = store.audit_rows_after(seq - 1, 1)?;
        match local.first() {
            Some(r) if r.seq == seq && r.mac == mac => Ok(seq),
            _ => Err(CentralError::Key(format!(
                "the central store's audit trail of branch {branch} does not continue this database's (its entry {seq} is not this database's entry {seq}): nothing was sent. Is this the branch's own database, and its branch id the right one? `gbdfl audit verify --against-central` names where they part"
            ))),
        }
    }

    /// One batch in one transaction: binary COPY into this connection's
    /// temporary table `staging` (each row written by `write`), then
    /// `INSERT INTO target ... SELECT` from it with `conflict` (row-level
    /// security checks the INSERT; COPY into a table under it is not
    /// allowed). Returns the rows the INSERT added.
    fn copy_through(
        &mut self,
        (staging, target, columns): (&str, &str, &str),
        types: &[Type],
        conflict: &str,
        write: &mut dyn FnMut(&mut BinaryCopyInWriter<'_>) -> Result<(), postgres::Error>,
    ) -> Result<u64, CentralError> {
        let at = self.at.clone();
        let err = |e: postgres::Error| statement_error(&at, &e);
        let mut tx = self.client.transaction().map_err(err)?;
        {
            let sink = tx
                .copy_in(&format!("COPY {staging} ({columns}) FROM STDIN BINARY"))
                .map_err(err)?;
            let mut w = BinaryCopyInWriter::new(sink, types);
            write(&mut w).map_err(err)?;
            w.finish().map_err(err)?;
        }
        let added = tx
            .execute(
                &format!(
                    "INSERT INTO {target} ({columns}) SELECT {columns} FROM {staging} {conflict}"
                ),
                &[],
            )
            .map_err(err)?;
        tx.commit().map_err(err)?;
        Ok(added)
    }

    fn copy_lookups(&mut self, branch: &str, rows: &[LookupRow]) -> Result<u64, CentralError> {
        let tables = ("gbdfl_push_lookups", "gbdfl_lookups", LOOKUP_COLUMNS);
        let conflict = "ON CONFLICT (branch, id) DO NOTHING";
        self.copy_through(tables, &LOOKUP_TYPES, conflict, &mut |w| {
            for r in rows {
                let http_status = r.http_status.and_then(|s| i32::try_from(s).ok());
                w.write(&[
                    &branch,
                    &r.id,
                    &r.subject,
                    &r.requested_at,
                    &r.answered_at,
                    &r.operator,
                    &r.host,
                    &r.source.as_str(),
                    &r.outcome.as_str(),
                    &r.status,
                    &r.result,
                    &http_status,
                    &r.failure_type,
                    &r.iin_checked,
                    &r.cached_from,
                    &r.key_version,
                    &r.iin_enc,
                    &r.session_enc,
                    &r.purpose_enc,
                    &r.detail_enc,
                    &r.response_enc,
                    &r.summary_enc,
                    &r.reached.map(|x| x.as_str()),
                    &r.os_user,
                ])?;
            }
            Ok(())
        })
    }

    /// Adds audit entries after the central store's last one of this
    /// branch. No `ON CONFLICT`: an entry of that number there already
    /// means another writer of this branch's trail, and the whole batch is
    /// refused (a conflict is an error, never a silent skip).
    fn copy_audit(&mut self, branch: &str, rows: &[AuditRow]) -> Result<u64, CentralError> {
        let tables = ("gbdfl_push_audit", "gbdfl_audit", AUDIT_COLUMNS);
        self.copy_through(tables, &AUDIT_TYPES, "", &mut |w| {
            for r in rows {
                w.write(&[
                    &branch,
                    &r.seq,
                    &r.id,
                    &r.at,
                    &r.operator,
                    &r.host,
                    &r.command,
                    &r.subject,
                    &r.outcome,
                    &r.exit_code,
                    &r.paid_call,
                    &r.records,
                    &r.key_version,
                    &r.purpose_enc,
                    &r.error_enc,
                    &r.mac,
                    &r.os_user,
                    &r.lookup_id,
                    &r.purged_before,
                ])?;
            }
            Ok(())
        })
    }
}
