//! Sending the queue: N workers claim items (soonest deadline first), make
//! the paid call, and record the answer; backoff with full jitter between
//! attempts of one item, Retry-After honoured, and a stop for everyone on an
//! answer that fails for every request.
//!
//! Workers seal their answers themselves, and one committer thread commits
//! all waiting answers in one transaction (group commit), each with its
//! worker's claim of the next item: the disk's sync time is paid once per
//! group, not twice per call. A worker's loop: make room for the answer,
//! claim, call ([`lookup::send_then`]), then tell the run how it ended.
//!
//! Rules this module keeps, and what holds each:
//! - every call goes through a claim committed in the database first
//!   (`Store::claim_next`), so two processes never send the same item
//!   (`two_syncs_at_once_send_every_item_exactly_once`,
//!   `sigkill_at_random_moments_never_pays_twice`);
//! - an item is called at most `max_attempts` times per run
//!   (`a_request_left_queued_is_not_counted_as_done_or_failed`);
//! - an item in doubt is sent only with `resend_in_doubt`, once per run
//!   (`tests/cli/billing.rs`);
//! - an answer that fails for every request stops the run, with the queue
//!   as it was (`an_organisation_error_stops_at_once_and_leaves_the_queue`);
//!   so do [`DOWN_AFTER`] calls in a row that cannot connect
//!   (`service_down_then_up`);
//! - the wait for a next try is on the store's clock
//!   (`a_wait_for_the_next_try_moves_a_test_clock_instead_of_sleeping`).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError, mpsc};
use std::time::Duration;

use chrono::{DateTime, Utc};

pub use crate::backoff::Backoff;
use crate::lookup::{self, Attempt, Fetched, Next};
use gbdfl_client::{Client, Delivery};
use gbdfl_store::{
    After, AuditEntry, NextClaim, QueueItem, Reservation, SealedFinish, Store, StoreError,
};

/// Set by Ctrl-C: claim nothing new, let calls in flight finish.
pub static STOP: AtomicBool = AtomicBool::new(false);

/// How one `sync` run works.
#[derive(Debug, Clone)]
pub struct Options {
    /// Workers sending at once, each with its own claim and connection.
    pub jobs: usize,
    /// The wait between calls of one item, and how many calls it gets.
    pub backoff: Backoff,
    /// Send again items in doubt (each once per run; it may be billed twice).
    pub resend_in_doubt: bool,
    /// The longest a worker waits for an item's next try before it leaves
    /// the item for a later run.
    pub max_wait: Duration,
    /// The audit entry of each call (command, operator, host, purpose).
    pub audit: AuditEntry,
    /// Send only these items (a batch file's own rows); `None`: the whole queue.
    pub only: Option<HashSet<String>>,
    /// Told once per run when workers wait more than a few seconds for the
    /// next try (backoff from earlier runs, Retry-After).
    pub on_wait: Option<fn(Duration)>,
}

/// How an item ended in this run.
#[derive(Debug)]
pub struct ItemEnd {
    /// The queue row as it was claimed for the call.
    pub item: QueueItem,
    /// How the call ended.
    pub fetched: Fetched,
    /// What becomes of the item.
    pub next: Next,
    /// This run will not call for the item again: it got its final answer,
    /// the run stops, or it used its attempts and waits for a later run.
    pub last_in_run: bool,
}

/// What a run did.
#[derive(Debug, Default)]
pub struct Report {
    /// Every call made, in the order they ended (a stop for the network's
    /// set-up is no call, and is not here).
    pub calls: Vec<ItemEnd>,
    /// Set when an answer failed for every request: the service's message.
    pub stopped: Option<String>,
    /// Set when the network is set up wrongly (certificate, proxy): what is
    /// wrong and which setting fixes it. Nothing was sent.
    pub network: Option<String>,
    /// Items left for a later run after `max_attempts` calls.
    pub gave_up: HashSet<String>,
    /// Set when the run ended early because nothing could connect.
    pub line_down: bool,
}

struct Shared {
    report: Mutex<Report>,
    tries: Mutex<HashMap<String, u32>>,
    stop: AtomicBool,
    /// Calls in a row that could not connect at all.
    not_connected: std::sync::atomic::AtomicU32,
    /// Whether `on_wait` was told about a long wait already.
    told_wait: AtomicBool,
    /// Items whose call in this run left them in doubt: not claimed again
    /// in this run, even with `resend_in_doubt` (that sends each once).
    went_in_doubt: Mutex<HashSet<String>>,
}

/// After this many calls in a row that could not even connect, the line is
/// down: the run ends and leaves the rest queued, instead of spending every
/// item's attempts (and minutes of backoff) on a dead line.
pub const DOWN_AFTER: u32 = 3;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Sends queued items until none is due within `max_wait` (or the run is
/// stopped). `on_call` sees each call as it ends. Each worker uses its own
/// connection to the database.
pub fn run(
    store: &Store,
    client: &Client,
    opts: &Options,
    on_call: &(dyn Fn(&ItemEnd) + Sync),
) -> Result<Report, StoreError> {
    let shared = Shared {
        report: Mutex::new(Report::default()),
        tries: Mutex::new(HashMap::new()),
        stop: AtomicBool::new(false),
        not_connected: std::sync::atomic::AtomicU32::new(0),
        told_wait: AtomicBool::new(false),
        went_in_doubt: Mutex::new(HashSet::new()),
    };
    lookup::release_orphaned_claims(store)?;
    let jobs = opts.jobs.max(1);
    let stores = (0..jobs)
        .map(|_| store.reopen())
        .collect::<Result<Vec<_>, _>>()?;
    let committer_store = store.reopen()?;
    // An item that used its attempts in this run waits for a later run.
    let gave_up = |id: &str| {
        opts.only.as_ref().is_some_and(|only| !only.contains(id))
            || lock(&shared.went_in_doubt).contains(id)
            || lock(&shared.tries)
                .get(id)
                .is_some_and(|n| *n >= opts.backoff.max_attempts)
    };
    let results: Vec<Result<(), StoreError>> = std::thread::scope(|s| {
        let (tx, rx) = mpsc::channel::<Commit>();
        let gave_up = &gave_up;
        s.spawn(move || committer(&committer_store, rx, opts, gave_up));
        let handles: Vec<_> = stores
            .into_iter()
            .enumerate()
            .map(|(w, st)| {
                let shared = &shared;
                let tx = tx.clone();
                s.spawn(move || {
                    Worker {
                        owner: lookup::claim_owner(w),
                        store: &st,
                        client,
                        opts,
                        shared,
                        gave_up,
                        commits: &tx,
                        on_call,
                    }
                    .run()
                })
            })
            .collect();
        drop(tx);
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    });
    for r in results {
        r?;
    }
    Ok(shared
        .report
        .into_inner()
        .unwrap_or_else(PoisonError::into_inner))
}

/// A worker's sealed answer for the committer, with its claim of a next item.
struct Commit {
    finish: SealedFinish,
    owner: String,
    until: DateTime<Utc>,
    reply: mpsc::Sender<Result<Option<QueueItem>, StoreError>>,
}

/// Commits the workers' answers: all that are waiting in one transaction
/// (group commit: one write to disk for several answers), each with the
/// claim of that worker's next item. Ends when every worker has gone.
fn committer(
    store: &Store,
    rx: mpsc::Receiver<Commit>,
    opts: &Options,
    gave_up: &(dyn Fn(&str) -> bool + Sync),
) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        batch.extend(rx.try_iter());
        let (jobs, replies): (Vec<_>, Vec<_>) = batch
            .iter()
            .map(|c| {
                let next = NextClaim {
                    owner: &c.owner,
                    until: c.until,
                    in_doubt: opts.resend_in_doubt,
                    skip: gave_up,
                };
                ((&c.finish, Some(next)), &c.reply)
            })
            .unzip();
        match store.commit_finishes(&jobs) {
            Ok(claimed) => {
                for (reply, item) in replies.into_iter().zip(claimed) {
                    let _ = reply.send(Ok(item));
                }
            }
            // One answer failed and took the transaction with it: commit
            // each alone, so each worker learns its own outcome.
            Err(_) => {
                for (job, reply) in jobs.into_iter().zip(replies) {
                    let one = store.commit_finishes(&[job]).map(|mut v| v.pop().flatten());
                    let _ = reply.send(one);
                }
            }
        }
    }
}

/// One worker of a run, on its own connection to the database: claims an
/// item, makes its call, hands the answer to the committer, and tells the
/// run how the call ended.
struct Worker<'a> {
    /// The owner of this worker's claims.
    owner: String,
    store: &'a Store,
    client: &'a Client,
    opts: &'a Options,
    shared: &'a Shared,
    gave_up: &'a (dyn Fn(&str) -> bool + Sync),
    commits: &'a mpsc::Sender<Commit>,
    on_call: &'a (dyn Fn(&ItemEnd) + Sync),
}

impl Worker<'_> {
    /// Sends items until none is due within `max_wait` or the run stops.
    /// A claimed item that is not sent is put back as it was.
    fn run(&self) -> Result<(), StoreError> {
        // The item claimed with the last answer, in the same transaction.
        let mut pending: Option<QueueItem> = None;
        // Room for the answer of this worker's calls, reserved once and used
        // again until a spill takes it.
        let mut room: Option<Reservation> = None;
        loop {
            if self.shared.stop.load(Ordering::SeqCst) || STOP.load(Ordering::SeqCst) {
                // Not sent: put it back as it was.
                return self.put_back(pending.take());
            }
            // Room for the next answer before the next call: with no room to
            // keep it, no call is made (a claimed item is put back).
            if !room.as_ref().is_some_and(|r| r.is_free()) {
                match self.store.reserve_spill(self.client.max_body_bytes()) {
                    Ok(r) => room = Some(r),
                    Err(e) => {
                        self.put_back(pending.take())?;
                        return Err(e);
                    }
                }
            }
            let Some(room) = room.as_mut() else {
                continue;
            };
            let claimed = match pending.take() {
                Some(item) => Some(item),
                None => self.store.claim_next(
                    &self.owner,
                    self.client.claim_until(self.store.now()),
                    self.opts.resend_in_doubt,
                    self.gave_up,
                )?,
            };
            let Some(item) = claimed else {
                if self.wait_for_next_try()? {
                    continue;
                }
                return Ok(());
            };
            let tries = self.count_try(&item.id);
            let (Attempt { fetched, next }, claimed) = self.send(&item, room)?;
            pending = claimed;
            let gives_up =
                matches!(next, Next::Queued { .. }) && tries >= self.opts.backoff.max_attempts;
            let down = self.line_is_down(&fetched);
            if down {
                self.shared.stop.store(true, Ordering::SeqCst);
            }
            let end = ItemEnd {
                // A run that stops (the line is down, or this or another call
                // said so) calls for no item again.
                last_in_run: !matches!(next, Next::Queued { .. })
                    || gives_up
                    || self.shared.stop.load(Ordering::SeqCst),
                item,
                fetched,
                next,
            };
            (self.on_call)(&end);
            self.report(end, down, gives_up);
        }
    }

    /// Puts a claimed item that was not sent back as it was.
    fn put_back(&self, item: Option<QueueItem>) -> Result<(), StoreError> {
        if let Some(item) = item {
            self.store
                .finish(&item, &self.owner, None, None, After::Restore)?;
        }
        Ok(())
    }

    /// Nothing is due now: waits (on the store's clock, a short step at a
    /// time) for the next try of an item still in play. `false` when there
    /// is none within `max_wait`, and the worker is done.
    fn wait_for_next_try(&self) -> Result<bool, StoreError> {
        let next = self
            .store
            .next_due()?
            .into_iter()
            .filter(|(id, _)| !(self.gave_up)(id))
            .map(|(_, t)| t)
            .min();
        let Some(next) = next else {
            return Ok(false);
        };
        let wait = (next - self.store.now()).to_std().unwrap_or(Duration::ZERO);
        if wait > self.opts.max_wait {
            return Ok(false);
        }
        if wait > Duration::from_secs(3)
            && let Some(tell) = self.opts.on_wait
            && !self.shared.told_wait.swap(true, Ordering::SeqCst)
        {
            tell(wait);
        }
        self.store
            .clock()
            .sleep(wait.min(Duration::from_millis(200)));
        Ok(true)
    }

    /// Counts a call of the item in this run; returns how many so far.
    fn count_try(&self, item_id: &str) -> u32 {
        let mut t = lock(&self.shared.tries);
        let n = t.entry(item_id.to_owned()).or_default();
        *n += 1;
        *n
    }

    /// Makes the paid call of a claimed item; its answer is committed by
    /// the committer with this worker's claim of its next item, which is
    /// returned with the attempt.
    fn send(
        &self,
        item: &QueueItem,
        room: &mut Reservation,
    ) -> Result<(Attempt, Option<QueueItem>), StoreError> {
        let commit = |finish: SealedFinish| self.commit(&item.id, finish);
        lookup::send_then(
            self.store,
            self.client,
            item,
            &self.owner,
            Some(&self.opts.audit),
            &self.opts.backoff,
            room,
            &commit,
            false,
        )
    }

    /// Hands a sealed answer to the committer and waits for its outcome:
    /// the next item claimed in the same transaction.
    fn commit(&self, item_id: &str, finish: SealedFinish) -> Result<Option<QueueItem>, StoreError> {
        // Before the commit: another worker's claim in the same or the
        // next transaction must already pass over it.
        if finish.leaves_in_doubt() {
            lock(&self.shared.went_in_doubt).insert(item_id.to_owned());
        }
        let (reply, answer) = mpsc::channel();
        let gone = || {
            StoreError::Io(std::io::Error::other(
                "the sync's committing thread has stopped",
            ))
        };
        self.commits
            .send(Commit {
                finish,
                owner: self.owner.clone(),
                until: self.client.claim_until(self.store.now()),
                reply,
            })
            .map_err(|_| gone())?;
        answer.recv().map_err(|_| gone())?
    }

    /// Counts calls in a row that could not connect at all; `true` when
    /// this one makes [`DOWN_AFTER`]. Any call that got further resets it.
    fn line_is_down(&self, fetched: &Fetched) -> bool {
        let not_connected = &self.shared.not_connected;
        match fetched {
            Fetched::Unavailable {
                delivery: Delivery::NotSent,
                http_status: None,
                ..
            } => not_connected.fetch_add(1, Ordering::SeqCst) + 1 >= DOWN_AFTER,
            Fetched::Unavailable {
                delivery: Delivery::NotSent,
                ..
            } => false,
            _ => {
                not_connected.store(0, Ordering::SeqCst);
                false
            }
        }
    }

    /// Adds a call's end to the run's report: the line down, a stop for
    /// everyone (and why), an item left for a later run, and the call
    /// itself unless it was a stop for the network's set-up.
    fn report(&self, end: ItemEnd, down: bool, gives_up: bool) {
        let mut report = lock(&self.shared.report);
        if down {
            report.line_down = true;
        }
        match &end.next {
            Next::Stop { .. } => {
                self.shared.stop.store(true, Ordering::SeqCst);
                note_stop(&mut report, &end.fetched);
            }
            Next::Queued { .. } if gives_up => {
                report.gave_up.insert(end.item.id.clone());
            }
            _ => {}
        }
        // A stop for the network's set-up made no call: nothing to count.
        if !matches!(end.fetched, Fetched::NetworkConfig { .. }) {
            report.calls.push(end);
        }
    }
}

/// Keeps why the run stopped, the first reason of each kind: the network's
/// set-up, or an answer that fails for every request.
fn note_stop(report: &mut Report, fetched: &Fetched) {
    if report.network.is_none()
        && let Fetched::NetworkConfig { message, .. } = fetched
    {
        report.network = Some(message.clone());
    }
    if report.stopped.is_none()
        && let Fetched::Refused {
            http_status,
            message,
            ..
        } = fetched
    {
        report.stopped = Some(format!(
            "HTTP {http_status} {message}: {}",
            lookup::refusal_advice(*http_status, message)
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_full_jitter_under_an_exponential_cap_and_honours_retry_after() {
        let b = Backoff {
            base: Duration::from_millis(100),
            cap: Duration::from_millis(1000),
            max_attempts: 5,
        };
        let mut seen_spread = false;
        for attempts in 1..=8u32 {
            let ceiling = Duration::from_millis((100u64 << (attempts - 1)).min(1000));
            let waits: Vec<Duration> = (0..200).map(|_| b.delay(attempts, None)).collect();
            assert!(waits.iter().all(|w| *w <= ceiling), "attempt {attempts}");
            // Full jitter: spread over the whole range, not clustered at the top.
            seen_spread |= waits.iter().any(|w| *w < ceiling / 4);
        }
        assert!(seen_spread);
        // Retry-After is a floor, even above the cap.
        for _ in 0..50 {
            assert!(b.delay(1, Some(Duration::from_secs(7))) >= Duration::from_secs(7));
        }
    }

    /// A run waiting for a request's next try (Retry-After) waits on the
    /// store's clock: on a test clock it moves the clock on and returns at
    /// once, and the run ends with the answer instead of spinning.
    #[test]
    fn a_wait_for_the_next_try_moves_a_test_clock_instead_of_sleeping() {
        use gbdfl_core::clock::{Clock, TestClock};
        let emu = gbdfl_emulator::Emulator::start(
            "127.0.0.1:0",
            gbdfl_emulator::EmulatorConfig {
                api_key: None,
                today: None,
                faults: gbdfl_emulator::Faults {
                    rate_limit_first: 1,
                    retry_after_secs: 60,
                    ..Default::default()
                },
            },
        )
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let start: DateTime<Utc> = "2030-06-01T10:00:00Z".parse().unwrap();
        let clock = TestClock::shared(start);
        let key = gbdfl_store::crypto::MasterKey::from_bytes([5; gbdfl_store::crypto::KEY_LEN]);
        let (store, _) =
            Store::init_with(&dir.path().join("gbdfl.db"), &key, clock.clone()).unwrap();
        let client = Client::new(
            &gbdfl_client::ClientConfig {
                base_url: emu.url(),
                connect_timeout: Duration::from_secs(5),
                timeout: Duration::from_secs(30),
                max_body_bytes: 1 << 20,
                network: Default::default(),
            },
            gbdfl_client::ApiKey::new("any-key".into()),
        )
        .unwrap()
        .with_clock(clock.clone());
        let iin = gbdfl_core::iin::Iin::parse(gbdfl_emulator::iins::VALID).unwrap();
        let session = lookup::SessionId::parse("3e9b7d42-6c1a-4f8e-a2d5-9b4c8e1f7a3d").unwrap();
        let req = lookup::FetchRequest {
            iin: &iin,
            session: &session,
            asker: lookup::Asker {
                operator: "op",
                host: "host",
                purpose: None,
            },
            max_age: Duration::from_secs(86_400),
            force: false,
            audit: None,
        };
        let backoff = Backoff {
            base: Duration::from_millis(10),
            cap: Duration::from_millis(10),
            max_attempts: 3,
        };
        let first = lookup::fetch(&store, &client, &req, &backoff, None).unwrap();
        assert!(matches!(first.next, Next::Queued { .. }));
        let opts = Options {
            jobs: 1,
            backoff,
            resend_in_doubt: false,
            max_wait: Duration::from_secs(3600),
            audit: AuditEntry::default(),
            only: None,
            on_wait: None,
        };
        let report = run(&store, &client, &opts, &|_| {}).unwrap();
        assert_eq!(report.calls.len(), 1);
        assert!(matches!(report.calls[0].fetched, Fetched::Answered { .. }));
        assert_eq!(emu.calls(), 2);
        assert!(clock.now() >= start + chrono::TimeDelta::seconds(60));
    }
}
