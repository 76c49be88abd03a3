//! docs/FORMAT.md is enough to decrypt a record: this test follows it with
//! only the master key file and the rusqlite, hkdf, hmac, sha2, aes-gcm and zstd
//! crates (and the dictionary file it names), never through gbdfl's store or crypto modules.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use sha2::Sha256;

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
fn a_record_decrypts_by_hand_following_format_md() {
    let env = Env::new();
    let iin = iins::VALID;
    let s = session();
    env.ok(&["fetch", iin, "--session", &s]);
    let via_gbdfl = env.ok(&["show", iin, "--json"]).stdout;

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

    // 3. Check the key check value; unwrap the blind-index key; find the rows.
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
    let mut m = <Hmac<Sha256> as hmac::KeyInit>::new_from_slice(ik).unwrap();
    m.update(iin.as_bytes());
    let subject: Vec<u8> = m.finalize().into_bytes().to_vec();
    let (id, version, response_enc, session_enc): (String, i64, Vec<u8>, Vec<u8>) = conn
        .query_row(
            "SELECT id, key_version, response_enc, session_enc FROM lookups WHERE subject = ?1 AND status = 'VALID'",
            [&subject],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .unwrap();

    // 4-6. Open with AES-256-GCM, nonce after the version byte, AAD naming the place.
    let open = |sealed: &[u8], column: &str| -> Vec<u8> {
        open_with(sealed, &format!("gbdfl/v1|lookups|{column}|{id}|{version}"))
    };
    let plain = open(&response_enc, "response_enc");
    // Codec 0x02: one zstd frame made with the dictionary file named in FORMAT.md.
    assert_eq!(plain[0], 2, "codec byte: zstd with the v2 dictionary");
    let dict = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/crates/store/src/zstd-dict-v2.bin"
    ))
    .unwrap();
    let body = zstd::bulk::Decompressor::with_dictionary(&dict)
        .unwrap()
        .decompress(&plain[1..], 1 << 20)
        .unwrap();
    let body = std::str::from_utf8(&body).unwrap();
    assert_eq!(
        body.trim(),
        via_gbdfl.trim(),
        "the body is the one gbdfl shows"
    );
    let v: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(v["result_json"]["surname"], "Нурланов");
    assert_eq!(open(&session_enc, "session_enc"), s.as_bytes());

    // A ciphertext moved to another row does not open there.
    let nonce: [u8; 12] = response_enc[1..13].try_into().unwrap();
    let wrong_aad = format!(
        "gbdfl/v1|lookups|response_enc|{}|{version}",
        uuid::Uuid::now_v7()
    );
    assert!(
        cipher
            .decrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: &response_enc[13..],
                    aad: wrong_aad.as_bytes()
                }
            )
            .is_err()
    );
}

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
