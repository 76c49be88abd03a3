//! `gbdfl stats`: paid calls, calls avoided by the cache (and by the
//! organisation cache), and outcomes by
//! status, per UTC day (the days of the summary report).

use std::collections::{BTreeMap, BTreeSet};

use chrono::NaiveDate;

use super::{Ctx, out};
use crate::exit::{Exit, ExitCode};
use gbdfl_report::render;
use gbdfl_store::{DayStats, Store};

/// Paid calls made, calls avoided by the cache, and outcomes by status, per
/// UTC day (as in `report summary`). Counts only; no personal data.
///
/// PAID CALLS are calls that reached the service, whatever came back; NOT
/// SENT are attempts that never connected (nothing to bill); EXPIRED are
/// queued requests whose 3-hour window passed before they could be sent.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// First UTC day, YYYY-MM-DD
    #[arg(long, value_name = "DATE")]
    pub from: Option<String>,
    /// Last UTC day, YYYY-MM-DD, included
    #[arg(long, value_name = "DATE")]
    pub to: Option<String>,
    /// Head office: every branch's counts in the period, from the central store
    #[arg(long)]
    pub central: bool,
}

fn day(flag: &str, s: Option<&str>) -> anyhow::Result<Option<NaiveDate>> {
    s.map(|s| gbdfl_core::limits::parse_date(flag, s))
        .transpose()
        .map_err(|e| Exit::new(ExitCode::InvalidInput, e.message).into())
}

pub fn run(args: Args, ctx: &Ctx, store: &Store) -> anyhow::Result<()> {
    let from = day("--from", args.from.as_deref())?;
    let to = day("--to", args.to.as_deref())?;
    if let (Some(f), Some(t)) = (from, to)
        && f > t
    {
        return Err(Exit::new(
            ExitCode::InvalidInput,
            format!("--from {f} is after --to {t}: swap them"),
        )
        .into());
    }
    // The summary report's days: the same bounds, the same count.
    let (start, end) = gbdfl_report::Period { from, to }.bounds();
    if args.central {
        return central(ctx, store, start, end);
    }
    let days = store.stats(start, end)?;
    ctx.release(store, days.len() as u64)?;
    if ctx.settings.json {
        let rows: Vec<serde_json::Value> = days
            .iter()
            .map(|d| {
                serde_json::json!({
                    "day": d.day,
                    "paid_calls": d.paid_calls,
                    "from_cache": d.from_cache,
                    "from_org": d.from_org,
                    "not_sent": d.not_sent,
                    "expired": d.expired,
                    "by_status": d.by_status(),
                })
            })
            .collect();
        return super::json::print(&rows);
    }
    if days.is_empty() {
        eprintln!("No lookups in this period.");
        return Ok(());
    }
    out(&table(&days))
}

/// The per-day table with a TOTAL row; one column per status seen.
pub fn table(days: &[DayStats]) -> String {
    let by_status: Vec<_> = days.iter().map(DayStats::by_status).collect();
    let statuses: BTreeSet<&str> = by_status
        .iter()
        .flat_map(|b| b.keys().map(String::as_str))
        .collect();
    // Answers of the organisation cache get their column only where there
    // are some: the table of a branch without them stays as it was.
    let org = days.iter().any(|d| d.from_org > 0);
    let mut header = vec!["DAY", "PAID CALLS", "FROM CACHE", "NOT SENT", "EXPIRED"];
    if org {
        header.push("FROM ORG CACHE");
    }
    header.extend(statuses.iter().copied());
    let mut total = DayStats::default();
    let mut rows = Vec::new();
    for (d, by) in days.iter().zip(&by_status) {
        total.add(d);
        rows.push(cells(
            d.day.map(|x| x.to_string()).unwrap_or_default(),
            d,
            by,
            &statuses,
            org,
        ));
    }
    if days.len() > 1 {
        rows.push(cells(
            "TOTAL".into(),
            &total,
            &total.by_status(),
            &statuses,
            org,
        ));
    }
    render::columns(&header, &rows)
}

fn cells(
    label: String,
    d: &DayStats,
    by_status: &BTreeMap<String, u64>,
    statuses: &BTreeSet<&str>,
    org: bool,
) -> Vec<String> {
    let mut c = vec![
        label,
        d.paid_calls.to_string(),
        d.from_cache.to_string(),
        d.not_sent.to_string(),
        d.expired.to_string(),
    ];
    if org {
        c.push(d.from_org.to_string());
    }
    c.extend(
        statuses
            .iter()
            .map(|s| by_status.get(*s).copied().unwrap_or(0).to_string()),
    );
    c
}

/// `stats --central`: each branch's paid calls, answers from its own cache
/// and from the organisation cache, and attempts never sent, in the period.
fn central(
    ctx: &Ctx,
    store: &Store,
    start: Option<chrono::DateTime<chrono::Utc>>,
    end: Option<chrono::DateTime<chrono::Utc>>,
) -> anyhow::Result<()> {
    let mut c = super::central::connect(ctx)?;
    let rows = c.stats(
        start.map_or(i64::MIN, |t| t.timestamp_millis()),
        end.map_or(i64::MAX, |t| t.timestamp_millis()),
    )?;
    ctx.release(store, rows.len() as u64)?;
    if ctx.settings.json {
        let v: Vec<serde_json::Value> = rows
            .iter()
            .map(|r| {
                serde_json::json!({
                    "branch": r.branch,
                    "paid_calls": r.paid_calls,
                    "from_cache": r.from_cache,
                    "from_org": r.from_org,
                    "not_sent": r.not_sent,
                })
            })
            .collect();
        return super::json::print(&v);
    }
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                r.branch.clone(),
                r.paid_calls.to_string(),
                r.from_cache.to_string(),
                r.from_org.to_string(),
                r.not_sent.to_string(),
            ]
        })
        .collect();
    out(&render::columns(
        &["BRANCH", "PAID CALLS", "FROM CACHE", "FROM ORG", "NOT SENT"],
        &cells,
    ))
}
