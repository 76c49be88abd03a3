//! `gbdfl push`: send this branch's new lookups and audit entries to the
//! central store.

use super::{Ctx, progress};
use gbdfl_central::{Central, Pushed};
use gbdfl_store::Store;

/// Send this branch's new lookups and audit entries to the central store
/// (docs/CENTRAL.md). Resumable: a push cut short (the line, the server,
/// the process) leaves what it did not send waiting here, and the next
/// push sends it; nothing is sent twice. Values stay sealed: the central
/// store never sees a key.
#[derive(Debug, clap::Args)]
pub struct Args {}

pub fn run(_args: Args, ctx: &Ctx, store: &Store) -> anyhow::Result<()> {
    let (target, branch) = ctx.settings.central_branch()?;
    let mut central = Central::connect(&target)?;
    push(ctx, store, &mut central, &branch, &|n| {
        ctx.release(store, n)
    })
}

/// `push_after_sync = true`: a push after `sync`, with an audit entry of
/// its own (`push`); a failure is told and recorded, and the sync's own
/// outcome stands (what was not sent waits for the next push).
pub fn after_sync(ctx: &Ctx, store: &Store) {
    let entry = |records: u64| gbdfl_store::AuditEntry {
        command: "push".into(),
        records,
        ..ctx.audit_entry()
    };
    let pushed = (|| -> anyhow::Result<()> {
        let (target, branch) = ctx.settings.central_branch()?;
        let mut central = Central::connect(&target)?;
        push(ctx, store, &mut central, &branch, &|n| {
            store.append_audit(&entry(n))?;
            Ok(())
        })
    })();
    if let Err(e) = pushed {
        eprintln!("gbdfl: warning: the push after sync did not complete: {e:#}");
        let failed = gbdfl_store::AuditEntry {
            exit_code: crate::exit::code_for(&e).code(),
            error: Some(format!("{e:#}")),
            ..entry(0)
        };
        if let Err(a) = store.append_audit(&failed) {
            eprintln!("gbdfl: warning: appending to the audit trail: {a}");
        }
    }
}

/// Pushes with this command's audit entry written first (the entry goes
/// with the push).
pub fn push(
    ctx: &Ctx,
    store: &Store,
    central: &mut Central,
    branch: &str,
    release: &dyn Fn(u64) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let mut bar: Option<indicatif::ProgressBar> = None;
    let counts = central.push(store, branch, release, &mut |p: Pushed| {
        let total = p.lookups_total + p.audit_total;
        let b = bar.get_or_insert_with(|| {
            progress::count_bar("push", total).unwrap_or_else(indicatif::ProgressBar::hidden)
        });
        b.set_position(p.lookups + p.audit);
    });
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    let counts = counts?;
    if ctx.settings.json {
        return super::json::print(&serde_json::json!({
            "branch": branch,
            "lookups": counts.pushed.lookups,
            "audit_entries": counts.pushed.audit,
            "already_there": counts.already_there,
        }));
    }
    eprintln!(
        "Pushed {} lookup(s) and {} audit entr{} of branch {branch} to {}{}.",
        counts.pushed.lookups,
        counts.pushed.audit,
        if counts.pushed.audit == 1 { "y" } else { "ies" },
        central.at(),
        match counts.already_there {
            0 => String::new(),
            n => format!(" ({n} were there already from a push cut short: not written again)"),
        }
    );
    Ok(())
}
