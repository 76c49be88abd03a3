//! The OS user beside the declared operator: every lookup (fetched, from
//! the cache, queued and sent, imported) and every audit entry records who
//! the machine says ran gbdfl, whatever `--operator` says, and the audit
//! chain covers it.

use std::process::Command;

use chrono::Utc;
use gbdfl_emulator::{iins, synthetic_response};
use serde_json::Value;

use crate::harness::{Env, session, synthetic_iin};

/// This test process's user as gbdfl writes it: `NAME (uid N)`, asked of
/// `id`, not of gbdfl.
pub(crate) fn me() -> String {
    let id = |flag: &str| {
        let out = Command::new("id").arg(flag).output().expect("run id");
        out.status
            .success()
            .then(|| String::from_utf8(out.stdout).unwrap().trim().to_owned())
    };
    let uid = id("-u").expect("id -u");
    match id("-un") {
        Some(name) => format!("{name} (uid {uid})"),
        None => format!("uid {uid}"),
    }
}

/// Every lookup's operator and OS user, straight from the file.
fn lookups(env: &Env) -> Vec<(String, Option<String>)> {
    let conn = rusqlite::Connection::open(&env.db).unwrap();
    let mut st = conn
        .prepare("SELECT operator, os_user FROM lookups ORDER BY requested_at")
        .unwrap();
    st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

#[test]
fn every_lookup_and_audit_entry_names_the_os_user_beside_the_operator() {
    let env = Env::new();
    let me = me();
    let anna = ["--operator", "anna"];
    // Fetched from the service, then answered from the cache.
    env.ok(&[&["fetch", iins::VALID, "--session", &session()][..], &anna].concat());
    env.ok(&[&["fetch", iins::VALID, "--session", &session()][..], &anna].concat());
    // Queued by one operator, sent by another (`sync` records the sender).
    let file = env.path().join("queue.csv");
    let other = synthetic_iin(7);
    std::fs::write(
        &file,
        format!("iin,session_id,purpose\n{other},{},check\n", session()),
    )
    .unwrap();
    env.ok(&[
        "batch",
        file.to_str().unwrap(),
        "--no-sync",
        "--operator",
        "bob",
    ]);
    env.ok(&[&["sync"][..], &anna].concat());
    // Imported: the importing process's user.
    let imported = synthetic_iin(8);
    let mut line = synthetic_response(&imported, "s-import", Utc::now().date_naive());
    line["fetched_at"] = Utc::now()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
        .into();
    let jsonl = env.path().join("in.jsonl");
    std::fs::write(&jsonl, format!("{line}\n")).unwrap();
    env.ok(&[&["import", jsonl.to_str().unwrap()][..], &anna].concat());

    let rows = lookups(&env);
    assert_eq!(rows.len(), 4, "{rows:?}");
    for (operator, os_user) in &rows {
        assert!(operator == "anna" || operator == "bob", "{rows:?}");
        assert_eq!(os_user.as_deref(), Some(me.as_str()), "{rows:?}");
    }

    let h = env.ok(&["history", iins::VALID, "--json"]);
    let h: Value = serde_json::from_str(&h.stdout).unwrap();
    for l in h.as_array().unwrap() {
        assert_eq!(l["operator"], "anna", "{l}");
        assert_eq!(l["os_user"], me.as_str(), "{l}");
    }

    let log = env.ok(&["audit", "log", "--json", "--by", "anna"]);
    let entries: Vec<Value> = log
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(entries.len() >= 4, "{}", log.stdout);
    for e in &entries {
        assert_eq!(e["operator"], "anna", "{e}");
        assert_eq!(e["os_user"], me.as_str(), "{e}");
    }
    let text = env.ok(&["audit", "log", "--by", "anna"]);
    assert!(text.stdout.contains("OS USER"), "{}", text.stdout);
    assert!(text.stdout.contains(&me), "{}", text.stdout);
    env.ok(&["audit", "verify"]);
}

#[test]
fn a_changed_or_removed_os_user_breaks_the_chain() {
    for value in ["'mallory (uid 4242)'", "NULL"] {
        let env = Env::new();
        env.ok(&[
            "fetch",
            iins::VALID,
            "--session",
            &session(),
            "--operator",
            "anna",
        ]);
        env.ok(&["show", iins::VALID, "--operator", "anna"]);
        env.ok(&["audit", "verify"]);
        let conn = rusqlite::Connection::open(&env.db).unwrap();
        conn.execute_batch(&format!("UPDATE audit SET os_user = {value} WHERE seq = 1"))
            .unwrap();
        drop(conn);
        let r = env.fails(&["audit", "verify"], 8);
        assert!(r.stderr.contains("entry 1 "), "{value}: {}", r.stderr);
    }
}
