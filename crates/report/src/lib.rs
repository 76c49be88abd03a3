//! The reports of the cache (`expiring`, `lookups`, `summary`, `audit`, a
//! batch's outcome file) as CSV or HTML, the rows behind `gbdfl expiring`,
//! and records laid out for the terminal ([`render`]).
//!
//! The modules follow the data: `options` is what a report is asked for
//! (`lang`, the words of the reports, below it); `scan` reads the store
//! into rows, sharing the work out to `workers`; `rows` keeps them (the
//! expiring set packed by expiry day, sorted, read back in runs); one
//! module per report writes them (`expiring`, `lookups`, `summary`,
//! `audit`, `batch`, and [`html`] for the pages), every CSV cell through
//! `cells`; `file` is the report file; [`produce`] makes one report start
//! to finish.
//!
//! Rules this crate keeps, and what keeps them:
//! - it never reaches the HTTP client, so a report never pays for a lookup
//!   and works offline: the crate does not depend on `gbdfl-client`
//!   (tests/cli/layers.rs), and every report is made with the emulator
//!   stopped (tests/cli/report.rs);
//! - a report appears under its final name complete or not at all, owner
//!   only ([`AtomicFile`]; its test, and tests/cli/report.rs killing a
//!   report midway);
//! - a CSV cell whose text comes from outside (names, numbers, operators,
//!   purposes, reasons) is neutralised against formula injection
//!   ([`neutralise`]; its tests, and tests/cli/report.rs reading reports
//!   back);
//! - full IINs only when the caller asks for them (tests/cli/report.rs);
//! - no module imports one that imports it back (tests/cli/layers.rs).

#![deny(missing_docs)]

pub mod html;
pub mod render;

mod audit;
mod batch;
mod cells;
mod expiring;
mod file;
mod lang;
mod lookups;
mod options;
mod produce;
mod rows;
mod scan;
mod summary;
mod workers;

use std::io;
use std::path::PathBuf;

use gbdfl_store::StoreError;

pub use audit::{AUDIT_COLUMNS, audit_fields, write_audit};
pub use batch::{BATCH_COLUMNS, BatchRow, write_batch, write_batch_to};
pub use cells::{is_bidi_control, neutralise};
pub use expiring::{EXPIRING_COLUMNS, write_expiring_set, write_expiring_sets};
pub use file::AtomicFile;
pub use html::expiring::write_expiring_html;
pub use html::summary::write_summary_html;
pub use lookups::{BranchLookups, LOOKUPS_COLUMNS, write_lookups};
pub use options::{
    Format, HtmlOptions, Kind, OptionText, Options, Period, default_path, default_path_named,
    parse_delimiter,
};
pub use produce::produce;
pub use rows::{RowSet, StaleRow};
pub use scan::{ScanStats, SummaryWalk, expiring_scan, expiring_set, expiring_walk, stale_rows};
pub use summary::{
    DayCounts, SUMMARY_COLUMNS, SUMMARY_COUNTS, summary_days, write_branch_summary, write_summary,
};
pub use workers::{default_threads, thread_pool};

/// What can go wrong while making a report.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// The store could not be read.
    #[error("reading the database: {0}")]
    Store(#[from] StoreError),
    /// The report file could not be written.
    #[error("writing report {path}: {source}")]
    Io {
        /// The file being written.
        path: PathBuf,
        /// What the system said.
        source: io::Error,
    },
    /// The CSV writer failed (a write underneath it, mostly).
    #[error("writing CSV: {0}")]
    Csv(#[from] csv::Error),
}
