//! The audit report: the audit entries a filter keeps, one row each.

use std::borrow::Cow;
use std::io::Write;

use crate::cells::{Sheet, own, text};
use crate::{Format, ReportError};
use gbdfl_store::{AuditFilter, AuditView, Store};

/// The columns of the audit report: the fields of `gbdfl audit log --json`.
pub const AUDIT_COLUMNS: [&str; 14] = [
    "seq",
    "id",
    "at",
    "operator",
    "host",
    "command",
    "subject",
    "purpose",
    "outcome",
    "exit_code",
    "error",
    "paid_call",
    "records",
    "os_user",
];

/// An audit entry's fields in [`AUDIT_COLUMNS`] order: the one definition
/// behind `gbdfl audit log --json` and the audit report, so the two
/// cannot differ. The entry holds no IIN (only the start of its blind
/// index); messages in it were masked when written.
pub fn audit_fields(v: &AuditView) -> [serde_json::Value; 14] {
    use serde_json::json;
    [
        json!(v.seq),
        json!(v.id),
        json!(gbdfl_core::time::iso_millis(v.at)),
        json!(v.operator),
        json!(v.host),
        json!(v.command),
        json!(v.subject),
        json!(v.purpose),
        json!(if v.ok { "ok" } else { "error" }),
        json!(v.exit_code),
        json!(v.error),
        json!(v.paid_call),
        json!(v.records),
        json!(v.os_user),
    ]
}

/// Streams the audit entries `filter` keeps, oldest first, one row each;
/// text cells neutralised like every report's.
pub fn write_audit<W: Write>(
    w: W,
    format: Format,
    store: &Store,
    filter: &AuditFilter,
) -> Result<(W, u64), ReportError> {
    use serde_json::Value;
    let mut sheet = Sheet::new(w, format, &AUDIT_COLUMNS)?;
    store.each_audit(filter, |v| -> Result<(), ReportError> {
        let cells = audit_fields(&v).map(|f| match f {
            Value::Null => own(""),
            Value::String(s) => Cow::Owned(text(&s).into_owned()),
            other => own(other.to_string()),
        });
        sheet.row(&cells)
    })?;
    sheet.finish()
}
