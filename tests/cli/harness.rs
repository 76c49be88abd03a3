//! The one harness of the integration tests: a temp dir, the real binary
//! from CARGO_BIN_EXE_gbdfl with a cleared environment, the built-in
//! emulator on 127.0.0.1:0, and on failure the command, stdout, stderr and
//! exit code.

use std::path::{Path, PathBuf};
use std::process::Command;

use gbdfl_emulator::{Emulator, EmulatorConfig, Faults};

pub const API_KEY: &str = "test-organisation-api-key-0123456789abcdef0123456789";

/// A service URL on a loopback port nothing listens on: one this test
/// was given by the system and closed again, not a port assumed closed.
pub fn closed_url() -> String {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a loopback port")
        .port();
    format!("http://127.0.0.1:{port}/api/v1/backend/gbdfl/")
}

/// What a run of the binary gave.
pub struct Run {
    pub cmdline: String,
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    fn describe(&self) -> String {
        format!(
            "command: {}\nexit code: {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.cmdline, self.code, self.stdout, self.stderr
        )
    }
}

/// A fresh folder with a database path, a key path and (optionally) an emulator.
pub struct Env {
    pub dir: tempfile::TempDir,
    pub db: PathBuf,
    pub key: PathBuf,
    pub emulator: Option<Emulator>,
    pub base_url: String,
    pub extra_env: Vec<(String, String)>,
}

impl Env {
    /// A folder with nothing in it yet, and no emulator.
    pub fn bare() -> Env {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = dir.path().join("gbdfl.db");
        let key = dir.path().join("master.key");
        // GBDFL_CONFIG names this file, and a named config file must exist.
        std::fs::write(dir.path().join("config.toml"), "").expect("empty config");
        Env {
            dir,
            db,
            key,
            emulator: None,
            base_url: closed_url(),
            extra_env: Vec::new(),
        }
    }

    /// An initialised database and an emulator with no faults.
    pub fn new() -> Env {
        Env::with_faults(Faults::default())
    }

    /// An initialised database and an emulator with the given faults.
    pub fn with_faults(faults: Faults) -> Env {
        let mut env = Env::bare();
        let emu = Emulator::start(
            "127.0.0.1:0",
            EmulatorConfig {
                api_key: Some(API_KEY.into()),
                today: None,
                faults,
            },
        )
        .expect("emulator starts on loopback");
        env.base_url = emu.url();
        env.emulator = Some(emu);
        env.ok(&["init"]);
        env
    }

    pub fn emu(&self) -> &Emulator {
        self.emulator.as_ref().expect("this Env has an emulator")
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Runs the binary with a cleared environment plus this Env's settings.
    pub fn run(&self, args: &[&str]) -> Run {
        self.run_with(args, &[])
    }

    pub fn run_with(&self, args: &[&str], env: &[(&str, &str)]) -> Run {
        let mut cmd = self.command(args);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = cmd.output().expect("run gbdfl binary");
        Run {
            cmdline: format!("gbdfl {}", args.join(" ")),
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// The command `run` would run, for tests that spawn and kill it.
    pub fn command(&self, args: &[&str]) -> Command {
        let bin = env!("CARGO_BIN_EXE_gbdfl");
        let mut cmd = Command::new(bin);
        cmd.env_clear()
            .current_dir(self.dir.path())
            .env("GBDFL_DB", &self.db)
            .env("GBDFL_KEY_FILE", &self.key)
            .env("GBDFL_CONFIG", self.dir.path().join("config.toml"))
            .env("GBDFL_BASE_URL", &self.base_url)
            .env("GBDFL_API_KEY", API_KEY)
            .env("GBDFL_OPERATOR", "tester")
            .env("NO_COLOR", "1")
            .args(args);
        for (k, v) in &self.extra_env {
            cmd.env(k, v);
        }
        cmd
    }

    /// Runs and asserts exit code 0.
    pub fn ok(&self, args: &[&str]) -> Run {
        let r = self.run(args);
        assert_eq!(r.code, 0, "expected success\n{}", r.describe());
        r
    }

    /// Runs with these variables set and asserts exit code 0.
    pub fn ok_with(&self, args: &[&str], env: &[(&str, &str)]) -> Run {
        let r = self.run_with(args, env);
        assert_eq!(r.code, 0, "expected success\n{}", r.describe());
        r
    }

    /// Runs and asserts the given exit code.
    pub fn fails(&self, args: &[&str], code: i32) -> Run {
        let r = self.run(args);
        assert_eq!(r.code, code, "expected exit code {code}\n{}", r.describe());
        r
    }

    /// Bytes of the database file and its WAL, for scanning.
    pub fn db_bytes(&self) -> Vec<u8> {
        let mut all = std::fs::read(&self.db).unwrap_or_default();
        let mut wal = self.db.clone().into_os_string();
        wal.push("-wal");
        all.extend(std::fs::read(PathBuf::from(wal)).unwrap_or_default());
        all
    }
}

/// A fixture IIN of the emulator by its outcome label.
pub fn fixture(outcome: &str) -> &'static str {
    gbdfl_emulator::fixtures()
        .iter()
        .find(|f| f.outcome == outcome)
        .unwrap_or_else(|| panic!("no emulator fixture with outcome {outcome:?}"))
        .iin
}

/// A fresh session id.
pub fn session() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// A valid IIN that is not a fixture: the emulator makes up a person for it.
pub fn synthetic_iin(n: u32) -> String {
    (0..)
        .filter_map(|i| {
            gbdfl_core::iin::complete(&format!(
                "8805{:02}4{:04}",
                10 + n % 18,
                (n * 100 + i) % 10_000
            ))
        })
        .find(|iin| !gbdfl_emulator::fixtures().iter().any(|f| f.iin == iin))
        .expect("some prefix has a check digit")
}

/// Whether `needle` occurs in `hay`.
pub fn contains(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && memchr::memmem::find(hay, needle).is_some()
}
