//! `gbdfl config`: the effective settings and where each came from.

use super::{Ctx, out};

/// Print the effective settings and where each came from (secrets redacted).
#[derive(Debug, clap::Args)]
pub struct Args {}

pub fn run(_args: Args, ctx: &Ctx) -> anyhow::Result<()> {
    let s = &ctx.settings;
    if s.json {
        let map: serde_json::Map<String, serde_json::Value> = s
            .describe()
            .into_iter()
            .map(|(k, v, o)| (k.to_owned(), serde_json::json!({ "value": v, "source": o })))
            .collect();
        return super::json::print(&map);
    }
    let rows = s.describe();
    let w = rows.iter().map(|r| r.0.len()).max().unwrap_or(0);
    let mut text = String::new();
    for (k, v, o) in rows {
        // Values come from files and the environment: shown safe.
        let (v, o) = (
            gbdfl_report::render::safe(&v),
            gbdfl_report::render::safe(&o),
        );
        text.push_str(&format!("{k:<w$}  {v}  [{o}]\n"));
    }
    out(&text)
}
