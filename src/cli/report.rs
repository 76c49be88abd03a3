//! `gbdfl report KIND`: a CSV report of the cache, written atomically.

use std::path::PathBuf;

use anyhow::Context as _;

use super::{Ctx, out};
use crate::exit::{Exit, ExitCode};
use crate::report::{self, Kind, OptionText, Options};
use crate::store::Store;

/// Write a CSV report of the cache (never calls the service) and print its path.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// expiring: documents needing attention (as `gbdfl expiring`);
    /// lookups: every lookup in the period; summary: counts per day
    #[arg(value_enum)]
    pub kind: KindArg,
    /// Where to write [default: reports/KIND-YYYYMMDD-HHMMSS.csv]
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// First UTC day of the period, YYYY-MM-DD (lookups, summary)
    #[arg(long, value_name = "DATE")]
    pub from: Option<String>,
    /// Last UTC day of the period, included (lookups, summary)
    #[arg(long, value_name = "DATE")]
    pub to: Option<String>,
    /// Add a UTF-8 byte order mark and CRLF line ends, for Excel
    #[arg(long)]
    pub excel: bool,
    /// Field separator: one character (';' suits Russian and Kazakh Excel) or `tab`
    #[arg(long, value_name = "C", default_value = ",")]
    pub delimiter: String,
    /// Write full IINs (masked by default: 950215*****6)
    #[arg(long)]
    pub full_iin: bool,
    /// expiring: list documents expiring within this window (a bare number
    /// is days; 0s to 36500d)
    #[arg(long, value_name = "DUR", default_value = "90d")]
    pub within: String,
    /// expiring: count days from this date instead of today (YYYY-MM-DD)
    #[arg(long, value_name = "DATE")]
    pub as_of: Option<String>,
    /// expiring: worker threads for the scan, 1 to 64; the report does not
    /// depend on it [env: GBDFL_THREADS] [default: one per core, at most 64]
    #[arg(long, value_name = "N", value_parser = crate::limits::threads_flag)]
    pub threads: Option<usize>,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum KindArg {
    Expiring,
    Lookups,
    Summary,
}

impl Args {
    /// The name recorded in the audit trail.
    pub fn name(&self) -> &'static str {
        match self.kind {
            KindArg::Expiring => "report expiring",
            KindArg::Lookups => "report lookups",
            KindArg::Summary => "report summary",
        }
    }
}

/// An invalid option value: exit code 2 with the message.
pub(super) fn invalid(e: impl std::fmt::Display) -> anyhow::Error {
    Exit::new(ExitCode::InvalidInput, e.to_string()).into()
}

pub fn run(args: Args, ctx: &Ctx, store: &Store) -> anyhow::Result<()> {
    let kind = match args.kind {
        KindArg::Expiring => Kind::Expiring,
        KindArg::Lookups => Kind::Lookups,
        KindArg::Summary => Kind::Summary,
    };
    let text = OptionText {
        delimiter: &args.delimiter,
        excel: args.excel,
        full_iin: args.full_iin,
        from: args.from.as_deref(),
        to: args.to.as_deref(),
        within: &args.within,
        as_of: args.as_of.as_deref(),
    };
    let now = chrono::Local::now();
    let mut opts = Options::parse(kind, &text, now.date_naive()).map_err(invalid)?;
    opts.threads = crate::limits::threads(args.threads, &ctx.env)?;
    let dest = args.out.unwrap_or_else(|| report::default_path(kind, now));
    let rows = report::produce(kind, store, &opts, &dest, |n| ctx.release(store, n))
        .with_context(|| format!("{} report to {}", kind.name(), dest.display()))?;
    let iins = if opts.full_iin {
        "FULL IINs"
    } else {
        "IINs masked"
    };
    let noun = if rows == 1 { "row" } else { "rows" };
    eprintln!("{} report: {rows} {noun}, {iins}", kind.name());
    out(&format!("{}\n", dest.display()))
}
