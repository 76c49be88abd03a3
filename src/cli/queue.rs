//! `gbdfl queue`: list the queued requests, or drop one.

use super::{Ctx, out};
use crate::exit::{Exit, ExitCode};
use crate::render;
use crate::store::Store;

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
        /// The item's ID, as `gbdfl queue` lists it
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

pub fn run(args: Args, ctx: &Ctx, store: &Store) -> anyhow::Result<()> {
    match args.action {
        Some(Action::Drop { id }) => {
            let id = id.trim().to_lowercase();
            match store.drop_item(&id, &ctx.audit_entry())? {
                Some(item) => {
                    ctx.mark_audited();
                    eprintln!(
                        "Dropped queue item {id} ({}, {}): it will not be sent.",
                        item.iin.masked(),
                        item.state.as_str()
                    );
                    Ok(())
                }
                None => Err(Exit::new(
                    ExitCode::InvalidInput,
                    format!("no queue item {id:?}: `gbdfl queue` lists the IDs"),
                )
                .into()),
            }
        }
        None => {
            // A process that was killed mid-call is not SENDING any more.
            crate::lookup::release_orphaned_claims(store)?;
            let items = store.queue_items()?;
            ctx.note_records(items.len() as u64);
            if ctx.settings.json {
                let rows: Vec<serde_json::Value> = items
                    .iter()
                    .map(|q| {
                        serde_json::json!({
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
                return out(&format!("{}\n", serde_json::Value::Array(rows)));
            }
            if items.is_empty() {
                eprintln!("The queue is empty: nothing waits to be sent.");
                return Ok(());
            }
            out(&render::queue(&items, args.full))
        }
    }
}
