//! Sending the queue: N workers claim items (soonest deadline first), make
//! the paid call, and record the answer; backoff with full jitter between
//! attempts of one item, Retry-After honoured, and a stop for everyone on an
//! answer that fails for every request.
//!
//! Rules this module keeps: every call goes through a claim committed in the
//! database first (`Store::claim_next`), so two processes never send the
//! same item; workers seal their answers themselves and one committer
//! thread commits all waiting answers in one transaction (group commit),
//! each with its worker's claim of the next item, so the disk's sync time
//! is paid once per group, not twice per call; an item is tried at most `max_attempts` times per run; an item
//! whose earlier call was interrupted (in doubt) is sent only with
//! `resend_in_doubt`; a stop request (Ctrl-C) lets calls in flight finish
//! and be recorded, and claims nothing new.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError, mpsc};
use std::time::Duration;

use chrono::{DateTime, Utc};

pub use crate::backoff::Backoff;
use crate::lookup::{self, Attempt, Fetched, Next};
use gbdfl_client::{Client, Delivery};
use gbdfl_store::{After, AuditEntry, NextClaim, QueueItem, SealedFinish, Store, StoreError};

/// Set by Ctrl-C: claim nothing new, let calls in flight finish.
pub static STOP: AtomicBool = AtomicBool::new(false);

/// How one `sync` run works.
#[derive(Debug, Clone)]
pub struct Options {
    pub jobs: usize,
    pub backoff: Backoff,
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
    pub item: QueueItem,
    pub fetched: Fetched,
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
                s.spawn(move || worker(w, &st, client, opts, shared, gave_up, &tx, on_call))
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

#[allow(clippy::too_many_arguments)]
fn worker(
    w: usize,
    store: &Store,
    client: &Client,
    opts: &Options,
    shared: &Shared,
    gave_up: &(dyn Fn(&str) -> bool + Sync),
    commits: &mpsc::Sender<Commit>,
    on_call: &(dyn Fn(&ItemEnd) + Sync),
) -> Result<(), StoreError> {
    let owner = lookup::claim_owner(w);
    // The item claimed with the last answer, in the same transaction.
    let mut pending: Option<QueueItem> = None;
    // Room for the answer of this worker's calls, reserved once and used
    // again until a spill takes it.
    let mut room: Option<gbdfl_store::Reservation> = None;
    loop {
        if shared.stop.load(Ordering::SeqCst) || STOP.load(Ordering::SeqCst) {
            if let Some(item) = pending.take() {
                // Not sent: put it back as it was.
                store.finish(&item, &owner, None, None, After::Restore)?;
            }
            return Ok(());
        }
        // Room for the next answer before the next call: with no room to
        // keep it, no call is made (a claimed item is put back).
        if !room.as_ref().is_some_and(|r| r.is_free()) {
            match store.reserve_spill(client.max_body_bytes()) {
                Ok(r) => room = Some(r),
                Err(e) => {
                    if let Some(item) = pending.take() {
                        store.finish(&item, &owner, None, None, After::Restore)?;
                    }
                    return Err(e);
                }
            }
        }
        let Some(room) = room.as_mut() else {
            continue;
        };
        let claimed = match pending.take() {
            Some(item) => Some(item),
            None => store.claim_next(
                &owner,
                client.claim_until(store.now()),
                opts.resend_in_doubt,
                gave_up,
            )?,
        };
        let Some(item) = claimed else {
            // Nothing due now: wait for the next try of an item still in play.
            let next = store
                .next_due()?
                .into_iter()
                .filter(|(id, _)| !gave_up(id))
                .map(|(_, t)| t)
                .min();
            let Some(next) = next else {
                return Ok(());
            };
            let wait = (next - store.now()).to_std().unwrap_or(Duration::ZERO);
            if wait > opts.max_wait {
                return Ok(());
            }
            if wait > Duration::from_secs(3)
                && let Some(tell) = opts.on_wait
                && !shared.told_wait.swap(true, Ordering::SeqCst)
            {
                tell(wait);
            }
            store.clock().sleep(wait.min(Duration::from_millis(200)));
            continue;
        };
        let tries = {
            let mut t = lock(&shared.tries);
            let n = t.entry(item.id.clone()).or_default();
            *n += 1;
            *n
        };
        let commit = |finish: SealedFinish| {
            // Before the commit: another worker's claim in the same or the
            // next transaction must already pass over it.
            if finish.leaves_in_doubt() {
                lock(&shared.went_in_doubt).insert(item.id.clone());
            }
            let (reply, answer) = mpsc::channel();
            let gone = || {
                StoreError::Io(std::io::Error::other(
                    "the sync's committing thread has stopped",
                ))
            };
            commits
                .send(Commit {
                    finish,
                    owner: owner.clone(),
                    until: client.claim_until(store.now()),
                    reply,
                })
                .map_err(|_| gone())?;
            answer.recv().map_err(|_| gone())?
        };
        let (Attempt { fetched, next }, claimed) = lookup::send_then(
            store,
            client,
            &item,
            &owner,
            Some(&opts.audit),
            &opts.backoff,
            room,
            &commit,
            false,
        )?;
        pending = claimed;
        let gives_up = matches!(next, Next::Queued { .. }) && tries >= opts.backoff.max_attempts;
        let down = match &fetched {
            Fetched::Unavailable {
                delivery: Delivery::NotSent,
                http_status: None,
                ..
            } => shared.not_connected.fetch_add(1, Ordering::SeqCst) + 1 >= DOWN_AFTER,
            Fetched::Unavailable {
                delivery: Delivery::NotSent,
                ..
            } => false,
            _ => {
                shared.not_connected.store(0, Ordering::SeqCst);
                false
            }
        };
        if down {
            shared.stop.store(true, Ordering::SeqCst);
        }
        let end = ItemEnd {
            // A run that stops (the line is down, or this or another call
            // said so) calls for no item again.
            last_in_run: !matches!(next, Next::Queued { .. })
                || gives_up
                || shared.stop.load(Ordering::SeqCst),
            item,
            fetched,
            next,
        };
        on_call(&end);
        let mut report = lock(&shared.report);
        if down {
            report.line_down = true;
        }
        match &end.next {
            Next::Stop { .. } => {
                shared.stop.store(true, Ordering::SeqCst);
                if report.network.is_none()
                    && let Fetched::NetworkConfig { message, .. } = &end.fetched
                {
                    report.network = Some(message.clone());
                }
                if report.stopped.is_none()
                    && let Fetched::Refused {
                        http_status,
                        message,
                        ..
                    } = &end.fetched
                {
                    report.stopped = Some(format!(
                        "HTTP {http_status} {message}: {}",
                        lookup::refusal_advice(*http_status, message)
                    ));
                }
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
