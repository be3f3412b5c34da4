//! The export format's decoder (`persister_cli::export`): the input is an export file;
//! what decodes must encode and decode again to the same documents.
#![no_main]

use persister_cli::export::{decode, encode};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = persister_reliability::fuzzing::export_round_trip(data, decode, encode);
});
