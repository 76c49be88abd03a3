//! `gbdfl rekey`: rotate the master key, re-encrypting everything.

use std::path::PathBuf;

use super::{Ctx, out};
use gbdfl_store::Store;
use gbdfl_store::crypto::{self, MasterKey};
use gbdfl_store::keyfile;

/// Make a new master key in a new key file and re-encrypt every record under it.
///
/// One transaction: a crash leaves a database that opens with exactly one of
/// the two keys. The old key file is left for you to delete.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Where to write the new key file [default: beside the old one, <key file>.v<N>]
    #[arg(long, value_name = "PATH")]
    pub out: Option<PathBuf>,
}

pub fn run(args: Args, ctx: &Ctx, store: &Store) -> anyhow::Result<()> {
    // A spilled answer is sealed under the current key: store it first.
    let spills = store.pending_spills();
    if spills > 0 {
        return Err(crate::exit::Exit::new(
            crate::exit::ExitCode::Database,
            format!(
                "{spills} paid answer(s) wait in {} to be stored (the disk was full when they came); free disk space and run `gbdfl queue` to store them, then rekey",
                gbdfl_store::spill_dir(store.path()).display()
            ),
        )
        .into());
    }
    let old_path = &ctx.settings.key_file.value;
    let old = keyfile::load(old_path)?;
    let version = store.key_version() + 1;
    let new_path = args.out.unwrap_or_else(|| {
        // master.key -> master.key.v2; master.key.v2 -> master.key.v3
        let name = old_path.to_string_lossy();
        let base = match name.rsplit_once(".v") {
            Some((b, n)) if n.chars().all(|c| c.is_ascii_digit()) && !n.is_empty() => b.to_owned(),
            _ => name.into_owned(),
        };
        PathBuf::from(format!("{base}.v{version}"))
    });
    let new = MasterKey::generate()?;
    // The new key is on disk (and synced) before any row changes, so an
    // interrupted rekey never leaves rows sealed under a key nobody has.
    keyfile::create(&new_path, &new).map_err(|e| {
        anyhow::anyhow!(
            "{e}. If an earlier rekey was interrupted, that file is a leftover the database does not use: check with `gbdfl check`, delete it, and run rekey again"
        )
    })?;
    let (n, queued) = store.rekey(&old, &new, &ctx.audit_entry())?;
    ctx.mark_audited();
    if ctx.settings.json {
        return super::json::print(&serde_json::json!({
            "lookups": n,
            "queued_requests": queued,
            "key_file": new_path,
            "key_id": crypto::key_id(&new.check_value()).to_string(),
            "key_version": version,
            "old_key_file": old_path,
            "old_key_id": crypto::key_id(&old.check_value()).to_string(),
        }));
    }
    let queued = match queued {
        0 => String::new(),
        1 => ", 1 queued request".to_owned(),
        q => format!(", {q} queued requests"),
    };
    out(&format!(
        "Re-encrypted {n} lookups{queued} and the audit trail under a new master key (key id {}, version {version}), written to {}.\n\
         Next: point --key-file / GBDFL_KEY_FILE / key_file at the new file, back it up, then retire the old key file {} (key id {}): this database now refuses it, but backups made before this rekey open only with it, so keep it with those backups until they are gone.\n",
        crypto::key_id(&new.check_value()),
        new_path.display(),
        old_path.display(),
        crypto::key_id(&old.check_value()),
    ))
}
