//! The rows of `gbdfl expiring --stale`: persons whose cached record is
//! old.

use chrono::{DateTime, Utc};
use serde::Serialize;

/// A person whose latest VALID record is older than asked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StaleRow {
    /// The IIN as it may be shown: masked unless the caller chose otherwise.
    pub iin: String,
    /// Surname, name and patronymic from the record; empty if it has none.
    pub full_name: String,
    /// When the GBDFL answer was received.
    #[serde(serialize_with = "gbdfl_core::time::serialize_iso_seconds")]
    pub fetched_at: DateTime<Utc>,
    /// Whole days between the fetch and `now`.
    pub age_days: i64,
}

/// Oldest first; ties by IIN.
pub(crate) fn sort_stale(rows: &mut [StaleRow]) {
    rows.sort_by(|a, b| {
        a.fetched_at
            .cmp(&b.fetched_at)
            .then_with(|| a.iin.cmp(&b.iin))
    });
}
