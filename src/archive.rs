//! Archives of GBDFL answers as JSON lines (`gbdfl import`, `gbdfl
//! export`): one answer per line, as the service sent it, plus the time it
//! was fetched in a field of its own.
//!
//! Rules this module keeps: it reads and writes the store and the user's
//! files, never the HTTP client; a bad line is reported by its number and
//! skipped, never stops the import; an IIN that fails the check digit is
//! stored with a warning (archives hold real data); the work splits over
//! threads (parse, summarise, compress and seal in parallel, one writer
//! inserting large transactions), and the order of the output does not
//! depend on the number of threads.

use std::io::{BufRead, Write};
use std::sync::mpsc;

use chrono::{DateTime, Utc};
use rayon::prelude::*;
use serde_json::Value;
use zeroize::Zeroizing;

use crate::api::{Response, Status};
use crate::iin::Iin;
use crate::store::{ImportItem, ImportOutcome, SealedLookup, Store, StoreError};
use crate::summary::Summary;

/// The field of an exported line that holds the time it was fetched.
pub const FETCHED_AT: &str = "fetched_at";
/// Lines per batch: one transaction each.
const BATCH: usize = 8192;

/// What can go wrong with an archive as a whole (a bad line is not here: it
/// is reported and skipped).
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("reading {what}: {source}")]
    Read {
        what: String,
        source: std::io::Error,
    },
    #[error("writing the export: {0}")]
    Write(#[source] std::io::Error),
}

/// A line that was read, or why it was not.
#[derive(Debug)]
pub struct Line {
    pub number: u64,
    pub item: Result<ImportItem, String>,
    /// Said about a line that was stored all the same.
    pub warning: Option<String>,
}

/// Reads one line: an answer (a JSON object) with its fetch time in the
/// field [`FETCHED_AT`] (RFC 3339) or, failing that, `default_time`.
pub fn parse_line(
    line: &[u8],
    default_time: Option<DateTime<Utc>>,
) -> Result<(ImportItem, Option<String>), String> {
    // Two passes over the bytes beat one through serde_json::Value: the
    // first skips everything but the time, the second builds the answer.
    #[derive(serde::Deserialize)]
    struct Time {
        #[serde(rename = "fetched_at")]
        at: Option<Value>,
    }
    if line.trim_ascii_start().first() != Some(&b'{') {
        return Err(
            match serde_json::from_slice::<serde::de::IgnoredAny>(line) {
                Ok(_) => "not a JSON object".to_owned(),
                Err(e) => format!("not JSON ({e})"),
            },
        );
    }
    let time: Time = serde_json::from_slice(line).map_err(|e| format!("not JSON ({e})"))?;
    let fetched_at = match time.at {
        Some(Value::String(s)) => DateTime::parse_from_rfc3339(s.trim())
            .map(|t| t.with_timezone(&Utc))
            .map_err(|_| format!("{FETCHED_AT} {s:?} is not an RFC 3339 time"))?,
        Some(Value::Null) | None => default_time
            .ok_or_else(|| format!("no {FETCHED_AT} field: give the time with --fetched-at"))?,
        Some(_) => return Err(format!("{FETCHED_AT} is not a text")),
    };
    let response: Response =
        serde_json::from_slice(line).map_err(|e| format!("not a GBDFL answer ({e})"))?;
    let iin_text = response
        .iin
        .clone()
        .or_else(|| response.result_json.as_ref().and_then(|p| p.iin.clone()))
        .ok_or("no iin field")?;
    let mut warning = None;
    let iin = match Iin::parse(&iin_text) {
        Ok(iin) => iin,
        Err(_) => {
            let iin = Iin::parse_unchecked(&iin_text)
                .map_err(|e| format!("IIN {}: {e}", crate::iin::mask(iin_text.trim())))?;
            warning = Some(format!(
                "IIN {} fails the check digit; stored all the same, marked unchecked",
                iin.masked()
            ));
            iin
        }
    };
    let valid = response.status == Some(Status::Valid);
    let summary = valid.then(|| Summary::of(iin.as_str(), Some(&response)));
    let session_id = response
        .face2face_result
        .as_ref()
        .and_then(|f| f.backend_session_id.clone())
        .unwrap_or_default();
    Ok((
        ImportItem {
            session_id,
            fetched_at,
            status: response.status.as_ref().map(|s| s.as_str().to_owned()),
            result: response.result,
            failure_type: response
                .failure_reason
                .as_ref()
                .and_then(|f| f.kind.clone()),
            detail: response.failure_reason.as_ref().map(|f| f.to_string()),
            body: Zeroizing::new(line.to_vec()),
            summary,
            iin,
        },
        warning,
    ))
}

/// Who imports, and why: recorded with every imported lookup.
#[derive(Debug, Clone, Copy)]
pub struct Importer<'a> {
    pub operator: &'a str,
    pub host: &'a str,
    pub purpose: Option<&'a str>,
    pub default_time: Option<DateTime<Utc>>,
    /// Drop the secondary indexes while importing and build them at the
    /// end: faster for an import that is large next to the database.
    pub rebuild_indexes: bool,
}

/// What an import did.
#[derive(Debug, Default, Clone, Copy)]
pub struct ImportReport {
    pub lines: u64,
    pub stored: ImportOutcome,
    pub bad: u64,
    pub warnings: u64,
}

/// Imports every line of `input` into `store`. `note` hears of each bad
/// line and warning (with its line number) and of the progress.
pub fn import(
    store: &Store,
    input: impl BufRead + Send,
    who: Importer<'_>,
    pool: &rayon::ThreadPool,
    note: &mut dyn FnMut(Note<'_>),
) -> Result<ImportReport, ArchiveError> {
    store.bulk_mode()?;
    if who.rebuild_indexes {
        store.drop_indexes()?;
    }
    let opener = store.opener();
    let mut report = ImportReport::default();
    let scoped = std::thread::scope(|s| -> Result<(), ArchiveError> {
        // Reader and sealers on their own threads; this thread writes.
        let (tx, rx) = mpsc::sync_channel::<
            Result<Vec<(u64, Result<SealedLookup, String>, Option<String>)>, ArchiveError>,
        >(2);
        s.spawn(move || {
            let mut lines = input.split(b'\n');
            let mut number = 0u64;
            loop {
                let mut raw = Vec::with_capacity(BATCH);
                for line in lines.by_ref() {
                    number += 1;
                    match line {
                        Ok(l) => raw.push((number, Zeroizing::new(l))),
                        Err(e) => {
                            let _ = tx.send(Err(ArchiveError::Read {
                                what: format!("line {number}"),
                                source: e,
                            }));
                            return;
                        }
                    }
                    if raw.len() == BATCH {
                        break;
                    }
                }
                if raw.is_empty() {
                    return;
                }
                let sealed = pool.install(|| {
                    raw.par_iter()
                        .filter(|(_, l)| !l.iter().all(u8::is_ascii_whitespace))
                        .map(|(n, l)| {
                            let l = l.strip_suffix(b"\r").unwrap_or(l);
                            match parse_line(l, who.default_time) {
                                Ok((item, warning)) => (
                                    *n,
                                    opener
                                        .seal_import(&item, who.operator, who.host, who.purpose)
                                        .map_err(|e| e.to_string()),
                                    warning,
                                ),
                                Err(e) => (*n, Err(e), None),
                            }
                        })
                        .collect::<Vec<_>>()
                });
                if tx.send(Ok(sealed)).is_err() {
                    return;
                }
            }
        });
        for batch in rx {
            let batch = batch?;
            let mut good = Vec::with_capacity(batch.len());
            for (n, sealed, warning) in batch {
                report.lines = report.lines.max(n);
                if let Some(w) = &warning {
                    report.warnings += 1;
                    note(Note::Warning(n, w));
                }
                match sealed {
                    Ok(row) => good.push(row),
                    Err(e) => {
                        report.bad += 1;
                        note(Note::Bad(n, &e));
                    }
                }
            }
            let done = store.insert_imported(&good)?;
            report.stored.inserted += done.inserted;
            report.stored.already += done.already;
            note(Note::Progress(
                report.stored.inserted + report.stored.already,
            ));
        }
        Ok(())
    });
    // Whatever happened, the indexes come back before the command ends.
    if who.rebuild_indexes {
        store.rebuild_indexes()?;
    }
    scoped?;
    Ok(report)
}

/// What an import says as it goes.
#[derive(Debug)]
pub enum Note<'a> {
    Bad(u64, &'a str),
    Warning(u64, &'a str),
    Progress(u64),
}

/// Writes every stored answer as one JSON line, oldest first: the body as
/// stored, compacted to one line, with [`FETCHED_AT`] added when the body
/// has none. Returns the number of lines.
pub fn export(store: &Store, mut out: impl Write) -> Result<u64, ArchiveError> {
    let mut n = 0u64;
    store.each_answer(|at, body| -> Result<(), ArchiveError> {
        let line = export_line(&body, at);
        out.write_all(&line).map_err(ArchiveError::Write)?;
        out.write_all(b"\n").map_err(ArchiveError::Write)?;
        n += 1;
        Ok(())
    })?;
    out.flush().map_err(ArchiveError::Write)?;
    Ok(n)
}

fn export_line(body: &[u8], at: DateTime<Utc>) -> Zeroizing<Vec<u8>> {
    let one_line = !body.contains(&b'\n') && !body.contains(&b'\r');
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) if map.contains_key(FETCHED_AT) && one_line => {
            Zeroizing::new(body.to_vec())
        }
        Ok(Value::Object(mut map)) => {
            map.entry(FETCHED_AT)
                .or_insert_with(|| Value::String(crate::store::time_text(at)));
            Zeroizing::new(serde_json::to_vec(&Value::Object(map)).unwrap_or_default())
        }
        // Not an object: only answers are exported, so this is a body
        // stored by an older gbdfl; keep it whole, as a JSON string.
        _ => Zeroizing::new(
            serde_json::to_vec(&serde_json::json!({
                "unparsed_body": String::from_utf8_lossy(body),
                FETCHED_AT: crate::store::time_text(at),
            }))
            .unwrap_or_default(),
        ),
    }
}
