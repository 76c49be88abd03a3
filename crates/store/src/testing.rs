//! Helpers for the tests of this crate and of the crates above it (the
//! `testing` feature): never in a production build.

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
