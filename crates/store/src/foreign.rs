//! Rows of another store with the same keys (head office's central
//! store): the expiry scan's walk over rows handed in from outside, and
//! the checks that those rows are what a branch sealed.
//!
//! The rows carry their own binding (the associated data names the row's
//! id and choosing fields, not the database), so a database holding the
//! organisation's keys opens them as it opens its own, and a changed byte
//! or a moved field fails the same way (`tests/cli/central.rs`).

use crate::bulk::{Opener, Scratch, SealedSummaries};
use crate::sqlite::{LatestRow, LookupRow};
use crate::{Reached, Source, StoreError};

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
    held: Held,
    chunk: SealedSummaries,
    scratch: Scratch,
}

/// The row seen last, kept until the next tells whether it was its
/// person's latest.
#[derive(Default)]
struct Held {
    subject: Vec<u8>,
    id: String,
    key_version: i64,
    requested_at: i64,
    answered_at: Option<i64>,
    summary_enc: Option<Vec<u8>>,
    source: Option<Source>,
    reached: Option<Reached>,
    cached_from: Option<String>,
    holding: bool,
}

impl Held {
    fn as_row(&self) -> LatestRow<'_> {
        LatestRow {
            subject: &self.subject,
            id: &self.id,
            key_version: self.key_version,
            requested_at: self.requested_at,
            answered_at: self.answered_at,
            summary_enc: self.summary_enc.as_deref(),
            source: self.source.unwrap_or(Source::Service),
            reached: self.reached,
            cached_from: self.cached_from.as_deref(),
        }
    }
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
            held: Held::default(),
            chunk,
            scratch: Scratch::default(),
        }
    }

    /// The next VALID lookup, in order.
    pub fn row(&mut self, r: &LatestRow<'_>) -> Result<(), StoreError> {
        if self.held.holding {
            let latest = self.held.subject.as_slice() != r.subject;
            self.hand_on(latest)?;
        }
        let h = &mut self.held;
        h.subject.clear();
        h.subject.extend_from_slice(r.subject);
        h.id.clear();
        h.id.push_str(r.id);
        h.key_version = r.key_version;
        h.requested_at = r.requested_at;
        h.answered_at = r.answered_at;
        match r.summary_enc {
            Some(b) => {
                let v = h.summary_enc.get_or_insert_with(Vec::new);
                v.clear();
                v.extend_from_slice(b);
            }
            None => h.summary_enc = None,
        }
        h.source = Some(r.source);
        h.reached = r.reached;
        match r.cached_from {
            Some(c) => {
                let v = h.cached_from.get_or_insert_with(String::new);
                v.clear();
                v.push_str(c);
            }
            None => h.cached_from = None,
        }
        h.holding = true;
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
        if self.held.holding {
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
