//! The sorted rows of a [`RowSet`] as runs, laid out side by side by the
//! workers and handed over in order.

use std::ops::Range;

use gbdfl_core::expiry::RowRef;

use super::{Day, RowSet};

/// Rows per run that [`RowSet::lay_out_in_order`]'s callers lay out at a
/// time: about 0.75 MB of report text, so the two windows of `2 * threads`
/// runs held at once stay small.
pub(crate) const RUN_ROWS: usize = 4096;

/// Rows of a sorted [`RowSet`] in order: a run of them, for one worker.
#[derive(Debug, Clone)]
pub(crate) struct RowRun<'a> {
    set: &'a RowSet,
    /// (day key, the day, which of its rows)
    parts: Vec<(u32, &'a Day, Range<usize>)>,
}

impl<'a> RowRun<'a> {
    /// The rows of the run, borrowed, in order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = RowRef<'a>> + '_ {
        self.parts.iter().flat_map(move |(key, day, range)| {
            day.starts[range.clone()]
                .iter()
                .map(move |&at| self.set.row_at(*key, day, at as usize))
        })
    }
}

impl RowSet {
    /// The rows in order, as runs of about `rows` rows each.
    pub(crate) fn runs(&self, rows: usize) -> Vec<RowRun<'_>> {
        let rows = rows.max(1);
        let empty = || RowRun {
            set: self,
            parts: Vec::new(),
        };
        let mut runs = Vec::new();
        let mut run = empty();
        let mut filled = 0;
        for (&key, day) in &self.days {
            let mut from = 0;
            while from < day.starts.len() {
                let take = (rows - filled).min(day.starts.len() - from);
                run.parts.push((key, day, from..from + take));
                from += take;
                filled += take;
                if filled == rows {
                    runs.push(std::mem::replace(&mut run, empty()));
                    filled = 0;
                }
            }
        }
        if !run.parts.is_empty() {
            runs.push(run);
        }
        runs
    }

    /// Lays the sorted rows out on `pool`, in runs of about `rows` rows
    /// (`make`), and hands each run's result to `put` in order, on the
    /// calling thread. A window of two runs per worker is laid out while
    /// the window before it is handed over: writing a report's text no
    /// longer waits for its layout, nor its layout for the writing (the
    /// workers stood idle for a third of the writing). At most two windows
    /// are held at once.
    pub(crate) fn lay_out_in_order<'s, T: Send, E>(
        &'s self,
        pool: &rayon::ThreadPool,
        rows: usize,
        make: impl Fn(&RowRun<'s>) -> T + Sync,
        mut put: impl FnMut(T) -> Result<(), E>,
    ) -> Result<(), E> {
        use rayon::prelude::*;
        let runs = self.runs(rows);
        let mut laid_out: Vec<T> = Vec::new();
        for window in runs.chunks(2 * pool.current_num_threads()) {
            let mut next = Vec::new();
            let mut handed = Ok(());
            pool.in_place_scope(|s| {
                s.spawn(|_| next = window.par_iter().map(&make).collect());
                handed = laid_out.drain(..).try_for_each(&mut put);
            });
            handed?;
            laid_out = next;
        }
        laid_out.into_iter().try_for_each(put)
    }
}
