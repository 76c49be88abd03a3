//! A database of format version 5 migrates to the current version on
//! open: the same answers come out, and a migration killed at any moment
//! leaves the old version readable or the new one complete.

use std::process::Stdio;
use std::time::Instant;

use serde_json::Value;

use crate::bulk::{TODAY, archive, write_lines};
use crate::harness::Env;

/// A version-5 database at `env.db` (replacing the one `Env` made) holding
/// `lines`, under `env`'s key.
fn v5_database(env: &Env, lines: &[String], summaries: bool) -> u64 {
    for end in ["", "-wal", "-shm"] {
        let mut p = env.db.clone().into_os_string();
        p.push(end);
        let _ = std::fs::remove_file(p);
    }
    let key = gbdfl_store::keyfile::load(&env.key).unwrap();
    gbdfl_store::testing::write_v5_database(&env.db, &key, lines, summaries)
}

fn user_version(env: &Env) -> i64 {
    let conn = rusqlite::Connection::open(&env.db).unwrap();
    conn.query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap()
}

/// `n` archive lines, fetched a minute apart from 2020-01-01 on.
fn lines(n: u32) -> Vec<String> {
    let start = chrono::DateTime::parse_from_rfc3339("2020-01-01T00:00:00Z").unwrap();
    archive(n)
        .into_iter()
        .enumerate()
        .map(|(i, mut v)| {
            let at = start + chrono::TimeDelta::minutes(i as i64);
            v["fetched_at"] = at.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string().into();
            v.to_string()
        })
        .collect()
}

/// Every line `gbdfl export` writes, sorted.
fn exported(env: &Env) -> Vec<String> {
    let mut out: Vec<String> = env
        .ok(&["export"])
        .stdout
        .lines()
        .map(str::to_owned)
        .collect();
    out.sort();
    out
}

#[test]
fn a_version_5_database_gives_the_answers_a_new_one_gives() {
    let lines = lines(60);
    // The same answers imported into a database of today...
    let fresh = Env::new();
    fresh.ok(&["import", &write_lines(&fresh, "archive.jsonl", &lines)]);
    // ...and written by the previous format, without summaries (as before
    // version 3: the migration makes them).
    let old = Env::new();
    assert_eq!(v5_database(&old, &lines, false), 60);
    assert_eq!(user_version(&old), 5);
    let report = |env: &Env| env.ok(&["expiring", "--as-of", TODAY]).stdout;
    assert_eq!(report(&old), report(&fresh));
    assert_eq!(user_version(&old), gbdfl_store::SCHEMA_VERSION);
    let stale = |env: &Env| {
        let rows: Vec<Value> =
            serde_json::from_str(&env.ok(&["expiring", "--stale", "0s", "--json"]).stdout).unwrap();
        rows.iter()
            .map(|r| {
                (
                    r["iin"].clone(),
                    r["full_name"].clone(),
                    r["fetched_at"].clone(),
                )
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(stale(&old).len(), 60);
    assert_eq!(stale(&old), stale(&fresh));
    assert_eq!(exported(&old), exported(&fresh));
    let conn = rusqlite::Connection::open(&old.db).unwrap();
    let without: i64 = conn
        .query_row(
            "SELECT count(*) FROM lookups WHERE status = 'VALID' AND summary_enc IS NULL",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(without, 0, "every VALID answer has its summary now");
    let r = old.ok(&["check"]);
    assert!(r.stdout.contains("60 lookups"), "{}", r.stdout);
    // The migration is in the trail, with what it carried over.
    let log = old.ok(&["audit", "log", "--json"]).stdout;
    let log: Vec<Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(
        log.iter()
            .any(|e| e["command"] == "migrate" && e["records"] == 60),
        "{log:?}"
    );
}

/// 100,000 lookups of the previous format; 20 migrations killed with
/// SIGKILL at random moments, each followed by a normal open: every time the
/// database holds every lookup at the old version or the new one, and at
/// the end `check` passes and every answer reads as before.
#[test]
fn a_migration_killed_at_any_moment_loses_nothing() {
    let lines = lines(100_000);
    let fresh = Env::new();
    fresh.ok(&["import", &write_lines(&fresh, "archive.jsonl", &lines)]);
    let want = exported(&fresh);
    assert_eq!(want.len(), 100_000);

    let env = Env::new();
    assert_eq!(v5_database(&env, &lines, true), 100_000);
    let pristine = env.path().join("v5.db");
    std::fs::copy(&env.db, &pristine).unwrap();
    let restore = || {
        for end in ["-wal", "-shm"] {
            let mut p = env.db.clone().into_os_string();
            p.push(end);
            let _ = std::fs::remove_file(p);
        }
        std::fs::copy(&pristine, &env.db).unwrap();
    };
    // How long a whole migration takes here: kills fall inside it.
    let started = Instant::now();
    env.ok(&["stats"]);
    let whole = started.elapsed();
    assert_eq!(user_version(&env), gbdfl_store::SCHEMA_VERSION);
    let (mut before, mut after) = (0, 0);
    for round in 0..20u32 {
        restore();
        let mut child: std::process::Child = env
            .command(&["stats"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let at = whole.mul_f64(f64::from(uuid::Uuid::new_v4().as_bytes()[0]) / 255.0);
        std::thread::sleep(at);
        let _ = child.kill();
        let _ = child.wait();
        // Killed before its commit: still version 5, with every lookup;
        // after: the current version, complete.
        let version = user_version(&env);
        let conn = rusqlite::Connection::open(&env.db).unwrap();
        let n: i64 = conn
            .query_row("SELECT count(*) FROM lookups", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 100_000, "round {round} (version {version})");
        match version {
            5 => before += 1,
            v if v == gbdfl_store::SCHEMA_VERSION => after += 1,
            v => panic!("round {round}: version {v}"),
        }
        // A normal open finishes the job.
        env.ok(&["stats"]);
        assert_eq!(
            user_version(&env),
            gbdfl_store::SCHEMA_VERSION,
            "round {round}"
        );
    }
    eprintln!("whole migration {whole:?}; killed before its commit {before}, after {after}");
    let r = env.ok(&["check"]);
    assert!(r.stdout.contains("100000 lookups"), "{}", r.stdout);
    assert_eq!(exported(&env), want, "every answer byte for byte");
}
