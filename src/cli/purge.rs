//! `gbdfl purge`: delete lookups past their retention period.

use chrono::Utc;

use super::{Ctx, out, progress};
use crate::exit::{Exit, ExitCode};
use gbdfl_core::limits;
use gbdfl_store::{PURGE_BATCH, PurgeCounts, Store};

/// Delete lookups older than the retention period, and expired queue
/// items queued before it, leaving no trace of their ciphertext.
///
/// Works in transactions of --batch lookups, each with an audit entry of
/// what it deleted, so other gbdfl commands are served between them and a
/// purge stopped midway has deleted (and recorded) whole batches only.
/// Requests still waiting in the queue are kept unless --include-waiting.
/// Audit entries stay: they hold no personal data in plaintext.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Delete lookups requested longer ago than this (e.g. 365d; a bare number is days;
    /// 0s to 36500d) [config: retention]
    #[arg(long, value_name = "DUR")]
    pub older_than: Option<String>,
    /// Only count what would be deleted
    #[arg(long)]
    pub dry_run: bool,
    /// Also drop requests queued before the cutoff that still wait to be
    /// sent (WAITING, IN_DOUBT), each recorded as a `queue drop`
    #[arg(long)]
    pub include_waiting: bool,
    /// Lookups deleted per transaction; smaller lets other commands in
    /// more often
    #[arg(long, value_name = "N", default_value_t = PURGE_BATCH,
          value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub batch: u64,
}

/// "N lookups (S calls to the service, C cache answers) and Q expired
/// queue items". Calls to the service include attempts that never reached
/// it (`stats` tells those apart).
fn what(c: &PurgeCounts) -> String {
    let plural = |n: u64, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
    format!(
        "{} ({}, {}) and {}",
        plural(c.lookups(), "lookup", "lookups"),
        plural(c.paid, "call to the service", "calls to the service"),
        plural(c.cached, "cache answer", "cache answers"),
        plural(c.expired_queue, "expired queue item", "expired queue items"),
    )
}

/// `purge --json`: what was (or, dry, would be) deleted, and the queued
/// requests still waiting: kept, or with --include-waiting dropped.
fn purge_json(
    dry_run: bool,
    before: chrono::DateTime<Utc>,
    c: &PurgeCounts,
    include_waiting: bool,
) -> serde_json::Value {
    serde_json::json!({
        "dry_run": dry_run,
        "before": gbdfl_core::time::iso_millis(before),
        "lookups": c.lookups(),
        "paid_calls": c.paid,
        "cache_answers": c.cached,
        "expired_queue_items": c.expired_queue,
        "waiting_queue_items": c.waiting_queue,
        "waiting_dropped": include_waiting,
    })
}

pub fn run(args: Args, ctx: &Ctx, store: &Store) -> anyhow::Result<()> {
    let cutoff = cutoff(&args, ctx)?;
    let counts = store.purge_counts(cutoff)?;
    if args.dry_run {
        return dry_run(&args, ctx, cutoff, &counts);
    }
    purge(&args, ctx, store, cutoff, &counts)
}

/// The time before which lookups go: now less --older-than, else less the
/// configured retention.
fn cutoff(args: &Args, ctx: &Ctx) -> anyhow::Result<chrono::DateTime<Utc>> {
    let age = match (&args.older_than, &ctx.settings.retention) {
        (Some(s), _) => limits::parse_duration("--older-than", s, limits::RETENTION)?,
        (None, Some(r)) => r.value,
        (None, None) => {
            return Err(Exit::new(
                ExitCode::InvalidInput,
                "no retention period: pass --older-than DUR (e.g. 365d) or set retention = \"365d\" in config.toml",
            )
            .into());
        }
    };
    // At most 36500 days by the range; checked all the same.
    let cutoff = chrono::Duration::from_std(age)
        .ok()
        .and_then(|age| ctx.clock.now().checked_sub_signed(age))
        .ok_or_else(|| {
            Exit::new(
                ExitCode::InvalidInput,
                "the retention period reaches before the earliest time gbdfl can count from: give at most 36500d",
            )
        })?;
    Ok(cutoff)
}

/// The end of the message about queued requests still waiting, kept.
fn waiting(n: u64) -> String {
    match n {
        0 => String::new(),
        1 => " 1 request queued before then still waits to be sent: kept (--include-waiting drops it).".to_owned(),
        n => format!(" {n} requests queued before then still wait to be sent: kept (--include-waiting drops them)."),
    }
}

/// `purge --dry-run`: says what would go; changes nothing.
fn dry_run(
    args: &Args,
    ctx: &Ctx,
    cutoff: chrono::DateTime<Utc>,
    counts: &PurgeCounts,
) -> anyhow::Result<()> {
    let before = cutoff.format("%Y-%m-%d %H:%M UTC");
    ctx.note_records(counts.lookups() + counts.expired_queue);
    let dropped = match (args.include_waiting, counts.waiting_queue) {
        (true, n) if n > 0 => format!(" {n} waiting queued requests would be dropped."),
        (true, _) => String::new(),
        (false, n) => waiting(n),
    };
    if ctx.settings.json {
        return super::json::print(&purge_json(true, cutoff, counts, args.include_waiting));
    }
    out(&format!(
        "{} requested before {before} would be deleted (dry run: nothing changed).{dropped}\n",
        what(counts)
    ))
}

/// Deletes in batches, each with its audit entry, showing progress, then
/// says what went.
fn purge(
    args: &Args,
    ctx: &Ctx,
    store: &Store,
    cutoff: chrono::DateTime<Utc>,
    counts: &PurgeCounts,
) -> anyhow::Result<()> {
    let before = cutoff.format("%Y-%m-%d %H:%M UTC");
    let bar = progress::count_bar("purge", counts.lookups());
    store.note_long_writer("purge")?;
    let entry = ctx.audit_entry();
    // Much of a large database: dropping the secondary indexes and
    // building them again at the end is several times faster (the store's rule).
    let total = u64::try_from(store.count_lookups()?).unwrap_or(0);
    let drop_indexes = counts.drops_indexes(total);
    let mut shown = |n: u64| {
        if let Some(bar) = &bar {
            bar.set_position(n);
        }
    };
    let done = store.purge(
        cutoff,
        args.batch,
        args.include_waiting,
        drop_indexes,
        &entry,
        &mut shown,
    );
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }
    let cleared = store.clear_long_writer();
    let done = done?;
    cleared?;
    // Every batch wrote its own entry; a failure gets one from the dispatcher.
    ctx.mark_audited();
    let dropped = match (args.include_waiting, done.waiting_queue) {
        (true, 0) => String::new(),
        (true, 1) => " Dropped 1 waiting queued request.".to_owned(),
        (true, n) => format!(" Dropped {n} waiting queued requests."),
        (false, n) => waiting(n),
    };
    if ctx.settings.json {
        return super::json::print(&purge_json(false, cutoff, &done, args.include_waiting));
    }
    out(&format!(
        "Deleted {} requested before {before}; freed space was zeroed, so no old ciphertext remains.{dropped}\n",
        what(&done)
    ))
}
