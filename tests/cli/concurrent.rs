//! Operators working at once (issue 7): four gbdfl processes at a time on
//! one database, fetching, showing, reporting and syncing, while the
//! emulator now and then fails a call so requests queue up for sync. No
//! "database is locked" (or any other unexpected error) reaches a user, and
//! afterwards every fetched person is there, the audit chain verifies and
//! `check` passes.
//!
//! The short run (5 s) is part of `cargo test`; the one-minute run is
//! `cargo test --test cli concurrent::four_operators_for_a_minute -- --ignored`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gbdfl_emulator::Faults;

use crate::harness::{Env, Run, session, synthetic_iin};

/// What each loop did, for the closing assertions and the summary.
#[derive(Default)]
struct Tally {
    runs: Vec<(String, Run)>,
}

fn four_operators(seconds: u64) {
    let env = Arc::new({
        let mut env = Env::with_faults(Faults {
            latency_ms: 5,
            ..Faults::default()
        });
        // Retries soon, so the final sync does not wait long.
        env.extra_env.push(("GBDFL_RETRY_BASE".into(), "1s".into()));
        env.extra_env.push(("GBDFL_RETRY_CAP".into(), "2s".into()));
        env
    });
    // Something to show and report from the start.
    let first = synthetic_iin(100);
    env.ok(&["fetch", &first, "--session", &session()]);
    let fetched: Arc<Mutex<Vec<String>>> = Arc::new(Mutex::new(vec![first]));
    let queued: Arc<Mutex<Vec<String>>> = Arc::new(Mutex::new(Vec::new()));
    let tally = Arc::new(Mutex::new(Tally::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let deadline = Instant::now() + Duration::from_secs(seconds);

    let spawn = |name: &'static str, body: Box<dyn Fn(u32) -> (Run, Vec<i32>) + Send>| {
        let tally = tally.clone();
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut n = 0;
            while Instant::now() < deadline && !stop.load(Ordering::SeqCst) {
                let (run, allowed) = body(n);
                let ok = allowed.contains(&run.code);
                tally.lock().unwrap().runs.push((name.to_owned(), run));
                if !ok {
                    stop.store(true, Ordering::SeqCst);
                }
                n += 1;
            }
        })
    };

    let handles = vec![
        {
            let (env, fetched, queued) = (env.clone(), fetched.clone(), queued.clone());
            spawn(
                "fetch",
                Box::new(move |n| {
                    let iin = synthetic_iin(200 + n);
                    // Every third call fails at the service: the request
                    // queues (exit 11) and the sync loop sends it.
                    if n % 3 == 2 {
                        env.emu().set_faults(Faults {
                            latency_ms: 5,
                            fail_first: 1,
                            ..Faults::default()
                        });
                    }
                    let r = env.run(&["fetch", &iin, "--session", &session()]);
                    match r.code {
                        0 => fetched.lock().unwrap().push(iin),
                        11 => queued.lock().unwrap().push(iin),
                        _ => {}
                    }
                    (r, vec![0, 11])
                }),
            )
        },
        {
            let (env, fetched) = (env.clone(), fetched.clone());
            spawn(
                "show",
                Box::new(move |n| {
                    let iin = {
                        let f = fetched.lock().unwrap();
                        f[n as usize % f.len()].clone()
                    };
                    (env.run(&["show", &iin]), vec![0])
                }),
            )
        },
        {
            let env = env.clone();
            spawn(
                "report",
                Box::new(move |n| {
                    let out = env.path().join(format!("report-{n}.csv"));
                    let kind = ["lookups", "summary", "expiring"][n as usize % 3];
                    let r = env.run(&["report", kind, "--out", out.to_str().unwrap()]);
                    let _ = std::fs::remove_file(&out);
                    (r, vec![0])
                }),
            )
        },
        {
            let env = env.clone();
            spawn(
                "sync",
                Box::new(move |_| (env.run(&["sync", "--jobs", "2"]), vec![0, 11])),
            )
        },
    ];
    for h in handles {
        h.join().expect("a loop thread panicked");
    }

    let tally = tally.lock().unwrap();
    let mut counts = std::collections::BTreeMap::<&str, (u32, u32)>::new();
    for (name, run) in &tally.runs {
        let c = counts.entry(name.as_str()).or_default();
        c.0 += 1;
        if run.code != 0 {
            c.1 += 1;
        }
        let text = format!("{}{}", run.stdout, run.stderr).to_lowercase();
        assert!(
            !text.contains("database is locked") && !text.contains("database is busy"),
            "{name}: {}\n{}",
            run.cmdline,
            run.stderr
        );
        assert!(!text.contains("panicked") && !text.contains("internal error"));
    }
    let unexpected: Vec<String> = tally
        .runs
        .iter()
        .filter(|(name, r)| match name.as_str() {
            "fetch" | "sync" => ![0, 11].contains(&r.code),
            _ => r.code != 0,
        })
        .map(|(name, r)| format!("{name}: {} exit {}: {}", r.cmdline, r.code, r.stderr))
        .collect();
    assert!(unexpected.is_empty(), "{}", unexpected.join("\n"));
    for name in ["fetch", "show", "report", "sync"] {
        assert!(
            counts.get(name).is_some_and(|c| c.0 >= 2),
            "{name} ran at least twice: {counts:?}"
        );
    }
    eprintln!("four operators for {seconds} s: runs (total, non-zero exit) per loop: {counts:?}");

    // Whatever was queued is sent now; then nothing is lost.
    env.emu().set_faults(Faults::default());
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        let r = env.run(&["sync"]);
        if r.code == 0 {
            break;
        }
        assert_eq!(r.code, 11, "{}", r.stderr);
        assert!(
            Instant::now() < until,
            "the queue did not empty: {}",
            r.stderr
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let all: Vec<String> = fetched
        .lock()
        .unwrap()
        .iter()
        .chain(queued.lock().unwrap().iter())
        .cloned()
        .collect();
    for iin in &all {
        env.ok(&["show", iin]);
    }
    env.ok(&["audit", "verify"]);
    env.ok(&["check"]);
    eprintln!(
        "{} people fetched ({} of them through the queue); all present, audit chain and check pass",
        all.len(),
        queued.lock().unwrap().len()
    );
}

#[test]
fn four_operators_for_five_seconds() {
    four_operators(5);
}

#[test]
#[ignore = "runs for a minute: cargo test --test cli concurrent::four_operators_for_a_minute -- --ignored"]
fn four_operators_for_a_minute() {
    four_operators(60);
}
