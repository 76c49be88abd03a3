//! The command layer: clap definitions, one file per subcommand, and the
//! dispatcher that resolves settings and opens the key and database once.
//!
//! Rules this module keeps: it is the only place that ties the store, the
//! client and the emulator together; each subcommand file holds its
//! arguments and one `run` function; raw clap values become
//! [`Settings`](crate::config::Settings) before any command sees them.

mod config;
mod demo;
mod expiring;
mod fetch;
mod history;
mod init;
mod mock_server;
mod report;
mod show;

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Parser, Subcommand};

use crate::config::{Flags, Settings};
use crate::keyfile;
use crate::store::Store;

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
    /// Print data as JSON
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    Init(init::Args),
    Fetch(fetch::Args),
    Show(show::Args),
    History(history::Args),
    Expiring(expiring::Args),
    Report(report::Args),
    Config(config::Args),
    MockServer(mock_server::Args),
    Demo(demo::Args),
}

/// What every command gets: the settings and a way to read the environment.
pub struct Ctx {
    pub settings: Settings,
    pub env: fn(&str) -> Option<String>,
}

fn real_env(k: &str) -> Option<String> {
    std::env::var(k).ok()
}

impl Ctx {
    /// Loads the key and opens the database, refusing a wrong key first.
    pub fn open_store(&self) -> anyhow::Result<Store> {
        let key_path = &self.settings.key_file.value;
        let key = keyfile::load(key_path)?;
        let store = Store::open(&self.settings.db.value, &key)?;
        Ok(store)
    }
}

/// Writes to stdout; a closed pipe (`gbdfl history ... | head`) ends quietly.
pub fn out(text: &str) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(text.as_bytes())
        .and_then(|_| stdout.flush())
        .context("writing to standard output")
}

/// Parses arguments, resolves settings and runs the command.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    let g = cli.global;
    let flags = Flags {
        config: g.config,
        db: g.db,
        key_file: g.key_file,
        operator: g.operator,
        base_url: g.base_url,
        json: g.json,
    };
    // The emulator and the demo need no settings of the user's.
    match cli.command {
        Command::MockServer(args) => return mock_server::run(args),
        Command::Demo(args) => return demo::run(args),
        _ => {}
    }
    let settings = Settings::resolve(&flags, &real_env)?;
    let ctx = Ctx {
        settings,
        env: real_env,
    };
    match cli.command {
        Command::Init(args) => init::run(args, &ctx),
        Command::Config(args) => config::run(args, &ctx),
        Command::Fetch(args) => {
            let store = ctx.open_store()?;
            fetch::run(args, &ctx, &store)
        }
        Command::Show(args) => {
            let store = ctx.open_store()?;
            show::run(args, &ctx, &store)
        }
        Command::History(args) => {
            let store = ctx.open_store()?;
            history::run(args, &ctx, &store)
        }
        Command::Expiring(args) => {
            let store = ctx.open_store()?;
            expiring::run(args, &ctx, &store)
        }
        Command::Report(args) => {
            let store = ctx.open_store()?;
            report::run(args, &ctx, &store)
        }
        Command::MockServer(_) | Command::Demo(_) => unreachable!("handled above"),
    }
}
