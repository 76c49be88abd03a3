//! How a response body is packed before it is sealed: the codec byte of
//! `response_enc` (docs/FORMAT.md).
//!
//! Codec `0x00` is the body as received. Codec `0x01` is one zstd frame
//! (content size recorded) made with the embedded dictionary
//! `zstd-dict-v1.txt`: the API page's response example, pretty and compact.
//! A raw-content dictionary gives zstd the field names and the fixed texts
//! of every answer, which a 2 KB body cannot teach it alone.
//!
//! Rule this module keeps: the dictionary file never changes; a new one
//! gets a new codec byte, so every stored value stays readable. Compression
//! happens before sealing (ciphertext does not compress), on plaintext in
//! memory only.

use std::cell::RefCell;
use std::sync::OnceLock;

use zeroize::{Zeroize, Zeroizing};

/// The body exactly as received.
pub const RAW: u8 = 0x00;
/// zstd with the v1 dictionary.
pub const ZSTD_V1: u8 = 0x01;
/// The v1 dictionary, byte for byte.
pub const DICT_V1: &[u8] = include_bytes!("zstd-dict-v1.txt");
/// zstd level 1: with the dictionary it packs an answer to under a third,
/// and higher levels cost import time for a few percent (BENCHMARKS.md).
const LEVEL: i32 = 1;
/// No stored body is larger than this; a frame claiming more is corrupt.
const MAX_BODY: usize = 16 * 1024 * 1024;

fn encoder_dict() -> &'static zstd::dict::EncoderDictionary<'static> {
    static D: OnceLock<zstd::dict::EncoderDictionary<'static>> = OnceLock::new();
    D.get_or_init(|| zstd::dict::EncoderDictionary::copy(DICT_V1, LEVEL))
}

fn decoder_dict() -> &'static zstd::dict::DecoderDictionary<'static> {
    static D: OnceLock<zstd::dict::DecoderDictionary<'static>> = OnceLock::new();
    D.get_or_init(|| zstd::dict::DecoderDictionary::copy(DICT_V1))
}

thread_local! {
    /// Where this thread packs a body before it is sealed: one buffer reused,
    /// zeroized after each use, instead of a body-sized allocation per value.
    static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
    static COMPRESSOR: RefCell<Option<zstd::bulk::Compressor<'static>>> = const { RefCell::new(None) };
    static DECOMPRESSOR: RefCell<Option<zstd::bulk::Decompressor<'static>>> = const { RefCell::new(None) };
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
            out[start] = ZSTD_V1;
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
        (&ZSTD_V1, rest) => DECOMPRESSOR.with(|d| {
            let mut d = d.borrow_mut();
            if d.is_none() {
                *d = zstd::bulk::Decompressor::with_prepared_dictionary(decoder_dict()).ok();
            }
            d.as_mut()?
                .decompress(rest, MAX_BODY)
                .ok()
                .map(Zeroizing::new)
        }),
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
        let body = crate::emulator::synthetic_response(
            "880510400015",
            "3e9b7d42-6c1a-4f8e-a2d5-9b4c8e1f7a3d",
            chrono::NaiveDate::from_ymd_opt(2030, 7, 1).unwrap(),
        )
        .to_string();
        let packed = pack(body.as_bytes());
        assert_eq!(packed[0], ZSTD_V1);
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
    }
}
