//! `gbdfl import FILE.jsonl`: answers from an archive (earlier lookups, or
//! another office's export) into the cache, as if fetched at their time.

use std::path::PathBuf;

use anyhow::Context as _;

use super::{Ctx, progress};
use crate::exit::{Exit, ExitCode};
use gbdfl_store::Store;
use gbdfl_store::archive::{self, Importer, Note};

/// At most this many bad lines and warnings are printed; the rest are counted.
const SHOWN: u64 = 100;

/// Import GBDFL answers, one JSON object per line (as `gbdfl export`
/// writes them). Each is stored like a fetched lookup: sealed, found by
/// IIN, with its status and its fetch time (the line's `fetched_at`, else
/// --fetched-at). Bad lines are reported by number and skipped; an IIN
/// that fails the check digit is stored with a warning. Importing the same
/// answer twice stores it once. Never calls the service.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The archive, JSON lines; `-` reads standard input
    pub file: PathBuf,
    /// Fetch time of lines without a `fetched_at` field (RFC 3339, e.g.
    /// 2025-10-15T10:25:00Z)
    #[arg(long, value_name = "TIME")]
    pub fetched_at: Option<String>,
    /// Worker threads for parsing, compressing and sealing, 1 to 64
    /// [env: GBDFL_THREADS] [default: one per core, at most 64]
    #[arg(long, value_name = "N", value_parser = gbdfl_core::limits::threads_flag)]
    pub threads: Option<usize>,
}

pub fn run(args: Args, ctx: &Ctx, store: &Store) -> anyhow::Result<()> {
    let default_time = default_time(args.fetched_at.as_deref(), store.now())?;
    let threads = gbdfl_core::limits::threads(args.threads, &ctx.env)?;
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .thread_name(|i| format!("gbdfl-worker-{i}"))
        .build()
        .context("starting worker threads")?;
    let report = import(&args, ctx, store, default_time, &pool)?;
    let source = if args.file.as_os_str() == "-" {
        "standard input".to_owned()
    } else {
        args.file.display().to_string()
    };
    let report = report.with_context(|| format!("importing {source}"))?;
    tell(&report, &source, ctx)
}

/// --fetched-at, checked: an RFC 3339 time, not in the future.
fn default_time(
    fetched_at: Option<&str>,
    now: chrono::DateTime<chrono::Utc>,
) -> anyhow::Result<Option<chrono::DateTime<chrono::Utc>>> {
    let default_time = fetched_at
        .map(|s| {
            gbdfl_core::time::parse_iso(s).ok_or_else(|| {
                Exit::new(
                    ExitCode::InvalidInput,
                    format!(
                        "--fetched-at {} is not an RFC 3339 time: write e.g. 2025-10-15T10:25:00Z",
                        gbdfl_core::limits::shown(s)
                    ),
                )
            })
        })
        .transpose()?;
    if let Some(t) = default_time
        && t > now + gbdfl_store::FUTURE_TOLERANCE
    {
        return Err(Exit::new(
            ExitCode::InvalidInput,
            format!(
                "--fetched-at {} is in the future: give the time the answers were fetched",
                gbdfl_core::time::iso_millis(t)
            ),
        )
        .into());
    }
    Ok(default_time)
}

/// Reads the archive into the store, telling bad lines and warnings as
/// they come (the first [`SHOWN`] of each) over a progress bar. The outer
/// error is one met before the archive is read; the inner, the import's.
fn import(
    args: &Args,
    ctx: &Ctx,
    store: &Store,
    default_time: Option<chrono::DateTime<chrono::Utc>>,
    pool: &rayon::ThreadPool,
) -> anyhow::Result<Result<archive::ImportReport, archive::ArchiveError>> {
    // A file of more than 64 MiB (some 35,000 answers) and more than the
    // database holds: building the indexes once at the end beats inserting
    // into them answer by answer (BENCHMARKS.md).
    let file_len = std::fs::metadata(&args.file).map_or(0, |m| m.len());
    let db_len = std::fs::metadata(store.path()).map_or(0, |m| m.len());
    // Each committed transaction appends an entry with what it stored;
    // the entry at the end says how the import ended and counts nothing.
    let audit = ctx.audit_entry();
    let who = Importer {
        operator: &ctx.settings.operator.value,
        host: &ctx.settings.host,
        purpose: ctx.purpose.as_deref(),
        default_time,
        rebuild_indexes: file_len > 64 << 20 && file_len > db_len,
        audit: Some(&audit),
    };
    // Bytes read of a file, on a terminal: a million answers take seconds
    // to minutes. Then, for a large file, a spinner while the indexes are
    // built again.
    let bar = (args.file.as_os_str() != "-")
        .then(|| progress::bytes_bar("import", file_len))
        .flatten();
    let (mut bad, mut warned) = (0u64, 0u64);
    let mut note = |n: Note<'_>| match n {
        Note::Bad(line, why) => {
            bad += 1;
            if bad <= SHOWN {
                progress::say(bar.as_ref(), &format!("line {line}: skipped: {why}"));
            }
        }
        Note::Warning(line, why) => {
            warned += 1;
            if warned <= SHOWN {
                progress::say(bar.as_ref(), &format!("line {line}: warning: {why}"));
            }
        }
        Note::Indexing => {
            if let Some(bar) = &bar {
                progress::to_spinner(bar, "building the indexes");
            }
        }
    };
    store.note_long_writer("import")?;
    let report = if args.file.as_os_str() == "-" {
        archive::import(store, std::io::stdin(), who, pool, &mut note)
    } else {
        let file = std::fs::File::open(&args.file).map_err(|e| {
            Exit::new(
                ExitCode::InvalidInput,
                format!("cannot read {}: {e}", args.file.display()),
            )
        })?;
        match &bar {
            Some(bar) => archive::import(store, bar.wrap_read(file), who, pool, &mut note),
            None => archive::import(store, file, who, pool, &mut note),
        }
    };
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }
    // A note left behind names a process that has ended: it is ignored.
    let _ = store.clear_long_writer();
    Ok(report)
}

/// The counts, on standard error (and as JSON with --json); bad lines
/// make the exit code 2.
fn tell(report: &archive::ImportReport, source: &str, ctx: &Ctx) -> anyhow::Result<()> {
    eprintln!(
        "imported {} lines: {} stored, {} already in the cache, {} skipped, {} with warnings",
        report.lines, report.stored.inserted, report.stored.already, report.bad, report.warnings
    );
    if ctx.settings.json {
        super::json::print(&serde_json::json!({
            "lines": report.lines,
            "stored": report.stored.inserted,
            "already": report.stored.already,
            "skipped": report.bad,
            "warnings": report.warnings,
        }))?;
    }
    if report.bad > 0 {
        return Err(Exit::new(
            ExitCode::InvalidInput,
            if report.bad == 1 {
                format!(
                    "1 line of {source} was not imported (its number is above); the other lines were"
                )
            } else {
                format!(
                    "{} lines of {source} were not imported (their numbers are above); the other lines were",
                    report.bad
                )
            },
        )
        .into());
    }
    Ok(())
}
