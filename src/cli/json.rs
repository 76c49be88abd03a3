//! `--json`: how commands print JSON, and how those with nothing to print
//! as JSON refuse the flag.
//!
//! Rules this module keeps: what is printed parses as JSON (one document,
//! or one per line for streams) and holds the data unchanged; characters
//! that could act on a terminal are written as `\u` escapes of four hex digits
//! ([`render::json_safe`]), which every JSON reader turns back into the
//! same text.

use serde::Serialize;

use crate::exit::{Exit, ExitCode};
use gbdfl_report::render;

/// Prints `v` as one pretty-printed JSON document.
pub fn print(v: &impl Serialize) -> anyhow::Result<()> {
    super::out(&pretty(v)?)
}

/// `v` as one pretty-printed JSON document and a line end, terminal-safe:
/// for commands that must write their audit entry before they print.
pub fn pretty(v: &impl Serialize) -> anyhow::Result<String> {
    let text = serde_json::to_string_pretty(v)?;
    Ok(format!("{}\n", render::json_safe(&text)))
}

/// `v` as one line of JSON (for streams: one document per line).
pub fn line(v: &impl Serialize) -> anyhow::Result<String> {
    let text = serde_json::to_string(v)?;
    Ok(format!("{}\n", render::json_safe(&text)))
}

/// A stored answer (JSON as the service sent it) made terminal-safe, with
/// a line end.
pub fn raw(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    format!("{}\n", render::json_safe(text.trim_end()))
}

/// The refusal of `--json` by a command that prints no data: exit 2.
pub fn refuse(command: &str, why: &str) -> anyhow::Error {
    Exit::new(
        ExitCode::InvalidInput,
        format!("`gbdfl {command}` takes no --json: {why}; run it without --json"),
    )
    .into()
}

/// A writer that passes JSON on made terminal-safe, for output too large
/// to hold as one text. A character split between two writes is held
/// until its end arrives.
pub struct SafeWriter<W: std::io::Write> {
    inner: W,
    held: Vec<u8>,
}

impl<W: std::io::Write> SafeWriter<W> {
    pub fn new(inner: W) -> Self {
        SafeWriter {
            inner,
            held: Vec::new(),
        }
    }
}

impl<W: std::io::Write> std::io::Write for SafeWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.held.extend_from_slice(buf);
        let (text, rest) = match std::str::from_utf8(&self.held) {
            Ok(t) => (t, self.held.len()),
            // Only an unfinished character at the end waits; serde_json
            // writes nothing else that is not UTF-8.
            Err(e) if e.error_len().is_none() => (
                std::str::from_utf8(&self.held[..e.valid_up_to()]).expect("valid up to here"),
                e.valid_up_to(),
            ),
            Err(e) => return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, e)),
        };
        self.inner.write_all(render::json_safe(text).as_bytes())?;
        self.held.drain(..rest);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}
