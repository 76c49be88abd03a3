//! Every field that chooses or orders a record is authenticated: a database
//! of 20+ people altered the ways an insider could (a row moved to another
//! person, a status changed, a time moved, a paid answer turned into a cache
//! answer, a row deleted, a dictionary altered). `show` and `expiring` of the
//! people concerned never print what the change would make them print,
//! `check` exits 8 naming the lookup, and the people not touched still work.

use gbdfl_emulator::iins;

use crate::harness::{Env, session, synthetic_iin};

const PEOPLE: u32 = 24;

/// A database of `PEOPLE` people, fetched today; the first one fetched
/// twice (two VALID answers), and one answer from the cache.
fn database() -> Env {
    let env = Env::new();
    for n in 0..PEOPLE {
        env.ok(&["fetch", &synthetic_iin(n), "--session", &session()]);
    }
    env.ok(&[
        "fetch",
        &synthetic_iin(0),
        "--session",
        &session(),
        "--max-age",
        "0s",
    ]);
    env.ok(&["fetch", iins::VALID, "--session", &session()]);
    env.ok(&[
        "fetch",
        iins::VALID,
        "--session",
        &session(),
        "--max-age",
        "1h",
    ]);
    env.ok(&["check"]);
    env
}

fn sql(env: &Env, statement: &str) -> usize {
    let conn = rusqlite::Connection::open(&env.db).unwrap();
    conn.execute(statement, []).unwrap()
}

/// The id of a person's latest answer of the service.
fn latest_id(env: &Env, iin: &str) -> String {
    let v: serde_json::Value =
        serde_json::from_str(&env.ok(&["history", iin, "--json"]).stdout).unwrap();
    let latest = v
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["outcome"] == "answered")
        .unwrap_or_else(|| panic!("{v}"));
    latest["id"].as_str().unwrap().to_owned()
}

/// `check` fails with exit 8 and names `id`; people not touched still show.
fn caught(env: &Env, id: &str, untouched: &[u32]) {
    let r = env.fails(&["check"], 8);
    assert!(
        r.stdout.contains(id) || r.stderr.contains(id),
        "{}{}",
        r.stdout,
        r.stderr
    );
    for &n in untouched {
        env.ok(&["show", &synthetic_iin(n)]);
    }
}

/// What `expiring --json` lists for one person, or the failure it ends with.
fn expiring_of(env: &Env, iin: &str) -> Result<String, (i32, String)> {
    let r = env.run(&["expiring", "--within", "36500d", "--json"]);
    if r.code != 0 {
        return Err((r.code, r.stderr));
    }
    let rows: Vec<serde_json::Value> = serde_json::from_str(&r.stdout).unwrap();
    Ok(rows
        .iter()
        .filter(|row| row["iin"] == iin)
        .map(|row| row.to_string())
        .collect())
}

/// `show` and `expiring` of the person concerned refuse with exit 8,
/// naming the lookup and printing nothing of it; `check` names it too, and
/// the people in `untouched` still show.
fn refused(env: &Env, iin: &str, id: &str, untouched: &[u32]) {
    let r = env.fails(&["show", iin], 8);
    assert!(r.stderr.contains(id), "{}", r.stderr);
    assert!(r.stdout.is_empty(), "{}", r.stdout);
    let e = expiring_of(env, iin).unwrap_err();
    assert_eq!(e.0, 8, "{}", e.1);
    assert!(e.1.contains(id), "{}", e.1);
    caught(env, id, untouched);
}

#[test]
fn a_row_moved_to_another_person_is_never_shown_as_theirs() {
    let env = database();
    let (a, b) = (synthetic_iin(3), synthetic_iin(4));
    let id = latest_id(&env, &a);
    let a_name = env.ok(&["show", &a, "--json"]).stdout;
    // a's latest answer moved onto b's blind index, newer than b's own.
    sql(
        &env,
        &format!(
            "UPDATE lookups SET subject = (SELECT subject FROM lookups WHERE id = '{b_id}'), \
             answered_at = answered_at + 60000 WHERE id = '{id}'",
            b_id = latest_id(&env, &b)
        ),
    );
    assert!(!a_name.is_empty());
    refused(&env, &b, &id, &[5, 6, 7]);
}

#[test]
fn a_latest_answer_turned_not_found_does_not_make_an_older_one_latest() {
    let env = database();
    let p = synthetic_iin(0);
    let id = latest_id(&env, &p);
    sql(
        &env,
        &format!("UPDATE lookups SET status = 'NOT_FOUND' WHERE id = '{id}'"),
    );
    refused(&env, &p, &id, &[1, 2, 3]);
}

#[test]
fn a_moved_answer_time_is_caught() {
    let env = database();
    let p = synthetic_iin(0);
    let id = latest_id(&env, &p);
    // Back a year: the older answer would become the latest.
    sql(
        &env,
        &format!("UPDATE lookups SET answered_at = answered_at - 31536000000 WHERE id = '{id}'"),
    );
    refused(&env, &p, &id, &[1, 2, 3]);
}

#[test]
fn a_paid_answer_turned_into_a_cache_answer_is_caught() {
    let env = database();
    let p = synthetic_iin(0);
    let id = latest_id(&env, &p);
    let stats_before = env.ok(&["stats", "--json"]).stdout;
    sql(
        &env,
        &format!(
            "UPDATE lookups SET source = 'cache', outcome = 'cached', reached = NULL WHERE id = '{id}'"
        ),
    );
    assert_ne!(stats_before, "");
    refused(&env, &p, &id, &[1, 2, 3]);
}

#[test]
fn a_deleted_lookup_is_caught_by_the_audit_trail() {
    let env = database();
    let p = synthetic_iin(0);
    let id = latest_id(&env, &p);
    assert_eq!(
        sql(&env, &format!("DELETE FROM lookups WHERE id = '{id}'")),
        1
    );
    let r = env.fails(&["check"], 8);
    assert!(r.stdout.contains(&id), "{}", r.stdout);
    assert!(r.stdout.contains("no purge deleted it"), "{}", r.stdout);
    for n in [1, 2, 3] {
        env.ok(&["show", &synthetic_iin(n)]);
    }
    // A purge accounts for what it deletes: nothing to report after one.
    let env = database();
    env.ok(&["purge", "--older-than", "0s"]);
    env.ok(&["check"]);
}

#[test]
fn an_altered_dictionary_is_caught_and_never_used() {
    let env = database();
    let p = synthetic_iin(2);
    let before = env.ok(&["show", &p, "--json"]).stdout;
    sql(
        &env,
        "UPDATE dictionaries SET content = CAST(replace(CAST(content AS TEXT), 'ДОКУМЕНТ', 'ПАСПОРТЫ') AS BLOB) WHERE codec = 1",
    );
    let r = env.fails(&["check"], 8);
    assert!(r.stdout.contains("dictionary of codec 1"), "{}", r.stdout);
    assert_eq!(env.ok(&["show", &p, "--json"]).stdout, before);
}
