//! The documented fixture IINs: one per status, failure reason, HTTP error
//! and tolerance case of the API, for tests, the demo and manual trials.
//!
//! Rule this module keeps: every fixture IIN is a valid IIN (it passes
//! `Iin::parse`), is listed once in [`fixtures`], and never changes. They read
//! as `950215` (birth date) + sex digit (3 male, 4 female) + a two-digit block
//! (00 statuses, 01 failure reasons, 02 HTTP errors, 03 tolerance) + a
//! two-digit serial + check digit.

use chrono::{Months, NaiveDate, TimeDelta};
use serde_json::{Value, json};

use super::shape::{DOC_VALID, Face2Face, Reply, detail, document, envelope, failure};

/// The fixture IINs by name, for tests that need one; the row of
/// [`fixtures`](super::fixtures) with the same IIN describes the answer in full.
pub mod iins {
    /// VALID: the API page's example person, with two documents.
    pub const VALID: &str = "950215300016";
    /// PENDING on the first call per (IIN, session), VALID on the next.
    pub const PENDING_THEN_VALID: &str = "950215300026";
    /// Status INVALID, failure reason CLIENT.
    pub const INVALID: &str = "950215300036";
    /// Status TIMEOUT, failure reason CLIENT.
    pub const TIMEOUT: &str = "950215300046";
    /// Status NOT_FOUND, failure reason CLIENT.
    pub const NOT_FOUND: &str = "950215300056";
    /// Status FAILED, failure reason CLIENT.
    pub const FAILED: &str = "950215300066";
    /// Status UNAPPROVED: the subject did not approve the request.
    pub const UNAPPROVED: &str = "950215300076";
    /// Status ERROR_ACCEPTED: the government service took the request and
    /// answered an error (failure reason SERVICE_ERROR).
    pub const ERROR_ACCEPTED: &str = "950215300086";

    /// UNAPPROVED because the required verifications are expired.
    pub const VERIFICATIONS_EXPIRED: &str = "950215301014";
    /// UNAPPROVED because the faces did not match.
    pub const FACE2FACE_FAILED: &str = "950215301024";
    /// UNAPPROVED because the Liveness source session failed.
    pub const LIVENESS_FAILED: &str = "950215301034";
    /// UNAPPROVED because the E-Document source session failed.
    pub const EDOCUMENT_ERROR: &str = "950215301044";
    /// UNAPPROVED because the sources are a photo and a scan, not Liveness
    /// and E-Document.
    pub const REQUIRED_TECH_MISSING: &str = "950215301054";
    /// UNAPPROVED because Face2Face has no source sessions.
    pub const SOURCE_SESSIONS_MISSING: &str = "950215301064";
    /// UNAPPROVED because there is no Face2Face result.
    pub const FACE2FACE_RESULT_MISSING: &str = "950215301074";
    /// FAILED because biometric.kz could not reach GBDFL.
    pub const SERVICE_ERROR: &str = "950215301084";

    /// HTTP 400: the subscription starts later.
    pub const SUBSCRIPTION_NOT_STARTED: &str = "950215302012";
    /// HTTP 400: no current or future subscription to the technology.
    pub const NO_ACTIVE_SUBSCRIPTION: &str = "950215302022";
    /// HTTP 400: the client has no subscription at all.
    pub const NO_SUBSCRIPTION: &str = "950215302032";
    /// HTTP 400: the subscription does not include GBDFL.
    pub const NO_GBDFL_ACCESS: &str = "950215302042";
    /// HTTP 404: the Face2Face session does not exist.
    pub const SESSION_NOT_FOUND: &str = "950215302052";
    /// HTTP 404 `Organization not found`, whatever the API key.
    pub const ORGANIZATION_NOT_FOUND: &str = "950215302062";
    /// HTTP 200 with an HTML maintenance page instead of JSON.
    pub const GARBAGE_HTML: &str = "950215302072";

    /// VALID with nulls, missing objects and unknown fields the reader must
    /// tolerate.
    pub const SPARSE: &str = "950215303010";
    /// VALID, female, with dates carrying a time or a UTC offset.
    pub const OFFSET_DATES: &str = "950215403027";
    /// VALID with gender `female` and documents without a fixed expiry date.
    pub const ENGLISH_GENDER_FEMALE: &str = "950215403037";
    /// The male twin of [`ENGLISH_GENDER_FEMALE`].
    pub const ENGLISH_GENDER_MALE: &str = "950215303040";
    /// VALID with text that spreadsheets, CSV readers and terminals
    /// misread: a formula, quotes, tabs, line breaks.
    pub const HOSTILE_TEXT: &str = "950215303050";
    /// VALID for a deceased person whose documents are no longer in force.
    pub const DECEASED: &str = "950215303060";
    /// VALID with documents that expire 14 days, 29 days and 3 years after
    /// the emulator's "today".
    pub const EXPIRING_SOON: &str = "950215303070";
}

/// What a fixture IIN makes the emulator do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FixtureKind {
    /// VALID with the example person (female when the IIN says so).
    Valid,
    /// PENDING on the first call per (IIN, session), then as `Valid`.
    PendingThenValid,
    /// Status INVALID, failure reason CLIENT.
    Invalid,
    /// Status TIMEOUT, failure reason CLIENT.
    Timeout,
    /// Status NOT_FOUND, failure reason CLIENT.
    NotFound,
    /// Status FAILED, failure reason CLIENT.
    Failed,
    /// Status UNAPPROVED, failure reason CLIENT.
    Unapproved,
    /// Status ERROR_ACCEPTED, failure reason SERVICE_ERROR.
    ErrorAccepted,
    /// UNAPPROVED with the expired-verifications reason.
    VerificationsExpired,
    /// UNAPPROVED, and `face2face_result.result` is false.
    Face2FaceFailed,
    /// UNAPPROVED, and the Liveness source session is FAILED.
    LivenessFailed,
    /// UNAPPROVED, and the E-Document source session is FAILED.
    EDocumentError,
    /// UNAPPROVED, and the source sessions are PHOTO and DOCSCAN.
    RequiredTechMissing,
    /// UNAPPROVED, and both source sessions are null.
    SourceSessionsMissing,
    /// UNAPPROVED, and `face2face_result` is null.
    Face2FaceResultMissing,
    /// FAILED, failure reason SERVICE_ERROR (GBDFL unreachable).
    ServiceError,
    /// An HTTP error: status code and `detail` text.
    Http(u16, &'static str),
    /// HTTP 200 with an HTML page, as a gateway in front of the service
    /// might send.
    GarbageHtml,
    /// VALID with nulls, no address, no documents and unknown fields at
    /// three levels.
    Sparse,
    /// VALID with dates in the `T00:00:00+06:00` and `+06:00` forms.
    OffsetDates,
    /// VALID with gender `female`/`male`, one document without an expiry
    /// date and one that never expires (`бессрочно`).
    EnglishGender,
    /// VALID with a formula surname, quotes, a comma, `+`/`@`/tab prefixes,
    /// line breaks and a negative flat number.
    HostileText,
    /// VALID, deceased, an invalid ID card and a passport expired in 2014.
    Deceased,
    /// VALID with documents expiring 14 days, 29 days and 3 years after
    /// "today", for the expiry report.
    ExpiringSoon,
}

/// One row of the fixture table, as `gbdfl mock-server --fixtures` lists it.
#[derive(Clone, Copy, Debug)]
pub struct Fixture {
    /// The IIN that gets this answer.
    pub iin: &'static str,
    /// A unique, stable label (`VALID`, `PENDING`, the negative statuses,
    /// `REASON_*`, `HTTP_<code>_*`, `GARBAGE`, `VALID_*`): tests and the demo
    /// look fixtures up by it.
    pub outcome: &'static str,
    /// What the answer holds, in words; for 200 answers it starts with the
    /// status when the label does not.
    pub description: &'static str,
    /// What the emulator answers.
    pub kind: FixtureKind,
}

const fn fx(
    iin: &'static str,
    outcome: &'static str,
    description: &'static str,
    kind: FixtureKind,
) -> Fixture {
    Fixture {
        iin,
        outcome,
        description,
        kind,
    }
}

use FixtureKind as K;

// One row per fixture reads better than rustfmt's six lines per row.
#[rustfmt::skip]
static FIXTURES: &[Fixture] = &[
    fx(iins::VALID, "VALID", "the API page's example person (Нурланов Асхат Ерланович), two documents", K::Valid),
    fx(iins::PENDING_THEN_VALID, "PENDING", "PENDING on the first call per (IIN, session), VALID after", K::PendingThenValid),
    fx(iins::INVALID, "INVALID", "CLIENT / INVALID", K::Invalid),
    fx(iins::TIMEOUT, "TIMEOUT", "CLIENT / TIMEOUT", K::Timeout),
    fx(iins::NOT_FOUND, "NOT_FOUND", "CLIENT / NOT_FOUND", K::NotFound),
    fx(iins::FAILED, "FAILED", "CLIENT / FAILED", K::Failed),
    fx(iins::UNAPPROVED, "UNAPPROVED", "CLIENT / UNAPPROVED (the subject did not approve the request)", K::Unapproved),
    fx(iins::ERROR_ACCEPTED, "ERROR_ACCEPTED", "SERVICE_ERROR / ERROR_ACCEPTED (the government service accepted the request and answered an error)", K::ErrorAccepted),
    fx(iins::VERIFICATIONS_EXPIRED, "REASON_VERIFICATIONS_EXPIRED", "UNAPPROVED, CLIENT / The required verifications for GBDFL are expired", K::VerificationsExpired),
    fx(iins::FACE2FACE_FAILED, "REASON_FACE2FACE_FAILED", "UNAPPROVED, CLIENT / Face2Face failed (face2face_result.result false)", K::Face2FaceFailed),
    fx(iins::LIVENESS_FAILED, "REASON_LIVENESS_FAILED", "UNAPPROVED, CLIENT / Liveness failed (Liveness source session FAILED)", K::LivenessFailed),
    fx(iins::EDOCUMENT_ERROR, "REASON_EDOCUMENT_ERROR", "UNAPPROVED, CLIENT / EDocument validation error:  (E-Document source session FAILED)", K::EDocumentError),
    fx(iins::REQUIRED_TECH_MISSING, "REASON_REQUIRED_TECH_MISSING", "UNAPPROVED, CLIENT / Required technology in Face2Face result missing: LDSH, ED (sources are PHOTO and DOCSCAN)", K::RequiredTechMissing),
    fx(iins::SOURCE_SESSIONS_MISSING, "REASON_SOURCE_SESSIONS_MISSING", "UNAPPROVED, CLIENT / Face2Face source sessions are missing (source sessions null)", K::SourceSessionsMissing),
    fx(iins::FACE2FACE_RESULT_MISSING, "REASON_FACE2FACE_RESULT_MISSING", "UNAPPROVED, CLIENT / GBDFL Face2Face result missing (face2face_result null)", K::Face2FaceResultMissing),
    fx(iins::SERVICE_ERROR, "REASON_SERVICE_ERROR", "FAILED, SERVICE_ERROR / Can`t connect to GBDFL service", K::ServiceError),
    fx(iins::SUBSCRIPTION_NOT_STARTED, "HTTP_400_SUBSCRIPTION_NOT_STARTED", "Subscription has not started", K::Http(400, "Subscription has not started")),
    fx(iins::NO_ACTIVE_SUBSCRIPTION, "HTTP_400_NO_ACTIVE_SUBSCRIPTION", "No active or future subscription for technology", K::Http(400, "No active or future subscription for technology")),
    fx(iins::NO_SUBSCRIPTION, "HTTP_400_NO_SUBSCRIPTION", "Client does not have subscription", K::Http(400, "Client does not have subscription")),
    fx(iins::NO_GBDFL_ACCESS, "HTTP_400_NO_GBDFL_ACCESS", "Client does not have access to GBDFL technology", K::Http(400, "Client does not have access to GBDFL technology")),
    fx(iins::SESSION_NOT_FOUND, "HTTP_404_SESSION_NOT_FOUND", "Face2Face backend session not found", K::Http(404, "Face2Face backend session not found")),
    fx(iins::ORGANIZATION_NOT_FOUND, "HTTP_404_ORGANIZATION_NOT_FOUND", "Organization not found (whatever the key)", K::Http(404, "Organization not found")),
    fx(iins::GARBAGE_HTML, "GARBAGE", "HTTP 200 with an HTML maintenance page instead of JSON", K::GarbageHtml),
    fx(iins::SPARSE, "VALID_SPARSE", "nulls (patronymic, nationality, life_status, birth_place, prediction), no registration_address, no documents, unknown fields at three levels", K::Sparse),
    fx(iins::OFFSET_DATES, "VALID_OFFSET_DATES", "dates as 2030-08-15T00:00:00+06:00 and 2017-10-16+06:00, gender Женский", K::OffsetDates),
    fx(iins::ENGLISH_GENDER_FEMALE, "VALID_ENGLISH_GENDER", "gender \"female\", one document without expiry_date, one with expiry_date \"бессрочно\"", K::EnglishGender),
    fx(iins::ENGLISH_GENDER_MALE, "VALID_ENGLISH_GENDER_MALE", "gender \"male\", one document without expiry_date, one with expiry_date \"бессрочно\"", K::EnglishGender),
    fx(iins::HOSTILE_TEXT, "VALID_HOSTILE_TEXT", "surname =HYPERLINK(...), comma and quote in name, +/@/tab prefixes, line breaks in street, flat -1", K::HostileText),
    fx(iins::DECEASED, "VALID_DECEASED", "life_status Умерший, ID card ДОКУМЕНТ НЕДЕЙСТВИТЕЛЕН, passport expired 2014-05-20", K::Deceased),
    fx(iins::EXPIRING_SOON, "VALID_EXPIRING_SOON", "ID card expires today+14, passport today+29, driving licence today+3 years", K::ExpiringSoon),
];

/// The whole fixture table, in documentation order.
pub fn fixtures() -> &'static [Fixture] {
    FIXTURES
}

pub(crate) fn find(iin: &str) -> Option<&'static Fixture> {
    FIXTURES.iter().find(|f| f.iin == iin)
}

const MAINTENANCE_PAGE: &str = "<!DOCTYPE html>\n<html><head><title>Технические работы</title></head>\n\
<body><h1>Сервис временно недоступен</h1><p>Ведутся технические работы.</p></body></html>\n";

/// (type, number, issue_date, expiry_date, status) of a fixture document.
type Doc = (
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
);

const ID: &str = "УДОСТОВЕРЕНИЕ РК";
const PASSPORT: &str = "ПАСПОРТ";

#[rustfmt::skip]
const EXAMPLE_DOCS: &[Doc] = &[
    (ID, "N23456789", "2015-03-10", "2035-03-10", DOC_VALID),
    (PASSPORT, "N98765432", "2020-08-15", "2030-08-15", DOC_VALID),
];
#[rustfmt::skip]
const OFFSET_DOCS: &[Doc] = &[
    (ID, "N23456789", "2015-03-10+06:00", "2035-03-10T00:00:00+06:00", DOC_VALID),
    (PASSPORT, "N98765432", "2020-08-15T00:00:00+06:00", "2030-08-15T00:00:00+06:00", DOC_VALID),
];
#[rustfmt::skip]
const DECEASED_DOCS: &[Doc] = &[
    (ID, "N23456789", "2022-04-01", "2032-04-01", "ДОКУМЕНТ НЕДЕЙСТВИТЕЛЕН"),
    (PASSPORT, "N98765432", "2004-05-20", "2014-05-20", DOC_VALID),
];

fn docs(list: &[Doc]) -> Value {
    list.iter()
        .map(|&(t, n, i, e, s)| document(t, n, i, e, s))
        .collect()
}

/// The API page's example person, with the given IIN.
fn example_person(iin: &str) -> Value {
    json!({
        "iin": iin,
        "surname": "Нурланов",
        "name": "Асхат",
        "patronymic": "Ерланович",
        "birth_date": "1995-02-15",
        "gender": "Мужской",
        "nationality": "КАЗАХ",
        "citizenship": "КАЗАХСТАН",
        "life_status": "Нормальный",
        "birth_place": {
            "country": "КАЗАХСТАН",
            "region": "Алматинская область",
            "district": "Талгарский",
            "city": "Талгар",
        },
        "documents": docs(EXAMPLE_DOCS),
        "registration_address": {
            "country": "КАЗАХСТАН",
            "region": "Алматы",
            "district": "Медеуский",
            "city": "Алматы",
            "street": "Абая",
            "building": "52",
            "flat": "45",
            "begin_date": "2018-06-20",
        },
    })
}

/// Sets `key` of a JSON object; other values are left alone.
fn set(v: &mut Value, key: &str, value: Value) {
    if let Some(obj) = v.as_object_mut() {
        obj.insert(key.to_owned(), value);
    }
}

fn remove(v: &mut Value, key: &str) {
    if let Some(obj) = v.as_object_mut() {
        obj.remove(key);
    }
}

/// The `result_json` of a VALID fixture: the example person, female when
/// the IIN's 7th digit says so, with the fixture's quirks.
fn person(kind: FixtureKind, iin: &str, today: NaiveDate) -> Value {
    let mut p = example_person(iin);
    let female = iin.as_bytes().get(6) == Some(&b'4');
    if female {
        set(&mut p, "surname", json!("Нурланова"));
        set(&mut p, "name", json!("Айгерим"));
        set(&mut p, "patronymic", json!("Ерлановна"));
        set(&mut p, "gender", json!("Женский"));
    }
    match kind {
        K::Sparse => {
            for key in ["patronymic", "nationality", "life_status", "birth_place"] {
                set(&mut p, key, Value::Null);
            }
            remove(&mut p, "registration_address");
            set(&mut p, "documents", json!([]));
            set(&mut p, "photo_hash", json!("b7e2"));
            set(
                &mut p,
                "extra_v2",
                json!({ "source": "ГБД ФЛ", "flags": [1, 2] }),
            );
        }
        K::OffsetDates => {
            set(&mut p, "birth_date", json!("1995-02-15T00:00:00+06:00"));
            set(&mut p, "documents", docs(OFFSET_DOCS));
            if let Some(addr) = p.get_mut("registration_address") {
                set(addr, "begin_date", json!("2017-10-16+06:00"));
            }
        }
        K::EnglishGender => {
            set(
                &mut p,
                "gender",
                json!(if female { "female" } else { "male" }),
            );
            let mut id = document(ID, "N23456789", "2015-03-10", "", DOC_VALID);
            remove(&mut id, "expiry_date");
            let passport = document(PASSPORT, "N98765432", "2020-08-15", "бессрочно", DOC_VALID);
            set(&mut p, "documents", json!([id, passport]));
        }
        K::HostileText => {
            set(&mut p, "surname", json!("=HYPERLINK(\"http://x\")"));
            set(&mut p, "name", json!("Асхат, \"Аса\""));
            set(&mut p, "patronymic", json!("+Ерланович"));
            if let Some(addr) = p.get_mut("registration_address") {
                set(addr, "district", json!("\tМедеуский"));
                set(addr, "street", json!("Абая\nугол Достык\r\nвход со двора"));
                set(addr, "building", json!("@52"));
                set(addr, "flat", json!("-1"));
            }
        }
        K::Deceased => {
            set(&mut p, "life_status", json!("Умерший"));
            set(&mut p, "documents", docs(DECEASED_DOCS));
        }
        K::ExpiringSoon => set(&mut p, "documents", expiring_docs(today)),
        _ => {}
    }
    p
}

/// Documents that expire 14 days, 29 days and 3 years after `today`, each
/// issued ten years before it expires.
fn expiring_docs(today: NaiveDate) -> Value {
    let doc = |kind: &str, number: &str, days: i64| {
        let exp = today
            .checked_add_signed(TimeDelta::days(days))
            .unwrap_or(today);
        let issue = exp.checked_sub_months(Months::new(120)).unwrap_or(exp);
        document(
            kind,
            number,
            &issue.to_string(),
            &exp.to_string(),
            DOC_VALID,
        )
    };
    json!([
        doc(ID, "N23456789", 14),
        doc(PASSPORT, "N98765432", 29),
        doc("ВОДИТЕЛЬСКОЕ УДОСТОВЕРЕНИЕ", "BN123456", 3 * 365),
    ])
}

/// (status, failure_reason.type, failure_reason.detail) of a failing fixture.
fn failure_of(kind: FixtureKind) -> Option<(&'static str, &'static str, &'static str)> {
    const EXPIRED: &str = "The required verifications for GBDFL are expired";
    const TECH_MISSING: &str = "Required technology in Face2Face result missing: LDSH, ED";
    Some(match kind {
        K::Invalid => ("INVALID", "CLIENT", "INVALID"),
        K::Timeout => ("TIMEOUT", "CLIENT", "TIMEOUT"),
        K::NotFound => ("NOT_FOUND", "CLIENT", "NOT_FOUND"),
        K::Failed => ("FAILED", "CLIENT", "FAILED"),
        K::Unapproved => ("UNAPPROVED", "CLIENT", "UNAPPROVED"),
        K::ErrorAccepted => ("ERROR_ACCEPTED", "SERVICE_ERROR", "ERROR_ACCEPTED"),
        K::VerificationsExpired => ("UNAPPROVED", "CLIENT", EXPIRED),
        K::Face2FaceFailed => ("UNAPPROVED", "CLIENT", "Face2Face failed"),
        K::LivenessFailed => ("UNAPPROVED", "CLIENT", "Liveness failed"),
        K::EDocumentError => ("UNAPPROVED", "CLIENT", "EDocument validation error: "),
        K::RequiredTechMissing => ("UNAPPROVED", "CLIENT", TECH_MISSING),
        K::SourceSessionsMissing => (
            "UNAPPROVED",
            "CLIENT",
            "Face2Face source sessions are missing",
        ),
        K::Face2FaceResultMissing => ("UNAPPROVED", "CLIENT", "GBDFL Face2Face result missing"),
        K::ServiceError => ("FAILED", "SERVICE_ERROR", "Can`t connect to GBDFL service"),
        _ => return None,
    })
}

/// The answer for a fixture. `pending` is true on the first call of a
/// PENDING-then-VALID fixture for its (IIN, session).
pub(crate) fn reply(
    kind: FixtureKind,
    iin: &str,
    session: &str,
    today: NaiveDate,
    pending: bool,
) -> Reply {
    let mut f2f = Face2Face::ok(session);
    match kind {
        K::Http(code, text) => return Reply::Error(code, detail(text)),
        K::GarbageHtml => return Reply::Html(MAINTENANCE_PAGE),
        K::Face2FaceFailed => f2f.matched = false,
        K::LivenessFailed => f2f.liveness_status = "FAILED",
        K::EDocumentError => f2f.edoc_status = "FAILED",
        K::RequiredTechMissing => {
            f2f.techs = [("Photo Upload", "PHOTO"), ("Document Scan", "DOCSCAN")]
        }
        K::SourceSessionsMissing => f2f.with_sources = false,
        _ => {}
    }
    let f2f = if kind == K::Face2FaceResultMissing {
        Value::Null
    } else {
        f2f.to_json(today)
    };
    let (status, result_json, reason) = match failure_of(kind) {
        Some((status, kind_word, text)) => (status, Value::Null, failure(kind_word, text)),
        None if pending => ("PENDING", Value::Null, Value::Null),
        None => ("VALID", person(kind, iin, today), Value::Null),
    };
    let mut body = envelope(
        uuid::Uuid::new_v4().to_string(),
        iin,
        status,
        f2f,
        result_json,
        reason,
    );
    if kind == K::Sparse {
        set(&mut body, "request_trace", json!({ "node": "kz-1" }));
        if let Some(f2f) = body.get_mut("face2face_result") {
            set(f2f, "prediction", Value::Null);
            set(f2f, "liveness_version", json!("3.1"));
        }
    }
    Reply::Gbdfl(body)
}
