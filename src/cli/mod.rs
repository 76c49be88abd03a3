//! The command layer: clap definitions, one file per subcommand, and the
//! dispatcher that resolves settings and opens the key and database once.
//!
//! Rules this module keeps: it is the only place that ties the store, the
//! client and the emulator together; each subcommand file holds its
//! arguments and one `run` function; raw clap values become
//! [`Settings`](crate::config::Settings) before any command sees them.

mod audit;
mod backup;
mod batch;
#[cfg(feature = "dev")]
mod bench;
mod central;
mod central_report;
mod check;
mod completions;
mod config;
#[cfg(feature = "dev")]
mod demo;
mod doctor;
mod expiring;
mod export;
mod fetch;
mod help;
mod history;
mod import;
mod init;
mod json;
mod man;
#[cfg(feature = "dev")]
mod mock_server;
mod org;
mod progress;
mod purge;
mod push;
mod queue;
mod rekey;
mod report;
mod show;
mod stats;
mod sync;

use std::cell::RefCell;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use clap::{Parser, Subcommand};

use crate::config::{Flags, Settings};
use crate::exit::{Exit, ExitCode};
use gbdfl_core::clock::{Clock, SystemClock};
use gbdfl_core::iin::Iin;
use gbdfl_store::keyfile;
use gbdfl_store::{AuditEntry, Store};

pub use help::{GROUPS, command, env_vars, parse};

/// gbdfl: look people up in GBDFL (the State Database of Individuals, via
/// biometric.kz), keep every lookup encrypted in a local SQLite cache, and
/// answer from that cache without paying twice.
#[derive(Debug, Parser)]
#[command(name = "gbdfl", version, about, max_term_width = 100)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Options every subcommand takes, before or after its name.
#[derive(Debug, clap::Args)]
#[command(next_help_heading = "Global options")]
pub struct GlobalArgs {
    /// The database file [env: GBDFL_DB] [default: <data dir>/gbdfl/gbdfl.db]
    #[arg(long, global = true, value_name = "PATH")]
    pub db: Option<PathBuf>,
    /// The master key file [env: GBDFL_KEY_FILE] [default: <data dir>/gbdfl/master.key]
    #[arg(long, global = true, value_name = "PATH")]
    pub key_file: Option<PathBuf>,
    /// Who is working, recorded with every lookup [env: GBDFL_OPERATOR] [default: the OS user]
    #[arg(long, global = true, value_name = "NAME")]
    pub operator: Option<String>,
    /// The config file [env: GBDFL_CONFIG] [default: <config dir>/gbdfl/config.toml]
    #[arg(long, global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// The GBDFL endpoint; plain http only to loopback [env: GBDFL_BASE_URL]
    #[arg(long, global = true, value_name = "URL")]
    pub base_url: Option<String>,
    /// Why you need this data; recorded with the lookup and in the audit trail
    /// (required when the config sets require_purpose = true)
    #[arg(long, global = true, value_name = "TEXT")]
    pub purpose: Option<String>,
    /// Print data as JSON
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    Init(init::Args),
    Fetch(fetch::Args),
    Sync(sync::Args),
    Batch(batch::Args),
    Queue(queue::Args),
    Stats(stats::Args),
    Show(show::Args),
    History(history::Args),
    Expiring(expiring::Args),
    Report(report::Args),
    Audit(audit::Args),
    Purge(purge::Args),
    Rekey(rekey::Args),
    Backup(backup::Args),
    Check(check::Args),
    Import(import::Args),
    Export(export::Args),
    Config(config::Args),
    Doctor(doctor::Args),
    Central(central::Args),
    Push(push::Args),
    Pull(org::PullArgs),
    #[cfg(feature = "dev")]
    MockServer(mock_server::Args),
    #[cfg(feature = "dev")]
    Demo(demo::Args),
    Completions(completions::Args),
    Man(man::Args),
    #[cfg(feature = "dev")]
    #[command(hide = true)]
    Bench(bench::Args),
}

impl Command {
    /// The name recorded in the audit trail, for commands that touch
    /// personal data; `None` for those that do not.
    fn audited_name(&self) -> Option<&'static str> {
        Some(match self {
            Command::Fetch(_) => "fetch",
            Command::Sync(_) => "sync",
            Command::Batch(_) => "batch",
            Command::Queue(q) => q.name(),
            Command::Stats(_) => "stats",
            Command::Show(_) => "show",
            Command::History(_) => "history",
            Command::Expiring(_) => "expiring",
            Command::Report(r) => r.name(),
            Command::Audit(a) => a.name(),
            Command::Purge(p) if p.dry_run => "purge --dry-run",
            Command::Purge(_) => "purge",
            Command::Rekey(_) => "rekey",
            Command::Backup(_) => "backup",
            Command::Check(_) => "check",
            Command::Import(_) => "import",
            Command::Export(_) => "export",
            Command::Central(c) => c.name(),
            Command::Push(_) => "push",
            Command::Pull(_) => "pull",
            #[cfg(feature = "dev")]
            Command::Bench(b) => return b.name(),
            #[cfg(feature = "dev")]
            Command::MockServer(_) | Command::Demo(_) => return None,
            Command::Init(_)
            | Command::Config(_)
            | Command::Doctor(_)
            | Command::Completions(_)
            | Command::Man(_) => {
                return None;
            }
        })
    }
}

/// What the running command tells the audit trail about itself.
#[derive(Debug, Default)]
pub struct AuditNote {
    pub subject: Option<[u8; 32]>,
    /// The one lookup the command shows, when it shows one.
    pub lookup_id: Option<String>,
    pub records: u64,
    /// Set when the command wrote its own entry (with its effect, in one transaction).
    pub written: bool,
    /// Set when the command's entry was written before it released
    /// personal data ([`Ctx::release`]): a failure after that gets an
    /// entry of its own.
    pub released: bool,
    /// Set when that entry could not be written: nothing was released,
    /// and trying again at the end would only wait for the lock again.
    pub unwritable: bool,
}

/// What every command gets: the settings, the environment, the purpose
/// and the audit note.
pub struct Ctx {
    pub settings: Settings,
    pub env: fn(&str) -> Option<String>,
    pub purpose: Option<String>,
    pub command: &'static str,
    pub note: RefCell<AuditNote>,
    /// The one clock of this run: the store, the client and the reports
    /// read it.
    pub clock: Arc<dyn Clock>,
}

fn real_env(k: &str) -> Option<String> {
    std::env::var(k).ok()
}

impl Ctx {
    /// Loads the key and opens the database, refusing a wrong key first.
    pub fn open_store(&self) -> anyhow::Result<Store> {
        let key_path = &self.settings.key_file.value;
        let db = &self.settings.db.value;
        let key = keyfile::load(key_path).map_err(|e| match e {
            keyfile::KeyFileError::Missing(key) if db.exists() => {
                keyfile::KeyFileError::MissingForDatabase {
                    key,
                    db: db.clone(),
                }
            }
            e => e,
        })?;
        gbdfl_store::set_migration_progress(progress::migration);
        let store = Store::open_waiting(
            &self.settings.db.value,
            &key,
            self.settings.busy_timeout.value,
            Arc::clone(&self.clock),
        )?;
        // Paid answers a full disk kept out of the database go in first.
        match store.take_in_spills() {
            Ok(0) => {}
            Ok(n) => eprintln!(
                "Stored {n} paid answer(s) that an earlier run kept in {} when the database could not take them.",
                gbdfl_store::spill_dir(store.path()).display()
            ),
            Err(e) => eprintln!(
                "gbdfl: warning: paid answers kept in {} could not be stored yet ({e}); they stay there and are tried again next time.",
                gbdfl_store::spill_dir(store.path()).display()
            ),
        }
        Ok(store)
    }

    /// A fresh audit entry for this command, outcome not yet filled in.
    pub fn audit_entry(&self) -> AuditEntry {
        let note = self.note.borrow();
        AuditEntry {
            command: self.command.to_owned(),
            operator: self.settings.operator.value.clone(),
            host: self.settings.host.clone(),
            subject: note.subject,
            purpose: self.purpose.clone(),
            records: note.records,
            os_user: Some(gbdfl_core::os_user::described().to_owned()),
            lookup_id: note.lookup_id.clone(),
            ..AuditEntry::default()
        }
    }

    pub fn note_subject(&self, store: &Store, iin: &Iin) {
        self.note.borrow_mut().subject = Some(store.subject_of(iin));
    }

    /// Notes the one lookup this command shows, for its audit entry.
    pub fn note_lookup(&self, id: &str) {
        self.note.borrow_mut().lookup_id = Some(id.to_owned());
    }

    pub fn note_records(&self, n: u64) {
        self.note.borrow_mut().records = n;
    }

    pub fn mark_audited(&self) {
        self.note.borrow_mut().written = true;
    }

    /// Appends this command's entry, saying what is about to be released
    /// (`records`, and the subject noted), before any of it is written to
    /// standard output or a file. If the entry cannot be written, nothing
    /// may be released: the error says so, and the command must return it.
    pub fn release(&self, store: &Store, records: u64) -> anyhow::Result<()> {
        self.note_records(records);
        match store.append_audit(&self.audit_entry()) {
            Ok(()) => {
                self.note.borrow_mut().released = true;
                Ok(())
            }
            Err(e) => {
                self.note.borrow_mut().unwritable = true;
                Err(anyhow::Error::new(e).context(
                    "the audit entry could not be written, so nothing was shown or written",
                ))
            }
        }
    }
}

/// The longest `--purpose`: it is kept with every lookup and audit entry.
pub const MAX_PURPOSE_CHARS: usize = 500;

/// Parses an IIN argument; the error names the (masked) number and the rule.
/// Every caller takes `--skip-iin-check`, so a failed check digit names it
/// (the batch file and the archive import have their own rules).
pub fn parse_iin(s: &str, skip_check: bool, today: chrono::NaiveDate) -> anyhow::Result<Iin> {
    parse_iin_on(s, skip_check, today)
}

/// [`parse_iin`] with "today" passed in: a birth date after it is refused.
pub fn parse_iin_on(s: &str, skip_check: bool, today: chrono::NaiveDate) -> anyhow::Result<Iin> {
    // A long input is cut: the message (and the audit entry that keeps it)
    // stays short whatever was typed or pasted.
    let masked = gbdfl_core::limits::cut(&gbdfl_core::iin::mask(s.trim()), 20);
    Iin::parse_with(s, skip_check)
        .and_then(|iin| match skip_check {
            true => Ok(iin),
            false => iin.check_born_by(today).map(|()| iin),
        })
        .map_err(|e| {
            let flag = match e {
                gbdfl_core::iin::IinError::CheckDigit { .. }
                | gbdfl_core::iin::IinError::BornInFuture(_) => {
                    ", or pass --skip-iin-check if the document really bears it"
                }
                _ => "",
            };
            Exit::new(
                ExitCode::InvalidInput,
                format!("IIN {masked} is not valid: {e}{flag}"),
            )
            .into()
        })
}

/// Parses a session's creation time; one in the future is a mistake.
pub fn parse_session_created_at(
    name: &str,
    s: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> anyhow::Result<chrono::DateTime<chrono::Utc>> {
    let t = gbdfl_service::lookup::parse_session_time(s)
        .map_err(|e| Exit::new(ExitCode::InvalidInput, format!("{name}: {e}")))?;
    // `26-11-28 09:15` parses as the year 26: a year has four digits.
    if chrono::Datelike::year(&t) < 2000 {
        return Err(Exit::new(
            ExitCode::InvalidInput,
            format!(
                "{name} {}: the year {} is not a face2face session's; write the year with four digits, e.g. 2026-11-28 09:15",
                gbdfl_core::limits::shown(s),
                chrono::Datelike::year(&t)
            ),
        )
        .into());
    }
    if t > now + chrono::TimeDelta::minutes(5) {
        return Err(Exit::new(
            ExitCode::InvalidInput,
            format!(
                "{name}: {} is in the future; give the time the face2face session was created",
                gbdfl_report::render::local_time(t)
            ),
        )
        .into());
    }
    Ok(t)
}

/// Writes to stdout; a closed pipe (`gbdfl history ... | head`) ends quietly.
pub fn out(text: &str) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(text.as_bytes())
        .and_then(|_| stdout.flush())
        .context("writing to standard output")
}

/// The clock of this run: the system's. The test build (debug, with the
/// `dev` feature) takes `GBDFL_TEST_NOW=TIME` (RFC 3339), for the tests of
/// the binary only: the run starts at TIME and its clock then runs at the
/// real pace, so waits (backoff, Retry-After) still end. Never in a release
/// build, even with `dev`: a clock set from the environment would let
/// anyone date audit entries as they please.
fn the_clock() -> anyhow::Result<Arc<dyn Clock>> {
    #[cfg(all(feature = "dev", debug_assertions))]
    if let Some(at) = std::env::var_os("GBDFL_TEST_NOW") {
        let at = at.to_string_lossy();
        let at = chrono::DateTime::parse_from_rfc3339(&at).map_err(|e| {
            Exit::new(
                ExitCode::InvalidInput,
                format!(
                    "GBDFL_TEST_NOW {}: {e}: write e.g. 2030-06-01T10:00:00Z",
                    gbdfl_core::limits::shown(&at)
                ),
            )
        })?;
        return Ok(Arc::new(gbdfl_core::clock::StartedClock::at(at.to_utc())));
    }
    Ok(SystemClock::shared())
}

/// Parses arguments, resolves settings and runs the command.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    let clock = the_clock()?;
    let g = cli.global;
    let flags = Flags {
        config: g.config,
        db: g.db,
        key_file: g.key_file,
        operator: g.operator,
        base_url: g.base_url,
        json: g.json,
    };
    refuse_json(&cli.command, g.json)?;
    // The emulator and the demo need no settings of the user's.
    match cli.command {
        #[cfg(feature = "dev")]
        Command::MockServer(args) => return mock_server::run(args, g.json),
        #[cfg(feature = "dev")]
        Command::Demo(args) => return demo::run(args, clock),
        Command::Completions(args) => return completions::run(args),
        Command::Man(args) => return man::run(args),
        _ => {}
    }
    let settings = Settings::resolve(&flags, &real_env)?;
    check_purpose_length(g.purpose.as_deref())?;
    let Some(command) = cli.command.audited_name() else {
        return run_unaudited(cli.command, settings, g.purpose, clock);
    };
    let ctx = Ctx {
        settings,
        env: real_env,
        purpose: g.purpose.filter(|p| !p.trim().is_empty()),
        command,
        note: RefCell::default(),
        clock,
    };
    let store = ctx.open_store()?;
    let result = run_audited(cli.command, &ctx, &store);
    audit_end(&ctx, &store, result)
}

/// `--json` with a command that prints no data to give as JSON: refused.
fn refuse_json(command: &Command, json: bool) -> anyhow::Result<()> {
    // These print no data to give as JSON.
    let prints_no_data = match command {
        #[cfg(feature = "dev")]
        Command::Demo(_) => Some(("demo", "it shows a walk-through for people")),
        Command::Completions(_) => Some(("completions", "it prints a shell script")),
        Command::Man(_) => Some(("man", "it prints a manual page")),
        #[cfg(feature = "dev")]
        Command::Bench(_) => Some(("bench", "it prints timings for people")),
        _ => None,
    };
    if let (true, Some((name, why))) = (json, prints_no_data) {
        return Err(json::refuse(name, why));
    }
    Ok(())
}

/// A `--purpose` longer than [`MAX_PURPOSE_CHARS`] is refused.
fn check_purpose_length(purpose: Option<&str>) -> anyhow::Result<()> {
    if let Some(p) = purpose
        && p.chars().count() > MAX_PURPOSE_CHARS
    {
        return Err(Exit::new(
            ExitCode::InvalidInput,
            format!(
                "--purpose {} is too long: at most {MAX_PURPOSE_CHARS} characters",
                gbdfl_core::limits::shown(p)
            ),
        )
        .into());
    }
    Ok(())
}

/// The commands that touch no personal data: settings, no store, no entry.
fn run_unaudited(
    command: Command,
    settings: Settings,
    purpose: Option<String>,
    clock: Arc<dyn Clock>,
) -> anyhow::Result<()> {
    let ctx = Ctx {
        settings,
        env: real_env,
        purpose,
        command: "",
        note: RefCell::default(),
        clock,
    };
    match command {
        Command::Init(args) => init::run(args, &ctx),
        Command::Config(args) => config::run(args, &ctx),
        Command::Doctor(args) => doctor::run(args, &ctx),
        #[cfg(feature = "dev")]
        Command::Bench(args) => bench::run(args, &ctx, None),
        _ => unreachable!("only unaudited commands here"),
    }
}

/// Runs a command that touches personal data, unless this installation
/// requires a purpose and none was given.
fn run_audited(command: Command, ctx: &Ctx, store: &Store) -> anyhow::Result<()> {
    // A batch file may give each row its purpose: batch checks its rows itself.
    let batch = matches!(command, Command::Batch(_));
    if ctx.settings.require_purpose.value && ctx.purpose.is_none() && !batch {
        Err(Exit::new(
            ExitCode::InvalidInput,
            format!(
                "this installation requires a purpose for every command that touches personal data (require_purpose = true, {}): add --purpose \"why you need it\"",
                ctx.settings.require_purpose.origin
            ),
        )
        .into())
    } else {
        dispatch(command, ctx, store)
    }
}

/// The command's audit entry at its end, unless it wrote its own: the
/// outcome, or after a release, the failure that came after it.
fn audit_end(ctx: &Ctx, store: &Store, result: anyhow::Result<()>) -> anyhow::Result<()> {
    let note = ctx.note.borrow();
    if note.written || note.unwritable {
        return result;
    }
    // Every command that touches personal data leaves one entry, failed or not.
    let result = match result {
        Err(e) if crate::exit::is_broken_pipe(&e) => Ok(()),
        other => other,
    };
    let released = note.released;
    drop(note);
    if released && result.is_ok() {
        return result;
    }
    let mut entry = ctx.audit_entry();
    if let Err(e) = &result {
        entry.exit_code = crate::exit::code_for(e).code();
        entry.error = Some(e.to_string());
        if released {
            // The entry before the release counted what was to go out;
            // this one says the command then failed, and counts nothing.
            entry.records = 0;
            entry.error = Some(format!("failed after the release was recorded: {e:#}"));
        }
    }
    let appended = store
        .append_audit(&entry)
        .context("appending to the audit trail");
    match (result, appended) {
        (Err(e), Ok(())) => Err(e),
        (Err(e), Err(a)) => {
            // The command's own error says more; the missing entry is told too.
            eprintln!("gbdfl: warning: {a:#}");
            Err(e)
        }
        (Ok(()), Err(e)) => Err(e),
        (Ok(()), Ok(())) => Ok(()),
    }
}

fn dispatch(command: Command, ctx: &Ctx, store: &Store) -> anyhow::Result<()> {
    match command {
        Command::Fetch(args) => fetch::run(args, ctx, store),
        Command::Sync(args) => {
            let synced = sync::run(args, ctx, store);
            if ctx.settings.push_after_sync && ctx.settings.central_url.is_some() {
                push::after_sync(ctx, store);
            }
            synced
        }
        Command::Batch(args) => batch::run(args, ctx, store),
        Command::Queue(args) => queue::run(args, ctx, store),
        Command::Stats(args) => stats::run(args, ctx, store),
        Command::Show(args) => show::run(args, ctx, store),
        Command::History(args) => history::run(args, ctx, store),
        Command::Expiring(args) => expiring::run(args, ctx, store),
        Command::Report(args) => report::run(args, ctx, store),
        Command::Audit(args) => audit::run(args, ctx, store),
        Command::Purge(args) => purge::run(args, ctx, store),
        Command::Rekey(args) => rekey::run(args, ctx, store),
        Command::Backup(args) => backup::run(args, ctx, store),
        Command::Check(args) => check::run(args, ctx, store),
        Command::Import(args) => import::run(args, ctx, store),
        Command::Export(args) => export::run(args, ctx, store),
        Command::Central(args) => central::run(args, ctx, store),
        Command::Push(args) => push::run(args, ctx, store),
        Command::Pull(args) => org::pull(args, ctx, store),
        #[cfg(feature = "dev")]
        Command::Bench(args) => bench::run(args, ctx, Some(store)),
        #[cfg(feature = "dev")]
        Command::MockServer(_) | Command::Demo(_) => unreachable!("not audited commands"),
        Command::Init(_)
        | Command::Config(_)
        | Command::Doctor(_)
        | Command::Completions(_)
        | Command::Man(_) => {
            unreachable!("not audited commands")
        }
    }
}
