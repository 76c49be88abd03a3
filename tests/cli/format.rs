//! docs/FORMAT.md is enough to read every record: this test follows it with
//! only the database, the master key file and the rusqlite, hkdf, hmac,
//! sha2, aes-gcm and zstd crates (the dictionaries come from the database),
//! never through gbdfl's store or crypto modules.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use gbdfl_emulator::iins;

use crate::harness::{Env, session};

fn subkey(mk: &[u8], info: &str) -> [u8; 32] {
    let mut out = [0u8; 32];
    Hkdf::<Sha256>::new(Some(b"gbdfl-v1"), mk)
        .expand(info.as_bytes(), &mut out)
        .unwrap();
    out
}

#[test]
fn every_record_decrypts_by_hand_following_format_md() {
    let env = Env::new();
    // Several people, VALID and not, a second answer of one of them, and
    // an answer from the cache: every kind of row.
    let people: Vec<String> = std::iter::once(iins::VALID.to_owned())
        .chain((0..4).map(crate::harness::synthetic_iin))
        .collect();
    let s = session();
    for iin in &people {
        env.ok(&["fetch", iin, "--session", &s]);
    }
    env.ok(&["fetch", &people[1], "--session", &session()]);
    env.ok(&[
        "fetch",
        &people[1],
        "--session",
        &session(),
        "--max-age",
        "1h",
    ]);
    env.fails(&["fetch", iins::NOT_FOUND, "--session", &s], 5);

    // 1. The key file: "gbdfl-key-v1:" + 64 hex digits + newline.
    let text = std::fs::read_to_string(&env.key).unwrap();
    let hexkey = text
        .strip_prefix("gbdfl-key-v1:")
        .unwrap()
        .strip_suffix('\n')
        .unwrap();
    let mk = hex::decode(hexkey).unwrap();
    assert_eq!(mk.len(), 32);

    // 2. Subkeys by HKDF-SHA-256, salt "gbdfl-v1".
    let ek = subkey(&mk, "gbdfl/v1/encryption");
    let kcv = subkey(&mk, "gbdfl/v1/key-check");
    let cipher = Aes256Gcm::new_from_slice(&ek).unwrap();
    let open_with = |sealed: &[u8], aad: &str| -> Vec<u8> {
        assert_eq!(sealed[0], 1, "layout version byte");
        let nonce: [u8; 12] = sealed[1..13].try_into().unwrap();
        cipher
            .decrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: &sealed[13..],
                    aad: aad.as_bytes(),
                },
            )
            .expect("decrypts as FORMAT.md says")
    };

    // 3. Check the key check value; unwrap the blind-index key.
    let conn = rusqlite::Connection::open(&env.db).unwrap();
    let (kv, stored_kcv, wrapped): (i64, Vec<u8>, Vec<u8>) = conn
        .query_row(
            "SELECT version, check_value, wrapped_keys FROM keys ORDER BY version DESC LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    assert_eq!(stored_kcv, kcv);
    let both = open_with(&wrapped, &format!("gbdfl/v1|keys|wrapped_keys|{kv}|{kv}"));
    assert_eq!(both.len(), 64);
    let ik = &both[..32];
    let blind = |iin: &str| -> Vec<u8> {
        let mut m = <Hmac<Sha256> as hmac::KeyInit>::new_from_slice(ik).unwrap();
        m.update(iin.as_bytes());
        m.finalize().into_bytes().to_vec()
    };

    // 4. The dictionaries, from the database itself, checked by their SHA-256.
    let mut dictionaries = std::collections::HashMap::new();
    let mut st = conn
        .prepare("SELECT codec, sha256, content FROM dictionaries")
        .unwrap();
    let rows = st
        .query_map([], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, Vec<u8>>(1)?,
                r.get::<_, Vec<u8>>(2)?,
            ))
        })
        .unwrap();
    for row in rows {
        let (codec, sha, content) = row.unwrap();
        assert_eq!(sha, Sha256::digest(&content).to_vec());
        let listed = format!("| `0x{codec:02x}` | `{}` |", hex::encode(&sha));
        assert!(FORMAT_MD.contains(&listed), "FORMAT.md lists {listed}");
        dictionaries.insert(codec, content);
    }
    assert_eq!(dictionaries.len(), 2);

    // 5. Every lookup: the associated data binds its place and the fields
    // that choose it; bodies decompress with the stored dictionary.
    let mut st = conn
        .prepare(
            "SELECT id, key_version, subject, requested_at, answered_at, source, outcome, status, \
             reached, cached_from, iin_enc, session_enc, response_enc FROM lookups \
             ORDER BY subject, answered_at, id",
        )
        .unwrap();
    let mut rows = st.query([]).unwrap();
    let mut latest_valid: std::collections::HashMap<Vec<u8>, String> = Default::default();
    let mut lookups = 0;
    while let Some(r) = rows.next().unwrap() {
        lookups += 1;
        let text = |i: usize| r.get::<_, Option<String>>(i).unwrap().unwrap_or_default();
        let number = |i: usize| {
            r.get::<_, Option<i64>>(i)
                .unwrap()
                .map(|n| n.to_string())
                .unwrap_or_default()
        };
        let (id, version): (String, i64) = (r.get(0).unwrap(), r.get(1).unwrap());
        let subject: Vec<u8> = r.get(2).unwrap();
        let binding = [
            hex::encode(&subject),
            number(3),
            number(4),
            text(5),
            text(6),
            text(7),
            text(8),
            text(9),
        ]
        .join("|");
        let open = |sealed: &[u8], column: &str| -> Vec<u8> {
            open_with(
                sealed,
                &format!("gbdfl/v2|lookups|{column}|{id}|{version}|{binding}"),
            )
        };
        let iin = open(&r.get::<_, Vec<u8>>(10).unwrap(), "iin_enc");
        assert_eq!(blind(std::str::from_utf8(&iin).unwrap()), subject);
        open(&r.get::<_, Vec<u8>>(11).unwrap(), "session_enc");
        let Some(response_enc) = r.get::<_, Option<Vec<u8>>>(12).unwrap() else {
            continue;
        };
        let plain = open(&response_enc, "response_enc");
        // The codec byte, then the body: raw, or one zstd frame made with
        // the dictionary of that codec.
        let body = match plain[0] {
            0 => plain[1..].to_vec(),
            codec => zstd::bulk::Decompressor::with_dictionary(&dictionaries[&i64::from(codec)])
                .unwrap()
                .decompress(&plain[1..], 1 << 20)
                .unwrap(),
        };
        let body = String::from_utf8(body).unwrap();
        serde_json::from_str::<serde_json::Value>(&body).unwrap();
        // The latest VALID lookup: the greatest answered_at, then id.
        if (text(5), text(6), text(7)) == ("service".into(), "answered".into(), "VALID".into()) {
            latest_valid.insert(subject, body);
        }
    }
    assert!(lookups >= 8, "{lookups}");
    assert_eq!(latest_valid.len(), people.len());
    for iin in &people {
        let shown = env.ok(&["show", iin, "--json"]).stdout;
        assert_eq!(
            latest_valid[&blind(iin)].trim(),
            shown.trim(),
            "the body decrypted by hand is the one gbdfl shows"
        );
    }
}

const FORMAT_MD: &str = include_str!("../../docs/FORMAT.md");

#[test]
fn a_ciphertext_copied_into_another_row_is_reported_not_shown() {
    let env = Env::new();
    let a = iins::VALID;
    let b = crate::harness::synthetic_iin(5);
    env.ok(&["fetch", a, "--session", &session()]);
    env.ok(&["fetch", &b, "--session", &session()]);
    {
        let conn = rusqlite::Connection::open(&env.db).unwrap();
        // Copy a's sealed response over b's: an insider swapping records.
        conn.execute(
            "UPDATE lookups SET response_enc = (SELECT response_enc FROM lookups ORDER BY id LIMIT 1)
             WHERE id = (SELECT id FROM lookups ORDER BY id DESC LIMIT 1)",
            [],
        )
        .unwrap();
    }
    let r = env.fails(&["show", &b], 8);
    assert!(r.stderr.contains("does not decrypt"), "{}", r.stderr);
    assert!(!r.stdout.contains("Нурланов"), "{}", r.stdout);
}

/// How the v2 dictionary file was made. Ignored: a later zstd, or a change
/// to the synthetic people, may compute other tables, and then this fails
/// while the file stays as it is (a new dictionary would get a new codec
/// byte). Run with `cargo test -- --ignored` to check the recipe.
#[test]
#[ignore = "checks the recipe of a frozen file; see the comment"]
fn the_v2_dictionary_is_what_bench_dict_makes() {
    use gbdfl_store::codec;
    let made = gbdfl_emulator::dictionary::dictionary(
        codec::DICT_V1,
        codec::LEVEL,
        codec::DICT_V2_ID,
        &gbdfl_emulator::dictionary_samples(),
    )
    .unwrap();
    assert!(
        made == codec::DICT_V2,
        "`gbdfl bench dict` now makes another file"
    );
}
