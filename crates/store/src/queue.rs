//! The queue of requests waiting to be sent, and paid-call statistics.
//!
//! Rules this module keeps: one item per IIN and session (a keyed index,
//! `request`, is `UNIQUE` in schema.sql); an item is claimed in a committed
//! transaction before its call is made, and the call's lookup is recorded
//! in the same transaction that takes the item off the queue or
//! reschedules it, so no request is paid twice
//! (`sync::two_syncs_at_once_send_every_item_exactly_once`,
//! `sync::a_fetch_racing_a_sync_never_pays_twice`,
//! `sync::sigkill_at_random_moments_never_pays_twice` in tests/cli); an
//! item whose claim ran out (its process died mid-call) is *in doubt* and
//! is only claimed again when the caller says so, because the service may
//! already have answered and billed it (tests/cli/billing.rs). Personal
//! fields are stored only sealed (the backend's queue row holds them as
//! bytes), bound as [`sealed::SEALED`](crate::sealed::SEALED) lists.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};
use rusqlite::Connection;
use zeroize::Zeroizing;

use super::sqlite::{self, QueueRow};
use super::{
    AuditEntry, LookupId, NewLookup, Outcome, Reached, Record, Source, Store, StoreError,
    enumerated, is_paid_call, parse_time, time_text,
};
use crate::crypto;
use crate::sealed::QueueBinding;
use gbdfl_core::iin::Iin;

/// A request to queue. Personal fields are plaintext here and sealed by the store.
#[derive(Debug)]
pub struct NewRequest<'a> {
    /// The person to look up; stored sealed, with a keyed index.
    pub iin: &'a Iin,
    /// The session the request belongs to; stored sealed.
    pub session_id: &'a str,
    /// Why the staff member asked; stored sealed.
    pub purpose: Option<&'a str>,
    /// The staff member who asked, as declared.
    pub operator: &'a str,
    /// The machine that asked.
    pub host: &'a str,
    /// When it was queued.
    pub queued_at: DateTime<Utc>,
    /// Never sent after this: the end of the 3-hour window.
    pub deadline: DateTime<Utc>,
}

/// Where a queue item stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueState {
    /// Waiting to be sent (now, or after its next try time).
    Waiting,
    /// A process is sending it now.
    Sending,
    /// Its process died while sending it: the service may have answered and
    /// billed the call. Sent again only on request (`sync --resend-in-doubt`).
    InDoubt,
    /// Its deadline passed before it could be sent; it will not be sent.
    Expired,
}

/// Re-seals one value: (table, column, row id, sealed, key version) to sealed.
/// Opens one sealed value under the old key and seals it under the new
/// one: (table, column, row id, the row's binding if its table has one,
/// the value, its key version).
pub(super) type Reseal<'a> =
    dyn Fn(&str, &str, &str, Option<&[u8]>, &[u8], i64) -> Result<Vec<u8>, StoreError> + 'a;

impl QueueState {
    /// The state as shown (`WAITING`, `SENDING`, `IN_DOUBT`, `EXPIRED`).
    pub fn as_str(self) -> &'static str {
        match self {
            QueueState::Waiting => "WAITING",
            QueueState::Sending => "SENDING",
            QueueState::InDoubt => "IN_DOUBT",
            QueueState::Expired => "EXPIRED",
        }
    }
}

/// A queue item, opened.
#[derive(Debug, Clone)]
pub struct QueueItem {
    /// The item's id.
    pub id: String,
    /// The IIN. Personal data: mask it for display.
    pub iin: Iin,
    /// The session the request belongs to, opened.
    pub session_id: String,
    /// Why the staff member asked, opened.
    pub purpose: Option<String>,
    /// The staff member who asked, as declared.
    pub operator: String,
    /// The machine that asked.
    pub host: String,
    /// When it was queued.
    pub queued_at: DateTime<Utc>,
    /// Never sent after this: the end of the 3-hour window.
    pub deadline: DateTime<Utc>,
    /// Where it stands.
    pub state: QueueState,
    /// How many times it was claimed to be sent (a restored claim does
    /// not count).
    pub attempts: u32,
    /// Not sent again before this time.
    pub next_try_at: DateTime<Utc>,
    /// The GBDFL status of its last answer, if one came.
    pub last_status: Option<String>,
    /// What went wrong with its last call, opened.
    pub last_error: Option<String>,
    /// Who holds the claim, when claimed: an owner text (`PID HOST RUN`,
    /// [`owner`](crate::owner)).
    pub claimed_by: Option<String>,
}

/// A call's end, sealed by [`Store::seal_finish`], to be committed by
/// [`Store::commit_finishes`] (possibly by another thread, with others), or
/// kept in a spill file when that fails.
#[derive(Clone, serde::Serialize, serde::Deserialize)]
pub struct SealedFinish {
    item_id: String,
    owner: String,
    lookup_row: Option<sqlite::LookupRow>,
    audit: Option<AuditEntry>,
    after: SealedAfter,
    /// The format version its sealed values follow (absent in a spill
    /// file of an older gbdfl: version 5, sealed again when taken in).
    #[serde(default = "format_before_6")]
    format: i64,
}

fn format_before_6() -> i64 {
    5
}

impl SealedFinish {
    /// Seals again, under format version 6, the lookup of a spill file an
    /// older gbdfl wrote.
    pub(crate) fn up_to_date(&mut self, store: &Store) -> Result<(), StoreError> {
        if self.format < sqlite::SCHEMA_VERSION
            && let Some(row) = &mut self.lookup_row
        {
            store.reseal_v5_lookup(row)?;
        }
        self.format = sqlite::SCHEMA_VERSION;
        Ok(())
    }

    /// Whether committing it leaves the item in doubt.
    pub fn leaves_in_doubt(&self) -> bool {
        matches!(self.after, SealedAfter::InDoubt { .. })
    }
}

#[derive(Clone, serde::Serialize, serde::Deserialize)]
enum SealedAfter {
    Done,
    Retry {
        next_try: String,
        status: Option<String>,
        error_enc: Vec<u8>,
    },
    InDoubt {
        at: String,
        status: Option<String>,
        error_enc: Vec<u8>,
    },
    Restore,
}

/// Who claims the next due item, and which to pass over.
#[derive(Clone, Copy)]
pub struct NextClaim<'a> {
    /// The claimant's owner text ([`owner`](crate::owner)).
    pub owner: &'a str,
    /// When the claim runs out: after it, an unfinished item is in doubt.
    pub until: DateTime<Utc>,
    /// Claim items whose earlier call was interrupted, too.
    pub in_doubt: bool,
    /// Item ids the caller does not want claimed now (e.g. one that used up
    /// its tries in this run).
    pub skip: &'a (dyn Fn(&str) -> bool + Sync),
}

/// What becomes of a claimed item once its call has ended.
#[derive(Debug)]
pub enum After<'a> {
    /// It got its final answer: off the queue.
    Done,
    /// Try again, not before `next_try`.
    Retry {
        /// The earliest time it is sent again.
        next_try: DateTime<Utc>,
        /// The GBDFL status of the answer, if one came.
        status: Option<&'a str>,
        /// What went wrong; stored sealed.
        error: &'a str,
    },
    /// Put back exactly as it was before the claim (the call did not count:
    /// an answer that fails for every item, such as an unknown API key).
    Restore,
    /// The call may have reached the service and been billed, but left no
    /// usable answer: the item is in doubt from now on, and is sent again
    /// only when the operator says so (`sync --resend-in-doubt`).
    InDoubt {
        /// The GBDFL status of the answer, if one came.
        status: Option<&'a str>,
        /// What went wrong; stored sealed.
        error: &'a str,
    },
}

/// How `begin_fetch` found a request.
#[derive(Debug)]
pub enum Begin {
    /// A VALID record younger than max-age is stored: no call is needed.
    Fresh(Box<Record>),
    /// The item is claimed by this caller: make the call, then `finish` it.
    Claimed(QueueItem),
    /// The item is queued (now or earlier) and was not claimed: asked
    /// without a claim, or waiting.
    Queued(QueueItem),
    /// Another process is sending this very request now.
    Busy(QueueItem),
    /// An earlier call of this request was interrupted; it may have been billed.
    InDoubt(QueueItem),
    /// The request's deadline has passed.
    Expired(QueueItem),
}

/// The counts of one UTC day: lookups (paid calls, cache answers,
/// organisation cache answers, attempts never sent) and expired requests. The one per-day count behind `gbdfl
/// stats` and the summary report.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DayStats {
    /// The UTC day.
    pub day: Option<NaiveDate>,
    /// Paid calls ([`is_paid_call`](crate::is_paid_call)): calls that
    /// reached or may have reached the service, whatever came back.
    pub paid_calls: u64,
    /// Attempts that provably never reached the service (no connection, or
    /// its own 429/503 refusal): nothing billed.
    pub not_sent: u64,
    /// Answers from the cache: paid calls avoided.
    pub from_cache: u64,
    /// Answers of the organisation cache ([`Source::Org`]): records another
    /// branch fetched, stored here; paid calls avoided.
    pub from_org: u64,
    /// Requests whose deadline passed (that day) before they could be sent.
    pub expired: u64,
    /// Paid calls that got a GBDFL answer, by its status (`""` for an
    /// answer without one).
    pub statuses: BTreeMap<String, u64>,
    /// Paid calls the service refused (HTTP 4xx).
    pub refused: u64,
    /// Paid calls with no usable answer (timeout, dropped connection, 5xx).
    pub unavailable: u64,
    /// Paid calls answered with something that is not a GBDFL answer.
    pub garbled: u64,
}

impl DayStats {
    /// Every lookup of the day: paid calls, cache answers, organisation
    /// cache answers, attempts never sent.
    pub fn lookups(&self) -> u64 {
        self.paid_calls + self.from_cache + self.from_org + self.not_sent
    }

    /// Paid calls avoided: answers of the cache and of the organisation
    /// cache.
    pub fn avoided(&self) -> u64 {
        self.from_cache + self.from_org
    }

    /// Paid calls by GBDFL status, or by how they ended when there was no
    /// status (`REFUSED`, `UNAVAILABLE`, `GARBLED`, `ANSWERED`): each paid
    /// call once.
    pub fn by_status(&self) -> BTreeMap<String, u64> {
        let mut by = BTreeMap::new();
        for (status, n) in &self.statuses {
            let key = if status.is_empty() {
                "ANSWERED"
            } else {
                status
            };
            *by.entry(key.to_owned()).or_default() += n;
        }
        for (key, n) in [
            ("REFUSED", self.refused),
            ("UNAVAILABLE", self.unavailable),
            ("GARBLED", self.garbled),
        ] {
            if n > 0 {
                *by.entry(key.to_owned()).or_default() += n;
            }
        }
        by
    }

    /// Adds the counts of `other` (a total over days).
    pub fn add(&mut self, other: &DayStats) {
        self.paid_calls += other.paid_calls;
        self.not_sent += other.not_sent;
        self.from_cache += other.from_cache;
        self.from_org += other.from_org;
        self.expired += other.expired;
        self.refused += other.refused;
        self.unavailable += other.unavailable;
        self.garbled += other.garbled;
        for (k, v) in &other.statuses {
            *self.statuses.entry(k.clone()).or_default() += v;
        }
    }

    /// Counts one lookup: a cache answer, an attempt never sent, or a paid
    /// call under how it ended (its outcome, then its status).
    fn count(
        &mut self,
        source: Source,
        outcome: Outcome,
        status: Option<String>,
        reached: Option<Reached>,
    ) {
        self.count_many(source, outcome, status, reached, 1);
    }

    /// Counts `n` lookups alike (another store's, counted by its server,
    /// head office's summary over its branches), as [`Store::stats`]
    /// counts each of its own.
    pub fn count_many(
        &mut self,
        source: Source,
        outcome: Outcome,
        status: Option<String>,
        reached: Option<Reached>,
        n: u64,
    ) {
        match source {
            Source::Cache => {
                self.from_cache += n;
                return;
            }
            Source::Org => {
                self.from_org += n;
                return;
            }
            Source::Service => {}
        }
        if !is_paid_call(source, reached) {
            self.not_sent += n;
            return;
        }
        self.paid_calls += n;
        match outcome {
            Outcome::Refused => self.refused += n,
            Outcome::Unavailable => self.unavailable += n,
            Outcome::Garbled => self.garbled += n,
            Outcome::Answered | Outcome::Cached => {
                *self.statuses.entry(status.unwrap_or_default()).or_default() += n;
            }
        }
    }
}

/// The fields a queue item's sealed values are bound to, written out.
pub(crate) fn queue_binding(row: &QueueRow) -> Result<Vec<u8>, StoreError> {
    let mut out = Vec::with_capacity(160);
    QueueBinding {
        subject: &row.subject,
        request: &row.request,
        queued_at: sqlite::ms(&row.queued_at)?,
        deadline: sqlite::ms(&row.deadline)?,
    }
    .write(&mut out);
    Ok(out)
}

impl Store {
    /// Seals one value of the queue item `id` whose fixed fields are
    /// `binding` ([`queue_binding`]), under the current key.
    fn seal_queue(
        &self,
        id: &str,
        binding: &[u8],
        column: &str,
        plain: &[u8],
    ) -> Result<Vec<u8>, StoreError> {
        let mut aad = Vec::new();
        crypto::bound_data_into(&mut aad, "queue", column, id, self.key_version, binding);
        self.keys
            .seal(plain, &aad)
            .map_err(|e| StoreError::Corrupt {
                id: id.to_owned(),
                column: "seal",
                reason: e.to_string(),
            })
    }

    /// The binding of a queue item as read ([`queue_binding`]).
    fn item_binding(&self, item: &QueueItem) -> Vec<u8> {
        let mut out = Vec::with_capacity(160);
        QueueBinding {
            subject: &self.subject_of(&item.iin),
            request: &self.keys.request_index(item.iin.as_str(), &item.session_id),
            queued_at: item.queued_at.timestamp_millis(),
            deadline: item.deadline.timestamp_millis(),
        }
        .write(&mut out);
        out
    }

    fn open_queue(
        &self,
        row: &QueueRow,
        column: &'static str,
        sealed: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, StoreError> {
        let binding = queue_binding(row)?;
        self.open_sealed(
            "queue",
            column,
            &row.id,
            row.key_version,
            Some(&binding),
            sealed,
        )
    }

    fn open_queue_text(
        &self,
        row: &QueueRow,
        column: &'static str,
        sealed: Option<&[u8]>,
    ) -> Result<Option<String>, StoreError> {
        sealed
            .map(|s| {
                self.open_queue(row, column, s)
                    .map(|b| String::from_utf8_lossy(&b).into_owned())
            })
            .transpose()
    }

    fn to_item(&self, row: &QueueRow, now: &str) -> Result<QueueItem, StoreError> {
        let iin_text = self
            .open_queue_text(row, "iin_enc", Some(&row.iin_enc))?
            .unwrap_or_default();
        let iin =
            Iin::parse_with(&iin_text, !row.iin_checked).map_err(|e| StoreError::Corrupt {
                id: row.id.clone(),
                column: "iin_enc",
                reason: e.to_string(),
            })?;
        let state = match (row.state.as_str(), &row.claimed_until) {
            ("expired", _) => QueueState::Expired,
            (_, Some(until)) if until.as_str() <= now => QueueState::InDoubt,
            (_, Some(_)) => QueueState::Sending,
            _ => QueueState::Waiting,
        };
        Ok(QueueItem {
            id: row.id.clone(),
            iin,
            session_id: self
                .open_queue_text(row, "session_enc", Some(&row.session_enc))?
                .unwrap_or_default(),
            purpose: self.open_queue_text(row, "purpose_enc", row.purpose_enc.as_deref())?,
            operator: row.operator.clone(),
            host: row.host.clone(),
            queued_at: parse_time(&row.queued_at),
            deadline: parse_time(&row.deadline),
            state,
            attempts: u32::try_from(row.attempts).unwrap_or(u32::MAX),
            next_try_at: parse_time(&row.next_try_at),
            last_status: row.last_status.clone(),
            last_error: self.open_queue_text(row, "error_enc", row.error_enc.as_deref())?,
            claimed_by: row.claimed_by.clone(),
        })
    }

    fn new_queue_row(&self, r: &NewRequest<'_>) -> Result<QueueRow, StoreError> {
        let id = LookupId::new().to_string();
        let at = time_text(r.queued_at);
        let mut row = QueueRow {
            subject: self.subject_of(r.iin).to_vec(),
            request: self
                .keys
                .request_index(r.iin.as_str(), r.session_id)
                .to_vec(),
            queued_at: at.clone(),
            deadline: time_text(r.deadline),
            state: if r.deadline > r.queued_at {
                "waiting"
            } else {
                "expired"
            }
            .to_owned(),
            attempts: 0,
            next_try_at: at,
            claimed_by: None,
            claimed_until: None,
            last_status: None,
            operator: r.operator.to_owned(),
            host: r.host.to_owned(),
            iin_checked: r.iin.is_checked(),
            key_version: i64::from(self.key_version),
            iin_enc: Vec::new(),
            session_enc: Vec::new(),
            purpose_enc: None,
            error_enc: None,
            id,
        };
        let binding = queue_binding(&row)?;
        let seal = |column: &str, plain: &[u8]| self.seal_queue(&row.id, &binding, column, plain);
        let iin_enc = seal("iin_enc", r.iin.as_str().as_bytes())?;
        let session_enc = seal("session_enc", r.session_id.as_bytes())?;
        let purpose_enc = r
            .purpose
            .map(|p| seal("purpose_enc", p.as_bytes()))
            .transpose()?;
        row.iin_enc = iin_enc;
        row.session_enc = session_enc;
        row.purpose_enc = purpose_enc;
        Ok(row)
    }

    /// Queues a request unless the same IIN and session is already queued.
    /// Returns the item, and whether it was queued now.
    pub fn enqueue(&self, r: &NewRequest<'_>) -> Result<(QueueItem, bool), StoreError> {
        let row = self.new_queue_row(r)?;
        let now = self.now_text();
        sqlite::immediate(&self.conn, |c| {
            let added = sqlite::insert_queue(c, &row)?;
            let stored =
                sqlite::queue_by_request(c, &row.request)?.ok_or_else(|| StoreError::Corrupt {
                    id: row.id.clone(),
                    column: "request",
                    reason: "queued item vanished".into(),
                })?;
            Ok((self.to_item(&stored, &now)?, added))
        })
    }

    /// Starts a fetch, in one transaction so that no other process can pay
    /// for the same request in between: answers from a fresh cached record
    /// (unless `max_age` is `None`), else queues the request if it is not
    /// yet and, with `claim = Some((owner, until))`, claims it. With
    /// `in_doubt`, an interrupted earlier call does not stop the claim.
    pub fn begin_fetch(
        &self,
        r: &NewRequest<'_>,
        max_age: Option<Duration>,
        claim: Option<(&str, DateTime<Utc>)>,
        in_doubt: bool,
    ) -> Result<Begin, StoreError> {
        let row = self.new_queue_row(r)?;
        sqlite::immediate(&self.conn, |c| {
            self.begin_in(c, r, &row, max_age, claim, in_doubt)
        })
    }

    /// [`begin_fetch`](Self::begin_fetch) without a claim for many requests
    /// (a batch file) in one transaction: one write to disk for all.
    pub fn queue_many(
        &self,
        requests: &[NewRequest<'_>],
        max_age: Option<Duration>,
    ) -> Result<Vec<Begin>, StoreError> {
        let rows = requests
            .iter()
            .map(|r| self.new_queue_row(r))
            .collect::<Result<Vec<_>, _>>()?;
        sqlite::immediate(&self.conn, |c| {
            requests
                .iter()
                .zip(&rows)
                .map(|(r, row)| self.begin_in(c, r, row, max_age, None, false))
                .collect()
        })
    }

    fn begin_in(
        &self,
        c: &Connection,
        r: &NewRequest<'_>,
        row: &QueueRow,
        max_age: Option<Duration>,
        claim: Option<(&str, DateTime<Utc>)>,
        in_doubt: bool,
    ) -> Result<Begin, StoreError> {
        let now = time_text(r.queued_at);
        if max_age.is_some() {
            self.verify_subject(c, &row.subject)?;
        }
        if let Some(max_age) = max_age
            && let Some(found) = sqlite::latest_valid(c, &row.subject, &self.latest_believed())?
        {
            let at =
                DateTime::from_timestamp_millis(found.answered_at.unwrap_or(found.requested_at))
                    .unwrap_or(DateTime::<Utc>::MIN_UTC);
            let age = r
                .queued_at
                .signed_duration_since(at)
                .to_std()
                .unwrap_or(Duration::ZERO);
            if age <= max_age {
                let lookup = self.to_lookup(&found)?;
                let body = self.open_response(&found)?.unwrap_or_default();
                return Ok(Begin::Fresh(Box::new(Record { lookup, body })));
            }
        }
        let existing = sqlite::queue_by_request(c, &row.request)?;
        if existing.is_none() {
            sqlite::insert_queue(c, row)?;
        }
        // A request already past its deadline (the session was too long
        // ago) is expired from the start.
        sqlite::expire_queue(c, &now)?;
        let stored = sqlite::queue_by_request(c, &row.request)?.unwrap_or_else(|| row.clone());
        let item = self.to_item(&stored, &now)?;
        match item.state {
            QueueState::Expired => return Ok(Begin::Expired(item)),
            QueueState::Sending => return Ok(Begin::Busy(item)),
            QueueState::InDoubt if !in_doubt => return Ok(Begin::InDoubt(item)),
            QueueState::InDoubt | QueueState::Waiting => {}
        }
        let Some((owner, until)) = claim else {
            return Ok(Begin::Queued(item));
        };
        sqlite::claim_queue(c, &item.id, owner, &time_text(until))?;
        let claimed = sqlite::queue_by_id(c, &item.id)?.unwrap_or(stored);
        Ok(Begin::Claimed(self.to_item(&claimed, &now)?))
    }

    /// Marks waiting items past their deadline as expired, then claims the
    /// item with the soonest deadline that is due now, skipping the ids in
    /// `skip`. With `in_doubt`, items whose earlier call was interrupted are
    /// claimed too.
    pub fn claim_next(
        &self,
        owner: &str,
        until: DateTime<Utc>,
        in_doubt: bool,
        skip: &(dyn Fn(&str) -> bool + Sync),
    ) -> Result<Option<QueueItem>, StoreError> {
        let next = NextClaim {
            owner,
            until,
            in_doubt,
            skip,
        };
        sqlite::immediate(&self.conn, |c| self.claim_in(c, &next))
    }

    /// `claim_next` inside the caller's transaction.
    fn claim_in(
        &self,
        c: &Connection,
        next: &NextClaim<'_>,
    ) -> Result<Option<QueueItem>, StoreError> {
        let now = self.now_text();
        sqlite::expire_queue(c, &now)?;
        let mut limit = 16;
        loop {
            let due = sqlite::queue_due(c, &now, next.in_doubt, limit)?;
            let n = due.len() as i64;
            if let Some(row) = due.into_iter().find(|r| !(next.skip)(&r.id)) {
                sqlite::claim_queue(c, &row.id, next.owner, &time_text(next.until))?;
                let claimed = sqlite::queue_by_id(c, &row.id)?.unwrap_or(row);
                return Ok(Some(self.to_item(&claimed, &now)?));
            }
            if n < limit {
                return Ok(None);
            }
            limit *= 4;
        }
    }

    /// The next try of every unclaimed waiting item that can still be sent
    /// before its deadline: (item id, time).
    pub fn next_due(&self) -> Result<Vec<(String, DateTime<Utc>)>, StoreError> {
        Ok(sqlite::queue_next_tries(&self.conn, &self.now_text())?
            .into_iter()
            .map(|(id, t)| (id, parse_time(&t)))
            .collect())
    }

    /// Ends a claimed item's call: records its lookup (if a call was made)
    /// with its audit entry, and applies `after`, in one transaction. If the
    /// claim is no longer `owner`'s, the lookup is still recorded (the
    /// answer was received) but the item is left alone.
    pub fn finish(
        &self,
        item: &QueueItem,
        owner: &str,
        lookup: Option<&NewLookup<'_>>,
        audit: Option<&AuditEntry>,
        after: After<'_>,
    ) -> Result<(), StoreError> {
        let sealed = self.seal_finish(item, owner, lookup, audit, after)?;
        self.commit_finishes(&[(&sealed, None)]).map(|_| ())
    }

    /// The encryption half of [`finish`](Self::finish), done outside any
    /// transaction (so a `sync` worker seals while another commits).
    pub fn seal_finish(
        &self,
        item: &QueueItem,
        owner: &str,
        lookup: Option<&NewLookup<'_>>,
        audit: Option<&AuditEntry>,
        after: After<'_>,
    ) -> Result<SealedFinish, StoreError> {
        let lookup_row = lookup.map(|l| self.lookup_row(l)).transpose()?;
        let binding = self.item_binding(item);
        let after = match after {
            After::Done => SealedAfter::Done,
            After::Retry {
                next_try,
                status,
                error,
            } => SealedAfter::Retry {
                next_try: time_text(next_try),
                status: enumerated(status),
                error_enc: self.seal_queue(&item.id, &binding, "error_enc", error.as_bytes())?,
            },
            After::Restore => SealedAfter::Restore,
            After::InDoubt { status, error } => SealedAfter::InDoubt {
                at: self.now_text(),
                status: enumerated(status),
                error_enc: self.seal_queue(&item.id, &binding, "error_enc", error.as_bytes())?,
            },
        };
        let audit = audit.map(|a| AuditEntry {
            subject: Some(self.subject_of(&item.iin)),
            lookup_id: lookup_row.as_ref().map(|r| r.id.clone()),
            ..a.clone()
        });
        Ok(SealedFinish {
            format: sqlite::SCHEMA_VERSION,
            item_id: item.id.clone(),
            owner: owner.to_owned(),
            lookup_row,
            audit,
            after,
        })
    }

    /// Commits the ends of several calls in one transaction (one write to
    /// disk for all of them), each followed by its claim of a next item
    /// when one is asked for. Returns the claimed items, in order.
    pub fn commit_finishes(
        &self,
        batch: &[(&SealedFinish, Option<NextClaim<'_>>)],
    ) -> Result<Vec<Option<QueueItem>>, StoreError> {
        sqlite::immediate(&self.conn, |c| {
            batch
                .iter()
                .map(|(f, next)| {
                    self.apply_finish(c, f)?;
                    match next {
                        Some(n) => {
                            let skip = |id: &str| id == f.item_id || (n.skip)(id);
                            self.claim_in(c, &NextClaim { skip: &skip, ..*n })
                        }
                        None => Ok(None),
                    }
                })
                .collect()
        })
    }

    /// Commits a call's end kept in a spill file, unless its lookup is
    /// already stored (the spill was taken in before, and its file not yet
    /// removed).
    pub(super) fn take_in_finish(
        &self,
        c: &Connection,
        f: &SealedFinish,
    ) -> Result<(), StoreError> {
        if let Some(row) = &f.lookup_row
            && sqlite::lookup_by_id(c, &row.id)?.is_some()
        {
            return Ok(());
        }
        self.apply_finish(c, f)
    }

    fn apply_finish(&self, c: &Connection, f: &SealedFinish) -> Result<(), StoreError> {
        if let Some(row) = &f.lookup_row {
            sqlite::insert_lookup(c, row)?;
        }
        if let Some(a) = &f.audit {
            self.append_audit_in(c, a)?;
        }
        let Some(mut row) = sqlite::queue_by_id(c, &f.item_id)? else {
            return Ok(());
        };
        if row.claimed_by.as_deref() != Some(f.owner.as_str()) {
            return Ok(());
        }
        match &f.after {
            SealedAfter::Done => {
                sqlite::delete_queue(c, &f.item_id)?;
            }
            SealedAfter::Retry {
                next_try,
                status,
                error_enc,
            } => {
                row.next_try_at = next_try.clone();
                row.last_status = status.clone();
                row.error_enc = Some(error_enc.clone());
                row.key_version = i64::from(self.key_version);
                sqlite::release_queue(c, &row)?;
            }
            SealedAfter::InDoubt {
                at,
                status,
                error_enc,
            } => {
                row.last_status = status.clone();
                row.error_enc = Some(error_enc.clone());
                row.key_version = i64::from(self.key_version);
                sqlite::queue_in_doubt(c, &row, at)?;
            }
            SealedAfter::Restore => {
                // The claim counted an attempt; this one did not happen.
                row.attempts = (row.attempts - 1).max(0);
                // Keep the last error sealed as it was, under its own key version.
                sqlite::release_queue(c, &row)?;
            }
        }
        Ok(())
    }

    /// Every queue item, soonest deadline first.
    pub fn queue_items(&self) -> Result<Vec<QueueItem>, StoreError> {
        let now = self.now_text();
        sqlite::queue_all(&self.conn)?
            .iter()
            .map(|r| self.to_item(r, &now))
            .collect()
    }

    /// Ends the claim `owner` holds on item `id` now, because the claiming
    /// process is known to be gone: the item shows as in doubt at once
    /// instead of when its lease runs out. Returns whether a claim ended.
    pub fn end_claim(&self, id: &str, owner: &str) -> Result<bool, StoreError> {
        let now = self.now_text();
        sqlite::immediate(&self.conn, |c| sqlite::queue_end_claim(c, id, owner, &now))
    }

    /// Removes one queue item with its audit entry; returns whether it was there.
    pub fn drop_item(&self, id: &str, audit: &AuditEntry) -> Result<Option<QueueItem>, StoreError> {
        let now = self.now_text();
        sqlite::immediate(&self.conn, |c| {
            let Some(row) = sqlite::queue_by_id(c, id)? else {
                return Ok(None);
            };
            let item = self.to_item(&row, &now)?;
            sqlite::delete_queue(c, id)?;
            let mut a = audit.clone();
            a.subject = Some(self.subject_of(&item.iin));
            a.records = 1;
            self.append_audit_in(c, &a)?;
            Ok(Some(item))
        })
    }

    /// Removes a queue item answered otherwise (the organisation cache),
    /// with its audit entry, only while it still waits unclaimed: an item
    /// another process claimed since is being sent, and stays. Returns
    /// whether it was removed.
    pub fn drop_waiting_item(&self, id: &str, audit: &AuditEntry) -> Result<bool, StoreError> {
        let now = self.now_text();
        sqlite::immediate(&self.conn, |c| {
            let Some(row) = sqlite::queue_by_id(c, id)? else {
                return Ok(false);
            };
            let item = self.to_item(&row, &now)?;
            if item.state != QueueState::Waiting || item.claimed_by.is_some() {
                return Ok(false);
            }
            sqlite::delete_queue(c, id)?;
            let mut a = audit.clone();
            a.subject = Some(self.subject_of(&item.iin));
            self.append_audit_in(c, &a)?;
            Ok(true)
        })
    }

    /// Lookups in `[from, to)` counted per UTC day (see [`DayStats`]), and
    /// expired queue items by the UTC day of their deadline; oldest day
    /// first, only days with something in them. Reads only the plaintext
    /// columns (the detail of a call recorded before `reached` existed is
    /// opened to tell whether it was sent).
    pub fn stats(
        &self,
        from: Option<DateTime<Utc>>,
        to: Option<DateTime<Utc>>,
    ) -> Result<Vec<DayStats>, StoreError> {
        let millis = |t: DateTime<Utc>| t.timestamp_millis();
        let (from, to) = (from.map(millis), to.map(millis));
        let mut days: BTreeMap<NaiveDate, DayStats> = BTreeMap::new();
        let day = |ms: i64| {
            DateTime::from_timestamp_millis(ms)
                .unwrap_or(DateTime::<Utc>::MIN_UTC)
                .date_naive()
        };
        sqlite::each_lookup_stat(&self.conn, from, to, &mut |(
            at,
            source,
            outcome,
            status,
            reached,
        )| {
            days.entry(day(at))
                .or_default()
                .count(source, outcome, status, reached);
            Ok::<_, StoreError>(())
        })?;
        let now = millis(self.now());
        for t in sqlite::expired_queue_times(&self.conn, from, to, now)? {
            days.entry(day(t)).or_default().expired += 1;
        }
        Ok(days
            .into_iter()
            .map(|(day, mut s)| {
                s.day = Some(day);
                s
            })
            .collect())
    }

    /// Re-seals every queue item under `keys` (rekey), in the caller's transaction.
    pub(super) fn reseal_queue(
        &self,
        c: &Connection,
        reseal: &Reseal<'_>,
        version: i64,
    ) -> Result<u64, StoreError> {
        let rows = sqlite::queue_all(c)?;
        for mut q in rows.iter().cloned() {
            let (id, from) = (q.id.clone(), q.key_version);
            let binding = queue_binding(&q)?;
            for (col, v) in q.sealed_mut() {
                if let Some(v) = v {
                    *v = reseal("queue", col, &id, Some(&binding), v, from)?;
                }
            }
            q.key_version = version;
            sqlite::update_queue_sealed(c, &q)?;
        }
        Ok(rows.len() as u64)
    }

    /// Opens every sealed value of the queue (check); returns (items, problems).
    pub(super) fn check_queue(&self) -> Result<(u64, Vec<String>), StoreError> {
        let now = self.now_text();
        let rows = sqlite::queue_all(&self.conn)?;
        let problems = rows
            .iter()
            .filter_map(|r| self.to_item(r, &now).err().map(|e| e.to_string()))
            .collect();
        Ok((rows.len() as u64, problems))
    }
}
