//! The fs backend's log decoder: the input is one document's log file.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = persister_reliability::fuzzing::fs_log(data);
});
