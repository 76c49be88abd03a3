//! `gbdfl demo`: the newcomer's first command. It runs the whole job with
//! no set-up (lookups, the cache, the queue, the expiring table, two CSV
//! reports, the audit trail's check) and reads the same every day: its
//! output, with times, ids, paths and MACs masked, is held in
//! tests/golden/demo.txt (`GBDFL_BLESS=1 cargo test` rewrites it).

use std::path::Path;

use crate::harness::Env;
use crate::report::golden;

/// Replaces what differs between runs: the demo folder, the emulator's
/// port, the host name, UUIDs, date-times, the day in the summary report,
/// audit MACs, blind-index prefixes and the OS user in `audit log`. Fixed
/// dates (birth, expiry) stay.
fn mask(text: &str, dir: &Path) -> String {
    let host = gethostname::gethostname().to_string_lossy().into_owned();
    let text = text.replace(dir.to_str().unwrap(), "<DIR>");
    let text = text.replace(&format!(" on {host} "), " on <HOST> ");
    let text = text.replace(
        &format!(" {:<20} ", crate::os_user::me()),
        &format!(" {:<20} ", "<OS USER>"),
    );
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        out.push_str(&mask_handle(&mask_line(line)));
        out.push('\n');
    }
    out
}

/// A queue row starts with the item's short handle, made from its random id.
fn mask_handle(line: &str) -> String {
    let mut words = line.split_whitespace();
    match (words.next(), words.next()) {
        (Some(h), Some("<UUID>")) if h.len() == 4 && hex_run(h.as_bytes()) == 4 => {
            line.replacen(h, "<HANDLE>", 1)
        }
        _ => line.to_owned(),
    }
}

fn mask_line(line: &str) -> String {
    let b = line.as_bytes();
    let mut out = String::new();
    let mut i = 0;
    // The summary report's day starts its line.
    if line.starts_with("  ") && is_date(&b[2..]) && b.get(12) == Some(&b',') {
        out.push_str("  <DAY>");
        i = 12;
    }
    while i < b.len() {
        let rest = &b[i..];
        let boundary = i == 0 || !b[i - 1].is_ascii_alphanumeric();
        if boundary && is_uuid(rest) {
            out.push_str("<UUID>");
            i += 36;
        } else if boundary
            && is_date(rest)
            && matches!(rest.get(10), Some(b' ' | b'T'))
            && is_hm(&rest[11..])
        {
            // YYYY-MM-DD HH:MM[:SS][Z| UTC| +HH:MM]
            let mut n = 16;
            if rest.get(n) == Some(&b':') && rest.len() >= n + 3 {
                n += 3;
            }
            if rest.get(n) == Some(&b'Z') {
                n += 1;
            } else if rest.get(n) == Some(&b' ')
                && matches!(rest.get(n + 1), Some(b'+' | b'-'))
                && is_hm(&rest[n + 2..])
            {
                n += 7;
            }
            out.push_str("<TIME>");
            i += n;
        } else if rest.starts_with(b"127.0.0.1:") {
            let digits = rest[10..].iter().take_while(|c| c.is_ascii_digit()).count();
            out.push_str("127.0.0.1:<PORT>");
            i += 10 + digits;
        } else if boundary && let n @ (16 | 64) = hex_run(rest) {
            out.push_str(if n == 64 { "<MAC>" } else { "<SUBJECT>" });
            i += n;
        } else {
            let ch = line[i..].chars().next().unwrap();
            out.push(ch);
            i += ch.len_utf8();
        }
    }
    out
}

fn digits(b: &[u8], n: usize) -> bool {
    b.len() >= n && b[..n].iter().all(u8::is_ascii_digit)
}

/// YYYY-MM-DD at the start of `b`.
fn is_date(b: &[u8]) -> bool {
    b.len() >= 10
        && digits(b, 4)
        && b[4] == b'-'
        && digits(&b[5..], 2)
        && b[7] == b'-'
        && digits(&b[8..], 2)
}

/// HH:MM at the start of `b`.
fn is_hm(b: &[u8]) -> bool {
    b.len() >= 5 && digits(b, 2) && b[2] == b':' && digits(&b[3..], 2)
}

fn is_uuid(b: &[u8]) -> bool {
    b.len() >= 36
        && b[..36].iter().enumerate().all(|(k, c)| match k {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_hexdigit(),
        })
        && b.get(36).is_none_or(|c| !c.is_ascii_alphanumeric())
}

/// The length of the run of lowercase hex digits at the start of `b`.
fn hex_run(b: &[u8]) -> usize {
    b.iter()
        .take_while(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(c))
        .count()
}

#[test]
fn demo_shows_the_whole_job_and_reads_the_same_every_day() {
    let env = Env::bare();
    let dir = env.path().join("demo");
    let run = env.ok(&["demo", "--dir", dir.to_str().unwrap()]);
    golden("demo.txt", mask(&run.stdout, &dir).as_bytes());

    // The reports it shows are in its folder, the one for Excel as Excel reads it.
    let excel = std::fs::read(dir.join("expiring.csv")).unwrap();
    assert!(
        excel.starts_with(b"\xEF\xBB\xBFiin,"),
        "BOM, then the header"
    );
    assert!(String::from_utf8_lossy(&excel).contains("\r\n"));
    assert!(dir.join("summary.csv").is_file());
    let html = std::fs::read_to_string(dir.join("expiring.html")).unwrap();
    assert!(
        html.contains("<html") && html.contains("Иванова"),
        "an HTML page of the rows"
    );

    // The user's own settings (GBDFL_DB here) stay untouched: the demo's
    // steps ran on the demo's database only.
    assert!(!env.db.exists(), "the demo wrote to the user's GBDFL_DB");

    // The trail it verified holds every step, each audited.
    let demo_db = [
        ("GBDFL_DB", dir.join("gbdfl.db")),
        ("GBDFL_KEY_FILE", dir.join("master.key")),
        ("GBDFL_CONFIG", dir.join("config.toml")),
    ];
    let demo_env: Vec<(&str, &str)> = demo_db
        .iter()
        .map(|(k, v)| (*k, v.to_str().unwrap()))
        .collect();
    let log = env.run_with(&["audit", "log", "--json"], &demo_env);
    assert_eq!(log.code, 0, "{}", log.stderr);
    for command in [
        "fetch",
        "show",
        "queue drop",
        "sync",
        "expiring",
        "report expiring",
        "report summary",
        "audit verify",
        "audit head",
        "audit log",
    ] {
        assert!(
            log.stdout.contains(&format!("\"command\":\"{command}\"")),
            "no audit entry for {command} in\n{}",
            log.stdout
        );
    }
    let verify = env.run_with(&["audit", "verify"], &demo_env);
    assert_eq!(verify.code, 0, "{}", verify.stderr);
}

#[test]
fn demo_refuses_a_folder_that_holds_a_database() {
    let env = Env::bare();
    let dir = env.path().join("demo");
    env.ok(&["demo", "--dir", dir.to_str().unwrap()]);
    let again = env.run(&["demo", "--dir", dir.to_str().unwrap()]);
    assert_ne!(again.code, 0);
    assert!(
        again.stderr.contains("already holds a gbdfl database"),
        "{}",
        again.stderr
    );
}

#[test]
fn the_mask_keeps_fixed_dates_and_hides_what_changes() {
    let dir = Path::new("/tmp/x");
    assert_eq!(
        mask_line("  2026-12-03,19,18"),
        "  <DAY>,19,18",
        "the summary's day"
    );
    assert_eq!(
        mask_line("expires  2035-03-10 (3204 days left)"),
        "expires  2035-03-10 (3204 days left)"
    );
    assert_eq!(
        mask_line("Fetched 2026-12-03 22:10:10 UTC (lookup 01a23df5-3681-717c-b24e-8dafc6711d98)"),
        "Fetched <TIME> UTC (lookup <UUID>)"
    );
    assert_eq!(
        mask_line("WAITING  1  2026-12-03 22:10 +00:00  demo"),
        "WAITING  1  <TIME>  demo"
    );
    assert_eq!(mask_line("2026-12-03T22:10:12Z,x"), "<TIME>,x");
    assert_eq!(
        mask_line("  27:44d839f3e3eed6ca640fae84fe3d03948ebd19d287009665aa45926bde9f8f1a"),
        "  27:<MAC>"
    );
    assert_eq!(
        mask_line("fetch  caeaffb4ed796285 ok  950215300016"),
        "fetch  <SUBJECT> ok  950215300016"
    );
    assert_eq!(mask("see /tmp/x/a.csv\n", dir), "see <DIR>/a.csv\n");
    assert_eq!(
        mask(
            "  7e7d    01a23df5-3adb-7775-90bb-fe51c0fa49b4  881104*****9\n",
            dir
        ),
        "  <HANDLE>    <UUID>  881104*****9\n"
    );
}
