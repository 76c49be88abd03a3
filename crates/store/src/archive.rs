//! Archives of GBDFL answers as JSON lines (`gbdfl import`, `gbdfl
//! export`): one answer per line, as the service sent it, plus the time it
//! was fetched in a field of its own.
//!
//! The work splits over threads: parse, summarise, compress and seal in
//! parallel, one writer inserting large transactions.
//!
//! Rules this module keeps: it reads and writes the store and the user's
//! files, never the HTTP client (`layers::store_reaches_no_http_and_no_layer_above_it`
//! in tests/cli); a bad line is reported by its number and skipped, never
//! stops the import, and an IIN that fails the check digit is stored with
//! a warning, since archives hold real data
//! (`bulk::issue_6_import_then_export_gives_back_the_same_answers`,
//! `bad_lines_say_why`, `blocks_hold_whole_lines_numbered_across_blocks`);
//! a fetch time in the future, or two IINs that differ, make a bad line
//! (`future_times_and_disagreeing_iins_are_bad_lines`); an exported line is
//! the answer as the service sent it
//! (`an_exported_line_is_the_answer_as_sent_with_fetched_at_first`).

use std::io::{Read, Write};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::Duration;

use chrono::{DateTime, Utc};
use rayon::prelude::*;
use serde_json::Value;
use zeroize::Zeroizing;

use crate::{
    FUTURE_TOLERANCE, Handed, ImportItem, ImportOutcome, Opener, SealedLookup, Store, StoreError,
};
use gbdfl_core::api::{self, Scalar, Status};
use gbdfl_core::iin::Iin;
use gbdfl_core::summary::Summary;

/// The field of an exported line that holds the time it was fetched.
pub const FETCHED_AT: &str = "fetched_at";

/// What can go wrong with an archive as a whole (a bad line is not here: it
/// is reported and skipped).
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    /// The store failed (opening a value, writing a batch).
    #[error("{0}")]
    Store(#[from] StoreError),
    /// The input could not be read.
    #[error("reading {what}: {source}")]
    Read {
        /// Where in the input reading failed (`line N`).
        what: String,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// The export could not be written.
    #[error("writing the export: {0}")]
    Write(#[source] std::io::Error),
}

/// Reads one line: an answer (a JSON object) with its fetch time in the
/// field [`FETCHED_AT`] (RFC 3339) or, failing that, `default_time`. The
/// item borrows the body and most texts from `line`.
///
/// A fetch time after `not_after` (now plus [`FUTURE_TOLERANCE`]) is a bad
/// line: such a record would be "the latest" for ever. So is an answer whose
/// top-level `iin` and `result_json.iin` differ: it is one person's data that
/// would be filed under another's IIN.
///
/// Long on purpose: one check after another, each with its own message
/// for the line's reader, in the order a line is read.
pub fn parse_line(
    line: &[u8],
    default_time: Option<DateTime<Utc>>,
    not_after: DateTime<Utc>,
) -> Result<(ImportItem<'_>, Option<String>), String> {
    if line.trim_ascii_start().first() != Some(&b'{') {
        return Err(
            match serde_json::from_slice::<serde::de::IgnoredAny>(line) {
                Ok(_) => "not a JSON object".to_owned(),
                Err(e) => format!("not JSON ({e})"),
            },
        );
    }
    // JSON is UTF-8: checked once here for the whole line, so that what is
    // stored can be exported again as it came. The SIMD check is some ten
    // times faster on these lines (0.7 s of CPU at a million answers with
    // the standard one); the standard one says where a bad line goes wrong.
    let text = simdutf8::basic::from_utf8(line)
        .or_else(|_| std::str::from_utf8(line))
        .map_err(|e| format!("not JSON (not UTF-8: {e})"))?;
    let api::Answer {
        fetched_at,
        response: answer,
    } = api::parse_answer(text).map_err(|e| match e.classify() {
        serde_json::error::Category::Data => format!("not a GBDFL answer ({e})"),
        _ => format!("not JSON ({e})"),
    })?;
    let fetched_at = match &fetched_at {
        Scalar::Text(s) => gbdfl_core::time::parse_iso(s)
            .ok_or_else(|| format!("{FETCHED_AT} {s:?} is not an RFC 3339 time"))?,
        Scalar::Null => default_time
            .ok_or_else(|| format!("no {FETCHED_AT} field: give the time with --fetched-at"))?,
        Scalar::Other => return Err(format!("{FETCHED_AT} is not a text")),
    };
    if fetched_at > not_after {
        return Err(format!(
            "{FETCHED_AT} {} is in the future (more than {} minutes past this machine's clock): correct the time in the file, or this machine's clock",
            crate::time_text(fetched_at),
            FUTURE_TOLERANCE.num_minutes()
        ));
    }
    let inner_iin = answer.result_json.as_ref().and_then(|p| p.iin.as_deref());
    if let (Some(top), Some(inner)) = (answer.iin.as_deref(), inner_iin)
        && top.trim() != inner.trim()
    {
        return Err(format!(
            "the top-level iin ({}) and result_json.iin ({}) differ: the answer is not stored under either",
            gbdfl_core::iin::mask(top.trim()),
            gbdfl_core::iin::mask(inner.trim())
        ));
    }
    let iin_text = answer.iin.as_deref().or(inner_iin).ok_or("no iin field")?;
    let mut warning = None;
    let iin = match Iin::parse(iin_text) {
        Ok(iin) => iin,
        Err(_) => {
            let iin = Iin::parse_unchecked(iin_text)
                .map_err(|e| format!("IIN {}: {e}", gbdfl_core::iin::mask(iin_text.trim())))?;
            warning = Some(format!(
                "IIN {} fails the check digit; stored all the same, marked unchecked",
                iin.masked()
            ));
            iin
        }
    };
    let summary =
        (answer.status == Some(Status::Valid)).then(|| Summary::of(iin.as_str(), Some(&answer)));
    Ok((
        ImportItem {
            session_id: answer
                .face2face_result
                .and_then(|f| f.backend_session_id)
                .unwrap_or_default(),
            fetched_at,
            status: answer.status.as_ref().map(|s| s.as_str().to_owned()),
            result: answer.result,
            failure_type: answer
                .failure_reason
                .as_ref()
                .and_then(|f| f.kind.as_deref().map(str::to_owned)),
            detail: answer.failure_reason.as_ref().map(|f| f.to_string()),
            body: line,
            summary,
            iin,
        },
        warning,
    ))
}

/// Who imports, and why: recorded with every imported lookup.
#[derive(Debug, Clone, Copy)]
pub struct Importer<'a> {
    /// The staff member importing, as declared.
    pub operator: &'a str,
    /// The machine importing.
    pub host: &'a str,
    /// Why the answers are imported; stored sealed with each lookup.
    pub purpose: Option<&'a str>,
    /// The fetch time of a line without a [`FETCHED_AT`] field; `None`
    /// makes such a line bad.
    pub default_time: Option<DateTime<Utc>>,
    /// Drop the secondary indexes while importing and build them at the
    /// end: faster for an import that is large next to the database.
    pub rebuild_indexes: bool,
    /// The audit entry each committed transaction appends with the number
    /// of lookups it stored.
    pub audit: Option<&'a crate::AuditEntry>,
}

/// What an import did.
#[derive(Debug, Default, Clone, Copy)]
pub struct ImportReport {
    /// The number of the last line that held an answer or a bad line.
    pub lines: u64,
    /// Lookups stored now, and those already stored by an earlier import.
    pub stored: ImportOutcome,
    /// Lines reported and skipped.
    pub bad: u64,
    /// Lines stored with a warning (an IIN that fails its check digit).
    pub warnings: u64,
}

/// Bytes read from the input at a time: whole lines of about this much go
/// to the workers together, split where they lie (some 2,000 answers).
const BLOCK: usize = 4 << 20;

/// Lines read from the input: a block of whole lines and the number of the
/// first line in it.
struct Block {
    first: u64,
    bytes: Zeroizing<Vec<u8>>,
}

/// One line's outcome: its number, its sealed row or why it was skipped,
/// and the warning about it.
type Sealed = (u64, Result<SealedLookup, String>, Option<String>);

/// Imports every line of `input` into `store`. `note` hears of each bad
/// line and warning (with its line number).
///
/// Three stages overlap: a reader cuts the input into blocks of whole
/// lines, the pool parses, summarises, compresses and seals each batch of
/// lines in parallel, and this thread inserts the sealed batches in order.
pub fn import(
    store: &Store,
    input: impl Read + Send,
    who: Importer<'_>,
    pool: &rayon::ThreadPool,
    note: &mut dyn FnMut(Note<'_>),
) -> Result<ImportReport, ArchiveError> {
    import_in_blocks(store, input, who, pool, note, BLOCK)
}

/// [`import`], reading blocks of `block` bytes: the indexes dropped if
/// asked, the three stages run ([`read_blocks`], [`seal_blocks`], and
/// [`hand_over`] feeding [`Store::insert_imported`] here), then the indexes
/// built again whatever happened.
fn import_in_blocks(
    store: &Store,
    input: impl Read + Send,
    who: Importer<'_>,
    pool: &rayon::ThreadPool,
    note: &mut dyn FnMut(Note<'_>),
    block: usize,
) -> Result<ImportReport, ArchiveError> {
    // One clock reading for the whole import: every line meets the same bound.
    let not_after = store.now() + FUTURE_TOLERANCE;
    store.bulk_mode()?;
    if who.rebuild_indexes {
        store.drop_indexes()?;
    }
    let opener = store.opener();
    let mut report = ImportReport::default();
    let scoped = std::thread::scope(|s| -> Result<(), ArchiveError> {
        let (blocks_tx, blocks) = mpsc::sync_channel::<Result<Block, ArchiveError>>(1);
        // Room for eight sealed blocks (about 20 MB): the workers go on
        // sealing while the writer waits on a checkpoint's sync. With room
        // for two they stalled; a million answers took 23.2 s, with eight
        // 21.0 s (more room gained nothing more; BENCHMARKS.md).
        let (sealed_tx, sealed) = mpsc::sync_channel::<Result<Vec<Sealed>, ArchiveError>>(8);
        // Sealed blocks' buffers go back to the reader to be filled again.
        let (spare_tx, spare) = mpsc::channel();
        s.spawn(move || read_blocks(input, block, &blocks_tx, &spare));
        s.spawn(move || seal_blocks(blocks, sealed_tx, spare_tx, pool, &opener, who, not_after));
        // Each block's good rows go straight into the open transaction.
        let stored = store.insert_imported(who.audit, |wait| {
            hand_over(&sealed, wait, &mut report, note)
        });
        report.stored = stored?;
        Ok(())
    });
    // Whatever happened, the indexes come back before the command ends.
    if who.rebuild_indexes {
        note(Note::Indexing);
        store.rebuild_indexes()?;
    }
    scoped?;
    Ok(report)
}

/// An import's middle stage: parses, summarises, compresses and seals the
/// lines of each block in parallel on `pool`, sends them on in the order
/// of the blocks, and gives each block's buffer back to the reader. An
/// error reading the input is sent on in place of a block and ends it, as
/// does a writer that stopped listening.
fn seal_blocks(
    blocks: mpsc::Receiver<Result<Block, ArchiveError>>,
    sealed: mpsc::SyncSender<Result<Vec<Sealed>, ArchiveError>>,
    spare: mpsc::Sender<Zeroizing<Vec<u8>>>,
    pool: &rayon::ThreadPool,
    opener: &Opener,
    who: Importer<'_>,
    not_after: DateTime<Utc>,
) {
    for block in blocks {
        let block = match block {
            Ok(b) => b,
            Err(e) => {
                let _ = sealed.send(Err(e));
                return;
            }
        };
        let lines = lines_of(&block);
        let done = pool.install(|| {
            lines
                .par_iter()
                .filter_map(|&(n, (start, end))| {
                    seal_line(n, &block.bytes[start..end], opener, who, not_after)
                })
                .collect::<Vec<_>>()
        });
        let _ = spare.send(block.bytes);
        if sealed.send(Ok(done)).is_err() {
            return;
        }
    }
}

/// An import's last stage, asked by the writer: the good rows of the next
/// sealed block, waiting for it at most `wait` (`None`: as long as it
/// takes). Counts the lines, bad lines and warnings into `report` and
/// tells `note` of each bad line and warning.
fn hand_over(
    sealed: &mpsc::Receiver<Result<Vec<Sealed>, ArchiveError>>,
    wait: Option<Duration>,
    report: &mut ImportReport,
    note: &mut dyn FnMut(Note<'_>),
) -> Result<Handed, ArchiveError> {
    let batch = match wait {
        None => sealed.recv().map_err(|_| RecvTimeoutError::Disconnected),
        Some(t) => sealed.recv_timeout(t),
    };
    let batch = match batch {
        Ok(batch) => batch?,
        Err(RecvTimeoutError::Timeout) => return Ok(Handed::NotYet),
        Err(RecvTimeoutError::Disconnected) => return Ok(Handed::End),
    };
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
    Ok(Handed::Rows(good))
}

/// Parses and seals one line; `None` for a blank line.
fn seal_line(
    n: u64,
    line: &[u8],
    opener: &Opener,
    who: Importer<'_>,
    not_after: DateTime<Utc>,
) -> Option<Sealed> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if line.iter().all(u8::is_ascii_whitespace) {
        return None;
    }
    Some(match parse_line(line, who.default_time, not_after) {
        Ok((item, warning)) => (
            n,
            opener
                .seal_import(
                    &item,
                    who.operator,
                    who.host,
                    who.purpose,
                    Some(gbdfl_core::os_user::described()),
                )
                .map_err(|e| e.to_string()),
            warning,
        ),
        Err(e) => (n, Err(e), None),
    })
}

/// The lines of a block: each one's number and where it lies (without its
/// line feed).
fn lines_of(block: &Block) -> Vec<(u64, (usize, usize))> {
    let bytes = &block.bytes[..];
    let mut lines = Vec::with_capacity(bytes.len() / 1024 + 1);
    let mut start = 0;
    for end in memchr::memchr_iter(b'\n', bytes) {
        lines.push((block.first + lines.len() as u64, (start, end)));
        start = end + 1;
    }
    if start < bytes.len() {
        lines.push((block.first + lines.len() as u64, (start, bytes.len())));
    }
    lines
}

/// Reads `input` in blocks of whole lines of about `size` bytes (the last
/// may lack its line feed) and sends them on, numbered, until the end or an
/// error. Each block is read into a buffer `spare` gives back when it has
/// one: a fresh 4 MiB buffer per block is mapped, faulted in and zeroed
/// page by page, then zeroized and unmapped, which cost an import of a
/// million answers about a second of CPU (BENCHMARKS.md). Bytes left in a
/// buffer from its last block are never read: only what `read` put there.
fn read_blocks(
    mut input: impl Read,
    size: usize,
    out: &mpsc::SyncSender<Result<Block, ArchiveError>>,
    spare: &mpsc::Receiver<Zeroizing<Vec<u8>>>,
) {
    let mut first = 1u64;
    let mut carry: Zeroizing<Vec<u8>> = Zeroizing::new(Vec::new());
    loop {
        let mut bytes = spare.try_recv().unwrap_or_default();
        // A buffer given back still holds its last block's length, so this
        // writes zeros only over the few bytes past that block's last line.
        bytes.resize(size.max(2 * carry.len()), 0);
        bytes[..carry.len()].copy_from_slice(&carry);
        let mut len = carry.len();
        let cut = loop {
            if len == bytes.len() {
                match memchr::memrchr(b'\n', &bytes) {
                    Some(i) => break i + 1,
                    // A line longer than the block: a block twice as large.
                    None => {
                        let mut bigger = Zeroizing::new(vec![0u8; 2 * bytes.len()]);
                        bigger[..len].copy_from_slice(&bytes[..len]);
                        bytes = bigger;
                    }
                }
            }
            match input.read(&mut bytes[len..]) {
                Ok(0) => break len,
                Ok(n) => len += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    let at = first + memchr::memchr_iter(b'\n', &bytes[..len]).count() as u64;
                    let _ = out.send(Err(ArchiveError::Read {
                        what: format!("line {at}"),
                        source: e,
                    }));
                    return;
                }
            }
        };
        // What follows the last whole line starts the next block.
        carry = Zeroizing::new(bytes[cut..len].to_vec());
        bytes.truncate(cut);
        if bytes.is_empty() {
            return;
        }
        let lines = memchr::memchr_iter(b'\n', &bytes).count() as u64;
        if out.send(Ok(Block { first, bytes })).is_err() {
            return;
        }
        first += lines;
    }
}

/// What an import says as it goes.
#[derive(Debug)]
pub enum Note<'a> {
    /// A line skipped: its number and why.
    Bad(u64, &'a str),
    /// A line stored with a warning: its number and the warning.
    Warning(u64, &'a str),
    /// Every line is in; the indexes dropped for the import are being
    /// built again (some seconds at a million answers).
    Indexing,
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

/// One line of the export: the answer's bytes as the service sent them
/// (keys in their order, numbers and escapes as written), with two changes
/// a JSON-lines file needs: line breaks, which valid JSON holds only
/// between its tokens, become spaces, and a `fetched_at` field is put
/// first when the answer has none. Surrounding whitespace is trimmed.
fn export_line(body: &[u8], at: DateTime<Utc>) -> Zeroizing<Vec<u8>> {
    let flat = |b: &u8| if matches!(b, b'\n' | b'\r') { b' ' } else { *b };
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => {
            let body = body.trim_ascii();
            let mut line = Zeroizing::new(Vec::with_capacity(body.len() + 48));
            if map.contains_key(FETCHED_AT) {
                line.extend(body.iter().map(flat));
            } else {
                // An object: its first byte is the `{`.
                line.push(b'{');
                line.extend_from_slice(
                    serde_json::json!({ FETCHED_AT: crate::time_text(at) })
                        .to_string()
                        .trim_matches(['{', '}'])
                        .as_bytes(),
                );
                if !map.is_empty() {
                    line.push(b',');
                }
                line.extend(body[1..].iter().map(flat));
            }
            line
        }
        // Not an object: only answers are exported, so this is a body
        // stored by an older gbdfl; keep it whole, as a JSON string.
        _ => Zeroizing::new(
            serde_json::to_vec(&serde_json::json!({
                "unparsed_body": String::from_utf8_lossy(body),
                FETCHED_AT: crate::time_text(at),
            }))
            .unwrap_or_default(),
        ),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use proptest::prelude::*;
    use serde_json::{Value, json};

    use super::*;

    #[test]
    fn an_exported_line_is_the_answer_as_sent_with_fetched_at_first() {
        let at = DateTime::parse_from_rfc3339("2030-06-01T09:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let body = b"{\"status\": \"VALID\",\r\n  \"result\": 1.50, \"a\": \"\\u0041\"}\n";
        let line = export_line(body, at);
        assert_eq!(
            std::str::from_utf8(&line).unwrap(),
            r#"{"fetched_at":"2030-06-01T09:00:00.000Z","status": "VALID",    "result": 1.50, "a": "\u0041"}"#
        );
        let v: Value = serde_json::from_slice(&line).unwrap();
        assert_eq!(v["a"], "A");
        assert_eq!(
            &*export_line(b"{}", at),
            br#"{"fetched_at":"2030-06-01T09:00:00.000Z"}"#
        );
        let with = br#"{"z": 1, "fetched_at": "2020-01-01T00:00:00Z"}"#;
        assert_eq!(&*export_line(with, at), with);
    }
    use crate::testing::{test_importer, test_store};
    use gbdfl_core::api::Response;
    use gbdfl_emulator::answer_like;
    use gbdfl_emulator::synthetic_archive;

    /// What an import keeps of a line, for comparing two ways of reading it.
    type Kept = (
        String,
        Option<String>,
        Option<bool>,
        Option<String>,
        Option<String>,
        String,
        Option<Vec<u8>>,
    );

    /// The line read the way import read it before `api::parse_answer`:
    /// the whole [`Response`], through `serde_json::Value` for every
    /// object, and [`Summary::of`] of it. The reference for `parse_line`.
    fn through_response(line: &[u8]) -> Option<Kept> {
        let r: Response = serde_json::from_slice(line).ok()?;
        let iin = r
            .iin
            .clone()
            .or_else(|| r.result_json.as_ref().and_then(|p| p.iin.clone()))?;
        let iin = Iin::parse_unchecked(&iin).ok()?;
        let valid = r.status == Some(Status::Valid);
        Some((
            iin.as_str().to_owned(),
            r.status.as_ref().map(|s| s.as_str().to_owned()),
            r.result,
            r.failure_reason.as_ref().and_then(|f| f.kind.clone()),
            r.failure_reason.as_ref().map(|f| f.to_string()),
            r.face2face_result
                .as_ref()
                .and_then(|f| f.backend_session_id.clone())
                .unwrap_or_default(),
            valid.then(|| Summary::of(iin.as_str(), Some(&r)).encode()),
        ))
    }

    fn kept(line: &[u8]) -> Option<Kept> {
        let (item, _) = parse_line(
            line,
            Some(DateTime::<Utc>::MIN_UTC),
            DateTime::<Utc>::MAX_UTC,
        )
        .ok()?;
        assert_eq!(item.body, line);
        Some((
            item.iin.as_str().to_owned(),
            item.status,
            item.result,
            item.failure_type,
            item.detail,
            item.session_id.into_owned(),
            item.summary.map(|s| s.encode()),
        ))
    }

    fn base() -> Value {
        let mut v = gbdfl_emulator::synthetic_response(
            "880510400015",
            "3e9b7d42-6c1a-4f8e-a2d5-9b4c8e1f7a3d",
            chrono::NaiveDate::from_ymd_opt(2030, 7, 1).unwrap(),
        );
        v["failure_reason"] = json!({"type": "CLIENT", "detail": "x"});
        v
    }

    #[test]
    fn odd_types_are_read_as_the_whole_response_reads_them() {
        let odd = [
            json!({"status": 5, "result": "TRUE", "iin": 880510400015u64}),
            json!({"status": "valid", "result": 2, "failure_reason": "oops"}),
            json!({"status": " VALID", "result": -1, "failure_reason": {"type": 1.5, "detail": [1]}}),
            json!({"status": "VALID", "result": 1.0, "face2face_result": [1, 2]}),
            json!({"status": "VALID", "result": 18446744073709551615u64,
                   "face2face_result": {"backend_session_id": 7, "result": "x"}}),
            json!({"status": "VALID", "result_json": "none"}),
            json!({"status": "VALID", "result_json": {"iin": "880510400015", "surname": 12,
                   "name": null, "patronymic": true, "life_status": {"a": 1},
                   "documents": [{"type": "ID", "number": 123, "expiry_date": null},
                                 5, null, "x", [], ["ПАСПОРТ", "N1", "2020-01-01", "2030-01-01"],
                                 ["a", "b", "c", "d", "e", "f", "g"],
                                 ["a", "b", "c", "d", "e", "f"],
                                 {"type": "A", "type": "B", "status": "s"}]}}),
            json!({"status": "VALID", "result_json": {"iin": "880510400015", "documents": {"0": 1}}}),
            json!({"status": "VALID", "iin": "880510400015",
                   "result_json": {"surname": "  Ж  ", "name": "", "documents": "none"}}),
        ];
        for mut v in odd {
            if v.get("iin").is_none() && v["result_json"].get("iin").is_none() {
                v["iin"] = json!("880510400015");
            }
            let line = v.to_string();
            let want = through_response(line.as_bytes());
            assert!(want.is_some(), "{line}");
            assert_eq!(kept(line.as_bytes()), want, "{line}");
        }
        // Escapes are read, and a repeated field inside an object keeps its
        // last value, as a serde_json::Value does.
        let line = r#"{"iin":"8805104000\u0031\u0035","status":"VALID","result_json":{"surname":"\u0416","surname":"B","documents":[{"number":"1","number":"2"}]}}"#;
        assert_eq!(kept(line.as_bytes()), through_response(line.as_bytes()));
        assert!(
            kept(line.as_bytes())
                .unwrap()
                .6
                .unwrap()
                .windows(1)
                .any(|w| w == b"2")
        );
    }

    /// A reader that gives `data` a little at a time, then fails.
    struct Breaks {
        data: Vec<u8>,
        at: usize,
    }

    impl Read for Breaks {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            if self.at == self.data.len() {
                return Err(std::io::Error::other("the disk went away"));
            }
            let n = buf.len().min(self.data.len() - self.at).min(1000);
            buf[..n].copy_from_slice(&self.data[self.at..self.at + n]);
            self.at += n;
            Ok(n)
        }
    }

    /// A read error midway ends the import with the line it reached, and
    /// what was read before it is stored: importing the file again stores
    /// only the rest.
    #[test]
    fn a_read_error_midway_keeps_what_came_before_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = test_store(dir.path());
        let lines = synthetic_archive(60, "9002");
        let total = lines.lines().count() as u64;
        let who = test_importer();
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .unwrap();
        let broken = Breaks {
            data: lines.as_bytes().to_vec(),
            at: 0,
        };
        let err = import_in_blocks(&store, broken, who, &pool, &mut |_| {}, 8192).unwrap_err();
        assert!(
            matches!(&err, ArchiveError::Read { what, .. } if what.starts_with("line ")),
            "{err}"
        );
        let kept = store.count_lookups().unwrap() as u64;
        assert!(kept > 0 && kept < total, "{kept} of {total} kept");
        let again = import_in_blocks(&store, lines.as_bytes(), who, &pool, &mut |_| {}, 8192);
        let again = again.unwrap().stored;
        assert_eq!((again.inserted, again.already), (total - kept, kept));
    }

    #[test]
    fn blocks_hold_whole_lines_numbered_across_blocks() {
        let input = "a\nbb\n\nccc\r\nthis line is longer than a block\nd\ne";
        for (size, stale) in [(1, 0), (3, 0), (8, 0), (1 << 20, 0), (3, 5), (8, 5)] {
            let (tx, rx) = mpsc::sync_channel(100);
            // Buffers given back full of other lines' bytes, of every length.
            let (spare_tx, spare) = mpsc::channel();
            for len in 0..stale * 4 {
                spare_tx.send(Zeroizing::new(b"x\ny".repeat(len))).unwrap();
            }
            read_blocks(input.as_bytes(), size, &tx, &spare);
            drop(tx);
            let mut got = Vec::new();
            for block in rx {
                let block = block.unwrap();
                assert!(block.bytes.ends_with(b"\n") || block.bytes.ends_with(b"e"));
                for (n, (start, end)) in lines_of(&block) {
                    got.push((
                        n,
                        String::from_utf8(block.bytes[start..end].to_vec()).unwrap(),
                    ));
                }
            }
            let want: Vec<(u64, String)> = input
                .split('\n')
                .enumerate()
                .map(|(i, l)| (i as u64 + 1, l.to_owned()))
                .collect();
            assert_eq!(got, want, "block size {size}, stale buffers {stale}");
        }
        let (tx, rx) = mpsc::sync_channel(1);
        read_blocks(&b""[..], 8, &tx, &mpsc::channel().1);
        drop(tx);
        assert!(rx.iter().next().is_none());
    }

    #[test]
    fn bad_lines_say_why() {
        let never = DateTime::<Utc>::MAX_UTC;
        let why = |line: &str| {
            parse_line(line.as_bytes(), None, never)
                .err()
                .unwrap_or_default()
        };
        assert!(why("[1]").starts_with("not a JSON object"));
        assert!(why("{\"iin\": ").starts_with("not JSON"));
        assert!(why("{} x").starts_with("not JSON"));
        assert!(
            parse_line(b"{\"iin\":\"\xff\"}", None, never)
                .unwrap_err()
                .starts_with("not JSON (not UTF-8")
        );
        assert!(
            why(r#"{"iin":"1","iin":"2"}"#)
                .starts_with("not a GBDFL answer (duplicate field `iin`")
        );
        assert_eq!(
            why(r#"{"iin":"880510400015"}"#),
            "no fetched_at field: give the time with --fetched-at"
        );
        assert_eq!(
            why(r#"{"iin":"880510400015","fetched_at":5}"#),
            "fetched_at is not a text"
        );
        assert!(
            why(r#"{"iin":"880510400015","fetched_at":"soon"}"#)
                .contains("is not an RFC 3339 time")
        );
        assert_eq!(
            why(r#"{"fetched_at":"2030-01-01T00:00:00Z"}"#),
            "no iin field"
        );
        let (item, warning) = parse_line(
            br#"{"iin":"880510400016","fetched_at":"2030-01-01T00:00:00+06:00","extra":[{"x":null}]}"#,
            None,
            never,
        )
        .unwrap();
        assert!(!item.iin.is_checked());
        assert!(warning.unwrap().contains("fails the check digit"));
        assert_eq!(
            crate::time_text(item.fetched_at),
            "2029-12-31T18:00:00.000Z"
        );
    }

    #[test]
    fn future_times_and_disagreeing_iins_are_bad_lines() {
        let bound: DateTime<Utc> = "2030-01-01T00:05:00Z".parse().unwrap();
        let line = |at: &str, inner: &str| {
            format!(
                r#"{{"iin":"880510400015","fetched_at":"{at}","result_json":{{"iin":"{inner}"}}}}"#
            )
        };
        let why = |l: String| parse_line(l.as_bytes(), None, bound).err();
        assert_eq!(why(line("2030-01-01T00:05:00Z", "880510400015")), None);
        // The bound holds across time zones.
        assert_eq!(
            why(line("2030-01-01T06:05:00+06:00", " 880510400015")),
            None
        );
        let late = why(line("2030-01-01T00:05:00.001Z", "880510400015")).unwrap();
        assert!(late.contains("is in the future"), "{late}");
        let other = why(line("2020-01-01T00:00:00Z", "950215312347")).unwrap();
        assert!(other.contains("differ"), "{other}");
        assert!(!other.contains("880510400015") && !other.contains("950215312347"));
        // --fetched-at is held to the same bound.
        let no_time = r#"{"iin":"880510400015"}"#.as_bytes();
        assert!(parse_line(no_time, Some(bound + chrono::TimeDelta::seconds(1)), bound).is_err());
        assert!(parse_line(no_time, Some(bound), bound).is_ok());
    }

    /// A record answered far in the future (stored before import refused
    /// such times) is never the latest for `show` or the cache. (The
    /// reports' scan believes it: reports are made as of a day, `--as-of`,
    /// that may lie ahead.)
    #[test]
    fn a_future_answer_already_stored_is_not_the_latest() {
        let dir = tempfile::tempdir().unwrap();
        let store = test_store(dir.path());
        let iin = &gbdfl_emulator::synthetic_iin(1).unwrap();
        let line = |session: &str, at: &str| {
            let mut v = gbdfl_emulator::synthetic_response(iin, session, Utc::now().date_naive());
            v[FETCHED_AT] = at.into();
            v.to_string()
        };
        let past = line("s1", "2020-01-01T00:00:00Z");
        let future = line("s2", "2999-01-01T00:00:00Z");
        let opener = store.opener();
        let rows: Vec<SealedLookup> = [&past, &future]
            .iter()
            .enumerate()
            .map(|(i, l)| {
                let (_, row, _) = seal_line(
                    i as u64 + 1,
                    l.as_bytes(),
                    &opener,
                    test_importer(),
                    DateTime::<Utc>::MAX_UTC,
                )
                .unwrap();
                row.unwrap()
            })
            .collect();
        let mut rows = Some(rows);
        store
            .insert_imported(None, |_| {
                Ok::<_, ArchiveError>(match rows.take() {
                    Some(r) => Handed::Rows(r),
                    None => Handed::End,
                })
            })
            .unwrap();
        assert_eq!(store.count_lookups().unwrap(), 2);
        let at = "2020-01-01T00:00:00Z".parse::<DateTime<Utc>>().unwrap();
        let latest = store
            .latest_valid(&Iin::parse(iin).unwrap())
            .unwrap()
            .unwrap();
        assert_eq!(latest.lookup.answered_at, Some(at));
    }

    /// Where a field of an answer may be replaced by anything.
    const PATHS: [&str; 16] = [
        "/status",
        "/result",
        "/failure_reason",
        "/failure_reason/type",
        "/failure_reason/detail",
        "/face2face_result",
        "/face2face_result/backend_session_id",
        "/result_json",
        "/result_json/surname",
        "/result_json/patronymic",
        "/result_json/life_status",
        "/result_json/documents",
        "/result_json/documents/0",
        "/result_json/documents/1/type",
        "/result_json/documents/0/expiry_date",
        "/result_json/documents/1/status",
    ];

    proptest! {
        #![proptest_config(ProptestConfig {
            cases: ProptestConfig::default().cases.max(512),
            failure_persistence: None,
            ..ProptestConfig::default()
        })]

        /// Whatever odd values an answer holds, import keeps what the whole
        /// Response would give.
        #[test]
        fn parse_line_keeps_what_the_whole_response_gives(
            changes in proptest::collection::vec((0..PATHS.len(), answer_like()), 1..5)
        ) {
            let mut v = base();
            for (path, value) in changes {
                if let Some(slot) = v.pointer_mut(PATHS[path]) {
                    *slot = value;
                }
            }
            let line = v.to_string();
            prop_assert_eq!(kept(line.as_bytes()), through_response(line.as_bytes()), "{}", line);
        }
    }
}
