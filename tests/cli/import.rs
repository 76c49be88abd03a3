//! `gbdfl import` refuses lines that would mislead later readers: a fetch
//! time in the future (it would be "the latest" for ever) and an answer
//! whose two IINs disagree (one person's data under another's IIN).

use chrono::{TimeDelta, Utc};
use gbdfl_emulator::synthetic_response;
use serde_json::Value;

use crate::harness::{Env, synthetic_iin};

fn answer(iin: &str, session: &str, at: &str) -> Value {
    let mut v = synthetic_response(iin, session, Utc::now().date_naive());
    v["fetched_at"] = at.into();
    v
}

fn write_lines(env: &Env, name: &str, lines: &[Value]) -> String {
    let path = env.path().join(name);
    let text: String = lines.iter().map(|v| format!("{v}\n")).collect();
    std::fs::write(&path, text).unwrap();
    path.to_string_lossy().into_owned()
}

fn time(t: chrono::DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

#[test]
fn a_future_fetched_at_is_refused_and_never_wins_latest() {
    let env = Env::new();
    let (a, b) = (synthetic_iin(1), synthetic_iin(2));
    let now = Utc::now();
    let yesterday = answer(&a, "s-past", &time(now - TimeDelta::days(1)));
    let lines = [
        yesterday.clone(),
        answer(&a, "s-far", "2999-01-01T00:00:00Z"),
        // An hour ahead: past the tolerance too.
        answer(&a, "s-hour", &time(now + TimeDelta::hours(1))),
        // A minute ahead (another office's clock): within it, stored.
        answer(&b, "s-minute", &time(now + TimeDelta::minutes(1))),
    ];
    let file = write_lines(&env, "future.jsonl", &lines);
    let r = env.fails(&["import", &file], 2);
    assert!(
        r.stderr.contains(
            "line 2: skipped: fetched_at 2999-01-01T00:00:00.000Z is in the future (more than 5 minutes"
        ),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains("line 3: skipped: fetched_at"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr
            .contains("2 stored, 0 already in the cache, 2 skipped"),
        "{}",
        r.stderr
    );
    // The latest record is yesterday's: what `show` shows, and what makes
    // `fetch --max-age 1h` call the service instead of answering from it.
    let shown: Value = serde_json::from_str(&env.ok(&["show", &a, "--json"]).stdout).unwrap();
    assert_eq!(shown, yesterday);
    assert_eq!(env.emu().calls(), 0);
    env.ok(&[
        "fetch",
        &a,
        "--session",
        &crate::harness::session(),
        "--max-age",
        "1h",
    ]);
    assert_eq!(env.emu().calls(), 1, "yesterday's record is not fresh");
    // --fetched-at for lines without a time: the same bound.
    let mut bare = answer(&b, "s-bare", "");
    bare.as_object_mut().unwrap().remove("fetched_at");
    let file = write_lines(&env, "bare.jsonl", &[bare]);
    let r = env.fails(
        &["import", &file, "--fetched-at", "2999-01-01T00:00:00Z"],
        2,
    );
    assert!(r.stderr.contains("is in the future"), "{}", r.stderr);
}

#[test]
fn an_answer_whose_two_iins_disagree_is_a_bad_line() {
    let env = Env::new();
    let (a, b) = (synthetic_iin(3), synthetic_iin(4));
    let at = time(Utc::now() - TimeDelta::hours(2));
    let mut mixed = answer(&b, "s1", &at);
    mixed["iin"] = a.clone().into();
    let file = write_lines(&env, "mixed.jsonl", &[answer(&b, "s2", &at), mixed]);
    let r = env.fails(&["import", &file], 2);
    assert!(
        r.stderr.contains(&format!(
            "line 2: skipped: the top-level iin ({}) and result_json.iin ({}) differ",
            gbdfl_core::iin::mask(&a),
            gbdfl_core::iin::mask(&b)
        )),
        "{}",
        r.stderr
    );
    assert!(
        !r.stderr.contains(&a) && !r.stderr.contains(&b),
        "masked: {}",
        r.stderr
    );
    // Stored under neither: A has no record, B only its own answer.
    env.fails(&["show", &a], 3);
    let history: Value = serde_json::from_str(&env.ok(&["history", &b, "--json"]).stdout).unwrap();
    assert_eq!(history.as_array().unwrap().len(), 1, "{history}");
}
