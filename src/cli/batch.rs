//! `gbdfl batch FILE.csv`: queue one request per row, send them, and write
//! each row's outcome to a CSV in reports/.

use std::collections::HashMap;
use std::path::PathBuf;

use chrono::{DateTime, Utc};

use super::progress::Progress;
use super::{Ctx, out};
use crate::exit::{Exit, ExitCode};
use gbdfl_client::Client;
use gbdfl_core::iin::Iin;
use gbdfl_report as report;
use gbdfl_report::BatchRow;
use gbdfl_report::render;
use gbdfl_service::batch_csv::{self, BadRow, Encoding};
use gbdfl_service::lookup::SessionId;
use gbdfl_service::lookup::{self, Asker, FetchRequest, Fetched};
use gbdfl_service::sync::{self, ItemEnd};
use gbdfl_store::{Begin, QueueState, Store};

/// Look up many people from a CSV file: queue every good row, send them N
/// at a time, and write each row's outcome to reports/batch-*.csv.
///
/// The file has a header row naming the columns iin and session_id, and
/// optionally purpose and session_created_at (in any order); UTF-8 with or
/// without BOM (a Windows-1251 file, Excel's "CSV" in Russian, is converted
/// and said so); comma or semicolon. Bad rows are reported with their line
/// number and skipped. Rows answered by a fresh cached record make no call.
/// A row's purpose is its purpose cell, else --purpose; it is recorded with
/// the row's lookup and its audit entry. The outcome file is created before
/// anything is queued or sent.
///
/// Exit codes, the first that applies: 2 when the outcome file cannot be
/// created (nothing queued, no call); 4 when the service refused in a way
/// that fails for every request (API key, subscription); 14 when rows are in
/// doubt (may have been billed; see `gbdfl queue`); 11 when rows remain
/// queued (run `gbdfl sync` later; not with --no-sync, whose queued rows
/// are as asked); 2 when some rows were bad; 12 when rows expired; 5 when
/// rows got an answer that is not VALID; else 0. 13 (after 2, before the
/// others) when the network is set up wrongly (certificate not trusted, proxy
/// refused): nothing more is sent, the queue is as it was.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The CSV file
    pub file: PathBuf,
    /// Requests in flight at once
    #[arg(long, default_value_t = 4, value_name = "N",
          value_parser = clap::value_parser!(u16).range(1..=64))]
    pub jobs: u16,
    /// Where to write the outcome of every row [default: reports/batch-YYYYMMDD-HHMMSS.csv]
    #[arg(long, value_name = "PATH")]
    pub out: Option<PathBuf>,
    /// Full IINs in the outcome file [default: masked, like 950215*****4]
    #[arg(long)]
    pub full_iin: bool,
    /// Only queue the rows; `gbdfl sync` sends them later
    #[arg(long)]
    pub no_sync: bool,
}

/// The calls this run made for one queue item.
#[derive(Debug, Default, Clone, Copy)]
struct Calls {
    made: u64,
    /// Those that count as paid calls ([`gbdfl_store::is_paid_call`]).
    paid: u64,
}

impl Calls {
    /// The outcome file's `source` of a row sent this run: `paid call`
    /// when a call for it counts as paid, `no answer` when it was tried
    /// but never reached the service (nothing billed), else `no call`.
    fn source(self) -> &'static str {
        if self.paid > 0 {
            "paid call"
        } else if self.made > 0 {
            "no answer"
        } else {
            "no call"
        }
    }
}

/// Where each good row stands after queueing.
enum Queued {
    /// Answered from the cache (lookup id).
    Cached(String),
    /// Waiting in the queue under this item id.
    Item(String),
    /// Not sent, and why (outcome, message).
    Held(&'static str, String),
}

pub fn run(args: Args, ctx: &Ctx, store: &Store) -> anyhow::Result<()> {
    let s = &ctx.settings;
    let mut parsed = read_file(&args.file, ctx.clock.now())?;
    settle_rows(&mut parsed, ctx, &args.file)?;
    // The client is made first: a missing API key stops before anything is queued.
    let client = if args.no_sync {
        None
    } else {
        Some(Client::new(&s.client_config(), s.api_key(&ctx.env)?)?.with_clock(ctx.clock.clone()))
    };
    // So is the outcome file: nothing is queued or paid for unless each
    // row's outcome can be written.
    let dest = args
        .out
        .clone()
        .unwrap_or_else(|| report::default_path_named("batch", ctx.clock.local_now()));
    let outcome_file = create_outcome_file(&dest)?;

    let queued = queue_rows(&parsed.rows, ctx, store)?;
    eprintln!("{}", count_line(&parsed, &queued, args.no_sync));
    let sent = match &client {
        Some(client) => send(&queued, args.jobs, client, ctx, store)?,
        None => Sent::default(),
    };
    let waiting: HashMap<String, QueueState> = store
        .queue_items()?
        .into_iter()
        .map(|q| (q.id, q.state))
        .collect();

    let rows = outcomes(
        &parsed.rows,
        &parsed.bad,
        &queued,
        &sent,
        &waiting,
        args.full_iin,
    );
    // The outcome file names the rows' people: its entry comes first.
    ctx.release(store, rows.len() as u64)?;
    report::write_batch_to(outcome_file, &rows, parsed.delimiter)?;
    if ctx.settings.json {
        super::json::print(&summary_json(&rows, &dest))?;
    } else {
        out(&summary(&rows))?;
    }
    eprintln!("Each row's outcome: {}", dest.display());
    if let Some(why) = sent.network {
        return Err(Exit::new(
            ExitCode::NetworkConfig,
            super::sync::network_stop(&why, "run `gbdfl sync` to send the rows still queued"),
        )
        .into());
    }
    exit_for(&rows, &parsed, sent.stopped, args.no_sync, &dest)
}

/// Reads and parses the file, saying which encoding it was read in when
/// not UTF-8; a file that cannot be read or parsed is refused.
fn read_file(file: &std::path::Path, now: chrono::DateTime<chrono::Utc>) -> anyhow::Result<Parsed> {
    let bytes = std::fs::read(file).map_err(|e| {
        Exit::new(
            ExitCode::InvalidInput,
            format!("cannot read {}: {e}", file.display()),
        )
    })?;
    let (bytes, encoding) = batch_csv::decode(&bytes);
    match encoding {
        Encoding::Utf8 => {}
        Encoding::Windows1251 => eprintln!(
            "{}: not UTF-8; read as Windows-1251 (cp1251, what Excel saves as \"CSV\" in a Russian locale). The outcome file is UTF-8.",
            file.display()
        ),
        Encoding::Unknown => eprintln!(
            "{}: not UTF-8 text, nor Windows-1251; rows that are not UTF-8 are skipped: {}.",
            file.display(),
            batch_csv::SAVE_AS_UTF8
        ),
    }
    let parsed = read(&bytes, now).map_err(|e| {
        // The first row is never echoed (it may be a person's), but say
        // when it looks like data rather than a header.
        let first = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(&bytes);
        let digits = first.iter().take_while(|b| b.is_ascii_digit()).count();
        let hint = if matches!(e, batch_csv::BatchCsvError::MissingColumn(_)) && digits >= 6 {
            " (the first row looks like data: add a header row above it)"
        } else {
            ""
        };
        Exit::new(
            ExitCode::InvalidInput,
            format!("{}: {e}{hint}", file.display()),
        )
    })?;
    Ok(parsed)
}

/// Gives each row its purpose, applies `require_purpose`, tells the bad
/// rows, and refuses a file with no rows at all.
fn settle_rows(parsed: &mut Parsed, ctx: &Ctx, file: &std::path::Path) -> anyhow::Result<()> {
    // One purpose per row: its own cell, else --purpose. It is the purpose
    // of the row's lookup, queue item and audit entry alike.
    for r in &mut parsed.rows {
        if r.purpose.is_none() {
            r.purpose.clone_from(&ctx.purpose);
        }
    }
    if ctx.settings.require_purpose.value {
        require_purposes(parsed, ctx, file)?;
    }
    for b in &parsed.bad {
        eprintln!(
            "{}: line {}: {}; skipped",
            file.display(),
            b.line,
            gbdfl_report::render::safe(&b.reason)
        );
    }
    if parsed.rows.is_empty() && parsed.bad.is_empty() {
        return Err(Exit::new(
            ExitCode::InvalidInput,
            format!("{}: no rows after the header", file.display()),
        )
        .into());
    }
    Ok(())
}

/// What sending the file's queued rows came to.
#[derive(Default)]
struct Sent {
    /// The last end of each queue item sent, by item id.
    ends: HashMap<String, ItemEnd>,
    /// The calls made for each queue item, by item id.
    calls: HashMap<String, Calls>,
    /// Why the service refused every request, when it did.
    stopped: Option<String>,
    /// Why the network set-up stopped the run, when it did.
    network: Option<String>,
}

/// Sends the file's own queued rows, `jobs` at a time, with a progress bar;
/// nothing when none waits.
fn send(
    queued: &[Queued],
    jobs: u16,
    client: &Client,
    ctx: &Ctx,
    store: &Store,
) -> anyhow::Result<Sent> {
    let mut sent = Sent::default();
    let to_send = queued
        .iter()
        .filter(|q| matches!(q, Queued::Item(_)))
        .count() as u64;
    if to_send == 0 {
        return Ok(sent);
    }
    super::sync::stop_on_ctrl_c();
    let mut opts = super::sync::options(ctx, jobs, false);
    // Each call's audit entry takes its queue item's purpose: the row's,
    // as its lookup does.
    opts.audit.purpose = None;
    // The file's own rows only; the rest of the queue is `sync`'s.
    opts.only = Some(
        queued
            .iter()
            .filter_map(|q| match q {
                Queued::Item(id) => Some(id.clone()),
                _ => None,
            })
            .collect(),
    );
    let progress = Progress::new("batch", to_send);
    let report = sync::run(store, client, &opts, &|end| {
        if end.last_in_run {
            progress.item_ended(end);
        }
    })?;
    progress.finish();
    sent.stopped = report.stopped.clone();
    sent.network = report.network.clone();
    ctx.note_records(report.calls.len() as u64);
    for end in report.calls {
        let c = sent.calls.entry(end.item.id.clone()).or_default();
        if let Some(id) = end.fetched.id().filter(|_| end.fetched.called_service()) {
            c.made += 1;
            // Paid as the stored lookup counts, like `stats` and the
            // reports; a record no longer there counts as paid.
            if store
                .lookup(&id.to_string())?
                .is_none_or(|l| l.is_paid_call())
            {
                c.paid += 1;
            }
        }
        sent.ends.insert(end.item.id.clone(), end);
    }
    Ok(sent)
}

/// With `require_purpose = true`: rows with no purpose (no cell, no
/// --purpose) are bad rows; a file none of whose rows has one is refused.
fn require_purposes(parsed: &mut Parsed, ctx: &Ctx, file: &std::path::Path) -> anyhow::Result<()> {
    let origin = &ctx.settings.require_purpose.origin;
    let (with, without): (Vec<Row>, Vec<Row>) = std::mem::take(&mut parsed.rows)
        .into_iter()
        .partition(|r| r.purpose.is_some());
    if with.is_empty() && !without.is_empty() {
        return Err(Exit::new(
            ExitCode::InvalidInput,
            format!(
                "{}: no row has a purpose, and this installation requires one for every lookup (require_purpose = true, {origin}): fill the file's purpose column, or pass --purpose \"why you need it\" for the rows without one. Nothing was queued or sent.",
                file.display()
            ),
        )
        .into());
    }
    parsed.rows = with;
    for r in without {
        parsed.bad.push(BadRow {
            line: r.line,
            reason: format!(
                "{}: no purpose, and this installation requires one (require_purpose = true, {origin}): fill its purpose cell, or pass --purpose",
                r.iin.masked()
            ),
        });
    }
    parsed.bad.sort_by_key(|b| b.line);
    Ok(())
}

/// The outcome file's temporary file, made before anything is queued; an
/// error says what to do and that nothing was sent.
fn create_outcome_file(dest: &std::path::Path) -> anyhow::Result<report::AtomicFile> {
    let refuse = |why: String| {
        Exit::new(
            ExitCode::InvalidInput,
            format!(
                "cannot write the outcome file {}: {why}. Nothing was queued or sent: run batch in a folder where reports/ can be written, or pass --out PATH.",
                dest.display()
            ),
        )
    };
    if dest.is_dir() {
        return Err(refuse("it is a folder".into()).into());
    }
    report::AtomicFile::create(dest).map_err(|e| match e {
        report::ReportError::Io { path, source } => {
            refuse(format!("{}: {source}", path.display())).into()
        }
        other => anyhow::Error::from(refuse(other.to_string())),
    })
}

/// "15 rows: 6 bad, 2 answered from the cache, 5 to send, 1 expired, ...":
/// every row in exactly one count, and the counts add up to the rows.
fn count_line(parsed: &Parsed, queued: &[Queued], no_sync: bool) -> String {
    let count = |f: &dyn Fn(&Queued) -> bool| queued.iter().filter(|q| f(q)).count();
    let cached = count(&|q| matches!(q, Queued::Cached(_)));
    let to_send = count(&|q| matches!(q, Queued::Item(_)));
    let held = |o: &str| count(&|q| matches!(q, Queued::Held(h, _) if *h == o));
    let mut parts = vec![
        format!("{} bad", parsed.bad.len()),
        format!("{cached} answered from the cache"),
        if no_sync {
            format!("{to_send} to queue for `gbdfl sync`")
        } else {
            format!("{to_send} to send")
        },
    ];
    for (outcome, what) in [
        ("EXPIRED", "expired (not sent)"),
        ("IN_DOUBT", "in doubt from an earlier call (not sent)"),
        ("SENDING", "being sent by another gbdfl process"),
    ] {
        let n = held(outcome);
        if n > 0 {
            parts.push(format!("{n} {what}"));
        }
    }
    format!(
        "{} rows: {}.",
        parsed.rows.len() + parsed.bad.len(),
        parts.join(", ")
    )
}

/// The exit code and message once the outcome file is written.
fn exit_for(
    rows: &[BatchRow],
    parsed: &Parsed,
    stopped: Option<String>,
    no_sync: bool,
    dest: &std::path::Path,
) -> anyhow::Result<()> {
    if let Some(why) = stopped {
        return Err(Exit::new(
            ExitCode::Refused,
            format!(
                "stopped: the service refused a request in a way that fails for every request ({why}). The rows not yet sent stay queued; fix the cause, then run `gbdfl sync`."
            ),
        )
        .into());
    }
    let count = |f: &dyn Fn(&BatchRow) -> bool| rows.iter().filter(|r| f(r)).count();
    let in_doubt = count(&|r| r.outcome == "IN_DOUBT");
    if in_doubt > 0 {
        return Err(Exit::new(
            ExitCode::InDoubt,
            format!(
                "{in_doubt} row(s) are in doubt: a call for them may have reached the service and been billed, but no answer was recorded. Check with `gbdfl queue`; send them again with `gbdfl sync --resend-in-doubt` (they may be billed twice), or give them up with `gbdfl queue drop HANDLE` (see {}).",
                dest.display()
            ),
        )
        .into());
    }
    let still_queued = count(&|r| matches!(r.outcome.as_str(), "QUEUED" | "SENDING"));
    if still_queued > 0 && !no_sync {
        return Err(Exit::new(
            ExitCode::Queued,
            format!(
                "{still_queued} row(s) remain queued: run `gbdfl sync` later (each is sent only within its session's 3-hour window)."
            ),
        )
        .into());
    }
    if still_queued > 0 {
        eprintln!(
            "{still_queued} row(s) queued, as --no-sync asks: `gbdfl sync` sends them (each only within its session's 3-hour window)."
        );
    }
    if !parsed.bad.is_empty() {
        return Err(Exit::new(
            ExitCode::InvalidInput,
            format!(
                "{} bad row(s) were skipped (listed above and in {}): correct them and run batch on those rows again.",
                parsed.bad.len(),
                dest.display()
            ),
        )
        .into());
    }
    let expired = count(&|r| r.outcome == "EXPIRED");
    if expired > 0 {
        return Err(Exit::new(
            ExitCode::Expired,
            format!(
                "{expired} row(s) were not sent: the 3-hour window of their session had ended. Those subjects must go through the verification checks again (see {}).",
                dest.display()
            ),
        )
        .into());
    }
    let not_valid = count(&|r| {
        !r.outcome.starts_with("VALID") && !matches!(r.outcome.as_str(), "QUEUED" | "SENDING")
    });
    if not_valid > 0 {
        return Err(Exit::new(
            ExitCode::NotValid,
            format!(
                "{not_valid} row(s) did not get a VALID record: each row's outcome and what to do is in {}.",
                dest.display()
            ),
        )
        .into());
    }
    Ok(())
}

/// A good row, ready to queue.
struct Row {
    line: u64,
    iin: Iin,
    session: SessionId,
    purpose: Option<String>,
    session_created_at: Option<DateTime<Utc>>,
}

/// What the file holds.
struct Parsed {
    rows: Vec<Row>,
    bad: Vec<BadRow>,
    delimiter: u8,
}

/// Reads the file with [`batch_csv::parse`] and turns its rows into typed
/// requests; a session time in the future is a bad row too.
fn read(bytes: &[u8], now: DateTime<Utc>) -> Result<Parsed, batch_csv::BatchCsvError> {
    let (good, mut bad) = batch_csv::parse(bytes)?;
    let mut rows = Vec::with_capacity(good.len());
    for r in good {
        let (Ok(iin), Ok(session)) = (Iin::parse(&r.iin), SessionId::parse(&r.session_id)) else {
            continue; // checked by the reader
        };
        let created = r
            .session_created_at
            .as_deref()
            .and_then(|t| lookup::parse_session_time(t).ok());
        if created.is_some_and(|t| t > now + chrono::TimeDelta::minutes(5)) {
            bad.push(BadRow {
                line: r.line,
                reason: format!(
                    "{}: session_created_at is in the future: give the time the face2face session was created",
                    iin.masked()
                ),
            });
            continue;
        }
        rows.push(Row {
            line: r.line,
            iin,
            session,
            purpose: r.purpose,
            session_created_at: created,
        });
    }
    bad.sort_by_key(|b| b.line);
    let body = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    Ok(Parsed {
        rows,
        bad,
        delimiter: batch_csv::delimiter(body),
    })
}

/// Queues every good row (or answers it from the cache); makes no call.
fn queue_rows(rows: &[Row], ctx: &Ctx, store: &Store) -> anyhow::Result<Vec<Queued>> {
    let s = &ctx.settings;
    let mut queued = Vec::with_capacity(rows.len());
    let mut org = super::org::CentralCache::of(ctx)?;
    // A few hundred rows per transaction: one write to disk for each chunk.
    for chunk in rows.chunks(500) {
        let reqs: Vec<(FetchRequest<'_>, _)> = chunk
            .iter()
            .map(|r| {
                // The row's purpose (its cell, else --purpose) in both
                // the lookup and its audit entry.
                let mut audit = ctx.audit_entry();
                audit.purpose.clone_from(&r.purpose);
                let req = FetchRequest {
                    iin: &r.iin,
                    session: &r.session,
                    asker: Asker {
                        operator: &s.operator.value,
                        host: &s.host,
                        purpose: r.purpose.as_deref(),
                    },
                    max_age: s.max_age.value,
                    force: false,
                    audit: Some(audit),
                };
                (req, r.session_created_at)
            })
            .collect();
        // Another branch's fresh record answers a row before it is queued.
        let mut from_org: Vec<Option<String>> = vec![None; reqs.len()];
        if let Some(cache) = org.as_mut() {
            for (i, (req, _)) in reqs.iter().enumerate() {
                if let Some((attempt, _)) = super::org::try_fetch_with(cache, ctx, store, req)? {
                    from_org[i] = attempt.fetched.id().map(|id| id.to_string());
                }
            }
        }
        let rest: Vec<(FetchRequest<'_>, _)> = reqs
            .into_iter()
            .zip(&from_org)
            .filter(|(_, o)| o.is_none())
            .map(|(r, _)| r)
            .collect();
        let mut begun = lookup::enqueue_many(store, &rest)?.into_iter();
        for o in from_org {
            match o {
                Some(id) => queued.push(Queued::Cached(id)),
                None => {
                    if let Some((b, cached)) = begun.next() {
                        queued.push(held(b, cached));
                    }
                }
            }
        }
    }
    Ok(queued)
}

/// Each row's line of the outcome file, bad rows included, in file order.
fn outcomes(
    rows: &[Row],
    bad: &[BadRow],
    queued: &[Queued],
    sent: &Sent,
    waiting: &HashMap<String, QueueState>,
    full_iin: bool,
) -> Vec<BatchRow> {
    let mut out: Vec<BatchRow> = bad
        .iter()
        .map(|b| BatchRow {
            line: b.line,
            iin: String::new(),
            outcome: "BAD_ROW".into(),
            source: "no call",
            lookup_id: String::new(),
            message: b.reason.clone(),
            paid_calls: 0,
        })
        .collect();
    for (r, q) in rows.iter().zip(queued) {
        let iin = if full_iin {
            r.iin.as_str().to_owned()
        } else {
            r.iin.masked()
        };
        let row = |outcome: &str, source, lookup_id: String, message: String| BatchRow {
            line: r.line,
            iin: iin.clone(),
            outcome: outcome.to_owned(),
            source,
            lookup_id,
            message,
            paid_calls: 0,
        };
        out.push(match q {
            Queued::Cached(id) => row(
                "VALID",
                "cache",
                id.clone(),
                "answered from the cache; no call".into(),
            ),
            Queued::Held(outcome, why) => row(outcome, "no call", String::new(), why.clone()),
            Queued::Item(item) => {
                // Every row sent this run: its source and paid calls from
                // the calls made for it, by the one rule of paid calls.
                let made = sent.calls.get(item).copied().unwrap_or_default();
                let (outcome, lookup_id, message) =
                    item_outcome(item, sent.ends.get(item), waiting.get(item));
                BatchRow {
                    paid_calls: made.paid,
                    ..row(&outcome, made.source(), lookup_id, message)
                }
            }
        });
    }
    out.sort_by_key(|r| r.line);
    out
}

/// A queued row's outcome, lookup id and message: from how its queue item
/// stands now, else from how its last call this run ended.
fn item_outcome(
    item: &str,
    end: Option<&ItemEnd>,
    state: Option<&QueueState>,
) -> (String, String, String) {
    match (end, state) {
        (_, Some(QueueState::Expired)) => (
            "EXPIRED".into(),
            String::new(),
            "the 3-hour window of the session ended before it could be sent: the subject must go through the checks again".into(),
        ),
        (_, Some(QueueState::InDoubt)) => (
            "IN_DOUBT".into(),
            String::new(),
            format!("a call may have reached the service and been billed, but no answer was recorded; see `gbdfl queue`, item {item}"),
        ),
        (end, Some(_)) => (
            "QUEUED".into(),
            end.and_then(|e| e.fetched.id()).map(|i| i.to_string()).unwrap_or_default(),
            match end.map(|e| &e.fetched) {
                Some(Fetched::Unavailable { message, .. }) => format!("queued for `gbdfl sync` (queue item {item}); last error: {message}"),
                Some(other) => format!("queued for `gbdfl sync` (queue item {item}); last answer: {}", other.label()),
                None => format!("queued for `gbdfl sync` (queue item {item})"),
            },
        ),
        (Some(end), None) => (
            end.fetched.label(),
            end.fetched.id().map(|i| i.to_string()).unwrap_or_default(),
            describe(&end.fetched),
        ),
        (None, None) => (
            "DONE_ELSEWHERE".into(),
            String::new(),
            "answered by another gbdfl process; `gbdfl history` shows it".into(),
        ),
    }
}

fn describe(f: &Fetched) -> String {
    match f {
        Fetched::Answered { response, .. } => {
            if response.status == Some(gbdfl_core::api::Status::Valid) {
                "stored".into()
            } else {
                lookup::status_advice(response).to_owned()
            }
        }
        Fetched::Refused {
            http_status,
            message,
            ..
        } => format!(
            "HTTP {http_status} {message}: {}",
            lookup::refusal_advice(*http_status, message)
        ),
        Fetched::Garbled { reason, .. } => format!("the answer could not be read: {reason}"),
        Fetched::Unavailable { message, .. } => message.clone(),
        other => other.label(),
    }
}

/// Rows per outcome, as a table.
/// [`summary`] for `--json`: `{"rows", "outcome_file", "paid_calls", "outcomes": [{"outcome", "source", "rows"}]}`.
fn summary_json(rows: &[BatchRow], dest: &std::path::Path) -> serde_json::Value {
    let mut by: std::collections::BTreeMap<(&str, &str), u64> = Default::default();
    for r in rows {
        *by.entry((r.outcome.as_str(), r.source)).or_default() += 1;
    }
    let outcomes: Vec<serde_json::Value> = by
        .into_iter()
        .map(|((o, s), n)| serde_json::json!({ "outcome": o, "source": s, "rows": n }))
        .collect();
    let paid_calls: u64 = rows.iter().map(|r| r.paid_calls).sum();
    serde_json::json!({ "rows": rows.len(), "outcome_file": dest, "paid_calls": paid_calls, "outcomes": outcomes })
}

fn summary(rows: &[BatchRow]) -> String {
    let mut by: std::collections::BTreeMap<(&str, &str), u64> = Default::default();
    for r in rows {
        *by.entry((r.outcome.as_str(), r.source)).or_default() += 1;
    }
    let mut cells: Vec<Vec<String>> = by
        .into_iter()
        .map(|((o, s), n)| vec![o.to_owned(), s.to_owned(), n.to_string()])
        .collect();
    cells.push(vec!["TOTAL".into(), String::new(), rows.len().to_string()]);
    render::columns(&["OUTCOME", "SOURCE", "ROWS"], &cells)
}

/// Where a row stands once queued.
fn held(begun: Begin, cached: Option<gbdfl_store::LookupId>) -> Queued {
    match begun {
        Begin::Fresh(_) => Queued::Cached(cached.map(|id| id.to_string()).unwrap_or_default()),
        Begin::Queued(item) | Begin::Claimed(item) => Queued::Item(item.id),
        Begin::Busy(_) => Queued::Held(
            "SENDING",
            "another gbdfl process is sending this request now; `gbdfl show` it later".into(),
        ),
        Begin::InDoubt(item) => Queued::Held(
            "IN_DOUBT",
            format!(
                "an earlier call was interrupted and may have been billed: see `gbdfl queue`, item {}",
                item.id
            ),
        ),
        Begin::Expired(_) => Queued::Held(
            "EXPIRED",
            "the 3-hour window of the session has ended: the subject must go through the checks again".into(),
        ),
    }
}
