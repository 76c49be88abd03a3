//! How a response body is packed before it is sealed: the codec byte of
//! `response_enc` (docs/FORMAT.md).
//!
//! Codec `0x00` is the body as received. Codec `0x01` is one zstd frame
//! (content size recorded) made with the embedded dictionary
//! `zstd-dict-v1.txt`: the API page's response example, pretty and compact.
//! A raw-content dictionary gives zstd the field names and the fixed texts
//! of every answer, which a 2 KB body cannot teach it alone. Codec `0x02`
//! (what gbdfl writes) is the same with `zstd-dict-v2.bin`: v1's content,
//! byte for byte, plus zstd's entropy tables (how often each byte and each
//! match length occur), so that zstd need not build and describe a Huffman
//! table for every 2 KB frame: an answer packs smaller
//! (`answers_not_among_the_samples_pack_smaller_with_v2_than_with_v1`;
//! BENCHMARKS.md has the measurements). The tables were computed from
//! 1,000 synthetic answers (`gbdfl bench dict`, with the emulator's
//! `dictionary`: `format::the_v2_dictionary_is_what_bench_dict_makes` in
//! tests/cli); the content, which decides most of the gain, is still only
//! the API page's example.
//!
//! Rules this module keeps: a dictionary file never changes; a new one
//! gets a new codec byte, so every stored value stays readable
//! (`the_v2_dictionary_is_v1_with_tables_and_never_changes`,
//! `values_stored_with_the_v1_dictionary_stay_readable`). Packing works on
//! plaintext in memory, before sealing (ciphertext does not compress):
//! [`with_packed`] hands the packed body to its caller and zeroizes its
//! buffer.

use std::cell::RefCell;
use std::sync::OnceLock;

use zeroize::{Zeroize, Zeroizing};

/// The body exactly as received.
pub const RAW: u8 = 0x00;
/// zstd with the v1 dictionary.
pub const ZSTD_V1: u8 = 0x01;
/// The v1 dictionary, byte for byte.
pub const DICT_V1: &[u8] = include_bytes!("zstd-dict-v1.txt");
/// zstd with the v2 dictionary: what gbdfl writes.
pub const ZSTD_V2: u8 = 0x02;
/// The v2 dictionary: v1's content with entropy tables (`gbdfl bench dict`).
pub const DICT_V2: &[u8] = include_bytes!("zstd-dict-v2.bin");
/// The v2 dictionary's id, recorded in each frame ("gbd2"; zstd leaves ids
/// from 32,768 to 2^31 - 1 to private use).
pub const DICT_V2_ID: u32 = 0x6762_6432;
/// zstd level 1: with the dictionary it packs an answer to under a third,
/// and higher levels cost import time for a few percent (BENCHMARKS.md).
/// The zstd level of codec 0x02.
pub const LEVEL: i32 = 1;

/// Every dictionary a codec byte names: (codec, the id zstd frames record
/// (0 for a raw-content dictionary), the dictionary). The database keeps a
/// copy of each (`dictionaries`), docs/FORMAT.md their SHA-256.
pub const DICTIONARIES: [(u8, u32, &[u8]); 2] =
    [(ZSTD_V1, 0, DICT_V1), (ZSTD_V2, DICT_V2_ID, DICT_V2)];
/// No stored body is larger than this; a frame claiming more is corrupt.
const MAX_BODY: usize = 16 * 1024 * 1024;

fn encoder_dict() -> &'static zstd::dict::EncoderDictionary<'static> {
    static D: OnceLock<zstd::dict::EncoderDictionary<'static>> = OnceLock::new();
    D.get_or_init(|| zstd::dict::EncoderDictionary::copy(DICT_V2, LEVEL))
}

/// The dictionary of each zstd codec, at its codec byte minus [`ZSTD_V1`].
const DICTS: [&[u8]; 2] = [DICT_V1, DICT_V2];

/// The `n`-th of [`DICTS`], prepared once for decompression.
fn decoder_dict(n: usize) -> &'static zstd::dict::DecoderDictionary<'static> {
    static D: [OnceLock<zstd::dict::DecoderDictionary<'static>>; DICTS.len()] =
        [const { OnceLock::new() }; DICTS.len()];
    D[n].get_or_init(|| zstd::dict::DecoderDictionary::copy(DICTS[n]))
}

thread_local! {
    /// Where this thread packs a body before it is sealed: one buffer reused,
    /// zeroized after each use, instead of a body-sized allocation per value.
    static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
    static COMPRESSOR: RefCell<Option<zstd::bulk::Compressor<'static>>> = const { RefCell::new(None) };
    /// This thread's decompressor for each of [`DICTS`], made when first used.
    static DECOMPRESSORS: RefCell<[Option<zstd::bulk::Decompressor<'static>>; DICTS.len()]> =
        const { RefCell::new([None, None]) };
}

/// Calls `f` with the codec byte and the packed body (what [`pack_into`]
/// appends), packed in this thread's scratch buffer, which is zeroized
/// before this returns.
pub fn with_packed<T>(body: &[u8], f: impl FnOnce(&[u8]) -> T) -> T {
    SCRATCH.with(|scratch| {
        let mut buf = scratch.take();
        buf.clear();
        pack_into(body, &mut buf);
        let out = f(&buf);
        buf.zeroize();
        scratch.replace(buf);
        out
    })
}

/// The most [`pack_into`] appends for `body`.
pub fn packed_max(body: &[u8]) -> usize {
    1 + body.len()
}

/// Appends the codec byte and the packed body to `out`: zstd when that is
/// smaller, the body as it is otherwise. Compresses straight into `out`;
/// appends at most [`packed_max`] bytes.
pub fn pack_into(body: &[u8], out: &mut Vec<u8>) {
    let start = out.len();
    out.resize(start + packed_max(body), 0);
    let packed = COMPRESSOR.with(|c| {
        let mut c = c.borrow_mut();
        if c.is_none() {
            *c = zstd::bulk::Compressor::with_prepared_dictionary(encoder_dict()).ok();
        }
        // A frame that does not fit is one no smaller than the body.
        c.as_mut()
            .and_then(|c| c.compress_to_buffer(body, &mut out[start + 1..]).ok())
    });
    match packed {
        Some(n) if n < body.len() => {
            out[start] = ZSTD_V2;
            out.truncate(start + 1 + n);
        }
        _ => {
            out[start] = RAW;
            out[start + 1..].copy_from_slice(body);
        }
    }
}

/// The body from a codec byte and packed bytes; `None` for an unknown codec
/// or a frame that does not decompress.
pub fn unpack(plain: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
    match plain.split_first()? {
        (&RAW, rest) => Some(Zeroizing::new(rest.to_vec())),
        (&codec, frame) if (ZSTD_V1..=ZSTD_V2).contains(&codec) => {
            let n = usize::from(codec - ZSTD_V1);
            DECOMPRESSORS.with(|d| {
                let d = &mut d.borrow_mut()[n];
                if d.is_none() {
                    *d = zstd::bulk::Decompressor::with_prepared_dictionary(decoder_dict(n)).ok();
                }
                d.as_mut()?
                    .decompress(frame, MAX_BODY)
                    .ok()
                    .map(Zeroizing::new)
            })
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pack(body: &[u8]) -> Vec<u8> {
        let mut out = b"prefix".to_vec();
        pack_into(body, &mut out);
        assert!(out.len() <= 6 + packed_max(body));
        out.split_off(6)
    }

    #[test]
    fn round_trip_and_small_bodies_stay_raw() {
        let body = gbdfl_emulator::synthetic_response(
            "880510400015",
            "3e9b7d42-6c1a-4f8e-a2d5-9b4c8e1f7a3d",
            chrono::NaiveDate::from_ymd_opt(2030, 7, 1).unwrap(),
        )
        .to_string();
        let packed = pack(body.as_bytes());
        assert_eq!(packed[0], ZSTD_V2);
        assert!(
            packed.len() < body.len() / 2,
            "{} of {}",
            packed.len(),
            body.len()
        );
        assert_eq!(&unpack(&packed).unwrap()[..], body.as_bytes());
        let tiny = pack(b"{}");
        assert_eq!(&tiny[..], b"\x00{}");
        assert_eq!(&unpack(&tiny).unwrap()[..], b"{}");
        assert!(unpack(b"\x07x").is_none());
        assert!(unpack(b"\x01garbage").is_none());
        assert!(unpack(b"\x02garbage").is_none());
    }

    /// Synthetic answers of people not among the dictionary's samples.
    fn answers(n: u64) -> Vec<String> {
        let today = chrono::NaiveDate::from_ymd_opt(2026, 11, 29).unwrap();
        (0..n * 2)
            .filter_map(|k| {
                let iin =
                    gbdfl_core::iin::complete(&format!("{:06}3{:04}", 800101 + k % 28, k / 28))?;
                Some(gbdfl_emulator::synthetic_response(&iin, &format!("s-{k}"), today).to_string())
            })
            .take(n as usize)
            .collect()
    }

    #[test]
    fn values_stored_with_the_v1_dictionary_stay_readable() {
        let mut v1 = zstd::bulk::Compressor::with_dictionary(LEVEL, DICT_V1).unwrap();
        for body in answers(20) {
            let mut packed = vec![ZSTD_V1];
            packed.extend(v1.compress(body.as_bytes()).unwrap());
            assert_eq!(&unpack(&packed).unwrap()[..], body.as_bytes());
            // A v2 frame records its dictionary's id: read as v1, it fails
            // rather than giving a wrong body.
            let mut v2 = pack(body.as_bytes());
            assert_eq!(v2[0], ZSTD_V2);
            v2[0] = ZSTD_V1;
            assert!(unpack(&v2).is_none());
        }
    }

    #[test]
    fn the_v2_dictionary_is_v1_with_tables_and_never_changes() {
        assert!(DICT_V2.ends_with(DICT_V1), "v1's content, byte for byte");
        assert_eq!(
            zstd::zstd_safe::get_dict_id_from_dict(DICT_V2).map(|id| id.get()),
            Some(DICT_V2_ID)
        );
        // Values stored with it need these very bytes.
        use sha2::Digest as _;
        assert_eq!(
            hex::encode(sha2::Sha256::digest(DICT_V2)),
            "3a61470cea3d125549cd0e436b9b7ad04257b9e6e5704767479c2f381d1fb07a"
        );
    }

    #[test]
    fn answers_not_among_the_samples_pack_smaller_with_v2_than_with_v1() {
        let mut v1 = zstd::bulk::Compressor::with_dictionary(LEVEL, DICT_V1).unwrap();
        let (mut with_v1, mut with_v2) = (0, 0);
        for body in answers(200) {
            with_v1 += 1 + v1.compress(body.as_bytes()).unwrap().len();
            with_v2 += pack(body.as_bytes()).len();
        }
        assert!(
            with_v2 * 100 < with_v1 * 95,
            "v2 {with_v2} bytes, v1 {with_v1} bytes"
        );
    }
}
