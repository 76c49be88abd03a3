//! `gbdfl backup`: a consistent copy while others keep working.

use std::path::PathBuf;

use super::{Ctx, out};
use crate::exit::{Exit, ExitCode};
use gbdfl_store::Store;

/// Copy the database consistently (SQLite's online backup API), even while others write.
///
/// The copy opens with the same key file and passes `gbdfl check`. It is
/// encrypted like the original; keep the key file apart from it.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The backup file to create (must not exist)
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
}

pub fn run(args: Args, ctx: &Ctx, store: &Store) -> anyhow::Result<()> {
    if args.out.exists() {
        return Err(Exit::new(
            ExitCode::InvalidInput,
            format!(
                "{} already exists; gbdfl does not overwrite backups: pass a new --out FILE",
                args.out.display()
            ),
        )
        .into());
    }
    let n = store.count_lookups()?;
    ctx.note_records(n as u64);
    store.backup(&args.out, &ctx.audit_entry())?;
    ctx.mark_audited();
    if ctx.settings.json {
        return super::json::print(&serde_json::json!({ "lookups": n, "path": args.out }));
    }
    out(&format!(
        "Backed up {n} lookups to {}. Restore by copying it back in place of the database; it opens with the same key file.\n",
        args.out.display()
    ))
}
