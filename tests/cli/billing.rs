//! Never paid twice silently: a request is sent again on its own only when
//! it provably never reached the service. Each fault that may leave a
//! billed call without a usable answer (timeout after the request was read,
//! a connection closed after it, a connection dropped mid-answer, an HTML
//! 200, a JSON 200 nested 100,000 deep) leaves the request IN_DOUBT: plain
//! `sync` runs never call for it again, `sync --resend-in-doubt` sends it
//! exactly once more. An absurd Retry-After is recorded, not a crash.

use gbdfl_emulator::{Faults, Hostile};
use serde_json::Value;

use crate::harness::{Env, Run, session, synthetic_iin};

fn queue_json(env: &Env) -> Vec<Value> {
    let r = env.ok(&["queue", "--json"]);
    serde_json::from_str::<Value>(&r.stdout)
        .expect("queue --json")
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// The audit entries of `action`, oldest first (`audit log --json`: one per line).
fn audit(env: &Env, action: &str) -> Vec<Value> {
    let r = env.ok(&["audit", "log", "--action", action, "--json"]);
    r.stdout
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).expect("audit log --json line"))
        .collect()
}

fn assert_in_doubt_message(r: &Run) {
    assert_eq!(r.code, 14, "in doubt\n{}\n{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("billed"), "{}", r.stderr);
    assert!(r.stderr.contains("--resend-in-doubt"), "{}", r.stderr);
    assert!(r.stderr.contains("gbdfl queue drop"), "{}", r.stderr);
    assert!(!r.stderr.contains("internal error"), "{}", r.stderr);
}

/// One fault on the first call of `fetch`: the request is in doubt, plain
/// `sync` runs send nothing, `--resend-in-doubt` sends it once more.
fn in_doubt_case(name: &str, faults: Faults, vars: &[(&str, &str)], says: &str) {
    let env = Env::with_faults(faults);
    let (iin, s) = (synthetic_iin(40), session());
    let r = env.run_with(&["fetch", &iin, "--session", &s], vars);
    assert_in_doubt_message(&r);
    assert!(r.stderr.contains(says), "{name}: {}", r.stderr);
    assert_eq!(env.emu().calls_for(&iin, &s), 1, "{name}");
    // The call counts as paid, in the lookup and in the audit trail.
    let h = env.ok(&["history", &iin, "--json"]);
    let h: Value = serde_json::from_str(&h.stdout).unwrap();
    assert_eq!(h[0]["paid_call"], true, "{name}: {h}");
    let fetches = audit(&env, "fetch");
    assert_eq!(fetches.last().unwrap()["paid_call"], true, "{name}");
    assert_eq!(fetches.last().unwrap()["exit_code"], 14, "{name}");
    let q = queue_json(&env);
    assert_eq!(q.len(), 1, "{name}");
    assert_eq!(q[0]["state"], "IN_DOUBT", "{name}: {q:?}");
    let last_error = q[0]["last_error"].as_str().unwrap_or_default();
    assert!(last_error.contains("billed"), "{name}: {last_error}");
    assert!(
        last_error.contains("--resend-in-doubt"),
        "{name}: {last_error}"
    );
    // Any number of plain syncs (and fetches of the same request) call for it no more.
    for _ in 0..3 {
        let r = env.run_with(&["sync"], vars);
        assert_eq!(r.code, 14, "{name}: {}", r.stderr);
        assert!(r.stderr.contains("IN_DOUBT"), "{name}: {}", r.stderr);
        assert!(
            r.stderr.contains("--resend-in-doubt"),
            "{name}: {}",
            r.stderr
        );
    }
    let r = env.run_with(&["fetch", &iin, "--session", &s], vars);
    assert_eq!(r.code, 14, "{name}: {}", r.stderr);
    assert_eq!(
        env.emu().calls_for(&iin, &s),
        1,
        "{name}: plain syncs sent nothing"
    );
    // The operator decides: sent exactly once more.
    env.ok(&["sync", "--resend-in-doubt"]);
    assert_eq!(env.emu().calls_for(&iin, &s), 2, "{name}");
    assert!(queue_json(&env).is_empty(), "{name}");
    env.ok(&["sync", "--resend-in-doubt"]);
    env.ok(&["sync"]);
    assert_eq!(env.emu().calls_for(&iin, &s), 2, "{name}");
    env.ok(&["show", &iin]);
}

#[test]
fn a_timeout_after_the_request_was_read_is_in_doubt() {
    in_doubt_case(
        "timeout",
        Faults {
            slow_first: 1,
            // Longer than the client waits; the emulator lets go when it stops.
            slow_ms: 600_000,
            ..Faults::default()
        },
        &[("GBDFL_TIMEOUT", "300ms")],
        "did not answer in time",
    );
}

#[test]
fn a_connection_closed_after_the_request_was_read_is_in_doubt() {
    in_doubt_case(
        "hang up",
        Faults {
            hang_up_first: 1,
            ..Faults::default()
        },
        &[],
        "may have answered",
    );
}

#[test]
fn a_connection_dropped_mid_answer_is_in_doubt() {
    in_doubt_case(
        "dropped",
        Faults {
            drop_first: 1,
            ..Faults::default()
        },
        &[],
        "broke while reading",
    );
}

#[test]
fn an_html_200_is_in_doubt() {
    in_doubt_case(
        "html",
        Faults {
            garbage_first: 1,
            ..Faults::default()
        },
        &[],
        "not GBDFL JSON",
    );
}

#[test]
fn a_json_200_nested_100000_deep_is_in_doubt() {
    in_doubt_case(
        "deep json",
        Faults {
            hostile_first: 1,
            hostile: Hostile::DeepNesting,
            ..Faults::default()
        },
        &[],
        "recursion limit",
    );
}

#[test]
fn sync_leaves_each_faulted_request_in_doubt_and_sends_the_rest() {
    let env = Env::new();
    let rows: Vec<(String, String)> = (0..6).map(|i| (synthetic_iin(50 + i), session())).collect();
    let mut lines = vec!["iin,session_id".to_owned()];
    lines.extend(rows.iter().map(|(i, s)| format!("{i},{s}")));
    let file = env.path().join("rows.csv");
    std::fs::write(&file, lines.join("\n") + "\n").unwrap();
    env.ok(&["batch", file.to_str().unwrap(), "--no-sync"]);
    // One call each: dropped mid-answer, deep JSON, closed, HTML; then fine.
    env.emu().set_faults(Faults {
        drop_first: 1,
        hostile_first: 1,
        hostile: Hostile::DeepNesting,
        hang_up_first: 1,
        garbage_first: 1,
        ..Faults::default()
    });
    let r = env.run_with(&["sync", "--jobs", "1"], &[("GBDFL_RETRY_BASE", "20ms")]);
    assert_in_doubt_message(&r);
    assert!(
        r.stderr.contains("4 request(s) are IN_DOUBT"),
        "{}",
        r.stderr
    );
    let in_doubt = |env: &Env| {
        queue_json(env)
            .iter()
            .filter(|q| q["state"] == "IN_DOUBT")
            .count()
    };
    assert_eq!(in_doubt(&env), 4);
    assert_eq!(env.emu().calls(), 6);
    for _ in 0..3 {
        let r = env.run(&["sync", "--jobs", "4"]);
        assert_eq!(r.code, 14, "{}", r.stderr);
    }
    assert_eq!(env.emu().calls(), 6, "plain syncs sent nothing more");
    assert_eq!(env.emu().max_calls_per_request(), 1);
    // Sent once more each, even when they fail again in doubt.
    env.emu().set_faults(Faults {
        garbage_first: 2,
        ..Faults::default()
    });
    let r = env.run(&["sync", "--jobs", "2", "--resend-in-doubt"]);
    assert_eq!(r.code, 14, "{}", r.stderr);
    assert_eq!(env.emu().calls(), 10);
    assert_eq!(env.emu().max_calls_per_request(), 2);
    assert_eq!(in_doubt(&env), 2);
    env.ok(&["sync", "--resend-in-doubt"]);
    assert_eq!(env.emu().calls(), 12);
    assert!(queue_json(&env).is_empty());
    let stats = env.ok(&["stats", "--json"]);
    let v: Value = serde_json::from_str(&stats.stdout).unwrap();
    let paid: u64 = v
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["paid_calls"].as_u64().unwrap())
        .sum();
    assert_eq!(paid, env.emu().calls(), "every call counted as paid");
}

#[test]
fn the_services_own_refusals_and_no_connection_are_sent_again_on_their_own() {
    let env = Env::with_faults(Faults {
        rate_limit_first: 1,
        fail_first: 1,
        ..Faults::default()
    });
    let (iin, s) = (synthetic_iin(60), session());
    let r = env.fails(&["fetch", &iin, "--session", &s], 11);
    assert!(r.stderr.contains("429"), "{}", r.stderr);
    let r = env.run_with(&["sync"], &[("GBDFL_RETRY_BASE", "20ms")]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(env.emu().calls_for(&iin, &s), 3, "429, 503, then VALID");
    // Neither refusal was billed.
    let stats = env.ok(&["stats", "--json"]);
    let v: Value = serde_json::from_str(&stats.stdout).unwrap();
    assert_eq!(v[0]["paid_calls"], 1, "{v}");
    assert_eq!(v[0]["not_sent"], 2, "{v}");
}

#[test]
fn an_absurd_retry_after_is_recorded_and_capped_not_a_crash() {
    let env = Env::with_faults(Faults {
        rate_limit_first: 1,
        retry_after_secs: 9_000_000_000_000,
        ..Faults::default()
    });
    let (iin, s) = (synthetic_iin(61), session());
    let before = chrono::Utc::now();
    let r = env.fails(&["fetch", &iin, "--session", &s], 11);
    assert!(!r.stderr.contains("internal error"), "{}", r.stderr);
    assert!(r.stderr.contains("3600s"), "capped: {}", r.stderr);
    // Recorded: the lookup, the audit entry (not paid: the service refused it).
    let h = env.ok(&["history", &iin, "--json"]);
    let h: Value = serde_json::from_str(&h.stdout).unwrap();
    assert_eq!(h[0]["http_status"], 429, "{h}");
    assert_eq!(audit(&env, "fetch").last().unwrap()["paid_call"], false);
    let q = queue_json(&env);
    assert_eq!(q[0]["state"], "WAITING");
    let next: chrono::DateTime<chrono::Utc> =
        serde_json::from_value(q[0]["next_try_at"].clone()).unwrap();
    assert!(
        next <= before + chrono::TimeDelta::hours(1) + chrono::TimeDelta::minutes(1),
        "{next}"
    );
    // Plain syncs wait for it (the wait is longer than a run's); no crash, no call.
    for _ in 0..2 {
        let r = env.run(&["sync"]);
        assert_eq!(r.code, 11, "{}", r.stderr);
    }
    assert_eq!(env.emu().calls_for(&iin, &s), 1);
}

/// Runs the binary under a file size limit of `blocks` (the shell's units)
/// set in the child by `ulimit -f`, with the Env's settings.
fn run_limited(env: &Env, blocks: u32, args: &[&str], vars: &[(&str, &str)]) -> Run {
    let inner = env.command(args);
    let mut sh = std::process::Command::new("/bin/sh");
    sh.env_clear().current_dir(env.path());
    for (k, v) in inner.get_envs() {
        if let Some(v) = v {
            sh.env(k, v);
        }
    }
    for (k, v) in vars {
        sh.env(k, v);
    }
    sh.arg("-c")
        .arg(format!("ulimit -f {blocks} && exec \"$0\" \"$@\""))
        .arg(inner.get_program())
        .args(inner.get_args());
    let out = sh.output().expect("run gbdfl under sh");
    Run {
        cmdline: format!("ulimit -f {blocks}; gbdfl {}", args.join(" ")),
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Answers up to 16 KiB: the room reserved per call is 4 x that + 64 KiB.
const SMALL_ANSWERS: (&str, &str) = ("GBDFL_MAX_RESPONSE_BYTES", "16384");

fn spill_files(env: &Env, ext: &str) -> Vec<std::path::PathBuf> {
    let dir = gbdfl_store::spill_dir(&env.db);
    std::fs::read_dir(&dir)
        .map(|d| {
            d.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == ext))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn with_no_room_to_keep_the_answer_no_call_is_made() {
    let env = Env::new();
    let (iin, s) = (synthetic_iin(70), session());
    // 64 KiB: less than the room one answer needs.
    let r = run_limited(
        &env,
        128,
        &["fetch", &iin, "--session", &s],
        &[SMALL_ANSWERS],
    );
    assert_eq!(r.code, 9, "{}", r.stderr);
    assert!(r.stderr.contains("no call was made"), "{}", r.stderr);
    assert_eq!(env.emu().calls(), 0);
    assert!(spill_files(&env, "reserve").is_empty(), "room given back");
    assert!(spill_files(&env, "spill").is_empty());
}

#[test]
fn a_paid_answer_the_full_database_cannot_take_is_kept_and_stored_later() {
    let env = Env::new();
    let rows: Vec<(String, String)> = (0..30)
        .map(|i| (synthetic_iin(80 + i), session()))
        .collect();
    let mut lines = vec!["iin,session_id".to_owned()];
    lines.extend(rows.iter().map(|(i, s)| format!("{i},{s}")));
    let file = env.path().join("rows.csv");
    std::fs::write(&file, lines.join("\n") + "\n").unwrap();
    env.ok(&["batch", file.to_str().unwrap(), "--no-sync"]);
    // 256 KiB per file: room for one answer's reservation, but the
    // database's write-ahead log outgrows it after a few answers.
    let r = run_limited(&env, 512, &["sync", "--jobs", "1"], &[SMALL_ANSWERS]);
    assert_eq!(r.code, 9, "{}\n{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("paid call was made"), "{}", r.stderr);
    assert!(r.stderr.contains("billed"), "{}", r.stderr);
    assert!(r.stderr.contains("kept, sealed"), "{}", r.stderr);
    let calls = env.emu().calls();
    assert!(calls >= 1);
    // The spill file: owner-only, nothing of the answer in plaintext.
    let spills = spill_files(&env, "spill");
    assert_eq!(spills.len(), 1, "{spills:?}");
    let bytes = std::fs::read(&spills[0]).unwrap();
    assert!(bytes.starts_with(b"GBDFLSP1"));
    for (iin, s) in &rows {
        assert!(
            !crate::harness::contains(&bytes, iin.as_bytes()),
            "IIN in clear"
        );
        assert!(
            !crate::harness::contains(&bytes, s.as_bytes()),
            "session in clear"
        );
    }
    assert!(!crate::harness::contains(&bytes, b"VALID"));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&spills[0]).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    // The limit lifted, the next command stores it first.
    let r = env.ok(&["queue"]);
    assert!(r.stderr.contains("Stored 1 paid answer"), "{}", r.stderr);
    assert!(spill_files(&env, "spill").is_empty());
    // Every call the service received is stored, counted and audited as paid.
    let called: Vec<&(String, String)> = rows
        .iter()
        .filter(|(i, s)| env.emu().calls_for(i, s) > 0)
        .collect();
    assert_eq!(called.len() as u64, calls);
    for (iin, _) in &called {
        let h = env.ok(&["history", iin, "--json"]);
        let h: Value = serde_json::from_str(&h.stdout).unwrap();
        assert_eq!(h[0]["status"], "VALID", "{h}");
        assert_eq!(h[0]["paid_call"], true, "{h}");
        env.ok(&["show", iin]);
    }
    let stats = env.ok(&["stats", "--json"]);
    let v: Value = serde_json::from_str(&stats.stdout).unwrap();
    assert_eq!(v[0]["paid_calls"].as_u64(), Some(calls), "{v}");
    let paid = audit(&env, "sync")
        .iter()
        .filter(|e| e["paid_call"] == true)
        .count() as u64;
    assert_eq!(paid, calls, "one paid audit entry per call");
    // Taken in once: running again changes nothing.
    let r = env.ok(&["queue"]);
    assert!(!r.stderr.contains("Stored"), "{}", r.stderr);
    // The rest is sent, and nothing was paid for twice.
    env.ok(&["sync"]);
    assert_eq!(env.emu().calls(), rows.len() as u64);
    assert_eq!(env.emu().max_calls_per_request(), 1);
}
