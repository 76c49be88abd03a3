//! `gbdfl central`: set up and look after the head office's central store
//! on PostgreSQL (docs/CENTRAL.md).

use std::path::PathBuf;

use super::{Ctx, out};
use crate::config::no_central;
use crate::exit::{Exit, ExitCode};
use gbdfl_central::Central;
use gbdfl_store::Store;

/// Set up and look after the central store on PostgreSQL: create its
/// schema, add branches and head office's readers, show what it holds,
/// purge it. The connection comes from GBDFL_CENTRAL_URL, `central_url`
/// in config.toml or libpq's PGHOST/PGUSER/PGDATABASE, the password from
/// PGPASSWORD or `central_password_file`; never from the command line.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub action: Action,
}

/// What `gbdfl central` does.
#[derive(Debug, clap::Subcommand)]
pub enum Action {
    /// Create the central schema (or check it) and record this database's
    /// keys as the organisation's. Run once, at head office, as a
    /// PostgreSQL role that may create tables and roles.
    Init,
    /// Add a branch: its login role, allowed to add rows of its own id
    /// only. Its new password is written to FILE (readable by you only),
    /// for IT to put beside the branch's config.
    AddBranch {
        /// The branch id: 1 to 40 of a-z, 0-9, _ and -
        branch: String,
        /// Where to write the branch's new password (a new file)
        #[arg(long, value_name = "FILE")]
        password_file: PathBuf,
    },
    /// Add a head-office login that reads every branch's rows and may purge.
    AddHeadOffice {
        /// A name for the login (its role is gbdfl_h_NAME)
        name: String,
        /// Where to write its new password (a new file)
        #[arg(long, value_name = "FILE")]
        password_file: PathBuf,
    },
    /// How many lookups and audit entries the central store holds of each
    /// branch. Counts only; no personal data.
    Status,
    /// Delete central lookups requested longer ago than DUR (head office
    /// only); recorded centrally and in this database's audit trail.
    Purge {
        /// e.g. 365d; a bare number is days
        #[arg(long, value_name = "DUR")]
        older_than: String,
    },
}

impl Args {
    /// The name its audit entry has.
    pub fn name(&self) -> &'static str {
        match self.action {
            Action::Init => "central init",
            Action::AddBranch { .. } => "central add-branch",
            Action::AddHeadOffice { .. } => "central add-head-office",
            Action::Status => "central status",
            Action::Purge { .. } => "central purge",
        }
    }
}

/// Connects to the central store the settings name.
pub fn connect(ctx: &Ctx) -> anyhow::Result<Central> {
    let target = ctx.settings.central_target()?.ok_or_else(no_central)?;
    Ok(Central::connect(&target)?)
}

pub fn run(args: Args, ctx: &Ctx, store: &Store) -> anyhow::Result<()> {
    let now = ctx.clock.now().timestamp_millis();
    match args.action {
        Action::Init => {
            let target = ctx.settings.central_target()?.ok_or_else(no_central)?;
            let keys = store.org_keys()?;
            let c = Central::init(&target, &keys, now)?;
            if ctx.settings.json {
                super::json::print(&serde_json::json!({
                    "central": c.at(),
                    "schema": gbdfl_central::SCHEMA_VERSION,
                    "key_id": store.key_id().to_string(),
                }))?;
            }
            eprintln!(
                "The central store at {} is ready (schema version {}), with this database's keys as the organisation's (key id {}).\nNext: `gbdfl central add-branch ID --password-file FILE` for each branch; branches make their database with `gbdfl init` and this key file.",
                c.at(),
                gbdfl_central::SCHEMA_VERSION,
                store.key_id()
            );
            Ok(())
        }
        Action::AddBranch {
            branch,
            password_file,
        } => {
            let mut c = connect(ctx)?;
            let password = new_password(&password_file)?;
            let role = c.add_branch(&branch, &password, now)?;
            if ctx.settings.json {
                super::json::print(&serde_json::json!({
                    "branch": branch, "role": role, "password_file": password_file,
                }))?;
            }
            eprintln!(
                "Added branch {branch}: it logs in as {role} with the password in {} (give it to the branch's IT and delete it here).",
                password_file.display()
            );
            Ok(())
        }
        Action::AddHeadOffice {
            name,
            password_file,
        } => {
            let mut c = connect(ctx)?;
            let password = new_password(&password_file)?;
            c.add_head_office(&name, &password)?;
            if ctx.settings.json {
                super::json::print(&serde_json::json!({
                    "role": format!("gbdfl_h_{}", name.replace('-', "_")),
                    "password_file": password_file,
                }))?;
            }
            eprintln!(
                "Added head-office login gbdfl_h_{} with the password in {}.",
                name.replace('-', "_"),
                password_file.display()
            );
            Ok(())
        }
        Action::Status => status(ctx, store),
        Action::Purge { older_than } => purge(ctx, &older_than, now),
    }
}

/// Writes a new random password to a new owner-only file.
fn new_password(path: &std::path::Path) -> anyhow::Result<String> {
    // 122 random bits from the operating system's generator (UUIDv4).
    let password = uuid::Uuid::new_v4().simple().to_string();
    let written = gbdfl_core::fsutil::create_private_file(path).and_then(|mut f| {
        use std::io::Write as _;
        f.write_all(format!("{password}\n").as_bytes())?;
        f.sync_all()
    });
    written.map_err(|e| {
        Exit::new(
            ExitCode::InvalidInput,
            format!(
                "--password-file {}: {e} (give a path to a new file)",
                path.display()
            ),
        )
    })?;
    Ok(password)
}

fn status(ctx: &Ctx, store: &Store) -> anyhow::Result<()> {
    let mut c = connect(ctx)?;
    let mut rows = Vec::new();
    for b in c.branches()? {
        rows.push(c.counts(&b)?);
    }
    ctx.release(store, rows.len() as u64)?;
    if ctx.settings.json {
        let v: Vec<serde_json::Value> = rows
            .iter()
            .map(|r| serde_json::json!({"branch": r.branch, "lookups": r.lookups, "audit_entries": r.audit}))
            .collect();
        return super::json::print(&v);
    }
    let mut text = format!(
        "{:<24} {:>12} {:>14}\n",
        "BRANCH", "LOOKUPS", "AUDIT ENTRIES"
    );
    for r in &rows {
        text.push_str(&format!(
            "{:<24} {:>12} {:>14}\n",
            r.branch, r.lookups, r.audit
        ));
    }
    out(&text)
}

fn purge(ctx: &Ctx, older_than: &str, now: i64) -> anyhow::Result<()> {
    let age = gbdfl_core::limits::parse_duration(
        "--older-than",
        older_than,
        gbdfl_core::limits::RETENTION,
    )?;
    let before = chrono::Duration::from_std(age)
        .ok()
        .and_then(|a| ctx.clock.now().checked_sub_signed(a))
        .ok_or_else(|| {
            Exit::new(
                ExitCode::InvalidInput,
                "--older-than reaches before the earliest time gbdfl can count from: give at most 36500d",
            )
        })?;
    let mut c = connect(ctx)?;
    let n = c.purge(before.timestamp_millis(), &ctx.settings.operator.value, now)?;
    ctx.note_records(n);
    if ctx.settings.json {
        super::json::print(&serde_json::json!({
            "deleted": n,
            "before": gbdfl_core::time::iso_millis(before),
        }))?;
    }
    eprintln!(
        "Deleted {n} central lookup(s) requested before {} (recorded in the central store's gbdfl_purges and this database's audit trail).",
        gbdfl_core::time::iso_millis(before)
    );
    Ok(())
}
