//! The organisation cache from the command line: asking the central store
//! before a paid call, and `gbdfl pull`.

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::Ctx;
use gbdfl_central::{Central, Target};
use gbdfl_core::iin::Iin;
use gbdfl_service::lookup::{self, Attempt, FetchRequest, Fetched, Next};
use gbdfl_service::org::{self, OrgCache, OrgUse};
use gbdfl_store::{LookupRow, Store};

/// The central store as an organisation cache: connected on first use,
/// with the short `central_timeout`; once unreachable, not asked again in
/// this run (the branch carries on without it, after one warning).
pub struct CentralCache {
    target: Target,
    central: Option<Central>,
    gave_up: bool,
}

impl CentralCache {
    /// The organisation cache of these settings, if a central store is set.
    pub fn of(ctx: &Ctx) -> anyhow::Result<Option<CentralCache>> {
        Ok(ctx.settings.central_target()?.map(|target| CentralCache {
            target,
            central: None,
            gave_up: false,
        }))
    }

    fn give_up(&mut self, e: &gbdfl_central::CentralError) {
        self.gave_up = true;
        self.central = None;
        eprintln!(
            "gbdfl: warning: the organisation cache cannot be asked ({e}); going on without it."
        );
    }
}

impl OrgCache for CentralCache {
    fn find(
        &mut self,
        subject: &[u8; 32],
        since_ms: i64,
        until_ms: i64,
    ) -> Vec<(String, LookupRow)> {
        if self.gave_up {
            return Vec::new();
        }
        if self.central.is_none() {
            let connected = Central::connect(&self.target).and_then(|mut c| {
                c.limit_statements(self.target.connect_timeout)?;
                Ok(c)
            });
            match connected {
                Ok(c) => self.central = Some(c),
                Err(e) => {
                    self.give_up(&e);
                    return Vec::new();
                }
            }
        }
        let Some(c) = self.central.as_mut() else {
            return Vec::new();
        };
        match c.org_records(subject, since_ms, until_ms, CANDIDATES) {
            Ok(found) => found,
            Err(e) => {
                self.give_up(&e);
                Vec::new()
            }
        }
    }
}

/// How many of a person's newest central records a fetch tries, in turn,
/// before it goes on to the paid call.
const CANDIDATES: i64 = 5;

/// The earliest answer time a record of `max_age` may have, now.
fn since(now: DateTime<Utc>, max_age: Duration) -> i64 {
    chrono::Duration::from_std(max_age)
        .ok()
        .and_then(|a| now.checked_sub_signed(a))
        .map_or(i64::MIN, |t| t.timestamp_millis())
}

/// Answers a fetch from the organisation cache when this branch has no
/// fresh record and another branch has: the record is kept here as an
/// `org` lookup with the request's audit entry, and no call is made.
/// `None`: go on as without a central store.
pub fn try_fetch(
    ctx: &Ctx,
    store: &Store,
    req: &FetchRequest<'_>,
) -> anyhow::Result<Option<(Attempt, String)>> {
    match CentralCache::of(ctx)? {
        Some(mut cache) => try_fetch_with(&mut cache, ctx, store, req),
        None => Ok(None),
    }
}

/// [`try_fetch`] with a cache kept over many requests (a batch file).
pub fn try_fetch_with(
    cache: &mut CentralCache,
    ctx: &Ctx,
    store: &Store,
    req: &FetchRequest<'_>,
) -> anyhow::Result<Option<(Attempt, String)>> {
    if req.force {
        return Ok(None);
    }
    let now = ctx.clock.now();
    if lookup::fresh_record(store, req.iin, req.max_age, now)?.is_some() {
        return Ok(None);
    }
    let fresh_from = chrono::Duration::from_std(req.max_age)
        .ok()
        .and_then(|a| now.checked_sub_signed(a));
    let until = now
        .checked_add_signed(org::CLOCK_SKEW)
        .map_or(i64::MAX, |t| t.timestamp_millis());
    let found = cache.find(&store.subject_of(req.iin), since(now, req.max_age), until);
    for (branch, row) in found {
        let with = OrgUse {
            iin: req.iin,
            session: Some(req.session.as_str()),
            purpose: req.asker.purpose,
            operator: req.asker.operator,
            host: req.asker.host,
            audit: req.audit.clone(),
            fresh_from,
        };
        match org::keep(store, &row, &with, now) {
            Ok(Some((id, record))) => {
                let attempt = Attempt {
                    fetched: Fetched::Cached {
                        id,
                        from: Box::new(record),
                    },
                    next: Next::Done,
                };
                return Ok(Some((attempt, branch)));
            }
            Ok(None) => {}
            // A central row that does not open is no answer: the next
            // one, or the paid call, answers instead.
            Err(e) if e.is_key_or_integrity() => eprintln!(
                "gbdfl: warning: a record of branch {} in the organisation cache was refused ({e}); it is not used.",
                gbdfl_report::render::safe(&branch)
            ),
            Err(e) => return Err(e.into()),
        }
    }
    Ok(None)
}

/// Bring the organisation's latest VALID records into this branch's cache
/// ahead of time, for working offline: every person's (answered within
/// --max-age), or those of the IINs in --iins. Records this branch already
/// holds as new are skipped. Each kept record counts as an organisation
/// cache answer; no paid call is made.
#[derive(Debug, clap::Args)]
pub struct PullArgs {
    /// A file of IINs, one per line (default: every person)
    #[arg(long, value_name = "FILE")]
    pub iins: Option<std::path::PathBuf>,
    /// Only records answered within this age (default: max_age)
    #[arg(long, value_name = "DUR")]
    pub max_age: Option<String>,
}

pub fn pull(args: PullArgs, ctx: &Ctx, store: &Store) -> anyhow::Result<()> {
    let s = &ctx.settings;
    let (target, branch) = s.central_branch()?;
    let max_age = match &args.max_age {
        Some(m) => gbdfl_core::limits::parse_duration("--max-age", m, gbdfl_core::limits::MAX_AGE)?,
        None => s.max_age.value,
    };
    let subjects = match &args.iins {
        None => None,
        Some(path) => Some(
            read_iins(path, ctx)?
                .iter()
                .map(|i| store.subject_of(i).to_vec())
                .collect::<Vec<_>>(),
        ),
    };
    let mut central = Central::connect(&target)?;
    central.check_branch(&branch, &store.org_keys()?)?;
    let now = ctx.clock.now();
    let mut kept = 0u64;
    let mut skipped = 0u64;
    let mut refused = 0u64;
    central.each_org_latest(
        subjects.as_deref(),
        since(now, max_age),
        &branch,
        &mut |_from, row| {
            let (origin, body) = match store.open_lookup_row(&row) {
                Ok(opened) => opened,
                // A central row that does not open is not taken.
                Err(e) if e.is_key_or_integrity() => {
                    refused += 1;
                    return Ok(());
                }
                Err(e) => return Err(e.into()),
            };
            let iin = Iin::parse_with(&origin.iin, true).map_err(|e| {
                gbdfl_store::StoreError::Corrupt {
                    id: row.id.clone(),
                    column: "iin_enc",
                    reason: e.to_string(),
                }
            })?;
            let newer_here = store
                .latest_valid(&iin)?
                .and_then(|r| r.lookup.answered_at)
                .zip(origin.answered_at)
                .is_some_and(|(here, there)| here >= there);
            if newer_here {
                skipped += 1;
                return Ok(());
            }
            let with = OrgUse {
                iin: &iin,
                session: None,
                purpose: ctx.purpose.as_deref(),
                operator: &s.operator.value,
                host: &s.host,
                // Each record kept has its entry, naming its lookup.
                audit: Some(ctx.audit_entry()),
                fresh_from: None,
            };
            match org::keep_opened(store, origin, body, &with, now) {
                Ok(Some(_)) => kept += 1,
                Ok(None) => skipped += 1,
                Err(e) if e.is_key_or_integrity() => refused += 1,
                Err(e) => return Err(e.into()),
            }
            Ok(())
        },
    )?;
    ctx.note_records(kept);
    if s.json {
        super::json::print(
            &serde_json::json!({ "kept": kept, "skipped": skipped, "refused": refused }),
        )?;
    }
    eprintln!(
        "Pulled {kept} record(s) of the organisation into this branch's cache ({skipped} already held as new here); no paid call was made."
    );
    if refused > 0 {
        eprintln!(
            "gbdfl: warning: {refused} central record(s) did not open with this branch's key (altered, or of another key) and were not taken."
        );
    }
    Ok(())
}

fn read_iins(path: &std::path::Path, ctx: &Ctx) -> anyhow::Result<Vec<Iin>> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        crate::exit::Exit::new(
            crate::exit::ExitCode::InvalidInput,
            format!("--iins {}: {e}", path.display()),
        )
    })?;
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(|l| super::parse_iin(l, false, ctx.clock.today()))
        .collect()
}

/// Before `sync` sends anything: each waiting request that another branch
/// has a fresh record for is answered from the organisation cache (kept
/// here with the request's audit entry) and taken off the queue, so no
/// call is made for it. Items being sent or in doubt are left alone.
/// Returns how many were answered.
pub fn answer_queue(ctx: &Ctx, store: &Store) -> anyhow::Result<u64> {
    let Some(mut cache) = CentralCache::of(ctx)? else {
        return Ok(0);
    };
    let mut answered = 0u64;
    for item in store.queue_items()? {
        if item.state != gbdfl_store::QueueState::Waiting || item.claimed_by.is_some() {
            continue;
        }
        let Ok(session) = gbdfl_core::session::SessionId::parse(&item.session_id) else {
            continue;
        };
        let audit = gbdfl_store::AuditEntry {
            purpose: item.purpose.clone(),
            subject: Some(store.subject_of(&item.iin)),
            ..ctx.audit_entry()
        };
        let req = FetchRequest {
            iin: &item.iin,
            session: &session,
            asker: gbdfl_service::lookup::Asker {
                operator: &item.operator,
                host: &item.host,
                purpose: item.purpose.as_deref(),
            },
            max_age: ctx.settings.max_age.value,
            force: false,
            audit: Some(audit.clone()),
        };
        if try_fetch_with(&mut cache, ctx, store, &req)?.is_some() {
            // Taken off the queue only if no process claimed it meanwhile
            // (then it is being sent, and its claim decides as ever).
            store.drop_waiting_item(
                &item.id,
                &gbdfl_store::AuditEntry {
                    records: 0,
                    ..audit
                },
            )?;
            answered += 1;
        }
        if cache.gave_up {
            break;
        }
    }
    if answered > 0 {
        eprintln!(
            "Answered {answered} queued request(s) from the organisation cache; no paid call was made for them."
        );
    }
    Ok(answered)
}
