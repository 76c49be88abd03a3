//! `gbdfl sync`: send the queued requests, soonest deadline first.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use super::progress::Progress;
use super::{Ctx, out};
use crate::exit::{Exit, ExitCode};
use gbdfl_client::Client;
use gbdfl_report::render;
use gbdfl_service::lookup::{Fetched, Next};
use gbdfl_service::sync::{self, ItemEnd, Options};
use gbdfl_store::{QueueState, Store};

/// Send the queued requests (those `fetch` or `batch` could not send, or
/// that got PENDING), N at a time, soonest deadline first.
///
/// Retries with exponential backoff and jitter (retry_base, retry_cap,
/// retry_attempts in the config), honours Retry-After (at most an hour),
/// and never sends a request past its deadline. Only requests that provably
/// never reached the service are sent again on their own; one that may have
/// been billed becomes IN_DOUBT. Exits 0 when the queue is empty, 11 when
/// requests remain queued, 14 when requests are in doubt, 4 when the
/// service refuses every request (API key, subscription).
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Requests in flight at once
    #[arg(long, default_value_t = 4, value_name = "N",
          value_parser = clap::value_parser!(u16).range(1..=64))]
    pub jobs: u16,
    /// Also send requests in doubt (an earlier call timed out after sending,
    /// lost its connection, got an unreadable answer, or gbdfl was killed
    /// mid-call), once each: the service may already have answered and billed them
    #[arg(long)]
    pub resend_in_doubt: bool,
}

/// Catches Ctrl-C: the first lets calls in flight finish and be recorded,
/// the second ends the process at once.
pub fn stop_on_ctrl_c() {
    let _ = ctrlc::set_handler(|| {
        if sync::STOP.swap(true, std::sync::atomic::Ordering::SeqCst) {
            std::process::exit(130);
        }
        eprintln!(
            "\nStopping: waiting for the calls in flight to finish and be recorded (Ctrl-C again to quit now; those calls would then be in doubt)."
        );
    });
}

/// The sync engine's options from the settings.
pub fn options(ctx: &Ctx, jobs: u16, resend_in_doubt: bool) -> Options {
    Options {
        jobs: usize::from(jobs),
        backoff: ctx.settings.backoff(),
        resend_in_doubt,
        max_wait: Duration::from_secs(300),
        audit: ctx.audit_entry(),
        only: None,
        on_wait: Some(|wait| {
            eprintln!(
                "Waiting {}s for the next try (backoff from earlier attempts, or the service's Retry-After)...",
                wait.as_secs()
            )
        }),
    }
}

pub fn run(args: Args, ctx: &Ctx, store: &Store) -> anyhow::Result<()> {
    let s = &ctx.settings;
    // Claims of processes that were killed mid-call are in doubt now.
    gbdfl_service::lookup::release_orphaned_claims(store)?;
    // Another branch's fresh record answers a queued request first.
    super::org::answer_queue(ctx, store)?;
    let before = store.queue_items()?;
    let sendable = |q: &&gbdfl_store::QueueItem| {
        q.state == QueueState::Waiting || (args.resend_in_doubt && q.state == QueueState::InDoubt)
    };
    let to_send = before.iter().filter(sendable).count() as u64;
    if to_send == 0 {
        let in_doubt = before
            .iter()
            .filter(|q| q.state == QueueState::InDoubt)
            .count();
        eprintln!("Nothing to send: {}", describe_rest(&before));
        if ctx.settings.json {
            super::json::print(&summary_json(&[], 0))?;
        }
        return if in_doubt > 0 {
            Err(Exit::new(ExitCode::InDoubt, in_doubt_advice(in_doubt)).into())
        } else {
            Ok(())
        };
    }
    let client =
        Client::new(&s.client_config(), s.api_key(&ctx.env)?)?.with_clock(ctx.clock.clone());
    stop_on_ctrl_c();
    let opts = options(ctx, args.jobs, args.resend_in_doubt);
    let progress = Progress::new("sync", to_send);
    let report = sync::run(store, &client, &opts, &|end| {
        if end.last_in_run {
            progress.item_ended(end);
        }
    })?;
    progress.finish();
    ctx.note_records(report.calls.len() as u64);
    let before_ids: HashSet<&str> = before
        .iter()
        .filter(|q| q.state != QueueState::Expired)
        .map(|q| q.id.as_str())
        .collect();
    let after = store.queue_items()?;
    let newly_expired = after
        .iter()
        .filter(|q| q.state == QueueState::Expired && before_ids.contains(q.id.as_str()))
        .count();
    if ctx.settings.json {
        super::json::print(&summary_json(&report.calls, newly_expired))?;
    } else {
        out(&summary(&report.calls, newly_expired))?;
    }
    finish(&report, &after)
}

/// Counts of how the calls ended, as a table: per outcome, the calls that
/// ended so, and the requests whose last call of this run ended so (a
/// request retried after a timeout counts one call per try, but one
/// request).
/// `calls` are in the order they ended, so each request's last is its
/// last in the list.
pub fn summary(calls: &[ItemEnd], expired: usize) -> String {
    let rows: Vec<Vec<String>> = summary_rows(calls, expired)
        .into_iter()
        .map(|(k, calls, ended)| vec![k, calls.to_string(), ended.to_string()])
        .collect();
    if rows.is_empty() {
        return String::new();
    }
    render::columns(&["OUTCOME", "CALLS", "REQUESTS (LAST CALL)"], &rows)
}

/// [`summary`] for `--json`: `{"outcomes": [{"outcome", "calls", "requests"}]}`.
fn summary_json(calls: &[ItemEnd], expired: usize) -> serde_json::Value {
    let rows: Vec<serde_json::Value> = summary_rows(calls, expired)
        .into_iter()
        .map(|(k, calls, ended)| serde_json::json!({ "outcome": k, "calls": calls, "requests": ended }))
        .collect();
    serde_json::json!({ "outcomes": rows })
}

/// (outcome, calls, requests whose last call ended so), by outcome.
fn summary_rows(calls: &[ItemEnd], expired: usize) -> Vec<(String, u64, u64)> {
    let mut by: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    let mut last: HashMap<&str, &ItemEnd> = HashMap::new();
    for c in calls {
        by.entry(c.fetched.label()).or_default().0 += 1;
        last.insert(c.item.id.as_str(), c);
    }
    for c in last.values() {
        by.entry(c.fetched.label()).or_default().1 += 1;
    }
    let mut rows: Vec<(String, u64, u64)> = by
        .into_iter()
        .map(|(k, (calls, ended))| (k, calls, ended))
        .collect();
    if expired > 0 {
        rows.push(("EXPIRED (not sent)".into(), 0, expired as u64));
    }
    rows
}

fn describe_rest(items: &[gbdfl_store::QueueItem]) -> String {
    let count = |st| items.iter().filter(|q| q.state == st).count();
    let (w, d, x, e) = (
        count(QueueState::Waiting),
        count(QueueState::InDoubt),
        count(QueueState::Sending),
        count(QueueState::Expired),
    );
    if w + d + x + e == 0 {
        return "the queue is empty.".into();
    }
    format!(
        "{w} waiting, {x} being sent by another process, {d} in doubt, {e} expired (`gbdfl queue` lists them)."
    )
}

/// The message of a run stopped because the network is set up wrongly.
pub fn network_stop(why: &str, then: &str) -> String {
    format!(
        "stopped: {why}. Nothing was sent; the queue was left as it was (no attempt counted). Fix the setting, check it with `gbdfl doctor`, then {then}."
    )
}

fn in_doubt_advice(n: usize) -> String {
    format!(
        "{n} request(s) are IN_DOUBT: each was sent, but no usable answer was recorded (the answer did not come in time, the connection dropped, the answer could not be read, or gbdfl stopped mid-call), so the service may have answered and billed it. They stay in doubt and are not sent again on their own. Check with `gbdfl queue`; send them again with `gbdfl sync --resend-in-doubt` (they may be billed twice), or give them up with `gbdfl queue drop HANDLE` (the first column of `gbdfl queue`)."
    )
}

/// The exit code and message after a run.
pub fn finish(report: &sync::Report, after: &[gbdfl_store::QueueItem]) -> anyhow::Result<()> {
    if let Some(why) = &report.network {
        return Err(Exit::new(
            ExitCode::NetworkConfig,
            network_stop(why, "run `gbdfl sync` again"),
        )
        .into());
    }
    if let Some(why) = &report.stopped {
        return Err(Exit::new(
            ExitCode::Refused,
            format!(
                "stopped: the service refused a request in a way that fails for every request ({why}). The queue was left as it was; fix the cause, then run `gbdfl sync` again."
            ),
        )
        .into());
    }
    // Items another process is sending now are that process's to finish.
    let live = after
        .iter()
        .filter(|q| matches!(q.state, QueueState::Waiting | QueueState::InDoubt))
        .count();
    let elsewhere = after
        .iter()
        .filter(|q| q.state == QueueState::Sending)
        .count();
    if elsewhere > 0 {
        eprintln!(
            "{elsewhere} request(s) are being sent by another gbdfl process right now; it records their answers."
        );
    }
    let in_doubt = after
        .iter()
        .filter(|q| q.state == QueueState::InDoubt)
        .count();
    if live > 0 && live == in_doubt {
        return Err(Exit::new(ExitCode::InDoubt, in_doubt_advice(in_doubt)).into());
    }
    if live > 0 {
        let last_error = report
            .calls
            .iter()
            .rev()
            .find(|c| matches!(c.next, Next::Queued { .. }))
            .map(|c| match &c.fetched {
                Fetched::Unavailable { message, .. } => format!(" The last error: {message}."),
                other => format!(" The last answer: {}.", other.label()),
            })
            .unwrap_or_default();
        let down = if report.line_down {
            format!(
                " Stopped early: {} calls in a row could not connect (the line or the service is down).",
                sync::DOWN_AFTER
            )
        } else {
            String::new()
        };
        let mut msg = format!(
            "{live} request(s) remain queued: {}{last_error}{down} Run `gbdfl sync` again later; each is sent only before its deadline.",
            describe_rest(after)
        );
        let code = if in_doubt > 0 {
            msg.push(' ');
            msg.push_str(&in_doubt_advice(in_doubt));
            ExitCode::InDoubt
        } else {
            ExitCode::Queued
        };
        return Err(Exit::new(code, msg).into());
    }
    if sync::STOP.load(std::sync::atomic::Ordering::SeqCst) {
        return Err(Exit::new(ExitCode::Queued, "stopped by Ctrl-C").into());
    }
    Ok(())
}
