//! `gbdfl expiring`: documents that need attention, from the cache only.

use std::io::{IsTerminal as _, Write as _};

use anyhow::Context as _;

use super::report::invalid;
use super::{Ctx, out};
use gbdfl_core::expiry::Rules;
use gbdfl_core::limits;
use gbdfl_report as report;
use gbdfl_report::render;
use gbdfl_store::Store;

/// List expired documents, those expiring within the window, invalid
/// documents and persons whose life status is not normal, from the latest
/// VALID record of each person, sorted by expiry date (never calls the service).
#[derive(Debug, clap::Args)]
pub struct Args {
    /// List documents expiring within this window (e.g. 90d; a bare number is days; 0s to 36500d)
    #[arg(long, value_name = "DUR", default_value = "90d")]
    pub within: String,
    /// Count days from this date instead of today (YYYY-MM-DD, four-digit year)
    #[arg(long, value_name = "DATE")]
    pub as_of: Option<String>,
    /// Instead, list persons whose latest VALID record is older than DUR
    /// (e.g. 30d; a bare number is days; 0s to 36500d)
    #[arg(long, value_name = "DUR")]
    pub stale: Option<String>,
    /// Show full IINs (masked by default: 950215*****6)
    #[arg(long)]
    pub full_iin: bool,
    /// Worker threads for the scan, 1 to 64; the output does not depend on it
    /// [env: GBDFL_THREADS] [default: one per core, at most 64]
    #[arg(long, value_name = "N", value_parser = limits::threads_flag)]
    pub threads: Option<usize>,
    /// Head office: every branch's documents, from the central store, by branch
    #[arg(long, conflicts_with = "stale")]
    pub central: bool,
}

pub fn run(args: Args, ctx: &Ctx, store: &Store) -> anyhow::Result<()> {
    if let Some(stale) = &args.stale {
        let max_age = limits::parse_duration("--stale", stale, limits::STALE)?;
        // At most 36500 days by the range.
        let max_age = chrono::Duration::from_std(max_age).map_err(invalid)?;
        let rows = report::stale_rows(store, ctx.clock.now(), max_age, args.full_iin)?;
        ctx.release(store, rows.len() as u64)?;
        return match ctx.settings.json {
            true => json(&rows),
            false => out(&render::stale(&rows)),
        };
    }
    let today = ctx.clock.today();
    let rules = Rules::parse(&args.within, args.as_of.as_deref(), today).map_err(invalid)?;
    let threads = limits::threads(args.threads, &ctx.env)?;
    if args.central {
        return central(ctx, store, &rules, args.full_iin, threads);
    }
    let rows = report::expiring_set(store, &rules, args.full_iin, threads)?;
    let pool = report::thread_pool(threads)?;
    ctx.release(store, rows.len() as u64)?;
    let stdout = std::io::stdout();
    let mut w = std::io::BufWriter::with_capacity(64 * 1024, stdout.lock());
    if ctx.settings.json {
        serde_json::to_writer_pretty(super::json::SafeWriter::new(&mut w), &rows)?;
        return w
            .write_all(b"\n")
            .and_then(|_| w.flush())
            .context("writing to standard output");
    }
    let no_color = (ctx.env)("NO_COLOR").is_some_and(|v| !v.is_empty());
    let colour = std::io::stdout().is_terminal() && !no_color;
    render::expiring_to(&mut w, &rows, colour, &pool).context("writing to standard output")
}

/// `expiring --central`: each branch's documents under its name.
fn central(
    ctx: &Ctx,
    store: &Store,
    rules: &Rules,
    full_iin: bool,
    threads: usize,
) -> anyhow::Result<()> {
    let sets = super::central_report::branch_sets(ctx, store, rules, full_iin, threads)?;
    let pool = report::thread_pool(threads)?;
    ctx.release(store, sets.iter().map(|(_, s)| s.len() as u64).sum())?;
    if ctx.settings.json {
        let v: Vec<serde_json::Value> = sets
            .iter()
            .map(|(b, rows)| {
                Ok(serde_json::json!({ "branch": b, "rows": serde_json::to_value(rows)? }))
            })
            .collect::<Result<_, serde_json::Error>>()?;
        return json(&v);
    }
    let no_color = (ctx.env)("NO_COLOR").is_some_and(|v| !v.is_empty());
    let colour = std::io::stdout().is_terminal() && !no_color;
    let stdout = std::io::stdout();
    let mut w = std::io::BufWriter::with_capacity(64 * 1024, stdout.lock());
    for (branch, rows) in &sets {
        writeln!(w, "== branch {} ==", render::safe(branch))
            .context("writing to standard output")?;
        render::expiring_to(&mut w, rows, colour, &pool).context("writing to standard output")?;
        writeln!(w).context("writing to standard output")?;
    }
    w.flush().context("writing to standard output")
}

fn json(v: &impl serde::Serialize) -> anyhow::Result<()> {
    super::json::print(v)
}
