//! The encrypted store of lookups: the one boundary behind which the
//! database lives.
//!
//! Callers hand in and get back plaintext domain types ([`NewLookup`],
//! [`Lookup`], [`QueueItem`], [`AuditEntry`]); the store seals every
//! personal field before it is written, and the rows of the private
//! `sqlite` backend hold those fields only as sealed bytes (`*_enc`).
//!
//! Rules this crate keeps:
//! - no IIN, name, document number, purpose or session id is in plaintext
//!   in the database or its WAL (`privacy::database_and_wal_hold_no_iin_name_document_number_or_session_id`
//!   in tests/cli);
//! - every sealed value is bound to its table, column, row id, key version
//!   and its row's choosing fields ([`sealed`]), so a value moved to another
//!   row, or a row relabelled, does not open (`crypto` tests,
//!   tests/cli/tamper.rs, `format::a_ciphertext_copied_into_another_row_is_reported_not_shown`);
//! - a lookup's id is made by the caller before the call ([`LookupId`],
//!   UUIDv7), or from the content for an import, so importing the same
//!   archive twice stores nothing twice
//!   (`bulk::issue_6_import_then_export_gives_back_the_same_answers`).

#![deny(missing_docs)]

pub mod archive;
mod audit;
mod bulk;
pub mod codec;
pub mod crypto;
mod foreign;
pub mod keyfile;
mod maintenance;
mod migrate;
mod org;
pub mod owner;
mod queue;
pub mod sealed;
mod spill;
mod sqlite;
#[cfg(any(test, feature = "testing"))]
pub mod testing;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use rusqlite::Connection;
use uuid::Uuid;
use zeroize::Zeroizing;

use crate::crypto::{CryptoError, Keys, MasterKey, StableKeys};
use gbdfl_core::clock::{Clock, SystemClock};
use gbdfl_core::iin::Iin;

pub use audit::{AuditCheck, AuditEntry, AuditFilter, AuditView};
pub use bulk::{
    Floor, Handed, ImportItem, ImportOutcome, Opener, Scratch, SealedLookup, SealedSummaries,
};
pub use foreign::LatestBatcher;
pub use maintenance::{CheckReport, PURGE_BATCH, PurgeCounts};
pub use migrate::set_migration_progress;
pub use org::OrgKeys;
pub use queue::{
    After, Begin, DayStats, NewRequest, NextClaim, QueueItem, QueueState, SealedFinish,
};
pub use spill::{Reservation, reserve_size, spill_dir};
pub use sqlite::LatestRow;
pub use sqlite::{AuditRow, LookupRow, SCHEMA_VERSION};

/// What can go wrong in the store. Messages say what to do next.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "no gbdfl database at {0}: run `gbdfl init` first, or pass the right file with --db PATH"
    )]
    /// No database file at the path given (`gbdfl init` was never run for it).
    NotInitialised(PathBuf),
    #[error(
        "{0} already holds a gbdfl database: a database with the organisation's keys is made only as a new file; pass another --db PATH. The file was not changed"
    )]
    /// A new database was to be made with the organisation's keys
    /// ([`Store::init_adopting`]), but the file already holds one.
    AlreadyInitialised(PathBuf),
    #[error(
        "{0} is not a gbdfl database (it is not SQLite, or belongs to another program): check --db PATH; the file was not changed"
    )]
    /// The file is not SQLite, or is another program's database; it was left as it was.
    NotADatabase(PathBuf),
    #[error(
        "database {path} has schema version {found}, newer than this gbdfl understands ({supported}): upgrade gbdfl; the file was not changed"
    )]
    /// The database was written by a newer gbdfl; it is not touched.
    TooNew {
        /// The database file.
        path: PathBuf,
        /// The schema version (`user_version`) the file has.
        found: i64,
        /// The newest schema version this build reads ([`SCHEMA_VERSION`]).
        supported: i64,
    },
    #[error(
        "wrong key for this database (database key id {db_key_id}, key file key id {file_key_id}): pass the key file it was created with, --key-file PATH"
    )]
    /// The key file's master key is not one this database was ever sealed under.
    WrongKey {
        /// The key id of the database's current key version.
        db_key_id: String,
        /// The key id of the key file that was passed.
        file_key_id: String,
    },
    #[error(
        "key file key id {file_key_id} is key version {version} of this database, retired by `gbdfl rekey` at {retired_at}; the database now opens only with key id {db_key_id}: pass the newer key file, --key-file PATH"
    )]
    /// The key file holds an older key version, retired by `gbdfl rekey`.
    RetiredKey {
        /// The key id of the key file that was passed.
        file_key_id: String,
        /// The key version that key file held.
        version: i64,
        /// When `rekey` retired it, as stored.
        retired_at: String,
        /// The key id the database now opens with.
        db_key_id: String,
    },
    #[error(
        "the database has no key record; it was not initialised completely: run `gbdfl init` again with the same --db and --key-file"
    )]
    /// The `keys` table has no current key version: `init` did not finish.
    NoKey,
    #[error(
        "record {id}: its {column} does not decrypt ({reason}); it may have been altered. Nothing was shown from it; run `gbdfl check`"
    )]
    /// A stored value does not open or is outside what the format allows:
    /// the database was altered, or a sealed value was moved to another row.
    Corrupt {
        /// The row (a lookup or queue id), or a description of what was read.
        id: String,
        /// The column whose value failed.
        column: &'static str,
        /// Why it failed (a [`CryptoError`], or the value that was refused).
        reason: String,
    },
    /// A stored value outside what the format allows (an enumerated
    /// column, a time no calendar holds): the database was altered.
    #[error(
        "the database holds a value its format does not allow ({0}); it may have been altered. Nothing was shown from it; run `gbdfl check`"
    )]
    Malformed(String),
    #[error(
        "database {0} is read-only for this user (file mode, owner, or a read-only disk): gbdfl records every lookup and audit entry, so it needs to write; nothing was sent to the service. Check who owns the file and its mode, or pass a writable copy with --db PATH"
    )]
    /// The database cannot be written by this user; nothing was sent to the service.
    ReadOnly(PathBuf),
    #[error(
        "could not write to the database (the disk is full, a file size limit was reached, or the disk failed: {0}); this command's change was rolled back and everything stored before it is intact: free disk space or fix the disk, then run the command again"
    )]
    /// A write failed (disk full, file size limit, I/O error); SQLite rolled it back.
    WriteFailed(#[source] rusqlite::Error),
    /// Another connection held the write lock for longer than the busy
    /// timeout. SQLite's own words ("database is locked") are not shown.
    #[error(
        "the database is busy: {holder} holds its write lock and did not free it within the time gbdfl waits for it (busy_timeout in config.toml or GBDFL_BUSY_TIMEOUT; 10s unless set). Wait until it has finished (or stop it), then run this command again"
    )]
    Busy {
        /// Who holds the lock: a running long writer that noted itself
        /// (`import`, `purge`), else "another gbdfl process or another program".
        holder: String,
    },
    #[error(
        "no room to keep the answer of a paid call ({bytes} bytes in {dir}: {source}); no call was made. Free disk space (or raise the file size limit), or lower max_response_bytes, then run the command again"
    )]
    /// The spill file for the answer of a paid call could not be reserved
    /// before the call, so the call was not made.
    NoRoom {
        /// The spill directory ([`spill_dir`]).
        dir: PathBuf,
        /// How many bytes were to be reserved.
        bytes: u64,
        /// Why the reservation failed.
        #[source]
        source: std::io::Error,
    },
    #[error(
        "the paid call was made and answered (it is billed), but the database could not store the answer ({cause}). The answer is kept, sealed, in {path}, and is stored the next time gbdfl opens this database: free disk space (or fix the database), then run any gbdfl command, e.g. `gbdfl queue`"
    )]
    /// A paid call was answered but the database could not store it: the
    /// answer is sealed in a spill file and stored at the next open.
    Spilled {
        /// The spill file holding the sealed answer.
        path: PathBuf,
        /// Why the database write failed.
        cause: String,
    },
    /// Any other SQLite error.
    #[error("database error: {0}")]
    Sqlite(#[source] rusqlite::Error),
    /// A file outside the database (spill file, archive, directory) could
    /// not be read or written.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

impl From<rusqlite::Error> for StoreError {
    /// A failed write (disk full, RLIMIT_FSIZE, an I/O error on write or
    /// sync) gets its own variant and message; SQLite has rolled it back.
    fn from(e: rusqlite::Error) -> StoreError {
        use rusqlite::ffi;
        if let rusqlite::Error::SqliteFailure(f, _) = &e {
            if matches!(
                f.code,
                rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked
            ) {
                return StoreError::Busy {
                    holder: sqlite::SOME_OTHER_WRITER.to_owned(),
                };
            }
            let write_failed = f.code == rusqlite::ErrorCode::DiskFull
                || matches!(
                    f.extended_code,
                    ffi::SQLITE_IOERR_WRITE
                        | ffi::SQLITE_IOERR_FSYNC
                        | ffi::SQLITE_IOERR_DIR_FSYNC
                        | ffi::SQLITE_IOERR_TRUNCATE
                        | ffi::SQLITE_IOERR_SHMSIZE
                );
            if write_failed {
                return StoreError::WriteFailed(e);
            }
        }
        // A stored value outside what the format allows (an enumerated
        // column, a time no calendar holds): the database was altered.
        if let rusqlite::Error::FromSqlConversionFailure(..)
        | rusqlite::Error::IntegralValueOutOfRange(..) = &e
        {
            return StoreError::Malformed(e.to_string());
        }
        StoreError::Sqlite(e)
    }
}

impl StoreError {
    /// What failed, without the advice of the whole message (for an error
    /// quoted inside another).
    pub fn cause_text(&self) -> String {
        match self {
            StoreError::WriteFailed(e) => {
                format!("the disk is full, a file size limit was reached, or the disk failed: {e}")
            }
            other => other.to_string(),
        }
    }

    /// Whether the error means the key does not fit or data was tampered with.
    pub fn is_key_or_integrity(&self) -> bool {
        matches!(
            self,
            StoreError::WrongKey { .. }
                | StoreError::RetiredKey { .. }
                | StoreError::Corrupt { .. }
                | StoreError::Malformed(_)
                | StoreError::NoKey
        )
    }
}

fn crypto_err(what: &'static str) -> impl Fn(CryptoError) -> StoreError {
    move |e| StoreError::Corrupt {
        id: what.to_owned(),
        column: "wrapped_keys",
        reason: e.to_string(),
    }
}

/// Associated data of the wrapped long-lived keys of a key version.
fn wrap_aad(version: i64) -> Vec<u8> {
    crypto::associated_data("keys", "wrapped_keys", &version.to_string(), version as u32)
}

/// How far past this machine's clock a stored time may lie and still be
/// believed: an import refuses fetch times later than now plus this, and a
/// record answered later than that is never "the latest" for `show` and
/// the cache (a clock set wrong, or a record from before the import refused
/// such times).
pub const FUTURE_TOLERANCE: chrono::TimeDelta = chrono::TimeDelta::minutes(5);

/// A time as stored: UTC, RFC 3339, milliseconds, `Z`.
pub use gbdfl_core::time::iso_millis as time_text;

/// A stored time; one gbdfl cannot read is the earliest time there is.
pub(crate) fn parse_time(s: &str) -> DateTime<Utc> {
    gbdfl_core::time::parse_iso(s).unwrap_or(DateTime::<Utc>::MIN_UTC)
}

/// A client-made lookup id (UUIDv7: unique everywhere, ordered by time).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LookupId(pub Uuid);

impl LookupId {
    /// A fresh id for a lookup made now.
    pub fn new() -> LookupId {
        LookupId(Uuid::now_v7())
    }
}

impl Default for LookupId {
    fn default() -> Self {
        LookupId::new()
    }
}

impl fmt::Display for LookupId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

/// Where an answer came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// A call to the paid service was made.
    Service,
    /// Answered from a stored lookup; no call was made.
    Cache,
    /// A VALID answer another branch of the organisation fetched (the
    /// organisation cache), stored here as a lookup of its own: no call
    /// was made by this branch, and it is never a paid call.
    Org,
}

impl Source {
    /// The text stored in `lookups.source`.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Service => "service",
            Source::Cache => "cache",
            Source::Org => "org",
        }
    }
    /// The source named `s` as stored; `None` for any other text.
    pub fn parse(s: &str) -> Option<Source> {
        match s {
            "service" => Some(Source::Service),
            "cache" => Some(Source::Cache),
            "org" => Some(Source::Org),
            _ => None,
        }
    }
}

/// Whether a lookup counts as a paid call: a call to the service that may
/// have reached it ([`Reached::paid`]), whatever came back. A cache answer
/// is none, nor an answer of the organisation cache ([`Source::Org`]), nor
/// an attempt that provably never reached the service. The
/// one rule behind every count of paid calls: `stats`, the summary and
/// lookups reports, `history`, the audit trail and batch's outcome file.
pub fn is_paid_call(source: Source, reached: Option<Reached>) -> bool {
    // A call recorded without `reached` is counted as one that may have
    // reached the service (never under-counted).
    source == Source::Service && reached.is_none_or(Reached::paid)
}

/// How a lookup attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A GBDFL answer came back (any status).
    Answered,
    /// HTTP 2xx but the body is not a GBDFL answer; the body is kept.
    Garbled,
    /// The service refused the request (HTTP 4xx).
    Refused,
    /// No usable answer (connection, timeout, 5xx, 429).
    Unavailable,
    /// Answered from the cache.
    Cached,
}

impl Outcome {
    /// The text stored in `lookups.outcome`.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Answered => "answered",
            Outcome::Garbled => "garbled",
            Outcome::Refused => "refused",
            Outcome::Unavailable => "unavailable",
            Outcome::Cached => "cached",
        }
    }
    /// The outcome named `s` as stored; `None` for any other text.
    pub fn parse(s: &str) -> Option<Outcome> {
        match s {
            "answered" => Some(Outcome::Answered),
            "garbled" => Some(Outcome::Garbled),
            "refused" => Some(Outcome::Refused),
            "unavailable" => Some(Outcome::Unavailable),
            "cached" => Some(Outcome::Cached),
            _ => None,
        }
    }
}

/// Whether a call's request reached the paid service, as the caller
/// classified the call (the store records it and never guesses it): what
/// decides whether the call counts as paid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reached {
    /// Provably never reached the service: nothing can have been billed.
    No,
    /// Sent, but no answer came back (timeout, dropped connection): the
    /// service may have answered and billed it.
    Maybe,
    /// The service (or something in front of it) answered.
    Yes,
}

impl Reached {
    /// The text stored in `lookups.reached`.
    pub fn as_str(self) -> &'static str {
        match self {
            Reached::No => "no",
            Reached::Maybe => "maybe",
            Reached::Yes => "yes",
        }
    }
    /// The value named `s` as stored; `None` for any other text.
    pub fn parse(s: &str) -> Option<Reached> {
        match s {
            "no" => Some(Reached::No),
            "maybe" => Some(Reached::Maybe),
            "yes" => Some(Reached::Yes),
            _ => None,
        }
    }
    /// Whether a call that ended so counts as paid: anything that may have
    /// reached the service.
    pub fn paid(self) -> bool {
        self != Reached::No
    }
}

/// The enumerated columns as SQL text, read back strictly: a value the
/// schema does not list is an error naming it, never mapped to a default.
macro_rules! stored_as_text {
    ($($t:ident),*) => {$(
        impl rusqlite::types::ToSql for $t {
            fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
                Ok(self.as_str().into())
            }
        }
        impl rusqlite::types::FromSql for $t {
            fn column_result(v: rusqlite::types::ValueRef<'_>) -> rusqlite::types::FromSqlResult<Self> {
                let s = v.as_str()?;
                $t::parse(s).ok_or_else(|| {
                    rusqlite::types::FromSqlError::Other(
                        format!("{:?} is not a {} this database format knows", s, stringify!($t)).into(),
                    )
                })
            }
        }
        impl serde::Serialize for $t {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }
        impl<'de> serde::Deserialize<'de> for $t {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str> as serde::Deserialize>::deserialize(d)?;
                $t::parse(&s).ok_or_else(|| serde::de::Error::custom(format!("unknown {} {:?}", stringify!($t), s)))
            }
        }
    )*};
}

stored_as_text!(Source, Outcome, Reached);

/// A lookup to record. Personal fields are plaintext here and sealed by the store.
#[derive(Debug)]
pub struct NewLookup<'a> {
    /// The lookup's id, made by the caller before the call.
    pub id: LookupId,
    /// The person looked up; stored sealed, found by its blind index.
    pub iin: &'a Iin,
    /// The session (one gbdfl process) the lookup belongs to; stored sealed.
    pub session_id: &'a str,
    /// Why the staff member asked (`--purpose`); stored sealed.
    pub purpose: Option<&'a str>,
    /// The staff member who asked, as declared: never the person looked up.
    pub operator: &'a str,
    /// The machine that asked.
    pub host: &'a str,
    /// When the lookup began.
    pub requested_at: DateTime<Utc>,
    /// When the answer (or the failure) came back; `None` when none did.
    pub answered_at: Option<DateTime<Utc>>,
    /// A paid call or an answer from the cache.
    pub source: Source,
    /// How the attempt ended.
    pub outcome: Outcome,
    /// The GBDFL status of the answer (stored as `OTHER` when the API does
    /// not list it).
    pub status: Option<&'a str>,
    /// The answer's `result` flag.
    pub result: Option<bool>,
    /// The HTTP status of the answer; `None` when no HTTP answer came.
    pub http_status: Option<u16>,
    /// The answer's `failure_reason.type` (stored as `OTHER` outside
    /// `[A-Z0-9_]{1,40}`).
    pub failure_type: Option<&'a str>,
    /// What went wrong, in words, for a failed call; stored sealed.
    pub detail: Option<&'a str>,
    /// The response body as received; stored compressed and sealed.
    pub response: Option<&'a [u8]>,
    /// For a cache answer, the stored lookup it was served from.
    pub cached_from: Option<LookupId>,
    /// Whether the call reached the service; `None` when no call was made
    /// (an answer from the cache).
    pub reached: Option<Reached>,
    /// The OS user of the process recording the lookup, beside `operator`.
    pub os_user: Option<&'a str>,
}

/// A stored lookup, opened. The raw response is fetched separately.
#[derive(Debug, Clone)]
pub struct Lookup {
    /// The lookup's id (hyphenated UUID).
    pub id: String,
    /// When the lookup began.
    pub requested_at: DateTime<Utc>,
    /// When the answer (or the failure) came back; `None` when none did.
    pub answered_at: Option<DateTime<Utc>>,
    /// The staff member who asked, as declared.
    pub operator: String,
    /// The machine that asked.
    pub host: String,
    /// A paid call or an answer from the cache.
    pub source: Source,
    /// How the attempt ended.
    pub outcome: Outcome,
    /// The GBDFL status as stored (`OTHER` for one the API does not list).
    pub status: Option<String>,
    /// The answer's `result` flag.
    pub result: Option<bool>,
    /// The HTTP status of the answer; `None` when no HTTP answer came.
    pub http_status: Option<u16>,
    /// The answer's `failure_reason.type` as stored.
    pub failure_type: Option<String>,
    /// `false` when `--skip-iin-check` let an IIN that fails its check
    /// digit through.
    pub iin_checked: bool,
    /// For a cache answer, the id of the lookup it was served from (kept
    /// after that lookup is purged).
    pub cached_from: Option<String>,
    /// The key version its sealed values are sealed under.
    pub key_version: u32,
    /// The IIN, opened from `iin_enc`. Personal data: mask it for display.
    pub iin: String,
    /// Why the staff member asked, opened from `purpose_enc`.
    pub purpose: Option<String>,
    /// What went wrong, in words, opened from `detail_enc`.
    pub detail: Option<String>,
    /// Whether the call reached the service; `None` for cache answers.
    pub reached: Option<Reached>,
    /// The OS user of the process that recorded it; `None` before kept.
    pub os_user: Option<String>,
}

/// The message prefix with which gbdfl before schema version 4 recorded a
/// call that could not connect. Read only for rows of that time, whose
/// `reached` is NULL: they hold no other record of it.
const LEGACY_NOT_CONNECTED: &str = "could not connect to the service";

/// What a row from before schema version 4 (no `reached`) says: a call that
/// could not connect was recorded as unavailable, with no HTTP status and a
/// message with the prefix of that time; every other call reached the
/// service or may have.
fn legacy_reached(
    source: Source,
    outcome: Outcome,
    http_status: Option<u16>,
    detail: Option<&str>,
) -> Option<Reached> {
    match source {
        Source::Cache | Source::Org => None,
        Source::Service
            if outcome == Outcome::Unavailable
                && http_status.is_none()
                && detail.is_some_and(|d| d.starts_with(LEGACY_NOT_CONNECTED)) =>
        {
            Some(Reached::No)
        }
        Source::Service if outcome == Outcome::Unavailable && http_status.is_none() => {
            Some(Reached::Maybe)
        }
        Source::Service => Some(Reached::Yes),
    }
}

impl Lookup {
    /// Whether it counts as a paid call: [`is_paid_call`].
    pub fn is_paid_call(&self) -> bool {
        is_paid_call(self.source, self.reached)
    }

    /// Whether it is an attempt to call the service that provably never
    /// reached it (nothing billed): neither a paid call nor a cache answer.
    pub fn never_sent(&self) -> bool {
        self.source == Source::Service && !self.is_paid_call()
    }
}

impl NewLookup<'_> {
    /// Whether it counts as a paid call: [`is_paid_call`], as the stored
    /// lookup will.
    pub fn is_paid_call(&self) -> bool {
        is_paid_call(self.source, self.reached)
    }
}

/// A stored VALID record: the lookup and the response body as received.
#[derive(Debug)]
pub struct Record {
    /// The VALID lookup.
    pub lookup: Lookup,
    /// Its response body, opened and decompressed; zeroized on drop.
    pub body: Zeroizing<Vec<u8>>,
}

/// First plaintext byte of `response_enc`: how the body is encoded.
/// Keeps only `[A-Z0-9_]` values of at most 40 characters for plaintext
/// enumerated columns: a hostile answer cannot smuggle text into them.
fn enumerated(v: Option<&str>) -> Option<String> {
    v.map(|s| {
        let ok = !s.is_empty()
            && s.len() <= 40
            && s.bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_');
        if ok { s.to_owned() } else { "OTHER".to_owned() }
    })
}

/// A GBDFL status as stored: one the API page lists, else `OTHER` (the
/// answer itself keeps what came).
pub(crate) fn stored_status(v: Option<&str>) -> Option<String> {
    v.map(|s| {
        if sqlite::STATUSES.contains(&s) {
            s.to_owned()
        } else {
            "OTHER".to_owned()
        }
    })
}

/// The sealed row of a lookup, its summary (if any) already encoded: every
/// personal field sealed under `keys`, bound to its column, its row and
/// the row's choosing fields ([`sealed`]).
fn sealed_row(
    keys: &Keys,
    key_version: u32,
    l: &NewLookup<'_>,
    summary: Option<&[u8]>,
) -> Result<sqlite::LookupRow, StoreError> {
    let mut row = sqlite::LookupRow {
        subject: keys.blind_index(l.iin.as_str()).to_vec(),
        requested_at: l.requested_at.timestamp_millis(),
        answered_at: l.answered_at.map(|t| t.timestamp_millis()),
        operator: l.operator.to_owned(),
        host: l.host.to_owned(),
        source: l.source,
        outcome: l.outcome,
        status: stored_status(l.status),
        result: l.result,
        http_status: l.http_status.map(i64::from),
        failure_type: enumerated(l.failure_type),
        iin_checked: l.iin.is_checked(),
        cached_from: l.cached_from.map(|c| c.to_string()),
        key_version: i64::from(key_version),
        iin_enc: Vec::new(),
        session_enc: Vec::new(),
        purpose_enc: None,
        detail_enc: None,
        response_enc: None,
        summary_enc: None,
        reached: l.reached,
        os_user: l.os_user.map(str::to_owned),
        id: l.id.to_string(),
    };
    let mut binding = Vec::with_capacity(160);
    row.binding().write(&mut binding);
    let (id, mut aad) = (row.id.clone(), Vec::with_capacity(256));
    let mut seal = |column: &str, plaintext: &[u8]| {
        crypto::bound_data_into(&mut aad, "lookups", column, &id, key_version, &binding);
        keys.seal(plaintext, &aad).map_err(|e| seal_failed(&id, e))
    };
    row.iin_enc = seal("iin_enc", l.iin.as_str().as_bytes())?;
    row.session_enc = seal("session_enc", l.session_id.as_bytes())?;
    row.purpose_enc = l
        .purpose
        .map(|p| seal("purpose_enc", p.as_bytes()))
        .transpose()?;
    row.detail_enc = l
        .detail
        .map(|d| seal("detail_enc", d.as_bytes()))
        .transpose()?;
    row.response_enc = match l.response {
        Some(body) => Some(codec::with_packed(body, |packed| {
            seal("response_enc", packed)
        })?),
        None => None,
    };
    row.summary_enc = summary.map(|s| seal("summary_enc", s)).transpose()?;
    Ok(row)
}

fn seal_failed(id: &str, e: CryptoError) -> StoreError {
    StoreError::Corrupt {
        id: id.to_owned(),
        column: "seal",
        reason: e.to_string(),
    }
}

/// The open store: a connection, the current subkeys and their version.
pub struct Store {
    conn: Connection,
    path: PathBuf,
    /// How long a write waits for another connection's lock.
    busy: Duration,
    keys: Keys,
    key_version: u32,
    key_id: String,
    /// Where every time the store writes or compares with "now" comes from.
    clock: Arc<dyn Clock>,
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.path)
            .field("key_version", &self.key_version)
            .finish_non_exhaustive()
    }
}

/// What `Store::init` found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InitState {
    /// The database was created now.
    Created,
    /// The database already existed and the key fits it.
    AlreadyInitialised,
}

impl Store {
    /// Default time to wait on a lock held by another gbdfl process.
    pub const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

    /// Creates the database (or checks an existing one) for `key`.
    pub fn init(path: &Path, key: &MasterKey) -> Result<(Store, InitState), StoreError> {
        Store::init_with(path, key, SystemClock::shared())
    }

    /// [`Store::init`] with the clock the store is to read.
    pub fn init_with(
        path: &Path,
        key: &MasterKey,
        clock: Arc<dyn Clock>,
    ) -> Result<(Store, InitState), StoreError> {
        let (conn, created) = sqlite::create(path, Self::BUSY_TIMEOUT, &time_text(clock.now()))?;
        let rows = sqlite::key_rows(&conn)?;
        if rows.is_empty() {
            let stable = StableKeys::generate().map_err(crypto_err("keys"))?;
            let wrapped = key
                .wrap(&stable, &wrap_aad(1))
                .map_err(crypto_err("keys"))?;
            sqlite::insert_key(
                &conn,
                &sqlite::KeyRow {
                    version: 1,
                    check_value: key.check_value().to_vec(),
                    wrapped_keys: wrapped,
                    created_at: time_text(clock.now()),
                    retired_at: None,
                },
            )?;
            let store = Store::with_key(conn, path, key, 1, &stable).with_clock(clock);
            return Ok((store, InitState::Created));
        }
        let store = Store::verify_key(conn, path, key, &rows)?.with_clock(clock);
        store.finish_migration()?;
        let state = if created {
            InitState::Created
        } else {
            InitState::AlreadyInitialised
        };
        Ok((store, state))
    }

    /// Opens an initialised database; refuses a key that does not fit it
    /// before anything is read or written.
    pub fn open(path: &Path, key: &MasterKey) -> Result<Store, StoreError> {
        Store::open_waiting(path, key, Self::BUSY_TIMEOUT, SystemClock::shared())
    }

    /// [`Store::open`], waiting up to `busy` for another connection's
    /// write lock before a write fails with [`StoreError::Busy`], and
    /// reading the time from `clock`.
    pub fn open_waiting(
        path: &Path,
        key: &MasterKey,
        busy: Duration,
        clock: Arc<dyn Clock>,
    ) -> Result<Store, StoreError> {
        let conn = sqlite::open(path, busy)?;
        let rows = sqlite::key_rows(&conn)?;
        if rows.is_empty() {
            return Err(StoreError::NoKey);
        }
        let mut store = Store::verify_key(conn, path, key, &rows)?.with_clock(clock);
        store.busy = busy;
        store.finish_migration()?;
        Ok(store)
    }

    fn verify_key(
        conn: Connection,
        path: &Path,
        key: &MasterKey,
        rows: &[sqlite::KeyRow],
    ) -> Result<Store, StoreError> {
        let current = &rows[0];
        let mine = key.check_value();
        if current.check_value.as_slice() != mine.as_slice() {
            if let Some(old) = rows
                .iter()
                .find(|r| r.check_value.as_slice() == mine.as_slice())
            {
                return Err(StoreError::RetiredKey {
                    file_key_id: crypto::key_id(&mine),
                    version: old.version,
                    retired_at: old.retired_at.clone().unwrap_or_default(),
                    db_key_id: crypto::key_id(&current.check_value),
                });
            }
            return Err(StoreError::WrongKey {
                db_key_id: crypto::key_id(&current.check_value),
                file_key_id: crypto::key_id(&mine),
            });
        }
        let stable = key
            .unwrap_keys(&current.wrapped_keys, &wrap_aad(current.version))
            .map_err(crypto_err("keys"))?;
        Ok(Store::with_key(
            conn,
            path,
            key,
            current.version as u32,
            &stable,
        ))
    }

    fn with_key(
        conn: Connection,
        path: &Path,
        key: &MasterKey,
        version: u32,
        stable: &StableKeys,
    ) -> Store {
        Store {
            conn,
            path: path.to_owned(),
            busy: Self::BUSY_TIMEOUT,
            keys: key.keys(stable),
            key_version: version,
            key_id: crypto::key_id(&key.check_value()),
            clock: SystemClock::shared(),
        }
    }

    /// Brings a database of an older format version to the current one
    /// (which from version 5 needs the key), then makes sure every index
    /// is there.
    fn finish_migration(&self) -> Result<(), StoreError> {
        let version = sqlite::user_version(&self.conn)?;
        if version < SCHEMA_VERSION {
            migrate::to_v5(&self.conn, version)?;
            self.migrate_from_v5()?;
            self.migrate_to_v7()?;
            sqlite::ensure_schema(&self.conn)?;
        }
        // Also what a migration killed after its commit left.
        self.drop_v5_tables()
    }

    /// This store, reading the time from `clock` from now on (a test's
    /// [`gbdfl_core::clock::TestClock`], or the binary's one clock).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Store {
        self.clock = clock;
        self
    }

    /// The clock this store reads: the service and the reports read the
    /// same one.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// The current time, by this store's clock.
    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    /// The current time as stored: UTC, RFC 3339, milliseconds, `Z`.
    pub fn now_text(&self) -> String {
        time_text(self.now())
    }

    /// The latest answer time a record may have to count as the latest:
    /// now plus [`FUTURE_TOLERANCE`], as stored text (times as text sort in
    /// time order).
    pub(crate) fn latest_believed(&self) -> String {
        time_text(self.now() + FUTURE_TOLERANCE)
    }

    /// A second handle on the same database and keys, with its own
    /// connection (for worker threads).
    pub fn reopen(&self) -> Result<Store, StoreError> {
        Ok(Store {
            conn: sqlite::open(&self.path, self.busy)?,
            path: self.path.clone(),
            busy: self.busy,
            keys: self.keys.clone(),
            key_version: self.key_version,
            key_id: self.key_id.clone(),
            clock: Arc::clone(&self.clock),
        })
    }

    /// The database file this store was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Short id of the key in use, safe to print.
    /// The short id of the current key (from its check value): safe to
    /// show, and what [`StoreError::WrongKey`] names.
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// The current key version: new values are sealed under it; `rekey`
    /// adds one.
    pub fn key_version(&self) -> u32 {
        self.key_version
    }

    /// The blind index of an IIN under this database's key.
    pub fn subject_of(&self, iin: &Iin) -> [u8; 32] {
        self.keys.blind_index(iin.as_str())
    }

    fn open_col(
        &self,
        row: &sqlite::LookupRow,
        column: &'static str,
        sealed: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, StoreError> {
        let mut binding = Vec::with_capacity(160);
        row.binding().write(&mut binding);
        self.open_sealed(
            "lookups",
            column,
            &row.id,
            row.key_version,
            Some(&binding),
            sealed,
        )
    }

    /// Opens one sealed value of `table`, refusing one sealed under another
    /// key version than the current (rekey re-seals everything).
    fn open_sealed(
        &self,
        table: &str,
        column: &'static str,
        id: &str,
        key_version: i64,
        binding: Option<&[u8]>,
        sealed: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, StoreError> {
        let place = bulk::Place {
            table,
            column,
            id,
            key_version,
            binding,
        };
        let mut scratch = Scratch::default();
        bulk::open_sealed_into(&self.keys, self.key_version, &place, sealed, &mut scratch)?;
        Ok(scratch.into_plain())
    }

    fn open_text(
        &self,
        row: &sqlite::LookupRow,
        column: &'static str,
        sealed: Option<&[u8]>,
    ) -> Result<Option<String>, StoreError> {
        let Some(sealed) = sealed else {
            return Ok(None);
        };
        let bytes = self.open_col(row, column, sealed)?;
        Ok(Some(String::from_utf8_lossy(&bytes).into_owned()))
    }

    /// The sealed row of a lookup to record. A VALID answer also gets its
    /// document summary, sealed on its own, for the expiry scan.
    fn lookup_row(&self, l: &NewLookup<'_>) -> Result<sqlite::LookupRow, StoreError> {
        let summary = match l.response {
            Some(body) if l.outcome == Outcome::Answered && l.status == Some("VALID") => {
                Some(Zeroizing::new(
                    gbdfl_core::summary::Summary::of_body(l.iin.as_str(), body).encode(),
                ))
            }
            _ => None,
        };
        sealed_row(
            &self.keys,
            self.key_version,
            l,
            summary.as_deref().map(Vec::as_slice),
        )
    }

    /// Inserts a lookup and its audit entry (subject filled in) on `c`,
    /// inside the caller's transaction.
    fn record_in(
        &self,
        c: &Connection,
        l: &NewLookup<'_>,
        audit: Option<&AuditEntry>,
    ) -> Result<(), StoreError> {
        let row = self.lookup_row(l)?;
        sqlite::insert_lookup(c, &row)?;
        if let Some(a) = audit {
            let mut a = a.clone();
            a.subject = Some(self.subject_of(l.iin));
            a.lookup_id = Some(l.id.to_string());
            self.append_audit_in(c, &a)?;
        }
        Ok(())
    }

    /// Records one lookup attempt, and its audit entry in the same
    /// transaction. Recording the same id twice keeps the first.
    pub fn record(&self, l: &NewLookup<'_>, audit: Option<&AuditEntry>) -> Result<(), StoreError> {
        sqlite::immediate(&self.conn, |c| self.record_in(c, l, audit))
    }

    fn to_lookup(&self, row: &sqlite::LookupRow) -> Result<Lookup, StoreError> {
        let (source, outcome) = (row.source, row.outcome);
        let http_status = row.http_status.and_then(|s| u16::try_from(s).ok());
        let detail = self.open_text(row, "detail_enc", row.detail_enc.as_deref())?;
        let time = |ms: i64| {
            DateTime::from_timestamp_millis(ms).ok_or_else(|| StoreError::Corrupt {
                id: row.id.clone(),
                column: "requested_at",
                reason: format!("{ms} is no time"),
            })
        };
        Ok(Lookup {
            id: row.id.clone(),
            requested_at: time(row.requested_at)?,
            answered_at: row.answered_at.map(time).transpose()?,
            operator: row.operator.clone(),
            host: row.host.clone(),
            source,
            outcome,
            status: row.status.clone(),
            result: row.result,
            http_status,
            failure_type: row.failure_type.clone(),
            iin_checked: row.iin_checked,
            cached_from: row.cached_from.clone(),
            key_version: row.key_version as u32,
            iin: self
                .open_text(row, "iin_enc", Some(&row.iin_enc))?
                .unwrap_or_default(),
            purpose: self.open_text(row, "purpose_enc", row.purpose_enc.as_deref())?,
            detail,
            reached: row.reached,
            os_user: row.os_user.clone(),
        })
    }

    fn open_response(
        &self,
        row: &sqlite::LookupRow,
    ) -> Result<Option<Zeroizing<Vec<u8>>>, StoreError> {
        let Some(sealed) = row.response_enc.as_deref() else {
            return Ok(None);
        };
        let plain = self.open_col(row, "response_enc", sealed)?;
        match codec::unpack(&plain) {
            Some(body) => Ok(Some(body)),
            None => Err(StoreError::Corrupt {
                id: row.id.clone(),
                column: "response_enc",
                reason: "unknown codec byte, or a body that does not decompress".into(),
            }),
        }
    }

    /// The newest VALID answer for this IIN, with its raw response body.
    /// Every lookup of the person is checked first (its IIN opens under
    /// what its row says), so that no altered row can make another answer
    /// the latest.
    pub fn latest_valid(&self, iin: &Iin) -> Result<Option<Record>, StoreError> {
        let subject = self.subject_of(iin);
        self.verify_subject(&self.conn, &subject)?;
        let Some(row) = sqlite::latest_valid(&self.conn, &subject, &self.latest_believed())? else {
            return Ok(None);
        };
        let lookup = self.to_lookup(&row)?;
        let body = self.open_response(&row)?.unwrap_or_default();
        Ok(Some(Record { lookup, body }))
    }

    /// Checks every lookup of one person: its IIN opens under the fields
    /// its row holds (which choose and order the person's records).
    pub(crate) fn verify_subject(&self, c: &Connection, subject: &[u8]) -> Result<(), StoreError> {
        for row in sqlite::history(c, subject)? {
            self.open_col(&row, "iin_enc", &row.iin_enc)?;
        }
        Ok(())
    }

    /// Every lookup of this IIN, newest first (responses not opened).
    pub fn history(&self, iin: &Iin) -> Result<Vec<Lookup>, StoreError> {
        sqlite::history(&self.conn, &self.subject_of(iin))?
            .iter()
            .map(|r| self.to_lookup(r))
            .collect()
    }

    /// One lookup by id (its response not opened).
    pub fn lookup(&self, id: &str) -> Result<Option<Lookup>, StoreError> {
        sqlite::lookup_by_id(&self.conn, id)?
            .map(|row| self.to_lookup(&row))
            .transpose()
    }

    /// Calls `f` with every lookup requested in `[from, to)`, oldest first,
    /// streaming (responses not opened).
    pub fn each_lookup<E: From<StoreError>>(
        &self,
        from: Option<DateTime<Utc>>,
        to: Option<DateTime<Utc>>,
        mut f: impl FnMut(Lookup) -> Result<(), E>,
    ) -> Result<(), E> {
        let (from, to) = (from.map(time_text), to.map(time_text));
        sqlite::each_lookup(&self.conn, from.as_deref(), to.as_deref(), &mut |row| {
            f(self.to_lookup(&row)?)
        })
    }

    /// How many lookups (of any source and outcome) are stored.
    pub fn count_lookups(&self) -> Result<i64, StoreError> {
        sqlite::count_lookups(&self.conn)
    }

    /// How many lookups were requested in `[from, to)`.
    pub fn count_lookups_between(
        &self,
        from: Option<DateTime<Utc>>,
        to: Option<DateTime<Utc>>,
    ) -> Result<u64, StoreError> {
        let (from, to) = (from.map(time_text), to.map(time_text));
        sqlite::count_lookups_between(&self.conn, from.as_deref(), to.as_deref())
    }

    /// How many answers [`Store::each_answer`] hands out.
    pub fn count_answers(&self) -> Result<u64, StoreError> {
        sqlite::count_answers(&self.conn)
    }

    /// Notes in the database that this process, running `what` (import,
    /// purge), will hold the write lock for long, so that a process that
    /// waits for it in vain can say who holds it. Removed by
    /// [`Store::clear_long_writer`]; a note left by a process that died is
    /// ignored.
    pub fn note_long_writer(&self, what: &str) -> Result<(), StoreError> {
        sqlite::note_writer(&self.conn, what, &self.now_text())
    }

    /// Removes this process's note of [`Store::note_long_writer`].
    pub fn clear_long_writer(&self) -> Result<(), StoreError> {
        sqlite::clear_writer(&self.conn)
    }

    /// A read snapshot of the database as it is now: a second connection
    /// inside a read transaction, so that what a command counts (and
    /// writes in its audit entry before releasing anything) is exactly
    /// what it then reads, whatever other processes write meanwhile.
    pub fn snapshot(&self) -> Result<Snapshot, StoreError> {
        let store = self.reopen()?;
        store.conn.execute_batch("BEGIN")?;
        // A deferred transaction takes its snapshot at its first read.
        sqlite::key_rows(&store.conn)?;
        Ok(Snapshot(store))
    }
}

/// See [`Store::snapshot`]; read with it as with the store. Writes through
/// it are not meant: it ends (rolled back) when dropped.
pub struct Snapshot(Store);

impl std::ops::Deref for Snapshot {
    type Target = Store;
    fn deref(&self) -> &Store {
        &self.0
    }
}

impl Drop for Snapshot {
    fn drop(&mut self) {
        let _ = self.0.conn.execute_batch("ROLLBACK");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Indexes a large import dropped: another process leaves them to the
    /// import while it runs (its queries are slow, not refused), the import
    /// builds them at its end, and an import that died leaves them to the
    /// next process that opens the database.
    #[test]
    fn dropped_indexes_wait_for_their_import_unless_it_died() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gbdfl.db");
        let key = MasterKey::from_bytes([4; crate::crypto::KEY_LEN]);
        let (import, _) = Store::init(&path, &key).unwrap();
        let indexes = |s: &Store| -> i64 {
            s.conn
                .query_row(
                    "SELECT count(*) FROM sqlite_schema WHERE name IN \
                     ('lookups_by_subject', 'lookups_by_time', 'lookups_latest', \
                      'lookups_other')",
                    [],
                    |r| r.get(0),
                )
                .unwrap()
        };
        import.drop_indexes().unwrap();
        let other = Store::open(&path, &key).unwrap();
        assert_eq!(indexes(&other), 0, "left to the running import");
        assert_eq!(other.count_lookups().unwrap(), 0, "and queries still work");
        import.rebuild_indexes().unwrap();
        assert_eq!(indexes(&other), 4, "built by the import at its end");

        import.drop_indexes().unwrap();
        import
            .conn
            .execute(
                "UPDATE meta SET value = '2147483646 a-host-that-is-not-this-one' \
                 WHERE key = 'indexes_dropped_by'",
                [],
            )
            .unwrap();
        let next = Store::open(&path, &key).unwrap();
        assert_eq!(indexes(&next), 4, "an import that died: built on open");
        let marks: i64 = next
            .conn
            .query_row(
                "SELECT count(*) FROM meta WHERE key = 'indexes_dropped_by'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(marks, 0);
    }

    #[test]
    fn rows_from_before_reached_are_read_as_they_were_counted() {
        use super::{LEGACY_NOT_CONNECTED, Outcome, Reached, Source, legacy_reached};
        let refused = format!("{LEGACY_NOT_CONNECTED} (connection refused)");
        assert_eq!(
            legacy_reached(Source::Service, Outcome::Unavailable, None, Some(&refused)),
            Some(Reached::No)
        );
        assert_eq!(
            legacy_reached(
                Source::Service,
                Outcome::Unavailable,
                None,
                Some("timed out")
            ),
            Some(Reached::Maybe)
        );
        assert_eq!(
            legacy_reached(Source::Service, Outcome::Unavailable, Some(503), None),
            Some(Reached::Yes)
        );
        assert_eq!(
            legacy_reached(Source::Service, Outcome::Garbled, Some(200), None),
            Some(Reached::Yes)
        );
        assert_eq!(
            legacy_reached(Source::Cache, Outcome::Cached, None, None),
            None
        );
        assert!(!Reached::No.paid() && Reached::Maybe.paid() && Reached::Yes.paid());
    }
}
