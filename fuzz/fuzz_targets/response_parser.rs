//! Fuzz target: the response parser and everything that reads a parsed GBDFL answer.
//! The checks are in `gbdfl_fuzzing::response_parser`.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| gbdfl_fuzzing::response_parser(data));
