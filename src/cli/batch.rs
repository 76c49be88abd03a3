//! `gbdfl batch FILE.csv`: queue one request per row, send them, and write
//! each row's outcome to a CSV in reports/.

use std::collections::HashMap;
use std::path::PathBuf;

use chrono::{DateTime, Utc};

use super::progress::Progress;
use super::{Ctx, out};
use crate::batch_csv::{self, BadRow};
use crate::client::Client;
use crate::exit::{Exit, ExitCode};
use crate::iin::Iin;
use crate::lookup::SessionId;
use crate::lookup::{self, Asker, FetchRequest, Fetched};
use crate::render;
use crate::report::{self, BatchRow};
use crate::store::{Begin, QueueState, Store};
use crate::sync::{self, ItemEnd};

/// Look up many people from a CSV file: queue every good row, send them N
/// at a time, and write each row's outcome to reports/batch-*.csv.
///
/// The file has a header row naming the columns iin and session_id, and
/// optionally purpose and session_created_at (in any order); UTF-8 with or
/// without BOM; comma or semicolon. Bad rows are reported with their line
/// number and skipped. Rows answered by a fresh cached record make no call.
///
/// Exit codes, the first that applies: 4 the service refused in a way that
/// fails for every request (API key, subscription); 11 rows remain queued
/// (run `gbdfl sync` later); 2 some rows were bad; 14 some requests are in
/// doubt (an earlier call was interrupted and may have been billed: see
/// `gbdfl queue`); 12 some rows' 3-hour session window had ended; 5 some
/// rows got an answer that is not VALID; 0 every row got a VALID record.
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
    let bytes = std::fs::read(&args.file).map_err(|e| {
        Exit::new(
            ExitCode::InvalidInput,
            format!("cannot read {}: {e}", args.file.display()),
        )
    })?;
    let parsed = read(&bytes).map_err(|e| {
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
            format!("{}: {e}{hint}", args.file.display()),
        )
    })?;
    drop(bytes);
    for b in &parsed.bad {
        eprintln!(
            "{}: line {}: {}; skipped",
            args.file.display(),
            b.line,
            crate::render::safe(&b.reason)
        );
    }
    if parsed.rows.is_empty() && parsed.bad.is_empty() {
        return Err(Exit::new(
            ExitCode::InvalidInput,
            format!("{}: no rows after the header", args.file.display()),
        )
        .into());
    }
    // The client is made first: a missing API key stops before anything is queued.
    let client = if args.no_sync {
        None
    } else {
        Some(Client::new(&s.client_config(), s.api_key(&ctx.env)?)?)
    };

    let queued = queue_rows(&parsed.rows, ctx, store)?;
    let to_send = queued
        .iter()
        .filter(|q| matches!(q, Queued::Item(_)))
        .count() as u64;
    eprintln!(
        "{} rows: {} good ({} to send, {} answered from the cache), {} bad.",
        parsed.rows.len() + parsed.bad.len(),
        parsed.rows.len(),
        to_send,
        queued
            .iter()
            .filter(|q| matches!(q, Queued::Cached(_)))
            .count(),
        parsed.bad.len()
    );

    let mut ends: HashMap<String, ItemEnd> = HashMap::new();
    let mut stopped = None;
    if let Some(client) = &client
        && to_send > 0
    {
        super::sync::stop_on_ctrl_c();
        let mut opts = super::sync::options(ctx, args.jobs, false);
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
                progress.item_done(super::sync::failed(end));
            }
        })?;
        progress.finish();
        stopped = report.stopped.clone();
        ctx.note_records(report.calls.len() as u64);
        for end in report.calls {
            ends.insert(end.item.id.clone(), end);
        }
    }
    let waiting: HashMap<String, QueueState> = store
        .queue_items()?
        .into_iter()
        .map(|q| (q.id, q.state))
        .collect();

    let rows = outcomes(
        &parsed.rows,
        &parsed.bad,
        &queued,
        &ends,
        &waiting,
        args.full_iin,
    );
    let dest = args
        .out
        .clone()
        .unwrap_or_else(|| report::default_path_named("batch", chrono::Local::now()));
    report::write_batch(&dest, &rows, parsed.delimiter)?;
    if ctx.settings.json {
        super::json::print(&summary_json(&rows, &dest))?;
    } else {
        out(&summary(&rows))?;
    }
    eprintln!("Each row's outcome: {}", dest.display());

    if let Some(why) = stopped {
        return Err(Exit::new(
            ExitCode::Refused,
            format!(
                "stopped: the service refused a request in a way that fails for every request ({why}). The rows not yet sent stay queued; fix the cause, then run `gbdfl sync`."
            ),
        )
        .into());
    }
    let still_queued = rows.iter().filter(|r| r.outcome == "QUEUED").count();
    if still_queued > 0 {
        return Err(Exit::new(
            ExitCode::Queued,
            format!(
                "{still_queued} row(s) remain queued: run `gbdfl sync` later (each is sent only within its session's 3-hour window)."
            ),
        )
        .into());
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
    let count = |f: &dyn Fn(&BatchRow) -> bool| rows.iter().filter(|r| f(r)).count();
    let in_doubt = count(&|r| r.outcome == "IN_DOUBT");
    if in_doubt > 0 {
        return Err(Exit::new(
            ExitCode::InDoubt,
            format!(
                "{in_doubt} row(s) were not sent: an earlier call for them was interrupted and may have been answered and billed. See `gbdfl queue`; resend with `gbdfl sync --resend-in-doubt` (may be billed twice) or give up with `gbdfl queue drop ID` (see {}).",
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
    let not_valid = count(&|r| !r.outcome.starts_with("VALID"));
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
fn read(bytes: &[u8]) -> Result<Parsed, batch_csv::BatchCsvError> {
    let (good, mut bad) = batch_csv::parse(bytes)?;
    let now = Utc::now();
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
    // A few hundred rows per transaction: one write to disk for each chunk.
    for chunk in rows.chunks(500) {
        let reqs: Vec<(FetchRequest<'_>, _)> = chunk
            .iter()
            .map(|r| {
                let req = FetchRequest {
                    iin: &r.iin,
                    session: &r.session,
                    asker: Asker {
                        operator: &s.operator.value,
                        host: &s.host,
                        purpose: r.purpose.as_deref().or(ctx.purpose.as_deref()),
                    },
                    max_age: s.max_age.value,
                    force: false,
                    audit: Some(ctx.audit_entry()),
                };
                (req, r.session_created_at)
            })
            .collect();
        for (begun, cached) in lookup::enqueue_many(store, &reqs)? {
            queued.push(held(begun, cached));
        }
    }
    Ok(queued)
}

fn outcomes(
    rows: &[Row],
    bad: &[BadRow],
    queued: &[Queued],
    ends: &HashMap<String, ItemEnd>,
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
        };
        out.push(match q {
            Queued::Cached(id) => row("VALID", "cache", id.clone(), "answered from the cache; no call".into()),
            Queued::Held(outcome, why) => row(outcome, "no call", String::new(), why.clone()),
            Queued::Item(item) => match (ends.get(item), waiting.get(item)) {
                (_, Some(QueueState::Expired)) => row(
                    "EXPIRED",
                    "no call",
                    String::new(),
                    "the 3-hour window of the session ended before it could be sent: the subject must go through the checks again".into(),
                ),
                (_, Some(QueueState::InDoubt)) => row(
                    "IN_DOUBT",
                    "paid call",
                    String::new(),
                    format!("interrupted while being sent; see `gbdfl queue`, item {item}"),
                ),
                (end, Some(_)) => row(
                    "QUEUED",
                    match end.map(|e| &e.fetched) {
                        Some(Fetched::Unavailable { .. }) => "no answer",
                        Some(f) if f.called_service() => "paid call",
                        _ => "no call",
                    },
                    end.and_then(|e| e.fetched.id()).map(|i| i.to_string()).unwrap_or_default(),
                    match end.map(|e| &e.fetched) {
                        Some(Fetched::Unavailable { message, .. }) => format!("queued for `gbdfl sync` (queue item {item}); last error: {message}"),
                        Some(other) => format!("queued for `gbdfl sync` (queue item {item}); last answer: {}", other.label()),
                        None => format!("queued for `gbdfl sync` (queue item {item})"),
                    },
                ),
                (Some(end), None) => row(
                    &end.fetched.label(),
                    if end.fetched.called_service() { "paid call" } else { "no call" },
                    end.fetched.id().map(|i| i.to_string()).unwrap_or_default(),
                    describe(&end.fetched),
                ),
                (None, None) => row(
                    "DONE_ELSEWHERE",
                    "no call",
                    String::new(),
                    "answered by another gbdfl process; `gbdfl history` shows it".into(),
                ),
            },
        });
    }
    out.sort_by_key(|r| r.line);
    out
}

fn describe(f: &Fetched) -> String {
    match f {
        Fetched::Answered { response, .. } => {
            if response.status == Some(crate::api::Status::Valid) {
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
/// [`summary`] for `--json`: `{"rows", "outcome_file", "outcomes": [{"outcome", "source", "rows"}]}`.
fn summary_json(rows: &[BatchRow], dest: &std::path::Path) -> serde_json::Value {
    let mut by: std::collections::BTreeMap<(&str, &str), u64> = Default::default();
    for r in rows {
        *by.entry((r.outcome.as_str(), r.source)).or_default() += 1;
    }
    let outcomes: Vec<serde_json::Value> = by
        .into_iter()
        .map(|((o, s), n)| serde_json::json!({ "outcome": o, "source": s, "rows": n }))
        .collect();
    serde_json::json!({ "rows": rows.len(), "outcome_file": dest, "outcomes": outcomes })
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
fn held(begun: Begin, cached: Option<crate::store::LookupId>) -> Queued {
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
