//! `gbdfl audit`: read and verify the tamper-evident audit trail.

use chrono::{DateTime, Utc};

use super::{Ctx, out};
use crate::exit::{Exit, ExitCode};
use gbdfl_core::iin::Iin;
use gbdfl_report::render;
use gbdfl_store::{AuditFilter, AuditView, Store};

/// Read and verify the audit trail of who looked up whom, when and why.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub action: Action,
}

#[derive(Debug, clap::Subcommand)]
pub enum Action {
    /// Walk the chain; exit 8 naming the first entry changed, deleted, inserted or reordered
    Verify {
        /// COUNT:MAC from an earlier `audit head`: also detects a tail cut off since
        #[arg(long, value_name = "COUNT:MAC")]
        head: Option<String>,
        /// Head office: verify every branch's chain in the central store
        /// and print each branch's head
        #[arg(long, conflicts_with_all = ["head", "against_central"])]
        central: bool,
        /// At a branch: also check that the central store's copy of this
        /// branch's chain is this chain, naming the first entry where they part
        #[arg(long, conflicts_with = "head")]
        against_central: bool,
    },
    /// Print the entry count and the last MAC, to write down somewhere else
    Head,
    /// List entries, oldest first
    Log {
        /// From this date or time (YYYY-MM-DD or RFC 3339, UTC)
        #[arg(long, value_name = "DATE")]
        from: Option<String>,
        /// Up to (not including) this date or time
        #[arg(long, value_name = "DATE")]
        to: Option<String>,
        /// Only entries of this operator (not --operator, which names who runs this command)
        #[arg(long = "by", value_name = "OPERATOR")]
        by: Option<String>,
        /// Entries about this IIN (matched through its blind index)
        #[arg(long, value_name = "IIN")]
        iin: Option<String>,
        /// Only this command (fetch, show, history, expiring, "report expiring", purge, rekey, ...)
        #[arg(long, value_name = "COMMAND")]
        action: Option<String>,
        /// Head office: every branch's entries, from the central store
        #[arg(long)]
        central: bool,
    },
}

impl Args {
    pub fn name(&self) -> &'static str {
        match self.action {
            Action::Verify { .. } => "audit verify",
            Action::Head => "audit head",
            Action::Log { .. } => "audit log",
        }
    }
}

/// Parses YYYY-MM-DD (midnight UTC) or an RFC 3339 time.
pub fn parse_when(name: &str, s: &str) -> anyhow::Result<DateTime<Utc>> {
    // A day alone has a four-digit year: `26-12-03` is refused, not the year 26.
    if !s.trim().contains(['T', 't', ' ']) {
        let d = gbdfl_core::limits::parse_date(name, s).map_err(|e| {
            Exit::new(
                ExitCode::InvalidInput,
                format!("{e} or 2026-11-28T09:00:00Z"),
            )
        })?;
        return Ok(d.and_hms_opt(0, 0, 0).expect("midnight").and_utc());
    }
    gbdfl_core::time::parse_iso(s).ok_or_else(|| {
        Exit::new(
            ExitCode::InvalidInput,
            format!(
                "{name} {} is not a date: write YYYY-MM-DD or 2026-11-28T09:00:00Z",
                gbdfl_core::limits::shown(s)
            ),
        )
        .into()
    })
}

fn parse_head(s: &str) -> anyhow::Result<(u64, Vec<u8>)> {
    let bad = || {
        Exit::new(
            ExitCode::InvalidInput,
            format!(
                "--head {} is not COUNT:MAC as printed by `gbdfl audit head`",
                gbdfl_core::limits::shown(s)
            ),
        )
    };
    let (n, mac) = s.trim().split_once(':').ok_or_else(bad)?;
    let n = n.parse::<u64>().map_err(|_| bad())?;
    let mac = hex::decode(mac).map_err(|_| bad())?;
    if mac.len() != 32 {
        return Err(bad().into());
    }
    Ok((n, mac))
}

/// One entry for the terminal; text from outside (operator, purpose,
/// error) made [`safe`](render::safe).
fn line(v: &AuditView) -> String {
    format!(
        "{:>6}  {}  {:<12} {:<20} {:<14} {:<16} {:<5} paid={} records={}  {}{}\n",
        v.seq,
        v.at.format("%Y-%m-%d %H:%M:%S"),
        render::safe(&v.operator),
        render::safe(v.os_user.as_deref().unwrap_or("-")),
        render::safe(&v.command),
        render::safe(v.subject.as_deref().unwrap_or("-")),
        if v.ok { "ok" } else { "ERROR" },
        if v.paid_call { "yes" } else { "no" },
        v.records,
        v.purpose
            .as_deref()
            .map(|p| format!("purpose: {}", render::safe(p)))
            .unwrap_or_default(),
        v.error
            .as_deref()
            .map(|e| format!("  error: {}", render::safe(&e.replace('\n', " "))))
            .unwrap_or_default(),
    )
}

pub fn run(args: Args, ctx: &Ctx, store: &Store) -> anyhow::Result<()> {
    match args.action {
        Action::Verify { central: true, .. } => verify_central(ctx, store),
        Action::Verify {
            against_central: true,
            ..
        } => verify_against_central(ctx, store),
        Action::Verify { head, .. } => verify(head.as_deref(), ctx, store),
        Action::Head => head(ctx, store),
        Action::Log {
            from,
            to,
            by,
            iin,
            action,
            central,
        } => {
            let subject = match iin.as_deref() {
                Some(s) => {
                    let iin = Iin::parse_unchecked(s)?;
                    ctx.note_subject(store, &iin);
                    Some(store.subject_of(&iin))
                }
                None => None,
            };
            let filter = AuditFilter {
                from: from
                    .as_deref()
                    .map(|s| parse_when("--from", s))
                    .transpose()?,
                to: to.as_deref().map(|s| parse_when("--to", s)).transpose()?,
                operator: by,
                subject,
                command: action,
            };
            if central {
                log_central(&filter, ctx, store)
            } else {
                log(&filter, ctx, store)
            }
        }
    }
}

/// `audit verify`: walks the chain (and checks an earlier head if given).
fn verify(head: Option<&str>, ctx: &Ctx, store: &Store) -> anyhow::Result<()> {
    let head = head.map(parse_head).transpose()?;
    let check = store.verify_audit(head.as_ref().map(|(n, m)| (*n, m.as_slice())))?;
    ctx.note_records(check.entries);
    if ctx.settings.json {
        super::json::print(&serde_json::json!({
            "entries": check.entries,
            "intact": check.problem.is_none(),
            "problem": check.problem,
            "head_checked": head.is_some(),
        }))?;
    }
    match check.problem {
        None => {
            eprintln!(
                "The audit trail verifies: {} entries, chain intact{}.",
                check.entries,
                if head.is_some() { ", head matches" } else { "" }
            );
            Ok(())
        }
        Some(p) => Err(Exit::new(
            ExitCode::KeyOrIntegrity,
            format!("the audit trail does not verify: {p}"),
        )
        .into()),
    }
}

/// `audit verify --central`: every branch's chain as the central store
/// holds it, verified with the organisation's audit key; each branch's
/// head printed; exit 8 naming the branch and entry of the first break.
fn verify_central(ctx: &Ctx, store: &Store) -> anyhow::Result<()> {
    let mut central = super::central::connect(ctx)?;
    let mut problems = Vec::new();
    let mut total = 0u64;
    let mut text = format!("{:<24} {:>10}  {:<8} HEAD\n", "BRANCH", "ENTRIES", "CHAIN");
    let mut json = Vec::new();
    for branch in central.branches()? {
        let rows = central.audit_rows(&branch)?;
        let check =
            store.verify_audit_rows(rows.into_iter().map(Ok::<_, gbdfl_store::StoreError>))?;
        total += check.entries;
        let head = format!("{}:{}", check.entries, hex::encode(&check.last_mac));
        text.push_str(&format!(
            "{branch:<24} {:>10}  {:<8} {head}\n",
            check.entries,
            if check.problem.is_none() {
                "intact"
            } else {
                "BROKEN"
            },
        ));
        json.push(serde_json::json!({
            "branch": branch,
            "entries": check.entries,
            "intact": check.problem.is_none(),
            "problem": check.problem,
            "head": head,
        }));
        if let Some(p) = check.problem {
            problems.push(format!("branch {branch}: {p}"));
        }
    }
    ctx.note_records(total);
    if ctx.settings.json {
        super::json::print(&json)?;
    } else {
        out(&text)?;
    }
    if problems.is_empty() {
        eprintln!("Every branch's audit trail in the central store verifies ({total} entries).");
        return Ok(());
    }
    Err(Exit::new(
        ExitCode::KeyOrIntegrity,
        format!(
            "the central audit trail does not verify: {}",
            problems.join("; ")
        ),
    )
    .into())
}

/// `audit verify --against-central`: this chain verifies, the central
/// store's copy of it verifies, and each entry there is this one's.
fn verify_against_central(ctx: &Ctx, store: &Store) -> anyhow::Result<()> {
    let (target, branch) = ctx.settings.central_branch()?;
    let mut central = gbdfl_central::Central::connect(&target)?;
    let local = store.verify_audit(None)?;
    if let Some(p) = local.problem {
        return Err(Exit::new(
            ExitCode::KeyOrIntegrity,
            format!("this database's audit trail does not verify: {p}"),
        )
        .into());
    }
    let rows = central.audit_rows(&branch)?;
    let there =
        store.verify_audit_rows(rows.iter().cloned().map(Ok::<_, gbdfl_store::StoreError>))?;
    if let Some(p) = there.problem {
        return Err(Exit::new(
            ExitCode::KeyOrIntegrity,
            format!(
                "the central store's copy of branch {branch}'s audit trail does not verify: {p}"
            ),
        )
        .into());
    }
    let mut after = 0i64;
    for r in &rows {
        let mine = store.audit_rows_after(r.seq - 1, 1)?;
        match mine.first() {
            Some(m) if m.seq == r.seq && m.mac == r.mac => after = r.seq,
            _ => {
                return Err(Exit::new(
                    ExitCode::KeyOrIntegrity,
                    format!(
                        "branch {branch}'s audit trail in the central store parts from this database's at entry {}: the two chains diverge (entries 1 to {after} agree). Is this the branch's own database and branch id?",
                        r.seq
                    ),
                )
                .into());
            }
        }
    }
    ctx.note_records(local.entries);
    eprintln!(
        "The audit trail verifies: {} entries here, chain intact; the central store holds the first {} of them, the same entries.",
        local.entries, there.entries
    );
    Ok(())
}

/// `audit head`: COUNT:MAC of a trail that verifies.
fn head(ctx: &Ctx, store: &Store) -> anyhow::Result<()> {
    let check = store.verify_audit(None)?;
    if let Some(p) = check.problem {
        return Err(Exit::new(
            ExitCode::KeyOrIntegrity,
            format!("the audit trail does not verify, so it has no trustworthy head: {p}"),
        )
        .into());
    }
    // The head is the trail before this command's own entry: later
    // entries only extend it, so `verify --head` stays valid.
    if ctx.settings.json {
        let mac = hex::encode(&check.last_mac);
        return super::json::print(&serde_json::json!({
            "entries": check.entries,
            "mac": mac,
            "head": format!("{}:{mac}", check.entries),
        }));
    }
    out(&format!(
        "{}:{}\n",
        check.entries,
        hex::encode(&check.last_mac)
    ))
}

/// `audit log --central`: every branch's entries the filter picks, each
/// with its branch, released after this command's own entry is written.
fn log_central(filter: &AuditFilter, ctx: &Ctx, store: &Store) -> anyhow::Result<()> {
    let mut central = super::central::connect(ctx)?;
    let json = ctx.settings.json;
    let mut n = 0u64;
    let mut text = String::new();
    for branch in central.branches()? {
        for row in central.audit_rows(&branch)? {
            let Some(v) = store.audit_view_of(&row, filter)? else {
                continue;
            };
            n += 1;
            if json {
                let mut entry = serde_json::Map::new();
                entry.insert("branch".into(), serde_json::Value::from(branch.as_str()));
                entry.extend(
                    gbdfl_report::AUDIT_COLUMNS
                        .iter()
                        .map(|k| k.to_string())
                        .zip(gbdfl_report::audit_fields(&v)),
                );
                text.push_str(&super::json::line(&serde_json::Value::Object(entry))?);
            } else {
                text.push_str(&format!("{:<16} ", gbdfl_report::render::safe(&branch)));
                text.push_str(&line(&v));
            }
        }
    }
    ctx.release(store, n)?;
    out(&text)
}

/// `audit log`: the entries the filter picks, released after this
/// command's own entry is written.
fn log(filter: &AuditFilter, ctx: &Ctx, store: &Store) -> anyhow::Result<()> {
    // Gathered first: the purposes are personal data, released
    // only after this command's own entry is written.
    let mut n = 0u64;
    let json = ctx.settings.json;
    let mut text = String::new();
    if !json {
        text.push_str(
            "   SEQ  TIME (UTC)           OPERATOR     OS USER              COMMAND        SUBJECT          OUTCOME, PAID CALL, RECORDS, PURPOSE, ERROR\n",
        );
    }
    store.each_audit(filter, |v| -> anyhow::Result<()> {
        n += 1;
        if json {
            let entry: serde_json::Map<String, serde_json::Value> = gbdfl_report::AUDIT_COLUMNS
                .iter()
                .map(|k| k.to_string())
                .zip(gbdfl_report::audit_fields(&v))
                .collect();
            text.push_str(&super::json::line(&serde_json::Value::Object(entry))?);
        } else {
            text.push_str(&line(&v));
        }
        Ok(())
    })?;
    ctx.release(store, n)?;
    out(&text)
}
