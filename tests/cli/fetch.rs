//! `gbdfl fetch` against the emulator over loopback: every status, every
//! documented HTTP error, bad input, the cache and faults.

use gbdfl_emulator::{Faults, fixtures};

use gbdfl_emulator::iins;

use crate::harness::{Env, fixture, session, synthetic_iin};

#[test]
fn valid_record_is_fetched_once_and_then_answered_from_the_cache() {
    let env = Env::new();
    let iin = iins::VALID;
    let s = session();
    let r = env.ok(&["fetch", iin, "--session", &s]);
    assert!(r.stderr.contains("paid call"), "{}", r.stderr);
    assert!(
        r.stdout.contains("Нурланов Асхат Ерланович"),
        "{}",
        r.stdout
    );
    assert_eq!(env.emu().calls(), 1);

    let r = env.ok(&["fetch", iin, "--session", &s]);
    assert!(r.stderr.contains("from the cache"), "{}", r.stderr);
    assert!(r.stderr.contains("no paid call"), "{}", r.stderr);
    assert!(r.stdout.contains("Нурланов"), "{}", r.stdout);
    assert_eq!(env.emu().calls(), 1, "the cache answered: no second call");

    let r = env.ok(&["fetch", iin, "--session", &s, "--force"]);
    assert!(r.stderr.contains("paid call"), "{}", r.stderr);
    assert_eq!(env.emu().calls(), 2, "--force calls anyway");
}

#[test]
fn max_age_zero_means_the_cache_is_too_old() {
    let env = Env::new();
    let iin = iins::VALID;
    env.ok(&["fetch", iin, "--session", &session()]);
    // A minute later by the binary's clock, the record is older than 1 ms.
    let later = (chrono::Utc::now() + chrono::TimeDelta::minutes(1)).to_rfc3339();
    let r = env.run_with(
        &["fetch", iin, "--session", &session(), "--max-age", "1ms"],
        &[("GBDFL_TEST_NOW", later.as_str())],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(env.emu().calls(), 2);
    let r = env.fails(
        &["fetch", iin, "--session", &session(), "--max-age", "soon"],
        2,
    );
    assert!(r.stderr.contains("not a duration"), "{}", r.stderr);
}

#[test]
fn every_negative_status_exits_5_names_the_status_and_is_recorded() {
    let env = Env::new();
    let negatives: Vec<_> = fixtures()
        .iter()
        .filter(|f| {
            [
                "INVALID",
                "TIMEOUT",
                "NOT_FOUND",
                "FAILED",
                "UNAPPROVED",
                "ERROR_ACCEPTED",
            ]
            .contains(&f.outcome)
        })
        .collect();
    assert_eq!(negatives.len(), 6, "one fixture per negative status");
    for f in &negatives {
        let r = env.fails(&["fetch", f.iin, "--session", &session()], 5);
        assert!(r.stderr.contains(f.outcome), "{}: {}", f.outcome, r.stderr);
        let h = env.ok(&["history", f.iin]);
        assert!(h.stdout.contains(f.outcome), "{}", h.stdout);
        // A negative answer is not a record: show has nothing.
        env.fails(&["show", f.iin], 3);
    }
    assert_eq!(env.emu().calls(), negatives.len() as u64);
}

#[test]
fn every_failure_reason_fixture_is_reported_with_its_detail() {
    let env = Env::new();
    let reasons = [
        (
            iins::VERIFICATIONS_EXPIRED,
            "CLIENT: The required verifications for GBDFL are expired",
            "verifications have expired",
        ),
        (
            iins::FACE2FACE_FAILED,
            "CLIENT: Face2Face failed",
            "repeat the face2face",
        ),
        (
            iins::LIVENESS_FAILED,
            "CLIENT: Liveness failed",
            "repeat the face2face",
        ),
        (
            iins::EDOCUMENT_ERROR,
            "CLIENT: EDocument validation error",
            "repeat the face2face",
        ),
        (
            iins::REQUIRED_TECH_MISSING,
            "CLIENT: Required technology in Face2Face result missing: LDSH, ED",
            "repeat the face2face",
        ),
        (
            iins::SOURCE_SESSIONS_MISSING,
            "CLIENT: Face2Face source sessions are missing",
            "repeat the face2face",
        ),
        (
            iins::FACE2FACE_RESULT_MISSING,
            "CLIENT: GBDFL Face2Face result missing",
            "repeat the face2face",
        ),
        (
            iins::SERVICE_ERROR,
            "SERVICE_ERROR: Can`t connect to GBDFL service",
            "try again later",
        ),
    ];
    let labelled = fixtures()
        .iter()
        .filter(|f| f.outcome.starts_with("REASON_"))
        .count();
    assert_eq!(
        labelled,
        reasons.len(),
        "a fixture for every failure reason of the API page"
    );
    for (iin, reason, advice) in reasons {
        // SERVICE_ERROR means biometric.kz could not reach GBDFL: queued (11).
        let code = if iin == iins::SERVICE_ERROR { 11 } else { 5 };
        let r = env.fails(&["fetch", iin, "--session", &session()], code);
        assert!(r.stderr.contains(reason), "{reason}: {}", r.stderr);
        assert!(r.stderr.contains(advice), "{reason}: {}", r.stderr);
    }
}

#[test]
fn pending_then_valid() {
    let env = Env::new();
    let iin = iins::PENDING_THEN_VALID;
    let s = session();
    let r = env.fails(&["fetch", iin, "--session", &s], 10);
    assert!(
        r.stderr.contains("PENDING") && r.stderr.contains("again"),
        "{}",
        r.stderr
    );
    let r = env.ok(&["fetch", iin, "--session", &s]);
    assert!(r.stderr.contains("VALID"), "{}", r.stderr);
    assert_eq!(env.emu().calls(), 2);
    env.ok(&["show", iin]);
}

#[test]
fn every_documented_http_error_shows_the_message_and_what_to_do() {
    let env = Env::new();
    let cases = [
        (
            "HTTP_400_SUBSCRIPTION_NOT_STARTED",
            "Subscription has not started",
            "subscription",
        ),
        (
            "HTTP_400_NO_ACTIVE_SUBSCRIPTION",
            "No active or future subscription for technology",
            "subscription",
        ),
        (
            "HTTP_400_NO_SUBSCRIPTION",
            "Client does not have subscription",
            "subscription",
        ),
        (
            "HTTP_400_NO_GBDFL_ACCESS",
            "Client does not have access to GBDFL technology",
            "subscription",
        ),
        (
            "HTTP_404_SESSION_NOT_FOUND",
            "Face2Face backend session not found",
            "--session",
        ),
        (
            "HTTP_404_ORGANIZATION_NOT_FOUND",
            "Organization not found",
            "GBDFL_API_KEY",
        ),
    ];
    for (label, message, advice) in cases {
        let r = env.fails(&["fetch", fixture(label), "--session", &session()], 4);
        assert!(r.stderr.contains(message), "{label}: {}", r.stderr);
        assert!(r.stderr.contains(advice), "{label}: {}", r.stderr);
    }
    // A wrong API key gives the real "Organization not found" too.
    let r = env.run_with(
        &["fetch", iins::VALID, "--session", &session()],
        &[("GBDFL_API_KEY", "not-our-key")],
    );
    assert_eq!(r.code, 4, "{}", r.stderr);
    assert!(
        r.stderr
            .contains("Organization not found: check GBDFL_API_KEY"),
        "{}",
        r.stderr
    );
}

#[test]
fn an_invalid_iin_makes_no_call_and_says_which_rule_failed() {
    let env = Env::new();
    let cases = [
        ("95021530123", "12 digits"),
        ("95021530123x", "only digits"),
        ("951315301234", "birth date"),
        ("950215701234", "7th digit"),
        ("950215301234", "check digit"),
    ];
    for (iin, rule) in cases {
        let r = env.fails(&["fetch", iin, "--session", &session()], 2);
        assert!(r.stderr.contains(rule), "{iin}: {}", r.stderr);
    }
    let r = env.fails(&["fetch", iins::VALID, "--session", "not-a-uuid"], 2);
    assert!(r.stderr.contains("UUID"), "{}", r.stderr);
    assert_eq!(env.emu().calls(), 0, "no call for invalid input");
}

#[test]
fn skip_iin_check_lets_a_failing_number_through_and_records_it() {
    let env = Env::new();
    let r = env.run(&[
        "fetch",
        "950215301234",
        "--session",
        &session(),
        "--skip-iin-check",
    ]);
    assert_eq!(env.emu().calls(), 1, "{}", r.stderr);
    let h = env.ok(&["history", "950215301234", "--skip-iin-check", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&h.stdout).unwrap();
    assert_eq!(v[0]["iin_checked"], false);
}

#[test]
fn a_garbage_body_is_stored_and_reported() {
    let env = Env::new();
    let iin = iins::GARBAGE_HTML;
    let r = env.fails(&["fetch", iin, "--session", &session()], 14);
    assert!(r.stderr.contains("could not be read"), "{}", r.stderr);
    let h = env.ok(&["history", iin, "--json"]);
    let v: serde_json::Value = serde_json::from_str(&h.stdout).unwrap();
    assert_eq!(v[0]["outcome"], "garbled");
    assert_eq!(v[0]["paid_call"], true);
}

#[test]
fn faults_garbage_and_503_and_429_and_dropped_connections() {
    let env = Env::with_faults(Faults {
        garbage_first: 1,
        fail_first: 1,
        rate_limit_first: 1,
        retry_after_secs: 7,
        drop_first: 1,
        ..Faults::default()
    });
    let iin = synthetic_iin(1);
    let r = env.fails(&["fetch", &iin, "--session", &session()], 11);
    assert!(
        r.stderr.contains("429") && r.stderr.contains("7s"),
        "{}",
        r.stderr
    );
    let r = env.fails(&["fetch", &iin, "--session", &session()], 11);
    assert!(r.stderr.contains("503"), "{}", r.stderr);
    // Broken off after HTTP 200, and a gateway's HTML page: both may have
    // been billed, so both are in doubt.
    let r = env.fails(&["fetch", &iin, "--session", &session()], 14);
    assert!(
        r.stderr.contains("broke") || r.stderr.contains("failed"),
        "{}",
        r.stderr
    );
    env.fails(&["fetch", &iin, "--session", &session()], 14);
    env.ok(&["fetch", &iin, "--session", &session()]);
    assert_eq!(env.emu().calls(), 5);
    let h = env.ok(&["history", &iin]);
    assert_eq!(
        h.stdout.lines().count(),
        6,
        "every attempt recorded:\n{}",
        h.stdout
    );
}

#[test]
fn a_slow_service_times_out_and_the_request_is_in_doubt() {
    let env = Env::with_faults(Faults {
        latency_ms: 3000,
        ..Faults::default()
    });
    let r = env.run_with(
        &["fetch", &synthetic_iin(2), "--session", &session()],
        &[("GBDFL_TIMEOUT", "300ms")],
    );
    assert_eq!(r.code, 14, "{}", r.stderr);
    assert!(r.stderr.contains("did not answer in time"), "{}", r.stderr);
    assert!(
        r.stderr.contains("gbdfl sync --resend-in-doubt"),
        "{}",
        r.stderr
    );
}

#[test]
fn nothing_listening_is_unreachable() {
    let mut env = Env::new();
    let url = env.base_url.clone();
    env.emulator.take().expect("emulator").stop();
    let r = env.run_with(
        &["fetch", iins::VALID, "--session", &session()],
        &[("GBDFL_BASE_URL", &url)],
    );
    assert_eq!(r.code, 11, "{}", r.stderr);
    assert!(r.stderr.contains("could not connect"), "{}", r.stderr);
    // Nothing reached the service: history and the audit trail do not count it as paid.
    let h = env.ok(&["history", iins::VALID]);
    assert!(h.stdout.contains("not sent"), "{}", h.stdout);
    let log = env.ok(&["audit", "log", "--action", "fetch"]);
    assert!(log.stdout.contains("paid=no"), "{}", log.stdout);
}

#[test]
fn plain_http_to_another_host_is_refused_before_any_call() {
    let env = Env::new();
    let r = env.run_with(
        &["fetch", iins::VALID, "--session", &session()],
        &[(
            "GBDFL_BASE_URL",
            "http://kyc.biometric.kz/api/v1/backend/gbdfl/",
        )],
    );
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("plain http"), "{}", r.stderr);
}

#[test]
fn no_api_key_says_where_to_put_it() {
    let env = Env::new();
    let r = env.run_with(
        &["fetch", iins::VALID, "--session", &session()],
        &[("GBDFL_API_KEY", "")],
    );
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains("GBDFL_API_KEY") && r.stderr.contains("api_key_file"),
        "{}",
        r.stderr
    );
}

#[test]
fn tolerant_answers_are_stored_and_shown() {
    let env = Env::new();
    for label in [
        "VALID_SPARSE",
        "VALID_OFFSET_DATES",
        "VALID_ENGLISH_GENDER",
        "VALID_HOSTILE_TEXT",
        "VALID_DECEASED",
    ] {
        let iin = fixture(label);
        env.ok(&["fetch", iin, "--session", &session()]);
        let r = env.ok(&["show", iin]);
        assert!(r.stdout.contains("Documents"), "{label}: {}", r.stdout);
    }
    let r = env.ok(&["show", iins::OFFSET_DATES]);
    assert!(r.stdout.contains("female"), "{}", r.stdout);
    let r = env.ok(&["show", iins::ENGLISH_GENDER_FEMALE]);
    assert!(
        r.stdout.contains("not a date gbdfl can read"),
        "{}",
        r.stdout
    );
    let r = env.ok(&["show", iins::DECEASED]);
    assert!(
        r.stdout.contains("NOT NORMAL") && r.stdout.contains("NOT VALID"),
        "{}",
        r.stdout
    );
}
