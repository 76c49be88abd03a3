//! The workers that scans and reports share their work out to.

use std::io;
use std::path::PathBuf;

use crate::ReportError;

/// One worker per core unless told otherwise.
pub fn default_threads() -> usize {
    std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(gbdfl_core::limits::THREADS.max as usize)
}

/// The pool of `threads` workers (at least one) that a scan or a report
/// shares its work out to.
pub fn thread_pool(threads: usize) -> Result<rayon::ThreadPool, ReportError> {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads.max(1))
        .thread_name(|i| format!("gbdfl-worker-{i}"))
        .build()
        .map_err(|e| ReportError::Io {
            path: PathBuf::from("(threads)"),
            source: io::Error::other(e.to_string()),
        })
}
