//! Audited first, under a held lock and a long purge: no command releases
//! personal data (standard output, a file) unless its audit entry is
//! already written; a held write lock is waited for and then named, never
//! shown as SQLite's "database is locked"; a purge works in batches that
//! let other commands in, counts what it deletes by kind and keeps queued
//! requests; and a file that is not a gbdfl database is left byte for byte
//! as it was.

use std::path::{Path, PathBuf};

use gbdfl_emulator::{iins, synthetic_response};
use rusqlite::Connection;

use crate::harness::{Env, Run, session, synthetic_iin};

/// A short wait for the lock, so that a test of a held lock is quick.
const SHORT_WAIT: (&str, &str) = ("GBDFL_BUSY_TIMEOUT", "300ms");

fn audit_rows(db: &Path) -> Vec<(i64, String, i64, String)> {
    let conn = Connection::open(db).unwrap();
    let mut st = conn
        .prepare("SELECT seq, command, records, outcome FROM audit ORDER BY seq")
        .unwrap();
    st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

/// Every file in the folder, hidden temporary files included.
fn files_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// The commands that release personal data, each with the file it writes
/// (if it writes one).
fn readers(env: &Env) -> Vec<(Vec<String>, Option<PathBuf>)> {
    let out = |name: &str| env.path().join("out").join(name);
    let mut list: Vec<(Vec<String>, Option<PathBuf>)> = vec![
        (vec!["show".into(), iins::VALID.into()], None),
        (
            vec!["show".into(), iins::VALID.into(), "--json".into()],
            None,
        ),
        (vec!["history".into(), iins::VALID.into()], None),
        (
            vec!["expiring".into(), "--within".into(), "36500d".into()],
            None,
        ),
        (vec!["expiring".into(), "--stale".into(), "0s".into()], None),
        (vec!["export".into()], None),
        (vec!["queue".into(), "--full".into()], None),
        (vec!["audit".into(), "log".into()], None),
    ];
    for (args, file) in [
        (
            vec!["report", "expiring", "--within", "36500d", "--full-iin"],
            "expiring.csv",
        ),
        (vec!["report", "lookups", "--full-iin"], "lookups.csv"),
        (vec!["report", "summary"], "summary.csv"),
        (vec!["export"], "export.jsonl"),
    ] {
        let mut args: Vec<String> = args.into_iter().map(String::from).collect();
        args.push("--out".into());
        args.push(out(file).to_string_lossy().into_owned());
        list.push((args, Some(out(file))));
    }
    list
}

fn run(env: &Env, args: &[String], extra: &[(&str, &str)]) -> Run {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    env.run_with(&args, extra)
}

/// Rows a command released: lines of its file or output, less a header.
fn released(args: &[String], r: &Run, file: Option<&PathBuf>) -> i64 {
    let text = match file {
        Some(f) => std::fs::read_to_string(f).unwrap(),
        None => r.stdout.clone(),
    };
    let lines = text.lines().filter(|l| !l.trim().is_empty()).count() as i64;
    match args[0].as_str() {
        "show" => 1,
        "report" | "history" | "queue" | "audit" => lines - 1,
        "expiring" => lines - 1,
        _ => lines,
    }
}

#[test]
fn issue_17_a_held_write_lock_releases_nothing_until_the_entry_is_written() {
    let env = Env::new();
    env.ok(&["fetch", iins::VALID, "--session", &session()]);
    env.ok(&["fetch", &synthetic_iin(1), "--session", &session()]);
    // A request in the queue, for `queue --full`: the service unreachable.
    let dead = crate::harness::closed_url();
    let down = [("GBDFL_BASE_URL", dead.as_str())];
    let r = env.run_with(
        &["fetch", &synthetic_iin(2), "--session", &session()],
        &down,
    );
    assert_eq!(r.code, 11, "{}", r.stderr);
    std::fs::create_dir(env.path().join("out")).unwrap();
    let before = audit_rows(&env.db);
    let files_before = files_in(&env.path().join("out"));

    // Another connection holds the write lock for the whole of each run.
    let holder = Connection::open(&env.db).unwrap();
    holder.execute_batch("BEGIN IMMEDIATE").unwrap();
    for (args, file) in readers(&env) {
        let r = run(&env, &args, &[SHORT_WAIT]);
        let what = format!("gbdfl {}: {}", args.join(" "), r.stderr);
        assert_eq!(r.code, 9, "{what}");
        assert!(
            r.stdout.is_empty(),
            "nothing released: {what}\n{}",
            r.stdout
        );
        assert!(
            r.stderr
                .contains("the audit entry could not be written, so nothing was shown or written")
                && r.stderr
                    .contains("another gbdfl process or another program holds its write lock")
                && r.stderr.contains("GBDFL_BUSY_TIMEOUT"),
            "{what}"
        );
        assert!(!r.stderr.contains("database is locked"), "{what}");
        if let Some(f) = file {
            assert!(!f.exists(), "{what}");
        }
        assert_eq!(files_in(&env.path().join("out")), files_before, "{what}");
    }
    holder.execute_batch("ROLLBACK").unwrap();
    assert_eq!(
        audit_rows(&env.db),
        before,
        "no entry, and nothing released"
    );

    // A long writer that noted itself is named, with its process.
    let me = format!(
        "{} {}",
        std::process::id(),
        gethostname::gethostname().to_string_lossy()
    );
    holder
        .execute(
            "INSERT INTO meta (key, value) VALUES (?1, 'purge 2026-12-03T10:00:00.000Z')",
            [format!("writing:{me}")],
        )
        .unwrap();
    holder.execute_batch("BEGIN IMMEDIATE").unwrap();
    let r = env.run_with(&["show", iins::VALID], &[SHORT_WAIT]);
    assert_eq!(r.code, 9, "{}", r.stderr);
    assert!(r.stdout.is_empty());
    assert!(
        r.stderr.contains(&format!(
            "a running `gbdfl purge` (PID {}",
            std::process::id()
        )),
        "{}",
        r.stderr
    );
    holder.execute_batch("ROLLBACK").unwrap();
    holder
        .execute("DELETE FROM meta WHERE key LIKE 'writing:%'", [])
        .unwrap();
    drop(holder);

    // With the lock free, each writes its entry, then releases what the
    // entry says: one entry per command, its count the rows released.
    let before = audit_rows(&env.db).len();
    let mut want = Vec::new();
    for (args, file) in readers(&env) {
        let r = run(&env, &args, &[]);
        assert_eq!(r.code, 0, "gbdfl {}: {}", args.join(" "), r.stderr);
        want.push((args.join(" "), released(&args, &r, file.as_ref())));
    }
    let after = audit_rows(&env.db);
    assert_eq!(after.len() - before, want.len(), "{after:?}");
    for ((cmd, n), (_, command, records, outcome)) in want.iter().zip(&after[before..]) {
        assert!(cmd.starts_with(command.as_str()), "{cmd} vs {command}");
        assert_eq!(outcome, "ok", "{cmd}");
        // `audit log` lists the trail as it was before its own entry.
        assert_eq!(records, n, "{cmd}: the entry counts what was released");
    }
}

/// `n` answers fetched in 2020, as archive lines.
fn old_archive(env: &Env, n: u32) -> String {
    let today = chrono::NaiveDate::from_ymd_opt(2020, 1, 1).unwrap();
    let lines: Vec<String> = (0..n)
        .map(|i| {
            let mut v = synthetic_response(&synthetic_iin(1000 + i), "s", today);
            v["fetched_at"] = format!(
                "2020-01-01T{:02}:{:02}:{:02}.000Z",
                i / 3600,
                (i / 60) % 60,
                i % 60
            )
            .into();
            v.to_string()
        })
        .collect();
    let path = env.path().join("old.jsonl");
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    path.to_string_lossy().into_owned()
}

#[test]
fn issue_17_a_show_is_served_while_a_large_purge_runs() {
    let env = Env::new();
    let old = old_archive(&env, 1000);
    env.ok(&["import", &old]);
    env.ok(&["fetch", iins::VALID, "--session", &session()]);
    let first_purge = |conn: &Connection| -> i64 {
        conn.query_row(
            "SELECT count(*) FROM audit WHERE command = 'purge'",
            [],
            |r| r.get(0),
        )
        .unwrap()
    };
    let watch = Connection::open(&env.db).unwrap();
    // 100 transactions of 10 lookups each.
    let mut purge = env
        .command(&["purge", "--older-than", "365d", "--batch", "10"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Once its first batch is committed, the purge is under way.
    while first_purge(&watch) == 0 {
        assert!(
            purge.try_wait().unwrap().is_none(),
            "the purge ended before its first batch was seen"
        );
        std::thread::yield_now();
    }
    let shown = env.ok(&["show", iins::VALID]);
    assert!(!shown.stdout.is_empty());
    let out = purge.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("Deleted 1000 lookups (1000 calls to the service, 0 cache answers)"),
        "{stdout}"
    );
    let trail = audit_rows(&env.db);
    let show_at = trail.iter().find(|e| e.1 == "show").unwrap().0;
    let purges: Vec<_> = trail.iter().filter(|e| e.1 == "purge").collect();
    assert!(
        purges.first().unwrap().0 < show_at && show_at < purges.last().unwrap().0,
        "the show's entry comes between the purge's batches: {trail:?}"
    );
    assert_eq!(purges.iter().map(|e| e.2).sum::<i64>(), 1000);
    assert!(purges.iter().all(|e| e.2 <= 10));
    env.ok(&["audit", "verify"]);
}

#[test]
fn issue_17_purge_counts_each_kind_exactly_and_keeps_queued_requests() {
    let env = Env::new();
    // All of it looked up or queued in 2020, by the clock.
    let then = [("GBDFL_TEST_NOW", "2020-01-01T00:00:00Z")];
    env.ok_with(&["fetch", iins::VALID, "--session", &session()], &then);
    // Answered from the cache: a lookup that names the first as its source.
    env.ok_with(&["fetch", iins::VALID, "--session", &session()], &then);
    let dead = crate::harness::closed_url();
    let down = [("GBDFL_BASE_URL", dead.as_str()), then[0]];
    for n in 0..3 {
        let r = env.run_with(
            &["fetch", &synthetic_iin(n), "--session", &session()],
            &down,
        );
        assert_eq!(r.code, 11, "queued: {}", r.stderr);
    }
    // One queue item expired, one in doubt (its sender died), one waiting.
    let conn = Connection::open(&env.db).unwrap();
    conn.execute_batch(
        "UPDATE queue SET state = 'expired' WHERE id = (SELECT min(id) FROM queue);
         UPDATE queue SET claimed_by = 'gone', claimed_until = 1577836860000
             WHERE id = (SELECT max(id) FROM queue);",
    )
    .unwrap();
    // The queued requests' attempts are lookups too (never sent).
    let counts = "5 lookups (4 calls to the service, 1 cache answer) and 1 expired queue item";
    let kept =
        "2 requests queued before then still wait to be sent: kept (--include-waiting drops them)";
    let dry = env.ok(&["purge", "--older-than", "365d", "--dry-run"]);
    assert!(
        dry.stdout.contains(counts) && dry.stdout.contains(kept),
        "{}",
        dry.stdout
    );
    let real = env.ok(&["purge", "--older-than", "365d"]);
    assert!(
        real.stdout.contains(&format!("Deleted {counts}")) && real.stdout.contains(kept),
        "{}",
        real.stdout
    );
    let queued: i64 = conn
        .query_row(
            "SELECT count(*) FROM queue WHERE state = 'waiting'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(queued, 2, "waiting and in-doubt requests are kept");
    let trail = audit_rows(&env.db);
    let purged: i64 = trail.iter().filter(|e| e.1 == "purge").map(|e| e.2).sum();
    assert_eq!(purged, 6, "5 lookups and 1 expired item: {trail:?}");

    // rekey counts queued requests as what they are.
    let r = env.ok(&[
        "rekey",
        "--out",
        env.path().join("new.key").to_str().unwrap(),
    ]);
    assert!(
        r.stdout
            .contains("Re-encrypted 0 lookups, 2 queued requests and the audit trail"),
        "{}",
        r.stdout
    );
    let new_key = env.path().join("new.key");
    let new_key = [("GBDFL_KEY_FILE", new_key.to_str().unwrap())];
    let r = env.run_with(
        &["purge", "--older-than", "365d", "--include-waiting"],
        &new_key,
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout.contains("Deleted 0 lookups")
            && r.stdout.contains("Dropped 2 waiting queued requests"),
        "{}",
        r.stdout
    );
    let trail = audit_rows(&env.db);
    assert_eq!(
        trail
            .iter()
            .filter(|e| e.1 == "queue drop" && e.2 == 1)
            .count(),
        2,
        "each dropped like `queue drop`: {trail:?}"
    );
    let left: i64 = conn
        .query_row("SELECT count(*) FROM queue", [], |r| r.get(0))
        .unwrap();
    assert_eq!(left, 0);
}

/// A file's bytes and whether SQLite left a -wal or -shm file beside it.
fn state_of(path: &Path) -> (Vec<u8>, bool) {
    let beside = ["-wal", "-shm", "-journal"].iter().any(|s| {
        let mut p = path.as_os_str().to_owned();
        p.push(s);
        Path::new(&p).exists()
    });
    (std::fs::read(path).unwrap(), beside)
}

#[test]
fn issue_17_another_programs_database_is_left_byte_for_byte() {
    let env = Env::new();
    for (name, setup) in [
        (
            "plain.db",
            "CREATE TABLE notes (x TEXT); INSERT INTO notes VALUES ('mine');",
        ),
        (
            "wal.db",
            "PRAGMA journal_mode = WAL; CREATE TABLE notes (x TEXT); INSERT INTO notes VALUES ('mine');",
        ),
        (
            "app.db",
            "PRAGMA application_id = 1234; CREATE TABLE t (x);",
        ),
    ] {
        let path = env.path().join(name);
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(setup).unwrap();
        drop(conn);
        let before = state_of(&path);
        assert!(!before.1, "{name}: closed cleanly");
        let db = path.to_str().unwrap();
        for args in [
            vec!["--db", db, "show", iins::VALID],
            vec!["--db", db, "history", iins::VALID],
            vec!["--db", db, "init"],
        ] {
            let r = env.fails(&args, 9);
            assert!(
                r.stderr.contains("is not a gbdfl database")
                    && r.stderr.contains("the file was not changed"),
                "{name}: {}",
                r.stderr
            );
            assert_eq!(state_of(&path), before, "{name}: gbdfl {}", args.join(" "));
        }
    }
}

#[test]
fn issue_17_an_empty_file_is_no_database_and_init_makes_one_there() {
    // With a key file: `show` says to run init, and init then makes the
    // database in the empty file.
    let env = Env::new();
    let empty = env.path().join("empty.db");
    std::fs::write(&empty, b"").unwrap();
    let db = empty.to_str().unwrap();
    let r = env.fails(&["--db", db, "show", iins::VALID], 9);
    assert!(r.stderr.contains("run `gbdfl init` first"), "{}", r.stderr);
    assert_eq!(std::fs::metadata(&empty).unwrap().len(), 0, "left empty");
    env.ok(&["--db", db, "init"]);
    env.fails(&["--db", db, "show", iins::VALID], 3);
    env.ok(&["--db", db, "audit", "verify"]);

    // With no key file yet either: init makes both.
    let bare = Env::bare();
    std::fs::write(&bare.db, b"").unwrap();
    let r = bare.run(&["show", iins::VALID]);
    assert_ne!(r.code, 0);
    assert_eq!(std::fs::metadata(&bare.db).unwrap().len(), 0, "left empty");
    bare.ok(&["init"]);
    bare.fails(&["show", iins::VALID], 3);
}
