//! The lookup service: cache first, then the paid call, and every attempt
//! recorded. This is the one library module that ties the store to the HTTP
//! client; reports and queries never come through here.
//!
//! A call goes through its steps in [`send_then`]: the lookup row before
//! the answer, the call, what the answer comes to (a verdict), and the
//! answer kept: sealed, committed with its audit entry, or spilled.
//!
//! Rules this module keeps, and what holds each:
//! - no paid call is made when a VALID record younger than max-age is
//!   stored, unless forced (`valid_record_is_fetched_once_and_then_answered_from_the_cache`,
//!   `max_age_zero_means_the_cache_is_too_old`, `tests/cli/paid_calls.rs`);
//! - every call, whatever its outcome, is recorded with the body exactly as
//!   received (`a_garbage_body_is_stored_and_reported`,
//!   `an_answer_that_is_not_utf8_is_a_garbled_answer_kept_as_received`,
//!   `show_lays_out_the_person_and_json_is_the_body_as_received`);
//! - a call that may have reached the service without a usable answer
//!   leaves its request in doubt, never queued for another try
//!   (`tests/cli/billing.rs`);
//! - the IIN is valid before any call (the compiler: the [`Iin`] type).

use std::time::Duration;

use chrono::{DateTime, Utc};
use uuid::Uuid;
use zeroize::Zeroizing;

use crate::backoff::Backoff;
use gbdfl_client::{Answer, Client, Delivery};
use gbdfl_core::api::{Response, Status};
use gbdfl_core::exit_code::ExitCode;
use gbdfl_core::iin::Iin;
pub use gbdfl_core::session::{SessionId, SessionIdError, parse_session_time};
use gbdfl_store as store;
use gbdfl_store::{
    After, AuditEntry, Begin, LookupId, NewLookup, NewRequest, Outcome, QueueItem, Reached, Record,
    Reservation, Source, Store, StoreError,
};

/// Who asks, and why: recorded with the lookup, its audit entry and the
/// queue row.
#[derive(Debug, Clone)]
pub struct Asker<'a> {
    /// The operator as declared (`--operator`, `GBDFL_OPERATOR`), not checked.
    pub operator: &'a str,
    /// The machine the request is made from.
    pub host: &'a str,
    /// Why the subject's data is asked for (`--purpose`); sealed at rest.
    pub purpose: Option<&'a str>,
}

/// One fetch: a subject, the verification session that allows the call,
/// and how old a cached answer may be to be used instead.
#[derive(Debug)]
pub struct FetchRequest<'a> {
    /// The subject.
    pub iin: &'a Iin,
    /// The face2face session the subject passed; the service answers only
    /// within [`SESSION_WINDOW`] of it.
    pub session: &'a SessionId,
    /// Who asks, and why.
    pub asker: Asker<'a>,
    /// The oldest a stored VALID record may be to answer instead of a call.
    pub max_age: Duration,
    /// Call even when a fresh record is stored, and send again a request
    /// in doubt (it may be billed twice).
    pub force: bool,
    /// The audit entry to append with the lookup, in the same transaction;
    /// its outcome, paid-call flag and record count are filled in here.
    pub audit: Option<AuditEntry>,
}

/// How a fetch ended. Every variant with an `id` has been recorded under it.
#[derive(Debug)]
pub enum Fetched {
    /// A VALID record younger than max-age was stored; no call was made.
    Cached {
        /// The cache answer's own lookup.
        id: LookupId,
        /// The stored record that answered.
        from: Box<Record>,
    },
    /// The service answered. `response.status` says with what.
    Answered {
        /// The paid call's lookup.
        id: LookupId,
        /// The answer, parsed.
        response: Box<Response>,
        /// The answer as received (personal data: wiped when dropped).
        body: Zeroizing<Vec<u8>>,
    },
    /// The service refused the request (HTTP 4xx).
    Refused {
        /// The call's lookup.
        id: LookupId,
        /// The HTTP status of the refusal.
        http_status: u16,
        /// The service's reason, fit to show.
        message: String,
    },
    /// No usable answer. With [`Delivery::NotSent`] the request never
    /// reached the service and stays queued; else it may have been billed
    /// and is in doubt.
    Unavailable {
        /// The call's lookup.
        id: LookupId,
        /// The HTTP status, when one came back (429, 5xx).
        http_status: Option<u16>,
        /// What went wrong, fit to show.
        message: String,
        /// How long the service asked to wait (Retry-After).
        retry_after: Option<Duration>,
        /// Whether the request may have reached the service.
        delivery: Delivery,
    },
    /// HTTP 2xx with a body that is not a GBDFL answer; the body is stored,
    /// and the request is in doubt (the call was billed, the answer cannot
    /// be used).
    Garbled {
        /// The call's lookup.
        id: LookupId,
        /// Why the body is not a GBDFL answer.
        reason: String,
    },
    /// Another gbdfl process is sending this very request now; no call was made.
    Busy {
        /// The queue row, claimed by the other process.
        item: Box<QueueItem>,
    },
    /// An earlier call of this request was interrupted while it was being
    /// sent; the service may have answered and billed it. No call was made.
    InDoubt {
        /// The queue row in doubt.
        item: Box<QueueItem>,
    },
    /// The request's 3-hour window has passed; no call was made.
    Expired {
        /// The queue row, past its deadline.
        item: Box<QueueItem>,
    },
    /// The network is set up wrongly (certificate not trusted, proxy
    /// refused): nothing was sent, no lookup recorded, and the request is
    /// left as it was. `message` says what is wrong and which setting fixes it.
    NetworkConfig {
        /// Which set-up problem.
        problem: gbdfl_client::network::Problem,
        /// What is wrong and which setting fixes it.
        message: String,
    },
}

/// What happens next to the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    /// Nothing: it got its final answer (or never needed a call).
    Done,
    /// It stays queued and is tried again, not before `next_try`.
    Queued {
        /// The queue row.
        item_id: String,
        /// After this the request cannot be sent (its session's window ends).
        deadline: DateTime<Utc>,
        /// The earliest the next call is made (backoff, Retry-After).
        next_try: DateTime<Utc>,
    },
    /// The answer fails for every request (unknown organisation, no
    /// subscription): the request stays queued as it was, and nothing more
    /// should be sent until the cause is fixed.
    Stop {
        /// The queue row, put back as it was.
        item_id: String,
    },
    /// The call may have reached the service and been billed, but left no
    /// usable answer: the request is in doubt, and is sent again only when
    /// the operator says so (`sync --resend-in-doubt`, or `queue drop`).
    InDoubt {
        /// The queue row in doubt.
        item_id: String,
    },
}

/// A fetch's result: how it ended and what comes next.
#[derive(Debug)]
pub struct Attempt {
    /// How the fetch ended.
    pub fetched: Fetched,
    /// What becomes of the request.
    pub next: Next,
}

impl Fetched {
    /// The lookup this outcome was recorded under; `None` when no lookup
    /// was recorded (nothing was sent, or another process sends it).
    pub fn id(&self) -> Option<LookupId> {
        match self {
            Fetched::Cached { id, .. }
            | Fetched::Answered { id, .. }
            | Fetched::Refused { id, .. }
            | Fetched::Unavailable { id, .. }
            | Fetched::Garbled { id, .. } => Some(*id),
            Fetched::Busy { .. }
            | Fetched::InDoubt { .. }
            | Fetched::Expired { .. }
            | Fetched::NetworkConfig { .. } => None,
        }
    }

    /// The exit code this outcome maps to (docs/reference.md, "Exit codes").
    pub fn exit_code(&self) -> ExitCode {
        match self {
            Fetched::Cached { .. } => ExitCode::Ok,
            Fetched::Answered { response, .. } => match response.status {
                Some(Status::Valid) => ExitCode::Ok,
                Some(Status::Pending) => ExitCode::Pending,
                _ if is_service_error(response) => ExitCode::Queued,
                _ => ExitCode::NotValid,
            },
            Fetched::Refused { .. } => ExitCode::Refused,
            Fetched::Unavailable {
                delivery: Delivery::NotSent,
                ..
            }
            | Fetched::Busy { .. } => ExitCode::Queued,
            Fetched::Unavailable { .. } | Fetched::Garbled { .. } | Fetched::InDoubt { .. } => {
                ExitCode::InDoubt
            }
            Fetched::Expired { .. } => ExitCode::Expired,
            Fetched::NetworkConfig { .. } => ExitCode::NetworkConfig,
        }
    }

    /// Whether a call to the paid service was made.
    pub fn called_service(&self) -> bool {
        self.id().is_some() && !matches!(self, Fetched::Cached { .. })
    }

    /// A short name of the outcome for tables and CSV: the GBDFL status when
    /// there is one, else what happened.
    pub fn label(&self) -> String {
        match self {
            Fetched::Cached { .. } => "VALID (cached)".into(),
            Fetched::Answered { response, .. } => response
                .status
                .as_ref()
                .map(|s| s.as_str().to_owned())
                .unwrap_or_else(|| "NO_STATUS".into()),
            Fetched::Refused { http_status, .. } => format!("REFUSED (HTTP {http_status})"),
            Fetched::Unavailable {
                delivery: Delivery::NotSent,
                ..
            } => "UNREACHABLE".into(),
            Fetched::Unavailable { .. } => "NO_ANSWER".into(),
            Fetched::Garbled { .. } => "GARBLED".into(),
            Fetched::Busy { .. } => "SENDING".into(),
            Fetched::InDoubt { .. } => "IN_DOUBT".into(),
            Fetched::Expired { .. } => "EXPIRED".into(),
            Fetched::NetworkConfig { problem, .. } => problem.label().into(),
        }
    }
}

/// An answer whose failure reason says biometric.kz could not reach the
/// state service ("Can`t connect to GBDFL service"): worth asking again.
pub fn is_service_error(response: &Response) -> bool {
    response.failure_reason.as_ref().is_some_and(|f| {
        f.kind.as_deref() == Some("SERVICE_ERROR")
            && f.detail
                .as_deref()
                .is_some_and(|d| d.to_lowercase().contains("connect to gbdfl"))
    })
}

/// Whether a refusal will be the same for every request: the organisation
/// or its subscription, not this request.
pub fn fails_for_every_request(http_status: u16, message: &str) -> bool {
    let m = message.to_lowercase();
    (400..500).contains(&http_status)
        && (m.contains("organization not found")
            || m.contains("subscription")
            || m.contains("access to gbdfl"))
}

/// The cached VALID record of `iin`, if one is younger than `max_age`.
pub fn fresh_record(
    store: &Store,
    iin: &Iin,
    max_age: Duration,
    now: DateTime<Utc>,
) -> Result<Option<Record>, StoreError> {
    let Some(record) = store.latest_valid(iin)? else {
        return Ok(None);
    };
    let at = record
        .lookup
        .answered_at
        .unwrap_or(record.lookup.requested_at);
    let age = now
        .signed_duration_since(at)
        .to_std()
        .unwrap_or(Duration::ZERO);
    Ok((age <= max_age).then_some(record))
}

/// The deadline of a request: 3 hours after its session was created (the
/// API page: GBDFL data can be obtained within 3 hours of the checks), or
/// after it was queued when the session's time is not known.
pub fn deadline(
    queued_at: DateTime<Utc>,
    session_created_at: Option<DateTime<Utc>>,
) -> DateTime<Utc> {
    session_created_at.unwrap_or(queued_at) + SESSION_WINDOW
}

/// How long after the checks GBDFL data can be obtained.
pub const SESSION_WINDOW: chrono::TimeDelta = chrono::TimeDelta::hours(3);

/// The queue's view of a fetch request, queued at `now`.
fn new_request<'a>(
    req: &FetchRequest<'a>,
    now: DateTime<Utc>,
    session_created_at: Option<DateTime<Utc>>,
) -> NewRequest<'a> {
    NewRequest {
        iin: req.iin,
        session_id: req.session.as_str(),
        purpose: req.asker.purpose,
        operator: req.asker.operator,
        host: req.asker.host,
        queued_at: now,
        deadline: deadline(now, session_created_at),
    }
}

/// A unique id of this process's claims, one per worker.
pub fn claim_owner(worker: usize) -> String {
    store::owner::worker(worker)
}

/// Whether the process that made claim `owner` is known to be gone
/// ([`store::owner::liveness`]). Unknown (another host, an older gbdfl's
/// claim, another OS) counts as alive: the claim then ends with its lease.
pub fn claim_is_orphaned(owner: &str) -> bool {
    store::owner::liveness(owner) == store::owner::Liveness::Gone
}

/// Ends the claims of processes that are gone (killed mid-call): their
/// items are in doubt now, not when the lease runs out. Returns how many.
pub fn release_orphaned_claims(store: &Store) -> Result<usize, StoreError> {
    let mut n = 0;
    for q in store.queue_items()? {
        if q.state == store::QueueState::Sending
            && let Some(owner) = &q.claimed_by
            && claim_is_orphaned(owner)
            && store.end_claim(&q.id, owner)?
        {
            n += 1;
        }
    }
    Ok(n)
}

/// Fetches a record: from the cache when fresh (and not forced), else by
/// the paid call, through the queue so that no other process can pay for
/// the same IIN and session at the same time. Records the attempt and
/// returns how it ended; a request that could not be answered now stays
/// queued for `sync`.
pub fn fetch(
    store: &Store,
    client: &Client,
    req: &FetchRequest<'_>,
    backoff: &Backoff,
    session_created_at: Option<DateTime<Utc>>,
) -> Result<Attempt, StoreError> {
    let now = store.now();
    let owner = claim_owner(0);
    let request = new_request(req, now, session_created_at);
    let max_age = (!req.force).then_some(req.max_age);
    // Room for the answer first: with no room to keep it, no call is made.
    let mut room = store.reserve_spill(client.max_body_bytes())?;
    let begun = store.begin_fetch(
        &request,
        max_age,
        Some((&owner, client.claim_until(now))),
        req.force,
    )?;
    // Every way but a claim ends here without a call.
    let no_call = |fetched: Fetched| -> Result<Attempt, StoreError> {
        Ok(Attempt {
            fetched,
            next: Next::Done,
        })
    };
    let item = match begun {
        Begin::Fresh(from) => {
            let id = record_cached(store, req, now, &from)?;
            return no_call(Fetched::Cached { id, from });
        }
        // The claim is of a process that was killed mid-call: in doubt now.
        Begin::Busy(mut item)
            if item.claimed_by.as_deref().is_some_and(claim_is_orphaned)
                && store.end_claim(&item.id, item.claimed_by.as_deref().unwrap_or_default())? =>
        {
            item.state = store::QueueState::InDoubt;
            return no_call(Fetched::InDoubt {
                item: Box::new(item),
            });
        }
        Begin::Busy(item) => {
            return no_call(Fetched::Busy {
                item: Box::new(item),
            });
        }
        Begin::InDoubt(item) => {
            return no_call(Fetched::InDoubt {
                item: Box::new(item),
            });
        }
        Begin::Expired(item) => {
            return no_call(Fetched::Expired {
                item: Box::new(item),
            });
        }
        Begin::Claimed(item) => item,
        Begin::Queued(_) => unreachable!("begin_fetch claims when asked to"),
    };
    // Queued by this very fetch: a stop for the network's set-up takes it
    // off again, so the queue is as it was before the fetch.
    let queued_now =
        item.attempts == 1 && store::time_text(item.queued_at) == store::time_text(now);
    send(
        store,
        client,
        &item,
        &owner,
        req.audit.as_ref(),
        backoff,
        &mut room,
        queued_now,
    )
}

/// Records an answer from the cache (no call) with the request's audit entry.
fn record_cached(
    store: &Store,
    req: &FetchRequest<'_>,
    requested_at: DateTime<Utc>,
    from: &Record,
) -> Result<LookupId, StoreError> {
    let id = LookupId::new();
    let audit = req.audit.as_ref().map(|a| AuditEntry {
        exit_code: ExitCode::Ok.code(),
        records: 1,
        ..a.clone()
    });
    store.record(
        &NewLookup {
            id,
            iin: req.iin,
            session_id: req.session.as_str(),
            purpose: req.asker.purpose,
            operator: req.asker.operator,
            host: req.asker.host,
            requested_at,
            answered_at: Some(store.now()),
            source: Source::Cache,
            outcome: Outcome::Cached,
            status: Some(Status::Valid.as_str()),
            result: from.lookup.result,
            http_status: None,
            failure_type: None,
            detail: None,
            response: None,
            cached_from: Some(LookupId(
                Uuid::parse_str(&from.lookup.id).unwrap_or_default(),
            )),
            reached: None,
            os_user: Some(gbdfl_core::os_user::described()),
        },
        audit.as_ref(),
    )?;
    Ok(id)
}

/// Queues requests for `sync` in one transaction (a batch file), unless a
/// fresh VALID record answers them (then recorded as cache answers, whose
/// ids are returned with them). Makes no call.
pub fn enqueue_many(
    store: &Store,
    reqs: &[(FetchRequest<'_>, Option<DateTime<Utc>>)],
) -> Result<Vec<(Begin, Option<LookupId>)>, StoreError> {
    let now = store.now();
    let requests: Vec<NewRequest<'_>> = reqs
        .iter()
        .map(|(req, created)| new_request(req, now, *created))
        .collect();
    // One max-age for the batch: the first request's (they share the settings).
    let max_age = reqs
        .first()
        .and_then(|(req, _)| (!req.force).then_some(req.max_age));
    let begun = store.queue_many(&requests, max_age)?;
    begun
        .into_iter()
        .zip(reqs)
        .map(|(b, (req, _))| {
            let id = match &b {
                Begin::Fresh(from) => Some(record_cached(store, req, now, from)?),
                _ => None,
            };
            Ok((b, id))
        })
        .collect()
}

/// Makes the paid call of a claimed queue item, records it with its audit
/// entry, and takes the item off the queue, reschedules it (with backoff
/// and Retry-After) or restores it, all in one transaction. `queued_now`:
/// see [`send_then`].
#[allow(clippy::too_many_arguments)]
pub fn send(
    store: &Store,
    client: &Client,
    item: &QueueItem,
    owner: &str,
    audit: Option<&AuditEntry>,
    backoff: &Backoff,
    room: &mut Reservation,
    queued_now: bool,
) -> Result<Attempt, StoreError> {
    let commit = |f: store::SealedFinish| {
        store
            .commit_finishes(&[(&f, None)])
            .map(|mut v| v.pop().flatten())
    };
    send_then(
        store, client, item, owner, audit, backoff, room, &commit, queued_now,
    )
    .map(|(a, _)| a)
}

/// [`send`], with the commit of the sealed answer left to `commit` (a
/// `sync` worker hands it to the thread that commits for all workers, and
/// gets back the next item it claimed in the same transaction). `room` is
/// the space reserved for the answer (`Store::reserve_spill`): if the
/// commit fails, the answer is kept there, and the error says so. With
/// `queued_now`, a stop for the network's set-up takes the item off the
/// queue (it was queued by the same fetch) instead of putting it back.
#[allow(clippy::too_many_arguments)]
pub fn send_then(
    store: &Store,
    client: &Client,
    item: &QueueItem,
    owner: &str,
    audit: Option<&AuditEntry>,
    backoff: &Backoff,
    room: &mut Reservation,
    commit: &dyn Fn(store::SealedFinish) -> Result<Option<QueueItem>, StoreError>,
    queued_now: bool,
) -> Result<(Attempt, Option<QueueItem>), StoreError> {
    let requested_at = store.now();
    let call = Call {
        store,
        item,
        owner,
        audit,
        backoff,
        commit,
        id: LookupId::new(),
    };
    let base = call.unanswered_row(requested_at);
    let answer = client.lookup(&item.iin, &item.session_id);
    if let Answer::Misconfigured { problem, message } = answer {
        return call.stop_for_network(problem, message, queued_now);
    }
    // From here until the answer is committed nothing may panic or fail
    // before the store has it: times are checked sums, and a wait past the
    // request's deadline is the deadline (the item is then never sent).
    let answered_at = Some(store.now());
    let verdict = call.judge(answer);
    call.keep(base, answered_at, verdict, room)
}

/// One paid call of a claimed queue item, from the claim to the commit of
/// its answer: what each step of [`send_then`] needs.
struct Call<'a> {
    store: &'a Store,
    item: &'a QueueItem,
    owner: &'a str,
    audit: Option<&'a AuditEntry>,
    backoff: &'a Backoff,
    commit: &'a dyn Fn(store::SealedFinish) -> Result<Option<QueueItem>, StoreError>,
    /// The id the call's lookup row is recorded under.
    id: LookupId,
}

/// What an answer comes to: the lookup row's own fields, the audit entry's
/// outcome, and what becomes of the item.
struct Verdict {
    outcome: Outcome,
    http_status: Option<u16>,
    detail: Option<String>,
    body: Option<Vec<u8>>,
    reached: Reached,
    code: ExitCode,
    error: Option<String>,
    records: u64,
    fetched: Fetched,
    next: Next,
}

impl<'a> Call<'a> {
    /// The call's lookup row before any answer: who asked, for whom, when.
    fn unanswered_row(&self, requested_at: DateTime<Utc>) -> NewLookup<'a> {
        let item = self.item;
        // One purpose for the lookup and its audit entry: the request's own,
        // else the one the sending command was given.
        let purpose = item
            .purpose
            .as_deref()
            .or_else(|| self.audit.and_then(|a| a.purpose.as_deref()));
        NewLookup {
            id: self.id,
            iin: &item.iin,
            session_id: &item.session_id,
            purpose,
            operator: &item.operator,
            host: &item.host,
            requested_at,
            answered_at: None,
            source: Source::Service,
            outcome: Outcome::Unavailable,
            status: None,
            result: None,
            http_status: None,
            failure_type: None,
            detail: None,
            response: None,
            cached_from: None,
            reached: None,
            // The sender's: a queued request is recorded by whoever sends it.
            os_user: Some(gbdfl_core::os_user::described()),
        }
    }

    /// The command's audit entry with this call's outcome, under the
    /// request's own purpose when it has one.
    fn audit_entry(
        &self,
        code: ExitCode,
        error: Option<String>,
        paid_call: bool,
        records: u64,
    ) -> Option<AuditEntry> {
        self.audit.map(|a| AuditEntry {
            exit_code: code.code(),
            error,
            paid_call,
            records,
            purpose: self.item.purpose.clone().or_else(|| a.purpose.clone()),
            ..a.clone()
        })
    }

    /// Ends a call that found the network set up wrongly. Nothing was
    /// sent: no lookup, no attempt counted, the deadline and the next try
    /// as they were. The audit says why. With `queued_now` the item goes
    /// (this very fetch queued it); else it is put back and sending stops.
    fn stop_for_network(
        &self,
        problem: gbdfl_client::network::Problem,
        message: String,
        queued_now: bool,
    ) -> Result<(Attempt, Option<QueueItem>), StoreError> {
        let error = format!("{}: {message}", problem.label());
        let audit = self.audit_entry(ExitCode::NetworkConfig, Some(error), false, 0);
        let after = if queued_now {
            After::Done
        } else {
            After::Restore
        };
        let sealed = self
            .store
            .seal_finish(self.item, self.owner, None, audit.as_ref(), after)?;
        let claimed = (self.commit)(sealed)?;
        let next = if queued_now {
            Next::Done
        } else {
            Next::Stop {
                item_id: self.item.id.clone(),
            }
        };
        Ok((
            Attempt {
                fetched: Fetched::NetworkConfig { problem, message },
                next,
            },
            claimed,
        ))
    }

    /// What the service's answer (or its absence) comes to.
    fn judge(&self, answer: Answer) -> Verdict {
        match answer {
            Answer::Answered {
                http_status,
                body,
                parsed: Ok(response),
            } => self.answered(http_status, body, response),
            Answer::Answered {
                http_status,
                body,
                parsed: Err(reason),
            } => self.garbled(http_status, body, reason),
            Answer::Refused {
                http_status,
                body,
                message,
            } => self.refused(http_status, body, message),
            Answer::Unavailable {
                http_status,
                body,
                message,
                retry_after,
                delivery,
            } => self.unavailable(http_status, body, message, retry_after, delivery),
            Answer::Misconfigured { .. } => unreachable!("ended above, before any lookup row"),
        }
    }

    /// A GBDFL answer: done, unless it is PENDING or the state service
    /// could not be reached (then queued for another try).
    fn answered(&self, http_status: u16, body: Vec<u8>, response: Box<Response>) -> Verdict {
        let detail = response.failure_reason.as_ref().map(|f| f.to_string());
        let retry = response.status == Some(Status::Pending) || is_service_error(&response);
        let (code, error, records) = answer_outcome(&response, retry, detail.as_deref());
        let next = if retry {
            self.queued(self.retry_at(None))
        } else {
            Next::Done
        };
        Verdict {
            outcome: Outcome::Answered,
            http_status: Some(http_status),
            detail,
            body: Some(body.clone()),
            reached: Reached::Yes,
            code,
            error,
            records,
            fetched: Fetched::Answered {
                id: self.id,
                response,
                body: Zeroizing::new(body),
            },
            next,
        }
    }

    /// HTTP 2xx with a body that is not a GBDFL answer: billed, kept as
    /// received, and in doubt.
    fn garbled(&self, http_status: u16, body: Vec<u8>, reason: String) -> Verdict {
        Verdict {
            outcome: Outcome::Garbled,
            http_status: Some(http_status),
            detail: Some(reason.clone()),
            body: Some(body),
            reached: Reached::Yes,
            code: ExitCode::InDoubt,
            error: Some(format!(
                "the service answered HTTP {http_status} but the answer could not be read ({reason}); it was billed and is kept as received. {}",
                IN_DOUBT_ADVICE
            )),
            records: 0,
            fetched: Fetched::Garbled {
                id: self.id,
                reason,
            },
            next: self.in_doubt(),
        }
    }

    /// A refusal: done, or a stop for everyone when it will be the same
    /// for every request.
    fn refused(&self, http_status: u16, body: Vec<u8>, message: String) -> Verdict {
        let next = if fails_for_every_request(http_status, &message) {
            Next::Stop {
                item_id: self.item.id.clone(),
            }
        } else {
            Next::Done
        };
        Verdict {
            outcome: Outcome::Refused,
            http_status: Some(http_status),
            detail: Some(message.clone()),
            body: Some(body),
            reached: Reached::Yes,
            code: ExitCode::Refused,
            error: Some(format!("HTTP {http_status}: {message}")),
            records: 0,
            fetched: Fetched::Refused {
                id: self.id,
                http_status,
                message,
            },
            next,
        }
    }

    /// No usable answer: queued for another try only when the request
    /// provably never reached the service, else in doubt.
    fn unavailable(
        &self,
        http_status: Option<u16>,
        body: Vec<u8>,
        message: String,
        retry_after: Option<Duration>,
        delivery: Delivery,
    ) -> Verdict {
        let (reached, code, error, next) = match delivery {
            Delivery::NotSent => (
                Reached::No,
                ExitCode::Queued,
                message.clone(),
                self.queued(self.retry_at(retry_after)),
            ),
            // A status line came back: something answered.
            Delivery::MaybeBilled => (
                if http_status.is_some() {
                    Reached::Yes
                } else {
                    Reached::Maybe
                },
                ExitCode::InDoubt,
                format!(
                    "{message}; the service may have answered and billed the call. {IN_DOUBT_ADVICE}"
                ),
                self.in_doubt(),
            ),
        };
        Verdict {
            outcome: Outcome::Unavailable,
            http_status,
            detail: Some(message.clone()),
            body: (!body.is_empty()).then_some(body),
            reached,
            code,
            error: Some(error),
            records: 0,
            fetched: Fetched::Unavailable {
                id: self.id,
                http_status,
                message,
                retry_after,
                delivery,
            },
            next,
        }
    }

    /// When to try again: after the backoff (at least Retry-After), and
    /// never past the request's deadline. A checked sum: never panics.
    fn retry_at(&self, retry_after: Option<Duration>) -> DateTime<Utc> {
        let item = self.item;
        let wait = self.backoff.delay(item.attempts, retry_after);
        chrono::TimeDelta::from_std(wait)
            .ok()
            .and_then(|d| self.store.now().checked_add_signed(d))
            .map_or(item.deadline, |t| t.min(item.deadline))
    }

    /// The item stays queued until `next_try`.
    fn queued(&self, next_try: DateTime<Utc>) -> Next {
        Next::Queued {
            item_id: self.item.id.clone(),
            deadline: self.item.deadline,
            next_try,
        }
    }

    /// The item is in doubt.
    fn in_doubt(&self) -> Next {
        Next::InDoubt {
            item_id: self.item.id.clone(),
        }
    }

    /// Records the answer: the lookup row, its audit entry and what becomes
    /// of the item, sealed and committed together; kept in `room` if the
    /// commit fails.
    fn keep(
        &self,
        base: NewLookup<'_>,
        answered_at: Option<DateTime<Utc>>,
        verdict: Verdict,
        room: &mut Reservation,
    ) -> Result<(Attempt, Option<QueueItem>), StoreError> {
        let Verdict {
            outcome,
            http_status,
            detail,
            body,
            reached,
            code,
            error,
            records,
            fetched,
            next,
        } = verdict;
        let response = match &fetched {
            Fetched::Answered { response, .. } => Some(&**response),
            _ => None,
        };
        let status = response.and_then(|r| r.status.as_ref().map(Status::as_str));
        let row = NewLookup {
            answered_at,
            outcome,
            status,
            result: response.and_then(|r| r.result),
            http_status,
            failure_type: response
                .and_then(|r| r.failure_reason.as_ref())
                .and_then(|f| f.kind.as_deref()),
            detail: detail.as_deref(),
            response: body.as_deref(),
            reached: Some(reached),
            ..base
        };
        // Paid as the lookup it records counts (a request that never
        // reached the service was not billed).
        let audit = self.audit_entry(code, error.clone(), row.is_paid_call(), records);
        let last_status = status
            .map(str::to_owned)
            .or_else(|| http_status.map(|h| format!("HTTP_{h}")))
            .unwrap_or_else(|| outcome.as_str().to_uppercase());
        let error_text = error.unwrap_or_default();
        let after = after(&next, &last_status, &error_text);
        let sealed =
            self.store
                .seal_finish(self.item, self.owner, Some(&row), audit.as_ref(), after)?;
        let claimed = self.commit_or_spill(sealed, room)?;
        Ok((Attempt { fetched, next }, claimed))
    }

    /// Commits a sealed answer; if the commit fails, spills it into `room`
    /// so that it is not lost, and says where in the error.
    fn commit_or_spill(
        &self,
        sealed: store::SealedFinish,
        room: &mut Reservation,
    ) -> Result<Option<QueueItem>, StoreError> {
        let keep = sealed.clone();
        match (self.commit)(sealed) {
            Ok(claimed) => Ok(claimed),
            // The call was made and may be billed: the answer must not be lost.
            Err(cause) => match self.store.spill(room, &keep) {
                Ok(path) => Err(StoreError::Spilled {
                    path,
                    cause: cause.cause_text(),
                }),
                Err(_) => Err(cause),
            },
        }
    }
}

/// The audit entry's exit code, error and record count for a GBDFL answer;
/// `retry` when it is worth asking again.
fn answer_outcome(
    response: &Response,
    retry: bool,
    detail: Option<&str>,
) -> (ExitCode, Option<String>, u64) {
    match response.status {
        Some(Status::Valid) => (ExitCode::Ok, None, 1),
        Some(Status::Pending) => (ExitCode::Pending, Some("PENDING".to_owned()), 0),
        _ => (
            if retry {
                ExitCode::Queued
            } else {
                ExitCode::NotValid
            },
            Some(format!(
                "{}{}",
                response
                    .status
                    .as_ref()
                    .map(Status::as_str)
                    .unwrap_or("no status"),
                detail.map(|d| format!(" ({d})")).unwrap_or_default()
            )),
            0,
        ),
    }
}

/// What becomes of the queue item after a call, in the store's terms.
fn after<'s>(next: &Next, last_status: &'s str, error_text: &'s str) -> After<'s> {
    match next {
        Next::Done => After::Done,
        Next::Queued { next_try, .. } => After::Retry {
            next_try: *next_try,
            status: Some(last_status),
            error: error_text,
        },
        Next::Stop { .. } => After::Restore,
        Next::InDoubt { .. } => After::InDoubt {
            status: Some(last_status),
            error: error_text,
        },
    }
}

/// What an operator can do about a request in doubt; ends every message of one.
pub const IN_DOUBT_ADVICE: &str = "It is not sent again on its own: `gbdfl sync --resend-in-doubt` sends it again (it may be billed twice), `gbdfl queue drop HANDLE` (the first column of `gbdfl queue`) gives it up";

/// What to tell the operator for a refusal, by the service's message.
pub fn refusal_advice(http_status: u16, message: &str) -> &'static str {
    let m = message.to_lowercase();
    if m.contains("organization not found") {
        "check GBDFL_API_KEY (or api_key_file): the service does not know this organisation's key"
    } else if m.contains("session not found") {
        "check the --session id: it must be the face2face backend session of this subject, less than 3 hours old"
    } else if m.contains("subscription") || m.contains("access to gbdfl") {
        "the organisation's GBDFL subscription is missing, not started or expired: ask whoever manages the biometric.kz personal cabinet"
    } else if http_status == 422 {
        "the service rejected the request's shape: this is a gbdfl bug, please report it"
    } else {
        "see the service's message above"
    }
}

/// Advice for a non-VALID status, by failure reason.
pub fn status_advice(response: &Response) -> &'static str {
    let detail = response
        .failure_reason
        .as_ref()
        .and_then(|f| f.detail.as_deref())
        .unwrap_or("")
        .to_lowercase();
    let kind = response
        .failure_reason
        .as_ref()
        .and_then(|f| f.kind.as_deref())
        .unwrap_or("");
    match response.status {
        Some(Status::Pending) => {
            "the answer is not ready yet: `gbdfl sync` (or the same fetch) asks again; give it a minute"
        }
        _ if kind == "SERVICE_ERROR" => {
            "the state service could not be reached by biometric.kz: try again later"
        }
        _ if detail.contains("expired") => {
            "the subject's verifications have expired: the subject must pass liveness and e-document checks again"
        }
        _ if detail.contains("face2face")
            || detail.contains("liveness")
            || detail.contains("edocument") =>
        {
            "the subject's biometric checks did not pass: repeat the face2face verification"
        }
        Some(Status::NotFound) => {
            "the State Database has no data for this IIN: check the number with the subject"
        }
        Some(Status::Timeout) => {
            "the token from the state service expired: repeat the verification and fetch again"
        }
        Some(Status::Invalid) => {
            "the state service sent an invalid token: repeat the verification and fetch again"
        }
        _ => "no record was received; see the status and reason above",
    }
}
