//! The document summary of a VALID answer: the few fields the expiry scan
//! reads (the IIN asked for, the full name, the life status, and each
//! document's type, number, expiry date and status), in a small binary
//! layout that the store seals on its own (`summary_enc`, docs/FORMAT.md).
//!
//! Why: `gbdfl expiring` and `report expiring` walk every person. Opening
//! and parsing each whole 2 KB answer is most of their time; opening a
//! summary of a hundred bytes is not. Rule this module keeps: the person
//! built back from a summary gives exactly the rows the whole answer gives
//! ([`crate::expiry::check`] runs on either), so reports do not depend on
//! which one they read (crates/emulator/tests/summary.rs, over the
//! emulator's synthetic people).

use std::ops::Deref;

use crate::api::{Document, Person, Response};

/// The layout version, the first byte of every summary.
const VERSION: u8 = 1;
/// Texts that recur in almost every answer, stored as one byte
/// (`0x80 + index`). Fixed forever: append only.
const COMMON: [&str; 8] = [
    "ДОКУМЕНТ ДЕЙСТВИТЕЛЕН",
    "Нормальный",
    "УДОСТОВЕРЕНИЕ РК",
    "ПАСПОРТ",
    "ВОДИТЕЛЬСКОЕ УДОСТОВЕРЕНИЕ",
    "ДОКУМЕНТ НЕДЕЙСТВИТЕЛЕН",
    "Умерший",
    "",
];
const TAG_LONG: u8 = 0xFD;
const TAG_NONE: u8 = 0xFE;

/// The summary of one stored VALID answer.
#[derive(Debug, Clone, Default)]
pub struct Summary {
    /// The IIN the lookup was made for (not the one inside the answer).
    pub iin: String,
    /// `None` when the answer has no person gbdfl can read.
    pub person: Option<Person>,
}

impl Summary {
    /// The summary of an answer to a lookup of `iin`, owned or borrowed
    /// (`gbdfl import` makes it of the answer it reads from the line).
    pub fn of<T: Deref<Target = str>>(iin: &str, response: Option<&Response<T>>) -> Summary {
        let text = |t: &Option<T>| t.as_deref().map(str::to_owned);
        let person = response
            .and_then(|r| r.result_json.as_ref())
            .map(|p| Person {
                surname: Some(crate::api::full_name([
                    p.surname.as_deref(),
                    p.name.as_deref(),
                    p.patronymic.as_deref(),
                ])),
                life_status: text(&p.life_status),
                documents: p
                    .documents
                    .iter()
                    .map(|d| Document {
                        kind: text(&d.kind),
                        number: text(&d.number),
                        expiry_date: text(&d.expiry_date),
                        status: text(&d.status),
                        ..Document::default()
                    })
                    .collect(),
                ..Person::default()
            });
        Summary {
            iin: iin.to_owned(),
            person,
        }
    }

    /// The summary of a stored body, as [`Summary::of`] after parsing it.
    pub fn of_body(iin: &str, body: &[u8]) -> Summary {
        Summary::of(iin, crate::api::parse_response(body).ok().as_ref())
    }

    /// The binary layout: version, flag (1 = a person follows), the IIN,
    /// then the full name, life status, document count (u16 LE) and per
    /// document its type, number, expiry date and status. Each text is a
    /// tag byte: `0x00..=0x7F` its UTF-8 length then the bytes; `0x80 + i`
    /// the i-th common text; `0xFD` a u32 LE length then the bytes; `0xFE` absent.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(128);
        out.push(VERSION);
        out.push(u8::from(self.person.is_some()));
        put(&mut out, Some(&self.iin));
        if let Some(p) = &self.person {
            put(&mut out, p.surname.as_deref());
            put(&mut out, p.life_status.as_deref());
            let n = p.documents.len().min(u16::MAX as usize);
            out.extend_from_slice(&(n as u16).to_le_bytes());
            for d in &p.documents[..n] {
                put(&mut out, d.kind.as_deref());
                put(&mut out, d.number.as_deref());
                put(&mut out, d.expiry_date.as_deref());
                put(&mut out, d.status.as_deref());
            }
        }
        out
    }

    /// Reads what [`Summary::encode`] wrote into `self`, reusing the room
    /// its texts already have: a scan decoding a million summaries then
    /// allocates almost nothing. `None` (and `self` unspecified) if `bytes`
    /// are not a summary.
    pub fn decode_into(&mut self, bytes: &[u8]) -> Option<()> {
        let mut r = Reader(bytes);
        if r.byte()? != VERSION {
            return None;
        }
        let has_person = r.byte()? == 1;
        let mut iin = Some(std::mem::take(&mut self.iin));
        r.text_into(&mut iin)?;
        self.iin = iin.unwrap_or_default();
        if !has_person {
            self.person = None;
            return r.0.is_empty().then_some(());
        }
        let p = self.person.get_or_insert_with(Person::default);
        r.text_into(&mut p.surname)?;
        r.text_into(&mut p.life_status)?;
        let n = u16::from_le_bytes([r.byte()?, r.byte()?]) as usize;
        p.documents.truncate(n);
        p.documents.resize_with(n, Document::default);
        for d in &mut p.documents {
            r.text_into(&mut d.kind)?;
            r.text_into(&mut d.number)?;
            r.text_into(&mut d.expiry_date)?;
            r.text_into(&mut d.status)?;
        }
        r.0.is_empty().then_some(())
    }

    /// Reads what [`Summary::encode`] wrote; `None` if it is not that.
    pub fn decode(bytes: &[u8]) -> Option<Summary> {
        let mut s = Summary::default();
        s.decode_into(bytes).map(|()| s)
    }
}

fn put(out: &mut Vec<u8>, s: Option<&str>) {
    let Some(s) = s else {
        out.push(TAG_NONE);
        return;
    };
    if let Some(i) = COMMON.iter().position(|c| *c == s) {
        out.push(0x80 + i as u8);
    } else if s.len() < 0x80 {
        out.push(s.len() as u8);
        out.extend_from_slice(s.as_bytes());
    } else {
        out.push(TAG_LONG);
        out.extend_from_slice(&(s.len() as u32).to_le_bytes());
        out.extend_from_slice(s.as_bytes());
    }
}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn byte(&mut self) -> Option<u8> {
        let (&b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(b)
    }

    fn bytes(&mut self, n: usize) -> Option<&[u8]> {
        if self.0.len() < n {
            return None;
        }
        let (a, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(a)
    }

    /// Reads one text (tag, then its bytes) into `out`, reusing its room.
    fn text_into(&mut self, out: &mut Option<String>) -> Option<()> {
        let tag = self.byte()?;
        let len = match tag {
            TAG_NONE => {
                *out = None;
                return Some(());
            }
            TAG_LONG => {
                let b = self.bytes(4)?;
                u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize
            }
            0x80..0xFD => {
                let common = COMMON.get((tag - 0x80) as usize)?;
                let s = out.get_or_insert_with(String::new);
                s.clear();
                s.push_str(common);
                return Some(());
            }
            n => n as usize,
        };
        let text = std::str::from_utf8(self.bytes(len)?).ok()?;
        let s = out.get_or_insert_with(String::new);
        s.clear();
        s.push_str(text);
        Some(())
    }
}
