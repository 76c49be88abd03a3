//! Work on many lookups at once: sealing imported answers on any thread and
//! inserting them in large transactions, walking the sealed summaries of
//! every person for the expiry scan, exporting every answer, and the
//! "floor" measurements of the benchmark.
//!
//! Rules this module keeps: the connection stays on its thread (a
//! [`Store`] is not `Sync`); workers get an [`Opener`] (the keys without
//! the connection), and what they hand the writer is sealed
//! ([`SealedLookup`], [`SealedSummaries`]). Every import batch is one
//! transaction, so an error keeps the batches before it whole
//! (`imports_commit_as_they_go_and_keep_what_came_before_an_error`), and an
//! import never replaces a row: ids come from the content
//! (`Keys::content_id`), so importing twice stores nothing twice
//! (`archive::tests::a_read_error_midway_keeps_what_came_before_it`,
//! `bulk::issue_6_import_then_export_gives_back_the_same_answers` in
//! tests/cli).

use std::borrow::Cow;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use uuid::Uuid;
use zeroize::Zeroizing;

use super::audit::AuditEntry;
use super::sqlite::{self, LookupRow};
use super::{LookupId, NewLookup, Outcome, Reached, Source, Store, StoreError, sealed_row};
use crate::crypto::{self, Keys};
use crate::sealed::LookupBinding;
use gbdfl_core::iin::Iin;
use gbdfl_core::summary::Summary;

/// One answer to import, plaintext, as read from an archive line and
/// borrowed from it.
#[derive(Debug)]
pub struct ImportItem<'a> {
    /// The person the answer is about; stored sealed, found by its blind index.
    pub iin: Iin,
    /// The face2face backend session id the answer names (may be empty).
    pub session_id: Cow<'a, str>,
    /// When the answer was fetched from the service: stored as both the
    /// lookup's request and answer time.
    pub fetched_at: DateTime<Utc>,
    /// The answer's GBDFL status.
    pub status: Option<String>,
    /// The answer's `result` flag.
    pub result: Option<bool>,
    /// The answer's `failure_reason.type`.
    pub failure_type: Option<String>,
    /// The answer's `failure_reason`, in words; stored sealed.
    pub detail: Option<String>,
    /// The line exactly as given.
    pub body: &'a [u8],
    /// The document summary, for a VALID answer.
    pub summary: Option<Summary>,
}

/// An imported answer sealed and ready to insert.
#[derive(Debug)]
pub struct SealedLookup(pub(crate) LookupRow);

/// How an import batch went.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ImportOutcome {
    /// Rows inserted now.
    pub inserted: u64,
    /// Rows whose id was already stored (imported before): left as they were.
    pub already: u64,
}

/// Rows per transaction of an import (at most, give or take a block).
pub const IMPORT_ROWS: u64 = 65_536;
/// The longest an import holds the write lock before it commits.
pub const IMPORT_HOLD: Duration = Duration::from_secs(2);
/// How long an import leaves the write lock free after a commit that more
/// rows follow: four tries of another gbdfl process waiting to write (a
/// `fetch` recording a paid answer, an audit entry; its busy handler tries
/// every [`sqlite::BUSY_POLL`]), which so gets its turn. Another writer
/// waits at most about [`IMPORT_HOLD`], far inside its busy timeout of 10 s.
pub const IMPORT_GAP: Duration = Duration::from_millis(20);

/// What an import's source hands over when asked.
#[derive(Debug)]
pub enum Handed {
    /// The next sealed rows (possibly none: a block of bad lines).
    Rows(Vec<SealedLookup>),
    /// Nothing within the time asked: the open transaction is committed.
    NotYet,
    /// The end of the input.
    End,
}

/// A batch of the expiry scan: the latest VALID lookup of consecutive
/// persons, sealed, their bytes in one buffer (one allocation per batch,
/// not three per person).
#[derive(Debug, Default)]
pub struct SealedSummaries {
    bytes: Vec<u8>,
    items: Vec<SummaryItem>,
}

#[derive(Debug)]
struct SummaryItem {
    id: std::ops::Range<usize>,
    subject: std::ops::Range<usize>,
    key_version: i64,
    requested_at: i64,
    answered_at: Option<i64>,
    summary_enc: Option<std::ops::Range<usize>>,
    source: Source,
    reached: Option<Reached>,
    cached_from: Option<std::ops::Range<usize>>,
}

impl SealedSummaries {
    /// How many persons the batch holds.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether the batch holds no person.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Empties the batch and keeps its room, for the walk to fill again
    /// (what it holds is sealed: nothing to wipe).
    pub fn clear(&mut self) {
        self.bytes.clear();
        self.items.clear();
    }

    pub(crate) fn push(&mut self, r: &sqlite::LatestRow<'_>) {
        let mut put = |b: &[u8]| {
            let start = self.bytes.len();
            self.bytes.extend_from_slice(b);
            start..self.bytes.len()
        };
        let item = SummaryItem {
            id: put(r.id.as_bytes()),
            subject: put(r.subject),
            key_version: r.key_version,
            requested_at: r.requested_at,
            answered_at: r.answered_at,
            summary_enc: r.summary_enc.map(&mut put),
            source: r.source,
            reached: r.reached,
            cached_from: r.cached_from.map(|c| put(c.as_bytes())),
        };
        self.items.push(item);
    }

    /// When the `i`-th person's latest VALID answer was fetched, read
    /// without opening anything (the time is stored in plaintext, and
    /// bound to the summary that [`Opener::open_summary_into`] opens); the
    /// earliest time there is when it has none.
    pub fn fetched_at(&self, i: usize) -> DateTime<Utc> {
        self.items[i]
            .answered_at
            .and_then(DateTime::from_timestamp_millis)
            .unwrap_or(DateTime::<Utc>::MIN_UTC)
    }

    fn id(&self, item: &SummaryItem) -> &str {
        // Put there from a &str by `push`.
        std::str::from_utf8(&self.bytes[item.id.clone()]).unwrap_or_default()
    }
}

/// Buffers an [`Opener`] reuses from value to value on one thread: the
/// associated data and the plaintext (wiped when dropped).
#[derive(Debug, Default)]
pub struct Scratch {
    aad: Vec<u8>,
    binding: Vec<u8>,
    plain: Zeroizing<Vec<u8>>,
}

impl Scratch {
    /// The last plaintext opened, taken out.
    pub(super) fn into_plain(self) -> Zeroizing<Vec<u8>> {
        self.plain
    }
}

/// Where a sealed value lives: what its associated data binds it to.
pub(super) struct Place<'a> {
    pub table: &'a str,
    pub column: &'static str,
    pub id: &'a str,
    pub key_version: i64,
    /// The row's choosing fields ([`crate::sealed`]), for a column bound
    /// to them; `None` for one bound to its place only.
    pub binding: Option<&'a [u8]>,
}

/// Opens one sealed value into `scratch.plain`, refusing one sealed under
/// another key version than `current` (rekey re-seals everything). The one
/// place that opens stored values, for the store and for scan workers.
pub(super) fn open_sealed_into(
    keys: &Keys,
    current: u32,
    at: &Place<'_>,
    sealed: &[u8],
    scratch: &mut Scratch,
) -> Result<(), StoreError> {
    let corrupt = |reason: String| StoreError::Corrupt {
        id: at.id.to_owned(),
        column: at.column,
        reason,
    };
    if at.key_version as u32 != current {
        return Err(corrupt(format!(
            "sealed under key version {}, this database's current key is version {current}",
            at.key_version
        )));
    }
    let version = at.key_version as u32;
    match at.binding {
        Some(binding) => crypto::bound_data_into(
            &mut scratch.aad,
            at.table,
            at.column,
            at.id,
            version,
            binding,
        ),
        None => crypto::associated_data_into(&mut scratch.aad, at.table, at.column, at.id, version),
    }
    keys.open_into(sealed, &scratch.aad, &mut scratch.plain)
        .map_err(|e| corrupt(e.to_string()))
}

/// The store's keys without its connection: seals and opens lookup values
/// on any thread.
#[derive(Clone)]
pub struct Opener {
    pub(crate) keys: Keys,
    pub(crate) key_version: u32,
}

impl std::fmt::Debug for Opener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Opener(***)")
    }
}

impl Opener {
    /// Opens one sealed value of a `lookups` row into `scratch.plain`,
    /// bound to `binding` (the row's choosing fields, as read), reusing the
    /// scratch's buffers.
    pub(crate) fn open_into(
        &self,
        id: &str,
        key_version: i64,
        binding: &LookupBinding<'_>,
        column: &'static str,
        sealed: &[u8],
        scratch: &mut Scratch,
    ) -> Result<(), StoreError> {
        let mut bound = std::mem::take(&mut scratch.binding);
        binding.write(&mut bound);
        let place = Place {
            table: "lookups",
            column,
            id,
            key_version,
            binding: Some(&bound),
        };
        let opened = open_sealed_into(&self.keys, self.key_version, &place, sealed, scratch);
        scratch.binding = bound;
        opened
    }

    /// Checks that one VALID lookup of the covering index is what was
    /// stored: its summary opens under the fields the index holds. The
    /// scan checks so every VALID lookup of a person, not only the latest,
    /// so that a moved answer time cannot make an older one the latest.
    pub(crate) fn verify_latest(
        &self,
        r: &sqlite::LatestRow<'_>,
        scratch: &mut Scratch,
    ) -> Result<(), StoreError> {
        let binding = LookupBinding::latest(
            r.subject,
            r.requested_at,
            r.answered_at,
            r.source.as_str(),
            r.reached.map(Reached::as_str),
            r.cached_from,
        );
        match r.summary_enc {
            Some(sealed) => self.open_into(
                r.id,
                r.key_version,
                &binding,
                "summary_enc",
                sealed,
                scratch,
            ),
            None => Err(no_summary(r.id)),
        }
    }

    /// Seals an imported answer as a paid VALID (or other) answer of the
    /// service, fetched at its time, with the id derived from its content.
    pub fn seal_import(
        &self,
        item: &ImportItem<'_>,
        operator: &str,
        host: &str,
        purpose: Option<&str>,
        os_user: Option<&str>,
    ) -> Result<SealedLookup, StoreError> {
        let id = LookupId(Uuid::new_v8(self.keys.content_id(item.body)));
        let summary = item.summary.as_ref().map(|s| Zeroizing::new(s.encode()));
        let l = NewLookup {
            id,
            iin: &item.iin,
            session_id: &item.session_id,
            purpose,
            operator,
            host,
            requested_at: item.fetched_at,
            answered_at: Some(item.fetched_at),
            source: Source::Service,
            outcome: Outcome::Answered,
            status: item.status.as_deref(),
            result: item.result,
            // Only an HTTP 200 carries a GBDFL answer.
            http_status: Some(200),
            failure_type: item.failure_type.as_deref(),
            detail: item.detail.as_deref(),
            response: Some(item.body),
            cached_from: None,
            // An imported answer came back from the service.
            reached: Some(super::Reached::Yes),
            os_user,
        };
        let row = sealed_row(
            &self.keys,
            self.key_version,
            &l,
            summary.as_deref().map(Vec::as_slice),
        )?;
        Ok(SealedLookup(row))
    }

    /// Opens the summary of the `i`-th person of a batch into `into`
    /// (reusing its room) and gives the time it was fetched.
    pub fn open_summary_into(
        &self,
        batch: &SealedSummaries,
        i: usize,
        into: &mut Summary,
        scratch: &mut Scratch,
    ) -> Result<DateTime<Utc>, StoreError> {
        let s = &batch.items[i];
        let id = batch.id(s);
        let Some(r) = &s.summary_enc else {
            return Err(no_summary(id));
        };
        let cached_from = s
            .cached_from
            .clone()
            .map(|c| std::str::from_utf8(&batch.bytes[c]).unwrap_or_default());
        let binding = LookupBinding::latest(
            &batch.bytes[s.subject.clone()],
            s.requested_at,
            s.answered_at,
            s.source.as_str(),
            s.reached.map(Reached::as_str),
            cached_from,
        );
        let sealed = &batch.bytes[r.clone()];
        self.open_into(id, s.key_version, &binding, "summary_enc", sealed, scratch)?;
        into.decode_into(&scratch.plain)
            .ok_or_else(|| StoreError::Corrupt {
                id: id.to_owned(),
                column: "summary_enc",
                reason: "not a summary of layout version 1".into(),
            })?;
        Ok(batch.fetched_at(i))
    }
}

/// A VALID answer without its summary: every VALID answer has one since
/// format version 6 (the migration made the missing ones).
fn no_summary(id: &str) -> StoreError {
    StoreError::Corrupt {
        id: id.to_owned(),
        column: "summary_enc",
        reason: "a VALID answer without its document summary".into(),
    }
}

/// What a floor measurement read and opened.
#[derive(Debug, Clone, Copy, Default)]
pub struct Floor {
    /// How many sealed values were read and opened.
    pub values: u64,
    /// Their plaintext bytes, in total.
    pub bytes: u64,
    /// How long the walk took, wall clock.
    pub seconds: f64,
}

impl Store {
    /// The keys without the connection, for worker threads.
    pub fn opener(&self) -> Opener {
        Opener {
            keys: self.keys.clone(),
            key_version: self.key_version,
        }
    }

    /// Makes this connection suited to a long import: commits wait for the
    /// WAL write only (a crash loses at most the last batches, which a
    /// re-import restores without duplicates) and a larger page cache.
    pub fn bulk_mode(&self) -> Result<(), StoreError> {
        sqlite::bulk_pragmas(&self.conn)
    }

    /// Drops the secondary indexes of `lookups` for a large import; queries
    /// of other processes are slow until [`Store::rebuild_indexes`] (or the
    /// next open, after a crash) builds them again.
    pub fn drop_indexes(&self) -> Result<(), StoreError> {
        sqlite::drop_lookup_indexes(&self.conn)
    }

    /// Builds again the indexes [`Store::drop_indexes`] dropped.
    pub fn rebuild_indexes(&self) -> Result<(), StoreError> {
        sqlite::rebuild_lookup_indexes(&self.conn)
    }

    /// Inserts sealed imported lookups as `next` hands them over, in
    /// transactions of `IMPORT_ROWS` rows, or fewer when one has held the
    /// write lock for `IMPORT_HOLD`; ids already present are left as they
    /// are. `next(None)` waits as long as it takes and is called with no
    /// transaction open; `next(Some(t))` is called in the transaction and
    /// waits at most `t` (then [`Handed::NotYet`] commits). A slow source
    /// (a pipe, a terminal) therefore never keeps other processes from
    /// writing, and after each commit the lock stays free for
    /// `IMPORT_GAP`. An error of `next` ends the import after what came
    /// before it is committed.
    ///
    /// Why so many rows at once: an imported id is derived from the answer,
    /// so ids arrive in random order, and every transaction rewrites nearly
    /// every page of the id index it touched. With 8,192 rows per
    /// transaction that was two thirds of the writer's time at a million
    /// answers (BENCHMARKS.md).
    ///
    /// `next` runs while this thread holds the process's write turn: it
    /// must not write to the store itself.
    ///
    /// With `audit`, each transaction that stores rows appends that entry
    /// with the number it stored, in the same transaction: whenever the
    /// import stops (killed, a full disk), the trail accounts for exactly
    /// what is stored.
    pub fn insert_imported<E: From<StoreError>>(
        &self,
        audit: Option<&AuditEntry>,
        next: impl FnMut(Option<Duration>) -> Result<Handed, E>,
    ) -> Result<ImportOutcome, E> {
        self.insert_imported_by(IMPORT_ROWS, IMPORT_HOLD, IMPORT_GAP, audit, next)
    }

    /// [`Store::insert_imported`] with its limits given.
    fn insert_imported_by<E: From<StoreError>>(
        &self,
        rows_per_tx: u64,
        hold: Duration,
        gap: Duration,
        audit: Option<&AuditEntry>,
        mut next: impl FnMut(Option<Duration>) -> Result<Handed, E>,
    ) -> Result<ImportOutcome, E> {
        let mut total = ImportOutcome::default();
        loop {
            // Wait for rows with the lock free.
            let first = match next(None)? {
                Handed::Rows(rows) => rows,
                Handed::NotYet => continue,
                Handed::End => return Ok(total),
            };
            let (done, end) = sqlite::immediate(&self.conn, |c| {
                let begun = Instant::now();
                let mut done = ImportOutcome::default();
                let mut rows = first;
                loop {
                    let (inserted, already) = sqlite::insert_lookups(c, rows.iter().map(|r| &r.0))?;
                    done.inserted += inserted;
                    done.already += already;
                    let left = hold.saturating_sub(begun.elapsed());
                    if done.inserted + done.already >= rows_per_tx || left.is_zero() {
                        break Ok::<_, StoreError>((done, None));
                    }
                    rows = match next(Some(left)) {
                        Ok(Handed::Rows(more)) => more,
                        Ok(Handed::NotYet) => break Ok((done, None)),
                        Ok(Handed::End) => break Ok((done, Some(Ok(())))),
                        Err(e) => break Ok((done, Some(Err(e)))),
                    };
                }
                .and_then(|(done, end)| {
                    if let Some(a) = audit.filter(|_| done.inserted > 0) {
                        let mut a = a.clone();
                        a.records = done.inserted;
                        self.append_audit_in(c, &a)?;
                    }
                    Ok((done, end))
                })
            })?;
            total.inserted += done.inserted;
            total.already += done.already;
            if let Some(end) = end {
                return end.map(|()| total);
            }
            std::thread::sleep(gap);
        }
    }

    /// Calls `f` with batches of up to `batch` sealed summaries: the latest
    /// VALID lookup of every person, in subject order (a stable order that
    /// reveals nothing). Reads only the covering index `lookups_latest`,
    /// except for lookups stored before summaries existed. Each new batch
    /// is one `spare` gives back (emptied here) when it has one: a batch's
    /// buffer is a megabyte, and a fresh one per batch cost the scan a
    /// tenth of its time in page faults (BENCHMARKS.md).
    pub fn each_latest_summary<E: From<StoreError>>(
        &self,
        batch: usize,
        mut spare: impl FnMut() -> Option<SealedSummaries>,
        mut f: impl FnMut(SealedSummaries) -> Result<(), E>,
    ) -> Result<(), E> {
        let mut next = || {
            let mut b = spare().unwrap_or_default();
            b.clear();
            b
        };
        self.verify_other_lookups()?;
        let opener = self.opener();
        let mut scratch = Scratch::default();
        let mut chunk = next();
        sqlite::each_latest_summary(&self.conn, &mut |r: sqlite::LatestRow<'_>,
                                                      latest: bool|
         -> Result<(), E> {
            if !latest {
                return Ok(opener.verify_latest(&r, &mut scratch)?);
            }
            chunk.push(&r);
            if chunk.len() >= batch {
                f(std::mem::replace(&mut chunk, next()))?;
            }
            Ok(())
        })?;
        if !chunk.is_empty() {
            f(chunk)?;
        }
        Ok(())
    }

    /// Checks every lookup that is not VALID (in
    /// the covering index `lookups_other`): its IIN opens under the fields
    /// it holds. A VALID answer whose status, source or outcome was altered
    /// to drop it from the scan fails here, so the scan never shows an
    /// older answer as the latest in its place.
    fn verify_other_lookups(&self) -> Result<(), StoreError> {
        let opener = self.opener();
        let mut scratch = Scratch::default();
        sqlite::each_other_lookup(&self.conn, &mut |row| {
            opener.open_into(
                &row.id,
                row.key_version,
                &row.binding(),
                "iin_enc",
                &row.iin_enc,
                &mut scratch,
            )
        })
    }

    /// Calls `f` with every stored answer of the service (any GBDFL
    /// status), oldest first, as its body and the time it was fetched.
    pub fn each_answer<E: From<StoreError>>(
        &self,
        mut f: impl FnMut(DateTime<Utc>, Zeroizing<Vec<u8>>) -> Result<(), E>,
    ) -> Result<(), E> {
        sqlite::each_answer(&self.conn, &mut |row: LookupRow| {
            let at = DateTime::from_timestamp_millis(row.answered_at.unwrap_or(row.requested_at))
                .unwrap_or(DateTime::<Utc>::MIN_UTC);
            match self.open_response(&row)? {
                Some(body) => f(at, body),
                None => Ok(()),
            }
        })
    }

    /// The floor of a full scan: reads every stored answer (`response_enc`)
    /// and opens it with AES-256-GCM, once, on this thread; no
    /// decompression, no parsing.
    pub fn floor_answers(&self) -> Result<Floor, StoreError> {
        let start = Instant::now();
        let mut floor = Floor::default();
        let opener = self.opener();
        let mut scratch = Scratch::default();
        sqlite::each_answer::<StoreError>(&self.conn, &mut |row: LookupRow| {
            let sealed = row.response_enc.as_deref().unwrap_or_default();
            opener.open_into(
                &row.id,
                row.key_version,
                &row.binding(),
                "response_enc",
                sealed,
                &mut scratch,
            )?;
            floor.values += 1;
            floor.bytes += scratch.plain.len() as u64;
            Ok(())
        })?;
        floor.seconds = start.elapsed().as_secs_f64();
        Ok(floor)
    }

    /// The floor of the expiry scan: reads the summary of every person's
    /// latest VALID lookup and opens it, once, on this thread; no decoding.
    pub fn floor_summaries(&self) -> Result<Floor, StoreError> {
        let start = Instant::now();
        let mut floor = Floor::default();
        let opener = self.opener();
        let mut scratch = Scratch::default();
        sqlite::each_latest_summary(&self.conn, &mut |r: sqlite::LatestRow<'_>, latest: bool| {
            if latest {
                opener.verify_latest(&r, &mut scratch)?;
                floor.values += 1;
                floor.bytes += scratch.plain.len() as u64;
            }
            Ok::<_, StoreError>(())
        })?;
        floor.seconds = start.elapsed().as_secs_f64();
        Ok(floor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::{KEY_LEN, MasterKey};

    fn item(n: u32, body: &[u8]) -> ImportItem<'_> {
        ImportItem {
            iin: Iin::parse_unchecked(&format!("{:012}", 100_000_000 + n)).unwrap(),
            session_id: Cow::Borrowed("session"),
            fetched_at: DateTime::UNIX_EPOCH,
            status: Some("VALID".into()),
            result: Some(true),
            failure_type: None,
            detail: None,
            body,
            summary: None,
        }
    }

    /// Imports commit in transactions of several hand-overs, commit when
    /// the source has nothing within the time left, and an error of the
    /// source ends the import with what came before it stored.
    #[test]
    fn imports_commit_as_they_go_and_keep_what_came_before_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gbdfl.db");
        let key = MasterKey::from_bytes([9; KEY_LEN]);
        let (store, _) = Store::init(&path, &key).unwrap();
        let opener = store.opener();
        let bodies: Vec<Vec<u8>> = (0..12)
            .map(|n| format!("{{\"n\":{n}}}").into_bytes())
            .collect();
        let seal = |n: usize| {
            opener
                .seal_import(&item(n as u32, &bodies[n]), "op", "host", None, None)
                .unwrap()
        };
        let other = Store::open(&path, &key).unwrap();
        let hour = Duration::from_secs(3600);
        // Hand-overs of 2 rows, transactions of at least 3 rows: after the
        // second hand-over 4 rows are committed (seen by another
        // connection); then "nothing yet" inside a transaction commits
        // what it has; then the source fails.
        let mut calls: Vec<Option<Duration>> = Vec::new();
        let audit = AuditEntry {
            command: "import".into(),
            ..AuditEntry::default()
        };
        let out = store.insert_imported_by(3, hour, Duration::ZERO, Some(&audit), |wait| {
            calls.push(wait);
            match calls.len() {
                1 | 2 => Ok(Handed::Rows(vec![
                    seal(2 * calls.len() - 2),
                    seal(2 * calls.len() - 1),
                ])),
                3 => {
                    assert_eq!(other.count_lookups().unwrap(), 4, "committed as it went");
                    Ok(Handed::Rows(vec![seal(4)]))
                }
                4 => Ok(Handed::NotYet),
                5 => {
                    assert_eq!(other.count_lookups().unwrap(), 5, "nothing yet: committed");
                    Ok(Handed::Rows(vec![seal(5)]))
                }
                _ => Err(StoreError::Io(std::io::Error::other("the file broke"))),
            }
        });
        assert!(matches!(out, Err(StoreError::Io(_))), "{out:?}");
        assert_eq!(
            other.count_lookups().unwrap(),
            6,
            "what came before the error stays"
        );
        // One entry per transaction that stored rows, together counting
        // exactly what is stored.
        let mut recorded = Vec::new();
        other
            .each_audit(&Default::default(), |v| {
                recorded.push(v.records);
                Ok::<_, StoreError>(())
            })
            .unwrap();
        assert_eq!(recorded, [4, 1, 1]);
        // Waits inside a transaction are bounded, outside they are not.
        assert_eq!(calls[0], None);
        assert!(matches!(calls[1], Some(t) if t <= hour));
        assert_eq!(calls[2], None, "a new transaction waits with the lock free");
        assert_eq!(calls[4], None);
        assert!(calls[5].is_some());
        // Again with the same answers and more, the time limit spent at
        // once: one hand-over per transaction; the stored ones are known.
        let mut handed = 0;
        let out = store
            .insert_imported_by(1000, Duration::ZERO, Duration::ZERO, None, |wait| {
                assert_eq!(wait, None, "no transaction is held open waiting");
                handed += 1;
                Ok::<_, StoreError>(match handed {
                    1 => Handed::Rows((0..8).map(seal).collect()),
                    2 => Handed::Rows((8..12).map(seal).collect()),
                    _ => Handed::End,
                })
            })
            .unwrap();
        assert_eq!(
            out,
            ImportOutcome {
                inserted: 6,
                already: 6
            }
        );
        assert_eq!(other.count_lookups().unwrap(), 12);
    }

    /// A purge of much of the database drops the secondary indexes, deletes
    /// in batches each with its entry, and builds the indexes again; one
    /// that keeps them deletes the same way. Lookups requested after the
    /// cutoff stay, and every index is there at the end.
    #[test]
    fn purges_delete_in_audited_batches_with_or_without_the_indexes() {
        for drop_indexes in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("gbdfl.db");
            let key = MasterKey::from_bytes([9; KEY_LEN]);
            let (store, _) = Store::init(&path, &key).unwrap();
            let opener = store.opener();
            let bodies: Vec<Vec<u8>> = (0..13)
                .map(|n| format!("{{\"n\":{n}}}").into_bytes())
                .collect();
            let rows: Vec<SealedLookup> = (0..13)
                .map(|n| {
                    let mut item = item(n as u32, &bodies[n]);
                    if n == 12 {
                        item.fetched_at = store.now();
                    }
                    opener.seal_import(&item, "op", "host", None, None).unwrap()
                })
                .collect();
            let mut rows = Some(rows);
            store
                .insert_imported(None, |_| {
                    Ok::<_, StoreError>(rows.take().map_or(Handed::End, Handed::Rows))
                })
                .unwrap();
            let audit = AuditEntry {
                command: "purge".into(),
                ..AuditEntry::default()
            };
            let cutoff = store.now() - chrono::Duration::days(1);
            let mut seen = Vec::new();
            let done = store
                .purge(cutoff, 5, false, drop_indexes, &audit, &mut |n| {
                    seen.push(n)
                })
                .unwrap();
            assert_eq!((done.paid, done.cached), (12, 0), "{drop_indexes}");
            assert_eq!(seen, [5, 10, 12]);
            assert_eq!(store.count_lookups().unwrap(), 1);
            let mut recorded = Vec::new();
            store
                .each_audit(&Default::default(), |v| {
                    recorded.push(v.records);
                    Ok::<_, StoreError>(())
                })
                .unwrap();
            assert_eq!(recorded, [5, 5, 2]);
            let indexes: i64 = store
                .conn
                .query_row(
                    "SELECT count(*) FROM sqlite_schema WHERE type = 'index' AND name LIKE 'lookups_%'",
                    [],
                    |r| r.get(0),
                )
                .unwrap();
            assert_eq!(indexes, 4, "{drop_indexes}");
        }
    }
}
