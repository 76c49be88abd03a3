//! Progress of `sync` and `batch`: an indicatif bar on a terminal (done of
//! total, rate, ETA, failures), plain lines every few seconds elsewhere (a
//! log file, a pipe, a scheduled task). Both go to standard error. And the
//! bytes-read bar of `import` (on a terminal only).

use std::io::IsTerminal;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// How often a plain progress line is printed when standard error is not a terminal.
const LINE_EVERY: Duration = Duration::from_secs(5);

pub struct Progress {
    what: &'static str,
    bar: Option<ProgressBar>,
    total: u64,
    done: AtomicU64,
    failed: AtomicU64,
    /// Items whose run ended with the request still in the queue: neither
    /// answered nor failed, so not counted as either.
    queued: AtomicU64,
    started: Instant,
    last_line: Mutex<Instant>,
}

impl Progress {
    pub fn new(what: &'static str, total: u64) -> Progress {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = terminal_bar(
                what,
                total,
                "{prefix} [{bar:30}] {pos}/{len}  {per_sec}  ETA {eta}  {msg}",
            );
            bar.set_message("0 VALID, 0 not VALID, 0 left queued");
            bar
        });
        Progress {
            what,
            bar,
            total,
            done: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            queued: AtomicU64::new(0),
            started: Instant::now(),
            last_line: Mutex::new(Instant::now()),
        }
    }

    /// One item's run ended with this call: it got a VALID record, another
    /// final answer ("not VALID"), or it is still queued (to be sent again,
    /// in doubt, or held back), which is neither.
    pub fn item_ended(&self, end: &gbdfl_service::sync::ItemEnd) {
        let counter = match (&end.next, &end.fetched) {
            (
                gbdfl_service::lookup::Next::Done,
                gbdfl_service::lookup::Fetched::Answered { response, .. },
            ) if response.status == Some(gbdfl_core::api::Status::Valid) => None,
            (gbdfl_service::lookup::Next::Done, _) => Some(&self.failed),
            _ => Some(&self.queued),
        };
        if let Some(c) = counter {
            c.fetch_add(1, Ordering::SeqCst);
        }
        let done = self.done.fetch_add(1, Ordering::SeqCst) + 1;
        if let Some(bar) = &self.bar {
            bar.set_position(done);
            bar.set_message(self.counts(done));
            return;
        }
        let mut last = self.last_line.lock().unwrap_or_else(|p| p.into_inner());
        if last.elapsed() >= LINE_EVERY && done < self.total {
            *last = Instant::now();
            eprintln!("{}", self.line(done));
        }
    }

    /// "2 VALID, 1 not VALID, 1 left queued" of `done` items.
    fn counts(&self, done: u64) -> String {
        let failed = self.failed.load(Ordering::SeqCst);
        let queued = self.queued.load(Ordering::SeqCst);
        let valid = done.saturating_sub(failed).saturating_sub(queued);
        format!("{valid} VALID, {failed} not VALID, {queued} left queued")
    }

    fn line(&self, done: u64) -> String {
        let secs = self.started.elapsed().as_secs_f64().max(0.001);
        let rate = done as f64 / secs;
        let eta = if rate > 0.0 && done < self.total {
            format!(
                ", ETA {}s",
                ((self.total - done) as f64 / rate).ceil() as u64
            )
        } else {
            String::new()
        };
        format!(
            "{}: {done}/{} tried: {}, {rate:.1}/s{eta}",
            self.what,
            self.total,
            self.counts(done)
        )
    }

    /// Clears the bar (or prints the last plain line).
    pub fn finish(&self) {
        match &self.bar {
            Some(bar) => bar.finish_and_clear(),
            None => {
                let done = self.done.load(Ordering::SeqCst);
                if done > 0 {
                    eprintln!("{}", self.line(done));
                }
            }
        }
    }
}

/// A bar of bytes read out of `total` for `what`, on a terminal only
/// (elsewhere the summary line at the end is enough). Messages printed
/// while it shows go through [`say`].
pub fn bytes_bar(what: &'static str, total: u64) -> Option<ProgressBar> {
    std::io::stderr().is_terminal().then(|| {
        terminal_bar(
            what,
            total,
            "{prefix} [{bar:30}] {bytes}/{total_bytes}  {bytes_per_sec}  ETA {eta}",
        )
    })
}

/// A bar on standard error drawn with `template`, redrawn five times a second.
fn terminal_bar(what: &'static str, total: u64, template: &str) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template(template)
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.set_prefix(what);
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

/// Turns `bar` into a spinner saying `what` is being done, for a last step
/// whose length is unknown.
pub fn to_spinner(bar: &ProgressBar, what: &'static str) {
    bar.set_style(
        ProgressStyle::with_template("{prefix} {spinner} {msg} ({elapsed})")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    bar.set_message(what);
    bar.reset_elapsed();
}

/// Prints a line to standard error above `bar`, if one shows; text from
/// outside in it is shown [`safe`](gbdfl_report::render::safe).
pub fn say(bar: Option<&ProgressBar>, line: &str) {
    let line = gbdfl_report::render::safe(line);
    match bar {
        Some(bar) => bar.suspend(|| eprintln!("{line}")),
        None => eprintln!("{line}"),
    }
}

/// A bar of `total` things done for `what`, on a terminal only (elsewhere
/// the summary line at the end is enough).
pub fn count_bar(what: &'static str, total: u64) -> Option<ProgressBar> {
    std::io::stderr().is_terminal().then(|| {
        terminal_bar(
            what,
            total,
            "{prefix} [{bar:30}] {human_pos}/{human_len}  {per_sec}  ETA {eta}",
        )
    })
}

/// Progress of a migration to the current database format (called by the
/// store with lookups done and in all): a bar on a terminal, a line at the
/// start and the end elsewhere.
pub fn migration(done: u64, total: u64) {
    if total == 0 {
        return;
    }
    static BAR: Mutex<Option<ProgressBar>> = Mutex::new(None);
    static STARTED: Mutex<Option<Instant>> = Mutex::new(None);
    let mut bar = BAR.lock().unwrap_or_else(|p| p.into_inner());
    let mut started = STARTED.lock().unwrap_or_else(|p| p.into_inner());
    let since = *started.get_or_insert_with(Instant::now);
    if done == 0 {
        if std::io::stderr().is_terminal() {
            *bar = Some(terminal_bar(
                "Migrating the database to the current format",
                total,
                "{prefix} [{bar:30}] {pos}/{len} lookups  {per_sec}  ETA {eta}",
            ));
        } else {
            eprintln!("Migrating the database to the current format: {total} lookups...");
        }
        return;
    }
    if let Some(b) = bar.as_ref() {
        b.set_position(done);
    }
    if done == total {
        if let Some(b) = bar.take() {
            b.finish_and_clear();
        }
        let secs = since.elapsed().as_secs_f64();
        eprintln!(
            "Migrated the database to the current format: {total} lookups in {secs:.1} s ({:.0} lookups/s).",
            total as f64 / secs.max(0.001)
        );
    }
}
