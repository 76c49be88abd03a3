//! `gbdfl init`: create the key file and the database, or check them.

use anyhow::Context as _;

use super::Ctx;
use gbdfl_store::crypto::MasterKey;
use gbdfl_store::keyfile;
use gbdfl_store::{InitState, Store};

/// Create a new master key and database, or check existing ones.
///
/// Never overwrites a key. Safe to run again: on an initialised database
/// with its key it only says so.
#[derive(Debug, clap::Args)]
pub struct Args {}

pub fn run(_args: Args, ctx: &Ctx) -> anyhow::Result<()> {
    let s = &ctx.settings;
    let (db, key_path) = (&s.db.value, &s.key_file.value);
    let key_existed = key_path.exists();
    if let Some(target) = s.central_target()? {
        return join(ctx, &target, key_existed);
    }
    let key = if key_existed {
        keyfile::load(key_path)?
    } else {
        if db.exists() && std::fs::metadata(db).map(|m| m.len() > 0).unwrap_or(false) {
            return Err(keyfile::KeyFileError::MissingForDatabase {
                key: key_path.clone(),
                db: db.clone(),
            }
            .into());
        }
        let key = MasterKey::generate()?;
        keyfile::create(key_path, &key)?;
        key
    };
    let (store, state) =
        Store::init(db, &key).with_context(|| format!("initialising database {}", db.display()))?;
    if s.json {
        super::json::print(&serde_json::json!({
            "database": db,
            "key_file": key_path,
            "key_id": store.key_id().to_string(),
            "created": matches!(state, InitState::Created),
            "key_created": !key_existed,
        }))?;
    }
    match (state, key_existed) {
        (InitState::AlreadyInitialised, _) => eprintln!(
            "Already initialised: database {} opens with key file {} (key id {}). Nothing was changed.",
            db.display(),
            key_path.display(),
            store.key_id()
        ),
        (InitState::Created, false) => eprintln!(
            "Created database {} and a new master key in {} (key id {}, mode 0600).\nBack the key file up apart from the database: without it the data cannot be read.",
            db.display(),
            key_path.display(),
            store.key_id()
        ),
        (InitState::Created, true) => eprintln!(
            "Created database {} with the existing key file {} (key id {}).",
            db.display(),
            key_path.display(),
            store.key_id()
        ),
    }
    Ok(())
}

/// `init` with a central store set: the branch database is made with the
/// organisation's keys (the key file is the organisation's, given by IT),
/// so that its blind index and audit chain agree with every branch's.
fn join(ctx: &Ctx, target: &gbdfl_central::Target, key_existed: bool) -> anyhow::Result<()> {
    let s = &ctx.settings;
    let (db, key_path) = (&s.db.value, &s.key_file.value);
    if !key_existed {
        return Err(crate::exit::Exit::new(
            crate::exit::ExitCode::KeyOrIntegrity,
            format!(
                "a central store is set ({}), so this database must use the organisation's key file: put the file head office gave you at {} (or set key_file), then run `gbdfl init` again. No key was made",
                target.shown(),
                key_path.display()
            ),
        )
        .into());
    }
    let key = keyfile::load(key_path)?;
    let mut central = gbdfl_central::Central::connect(target)?;
    let org = central.org_keys()?;
    let has_db = db.exists() && std::fs::metadata(db).map(|m| m.len() > 0).unwrap_or(false);
    if has_db {
        let store = Store::open(db, &key)?;
        if !store.has_org_keys(&org)? {
            return Err(gbdfl_central::CentralError::Key(format!(
                "database {} was made with keys of its own, not the organisation's: it cannot share the organisation cache or be pushed. Make a new database for this branch with `gbdfl init` (and `gbdfl export`/`gbdfl import` to carry records over)",
                db.display()
            ))
            .into());
        }
        eprintln!(
            "Already initialised: database {} holds the organisation's keys (key id {}). Nothing was changed.",
            db.display(),
            store.key_id()
        );
        return Ok(());
    }
    let store = Store::init_adopting(db, &key, &org)
        .with_context(|| format!("initialising database {}", db.display()))?;
    if s.json {
        super::json::print(&serde_json::json!({
            "database": db,
            "key_file": key_path,
            "key_id": store.key_id().to_string(),
            "created": true,
            "key_created": false,
            "organisation": true,
        }))?;
    }
    eprintln!(
        "Created database {} with the organisation's keys from {} (key id {}).",
        db.display(),
        central.at(),
        store.key_id()
    );
    Ok(())
}
