//! Hostile files and answers (issue 7): a database that is not SQLite or is
//! from a newer schema, a bad or exposed key file, a read-only database, a
//! write that fails part-way, and the emulator's hostile answers (100 MiB,
//! 10,000 documents, deep nesting, invalid UTF-8). Each gives a clear error
//! and its documented exit code, never a panic, makes no paid call when it
//! is refused up front, and loses nothing stored before it.

use std::os::unix::process::CommandExt;
use std::path::Path;

use gbdfl_emulator::{Faults, Hostile, iins};

use crate::harness::{Env, Run, session, synthetic_iin};
use crate::secrets::{NOBODY, as_nobody, chown_tree, is_root};

/// No panic, no internal error, no full IIN of the given ones on stderr.
fn assert_clean(r: &Run, iins: &[&str]) {
    for s in [&r.stdout, &r.stderr] {
        assert!(!s.contains("panicked"), "{}", r.stderr);
        assert!(!s.contains("internal error"), "{}", r.stderr);
    }
    for iin in iins {
        assert!(!r.stderr.contains(iin), "full IIN on stderr: {}", r.stderr);
    }
}

/// An Env with one VALID record already fetched and shown: what must not be lost.
fn with_one_record() -> (Env, String) {
    let env = Env::new();
    let iin = synthetic_iin(7);
    env.ok(&["fetch", &iin, "--session", &session()]);
    (env, iin)
}

/// The earlier record is still there, readable, and the database checks out.
fn assert_nothing_lost(env: &Env, iin: &str) {
    let shown = env.ok(&["show", iin, "--json"]);
    assert!(shown.stdout.contains("\"VALID\""), "{}", shown.stdout);
    env.ok(&["check"]);
}

fn file_bytes(p: &Path) -> Vec<u8> {
    std::fs::read(p).unwrap()
}

#[test]
fn a_database_file_that_is_not_sqlite_is_refused_and_left_alone() {
    let env = Env::new();
    let junk: Vec<u8> = (0..20_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(&env.db, &junk).unwrap();
    let r = env.fails(&["fetch", iins::VALID, "--session", &session()], 9);
    assert!(r.stderr.contains("is not a gbdfl database"), "{}", r.stderr);
    assert_clean(&r, &[iins::VALID]);
    assert_eq!(
        env.emu().calls(),
        0,
        "no paid call for an unusable database"
    );
    let r = env.fails(&["show", iins::VALID], 9);
    assert_clean(&r, &[iins::VALID]);
    assert_eq!(file_bytes(&env.db), junk, "the file was not changed");
    // A text file (a CSV given as --db by mistake) too.
    std::fs::write(&env.db, "iin;session_id\n").unwrap();
    env.fails(&["show", iins::VALID], 9);
    assert_eq!(file_bytes(&env.db), b"iin;session_id\n");
}

#[test]
fn a_database_from_a_newer_schema_is_refused_and_left_alone() {
    let (env, iin) = with_one_record();
    let calls = env.emu().calls();
    {
        let c = rusqlite::Connection::open(&env.db).unwrap();
        c.execute_batch("PRAGMA user_version = 99;").unwrap();
    }
    let before = env.db_bytes();
    let r = env.fails(&["fetch", &iin, "--session", &session(), "--force"], 9);
    assert!(r.stderr.contains("schema version 99"), "{}", r.stderr);
    assert!(r.stderr.contains("upgrade gbdfl"), "{}", r.stderr);
    assert_clean(&r, &[&iin]);
    assert_eq!(env.emu().calls(), calls, "no paid call");
    env.fails(&["show", &iin], 9);
    assert_eq!(env.db_bytes(), before, "the file was not changed");
    // Put the version back: everything is still there.
    {
        let c = rusqlite::Connection::open(&env.db).unwrap();
        c.execute_batch(&format!(
            "PRAGMA user_version = {};",
            gbdfl_store::SCHEMA_VERSION
        ))
        .unwrap();
    }
    assert_nothing_lost(&env, &iin);
}

#[test]
fn a_truncated_key_file_is_refused_before_any_call() {
    let (env, iin) = with_one_record();
    let calls = env.emu().calls();
    let key = std::fs::read_to_string(&env.key).unwrap();
    std::fs::write(&env.key, &key[..30]).unwrap();
    let r = env.fails(&["fetch", &iin, "--session", &session(), "--force"], 8);
    assert!(r.stderr.contains("may be truncated"), "{}", r.stderr);
    assert!(!r.stderr.contains(&key[13..30]), "key bytes in the message");
    assert_clean(&r, &[&iin]);
    assert_eq!(env.emu().calls(), calls);
    // An empty one too.
    std::fs::write(&env.key, "").unwrap();
    env.fails(&["show", &iin], 8);
    std::fs::write(&env.key, &key).unwrap();
    assert_nothing_lost(&env, &iin);
}

#[test]
fn a_key_file_others_can_read_is_refused_before_it_is_read() {
    use std::os::unix::fs::PermissionsExt;
    let (env, iin) = with_one_record();
    let calls = env.emu().calls();
    for mode in [0o644, 0o640, 0o604, 0o660] {
        std::fs::set_permissions(&env.key, std::fs::Permissions::from_mode(mode)).unwrap();
        let r = env.fails(&["fetch", &iin, "--session", &session(), "--force"], 8);
        assert!(
            r.stderr.contains("only its owner may read or write it")
                && r.stderr.contains("chmod 600"),
            "{}",
            r.stderr
        );
        assert_clean(&r, &[&iin]);
    }
    assert_eq!(env.emu().calls(), calls);
    std::fs::set_permissions(&env.key, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert_nothing_lost(&env, &iin);
}

fn run_cmd(mut cmd: std::process::Command, what: &str) -> Run {
    let out = cmd.output().expect("run gbdfl");
    Run {
        cmdline: what.to_owned(),
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[test]
fn a_read_only_database_exits_9_before_any_paid_call() {
    use std::os::unix::fs::PermissionsExt;
    let (env, iin) = with_one_record();
    let calls = env.emu().calls();
    let before = env.db_bytes();
    std::fs::set_permissions(&env.db, std::fs::Permissions::from_mode(0o400)).unwrap();
    let args = ["fetch", iins::VALID, "--session", &session()];
    let mut cmd = env.command(&args);
    if is_root() {
        // Root writes whatever the mode says: run as nobody, who owns the
        // files, so the mode is what stops the write.
        chown_tree(env.path(), NOBODY);
        as_nobody(&mut cmd);
    }
    let r = run_cmd(cmd, "gbdfl fetch (read-only database)");
    assert_eq!(r.code, 9, "{}\n{}", r.cmdline, r.stderr);
    assert!(r.stderr.contains("is read-only"), "{}", r.stderr);
    assert!(r.stderr.contains("nothing was sent"), "{}", r.stderr);
    assert_clean(&r, &[iins::VALID]);
    assert_eq!(
        env.emu().calls(),
        calls,
        "no paid call that could not be recorded"
    );
    if is_root() {
        chown_tree(env.path(), 0);
    }
    std::fs::set_permissions(&env.db, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert_eq!(env.db_bytes(), before, "the database was not changed");
    assert_nothing_lost(&env, &iin);
}

/// A write that fails part-way (as on a full disk): RLIMIT_FSIZE lets the
/// first page of the transaction into the WAL and fails the next with EFBIG.
#[test]
fn a_write_that_fails_part_way_is_rolled_back_with_a_clear_error() {
    let (env, iin) = with_one_record();
    let calls = env.emu().calls();
    let limits: [libc::rlim_t; 3] = [6_000, 4_200, 100];
    for limit in limits {
        let other = synthetic_iin(8);
        let args = ["fetch", other.as_str(), "--session", &session()];
        let mut cmd = env.command(&args);
        // SAFETY: setrlimit is async-signal-safe.
        unsafe {
            cmd.pre_exec(move || {
                let l = libc::rlimit {
                    rlim_cur: limit,
                    rlim_max: limit,
                };
                if libc::setrlimit(libc::RLIMIT_FSIZE, &l) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let r = run_cmd(cmd, &format!("gbdfl fetch (RLIMIT_FSIZE {limit})"));
        assert_eq!(r.code, 9, "limit {limit}: {}", r.stderr);
        assert!(
            r.stderr.contains("could not write to the database"),
            "{}",
            r.stderr
        );
        assert!(r.stderr.contains("rolled back"), "{}", r.stderr);
        assert_clean(&r, &[&other]);
        assert_eq!(
            env.emu().calls(),
            calls,
            "the claim is written before the call, so no call is made"
        );
    }
    assert_nothing_lost(&env, &iin);
    env.ok(&["audit", "verify"]);
}

fn hostile_env(kind: Hostile) -> (Env, String) {
    let (env, iin) = with_one_record();
    env.emu().set_faults(Faults {
        hostile_first: 1,
        hostile: kind,
        ..Faults::default()
    });
    (env, iin)
}

#[test]
fn a_100_mib_answer_is_cut_at_the_limit_and_kept_for_inspection() {
    let (env, iin) = hostile_env(Hostile::HugeBody);
    let other = synthetic_iin(9);
    let started = std::time::Instant::now();
    let r = env.fails(&["fetch", &other, "--session", &session()], 14);
    assert!(
        r.stderr.contains("larger than the limit of 10485760 bytes"),
        "{}",
        r.stderr
    );
    assert_clean(&r, &[&other]);
    assert!(
        started.elapsed().as_secs() < 60,
        "it stopped reading at the limit"
    );
    // The limit is configurable.
    env.emu().set_faults(Faults {
        hostile_first: 1,
        hostile: Hostile::HugeBody,
        ..Faults::default()
    });
    let r = env.run_with(
        &["fetch", &other, "--session", &session()],
        &[("GBDFL_MAX_RESPONSE_BYTES", "4096")],
    );
    assert_eq!(r.code, 14, "{}", r.stderr);
    assert!(r.stderr.contains("limit of 4096 bytes"), "{}", r.stderr);
    assert!(
        env.db_bytes().len() < 40 * 1024 * 1024,
        "at most the limit was stored"
    );
    assert_nothing_lost(&env, &iin);
}

#[test]
fn an_answer_with_10000_documents_is_stored_shown_and_reported() {
    let (env, iin) = hostile_env(Hostile::ManyDocuments);
    let other = synthetic_iin(10);
    env.ok(&["fetch", &other, "--session", &session()]);
    let shown = env.ok(&["show", &other]);
    assert!(
        shown.stdout.contains("N00009999"),
        "the last document is shown"
    );
    let json = env.ok(&["show", &other, "--json"]);
    let v: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(
        v["result_json"]["documents"].as_array().unwrap().len(),
        10_000
    );
    env.ok(&["expiring", "--within", "36500d"]);
    let out = env.path().join("expiring.csv");
    env.ok(&[
        "report",
        "expiring",
        "--out",
        out.to_str().unwrap(),
        "--within",
        "36500d",
    ]);
    assert!(std::fs::read_to_string(&out).unwrap().lines().count() > 10_000);
    assert_nothing_lost(&env, &iin);
}

#[test]
fn deeply_nested_json_is_a_garbled_answer_not_a_crash() {
    let (env, iin) = hostile_env(Hostile::DeepNesting);
    let other = synthetic_iin(11);
    let r = env.fails(&["fetch", &other, "--session", &session()], 14);
    assert!(r.stderr.contains("not GBDFL JSON"), "{}", r.stderr);
    assert!(r.stderr.contains("recursion limit"), "{}", r.stderr);
    assert_clean(&r, &[&other]);
    // Stored as received, and the commands that read it cope.
    let h = env.ok(&["history", &other]);
    assert!(h.stdout.contains("GARBLED"), "{}", h.stdout);
    env.ok(&["history", &other, "--json"]);
    env.fails(&["show", &other], 3);
    let out = env.path().join("lookups.csv");
    env.ok(&["report", "lookups", "--out", out.to_str().unwrap()]);
    assert_nothing_lost(&env, &iin);
}

#[test]
fn an_answer_that_is_not_utf8_is_a_garbled_answer_kept_as_received() {
    let (env, iin) = hostile_env(Hostile::InvalidUtf8);
    let other = synthetic_iin(12);
    let r = env.fails(&["fetch", &other, "--session", &session()], 14);
    assert!(r.stderr.contains("not GBDFL JSON"), "{}", r.stderr);
    assert_clean(&r, &[&other]);
    env.ok(&["history", &other]);
    env.ok(&["history", &other, "--json"]);
    env.fails(&["show", &other], 3);
    // The next (normal) answer for the same person is taken as usual.
    env.ok(&["fetch", &other, "--session", &session()]);
    env.ok(&["show", &other]);
    assert_nothing_lost(&env, &iin);
}
