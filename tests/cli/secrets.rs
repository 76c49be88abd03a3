//! Secrets and the process (issue 7): a panic prints no personal data; the
//! API key and the master key are not on the command line of a running
//! gbdfl; no core dumps; everything gbdfl creates is owner-only.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::time::{Duration, Instant};

use gbdfl_emulator::{Faults, iins};

use crate::harness::{API_KEY, Env, session};

/// When the tests run as root, for whom file modes mean nothing, the
/// binary runs as `nobody` where a test needs the modes to count.
pub const NOBODY: u32 = 65534;

pub fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// Gives `dir` and the files in it to `uid`.
pub fn chown_tree(dir: &Path, uid: u32) {
    for entry in std::fs::read_dir(dir).unwrap() {
        std::os::unix::fs::chown(entry.unwrap().path(), Some(uid), Some(uid)).unwrap();
    }
    std::os::unix::fs::chown(dir, Some(uid), Some(uid)).unwrap();
}

/// Makes `cmd` run as `nobody` (call only as root, after [`chown_tree`]).
pub fn as_nobody(cmd: &mut std::process::Command) {
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setgroups(0, std::ptr::null()) != 0
                || libc::setgid(NOBODY) != 0
                || libc::setuid(NOBODY) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

#[test]
fn a_panic_prints_where_but_not_what() {
    let env = Env::bare();
    let payload = format!("record of {} Нурланов", iins::VALID);
    let r = env.run_with(&["config"], &[("GBDFL_TEST_PANIC", &payload)]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr
            .starts_with("gbdfl: internal error at src/process.rs:")
            && r.stderr.trim_end().ends_with("(a bug; please report it)"),
        "{}",
        r.stderr
    );
    assert_eq!(r.stderr.lines().count(), 1, "{}", r.stderr);
    assert!(!r.stderr.contains(iins::VALID) && !r.stderr.contains("Нурланов"));
    assert!(!r.stderr.contains("panicked") && !r.stderr.contains("RUST_BACKTRACE"));
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .permissions()
        .mode()
        & 0o777
}

#[test]
fn database_key_reports_and_backups_are_owner_only() {
    let env = Env::new();
    // A permissive umask in the caller's shell changes nothing.
    env.ok(&["fetch", iins::VALID, "--session", &session()]);
    let report = env.path().join("out").join("lookups.csv");
    env.ok(&["report", "lookups", "--out", report.to_str().unwrap()]);
    let backup = env.path().join("backup.db");
    env.ok(&["backup", "--out", backup.to_str().unwrap()]);
    let mut wal = env.db.clone().into_os_string();
    wal.push("-wal");
    let mut shm = env.db.clone().into_os_string();
    shm.push("-shm");
    for p in [&env.db, &env.key, &report, &backup] {
        assert_eq!(mode(p), 0o600, "{}", p.display());
    }
    for p in [Path::new(&wal), Path::new(&shm)] {
        if p.exists() {
            assert_eq!(mode(p), 0o600, "{}", p.display());
        }
    }
    assert_eq!(mode(&env.path().join("out")), 0o700);
    // Nothing else was left behind (no temp file of the report).
    let names: Vec<String> = std::fs::read_dir(env.path().join("out"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["lookups.csv"]);
}

#[test]
fn init_in_a_new_folder_creates_it_owner_only_whatever_the_umask() {
    let env = Env::bare();
    let dir = env.path().join("new").join("gbdfl");
    let db = dir.join("gbdfl.db");
    let key = dir.join("master.key");
    let mut cmd = env.command(&["init"]);
    cmd.env("GBDFL_DB", &db).env("GBDFL_KEY_FILE", &key);
    // SAFETY: umask is async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            libc::umask(0o000);
            Ok(())
        });
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(&db), 0o600);
    assert_eq!(mode(&key), 0o600);
}

/// While a fetch waits on a slow service, its command line holds neither
/// the API key nor the key file's contents, and it may not dump core.
#[test]
fn a_running_fetch_shows_no_secret_in_ps_and_dumps_no_core() {
    let env = Env::with_faults(Faults {
        latency_ms: 1500,
        ..Faults::default()
    });
    let mut cmd = env.command(&["fetch", iins::VALID, "--session", &session()]);
    // As root, run it as nobody: then /proc/PID/environ would belong to
    // nobody if the process were dumpable.
    if is_root() {
        chown_tree(env.path(), NOBODY);
        as_nobody(&mut cmd);
    }
    let mut child = cmd
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let proc_dir = Path::new("/proc").join(child.id().to_string());
    let started = Instant::now();
    while env.emu().calls() == 0 && started.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(env.emu().calls(), 1, "the fetch is waiting on the call");
    let cmdline = std::fs::read(proc_dir.join("cmdline")).unwrap();
    let cmdline = String::from_utf8_lossy(&cmdline);
    let key_file = std::fs::read_to_string(&env.key).unwrap();
    assert!(!cmdline.contains(API_KEY), "{cmdline}");
    assert!(!cmdline.contains(key_file.trim()), "{cmdline}");
    let limits = std::fs::read_to_string(proc_dir.join("limits")).unwrap();
    let core = limits
        .lines()
        .find(|l| l.starts_with("Max core file size"))
        .unwrap();
    assert!(
        core.split_whitespace().skip(4).take(2).all(|v| v == "0"),
        "{core}"
    );
    // Not dumpable: /proc/PID/environ (which holds GBDFL_API_KEY) belongs
    // to root, not to the user who runs gbdfl.
    let status = std::fs::read_to_string(proc_dir.join("status")).unwrap();
    let uid_line = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    let runs_as: u32 = uid_line.split_whitespace().nth(1).unwrap().parse().unwrap();
    assert_ne!(
        runs_as, 0,
        "the check means something only for a non-root gbdfl"
    );
    let environ = std::fs::metadata(proc_dir.join("environ")).unwrap();
    assert_eq!(std::os::unix::fs::MetadataExt::uid(&environ), 0);
    let done = child.wait().unwrap();
    if is_root() {
        chown_tree(env.path(), 0);
    }
    assert!(done.success());
}
