//! `gbdfl report KIND`: a CSV or HTML report of the cache, written atomically.

use std::path::PathBuf;

use anyhow::Context as _;

use super::{Ctx, out};
use crate::exit::{Exit, ExitCode};
use gbdfl_report as report;
use gbdfl_report::html::Lang;
use gbdfl_report::{HtmlOptions, Kind, OptionText, Options};
use gbdfl_store::Store;

/// Write a CSV or HTML report of the cache (never calls the service) and print its path.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// expiring: documents needing attention (as `gbdfl expiring`);
    /// lookups: every lookup in the period; summary: counts per day;
    /// audit: the audit trail, the columns of `gbdfl audit log --json`
    #[arg(value_enum)]
    pub kind: KindArg,
    /// Where to write [default: reports/KIND-YYYYMMDD-HHMMSS.csv, or .html]
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// First UTC day of the period, YYYY-MM-DD (lookups, summary, audit)
    #[arg(long, value_name = "DATE")]
    pub from: Option<String>,
    /// Last UTC day of the period, included (lookups, summary, audit)
    #[arg(long, value_name = "DATE")]
    pub to: Option<String>,
    /// Add a UTF-8 byte order mark and CRLF line ends, for Excel
    #[arg(long)]
    pub excel: bool,
    /// Field separator: one character (';' suits Russian and Kazakh Excel) or `tab`
    #[arg(long, value_name = "C", default_value = ",")]
    pub delimiter: String,
    /// expiring, summary: one self-contained HTML page with charts instead
    /// of CSV (opens offline; loads nothing)
    #[arg(long)]
    pub html: bool,
    /// --html: language of the page's words, ru or en [default: from
    /// LC_ALL, LC_MESSAGES or LANG]; data is shown as stored
    #[arg(long, value_name = "LANG")]
    pub lang: Option<String>,
    /// CSV header row: `keys` (the stable column names) or `ru` (Russian)
    #[arg(long, value_name = "H", default_value = "keys")]
    pub headers: String,
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
    #[arg(long, value_name = "N", value_parser = gbdfl_core::limits::threads_flag)]
    pub threads: Option<usize>,
    /// audit: only entries of this operator
    #[arg(long = "by", value_name = "OPERATOR")]
    pub by: Option<String>,
    /// audit: only entries about this IIN (matched through its blind index)
    #[arg(long, value_name = "IIN")]
    pub iin: Option<String>,
    /// audit: only this command (fetch, show, "report expiring", ...)
    #[arg(long, value_name = "COMMAND")]
    pub action: Option<String>,
    /// expiring, lookups, summary: head office's report over every branch
    /// in the central store, with a `branch` column (CSV)
    #[arg(long)]
    pub central: bool,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum KindArg {
    Expiring,
    Lookups,
    Summary,
    Audit,
}

impl Args {
    /// The name recorded in the audit trail.
    pub fn name(&self) -> &'static str {
        match self.kind {
            KindArg::Expiring => "report expiring",
            KindArg::Lookups => "report lookups",
            KindArg::Summary => "report summary",
            KindArg::Audit => "report audit",
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
        KindArg::Audit if args.html || args.lang.is_some() || args.headers.trim() != "keys" => {
            return Err(invalid(
                "the audit report is CSV with the column keys of `gbdfl audit log --json`: --html, --lang and --headers ru make the expiring and summary reports",
            ));
        }
        KindArg::Audit if args.central => {
            return Err(invalid(
                "--central makes the expiring, lookups and summary reports as CSV; every branch's audit trail is `gbdfl audit log --central` (and `audit verify --central`)",
            ));
        }
        KindArg::Audit => return audit_report(args, ctx, store),
    };
    if let Some(flag) = [
        ("--by", args.by.is_some()),
        ("--iin", args.iin.is_some()),
        ("--action", args.action.is_some()),
    ]
    .iter()
    .find_map(|(f, given)| given.then_some(*f))
    {
        return Err(invalid(format!(
            "{flag} applies to `gbdfl report audit` only"
        )));
    }
    let text = OptionText {
        delimiter: &args.delimiter,
        excel: args.excel,
        full_iin: args.full_iin,
        from: args.from.as_deref(),
        to: args.to.as_deref(),
        within: &args.within,
        as_of: args.as_of.as_deref(),
    };
    let now = ctx.clock.local_now();
    let mut opts = Options::parse(kind, &text, now.date_naive()).map_err(invalid)?;
    opts.threads = gbdfl_core::limits::threads(args.threads, &ctx.env)?;
    opts.format.headers = match args.headers.trim() {
        "keys" => Lang::En,
        "ru" => Lang::Ru,
        h => return Err(invalid(format!("--headers {h:?}: give keys or ru"))),
    };
    if args.html {
        if kind == Kind::Lookups {
            return Err(invalid(
                "--html makes the expiring and summary reports; lookups is CSV only",
            ));
        }
        let lang = match &args.lang {
            Some(l) => Lang::parse(l).map_err(invalid)?,
            None => Lang::from_locale(&|k| (ctx.env)(k)),
        };
        opts.html = Some(HtmlOptions {
            lang,
            price: ctx.settings.price.as_ref().map(|p| p.value.clone()),
            generated_at: ctx.clock.now(),
        });
    } else if args.lang.is_some() {
        return Err(invalid(
            "--lang is for --html; the CSV header takes --headers ru",
        ));
    }
    let dest = args
        .out
        .unwrap_or_else(|| report::default_path(kind, now, args.html));
    if args.central {
        let rows = match (kind, &opts.html) {
            (Kind::Expiring, None) => super::central_report::expiring(ctx, store, &opts, &dest),
            (Kind::Lookups, None) => super::central_report::lookups(ctx, store, &opts, &dest),
            (Kind::Summary, None) => super::central_report::summary(ctx, store, &opts, &dest),
            _ => {
                return Err(invalid(
                    "--central makes the expiring, lookups and summary reports as CSV; every branch's audit trail is `gbdfl audit log --central`",
                ));
            }
        }
        .with_context(|| format!("central {} report to {}", kind.name(), dest.display()))?;
        eprintln!("central {} report: {rows} rows", kind.name());
        if ctx.settings.json {
            return super::json::print(&serde_json::json!({
                "report": kind.name(), "central": true, "path": dest, "rows": rows, "full_iin": opts.full_iin,
            }));
        }
        return out(&format!("{}\n", dest.display()));
    }
    let rows = report::produce(kind, store, &opts, &dest, |n| ctx.release(store, n))
        .with_context(|| format!("{} report to {}", kind.name(), dest.display()))?;
    let iins = if opts.full_iin {
        "FULL IINs"
    } else {
        "IINs masked"
    };
    let noun = if rows == 1 { "row" } else { "rows" };
    eprintln!("{} report: {rows} {noun}, {iins}", kind.name());
    if ctx.settings.json {
        return super::json::print(&serde_json::json!({
            "report": kind.name(), "path": dest, "rows": rows, "full_iin": opts.full_iin,
        }));
    }
    out(&format!("{}\n", dest.display()))
}

/// `gbdfl report audit`: the audit trail as CSV. Its own entry is written
/// before the file appears under its name, so an auditor's copy of the
/// trail is itself on the trail.
fn audit_report(args: Args, ctx: &Ctx, store: &Store) -> anyhow::Result<()> {
    if args.full_iin {
        return Err(invalid(
            "--full-iin: the audit trail holds no IINs (only the start of each one's blind index)",
        ));
    }
    let text = OptionText {
        delimiter: &args.delimiter,
        excel: args.excel,
        full_iin: false,
        from: args.from.as_deref(),
        to: args.to.as_deref(),
        within: &args.within,
        as_of: args.as_of.as_deref(),
    };
    let now = ctx.clock.local_now();
    // The period and format rules of the lookups report.
    let opts = Options::parse(Kind::Lookups, &text, now.date_naive()).map_err(invalid)?;
    let subject = match args.iin.as_deref() {
        Some(s) => {
            let iin = gbdfl_core::iin::Iin::parse_unchecked(s)?;
            ctx.note_subject(store, &iin);
            Some(store.subject_of(&iin))
        }
        None => None,
    };
    let (from, to) = opts.period.bounds();
    let filter = gbdfl_store::AuditFilter {
        from,
        to,
        operator: args.by,
        subject,
        command: args.action,
    };
    let dest = args
        .out
        .unwrap_or_else(|| report::default_path_named("audit", now));
    let made = || -> Result<(report::AtomicFile, u64), report::ReportError> {
        let file = report::AtomicFile::create(&dest)?;
        report::write_audit(file, opts.format, store, &filter)
    };
    let (file, rows) = made().with_context(|| format!("audit report to {}", dest.display()))?;
    // The entry is written before the file appears under its name; if it
    // cannot be, the file is dropped unreleased.
    ctx.release(store, rows)?;
    file.commit()
        .with_context(|| format!("audit report to {}", dest.display()))?;
    let noun = if rows == 1 { "entry" } else { "entries" };
    eprintln!("audit report: {rows} {noun}");
    if ctx.settings.json {
        return super::json::print(&serde_json::json!({
            "report": "audit", "path": dest, "rows": rows,
        }));
    }
    out(&format!("{}\n", dest.display()))
}
