//! `gbdfl expiring` and `gbdfl report` (issue 4): golden CSV files, read-back
//! with the csv crate, reports with the service gone, a report killed midway.
//!
//! The golden database is seeded through the library with fixed ids, times
//! and operator, from answers the emulator gave over real HTTP with a fixed
//! "today"; the real binary then writes the reports. `GBDFL_BLESS=1 cargo
//! test` rewrites tests/golden/ after a deliberate change.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use chrono::{DateTime, NaiveDate, Utc};
use gbdfl_core::iin::Iin;
use gbdfl_emulator::{Emulator, EmulatorConfig, iins, synthetic_response};
use gbdfl_store::crypto::MasterKey;
use gbdfl_store::{LookupId, NewLookup, Outcome, Reached, Source, Store};
use uuid::Uuid;

use crate::harness::{API_KEY, Env, contains, session, synthetic_iin};

/// "Today" of the emulator and `--as-of` of the golden reports.
pub(crate) const TODAY: &str = "2030-07-01";
pub(crate) const SESSION: &str = "3e9b7d42-6c1a-4f8e-a2d5-9b4c8e1f7a3d";
/// A purpose with everything CSV must carry: Cyrillic, a comma, quotes, line breaks.
const AWKWARD_PURPOSE: &str = "кредит, \"срочно\"\nвторая строка\r\nтретья";
const HOSTILE_NAME: &str = "=HYPERLINK(\"http://x\") Асхат, \"Аса\" +Ерланович";

pub(crate) fn today() -> NaiveDate {
    NaiveDate::parse_from_str(TODAY, "%Y-%m-%d").unwrap()
}

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

/// A new database and key file at the Env's paths, made through the library.
fn new_store(env: &Env) -> Store {
    let key = MasterKey::from_bytes([7u8; 32]);
    gbdfl_store::keyfile::create(&env.key, &key).unwrap();
    Store::init(&env.db, &key).unwrap().0
}

/// A paid VALID lookup answered two seconds after `time`; callers change the rest.
pub(crate) fn paid<'a>(n: u128, iin: &'a Iin, time: &str, body: &'a [u8]) -> NewLookup<'a> {
    let t = at(time);
    NewLookup {
        id: LookupId(Uuid::from_u128(n)),
        iin,
        session_id: SESSION,
        purpose: Some("выдача кредита"),
        operator: "kassir-1",
        host: "branch-12",
        requested_at: t,
        answered_at: Some(t + chrono::Duration::seconds(2)),
        source: Source::Service,
        outcome: Outcome::Answered,
        status: Some("VALID"),
        result: Some(true),
        http_status: Some(200),
        failure_type: None,
        detail: None,
        response: Some(body),
        cached_from: None,
        reached: Some(Reached::Yes),
        os_user: None,
    }
}

/// The emulator's answers for these IINs over real HTTP, "today" fixed.
fn answers(iins: &[&str]) -> Vec<Vec<u8>> {
    let emu = Emulator::start(
        "127.0.0.1:0",
        EmulatorConfig {
            api_key: Some(API_KEY.into()),
            today: Some(today()),
            faults: Default::default(),
        },
    )
    .unwrap();
    let client = reqwest::blocking::Client::new();
    let bodies = iins
        .iter()
        .map(|iin| {
            let req = serde_json::json!({
                "api_key": API_KEY, "iin": iin, "face2face_backend_session_id": SESSION,
            });
            let resp = client
                .post(emu.url())
                .header("content-type", "application/json")
                .body(serde_json::to_vec(&req).unwrap())
                .send()
                .unwrap();
            resp.bytes().unwrap().to_vec()
        })
        .collect();
    emu.stop();
    bodies
}

/// The golden database: fixtures with every expiry case, synthetic people,
/// a cache hit, negative answers, a refusal, an outage, a garbled answer,
/// over three days.
pub(crate) fn seed_golden(env: &Env) {
    // Answered VALID on day 1, in this order; then the negative answers.
    let valid_fixtures = [
        iins::VALID,
        iins::HOSTILE_TEXT,
        iins::DECEASED,
        iins::EXPIRING_SOON,
        iins::ENGLISH_GENDER_FEMALE,
        iins::OFFSET_DATES,
        iins::SPARSE,
    ];
    let mut all = valid_fixtures.to_vec();
    all.extend([iins::NOT_FOUND, iins::PENDING_THEN_VALID]);
    let bodies = answers(&all);
    let iin = |s: &str| Iin::parse(s).unwrap();
    let store = new_store(env);
    for (n, fx) in valid_fixtures.iter().enumerate() {
        let i = iin(fx);
        let time = format!("2030-06-01T09:{:02}:00Z", 5 * n);
        store
            .record(&paid(n as u128 + 1, &i, &time, &bodies[n]), None)
            .unwrap();
    }
    let valid = iin(iins::VALID);
    store
        .record(
            &NewLookup {
                source: Source::Cache,
                outcome: Outcome::Cached,
                http_status: None,
                response: None,
                cached_from: Some(LookupId(Uuid::from_u128(1))),
                reached: None,
                purpose: Some(AWKWARD_PURPOSE),
                operator: "@kassir-2",
                ..paid(20, &valid, "2030-06-01T11:00:00Z", b"")
            },
            None,
        )
        .unwrap();
    let not_found = iin(iins::NOT_FOUND);
    store
        .record(
            &NewLookup {
                status: Some("NOT_FOUND"),
                result: Some(false),
                failure_type: Some("CLIENT"),
                detail: Some("CLIENT: NOT_FOUND"),
                purpose: Some("=1+2"),
                ..paid(21, &not_found, "2030-06-01T12:00:00Z", &bodies[7])
            },
            None,
        )
        .unwrap();
    let pending = iin(iins::PENDING_THEN_VALID);
    store
        .record(
            &NewLookup {
                status: Some("PENDING"),
                result: Some(false),
                purpose: None,
                ..paid(22, &pending, "2030-06-02T08:00:00Z", &bodies[8])
            },
            None,
        )
        .unwrap();
    let refused = iin(iins::ORGANIZATION_NOT_FOUND);
    store
        .record(
            &NewLookup {
                outcome: Outcome::Refused,
                status: None,
                result: None,
                http_status: Some(404),
                detail: Some("Organization not found"),
                response: Some(br#"{"detail":"Organization not found"}"#),
                ..paid(23, &refused, "2030-06-02T08:30:00Z", b"")
            },
            None,
        )
        .unwrap();
    store
        .record(
            &NewLookup {
                outcome: Outcome::Unavailable,
                status: None,
                result: None,
                http_status: None,
                detail: Some("-connection refused (127.0.0.1:443)"),
                response: None,
                reached: Some(Reached::Maybe),
                ..paid(24, &refused, "2030-06-02T08:31:00Z", b"")
            },
            None,
        )
        .unwrap();
    store
        .record(
            &NewLookup {
                outcome: Outcome::Garbled,
                status: None,
                result: None,
                detail: Some("the answer is not JSON"),
                response: Some(b"<html>"),
                ..paid(25, &refused, "2030-06-02T08:32:00Z", b"")
            },
            None,
        )
        .unwrap();
    for n in 0..6u32 {
        let s = synthetic_iin(n);
        let body = serde_json::to_vec(&synthetic_response(&s, SESSION, today())).unwrap();
        let i = iin(&s);
        let time = format!("2030-06-02T10:{:02}:00Z", n);
        store
            .record(&paid(30 + u128::from(n), &i, &time, &body), None)
            .unwrap();
    }
    // A later VALID answer of the hostile fixture: reports use the latest one.
    let hostile = iin(iins::HOSTILE_TEXT);
    store
        .record(
            &paid(40, &hostile, "2030-06-15T16:45:00Z", &bodies[1]),
            None,
        )
        .unwrap();
}

fn golden_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name)
}

/// Compares with tests/golden/NAME byte for byte; GBDFL_BLESS=1 rewrites it.
pub fn golden(name: &str, actual: &[u8]) {
    let path = golden_path(name);
    if std::env::var_os("GBDFL_BLESS").is_some_and(|v| !v.is_empty()) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; write it with GBDFL_BLESS=1 cargo test",
            path.display()
        )
    });
    assert!(
        expected == actual,
        "{name} differs from {} (if the change is deliberate: GBDFL_BLESS=1 cargo test)\n--- expected ---\n{}\n--- actual ---\n{}",
        path.display(),
        String::from_utf8_lossy(&expected),
        String::from_utf8_lossy(actual)
    );
}

/// Runs `report ARGS --out FILE` and returns the file's bytes.
pub(crate) fn report(env: &Env, file: &str, args: &[&str]) -> Vec<u8> {
    let out = env.path().join(file);
    let out_s = out.to_str().unwrap();
    let mut all = vec!["report"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--out", out_s]);
    let r = env.ok(&all);
    assert_eq!(r.stdout.trim_end(), out_s, "the path is printed");
    std::fs::read(&out).unwrap()
}

#[test]
fn golden_reports_are_byte_identical() {
    let env = Env::bare();
    seed_golden(&env);
    let cases: [(&str, &[&str]); 6] = [
        ("expiring.csv", &["expiring", "--as-of", TODAY]),
        (
            "expiring-excel.csv",
            &["expiring", "--as-of", TODAY, "--excel", "--delimiter", ";"],
        ),
        ("lookups.csv", &["lookups"]),
        (
            "lookups-2030-06-02.csv",
            &["lookups", "--from", "2030-06-02", "--to", "2030-06-02"],
        ),
        ("summary.csv", &["summary"]),
        (
            "summary-excel.csv",
            &["summary", "--excel", "--delimiter", "tab"],
        ),
    ];
    for (name, args) in cases {
        let first = report(&env, name, args);
        golden(name, &first);
        let again = report(&env, &format!("again-{name}"), args);
        assert!(first == again, "{name}: a second run gives the same bytes");
    }
    let r = env.ok(&["expiring", "--as-of", TODAY]);
    golden("expiring.txt", r.stdout.as_bytes());
    let r = env.ok(&["expiring", "--as-of", TODAY, "--json"]);
    golden("expiring.json", r.stdout.as_bytes());
}

fn read_back(bytes: &[u8], delimiter: u8) -> Vec<csv::StringRecord> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .from_reader(bytes)
        .records()
        .collect::<Result<_, _>>()
        .expect("every report parses as CSV")
}

#[test]
fn reports_read_back_with_cyrillic_quotes_commas_and_line_breaks_intact() {
    let env = Env::bare();
    seed_golden(&env);
    let neutralised = format!("'{HOSTILE_NAME}");
    for (args, delimiter) in [
        (&["expiring", "--as-of", TODAY][..], b','),
        (
            &["expiring", "--as-of", TODAY, "--excel", "--delimiter", ";"][..],
            b';',
        ),
    ] {
        let bytes = report(&env, "e.csv", args);
        let rows = read_back(&bytes, delimiter);
        let names: Vec<&str> = rows.iter().map(|r| &r[1]).collect();
        assert!(names.contains(&"Нурланов Асхат Ерланович"), "{names:?}");
        assert!(names.contains(&neutralised.as_str()), "{names:?}");
        assert!(!names.contains(&HOSTILE_NAME), "the formula is neutralised");
        assert!(rows.iter().all(|r| r.len() == 11), "every row has 11 cells");
        // Never dropped: the undated documents are there, with a note.
        let undated: Vec<_> = rows.iter().filter(|r| r[5].is_empty()).collect();
        assert_eq!(undated.len(), 2, "{rows:?}");
        assert!(undated.iter().any(|r| r[10].contains("бессрочно")));
    }

    let bytes = report(&env, "l.csv", &["lookups", "--excel"]);
    let rows = read_back(&bytes, b',');
    let purposes: Vec<&str> = rows.iter().map(|r| &r[3]).collect();
    assert!(purposes.contains(&AWKWARD_PURPOSE), "{purposes:?}");
    assert!(purposes.contains(&"'=1+2"), "{purposes:?}");
    let operators: Vec<&str> = rows.iter().map(|r| &r[2]).collect();
    assert!(operators.contains(&"'@kassir-2"), "{operators:?}");
    let reasons: Vec<&str> = rows.iter().map(|r| &r[9]).collect();
    assert!(reasons.contains(&"'-connection refused (127.0.0.1:443)"));
    assert!(reasons.contains(&"HTTP 404: Organization not found"));
}

#[test]
fn full_iins_appear_only_with_full_iin() {
    let env = Env::bare();
    seed_golden(&env);
    for args in [&["expiring", "--as-of", TODAY][..], &["lookups"][..]] {
        let masked = report(&env, "m.csv", args);
        assert!(!contains(&masked, iins::VALID.as_bytes()), "{args:?}");
        assert!(contains(&masked, b"950215*****6"), "{args:?}");
        let full = report(&env, "f.csv", &[args, &["--full-iin"]].concat());
        assert!(contains(&full, iins::VALID.as_bytes()), "{args:?}");
    }
    let r = env.ok(&["expiring", "--as-of", TODAY]);
    assert!(!r.stdout.contains(iins::VALID), "{}", r.stdout);
    let r = env.ok(&["expiring", "--as-of", TODAY, "--full-iin", "--json"]);
    assert!(r.stdout.contains(iins::VALID), "{}", r.stdout);
}

#[test]
fn every_report_is_made_with_the_emulator_stopped() {
    let mut env = Env::new();
    for iin in [
        iins::VALID,
        iins::DECEASED,
        iins::EXPIRING_SOON,
        iins::HOSTILE_TEXT,
    ] {
        env.ok(&[
            "fetch",
            iin,
            "--session",
            &session(),
            "--purpose",
            "проверка",
        ]);
    }
    env.fails(&["fetch", iins::NOT_FOUND, "--session", &session()], 5);
    let calls = env.emu().calls();
    env.ok(&["report", "summary", "--out", "while-running.csv"]);
    assert_eq!(env.emu().calls(), calls, "a report makes no call");

    env.emulator.take().expect("emulator").stop();
    for kind in ["expiring", "lookups", "summary"] {
        let out = format!("{kind}.csv");
        env.ok(&["report", kind, "--out", &out, "--excel"]);
        let text = std::fs::read_to_string(env.path().join(&out)).unwrap();
        assert!(text.lines().count() > 1, "{kind} has rows:\n{text}");
    }
    let r = env.ok(&["expiring", "--within", "30d"]);
    assert!(r.stdout.contains("Нурланов"), "{}", r.stdout);
    let r = env.ok(&["expiring", "--stale", "0s", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 4, "{}", r.stdout);
}

/// The name of a report's temp file: `.<final name>.<8 letters or digits>.tmp`.
fn is_temp_name(name: &str) -> bool {
    name.starts_with('.')
        && name
            .strip_suffix(".tmp")
            .and_then(|s| s.rsplit_once('.'))
            .is_some_and(|(stem, random)| {
                stem.ends_with(".csv")
                    && random.len() == 8
                    && random.bytes().all(|b| b.is_ascii_alphanumeric())
            })
}

#[test]
fn killing_a_report_midway_leaves_no_file_under_the_final_name() {
    let env = Env::bare();
    let store = new_store(&env);
    // Enough lookups that writing them takes far longer than the polling
    // below; seeded through the library like any other lookups.
    const N: u128 = 10_000;
    let iin = Iin::parse(iins::VALID).unwrap();
    for n in 0..N {
        let time = format!(
            "2030-06-01T{:02}:{:02}:{:02}Z",
            n / 3600 % 24,
            n / 60 % 60,
            n % 60
        );
        store
            .record(
                &NewLookup {
                    response: None,
                    purpose: Some(AWKWARD_PURPOSE),
                    ..paid(n + 1, &iin, &time, b"")
                },
                None,
            )
            .unwrap();
    }
    drop(store);

    let reports = env.path().join("reports");
    let mut child = env
        .command(&["report", "lookups"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    let temp = loop {
        let written = std::fs::read_dir(&reports).ok().and_then(|dir| {
            dir.flatten().find(|e| {
                is_temp_name(&e.file_name().to_string_lossy())
                    && e.metadata().is_ok_and(|m| m.len() > 0)
            })
        });
        if let Some(e) = written {
            break e.path();
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "the report finished before it could be killed: seed more lookups"
        );
        assert!(
            Instant::now() < deadline,
            "the report never started writing"
        );
        std::thread::sleep(Duration::from_millis(1));
    };
    child.kill().unwrap();
    let status = child.wait().unwrap();
    assert!(!status.success(), "killed mid-report: {status:?}");

    let left: Vec<String> = std::fs::read_dir(&reports)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        left.iter().all(|n| is_temp_name(n)),
        "only the hidden temp file may be left: {left:?}"
    );
    assert!(left.contains(&temp.file_name().unwrap().to_string_lossy().into_owned()));

    // The next run completes beside the leftover.
    let r = env.ok(&["report", "lookups"]);
    let path = env.path().join(r.stdout.trim_end());
    let rows = read_back(&std::fs::read(path).unwrap(), b',');
    assert_eq!(rows.len() as u128, N);
}

#[test]
fn default_path_is_reports_kind_time_csv_owner_only() {
    let env = Env::bare();
    seed_golden(&env);
    let r = env.ok(&["report", "summary"]);
    let printed = r.stdout.trim_end();
    let name = printed.strip_prefix("reports/summary-").expect(printed);
    let stamp = name.strip_suffix(".csv").expect(printed);
    assert!(
        stamp.len() == 15 && stamp.as_bytes()[8] == b'-',
        "reports/summary-YYYYMMDD-HHMMSS.csv, got {printed}"
    );
    let file = env.path().join(printed);
    assert!(file.is_file());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&file), 0o600, "reports hold personal data");
        assert_eq!(mode(&env.path().join("reports")), 0o700);
    }
    assert!(r.stderr.contains("rows"), "{}", r.stderr);
}

#[test]
fn bad_options_exit_2_and_write_nothing() {
    let env = Env::bare();
    seed_golden(&env);
    for (args, says) in [
        (
            &["report", "summary", "--delimiter", ";;"][..],
            "--delimiter",
        ),
        (
            &["report", "summary", "--delimiter", "\""][..],
            "--delimiter",
        ),
        (&["report", "expiring", "--within", "soon"][..], "--within"),
        (
            &["report", "expiring", "--as-of", "01.07.2030"][..],
            "--as-of",
        ),
        (
            &["report", "expiring", "--from", "2030-06-01"][..],
            "--from",
        ),
        (
            &[
                "report",
                "lookups",
                "--from",
                "2030-06-02",
                "--to",
                "2030-06-01",
            ][..],
            "--from",
        ),
        (&["expiring", "--within=-3"][..], "--within"),
        (&["expiring", "--stale", "old"][..], "--stale"),
    ] {
        let r = env.fails(args, 2);
        assert!(r.stderr.contains(says), "{args:?}: {}", r.stderr);
    }
    assert!(!env.path().join("reports").exists(), "nothing was written");
}

#[test]
fn expiring_has_no_colour_when_piped_and_lists_stale_people() {
    let env = Env::bare();
    let store = new_store(&env);
    let bodies = answers(&[iins::VALID, iins::EXPIRING_SOON]);
    let now = Utc::now();
    let old = (now - chrono::Duration::days(40) - chrono::Duration::hours(1)).to_rfc3339();
    let fresh = (now - chrono::Duration::days(1)).to_rfc3339();
    let (valid, soon) = (
        Iin::parse(iins::VALID).unwrap(),
        Iin::parse(iins::EXPIRING_SOON).unwrap(),
    );
    store
        .record(&paid(1, &valid, &old, &bodies[0]), None)
        .unwrap();
    store
        .record(&paid(2, &soon, &fresh, &bodies[1]), None)
        .unwrap();

    let r = env.run_with(&["expiring", "--as-of", TODAY], &[("NO_COLOR", "")]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("expires_soon"), "{}", r.stdout);
    assert!(
        !r.stdout.contains('\x1b'),
        "no colour into a pipe: {}",
        r.stdout
    );

    let r = env.ok(&["expiring", "--stale", "30d"]);
    assert!(r.stdout.contains("950215*****6"), "{}", r.stdout);
    assert!(!r.stdout.contains("950215*****0"), "{}", r.stdout);
    let r = env.ok(&["expiring", "--stale", "30d", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 1);
    assert_eq!(v[0]["age_days"], 40);
    assert_eq!(v[0]["full_name"], "Нурланов Асхат Ерланович");

    // A newer answer for that person: their latest record is fresh now.
    store
        .record(&paid(3, &valid, &fresh, &bodies[0]), None)
        .unwrap();
    let r = env.ok(&["expiring", "--stale", "30d", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 0, "{}", r.stdout);
}

#[test]
fn the_audit_report_refuses_html_and_translated_headers_and_writes_nothing() {
    let env = Env::new();
    for extra in [&["--html"][..], &["--lang", "ru"], &["--headers", "ru"]] {
        let mut args = vec!["report", "audit"];
        args.extend_from_slice(extra);
        let r = env.fails(&args, 2);
        assert!(r.stderr.contains("the audit report is CSV"), "{}", r.stderr);
        assert!(r.stdout.is_empty());
    }
    let reports = env.dir.path().join("reports");
    let written = std::fs::read_dir(&reports)
        .map(|d| d.filter(|e| e.is_ok()).count())
        .unwrap_or(0);
    assert_eq!(written, 0, "no report file may be written");
}

/// `stats`, `report summary` and the emulator agree on paid calls: an
/// attempt that never connected is counted as `not_sent` by both, never as
/// paid (the summary counted it as a paid call before).
#[test]
fn stats_and_the_summary_report_count_the_same_paid_calls() {
    let env = Env::new();
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let dead = format!("http://127.0.0.1:{closed}/api/v1/backend/gbdfl/");
    let (a, b) = (
        crate::harness::synthetic_iin(21),
        crate::harness::synthetic_iin(22),
    );
    let s = crate::harness::session();
    env.fails(&["fetch", &a, "--session", &s, "--base-url", &dead], 11);
    env.ok(&["queue", "drop", &a]);
    env.ok(&["fetch", &b, "--session", &crate::harness::session()]);
    env.ok(&["fetch", &b, "--session", &crate::harness::session()]);
    let paid_by_service = env.emu().calls();
    assert_eq!(paid_by_service, 1);

    let stats: Vec<serde_json::Value> =
        serde_json::from_str(&env.ok(&["stats", "--json"]).stdout).unwrap();
    let sum = |k: &str| stats.iter().map(|d| d[k].as_u64().unwrap()).sum::<u64>();
    assert_eq!(sum("paid_calls"), paid_by_service);
    assert_eq!(sum("not_sent"), 1);
    assert_eq!(sum("from_cache"), 1);

    env.ok(&["report", "summary", "--out", "s.csv"]);
    let mut csv = csv::Reader::from_path(env.path().join("s.csv")).unwrap();
    let headers = csv.headers().unwrap().clone();
    let col = |k: &str| headers.iter().position(|h| h == k).unwrap();
    let (mut paid, mut not_sent, mut cache, mut lookups) = (0u64, 0u64, 0u64, 0u64);
    for r in csv.records() {
        let r = r.unwrap();
        let n = |i: usize| r[i].parse::<u64>().unwrap();
        paid += n(col("paid_calls"));
        not_sent += n(col("not_sent"));
        cache += n(col("cache_hits"));
        lookups += n(col("lookups"));
    }
    assert_eq!(paid, paid_by_service);
    assert_eq!((not_sent, cache, lookups), (1, 1, 3));
}
