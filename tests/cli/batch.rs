//! `gbdfl batch`: one purpose per row (the lookup and its audit entry
//! agree), `require_purpose` met row by row, no call before the outcome
//! file can be written, Windows-1251 files, counts that add up, and the
//! exit codes of queued and in-doubt rows.

use std::process::Stdio;

use gbdfl_emulator::Faults;
use serde_json::Value;

use crate::harness::{Env, session, synthetic_iin};

fn write(env: &Env, name: &str, text: &str) -> String {
    let path = env.path().join(name);
    std::fs::write(&path, text).unwrap();
    path.to_string_lossy().into_owned()
}

/// The purposes of one person's lookups, oldest first, from `history`
/// (which has a purpose of its own, for `require_purpose`).
fn lookup_purposes(env: &Env, iin: &str) -> Vec<Value> {
    let r = env.ok(&["history", iin, "--json", "--purpose", "test"]);
    let v: Vec<Value> = serde_json::from_str(&r.stdout).unwrap();
    v.iter().rev().map(|l| l["purpose"].clone()).collect()
}

/// The purposes of `batch`'s audit entries about one person.
fn batch_audit_purposes(env: &Env, iin: &str) -> Vec<Value> {
    let r = env.ok(&["audit", "log", "--iin", iin, "--json", "--purpose", "test"]);
    r.stdout
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|e| e["command"] == "batch")
        .map(|e| e["purpose"].clone())
        .collect()
}

#[test]
fn each_row_has_one_purpose_in_its_lookup_and_its_audit_entry() {
    let env = Env::new();
    let (a, b, c) = (synthetic_iin(1), synthetic_iin(2), synthetic_iin(3));
    // C is in the cache already: its row is answered from there.
    env.ok(&["fetch", &c, "--session", &session(), "--purpose", "earlier"]);
    let file = write(
        &env,
        "rows.csv",
        &format!(
            "iin,session_id,purpose\n{a},{},row purpose\n{b},{},\n{c},{},cache row\n",
            session(),
            session(),
            session()
        ),
    );
    env.ok(&["batch", &file, "--purpose", "global"]);
    assert_eq!(env.emu().calls(), 3, "A and B paid, C from the cache");
    // The row's own purpose wins; --purpose fills the rows without one.
    assert_eq!(lookup_purposes(&env, &a), ["row purpose"]);
    assert_eq!(batch_audit_purposes(&env, &a), ["row purpose"]);
    assert_eq!(lookup_purposes(&env, &b), ["global"]);
    assert_eq!(batch_audit_purposes(&env, &b), ["global"]);
    assert_eq!(lookup_purposes(&env, &c), ["earlier", "cache row"]);
    assert_eq!(batch_audit_purposes(&env, &c), ["cache row"]);
}

#[test]
fn require_purpose_is_met_row_by_row() {
    let env = Env::new();
    std::fs::write(env.path().join("config.toml"), "require_purpose = true\n").unwrap();
    let (a, b) = (synthetic_iin(4), synthetic_iin(5));
    // Every row has a purpose: no --purpose needed.
    let all = write(
        &env,
        "all.csv",
        &format!(
            "iin;session_id;purpose\n{a};{};loan\n{b};{};account\n",
            session(),
            session()
        ),
    );
    env.ok(&["batch", &all]);
    assert_eq!(env.emu().calls(), 2);
    assert_eq!(lookup_purposes(&env, &a), ["loan"]);
    assert_eq!(batch_audit_purposes(&env, &b), ["account"]);
    // No row has one: refused as a whole, nothing queued or sent.
    let none = write(
        &env,
        "none.csv",
        &format!("iin;session_id\n{a};{}\n", session()),
    );
    let r = env.fails(&["batch", &none], 2);
    assert!(r.stderr.contains("no row has a purpose"), "{}", r.stderr);
    assert!(r.stderr.contains("require_purpose = true"), "{}", r.stderr);
    assert!(
        r.stderr.contains("Nothing was queued or sent"),
        "{}",
        r.stderr
    );
    // One row without: that row is a bad row, the other is sent.
    let (c, d) = (synthetic_iin(6), synthetic_iin(7));
    let some = write(
        &env,
        "some.csv",
        &format!(
            "iin;session_id;purpose\n{c};{};loan\n{d};{};\n",
            session(),
            session()
        ),
    );
    let r = env.fails(&["batch", &some], 2);
    assert!(
        r.stderr.contains("line 3: ") && r.stderr.contains("no purpose"),
        "{}",
        r.stderr
    );
    assert_eq!(env.emu().calls(), 3);
    env.fails(&["history", &d, "--purpose", "test"], 3);
    // --purpose fills it.
    env.ok(&["batch", &some, "--purpose", "audit request"]);
    assert_eq!(lookup_purposes(&env, &d), ["audit request"]);
    assert_eq!(env.emu().calls(), 4, "C answered from the cache");
}

#[cfg(unix)]
#[test]
fn no_call_is_made_when_the_outcome_file_cannot_be_written() {
    use std::os::unix::fs::PermissionsExt;

    use crate::secrets::{NOBODY, as_nobody, chown_tree, is_root};

    let env = Env::new();
    let file = write(
        &env,
        "rows.csv",
        &format!("iin,session_id\n{},{}\n", synthetic_iin(8), session()),
    );
    let reports = env.path().join("reports");
    std::fs::create_dir(&reports).unwrap();
    std::fs::set_permissions(&reports, std::fs::Permissions::from_mode(0o555)).unwrap();
    let mut cmd = env.command(&["batch", &file]);
    if is_root() {
        // Root writes whatever the mode says: run as nobody, who owns the
        // files, so the mode is what stops the write.
        chown_tree(env.path(), NOBODY);
        as_nobody(&mut cmd);
    }
    let out = cmd.stdin(Stdio::null()).output().unwrap();
    if is_root() {
        chown_tree(env.path(), 0);
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("cannot write the outcome file"), "{stderr}");
    assert!(stderr.contains("Nothing was queued or sent"), "{stderr}");
    assert!(stderr.contains("--out"), "{stderr}");
    assert_eq!(env.emu().calls(), 0, "no paid call");
    // Nothing was queued either.
    assert_eq!(env.ok(&["queue", "--json"]).stdout.trim(), "[]");
    // A file in the way of the folder: the same.
    std::fs::set_permissions(&reports, std::fs::Permissions::from_mode(0o700)).unwrap();
    std::fs::remove_dir(&reports).unwrap();
    std::fs::write(&reports, "").unwrap();
    let r = env.fails(&["batch", &file], 2);
    assert!(
        r.stderr.contains("cannot write the outcome file"),
        "{}",
        r.stderr
    );
    assert_eq!(env.emu().calls(), 0, "no paid call");
}

#[test]
fn a_windows_1251_file_is_read_and_said_so() {
    let env = Env::new();
    let a = synthetic_iin(9);
    let text = format!(
        "iin;session_id;purpose\r\n{a};{};Проверка кредита\r\n",
        session()
    );
    let (bytes, _, unmappable) = encoding_rs::WINDOWS_1251.encode(&text);
    assert!(!unmappable);
    let path = env.path().join("excel.csv");
    std::fs::write(&path, &bytes).unwrap();
    let r = env.ok(&["batch", path.to_str().unwrap()]);
    assert!(r.stderr.contains("read as Windows-1251"), "{}", r.stderr);
    assert_eq!(lookup_purposes(&env, &a), ["Проверка кредита"]);
}

/// Leaves the request (IIN, session) in doubt: a `fetch` killed while the
/// service holds its call.
fn in_doubt(env: &Env, iin: &str, session: &str) {
    env.emu().set_faults(Faults {
        slow_first: 1,
        slow_ms: 120_000,
        ..Faults::default()
    });
    let mut child = env
        .command(&["fetch", iin, "--session", session])
        .env("GBDFL_TIMEOUT", "300s")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Wait for the call to reach the service (an event, not a time).
    while env.emu().calls_for(iin, session) == 0 {
        std::thread::yield_now();
    }
    child.kill().unwrap();
    child.wait().unwrap();
    env.emu().set_faults(Faults::default());
    // `queue` ends the dead process's claim: the item is in doubt now.
    let q: Value = serde_json::from_str(&env.ok(&["queue", "--json"]).stdout).unwrap();
    assert_eq!(q[0]["state"], "IN_DOUBT", "{q}");
}

#[test]
fn every_row_is_counted_once_and_in_doubt_rows_exit_14() {
    let env = Env::new();
    let iins: Vec<String> = (10..14).map(synthetic_iin).collect();
    let sessions: Vec<String> = (0..4).map(|_| session()).collect();
    // Row 2 is cached, row 5 in doubt from an earlier, killed fetch.
    env.ok(&["fetch", &iins[1], "--session", &session()]);
    in_doubt(&env, &iins[3], &sessions[3]);
    let calls = env.emu().calls();
    let expired = (chrono::Local::now() - chrono::TimeDelta::hours(4))
        .format("%Y-%m-%d %H:%M")
        .to_string();
    let file = write(
        &env,
        "mixed.csv",
        &format!(
            "iin,session_id,session_created_at\n\
             {},{},\n{},{},\n{},{},{expired}\n12345,{},\n{},{},\n",
            iins[0],
            sessions[0],
            iins[1],
            sessions[1],
            iins[2],
            sessions[2],
            session(),
            iins[3],
            sessions[3]
        ),
    );
    let r = env.fails(&["batch", &file, "--no-sync"], 14);
    assert!(
        r.stderr.contains(
            "5 rows: 1 bad, 1 answered from the cache, 1 to queue for `gbdfl sync`, 1 expired (not sent), 1 in doubt from an earlier call (not sent)."
        ),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("in doubt"), "{}", r.stderr);
    assert!(r.stderr.contains("--resend-in-doubt"), "{}", r.stderr);
    assert_eq!(env.emu().calls(), calls, "--no-sync sends nothing");
    // The outcome file has every row once, in the same buckets.
    let table = r.stdout;
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("TOTAL") && l.trim_end().ends_with(" 5")),
        "{table}"
    );
    for outcome in ["BAD_ROW", "VALID", "QUEUED", "EXPIRED", "IN_DOUBT"] {
        assert!(table.contains(outcome), "{outcome}: {table}");
    }
    // Without the in-doubt row, --no-sync is what was asked: exit 0, "queued".
    let file = write(
        &env,
        "plain.csv",
        &format!("iin,session_id\n{},{}\n", synthetic_iin(14), session()),
    );
    let r = env.ok(&["batch", &file, "--no-sync"]);
    assert!(
        r.stderr.contains("1 row(s) queued, as --no-sync asks"),
        "{}",
        r.stderr
    );
}

#[test]
fn queue_shows_a_short_handle_that_queue_drop_takes() {
    let env = Env::new();
    let rows: Vec<(String, String)> = (20..25).map(|n| (synthetic_iin(n), session())).collect();
    let text: String = rows.iter().map(|(i, s)| format!("{i},{s}\n")).collect();
    let file = write(&env, "q.csv", &format!("iin,session_id\n{text}"));
    env.ok(&["batch", &file, "--no-sync"]);
    let q: Vec<Value> = serde_json::from_str(&env.ok(&["queue", "--json"]).stdout).unwrap();
    assert_eq!(q.len(), 5);
    let ids: Vec<&str> = q.iter().map(|i| i["id"].as_str().unwrap()).collect();
    for item in &q {
        let (id, handle) = (
            item["id"].as_str().unwrap(),
            item["handle"].as_str().unwrap(),
        );
        assert!(handle.len() >= 4 && id.ends_with(handle), "{item}");
        let ends: Vec<_> = ids.iter().filter(|i| i.ends_with(handle)).collect();
        assert_eq!(ends.len(), 1, "{handle} is one item's alone");
    }
    // The table shows it in its first column.
    let table = env.ok(&["queue"]).stdout;
    let handle = q[2]["handle"].as_str().unwrap();
    assert!(table.starts_with("HANDLE"), "{table}");
    assert!(table.lines().any(|l| l.starts_with(handle)), "{table}");
    // `queue drop HANDLE` drops that item, and says which.
    let r = env.ok(&["queue", "drop", &handle.to_uppercase()]);
    assert!(
        r.stderr.contains(q[2]["id"].as_str().unwrap()),
        "{}",
        r.stderr
    );
    let left: Vec<Value> = serde_json::from_str(&env.ok(&["queue", "--json"]).stdout).unwrap();
    assert_eq!(left.len(), 4);
    assert!(left.iter().all(|i| i["id"] != q[2]["id"]));
    // Shorter than 4 characters: refused, nothing dropped.
    let short = &q[0]["handle"].as_str().unwrap()[1..];
    let short = &short[short.len() - 3..];
    let r = env.fails(&["queue", "drop", short], 2);
    assert!(r.stderr.contains("at least 4 characters"), "{}", r.stderr);
    assert_eq!(
        serde_json::from_str::<Vec<Value>>(&env.ok(&["queue", "--json"]).stdout)
            .unwrap()
            .len(),
        4
    );
}

#[test]
fn a_request_left_queued_is_not_counted_as_done_or_failed() {
    let env = Env::with_faults(Faults {
        fail_first: 1_000,
        ..Faults::default()
    });
    let file = write(
        &env,
        "down.csv",
        &format!("iin,session_id\n{},{}\n", synthetic_iin(30), session()),
    );
    let fast = [
        ("GBDFL_RETRY_BASE", "10ms"),
        ("GBDFL_RETRY_CAP", "20ms"),
        ("GBDFL_RETRY_ATTEMPTS", "2"),
    ];
    let r = env.run_with(&["batch", &file], &fast);
    assert_eq!(r.code, 11, "{}", r.stderr);
    assert!(
        r.stderr
            .contains("batch: 1/1 tried: 0 VALID, 0 not VALID, 1 left queued"),
        "{}",
        r.stderr
    );
    assert_eq!(env.emu().calls(), 2, "at most GBDFL_RETRY_ATTEMPTS per run");
    let r = env.run_with(&["sync"], &fast);
    assert_eq!(r.code, 11, "{}", r.stderr);
    assert!(
        r.stderr
            .contains("sync: 1/1 tried: 0 VALID, 0 not VALID, 1 left queued"),
        "{}",
        r.stderr
    );
    assert_eq!(env.emu().calls(), 4, "at most GBDFL_RETRY_ATTEMPTS per run");
}

/// The outcome file names every row's person: batch's own entry, counting
/// those rows, is written before the file appears.
#[test]
fn the_outcome_file_is_audited_with_its_row_count() {
    let env = Env::new();
    let (a, b) = (synthetic_iin(11), synthetic_iin(12));
    let file = write(
        &env,
        "rows.csv",
        &format!(
            "iin,session_id\n{a},{}\n{b},{}\nnot-an-iin,{}\n",
            session(),
            session(),
            session()
        ),
    );
    env.fails(&["batch", &file], 2);
    let r = env.ok(&["audit", "log", "--json", "--action", "batch"]);
    let counts: Vec<u64> = r
        .stdout
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|e| e["subject"].is_null())
        .map(|e| e["records"].as_u64().unwrap())
        .collect();
    assert_eq!(
        counts.first(),
        Some(&3),
        "the entry before the outcome file counts its 3 rows: {}",
        r.stdout
    );
}
