//! Fuzz target: the CSV reader of `gbdfl batch`.
//! The checks are in `gbdfl_fuzzing::batch_csv`.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| gbdfl_fuzzing::batch_csv(data));
