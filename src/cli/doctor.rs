//! `gbdfl doctor`: is the way to the service open? The first thing IT runs
//! when a branch says "it doesn't work".

use super::{Ctx, out};
use crate::exit::{Exit, ExitCode};
use gbdfl_client::validate_base_url;

/// Check the way to the service: proxy, name, connection, TLS handshake.
///
/// Reports each step with its timing and the certificate chain presented;
/// sends no request to the service (nothing is billed). Needs no API key
/// and no database. Exits 13 when a step fails. `--json` prints the steps,
/// the chain and the problem found as JSON.
#[derive(Debug, clap::Args)]
pub struct Args {}

pub fn run(_args: Args, ctx: &Ctx) -> anyhow::Result<()> {
    let s = &ctx.settings;
    let url = validate_base_url(&s.base_url.value)?;
    let report = gbdfl_client::network::doctor::run(&s.network(), &url, s.connect_timeout.value);
    if s.json {
        let json = serde_json::json!({
            "url": url.as_str(),
            "ok": report.ok(),
            "steps": report.steps.iter().map(|st| serde_json::json!({
                "step": st.name,
                "ok": st.ok,
                "ms": st.took.map(|d| d.as_secs_f64() * 1000.0),
                "detail": st.detail,
            })).collect::<Vec<_>>(),
            "chain": report.chain.iter().map(|(subject, issuer, until)| serde_json::json!({
                "subject": subject,
                "issuer": issuer,
                "valid_until": until,
            })).collect::<Vec<_>>(),
            "problem": report.problem.as_ref().map(|(p, advice)| serde_json::json!({
                "kind": p.label(),
                "advice": advice,
            })),
        });
        super::json::print(&json)?;
    } else {
        let mut text = format!("checking the way to {url} (no request is sent)\n");
        text.push_str(&report.render());
        // Certificate names and proxy answers come from outside.
        out(&gbdfl_report::render::safe_lines(&text))?;
    }
    if report.ok() {
        return Ok(());
    }
    let advice = match &report.problem {
        Some((_, advice)) => advice.clone(),
        None => {
            let failed = report.steps.iter().find(|s| !s.ok);
            format!(
                "the step {} failed: {}",
                failed.map(|s| s.name).unwrap_or("?"),
                failed.map(|s| s.detail.as_str()).unwrap_or("")
            )
        }
    };
    Err(Exit::new(ExitCode::NetworkConfig, advice).into())
}
