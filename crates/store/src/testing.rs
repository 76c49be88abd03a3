//! Helpers for the tests of this crate and of the crates above it: compiled
//! only for this crate's tests and with the `testing` feature, which only
//! `[dev-dependencies]` turn on (the root package's and gbdfl-report's
//! Cargo.toml), so no build of the binary has them.

use chrono::Utc;

use crate::Store;
use crate::archive::Importer;

/// A new database in `dir` under a fixed test key.
pub fn test_store(dir: &std::path::Path) -> Store {
    let key = crate::crypto::MasterKey::from_bytes([3; crate::crypto::KEY_LEN]);
    Store::init(&dir.join("gbdfl.db"), &key).unwrap().0
}

/// Who imports in tests: lines without a time are fetched now.
pub fn test_importer() -> Importer<'static> {
    Importer {
        operator: "op",
        host: "host",
        purpose: None,
        default_time: Some(Utc::now()),
        rebuild_indexes: false,
        audit: None,
    }
}

/// Writes at `path` a database of format version 5 (the format before
/// version 6, as gbdfl wrote it) under `key`, holding one imported answer
/// per line of `lines` (archive lines, as `gbdfl import` reads them), and
/// returns how many it stored. With `summaries` false the VALID answers
/// have no document summary, as before version 3. For migration tests: a
/// gbdfl of today never writes this format.
///
/// Long on purpose: it writes the old format by hand, every column of the
/// old `lookups` table in its place, so that nothing of today's writer
/// (which writes version 6) stands in for it.
pub fn write_v5_database(
    path: &std::path::Path,
    key: &crate::crypto::MasterKey,
    lines: &[String],
    summaries: bool,
) -> u64 {
    use crate::sqlite::LookupRow;
    use crate::{codec, crypto, time_text};
    use rusqlite::params;

    let conn = rusqlite::Connection::open(path).unwrap();
    conn.execute_batch("PRAGMA page_size = 16384; PRAGMA journal_mode = WAL;")
        .unwrap();
    conn.execute_batch(crate::migrate::SCHEMA_V5).unwrap();
    conn.execute_batch(&format!(
        "PRAGMA application_id = {}; PRAGMA user_version = 5;",
        crate::sqlite::APPLICATION_ID
    ))
    .unwrap();
    let now = Utc::now();
    conn.execute(
        "INSERT INTO meta (key, value) VALUES ('format', 'gbdfl'), ('created_at', ?1)",
        [time_text(now)],
    )
    .unwrap();
    let stable = crypto::StableKeys::generate().unwrap();
    conn.execute(
        "INSERT INTO keys (version, check_value, wrapped_keys, created_at) VALUES (1, ?1, ?2, ?3)",
        params![
            key.check_value().to_vec(),
            key.wrap(&stable, &crate::wrap_aad(1)).unwrap(),
            time_text(now)
        ],
    )
    .unwrap();
    let keys = key.keys(&stable);
    let opener = crate::Opener {
        keys: keys.clone(),
        key_version: 1,
    };
    let tx = conn.unchecked_transaction().unwrap();
    let mut stored = 0;
    for line in lines {
        let (item, _) = crate::archive::parse_line(
            line.as_bytes(),
            Some(now),
            now + chrono::TimeDelta::days(1),
        )
        .unwrap();
        // The row as version 6 makes it, then each value sealed the old way.
        let sealed = opener
            .seal_import(
                &item,
                "op",
                "host",
                Some("migration test"),
                Some("op (uid 1)"),
            )
            .unwrap();
        let mut row: LookupRow = sealed.0;
        let id = row.id.clone();
        let seal = |column: &str, plain: &[u8]| {
            keys.seal(plain, &crypto::associated_data("lookups", column, &id, 1))
                .unwrap()
        };
        row.iin_enc = seal("iin_enc", item.iin.as_str().as_bytes());
        row.session_enc = seal("session_enc", item.session_id.as_bytes());
        row.purpose_enc = Some(seal("purpose_enc", b"migration test"));
        row.detail_enc = item
            .detail
            .as_deref()
            .map(|d| seal("detail_enc", d.as_bytes()));
        row.response_enc = Some(codec::with_packed(item.body, |p| seal("response_enc", p)));
        row.summary_enc = match (&item.summary, summaries) {
            (Some(s), true) => Some(seal("summary_enc", &s.encode())),
            _ => None,
        };
        let text = |ms: i64| crate::sqlite::text_of(ms).unwrap();
        let n = tx
            .execute(
                "INSERT OR IGNORE INTO lookups (id, subject, requested_at, answered_at, operator, host, \
                 source, outcome, status, result, http_status, failure_type, iin_checked, cached_from, \
                 key_version, iin_enc, session_enc, purpose_enc, detail_enc, response_enc, summary_enc, \
                 reached, os_user) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, \
                 ?15, ?16, ?17, ?18, ?19, ?20, ?21, ?22, ?23)",
                params![
                    row.id,
                    row.subject,
                    text(row.requested_at),
                    row.answered_at.map(text),
                    row.operator,
                    row.host,
                    row.source,
                    row.outcome,
                    row.status,
                    row.result,
                    row.http_status,
                    row.failure_type,
                    row.iin_checked,
                    row.cached_from,
                    row.key_version,
                    row.iin_enc,
                    row.session_enc,
                    row.purpose_enc,
                    row.detail_enc,
                    row.response_enc,
                    row.summary_enc,
                    row.reached,
                    row.os_user
                ],
            )
            .unwrap();
        stored += n as u64;
    }
    tx.commit().unwrap();
    stored
}

/// Turns the database at `path` (of the current format, closed) back into
/// one of format version 6 as gbdfl wrote it: `lookups.source` without
/// `org` in its `CHECK`, the partial indexes of version 6, `user_version`
/// 6. Every row stays as it is. For migration tests: a gbdfl of today never
/// writes this format. Panics on a database holding an `org` lookup.
pub fn downgrade_to_v6(path: &std::path::Path) {
    let conn = rusqlite::Connection::open(path).unwrap();
    let tx = conn.unchecked_transaction().unwrap();
    let sql: String = tx
        .query_row(
            "SELECT sql FROM sqlite_schema WHERE type = 'table' AND name = 'lookups'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    let old = sql.replacen(
        "CHECK (source IN ('service', 'cache', 'org'))",
        "CHECK (source IN ('service', 'cache'))",
        1,
    );
    assert_ne!(old, sql, "a lookups table of the current format");
    let cookie: i64 = tx
        .query_row("PRAGMA schema_version", [], |r| r.get(0))
        .unwrap();
    tx.execute_batch("PRAGMA writable_schema = ON;").unwrap();
    tx.execute(
        "UPDATE sqlite_schema SET sql = ?1 WHERE type = 'table' AND name = 'lookups'",
        [old],
    )
    .unwrap();
    tx.execute_batch(&format!(
        "PRAGMA schema_version = {}; PRAGMA writable_schema = OFF;",
        cookie + 1
    ))
    .unwrap();
    tx.execute_batch(
        "DROP INDEX lookups_latest;
         DROP INDEX lookups_other;
         CREATE INDEX lookups_latest
             ON lookups (subject, answered_at, id, key_version, requested_at, summary_enc)
             WHERE source = 'service' AND outcome = 'answered' AND status = 'VALID';
         CREATE INDEX lookups_other
             ON lookups (subject, answered_at, id, key_version, requested_at, source, outcome, status,
                         reached, cached_from, iin_enc)
             WHERE source IS NOT 'service' OR outcome IS NOT 'answered' OR status IS NOT 'VALID';
         PRAGMA user_version = 6;",
    )
    .unwrap();
    let check: String = tx
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(check, "ok");
    tx.commit().unwrap();
}

/// A VALID answer of the service for `iin`, requested at `at` and answered
/// a second later, with `body` as its response: a lookup to record in
/// tests ([`crate::Store::record`]); change its fields with `..`.
pub fn valid_lookup<'a>(
    iin: &'a gbdfl_core::iin::Iin,
    body: &'a [u8],
    at: chrono::DateTime<Utc>,
) -> crate::NewLookup<'a> {
    crate::NewLookup {
        id: crate::LookupId::new(),
        iin,
        session_id: "00000000-0000-4000-8000-000000000000",
        purpose: Some("test"),
        operator: "op",
        host: "host",
        requested_at: at,
        answered_at: Some(at + chrono::TimeDelta::seconds(1)),
        source: crate::Source::Service,
        outcome: crate::Outcome::Answered,
        status: Some("VALID"),
        result: Some(true),
        http_status: Some(200),
        failure_type: None,
        detail: None,
        response: Some(body),
        cached_from: None,
        reached: Some(crate::Reached::Yes),
        os_user: None,
    }
}
