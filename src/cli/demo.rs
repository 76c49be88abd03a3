//! `gbdfl demo`: the main job end to end, with no set-up and no network.
//!
//! It starts the emulator in-process on a loopback port, makes a fresh
//! database and key in a folder it names, fetches a dozen subjects with
//! varied outcomes, shows one, fetches it again to show the cache answering
//! with no paid call, queues two requests while the line is down and syncs
//! them, then runs the real binary for what compliance staff and auditors
//! use: the expiring table, two CSV reports, and the audit trail's check.
//! It ends with what to try next.
//!
//! Rules it keeps: every lookup and display is audited as the commands
//! themselves audit it (the later steps *are* those commands, run on the
//! demo's database); the emulator's calendar and the `--as-of` date are
//! fixed ([`DEMO_TODAY`]), so the output reads the same every day apart from
//! times, ids and paths (a golden test holds it).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;

use gbdfl_client::{ApiKey, Client, ClientConfig};
use gbdfl_core::clock::Clock;
use gbdfl_core::iin::Iin;
use gbdfl_emulator::{Emulator, EmulatorConfig, Faults, iins};
use gbdfl_report::render;
use gbdfl_service::lookup::{self, Asker, FetchRequest, Fetched, SessionId};
use gbdfl_store::Store;
use gbdfl_store::crypto::MasterKey;
use gbdfl_store::keyfile;

/// Prints a line; a closed pipe ends the demo quietly (see `cli::out`).
macro_rules! say {
    ($($t:tt)*) => { super::out(&format!("{}\n", format_args!($($t)*)))? };
}

/// Run the main job end to end against the built-in emulator (no set-up, no network).
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Folder for the demo database and key [default: a new folder under the system temp dir]
    #[arg(long, value_name = "PATH")]
    pub dir: Option<PathBuf>,
}

const DEMO_API_KEY: &str = "demo-organisation-api-key-not-a-real-one-0000000000";

/// The emulator's "today" and the reports' `--as-of` date: fixed, so the
/// expiry dates and days left read the same on every run.
pub const DEMO_TODAY: &str = "2026-06-01";

/// Who the demo's audit entries name.
const OPERATOR: &str = "demo-user";

/// The purpose the demo's lookups record.
const PURPOSE: &str = "gbdfl demo";

/// The fixture subjects the demo looks up: varied outcomes.
const SUBJECTS: &[&str] = &[
    iins::VALID,
    iins::DECEASED,
    iins::EXPIRING_SOON,
    iins::PENDING_THEN_VALID,
    iins::INVALID,
    iins::NOT_FOUND,
    iins::FACE2FACE_FAILED,
    iins::SERVICE_ERROR,
    iins::NO_SUBSCRIPTION,
    iins::GARBAGE_HTML,
];

fn fresh_dir(arg: Option<PathBuf>, clock: &dyn Clock) -> anyhow::Result<PathBuf> {
    let dir = match arg {
        Some(d) => d,
        None => std::env::temp_dir().join(format!(
            "gbdfl-demo-{}",
            clock.local_now().format("%Y%m%d-%H%M%S-%3f")
        )),
    };
    if dir.join("gbdfl.db").exists() || dir.join("master.key").exists() {
        anyhow::bail!(
            "{} already holds a gbdfl database or key; the demo wants a fresh folder: pass another --dir",
            dir.display()
        );
    }
    gbdfl_core::fsutil::create_private_dir(&dir)
        .with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}

fn line(iin: &str, fetched: &Fetched) -> String {
    // Demo subjects are fixtures and made-up people, so their IINs are shown
    // in full for copying into the commands suggested at the end.
    let (what, note) = match fetched {
        Fetched::Cached { .. } => (
            "VALID".to_owned(),
            "from the cache, no paid call".to_owned(),
        ),
        Fetched::Answered { response, .. } => {
            let status = response
                .status
                .as_ref()
                .map(|s| s.to_string())
                .unwrap_or_default();
            let note = match (&response.result_json, &response.failure_reason) {
                (Some(p), _) => p.full_name(),
                (None, Some(f)) => f.to_string(),
                _ => String::new(),
            };
            (status, note)
        }
        Fetched::Refused {
            http_status,
            message,
            ..
        } => (format!("HTTP {http_status}"), message.clone()),
        Fetched::Unavailable { message, .. } => ("UNREACHABLE".to_owned(), message.clone()),
        Fetched::Garbled { reason, .. } => ("GARBLED".to_owned(), reason.clone()),
        Fetched::NetworkConfig { message, .. } => (fetched.label(), message.clone()),
        Fetched::Busy { .. } | Fetched::InDoubt { .. } | Fetched::Expired { .. } => {
            (fetched.label(), String::new())
        }
    };
    let source = match fetched {
        Fetched::Unavailable { .. } => "queued",
        f if f.called_service() => "paid call",
        _ => "cache",
    };
    format!("  {iin}  {what:<15} {source:<10} {note}\n")
}

/// Retries in the demo come after a tenth of a second, not seconds, so a
/// request queued while the line was down is due again when the line is back.
fn backoff() -> gbdfl_service::sync::Backoff {
    gbdfl_service::sync::Backoff {
        base: Duration::from_millis(100),
        cap: Duration::from_secs(1),
        max_attempts: 5,
    }
}

/// The demo's database and client, and how it fetches: as `gbdfl fetch`
/// does, audited.
struct Demo {
    store: Store,
    client: Client,
    host: String,
}

impl Demo {
    /// A fresh key and encrypted database in `dir`, and a client of the emulator.
    fn create(dir: &Path, emu: &Emulator, clock: Arc<dyn Clock>) -> anyhow::Result<Demo> {
        let (db_path, key_path) = (dir.join("gbdfl.db"), dir.join("master.key"));
        let key = MasterKey::generate()?;
        keyfile::create(&key_path, &key)?;
        let (store, _) = Store::init_with(&db_path, &key, Arc::clone(&clock))?;
        say!(
            "Created an encrypted database {} and its key {}\n",
            db_path.display(),
            key_path.display()
        );

        let client = Client::new(
            &ClientConfig {
                base_url: emu.url(),
                connect_timeout: Duration::from_secs(5),
                timeout: Duration::from_secs(30),
                max_body_bytes: 10 * 1024 * 1024,
                network: Default::default(),
            },
            ApiKey::new(DEMO_API_KEY.into()),
        )?
        .with_clock(clock);
        let host = gethostname::gethostname().to_string_lossy().into_owned();
        Ok(Demo {
            store,
            client,
            host,
        })
    }

    fn audit_entry(&self, command: &str, iin: &Iin) -> gbdfl_store::AuditEntry {
        gbdfl_store::AuditEntry {
            command: command.into(),
            operator: OPERATOR.into(),
            host: self.host.clone(),
            subject: Some(self.store.subject_of(iin)),
            purpose: Some(PURPOSE.into()),
            os_user: Some(gbdfl_core::os_user::described().to_owned()),
            ..Default::default()
        }
    }

    /// An entry for a command about no one person (`queue drop`, `sync`).
    fn command_entry(&self, command: &str) -> gbdfl_store::AuditEntry {
        gbdfl_store::AuditEntry {
            command: command.into(),
            operator: OPERATOR.into(),
            host: self.host.clone(),
            os_user: Some(gbdfl_core::os_user::described().to_owned()),
            ..Default::default()
        }
    }

    /// Each fetch is audited as `gbdfl fetch` audits it: with its lookup, in
    /// the same transaction, or on its own when no lookup was recorded.
    fn fetch(&self, iin: &Iin, session: &SessionId) -> Result<Fetched, gbdfl_store::StoreError> {
        let entry = self.audit_entry("fetch", iin);
        let attempt = lookup::fetch(
            &self.store,
            &self.client,
            &FetchRequest {
                iin,
                session,
                asker: Asker {
                    operator: OPERATOR,
                    host: &self.host,
                    purpose: Some(PURPOSE),
                },
                max_age: Duration::from_secs(30 * 86_400),
                force: false,
                audit: Some(entry.clone()),
            },
            &backoff(),
            None,
        )?;
        if attempt.fetched.id().is_none() {
            self.store.append_audit(&entry)?;
        }
        Ok(attempt.fetched)
    }

    /// [`Demo::fetch`] with a new session.
    fn fetch_new(&self, iin: &Iin) -> anyhow::Result<Fetched> {
        Ok(self.fetch(iin, &SessionId::parse(&uuid::Uuid::new_v4().to_string())?)?)
    }
}

/// The first IIN with this prefix that passes the check digit.
fn made_up(prefix: &str) -> Option<String> {
    (0..1000).find_map(|n| gbdfl_core::iin::complete(&format!("{prefix}{n:04}")))
}

/// The line drops (the emulator answers 503): two fetches are queued; the
/// line comes back and `sync` sends them, each once.
fn offline(demo: &Demo, emu: &Emulator) -> anyhow::Result<()> {
    drop_leftovers(demo)?;
    say!("\nThe line drops (the emulator answers HTTP 503 from now on):");
    emu.set_faults(Faults {
        fail_first: u32::MAX,
        ..Faults::default()
    });
    let calls_before = emu.calls();
    let mut text = String::new();
    let mut queued = Vec::new();
    for p in ["7703214", "8811046"] {
        let Some(iin_text) = made_up(p) else {
            continue;
        };
        let iin = Iin::parse(&iin_text)?;
        let fetched = demo.fetch_new(&iin)?;
        text.push_str(&line(&iin_text, &fetched));
        queued.push(iin);
    }
    super::out(&text)?;
    let waiting = demo.store.queue_items()?;
    say!("  Both wait in the encrypted queue ($ gbdfl queue):");
    let table: String = render::queue(&waiting, false)
        .lines()
        .map(|l| format!("  {l}\n"))
        .collect();
    super::out(&table)?;

    emu.set_faults(Faults::default());
    sync_back(demo)?;
    say!(
        "  {} requests left in the queue; the service got {} calls for {} requests: one each while the line was down (queued), then one each.",
        demo.store.queue_items()?.len(),
        emu.calls() - calls_before,
        queued.len()
    );
    Ok(())
}

/// The fixture requests still queued from the first fetches are dropped,
/// so the queue shows only the two the dropped line leaves.
fn drop_leftovers(demo: &Demo) -> anyhow::Result<()> {
    let audit = demo.command_entry("queue drop");
    let leftovers = demo.store.queue_items()?;
    if !leftovers.is_empty() {
        say!(
            "\n{} fixture requests above stay in the queue (SERVICE_ERROR and the subscription error wait for `gbdfl sync`; the garbled answer is IN_DOUBT: it may have been billed, so only the operator sends it again); the demo drops them ($ gbdfl queue drop HANDLE).",
            leftovers.len()
        );
        for q in &leftovers {
            demo.store.drop_item(&q.id, &audit)?;
        }
    }
    Ok(())
}

/// `gbdfl sync` once the line is back: each queued request sent once.
fn sync_back(demo: &Demo) -> anyhow::Result<()> {
    say!("\nThe line is back: $ gbdfl sync");
    let opts = gbdfl_service::sync::Options {
        jobs: 4,
        backoff: backoff(),
        resend_in_doubt: false,
        max_wait: Duration::from_secs(30),
        only: None,
        on_wait: None,
        audit: demo.command_entry("sync"),
    };
    let report = gbdfl_service::sync::run(&demo.store, &demo.client, &opts, &|_| {})?;
    // By IIN, not in the order the parallel calls ended: the same every run.
    let mut ends: Vec<_> = report.calls.iter().collect();
    ends.sort_by(|a, b| a.item.iin.as_str().cmp(b.item.iin.as_str()));
    let mut text = String::new();
    for end in ends {
        text.push_str(&line(end.item.iin.as_str(), &end.fetched));
    }
    super::out(&text)
}

pub fn run(args: Args, clock: Arc<dyn Clock>) -> anyhow::Result<()> {
    let dir = fresh_dir(args.dir, clock.as_ref())?;
    let today =
        chrono::NaiveDate::parse_from_str(DEMO_TODAY, "%Y-%m-%d").expect("DEMO_TODAY is a date");
    let emu = Emulator::start(
        "127.0.0.1:0",
        EmulatorConfig {
            api_key: Some(DEMO_API_KEY.into()),
            today: Some(today),
            faults: Faults::default(),
        },
    )
    .context("starting the built-in GBDFL emulator on 127.0.0.1")?;
    say!(
        "gbdfl demo: the GBDFL emulator is listening on {}",
        emu.url()
    );
    let demo = Demo::create(&dir, &emu, Arc::clone(&clock))?;
    let mut subjects: Vec<String> = SUBJECTS.iter().map(|s| s.to_string()).collect();
    subjects.extend(
        ["8805124", "9107236", "0203155"]
            .iter()
            .filter_map(|p| made_up(p)),
    );
    fetch_subjects(&demo, &subjects)?;
    let first = Iin::parse(&subjects[0])?;
    show_and_fetch_again(&demo, &emu, &first, today)?;
    summary(&demo, &emu)?;
    offline(&demo, &emu)?;
    // The steps that follow are gbdfl itself, opening the database on its own.
    drop(demo);
    the_job(&dir, first.as_str())?;
    try_next(&dir, first.as_str(), &subjects)?;
    emu.stop();
    Ok(())
}

/// Fetches every subject, then a made-up IIN with a typo (caught before
/// any call), then asks again for those the service said were PENDING.
fn fetch_subjects(demo: &Demo, subjects: &[String]) -> anyhow::Result<()> {
    say!(
        "Fetching {} subjects (fixtures and made-up people):",
        subjects.len() + 1
    );
    let mut text = String::new();
    let mut pending = Vec::new();
    for iin_text in subjects {
        let iin = Iin::parse(iin_text)?;
        let session = SessionId::parse(&uuid::Uuid::new_v4().to_string())?;
        let fetched = demo.fetch(&iin, &session)?;
        if matches!(&fetched, Fetched::Answered { response, .. } if response.status == Some(gbdfl_core::api::Status::Pending))
        {
            pending.push((iin_text.clone(), session));
        }
        text.push_str(&line(iin_text, &fetched));
    }
    let typo = "950215301234";
    let err = Iin::parse(typo).expect_err("the API page's example fails its check digit");
    text.push_str(&format!(
        "  {typo}  {:<15} {:<10} {err}\n",
        "BAD IIN", "no call"
    ));
    super::out(&text)?;

    for (iin_text, session) in &pending {
        let fetched = demo.fetch(&Iin::parse(iin_text)?, session)?;
        super::out(&format!(
            "Asked again for the PENDING one:\n{}",
            line(iin_text, &fetched)
        ))?;
    }
    Ok(())
}

/// `gbdfl show` of the first subject (audited before it is shown), then
/// the same fetch again: the cache answers, the emulator's count stays.
fn show_and_fetch_again(
    demo: &Demo,
    emu: &Emulator,
    first: &Iin,
    today: chrono::NaiveDate,
) -> anyhow::Result<()> {
    say!("\n$ gbdfl show {}", first.as_str());
    if let Some(rec) = demo.store.latest_valid(first)?
        && let Some(resp) = gbdfl_core::api::parse_response(&rec.body).ok()
    {
        // Audited before it is shown, as `gbdfl show` does.
        demo.store.append_audit(&gbdfl_store::AuditEntry {
            records: 1,
            ..demo.audit_entry("show", first)
        })?;
        super::out(&render::person(first.as_str(), &resp, &rec.lookup, today))?;
    }

    let calls_before = emu.calls();
    let again = demo.fetch_new(first)?;
    say!("\n$ gbdfl fetch {} --session ... (again)", first.as_str());
    super::out(&line(first.as_str(), &again))?;
    say!(
        "  The emulator counted {} paid calls before and {} after: the cache answered.",
        calls_before,
        emu.calls()
    );
    Ok(())
}

/// Lookups recorded against paid calls made.
fn summary(demo: &Demo, emu: &Emulator) -> anyhow::Result<()> {
    let lookups = demo.store.count_lookups()?;
    say!("\nSummary");
    say!("  lookups recorded    {lookups}");
    say!("  paid calls made     {}", emu.calls());
    say!("  answered by cache   {}", lookups as u64 - emu.calls());
    say!("  invalid IINs caught before any call  1");
    Ok(())
}

/// What to try next, with the demo's folder filled in.
fn try_next(dir: &Path, first: &str, subjects: &[String]) -> anyhow::Result<()> {
    let d = dir.display();
    say!("\nTry next (the emulator stops with the demo; start your own with `gbdfl mock-server`;");
    say!("use `cargo run --release --` in place of `gbdfl` if it is not installed):");
    say!(
        "  export GBDFL_DB={d}/gbdfl.db GBDFL_KEY_FILE={d}/master.key GBDFL_CONFIG={d}/config.toml"
    );
    say!("  gbdfl show {0}; gbdfl history {0}", first);
    say!("  gbdfl expiring --within 30d --as-of {DEMO_TODAY} --full-iin");
    say!(
        "  gbdfl report lookups --out {d}/lookups.csv     (every lookup: who, when, why, outcome)"
    );
    say!(
        "  gbdfl audit log --iin {}     (who looked this person up, and why)",
        first
    );
    say!(
        "  gbdfl audit head     (write COUNT:MAC down elsewhere; later `gbdfl audit verify --head COUNT:MAC`)"
    );
    say!("  gbdfl queue; gbdfl stats");
    say!("  gbdfl --help     (every command, grouped by task)");
    say!(
        "  gbdfl mock-server &   then   GBDFL_BASE_URL=http://127.0.0.1:8089/api/v1/backend/gbdfl/ GBDFL_API_KEY=any gbdfl fetch {} --session $(uuidgen)",
        subjects.last().map(String::as_str).unwrap_or_default()
    );
    Ok(())
}

/// How many lines of a report the demo shows.
const HEAD_LINES: usize = 4;

/// The rest of the job, run as the user would run it: this very binary, on
/// the demo's database, with the user's own settings left out (only the
/// demo's folder, key and an empty config file), so each command audits
/// itself exactly as it does in real use.
fn the_job(dir: &Path, first: &str) -> anyhow::Result<()> {
    let config = dir.join("config.toml");
    std::fs::write(&config, "# the demo's settings: all defaults\n")
        .with_context(|| format!("writing {}", config.display()))?;
    let d = dir.display();
    say!(
        "\nThe rest of the job runs the gbdfl commands themselves on the demo's database:\n$ export GBDFL_DB={d}/gbdfl.db GBDFL_KEY_FILE={d}/master.key GBDFL_CONFIG={d}/config.toml"
    );

    say!(
        "\nDocuments that need attention, from the cache only, no paid call (the demo's calendar stands at {DEMO_TODAY}; in real use leave --as-of out):"
    );
    let as_of = ["--as-of", DEMO_TODAY];
    show_run(dir, &[&["expiring"][..], &as_of].concat())?;

    say!("\nThe same as a CSV report for Excel (UTF-8 with a byte order mark, CRLF line ends):");
    let expiring_csv = dir.join("expiring.csv");
    let out = expiring_csv.display().to_string();
    show_run(
        dir,
        &[
            &["report", "expiring", "--excel"][..],
            &as_of,
            &["--out", &out],
        ]
        .concat(),
    )?;
    show_head(&expiring_csv)?;

    say!(
        "\nThe same as one HTML page with charts, for a browser (self-contained: it loads nothing):"
    );
    let html = dir.join("expiring.html");
    let out = html.display().to_string();
    show_run(
        dir,
        &[
            &["report", "expiring", "--html", "--lang", "en"][..],
            &as_of,
            &["--out", &out],
        ]
        .concat(),
    )?;

    say!("\nLookups and paid calls per day, for the monthly bill and the compliance file:");
    let summary_csv = dir.join("summary.csv");
    let out = summary_csv.display().to_string();
    show_run(dir, &["report", "summary", "--out", &out])?;
    show_head(&summary_csv)?;

    say!(
        "\nThe audit trail: every lookup, display and report above left an entry, chained by MACs, so a changed, deleted or reordered entry is found:"
    );
    show_run(dir, &["audit", "verify"])?;
    show_run(dir, &["audit", "head"])?;
    say!("$ gbdfl audit log --iin {first}   (first lines)");
    let log = run_self(dir, &["audit", "log", "--iin", first])?;
    let mut text = String::new();
    for l in log.lines().take(HEAD_LINES + 1) {
        text.push_str(&format!("  {l}\n"));
    }
    super::out(&text)
}

/// Runs one gbdfl command on the demo's folder, printing it first and then
/// what it printed (its messages, then its output), indented.
fn show_run(dir: &Path, args: &[&str]) -> anyhow::Result<()> {
    say!("$ gbdfl {}", args.join(" "));
    let text = run_self(dir, args)?;
    super::out(&text)
}

/// Runs this binary with `args` on the demo's database; its standard error
/// and output, indented. A failure stops the demo with the command's message.
fn run_self(dir: &Path, args: &[&str]) -> anyhow::Result<String> {
    let exe = std::env::current_exe().context("finding the gbdfl binary to run")?;
    let mut cmd = std::process::Command::new(&exe);
    // The user's own settings stay out of the demo's database and trail.
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("GBDFL_") {
            cmd.env_remove(&k);
        }
    }
    let output = cmd
        .args(args)
        .env("GBDFL_DB", dir.join("gbdfl.db"))
        .env("GBDFL_KEY_FILE", dir.join("master.key"))
        .env("GBDFL_CONFIG", dir.join("config.toml"))
        .env("GBDFL_OPERATOR", OPERATOR)
        .stdin(std::process::Stdio::null())
        .output()
        .with_context(|| format!("running {} {}", exe.display(), args.join(" ")))?;
    let (stdout, stderr) = (
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    );
    if !output.status.success() {
        anyhow::bail!(
            "the demo's step `gbdfl {}` failed ({}): {}",
            args.join(" "),
            output.status,
            stderr.trim()
        );
    }
    let mut text = String::new();
    for l in stderr.lines().chain(stdout.lines()) {
        text.push_str(&format!("  {l}\n"));
    }
    Ok(text)
}

/// Prints a report's first lines as a spreadsheet would read them.
fn show_head(path: &Path) -> anyhow::Result<()> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let text = String::from_utf8_lossy(bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(&bytes));
    let total = text.lines().count();
    let mut shown = format!("  $ head -{HEAD_LINES} {}\n", path.display());
    for l in text.lines().take(HEAD_LINES) {
        shown.push_str(&format!("  {}\n", l.trim_end_matches('\r')));
    }
    if total > HEAD_LINES {
        shown.push_str(&format!("  ... {} lines in all\n", total));
    }
    super::out(&shown)
}
