//! Reading the store into rows: the expiring set and the stale persons.

use std::io;
use std::ops::Range;

use chrono::{DateTime, Utc};
use rayon::prelude::*;

use crate::ReportError;
use crate::cells::shown_iin;
use crate::rows::{RowSet, StaleRow, sort_stale};
use crate::workers::thread_pool;
use gbdfl_core::expiry::{self, Rules};
use gbdfl_core::summary::Summary;
use gbdfl_store::{Opener, Scratch, SealedSummaries, Store, StoreError};
use std::sync::mpsc::{Receiver, Sender};

/// What the scan saw besides the rows: the HTML report's header.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ScanStats {
    /// People whose latest VALID record was read.
    pub people: u64,
    /// People with at least one row.
    pub people_listed: u64,
    /// The oldest fetch time of those records.
    pub oldest_fetch: Option<DateTime<Utc>>,
}

/// The rows of `gbdfl expiring` and the expiring report, sorted.
///
/// The one report that cannot stream: it is sorted by expiry date, and the
/// walk comes in subject order. The walk reads only the small sealed
/// summary of each person's latest VALID lookup (never the whole answer);
/// `threads` workers open and check batches of them while the walk goes
/// on, and the batches are taken back in walk order, so the result is the
/// same with one thread or many. What is kept is a compact [`RowSet`],
/// never a whole record, and only documents that need attention.
pub fn expiring_set(
    store: &Store,
    rules: &Rules,
    full_iin: bool,
    threads: usize,
) -> Result<RowSet, ReportError> {
    Ok(expiring_set_by(store, rules, full_iin, threads, SCAN_BATCH)?.0)
}

/// [`expiring_set`] and what the scan saw: people read, people listed,
/// the oldest fetch time (the HTML report's header).
pub fn expiring_scan(
    store: &Store,
    rules: &Rules,
    full_iin: bool,
    threads: usize,
) -> Result<(RowSet, ScanStats), ReportError> {
    expiring_set_by(store, rules, full_iin, threads, SCAN_BATCH)
}

/// Adds a part's counts to the whole.
fn add_stats(to: &mut ScanStats, part: &ScanStats) {
    to.people += part.people;
    to.people_listed += part.people_listed;
    to.oldest_fetch = match (to.oldest_fetch, part.oldest_fetch) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
}

/// Persons per batch of the scans of every person's summary: large enough
/// to share out, small enough to keep memory flat.
const SCAN_BATCH: usize = 4096;

/// [`expiring_set`] in batches of `batch` persons.
fn expiring_set_by(
    store: &Store,
    rules: &Rules,
    full_iin: bool,
    threads: usize,
    batch_size: usize,
) -> Result<(RowSet, ScanStats), ReportError> {
    let reader = store.reopen()?;
    expiring_walk(
        &store.opener(),
        rules,
        full_iin,
        threads,
        move |spare, f| reader.each_latest_summary(batch_size, spare, f),
    )
}

/// A walk of every person's latest VALID lookup, in subject order, handing
/// batches of sealed summaries to `f` (each new batch one that `spare`
/// gives back, when it has one): [`Store::each_latest_summary`], or the
/// same walk over another store's rows of the same keys (head office's
/// central store, one branch at a time).
pub trait SummaryWalk:
    FnOnce(
        &mut dyn FnMut() -> Option<SealedSummaries>,
        &mut dyn FnMut(SealedSummaries) -> Result<(), StoreError>,
    ) -> Result<(), StoreError>
    + Send
{
}

impl<F> SummaryWalk for F where
    F: FnOnce(
            &mut dyn FnMut() -> Option<SealedSummaries>,
            &mut dyn FnMut(SealedSummaries) -> Result<(), StoreError>,
        ) -> Result<(), StoreError>
        + Send
{
}

/// The expiring set and what the scan saw, of the persons `walk` hands
/// over, opened with `opener`'s keys: the walk runs on a thread of its
/// own while `threads` workers open and check its batches.
pub fn expiring_walk(
    opener: &Opener,
    rules: &Rules,
    full_iin: bool,
    threads: usize,
    walk: impl SummaryWalk,
) -> Result<(RowSet, ScanStats), ReportError> {
    let pool = thread_pool(threads)?;
    let mut set = RowSet::new();
    let mut stats = ScanStats::default();
    std::thread::scope(|s| -> Result<(), ReportError> {
        let (tx, rx) = std::sync::mpsc::sync_channel(4);
        // Batches go back to the walk once packed, to be filled again.
        let (spare_tx, spare_rx) = std::sync::mpsc::channel::<SealedSummaries>();
        let walk = s.spawn(move || {
            walk(&mut || spare_rx.try_recv().ok(), &mut |batch| {
                tx.send(batch)
                    .map_err(|_| StoreError::Io(io::Error::other("stopped")))
            })
        });
        let packer = |batch: &SealedSummaries, share: Range<usize>| {
            pack(opener, rules, full_iin, batch, share)
        };
        let packed = pack_batches(
            (&pool, threads),
            rx,
            &spare_tx,
            packer,
            (&mut set, &mut stats),
        );
        // The receiver is dropped by now: that stops the walk at its next batch.
        let walked = walk.join().expect("the walk does not panic");
        packed?;
        walked?;
        Ok(())
    })?;
    pool.install(|| set.sort());
    Ok((set, stats))
}

/// A share of a batch packed into a set of its own, with what it saw.
type Packed = Result<(RowSet, ScanStats), StoreError>;

/// Opens, checks and packs the persons `share` of a batch into a set of
/// its own.
fn pack(
    opener: &Opener,
    rules: &Rules,
    full_iin: bool,
    batch: &SealedSummaries,
    share: Range<usize>,
) -> Packed {
    let mut part = RowSet::new();
    let mut seen = ScanStats::default();
    let mut summary = Summary::default();
    let mut scratch = Scratch::default();
    for i in share {
        let fetched_at = opener.open_summary_into(batch, i, &mut summary, &mut scratch)?;
        let iin = shown_iin(&summary.iin, full_iin);
        let before = part.len();
        expiry::check_each(&iin, summary.person.as_ref(), fetched_at, rules, |r| {
            part.push_row(&r);
        });
        add_stats(
            &mut seen,
            &ScanStats {
                people: 1,
                people_listed: u64::from(part.len() > before),
                oldest_fetch: Some(fetched_at),
            },
        );
    }
    Ok((part, seen))
}

/// Packs each batch the walk sends, `threads` shares side by side, and
/// joins the shares into `whole` in walk order; each batch then goes back
/// to the walk through `spare`. Stops at the first error, dropping `rx`.
fn pack_batches(
    (pool, threads): (&rayon::ThreadPool, usize),
    rx: Receiver<SealedSummaries>,
    spare: &Sender<SealedSummaries>,
    pack: impl Fn(&SealedSummaries, Range<usize>) -> Packed + Sync,
    whole: (&mut RowSet, &mut ScanStats),
) -> Result<(), StoreError> {
    let (set, stats) = whole;
    let mut packed: Vec<Packed> = Vec::new();
    for batch in rx {
        let previous = std::mem::take(&mut packed);
        // Joining a batch's shares into the set overlaps with packing the
        // next batch (it was a tenth of the scan, with the workers idle).
        let (joined, parts) = if threads <= 1 {
            (
                join_all((set, stats), previous),
                vec![pack(&batch, 0..batch.len())],
            )
        } else {
            pool.install(|| {
                rayon::join(
                    || join_all((set, stats), previous),
                    || pack_shares(&batch, threads, &pack),
                )
            })
        };
        packed = parts;
        // The walk may have ended: then the batch is simply dropped.
        let _ = spare.send(batch);
        joined?;
    }
    join_all((set, stats), packed)
}

/// A batch cut into `threads` shares, packed side by side, in order.
fn pack_shares(
    batch: &SealedSummaries,
    threads: usize,
    pack: &(impl Fn(&SealedSummaries, Range<usize>) -> Packed + Sync),
) -> Vec<Packed> {
    let share = batch.len().div_ceil(threads.max(1)).max(1);
    (0..batch.len())
        .step_by(share)
        .collect::<Vec<_>>()
        .into_par_iter()
        .map(|from| pack(batch, from..(from + share).min(batch.len())))
        .collect()
}

/// Joins packed shares into the set, in order; the first error stops it.
fn join_all(
    (set, stats): (&mut RowSet, &mut ScanStats),
    parts: Vec<Packed>,
) -> Result<(), StoreError> {
    for part in parts {
        let (part, seen) = part?;
        set.append(part);
        add_stats(stats, &seen);
    }
    Ok(())
}

/// Persons whose latest VALID record is older than `max_age` at `now`,
/// oldest first. Reads each person's sealed summary through the covering
/// index, as the expiry scan does, not the whole answer: at a million
/// people about 2 s instead of 55 s of opening, decompressing and parsing
/// answers (BENCHMARKS.md). The latest record is the one `show`
/// takes (newest answer, ties to the greatest id).
pub fn stale_rows(
    store: &Store,
    now: DateTime<Utc>,
    max_age: chrono::Duration,
    full_iin: bool,
) -> Result<Vec<StaleRow>, ReportError> {
    let opener = store.opener();
    let (mut summary, mut scratch) = (Summary::default(), Scratch::default());
    let spare = std::cell::Cell::new(None);
    let mut rows = Vec::new();
    store.each_latest_summary(
        SCAN_BATCH,
        || spare.take(),
        |batch| -> Result<(), ReportError> {
            // Only the stale are opened: the time needs no key.
            for i in
                (0..batch.len()).filter(|&i| expiry::is_stale(batch.fetched_at(i), now, max_age))
            {
                let fetched_at = opener.open_summary_into(&batch, i, &mut summary, &mut scratch)?;
                rows.push(StaleRow {
                    iin: shown_iin(&summary.iin, full_iin),
                    full_name: summary
                        .person
                        .as_ref()
                        .map(|p| p.full_name())
                        .unwrap_or_default(),
                    fetched_at,
                    age_days: (now - fetched_at).num_days(),
                });
            }
            spare.set(Some(batch));
            Ok(())
        },
    )?;
    sort_stale(&mut rows);
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The scan's batches go back to the walk to be filled again: the rows
    /// are the same whatever the batch size and the number of workers.
    #[test]
    fn the_scan_gives_the_same_rows_whatever_its_batches() {
        use gbdfl_emulator::synthetic_archive;
        use gbdfl_store::testing::{test_importer, test_store};
        let dir = tempfile::tempdir().unwrap();
        let store = test_store(dir.path());
        let today = store.clock().today();
        let lines = synthetic_archive(300, "8501");
        let who = test_importer();
        let pool = thread_pool(2).unwrap();
        let imported =
            gbdfl_store::archive::import(&store, lines.as_bytes(), who, &pool, &mut |_| {});
        assert_eq!(
            imported.unwrap().stored.inserted,
            lines.lines().count() as u64
        );
        let rules = Rules::parse("90d", None, today).unwrap();
        let rows = |threads, batch| {
            let (set, _) = expiring_set_by(&store, &rules, true, threads, batch).unwrap();
            set.iter().collect::<Vec<_>>()
        };
        let whole = rows(1, 4096);
        assert!(whole.len() > 100, "{} rows", whole.len());
        for (threads, batch) in [(1, 1), (2, 7), (2, 64), (3, 5)] {
            assert_eq!(
                rows(threads, batch),
                whole,
                "{threads} workers, batches of {batch}"
            );
        }
    }
}
