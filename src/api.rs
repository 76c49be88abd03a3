//! The GBDFL answer as data: every field of the API page, parsed tolerantly.
//!
//! Rule this module keeps: real traffic wins over the documentation. Every
//! field is optional, nulls and missing objects are fine, unknown fields are
//! ignored, scalars of the wrong JSON type are taken as text, and a malformed
//! element of a list is skipped rather than failing the whole answer. The raw
//! body is always kept elsewhere, so nothing is lost if parsing here fails.

use std::fmt;

use chrono::{DateTime, NaiveDate};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

/// How the message of a failed attempt that sent nothing begins: no request
/// reached the service, so nothing can have been billed.
pub const NOT_CONNECTED: &str = "could not connect to the service";

/// The status of a GBDFL lookup as the service reports it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(into = "String")]
pub enum Status {
    Unapproved,
    Pending,
    Valid,
    Invalid,
    Timeout,
    NotFound,
    Failed,
    ErrorAccepted,
    /// A status the API page does not list; kept as received.
    Other(String),
}

impl Status {
    pub fn parse(s: &str) -> Status {
        match s.trim().to_ascii_uppercase().as_str() {
            "UNAPPROVED" => Status::Unapproved,
            "PENDING" => Status::Pending,
            "VALID" => Status::Valid,
            "INVALID" => Status::Invalid,
            "TIMEOUT" => Status::Timeout,
            "NOT_FOUND" => Status::NotFound,
            "FAILED" => Status::Failed,
            "ERROR_ACCEPTED" => Status::ErrorAccepted,
            _ => Status::Other(s.to_owned()),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            Status::Unapproved => "UNAPPROVED",
            Status::Pending => "PENDING",
            Status::Valid => "VALID",
            Status::Invalid => "INVALID",
            Status::Timeout => "TIMEOUT",
            Status::NotFound => "NOT_FOUND",
            Status::Failed => "FAILED",
            Status::ErrorAccepted => "ERROR_ACCEPTED",
            Status::Other(s) => s,
        }
    }
}

impl From<Status> for String {
    fn from(s: Status) -> String {
        s.as_str().to_owned()
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Status {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Status, D::Error> {
        Ok(Status::parse(&String::deserialize(d)?))
    }
}

/// Accepts a string, number or bool as text; null, objects and arrays as None.
fn text<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(match Value::deserialize(d)? {
        Value::String(s) => Some(s),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    })
}

/// Accepts true/false, "true"/"false", 1/0; anything else is None.
fn flag<'de, D: Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
    Ok(match Value::deserialize(d)? {
        Value::Bool(b) => Some(b),
        Value::String(s) if s.eq_ignore_ascii_case("true") => Some(true),
        Value::String(s) if s.eq_ignore_ascii_case("false") => Some(false),
        Value::Number(n) => n.as_i64().map(|n| n != 0),
        _ => None,
    })
}

/// Accepts an object of type T; anything else (null, a string...) is None.
fn object<'de, D: Deserializer<'de>, T: serde::de::DeserializeOwned>(
    d: D,
) -> Result<Option<T>, D::Error> {
    let v = Value::deserialize(d)?;
    Ok(if v.is_object() {
        serde_json::from_value(v).ok()
    } else {
        None
    })
}

/// Accepts an array, skipping elements that do not parse; null is empty.
fn list<'de, D: Deserializer<'de>, T: serde::de::DeserializeOwned>(
    d: D,
) -> Result<Vec<T>, D::Error> {
    Ok(match Value::deserialize(d)? {
        Value::Array(items) => items
            .into_iter()
            .filter_map(|v| serde_json::from_value(v).ok())
            .collect(),
        _ => Vec::new(),
    })
}

fn status<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Status>, D::Error> {
    Ok(text(d)?.map(|s| Status::parse(&s)))
}

/// The whole answer of a successful (HTTP 200) call.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct Response {
    #[serde(deserialize_with = "text")]
    pub backend_session_id: Option<String>,
    #[serde(deserialize_with = "object")]
    pub failure_reason: Option<FailureReason>,
    #[serde(deserialize_with = "object")]
    pub face2face_result: Option<Face2Face>,
    #[serde(deserialize_with = "text")]
    pub iin: Option<String>,
    #[serde(deserialize_with = "object")]
    pub result_json: Option<Person>,
    #[serde(deserialize_with = "status")]
    pub status: Option<Status>,
    #[serde(deserialize_with = "flag")]
    pub result: Option<bool>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct FailureReason {
    #[serde(rename = "type", deserialize_with = "text")]
    pub kind: Option<String>,
    #[serde(deserialize_with = "text")]
    pub detail: Option<String>,
}

impl fmt::Display for FailureReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.kind, &self.detail) {
            (Some(k), Some(d)) => write!(f, "{k}: {d}"),
            (Some(k), None) => f.write_str(k),
            (None, Some(d)) => f.write_str(d),
            (None, None) => f.write_str("(no detail)"),
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct Face2Face {
    #[serde(deserialize_with = "text")]
    pub prediction: Option<String>,
    #[serde(deserialize_with = "text")]
    pub prediction_percent: Option<String>,
    #[serde(deserialize_with = "text")]
    pub backend_session_id: Option<String>,
    #[serde(deserialize_with = "flag")]
    pub result: Option<bool>,
    #[serde(deserialize_with = "object")]
    pub source_session_1: Option<SourceSession>,
    #[serde(deserialize_with = "object")]
    pub source_session_2: Option<SourceSession>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct SourceSession {
    #[serde(deserialize_with = "text")]
    pub id: Option<String>,
    #[serde(deserialize_with = "object")]
    pub technology: Option<Technology>,
    #[serde(deserialize_with = "text")]
    pub status: Option<String>,
    #[serde(deserialize_with = "text")]
    pub created_at: Option<String>,
    #[serde(deserialize_with = "text")]
    pub updated_at: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct Technology {
    #[serde(deserialize_with = "text")]
    pub name: Option<String>,
    #[serde(deserialize_with = "text")]
    pub code: Option<String>,
}

/// `result_json`: the person as the State Database of Individuals holds them.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct Person {
    #[serde(deserialize_with = "text")]
    pub iin: Option<String>,
    #[serde(deserialize_with = "text")]
    pub surname: Option<String>,
    #[serde(deserialize_with = "text")]
    pub name: Option<String>,
    #[serde(deserialize_with = "text")]
    pub patronymic: Option<String>,
    #[serde(deserialize_with = "text")]
    pub birth_date: Option<String>,
    #[serde(deserialize_with = "text")]
    pub gender: Option<String>,
    #[serde(deserialize_with = "text")]
    pub nationality: Option<String>,
    #[serde(deserialize_with = "text")]
    pub citizenship: Option<String>,
    #[serde(deserialize_with = "text")]
    pub life_status: Option<String>,
    #[serde(deserialize_with = "object")]
    pub birth_place: Option<Place>,
    #[serde(deserialize_with = "list")]
    pub documents: Vec<Document>,
    #[serde(deserialize_with = "object")]
    pub registration_address: Option<Address>,
}

impl Person {
    /// "Surname Name Patronymic", skipping missing parts.
    pub fn full_name(&self) -> String {
        [&self.surname, &self.name, &self.patronymic]
            .into_iter()
            .flatten()
            .map(|s| s.trim())
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join(" ")
    }

    pub fn gender(&self) -> Option<Gender> {
        self.gender.as_deref().map(Gender::parse)
    }

    /// Whether the life status reads as the normal one ("Нормальный", "normal",
    /// "alive"). A missing life status is not treated as abnormal.
    pub fn life_status_is_normal(&self) -> bool {
        if self.life_status.as_deref() == Some("Нормальный") {
            return true;
        }
        match self.life_status.as_deref().map(|s| s.trim().to_lowercase()) {
            None => true,
            Some(s) => {
                s.is_empty() || ["нормальный", "normal", "alive", "живой"].contains(&s.as_str())
            }
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct Place {
    #[serde(deserialize_with = "text")]
    pub country: Option<String>,
    #[serde(deserialize_with = "text")]
    pub region: Option<String>,
    #[serde(deserialize_with = "text")]
    pub district: Option<String>,
    #[serde(deserialize_with = "text")]
    pub city: Option<String>,
}

impl Place {
    pub fn one_line(&self) -> String {
        join_parts(&[&self.city, &self.district, &self.region, &self.country])
    }
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct Document {
    #[serde(rename = "type", deserialize_with = "text")]
    pub kind: Option<String>,
    #[serde(deserialize_with = "text")]
    pub number: Option<String>,
    #[serde(deserialize_with = "text")]
    pub issue_date: Option<String>,
    #[serde(deserialize_with = "text")]
    pub expiry_date: Option<String>,
    #[serde(deserialize_with = "text")]
    pub issuer: Option<String>,
    #[serde(deserialize_with = "text")]
    pub status: Option<String>,
}

impl Document {
    /// Whether the document's status reads as valid ("ДОКУМЕНТ ДЕЙСТВИТЕЛЕН"
    /// or "DOCUMENT IS VALID"). A missing status is not treated as invalid.
    pub fn status_is_valid(&self) -> bool {
        // The common case without case folding: expiry scans ask this of
        // every document of every person.
        if self.status.as_deref() == Some("ДОКУМЕНТ ДЕЙСТВИТЕЛЕН") {
            return true;
        }
        match self.status.as_deref().map(|s| s.trim().to_uppercase()) {
            None => true,
            Some(s) => s.is_empty() || s == "ДОКУМЕНТ ДЕЙСТВИТЕЛЕН" || s == "DOCUMENT IS VALID",
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct Address {
    #[serde(deserialize_with = "text")]
    pub country: Option<String>,
    #[serde(deserialize_with = "text")]
    pub region: Option<String>,
    #[serde(deserialize_with = "text")]
    pub district: Option<String>,
    #[serde(deserialize_with = "text")]
    pub city: Option<String>,
    #[serde(deserialize_with = "text")]
    pub street: Option<String>,
    #[serde(deserialize_with = "text")]
    pub building: Option<String>,
    #[serde(deserialize_with = "text")]
    pub flat: Option<String>,
    #[serde(deserialize_with = "text")]
    pub begin_date: Option<String>,
}

impl Address {
    pub fn one_line(&self) -> String {
        let street = match (&self.street, &self.building, &self.flat) {
            (Some(s), Some(b), Some(f)) => Some(format!("{s} {b}, кв. {f}")),
            (Some(s), Some(b), None) => Some(format!("{s} {b}")),
            (Some(s), None, _) => Some(s.clone()),
            (None, Some(b), _) => Some(b.clone()),
            (None, None, _) => None,
        };
        join_parts(&[
            &street,
            &self.city,
            &self.district,
            &self.region,
            &self.country,
        ])
    }
}

fn join_parts(parts: &[&Option<String>]) -> String {
    parts
        .iter()
        .filter_map(|p| p.as_deref())
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Gender, accepting the Russian and English spellings seen in traffic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Gender {
    Male,
    Female,
    Other(String),
}

impl Gender {
    pub fn parse(s: &str) -> Gender {
        match s.trim().to_lowercase().as_str() {
            "male" | "m" | "мужской" | "муж" | "м" | "ер" => Gender::Male,
            "female" | "f" | "женский" | "жен" | "ж" | "әйел" => Gender::Female,
            _ => Gender::Other(s.to_owned()),
        }
    }
}

impl fmt::Display for Gender {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Gender::Male => f.write_str("male"),
            Gender::Female => f.write_str("female"),
            Gender::Other(s) => f.write_str(s),
        }
    }
}

/// Parses a date in any shape seen in GBDFL traffic: `YYYY-MM-DD`, an ISO
/// date-time with an offset or `Z` (the date as written in that offset), a
/// date with an offset (`2017-10-16+06:00`), a naive date-time, or
/// `DD.MM.YYYY`.
pub fn parse_date(s: &str) -> Option<NaiveDate> {
    let s = s.trim();
    if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        return Some(d);
    }
    if let Ok(dt) = DateTime::parse_from_rfc3339(s) {
        return Some(dt.date_naive());
    }
    if let Ok(dt) = chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f") {
        return Some(dt.date());
    }
    if let Ok(dt) = chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f") {
        return Some(dt.date());
    }
    // A date followed by an offset or Z: the date part is the date.
    if s.len() > 10 && s.is_char_boundary(10) {
        let (date, rest) = s.split_at(10);
        let offset_like = rest == "Z"
            || ((rest.starts_with('+') || rest.starts_with('-'))
                && rest[1..].chars().all(|c| c.is_ascii_digit() || c == ':'));
        if let (true, Ok(d)) = (offset_like, NaiveDate::parse_from_str(date, "%Y-%m-%d")) {
            return Some(d);
        }
    }
    NaiveDate::parse_from_str(s, "%d.%m.%Y").ok()
}

/// Parses a 200 body. `Err` means it is not a JSON object at all.
pub fn parse_response(body: &[u8]) -> Result<Response, serde_json::Error> {
    let v: Value = serde_json::from_slice(body)?;
    if !v.is_object() {
        return Err(serde::de::Error::custom(
            "the answer is JSON but not an object",
        ));
    }
    serde_json::from_value(v)
}

/// Pulls a human message out of an error body: `{"detail": "..."}`,
/// `{"detail": [{"msg": ...}]}`, `{"message": ...}`, or the text itself.
pub fn error_message(body: &[u8]) -> String {
    let fallback = || {
        let t = String::from_utf8_lossy(body);
        let t = t.trim();
        let mut s: String = t.chars().take(300).collect();
        if t.chars().count() > 300 {
            s.push('…');
        }
        s
    };
    let Ok(v) = serde_json::from_slice::<Value>(body) else {
        return fallback();
    };
    let pick = |v: &Value| -> Option<String> {
        match v {
            Value::String(s) => Some(s.clone()),
            Value::Array(items) => Some(
                items
                    .iter()
                    .map(|i| {
                        i.get("msg")
                            .and_then(Value::as_str)
                            .map(str::to_owned)
                            .unwrap_or_else(|| i.to_string())
                    })
                    .collect::<Vec<_>>()
                    .join("; "),
            ),
            Value::Null => None,
            other => Some(other.to_string()),
        }
    };
    v.get("detail")
        .and_then(pick)
        .or_else(|| v.get("message").and_then(pick))
        .or_else(|| v.get("error").and_then(pick))
        .unwrap_or_else(fallback)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_in_every_shape() {
        let d = NaiveDate::from_ymd_opt(2017, 10, 16);
        for s in [
            "2017-10-16",
            "2017-10-16+06:00",
            "2017-10-16-03:00",
            "2017-10-16Z",
            "2017-10-16T00:00:00+06:00",
            "2017-10-16T23:10:00.123Z",
            "2017-10-16T10:00:00",
            "16.10.2017",
            " 2017-10-16 ",
        ] {
            assert_eq!(parse_date(s), d, "{s}");
        }
        assert_eq!(parse_date("бессрочно"), None);
        assert_eq!(parse_date("2017-13-01"), None);
        assert_eq!(parse_date(""), None);
    }

    #[test]
    fn tolerant_of_nulls_wrong_types_and_unknown_fields() {
        let body = r#"{"status":"VALID","result":"true","extra":{"x":1},
            "failure_reason":null,"face2face_result":"weird",
            "result_json":{"surname":"A","name":null,"birth_date":19950215,
              "documents":[{"type":"ID","number":123,"expiry_date":null}, 5, null],
              "registration_address":null,"birth_place":{"city":"Талгар","zzz":[]}}}"#;
        let r = parse_response(body.as_bytes()).unwrap();
        assert_eq!(r.status, Some(Status::Valid));
        assert_eq!(r.result, Some(true));
        assert!(r.face2face_result.is_none());
        let p = r.result_json.unwrap();
        assert_eq!(p.full_name(), "A");
        assert_eq!(p.birth_date.as_deref(), Some("19950215"));
        assert_eq!(p.documents.len(), 1);
        assert_eq!(p.documents[0].number.as_deref(), Some("123"));
        assert_eq!(p.birth_place.unwrap().city.as_deref(), Some("Талгар"));
    }

    #[test]
    fn unknown_status_is_kept() {
        let r = parse_response(br#"{"status":"SOMETHING_NEW"}"#).unwrap();
        assert_eq!(r.status, Some(Status::Other("SOMETHING_NEW".into())));
        assert!(parse_response(b"<html>").is_err());
        assert!(parse_response(b"[1,2]").is_err());
    }

    #[test]
    fn genders() {
        assert_eq!(Gender::parse("Мужской"), Gender::Male);
        assert_eq!(Gender::parse("ЖЕНСКИЙ"), Gender::Female);
        assert_eq!(Gender::parse("Female"), Gender::Female);
        assert_eq!(Gender::parse("male"), Gender::Male);
    }

    #[test]
    fn error_messages() {
        assert_eq!(
            error_message(br#"{"detail":"Organization not found"}"#),
            "Organization not found"
        );
        assert_eq!(
            error_message(br#"{"detail":[{"msg":"field required"}]}"#),
            "field required"
        );
        assert_eq!(error_message(b"Bad Gateway"), "Bad Gateway");
    }
}
