//! Rows of another store with the same keys (head office's central
//! store): the expiry scan's walk over rows handed in from outside, and
//! the checks that those rows are what a branch sealed.
//!
//! The rows carry their own binding (the associated data names the row's
//! id and choosing fields, not the database), so a database holding the
//! organisation's keys opens them as it opens its own, and a changed byte
//! or a moved field fails the same way (`tests/cli/central.rs`).

use crate::StoreError;
use crate::bulk::{Opener, Scratch, SealedSummaries};
use crate::sqlite::{HeldRow, LatestRow, LookupRow};

/// Turns every VALID lookup of one store, handed in subject order (then
/// answer time, then id: the order of the local scan), into batches of the
/// latest lookup of each person, as [`crate::Store::each_latest_summary`]
/// makes of the local database. Every VALID lookup that is not the latest
/// is checked to open under its fields, so that no altered row can make an
/// older answer the latest.
pub struct LatestBatcher<'a> {
    opener: &'a Opener,
    batch: usize,
    spare: &'a mut dyn FnMut() -> Option<SealedSummaries>,
    f: &'a mut dyn FnMut(SealedSummaries) -> Result<(), StoreError>,
    /// The row seen last, kept until the next tells whether it was its
    /// person's latest.
    held: HeldRow,
    holding: bool,
    chunk: SealedSummaries,
    scratch: Scratch,
}

impl<'a> LatestBatcher<'a> {
    /// A walk handing batches of `batch` persons to `f`, each new batch
    /// one that `spare` gives back when it has one.
    pub fn new(
        opener: &'a Opener,
        batch: usize,
        spare: &'a mut dyn FnMut() -> Option<SealedSummaries>,
        f: &'a mut dyn FnMut(SealedSummaries) -> Result<(), StoreError>,
    ) -> LatestBatcher<'a> {
        let mut chunk = spare().unwrap_or_default();
        chunk.clear();
        LatestBatcher {
            opener,
            batch: batch.max(1),
            spare,
            f,
            held: HeldRow::default(),
            holding: false,
            chunk,
            scratch: Scratch::default(),
        }
    }

    /// The next VALID lookup, in order.
    pub fn row(&mut self, r: &LatestRow<'_>) -> Result<(), StoreError> {
        if self.holding {
            let latest = self.held.subject() != r.subject;
            self.hand_on(latest)?;
        }
        self.held.hold_row(r);
        self.holding = true;
        Ok(())
    }

    fn hand_on(&mut self, latest: bool) -> Result<(), StoreError> {
        let row = self.held.as_row();
        if !latest {
            return self.opener.verify_latest(&row, &mut self.scratch);
        }
        self.chunk.push(&row);
        if self.chunk.len() >= self.batch {
            let mut next = (self.spare)().unwrap_or_default();
            next.clear();
            (self.f)(std::mem::replace(&mut self.chunk, next))?;
        }
        Ok(())
    }

    /// Hands on the last person and the last batch.
    pub fn finish(mut self) -> Result<(), StoreError> {
        if self.holding {
            self.hand_on(true)?;
        }
        if !self.chunk.is_empty() {
            (self.f)(std::mem::take(&mut self.chunk))?;
        }
        Ok(())
    }
}

impl Opener {
    /// Checks a lookup that is not a VALID answer (of another store with
    /// these keys): its IIN opens under the fields it holds, so that a
    /// VALID answer whose status, source or outcome was altered to drop it
    /// from the scan fails, as the local scan's check does.
    pub fn verify_other_row(&self, row: &LookupRow) -> Result<(), StoreError> {
        let mut scratch = Scratch::default();
        self.open_into(
            &row.id,
            row.key_version,
            &row.binding(),
            "iin_enc",
            &row.iin_enc,
            &mut scratch,
        )
    }
}
