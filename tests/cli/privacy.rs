//! Nothing personal in plaintext on disk: the database file and its WAL are
//! scanned byte by byte after real fetches.

use gbdfl_emulator::iins;

use crate::harness::{Env, contains, session, synthetic_iin};

#[test]
fn database_and_wal_hold_no_iin_name_document_number_or_session_id() {
    let env = Env::new();
    let valid = iins::VALID;
    let s1 = session();
    env.ok(&[
        "fetch",
        valid,
        "--session",
        &s1,
        "--purpose",
        "loan for Жанибек",
    ]);
    let synthetic = synthetic_iin(3);
    let s2 = session();
    env.ok(&["fetch", &synthetic, "--session", &s2]);
    // Learn the synthetic person's surname and a document number from the answer.
    let shown = env.ok(&["show", &synthetic, "--json"]);
    let v: serde_json::Value = serde_json::from_str(&shown.stdout).unwrap();
    let surname = v["result_json"]["surname"].as_str().unwrap().to_owned();
    let doc_no = v["result_json"]["documents"][0]["number"]
        .as_str()
        .unwrap()
        .to_owned();
    env.fails(&["fetch", iins::NOT_FOUND, "--session", &s1], 5);

    let bytes = env.db_bytes();
    assert!(bytes.len() > 4096, "the scan reads a real database");
    let needles: Vec<(&str, Vec<u8>)> = vec![
        ("fixture IIN", valid.as_bytes().to_vec()),
        ("synthetic IIN", synthetic.as_bytes().to_vec()),
        ("not-found IIN", iins::NOT_FOUND.as_bytes().to_vec()),
        ("synthetic surname (UTF-8)", surname.as_bytes().to_vec()),
        ("synthetic document number", doc_no.as_bytes().to_vec()),
        ("purpose", "Жанибек".as_bytes().to_vec()),
        ("session id 1", s1.as_bytes().to_vec()),
        ("session id 2", s2.as_bytes().to_vec()),
        (
            "session id without hyphens",
            s1.replace('-', "").as_bytes().to_vec(),
        ),
    ];
    for (what, needle) in &needles {
        assert!(
            !contains(&bytes, needle),
            "{what} found in plaintext in the database or WAL"
        );
    }
    // The scan itself can fail: the same bytes are there once decrypted.
    assert!(shown.stdout.contains(&surname));

    // The fixture person is the API page's own example, which the stored
    // compression dictionaries hold on purpose (public text, docs/FORMAT.md).
    // Without that table, the live database holds none of it.
    let example = ["Нурланов", "N23456789", "Абая"];
    let dicts = gbdfl_store::codec::DICT_V1;
    for e in example {
        assert!(contains(dicts, e.as_bytes()), "{e} is the page's example");
    }
    let copy = env.dir.path().join("without-dictionaries.db");
    let c = rusqlite::Connection::open(&env.db).unwrap();
    c.execute_batch(&format!(
        "VACUUM INTO '{}'",
        copy.display().to_string().replace('\'', "''")
    ))
    .unwrap();
    drop(c);
    let c = rusqlite::Connection::open(&copy).unwrap();
    c.execute_batch("PRAGMA secure_delete = ON; DELETE FROM dictionaries;")
        .unwrap();
    c.execute_batch("VACUUM").unwrap();
    drop(c);
    let bytes = std::fs::read(&copy).unwrap();
    for e in example {
        assert!(
            !contains(&bytes, e.as_bytes()),
            "{e} found outside the dictionaries"
        );
    }
}

#[test]
fn the_api_key_never_reaches_output_or_disk() {
    let env = Env::new();
    let r = env.ok(&["fetch", iins::VALID, "--session", &session()]);
    let key = crate::harness::API_KEY;
    assert!(!r.stdout.contains(key) && !r.stderr.contains(key));
    let r = env.fails(&["fetch", iins::NOT_FOUND, "--session", &session()], 5);
    assert!(!r.stdout.contains(key) && !r.stderr.contains(key));
    assert!(!contains(&env.db_bytes(), key.as_bytes()));
}
