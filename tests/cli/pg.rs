//! A throwaway PostgreSQL cluster for the tests, and the tests of it.
//!
//! [`Cluster::start`] gives each test its own server, made with the
//! machine's own `initdb` and `pg_ctl` in a fresh temp dir: superuser
//! `gbdfl_admin` with a random password, scram-sha-256 for every
//! connection, listening on 127.0.0.1 only, on a port the system handed
//! out, fsync off. `initdb` runs once per server version; its result is
//! kept in the target dir and each cluster starts from a copy. Dropping
//! the `Cluster` (also when the test panics) stops the server at once and
//! deletes the dir. `initdb` and `postgres` refuse to run as root, so as
//! root the server's commands run as the `postgres` system user and the
//! dir is given to that user. Passwords reach `psql` through its
//! environment, never its command line.

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// The superuser `initdb` creates.
pub const ADMIN: &str = "gbdfl_admin";

/// One PostgreSQL server of one test, on 127.0.0.1.
pub struct Cluster {
    dir: tempfile::TempDir,
    data: PathBuf,
    bindir: PathBuf,
    port: u16,
    password: String,
    /// The uid and gid the server's commands run as: `postgres` when the
    /// tests run as root, none (this process's own) otherwise.
    server_user: Option<(u32, u32)>,
}

impl Cluster {
    /// A new cluster, initialised and running. Panics, with what
    /// PostgreSQL said, when it cannot be made.
    pub fn start() -> Cluster {
        let bindir = server_bindir();
        let server_user = if rustix::process::geteuid().is_root() {
            Some(postgres_user())
        } else {
            None
        };
        let template = template(&bindir, server_user);
        let dir = server_dir(server_user);
        let data = dir.path().join("data");
        copy_tree(&template.data, &data, server_user);
        let mut cluster = Cluster {
            dir,
            data,
            bindir,
            port: 0,
            password: template.password.clone(),
            server_user,
        };
        // Another process may take the port between our probe and the
        // server's bind: then try another one.
        for attempt in 1.. {
            cluster.port = free_port();
            let out = cluster.pg_ctl_start();
            if out.status.success() {
                break;
            }
            let log = cluster.log();
            if attempt < 5 && log.contains("could not bind") {
                continue;
            }
            panic!(
                "{}\n--- server log ---\n{log}",
                describe("pg_ctl start", &out)
            );
        }
        // Every cluster its own password, not the template's.
        let password = random_password();
        cluster.psql(&format!("ALTER ROLE {ADMIN} PASSWORD '{password}'"));
        cluster.password = password;
        cluster
    }

    /// The superuser's connection URL, database `postgres`.
    pub fn admin_url(&self) -> String {
        self.url_for(ADMIN, &self.password, "postgres")
    }

    /// A connection URL for `user` with `password` to database `db`, each
    /// percent-encoded.
    pub fn url_for(&self, user: &str, password: &str, db: &str) -> String {
        format!(
            "postgresql://{}:{}@127.0.0.1:{}/{}",
            percent_encode(user),
            percent_encode(password),
            self.port,
            percent_encode(db)
        )
    }

    /// The TCP port on 127.0.0.1 the server listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The cluster's data directory.
    pub fn data_dir(&self) -> &Path {
        &self.data
    }

    /// Runs `sql` as the superuser in database `postgres`; its output
    /// unaligned, without headers, one row a line. Panics on any error.
    pub fn psql(&self, sql: &str) -> String {
        self.psql_in("postgres", sql)
    }

    /// [`Cluster::psql`] in database `db`.
    pub fn psql_in(&self, db: &str, sql: &str) -> String {
        self.psql_as_in(ADMIN, &self.password, db, sql)
            .unwrap_or_else(|e| panic!("psql in {db}:\n{sql}\n--- stderr ---\n{e}"))
    }

    /// Runs `sql` as `user` in database `postgres`: its output, or what
    /// psql said when it failed (a refused login, an error in the SQL).
    pub fn psql_as(&self, user: &str, password: &str, sql: &str) -> Result<String, String> {
        self.psql_as_in(user, password, "postgres", sql)
    }

    /// [`Cluster::psql_as`] in database `db`.
    pub fn psql_as_in(
        &self,
        user: &str,
        password: &str,
        db: &str,
        sql: &str,
    ) -> Result<String, String> {
        psql_at(&self.bindir, self.port, user, password, db, sql)
    }

    /// Creates database `name`, owned by the superuser.
    pub fn create_database(&self, name: &str) {
        self.psql(&format!("CREATE DATABASE {}", quote_ident(name)));
    }

    /// Forces a checkpoint: everything committed is written to the data files.
    pub fn checkpoint(&self) {
        self.psql("CHECKPOINT");
    }

    /// Stops the server cleanly: sessions are ended, a shutdown checkpoint
    /// is written.
    pub fn stop(&self) {
        let out = self.pg_ctl_stop("fast");
        check("pg_ctl stop -m fast", &out);
    }

    /// Stops the server the way a crash would: no checkpoint, the next start
    /// recovers from the WAL.
    pub fn kill(&self) {
        let out = self.pg_ctl_stop("immediate");
        check("pg_ctl stop -m immediate", &out);
    }

    /// Starts the stopped (or killed) server again, on the same port.
    pub fn start_again(&self) {
        let out = self.pg_ctl_start();
        if !out.status.success() {
            panic!(
                "{}\n--- server log ---\n{}",
                describe("pg_ctl start", &out),
                self.log()
            );
        }
    }

    fn pg_ctl_start(&self) -> Output {
        let sock = self.dir.path().join("sock");
        self.server_command("pg_ctl")
            .arg("-D")
            .arg(&self.data)
            .arg("-o")
            .arg(format!(
                "-c listen_addresses=127.0.0.1 -p {} -k {} -c fsync=off",
                self.port,
                sock.display()
            ))
            .arg("-l")
            .arg(self.dir.path().join("log"))
            .args(["-w", "start"])
            .output()
            .expect("running pg_ctl start")
    }

    fn pg_ctl_stop(&self, mode: &str) -> Output {
        self.server_command("pg_ctl")
            .arg("-D")
            .arg(&self.data)
            .args(["-m", mode, "-w", "stop"])
            .output()
            .expect("running pg_ctl stop")
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("log")).unwrap_or_default()
    }

    fn server_command(&self, program: &str) -> Command {
        server_command(&self.bindir, program, self.dir.path(), self.server_user)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // Errors are ignored: the server may be stopped already, and the
        // TempDir deletes the dir after this.
        let _ = self.pg_ctl_stop("immediate");
    }
}

/// A command of the server's, run as the server's user, in `dir`, with
/// none of the caller's environment (no PGDATA, PGPORT...).
fn server_command(
    bindir: &Path,
    program: &str,
    dir: &Path,
    server_user: Option<(u32, u32)>,
) -> Command {
    let mut cmd = Command::new(bindir.join(program));
    cmd.env_clear()
        .env("PATH", "/usr/bin:/bin")
        .current_dir(dir)
        .stdin(Stdio::null());
    if let Some((uid, gid)) = server_user {
        // std drops the supplementary groups, then sets gid and uid.
        cmd.uid(uid).gid(gid);
    }
    cmd
}

/// A new owner-only temp dir with an empty `sock` folder, both the server
/// user's. It is in /dev/shm when that has room: a cluster is a thousand
/// files, and creating them on a disk is slow. Otherwise, as
/// root, in /tmp, which the postgres user can reach (a TMPDIR under /root
/// it could not). Either path is short enough for the socket's path.
fn server_dir(server_user: Option<(u32, u32)>) -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    let shm_has_room =
        rustix::fs::statvfs(shm).is_ok_and(|fs| fs.f_bavail.saturating_mul(fs.f_frsize) >= 2 << 30);
    let mut bases = Vec::new();
    if shm_has_room {
        bases.push(shm.to_path_buf());
    }
    bases.push(if server_user.is_some() {
        PathBuf::from("/tmp")
    } else {
        std::env::temp_dir()
    });
    let mut tried = Vec::new();
    let dir = bases
        .iter()
        .find_map(|base| {
            tempfile::Builder::new()
                .prefix("gbdfl-pg-")
                .tempdir_in(base)
                .map_err(|e| tried.push(format!("{}: {e}", base.display())))
                .ok()
        })
        .unwrap_or_else(|| panic!("no temp dir for PostgreSQL: {}", tried.join("; ")));
    let sock = dir.path().join("sock");
    std::fs::create_dir(&sock).expect("the socket dir");
    if let Some((uid, gid)) = server_user {
        for path in [dir.path(), &sock] {
            std::os::unix::fs::chown(path, Some(uid), Some(gid))
                .unwrap_or_else(|e| panic!("giving {} to postgres: {e}", path.display()));
        }
    }
    dir
}

/// An initialised data directory that every cluster starts as a copy of,
/// and its superuser's password.
struct Template {
    data: PathBuf,
    password: String,
}

/// The template of this PostgreSQL version, made by `initdb` the first
/// time and kept in the target dir: copying it is much quicker than
/// running `initdb` again.
fn template(bindir: &Path, server_user: Option<(u32, u32)>) -> &'static Template {
    static TEMPLATE: std::sync::OnceLock<Template> = std::sync::OnceLock::new();
    TEMPLATE.get_or_init(|| {
        let version = server_command(bindir, "postgres", Path::new("/"), server_user)
            .arg("--version")
            .output()
            .expect("running postgres --version");
        check("postgres --version", &version);
        let version: String = String::from_utf8_lossy(&version.stdout)
            .trim()
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '.' {
                    c
                } else {
                    '-'
                }
            })
            .collect();
        let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
        // Named after everything that shapes it: a new initdb option or
        // another server version makes a new template.
        let kept = tmp.join(format!("pg-template-1-{version}"));
        let template = |dir: &Path| -> Option<Template> {
            let password = std::fs::read_to_string(dir.join("password")).ok()?;
            dir.join("data/PG_VERSION").is_file().then(|| Template {
                data: dir.join("data"),
                password,
            })
        };
        if let Some(t) = template(&kept) {
            return t;
        }

        let scratch = server_dir(server_user);
        let password = random_password();
        let pwfile = scratch.path().join("pwfile");
        std::fs::write(&pwfile, format!("{password}\n")).expect("the password file");
        if let Some((uid, gid)) = server_user {
            std::os::unix::fs::chown(&pwfile, Some(uid), Some(gid)).expect("chown the pwfile");
        }
        // --no-sync: the copies run with fsync=off anyway.
        let initdb = server_command(bindir, "initdb", scratch.path(), server_user)
            .arg("-D")
            .arg(scratch.path().join("data"))
            .arg("--auth=scram-sha-256")
            .arg(format!("--pwfile={}", pwfile.display()))
            .args(["-U", ADMIN, "--encoding=UTF8", "--no-locale", "--no-sync"])
            .output()
            .expect("running initdb");
        check("initdb", &initdb);

        // Made aside and renamed into place, so that a test binary running
        // at the same time sees the whole template or none.
        std::fs::create_dir_all(tmp).expect("the target's tmp dir");
        let stage = tempfile::Builder::new()
            .prefix("pg-template-stage-")
            .tempdir_in(tmp)
            .expect("a staging dir");
        copy_tree(
            &scratch.path().join("data"),
            &stage.path().join("data"),
            None,
        );
        std::fs::write(stage.path().join("password"), &password).expect("the password");
        let stage = stage.keep();
        if std::fs::rename(&stage, &kept).is_err() {
            let _ = std::fs::remove_dir_all(&stage);
        }
        template(&kept).unwrap_or_else(|| panic!("no template in {}", kept.display()))
    })
}

/// Copies the data directory `from` to `to`: folders owner-only, files
/// with their modes, all given to `owner` when there is one.
fn copy_tree(from: &Path, to: &Path, owner: Option<(u32, u32)>) {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(to)
        .unwrap_or_else(|e| panic!("creating {}: {e}", to.display()));
    for entry in std::fs::read_dir(from).expect("reading the template") {
        let entry = entry.expect("reading the template");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("a file type").is_dir() {
            copy_tree(&entry.path(), &target, owner);
        } else {
            std::fs::copy(entry.path(), &target)
                .unwrap_or_else(|e| panic!("copying {}: {e}", entry.path().display()));
        }
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::chown(&target, Some(uid), Some(gid)).expect("chown");
        }
    }
    if let Some((uid, gid)) = owner {
        std::os::unix::fs::chown(to, Some(uid), Some(gid)).expect("chown");
    }
}

/// Runs `sql` through psql on 127.0.0.1:`port`, the password in psql's
/// environment, the SQL on its stdin (so that ON_ERROR_STOP stops at the
/// first failing statement).
fn psql_at(
    bindir: &Path,
    port: u16,
    user: &str,
    password: &str,
    db: &str,
    sql: &str,
) -> Result<String, String> {
    let psql = [bindir.join("psql"), PathBuf::from("/usr/bin/psql")]
        .into_iter()
        .find(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from("psql"));
    let mut child = Command::new(&psql)
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("PGPASSWORD", password)
        .env("PGSSLMODE", "disable")
        .env("PGGSSENCMODE", "disable")
        .env("PGCONNECT_TIMEOUT", "10")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-U",
            user,
            "-d",
            db,
        ])
        .args([
            "-v",
            "ON_ERROR_STOP=1",
            "-X",
            "-A",
            "-t",
            "-q",
            "-w",
            "-f",
            "-",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("running {}: {e}", psql.display()));
    // Written from a thread, so that a long script and a long answer
    // cannot wait for each other. psql may refuse the login before it
    // reads: a broken pipe is not the error then, what psql says is.
    let mut stdin = child.stdin.take().unwrap();
    let sql = sql.to_string();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(sql.as_bytes());
    });
    let out = child.wait_with_output().expect("waiting for psql");
    writer.join().expect("writing to psql");
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout)
            .trim_end_matches('\n')
            .to_string())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// The directory of `initdb`, `pg_ctl` and `postgres`: `pg_config
/// --bindir`, else the newest /usr/lib/postgresql/*/bin, else where the
/// `initdb` on PATH really is.
fn server_bindir() -> PathBuf {
    let has_server = |dir: &Path| dir.join("initdb").is_file() && dir.join("pg_ctl").is_file();
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output()
        && out.status.success()
    {
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if has_server(&dir) {
            return dir;
        }
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse().ok()?;
            Some((version, e.path().join("bin")))
        })
        .filter(|(_, bin)| has_server(bin))
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return bin;
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        if let Ok(initdb) = std::fs::canonicalize(dir.join("initdb"))
            && let Some(bin) = initdb.parent()
            && has_server(bin)
        {
            return bin.to_path_buf();
        }
    }
    panic!(
        "no PostgreSQL server binaries (initdb, pg_ctl) found: not in `pg_config --bindir`, \
         /usr/lib/postgresql/*/bin or PATH. Install them: apt-get install -y postgresql"
    )
}

/// The uid and gid of the `postgres` system user.
fn postgres_user() -> (u32, u32) {
    // SAFETY: getpwnam with a NUL-terminated name; the fields are read
    // before any other call that could reuse its static buffer.
    let ids = unsafe {
        let pw = libc::getpwnam(c"postgres".as_ptr());
        (!pw.is_null()).then(|| ((*pw).pw_uid, (*pw).pw_gid))
    };
    ids.expect(
        "the tests run as root, and initdb and postgres refuse root, so the server runs as \
         the `postgres` system user, which does not exist here. Debian's `postgresql` \
         package creates it: apt-get install -y postgresql",
    )
}

/// A loopback port nothing listened on a moment ago.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a loopback port")
        .port()
}

/// 32 hex digits from the system's random source.
fn random_password() -> String {
    let mut bytes = [0u8; 16];
    std::io::Read::read_exact(
        &mut std::fs::File::open("/dev/urandom").expect("/dev/urandom"),
        &mut bytes,
    )
    .expect("reading /dev/urandom");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Every byte but ALPHA / DIGIT / "-" / "." / "_" / "~" as %XX: safe in any
/// part of a URL.
fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn describe(what: &str, out: &Output) -> String {
    format!(
        "{what} failed ({})\n--- stdout ---\n{}\n--- stderr ---\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn check(what: &str, out: &Output) {
    if !out.status.success() {
        panic!("{}", describe(what, out));
    }
}

#[test]
fn a_table_survives_a_restart() {
    let pg = Cluster::start();
    pg.create_database("branch office");
    pg.psql_in(
        "branch office",
        "CREATE TABLE people (id int PRIMARY KEY, name text NOT NULL);
         INSERT INTO people VALUES (1, 'Айгерим'), (2, 'Ержан');",
    );
    pg.stop();
    let down = pg
        .psql_as(ADMIN, &pg.password, "SELECT 1")
        .expect_err("a stopped server answers nothing");
    assert!(down.contains("127.0.0.1"), "{down}");
    pg.start_again();
    assert_eq!(
        pg.psql_in("branch office", "SELECT id, name FROM people ORDER BY id"),
        "1|Айгерим\n2|Ержан"
    );
    assert_eq!(pg.psql("SHOW server_encoding"), "UTF8");
}

#[test]
fn committed_rows_survive_a_kill() {
    let pg = Cluster::start();
    assert!(pg.data_dir().join("PG_VERSION").is_file());
    pg.psql("CREATE TABLE t (n int); INSERT INTO t VALUES (1);");
    pg.checkpoint();
    // Committed after the checkpoint: only the WAL has it.
    pg.psql("INSERT INTO t VALUES (2);");
    pg.kill();
    pg.start_again();
    assert_eq!(pg.psql("SELECT n FROM t ORDER BY n"), "1\n2");
}

#[test]
fn a_wrong_password_is_refused() {
    let pg = Cluster::start();
    pg.psql("CREATE ROLE clerk LOGIN PASSWORD 'right horse battery'");
    assert_eq!(
        pg.psql_as("clerk", "right horse battery", "SELECT current_user"),
        Ok("clerk".to_string())
    );
    for (user, password) in [("clerk", "wrong"), (ADMIN, "wrong"), (ADMIN, "")] {
        let err = pg
            .psql_as(user, password, "SELECT 1")
            .expect_err("a wrong password is refused");
        assert!(
            err.contains("password authentication failed") || err.contains("no password supplied"),
            "{user}/{password:?}: {err}"
        );
    }
    // A failing statement is an error too, not an empty answer.
    let err = pg
        .psql_as("clerk", "right horse battery", "SELECT * FROM nowhere")
        .expect_err("no such table");
    assert!(err.contains("nowhere"), "{err}");
}

#[test]
fn the_urls_name_working_logins() {
    let pg = Cluster::start();
    let admin = url::Url::parse(&pg.admin_url()).expect("the admin URL parses");
    assert_eq!(admin.scheme(), "postgresql");
    assert_eq!(admin.host_str(), Some("127.0.0.1"));
    assert_eq!(admin.port(), Some(pg.port()));
    assert_eq!(admin.username(), ADMIN);
    assert_eq!(admin.path(), "/postgres");
    assert_eq!(
        pg.psql_as(ADMIN, admin.password().unwrap(), "SELECT current_user"),
        Ok(ADMIN.to_string())
    );

    // A name and a password with the characters a URL reserves.
    let (user, password, db) = ("o'brien@kz", "p@ss:w/rd%?#", "desk 1/2");
    pg.psql(&format!(
        "CREATE ROLE {} LOGIN PASSWORD '{}'",
        quote_ident(user),
        password.replace('\'', "''")
    ));
    pg.create_database(db);
    let url = url::Url::parse(&pg.url_for(user, password, db)).expect("the URL parses");
    let decode = |s: &str| {
        url::form_urlencoded::parse(format!("x={}", s.replace('+', "%2B")).as_bytes())
            .next()
            .unwrap()
            .1
            .into_owned()
    };
    let (u, p, d) = (
        decode(url.username()),
        decode(url.password().unwrap()),
        decode(&url.path()[1..]),
    );
    assert_eq!((u.as_str(), p.as_str(), d.as_str()), (user, password, db));
    assert_eq!(
        pg.psql_as_in(
            &u,
            &p,
            &d,
            "SELECT current_user || ' ' || current_database()"
        ),
        Ok(format!("{user} {db}"))
    );
}

#[test]
fn a_panicking_test_leaves_no_server_and_no_dir() {
    let (tx, rx) = std::sync::mpsc::channel();
    let test = std::thread::spawn(move || {
        let pg = Cluster::start();
        tx.send((
            pg.bindir.clone(),
            pg.port,
            pg.password.clone(),
            pg.dir.path().to_path_buf(),
        ))
        .unwrap();
        panic!("the test fails with its cluster running");
    });
    assert!(test.join().is_err());
    let (bindir, port, password, dir) = rx.recv().unwrap();
    assert!(!dir.exists(), "{} is left behind", dir.display());
    // Another test's server may have the port by now, but not this password.
    let gone = psql_at(&bindir, port, ADMIN, &password, "postgres", "SELECT 1")
        .expect_err("the server is stopped");
    assert!(!gone.is_empty());
}
