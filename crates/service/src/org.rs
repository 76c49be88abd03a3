//! The organisation cache: a VALID record another branch of the
//! organisation paid for answers here instead of a paid call.
//!
//! The central store hands back the other branch's row, sealed as that
//! branch sealed it; this branch opens it with the organisation's key
//! (which checks that no byte of it was changed) and keeps the answer as a
//! lookup of its own, of source `org`, sealed under its own row: it counts
//! as an avoided paid call, and `show`, `expiring` and later fetches here
//! find it without asking again.

use chrono::{DateTime, Utc};

use gbdfl_core::iin::Iin;
use gbdfl_store::{
    AuditEntry, LookupId, LookupRow, NewLookup, Outcome, Record, Source, Store, StoreError,
};

/// Who takes the record, for what, and the audit entry that says so.
#[derive(Debug)]
pub struct OrgUse<'a> {
    /// The IIN asked for: the record must be this person's.
    pub iin: &'a Iin,
    /// The face2face session of this request (`None` for `pull`, which
    /// has none: an empty one is kept).
    pub session: Option<&'a str>,
    /// The purpose given here.
    pub purpose: Option<&'a str>,
    /// Who asked here.
    pub operator: &'a str,
    /// Which machine asked.
    pub host: &'a str,
    /// The audit entry of the request, written with the lookup.
    pub audit: Option<AuditEntry>,
    /// The oldest answer time the request takes (its `max_age`), checked
    /// on the record once opened: the central store's word is not taken.
    pub fresh_from: Option<DateTime<Utc>>,
}

/// How far ahead of this machine's clock an answer time may lie (another
/// branch's clock may run a little fast); beyond it a record is refused.
pub const CLOCK_SKEW: chrono::Duration = chrono::Duration::minutes(5);

/// Keeps another branch's VALID answer `row` as this branch's `org`
/// lookup (with `with.audit`, in one transaction) and gives it as a
/// record. `None` when the row, once opened, is not a VALID answer of the
/// IIN asked for (the caller then goes on as if none was found).
pub fn keep(
    store: &Store,
    row: &LookupRow,
    with: &OrgUse<'_>,
    now: DateTime<Utc>,
) -> Result<Option<(LookupId, Record)>, StoreError> {
    let (origin, body) = store.open_lookup_row(row)?;
    keep_opened(store, origin, body, with, now)
}

/// [`keep`] of a row the caller has opened already
/// ([`Store::open_lookup_row`]): its lookup and response body.
pub fn keep_opened(
    store: &Store,
    origin: gbdfl_store::Lookup,
    body: Option<zeroize::Zeroizing<Vec<u8>>>,
    with: &OrgUse<'_>,
    now: DateTime<Utc>,
) -> Result<Option<(LookupId, Record)>, StoreError> {
    let Some(body) = body else {
        return Ok(None);
    };
    if origin.iin != with.iin.as_str() || origin.status.as_deref() != Some("VALID") {
        return Ok(None);
    }
    let Some(answered) = origin.answered_at else {
        return Ok(None);
    };
    let too_old = with.fresh_from.is_some_and(|from| answered < from);
    let ahead = now
        .checked_add_signed(CLOCK_SKEW)
        .is_some_and(|limit| answered > limit);
    if too_old || ahead {
        return Ok(None);
    }
    let id = LookupId::new();
    let audit = with.audit.as_ref().map(|a| AuditEntry {
        records: 1,
        lookup_id: Some(id.to_string()),
        ..a.clone()
    });
    let cached_from = uuid::Uuid::parse_str(&origin.id).ok().map(LookupId);
    store.record(
        &NewLookup {
            id,
            iin: with.iin,
            session_id: with.session.unwrap_or(""),
            purpose: with.purpose,
            operator: with.operator,
            host: with.host,
            requested_at: now,
            answered_at: origin.answered_at,
            source: Source::Org,
            outcome: Outcome::Answered,
            status: Some("VALID"),
            result: origin.result,
            http_status: origin.http_status,
            failure_type: None,
            detail: None,
            response: Some(&body),
            cached_from,
            reached: None,
            os_user: Some(gbdfl_core::os_user::described()),
        },
        audit.as_ref(),
    )?;
    let lookup = store
        .lookup(&id.to_string())?
        .ok_or_else(|| StoreError::Corrupt {
            id: id.to_string(),
            column: "id",
            reason: "the lookup just recorded is not there".into(),
        })?;
    Ok(Some((id, Record { lookup, body })))
}

/// Where a record of the organisation may come from: the central store,
/// asked with a short timeout. An unreachable central store is no error:
/// the branch carries on without it.
pub trait OrgCache {
    /// The newest VALID answers of `subject` answered between `since_ms`
    /// and `until_ms` by any branch (a few, newest first), each with that
    /// branch's id; none when there is none or the central store cannot
    /// be asked now.
    fn find(
        &mut self,
        subject: &[u8; 32],
        since_ms: i64,
        until_ms: i64,
    ) -> Vec<(String, LookupRow)>;
}
