//! The GBDFL answer as data: every field of the API page, parsed tolerantly.
//!
//! Rule this module keeps: real traffic wins over the documentation. Every
//! field is optional, nulls and missing objects are fine, unknown fields are
//! ignored, scalars of the wrong JSON type are taken as text, a value that
//! is not an object where one is expected is no object, a value that is not
//! a list where one is expected is an empty list, a malformed element of a
//! list is skipped rather than failing the whole answer, and within an
//! object a repeated field keeps its last value (only a repeated field of
//! the answer itself, read straight from bytes, is an error, as serde's
//! derive has it). The raw body is always kept elsewhere, so nothing is
//! lost if parsing here fails.
//!
//! One model, two forms. Each type is generic over the type of its texts:
//! [`Response`] (texts `String`, the default) is the owned answer that
//! `show`, `fetch` and the reports read; `Response<Cow<'a, str>>` is the
//! same answer borrowed from the JSON it was read from (a text with an
//! escape in it, or a number taken as text, is the only copy made), which
//! `gbdfl import` reads a million times ([`parse_answer`]). The fields are
//! named once, in the `model!` macro of this module, which writes each
//! struct and its reading; see there for why the reading is not serde's
//! derive.

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;
use std::ops::Deref;

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
    /// `UNAPPROVED`: the session is not approved (yet).
    Unapproved,
    /// `PENDING`: the lookup is still running; ask again later.
    Pending,
    /// `VALID`: the person was found and `result_json` holds them.
    Valid,
    /// `INVALID`: the check failed.
    Invalid,
    /// `TIMEOUT`: the service gave up waiting for the State Database.
    Timeout,
    /// `NOT_FOUND`: no such person.
    NotFound,
    /// `FAILED`: the lookup failed; `failure_reason` says why.
    Failed,
    /// `ERROR_ACCEPTED`: an error the service acknowledged.
    ErrorAccepted,
    /// A status the API page does not list; kept as received.
    Other(String),
}

impl Status {
    /// Reads a status, ignoring case and surrounding spaces; an unknown
    /// one is kept as received in [`Status::Other`].
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

    /// The status as the API page spells it (an unknown one as received).
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

/// The type of the texts of an answer read from JSON whose texts live for
/// `'de`: `String` (owned) or `Cow<'a, str>` (borrowed where the JSON
/// allows, for `'de: 'a`).
pub trait Text<'de>: Deref<Target = str> + Sized {
    /// A text that lives as long as the JSON.
    fn borrowed(s: &'de str) -> Self;
    /// A text made while reading (unescaped, or a number printed).
    fn owned(s: String) -> Self;
}

impl<'de> Text<'de> for String {
    fn borrowed(s: &'de str) -> Self {
        s.to_owned()
    }
    fn owned(s: String) -> Self {
        s
    }
}

impl<'de: 'a, 'a> Text<'de> for Cow<'a, str> {
    fn borrowed(s: &'de str) -> Self {
        Cow::Borrowed(s)
    }
    fn owned(s: String) -> Self {
        Cow::Owned(s)
    }
}

/// The JSON key of a field: its own name, or the one given.
macro_rules! key {
    ($field:ident) => {
        stringify!($field)
    };
    ($field:ident, $key:literal) => {
        $key
    };
}

/// Writes each struct of the answer from its one list of fields: the
/// struct (generic over its texts, serialised by serde's derive) and its
/// reading, field by field through [`Lenient`], which keeps the rules of
/// the module doc.
///
/// Why not serde's derive for the reading as well: the derive refuses a
/// repeated field of an object, where the rules keep its last value, and
/// gets there only by reading each object into a `serde_json::Value` first:
/// a tree of owned texts built and dropped for every answer, too slow for
/// `gbdfl import`. The reading written here goes through the JSON once,
/// reads each struct in its place and borrows the texts where `T` allows.
macro_rules! model {
    ($(
        $(#[doc = $doc:literal])*
        pub struct $name:ident<$t:ident> {
            $(
                $(#[doc = $fdoc:literal])*
                $(#[serde(rename = $key:literal)])?
                pub $field:ident: $ty:ty,
            )*
        }
    )*) => {$(
        $(#[doc = $doc])*
        #[derive(Debug, Clone, Serialize)]
        pub struct $name<$t = String> {
            $(
                $(#[doc = $fdoc])*
                $(#[serde(rename = $key)])?
                pub $field: $ty,
            )*
        }

        // Every field empty, for texts of any type (the derive would ask
        // for texts with a default).
        impl<$t> Default for $name<$t> {
            fn default() -> Self {
                Self {
                    $($field: Default::default(),)*
                }
            }
        }

        impl<'de, $t: Text<'de>> Fields<'de> for $name<$t> {
            const KEYS: &'static [&'static str] = &[$(key!($field $(, $key)?)),*];
            const NAME: &'static str = stringify!($name);
            fn read<D: Deserializer<'de>>(&mut self, key: &str, value: D) -> Result<(), D::Error> {
                match key {
                    $(key!($field $(, $key)?) => <$ty as Lenient<'de>>::read_into(&mut self.$field, value),)*
                    _ => IgnoredAny::deserialize(value).map(drop),
                }
            }
        }

        // The duplicate check of a read keeps a bit per field.
        const _: () = assert!(<$name as Fields<'static>>::KEYS.len() <= 64);

        /// Read as serde's derive reads a struct, with the rules of the
        /// module doc for each field: an object (a repeated field is an
        /// error) or an array of the fields in order.
        impl<'de, $t: Text<'de>> Deserialize<'de> for $name<$t> {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                d.deserialize_struct(
                    stringify!($name),
                    <Self as Fields<'de>>::KEYS,
                    StructVisitor(PhantomData),
                )
            }
        }

        impl<'de, $t: Text<'de>> Lenient<'de> for Option<$name<$t>> {
            fn read_into<D: Deserializer<'de>>(slot: &mut Self, d: D) -> Result<(), D::Error> {
                d.deserialize_any(ObjectInto(slot))
            }
        }

        impl<'de, $t: Text<'de>> Lenient<'de> for Vec<$name<$t>> {
            fn read_into<D: Deserializer<'de>>(slot: &mut Self, d: D) -> Result<(), D::Error> {
                d.deserialize_any(ListInto(slot))
            }
        }
    )*};
}

model! {
    /// The whole answer of a successful (HTTP 200) call.
    pub struct Response<T> {
        /// The id of the lookup's session on the service's side.
        pub backend_session_id: Option<T>,
        /// Why the lookup failed (status `FAILED`).
        pub failure_reason: Option<FailureReason<T>>,
        /// The face-to-face comparison of the session.
        pub face2face_result: Option<Face2Face<T>>,
        /// The IIN asked for.
        pub iin: Option<T>,
        /// The person, when the status is `VALID`.
        pub result_json: Option<Person<T>>,
        /// The status of the lookup.
        pub status: Option<Status>,
        /// The service's verdict: true, false, or none given.
        pub result: Option<bool>,
    }

    /// `failure_reason`: why a lookup failed.
    pub struct FailureReason<T> {
        /// The kind of failure (`CLIENT`, `SERVICE_ERROR`, ...).
        #[serde(rename = "type")]
        pub kind: Option<T>,
        /// The service's words.
        pub detail: Option<T>,
    }

    /// `face2face_result`: the comparison of the two source sessions.
    pub struct Face2Face<T> {
        /// The similarity score, as sent.
        pub prediction: Option<T>,
        /// The similarity as a percentage, as sent.
        pub prediction_percent: Option<T>,
        /// The id of the session on the service's side.
        pub backend_session_id: Option<T>,
        /// Whether the faces match.
        pub result: Option<bool>,
        /// The first session compared.
        pub source_session_1: Option<SourceSession<T>>,
        /// The second session compared.
        pub source_session_2: Option<SourceSession<T>>,
    }

    /// A session that a face-to-face comparison used.
    pub struct SourceSession<T> {
        /// The session's id.
        pub id: Option<T>,
        /// How the face was taken.
        pub technology: Option<Technology<T>>,
        /// The session's status.
        pub status: Option<T>,
        /// When the session began, as sent.
        pub created_at: Option<T>,
        /// When the session last changed, as sent.
        pub updated_at: Option<T>,
    }

    /// The technology of a source session.
    pub struct Technology<T> {
        /// Its name for people.
        pub name: Option<T>,
        /// Its code.
        pub code: Option<T>,
    }

    /// `result_json`: the person as the State Database of Individuals holds them.
    pub struct Person<T> {
        /// The person's IIN.
        pub iin: Option<T>,
        /// Surname.
        pub surname: Option<T>,
        /// Given name.
        pub name: Option<T>,
        /// Patronymic.
        pub patronymic: Option<T>,
        /// Date of birth, as sent.
        pub birth_date: Option<T>,
        /// Gender, as sent; see [`Person::gender`].
        pub gender: Option<T>,
        /// Nationality.
        pub nationality: Option<T>,
        /// Citizenship.
        pub citizenship: Option<T>,
        /// Life status ("Нормальный", "Умерший", ...).
        pub life_status: Option<T>,
        /// Place of birth.
        pub birth_place: Option<Place<T>>,
        /// Identity documents.
        pub documents: Vec<Document<T>>,
        /// The registered address.
        pub registration_address: Option<Address<T>>,
    }

    /// A place (of birth).
    pub struct Place<T> {
        /// Country.
        pub country: Option<T>,
        /// Region.
        pub region: Option<T>,
        /// District.
        pub district: Option<T>,
        /// City.
        pub city: Option<T>,
    }

    /// An identity document.
    pub struct Document<T> {
        /// The kind of document ("УДОСТОВЕРЕНИЕ РК", "ПАСПОРТ", ...).
        #[serde(rename = "type")]
        pub kind: Option<T>,
        /// Its number.
        pub number: Option<T>,
        /// Date of issue, as sent.
        pub issue_date: Option<T>,
        /// Date of expiry, as sent.
        pub expiry_date: Option<T>,
        /// Who issued it.
        pub issuer: Option<T>,
        /// Its status; see [`Document::status_is_valid`].
        pub status: Option<T>,
    }

    /// A registered address.
    pub struct Address<T> {
        /// Country.
        pub country: Option<T>,
        /// Region.
        pub region: Option<T>,
        /// District.
        pub district: Option<T>,
        /// City.
        pub city: Option<T>,
        /// Street.
        pub street: Option<T>,
        /// Building.
        pub building: Option<T>,
        /// Flat.
        pub flat: Option<T>,
        /// Since when the person is registered here, as sent.
        pub begin_date: Option<T>,
    }
}

impl<T: Deref<Target = str>> fmt::Display for FailureReason<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.kind.as_deref(), self.detail.as_deref()) {
            (Some(k), Some(d)) => write!(f, "{k}: {d}"),
            (Some(k), None) => f.write_str(k),
            (None, Some(d)) => f.write_str(d),
            (None, None) => f.write_str("(no detail)"),
        }
    }
}

impl<T: Deref<Target = str>> Person<T> {
    /// "Surname Name Patronymic", skipping missing parts.
    pub fn full_name(&self) -> String {
        full_name([
            self.surname.as_deref(),
            self.name.as_deref(),
            self.patronymic.as_deref(),
        ])
    }

    /// The gender, read as [`Gender::parse`] reads it; None when not given.
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

impl<T: Deref<Target = str>> Place<T> {
    /// "City, District, Region, Country", skipping missing parts.
    pub fn one_line(&self) -> String {
        join_parts(&[
            self.city.as_deref(),
            self.district.as_deref(),
            self.region.as_deref(),
            self.country.as_deref(),
        ])
    }
}

impl<T: Deref<Target = str>> Document<T> {
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

impl<T: Deref<Target = str>> Address<T> {
    /// "Street Building, кв. Flat, City, District, Region, Country",
    /// skipping missing parts.
    pub fn one_line(&self) -> String {
        let street = match (
            self.street.as_deref(),
            self.building.as_deref(),
            self.flat.as_deref(),
        ) {
            (Some(s), Some(b), Some(f)) => Some(format!("{s} {b}, кв. {f}")),
            (Some(s), Some(b), None) => Some(format!("{s} {b}")),
            (Some(s), None, _) => Some(s.to_owned()),
            (None, Some(b), _) => Some(b.to_owned()),
            (None, None, _) => None,
        };
        join_parts(&[
            street.as_deref(),
            self.city.as_deref(),
            self.district.as_deref(),
            self.region.as_deref(),
            self.country.as_deref(),
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

fn join_parts(parts: &[Option<&str>]) -> String {
    parts
        .iter()
        .flatten()
        .map(|s| s.trim())
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Gender, accepting the Russian and English spellings seen in traffic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Gender {
    /// Male.
    Male,
    /// Female.
    Female,
    /// A spelling not recognised; kept as received.
    Other(String),
}

impl Gender {
    /// Reads a gender in Russian, Kazakh or English, ignoring case.
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
///
/// The body is read whole into a `serde_json::Value` first: a body that is
/// not valid JSON throughout (a lone surrogate in a text, a number out of
/// range, in any field) is refused, as it always was.
pub fn parse_response(body: &[u8]) -> Result<Response, serde_json::Error> {
    let v: Value = serde_json::from_slice(body)?;
    if !v.is_object() {
        return Err(serde::de::Error::custom(
            "the answer is JSON but not an object",
        ));
    }
    serde_json::from_value(v)
}

/// An answer as a line of an archive holds it (`gbdfl import`): the answer,
/// borrowed from the line, and the time it was fetched.
#[derive(Debug, Default)]
pub struct Answer<'a> {
    /// The `fetched_at` field an archive line adds to the answer.
    pub fetched_at: Scalar<'a>,
    /// The answer, its texts borrowed from the line where they have no
    /// escape.
    pub response: Response<Cow<'a, str>>,
}

/// A field read as it is: missing or null, a text, or anything else.
#[derive(Debug, Default, PartialEq, Eq)]
pub enum Scalar<'a> {
    /// Missing, or null.
    #[default]
    Null,
    /// A text.
    Text(Cow<'a, str>),
    /// A number, bool, list or object.
    Other,
}

/// The field of an archive line that holds the time it was fetched.
const FETCHED_AT: &str = "fetched_at";

/// Reads an answer for import in one pass over the line, borrowing its
/// texts; `Err` when `line` is not one JSON object, or repeats a field of
/// the answer (or `fetched_at`), as [`Response`] read straight from bytes
/// does.
///
/// The answer is read by the same code as [`parse_response`] reads it, but
/// from the line itself rather than through a `serde_json::Value`: only
/// the fields of the model are checked to be valid text and numbers, an
/// unknown field only to be JSON.
pub fn parse_answer(line: &str) -> Result<Answer<'_>, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_str(line);
    let answer = de.deserialize_any(AnswerVisitor)?;
    de.end()?;
    answer.ok_or_else(|| serde::de::Error::custom("the answer is JSON but not an object"))
}

struct AnswerVisitor;

impl<'de> Visitor<'de> for AnswerVisitor {
    type Value = Option<Answer<'de>>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut answer = Answer::default();
        let keys = <Response<Cow<'de, str>> as Fields<'de>>::KEYS;
        let mut seen = 0u64;
        while let Some(Key(key)) = map.next_key()? {
            let known = if key == FETCHED_AT {
                Some((keys.len(), FETCHED_AT))
            } else {
                keys.iter().position(|k| *k == key).map(|i| (i, keys[i]))
            };
            if let Some((bit, name)) = known {
                if seen & (1 << bit) != 0 {
                    // Refused once past the colon, where import always did.
                    return map.next_value_seed(Duplicate(name)).map(|()| None);
                }
                seen |= 1 << bit;
            }
            if key == FETCHED_AT {
                answer.fetched_at = map.next_value_seed(ScalarSeed)?;
            } else {
                map.next_value_seed(FieldSeed {
                    target: &mut answer.response,
                    key: &key,
                })?;
            }
        }
        Ok(Some(answer))
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

/// The error for a repeated field, given in place of its value.
struct Duplicate(&'static str);

impl<'de> DeserializeSeed<'de> for Duplicate {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, _: D) -> Result<(), D::Error> {
        Err(serde::de::Error::duplicate_field(self.0))
    }
}

/// A struct of the model read field by field: `read` is given each key and
/// its value, and ignores (but reads) the value of a key it does not know.
trait Fields<'de>: Default {
    /// The JSON keys of the fields in declaration order: serde's derive
    /// reads a JSON array as these, element by element.
    const KEYS: &'static [&'static str];
    /// The struct's name, for messages.
    const NAME: &'static str;
    /// Reads the value of `key` into its field, by the rules of the module doc.
    fn read<D: Deserializer<'de>>(&mut self, key: &str, value: D) -> Result<(), D::Error>;
}

/// A field's type read by the rules of the module doc: never an error but
/// for JSON that is not JSON. Read into its place in the struct, which is
/// some hundreds of bytes for a person: not moved about by value.
trait Lenient<'de>: Sized {
    fn read_into<D: Deserializer<'de>>(slot: &mut Self, d: D) -> Result<(), D::Error>;
}

/// A string, number or bool as text; null, objects and arrays as None.
impl<'de, T: Text<'de>> Lenient<'de> for Option<T> {
    fn read_into<D: Deserializer<'de>>(slot: &mut Self, d: D) -> Result<(), D::Error> {
        *slot = d.deserialize_any(TextVisitor(PhantomData))?;
        Ok(())
    }
}

/// true/false, "true"/"false" in any case, an integer (not 0 is true);
/// anything else is None.
impl<'de> Lenient<'de> for Option<bool> {
    fn read_into<D: Deserializer<'de>>(slot: &mut Self, d: D) -> Result<(), D::Error> {
        *slot = d.deserialize_any(FlagVisitor)?;
        Ok(())
    }
}

/// Any text (or scalar taken as text), read by [`Status::parse`].
impl<'de> Lenient<'de> for Option<Status> {
    fn read_into<D: Deserializer<'de>>(slot: &mut Self, d: D) -> Result<(), D::Error> {
        let text: Option<Cow<'de, str>> = d.deserialize_any(TextVisitor(PhantomData))?;
        *slot = text.map(|s| Status::parse(&s));
        Ok(())
    }
}

/// Reads an object into `s`; a repeated field is an error when `strict`
/// (serde's derive), else keeps its last value (as a `serde_json::Value`).
fn read_map<'de, S: Fields<'de>, A: MapAccess<'de>>(
    mut map: A,
    s: &mut S,
    strict: bool,
) -> Result<(), A::Error> {
    let mut seen = 0u64;
    while let Some(Key(key)) = map.next_key()? {
        if strict && let Some(i) = S::KEYS.iter().position(|k| *k == key) {
            if seen & (1 << i) != 0 {
                return Err(serde::de::Error::duplicate_field(S::KEYS[i]));
            }
            seen |= 1 << i;
        }
        map.next_value_seed(FieldSeed {
            target: &mut *s,
            key: &key,
        })?;
    }
    Ok(())
}

/// Reads an array into `s` as serde's derive does: the values are the
/// fields in declaration order, missing ones left empty. False when there
/// are more values than fields (the rest is read and dropped).
fn read_seq<'de, S: Fields<'de>, A: SeqAccess<'de>>(
    mut seq: A,
    s: &mut S,
) -> Result<bool, A::Error> {
    for key in S::KEYS {
        let read = seq.next_element_seed(FieldSeed {
            target: &mut *s,
            key,
        })?;
        if read.is_none() {
            return Ok(true);
        }
    }
    if seq.next_element::<IgnoredAny>()?.is_some() {
        drain(seq)?;
        return Ok(false);
    }
    Ok(true)
}

/// A field of `S` given the value of `key`.
struct FieldSeed<'t, S> {
    target: &'t mut S,
    key: &'t str,
}

impl<'de, S: Fields<'de>> DeserializeSeed<'de> for FieldSeed<'_, S> {
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
            fn visit_string<E>(self, v: String) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v)))
            }
        }
        d.deserialize_str(V)
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

/// A struct of the model as serde's derive reads one: an object, with a
/// repeated field an error, or an array of its fields.
struct StructVisitor<S>(PhantomData<S>);

impl<'de, S: Fields<'de>> Visitor<'de> for StructVisitor<S> {
    type Value = S;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "struct {}", S::NAME)
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<S, A::Error> {
        let mut s = S::default();
        read_map(map, &mut s, true)?;
        Ok(s)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<S, A::Error> {
        let mut s = S::default();
        if read_seq(seq, &mut s)? {
            Ok(s)
        } else {
            Err(serde::de::Error::invalid_length(S::KEYS.len() + 1, &self))
        }
    }
}

/// What a text field accepts, borrowed where the input and `T` allow: a
/// string, number or bool as text; null, objects and arrays as None.
struct TextVisitor<T>(PhantomData<T>);

impl<'de, T: Text<'de>> Visitor<'de> for TextVisitor<T> {
    type Value = Option<T>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Some(T::borrowed(v)))
    }
    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Some(T::owned(v.to_owned())))
    }
    fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
        Ok(Some(T::owned(v)))
    }
    // Numbers print as a serde_json::Value holding them prints.
    fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Some(T::owned(v.to_string())))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Some(T::owned(v.to_string())))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Self::Value, E> {
        Ok(serde_json::Number::from_f64(v).map(|n| T::owned(n.to_string())))
    }
    fn visit_bool<E>(self, v: bool) -> Result<Self::Value, E> {
        Ok(Some(T::borrowed(if v { "true" } else { "false" })))
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

/// What a flag accepts: true/false, "true"/"false" in any case, an integer
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

/// What an object field accepts: an object, a repeated field keeping its
/// last value; anything else is None.
struct ObjectInto<'t, S>(&'t mut Option<S>);

impl<'de, S: Fields<'de>> Visitor<'de> for ObjectInto<'_, S> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<(), A::Error> {
        read_map(map, self.0.insert(S::default()), false)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<(), A::Error> {
        *self.0 = None;
        drain(seq)
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        *self.0 = None;
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        *self.0 = None;
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        *self.0 = None;
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        *self.0 = None;
        Ok(())
    }
    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        *self.0 = None;
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        *self.0 = None;
        Ok(())
    }
}

/// What a list field accepts: an array, keeping the elements that parse
/// (an object, a repeated field keeping its last value, or an array of at
/// most as many values as the type has fields, read in their order as
/// serde's derive does); anything else is empty.
struct ListInto<'t, S>(&'t mut Vec<S>);

impl<'de, S: Fields<'de>> Visitor<'de> for ListInto<'_, S> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let items = self.0;
        items.clear();
        loop {
            // Each element is read in its place at the end of the list.
            items.push(S::default());
            let last = items.last_mut().expect("just pushed");
            match seq.next_element_seed(ElementInto(last))? {
                Some(true) => {}
                Some(false) => {
                    items.pop();
                }
                None => {
                    items.pop();
                    return Ok(());
                }
            }
        }
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<(), A::Error> {
        self.0.clear();
        drain_map(map)
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        self.0.clear();
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        self.0.clear();
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        self.0.clear();
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        self.0.clear();
        Ok(())
    }
    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        self.0.clear();
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        self.0.clear();
        Ok(())
    }
}

/// One element of a list, read into `S`: true when it parses.
struct ElementInto<'t, S>(&'t mut S);

impl<'de, S: Fields<'de>> DeserializeSeed<'de> for ElementInto<'_, S> {
    type Value = bool;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de, S: Fields<'de>> Visitor<'de> for ElementInto<'_, S> {
    type Value = bool;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<bool, A::Error> {
        read_map(map, self.0, false).map(|()| true)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<bool, A::Error> {
        read_seq(seq, self.0)
    }
    fn visit_str<E>(self, _: &str) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_u64<E>(self, _: u64) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_i64<E>(self, _: i64) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_f64<E>(self, _: f64) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_bool<E>(self, _: bool) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_unit<E>(self) -> Result<bool, E> {
        Ok(false)
    }
}

/// `fetched_at` as it is: missing or null, a text, or anything else.
struct ScalarSeed;

impl<'de> DeserializeSeed<'de> for ScalarSeed {
    type Value = Scalar<'de>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Scalar<'de>, D::Error> {
        d.deserialize_any(ScalarVisitor)
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

    /// The owned answer and the borrowed one import reads are the same
    /// answer, field for field, whatever odd values it holds.
    #[test]
    fn owned_and_borrowed_forms_agree() {
        let lines = [
            r#"{"status":"VALID","result":"true","extra":{"x":1},"iin":880510400015,
            "failure_reason":{"type":1.5,"detail":[1]},"face2face_result":"weird",
            "result_json":{"surname":"A","name":null,"birth_date":19950215,"gender":true,
              "documents":[{"type":"ID","number":123,"expiry_date":null}, 5, null, [],
                ["ПАСПОРТ","N1","2020-01-01","2030-01-01"], ["a","b","c","d","e","f","g"],
                {"type":"A","type":"B"}],
              "registration_address":[1],"birth_place":{"city":"Талгар","zzz":[]}}}"#,
            r#"{"status":"ok","face2face_result":{"backend_session_id":7,"result":"FALSE",
              "source_session_1":{"technology":{"name":"\u0041","code":-0.0},"id":"x","id":"y"},
              "source_session_2":5},"result_json":{"documents":{"0":1},"surname":"\u0416"}}"#,
            r#"{}"#,
        ];
        for line in lines {
            let owned = serde_json::to_value(parse_response(line.as_bytes()).unwrap()).unwrap();
            let borrowed = serde_json::to_value(parse_answer(line).unwrap().response).unwrap();
            assert_eq!(owned, borrowed, "{line}");
            let straight: Response = serde_json::from_str(line).unwrap();
            assert_eq!(owned, serde_json::to_value(straight).unwrap(), "{line}");
        }
    }

    #[test]
    fn texts_are_borrowed_unless_escaped_or_made() {
        let line = r#"{"iin":"880510400015","fetched_at":"2030-01-01T00:00:00Z",
            "result_json":{"surname":"Ж","name":"\u0416","patronymic":5,
              "documents":[{"number":"N1"}]}}"#;
        let a = parse_answer(line).unwrap();
        assert!(matches!(a.fetched_at, Scalar::Text(Cow::Borrowed(_))));
        assert!(matches!(
            a.response.iin,
            Some(Cow::Borrowed("880510400015"))
        ));
        let p = a.response.result_json.unwrap();
        assert!(matches!(p.surname, Some(Cow::Borrowed("Ж"))));
        assert!(matches!(p.name.as_deref(), Some("Ж")));
        assert!(matches!(p.name, Some(Cow::Owned(_))));
        assert!(matches!(p.patronymic, Some(Cow::Owned(ref s)) if s == "5"));
        assert!(matches!(p.documents[0].number, Some(Cow::Borrowed("N1"))));
    }

    /// Within an object a repeated field keeps its last value; a repeated
    /// field of the answer itself is an error when read straight from the
    /// bytes (import, serde), and the last value through a Value (show).
    #[test]
    fn repeated_fields() {
        let nested = r#"{"result_json":{"surname":"A","surname":"B",
            "documents":[{"number":"1"}],"documents":[{"number":"2","number":"3"}],
            "birth_place":{"city":"X"},"birth_place":{"region":"Y"}}}"#;
        let p = parse_answer(nested).unwrap().response.result_json.unwrap();
        assert_eq!(p.surname.as_deref(), Some("B"));
        assert_eq!(p.documents.len(), 1);
        assert_eq!(p.documents[0].number.as_deref(), Some("3"));
        let place = p.birth_place.unwrap();
        assert_eq!((place.city, place.region.as_deref()), (None, Some("Y")));
        let top = r#"{"iin":"1","x":1,"x":2,"iin":"2"}"#;
        let e = parse_answer(top).unwrap_err().to_string();
        // Import says where the value begins, as it always has; serde the key.
        assert_eq!(e, "duplicate field `iin` at line 1 column 29");
        let e = serde_json::from_str::<Response>(top)
            .unwrap_err()
            .to_string();
        assert_eq!(e, "duplicate field `iin` at line 1 column 28");
        assert_eq!(
            parse_response(top.as_bytes()).unwrap().iin.as_deref(),
            Some("2")
        );
        let fetched = r#"{"fetched_at":"a","fetched_at":"b"}"#;
        assert!(
            parse_answer(fetched)
                .unwrap_err()
                .to_string()
                .contains("`fetched_at`")
        );
        assert!(parse_answer(r#"{"x":1,"x":2}"#).is_ok());
    }

    /// Import reads the fields of the model from the line itself: a text
    /// that is not Unicode (a lone surrogate) or a number out of range is
    /// refused there, as [`parse_response`] refuses it anywhere; in a field
    /// the model does not have, it is only skipped over.
    #[test]
    fn invalid_text_in_a_field_of_the_model() {
        for line in [
            r#"{"result_json":{"birth_date":"\ud800"}}"#,
            r#"{"face2face_result":{"prediction":1e400}}"#,
        ] {
            assert!(parse_answer(line).is_err(), "{line}");
            assert!(parse_response(line.as_bytes()).is_err(), "{line}");
        }
        assert!(parse_answer(r#"{"other":{"x":"\ud800","y":1e400}}"#).is_ok());
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
