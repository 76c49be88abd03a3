//! Head office's reports over every branch, read from the central store
//! and opened here with the organisation's key.

use std::path::Path;
use std::sync::Mutex;

use super::Ctx;
use gbdfl_central::CentralError;
use gbdfl_report::{AtomicFile, Options, RowSet};
use gbdfl_store::{LatestBatcher, SealedSummaries, Store, StoreError};

/// Persons per batch of the walk (as the local scan).
const BATCH: usize = 4096;

/// `report expiring --central`: each branch's expiring set, made as that
/// branch's own report makes it, then one CSV with a `branch` column.
/// Audited first: the entry counts the rows before the file is made.
pub fn expiring(ctx: &Ctx, store: &Store, opts: &Options, dest: &Path) -> anyhow::Result<u64> {
    let file = AtomicFile::create(dest)?;
    let sets = branch_sets(ctx, store, &opts.rules, opts.full_iin, opts.threads)?;
    let n: u64 = sets.iter().map(|(_, s)| s.len() as u64).sum();
    ctx.release(store, n)?;
    let (file, rows) = gbdfl_report::write_expiring_sets(file, opts.format, &sets, opts.threads)?;
    file.commit()?;
    Ok(rows)
}

/// Every branch's expiring set, made from the central store's rows as
/// that branch's own report makes it from its database, in branch order.
pub fn branch_sets(
    ctx: &Ctx,
    store: &Store,
    rules: &gbdfl_core::expiry::Rules,
    full_iin: bool,
    threads: usize,
) -> anyhow::Result<Vec<(String, RowSet)>> {
    let mut central = super::central::connect(ctx)?;
    let opener = store.opener();
    let mut sets: Vec<(String, RowSet)> = Vec::new();
    for branch in central.branches()? {
        central.each_other(&branch, &mut |row| opener.verify_other_row(row))?;
        let failed: Mutex<Option<CentralError>> = Mutex::new(None);
        let c = &mut central;
        let b = branch.as_str();
        let o = &opener;
        let walked = gbdfl_report::expiring_walk(
            &opener,
            rules,
            full_iin,
            threads,
            |spare: &mut dyn FnMut() -> Option<SealedSummaries>,
             f: &mut dyn FnMut(SealedSummaries) -> Result<(), StoreError>| {
                let mut batcher = LatestBatcher::new(o, BATCH, spare, f);
                let read = c.each_valid(b, &mut |row| batcher.row(row));
                if let Err(e) = read {
                    let text = e.to_string();
                    if let Ok(mut slot) = failed.lock() {
                        *slot = Some(e);
                    }
                    return Err(StoreError::Io(std::io::Error::other(text)));
                }
                batcher.finish()
            },
        );
        match walked {
            Ok((set, _)) => sets.push((branch, set)),
            Err(e) => {
                if let Some(c) = failed.into_inner().ok().flatten() {
                    return Err(c.into());
                }
                return Err(e.into());
            }
        }
    }
    Ok(sets)
}

/// `report lookups --central`: every branch's lookups of the period, each
/// opened here, with a `branch` column. Audited first: the entry counts
/// the rows (in the same snapshot the rows are read from) before the file
/// gets its first byte.
pub fn lookups(ctx: &Ctx, store: &Store, opts: &Options, dest: &Path) -> anyhow::Result<u64> {
    let file = AtomicFile::create(dest)?;
    let mut central = super::central::connect(ctx)?;
    let (from, to) = opts.period.bounds();
    let mut sheet = gbdfl_report::BranchLookups::new(file, opts.format, opts.full_iin)?;
    central.lookups_in_period(
        from.map_or(i64::MIN, |t| t.timestamp_millis()),
        to.map_or(i64::MAX, |t| t.timestamp_millis()),
        |n| ctx.release(store, n),
        |branch, row| -> anyhow::Result<()> {
            let (lookup, _) = store.open_lookup_row(&row)?;
            sheet.row(branch, &lookup)?;
            Ok(())
        },
    )?;
    let (file, rows) = sheet.finish()?;
    file.commit()?;
    Ok(rows)
}

/// `report summary --central`: each branch's counts per UTC day, with a
/// `branch` column (counts only, added up by the server).
pub fn summary(ctx: &Ctx, store: &Store, opts: &Options, dest: &Path) -> anyhow::Result<u64> {
    let file = AtomicFile::create(dest)?;
    let mut central = super::central::connect(ctx)?;
    let (from, to) = opts.period.bounds();
    let days = central.day_stats(
        from.map_or(i64::MIN, |t| t.timestamp_millis()),
        to.map_or(i64::MAX, |t| t.timestamp_millis()),
    )?;
    let n = days.iter().filter(|(_, d)| d.lookups() > 0).count() as u64;
    ctx.release(store, n)?;
    let (file, rows) = gbdfl_report::write_branch_summary(file, opts.format, &days)?;
    file.commit()?;
    Ok(rows)
}
