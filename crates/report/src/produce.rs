//! Making one report, start to finish: the file, the rows, the release,
//! the commit.

use std::io::{self, Write};
use std::path::Path;

use crate::{
    AtomicFile, Kind, Options, ReportError, expiring_scan, expiring_set, summary_days,
    write_expiring_html, write_expiring_set, write_lookups, write_summary, write_summary_html,
};
use gbdfl_store::Store;

/// Makes the report `kind` at `dest`, atomically. Returns the data rows
/// written.
///
/// Audited first: `release` hears how many rows are about to be written
/// before the first byte goes to the file (the caller writes its audit
/// entry there); if it fails, no file is made. The (empty, owner-only)
/// temporary file is made before anything else, so that a path that cannot
/// be written is refused before the work and before the release. The rows are known first:
/// the expiring set is built in memory, the summary's few rows too, and
/// the lookups are counted and then read in one read snapshot, so the
/// count is exactly what the file gets.
pub fn produce<E: From<ReportError>>(
    kind: Kind,
    store: &Store,
    opts: &Options,
    dest: &Path,
    release: impl FnOnce(u64) -> Result<(), E>,
) -> Result<u64, E> {
    let file = AtomicFile::create(dest)?;
    let (file, rows) = match (kind, &opts.html) {
        (Kind::Expiring, Some(h)) => {
            let (rows, stats) = expiring_scan(store, &opts.rules, opts.full_iin, opts.threads)?;
            release(rows.len() as u64)?;
            write_expiring_html(file, &rows, &stats, opts, h)?
        }
        (Kind::Summary, Some(h)) => {
            let days = summary_days(store, opts.period)?;
            release(days.len() as u64)?;
            write_summary_html(file, &days, opts.period, h)?
        }
        (Kind::Lookups, Some(_)) => {
            return Err(ReportError::Io {
                path: dest.to_owned(),
                source: io::Error::other("--html is for the expiring and summary reports"),
            }
            .into());
        }
        (Kind::Expiring, None) => {
            let rows = expiring_set(store, &opts.rules, opts.full_iin, opts.threads)?;
            release(rows.len() as u64)?;
            write_expiring_set(file, opts.format, &rows, opts.threads)?
        }
        (Kind::Lookups, None) => {
            let snapshot = store.snapshot().map_err(ReportError::from)?;
            let (from, to) = opts.period.bounds();
            let n = snapshot
                .count_lookups_between(from, to)
                .map_err(ReportError::from)?;
            release(n)?;
            write_lookups(file, opts.format, &snapshot, opts.period, opts.full_iin)?
        }
        (Kind::Summary, None) => {
            let (sheet, n) = write_summary(Vec::new(), opts.format, store, opts.period)?;
            release(n)?;
            let mut file = file;
            file.write_all(&sheet).map_err(|source| ReportError::Io {
                path: dest.to_owned(),
                source,
            })?;
            (file, n)
        }
    };
    file.commit()?;
    Ok(rows)
}
