//! `--json`: how commands print JSON, and how those with nothing to print
//! as JSON refuse the flag.
//!
//! Rules this module keeps: what is printed parses as JSON (one document,
//! or one per line for streams) and holds the data unchanged; characters
//! that could act on a terminal are written as `\uXXXX` escapes
//! ([`render::json_safe`]), which every JSON reader turns back into the
//! same text.

use serde::Serialize;

use crate::exit::{Exit, ExitCode};
use crate::render;

/// Prints `v` as one pretty-printed JSON document.
pub fn print(v: &impl Serialize) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(v)?;
    super::out(&format!("{}\n", render::json_safe(&text)))
}

/// Prints `v` as one line of JSON (for streams: one document per line).
pub fn line(v: &impl Serialize) -> anyhow::Result<()> {
    let text = serde_json::to_string(v)?;
    super::out(&format!("{}\n", render::json_safe(&text)))
}

/// Prints a stored answer (JSON as the service sent it) made terminal-safe.
pub fn raw(body: &[u8]) -> anyhow::Result<()> {
    let text = String::from_utf8_lossy(body);
    super::out(&format!("{}\n", render::json_safe(text.trim_end())))
}

/// The refusal of `--json` by a command that prints no data: exit 2.
pub fn refuse(command: &str, why: &str) -> anyhow::Error {
    Exit::new(
        ExitCode::InvalidInput,
        format!("`gbdfl {command}` takes no --json: {why}; run it without --json"),
    )
    .into()
}
