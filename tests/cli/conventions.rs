//! The conventions of the command line: text from outside never reaches the
//! terminal raw (controls and bidi characters shown escaped), while CSV and
//! JSON keep it intact; completions and the man page; `--json` on every
//! command; the audit report; one full stop per message.

use chrono::NaiveDate;
use gbdfl_core::iin::Iin;
use gbdfl_emulator::{Faults, synthetic_response};
use gbdfl_store::crypto::MasterKey;
use gbdfl_store::{AuditEntry, Store};
use serde_json::Value;

use crate::harness::{Env, fixture, session, synthetic_iin};

/// Names with a right-to-left override, a right-to-left mark, ESC and NUL.
const SURNAME: &str = "Ахметов\u{202E}вонлуН";
const NAME: &str = "Асхат\u{200F}\x1b[31mRED";
const PATRONYMIC: &str = "Ер\0ланович";
/// A purpose that would rewrite the line it is printed on.
const PURPOSE: &str = "ok\x1b[2K\rFAKE purpose";

/// What must never reach a terminal raw.
const RAW: [char; 6] = ['\u{202E}', '\u{200F}', '\x1b', '\0', '\r', '\u{7f}'];

fn assert_no_raw(what: &str, text: &str) {
    for c in RAW {
        assert!(
            !text.contains(c),
            "{what}: raw {c:?} reached the terminal\n{text}"
        );
    }
}

/// Imports one answer whose names hold the hostile characters; its
/// documents expired long ago, so `expiring` lists it.
fn seed_hostile_person(env: &Env) -> String {
    let iin = synthetic_iin(4242);
    let today = NaiveDate::from_ymd_opt(2030, 7, 1).unwrap();
    let mut v = synthetic_response(&iin, "00000000-0000-4000-8000-000000000001", today);
    v["result_json"]["surname"] = SURNAME.into();
    v["result_json"]["name"] = NAME.into();
    v["result_json"]["patronymic"] = PATRONYMIC.into();
    v["result_json"]["documents"][0]["expiry_date"] = "2001-01-01".into();
    v["fetched_at"] = "2025-06-01T09:00:00.000Z".into();
    let path = env.path().join("hostile.jsonl");
    std::fs::write(&path, format!("{v}\n")).unwrap();
    env.ok(&["import", path.to_str().unwrap()]);
    iin
}

fn full_name() -> String {
    format!("{SURNAME} {NAME} {PATRONYMIC}")
}

#[test]
fn controls_and_bidi_from_outside_are_escaped_on_the_terminal_and_intact_in_csv_and_json() {
    let env = Env::new();
    let iin = seed_hostile_person(&env);
    // A purpose with ESC and CR, recorded with a real call.
    let valid = fixture("VALID");
    env.ok(&[
        "fetch",
        valid,
        "--session",
        &session(),
        "--purpose",
        PURPOSE,
    ]);
    env.ok(&["history", valid, "--purpose", PURPOSE]);

    let show = env.ok(&["show", &iin]).stdout;
    assert_no_raw("show", &show);
    for escaped in [
        "\\u{202e}",
        "\\u{200f}",
        "\\u{1b}[31mRED",
        "Ер\\u{0}ланович",
    ] {
        assert!(show.contains(escaped), "show lacks {escaped}\n{show}");
    }

    let history = env.ok(&["history", valid]).stdout;
    assert_no_raw("history", &history);
    assert!(
        history.contains("ok\\u{1b}[2K\\u{d}FAKE purpose"),
        "{history}"
    );

    let expiring = env.ok(&["expiring", "--as-of", "2030-07-01"]).stdout;
    assert_no_raw("expiring", &expiring);
    assert!(expiring.contains("Ахметов\\u{202e}вонлуН"), "{expiring}");
    // The escaped name is counted as shown: the column after it starts
    // where the header's does on every line.
    let col = expiring.lines().next().unwrap().find("DOCUMENT").unwrap();
    for line in expiring.lines().skip(1) {
        let mut from = line.chars().skip(col - 1);
        assert_eq!(from.next(), Some(' '), "column moved: {line:?}");
        assert!(
            matches!(from.next(), Some('У' | 'П' | 'В')),
            "column moved: {line:?}"
        );
    }

    let log = env.ok(&["audit", "log"]).stdout;
    assert_no_raw("audit log", &log);
    assert!(
        log.contains("purpose: ok\\u{1b}[2K\\u{d}FAKE purpose"),
        "{log}"
    );

    // JSON: escaped on the wire, the same text once parsed.
    let json = env.ok(&["show", &iin, "--json"]).stdout;
    assert_no_raw("show --json", &json);
    let v: Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["result_json"]["surname"], SURNAME);
    assert_eq!(v["result_json"]["patronymic"], PATRONYMIC);
    let lines = env.ok(&["audit", "log", "--json"]).stdout;
    assert_no_raw("audit log --json", &lines);
    let purposes: Vec<Value> = lines
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap()["purpose"].clone())
        .collect();
    assert!(purposes.contains(&Value::from(PURPOSE)), "{lines}");

    // CSV: the data intact; a cell holding a bidi control gets the formula
    // rule's leading quote, and without it is the original text.
    let out = env.path().join("expiring.csv");
    env.ok(&[
        "report",
        "expiring",
        "--as-of",
        "2030-07-01",
        "--full-iin",
        "--out",
        out.to_str().unwrap(),
    ]);
    let mut csv = csv::Reader::from_path(&out).unwrap();
    let headers = csv.headers().unwrap().clone();
    let name_col = headers.iter().position(|h| h == "full_name").unwrap();
    let row = csv
        .records()
        .map(Result::unwrap)
        .find(|r| r.iter().any(|c| c == iin))
        .expect("the hostile person is in the report");
    let cell = &row[name_col];
    assert_eq!(
        cell.strip_prefix('\''),
        Some(full_name().as_str()),
        "{cell:?}"
    );

    let out = env.path().join("lookups.csv");
    env.ok(&["report", "lookups", "--out", out.to_str().unwrap()]);
    let mut csv = csv::Reader::from_path(&out).unwrap();
    let purpose_col = csv
        .headers()
        .unwrap()
        .iter()
        .position(|h| h == "purpose")
        .unwrap();
    assert!(
        csv.records()
            .map(Result::unwrap)
            .any(|r| &r[purpose_col] == PURPOSE),
        "the purpose reads back as it was given"
    );
}

#[test]
fn an_error_quoting_the_service_is_shown_safe_and_ends_in_one_full_stop() {
    let env = Env::with_faults(Faults {
        rate_limit_first: 1,
        retry_after_secs: 1,
        ..Faults::default()
    });
    let r = env.run(&["fetch", &synthetic_iin(7), "--session", &session()]);
    assert_ne!(r.code, 0);
    let msg = r.stderr.trim_end();
    assert!(msg.contains("429"), "{msg}");
    assert!(msg.ends_with('.') && !msg.ends_with(".."), "{msg}");
    assert!(!msg.contains(".."), "{msg}");
    // A message of gbdfl's own gets its one full stop too.
    let r = env.fails(&["show", "12345"], 2);
    assert!(
        r.stderr.trim_end().ends_with('.') && !r.stderr.contains(".."),
        "{}",
        r.stderr
    );
    // An operator name with ESC in an error is shown escaped.
    let r = env.fails(&["show", "1234\x1b[2J5"], 2);
    assert!(!r.stderr.contains('\x1b'), "{}", r.stderr);
}

/// A server on loopback that answers every request with HTTP 429 and the
/// body of a real throttling answer, a full stop ending its message;
/// returns its base URL.
fn throttling_server() -> String {
    use std::io::{BufRead as _, BufReader, Read as _, Write as _};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let mut rd = BufReader::new(conn.try_clone().unwrap());
            let mut length = 0usize;
            loop {
                let mut line = String::new();
                if rd.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0; length];
            let _ = rd.read_exact(&mut body);
            let answer = r#"{"detail":"Request was throttled. Expected available in 1 second."}"#;
            let _ = write!(
                conn,
                "HTTP/1.1 429 Too Many Requests\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{answer}",
                answer.len()
            );
        }
    });
    format!("http://{addr}/api/v1/backend/gbdfl/")
}

#[test]
fn a_service_message_ending_in_a_full_stop_is_not_given_a_second() {
    let mut env = Env::bare();
    env.base_url = throttling_server();
    env.ok(&["init"]);
    let r = env.run(&["fetch", &synthetic_iin(8), "--session", &session()]);
    assert_ne!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stderr
            .contains("Request was throttled. Expected available in 1 second"),
        "{}",
        r.stderr
    );
    assert!(!r.stderr.contains(".."), "{}", r.stderr);
    assert!(r.stderr.trim_end().ends_with('.'), "{}", r.stderr);
    let queue = env.ok(&["queue"]).stdout;
    assert!(!queue.contains(".."), "{queue}");
}

#[test]
fn global_options_have_their_own_heading_in_help() {
    let env = Env::bare();
    for args in [&["--help"][..], &["show", "--help"], &["report", "--help"]] {
        let help = env.ok(args).stdout;
        let heading = help
            .find("Global options:")
            .unwrap_or_else(|| panic!("no heading in {args:?}\n{help}"));
        let db = help.find("--db <PATH>").unwrap();
        assert!(db > heading, "--db is under the global heading\n{help}");
        assert!(help.rfind("--json").unwrap() > heading, "{help}");
    }
    // A command's own options stay above it.
    let help = env.ok(&["show", "--help"]).stdout;
    assert!(help.find("--skip-iin-check").unwrap() < help.find("Global options:").unwrap());
}

#[test]
fn completions_parse_in_bash_and_exist_for_every_shell() {
    let env = Env::bare();
    for shell in ["bash", "zsh", "fish", "powershell", "elvish"] {
        let r = env.ok(&["completions", shell]);
        assert!(r.stdout.contains("gbdfl"), "{shell}");
        assert!(
            r.stdout.contains("report"),
            "{shell}: subcommands are completed"
        );
    }
    let script = env.ok(&["completions", "bash"]).stdout;
    let path = env.path().join("gbdfl.bash");
    std::fs::write(&path, &script).unwrap();
    let out = std::process::Command::new("bash")
        .arg("-n")
        .arg(&path)
        .output()
        .expect("bash is installed");
    assert!(
        out.status.success(),
        "bash -n: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Sourced, it registers the completion function.
    let out = std::process::Command::new("bash")
        .arg("-c")
        .arg(format!("source {} && complete -p gbdfl", path.display()))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    env.fails(&["completions", "tcsh"], 2);
}

/// groff, wherever it is (`.ci/run` installs it when missing).
fn groff() -> std::path::PathBuf {
    for dir in ["/usr/bin", "/usr/local/bin", "/bin"] {
        let p = std::path::Path::new(dir).join("groff");
        if p.exists() {
            return p;
        }
    }
    panic!("groff is not installed: apt-get install -y groff-base (as .ci/run does)");
}

#[test]
fn the_man_page_renders_without_warnings() {
    let env = Env::bare();
    let page = env.ok(&["man"]).stdout;
    assert!(
        page.starts_with(".ie") || page.contains(".TH gbdfl 1"),
        "{page}"
    );
    for section in [".SH NAME", ".SH SYNOPSIS", "GLOBAL OPTIONS", "SUBCOMMANDS"] {
        assert!(page.contains(section), "no {section}");
    }
    let path = env.path().join("gbdfl.1");
    std::fs::write(&path, &page).unwrap();
    let out = std::process::Command::new(groff())
        .args(["-man", "-ww", "-z"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(
        out.stderr.is_empty(),
        "groff warns: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // And it renders to text that names the commands.
    let out = std::process::Command::new(groff())
        .args(["-man", "-Tutf8"])
        .arg(&path)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("completions"), "{text}");

    // A page per command, each rendering cleanly, for the ones the main
    // page names (gbdfl-show(1), ...).
    let dir = env.path().join("man1");
    env.ok(&["man", "--dir", dir.to_str().unwrap()]);
    for name in [
        "gbdfl.1",
        "gbdfl-show.1",
        "gbdfl-audit-log.1",
        "gbdfl-report.1",
    ] {
        let out = std::process::Command::new(groff())
            .args(["-man", "-ww", "-z"])
            .arg(dir.join(name))
            .output()
            .unwrap();
        assert!(
            out.status.success() && out.stderr.is_empty(),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert!(
        !dir.join("gbdfl-bench.1").exists(),
        "hidden commands get no page"
    );
    std::fs::write(env.path().join("file"), "").unwrap();
    env.fails(
        &["man", "--dir", env.path().join("file/x").to_str().unwrap()],
        2,
    );
}

/// A database made through the library with a fixed key, so the blind
/// index of an IIN (the audit `subject`) is the same on every run.
fn fixed_store(env: &Env) -> Store {
    let key = MasterKey::from_bytes([9u8; 32]);
    gbdfl_store::keyfile::create(&env.key, &key).unwrap();
    Store::init(&env.db, &key).unwrap().0
}

/// The audit report with the values that change from run to run (ids,
/// times) replaced by placeholders, bytes otherwise as written.
fn normalised(bytes: &[u8], delimiter: u8) -> String {
    let start = if bytes.starts_with(b"\xEF\xBB\xBF") {
        3
    } else {
        0
    };
    let mut text = String::from_utf8(bytes.to_vec()).unwrap();
    let mut rd = csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .from_reader(&bytes[start..]);
    // The blind index behind `subject` is keyed per database: each
    // distinct subject becomes <subject-N>, so sameness still shows.
    let mut subjects: Vec<String> = Vec::new();
    for r in rd.records() {
        let r = r.unwrap();
        text = text.replacen(&r[1], "<id>", 1).replacen(&r[2], "<time>", 1);
        if !r[6].is_empty() && !subjects.iter().any(|s| s == &r[6]) {
            subjects.push(r[6].to_owned());
        }
    }
    for (n, s) in subjects.iter().enumerate() {
        text = text.replace(s.as_str(), &format!("<subject-{}>", n + 1));
    }
    text
}

#[test]
fn report_audit_matches_its_golden_file_and_audits_itself() {
    let env = Env::bare();
    let store = fixed_store(&env);
    let iin = Iin::parse(fixture("VALID")).unwrap();
    let entry = |command: &str, operator: &str| AuditEntry {
        command: command.into(),
        operator: operator.into(),
        host: "branch-12".into(),
        ..AuditEntry::default()
    };
    store
        .append_audit(&AuditEntry {
            subject: Some(store.subject_of(&iin)),
            purpose: Some("кредит, \"срочно\"\nвторая строка".into()),
            paid_call: true,
            records: 1,
            os_user: Some("kassir1 (uid 1001)".into()),
            ..entry("fetch", "kassir-1")
        })
        .unwrap();
    store
        .append_audit(&AuditEntry {
            subject: Some(store.subject_of(&iin)),
            purpose: Some("=HYPERLINK(\"http://x\")".into()),
            records: 1,
            ..entry("show", "@kassir-2")
        })
        .unwrap();
    store
        .append_audit(&AuditEntry {
            exit_code: 6,
            error: Some("no VALID record of 950215*****6 in the cache".into()),
            purpose: Some("ok\u{202E}desrever".into()),
            ..entry("show", "kassir-1")
        })
        .unwrap();
    store
        .append_audit(&AuditEntry {
            records: 12,
            ..entry("report expiring", "-auditor")
        })
        .unwrap();
    drop(store);

    let report = |name: &str, args: &[&str]| -> Vec<u8> {
        let out = env.path().join(name);
        let mut all = vec!["report", "audit", "--out", out.to_str().unwrap()];
        all.extend_from_slice(args);
        let r = env.ok(&all);
        assert_eq!(r.stdout.trim_end(), out.to_str().unwrap());
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&out).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{name} is owner-only");
        std::fs::read(&out).unwrap()
    };
    let plain = report("audit.csv", &[]);
    crate::report::golden("audit.csv", normalised(&plain, b',').as_bytes());
    // (The first report's own entry is in this one: its host is this
    // machine's, so the golden one filters.)
    let excel = report(
        "audit-excel.csv",
        &["--excel", "--delimiter", ";", "--action", "show"],
    );
    crate::report::golden("audit-excel.csv", normalised(&excel, b';').as_bytes());

    // The columns are those of `audit log --json`.
    let log = env.ok(&["audit", "log", "--json"]).stdout;
    let first: serde_json::Map<String, Value> =
        serde_json::from_str(log.lines().next().unwrap()).unwrap();
    let mut keys: Vec<&str> = first.keys().map(String::as_str).collect();
    let mut rd = csv::Reader::from_reader(&plain[..]);
    let mut columns: Vec<&str> = rd.headers().unwrap().iter().collect::<Vec<_>>();
    keys.sort_unstable();
    columns.sort_unstable();
    assert_eq!(keys, columns);

    // Each report wrote its own entry (before its file appeared), which
    // the next one lists.
    let entries: Vec<Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let own: Vec<&Value> = entries
        .iter()
        .filter(|e| e["command"] == "report audit")
        .collect();
    assert_eq!(own.len(), 2, "{log}");
    assert_eq!(own[0]["records"], 4);
    assert_eq!(own[1]["records"], 2, "the second report, of `show` entries");
    let all = report("all.csv", &[]);
    let mut rd = csv::Reader::from_reader(&all[..]);
    let commands: Vec<String> = rd.records().map(|r| r.unwrap()[5].to_owned()).collect();
    assert_eq!(
        commands.iter().filter(|c| *c == "report audit").count(),
        2,
        "each earlier report's entry is on the trail: {commands:?}"
    );

    // Filters.
    let rows = |bytes: Vec<u8>| csv::Reader::from_reader(&bytes[..]).records().count();
    assert_eq!(rows(report("f2.csv", &["--by", "kassir-1"])), 2);
    assert_eq!(rows(report("f3.csv", &["--iin", fixture("VALID")])), 2);
    assert_eq!(rows(report("f4.csv", &["--to", "2001-01-01"])), 0);
    env.fails(&["report", "audit", "--full-iin"], 2);
    env.fails(&["report", "lookups", "--by", "x"], 2);
}

/// Every runnable command of the clap tree, as its words ("audit verify").
fn every_command() -> Vec<String> {
    use clap::CommandFactory as _;
    fn walk(cmd: &clap::Command, prefix: &str, all: &mut Vec<String>) {
        for sub in cmd.get_subcommands() {
            // Hidden commands (bench) are tried apart, below.
            if sub.get_name() == "help" || sub.is_hide_set() {
                continue;
            }
            let name = format!("{prefix}{}", sub.get_name());
            if sub.get_subcommands().next().is_none() || !sub.is_subcommand_required_set() {
                all.push(name.clone());
            }
            walk(sub, &format!("{name} "), all);
        }
    }
    let mut all = Vec::new();
    walk(&gbdfl::cli::Cli::command(), "", &mut all);
    all
}

/// What `--json` gives: JSON on standard output (one document, or one per
/// line), or the refusal, exit 2, nothing on standard output.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Gives {
    Json,
    Refusal,
    /// A head-office command with no central store set: exit 2 naming the
    /// setting (tests/cli/central.rs runs them with one, with --json).
    NoCentral,
}

fn parses(stdout: &str) -> bool {
    serde_json::from_str::<Value>(stdout).is_ok()
        || (!stdout.trim().is_empty()
            && stdout
                .lines()
                .all(|l| serde_json::from_str::<Value>(l).is_ok()))
}

#[test]
fn every_command_honours_json_or_refuses_it() {
    let env = Env::new();
    let valid = fixture("VALID");
    let pending = fixture("PENDING");
    env.ok(&["fetch", valid, "--session", &session()]);
    let p = |name: &str| env.path().join(name).to_str().unwrap().to_owned();
    std::fs::write(
        p("batch.csv"),
        format!("iin,session_id\n{valid},{}\n", session()),
    )
    .unwrap();
    let exported = env.ok(&["export"]).stdout;
    std::fs::write(p("archive.jsonl"), exported).unwrap();
    let s = session();
    // The order matters: a queued request before `queue drop`, rekey last.
    let cases: Vec<(Vec<String>, Gives)> = [
        (vec!["init"], Gives::Json),
        (vec!["config"], Gives::Json),
        (vec!["doctor"], Gives::Json),
        (vec!["fetch", valid, "--session", &s], Gives::Json),
        // PENDING: its answer printed, the request queued (exit 10).
        (vec!["fetch", pending, "--session", &s], Gives::Json),
        (vec!["queue"], Gives::Json),
        (vec!["queue", "drop", pending], Gives::Json),
        (vec!["sync"], Gives::Json),
        (
            vec!["batch", &p("batch.csv"), "--out", &p("batch-out.csv")],
            Gives::Json,
        ),
        (vec!["stats"], Gives::Json),
        (vec!["show", valid], Gives::Json),
        (vec!["history", valid], Gives::Json),
        (vec!["expiring"], Gives::Json),
        (vec!["report", "lookups", "--out", &p("r.csv")], Gives::Json),
        (vec!["audit", "verify"], Gives::Json),
        (vec!["audit", "head"], Gives::Json),
        (vec!["audit", "log"], Gives::Json),
        (
            vec!["purge", "--older-than", "3650d", "--dry-run"],
            Gives::Json,
        ),
        (vec!["purge", "--older-than", "3650d"], Gives::Json),
        (vec!["backup", "--out", &p("backup.db")], Gives::Json),
        (vec!["check"], Gives::Json),
        (vec!["import", &p("archive.jsonl")], Gives::Json),
        (vec!["export"], Gives::Json),
        (vec!["mock-server", "--fixtures"], Gives::Json),
        (vec!["mock-server"], Gives::Refusal),
        (vec!["demo"], Gives::Refusal),
        (vec!["completions", "bash"], Gives::Refusal),
        (vec!["man"], Gives::Refusal),
        (vec!["bench", "floor"], Gives::Refusal),
        (vec!["push"], Gives::NoCentral),
        (vec!["pull"], Gives::NoCentral),
        (vec!["central", "init"], Gives::NoCentral),
        (
            vec!["central", "add-branch", "b", "--password-file", &p("b.pw")],
            Gives::NoCentral,
        ),
        (
            vec![
                "central",
                "add-head-office",
                "h",
                "--password-file",
                &p("h.pw"),
            ],
            Gives::NoCentral,
        ),
        (vec!["central", "status"], Gives::NoCentral),
        (
            vec!["central", "purge", "--older-than", "3650d"],
            Gives::NoCentral,
        ),
        (vec!["rekey", "--out", &p("new.key")], Gives::Json),
    ]
    .into_iter()
    .map(|(a, g)| (a.into_iter().map(str::to_owned).collect(), g))
    .collect();

    // Every command of the tree is tried (`queue` on its own, not only
    // through `queue drop`).
    let commands = every_command();
    for cmd in &commands {
        let words: Vec<&str> = cmd.split(' ').collect();
        let tried = cases.iter().any(|(a, _)| {
            a.len() >= words.len()
                && a[..words.len()] == words[..]
                && a.get(words.len())
                    .is_none_or(|next| !commands.contains(&format!("{cmd} {next}")))
        });
        assert!(tried, "`gbdfl {cmd} --json` is not tried here: add it");
    }

    for (args, gives) in &cases {
        let mut all: Vec<&str> = args.iter().map(String::as_str).collect();
        all.push("--json");
        let r = env.run(&all);
        let what = format!(
            "gbdfl {}: exit {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            all.join(" "),
            r.code,
            r.stdout,
            r.stderr
        );
        match gives {
            Gives::Json => {
                assert!(parses(&r.stdout), "not JSON: {what}");
                assert!(
                    [0, 10, 11].contains(&r.code),
                    "unexpected exit code: {what}"
                );
            }
            Gives::Refusal => {
                assert_eq!(r.code, 2, "{what}");
                assert!(r.stdout.is_empty(), "{what}");
                assert!(r.stderr.contains("takes no --json"), "{what}");
            }
            Gives::NoCentral => {
                assert_eq!(r.code, 2, "{what}");
                assert!(r.stdout.is_empty(), "{what}");
                assert!(r.stderr.contains("GBDFL_CENTRAL_URL"), "{what}");
            }
        }
    }
}
