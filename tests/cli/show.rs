//! `gbdfl show` and `gbdfl history`: answers from the cache only.

use gbdfl_emulator::iins;

use crate::harness::{Env, session};

#[test]
fn show_lays_out_the_person_and_json_is_the_body_as_received() {
    let env = Env::new();
    let iin = iins::VALID;
    env.ok(&[
        "fetch",
        iin,
        "--session",
        &session(),
        "--purpose",
        "loan application",
    ]);
    let calls = env.emu().calls();
    let r = env.ok(&["show", iin]);
    for needle in [
        "Нурланов Асхат Ерланович",
        "1995-02-15",
        "Талгар",
        "N23456789",
        "МВД РК",
        "days left",
        "Абая 52",
        "tester",
    ] {
        assert!(
            r.stdout.contains(needle),
            "missing {needle:?} in\n{}",
            r.stdout
        );
    }
    let r = env.ok(&["show", iin, "--json"]);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).expect("show --json prints JSON");
    assert_eq!(v["status"], "VALID");
    assert_eq!(v["result_json"]["iin"], iin);
    assert_eq!(env.emu().calls(), calls, "show never calls the service");
}

#[test]
fn show_without_a_record_has_its_own_exit_code() {
    let env = Env::new();
    let r = env.fails(&["show", iins::VALID], 3);
    assert!(r.stderr.contains("no VALID record"), "{}", r.stderr);
    assert!(r.stderr.contains("gbdfl fetch"), "{}", r.stderr);
    assert!(
        !r.stderr.contains(iins::VALID),
        "no full IIN in messages (they reach the audit trail): {}",
        r.stderr
    );
    assert_eq!(env.emu().calls(), 0);
}

#[test]
fn show_works_with_the_service_gone() {
    let mut env = Env::new();
    let iin = iins::VALID;
    env.ok(&["fetch", iin, "--session", &session()]);
    env.emulator.take().expect("emulator").stop();
    let r = env.ok(&["show", iin]);
    assert!(r.stdout.contains("Нурланов"), "{}", r.stdout);
}

#[test]
fn history_lists_every_lookup_newest_first() {
    let env = Env::new();
    let iin = iins::VALID;
    let s = session();
    env.ok(&["fetch", iin, "--session", &s, "--purpose", "first"]);
    env.ok(&["fetch", iin, "--session", &s, "--purpose", "second"]);
    env.ok(&[
        "fetch",
        iin,
        "--session",
        &s,
        "--purpose",
        "third",
        "--force",
    ]);
    let r = env.ok(&["history", iin]);
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(lines.len(), 4, "header and three lookups:\n{}", r.stdout);
    assert!(
        lines[1].contains("third") && lines[1].contains("paid call"),
        "{}",
        r.stdout
    );
    assert!(
        lines[2].contains("second") && lines[2].contains("cache"),
        "{}",
        r.stdout
    );
    assert!(
        lines[3].contains("first") && lines[3].contains("paid call"),
        "{}",
        r.stdout
    );
    assert!(
        lines[1].contains("tester") && lines[1].contains("VALID"),
        "{}",
        r.stdout
    );
    let r = env.ok(&["history", iin, "--json"]);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let items = v.as_array().unwrap();
    assert_eq!(items.len(), 3);
    assert_eq!(items[1]["paid_call"], false);
    assert_eq!(items[1]["outcome"], "cached");
    assert_eq!(items[1]["cached_from"], items[2]["id"]);
}

#[test]
fn history_records_failures_with_their_reason() {
    let env = Env::new();
    let iin = iins::NOT_FOUND;
    env.fails(&["fetch", iin, "--session", &session()], 5);
    let r = env.ok(&["history", iin]);
    assert!(r.stdout.contains("NOT_FOUND"), "{}", r.stdout);
    assert!(r.stdout.contains("CLIENT: NOT_FOUND"), "{}", r.stdout);
}
