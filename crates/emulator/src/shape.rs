//! The JSON shapes of a GBDFL answer, shared by the fixtures and the synthetic
//! people, and the deterministic picker both use.
//!
//! Rule this module keeps: every answer object of a fixture or a synthetic
//! person is built by [`envelope`], so all outcomes carry the same top-level
//! fields as the API page's example, and `result` is true exactly when
//! `status` is VALID. (The fault switches' broken answers are built apart,
//! on purpose.)

use chrono::{NaiveDate, NaiveTime, TimeDelta};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// What the emulator sends back for one request on the API path.
#[derive(Debug)]
pub(crate) enum Reply {
    /// 200 with a GBDFL response object (any status).
    Gbdfl(Value),
    /// An HTTP error with a JSON body such as `{"detail": "..."}`.
    Error(u16, Value),
    /// 200 with an HTML page, as a misconfigured proxy would send.
    Html(&'static str),
}

/// `{"detail": text}`, the error body of the API.
pub(crate) fn detail(text: &str) -> Value {
    json!({ "detail": text })
}

/// `failure_reason` of the API page: `{type, detail}`.
pub(crate) fn failure(kind: &str, detail: &str) -> Value {
    json!({ "type": kind, "detail": detail })
}

/// A deterministic stream of numbers: SHA-256 of the parts seeds splitmix64,
/// which is cheap enough for benchmarks that build millions of people.
pub(crate) struct Picks(u64);

impl Picks {
    pub(crate) fn new(parts: &[&str]) -> Picks {
        let d = seed(parts);
        let mut b = [0u8; 8];
        b.copy_from_slice(&d[..8]);
        Picks(u64::from_le_bytes(b))
    }

    pub(crate) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n` > 0).
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    /// True with the given percent chance.
    pub(crate) fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    /// One item of a non-empty list.
    pub(crate) fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

fn seed(parts: &[&str]) -> [u8; 32] {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0u8]);
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(&h.finalize());
    out
}

/// A version-4-shaped UUID derived from the parts, so ids are stable.
pub(crate) fn uuid_from(parts: &[&str]) -> String {
    let d = seed(parts);
    let mut b = [0u8; 16];
    b.copy_from_slice(&d[..16]);
    uuid::Builder::from_random_bytes(b).into_uuid().to_string()
}

/// The top-level response object of the API page.
pub(crate) fn envelope(
    backend_session_id: String,
    iin: &str,
    status: &str,
    face2face: Value,
    result_json: Value,
    failure_reason: Value,
) -> Value {
    json!({
        "backend_session_id": backend_session_id,
        "failure_reason": failure_reason,
        "face2face_result": face2face,
        "iin": iin,
        "result_json": result_json,
        "status": status,
        "result": status == "VALID",
    })
}

/// One entry of `result_json.documents`.
pub(crate) fn document(kind: &str, number: &str, issue: &str, expiry: &str, status: &str) -> Value {
    json!({
        "type": kind,
        "number": number,
        "issue_date": issue,
        "expiry_date": expiry,
        "issuer": "МВД РК",
        "status": status,
    })
}

/// Status of a document that is in force.
pub(crate) const DOC_VALID: &str = "ДОКУМЕНТ ДЕЙСТВИТЕЛЕН";

/// A `face2face_result`, with knobs for the failure fixtures.
pub(crate) struct Face2Face<'a> {
    pub session: &'a str,
    pub matched: bool,
    pub liveness_status: &'static str,
    pub edoc_status: &'static str,
    /// (name, code) of the two source sessions' technologies.
    pub techs: [(&'static str, &'static str); 2],
    pub with_sources: bool,
}

impl<'a> Face2Face<'a> {
    /// A successful comparison of a Liveness Short and an E-Document session.
    pub(crate) fn ok(session: &'a str) -> Self {
        Face2Face {
            session,
            matched: true,
            liveness_status: "COMPLETED",
            edoc_status: "COMPLETED",
            techs: [("Liveness Short", "LDSH"), ("E-Document", "ED")],
            with_sources: true,
        }
    }

    /// Timestamps fall on `today`, derived from the session id.
    pub(crate) fn to_json(&self, today: NaiveDate) -> Value {
        let mut p = Picks::new(&["face2face", self.session]);
        let start = today.and_time(NaiveTime::MIN)
            + TimeDelta::milliseconds(
                (8 * 3600 + p.below(8 * 3600)) as i64 * 1000 + p.below(1000) as i64,
            );
        let at = |ms: i64| {
            (start + TimeDelta::milliseconds(ms))
                .format("%Y-%m-%dT%H:%M:%S%.3fZ")
                .to_string()
        };
        let (prediction, percent) = if self.matched {
            let x = 950_000 + p.below(49_000);
            (format!("0.{x:06}"), format!("{:.1}", x as f64 / 10_000.0))
        } else {
            let x = 100_000 + p.below(200_000);
            (format!("0.{x:06}"), format!("{:.1}", x as f64 / 10_000.0))
        };
        let source = |n: usize, status: &str, from: i64| {
            let (name, code) = self.techs[n];
            json!({
                "id": uuid_from(&["source", self.session, code]),
                "technology": { "name": name, "code": code },
                "status": status,
                "created_at": at(from),
                "updated_at": at(from + 27_333),
            })
        };
        let (s1, s2) = if self.with_sources {
            (
                source(0, self.liveness_status, 0),
                source(1, self.edoc_status, 45_666),
            )
        } else {
            (Value::Null, Value::Null)
        };
        json!({
            "prediction": prediction,
            "prediction_percent": percent,
            "backend_session_id": self.session,
            "result": self.matched,
            "source_session_1": s1,
            "source_session_2": s2,
        })
    }
}
