//! The lookup service: cache first, then the paid call, and every attempt
//! recorded. This is the one library module that ties the store to the HTTP
//! client; reports and queries never come through here.
//!
//! Rules this module keeps: no paid call is made when a VALID record younger
//! than max-age is stored (unless forced); every attempt, whatever its
//! outcome, is recorded with the body exactly as received; the IIN is
//! validated before any call (by the [`Iin`] type it takes).

use std::time::Duration;

use chrono::{DateTime, Utc};
use uuid::Uuid;
use zeroize::Zeroizing;

use crate::api::{self, Response, Status};
use crate::client::{Answer, Client};
use crate::exit::ExitCode;
use crate::iin::Iin;
use crate::store::{
    self, AuditEntry, LookupId, NewLookup, Outcome, Record, Source, Store, StoreError,
};

/// A face2face backend session id, checked to be a UUID.
#[derive(Clone, PartialEq, Eq)]
pub struct SessionId(String);

impl std::fmt::Debug for SessionId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionId(***)")
    }
}

/// The session id is not a UUID.
#[derive(Debug, thiserror::Error)]
#[error(
    "the session id must be a UUID like 3e9b7d42-6c1a-4f8e-a2d5-9b4c8e1f7a3d (the face2face backend session id), got {0} characters that are not one"
)]
pub struct SessionIdError(usize);

impl SessionId {
    pub fn parse(s: &str) -> Result<SessionId, SessionIdError> {
        Uuid::parse_str(s.trim())
            .map(|u| SessionId(u.hyphenated().to_string()))
            .map_err(|_| SessionIdError(s.chars().count()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Who asks, and why.
#[derive(Debug, Clone)]
pub struct Asker<'a> {
    pub operator: &'a str,
    pub host: &'a str,
    pub purpose: Option<&'a str>,
}

/// One fetch.
#[derive(Debug)]
pub struct FetchRequest<'a> {
    pub iin: &'a Iin,
    pub session: &'a SessionId,
    pub asker: Asker<'a>,
    pub max_age: Duration,
    pub force: bool,
    /// The audit entry to append with the lookup, in the same transaction;
    /// its outcome, paid-call flag and record count are filled in here.
    pub audit: Option<AuditEntry>,
}

/// How a fetch ended. Every variant has been recorded under `id`.
#[derive(Debug)]
pub enum Fetched {
    /// A VALID record younger than max-age was stored; no call was made.
    Cached { id: LookupId, from: Box<Record> },
    /// The service answered. `response.status` says with what.
    Answered {
        id: LookupId,
        response: Box<Response>,
        body: Zeroizing<Vec<u8>>,
    },
    /// The service refused the request (HTTP 4xx).
    Refused {
        id: LookupId,
        http_status: u16,
        message: String,
    },
    /// No usable answer.
    Unavailable {
        id: LookupId,
        message: String,
        retry_after: Option<Duration>,
    },
    /// HTTP 2xx with a body that is not a GBDFL answer; the body is stored.
    Garbled { id: LookupId, reason: String },
}

impl Fetched {
    pub fn id(&self) -> LookupId {
        match self {
            Fetched::Cached { id, .. }
            | Fetched::Answered { id, .. }
            | Fetched::Refused { id, .. }
            | Fetched::Unavailable { id, .. }
            | Fetched::Garbled { id, .. } => *id,
        }
    }

    /// The exit code this outcome maps to (README, "Exit codes").
    pub fn exit_code(&self) -> ExitCode {
        match self {
            Fetched::Cached { .. } => ExitCode::Ok,
            Fetched::Answered { response, .. } => match response.status {
                Some(Status::Valid) => ExitCode::Ok,
                Some(Status::Pending) => ExitCode::Pending,
                _ => ExitCode::NotValid,
            },
            Fetched::Refused { .. } => ExitCode::Refused,
            Fetched::Unavailable { .. } => ExitCode::Unreachable,
            Fetched::Garbled { .. } => ExitCode::Garbled,
        }
    }

    /// Whether a call to the paid service was made.
    pub fn called_service(&self) -> bool {
        !matches!(self, Fetched::Cached { .. })
    }
}

/// The cached VALID record of `iin`, if one is younger than `max_age`.
pub fn fresh_record(
    store: &Store,
    iin: &Iin,
    max_age: Duration,
    now: DateTime<Utc>,
) -> Result<Option<Record>, StoreError> {
    let Some(record) = store.latest_valid(iin)? else {
        return Ok(None);
    };
    let at = record
        .lookup
        .answered_at
        .unwrap_or(record.lookup.requested_at);
    let age = now
        .signed_duration_since(at)
        .to_std()
        .unwrap_or(Duration::ZERO);
    Ok((age <= max_age).then_some(record))
}

/// Fetches a record: from the cache when fresh (and not forced), else by
/// the paid call. Records the attempt and returns how it ended.
pub fn fetch(
    store: &Store,
    client: &Client,
    req: &FetchRequest<'_>,
) -> Result<Fetched, StoreError> {
    let requested_at = Utc::now();
    let id = LookupId::new();
    let base = NewLookup {
        id,
        iin: req.iin,
        session_id: req.session.as_str(),
        purpose: req.asker.purpose,
        operator: req.asker.operator,
        host: req.asker.host,
        requested_at,
        answered_at: None,
        source: Source::Service,
        outcome: Outcome::Unavailable,
        status: None,
        result: None,
        http_status: None,
        failure_type: None,
        detail: None,
        response: None,
        cached_from: None,
    };

    // Records the lookup with its audit entry, in one transaction.
    let record = |l: NewLookup<'_>, code: ExitCode, error: Option<String>, records: u64| {
        let audit = req.audit.as_ref().map(|a| AuditEntry {
            exit_code: code.code(),
            error,
            // A connection that never opened sent nothing to be billed for.
            paid_call: l.source == Source::Service
                && !store::never_sent(l.outcome, l.http_status, l.detail),
            records,
            ..a.clone()
        });
        store.record(&l, audit.as_ref())
    };
    let fresh = if req.force {
        None
    } else {
        fresh_record(store, req.iin, req.max_age, requested_at)?
    };
    if let Some(from) = fresh {
        record(
            NewLookup {
                answered_at: Some(Utc::now()),
                source: Source::Cache,
                outcome: Outcome::Cached,
                status: Some(Status::Valid.as_str()),
                result: from.lookup.result,
                cached_from: Some(LookupId(
                    Uuid::parse_str(&from.lookup.id).unwrap_or_default(),
                )),
                ..base
            },
            ExitCode::Ok,
            None,
            1,
        )?;
        return Ok(Fetched::Cached {
            id,
            from: Box::new(from),
        });
    }

    let answer = client.lookup(req.iin, req.session.as_str());
    let answered_at = Some(Utc::now());
    match answer {
        Answer::Answered {
            http_status,
            body,
            parsed: Ok(response),
        } => {
            let response = *response;
            let status = response.status.as_ref().map(Status::as_str);
            let failure_type = response
                .failure_reason
                .as_ref()
                .and_then(|f| f.kind.as_deref());
            let detail = response.failure_reason.as_ref().map(|f| f.to_string());
            let (code, error, records) = match response.status {
                Some(Status::Valid) => (ExitCode::Ok, None, 1),
                Some(Status::Pending) => (ExitCode::Pending, Some("PENDING".to_owned()), 0),
                _ => (
                    ExitCode::NotValid,
                    Some(format!(
                        "{}{}",
                        status.unwrap_or("no status"),
                        detail
                            .as_ref()
                            .map(|d| format!(" ({d})"))
                            .unwrap_or_default()
                    )),
                    0,
                ),
            };
            record(
                NewLookup {
                    answered_at,
                    outcome: Outcome::Answered,
                    status,
                    result: response.result,
                    http_status: Some(http_status),
                    failure_type,
                    detail: detail.as_deref(),
                    response: Some(&body),
                    ..base
                },
                code,
                error,
                records,
            )?;
            Ok(Fetched::Answered {
                id,
                response: Box::new(response),
                body: Zeroizing::new(body),
            })
        }
        Answer::Answered {
            http_status,
            body,
            parsed: Err(reason),
        } => {
            record(
                NewLookup {
                    answered_at,
                    outcome: Outcome::Garbled,
                    http_status: Some(http_status),
                    detail: Some(&reason),
                    response: Some(&body),
                    ..base
                },
                ExitCode::Garbled,
                Some(reason.clone()),
                0,
            )?;
            Ok(Fetched::Garbled { id, reason })
        }
        Answer::Refused {
            http_status,
            body,
            message,
        } => {
            record(
                NewLookup {
                    answered_at,
                    outcome: Outcome::Refused,
                    http_status: Some(http_status),
                    detail: Some(&message),
                    response: Some(&body),
                    ..base
                },
                ExitCode::Refused,
                Some(format!("HTTP {http_status}: {message}")),
                0,
            )?;
            Ok(Fetched::Refused {
                id,
                http_status,
                message,
            })
        }
        Answer::Unavailable {
            http_status,
            body,
            message,
            retry_after,
        } => {
            record(
                NewLookup {
                    answered_at,
                    outcome: Outcome::Unavailable,
                    http_status,
                    detail: Some(&message),
                    response: (!body.is_empty()).then_some(body.as_slice()),
                    ..base
                },
                ExitCode::Unreachable,
                Some(message.clone()),
                0,
            )?;
            Ok(Fetched::Unavailable {
                id,
                message,
                retry_after,
            })
        }
    }
}

/// What to tell the operator for a refusal, by the service's message.
pub fn refusal_advice(http_status: u16, message: &str) -> &'static str {
    let m = message.to_lowercase();
    if m.contains("organization not found") {
        "check GBDFL_API_KEY (or api_key_file): the service does not know this organisation's key"
    } else if m.contains("session not found") {
        "check the --session id: it must be the face2face backend session of this subject, less than 3 hours old"
    } else if m.contains("subscription") || m.contains("access to gbdfl") {
        "the organisation's GBDFL subscription is missing, not started or expired: ask whoever manages the biometric.kz personal cabinet"
    } else if http_status == 422 {
        "the service rejected the request's shape: this is a gbdfl bug, please report it"
    } else {
        "see the service's message above"
    }
}

/// Advice for a non-VALID status, by failure reason.
pub fn status_advice(response: &Response) -> &'static str {
    let detail = response
        .failure_reason
        .as_ref()
        .and_then(|f| f.detail.as_deref())
        .unwrap_or("")
        .to_lowercase();
    let kind = response
        .failure_reason
        .as_ref()
        .and_then(|f| f.kind.as_deref())
        .unwrap_or("");
    match response.status {
        Some(Status::Pending) => {
            "the answer is not ready yet: run the same fetch again in a minute"
        }
        _ if kind == "SERVICE_ERROR" => {
            "the state service could not be reached by biometric.kz: try again later"
        }
        _ if detail.contains("expired") => {
            "the subject's verifications have expired: the subject must pass liveness and e-document checks again"
        }
        _ if detail.contains("face2face")
            || detail.contains("liveness")
            || detail.contains("edocument") =>
        {
            "the subject's biometric checks did not pass: repeat the face2face verification"
        }
        Some(Status::NotFound) => {
            "the State Database has no data for this IIN: check the number with the subject"
        }
        Some(Status::Timeout) => {
            "the token from the state service expired: repeat the verification and fetch again"
        }
        Some(Status::Invalid) => {
            "the state service sent an invalid token: repeat the verification and fetch again"
        }
        _ => "no record was received; see the status and reason above",
    }
}

/// Parses a stored body back into a response (for `show`).
pub fn parse_stored(body: &[u8]) -> Option<Response> {
    api::parse_response(body).ok()
}
