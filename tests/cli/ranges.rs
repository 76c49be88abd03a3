//! Durations, counts, sizes and dates from flags, the environment and the
//! config file: each within its documented range or refused with exit 2,
//! naming the source, the value and the range; never an internal error.
//! Key files: one check and exit code 8. IINs born in the future; long input
//! cut; `fetch -`.

use std::io::Write as _;
use std::process::Stdio;

use gbdfl_emulator::iins;
use proptest::prelude::*;

use crate::harness::{Env, Run, session};

fn assert_clean(r: &Run) {
    for s in [&r.stdout, &r.stderr] {
        assert!(!s.contains("internal error"), "{}", r.stderr);
        assert!(!s.contains("panicked"), "{}", r.stderr);
        assert!(
            !s.contains("out of range for the target type"),
            "{}",
            r.stderr
        );
    }
}

fn fails_with(env: &Env, args: &[&str], vars: &[(&str, &str)], code: i32, wants: &[&str]) -> Run {
    let r = env.run_with(args, vars);
    assert_eq!(r.code, code, "{args:?} {vars:?}: {}", r.stderr);
    assert_clean(&r);
    for w in wants {
        assert!(
            r.stderr.contains(w),
            "{args:?} {vars:?}: wanted {w:?} in {}",
            r.stderr
        );
    }
    r
}

#[test]
fn purge_older_than_a_million_years_is_out_of_range_not_a_crash() {
    let env = Env::bare();
    env.ok(&["init"]);
    fails_with(
        &env,
        &["purge", "--older-than", "1000000y", "--dry-run"],
        &[],
        2,
        &["--older-than \"1000000y\" is out of range: give 0s to 36500d"],
    );
}

#[test]
fn absurd_timeouts_and_response_sizes_are_refused_before_any_call() {
    let env = Env::new();
    let calls = env.emu().calls();
    let fetch = ["fetch", iins::VALID, "--session", &session()];
    fails_with(
        &env,
        &fetch,
        &[("GBDFL_TIMEOUT", "99999999999999s")],
        2,
        &["GBDFL_TIMEOUT \"99999999999999s\" is out of range: give 100ms to 1h"],
    );
    fails_with(
        &env,
        &fetch,
        &[("GBDFL_MAX_RESPONSE_BYTES", &u64::MAX.to_string())],
        2,
        &["GBDFL_MAX_RESPONSE_BYTES", "from 1024 to 1073741824"],
    );
    fails_with(
        &env,
        &fetch,
        &[("GBDFL_CONNECT_TIMEOUT", "0s")],
        2,
        &["GBDFL_CONNECT_TIMEOUT \"0s\" is out of range"],
    );
    assert_eq!(env.emu().calls(), calls, "nothing was sent");
}

#[test]
fn threads_are_capped_at_64_from_the_flag_and_the_environment() {
    let env = Env::bare();
    env.ok(&["init"]);
    for cmd in [&["expiring"][..], &["report", "expiring"], &["import", "-"]] {
        let mut args = cmd.to_vec();
        args.extend(["--threads", "100000"]);
        fails_with(&env, &args, &[], 2, &["100000", "from 1 to 64"]);
        fails_with(
            &env,
            cmd,
            &[("GBDFL_THREADS", "100000")],
            2,
            &["GBDFL_THREADS \"100000\" is out of range: give a whole number from 1 to 64"],
        );
    }
    env.ok(&["expiring", "--threads", "64"]);
    let r = env.run_with(&["expiring"], &[("GBDFL_THREADS", "64")]);
    assert_eq!(r.code, 0, "{}", r.stderr);
}

#[test]
fn a_bare_number_is_days_for_within_stale_and_older_than() {
    let env = Env::bare();
    env.ok(&["init"]);
    env.ok(&["expiring", "--within", "30"]);
    env.ok(&["expiring", "--stale", "30"]);
    let r = env.ok(&["purge", "--older-than", "30", "--dry-run"]);
    let cutoff = (chrono::Utc::now() - chrono::TimeDelta::days(30))
        .format("%Y-%m-%d")
        .to_string();
    assert!(r.stdout.contains(&cutoff), "30 is 30 days: {}", r.stdout);
    for (flag, value) in [
        ("--within", "36501"),
        ("--stale", "36501d"),
        ("--within", "1e30s"),
    ] {
        let arg = format!("{flag}={value}");
        let r = fails_with(&env, &["expiring", &arg], &[], 2, &[flag]);
        assert!(
            r.stderr.contains("out of range") || r.stderr.contains("not a duration"),
            "{}",
            r.stderr
        );
    }
    fails_with(
        &env,
        &["expiring", "--stale=-30"],
        &[],
        2,
        &["cannot be negative"],
    );
}

#[test]
fn dates_need_a_four_digit_year() {
    let env = Env::bare();
    env.ok(&["init"]);
    for args in [
        &["expiring", "--as-of", "26-12-03"][..],
        &["report", "expiring", "--as-of", "26-12-03"],
        &["report", "lookups", "--from", "26-12-03"],
        &["report", "summary", "--to", "26-12-03"],
        &["stats", "--from", "26-12-03"],
        &["audit", "log", "--from", "26-12-03"],
    ] {
        fails_with(
            &env,
            args,
            &[],
            2,
            &[
                "\"26-12-03\" is not a date",
                "four-digit year, e.g. 2026-12-03",
            ],
        );
    }
    env.ok(&["expiring", "--as-of", "2026-12-03"]);
}

/// A checked IIN born in 2099.
fn born_in_2099() -> String {
    (0..1000)
        .find_map(|n| gbdfl_core::iin::complete(&format!("9901015{n:04}")))
        .expect("some serial has a check digit")
}

#[test]
fn an_iin_born_in_the_future_is_refused_without_a_call() {
    let env = Env::new();
    let calls = env.emu().calls();
    let iin = born_in_2099();
    let r = fails_with(
        &env,
        &["fetch", &iin, "--session", &session()],
        &[],
        2,
        &["birth date 2099-01-01 is in the future", "--skip-iin-check"],
    );
    assert!(!r.stderr.contains(&iin), "masked: {}", r.stderr);
    fails_with(&env, &["show", &iin], &[], 2, &["in the future"]);
    assert_eq!(env.emu().calls(), calls, "no call");
    // The operator's override still holds.
    let r = env.run(&["fetch", &iin, "--session", &session(), "--skip-iin-check"]);
    assert_clean(&r);
    assert!(!r.stderr.contains("in the future"), "{}", r.stderr);
}

#[test]
fn a_100000_digit_iin_is_cut_in_the_message_and_the_audit_trail() {
    let env = Env::bare();
    env.ok(&["init"]);
    let long = "9".repeat(100_000);
    let r = fails_with(&env, &["show", &long], &[], 2, &["(100000 characters)"]);
    assert!(r.stderr.len() < 400, "{}", r.stderr);
    let log = env.ok(&["audit", "log", "--json"]);
    assert!(log.stdout.contains("(100000 characters)"), "{}", log.stdout);
    assert!(log.stdout.len() < 5_000, "{} bytes", log.stdout.len());
    let purpose = "p".repeat(100_000);
    let r = fails_with(
        &env,
        &["show", iins::VALID, "--purpose", &purpose],
        &[],
        2,
        &["is too long: at most 500 characters"],
    );
    assert!(r.stderr.len() < 400, "{}", r.stderr);
}

#[cfg(unix)]
#[test]
fn every_key_file_problem_is_exit_8_with_advice_that_fits() {
    use std::os::unix::fs::PermissionsExt;
    let env = Env::bare();
    env.ok(&["init"]);
    let mode = |m| std::fs::set_permissions(&env.key, std::fs::Permissions::from_mode(m)).unwrap();
    mode(0o620);
    for cmd in [&["show", iins::VALID][..], &["init"]] {
        let r = fails_with(
            &env,
            cmd,
            &[],
            8,
            &["mode 620: the group can write it;", "chmod 600"],
        );
        assert!(!r.stderr.contains("can read"), "{}", r.stderr);
    }
    mode(0o604);
    for cmd in [&["show", iins::VALID][..], &["init"]] {
        fails_with(
            &env,
            cmd,
            &[],
            8,
            &["mode 604: others can read it;", "copied"],
        );
    }
    mode(0o600);
    let dir = env.path().to_str().unwrap().to_owned();
    for key in [dir.as_str(), "/dev/null"] {
        for cmd in [&["show", iins::VALID][..], &["init"]] {
            let mut args = vec!["--key-file", key];
            args.extend(cmd);
            let r = fails_with(
                &env,
                &args,
                &[],
                8,
                &["not a regular file", "--key-file PATH"],
            );
            assert!(!r.stderr.contains("chmod"), "{}", r.stderr);
        }
    }
    // A missing key beside an existing database: init cannot help.
    let gone = env.path().join("elsewhere.key");
    let gone = gone.to_str().unwrap();
    for cmd in [&["show", iins::VALID][..], &["init"]] {
        let mut args = vec!["--key-file", gone];
        args.extend(cmd);
        let r = fails_with(
            &env,
            &args,
            &[],
            8,
            &["restore it from your backup", "--key-file"],
        );
        assert!(!r.stderr.contains("run `gbdfl init`"), "{}", r.stderr);
    }
}

#[test]
fn config_type_errors_name_the_key_and_the_file() {
    let env = Env::bare();
    let cfg = env.path().join("config.toml");
    for (text, wants) in [
        (
            "max_age = 30\n",
            "max_age: expected a duration string like \"30d\", got integer 30",
        ),
        (
            "retry_attempts = \"5\"\n",
            "retry_attempts: expected a whole number like 5, got string",
        ),
        (
            "require_purpose = 1\n",
            "require_purpose: expected true or false, got integer 1",
        ),
        (
            "timeout = \"2h\"\n",
            "timeout \"2h\" is out of range: give 100ms to 1h",
        ),
        (
            "max_response_bytes = -1\n",
            "max_response_bytes -1 is out of range",
        ),
    ] {
        std::fs::write(&cfg, text).unwrap();
        fails_with(&env, &["config"], &[], 2, &["config.toml", wants]);
    }
}

#[test]
fn fetch_dash_reads_the_iin_and_session_from_standard_input() {
    let env = Env::new();
    let feed = |args: &[&str], input: &str| {
        let mut child = env
            .command(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, stdout, stderr) = feed(&["fetch", "-"], &format!("{} {}\n", iins::VALID, session()));
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("VALID") || !stdout.is_empty(), "{stdout}");
    let (code, _, stderr) = feed(
        &["fetch", "-", "--session", &session()],
        &format!("{}\n", iins::VALID),
    );
    assert_eq!(code, 0, "{stderr}");
    let (code, _, stderr) = feed(&["fetch", "-"], iins::VALID);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("the IIN and the session id on one line"),
        "{stderr}"
    );
    let r = env.run(&["fetch", iins::VALID]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains("--session UUID is required"),
        "{}",
        r.stderr
    );
}

/// Values over the whole range of the types and beyond.
fn any_value() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<u64>().prop_map(|n| n.to_string()),
        any::<i64>().prop_map(|n| n.to_string()),
        any::<u64>().prop_map(|n| format!("{n}s")),
        any::<u32>().prop_map(|n| format!("{n}d")),
        any::<u16>().prop_map(|n| format!("{n}ms")),
        (0u32..200).prop_map(|n| format!("{n}y")),
        Just(u64::MAX.to_string()),
        Just("-1".to_owned()),
        Just("1e30s".to_owned()),
        Just(String::new()),
        "[0-9a-z -]{0,12}",
    ]
}

/// Where a value can go: an environment variable, a flag, a config key.
#[derive(Debug, Clone)]
enum Place {
    Env(&'static str),
    Flag(&'static [&'static str], &'static str),
    File(&'static str),
}

fn any_place() -> impl Strategy<Value = Place> {
    prop_oneof![
        prop::sample::select(vec![
            "GBDFL_MAX_AGE",
            "GBDFL_CONNECT_TIMEOUT",
            "GBDFL_TIMEOUT",
            "GBDFL_RETRY_BASE",
            "GBDFL_RETRY_CAP",
            "GBDFL_RETENTION",
            "GBDFL_MAX_RESPONSE_BYTES",
            "GBDFL_RETRY_ATTEMPTS",
            "GBDFL_THREADS",
        ])
        .prop_map(Place::Env),
        prop::sample::select(vec![
            (&["purge", "--dry-run"][..], "--older-than"),
            (&["expiring"][..], "--within"),
            (&["expiring"][..], "--stale"),
            (&["expiring"][..], "--threads"),
            (&["expiring"][..], "--as-of"),
            (&["report", "lookups", "--out", "r.csv"][..], "--from"),
            (&["stats"][..], "--to"),
            (
                &[
                    "fetch",
                    iins::VALID,
                    "--session",
                    "0f8e2a1c-1234-4abc-8def-0123456789ab"
                ][..],
                "--max-age"
            ),
            (&["sync"][..], "--jobs"),
            (&["import", "/dev/null"][..], "--threads"),
            (&["report", "expiring", "--out", "e.csv"][..], "--within"),
            (&["report", "expiring", "--out", "e.csv"][..], "--threads"),
        ])
        .prop_map(|(cmd, flag)| Place::Flag(cmd, flag)),
        prop::sample::select(vec![
            "max_age",
            "timeout",
            "retention",
            "retry_cap",
            "max_response_bytes",
            "retry_attempts",
        ])
        .prop_map(Place::File),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 40, failure_persistence: None, ..ProptestConfig::default() })]

    /// Any value anywhere: done (0) or refused as invalid input (2), never
    /// an internal error (1) or a crash.
    #[test]
    fn every_setting_and_flag_exits_0_or_2(place in any_place(), value in any_value(), as_int in any::<bool>()) {
        // One database and emulator for all cases: `fetch` within range
        // answers from the emulator or the cache.
        thread_local!(static ENV: Env = Env::new());
        ENV.with(|env| {
            let cfg = env.path().join("config.toml");
            std::fs::write(&cfg, "").unwrap();
            let r = match &place {
                Place::Env(name) => {
                    let cmd: &[&str] = if *name == "GBDFL_THREADS" { &["expiring"] } else { &["config"] };
                    env.run_with(cmd, &[(name, &value)])
                }
                Place::Flag(cmd, flag) => {
                    let mut args = cmd.to_vec();
                    let arg = format!("{flag}={value}");
                    args.push(&arg);
                    env.run(&args)
                }
                Place::File(key) => {
                    let v = match value.parse::<i64>() {
                        Ok(n) if as_int => toml::Value::Integer(n),
                        _ => toml::Value::String(value.clone()),
                    };
                    std::fs::write(&cfg, format!("{key} = {v}\n")).unwrap();
                    env.run(&["config"])
                }
            };
            prop_assert!(r.code == 0 || r.code == 2, "{place:?} {value:?}: exit {} {}", r.code, r.stderr);
            assert_clean(&r);
            Ok(())
        })?;
    }
}

#[test]
fn a_missing_api_key_file_says_so_without_advising_init() {
    let env = Env::bare();
    env.ok(&["init"]);
    let gone = env.path().join("api.key");
    let out = env
        .command(&["fetch", iins::VALID, "--session", &session()])
        .env_remove("GBDFL_API_KEY")
        .env("GBDFL_API_KEY_FILE", &gone)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("no such file (named by env GBDFL_API_KEY_FILE)"),
        "{stderr}"
    );
    assert!(!stderr.contains("gbdfl init"), "{stderr}");
}

#[cfg(unix)]
#[test]
fn with_no_user_in_the_environment_the_operator_is_the_os_user_not_unknown() {
    let env = Env::bare();
    let out = env
        .command(&["config", "--json"])
        .env_remove("GBDFL_OPERATOR")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let op = v["operator"]["value"].as_str().unwrap();
    assert!(op != "unknown" && !op.is_empty(), "{stdout}");
}
