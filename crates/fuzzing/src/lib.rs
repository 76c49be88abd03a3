//! The fuzz targets, as plain functions: each takes arbitrary bytes, runs one
//! parser that meets hostile input, and panics only when a promise of that
//! parser is broken. `fuzz/` (cargo fuzz, libFuzzer) and the proptest
//! properties below call the very same functions, so a crash found by one
//! is replayed by the other.
//!
//! Rule this module keeps: a target panics only when a promise users rely on
//! is broken (the parser panicked, a message showed a full IIN, a tampered
//! record opened); the properties in `tests` run every target on random
//! input, so `cargo test` holds the parsers to it.

#![deny(missing_docs)]

use std::sync::OnceLock;

use chrono::{NaiveDate, TimeZone, Utc};

use gbdfl_core::api;
use gbdfl_core::iin::{self, Iin};
use gbdfl_core::limits;
use gbdfl_report::render;
use gbdfl_service::batch_csv;
use gbdfl_service::lookup;
use gbdfl_store::crypto::{self, Keys, MasterKey, StableKeys};
use gbdfl_store::{Lookup, Outcome, Source};

/// Whether `s` holds a run of 12 or more ASCII digits: a full IIN, maybe.
pub fn has_twelve_digits(s: &str) -> bool {
    let mut run = 0;
    for b in s.bytes() {
        run = if b.is_ascii_digit() { run + 1 } else { 0 };
        if run >= 12 {
            return true;
        }
    }
    false
}

fn sample_lookup() -> Lookup {
    let t = Utc.with_ymd_and_hms(2026, 11, 28, 9, 15, 0).unwrap();
    Lookup {
        id: "0194f1a2-0000-7000-8000-000000000000".into(),
        requested_at: t,
        answered_at: Some(t),
        operator: "fuzz".into(),
        host: "fuzz".into(),
        source: Source::Service,
        outcome: Outcome::Answered,
        status: Some("VALID".into()),
        result: Some(true),
        http_status: Some(200),
        failure_type: None,
        iin_checked: true,
        cached_from: None,
        key_version: 1,
        iin: "950215300001".into(),
        purpose: None,
        detail: None,
        reached: Some(gbdfl_store::Reached::Yes),
        os_user: None,
    }
}

/// The response parser and everything that reads a parsed answer: the
/// error-message reader, the status advice, the person renderer and the
/// expiry check. A body that parses, written back out and parsed again,
/// gives the same answer.
pub fn response_parser(data: &[u8]) {
    let _ = api::error_message(data);
    let Ok(resp) = api::parse_response(data) else {
        return;
    };
    let _ = lookup::is_service_error(&resp);
    let _ = lookup::status_advice(&resp);
    let today = NaiveDate::from_ymd_opt(2026, 11, 28).unwrap();
    let _ = render::person("950215300001", &resp, &sample_lookup(), today);
    let rules = gbdfl_core::expiry::Rules {
        as_of: today,
        within_days: 90,
    };
    let _ = gbdfl_core::expiry::check(
        "950215300001",
        resp.result_json.as_ref(),
        today.and_hms_opt(12, 0, 0).unwrap().and_utc(),
        &rules,
    );
    let again = serde_json::to_vec(&resp).expect("a parsed answer serialises");
    let reparsed = api::parse_response(&again).expect("a serialised answer parses again");
    assert_eq!(
        serde_json::to_value(&reparsed).unwrap(),
        serde_json::to_value(&resp).unwrap(),
        "parse is not stable under a round trip"
    );
}

/// The IIN validator: an accepted IIN is 12 digits with a real birth date,
/// a known century and sex, and the published check digit; the masked form
/// never shows it whole; rejecting never panics.
pub fn iin(data: &[u8]) {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let masked = iin::mask(s);
    assert_eq!(masked.chars().count(), s.chars().count());
    if s.chars().count() >= 8 {
        assert!(!has_twelve_digits(&masked));
    }
    let unchecked = Iin::parse_unchecked(s);
    match Iin::parse(s) {
        Ok(iin) => {
            let d = iin.as_str();
            assert_eq!(d.len(), 12);
            assert!(d.bytes().all(|b| b.is_ascii_digit()));
            assert!(iin.is_checked());
            assert!(iin.birth_date().is_some());
            assert!(iin.sex().is_some());
            assert_eq!(iin::complete(&d[..11]).as_deref(), Some(d));
            assert!(!iin.masked().contains(d));
            assert!(!format!("{iin:?} {iin}").contains(d));
            assert!(
                unchecked
                    .expect("a valid IIN passes unchecked")
                    .is_checked()
            );
        }
        Err(e) => {
            assert!(
                !has_twelve_digits(&e.to_string()),
                "error shows digits: {e}"
            );
            if let Ok(u) = unchecked {
                assert!(!u.is_checked());
                let _ = (u.birth_date(), u.sex(), u.masked());
            }
        }
    }
}

/// The date parsers: document dates (`gbdfl_core::time::parse_date`, which the expiry
/// report uses) and session creation times. A parsed date printed as
/// `YYYY-MM-DD` parses back to itself; errors quote at most 40 characters
/// of the input.
pub fn date(data: &[u8]) {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Some(d) = gbdfl_core::time::parse_date(s) {
        let printed = d.format("%Y-%m-%d").to_string();
        // Years past 9999 print with a sign and do not read back; the API
        // never sends them, and they only need not to panic.
        if (0..=9999).contains(&chrono::Datelike::year(&d)) {
            assert_eq!(gbdfl_core::time::parse_date(&printed), Some(d));
        }
        let doc = api::Document {
            expiry_date: Some(s.to_owned()),
            ..api::Document::default()
        };
        let _ = render::expiry_text(&doc, NaiveDate::from_ymd_opt(2026, 11, 28).unwrap());
    }
    match lookup::parse_session_time(s) {
        Ok(t) => {
            let _ = render::local_time(t);
        }
        // At most 40 characters are quoted, each escaped to at most 10.
        Err(e) => assert!(e.chars().count() < 40 * 10 + 100, "error too long: {e}"),
    }
    let today = NaiveDate::from_ymd_opt(2026, 11, 28).unwrap();
    let _ = gbdfl_core::expiry::Rules::parse(s, None, today);
    let _ = gbdfl_core::expiry::Rules::parse("90d", Some(s), today);
    // Every range parser: no panic, and the value is cut in the message
    // (20 characters, each escaped to at most 10).
    for r in [limits::MAX_AGE, limits::TIMEOUT, limits::RETRY] {
        if let Err(e) = limits::parse_duration("SRC", s, r) {
            assert!(
                e.message.chars().count() < 20 * 10 + 200,
                "error too long: {e}"
            );
        }
    }
    for r in [limits::THREADS, limits::MAX_RESPONSE_BYTES] {
        if let Err(e) = limits::parse_count("SRC", s, r) {
            assert!(
                e.message.chars().count() < 20 * 10 + 200,
                "error too long: {e}"
            );
        }
    }
}

struct Sealed {
    keys: Keys,
    aad: Vec<u8>,
    sealed: Vec<u8>,
    plain: &'static [u8],
}

fn sealed_record() -> &'static Sealed {
    static SEALED: OnceLock<Sealed> = OnceLock::new();
    SEALED.get_or_init(|| {
        let master = MasterKey::from_bytes([7; crypto::KEY_LEN]);
        let stable = StableKeys::generate().expect("randomness");
        let keys = master.keys(&stable);
        let aad = crypto::associated_data("lookups", "response_enc", "row-1", 1);
        let plain: &'static [u8] = b"\0{\"status\":\"VALID\",\"result_json\":{\"surname\":\"A\"}}";
        let sealed = keys.seal(plain, &aad).expect("seal");
        Sealed {
            keys,
            aad,
            sealed,
            plain,
        }
    })
}

/// Opening a stored record with tampered bytes: the first byte chooses the
/// tampering (flip bits across the value, cut it, extend it, move it to
/// another row, or replace it outright with the rest of the input); any
/// change makes opening fail, and never panic.
pub fn open_record(data: &[u8]) {
    let s = sealed_record();
    let Some((&op, rest)) = data.split_first() else {
        return;
    };
    let (candidate, aad): (Vec<u8>, Vec<u8>) = match op % 5 {
        0 => {
            let mut v = s.sealed.clone();
            for (i, b) in rest.iter().enumerate() {
                let at = i % v.len();
                v[at] ^= b;
            }
            (v, s.aad.clone())
        }
        1 => {
            let cut = rest.first().map_or(0, |&n| usize::from(n)) % s.sealed.len();
            (s.sealed[..cut].to_vec(), s.aad.clone())
        }
        2 => {
            let mut v = s.sealed.clone();
            v.extend_from_slice(rest);
            (v, s.aad.clone())
        }
        3 => (s.sealed.clone(), rest.to_vec()),
        _ => (rest.to_vec(), s.aad.clone()),
    };
    let opened = s.keys.open(&candidate, &aad);
    if candidate == s.sealed && aad == s.aad {
        assert_eq!(
            opened.expect("the untouched value opens").as_slice(),
            s.plain
        );
    } else {
        assert!(opened.is_err(), "a tampered value opened");
    }
}

/// The batch CSV reader: rows and bad rows name distinct lines in file
/// order, no (IIN, session) pair comes twice, every good row holds a valid
/// IIN and a canonical session id, and no reason shows a full IIN.
pub fn batch_csv(data: &[u8]) {
    let Ok((rows, bad)) = batch_csv::parse(data) else {
        return;
    };
    let text = data.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(data);
    let physical_lines = batch_csv::line_breaks(text, 0..text.len()) as u64 + 1;
    let mut lines: Vec<u64> = rows
        .iter()
        .map(|r| r.line)
        .chain(bad.iter().map(|b| b.line))
        .collect();
    for &l in &lines {
        assert!(
            (2..=physical_lines).contains(&l),
            "line {l} of {physical_lines}"
        );
    }
    let n = lines.len();
    lines.sort_unstable();
    lines.dedup();
    assert_eq!(lines.len(), n, "two results for one line");
    let mut pairs = std::collections::HashSet::new();
    for r in &rows {
        assert!(Iin::parse(&r.iin).is_ok());
        assert_eq!(
            lookup::SessionId::parse(&r.session_id)
                .map(|s| s.as_str().to_owned())
                .ok()
                .as_ref(),
            Some(&r.session_id)
        );
        assert!(
            pairs.insert((r.iin.clone(), r.session_id.clone())),
            "duplicate row"
        );
        if let Some(t) = &r.session_created_at {
            assert!(lookup::parse_session_time(t).is_ok());
        }
    }
    for b in &bad {
        assert!(
            !has_twelve_digits(&b.reason),
            "reason shows digits: {}",
            b.reason
        );
    }
}

#[cfg(test)]
pub(crate) mod tests;
