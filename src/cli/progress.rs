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
            bar.set_message("0 failed");
            bar
        });
        Progress {
            what,
            bar,
            total,
            done: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            started: Instant::now(),
            last_line: Mutex::new(Instant::now()),
        }
    }

    /// One item reached its end for this run; `failed` when not VALID.
    pub fn item_done(&self, failed: bool) {
        let done = self.done.fetch_add(1, Ordering::SeqCst) + 1;
        let failed = if failed {
            self.failed.fetch_add(1, Ordering::SeqCst) + 1
        } else {
            self.failed.load(Ordering::SeqCst)
        };
        if let Some(bar) = &self.bar {
            bar.set_position(done);
            bar.set_message(format!("{failed} failed"));
            return;
        }
        let mut last = self.last_line.lock().unwrap_or_else(|p| p.into_inner());
        if last.elapsed() >= LINE_EVERY && done < self.total {
            *last = Instant::now();
            eprintln!("{}", self.line(done, failed));
        }
    }

    fn line(&self, done: u64, failed: u64) -> String {
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
            "{}: {done}/{} done, {failed} failed, {rate:.1}/s{eta}",
            self.what, self.total
        )
    }

    /// Clears the bar (or prints the last plain line).
    pub fn finish(&self) {
        match &self.bar {
            Some(bar) => bar.finish_and_clear(),
            None => {
                let (done, failed) = (
                    self.done.load(Ordering::SeqCst),
                    self.failed.load(Ordering::SeqCst),
                );
                if done > 0 {
                    eprintln!("{}", self.line(done, failed));
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

/// Prints a line to standard error above `bar`, if one shows.
pub fn say(bar: Option<&ProgressBar>, line: &str) {
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
