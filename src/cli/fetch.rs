//! `gbdfl fetch`: the paid call, cache first.

use std::time::Duration;

use super::{Ctx, out};
use crate::exit::{Exit, ExitCode};
use gbdfl_client::{Client, Delivery};
use gbdfl_core::iin::Iin;
use gbdfl_core::limits;
use gbdfl_report::render;
use gbdfl_service::lookup::{self, Asker, Attempt, FetchRequest, Fetched, Next, SessionId};
use gbdfl_store::Store;

/// Fetch a person's GBDFL record (a paid call), unless a fresh VALID record is cached.
///
/// The API key comes from GBDFL_API_KEY or `api_key_file` in the config.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The subject's IIN (12 digits), or `-` to read the IIN and the session
    /// id from standard input (one line: IIN, a space, session id), so that
    /// other users cannot see them in the process list
    pub iin: String,
    /// The face2face backend session id (a UUID); not needed with `-`
    #[arg(long, value_name = "UUID")]
    pub session: Option<String>,
    /// Use a cached VALID record younger than this instead of calling [config: max_age] [default: 30d]
    #[arg(long, value_name = "DUR")]
    pub max_age: Option<String>,
    /// Call the service even if a fresh record is cached, or an earlier call
    /// of this request was interrupted (it may then be billed twice)
    #[arg(long)]
    pub force: bool,
    /// Accept an IIN that fails the published checks (recorded with the lookup)
    #[arg(long)]
    pub skip_iin_check: bool,
    /// When the face2face session was created (e.g. "2026-11-28 09:15", local
    /// time); the request is never sent more than 3 hours after it [default:
    /// now, so the deadline is 3 hours from now]
    #[arg(long, value_name = "TIME")]
    pub session_created_at: Option<String>,
}

/// The most read from standard input for `fetch -`: an IIN and a session id
/// are some 50 bytes.
const STDIN_LIMIT: u64 = 4096;

/// The IIN and session id: from the arguments, or with `-` from standard
/// input (the session id there unless `--session` gives it).
fn subject(args: &Args) -> anyhow::Result<(zeroize::Zeroizing<String>, String)> {
    use std::io::{BufRead as _, IsTerminal as _, Read as _};
    let invalid = |m: String| anyhow::Error::from(Exit::new(ExitCode::InvalidInput, m));
    if args.iin != "-" {
        let session = args.session.clone().ok_or_else(|| {
            invalid("--session UUID is required (or pass `-` instead of the IIN and give both on standard input)".into())
        })?;
        return Ok((zeroize::Zeroizing::new(args.iin.clone()), session));
    }
    let stdin = std::io::stdin();
    let terminal = stdin.is_terminal();
    if terminal {
        eprint!(
            "{}: ",
            if args.session.is_some() {
                "IIN"
            } else {
                "IIN and session id, a space between"
            }
        );
    }
    // On a terminal the line typed is the answer; from a pipe, all of it.
    let mut text = zeroize::Zeroizing::new(String::new());
    let mut input = stdin.lock().take(STDIN_LIMIT);
    match terminal {
        true => input.read_line(&mut text).map(drop),
        false => input.read_to_string(&mut text).map(drop),
    }
    .map_err(|e| invalid(format!("reading the IIN from standard input: {e}")))?;
    let words: Vec<&str> = text.split_whitespace().collect();
    match (words.as_slice(), &args.session) {
        ([iin], Some(session)) => Ok((zeroize::Zeroizing::new((*iin).to_owned()), session.clone())),
        ([iin, session], None) => Ok((
            zeroize::Zeroizing::new((*iin).to_owned()),
            (*session).to_owned(),
        )),
        (_, session) => Err(invalid(format!(
            "fetch -: standard input holds {} word{}; give {}",
            words.len(),
            if words.len() == 1 { "" } else { "s" },
            if session.is_some() {
                "the IIN alone (the session id is given with --session)"
            } else {
                "the IIN and the session id on one line, e.g. `950215300016 0f8e...`"
            }
        ))),
    }
}

pub fn run(args: Args, ctx: &Ctx, store: &Store) -> anyhow::Result<()> {
    let s = &ctx.settings;
    let (iin_text, session_text) = subject(&args)?;
    let iin = super::parse_iin(&iin_text, args.skip_iin_check, ctx.clock.today())?;
    let session = SessionId::parse(&session_text)
        .map_err(|e| Exit::new(ExitCode::InvalidInput, e.to_string()))?;
    let max_age: Duration = match &args.max_age {
        Some(m) => limits::parse_duration("--max-age", m, limits::MAX_AGE)?,
        None => s.max_age.value,
    };
    let session_created_at = args
        .session_created_at
        .as_deref()
        .map(|t| super::parse_session_created_at("--session-created-at", t, ctx.clock.now()))
        .transpose()?;
    let client =
        Client::new(&s.client_config(), s.api_key(&ctx.env)?)?.with_clock(ctx.clock.clone());
    let req = FetchRequest {
        iin: &iin,
        session: &session,
        asker: Asker {
            operator: &s.operator.value,
            host: &s.host,
            purpose: ctx.purpose.as_deref(),
        },
        max_age,
        force: args.force,
        audit: Some(ctx.audit_entry()),
    };
    ctx.note_subject(store, &iin);
    // Another branch's fresh record, before any paid call.
    if let Some((attempt, branch)) = super::org::try_fetch(ctx, store, &req)? {
        ctx.mark_audited();
        eprintln!(
            "Answered from the organisation cache (a record branch {branch} fetched); no paid call was made."
        );
        return report(&attempt, &iin, ctx, store);
    }
    let attempt = lookup::fetch(store, &client, &req, &s.backoff(), session_created_at)?;
    if attempt.fetched.id().is_some() || matches!(attempt.fetched, Fetched::NetworkConfig { .. }) {
        ctx.mark_audited();
    }
    report(&attempt, &iin, ctx, store)
}

/// The end of a message for a request that stays queued.
fn queued_note(next: &Next) -> String {
    match next {
        Next::Queued { deadline, .. } => format!(
            " The request is queued: `gbdfl sync` sends it (before {}, when the 3-hour window of the session ends).",
            render::local_time(*deadline)
        ),
        Next::Stop { .. } => {
            " The request stays queued: fix the cause, then run `gbdfl sync`.".to_owned()
        }
        Next::InDoubt { item_id } => format!(
            " The request is IN_DOUBT (queue item {item_id}) and is not sent again on its own: `gbdfl sync --resend-in-doubt` sends it again (it may be billed twice), `gbdfl queue drop {item_id}` gives it up."
        ),
        Next::Done => String::new(),
    }
}

/// Tells the operator how the fetch ended; an error carries the exit code.
pub fn report(attempt: &Attempt, iin: &Iin, ctx: &Ctx, store: &Store) -> anyhow::Result<()> {
    let json = ctx.settings.json;
    let fetched = &attempt.fetched;
    let today = ctx.clock.today();
    match fetched {
        Fetched::Cached { from, .. } => {
            let (from, body) = (&from.lookup, &from.body);
            let age = ctx
                .clock
                .now()
                .signed_duration_since(from.answered_at.unwrap_or(from.requested_at));
            eprintln!(
                "Answered from the cache: VALID record fetched {} ago by {}; no paid call was made (use --force to call anyway).",
                humantime::format_duration(Duration::from_secs(age.num_seconds().max(0) as u64)),
                render::safe(&from.operator)
            );
            print_record(iin, body, from, json, today)
        }
        Fetched::Answered { id, response, body } => {
            let status = response
                .status
                .as_ref()
                .map(|s| s.as_str())
                .unwrap_or("(none)");
            if status == "VALID" {
                eprintln!("Fetched a VALID record (paid call, lookup {id}).");
                let Some(lookup) = store.lookup(&id.to_string())? else {
                    anyhow::bail!("lookup {id} was recorded but cannot be read back");
                };
                return print_record(iin, body, &lookup, json, today);
            }
            if json {
                out(&super::json::raw(body))?;
            }
            Err(failure(attempt, iin).into())
        }
        _ => Err(failure(attempt, iin).into()),
    }
}

/// Why a fetch got no VALID record, what happens to the request, and what
/// to do; its exit code with it.
///
/// Long on purpose: one arm per way a fetch ends, each with its message, a
/// table that reads best whole.
fn failure(attempt: &Attempt, iin: &Iin) -> Exit {
    let fetched = &attempt.fetched;
    let queued = queued_note(&attempt.next);
    match fetched {
        Fetched::Cached { .. } => unreachable!("a cached answer is shown, not refused"),
        Fetched::Answered { id, response, .. } => {
            let status = response
                .status
                .as_ref()
                .map(|s| s.as_str())
                .unwrap_or("(none)");
            let reason = response
                .failure_reason
                .as_ref()
                .map(|f| format!(" ({f})"))
                .unwrap_or_default();
            let code = fetched.exit_code();
            Exit::new(
                code,
                format!(
                    "the service answered {status}{reason} for {}: {}. Recorded as lookup {id}.{queued}",
                    iin.masked(),
                    lookup::status_advice(response)
                ),
            )
        }
        Fetched::Refused {
            id,
            http_status,
            message,
        } => Exit::new(
            ExitCode::Refused,
            format!(
                "the service refused the request: HTTP {http_status} {message}: {}. Recorded as lookup {id}.{queued}",
                lookup::refusal_advice(*http_status, message)
            ),
        ),
        Fetched::Unavailable {
            id,
            message,
            delivery: Delivery::MaybeBilled,
            ..
        } => Exit::new(
            ExitCode::InDoubt,
            format!(
                "no usable answer from the service: {message}. The request was sent, so the service may have answered and billed the call; it is recorded as a paid call (lookup {id}).{queued}"
            ),
        ),
        Fetched::Unavailable {
            id,
            message,
            retry_after,
            ..
        } => Exit::new(
            ExitCode::Queued,
            format!(
                "no answer from the service: {message}{}. No usable answer was received (recorded as lookup {id}).{queued}",
                retry_after
                    .map(|d| format!(" (it asks to retry after {}s)", d.as_secs()))
                    .unwrap_or_default()
            ),
        ),
        Fetched::Garbled { id, reason } => Exit::new(
            ExitCode::InDoubt,
            format!(
                "the service's answer could not be read: {reason}. The call was billed; the answer was stored as received (lookup {id}) for inspection; tell biometric.kz support if it persists.{queued}"
            ),
        ),
        Fetched::Busy { item } => Exit::new(
            ExitCode::Queued,
            format!(
                "another gbdfl process (a sync on {}) is sending this request for {} right now; no second call was made. Run `gbdfl show {}` in a minute.",
                item.host,
                iin.masked(),
                iin.masked()
            ),
        ),
        Fetched::InDoubt { item } => Exit::new(
            ExitCode::InDoubt,
            format!(
                "an earlier call for {} with this session (queue item {}) left no usable answer (gbdfl stopped mid-call, the answer did not come in time, or it could not be read): the service may have answered and billed it, so no call was made now. To ask again anyway (it may be billed twice), add --force (or run `gbdfl sync --resend-in-doubt`); to give it up, run `gbdfl queue drop {}`.",
                iin.masked(),
                item.id,
                item.id
            ),
        ),
        Fetched::NetworkConfig { message, .. } => Exit::new(
            ExitCode::NetworkConfig,
            match &attempt.next {
                Next::Done => format!(
                    "{message}. Nothing was sent and nothing queued: fix the setting, check it with `gbdfl doctor`, then run this fetch again."
                ),
                _ => format!(
                    "{message}. Nothing was sent; the request stays queued as it was: fix the setting, check it with `gbdfl doctor`, then run `gbdfl sync`."
                ),
            },
        ),
        Fetched::Expired { item } => Exit::new(
            ExitCode::Expired,
            format!(
                "the request for {} cannot be sent: the 3-hour window of its session ended at {}, and the service would refuse it (and bill the call). The subject must go through the verification checks again, with a new session.",
                iin.masked(),
                render::local_time(item.deadline)
            ),
        ),
    }
}

fn print_record(
    iin: &Iin,
    body: &[u8],
    lookup: &gbdfl_store::Lookup,
    json: bool,
    today: chrono::NaiveDate,
) -> anyhow::Result<()> {
    if json {
        return out(&super::json::raw(body));
    }
    match gbdfl_core::api::parse_response(body).ok() {
        Some(resp) => out(&render::person(iin.as_str(), &resp, lookup, today)),
        None => Err(Exit::new(
            ExitCode::KeyOrIntegrity,
            format!(
                "lookup {}: the stored answer is not readable JSON",
                lookup.id
            ),
        )
        .into()),
    }
}
