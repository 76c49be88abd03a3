//! Fuzz target: the IIN validator and the masking of IINs.
//! The checks are in `gbdfl_fuzzing::iin`.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| gbdfl_fuzzing::iin(data));
