//! Paid calls are counted by one rule everywhere: `stats`, `report
//! summary`, `report lookups`, `history`, the audit trail and batch's
//! outcome file agree with each other and with the emulator.
//!
//! The rule: a lookup is a paid call when it is a call to the service that
//! reached it or may have (a timeout after sending, a dropped connection,
//! any answer, a refusal with HTTP 4xx); an attempt that provably never
//! reached the service (no connection, or the service's own JSON 429/503
//! refusal) is not, and neither is a cache answer. So the paid calls are
//! the requests the emulator counted, minus its own 429/503 refusals.
//!
//! Per-day counts use UTC days in `stats` and the summary report alike.

use std::collections::BTreeMap;

use gbdfl_emulator::{Faults, iins};
use serde_json::Value;

use crate::harness::{Env, Run, session, synthetic_iin};

/// Sync retries come quickly: a test never waits for long backoffs.
const QUICK_RETRY: (&str, &str) = ("GBDFL_RETRY_BASE", "20ms");

/// The base URL of a port nobody listens on: nothing can connect.
fn dead_base_url() -> String {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    format!("http://127.0.0.1:{port}/api/v1/backend/gbdfl/")
}

fn expect(r: Run, code: i32) -> Run {
    assert_eq!(
        r.code, code,
        "{}: expected exit {code}, got {}\n{}",
        r.cmdline, r.code, r.stderr
    );
    r
}

/// Runs a command and returns how many requests reached the emulator meanwhile.
fn calls_during(env: &Env, args: &[&str], vars: &[(&str, &str)], code: i32) -> (u64, Run) {
    let before = env.emu().calls();
    let r = expect(env.run_with(args, vars), code);
    (env.emu().calls() - before, r)
}

fn fetch(env: &Env, iin: &str, vars: &[(&str, &str)], code: i32) -> u64 {
    calls_during(env, &["fetch", iin, "--session", &session()], vars, code).0
}

/// Reads a CSV file (BOM or not) into header-keyed rows.
fn csv_rows(path: &std::path::Path) -> (Vec<String>, Vec<BTreeMap<String, String>>) {
    let bytes = std::fs::read(path).unwrap();
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(&bytes);
    let mut r = csv::Reader::from_reader(bytes);
    let header: Vec<String> = r.headers().unwrap().iter().map(str::to_owned).collect();
    let rows = r
        .records()
        .map(|rec| {
            let rec = rec.unwrap();
            header
                .iter()
                .cloned()
                .zip(rec.iter().map(str::to_owned))
                .collect()
        })
        .collect();
    (header, rows)
}

fn sum_col(rows: &[BTreeMap<String, String>], col: &str) -> u64 {
    rows.iter().map(|r| r[col].parse::<u64>().unwrap()).sum()
}

#[test]
fn every_count_of_paid_calls_agrees_with_the_emulator() {
    let env = Env::new();
    let dead = dead_base_url();
    // The requests the emulator counted that it refused itself (JSON 429/503).
    let mut refusals = 0u64;
    let mut iins_used: Vec<String> = Vec::new();
    let mut use_iin = |i: &str| {
        iins_used.push(i.to_owned());
        i.to_owned()
    };

    // Paid and answered: VALID, then the same person from the cache.
    let a = use_iin(&synthetic_iin(900));
    assert_eq!(fetch(&env, &a, &[], 0), 1);
    assert_eq!(fetch(&env, &a, &[], 0), 0, "a cache answer makes no call");
    // Paid, answered with another status.
    let not_found = use_iin(iins::NOT_FOUND);
    assert_eq!(fetch(&env, &not_found, &[], 5), 1);
    let invalid = use_iin(iins::INVALID);
    assert_eq!(fetch(&env, &invalid, &[], 5), 1);
    // Paid, refused with HTTP 404 and HTTP 400.
    let missing = use_iin(iins::SESSION_NOT_FOUND);
    assert_eq!(fetch(&env, &missing, &[], 4), 1);
    let no_subscription = use_iin(iins::NO_SUBSCRIPTION);
    assert_eq!(fetch(&env, &no_subscription, &[], 4), 1);
    // A refusal that fails for every request is put back in the queue:
    // given up here, so that later syncs do not stop on it.
    let q: Value = serde_json::from_str(&env.ok(&["queue", "--json"]).stdout).unwrap();
    if !q.as_array().unwrap().is_empty() {
        env.ok(&["queue", "drop", &no_subscription]);
    }

    // The service's own refusals (HTTP 429, HTTP 503): counted by the
    // emulator, not billed, queued.
    env.emu().set_faults(Faults {
        rate_limit_first: 1,
        ..Faults::default()
    });
    let limited = use_iin(&synthetic_iin(901));
    assert_eq!(fetch(&env, &limited, &[], 11), 1);
    refusals += 1;
    env.emu().set_faults(Faults {
        fail_first: 1,
        ..Faults::default()
    });
    let unavailable = use_iin(&synthetic_iin(902));
    assert_eq!(fetch(&env, &unavailable, &[], 11), 1);
    refusals += 1;
    // Never connected: the service is down.
    let down = use_iin(&synthetic_iin(903));
    let (n, _) = calls_during(
        &env,
        &["fetch", &down, "--session", &session(), "--base-url", &dead],
        &[],
        11,
    );
    assert_eq!(n, 0);

    // Sent, no answer: in doubt, counted as paid (it may have been billed).
    env.emu().set_faults(Faults {
        slow_first: 1,
        slow_ms: 600_000,
        ..Faults::default()
    });
    let timed_out = use_iin(&synthetic_iin(904));
    assert_eq!(
        fetch(&env, &timed_out, &[("GBDFL_TIMEOUT", "300ms")], 14),
        1
    );
    env.emu().set_faults(Faults {
        hang_up_first: 1,
        ..Faults::default()
    });
    let hung_up = use_iin(&synthetic_iin(905));
    assert_eq!(fetch(&env, &hung_up, &[], 14), 1);
    env.emu().set_faults(Faults::default());
    let garbage = use_iin(iins::GARBAGE_HTML);
    assert_eq!(fetch(&env, &garbage, &[], 14), 1);
    env.ok(&["queue", "drop", &garbage]);

    // The queued requests are sent: the 429 one after its Retry-After,
    // the never-connected one now that the service is up. The two in
    // doubt wait for the operator's word (exit 14).
    let (n, _) = calls_during(&env, &["sync"], &[QUICK_RETRY], 14);
    assert_eq!(n, 3);
    let (n, _) = calls_during(&env, &["sync", "--resend-in-doubt"], &[QUICK_RETRY], 0);
    assert_eq!(n, 2);

    // A batch: new people, a cached one, PENDING then VALID (two paid
    // calls for one row), NOT_FOUND, a bad row; the first call gets the
    // service's own 503.
    let fresh: Vec<String> = (906..909).map(|n| use_iin(&synthetic_iin(n))).collect();
    let pending = use_iin(iins::PENDING_THEN_VALID);
    let mut lines = vec!["iin,session_id".to_owned()];
    for i in fresh.iter().chain([&a, &pending, &not_found]) {
        lines.push(format!("{i},{}", session()));
    }
    lines.push(format!("12345,{}", session()));
    let file = env.path().join("rows.csv");
    std::fs::write(&file, lines.join("\n") + "\n").unwrap();
    let out = env.path().join("outcome.csv");
    env.emu().set_faults(Faults {
        fail_first: 1,
        ..Faults::default()
    });
    let (batch_calls, r) = calls_during(
        &env,
        &[
            "batch",
            file.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--json",
        ],
        &[QUICK_RETRY],
        2,
    );
    refusals += 1;
    // 3 new people, PENDING + VALID, NOT_FOUND, and the refused one.
    assert_eq!(batch_calls, 7);
    let queue: Value = serde_json::from_str(&env.ok(&["queue", "--json"]).stdout).unwrap();
    assert_eq!(queue.as_array().unwrap().len(), 0, "{queue}");

    // The outcome file: its columns as they were, then `paid_calls`.
    let (header, rows) = csv_rows(&out);
    assert_eq!(
        header,
        [
            "line",
            "iin",
            "outcome",
            "source",
            "lookup_id",
            "message",
            "paid_calls"
        ]
    );
    let batch_paid = sum_col(&rows, "paid_calls");
    assert_eq!(batch_paid, batch_calls - 1, "all but the 503 refusal");
    let summary: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(summary["paid_calls"], batch_paid, "{summary}");
    for row in &rows {
        let paid: u64 = row["paid_calls"].parse().unwrap();
        assert_eq!(
            row["source"] == "paid call",
            paid > 0,
            "the source says paid exactly when a call counts: {row:?}"
        );
        match row["outcome"].as_str() {
            "BAD_ROW" => assert_eq!((row["source"].as_str(), paid), ("no call", 0)),
            "VALID" if row["source"] == "cache" => assert_eq!(paid, 0),
            _ => assert!(paid >= 1, "{row:?}"),
        }
    }
    let pending_row = rows
        .iter()
        .find(|r| r["iin"] == gbdfl_core::iin::mask(&pending))
        .unwrap();
    assert_eq!(pending_row["paid_calls"], "2", "PENDING, then VALID");

    // The one number: requests the emulator got, minus its own refusals.
    let paid = env.emu().calls() - refusals;
    assert_eq!(paid, 19);
    let not_sent = refusals + 1;
    let from_cache = 2;

    // 1. stats
    let stats: Vec<Value> = serde_json::from_str(&env.ok(&["stats", "--json"]).stdout).unwrap();
    let sum = |k: &str| stats.iter().map(|d| d[k].as_u64().unwrap()).sum::<u64>();
    assert_eq!(
        (sum("paid_calls"), sum("not_sent"), sum("from_cache")),
        (paid, not_sent, from_cache),
        "{stats:?}"
    );
    for d in &stats {
        let by: u64 = d["by_status"]
            .as_object()
            .unwrap()
            .values()
            .map(|v| v.as_u64().unwrap())
            .sum();
        assert_eq!(
            by,
            d["paid_calls"].as_u64().unwrap(),
            "each paid call once: {d}"
        );
    }

    // 2. report summary
    env.ok(&["report", "summary", "--out", "summary.csv"]);
    let (_, summary) = csv_rows(&env.path().join("summary.csv"));
    assert_eq!(
        (
            sum_col(&summary, "paid_calls"),
            sum_col(&summary, "not_sent"),
            sum_col(&summary, "cache_hits"),
            sum_col(&summary, "lookups"),
        ),
        (paid, not_sent, from_cache, paid + not_sent + from_cache)
    );
    // Per day, the same days and the same counts as stats.
    let stats_days: Vec<(String, u64)> = stats
        .iter()
        .map(|d| {
            (
                d["day"].as_str().unwrap().to_owned(),
                d["paid_calls"].as_u64().unwrap(),
            )
        })
        .collect();
    let summary_days: Vec<(String, u64)> = summary
        .iter()
        .map(|r| (r["day"].clone(), r["paid_calls"].parse().unwrap()))
        .collect();
    assert_eq!(stats_days, summary_days);

    // 3. report lookups
    env.ok(&["report", "lookups", "--out", "lookups.csv"]);
    let (_, lookups) = csv_rows(&env.path().join("lookups.csv"));
    let count = |s: &str| lookups.iter().filter(|r| r["source"] == s).count() as u64;
    assert_eq!(
        (count("paid"), count("not sent"), count("cache")),
        (paid, not_sent, from_cache)
    );

    // 4. history, summed over every person involved
    iins_used.sort();
    iins_used.dedup();
    let mut history_paid = 0u64;
    for iin in &iins_used {
        let h: Vec<Value> =
            serde_json::from_str(&env.ok(&["history", iin, "--json"]).stdout).unwrap();
        history_paid += h.iter().filter(|l| l["paid_call"] == true).count() as u64;
    }
    assert_eq!(history_paid, paid);

    // 5. the audit trail, and its report
    let audit = env.ok(&["audit", "log", "--json"]);
    let audit_paid = audit
        .stdout
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|e| e["paid_call"] == true)
        .count() as u64;
    assert_eq!(audit_paid, paid);
    env.ok(&["report", "audit", "--out", "audit.csv"]);
    let (_, audit_rows) = csv_rows(&env.path().join("audit.csv"));
    let audit_report_paid = audit_rows
        .iter()
        .filter(|r| r["paid_call"] == "true")
        .count() as u64;
    assert_eq!(audit_report_paid, paid);
}

/// A lookup late in a UTC day is counted on that UTC day by `stats` and the
/// summary report alike, whatever the machine's time zone (here UTC+5,
/// where it is already the next day).
#[test]
fn stats_and_the_summary_count_the_same_utc_days() {
    use gbdfl_core::iin::Iin;
    use gbdfl_store::crypto::MasterKey;
    use gbdfl_store::{LookupId, NewLookup, Outcome, Reached, Source, Store};

    let env = Env::bare();
    let key = MasterKey::from_bytes([9u8; 32]);
    gbdfl_store::keyfile::create(&env.key, &key).unwrap();
    let store = Store::init(&env.db, &key).unwrap().0;
    let iin = Iin::parse(&synthetic_iin(950)).unwrap();
    let at = |s: &str| {
        chrono::DateTime::parse_from_rfc3339(s)
            .unwrap()
            .with_timezone(&chrono::Utc)
    };
    for (n, time, reached) in [
        (1u128, "2030-06-01T04:00:00Z", Reached::Yes),
        (2, "2030-06-01T20:30:00Z", Reached::Maybe),
        (3, "2030-06-01T21:00:00Z", Reached::No),
        (4, "2030-06-02T19:59:00Z", Reached::Yes),
    ] {
        let t = at(time);
        store
            .record(
                &NewLookup {
                    id: LookupId(uuid::Uuid::from_u128(n)),
                    iin: &iin,
                    session_id: "3e9b7d42-6c1a-4f8e-a2d5-9b4c8e1f7a3d",
                    purpose: None,
                    operator: "kassir-1",
                    host: "branch-12",
                    requested_at: t,
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
                    reached: Some(reached),
                    os_user: None,
                },
                None,
            )
            .unwrap();
    }
    drop(store);
    let almaty = [("TZ", "<+05>-5")];
    let expected = [("2030-06-01", 2, 1), ("2030-06-02", 1, 0)];

    let r = expect(env.run_with(&["stats", "--json"], &almaty), 0);
    let stats: Vec<Value> = serde_json::from_str(&r.stdout).unwrap();
    let days: Vec<(&str, u64, u64)> = stats
        .iter()
        .map(|d| {
            (
                d["day"].as_str().unwrap(),
                d["paid_calls"].as_u64().unwrap(),
                d["not_sent"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(days, expected);
    // --from/--to are the same UTC days.
    let r = expect(
        env.run_with(
            &[
                "stats",
                "--json",
                "--from",
                "2030-06-02",
                "--to",
                "2030-06-02",
            ],
            &almaty,
        ),
        0,
    );
    let one: Vec<Value> = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(one.len(), 1, "{one:?}");
    assert_eq!(one[0]["day"], "2030-06-02");

    expect(
        env.run_with(&["report", "summary", "--out", "s.csv"], &almaty),
        0,
    );
    let (_, rows) = csv_rows(&env.path().join("s.csv"));
    let days: Vec<(String, u64, u64)> = rows
        .iter()
        .map(|r| {
            (
                r["day"].clone(),
                r["paid_calls"].parse().unwrap(),
                r["not_sent"].parse().unwrap(),
            )
        })
        .collect();
    let expected: Vec<(String, u64, u64)> = expected
        .iter()
        .map(|(d, p, n)| ((*d).to_owned(), *p, *n))
        .collect();
    assert_eq!(days, expected);
}
