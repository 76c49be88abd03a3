//! `gbdfl import` and `gbdfl export`, and the parallel expiry scan (issue
//! 6): import then export gives the same answers back, the expiring report
//! does not depend on the number of threads.

use std::collections::BTreeSet;

use chrono::NaiveDate;
use gbdfl_emulator::synthetic_response;
use serde_json::Value;

use crate::harness::{Env, synthetic_iin};

pub(crate) const TODAY: &str = "2025-07-01";

fn today() -> NaiveDate {
    NaiveDate::parse_from_str(TODAY, "%Y-%m-%d").unwrap()
}

/// `n` answers as archive lines, each with its own `fetched_at`, among them
/// a deceased person, a person without a readable record, and a NOT_FOUND.
pub(crate) fn archive(n: u32) -> Vec<Value> {
    (0..n)
        .map(|i| {
            let iin = synthetic_iin(i);
            let mut v = synthetic_response(
                &iin,
                &format!("0000000{i}-0000-4000-8000-000000000000"),
                today(),
            );
            match i % 10 {
                3 => v["result_json"]["life_status"] = "Умерший".into(),
                5 => v["result_json"]["documents"][0]["expiry_date"] = "бессрочно".into(),
                7 => v["result_json"] = Value::Null,
                _ => {}
            }
            v["fetched_at"] = format!(
                "2025-06-{:02}T{:02}:{:02}:00.000Z",
                1 + i / 600,
                (i / 60) % 10,
                i % 60
            )
            .into();
            v
        })
        .collect()
}

pub(crate) fn write_lines(env: &Env, name: &str, lines: &[String]) -> String {
    let path = env.path().join(name);
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    path.to_string_lossy().into_owned()
}

#[test]
fn issue_6_import_then_export_gives_back_the_same_answers() {
    let env = Env::new();
    let answers = archive(40);
    let mut lines: Vec<String> = answers.iter().map(Value::to_string).collect();
    // An IIN failing the check digit (archives hold real data): a warning.
    let good = synthetic_iin(999);
    let last = good.as_bytes()[11] - b'0';
    let bad_iin = format!("{}{}", &good[..11], (last + 1) % 10);
    let mut odd = synthetic_response(&bad_iin, "s", today());
    odd["fetched_at"] = "2025-05-01T08:00:00Z".into();
    lines.insert(10, odd.to_string());
    lines.insert(5, "this is not json".into());
    lines.insert(7, String::new());
    lines.insert(20, "[1, 2]".into());
    lines.insert(
        21,
        r#"{"status": "VALID", "fetched_at": "2025-06-01T00:00:00Z"}"#.into(),
    );
    let file = write_lines(&env, "archive.jsonl", &lines);

    let r = env.fails(&["import", &file], 2);
    assert!(
        r.stderr.contains("line 6: skipped: not JSON"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains("line 21: skipped: not a JSON object"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains("line 22: skipped: no iin field"),
        "{}",
        r.stderr
    );
    let warning = format!(
        "line 13: warning: IIN {} fails the check",
        gbdfl_core::iin::mask(&bad_iin)
    );
    assert!(r.stderr.contains(&warning), "{}", r.stderr);
    assert!(
        r.stderr
            .contains("41 stored, 0 already in the cache, 3 skipped, 1 with warnings"),
        "{}",
        r.stderr
    );

    let export = env.ok(&["export", "--format", "jsonl"]);
    let got: Vec<Value> = export
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let mut want: Vec<Value> = answers.clone();
    want.push(odd);
    assert_eq!(got.len(), want.len());
    let set = |v: &[Value]| v.iter().map(Value::to_string).collect::<BTreeSet<_>>();
    assert_eq!(set(&got), set(&want), "the same answers, equal as JSON");
    assert_eq!(got[0], want[40], "oldest first");

    // Importing again, or the export itself, stores nothing twice.
    let again = env.ok(&["import", "-"]);
    assert!(again.stderr.contains("0 lines"), "{}", again.stderr);
    let out = env.path().join("export.jsonl");
    env.ok(&["export", "--out", out.to_str().unwrap()]);
    let r = env.ok(&["import", out.to_str().unwrap()]);
    assert!(
        r.stderr.contains("0 stored, 41 already in the cache"),
        "{}",
        r.stderr
    );

    // The imported lookups answer `show`, and the commands are audited.
    let shown = env.ok(&["show", &synthetic_iin(1), "--json"]);
    let v: Value = serde_json::from_str(&shown.stdout).unwrap();
    assert_eq!(v, answers[1]);
    let log = env.ok(&["audit", "log"]);
    assert!(log.stdout.contains("import"), "{}", log.stdout);
    assert!(log.stdout.contains("export"), "{}", log.stdout);
    env.ok(&["audit", "verify"]);
    env.ok(&["check"]);
    // Nothing personal in plaintext: the database holds no IIN or name.
    let bytes = env.db_bytes();
    assert!(!crate::harness::contains(
        &bytes,
        synthetic_iin(1).as_bytes()
    ));
    let name = answers[1]["result_json"]["surname"].as_str().unwrap();
    assert!(!crate::harness::contains(&bytes, name.as_bytes()));
}

#[test]
fn issue_6_expiring_is_the_same_with_one_thread_and_several() {
    let env = Env::new();
    let lines: Vec<String> = archive(700).iter().map(Value::to_string).collect();
    let file = write_lines(&env, "archive.jsonl", &lines);
    env.ok(&["import", &file, "--threads", "3"]);
    let one = env.path().join("one.csv");
    let four = env.path().join("four.csv");
    env.ok(&[
        "report",
        "expiring",
        "--as-of",
        TODAY,
        "--threads",
        "1",
        "--out",
        one.to_str().unwrap(),
    ]);
    let r = env.run_with(
        &[
            "report",
            "expiring",
            "--as-of",
            TODAY,
            "--out",
            four.to_str().unwrap(),
        ],
        &[("GBDFL_THREADS", "4")],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let (a, b) = (std::fs::read(&one).unwrap(), std::fs::read(&four).unwrap());
    assert!(
        a.iter().filter(|&&c| c == b'\n').count() > 300,
        "the report lists rows"
    );
    assert_eq!(a, b, "the same bytes");
    let text1 = env
        .ok(&["expiring", "--as-of", TODAY, "--threads", "1"])
        .stdout;
    let text3 = env
        .ok(&["expiring", "--as-of", TODAY, "--threads", "3"])
        .stdout;
    assert_eq!(text1, text3);
    let json1 = env
        .ok(&["expiring", "--as-of", TODAY, "--threads", "1", "--json"])
        .stdout;
    let json2 = env
        .ok(&["expiring", "--as-of", TODAY, "--threads", "2", "--json"])
        .stdout;
    assert_eq!(json1, json2);
    let rows: Vec<Value> = serde_json::from_str(&json1).unwrap();
    assert_eq!(
        rows.len() + 1,
        text1.lines().count(),
        "a table line per row, and the header"
    );
    assert!(
        rows.iter()
            .any(|r| r["reasons"].to_string().contains("record_unreadable"))
    );
    assert!(
        rows.iter()
            .any(|r| r["reasons"].to_string().contains("life_status_not_normal"))
    );
    assert!(
        rows.iter()
            .any(|r| r["reasons"].to_string().contains("expiry_date_unreadable"))
    );
}

#[test]
fn issue_6_indexes_a_killed_import_dropped_are_built_again_on_open() {
    let env = Env::new();
    let lines: Vec<String> = archive(5).iter().map(Value::to_string).collect();
    let file = write_lines(&env, "archive.jsonl", &lines);
    env.ok(&["import", &file]);
    let count = || -> i64 {
        let conn = rusqlite::Connection::open(&env.db).unwrap();
        conn.query_row(
            "SELECT count(*) FROM sqlite_schema WHERE type = 'index' AND name LIKE 'lookups_%'",
            [],
            |r| r.get(0),
        )
        .unwrap()
    };
    let before = count();
    rusqlite::Connection::open(&env.db)
        .unwrap()
        .execute_batch("DROP INDEX lookups_by_subject; DROP INDEX lookups_latest;")
        .unwrap();
    assert_eq!(count(), before - 2);
    env.ok(&["show", &synthetic_iin(2)]);
    assert_eq!(count(), before);
}

#[test]
fn issue_6_the_expiry_scan_reads_each_persons_newest_answer_whatever_the_order() {
    // Three answers for one person, imported out of order: the newest (a
    // passport good for years) decides, not the one imported last (an
    // expired one) nor the middle one (expiring soon).
    let env = Env::new();
    let iin = synthetic_iin(1);
    let answer_of = |iin: &str, expiry: &str, at: &str| {
        let mut v = synthetic_response(iin, "s", today());
        let docs = v["result_json"]["documents"].as_array_mut().unwrap();
        docs.truncate(1);
        docs[0]["expiry_date"] = expiry.into();
        v["fetched_at"] = at.into();
        v.to_string()
    };
    let answer = |expiry: &str, at: &str| answer_of(&iin, expiry, at);
    let lines = [
        answer("2025-08-01", "2025-06-10T09:00:00.000Z"), // middle: expires in 31 days
        answer("2035-01-01", "2025-06-20T09:00:00.000Z"), // newest: far
        answer("2024-01-01", "2025-06-01T09:00:00.000Z"), // oldest: expired
    ];
    let file = write_lines(&env, "archive.jsonl", &lines);
    env.ok(&["import", &file]);
    let out = env.ok(&["expiring", "--as-of", TODAY, "--json"]).stdout;
    let rows: Vec<Value> = serde_json::from_str(&out).unwrap();
    assert!(
        rows.iter()
            .all(|r| r["iin"].as_str().unwrap()[..6] != iin[..6]),
        "only the newest answer counts: {out}"
    );
    // The same person with the newest answer expiring soon is listed once.
    let file = write_lines(
        &env,
        "newer.jsonl",
        &[answer("2025-08-01", "2025-06-25T09:00:00.000Z")],
    );
    env.ok(&["import", &file]);
    let out = env.ok(&["expiring", "--as-of", TODAY, "--json"]).stdout;
    let rows: Vec<Value> = serde_json::from_str(&out).unwrap();
    assert_eq!(rows.len(), 1, "{out}");
    assert_eq!(rows[0]["expiry_date"], "2025-08-01");
    assert_eq!(rows[0]["fetched_at"], "2025-06-25T09:00:00Z");
    let show = env.ok(&["show", &iin, "--json"]).stdout;
    assert!(show.contains("2025-08-01"), "show agrees: {show}");

    // Two answers of another person at the same time: `expiring` takes
    // the one `show` takes (the greater lookup id), whichever that is.
    let other = synthetic_iin(2);
    let same = "2025-06-26T09:00:00.000Z";
    let file = write_lines(
        &env,
        "tie.jsonl",
        &[
            answer_of(&other, "2025-07-20", same),
            answer_of(&other, "2036-01-01", same),
        ],
    );
    env.ok(&["import", &file]);
    let show = env.ok(&["show", &other, "--json"]).stdout;
    let out = env
        .ok(&["expiring", "--as-of", TODAY, "--json", "--full-iin"])
        .stdout;
    let listed = out.contains(&other);
    assert_eq!(
        listed,
        show.contains("2025-07-20"),
        "expiring and show read the same answer:\n{out}\n{show}"
    );
    assert_ne!(listed, show.contains("2036-01-01"));
}
