//! The face2face session a lookup belongs to: its id and when it was made.

use chrono::{DateTime, Utc};
use uuid::Uuid;

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
    /// The session id in `s` (spaces around it ignored), written in the
    /// lower-case hyphenated form whatever form it was given in.
    pub fn parse(s: &str) -> Result<SessionId, SessionIdError> {
        Uuid::parse_str(s.trim())
            .map(|u| SessionId(u.hyphenated().to_string()))
            .map_err(|_| SessionIdError(s.chars().count()))
    }

    /// The id in its hyphenated form, as lookups send and record it.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Parses when a face2face session was created: RFC 3339 with an offset
/// (`2026-11-28T09:15:00+05:00`), or a local time as Excel writes it
/// (`2026-11-28 09:15`, `2026-11-28T09:15:30`, `28.11.2026 09:15`).
pub fn parse_session_time(s: &str) -> Result<DateTime<Utc>, String> {
    let t = s.trim();
    if let Some(d) = crate::time::parse_iso(t) {
        return Ok(d);
    }
    const LOCAL: [&str; 6] = [
        "%Y-%m-%d %H:%M:%S",
        "%Y-%m-%d %H:%M",
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%dT%H:%M",
        "%d.%m.%Y %H:%M:%S",
        "%d.%m.%Y %H:%M",
    ];
    for f in LOCAL {
        if let Ok(naive) = chrono::NaiveDateTime::parse_from_str(t, f) {
            use chrono::TimeZone;
            if let Some(local) = chrono::Local.from_local_datetime(&naive).earliest() {
                return Ok(local.with_timezone(&Utc));
            }
        }
    }
    Err(format!(
        "{:?} is not a time: write 2026-11-28 09:15 (local time) or 2026-11-28T09:15:00+05:00",
        t.chars().take(40).collect::<String>()
    ))
}
