//! The GBDFL answer as data: every field of the API page, parsed tolerantly.
//!
//! Rule this module keeps: real traffic wins over the documentation. Every
//! field is optional, nulls and missing objects are fine, unknown fields are
//! ignored, scalars of the wrong JSON type are taken as text, and a malformed
//! element of a list is skipped rather than failing the whole answer. The raw
//! body is always kept elsewhere, so nothing is lost if parsing here fails.

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

use serde::de::{DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

/// How the message of an attempt that could not connect begins. Text for
/// people only: whether a request reached the service (and may be billed)
/// is the client's typed `Delivery`, never read from this text.
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
        full_name([
            self.surname.as_deref(),
            self.name.as_deref(),
            self.patronymic.as_deref(),
        ])
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

/// "Surname Name Patronymic" from the three parts, skipping missing ones.
pub fn full_name(parts: [Option<&str>; 3]) -> String {
    parts
        .into_iter()
        .flatten()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
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

/// The fields of an answer that `gbdfl import` reads, in one pass over the
/// line and borrowed from it (a text with an escape in it is the only copy
/// made), where [`parse_response`] builds a whole [`Response`] through a
/// `serde_json::Value` tree.
///
/// Same tolerance, field by field, as [`Response`] (a unit test and a
/// property compare the two): a scalar of another type is taken as text, a
/// value that is not an object is no object, a list element that does not
/// parse is skipped, unknown fields are ignored, and within an object a
/// repeated field keeps its last value. Only a repeated known field at the
/// top level is an error, as it is for [`Response`] read straight from bytes.
#[derive(Debug, Default)]
pub struct Answer<'a> {
    /// The `fetched_at` field an archive line adds to the answer.
    pub fetched_at: Scalar<'a>,
    pub iin: Option<Cow<'a, str>>,
    pub status: Option<Status>,
    pub result: Option<bool>,
    pub failure_reason: Option<FailureReason>,
    /// `face2face_result.backend_session_id`.
    pub session_id: Option<Cow<'a, str>>,
    pub result_json: Option<PersonView<'a>>,
    seen: u8,
}

/// The fields of `result_json` that import reads (the IIN, and those of the
/// document summary).
#[derive(Debug, Default)]
pub struct PersonView<'a> {
    pub iin: Option<Cow<'a, str>>,
    pub surname: Option<Cow<'a, str>>,
    pub name: Option<Cow<'a, str>>,
    pub patronymic: Option<Cow<'a, str>>,
    pub life_status: Option<Cow<'a, str>>,
    pub documents: Vec<DocumentView<'a>>,
}

/// The fields of a document that the document summary keeps.
#[derive(Debug, Default)]
pub struct DocumentView<'a> {
    pub kind: Option<Cow<'a, str>>,
    pub number: Option<Cow<'a, str>>,
    pub expiry_date: Option<Cow<'a, str>>,
    pub status: Option<Cow<'a, str>>,
}

/// A field read as it is: missing or null, a text, or anything else.
#[derive(Debug, Default, PartialEq, Eq)]
pub enum Scalar<'a> {
    #[default]
    Null,
    Text(Cow<'a, str>),
    Other,
}

/// Reads an answer for import; `Err` when `line` is not one JSON object
/// (or repeats a known top-level field).
pub fn parse_answer(line: &str) -> Result<Answer<'_>, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_str(line);
    let answer = de.deserialize_any(ObjectVisitor(PhantomData::<Answer<'_>>))?;
    de.end()?;
    answer.ok_or_else(|| serde::de::Error::custom("the answer is JSON but not an object"))
}

/// An object of the view read field by field: `read` is given each key and
/// its value, and ignores (but reads) the value of a key it does not know.
trait Fields<'de>: Default {
    /// The fields of the [`Response`] type in declaration order: serde's
    /// derive reads a JSON array as these, element by element (this matters
    /// for list elements only: [`Response`] takes no other array as an object).
    const ORDER: &'static [&'static str] = &[];
    fn read<D: Deserializer<'de>>(&mut self, key: &str, value: D) -> Result<(), D::Error>;
}

impl<'de> Fields<'de> for Answer<'de> {
    fn read<D: Deserializer<'de>>(&mut self, key: &str, value: D) -> Result<(), D::Error> {
        // Repeated known fields are refused, as the derive of Response does.
        const KNOWN: [&str; 8] = [
            "fetched_at",
            "iin",
            "status",
            "result",
            "failure_reason",
            "face2face_result",
            "result_json",
            "backend_session_id",
        ];
        let Some(bit) = KNOWN.iter().position(|k| *k == key) else {
            IgnoredAny::deserialize(value)?;
            return Ok(());
        };
        if self.seen & (1 << bit) != 0 {
            return Err(serde::de::Error::custom(format_args!(
                "duplicate field `{key}`"
            )));
        }
        self.seen |= 1 << bit;
        match key {
            "fetched_at" => self.fetched_at = value.deserialize_any(ScalarVisitor)?,
            "iin" => self.iin = value.deserialize_any(TextVisitor)?,
            "status" => {
                self.status = value
                    .deserialize_any(TextVisitor)?
                    .map(|s| Status::parse(&s))
            }
            "result" => self.result = value.deserialize_any(FlagVisitor)?,
            "failure_reason" => {
                let f: Option<FailureView<'de>> =
                    value.deserialize_any(ObjectVisitor(PhantomData))?;
                self.failure_reason = f.map(|f| FailureReason {
                    kind: f.kind.map(Cow::into_owned),
                    detail: f.detail.map(Cow::into_owned),
                });
            }
            "face2face_result" => {
                let f: Option<Face2FaceView<'de>> =
                    value.deserialize_any(ObjectVisitor(PhantomData))?;
                self.session_id = f.and_then(|f| f.backend_session_id);
            }
            "result_json" => {
                self.result_json = value.deserialize_any(ObjectVisitor(PhantomData))?
            }
            _ => {
                IgnoredAny::deserialize(value)?;
            }
        }
        Ok(())
    }
}

#[derive(Default)]
struct FailureView<'a> {
    kind: Option<Cow<'a, str>>,
    detail: Option<Cow<'a, str>>,
}

impl<'de> Fields<'de> for FailureView<'de> {
    fn read<D: Deserializer<'de>>(&mut self, key: &str, value: D) -> Result<(), D::Error> {
        match key {
            "type" => self.kind = value.deserialize_any(TextVisitor)?,
            "detail" => self.detail = value.deserialize_any(TextVisitor)?,
            _ => {
                IgnoredAny::deserialize(value)?;
            }
        }
        Ok(())
    }
}

#[derive(Default)]
struct Face2FaceView<'a> {
    backend_session_id: Option<Cow<'a, str>>,
}

impl<'de> Fields<'de> for Face2FaceView<'de> {
    fn read<D: Deserializer<'de>>(&mut self, key: &str, value: D) -> Result<(), D::Error> {
        match key {
            "backend_session_id" => self.backend_session_id = value.deserialize_any(TextVisitor)?,
            _ => {
                IgnoredAny::deserialize(value)?;
            }
        }
        Ok(())
    }
}

impl<'de> Fields<'de> for PersonView<'de> {
    fn read<D: Deserializer<'de>>(&mut self, key: &str, value: D) -> Result<(), D::Error> {
        match key {
            "iin" => self.iin = value.deserialize_any(TextVisitor)?,
            "surname" => self.surname = value.deserialize_any(TextVisitor)?,
            "name" => self.name = value.deserialize_any(TextVisitor)?,
            "patronymic" => self.patronymic = value.deserialize_any(TextVisitor)?,
            "life_status" => self.life_status = value.deserialize_any(TextVisitor)?,
            "documents" => self.documents = value.deserialize_any(ListVisitor(PhantomData))?,
            _ => {
                IgnoredAny::deserialize(value)?;
            }
        }
        Ok(())
    }
}

impl<'de> Fields<'de> for DocumentView<'de> {
    const ORDER: &'static [&'static str] = &[
        "type",
        "number",
        "issue_date",
        "expiry_date",
        "issuer",
        "status",
    ];
    fn read<D: Deserializer<'de>>(&mut self, key: &str, value: D) -> Result<(), D::Error> {
        match key {
            "type" => self.kind = value.deserialize_any(TextVisitor)?,
            "number" => self.number = value.deserialize_any(TextVisitor)?,
            "expiry_date" => self.expiry_date = value.deserialize_any(TextVisitor)?,
            "status" => self.status = value.deserialize_any(TextVisitor)?,
            _ => {
                IgnoredAny::deserialize(value)?;
            }
        }
        Ok(())
    }
}

/// Reads and drops the rest of a list.
fn drain<'de, A: SeqAccess<'de>>(mut seq: A) -> Result<(), A::Error> {
    while seq.next_element::<IgnoredAny>()?.is_some() {}
    Ok(())
}

/// Reads and drops the rest of an object.
fn drain_map<'de, A: MapAccess<'de>>(mut map: A) -> Result<(), A::Error> {
    while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
    Ok(())
}

/// What `text` accepts, borrowed where the input allows: a string, number
/// or bool as text; null, objects and arrays as None.
struct TextVisitor;

impl<'de> Visitor<'de> for TextVisitor {
    type Value = Option<Cow<'de, str>>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Some(Cow::Borrowed(v)))
    }
    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Some(Cow::Owned(v.to_owned())))
    }
    fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
        Ok(Some(Cow::Owned(v)))
    }
    // Numbers print as a serde_json::Value holding them prints.
    fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Some(Cow::Owned(v.to_string())))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Some(Cow::Owned(v.to_string())))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Self::Value, E> {
        Ok(serde_json::Number::from_f64(v).map(|n| Cow::Owned(n.to_string())))
    }
    fn visit_bool<E>(self, v: bool) -> Result<Self::Value, E> {
        Ok(Some(Cow::Borrowed(if v { "true" } else { "false" })))
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        drain(seq).map(|()| None)
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        drain_map(map).map(|()| None)
    }
}

/// What `flag` accepts: true/false, "true"/"false" in any case, an integer
/// (not 0 is true); anything else is None.
struct FlagVisitor;

impl<'de> Visitor<'de> for FlagVisitor {
    type Value = Option<bool>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Self::Value, E> {
        Ok(Some(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(if v.eq_ignore_ascii_case("true") {
            Some(true)
        } else if v.eq_ignore_ascii_case("false") {
            Some(false)
        } else {
            None
        })
    }
    fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
        Ok(i64::try_from(v).ok().map(|n| n != 0))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Some(v != 0))
    }
    fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        drain(seq).map(|()| None)
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        drain_map(map).map(|()| None)
    }
}

/// A field of the view given the value of `key`.
struct FieldSeed<'t, T> {
    target: &'t mut T,
    key: &'t str,
}

impl<'de, T: Fields<'de>> DeserializeSeed<'de> for FieldSeed<'_, T> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        self.target.read(self.key, d)
    }
}

/// An object key, borrowed when it has no escape.
struct Key<'de>(Cow<'de, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a key")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v.to_owned())))
            }
        }
        d.deserialize_str(V)
    }
}

fn read_object<'de, T: Fields<'de>, A: MapAccess<'de>>(mut map: A) -> Result<T, A::Error> {
    let mut t = T::default();
    while let Some(Key(key)) = map.next_key()? {
        map.next_value_seed(FieldSeed {
            target: &mut t,
            key: &key,
        })?;
    }
    Ok(t)
}

/// What `object` accepts: an object; anything else is None.
struct ObjectVisitor<T>(PhantomData<T>);

impl<'de, T: Fields<'de>> Visitor<'de> for ObjectVisitor<T> {
    type Value = Option<T>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        read_object(map).map(Some)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        drain(seq).map(|()| None)
    }
    fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
}

/// What `list` accepts: an array, keeping the elements that parse (an
/// object, or an array of at most as many values as the type has fields,
/// read in their order as serde's derive does); anything else is empty.
struct ListVisitor<T>(PhantomData<T>);

impl<'de, T: Fields<'de>> Visitor<'de> for ListVisitor<T> {
    type Value = Vec<T>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<T>, A::Error> {
        let mut items = Vec::new();
        while let Some(Element(item)) = seq.next_element::<Element<T>>()? {
            items.extend(item);
        }
        Ok(items)
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Vec<T>, A::Error> {
        drain_map(map).map(|()| Vec::new())
    }
    fn visit_str<E>(self, _: &str) -> Result<Vec<T>, E> {
        Ok(Vec::new())
    }
    fn visit_u64<E>(self, _: u64) -> Result<Vec<T>, E> {
        Ok(Vec::new())
    }
    fn visit_i64<E>(self, _: i64) -> Result<Vec<T>, E> {
        Ok(Vec::new())
    }
    fn visit_f64<E>(self, _: f64) -> Result<Vec<T>, E> {
        Ok(Vec::new())
    }
    fn visit_bool<E>(self, _: bool) -> Result<Vec<T>, E> {
        Ok(Vec::new())
    }
    fn visit_unit<E>(self) -> Result<Vec<T>, E> {
        Ok(Vec::new())
    }
}

/// One element of a list: the value, or None when it does not parse.
struct Element<T>(Option<T>);

impl<'de, T: Fields<'de>> Deserialize<'de> for Element<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(PhantomData<T>);
        impl<'de, T: Fields<'de>> Visitor<'de> for V<T> {
            type Value = Element<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Element<T>, A::Error> {
                read_object(map).map(|t| Element(Some(t)))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Element<T>, A::Error> {
                let mut t = T::default();
                for key in T::ORDER {
                    if seq
                        .next_element_seed(FieldSeed {
                            target: &mut t,
                            key,
                        })?
                        .is_none()
                    {
                        return Ok(Element(Some(t)));
                    }
                }
                // More values than fields: serde's derive refuses the element.
                if seq.next_element::<IgnoredAny>()?.is_some() {
                    drain(seq)?;
                    return Ok(Element(None));
                }
                Ok(Element(Some(t)))
            }
            fn visit_str<E>(self, _: &str) -> Result<Element<T>, E> {
                Ok(Element(None))
            }
            fn visit_u64<E>(self, _: u64) -> Result<Element<T>, E> {
                Ok(Element(None))
            }
            fn visit_i64<E>(self, _: i64) -> Result<Element<T>, E> {
                Ok(Element(None))
            }
            fn visit_f64<E>(self, _: f64) -> Result<Element<T>, E> {
                Ok(Element(None))
            }
            fn visit_bool<E>(self, _: bool) -> Result<Element<T>, E> {
                Ok(Element(None))
            }
            fn visit_unit<E>(self) -> Result<Element<T>, E> {
                Ok(Element(None))
            }
        }
        d.deserialize_any(V(PhantomData))
    }
}

struct ScalarVisitor;

impl<'de> Visitor<'de> for ScalarVisitor {
    type Value = Scalar<'de>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Scalar<'de>, E> {
        Ok(Scalar::Text(Cow::Borrowed(v)))
    }
    fn visit_str<E>(self, v: &str) -> Result<Scalar<'de>, E> {
        Ok(Scalar::Text(Cow::Owned(v.to_owned())))
    }
    fn visit_unit<E>(self) -> Result<Scalar<'de>, E> {
        Ok(Scalar::Null)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Scalar<'de>, E> {
        Ok(Scalar::Other)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Scalar<'de>, E> {
        Ok(Scalar::Other)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Scalar<'de>, E> {
        Ok(Scalar::Other)
    }
    fn visit_bool<E>(self, _: bool) -> Result<Scalar<'de>, E> {
        Ok(Scalar::Other)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Scalar<'de>, A::Error> {
        drain(seq).map(|()| Scalar::Other)
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Scalar<'de>, A::Error> {
        drain_map(map).map(|()| Scalar::Other)
    }
}

/// Whether an error body is the service's own (FastAPI's JSON object with
/// a `detail` or `message`), not a page from a proxy or gateway in between.
pub fn is_json_error(body: &[u8]) -> bool {
    serde_json::from_slice::<Value>(body).is_ok_and(|v| {
        v.as_object()
            .is_some_and(|o| o.contains_key("detail") || o.contains_key("message"))
    })
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
        return clause(fallback());
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
    let message = v
        .get("detail")
        .and_then(pick)
        .or_else(|| v.get("message").and_then(pick))
        .or_else(|| v.get("error").and_then(pick))
        .unwrap_or_else(fallback);
    clause(message)
}

/// The service's message as a clause: gbdfl quotes it inside its own
/// sentences ("no answer from the service: HTTP 429: Request was
/// throttled. ..."), which end in their own full stop, so the message's
/// final full stops and spaces are dropped ("throttled.." otherwise).
fn clause(mut message: String) -> String {
    let kept = message
        .trim_end_matches(|c: char| c == '.' || c.is_whitespace())
        .len();
    // A message of nothing but full stops is kept as it came.
    if kept > 0 {
        message.truncate(kept);
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

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
        // Quoted inside gbdfl's own sentences, which end in their own stop.
        assert_eq!(
            error_message(
                br#"{"detail":"Request was throttled. Expected available in 5 seconds. "}"#
            ),
            "Request was throttled. Expected available in 5 seconds"
        );
        assert_eq!(
            error_message(br#"{"detail":"Request was throttled."}"#),
            "Request was throttled"
        );
        assert_eq!(error_message(b"Bad Gateway.\n"), "Bad Gateway");
        assert_eq!(error_message(b"..."), "...");
    }
}
