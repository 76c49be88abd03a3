//! Fuzz target: opening a sealed record whose bytes or associated data were tampered with.
//! The checks are in `gbdfl_fuzzing::open_record`.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| gbdfl_fuzzing::open_record(data));
