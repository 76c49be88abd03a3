//! Fuzz target: the document-date and session-time parsers.
//! The checks are in `gbdfl_fuzzing::date`.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| gbdfl_fuzzing::date(data));
