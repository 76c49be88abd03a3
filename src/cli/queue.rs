//! `gbdfl queue`: list the queued requests, or drop one.

use super::{Ctx, out};
use crate::exit::{Exit, ExitCode};
use gbdfl_report::render;
use gbdfl_store::Store;

/// List the requests waiting to be sent (IINs masked unless --full), or drop one.
///
/// States: WAITING (sent by the next `gbdfl sync`), SENDING (a process is
/// sending it now), IN_DOUBT (gbdfl stopped while sending it; it may have
/// been answered and billed), EXPIRED (its 3-hour window passed; never sent).
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Show full IINs
    #[arg(long)]
    pub full: bool,
    #[command(subcommand)]
    pub action: Option<Action>,
}

#[derive(Debug, clap::Subcommand)]
pub enum Action {
    /// Remove one request from the queue (it will not be sent)
    Drop {
        /// The item's HANDLE as `gbdfl queue` lists it (the end of its ID:
        /// any end of 4 characters or more that is its alone), its ID or a
        /// start of it (8 characters or more), or the person's IIN when
        /// only one of their requests is queued
        id: String,
    },
}

impl Args {
    pub fn name(&self) -> &'static str {
        match self.action {
            None => "queue",
            Some(Action::Drop { .. }) => "queue drop",
        }
    }
}

/// The id of the one queue item `given` names: its id, its handle or any
/// end of its id (at least [`SHORTEST_HANDLE`] characters), the start of
/// its id (at least [`SHORTEST_PREFIX`] characters), or its person's IIN.
/// An id that names nothing is returned as it is, for the caller to report.
fn which_item(store: &Store, given: &str, full_iin: bool) -> anyhow::Result<String> {
    let given = given.trim().to_lowercase();
    let items = store.queue_items()?;
    if items.iter().any(|q| q.id == given) {
        return Ok(given);
    }
    let iin = gbdfl_core::iin::Iin::parse(&given);
    let by_iin = iin.is_ok();
    let matching: Vec<_> = items
        .iter()
        .filter(|q| match by_iin {
            true => q.iin.as_str() == given,
            false => {
                (given.len() >= SHORTEST_PREFIX && q.id.starts_with(&given))
                    || (given.len() >= SHORTEST_HANDLE && q.id.ends_with(&given))
            }
        })
        .collect();
    match matching.as_slice() {
        [one] => Ok(one.id.clone()),
        [] if by_iin => Err(Exit::new(
            ExitCode::InvalidInput,
            "no queued request for that IIN: `gbdfl queue` lists them".to_owned(),
        )
        .into()),
        [] if items.iter().any(|q| q.id.starts_with(&given) || q.id.ends_with(&given)) => {
            Err(Exit::new(
                ExitCode::InvalidInput,
                format!(
                    "{given:?} is too short: give the item's HANDLE as `gbdfl queue` lists it (at least {SHORTEST_HANDLE} characters), or at least {SHORTEST_PREFIX} characters of the start of its ID"
                ),
            )
            .into())
        }
        // Digits that start no ID: an IIN with a typo, most likely.
        [] if given.bytes().all(|b| b.is_ascii_digit()) => {
            let why = iin.err().map_or_else(String::new, |e| format!(": {e}"));
            Err(Exit::new(
                ExitCode::InvalidInput,
                format!(
                    "{} is no queue item's handle or ID and is not a valid IIN{why}; `gbdfl queue` lists the queued requests",
                    gbdfl_core::iin::mask(&given)
                ),
            )
            .into())
        }
        [] => Ok(given),
        several => {
            let what = if by_iin {
                "that IIN has several queued requests"
            } else {
                "that is the start or end of several queue items' IDs"
            };
            // Handles made among the whole queue, as `gbdfl queue` shows them.
            let ids: Vec<&str> = items.iter().map(|q| q.id.as_str()).collect();
            let all = render::queue_handles(&ids);
            let (several, handles): (Vec<_>, Vec<_>) = items
                .iter()
                .zip(all)
                .filter(|(q, _)| several.iter().any(|s| s.id == q.id))
                .map(|(q, h)| (q.clone(), h))
                .unzip();
            let list = render::queue_with_handles(&several, &handles, full_iin);
            Err(Exit::new(
                ExitCode::InvalidInput,
                format!("{what}; drop one by its HANDLE or ID:\n{}", list.trim_end()),
            )
            .into())
        }
    }
}

/// The shortest start of an ID `queue drop` takes. IDs (UUIDv7) begin with
/// the time they were made, so items queued close together share their
/// first 8 to 13 characters and the start that tells them apart is often
/// longer; a start shorter than this is too easily a typo.
const SHORTEST_PREFIX: usize = 8;

use render::SHORTEST_HANDLE;

pub fn run(args: Args, ctx: &Ctx, store: &Store) -> anyhow::Result<()> {
    match args.action {
        Some(Action::Drop { id }) => {
            let id = which_item(store, &id, args.full)?;
            match store.drop_item(&id, &ctx.audit_entry())? {
                Some(item) => {
                    ctx.mark_audited();
                    if ctx.settings.json {
                        super::json::print(&serde_json::json!({
                            "dropped": id,
                            "iin": item.iin.masked(),
                            "state": item.state.as_str(),
                        }))?;
                    }
                    eprintln!(
                        "Dropped queue item {id} ({}, {}): it will not be sent.",
                        item.iin.masked(),
                        item.state.as_str()
                    );
                    Ok(())
                }
                None => Err(Exit::new(
                    ExitCode::InvalidInput,
                    format!("no queue item {id:?}: `gbdfl queue` lists each item's HANDLE and ID"),
                )
                .into()),
            }
        }
        None => {
            // A process that was killed mid-call is not SENDING any more.
            gbdfl_service::lookup::release_orphaned_claims(store)?;
            let items = store.queue_items()?;
            ctx.release(store, items.len() as u64)?;
            if ctx.settings.json {
                let ids: Vec<&str> = items.iter().map(|q| q.id.as_str()).collect();
                let rows: Vec<serde_json::Value> = items
                    .iter()
                    .zip(render::queue_handles(&ids))
                    .map(|(q, handle)| {
                        serde_json::json!({
                            "handle": handle,
                            "id": q.id,
                            "iin": if args.full { q.iin.as_str().to_owned() } else { q.iin.masked() },
                            "state": q.state.as_str(),
                            "attempts": q.attempts,
                            "next_try_at": q.next_try_at,
                            "deadline": q.deadline,
                            "queued_at": q.queued_at,
                            "operator": q.operator,
                            "last_status": q.last_status,
                            "last_error": q.last_error,
                        })
                    })
                    .collect();
                return super::json::print(&rows);
            }
            if items.is_empty() {
                eprintln!("The queue is empty: nothing waits to be sent.");
                return Ok(());
            }
            out(&render::queue(&items, args.full))
        }
    }
}
