//! The rows the scans produce and the reports write: the expiring set
//! ([`RowSet`], many rows kept compactly and sorted, read back in runs
//! for the workers) and the stale persons ([`StaleRow`]).
//!
//! Rule this module keeps (tests below): a set gives back exactly the rows
//! put in, in the order [`gbdfl_core::expiry::sort`] gives them, however
//! they were split into parts and runs and whatever the number of workers.

mod packed;
mod runs;
mod stale;

use std::collections::BTreeMap;

use serde::{Serialize, Serializer};

use gbdfl_core::expiry::{Row, RowRef};
use packed::{Texts, day_key};

pub(crate) use runs::{RUN_ROWS, RowRun};
pub use stale::StaleRow;
pub(crate) use stale::sort_stale;

/// Many [`Row`]s kept compactly and sorted: `expiring` over a million
/// people lists most of a million documents, and a `Row` of owned strings
/// each would take several hundred megabytes.
///
/// Rows are kept by expiry day, as they come: each day is one byte string
/// of packed rows (IIN, name and document number inline; document type,
/// statuses and notes, which repeat, as numbers into one table of texts).
/// Sorting is then a small sort within each day, and reading the sorted
/// rows walks memory in order. (Before, one arena in push order was read
/// in sorted order: a cache and TLB miss per text, the report's largest
/// cost at a million rows.)
#[derive(Debug, Default)]
pub struct RowSet {
    texts: Texts,
    /// Day key ([`day_key`]) to the rows expiring that day.
    days: BTreeMap<u32, Day>,
    len: usize,
}

/// The rows of one expiry day.
#[derive(Debug, Default)]
struct Day {
    bytes: Vec<u8>,
    /// Where each row starts in `bytes`: push order, then sorted order.
    starts: Vec<u32>,
}

impl RowSet {
    /// An empty set.
    pub fn new() -> RowSet {
        RowSet::default()
    }

    /// How many rows the set holds.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the set holds no row: nothing needs attention.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Adds the rows of one person (as [`gbdfl_core::expiry::check`] made
    /// them), in order.
    pub fn push_person(&mut self, rows: Vec<Row>) {
        for r in &rows {
            self.push_row(&r.as_ref());
        }
    }

    /// Adds one row.
    pub fn push_row(&mut self, r: &RowRef<'_>) {
        let day = self.days.entry(day_key(r.expiry_date)).or_default();
        day.starts.push(day.bytes.len() as u32);
        packed::pack(&mut self.texts, &mut day.bytes, r);
        self.len += 1;
    }

    /// Moves every row of `part` to the end of this set, in its order: the
    /// workers of a scan each fill a set of their own, and the scan joins
    /// them in walk order. Rows are copied once, day by day; their text
    /// numbers are changed to this set's.
    pub fn append(&mut self, part: RowSet) {
        let ids = self.texts.take_in(&part.texts);
        for (key, from) in part.days {
            let to = self.days.entry(key).or_default();
            for (i, &at) in from.starts.iter().enumerate() {
                let at = at as usize;
                let end = from
                    .starts
                    .get(i + 1)
                    .map_or(from.bytes.len(), |&e| e as usize);
                let start = to.bytes.len();
                to.starts.push(start as u32);
                to.bytes.extend_from_slice(&from.bytes[at..end]);
                packed::renumber(&mut to.bytes[start..], &ids);
            }
            self.len += from.starts.len();
        }
    }

    /// The row of `day` (day key `key`) starting at `at`.
    fn row_at<'a>(&'a self, key: u32, day: &'a Day, at: usize) -> RowRef<'a> {
        packed::unpack(&self.texts, key, &day.bytes, at)
    }

    /// Sorts as [`gbdfl_core::expiry::sort`] does (equal rows keep the
    /// order they were pushed in), each day on its own, on the current
    /// rayon pool.
    pub fn sort(&mut self) {
        use rayon::prelude::*;
        let days: Vec<(u32, Day)> = std::mem::take(&mut self.days).into_iter().collect();
        let texts = &self.texts;
        let days: Vec<(u32, Day)> = days
            .into_par_iter()
            .map(|(key, mut day)| {
                day.starts = sorted_day(texts, &day);
                (key, day)
            })
            .collect();
        self.days = days.into_iter().collect();
    }

    /// Every row, borrowed, in sorted order (after [`RowSet::sort`]).
    pub fn iter_ref(&self) -> impl Iterator<Item = RowRef<'_>> + '_ {
        self.days.iter().flat_map(move |(&key, day)| {
            day.starts
                .iter()
                .map(move |&at| self.row_at(key, day, at as usize))
        })
    }

    /// Every row, in sorted order, one `Row` at a time.
    pub fn iter(&self) -> impl Iterator<Item = Row> + '_ {
        self.iter_ref().map(|r| r.to_row())
    }
}

/// The starts of `day`'s rows in sorted order: by IIN, document type and
/// number; ties keep push order. Most comparisons are settled by the IIN's
/// first 12 bytes, taken once per row.
fn sorted_day(texts: &Texts, day: &Day) -> Vec<u32> {
    let b = &day.bytes;
    let fields = |at: u32| packed::sort_fields(texts, b, at as usize);
    let mut keyed: Vec<([u8; 12], u32)> = day
        .starts
        .iter()
        .map(|&at| {
            let mut k = [0u8; 12];
            let iin = fields(at).0;
            k[..iin.len().min(12)].copy_from_slice(&iin[..iin.len().min(12)]);
            (k, at)
        })
        .collect();
    // Stable: ties keep push order.
    keyed.sort_by(|(ka, a), (kb, b)| ka.cmp(kb).then_with(|| fields(*a).cmp(&fields(*b))));
    keyed.into_iter().map(|(_, at)| at).collect()
}

/// Serialises as the JSON array of its rows, one row in memory at a time.
impl Serialize for RowSet {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.iter())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{DateTime, NaiveDate, TimeZone as _, Utc};
    use gbdfl_core::api::{Document, Person};
    use gbdfl_core::expiry::{Rules, check, sort};

    const OK: &str = "ДОКУМЕНТ ДЕЙСТВИТЕЛЕН";
    const RULES: Rules = Rules {
        as_of: NaiveDate::from_ymd_opt(2030, 7, 1).unwrap(),
        within_days: 90,
    };

    fn doc(kind: &str, expiry: &str) -> Document {
        Document {
            kind: Some(kind.into()),
            number: Some(format!("N-{kind}")),
            expiry_date: Some(expiry.into()),
            status: Some(OK.into()),
            ..Document::default()
        }
    }

    fn at() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2030, 6, 1, 10, 0, 0).unwrap()
    }

    /// 400 persons' rows, put into a set in parts as the workers of a scan
    /// fill them, the set sorted; and the same rows sorted by
    /// [`gbdfl_core::expiry::sort`]. One document number is a text too
    /// long to keep inline.
    fn many_rows() -> (RowSet, Vec<Row>) {
        let long = "Ж".repeat(600_000);
        let mut all = Vec::new();
        let mut parts = vec![RowSet::new()];
        for n in 0..400u32 {
            let passport = if n % 5 == 0 {
                "бессрочно"
            } else {
                "2030-07-02"
            };
            let mut docs = vec![
                doc("ID", &format!("2030-{:02}-{:02}", 7 + n % 3, 1 + n % 28)),
                doc("PASSPORT", passport),
            ];
            if n == 7 {
                docs[0].number = Some(long.clone());
            }
            let person = Person {
                surname: Some("Нурланов".into()),
                name: Some("Асхат".into()),
                life_status: Some("Умерший".into()),
                documents: docs,
                ..Person::default()
            };
            let iin = format!("{:012}", (n * 7919) % 1000);
            let rows = check(&iin, Some(&person), at(), &RULES);
            all.extend(rows.clone());
            parts.last_mut().unwrap().push_person(rows);
            if n % 97 == 0 {
                parts.push(RowSet::new());
            }
        }
        let mut set = RowSet::new();
        for part in parts {
            set.append(part);
        }
        set.sort();
        sort(&mut all);
        assert!(all.iter().any(|r| r.document_number == long));
        (set, all)
    }

    fn pool(threads: usize) -> rayon::ThreadPool {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap()
    }

    #[test]
    fn a_row_set_gives_back_its_rows_and_sorts_like_sort() {
        let (set, all) = many_rows();
        assert_eq!(set.len(), all.len());
        assert_eq!(set.iter().collect::<Vec<_>>(), all, "sorted order");
    }

    #[test]
    fn runs_of_any_length_give_the_same_rows_in_the_same_order() {
        let (set, all) = many_rows();
        for len in [1, 7, 1000] {
            let runs: Vec<Row> = set
                .runs(len)
                .iter()
                .flat_map(|r| r.iter().map(|r| r.to_row()).collect::<Vec<_>>())
                .collect();
            assert_eq!(runs, all, "runs of {len}");
        }
    }

    #[test]
    fn runs_laid_out_on_any_number_of_workers_are_handed_over_in_order() {
        let (set, all) = many_rows();
        for threads in [1, 2, 3] {
            for len in [1, 7, 1000] {
                let mut got = Vec::new();
                set.lay_out_in_order(
                    &pool(threads),
                    len,
                    |run| run.iter().map(|r| r.to_row()).collect::<Vec<_>>(),
                    |rows| {
                        got.extend(rows);
                        Ok::<_, ()>(())
                    },
                )
                .unwrap();
                assert_eq!(got, all, "{threads} workers, runs of {len}");
            }
        }
    }

    #[test]
    fn a_failing_hand_over_stops_there() {
        let (set, _) = many_rows();
        for threads in [1, 2, 3] {
            for len in [1, 7, 1000] {
                let mut handed = 0;
                let stopped = set.lay_out_in_order(
                    &pool(threads),
                    len,
                    |run| run.iter().count(),
                    |n| {
                        handed += n;
                        if handed >= 100 { Err(handed) } else { Ok(()) }
                    },
                );
                assert_eq!(stopped, Err(handed), "{threads} workers, runs of {len}");
                // The first run that brings the count to 100 is the last
                // handed over.
                let mut upto = 0;
                let want = set
                    .runs(len)
                    .iter()
                    .map(|r| r.iter().count())
                    .find_map(|n| {
                        upto += n;
                        (upto >= 100).then_some(upto)
                    })
                    .unwrap();
                assert_eq!(handed, want, "stopped at the first failure");
            }
        }
    }
}
