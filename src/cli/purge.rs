//! `gbdfl purge`: delete lookups past their retention period.

use chrono::Utc;

use super::{Ctx, out};
use crate::config::parse_duration;
use crate::exit::{Exit, ExitCode};
use crate::store::Store;

/// Delete lookups older than the retention period, leaving no trace of their ciphertext.
///
/// Runs in one transaction with secure_delete, then checkpoints the WAL and
/// vacuums. Audit entries stay: they hold no personal data in plaintext.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Delete lookups requested longer ago than this (e.g. 365d) [config: retention]
    #[arg(long, value_name = "DUR")]
    pub older_than: Option<String>,
    /// Only count what would be deleted
    #[arg(long)]
    pub dry_run: bool,
}

pub fn run(args: Args, ctx: &Ctx, store: &Store) -> anyhow::Result<()> {
    let age = match (&args.older_than, &ctx.settings.retention) {
        (Some(s), _) => parse_duration("--older-than", s)?,
        (None, Some(r)) => r.value,
        (None, None) => {
            return Err(Exit::new(
                ExitCode::InvalidInput,
                "no retention period: pass --older-than DUR (e.g. 365d) or set retention = \"365d\" in config.toml",
            )
            .into());
        }
    };
    let cutoff = Utc::now() - chrono::Duration::from_std(age)?;
    if args.dry_run {
        let n = store.count_before(cutoff)?;
        ctx.note_records(n as u64);
        if ctx.settings.json {
            return super::json::print(&serde_json::json!({
                "dry_run": true, "before": crate::store::time_text(cutoff), "lookups": n,
            }));
        }
        return out(&format!(
            "{n} lookups requested before {} would be deleted (dry run: nothing changed).\n",
            cutoff.format("%Y-%m-%d %H:%M UTC")
        ));
    }
    let mut entry = ctx.audit_entry();
    let n = store.purge(cutoff, &mut entry)?;
    ctx.mark_audited();
    if ctx.settings.json {
        return super::json::print(&serde_json::json!({
            "dry_run": false, "before": crate::store::time_text(cutoff), "lookups": n,
        }));
    }
    out(&format!(
        "Deleted {n} lookups requested before {}; the database was compacted so no old ciphertext remains.\n",
        cutoff.format("%Y-%m-%d %H:%M UTC")
    ))
}
