//! `gbdfl history`: every lookup of one IIN, newest first.

use super::{Ctx, out};
use crate::exit::{Exit, ExitCode};
use gbdfl_report::render;
use gbdfl_store::Store;

/// List every lookup of a person, newest first: paid calls and cache answers.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The subject's IIN (12 digits)
    pub iin: String,
    /// Accept an IIN that fails the published checks
    #[arg(long)]
    pub skip_iin_check: bool,
}

pub fn run(args: Args, ctx: &Ctx, store: &Store) -> anyhow::Result<()> {
    let iin = super::parse_iin(&args.iin, args.skip_iin_check, ctx.clock.today())?;
    ctx.note_subject(store, &iin);
    let rows = store.history(&iin)?;
    if rows.is_empty() {
        return Err(Exit::new(
            ExitCode::NotCached,
            format!(
                "no lookups of {} in {}",
                iin.masked(),
                store.path().display()
            ),
        )
        .into());
    }
    if ctx.settings.json {
        let items: Vec<serde_json::Value> = rows
            .iter()
            .map(|l| {
                serde_json::json!({
                    "id": l.id,
                    "requested_at": gbdfl_core::time::iso_millis(l.requested_at),
                    "answered_at": l.answered_at.map(gbdfl_core::time::iso_millis),
                    "operator": l.operator,
                    "host": l.host,
                    "purpose": l.purpose,
                    "paid_call": l.is_paid_call(),
                    "reached": l.reached.map(|r| r.as_str()),
                    "outcome": l.outcome.as_str(),
                    "status": l.status,
                    "result": l.result,
                    "http_status": l.http_status,
                    "failure_type": l.failure_type,
                    "reason": l.detail,
                    "iin_checked": l.iin_checked,
                    "cached_from": l.cached_from,
                    "os_user": l.os_user,
                })
            })
            .collect();
        let text = super::json::pretty(&items)?;
        ctx.release(store, rows.len() as u64)?;
        return out(&text);
    }
    let text = render::history(&rows);
    ctx.release(store, rows.len() as u64)?;
    out(&text)
}
