//! The head office's central store on a real PostgreSQL server that the
//! test starts itself (tests/cli/pg.rs): the organisation cache, push
//! under faults, head-office reports and audit, row-level security, and
//! what the server's files hold.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;

use crate::bulk::{archive, write_lines};
use crate::harness::{Env, session, synthetic_iin};
use crate::pg::Cluster;

/// Head office (its own database, the organisation's key, the emulator)
/// and branches, each with its own database made from the organisation's
/// keys and its own PostgreSQL login.
struct Org {
    pg: Cluster,
    hq: Env,
    branches: Vec<Branch>,
}

struct Branch {
    id: String,
    role: String,
    password: String,
    env: Env,
}

impl Org {
    fn new(n: usize) -> Org {
        let pg = Cluster::start();
        let mut hq = Env::new();
        hq.extra_env
            .push(("GBDFL_CENTRAL_URL".into(), pg.admin_url()));
        let r = hq.ok(&["central", "init", "--json"]);
        let v: Value = serde_json::from_str(&r.stdout).unwrap();
        assert_eq!(v["schema"], 1, "{v}");
        let mut branches = Vec::new();
        for i in 0..n {
            let id = format!("branch-{i}");
            let pw_file = hq.path().join(format!("{id}.password"));
            let r = hq.ok(&[
                "central",
                "add-branch",
                &id,
                "--password-file",
                pw_file.to_str().unwrap(),
                "--json",
            ]);
            let v: Value = serde_json::from_str(&r.stdout).unwrap();
            let password = std::fs::read_to_string(&pw_file).unwrap().trim().to_owned();
            let role = v["role"].as_str().unwrap().to_owned();
            let mut env = Env::bare();
            std::fs::copy(&hq.key, &env.key).unwrap();
            env.base_url = hq.base_url.clone();
            env.extra_env.push((
                "GBDFL_CENTRAL_URL".into(),
                pg.url_for(&role, &password, "postgres"),
            ));
            env.extra_env.push(("GBDFL_BRANCH".into(), id.clone()));
            let r = env.ok(&["init"]);
            assert!(r.stderr.contains("organisation's keys"), "{}", r.stderr);
            branches.push(Branch {
                id,
                role,
                password,
                env,
            });
        }
        Org { pg, hq, branches }
    }

    fn count(&self, sql: &str) -> u64 {
        self.pg.psql(sql).trim().parse().unwrap()
    }
}

fn fetch(env: &Env, iin: &str) -> crate::harness::Run {
    env.ok(&["fetch", iin, "--session", &session()])
}

/// Head office's `report KIND --central` and the union of the branches'
/// own `report KIND`, each line led by its branch, as sets of lines (the
/// headers checked: `branch`, then the branch report's, which starts with
/// `first`).
fn central_and_branches(
    org: &Org,
    kind: &str,
    args: &[&str],
    first: &str,
) -> (BTreeSet<String>, BTreeSet<String>) {
    let lines_of = |env: &Env, extra: &[&str], header: &str| -> Vec<String> {
        let out = env.path().join(format!("{kind}-{}.csv", extra.len()));
        let mut all = vec!["report", kind, "--out", out.to_str().unwrap()];
        all.extend_from_slice(args);
        all.extend_from_slice(extra);
        env.ok(&all);
        let text = std::fs::read_to_string(&out).unwrap();
        let mut lines = text.lines();
        let head = lines.next().unwrap();
        assert!(head.starts_with(header), "{head}");
        lines.map(str::to_owned).collect()
    };
    let central = lines_of(&org.hq, &["--central"], &format!("branch,{first},"))
        .into_iter()
        .collect();
    let mut union = BTreeSet::new();
    for b in &org.branches {
        for l in lines_of(&b.env, &[], &format!("{first},")) {
            union.insert(format!("{},{l}", b.id));
        }
    }
    (central, union)
}

/// Lookups and audit entries in a branch's own database.
fn local_counts(env: &Env) -> (u64, u64) {
    let c = rusqlite::Connection::open(&env.db).unwrap();
    let n = |sql: &str| c.query_row(sql, [], |r| r.get::<_, i64>(0)).unwrap() as u64;
    (
        n("SELECT count(*) FROM lookups"),
        n("SELECT count(*) FROM audit"),
    )
}

fn central_counts(org: &Org, branch: &str) -> (u64, u64) {
    (
        org.count(&format!(
            "SELECT count(*) FROM gbdfl_lookups WHERE branch = '{branch}'"
        )),
        org.count(&format!(
            "SELECT count(*) FROM gbdfl_audit WHERE branch = '{branch}'"
        )),
    )
}

#[test]
fn the_organisation_pays_once_per_person_and_head_office_sees_every_branch() {
    let org = Org::new(3);
    // Overlapping people: 0 1 2 | 1 2 3 | 2 3 4 -> five distinct.
    let people: Vec<String> = (0..5).map(synthetic_iin).collect();
    for (i, b) in org.branches.iter().enumerate() {
        for p in &people[i..i + 3] {
            fetch(&b.env, p);
        }
        b.env.ok(&["push"]);
    }
    assert_eq!(org.hq.emu().calls(), 5, "one paid call per distinct person");
    // The second and third branch answered two people each from the
    // organisation cache; stats says so.
    for (i, b) in org.branches.iter().enumerate() {
        let r = b.env.ok(&["stats", "--json"]);
        let days: Value = serde_json::from_str(&r.stdout).unwrap();
        let sum = |k: &str| -> u64 {
            days.as_array()
                .unwrap()
                .iter()
                .map(|d| d[k].as_u64().unwrap_or(0))
                .sum()
        };
        let expected_org = if i == 0 { 0 } else { 2 };
        assert_eq!(sum("paid_calls"), 3 - expected_org, "branch {i}: {days}");
        assert_eq!(sum("from_org"), expected_org, "branch {i}: {days}");
    }

    // Head office sees the same counts for the organisation.
    let r = org.hq.ok(&["stats", "--central", "--json"]);
    let rows: Value = serde_json::from_str(&r.stdout).unwrap();
    let total = |k: &str| -> u64 {
        rows.as_array()
            .unwrap()
            .iter()
            .map(|b| b[k].as_u64().unwrap())
            .sum()
    };
    assert_eq!((total("paid_calls"), total("from_org")), (5, 4), "{rows}");

    // Head office's expiring report is the union of the branches' own.
    let as_of = "2025-07-01";
    let expiring = ["--as-of", as_of, "--within", "36500d"];
    let (central, documents) = central_and_branches(&org, "expiring", &expiring, "iin");
    assert!(!documents.is_empty(), "the report lists documents");
    assert_eq!(central, documents);
    // So are the lookups report (every lookup, opened here) and the
    // summary (each branch's days, counted by the server).
    let (central, union) = central_and_branches(&org, "lookups", &[], "requested_at");
    assert_eq!(central.len(), 9, "every lookup of the three branches");
    assert_eq!(central, union);
    let (central, union) = central_and_branches(&org, "summary", &[], "day");
    assert!(central.len() >= 3, "a day or more at each branch");
    assert_eq!(central, union);

    // The same on the terminal, by branch, and as JSON.
    let r = org.hq.ok(&[
        "expiring",
        "--central",
        "--as-of",
        as_of,
        "--within",
        "36500d",
    ]);
    for b in &org.branches {
        assert!(
            r.stdout.contains(&format!("== branch {} ==", b.id)),
            "{}",
            r.stdout
        );
    }
    let r = org.hq.ok(&[
        "expiring",
        "--central",
        "--as-of",
        as_of,
        "--within",
        "36500d",
        "--json",
    ]);
    let v: Value = serde_json::from_str(&r.stdout).unwrap();
    let listed: usize = v
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["rows"].as_array().unwrap().len())
        .sum();
    assert_eq!(listed, documents.len());

    // Every branch's entries, each with its branch, purposes opened here.
    let r = org.hq.ok(&["audit", "log", "--central", "--json"]);
    let entries: Vec<Value> = r
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        entries.len() as u64,
        org.count("SELECT count(*) FROM gbdfl_audit"),
        "{}",
        r.stdout
    );
    for b in &org.branches {
        assert!(entries.iter().any(|e| e["branch"] == b.id.as_str()));
    }
    let r = org
        .hq
        .ok(&["audit", "log", "--central", "--action", "push"]);
    assert_eq!(r.stdout.lines().count(), 3, "{}", r.stdout);

    // Every branch's chain verifies centrally; an edited or deleted
    // central entry is named.
    let r = org.hq.ok(&["audit", "verify", "--central"]);
    for b in &org.branches {
        assert!(r.stdout.contains(&b.id), "{}", r.stdout);
    }
    org.pg
        .psql("UPDATE gbdfl_audit SET records = records + 1 WHERE branch = 'branch-1' AND seq = 2");
    let r = org.hq.fails(&["audit", "verify", "--central"], 8);
    assert!(
        r.stderr.contains("branch branch-1") && r.stderr.contains("entry 2"),
        "{}",
        r.stderr
    );
    org.pg
        .psql("UPDATE gbdfl_audit SET records = records - 1 WHERE branch = 'branch-1' AND seq = 2");
    org.hq.ok(&["audit", "verify", "--central"]);
    org.pg
        .psql("DELETE FROM gbdfl_audit WHERE branch = 'branch-2' AND seq = 3");
    let r = org.hq.fails(&["audit", "verify", "--central"], 8);
    assert!(
        r.stderr.contains("branch branch-2") && r.stderr.contains("entry"),
        "{}",
        r.stderr
    );
    let r = org.branches[2]
        .env
        .fails(&["audit", "verify", "--against-central"], 8);
    assert!(r.stderr.contains("branch-2"), "{}", r.stderr);
    org.branches[1]
        .env
        .ok(&["audit", "verify", "--against-central"]);
}

#[test]
fn a_branch_role_cannot_change_delete_or_write_for_another_branch() {
    let org = Org::new(2);
    let b = &org.branches[0];
    fetch(&b.env, &synthetic_iin(7));
    b.env.ok(&["push"]);
    let as_branch = |sql: &str| org.pg.psql_as(&b.role, &b.password, sql);
    for sql in [
        "UPDATE gbdfl_lookups SET status = 'INVALID'",
        "DELETE FROM gbdfl_lookups",
        "UPDATE gbdfl_audit SET records = 0",
        "DELETE FROM gbdfl_audit",
        "UPDATE gbdfl_branches SET key_check = key_check",
    ] {
        let e = as_branch(sql).expect_err(sql);
        assert!(e.contains("permission denied"), "{sql}: {e}");
    }
    // Its own rows copied under another branch's id: refused by RLS.
    let e = as_branch(
        "INSERT INTO gbdfl_lookups SELECT 'branch-1', id || 'x', subject, requested_at, answered_at, \
         operator, host, source, outcome, status, result, http_status, failure_type, iin_checked, \
         cached_from, key_version, iin_enc, session_enc, purpose_enc, detail_enc, response_enc, \
         summary_enc, reached, os_user FROM gbdfl_lookups",
    )
    .expect_err("insert for another branch");
    assert!(e.contains("row-level security"), "{e}");
    let e = as_branch(
        "INSERT INTO gbdfl_audit SELECT 'branch-1', seq + 100, id, at, operator, host, command, \
         subject, outcome, exit_code, paid_call, records, key_version, purpose_enc, error_enc, mac, \
         os_user, lookup_id, purged_before FROM gbdfl_audit",
    )
    .expect_err("audit for another branch");
    assert!(e.contains("row-level security"), "{e}");
    for sql in [
        "INSERT INTO gbdfl_meta (key, value) VALUES ('x', 'y')",
        "UPDATE gbdfl_meta SET value = '2'",
        "INSERT INTO gbdfl_branches SELECT 'x', 'x', key_check, 0 FROM gbdfl_branches",
        "DELETE FROM gbdfl_org_keys",
        "DELETE FROM gbdfl_purges",
    ] {
        let e = as_branch(sql).expect_err(sql);
        assert!(e.contains("permission denied"), "{sql}: {e}");
    }
    // Another branch's audit trail and failed lookups are not its to read;
    // the VALID answers the organisation cache needs are.
    let other = &org.branches[1];
    fetch(&other.env, &synthetic_iin(8));
    other.env.fails(
        &[
            "fetch",
            crate::harness::fixture("NOT_FOUND"),
            "--session",
            &session(),
        ],
        5,
    );
    other.env.ok(&["push"]);
    let seen = |sql: &str| as_branch(sql).unwrap().trim().parse::<u64>().unwrap();
    assert_eq!(
        seen("SELECT count(*) FROM gbdfl_audit WHERE branch = 'branch-1'"),
        0
    );
    assert!(org.count("SELECT count(*) FROM gbdfl_audit WHERE branch = 'branch-1'") > 0);
    assert_eq!(
        seen("SELECT count(*) FROM gbdfl_lookups WHERE branch = 'branch-1' AND status = 'VALID'"),
        1
    );
    assert_eq!(
        seen("SELECT count(*) FROM gbdfl_lookups WHERE branch = 'branch-1'"),
        1
    );
    assert_eq!(
        org.count("SELECT count(*) FROM gbdfl_lookups WHERE branch = 'branch-1'"),
        2
    );
    // Nothing changed.
    assert_eq!(central_counts(&org, &b.id), local_counts(&b.env));
    // A branch login pushing under another branch's id is refused first.
    let r = b.env.run_with(&["push"], &[("GBDFL_BRANCH", "branch-1")]);
    assert_eq!(r.code, 4, "{}", r.stderr);
    assert!(
        r.stderr.contains("may not write for branch branch-1"),
        "{}",
        r.stderr
    );
}

#[cfg(unix)]
#[test]
fn push_survives_sigkill_and_a_server_restart_with_every_row_exactly_once() {
    let org = Org::new(1);
    let b = &org.branches[0];
    let lines: Vec<String> = archive(6000).iter().map(Value::to_string).collect();
    let file = write_lines(&b.env, "archive.jsonl", &lines);
    b.env.ok(&["import", &file]);
    for round in 0..10u64 {
        let mut child = b
            .env
            .command(&["push"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(30 + jitter_ms(round, 400)));
        child.kill().expect("SIGKILL");
        child.wait().unwrap();
    }
    // The server stopped under a push, then started again.
    let child = b
        .env
        .command(&["push"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(50 + jitter_ms(11, 200)));
    org.pg.stop();
    let out = child.wait_with_output().unwrap();
    let code = out.status.code().unwrap_or(-1);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        code == 0 || code == 6,
        "a push the server left ends cleanly: {code} {stderr}"
    );
    if code == 6 {
        assert!(stderr.contains("next push sends it"), "{stderr}");
    }
    // While the server is down, a push says so and changes nothing.
    let r = b.env.fails(&["push"], 6);
    assert!(r.stderr.contains("cannot be reached"), "{}", r.stderr);
    org.pg.start_again();
    let r = b.env.ok(&["push"]);
    assert!(r.stderr.contains("Pushed"), "{}", r.stderr);
    assert_eq!(central_counts(&org, &b.id), local_counts(&b.env));
    assert_eq!(local_counts(&b.env).0, 6000);
    // No duplicate: every central row's id is one of the branch's, once.
    assert_eq!(
        org.count("SELECT count(DISTINCT id) FROM gbdfl_lookups"),
        6000
    );
    b.env.ok(&["audit", "verify"]);
    b.env.ok(&["audit", "verify", "--against-central"]);
    org.hq.ok(&["audit", "verify", "--central"]);
    // A second push has nothing to send.
    let r = b.env.ok(&["push"]);
    assert!(r.stderr.contains("Pushed 0 lookup(s)"), "{}", r.stderr);
}

#[test]
fn faults_get_clear_messages_and_exit_codes() {
    let org = Org::new(2);
    let b = &org.branches[0];
    fetch(&b.env, &synthetic_iin(3));
    // Wrong password: refused login, exit 4.
    let wrong = org.pg.url_for(&b.role, "not-the-password", "postgres");
    let r = b.env.run_with(&["push"], &[("GBDFL_CENTRAL_URL", &wrong)]);
    assert_eq!(r.code, 4, "{}", r.stderr);
    assert!(r.stderr.contains("refused the login"), "{}", r.stderr);
    assert!(!r.stderr.contains("not-the-password"), "{}", r.stderr);
    // Nothing listening: exit 6, and fetch goes on without the cache.
    let closed = format!(
        "postgresql://{}@127.0.0.1:{}/postgres",
        b.role,
        crate::harness::closed_url()
            .trim_start_matches("http://127.0.0.1:")
            .split('/')
            .next()
            .unwrap()
    );
    let r = b.env.run_with(&["push"], &[("GBDFL_CENTRAL_URL", &closed)]);
    assert_eq!(r.code, 6, "{}", r.stderr);
    let r = b.env.run_with(
        &["fetch", &synthetic_iin(4), "--session", &session()],
        &[("GBDFL_CENTRAL_URL", &closed)],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stderr.contains("organisation cache cannot be asked"),
        "{}",
        r.stderr
    );
    // TLS is required off this machine (refused before any connection).
    let r = b.env.run_with(
        &["push"],
        &[(
            "GBDFL_CENTRAL_URL",
            "postgresql://u@db.example.kz/gbdfl?sslmode=require",
        )],
    );
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("verify-full"), "{}", r.stderr);
    // A branch database with a key of its own: refused before writing.
    let stranger = Env::bare();
    let mut stranger = stranger;
    stranger.base_url = org.hq.base_url.clone();
    stranger.ok(&["init"]);
    let r = stranger.run_with(
        &["push"],
        &[
            (
                "GBDFL_CENTRAL_URL",
                &org.pg.url_for(&b.role, &b.password, "postgres"),
            ),
            ("GBDFL_BRANCH", &b.id),
        ],
    );
    assert_eq!(r.code, 8, "{}", r.stderr);
    assert!(r.stderr.contains("not the organisation's"), "{}", r.stderr);
    assert_eq!(central_counts(&org, &b.id).0, 0);
    // The reports head office does not have centrally say so.
    for args in [
        &["report", "audit", "--central"][..],
        &["report", "summary", "--central", "--html"][..],
    ] {
        let r = org.hq.fails(args, 2);
        assert!(
            r.stderr
                .contains("--central makes the expiring, lookups and summary"),
            "{}",
            r.stderr
        );
    }
    // A newer central schema: refused, nothing written.
    org.pg
        .psql("UPDATE gbdfl_meta SET value = '2' WHERE key = 'schema'");
    let r = b.env.fails(&["push"], 9);
    assert!(r.stderr.contains("newer"), "{}", r.stderr);
    org.pg
        .psql("UPDATE gbdfl_meta SET value = '1' WHERE key = 'schema'");
    // A central row the server's administrator altered (its answer time
    // moved) is refused where it is opened; the genuine one answers.
    let person = synthetic_iin(5);
    fetch(&b.env, &person);
    b.env.ok(&["push"]);
    org.pg.psql(
        "INSERT INTO gbdfl_lookups SELECT branch, id || 'x', subject, requested_at, answered_at + 1000, \
         operator, host, source, outcome, status, result, http_status, failure_type, iin_checked, \
         cached_from, key_version, iin_enc, session_enc, purpose_enc, detail_enc, response_enc, \
         summary_enc, reached, os_user FROM gbdfl_lookups WHERE branch = 'branch-0' AND status = 'VALID'",
    );
    let calls = org.hq.emu().calls();
    let r = fetch(&org.branches[1].env, &person);
    assert!(r.stderr.contains("was refused"), "{}", r.stderr);
    assert!(r.stderr.contains("organisation cache"), "{}", r.stderr);
    assert_eq!(org.hq.emu().calls(), calls, "no paid call");
    org.pg.psql("DELETE FROM gbdfl_lookups WHERE id LIKE '%x'");
    // Two pushes of one branch at once: the second is told to wait. The
    // first is held here by its lock, taken on a connection of the test's.
    let mut holder = postgres::Client::connect(&org.pg.admin_url(), postgres::NoTls).unwrap();
    holder
        .execute(
            "SELECT pg_advisory_lock(hashtext('gbdfl-push:branch-0'))",
            &[],
        )
        .unwrap();
    let r = b.env.fails(&["push"], 1);
    assert!(
        r.stderr.contains("another push of branch branch-0"),
        "{}",
        r.stderr
    );
    drop(holder);
    b.env.ok(&["push"]);
    assert_eq!(central_counts(&org, &b.id), local_counts(&b.env));
}

#[test]
fn the_server_files_hold_no_personal_data_in_plaintext() {
    let org = Org::new(2);
    let mut secrets: Vec<String> = Vec::new();
    for (i, b) in org.branches.iter().enumerate() {
        for n in 0..4 {
            let iin = synthetic_iin(100 + i as u32 * 4 + n);
            let s = session();
            b.env.ok(&[
                "fetch",
                &iin,
                "--session",
                &s,
                "--purpose",
                "loan for Жанибек",
            ]);
            let shown = b.env.ok(&["show", &iin, "--json"]);
            let v: Value = serde_json::from_str(&shown.stdout).unwrap();
            secrets.push(v["result_json"]["surname"].as_str().unwrap().to_owned());
            for d in v["result_json"]["documents"].as_array().unwrap() {
                secrets.push(d["number"].as_str().unwrap().to_owned());
            }
            secrets.push(iin);
            secrets.push(s.replace('-', ""));
            secrets.push(s);
        }
        b.env.ok(&["push"]);
    }
    secrets.push("Жанибек".into());
    org.pg.checkpoint();
    let mut files = Vec::new();
    walk(org.pg.data_dir(), &mut files);
    let mut scanned = 0u64;
    let mut operator_seen = false;
    for f in files {
        let Ok(bytes) = std::fs::read(&f) else {
            continue;
        };
        scanned += bytes.len() as u64;
        // The scan can fail: the plaintext operator column is there.
        operator_seen |= crate::harness::contains(&bytes, b"tester");
        for s in &secrets {
            assert!(
                !crate::harness::contains(&bytes, s.as_bytes()),
                "{s:?} in plaintext in {}",
                f.display()
            );
        }
    }
    assert!(scanned > 1_000_000, "the data directory was read");
    assert!(operator_seen, "the pushed rows are in the files scanned");
}

fn walk(dir: &std::path::Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            walk(&p, out);
        } else {
            out.push(p);
        }
    }
}

fn jitter_ms(round: u64, spread: u64) -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64;
    (nanos ^ round.wrapping_mul(0x9E37_79B9_7F4A_7C15)) % spread
}

/// A CA made here, and a certificate for `names` it signed.
fn server_pki(names: &[&str]) -> (String, String, String) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "gbdfl test CA");
    let ca_key = KeyPair::generate().unwrap();
    let ca_pem = ca.self_signed(&ca_key).unwrap().pem();
    let mut p =
        CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
    p.distinguished_name.push(DnType::CommonName, names[0]);
    let key = KeyPair::generate().unwrap();
    let cert = p.signed_by(&key, &Issuer::new(ca, ca_key)).unwrap();
    (ca_pem, cert.pem(), key.serialize_pem())
}

#[cfg(unix)]
#[test]
fn verify_full_checks_the_servers_certificate_and_its_name() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let org = Org::new(1);
    let b = &org.branches[0];
    fetch(&b.env, &synthetic_iin(21));
    // The server gets a certificate for `localhost` from a CA made here.
    let (ca_pem, cert_pem, key_pem) = server_pki(&["localhost"]);
    let data = org.pg.data_dir();
    let owner = std::fs::metadata(data).unwrap();
    for (name, text) in [("server.crt", &cert_pem), ("server.key", &key_pem)] {
        let path = data.join(name);
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::os::unix::fs::chown(&path, Some(owner.uid()), Some(owner.gid())).unwrap();
    }
    org.pg.psql("ALTER SYSTEM SET ssl = on");
    org.pg.psql("SELECT pg_reload_conf()");
    let ca = b.env.path().join("ca.pem");
    std::fs::write(&ca, &ca_pem).unwrap();
    // Another CA stands in for the system's trust store.
    let (other_pem, _, _) = server_pki(&["elsewhere"]);
    let system = b.env.path().join("system.pem");
    std::fs::write(&system, other_pem).unwrap();
    let url = |host: &str, extra: &str| {
        format!(
            "postgresql://{}:{}@{host}:{}/postgres?sslmode=verify-full{extra}",
            b.role,
            b.password,
            org.pg.port()
        )
    };
    let with = |url: String| {
        b.env.run_with(
            &["push"],
            &[
                ("GBDFL_CENTRAL_URL", url.as_str()),
                ("SSL_CERT_FILE", system.to_str().unwrap()),
            ],
        )
    };
    // A CA this machine does not trust: refused, nothing sent.
    let r = with(url("localhost", ""));
    assert_eq!(r.code, 13, "{}", r.stderr);
    assert!(r.stderr.contains("sslrootcert"), "{}", r.stderr);
    assert!(!r.stderr.contains(&b.password), "{}", r.stderr);
    assert_eq!(central_counts(&org, &b.id).0, 0);
    // Trusted, but reached by a name the certificate is not for.
    let ca_arg = format!("&sslrootcert={}", ca.display());
    let r = with(url("127.0.0.1", &ca_arg));
    assert_eq!(r.code, 13, "{}", r.stderr);
    assert_eq!(central_counts(&org, &b.id).0, 0);
    // Trusted and the right name: the push goes over TLS.
    let r = with(url("localhost", &ca_arg));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(central_counts(&org, &b.id), local_counts(&b.env));
}

#[test]
fn pull_readies_a_branch_for_days_offline_and_head_office_purges_centrally() {
    let org = Org::new(2);
    let (a, b) = (&org.branches[0], &org.branches[1]);
    let people: Vec<String> = (30..33).map(synthetic_iin).collect();
    for p in &people {
        fetch(&a.env, p);
    }
    a.env.ok(&["push", "--json"]);
    let r = b.env.ok(&["pull", "--json"]);
    let v: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["kept"], 3, "{v}");
    // Pulled again: nothing new.
    let r = b.env.ok(&["pull", "--json"]);
    let v: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(
        (v["kept"].as_u64(), v["skipped"].as_u64()),
        (Some(0), Some(3))
    );
    // The line is down: the branch answers from what it pulled, unpaid.
    let closed = "postgresql://nobody@127.0.0.1:9/postgres";
    for p in &people {
        let r = b.env.run_with(
            &["fetch", p, "--session", &session()],
            &[("GBDFL_CENTRAL_URL", closed)],
        );
        assert_eq!(r.code, 0, "{}", r.stderr);
        b.env.ok(&["show", p]);
    }
    assert_eq!(org.hq.emu().calls(), 3);
    b.env.ok(&["check"]);
    b.env.ok(&["audit", "verify"]);
    b.env.ok(&["push"]);

    // Head office: counts per branch, then a purge of every lookup.
    let r = org.hq.ok(&["central", "status", "--json"]);
    let v: Value = serde_json::from_str(&r.stdout).unwrap();
    let rows = v.as_array().unwrap();
    assert_eq!(rows.len(), 2, "{v}");
    let lookups: u64 = rows.iter().map(|r| r["lookups"].as_u64().unwrap()).sum();
    assert_eq!(lookups, local_counts(&a.env).0 + local_counts(&b.env).0);
    let r = org
        .hq
        .ok(&["central", "purge", "--older-than", "0s", "--json"]);
    let v: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["deleted"].as_u64(), Some(lookups), "{v}");
    assert_eq!(org.count("SELECT count(*) FROM gbdfl_lookups"), 0);
    assert_eq!(org.count("SELECT count(*) FROM gbdfl_purges"), 1);
    // Recorded in head office's own trail too; branches' trails stay.
    let r = org
        .hq
        .ok(&["audit", "log", "--action", "central purge", "--json"]);
    let records: Vec<String> = r
        .stdout
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap()["records"].to_string())
        .collect();
    assert_eq!(records.len(), 1, "{}", r.stdout);
    assert_eq!(records[0].trim_matches('"'), lookups.to_string());
    org.hq.ok(&["audit", "verify", "--central"]);
    // A branch cannot purge.
    let e = org
        .pg
        .psql_as(&a.role, &a.password, "DELETE FROM gbdfl_purges")
        .expect_err("a branch deletes nothing");
    assert!(e.contains("permission denied"), "{e}");
}

#[test]
fn batch_and_sync_ask_the_organisation_before_paying() {
    let org = Org::new(2);
    let (a, b) = (&org.branches[0], &org.branches[1]);
    let known: Vec<String> = (40..43).map(synthetic_iin).collect();
    for p in &known {
        fetch(&a.env, p);
    }
    a.env.ok(&["push"]);
    let calls = org.hq.emu().calls();
    // A batch of two people the organisation knows and one it does not:
    // one paid call.
    let new = synthetic_iin(43);
    let file = b.env.path().join("batch.csv");
    std::fs::write(
        &file,
        format!(
            "iin,session_id\n{},{}\n{},{}\n{new},{}\n",
            known[0],
            session(),
            known[1],
            session(),
            session()
        ),
    )
    .unwrap();
    b.env.ok(&["batch", file.to_str().unwrap()]);
    assert_eq!(org.hq.emu().calls(), calls + 1);
    // A request queued while the central store was out of reach is
    // answered from it by the next sync, unpaid.
    let file = b.env.path().join("later.csv");
    std::fs::write(
        &file,
        format!("iin,session_id\n{},{}\n", known[2], session()),
    )
    .unwrap();
    let closed = "postgresql://nobody@127.0.0.1:9/postgres";
    let r = b.env.run_with(
        &["batch", file.to_str().unwrap(), "--no-sync"],
        &[("GBDFL_CENTRAL_URL", closed)],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let queued = b.env.ok(&["queue", "--json"]);
    let v: Value = serde_json::from_str(&queued.stdout).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 1, "{v}");
    let r = b.env.ok(&["sync"]);
    assert!(
        r.stderr.contains("from the organisation cache"),
        "{}",
        r.stderr
    );
    assert_eq!(org.hq.emu().calls(), calls + 1, "sync paid for none");
    let queued = b.env.ok(&["queue", "--json"]);
    let v: Value = serde_json::from_str(&queued.stdout).unwrap();
    assert!(v.as_array().unwrap().is_empty(), "{v}");
    let r = b.env.ok(&["stats", "--json"]);
    let days: Value = serde_json::from_str(&r.stdout).unwrap();
    let from_org: u64 = days
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["from_org"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(from_org, 3, "{days}");
    b.env.ok(&["check"]);
    b.env.ok(&["audit", "verify"]);
}
