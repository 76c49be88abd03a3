//! `gbdfl check`: is this database whole, readable and untampered?

use super::{Ctx, out};
use crate::exit::{Exit, ExitCode};
use gbdfl_store::Store;

/// Check the database: SQLite integrity, the key, every record opens under
/// what its row says, lookups and audit entries account for each other, the
/// stored dictionaries, the audit chain.
///
/// Exits 8 on any failure, naming every lookup, entry or dictionary concerned.
#[derive(Debug, clap::Args)]
pub struct Args {}

pub fn run(_args: Args, ctx: &Ctx, store: &Store) -> anyhow::Result<()> {
    let r = store.check()?;
    ctx.note_records(r.lookups);
    let mut text = format!(
        "key:           ok (key id {}, version {})\nintegrity:     {}\nrecords:       {} lookups, {} queued requests, {} failed to decrypt\naccounted:     {}\ndictionaries:  {}\naudit trail:   {} entries, {}\n",
        store.key_id(),
        store.key_version(),
        r.integrity.join("; "),
        r.lookups,
        r.queued,
        r.undecryptable.len(),
        if r.unaccounted.is_empty() {
            "every lookup and audit entry account for each other".to_owned()
        } else {
            format!("{} problems", r.unaccounted.len())
        },
        if r.dictionaries.is_empty() {
            "ok"
        } else {
            "altered"
        },
        r.audit.entries,
        r.audit.problem.as_deref().unwrap_or("chain intact"),
    );
    for u in r
        .undecryptable
        .iter()
        .chain(&r.unaccounted)
        .chain(&r.dictionaries)
    {
        text.push_str(&format!("  {u}\n"));
    }
    if ctx.settings.json {
        super::json::print(&serde_json::json!({
            "ok": r.ok(),
            "key": { "id": store.key_id().to_string(), "version": store.key_version() },
            "integrity": r.integrity,
            "lookups": r.lookups,
            "queued": r.queued,
            "undecryptable": r.undecryptable,
            "unaccounted": r.unaccounted,
            "dictionaries": r.dictionaries,
            "audit": { "entries": r.audit.entries, "problem": r.audit.problem },
        }))?;
    } else {
        out(&text)?;
    }
    if r.ok() {
        Ok(())
    } else {
        Err(Exit::new(
            ExitCode::KeyOrIntegrity,
            "the check found problems (see above)",
        )
        .into())
    }
}
