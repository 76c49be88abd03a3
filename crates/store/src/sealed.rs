//! Every sealed column of the database, and what its associated data binds
//! it to: the one list that sealing, opening, `rekey`, `purge` and `check`
//! go by (docs/FORMAT.md, "Sealed columns").
//!
//! Rule this module keeps: a plaintext column that decides which record a
//! reader is shown, or in what order, is in the binding of its row, so
//! that changing it makes every sealed value of the row fail to open
//! (tests/cli/tamper.rs; `a_lookup_binding_is_the_text_the_format_gives`
//! keeps the binding's text to docs/FORMAT.md, and
//! `every_sealed_column_is_in_the_schema` keeps [`SEALED`] to schema.sql).

/// How the associated data of a sealed column is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Binding {
    /// `gbdfl/v1|table|column|id|key_version`: bound to its place only.
    Place,
    /// `gbdfl/v2|...|` then the row's choosing fields ([`LookupBinding`]).
    Lookup,
    /// `gbdfl/v2|...|` then the queue item's fixed fields ([`QueueBinding`]).
    Queue,
}

/// One sealed column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SealedColumn {
    /// The table.
    pub table: &'static str,
    /// The column.
    pub column: &'static str,
    /// What its associated data binds.
    pub binding: Binding,
}

const fn col(table: &'static str, column: &'static str, binding: Binding) -> SealedColumn {
    SealedColumn {
        table,
        column,
        binding,
    }
}

/// Every sealed column there is. (`keys.wrapped_keys` is sealed under the
/// key file's own record key, bound to its place, and handled with the keys.)
pub const SEALED: [SealedColumn; 12] = [
    col("lookups", "iin_enc", Binding::Lookup),
    col("lookups", "session_enc", Binding::Lookup),
    col("lookups", "purpose_enc", Binding::Lookup),
    col("lookups", "detail_enc", Binding::Lookup),
    col("lookups", "response_enc", Binding::Lookup),
    col("lookups", "summary_enc", Binding::Lookup),
    col("queue", "iin_enc", Binding::Queue),
    col("queue", "session_enc", Binding::Queue),
    col("queue", "purpose_enc", Binding::Queue),
    col("queue", "error_enc", Binding::Queue),
    col("audit", "purpose_enc", Binding::Place),
    col("audit", "error_enc", Binding::Place),
];

/// The sealed columns of one table, in [`SEALED`]'s order.
pub fn columns_of(table: &str) -> impl Iterator<Item = &'static SealedColumn> + '_ {
    SEALED.iter().filter(move |c| c.table == table)
}

/// The fields of a `lookups` row that choose and order records, as bound
/// into the associated data of each of its sealed values.
#[derive(Debug, Clone, Copy)]
pub struct LookupBinding<'a> {
    /// The blind index of the IIN (32 bytes).
    pub subject: &'a [u8],
    /// Milliseconds since the epoch.
    pub requested_at: i64,
    /// Milliseconds since the epoch; `None` when NULL.
    pub answered_at: Option<i64>,
    /// `service`, `cache` or `org`.
    pub source: &'a str,
    /// `answered`, `garbled`, `refused`, `unavailable` or `cached`.
    pub outcome: &'a str,
    /// The GBDFL status, when the answer had one.
    pub status: Option<&'a str>,
    /// `no`, `maybe` or `yes`; `None` for a cache answer.
    pub reached: Option<&'a str>,
    /// The lookup a cache (or organisation cache) answer came from.
    pub cached_from: Option<&'a str>,
}

impl<'a> LookupBinding<'a> {
    /// The binding of a VALID answer (of the service or of the
    /// organisation cache) as the covering index `lookups_latest` holds
    /// it: its outcome and status are fixed by the index's condition.
    pub fn latest(
        subject: &'a [u8],
        requested_at: i64,
        answered_at: Option<i64>,
        source: &'a str,
        reached: Option<&'a str>,
        cached_from: Option<&'a str>,
    ) -> LookupBinding<'a> {
        LookupBinding {
            subject,
            requested_at,
            answered_at,
            source,
            outcome: "answered",
            status: Some("VALID"),
            reached,
            cached_from,
        }
    }

    /// Writes the binding into `out` (cleared first):
    /// `subject-hex|requested_at|answered_at|source|outcome|status|reached|cached_from`,
    /// numbers in decimal, NULL as nothing.
    pub fn write(&self, out: &mut Vec<u8>) {
        // Written piece by piece into one buffer: the expiry scan writes a
        // million of these.
        out.clear();
        out.reserve(160);
        put_hex(out, self.subject);
        out.push(b'|');
        put_number(out, Some(self.requested_at));
        out.push(b'|');
        put_number(out, self.answered_at);
        for text in [
            Some(self.source),
            Some(self.outcome),
            self.status,
            self.reached,
            self.cached_from,
        ] {
            out.push(b'|');
            if let Some(text) = text {
                out.extend_from_slice(text.as_bytes());
            }
        }
    }
}

/// The fields of a `queue` item fixed when it was queued, as bound into the
/// associated data of each of its sealed values.
#[derive(Debug, Clone, Copy)]
pub struct QueueBinding<'a> {
    /// The blind index of the IIN (32 bytes).
    pub subject: &'a [u8],
    /// The request index (32 bytes).
    pub request: &'a [u8],
    /// Milliseconds since the epoch.
    pub queued_at: i64,
    /// Milliseconds since the epoch.
    pub deadline: i64,
}

impl QueueBinding<'_> {
    /// Writes the binding into `out` (cleared first):
    /// `subject-hex|request-hex|queued_at|deadline`.
    pub fn write(&self, out: &mut Vec<u8>) {
        out.clear();
        put_hex(out, self.subject);
        out.push(b'|');
        put_hex(out, self.request);
        out.push(b'|');
        put_number(out, Some(self.queued_at));
        out.push(b'|');
        put_number(out, Some(self.deadline));
    }
}

fn put_hex(out: &mut Vec<u8>, bytes: &[u8]) {
    let start = out.len();
    out.resize(start + 2 * bytes.len(), 0);
    // The room is exactly twice the bytes: this cannot fail.
    let _ = hex::encode_to_slice(bytes, &mut out[start..]);
}

fn put_number(out: &mut Vec<u8>, n: Option<i64>) {
    if let Some(n) = n {
        let mut buf = itoa::Buffer::new();
        out.extend_from_slice(buf.format(n).as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lookup_binding_is_the_text_the_format_gives() {
        let subject = [0xab; 32];
        let mut out = Vec::new();
        LookupBinding {
            subject: &subject,
            requested_at: 1_700_000_000_000,
            answered_at: None,
            source: "cache",
            outcome: "cached",
            status: None,
            reached: None,
            cached_from: Some("0193f6a2-7c1e-7b3a-9f00-1c2d3e4f5a6b"),
        }
        .write(&mut out);
        let want = format!(
            "{}|1700000000000||cache|cached|||0193f6a2-7c1e-7b3a-9f00-1c2d3e4f5a6b",
            "ab".repeat(32)
        );
        assert_eq!(String::from_utf8(out.clone()).unwrap(), want);
        LookupBinding::latest(&subject, -5, Some(7), "service", Some("yes"), None).write(&mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            format!("{}|-5|7|service|answered|VALID|yes|", "ab".repeat(32))
        );
    }

    #[test]
    fn every_sealed_column_is_in_the_schema() {
        let schema = include_str!("../../../schema.sql");
        for c in SEALED {
            let table = &schema[schema
                .find(&format!("CREATE TABLE IF NOT EXISTS {} (", c.table))
                .unwrap()..];
            let table = &table[..table.find(") STRICT").unwrap()];
            assert!(
                table.contains(&format!("\n    {} ", c.column)),
                "{}.{}",
                c.table,
                c.column
            );
        }
    }
}
