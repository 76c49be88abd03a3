//! The audit trail: one entry per command that touches personal data, a
//! chain that detects tampering, and purge, rekey, backup and check.

use std::process::Command;
use std::time::Duration;

use gbdfl_emulator::iins;

use crate::harness::{Env, contains, session, synthetic_iin};

fn sql(env: &Env, statement: &str) {
    let conn = rusqlite::Connection::open(&env.db).unwrap();
    conn.execute_batch(statement).unwrap();
}

fn entries(env: &Env) -> Vec<serde_json::Value> {
    // Read the trail without adding to it: straight from the file, oldest first.
    let conn = rusqlite::Connection::open(&env.db).unwrap();
    let mut st = conn
        .prepare("SELECT seq, operator, command, outcome, exit_code, paid_call, records, subject IS NOT NULL FROM audit ORDER BY seq")
        .unwrap();
    st.query_map([], |r| {
        Ok(serde_json::json!({
            "seq": r.get::<_, i64>(0)?, "operator": r.get::<_, String>(1)?, "command": r.get::<_, String>(2)?,
            "outcome": r.get::<_, String>(3)?, "exit_code": r.get::<_, i64>(4)?, "paid_call": r.get::<_, bool>(5)?,
            "records": r.get::<_, i64>(6)?, "has_subject": r.get::<_, bool>(7)?,
        }))
    })
    .unwrap()
    .collect::<Result<_, _>>()
    .unwrap()
}

/// A trail of a few entries from real commands.
fn trail() -> Env {
    let env = Env::new();
    env.ok(&[
        "fetch",
        iins::VALID,
        "--session",
        &session(),
        "--purpose",
        "onboarding",
    ]);
    env.ok(&["show", iins::VALID]);
    env.ok(&["history", iins::VALID]);
    env.fails(&["show", iins::NOT_FOUND], 3);
    env.ok(&["fetch", iins::VALID, "--session", &session()]);
    env
}

#[test]
fn an_untouched_trail_verifies() {
    let env = trail();
    let r = env.ok(&["audit", "verify"]);
    assert!(r.stderr.contains("5 entries, chain intact"), "{}", r.stderr);
}

/// Tampers with a fresh trail and checks `audit verify` exits 8 saying `names`.
fn tampered(statement: &str, names: &str) {
    let env = trail();
    sql(&env, statement);
    let r = env.fails(&["audit", "verify"], 8);
    assert!(r.stderr.contains(names), "{statement}: {}", r.stderr);
}

#[test]
fn a_changed_field_is_named() {
    tampered(
        "UPDATE audit SET operator = 'someone-else' WHERE seq = 2",
        "entry 2 ",
    );
    tampered("UPDATE audit SET records = 99 WHERE seq = 4", "entry 4 ");
    tampered(
        "UPDATE audit SET command = 'history' WHERE seq = 2",
        "entry 2 ",
    );
    tampered(
        "UPDATE audit SET purpose_enc = NULL WHERE seq = 1",
        "entry 1 ",
    );
}

#[test]
fn a_deleted_entry_is_named() {
    tampered("DELETE FROM audit WHERE seq = 3", "entry 3 is missing");
}

#[test]
fn renumbering_after_a_delete_is_caught_too() {
    tampered(
        "DELETE FROM audit WHERE seq = 3; UPDATE audit SET seq = seq - 1 WHERE seq > 3",
        "entry 3 ",
    );
}

#[test]
fn swapped_entries_are_named() {
    tampered(
        "UPDATE audit SET seq = -1 WHERE seq = 2; UPDATE audit SET seq = 2 WHERE seq = 3; \
         UPDATE audit SET seq = 3 WHERE seq = -1;",
        "entry 2 ",
    );
}

#[test]
fn an_inserted_entry_is_named() {
    // A copy of entry 2 appended with the next number: its MAC does not chain.
    tampered(
        "INSERT INTO audit SELECT 6, 'forged-id', at, operator, host, command, subject, outcome, exit_code, \
         paid_call, records, key_version, purpose_enc, error_enc, mac, os_user, lookup_id, purged_before \
         FROM audit WHERE seq = 2",
        "entry 6 ",
    );
}

#[test]
fn a_cut_tail_is_caught_with_the_head_written_down() {
    let env = trail();
    let head = env.ok(&["audit", "head"]).stdout.trim().to_owned();
    assert!(head.starts_with("5:"), "{head}");
    env.ok(&["show", iins::VALID]);
    env.ok(&["audit", "verify", "--head", &head]);
    // Cut everything from entry 4 on: the chain that is left is consistent...
    sql(&env, "DELETE FROM audit WHERE seq >= 4");
    env.ok(&["audit", "verify"]);
    // ...but not with the head the auditor wrote down.
    let r = env.fails(&["audit", "verify", "--head", &head], 8);
    assert!(r.stderr.contains("cut off"), "{}", r.stderr);
    let r = env.fails(&["audit", "verify", "--head", "5:zz"], 2);
    assert!(r.stderr.contains("COUNT:MAC"), "{}", r.stderr);
}

#[test]
fn each_command_leaves_exactly_one_entry_with_its_fields() {
    let env = Env::new();
    let backup = env.path().join("copy.db");
    let cases: Vec<(Vec<String>, &str, i64, bool, bool)> = vec![
        // args, command, exit code, paid call, has subject
        (
            vec![
                "fetch".into(),
                iins::VALID.into(),
                "--session".into(),
                session(),
                "--purpose".into(),
                "kyc".into(),
            ],
            "fetch",
            0,
            true,
            true,
        ),
        (
            vec![
                "fetch".into(),
                iins::VALID.into(),
                "--session".into(),
                session(),
            ],
            "fetch",
            0,
            false,
            true,
        ),
        (
            vec![
                "fetch".into(),
                iins::NOT_FOUND.into(),
                "--session".into(),
                session(),
            ],
            "fetch",
            5,
            true,
            true,
        ),
        (
            vec!["show".into(), iins::VALID.into()],
            "show",
            0,
            false,
            true,
        ),
        (
            vec!["show".into(), iins::INVALID.into()],
            "show",
            3,
            false,
            true,
        ),
        (
            vec!["history".into(), iins::VALID.into()],
            "history",
            0,
            false,
            true,
        ),
        (
            vec!["audit".into(), "log".into()],
            "audit log",
            0,
            false,
            false,
        ),
        (
            vec!["audit".into(), "verify".into()],
            "audit verify",
            0,
            false,
            false,
        ),
        (
            vec![
                "purge".into(),
                "--older-than".into(),
                "3650d".into(),
                "--dry-run".into(),
            ],
            "purge --dry-run",
            0,
            false,
            false,
        ),
        (
            vec![
                "backup".into(),
                "--out".into(),
                backup.to_str().unwrap().into(),
            ],
            "backup",
            0,
            false,
            false,
        ),
        (vec!["check".into()], "check", 0, false, false),
    ];
    for (i, (args, command, code, paid, subject)) in cases.iter().enumerate() {
        let before = entries(&env).len();
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        let r = env.run(&a);
        assert_eq!(r.code as i64, *code, "{args:?}: {}", r.stderr);
        let all = entries(&env);
        assert_eq!(
            all.len(),
            before + 1,
            "case {i} {args:?} leaves exactly one entry"
        );
        let e = all.last().unwrap();
        assert_eq!(e["command"], *command, "{args:?}");
        assert_eq!(e["operator"], "tester");
        assert_eq!(e["exit_code"], *code, "{args:?}");
        assert_eq!(e["outcome"], if *code == 0 { "ok" } else { "error" });
        assert_eq!(e["paid_call"], *paid, "{args:?}");
        assert_eq!(e["has_subject"], *subject, "{args:?}");
    }
    // A failing command's entry carries its error, sealed, readable through gbdfl.
    let log = env
        .ok(&["audit", "log", "--action", "show", "--json"])
        .stdout;
    assert!(log.contains("no VALID record"), "{log}");
    // The purpose was recorded, and is found by IIN.
    let log = env.ok(&["audit", "log", "--iin", iins::VALID]).stdout;
    assert!(log.contains("purpose: kyc"), "{log}");
    assert!(!log.contains(iins::NOT_FOUND), "{log}");
    // Nothing personal in plaintext in the trail: the purpose is sealed.
    assert!(!contains(&env.db_bytes(), b"purpose: kyc"));
}

#[test]
fn require_purpose_refuses_without_one_and_records_the_refusal() {
    let env = Env::new();
    std::fs::write(env.path().join("config.toml"), "require_purpose = true\n").unwrap();
    let r = env.fails(&["fetch", iins::VALID, "--session", &session()], 2);
    assert!(r.stderr.contains("--purpose"), "{}", r.stderr);
    assert_eq!(env.emu().calls(), 0);
    env.ok(&[
        "fetch",
        iins::VALID,
        "--session",
        &session(),
        "--purpose",
        "account opening",
    ]);
    env.fails(&["show", iins::VALID], 2);
    env.ok(&["show", iins::VALID, "--purpose", "review"]);
    let e = entries(&env);
    assert_eq!(e[0]["exit_code"], 2);
    assert_eq!(e.len(), 4);
}

#[test]
fn purge_leaves_no_purged_ciphertext_in_the_file_or_wal() {
    let env = Env::new();
    for n in 0..6 {
        env.ok(&["fetch", &synthetic_iin(n), "--session", &session()]);
    }
    let blobs: Vec<Vec<u8>> = {
        let conn = rusqlite::Connection::open(&env.db).unwrap();
        let mut st = conn.prepare("SELECT response_enc FROM lookups").unwrap();
        st.query_map([], |r| r.get::<_, Vec<u8>>(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    };
    assert_eq!(blobs.len(), 6);
    assert!(
        blobs.iter().all(|b| contains(&env.db_bytes(), &b[20..60])),
        "the scan can find them before"
    );
    // A day later by the binary's clock, every lookup is older than 1 ms.
    let day_later = (chrono::Utc::now() + chrono::TimeDelta::days(1)).to_rfc3339();
    let later = [("GBDFL_TEST_NOW", day_later.as_str())];
    let r = env.run_with(&["purge", "--older-than", "1ms", "--dry-run"], &later);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("6 lookups"), "{}", r.stdout);
    let r = env.run_with(&["purge", "--older-than", "1ms"], &later);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("Deleted 6 lookups"), "{}", r.stdout);
    let bytes = env.db_bytes();
    for b in &blobs {
        for chunk in b.chunks(24).filter(|c| c.len() == 24) {
            assert!(
                !contains(&bytes, chunk),
                "purged ciphertext bytes remain in the database or WAL"
            );
        }
    }
    env.fails(&["show", &synthetic_iin(0)], 3);
    env.ok(&["audit", "verify"]);
    let last = entries(&env)
        .into_iter()
        .rev()
        .find(|e| e["command"] == "purge")
        .unwrap();
    assert_eq!(last["records"], 6);
}

#[test]
fn purge_without_a_period_says_how_to_give_one() {
    let env = Env::new();
    let r = env.fails(&["purge"], 2);
    assert!(
        r.stderr.contains("--older-than") && r.stderr.contains("retention"),
        "{}",
        r.stderr
    );
}

#[test]
fn rekey_survives_sigkill_at_random_moments() {
    let mut env = Env::new();
    for n in 0..120 {
        env.ok(&[
            "fetch",
            &synthetic_iin(n),
            "--session",
            &session(),
            "--purpose",
            "seed",
        ]);
    }
    let mut current = env.key.clone();
    let (mut committed, mut rolled_back) = (0, 0);
    let bin = env!("CARGO_BIN_EXE_gbdfl");
    for round in 0..20u32 {
        let new = env.path().join(format!("round-{round}.key"));
        let mut child = Command::new(bin)
            .env_clear()
            .env("GBDFL_DB", &env.db)
            .env("GBDFL_KEY_FILE", &current)
            .env("GBDFL_CONFIG", env.path().join("config.toml"))
            .env("GBDFL_OPERATOR", "tester")
            .args(["rekey", "--out", new.to_str().unwrap()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let jitter = u64::from(uuid::Uuid::new_v4().as_bytes()[0]) % 700;
        std::thread::sleep(Duration::from_millis(jitter));
        let _ = child.kill();
        let _ = child.wait();
        let opens = |key: &std::path::Path| {
            env.run_with(&["check"], &[("GBDFL_KEY_FILE", key.to_str().unwrap())])
                .code
                == 0
        };
        let old_ok = opens(&current);
        let new_ok = new.exists() && opens(&new);
        assert!(
            old_ok ^ new_ok,
            "round {round}: exactly one key opens (old {old_ok}, new {new_ok})"
        );
        if new_ok {
            let r = env.run_with(
                &["show", &synthetic_iin(1)],
                &[("GBDFL_KEY_FILE", current.to_str().unwrap())],
            );
            assert_eq!(r.code, 8, "round {round}: the old key is refused");
            assert!(r.stderr.contains("retired"), "{}", r.stderr);
            current = new;
            committed += 1;
        } else {
            rolled_back += 1;
            if new.exists() {
                std::fs::remove_file(&new).unwrap();
            }
        }
    }
    eprintln!("rekey kill rounds: {committed} committed, {rolled_back} interrupted");
    env.key = current.clone();
    let done = env.path().join("final.key");
    let started = std::time::Instant::now();
    env.ok(&["rekey", "--out", done.to_str().unwrap()]);
    eprintln!("a full rekey took {:?}", started.elapsed());
    let r = env.fails(&["show", &synthetic_iin(1)], 8);
    assert!(
        r.stderr.contains("retired by `gbdfl rekey`"),
        "{}",
        r.stderr
    );
    env.key = done;
    let r = env.ok(&["check"]);
    assert!(r.stdout.contains("0 failed to decrypt"), "{}", r.stdout);
    env.ok(&["show", &synthetic_iin(1)]);
    // The chain and the IIN lookups survived every rotation.
    env.ok(&["audit", "verify"]);
    let log = env.ok(&["audit", "log", "--iin", &synthetic_iin(3)]).stdout;
    assert!(log.contains("fetch"), "{log}");
}

#[test]
fn backup_while_another_process_fetches_passes_check() {
    let env = Env::new();
    env.ok(&["fetch", iins::VALID, "--session", &session()]);
    let copy = env.path().join("backup.db");
    std::thread::scope(|s| {
        let writer = s.spawn(|| {
            for n in 0..25 {
                let r = env.run(&["fetch", &synthetic_iin(n), "--session", &session()]);
                assert_eq!(r.code, 0, "{}", r.stderr);
            }
        });
        std::thread::sleep(Duration::from_millis(60));
        env.ok(&["backup", "--out", copy.to_str().unwrap()]);
        writer.join().unwrap();
    });
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&copy).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
    let r = env.run_with(&["check"], &[("GBDFL_DB", copy.to_str().unwrap())]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    let r = env.run_with(
        &["show", iins::VALID],
        &[("GBDFL_DB", copy.to_str().unwrap())],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let r = env.fails(&["backup", "--out", copy.to_str().unwrap()], 2);
    assert!(r.stderr.contains("already exists"), "{}", r.stderr);
}

#[test]
fn check_finds_a_tampered_record() {
    let env = Env::new();
    env.ok(&["fetch", iins::VALID, "--session", &session()]);
    env.ok(&["check"]);
    sql(&env, "UPDATE lookups SET detail_enc = session_enc");
    let r = env.fails(&["check"], 8);
    assert!(r.stdout.contains("1 failed to decrypt"), "{}", r.stdout);
}
