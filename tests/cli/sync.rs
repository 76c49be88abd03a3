//! The offline queue: `fetch` queues what the service could not take,
//! `sync` sends it once (fault switches of the emulator, two syncs at once,
//! SIGKILL at random moments, deadlines), and `batch` on a file with bad rows.

use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::time::Duration;

use gbdfl_emulator::Faults;
use serde_json::Value;

use crate::harness::{Env, session};

/// Fast retries, so fault tests take milliseconds between attempts.
const FAST: [(&str, &str); 2] = [("GBDFL_RETRY_BASE", "20ms"), ("GBDFL_RETRY_CAP", "200ms")];

/// Writes a batch file of (iin, session) rows plus `extra` raw lines after
/// the given rows (by index); returns its path.
fn write_batch(env: &Env, name: &str, rows: &[(String, String)], bad: &[(usize, &str)]) -> PathBuf {
    let mut lines = vec!["iin,session_id,purpose".to_owned()];
    for (i, (iin, s)) in rows.iter().enumerate() {
        for (at, raw) in bad {
            if *at == i {
                lines.push((*raw).to_owned());
            }
        }
        lines.push(format!("{iin},{s},credit check"));
    }
    let path = env.path().join(name);
    std::fs::write(&path, lines.join("\n") + "\n").expect("write batch file");
    path
}

fn pairs(n: usize) -> Vec<(String, String)> {
    gbdfl_emulator::synthetic_iins(n)
        .into_iter()
        .map(|i| (i, session()))
        .collect()
}

/// Queues the rows without sending anything (`batch --no-sync` exits 0:
/// queued as asked).
fn queue(env: &Env, rows: &[(String, String)]) {
    let file = write_batch(env, "queue.csv", rows, &[]);
    let r = env.run(&["batch", file.to_str().unwrap(), "--no-sync"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stderr.contains("queued, as --no-sync asks"),
        "{}",
        r.stderr
    );
    assert_eq!(queue_json(env).len(), rows.len());
}

fn queue_json(env: &Env) -> Vec<Value> {
    let r = env.ok(&["queue", "--json"]);
    serde_json::from_str::<Value>(&r.stdout)
        .expect("queue --json")
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// VALID lookups stored for one IIN (paid or from the cache).
fn valid_lookups(env: &Env, iin: &str) -> usize {
    let r = env.run(&["history", iin, "--json"]);
    if r.code == 3 {
        return 0;
    }
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v: Value = serde_json::from_str(&r.stdout).unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .filter(|l| l["status"] == "VALID" && l["paid_call"] == true)
        .count()
}

/// VALID answers stored in all, from `stats --json`.
fn valid_total(env: &Env) -> u64 {
    let r = env.ok(&["stats", "--json"]);
    let v: Value = serde_json::from_str(&r.stdout).unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .map(|d| d["by_status"]["VALID"].as_u64().unwrap_or(0))
        .sum()
}

/// Every subject has exactly one VALID lookup, the queue is empty, and the
/// emulator got `calls` calls, none of them a second call for one request
/// after a VALID answer.
fn assert_done(env: &Env, rows: &[(String, String)], calls: u64) {
    for (iin, _) in rows {
        assert_eq!(valid_lookups(env, iin), 1, "one VALID lookup for {iin}");
    }
    assert!(queue_json(env).is_empty(), "queue empty");
    assert_eq!(env.emu().calls(), calls, "the emulator's own count");
    assert_eq!(env.emu().answered() as usize, rows.len(), "one answer each");
}

fn sync_with(env: &Env, extra: &[(&str, &str)]) -> crate::harness::Run {
    let mut vars: Vec<(&str, &str)> = FAST.to_vec();
    vars.extend_from_slice(extra);
    env.run_with(&["sync", "--jobs", "4"], &vars)
}

#[test]
fn service_down_then_up() {
    let mut env = Env::new();
    let live = env.base_url.clone();
    // Nothing listens on the old port once the emulator is stopped.
    let dead = {
        let emu = gbdfl_emulator::Emulator::start("127.0.0.1:0", Default::default()).unwrap();
        emu.url()
    };
    env.base_url = dead;
    let rows = pairs(3);
    for (iin, s) in &rows {
        let r = env.run(&["fetch", iin, "--session", s]);
        assert_eq!(r.code, 11, "{}", r.stderr);
        assert!(r.stderr.contains("queued"), "{}", r.stderr);
    }
    // Still down: the run stops after a few calls that cannot connect,
    // instead of spending every request's attempts.
    let r = env.run(&["sync", "--jobs", "1"]);
    assert_eq!(r.code, 11, "still down: {}", r.stderr);
    assert!(r.stderr.contains("remain queued"), "{}", r.stderr);
    assert!(r.stderr.contains("could not connect"), "{}", r.stderr);
    assert!(r.stderr.contains("Stopped early"), "{}", r.stderr);
    // Every call could not connect, and so did each request's last call.
    // Three calls on three requests, unless a retry's random wait came out
    // near zero and a request was called again before the next one.
    let unreachable: Vec<&str> = r
        .stdout
        .lines()
        .find(|l| l.starts_with("UNREACHABLE"))
        .unwrap_or_else(|| panic!("{}", r.stdout))
        .split_whitespace()
        .collect();
    assert_eq!(unreachable[1], "3", "calls: {}", r.stdout);
    let requests: u32 = unreachable[2].parse().unwrap();
    assert!((2..=3).contains(&requests), "requests: {}", r.stdout);
    assert_eq!(queue_json(&env).len(), 3);
    // The line is back.
    env.base_url = live;
    let r = sync_with(&env, &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_done(&env, &rows, 3);
}

#[test]
fn http_503_for_the_first_calls() {
    let env = Env::new();
    let rows = pairs(3);
    queue(&env, &rows);
    env.emu().set_faults(Faults {
        fail_first: 4,
        ..Faults::default()
    });
    let r = sync_with(&env, &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_done(&env, &rows, 3 + 4);
}

#[test]
fn answers_slower_than_the_timeout() {
    let env = Env::new();
    let rows = pairs(3);
    queue(&env, &rows);
    // The slow answers never come (the emulator holds them until it stops),
    // and the others come at once: however loaded the machine, only the
    // slow ones time out.
    env.emu().set_faults(Faults {
        slow_first: 2,
        slow_ms: 3_600_000,
        ..Faults::default()
    });
    // A timeout after the request was sent may have been billed: in doubt,
    // not sent again until the operator says so.
    let r = sync_with(&env, &[("GBDFL_TIMEOUT", "3s")]);
    assert_eq!(r.code, 14, "{}", r.stderr);
    assert_eq!(env.emu().calls(), 3);
    let r = sync_with(&env, &[("GBDFL_TIMEOUT", "3s")]);
    assert_eq!(r.code, 14, "{}", r.stderr);
    assert_eq!(env.emu().calls(), 3);
    let r = env.run_with(&["sync", "--resend-in-doubt"], &FAST);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_done(&env, &rows, 3 + 2);
}

#[test]
fn connections_dropped_mid_body() {
    let env = Env::new();
    let rows = pairs(3);
    queue(&env, &rows);
    env.emu().set_faults(Faults {
        drop_first: 3,
        ..Faults::default()
    });
    // The answers broke off after HTTP 200: billed, in doubt.
    let r = sync_with(&env, &[]);
    assert_eq!(r.code, 14, "{}", r.stderr);
    assert_eq!(env.emu().calls(), 3);
    let r = env.run_with(&["sync", "--resend-in-doubt"], &FAST);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_done(&env, &rows, 3 + 3);
}

#[test]
fn http_429_with_retry_after_is_honoured() {
    let env = Env::new();
    let rows = pairs(2);
    queue(&env, &rows);
    env.emu().set_faults(Faults {
        rate_limit_first: 2,
        retry_after_secs: 1,
        ..Faults::default()
    });
    let started = std::time::Instant::now();
    let r = sync_with(&env, &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_done(&env, &rows, 2 + 2);
    // Not a speed target: with a 20 ms backoff, only Retry-After makes a run
    // this long, so this fails if Retry-After were ignored.
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "waited for Retry-After"
    );
}

#[test]
fn service_error_answers_are_asked_again() {
    let env = Env::new();
    let rows = pairs(2);
    queue(&env, &rows);
    env.emu().set_faults(Faults {
        service_error_first: 2,
        ..Faults::default()
    });
    let r = sync_with(&env, &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    for (iin, _) in &rows {
        assert_eq!(valid_lookups(&env, iin), 1);
    }
    assert!(queue_json(&env).is_empty());
    assert_eq!(env.emu().calls(), 4);
}

#[test]
fn an_organisation_error_stops_at_once_and_leaves_the_queue() {
    let env = Env::new();
    let rows = pairs(5);
    queue(&env, &rows);
    let r = env.run_with(&["sync", "--jobs", "1"], &[("GBDFL_API_KEY", "wrong-key")]);
    assert_eq!(r.code, 4, "{}", r.stderr);
    assert!(r.stderr.contains("Organization not found"), "{}", r.stderr);
    assert_eq!(env.emu().calls(), 1, "stopped after the first refusal");
    assert_eq!(queue_json(&env).len(), 5, "queue left as it was");
    let r = sync_with(&env, &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(
        env.emu().max_calls_per_request(),
        2,
        "only the refused one twice"
    );
}

#[test]
fn past_the_deadline_is_never_sent_and_shows_expired() {
    let env = Env::new();
    let (iin, s) = pairs(1).remove(0);
    let created = (chrono::Local::now() - chrono::TimeDelta::hours(4))
        .format("%Y-%m-%d %H:%M")
        .to_string();
    let file = env.path().join("late.csv");
    std::fs::write(
        &file,
        format!("iin,session_id,session_created_at\n{iin},{s},{created}\n"),
    )
    .unwrap();
    let r = env.run(&["batch", file.to_str().unwrap()]);
    assert_eq!(env.emu().calls_for(&iin, &s), 0, "{}", r.stderr);
    assert_eq!(env.emu().calls(), 0);
    let q = queue_json(&env);
    assert_eq!(q.len(), 1);
    assert_eq!(q[0]["state"], "EXPIRED");
    let r = env.run(&["queue"]);
    assert!(r.stdout.contains("EXPIRED"), "{}", r.stdout);
    // fetch of the same request says why, with its own exit code, and does not call.
    let r = env.fails(
        &[
            "fetch",
            &iin,
            "--session",
            &s,
            "--session-created-at",
            &created,
        ],
        12,
    );
    assert!(r.stderr.contains("checks again"), "{}", r.stderr);
    let r = env.run(&["sync"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(env.emu().calls(), 0, "sync never sends it");
    let id = q[0]["id"].as_str().unwrap();
    env.ok(&["queue", "drop", id]);
    assert!(queue_json(&env).is_empty());
}

#[test]
fn a_queued_item_expires_while_waiting() {
    let env = Env::new();
    let (iin, s) = pairs(1).remove(0);
    // The binary's clock is set: the batch runs 2 seconds before the
    // session's 3-hour window ends, the sync 3 seconds later.
    let now: chrono::DateTime<chrono::Utc> = "2030-06-01T10:00:00Z".parse().unwrap();
    let created = (now - chrono::TimeDelta::seconds(3 * 3600 - 2)).to_rfc3339();
    let file = env.path().join("soon.csv");
    std::fs::write(
        &file,
        format!("iin;session_id;session_created_at\n{iin};{s};{created}\n"),
    )
    .unwrap();
    let r = env.run_with(
        &["batch", file.to_str().unwrap(), "--no-sync"],
        &[("GBDFL_TEST_NOW", "2030-06-01T10:00:00Z")],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(queue_json(&env)[0]["state"], "WAITING");
    let r = env.run_with(&["sync"], &[("GBDFL_TEST_NOW", "2030-06-01T10:00:03Z")]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(env.emu().calls(), 0);
    assert_eq!(queue_json(&env)[0]["state"], "EXPIRED");
}

#[test]
fn two_syncs_at_once_send_every_item_exactly_once() {
    let env = Env::with_faults(Faults {
        latency_ms: 15,
        ..Faults::default()
    });
    let rows = pairs(200);
    queue(&env, &rows);
    let spawn = || -> Child {
        env.command(&["sync", "--jobs", "4"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn sync")
    };
    let (a, b) = (spawn(), spawn());
    for child in [a, b] {
        let out = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{err}");
        assert!(!err.contains("locked"), "{err}");
    }
    assert_eq!(env.emu().calls(), 200);
    assert_eq!(env.emu().distinct_requests(), 200);
    assert_eq!(
        env.emu().max_calls_per_request(),
        1,
        "no request sent twice"
    );
    assert!(queue_json(&env).is_empty());
    assert_eq!(valid_total(&env), 200);
}

#[test]
fn a_fetch_racing_a_sync_never_pays_twice() {
    let env = Env::with_faults(Faults {
        latency_ms: 300,
        ..Faults::default()
    });
    let rows = pairs(4);
    queue(&env, &rows);
    let child = env
        .command(&["sync", "--jobs", "4"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Wait until the sync has claimed the items, then fetch them.
    for _ in 0..100 {
        if queue_json(&env).iter().all(|q| q["state"] == "SENDING") {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    for (iin, s) in &rows {
        let r = env.run(&["fetch", iin, "--session", s]);
        // Either the sync is still sending it (11, no call), or it is done
        // and the fetch answers from the cache (0).
        assert!(r.code == 11 || r.code == 0, "{}", r.stderr);
    }
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(env.emu().max_calls_per_request(), 1);
    assert_eq!(env.emu().calls(), 4);
}

/// A small random number from the OS clock, for kill timing (no extra crate).
fn jitter_ms(round: u64, spread: u64) -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64;
    (nanos ^ round.wrapping_mul(0x9E37_79B9_7F4A_7C15)) % spread
}

#[cfg(unix)]
#[test]
fn sigkill_at_random_moments_never_pays_twice() {
    let env = Env::with_faults(Faults {
        latency_ms: 50,
        ..Faults::default()
    });
    let rows = pairs(200);
    queue(&env, &rows);
    // A short timeout makes the leases of killed processes end quickly.
    let vars = [("GBDFL_TIMEOUT", "1s"), ("GBDFL_RETRY_BASE", "20ms")];
    for round in 0..20u64 {
        let mut cmd = env.command(&["sync", "--jobs", "4"]);
        for (k, v) in vars {
            cmd.env(k, v);
        }
        let mut child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(20 + jitter_ms(round, 150)));
        child.kill().expect("SIGKILL");
        child.wait().unwrap();
    }
    // Restart, and let it run to the end.
    let r = env.run_with(&["sync", "--jobs", "4"], &vars);
    // 14 when requests killed mid-call remain in doubt.
    assert!(r.code == 0 || r.code == 14, "{}", r.stderr);
    assert!(!r.stderr.contains("locked"), "{}", r.stderr);
    // No request reached the service twice on its own.
    assert!(env.emu().max_calls_per_request() <= 1);
    let queue = queue_json(&env);
    let in_doubt: Vec<&Value> = queue.iter().filter(|q| q["state"] == "IN_DOUBT").collect();
    assert_eq!(
        in_doubt.len(),
        queue.len(),
        "only in-doubt items remain: {queue:?}"
    );
    let answered = valid_total(&env) as usize;
    assert_eq!(answered + in_doubt.len(), rows.len());
    eprintln!(
        "after 20 kills: {answered} answered once, {} in doubt, {} calls reached the emulator",
        in_doubt.len(),
        env.emu().calls()
    );
    for (iin, s) in &rows {
        let valid = valid_lookups(&env, iin);
        assert!(valid <= 1, "{iin} answered {valid} times");
        if valid == 1 {
            assert_eq!(env.emu().calls_for(iin, s), 1);
        }
    }
    if !in_doubt.is_empty() {
        assert!(r.stderr.contains("in doubt"), "{}", r.stderr);
    }
    let doubtful: std::collections::HashSet<String> = {
        let r = env.ok(&["queue", "--json", "--full"]);
        let v: Value = serde_json::from_str(&r.stdout).unwrap();
        v.as_array()
            .unwrap()
            .iter()
            .map(|q| q["iin"].as_str().unwrap().to_owned())
            .collect()
    };
    // The operator decides to send the in-doubt ones: now every item is
    // answered once, and only those the operator chose to resend may have
    // reached the service twice.
    let r = env.run_with(&["sync", "--resend-in-doubt"], &vars);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(queue_json(&env).is_empty());
    for (iin, s) in &rows {
        assert_eq!(valid_lookups(&env, iin), 1);
        let calls = env.emu().calls_for(iin, s);
        assert!(
            calls == 1 || (calls == 2 && doubtful.contains(iin)),
            "{iin}: {calls} calls"
        );
    }
    let conn = rusqlite::Connection::open(&env.db).unwrap();
    let ok: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(ok, "ok");
}

#[test]
fn batch_of_1000_rows_with_20_bad() {
    let env = Env::new();
    let rows = pairs(980);
    let bad_lines: Vec<(usize, &str)> = vec![
        (0, "12345,not-a-session,x"),
        (
            50,
            "950215301234,0b8e2f4c-6a43-4a55-9f0e-0d3c9a1e7b21,bad check digit",
        ),
        (100, ",0b8e2f4c-6a43-4a55-9f0e-0d3c9a1e7b21,no iin"),
        (150, "880610400001"),
        (
            200,
            "abcdefghijkl,0b8e2f4c-6a43-4a55-9f0e-0d3c9a1e7b21,letters",
        ),
        (
            250,
            "951315301234,0b8e2f4c-6a43-4a55-9f0e-0d3c9a1e7b21,month 13",
        ),
        (
            300,
            "950215701234,0b8e2f4c-6a43-4a55-9f0e-0d3c9a1e7b21,7th digit",
        ),
        (350, "8806104000,0b8e2f4c-6a43-4a55-9f0e-0d3c9a1e7b21,short"),
        (
            400,
            "880610400001234,0b8e2f4c-6a43-4a55-9f0e-0d3c9a1e7b21,long",
        ),
        (
            450,
            "950215301234,\"0b8e2f4c-6a43-4a55-9f0e-0d3c9a1e7b21\",quoted",
        ),
        (500, "12345,,"),
        (550, "950215301234,,"),
        (600, "1,2,3"),
        (650, "95021530123x,0b8e2f4c-6a43-4a55-9f0e-0d3c9a1e7b21,x"),
        (700, "950215301234,zzzz,x"),
        (
            750,
            "000000000000,0b8e2f4c-6a43-4a55-9f0e-0d3c9a1e7b21,zeros",
        ),
        (800, "abc,,"),
        (
            850,
            "950215301234;0b8e2f4c-6a43-4a55-9f0e-0d3c9a1e7b21;wrong delimiter",
        ),
        (900, "x"),
        (
            950,
            "999999999999,0b8e2f4c-6a43-4a55-9f0e-0d3c9a1e7b21,nines",
        ),
    ];
    let file = write_batch(&env, "big.csv", &rows, &bad_lines);
    let out = env.path().join("outcome.csv");
    let r = env.run_with(
        &[
            "batch",
            file.to_str().unwrap(),
            "--jobs",
            "8",
            "--out",
            out.to_str().unwrap(),
        ],
        &FAST,
    );
    assert_eq!(r.code, 2, "bad rows give exit 2: {}", r.stderr);
    // The 20 bad rows, each with its line number: header is line 1, and the
    // bad line inserted before good row i is at line 2 + i + (bad before it).
    let expected_lines: Vec<u64> = bad_lines
        .iter()
        .enumerate()
        .map(|(k, (i, _))| 2 + *i as u64 + k as u64)
        .collect();
    for line in &expected_lines {
        assert!(
            r.stderr.contains(&format!("big.csv: line {line}: ")),
            "line {line} reported: {}",
            r.stderr
        );
    }
    assert_eq!(r.stderr.matches("; skipped").count(), 20, "{}", r.stderr);
    assert_eq!(env.emu().calls(), 980);
    assert_eq!(env.emu().max_calls_per_request(), 1);
    assert_eq!(valid_total(&env), 980);
    assert!(queue_json(&env).is_empty());
    // The outcome file: one row per input row, with line numbers.
    let text = std::fs::read_to_string(&out).unwrap();
    let text = text.trim_start_matches('\u{feff}');
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let mut valid = 0;
    let mut bad = Vec::new();
    for rec in reader.records() {
        let rec = rec.unwrap();
        match &rec[2] {
            "VALID" => valid += 1,
            "BAD_ROW" => bad.push(rec[0].parse::<u64>().unwrap()),
            other => panic!("unexpected outcome {other}"),
        }
    }
    assert_eq!(valid, 980);
    assert_eq!(bad, expected_lines);
    assert!(
        r.stdout.contains("VALID") && r.stdout.contains("980"),
        "{}",
        r.stdout
    );
    // Running the same file again pays for nothing: every row is cached.
    let r = env.run(&[
        "batch",
        file.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert_eq!(env.emu().calls(), 980, "second run answered from the cache");
}

#[test]
fn batch_file_errors_are_clear() {
    let env = Env::new();
    let f = env.path().join("nohead.csv");
    std::fs::write(&f, "950215300001,0b8e2f4c-6a43-4a55-9f0e-0d3c9a1e7b21\n").unwrap();
    let r = env.fails(&["batch", f.to_str().unwrap()], 2);
    assert!(r.stderr.contains("looks like data"), "{}", r.stderr);
    // The first row is a person's: not echoed, not in the audit trail.
    assert!(!r.stderr.contains("950215300001"), "{}", r.stderr);
    assert!(!r.stderr.contains("0b8e2f4c"), "{}", r.stderr);
    let log = env.ok(&["audit", "log"]);
    assert!(!log.stdout.contains("950215300001"), "{}", log.stdout);
    // Excel's usual damage gets a hint.
    let f2 = env.path().join("excel.csv");
    std::fs::write(
        &f2,
        "iin;session_id\n9,50215E+11;0b8e2f4c-6a43-4a55-9f0e-0d3c9a1e7b21\n50315501230;0b8e2f4c-6a43-4a55-9f0e-0d3c9a1e7b22\n",
    )
    .unwrap();
    let r = env.fails(&["batch", f2.to_str().unwrap()], 2);
    assert!(r.stderr.contains("scientific notation"), "{}", r.stderr);
    assert!(r.stderr.contains("leading zero"), "{}", r.stderr);
    let r = env.fails(&["batch", "missing.csv"], 2);
    assert!(r.stderr.contains("cannot read"), "{}", r.stderr);
    assert_eq!(env.emu().calls(), 0);
}

#[test]
fn queue_drop_takes_an_id_its_unique_start_or_the_persons_iin() {
    let env = Env::new();
    let mut rows = pairs(3);
    // The third person twice, with two sessions.
    rows.push((rows[2].0.clone(), session()));
    queue(&env, &rows);
    let r = env.ok(&["queue", "--json", "--full"]);
    let q: Vec<Value> = serde_json::from_str(&r.stdout).unwrap();
    let id_of = |iin: &str| -> Vec<String> {
        q.iter()
            .filter(|i| i["iin"] == iin)
            .map(|i| i["id"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(id_of(&rows[2].0).len(), 2);
    // By IIN: the first person has one request.
    let r = env.ok(&["queue", "drop", &rows[0].0]);
    assert!(r.stderr.contains(&id_of(&rows[0].0)[0]), "{}", r.stderr);
    assert_eq!(queue_json(&env).len(), 3);
    // An IIN with two requests: both listed, none dropped.
    let r = env.fails(&["queue", "drop", &rows[2].0], 2);
    for id in id_of(&rows[2].0) {
        assert!(r.stderr.contains(&id), "{}", r.stderr);
    }
    assert!(
        r.stderr.contains("drop one by its HANDLE or ID"),
        "{}",
        r.stderr
    );
    assert_eq!(queue_json(&env).len(), 3);
    // A start several IDs share (made within milliseconds, three IDs share
    // their first 8 characters, the time, unless a 65-second tick fell
    // between them; then two still do).
    let ids: Vec<String> = queue_json(&env)
        .iter()
        .map(|i| i["id"].as_str().unwrap().to_owned())
        .collect();
    let shared = ids
        .iter()
        .map(|id| &id[..8])
        .find(|p| ids.iter().filter(|id| id.starts_with(p)).count() >= 2)
        .unwrap();
    let r = env.fails(&["queue", "drop", shared], 2);
    assert!(r.stderr.contains("several"), "{}", r.stderr);
    // Too short a start is not taken, even if it were unique.
    let r = env.fails(&["queue", "drop", &ids[0][..7]], 2);
    assert!(r.stderr.contains("at least 8 characters"), "{}", r.stderr);
    assert_eq!(queue_json(&env).len(), 3);
    // The shortest start that is the second person's alone, in capitals.
    let mine = id_of(&rows[1].0).remove(0);
    let unique = (8..=mine.len())
        .map(|n| &mine[..n])
        .find(|p| ids.iter().filter(|id| id.starts_with(p)).count() == 1)
        .unwrap();
    env.ok(&["queue", "drop", &unique.to_uppercase()]);
    let left: Vec<String> = queue_json(&env)
        .iter()
        .map(|i| i["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(left.len(), 2);
    assert!(!left.contains(&mine));
    // An IIN with nothing queued.
    let r = env.fails(&["queue", "drop", &rows[0].0], 2);
    assert!(
        r.stderr.contains("no queued request for that IIN"),
        "{}",
        r.stderr
    );
    // An IIN with a digit missing: said so, masked.
    let typo = &rows[1].0[..11];
    let r = env.fails(&["queue", "drop", typo], 2);
    assert!(r.stderr.contains("exactly 12 digits"), "{}", r.stderr);
    assert!(!r.stderr.contains(typo), "masked: {}", r.stderr);
}

#[test]
fn queue_masks_iins_unless_full_and_stats_counts_paid_and_cached() {
    let mut env = Env::new();
    let live = env.base_url.clone();
    let rows = pairs(2);
    // One paid call, then the same person again from the cache.
    env.ok(&["fetch", &rows[0].0, "--session", &rows[0].1]);
    env.ok(&["fetch", &rows[0].0, "--session", &session()]);
    // One request queued while the service is down.
    env.base_url = crate::harness::closed_url();
    env.fails(&["fetch", &rows[1].0, "--session", &rows[1].1], 11);
    let q = env.ok(&["queue"]);
    assert!(!q.stdout.contains(&rows[1].0), "{}", q.stdout);
    assert!(
        q.stdout.contains(&gbdfl_core::iin::mask(&rows[1].0)),
        "{}",
        q.stdout
    );
    assert!(q.stdout.contains("could not connect"), "{}", q.stdout);
    let q = env.ok(&["queue", "--full"]);
    assert!(q.stdout.contains(&rows[1].0), "{}", q.stdout);
    env.base_url = live;
    env.ok(&["sync"]);
    // Summed over the days: a run across local midnight spreads the calls
    // over two.
    let r = env.ok(&["stats", "--json"]);
    let v: Value = serde_json::from_str(&r.stdout).unwrap();
    let sum = |f: &dyn Fn(&Value) -> &Value| -> u64 {
        v.as_array()
            .unwrap()
            .iter()
            .map(|d| f(d).as_u64().unwrap_or(0))
            .sum()
    };
    assert_eq!(sum(&|d| &d["paid_calls"]), 2, "{v}");
    assert_eq!(sum(&|d| &d["from_cache"]), 1, "{v}");
    assert_eq!(sum(&|d| &d["not_sent"]), 1, "{v}");
    assert_eq!(sum(&|d| &d["by_status"]["VALID"]), 2, "{v}");
    let r = env.ok(&["stats"]);
    assert!(r.stdout.contains("PAID CALLS"), "{}", r.stdout);
    // A period with nothing in it.
    let r = env.ok(&[
        "stats",
        "--from",
        "2020-01-01",
        "--to",
        "2020-01-31",
        "--json",
    ]);
    assert_eq!(r.stdout.trim(), "[]");
    env.fails(&["stats", "--from", "2020-02-30"], 2);
}

#[test]
fn queued_requests_survive_rekey_and_are_purged_with_old_data() {
    let mut env = Env::new();
    let rows = pairs(3);
    queue(&env, &rows);
    let new_key = env.path().join("new.key");
    env.ok(&["rekey", "--out", new_key.to_str().unwrap()]);
    env.key = new_key;
    // The queue opens under the new key: full IINs and sessions are intact.
    let r = env.ok(&["queue", "--full"]);
    for (iin, _) in &rows {
        assert!(r.stdout.contains(iin.as_str()), "{}", r.stdout);
    }
    env.ok(&["check"]);
    let r = sync_with(&env, &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    for (iin, s) in &rows {
        assert_eq!(env.emu().calls_for(iin, s), 1);
    }
    // An expired request is personal data too: purge removes it with old lookups.
    let (iin, s) = pairs(4).remove(3);
    let created = (chrono::Local::now() - chrono::TimeDelta::hours(5))
        .format("%Y-%m-%d %H:%M")
        .to_string();
    let r = env.run(&[
        "fetch",
        &iin,
        "--session",
        &s,
        "--session-created-at",
        &created,
    ]);
    assert_eq!(r.code, 12, "{}", r.stderr);
    assert_eq!(queue_json(&env).len(), 1);
    env.ok(&["purge", "--older-than", "0s"]);
    assert!(queue_json(&env).is_empty());
}

#[test]
fn batch_sends_only_its_own_rows_and_its_exit_code_says_how_they_ended() {
    let env = Env::new();
    // A request left in the queue by someone else, that would stop any run.
    let org = crate::harness::fixture("HTTP_404_ORGANIZATION_NOT_FOUND");
    let left = session();
    let f = env.path().join("left.csv");
    std::fs::write(&f, format!("iin,session_id\n{org},{left}\n")).unwrap();
    env.ok(&["batch", f.to_str().unwrap(), "--no-sync"]);
    // This file's rows: one VALID, one NOT_FOUND.
    let (iin, s) = pairs(1).remove(0);
    let nf = crate::harness::fixture("NOT_FOUND");
    let f = env.path().join("mine.csv");
    std::fs::write(
        &f,
        format!("iin;session_id\n{iin};{s}\n{nf};{}\n", session()),
    )
    .unwrap();
    let r = env.fails(&["batch", f.to_str().unwrap()], 5);
    assert!(
        r.stderr.contains("did not get a VALID record"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr
            .contains("2/2 tried: 1 VALID, 1 not VALID, 0 left queued"),
        "{}",
        r.stderr
    );
    assert_eq!(env.emu().calls_for(org, &left), 0, "not this batch's row");
    assert_eq!(env.emu().calls(), 2);
    // The outcome file uses the input's delimiter.
    let out = std::fs::read_dir(env.path().join("reports"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .max()
        .unwrap();
    let text = std::fs::read_to_string(out).unwrap();
    assert!(text.contains("line;iin;outcome"), "{text}");
    // An expired row makes the exit code 12.
    let created = (chrono::Local::now() - chrono::TimeDelta::hours(4))
        .format("%Y-%m-%d %H:%M")
        .to_string();
    let (iin, s) = pairs(2).remove(1);
    let f = env.path().join("late.csv");
    std::fs::write(
        &f,
        format!("iin,session_id,session_created_at\n{iin},{s},{created}\n"),
    )
    .unwrap();
    let r = env.fails(&["batch", f.to_str().unwrap()], 12);
    assert!(r.stderr.contains("checks again"), "{}", r.stderr);
    let stats = env.ok(&["stats", "--json"]);
    let v: Value = serde_json::from_str(&stats.stdout).unwrap();
    let expired: u64 = v
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["expired"].as_u64().unwrap())
        .sum();
    assert_eq!(expired, 1, "{}", stats.stdout);
}
