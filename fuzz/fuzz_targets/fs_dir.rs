//! Opening a directory of arbitrary files as an fs store: the input is split into
//! several files (see `persister_reliability::fuzzing::split_files`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = persister_reliability::fuzzing::fs_dir(data);
});
